/*
 * Layer 5: multi-tier cache. The layer's context and its request handlers.
 */
#ifndef L5_HANDLERS_H
#define L5_HANDLERS_H

#include "pool.h"
#include "pool_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_aside;
struct http_request;
struct l1_cache;
struct l1_coherence;
struct redis;
struct schema_task;
struct server;
struct single_flight;

#define LAYER5_INVALIDATION_CHANNEL "l5:invalidations" /* keys written, "" = everything */
#define LAYER5_HEARTBEAT_TIMEOUT_MS 2500 /* L1 is bypassed when our heartbeat is this late */

struct layer {
    struct server *server;                  /* the core's server (loop, HTTP, metrics) */
    struct pool_config db;                  /* DATABASE_URL, DB_* and DB_POOL_* settings */
    char *redis_url;                        /* REDIS_URL */
    long redis_timeout_ms;                  /* REDIS_TIMEOUT_MS */
    long l1_size, l1_max_bytes;             /* L1_CACHE_SIZE, L1_CACHE_MAX_BYTES */
    long l1_ttl_s, l2_ttl_s;                /* L1_CACHE_TTL, L2_CACHE_TTL */
    size_t max_value_bytes;                 /* MAX_VALUE_BYTES */
    struct pool *pool;                      /* L3: PostgreSQL */
    struct redis *redis;                    /* L2: Redis commands */
    struct cache_aside *l2;                 /* L2: versioned cache-aside */
    struct l1_cache *l1;                    /* L1: in-process */
    struct l1_coherence *coherence;         /* L1 kept coherent with every instance's writes */
    struct single_flight *flights;          /* database reads in flight, by key */
    struct schema_task *schema;             /* start-up table creation */
};

void handle_write(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);
void handle_stats(struct http_request *req, void *arg);
void handle_clear_cache(struct http_request *req, void *arg);

#endif
