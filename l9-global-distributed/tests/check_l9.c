/*
 * Layer 9 black-box tests: three real PostgreSQL clusters replicating logically to each other
 * (replication.sh) through the WAN links (l9-links, the delay proxies, at the default 40/90/80
 * ms), the real server over HTTP. The shared contract and resilience cases, then the layer's own
 * promises, each region's tables read directly behind the API's back:
 * - a write in any region reaches every region within a bound;
 * - conflicting writes of one key in two regions converge: every region's tables hold both
 *   rows and merge them to the same winner;
 * - a region whose clock is 5 s behind still wins with a write made after reading another
 *   region's value (the hybrid logical clock);
 * - a strong write is in every region's tables when its reply arrives;
 * - a region stopped under load: its clients are served by another region (`source`), and once
 *   it is back no acknowledged write is missing and the regions agree;
 * - an unknown region is a 422 naming the valid ones; max_staleness_ms is honoured;
 * - each region's Redis cache: a row replication applies replaces the value cached there
 *   (within the notification's delivery once the region's tables have it), a local write is
 *   read back at once, and a region whose Redis is down reads from its PostgreSQL.
 *
 * The shared cases that lock `records` (which layer 9 does not have: its rows are in
 * records_<region>) and those that stop or hang "the" database expecting the layer to fail
 * (layer 9 then serves from another region, tested here) are skipped.
 */
#include "layer_suite.h"
#include "check_run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_PORT     31900 /* regions on 31900-31902, the WAN links on 31903-31908 */
#define SERVER_PORT 31950
#define LINKS_PORT  31951 /* the links helper's PORT (unused by it) */
#define REDIS_PORT  31910 /* each region's Redis on 31910-31912 */
#define REGIONS     3

static const char *const names[REGIONS] = {"us-east", "eu-west", "asia-pac"};
static const char *const suffixes[REGIONS] = {"us_east", "eu_west", "asia_pac"};

static struct tk_pg pg[REGIONS];
static struct tk_redis redis[REGIONS];
static bool redis_stopped[REGIONS]; /* by a test: stop_server starts it again */
static struct tk_server server, links;
static char dbs_env[512], links_env[1024], redis_env[512];

/* The merge read, on region i's own tables. */
static const char MERGE_SQL[] =
    "SELECT value, region FROM (SELECT * FROM records_us_east WHERE key = $1 UNION ALL "
    "SELECT * FROM records_eu_west WHERE key = $1 UNION ALL "
    "SELECT * FROM records_asia_pac WHERE key = $1) t "
    "ORDER BY hlc DESC, region COLLATE \"C\" DESC LIMIT 1";

/* Region i's merged value of key (caller frees), or NULL. */
static char *region_value(int i, const char *key)
{
    PGconn *conn = tk_pg_connect(&pg[i], "layers");
    if (conn == NULL)
        return NULL;
    const char *params[] = {key};
    PGresult *res = PQexecParams(conn, MERGE_SQL, 1, NULL, params, NULL, NULL, 0);
    char *value = NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        value = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(conn);
    return value;
}

/* How many rows of key region i holds across the three tables (-1 on error). */
static int region_rows(int i, const char *key)
{
    PGconn *conn = tk_pg_connect(&pg[i], "layers");
    if (conn == NULL)
        return -1;
    const char *params[] = {key};
    PGresult *res = PQexecParams(conn,
                                 "SELECT (SELECT count(*) FROM records_us_east WHERE key = $1) + "
                                 "(SELECT count(*) FROM records_eu_west WHERE key = $1) + "
                                 "(SELECT count(*) FROM records_asia_pac WHERE key = $1)",
                                 1, NULL, params, NULL, NULL, 0);
    int n = PQresultStatus(res) == PGRES_TUPLES_OK ? atoi(PQgetvalue(res, 0, 0)) : -1;
    PQclear(res);
    PQfinish(conn);
    return n;
}

/* Waits until region i's merged value of key is value; false after timeout_ms. */
static bool wait_value(int i, const char *key, const char *value, long timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    do {
        char *got = region_value(i, key);
        bool same = got != NULL && strcmp(got, value) == 0;
        free(got);
        if (same)
            return true;
        usleep(20 * 1000);
    } while (tk_now_ms() < deadline);
    return false;
}

