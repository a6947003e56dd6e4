/*
 * Layer 7: the relay (l7-relay). Moves the outbox's events, in position order, into the Redis
 * stream l7:events, and marks them published.
 *
 *   woken (NOTIFY outbox, or the RELAY_POLL_MS safety poll) -> SELECT the oldest unpublished
 *   rows (RELAY_BATCH) -> XADD each to l7:events (pipelined) -> UPDATE outbox SET published_at,
 *   stream_id (the entry id each row got: what a consistency token waits for)
 *   -> again at once if the batch was full, else sleep until woken
 *
 * Batches under load: a wake-up right after a batch that was not full waits RELAY_GATHER_MS
 * (2 ms) before reading, so the commands committing meanwhile join one batch: one SELECT, one
 * pipeline of XADDs and one marking transaction for them all instead of one each. Most of a
 * step's cost is per step, not per event (README, "Where a write's CPU goes"); the wait is
 * bounded and adds at most RELAY_GATHER_MS to the projection lag. 0 turns it off.
 *
 * The API sends NOTIFY after its commands commit, coalesced, not in their transactions (see
 * handlers.c, notify_relay): a lost NOTIFY (the API crashed after a COMMIT) costs at most one
 * RELAY_POLL_MS of delay, never the event.
 *
 * Why an outbox: the API cannot make "commit the command" and "publish the event" one atomic
 * step across two systems (PostgreSQL and Redis). It can make both one transaction in
 * PostgreSQL: the event is a row, committed with its command. This process then publishes
 * committed rows; the stream is a copy of the outbox, and the outbox is the truth (the rebuild
 * replays it).
 *
 * At least once, in order: rows are published before they are marked, so a relay killed
 * between the two publishes them again when it restarts (its position is the outbox itself:
 * the first row without published_at). Duplicates are harmless: the projector applies an event
 * only if its position is beyond its key's last one. A row whose transaction commits after a
 * later position was published is published in the next batch; a key's own events always
 * commit in position order (cqrs.c, CQRS_SQL_COMMAND), which is the order that matters.
 *
 * Redis down: XADD fails, nothing is marked, the relay backs off (100 ms doubling to 2 s) and
 * tries again; the outbox keeps growing meanwhile and the API keeps accepting commands.
 * SIGTERM/SIGINT: finish the step in hand, exit 0.
 */
#include "cqrs.h"

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "pg_listener.h"
#include "pool_config.h"
#include "process.h"
#include "redis.h"
#include "schema.h"
#include "xalloc.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMESTAMP_UTC(column)                                                                      \
    "to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* $1 batch size -> the oldest unpublished events. */
static const char UNPUBLISHED_SQL[] =
    "SELECT position::text, event_type, key, value, " TIMESTAMP_UTC(
        "created_at") ", command_id::text FROM outbox WHERE published_at IS NULL "
                      "ORDER BY outbox.position LIMIT $1::int";

/* $1 positions ("{1,2,3}"), $2 their stream entry ids, in the same order -> marked, each row
 * with the id it was published under (what a consistency token waits for), and counted once
 * each in relay_state. */
static const char MARK_SQL[] =
    "WITH m AS (UPDATE outbox o SET published_at = now(), stream_id = p.id "
    " FROM unnest($1::bigint[], $2::text[]) AS p(position, id) "
    " WHERE o.position = p.position AND o.published_at IS NULL RETURNING 1) "
    "UPDATE relay_state SET published = published + (SELECT count(*) FROM m)";

enum relay_state {
    RELAY_STARTING,   /* the schema is being created */
    RELAY_IDLE,       /* waiting to be woken */
    RELAY_READING,    /* the SELECT in flight */
    RELAY_PUBLISHING, /* XADDs in flight */
    RELAY_MARKING,    /* the UPDATE in flight */
    RELAY_BACKOFF,    /* a step failed; the retry timer runs */
};

