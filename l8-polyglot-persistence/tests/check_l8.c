/*
 * Layer 8 black-box tests: the shared contract and resilience cases against
 * l8-polyglot-persistence (its common /write and /read/{key} live in MongoDB), then the layer's
 * own promises, with a real PostgreSQL, a real Redis and the stand-in MongoDB:
 * - the shape of every l8 route's reply;
 * - invalidation: read, write, read again gives the new data, for both stores;
 * - concurrent first writes of one document key make one document (counted with libmongoc);
 * - money: NaN, infinity, strings, three decimals, too large, not positive -> 422; exact round
 *   trips of valid amounts;
 * - each store stopped and started again under a running server: only its own routes fail,
 *   and they recover by themselves;
 * - layer 8's versions of the shared cases that hold PostgreSQL's `records` table to make
 *   requests slow (here the slow store is MongoDB: the MONGO_DELAY_MS test hook).
 * Nothing here needs a duplicate-key error or the stand-in's gaps: the same tests pass on a
 * real MongoDB.
 */
#include "layer_suite.h"
#include "check_run.h"

#include <mongoc/mongoc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_PORT     23800
#define REDIS_PORT  23850
#define MONGO_PORT  23870
#define SERVER_PORT 23900

static struct tk_pg pg;
static struct tk_redis redis;
static struct tk_mongo mongo;
static struct tk_server server;

static void start_with(const char *const *env)
{
    ck_assert_msg(contract_start_server(&server, env), "server did not start");
}

static void empty_redis(void)
{
    ck_assert(tk_redis_flush(&redis));
}

static void stop_server(void)
{
    tk_server_stop(&server, SIGKILL, 5000);
    /* in case a test stopped one and then failed */
    tk_redis_restart(&redis);
    tk_mongo_restart(&mongo);
    tk_pg_restart(&pg);
}

static const char *member_string(json_t *obj, const char *name)
{
    const char *s = json_string_value(json_object_get(obj, name));
    ck_assert_msg(s != NULL, "member %s is not a string", name);
    return s;
}

static void post_expect(const char *path, const char *body, long status, struct tk_response *res)
{
    tk_post(SERVER_PORT, path, body, res);
    ck_assert_msg(res->status == status, "POST %s %s: %ld %s", path, body, res->status,
                  res->body);
}

static void get_expect(const char *path, long status, struct tk_response *res)
{
    tk_get(SERVER_PORT, path, res);
    ck_assert_msg(res->status == status, "GET %s: %ld %s", path, res->status, res->body);
}

static void write_transaction(const char *user, const char *amount, const char *type)
{
    char body[256];
    snprintf(body, sizeof body, "{\"user_id\":\"%s\",\"amount\":%s,\"transaction_type\":\"%s\"}",
             user, amount, type);
    struct tk_response res;
    post_expect("/write/transaction", body, 200, &res);
    tk_response_free(&res);
}

static void write_doc(const char *key, const char *data)
{
    char body[512];
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"data\":%s}", key, data);
    struct tk_response res;
    post_expect("/write/document", body, 200, &res);
    tk_response_free(&res);
}

/* ---- shapes ---- */

