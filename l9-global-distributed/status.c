/*
 * Layer 9: /health, /stats and /regions: each region's health, cache, lag, staleness and
 * round trips, as the heartbeats and the request counters measured them (nothing is asked of a
 * database here: the heartbeat is the health check).
 */
#include "requests.h"

#include "health.h"
#include "http.h"
#include "pool.h"
#include "region_cache.h"
#include "server.h"

#include <stdint.h>

/* ---- health, stats, regions ---- */

void handle_health(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    bool healthy[REGION_COUNT];
    bool any = healthy_set(layer, healthy);
    int up = 0;
    struct health health;
    health_begin(&health, server_spec(layer->server)->layer);
    json_t *regions = json_object();
    for (int i = 0; i < REGION_COUNT; i++) {
        json_object_set_new(regions, region_name(i), json_boolean(healthy[i]));
        health_note(&health, healthy[i], HEALTH_OPTIONAL);
        up += healthy[i];
    }
    /* A region's Redis down: its reads go to its PostgreSQL (degraded). */
    json_t *caches = json_object();
    for (int i = 0; i < REGION_COUNT; i++) {
        bool cache_up = region_cache_available(layer->regions[i].cache);
        json_object_set_new(caches, region_name(i), json_boolean(cache_up));
        health_note(&health, cache_up, HEALTH_OPTIONAL);
    }
    json_object_set_new(health.body, "caches", caches);
    /* One region left serves everyone (degraded); none is unhealthy. */
    health_member(&health, "database", any, HEALTH_REQUIRED);
    json_object_set_new(health.body, "regions", regions);
    json_object_set_new(health.body, "total_regions", json_integer(REGION_COUNT));
    json_object_set_new(health.body, "healthy_regions", json_integer(up));
    health_reply(req, &health);
}

static json_t *ms_or_null(double ms)
{
    return ms < 0 ? json_null() : json_real(round2(ms));
}

/* Region i's state, as /regions and /stats show it. */
static json_t *region_json(const struct layer *layer, int i, bool detail)
{
    const struct region *r = &layer->regions[i];
    json_t *o = json_object();
    json_object_set_new(o, "healthy", json_boolean(r->healthy));
    int serving = serving_region(layer, i);
    json_object_set_new(o, "served_by",
                        serving < 0 ? json_null() : json_string(region_name(serving)));
    json_object_set_new(o, "reads", json_integer((json_int_t)r->reads));
    json_object_set_new(o, "writes", json_integer((json_int_t)r->writes));
    json_object_set_new(o, "served_elsewhere", json_integer((json_int_t)r->served_elsewhere));
    json_object_set_new(o, "strong_writes", json_integer((json_int_t)r->strong_writes));
    json_object_set_new(o, "strong_timeouts", json_integer((json_int_t)r->strong_timeouts));
    json_t *lag = json_object(), *stale = json_object(), *rtt = json_object(),
           *latency = json_object();
    for (int p = 0; p < REGION_COUNT; p++) {
        if (p == i) {
            json_object_set_new(rtt, region_name(p), ms_or_null(r->rtt_ms[p]));
            continue;
        }
        json_object_set_new(lag, region_name(p), ms_or_null(r->lag_ms[p]));
        json_object_set_new(stale, region_name(p), ms_or_null(r->stale_ms[p]));
        json_object_set_new(rtt, region_name(p), ms_or_null(r->rtt_ms[p]));
        json_object_set_new(latency, region_name(p), json_real(layer->matrix.ms[i][p]));
    }
    json_object_set_new(o, "replication_lag_ms", lag);
    json_object_set_new(o, "staleness_ms", stale);
    if (detail) {
        json_object_set_new(o, "link_latency_ms", latency);
        json_object_set_new(o, "round_trip_ms", rtt);
    }
    return o;
}

void handle_regions(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    json_t *list = json_array();
    for (int i = 0; i < REGION_COUNT; i++) {
        json_t *o = region_json(layer, i, true);
        json_object_set_new(o, "name", json_string(region_name(i)));
        json_array_append_new(list, o);
    }
    json_t *reply = json_object();
    json_object_set_new(reply, "regions", list);
    json_object_set_new(reply, "default_region", json_string(region_name(layer->default_index)));
    json_object_set_new(reply, "conflict_rule",
                        json_string("last writer wins by hybrid logical clock, region name "
                                    "(byte order) breaking ties"));
    http_reply_json(req, 200, reply);
}

void handle_stats(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    json_t *regions = json_object();
    int up = 0;
    for (int i = 0; i < REGION_COUNT; i++) {
        json_t *o = region_json(layer, i, false);
        struct pool_stats ps;
        pool_get_stats(layer->regions[i].pools[i], &ps);
        json_object_set_new(o, "pool_size", json_integer(ps.size));
        const struct region *r = &layer->regions[i];
        json_t *cache = region_cache_stats_json(r->cache);
        uint64_t lookups = r->cache_hits + r->cache_misses;
        json_object_set_new(cache, "hits", json_integer((json_int_t)r->cache_hits));
        json_object_set_new(cache, "misses", json_integer((json_int_t)r->cache_misses));
        json_object_set_new(
            cache, "hit_rate",
            json_real(lookups ? round2(100.0 * (double)r->cache_hits / (double)lookups) : 0.0));
        json_object_set_new(o, "cache", cache);
        json_object_set_new(regions, region_name(i), o);
        up += layer->regions[i].healthy;
    }
    json_t *reply = json_object();
    json_object_set_new(reply, "regions", regions);
    json_object_set_new(reply, "total_regions", json_integer(REGION_COUNT));
    json_object_set_new(reply, "healthy_regions", json_integer(up));
    http_reply_json(req, 200, reply);
}
