/*
 * cache_aside: versioned cache-aside on Redis (see cache_aside.h).
 */
#include "cache_aside.h"

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "xalloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define SCAN_BATCH           "1000"
#define SCAN_MAX_STEPS_COUNT 1000   /* a stats request never scans forever */
#define SCAN_MAX_STEPS_CLEAR 100000 /* a clear goes further, but not forever either */

/* KEYS: value, version. ARGV: tag, data, ttl, version ttl. Stores only if the version is present
 * and still the tag the lookup saw (a version that was evicted or expired meanwhile also
 * refuses); a stored value's version then lives as long as versions do (a lease, LEASE_TTL_S,
 * only as long as a lookup's database read). */
static const char FILL_SCRIPT[] = "if redis.call('GET', KEYS[2]) == ARGV[1] then "
                                  "redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) "
                                  "redis.call('EXPIRE', KEYS[2], ARGV[4]) return 1 end "
                                  "return 0";

/* A lease (the version a miss plants on a key that has none) outlives the lookup's database
 * read and its fill by far, and no more: a miss of a key that does not exist fills nothing, so
 * its lease is all it leaves in Redis, for this long (reading 10,000 absent keys must not add
 * 10,000 keys for the cache's whole TTL). */
#define LEASE_TTL_S 60

/* KEYS: the n value keys, then their n version keys. ARGV: version ttl, channel ("" for none),
 * new tag, then (with a channel) the n keys to publish. One tag serves every key of a call: what
 * must never repeat is a key's own sequence of versions. DEL takes the value keys in chunks of
 * 1,000 (Lua's unpack has a bounded stack). */
static const char INVALIDATE_SCRIPT[] =
    "local n = #KEYS / 2 "
    "for j = n + 1, 2 * n do redis.call('SET', KEYS[j], ARGV[3], 'EX', ARGV[1]) end "
    "for c = 1, n, 1000 do redis.call('DEL', unpack(KEYS, c, math.min(c + 999, n))) end "
    "if ARGV[2] ~= '' then for j = 4, #ARGV do redis.call('PUBLISH', ARGV[2], ARGV[j]) end end "
    "return 1";

/* A key whose invalidation has not been delivered. */
struct owed_key {
    char *key;  /* owned copy */
    size_t len; /* its length */
};

struct cache_aside {
    struct redis *redis;          /* the connection */
    struct metrics *metrics;      /* cache_* counters */
    char *prefix;                 /* "l2" */
    char *channel;                /* invalidation channel, "" for none */
    long ttl_s;                   /* base TTL */
    unsigned long long tag_seed;  /* random per process: tags never repeat across processes */
    unsigned long long tag_count; /* tags made so far */
    unsigned long generation;     /* bumped when an invalidation is lost: older tokens are void */
    struct owed_key owed[CACHE_OWED_MAX]; /* keys owed an invalidation */
    size_t owed_count;                    /* entries used in owed */
    bool owe_all;  /* more were lost than owed can hold: clear every key instead */
    bool clearing; /* that clear is under way */
};

struct cache_aside *cache_aside_create(struct redis *redis, const struct cache_settings *settings,
                                       struct metrics *metrics)
{
    struct cache_aside *c = xcalloc(1, sizeof *c);
    c->redis = redis;
    c->metrics = metrics;
    c->prefix = xstrdup(settings->prefix);
    c->channel = xstrdup(settings->channel ? settings->channel : "");
    c->ttl_s = settings->ttl_s;
    if (getrandom(&c->tag_seed, sizeof c->tag_seed, GRND_NONBLOCK) != sizeof c->tag_seed)
        c->tag_seed = (unsigned long long)monotonic_ms() ^ (unsigned long long)getpid() << 40;
    return c;
}

static void forget_owed(struct cache_aside *c)
{
    for (size_t i = 0; i < c->owed_count; i++)
        free(c->owed[i].key);
    c->owed_count = 0;
}

void cache_aside_free(struct cache_aside *c)
{
    if (c == NULL)
        return;
    forget_owed(c);
    free(c->prefix);
    free(c->channel);
    free(c);
}

