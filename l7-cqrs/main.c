/*
 * Layer 7: CQRS with a transactional outbox. Configuration, routes and start-up of the API.
 *
 * What is new since layer 6: two databases instead of one (WRITE_DB_URL for commands and their
 * outbox, READ_DB_URL for the read model), PUT /write, consistency tokens (READ_WAIT_MS), and two
 * programs beside the server: l7-relay (outbox -> Redis stream) and l7-projector (stream -> read
 * model). The server writes only to the write database and reads only from the read database.
 */
#include "handlers.h"

#include "backends.h"
#include "cqrs.h"
#include "http.h"
#include "metrics.h"
#include "openapi_document.h"
#include "pool_config.h"
#include "redis.h"
#include "schema.h"
#include "server.h"

static struct layer layer;

#define L7_DATABASE_ROWS(write_target, read_target)                                                \
    {"WRITE_DB_URL",                                                                               \
     CONFIG_URL,                                                                                   \
     "postgresql://layers@127.0.0.1:15470/layers",                                                 \
     0,                                                                                            \
     0,                                                                                            \
     "the write database: commands and the outbox",                                                \
     (write_target),                                                                               \
     NULL},                                                                                        \
    {                                                                                              \
        "READ_DB_URL", CONFIG_URL, "postgresql://layers@127.0.0.1:15471/layers", 0, 0,             \
            "the read database: the read model the projector keeps", (read_target), NULL           \
    }

static const struct config_row layer_rows[] = {
    L7_DATABASE_ROWS(&layer.write_db_url, &layer.read_db_url),
    {"READ_WAIT_MS", CONFIG_INT, "2000", 0, 60000,
     "longest wait of a read with a consistency token for the projector (then 503)",
     &layer.read_wait_ms, NULL},
    {"READ_POLL_MS", CONFIG_INT, "5", 1, 1000,
     "how often the projector's checkpoint is read while token reads wait", &layer.read_poll_ms,
     NULL},
    {"READ_MAX_WAITING", CONFIG_INT, "10000", 1, 1000000,
     "token reads allowed to wait at once (more get 503 at once)", &layer.max_waiting_reads, NULL},
};

static const struct config_set layer_sets[] = {
    POOL_EACH_CONFIG_SET(&layer.db),
    REDIS_CONFIG_SET(&layer.redis_url, &layer.redis_timeout_ms, "redis://127.0.0.1:16470/0"),
    CONFIG_SET("layer 7", layer_rows),
};

static void on_schema_ready(void *arg)
{
    struct layer *l = arg;
    if (++l->schemas_ready == 2)
        server_ready(l->server);
}

static bool start(struct server *server, void *arg)
{
    struct layer *l = arg;
    l->server = server;
    l->max_value_bytes = (size_t)server_config(server)->max_value_bytes;
    if (!pool_config_check(&l->db))
        return false;
    l->db.resolver = server_resolver(server); /* host names off the event loop */
    struct pool_config write_db = l->db, read_db = l->db;
    write_db.database_url = l->write_db_url;
    read_db.database_url = l->read_db_url;
    struct pgconn_settings write_pg = pool_config_pg(&write_db, "l7-cqrs");
    struct pgconn_settings read_pg = pool_config_pg(&read_db, "l7-cqrs");
    l->write_pool =
        pool_config_create(&write_db, server_base(server), "l7-cqrs", server_metrics(server));
    l->read_pool =
        pool_config_create(&read_db, server_base(server), "l7-cqrs", server_metrics(server));
    l->redis = backends_start_redis(server, l->redis_url, l->redis_timeout_ms);
    if (l->redis == NULL)
        return false;
    handlers_start(l);

    struct http_server *http = server_http(server);
    http_route(http, HTTP_POST, "/write", handle_write, l);
    http_route(http, HTTP_PUT, "/write", handle_update, l);
    http_route(http, HTTP_GET, "/read/{key}", handle_read, l);
    http_route(http, HTTP_GET, "/health", handle_health, l);
    http_route(http, HTTP_GET, "/stats", handle_stats, l);

    l->schemas[0] =
        schema_ensure(server_base(server), &write_pg, CQRS_SQL_WRITE_SCHEMA, on_schema_ready, l);
    l->schemas[1] =
        schema_ensure(server_base(server), &read_pg, CQRS_SQL_READ_SCHEMA, on_schema_ready, l);
    return true;
}

static void maintain(void *arg)
{
    struct layer *l = arg;
    pool_maintain(l->write_pool);
    pool_maintain(l->read_pool);
    redis_maintain(l->redis);
}

static void stop(void *arg)
{
    struct layer *l = arg;
    handlers_stop(l);
    schema_task_free(l->schemas[0]);
    schema_task_free(l->schemas[1]);
    redis_free(l->redis);
    pool_free(l->write_pool);
    pool_free(l->read_pool);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "l7-cqrs",
        .layer = "7-cqrs",
        .summary = "key/value API with commands and queries on separate databases, fed by an "
                   "outbox, a relay and a projector",
        .default_port = 8007,
        CONFIG_SETS(layer_sets),
        .metric_modules = METRIC_MODULE_PG | METRIC_MODULE_POOL | METRIC_MODULE_REDIS,
        .start = start,
        .maintain = maintain,
        .stop = stop,
        .openapi_json = layer_openapi_json,
    };
    return server_main(argc, argv, &spec, &layer);
}
