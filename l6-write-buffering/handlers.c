/*
 * Layer 6: write buffering (Redis Streams + workers). The read and write paths of the API.
 *
 * Writes no longer wait for PostgreSQL: they are appended to a Redis Stream and answered at
 * once; worker processes (worker.c) drain the stream into the database in batches. Reads look
 * for a queued write first, so a client reads its own write before any worker has run.
 *
 *   POST /write     -> validate (the usual body by a scan, write_body.c; any other by the core)
 *                      -> too old? (last reading) -> appender_append (with the other
 *                      writes of this loop turn, one script: length bound, XADD, pending value)
 *                      -> 200 queued
 *   GET /read/{key} -> validate -> wq_lookup (the key's queued write, if any)
 *                                  -> Redis: hit -> 200 (from_cache: true)
 *                                     miss -> single-flight -> pool_query(SELECT) -> fill -> 200
 *                                  (a queued write wins over the row: pending: true)
 *
 * The trade: between the 200 and the worker's COMMIT the write lives only in Redis, so Redis
 * must persist it (AOF) and the reply says "queued", not "written". See README.md.
 */
#include "handlers.h"

#include "appender.h"
#include "cache_aside.h"
#include "health.h"
#include "http.h"
#include "metrics.h"
#include "record.h"
#include "records.h"
#include "redis.h"
#include "server.h"
#include "single_flight.h"
#include "validate.h"
#include "write_body.h"
#include "write_queue.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

/* One write in flight: the request and its validated key and value. */
struct write_flow {
    struct http_request *req;    /* answered exactly once, in on_queued */
    struct write_body body;      /* key and value: into the request's body, or into parsed */
    struct write_request parsed; /* the core's parse of an unusual body (document NULL if none) */
};

/* One read in flight. */
struct read_flow {
    struct http_request *req;    /* answered exactly once */
    char *key;                   /* percent-decoded key */
    size_t key_len;              /* its length in bytes */
    char *token;                 /* the cache version seen on the miss, or NULL (cache down) */
    struct record *queued;       /* the key's queued write, or NULL */
    unsigned long long lookup;   /* number of this read's pending lookup (1, 2, ...) */
    unsigned long long joinable; /* as a flight's leader: readers up to this lookup may join */
};

/* ---- writes ---- */

static void on_queued(enum wq_append_result result, const char *id, void *arg)
{
    struct write_flow *flow = arg;
    (void)id; /* the write's version; the contract's reply does not carry it */
    if (result == WQ_APPEND_OK && flow->parsed.document == NULL) { /* scanned: a plain key */
        struct evbuffer *reply = evbuffer_new(); /* the usual key: no JSON object to build */
        write_body_queued_reply(reply, flow->body.key, flow->body.key_len);
        http_reply_buffer(flow->req, 200, "application/json", reply);
        evbuffer_free(reply);
    } else if (result == WQ_APPEND_OK) {
        json_t *ok = record_write_reply(flow->body.key, flow->body.key_len);
        json_object_set_new(ok, "queued", json_true());
        json_object_set_new(ok, "message", json_string("Write queued successfully"));
        http_reply_json(flow->req, 200, ok);
    } else { /* backpressure: the client should come back, not give up */
        http_request_set_header(flow->req, "Retry-After", "1");
        http_reply_error(flow->req, 503,
                         result == WQ_APPEND_FULL ? "Queue full" : "Queue unavailable");
    }
    write_request_cleanup(&flow->parsed);
    free(flow);
}

/*
 * The usual body is checked by a scan of its bytes (write_body.h: where it accepts, the core
 * accepts the same key and value); any other goes through the core's validation, which answers
 * the 422s. The key and value point into the request's body, valid until the reply, or into the
 * core's parse.
 */
