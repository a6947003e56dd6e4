/*
 * Layer 6 black-box tests: the shared contract and resilience cases (in layer 6's version where
 * its contract row differs: writes are queued, and accepted while PostgreSQL is down), then the
 * promises of a write buffer, with a real PostgreSQL, a real Redis with AOF, the API and real
 * worker processes: read-your-writes before any worker runs, last write wins, concurrent
 * writers, workers killed with SIGKILL mid-load, Redis and PostgreSQL restarts, poison entries,
 * backpressure, and statistics counted across processes.
 */
#include "layer_suite.h"
#include "check_run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_PORT     26000
#define REDIS_PORT  26050
#define SERVER_PORT 26100
#define WORKER_PORT 26110 /* workers get PORT = 26110 + i (they do not listen) */
#define MAX_WORKERS 3

static struct tk_pg pg;
static struct tk_redis redis;
static struct tk_server server;
static struct tk_server workers[MAX_WORKERS];
static char redis_url[96], database_url[160];

/* ---- fixtures and helpers ---- */

static void start_api(const char *const *env)
{
    ck_assert_msg(contract_start_server(&server, env), "API did not start");
}

static void start_worker(int i, const char *const *more)
{
    const char *env[16] = {database_url, redis_url, "WORKER_CLAIM_IDLE_MS=1000",
                           "WORKER_MAX_RETRIES=1"};
    int n = 4;
    for (int j = 0; more != NULL && more[j] != NULL && n < 15; j++)
        env[n++] = more[j];
    env[n] = NULL;
    ck_assert(tk_server_spawn(&workers[i], WORKER_BIN, WORKER_PORT + i, env));
}

static void redis_cli(const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d %s >/dev/null", REDIS_PORT, args);
    ck_assert_msg(system(cmd) == 0, "%s", cmd);
}

static void setup(void)
{
    ck_assert(tk_redis_flush(&redis));
    ck_assert(tk_pg_exec(&pg, "layers",
                         "DO $$ BEGIN IF to_regclass('records') IS NOT NULL THEN "
                         "TRUNCATE records; END IF; END $$"));
}

static void teardown(void)
{
    tk_server_stop(&server, SIGKILL, 5000);
    for (int i = 0; i < MAX_WORKERS; i++)
        if (workers[i].pid != 0)
            tk_server_stop(&workers[i], SIGKILL, 5000);
    tk_redis_restart(&redis); /* in case a test stopped them and then failed */
    tk_pg_restart(&pg);
}

static long write_status(const char *key, const char *value)
{
    char *body = tk_write_body(key, value);
    struct tk_response res;
    tk_post(SERVER_PORT, "/write", body, &res);
    long status = res.status;
    if (status == 200) {
        ck_assert(json_is_true(json_object_get(res.json, "queued")));
        ck_assert_str_eq(json_string_value(json_object_get(res.json, "message")),
                         "Write queued successfully");
    }
    tk_response_free(&res);
    free(body);
    return status;
}

static void write_value(const char *key, const char *value)
{
    long status = write_status(key, value);
    ck_assert_msg(status == 200, "write %s: %ld", key, status);
}

/* Reads key; checks the value and whether it was still queued. */
static void expect_read(const char *key, const char *value, bool pending)
{
    char path[128];
    snprintf(path, sizeof path, "/read/%s", key);
    struct tk_response res;
    tk_get(SERVER_PORT, path, &res);
    ck_assert_msg(res.status == 200, "%s: %ld %s", path, res.status, res.body);
    ck_assert_msg(json_is_string(json_object_get(res.json, "value")) &&
                      strcmp(json_string_value(json_object_get(res.json, "value")), value) == 0,
                  "%s: expected %s: %s", path, value, res.body);
    ck_assert_msg(json_is_boolean(json_object_get(res.json, "pending")) &&
                      json_boolean_value(json_object_get(res.json, "pending")) == pending,
                  "%s: pending should be %d: %s", path, pending, res.body);
    ck_assert(json_is_boolean(json_object_get(res.json, "from_cache")));
    tk_response_free(&res);
}

