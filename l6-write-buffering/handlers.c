/*
 * Layer 6: write buffering (Redis Streams + workers). The read and write paths of the API.
 *
 * Writes no longer wait for PostgreSQL: they are appended to a Redis Stream and answered at
 * once; worker processes (worker.c) drain the stream into the database in batches. Reads look
 * for a queued value first, so a client reads its own write before any worker has run.
 *
 *   POST /write     -> validate -> EVAL WRITE_SCRIPT (backpressure, XADD, pending value) -> 200
 *   GET /read/{key} -> validate -> HGET pending -> cache-aside as in layer 2 (hit, or miss ->
 *                      single-flight -> pool_query(SELECT) -> fill) -> 200, with the queued
 *                      value (pending: true) if there is one
 *
 * The trade: between the 200 and the worker's COMMIT the write lives only in Redis, so Redis
 * must persist it (AOF) and the reply says "queued", not "written". See README.md.
 */
#include "handlers.h"

#include "cache_aside.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "records.h"
#include "redis.h"
#include "server.h"
#include "single_flight.h"
#include "validate.h"
#include "write_queue.h"
#include "xalloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One write in flight: the request and its validated body (owns the key and value strings). */
struct write_flow {
    struct http_request *req;  /* answered exactly once, in on_queued */
    struct write_request body; /* key and value */
};

/* One read in flight. */
struct read_flow {
    struct http_request *req;    /* answered exactly once */
    char *key;                   /* percent-decoded key */
    size_t key_len;              /* its length in bytes */
    char *token;                 /* the cache version seen on the miss, or NULL (cache down) */
    json_t *pending;             /* the queued value {"id","created","value"}, or NULL */
    unsigned long long lookup;   /* number of this read's pending lookup (1, 2, ...) */
    unsigned long long joinable; /* as a flight's leader: readers up to this lookup may join */
    struct layer *layer;         /* for the cache and the pool */
};

/* ---- the write path ---- */

static void refuse_write(struct http_request *req, const char *detail)
{
    http_request_set_header(req, "Retry-After", "1");
    http_reply_error(req, 503, detail);
}

static void on_queued(redisReply *reply, void *arg)
{
    struct write_flow *flow = arg;
    if (reply == NULL) {
        refuse_write(flow->req, "Queue unavailable");
    } else if (reply->type == REDIS_REPLY_ERROR) {
        bool full = strncmp(reply->str, WQ_FULL, strlen(WQ_FULL)) == 0;
        if (!full)
            RLOG_WARN(http_request_id(flow->req), "queue refused a write: %s", reply->str);
        refuse_write(flow->req, full ? "Queue full" : "Queue unavailable");
    } else {
        http_reply_json(flow->req, 200,
                        json_pack("{s:b, s:s%, s:b, s:s}", "success", 1, "key", flow->body.key,
                                  flow->body.key_len, "queued", 1, "message",
                                  "Write queued successfully"));
    }
    write_request_cleanup(&flow->body);
    free(flow);
}

void handle_write(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct write_flow *flow = xcalloc(1, sizeof *flow);
    json_t *errors = json_array();
    size_t len;
    const char *body = http_request_body(req, &len);
    if (!validate_write_request(body, len, layer->max_value_bytes, &flow->body, errors)) {
        free(flow);
        http_reply_validation(req, errors);
        return;
    }
    json_decref(errors);
    flow->req = req;
    char max_length[24], max_age[24];
    snprintf(max_length, sizeof max_length, "%ld", layer->queue_max_length);
    snprintf(max_age, sizeof max_age, "%ld", layer->queue_max_age_ms);
    const char *argv[] = {"EVAL",         WQ_WRITE_SCRIPT, "3",        WQ_STREAM,
                          WQ_PENDING,     WQ_STATS,        flow->body.key, flow->body.value,
                          max_length,     max_age};
    const size_t lens[] = {4,
                           strlen(WQ_WRITE_SCRIPT),
                           1,
                           strlen(WQ_STREAM),
                           strlen(WQ_PENDING),
                           strlen(WQ_STATS),
                           flow->body.key_len,
                           flow->body.value_len,
                           strlen(max_length),
                           strlen(max_age)};
    redis_command(layer->redis, on_queued, flow, 10, argv, lens);
}

