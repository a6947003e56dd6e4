/*
 * Layer 4: database sharding. The read and write paths.
 *
 * The keys are split over N PostgreSQL databases; each request first works out which shard
 * holds its key (shard_set_lookup: a pure function of the key) and then uses that shard's pool
 * only, so a shard that is down fails its own keys and no others. Reads have layer 2's Redis
 * cache-aside in front; cached entries remember their shard.
 *
 *   POST /write     -> validate -> shard = lookup(key) -> UPSERT on that shard
 *                   -> invalidate the cached copy -> 200 (shard_id)
 *   GET /read/{key} -> validate -> Redis: hit -> 200 (from_cache: true, shard_id)
 *                                  miss -> single-flight -> SELECT on the key's shard -> fill
 *
 * While resharding (SHARD_PREVIOUS_URLS set), a key may not have been moved yet: a read that
 * does not find it on its shard asks the shard of the previous layout, and if the key is not
 * there either (the mover took it meanwhile), its own shard once more. Writes always go to the
 * new shard. Only rows read from their new shard are cached.
 */
#include "handlers.h"

#include "cache_aside.h"
#include "health.h"
#include "http.h"
#include "metrics.h"
#include "record.h"
#include "records.h"
#include "server.h"
#include "shard_map.h"
#include "single_flight.h"
#include "validate.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One write in flight: the request and its validated body (owns the key and value strings). */
struct write_flow {
    struct http_request *req;  /* answered exactly once, in on_written */
    struct write_request body; /* key and value, kept alive until the query is done */
    int shard;                 /* where the key lives */
};

/* Where a read looks for its key, in order. */
enum read_state {
    READ_SHARD,          /* the key's shard in the current layout */
    READ_PREVIOUS_SHARD, /* resharding: its shard in the previous layout (not moved yet?) */
    READ_SHARD_AGAIN,    /* resharding: moved while we looked; the mover copies, then deletes */
};

/* One read in flight. */
struct read_flow {
    struct http_request *req; /* answered exactly once */
    char *key;                /* percent-decoded key */
    size_t key_len;           /* its length in bytes */
    char *token;              /* the cache version seen on the miss, or NULL (cache down) */
    int shard;                /* the key's shard */
    int previous_shard;       /* its shard in the previous layout, or -1 (not resharding) */
    enum read_state state;    /* where the leader is looking now */
};

/* ---- writes ---- */

static void on_written(PGresult *res, enum pg_status status, void *arg)
{
    struct write_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    (void)res;
    if (status == PG_OK) {
        /* Database first, then the cache (as in layer 2). */
        cache_aside_invalidate(layer->cache, flow->body.key, flow->body.key_len);
        single_flight_forget(layer->flights, flow->body.key, flow->body.key_len);
        json_t *reply = record_write_reply(flow->body.key, flow->body.key_len);
        char message[64];
        snprintf(message, sizeof message, "Data written successfully to shard %d", flow->shard);
        json_object_set_new(reply, "message", json_string(message));
        json_object_set_new(reply, "shard_id", json_integer(flow->shard));
        http_reply_json(flow->req, 200, reply);
    } else {
        records_reply_failure(flow->req, status);
    }
    write_request_cleanup(&flow->body);
    free(flow);
}

void handle_write(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct write_request body;
    if (!validate_write_body(req, layer->max_value_bytes, &body))
        return; /* answered 422 */
    struct write_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->body = body;
    flow->shard = shard_set_lookup(layer->shards, flow->body.key, flow->body.key_len);
    struct pg_call upsert = {
        {RECORDS_SQL_UPSERT, 2, {flow->body.key, flow->body.value}}, on_written, flow};
    shard_set_query(layer->shards, SHARD_CURRENT, flow->shard, &upsert);
}

/* ---- reads ---- */

static void free_read_flow(struct read_flow *flow)
{
    free(flow->key);
    free(flow->token);
    free(flow);
}

