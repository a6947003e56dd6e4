/*
 * Layer 0: connection per request.
 *
 * The simplest way to use a database: open a connection, run the query, close it. It is
 * correct, and non-blocking here (many requests can be connecting at once), but every request
 * pays for a TCP handshake, authentication and PostgreSQL starting a backend process for it,
 * which costs far more than the query. And every request in flight holds one of the server's
 * max_connections slots: past that limit PostgreSQL refuses new connections ("sorry, too many
 * clients already", SQLSTATE 53300), which this layer turns into a clean 503.
 * Layer 1 replaces this file with a pool.
 */
#include "connect_per_request.h"

#include "handlers.h"
#include "server.h"
#include "xalloc.h"

#include <stdlib.h>

#define MAX_PARAMS 4

struct oneshot {
    struct pgconn *conn;            /* opened for this query only */
    const char *sql;                /* caller's, valid until the callback */
    int nparams;                    /* number of parameters */
    const char *values[MAX_PARAMS]; /* caller's strings */
    pgconn_result_cb cb;            /* caller's callback */
    void *arg;                      /* its argument */
};

static void on_result(PGresult *res, enum pg_status status, void *arg)
{
    struct oneshot *q = arg;
    q->cb(res, status, q->arg);
    pgconn_free(q->conn); /* the whole point of layer 0: close after every query */
    free(q);
}

static void on_connected(struct pgconn *conn, bool ok, void *arg)
{
    struct oneshot *q = arg;
    if (!ok) {
        q->cb(NULL, PG_UNAVAILABLE, q->arg);
        pgconn_free(conn);
        free(q);
        return;
    }
    pgconn_query(conn, q->sql, q->nparams, q->nparams ? q->values : NULL, on_result, q);
}

void query_on_new_connection(struct layer *layer, const char *sql, int nparams,
                             const char *const *values, pgconn_result_cb cb, void *arg)
{
    if (nparams > MAX_PARAMS)
        abort(); /* a programming error */
    struct oneshot *q = xcalloc(1, sizeof *q);
    q->sql = sql;
    q->nparams = nparams;
    for (int i = 0; i < nparams; i++)
        q->values[i] = values[i];
    q->cb = cb;
    q->arg = arg;
    q->conn = pgconn_create(server_base(layer->server), &layer->pg, server_metrics(layer->server));
    pgconn_connect(q->conn, on_connected, q);
}
