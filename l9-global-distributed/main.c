/*
 * Layer 9: three regions. Configuration, routes and start-up.
 *
 * What is new since layer 3: three regions (us-east, eu-west, asia-pac), each with its own
 * PostgreSQL (REGION_DATABASE_URLS), replicating to the others through WAN links
 * (REGION_LINK_URLS, the delay proxies l9-links runs; REGION_LATENCY_MS their delays). One
 * server serves every region: per client region a pool to each region's PostgreSQL, directly to
 * its own, through the link to the others (used when its own is down, so failover pays the real
 * distance). Hybrid logical clocks stamp the writes (REGION_CLOCK_OFFSET_MS skews one to show
 * why), a strong write waits for the other regions (STRONG_TIMEOUT_MS), and a heartbeat
 * (HEARTBEAT_MS) measures health, lag and staleness. Each region's Redis (REGION_REDIS_URLS,
 * CACHE_TTL) caches its local reads, invalidated by the server's writes and by replication's
 * (region_cache.h).
 *
 * The tables, publications and subscriptions are not the server's: creating a subscription
 * needs a superuser, and the application role may write only its region's tables. They are made
 * by replication.sh (./layers up, the tests), before the server starts; until they are, the
 * heartbeat fails and /health says so.
 */
#include "handlers.h"

#include "cache_aside.h"
#include "region_cache.h"

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "openapi_document.h"
#include "pool.h"
#include "pool_config.h"
#include "server.h"
#include "xalloc.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

static struct layer layer;

static const char *const region_names[] = {"us-east", "eu-west", "asia-pac", NULL};

static const struct config_row layer_rows[] = {
    {"REGION_DATABASE_URLS", CONFIG_STRING,
     "postgresql://layers@127.0.0.1:15490/layers,postgresql://layers@127.0.0.1:15491/layers,"
     "postgresql://layers@127.0.0.1:15492/layers",
     0, 0, "PostgreSQL of us-east, eu-west, asia-pac (comma-separated)", &layer.database_urls,
     NULL},
    {"REGION_LINK_URLS", CONFIG_STRING,
     "postgresql://layers@127.0.0.1:15493/layers,postgresql://layers@127.0.0.1:15494/layers,"
     "postgresql://layers@127.0.0.1:15495/layers,postgresql://layers@127.0.0.1:15496/layers,"
     "postgresql://layers@127.0.0.1:15497/layers,postgresql://layers@127.0.0.1:15498/layers",
     0, 0,
     "the WAN links' PostgreSQL URLs, in the order us-east->eu-west, us-east->asia-pac, "
     "eu-west->us-east, eu-west->asia-pac, asia-pac->us-east, asia-pac->eu-west",
     &layer.link_urls, NULL},
    {"REGION_REDIS_URLS", CONFIG_STRING,
     "redis://127.0.0.1:16490/0,redis://127.0.0.1:16491/0,redis://127.0.0.1:16492/0", 0, 0,
     "Redis of us-east, eu-west, asia-pac (comma-separated): each region's cache",
     &layer.redis_urls, NULL},
    {"REDIS_TIMEOUT_MS", CONFIG_INT, "500", 10, 60000,
     "deadline for connecting to a Redis and for each command", &layer.redis_timeout_ms, NULL},
    {"REGION_LATENCY_MS", CONFIG_STRING, "", 0, 0,
     "one-way delays overriding the defaults (us-east:eu-west=40,us-east:asia-pac=90,"
     "eu-west:asia-pac=80)",
     &layer.latency, NULL},
    {"REGION_CLOCK_OFFSET_MS", CONFIG_STRING, "", 0, 0,
     "skew regions' clocks, e.g. eu-west=-5000 (to show the hybrid logical clock at work)",
     &layer.clock_offsets, NULL},
    {"DEFAULT_REGION", CONFIG_ENUM, "us-east", 0, 0,
     "the region of a request that names none", &layer.default_region, region_names},
    {"STRONG_TIMEOUT_MS", CONFIG_INT, "2000", 10, 60000,
     "how long a strong write waits for the other regions to apply it", &layer.strong_timeout_ms,
     NULL},
    {"STRONG_POLL_MS", CONFIG_INT, "2", 1, 1000,
     "how often a strong write asks whether they have", &layer.strong_poll_ms, NULL},
    {"HEARTBEAT_MS", CONFIG_INT, "250", 50, 10000,
     "how often each region stamps its heartbeat (health, lag, staleness)", &layer.heartbeat_ms,
     NULL},
};

static const struct config_set layer_sets[] = {
    POOL_EACH_CONFIG_SET(&layer.db),
    CACHE_CONFIG_SET(&layer.cache_ttl_s),
    CONFIG_SET("layer 9", layer_rows),
};

/* Splits a comma-separated list into exactly n copies; false when the count differs. */
static bool split_urls(const char *list, char **out, int n)
{
    int count = 0;
    for (const char *s = list; *s != '\0' && count <= n;) {
        const char *end = strchr(s, ',');
        size_t len = end != NULL ? (size_t)(end - s) : strlen(s);
        if (count < n) {
            out[count] = xmalloc(len + 1);
            memcpy(out[count], s, len);
            out[count][len] = '\0';
        }
        count++;
        s = end != NULL ? end + 1 : s + len;
    }
    if (count == n)
        return true;
    for (int i = 0; i < n && i < count; i++)
        free(out[i]);
    return false;
}

