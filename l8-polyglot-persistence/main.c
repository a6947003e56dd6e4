/*
 * Layer 8: polyglot persistence (PostgreSQL for money, MongoDB for documents, Redis in front).
 * Configuration, routes and start-up.
 *
 * What is new since layer 2: a MongoDB (MONGODB_URL and the MONGO_* settings, shared/mongo.h)
 * reached through worker threads, since its driver can only block; the transaction and document
 * routes; the summary that joins both stores; /stats. The server listens once both stores are
 * ready: PostgreSQL's table and MongoDB's unique indexes, each retried until its store answers.
 */
#include "handlers.h"

#include "backends.h"
#include "cache_aside.h"
#include "http.h"
#include "metrics.h"
#include "mongo.h"
#include "openapi_document.h"
#include "pool_config.h"
#include "redis.h"
#include "schema.h"
#include "server.h"

static struct layer layer;

static const struct config_row layer_rows[] = {
    {"MONGO_DELAY_MS", CONFIG_INT, "0", 0, 60000,
     "test hook: each MongoDB operation waits this long on its worker first",
     &layer.mongo_settings.delay_ms, NULL},
};

static const struct config_set layer_sets[] = {
    POOL_CONFIG_SET(&layer.db, "postgresql://layers@127.0.0.1:15480/layers"),
    MONGO_CONFIG_SET(&layer.mongo_settings, &layer.mongo_url, "mongodb://127.0.0.1:17480/layers"),
    REDIS_CONFIG_SET(&layer.redis_url, &layer.redis_timeout_ms, "redis://127.0.0.1:16480/0"),
    CACHE_CONFIG_SET(&layer.cache_ttl_s),
    CONFIG_SET("layer 8", layer_rows),
};

/* Each store calls this once it is ready; the second one opens the doors. */
static void on_store_ready(void *arg)
{
    struct layer *l = arg;
    if (--l->stores_pending == 0)
        server_ready(l->server);
}

static const char *const collections[] = {COLLECTION_DOCUMENTS, COLLECTION_RECORDS, NULL};

static bool start(struct server *server, void *arg)
{
    struct layer *l = arg;
    l->server = server;
    l->max_value_bytes = (size_t)server_config(server)->max_value_bytes;
    struct pgconn_settings pg;
    l->pool = backends_start_pool(server, &l->db, "l8-polyglot-persistence", &pg);
    if (l->pool == NULL)
        return false;
    l->mongo_settings.url = l->mongo_url;
    l->mongo = mongo_create(server_base(server), &l->mongo_settings);
    if (l->mongo == NULL)
        return false;
    l->redis = backends_start_redis(server, l->redis_url, l->redis_timeout_ms);
    if (l->redis == NULL)
        return false;
    struct cache_settings cs = {"l8", l->cache_ttl_s, NULL};
    l->cache = cache_aside_create(l->redis, &cs, server_metrics(server));

    struct http_server *http = server_http(server);
    http_route(http, HTTP_POST, "/write", handle_write, l);
    http_route(http, HTTP_GET, "/read/{key}", handle_read, l);
    http_route(http, HTTP_POST, "/write/transaction", handle_write_transaction, l);
    http_route(http, HTTP_GET, "/read/transaction/{user_id}", handle_read_transactions, l);
    http_route(http, HTTP_POST, "/write/document", handle_write_document, l);
    http_route(http, HTTP_GET, "/read/document/{key}", handle_read_document, l);
    http_route(http, HTTP_GET, "/users/{user_id}/summary", handle_user_summary, l);
    http_route(http, HTTP_GET, "/health", handle_health, l);
    http_route(http, HTTP_GET, "/stats", handle_stats, l);

    l->stores_pending = 2;
    l->schema = schema_ensure(server_base(server), &pg, TRANSACTIONS_SQL_SCHEMA, on_store_ready, l);
    mongo_ensure_unique_keys(l->mongo, collections, on_store_ready, l);
    return true;
}

static void maintain(void *arg)
{
    struct layer *l = arg;
    pool_maintain(l->pool);
    redis_maintain(l->redis);
    cache_aside_maintain(l->cache);
}

static void stop(void *arg)
{
    struct layer *l = arg;
    schema_task_free(l->schema);
    mongo_free(l->mongo);
    cache_aside_free(l->cache);
    redis_free(l->redis);
    pool_free(l->pool);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "l8-polyglot-persistence",
        .layer = "8-polyglot-persistence",
        .summary = "transactions in PostgreSQL, documents in MongoDB, Redis cache-aside in front",
        .default_port = 8008,
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