/* ---- the read path ---- */

static void free_read_flow(struct read_flow *flow)
{
    free(flow->key);
    free(flow->token);
    json_decref(flow->pending);
    free(flow);
}

/*
 * Answers with `found` (a records_*_reply, owned) or, when a write of the key is queued, with
 * that write: its value, updated_at at its append, created_at of the row if there is one (else
 * the time the first of the key's queued writes was appended, which the row will get).
 */
static void reply_read(struct read_flow *flow, json_t *found, bool from_cache)
{
    if (flow->pending != NULL) {
        struct wq_id id;
        const char *id_text = json_string_value(json_object_get(flow->pending, "id"));
        const char *created = json_string_value(json_object_get(flow->pending, "created"));
        char updated_at[32], created_at[32];
        json_t *row_created = json_object_get(found, "created_at");
        if (!wq_parse_id(id_text, strlen(id_text), &id))
            id.ms = 0;
        wq_format_ms(id.ms, updated_at, sizeof updated_at);
        wq_format_ms(created ? atoll(created) : id.ms, created_at, sizeof created_at);
        json_t *reply = json_pack(
            "{s:b, s:s%, s:O, s:s, s:s, s:n, s:b, s:b}", "success", 1, "key", flow->key,
            flow->key_len, "value", json_object_get(flow->pending, "value"), "created_at",
            json_is_string(row_created) ? json_string_value(row_created) : created_at,
            "updated_at", updated_at, "message", "from_cache", 1, "pending", 1);
        json_decref(found);
        http_reply_json(flow->req, 200, reply);
        return;
    }
    json_object_set_new(found, "from_cache", json_boolean(from_cache));
    json_object_set_new(found, "pending", json_false());
    http_reply_json(flow->req, 200, found);
}

static void query_or_join(struct read_flow *flow);

static void on_read(PGresult *res, enum pg_status status, void *arg)
{
    struct read_flow *leader = arg;
    struct layer *layer = leader->layer;
    size_t count;
    void **waiters =
        single_flight_finish(layer->flights, leader->key, leader->key_len, leader, &count);
    for (size_t i = 0; i <= count; i++) {
        struct read_flow *flow = i < count ? waiters[i] : leader;
        if (flow->lookup > leader->joinable) {
            query_or_join(flow); /* joined too late to trust this result: see query_or_join */
            continue;
        }
        if (status == PG_OK)
            reply_read(flow, records_read_reply(res, flow->key, flow->key_len), false);
        else if (flow->pending != NULL) /* the queued value needs no database */
            reply_read(flow, NULL, false);
        else
            records_reply_failure(flow->req, status);
        if (flow != leader)
            free_read_flow(flow);
    }
    free(waiters);
    if (status == PG_OK && PQntuples(res) == 1 && leader->token != NULL) {
        json_t *row = json_pack("{s:s%, s:s, s:s}", "value", PQgetvalue(res, 0, 0),
                                (size_t)PQgetlength(res, 0, 0), "created_at",
                                PQgetvalue(res, 0, 1), "updated_at", PQgetvalue(res, 0, 2));
        char *data = json_dumps(row, JSON_COMPACT);
        cache_aside_fill(layer->cache, leader->key, leader->key_len, leader->token, data,
                         strlen(data));
        free(data);
        json_decref(row);
    }
    free_read_flow(leader);
}

/*
 * Single-flight across processes. In layer 2 the writer forgets the key's flight when it
 * commits; here the commit happens in a worker, which cannot reach this process's flights. So
 * a reader may join a flight only if the flight's query certainly started after the commit of
 * any write this reader no longer saw pending. The worker removes a pending value only after
 * its COMMIT, and Redis answers one connection in order: when the leader sends its query, every
 * lookup answered so far ran before, so a reader whose (empty) lookup is among them saw the
 * pending value gone after the commit, before the query. Readers with a later lookup that joined
 * anyway are sent to a new query when the flight ends (rare: they arrived mid-query).
 */
static void query_or_join(struct read_flow *flow)
{
    struct layer *layer = flow->layer;
    if (!single_flight_join(layer->flights, flow->key, flow->key_len, flow)) {
        metrics_inc(server_metrics(layer->server), METRIC_CACHE_COALESCED);
        return; /* the leader's query will answer this request too */
    }
    flow->joinable = layer->lookups_answered;
    const char *values[] = {flow->key};
    pool_query(layer->pool, RECORDS_SQL_READ, 1, values, on_read, flow);
}

