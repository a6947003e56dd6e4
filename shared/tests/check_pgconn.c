/*
 * pgconn against a real PostgreSQL (started by the test): batches in both modes, prepared
 * statements through the one call description, host names resolved without blocking, and the
 * host parsing that decides when to resolve (pure, no socket); the LISTEN connection of
 * pg_listener, whose host name goes through the same resolver.
 */
#include "pg_listener.h"
#include "pgconn.h"
#include "pool.h"
#include "resolve.h"
#include "testkit.h"

#include "check_run.h"

#include <check.h>
#include <signal.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_PORT     24900
#define DEADLINE_MS 15000

static struct tk_pg pg;
static struct event_base *base;

/* ---- driving the loop until a callback says so ---- */

static bool finished;

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    event_base_loopbreak(base);
}

/* Runs the loop until `finished` (set by a callback) or the deadline; true when finished. */
static bool run_until_finished(void)
{
    struct event *deadline = evtimer_new(base, on_deadline, NULL);
    struct timeval tv = {DEADLINE_MS / 1000, 0};
    evtimer_add(deadline, &tv);
    while (!finished && event_base_loop(base, EVLOOP_ONCE) == 0 && !event_base_got_break(base))
        ;
    event_free(deadline);
    bool was = finished;
    finished = false;
    return was;
}

static struct pgconn_settings settings(const char *url, bool prepare, struct resolver *resolver)
{
    return (struct pgconn_settings){url, "check_pgconn", 3000, 5000, prepare, resolver, NULL};
}

static struct pool *new_pool(void)
{
    struct pool_settings ps = {1, 2, 2000, 16, 60000, 60000, 1, false};
    struct pgconn_settings s = settings(pg.url, true, NULL);
    return pool_create_pg(base, &ps, &s, NULL);
}

static void setup(void)
{
    base = event_base_new();
    ck_assert(tk_pg_exec(&pg, "layers",
                         "DROP TABLE IF EXISTS batch_t;"
                         "CREATE TABLE batch_t (k text PRIMARY KEY)"));
}

static void teardown(void)
{
    event_base_free(base);
}

static long count_rows(const char *where)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM batch_t WHERE %s", where);
    PGconn *conn = tk_pg_connect(&pg, "layers");
    ck_assert_ptr_nonnull(conn);
    PGresult *res = PQexec(conn, sql);
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    long n = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(conn);
    return n;
}

/* ---- batches ---- */

struct batch_seen {
    int count;                          /* replies */
    enum pg_status status;              /* the batch's */
    enum pg_status each[PG_BATCH_MAX];  /* every reply's */
    bool sent[PG_BATCH_MAX];            /* every reply's */
    char first_value[PG_BATCH_MAX][32]; /* first column of the first row, "" if none */
};

static void on_batch(const struct pg_reply *replies, int count, enum pg_status status, void *arg)
{
    struct batch_seen *seen = arg;
    seen->count = count;
    seen->status = status;
    for (int i = 0; i < count; i++) {
        seen->each[i] = replies[i].status;
        seen->sent[i] = replies[i].sent;
        seen->first_value[i][0] = '\0';
        if (replies[i].res != NULL && PQntuples(replies[i].res) > 0)
            snprintf(seen->first_value[i], sizeof seen->first_value[i], "%s",
                     PQgetvalue(replies[i].res, 0, 0));
    }
    finished = true;
}

static const char SQL_INSERT[] = "INSERT INTO batch_t VALUES ($1) RETURNING k";
static const char SQL_FAIL[] = "SELECT 1 / (length($1) - length($1))"; /* division by zero */

static void run_batch(enum pg_batch_mode mode, const char *a, const char *b, const char *c,
                      bool fail_middle, struct batch_seen *seen)
{
    struct pool *pool = new_pool();
    struct pg_batch batch = {.mode = mode,
                             .count = 3,
                             .statements = {{SQL_INSERT, 1, {a}},
                                            {fail_middle ? SQL_FAIL : SQL_INSERT, 1, {b}},
                                            {SQL_INSERT, 1, {c}}},
                             .cb = on_batch,
                             .arg = seen};
    pool_batch(pool, &batch);
    ck_assert(run_until_finished());
    pool_free(pool);
}

START_TEST(transaction_batch_runs_every_statement)
{
    struct batch_seen seen;
    run_batch(PG_BATCH_TRANSACTION, "t1", "t2", "t3", false, &seen);
    ck_assert_int_eq(seen.status, PG_OK);
    ck_assert_int_eq(seen.count, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(seen.each[i], PG_OK);
    ck_assert_str_eq(seen.first_value[0], "t1"); /* every RETURNING comes back */
    ck_assert_str_eq(seen.first_value[2], "t3");
    ck_assert_int_eq(count_rows("k LIKE 't%'"), 3);
}
END_TEST

START_TEST(failing_statement_rolls_back_the_transaction)
{
    struct batch_seen seen;
    run_batch(PG_BATCH_TRANSACTION, "r1", "r2", "r3", true, &seen);
    ck_assert_int_eq(seen.status, PG_ERROR);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(seen.each[i], PG_ERROR); /* none took effect */
        ck_assert(seen.sent[i]);
    }
    ck_assert_int_eq(count_rows("k LIKE 'r%'"), 0); /* the first insert rolled back too */
}
END_TEST

