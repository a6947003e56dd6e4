/*
 * pgconn: one non-blocking PostgreSQL connection on the server's event loop.
 *
 * libpq can do everything asynchronously (PQconnectStart/PQconnectPoll, PQsendQueryParams,
 * PQconsumeInput), so the event loop never waits for the database: while one query travels,
 * the loop serves other requests. This module wraps that dance in three calls, pgconn_connect,
 * pgconn_query (one call description, struct pg_call) and pgconn_batch (N statements in one
 * round trip, through libpq's pipeline mode), each finishing with exactly one callback.
 *
 * One query path: a handler fills one struct pg_call (the statement and its callback) and hands
 * it down; the pool, the shard set, the replica router and this module each keep a copy of it
 * while it runs, instead of repacking SQL, parameters and callback into structs of their own.
 *
 * Host names: libpq resolves them with a blocking getaddrinfo() inside PQconnectStart. Given a
 * resolver (resolve.h), a connection whose URL names a host resolves it first, without blocking,
 * and then connects to the address (libpq still knows the name, for TLS and messages).
 *
 * Timeouts: connecting (name lookup included) has a deadline (DB_CONNECT_TIMEOUT_MS). A query
 * has two: the server cancels it itself after statement_timeout (set on the session at connect
 * time, so no blocking PQcancel call is needed), and a client-side deadline a little later
 * covers a server that stopped answering altogether; when that one fires the connection is
 * dropped, since its state is unknown. A connection that fails in any way is marked broken; it
 * is never reused.
 *
 * Pipelined calls (pgconn_pipeline_query): calls of different requests in flight together on one
 * connection, each answered in order (see pg_pipeline.h for how their answers are kept apart).
 *
 * Idle connections (in a pool) can be watched: if the server closes one (a restart, an admin
 * terminating backends), the watcher hears it at once and the pool drops it, instead of the
 * next request finding out.
 */
#ifndef LAYERS_PGCONN_H
#define LAYERS_PGCONN_H

#include "pg_sqlstate.h" /* enum pg_status */

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct metrics;
struct pgconn;
struct resolver;

#define PG_MAX_PARAMS 8 /* parameters of one statement */
#define PG_BATCH_MAX  8 /* statements of one batch */

struct pgconn_settings {
    const char *url;           /* libpq connection URL or conninfo string */
    const char *application;   /* application_name, shown in pg_stat_activity */
    long connect_timeout_ms;   /* deadline for connecting */
    long query_timeout_ms;     /* statement_timeout; the client waits 1 s longer */
    bool prepare;              /* prepare parameterised statements once per connection */
    struct resolver *resolver; /* resolves the URL's host name without blocking; NULL: libpq
                                  resolves it (blocking getaddrinfo) */
    const char *options;       /* more server settings for each session ("-c name=value ..."),
                                  or NULL: e.g. a program whose statements must never scan a
                                  table whole (-c enable_seqscan=off, l7-cqrs/relay.c) */
};

/*
 * Called exactly once per pgconn_connect, always from the event loop (never from inside
 * pgconn_connect). On failure the connection is broken; free it.
 */
typedef void (*pgconn_connect_cb)(struct pgconn *conn, bool ok, void *arg);

/*
 * Called exactly once per pgconn_query, from the event loop. `res` is NULL unless status is
 * PG_OK or PG_ERROR, and is freed after the callback returns. After the callback the connection
 * is idle again (or broken: check pgconn_is_broken before reusing it).
 */
typedef void (*pgconn_result_cb)(PGresult *res, enum pg_status status, void *arg);

/*
 * One statement: text parameters, text results. The parameter array is copied with the
 * statement; the strings it points to (and `sql`) are the caller's and must stay valid until
 * the callback. With settings.prepare, `sql` must be a constant whose address identifies it
 * (e.g. RECORDS_SQL_READ): a connection prepares it once and executes it by name from then on.
 */
struct pg_statement {
    const char *sql;                   /* one statement (several only when nparams is 0) */
    int nparams;                       /* used entries of values */
    const char *values[PG_MAX_PARAMS]; /* parameters as text (NULL: SQL NULL) */
};

/* One query, as a handler describes it and every layer below carries it (copied by value). */
struct pg_call {
    struct pg_statement statement; /* what to run */
    pgconn_result_cb cb;           /* called exactly once with its result */
    void *arg;                     /* the callback's argument */
};

/* How a batch's statements commit. */
enum pg_batch_mode {
    PG_BATCH_TRANSACTION, /* one transaction: one sync after the last; a failure rolls back all */
    PG_BATCH_EACH,        /* each on its own: a sync after each; a failure fails only itself */
};

/* One statement's outcome in a batch. */
struct pg_reply {
    enum pg_status status; /* PG_OK, or why it failed (a transaction: every reply has the
                              batch's status, since none took effect) */
    PGresult *res;         /* its result when the server answered it, else NULL */
    bool sent;             /* it reached the connection, so it may have run (false: refused by
                              a pool, or never sent) */
};

