/*
 * Layer 5 black-box tests: the shared contract and resilience cases against
 * l5-multi-tier-cache, and the tiers' own promises: L1 after L2 after L3, the in-process tier's
 * bounds, two instances that see each other's writes at once (also after one of them served the
 * old value from its L1, and also when Redis hung meanwhile), reads through a Redis outage, and
 * /clear-cache touching only its own keys.
 */
#include "layer_suite.h"
#include "check_run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_PORT     27000
#define REDIS_PORT  27050
#define SERVER_PORT 27100
#define SECOND_PORT 27101

static struct tk_pg pg;
static struct tk_redis redis;
static struct tk_server server, second;
static char redis_url[96];

static void empty_redis(void)
{
    ck_assert(tk_redis_flush(&redis));
}

static void stop_servers(void)
{
    tk_server_stop(&server, SIGKILL, 5000);
    tk_server_stop(&second, SIGKILL, 5000);
    tk_redis_restart(&redis);
}

static void start_second(void)
{
    char url[160];
    snprintf(url, sizeof url, "DATABASE_URL=%s", pg.url);
    const char *env[] = {url, redis_url, NULL};
    ck_assert(tk_server_start(&second, SERVER_BIN, SECOND_PORT, env));
}

static void write_value(int port, const char *key, const char *value)
{
    char *body = tk_write_body(key, value);
    struct tk_response res;
    tk_post(port, "/write", body, &res);
    ck_assert_int_eq(res.status, 200);
    tk_response_free(&res);
    free(body);
}

/* Reads key through port; checks the value and (if level is not NULL) the tier. */
static void expect_read(int port, const char *key, const char *value, const char *level)
{
    char path[128];
    snprintf(path, sizeof path, "/read/%s", key);
    struct tk_response res;
    tk_get(port, path, &res);
    ck_assert_msg(res.status == 200, "%s: %ld", path, res.status);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "value")), value);
    if (level != NULL)
        ck_assert_msg(strcmp(json_string_value(json_object_get(res.json, "cache_level")), level) ==
                          0,
                      "%s on %d: expected %s, got %s", path, port, level, res.body);
    tk_response_free(&res);
}

static json_t *stats(int port)
{
    struct tk_response res;
    tk_get(port, "/stats", &res);
    ck_assert_int_eq(res.status, 200);
    json_t *doc = json_incref(res.json);
    tk_response_free(&res);
    return doc;
}

static long long stat(json_t *doc, const char *name)
{
    json_t *v = json_object_get(doc, name);
    ck_assert_msg(json_is_number(v), "/stats has no number %s", name);
    return (long long)json_number_value(v);
}

START_TEST(tiers_l3_then_l2_then_l1)
{
    ck_assert(contract_start_server(&server, NULL));
    start_second();
    write_value(SERVER_PORT, "tier:1", "v");
    expect_read(SERVER_PORT, "tier:1", "v", "L3"); /* fills L2 and A's L1 */
    expect_read(SERVER_PORT, "tier:1", "v", "L1");
    expect_read(SECOND_PORT, "tier:1", "v", "L2"); /* B: L2 hit, promoted into B's L1 */
    expect_read(SECOND_PORT, "tier:1", "v", "L1");
    struct tk_response res;
    tk_get(SERVER_PORT, "/read/absent", &res);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "cache_level")), "L3");
    tk_response_free(&res);

    json_t *s = stats(SECOND_PORT);
    ck_assert_int_eq(stat(s, "l1_cache_hits"), 1);
    ck_assert_int_eq(stat(s, "l2_cache_hits"), 1);
    ck_assert_int_eq(stat(s, "total_hits"), 2);
    ck_assert_int_eq(stat(s, "total_misses"), 0);
    ck_assert(json_real_value(json_object_get(s, "overall_hit_rate")) == 100.0);
    ck_assert(json_is_true(json_object_get(s, "l1_cache_available")));
    ck_assert_int_eq(stat(s, "l1_cache_size"), 1);
    json_decref(s);
    s = stats(SERVER_PORT); /* reads: L3, L1, L3 (absent) -> 1 hit of 3 */
    ck_assert_int_eq(stat(s, "total_hits"), 1);
    ck_assert_int_eq(stat(s, "total_misses"), 2);
    ck_assert(json_real_value(json_object_get(s, "overall_hit_rate")) == 33.33);
    json_decref(s);
}
END_TEST

START_TEST(l1_stays_within_its_bounds)
{
    const char *env[] = {"L1_CACHE_SIZE=50", "L1_CACHE_MAX_BYTES=20000", NULL};
    ck_assert(contract_start_server(&server, env));
    char key[32], value[501];
    memset(value, 'v', 500);
    value[500] = '\0';
    for (int i = 0; i < 120; i++) {
        snprintf(key, sizeof key, "bound:%d", i);
        write_value(SERVER_PORT, key, value);
        expect_read(SERVER_PORT, key, value, NULL);
    }
    json_t *s = stats(SERVER_PORT);
    ck_assert_int_le(stat(s, "l1_cache_size"), 50);
    ck_assert_int_le(stat(s, "l1_cache_bytes"), 20000);
    ck_assert_int_gt(stat(s, "l1_cache_evictions"), 0);
    ck_assert_int_eq(stat(s, "l1_cache_max_size"), 50);
    json_decref(s);
}
END_TEST

