/*
 * Layer 9: three regions. The read and write paths, and what the server knows of each region.
 *
 * Each region has its own PostgreSQL; PostgreSQL replicates between them (logical replication,
 * replication.sh), across WAN links that add real delay (l9-links.sh). A client names its
 * region (X-Region, else the body's "region", else DEFAULT_REGION) and is served there, at
 * local latency, or, when that region's database is down, by the nearest healthy region
 * (regions.h), through the link, at the link's cost:
 *
 *   POST /write     -> validate, region -> serving region t -> stamp (t's hlc) -> UPSERT into
 *                      records_<t> (t owns it: no other region writes it, so replication never
 *                      conflicts) -> eventual: 200 at once; strong: wait until every other
 *                      healthy region has applied it (poll t's pg_stat_replication), bounded
 *   GET /read/{key} -> region -> serving region t -> (max_staleness_ms: t fresh enough?) ->
 *                      t is the client's region: t's Redis (region_cache.h) -> hit: 200 ->
 *                      miss (or failover): the merge of the three tables on t: highest hlc
 *                      wins, region breaks ties -> fill t's Redis -> 200 (source: t, latency_ms)
 *
 * A region's cache forgets a key when the server commits a write there (on_written) and when
 * replication applies another region's row there (a trigger's NOTIFY, region_cache.h).
 *
 * Conflicts: two regions may write one key at once; each row lands in its writer's table, every
 * region ends up with both rows, and every region's merge picks the same one (hlc, then region,
 * compared byte-wise: COLLATE "C"). A write's stamp is above the highest stamp its region has
 * for the key (read in the same statement), so a write made after reading another region's
 * value wins over it, whatever the clocks say.
 *
 * What each region knows of the others comes from heartbeats (regions_beat): every region
 * stamps its own heartbeat row every HEARTBEAT_MS; it replicates like any row; where it arrives a
 * trigger notes when. The lag of p -> r is then (applied - stamped) of p's row in r, and r's
 * staleness from p the age of the newest p row r has: r has every write p made before that.
 */
#include "handlers.h"

#include "clock.h"
#include "health.h"
#include "http.h"
#include "log.h"
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
#include <sys/time.h>

#define REGION_HEADER      "X-Region"
#define CONSISTENCY_HEADER "X-Consistency"

/* ---- the SQL ---- */

#define TIMESTAMP_UTC(column)                                                                      \
    "to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* The three tables as one: a read merges them, a write reads its key's highest stamp in them. */
#define ALL_REGIONS(columns)                                                                       \
    "SELECT " columns " FROM records_us_east WHERE key = $1 UNION ALL "                           \
    "SELECT " columns " FROM records_eu_west WHERE key = $1 UNION ALL "                           \
    "SELECT " columns " FROM records_asia_pac WHERE key = $1"

/* $1 key -> value, created_at, updated_at, hlc, region of the winning row, or no row. */
static const char READ_SQL[] =
    "SELECT value, " TIMESTAMP_UTC("created_at") ", " TIMESTAMP_UTC(
        "updated_at") ", hlc::text, region FROM (" ALL_REGIONS("*") ") t "
                      "ORDER BY hlc DESC, region COLLATE \"C\" DESC LIMIT 1";

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

static char *format_sql(const char *format, int region)
{
    size_t len = strlen(format) + 16;
    char *sql = xmalloc(len);
    snprintf(sql, len, format, region_suffix(region));
    return sql;
}

void region_init(struct region *r, struct layer *layer, int index, long long clock_offset_ms)
{
    r->layer = layer;
    r->index = index;
    r->write_sql = format_sql(WRITE_SQL_FORMAT, index);
    r->heartbeat_sql = format_sql(HEARTBEAT_SQL_FORMAT, index);
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

/* ---- helpers ---- */

static long long wall_ms(void)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    return (long long)now.tv_sec * 1000 + now.tv_usec / 1000;
}

static long long monotonic_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static double elapsed_ms(long long start_us)
{
    return (double)(monotonic_us() - start_us) / 1000.0;
}

static double round2(double x)
{
    return (double)(long long)(x * 100 + (x >= 0 ? 0.5 : -0.5)) / 100;
}

static bool healthy_set(const struct layer *layer, bool healthy[REGION_COUNT])
{
    bool any = false;
    for (int i = 0; i < REGION_COUNT; i++) {
        healthy[i] = layer->regions[i].healthy;
        any = any || healthy[i];
    }
    return any;
}