void handle_write(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct write_flow *flow = xcalloc(1, sizeof *flow);
    size_t len;
    const char *body = http_request_body(req, &len);
    if (!layer->write_scan || !write_body_plain(body, len, layer->max_value_bytes, &flow->body)) {
        if (!validate_write_body(req, layer->max_value_bytes, &flow->parsed)) {
            free(flow);
            return; /* answered 422 */
        }
        flow->body = (struct write_body){flow->parsed.key, flow->parsed.key_len, flow->parsed.value,
                                         flow->parsed.value_len};
    }
    if (wq_too_old(&layer->queue, &layer->queue_limits)) { /* the last reading's age */
        http_request_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "Queue full");
        write_request_cleanup(&flow->parsed);
        free(flow);
        return;
    }
    flow->req = req;
    appender_append(layer->appender, flow->body.key, flow->body.key_len, flow->body.value,
                    flow->body.value_len, on_queued, flow);
}

/* ---- reads ---- */

static void free_read_flow(struct read_flow *flow)
{
    free(flow->key);
    free(flow->token);
    record_free(flow->queued);
    free(flow);
}

/*
 * Answers with the row (NULL: not found), or, when a write of the key is queued, with that
 * write: its value and updated_at, and the row's created_at if there is a row (the worker keeps
 * it), so the timestamps a client sees do not change when the row lands.
 */
static void reply_read(struct read_flow *flow, const struct record *row, bool from_cache)
{
    struct record *queued = NULL;
    if (flow->queued != NULL) {
        size_t len;
        const char *value = record_value(flow->queued, &len);
        queued = record_create(flow->key, flow->key_len, value, len,
                               record_created_at(row ? row : flow->queued),
                               record_updated_at(flow->queued));
    }
    json_t *reply = record_read_reply(queued ? queued : row, flow->key, flow->key_len);
    json_object_set_new(reply, "from_cache", json_boolean(from_cache || queued != NULL));
    json_object_set_new(reply, "pending", json_boolean(queued != NULL));
    http_reply_json(flow->req, 200, reply);
    record_free(queued);
}

static void query_or_join(struct read_flow *flow);

static void on_read(PGresult *res, enum pg_status status, void *arg)
{
    struct read_flow *leader = arg;
    struct layer *layer = http_request_arg(leader->req);
    struct record *rec = status == PG_OK ? records_row(res, leader->key, leader->key_len) : NULL;
    if (rec != NULL && leader->token != NULL) {
        size_t len;
        char *data = record_to_cache(rec, &len);
        cache_aside_fill(layer->cache, leader->key, leader->key_len, leader->token, data, len);
        free(data);
    }
    unsigned long long joinable = leader->joinable;
    size_t count;
    void **flows =
        single_flight_finish(layer->flights, leader->key, leader->key_len, leader, &count);
    for (size_t i = 0; i < count; i++) {
        struct read_flow *flow = flows[i];
        if (flow->lookup > joinable) {
            query_or_join(flow); /* joined too late to trust this result: see query_or_join */
            continue;
        }
        if (status == PG_OK)
            reply_read(flow, rec, false);
        else if (flow->queued != NULL) /* the queued write needs no database */
            reply_read(flow, NULL, false);
        else
            records_reply_failure(flow->req, status);
        free_read_flow(flow);
    }
    free(flows);
    record_free(rec);
}

/*
 * Single-flight across processes. In layer 2 the writer forgets the key's flight when it
 * commits; here the commit happens in a worker, which cannot reach this process's flights. So
 * a reader may join a flight only if the flight's query certainly started after the commit of
 * any write this reader no longer saw queued. The worker removes a pending value only after
 * its COMMIT, and Redis answers one connection in order: when the leader sends its query, every
 * lookup answered so far ran before, so a reader whose (empty) lookup is among them saw the
 * pending value gone after the commit, before the query. Readers with a later lookup that joined
 * anyway are sent to a new query when the flight ends (rare: they arrived mid-query).
 */
static void query_or_join(struct read_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    if (!single_flight_join(layer->flights, flow->key, flow->key_len, flow)) {
        metrics_inc(server_metrics(layer->server), METRIC_CACHE_COALESCED);
        return; /* the leader's query will answer this request too */
    }
    flow->joinable = layer->lookups_answered;
    struct pg_call read = {{RECORDS_SQL_READ, 1, {flow->key}}, on_read, flow};
    pool_query(layer->pool, &read);
}

