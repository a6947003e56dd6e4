/*
 * Layer 9: reads.
 *
 *   GET /read/{key} -> region -> serving region t -> (max_staleness_ms: t fresh enough?) ->
 *                      t is the client's region: t's Redis (region_cache.h) -> hit: 200 ->
 *                      miss (or failover): the merge of the three tables on t: highest hlc
 *                      wins, region breaks ties -> fill t's Redis -> 200 (source: t, latency_ms)
 *
 * A region's cache forgets a key when the server commits a write there (writes.c) and when
 * replication applies another region's row there (a trigger's NOTIFY, region_cache.h). A read
 * that could not reach its region is sent once to the nearest other healthy one.
 */
#include "requests.h"

#include "http.h"
#include "pool.h"
#include "record.h"
#include "records.h"
#include "region_cache.h"
#include "server.h"
#include "validate.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* $1 key -> value, created_at, updated_at, hlc, region of the winning row, or no row. */
static const char READ_SQL[] =
    "SELECT value, " TIMESTAMP_UTC("created_at") ", " TIMESTAMP_UTC(
        "updated_at") ", hlc::text, region FROM (" ALL_REGIONS("*") ") t "
                      "ORDER BY hlc DESC, region COLLATE \"C\" DESC LIMIT 1";

/* One read in flight. */
struct read_flow {
    struct http_request *req; /* answered exactly once */
    char *key;                /* percent-decoded key */
    size_t key_len;           /* its length in bytes */
    int client;               /* the client's region */
    int serving;              /* the region that answers */
    double stale_ms;          /* how much of the other regions' writes it may miss (-1: unknown) */
    long long start_us;       /* when the request began (monotonic) */
    bool retried;             /* already sent to a second region */
    char *token;              /* the cache version seen on a miss, or NULL (cache not used) */
    unsigned long long epoch; /* the cache's epoch at the lookup (region_cache_fill) */
};

static void free_read_flow(struct read_flow *flow)
{
    free(flow->key);
    free(flow->token);
    free(flow);
}

static void on_read(PGresult *res, enum pg_status status, void *arg);

/* A read that could not reach its region (down before the heartbeat noticed) goes once to the
 * nearest other healthy region: a read is safe to repeat, a write is not (it may have run). */
static bool retry_elsewhere(struct read_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    bool healthy[REGION_COUNT];
    healthy_set(layer, healthy);
    healthy[flow->serving] = false;
    int next = region_serving(&layer->matrix, flow->client, healthy);
    if (flow->retried || next < 0)
        return false;
    flow->retried = true;
    if (flow->serving == flow->client)
        layer->regions[flow->client].served_elsewhere++;
    flow->serving = next;
    flow->stale_ms = region_staleness(layer, next);
    struct pg_call call = {{READ_SQL, 1, {flow->key}}, on_read, flow};
    pool_query(layer->regions[flow->client].pools[next], &call);
    return true;
}

/* The answer, from the cache or from the serving region's tables (rec NULL: not found). */
static void reply_read(struct read_flow *flow, const struct record *rec, bool cache_hit)
{
    json_t *reply = record_read_reply(rec, flow->key, flow->key_len);
    json_object_set_new(reply, "source", json_string(region_name(flow->serving)));
    json_object_set_new(reply, "region", json_string(region_name(flow->client)));
    json_object_set_new(reply, "latency_ms", json_real(round2(elapsed_ms(flow->start_us))));
    json_object_set_new(reply, "staleness_ms",
                        flow->stale_ms < 0 ? json_null() : json_real(round2(flow->stale_ms)));
    json_object_set_new(reply, "cache_hit", json_boolean(cache_hit));
    if (rec == NULL) {
        json_object_set_new(reply, "written_in", json_null());
        json_object_set_new(reply, "hlc", json_null());
    }
    http_reply_json(flow->req, 200, reply);
}

