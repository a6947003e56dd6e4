/*
 * Layer 0 black-box tests: the shared contract and resilience cases against l0-single-db, and
 * this layer's own lesson: when more requests are in flight than PostgreSQL lets this user
 * connect, the extra ones get a clean, quick 503 (never a hang), and the rest still succeed.
 */
#include "layer_suite.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_PORT      21000
#define SERVER_PORT  21100
#define LIMITED_PORT 21101

static struct tk_pg pg;

START_TEST(more_clients_than_connections_get_quick_503s)
{
    /* A role allowed two connections (superusers ignore limits; `layers` is not one). */
    ck_assert(
        tk_pg_exec(&pg, "postgres",
                   "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'limited') "
                   "THEN CREATE ROLE limited LOGIN CONNECTION LIMIT 2; END IF; END $$;"
                   "GRANT CREATE, USAGE ON SCHEMA public TO limited;"));
    ck_assert(tk_pg_exec(&pg, "layers",
                         "CREATE TABLE IF NOT EXISTS records (key varchar(255) PRIMARY KEY, "
                         "value text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
                         "updated_at timestamptz NOT NULL DEFAULT now());"
                         "GRANT ALL ON records TO limited;"));
    char url[128];
    snprintf(url, sizeof url, "DATABASE_URL=postgresql://limited@127.0.0.1:%d/layers", PG_PORT);
    /* A connect deadline far above the bound below: a refusal that waited for it (instead of
     * PostgreSQL's "too many connections") fails the test on any machine, however loaded. */
    const char *env[] = {url, "DB_CONNECT_TIMEOUT_MS=30000", NULL};
    struct tk_server limited;
    ck_assert(tk_server_start(&limited, contract_target()->binary, LIMITED_PORT, env));

    PGconn *lock = tk_pg_lock_records(&pg);
    ck_assert(lock != NULL);
    struct tk_batch *batch = tk_batch_start(LIMITED_PORT, "/read/crowd:", 20);
    /* Two requests hold the two connections (waiting on our lock): wait until the other 18
     * have been refused and answered, then let the two finish. */
    const char *refusals =
        "http_requests_total{method=\"GET\",route=\"/read/{key}\",status=\"503\"}";
    long long deadline = tk_now_ms() + 15000;
    while (tk_metric(LIMITED_PORT, refusals) < 18 && tk_now_ms() < deadline)
        usleep(20000);
    tk_pg_unlock(lock);
    struct tk_response *res = tk_batch_wait(batch);

    int ok = 0, refused = 0;
    for (int i = 0; i < 20; i++) {
        if (res[i].status == 200) {
            ok++;
        } else {
            ck_assert_msg(res[i].status == 503, "request %d: %ld", i, res[i].status);
            ck_assert_str_eq(json_string_value(json_object_get(res[i].json, "detail")),
                             "Database unavailable");
            ck_assert_msg(res[i].seconds < 10.0, "a refusal took %.2f s (connect deadline 30 s)",
                          res[i].seconds);
            refused++;
        }
    }
    tk_batch_free(batch);
    ck_assert_msg(refused >= 10, "only %d of 20 refused with a limit of 2 connections", refused);
    ck_assert_msg(ok >= 1, "none of the requests holding a connection succeeded");
    ck_assert(tk_wait_status(LIMITED_PORT, "/read/crowd:0", 200, 5000)); /* and it recovers */
    ck_assert_int_eq(tk_server_stop(&limited, SIGTERM, 10000), 0);
}
END_TEST

START_TEST(every_request_opens_its_own_connection)
{
    struct tk_server server;
    ck_assert(contract_start_server(&server, NULL));
    struct tk_response res;
    tk_get(SERVER_PORT, "/metrics", &res);
    const char *line = strstr(res.body, "\npg_connects_total ");
    ck_assert(line != NULL);
    long before = strtol(line + 19, NULL, 10);
    tk_response_free(&res);
    for (int i = 0; i < 5; i++) {
        tk_get(SERVER_PORT, "/read/conn-per-request", &res);
        ck_assert_int_eq(res.status, 200);
        tk_response_free(&res);
    }
    tk_get(SERVER_PORT, "/metrics", &res);
    line = strstr(res.body, "\npg_connects_total ");
    ck_assert_int_eq(strtol(line + 19, NULL, 10), before + 5);
    tk_response_free(&res);
    tk_server_stop(&server, SIGTERM, 10000);
}
END_TEST

int main(void)
{
    if (!tk_pg_start(&pg, PG_PORT, "-c max_connections=700"))
        return 1;
    /* 500 clients connecting at once on a loaded 2-core CI machine: allow slow connects. */
    static const char *const env[] = {"DB_CONNECT_TIMEOUT_MS=20000", NULL};
    struct contract_target target = {SERVER_BIN, "0-single-db", SERVER_PORT, &pg, env, true};
    TCase *own = tcase_create("connection-per-request");
    tcase_set_timeout(own, 60);
    tcase_add_test(own, every_request_opens_its_own_connection);
    tcase_add_test(own, more_clients_than_connections_get_quick_503s);
    return layer_suite_run(&target, own);
}
