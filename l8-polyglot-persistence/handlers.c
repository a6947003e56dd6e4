/*
 * Layer 8: polyglot persistence. The read and write paths, one store per kind of data.
 *
 * Each kind of data goes where its shape and its guarantees fit, and Redis caches reads of both
 * stores through the same cache-aside as layer 2 (versioned: a write invalidates in the same
 * step, a reader that raced it cannot fill the old copy back):
 *
 *   POST /write/transaction -> validate (exact money) -> PostgreSQL INSERT -> invalidate the
 *                              user's cached list -> 200
 *   GET /read/transaction/{user_id} -> Redis: hit -> 200 (source "cache")
 *                                      miss -> PostgreSQL SELECT -> fill -> 200 ("postgres")
 *   POST /write/document    -> validate (JSON -> BSON) -> MongoDB upsert by key (offload
 *                              workers) -> invalidate the cached document -> 200
 *   GET /read/document/{key} -> Redis: hit -> 200 (from_cache) | miss -> MongoDB -> fill -> 200
 *   POST /write, GET /read/{key} -> the same as documents, in MongoDB's `records` collection
 *   GET /users/{user_id}/summary -> MongoDB (profile) and PostgreSQL (totals) at once, joined
 *                                   here when both have answered
 *
 * What the price is: two stores, two failure domains. PostgreSQL down: transactions 503, the
 * document routes serve on; MongoDB down: the reverse; Redis down: everything goes on without
 * cache. And no transaction spans the two stores: the summary joins two reads taken at slightly
 * different moments (README: "No transaction across stores").
 */
#include "handlers.h"

#include "cache_aside.h"
#include "health.h"
#include "http.h"
#include "money.h"
#include "mongo.h"
#include "record.h"
#include "records.h"
#include "redis.h"
#include "server.h"
#include "validate.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TIMESTAMP_UTC(column)                                                                      \
    "to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* One advisory lock id for schema changes, shared by all layers (records.c). */