static void on_read(PGresult *res, enum pg_status status, void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    if (status == PG_UNAVAILABLE && retry_elsewhere(flow))
        return;
    if (status != PG_OK) {
        records_reply_failure(flow->req, status);
        free_read_flow(flow);
        return;
    }
    struct record *rec = NULL;
    if (PQntuples(res) == 1) {
        rec = record_create(flow->key, flow->key_len, PQgetvalue(res, 0, 0),
                            (size_t)PQgetlength(res, 0, 0), PQgetvalue(res, 0, 1),
                            PQgetvalue(res, 0, 2));
        record_set_extra(rec, "written_in", json_string(PQgetvalue(res, 0, 4)));
        record_set_extra(rec, "hlc", json_string(PQgetvalue(res, 0, 3)));
    }
    /* Filled only from the region the lookup asked (not after a retry elsewhere). */
    if (rec != NULL && flow->token != NULL && !flow->retried) {
        size_t len;
        char *data = record_to_cache(rec, &len);
        region_cache_fill(layer->regions[flow->serving].cache, flow->epoch, flow->key,
                          flow->key_len, flow->token, data, len);
        free(data);
    }
    reply_read(flow, rec, false);
    record_free(rec);
    free_read_flow(flow);
}

static void read_tables(struct read_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    struct pg_call call = {{READ_SQL, 1, {flow->key}}, on_read, flow};
    pool_query(layer->regions[flow->client].pools[flow->serving], &call);
}

static void on_cache(enum cache_result result, const char *data, size_t len, const char *token,
                     void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    struct region *r = &layer->regions[flow->serving];
    struct record *rec =
        result == CACHE_HIT ? record_from_cache(flow->key, flow->key_len, data, len) : NULL;
    if (rec != NULL)
        r->cache_hits++;
    else
        r->cache_misses++;
    if (rec != NULL) { /* a malformed entry is a miss */
        reply_read(flow, rec, true);
        record_free(rec);
        free_read_flow(flow);
        return;
    }
    flow->token = token != NULL ? xstrdup(token) : NULL;
    read_tables(flow);
}

void handle_read(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct route_param raw = http_request_param(req, 0);
    json_t *errors = json_array();
    size_t key_len;
    char *key = validate_path_key(raw.raw, raw.len, &key_len, errors);
    int client = client_region(req, NULL, errors);
    char text[24];
    long max_stale = -1;
    if (query_param(req, "max_staleness_ms", text, sizeof text) != NULL) {
        char *end;
        max_stale = strtol(text, &end, 10);
        if (*text == '\0' || *end != '\0' || max_stale < 0) {
            validation_error_add(errors, "int_parsing", "query", "max_staleness_ms",
                                 "Input should be a valid non-negative integer");
            max_stale = -1;
        }
    }
    if (key == NULL || json_array_size(errors) > 0) {
        free(key);
        http_reply_validation(req, errors);
        return;
    }
    json_decref(errors);
    struct region *home = &layer->regions[client];
    home->reads++;
    int serving = serving_region(layer, client);
    if (serving < 0) {
        free(key);
        http_reply_error(req, 503, "Database unavailable");
        return;
    }
    if (serving != client)
        home->served_elsewhere++;
    double stale = region_staleness(layer, serving);
    if (max_stale >= 0 && (stale < 0 || stale > (double)max_stale)) {
        /* Every region misses the others' latest writes by about the same: no other region
         * would do better. The client learns how stale it is and may retry or relax. */
        free(key);
        json_t *body = json_object();
        json_object_set_new(body, "detail", json_string("Fresh enough data unavailable"));
        json_object_set_new(body, "request_id", json_string(http_request_id(req)));
        json_object_set_new(body, "source", json_string(region_name(serving)));
        json_object_set_new(body, "staleness_ms",
                            stale < 0 ? json_null() : json_real(round2(stale)));
        json_object_set_new(body, "max_staleness_ms", json_integer(max_stale));
        http_request_set_header(req, "Retry-After", "1");
        http_reply_json(req, 503, body);
        return;
    }
    struct read_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->key = key;
    flow->key_len = key_len;
    flow->client = client;
    flow->serving = serving;
    flow->stale_ms = stale;
    flow->start_us = monotonic_us();
    /* The cache only for a local read: a region served by another pays the link to that
     * region's tables (the failover's real cost), and its own Redis may be down with it. */
    if (serving == client)
        region_cache_get(home->cache, flow->key, flow->key_len, &flow->epoch, on_cache, flow);
    else
        read_tables(flow);
}
