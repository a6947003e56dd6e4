/*
 * Layer 10 black-box tests: the shared contract and resilience cases against
 * l10-enterprise-grade (every request with an admin key), then each protection's promise:
 * keys and scopes (401, 403, the key never echoed); a rate limit per key at the configured rate,
 * which a second key does not share, another X-Client-ID does not reset, two instances share,
 * and a stopped Redis does not lift (the local limiter); a breaker that opens on a stopped shard
 * (fast 503s for that shard only), half-opens and closes when it returns; a deadline that
 * answers 503 within the budget while PostgreSQL hangs (SIGSTOP); shedding past the in-flight
 * limit; and Prometheus scraping l10 and layer 1.
 */
#include "check_run.h"
#include "contract_tests.h"
#include "openapi_tests.h"
#include "resilience_tests.h"

#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG_PORT         32000 /* shards on 32000 and 32001 */
#define REDIS_PORT      32050 /* the cache tier */
#define LIMIT_PORT      32051 /* the rate limits */
#define SERVER_PORT     32100
#define SECOND_PORT     32101
#define OTHER_PORT      32102 /* layer 1, for Prometheus */
#define PROMETHEUS_PORT 32190
#define SHARDS          2

#define ADMIN_KEY  "test-admin-key"
#define READER_KEY "test-reader-key"
#define OTHER_KEY  "test-other-key"

static struct tk_pg pg[SHARDS];
static struct tk_redis redis, limits;
static struct tk_server server, second, other;
static char shard_env[600], redis_env[96], limit_env[96];

/* ---- helpers ---- */

static void clean(void)
{
    /* A failed test's teardown may not have run: every shard up and running again. */
    for (int i = 0; i < SHARDS; i++) {
        tk_pg_pause(&pg[i], false);
        ck_assert(tk_pg_restart(&pg[i]));
    }
    ck_assert(tk_redis_restart(&limits));
    ck_assert(tk_redis_flush(&redis));
    ck_assert(tk_redis_flush(&limits));
}

static void stop_servers(void)
{
    for (int i = 0; i < SHARDS; i++)
        tk_pg_pause(&pg[i], false);
    tk_server_stop(&server, SIGKILL, 5000);
    tk_server_stop(&second, SIGKILL, 5000);
    tk_server_stop(&other, SIGKILL, 5000);
    tk_redis_restart(&limits);
    for (int i = 0; i < SHARDS; i++)
        tk_pg_restart(&pg[i]);
}

/* One request with one extra header ("Name: value") or none. */
static void call(int port, const char *method, const char *path, const char *body,
                 const char *header, struct tk_response *res)
{
    struct tk_request req = {method, path, body, 0, header};
    tk_http(port, &req, res);
}

static long status_of(int port, const char *method, const char *path, const char *body,
                      const char *header)
{
    struct tk_response res;
    call(port, method, path, body, header, &res);
    long status = res.status;
    tk_response_free(&res);
    return status;
}

/* The key's shard (0-based) as the server computes it for two shards: MD5 mod 2. */
static int shard_of(const char *key)
{
    unsigned char digest[16];
    unsigned int n = sizeof digest;
    ck_assert(EVP_Digest(key, strlen(key), digest, &n, EVP_md5(), NULL));
    return digest[15] & 1;
}

/* A key not used before on shard `shard`: "<prefix><n>". */
static void key_on(int shard, const char *prefix, char *out, size_t size)
{
    static int n;
    do
        snprintf(out, size, "%s%d", prefix, n++);
    while (shard_of(out) != shard);
}

static bool start_with(struct tk_server *s, int port, const char *const *more)
{
    if (port == SERVER_PORT)
        return contract_start_server(s, more);
    const char *env[24];
    int n = 0;
    const char *const *base = contract_target()->env;
    for (int i = 0; base[i] != NULL; i++)
        env[n++] = base[i];
    for (int i = 0; more != NULL && more[i] != NULL && n < 23; i++)
        env[n++] = more[i];
    env[n] = NULL;
    return tk_server_start(s, SERVER_BIN, port, env);
}