/* POST /write of key=value in region (X-Region), with an optional "?consistency=strong". */
static void write_in(const char *region, const char *key, const char *value, bool strong,
                     struct tk_response *res)
{
    char header[64], *body = tk_write_body(key, value);
    snprintf(header, sizeof header, "X-Region: %s", region);
    struct tk_request req = {"POST", strong ? "/write?consistency=strong" : "/write", body, 0,
                             header};
    tk_http(SERVER_PORT, &req, res);
    free(body);
}

static void read_in(const char *region, const char *path, struct tk_response *res)
{
    char header[64];
    snprintf(header, sizeof header, "X-Region: %s", region);
    struct tk_request req = {"GET", path, NULL, 0, header};
    tk_http(SERVER_PORT, &req, res);
}

static const char *member_string(json_t *obj, const char *name)
{
    const char *s = json_string_value(json_object_get(obj, name));
    ck_assert_msg(s != NULL, "member %s is not a string", name);
    return s;
}

static bool wait_all_healthy(long timeout_ms);

static void start_with(const char *const *more)
{
    ck_assert_msg(contract_start_server(&server, more), "server did not start");
}

static void start_default(void)
{
    start_with(NULL);
    ck_assert_msg(wait_all_healthy(15000), "a region is not healthy");
}

static void stop_server(void)
{
    tk_server_stop(&server, SIGKILL, 5000);
    for (int i = 0; i < REGIONS; i++) {
        tk_pg_restart(&pg[i]); /* in case a test stopped one and then failed */
        if (redis_stopped[i])
            redis_stopped[i] = !tk_redis_restart(&redis[i]);
    }
}

/* Waits until /health says every region is healthy again. */
static bool wait_all_healthy(long timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    do {
        struct tk_response res;
        tk_get(SERVER_PORT, "/health", &res);
        bool all = res.json != NULL &&
                   json_integer_value(json_object_get(res.json, "healthy_regions")) == REGIONS;
        tk_response_free(&res);
        if (all)
            return true;
        usleep(50 * 1000);
    } while (tk_now_ms() < deadline);
    return false;
}

/* ---- replication ---- */

START_TEST(a_write_in_any_region_reaches_every_region)
{
    start_default();
    for (int w = 0; w < REGIONS; w++) {
        char key[64], value[64];
        snprintf(key, sizeof key, "reach-%s-%lld", names[w], tk_now_ms());
        snprintf(value, sizeof value, "from %s", names[w]);
        struct tk_response res;
        write_in(names[w], key, value, false, &res);
        ck_assert_int_eq(res.status, 200);
        ck_assert_str_eq(member_string(res.json, "primary_region"),
                         w == 0 ? "US-EAST" : w == 1 ? "EU-WEST" : "ASIA-PAC");
        /* Honest: nothing can have crossed a 40 ms link yet. */
        ck_assert_int_eq(json_array_size(json_object_get(res.json, "replicated_to")), 0);
        tk_response_free(&res);
        for (int r = 0; r < REGIONS; r++)
            ck_assert_msg(wait_value(r, key, value, 5000), "%s's write did not reach %s in 5 s",
                          names[w], names[r]);
        /* ...and each region's clients read it, served locally. */
        for (int r = 0; r < REGIONS; r++) {
            char path[128];
            snprintf(path, sizeof path, "/read/%s", key);
            read_in(names[r], path, &res);
            ck_assert_int_eq(res.status, 200);
            ck_assert_str_eq(member_string(res.json, "value"), value);
            ck_assert_str_eq(member_string(res.json, "source"), names[r]);
            ck_assert_str_eq(member_string(res.json, "region"), names[r]);
            tk_response_free(&res);
        }
    }
}
END_TEST

