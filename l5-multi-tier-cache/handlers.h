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
struct redis;
struct redis_subscriber;
struct schema_task;
struct server;
struct single_flight;

#define RECENT_INVALIDATIONS        1024 /* how far back a fill can check for a racing write */
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
    struct redis_subscriber *invalidations; /* other instances' writes */
    struct l1_cache *l1;                    /* L1: in-process */
    struct single_flight *flights;          /* database reads in flight, by key */
    struct schema_task *schema;             /* start-up table creation */
    uint64_t epoch;                         /* invalidations applied so far */
    uint64_t recent[RECENT_INVALIDATIONS];  /* key hashes of the latest invalidations */
    char heartbeat[24];                     /* this instance's heartbeat message (see below) */
    long long heartbeat_seen_ms;            /* when it last came back through the channel */
};

void handle_write(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);
void handle_stats(struct http_request *req, void *arg);
void handle_clear_cache(struct http_request *req, void *arg);

/* Applies an invalidation (a key, or every key when key is NULL) to the in-process tier. */
void layer5_invalidate_l1(struct layer *layer, const char *key, size_t key_len);

/* A message on the invalidation channel: a key, "" (everything), or a heartbeat. */
void layer5_receive(struct layer *layer, const char *data, size_t len);

/* The subscription became active or was lost. */
void layer5_subscription(struct layer *layer, bool active);

/* Once a second: publishes this instance's heartbeat on the invalidation channel. */
void layer5_heartbeat(struct layer *layer);

#endif