START_TEST(every_route_has_the_contract_shape)
{
    start_with(NULL);
    struct tk_response res;
    post_expect("/write/transaction",
                "{\"user_id\":\"shape\",\"amount\":12.30,\"transaction_type\":\"deposit\"}", 200,
                &res);
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert(json_is_integer(json_object_get(res.json, "transaction_id")));
    ck_assert_str_eq(member_string(res.json, "message"), "Transaction written to PostgreSQL");
    ck_assert_str_eq(member_string(res.json, "stored_in"), "PostgreSQL");
    ck_assert_msg(strstr(res.body, "\"amount\":12.3,") != NULL, "amount: %s", res.body);
    tk_response_free(&res);

    get_expect("/read/transaction/shape", 200, &res);
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(member_string(res.json, "key"), "shape");
    ck_assert_str_eq(member_string(res.json, "source"), "postgres");
    ck_assert(json_is_null(json_object_get(res.json, "message")));
    json_t *first = json_array_get(json_object_get(res.json, "value"), 0);
    ck_assert(json_is_integer(json_object_get(first, "id")));
    ck_assert_str_eq(member_string(first, "user_id"), "shape");
    ck_assert(json_is_number(json_object_get(first, "amount")));
    ck_assert_str_eq(member_string(first, "transaction_type"), "deposit");
    ck_assert_int_eq(strlen(member_string(first, "created_at")), 27);
    tk_response_free(&res);

    get_expect("/read/transaction/nobody", 200, &res);
    ck_assert(json_is_false(json_object_get(res.json, "success")));
    ck_assert_str_eq(member_string(res.json, "message"), "No transactions found");
    tk_response_free(&res);

    post_expect("/write/document", "{\"key\":\"shape:doc\",\"data\":{\"a\":\"b\",\"n\":[1,2]}}",
                200, &res);
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(member_string(res.json, "key"), "shape:doc");
    ck_assert_str_eq(member_string(json_object_get(res.json, "data"), "a"), "b");
    ck_assert(json_is_false(json_object_get(res.json, "from_cache")));
    ck_assert_str_eq(member_string(res.json, "stored_in"), "MongoDB");
    tk_response_free(&res);

    get_expect("/read/document/shape:doc", 200, &res);
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(member_string(json_object_get(res.json, "data"), "a"), "b");
    ck_assert_str_eq(member_string(res.json, "stored_in"), "MongoDB");
    ck_assert_int_eq(strlen(member_string(res.json, "created_at")), 27);
    tk_response_free(&res);
    get_expect("/read/document/shape:doc", 200, &res);
    ck_assert(json_is_true(json_object_get(res.json, "from_cache")));
    ck_assert_str_eq(member_string(res.json, "stored_in"), "Redis (cache)");
    tk_response_free(&res);

    get_expect("/read/document/shape:none", 200, &res);
    ck_assert(json_is_false(json_object_get(res.json, "success")));
    ck_assert(json_is_null(json_object_get(res.json, "data")));
    ck_assert_str_eq(member_string(res.json, "message"), "Document not found");
    tk_response_free(&res);

    write_doc("user:shape", "{\"name\":\"Ada\"}");
    write_transaction("shape", "7.70", "purchase");
    get_expect("/users/shape/summary", 200, &res);
    ck_assert_str_eq(member_string(json_object_get(res.json, "profile"), "name"), "Ada");
    json_t *totals = json_object_get(res.json, "transactions");
    ck_assert_int_eq(json_integer_value(json_object_get(totals, "count")), 2);
    ck_assert_msg(strstr(res.body, "\"balance\":4.6") != NULL, "balance: %s", res.body);
    ck_assert(json_is_number(json_object_get(json_object_get(res.json, "timing"), "total_ms")));
    tk_response_free(&res);

    get_expect("/health", 200, &res);
    ck_assert_str_eq(member_string(res.json, "status"), "healthy");
    ck_assert_int_eq(json_array_size(json_object_get(res.json, "databases")), 3);
    ck_assert_str_eq(member_string(res.json, "postgresql"), "healthy");
    ck_assert_str_eq(member_string(res.json, "mongodb"), "healthy");
    ck_assert_str_eq(member_string(res.json, "redis"), "healthy");
    tk_response_free(&res);

    get_expect("/stats", 200, &res);
    ck_assert(json_is_integer(json_object_get(res.json, "postgres_pool_size")));
    ck_assert(json_is_integer(json_object_get(res.json, "mongodb_connections")));
    ck_assert_int_eq(json_integer_value(json_object_get(res.json, "mongodb_pool_size")), 4);
    ck_assert(json_is_integer(json_object_get(res.json, "mongodb_queue_depth")));
    ck_assert(json_integer_value(json_object_get(res.json, "cache_keys")) >= 2);
    ck_assert(json_integer_value(json_object_get(res.json, "total_transactions")) >= 2);
    ck_assert(json_integer_value(json_object_get(res.json, "total_documents")) >= 2);
    json_t *doc_counts = json_object_get(json_object_get(res.json, "cache_by_route"), "document");
    ck_assert_int_eq(json_integer_value(json_object_get(doc_counts, "hits")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(doc_counts, "misses")), 2);
    tk_response_free(&res);
}
END_TEST