/* The value PostgreSQL holds for key (a heap copy), or NULL. */
static char *db_value(const char *key)
{
    PGconn *conn = tk_pg_connect(&pg, "layers");
    ck_assert(conn != NULL);
    const char *params[] = {key};
    PGresult *r = PQexecParams(conn, "SELECT value FROM records WHERE key = $1", 1, NULL, params,
                               NULL, NULL, 0);
    char *v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                  ? strdup(PQgetvalue(r, 0, 0))
                  : NULL;
    PQclear(r);
    PQfinish(conn);
    return v;
}

static long long db_count(const char *where)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM records WHERE %s", where);
    PGconn *conn = tk_pg_connect(&pg, "layers");
    ck_assert(conn != NULL);
    PGresult *r = PQexec(conn, sql);
    long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    PQfinish(conn);
    return n;
}

static long long stat_of(const char *name)
{
    struct tk_response res;
    tk_get(SERVER_PORT, "/stats", &res);
    json_t *v = json_object_get(res.json, name);
    long long n = json_is_integer(v) ? json_integer_value(v) : -1;
    tk_response_free(&res);
    return n;
}

/* Waits until every queued write is committed (the stream is empty). */
static void wait_drained(long timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    while (stat_of("queue_length") != 0) {
        ck_assert_msg(tk_now_ms() < deadline, "the queue did not drain: %lld left",
                      stat_of("queue_length"));
        usleep(50000);
    }
}

/* The Retry-After header of a POST /write (curl, since testkit keeps few headers), or "". */
static void write_retry_after(const char *key, char *out, size_t outlen)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd,
             "curl -s -o /dev/null -D - -X POST -d '{\"key\":\"%s\",\"value\":\"v\"}' "
             "http://127.0.0.1:%d/write | tr -d '\\r' | sed -n 's/^[Rr]etry-[Aa]fter: //p'",
             key, SERVER_PORT);
    FILE *p = popen(cmd, "r");
    ck_assert(p != NULL);
    out[0] = '\0';
    if (fgets(out, (int)outlen, p) == NULL)
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    pclose(p);
}

/* n writes of "<prefix><i>" = value at once (each on its own connection); res: n answers. */
static void post_many(const char *prefix, int n, const char *value, struct tk_response *res)
{
    struct tk_request *reqs = calloc((size_t)n, sizeof *reqs);
    char **bodies = calloc((size_t)n, sizeof *bodies);
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s%d", prefix, i);
        bodies[i] = tk_write_body(key, value);
        reqs[i] = (struct tk_request){"POST", "/write", bodies[i], 0, NULL};
    }
    tk_http_many(SERVER_PORT, reqs, res, n, 60000);
    for (int i = 0; i < n; i++)
        free(bodies[i]);
    free(reqs), free(bodies);
}

/* n writes of "<prefix><i>" = value at once; all must be acknowledged. */
static void write_many(const char *prefix, int n, const char *value)
{
    struct tk_response *res = calloc((size_t)n, sizeof *res);
    post_many(prefix, n, value, res);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(res[i].status == 200, "write %s%d: %ld %s", prefix, i, res[i].status,
                      res[i].body);
        tk_response_free(&res[i]);
    }
    free(res);
}

/* The first line of a redis-cli command's output, as a number (-1 when none). */
static long long redis_number(const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d %s", REDIS_PORT, args);
    FILE *p = popen(cmd, "r");
    ck_assert(p != NULL);
    char line[256] = "";
    if (fgets(line, sizeof line, p) == NULL)
        line[0] = '\0';
    pclose(p);
    return line[0] ? atoll(line) : -1;
}

/* ---- layer 6's versions of the shared cases it skips ---- */

START_TEST(write_is_queued_and_read_back)
{
    start_api(NULL);
    struct tk_response res;
    tk_post(SERVER_PORT, "/write", "{\"key\":\"shape:1\",\"value\":\"hello\",\"extra\":1}", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.content_type, "application/json");
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert(json_is_true(json_object_get(res.json, "queued")));
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "key")), "shape:1");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "message")),
                     "Write queued successfully");
    tk_response_free(&res);
    tk_get(SERVER_PORT, "/read/shape:1", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "value")), "hello");
    ck_assert(json_is_string(json_object_get(res.json, "created_at")));
    ck_assert(json_is_string(json_object_get(res.json, "updated_at")));
    ck_assert(json_is_null(json_object_get(res.json, "message")));
    ck_assert(json_is_true(json_object_get(res.json, "pending")));
    tk_response_free(&res);
}
END_TEST