struct relay {
    struct pool_config db;        /* DB_* settings for the write database's pool */
    char *write_db_url;           /* WRITE_DB_URL */
    char *redis_url;              /* REDIS_URL */
    long redis_timeout_ms;        /* REDIS_TIMEOUT_MS */
    long batch;                   /* RELAY_BATCH */
    char batch_text[24];          /* the same, as the query's parameter (alive until its reply) */
    long poll_ms;                 /* RELAY_POLL_MS */
    struct process *process;      /* the program's life cycle */
    struct pool *pool;            /* the write database */
    struct redis *redis;          /* the stream's Redis */
    struct pg_listener *listener; /* LISTEN outbox */
    struct schema_task *schema;   /* start-up table creation */
    struct event *timer;          /* the safety poll, or the backoff wait */
    struct backoff backoff;       /* waits after failures */
    enum relay_state state;       /* see above */
    long gather_ms;               /* RELAY_GATHER_MS */
    bool woken;                   /* woken while busy: look again when done */
    bool gathering;               /* the timer runs a gather wait (not the poll) */
    bool stopping;                /* a stop signal: exit after the step in hand */
    char *positions;              /* the batch's positions, "{1,2,3}" */
    char *ids;                    /* their stream entry ids, "{1-0,1-1,2-0}" (in XADD order) */
    size_t ids_used;              /* bytes of ids written so far */
    int rows;                     /* rows in the batch */
    int pending;                  /* XADD replies still to come */
    bool failed;                  /* one of them failed */
    unsigned long long published; /* events this process published */
};

static struct relay relay;

static const struct config_row relay_rows[] = {
    {"WRITE_DB_URL", CONFIG_URL, "postgresql://layers@127.0.0.1:15470/layers", 0, 0,
     "the write database: commands and the outbox", &relay.write_db_url, NULL},
    {"RELAY_BATCH", CONFIG_INT, "500", 1, 100000, "outbox rows published per step", &relay.batch,
     NULL},
    {"RELAY_POLL_MS", CONFIG_INT, "1000", 10, 600000,
     "safety poll of the outbox, besides LISTEN/NOTIFY", &relay.poll_ms, NULL},
    {"RELAY_GATHER_MS", CONFIG_INT, "2", 0, 1000,
     "wait after a wake-up, when the last batch was not full, to gather more rows",
     &relay.gather_ms, NULL},
};

static const struct config_set relay_sets[] = {
    POOL_EACH_CONFIG_SET(&relay.db),
    REDIS_CONFIG_SET(&relay.redis_url, &relay.redis_timeout_ms, "redis://127.0.0.1:16470/0"),
    CONFIG_SET("relay", relay_rows),
};

static void step(struct relay *r);

static void arm(struct relay *r, long ms)
{
    struct timeval tv = ms_to_timeval(ms);
    r->gathering = false;
    evtimer_add(r->timer, &tv);
}

/* Woken while idle (the last batch was not full, or it would have gone on at once): read in
 * RELAY_GATHER_MS; wake-ups meanwhile join the same wait. */
static void wake(struct relay *r)
{
    if (r->gather_ms == 0) {
        step(r);
        return;
    }
    if (r->gathering)
        return;
    arm(r, r->gather_ms);
    r->gathering = true;
}

/* The step in hand is over: sleep, exit, or go on. */
static void free_batch(struct relay *r)
{
    free(r->positions);
    r->positions = NULL;
    free(r->ids);
    r->ids = NULL;
}

static void finish_step(struct relay *r, bool full)
{
    free_batch(r);
    r->state = RELAY_IDLE;
    if (r->stopping) {
        process_exit(r->process, 0);
        return;
    }
    if (full) {
        step(r);
        return;
    }
    if (r->woken) {
        r->woken = false;
        wake(r);
        return;
    }
    arm(r, r->poll_ms);
}

static void fail_step(struct relay *r, const char *why)
{
    long wait = backoff_next(&r->backoff);
    if (wait == BACKOFF_MIN_MS)
        LOG_WARN("relay: %s; retrying with backoff", why);
    free_batch(r);
    r->state = RELAY_BACKOFF;
    if (r->stopping) {
        process_exit(r->process, 0);
        return;
    }
    arm(r, wait);
}

