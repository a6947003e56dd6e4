/*
 * Layer 4 black-box tests: the shared contract against l4-db-sharding on three real PostgreSQL
 * shards and a Redis, and sharding's own promises: each key lands on the shard its strategy
 * names (checked in each shard's database), a stopped shard fails only its own keys (503) and
 * shows in /health and /stats (also one that is down when the server starts), and resharding
 * with writes running loses nothing: afterwards every key reads its latest value, keeps its
 * created_at and lives exactly once, on its new shard.
 *
 * The shared resilience case runs without its outage test: that one stops "the" database and
 * expects every key to fail and /health to say unhealthy, which is what sharding avoids; the
 * outage test here is its sharded counterpart. Its tests that hold requests in flight lock
 * `records` on every shard (contract_set_other_pgs).
 */
#include "contract_tests.h"
#include "check_run.h"
#include "openapi_tests.h"
#include "resilience_tests.h"
#include "shard_map.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG_PORT     29000 /* shards on 29000, 29001, 29002 */
#define REDIS_PORT  29050
#define SERVER_PORT 29100
#define SHARDS      3

static struct tk_pg pg[SHARDS];
static struct tk_redis redis;
static struct tk_server server;
static char urls[SHARDS + 1][512]; /* urls[n]: the first n shards, comma-separated */
static char redis_env[96];

static void clean(void)
{
    for (int i = 0; i < SHARDS; i++) {
        tk_pg_restart(&pg[i]);
        tk_pg_exec(&pg[i], "layers",
                   "DO $$ BEGIN TRUNCATE records; DELETE FROM shard_layout; EXCEPTION WHEN "
                   "undefined_table THEN NULL; END $$");
    }
    ck_assert(tk_redis_flush(&redis));
}

static void stop_server(void)
{
    tk_server_stop(&server, SIGKILL, 5000);
    for (int i = 0; i < SHARDS; i++)
        tk_pg_restart(&pg[i]); /* in case a test stopped one and then failed */
}

/* Starts the server on the first n shards with a strategy (and more settings). */
static void start_layout(int n, const char *strategy, const char *const *more)
{
    char shard_urls[600], strat[64];
    snprintf(shard_urls, sizeof shard_urls, "SHARD_URLS=%s", urls[n]);
    snprintf(strat, sizeof strat, "SHARD_STRATEGY=%s", strategy);
    const char *env[16] = {shard_urls, strat, redis_env, "DB_POOL_ACQUIRE_TIMEOUT_MS=20000"};
    int k = 4;
    for (int i = 0; more != NULL && more[i] != NULL && k < 15; i++)
        env[k++] = more[i];
    env[k] = NULL;
    ck_assert_msg(tk_server_start(&server, SERVER_BIN, SERVER_PORT, env), "server did not start");
}

/* Starts a server with the first n shards under `strategy`; true if it exits with status 1
 * (refusing the shards' recorded layout) within 15 s. */
static bool refused_layout(int n, const char *strategy)
{
    char shard_urls[600], strat[64];
    snprintf(shard_urls, sizeof shard_urls, "SHARD_URLS=%s", urls[n]);
    snprintf(strat, sizeof strat, "SHARD_STRATEGY=%s", strategy);
    const char *env[] = {shard_urls, strat, redis_env, NULL};
    if (!tk_server_spawn(&server, SERVER_BIN, SERVER_PORT, env))
        return false;
    return tk_server_stop(&server, 0, 15000) == 1;
}

static struct shard_map *map_of(const char *strategy, int n, const char *ranges)
{
    char err[256];
    struct shard_map *map = shard_map_create(strategy, n, ranges, err, sizeof err);
    ck_assert_msg(map != NULL, "%s", err);
    return map;
}