const char TRANSACTIONS_SQL_SCHEMA[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(327579063634);"
    "CREATE TABLE IF NOT EXISTS transactions ("
    " id bigserial PRIMARY KEY,"
    " user_id varchar(255) NOT NULL,"
    " amount numeric(12,2) NOT NULL CHECK (amount > 0),"
    " type text NOT NULL CHECK (type IN (" MONEY_CREDIT_TYPES ", " MONEY_DEBIT_TYPES ")),"
    " created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX IF NOT EXISTS transactions_user_id ON transactions (user_id, id);"
    "COMMIT;";

static const char SQL_INSERT[] =
    "INSERT INTO transactions (user_id, amount, type) VALUES ($1, $2, $3) RETURNING id";

#define TRANSACTIONS_LIST_MAX "100" /* the newest ones; a cached list stays bounded */
static const char SQL_LIST[] = "SELECT id, amount::text, type, " TIMESTAMP_UTC(
    "created_at") " FROM transactions WHERE user_id = $1 ORDER BY id DESC "
                  "LIMIT " TRANSACTIONS_LIST_MAX;

/* Cache key namespaces: one cache for both stores, so cache_keys counts them all. */
static const char *const route_namespace[ROUTE_COUNT] = {"rec:", "doc:", "txn:"};

void reply_mongo_failure(struct http_request *req, enum mongo_status status)
{
    if (status == MONGO_UNAVAILABLE)
        http_reply_error(req, 503, "Document store unavailable");
    else
        http_reply_error(req, 500, "Internal error");
}

static char *cache_key(enum cached_route route, const char *key, size_t len, size_t *out_len)
{
    size_t ns = strlen(route_namespace[route]);
    char *ck = xmalloc(ns + len + 1);
    memcpy(ck, route_namespace[route], ns);
    memcpy(ck + ns, key, len);
    ck[ns + len] = '\0';
    *out_len = ns + len;
    return ck;
}

static void invalidate(struct layer *layer, enum cached_route route, const char *key, size_t len)
{
    size_t ck_len;
    char *ck = cache_key(route, key, len, &ck_len);
    cache_aside_invalidate(layer->cache, ck, ck_len);
    free(ck);
}

json_t *amount_json(const char *text)
{
    return json_real(strtod(text, NULL));
}

/* ---- one read through the cache, for every cached route ---- */

struct read_flow {
    struct http_request *req; /* answered exactly once */
    enum cached_route route;  /* which read */
    char *key;                /* percent-decoded key (or user id) */
    size_t key_len;           /* its length */
    char *cache_key;          /* namespaced, as stored in Redis */
    size_t cache_key_len;     /* its length */
    char *token;              /* the cache version seen on the miss, or NULL (cache down) */
};

static struct read_flow *new_read_flow(struct http_request *req, enum cached_route route, char *key,
                                       size_t key_len)
{
    struct read_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->route = route;
    flow->key = key;
    flow->key_len = key_len;
    flow->cache_key = cache_key(route, key, key_len, &flow->cache_key_len);
    return flow;
}

static void free_read_flow(struct read_flow *flow)
{
    free(flow->key);
    free(flow->cache_key);
    free(flow->token);
    free(flow);
}

static void fill(struct layer *layer, struct read_flow *flow, const char *data, size_t len)
{
    if (flow->token != NULL)
        cache_aside_fill(layer->cache, flow->cache_key, flow->cache_key_len, flow->token, data,
                         len);
}

static void read_store(struct layer *layer, struct read_flow *flow);
static void reply_cached(struct read_flow *flow, const char *data, size_t len, bool *ok);

static void on_cache(enum cache_result result, const char *data, size_t len, const char *token,
                     void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    if (result == CACHE_HIT) {
        bool ok;
        reply_cached(flow, data, len, &ok);
        if (ok) { /* a malformed entry is a miss */
            layer->counts[flow->route].hits++;
            free_read_flow(flow);
            return;
        }
    }
    layer->counts[flow->route].misses++;
    flow->token = token ? xstrdup(token) : NULL;
    read_store(layer, flow);
}

static void read_through_cache(struct http_request *req, enum cached_route route)
{
    struct layer *layer = http_request_arg(req);
    size_t key_len;
    char *key = validate_key_param(req, &key_len);
    if (key == NULL)
        return; /* answered 422 */
    struct read_flow *flow = new_read_flow(req, route, key, key_len);
    cache_aside_get(layer->cache, flow->cache_key, flow->cache_key_len, on_cache, flow);
}

/* ---- records and documents: MongoDB ---- */

static json_t *document_reply(const struct record *rec, const char *key, size_t key_len,
                              bool from_cache)
{
    json_t *data = NULL;
    if (rec != NULL) {
        size_t len;
        const char *text = record_value(rec, &len);
        data = json_loadb(text, len, 0, NULL);
    }
    if (data == NULL) /* not found (a cached text that is not JSON never gets here) */
        return json_pack("{s:b, s:s%, s:n, s:n, s:n, s:b, s:s, s:s}", "success", 0, "key", key,
                         key_len, "data", "created_at", "updated_at", "from_cache", 0, "stored_in",
                         "MongoDB", "message", "Document not found");
    return json_pack("{s:b, s:s%, s:o, s:s, s:s, s:b, s:s, s:n}", "success", 1, "key", key, key_len,
                     "data", data, "created_at", record_created_at(rec), "updated_at",
                     record_updated_at(rec), "from_cache", from_cache, "stored_in",
                     from_cache ? "Redis (cache)" : "MongoDB", "message");
}

static void reply_record(struct read_flow *flow, const struct record *rec, bool from_cache)
{
    json_t *reply;
    if (flow->route == ROUTE_DOCUMENT) {
        reply = document_reply(rec, flow->key, flow->key_len, from_cache);
    } else {
        reply = record_read_reply(rec, flow->key, flow->key_len);
        json_object_set_new(reply, "from_cache", json_boolean(from_cache));
    }
    http_reply_json(flow->req, 200, reply);
}

/* The record a stored document makes: its value (records) or its data as JSON text. */
static struct record *record_of(struct read_flow *flow, const struct mongo_result *result)
{
    if (result->doc == NULL)
        return NULL;
    json_t *doc = mongo_json_from_bson(result->doc);
    json_t *member = json_object_get(doc, flow->route == ROUTE_DOCUMENT ? "data" : "value");
    char *text = NULL;
    const char *value = NULL;
    size_t len = 0;
    if (flow->route == ROUTE_DOCUMENT && json_is_object(member)) {
        text = json_dumps(member, JSON_COMPACT);
        value = text, len = strlen(text);
    } else if (flow->route == ROUTE_RECORD && json_is_string(member)) {
        value = json_string_value(member), len = json_string_length(member);
    }
    struct record *rec = NULL;
    if (value != NULL) {
        char created[32], updated[32];
        mongo_format_time(result->created_ms, created, sizeof created);
        mongo_format_time(result->updated_ms, updated, sizeof updated);
        rec = record_create(flow->key, flow->key_len, value, len, created, updated);
    }
    free(text);
    json_decref(doc);
    return rec;
}

static void on_found(const struct mongo_result *result, void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    if (result->status != MONGO_OK) {
        reply_mongo_failure(flow->req, result->status);
        free_read_flow(flow);
        return;
    }
    struct record *rec = record_of(flow, result);
    if (rec != NULL) {
        size_t len;
        char *entry = record_to_cache(rec, &len);
        fill(layer, flow, entry, len);
        free(entry);
    }
    reply_record(flow, rec, false);
    record_free(rec);
    free_read_flow(flow);
}

/* One write of a record or a document: the request, its body, and the key to invalidate. */
struct write_flow {
    struct http_request *req; /* answered exactly once, in on_written */
    enum cached_route route;  /* ROUTE_RECORD or ROUTE_DOCUMENT */
    json_t *body;             /* the parsed body (owns key and data) */
    const char *key;          /* points into body */
    size_t key_len;           /* its length */
};

static void on_written(const struct mongo_result *result, void *arg)
{
    struct write_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    if (result->status != MONGO_OK) {
        reply_mongo_failure(flow->req, result->status);
    } else {
        /* The store first, then the cache: a reader can no longer fill the old copy (the
         * version moved), and this client's next read sees the entry gone. */
        invalidate(layer, flow->route, flow->key, flow->key_len);
        json_t *reply =
            flow->route == ROUTE_RECORD
                ? record_write_reply(flow->key, flow->key_len)
                : json_pack("{s:b, s:s%, s:O, s:b, s:s}", "success", 1, "key", flow->key,
                            flow->key_len, "data", json_object_get(flow->body, "data"),
                            "from_cache", 0, "stored_in", "MongoDB");
        http_reply_json(flow->req, 200, reply);
    }
    json_decref(flow->body);
    free(flow);
}

static void write_document(struct layer *layer, struct http_request *req, enum cached_route route,
                           json_t *body, const char *key, size_t key_len, const bson_t *fields)
{
    struct write_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->route = route;
    flow->body = body;
    flow->key = key;
    flow->key_len = key_len;
    const char *collection = route == ROUTE_RECORD ? COLLECTION_RECORDS : COLLECTION_DOCUMENTS;
    mongo_upsert(layer->mongo, collection, key, key_len, fields, on_written, flow);
}

void handle_write(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct write_request body;
    if (!validate_write_body(req, layer->max_value_bytes, &body))
        return; /* answered 422 */
    bson_t fields = BSON_INITIALIZER;
    bson_append_utf8(&fields, "value", 5, body.value, (int)body.value_len);
    write_document(layer, req, ROUTE_RECORD, body.document, body.key, body.key_len, &fields);
    bson_destroy(&fields);
}

void handle_read(struct http_request *req, void *arg)
{
    (void)arg;
    read_through_cache(req, ROUTE_RECORD);
}

void handle_write_document(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    size_t len, key_len = 0;
    const char *text = http_request_body(req, &len), *key = NULL;
    json_t *errors = json_array();
    json_t *body = validate_json_object(text, len, errors);
    bson_t fields = BSON_INITIALIZER, data;
    if (body != NULL) {
        bool key_ok = validate_string_member(body, "key", 1, KEY_MAX_BYTES, errors, &key, &key_len);
        json_t *value = json_object_get(body, "data");
        char why[128];
        if (value == NULL) {
            validation_error_add(errors, "missing", "body", "data", "Field required");
        } else if (!json_is_object(value)) {
            validation_error_add(errors, "dict_type", "body", "data",
                                 "Input should be a valid dictionary");
        } else {
            bson_append_document_begin(&fields, "data", 4, &data);
            if (!mongo_bson_from_json(value, &data, why, sizeof why))
                validation_error_add(errors, "value_error", "body", "data", why);
            bson_append_document_end(&fields, &data);
        }
        (void)key_ok;
    }
    if (json_array_size(errors) > 0) {
        json_decref(body);
        bson_destroy(&fields);
        http_reply_validation(req, errors);
        return;
    }
    json_decref(errors);
    write_document(layer, req, ROUTE_DOCUMENT, body, key, key_len, &fields);
    bson_destroy(&fields);
}

void handle_read_document(struct http_request *req, void *arg)
{
    (void)arg;
    read_through_cache(req, ROUTE_DOCUMENT);
}

/* ---- transactions: PostgreSQL ---- */

struct transaction_flow {
    struct http_request *req;    /* answered exactly once, in on_inserted */
    json_t *body;                /* the parsed body (owns user_id) */
    const char *user_id;         /* points into body */
    size_t user_id_len;          /* its length */
    char amount[MONEY_TEXT_MAX]; /* the exact decimal text */
    const char *type;            /* a static string (money.c) */
};

static void on_inserted(PGresult *res, enum pg_status status, void *arg)
{
    struct transaction_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    if (status == PG_OK && PQntuples(res) == 1) {
        invalidate(layer, ROUTE_TRANSACTIONS, flow->user_id, flow->user_id_len);
        http_reply_json(
            flow->req, 200,
            json_pack("{s:b, s:I, s:s%, s:o, s:s, s:s, s:s}", "success", 1, "transaction_id",
                      (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10), "user_id",
                      flow->user_id, flow->user_id_len, "amount", amount_json(flow->amount),
                      "transaction_type", flow->type, "message",
                      "Transaction written to PostgreSQL", "stored_in", "PostgreSQL"));
    } else {
        records_reply_failure(flow->req, status == PG_OK ? PG_ERROR : status);
    }
    json_decref(flow->body);
    free(flow);
}

void handle_write_transaction(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    size_t len;
    const char *text = http_request_body(req, &len);
    json_t *errors = json_array();
    json_t *body = validate_json_object(text, len, errors);
    struct transaction_flow *flow = xcalloc(1, sizeof *flow);
    if (body != NULL) {
        bool ok = validate_string_member(body, "user_id", 1, KEY_MAX_BYTES, errors, &flow->user_id,
                                         &flow->user_id_len);
        ok = money_validate_amount(body, errors, flow->amount) && ok;
        flow->type = money_validate_type(body, errors);
        (void)ok; /* errors holds every problem */
    }
    if (json_array_size(errors) > 0) {
        json_decref(body);
        free(flow);
        http_reply_validation(req, errors);
        return;
    }
    json_decref(errors);
    flow->req = req;
    flow->body = body;
    struct pg_call insert = {
        {SQL_INSERT, 3, {flow->user_id, flow->amount, flow->type}}, on_inserted, flow};
    pool_query(layer->pool, &insert);
}

static json_t *transactions_reply(const char *user_id, size_t len, json_t *list, bool cached)
{
    bool found = json_array_size(list) > 0;
    if (!found) {
        json_decref(list);
        list = json_null();
    }
    return json_pack("{s:b, s:s%, s:o, s:s, s:s?}", "success", found, "key", user_id, len, "value",
                     list, "source", cached ? "cache" : "postgres", "message",
                     found ? NULL : "No transactions found");
}

static void on_listed(PGresult *res, enum pg_status status, void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    if (status != PG_OK) {
        records_reply_failure(flow->req, status);
        free_read_flow(flow);
        return;
    }
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(list, json_pack("{s:I, s:s%, s:o, s:s, s:s}", "id",
                                              (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10),
                                              "user_id", flow->key, flow->key_len, "amount",
                                              amount_json(PQgetvalue(res, i, 1)),
                                              "transaction_type", PQgetvalue(res, i, 2),
                                              "created_at", PQgetvalue(res, i, 3)));
    char *entry = json_dumps(list, JSON_COMPACT | JSON_REAL_PRECISION(15));
    fill(layer, flow, entry, strlen(entry));
    free(entry);
    http_reply_json(flow->req, 200, transactions_reply(flow->key, flow->key_len, list, false));
    free_read_flow(flow);
}

static void read_store(struct layer *layer, struct read_flow *flow)
{
    if (flow->route == ROUTE_TRANSACTIONS) {
        struct pg_call list = {{SQL_LIST, 1, {flow->key}}, on_listed, flow};
        pool_query(layer->pool, &list);
        return;
    }
    mongo_find_one(layer->mongo,
                   flow->route == ROUTE_RECORD ? COLLECTION_RECORDS : COLLECTION_DOCUMENTS,
                   flow->key, flow->key_len, on_found, flow);
}

/* Answers a cache hit; *ok false (nothing answered) when the entry is malformed. */
static void reply_cached(struct read_flow *flow, const char *data, size_t len, bool *ok)
{
    if (flow->route == ROUTE_TRANSACTIONS) {
        json_t *list = json_loadb(data, len, 0, NULL);
        *ok = json_is_array(list);
        if (*ok)
            http_reply_json(flow->req, 200,
                            transactions_reply(flow->key, flow->key_len, list, true));
        else
            json_decref(list);
        return;
    }
    struct record *rec = record_from_cache(flow->key, flow->key_len, data, len);
    *ok = rec != NULL;
    if (*ok)
        reply_record(flow, rec, true);
    record_free(rec);
}

void handle_read_transactions(struct http_request *req, void *arg)
{
    (void)arg;
    read_through_cache(req, ROUTE_TRANSACTIONS);
}
