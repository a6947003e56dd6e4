/*
 * Layer 7: the projector (l7-projector). Applies the stream's events to the read model, each
 * exactly once, and flushes the read counts the API gathered in Redis.
 *
 *   XREADGROUP (its own pending entries first, then new ones, BLOCK) -> ONE read-database
 *   transaction: upsert the batch's keys WHERE the event is newer than the row's last_position,
 *   and move projector_checkpoint -> COMMIT -> XACK (+ XTRIM below the acknowledged entries)
 *
 * Batches under load: after a batch smaller than PROJECTOR_BATCH the next XREADGROUP waits
 * PROJECTOR_GATHER_MS (2 ms), so the events published meanwhile make one transaction, one XACK
 * and one XTRIM instead of several: most of a batch's cost is per batch, not per event (README,
 * "Where a write's CPU goes"). Bounded: it adds at most PROJECTOR_GATHER_MS to the lag; 0 turns
 * it off.
 *
 * Exactly once, from at-least-once parts: the stream may deliver an event twice (the relay
 * republishes after a crash; this process rereads its unacknowledged entries after a restart),
 * but a row takes an event only if its position is beyond the row's last_position, in the same
 * transaction that moves the checkpoint. A crash before COMMIT applies nothing; a crash after
 * COMMIT and before XACK replays a batch the rows refuse. write_count therefore counts each
 * command once.
 *
 * A failing event: PostgreSQL refusing the batch (bad data) makes the projector apply the
 * batch's events one by one; one that still fails is retried with backoff PROJECTOR_MAX_RETRIES
 * times, then parked in the dead-letter stream l7:dead with its error, and the others go on. An
 * entry that is not an event at all goes there at once. Nothing is skipped silently.
 * PostgreSQL or Redis unreachable: the batch is kept and retried with backoff; nothing is
 * acknowledged.
 *
 * Read counts: once a second this process moves the counts the API gathered in Redis into the
 * read model (read_counts.c). `l7-projector --rebuild` replays the outbox into an empty read
 * model instead (rebuild.c); stop the running projector first: both would move the same rows.
 * SIGTERM/SIGINT: finish the batch in hand (COMMIT and XACK), exit 0.
 */
#include "cqrs.h"
#include "read_counts.h"
#include "rebuild.h"

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "pool_config.h"
#include "process.h"
#include "redis.h"
#include "schema.h"
#include "xalloc.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum projector_state {
    PROJECTOR_STARTING,   /* schema, consumer group */
    PROJECTOR_READING,    /* XREADGROUP in flight */
    PROJECTOR_APPLYING,   /* the transaction in flight */
    PROJECTOR_ACKING,     /* dead letters, XACK, XTRIM in flight */
    PROJECTOR_BACKOFF,    /* waiting before retrying the step in hand */
};

/* One stream entry of the batch in hand. */
struct entry {
    char *id;      /* stream entry id */
    json_t *event; /* its event for CQRS_SQL_PROJECT, or NULL when it is not one */
    json_t *raw;   /* its fields, for a dead letter */
    char *error;   /* why it goes to l7:dead (NULL: it does not) */
    int failures;  /* times it failed on its own */
};

struct projector {
    struct pool_config db;              /* DB_* settings, for each pool */
    char *write_db_url;                 /* WRITE_DB_URL (the rebuild reads the outbox) */
    char *read_db_url;                  /* READ_DB_URL */
    char *redis_url;                    /* REDIS_URL */
    long redis_timeout_ms;              /* REDIS_TIMEOUT_MS */
    long batch_size;                    /* PROJECTOR_BATCH */
    long block_ms;                      /* PROJECTOR_BLOCK_MS */
    long gather_ms;                     /* PROJECTOR_GATHER_MS */
    long max_retries;                   /* PROJECTOR_MAX_RETRIES */
    char *consumer;                     /* PROJECTOR_CONSUMER */
    bool rebuild;                       /* --rebuild */
    struct process *process;            /* the program's life cycle */
    struct pool *read_pool;             /* the read database */
    struct pool *write_pool;            /* the write database (rebuild only) */
    struct redis *redis;                /* commands: XACK, XADD, flushes */
    struct redis *blocking;             /* XREADGROUP ... BLOCK, on its own connection */
    struct schema_task *schema;         /* start-up table creation */
    struct event *timer;                /* backoff waits and retries */
    struct backoff backoff;             /* waits after failures */
    enum projector_state state;         /* see above */
    void (*resume)(struct projector *); /* what the timer retries */
    bool own_pending;                   /* reading this consumer's unacknowledged entries first */
    bool stopping;                      /* a stop signal: exit after the batch in hand */
    struct entry *entries;              /* the batch in hand */
    size_t count;                       /* entries in it */
    bool one_by_one;                    /* the batch was refused: its events are applied singly */
    size_t single;                      /* in that mode, the entry being applied */
    int acks_pending;                   /* replies still to come in the ack step */
    bool ack_failed;                    /* one of them failed */
    struct read_counts *read_counts;    /* the read counts' flush (not while rebuilding) */
    struct rebuild *rebuilding;         /* --rebuild under way, or NULL */
    unsigned long long applied;         /* batches committed by this process */
};

