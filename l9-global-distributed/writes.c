/*
 * Layer 9: writes, eventual and strong.
 *
 *   POST /write -> validate, region -> serving region t -> stamp (t's hlc) -> UPSERT into
 *                  records_<t> (t owns it: no other region writes it, so replication never
 *                  conflicts) -> invalidate the key in t's cache -> eventual: 200 at once;
 *                  strong: wait until every other healthy region has applied it (poll t's
 *                  pg_stat_replication from 90% of the slowest link's round trip on), bounded
 *
 * Conflicts: two regions may write one key at once; each row lands in its writer's table, every
 * region ends up with both rows, and every region's merge picks the same one (hlc, then region,
 * compared byte-wise: COLLATE "C"). A write's stamp is above the highest stamp its region has
 * for the key (read in the same statement), so a write made after reading another region's
 * value wins over it, whatever the clocks say.
 */
#include "requests.h"

#include "clock.h"
#include "http.h"
#include "pool.h"
#include "record.h"
#include "records.h"
#include "region_cache.h"
#include "server.h"
#include "validate.h"
#include "xalloc.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* $1 key, $2 value, $3 the region's stamp, $4 its name -> the stamp written. The row keeps
 * the key's first created_at in any region. A concurrent write with a higher stamp is not
 * overwritten (last writer wins by stamp, also within a region). */
static const char WRITE_SQL_FORMAT[] =
    "WITH seen AS (SELECT coalesce(max(hlc), 0) AS hlc, min(created_at) AS created_at FROM "
    "(" ALL_REGIONS("hlc, created_at") ") t) "
    "INSERT INTO records_%s AS r (key, value, hlc, region, created_at, updated_at) "
    "SELECT $1, $2, greatest($3::bigint, seen.hlc + 1), $4, coalesce(seen.created_at, now()), "
    "now() FROM seen "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, hlc = EXCLUDED.hlc, "
    "updated_at = EXCLUDED.updated_at WHERE r.hlc < EXCLUDED.hlc RETURNING hlc::text";

/* The write's end in the WAL (a commit before it in this session is at or below it). */
static const char WAL_SQL[] = "SELECT pg_current_wal_lsn()::text";

/* $1 the write's WAL position -> the subscriptions that have applied it. */
static const char APPLIED_SQL[] =
    "SELECT application_name FROM pg_stat_replication WHERE replay_lsn >= $1::pg_lsn";

char *region_write_sql(int region)
{
    return region_sql(WRITE_SQL_FORMAT, region);
}

/* ---- writes ---- */

/* One write in flight. */
struct write_flow {
    struct http_request *req;   /* answered exactly once */
    struct write_request body;  /* key and value (owned until the flow ends) */
    int client;                 /* the client's region */
    int serving;                /* the region that took the write (owns its table) */
    bool strong;                /* wait until every healthy region has applied it */
    char stamp[24];             /* the hlc given, as text */
    char region_name[16];       /* serving region's name, a query parameter */
    char lsn[32];               /* strong: the WAL position to wait for */
    bool applied[REGION_COUNT]; /* strong: regions known to have applied it */
    long long start_us;         /* when the request began (monotonic) */
    long long deadline_us;      /* strong: when waiting ends */
    struct event *poll;         /* strong: the next look at pg_stat_replication */
};

static void free_write_flow(struct write_flow *flow)
{
    if (flow->poll != NULL)
        event_free(flow->poll);
    write_request_cleanup(&flow->body);
    free(flow);
}

