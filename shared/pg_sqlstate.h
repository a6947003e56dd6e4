/*
 * pg_sqlstate: what a query's outcome means to a caller (enum pg_status), and how a server's
 * SQLSTATE error code maps to it.
 *
 * A module of its own because two layers of the core classify errors: pgconn (a query or a
 * batch's results) and pg_pipeline (which failed calls of a group are worth sending again).
 * Kept in pgconn.c, it made pg_pipeline depend on the module that drives it (a circle).
 * Pure logic over strings: unit-tested without a server (check_pgconn.c).
 */
#ifndef LAYERS_PG_SQLSTATE_H
#define LAYERS_PG_SQLSTATE_H

enum pg_status {
    PG_OK,          /* the query ran; the result is valid during the callback */
    PG_ERROR,       /* the server refused the query (a bug or bad data): a 500 */
    PG_UNAVAILABLE, /* could not connect, connection broke, or timed out: a 503 */
    PG_BUSY,        /* (pools only) too many requests already waiting for a connection: a 503 */
};

/* PG_UNAVAILABLE for no SQLSTATE (the connection itself failed) and for the classes that say the
 * server gave up rather than refused (08 connection, 53 resources, 57 operator intervention, e.g.
 * statement_timeout, 58 system error); PG_ERROR for every other. */
enum pg_status pg_classify_sqlstate(const char *sqlstate);

#endif