static struct projector projector;

static const struct config_row projector_rows[] = {
    {"WRITE_DB_URL", CONFIG_URL, "postgresql://layers@127.0.0.1:15470/layers", 0, 0,
     "the write database (--rebuild replays its outbox)", &projector.write_db_url, NULL},
    {"READ_DB_URL", CONFIG_URL, "postgresql://layers@127.0.0.1:15471/layers", 0, 0,
     "the read database: the read model", &projector.read_db_url, NULL},
    {"PROJECTOR_BATCH", CONFIG_INT, "200", 1, 10000, "events applied per transaction",
     &projector.batch_size, NULL},
    {"PROJECTOR_BLOCK_MS", CONFIG_INT, "1000", 10, 60000,
     "longest wait of one XREADGROUP for new events", &projector.block_ms, NULL},
    {"PROJECTOR_GATHER_MS", CONFIG_INT, "2", 0, 1000,
     "wait before reading again after a batch that was not full, to gather more events",
     &projector.gather_ms, NULL},
    {"PROJECTOR_MAX_RETRIES", CONFIG_INT, "3", 0, 1000,
     "retries of an event PostgreSQL refuses before it goes to l7:dead", &projector.max_retries,
     NULL},
    {"PROJECTOR_CONSUMER", CONFIG_STRING, "projector-1", 0, 0,
     "its name in the consumer group (a restart under the same name resumes its entries)",
     &projector.consumer, NULL},
};

static const struct config_set projector_sets[] = {
    POOL_EACH_CONFIG_SET(&projector.db),
    REDIS_CONFIG_SET(&projector.redis_url, &projector.redis_timeout_ms,
                     "redis://127.0.0.1:16470/0"),
    CONFIG_SET("projector", projector_rows),
};

static void read_batch(struct projector *p);
static void create_group_then_read(struct projector *p);
static void apply(struct projector *p);
static void ack(struct projector *p);

/* ---- steps, retries ---- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct projector *p = arg;
    (void)fd, (void)what;
    void (*resume)(struct projector *) = p->resume;
    p->resume = NULL;
    if (resume != NULL)
        resume(p);
}

static void retry(struct projector *p, void (*resume)(struct projector *), const char *why)
{
    long wait = backoff_next(&p->backoff);
    if (wait == BACKOFF_MIN_MS)
        LOG_WARN("projector: %s; retrying with backoff", why);
    if (p->stopping && p->count == 0) {
        process_exit(p->process, 0);
        return;
    }
    p->state = PROJECTOR_BACKOFF;
    p->resume = resume;
    struct timeval tv = ms_to_timeval(wait);
    evtimer_add(p->timer, &tv);
}

static void free_batch(struct projector *p)
{
    for (size_t i = 0; i < p->count; i++) {
        free(p->entries[i].id);
        json_decref(p->entries[i].event);
        json_decref(p->entries[i].raw);
        free(p->entries[i].error);
    }
    free(p->entries);
    p->entries = NULL;
    p->count = p->single = 0;
    p->one_by_one = false;
}

/* ---- reading ---- */