static json_t *health(int port)
{
    struct tk_response res;
    tk_get(port, "/health", &res);
    json_t *doc = json_incref(res.json);
    tk_response_free(&res);
    ck_assert_ptr_nonnull(doc);
    return doc;
}

static const char *breaker_state_of(json_t *h, const char *name)
{
    return json_string_value(json_object_get(json_object_get(h, "circuit_breakers"), name));
}

/* ---- the contract's write and read shapes, with this layer's write message ---- */

START_TEST(write_and_read_shapes_of_layer_10)
{
    ck_assert(contract_start_server(&server, NULL));
    struct tk_response res;
    tk_post(SERVER_PORT, "/write", "{\"key\":\"shape:1\",\"value\":\"hello\",\"extra\":1}", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.content_type, "application/json");
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "key")), "shape:1");
    char shard[16], expected[64];
    snprintf(shard, sizeof shard, "%s", json_string_value(json_object_get(res.json, "shard")));
    snprintf(expected, sizeof expected, "shard%d", shard_of("shape:1") + 1);
    ck_assert_str_eq(shard, expected);
    snprintf(expected, sizeof expected, "Written to shard%d and cached", shard_of("shape:1") + 1);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "message")), expected);
    ck_assert(json_is_true(json_object_get(res.json, "cached")));
    tk_response_free(&res);
    static const char *const levels[] = {"L3", "L1", "L1"};
    for (int i = 0; i < 3; i++) {
        tk_get(SERVER_PORT, "/read/shape:1", &res);
        ck_assert_int_eq(res.status, 200);
        ck_assert_str_eq(res.content_type, "application/json");
        ck_assert(json_is_true(json_object_get(res.json, "success")));
        ck_assert_str_eq(json_string_value(json_object_get(res.json, "value")), "hello");
        ck_assert(json_is_string(json_object_get(res.json, "created_at")));
        ck_assert(json_is_null(json_object_get(res.json, "message")));
        ck_assert_str_eq(json_string_value(json_object_get(res.json, "shard")), shard);
        ck_assert_int_ge(json_integer_value(json_object_get(res.json, "latency_ms")), 0);
        const char *level = json_string_value(json_object_get(res.json, "cache_level"));
        /* L1 needs the invalidation channel's first heartbeat; L2 serves until then. */
        ck_assert_msg(strcmp(level, levels[i]) == 0 || (i > 0 && strcmp(level, "L2") == 0),
                      "read %d: %s", i, res.body);
        ck_assert(json_is_boolean(json_object_get(res.json, "cache_hit")));
        ck_assert_int_eq(json_is_true(json_object_get(res.json, "cache_hit")), i > 0);
        tk_response_free(&res);
    }
}
END_TEST

/* ---- keys and scopes ---- */

START_TEST(keys_and_scopes)
{
    ck_assert(contract_start_server(&server, NULL));
    tk_set_default_header(NULL); /* this test sends its keys itself */
    const char *body = "{\"key\":\"auth:1\",\"value\":\"v\"}";
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", "/read/auth:1", NULL, NULL), 401);
    ck_assert_int_eq(status_of(SERVER_PORT, "POST", "/write", body, NULL), 401);
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", "/stats", NULL, NULL), 401);
    ck_assert_int_eq(status_of(SERVER_PORT, "POST", "/clear-cache", "", NULL), 401);
    struct tk_response res;
    call(SERVER_PORT, "GET", "/read/auth:1", NULL, "X-API-Key: not-a-key-we-know", &res);
    ck_assert_int_eq(res.status, 401);
    ck_assert_ptr_null(strstr(res.body, "not-a-key-we-know")); /* never echoed */
    tk_response_free(&res);
    call(SERVER_PORT, "GET", "/read/auth:1", NULL, "X-API-Key: " ADMIN_KEY "x", &res);
    ck_assert_int_eq(res.status, 401); /* a longer key is another key */
    tk_response_free(&res);
    /* A reader reads, and may not write nor administer. */
    call(SERVER_PORT, "POST", "/write", body, "X-API-Key: " READER_KEY, &res);
    ck_assert_int_eq(res.status, 403);
    ck_assert_ptr_null(strstr(res.body, READER_KEY));
    tk_response_free(&res);
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", "/stats", NULL, "X-API-Key: " READER_KEY), 403);
    ck_assert_int_eq(status_of(SERVER_PORT, "POST", "/write", body, "X-API-Key: " ADMIN_KEY), 200);
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", "/read/auth:1", NULL, "X-API-Key: " READER_KEY),
                     200);
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", "/stats", NULL, "X-API-Key: " ADMIN_KEY), 200);
    /* Public: liveness, readiness, metrics. */
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", "/health", NULL, NULL), 200);
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", "/ready", NULL, NULL), 200);
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", "/metrics", NULL, NULL), 200);
    call(SERVER_PORT, "GET", "/stats", NULL, "X-API-Key: " ADMIN_KEY, &res);
    json_t *requests = json_object_get(res.json, "requests");
    ck_assert_int_ge(json_integer_value(json_object_get(requests, "unauthorized")), 6);
    ck_assert_int_ge(json_integer_value(json_object_get(requests, "forbidden")), 2);
    tk_response_free(&res);
}
END_TEST

