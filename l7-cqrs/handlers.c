/*
 * Layer 7: CQRS with a transactional outbox. The write path (commands) and the read path
 * (queries), on two databases.
 *
 * Writes never touch the read model, reads never touch the commands: each side has its own
 * database, shaped for its job, and a projector (projector.c) carries the changes across, fed
 * by a relay (relay.c) that moves the outbox's events into a Redis stream.
 *
 *   POST /write     -> validate -> pool_query(write db, ONE statement, one transaction:
 *                      command + outbox event) -> 200 {event_id: position}
 *                      -> NOTIFY outbox, after the commit, coalesced (notify_relay)
 *   PUT /write      -> the same, always a RecordUpdated
 *   GET /read/{key} -> validate -> token? wait (bounded) until the projector has applied the
 *                      stream entry the relay stored when it had published the token's event
 *                      -> Redis: count this read (HINCRBY) -> read db: the row -> 200
 *
 * What the naive version gets wrong, and this one does not:
 * - the event is published in a second step after the commit (a Redis failure loses it while
 *   the client hears "success"): here the event is a row written in the command's own
 *   transaction; the client's 200 means both are durable, and the relay publishes it later,
 *   however long Redis is away;
 * - every read writes (`read_count + 1`, a row lock per GET): here a read adds one to a Redis
 *   hash, which the projector flushes into the read model in batches; the reply's read_count is
 *   the stored count plus the unflushed ones, this read included;
 * - a read right after a write may not see it, silently: here a write returns its position,
 *   and a read that sends it back (X-Consistency-Token or ?after=) waits until the projector
 *   has passed it, or answers 503 with Retry-After.
 */
#include "handlers.h"

#include "cqrs.h"

#include "clock.h"
#include "health.h"
#include "http.h"
#include "record.h"
#include "records.h"
#include "redis.h"
#include "server.h"
#include "validate.h"
#include "xalloc.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMESTAMP_UTC(column)                                                                      \
    "to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* $1 key -> value (NULL: not projected), created_at, updated_at, read_count, write_count, the
 * read counts' flushed generation, the projector's checkpoint: one row, found or not.
 * The two single-row tables are read as scalar subqueries by their key: written as a join, the
 * planner (no statistics on them yet) estimated millions of rows, and the cost passed
 * jit_above_cost, so PostgreSQL compiled the statement with LLVM on every execution: 5-10 ms per
 * read instead of 0.1 ms. */
static const char READ_SQL[] = "SELECT r.value, " TIMESTAMP_UTC("r.created_at") ", " TIMESTAMP_UTC(
    "r.updated_at") ", r.read_count, r.write_count, "
                    "(SELECT generation FROM read_flush WHERE id = 1), "
                    "(SELECT position FROM projector_checkpoint WHERE id = 1) "
                    "FROM (SELECT 1) AS one LEFT JOIN records r ON r.key = $1";

/* Counts one read of ARGV[1] and returns {unflushed, being flushed, flush generation}. */
static const char COUNT_READ_SCRIPT[] =
    "local u = redis.call('HINCRBY', KEYS[1], ARGV[1], 1) "
    "local f = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') "
    "local g = tonumber(redis.call('GET', KEYS[3]) or '0') "
    "return {u, f, g}";

/* ---- writes ---- */

/* One command in flight: the request and its validated body (owns the key and value). */
struct write_flow {
    struct http_request *req;  /* answered exactly once, in on_committed */
    struct write_request body; /* key and value, kept alive until the batch is done */
    const char *message;       /* the reply's message (POST or PUT) */
};

static void notify_relay(struct layer *layer);

static void on_notified(const struct pg_reply *replies, int count, enum pg_status status, void *arg)
{
    struct layer *layer = arg;
    (void)replies, (void)count, (void)status; /* lost: the relay's safety poll finds the rows */
    layer->notify_in_flight = false;
    if (layer->notify_owed)
        notify_relay(layer);
}

/*
 * Wakes the relay after commands committed: at most one NOTIFY in flight per process; a commit
 * meanwhile owes one more, sent when it returns. Not in the command's transaction: a
 * transaction that NOTIFYs takes a database-wide lock at its commit (PreCommit_Notify) and
 * holds it until the commit is flushed, so every notifying command would commit, and wait for
 * its WAL flush, one after another (no group commit): layer 1's throughput divided by eight.
 * Here the NOTIFY commits on its own, asynchronously (nothing in it needs to be durable). A
 * crash between a command's COMMIT and its NOTIFY only delays the event until the relay's
 * RELAY_POLL_MS poll (tested).
 */
