/*
 * config_sets: the settings sets of the core's modules that have no settings file of their own
 * (Redis, the cache-aside TTL, the replica router, the shard set), beside pool_config.h.
 *
 * A layer lists the sets it uses in one table (config.h), one line per dependency:
 *
 *   static const struct config_set layer_sets[] = {
 *       POOL_CONFIG_SET(&layer.db, "postgresql://layers@127.0.0.1:15420/layers"),
 *       REDIS_CONFIG_SET(&layer.redis_url, &layer.redis_timeout_ms, "redis://127.0.0.1:16420/0"),
 *       CACHE_CONFIG_SET(&layer.cache_ttl_s),
 *       CONFIG_SET("layer 2", layer_rows),
 *   };
 *
 * so a layer's diff of main.c shows a new dependency as one line, and the rows (names, bounds,
 * help) are written once here. Each macro takes the targets the rows fill (the layer's fields)
 * and, where the local stack differs per layer, the default URL.
 */
#ifndef LAYERS_CONFIG_SETS_H
#define LAYERS_CONFIG_SETS_H

#include "config.h"

/* SHARD_STRATEGY's values (shard_map.h). */
#define SHARD_STRATEGY_CHOICES ((const char *const[]){"modulo", "jump", "range", NULL})

/* One Redis server: its URL (`char **`) and the deadline of connecting and of each command. */
#define REDIS_CONFIG_SET(url_target, timeout_target, default_url)                                  \
    CONFIG_ROWS_SET("Redis",                                                                       \
                    {"REDIS_URL", CONFIG_URL, (default_url), 0, 0, "Redis connection URL",         \
                     (url_target), NULL},                                                          \
                    {"REDIS_TIMEOUT_MS", CONFIG_INT, "500", 10, 60000,                             \
                     "deadline for connecting to Redis and for each command", (timeout_target),    \
                     NULL})

/* Cache-aside's TTL (`long *`, seconds). */
#define CACHE_CONFIG_SET(ttl_target)                                                               \
    CONFIG_ROWS_SET("cache-aside",                                                                 \
                    {"CACHE_TTL", CONFIG_INT, "300", 1, 86400 * 30,                                \
                     "seconds a cached row lives (plus up to 10% jitter)", (ttl_target), NULL})

/* The replica router: a primary, its streaming replicas (a list, or one), the lag bound. */
#define REPLICA_CONFIG_SET(primary_target, replicas_target, replica_target, lag_target,            \
                           default_primary, default_replicas)                                      \
    CONFIG_ROWS_SET(                                                                               \
        "replicas",                                                                                \
        {"PRIMARY_DATABASE_URL", CONFIG_URL, (default_primary), 0, 0,                              \
         "the primary: every write, and reads no replica can serve", (primary_target), NULL},      \
        {"REPLICA_DATABASE_URLS", CONFIG_URL, (default_replicas), 0, 0,                            \
         "comma-separated replica URLs (streaming replicas of the primary)", (replicas_target),    \
         NULL},                                                                                    \
        {"REPLICA_DATABASE_URL", CONFIG_URL, "", 0, 0,                                             \
         "one replica, when REPLICA_DATABASE_URLS is set empty", (replica_target), NULL},          \
        {"MAX_REPLICA_LAG_MS", CONFIG_INT, "1000", 0, 3600000,                                     \
         "replicas further behind the primary are skipped", (lag_target), NULL})

/* The shard layouts, into a struct shard_settings *s (shard_set.h): the current one and, while
 * resharding, the previous one. A default of NULL makes the setting required (l4-reshard). */
#define SHARD_CONFIG_SET(s, default_urls, default_previous_urls)                                   \
    CONFIG_ROWS_SET(                                                                               \
        "shards",                                                                                  \
        {"SHARD_URLS", CONFIG_URL, (default_urls), 0, 0,                                           \
         "comma-separated PostgreSQL URLs, one per shard, shard 0 first", &(s)->urls, NULL},       \
        {"SHARD_STRATEGY", CONFIG_ENUM, "modulo", 0, 0,                                            \
         "modulo (MD5 mod N), jump (jump consistent hash) or range", &(s)->strategy,               \
         SHARD_STRATEGY_CHOICES},                                                                  \
        {"SHARD_RANGES", CONFIG_STRING, "", 0, 0,                                                  \
         "range: the N-1 ascending boundaries, comma-separated (\"g,n\")", &(s)->ranges, NULL},    \
        {"SHARD_PREVIOUS_URLS", CONFIG_URL, (default_previous_urls), 0, 0,                         \
         "while resharding: the previous layout's URLs (reads fall back to it)",                   \
         &(s)->previous_urls, NULL},                                                               \
        {"SHARD_PREVIOUS_STRATEGY", CONFIG_ENUM, "modulo", 0, 0,                                   \
         "while resharding: the previous layout's strategy", &(s)->previous_strategy,              \
         SHARD_STRATEGY_CHOICES},                                                                  \
        {"SHARD_PREVIOUS_RANGES", CONFIG_STRING, "", 0, 0,                                         \
         "while resharding: the previous layout's range boundaries", &(s)->previous_ranges, NULL})

#endif
