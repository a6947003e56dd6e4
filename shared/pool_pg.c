/*
 * pool_pg: the pool's PostgreSQL connector, and pool_query() and pool_batch() (see pool.h).
 *
 * The connector turns the pool's open/close/is_broken/watch into pgconn calls. pool_query()
 * and pool_batch() are the whole borrow in one call: acquire, send the caller's query (or
 * batch) as it came, hand the result to the caller, release. In pipeline mode a query borrows a
 * share of a connection and is pipelined on it; a batch borrows a connection whole. Handlers of
 * layer 1 and later use it the way layer 0 uses a fresh connection.
 */
#include "pool.h"

#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

struct pg_connector {
    struct event_base *base;          /* loop for the connections */
    struct pgconn_settings settings;  /* copied strings */
    struct metrics *metrics;          /* pg_* counters */
    int pipeline_depth;               /* pipelined calls per connection (pipeline mode), or <= 1 */
    bool pipeline_sync_turn;          /* one sync per loop turn's calls (pgconn_allow_pipeline) */
    unsigned long long group_retries; /* failed groups sent again, on every connection opened */
};

static void on_connected(struct pgconn *conn, bool ok, void *arg)
{
    (void)conn;
    pool_open_done(arg, ok);
}

static void *pg_open(void *ctx, struct pool_slot *slot)
{
    struct pg_connector *c = ctx;
    struct pgconn *conn = pgconn_create(c->base, &c->settings, c->metrics);
    if (c->pipeline_depth > 1) {
        pgconn_allow_pipeline(conn, c->pipeline_depth, c->pipeline_sync_turn);
        pgconn_count_group_retries(conn, &c->group_retries);
    }
    pgconn_connect(conn, on_connected, slot);
    return conn;
}

static void pg_close(void *ctx, void *conn)
{
    (void)ctx;
    pgconn_free(conn);
}

static bool pg_is_broken(void *ctx, void *conn)
{
    (void)ctx;
    return pgconn_is_broken(conn);
}

static void on_idle_broken(struct pgconn *conn, void *arg)
{
    (void)conn;
    pool_idle_broken(arg);
}

static void pg_watch(void *ctx, void *conn, struct pool_slot *slot, bool on)
{
    (void)ctx;
    if (on)
        pgconn_watch_idle(conn, on_idle_broken, slot);
    else
        pgconn_unwatch(conn);
}

static void pg_destroy(void *ctx)
{
    struct pg_connector *c = ctx;
    free((char *)c->settings.url);
    free((char *)c->settings.application);
    free(c);
}

static unsigned long long pg_group_retries(void *ctx)
{
    return ((const struct pg_connector *)ctx)->group_retries;
}

static const struct pool_connector pg_connector_ops = {
    .open = pg_open,
    .close = pg_close,
    .is_broken = pg_is_broken,
    .watch = pg_watch,
    .destroy = pg_destroy,
    .group_retries = pg_group_retries,
};

struct pool *pool_create_pg(struct event_base *base, const struct pool_settings *settings,
                            const struct pgconn_settings *pg, struct metrics *metrics)
{
    struct pg_connector *c = xcalloc(1, sizeof *c);
    c->base = base;
    c->metrics = metrics;
    c->settings = *pg;
    c->settings.url = xstrdup(pg->url);
    c->settings.application = xstrdup(pg->application ? pg->application : "layers");
    c->pipeline_depth = settings->pipeline_depth;
    c->pipeline_sync_turn = settings->pipeline_sync_turn;
    return pool_create(base, settings, &pg_connector_ops, c, metrics);
}

/* ---- pool_query and pool_batch: one borrow ---- */

/* One borrow: the caller's call or batch, carried as it came (exactly one has a callback). */
struct pooled {
    struct pool *pool;     /* where the connection comes from */
    struct pgconn *conn;   /* the borrowed connection */
    bool shared;           /* a share of it: the query is pipelined */
    struct pg_call call;   /* the caller's query, or call.cb NULL */
    struct pg_batch batch; /* the caller's batch, or batch.cb NULL */
};

static void on_query_result(PGresult *res, enum pg_status status, void *arg)
{
    struct pooled *p = arg;
    p->call.cb(res, status, p->call.arg);
    pool_release(p->pool, p->conn);
    free(p);
}

static void on_batch_result(const struct pg_reply *replies, int count, enum pg_status status,
                            void *arg)
{
    struct pooled *p = arg;
    p->batch.cb(replies, count, status, p->batch.arg);
    pool_release(p->pool, p->conn);
    free(p);
}

static void on_acquired(void *conn, enum pool_error err, void *arg)
{
    struct pooled *p = arg;
    if (err != POOL_OK) {
        enum pg_status status = err == POOL_QUEUE_FULL ? PG_BUSY : PG_UNAVAILABLE;
        if (p->call.cb != NULL)
            p->call.cb(NULL, status, p->call.arg);
        else
            pg_batch_fail(&p->batch, status);
        free(p);
        return;
    }
    p->conn = conn;
    if (p->call.cb != NULL) {
        struct pg_call call = {p->call.statement, on_query_result, p};
        if (p->shared)
            pgconn_pipeline_query(p->conn, &call);
        else
            pgconn_query(p->conn, &call);
    } else {
        struct pg_batch batch = p->batch;
        batch.cb = on_batch_result;
        batch.arg = p;
        pgconn_batch(p->conn, &batch);
    }
}

void pool_query(struct pool *pool, const struct pg_call *call)
{
    struct pooled *p = xcalloc(1, sizeof *p);
    p->pool = pool;
    p->call = *call;
    p->shared = pool_is_pipelined(pool);
    pool_acquire_shared(pool, on_acquired, p);
}

void pool_batch(struct pool *pool, const struct pg_batch *batch)
{
    struct pooled *p = xcalloc(1, sizeof *p);
    p->pool = pool;
    p->batch = *batch;
    pool_acquire(pool, on_acquired, p);
}