START_TEST(each_on_its_own_fails_only_the_failing_statement)
{
    struct batch_seen seen;
    run_batch(PG_BATCH_EACH, "e1", "e2", "e3", true, &seen);
    ck_assert_int_eq(seen.status, PG_ERROR);
    ck_assert_int_eq(seen.each[0], PG_OK);
    ck_assert_int_eq(seen.each[1], PG_ERROR);
    ck_assert_int_eq(seen.each[2], PG_OK); /* runs after the failure */
    ck_assert_str_eq(seen.first_value[2], "e3");
    ck_assert_int_eq(count_rows("k LIKE 'e%'"), 2);
}
END_TEST

START_TEST(connection_is_reused_after_a_failed_batch)
{
    struct pool *pool = new_pool();
    struct batch_seen seen;
    for (int round = 0; round < 2; round++) {
        char key[16];
        snprintf(key, sizeof key, "u%d", round);
        struct pg_batch batch = {.mode = PG_BATCH_TRANSACTION,
                                 .count = 2,
                                 .statements = {{SQL_INSERT, 1, {key}}, {SQL_FAIL, 1, {key}}},
                                 .cb = on_batch,
                                 .arg = &seen};
        pool_batch(pool, &batch);
        ck_assert(run_until_finished());
        ck_assert_int_eq(seen.status, PG_ERROR);
    }
    struct pool_stats stats;
    pool_get_stats(pool, &stats);
    ck_assert_uint_eq(stats.broken, 0); /* a refused batch leaves the connection usable */
    ck_assert_uint_eq(stats.opened, 1);
    pool_free(pool);
}
END_TEST

/* Runs one batch of statements without parameters on pool; the replies in seen. */
static void run_plain_batch(struct pool *pool, int count, const char *const *sql,
                            struct batch_seen *seen)
{
    struct pg_batch batch = {
        .mode = PG_BATCH_TRANSACTION, .count = count, .cb = on_batch, .arg = seen};
    for (int i = 0; i < count; i++)
        batch.statements[i] = (struct pg_statement){sql[i], 0, {NULL}};
    pool_batch(pool, &batch);
    ck_assert(run_until_finished());
    ck_assert_int_eq(seen->status, PG_OK);
}

/* settings.options reach every session; a setting a batch makes with set_config(..., true)
 * (SET LOCAL, without its warning in a pipeline) lasts until the batch's commit, and the next
 * batch on the same pooled connection has the session's value again. */
START_TEST(session_options_apply_and_a_batch_setting_ends_with_it)
{
    struct pool_settings ps = {1, 1, 2000, 16, 60000, 60000, 1, false};
    struct pgconn_settings s = settings(pg.url, true, NULL);
    s.options = "-c enable_seqscan=off";
    struct pool *pool = pool_create_pg(base, &ps, &s, NULL);
    struct batch_seen seen;
    run_plain_batch(pool, 3,
                    (const char *const[]){"SHOW enable_seqscan",
                                          "SELECT set_config('synchronous_commit', 'off', true)",
                                          "SHOW synchronous_commit"},
                    &seen);
    ck_assert_str_eq(seen.first_value[0], "off");
    ck_assert_str_eq(seen.first_value[2], "off");
    run_plain_batch(pool, 2,
                    (const char *const[]){"SHOW synchronous_commit", "SHOW enable_seqscan"}, &seen);
    ck_assert_str_eq(seen.first_value[0], "on");
    ck_assert_str_eq(seen.first_value[1], "off");
    struct pool_stats stats;
    pool_get_stats(pool, &stats);
    ck_assert_uint_eq(stats.opened, 1); /* one connection: the setting did not outlive its batch */
    pool_free(pool);

    struct pool *plain = new_pool(); /* no options: the server's default */
    run_plain_batch(plain, 1, (const char *const[]){"SHOW enable_seqscan"}, &seen);
    ck_assert_str_eq(seen.first_value[0], "on");
    pool_free(plain);
}
END_TEST

/* ---- one query, prepared ---- */

struct query_seen {
    enum pg_status status; /* the query's */
    char value[32];        /* first column of the first row */
};

static void on_query(PGresult *res, enum pg_status status, void *arg)
{
    struct query_seen *seen = arg;
    seen->status = status;
    seen->value[0] = '\0';
    if (res != NULL && PQntuples(res) > 0)
        snprintf(seen->value, sizeof seen->value, "%s", PQgetvalue(res, 0, 0));
    finished = true;
}

