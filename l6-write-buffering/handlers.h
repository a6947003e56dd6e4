/*
 * Layer 6: write buffering (Redis Streams + workers). The API's context and its request
 * handlers. The worker (worker.c) is a separate program.
 */
#ifndef L6_HANDLERS_H
#define L6_HANDLERS_H

#include "pool.h"
#include "pool_config.h"
#include "write_queue.h"

#include <stddef.h>

struct appender;

struct cache_aside;
struct http_request;
struct redis;
struct schema_task;
struct server;
struct single_flight;

struct layer {
    struct server *server;         /* the core's server (loop, HTTP, metrics) */
    struct pool_config db;         /* DATABASE_URL, DB_* and DB_POOL_* settings */
    char *redis_url;               /* REDIS_URL: the queue, the pending values and the cache */
    long cache_ttl_s;              /* CACHE_TTL */
    long redis_timeout_ms;         /* REDIS_TIMEOUT_MS */
    struct wq_limits queue_limits; /* QUEUE_MAX_LENGTH, QUEUE_MAX_AGE_MS */
    long append_max_writes;        /* QUEUE_APPEND_MAX_WRITES: writes a script call carries */
    long write_scan;               /* QUEUE_WRITE_SCAN: 1 reads the usual body by write_body.c */
    size_t max_value_bytes;        /* MAX_VALUE_BYTES */
    unsigned long long lookups;    /* pending lookups sent so far (handlers.c, query_or_join) */
    unsigned long long lookups_answered; /* the latest lookup Redis has answered */
    struct wq_stats queue;          /* the queue's numbers, read once a second (/metrics, age) */
    struct pool *pool;              /* PostgreSQL connections (reads only) */
    struct redis *redis;            /* the Redis connection */
    struct wq_script *write_script; /* WQ_WRITE_SCRIPT on it, run by its SHA1 */
    struct appender *appender;      /* the writes of a loop turn, one write script call */
    struct cache_aside *cache;      /* cache-aside on it */
    struct single_flight *flights;  /* database reads in flight, by key */
    struct schema_task *schema;     /* start-up table creation */
};

void handle_write(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);
void handle_stats(struct http_request *req, void *arg);

#endif
