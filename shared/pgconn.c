/*
 * pgconn: one non-blocking PostgreSQL connection (see pgconn.h).
 *
 * States, and every transition in set_state() (which also arms and disarms the socket event
 * and the deadline, so no other place does):
 *
 *   NEW -> RESOLVING -> CONNECTING -> IDLE -> PREPARING -> QUERYING -> IDLE
 *          (a resolver     |           |  \-> QUERYING -> IDLE
 *           and a host     |           |---> PIPELINE -> IDLE          and any -> BROKEN
 *           name)          |           \---> SHARED -> IDLE
 *                          |
 *                          \-- NEW -> CONNECTING (no lookup)
 *
 * PREPARING: a statement's PREPARE is out; the query follows it on the same connection.
 * PIPELINE: a batch is out in libpq's pipeline mode, and its answer is read as it arrives:
 * for each statement, [its PREPARE's result, NULL,] its result, then NULL (a statement not
 * prepared on the connection yet is prepared in the batch, right before it, and recorded as
 * prepared once its PREPARE's result says it succeeded); a PGRES_PIPELINE_SYNC after each sync
 * (after every statement for PG_BATCH_EACH, after the last one for PG_BATCH_TRANSACTION); after a
 * failure inside a transaction, PGRES_PIPELINE_ABORTED for each statement skipped. The batch ends
 * at its last sync, and the connection leaves pipeline mode before it is idle again.
 *
 * SHARED: pipelined calls of several requests are in flight (pg_pipeline.h), each with its own
 * sync, or one sync per loop turn's group (sync_per_turn); more may be sent while
 * answers arrive. A call is sent at the end of the loop turn that made it (send_turn), with the
 * others of that turn: the newest `unsent` calls of the FIFO (a failed group's requeued calls
 * among them). The
 * deadline is the oldest call's, re-armed as calls leave; the connection leaves pipeline mode and
 * is idle again when the last one does.
 *
 * The socket event is re-armed for what libpq asks next (read or write), because libpq may even
 * change sockets while connecting (several hosts in one URL). A pipelined connection instead
 * keeps one persistent read event from its first call on, through SHARED and the idle spells
 * between bursts (the pool's idle watch is that event): re-arming it per call and per burst
 * was the largest count of system calls per pipelined read (epoll_ctl).
 */
#include "pgconn.h"

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "pg_pipeline.h"
#include "pg_sqlstate.h"
#include "resolve.h"
#include "xalloc.h"

#include <event2/event.h>
#include <event2/event_struct.h> /* events embedded in our structs */
#include <netinet/in.h>
#include <netinet/tcp.h> /* TCP_CORK */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CLIENT_DEADLINE_GRACE_MS 1000
#define MAX_PREPARED             8 /* statements a connection prepares; more run unprepared */
#define HOST_MAX                 256

enum pgconn_state {
    PGCONN_NEW,        /* created, not connecting yet */
    PGCONN_RESOLVING,  /* looking the URL's host name up (resolver) */
    PGCONN_CONNECTING, /* libpq's PQconnectPoll dance */
    PGCONN_IDLE,       /* connected, nothing in flight (maybe watched) */
    PGCONN_PREPARING,  /* a query's PREPARE is in flight; the query follows */
    PGCONN_QUERYING,   /* one query is in flight */
    PGCONN_PIPELINE,   /* a batch is in flight, in pipeline mode */
    PGCONN_SHARED,     /* pipelined calls of several requests are in flight */
    PGCONN_BROKEN,     /* failed; never reused */
};

struct pgconn {
    struct event_base *base;               /* the loop it lives on */
    struct metrics *metrics;               /* pg_* counters */
    struct pgconn_settings settings;       /* copy; strings owned */
    PGconn *pg;                            /* libpq's connection */
    enum pgconn_state state;               /* see set_state() */
    struct event io;                       /* socket readiness, re-assigned as libpq asks */
    bool io_armed;                         /* io has been assigned and may be pending */
    short io_what;                         /* the events io was armed for */
    struct event timer;                    /* connect or query deadline; also defers failures */
    struct resolve_request *lookup;        /* the host name lookup under way, or NULL */
    long long connected_at_ms;             /* monotonic, for the pool's max lifetime */
    pgconn_connect_cb connect_cb;          /* pending connect callback */
    void *connect_arg;                     /* its argument */
    struct pg_call call;                   /* the pending query (call.cb NULL: none) */
    PGresult *result;                      /* the query's result being collected (first error
                                              wins) */
    struct pg_batch batch;                 /* the pending batch (batch.cb NULL: none) */
    struct pg_reply replies[PG_BATCH_MAX]; /* its replies so far */
    int reading;                           /* the batch statement whose result comes next */
    int batch_prepares[PG_BATCH_MAX];      /* per batch statement: the slot of prepared its
                                              PREPARE, sent just before it, creates; or -1 */
    bool reading_prepare;                  /* the results coming are the PREPARE's of statement
                                              `reading`, not its own */
    int syncs_due;                         /* the batch's syncs not read yet */
    bool after_null;                       /* the last thing read was a statement's end (NULL):
                                              another NULL means libpq has nothing more */
    struct pg_pipeline *pipeline;          /* the pipelined calls in flight (pgconn_allow_pipeline),
                                              or NULL */
    struct event send_turn;                /* with pipeline: sends the calls of one loop turn
                                              together (activated by the first of them) */
    int unsent;                            /* the newest pipelined calls, not sent yet */
    bool sync_per_turn;                    /* pipelined: one sync per loop turn's calls (else one
                                              per call) */
    unsigned long long *group_retries;     /* counts failed groups sent again, or NULL (not
                                              owned: pgconn_count_group_retries) */
    const char *prepared[MAX_PREPARED];    /* SQL texts prepared here, by name "s<index>"
                                              (NULL: free again, its PREPARE failed) */
    int prepared_count;                    /* used entries of prepared (NULL ones: free) */
    int preparing_slot;                    /* the slot the single query's PREPARE names */
    pgconn_broken_cb broken_cb;            /* idle watcher, or NULL */
    void *broken_arg;                      /* its argument */
};