static void free_urls(char **urls, int n)
{
    for (int i = 0; i < n; i++)
        free(urls[i]);
}

static void on_beat_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    regions_beat(arg);
}

static bool start(struct server *server, void *arg)
{
    struct layer *l = arg;
    l->server = server;
    l->max_value_bytes = (size_t)server_config(server)->max_value_bytes;
    if (!pool_config_check(&l->db))
        return false;
    l->db.resolver = server_resolver(server);
    char err[256];
    long long offsets[REGION_COUNT];
    if (!region_matrix_parse(l->latency, &l->matrix, err, sizeof err) ||
        !region_offsets_parse(l->clock_offsets, offsets, err, sizeof err)) {
        LOG_ERROR("%s", err);
        return false;
    }
    l->default_index = region_find(l->default_region, strlen(l->default_region));
    char *dbs[REGION_COUNT], *links[LINK_COUNT], *caches[REGION_COUNT];
    if (!split_urls(l->database_urls, dbs, REGION_COUNT)) {
        LOG_ERROR("REGION_DATABASE_URLS needs %d URLs (us-east, eu-west, asia-pac)", REGION_COUNT);
        return false;
    }
    if (!split_urls(l->link_urls, links, LINK_COUNT)) {
        LOG_ERROR("REGION_LINK_URLS needs %d URLs (one per link, see --help)", LINK_COUNT);
        free_urls(dbs, REGION_COUNT);
        return false;
    }
    if (!split_urls(l->redis_urls, caches, REGION_COUNT)) {
        LOG_ERROR("REGION_REDIS_URLS needs %d URLs (us-east, eu-west, asia-pac)", REGION_COUNT);
        free_urls(dbs, REGION_COUNT);
        free_urls(links, LINK_COUNT);
        return false;
    }
    bool ok = true;
    for (int from = 0; from < REGION_COUNT; from++) {
        struct region *r = &l->regions[from];
        region_init(r, l, from, offsets[from]);
        for (int to = 0; to < REGION_COUNT; to++) {
            struct pool_config c = l->db;
            c.database_url = from == to ? dbs[to] : links[region_link(from, to)];
            char application[64];
            snprintf(application, sizeof application, "l9-%s-to-%s", region_name(from),
                     region_name(to));
            r->pools[to] = pool_config_create(&c, server_base(server), application,
                                              server_metrics(server));
        }
        r->cache = region_cache_create(server, region_name(from), caches[from],
                                       l->redis_timeout_ms, dbs[from], l->db.connect_timeout_ms,
                                       l->cache_ttl_s);
        ok = ok && r->cache != NULL;
        if (offsets[from] != 0)
            LOG_INFO("region %s: clock offset %lld ms", region_name(from), offsets[from]);
    }
    free_urls(dbs, REGION_COUNT);
    free_urls(links, LINK_COUNT);
    free_urls(caches, REGION_COUNT);
    if (!ok)
        return false;
    LOG_INFO("regions: us-east<->eu-west %.1f ms, us-east<->asia-pac %.1f ms, "
             "eu-west<->asia-pac %.1f ms one way; default %s",
             l->matrix.ms[0][1], l->matrix.ms[0][2], l->matrix.ms[1][2], l->default_region);

    struct http_server *http = server_http(server);
    http_route(http, HTTP_POST, "/write", handle_write, l);
    http_route(http, HTTP_GET, "/read/{key}", handle_read, l);
    http_route(http, HTTP_GET, "/health", handle_health, l);
    http_route(http, HTTP_GET, "/stats", handle_stats, l);
    http_route(http, HTTP_GET, "/regions", handle_regions, l);

    /* The heartbeat runs faster than the once-a-second maintenance: lag is measured in tens of
     * milliseconds, and a region that stops shows within HEARTBEAT_MS. */
    l->beat = event_new(server_base(server), -1, EV_PERSIST, on_beat_timer, l);
    struct timeval tv = {l->heartbeat_ms / 1000, (l->heartbeat_ms % 1000) * 1000};
    event_add(l->beat, &tv);
    regions_beat(l); /* the server listens once every region's first heartbeat is back */
    return true;
}

static void maintain(void *arg)
{
    struct layer *l = arg;
    for (int from = 0; from < REGION_COUNT; from++)
        for (int to = 0; to < REGION_COUNT; to++)
            pool_maintain(l->regions[from].pools[to]);
    for (int i = 0; i < REGION_COUNT; i++)
        region_cache_maintain(l->regions[i].cache);
    regions_probe(l);
}

static void stop(void *arg)
{
    struct layer *l = arg;
    if (l->beat != NULL)
        event_free(l->beat);
    for (int i = 0; i < REGION_COUNT; i++)
        region_cleanup(&l->regions[i]);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "l9-global-distributed",
        .layer = "9-global-distributed",
        .summary = "key/value API in three regions, each with its own PostgreSQL, replicated "
                   "logically across simulated WAN links, with hybrid-logical-clock conflicts "
                   "and region failover",
        .default_port = 8009,
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