/* ---- invalidation ---- */

START_TEST(a_write_invalidates_the_cached_copy_in_both_stores)
{
    start_with(NULL);
    struct tk_response res;
    write_transaction("inv", "1.00", "deposit");
    get_expect("/read/transaction/inv", 200, &res); /* miss, fills */
    tk_response_free(&res);
    get_expect("/read/transaction/inv", 200, &res);
    ck_assert_str_eq(member_string(res.json, "source"), "cache");
    ck_assert_int_eq(json_array_size(json_object_get(res.json, "value")), 1);
    tk_response_free(&res);
    write_transaction("inv", "2.00", "refund");
    get_expect("/read/transaction/inv", 200, &res);
    ck_assert_int_eq(json_array_size(json_object_get(res.json, "value")), 2);
    ck_assert_str_eq(member_string(res.json, "source"), "postgres");
    tk_response_free(&res);

    write_doc("inv:doc", "{\"v\":\"one\"}");
    get_expect("/read/document/inv:doc", 200, &res);
    tk_response_free(&res);
    get_expect("/read/document/inv:doc", 200, &res);
    ck_assert(json_is_true(json_object_get(res.json, "from_cache")));
    tk_response_free(&res);
    write_doc("inv:doc", "{\"v\":\"two\"}");
    get_expect("/read/document/inv:doc", 200, &res);
    ck_assert_str_eq(member_string(json_object_get(res.json, "data"), "v"), "two");
    ck_assert(json_is_false(json_object_get(res.json, "from_cache")));
    tk_response_free(&res);
}
END_TEST

/* ---- one document per key ---- */

static int64_t documents_with_key(const char *key)
{
    char url[96];
    snprintf(url, sizeof url, "%s?serverSelectionTimeoutMS=5000", mongo.url);
    mongoc_client_t *client = mongoc_client_new(url);
    ck_assert(client != NULL);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "layers", "documents");
    bson_t *filter = BCON_NEW("key", BCON_UTF8(key));
    bson_error_t error;
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &error);
    ck_assert_msg(n >= 0, "count: %s", error.message);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return n;
}

START_TEST(concurrent_first_writes_make_one_document)
{
    start_with(NULL);
    enum { N = 24 };
    struct tk_request reqs[N];
    struct tk_response res[N];
    char bodies[N][96];
    for (int i = 0; i < N; i++) {
        snprintf(bodies[i], sizeof bodies[i], "{\"key\":\"race:doc\",\"data\":{\"writer\":%d}}", i);
        reqs[i] = (struct tk_request){"POST", "/write/document", bodies[i], 0, NULL};
    }
    tk_http_many(SERVER_PORT, reqs, res, N, 30000);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(res[i].status == 200, "write %d: %ld %s", i, res[i].status, res[i].body);
        tk_response_free(&res[i]);
    }
    ck_assert_int_eq(documents_with_key("race:doc"), 1);
}
END_TEST

/* ---- money ---- */

static void expect_amount_refused(const char *amount, const char *type)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"user_id\":\"money\",\"amount\":%s,\"transaction_type\":\"deposit\"}", amount);
    struct tk_response res;
    post_expect("/write/transaction", body, 422, &res);
    json_t *entry = json_array_get(json_object_get(res.json, "detail"), 0);
    ck_assert_msg(strcmp(member_string(entry, "type"), type) == 0, "%s: %s", amount, res.body);
    tk_response_free(&res);
}

