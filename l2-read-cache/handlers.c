/*
 * Layer 2: read cache (Redis cache-aside). The read and write paths.
 *
 * Reads ask Redis first; only a miss reaches PostgreSQL, and the row it returns is put into
 * Redis for the next reader. Writes go to PostgreSQL, then invalidate the cached copy.
 *
 *   POST /write     -> validate -> pool_query(UPSERT) -> invalidate the cached copy -> 200
 *   GET /read/{key} -> validate -> Redis: hit -> 200 (from_cache: true)
 *                                  miss -> single-flight -> pool_query(SELECT) -> fill -> 200
 *
 * What the naive version gets wrong is handled in the core: the stale-set race (versioned fills,
 * cache_aside.h), the stampede (concurrent misses on one key share one query, single_flight.h),
 * and Redis being down (reads go to PostgreSQL, /health says "degraded").
 */
#include "handlers.h"

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
#include "xalloc.h"

#include <event2/event.h>
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
    char *token;              /* the cache version seen on the miss, or NULL (cache down) */
};

/* ---- writes ---- */

static void on_written(PGresult *res, enum pg_status status, void *arg)
{
    struct write_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    (void)res;
    if (status == PG_OK) {
        /* Database first, then the cache: a reader can no longer fill the old row (the
         * version moved), and this client's next read, sent on the same Redis connection
         * after this command, sees the entry gone. Nor may that read join a query for the key
         * that started before this commit (it could return the old row): forget that flight. */
        cache_aside_invalidate(layer->cache, flow->body.key, flow->body.key_len);
        single_flight_forget(layer->flights, flow->body.key, flow->body.key_len);
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

static void reply_read(struct read_flow *flow, json_t *reply, bool from_cache)
{
    json_object_set_new(reply, "from_cache", json_boolean(from_cache));
    http_reply_json(flow->req, 200, reply);
}

/* Filling the cache, optionally delayed: a test hook for the stale-set race. */
struct delayed_fill {
    struct layer *layer; /* whose cache */
    char *key, *token;   /* what to fill, under which version */
    size_t key_len;      /* key bytes */
    char *data;          /* the record, as cached */
    size_t len;          /* its bytes */
    struct event *timer; /* fires after CACHE_FILL_DELAY_MS */
};

static void fill_now(evutil_socket_t fd, short what, void *arg)
{
    struct delayed_fill *f = arg;
    (void)fd, (void)what;
    cache_aside_fill(f->layer->cache, f->key, f->key_len, f->token, f->data, f->len);
    event_free(f->timer);
    free(f->key);
    free(f->token);
    free(f->data);
    free(f);
}

static void fill(struct layer *layer, struct read_flow *leader, const struct record *rec)
{
    struct delayed_fill *f = xcalloc(1, sizeof *f);
    f->layer = layer;
    f->key = xstrndup(leader->key, leader->key_len);
    f->key_len = leader->key_len;
    f->token = xstrdup(leader->token);
    f->data = record_to_cache(rec, &f->len);
    f->timer = evtimer_new(server_base(layer->server), fill_now, f);
    struct timeval delay = {layer->fill_delay_ms / 1000, (layer->fill_delay_ms % 1000) * 1000};
    event_add(f->timer, &delay);
}

static void on_read(PGresult *res, enum pg_status status, void *arg)
{
    struct read_flow *leader = arg;
    struct layer *layer = http_request_arg(leader->req);
    struct record *rec = status == PG_OK ? records_row(res, leader->key, leader->key_len) : NULL;
    if (rec != NULL && leader->token != NULL)
        fill(layer, leader, rec);
    size_t count;
    void **flows =
        single_flight_finish(layer->flights, leader->key, leader->key_len, leader, &count);
    for (size_t i = 0; i < count; i++) {
        struct read_flow *flow = flows[i];
        if (status == PG_OK)
            reply_read(flow, record_read_reply(rec, flow->key, flow->key_len), false);
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
    if (rec != NULL) { /* a malformed entry is a miss */
        reply_read(flow, record_read_reply(rec, flow->key, flow->key_len), true);
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
    cache_aside_get(layer->cache, flow->key, flow->key_len, on_cache, flow);
}

/* ---- health ---- */

static void on_health(PGresult *res, enum pg_status status, void *arg)
{
    struct http_request *req = arg;
    struct layer *layer = http_request_arg(req);
    (void)res;
    struct health health;
    health_begin(&health, server_spec(layer->server)->layer);
    health_member(&health, "database", status == PG_OK, HEALTH_REQUIRED);
    health_member(&health, "cache", cache_aside_available(layer->cache), HEALTH_OPTIONAL);
    health_reply(req, &health);
}

void handle_health(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    pool_query(layer->pool,
               &(struct pg_call){.statement = {.sql = "SELECT 1"}, .cb = on_health, .arg = req});
}

/* ---- statistics ---- */

static void on_counted(long long keys, void *arg)
{
    struct http_request *req = arg;
    struct layer *layer = http_request_arg(req);
    struct metrics *m = server_metrics(layer->server);
    json_t *stats = cache_aside_stats_json(layer->cache, keys, "");
    if (keys != CACHE_COUNT_FAILED) { /* keys is null when Redis holds too many to count */
        json_object_set_new(stats, "coalesced",
                            json_integer((json_int_t)metrics_get(m, METRIC_CACHE_COALESCED)));
        json_object_set_new(stats, "fills_skipped",
                            json_integer((json_int_t)metrics_get(m, METRIC_CACHE_FILLS_SKIPPED)));
        json_object_set_new(stats, "ttl_s", json_integer(layer->cache_ttl_s));
    }
    http_reply_json(req, 200, stats);
}

void handle_cache_stats(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    cache_aside_count(layer->cache, on_counted, req);
}
