/*
 * Layer 8: the routes that ask several stores at once and join their answers on the loop.
 *
 * A polyglot layer has no single database to ask: the user summary reads the profile document
 * (MongoDB) and the transaction totals (PostgreSQL) at the same time and answers when both are
 * back, with each read's time (the join costs the slower of the two, not their sum); /health
 * asks each store for real; /stats counts in each store. Each flow counts the answers it still
 * waits for and is freed by the last one; a store that fails or times out answers too, so every
 * request is answered exactly once.
 */
#include "handlers.h"

#include "cache_aside.h"
#include "health.h"
#include "http.h"
#include "money.h"
#include "mongo.h"
#include "records.h"
#include "server.h"
#include "validate.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char SQL_TOTALS[] =
    "SELECT count(*),"
    " coalesce(sum(amount) FILTER (WHERE type IN (" MONEY_CREDIT_TYPES ")), 0)::text,"
    " coalesce(sum(amount) FILTER (WHERE type IN (" MONEY_DEBIT_TYPES ")), 0)::text,"
    " coalesce(sum(CASE WHEN type IN (" MONEY_CREDIT_TYPES ") THEN amount ELSE -amount END),"
    " 0)::text FROM transactions WHERE user_id = $1";

static const char *const route_name[ROUTE_COUNT] = {"read", "document", "transactions"};

/* ---- the summary: both stores at once, joined here ---- */

struct summary_flow {
    struct http_request *req;       /* answered once, when both reads are back */
    char *user_id;                  /* percent-decoded */
    size_t user_id_len;             /* its length */
    int pending;                    /* reads not back yet (2, 1, 0) */
    enum mongo_status mongo;        /* the profile read's outcome */
    json_t *profile;                /* the profile's data, or NULL (none) */
    enum pg_status pg;              /* the totals read's outcome */
    json_t *totals;                 /* count, credits, debits, balance, or NULL */
    struct timespec started;        /* for the timings */
    double mongodb_ms, postgres_ms; /* how long each read took */
};

static double elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) * 1e3 +
           (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

static void summary_joined(struct summary_flow *flow)
{
    if (--flow->pending > 0)
        return;
    if (flow->pg != PG_OK) {
        records_reply_failure(flow->req, flow->pg);
    } else if (flow->mongo != MONGO_OK) {
        reply_mongo_failure(flow->req, flow->mongo);
    } else {
        json_t *timing = json_pack("{s:f, s:f, s:f}", "mongodb_ms", flow->mongodb_ms, "postgres_ms",
                                   flow->postgres_ms, "total_ms", elapsed_ms(&flow->started));
        http_reply_json(flow->req, 200,
                        json_pack("{s:b, s:s%, s:o, s:O, s:o, s:n}", "success", 1, "user_id",
                                  flow->user_id, flow->user_id_len, "profile",
                                  flow->profile ? json_incref(flow->profile) : json_null(),
                                  "transactions", flow->totals, "timing", timing, "message"));
    }
    json_decref(flow->profile);
    json_decref(flow->totals);
    free(flow->user_id);
    free(flow);
}

static void on_profile(const struct mongo_result *result, void *arg)
{
    struct summary_flow *flow = arg;
    flow->mongodb_ms = elapsed_ms(&flow->started);
    flow->mongo = result->status;
    if (result->status == MONGO_OK && result->doc != NULL) {
        json_t *doc = mongo_json_from_bson(result->doc);
        flow->profile = json_incref(json_object_get(doc, "data"));
        json_decref(doc);
    }
    summary_joined(flow);
}

static void on_totals(PGresult *res, enum pg_status status, void *arg)
{
    struct summary_flow *flow = arg;
    flow->postgres_ms = elapsed_ms(&flow->started);
    flow->pg = status == PG_OK && PQntuples(res) == 1 ? PG_OK : status == PG_OK ? PG_ERROR : status;
    if (flow->pg == PG_OK)
        flow->totals = json_pack(
            "{s:I, s:o, s:o, s:o}", "count", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10),
            "credits", amount_json(PQgetvalue(res, 0, 1)), "debits",
            amount_json(PQgetvalue(res, 0, 2)), "balance", amount_json(PQgetvalue(res, 0, 3)));
    summary_joined(flow);
}

void handle_user_summary(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    size_t len;
    char *user_id = validate_key_param(req, &len);
    if (user_id == NULL)
        return; /* answered 422 */
    struct summary_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->user_id = user_id;
    flow->user_id_len = len;
    flow->pending = 2; /* before either call: either may answer at once (a full queue) */
    clock_gettime(CLOCK_MONOTONIC, &flow->started);
    char *profile_key = xmalloc(len + 6);
    memcpy(profile_key, "user:", 5);
    memcpy(profile_key + 5, user_id, len);
    mongo_find_one(layer->mongo, COLLECTION_DOCUMENTS, profile_key, len + 5, on_profile, flow);
    free(profile_key);
    struct pg_call totals = {{SQL_TOTALS, 1, {flow->user_id}}, on_totals, flow};
    pool_query(layer->pool, &totals);
}