static long write_key(const char *key, const char *value, long *shard_id)
{
    char *body = tk_write_body(key, value);
    struct tk_response res;
    tk_post(SERVER_PORT, "/write", body, &res);
    long status = res.status;
    if (status == 200) {
        ck_assert(json_is_integer(json_object_get(res.json, "shard_id")));
        *shard_id = (long)json_integer_value(json_object_get(res.json, "shard_id"));
        char message[64];
        snprintf(message, sizeof message, "Data written successfully to shard %ld", *shard_id);
        ck_assert_str_eq(json_string_value(json_object_get(res.json, "message")), message);
    } else {
        ck_assert_str_eq(json_string_value(json_object_get(res.json, "detail")),
                         "Database unavailable");
    }
    tk_response_free(&res);
    free(body);
    return status;
}

/* After a shard comes back: writes of PREFIX:0 .. PREFIX:count-1 all succeed within 15 s. */
static void writes_come_back(const char *prefix, int count, const char *value)
{
    long long deadline = tk_now_ms() + 15000;
    char key[32];
    long shard;
    for (int i = 0; i < count; i++) {
        snprintf(key, sizeof key, "%s:%d", prefix, i);
        while (write_key(key, value, &shard) != 200) {
            ck_assert_msg(tk_now_ms() < deadline, "writes to %s never came back", key);
            usleep(100000);
        }
    }
}

/* Rows with this key in shard i's database (0 or 1). */
static int rows_on(int i, const char *key)
{
    PGconn *conn = tk_pg_connect(&pg[i], "layers");
    ck_assert(conn != NULL);
    const char *values[] = {key};
    PGresult *res =
        PQexecParams(conn, "SELECT 1 FROM records WHERE key = $1", 1, NULL, values, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    int n = PQntuples(res);
    PQclear(res);
    PQfinish(conn);
    return n;
}

static void check_placement(const char *strategy, const char *ranges)
{
    static const char *const keys[] = {
        "test_key",         "user:123", "product:456", "order:789",      "session:abc", "a",
        "unicode_测试_key", "zebra",    "mango",       "key with space", "a/b",         "Zz"};
    struct shard_map *map = map_of(strategy, SHARDS, ranges);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        long shard = -1;
        ck_assert_int_eq(write_key(keys[k], "v", &shard), 200);
        int expected = shard_map_lookup(map, keys[k], strlen(keys[k]));
        ck_assert_msg(shard == expected, "%s %s: shard_id %ld, expected %d", strategy, keys[k],
                      shard, expected);
        for (int i = 0; i < SHARDS; i++)
            ck_assert_msg(rows_on(i, keys[k]) == (i == expected), "%s: %s on shard %d?", strategy,
                          keys[k], i);
    }
    shard_map_free(map);
}

START_TEST(keys_land_on_their_shard_modulo)
{
    start_layout(SHARDS, "modulo", NULL);
    check_placement("modulo", "");
    /* The contract's reference vectors, through the server. */
    long shard;
    ck_assert_int_eq(write_key("product:456", "v", &shard), 200);
    ck_assert_int_eq(shard, 0);
    ck_assert_int_eq(write_key("order:789", "v", &shard), 200);
    ck_assert_int_eq(shard, 1);
    ck_assert_int_eq(write_key("unicode_测试_key", "v", &shard), 200);
    ck_assert_int_eq(shard, 2);
    /* Reads say where the key lives, from the database and then from the cache. */
    for (int pass = 0; pass < 2; pass++) {
        struct tk_response res;
        tk_get(SERVER_PORT, "/read/order:789", &res);
        ck_assert_int_eq(res.status, 200);
        ck_assert_int_eq(json_integer_value(json_object_get(res.json, "shard_id")), 1);
        ck_assert(json_is_boolean(json_object_get(res.json, "from_cache")));
        ck_assert_int_eq(json_is_true(json_object_get(res.json, "from_cache")), pass == 1);
        tk_response_free(&res);
    }
    struct tk_response res;
    tk_get(SERVER_PORT, "/stats", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(res.json, "num_shards")), 3);
    json_t *dist = json_object_get(res.json, "shard_distribution");
    long long total = 0;
    for (int i = 0; i < SHARDS; i++) {
        char name[16];
        snprintf(name, sizeof name, "shard_%d", i);
        ck_assert_msg(json_is_integer(json_object_get(dist, name)), "%s", res.body);
        total += json_integer_value(json_object_get(dist, name));
        ck_assert(
            json_is_integer(json_object_get(json_object_get(res.json, "shard_pool_sizes"), name)));
    }
    ck_assert_int_eq(total, 12);
    ck_assert(json_is_true(json_object_get(res.json, "cache_available")));
    ck_assert_int_eq(json_integer_value(json_object_get(res.json, "cache_hits")), 1);
    ck_assert(json_is_number(json_object_get(res.json, "cache_hit_rate")));
    tk_response_free(&res);
}
END_TEST

