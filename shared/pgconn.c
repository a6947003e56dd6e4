/*
 * pgconn: one non-blocking PostgreSQL connection (see pgconn.h).
 *
 * States: CONNECTING -> IDLE <-> BUSY, and any of them -> BROKEN. All transitions happen in
 * set_state(); the socket event is re-armed for what libpq asks next (read or write), because
 * libpq may even change sockets while connecting (several hosts in one URL).
 *
 * A pair (pgconn_query_then) is BUSY like one query, in libpq's pipeline mode: both statements
 * and a sync after each leave together, and the answer is read as it arrives, in this order:
 * the first statement's result, NULL, PGRES_PIPELINE_SYNC, the second's result, NULL,
 * PGRES_PIPELINE_SYNC. Each sync ends an implicit transaction, so the first statement commits
 * before the second runs (with one sync they would share a transaction). The pair ends at its
 * last sync, and the connection leaves pipeline mode before it is idle again.
 */
#include "pgconn.h"

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"

#include <event2/event.h>
#include <event2/event_struct.h> /* events embedded in our structs */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_DEADLINE_GRACE_MS 1000
#define MAX_PREPARED             8 /* statements a connection prepares; more run unprepared */

enum pgconn_state { PGCONN_NEW, PGCONN_CONNECTING, PGCONN_IDLE, PGCONN_BUSY, PGCONN_BROKEN };

struct pgconn {
    struct event_base *base;            /* the loop it lives on */
    struct metrics *metrics;            /* pg_* counters */
    struct pgconn_settings settings;    /* copy; strings owned */
    PGconn *pg;                         /* libpq's connection */
    enum pgconn_state state;            /* see set_state() */
    struct event io;                    /* socket readiness, re-assigned as libpq asks */
    bool io_armed;                      /* io has been assigned and may be pending */
    struct event timer;                 /* connect or query deadline; also defers failures */
    long long connected_at_ms;          /* monotonic, for the pool's max lifetime */
    pgconn_connect_cb connect_cb;       /* pending connect callback */
    pgconn_result_cb result_cb;         /* pending query callback */
    void *cb_arg;                       /* argument of the pending callback */
    PGresult *result;                   /* result being collected (first error wins) */
    const char *prepared[MAX_PREPARED]; /* SQL texts prepared here, by name "s<index>" */
    int prepared_count;                 /* used entries of prepared */
    bool preparing;                     /* the pending result is a PREPARE; the query follows */
    const char *query_sql;              /* the current query (caller's, valid until callback) */
    int query_nparams;                  /* its parameter count */
    const char *const *query_values;    /* its parameters (caller's, valid until callback) */
    int syncs_due;                      /* a pair's pipeline syncs not read yet (0: one query) */
    bool awaiting_sync;                 /* a pair's statement has ended (NULL): its sync is next */
    pgconn_broken_cb broken_cb;         /* idle watcher, or NULL */
    void *broken_arg;                   /* its argument */
};

static void on_io(evutil_socket_t fd, short what, void *arg);
static bool continue_after_prepare(struct pgconn *conn);

static void set_state(struct pgconn *conn, enum pgconn_state next)
{
    conn->state = next;
    if (next == PGCONN_BROKEN || next == PGCONN_IDLE) {
        if (conn->io_armed)
            event_del(&conn->io);
        event_del(&conn->timer);
    }
}

/* Arms the socket event for reading, writing or both, on libpq's current socket. */
static void wait_for(struct pgconn *conn, short what)
{
    if (conn->io_armed)
        event_del(&conn->io);
    event_assign(&conn->io, conn->base, PQsocket(conn->pg), what, on_io, conn);
    conn->io_armed = true;
    event_add(&conn->io, NULL);
}

static void arm_timer(struct pgconn *conn, long ms)
{
    struct timeval tv = ms_to_timeval(ms);
    event_add(&conn->timer, &tv);
}

/* ---- finishing a connect or a query: exactly one callback ---- */

