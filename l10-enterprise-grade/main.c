/*
 * Layer 10: the enterprise edge. Configuration, routes and start-up.
 *
 * What is new since layer 5: layer 4's shards under layer 5's tiers (SHARD_URLS), and the
 * protections in front (edge.h): API keys with scopes (API_KEYS, API_KEYS_FILE), a rate limit
 * per key shared in a Redis of its own (RATE_LIMIT_*), a circuit breaker per shard and per
 * Redis (BREAKER_*), a budget per request (REQUEST_TIMEOUT_MS), load shedding (MAX_IN_FLIGHT,
 * MAX_LOOP_LAG_MS), GET /ready beside /health, and a drain delay (DRAIN_DELAY_MS): after SIGTERM
 * /ready says 503 while the server still serves, so that a load balancer stops sending first.
 * PROTECTIONS=off turns the protections off, to measure what they cost (bench/README.md,
 * "Variants").
 *
 * Two Redis servers: the cache tier's evicts any key under memory pressure (LRU), which must
 * never reset a budget, and a cache outage must not lift the rate limits; so budgets live in a
 * Redis of their own (RATE_LIMIT_REDIS_URL), which may be the same server when that matters
 * less than one process fewer.
 */
#include "handlers.h"

#include "api_keys.h"
#include "backends.h"
#include "cache_aside.h"
#include "clock.h"
#include "edge.h"
#include "http.h"
#include "l1_cache.h"
#include "l1_coherence.h"
#include "log.h"
#include "metrics.h"
#include "openapi_document.h"
#include "pool_config.h"
#include "process.h"
#include "rate_limit.h"
#include "records.h"
#include "redis.h"
#include "server.h"
#include "shard_map.h"
#include "single_flight.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

static struct layer layer;

static const char *const protection_choices[] = {"on", "no-rate-limit", "off", NULL};

static const struct config_row layer_rows[] = {
    {"SHARD_CHECK_TIMEOUT_MS", CONFIG_INT, "1000", 10, 60000,
     "deadline of each shard in /health (then marked unreachable)", &layer.check_timeout_ms, NULL},
    {"L1_CACHE_SIZE", CONFIG_INT, "10000", 1, 10000000, "most entries in the in-process tier",
     &layer.l1_size, NULL},
    {"L1_CACHE_MAX_BYTES", CONFIG_INT, "67108864", 1024, 1L << 36,
     "most bytes of keys and values in the in-process tier", &layer.l1_max_bytes, NULL},
    {"L1_CACHE_TTL", CONFIG_INT, "30", 1, 86400, "seconds an in-process entry lives",
     &layer.l1_ttl_s, NULL},
    {"L2_CACHE_TTL", CONFIG_INT, "300", 1, 86400 * 30,
     "seconds a Redis entry lives (plus up to 10% jitter)", &layer.l2_ttl_s, NULL},
};