START_TEST(keys_land_on_their_shard_jump)
{
    start_layout(SHARDS, "jump", NULL);
    check_placement("jump", "");
}
END_TEST

START_TEST(keys_land_on_their_shard_range)
{
    const char *more[] = {"SHARD_RANGES=g,n", NULL};
    start_layout(SHARDS, "range", more);
    check_placement("range", "g,n");
}
END_TEST

START_TEST(a_stopped_shard_fails_only_its_keys)
{
    start_layout(SHARDS, "modulo", NULL);
    struct shard_map *map = map_of("modulo", SHARDS, "");
    char key[32];
    long shard;
    for (int i = 0; i < 30; i++) {
        snprintf(key, sizeof key, "outage:%d", i);
        ck_assert_int_eq(write_key(key, "before", &shard), 200);
    }
    ck_assert(tk_pg_stop(&pg[1]));
    for (int i = 0; i < 30; i++) {
        snprintf(key, sizeof key, "outage:%d", i);
        bool down = shard_map_lookup(map, key, strlen(key)) == 1;
        ck_assert_int_eq(write_key(key, "during", &shard), down ? 503 : 200);
        char path[64];
        snprintf(path, sizeof path, "/read/%s", key);
        struct tk_response res;
        tk_get(SERVER_PORT, path, &res);
        ck_assert_msg(res.status == (down ? 503 : 200), "%s: %ld %s", key, res.status, res.body);
        ck_assert_msg(res.seconds < 5.0, "%s took %.1f s", key, res.seconds);
        tk_response_free(&res);
    }
    struct tk_response res;
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "degraded");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "shard_0")), "healthy");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "shard_1")), "unavailable");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "shard_2")), "healthy");
    /* The Python version's member: "shards", an object of the same states */
    json_t *shards = json_object_get(res.json, "shards");
    ck_assert_msg(json_is_object(shards) && json_object_size(shards) == 3, "%s", res.body);
    ck_assert_str_eq(json_string_value(json_object_get(shards, "shard_0")), "healthy");
    ck_assert_str_eq(json_string_value(json_object_get(shards, "shard_1")), "unavailable");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "database")), "unavailable");
    tk_response_free(&res);
    tk_get(SERVER_PORT, "/stats", &res);
    ck_assert_int_eq(res.status, 200);
    json_t *dist = json_object_get(res.json, "shard_distribution");
    ck_assert_msg(json_is_null(json_object_get(dist, "shard_1")), "%s", res.body);
    ck_assert(json_is_integer(json_object_get(dist, "shard_0")));
    json_t *unreachable = json_object_get(res.json, "shards_unreachable");
    ck_assert_int_eq(json_array_size(unreachable), 1);
    ck_assert_str_eq(json_string_value(json_array_get(unreachable, 0)), "shard_1");
    tk_response_free(&res);

    ck_assert(tk_pg_restart(&pg[1]));
    ck_assert_msg(tk_wait_status(SERVER_PORT, "/health", 200, 15000), "no recovery");
    writes_come_back("outage", 30, "after");
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "healthy");
    shards = json_object_get(res.json, "shards");
    ck_assert_str_eq(json_string_value(json_object_get(shards, "shard_1")), "healthy");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "cache")), "healthy");
    tk_response_free(&res);
    shard_map_free(map);
}
END_TEST