static const char SQL_ECHO[] = "SELECT $1::text || '!'";

START_TEST(prepared_statement_runs_by_name_on_reuse)
{
    struct pool *pool = new_pool();
    for (int i = 0; i < 3; i++) {
        struct query_seen seen;
        char arg[8];
        snprintf(arg, sizeof arg, "x%d", i);
        pool_query(pool, &(struct pg_call){{SQL_ECHO, 1, {arg}}, on_query, &seen});
        ck_assert(run_until_finished());
        ck_assert_int_eq(seen.status, PG_OK);
        char want[16];
        snprintf(want, sizeof want, "x%d!", i);
        ck_assert_str_eq(seen.value, want);
    }
    /* The statement was prepared once, on the connection that ran all three. */
    struct query_seen seen;
    pool_query(pool, &(struct pg_call){.statement = {.sql = "SELECT count(*) FROM "
                                                            "pg_prepared_statements"},
                                       .cb = on_query,
                                       .arg = &seen});
    ck_assert(run_until_finished());
    ck_assert_int_eq(seen.status, PG_OK);
    ck_assert_str_eq(seen.value, "1");
    pool_free(pool);
}
END_TEST

/* ---- batches prepare their statements in the batch's own pipeline ---- */

/* A statement whose PREPARE fails until the table it names exists. */
static const char SQL_INSERT_LATER[] = "INSERT INTO later_t VALUES ($1) RETURNING k";

/* Runs one batch of up to 3 statements (NULL sql: fewer) on pool and waits for it. */
static void batch_on(struct pool *pool, enum pg_batch_mode mode, const char *const sql[3],
                     const char *key, struct batch_seen *seen)
{
    struct pg_batch batch = {.mode = mode, .cb = on_batch, .arg = seen};
    for (int i = 0; i < 3 && sql[i] != NULL; i++)
        batch.statements[batch.count++] = (struct pg_statement){sql[i], 1, {key}};
    pool_batch(pool, &batch);
    ck_assert(run_until_finished());
}

/* The names of the statements prepared on the pool's (one) connection, "" if none. */
static void prepared_names(struct pool *pool, char *out, size_t len)
{
    struct query_seen seen;
    pool_query(pool, &(struct pg_call){.statement = {.sql = "SELECT coalesce(string_agg(name, ',' "
                                                            "ORDER BY name), '') FROM "
                                                            "pg_prepared_statements"},
                                       .cb = on_query,
                                       .arg = &seen});
    ck_assert(run_until_finished());
    ck_assert_int_eq(seen.status, PG_OK);
    snprintf(out, len, "%s", seen.value);
}

/* Every test here checks that one connection served it all (names are per connection). */
static void assert_one_connection(struct pool *pool)
{
    struct pool_stats stats;
    pool_get_stats(pool, &stats);
    ck_assert_uint_eq(stats.opened, 1);
    ck_assert_uint_eq(stats.broken, 0);
}

START_TEST(batch_prepares_its_statement_once_and_runs_it_by_name)
{
    struct pool *pool = new_pool();
    const char *const twice[3] = {SQL_INSERT, SQL_INSERT, NULL};
    struct batch_seen seen;
    char names[64];
    for (int round = 0; round < 2; round++) {
        struct pg_batch batch = {
            .mode = PG_BATCH_TRANSACTION, .count = 2, .cb = on_batch, .arg = &seen};
        char a[8], b[8];
        snprintf(a, sizeof a, "p%da", round);
        snprintf(b, sizeof b, "p%db", round);
        batch.statements[0] = (struct pg_statement){twice[0], 1, {a}};
        batch.statements[1] = (struct pg_statement){twice[1], 1, {b}};
        pool_batch(pool, &batch);
        ck_assert(run_until_finished());
        ck_assert_int_eq(seen.status, PG_OK);
        ck_assert_str_eq(seen.first_value[0], a); /* the statements' own results, not the */
        ck_assert_str_eq(seen.first_value[1], b); /* PREPARE's */
        /* One PREPARE in the first batch (the second statement reuses it), none after. */
        prepared_names(pool, names, sizeof names);
        ck_assert_str_eq(names, "s0");
    }
    ck_assert_int_eq(count_rows("k LIKE 'p%'"), 4);
    /* The single-query path finds the name the batch made. */
    struct query_seen one;
    pool_query(pool, &(struct pg_call){{SQL_INSERT, 1, {"p9"}}, on_query, &one});
    ck_assert(run_until_finished());
    ck_assert_int_eq(one.status, PG_OK);
    prepared_names(pool, names, sizeof names);
    ck_assert_str_eq(names, "s0");
    assert_one_connection(pool);
    pool_free(pool);
}
END_TEST