static void on_io(evutil_socket_t fd, short what, void *arg);

/* Arms the socket event for reading, writing or both, on libpq's current socket. */
static void wait_for(struct pgconn *conn, short what)
{
    evutil_socket_t fd = PQsocket(conn->pg);
    if (conn->io_armed && conn->io_what == what && event_get_fd(&conn->io) == fd &&
        event_pending(&conn->io, EV_READ | EV_WRITE, NULL))
        return; /* armed so already (a persistent read): no epoll_ctl */
    if (conn->io_armed)
        event_del(&conn->io);
    event_assign(&conn->io, conn->base, fd, what, on_io, conn);
    conn->io_armed = true;
    conn->io_what = what;
    event_add(&conn->io, NULL);
}

/* A pipelined connection's socket is read by one persistent event, from its first call on,
 * while it is idle between bursts too (the pool's idle watch is the same event): arming and
 * disarming it per call or per burst cost epoll_ctl system calls, the largest count per read. */
static bool reads_persistently(const struct pgconn *conn)
{
    return conn->pipeline != NULL && conn->io_armed && conn->io_what == (EV_READ | EV_PERSIST);
}

static void stop_io(struct pgconn *conn)
{
    if (conn->io_armed)
        event_del(&conn->io);
    conn->io_what = 0;
}

static void arm_timer(struct pgconn *conn, long ms)
{
    struct timeval tv = ms_to_timeval(ms);
    event_add(&conn->timer, &tv);
}

static bool is_busy(enum pgconn_state state)
{
    return state == PGCONN_PREPARING || state == PGCONN_QUERYING || state == PGCONN_PIPELINE ||
           state == PGCONN_SHARED;
}

/*
 * The one place the state changes. Entering a state sets up what it waits under: a connect
 * starts the connect deadline (covering the lookup too), a query or batch taken from IDLE stops
 * the idle watch and starts the query deadline, and IDLE or BROKEN stop every event and lookup.
 */
static void set_state(struct pgconn *conn, enum pgconn_state next)
{
    enum pgconn_state was = conn->state;
    conn->state = next;
    switch (next) {
    case PGCONN_RESOLVING:
        arm_timer(conn, conn->settings.connect_timeout_ms);
        break;
    case PGCONN_CONNECTING:
        if (was == PGCONN_NEW) /* after a lookup, the deadline already runs */
            arm_timer(conn, conn->settings.connect_timeout_ms);
        break;
    case PGCONN_PREPARING:
    case PGCONN_QUERYING:
    case PGCONN_PIPELINE:
    case PGCONN_SHARED:
        if (!is_busy(was)) { /* from IDLE (PREPARING -> QUERYING keeps the deadline) */
            conn->broken_cb = NULL;
            if (next != PGCONN_SHARED || !reads_persistently(conn))
                stop_io(conn);
            arm_timer(conn, conn->settings.query_timeout_ms + CLIENT_DEADLINE_GRACE_MS);
        }
        break;
    case PGCONN_IDLE:
    case PGCONN_BROKEN:
        if (next == PGCONN_BROKEN || !reads_persistently(conn))
            stop_io(conn);
        event_del(&conn->timer);
        resolve_cancel(conn->lookup);
        conn->lookup = NULL;
        break;
    case PGCONN_NEW:
        break;
    }
}

/* Something failed where its callback must not run yet (inside the caller's call): the
 * connection is broken, and the timer reports it from the loop. */
static void fail_later(struct pgconn *conn)
{
    set_state(conn, PGCONN_BROKEN);
    arm_timer(conn, 0);
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

/* ---- connecting ---- */

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
    cb(conn, ok, conn->connect_arg);
}

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

/*
 * The host name to resolve before connecting, or false when there is none to look up: no host
 * (a Unix socket), a socket directory, several hosts (libpq's own fail-over), a hostaddr given
 * already, or a numeric address. Both URL and key=value forms (PQconninfoParse reads both).
 */
bool pgconn_host_to_resolve(const char *url, char *host, size_t len)
{
    PQconninfoOption *options = PQconninfoParse(url, NULL);
    if (options == NULL)
        return false; /* malformed: let libpq report it */
    const char *name = NULL;
    bool has_hostaddr = false;
    for (PQconninfoOption *o = options; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "host") == 0 && o->val != NULL && o->val[0] != '\0')
            name = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0 && o->val != NULL && o->val[0] != '\0')
            has_hostaddr = true;
    }
    bool found = name != NULL && !has_hostaddr && name[0] != '/' && strchr(name, ',') == NULL &&
                 strlen(name) < len && !resolve_is_numeric(name);
    if (found)
        snprintf(host, len, "%s", name);
    PQconninfoFree(options);
    return found;
}

