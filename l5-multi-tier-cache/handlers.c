/*
 * Layer 5: multi-tier cache. The read and write paths.
 *
 *   GET /read/{key} -> L1 (this process)  hit -> 200 "cache_level":"L1"
 *                   -> L2 (Redis)         hit -> promote into L1 -> 200 "L2"
 *                   -> L3 (PostgreSQL, one query per key at a time) -> fill L2 and L1 -> "L3"
 *   POST /write     -> PostgreSQL -> invalidate L2 and PUBLISH the key (one script), so every
 *                      other instance drops it from its L1 too -> drop from this L1 -> 200
 *
 * An in-process tier is only safe with invalidations: several instances each hold their own L1,
 * and a write through one must reach all. Writers publish on the Redis channel
 * "l5:invalidations"; every instance subscribes, drops the keys it hears, and stops trusting
 * its L1 while the channel is down or silent (l1_coherence.h). A write whose invalidation could
 * not reach Redis is invalidated and published again as soon as Redis answers, and this
 * instance bypasses L2 until then (cache_aside.h). A fill (into L1) that raced with an
 * invalidation of its key is refused, like L2's versioned fills: a read remembers the
 * invalidation epoch it started at.
 */
#include "handlers.h"

#include "cache_aside.h"
#include "clock.h"
#include "health.h"
#include "http.h"
#include "l1_cache.h"
#include "l1_coherence.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "records.h"
#include "redis.h"
#include "server.h"
#include "single_flight.h"
#include "validate.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One write in flight: the request and its validated body (owns the key and value strings). */
struct write_flow {
    struct http_request *req;  /* answered exactly once, in on_written */
    struct write_request body; /* key and value, kept alive until the query is done */
};

/* One read in flight. */
struct read_flow {
    struct http_request *req; /* answered exactly once */
    char *key;                /* percent-decoded key */
    size_t key_len;           /* its length in bytes */
    char *token;              /* L2's version on a miss, or NULL (Redis down) */
    uint64_t epoch;           /* invalidations seen when the read started */
};

/* ---- writes ---- */

