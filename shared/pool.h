/*
 * pool: a connection pool (layer 1 on).
 *
 * Opening a PostgreSQL connection costs a TCP handshake, authentication and a new backend
 * process: milliseconds, against microseconds for a simple query. The pool keeps connections
 * open and lends them out. Its rules:
 * - between min_size and max_size connections; grows lazily when requests wait, shrinks idle
 *   ones back to min_size after idle_timeout, and retires connections older than max_lifetime
 *   (so server-side memory and changed settings do not live forever);
 * - when every connection is busy, requests wait in a bounded FIFO queue (max_waiting) for at
 *   most acquire_timeout; past the bound they are refused at once (PG_BUSY), past the timeout
 *   they fail (PG_UNAVAILABLE). Nothing waits forever and nothing queues without limit;
 * - a connection that breaks is dropped and replaced; while the database cannot be reached at
 *   all, requests fail fast and connection attempts back off (100 ms doubling to 2 s);
 * - statistics are real counts, shown at /pool-stats and /metrics.
 *
 * Two modes (pool_settings.pipeline_depth, DB_POOL_MODE):
 * - exclusive (the default): a borrower has the connection to itself until it releases it.
 *   One query per connection per round trip: the simplest model, and layer 1's lesson.
 * - pipeline: single statements (pool_query) share connections: each connection carries up to
 *   pipeline_depth calls in flight from different requests, sent at once in libpq's pipeline
 *   mode and answered in order (pg_pipeline.h). Sync points (pipeline_sync_turn,
 *   DB_PIPELINE_SYNC): one per call (each commits and is answered on its own) or one per loop
 *   turn's calls on a connection (one transaction for them, fewer commits; a failure in it
 *   makes the others go again, each alone, so a failing statement still fails only its own
 *   request). A new call goes
 *   to the least-loaded open connection; when all are at the depth it waits in the same bounded
 *   queue. The pool grows by load: a call that had to share a busy connection opens one more
 *   (one at a time, up to max_size) once every open connection carries a quarter of
 *   pipeline_depth, since one backend runs its pipeline serially on one core and commits one
 *   call after another; not sooner, since a pipeline pays only when calls share it. What
 *   cannot share a connection borrows it whole (pool_acquire): a batch (pool_batch: a
 *   transaction spans its statements; EACH batches too, for simplicity), LISTEN, anything that
 *   sets session state. Such a borrower waits for a
 *   connection with nothing in flight (drain, not a split of the pool: no connection is kept
 *   back from the pipelined calls); while it waits at the head of the queue, later borrowers
 *   queue behind it, so it is never starved; the wait is bounded by the acquire timeout.
 *   A lost connection fails exactly its calls in flight (503), and is closed when the last
 *   of them has been released; a call past its deadline drops the connection and fails the
 *   others in flight on it the same way (the server's state is unknown, and an in-order
 *   pipeline cannot skip one answer). Reads are not retried on another connection.
 *
 * The pool manages opaque connection handles through a connector (open, close, is_broken,
 * watch), so that its state machine is unit-tested without sockets; pool_create_pg() plugs in
 * pgconn. pool_query() and pool_batch() are what handlers use: acquire, run, release.
 */
#ifndef LAYERS_POOL_H
#define LAYERS_POOL_H

#include "pgconn.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct event_base;
struct metrics;
struct pool;
struct pool_slot;

struct pool_settings {
    int min_size;            /* connections kept open even when idle */
    int max_size;            /* hard upper bound */
    long acquire_timeout_ms; /* longest wait in the queue */
    int max_waiting;         /* queue bound; more requests are refused at once */
    long max_lifetime_ms;    /* connections older than this are retired when released */
    long idle_timeout_ms;    /* idle connections above min_size are closed after this */
    int pipeline_depth;      /* shares per connection for pool_acquire_shared (pipeline mode);
                                1 (or 0): exclusive, every borrower gets a whole connection */
    bool pipeline_sync_turn; /* pipeline mode: one sync point (one transaction) per loop turn's
                                calls on a connection, else one per call (DB_PIPELINE_SYNC) */
};

enum pool_error {
    POOL_OK,          /* conn is yours until pool_release */
    POOL_TIMEOUT,     /* waited acquire_timeout_ms without getting a connection */
    POOL_QUEUE_FULL,  /* max_waiting requests were already waiting */
    POOL_UNAVAILABLE, /* the database cannot be reached right now */
};

/* How the pool opens and closes its connections. */
struct pool_connector {
    /* Starts opening; returns the handle now and calls pool_open_done(slot, ok) later. */
    void *(*open)(void *ctx, struct pool_slot *slot);
    void (*close)(void *ctx, void *conn);
    bool (*is_broken)(void *ctx, void *conn);
    /* Optional: watch an idle connection, calling pool_idle_broken(slot) if it breaks. */
    void (*watch)(void *ctx, void *conn, struct pool_slot *slot, bool on);
    /* Optional: frees ctx when the pool is freed. */
    void (*destroy)(void *ctx);
    /* Optional: pipelined groups that failed and were sent again call by call, so far, on every
     * connection it opened (pool_stats.group_retries). */
    unsigned long long (*group_retries)(void *ctx);
};

