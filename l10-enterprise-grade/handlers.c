/*
 * Layer 10: the enterprise edge. The read and write paths: layer 5's three tiers over layer
 * 4's shards, each request admitted by the protections first (edge.h), each backend behind
 * its circuit breaker, each query within what is left of the request's budget.
 *
 *   GET /read/{key} -> edge (shed, key, budget) -> L1 (this process) hit -> 200 "L1"
 *                   -> L2 (Redis, unless its breaker is open) hit -> promote into L1 -> 200 "L2"
 *                   -> the key's shard (its breaker, the budget left; one query per key at a
 *                      time) -> fill L2 and L1 -> 200 "L3"
 *   POST /write     -> edge -> the key's shard (breaker, budget) -> invalidate L2 and PUBLISH
 *                      the key (one script) -> drop from this L1 -> 200 "Written to shardN"
 *
 * An open shard breaker answers that shard's keys 503 at once with Retry-After; the other
 * shards' keys are untouched. An open cache breaker skips L2 (and L1 fills, which need
 * invalidations) and reads go to the shards. The in-process tier is kept coherent as in layer 5
 * (l1_coherence.h).
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
#include "process.h"
#include "rate_limit.h"
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
    struct edge_call *call;    /* answered exactly once: in on_written, or at its deadline */
    struct write_request body; /* key and value, kept alive until the query is done */
    int shard;                 /* where the key lives */
    struct layer *layer;       /* its layer (the call is gone after a deadline reply) */
};

/* One read in flight. */
struct read_flow {
    struct edge_call *call; /* answered exactly once */
    char *key;              /* percent-decoded key */
    size_t key_len;         /* its length in bytes */
    char *token;            /* L2's version on a miss, or NULL (Redis down) */
    uint64_t epoch;         /* invalidations seen when the read started */
};

static void shard_name(int shard, char *out, size_t size)
{
    snprintf(out, size, "shard%d", shard + 1); /* 1-based, as the Python version names them */
}

/* ---- the shard a key lives on, behind its breaker and the request's deadline ---- */

static void query_shard(struct edge_call *call, int shard, const struct pg_call *query)
{
    struct layer *layer = call->arg;
    call->shard = shard;
    struct pg_call guarded;
    enum edge_refusal why = edge_guard_pg(call, layer->shard_breakers[shard], query, &guarded);
    if (why != EDGE_GO) {
        query->cb(NULL, why == EDGE_BREAKER_OPEN ? PG_BUSY : PG_UNAVAILABLE, query->arg);
        return;
    }
    shard_set_query(layer->shards, SHARD_CURRENT, shard, &guarded);
}

/* A failed query's reply: an open breaker says so with Retry-After. */
static void reply_failure(struct edge_call *call, enum pg_status status)
{
    struct layer *layer = call->arg;
    struct breaker *b = call->shard >= 0 ? layer->shard_breakers[call->shard] : NULL;
    if (b != NULL && breaker_state(b) != BREAKER_CLOSED) {
        edge_reply_refused(call, EDGE_BREAKER_OPEN, b, "Database");
        return;
    }
    if (status == PG_UNAVAILABLE && edge_remaining_ms(call) <= 0) {
        edge_reply_refused(call, EDGE_BUDGET_SPENT, NULL, "Database");
        return;
    }
    edge_reply_failure(call, status);
}

/* ---- writes ---- */

/* The budget ran out before the shard answered: 503 now; on_written still comes, and cleans
 * the caches if the write did commit after all. */
static void on_write_expired(void *arg)
{
    struct write_flow *flow = arg;
    edge_reply_refused(flow->call, EDGE_BUDGET_SPENT, NULL, "Database");
    flow->call = NULL;
}

