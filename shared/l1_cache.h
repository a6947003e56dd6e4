/*
 * l1_cache: a bounded in-process cache (layer 5's first tier), with SIEVE eviction and a TTL.
 *
 * Bounded twice: by entries (L1_CACHE_SIZE) and by bytes of keys and values (L1_CACHE_MAX_BYTES);
 * every entry also expires after a TTL (L1_CACHE_TTL). Eviction is SIEVE (Zhang et al., NSDI
 * 2024): entries sit in one FIFO queue with a "visited" bit; a hit only sets the bit (no list
 * surgery, unlike LRU); to evict, a hand walks from the oldest entry towards the newest, clearing
 * bits, and evicts the first entry not visited since the hand last passed. It keeps popular
 * entries like LRU does, but a one-time scan of many keys flushes less of them, and it is as
 * simple as FIFO. Single-threaded (the event loop's); pure logic, unit-tested without sockets.
 */
#ifndef LAYERS_L1_CACHE_H
#define LAYERS_L1_CACHE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct l1_cache;

struct l1_cache_stats {
    size_t entries;                 /* entries held now */
    size_t bytes;                   /* key and value bytes held now */
    size_t max_entries;             /* bound */
    size_t max_bytes;               /* bound */
    unsigned long long evictions;   /* entries evicted to make room */
    unsigned long long expirations; /* entries dropped because their TTL ended */
};

struct l1_cache *l1_cache_create(size_t max_entries, size_t max_bytes, long long ttl_ms);
void l1_cache_free(struct l1_cache *cache);

/*
 * Looks key up at time now_ms. On a hit, *data and *len describe the value until the next call
 * that changes the cache. An expired entry is removed and reported as a miss.
 */
bool l1_cache_get(struct l1_cache *cache, const char *key, size_t key_len, long long now_ms,
                  const char **data, size_t *len);

/* Stores a copy of data under key (replacing any old value), evicting as needed. A value larger
 * than the byte bound is not stored. */
void l1_cache_put(struct l1_cache *cache, const char *key, size_t key_len, const char *data,
                  size_t len, long long now_ms);

void l1_cache_remove(struct l1_cache *cache, const char *key, size_t key_len);
void l1_cache_clear(struct l1_cache *cache);
void l1_cache_get_stats(const struct l1_cache *cache, struct l1_cache_stats *out);

/* Adds the cache's own numbers to a stats object, as layer 5's /stats names them:
 * l1_cache_size, l1_cache_max_size, l1_cache_bytes, l1_cache_max_bytes, l1_cache_evictions. */
void l1_cache_stats_into(const struct l1_cache *cache, json_t *stats);

#endif
