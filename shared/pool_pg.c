/*
 * pool_pg: the pool's PostgreSQL connector, and pool_query() (see pool.h).
 *
 * The connector turns the pool's open/close/is_broken/watch into pgconn calls. pool_query()
 * is the whole borrow in one call: acquire, send the query, hand the result to the caller,
 * release. Handlers of layer 1 and later use it the way layer 0 uses a fresh connection.
 */
#include "pool.h"

#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#define POOL_QUERY_MAX_PARAMS 8

struct pg_connector {
    struct event_base *base;         /* loop for the connections */
    struct pgconn_settings settings; /* copied strings */
    struct metrics *metrics;         /* pg_* counters */
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

static const struct pool_connector pg_connector_ops = {
    .open = pg_open,
    .close = pg_close,
    .is_broken = pg_is_broken,
    .watch = pg_watch,
    .destroy = pg_destroy,
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
    return pool_create(base, settings, &pg_connector_ops, c, metrics);
}

/* ---- pool_query: one borrow ---- */

struct pooled_query {
    struct pool *pool;                         /* where the connection comes from */
    struct pgconn *conn;                       /* the borrowed connection */
    const char *sql;                           /* caller's; valid until the callback */
    int nparams;                               /* number of parameters */
    const char *values[POOL_QUERY_MAX_PARAMS]; /* caller's strings */
    pgconn_result_cb cb;                       /* the caller's callback */
    void *arg;                                 /* its argument */
};

static void on_query_result(PGresult *res, enum pg_status status, void *arg)
{
    struct pooled_query *q = arg;
    q->cb(res, status, q->arg);
    pool_release(q->pool, q->conn);
    free(q);
}

static void on_acquired(void *conn, enum pool_error err, void *arg)
{
    struct pooled_query *q = arg;
    if (err != POOL_OK) {
        q->cb(NULL, err == POOL_QUEUE_FULL ? PG_BUSY : PG_UNAVAILABLE, q->arg);
        free(q);
        return;
    }
    q->conn = conn;
    pgconn_query(q->conn, q->sql, q->nparams, q->nparams ? q->values : NULL, on_query_result, q);
}

void pool_query(struct pool *pool, const char *sql, int nparams, const char *const *values,
                pgconn_result_cb cb, void *arg)
{
    if (nparams > POOL_QUERY_MAX_PARAMS)
        abort(); /* a programming error */
    struct pooled_query *q = xcalloc(1, sizeof *q);
    q->pool = pool;
    q->sql = sql;
    q->nparams = nparams;
    for (int i = 0; i < nparams; i++)
        q->values[i] = values[i];
    q->cb = cb;
    q->arg = arg;
    pool_acquire(pool, on_acquired, q);
}