static bool owes(const struct cache_aside *c)
{
    return c->owed_count > 0 || c->owe_all;
}

bool cache_aside_available(const struct cache_aside *c)
{
    return redis_available(c->redis) && !owes(c);
}

static void deliver_owed(struct cache_aside *c);

/*
 * A version is a tag that never repeats (this process's random seed and a counter), not a
 * counter in Redis: a counter restarts at 1 when its key is evicted (a Redis with maxmemory and
 * an allkeys-* policy) or expires, and a reader holding "1" would then accept a fill of an old
 * row after the next write.
 */
static void make_tag(struct cache_aside *c, char *out, size_t outlen)
{
    snprintf(out, outlen, "%016llx.%llx", c->tag_seed, ++c->tag_count);
}

/* How long a version lives: longer than any value it guards. */
static void guard_ttl(const struct cache_aside *c, char *out, size_t outlen)
{
    snprintf(out, outlen, "%ld", c->ttl_s * 2 + 60);
}

/* "<prefix>:<kind>:<key>" into a new string. */
static char *make_key(const struct cache_aside *c, const char *kind, const char *key, size_t len,
                      size_t *out_len)
{
    size_t plen = strlen(c->prefix), klen = strlen(kind);
    char *out = xmalloc(plen + klen + len + 3);
    memcpy(out, c->prefix, plen);
    out[plen] = ':';
    memcpy(out + plen + 1, kind, klen);
    out[plen + 1 + klen] = ':';
    memcpy(out + plen + 2 + klen, key, len);
    *out_len = plen + 2 + klen + len;
    out[*out_len] = '\0';
    return out;
}

/* ---- lookup ---- */

struct lookup {
    cache_get_cb cb;           /* the caller's callback */
    void *arg;                 /* its argument */
    struct cache_aside *cache; /* whose */
    char *version_key;         /* "<prefix>:ver:<key>", for a lease */
    size_t version_len;        /* its length */
};

static void on_lease(redisReply *reply, void *arg)
{
    (void)reply, (void)arg; /* if it was not set, the fill will simply be refused */
}

static void on_mget(redisReply *reply, void *arg)
{
    struct lookup *l = arg;
    struct cache_aside *c = l->cache;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        l->cb(CACHE_UNAVAILABLE, NULL, 0, NULL, l->arg);
    } else if (reply->element[0]->type == REDIS_REPLY_STRING) {
        metrics_inc(c->metrics, METRIC_CACHE_HITS);
        l->cb(CACHE_HIT, reply->element[0]->str, reply->element[0]->len, NULL, l->arg);
    } else {
        metrics_inc(c->metrics, METRIC_CACHE_MISSES);
        /* The token: this process's generation, then the key's version tag. A key without a
         * version gets one now, a lease (SET NX), sent before the caller's database read and
         * before its fill: a write that lands in between replaces it, and if another
         * reader's lease or a write got there first, this lease fails and so will the fill. */
        redisReply *ver = reply->element[1];
        char tag[64], token[96];
        if (ver->type == REDIS_REPLY_STRING) {
            snprintf(tag, sizeof tag, "%.48s", ver->str);
        } else {
            char ttl[32];
            make_tag(c, tag, sizeof tag);
            snprintf(ttl, sizeof ttl, "%d", LEASE_TTL_S);
            const char *argv[] = {"SET", l->version_key, tag, "NX", "EX", ttl};
            const size_t lens[] = {3, l->version_len, strlen(tag), 2, 2, strlen(ttl)};
            redis_command(c->redis, on_lease, NULL, 6, argv, lens);
        }
        snprintf(token, sizeof token, "%lu:%s", c->generation, tag);
        l->cb(CACHE_MISS, NULL, 0, token, l->arg);
    }
    free(l->version_key);
    free(l);
}