START_TEST(conflicting_writes_in_two_regions_converge_everywhere)
{
    start_default();
    for (int round = 0; round < 3; round++) {
        char key[64], *bodies[2];
        snprintf(key, sizeof key, "conflict-%d-%lld", round, tk_now_ms());
        bodies[0] = tk_write_body(key, "written in us-east");
        bodies[1] = tk_write_body(key, "written in asia-pac");
        struct tk_request reqs[2] = {{"POST", "/write", bodies[0], 0, "X-Region: us-east"},
                                     {"POST", "/write", bodies[1], 0, "X-Region: asia-pac"}};
        struct tk_response out[2];
        tk_http_many(SERVER_PORT, reqs, out, 2, 10000); /* at once: neither saw the other */
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(out[i].status, 200);
            tk_response_free(&out[i]);
            free(bodies[i]);
        }
        /* Every region ends up with both rows and picks the same one. */
        long long deadline = tk_now_ms() + 5000;
        while (tk_now_ms() < deadline &&
               (region_rows(0, key) != 2 || region_rows(1, key) != 2 || region_rows(2, key) != 2))
            usleep(20 * 1000);
        char *winner = region_value(0, key);
        ck_assert(winner != NULL);
        for (int r = 0; r < REGIONS; r++) {
            ck_assert_int_eq(region_rows(r, key), 2);
            char *v = region_value(r, key);
            ck_assert_msg(v != NULL && strcmp(v, winner) == 0, "%s has '%s', us-east '%s'",
                          names[r], v ? v : "(none)", winner);
            free(v);
            char path[128];
            snprintf(path, sizeof path, "/read/%s", key);
            struct tk_response res;
            read_in(names[r], path, &res);
            ck_assert_str_eq(member_string(res.json, "value"), winner);
            tk_response_free(&res);
        }
        free(winner);
    }
}
END_TEST

START_TEST(a_write_after_reading_wins_even_from_a_clock_5_s_behind)
{
    start_with((const char *const[]){"REGION_CLOCK_OFFSET_MS=eu-west=-5000", NULL});
    char key[64];
    snprintf(key, sizeof key, "skew-%lld", tk_now_ms());
    struct tk_response res;
    write_in("us-east", key, "first, in us-east", false, &res);
    ck_assert_int_eq(res.status, 200);
    unsigned long long first = strtoull(member_string(res.json, "hlc"), NULL, 10);
    tk_response_free(&res);
    ck_assert(wait_value(1, key, "first, in us-east", 5000)); /* eu-west has seen it */
    write_in("eu-west", key, "second, in eu-west", false, &res);
    ck_assert_int_eq(res.status, 200);
    unsigned long long second = strtoull(member_string(res.json, "hlc"), NULL, 10);
    tk_response_free(&res);
    /* eu-west's wall clock says 5 s earlier; its stamp is still above the value it replaced */
    ck_assert_msg(second > first, "stamp %llu after %llu", second, first);
    for (int r = 0; r < REGIONS; r++)
        ck_assert_msg(wait_value(r, key, "second, in eu-west", 5000),
                      "%s did not settle on the later write", names[r]);
}
END_TEST

START_TEST(a_strong_write_is_in_every_region_on_return)
{
    start_default();
    for (int w = 0; w < REGIONS; w++) {
        char key[64];
        snprintf(key, sizeof key, "strong-%s-%lld", names[w], tk_now_ms());
        struct tk_response res;
        write_in(names[w], key, "everywhere", true, &res);
        ck_assert_int_eq(res.status, 200);
        ck_assert_str_eq(member_string(res.json, "consistency"), "strong");
        ck_assert_msg(json_is_false(json_object_get(res.json, "strong_timed_out")), "%s",
                      res.body);
        ck_assert_int_eq(json_array_size(json_object_get(res.json, "replicated_to")), 2);
        ck_assert(strstr(member_string(res.json, "message"), "and replicated to 2 regions"));
        /* It waited for the slowest link's round trip, at least. */
        double ms = json_number_value(json_object_get(res.json, "latency_ms"));
        ck_assert_msg(ms >= (w == 1 ? 160 : 180), "strong write in %s took %.1f ms", names[w],
                      ms);
        tk_response_free(&res);
        for (int r = 0; r < REGIONS; r++) { /* at once, no waiting */
            char *v = region_value(r, key);
            ck_assert_msg(v != NULL && strcmp(v, "everywhere") == 0, "not in %s on return",
                          names[r]);
            free(v);
        }
    }
}
END_TEST

/* ---- each region's cache ---- */

/* Reads key in region until its value is `value` and its cache_hit is `hit` (or either when
 * hit < 0); false after timeout_ms. */
