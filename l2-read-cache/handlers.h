/*
 * Layer 2: read cache (Redis cache-aside). The layer's context and its request handlers.
 */
#ifndef L2_HANDLERS_H
#define L2_HANDLERS_H

#include "pool.h"
#include "pool_config.h"

#include <stddef.h>

struct cache_aside;
struct http_request;
struct redis;
struct schema_task;
struct server;
struct single_flight;

struct layer {
    struct server *server;         /* the core's server (loop, HTTP, metrics) */
    struct pool_config db;         /* DATABASE_URL, DB_* and DB_POOL_* settings */
    char *redis_url;               /* REDIS_URL */
    long cache_ttl_s;              /* CACHE_TTL */
    long redis_timeout_ms;         /* REDIS_TIMEOUT_MS */
    long fill_delay_ms;            /* CACHE_FILL_DELAY_MS (a test hook; 0 in production) */
    size_t max_value_bytes;        /* MAX_VALUE_BYTES */
    struct pool *pool;             /* PostgreSQL connections */
    struct redis *redis;           /* the Redis connection */
    struct cache_aside *cache;     /* cache-aside on it */
    struct single_flight *flights; /* database reads in flight, by key */
    struct schema_task *schema;    /* start-up table creation */
};

void handle_write(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);
void handle_cache_stats(struct http_request *req, void *arg);

#endif