START_TEST(amounts_are_exact_decimals_or_422)
{
    start_with(NULL);
    expect_amount_refused("NaN", "json_invalid");
    expect_amount_refused("Infinity", "json_invalid");
    expect_amount_refused("-Infinity", "json_invalid");
    expect_amount_refused("1e400", "json_invalid");
    expect_amount_refused("\"12.50\"", "decimal_type");
    expect_amount_refused("true", "decimal_type");
    expect_amount_refused("null", "decimal_type");
    expect_amount_refused("1.005", "decimal_max_places");
    expect_amount_refused("0.001", "decimal_max_places");
    expect_amount_refused("10000000000", "decimal_whole_digits");
    expect_amount_refused("12345678901.5", "decimal_whole_digits");
    expect_amount_refused("0", "greater_than");
    expect_amount_refused("-5.00", "greater_than");
    struct tk_response res;
    post_expect("/write/transaction", "{\"user_id\":\"money\",\"transaction_type\":\"loan\"}", 422,
                &res);
    ck_assert_int_eq(json_array_size(json_object_get(res.json, "detail")), 2); /* both named */
    tk_response_free(&res);

    /* The largest amount, a tenth and a cent come back exactly (no 0.1 + binary noise). */
    write_transaction("money", "9999999999.99", "deposit");
    write_transaction("money", "0.1", "deposit");
    write_transaction("money", "0.01", "withdrawal");
    get_expect("/read/transaction/money", 200, &res);
    ck_assert_msg(strstr(res.body, "\"amount\":9999999999.99,") != NULL, "%s", res.body);
    ck_assert_msg(strstr(res.body, "\"amount\":0.1,") != NULL, "%s", res.body);
    ck_assert_msg(strstr(res.body, "\"amount\":0.01,") != NULL, "%s", res.body);
    tk_response_free(&res);
    PGconn *conn = tk_pg_connect(&pg, "layers");
    ck_assert(conn != NULL);
    PGresult *sum = PQexec(conn, "SELECT sum(amount)::text FROM transactions WHERE user_id = "
                                 "'money'");
    ck_assert_str_eq(PQgetvalue(sum, 0, 0), "10000000000.10");
    PQclear(sum);
    PQfinish(conn);
}
END_TEST

/* ---- each store stopped and started again under a running server ---- */

static void expect_detail(const char *method, const char *path, const char *body,
                          const char *detail)
{
    struct tk_response res;
    if (strcmp(method, "GET") == 0)
        tk_get(SERVER_PORT, path, &res);
    else
        tk_post(SERVER_PORT, path, body, &res);
    ck_assert_msg(res.status == 503, "%s %s: %ld %s", method, path, res.status, res.body);
    ck_assert_str_eq(member_string(res.json, "detail"), detail);
    ck_assert_msg(res.seconds < 6.0, "503 took %.1f s", res.seconds);
    tk_response_free(&res);
}

static void expect_health(long status, const char *store, const char *state)
{
    struct tk_response res;
    get_expect("/health", status, &res);
    ck_assert_str_eq(member_string(res.json, store), state);
    tk_response_free(&res);
}