static void on_written(PGresult *res, enum pg_status status, void *arg)
{
    struct write_flow *flow = arg;
    struct layer *layer = flow->layer;
    (void)res;
    bool cached = cache_aside_available(layer->l2);
    if (status == PG_OK) {
        /* One script invalidates L2 and publishes the key to every instance (layer 5). */
        cache_aside_invalidate(layer->l2, flow->body.key, flow->body.key_len);
        l1_coherence_invalidate(layer->coherence, flow->body.key, flow->body.key_len);
    }
    if (flow->call == NULL) {
        /* answered at the deadline */
    } else if (status == PG_OK) {
        json_t *reply = record_write_reply(flow->body.key, flow->body.key_len);
        char shard[24], message[64];
        shard_name(flow->shard, shard, sizeof shard);
        snprintf(message, sizeof message, "Written to %s%s", shard, cached ? " and cached" : "");
        json_object_set_new(reply, "message", json_string(message));
        json_object_set_new(reply, "shard", json_string(shard));
        json_object_set_new(reply, "cached", json_boolean(cached));
        edge_reply_json(flow->call, 200, reply);
    } else {
        reply_failure(flow->call, status);
    }
    write_request_cleanup(&flow->body);
    free(flow);
}

void handle_write(struct edge_call *call)
{
    struct layer *layer = call->arg;
    struct write_request body;
    if (!validate_write_body(call->req, layer->max_value_bytes, &body)) {
        edge_replied(call, 422);
        return;
    }
    struct write_flow *flow = xcalloc(1, sizeof *flow);
    flow->call = call;
    flow->layer = layer;
    flow->body = body;
    flow->shard = call->shard = shard_set_lookup(layer->shards, body.key, body.key_len);
    struct pg_call upsert = {
        {RECORDS_SQL_UPSERT, 2, {flow->body.key, flow->body.value}}, on_written, flow};
    struct pg_call guarded;
    enum edge_refusal why = edge_guard_pg_write(call, layer->shard_breakers[flow->shard], &upsert,
                                                on_write_expired, &guarded);
    if (why != EDGE_GO) {
        edge_reply_refused(call, why, layer->shard_breakers[flow->shard], "Database");
        write_request_cleanup(&flow->body);
        free(flow);
        return;
    }
    shard_set_query(layer->shards, SHARD_CURRENT, flow->shard, &guarded);
}

/* ---- reads ---- */

static void free_read_flow(struct read_flow *flow)
{
    free(flow->key);
    free(flow->token);
    free(flow);
}

static void decorate(json_t *reply, const char *level, int shard)
{
    char name[24];
    shard_name(shard, name, sizeof name);
    json_object_set_new(reply, "cache_hit", json_boolean(strcmp(level, "L3") != 0));
    json_object_set_new(reply, "cache_level", json_string(level));
    json_object_set_new(reply, "shard", json_string(name));
}

static void reply_read(struct read_flow *flow, json_t *reply, const char *level)
{
    struct edge_call *call = flow->call;
    decorate(reply, level, call->shard);
    call->cache_level = level;
    json_object_set_new(reply, "latency_ms", json_integer(monotonic_ms() - call->started_ms));
    edge_reply_json(call, 200, reply);
}

/*
 * L1 holds the reply's body without its last member (latency_ms, which differs per request)
 * and without the closing brace, so that a hit is a lookup, a copy and a number.
 */
static void l1_fill(struct layer *layer, struct read_flow *flow, const struct record *rec)
{
    if (!l1_coherence_fill_allowed(layer->coherence, flow->key, flow->key_len, flow->epoch))
        return;
    json_t *reply = record_read_reply(rec, flow->key, flow->key_len);
    decorate(reply, "L1", flow->call->shard);
    char *body = json_dumps(reply, JSON_COMPACT);
    json_decref(reply);
    l1_cache_put(layer->l1, flow->key, flow->key_len, body, strlen(body) - 1, monotonic_ms());
    free(body);
}

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
    struct layer *layer = leader->call->arg;
    struct record *rec = status == PG_OK ? records_row(res, leader->key, leader->key_len) : NULL;
    if (rec != NULL)
        fill(layer, leader, rec);
    size_t count;
    int shard = leader->call->shard; /* the leader's call is freed with its reply */
    void **flows =
        single_flight_finish(layer->flights, leader->key, leader->key_len, leader, &count);
    for (size_t i = 0; i < count; i++) {
        struct read_flow *flow = flows[i];
        flow->call->shard = shard;
        if (status == PG_OK)
            reply_read(flow, record_read_reply(rec, flow->key, flow->key_len), "L3");
        else
            reply_failure(flow->call, status);
        free_read_flow(flow);
    }
    free(flows);
    record_free(rec);
}