void cache_aside_get(struct cache_aside *c, const char *key, size_t key_len, cache_get_cb cb,
                     void *arg)
{
    if (owes(c)) { /* stale entries may be left: not to be trusted until they are gone */
        deliver_owed(c);
        cb(CACHE_UNAVAILABLE, NULL, 0, NULL, arg);
        return;
    }
    size_t vlen, verlen;
    char *value_key = make_key(c, "v", key, key_len, &vlen);
    char *version_key = make_key(c, "ver", key, key_len, &verlen);
    struct lookup *l = xmalloc(sizeof *l);
    *l = (struct lookup){cb, arg, c, version_key, verlen};
    const char *argv[] = {"MGET", value_key, version_key};
    const size_t lens[] = {4, vlen, verlen};
    redis_command(c->redis, on_mget, l, 3, argv, lens);
    free(value_key);
}

/* ---- fill and invalidate (fire and forget) ---- */

static void on_fill(redisReply *reply, void *arg)
{
    struct cache_aside *c = arg;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        metrics_inc(c->metrics, METRIC_CACHE_FILLS_SKIPPED);
}

void cache_aside_fill(struct cache_aside *c, const char *key, size_t key_len, const char *token,
                      const char *data, size_t len)
{
    char *version;
    if (strtoul(token, &version, 10) != c->generation || *version != ':' || owes(c)) {
        metrics_inc(c->metrics, METRIC_CACHE_FILLS_SKIPPED); /* looked up before a loss */
        return;
    }
    token = version + 1;
    size_t vlen, verlen;
    char *value_key = make_key(c, "v", key, key_len, &vlen);
    char *version_key = make_key(c, "ver", key, key_len, &verlen);
    char ttl[32];
    long jitter = c->ttl_s >= 10 ? random() % (c->ttl_s / 10 + 1) : 0;
    snprintf(ttl, sizeof ttl, "%ld", c->ttl_s + jitter);
    char version_ttl[32];
    guard_ttl(c, version_ttl, sizeof version_ttl);
    const char *argv[] = {"EVAL", FILL_SCRIPT, "2", value_key, version_key, token, data, ttl,
                          version_ttl};
    const size_t lens[] = {4,   sizeof FILL_SCRIPT - 1, 1,  vlen,
                           verlen, strlen(token), len, strlen(ttl), strlen(version_ttl)};
    redis_command(c->redis, on_fill, c, 9, argv, lens);
    free(value_key);
    free(version_key);
}

/* Remembers that key's invalidation was lost (see cache_aside.h). */
static void owe(struct cache_aside *c, const char *key, size_t len)
{
    c->generation++; /* fills from lookups made before now are void */
    metrics_inc(c->metrics, METRIC_CACHE_INVALIDATIONS_OWED);
    if (c->owe_all)
        return;
    for (size_t i = 0; i < c->owed_count; i++)
        if (c->owed[i].len == len && memcmp(c->owed[i].key, key, len) == 0)
            return;
    if (c->owed_count == CACHE_OWED_MAX) {
        LOG_WARN("cache: more than %d invalidations lost; all cached keys will be cleared",
                 CACHE_OWED_MAX);
        forget_owed(c);
        c->owe_all = true;
        return;
    }
    if (c->owed_count == 0 && !c->clearing)
        LOG_WARN("cache: an invalidation failed (Redis unavailable); the cache is bypassed "
                 "until it is delivered");
    c->owed[c->owed_count++] = (struct owed_key){xstrndup(key, len), len};
}

/* One invalidation in flight: what to remember if it fails. */
struct invalidation {
    struct cache_aside *cache; /* whose */
    size_t n;                  /* keys */
    size_t *lens;              /* their lengths */
    char *keys;                /* the keys, one after the other */
};

static void on_invalidated(redisReply *reply, void *arg)
{
    struct invalidation *inv = arg;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        for (size_t i = 0, at = 0; i < inv->n; at += inv->lens[i++])
            owe(inv->cache, inv->keys + at, inv->lens[i]);
    free(inv->lens);
    free(inv->keys);
    free(inv);
}

void cache_aside_invalidate(struct cache_aside *c, const char *key, size_t key_len)
{
    cache_aside_invalidate_many(c, &key, &key_len, 1);
}