START_TEST(a_write_reaches_the_other_instance_at_once)
{
    ck_assert(contract_start_server(&server, NULL));
    start_second();
    write_value(SERVER_PORT, "shared:1", "old");
    expect_read(SECOND_PORT, "shared:1", "old", "L3");
    expect_read(SECOND_PORT, "shared:1", "old", "L1"); /* B holds "old" in its L1 */
    write_value(SERVER_PORT, "shared:1", "new");       /* through A */
    /* The documented bound: B drops it as soon as the invalidation message arrives. */
    long long deadline = tk_now_ms() + 500;
    for (;;) {
        struct tk_response res;
        tk_get(SECOND_PORT, "/read/shared:1", &res);
        bool fresh = strcmp(json_string_value(json_object_get(res.json, "value")), "new") == 0;
        tk_response_free(&res);
        if (fresh)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "B still served the old value after 500 ms");
        usleep(5000);
    }
    expect_read(SECOND_PORT, "shared:1", "new", "L1");
}
END_TEST

START_TEST(an_invalidation_lost_while_redis_hung_still_reaches_the_other_instance)
{
    /* Redis stops answering while a write through A commits: A's invalidation (and its
     * broadcast) times out. A owes it and delivers it when Redis answers again, so B stops
     * serving the old value from its L1 then, not only when its L1 entry expires. */
    ck_assert(contract_start_server(&server, NULL));
    start_second();
    write_value(SERVER_PORT, "hung:1", "old");
    expect_read(SECOND_PORT, "hung:1", "old", "L3");
    expect_read(SECOND_PORT, "hung:1", "old", "L1");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d client pause 1500 all >/dev/null", REDIS_PORT);
    ck_assert_int_eq(system(cmd), 0);
    write_value(SERVER_PORT, "hung:1", "new");
    expect_read(SERVER_PORT, "hung:1", "new", NULL); /* the writer itself is never stale */
    /* The bound: Redis back (1.5 s), then A's next maintenance tick (1 s) and delivery. */
    long long deadline = tk_now_ms() + 4500;
    for (;;) {
        struct tk_response res;
        tk_get(SECOND_PORT, "/read/hung:1", &res);
        bool fresh = strcmp(json_string_value(json_object_get(res.json, "value")), "new") == 0;
        tk_response_free(&res);
        if (fresh)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "B still served the old value after 4.5 s");
        usleep(50000);
    }
    expect_read(SECOND_PORT, "hung:1", "new", NULL);
    /* A really lost the invalidation and delivered it later (B did not merely time out). */
    ck_assert(tk_metric(SERVER_PORT, "cache_invalidations_owed_total") >= 1);
    ck_assert(tk_metric(SERVER_PORT, "cache_invalidations_delivered_late_total") >= 1);
}
END_TEST

START_TEST(a_silent_channel_stops_the_other_instance_trusting_its_l1)
{
    /* Redis hangs for 6 s without closing any connection, and a write through A commits. B
     * cannot hear the invalidation, and its subscription still looks fine; but its own heartbeat
     * stops coming back, so within LAYER5_HEARTBEAT_TIMEOUT_MS (2.5 s) it stops serving L1 and
     * reads PostgreSQL, long before Redis answers again (or B's L1 entry expires, in 30 s). */
    ck_assert(contract_start_server(&server, NULL));
    start_second();
    write_value(SERVER_PORT, "silent:1", "old");
    expect_read(SECOND_PORT, "silent:1", "old", "L3");
    expect_read(SECOND_PORT, "silent:1", "old", "L1");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d client pause 6000 all >/dev/null", REDIS_PORT);
    ck_assert_int_eq(system(cmd), 0);
    long long paused = tk_now_ms();
    write_value(SERVER_PORT, "silent:1", "new");
    for (;;) {
        struct tk_response res;
        tk_get(SECOND_PORT, "/read/silent:1", &res);
        bool fresh = strcmp(json_string_value(json_object_get(res.json, "value")), "new") == 0;
        tk_response_free(&res);
        if (fresh)
            break;
        ck_assert_msg(tk_now_ms() - paused < 4500, "B still served its L1 copy after 4.5 s");
        usleep(50000);
    }
    struct tk_response res;
    tk_get(SECOND_PORT, "/health", &res);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "degraded");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "invalidations")), "unavailable");
    /* The Python version's members: L1 is bypassed while invalidations cannot arrive */
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "l1_cache")), "unavailable");
    tk_response_free(&res);
    /* Redis answers again: B trusts L1 again, and fills it with the new value. Until A's
     * owed invalidation is delivered (A's next maintenance tick, within a second of Redis
     * answering: the README's bound for a writer that could not reach Redis), L2 may still
     * hold the old row, and B may serve it; never after that. */
    long long resumed = paused + 6000;
    long long deadline = tk_now_ms() + 15000;
    for (;;) {
        tk_get(SECOND_PORT, "/read/silent:1", &res);
        bool fresh = strcmp(json_string_value(json_object_get(res.json, "value")), "new") == 0;
        bool l1 = strcmp(json_string_value(json_object_get(res.json, "cache_level")), "L1") == 0;
        tk_response_free(&res);
        ck_assert_msg(fresh || tk_now_ms() - resumed < 2500,
                      "B served the old value 2.5 s after Redis answered again");
        if (fresh && l1 && tk_now_ms() - resumed >= 2500)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "L1 never came back");
        usleep(100000);
    }
}
END_TEST