static void finish_connect(struct pgconn *conn, bool ok)
{
    pgconn_connect_cb cb = conn->connect_cb;
    conn->connect_cb = NULL;
    if (ok) {
        metrics_inc(conn->metrics, METRIC_PG_CONNECTS);
        conn->connected_at_ms = monotonic_ms();
        set_state(conn, PGCONN_IDLE);
    } else {
        metrics_inc(conn->metrics, METRIC_PG_CONNECT_FAILURES);
        set_state(conn, PGCONN_BROKEN);
    }
    cb(conn, ok, conn->cb_arg);
}

/* After a pair, leaves pipeline mode; libpq refuses only while results are still due. */
static bool leave_pipeline(struct pgconn *conn)
{
    conn->syncs_due = 0;
    return PQpipelineStatus(conn->pg) == PQ_PIPELINE_OFF || PQexitPipelineMode(conn->pg) == 1;
}

static void finish_query(struct pgconn *conn, enum pg_status status)
{
    pgconn_result_cb cb = conn->result_cb;
    PGresult *res = conn->result;
    conn->result_cb = NULL;
    conn->result = NULL;
    if (status != PG_OK)
        metrics_inc(conn->metrics, METRIC_PG_QUERY_ERRORS);
    bool broken =
        status == PG_UNAVAILABLE || !leave_pipeline(conn) || PQstatus(conn->pg) != CONNECTION_OK;
    set_state(conn, broken ? PGCONN_BROKEN : PGCONN_IDLE);
    cb(status == PG_UNAVAILABLE ? NULL : res, status, conn->cb_arg);
    PQclear(res);
}

enum pg_status pg_classify_sqlstate(const char *sqlstate)
{
    if (sqlstate == NULL)
        return PG_UNAVAILABLE; /* no server error: the connection itself failed */
    /* 08 connection exception, 53 insufficient resources, 57 operator intervention
     * (57014: statement_timeout cancelled the query), 58 system error. */
    if (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "53", 2) == 0 ||
        strncmp(sqlstate, "57", 2) == 0 || strncmp(sqlstate, "58", 2) == 0)
        return PG_UNAVAILABLE;
    return PG_ERROR;
}

static enum pg_status classify_result(const PGresult *res)
{
    switch (PQresultStatus(res)) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
        return PG_OK;
    default:
        return pg_classify_sqlstate(PQresultErrorField(res, PG_DIAG_SQLSTATE));
    }
}

static void log_failure(struct pgconn *conn, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", conn->pg ? PQerrorMessage(conn->pg) : "out of memory");
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' '; /* libpq's messages span lines; a log entry must not */
    size_t len = strlen(msg);
    while (len > 0 && msg[len - 1] == ' ')
        msg[--len] = '\0';
    LOG_WARN("postgres: %s: %s", what, msg);
}

/* ---- connecting ---- */

/* Server notices ("relation already exists, skipping") go to the debug log, not stderr. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    LOG_DEBUG("postgres notice: %.*s", (int)strcspn(message, "\n"), message);
}

static void poll_connect(struct pgconn *conn)
{
    switch (PQconnectPoll(conn->pg)) {
    case PGRES_POLLING_READING:
        wait_for(conn, EV_READ);
        return;
    case PGRES_POLLING_WRITING:
        wait_for(conn, EV_WRITE);
        return;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(conn->pg, 1) != 0) {
            log_failure(conn, "cannot switch to non-blocking mode");
            finish_connect(conn, false);
            return;
        }
        finish_connect(conn, true);
        return;
    case PGRES_POLLING_FAILED:
    default:
        log_failure(conn, "connection failed");
        finish_connect(conn, false);
        return;
    }
}

void pgconn_connect(struct pgconn *conn, pgconn_connect_cb cb, void *arg)
{
    char options[64];
    snprintf(options, sizeof options, "-c statement_timeout=%ld", conn->settings.query_timeout_ms);
    const char *keywords[] = {"dbname", "application_name", "options", NULL};
    const char *values[] = {conn->settings.url, conn->settings.application, options, NULL};

    conn->connect_cb = cb;
    conn->cb_arg = arg;
    conn->state = PGCONN_CONNECTING;
    conn->pg = PQconnectStartParams(keywords, values, 1);
    arm_timer(conn, conn->settings.connect_timeout_ms);
    if (conn->pg == NULL || PQstatus(conn->pg) == CONNECTION_BAD) {
        /* Report from the loop, never from inside this call: a zero-length deadline. */
        arm_timer(conn, 0);
        return;
    }
    PQsetNoticeProcessor(conn->pg, on_notice, conn);
    wait_for(conn, EV_WRITE); /* libpq: behave as if PQconnectPoll said POLLING_WRITING */
}

