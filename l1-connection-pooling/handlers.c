/*
 * Layer 1: connection pooling. The read and write paths.
 *
 * The same two queries as layer 0, but each borrows an already-open connection from the pool
 * (pool_query) instead of opening one: no TCP handshake, no authentication, no new backend
 * process per request. When every connection is busy, the request waits in the pool's bounded
 * queue, and gets a clear 503 if the wait is too long or the queue is full.
 *
 *   POST /write     -> validate -> pool_query(UPSERT) -> 200
 *   GET /read/{key} -> validate -> pool_query(SELECT) -> 200 (found or not)
 */
#include "handlers.h"

#include "http.h"
#include "records.h"
#include "validate.h"
#include "xalloc.h"

#include <stdlib.h>

/* One write in flight: the request and its validated body (owns the key and value strings). */
struct write_flow {
    struct http_request *req;  /* answered exactly once, in on_written */
    struct write_request body; /* key and value, kept alive until the query is done */
};

/* One read in flight. */
struct read_flow {
    struct http_request *req; /* answered exactly once, in on_read */
    char *key;                /* percent-decoded key */
    size_t key_len;           /* its length in bytes */
};

static void on_written(PGresult *res, enum pg_status status, void *arg)
{
    struct write_flow *flow = arg;
    (void)res;
    if (status == PG_OK)
        http_reply_json(flow->req, 200, records_write_reply(flow->body.key, flow->body.key_len));
    else
        records_reply_failure(flow->req, status);
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
    const char *values[] = {flow->body.key, flow->body.value};
    pool_query(layer->pool, RECORDS_SQL_UPSERT, 2, values, on_written, flow);
}

static void on_read(PGresult *res, enum pg_status status, void *arg)
{
    struct read_flow *flow = arg;
    if (status == PG_OK)
        http_reply_json(flow->req, 200, records_read_reply(res, flow->key, flow->key_len));
    else
        records_reply_failure(flow->req, status);
    free(flow->key);
    free(flow);
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
    const char *values[] = {flow->key};
    pool_query(layer->pool, RECORDS_SQL_READ, 1, values, on_read, flow);
}

static void on_health(PGresult *res, enum pg_status status, void *arg)
{
    struct http_request *req = arg;
    (void)res;
    bool up = status == PG_OK;
    http_reply_json(req, up ? 200 : 503,
                    json_pack("{s:s, s:s, s:s}", "status", up ? "healthy" : "unhealthy", "layer",
                              "1-connection-pooling", "database", up ? "healthy" : "unavailable"));
}

void handle_health(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    pool_query(layer->pool, "SELECT 1", 0, NULL, on_health, req);
}

void handle_pool_stats(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    http_reply_json(req, 200, pool_stats_json(layer->pool));
}