/* _i 0: each on its own, 1: one transaction. A failed PREPARE fails its statement (and in a
 * transaction the batch); it is not recorded, so once the table exists the same statement is
 * prepared again and runs; the other statements' PREPAREs keep their names. */
START_TEST(failed_prepare_fails_its_call_and_the_next_batch_prepares_again)
{
    ck_assert(tk_pg_exec(&pg, "layers", "DROP TABLE IF EXISTS later_t"));
    struct pool *pool = new_pool();
    enum pg_batch_mode mode = _i == 0 ? PG_BATCH_EACH : PG_BATCH_TRANSACTION;
    const char *const failing[3] = {SQL_INSERT_LATER, SQL_INSERT, NULL};
    struct batch_seen seen;
    batch_on(pool, mode, failing, "f1", &seen);
    ck_assert_int_eq(seen.status, PG_ERROR);
    ck_assert_int_eq(seen.each[0], PG_ERROR);
    ck_assert_int_eq(seen.each[1], mode == PG_BATCH_EACH ? PG_OK : PG_ERROR);
    ck_assert_int_eq(count_rows("k = 'f1'"), mode == PG_BATCH_EACH ? 1 : 0);
    char names[64];
    prepared_names(pool, names, sizeof names);
    /* each: SQL_INSERT was prepared (as s1: s0 was the failed PREPARE's, taken while it was
     * in flight); transaction: its PREPARE was skipped after the failure, nothing prepared. */
    ck_assert_str_eq(names, mode == PG_BATCH_EACH ? "s1" : "");

    ck_assert(tk_pg_exec(&pg, "layers", "CREATE TABLE later_t (k text PRIMARY KEY)"));
    batch_on(pool, mode, failing, "f2", &seen);
    ck_assert_int_eq(seen.status, PG_OK);
    ck_assert_str_eq(seen.first_value[0], "f2");
    ck_assert_str_eq(seen.first_value[1], "f2");
    prepared_names(pool, names, sizeof names);
    ck_assert_str_eq(names, "s0,s1"); /* each: the failed PREPARE's slot, s0, is used again */
    batch_on(pool, mode, failing, "f3", &seen); /* by name now */
    ck_assert_int_eq(seen.status, PG_OK);
    ck_assert_int_eq(count_rows("k = 'f3'"), 1);
    assert_one_connection(pool);
    pool_free(pool);
    ck_assert(tk_pg_exec(&pg, "layers", "DROP TABLE later_t"));
}
END_TEST

/* A statement prepared inside a batch's transaction that then rolls back stays prepared (the
 * server keeps prepared statements across a rollback), so recording it was right: the next
 * batch runs it by name. */
START_TEST(prepared_in_a_rolled_back_batch_stays_prepared)
{
    struct pool *pool = new_pool();
    const char *const rolled_back[3] = {SQL_INSERT, SQL_FAIL, NULL};
    struct batch_seen seen;
    batch_on(pool, PG_BATCH_TRANSACTION, rolled_back, "b1", &seen);
    ck_assert_int_eq(seen.status, PG_ERROR);
    ck_assert_int_eq(count_rows("k = 'b1'"), 0);
    char names[64];
    prepared_names(pool, names, sizeof names);
    ck_assert_str_eq(names, "s0,s1");
    const char *const good[3] = {SQL_INSERT, NULL, NULL};
    batch_on(pool, PG_BATCH_TRANSACTION, good, "b2", &seen);
    ck_assert_int_eq(seen.status, PG_OK);
    ck_assert_int_eq(count_rows("k = 'b2'"), 1);
    prepared_names(pool, names, sizeof names);
    ck_assert_str_eq(names, "s0,s1");
    assert_one_connection(pool);
    pool_free(pool);
}
END_TEST

/* ---- pipeline mode: many requests' calls on one connection ---- */

#define MANY 40

/* Loop tests run each pipelined case with a sync per call (_i 0) and per loop turn (_i 1). */
static struct pool *new_pipelined_pool(bool sync_per_turn, int max_size, long query_timeout_ms)
{
    struct pool_settings ps = {1, max_size, 5000, 256, 60000, 60000, 16, sync_per_turn};
    struct pgconn_settings s = settings(pg.url, true, NULL);
    s.query_timeout_ms = query_timeout_ms;
    return pool_create_pg(base, &ps, &s, NULL);
}

/* One call among many: what it got back. */
struct many_seen {
    enum pg_status status; /* the call's */
    char value[32];        /* first column of the first row */
    int order;             /* 1 for the first answered */
    int *answered;         /* shared count of answers; all in: finished */
    int expected;          /* how many to wait for */
};

static void on_many(PGresult *res, enum pg_status status, void *arg)
{
    struct many_seen *seen = arg;
    seen->status = status;
    seen->value[0] = '\0';
    if (res != NULL && PQntuples(res) > 0)
        snprintf(seen->value, sizeof seen->value, "%s", PQgetvalue(res, 0, 0));
    seen->order = ++*seen->answered;
    if (*seen->answered == seen->expected)
        finished = true;
}