void cache_aside_invalidate_many(struct cache_aside *c, const char *const *keys,
                                 const size_t *key_lens, size_t n)
{
    if (n == 0)
        return;
    bool publish = c->channel[0] != '\0';
    size_t argc = 6 + 2 * n + (publish ? n : 0), total = 0;
    const char **argv = xcalloc(argc, sizeof *argv);
    size_t *lens = xcalloc(argc, sizeof *lens);
    char **made = xcalloc(2 * n, sizeof *made); /* the value and version keys */
    struct invalidation *inv = xmalloc(sizeof *inv);
    inv->cache = c;
    inv->n = n;
    inv->lens = xcalloc(n, sizeof *inv->lens);
    for (size_t i = 0; i < n; i++)
        total += key_lens[i];
    inv->keys = xmalloc(total ? total : 1);
    char ttl[32], tag[64], numkeys[24];
    guard_ttl(c, ttl, sizeof ttl);
    make_tag(c, tag, sizeof tag);
    snprintf(numkeys, sizeof numkeys, "%zu", 2 * n);
    argv[0] = "EVAL", lens[0] = 4;
    argv[1] = INVALIDATE_SCRIPT, lens[1] = sizeof INVALIDATE_SCRIPT - 1;
    argv[2] = numkeys, lens[2] = strlen(numkeys);
    for (size_t i = 0, at = 0; i < n; at += key_lens[i++]) {
        made[i] = make_key(c, "v", keys[i], key_lens[i], &lens[3 + i]);
        made[n + i] = make_key(c, "ver", keys[i], key_lens[i], &lens[3 + n + i]);
        argv[3 + i] = made[i], argv[3 + n + i] = made[n + i];
        memcpy(inv->keys + at, keys[i], key_lens[i]);
        inv->lens[i] = key_lens[i];
        if (publish)
            argv[6 + 2 * n + i] = keys[i], lens[6 + 2 * n + i] = key_lens[i];
    }
    argv[3 + 2 * n] = ttl, lens[3 + 2 * n] = strlen(ttl);
    argv[4 + 2 * n] = c->channel, lens[4 + 2 * n] = strlen(c->channel);
    argv[5 + 2 * n] = tag, lens[5 + 2 * n] = strlen(tag);
    redis_command(c->redis, on_invalidated, inv, (int)argc, argv, lens);
    for (size_t i = 0; i < 2 * n; i++)
        free(made[i]);
    free(made);
    free(argv);
    free(lens);
}

/* ---- counting this layer's keys ---- */

struct count {
    struct cache_aside *cache; /* whose keys */
    bool delete;               /* clearing rather than counting */
    cache_count_cb cb;         /* the caller */
    void *arg;                 /* its argument */
    long long keys;            /* counted so far */
    int steps;                 /* SCAN calls so far */
    char pattern[128];         /* "<prefix>:v:*" */
};

static void scan_step(struct count *n, const char *cursor);

static void on_unlinked(redisReply *reply, void *arg)
{
    (void)reply, (void)arg;
}

static void on_scan(redisReply *reply, void *arg)
{
    struct count *n = arg;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        n->cb(CACHE_COUNT_FAILED, n->arg);
        free(n);
        return;
    }
    redisReply *batch = reply->element[1];
    if (n->delete &&batch->elements > 0) {
        /* UNLINK this batch (fire and forget: it is ordered before the next SCAN). */
        const char **argv = xmalloc((batch->elements + 1) * sizeof *argv);
        size_t *lens = xmalloc((batch->elements + 1) * sizeof *lens);
        argv[0] = "UNLINK";
        lens[0] = 6;
        for (size_t i = 0; i < batch->elements; i++) {
            argv[i + 1] = batch->element[i]->str;
            lens[i + 1] = batch->element[i]->len;
        }
        redis_command(n->cache->redis, on_unlinked, NULL, (int)batch->elements + 1, argv, lens);
        free(argv);
        free(lens);
    }
    n->keys += (long long)batch->elements;
    const char *cursor = reply->element[0]->str;
    if (strcmp(cursor, "0") == 0) {
        n->cb(n->keys, n->arg);
        free(n);
        return;
    }
    if (++n->steps >= (n->delete ? SCAN_MAX_STEPS_CLEAR : SCAN_MAX_STEPS_COUNT)) {
        n->cb(CACHE_COUNT_TOO_MANY, n->arg);
        free(n);
        return;
    }
    scan_step(n, cursor);
}