static void notify_relay(struct layer *layer)
{
    if (layer->notify_in_flight) {
        layer->notify_owed = true;
        return;
    }
    layer->notify_in_flight = true;
    layer->notify_owed = false;
    struct pg_batch notify = {
        .mode = PG_BATCH_TRANSACTION,
        .count = 2,
        .statements = {{CQRS_SQL_ASYNC_COMMIT, 0, {NULL}}, {CQRS_SQL_NOTIFY, 0, {NULL}}},
        .cb = on_notified,
        .arg = layer};
    pool_batch(layer->write_pool, &notify);
}

static void on_committed(PGresult *res, enum pg_status status, void *arg)
{
    struct write_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    if (status == PG_OK && PQntuples(res) == 1) {
        json_t *reply = json_pack("{s:b, s:s%, s:s, s:s}", "success", 1, "key", flow->body.key,
                                  flow->body.key_len, "event_id", PQgetvalue(res, 0, 0), "message",
                                  flow->message);
        http_reply_json(flow->req, 200, reply);
        notify_relay(layer);
    } else {
        records_reply_failure(flow->req, status == PG_OK ? PG_ERROR : status);
    }
    write_request_cleanup(&flow->body);
    free(flow);
}

/* The command and its event: one statement, so one transaction, one round trip. */
static void submit_command(struct http_request *req, struct layer *layer, const char *kind,
                           const char *message)
{
    struct write_request body;
    if (!validate_write_body(req, layer->max_value_bytes, &body))
        return; /* answered 422 */
    struct write_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->body = body;
    flow->message = message;
    struct pg_call command = {
        {CQRS_SQL_COMMAND, 3, {body.key, body.value, kind}}, on_committed, flow};
    pool_query(layer->write_pool, &command);
}

void handle_write(struct http_request *req, void *arg)
{
    submit_command(req, arg, "post", "Command written and event published");
}

void handle_update(struct http_request *req, void *arg)
{
    submit_command(req, arg, "put", "Command updated and event published");
}

/* ---- reads ---- */

/* One read in flight. */
struct read_flow {
    struct http_request *req; /* answered exactly once */
    char *key;                /* percent-decoded key */
    size_t key_len;           /* its length in bytes */
    long long after;          /* the consistency token (0: none) */
    bool published;           /* the relay published the token's event, by the entry id: */
    struct cqrs_stream_id id; /* that id (the read waits until the projector applied it) */
    long long deadline_ms;    /* when a token wait gives up (monotonic) */
    bool counted;             /* Redis counted this read (else read_count is the stored one) */
    long long unflushed;      /* this key's reads in l7:reads, this one included */
    long long flushing;       /* this key's reads in l7:reads:flushing */
    long long generation;     /* l7:reads:gen when counted */
    struct read_flow *next;   /* the next waiting read */
};

static void free_read_flow(struct read_flow *flow)
{
    free(flow->key);
    free(flow);
}

/*
 * The reads not in the stored read_count. A flush moves l7:reads to l7:reads:flushing (as
 * generation gen + 1) and commits it with read_flush.generation in one transaction; comparing
 * the generation the database has with the one Redis had tells which counts the stored number
 * already holds, whatever a flush did between the two round trips.
 */
static long long unstored_reads(const struct read_flow *flow, long long stored_generation)
{
    if (!flow->counted)
        return 0;
    long long n = 0;
    if (stored_generation < flow->generation + 1)
        n += flow->unflushed;
    if (stored_generation < flow->generation)
        n += flow->flushing;
    return n;
}

static long long column_ll(const PGresult *res, int col)
{
    return PQgetisnull(res, 0, col) ? 0 : strtoll(PQgetvalue(res, 0, col), NULL, 10);
}