static const char SQL_SLEEP_ECHO[] = "SELECT $1::text || '!' FROM pg_sleep($2::float8)";

/* Sends n calls at once: SQL_SLEEP_ECHO of "p<i>" sleeping `sleep` seconds. */
static void send_many(struct pool *pool, struct many_seen *seen, char (*args)[16], int n,
                      const char *sleep, int *answered)
{
    *answered = 0;
    for (int i = 0; i < n; i++) {
        snprintf(args[i], 16, "p%d", i);
        seen[i] = (struct many_seen){.answered = answered, .expected = n};
        pool_query(pool,
                   &(struct pg_call){{SQL_SLEEP_ECHO, 2, {args[i], sleep}}, on_many, &seen[i]});
    }
}

START_TEST(pipelined_calls_get_their_own_answers_and_one_failure_fails_only_itself)
{
    struct pool *pool = new_pipelined_pool(_i == 1, 1, 5000);
    static struct many_seen seen[MANY];
    static char args[MANY][16];
    int answered = 0;
    send_many(pool, seen, args, 1, "0", &answered); /* the connection is open */
    ck_assert(run_until_finished());
    struct pool_stats before;
    pool_get_stats(pool, &before);
    answered = 0;
    for (int i = 0; i < MANY; i++) {
        snprintf(args[i], 16, "p%d", i);
        seen[i] = (struct many_seen){.answered = &answered, .expected = MANY};
        struct pg_statement st = {SQL_ECHO, 1, {args[i]}};
        if (i == 17)
            st = (struct pg_statement){SQL_FAIL, 1, {args[i]}}; /* fails when it runs */
        if (i == 18)
            st = (struct pg_statement){"SELECT no_such_column", 0, {NULL}}; /* fails to parse */
        pool_query(pool, &(struct pg_call){st, on_many, &seen[i]});
    }
    ck_assert(run_until_finished());
    for (int i = 0; i < MANY; i++) {
        ck_assert_int_eq(seen[i].order, i + 1); /* answered in the order sent */
        if (i == 17 || i == 18) {
            ck_assert_int_eq(seen[i].status, PG_ERROR);
            continue;
        }
        ck_assert_int_eq(seen[i].status, PG_OK);
        char want[24];
        snprintf(want, sizeof want, "p%d!", i);
        ck_assert_str_eq(seen[i].value, want);
    }
    struct pool_stats stats;
    pool_get_stats(pool, &stats);
    ck_assert_uint_eq(stats.opened, 1); /* all on one connection */
    ck_assert_uint_eq(stats.broken, 0);
    ck_assert_int_eq(stats.max_depth, 16); /* up to the depth in flight together */
    ck_assert_uint_eq(stats.waits - before.waits, MANY - 16); /* the rest waited for a share */
    ck_assert_int_eq(stats.in_flight, 0);
    pool_free(pool);
}
END_TEST

START_TEST(statement_timeout_fails_only_the_slow_call)
{
    struct pool *pool = new_pipelined_pool(_i == 1, 1, 300);
    struct many_seen seen[3];
    char args[3][16];
    int answered = 0;
    static const char *const sleeps[] = {"0", "2", "0"};
    for (int i = 0; i < 3; i++) {
        snprintf(args[i], 16, "p%d", i);
        seen[i] = (struct many_seen){.answered = &answered, .expected = 3};
        pool_query(pool,
                   &(struct pg_call){{SQL_SLEEP_ECHO, 2, {args[i], sleeps[i]}}, on_many, &seen[i]});
    }
    ck_assert(run_until_finished());
    ck_assert_int_eq(seen[0].status, PG_OK);
    ck_assert_int_eq(seen[1].status, PG_UNAVAILABLE); /* cancelled by statement_timeout */
    ck_assert_int_eq(seen[2].status, PG_OK);
    ck_assert_str_eq(seen[2].value, "p2!");
    struct pool_stats stats;
    pool_get_stats(pool, &stats);
    ck_assert_uint_eq(stats.broken, 0); /* the server cancelled it: the connection is fine */
    pool_free(pool);
}
END_TEST

static void terminate_backends(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    ck_assert(tk_pg_exec(&pg, "layers",
                         "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'check_pgconn' AND pid <> pg_backend_pid()"));
}

START_TEST(lost_connection_fails_exactly_its_calls_in_flight_then_recovers)
{
    struct pool *pool = new_pipelined_pool(_i == 1, 1, 5000);
    struct many_seen seen[5];
    char args[5][16];
    int answered = 0;
    send_many(pool, seen, args, 5, "1", &answered);
    struct event *killer = evtimer_new(base, terminate_backends, NULL);
    struct timeval in_300ms = {0, 300000};
    evtimer_add(killer, &in_300ms);
    ck_assert(run_until_finished());
    event_free(killer);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(seen[i].status, PG_UNAVAILABLE);
    struct pool_stats stats;
    pool_get_stats(pool, &stats);
    ck_assert_uint_eq(stats.broken, 1);
    ck_assert_int_eq(stats.in_flight, 0);
    /* the pool recovers: the next calls run on a new connection */
    send_many(pool, seen, args, 3, "0", &answered);
    ck_assert(run_until_finished());
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(seen[i].status, PG_OK);
    pool_free(pool);
}
END_TEST