START_TEST(database_down_writes_still_accepted)
{
    start_api(NULL);
    start_worker(0, NULL);
    write_value("pgdown:before", "v0");
    wait_drained(10000);
    ck_assert(tk_pg_stop(&pg));
    struct tk_response res;
    tk_get(SERVER_PORT, "/read/pgdown:never", &res); /* not queued: needs the database */
    ck_assert_int_eq(res.status, 503);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "detail")),
                     "Database unavailable");
    tk_response_free(&res);
    write_many("pgdown:", 200, "during");
    expect_read("pgdown:7", "during", true);        /* the queued value needs no database */
    ck_assert_int_eq(stat_of("queue_length"), 200); /* the stream grows */
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "degraded");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "database")), "unavailable");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "queue")), "healthy");
    tk_response_free(&res);

    ck_assert(tk_pg_restart(&pg));
    wait_drained(20000); /* the worker retried with backoff */
    ck_assert_int_eq(db_count("key LIKE 'pgdown:%' AND value = 'during'"), 200);
    /* The API's pool recovers by itself, on its own backoff (as the shared case waits). */
    ck_assert_msg(tk_wait_status(SERVER_PORT, "/read/pgdown:never", 200, 15000), "no recovery");
    expect_read("pgdown:7", "during", false);
    ck_assert(tk_wait_status(SERVER_PORT, "/health", 200, 5000));
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "healthy");
    tk_response_free(&res);
}
END_TEST

START_TEST(client_disconnects_mid_read)
{
    start_api(NULL);
    PGconn *lock = tk_pg_lock_records(&pg);
    ck_assert(lock != NULL);
    const char get[] = "GET /read/gone HTTP/1.1\r\nHost: t\r\n\r\n";
    int a = tk_raw_send(SERVER_PORT, get, sizeof get - 1);
    int b = tk_raw_send(SERVER_PORT, get, sizeof get - 1);
    ck_assert(a >= 0 && b >= 0);
    ck_assert(tk_wait_in_flight(SERVER_PORT, 2, true, 10000));
    close(a);
    close(b);
    usleep(100000);
    tk_pg_unlock(lock);
    ck_assert(tk_wait_status(SERVER_PORT, "/read/gone", 200, 5000));
    ck_assert_int_eq(kill(server.pid, 0), 0);
}
END_TEST

/* ---- the write buffer ---- */

START_TEST(read_your_writes_before_the_worker)
{
    start_api(NULL); /* no worker yet */
    write_value("ryw:1", "first");
    expect_read("ryw:1", "first", true);
    write_value("ryw:1", "second");
    expect_read("ryw:1", "second", true);
    ck_assert_ptr_null(db_value("ryw:1"));
    ck_assert_int_eq(stat_of("queue_length"), 2);
    ck_assert_int_eq(stat_of("writes_queued"), 2);
    ck_assert_int_eq(stat_of("workers"), 0);

    start_worker(0, NULL);
    wait_drained(10000);
    char *v = db_value("ryw:1");
    ck_assert_str_eq(v, "second");
    free(v);
    expect_read("ryw:1", "second", false);
    expect_read("ryw:1", "second", false); /* now from the cache */
    ck_assert_int_eq(stat_of("writes_processed"), 2);
    ck_assert_int_ge(stat_of("batches"), 1);
    ck_assert_int_eq(stat_of("pending"), 0);
    ck_assert_int_eq(stat_of("dead_letters"), 0);
    long long deadline = tk_now_ms() + 3000;
    while (stat_of("workers") != 1)
        ck_assert_msg(tk_now_ms() < deadline, "no worker heartbeat"), usleep(100000);
}
END_TEST

/* Reads key and checks only the value (queued or not). */
static void expect_value(const char *key, const char *value)
{
    char path[128];
    snprintf(path, sizeof path, "/read/%s", key);
    struct tk_response res;
    tk_get(SERVER_PORT, path, &res);
    ck_assert_msg(res.status == 200 && json_is_string(json_object_get(res.json, "value")) &&
                      strcmp(json_string_value(json_object_get(res.json, "value")), value) == 0,
                  "%s: expected %s: %ld %s", path, value, res.status, res.body);
    tk_response_free(&res);
}