static void on_loaded(PGresult *res, enum pg_status status, void *arg)
{
    struct read_flow *flow = arg;
    if (status != PG_OK || PQntuples(res) != 1 || PQnfields(res) != 7) {
        records_reply_failure(flow->req, status == PG_OK ? PG_ERROR : status);
        free_read_flow(flow);
        return;
    }
    long long checkpoint = column_ll(res, 6);
    json_t *reply;
    if (PQgetisnull(res, 0, 0)) {
        reply = record_read_reply(NULL, flow->key, flow->key_len);
        json_object_set_new(
            reply, "message",
            json_string("Key not found in read database (may not be projected yet)"));
        json_object_set_new(reply, "read_count", json_null());
    } else {
        struct record *rec = record_create(flow->key, flow->key_len, PQgetvalue(res, 0, 0),
                                           (size_t)PQgetlength(res, 0, 0), PQgetvalue(res, 0, 1),
                                           PQgetvalue(res, 0, 2));
        reply = record_read_reply(rec, flow->key, flow->key_len);
        record_free(rec);
        long long reads = column_ll(res, 3) + unstored_reads(flow, column_ll(res, 5));
        json_object_set_new(reply, "read_count", json_integer(reads));
        json_object_set_new(reply, "write_count", json_integer(column_ll(res, 4)));
    }
    json_object_set_new(reply, "from_read_db", json_true());
    json_object_set_new(reply, "projected_position", json_integer(checkpoint));
    http_reply_json(flow->req, 200, reply);
    free_read_flow(flow);
}

static void load(struct read_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    struct pg_call read = {{READ_SQL, 1, {flow->key}}, on_loaded, flow};
    pool_query(layer->read_pool, &read);
}

static void on_counted(redisReply *reply, void *arg)
{
    struct read_flow *flow = arg;
    flow->counted = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3;
    if (flow->counted) {
        flow->unflushed = reply->element[0]->integer;
        flow->flushing = reply->element[1]->integer;
        flow->generation = reply->element[2]->integer;
    }
    load(flow);
}

/* Counts the read in Redis (never a write to the read model), then loads the row. */
static void count_and_load(struct read_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    const char *argv[] = {"EVAL",         COUNT_READ_SCRIPT, "3", CQRS_READS, CQRS_READS_FLUSHING,
                          CQRS_READS_GEN, flow->key};
    size_t lens[] = {4,
                     sizeof COUNT_READ_SCRIPT - 1,
                     1,
                     strlen(CQRS_READS),
                     strlen(CQRS_READS_FLUSHING),
                     strlen(CQRS_READS_GEN),
                     flow->key_len};
    redis_command(layer->redis, on_counted, flow, 7, argv, lens);
}

/* ---- consistency tokens: reads that wait for the projector ----
 *
 * Positions are taken at insert time, transactions commit in another order: "the projector's
 * highest position >= N" does not mean N was applied (a later position may have committed,
 * been published and applied first). What the projector applies in order is the stream, so a
 * token read waits for an entry id at or after its own event's. The relay does not mark rows; at
 * each step it stores (relay_state) its watermark W, the highest position it has published, the
 * gaps between them (positions not published yet) and the id of the last entry it added: a
 * position <= W, or <= highest and not a gap, is in the stream at or before that id. The read
 * keeps the first such id it sees, and waits until the projector's last applied entry id (stored
 * with its checkpoint) has reached it. Causality holds: an event committed before command N
 * began has a smaller position and was visible to the read of the relay's that found N, so it
 * was published no later. One poll looks up every waiting token at once, and the projector's
 * id, every READ_POLL_MS. */

/* $1 tokens "{3,7}" -> those published, each with the entry id they are published by. */
static const char PUBLISHED_SQL[] =
    "SELECT t::text, stream_id FROM relay_state, unnest($1::bigint[]) AS t WHERE id = 1 "
    "AND t <= highest AND (t <= watermark OR t <> ALL(gaps))";

static const char APPLIED_SQL[] = "SELECT stream_id FROM projector_checkpoint WHERE id = 1";

static void poll_checkpoint(evutil_socket_t fd, short what, void *arg);

static void arm_poll(struct layer *layer)
{
    if (!evtimer_pending(layer->poll_timer, NULL)) {
        struct timeval tv = ms_to_timeval(layer->read_poll_ms);
        evtimer_add(layer->poll_timer, &tv);
    }
}

static bool applied(const struct layer *layer, const struct read_flow *flow)
{
    return flow->published && cqrs_stream_id_cmp(&flow->id, &layer->applied) <= 0;
}

/* Starts the waiting reads the projector has passed, and answers those out of time. */
static void release_waiting(struct layer *layer, bool giving_up)
{
    long long now = monotonic_ms();
    struct read_flow **link = &layer->waiting, *last = NULL;
    while (*link != NULL) {
        struct read_flow *flow = *link;
        bool ready = applied(layer, flow);
        if (!ready && !giving_up && now < flow->deadline_ms) {
            last = flow;
            link = &flow->next;
            continue;
        }
        *link = flow->next;
        layer->waiting_count--;
        if (ready) {
            count_and_load(flow);
        } else {
            http_request_set_header(flow->req, "Retry-After", "1");
            http_reply_error(flow->req, 503,
                             "Read model has not caught up with the consistency token");
            free_read_flow(flow);
        }
    }
    layer->waiting_tail = last;
}

