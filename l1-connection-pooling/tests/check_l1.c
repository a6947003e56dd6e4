/*
 * Layer 1 black-box tests: the shared contract and resilience cases against
 * l1-connection-pooling, and the pool's own promises: a bounded wait (then 503 "Database
 * unavailable"), a bounded queue (overflow gets an immediate 503 "Too many requests waiting for
 * a database connection"), connections reused rather than opened per request, and real numbers
 * in /pool-stats.
 */
#include "layer_suite.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Built twice: check_l1 runs the pool in its default exclusive mode, check_l1_pipeline runs the
 * same suite with DB_POOL_MODE=pipeline (so the mode passes everything exclusive does), plus
 * the pipeline's own cases. */
#ifdef L1_PIPELINE
#define PG_PORT     22010
#define SERVER_PORT 22110
#define MODE_ENV    "DB_POOL_MODE=pipeline"
#define SHARES      2 /* requests one connection carries at once (DB_PIPELINE_DEPTH below) */
#else
#define PG_PORT     22000
#define SERVER_PORT 22100
#define MODE_ENV    "DB_POOL_MODE=exclusive"
#define SHARES      1 /* requests one connection carries at once */
#endif

static struct tk_pg pg;

/* A member of GET /pool-stats. */
static long long pool_stat(const char *name)
{
    struct tk_response res;
    tk_get(SERVER_PORT, "/pool-stats", &res);
    ck_assert_int_eq(res.status, 200);
    json_t *v = json_object_get(res.json, name);
    ck_assert_msg(json_is_number(v), "pool-stats has no number '%s': %s", name, res.body);
    long long n = (long long)json_number_value(v);
    tk_response_free(&res);
    return n;
}

static void wait_stat_at_least(const char *name, long long n)
{
    long long deadline = tk_now_ms() + 10000;
    while (pool_stat(name) < n) {
        ck_assert_msg(tk_now_ms() < deadline, "%s never reached %lld", name, n);
        usleep(20000);
    }
}

START_TEST(acquire_wait_is_bounded)
{
    const char *env[] = {"DB_POOL_MIN_SIZE=1", "DB_POOL_MAX_SIZE=2",
                         "DB_POOL_ACQUIRE_TIMEOUT_MS=500", "DB_PIPELINE_DEPTH=2", NULL};
    struct tk_server server;
    ck_assert(contract_start_server(&server, env));
    tk_wait_status(SERVER_PORT, "/read/warm", 200, 5000);
    PGconn *lock = tk_pg_lock_records(&pg);
    ck_assert(lock != NULL);
    struct tk_batch *batch = tk_batch_start(SERVER_PORT, "/read/pool:", 6);
    wait_stat_at_least("timeouts", 6 - 2 * SHARES); /* two (or four) hold the connections, the
                                                        others give up */
    tk_pg_unlock(lock);
    struct tk_response *res = tk_batch_wait(batch);
    int ok = 0, timed_out = 0;
    for (int i = 0; i < 6; i++) {
        if (res[i].status == 200) {
            ok++;
        } else {
            ck_assert_msg(res[i].status == 503, "request %d: %ld", i, res[i].status);
            ck_assert_str_eq(json_string_value(json_object_get(res[i].json, "detail")),
                             "Database unavailable");
            ck_assert_msg(res[i].seconds >= 0.45 && res[i].seconds < 3.0,
                          "waited %.2f s for a 500 ms acquire timeout", res[i].seconds);
            timed_out++;
        }
    }
    tk_batch_free(batch);
    ck_assert_int_eq(ok, 2 * SHARES);
    ck_assert_int_eq(timed_out, 6 - 2 * SHARES);
    ck_assert_int_le(pool_stat("pool_size"), 2);
    ck_assert_int_eq(pool_stat("requests_waiting"), 0);
    tk_server_stop(&server, SIGTERM, 10000);
}
END_TEST