static int serving_region(const struct layer *layer, int client)
{
    bool healthy[REGION_COUNT];
    healthy_set(layer, healthy);
    return region_serving(&layer->matrix, client, healthy);
}

static void add_region_error(json_t *errors, const char *place, const char *field,
                             const char *value, size_t len)
{
    char msg[256];
    snprintf(msg, sizeof msg, "Value error, unknown region '%.*s': valid regions are %s",
             (int)(len > 64 ? 64 : len), value, region_list());
    validation_error_add(errors, "value_error", place, field, msg);
}

/* The client's region: X-Region, else the body's "region" (body may be NULL), else the default.
 * -1 with an error in errors for a name that is no region. */
static int client_region(struct http_request *req, const json_t *body, json_t *errors)
{
    struct layer *layer = http_request_arg(req);
    const char *name = http_request_header(req, REGION_HEADER);
    if (name != NULL) {
        int region = region_find(name, strlen(name));
        if (region < 0)
            add_region_error(errors, "header", "x-region", name, strlen(name));
        return region;
    }
    json_t *member = body != NULL ? json_object_get(body, "region") : NULL;
    if (member == NULL || json_is_null(member))
        return layer->default_index;
    if (!json_is_string(member)) {
        validation_error_add(errors, "string_type", "body", "region",
                             "Input should be a valid string");
        return -1;
    }
    int region = region_find(json_string_value(member), json_string_length(member));
    if (region < 0)
        add_region_error(errors, "body", "region", json_string_value(member),
                         json_string_length(member));
    return region;
}

/* The value of query parameter name in req's query string, or NULL (copied into out). */
static const char *query_param(struct http_request *req, const char *name, char *out,
                               size_t outlen)
{
    const char *query = http_request_query(req);
    size_t name_len = strlen(name);
    for (const char *p = query; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '&');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
            size_t vlen = len - name_len - 1;
            if (vlen >= outlen)
                vlen = outlen - 1;
            memcpy(out, p + name_len + 1, vlen);
            out[vlen] = '\0';
            return out;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return NULL;
}

/* ---- writes ---- */

