/*
 * shard_map: which shard a key lives on (layer 4 on).
 *
 * Sharding splits the keys over N databases, so that each holds, and serves, about 1/N of them.
 * Every reader and writer must agree on where a key is; a shard map is that agreement, as a
 * pure function of the key. Three strategies sit behind one interface (SHARD_STRATEGY):
 *
 * - modulo (the default): MD5(key) read as a 128-bit big-endian integer, mod N. Even spread,
 *   compatible with the Python version of this design, but changing N moves about N/(N+1) of
 *   the keys (a key stays only if its hash mod N and mod N+1 agree).
 * - jump: Lamping and Veach's jump consistent hash of the first 8 bytes of MD5(key). Even
 *   spread, no table, and going from N to N+1 shards moves only the ~1/(N+1) of the keys that
 *   the new shard takes, all of them to the new shard. Shards can only be added or removed at
 *   the end of the list.
 * - range: ordered key ranges split at N-1 boundaries (SHARD_RANGES="g,n": shard 0 holds keys
 *   below "g", shard 1 "g" up to "n", shard 2 from "n" on; bytes compared as unsigned). Range
 *   scans stay on one shard and a split moves only the keys of the range split, but the spread
 *   is as even as the boundaries are well chosen, and sequential keys all hit the last shard.
 *
 * A map is immutable once created; it is safe to share between threads.
 */
#ifndef LAYERS_SHARD_MAP_H
#define LAYERS_SHARD_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHARD_MAX 256 /* most shards a map holds */

struct shard_map;

/*
 * Creates a map of num_shards shards with strategy "modulo", "jump" or "range". `ranges` (the
 * N-1 ascending, comma-separated boundaries) is required for "range" and must be empty
 * otherwise. Returns NULL with a message in err when a value is invalid.
 */
struct shard_map *shard_map_create(const char *strategy, int num_shards, const char *ranges,
                                   char *err, size_t errlen);
void shard_map_free(struct shard_map *map);

/* The key's shard, 0..N-1. */
int shard_map_lookup(const struct shard_map *map, const char *key, size_t len);

int shard_map_count(const struct shard_map *map);
const char *shard_map_strategy(const struct shard_map *map); /* "modulo", "jump", "range" */

/* A short text naming the layout ("modulo/3", "range/3/g,n"): equal texts, equal placement. */
const char *shard_map_describe(const struct shard_map *map);

/* The building blocks, exposed for unit tests. */
int shard_md5_mod(const char *key, size_t len, int n);
uint64_t shard_md5_u64(const char *key, size_t len); /* the digest's first 8 bytes, big-endian */
int shard_jump_hash(uint64_t key, int num_buckets);

/* Splits "a, b,c" at commas (spaces around items trimmed) into at most max heap strings; returns
 * the count, or -1 when there are more than max items or an item is empty. */
int shard_split_list(const char *text, char **items, int max) __attribute__((warn_unused_result));

#endif
