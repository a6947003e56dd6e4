/*
 * Layer 2 black-box tests: the shared contract and resilience cases against l2-read-cache (with
 * a real Redis), and cache-aside's own promises: hits after a miss, invalidation on write, TTL
 * expiry, no stale row cached by the classic race, one database query for many concurrent
 * misses on a key, reads that keep working while Redis is down (and caching that resumes
 * when it is back), and an invalidation lost while Redis hung that is delivered afterwards.
 */
#include "layer_suite.h"
#include "check_run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_PORT     23000
#define REDIS_PORT  23050
#define SERVER_PORT 23100

static struct tk_pg pg;
static struct tk_redis redis;
static struct tk_server server;

static void start_with(const char *const *env)
{
    ck_assert_msg(contract_start_server(&server, env), "server did not start");
}

/* Each cache test starts from an empty Redis (the shared cases before it filled it). */
static void empty_redis(void)
{
    ck_assert(tk_redis_flush(&redis));
}

static void stop_server(void)
{
    tk_server_stop(&server, SIGKILL, 5000);
    tk_redis_restart(&redis); /* in case a test stopped it and then failed */
}

/* Reads key; checks the value and where it came from. */
static void expect_read(const char *key, const char *value, bool from_cache)
{
    char path[128];
    snprintf(path, sizeof path, "/read/%s", key);
    struct tk_response res;
    tk_get(SERVER_PORT, path, &res);
    ck_assert_msg(res.status == 200, "%s: %ld", path, res.status);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "value")), value);
    ck_assert_msg(json_is_boolean(json_object_get(res.json, "from_cache")) &&
                      json_boolean_value(json_object_get(res.json, "from_cache")) == from_cache,
                  "%s: from_cache should be %d: %s", path, from_cache, res.body);
    tk_response_free(&res);
}

static void write_value(const char *key, const char *value)
{
    char *body = tk_write_body(key, value);
    struct tk_response res;
    tk_post(SERVER_PORT, "/write", body, &res);
    ck_assert_int_eq(res.status, 200);
    tk_response_free(&res);
    free(body);
}

static long long cache_stat(const char *name)
{
    struct tk_response res;
    tk_get(SERVER_PORT, "/cache-stats", &res);
    json_t *v = json_object_get(res.json, name);
    long long n = json_is_number(v) ? (long long)json_number_value(v) : -1;
    tk_response_free(&res);
    return n;
}

/* Waits until /cache-stats member `name` is at least `want`, at most timeout_ms. */
static void wait_cache_stat(const char *name, long long want, long timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    while (cache_stat(name) < want) {
        ck_assert_msg(tk_now_ms() < deadline, "%s never reached %lld", name, want);
        usleep(50000);
    }
}

START_TEST(hit_after_miss_and_invalidation_on_write)
{
    start_with(NULL);
    write_value("cached:1", "one");
    expect_read("cached:1", "one", false);
    expect_read("cached:1", "one", true);
    write_value("cached:1", "two"); /* invalidates */
    expect_read("cached:1", "two", false);
    expect_read("cached:1", "two", true);

    struct tk_response res;
    tk_get(SERVER_PORT, "/cache-stats", &res);
    ck_assert(json_is_true(json_object_get(res.json, "available")));
    ck_assert_int_eq(json_integer_value(json_object_get(res.json, "hits")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(res.json, "misses")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(res.json, "keys")), 1);
    ck_assert(json_real_value(json_object_get(res.json, "hit_rate")) == 50.0);
    tk_response_free(&res);
    tk_get(SERVER_PORT, "/read/never-there", &res); /* misses are not cached */
    ck_assert(json_is_false(json_object_get(res.json, "success")));
    tk_response_free(&res);
    ck_assert_int_eq(cache_stat("keys"), 1);
}
END_TEST

/* The TTL of a Redis key in seconds (-2: no such key), through redis-cli. */
static long redis_ttl(const char *redis_key)
{
    char cmd[200], out[32] = "";
    snprintf(cmd, sizeof cmd, "redis-cli -p %d ttl '%s'", REDIS_PORT, redis_key);
    FILE *p = popen(cmd, "r");
    ck_assert(p != NULL);
    ck_assert(fgets(out, sizeof out, p) != NULL);
    pclose(p);
    return atol(out);
}

START_TEST(misses_of_absent_keys_leave_only_short_leases)
{
    /* A miss plants a version (a lease) before its database read; a key that does not exist
     * fills nothing, so the lease is all it leaves, and only for a minute, not for the
     * version's long TTL (2 x CACHE_TTL + 60 s; 11 minutes at the default). */
    start_with(NULL);
    struct tk_response res;
    tk_get(SERVER_PORT, "/read/absent:1", &res);
    ck_assert(json_is_false(json_object_get(res.json, "success")));
    tk_response_free(&res);
    long lease = redis_ttl("l2:ver:absent:1");
    ck_assert_msg(lease > 0 && lease <= 60, "lease TTL %ld s", lease);
    /* A filled key's version lives as long as versions do. */
    write_value("present:1", "v");
    expect_read("present:1", "v", false);
    wait_cache_stat("keys", 1, 5000);
    long version = redis_ttl("l2:ver:present:1");
    ck_assert_msg(version > 60, "a filled key's version TTL %ld s", version);
}
END_TEST