static void keep_entry(struct entry *e, const redisReply *r)
{
    struct cqrs_event ev;
    const char *why = NULL;
    e->id = xstrdup(r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                            r->element[0]->type == REDIS_REPLY_STRING
                        ? r->element[0]->str
                        : "0-0");
    e->raw = json_object();
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_ARRAY) {
        const redisReply *f = r->element[1];
        for (size_t i = 0; i + 1 < f->elements; i += 2)
            if (f->element[i]->type == REDIS_REPLY_STRING &&
                f->element[i + 1]->type == REDIS_REPLY_STRING)
                json_object_set_new(
                    e->raw, f->element[i]->str,
                    json_stringn_nocheck(f->element[i + 1]->str, f->element[i + 1]->len));
    }
    if (!cqrs_event_parse(r, &ev, &why)) {
        e->error = xstrdup(why);
        return;
    }
    e->event = cqrs_event_json(&ev);
    if (e->event == NULL)
        e->error = xstrdup("key or value is not valid UTF-8");
}

static void on_entries(redisReply *reply, void *arg)
{
    struct projector *p = arg;
    if (reply == NULL) {
        /* No answer is not "nothing read": Redis may have run the XREADGROUP, and moved its
         * entries to this consumer's pending list, before the connection failed or the answer
         * timed out. Those entries are never delivered again by ">", and the next batch's XTRIM
         * would remove them from the stream: read our own pending entries first, as after a
         * crash (applying an entry twice changes nothing). */
        p->own_pending = true;
        retry(p, read_batch, "XREADGROUP failed (Redis unavailable?)");
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* NOGROUP: the stream is gone (a Redis that lost its data): create the group again. */
        LOG_WARN("projector: XREADGROUP: %s", reply->str);
        retry(p, create_group_then_read, "the consumer group is missing");
        return;
    }
    backoff_reset(&p->backoff);
    const redisReply *entries = NULL;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2)
        entries = reply->element[0]->element[1];
    if (entries == NULL || entries->type != REDIS_REPLY_ARRAY || entries->elements == 0) {
        if (p->stopping) {
            process_exit(p->process, 0);
            return;
        }
        p->own_pending = false; /* none left of our own: new entries from now on */
        read_batch(p);
        return;
    }
    p->count = entries->elements;
    p->entries = xcalloc(p->count, sizeof *p->entries);
    for (size_t i = 0; i < p->count; i++)
        keep_entry(&p->entries[i], entries->element[i]);
    apply(p);
}

static void read_batch(struct projector *p)
{
    if (p->stopping) {
        process_exit(p->process, 0);
        return;
    }
    p->state = PROJECTOR_READING;
    char count[24], block[24];
    snprintf(count, sizeof count, "%ld", p->batch_size);
    snprintf(block, sizeof block, "%ld", p->block_ms);
    if (p->own_pending) { /* our unacknowledged entries (after a crash), without blocking */
        const char *argv[] = {"XREADGROUP", "GROUP",   CQRS_GROUP,  p->consumer, "COUNT",
                              count,        "STREAMS", CQRS_STREAM, "0"};
        size_t lens[9];
        for (int i = 0; i < 9; i++)
            lens[i] = strlen(argv[i]);
        redis_command(p->redis, on_entries, p, 9, argv, lens);
        return;
    }
    const char *argv[] = {"XREADGROUP", "GROUP", CQRS_GROUP, p->consumer, "COUNT", count,
                          "BLOCK",      block,   "STREAMS",  CQRS_STREAM, ">"};
    size_t lens[11];
    for (int i = 0; i < 11; i++)
        lens[i] = strlen(argv[i]);
    if (!redis_command_blocking(p->blocking, p->block_ms, on_entries, p, 11, argv, lens))
        retry(p, read_batch, "the blocking Redis connection is not ready");
}

static void on_group(redisReply *reply, void *arg)
{
    struct projector *p = arg;
    if (reply == NULL ||
        (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9))) {
        retry(p, create_group_then_read, "creating the consumer group failed");
        return;
    }
    p->state = PROJECTOR_READING;
    p->own_pending = true;
    read_batch(p);
}

static void create_group_then_read(struct projector *p)
{
    p->state = PROJECTOR_STARTING;
    const char *argv[] = {"XGROUP", "CREATE", CQRS_STREAM, CQRS_GROUP, "0", "MKSTREAM"};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    redis_command(p->redis, on_group, p, 6, argv, lens);
}

/* ---- applying ---- */