static const struct config_row edge_rows[] = {
    {"PROTECTIONS", CONFIG_ENUM, "on", 0, 0,
     "off: no keys, rate limits, breakers or shedding; no-rate-limit: all but the rate limit (to "
     "measure their costs)",
     &layer.protections, protection_choices},
    {"API_KEYS", CONFIG_SECRET, "", 0, 0,
     "API keys with scopes: KEY:read+write+admin,OTHER:read (never printed)", &layer.api_keys_spec,
     NULL},
    {"API_KEYS_FILE", CONFIG_STRING, "", 0, 0, "a file of KEY:scopes lines (# comments)",
     &layer.api_keys_file, NULL},
    {"RATE_LIMIT_REDIS_URL", CONFIG_URL, "redis://127.0.0.1:16501/0", 0, 0,
     "Redis holding the rate limits (shared by every instance)", &layer.rate_limit_redis_url, NULL},
    {"RATE_LIMIT_REQUESTS", CONFIG_INT, "100", 1, 100000000,
     "requests each key may make per window", &layer.rate_limit, NULL},
    {"RATE_LIMIT_WINDOW_S", CONFIG_INT, "60", 1, 86400, "the rate limit's window in seconds",
     &layer.rate_window_s, NULL},
    {"RATE_LIMIT_LOCAL_SLOTS", CONFIG_INT, "10000", 1, 10000000,
     "keys tracked in this process (their slices, and the limiter while Redis is away)",
     &layer.rate_local_slots, NULL},
    {"RATE_LIMIT_SLICE", CONFIG_INT, "1000", 1, 1000000,
     "most requests of a key's budget an instance takes from Redis at once (1: every request "
     "asks Redis)",
     &layer.rate_slice, NULL},
    {"RATE_LIMIT_LEASE_MS", CONFIG_INT, "100", 1, 60000,
     "a slice's lifetime: unspent requests are dropped after it", &layer.rate_lease_ms, NULL},
    {"BREAKER_WINDOW_MS", CONFIG_INT, "10000", 100, 600000,
     "circuit breakers count failures over this window", &layer.breaking.window_ms, NULL},
    {"BREAKER_MIN_CALLS", CONFIG_INT, "5", 1, 100000,
     "calls in the window before a breaker may open", &layer.breaking.min_calls, NULL},
    {"BREAKER_FAILURE_PERCENT", CONFIG_INT, "50", 1, 100,
     "share of failed calls that opens a breaker", &layer.breaking.failure_percent, NULL},
    {"BREAKER_OPEN_MS", CONFIG_INT, "5000", 10, 600000,
     "how long an open breaker refuses before one probe", &layer.breaking.open_ms, NULL},
    {"REQUEST_TIMEOUT_MS", CONFIG_INT, "2000", 10, 600000,
     "each request's whole budget; backend calls get what is left",
     &layer.edging.request_timeout_ms, NULL},
    {"MAX_IN_FLIGHT", CONFIG_INT, "1000", 1, 1000000,
     "requests at once before new ones are shed (503)", &layer.edging.max_in_flight, NULL},
    {"MAX_LOOP_LAG_MS", CONFIG_INT, "250", 1, 600000,
     "event-loop lag above which new requests are shed (503)", &layer.edging.max_loop_lag_ms, NULL},
    {"DRAIN_DELAY_MS", CONFIG_INT, "2000", 0, 600000,
     "after SIGTERM, keep serving this long with /ready 503 (a load balancer stops sending) "
     "before closing the listener; under SHUTDOWN_TIMEOUT_MS",
     &layer.drain_delay_ms, NULL},
};

static const struct config_set layer_sets[] = {
    POOL_EACH_CONFIG_SET(&layer.db),
    SHARD_CONFIG_SET(&layer.sharding,
                     "postgresql://layers@127.0.0.1:15500/layers,"
                     "postgresql://layers@127.0.0.1:15501/layers",
                     ""),
    REDIS_CONFIG_SET(&layer.redis_url, &layer.redis_timeout_ms, "redis://127.0.0.1:16500/0"),
    CONFIG_SET("layer 10 tiers", layer_rows),
    CONFIG_SET("layer 10 protections", edge_rows),
};

/* Listening waits for every shard's table, but no longer than this (layer 4). */
#define SCHEMA_WAIT_MS 5000

static void listen_now(struct layer *l)
{
    if (l->listening)
        return;
    l->listening = true;
    server_ready(l->server);
}

static void on_schema_ready(void *arg)
{
    listen_now(arg);
}

/* Each route's scope: the protections run first, then the handler (edge.h). */
static void route_write(struct http_request *req, void *arg)
{
    struct layer *l = arg;
    edge_admit(l->edge, req, "/write", API_SCOPE_WRITE, handle_write, l);
}

static void route_read(struct http_request *req, void *arg)
{
    struct layer *l = arg;
    edge_admit(l->edge, req, "/read/{key}", API_SCOPE_READ, handle_read, l);
}

