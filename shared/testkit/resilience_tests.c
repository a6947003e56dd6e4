/*
 * resilience_tests: what every layer must survive, as Check test cases (see contract_tests.h):
 * many concurrent clients, a client that hangs up mid-query, PostgreSQL stopping and coming
 * back under a running server, and graceful shutdown with requests in flight.
 *
 * Slow queries are made on purpose by holding an exclusive lock on `records` from the test's own
 * libpq connection: every request that touches the table then waits until the test commits.
 */
#include "resilience_tests.h"

#include "contract_tests.h"
#include "check_run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct tk_server server;

static void start_server(void)
{
    ck_assert_msg(contract_start_server(&server, NULL), "server did not start");
}

static void stop_server(void)
{
    tk_server_stop(&server, SIGKILL, 5000);
    tk_pg_restart(contract_target()->pg); /* in case a test stopped it and then failed */
}

static int port(void)
{
    return contract_target()->port;
}

/* Holds requests in flight: locks `records` in the target's database and in its other ones,
 * if any (a sharded layer's keys are everywhere). */
struct records_locks {
    PGconn *conns[8]; /* one lock per database, NULL-terminated */
};

static struct records_locks lock_records(void)
{
    struct records_locks locks = {{NULL}};
    const struct contract_target *t = contract_target();
    int n = 0;
    locks.conns[n++] = tk_pg_lock_records(t->pg);
    struct tk_pg *const *others = contract_other_pgs();
    for (int i = 0; others && others[i]; i++) {
        ck_assert(n + 1 < (int)(sizeof locks.conns / sizeof locks.conns[0]));
        locks.conns[n++] = tk_pg_lock_records(others[i]);
    }
    for (int i = 0; i < n; i++)
        ck_assert_msg(locks.conns[i] != NULL, "could not lock records");
    contract_after_lock();
    return locks;
}

static void unlock_records(struct records_locks *locks)
{
    for (int i = 0; locks->conns[i]; i++)
        tk_pg_unlock(locks->conns[i]);
}

static void wait_in_flight(long n)
{
    ck_assert_msg(tk_wait_in_flight(port(), n, true, 10000), "never saw %ld requests in flight", n);
}

/* A burst answer: 200, or (for a layer that sheds load) the contract's 503. Never silence. */
static bool answered(const struct tk_response *res)
{
    if (res->status == 200)
        return true;
    const char *detail = json_string_value(json_object_get(res->json, "detail"));
    return contract_target()->sheds_load && res->status == 503 && detail != NULL &&
           strcmp(detail, "Database unavailable") == 0;
}

START_TEST(five_hundred_concurrent_clients)
{
    enum { N = 500 };
    struct tk_request *reqs = calloc(N, sizeof *reqs);
    struct tk_response *res = calloc(N, sizeof *res);
    char(*keys)[32] = calloc(N, sizeof *keys);
    char **bodies = calloc(N, sizeof *bodies);
    char(*paths)[64] = calloc(N, sizeof *paths);
    bool *written = calloc(N, sizeof *written);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "concurrent:%d", i);
        bodies[i] = tk_write_body(keys[i], keys[i]);
        reqs[i] = (struct tk_request){"POST", "/write", bodies[i], 0, NULL};
    }
    tk_http_many(port(), reqs, res, N, 60000);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(answered(&res[i]), "write %d: %ld %s", i, res[i].status, res[i].body);
        written[i] = res[i].status == 200;
        tk_response_free(&res[i]);
    }
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "/read/concurrent:%d", i);
        reqs[i] = (struct tk_request){"GET", paths[i], NULL, 0, NULL};
    }
    tk_http_many(port(), reqs, res, N, 60000);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(answered(&res[i]), "read %d: %ld %s", i, res[i].status, res[i].body);
        if (written[i] && res[i].status == 200)
            ck_assert_str_eq(json_string_value(json_object_get(res[i].json, "value")), keys[i]);
        tk_response_free(&res[i]);
        free(bodies[i]);
    }
    /* After the burst the server serves normally: one write and its read, both 200. */
    char *body = tk_write_body("concurrent:after", "calm");
    struct tk_response one;
    tk_post(port(), "/write", body, &one);
    ck_assert_msg(one.status == 200, "write after the burst: %ld %s", one.status, one.body);
    tk_response_free(&one);
    free(body);
    tk_get(port(), "/read/concurrent:after", &one);
    ck_assert_int_eq(one.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(one.json, "value")), "calm");
    tk_response_free(&one);
    free(reqs), free(res), free(keys), free(bodies), free(paths), free(written);
}
END_TEST