/* ---- rate limits ---- */

static const char *const limited[] = {"RATE_LIMIT_REQUESTS=5", "RATE_LIMIT_WINDOW_S=60", NULL};

/* Spends n requests of key's budget on port, each allowed, counting Remaining down. */
static void spend(int port, const char *key, int n, int remaining_after)
{
    char header[96];
    snprintf(header, sizeof header, "X-API-Key: %s", key);
    for (int i = 0; i < n; i++) {
        struct tk_response res;
        call(port, "GET", "/read/rl:1", NULL, header, &res);
        ck_assert_msg(res.status == 200, "request %d of %s: %ld %s", i, key, res.status, res.body);
        ck_assert_int_eq(atoi(res.rate_remaining), remaining_after + n - 1 - i);
        tk_response_free(&res);
    }
}

static void expect_limited(int port, const char *header)
{
    struct tk_response res;
    call(port, "GET", "/read/rl:1", NULL, header, &res);
    ck_assert_msg(res.status == 429, "%ld %s", res.status, res.body);
    ck_assert_int_ge(atoi(res.retry_after), 1);
    ck_assert_str_eq(res.rate_remaining, "0");
    tk_response_free(&res);
}

START_TEST(the_rate_limit_is_per_key_and_holds)
{
    ck_assert(contract_start_server(&server, limited));
    tk_set_default_header("X-API-Key: " ADMIN_KEY);
    spend(SERVER_PORT, READER_KEY, 5, 0);
    expect_limited(SERVER_PORT, "X-API-Key: " READER_KEY);
    /* Another client id (or any other header) is the same key: still limited. */
    tk_set_default_header("X-API-Key: " READER_KEY);
    expect_limited(SERVER_PORT, "X-Client-ID: someone-else");
    expect_limited(SERVER_PORT, "X-Forwarded-For: 10.9.8.7");
    /* A second key has its own budget. */
    spend(SERVER_PORT, OTHER_KEY, 5, 0);
    expect_limited(SERVER_PORT, "X-API-Key: " OTHER_KEY);
    struct tk_response res;
    call(SERVER_PORT, "GET", "/stats", NULL, "X-API-Key: " ADMIN_KEY, &res);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(res.json, "requests"), "rate_limited")),
        4);
    ck_assert(json_is_true(json_object_get(res.json, "rate_limit_shared")));
    tk_response_free(&res);
}
END_TEST

/* The benchmark's variant PROTECTIONS=no-rate-limit: the limit is gone, the keys are not. */
START_TEST(without_the_rate_limit_keys_still_hold)
{
    static const char *const no_limit[] = {"RATE_LIMIT_REQUESTS=1", "PROTECTIONS=no-rate-limit",
                                           NULL};
    ck_assert(contract_start_server(&server, no_limit));
    tk_set_default_header(NULL);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(
            status_of(SERVER_PORT, "GET", "/read/rl:1", NULL, "X-API-Key: " READER_KEY), 200);
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", "/read/rl:1", NULL, NULL), 401);
    const char *body = "{\"key\":\"rl:1\",\"value\":\"v\"}";
    ck_assert_int_eq(status_of(SERVER_PORT, "POST", "/write", body, "X-API-Key: " READER_KEY), 403);
}
END_TEST