START_TEST(last_write_wins)
{
    start_api(NULL);
    start_worker(0, (const char *[]){"WORKER_FLUSH_MS=5", NULL});
    char value[32];
    for (int i = 1; i <= 100; i++) { /* every read sees the write before it, drained or not */
        snprintf(value, sizeof value, "v%d", i);
        write_value("lww:1", value);
        expect_value("lww:1", value);
    }
    wait_drained(10000);
    char *v = db_value("lww:1");
    ck_assert_str_eq(v, "v100");
    free(v);
    expect_read("lww:1", "v100", false);
}
END_TEST

/* The linger: after a batch that was not full, the worker waits WORKER_LINGER_MS before it
 * reads again, so that writes arriving one by one are gathered into few batches. 30 writes,
 * each acknowledged before the next, all within the one-second linger: the first read finds
 * the first write, the next (a second later) all the others. Without the linger, every write
 * would be a batch of its own. */
START_TEST(steady_writes_linger_into_few_batches)
{
    start_api(NULL);
    start_worker(0, (const char *[]){"WORKER_LINGER_MS=1000", "WORKER_FLUSH_MS=5", NULL});
    char key[16];
    for (int i = 0; i < 30; i++) {
        snprintf(key, sizeof key, "linger:%d", i);
        write_value(key, "v");
    }
    wait_drained(10000);
    ck_assert_int_eq(stat_of("writes_processed"), 30);
    ck_assert_int_eq(db_count("key LIKE 'linger:%'"), 30);
    long long batches = stat_of("batches");
    ck_assert_msg(batches >= 1 && batches <= 3, "%lld batches for 30 writes", batches);
}
END_TEST

START_TEST(few_keys_rewritten_under_a_running_drain)
{
    /* The worker holds two batches at once (one written while the next is read and the one
     * before it finished): rounds of writes to the same 8 keys, each round acknowledged before
     * the next, in batches of 5 so that consecutive batches share keys while the worker drains
     * them. Every key ends with its last write, in PostgreSQL and in reads, nothing pending. */
    start_api(NULL);
    start_worker(0, (const char *[]){"WORKER_BATCH_SIZE=5", "WORKER_FLUSH_MS=5", NULL});
    char value[16];
    for (int round = 0; round < 40; round++) {
        snprintf(value, sizeof value, "r%d", round);
        write_many("few:", 8, value);
    }
    wait_drained(30000);
    ck_assert_int_eq(db_count("key LIKE 'few:%'"), 8);
    ck_assert_int_eq(db_count("key LIKE 'few:%' AND value = 'r39'"), 8);
    ck_assert_int_eq(stat_of("writes_processed"), 320);
    ck_assert_int_eq(stat_of("pending"), 0);
    ck_assert_int_eq(stat_of("dead_letters"), 0);
    for (int i = 0; i < 8; i++) {
        char key[16];
        snprintf(key, sizeof key, "few:%d", i);
        expect_read(key, "r39", false);
    }
}
END_TEST

START_TEST(concurrent_writers_all_arrive)
{
    start_api(NULL);
    start_worker(0, NULL);
    start_worker(1, NULL);
    for (int round = 0; round < 3; round++) {
        char value[16];
        snprintf(value, sizeof value, "r%d", round);
        write_many("conc:", 300, value);
    }
    wait_drained(20000);
    ck_assert_int_eq(db_count("key LIKE 'conc:%' AND value = 'r2'"), 300);
    ck_assert_int_eq(stat_of("writes_queued"), 900);
    ck_assert_int_eq(stat_of("writes_processed"), 900); /* counted by the workers */
    ck_assert_int_ge(stat_of("batches"), 1);
    expect_read("conc:299", "r2", false);
}
END_TEST

/* Concurrent writes share script calls (the writes of one loop turn of the API, appender.c):
 * fewer calls than writes, yet every write acknowledged with an entry of its own (as many
 * entries and distinct ids as writes) and read back with its own value. */