static void reply_read(struct read_flow *flow, json_t *reply, bool from_cache, int shard)
{
    json_object_set_new(reply, "from_cache", json_boolean(from_cache));
    json_object_set_new(reply, "shard_id", json_integer(shard));
    http_reply_json(flow->req, 200, reply);
}

/* The record as cached: its members and the shard it came from. */
static void fill(struct layer *layer, struct read_flow *leader, struct record *rec)
{
    record_set_extra(rec, "shard_id", json_integer(leader->shard));
    size_t len;
    char *data = record_to_cache(rec, &len);
    cache_aside_fill(layer->cache, leader->key, leader->key_len, leader->token, data, len);
    free(data);
}

static void on_read(PGresult *res, enum pg_status status, void *arg);

static void query_read(struct read_flow *flow, enum shard_layout layout, int shard)
{
    struct layer *layer = http_request_arg(flow->req);
    struct pg_call read = {{RECORDS_SQL_READ, 1, {flow->key}}, on_read, flow};
    shard_set_query(layer->shards, layout, shard, &read);
}

/* The key was not where the leader looked: looks elsewhere and returns true, or false when
 * there is nowhere left (the key does not exist). Every transition of a read is here. */
static bool read_elsewhere(struct read_flow *flow)
{
    switch (flow->state) {
    case READ_SHARD:
        if (flow->previous_shard < 0)
            return false;
        flow->state = READ_PREVIOUS_SHARD;
        query_read(flow, SHARD_PREVIOUS, flow->previous_shard);
        return true;
    case READ_PREVIOUS_SHARD:
        flow->state = READ_SHARD_AGAIN;
        query_read(flow, SHARD_CURRENT, flow->shard);
        return true;
    case READ_SHARD_AGAIN:
        return false;
    }
    return false;
}

static void on_read(PGresult *res, enum pg_status status, void *arg)
{
    struct read_flow *leader = arg;
    struct layer *layer = http_request_arg(leader->req);
    struct record *rec = status == PG_OK ? records_row(res, leader->key, leader->key_len) : NULL;
    if (status == PG_OK && rec == NULL && read_elsewhere(leader))
        return;
    if (rec != NULL && leader->state == READ_PREVIOUS_SHARD)
        metrics_inc(server_metrics(layer->server), METRIC_SHARD_PREVIOUS_READS);
    if (rec != NULL && leader->state != READ_PREVIOUS_SHARD && leader->token != NULL)
        fill(layer, leader, rec);
    size_t count;
    void **flows =
        single_flight_finish(layer->flights, leader->key, leader->key_len, leader, &count);
    int shard = leader->shard;
    for (size_t i = 0; i < count; i++) {
        struct read_flow *flow = flows[i];
        if (status == PG_OK)
            reply_read(flow, record_read_reply(rec, flow->key, flow->key_len), false, shard);
        else
            records_reply_failure(flow->req, status);
        free_read_flow(flow);
    }
    free(flows);
    record_free(rec);
}

static void on_cache(enum cache_result result, const char *data, size_t len, const char *token,
                     void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    struct record *rec =
        result == CACHE_HIT ? record_from_cache(flow->key, flow->key_len, data, len) : NULL;
    json_t *shard = rec ? record_extra(rec, "shard_id") : NULL;
    if (json_is_integer(shard)) { /* a malformed entry, or one without its shard, is a miss */
        reply_read(flow, record_read_reply(rec, flow->key, flow->key_len), true,
                   (int)json_integer_value(shard));
        free_read_flow(flow);
        record_free(rec);
        return;
    }
    record_free(rec);
    flow->token = token ? xstrdup(token) : NULL;
    if (!single_flight_join(layer->flights, flow->key, flow->key_len, flow)) {
        metrics_inc(server_metrics(layer->server), METRIC_CACHE_COALESCED);
        return; /* the leader's query will answer this request too */
    }
    query_read(flow, SHARD_CURRENT, flow->shard);
}