/* One write in flight. */
struct write_flow {
    struct http_request *req;  /* answered exactly once */
    struct write_request body; /* key and value (owned until the flow ends) */
    int client;                /* the client's region */
    int serving;               /* the region that took the write (owns its table) */
    bool strong;               /* wait until every healthy region has applied it */
    char stamp[24];            /* the hlc given, as text */
    char region_name[16];      /* serving region's name, a query parameter */
    char lsn[32];              /* strong: the WAL position to wait for */
    bool applied[REGION_COUNT]; /* strong: regions known to have applied it */
    long long start_us;        /* when the request began (monotonic) */
    long long deadline_us;     /* strong: when waiting ends */
    struct event *poll;        /* strong: the next look at pg_stat_replication */
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

static void on_written(const struct pg_reply *replies, int count, enum pg_status status,
                       void *arg)
{
    struct write_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    (void)count;
    if (replies[0].status != PG_OK) {
        records_reply_failure(flow->req, replies[0].status);
        free_write_flow(flow);
        return;
    }
    /* Committed: the serving region's cache forgets the key before the reply, so this client's
     * next read there (after this command on the same Redis connection) cannot see the old
     * value. The other regions' caches forget it when replication applies it (region_cache.h). */
    region_cache_invalidate(layer->regions[flow->serving].cache, flow->body.key,
                            flow->body.key_len);
    if (PQntuples(replies[0].res) == 1) { /* else a higher stamp was there first: it stays */
        const char *stamp = PQgetvalue(replies[0].res, 0, 0);
        snprintf(flow->stamp, sizeof flow->stamp, "%s", stamp);
        hlc_observe(&layer->regions[flow->serving].clock, strtoull(stamp, NULL, 10));
    }
    if (!flow->strong) {
        reply_written(flow, false);
        return;
    }
    if (status != PG_OK || PQntuples(replies[1].res) != 1) { /* committed; position unknown */
        reply_written(flow, true);
        return;
    }
    snprintf(flow->lsn, sizeof flow->lsn, "%s", PQgetvalue(replies[1].res, 0, 0));
    flow->deadline_us = flow->start_us + layer->strong_timeout_ms * 1000;
    flow->poll = event_new(server_base(layer->server), -1, 0, on_poll, flow);
    poll_applied(flow);
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
    /* Each statement commits on its own: the position read after the UPSERT is at or past its
     * commit, in the same round trip. */
    struct pg_batch batch = {
        .mode = PG_BATCH_EACH,
        .count = flow->strong ? 2 : 1,
        .statements = {{layer->regions[serving].write_sql,
                        4,
                        {flow->body.key, flow->body.value, flow->stamp, flow->region_name}},
                       {WAL_SQL, 0, {NULL}}},
        .cb = on_written,
        .arg = flow,
    };
    pool_batch(home->pools[serving], &batch);
}

/* ---- reads ---- */

/* One read in flight. */
struct read_flow {
    struct http_request *req; /* answered exactly once */
    char *key;                /* percent-decoded key */
    size_t key_len;           /* its length in bytes */
    int client;               /* the client's region */
    int serving;              /* the region that answers */
    double stale_ms;          /* how much of the other regions' writes it may miss (-1: unknown) */
    long long start_us;       /* when the request began (monotonic) */
    bool retried;             /* already sent to a second region */
    char *token;              /* the cache version seen on a miss, or NULL (cache not used) */
    unsigned long long epoch; /* the cache's epoch at the lookup (region_cache_fill) */
};

static void free_read_flow(struct read_flow *flow)
{
    free(flow->key);
    free(flow->token);
    free(flow);
}

/* How far behind region r may be: the largest age of another healthy region's heartbeat, now
 * (its age when the last heartbeat read it, plus the time since). A value from r's cache is as
 * stale as r's tables: a row applied there invalidates it (region_cache.h). */
static double region_staleness(const struct layer *layer, int r)
{
    double worst = 0;
    for (int p = 0; p < REGION_COUNT; p++) {
        if (p == r || !layer->regions[p].healthy)
            continue;
        double stale = layer->regions[r].stale_ms[p];
        if (stale < 0)
            return -1;
        stale += elapsed_ms(layer->regions[r].stale_at_us[p]); /* older by now */
        if (stale > worst)
            worst = stale;
    }
    return worst;
}

static void on_read(PGresult *res, enum pg_status status, void *arg);

/* A read that could not reach its region (down before the heartbeat noticed) goes once to the
 * nearest other healthy region: a read is safe to repeat, a write is not (it may have run). */
static bool retry_elsewhere(struct read_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    bool healthy[REGION_COUNT];
    healthy_set(layer, healthy);
    healthy[flow->serving] = false;
    int next = region_serving(&layer->matrix, flow->client, healthy);
    if (flow->retried || next < 0)
        return false;
    flow->retried = true;
    if (flow->serving == flow->client)
        layer->regions[flow->client].served_elsewhere++;
    flow->serving = next;
    flow->stale_ms = region_staleness(layer, next);
    struct pg_call call = {{READ_SQL, 1, {flow->key}}, on_read, flow};
    pool_query(layer->regions[flow->client].pools[next], &call);
    return true;
}

/* The answer, from the cache or from the serving region's tables (rec NULL: not found). */
static void reply_read(struct read_flow *flow, const struct record *rec, bool cache_hit)
{
    json_t *reply = record_read_reply(rec, flow->key, flow->key_len);
    json_object_set_new(reply, "source", json_string(region_name(flow->serving)));
    json_object_set_new(reply, "region", json_string(region_name(flow->client)));
    json_object_set_new(reply, "latency_ms", json_real(round2(elapsed_ms(flow->start_us))));
    json_object_set_new(reply, "staleness_ms",
                        flow->stale_ms < 0 ? json_null() : json_real(round2(flow->stale_ms)));
    json_object_set_new(reply, "cache_hit", json_boolean(cache_hit));
    if (rec == NULL) {
        json_object_set_new(reply, "written_in", json_null());
        json_object_set_new(reply, "hlc", json_null());
    }
    http_reply_json(flow->req, 200, reply);
}

static void on_read(PGresult *res, enum pg_status status, void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    if (status == PG_UNAVAILABLE && retry_elsewhere(flow))
        return;
    if (status != PG_OK) {
        records_reply_failure(flow->req, status);
        free_read_flow(flow);
        return;
    }
    struct record *rec = NULL;
    if (PQntuples(res) == 1) {
        rec = record_create(flow->key, flow->key_len, PQgetvalue(res, 0, 0),
                            (size_t)PQgetlength(res, 0, 0), PQgetvalue(res, 0, 1),
                            PQgetvalue(res, 0, 2));
        record_set_extra(rec, "written_in", json_string(PQgetvalue(res, 0, 4)));
        record_set_extra(rec, "hlc", json_string(PQgetvalue(res, 0, 3)));
    }
    /* Filled only from the region the lookup asked (not after a retry elsewhere). */
    if (rec != NULL && flow->token != NULL && !flow->retried) {
        size_t len;
        char *data = record_to_cache(rec, &len);
        region_cache_fill(layer->regions[flow->serving].cache, flow->epoch, flow->key,
                          flow->key_len, flow->token, data, len);
        free(data);
    }
    reply_read(flow, rec, false);
    record_free(rec);
    free_read_flow(flow);
}

static void read_tables(struct read_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    struct pg_call call = {{READ_SQL, 1, {flow->key}}, on_read, flow};
    pool_query(layer->regions[flow->client].pools[flow->serving], &call);
}

static void on_cache(enum cache_result result, const char *data, size_t len, const char *token,
                     void *arg)
{
    struct read_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    struct region *r = &layer->regions[flow->serving];
    struct record *rec =
        result == CACHE_HIT ? record_from_cache(flow->key, flow->key_len, data, len) : NULL;
    if (rec != NULL)
        r->cache_hits++;
    else
        r->cache_misses++;
    if (rec != NULL) { /* a malformed entry is a miss */
        reply_read(flow, rec, true);
        record_free(rec);
        free_read_flow(flow);
        return;
    }
    flow->token = token != NULL ? xstrdup(token) : NULL;
    read_tables(flow);
}

void handle_read(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct route_param raw = http_request_param(req, 0);
    json_t *errors = json_array();
    size_t key_len;
    char *key = validate_path_key(raw.raw, raw.len, &key_len, errors);
    int client = client_region(req, NULL, errors);
    char text[24];
    long max_stale = -1;
    if (query_param(req, "max_staleness_ms", text, sizeof text) != NULL) {
        char *end;
        max_stale = strtol(text, &end, 10);
        if (*text == '\0' || *end != '\0' || max_stale < 0) {
            validation_error_add(errors, "int_parsing", "query", "max_staleness_ms",
                                 "Input should be a valid non-negative integer");
            max_stale = -1;
        }
    }
    if (key == NULL || json_array_size(errors) > 0) {
        free(key);
        http_reply_validation(req, errors);
        return;
    }
    json_decref(errors);
    struct region *home = &layer->regions[client];
    home->reads++;
    int serving = serving_region(layer, client);
    if (serving < 0) {
        free(key);
        http_reply_error(req, 503, "Database unavailable");
        return;
    }
    if (serving != client)
        home->served_elsewhere++;
    double stale = region_staleness(layer, serving);
    if (max_stale >= 0 && (stale < 0 || stale > (double)max_stale)) {
        /* Every region misses the others' latest writes by about the same: no other region
         * would do better. The client learns how stale it is and may retry or relax. */
        free(key);
        json_t *body = json_object();
        json_object_set_new(body, "detail", json_string("Fresh enough data unavailable"));
        json_object_set_new(body, "request_id", json_string(http_request_id(req)));
        json_object_set_new(body, "source", json_string(region_name(serving)));
        json_object_set_new(body, "staleness_ms", stale < 0 ? json_null() : json_real(round2(stale)));
        json_object_set_new(body, "max_staleness_ms", json_integer(max_stale));
        http_request_set_header(req, "Retry-After", "1");
        http_reply_json(req, 503, body);
        return;
    }
    struct read_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->key = key;
    flow->key_len = key_len;
    flow->client = client;
    flow->serving = serving;
    flow->stale_ms = stale;
    flow->start_us = monotonic_us();
    /* The cache only for a local read: a region served by another pays the link to that
     * region's tables (the failover's real cost), and its own Redis may be down with it. */
    if (serving == client)
        region_cache_get(home->cache, flow->key, flow->key_len, &flow->epoch, on_cache, flow);
    else
        read_tables(flow);
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
    json_object_set_new(o, "served_by", serving < 0 ? json_null() : json_string(region_name(serving)));
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
        json_object_set_new(cache, "hit_rate",
                            json_real(lookups ? round2(100.0 * (double)r->cache_hits /
                                                       (double)lookups)
                                              : 0.0));
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