START_TEST(concurrent_writes_share_script_calls)
{
    start_api(NULL);
    write_value("turn:warm", "v"); /* the script loaded: the calls below are EVALSHA */
    redis_cli("config resetstat");
    enum { N = 400 };
    write_many("turn:", N, "same");
    long long calls = redis_number("info commandstats | tr -d '\\r' | "
                                   "sed -n 's/^cmdstat_evalsha:calls=\\([0-9]*\\).*/\\1/p'");
    ck_assert_msg(calls >= 1 && calls < N, "%lld script calls for %d writes", calls, N);
    ck_assert_int_eq(redis_number("xlen l6:writes"), N + 1);
    ck_assert_int_eq(redis_number("xrange l6:writes - + | grep -c '^[0-9]*-[0-9]*$'"), N + 1);
    ck_assert_int_eq(
        redis_number("xrange l6:writes - + | grep '^[0-9]*-[0-9]*$' | sort -u | wc -l"), N + 1);
    ck_assert_int_eq(redis_number("hlen l6:pending"), N + 1);
    ck_assert_int_eq(stat_of("writes_queued"), N + 1);
    expect_read("turn:0", "same", true);
    expect_read("turn:399", "same", true);
}
END_TEST

/* A script call that fails fails every write it carried: each gets 503 with Retry-After, none
 * is acknowledged; writes are accepted again once Redis runs the script. (The pending hash
 * made a string: the script's first HGET fails, before anything is appended.) */
START_TEST(a_failed_call_fails_all_its_writes)
{
    start_api(NULL);
    write_value("fail:warm", "v");
    redis_cli("del l6:pending");
    redis_cli("set l6:pending not-a-hash");
    enum { N = 200 };
    struct tk_response *res = calloc(N, sizeof *res);
    post_many("fail:", N, "v", res);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(res[i].status == 503, "write fail:%d: %ld %s", i, res[i].status, res[i].body);
        ck_assert_str_eq(json_string_value(json_object_get(res[i].json, "detail")),
                         "Queue unavailable");
        tk_response_free(&res[i]);
    }
    free(res);
    ck_assert_int_eq(redis_number("xlen l6:writes"), 1); /* only the warm-up write */
    char retry[32];
    write_retry_after("fail:one", retry, sizeof retry);
    ck_assert_str_eq(retry, "1");
    redis_cli("del l6:pending");
    write_value("fail:after", "accepted");
    expect_read("fail:after", "accepted", true);
}
END_TEST

START_TEST(killed_workers_lose_nothing)
{
    /* Rounds of writes while workers are killed with SIGKILL and replaced: the entries they
     * held are claimed by the others (WORKER_CLAIM_IDLE_MS=1000) and nothing acknowledged is
     * lost or applied out of order. */
    start_api(NULL);
    const char *small[] = {"WORKER_BATCH_SIZE=20", NULL};
    for (int i = 0; i < MAX_WORKERS; i++)
        start_worker(i, small);
    for (int round = 0; round < 12; round++) {
        char value[16];
        snprintf(value, sizeof value, "r%d", round);
        write_many("crash:", 150, value);
        int victim = round % MAX_WORKERS;
        usleep((useconds_t)(round % 4) * 5000);
        ck_assert_int_eq(tk_server_stop(&workers[victim], SIGKILL, 5000), 128 + SIGKILL);
        start_worker(victim, small);
    }
    wait_drained(30000);
    ck_assert_int_eq(db_count("key LIKE 'crash:%'"), 150);
    ck_assert_int_eq(db_count("key LIKE 'crash:%' AND value = 'r11'"), 150);
    ck_assert_int_eq(stat_of("pending"), 0);
    ck_assert_int_eq(stat_of("dead_letters"), 0);
    expect_read("crash:149", "r11", false);
}
END_TEST

START_TEST(redis_restart_keeps_acknowledged_writes)
{
    start_api(NULL);
    write_many("aof:", 300, "kept");
    ck_assert(tk_redis_stop(&redis));
    ck_assert_int_eq(write_status("aof:down", "v"), 503);
    ck_assert(tk_redis_restart(&redis)); /* the AOF brings the stream back */
    start_worker(0, NULL);
    ck_assert(tk_wait_status(SERVER_PORT, "/read/aof:1", 200, 10000));
    wait_drained(20000);
    ck_assert_int_eq(db_count("key LIKE 'aof:%' AND value = 'kept'"), 300);
}
END_TEST