/* ---- health: each store asked for real, at once ---- */

struct health_flow {
    struct http_request *req; /* answered once both answers are back */
    int pending;              /* 2, 1, 0 */
    bool postgres, mongodb;   /* each store answered */
};

static void health_joined(struct health_flow *flow)
{
    if (--flow->pending > 0)
        return;
    struct layer *layer = http_request_arg(flow->req);
    struct health health;
    health_begin(&health, server_spec(layer->server)->layer);
    json_object_set_new(health.body, "databases",
                        json_pack("[s,s,s]", "postgresql", "mongodb", "redis"));
    health_member(&health, "postgresql", flow->postgres, HEALTH_REQUIRED);
    health_member(&health, "mongodb", flow->mongodb, HEALTH_REQUIRED);
    health_member(&health, "redis", cache_aside_available(layer->cache), HEALTH_OPTIONAL);
    health_member(&health, "database", flow->postgres && flow->mongodb, HEALTH_REQUIRED);
    health_reply(flow->req, &health);
    free(flow);
}

static void on_health_pg(PGresult *res, enum pg_status status, void *arg)
{
    struct health_flow *flow = arg;
    (void)res;
    flow->postgres = status == PG_OK;
    health_joined(flow);
}

static void on_health_mongo(const struct mongo_result *result, void *arg)
{
    struct health_flow *flow = arg;
    flow->mongodb = result->status == MONGO_OK;
    health_joined(flow);
}

void handle_health(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct health_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->pending = 2;
    mongo_ping(layer->mongo, on_health_mongo, flow);
    struct pg_call check = {.statement = {.sql = "SELECT 1"}, .cb = on_health_pg, .arg = flow};
    struct pg_call within = health_call_within(server_base(layer->server), &check);
    pool_query(layer->pool, &within);
}

/* ---- statistics: counted in each store, at once ---- */

struct stats_flow {
    struct http_request *req; /* answered once the three counts are back */
    int pending;              /* 3, 2, 1, 0 */
    long long keys;           /* this layer's cached entries, or CACHE_COUNT_* */
    json_t *transactions;     /* PostgreSQL's count, or null */
    json_t *documents;        /* MongoDB's count, or null */
};

static void stats_joined(struct stats_flow *flow)
{
    if (--flow->pending > 0)
        return;
    struct layer *layer = http_request_arg(flow->req);
    struct pool_stats pool;
    pool_get_stats(layer->pool, &pool);
    json_t *stats = cache_aside_stats_json(layer->cache, flow->keys, "cache_");
    json_object_set_new(stats, "postgres_pool_size", json_integer(pool.size));
    json_object_set_new(stats, "mongodb_connections", json_integer(mongo_in_use(layer->mongo)));
    json_object_set_new(stats, "mongodb_pool_size", json_integer(mongo_pool_size(layer->mongo)));
    json_object_set_new(stats, "mongodb_queue_depth",
                        json_integer((json_int_t)mongo_queued(layer->mongo)));
    json_object_set_new(stats, "total_transactions", flow->transactions);
    json_object_set_new(stats, "total_documents", flow->documents);
    json_t *routes = json_object();
    for (int r = 0; r < ROUTE_COUNT; r++)
        json_object_set_new(routes, route_name[r],
                            json_pack("{s:I, s:I}", "hits", (json_int_t)layer->counts[r].hits,
                                      "misses", (json_int_t)layer->counts[r].misses));
    json_object_set_new(stats, "cache_by_route", routes);
    http_reply_json(flow->req, 200, stats);
    free(flow);
}

static void on_keys_counted(long long keys, void *arg)
{
    struct stats_flow *flow = arg;
    flow->keys = keys;
    stats_joined(flow);
}

static void on_transactions_counted(PGresult *res, enum pg_status status, void *arg)
{
    struct stats_flow *flow = arg;
    flow->transactions = status == PG_OK && PQntuples(res) == 1
                             ? json_integer(strtoll(PQgetvalue(res, 0, 0), NULL, 10))
                             : json_null();
    stats_joined(flow);
}

static void on_documents_counted(const struct mongo_result *result, void *arg)
{
    struct stats_flow *flow = arg;
    flow->documents = result->status == MONGO_OK ? json_integer(result->count) : json_null();
    stats_joined(flow);
}

void handle_stats(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct stats_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->pending = 3;
    mongo_count(layer->mongo, COLLECTION_DOCUMENTS, on_documents_counted, flow);
    cache_aside_count(layer->cache, on_keys_counted, flow);
    pool_query(layer->pool, &(struct pg_call){.statement = {.sql = "SELECT count(*) FROM "
                                                                   "transactions"},
                                              .cb = on_transactions_counted,
                                              .arg = flow});
}