START_TEST(wait_queue_is_bounded)
{
    const char *env[] = {"DB_POOL_MIN_SIZE=1", "DB_POOL_MAX_SIZE=1", "DB_POOL_MAX_WAITING=2",
                         "DB_POOL_ACQUIRE_TIMEOUT_MS=5000", "DB_PIPELINE_DEPTH=2", NULL};
    struct tk_server server;
    ck_assert(contract_start_server(&server, env));
    tk_wait_status(SERVER_PORT, "/read/warm", 200, 5000);
    PGconn *lock = tk_pg_lock_records(&pg);
    ck_assert(lock != NULL);
    struct tk_batch *batch = tk_batch_start(SERVER_PORT, "/read/pool:", 6);
    wait_stat_at_least("rejected", 4 - SHARES); /* one (two) run, two wait, the rest are
                                                   refused at once */
    ck_assert_int_eq(pool_stat("requests_waiting"), 2);
    tk_pg_unlock(lock);
    struct tk_response *res = tk_batch_wait(batch);
    int ok = 0, busy = 0;
    for (int i = 0; i < 6; i++) {
        if (res[i].status == 200) {
            ok++;
        } else {
            ck_assert_msg(res[i].status == 503, "request %d: %ld", i, res[i].status);
            ck_assert_str_eq(json_string_value(json_object_get(res[i].json, "detail")),
                             "Too many requests waiting for a database connection");
            ck_assert_msg(res[i].seconds < 1.0, "a refusal took %.2f s", res[i].seconds);
            busy++;
        }
    }
    tk_batch_free(batch);
    ck_assert_int_eq(ok, SHARES + 2);
    ck_assert_int_eq(busy, 4 - SHARES);
    tk_server_stop(&server, SIGTERM, 10000);
}
END_TEST

START_TEST(connections_are_reused_and_counted)
{
    const char *env[] = {"DB_POOL_MIN_SIZE=2", "DB_POOL_MAX_SIZE=4", NULL};
    struct tk_server server;
    ck_assert(contract_start_server(&server, env));
    long long acquired = pool_stat("acquisitions");
    for (int i = 0; i < 50; i++) {
        struct tk_response res;
        tk_get(SERVER_PORT, "/read/reuse", &res);
        ck_assert_int_eq(res.status, 200);
        tk_response_free(&res);
    }
    ck_assert_int_eq(pool_stat("acquisitions"), acquired + 50);
    ck_assert_int_le(pool_stat("connections_opened"), 4); /* 50 requests, at most 4 opened */
    ck_assert_int_ge(pool_stat("pool_size"), 1);
    ck_assert_int_le(pool_stat("pool_size"), 4);
    ck_assert_int_eq(pool_stat("max_size"), 4);
    ck_assert_int_eq(pool_stat("min_size"), 2);
    ck_assert_int_eq(pool_stat("pool_available"), pool_stat("pool_size"));
    ck_assert_int_eq(pool_stat("requests_waiting"), 0);

    struct tk_response res;
    tk_get(SERVER_PORT, "/pool-stats", &res);
    ck_assert(json_is_number(json_object_get(res.json, "usage_ms")));
    ck_assert(json_number_value(json_object_get(res.json, "usage_ms")) > 0.0);
    tk_response_free(&res);
    tk_get(SERVER_PORT, "/metrics", &res);
    ck_assert(strstr(res.body, "\npool_acquires_total ") != NULL);
    ck_assert(strstr(res.body, "\npool_size ") != NULL);
    tk_response_free(&res);
    tk_server_stop(&server, SIGTERM, 10000);
}
END_TEST

#ifdef L1_PIPELINE
/* ---- pipeline mode ---- */

static void write_value(const char *key, const char *value)
{
    char *body = tk_write_body(key, value);
    struct tk_response res;
    tk_post(SERVER_PORT, "/write", body, &res);
    ck_assert_msg(res.status == 200, "write %s: %ld %s", key, res.status, res.body);
    tk_response_free(&res);
    free(body);
}

/* Sends n reads of "deep:<i>" while records is locked, so that all are in flight on the one
 * connection at once; returns the batch after the lock is released (or `hold` ran). */
static struct tk_batch *reads_in_flight(int n, void (*hold)(void))
{
    PGconn *lock = tk_pg_lock_records(&pg);
    ck_assert(lock != NULL);
    struct tk_batch *batch = tk_batch_start(SERVER_PORT, "/read/deep:", n);
    wait_stat_at_least("in_flight", n);
    if (hold != NULL)
        hold();
    tk_pg_unlock(lock);
    return batch;
}

START_TEST(many_requests_on_one_connection_get_their_own_answers)
{
    const char *env[] = {"DB_POOL_MIN_SIZE=1", "DB_POOL_MAX_SIZE=1", NULL};
    struct tk_server server;
    ck_assert(contract_start_server(&server, env));
    enum { N = 24 };
    for (int i = 0; i < N; i++) {
        char key[32], value[32];
        snprintf(key, sizeof key, "deep:%d", i);
        snprintf(value, sizeof value, "value-%d", i * 7);
        write_value(key, value);
    }
    struct tk_batch *batch = reads_in_flight(N, NULL);
    struct tk_response *res = tk_batch_wait(batch);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(res[i].status == 200, "read %d: %ld %s", i, res[i].status, res[i].body);
        json_t *data = res[i].json;
        char key[32], value[32];
        snprintf(key, sizeof key, "deep:%d", i);
        snprintf(value, sizeof value, "value-%d", i * 7);
        ck_assert_str_eq(json_string_value(json_object_get(data, "key")), key);
        ck_assert_str_eq(json_string_value(json_object_get(data, "value")), value);
    }
    tk_batch_free(batch);
    ck_assert_int_ge(pool_stat("max_depth_reached"), N); /* all in flight together */
    ck_assert_int_eq(pool_stat("connections_opened"), 1);
    ck_assert_int_eq(pool_stat("in_flight"), 0);
    struct tk_response m;
    tk_get(SERVER_PORT, "/metrics", &m);
    ck_assert(strstr(m.body, "\npool_max_depth_reached ") != NULL);
    tk_response_free(&m);
    tk_server_stop(&server, SIGTERM, 10000);
}
END_TEST