/* Both queries of a poll answered: release, then poll again (at once if reads came). */
static void poll_done(struct layer *layer)
{
    if (--layer->poll_pending > 0)
        return;
    free(layer->poll_tokens);
    layer->poll_tokens = NULL;
    layer->polling = false;
    release_waiting(layer, false);
    if (layer->waiting == NULL || layer->poll_timer == NULL)
        return;
    if (layer->poll_again)
        poll_checkpoint(-1, 0, layer);
    else
        arm_poll(layer);
}

static void on_published(PGresult *res, enum pg_status status, void *arg)
{
    struct layer *layer = arg;
    for (int i = 0; status == PG_OK && i < PQntuples(res); i++) {
        long long position = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        for (struct read_flow *flow = layer->waiting; flow != NULL; flow = flow->next)
            if (flow->after == position && !flow->published)
                flow->published = cqrs_stream_id_parse(PQgetvalue(res, i, 1), &flow->id);
    }
    poll_done(layer);
}

static void on_applied(PGresult *res, enum pg_status status, void *arg)
{
    struct layer *layer = arg;
    struct cqrs_stream_id id;
    if (status == PG_OK && PQntuples(res) == 1 &&
        cqrs_stream_id_parse(PQgetvalue(res, 0, 0), &id) &&
        cqrs_stream_id_cmp(&id, &layer->applied) > 0)
        layer->applied = id;
    poll_done(layer);
}

static void poll_checkpoint(evutil_socket_t fd, short what, void *arg)
{
    struct layer *layer = arg;
    (void)fd, (void)what;
    if (layer->polling) {
        layer->poll_again = true;
        return;
    }
    layer->polling = true;
    layer->poll_again = false;
    size_t unknown = 0;
    for (struct read_flow *flow = layer->waiting; flow != NULL; flow = flow->next)
        unknown += !flow->published;
    layer->poll_pending = unknown > 0 ? 2 : 1; /* before the calls: a pool may answer at once */
    if (unknown > 0) { /* "{3,7}": each token at most 20 digits and a comma */
        size_t cap = unknown * 21 + 3, used = 0;
        layer->poll_tokens = xmalloc(cap);
        layer->poll_tokens[used++] = '{';
        for (struct read_flow *flow = layer->waiting; flow != NULL; flow = flow->next)
            if (!flow->published)
                used += (size_t)snprintf(layer->poll_tokens + used, cap - used, "%s%lld",
                                         used > 1 ? "," : "", flow->after);
        snprintf(layer->poll_tokens + used, cap - used, "}");
        struct pg_call ids = {{PUBLISHED_SQL, 1, {layer->poll_tokens}}, on_published, layer};
        pool_query(layer->write_pool, &ids);
    }
    struct pg_call checkpoint = {{APPLIED_SQL, 0, {NULL}}, on_applied, layer};
    pool_query(layer->read_pool, &checkpoint);
}

/* The token from X-Consistency-Token or ?after=: 0 when none, -1 (after a 422) when bad. */
static long long read_token(struct http_request *req)
{
    const char *header = http_request_header(req, "X-Consistency-Token");
    const char *text = header;
    const char *query = http_request_query(req);
    char from_query[32] = "";
    if (text == NULL && query != NULL) {
        for (const char *p = query; p != NULL && *p != '\0'; p = strchr(p, '&'), p = p ? p + 1 : p)
            if (strncmp(p, "after=", 6) == 0) {
                size_t n = strcspn(p + 6, "&");
                snprintf(from_query, sizeof from_query, "%.*s", (int)(n < 31 ? n : 31), p + 6);
                text = from_query;
                break;
            }
    }
    if (text == NULL)
        return 0;
    char *end;
    long long token = strtoll(text, &end, 10);
    if (*text >= '0' && *text <= '9' && *end == '\0' && token >= 0)
        return token;
    json_t *errors = json_array();
    validation_error_add(errors, "int_parsing", header ? "header" : "query",
                         header ? "X-Consistency-Token" : "after",
                         "Input should be a valid integer, unable to parse string as an integer");
    http_reply_validation(req, errors);
    return -1;
}