START_TEST(two_instances_share_one_budget)
{
    ck_assert(contract_start_server(&server, limited));
    ck_assert(start_with(&second, SECOND_PORT, limited));
    spend(SERVER_PORT, READER_KEY, 3, 2);
    spend(SECOND_PORT, READER_KEY, 2, 0);
    expect_limited(SERVER_PORT, "X-API-Key: " READER_KEY);
    expect_limited(SECOND_PORT, "X-API-Key: " READER_KEY);
}
END_TEST

/*
 * With a limit high enough for slices (each instance spends a slice of the shared budget without
 * asking Redis), a burst spread over two instances still stops at the limit, give or take the
 * documented bound (instances x slice), and far fewer script calls than requests reach Redis.
 */
START_TEST(a_burst_across_two_instances_stops_at_the_limit_with_slices)
{
    /* 300 per minute and a 2 s lease: a slice of at most 300 x 2 / 60 = 10 requests. */
    static const char *const sliced[] = {"RATE_LIMIT_REQUESTS=300", "RATE_LIMIT_WINDOW_S=60",
                                         "RATE_LIMIT_LEASE_MS=2000", "RATE_LIMIT_SLICE=100", NULL};
    enum { SLICE = 10, N = 400 };
    ck_assert(contract_start_server(&server, sliced));
    ck_assert(start_with(&second, SECOND_PORT, sliced));
    tk_set_default_header("X-API-Key: " READER_KEY);
    long long started = tk_now_ms();
    int allowed = 0, limited_replies = 0;
    for (int i = 0; i < N; i++) {
        struct tk_response res;
        /* Another X-Client-ID on every request changes nothing: the budget is the key's. */
        char client[64];
        snprintf(client, sizeof client, "X-Client-ID: client-%d", i);
        call(i % 2 ? SECOND_PORT : SERVER_PORT, "GET", "/read/rl:1", NULL, client, &res);
        ck_assert_msg(res.status == 200 || res.status == 429, "%ld %s", res.status, res.body);
        ck_assert_int_le(atoi(res.rate_remaining), 300);
        if (res.status == 429) {
            limited_replies++;
            ck_assert_int_ge(atoi(res.retry_after), 1);
            ck_assert_str_eq(res.rate_remaining, "0");
        }
        allowed += res.status == 200;
        tk_response_free(&res);
    }
    double seconds = (double)(tk_now_ms() - started) / 1000.0;
    int refill = (int)(seconds * 300.0 / 60.0) + 1;
    ck_assert_msg(allowed <= 300 + refill + 2 * SLICE, "%d allowed in %.2f s", allowed, seconds);
    ck_assert_msg(allowed >= 300 - 2 * SLICE, "only %d allowed", allowed);
    ck_assert_int_eq(allowed + limited_replies, N);
    /* Slices were used: each instance asked Redis far less often than it decided. */
    long long settles = tk_metric(SERVER_PORT, "l10_rate_limit_settles_total") +
                        tk_metric(SECOND_PORT, "l10_rate_limit_settles_total");
    ck_assert_msg(settles * 3 < allowed, "%lld script calls for %d requests", settles, allowed);
    /* Each instance's first request found no slice and waited for Redis; few others did. */
    long long waits = tk_metric(SERVER_PORT, "l10_rate_limit_waits_total") +
                      tk_metric(SECOND_PORT, "l10_rate_limit_waits_total");
    ck_assert_msg(waits >= 2 && waits <= settles, "%lld waits, %lld script calls", waits, settles);
}
END_TEST