static void on_cache(enum cache_result result, const char *data, size_t len, const char *token,
                     void *arg)
{
    struct read_flow *flow = arg;
    if (result == CACHE_HIT) {
        json_t *row = json_loadb(data, len, 0, NULL);
        json_t *reply = records_cached_reply(row, flow->key, flow->key_len);
        json_decref(row);
        if (reply != NULL) {
            reply_read(flow, reply, true);
            free_read_flow(flow);
            return;
        }
    }
    flow->token = token ? xstrdup(token) : NULL;
    query_or_join(flow);
}

/* The pending value of the key, if a write of it is queued and not yet committed. */
static void on_pending(redisReply *reply, void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = flow->layer;
    if (flow->lookup > layer->lookups_answered)
        layer->lookups_answered = flow->lookup;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        /* Without the queue this read cannot know whether a newer write is waiting in it:
         * answering from PostgreSQL could go back in time. */
        http_reply_error(flow->req, 503, "Queue unavailable");
        free_read_flow(flow);
        return;
    }
    if (reply->type == REDIS_REPLY_STRING) {
        flow->pending = json_loadb(reply->str, reply->len, 0, NULL);
        if (!json_is_string(json_object_get(flow->pending, "id")) ||
            !json_is_string(json_object_get(flow->pending, "value"))) {
            RLOG_WARN(http_request_id(flow->req), "ignoring a malformed pending value");
            json_decref(flow->pending);
            flow->pending = NULL;
        }
    }
    cache_aside_get(layer->cache, flow->key, flow->key_len, on_cache, flow);
}

void handle_read(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct route_param raw = http_request_param(req, 0);
    json_t *errors = json_array();
    size_t key_len;
    char *key = validate_path_key(raw.raw, raw.len, &key_len, errors);
    if (key == NULL) {
        http_reply_validation(req, errors);
        return;
    }
    json_decref(errors);
    struct read_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->key = key;
    flow->key_len = key_len;
    flow->layer = layer;
    flow->lookup = ++layer->lookups;
    const char *argv[] = {"HGET", WQ_PENDING, key};
    const size_t lens[] = {4, strlen(WQ_PENDING), key_len};
    redis_command(layer->redis, on_pending, flow, 3, argv, lens);
}

/* ---- health and statistics ---- */

/* The queue's numbers, from one WQ_STATS_SCRIPT call. */
struct queue_stats {
    bool available; /* Redis answered */
    long long length, queued, processed, batches, pending, dead, oldest_age_ms, workers;
};

struct status_flow {
    struct http_request *req; /* answered exactly once */
    struct layer *layer;      /* whose queue */
    struct queue_stats queue; /* as read */
};

static void read_queue_stats(const redisReply *reply, struct queue_stats *out)
{
    *out = (struct queue_stats){0};
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 8)
        return;
    long long *fields[] = {&out->length,  &out->queued, &out->processed,     &out->batches,
                           &out->pending, &out->dead,   &out->oldest_age_ms, &out->workers};
    for (size_t i = 0; i < 8; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return;
        *fields[i] = reply->element[i]->integer;
    }
    out->available = true;
}

static void send_queue_stats(struct layer *layer, redis_reply_cb cb, void *arg)
{
    const char *argv[] = {"EVAL",   WQ_STATS_SCRIPT, "4",        WQ_STREAM,
                          WQ_STATS, WQ_DEAD,         WQ_WORKERS, WQ_GROUP};
    size_t lens[8];
    for (size_t i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    redis_command(layer->redis, cb, arg, 8, argv, lens);
}

/* The queue is healthy when Redis answers and a write would be accepted now. */
static bool queue_healthy(const struct layer *layer, const struct queue_stats *q)
{
    return q->available && q->length < layer->queue_max_length &&
           q->oldest_age_ms <= layer->queue_max_age_ms;
}

/*
 * PostgreSQL down is "degraded", not "unhealthy": writes are still accepted (the stream grows
 * and drains when it returns), and reads of queued keys still answer. Only a queue that
 * cannot be reached makes the API unusable (no write is accepted, no read can be trusted).
 */
static void on_health_db(PGresult *res, enum pg_status status, void *arg)
{
    struct status_flow *flow = arg;
    struct layer *layer = flow->layer;
    (void)res;
    bool db = status == PG_OK, cache = cache_aside_available(layer->cache);
    bool queue = queue_healthy(layer, &flow->queue);
    const char *overall = !flow->queue.available      ? "unhealthy"
                          : db && cache && queue ? "healthy"
                                                 : "degraded";
    http_reply_json(
        flow->req, flow->queue.available ? 200 : 503,
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "status", overall, "layer",
                  "6-write-buffering", "database", db ? "healthy" : "unavailable", "cache",
                  cache ? "healthy" : "unavailable", "queue", queue ? "healthy" : "unavailable",
                  "queue_length",
                  flow->queue.available ? json_integer(flow->queue.length) : json_null()));
    free(flow);
}