/* ---- querying ---- */

/* Sends what libpq has buffered; waits for writability if the socket is full. */
static bool flush_and_wait(struct pgconn *conn)
{
    int flushed = PQflush(conn->pg);
    if (flushed < 0)
        return false;
    wait_for(conn, flushed == 1 ? EV_READ | EV_WRITE : EV_READ);
    return true;
}

/* Keeps the first error, else the last result (a multi-statement script, or a pair). */
static void keep_result(struct pgconn *conn, PGresult *res)
{
    if (conn->result != NULL && classify_result(conn->result) != PG_OK) {
        PQclear(res);
    } else {
        PQclear(conn->result);
        conn->result = res;
    }
}

/*
 * libpq has the whole answer: finishes the query, or, after a PREPARE, sends the query itself.
 * Returns true when the query finished (the callback ran, so conn may be gone).
 */
static bool answer_complete(struct pgconn *conn)
{
    enum pg_status status = conn->result ? classify_result(conn->result) : PG_ERROR;
    if (conn->preparing && status == PG_OK) {
        if (continue_after_prepare(conn))
            return false; /* now wait for the query's own result */
        log_failure(conn, "cannot send query");
        finish_query(conn, PG_UNAVAILABLE);
        return true;
    }
    if (status != PG_OK && conn->result)
        LOG_WARN("postgres: query failed: %s",
                 PQresultErrorField(conn->result, PG_DIAG_MESSAGE_PRIMARY));
    finish_query(conn, status);
    return true;
}

/* Takes one step of a pair's answer (see the top of this file); returns true at its end. */
static bool pipeline_step(struct pgconn *conn, PGresult *res)
{
    if (res == NULL) { /* one statement's results are complete; its sync is next */
        conn->awaiting_sync = true;
        return false;
    }
    conn->awaiting_sync = false;
    if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
        PQclear(res);
        return --conn->syncs_due == 0;
    }
    keep_result(conn, res); /* a statement's result (or PIPELINE_ABORTED, after an error) */
    return false;
}

/*
 * Reads what arrived; finishes the query once libpq has the whole answer. Returns true when
 * the query finished (the callback ran, so conn may be gone), false when more must arrive.
 */
static bool read_results(struct pgconn *conn)
{
    if (!PQconsumeInput(conn->pg)) {
        log_failure(conn, "connection lost during a query");
        finish_query(conn, PG_UNAVAILABLE);
        return true;
    }
    while (!PQisBusy(conn->pg)) {
        PGresult *res = PQgetResult(conn->pg);
        if (conn->syncs_due > 0) { /* a pair */
            /* A NULL where a sync is due: libpq has nothing more to give (the connection
             * failed), and would keep answering NULL. */
            if (res == NULL && (conn->awaiting_sync || PQstatus(conn->pg) == CONNECTION_BAD)) {
                log_failure(conn, "connection lost during a query");
                finish_query(conn, PG_UNAVAILABLE);
                return true;
            }
            if (pipeline_step(conn, res))
                return answer_complete(conn);
            continue;
        }
        if (res == NULL)
            return answer_complete(conn);
        keep_result(conn, res);
    }
    if (PQstatus(conn->pg) == CONNECTION_BAD) {
        log_failure(conn, "connection lost during a query");
        finish_query(conn, PG_UNAVAILABLE);
        return true;
    }
    return false;
}

static int prepared_index(const struct pgconn *conn, const char *sql)
{
    for (int i = 0; i < conn->prepared_count; i++)
        if (conn->prepared[i] == sql) /* SQL texts are static constants: compare addresses */
            return i;
    return -1;
}