START_TEST(a_stopped_rate_limit_redis_falls_back_to_a_local_limit)
{
    ck_assert(contract_start_server(&server, limited));
    spend(SERVER_PORT, READER_KEY, 1, 4);
    ck_assert(tk_redis_stop(&limits));
    /* Each instance alone now: the whole budget again here (approximate), never unlimited. */
    int allowed = 0;
    for (int i = 0; i < 20; i++)
        allowed +=
            status_of(SERVER_PORT, "GET", "/read/rl:1", NULL, "X-API-Key: " READER_KEY) == 200;
    ck_assert_int_le(allowed, 6); /* one may still have gone to Redis while it stopped */
    ck_assert_int_ge(allowed, 4);
    expect_limited(SERVER_PORT, "X-API-Key: " READER_KEY);
    json_t *h = health(SERVER_PORT);
    ck_assert(json_is_false(json_object_get(h, "rate_limiter_healthy")));
    json_decref(h);
    /* Back: budgets are shared again. */
    ck_assert(tk_redis_restart(&limits));
    long long deadline = tk_now_ms() + 10000;
    for (;;) {
        h = health(SERVER_PORT);
        bool shared = json_is_true(json_object_get(h, "rate_limiter_healthy"));
        json_decref(h);
        if (shared)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "the limiter never went back to Redis");
        status_of(SERVER_PORT, "GET", "/read/rl:1", NULL, "X-API-Key: " OTHER_KEY);
        usleep(200000);
    }
}
END_TEST

/* ---- breakers, deadlines, shedding ---- */

static const char *const breaking[] = {"BREAKER_MIN_CALLS=3",       "BREAKER_OPEN_MS=1500",
                                       "BREAKER_WINDOW_MS=5000",    "REQUEST_TIMEOUT_MS=3000",
                                       "DB_CONNECT_TIMEOUT_MS=500", NULL};

START_TEST(a_breaker_opens_on_a_stopped_shard_and_closes_when_it_returns)
{
    ck_assert(contract_start_server(&server, breaking));
    char key[64], path[96];
    ck_assert(tk_pg_stop(&pg[0])); /* shard1 */
    /* Its keys fail, until enough have failed to open its breaker: then at once. */
    long long deadline = tk_now_ms() + 15000;
    struct tk_response res;
    for (;;) {
        key_on(0, "b1:", key, sizeof key);
        snprintf(path, sizeof path, "/read/%s", key);
        tk_get(SERVER_PORT, path, &res);
        ck_assert_int_eq(res.status, 503);
        bool refused = res.retry_after[0] != '\0' && res.seconds < 0.5;
        tk_response_free(&res);
        json_t *h = health(SERVER_PORT);
        bool open = strcmp(breaker_state_of(h, "shard1"), "open") == 0;
        json_decref(h);
        if (open && refused)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "shard1's breaker never opened");
    }
    /* Open: fast 503s with Retry-After for shard1's keys, shard2's keys are served. */
    for (int i = 0; i < 5; i++) {
        key_on(0, "b1:", key, sizeof key);
        snprintf(path, sizeof path, "/read/%s", key);
        tk_get(SERVER_PORT, path, &res);
        ck_assert_int_eq(res.status, 503);
        ck_assert_msg(res.seconds < 0.5, "a refusal took %.3f s", res.seconds);
        ck_assert_int_ge(atoi(res.retry_after), 1);
        tk_response_free(&res);
        key_on(1, "b2:", key, sizeof key);
        snprintf(path, sizeof path, "/read/%s", key);
        tk_get(SERVER_PORT, path, &res);
        ck_assert_int_eq(res.status, 200);
        ck_assert_str_eq(json_string_value(json_object_get(res.json, "shard")), "shard2");
        tk_response_free(&res);
    }
    json_t *h = health(SERVER_PORT);
    ck_assert_str_eq(breaker_state_of(h, "shard2"), "closed");
    ck_assert_str_eq(json_string_value(json_object_get(h, "status")), "degraded");
    ck_assert(json_is_false(json_object_get(json_object_get(h, "shards_healthy"), "shard1")));
    json_decref(h);
    ck_assert_int_ge(tk_metric(SERVER_PORT, "l10_breaker_state{backend=\"shard1\"}"), 1);
    /* Back: a probe after BREAKER_OPEN_MS finds it, and the breaker closes. */
    ck_assert(tk_pg_restart(&pg[0]));
    deadline = tk_now_ms() + 20000;
    for (;;) {
        key_on(0, "b1:", key, sizeof key);
        snprintf(path, sizeof path, "/read/%s", key);
        long status = status_of(SERVER_PORT, "GET", path, NULL, NULL);
        if (status == 200)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "shard1 never served again");
        usleep(100000);
    }
    h = health(SERVER_PORT);
    ck_assert_str_eq(breaker_state_of(h, "shard1"), "closed");
    json_decref(h);
    ck_assert_int_ge(tk_metric(SERVER_PORT, "l10_breaker_transitions_total{backend=\"shard1\","
                                            "to=\"half_open\"}"),
                     1);
    ck_assert_int_ge(tk_metric(SERVER_PORT, "l10_breaker_transitions_total{backend=\"shard1\","
                                            "to=\"closed\"}"),
                     1);
}
END_TEST