/* SIGKILLs the server's backend: PostgreSQL then ends every session and restarts itself, as
 * after any crash of a server process. */
static void kill_backend(void)
{
    PGconn *admin = tk_pg_connect(&pg, "postgres");
    ck_assert_ptr_nonnull(admin);
    PGresult *r = PQexec(admin, "SELECT pid FROM pg_stat_activity "
                                "WHERE application_name = 'l1-connection-pooling'");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQntuples(r), 1);
    ck_assert_int_eq(kill((pid_t)atol(PQgetvalue(r, 0, 0)), SIGKILL), 0);
    PQclear(r);
    PQfinish(admin);
}

START_TEST(killed_database_fails_the_requests_in_flight_then_recovers)
{
    const char *env[] = {"DB_POOL_MIN_SIZE=1", "DB_POOL_MAX_SIZE=1", NULL};
    struct tk_server server;
    ck_assert(contract_start_server(&server, env));
    tk_wait_status(SERVER_PORT, "/read/warm", 200, 5000);
    enum { N = 8 };
    struct tk_batch *batch = reads_in_flight(N, kill_backend);
    struct tk_response *res = tk_batch_wait(batch);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(res[i].status == 503, "read %d: %ld %s", i, res[i].status, res[i].body);
        ck_assert_str_eq(json_string_value(json_object_get(res[i].json, "detail")),
                         "Database unavailable");
    }
    tk_batch_free(batch);
    ck_assert_msg(tk_wait_status(SERVER_PORT, "/read/after", 200, 20000), "no recovery");
    write_value("after", "kill");
    ck_assert_int_ge(pool_stat("connections_broken"), 1);
    tk_server_stop(&server, SIGTERM, 10000);
}
END_TEST

START_TEST(deadline_fails_each_call_past_it)
{
    const char *env[] = {"DB_POOL_MIN_SIZE=1", "DB_POOL_MAX_SIZE=1", "DB_QUERY_TIMEOUT_MS=300",
                         NULL};
    struct tk_server server;
    ck_assert(contract_start_server(&server, env));
    tk_wait_status(SERVER_PORT, "/read/warm", 200, 5000);
    PGconn *lock = tk_pg_lock_records(&pg);
    ck_assert(lock != NULL);
    struct tk_batch *batch = tk_batch_start(SERVER_PORT, "/read/deep:", 4);
    struct tk_response *res = tk_batch_wait(batch); /* the lock is never released in time */
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(res[i].status == 503, "read %d: %ld %s", i, res[i].status, res[i].body);
        ck_assert_msg(res[i].seconds < 4.0, "read %d took %.1f s", i, res[i].seconds);
    }
    tk_batch_free(batch);
    tk_pg_unlock(lock);
    ck_assert(tk_wait_status(SERVER_PORT, "/read/after-deadline", 200, 5000));
    tk_server_stop(&server, SIGTERM, 10000);
}
END_TEST
#endif

int main(void)
{
    if (!tk_pg_start(&pg, PG_PORT, NULL))
        return 1;
    /* 500 clients queueing for 10 connections on a loaded 2-core CI machine: wait longer. */
    static const char *const env[] = {"DB_POOL_ACQUIRE_TIMEOUT_MS=20000", MODE_ENV, NULL};
    struct contract_target target = {SERVER_BIN, "1-connection-pooling", SERVER_PORT, &pg, env,
                                     false};
    TCase *own = tcase_create("pool");
    tcase_set_timeout(own, 60);
    tcase_add_test(own, acquire_wait_is_bounded);
    tcase_add_test(own, wait_queue_is_bounded);
    tcase_add_test(own, connections_are_reused_and_counted);
#ifdef L1_PIPELINE
    tcase_add_test(own, many_requests_on_one_connection_get_their_own_answers);
    tcase_add_test(own, killed_database_fails_the_requests_in_flight_then_recovers);
    tcase_add_test(own, deadline_fails_each_call_past_it);
#endif
    return layer_suite_run(&target, own);
}