START_TEST(entries_expire_after_the_ttl)
{
    const char *env[] = {"CACHE_TTL=1", NULL};
    start_with(env);
    write_value("ttl:1", "v");
    expect_read("ttl:1", "v", false);
    expect_read("ttl:1", "v", true);
    /* within a bounded wait, the entry is gone and the read goes to PostgreSQL again */
    long long deadline = tk_now_ms() + 3000;
    for (bool hit = true; hit;) {
        struct tk_response res;
        tk_get(SERVER_PORT, "/read/ttl:1", &res);
        ck_assert_str_eq(json_string_value(json_object_get(res.json, "value")), "v");
        hit = json_is_true(json_object_get(res.json, "from_cache"));
        tk_response_free(&res);
        ck_assert_msg(!hit || tk_now_ms() < deadline, "still cached 3 s after a 1 s TTL");
        if (hit)
            usleep(100000);
    }
}
END_TEST

START_TEST(a_stale_row_is_never_cached)
{
    /* The classic interleaving, forced: a reader misses and reads "old"; its cache fill is
     * held back 600 ms; meanwhile a writer commits "new" and invalidates. The late fill must
     * not store "old". */
    const char *env[] = {"CACHE_FILL_DELAY_MS=600", NULL};
    start_with(env);
    write_value("race:1", "old");
    expect_read("race:1", "old", false); /* miss: its fill of "old" is now pending */
    write_value("race:1", "new");
    wait_cache_stat("fills_skipped", 1, 5000); /* the pending fill has run, and was refused */
    ck_assert_int_eq(cache_stat("keys"), 0);
    expect_read("race:1", "new", false); /* nothing stale was cached */
    wait_cache_stat("keys", 1, 5000);    /* this miss's own fill went through */
    expect_read("race:1", "new", true);
}
END_TEST

/* Deletes a key in Redis, as an eviction under maxmemory would. */
static void evict(const char *redis_key)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d del '%s' >/dev/null", REDIS_PORT, redis_key);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(an_evicted_version_lets_no_stale_row_in)
{
    /* The race again, with the guard itself evicted (a Redis under maxmemory with an allkeys-*
     * policy): a version that restarts after eviction (a counter) would match the reader's old
     * token and let "old" in. 1: the version is evicted before the write; 2: the key has no
     * version when read, and the one the write set is evicted before the fill. */
    /* Fills wait 2 s: long enough that the writes below land first even on a loaded machine. */
    const char *env[] = {"CACHE_FILL_DELAY_MS=2000", NULL};
    start_with(env);
    write_value("evict:1", "old");
    write_value("evict:2", "old");
    evict("l2:ver:evict:2");
    expect_read("evict:1", "old", false); /* both fills pending for 2 s */
    expect_read("evict:2", "old", false);
    evict("l2:ver:evict:1");
    write_value("evict:1", "new");
    write_value("evict:2", "new");
    evict("l2:ver:evict:2");
    /* Both were refused (not merely overwritten later): the counter proves the guard acted. */
    wait_cache_stat("fills_skipped", 2, 10000);
    expect_read("evict:1", "new", false);
    expect_read("evict:2", "new", false);
}
END_TEST

START_TEST(concurrent_misses_share_one_query)
{
    start_with(NULL);
    write_value("hot:1", "popular");
    const char *queries = "pg_queries_total";
    PGconn *lock = tk_pg_lock_records(&pg);
    ck_assert(lock != NULL);
    double before = tk_metric(SERVER_PORT, queries);
    struct tk_batch *batch = tk_batch_start(SERVER_PORT, "/read/hot:1?", 20);
    ck_assert(tk_wait_in_flight(SERVER_PORT, 20, true, 10000));
    tk_pg_unlock(lock);
    struct tk_response *res = tk_batch_wait(batch);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(res[i].status, 200);
        ck_assert_str_eq(json_string_value(json_object_get(res[i].json, "value")), "popular");
    }
    tk_batch_free(batch);
    ck_assert_int_eq((long long)(tk_metric(SERVER_PORT, queries) - before), 1);
    ck_assert_int_eq(cache_stat("coalesced"), 19);
}
END_TEST

