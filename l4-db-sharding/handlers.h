/*
 * Layer 4: database sharding. The layer's context and its request handlers.
 */
#ifndef L4_HANDLERS_H
#define L4_HANDLERS_H

#include "pool_config.h"
#include "shard_set.h"

#include <stdbool.h>
#include <stddef.h>

struct cache_aside;
struct http_request;
struct layout_check;
struct redis;
struct server;
struct single_flight;

struct layer {
    struct server *server;          /* the core's server (loop, HTTP, metrics) */
    struct pool_config db;          /* DB_* and DB_POOL_* settings, for each shard's pool */
    struct shard_settings sharding; /* SHARD_URLS, SHARD_STRATEGY, ... (strings owned) */
    long check_timeout_ms;          /* SHARD_CHECK_TIMEOUT_MS: per-shard deadline of fan-outs */
    char *redis_url;                /* REDIS_URL */
    long cache_ttl_s;               /* CACHE_TTL */
    long redis_timeout_ms;          /* REDIS_TIMEOUT_MS */
    size_t max_value_bytes;         /* MAX_VALUE_BYTES */
    long long started_ms;           /* when the schema wait began (monotonic) */
    bool listening;                 /* server_ready() was called */
    struct shard_set *shards;       /* the shards, a pool each, and the shard map */
    char cache_prefix[16];          /* "l4:<layout fingerprint>" */
    struct redis *redis;            /* the Redis connection */
    struct cache_aside *cache;      /* cache-aside on it */
    struct single_flight *flights;  /* database reads in flight, by key */
    char *schema_sql;               /* records' and shard_layout's tables (layout.h) */
    struct layout_check *layout;    /* the shards' recorded layouts against the settings */
};

void handle_write(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);
void handle_stats(struct http_request *req, void *arg);

#endif