START_TEST(a_shard_down_at_start_up_fails_only_its_keys)
{
    ck_assert(tk_pg_stop(&pg[2]));
    start_layout(SHARDS, "modulo", NULL); /* listens without shard 2 after a short wait */
    struct shard_map *map = map_of("modulo", SHARDS, "");
    char key[32];
    long shard;
    for (int i = 0; i < 12; i++) {
        snprintf(key, sizeof key, "boot:%d", i);
        bool down = shard_map_lookup(map, key, strlen(key)) == 2;
        ck_assert_int_eq(write_key(key, "v", &shard), down ? 503 : 200);
    }
    ck_assert(tk_pg_restart(&pg[2]));
    writes_come_back("boot", 12, "v");
    shard_map_free(map);
}
END_TEST

/* ---- resharding: modulo over 2 shards -> jump over 3, with writes running ---- */

#define RESHARD_KEYS 2000
#define ROUND_SIZE   100

static pid_t spawn_reshard(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("SHARD_URLS", urls[3], 1);
        setenv("SHARD_STRATEGY", "jump", 1);
        setenv("SHARD_PREVIOUS_URLS", urls[2], 1);
        setenv("SHARD_PREVIOUS_STRATEGY", "modulo", 1);
        setenv("RESHARD_BATCH", "50", 1);
        execl(RESHARD_BIN, RESHARD_BIN, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Writes `count` keys starting at `first` with value "r<round>:<i>"; all must succeed. */
static void write_round(int first, int count, int round, int *latest)
{
    struct tk_request reqs[ROUND_SIZE];
    struct tk_response res[ROUND_SIZE];
    char *bodies[ROUND_SIZE];
    for (int j = 0; j < count; j++) {
        int i = (first + j) % RESHARD_KEYS;
        char key[32], value[32];
        snprintf(key, sizeof key, "rs:%d", i);
        snprintf(value, sizeof value, "r%d:%d", round, i);
        bodies[j] = tk_write_body(key, value);
        reqs[j] = (struct tk_request){"POST", "/write", bodies[j], 0, NULL};
    }
    tk_http_many(SERVER_PORT, reqs, res, count, 60000);
    for (int j = 0; j < count; j++) {
        ck_assert_msg(res[j].status == 200, "write: %ld %s", res[j].status, res[j].body);
        latest[(first + j) % RESHARD_KEYS] = round;
        tk_response_free(&res[j]);
        free(bodies[j]);
    }
}

/* Reads `count` keys from `first`: each must be found (never "not found" mid-move). */
static void read_round(int first, int count, const int *latest)
{
    struct tk_request reqs[ROUND_SIZE];
    struct tk_response res[ROUND_SIZE];
    char paths[ROUND_SIZE][48];
    for (int j = 0; j < count; j++) {
        snprintf(paths[j], sizeof paths[j], "/read/rs:%d", (first + j) % RESHARD_KEYS);
        reqs[j] = (struct tk_request){"GET", paths[j], NULL, 0, NULL};
    }
    tk_http_many(SERVER_PORT, reqs, res, count, 60000);
    for (int j = 0; j < count; j++) {
        int i = (first + j) % RESHARD_KEYS;
        char value[32];
        snprintf(value, sizeof value, "r%d:%d", latest[i], i);
        ck_assert_msg(res[j].status == 200 && json_is_true(json_object_get(res[j].json, "success")),
                      "read rs:%d: %ld %s", i, res[j].status, res[j].body);
        ck_assert_msg(strcmp(json_string_value(json_object_get(res[j].json, "value")), value) == 0,
                      "rs:%d: %s, expected %s", i, res[j].body, value);
        tk_response_free(&res[j]);
    }
}

START_TEST(resharding_under_concurrent_writes_loses_nothing)
{
    static int latest[RESHARD_KEYS];
    start_layout(2, "modulo", NULL);
    for (int first = 0; first < RESHARD_KEYS; first += ROUND_SIZE)
        write_round(first, ROUND_SIZE, 0, latest);
    tk_server_stop(&server, SIGTERM, 10000);
    char created_by[64]; /* every key exists by now: later writes must keep its created_at */
    PGconn *first_shard = tk_pg_connect(&pg[0], "layers");
    ck_assert(first_shard != NULL);
    PGresult *now = PQexec(first_shard, "SELECT now()::text");
    ck_assert_int_eq(PQresultStatus(now), PGRES_TUPLES_OK);
    snprintf(created_by, sizeof created_by, "%s", PQgetvalue(now, 0, 0));
    PQclear(now);
    PQfinish(first_shard);

    /* Every server runs both layouts, then the keys move while writes and reads go on. */
    char previous[600];
    snprintf(previous, sizeof previous, "SHARD_PREVIOUS_URLS=%s", urls[2]);
    const char *more[] = {previous, "SHARD_PREVIOUS_STRATEGY=modulo", NULL};
    start_layout(3, "jump", more);
    pid_t mover = spawn_reshard();
    ck_assert(mover > 0);
    int round = 1, status = 0, rounds_during_move = 0;
    long long deadline = tk_now_ms() + 300000;
    for (;;) {
        pid_t done = waitpid(mover, &status, WNOHANG);
        int first = (round * 337) % RESHARD_KEYS;
        write_round(first, ROUND_SIZE, round, latest);
        read_round((first + 500) % RESHARD_KEYS, ROUND_SIZE, latest);
        round++;
        if (done == mover)
            break;
        rounds_during_move++;
        ck_assert_msg(tk_now_ms() < deadline, "l4-reshard did not finish");
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "l4-reshard failed: %d", status);
    ck_assert_msg(rounds_during_move >= 1, "the move finished before any write ran alongside");

    /* Every key reads its latest value... */
    for (int first = 0; first < RESHARD_KEYS; first += ROUND_SIZE)
        read_round(first, ROUND_SIZE, latest);
    /* ...and lives exactly once, on its shard in the new layout. */
    static int copies[RESHARD_KEYS];
    struct shard_map *map = map_of("jump", 3, "");
    for (int s = 0; s < SHARDS; s++) {
        PGconn *conn = tk_pg_connect(&pg[s], "layers");
        ck_assert(conn != NULL);
        const char *params[] = {created_by};
        PGresult *res = PQexecParams(conn,
                                     "SELECT key, created_at <= $1::timestamptz FROM records "
                                     "WHERE key LIKE 'rs:%'",
                                     1, NULL, params, NULL, NULL, 0);
        ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
        for (int r = 0; r < PQntuples(res); r++) {
            const char *key = PQgetvalue(res, r, 0);
            ck_assert_msg(shard_map_lookup(map, key, strlen(key)) == s, "%s left on shard %d", key,
                          s);
            ck_assert_msg(strcmp(PQgetvalue(res, r, 1), "t") == 0, "%s lost its created_at", key);
            copies[atoi(key + 3)]++;
        }
        PQclear(res);
        PQfinish(conn);
    }
    for (int i = 0; i < RESHARD_KEYS; i++)
        ck_assert_msg(copies[i] == 1, "rs:%d has %d copies", i, copies[i]);
    shard_map_free(map);
    ck_assert_int_gt(tk_metric(SERVER_PORT, "shard_previous_layout_reads_total"), 0);

    /* l4-reshard recorded the new layout on every shard: a server with only the new settings
     * starts, and one with the old settings is refused. */
    tk_server_stop(&server, SIGTERM, 10000);
    start_layout(3, "jump", NULL);
    read_round(0, ROUND_SIZE, latest);
    tk_server_stop(&server, SIGTERM, 10000);
    ck_assert_msg(refused_layout(2, "modulo"), "a server of the old layout was not refused");
}
END_TEST

START_TEST(a_server_with_another_layout_refuses_to_start)
{
    /* Keys written under modulo over 3 shards, then a server set to jump (the same N) or to the
     * same shards in another order: either would look for keys on the wrong shards. */
    long shard;
    start_layout(SHARDS, "modulo", NULL);
    ck_assert_int_eq(write_key("layout:1", "v", &shard), 200);
    tk_server_stop(&server, SIGTERM, 10000);
    ck_assert_msg(refused_layout(SHARDS, "jump"), "jump over modulo's data was not refused");
    char reordered[600];
    snprintf(reordered, sizeof reordered, "SHARD_URLS=%s,%s,%s", pg[1].url, pg[0].url, pg[2].url);
    const char *env[] = {reordered, "SHARD_STRATEGY=modulo", redis_env, NULL};
    ck_assert(tk_server_spawn(&server, SERVER_BIN, SERVER_PORT, env));
    ck_assert_int_eq(tk_server_stop(&server, 0, 15000), 1);
    /* The settings it was filled with still work. */
    start_layout(SHARDS, "modulo", NULL);
    ck_assert_int_eq(write_key("layout:1", "w", &shard), 200);
}
END_TEST

int main(void)
{
    for (int i = 0; i < SHARDS; i++)
        if (!tk_pg_start(&pg[i], PG_PORT + i, NULL))
            return 1;
    if (!tk_redis_start(&redis, REDIS_PORT))
        return 1;
    for (int n = 1; n <= SHARDS; n++)
        for (int i = 0; i < n; i++)
            snprintf(urls[n] + strlen(urls[n]), sizeof urls[n] - strlen(urls[n]), "%s%s",
                     i ? "," : "", pg[i].url);
    snprintf(redis_env, sizeof redis_env, "REDIS_URL=%s", redis.url);
    static char shard_env[600];
    snprintf(shard_env, sizeof shard_env, "SHARD_URLS=%s", urls[SHARDS]);
    static const char *env[] = {shard_env, redis_env, "DB_POOL_ACQUIRE_TIMEOUT_MS=20000", NULL};
    /* The contract's target: its DATABASE_URL (shard 0) is ignored, SHARD_URLS counts. */
    struct contract_target target = {SERVER_BIN, "4-db-sharding", SERVER_PORT, &pg[0], env, false};
    contract_set_target(&target);
    static struct tk_pg *const other_shards[] = {&pg[1], &pg[2], NULL};
    contract_set_other_pgs(other_shards);

    Suite *suite = suite_create("4-db-sharding");
    suite_add_tcase(suite, contract_tcase());
    suite_add_tcase(suite, resilience_tcase_without(
                               (const char *const[]){"database_stops_and_comes_back", NULL}));
    suite_add_tcase(suite, openapi_tcase());
    suite_add_tcase(suite, api_docs_tcase());
    TCase *own = check_tcase(
        "sharding", clean, stop_server, 300,
        (const TTest *const[]){keys_land_on_their_shard_modulo, keys_land_on_their_shard_jump,
                               keys_land_on_their_shard_range, a_stopped_shard_fails_only_its_keys,
                               a_shard_down_at_start_up_fails_only_its_keys,
                               resharding_under_concurrent_writes_loses_nothing,
                               a_server_with_another_layout_refuses_to_start, NULL});
    suite_add_tcase(suite, own);
    int failed = check_run(suite, CK_FORK_GETENV);
    for (int i = 0; i < SHARDS; i++)
        tk_pg_destroy(&pg[i]);
    tk_redis_destroy(&redis);
    return failed == 0 ? 0 : 1;
}