void handle_read(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    size_t key_len;
    char *key = validate_key_param(req, &key_len);
    if (key == NULL)
        return; /* answered 422 */
    long long after = read_token(req);
    if (after < 0) {
        free(key);
        return; /* answered 422 */
    }
    struct read_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->key = key;
    flow->key_len = key_len;
    flow->after = after;
    if (after == 0) {
        count_and_load(flow);
        return;
    }
    if (layer->waiting_count >= layer->max_waiting_reads) {
        http_request_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "Too many reads waiting for the projector");
        free_read_flow(flow);
        return;
    }
    flow->deadline_ms = monotonic_ms() + layer->read_wait_ms;
    if (layer->waiting_tail != NULL)
        layer->waiting_tail->next = flow;
    else
        layer->waiting = flow;
    layer->waiting_tail = flow;
    layer->waiting_count++;
    poll_checkpoint(-1, 0, layer); /* at once (or right after the poll in flight) */
}

void handlers_start(struct layer *layer)
{
    layer->poll_timer = evtimer_new(server_base(layer->server), poll_checkpoint, layer);
}

void handlers_stop(struct layer *layer)
{
    if (layer->poll_timer == NULL)
        return;
    release_waiting(layer, true);
    event_free(layer->poll_timer);
    layer->poll_timer = NULL;
    /* A poll in flight ends in poll_done, which frees poll_tokens and arms nothing now. */
}

/* ---- health ---- */

/* Both databases are asked at once; the reply waits for both answers. */
struct health_flow {
    struct http_request *req; /* answered when both have answered */
    int pending;              /* answers still to come */
    bool write_db, read_db;   /* their outcomes */
};

static void answer_health(struct health_flow *flow)
{
    struct layer *layer = http_request_arg(flow->req);
    struct health health;
    health_begin(&health, server_spec(layer->server)->layer);
    health_member(&health, "database", flow->write_db, HEALTH_REQUIRED);
    health_member(&health, "write_database", flow->write_db, HEALTH_REQUIRED);
    health_member(&health, "read_database", flow->read_db, HEALTH_REQUIRED);
    health_member(&health, "redis", redis_available(layer->redis), HEALTH_OPTIONAL);
    health_reply(flow->req, &health);
    free(flow);
}

static void on_write_db_health(PGresult *res, enum pg_status status, void *arg)
{
    struct health_flow *flow = arg;
    (void)res;
    flow->write_db = status == PG_OK;
    if (--flow->pending == 0)
        answer_health(flow);
}

static void on_read_db_health(PGresult *res, enum pg_status status, void *arg)
{
    struct health_flow *flow = arg;
    (void)res;
    flow->read_db = status == PG_OK;
    if (--flow->pending == 0)
        answer_health(flow);
}

void handle_health(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct health_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    flow->pending = 2;
    struct event_base *base = server_base(layer->server);
    struct pg_call write_db = health_call_within(
        base, &(struct pg_call){{"SELECT 1", 0, {NULL}}, on_write_db_health, flow});
    struct pg_call read_db = health_call_within(
        base, &(struct pg_call){{"SELECT 1", 0, {NULL}}, on_read_db_health, flow});
    pool_query(layer->write_pool, &write_db);
    pool_query(layer->read_pool, &read_db);
}

/* ---- statistics: counted across processes (the databases' rows and Redis's keys) ---- */

static const char STATS_READ_SQL[] =
    "SELECT position, events_projected, (SELECT count(*) FROM records) FROM projector_checkpoint";

/* $1 the projector's checkpoint. */
static const char STATS_WRITE_SQL[] =
    "SELECT (SELECT count(*) FROM command_keys), (SELECT count(*) FROM commands), "
    "(SELECT COALESCE(max(position), 0) FROM outbox), "
    "(SELECT published + published_above FROM relay_state), "
    "(SELECT count(*) - (SELECT published_above FROM relay_state) FROM outbox "
    " WHERE position > (SELECT watermark FROM relay_state)), "
    "COALESCE((SELECT (extract(epoch FROM clock_timestamp() - created_at) * 1000)::bigint "
    " FROM outbox WHERE position > $1::bigint ORDER BY position LIMIT 1), 0)";

static const char STATS_REDIS_SCRIPT[] = "return {redis.call('XLEN', KEYS[1]), redis.call('XLEN', "
                                         "KEYS[2]), redis.call('HLEN', KEYS[3])}";