static void route_stats(struct http_request *req, void *arg)
{
    struct layer *l = arg;
    edge_admit(l->edge, req, "/stats", API_SCOPE_ADMIN, handle_stats, l);
}

static void route_clear_cache(struct http_request *req, void *arg)
{
    struct layer *l = arg;
    edge_admit(l->edge, req, "/clear-cache", API_SCOPE_ADMIN, handle_clear_cache, l);
}

static void on_probe_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    probe_open_shards(arg);
}

static bool start_protections(struct server *server, struct layer *l)
{
    bool on = strcmp(l->protections, "off") != 0;
    l->edging.protections = on;
    l->edging.rate_limit = strcmp(l->protections, "on") == 0;
    char err[512];
    if (on) {
        l->keys = api_keys_create(l->api_keys_spec, l->api_keys_file, err, sizeof err);
        if (l->keys == NULL) {
            LOG_ERROR("%s", err);
            return false;
        }
        LOG_INFO("%zu API keys; %ld requests per %ld s per key", api_keys_count(l->keys),
                 l->rate_limit, l->rate_window_s);
        int n = shard_set_count(l->shards);
        for (int i = 0; i < n && i < LAYER10_MAX_SHARDS; i++) {
            char name[24];
            snprintf(name, sizeof name, "shard%d", i + 1);
            l->shard_breakers[i] = breaker_create(name, &l->breaking);
        }
        l->cache_breaker = breaker_create("redis_cache", &l->breaking);
        l->limit_breaker = breaker_create("redis_rate_limit", &l->breaking);
        if (!l->edging.rate_limit)
            LOG_WARN("PROTECTIONS=no-rate-limit: every request is admitted by the rate limit");
    } else {
        LOG_WARN("PROTECTIONS=off: no API keys, rate limits, breakers or shedding");
    }
    l->limit_redis = backends_start_redis(server, l->rate_limit_redis_url, l->redis_timeout_ms);
    if (l->limit_redis == NULL)
        return false;
    struct rate_limit_settings rs = {l->rate_limit, l->rate_window_s * 1000LL, l->rate_slice,
                                     l->rate_lease_ms, (size_t)l->rate_local_slots};
    l->limiter = rate_limiter_create(l->limit_redis, l->limit_breaker, &rs);
    l->edge = edge_create(server, &l->edging, l->keys, l->limiter);
    for (int i = 0; i < LAYER10_MAX_SHARDS; i++)
        if (l->shard_breakers[i] != NULL)
            edge_add_breaker(l->edge, l->shard_breakers[i]);
    if (on) {
        edge_add_breaker(l->edge, l->cache_breaker);
        edge_add_breaker(l->edge, l->limit_breaker);
        l->probe_timer = event_new(server_base(server), -1, EV_PERSIST, on_probe_tick, l);
        struct timeval every = {0, LAYER10_PROBE_MS * 1000};
        event_add(l->probe_timer, &every);
    }
    return true;
}