/* Sends the query itself: prepared if it can be, else with its text. */
static int send_query(struct pgconn *conn)
{
    const char *sql = conn->query_sql;
    int nparams = conn->query_nparams;
    int index = prepared_index(conn, sql);
    if (index >= 0) {
        char name[16];
        snprintf(name, sizeof name, "s%d", index);
        return PQsendQueryPrepared(conn->pg, name, nparams, conn->query_values, NULL, NULL, 0);
    }
    if (nparams == 0 && conn->query_values == NULL)
        return PQsendQuery(conn->pg, sql); /* simple protocol: may hold several statements */
    return PQsendQueryParams(conn->pg, sql, nparams, NULL, conn->query_values, NULL, NULL, 0);
}

/* Whether to PREPARE sql first (one extra round trip, once per connection and statement). */
static bool should_prepare(const struct pgconn *conn)
{
    return conn->settings.prepare && conn->query_nparams > 0 &&
           prepared_index(conn, conn->query_sql) < 0 && conn->prepared_count < MAX_PREPARED;
}

/* An idle connection becomes busy with a query (or a pair), under the query deadline. */
static void begin_query(struct pgconn *conn, const char *sql, int nparams,
                        const char *const *values, pgconn_result_cb cb, void *arg)
{
    conn->result_cb = cb;
    conn->cb_arg = arg;
    conn->result = NULL;
    conn->query_sql = sql;
    conn->query_nparams = nparams;
    conn->query_values = values;
    conn->preparing = false;
    conn->syncs_due = 0;
    conn->awaiting_sync = false;
    pgconn_unwatch(conn);
    conn->state = PGCONN_BUSY;
    arm_timer(conn, conn->settings.query_timeout_ms + CLIENT_DEADLINE_GRACE_MS);
}

/* Nothing could be sent: the connection is broken, and the timer reports it from the loop. */
static void send_failed(struct pgconn *conn)
{
    log_failure(conn, "cannot send query");
    conn->state = PGCONN_BROKEN;
    arm_timer(conn, 0);
}

void pgconn_query(struct pgconn *conn, const char *sql, int nparams, const char *const *values,
                  pgconn_result_cb cb, void *arg)
{
    begin_query(conn, sql, nparams, values, cb, arg);
    metrics_inc(conn->metrics, METRIC_PG_QUERIES);
    int sent;
    conn->preparing = should_prepare(conn);
    if (conn->preparing) {
        char name[16];
        snprintf(name, sizeof name, "s%d", conn->prepared_count);
        sent = PQsendPrepare(conn->pg, name, sql, nparams, NULL);
    } else {
        sent = send_query(conn);
    }
    if (!sent || !flush_and_wait(conn))
        send_failed(conn);
}

void pgconn_query_then(struct pgconn *conn, const char *sql, int nparams, const char *const *values,
                       const char *then_sql, pgconn_result_cb cb, void *arg)
{
    begin_query(conn, sql, nparams, values, cb, arg);
    metrics_add(conn->metrics, METRIC_PG_QUERIES, 2);
    conn->syncs_due = 2;
    /* Both with their text: preparing first would cost the round trip the pair saves. libpq 15's
     * PQpipelineSync also flushes (there is no PQsendPipelineSync before 17), so the two halves
     * may leave in two packets, but together: the answers are awaited once. */
    bool sent = PQenterPipelineMode(conn->pg) == 1 &&
                PQsendQueryParams(conn->pg, sql, nparams, NULL, values, NULL, NULL, 0) == 1 &&
                PQpipelineSync(conn->pg) == 1 &&
                PQsendQueryParams(conn->pg, then_sql, 0, NULL, NULL, NULL, NULL, 0) == 1 &&
                PQpipelineSync(conn->pg) == 1;
    if (!sent || !flush_and_wait(conn))
        send_failed(conn);
}

/* The PREPARE finished well: remember it and send the query itself. */
static bool continue_after_prepare(struct pgconn *conn)
{
    conn->preparing = false;
    conn->prepared[conn->prepared_count++] = conn->query_sql;
    PQclear(conn->result);
    conn->result = NULL;
    return send_query(conn) && flush_and_wait(conn);
}

