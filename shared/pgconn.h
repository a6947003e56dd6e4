/*
 * pgconn: one non-blocking PostgreSQL connection on the server's event loop.
 *
 * libpq can do everything asynchronously (PQconnectStart/PQconnectPoll, PQsendQueryParams,
 * PQconsumeInput), so the event loop never waits for the database: while one query travels,
 * the loop serves other requests. This module wraps that dance in three calls, pgconn_connect,
 * pgconn_query and pgconn_query_then (two statements in one round trip, through libpq's
 * pipeline mode), each finishing with exactly one callback.
 *
 * Timeouts: connecting has a deadline (DB_CONNECT_TIMEOUT_MS). A query has two: the server
 * cancels it itself after statement_timeout (set on the session at connect time, so no
 * blocking PQcancel call is needed), and a client-side deadline a little later covers a server
 * that stopped answering altogether; when that one fires the connection is dropped, since its
 * state is unknown. A connection that fails in any way is marked broken; it is never reused.
 *
 * Idle connections (in a pool) can be watched: if the server closes one (a restart, an admin
 * terminating backends), the watcher hears it at once and the pool drops it, instead of the
 * next request finding out.
 */
#ifndef LAYERS_PGCONN_H
#define LAYERS_PGCONN_H

#include <libpq-fe.h>
#include <stdbool.h>

struct event_base;
struct metrics;
struct pgconn;

enum pg_status {
    PG_OK,          /* the query ran; the result is valid during the callback */
    PG_ERROR,       /* the server refused the query (a bug or bad data): a 500 */
    PG_UNAVAILABLE, /* could not connect, connection broke, or timed out: a 503 */
    PG_BUSY,        /* (pools only) too many requests already waiting for a connection: a 503 */
};

struct pgconn_settings {
    const char *url;         /* libpq connection URL or conninfo string */
    const char *application; /* application_name, shown in pg_stat_activity */
    long connect_timeout_ms; /* deadline for connecting */
    long query_timeout_ms;   /* statement_timeout; the client waits 1 s longer */
    bool prepare;            /* prepare parameterised statements once per connection */
};

/*
 * Called exactly once per pgconn_connect, always from the event loop (never from inside
 * pgconn_connect). On failure the connection is broken; free it.
 */
typedef void (*pgconn_connect_cb)(struct pgconn *conn, bool ok, void *arg);

/*
 * Called exactly once per pgconn_query or pgconn_query_then, from the event loop. `res` is NULL
 * unless status is PG_OK or PG_ERROR, and is freed after the callback returns. After the
 * callback the connection is idle again (or broken: check pgconn_is_broken before reusing it).
 */
typedef void (*pgconn_result_cb)(PGresult *res, enum pg_status status, void *arg);

/* Called at most once when a watched idle connection breaks. */
typedef void (*pgconn_broken_cb)(struct pgconn *conn, void *arg);

struct pgconn *pgconn_create(struct event_base *base, const struct pgconn_settings *settings,
                             struct metrics *metrics);

/* Closes the connection. A pending connect or query callback is NOT called. NULL is a no-op. */
void pgconn_free(struct pgconn *conn);

void pgconn_connect(struct pgconn *conn, pgconn_connect_cb cb, void *arg);

/*
 * Sends a parameterised query (text parameters, text results). The connection must be idle.
 * `sql` may hold several statements only when nparams is 0. `sql` and `values` must stay valid
 * until the callback. With settings.prepare, a parameterised statement is prepared on its first
 * use on this connection (one extra round trip) and executed by name from then on, sparing the
 * server from parsing and planning it every time; `sql` must then be a constant whose address
 * identifies it (e.g. RECORDS_SQL_READ).
 */
void pgconn_query(struct pgconn *conn, const char *sql, int nparams, const char *const *values,
                  pgconn_result_cb cb, void *arg);

/*
 * Runs `sql` (parameters as for pgconn_query, one statement) and then `then_sql` (one statement,
 * no parameters) in one network round trip: both are sent at once in libpq's pipeline mode, each
 * followed by a sync, so each runs in its own transaction and `sql` has committed before
 * `then_sql` starts. `then_sql` runs even when `sql` failed. The callback comes once, for the
 * pair: status is the first failure, and on PG_OK `res` is the result of `then_sql`. The
 * connection must be idle; `sql`, `values` and `then_sql` must stay valid until the callback.
 * settings.prepare does not apply: both are sent with their text.
 */
void pgconn_query_then(struct pgconn *conn, const char *sql, int nparams, const char *const *values,
                       const char *then_sql, pgconn_result_cb cb, void *arg);

/* Starts or stops watching an idle connection for the server closing it. */
void pgconn_watch_idle(struct pgconn *conn, pgconn_broken_cb cb, void *arg);
void pgconn_unwatch(struct pgconn *conn);

bool pgconn_is_broken(const struct pgconn *conn);

/* Monotonic milliseconds when the connection was established (for max lifetime). */
long long pgconn_connected_at_ms(const struct pgconn *conn);

/* The SQLSTATE-aware classification used for query results (exposed for unit tests). */
enum pg_status pg_classify_sqlstate(const char *sqlstate);

#endif