START_TEST(silent_server_fails_every_call_in_flight_at_the_deadline)
{
    struct pool *pool = new_pipelined_pool(_i == 1, 1, 300);
    struct query_seen pid;
    pool_query(pool, &(struct pg_call){{"SELECT pg_backend_pid()", 0, {NULL}}, on_query, &pid});
    ck_assert(run_until_finished());
    ck_assert_int_eq(pid.status, PG_OK);
    pid_t backend = (pid_t)atol(pid.value);
    ck_assert_int_eq(kill(backend, SIGSTOP), 0); /* the server stops answering at all */
    struct many_seen seen[4];
    char args[4][16];
    int answered = 0;
    long long started = tk_now_ms();
    send_many(pool, seen, args, 4, "0", &answered);
    bool done = run_until_finished();
    long long waited = tk_now_ms() - started;
    kill(backend, SIGCONT);
    ck_assert(done);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(seen[i].status, PG_UNAVAILABLE);
    /* statement_timeout (300 ms) plus the client's 1 s grace, not the test's deadline */
    ck_assert_msg(waited >= 1200 && waited < 5000, "waited %lld ms", waited);
    send_many(pool, seen, args, 2, "0", &answered);
    ck_assert(run_until_finished());
    ck_assert_int_eq(seen[0].status, PG_OK);
    ck_assert_int_eq(seen[1].status, PG_OK);
    pool_free(pool);
}
END_TEST

/* Sends the calls [0, n) in one loop turn, on an open connection (one call answered first). */
static void send_one_turn(struct pool *pool, const struct pg_statement *statements,
                          struct many_seen *seen, int n, int *answered)
{
    static char warm[16];
    struct many_seen first;
    send_many(pool, &first, &warm, 1, "0", answered);
    ck_assert(run_until_finished());
    *answered = 0;
    for (int i = 0; i < n; i++) {
        seen[i] = (struct many_seen){.answered = answered, .expected = n};
        pool_query(pool, &(struct pg_call){statements[i], on_many, &seen[i]});
    }
    ck_assert(run_until_finished());
}

START_TEST(calls_of_one_turn_share_a_transaction_only_with_sync_per_turn)
{
    struct pool *pool = new_pipelined_pool(_i == 1, 1, 5000);
    enum { N = 6 };
    struct pg_statement st[N];
    for (int i = 0; i < N; i++)
        st[i] = (struct pg_statement){"SELECT txid_current()", 0, {NULL}};
    struct many_seen seen[N];
    int answered;
    send_one_turn(pool, st, seen, N, &answered);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(seen[i].status, PG_OK);
        if (i > 0 && _i == 1)
            ck_assert_str_eq(seen[i].value, seen[0].value); /* one group: one transaction */
        else if (i > 0)
            ck_assert_str_ne(seen[i].value, seen[i - 1].value); /* a transaction each */
    }
    struct pool_stats stats;
    pool_get_stats(pool, &stats);
    ck_assert_uint_eq(stats.group_retries, 0); /* nothing failed */
    pool_free(pool);
}
END_TEST

START_TEST(failing_statement_in_a_group_fails_only_its_call_the_others_commit)
{
    struct pool *pool = new_pipelined_pool(true, 1, 5000);
    enum { N = 7 };
    static const char *const keys[N] = {"g0", "g1", "g2", "g1", "g4", "g5", "g6"};
    struct pg_statement st[N];
    for (int i = 0; i < N; i++)
        st[i] = (struct pg_statement){SQL_INSERT, 1, {keys[i]}};
    st[5] = (struct pg_statement){SQL_FAIL, 1, {keys[5]}}; /* division by zero */
    struct many_seen seen[N];
    int answered;
    send_one_turn(pool, st, seen, N, &answered);
    for (int i = 0; i < N; i++) {
        if (i == 3 || i == 5) { /* a duplicate key of call 1; a division by zero */
            ck_assert_int_eq(seen[i].status, PG_ERROR);
            continue;
        }
        ck_assert_int_eq(seen[i].status, PG_OK);
        ck_assert_str_eq(seen[i].value, keys[i]);
    }
    ck_assert_int_eq(count_rows("k LIKE 'g%'"), 5); /* every other write committed */
    struct pool_stats stats;
    pool_get_stats(pool, &stats);
    ck_assert_uint_eq(stats.broken, 0);
    /* One group failed and went again: the calls between the two PREPAREs (each alone), g1 to
     * g4 in key order, with the duplicate g1. */
    ck_assert_uint_eq(stats.group_retries, 1);
    ck_assert_int_eq(stats.in_flight, 0);
    pool_free(pool);
}
END_TEST

