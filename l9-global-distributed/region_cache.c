/*
 * region_cache: one region's cache-aside, invalidated by replication's NOTIFYs (region_cache.h).
 *
 * Trust: the LISTEN is in force, it is the session whose start cleared the cache (sessions ==
 * cleared_session), and no clear is under way. Every change of trust moves the epoch, so a fill
 * whose lookup ran under another epoch is dropped.
 */
#include "region_cache.h"

#include "backends.h"
#include "log.h"
#include "pg_listener.h"
#include "redis.h"
#include "server.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHANNEL "l9_records" /* replication.sh's trigger notifies here */

struct region_cache {
    char *name;                         /* the region's name, for the log */
    struct redis *redis;                /* the region's Redis */
    struct cache_aside *cache;          /* the core's cache-aside on it */
    struct pg_listener *listener;       /* LISTEN l9_records on the region's PostgreSQL */
    unsigned long long cleared_session; /* the listener session whose start was cleared (0: none) */
    unsigned long long pending_session; /* the session a clear under way (or owed) is for */
    bool clearing;                      /* a clear is under way */
    bool clear_owed;                    /* the last clear failed (Redis down): retry */
    unsigned long long epoch;           /* moves with every change of trust */
    unsigned long long invalidations;   /* keys invalidated by replicated rows */
    unsigned long long resets;          /* clears after a (re)connect of the listener */
};

static void start_clear(struct region_cache *c);

static void on_cleared(long long keys, void *arg)
{
    struct region_cache *c = arg;
    c->clearing = false;
    if (keys < 0) { /* Redis down or gone midway: the cache stays untrusted, maintain retries */
        c->clear_owed = true;
        return;
    }
    if (c->pending_session != pg_listener_sessions(c->listener)) {
        start_clear(c); /* the listener reconnected meanwhile: clear again */
        return;
    }
    c->cleared_session = c->pending_session;
    c->epoch++;
    c->resets++;
    LOG_INFO("region %s: cache cleared (%lld keys), in use", c->name, keys);
}

static void start_clear(struct region_cache *c)
{
    c->clearing = true;
    c->clear_owed = false;
    c->pending_session = pg_listener_sessions(c->listener);
    c->epoch++;
    cache_aside_clear(c->cache, on_cleared, c);
}

/* A (re)connect, or notifications (their keys already invalidated by on_payload). */
static void on_wake(void *arg)
{
    struct region_cache *c = arg;
    unsigned long long session = pg_listener_sessions(c->listener);
    if (session == c->cleared_session || (c->clearing && session == c->pending_session))
        return;
    /* A new session: what was notified while none listened is lost. Start over. */
    c->cleared_session = 0;
    if (!c->clearing)
        start_clear(c);
    else
        c->epoch++; /* on_cleared sees the new session and clears again */
}

static void on_payload(const char *payload, void *arg)
{
    struct region_cache *c = arg;
    cache_aside_invalidate(c->cache, payload, strlen(payload));
    c->invalidations++;
}

struct region_cache *region_cache_create(struct server *server, const char *name,
                                         const char *redis_url, long redis_timeout_ms,
                                         const char *pg_url, long pg_connect_timeout_ms, long ttl_s)
{
    struct redis *redis = backends_start_redis(server, redis_url, redis_timeout_ms);
    if (redis == NULL)
        return NULL;
    struct region_cache *c = xcalloc(1, sizeof *c);
    c->name = xstrdup(name);
    c->redis = redis;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "l9:%s", name);
    struct cache_settings cs = {prefix, ttl_s, NULL};
    c->cache = cache_aside_create(redis, &cs, server_metrics(server));
    c->listener = pg_listener_create(server_base(server), server_resolver(server), pg_url, CHANNEL,
                                     pg_connect_timeout_ms, on_wake, c);
    pg_listener_on_payload(c->listener, on_payload);
    return c;
}

void region_cache_free(struct region_cache *c)
{
    if (c == NULL)
        return;
    pg_listener_free(c->listener);
    cache_aside_free(c->cache);
    redis_free(c->redis);
    free(c->name);
    free(c);
}

static bool trusted(const struct region_cache *c)
{
    return !c->clearing && c->cleared_session != 0 && pg_listener_up(c->listener) &&
           pg_listener_sessions(c->listener) == c->cleared_session;
}

void region_cache_get(struct region_cache *c, const char *key, size_t key_len,
                      unsigned long long *epoch, cache_get_cb cb, void *arg)
{
    *epoch = c->epoch;
    if (!trusted(c)) {
        cb(CACHE_UNAVAILABLE, NULL, 0, NULL, arg);
        return;
    }
    cache_aside_get(c->cache, key, key_len, cb, arg);
}

void region_cache_fill(struct region_cache *c, unsigned long long epoch, const char *key,
                       size_t key_len, const char *token, const char *data, size_t len)
{
    if (epoch == c->epoch && trusted(c))
        cache_aside_fill(c->cache, key, key_len, token, data, len);
}

void region_cache_invalidate(struct region_cache *c, const char *key, size_t key_len)
{
    cache_aside_invalidate(c->cache, key, key_len);
}

void region_cache_maintain(struct region_cache *c)
{
    redis_maintain(c->redis);
    cache_aside_maintain(c->cache);
    if (c->clear_owed && !c->clearing && redis_available(c->redis))
        start_clear(c);
}

bool region_cache_available(const struct region_cache *c)
{
    return cache_aside_available(c->cache);
}

json_t *region_cache_stats_json(const struct region_cache *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "available", json_boolean(cache_aside_available(c->cache)));
    json_object_set_new(o, "trusted", json_boolean(trusted(c)));
    json_object_set_new(o, "replicated_invalidations", json_integer((json_int_t)c->invalidations));
    json_object_set_new(o, "resets", json_integer((json_int_t)c->resets));
    return o;
}
