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

#define ROUTED_MAX_PARAMS 4

/* The primary's position; asked first, so that a replica can only look less behind. */
static const char SQL_PRIMARY_POSITION[] = "SELECT pg_current_wal_lsn()::text";

/* A replica's replay position, and the age of the last transaction it replayed (ms, or -1 when
 * it has replayed none since it started). A node that is not in recovery has everything. */
static const char SQL_REPLICA_POSITION[] =
    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
    " ELSE pg_current_wal_lsn() END::text,"
    " COALESCE((extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint, -1)";

struct replica {
    char *url;                     /* connection URL */
    char name[24];                 /* "replica_1" */
    struct pool *pool;             /* its connections */
    struct replica_view view;      /* health, lag, position, reads in flight */
    long long lag_bytes;           /* behind the primary's last known position, or -1 unknown */
    bool checked;                  /* a check has answered at least once */
    unsigned long long reads;      /* reads it answered */
    unsigned long long failures;   /* reads or checks that failed on it */
    struct replica_router *router; /* back-pointer, for check callbacks */
};

struct replica_router {
    struct event_base *base;              /* the server's loop */
    struct metrics *metrics;              /* replica_* counters */
    char *primary_url;                    /* PRIMARY_DATABASE_URL */
    struct pool *primary;                 /* its connections */
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
    for (int i = 0; i < router->count; i++) {
        pool_free(router->replicas[i].pool);
        free(router->replicas[i].url);
    }
    pool_free(router->primary);
    free(router->primary_url);
    free(router);
}

/* ---- reads ---- */

struct routed_read {
    struct replica_router *router;         /* whose copies */
    int replica;                           /* where it runs now, -1: the primary */
    unsigned tried;                        /* replicas that failed it (a bit each) */
    uint64_t must;                         /* see replica_router_read */
    uint64_t replayed;                     /* the chosen copy's known position */
    const char *sql;                       /* caller's */
    int nparams;                           /* parameters */
    const char *values[ROUTED_MAX_PARAMS]; /* caller's strings */
    replica_read_cb cb;                    /* the caller's callback */
    void *arg;                             /* and its argument */
};

static void on_routed(PGresult *res, enum pg_status status, void *arg);

