/*
 * Layer 0: single database, connection per request. The read and write paths.
 *
 * Each request opens its own PostgreSQL connection, runs one query on it and closes it
 * (query_on_new_connection, in connect_per_request.c). Simple and correct; the cost is the
 * connection set-up on every request, which layer 1's pool removes.
 *
 *   POST /write     -> validate -> new connection, UPSERT, close -> 200
 *   GET /read/{key} -> validate -> new connection, SELECT, close -> 200 (found or not)
 */
#include "handlers.h"

#include "connect_per_request.h"

#include "health.h"
#include "http.h"
#include "record.h"
#include "records.h"
#include "server.h"
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
    struct http_request *req; /* answered exactly once */
    char *key;                /* percent-decoded key */
    size_t key_len;           /* its length in bytes */
};

/* ---- writes ---- */

static void on_written(PGresult *res, enum pg_status status, void *arg)
{
    struct write_flow *flow = arg;
    (void)res;
    if (status == PG_OK)
        http_reply_json(flow->req, 200, record_write_reply(flow->body.key, flow->body.key_len));
    else
        records_reply_failure(flow->req, status);
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
    query_on_new_connection(layer, &upsert);
}

/* ---- reads ---- */

static void free_read_flow(struct read_flow *flow)
{
    free(flow->key);
    free(flow);
}

static void on_read(PGresult *res, enum pg_status status, void *arg)
{
    struct read_flow *flow = arg;
    struct record *rec = status == PG_OK ? records_row(res, flow->key, flow->key_len) : NULL;
    if (status == PG_OK)
        http_reply_json(flow->req, 200, record_read_reply(rec, flow->key, flow->key_len));
    else
        records_reply_failure(flow->req, status);
    free_read_flow(flow);
    record_free(rec);
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
    struct pg_call read = {{RECORDS_SQL_READ, 1, {flow->key}}, on_read, flow};
    query_on_new_connection(layer, &read);
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
    health_reply(req, &health);
}

void handle_health(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    query_on_new_connection(
        layer, &(struct pg_call){.statement = {.sql = "SELECT 1"}, .cb = on_health, .arg = req});
}