/* The events of entries [from, to) that are events, as the JSON CQRS_SQL_PROJECT reads. */
static char *events_json(struct projector *p, size_t from, size_t to, size_t *n)
{
    json_t *list = json_array();
    for (size_t i = from; i < to; i++)
        if (p->entries[i].event != NULL && p->entries[i].error == NULL)
            json_array_append(list, p->entries[i].event);
    *n = json_array_size(list);
    char *text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    return text;
}

struct apply_call {
    struct projector *p; /* whose batch */
    char *json;          /* the statement's parameter */
    size_t from, to;     /* the entries applied: [from, to) */
};

/* Microseconds since the epoch of an event's "at" (YYYY-MM-DDTHH:MM:SS.ffffffZ, UTC); -1 when
 * it is not one. */
static long long at_us(const char *at)
{
    struct tm tm = {0};
    long us;
    if (at == NULL || sscanf(at, "%4d-%2d-%2dT%2d:%2d:%2d.%6ldZ", &tm.tm_year, &tm.tm_mon,
                             &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &us) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (long long)timegm(&tm) * 1000000 + us;
}

static void on_lag_recorded(redisReply *reply, void *arg)
{
    (void)reply, (void)arg; /* a lost sample is a lost sample: nothing depends on it */
}

/*
 * The projection lag of the events just committed, one sample each (microseconds from the
 * event's `at`, the command transaction's now(), to this COMMIT's acknowledgement, on the wall
 * clock both databases' host shares), appended to CQRS_LAG, which keeps the last
 * CQRS_LAG_SAMPLES. The benchmark's `lag` workload reads it. A duplicate delivery (a replay)
 * is sampled too: its lag is its real age.
 */
static void record_lag(struct projector *p, size_t from, size_t to)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long now_us = (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    const char **argv = xcalloc(to - from + 2, sizeof *argv);
    size_t *lens = xcalloc(to - from + 2, sizeof *lens);
    char(*numbers)[24] = xcalloc(to - from, sizeof *numbers);
    int argc = 2;
    argv[0] = "RPUSH", argv[1] = CQRS_LAG;
    for (size_t i = from; i < to; i++) {
        const struct entry *e = &p->entries[i];
        long long at = e->event != NULL && e->error == NULL
                           ? at_us(json_string_value(json_object_get(e->event, "at")))
                           : -1;
        if (at < 0)
            continue;
        char *n = numbers[argc - 2];
        snprintf(n, sizeof numbers[0], "%lld", now_us - at);
        argv[argc++] = n;
    }
    for (int a = 0; a < argc; a++)
        lens[a] = strlen(argv[a]);
    if (argc > 2) {
        redis_command(p->redis, on_lag_recorded, NULL, argc, argv, lens);
        const char *trim[] = {"LTRIM", CQRS_LAG, "-" CQRS_LAG_SAMPLES, "-1"};
        size_t trim_lens[] = {5, strlen(CQRS_LAG), strlen(trim[2]), 2};
        redis_command(p->redis, on_lag_recorded, NULL, 4, trim, trim_lens);
    }
    free(numbers);
    free(lens);
    free(argv);
}

static void on_applied(const struct pg_reply *replies, int count, enum pg_status status, void *arg)
{
    struct apply_call *call = arg;
    struct projector *p = call->p;
    size_t from = call->from, to = call->to;
    free(call->json);
    free(call);
    if (status == PG_OK) {
        backoff_reset(&p->backoff);
        p->applied++;
        record_lag(p, from, to);
        if (p->one_by_one) { /* this one is in, on to the next */
            p->single++;
            apply(p);
        } else {
            ack(p);
        }
        return;
    }
    if (status != PG_ERROR) { /* unreachable or busy: keep the batch, try again */
        retry(p, apply, "the read database is unavailable");
        return;
    }
    const char *error = count == 2 && replies[1].res != NULL
                            ? PQresultErrorMessage(replies[1].res)
                            : "the read database refused the event";
    if (!p->one_by_one) { /* a batch refused: find the bad events one by one */
        LOG_WARN("projector: a batch was refused (%s); applying its events one by one", error);
        p->one_by_one = true;
        p->single = 0;
        apply(p);
        return;
    }
    struct entry *e = &p->entries[p->single];
    if (e->failures++ < p->max_retries) {
        retry(p, apply, "an event was refused");
        return;
    }
    LOG_ERROR("projector: event %s goes to " CQRS_DEAD ": %s", e->id, error);
    e->error = xstrdup(error);
    size_t len = strlen(e->error);
    while (len > 0 && e->error[len - 1] == '\n')
        e->error[--len] = '\0';
    p->single++;
    apply(p);
}

/* Applies the batch (or, one by one, its next event) in one transaction. */
static void apply(struct projector *p)
{
    p->state = PROJECTOR_APPLYING;
    size_t from = 0, to = p->count;
    if (p->one_by_one) {
        while (p->single < p->count && p->entries[p->single].error != NULL)
            p->single++; /* not an event, or dead already */
        from = p->single;
        to = from + 1;
    }
    size_t n = 0;
    char *json = from < p->count ? events_json(p, from, to, &n) : NULL;
    if (n == 0) { /* nothing (left) to apply */
        free(json);
        ack(p);
        return;
    }
    struct apply_call *call = xcalloc(1, sizeof *call);
    call->p = p;
    call->json = json;
    call->from = from;
    call->to = to;
    /* The checkpoint's stream id: the last entry of these (entries come in stream order). */
    const char *last = p->entries[to - 1].id;
    struct pg_batch batch = {
        .mode = PG_BATCH_TRANSACTION,
        .count = 2,
        .statements = {{CQRS_SQL_PROJECT_LOCK, 0, {NULL}},
                       {CQRS_SQL_PROJECT, 2, {call->json, last}}},
        .cb = on_applied,
        .arg = call};
    pool_batch(p->read_pool, &batch);
}

/* ---- acknowledging ---- */

static void on_acked(redisReply *reply, void *arg)
{
    struct projector *p = arg;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        p->ack_failed = true;
    if (--p->acks_pending > 0)
        return;
    if (p->ack_failed) {
        retry(p, ack, "acknowledging the batch failed (Redis unavailable?)");
        return;
    }
    bool small = p->count < (size_t)p->batch_size;
    free_batch(p);
    if (small && p->gather_ms > 0 && !p->own_pending && !p->stopping) {
        p->state = PROJECTOR_READING; /* about to: the timer reads */
        p->resume = read_batch;
        struct timeval tv = ms_to_timeval(p->gather_ms);
        evtimer_add(p->timer, &tv);
        return;
    }
    read_batch(p);
}

/* After COMMIT: dead letters, XACK, and XTRIM of what every entry before has acknowledged. */
static void ack(struct projector *p)
{
    p->state = PROJECTOR_ACKING;
    p->ack_failed = false;
    size_t dead = 0;
    for (size_t i = 0; i < p->count; i++)
        dead += p->entries[i].error != NULL;
    p->acks_pending = (int)dead + 2;
    const char **argv = xcalloc(p->count + 4, sizeof *argv);
    size_t *lens = xcalloc(p->count + 4, sizeof *lens);
    for (size_t i = 0; i < p->count; i++) {
        struct entry *e = &p->entries[i];
        if (e->error == NULL)
            continue;
        char *fields = json_dumps(e->raw, JSON_COMPACT);
        const char *d[] = {"XADD",   CQRS_DEAD, "*",
                           "entry",  e->id,     "error",
                           e->error, "fields",  fields != NULL ? fields : "{}"};
        size_t dl[9];
        for (int a = 0; a < 9; a++)
            dl[a] = strlen(d[a]);
        redis_command(p->redis, on_acked, p, 9, d, dl);
        free(fields);
    }
    argv[0] = "XACK", argv[1] = CQRS_STREAM, argv[2] = CQRS_GROUP;
    for (size_t i = 0; i < p->count; i++)
        argv[3 + i] = p->entries[i].id;
    for (size_t i = 0; i < p->count + 3; i++)
        lens[i] = strlen(argv[i]);
    /* The last id: entries are read in order and each batch is acknowledged before the next is
     * read, so every entry below it is acknowledged too. */
    const char *last = p->entries[p->count - 1].id;
    const char *trim[] = {"XTRIM", CQRS_STREAM, "MINID", last};
    size_t trim_lens[] = {5, strlen(CQRS_STREAM), 5, strlen(last)};
    int xack_argc = (int)p->count + 3;
    /* With Redis down each callback runs at once; the last one frees the batch, so copy the
     * trim's id first. */
    char *last_copy = xstrdup(last);
    trim[3] = last_copy;
    redis_command(p->redis, on_acked, p, xack_argc, argv, lens);
    free(argv);
    free(lens);
    redis_command(p->redis, on_acked, p, 4, trim, trim_lens);
    free(last_copy);
}

/* ---- life cycle ---- */

static void on_schema_ready(void *arg)
{
    struct projector *p = arg;
    if (p->rebuild) {
        p->rebuilding = rebuild_start(p->process, p->read_pool, p->write_pool, p->batch_size);
        return;
    }
    LOG_INFO("projector: applying %s to the read model as %s", CQRS_STREAM, p->consumer);
    p->read_counts = read_counts_create(p->redis, p->read_pool);
    create_group_then_read(p);
}

static bool start(struct process *process, void *arg)
{
    struct projector *p = arg;
    p->process = process;
    if (!pool_config_check(&p->db))
        return false;
    struct event_base *base = process_base(process);
    p->db.resolver = process_resolver(process);
    struct pool_config read_db = p->db, write_db = p->db;
    read_db.database_url = p->read_db_url;
    write_db.database_url = p->write_db_url;
    write_db.options = "-c enable_seqscan=off"; /* the rebuild pages the outbox by position, as
                                                   the relay reads it (relay.c) */
    struct pgconn_settings pg = pool_config_pg(&read_db, "l7-projector");
    p->read_pool = pool_config_create(&read_db, base, "l7-projector", NULL);
    if (p->rebuild)
        p->write_pool = pool_config_create(&write_db, base, "l7-projector", NULL);
    struct redis_settings rs =
        redis_settings_of(p->redis_url, p->redis_timeout_ms, process_resolver(process));
    p->redis = redis_create(base, &rs, NULL);
    rs.blocking = true;
    p->blocking = redis_create(base, &rs, NULL);
    if (p->redis == NULL || p->blocking == NULL)
        return false;
    backoff_init(&p->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    p->timer = evtimer_new(base, on_timer, p);
    p->state = PROJECTOR_STARTING;
    p->schema = schema_ensure(base, &pg, CQRS_SQL_READ_SCHEMA, on_schema_ready, p);
    return true;
}

static void maintain(void *arg)
{
    struct projector *p = arg;
    pool_maintain(p->read_pool);
    if (p->write_pool != NULL)
        pool_maintain(p->write_pool);
    redis_maintain(p->redis);
    redis_maintain(p->blocking);
    if (p->read_counts != NULL)
        read_counts_flush(p->read_counts);
}

static void drain(void *arg)
{
    struct projector *p = arg;
    p->stopping = true;
    if (p->rebuilding != NULL) {
        rebuild_stop(p->rebuilding);
        return;
    }
    /* Between batches (waiting for entries, or backing off without one): leave now. */
    if (p->count == 0)
        process_exit(p->process, 0);
}

static void stop(void *arg)
{
    struct projector *p = arg;
    LOG_INFO("projector: stopped after %llu transactions", p->applied);
    free_batch(p);
    schema_task_free(p->schema);
    if (p->timer != NULL)
        event_free(p->timer);
    redis_free(p->blocking);
    redis_free(p->redis);
    pool_free(p->read_pool);
    pool_free(p->write_pool);
    read_counts_free(p->read_counts); /* after what could still call them back */
    rebuild_free(p->rebuilding);
}

int main(int argc, char **argv)
{
    /* --rebuild is this program's own argument; the rest is the common life cycle's. */
    if (argc > 1 && strcmp(argv[1], "--rebuild") == 0) {
        projector.rebuild = true;
        argv[1] = argv[0];
        argv++, argc--;
    }
    static const struct process_spec spec = {
        .program = "l7-projector",
        .summary = "layer 7's projector: applies the event stream to the read model, each event "
                   "once (--rebuild: replay the whole outbox into an empty read model)",
        CONFIG_SETS(projector_sets),
        .start = start,
        .maintain = maintain,
        .drain = drain,
        .stop = stop,
    };
    return process_main(argc, argv, &spec, &projector);
}