/* read database -> write database (given the checkpoint) -> Redis -> reply. */
struct stats_flow {
    struct http_request *req; /* answered at the end */
    json_t *stats;            /* the reply being built */
    char checkpoint[24];      /* the projector's position, as text (the write query's $1) */
    long long projected;      /* that position, -1 when the read database did not answer */
};

static json_t *ll_or_null(const PGresult *res, int col)
{
    return res != NULL ? json_integer(column_ll(res, col)) : json_null();
}

static void on_stats_redis(redisReply *reply, void *arg)
{
    struct stats_flow *flow = arg;
    bool ok = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3;
    json_object_set_new(flow->stats, "redis_available", json_boolean(ok));
    json_object_set_new(flow->stats, "stream_length",
                        ok ? json_integer(reply->element[0]->integer) : json_null());
    json_object_set_new(flow->stats, "dead_letters",
                        ok ? json_integer(reply->element[1]->integer) : json_null());
    json_object_set_new(flow->stats, "keys_with_unflushed_reads",
                        ok ? json_integer(reply->element[2]->integer) : json_null());
    http_reply_json(flow->req, 200, flow->stats);
    free(flow);
}

static void on_stats_write(PGresult *res, enum pg_status status, void *arg)
{
    struct stats_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    const PGresult *ok = status == PG_OK && PQntuples(res) == 1 ? res : NULL;
    json_object_set_new(flow->stats, "write_db_records", ll_or_null(ok, 0));
    json_object_set_new(flow->stats, "commands", ll_or_null(ok, 1));
    json_object_set_new(flow->stats, "outbox_position", ll_or_null(ok, 2));
    json_object_set_new(flow->stats, "events_published", ll_or_null(ok, 3));
    json_object_set_new(flow->stats, "outbox_backlog", ll_or_null(ok, 4));
    bool lag = ok != NULL && flow->projected >= 0;
    long long behind = lag ? column_ll(ok, 2) - flow->projected : 0;
    json_object_set_new(flow->stats, "projection_lag_events",
                        lag ? json_integer(behind > 0 ? behind : 0) : json_null());
    json_object_set_new(flow->stats, "projection_lag_ms",
                        lag ? json_integer(column_ll(ok, 5)) : json_null());
    const char *argv[] = {"EVAL", STATS_REDIS_SCRIPT, "3", CQRS_STREAM, CQRS_DEAD, CQRS_READS};
    size_t lens[] = {4,
                     sizeof STATS_REDIS_SCRIPT - 1,
                     1,
                     strlen(CQRS_STREAM),
                     strlen(CQRS_DEAD),
                     strlen(CQRS_READS)};
    redis_command(layer->redis, on_stats_redis, flow, 6, argv, lens);
}

static void on_stats_read(PGresult *res, enum pg_status status, void *arg)
{
    struct stats_flow *flow = arg;
    struct layer *layer = http_request_arg(flow->req);
    const PGresult *ok = status == PG_OK && PQntuples(res) == 1 ? res : NULL;
    flow->projected = ok != NULL ? column_ll(ok, 0) : -1;
    snprintf(flow->checkpoint, sizeof flow->checkpoint, "%lld", ok != NULL ? flow->projected : 0);
    json_object_set_new(flow->stats, "projector_position", ll_or_null(ok, 0));
    json_object_set_new(flow->stats, "events_projected", ll_or_null(ok, 1));
    json_object_set_new(flow->stats, "read_db_records", ll_or_null(ok, 2));
    struct pg_call write = {{STATS_WRITE_SQL, 1, {flow->checkpoint}}, on_stats_write, flow};
    pool_query(layer->write_pool, &write);
}

void handle_stats(struct http_request *req, void *arg)
{
    struct layer *layer = arg;
    struct stats_flow *flow = xcalloc(1, sizeof *flow);
    flow->req = req;
    struct pool_stats w, r;
    pool_get_stats(layer->write_pool, &w);
    pool_get_stats(layer->read_pool, &r);
    flow->stats = json_pack(
        "{s:i, s:i, s:o, s:o, s:i}", "write_db_pool_size", w.size, "read_db_pool_size", r.size,
        "write_db_pool", pool_stats_json(layer->write_pool), "read_db_pool",
        pool_stats_json(layer->read_pool), "reads_waiting_for_token", (int)layer->waiting_count);
    struct pg_call read = {{STATS_READ_SQL, 0, {NULL}}, on_stats_read, flow};
    pool_query(layer->read_pool, &read);
}
