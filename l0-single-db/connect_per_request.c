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

struct oneshot {
    struct pgconn *conn;   /* opened for this query only */
    struct pg_call caller; /* the caller's call, as it came */
};

static void on_result(PGresult *res, enum pg_status status, void *arg)
{
    struct oneshot *q = arg;
    q->caller.cb(res, status, q->caller.arg);
    pgconn_free(q->conn); /* the whole point of layer 0: close after every query */
    free(q);
}

static void on_connected(struct pgconn *conn, bool ok, void *arg)
{
    struct oneshot *q = arg;
    if (!ok) {
        q->caller.cb(NULL, PG_UNAVAILABLE, q->caller.arg);
        pgconn_free(conn);
        free(q);
        return;
    }
    pgconn_query(conn, &(struct pg_call){q->caller.statement, on_result, q});
}

void query_on_new_connection(struct layer *layer, const struct pg_call *call)
{
    struct oneshot *q = xcalloc(1, sizeof *q);
    q->caller = *call;
    q->conn = pgconn_create(server_base(layer->server), &layer->pg, server_metrics(layer->server));
    pgconn_connect(q->conn, on_connected, q);
}
