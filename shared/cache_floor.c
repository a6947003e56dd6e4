/*
 * cache_floor: the WAL position a replica read must include to be cached (see cache_floor.h).
 */
#include "cache_floor.h"

#include "redis.h"
#include "xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS: the key's floor. ARGV: position (16 hex digits), TTL. Raises, never lowers (two servers'
 * writes to one key may reach Redis in the other order than their commits), but every write
 * restarts the TTL: a floor kept by a higher position must not expire before this write is a
 * day old. */
static const char RAISE_SCRIPT[] =
    "local k = redis.call('GET', KEYS[1]) "
    "if not k or k < ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) "
    "else redis.call('EXPIRE', KEYS[1], ARGV[2]) end "
    "return 1";

struct cache_floor {
    struct redis *redis; /* the cache's connection (the order of commands matters) */
    char *prefix;        /* "l3" */
};

struct cache_floor *cache_floor_create(struct redis *redis, const char *prefix)
{
    struct cache_floor *f = xcalloc(1, sizeof *f);
    f->redis = redis;
    f->prefix = xstrdup(prefix);
    return f;
}

void cache_floor_free(struct cache_floor *f)
{
    if (f == NULL)
        return;
    free(f->prefix);
    free(f);
}

/* "<prefix>:lsn:<key>" */
static char *key_floor_name(const struct cache_floor *f, const char *key, size_t key_len,
                            size_t *len)
{
    size_t plen = strlen(f->prefix);
    char *name = xmalloc(plen + 5 + key_len);
    memcpy(name, f->prefix, plen);
    memcpy(name + plen, ":lsn:", 5);
    memcpy(name + plen + 5, key, key_len);
    *len = plen + 5 + key_len;
    return name;
}

static void on_raised(redisReply *reply, void *arg)
{
    (void)reply, (void)arg; /* a failure here fails the invalidation sent after it too; the cache
                               then owes it and distrusts itself (cache_aside.h) */
}

void cache_floor_raise(struct cache_floor *f, const char *key, size_t key_len, uint64_t lsn)
{
    size_t klen;
    char *kname = key_floor_name(f, key, key_len, &klen);
    char hex[17], ttl[16];
    snprintf(hex, sizeof hex, "%016" PRIX64, lsn ? lsn : UINT64_MAX);
    snprintf(ttl, sizeof ttl, "%d", CACHE_FLOOR_TTL_S);
    const char *argv[] = {"EVAL", RAISE_SCRIPT, "1", kname, hex, ttl};
    const size_t lens[] = {4, sizeof RAISE_SCRIPT - 1, 1, klen, 16, strlen(ttl)};
    redis_command(f->redis, on_raised, NULL, 6, argv, lens);
    free(kname);
}

struct floor_lookup {
    cache_floor_cb cb; /* the caller */
    void *arg;         /* its argument */
};

static bool parse_hex(const redisReply *r, uint64_t *out)
{
    if (r->type != REDIS_REPLY_STRING || r->len != 16)
        return false;
    char *end;
    *out = strtoull(r->str, &end, 16);
    return end == r->str + 16;
}

static void on_floor(redisReply *reply, void *arg)
{
    struct floor_lookup lookup = *(struct floor_lookup *)arg;
    free(arg);
    uint64_t floor = 0;
    bool ok =
        reply != NULL && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_NIL);
    if (ok && reply->type == REDIS_REPLY_STRING && !parse_hex(reply, &floor))
        floor = UINT64_MAX; /* not ours: trust only the primary */
    lookup.cb(ok, floor, lookup.arg);
}

void cache_floor_get(struct cache_floor *f, const char *key, size_t key_len, cache_floor_cb cb,
                     void *arg)
{
    size_t klen;
    char *kname = key_floor_name(f, key, key_len, &klen);
    struct floor_lookup *lookup = xmalloc(sizeof *lookup);
    *lookup = (struct floor_lookup){cb, arg};
    const char *argv[] = {"GET", kname};
    const size_t lens[] = {3, klen};
    redis_command(f->redis, on_floor, lookup, 2, argv, lens);
    free(kname);
}