START_TEST(redis_down_bypasses_the_caches)
{
    ck_assert(contract_start_server(&server, NULL));
    write_value(SERVER_PORT, "down:1", "v1");
    expect_read(SERVER_PORT, "down:1", "v1", "L3");
    expect_read(SERVER_PORT, "down:1", "v1", "L1");
    ck_assert(tk_redis_stop(&redis));
    ck_assert(tk_wait_status(SERVER_PORT, "/read/down:1", 200, 2000));
    /* Invalidations cannot be heard now: L1 is not trusted, reads go to PostgreSQL. */
    long long deadline = tk_now_ms() + 3000;
    for (;;) {
        struct tk_response res;
        tk_get(SERVER_PORT, "/read/down:1", &res);
        bool l3 = strcmp(json_string_value(json_object_get(res.json, "cache_level")), "L3") == 0;
        tk_response_free(&res);
        if (l3)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "L1 still served while Redis was down");
        usleep(20000);
    }
    write_value(SERVER_PORT, "down:1", "v2");
    expect_read(SERVER_PORT, "down:1", "v2", "L3");
    struct tk_response res;
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "degraded");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "l2_cache")), "unavailable");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "database")), "healthy");
    tk_response_free(&res);

    ck_assert(tk_redis_restart(&redis));
    deadline = tk_now_ms() + 10000;
    for (;;) { /* caching resumes by itself */
        tk_get(SERVER_PORT, "/read/down:1", &res);
        bool l1 = strcmp(json_string_value(json_object_get(res.json, "cache_level")), "L1") == 0;
        ck_assert_str_eq(json_string_value(json_object_get(res.json, "value")), "v2");
        tk_response_free(&res);
        if (l1)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "caching never resumed");
        usleep(50000);
    }
}
END_TEST

START_TEST(clear_cache_clears_only_its_own_keys)
{
    ck_assert(contract_start_server(&server, NULL));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d set someone:else keep >/dev/null", REDIS_PORT);
    ck_assert_int_eq(system(cmd), 0);
    write_value(SERVER_PORT, "clear:1", "v");
    expect_read(SERVER_PORT, "clear:1", "v", "L3");
    json_t *s = stats(SERVER_PORT);
    ck_assert_int_eq(stat(s, "l2_cache_keys"), 1);
    json_decref(s);
    struct tk_response res;
    tk_post(SERVER_PORT, "/clear-cache", "", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "message")), "All caches cleared");
    tk_response_free(&res);
    expect_read(SERVER_PORT, "clear:1", "v", "L3"); /* both tiers emptied */
    snprintf(cmd, sizeof cmd, "redis-cli -p %d get someone:else | grep -qx keep", REDIS_PORT);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    if (!tk_pg_start(&pg, PG_PORT, NULL) || !tk_redis_start(&redis, REDIS_PORT))
        return 1;
    snprintf(redis_url, sizeof redis_url, "REDIS_URL=%s", redis.url);
    static const char *env[] = {redis_url, "DB_POOL_ACQUIRE_TIMEOUT_MS=20000", NULL};
    struct contract_target target = {SERVER_BIN, "5-multi-tier-cache", SERVER_PORT, &pg, env,
                                     false};
    TCase *own = check_tcase(
        "tiers", empty_redis, stop_servers, 60,
        (const TTest *const[]){
            tiers_l3_then_l2_then_l1, l1_stays_within_its_bounds,
            a_write_reaches_the_other_instance_at_once,
            an_invalidation_lost_while_redis_hung_still_reaches_the_other_instance,
            a_silent_channel_stops_the_other_instance_trusting_its_l1,
            redis_down_bypasses_the_caches, clear_cache_clears_only_its_own_keys, NULL});
    int rc = layer_suite_run(&target, own);
    tk_redis_destroy(&redis);
    return rc;
}