/* _i 0: a sync per call, 1: per loop turn. A pipelined call's PREPARE that fails (its table
 * does not exist yet) must not leave its name behind: once the table exists, the same statement
 * on the same connection is prepared again and runs, in the failed PREPARE's slot. */
START_TEST(pipelined_prepare_that_failed_is_prepared_again)
{
    ck_assert(tk_pg_exec(&pg, "layers", "DROP TABLE IF EXISTS later_t"));
    struct pool *pool = new_pipelined_pool(_i == 1, 1, 5000);
    struct query_seen seen;
    pool_query(pool, &(struct pg_call){{SQL_INSERT_LATER, 1, {"q1"}}, on_query, &seen});
    ck_assert(run_until_finished());
    ck_assert_int_eq(seen.status, PG_ERROR);
    char names[64];
    prepared_names(pool, names, sizeof names);
    ck_assert_str_eq(names, "");

    ck_assert(tk_pg_exec(&pg, "layers", "CREATE TABLE later_t (k text PRIMARY KEY)"));
    for (int i = 2; i <= 3; i++) { /* prepared, then by name */
        char key[8];
        snprintf(key, sizeof key, "q%d", i);
        pool_query(pool, &(struct pg_call){{SQL_INSERT_LATER, 1, {key}}, on_query, &seen});
        ck_assert(run_until_finished());
        ck_assert_int_eq(seen.status, PG_OK);
        ck_assert_str_eq(seen.value, key);
    }
    prepared_names(pool, names, sizeof names);
    ck_assert_str_eq(names, "s0");
    assert_one_connection(pool);
    pool_free(pool);
    ck_assert(tk_pg_exec(&pg, "layers", "DROP TABLE later_t"));
}
END_TEST

/* ---- host names ---- */

struct connect_seen {
    bool ok; /* the connect's outcome */
};

static void on_connect(struct pgconn *conn, bool ok, void *arg)
{
    (void)conn;
    ((struct connect_seen *)arg)->ok = ok;
    finished = true;
}

START_TEST(localhost_url_connects_through_the_resolver)
{
    struct resolver *resolver = resolver_create(base);
    char url[128];
    snprintf(url, sizeof url, "postgresql://layers@localhost:%d/layers", PG_PORT);
    struct pgconn_settings s = settings(url, false, resolver);
    struct pgconn *conn = pgconn_create(base, &s, NULL);
    struct connect_seen seen = {false};
    pgconn_connect(conn, on_connect, &seen);
    ck_assert(run_until_finished());
    ck_assert(seen.ok);
    struct query_seen q;
    pgconn_query(conn, &(struct pg_call){.statement = {.sql = "SELECT host(inet_server_addr())"},
                                         .cb = on_query,
                                         .arg = &q});
    ck_assert(run_until_finished());
    ck_assert_int_eq(q.status, PG_OK);
    ck_assert(strcmp(q.value, "127.0.0.1") == 0 || strcmp(q.value, "::1") == 0);
    pgconn_free(conn);
    resolver_free(resolver);
}
END_TEST

static void on_listener_wake(void *arg)
{
    ++*(int *)arg;
    finished = true;
}

START_TEST(listener_resolves_its_host_then_hears_a_notify)
{
    struct resolver *resolver = resolver_create(base);
    char url[128];
    snprintf(url, sizeof url, "postgresql://layers@localhost:%d/layers", PG_PORT);
    int wakes = 0;
    struct pg_listener *listener =
        pg_listener_create(base, resolver, url, "check_channel", 3000, on_listener_wake, &wakes);
    ck_assert(run_until_finished()); /* woken once when the LISTEN is in force */
    ck_assert(pg_listener_up(listener));
    ck_assert(tk_pg_exec(&pg, "layers", "NOTIFY check_channel"));
    ck_assert(run_until_finished());
    ck_assert_int_eq(wakes, 2);
    ck_assert_uint_eq(pg_listener_notifications(listener), 1);
    pg_listener_free(listener);
    resolver_free(resolver);
}
END_TEST

START_TEST(unknown_host_fails_the_connect)
{
    struct resolver *resolver = resolver_create(base);
    struct pgconn_settings s =
        settings("postgresql://layers@no-such-host.invalid:1/layers", false, resolver);
    struct pgconn *conn = pgconn_create(base, &s, NULL);
    struct connect_seen seen = {true};
    pgconn_connect(conn, on_connect, &seen);
    ck_assert(run_until_finished()); /* within the connect deadline */
    ck_assert(!seen.ok);
    ck_assert(pgconn_is_broken(conn));
    pgconn_free(conn);
    resolver_free(resolver);
}
END_TEST

