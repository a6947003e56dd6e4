/*
 * Layer 3: read replicas. The layer's context and its request handlers.
 */
#ifndef L3_HANDLERS_H
#define L3_HANDLERS_H

#include "pool_config.h"
#include "replica_router.h"

#include <stddef.h>

struct cache_aside;
struct cache_floor;
struct http_request;
struct redis;
struct server;
struct single_flight;

struct layer {
    struct server *server;         /* the core's server (loop, HTTP, metrics) */
    struct pool_config db;         /* DB_* and DB_POOL_* settings, for every node's pool */
    char *primary_url;             /* PRIMARY_DATABASE_URL */
    char *replica_urls;            /* REPLICA_DATABASE_URLS */
    char *replica_url;             /* REPLICA_DATABASE_URL (used when the list is empty) */
    long max_lag_ms;               /* MAX_REPLICA_LAG_MS */
    char *redis_url;               /* REDIS_URL */
    long cache_ttl_s;              /* CACHE_TTL */
    long redis_timeout_ms;         /* REDIS_TIMEOUT_MS */
    size_t max_value_bytes;        /* MAX_VALUE_BYTES */
    struct replica_router *router; /* the primary, the replicas, their lag */
    struct redis *redis;           /* the Redis connection */
    struct cache_aside *cache;     /* cache-aside on it */
    struct cache_floor *floors;    /* which replica reads may fill it */
    struct single_flight *flights; /* database reads in flight, by key */
};

void handle_write(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);
void handle_stats(struct http_request *req, void *arg);

#endif