static void on_marked(const struct pg_reply *replies, int count, enum pg_status status,
                      void *arg)
{
    struct relay *r = arg;
    (void)replies, (void)count;
    if (status != PG_OK) {
        fail_step(r, "marking published rows failed (they will be published again)");
        return;
    }
    backoff_reset(&r->backoff);
    r->published += (unsigned long long)r->rows;
    LOG_DEBUG("relay: published %d events", r->rows);
    finish_step(r, r->rows == r->batch);
}

static void on_added(redisReply *reply, void *arg)
{
    struct relay *r = arg;
    struct cqrs_stream_id id;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING || !cqrs_stream_id_parse(reply->str, &id))
        r->failed = true;
    else /* replies come in XADD order, the positions' order; an id is at most 41 bytes */
        r->ids_used += (size_t)snprintf(r->ids + r->ids_used, (size_t)r->rows * 42 + 3 - r->ids_used,
                                        "%s%s", r->ids_used > 1 ? "," : "", reply->str);
    if (--r->pending > 0)
        return;
    if (r->failed) {
        fail_step(r, "XADD to " CQRS_STREAM " failed (Redis unavailable?)");
        return;
    }
    snprintf(r->ids + r->ids_used, (size_t)r->rows * 42 + 3 - r->ids_used, "}");
    r->state = RELAY_MARKING;
    /* Committed without waiting for its WAL flush: a mark lost in a crash of the write database
     * only makes the relay publish those rows again (the projector refuses the copies, and a
     * token then waits for the later copy's id), so it need not cost a flush per step, taken
     * from the commands' group commits. */
    struct pg_batch mark = {.mode = PG_BATCH_TRANSACTION,
                            .count = 2,
                            .statements = {{"SET LOCAL synchronous_commit = off", 0, {NULL}},
                                           {MARK_SQL, 2, {r->positions, r->ids}}},
                            .cb = on_marked,
                            .arg = r};
    pool_batch(r->pool, &mark);
}

static void on_rows(PGresult *res, enum pg_status status, void *arg)
{
    struct relay *r = arg;
    if (status != PG_OK) {
        fail_step(r, "reading the outbox failed (write database unavailable?)");
        return;
    }
    r->rows = PQntuples(res);
    if (r->rows == 0) {
        backoff_reset(&r->backoff);
        finish_step(r, false);
        return;
    }
    /* The positions to mark, "{1,2,3}"; each at most 20 digits and a comma. */
    size_t cap = (size_t)r->rows * 21 + 3, used = 0;
    r->positions = xmalloc(cap);
    r->positions[used++] = '{';
    for (int i = 0; i < r->rows; i++)
        used += (size_t)snprintf(r->positions + used, cap - used, "%s%s", i ? "," : "",
                                 PQgetvalue(res, i, 0));
    snprintf(r->positions + used, cap - used, "}");
    r->ids = xmalloc((size_t)r->rows * 42 + 3);
    r->ids[0] = '{';
    r->ids_used = 1;
    r->state = RELAY_PUBLISHING;
    r->pending = r->rows;
    r->failed = false;
    /* Nothing may touch r after the last XADD: with Redis down its callback runs at once and
     * ends the step. */
    for (int i = 0; i < r->rows; i++) {
        const char *argv[] = {"XADD",
                              CQRS_STREAM,
                              "*",
                              "position",
                              PQgetvalue(res, i, 0),
                              "type",
                              PQgetvalue(res, i, 1),
                              "key",
                              PQgetvalue(res, i, 2),
                              "value",
                              PQgetvalue(res, i, 3),
                              "at",
                              PQgetvalue(res, i, 4),
                              "command_id",
                              PQgetvalue(res, i, 5)};
        size_t lens[15];
        for (int a = 0; a < 15; a++)
            lens[a] = strlen(argv[a]);
        lens[8] = (size_t)PQgetlength(res, i, 2);  /* the key */
        lens[10] = (size_t)PQgetlength(res, i, 3); /* the value */
        redis_command(r->redis, on_added, r, 15, argv, lens);
    }
}