static void read_shard(struct layer *layer, struct read_flow *flow)
{
    if (!single_flight_join(layer->flights, flow->key, flow->key_len, flow)) {
        metrics_inc(server_metrics(layer->server), METRIC_CACHE_COALESCED);
        return; /* the leader's query will answer this request too */
    }
    struct pg_call read = {{RECORDS_SQL_READ, 1, {flow->key}}, on_read, flow};
    query_shard(flow->call, flow->call->shard, &read);
}

static void on_l2(enum cache_result result, const char *data, size_t len, const char *token,
                  void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = flow->call->arg;
    if (layer->cache_breaker != NULL)
        breaker_record(layer->cache_breaker, result != CACHE_UNAVAILABLE, monotonic_ms());
    struct record *rec =
        result == CACHE_HIT ? record_from_cache(flow->key, flow->key_len, data, len) : NULL;
    if (rec != NULL) {
        l1_fill(layer, flow, rec); /* promote */
        reply_read(flow, record_read_reply(rec, flow->key, flow->key_len), "L2");
        free_read_flow(flow);
        record_free(rec);
        return;
    }
    flow->token = token ? xstrdup(token) : NULL;
    read_shard(layer, flow);
}

void handle_read(struct edge_call *call)
{
    struct layer *layer = call->arg;
    size_t key_len;
    char *key = validate_key_param(call->req, &key_len);
    if (key == NULL) {
        edge_replied(call, 422);
        return;
    }
    struct read_flow *flow = xcalloc(1, sizeof *flow);
    flow->call = call;
    flow->key = key;
    flow->key_len = key_len;
    flow->epoch = l1_coherence_epoch(layer->coherence);
    struct metrics *m = server_metrics(layer->server);
    const char *row;
    size_t len;
    long long now = monotonic_ms(); /* one clock read for the lookup and a hit's latency */
    if (l1_coherence_trusted(layer->coherence) &&
        l1_cache_get(layer->l1, key, key_len, now, &row, &len)) {
        /* The cached body names its shard: the key's hash (an MD5) only for the log line. */
        if (edge_logs_requests())
            call->shard = shard_set_lookup(layer->shards, key, key_len);
        metrics_inc(m, METRIC_L1_HITS);
        struct evbuffer *body = evbuffer_new();
        evbuffer_add(body, row, len);
        char ms[EDGE_DECIMAL_LEN];
        const char *text = edge_decimal(now - call->started_ms, ms);
        evbuffer_add(body, ",\"latency_ms\":", strlen(",\"latency_ms\":"));
        evbuffer_add(body, text, strlen(text));
        evbuffer_add(body, "}", 1);
        call->cache_level = "L1";
        edge_reply_buffer(call, 200, body);
        evbuffer_free(body);
        free_read_flow(flow);
        return;
    }
    metrics_inc(m, METRIC_L1_MISSES);
    call->shard = shard_set_lookup(layer->shards, key, key_len);
    if (layer->cache_breaker != NULL && !breaker_allow(layer->cache_breaker, monotonic_ms())) {
        read_shard(layer, flow); /* L2 is failing: straight to the shard, no fill */
        return;
    }
    cache_aside_get(layer->l2, flow->key, flow->key_len, on_l2, flow);
}