void handle_read(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    size_t key_len;
    char *key = validate_key_param(req, &key_len);
    if (key == NULL)
        return; /* answered 422 */
    struct read_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->key = key;
    flow->key_len = key_len;
    flow->shard = shard_set_lookup(layer->shards, key, key_len);
    flow->previous_shard = shard_set_previous_lookup(layer->shards, key, key_len);
    flow->state = READ_SHARD;
    cache_aside_get(layer->cache, flow->key, flow->key_len, on_cache, flow);
}

/* ---- health and statistics: every shard at once (a fan-out) ---- */

static void on_health(const struct shard_answer *answers, int count, void *arg)
{
    struct http_request *req = arg;
    struct layer *layer = http_request_arg(req);
    int up = 0;
    for (int i = 0; i < count; i++)
        up += answers[i].status == PG_OK;
    /* Some shards down: their keys fail, the others are served (degraded); none: unhealthy.
     * "database" keeps the contract's two values: healthy only when every shard is. Each
     * shard is both in "shards" (the Python version's object) and a member of its own. */
    struct health health;
    health_begin(&health, server_spec(layer->server)->layer);
    health_member(&health, "database", up == count, up == 0 ? HEALTH_REQUIRED : HEALTH_OPTIONAL);
    health_member(&health, "cache", cache_aside_available(layer->cache), HEALTH_OPTIONAL);
    json_t *shards = health_group(&health, "shards");
    for (int i = 0; i < count; i++) {
        char name[32];
        snprintf(name, sizeof name, "shard_%d", i);
        health_set(shards, name, answers[i].status == PG_OK);
        health_set(health.body, name, answers[i].status == PG_OK);
    }
    health_reply(req, &health);
}

void handle_health(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    shard_set_fanout(layer->shards, "SELECT 1", layer->check_timeout_ms, on_health, req);
}

/* A stats request between its two steps: the cache count, then the shard fan-out. */
struct stats_flow {
    struct http_request *req; /* answered exactly once, in on_rows_counted */
    long long cache_keys;     /* this layer's cached values, or CACHE_COUNT_* */
};

static void on_rows_counted(const struct shard_answer *answers, int count, void *arg)
{
    struct stats_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    json_t *stats = cache_aside_stats_json(layer->cache, flow->cache_keys, "cache_");
    json_object_set_new(stats, "num_shards", json_integer(count));
    json_object_set_new(stats, "shard_strategy",
                        json_string(shard_map_strategy(shard_set_map(layer->shards))));
    json_object_set_new(stats, "shard_pool_sizes", shard_set_pool_sizes_json(layer->shards));
    /* A shard that did not answer is null and listed, never a 0 that looks like "empty". */
    json_t *rows = json_object(), *unreachable = json_array();
    for (int i = 0; i < count; i++) {
        char name[32];
        snprintf(name, sizeof name, "shard_%d", i);
        if (answers[i].status == PG_OK && answers[i].value != NULL) {
            json_object_set_new(rows, name, json_integer(atoll(answers[i].value)));
        } else {
            json_object_set_new(rows, name, json_null());
            json_array_append_new(unreachable, json_string(name));
        }
    }
    json_object_set_new(stats, "shard_distribution", rows);
    json_object_set_new(stats, "shards_unreachable", unreachable);
    const struct shard_map *previous = shard_set_previous_map(layer->shards);
    json_object_set_new(stats, "resharding_from",
                        previous ? json_string(shard_map_describe(previous)) : json_null());
    http_reply_json(flow->req, 200, stats);
    free(flow);
}

static void on_cache_counted(long long keys, void *arg)
{
    struct stats_flow *flow = arg;
    flow->cache_keys = keys;
    struct layer *layer = http_request_arg(flow->req);
    shard_set_fanout(layer->shards, "SELECT count(*) FROM records", layer->check_timeout_ms,
                     on_rows_counted, flow);
}

void handle_stats(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct stats_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    cache_aside_count(layer->cache, on_cache_counted, flow);
}