/* Starts libpq's connect; hostaddr (a numeric address, or NULL) overrides the URL's. */
static void start_connect(struct pgconn *conn, const char *hostaddr)
{
    char options[256];
    snprintf(options, sizeof options, "-c statement_timeout=%ld %s",
             conn->settings.query_timeout_ms,
             conn->settings.options != NULL ? conn->settings.options : "");
    /* Keywords are applied in order, and the URL (expanded from dbname) overrides those before
     * it: so gssencmode and sslmode below are defaults a URL can change (?sslmode=require).
     * libpq's own defaults ("prefer" both) cost about 1.4 ms of CPU per connection inside
     * PQconnectStart/PQconnectPoll, on the event loop (a Kerberos credential lookup and a TLS
     * context, then refused by a server without them): a connection per request (layer 0)
     * paid it on every request. Keywords after dbname override the URL, so the host name stays
     * known to libpq while the address is the one already resolved. */
    const char *keywords[] = {"gssencmode", "sslmode",  "dbname", "application_name",
                              "options",    "hostaddr", NULL};
    const char *values[] = {
        "disable", "disable", conn->settings.url, conn->settings.application, options,
        hostaddr,  NULL};
    if (hostaddr == NULL)
        keywords[5] = NULL;
    set_state(conn, PGCONN_CONNECTING);
    conn->pg = PQconnectStartParams(keywords, values, 1);
    if (conn->pg == NULL || PQstatus(conn->pg) == CONNECTION_BAD) {
        /* Report from the loop, never from inside pgconn_connect: a zero-length deadline. */
        arm_timer(conn, 0);
        return;
    }
    PQsetNoticeProcessor(conn->pg, on_notice, conn);
    wait_for(conn, EV_WRITE); /* libpq: behave as if PQconnectPoll said POLLING_WRITING */
}

static void on_resolved(const char *address, void *arg)
{
    struct pgconn *conn = arg;
    conn->lookup = NULL;
    if (address == NULL) {
        LOG_WARN("postgres: connection failed: the database host could not be resolved");
        finish_connect(conn, false);
        return;
    }
    start_connect(conn, address);
}

void pgconn_connect(struct pgconn *conn, pgconn_connect_cb cb, void *arg)
{
    conn->connect_cb = cb;
    conn->connect_arg = arg;
    char host[HOST_MAX];
    if (conn->settings.resolver != NULL &&
        pgconn_host_to_resolve(conn->settings.url, host, sizeof host)) {
        set_state(conn, PGCONN_RESOLVING);
        conn->lookup = resolver_lookup(conn->settings.resolver, host, on_resolved, conn);
        return;
    }
    start_connect(conn, NULL);
}

/* ---- finishing a query or a batch: exactly one callback ---- */

static void finish_query(struct pgconn *conn, enum pg_status status)
{
    struct pg_call call = conn->call;
    PGresult *res = conn->result;
    conn->call.cb = NULL;
    conn->result = NULL;
    if (status != PG_OK)
        metrics_inc(conn->metrics, METRIC_PG_QUERY_ERRORS);
    bool broken = status == PG_UNAVAILABLE || PQstatus(conn->pg) != CONNECTION_OK;
    set_state(conn, broken ? PGCONN_BROKEN : PGCONN_IDLE);
    call.cb(status == PG_UNAVAILABLE ? NULL : res, status, call.arg);
    PQclear(res);
}

/* After a batch, leaves pipeline mode; libpq refuses only while results are still due. */
static bool leave_pipeline(struct pgconn *conn)
{
    return PQpipelineStatus(conn->pg) == PQ_PIPELINE_OFF || PQexitPipelineMode(conn->pg) == 1;
}

/*
 * Ends a batch. lost: the connection failed or timed out, so the statements whose answer has
 * not arrived are unavailable (they may have run).
 */
static void finish_batch(struct pgconn *conn, bool lost)
{
    struct pg_batch batch = conn->batch;
    struct pg_reply replies[PG_BATCH_MAX];
    memcpy(replies, conn->replies, sizeof replies);
    memset(conn->replies, 0, sizeof conn->replies); /* the results are ours now */
    conn->batch.cb = NULL;
    enum pg_status status = PG_OK;
    for (int i = 0; i < batch.count; i++) {
        struct pg_reply *r = &replies[i];
        if (r->res == NULL || PQresultStatus(r->res) == PGRES_PIPELINE_ABORTED)
            r->status = lost || r->res == NULL ? PG_UNAVAILABLE : PG_ERROR;
        else
            r->status = classify_result(r->res);
        if (status == PG_OK && r->status != PG_OK) {
            status = r->status;
            if (r->res != NULL && r->status == PG_ERROR)
                LOG_WARN("postgres: batch statement %d failed: %s", i + 1,
                         PQresultErrorField(r->res, PG_DIAG_MESSAGE_PRIMARY));
        }
    }
    if (batch.mode == PG_BATCH_TRANSACTION && status != PG_OK)
        for (int i = 0; i < batch.count; i++)
            replies[i].status = status; /* none took effect */
    if (status != PG_OK)
        metrics_inc(conn->metrics, METRIC_PG_QUERY_ERRORS);
    bool broken = lost || status == PG_UNAVAILABLE || !leave_pipeline(conn) ||
                  PQstatus(conn->pg) != CONNECTION_OK;
    set_state(conn, broken ? PGCONN_BROKEN : PGCONN_IDLE);
    batch.cb(replies, batch.count, status, batch.arg);
    for (int i = 0; i < batch.count; i++)
        PQclear(replies[i].res);
}