/* One step: read a batch of unpublished rows (the rest follows from the callbacks). */
static void step(struct relay *r)
{
    if (r->state != RELAY_IDLE) {
        r->woken = true; /* look again when this step is done */
        return;
    }
    evtimer_del(r->timer);
    r->gathering = false;
    r->woken = false;
    r->state = RELAY_READING;
    snprintf(r->batch_text, sizeof r->batch_text, "%ld", r->batch);
    struct pg_call read = {{UNPUBLISHED_SQL, 1, {r->batch_text}}, on_rows, r};
    pool_query(r->pool, &read);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct relay *r = arg;
    (void)fd, (void)what;
    if (r->state == RELAY_BACKOFF)
        r->state = RELAY_IDLE;
    step(r);
}

static void on_notify(void *arg)
{
    struct relay *r = arg;
    if (r->state == RELAY_STARTING || r->state == RELAY_BACKOFF)
        return; /* the timer will look */
    if (r->state != RELAY_IDLE) {
        r->woken = true; /* look again when this step is done */
        return;
    }
    wake(r);
}

static void on_schema_ready(void *arg)
{
    struct relay *r = arg;
    LOG_INFO("relay: publishing the outbox to %s", CQRS_STREAM);
    r->state = RELAY_IDLE;
    step(r);
}

static bool start(struct process *process, void *arg)
{
    struct relay *r = arg;
    r->process = process;
    if (!pool_config_check(&r->db))
        return false;
    r->db.database_url = r->write_db_url;
    r->db.resolver = process_resolver(process);
    r->db.min_size = r->db.min_size > 1 ? 1 : r->db.min_size; /* one step at a time */
    struct event_base *base = process_base(process);
    struct pgconn_settings pg = pool_config_pg(&r->db, "l7-relay");
    r->pool = pool_config_create(&r->db, base, "l7-relay", NULL);
    struct redis_settings rs =
        redis_settings_of(r->redis_url, r->redis_timeout_ms, process_resolver(process));
    r->redis = redis_create(base, &rs, NULL);
    if (r->redis == NULL)
        return false;
    backoff_init(&r->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    r->timer = evtimer_new(base, on_timer, r);
    r->state = RELAY_STARTING;
    r->listener = pg_listener_create(base, process_resolver(process), r->write_db_url,
                                     CQRS_CHANNEL, r->db.connect_timeout_ms, on_notify, r);
    r->schema = schema_ensure(base, &pg, CQRS_SQL_WRITE_SCHEMA, on_schema_ready, r);
    return true;
}

static void maintain(void *arg)
{
    struct relay *r = arg;
    pool_maintain(r->pool);
    redis_maintain(r->redis);
}

static void drain(void *arg)
{
    struct relay *r = arg;
    r->stopping = true;
    if (r->state == RELAY_IDLE || r->state == RELAY_STARTING || r->state == RELAY_BACKOFF)
        process_exit(r->process, 0);
}

static void stop(void *arg)
{
    struct relay *r = arg;
    LOG_INFO("relay: stopped after publishing %llu events", r->published);
    pg_listener_free(r->listener);
    schema_task_free(r->schema);
    if (r->timer != NULL)
        event_free(r->timer);
    redis_free(r->redis);
    pool_free(r->pool);
    free_batch(r);
}

int main(int argc, char **argv)
{
    static const struct process_spec spec = {
        .program = "l7-relay",
        .summary = "layer 7's relay: publishes the outbox's events, in order, to a Redis stream",
        CONFIG_SETS(relay_sets),
        .start = start,
        .maintain = maintain,
        .drain = drain,
        .stop = stop,
    };
    return process_main(argc, argv, &spec, &relay);
}