START_TEST(a_hung_shard_is_answered_within_the_budget)
{
    static const char *const budget[] = {"REQUEST_TIMEOUT_MS=600", NULL};
    ck_assert(contract_start_server(&server, budget));
    char key[64], path[96];
    key_on(0, "d1:", key, sizeof key);
    snprintf(path, sizeof path, "/read/%s", key);
    ck_assert(tk_wait_status(SERVER_PORT, path, 200, 10000)); /* connected */
    ck_assert(tk_pg_pause(&pg[0], true));
    for (int i = 0; i < 3; i++) {
        key_on(0, "d1:", key, sizeof key);
        snprintf(path, sizeof path, "/read/%s", key);
        struct tk_response res;
        tk_get(SERVER_PORT, path, &res);
        ck_assert_int_eq(res.status, 503);
        ck_assert_msg(res.seconds < 1.2, "answered after %.3f s, over the 0.6 s budget",
                      res.seconds);
        tk_response_free(&res);
    }
    key_on(1, "d2:", key, sizeof key); /* the other shard is not held up */
    snprintf(path, sizeof path, "/read/%s", key);
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", path, NULL, NULL), 200);
    ck_assert(tk_pg_pause(&pg[0], false));
}
END_TEST

START_TEST(requests_over_the_in_flight_limit_are_shed)
{
    static const char *const small[] = {"MAX_IN_FLIGHT=3", "REQUEST_TIMEOUT_MS=4000", NULL};
    ck_assert(contract_start_server(&server, small));
    char key[64];
    key_on(0, "s1:", key, sizeof key);
    ck_assert(tk_pg_pause(&pg[0], true));
    enum { N = 12 };
    static char paths[N][96];
    struct tk_request reqs[N];
    struct tk_response res[N];
    for (int i = 0; i < N; i++) {
        key_on(0, "s1:", key, sizeof key);
        snprintf(paths[i], sizeof paths[i], "/read/%s", key);
        reqs[i] = (struct tk_request){"GET", paths[i], NULL, 0, NULL};
    }
    tk_http_many(SERVER_PORT, reqs, res, N, 10000);
    int shed = 0;
    for (int i = 0; i < N; i++) {
        if (res[i].status == 503 && strstr(res[i].body, "Server overloaded") != NULL) {
            shed++;
            ck_assert_msg(res[i].seconds < 1.0, "shed after %.3f s", res[i].seconds);
            ck_assert_str_eq(res[i].retry_after, "1");
        }
        tk_response_free(&res[i]);
    }
    ck_assert_msg(shed >= N - 3 - 1, "only %d of %d shed", shed, N);
    ck_assert(tk_pg_pause(&pg[0], false));
    ck_assert_int_ge(tk_metric(SERVER_PORT, "l10_requests_total{outcome=\"shed\"}"), shed);
}
END_TEST

/*
 * Graceful drain: after SIGTERM the instance says "not ready" for DRAIN_DELAY_MS while it still
 * serves (a load balancer stops sending first), then closes its listener and exits 0.
 */
