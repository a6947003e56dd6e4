/*
 * Layer 0: single database, connection per request. The layer's context and its handlers.
 */
#ifndef L0_HANDLERS_H
#define L0_HANDLERS_H

#include "pgconn.h"

#include <stddef.h>

struct http_request;
struct schema_task;
struct server;

struct layer {
    struct server *server;      /* the core's server (loop, HTTP, metrics) */
    char *database_url;         /* DATABASE_URL */
    long connect_timeout_ms;    /* DB_CONNECT_TIMEOUT_MS */
    long query_timeout_ms;      /* DB_QUERY_TIMEOUT_MS */
    struct pgconn_settings pg;  /* the above, as pgconn wants them */
    size_t max_value_bytes;     /* MAX_VALUE_BYTES */
    struct schema_task *schema; /* start-up table creation */
};

void handle_write(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);

#endif
