/*
 * l1_coherence: invalidations over Redis pub/sub, a heartbeat to notice a silent channel, and
 * the epoch that refuses racing fills (l1_coherence.h).
 */
#include "l1_coherence.h"

#include "clock.h"
#include "l1_cache.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "redis_subscriber.h"
#include "single_flight.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

struct l1_coherence {
    struct l1_cache *l1;                  /* the tier kept coherent */
    struct single_flight *flights;        /* database reads in flight, by key */
    struct redis *redis;                  /* publishes heartbeats and clears */
    struct metrics *metrics;              /* l1 invalidations */
    struct redis_subscriber *subscriber;  /* the channel */
    char *channel;                        /* its name */
    long heartbeat_timeout_ms;            /* see l1_coherence_trusted */
    uint64_t epoch;                       /* invalidations applied so far */
    uint64_t recent[L1_COHERENCE_RECENT]; /* key hashes of the latest invalidations */
    char heartbeat[24];                   /* this instance's heartbeat message */
    long long heartbeat_seen_ms;          /* when it last came back through the channel */
};

static uint64_t key_hash(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return h | 1; /* never 0, which marks "everything" */
}

void l1_coherence_invalidate(struct l1_coherence *c, const char *key, size_t key_len)
{
    if (key == NULL) {
        l1_cache_clear(c->l1);
    } else {
        l1_cache_remove(c->l1, key, key_len);
        /* A database read of key already under way may predate the write: later reads must
         * not join it (single_flight.h). */
        single_flight_forget(c->flights, key, key_len);
    }
    c->recent[c->epoch % L1_COHERENCE_RECENT] = key ? key_hash(key, key_len) : 0;
    c->epoch++;
    metrics_inc(c->metrics, METRIC_L1_INVALIDATIONS);
}

bool l1_coherence_trusted(const struct l1_coherence *c)
{
    return redis_subscriber_active(c->subscriber) &&
           monotonic_ms() - c->heartbeat_seen_ms <= c->heartbeat_timeout_ms;
}

static void on_subscription(bool active, void *arg)
{
    struct l1_coherence *c = arg;
    l1_coherence_invalidate(c, NULL, 0); /* messages may have been missed: start afresh */
    if (active)
        c->heartbeat_seen_ms = monotonic_ms(); /* the SUBSCRIBE reply just came back */
}

/* A key written by any instance (this one too), "" for every key, or a heartbeat. */
static void on_message(const char *data, size_t len, void *arg)
{
    struct l1_coherence *c = arg;
    if (len > 0 && data[0] == '\0') { /* a heartbeat */
        if (len != strlen(c->heartbeat + 1) + 1 || memcmp(data + 1, c->heartbeat + 1, len - 1))
            return; /* another instance's */
        long long now = monotonic_ms();
        if (now - c->heartbeat_seen_ms > c->heartbeat_timeout_ms) {
            /* The channel was silent: invalidations may have been missed. */
            LOG_WARN("%s: invalidations flow again after %lld ms; in-process tier emptied",
                     c->channel, now - c->heartbeat_seen_ms);
            l1_coherence_invalidate(c, NULL, 0);
        }
        c->heartbeat_seen_ms = now;
        return;
    }
    l1_coherence_invalidate(c, len ? data : NULL, len);
}

struct l1_coherence *l1_coherence_create(struct event_base *base, struct resolver *resolver,
                                         const struct l1_coherence_settings *settings,
                                         struct l1_cache *l1, struct single_flight *flights,
                                         struct redis *redis, struct metrics *metrics)
{
    struct l1_coherence *c = xcalloc(1, sizeof *c);
    c->l1 = l1;
    c->flights = flights;
    c->redis = redis;
    c->metrics = metrics;
    c->channel = xstrdup(settings->channel);
    c->heartbeat_timeout_ms = settings->heartbeat_timeout_ms;
    c->subscriber =
        redis_subscriber_create(base, resolver, settings->redis_url, settings->timeout_ms,
                                settings->channel, on_message, on_subscription, c);
    if (c->subscriber == NULL) {
        l1_coherence_free(c);
        return NULL;
    }
    return c;
}

void l1_coherence_free(struct l1_coherence *c)
{
    if (c == NULL)
        return;
    redis_subscriber_free(c->subscriber);
    free(c->channel);
    free(c);
}

static void on_published(redisReply *reply, void *arg)
{
    (void)reply, (void)arg;
}

static void publish(struct l1_coherence *c, const char *message, size_t len)
{
    const char *argv[] = {"PUBLISH", c->channel, message};
    const size_t lens[] = {7, strlen(c->channel), len};
    redis_command(c->redis, on_published, NULL, 3, argv, lens);
}

void l1_coherence_publish_clear(struct l1_coherence *c)
{
    publish(c, "", 0);
}

void l1_coherence_heartbeat(struct l1_coherence *c)
{
    if (c->heartbeat[1] == '\0') { /* "\0hb:<random id>", made once */
        unsigned long long id = 0;
        if (getrandom(&id, sizeof id, GRND_NONBLOCK) != sizeof id)
            id = (unsigned long long)monotonic_ms() ^ (unsigned long long)getpid() << 40;
        snprintf(c->heartbeat, sizeof c->heartbeat, "%chb:%016llx", '\0', id);
    }
    publish(c, c->heartbeat, strlen(c->heartbeat + 1) + 1);
}

uint64_t l1_coherence_epoch(const struct l1_coherence *c)
{
    return c->epoch;
}

bool l1_coherence_fill_allowed(const struct l1_coherence *c, const char *key, size_t key_len,
                               uint64_t epoch)
{
    if (!l1_coherence_trusted(c))
        return false;
    if (c->epoch - epoch >= L1_COHERENCE_RECENT)
        return false;
    uint64_t h = key_hash(key, key_len);
    for (uint64_t e = epoch; e < c->epoch; e++) {
        uint64_t seen = c->recent[e % L1_COHERENCE_RECENT];
        if (seen == h || seen == 0)
            return false;
    }
    return true;
}
