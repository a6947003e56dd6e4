/*
 * Layer 9: what the server knows of each region: its state's life cycle, the heartbeats and the
 * round-trip probes.
 *
 * Every region stamps its own heartbeat row every HEARTBEAT_MS; it replicates like any row;
 * where it arrives a trigger notes when. The lag of p -> r is then (applied - stamped) of p's
 * row in r, and r's staleness from p the age of the newest p row r has: r has every write p
 * made before that. A heartbeat that fails (or hangs past HEALTH_TIMEOUT_MS) marks the region
 * down, and its clients are served by the nearest healthy one.
 */
#include "requests.h"

#include "health.h"
#include "log.h"
#include "pool.h"
#include "region_cache.h"
#include "server.h"
#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HEARTBEAT_SQL_FORMAT[] =
    "INSERT INTO heartbeat_%s (region, beat) VALUES ($1, clock_timestamp()) "
    "ON CONFLICT (region) DO UPDATE SET beat = EXCLUDED.beat";

/* Every region's newest heartbeat here: region, lag (ms), age (ms). */
#define HEARTBEAT_COLUMNS                                                                          \
    "region, extract(epoch FROM applied_at - beat) * 1000, "                                       \
    "extract(epoch FROM clock_timestamp() - beat) * 1000"
static const char HEARTBEATS_SQL[] =
    "SELECT " HEARTBEAT_COLUMNS " FROM heartbeat_us_east UNION ALL "
    "SELECT " HEARTBEAT_COLUMNS " FROM heartbeat_eu_west UNION ALL "
    "SELECT " HEARTBEAT_COLUMNS " FROM heartbeat_asia_pac";

void region_init(struct region *r, struct layer *layer, int index, long long clock_offset_ms)
{
    r->layer = layer;
    r->index = index;
    r->write_sql = region_write_sql(index);
    r->heartbeat_sql = region_sql(HEARTBEAT_SQL_FORMAT, index);
    hlc_init(&r->clock, clock_offset_ms);
    r->healthy = false; /* until its first heartbeat */
    for (int p = 0; p < REGION_COUNT; p++)
        r->lag_ms[p] = r->stale_ms[p] = r->rtt_ms[p] = -1;
}

void region_cleanup(struct region *r)
{
    region_cache_free(r->cache);
    for (int to = 0; to < REGION_COUNT; to++)
        pool_free(r->pools[to]);
    free(r->write_sql);
    free(r->heartbeat_sql);
}

/* ---- heartbeats and probes ---- */

/* The server listens once every region's health is known, so that /health tells the truth
 * from its first answer. */
static void listen_when_known(struct layer *layer)
{
    bool known = true;
    for (int i = 0; i < REGION_COUNT; i++)
        known = known && layer->regions[i].beaten;
    if (known && !layer->ready) {
        layer->ready = true;
        server_ready(layer->server);
    }
}

static void on_beat(const struct pg_reply *replies, int count, enum pg_status status, void *arg)
{
    struct region *r = arg;
    (void)count;
    (void)status;
    bool up = replies[0].status == PG_OK;
    if (up != r->healthy)
        LOG_WARN("region %s is %s", region_name(r->index), up ? "up" : "down");
    r->healthy = up;
    r->beat_in_flight = false;
    r->beaten = true;
    listen_when_known(r->layer);
    if (replies[1].status != PG_OK)
        return;
    PGresult *res = replies[1].res;
    for (int row = 0; row < PQntuples(res); row++) {
        const char *name = PQgetvalue(res, row, 0);
        int p = region_find(name, strlen(name));
        if (p < 0 || p == r->index)
            continue;
        r->lag_ms[p] = PQgetisnull(res, row, 1) ? -1 : strtod(PQgetvalue(res, row, 1), NULL);
        r->stale_ms[p] = strtod(PQgetvalue(res, row, 2), NULL);
        r->stale_at_us[p] = monotonic_us();
    }
}

void regions_beat(struct layer *layer)
{
    long long now = monotonic_ms();
    for (int i = 0; i < REGION_COUNT; i++) {
        struct region *r = &layer->regions[i];
        if (r->beat_in_flight) {
            /* A hung database answers nothing: unhealthy after the health deadline. */
            if (now - r->beat_sent_ms > HEALTH_TIMEOUT_MS && (r->healthy || !r->beaten)) {
                LOG_WARN("region %s does not answer", region_name(i));
                r->healthy = false;
                r->beaten = true; /* known: down (the start-up waits no longer) */
                listen_when_known(layer);
            }
            continue;
        }
        r->beat_in_flight = true;
        r->beat_sent_ms = now;
        struct pg_batch batch = {
            .mode = PG_BATCH_EACH,
            .count = 2,
            .statements = {{r->heartbeat_sql, 1, {region_name(i)}}, {HEARTBEATS_SQL, 0, {NULL}}},
            .cb = on_beat,
            .arg = r,
        };
        pool_batch(r->pools[i], &batch);
    }
}

static void on_probe(PGresult *res, enum pg_status status, void *arg)
{
    struct region_probe *probe = arg;
    (void)res;
    probe->layer->regions[probe->from].rtt_ms[probe->to] =
        status == PG_OK ? elapsed_ms(probe->start_us) : -1;
    probe->in_flight = false;
}

void regions_probe(struct layer *layer)
{
    for (int from = 0; from < REGION_COUNT; from++)
        for (int to = 0; to < REGION_COUNT; to++) {
            struct region_probe *probe = &layer->regions[from].probes[to];
            if (probe->in_flight)
                continue;
            *probe = (struct region_probe){layer, from, to, monotonic_us(), true};
            struct pg_call call = {{"SELECT 1", 0, {NULL}}, on_probe, probe};
            pool_query(layer->regions[from].pools[to], &call);
        }
}