static bool wait_read(const char *region, const char *key, const char *value, int hit,
                      long timeout_ms)
{
    char path[128];
    snprintf(path, sizeof path, "/read/%s", key);
    long long deadline = tk_now_ms() + timeout_ms;
    do {
        struct tk_response res;
        read_in(region, path, &res);
        const char *got = res.json ? json_string_value(json_object_get(res.json, "value")) : NULL;
        json_t *cache_hit = res.json ? json_object_get(res.json, "cache_hit") : NULL;
        bool ok = res.status == 200 && got != NULL && strcmp(got, value) == 0 &&
                  json_is_boolean(cache_hit) && (hit < 0 || json_is_true(cache_hit) == (hit == 1));
        if (ok)
            ck_assert_str_eq(member_string(res.json, "source"), region);
        tk_response_free(&res);
        if (ok)
            return true;
        usleep(10 * 1000);
    } while (tk_now_ms() < deadline);
    return false;
}

START_TEST(a_replicated_write_replaces_the_value_cached_in_every_other_region)
{
    start_default();
    char key[64];
    snprintf(key, sizeof key, "cached-%lld", tk_now_ms());
    struct tk_response res;
    write_in("us-east", key, "old", false, &res);
    ck_assert_int_eq(res.status, 200);
    tk_response_free(&res);
    /* eu-west and asia-pac have the row, read it, and then serve it from their cache */
    for (int r = 1; r < REGIONS; r++) {
        ck_assert(wait_value(r, key, "old", 5000));
        ck_assert_msg(wait_read(names[r], key, "old", 1, 5000), "%s never cached it", names[r]);
    }
    write_in("us-east", key, "new", false, &res);
    ck_assert_int_eq(res.status, 200);
    tk_response_free(&res);
    for (int r = 1; r < REGIONS; r++) {
        /* once the region's tables have it, its cache follows within the notification's
         * delivery, given 2 s on a loaded machine (the TTL is 300 s: without the
         * invalidation, "old" would stay) */
        ck_assert(wait_value(r, key, "new", 5000));
        ck_assert_msg(wait_read(names[r], key, "new", -1, 2000),
                      "%s still serves the old value from its cache", names[r]);
        ck_assert_msg(wait_read(names[r], key, "new", 1, 5000), "%s never cached the new value",
                      names[r]);
    }
    /* the invalidations were replication's, counted per region */
    tk_get(SERVER_PORT, "/stats", &res);
    ck_assert_int_eq(res.status, 200);
    json_t *cache = json_object_get(json_object_get(json_object_get(res.json, "regions"),
                                                    "eu-west"),
                                    "cache");
    ck_assert(json_is_true(json_object_get(cache, "trusted")));
    ck_assert(json_integer_value(json_object_get(cache, "replicated_invalidations")) >= 1);
    ck_assert(json_integer_value(json_object_get(cache, "hits")) >= 2);
    tk_response_free(&res);
}
END_TEST

START_TEST(a_local_write_is_read_back_at_once_though_cached_before)
{
    start_default();
    char key[64];
    snprintf(key, sizeof key, "own-%lld", tk_now_ms());
    struct tk_response res;
    write_in("asia-pac", key, "first", false, &res);
    tk_response_free(&res);
    ck_assert(wait_read("asia-pac", key, "first", 1, 5000));
    for (int i = 0; i < 20; i++) {
        char value[32];
        snprintf(value, sizeof value, "v%d", i);
        write_in("asia-pac", key, value, false, &res);
        ck_assert_int_eq(res.status, 200);
        tk_response_free(&res);
        ck_assert_msg(wait_read("asia-pac", key, value, -1, 0), "write %d not read back", i);
    }
}
END_TEST

START_TEST(a_region_whose_redis_is_down_reads_from_its_postgresql)
{
    start_default();
    char key[64];
    snprintf(key, sizeof key, "no-redis-%lld", tk_now_ms());
    struct tk_response res;
    write_in("eu-west", key, "before", false, &res);
    tk_response_free(&res);
    ck_assert(wait_read("eu-west", key, "before", 1, 5000));
    redis_stopped[1] = tk_redis_stop(&redis[1]);
    ck_assert(redis_stopped[1]);
    /* served by eu-west's PostgreSQL, not its cache, and written too */
    write_in("eu-west", key, "during", false, &res);
    ck_assert_int_eq(res.status, 200);
    tk_response_free(&res);
    ck_assert_msg(wait_read("eu-west", key, "during", 0, 2000), "eu-west's reads failed");
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(member_string(res.json, "status"), "degraded");
    ck_assert(json_is_false(json_object_get(json_object_get(res.json, "caches"), "eu-west")));
    ck_assert(json_is_true(json_object_get(json_object_get(res.json, "caches"), "us-east")));
    tk_response_free(&res);
    /* replicated there meanwhile: eu-west's tables have it */
    write_in("us-east", key, "from us-east", false, &res);
    tk_response_free(&res);
    ck_assert(wait_value(1, key, "from us-east", 5000));
    ck_assert(wait_read("eu-west", key, "from us-east", 0, 500));
    /* back: cached again, and never the value from before the outage */
    redis_stopped[1] = !tk_redis_restart(&redis[1]);
    ck_assert(!redis_stopped[1]);
    ck_assert_msg(wait_read("eu-west", key, "from us-east", 1, 10000),
                  "eu-west's cache is not used again");
}
END_TEST