/* Pipelined calls not handed back yet: on the wire, or answered and held (pg_pipeline.h). */
static int in_flight(const struct pgconn *conn)
{
    return conn->pipeline ? pg_pipeline_count(conn->pipeline) + pg_pipeline_held(conn->pipeline)
                          : 0;
}

/* Pipelined calls on the wire (the newest `unsent` of them not sent yet). */
static int on_wire(const struct pgconn *conn)
{
    return conn->pipeline ? pg_pipeline_count(conn->pipeline) : 0;
}

/* Fails every pipelined call in flight: the connection is broken first, so nobody sends more.
 * Calls already answered (held behind a requeued one) get their answers. */
static void fail_pipelined(struct pgconn *conn)
{
    set_state(conn, PGCONN_BROKEN);
    conn->unsent = 0; /* failed with the others, never sent */
    while (in_flight(conn) > 0) {
        struct pg_call call;
        PGresult *res;
        bool answered = pg_pipeline_pop(conn->pipeline, &call, &res);
        enum pg_status status = answered && res != NULL ? classify_result(res) : PG_UNAVAILABLE;
        bool last = in_flight(conn) == 0;
        if (status != PG_OK)
            metrics_inc(conn->metrics, METRIC_PG_QUERY_ERRORS);
        call.cb(status == PG_UNAVAILABLE ? NULL : res, status, call.arg);
        PQclear(res);
        if (last)
            return; /* the pool may have freed conn with its last call released */
    }
}

/* The client-side deadline of the oldest pipelined call in flight (calls keep their first
 * send's time when requeued). */
static void arm_oldest_deadline(struct pgconn *conn)
{
    long long due = pg_pipeline_oldest_ms(conn->pipeline) + conn->settings.query_timeout_ms +
                    CLIENT_DEADLINE_GRACE_MS;
    long long left = due - monotonic_ms();
    arm_timer(conn, left > 0 ? (long)left : 0);
}

/*
 * The oldest pipelined call's answer is whole: hands it over. Returns true when it was the last
 * in flight (the connection is idle or broken, and the callback may have freed it).
 */