static void on_written(PGresult *res, enum pg_status status, void *arg)
{
    struct write_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    (void)res;
    if (status == PG_OK) {
        /* One script invalidates L2 and publishes the key to every instance (this one too);
         * if it fails, cache_aside delivers it later (cache_aside.h). This instance's own L1
         * is cleaned at once, before the reply. */
        cache_aside_invalidate(layer->l2, flow->body.key, flow->body.key_len);
        l1_coherence_invalidate(layer->coherence, flow->body.key, flow->body.key_len);
        http_reply_json(flow->req, 200, record_write_reply(flow->body.key, flow->body.key_len));
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
    struct pg_call upsert = {
        {RECORDS_SQL_UPSERT, 2, {flow->body.key, flow->body.value}}, on_written, flow};
    pool_query(layer->pool, &upsert);
}

/* ---- reads ---- */

static void free_read_flow(struct read_flow *flow)
{
    free(flow->key);
    free(flow->token);
    free(flow);
}

static void reply_read(struct read_flow *flow, json_t *reply, const char *level)
{
    json_object_set_new(reply, "cache_level", json_string(level));
    http_reply_json(flow->req, 200, reply);
}

/*
 * L1 holds the whole body of an L1 hit's reply, so that a hit is a lookup and a copy: no JSON
 * parsing or printing on the hottest path.
 */
static void l1_fill(struct layer *layer, struct read_flow *flow, const struct record *rec)
{
    if (!l1_coherence_fill_allowed(layer->coherence, flow->key, flow->key_len, flow->epoch))
        return;
    json_t *reply = record_read_reply(rec, flow->key, flow->key_len);
    json_object_set_new(reply, "cache_level", json_string("L1"));
    char *body = json_dumps(reply, JSON_COMPACT);
    json_decref(reply);
    l1_cache_put(layer->l1, flow->key, flow->key_len, body, strlen(body), monotonic_ms());
    free(body);
}

/* Both tiers: L2 under the version seen on the miss, L1 if no invalidation raced. */
static void fill(struct layer *layer, struct read_flow *leader, const struct record *rec)
{
    if (leader->token != NULL) {
        size_t len;
        char *data = record_to_cache(rec, &len);
        cache_aside_fill(layer->l2, leader->key, leader->key_len, leader->token, data, len);
        free(data);
    }
    l1_fill(layer, leader, rec);
}

static void on_read(PGresult *res, enum pg_status status, void *arg)
{
    struct read_flow *leader = arg;
    struct layer *layer = http_request_arg(leader->req);
    struct record *rec = status == PG_OK ? records_row(res, leader->key, leader->key_len) : NULL;
    if (rec != NULL)
        fill(layer, leader, rec);
    size_t count;
    void **flows =
        single_flight_finish(layer->flights, leader->key, leader->key_len, leader, &count);
    for (size_t i = 0; i < count; i++) {
        struct read_flow *flow = flows[i];
        if (status == PG_OK)
            reply_read(flow, record_read_reply(rec, flow->key, flow->key_len), "L3");
        else
            records_reply_failure(flow->req, status);
        free_read_flow(flow);
    }
    free(flows);
    record_free(rec);
}

static void on_l2(enum cache_result result, const char *data, size_t len, const char *token,
                  void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    struct record *rec =
        result == CACHE_HIT ? record_from_cache(flow->key, flow->key_len, data, len) : NULL;
    if (rec != NULL) {             /* a malformed entry is a miss */
        l1_fill(layer, flow, rec); /* promote */
        reply_read(flow, record_read_reply(rec, flow->key, flow->key_len), "L2");
        free_read_flow(flow);
        record_free(rec);
        return;
    }
    flow->token = token ? xstrdup(token) : NULL;
    if (!single_flight_join(layer->flights, flow->key, flow->key_len, flow)) {
        metrics_inc(server_metrics(layer->server), METRIC_CACHE_COALESCED);
        return; /* the leader's query will answer this request too */
    }
    struct pg_call read = {{RECORDS_SQL_READ, 1, {flow->key}}, on_read, flow};
    pool_query(layer->pool, &read);
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
    flow->epoch = l1_coherence_epoch(layer->coherence);
    struct metrics *m = server_metrics(layer->server);
    const char *row;
    size_t len;
    if (l1_coherence_trusted(layer->coherence) && l1_cache_get(layer->l1, key, key_len, monotonic_ms(), &row, &len)) {
        metrics_inc(m, METRIC_L1_HITS);
        struct evbuffer *body = evbuffer_new();
        evbuffer_add(body, row, len);
        http_reply_buffer(req, 200, "application/json", body);
        evbuffer_free(body);
        free_read_flow(flow);
        return;
    }
    metrics_inc(m, METRIC_L1_MISSES);
    cache_aside_get(layer->l2, flow->key, flow->key_len, on_l2, flow);
}

/* ---- health ---- */

static void on_health(PGresult *res, enum pg_status status, void *arg)
{
    struct http_request *req = arg;
    struct layer *layer = http_request_arg(req);
    (void)res;
    bool cache = cache_aside_available(layer->l2), subscribed = l1_coherence_trusted(layer->coherence);
    /* The in-process tier is used only while invalidations arrive: without them it is
     * bypassed ("l1_cache" unavailable), and reads go to Redis and PostgreSQL (degraded).
     * "cache" and "invalidations" are this server's names from before, kept. */
    struct health health;
    health_begin(&health, server_spec(layer->server)->layer);
    health_member(&health, "database", status == PG_OK, HEALTH_REQUIRED);
    health_member(&health, "l1_cache", subscribed, HEALTH_OPTIONAL);
    health_member(&health, "l2_cache", cache, HEALTH_OPTIONAL);
    health_member(&health, "cache", cache, HEALTH_OPTIONAL);
    health_member(&health, "invalidations", subscribed, HEALTH_OPTIONAL);
    health_reply(req, &health);
}

void handle_health(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct pg_call check = {.statement = {.sql = "SELECT 1"}, .cb = on_health, .arg = req};
    struct pg_call within = health_call_within(server_base(layer->server), &check);
    pool_query(layer->pool, &within);
}

/* ---- statistics and clearing ---- */

static json_t *rate(unsigned long long part, unsigned long long whole)
{
    return json_real(whole ? round(10000.0 * (double)part / (double)whole) / 100.0 : 0.0);
}

static void on_counted(long long keys, void *arg)
{
    struct http_request *req = arg;
    struct layer *layer = http_request_arg(req);
    struct metrics *m = server_metrics(layer->server);
    unsigned long long l1_hits = metrics_get(m, METRIC_L1_HITS);
    unsigned long long l1_misses = metrics_get(m, METRIC_L1_MISSES);
    unsigned long long l2_hits = metrics_get(m, METRIC_CACHE_HITS);
    unsigned long long l2_misses = metrics_get(m, METRIC_CACHE_MISSES);
    unsigned long long reads = l1_hits + l1_misses;
    struct pool_stats pool;
    pool_get_stats(layer->pool, &pool);
    json_t *stats = json_object();
    json_object_set_new(stats, "l1_cache_available", json_boolean(l1_coherence_trusted(layer->coherence)));
    l1_cache_stats_into(layer->l1, stats);
    json_object_set_new(stats, "l1_cache_hits", json_integer((json_int_t)l1_hits));
    json_object_set_new(stats, "l1_cache_misses", json_integer((json_int_t)l1_misses));
    json_object_set_new(stats, "l1_hit_rate", rate(l1_hits, reads));
    json_object_set_new(stats, "l2_cache_available", json_boolean(keys != CACHE_COUNT_FAILED));
    json_object_set_new(stats, "l2_cache_keys", keys >= 0 ? json_integer(keys) : json_null());
    json_object_set_new(stats, "l2_cache_hits", json_integer((json_int_t)l2_hits));
    json_object_set_new(stats, "l2_cache_misses", json_integer((json_int_t)l2_misses));
    json_object_set_new(stats, "l2_hit_rate", rate(l2_hits, l2_hits + l2_misses));
    json_object_set_new(stats, "db_pool_size", json_integer(pool.size));
    json_object_set_new(stats, "total_hits", json_integer((json_int_t)(l1_hits + l2_hits)));
    json_object_set_new(stats, "total_misses",
                        json_integer((json_int_t)(reads - l1_hits - l2_hits)));
    json_object_set_new(stats, "overall_hit_rate", rate(l1_hits + l2_hits, reads));
    http_reply_json(req, 200, stats);
}

void handle_stats(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    cache_aside_count(layer->l2, on_counted, req);
}

static void on_cleared(long long keys, void *arg)
{
    struct http_request *req = arg;
    if (keys < 0) {
        http_reply_error(req, 503, "Cache unavailable");
        return;
    }
    http_reply_json(req, 200,
                    json_pack("{s:b, s:s}", "success", 1, "message", "All caches cleared"));
}

void handle_clear_cache(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    l1_coherence_invalidate(layer->coherence, NULL, 0);
    l1_coherence_publish_clear(layer->coherence); /* every other instance too */
    cache_aside_clear(layer->l2, on_cleared, req);
}