/* ---- failover ---- */

#define BATCH 10

/* A batch of writes from eu-west's clients, at once; remembers the acknowledged ones. */
static void write_batch(int round, char acked[][64], int *n_acked, int *failed)
{
    char *bodies[BATCH];
    struct tk_request reqs[BATCH];
    struct tk_response out[BATCH];
    char keys[BATCH][64];
    for (int i = 0; i < BATCH; i++) {
        snprintf(keys[i], sizeof keys[i], "outage-%d-%d", round, i);
        bodies[i] = tk_write_body(keys[i], keys[i]);
        reqs[i] = (struct tk_request){"POST", "/write", bodies[i], 0, "X-Region: eu-west"};
    }
    tk_http_many(SERVER_PORT, reqs, out, BATCH, 20000);
    for (int i = 0; i < BATCH; i++) {
        if (out[i].status == 200)
            memcpy(acked[(*n_acked)++], keys[i], sizeof keys[i]);
        else
            (*failed)++;
        tk_response_free(&out[i]);
        free(bodies[i]);
    }
}

START_TEST(a_stopped_region_is_served_elsewhere_and_loses_no_acknowledged_write)
{
    start_default();
    static char acked[40 * BATCH][64];
    int n = 0, failed = 0, round = 0;
    for (; round < 5; round++)
        write_batch(round, acked, &n, &failed);
    ck_assert_int_eq(failed, 0);
    ck_assert(tk_pg_stop(&pg[1])); /* eu-west's PostgreSQL goes away */
    long long deadline = tk_now_ms() + 10000;
    const char *source = NULL;
    struct tk_response res;
    while (tk_now_ms() < deadline) { /* within a bound, eu-west's clients are served elsewhere */
        write_batch(round++, acked, &n, &failed);
        read_in("eu-west", "/read/outage-0-0", &res);
        source = res.status == 200 ? json_string_value(json_object_get(res.json, "source")) : NULL;
        bool elsewhere = source != NULL && strcmp(source, "eu-west") != 0;
        if (elsewhere) {
            /* the nearest healthy region: us-east (40 ms) before asia-pac (80 ms) */
            ck_assert_str_eq(source, "us-east");
            ck_assert_str_eq(member_string(res.json, "value"), "outage-0-0");
        }
        tk_response_free(&res);
        if (elsewhere)
            break;
    }
    ck_assert_msg(tk_now_ms() < deadline, "eu-west's reads were not served elsewhere in 10 s");
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(member_string(res.json, "status"), "degraded");
    ck_assert(json_is_false(json_object_get(json_object_get(res.json, "regions"), "eu-west")));
    tk_response_free(&res);
    int failed_before = failed;
    for (int i = 0; i < 5; i++)
        write_batch(round++, acked, &n, &failed);
    ck_assert_int_eq(failed, failed_before); /* once switched, every write is taken elsewhere */
    ck_assert(tk_pg_restart(&pg[1]));
    ck_assert(wait_all_healthy(15000));
    for (int i = 0; i < 5; i++)
        write_batch(round++, acked, &n, &failed);
    /* Every acknowledged write, in every region's tables, within a bound. */
    for (int r = 0; r < REGIONS; r++)
        for (int i = 0; i < n; i++)
            ck_assert_msg(wait_value(r, acked[i], acked[i], 15000), "%s lost %s (of %d acked)",
                          names[r], acked[i], n);
}
END_TEST

/* ---- requests ---- */

/* The shared write_and_read_shapes, with layer 9's write message ("Written to US-EAST", the
 * contract's l9 row) in place of "Data written successfully". */