static void reply_written(struct write_flow *flow, bool timed_out)
{
    struct layer *layer = http_request_arg(flow->req);
    json_t *reply = record_write_reply(flow->body.key, flow->body.key_len);
    json_t *to = json_array();
    for (int i = 0; i < REGION_COUNT; i++)
        if (flow->applied[i])
            json_array_append_new(to, json_string(region_name(i)));
    char message[96];
    size_t n = json_array_size(to);
    snprintf(message, sizeof message, "Written to %s", region_upper(flow->serving));
    if (n > 0)
        snprintf(message + strlen(message), sizeof message - strlen(message),
                 " and replicated to %zu regions", n);
    json_object_set_new(reply, "message", json_string(message));
    json_object_set_new(reply, "primary_region", json_string(region_upper(flow->serving)));
    json_object_set_new(reply, "replicated_to", to);
    json_object_set_new(reply, "region", json_string(region_name(flow->client)));
    json_object_set_new(reply, "consistency", json_string(flow->strong ? "strong" : "eventual"));
    json_object_set_new(reply, "hlc", json_string(flow->stamp));
    json_object_set_new(reply, "latency_ms", json_real(round2(elapsed_ms(flow->start_us))));
    if (flow->strong) {
        json_object_set_new(reply, "strong_timed_out", json_boolean(timed_out));
        if (timed_out)
            layer->regions[flow->client].strong_timeouts++;
    }
    http_reply_json(flow->req, 200, reply);
    free_write_flow(flow);
}

static void poll_applied(struct write_flow *flow);

/* Whether every other region that is healthy now has applied the write. */
static bool applied_everywhere(const struct write_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    for (int i = 0; i < REGION_COUNT; i++)
        if (i != flow->serving && layer->regions[i].healthy && !flow->applied[i])
            return false;
    return true;
}

static void on_applied(PGresult *res, enum pg_status status, void *arg)
{
    struct write_flow *flow = arg;
    if (status == PG_OK)
        for (int row = 0; row < PQntuples(res); row++) {
            /* sub_<subscriber>_from_<serving>: the subscriber is the region that applied it */
            const char *name = PQgetvalue(res, row, 0);
            for (int i = 0; i < REGION_COUNT; i++) {
                char expected[64];
                snprintf(expected, sizeof expected, "sub_%s_from_%s", region_suffix(i),
                         region_suffix(flow->serving));
                if (strcmp(name, expected) == 0)
                    flow->applied[i] = true;
            }
        }
    if (applied_everywhere(flow)) {
        reply_written(flow, false);
        return;
    }
    if (monotonic_us() >= flow->deadline_us) {
        /* Committed in the serving region; replication goes on, the client is told so. */
        reply_written(flow, true);
        return;
    }
    struct layer *layer = http_request_arg(flow->req);
    struct timeval tv = ms_to_timeval(layer->strong_poll_ms);
    event_add(flow->poll, &tv);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    poll_applied(arg);
}

static void poll_applied(struct write_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    struct pg_call call = {{APPLIED_SQL, 1, {flow->lsn}}, on_applied, flow};
    pool_query(layer->regions[flow->client].pools[flow->serving], &call);
}

/*
 * When the first look at pg_stat_replication can find the write applied: no region can have
 * applied it before its link's round trip (the write crosses to it, its report comes back).
 * A region's round trip is the smaller of the configured one (twice the matrix's one-way
 * latency) and the one its probe last measured through the link its subscription uses (from
 * it to the serving region; a load spike cannot stretch the wait past the configured one, a
 * link faster than configured cannot make it late). The first poll waits for 90% of the
 * slowest among the regions to wait for, then every STRONG_POLL_MS: polling from the commit
 * on asked the serving region about 90 times per strong write through a 90 ms link, CPU
 * taken from the walsenders, apply workers and links the write waits for.
 */
static int first_poll_ms(const struct write_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    double slowest = 0;
    for (int i = 0; i < REGION_COUNT; i++) {
        if (i == flow->serving || !layer->regions[i].healthy)
            continue;
        double rtt = 2 * layer->matrix.ms[i][flow->serving];
        double measured = layer->regions[i].rtt_ms[flow->serving];
        if (measured >= 0 && measured < rtt)
            rtt = measured;
        if (rtt > slowest)
            slowest = rtt;
    }
    return (int)(slowest * 0.9);
}