START_TEST(mongodb_down_documents_fail_transactions_serve)
{
    const char *env[] = {"MONGO_TIMEOUT_MS=1000", NULL};
    start_with(env);
    struct tk_response res;
    write_transaction("m-out", "3.00", "deposit");
    ck_assert(tk_mongo_stop(&mongo));
    expect_detail("GET", "/read/document/m-out", NULL, "Document store unavailable");
    expect_detail("POST", "/write/document", "{\"key\":\"m-out\",\"data\":{}}",
                  "Document store unavailable");
    expect_detail("GET", "/read/m-out", NULL, "Document store unavailable");
    expect_detail("GET", "/users/m-out/summary", NULL, "Document store unavailable");
    write_transaction("m-out", "4.00", "deposit"); /* PostgreSQL's routes serve on */
    get_expect("/read/transaction/m-out", 200, &res);
    ck_assert_int_eq(json_array_size(json_object_get(res.json, "value")), 2);
    tk_response_free(&res);
    expect_health(503, "mongodb", "unavailable");
    expect_health(503, "postgresql", "healthy");

    ck_assert(tk_mongo_restart(&mongo));
    ck_assert_msg(tk_wait_status(SERVER_PORT, "/read/document/m-out", 200, 15000), "no recovery");
    write_doc("m-out", "{\"back\":true}");
    expect_health(200, "mongodb", "healthy");
}
END_TEST

START_TEST(postgresql_down_transactions_fail_documents_serve)
{
    start_with(NULL);
    struct tk_response res;
    write_doc("p-out", "{\"v\":1}");
    ck_assert(tk_pg_stop(&pg));
    expect_detail("POST", "/write/transaction",
                  "{\"user_id\":\"p-out\",\"amount\":1,\"transaction_type\":\"deposit\"}",
                  "Database unavailable");
    expect_detail("GET", "/read/transaction/p-out", NULL, "Database unavailable");
    write_doc("p-out", "{\"v\":2}"); /* MongoDB's routes serve on */
    get_expect("/read/document/p-out", 200, &res);
    ck_assert(json_number_value(json_object_get(json_object_get(res.json, "data"), "v")) == 2.0);
    tk_response_free(&res);
    expect_health(503, "postgresql", "unavailable");
    expect_health(503, "mongodb", "healthy");

    ck_assert(tk_pg_restart(&pg));
    ck_assert_msg(tk_wait_status(SERVER_PORT, "/read/transaction/p-out", 200, 15000),
                  "no recovery");
    write_transaction("p-out", "1.00", "deposit");
    expect_health(200, "postgresql", "healthy");
}
END_TEST

START_TEST(redis_down_both_stores_serve_without_cache)
{
    start_with(NULL);
    struct tk_response res;
    write_doc("r-out", "{\"v\":\"a\"}");
    write_transaction("r-out", "1.00", "deposit");
    ck_assert(tk_redis_stop(&redis));
    write_doc("r-out", "{\"v\":\"b\"}");
    write_transaction("r-out", "2.00", "deposit");
    get_expect("/read/document/r-out", 200, &res);
    ck_assert_str_eq(member_string(json_object_get(res.json, "data"), "v"), "b");
    ck_assert(json_is_false(json_object_get(res.json, "from_cache")));
    tk_response_free(&res);
    get_expect("/read/transaction/r-out", 200, &res);
    ck_assert_int_eq(json_array_size(json_object_get(res.json, "value")), 2);
    tk_response_free(&res);
    get_expect("/health", 200, &res);
    ck_assert_str_eq(member_string(res.json, "status"), "degraded");
    ck_assert_str_eq(member_string(res.json, "redis"), "unavailable");
    tk_response_free(&res);

    ck_assert(tk_redis_restart(&redis));
    long long deadline = tk_now_ms() + 10000;
    for (;;) { /* caching resumes without a restart */
        get_expect("/read/document/r-out", 200, &res);
        ck_assert_str_eq(member_string(json_object_get(res.json, "data"), "v"), "b");
        bool cached = json_is_true(json_object_get(res.json, "from_cache"));
        tk_response_free(&res);
        if (cached)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "caching never resumed");
        usleep(100000);
    }
}
END_TEST

/* ---- the shared cases that slow PostgreSQL's records, with a slow MongoDB instead ---- */

