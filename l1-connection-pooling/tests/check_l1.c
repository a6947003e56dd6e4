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

#define PG_PORT     22000
#define SERVER_PORT 22100

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
                         "DB_POOL_ACQUIRE_TIMEOUT_MS=500", NULL};
    struct tk_server server;
    ck_assert(contract_start_server(&server, env));
    tk_wait_status(SERVER_PORT, "/read/warm", 200, 5000);
    PGconn *lock = tk_pg_lock_records(&pg);
    ck_assert(lock != NULL);
    struct tk_batch *batch = tk_batch_start(SERVER_PORT, "/read/pool:", 6);
    wait_stat_at_least("timeouts", 4); /* two hold the connections, four give up */
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
    ck_assert_int_eq(ok, 2);
    ck_assert_int_eq(timed_out, 4);
    ck_assert_int_le(pool_stat("pool_size"), 2);
    ck_assert_int_eq(pool_stat("requests_waiting"), 0);
    tk_server_stop(&server, SIGTERM, 10000);
}
END_TEST

START_TEST(wait_queue_is_bounded)
{
    const char *env[] = {"DB_POOL_MIN_SIZE=1", "DB_POOL_MAX_SIZE=1", "DB_POOL_MAX_WAITING=2",
                         "DB_POOL_ACQUIRE_TIMEOUT_MS=5000", NULL};
    struct tk_server server;
    ck_assert(contract_start_server(&server, env));
    tk_wait_status(SERVER_PORT, "/read/warm", 200, 5000);
    PGconn *lock = tk_pg_lock_records(&pg);
    ck_assert(lock != NULL);
    struct tk_batch *batch = tk_batch_start(SERVER_PORT, "/read/pool:", 6);
    wait_stat_at_least("rejected", 3); /* one runs, two wait, three are refused at once */
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
    ck_assert_int_eq(ok, 3);
    ck_assert_int_eq(busy, 3);
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

int main(void)
{
    if (!tk_pg_start(&pg, PG_PORT, NULL))
        return 1;
    /* 500 clients queueing for 10 connections on a loaded 2-core CI machine: wait longer. */
    static const char *const env[] = {"DB_POOL_ACQUIRE_TIMEOUT_MS=20000", NULL};
    struct contract_target target = {SERVER_BIN, "1-connection-pooling", SERVER_PORT, &pg, env,
                                     false};
    TCase *own = tcase_create("pool");
    tcase_set_timeout(own, 60);
    tcase_add_test(own, acquire_wait_is_bounded);
    tcase_add_test(own, wait_queue_is_bounded);
    tcase_add_test(own, connections_are_reused_and_counted);
    return layer_suite_run(&target, own);
}