/* The write's answer (and, strong, the WAL position after its commit, or NULL). */
static void written(struct write_flow *flow, PGresult *res, enum pg_status status, PGresult *lsn)
{
    struct layer *layer = http_request_arg(flow->req);
    /* The serving region's cache forgets the key before the reply, so this client's next read
     * there (after this command on the same Redis connection) cannot see the old value; also
     * when the write failed, for it may have committed (a timeout, a lost connection). The
     * other regions' caches forget it when replication applies it (region_cache.h). */
    region_cache_invalidate(layer->regions[flow->serving].cache, flow->body.key,
                            flow->body.key_len);
    if (status != PG_OK) {
        records_reply_failure(flow->req, status);
        free_write_flow(flow);
        return;
    }
    if (PQntuples(res) == 1) { /* else a higher stamp was there first: it stays */
        const char *stamp = PQgetvalue(res, 0, 0);
        snprintf(flow->stamp, sizeof flow->stamp, "%s", stamp);
        hlc_observe(&layer->regions[flow->serving].clock, strtoull(stamp, NULL, 10));
    }
    if (!flow->strong) {
        reply_written(flow, false);
        return;
    }
    if (lsn == NULL || PQntuples(lsn) != 1) { /* committed; position unknown */
        reply_written(flow, true);
        return;
    }
    snprintf(flow->lsn, sizeof flow->lsn, "%s", PQgetvalue(lsn, 0, 0));
    flow->deadline_us = flow->start_us + layer->strong_timeout_ms * 1000;
    flow->poll = event_new(server_base(layer->server), -1, 0, on_poll, flow);
    if (flow->poll == NULL) {
        reply_written(flow, true); /* committed; cannot wait */
        return;
    }
    struct timeval first = ms_to_timeval(first_poll_ms(flow));
    event_add(flow->poll, &first);
}

/* Eventual: the write alone, a prepared statement (pool_query prepares it once per connection;
 * a batch would send its text, parsed and planned again by PostgreSQL for every write). */
static void on_written(PGresult *res, enum pg_status status, void *arg)
{
    written(arg, res, status, NULL);
}

/* Strong: the write, then the WAL position, in one round trip. */
static void on_written_strong(const struct pg_reply *replies, int count, enum pg_status status,
                              void *arg)
{
    (void)count;
    written(arg, replies[0].res, replies[0].status, status == PG_OK ? replies[1].res : NULL);
}

static bool wants_strong(struct http_request *req)
{
    char value[16];
    const char *header = http_request_header(req, CONSISTENCY_HEADER);
    const char *param = query_param(req, "consistency", value, sizeof value);
    return (header != NULL && strcmp(header, "strong") == 0) ||
           (param != NULL && strcmp(param, "strong") == 0);
}

void handle_write(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    size_t len;
    const char *text = http_request_body(req, &len);
    json_t *errors = json_array();
    struct write_request body;
    bool valid = validate_write_request(text, len, layer->max_value_bytes, &body, errors);
    int client = client_region(req, valid ? body.document : NULL, errors);
    if (!valid || client < 0) {
        if (valid)
            write_request_cleanup(&body);
        http_reply_validation(req, errors);
        return;
    }
    json_decref(errors);
    struct region *home = &layer->regions[client];
    home->writes++;
    int serving = serving_region(layer, client);
    if (serving < 0) {
        write_request_cleanup(&body);
        http_reply_error(req, 503, "Database unavailable");
        return;
    }
    if (serving != client)
        home->served_elsewhere++;
    struct write_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->body = body;
    flow->client = client;
    flow->serving = serving;
    flow->strong = wants_strong(req);
    flow->start_us = monotonic_us();
    if (flow->strong)
        home->strong_writes++;
    snprintf(flow->stamp, sizeof flow->stamp, "%" PRIu64,
             hlc_now(&layer->regions[serving].clock, wall_ms()));
    snprintf(flow->region_name, sizeof flow->region_name, "%s", region_name(serving));
    struct pg_statement write = {
        layer->regions[serving].write_sql,
        4,
        {flow->body.key, flow->body.value, flow->stamp, flow->region_name}};
    if (!flow->strong) {
        struct pg_call call = {write, on_written, flow};
        pool_query(home->pools[serving], &call);
        return;
    }
    /* Each statement commits on its own: the position read after the UPSERT is at or past its
     * commit, in the same round trip. (A connection that has prepared the write runs it by
     * name here too.) */
    struct pg_batch batch = {
        .mode = PG_BATCH_EACH,
        .count = 2,
        .statements = {write, {WAL_SQL, 0, {NULL}}},
        .cb = on_written_strong,
        .arg = flow,
    };
    pool_batch(home->pools[serving], &batch);
}
