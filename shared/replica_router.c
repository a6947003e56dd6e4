/*
 * replica_router: a primary, N replicas, lag checks and the choice of a copy (see
 * replica_router.h).
 */
#include "replica_router.h"

#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "schema.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_APPLICATION "replica_router check"

/* The primary's position; asked first, so that a replica can only look less behind. */
static const char SQL_PRIMARY_POSITION[] = "SELECT pg_current_wal_lsn()::text";

/* A replica's replay position, and the age of the last transaction it replayed (ms, or -1 when
 * it has replayed none since it started). A node that is not in recovery has everything. */
static const char SQL_REPLICA_POSITION[] =
    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
    " ELSE pg_current_wal_lsn() END::text,"
    " COALESCE((extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint, -1)";

struct replica;

/*
 * A lag check's own connection to one node. The checks never borrow from the read pools: a
 * pool saturated with slow reads would delay them (or refuse them), and the router would then
 * route by positions that are no longer measured.
 */
struct checker {
    struct replica_router *router;   /* whose check */
    struct replica *replica;         /* the replica checked, or NULL for the primary */
    struct pgconn_settings settings; /* where (strings owned by the router) */
    struct pgconn *conn;             /* open between checks; NULL until needed or once broken */
    const char *sql;                 /* the check's query */
    void (*done)(PGresult *res, enum pg_status status, struct checker *c); /* its handler */
};

struct replica {
    char *url;                     /* connection URL */
    char name[24];                 /* "replica_1" */
    struct pool *pool;             /* its connections */
    struct replica_view view;      /* health, lag, position, reads in flight */
    long long lag_bytes;           /* behind the primary's last known position, or -1 unknown */
    bool checked;                  /* a check has answered at least once */
    unsigned long long checks;     /* checks that read its position */
    struct checker check;          /* its lag check's connection */
    unsigned long long reads;      /* reads it answered */
    unsigned long long failures;   /* reads or checks that failed on it */
    struct replica_router *router; /* back-pointer, for check callbacks */
};

struct replica_router {
    struct event_base *base;              /* the server's loop */
    struct metrics *metrics;              /* replica_* counters */
    char *primary_url;                    /* PRIMARY_DATABASE_URL */
    struct pool *primary;                 /* its connections */
    struct checker primary_check;         /* the primary's lag check connection */
    struct pool_config db;                /* pool settings (for the schema connection) */
    struct schema_task *schema;           /* start-up table creation */
    struct replica replicas[REPLICA_MAX]; /* the replicas, in configuration order */
    int count;                            /* entries used */
    long max_lag_ms;                      /* MAX_REPLICA_LAG_MS */
    uint64_t primary_lsn;             /* the primary's position at the last check (0: unknown) */
    bool primary_fresh;               /* primary_lsn was read in this round of checks */
    int checks_pending;               /* queries of the check under way (0: none) */
    unsigned next;                    /* rotation for ties */
    unsigned long long primary_reads; /* reads the primary answered */
};

/* ---- LSNs ---- */