/* ---- events ---- */

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct pgconn *conn = arg;
    (void)fd;
    switch (conn->state) {
    case PGCONN_CONNECTING:
        poll_connect(conn);
        return;
    case PGCONN_BUSY:
        if ((what & EV_WRITE) && !flush_and_wait(conn)) {
            log_failure(conn, "cannot send query");
            finish_query(conn, PG_UNAVAILABLE);
            return;
        }
        if ((what & EV_READ) && read_results(conn))
            return; /* finished: conn may have been freed by the callback */
        if (!(what & EV_WRITE) && !flush_and_wait(conn)) { /* wait for the rest */
            log_failure(conn, "cannot send query");
            finish_query(conn, PG_UNAVAILABLE);
        }
        return;
    case PGCONN_IDLE:
        /* A watched idle connection became readable: a notice, or the server closing it. */
        if (!PQconsumeInput(conn->pg) || PQstatus(conn->pg) == CONNECTION_BAD) {
            log_failure(conn, "idle connection closed by the server");
            pgconn_broken_cb cb = conn->broken_cb;
            set_state(conn, PGCONN_BROKEN);
            conn->broken_cb = NULL;
            if (cb)
                cb(conn, conn->broken_arg);
        }
        return;
    case PGCONN_NEW:
    case PGCONN_BROKEN:
        return;
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pgconn *conn = arg;
    (void)fd, (void)what;
    if (conn->connect_cb != NULL) {
        if (conn->pg != NULL && PQstatus(conn->pg) != CONNECTION_BAD)
            LOG_WARN("postgres: connect timed out after %ld ms", conn->settings.connect_timeout_ms);
        else
            log_failure(conn, "connection failed");
        finish_connect(conn, false);
    } else if (conn->result_cb != NULL) {
        if (conn->state != PGCONN_BROKEN) {
            metrics_inc(conn->metrics, METRIC_PG_QUERY_TIMEOUTS);
            LOG_WARN("postgres: no answer within %ld ms; dropping the connection",
                     conn->settings.query_timeout_ms + CLIENT_DEADLINE_GRACE_MS);
        }
        finish_query(conn, PG_UNAVAILABLE);
    }
}

/* ---- life cycle ---- */

struct pgconn *pgconn_create(struct event_base *base, const struct pgconn_settings *settings,
                             struct metrics *metrics)
{
    struct pgconn *conn = xcalloc(1, sizeof *conn);
    conn->base = base;
    conn->metrics = metrics;
    conn->settings = *settings;
    conn->settings.url = xstrdup(settings->url);
    conn->settings.application = xstrdup(settings->application ? settings->application : "layers");
    conn->state = PGCONN_NEW;
    evtimer_assign(&conn->timer, base, on_timer, conn);
    return conn;
}

void pgconn_free(struct pgconn *conn)
{
    if (conn == NULL)
        return;
    if (conn->io_armed)
        event_del(&conn->io);
    event_del(&conn->timer);
    PQclear(conn->result);
    if (conn->pg != NULL)
        PQfinish(conn->pg);
    free((char *)conn->settings.url);
    free((char *)conn->settings.application);
    free(conn);
}

void pgconn_watch_idle(struct pgconn *conn, pgconn_broken_cb cb, void *arg)
{
    conn->broken_cb = cb;
    conn->broken_arg = arg;
    if (conn->state == PGCONN_IDLE)
        wait_for(conn, EV_READ | EV_PERSIST);
}

void pgconn_unwatch(struct pgconn *conn)
{
    conn->broken_cb = NULL;
    if (conn->io_armed)
        event_del(&conn->io);
}

bool pgconn_is_broken(const struct pgconn *conn)
{
    return conn->state == PGCONN_BROKEN || conn->pg == NULL || PQstatus(conn->pg) != CONNECTION_OK;
}

long long pgconn_connected_at_ms(const struct pgconn *conn)
{
    return conn->connected_at_ms;
}