/* ---- shards behind an open breaker: probed, so that a returned shard is used again soon ---- */

static void on_probe(PGresult *res, enum pg_status status, void *arg)
{
    (void)res;
    struct shard_probe *probe = arg;
    probe->out = false;
    struct layer *layer = probe->layer;
    if (status == PG_OK && !layer->stopping)
        breaker_backend_answered(layer->shard_breakers[probe->shard], monotonic_ms());
}

void probe_open_shards(struct layer *layer)
{
    int n = shard_set_count(layer->shards);
    for (int i = 0; i < n && i < LAYER10_MAX_SHARDS; i++) {
        struct breaker *b = layer->shard_breakers[i];
        struct shard_probe *probe = &layer->probes[i];
        if (b == NULL || probe->out || breaker_state(b) != BREAKER_OPEN)
            continue;
        probe->layer = layer;
        probe->shard = i;
        probe->out = true;
        struct pg_call select = {{"SELECT 1", 0, {NULL}}, on_probe, probe};
        struct pg_call within =
            pg_call_within(server_base(layer->server), &select, layer->check_timeout_ms);
        shard_set_query(layer->shards, SHARD_CURRENT, i, &within);
    }
}

/* ---- health and readiness ---- */

static void on_health(const struct shard_answer *answers, int count, void *arg)
{
    struct http_request *req = arg;
    struct layer *layer = http_request_arg(req);
    int up = 0;
    for (int i = 0; i < count; i++)
        up += answers[i].status == PG_OK;
    /* Some shards down: their keys fail, the others are served (degraded); none: unhealthy. */
    struct health health;
    health_begin(&health, server_spec(layer->server)->layer);
    health_member(&health, "database", up == count, up == 0 ? HEALTH_REQUIRED : HEALTH_OPTIONAL);
    json_t *shards = json_object();
    for (int i = 0; i < count; i++) {
        char name[24];
        shard_name(i, name, sizeof name);
        if (answers[i].status == PG_OK && i < LAYER10_MAX_SHARDS &&
            layer->shard_breakers[i] != NULL) /* it answers: no need to wait out the open time */
            breaker_backend_answered(layer->shard_breakers[i], monotonic_ms());
        json_object_set_new(shards, name, json_boolean(answers[i].status == PG_OK));
    }
    json_object_set_new(health.body, "shards_healthy", shards);
    bool l1 = l1_coherence_trusted(layer->coherence), l2 = cache_aside_available(layer->l2);
    health_note(&health, l1 && l2, HEALTH_OPTIONAL);
    json_object_set_new(health.body, "caches_healthy", json_pack("{s:b, s:b}", "L1", l1, "L2", l2));
    /* Shared budgets need the limiter's Redis connected and its breaker not open. */
    bool limiter =
        redis_available(layer->limit_redis) &&
        (layer->limit_breaker == NULL || breaker_state(layer->limit_breaker) == BREAKER_CLOSED);
    health_note(&health, limiter, HEALTH_OPTIONAL);
    json_object_set_new(health.body, "rate_limiter_healthy", json_boolean(limiter));
    json_object_set_new(health.body, "circuit_breakers", edge_breakers_json(layer->edge));
    health_reply(req, &health);
}

void handle_health(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    shard_set_fanout(layer->shards, "SELECT 1", layer->check_timeout_ms, on_health, req);
}

void handle_ready(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    bool ready = layer->listening && !process_stopping(server_process(layer->server));
    if (!ready)
        http_request_set_header(req, "Retry-After", "1");
    http_reply_json(req, ready ? 200 : 503,
                    json_pack("{s:s}", "status", ready ? "ready" : "not ready"));
}

/* ---- statistics and clearing ---- */

static json_t *rate(unsigned long long part, unsigned long long whole)
{
    return json_real(whole ? round(10000.0 * (double)part / (double)whole) / 100.0 : 0.0);
}

