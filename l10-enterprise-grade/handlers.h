/*
 * Layer 10: the enterprise edge. The layer's context and its request handlers.
 */
#ifndef L10_HANDLERS_H
#define L10_HANDLERS_H

#include "breaker.h"
#include "edge.h"
#include "pool.h"
#include "pool_config.h"
#include "shard_set.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct api_keys;
struct cache_aside;
struct http_request;
struct l1_cache;
struct l1_coherence;
struct rate_limiter;
struct redis;
struct server;
struct single_flight;

#define LAYER10_INVALIDATION_CHANNEL "l10:invalidations" /* keys written, "" = everything */
#define LAYER10_HEARTBEAT_TIMEOUT_MS 2500 /* L1 is bypassed when our heartbeat is this late */
#define LAYER10_MAX_SHARDS           16   /* breakers kept */
#define LAYER10_PROBE_MS             250  /* how often a shard behind an open breaker is probed */

struct layer;

/* The health probe of one shard while its breaker is open. */
struct shard_probe {
    struct layer *layer; /* its layer */
    int shard;           /* 0-based */
    bool out;            /* a SELECT 1 is in flight */
};

struct layer {
    struct server *server;               /* the core's server (loop, HTTP, metrics) */
    struct pool_config db;               /* DB_* and DB_POOL_* settings, for each shard */
    struct shard_settings sharding;      /* SHARD_URLS, SHARD_STRATEGY, ... */
    long check_timeout_ms;               /* SHARD_CHECK_TIMEOUT_MS */
    char *redis_url;                     /* REDIS_URL: the cache tier (L2, invalidations) */
    long redis_timeout_ms;               /* REDIS_TIMEOUT_MS */
    char *rate_limit_redis_url;          /* RATE_LIMIT_REDIS_URL: the budgets */
    long l1_size, l1_max_bytes;          /* L1_CACHE_SIZE, L1_CACHE_MAX_BYTES */
    long l1_ttl_s, l2_ttl_s;             /* L1_CACHE_TTL, L2_CACHE_TTL */
    char *api_keys_spec, *api_keys_file; /* API_KEYS, API_KEYS_FILE */
    long rate_limit, rate_window_s;      /* RATE_LIMIT_REQUESTS per RATE_LIMIT_WINDOW_S */
    long rate_local_slots;               /* RATE_LIMIT_LOCAL_SLOTS */
    long rate_slice, rate_lease_ms;      /* RATE_LIMIT_SLICE, RATE_LIMIT_LEASE_MS */
    struct breaker_settings breaking;    /* BREAKER_* */
    struct edge_settings edging;         /* REQUEST_TIMEOUT_MS, MAX_IN_FLIGHT, ... */
    const char *protections;             /* PROTECTIONS: on or off */
    size_t max_value_bytes;              /* MAX_VALUE_BYTES */
    bool listening;                      /* server_ready() was called */
    long long started_ms;                /* when the schema wait began */
    struct shard_set *shards;            /* L3: the shards, a pool each */
    struct breaker *shard_breakers[LAYER10_MAX_SHARDS]; /* one per shard (NULL: off) */
    struct breaker *cache_breaker;                      /* the cache tier's Redis (NULL: off) */
    struct breaker *limit_breaker;                      /* the rate limiter's Redis (NULL: off) */
    struct redis *redis;                                /* L2: Redis commands */
    struct redis *limit_redis;                          /* the rate limiter's Redis */
    struct cache_aside *l2;                             /* L2: versioned cache-aside */
    struct l1_cache *l1;                                /* L1: in-process */
    struct l1_coherence *coherence; /* L1 kept coherent with every instance's writes */
    struct single_flight *flights;  /* database reads in flight, by key */
    struct api_keys *keys;          /* who may call */
    struct rate_limiter *limiter;   /* how often */
    struct edge *edge;              /* the protections in front of the handlers */
    struct shard_probe probes[LAYER10_MAX_SHARDS]; /* one per shard breaker */
    struct event *probe_timer;                     /* every LAYER10_PROBE_MS */
    long drain_delay_ms;                           /* DRAIN_DELAY_MS */
    bool stopping;                                 /* stop() began: probes are not told */
};

/* Sends a SELECT 1 to each shard whose breaker is open (none in flight): when it answers, the
 * breaker's open time ends (breaker_backend_answered) and the next read is its half-open call. */
void probe_open_shards(struct layer *layer);

void handle_write(struct edge_call *call);
void handle_read(struct edge_call *call);
void handle_stats(struct edge_call *call);
void handle_clear_cache(struct edge_call *call);
void handle_health(struct http_request *req, void *arg);
void handle_ready(struct http_request *req, void *arg);

#endif