START_TEST(sigterm_says_not_ready_first_and_exits_after_the_drain_delay)
{
    /* 4 s: the checks below must fit inside the delay even on a loaded machine */
    static const char *const delayed[] = {"DRAIN_DELAY_MS=4000", NULL};
    ck_assert(contract_start_server(&server, delayed));
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", "/ready", NULL, NULL), 200);
    long long signalled = tk_now_ms();
    ck_assert_int_eq(kill(server.pid, SIGTERM), 0);
    usleep(100000);
    struct tk_response res;
    tk_get(SERVER_PORT, "/ready", &res);
    ck_assert_int_eq(res.status, 503);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "not ready");
    ck_assert_str_eq(res.retry_after, "1");
    tk_response_free(&res);
    tk_get(SERVER_PORT, "/health", &res); /* alive, and says so */
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "healthy");
    tk_response_free(&res);
    long served = status_of(SERVER_PORT, "GET", "/read/l10-drain:never-written", NULL, NULL);
    ck_assert_int_eq(served, 200); /* still served (not found is 200, the contract) */
    ck_assert_msg(tk_now_ms() - signalled < 4000, "the checks took the whole delay");
    ck_assert_int_eq(tk_server_stop(&server, 0, 10000), 0); /* exit code 0 */
    long long took = tk_now_ms() - signalled;
    ck_assert_msg(took >= 3900, "exited %lld ms after SIGTERM, before the drain delay", took);
    ck_assert_msg(took < 4000 + 3000, "exited %lld ms after SIGTERM", took);
}
END_TEST

START_TEST(a_drain_delay_over_the_shutdown_timeout_is_refused)
{
    static const char *const too_long[] = {"DRAIN_DELAY_MS=5000", "SHUTDOWN_TIMEOUT_MS=5000", NULL};
    const char *env[24];
    int n = 0;
    for (const char *const *e = contract_target()->env; *e != NULL; e++)
        env[n++] = *e;
    env[n++] = too_long[0];
    env[n++] = too_long[1];
    env[n] = NULL;
    ck_assert(tk_server_spawn(&second, SERVER_BIN, SECOND_PORT, env));
    ck_assert_int_eq(tk_server_stop(&second, 0, 10000), 1); /* refused at start-up */
}
END_TEST

START_TEST(ready_is_public_and_draining_is_not_ready)
{
    ck_assert(contract_start_server(&server, NULL));
    ck_assert_int_eq(status_of(SERVER_PORT, "GET", "/ready", NULL, NULL), 200);
    ck_assert_int_eq(tk_server_stop(&server, SIGTERM, 10000), 0);
    ck_assert_int_ne(status_of(SERVER_PORT, "GET", "/ready", NULL, NULL), 200);
}
END_TEST

/* ---- Prometheus ---- */

START_TEST(prometheus_scrapes_l10_and_another_layer)
{
    const char *bin = "/usr/bin/prometheus";
    if (access(bin, X_OK) != 0) {
        fprintf(stderr,
                "SKIP prometheus_scrapes_l10_and_another_layer: %s is not installed "
                "(./layers deps installs Debian's prometheus)\n",
                bin);
        return;
    }
    ck_assert(contract_start_server(&server, NULL));
    char url[200];
    snprintf(url, sizeof url, "DATABASE_URL=%s", pg[1].url);
    const char *env[] = {url, NULL};
    ck_assert(tk_server_start(&other, OTHER_BIN, OTHER_PORT, env));
    char dir[] = "/tmp/l10-prometheus-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char config[256], data[256], listen[64];
    snprintf(config, sizeof config, "%s/prometheus.yml", dir);
    snprintf(data, sizeof data, "--storage.tsdb.path=%s/data", dir);
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", PROMETHEUS_PORT);
    FILE *f = fopen(config, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: layers\n"
            "    static_configs:\n      - targets: ['127.0.0.1:%d', '127.0.0.1:%d']\n",
            SERVER_PORT, OTHER_PORT);
    fclose(f);
    char config_arg[300];
    snprintf(config_arg, sizeof config_arg, "--config.file=%s", config);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl(bin, bin, config_arg, data, listen, "--log.level=warn", (char *)NULL);
        _exit(127);
    }
    /* Both targets up, and an l10 series and a layer 1 series scraped. */
    long long deadline = tk_now_ms() + 60000;
    bool both = false;
    while (!both && tk_now_ms() < deadline) {
        struct tk_response res;
        tk_get(PROMETHEUS_PORT, "/api/v1/query?query=sum(up)", &res);
        json_t *result = json_object_get(json_object_get(res.json, "data"), "result");
        json_t *value = json_array_get(json_object_get(json_array_get(result, 0), "value"), 1);
        both = json_is_string(value) && strcmp(json_string_value(value), "2") == 0;
        tk_response_free(&res);
        if (!both)
            usleep(500000);
    }
    bool l10_series = false;
    if (both) {
        struct tk_response res;
        tk_get(PROMETHEUS_PORT, "/api/v1/query?query=l10_requests_total", &res);
        l10_series = res.status == 200 && strstr(res.body, "\"outcome\"") != NULL;
        tk_response_free(&res);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    ck_assert_int_eq(system(rm), 0);
    ck_assert_msg(both, "Prometheus did not see both targets up within 60 s");
    ck_assert_msg(l10_series, "Prometheus has no l10_requests_total");
}
END_TEST