static void mark_down(struct replica *r)
{
    if (r->view.healthy)
        LOG_WARN("%s is unavailable: reads go elsewhere until it answers a check", r->name);
    r->view.healthy = false;
    r->view.replayed = 0; /* known again after its next check */
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
    if (i < 0) {
        q->replayed = UINT64_MAX;
        pool_query(router->primary, q->sql, q->nparams, q->values, on_routed, q);
        return;
    }
    router->next = (unsigned)i + 1;
    struct replica *r = &router->replicas[i];
    q->replayed = r->view.replayed;
    r->view.outstanding++;
    pool_query(r->pool, q->sql, q->nparams, q->values, on_routed, q);
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

void replica_router_read(struct replica_router *router, uint64_t must, const char *sql, int nparams,
                         const char *const *values, replica_read_cb cb, void *arg)
{
    if (nparams > ROUTED_MAX_PARAMS)
        abort(); /* a programming error */
    struct routed_read *q = xcalloc(1, sizeof *q);
    q->router = router;
    q->must = must;
    q->sql = sql;
    q->nparams = nparams;
    for (int i = 0; i < nparams; i++)
        q->values[i] = values[i];
    q->cb = cb;
    q->arg = arg;
    route(q);
}

/* ---- writes: the statement, then the position, in one round trip ---- */

struct routed_write {
    struct replica_router *router;         /* whose primary */
    struct pgconn *conn;                   /* the borrowed connection */
    const char *sql;                       /* caller's */
    int nparams;                           /* parameters */
    const char *values[ROUTED_MAX_PARAMS]; /* caller's strings */
    replica_write_cb cb;                   /* the caller's callback */
    void *arg;                             /* and its argument */
};

static void finish_write(struct routed_write *w, enum pg_status status, bool committed,
                         const char *lsn)
{
    if (w->conn != NULL)
        pool_release(w->router->primary, w->conn);
    w->cb(status, committed, lsn, w->arg);
    free(w);
}

/* res: the position (status as for the pair: the statement's failure comes first). */
static void on_written(PGresult *res, enum pg_status status, void *arg)
{
    struct routed_write *w = arg;
    if (status == PG_OK && PQntuples(res) == 1) {
        finish_write(w, PG_OK, true, PQgetvalue(res, 0, 0));
    } else if (status == PG_OK) {
        LOG_WARN("a write committed but its WAL position could not be read");
        finish_write(w, PG_UNAVAILABLE, true, NULL);
    } else {
        /* Refused (PG_ERROR): the statement was, so nothing committed (the position query
         * fails only where the statement fails first, as on a standby). Unavailable: the
         * connection failed or timed out somewhere in the pair, so the statement may have
         * committed, and the key is treated as changed. */
        finish_write(w, status, status == PG_UNAVAILABLE, NULL);
    }
}

static void on_write_acquired(void *conn, enum pool_error err, void *arg)
{
    struct routed_write *w = arg;
    if (err != POOL_OK) {
        finish_write(w, err == POOL_QUEUE_FULL ? PG_BUSY : PG_UNAVAILABLE, false, NULL);
        return;
    }
    w->conn = conn;
    /* The position is read in a transaction of its own, after the statement's has committed
     * (with synchronous_commit on, the default, the commit record is written by then), so it
     * is at or past the commit. Read inside the statement's transaction, it would come before
     * the commit record, and a replica replayed that far might not show the write yet. */
    pgconn_query_then(w->conn, w->sql, w->nparams, w->nparams ? w->values : NULL,
                      SQL_PRIMARY_POSITION, on_written, w);
}

void replica_router_write(struct replica_router *router, const char *sql, int nparams,
                          const char *const *values, replica_write_cb cb, void *arg)
{
    if (nparams > ROUTED_MAX_PARAMS)
        abort(); /* a programming error */
    struct routed_write *w = xcalloc(1, sizeof *w);
    w->router = router;
    w->sql = sql;
    w->nparams = nparams;
    for (int i = 0; i < nparams; i++)
        w->values[i] = values[i];
    w->cb = cb;
    w->arg = arg;
    pool_acquire(router->primary, on_write_acquired, w);
}

void replica_router_primary_query(struct replica_router *router, const char *sql,
                                  pgconn_result_cb cb, void *arg)
{
    pool_query(router->primary, sql, 0, NULL, cb, arg);
}

/* ---- the check: the primary's position, then every replica's ---- */

static void check_done(struct replica_router *router)
{
    router->checks_pending--;
}

static void on_replica_checked(PGresult *res, enum pg_status status, void *arg)
{
    struct replica *r = arg;
    struct replica_router *router = r->router;
    uint64_t replayed;
    if (status == PG_BUSY) { /* its pool is saturated with reads: busy, not down; no news */
        check_done(router);
        return;
    }
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

static void on_primary_checked(PGresult *res, enum pg_status status, void *arg)
{
    struct replica_router *router = arg;
    uint64_t lsn;
    /* Unreachable or busy: the replicas are still checked (health, replay position), but
     * their lag is not recomputed against an old position. */
    router->primary_fresh =
        status == PG_OK && PQntuples(res) == 1 && lsn_parse(PQgetvalue(res, 0, 0), &lsn);
    if (router->primary_fresh)
        router->primary_lsn = lsn;
    router->checks_pending = router->count;
    for (int i = 0; i < router->count; i++)
        pool_query(router->replicas[i].pool, SQL_REPLICA_POSITION, 0, NULL, on_replica_checked,
                   &router->replicas[i]);
}

void replica_router_maintain(struct replica_router *router)
{
    pool_maintain(router->primary);
    for (int i = 0; i < router->count; i++)
        pool_maintain(router->replicas[i].pool);
    if (router->checks_pending > 0)
        return; /* the last check is still under way (a slow node) */
    router->checks_pending = 1;
    pool_query(router->primary, SQL_PRIMARY_POSITION, 0, NULL, on_primary_checked, router);
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
            "{s:b, s:b, s:o, s:o, s:o, s:I, s:I, s:i, s:i}", "healthy", r->view.healthy, "used",
            usable(&r->view, router->max_lag_ms, 0), "lag_ms",
            known && r->view.lag_ms != LONG_MAX ? json_integer(r->view.lag_ms) : json_null(),
            "lag_bytes", known && r->lag_bytes >= 0 ? json_integer(r->lag_bytes) : json_null(),
            "replayed_lsn", known ? json_string(lsn) : json_null(), "reads", (json_int_t)r->reads,
            "failures", (json_int_t)r->failures, "in_flight", r->view.outstanding, "pool_size",
            s.size);
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