static bool start(struct server *server, void *arg)
{
    struct layer *l = arg;
    l->server = server;
    l->max_value_bytes = (size_t)server_config(server)->max_value_bytes;
    long shutdown_ms = process_config(server_process(server))->shutdown_timeout_ms;
    if (l->drain_delay_ms >= shutdown_ms) {
        LOG_ERROR("DRAIN_DELAY_MS (%ld) must be under SHUTDOWN_TIMEOUT_MS (%ld): the requests "
                  "in flight need time to finish after it",
                  l->drain_delay_ms, shutdown_ms);
        return false;
    }
    if (!pool_config_check(&l->db))
        return false;
    l->db.resolver = server_resolver(server); /* host names off the event loop */
    char err[512];
    l->shards = shard_set_create(server_base(server), &l->sharding, &l->db, "l10-enterprise-grade",
                                 server_metrics(server), err, sizeof err);
    if (l->shards == NULL) {
        LOG_ERROR("%s", err);
        return false;
    }
    LOG_INFO("%d shards, %s", shard_set_count(l->shards),
             shard_map_describe(shard_set_map(l->shards)));
    metrics_add_gauges(server_metrics(server), shard_set_render_gauges, l->shards);
    if (!start_protections(server, l))
        return false;
    l->redis = backends_start_redis(server, l->redis_url, l->redis_timeout_ms);
    if (l->redis == NULL)
        return false;
    struct cache_settings cs = {"l10", l->l2_ttl_s, LAYER10_INVALIDATION_CHANNEL};
    l->l2 = cache_aside_create(l->redis, &cs, server_metrics(server));
    l->l1 = l1_cache_create((size_t)l->l1_size, (size_t)l->l1_max_bytes, l->l1_ttl_s * 1000);
    l->flights = single_flight_create();
    struct l1_coherence_settings coherence = {l->redis_url, l->redis_timeout_ms,
                                              LAYER10_INVALIDATION_CHANNEL,
                                              LAYER10_HEARTBEAT_TIMEOUT_MS};
    l->coherence = l1_coherence_create(server_base(server), server_resolver(server), &coherence,
                                       l->l1, l->flights, l->redis, server_metrics(server));
    if (l->coherence == NULL)
        return false;

    struct http_server *http = server_http(server);
    http_route(http, HTTP_POST, "/write", route_write, l);
    http_route(http, HTTP_GET, "/read/{key}", route_read, l);
    http_route(http, HTTP_GET, "/health", handle_health, l);
    http_route(http, HTTP_GET, "/ready", handle_ready, l);
    http_route(http, HTTP_GET, "/stats", route_stats, l);
    http_route(http, HTTP_POST, "/clear-cache", route_clear_cache, l);

    l->started_ms = monotonic_ms();
    shard_set_ensure_schema(l->shards, RECORDS_SQL_SCHEMA, on_schema_ready, l);
    return true;
}

static void maintain(void *arg)
{
    struct layer *l = arg;
    if (!l->listening && monotonic_ms() - l->started_ms >= SCHEMA_WAIT_MS) {
        LOG_WARN("not every shard answered within %d ms: serving the others' keys meanwhile",
                 SCHEMA_WAIT_MS);
        listen_now(l);
    }
    shard_set_maintain(l->shards);
    redis_maintain(l->redis);
    redis_maintain(l->limit_redis);
    cache_aside_maintain(l->l2);
    l1_coherence_heartbeat(l->coherence);
}

static void stop(void *arg)
{
    struct layer *l = arg;
    l->stopping = true; /* probes still in flight are answered while the shards close */
    if (l->probe_timer != NULL)
        event_free(l->probe_timer);
    l1_coherence_free(l->coherence);
    cache_aside_free(l->l2);
    redis_free(l->redis);
    redis_free(l->limit_redis); /* before the limiter: pending checks are told first */
    rate_limiter_free(l->limiter);
    edge_free(l->edge);
    api_keys_free(l->keys);
    for (int i = 0; i < LAYER10_MAX_SHARDS; i++)
        breaker_free(l->shard_breakers[i]);
    breaker_free(l->cache_breaker);
    breaker_free(l->limit_breaker);
    l1_cache_free(l->l1);
    single_flight_free(l->flights);
    shard_set_free(l->shards);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "l10-enterprise-grade",
        .layer = "10-enterprise-grade",
        .summary = "layers 4 and 5 behind API keys, rate limits, circuit breakers, deadlines "
                   "and load shedding",
        .default_port = 8010,
        CONFIG_SETS(layer_sets),
        .metric_modules = METRIC_MODULE_PG | METRIC_MODULE_POOL | METRIC_MODULE_REDIS |
                          METRIC_MODULE_CACHE | METRIC_MODULE_SHARD,
        .start = start,
        .maintain = maintain,
        .stop = stop,
        .openapi_json = layer_openapi_json,
        .drain_delay_ms = &layer.drain_delay_ms,
    };
    return server_main(argc, argv, &spec, &layer);
}