static bool finish_pipelined(struct pgconn *conn)
{
    struct pg_call call;
    PGresult *res;
    (void)pg_pipeline_pop(conn->pipeline, &call, &res); /* pg_pipeline_ready: answered */
    enum pg_status status = res ? classify_result(res) : PG_ERROR;
    if (status != PG_OK) {
        metrics_inc(conn->metrics, METRIC_PG_QUERY_ERRORS);
        if (res != NULL)
            LOG_WARN("postgres: query failed: %s",
                     PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    }
    bool last = in_flight(conn) == 0;
    if (last) {
        bool broken = !leave_pipeline(conn) || PQstatus(conn->pg) != CONNECTION_OK;
        set_state(conn, broken ? PGCONN_BROKEN : PGCONN_IDLE);
    } else if (on_wire(conn) > 0) { /* the next call's deadline */
        arm_oldest_deadline(conn);
    }
    call.cb(status == PG_UNAVAILABLE ? NULL : res, status, call.arg);
    PQclear(res);
    return last;
}

/* Hands over the answered calls at head; true when the connection may be gone (as above). */
static bool finish_ready(struct pgconn *conn)
{
    while (pg_pipeline_ready(conn->pipeline) > 0)
        if (finish_pipelined(conn))
            return true;
    return false;
}

/*
 * A group of calls failed and committed nothing: the calls that failed by themselves get their
 * errors, the others are sent again, each alone, at the end of this loop turn (pg_pipeline.h).
 * Returns true when the connection may be gone.
 */
static bool retry_group(struct pgconn *conn)
{
    int again = pg_pipeline_requeue(conn->pipeline);
    if (conn->group_retries != NULL)
        ++*conn->group_retries;
    LOG_WARN("postgres: a group of pipelined calls failed; sending %d of them again, each alone",
             again);
    if (again > 0 && (conn->unsent += again) == again)
        event_active(&conn->send_turn, EV_TIMEOUT, 1);
    if (on_wire(conn) > 0)
        arm_oldest_deadline(conn);
    return finish_ready(conn);
}

/* The connection failed (or timed out) with a query or a batch in flight. */
static void finish_lost(struct pgconn *conn)
{
    if (in_flight(conn) > 0)
        fail_pipelined(conn);
    else if (conn->batch.cb != NULL)
        finish_batch(conn, true);
    else if (conn->call.cb != NULL)
        finish_query(conn, PG_UNAVAILABLE);
}

void pg_batch_fail(const struct pg_batch *batch, enum pg_status status)
{
    struct pg_reply replies[PG_BATCH_MAX];
    for (int i = 0; i < batch->count; i++)
        replies[i] = (struct pg_reply){status, NULL, false};
    batch->cb(replies, batch->count, status, batch->arg);
}

/* ---- querying ---- */

/* Sends what libpq has buffered; waits for writability if the socket is full. */
static bool flush_and_wait(struct pgconn *conn)
{
    int flushed = PQflush(conn->pg);
    if (flushed < 0)
        return false;
    short what = flushed == 1 ? EV_READ | EV_WRITE : EV_READ;
    wait_for(conn, conn->state == PGCONN_SHARED ? what | EV_PERSIST : what);
    return true;
}

static int prepared_index(const struct pgconn *conn, const char *sql)
{
    for (int i = 0; i < conn->prepared_count; i++)
        if (conn->prepared[i] == sql) /* SQL texts are static constants: compare addresses */
            return i;
    return -1;
}

/*
 * The slot a new PREPARE names ("s<slot>"), at or after `from`: the first that holds no
 * statement, or -1 when all MAX_PREPARED are taken (then statements are sent as text). A slot
 * whose PREPARE failed is free again: a failed PREPARE creates no name on the server, so
 * naming the next one "s<slot>" cannot collide. The one rule for all three paths (a single
 * query, a batch, pipelined calls).
 */
static int free_slot(const struct pgconn *conn, int from)
{
    for (int i = from; i < MAX_PREPARED; i++)
        if (i >= conn->prepared_count || conn->prepared[i] == NULL)
            return i;
    return -1;
}

/* Records that "s<slot>" names sql on this connection. */
static void record_prepared(struct pgconn *conn, int slot, const char *sql)
{
    conn->prepared[slot] = sql;
    if (slot >= conn->prepared_count)
        conn->prepared_count = slot + 1;
}

/* Sends one statement by the name of its slot in prepared ("s<slot>"). */
static int send_by_name(struct pgconn *conn, int slot, const struct pg_statement *s)
{
    char name[16];
    snprintf(name, sizeof name, "s%d", slot);
    return PQsendQueryPrepared(conn->pg, name, s->nparams, s->values, NULL, NULL, 0);
}

/* Sends one statement: by name if prepared here, else with its text (simple protocol, which
 * allows several statements, when it has no parameters and may). */
static int send_statement(struct pgconn *conn, const struct pg_statement *s, bool simple_ok)
{
    int index = prepared_index(conn, s->sql);
    if (index >= 0)
        return send_by_name(conn, index, s);
    if (s->nparams == 0 && simple_ok)
        return PQsendQuery(conn->pg, s->sql);
    return PQsendQueryParams(conn->pg, s->sql, s->nparams, NULL, s->values, NULL, NULL, 0);
}

/* Whether to PREPARE the query first (one extra round trip, once per connection and statement). */
static bool should_prepare(const struct pgconn *conn, const struct pg_statement *s)
{
    return conn->settings.prepare && s->nparams > 0 && prepared_index(conn, s->sql) < 0 &&
           free_slot(conn, 0) >= 0;
}

void pgconn_query(struct pgconn *conn, const struct pg_call *call)
{
    if (call->statement.nparams < 0 || call->statement.nparams > PG_MAX_PARAMS)
        abort(); /* a programming error */
    conn->call = *call;
    conn->result = NULL;
    metrics_inc(conn->metrics, METRIC_PG_QUERIES);
    const struct pg_statement *s = &conn->call.statement;
    int sent;
    if (should_prepare(conn, s)) {
        set_state(conn, PGCONN_PREPARING);
        conn->preparing_slot = free_slot(conn, 0); /* recorded once it succeeded */
        char name[16];
        snprintf(name, sizeof name, "s%d", conn->preparing_slot);
        sent = PQsendPrepare(conn->pg, name, s->sql, s->nparams, NULL);
    } else {
        set_state(conn, PGCONN_QUERYING);
        sent = send_statement(conn, s, true);
    }
    if (!sent || !flush_and_wait(conn)) {
        log_failure(conn, "cannot send query");
        fail_later(conn);
    }
}

/*
 * Sends batch statement i: by name, after its PREPARE when this connection has not prepared it
 * yet (in the same pipeline, so it costs no round trip; a statement the batch prepares already
 * reuses that PREPARE). The slot is taken only when the PREPARE's result says it succeeded
 * (batch_step): a failed or skipped PREPARE created nothing, and the batch fails as the
 * statement itself would have. *next_slot: the slot the next PREPARE creates (-1: none left).
 */
static int send_batch_statement(struct pgconn *conn, int i, int *next_slot)
{
    const struct pg_statement *s = &conn->batch.statements[i];
    int slot = prepared_index(conn, s->sql);
    for (int j = 0; slot < 0 && j < i; j++)
        if (conn->batch_prepares[j] >= 0 && conn->batch.statements[j].sql == s->sql)
            slot = conn->batch_prepares[j];
    if (slot < 0 && conn->settings.prepare && s->nparams > 0 && *next_slot >= 0) {
        char name[16];
        snprintf(name, sizeof name, "s%d", *next_slot);
        if (PQsendPrepare(conn->pg, name, s->sql, s->nparams, NULL) != 1)
            return 0;
        slot = conn->batch_prepares[i] = *next_slot;
        *next_slot = free_slot(conn, *next_slot + 1);
    }
    return slot >= 0 ? send_by_name(conn, slot, s) : send_statement(conn, s, false);
}

void pgconn_batch(struct pgconn *conn, const struct pg_batch *batch)
{
    if (batch->count < 1 || batch->count > PG_BATCH_MAX)
        abort(); /* a programming error */
    conn->batch = *batch;
    memset(conn->replies, 0, sizeof conn->replies);
    conn->reading = 0;
    conn->after_null = false;
    conn->syncs_due = batch->mode == PG_BATCH_EACH ? batch->count : 1;
    for (int i = 0; i < PG_BATCH_MAX; i++)
        conn->batch_prepares[i] = -1;
    int next_slot = free_slot(conn, 0);
    metrics_add(conn->metrics, METRIC_PG_QUERIES, (unsigned long long)batch->count);
    set_state(conn, PGCONN_PIPELINE);
    /* libpq 15's PQpipelineSync also flushes (there is no PQsendPipelineSync before 17), so the
     * statements may leave in several packets, but together: the answers are awaited once. */
    bool sent = PQenterPipelineMode(conn->pg) == 1;
    for (int i = 0; sent && i < batch->count; i++) {
        const struct pg_statement *s = &conn->batch.statements[i];
        if (s->nparams < 0 || s->nparams > PG_MAX_PARAMS)
            abort(); /* a programming error */
        conn->replies[i].sent = true;
        sent = send_batch_statement(conn, i, &next_slot) == 1 &&
               (batch->mode != PG_BATCH_EACH || PQpipelineSync(conn->pg) == 1);
    }
    if (sent && batch->mode == PG_BATCH_TRANSACTION)
        sent = PQpipelineSync(conn->pg) == 1;
    conn->reading_prepare = conn->batch_prepares[0] >= 0;
    if (!sent || !flush_and_wait(conn)) {
        log_failure(conn, "cannot send batch");
        fail_later(conn);
    }
}

/* TCP_CORK holds what is sent on the socket until it is taken off (false: not TCP, e.g. a
 * Unix socket, where nothing is held). */
static bool set_cork(struct pgconn *conn, bool on)
{
    int value = on ? 1 : 0;
    return setsockopt(PQsocket(conn->pg), IPPROTO_TCP, TCP_CORK, &value, sizeof value) == 0;
}

/*
 * Sends the pipelined calls from `from` to the newest. With DB_PIPELINE_SYNC=call each has a
 * sync of its own; with turn they form one group, one sync after the last, except a call that
 * must go alone (requeued after its group failed, or preparing its statement: a PREPARE skipped
 * because a neighbour failed would leave its name unprepared for the later calls that use it).
 */
static bool send_pipelined(struct pgconn *conn, int from)
{
    struct pg_pipeline *p = conn->pipeline;
    int count = on_wire(conn);
    bool open = false; /* calls of a group sent, its sync not yet */
    for (int i = from; i < count; i++) {
        const struct pg_statement *s = &pg_pipeline_at(p, i)->statement;
        bool prepares = should_prepare(conn, s);
        bool alone = !conn->sync_per_turn || prepares || pg_pipeline_alone(p, i);
        if (alone && open) { /* ends the group before it */
            if (PQpipelineSync(conn->pg) != 1)
                return false;
            pg_pipeline_sent(p, i - 1, 1, true);
            open = false;
        }
        if (prepares) {
            /* Named now, before its PREPARE is answered: later calls may use it at once, since
             * the server runs the pipeline in order. If it fails, so do they, as the statement
             * would have, and the name is forgotten (forget_failed_prepare). */
            int slot = free_slot(conn, 0);
            char name[16];
            snprintf(name, sizeof name, "s%d", slot);
            if (PQsendPrepare(conn->pg, name, s->sql, s->nparams, NULL) != 1)
                return false;
            record_prepared(conn, slot, s->sql);
        }
        if (send_statement(conn, s, false) != 1 || (alone && PQpipelineSync(conn->pg) != 1))
            return false;
        pg_pipeline_sent(p, i, prepares ? 2 : 1, alone);
        open = !alone;
    }
    if (open) {
        if (PQpipelineSync(conn->pg) != 1)
            return false;
        pg_pipeline_sent(p, count - 1, 1, true);
    }
    return true;
}

/*
 * The end of a loop turn: sends the pipelined calls that arrived during it. libpq 15's
 * PQpipelineSync also flushes (PQsendPipelineSync comes with 17), so with a sync per call each
 * call is one send(); with several, the socket is corked meanwhile: they leave in one packet
 * when it is uncorked, and wake the backend once instead of once each (on loopback, the sender's
 * send() pays for the receiver's wake-up: a quarter of the server's CPU per pipelined read was
 * there). With one sync per turn the group is one flush already.
 */
static void on_send_turn(evutil_socket_t fd, short what, void *arg)
{
    struct pgconn *conn = arg;
    (void)fd, (void)what;
    int n = conn->unsent;
    conn->unsent = 0;
    if (n == 0 || conn->state != PGCONN_SHARED)
        return; /* failed meanwhile: its calls have been failed */
    bool corked = n > 1 && !conn->sync_per_turn && set_cork(conn, true);
    if (conn->sync_per_turn) /* a group locks rows in key order (pg_pipeline_sort) */
        pg_pipeline_sort(conn->pipeline, on_wire(conn) - n);
    bool sent = send_pipelined(conn, on_wire(conn) - n);
    if (corked && !set_cork(conn, false))
        sent = false;
    if (!sent || !flush_and_wait(conn)) {
        log_failure(conn, "cannot send a pipelined query");
        finish_lost(conn);
    }
}

void pgconn_allow_pipeline(struct pgconn *conn, int depth, bool sync_per_turn)
{
    conn->sync_per_turn = sync_per_turn;
    if (conn->pipeline == NULL) {
        conn->pipeline = pg_pipeline_create(depth);
        evtimer_assign(&conn->send_turn, conn->base, on_send_turn, conn);
    }
}

void pgconn_count_group_retries(struct pgconn *conn, unsigned long long *counter)
{
    conn->group_retries = counter;
}

void pgconn_pipeline_query(struct pgconn *conn, const struct pg_call *call)
{
    const struct pg_statement *s = &call->statement;
    if (s->nparams < 0 || s->nparams > PG_MAX_PARAMS || conn->pipeline == NULL)
        abort(); /* a programming error */
    if (!pg_pipeline_push(conn->pipeline, call, monotonic_ms()))
        abort(); /* more than pipeline_depth in flight: the pool's bound failed */
    metrics_inc(conn->metrics, METRIC_PG_QUERIES);
    if (conn->state == PGCONN_IDLE && PQenterPipelineMode(conn->pg) == 1)
        set_state(conn, PGCONN_SHARED);
    if (conn->state != PGCONN_SHARED) {
        log_failure(conn, "cannot send a pipelined query");
        fail_later(conn);
        return;
    }
    /* It leaves at the end of this loop turn, with the calls that arrive in it. */
    if (conn->unsent++ == 0)
        event_active(&conn->send_turn, EV_TIMEOUT, 1);
}

/* ---- reading answers ---- */

/* Keeps the first error, else the last result (a multi-statement script). */
static void keep_result(PGresult **kept, PGresult *res)
{
    if (*kept != NULL && classify_result(*kept) != PG_OK) {
        PQclear(res);
    } else {
        PQclear(*kept);
        *kept = res;
    }
}

/*
 * libpq has a query's whole answer: finishes it, or, after a PREPARE, sends the query itself.
 * Returns true when the query finished (the callback ran, so conn may be gone).
 */
static bool query_answered(struct pgconn *conn)
{
    enum pg_status status = conn->result ? classify_result(conn->result) : PG_ERROR;
    if (conn->state == PGCONN_PREPARING && status == PG_OK) {
        record_prepared(conn, conn->preparing_slot, conn->call.statement.sql);
        PQclear(conn->result);
        conn->result = NULL;
        set_state(conn, PGCONN_QUERYING);
        if (send_statement(conn, &conn->call.statement, true) && flush_and_wait(conn))
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

/* Takes one step of a batch's answer (see the top of this file); returns true at its end. */
static bool batch_step(struct pgconn *conn, PGresult *res)
{
    if (res == NULL) { /* a PREPARE's or one statement's results are complete */
        conn->after_null = true;
        if (conn->reading_prepare) {
            conn->reading_prepare = false; /* the statement's own results come next */
        } else if (++conn->reading < conn->batch.count) {
            conn->reading_prepare = conn->batch_prepares[conn->reading] >= 0;
        }
        return false;
    }
    conn->after_null = false;
    if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
        PQclear(res);
        return --conn->syncs_due == 0;
    }
    if (conn->reading < conn->batch.count && conn->reading_prepare &&
        PQresultStatus(res) == PGRES_COMMAND_OK) {
        /* Prepared: its name is this connection's from now on (whatever the transaction does:
         * a prepared statement outlives a rollback). Not the statement's reply, which comes
         * next. */
        record_prepared(conn, conn->batch_prepares[conn->reading],
                        conn->batch.statements[conn->reading].sql);
        PQclear(res);
    } else if (conn->reading < conn->batch.count) {
        keep_result(&conn->replies[conn->reading].res, res); /* a failed PREPARE's error wins */
    } else
        PQclear(res); /* cannot happen: more results than statements */
    return false;
}

/*
 * A pipelined call's PREPARE failed (a table it names does not exist yet, a permission...): its
 * name was recorded when it was sent (send_pipelined), and is forgotten now, or every later call
 * of the statement would be sent by a name the server does not have, for the life of the
 * connection. The next call prepares it again, in the same slot (free_slot).
 */
static void forget_failed_prepare(struct pgconn *conn, const PGresult *res)
{
    if (res == NULL || PQresultStatus(res) == PGRES_COMMAND_OK ||
        PQresultStatus(res) == PGRES_PIPELINE_SYNC)
        return;
    const struct pg_call *call = pg_pipeline_preparing(conn->pipeline);
    int slot = call != NULL ? prepared_index(conn, call->statement.sql) : -1;
    if (slot >= 0)
        conn->prepared[slot] = NULL;
}

/* Reads pipelined answers as they complete; returns true when the connection may be gone. */
static bool read_pipelined(struct pgconn *conn)
{
    while (on_wire(conn) > conn->unsent && !PQisBusy(conn->pg)) { /* answers of calls sent */
        PGresult *res = PQgetResult(conn->pg);
        forget_failed_prepare(conn, res);
        switch (pg_pipeline_step(conn->pipeline, res)) {
        case PG_PIPELINE_MORE:
            continue;
        case PG_PIPELINE_ANSWERED:
            if (finish_ready(conn))
                return true;
            continue;
        case PG_PIPELINE_RETRY:
            if (retry_group(conn))
                return true;
            continue;
        case PG_PIPELINE_LOST:
            log_failure(conn, "connection lost with pipelined queries in flight");
            fail_pipelined(conn);
            return true;
        }
    }
    if (PQstatus(conn->pg) == CONNECTION_BAD) {
        log_failure(conn, "connection lost with pipelined queries in flight");
        fail_pipelined(conn);
        return true;
    }
    return false;
}

/*
 * Reads what arrived; finishes the query or batch once libpq has the whole answer. Returns true
 * when it finished (the callback ran, so conn may be gone), false when more must arrive.
 */
static bool read_answer(struct pgconn *conn)
{
    if (!PQconsumeInput(conn->pg)) {
        log_failure(conn, "connection lost during a query");
        finish_lost(conn);
        return true;
    }
    if (conn->state == PGCONN_SHARED)
        return read_pipelined(conn);
    while (!PQisBusy(conn->pg)) {
        PGresult *res = PQgetResult(conn->pg);
        if (conn->state == PGCONN_PIPELINE) {
            /* Two NULLs in a row: libpq has nothing more to give (the connection failed),
             * and would keep answering NULL. */
            if (res == NULL && (conn->after_null || PQstatus(conn->pg) == CONNECTION_BAD)) {
                log_failure(conn, "connection lost during a batch");
                finish_lost(conn);
                return true;
            }
            if (batch_step(conn, res)) {
                finish_batch(conn, false);
                return true;
            }
            continue;
        }
        if (res == NULL)
            return query_answered(conn);
        keep_result(&conn->result, res);
    }
    if (PQstatus(conn->pg) == CONNECTION_BAD) {
        log_failure(conn, "connection lost during a query");
        finish_lost(conn);
        return true;
    }
    return false;
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
    case PGCONN_PREPARING:
    case PGCONN_QUERYING:
    case PGCONN_PIPELINE:
    case PGCONN_SHARED:
        if ((what & EV_WRITE) && !flush_and_wait(conn)) {
            log_failure(conn, "cannot send query");
            finish_lost(conn);
            return;
        }
        if ((what & EV_READ) && read_answer(conn))
            return; /* finished: conn may have been freed by the callback */
        if (!(what & EV_WRITE) && !flush_and_wait(conn)) { /* wait for the rest */
            log_failure(conn, "cannot send query");
            finish_lost(conn);
        }
        return;
    case PGCONN_IDLE:
        /* A watched idle connection became readable: a notice, or the server closing it. */
        if (!PQconsumeInput(conn->pg) || PQstatus(conn->pg) == CONNECTION_BAD) {
            log_failure(conn, "idle connection closed by the server");
            pgconn_broken_cb cb = conn->broken_cb;
            conn->broken_cb = NULL;
            set_state(conn, PGCONN_BROKEN);
            if (cb)
                cb(conn, conn->broken_arg);
        }
        return;
    case PGCONN_NEW:
    case PGCONN_RESOLVING:
    case PGCONN_BROKEN:
        return;
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pgconn *conn = arg;
    (void)fd, (void)what;
    if (conn->connect_cb != NULL) {
        if (conn->state == PGCONN_RESOLVING)
            LOG_WARN("postgres: connect timed out after %ld ms (resolving the host name)",
                     conn->settings.connect_timeout_ms);
        else if (conn->pg != NULL && PQstatus(conn->pg) != CONNECTION_BAD)
            LOG_WARN("postgres: connect timed out after %ld ms", conn->settings.connect_timeout_ms);
        else
            log_failure(conn, "connection failed");
        finish_connect(conn, false);
    } else if (conn->call.cb != NULL || conn->batch.cb != NULL || in_flight(conn) > 0) {
        if (conn->state != PGCONN_BROKEN) {
            metrics_inc(conn->metrics, METRIC_PG_QUERY_TIMEOUTS);
            LOG_WARN("postgres: no answer within %ld ms; dropping the connection",
                     conn->settings.query_timeout_ms + CLIENT_DEADLINE_GRACE_MS);
        }
        finish_lost(conn);
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
    stop_io(conn);
    event_del(&conn->timer);
    resolve_cancel(conn->lookup);
    PQclear(conn->result);
    if (conn->pipeline != NULL)
        event_del(&conn->send_turn);
    pg_pipeline_free(conn->pipeline);
    for (int i = 0; i < PG_BATCH_MAX; i++)
        PQclear(conn->replies[i].res);
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
    if (!reads_persistently(conn)) /* a pipelined call will read with the same event */
        stop_io(conn);
}

bool pgconn_is_broken(const struct pgconn *conn)
{
    return conn->state == PGCONN_BROKEN || conn->pg == NULL || PQstatus(conn->pg) != CONNECTION_OK;
}

long long pgconn_connected_at_ms(const struct pgconn *conn)
{
    return conn->connected_at_ms;
}
