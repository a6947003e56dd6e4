/*
 * Layer 1: connection pooling. The layer's context and its request handlers.
 */
#ifndef L1_HANDLERS_H
#define L1_HANDLERS_H

#include "pgconn.h"
#include "pool.h"

struct http_request;
struct schema_task;
struct server;

struct layer1 {
    struct server *server;      /* the core's server (loop, HTTP, metrics) */
    char *database_url;         /* DATABASE_URL */
    long connect_timeout_ms;    /* DB_CONNECT_TIMEOUT_MS */
    long query_timeout_ms;      /* DB_QUERY_TIMEOUT_MS */
    long min_size, max_size;    /* DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE */
    long acquire_timeout_ms;    /* DB_POOL_ACQUIRE_TIMEOUT_MS */
    long max_waiting;           /* DB_POOL_MAX_WAITING */
    long max_lifetime_s;        /* DB_POOL_MAX_LIFETIME_S */
    long idle_timeout_s;        /* DB_POOL_IDLE_TIMEOUT_S */
    size_t max_value_bytes;     /* MAX_VALUE_BYTES */
    struct pool *pool;          /* the connections every request borrows */
    struct schema_task *schema; /* start-up table creation */
};

void handle_write(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);
void handle_pool_stats(struct http_request *req, void *arg);

#endif