int main(void)
{
    for (int i = 0; i < SHARDS; i++)
        if (!tk_pg_start(&pg[i], PG_PORT + i, NULL))
            return 1;
    if (!tk_redis_start(&redis, REDIS_PORT) || !tk_redis_start(&limits, LIMIT_PORT))
        return 1;
    snprintf(shard_env, sizeof shard_env, "SHARD_URLS=%s,%s", pg[0].url, pg[1].url);
    snprintf(redis_env, sizeof redis_env, "REDIS_URL=%s", redis.url);
    snprintf(limit_env, sizeof limit_env, "RATE_LIMIT_REDIS_URL=%s", limits.url);
    static const char *env[] = {
        shard_env, redis_env, limit_env,
        "API_KEYS=" ADMIN_KEY ":read+write+admin," READER_KEY ":read," OTHER_KEY ":read",
        "RATE_LIMIT_REQUESTS=100000000", "DB_POOL_ACQUIRE_TIMEOUT_MS=20000",
        "REQUEST_TIMEOUT_MS=30000", "MAX_IN_FLIGHT=100000", "MAX_LOOP_LAG_MS=600000",
        /* the contract's shutdown tests time the core's drain; the
         * delay before it has its own test */
        "DRAIN_DELAY_MS=0", NULL};
    /* The contract's target: its DATABASE_URL (shard 0) is ignored, SHARD_URLS counts. Every
     * request carries the admin key (tk_set_default_header). */
    struct contract_target target = {SERVER_BIN, "10-enterprise-grade", SERVER_PORT, &pg[0], env,
                                     false};
    contract_set_target(&target);
    static struct tk_pg *const other_shards[] = {&pg[1], NULL};
    contract_set_other_pgs(other_shards);
    tk_set_default_header("X-API-Key: " ADMIN_KEY);

    Suite *suite = suite_create("10-enterprise-grade");
    suite_add_tcase(suite,
                    contract_tcase_without((const char *const[]){"write_and_read_shapes", NULL}));
    suite_add_tcase(suite, resilience_tcase_without(
                               (const char *const[]){"database_stops_and_comes_back", NULL}));
    suite_add_tcase(suite, openapi_tcase());
    suite_add_tcase(suite, api_docs_tcase());
    TCase *own = check_tcase(
        "protections", clean, stop_servers, 120,
        (const TTest *const[]){
            write_and_read_shapes_of_layer_10, keys_and_scopes, the_rate_limit_is_per_key_and_holds,
            without_the_rate_limit_keys_still_hold, two_instances_share_one_budget,
            a_burst_across_two_instances_stops_at_the_limit_with_slices,
            a_stopped_rate_limit_redis_falls_back_to_a_local_limit,
            a_breaker_opens_on_a_stopped_shard_and_closes_when_it_returns,
            a_hung_shard_is_answered_within_the_budget, requests_over_the_in_flight_limit_are_shed,
            ready_is_public_and_draining_is_not_ready,
            sigterm_says_not_ready_first_and_exits_after_the_drain_delay,
            a_drain_delay_over_the_shutdown_timeout_is_refused,
            prometheus_scrapes_l10_and_another_layer, NULL});
    suite_add_tcase(suite, own);
    int failed = check_run(suite, CK_FORK_GETENV);
    for (int i = 0; i < SHARDS; i++)
        tk_pg_destroy(&pg[i]);
    tk_redis_destroy(&redis);
    tk_redis_destroy(&limits);
    return failed == 0 ? 0 : 1;
}