bool lsn_parse(const char *text, uint64_t *out)
{
    if (text == NULL)
        return false;
    char *end;
    const char *slash = strchr(text, '/');
    if (slash == NULL || slash == text || slash - text > 8 || slash[1] == '\0' ||
        strlen(slash + 1) > 8)
        return false;
    for (const char *p = text; *p; p++)
        if (p != slash &&
            !((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F') || (*p >= 'a' && *p <= 'f')))
            return false;
    unsigned long hi = strtoul(text, &end, 16);
    unsigned long lo = strtoul(slash + 1, &end, 16);
    *out = ((uint64_t)hi << 32) | (uint64_t)lo;
    return true;
}

void lsn_format(uint64_t lsn, char out[LSN_TEXT_MAX])
{
    snprintf(out, LSN_TEXT_MAX, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
}

/* ---- the choice ---- */

static bool usable(const struct replica_view *r, long max_lag_ms, uint64_t must)
{
    return r->healthy && r->lag_ms >= 0 && r->lag_ms <= max_lag_ms &&
           (must == 0 || r->replayed >= must);
}

int replica_choose(const struct replica_view *replicas, int count, long max_lag_ms, uint64_t must,
                   unsigned tried, unsigned start)
{
    int best = -1;
    for (int k = 0; k < count; k++) {
        int i = (int)((start + (unsigned)k) % (unsigned)count);
        const struct replica_view *r = &replicas[i];
        if ((tried & (1u << i)) || !usable(r, max_lag_ms, must))
            continue;
        if (best < 0 || r->outstanding < replicas[best].outstanding)
            best = i;
    }
    return best;
}

/* ---- creation ---- */

static void on_primary_checked(PGresult *res, enum pg_status status, struct checker *c);
static void on_replica_checked(PGresult *res, enum pg_status status, struct checker *c);
static void on_check_result(PGresult *res, enum pg_status status, void *arg);
static void on_check_connected(struct pgconn *conn, bool ok, void *arg);

static void checker_init(struct checker *c, struct replica_router *router, struct replica *r,
                         const struct pool_config *db, const char *url)
{
    struct pool_config node = *db;
    node.database_url = (char *)url;
    *c = (struct checker){router,
                          r,
                          pool_config_pg(&node, CHECK_APPLICATION),
                          NULL,
                          r ? SQL_REPLICA_POSITION : SQL_PRIMARY_POSITION,
                          r ? on_replica_checked : on_primary_checked};
    c->settings.prepare = false;
}

struct replica_router *replica_router_create(struct event_base *base,
                                             const struct replica_settings *settings,
                                             const struct pool_config *db, const char *application,
                                             struct metrics *metrics, char *err, size_t errlen)
{
    struct replica_router *router = xcalloc(1, sizeof *router);
    router->base = base;
    router->metrics = metrics;
    router->max_lag_ms = settings->max_lag_ms;
    router->db = *db;
    router->primary_url = xstrdup(settings->primary_url);
    router->db.database_url = router->primary_url;
    router->primary = pool_config_create(&router->db, base, application, metrics);
    checker_init(&router->primary_check, router, NULL, db, router->primary_url);

    const char *p = settings->replica_urls;
    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || router->count == REPLICA_MAX) {
            snprintf(err, errlen,
                     "REPLICA_DATABASE_URLS: expected 1 to %d comma-separated URLs, "
                     "none empty",
                     REPLICA_MAX);
            replica_router_free(router);
            return NULL;
        }
        struct replica *r = &router->replicas[router->count];
        r->url = xstrndup(p, len);
        r->router = router;
        snprintf(r->name, sizeof r->name, "replica_%d", router->count + 1);
        /* Usable from the start (lag 0), so that reads spread before the first check; a replica
         * that is down is found out by its first read or check. */
        r->view = (struct replica_view){true, 0, 0, 0};
        r->lag_bytes = -1;
        struct pool_config c = *db;
        c.database_url = r->url;
        r->pool = pool_config_create(&c, base, application, metrics);
        checker_init(&r->check, router, r, db, r->url);
        router->count++;
        p = comma ? comma + 1 : NULL;
    }
    if (router->count == 0) {
        snprintf(err, errlen, "no replica URL (REPLICA_DATABASE_URLS or REPLICA_DATABASE_URL)");
        replica_router_free(router);
        return NULL;
    }
    return router;
}

void replica_router_free(struct replica_router *router)
{
    if (router == NULL)
        return;
    schema_task_free(router->schema);
    pgconn_free(router->primary_check.conn);
    for (int i = 0; i < router->count; i++) {
        pgconn_free(router->replicas[i].check.conn);
        pool_free(router->replicas[i].pool);
        free(router->replicas[i].url);
    }
    pool_free(router->primary);
    free(router->primary_url);
    free(router);
}

/* ---- reads ---- */

struct routed_read {
    struct replica_router *router; /* whose copies */
    int replica;                   /* where it runs now, -1: the primary */
    unsigned tried;                /* replicas that failed it (a bit each) */
    uint64_t must;                 /* see replica_router_read */
    uint64_t replayed;             /* the chosen copy's known position */
    struct pg_statement statement; /* the caller's, as it came */
    replica_read_cb cb;            /* the caller's callback */
    void *arg;                     /* and its argument */
};

static void on_routed(PGresult *res, enum pg_status status, void *arg);

/* Not trusted with token reads until a check reads its position again. */
static void forget_position(struct replica *r)
{
    r->view.replayed = 0;
}

static void mark_down(struct replica *r)
{
    if (r->view.healthy)
        LOG_WARN("%s is unavailable: reads go elsewhere until it answers a check", r->name);
    r->view.healthy = false;
    forget_position(r);
}

/* Sends the read to the best copy now. Every step of a read is here. */
static void route(struct routed_read *q)
{
    struct replica_router *router = q->router;
    struct replica_view views[REPLICA_MAX];
    for (int i = 0; i < router->count; i++)
        views[i] = router->replicas[i].view;
    int i =
        replica_choose(views, router->count, router->max_lag_ms, q->must, q->tried, router->next);
    q->replica = i;
    struct pg_call call = {q->statement, on_routed, q};
    if (i < 0) {
        q->replayed = UINT64_MAX;
        pool_query(router->primary, &call);
        return;
    }
    router->next = (unsigned)i + 1;
    struct replica *r = &router->replicas[i];
    q->replayed = r->view.replayed;
    r->view.outstanding++;
    pool_query(r->pool, &call);
}

static void on_routed(PGresult *res, enum pg_status status, void *arg)
{
    struct routed_read *q = arg;
    struct replica_router *router = q->router;
    if (q->replica >= 0) {
        struct replica *r = &router->replicas[q->replica];
        r->view.outstanding--;
        if (status != PG_OK) {
            /* Down, overloaded, or a query cancelled by replay (a conflict with recovery):
             * another copy answers instead. Only an unreachable replica is marked down. */
            r->failures++;
            if (status == PG_UNAVAILABLE)
                mark_down(r);
            q->tried |= 1u << q->replica;
            metrics_inc(router->metrics, METRIC_REPLICA_RETRIES);
            route(q);
            return;
        }
        r->reads++;
        metrics_inc(router->metrics, METRIC_REPLICA_READS);
    } else {
        router->primary_reads++;
        metrics_inc(router->metrics, METRIC_REPLICA_PRIMARY_READS);
    }
    struct replica_source source = {q->replica, q->replayed};
    q->cb(res, status, &source, q->arg);
    free(q);
}

void replica_router_read(struct replica_router *router, uint64_t must,
                         const struct pg_statement *statement, replica_read_cb cb, void *arg)
{
    struct routed_read *q = xcalloc(1, sizeof *q);
    q->router = router;
    q->must = must;
    q->statement = *statement;
    q->cb = cb;
    q->arg = arg;
    route(q);
}

/* ---- writes: the statement, then the position, in one round trip ---- */

struct routed_write {
    struct replica_router *router; /* whose primary */
    replica_write_cb cb;           /* the caller's callback */
    void *arg;                     /* and its argument */
};

/* replies: the statement's, then the position's (a batch, each on its own). */
static void on_written(const struct pg_reply *replies, int count, enum pg_status status, void *arg)
{
    struct routed_write *w = arg;
    const struct pg_reply *write = &replies[0], *position = &replies[1];
    (void)count, (void)status;
    if (write->status == PG_OK && position->status == PG_OK && PQntuples(position->res) == 1) {
        w->cb(PG_OK, true, PQgetvalue(position->res, 0, 0), w->arg);
    } else if (write->status == PG_OK) {
        LOG_WARN("a write committed but its WAL position could not be read");
        w->cb(PG_UNAVAILABLE, true, NULL, w->arg);
    } else {
        /* Refused (PG_ERROR): nothing committed. Unavailable after it was sent: the
         * connection failed or timed out, so the statement may have committed, and the key
         * is treated as changed. Never sent (no connection): nothing committed. */
        w->cb(write->status, write->status == PG_UNAVAILABLE && write->sent, NULL, w->arg);
    }
    free(w);
}

void replica_router_write(struct replica_router *router, const struct pg_statement *statement,
                          replica_write_cb cb, void *arg)
{
    struct routed_write *w = xmalloc(sizeof *w);
    *w = (struct routed_write){router, cb, arg};
    /* Each on its own: the position is read in a transaction of its own, after the
     * statement's has committed (with synchronous_commit on, the default, the commit record is
     * written by then), so it is at or past the commit. Read inside the statement's
     * transaction, it would come before the commit record, and a replica replayed that far
     * might not show the write yet. */
    struct pg_batch batch = {.mode = PG_BATCH_EACH,
                             .count = 2,
                             .statements = {*statement, {.sql = SQL_PRIMARY_POSITION}},
                             .cb = on_written,
                             .arg = w};
    pool_batch(router->primary, &batch);
}

void replica_router_primary_query(struct replica_router *router, const struct pg_call *call)
{
    pool_query(router->primary, call);
}

/* ---- the check: the primary's position, then every replica's ---- */

/* Runs a check's query on its node's own connection, opening it first when needed. */
static void check_run(struct checker *c)
{
    struct pg_call call = {.statement = {.sql = c->sql}, .cb = on_check_result, .arg = c};
    if (c->conn != NULL && !pgconn_is_broken(c->conn)) {
        pgconn_query(c->conn, &call);
        return;
    }
    pgconn_free(c->conn);
    c->conn = pgconn_create(c->router->base, &c->settings, c->router->metrics);
    pgconn_connect(c->conn, on_check_connected, c);
}

static void on_check_connected(struct pgconn *conn, bool ok, void *arg)
{
    struct checker *c = arg;
    (void)conn;
    if (!ok) {
        on_check_result(NULL, PG_UNAVAILABLE, c);
        return;
    }
    check_run(c);
}

/* A replica's check connection closed while idle: the server stopped or restarted. Its
 * position is no longer vouched for (a restarted standby replays again from a restart
 * point), so token reads avoid it until the next check has read it again. */
static void on_check_conn_broken(struct pgconn *conn, void *arg)
{
    struct checker *c = arg;
    (void)conn;
    struct replica *r = c->replica;
    LOG_WARN("%s closed its check connection: token reads go elsewhere until its position is "
             "read again",
             r->name);
    forget_position(r);
}

static void on_check_result(PGresult *res, enum pg_status status, void *arg)
{
    struct checker *c = arg;
    c->done(res, status, c);
    if (c->conn != NULL && pgconn_is_broken(c->conn)) {
        pgconn_free(c->conn); /* opened again by the next check */
        c->conn = NULL;
    } else if (c->conn != NULL && c->replica != NULL) {
        pgconn_watch_idle(c->conn, on_check_conn_broken, c);
    }
}

static void check_done(struct replica_router *router)
{
    router->checks_pending--;
}

static void on_replica_checked(PGresult *res, enum pg_status status, struct checker *c)
{
    struct replica *r = c->replica;
    struct replica_router *router = r->router;
    uint64_t replayed;
    if (status != PG_OK || PQntuples(res) != 1 || !lsn_parse(PQgetvalue(res, 0, 0), &replayed)) {
        r->failures += status != PG_OK;
        mark_down(r);
        check_done(router);
        return;
    }
    if (!r->view.healthy)
        LOG_INFO("%s answers again", r->name);
    r->checked = true;
    r->view.healthy = true;
    r->view.replayed = replayed;
    r->checks++;
    long long age_ms = atoll(PQgetvalue(res, 0, 1));
    if (!router->primary_fresh) {
        /* The primary's position is from an earlier round (its check failed): comparing
         * with it could show a lagging replica as current. The lag stays as last measured. */
        check_done(router);
        return;
    }
    if (router->primary_lsn == 0 || replayed >= router->primary_lsn) {
        r->lag_bytes = router->primary_lsn == 0 ? -1 : 0;
        r->view.lag_ms = 0;
    } else {
        r->lag_bytes = (long long)(router->primary_lsn - replayed);
        /* Behind: its data is as old as the last transaction it replayed. No transaction
         * replayed since it started: unknown, so not used until it has caught up. */
        r->view.lag_ms = age_ms < 0 ? LONG_MAX : (long)(age_ms > LONG_MAX ? LONG_MAX : age_ms);
    }
    check_done(router);
}

static void on_primary_checked(PGresult *res, enum pg_status status, struct checker *c)
{
    struct replica_router *router = c->router;
    uint64_t lsn;
    /* Unreachable: the replicas are still checked (health, replay position), but their lag is
     * not recomputed against an old position. */
    router->primary_fresh =
        status == PG_OK && PQntuples(res) == 1 && lsn_parse(PQgetvalue(res, 0, 0), &lsn);
    if (router->primary_fresh)
        router->primary_lsn = lsn;
    router->checks_pending = router->count;
    for (int i = 0; i < router->count; i++)
        check_run(&router->replicas[i].check);
}

void replica_router_maintain(struct replica_router *router)
{
    pool_maintain(router->primary);
    for (int i = 0; i < router->count; i++)
        pool_maintain(router->replicas[i].pool);
    if (router->checks_pending > 0)
        return; /* the last check is still under way (a slow node) */
    router->checks_pending = 1;
    check_run(&router->primary_check);
}

void replica_router_ensure_schema(struct replica_router *router, const char *sql,
                                  void (*done)(void *arg), void *arg)
{
    struct pgconn_settings pg = pool_config_pg(&router->db, "replica_router schema");
    router->schema = schema_ensure(router->base, &pg, sql, done, arg);
}

/* ---- statistics ---- */

int replica_router_count(const struct replica_router *router)
{
    return router->count;
}

const char *replica_router_name(const struct replica_router *router, int i)
{
    return router->replicas[i].name;
}

bool replica_router_healthy(const struct replica_router *router, int i)
{
    return router->replicas[i].view.healthy;
}

json_t *replica_router_replicas_json(const struct replica_router *router)
{
    json_t *all = json_object();
    for (int i = 0; i < router->count; i++) {
        const struct replica *r = &router->replicas[i];
        char lsn[LSN_TEXT_MAX];
        lsn_format(r->view.replayed, lsn);
        bool known = r->checked && r->view.healthy;
        struct pool_stats s;
        pool_get_stats(r->pool, &s);
        json_t *one = json_pack(
            "{s:b, s:b, s:o, s:o, s:o, s:I, s:I, s:i, s:i, s:I}", "healthy", r->view.healthy,
            "used", usable(&r->view, router->max_lag_ms, 0), "lag_ms",
            known && r->view.lag_ms != LONG_MAX ? json_integer(r->view.lag_ms) : json_null(),
            "lag_bytes", known && r->lag_bytes >= 0 ? json_integer(r->lag_bytes) : json_null(),
            "replayed_lsn", known ? json_string(lsn) : json_null(), "reads", (json_int_t)r->reads,
            "failures", (json_int_t)r->failures, "in_flight", r->view.outstanding, "pool_size",
            s.size, "checks", (json_int_t)r->checks);
        json_object_set_new(all, r->name, one);
    }
    return all;
}

int replica_router_primary_pool_size(const struct replica_router *router)
{
    struct pool_stats s;
    pool_get_stats(router->primary, &s);
    return s.size;
}

int replica_router_replica_pool_size(const struct replica_router *router)
{
    int total = 0;
    for (int i = 0; i < router->count; i++) {
        struct pool_stats s;
        pool_get_stats(router->replicas[i].pool, &s);
        total += s.size;
    }
    return total;
}

unsigned long long replica_router_primary_reads(const struct replica_router *router)
{
    return router->primary_reads;
}

void replica_router_render_gauges(struct evbuffer *out, void *arg)
{
    struct replica_router *router = arg;
    evbuffer_add_printf(out, "# HELP replica_healthy Whether the replica answered its last check "
                             "and reads.\n# TYPE replica_healthy gauge\n");
    for (int i = 0; i < router->count; i++)
        evbuffer_add_printf(out, "replica_healthy{replica=\"%s\"} %d\n", router->replicas[i].name,
                            router->replicas[i].view.healthy);
    evbuffer_add_printf(out, "# HELP replica_lag_bytes WAL bytes the replica has not replayed "
                             "yet.\n# TYPE replica_lag_bytes gauge\n");
    for (int i = 0; i < router->count; i++)
        evbuffer_add_printf(out, "replica_lag_bytes{replica=\"%s\"} %lld\n",
                            router->replicas[i].name,
                            router->replicas[i].lag_bytes < 0 ? 0 : router->replicas[i].lag_bytes);
    evbuffer_add_printf(out, "# HELP replica_lag_ms Replication lag in milliseconds.\n"
                             "# TYPE replica_lag_ms gauge\n");
    for (int i = 0; i < router->count; i++)
        evbuffer_add_printf(
            out, "replica_lag_ms{replica=\"%s\"} %ld\n", router->replicas[i].name,
            router->replicas[i].view.lag_ms == LONG_MAX ? -1 : router->replicas[i].view.lag_ms);
    evbuffer_add_printf(out, "# HELP replica_reads_by_replica_total Reads each replica answered.\n"
                             "# TYPE replica_reads_by_replica_total counter\n");
    for (int i = 0; i < router->count; i++)
        evbuffer_add_printf(out, "replica_reads_by_replica_total{replica=\"%s\"} %llu\n",
                            router->replicas[i].name, router->replicas[i].reads);
}