START_TEST(write_and_read_have_the_contract_shape_with_region_extras)
{
    start_default();
    struct tk_response res;
    tk_post(SERVER_PORT, "/write", "{\"key\":\"shape:1\",\"value\":\"hello\",\"extra\":1}", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.content_type, "application/json");
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(member_string(res.json, "key"), "shape:1");
    ck_assert_str_eq(member_string(res.json, "message"), "Written to US-EAST");
    ck_assert_str_eq(member_string(res.json, "primary_region"), "US-EAST");
    ck_assert(json_is_array(json_object_get(res.json, "replicated_to")));
    ck_assert_str_eq(member_string(res.json, "region"), "us-east");
    tk_response_free(&res);

    tk_get(SERVER_PORT, "/read/shape:1", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.content_type, "application/json");
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(member_string(res.json, "key"), "shape:1");
    ck_assert_str_eq(member_string(res.json, "value"), "hello");
    ck_assert(strlen(member_string(res.json, "created_at")) == 27);
    ck_assert(strlen(member_string(res.json, "updated_at")) == 27);
    ck_assert(json_is_null(json_object_get(res.json, "message")));
    ck_assert_str_eq(member_string(res.json, "source"), "us-east");
    ck_assert_str_eq(member_string(res.json, "region"), "us-east");
    ck_assert(json_is_number(json_object_get(res.json, "latency_ms")));
    tk_response_free(&res);
}
END_TEST

START_TEST(an_unknown_region_is_a_422_naming_the_valid_ones)
{
    start_default();
    struct tk_response res;
    read_in("mars", "/read/x", &res);
    ck_assert_int_eq(res.status, 422);
    ck_assert(strstr(res.body, "x-region") && strstr(res.body, "us-east, eu-west, asia-pac"));
    tk_response_free(&res);
    write_in("mars", "x", "y", false, &res);
    ck_assert_int_eq(res.status, 422);
    tk_response_free(&res);
    tk_post(SERVER_PORT, "/write", "{\"key\":\"x\",\"value\":\"y\",\"region\":\"moon\"}", &res);
    ck_assert_int_eq(res.status, 422);
    ck_assert(strstr(res.body, "\"region\"") && strstr(res.body, "asia-pac"));
    tk_response_free(&res);
    /* the body's region counts when there is no header */
    tk_post(SERVER_PORT, "/write", "{\"key\":\"x\",\"value\":\"y\",\"region\":\"asia-pac\"}", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(member_string(res.json, "primary_region"), "ASIA-PAC");
    tk_response_free(&res);
}
END_TEST

START_TEST(max_staleness_is_honoured)
{
    start_default();
    struct tk_response res;
    /* within a bound, the heartbeats have been measured */
    long long deadline = tk_now_ms() + 5000;
    do {
        read_in("asia-pac", "/read/x?max_staleness_ms=60000", &res);
        bool ok = res.status == 200;
        if (ok)
            ck_assert(json_is_number(json_object_get(res.json, "staleness_ms")));
        tk_response_free(&res);
        if (ok)
            break;
        usleep(50 * 1000);
    } while (tk_now_ms() < deadline);
    ck_assert(tk_now_ms() < deadline);
    /* 0 ms: no region is that fresh (its links are 80-90 ms long) */
    read_in("asia-pac", "/read/x?max_staleness_ms=0", &res);
    ck_assert_int_eq(res.status, 503);
    ck_assert(json_number_value(json_object_get(res.json, "staleness_ms")) > 0);
    tk_response_free(&res);
    read_in("asia-pac", "/read/x?max_staleness_ms=soon", &res);
    ck_assert_int_eq(res.status, 422);
    tk_response_free(&res);
}
END_TEST

/* ---- the stack ---- */

static bool start_stack(void)
{
    char extra[] = "-c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10 "
                   "-c wal_retrieve_retry_interval=500ms -c max_slot_wal_keep_size=1GB";
    size_t dn = 0, ln = 0;
    for (int i = 0; i < REGIONS; i++) {
        if (!tk_pg_start(&pg[i], PG_PORT + i, extra))
            return false;
        dn += (size_t)snprintf(dbs_env + dn, sizeof dbs_env - dn, "%s%s",
                               i ? "," : "REGION_DATABASE_URLS=", pg[i].url);
    }
    for (int i = 0; i < REGIONS * (REGIONS - 1); i++)
        ln += (size_t)snprintf(links_env + ln, sizeof links_env - ln,
                               "%spostgresql://layers@127.0.0.1:%d/layers",
                               i ? "," : "REGION_LINK_URLS=", PG_PORT + REGIONS + i);
    size_t rn = 0;
    for (int i = 0; i < REGIONS; i++) {
        if (!tk_redis_start(&redis[i], REDIS_PORT + i))
            return false;
        rn += (size_t)snprintf(redis_env + rn, sizeof redis_env - rn, "%s%s",
                               i ? "," : "REGION_REDIS_URLS=", redis[i].url);
    }
    putenv(dbs_env);
    putenv(links_env);
    putenv(redis_env);
    static const char *const links_settings[] = {"DELAY_PROXY=" DELAY_PROXY_BIN, NULL};
    if (!tk_server_spawn(&links, LINKS_BIN, LINKS_PORT, links_settings))
        return false;
    if (system(LAYERS_SOURCE_DIR "/l9-global-distributed/replication.sh") != 0)
        return false;
    /* Subscriptions start (and copy their empty tables) in the background: wait until a row
     * written in each region has reached every other. */
    for (int w = 0; w < REGIONS; w++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "INSERT INTO records_%s (key, value, hlc, region) VALUES ('warm-up-%s', 'ok', 1, "
                 "'%s')",
                 suffixes[w], suffixes[w], names[w]);
        if (!tk_pg_exec(&pg[w], "layers", sql))
            return false;
    }
    for (int w = 0; w < REGIONS; w++) {
        char key[64];
        snprintf(key, sizeof key, "warm-up-%s", suffixes[w]);
        for (int r = 0; r < REGIONS; r++) {
            long long deadline = tk_now_ms() + 60000;
            char *v = NULL;
            while ((v = region_value(r, key)) == NULL && tk_now_ms() < deadline)
                usleep(100 * 1000);
            if (v == NULL) {
                fprintf(stderr, "check_l9: replication %s -> %s did not start\n", names[w],
                        names[r]);
                return false;
            }
            free(v);
        }
    }
    return true;
}