static void scan_step(struct count *n, const char *cursor)
{
    const char *argv[] = {"SCAN", cursor, "MATCH", n->pattern, "COUNT", SCAN_BATCH};
    const size_t lens[] = {4, strlen(cursor), 5, strlen(n->pattern), 5, strlen(SCAN_BATCH)};
    redis_command(n->cache->redis, on_scan, n, 6, argv, lens);
}

static void scan_all(struct cache_aside *c, const char *kinds, bool delete, cache_count_cb cb,
                     void *arg)
{
    struct count *n = xcalloc(1, sizeof *n);
    n->cache = c;
    n->delete = delete;
    n->cb = cb;
    n->arg = arg;
    snprintf(n->pattern, sizeof n->pattern, "%s:%s", c->prefix, kinds);
    scan_step(n, "0");
}

void cache_aside_count(struct cache_aside *c, cache_count_cb cb, void *arg)
{
    scan_all(c, "v:*", false, cb, arg);
}

void cache_aside_clear(struct cache_aside *c, cache_count_cb cb, void *arg)
{
    scan_all(c, "v:*", true, cb, arg); /* values; versions stay, they guard fills */
}

/* ---- delivering lost invalidations ---- */

static void on_published(redisReply *reply, void *arg)
{
    (void)reply, (void)arg;
}

static void on_owed_cleared(long long keys, void *arg)
{
    struct cache_aside *c = arg;
    c->clearing = false;
    if (keys < 0)
        return; /* Redis failed again: the next delivery starts over */
    c->owe_all = false;
    LOG_INFO("cache: cleared %lld cached keys after lost invalidations", keys);
    if (c->channel[0] != '\0') { /* an empty message: every key */
        const char *argv[] = {"PUBLISH", c->channel, ""};
        const size_t lens[] = {7, strlen(c->channel), 0};
        redis_command(c->redis, on_published, NULL, 3, argv, lens);
    }
}

static void deliver_owed(struct cache_aside *c)
{
    if (!redis_available(c->redis) || c->clearing)
        return;
    if (c->owe_all) {
        c->clearing = true;
        scan_all(c, "v:*", true, on_owed_cleared, c);
        return;
    }
    /* Sent in order before any later lookup on the same connection; a failure owes it again. */
    struct owed_key owed[CACHE_OWED_MAX];
    size_t count = c->owed_count;
    memcpy(owed, c->owed, count * sizeof *owed);
    c->owed_count = 0;
    if (count > 0)
        LOG_INFO("cache: delivering %zu lost invalidations", count);
    for (size_t i = 0; i < count; i++) {
        metrics_inc(c->metrics, METRIC_CACHE_INVALIDATIONS_DELIVERED_LATE);
        cache_aside_invalidate(c, owed[i].key, owed[i].len);
        free(owed[i].key);
    }
}

void cache_aside_maintain(struct cache_aside *c)
{
    if (owes(c))
        deliver_owed(c);
}

static void set_stat(json_t *stats, const char *prefix, const char *name, json_t *value)
{
    char member[64];
    snprintf(member, sizeof member, "%s%s", prefix, name);
    json_object_set_new(stats, member, value);
}

json_t *cache_aside_stats_json(const struct cache_aside *cache, long long keys, const char *prefix)
{
    unsigned long long hits = metrics_get(cache->metrics, METRIC_CACHE_HITS);
    unsigned long long misses = metrics_get(cache->metrics, METRIC_CACHE_MISSES);
    double rate =
        hits + misses ? round(10000.0 * (double)hits / (double)(hits + misses)) / 100.0 : 0.0;
    bool up = keys != CACHE_COUNT_FAILED;
    json_t *stats = json_object();
    set_stat(stats, prefix, "available", json_boolean(up));
    set_stat(stats, prefix, "hits", up ? json_integer((json_int_t)hits) : json_null());
    set_stat(stats, prefix, "misses", up ? json_integer((json_int_t)misses) : json_null());
    set_stat(stats, prefix, "keys", keys >= 0 ? json_integer(keys) : json_null());
    set_stat(stats, prefix, "hit_rate", up ? json_real(rate) : json_null());
    return stats;
}