START_TEST(client_disconnects_mid_query)
{
    struct records_locks locks = lock_records();
    const char get[] = "GET /read/gone HTTP/1.1\r\nHost: t\r\n\r\n";
    const char body[] = "{\"key\":\"gone\",\"value\":\"v\"}";
    char post[256];
    int len = snprintf(post, sizeof post,
                       "POST /write HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n%s",
                       sizeof body - 1, body);
    int a = tk_raw_send(port(), get, sizeof get - 1);
    int b = tk_raw_send(port(), post, (size_t)len);
    ck_assert(a >= 0 && b >= 0);
    wait_in_flight(2);
    close(a);
    close(b);
    usleep(100000);
    unlock_records(&locks);
    /* The server answered into closed sockets without crashing, and serves on. */
    ck_assert(tk_wait_status(port(), "/read/gone", 200, 5000));
    ck_assert_int_eq(kill(server.pid, 0), 0);
    /* Nothing stays in flight. Polled: the write's last steps after its commit (a cache
     * invalidation) may still run when the read already sees the row. */
    ck_assert_msg(tk_wait_in_flight(port(), 0, false, 5000),
                  "requests still in flight 5 s after the clients left: %ld", tk_in_flight(port()));
}
END_TEST

START_TEST(database_stops_and_comes_back)
{
    struct tk_response res;
    ck_assert(tk_pg_stop(contract_target()->pg));
    tk_get(port(), "/read/outage", &res);
    ck_assert_msg(res.status == 503, "read during outage: %ld %s", res.status, res.body);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "detail")),
                     "Database unavailable");
    ck_assert(json_is_string(json_object_get(res.json, "request_id")));
    ck_assert_msg(res.seconds < 5.0, "503 took %.1f s", res.seconds);
    tk_response_free(&res);

    tk_post(port(), "/write", "{\"key\":\"outage\",\"value\":\"v\"}", &res);
    ck_assert_int_eq(res.status, 503);
    tk_response_free(&res);

    tk_get(port(), "/health", &res);
    ck_assert_int_eq(res.status, 503);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "unhealthy");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "database")), "unavailable");
    tk_response_free(&res);

    ck_assert(tk_pg_restart(contract_target()->pg));
    /* Recovers by itself: no restart of the server. */
    ck_assert_msg(tk_wait_status(port(), "/read/outage", 200, 15000), "no recovery");
    ck_assert(tk_wait_status(port(), "/health", 200, 5000));
    tk_post(port(), "/write", "{\"key\":\"outage\",\"value\":\"back\"}", &res);
    ck_assert_int_eq(res.status, 200);
    tk_response_free(&res);
}
END_TEST

START_TEST(graceful_shutdown_finishes_in_flight_requests)
{
    struct records_locks locks = lock_records();
    struct tk_batch *batch = tk_batch_start(port(), "/read/shutdown:", 8);
    wait_in_flight(8);

    kill(server.pid, SIGTERM);
    /* No new connections once shutdown started. */
    long long deadline = tk_now_ms() + 3000;
    int fd;
    while ((fd = tk_raw_send(port(), "GET /ping HTTP/1.1\r\n\r\n", 22)) >= 0) {
        close(fd);
        ck_assert_msg(tk_now_ms() < deadline, "still accepting connections after SIGTERM");
        usleep(20000);
    }
    unlock_records(&locks);
    struct tk_response *res = tk_batch_wait(batch);
    for (int i = 0; i < 8; i++)
        ck_assert_msg(res[i].status == 200, "in-flight request %d: %ld", i, res[i].status);
    tk_batch_free(batch);
    ck_assert_int_eq(tk_server_stop(&server, 0, 10000), 0); /* exit code 0 */
}
END_TEST

static void let_database_go_on(void)
{
    tk_pg_pause(contract_target()->pg, false);
    stop_server();
}

START_TEST(a_hung_database_shows_in_health_at_once)
{
    /* A database that stops answering (its connections stay open) is worse than one that is
     * gone: nothing fails, everything waits. /health has its own deadline (HEALTH_TIMEOUT_MS,
     * 1 s), far shorter than the query timeout. */
    struct tk_response res;
    tk_get(port(), "/health", &res); /* the pool holds a connection now */
    ck_assert_int_eq(res.status, 200);
    tk_response_free(&res);
    ck_assert(tk_pg_pause(contract_target()->pg, true));
    tk_get(port(), "/health", &res);
    ck_assert_msg(res.status == 503, "/health while the database hangs: %ld %s", res.status,
                  res.body);
    ck_assert_msg(res.seconds < 2.5, "/health took %.1f s to say so", res.seconds);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "unhealthy");
    tk_response_free(&res);
    ck_assert(tk_pg_pause(contract_target()->pg, false));
    ck_assert_msg(tk_wait_status(port(), "/health", 200, 15000), "no recovery");
}
END_TEST

TCase *hung_database_tcase_without(const char *const *skip)
{
    const TTest *tests[] = {a_hung_database_shows_in_health_at_once, NULL};
    return check_tcase("hung database", start_server, let_database_go_on, 60,
                       check_tests_without(tests, skip));
}

TCase *hung_database_tcase(void)
{
    return hung_database_tcase_without(NULL);
}

TCase *resilience_tcase_without(const char *const *skip)
{
    const TTest *tests[] = {five_hundred_concurrent_clients, client_disconnects_mid_query,
                            database_stops_and_comes_back,
                            graceful_shutdown_finishes_in_flight_requests, NULL};
    return check_tcase("resilience", start_server, stop_server, 120,
                       check_tests_without(tests, skip));
}

TCase *resilience_tcase(void)
{
    return resilience_tcase_without(NULL);
}
