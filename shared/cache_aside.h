/*
 * cache_aside: the read-through-on-miss cache pattern on Redis, without its classic race.
 *
 *   read:  GET from Redis -> hit: answer. miss: read the database, then fill Redis (with a TTL).
 *   write: write the database, then invalidate the cached entry.
 *
 * The race every naive version has: a reader misses and reads the old row; a writer commits and
 * deletes the cached entry; then the reader stores the old row, which is served for the whole
 * TTL. Here every key has a version in Redis: a tag that never repeats. A miss returns the
 * version it saw (a token), or, when the key has none, plants a new one with SET NX (a lease)
 * before the caller reads the database; an invalidation sets a new tag and deletes the entry in
 * one atomic script; a fill stores the row only if the version is still the token (another
 * script). A fill that lost the race is skipped and counted (cache_fills_skipped_total). Tags
 * rather than counters, and leases rather than "no version = version 0", keep this safe when
 * Redis evicts or expires a version: a missing version refuses fills instead of matching.
 *
 * Keys are "<prefix>:v:<key>" (value) and "<prefix>:ver:<key>" (version), so statistics and
 * clearing touch only this layer's keys. TTLs get up to 10% random jitter so that keys filled
 * together do not expire together. Redis being down is not an error: lookups report
 * CACHE_UNAVAILABLE, and callers read the database.
 *
 * An invalidation can fail (Redis down, or hung until the command deadline) after the database
 * write has committed; the old row may still be in Redis. Such a key is owed an invalidation:
 * the cache remembers it (up to CACHE_OWED_MAX keys; beyond that it owes a clear of all its
 * keys) and, until it has delivered what it owes, does not trust itself: lookups report
 * CACHE_UNAVAILABLE and fills from earlier lookups are dropped. It delivers as soon as Redis
 * answers again (on the next lookup or cache_aside_maintain).
 */
#ifndef LAYERS_CACHE_ASIDE_H
#define LAYERS_CACHE_ASIDE_H

#include "config.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct cache_aside;
struct metrics;
struct redis;

enum cache_result { CACHE_HIT, CACHE_MISS, CACHE_UNAVAILABLE };

#define CACHE_OWED_MAX 1024 /* keys remembered for a later invalidation */

struct cache_settings {
    const char *prefix;  /* key namespace, e.g. "l2" */
    long ttl_s;          /* CACHE_TTL */
    const char *channel; /* if not NULL, every invalidation also PUBLISHes the key here, in the
                            same script (atomic with it, and replayed with it); a clear of all
                            keys owed after an outage publishes an empty message */
};

/*
 * Called exactly once per lookup (possibly before cache_aside_get returns, when Redis is
 * unavailable). On CACHE_HIT, data is the cached text; on CACHE_MISS, token is the version to
 * pass to cache_aside_fill. Both are valid only during the callback.
 */
typedef void (*cache_get_cb)(enum cache_result result, const char *data, size_t len,
                             const char *token, void *arg);

#define CACHE_COUNT_FAILED   (-1) /* Redis failed or went away midway */
#define CACHE_COUNT_TOO_MANY (-2) /* Redis holds too many keys to count within the bound */

/* Called once with the number of this layer's cached values, or one of CACHE_COUNT_*. */
typedef void (*cache_count_cb)(long long keys, void *arg);

struct cache_aside *cache_aside_create(struct redis *redis, const struct cache_settings *settings,
                                       struct metrics *metrics);
void cache_aside_free(struct cache_aside *cache);

void cache_aside_get(struct cache_aside *cache, const char *key, size_t key_len, cache_get_cb cb,
                     void *arg);

/* Stores data for key if nothing was written since the lookup that returned token. */
void cache_aside_fill(struct cache_aside *cache, const char *key, size_t key_len, const char *token,
                      const char *data, size_t len);

/* After a database write: bump the version and drop the entry (remembered if it fails). */
void cache_aside_invalidate(struct cache_aside *cache, const char *key, size_t key_len);
/* The same for n keys in one Redis call (one script): a batch of writes committed together. */
void cache_aside_invalidate_many(struct cache_aside *cache, const char *const *keys,
                                 const size_t *key_lens, size_t n);

/* Delivers owed invalidations once Redis answers again; call it from the maintenance timer. */
void cache_aside_maintain(struct cache_aside *cache);

/* Counts this layer's cached values with SCAN (never KEYS): at most 1,000 steps of 1,000 keys,
 * so a stats request costs Redis a bounded amount of work whatever else it holds. */
void cache_aside_count(struct cache_aside *cache, cache_count_cb cb, void *arg);

/* Deletes every key of this layer (SCAN + UNLINK in batches of 1,000; never FLUSHDB), through
 * keyspaces of up to 100 million keys. cb gets the number of values deleted, or a
 * CACHE_COUNT_* failure. */
void cache_aside_clear(struct cache_aside *cache, cache_count_cb cb, void *arg);

/* True when Redis is up and no invalidation is owed: the cache can be trusted. */
bool cache_aside_available(const struct cache_aside *cache);

/*
 * The contract's cache statistics, each member name starting with `prefix` ("" in layer 2,
 * "cache_" in layers 3 and 4): available, hits, misses (this layer's own lookups), keys (the
 * count cache_aside_count gave, null when too many to count) and hit_rate (percent, 2 decimals).
 * When the count failed (Redis down): available false and every number null.
 */
json_t *cache_aside_stats_json(const struct cache_aside *cache, long long keys, const char *prefix);

/* Its settings, as a set for a program's table (config.h). */
/* Cache-aside's TTL (`long *`, seconds). */
#define CACHE_CONFIG_SET(ttl_target)                                                               \
    CONFIG_ROWS_SET("cache-aside",                                                                 \
                    {"CACHE_TTL", CONFIG_INT, "300", 1, 86400 * 30,                                \
                     "seconds a cached row lives (plus up to 10% jitter)", (ttl_target), NULL})

#endif
