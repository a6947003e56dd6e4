/*
 * Layer 1: connection pooling. The layer's context and its request handlers.
 */
#ifndef L1_HANDLERS_H
#define L1_HANDLERS_H

#include "pgconn.h"
#include "pool.h"
#include "pool_config.h"

struct http_request;
struct schema_task;
struct server;

struct layer {
    struct server *server;      /* the core's server (loop, HTTP, metrics) */
    struct pool_config db;      /* DATABASE_URL, DB_* and DB_POOL_* settings */
    size_t max_value_bytes;     /* MAX_VALUE_BYTES */
    struct pool *pool;          /* the connections every request borrows */
    struct schema_task *schema; /* start-up table creation */
};

void handle_write(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);
void handle_pool_stats(struct http_request *req, void *arg);

#endif