START_TEST(client_disconnects_mid_operation)
{
    const char *env[] = {"MONGO_DELAY_MS=400", NULL};
    start_with(env);
    const char get[] = "GET /read/gone HTTP/1.1\r\nHost: t\r\n\r\n";
    const char body[] = "{\"key\":\"gone\",\"value\":\"v\"}";
    char post[256];
    int len = snprintf(post, sizeof post,
                       "POST /write HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n%s",
                       sizeof body - 1, body);
    int a = tk_raw_send(SERVER_PORT, get, sizeof get - 1);
    int b = tk_raw_send(SERVER_PORT, post, (size_t)len);
    ck_assert(a >= 0 && b >= 0);
    ck_assert(tk_wait_in_flight(SERVER_PORT, 2, true, 10000));
    close(a);
    close(b);
    /* The server answered into closed sockets without crashing, and serves on. */
    ck_assert(tk_wait_status(SERVER_PORT, "/read/gone", 200, 5000));
    ck_assert_int_eq(kill(server.pid, 0), 0);
    ck_assert_int_eq(tk_in_flight(SERVER_PORT), 0);
}
END_TEST

START_TEST(graceful_shutdown_finishes_mongodb_operations)
{
    const char *env[] = {"MONGO_DELAY_MS=500", NULL};
    start_with(env);
    struct tk_batch *batch = tk_batch_start(SERVER_PORT, "/read/shutdown:", 8);
    ck_assert(tk_wait_in_flight(SERVER_PORT, 8, true, 10000));
    kill(server.pid, SIGTERM);
    struct tk_response *res = tk_batch_wait(batch);
    for (int i = 0; i < 8; i++)
        ck_assert_msg(res[i].status == 200, "in-flight request %d: %ld", i, res[i].status);
    tk_batch_free(batch);
    ck_assert_int_eq(tk_server_stop(&server, 0, 10000), 0); /* exit code 0 */
}
END_TEST

int main(void)
{
    if (!tk_pg_start(&pg, PG_PORT, NULL) || !tk_redis_start(&redis, REDIS_PORT) ||
        !tk_mongo_start(&mongo, MONGO_PORT))
        return 1;
    mongoc_init();
    static char redis_url[96], mongo_url[96];
    snprintf(redis_url, sizeof redis_url, "REDIS_URL=%s", redis.url);
    snprintf(mongo_url, sizeof mongo_url, "MONGODB_URL=%s", mongo.url);
    /* Long waits for a connection and for a MongoDB worker: 500 clients at once on a loaded
     * machine (the sanitizer build) must queue, not time out. The outage tests shorten them. */
    static const char *env[] = {redis_url, mongo_url, "DB_POOL_ACQUIRE_TIMEOUT_MS=20000",
                                "MONGO_TIMEOUT_MS=20000", NULL};
    struct contract_target target = {SERVER_BIN, "8-polyglot-persistence", SERVER_PORT, &pg, env,
                                     false};
    TCase *own = check_tcase(
        "polyglot", empty_redis, stop_server, 90,
        (const TTest *const[]){every_route_has_the_contract_shape,
                               a_write_invalidates_the_cached_copy_in_both_stores,
                               concurrent_first_writes_make_one_document,
                               amounts_are_exact_decimals_or_422,
                               mongodb_down_documents_fail_transactions_serve,
                               postgresql_down_transactions_fail_documents_serve,
                               redis_down_both_stores_serve_without_cache,
                               client_disconnects_mid_operation,
                               graceful_shutdown_finishes_mongodb_operations, NULL});
    /* These hold PostgreSQL's records table, which layer 8 does not read (its /read is in
     * MongoDB): their layer 8 versions are above. */
    static const char *const resilience_skip[] = {"client_disconnects_mid_query",
                                                  "database_stops_and_comes_back",
                                                  "graceful_shutdown_finishes_in_flight_requests",
                                                  NULL};
    int rc = layer_suite_run_without(&target, own, NULL, resilience_skip);
    tk_redis_destroy(&redis);
    tk_mongo_destroy(&mongo);
    mongoc_cleanup();
    return rc;
}