static void on_counted(long long keys, void *arg)
{
    struct edge_call *call = arg;
    struct layer *layer = call->arg;
    struct metrics *m = server_metrics(layer->server);
    unsigned long long l1_hits = metrics_get(m, METRIC_L1_HITS);
    unsigned long long l1_misses = metrics_get(m, METRIC_L1_MISSES);
    unsigned long long l2_hits = metrics_get(m, METRIC_CACHE_HITS);
    unsigned long long l2_misses = metrics_get(m, METRIC_CACHE_MISSES);
    unsigned long long reads = l1_hits + l1_misses;
    json_t *stats = json_object();
    json_object_set_new(stats, "requests", edge_outcomes_json(layer->edge));
    json_object_set_new(stats, "circuit_breakers", edge_breakers_json(layer->edge));
    json_object_set_new(stats, "rate_limit_shared",
                        json_boolean(rate_limiter_shared(layer->limiter)));
    json_object_set_new(stats, "rate_limit_waits",
                        json_integer((json_int_t)rate_limiter_waits(layer->limiter)));
    json_object_set_new(stats, "rate_limit_requests", json_integer(layer->rate_limit));
    json_object_set_new(stats, "rate_limit_window_s", json_integer(layer->rate_window_s));
    json_object_set_new(stats, "event_loop_lag_ms", json_integer(edge_loop_lag_ms(layer->edge)));
    json_object_set_new(
        stats, "in_flight",
        json_integer((json_int_t)http_server_in_flight(server_http(layer->server))));
    json_object_set_new(stats, "num_shards", json_integer(shard_set_count(layer->shards)));
    json_object_set_new(stats, "shard_pool_sizes", shard_set_pool_sizes_json(layer->shards));
    json_object_set_new(stats, "l1_cache_available",
                        json_boolean(l1_coherence_trusted(layer->coherence)));
    l1_cache_stats_into(layer->l1, stats);
    json_object_set_new(stats, "l1_cache_hits", json_integer((json_int_t)l1_hits));
    json_object_set_new(stats, "l1_cache_misses", json_integer((json_int_t)l1_misses));
    json_object_set_new(stats, "l1_hit_rate", rate(l1_hits, reads));
    json_object_set_new(stats, "l2_cache_available", json_boolean(keys != CACHE_COUNT_FAILED));
    json_object_set_new(stats, "l2_cache_keys", keys >= 0 ? json_integer(keys) : json_null());
    json_object_set_new(stats, "l2_cache_hits", json_integer((json_int_t)l2_hits));
    json_object_set_new(stats, "l2_cache_misses", json_integer((json_int_t)l2_misses));
    json_object_set_new(stats, "l2_hit_rate", rate(l2_hits, l2_hits + l2_misses));
    json_object_set_new(stats, "total_hits", json_integer((json_int_t)(l1_hits + l2_hits)));
    json_object_set_new(stats, "total_misses",
                        json_integer((json_int_t)(reads - l1_hits - l2_hits)));
    json_object_set_new(stats, "overall_hit_rate", rate(l1_hits + l2_hits, reads));
    edge_reply_json(call, 200, stats);
}

void handle_stats(struct edge_call *call)
{
    struct layer *layer = call->arg;
    cache_aside_count(layer->l2, on_counted, call);
}

static void on_cleared(long long keys, void *arg)
{
    struct edge_call *call = arg;
    if (keys < 0) {
        edge_reply_error(call, 503, "Cache unavailable");
        return;
    }
    edge_reply_json(call, 200,
                    json_pack("{s:b, s:s}", "success", 1, "message", "All caches cleared"));
}

void handle_clear_cache(struct edge_call *call)
{
    struct layer *layer = call->arg;
    l1_coherence_invalidate(layer->coherence, NULL, 0);
    l1_coherence_publish_clear(layer->coherence); /* every other instance too */
    cache_aside_clear(layer->l2, on_cleared, call);
}