static void on_health_queue(redisReply *reply, void *arg)
{
    struct status_flow *flow = arg;
    read_queue_stats(reply, &flow->queue);
    pool_query(flow->layer->pool, "SELECT 1", 0, NULL, on_health_db, flow);
}

void handle_health(struct http_request *req, void *arg)
{
    struct status_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->layer = arg;
    send_queue_stats(flow->layer, on_health_queue, flow);
}

static json_t *count_or_null(bool available, long long n)
{
    return available ? json_integer(n) : json_null();
}

static void on_counted(long long keys, void *arg)
{
    struct status_flow *flow = arg;
    struct layer *layer = flow->layer;
    const struct queue_stats *q = &flow->queue;
    struct metrics *m = server_metrics(layer->server);
    unsigned long long hits = metrics_get(m, METRIC_CACHE_HITS);
    unsigned long long misses = metrics_get(m, METRIC_CACHE_MISSES);
    double rate =
        hits + misses ? round(10000.0 * (double)hits / (double)(hits + misses)) / 100.0 : 0.0;
    bool cache = keys != CACHE_COUNT_FAILED;
    struct pool_stats pool;
    pool_get_stats(layer->pool, &pool);
    json_t *reply = json_pack(
        "{s:b, s:o, s:o, s:o, s:o, s:i}", "cache_available", cache, "cache_hits",
        count_or_null(cache, (long long)hits), "cache_misses",
        count_or_null(cache, (long long)misses), "cache_keys",
        count_or_null(cache && keys >= 0, keys), "cache_hit_rate",
        cache ? json_real(rate) : json_null(), "db_pool_size", pool.size);
    bool ok = q->available;
    json_object_set_new(reply, "queue_available", json_boolean(ok));
    json_object_set_new(reply, "queue_length", count_or_null(ok, q->length));
    json_object_set_new(reply, "writes_queued", count_or_null(ok, q->queued));
    json_object_set_new(reply, "writes_processed", count_or_null(ok, q->processed));
    json_object_set_new(reply, "pending", count_or_null(ok, q->pending));
    json_object_set_new(reply, "dead_letters", count_or_null(ok, q->dead));
    json_object_set_new(reply, "oldest_pending_age_ms",
                        count_or_null(ok, q->oldest_age_ms < 0 ? 0 : q->oldest_age_ms));
    json_object_set_new(reply, "batches", count_or_null(ok, q->batches));
    json_object_set_new(reply, "mean_batch_size",
                        ok ? json_real(q->batches ? round(100.0 * (double)q->processed /
                                                          (double)q->batches) /
                                                        100.0
                                                  : 0.0)
                           : json_null());
    json_object_set_new(reply, "workers", count_or_null(ok, q->workers));
    json_object_set_new(reply, "queue_max_length", json_integer(layer->queue_max_length));
    json_object_set_new(reply, "queue_max_age_ms", json_integer(layer->queue_max_age_ms));
    http_reply_json(flow->req, 200, reply);
    free(flow);
}

static void on_stats_queue(redisReply *reply, void *arg)
{
    struct status_flow *flow = arg;
    read_queue_stats(reply, &flow->queue);
    cache_aside_count(flow->layer->cache, on_counted, flow);
}

void handle_stats(struct http_request *req, void *arg)
{
    struct status_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->layer = arg;
    send_queue_stats(flow->layer, on_stats_queue, flow);
}