START_TEST(poison_entries_go_to_the_dead_letters)
{
    start_api(NULL);
    write_value("batch:1", "good");
    /* Straight into the stream, as a buggy producer would: bytes PostgreSQL refuses (not
     * UTF-8), and an entry that is not a write at all. */
    redis_cli("xadd l6:writes '*' key poison value \"$(printf '\\377\\376')\"");
    redis_cli("xadd l6:writes '*' nonsense 1");
    write_value("batch:2", "good");
    start_worker(0, NULL); /* one batch holds all four */
    wait_drained(15000);
    char *v = db_value("batch:1");
    ck_assert_str_eq(v, "good");
    free(v);
    v = db_value("batch:2");
    ck_assert_str_eq(v, "good");
    free(v);
    ck_assert_ptr_null(db_value("poison"));
    ck_assert_int_eq(stat_of("dead_letters"), 2);
    ck_assert_int_eq(stat_of("writes_processed"), 2);
    FILE *p = popen("redis-cli -p 26050 xrange l6:dead - + | grep -c -e poison -e "
                    "'character\\|byte sequence\\|encoding' -e malformed",
                    "r");
    char line[32] = "";
    ck_assert(fgets(line, sizeof line, p) != NULL);
    pclose(p);
    ck_assert_int_ge(atoi(line), 3); /* the key, its error, the malformed one's error */
}
END_TEST

START_TEST(backpressure_and_recovery)
{
    start_api((const char *[]){"QUEUE_MAX_LENGTH=5", NULL});
    for (int i = 0; i < 5; i++) {
        char key[16];
        snprintf(key, sizeof key, "bp:%d", i);
        write_value(key, "v");
    }
    ck_assert_int_eq(write_status("bp:over", "v"), 503);
    char retry[32];
    write_retry_after("bp:over", retry, sizeof retry);
    ck_assert_str_eq(retry, "1");
    struct tk_response res;
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "queue")), "unavailable");
    ck_assert_int_eq(json_integer_value(json_object_get(res.json, "queue_length")), 5);
    tk_response_free(&res);
    start_worker(0, NULL);
    wait_drained(10000);
    write_value("bp:over", "accepted");
    expect_value("bp:over", "accepted");
}
END_TEST

/* The age bound is checked against the API's reading of the queue (once a second), not by the
 * write script: writes are refused within about a second after the oldest entry passes it, and
 * accepted again within about a second after the drain. */
START_TEST(backpressure_by_age_and_recovery)
{
    start_api((const char *[]){"QUEUE_MAX_AGE_MS=300", NULL});
    write_value("age:0", "v");
    long long deadline = tk_now_ms() + 5000;
    while (write_status("age:more", "v") == 200) {
        ck_assert_msg(tk_now_ms() < deadline, "writes still accepted 5 s after the age bound");
        usleep(100000);
    }
    char retry[32];
    write_retry_after("age:over", retry, sizeof retry);
    ck_assert_str_eq(retry, "1");
    start_worker(0, NULL);
    wait_drained(10000);
    deadline = tk_now_ms() + 5000;
    while (write_status("age:after", "accepted") != 200) {
        ck_assert_msg(tk_now_ms() < deadline, "writes still refused 5 s after the drain");
        usleep(100000);
    }
    expect_value("age:after", "accepted");
}
END_TEST

/* The write script runs by its SHA1; a Redis that forgot it (SCRIPT FLUSH, a restart) answers
 * NOSCRIPT, and the write is sent again with the script's text: still acknowledged. */
START_TEST(script_cache_flushed_writes_still_accepted)
{
    start_api(NULL);
    write_value("sha:1", "one");
    write_value("sha:2", "two"); /* by now run by its SHA1 */
    redis_cli("script flush");
    write_value("sha:3", "three");
    write_value("sha:4", "four");
    expect_read("sha:3", "three", true);
    expect_read("sha:4", "four", true);
    ck_assert_int_eq(stat_of("queue_length"), 4);
    ck_assert_int_eq(stat_of("writes_queued"), 4);
}
END_TEST

