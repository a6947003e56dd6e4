/*
 * cache_floor: how far a copy must have replayed for a read to see a key's last write
 * (layer 3 on).
 *
 * Cache-aside in front of replicas has a race of its own. A write commits on the primary and
 * invalidates the cached row; the next reader misses, reads a replica that has not replayed the
 * write yet, and fills the cache with the old row, which is then served for the whole TTL. The
 * cache's versions cannot stop this (the fill follows the invalidation), so the read must know
 * how far its copy has to be: the key's floor, the WAL position (LSN) of the last write to it.
 * A read on a cache miss goes only to a copy known to have replayed its key's floor (else to
 * the primary), so what it answers, and caches, includes every write invalidated before it.
 *
 * Floors live in Redis next to the cache ("<prefix>:lsn:<key>", kept a day), so every server
 * instance sees every write. A write raises its key's floor before it sends its invalidation
 * on the same connection, and Redis runs one connection's commands in order: a reader whose
 * lookup comes after an invalidation reads a floor at least that write's. A key without a floor
 * was not written for a day (or Redis evicted it, which allkeys-lru does to the least recently
 * used keys, not to one written a second ago): any usable replica has that write. Positions are
 * stored as 16 hex digits, so that Lua compares them as strings.
 */
#ifndef LAYERS_CACHE_FLOOR_H
#define LAYERS_CACHE_FLOOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_floor;
struct redis;

#define CACHE_FLOOR_TTL_S 86400 /* how long a key remembers its last write's position */

/* Called exactly once per lookup. ok false: Redis failed (do not fill); floor 0: no write to the
 * key for CACHE_FLOOR_TTL_S. */
typedef void (*cache_floor_cb)(bool ok, uint64_t floor, void *arg);

struct cache_floor *cache_floor_create(struct redis *redis, const char *prefix);
void cache_floor_free(struct cache_floor *floor);

/* After a committed write, before its cache invalidation. lsn 0: the commit's position is
 * unknown; the key's misses then go to the primary for CACHE_FLOOR_TTL_S after its last write
 * (an unknown position is the highest, and a floor is never lowered; the primary's answers
 * are still cached). */
void cache_floor_raise(struct cache_floor *floor, const char *key, size_t key_len, uint64_t lsn);

/* After a cache miss: the position a read of key must include. */
void cache_floor_get(struct cache_floor *floor, const char *key, size_t key_len, cache_floor_cb cb,
                     void *arg);

#endif
