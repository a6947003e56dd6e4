/*
 * Layer 6: write buffering (Redis Streams + workers). The API's configuration, routes and
 * start-up. The worker is its own program (worker.c, l6-worker).
 *
 * What is new since layer 2: the queue's limits (QUEUE_MAX_LENGTH, QUEUE_MAX_AGE_MS), a
 * `version` column on the table, GET /stats, and the queue's gauges in /metrics. Redis now
 * holds writes until a worker commits them, so it must run with AOF (scripts/stack.sh's queue
 * mode; README.md).
 */
#include "handlers.h"

#include "appender.h"
#include "backends.h"
#include "cache_aside.h"
#include "http.h"
#include "metrics.h"
#include "openapi_document.h"
#include "pool_config.h"
#include "records.h"
#include "redis.h"
#include "schema.h"
#include "server.h"
#include "single_flight.h"
#include "write_queue.h"

static struct layer layer;

static const struct config_row layer_rows[] = {
    {"QUEUE_MAX_LENGTH", CONFIG_INT, "100000", 1, 100000000,
     "writes queued and not yet committed before POST /write answers 503",
     &layer.queue_limits.max_length, NULL},
    {"QUEUE_MAX_AGE_MS", CONFIG_INT, "30000", 100, 86400000,
     "age of the oldest uncommitted write before POST /write answers 503",
     &layer.queue_limits.max_age_ms, NULL},
    {"QUEUE_APPEND_MAX_WRITES", CONFIG_INT, "64", 1, WQ_APPEND_MAX_WRITES,
     "writes of one loop turn sent in one script call (1: a call per write, to measure against)",
     &layer.append_max_writes, NULL},
    {"QUEUE_WRITE_SCAN", CONFIG_INT, "1", 0, 1,
     "1: the usual POST /write body read by a scan, answered without jansson (0: every body "
     "through the core's JSON validation and reply, to measure against)",
     &layer.write_scan, NULL},
};

static const struct config_set layer_sets[] = {
    POOL_CONFIG_SET(&layer.db, "postgresql://layers@127.0.0.1:15460/layers"),
    REDIS_CONFIG_SET(&layer.redis_url, &layer.redis_timeout_ms, "redis://127.0.0.1:16460/0"),
    CACHE_CONFIG_SET(&layer.cache_ttl_s),
    CONFIG_SET("layer 6", layer_rows),
};

static void on_version_ready(void *arg)
{
    server_ready(arg);
}

/* The common table first, then layer 6's column on it (the worker does the same). */
static void on_schema_ready(void *arg)
{
    struct server *server = arg;
    struct pgconn_settings pg = pool_config_pg(&layer.db, "l6-write-buffering");
    schema_task_free(layer.schema);
    layer.schema = schema_ensure(server_base(server), &pg, WQ_SQL_SCHEMA, on_version_ready, server);
}

static bool start(struct server *server, void *arg)
{
    struct layer *l = arg;
    l->server = server;
    l->max_value_bytes = (size_t)server_config(server)->max_value_bytes;
    struct pgconn_settings pg;
    l->pool = backends_start_pool(server, &l->db, "l6-write-buffering", &pg);
    if (l->pool == NULL)
        return false;
    metrics_add_gauges(server_metrics(server), wq_render_gauges, &l->queue);
    l->redis = backends_start_redis(server, l->redis_url, l->redis_timeout_ms);
    if (l->redis == NULL)
        return false;
    l->write_script = wq_script_create(l->redis, WQ_WRITE_SCRIPT);
    l->appender = appender_create(server_base(server), l->write_script, &l->queue_limits,
                                  (size_t)l->append_max_writes);
    struct cache_settings cs = {"l6", l->cache_ttl_s, NULL};
    l->cache = cache_aside_create(l->redis, &cs, server_metrics(server));
    l->flights = single_flight_create();

    struct http_server *http = server_http(server);
    http_route(http, HTTP_POST, "/write", handle_write, l);
    http_route(http, HTTP_GET, "/read/{key}", handle_read, l);
    http_route(http, HTTP_GET, "/health", handle_health, l);
    http_route(http, HTTP_GET, "/stats", handle_stats, l);

    l->schema =
        schema_ensure(server_base(server), &pg, RECORDS_SQL_SCHEMA, on_schema_ready, server);
    return true;
}

/* The queue's numbers for /metrics: a reading a second, kept until the next one. */
static void on_queue_read(redisReply *reply, void *arg)
{
    struct layer *l = arg;
    wq_parse_stats(reply, &l->queue);
}

static void maintain(void *arg)
{
    struct layer *l = arg;
    pool_maintain(l->pool);
    redis_maintain(l->redis);
    cache_aside_maintain(l->cache);
    wq_read_stats(l->redis, on_queue_read, l);
}

static void stop(void *arg)
{
    struct layer *l = arg;
    schema_task_free(l->schema);
    cache_aside_free(l->cache);
    appender_free(l->appender); /* writes not sent yet: 503 */
    redis_free(l->redis);
    wq_script_free(l->write_script); /* after the connection: its calls in flight are answered */
    single_flight_free(l->flights);
    pool_free(l->pool);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "l6-write-buffering",
        .layer = "6-write-buffering",
        .summary = "key/value API whose writes are queued in a Redis Stream and drained into "
                   "PostgreSQL by l6-worker",
        .default_port = 8006,
        CONFIG_SETS(layer_sets),
        .metric_modules =
            METRIC_MODULE_PG | METRIC_MODULE_POOL | METRIC_MODULE_REDIS | METRIC_MODULE_CACHE,
        .start = start,
        .maintain = maintain,
        .stop = stop,
        .openapi_json = layer_openapi_json,
    };
    return server_main(argc, argv, &spec, &layer);
}
