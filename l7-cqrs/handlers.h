/*
 * Layer 7: CQRS with a transactional outbox. The layer's context and its request handlers.
 */
#ifndef L7_HANDLERS_H
#define L7_HANDLERS_H

#include "cqrs.h"
#include "pool.h"
#include "pool_config.h"

#include <stddef.h>

struct event;
struct http_request;
struct read_flow;
struct redis;
struct schema_task;
struct server;

struct layer {
    struct server *server;          /* the core's server (loop, HTTP, metrics) */
    struct pool_config db;          /* DB_* and DB_POOL_* settings, for each of the two pools */
    char *write_db_url;             /* WRITE_DB_URL: commands and the outbox */
    char *read_db_url;              /* READ_DB_URL: the read model */
    char *redis_url;                /* REDIS_URL */
    long redis_timeout_ms;          /* REDIS_TIMEOUT_MS */
    long read_wait_ms;              /* READ_WAIT_MS: longest wait for a consistency token */
    long read_poll_ms;              /* READ_POLL_MS: checkpoint polls while reads wait */
    long max_waiting_reads;         /* READ_MAX_WAITING: token reads allowed to wait */
    size_t max_value_bytes;         /* MAX_VALUE_BYTES */
    struct pool *write_pool;        /* the write database's connections */
    struct pool *read_pool;         /* the read database's connections */
    struct redis *redis;            /* read counts, stream and dead-letter lengths */
    struct schema_task *schemas[2]; /* start-up table creation: write, read */
    int schemas_ready;              /* schemas created so far */
    bool notify_in_flight;          /* a NOTIFY outbox is on its way to the write database */
    bool notify_owed;               /* a command committed since it left: send one more */
    struct cqrs_stream_id applied;  /* the projector's last applied stream entry, as last seen */
    struct read_flow *waiting;      /* token reads waiting for the projector, oldest first */
    struct read_flow *waiting_tail; /* the newest one */
    long waiting_count;             /* entries in that list */
    struct event *poll_timer;       /* polls the checkpoint while reads wait */
    bool polling;                   /* a poll (one or two queries) is in flight */
    bool poll_again;                /* a read came during it: poll again at once */
    int poll_pending;               /* the poll's replies still to come */
    char *poll_tokens;              /* the tokens it looks up, "{3,7}" (alive until its reply) */
};

void handle_write(struct http_request *req, void *arg);
void handle_update(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);
void handle_stats(struct http_request *req, void *arg);

/* Creates what the handlers keep in the layer (the checkpoint poll timer). */
void handlers_start(struct layer *layer);
/* Frees what the handlers keep in the layer (waiting reads are answered 503). */
void handlers_stop(struct layer *layer);

#endif