START_TEST(host_to_resolve_reads_urls_and_conninfo)
{
    char host[64];
    ck_assert(pgconn_host_to_resolve("postgresql://u@l6-db:5432/db", host, sizeof host));
    ck_assert_str_eq(host, "l6-db");
    ck_assert(pgconn_host_to_resolve("host=db.example port=5432 dbname=x", host, sizeof host));
    ck_assert_str_eq(host, "db.example");
    ck_assert(!pgconn_host_to_resolve("postgresql://u@127.0.0.1:5432/db", host, sizeof host));
    ck_assert(!pgconn_host_to_resolve("postgresql://u@[::1]:5432/db", host, sizeof host));
    ck_assert(!pgconn_host_to_resolve("host=/var/run/postgresql dbname=x", host, sizeof host));
    ck_assert(!pgconn_host_to_resolve("host=a,b dbname=x", host, sizeof host));
    ck_assert(!pgconn_host_to_resolve("host=db hostaddr=10.0.0.1", host, sizeof host));
    ck_assert(!pgconn_host_to_resolve("dbname=x", host, sizeof host));
    ck_assert(!pgconn_host_to_resolve("postgresql://[broken", host, sizeof host));
}
END_TEST

START_TEST(sqlstates_split_into_unavailable_and_refused)
{
    /* No server error at all: the connection failed. */
    ck_assert_int_eq(pg_classify_sqlstate(NULL), PG_UNAVAILABLE);
    /* The database cannot serve now (503): connection exceptions, too many connections, a
     * shutdown or a statement_timeout cancellation, an I/O error. */
    const char *unavailable[] = {"08006", "08001", "53300", "53100", "57P01", "57014", "58030"};
    for (size_t i = 0; i < sizeof unavailable / sizeof *unavailable; i++)
        ck_assert_msg(pg_classify_sqlstate(unavailable[i]) == PG_UNAVAILABLE, "%s", unavailable[i]);
    /* The query itself was refused (500): retrying it elsewhere would fail the same way. */
    const char *refused[] = {"23505", "22001", "42P01", "42601", "40001", "XX000", "00000"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        ck_assert_msg(pg_classify_sqlstate(refused[i]) == PG_ERROR, "%s", refused[i]);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("pgconn");
    TCase *pure = tcase_create("pure");
    tcase_add_test(pure, host_to_resolve_reads_urls_and_conninfo);
    tcase_add_test(pure, sqlstates_split_into_unavailable_and_refused);
    suite_add_tcase(suite, pure);
    TCase *live = tcase_create("live");
    tcase_set_timeout(live, 60);
    tcase_add_checked_fixture(live, setup, teardown);
    tcase_add_test(live, transaction_batch_runs_every_statement);
    tcase_add_test(live, session_options_apply_and_a_batch_setting_ends_with_it);
    tcase_add_test(live, failing_statement_rolls_back_the_transaction);
    tcase_add_test(live, each_on_its_own_fails_only_the_failing_statement);
    tcase_add_test(live, connection_is_reused_after_a_failed_batch);
    tcase_add_test(live, prepared_statement_runs_by_name_on_reuse);
    tcase_add_test(live, batch_prepares_its_statement_once_and_runs_it_by_name);
    tcase_add_loop_test(live, failed_prepare_fails_its_call_and_the_next_batch_prepares_again, 0,
                        2);
    tcase_add_test(live, prepared_in_a_rolled_back_batch_stays_prepared);
    tcase_add_loop_test(
        live, pipelined_calls_get_their_own_answers_and_one_failure_fails_only_itself, 0, 2);
    tcase_add_loop_test(live, statement_timeout_fails_only_the_slow_call, 0, 2);
    tcase_add_loop_test(live, lost_connection_fails_exactly_its_calls_in_flight_then_recovers, 0,
                        2);
    tcase_add_loop_test(live, silent_server_fails_every_call_in_flight_at_the_deadline, 0, 2);
    tcase_add_loop_test(live, calls_of_one_turn_share_a_transaction_only_with_sync_per_turn, 0, 2);
    tcase_add_test(live, failing_statement_in_a_group_fails_only_its_call_the_others_commit);
    tcase_add_loop_test(live, pipelined_prepare_that_failed_is_prepared_again, 0, 2);
    tcase_add_test(live, localhost_url_connects_through_the_resolver);
    tcase_add_test(live, unknown_host_fails_the_connect);
    tcase_add_test(live, listener_resolves_its_host_then_hears_a_notify);
    suite_add_tcase(suite, live);
    if (!tk_pg_start(&pg, PG_PORT, NULL)) {
        fprintf(stderr, "cannot start PostgreSQL\n");
        return 1;
    }
    int failed = check_run(suite, CK_FORK_GETENV);
    tk_pg_destroy(&pg);
    return failed == 0 ? 0 : 1;
}