/* Consumers in the group (XINFO CONSUMERS). */
static int consumers(void)
{
    return (int)redis_number("xinfo consumers l6:writes workers | grep -cx name");
}

/* A worker killed with nothing pending is deleted from the group once its heartbeat is 10 s
 * old (its successor's heartbeat does it); the successor stays. */
START_TEST(gone_workers_leave_the_group)
{
    start_api(NULL);
    start_worker(0, NULL);
    write_many("gone:", 50, "v");
    wait_drained(10000);
    ck_assert_int_eq(tk_server_stop(&workers[0], SIGKILL, 5000), 128 + SIGKILL);
    start_worker(1, NULL);
    write_many("gone2:", 50, "v");
    wait_drained(10000);
    ck_assert_int_eq(consumers(), 2);
    long long deadline = tk_now_ms() + 25000;
    while (consumers() != 1) {
        ck_assert_msg(tk_now_ms() < deadline, "the killed worker's consumer is still in the group");
        usleep(200000);
    }
    write_value("gone:after", "v"); /* the live worker still drains */
    wait_drained(10000);
    ck_assert_int_eq(consumers(), 1);
}
END_TEST

START_TEST(sigterm_finishes_the_batch)
{
    start_api(NULL);
    start_worker(0, NULL);
    /* Its signal handlers are in place once it runs (its heartbeat): a SIGTERM before that
     * would kill it by default, and writes that are acknowledged faster than it starts leave
     * that window open. */
    long long deadline = tk_now_ms() + 10000;
    while (stat_of("workers") < 1) {
        ck_assert_msg(tk_now_ms() < deadline, "the worker did not start");
        usleep(20000);
    }
    write_many("term:", 200, "v");
    ck_assert_int_eq(tk_server_stop(&workers[0], SIGTERM, 10000), 0);
    ck_assert_int_eq(stat_of("pending"), 0); /* nothing left half done */
}
END_TEST

int main(void)
{
    if (!tk_pg_start(&pg, PG_PORT, NULL) || !tk_redis_start_mode(&redis, REDIS_PORT, "queue"))
        return 1;
    snprintf(redis_url, sizeof redis_url, "REDIS_URL=%s", redis.url);
    snprintf(database_url, sizeof database_url, "DATABASE_URL=%s", pg.url);
    /* No worker runs during the shared cases: the writes they queue stay in the stream, and
     * must not make the queue "too old" for the health check of a later case. */
    static const char *env[] = {redis_url, "DB_POOL_ACQUIRE_TIMEOUT_MS=20000",
                                "QUEUE_MAX_AGE_MS=3600000", NULL};
    struct contract_target target = {SERVER_BIN, "6-write-buffering", SERVER_PORT, &pg, env, false};
    TCase *own = check_tcase(
        "write-buffer", setup, teardown, 120,
        (const TTest *const[]){
            write_is_queued_and_read_back, database_down_writes_still_accepted,
            client_disconnects_mid_read, read_your_writes_before_the_worker, last_write_wins,
            steady_writes_linger_into_few_batches, few_keys_rewritten_under_a_running_drain,
            concurrent_writers_all_arrive, concurrent_writes_share_script_calls,
            a_failed_call_fails_all_its_writes, killed_workers_lose_nothing,
            redis_restart_keeps_acknowledged_writes, poison_entries_go_to_the_dead_letters,
            backpressure_and_recovery, backpressure_by_age_and_recovery,
            script_cache_flushed_writes_still_accepted, gone_workers_leave_the_group,
            sigterm_finishes_the_batch, NULL});
    static const char *const contract_skip[] = {"write_and_read_shapes", NULL};
    /* (a hung PostgreSQL leaves this layer "degraded", not 503: writes still queue) */
    static const char *const resilience_skip[] = {"client_disconnects_mid_query",
                                                  "database_stops_and_comes_back",
                                                  "a_hung_database_shows_in_health_at_once", NULL};
    int rc = layer_suite_run_without(&target, own, contract_skip, resilience_skip);
    tk_redis_destroy(&redis);
    return rc;
}