static void on_cache(enum cache_result result, const char *data, size_t len, const char *token,
                     void *arg)
{
    struct read_flow *flow = arg;
    struct record *rec =
        result == CACHE_HIT ? record_from_cache(flow->key, flow->key_len, data, len) : NULL;
    if (rec != NULL) { /* a malformed entry is a miss */
        reply_read(flow, rec, true);
        free_read_flow(flow);
        record_free(rec);
        return;
    }
    flow->token = token ? xstrdup(token) : NULL;
    query_or_join(flow);
}

/* The key's queued write, if one is queued and not yet committed; then the cache. */
static void on_pending(redisReply *reply, void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    if (flow->lookup > layer->lookups_answered)
        layer->lookups_answered = flow->lookup;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        /* Without the queue this read cannot know whether a newer write is waiting in it:
         * answering from PostgreSQL could go back in time. */
        http_reply_error(flow->req, 503, "Queue unavailable");
        free_read_flow(flow);
        return;
    }
    flow->queued = wq_queued_record(reply, flow->key, flow->key_len);
    cache_aside_get(layer->cache, flow->key, flow->key_len, on_cache, flow);
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
    flow->lookup = ++layer->lookups;
    wq_lookup(layer->redis, flow->key, flow->key_len, on_pending, flow);
}

/* ---- health ---- */

/* A /health or /stats request and the queue's numbers read for it. */
struct status_flow {
    struct http_request *req; /* answered exactly once */
    struct wq_stats queue;    /* as read */
};

/*
 * PostgreSQL down is "degraded", not "unhealthy": writes are still accepted (the stream grows
 * and drains when it returns), and reads of queued keys still answer. Only a queue that
 * cannot be reached makes the API unusable (no write is accepted, no read can be trusted).
 */
static void on_health(PGresult *res, enum pg_status status, void *arg)
{
    struct status_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    (void)res;
    bool reachable = flow->queue.available;
    struct health health;
    health_begin(&health, server_spec(layer->server)->layer);
    health_member(&health, "database", status == PG_OK, HEALTH_OPTIONAL);
    health_member(&health, "cache", cache_aside_available(layer->cache), HEALTH_OPTIONAL);
    health_note(&health, reachable, HEALTH_REQUIRED); /* without the stream, no write is taken */
    health_member(&health, "queue", wq_accepting(&flow->queue, &layer->queue_limits),
                  HEALTH_OPTIONAL);
    json_object_set_new(health.body, "queue_length",
                        reachable ? json_integer(flow->queue.length) : json_null());
    health_reply(flow->req, &health);
    free(flow);
}

static void on_health_queue(redisReply *reply, void *arg)
{
    struct status_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    wq_parse_stats(reply, &flow->queue);
    struct pg_call check = {.statement = {.sql = "SELECT 1"}, .cb = on_health, .arg = flow};
    struct pg_call within = health_call_within(server_base(layer->server), &check);
    pool_query(layer->pool, &within);
}

void handle_health(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct status_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    wq_read_stats(layer->redis, on_health_queue, flow);
}

/* ---- statistics ---- */

static void on_counted(long long keys, void *arg)
{
    struct status_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    struct pool_stats pool;
    pool_get_stats(layer->pool, &pool);
    json_t *stats = cache_aside_stats_json(layer->cache, keys, "cache_");
    json_object_set_new(stats, "db_pool_size", json_integer(pool.size));
    json_t *queue = wq_stats_json(&flow->queue, &layer->queue_limits);
    json_object_update(stats, queue);
    json_decref(queue);
    http_reply_json(flow->req, 200, stats);
    free(flow);
}

static void on_stats_queue(redisReply *reply, void *arg)
{
    struct status_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    wq_parse_stats(reply, &flow->queue);
    cache_aside_count(layer->cache, on_counted, flow);
}

void handle_stats(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct status_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    wq_read_stats(layer->redis, on_stats_queue, flow);
}
