/*
 * Layer 3: read replicas. The read and write paths.
 *
 * Writes go to the primary, which streams its changes to the replicas; reads that miss the
 * cache go to a replica (replica_router.h chooses which: a healthy one, not too far behind,
 * with the fewest reads in flight), so read load leaves the primary.
 *
 *   POST /write     -> validate -> UPSERT on the primary, then its WAL position (the token),
 *                                  in one round trip
 *                   -> raise the key's floor, invalidate the cached copy -> 200 (lsn)
 *   GET /read/{key} -> validate -> Redis: hit -> 200 (from_cache: true)
 *                                  miss -> the key's floor -> single-flight -> SELECT on a
 *                                          replica that has replayed the floor, else on the
 *                                          primary -> fill -> 200 (from_replica)
 *
 * A replica is always a little behind, and that is where the naive version goes wrong:
 * - the stale cache: a read right after a write finds the old row on a lagging replica and
 *   caches it for the whole TTL. Here a miss reads its key's floor, the position of the key's
 *   last write (cache_floor.h), and only a copy known to have replayed it may answer, so what is
 *   answered and cached includes that write;
 * - read-your-writes also without the cache (Redis down): a client that sends the write's
 *   X-Consistency-Token is answered only by a copy known to have replayed that far;
 * - a replica that is down or lagging is skipped, and a read that fails on one is retried on
 *   another copy (the router), so it costs a retry, not a 500.
 */
#include "handlers.h"

#include "cache_aside.h"
#include "cache_floor.h"
#include "health.h"
#include "http.h"
#include "metrics.h"
#include "record.h"
#include "records.h"
#include "server.h"
#include "single_flight.h"
#include "validate.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#define TOKEN_HEADER "X-Consistency-Token"

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
    uint64_t must;            /* X-Consistency-Token: a write this read must see, or 0 */
    uint64_t floor;           /* the position of the key's last write (0: none known) */
};

/* ---- writes ---- */