struct pool_stats {
    int size;                         /* open connections (idle + in use) */
    int available;                    /* idle connections */
    int in_use;                       /* lent out */
    int opening;                      /* connection attempts under way */
    int waiting;                      /* requests in the wait queue */
    int min_size, max_size;           /* configured bounds */
    int in_flight;                    /* borrowers now (pipeline mode: calls in flight) */
    int pipeline_depth;               /* configured shares per connection (1: exclusive) */
    int max_depth;                    /* most borrowers one connection had at once */
    unsigned long long acquisitions;  /* connections handed out */
    unsigned long long waits;         /* acquisitions that queued */
    unsigned long long timeouts;      /* gave up after acquire_timeout */
    unsigned long long rejected;      /* queue full */
    unsigned long long unavailable;   /* failed because the database was unreachable */
    unsigned long long opened;        /* connections established */
    unsigned long long open_failures; /* connection attempts that failed */
    unsigned long long broken;        /* dropped because they broke */
    unsigned long long retired;       /* closed for age or idleness */
    unsigned long long group_retries; /* pipeline mode with a sync per loop turn: groups of calls
                                         that failed (nothing committed) and were sent again, each
                                         call alone (the connector's count; 0 without one) */
    double usage_ms_avg;              /* mean time a connection was held per acquisition */
    double wait_ms_avg;               /* mean queue time of acquisitions that waited */
};

/*
 * Called exactly once per pool_acquire, possibly before pool_acquire returns (an idle
 * connection, or a full queue). On POOL_OK the caller must pool_release(conn) exactly once.
 */
typedef void (*pool_acquire_cb)(void *conn, enum pool_error err, void *arg);

struct pool *pool_create(struct event_base *base, const struct pool_settings *settings,
                         const struct pool_connector *connector, void *connector_ctx,
                         struct metrics *metrics);

/* A pool of pgconn connections. */
struct pool *pool_create_pg(struct event_base *base, const struct pool_settings *settings,
                            const struct pgconn_settings *pg, struct metrics *metrics);

/* Closes every connection. Call when nothing is in flight; pending callbacks are not called. */
void pool_free(struct pool *pool);

/* Borrows a whole connection (in pipeline mode too: it waits until one has nothing in flight). */
void pool_acquire(struct pool *pool, pool_acquire_cb cb, void *arg);

/*
 * Borrows a share of a connection: in pipeline mode one of pipeline_depth (the least-loaded open
 * connection with one free), for one pipelined call (pgconn_pipeline_query); in exclusive mode
 * the same as pool_acquire. Waits, is refused or fails as pool_acquire does.
 */
void pool_acquire_shared(struct pool *pool, pool_acquire_cb cb, void *arg);

/* Releases a connection or a share of it; the connection is closed (if broken or too old) or
 * lent again only when its last borrower has released it. */
void pool_release(struct pool *pool, void *conn);

/* Whether pool_acquire_shared lends shares (pipeline_depth > 1). */
bool pool_is_pipelined(const struct pool *pool);

/* For connectors. */
void pool_open_done(struct pool_slot *slot, bool ok);
void pool_idle_broken(struct pool_slot *slot);

/* Periodic upkeep (the server's maintenance timer): min size, idle and lifetime limits. */
void pool_maintain(struct pool *pool);

void pool_get_stats(const struct pool *pool, struct pool_stats *out);

/* The statistics as the contract's /pool-stats object (real numbers, never placeholders). */
json_t *pool_stats_json(const struct pool *pool);

/* A metrics_gauge_fn (arg: the pool) printing pool_size, pool_available, pool_waiting,
 * pool_in_flight and pool_max_depth_reached, and the counter pool_group_retries_total. */
void pool_render_gauges(struct evbuffer *out, void *pool);

/*
 * Acquire, run one query, release (in pipeline mode: a share, and the query pipelined). The call's
 * callback is called exactly once, possibly before pool_query returns (PG_BUSY or PG_UNAVAILABLE
 * without waiting). The call is copied; its strings must stay valid until the callback (struct
 * pg_statement). Only for pools made by pool_create_pg().
 */
void pool_query(struct pool *pool, const struct pg_call *call);

/*
 * Acquire, run a batch (pgconn_batch: N statements in one round trip, as one transaction or
 * each on its own), release. The callback as for pool_query; when no connection could be had,
 * every reply is unsent.
 */
void pool_batch(struct pool *pool, const struct pg_batch *batch);

#endif