START_TEST(a_hung_redis_shows_in_health_without_traffic)
{
    /* Redis stops answering without closing its connections (CLIENT PAUSE). With no request
     * touching the cache, the heartbeat notices it: /health says so within a second and the
     * command timeout, instead of "healthy" until a read happens to time out. */
    start_with(NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d client pause 4000 all >/dev/null", REDIS_PORT);
    ck_assert(system(cmd) == 0);
    long long deadline = tk_now_ms() + 3500;
    for (;;) {
        struct tk_response res;
        tk_get(SERVER_PORT, "/health", &res);
        bool down = strcmp(json_string_value(json_object_get(res.json, "cache")), "unavailable") == 0;
        if (down)
            ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "degraded");
        tk_response_free(&res);
        if (down)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "/health still trusts a hung Redis");
        usleep(100000);
    }
}
END_TEST

START_TEST(redis_down_reads_go_to_the_database)
{
    start_with(NULL);
    write_value("outage:1", "v1");
    expect_read("outage:1", "v1", false);
    expect_read("outage:1", "v1", true);
    ck_assert(tk_redis_stop(&redis));
    expect_read("outage:1", "v1", false); /* from PostgreSQL, not an error */
    write_value("outage:1", "v2");        /* writes keep working too */
    expect_read("outage:1", "v2", false);
    struct tk_response res;
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "degraded");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "cache")), "unavailable");
    tk_response_free(&res);
    tk_get(SERVER_PORT, "/cache-stats", &res);
    ck_assert(json_is_false(json_object_get(res.json, "available")));
    ck_assert(json_is_null(json_object_get(res.json, "hits")));
    tk_response_free(&res);

    ck_assert(tk_redis_restart(&redis));
    ck_assert(tk_wait_status(SERVER_PORT, "/cache-stats", 200, 5000));
    long long deadline = tk_now_ms() + 10000;
    for (;;) { /* caching resumes without a restart */
        tk_get(SERVER_PORT, "/read/outage:1", &res);
        bool cached = json_is_true(json_object_get(res.json, "from_cache"));
        ck_assert_str_eq(json_string_value(json_object_get(res.json, "value")), "v2");
        tk_response_free(&res);
        if (cached)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "caching never resumed");
        usleep(100000);
    }
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "healthy");
    tk_response_free(&res);
}
END_TEST

/* Redis stops answering (the connection stays open) for ms milliseconds. */
static void pause_redis(int ms)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d client pause %d all >/dev/null", REDIS_PORT, ms);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(a_lost_invalidation_is_delivered_later)
{
    /* Redis hangs while a write commits: the invalidation times out and the old row is still
     * in Redis when it answers again. It must never be served: the server owes that
     * invalidation, bypasses the cache until it has delivered it, then caches again. */
    start_with(NULL);
    write_value("lost:1", "v1");
    expect_read("lost:1", "v1", false);
    expect_read("lost:1", "v1", true);
    pause_redis(1500);
    write_value("lost:1", "v2");
    /* Redis answers again (a PING waits out the pause), with "v1" still stored */
    char ping[96];
    snprintf(ping, sizeof ping, "timeout 5 redis-cli -p %d ping >/dev/null", REDIS_PORT);
    ck_assert_int_eq(system(ping), 0);
    long long deadline = tk_now_ms() + 10000;
    for (;;) {
        struct tk_response res;
        tk_get(SERVER_PORT, "/read/lost:1", &res);
        ck_assert_msg(res.status == 200, "%ld", res.status);
        ck_assert_msg(strcmp(json_string_value(json_object_get(res.json, "value")), "v2") == 0,
                      "a stale row was served: %s", res.body);
        bool cached = json_is_true(json_object_get(res.json, "from_cache"));
        tk_response_free(&res);
        if (cached)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "caching never resumed");
        usleep(50000);
    }
    /* The invalidation really was lost and then delivered (not merely never needed). */
    ck_assert(tk_metric(SERVER_PORT, "cache_invalidations_owed_total") >= 1);
    ck_assert(tk_metric(SERVER_PORT, "cache_invalidations_delivered_late_total") >= 1);
}
END_TEST

int main(void)
{
    if (!tk_pg_start(&pg, PG_PORT, NULL) || !tk_redis_start(&redis, REDIS_PORT))
        return 1;
    static char redis_url[96];
    snprintf(redis_url, sizeof redis_url, "REDIS_URL=%s", redis.url);
    static const char *env[] = {redis_url, "DB_POOL_ACQUIRE_TIMEOUT_MS=20000", NULL};
    struct contract_target target = {SERVER_BIN, "2-read-cache", SERVER_PORT, &pg, env, false};
    TCase *own =
        check_tcase("cache-aside", empty_redis, stop_server, 60,
                    (const TTest *const[]){
                        hit_after_miss_and_invalidation_on_write, entries_expire_after_the_ttl,
                        misses_of_absent_keys_leave_only_short_leases,
                        a_hung_redis_shows_in_health_without_traffic,
                        a_stale_row_is_never_cached, an_evicted_version_lets_no_stale_row_in,
                        concurrent_misses_share_one_query, redis_down_reads_go_to_the_database,
                        a_lost_invalidation_is_delivered_later, NULL});
    int rc = layer_suite_run(&target, own);
    tk_redis_destroy(&redis);
    return rc;
}