/*
 * Called exactly once per batch, from the event loop (a pool may call it before pool_batch
 * returns). `replies` holds one entry per statement, in order; `status` is the first failure's,
 * or PG_OK when every statement succeeded. Results are freed after the callback returns.
 */
typedef void (*pg_batch_cb)(const struct pg_reply *replies, int count, enum pg_status status,
                            void *arg);

/* N statements in one network round trip. Strings as for struct pg_statement. */
struct pg_batch {
    enum pg_batch_mode mode;                      /* one transaction, or each on its own */
    int count;                                    /* 1 to PG_BATCH_MAX statements */
    struct pg_statement statements[PG_BATCH_MAX]; /* run in this order */
    pg_batch_cb cb;                               /* called exactly once */
    void *arg;                                    /* its argument */
};

/* Fails a batch without sending it: every reply gets status, unsent (for pools and routers). */
void pg_batch_fail(const struct pg_batch *batch, enum pg_status status);

/* Called at most once when a watched idle connection breaks. */
typedef void (*pgconn_broken_cb)(struct pgconn *conn, void *arg);

struct pgconn *pgconn_create(struct event_base *base, const struct pgconn_settings *settings,
                             struct metrics *metrics);

/* Closes the connection. A pending connect or query callback is NOT called. NULL is a no-op. */
void pgconn_free(struct pgconn *conn);

void pgconn_connect(struct pgconn *conn, pgconn_connect_cb cb, void *arg);

/*
 * Sends one query. The connection must be idle. The call is copied; see struct pg_statement for
 * what must stay valid until the callback. With settings.prepare, a parameterised statement is
 * prepared on its first use on this connection (one extra round trip) and executed by name from
 * then on, sparing the server from parsing and planning it every time.
 */
void pgconn_query(struct pgconn *conn, const struct pg_call *call);

/*
 * Sends a batch's statements at once in libpq's pipeline mode (one statement each). With
 * settings.prepare, each parameterised statement runs by name: one this connection has not
 * prepared yet is prepared in the same pipeline, just before it (no extra round trip), and is
 * known as prepared once that PREPARE succeeded; a PREPARE that fails (bad SQL) fails its
 * statement as the statement itself would. PG_BATCH_TRANSACTION puts one sync after the last
 * statement: the statements form one implicit transaction, and after a failure the rest are
 * skipped and all roll back. PG_BATCH_EACH puts a sync after each: each commits before the next
 * runs, and the next runs even when one failed. The connection must be idle; the batch is copied.
 */
void pgconn_batch(struct pgconn *conn, const struct pg_batch *batch);

/*
 * Sends one query in pipeline mode, sharing the connection with the other calls in flight on it
 * (pg_pipeline.h): it leaves at the end of the current loop turn, together with the other calls
 * made in that turn (in one packet, as far as TCP_CORK can), with its own sync point or, with
 * sync_per_turn (pgconn_allow_pipeline), one sync for that turn's calls (one transaction; a failure
 * in it makes the others go again alone), and its callback runs when its answer arrives (with a
 * shared sync: when the sync confirms the commit), after those of the calls sent before it. The
 * connection must be idle or already carrying pipelined calls, fewer than the depth given to
 * pgconn_allow_pipeline. A failing statement fails only its own call. A lost connection, or a call
 * past its deadline (the connection is then dropped, since what the server still does is unknown),
 * fails every call in flight on it with PG_UNAVAILABLE. When the last call in flight is answered
 * the connection is idle again.
 */
void pgconn_pipeline_query(struct pgconn *conn, const struct pg_call *call);

/* Lets the connection carry up to depth (>= 1) pipelined calls at once, with a sync point per
 * call, or with sync_per_turn one per loop turn's calls (one transaction: DB_PIPELINE_SYNC,
 * pg_pipeline.h); call once, before the first pgconn_pipeline_query. */
void pgconn_allow_pipeline(struct pgconn *conn, int depth, bool sync_per_turn);

/* Adds one to *counter each time a group of pipelined calls failed and is sent again call by
 * call (sync_per_turn); counter (NULL: none) must outlive conn, e.g. a pool's connector. */
void pgconn_count_group_retries(struct pgconn *conn, unsigned long long *counter);

/* Starts or stops watching an idle connection for the server closing it. */
void pgconn_watch_idle(struct pgconn *conn, pgconn_broken_cb cb, void *arg);
void pgconn_unwatch(struct pgconn *conn);

bool pgconn_is_broken(const struct pgconn *conn);

/* Monotonic milliseconds when the connection was established (for max lifetime). */
long long pgconn_connected_at_ms(const struct pgconn *conn);

/*
 * The host name pgconn_connect resolves first (given a resolver), from a URL or a key=value
 * conninfo string; false when there is none (a Unix socket, several hosts, a hostaddr, a numeric
 * address, a malformed string). Exposed for unit tests.
 */
bool pgconn_host_to_resolve(const char *url, char *host, size_t len)
    __attribute__((warn_unused_result));

#endif