int main(void)
{
    bool ok = start_stack();
    int rc = 1;
    if (ok) {
        static const char *env[] = {dbs_env, links_env, redis_env,
                                    "DB_POOL_ACQUIRE_TIMEOUT_MS=20000",
                                    NULL};
        struct contract_target target = {SERVER_BIN, "9-global-distributed", SERVER_PORT, &pg[0],
                                         env, false};
        /* Each test starts its server (one with a skewed clock). */
        TCase *own = check_tcase(
            "regions", NULL, stop_server, 180,
            (const TTest *const[]){
                a_write_in_any_region_reaches_every_region,
                conflicting_writes_in_two_regions_converge_everywhere,
                a_write_after_reading_wins_even_from_a_clock_5_s_behind,
                a_strong_write_is_in_every_region_on_return,
                a_stopped_region_is_served_elsewhere_and_loses_no_acknowledged_write,
                an_unknown_region_is_a_422_naming_the_valid_ones, max_staleness_is_honoured,
                a_replicated_write_replaces_the_value_cached_in_every_other_region,
                a_local_write_is_read_back_at_once_though_cached_before,
                a_region_whose_redis_is_down_reads_from_its_postgresql,
                write_and_read_have_the_contract_shape_with_region_extras, NULL});
        /* Layer 9's write message is the contract's l9 one: its version of this case is above. */
        static const char *const contract_skip[] = {"write_and_read_shapes", NULL};
        /* They lock or stop `records` in "the" database and expect the layer to fail: layer 9
         * has no `records` table, and serves from another region when one stops (tested in
         * "regions"). */
        static const char *const resilience_skip[] = {
            "client_disconnects_mid_query", "database_stops_and_comes_back",
            "graceful_shutdown_finishes_in_flight_requests",
            "a_hung_database_shows_in_health_at_once", NULL};
        rc = layer_suite_run_without(&target, own, contract_skip, resilience_skip);
    }
    tk_server_stop(&links, SIGTERM, 5000);
    for (int i = 1; i < REGIONS; i++)
        tk_pg_destroy(&pg[i]);
    for (int i = 0; i < REGIONS; i++)
        tk_redis_destroy(&redis[i]);
    if (!ok)
        tk_pg_destroy(&pg[0]);
    return rc;
}