static void on_written(enum pg_status status, bool committed, const char *lsn_text, void *arg)
{
    struct write_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    if (committed) {
        /* The floor first, then the invalidation, on the same Redis connection: a reader that
         * misses after the invalidation reads a floor that includes this write (as in layer 2,
         * the database is written before the cache is touched). */
        uint64_t lsn = 0;
        if (lsn_text != NULL && !lsn_parse(lsn_text, &lsn))
            lsn = 0;
        cache_floor_raise(layer->floors, flow->body.key, flow->body.key_len, lsn);
        cache_aside_invalidate(layer->cache, flow->body.key, flow->body.key_len);
        single_flight_forget(layer->flights, flow->body.key, flow->body.key_len);
    }
    if (status == PG_OK) {
        json_t *reply = record_write_reply(flow->body.key, flow->body.key_len);
        json_object_set_new(reply, "message", json_string("Data written successfully to primary"));
        json_object_set_new(reply, "lsn", json_string(lsn_text));
        http_request_set_header(flow->req, TOKEN_HEADER, lsn_text);
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
    struct pg_statement upsert = {RECORDS_SQL_UPSERT, 2, {flow->body.key, flow->body.value}};
    replica_router_write(layer->router, &upsert, on_written, flow);
}

/* ---- reads ---- */

static void free_read_flow(struct read_flow *flow)
{
    free(flow->key);
    free(flow->token);
    free(flow);
}

static void reply_read(struct read_flow *flow, json_t *reply, bool from_cache, bool from_replica)
{
    json_object_set_new(reply, "from_cache", json_boolean(from_cache));
    json_object_set_new(reply, "from_replica", json_boolean(from_replica));
    http_reply_json(flow->req, 200, reply);
}

static void fill(struct layer *layer, struct read_flow *leader, const struct record *rec)
{
    size_t len;
    char *data = record_to_cache(rec, &len);
    cache_aside_fill(layer->cache, leader->key, leader->key_len, leader->token, data, len);
    free(data);
}

static void on_read(PGresult *res, enum pg_status status, const struct replica_source *source,
                    void *arg)
{
    struct read_flow *leader = arg;
    struct layer *layer = http_request_arg(leader->req);
    struct record *rec = status == PG_OK ? records_row(res, leader->key, leader->key_len) : NULL;
    if (rec != NULL && leader->token != NULL)
        fill(layer, leader, rec);
    size_t count; /* a read with a token leads no flight: it is answered alone (read_database) */
    void **flows =
        single_flight_finish(layer->flights, leader->key, leader->key_len, leader, &count);
    for (size_t i = 0; i < count; i++) {
        struct read_flow *flow = flows[i];
        if (status == PG_OK)
            reply_read(flow, record_read_reply(rec, flow->key, flow->key_len), false,
                       source->replica >= 0);
        else
            records_reply_failure(flow->req, status);
        free_read_flow(flow);
    }
    free(flows);
    record_free(rec);
}

static void read_database(struct read_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    /* Readers of one key share a floor (a write starts a new flight), but a client's token may
     * ask for more than the leader's query includes: such a read goes alone. */
    if (flow->must == 0 && !single_flight_join(layer->flights, flow->key, flow->key_len, flow)) {
        metrics_inc(server_metrics(layer->server), METRIC_CACHE_COALESCED);
        return; /* the leader's query will answer this request too */
    }
    struct pg_statement read = {RECORDS_SQL_READ, 1, {flow->key}};
    replica_router_read(layer->router, flow->must > flow->floor ? flow->must : flow->floor, &read,
                        on_read, flow);
}

static void on_floor(bool ok, uint64_t floor, void *arg)
{
    struct read_flow *flow = arg;
    if (!ok) { /* Redis failed: as with the cache down, no floor and no fill */
        free(flow->token);
        flow->token = NULL;
    }
    flow->floor = ok ? floor : 0;
    read_database(flow);
}

static void on_cache(enum cache_result result, const char *data, size_t len, const char *token,
                     void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    struct record *rec =
        result == CACHE_HIT ? record_from_cache(flow->key, flow->key_len, data, len) : NULL;
    if (rec != NULL) { /* a malformed entry is a miss */
        reply_read(flow, record_read_reply(rec, flow->key, flow->key_len), true, false);
        free_read_flow(flow);
        record_free(rec);
        return;
    }
    if (token == NULL) { /* cache down: no floor to read (the token still counts) */
        read_database(flow);
        return;
    }
    flow->token = xstrdup(token);
    cache_floor_get(layer->floors, flow->key, flow->key_len, on_floor, flow);
}

void handle_read(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct route_param raw = http_request_param(req, 0);
    json_t *errors = json_array();
    size_t key_len;
    char *key = validate_path_key(raw.raw, raw.len, &key_len, errors);
    uint64_t must = 0;
    const char *token = http_request_header(req, TOKEN_HEADER);
    if (token != NULL && !lsn_parse(token, &must))
        validation_error_add(errors, "value_error", "header", "x-consistency-token",
                             "Value error, expected a WAL position such as 0/16B3748");
    if (key == NULL || json_array_size(errors) > 0) {
        free(key);
        http_reply_validation(req, errors);
        return;
    }
    json_decref(errors);
    struct read_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->key = key;
    flow->key_len = key_len;
    flow->must = must;
    cache_aside_get(layer->cache, flow->key, flow->key_len, on_cache, flow);
}

/* ---- health ---- */

static void on_health(PGresult *res, enum pg_status status, void *arg)
{
    struct http_request *req = arg;
    struct layer *layer = http_request_arg(req);
    (void)res;
    bool primary = status == PG_OK, replicas = true;
    /* Without the primary nothing can be written: unhealthy (replicas still serve reads).
     * Without a replica or the cache, everything is served, with less headroom: degraded.
     * "replica" (the Python version's one replica) is healthy when every replica is; the
     * per-replica members say which one is not. */
    struct health health;
    health_begin(&health, server_spec(layer->server)->layer);
    health_member(&health, "database", primary, HEALTH_REQUIRED);
    health_member(&health, "primary", primary, HEALTH_REQUIRED);
    for (int i = 0; i < replica_router_count(layer->router); i++) {
        bool up = replica_router_healthy(layer->router, i);
        replicas = replicas && up;
        health_set(health.body, replica_router_name(layer->router, i), up);
    }
    health_member(&health, "replica", replicas, HEALTH_OPTIONAL);
    health_member(&health, "cache", cache_aside_available(layer->cache), HEALTH_OPTIONAL);
    health_reply(req, &health);
}

void handle_health(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    replica_router_primary_query(
        layer->router,
        &(struct pg_call){.statement = {.sql = "SELECT 1"}, .cb = on_health, .arg = req});
}

/* ---- statistics ---- */

static void on_counted(long long keys, void *arg)
{
    struct http_request *req = arg;
    struct layer *layer = http_request_arg(req);
    struct metrics *m = server_metrics(layer->server);
    json_t *stats = cache_aside_stats_json(layer->cache, keys, "cache_");
    json_object_set_new(stats, "primary_pool_size",
                        json_integer(replica_router_primary_pool_size(layer->router)));
    json_object_set_new(stats, "replica_pool_size",
                        json_integer(replica_router_replica_pool_size(layer->router)));
    json_object_set_new(stats, "replicas", replica_router_replicas_json(layer->router));
    json_object_set_new(stats, "primary_reads",
                        json_integer((json_int_t)replica_router_primary_reads(layer->router)));
    json_object_set_new(stats, "replica_reads",
                        json_integer((json_int_t)metrics_get(m, METRIC_REPLICA_READS)));
    json_object_set_new(stats, "read_retries",
                        json_integer((json_int_t)metrics_get(m, METRIC_REPLICA_RETRIES)));
    json_object_set_new(stats, "max_replica_lag_ms", json_integer(layer->max_lag_ms));
    json_object_set_new(stats, "balancing", json_string("least-outstanding"));
    http_reply_json(req, 200, stats);
}

void handle_stats(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    cache_aside_count(layer->cache, on_counted, req);
}
