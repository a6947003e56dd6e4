/*
 * Layer 6: the worker (l6-worker). Drains the write stream into PostgreSQL in batches.
 *
 *   XREADGROUP (a batch) -> keep each key's newest entry -> one INSERT ... FROM unnest(...) ON
 *   CONFLICT ... WHERE records.version < EXCLUDED.version (one statement, one transaction)
 *   -> after COMMIT: invalidate the cached rows, then EVAL FINISH_SCRIPT (pending values that
 *   are still this batch's removed, XACK + XTRIM or XDEL, counters)
 *
 * Pipelined, two batches at most: while batch N's INSERT runs in PostgreSQL, Redis reads batch
 * N+1 or finishes batch N-1, so the two servers work at the same time instead of taking turns
 * (the drain's rate, README). Still one INSERT at a time, batches written and finished in
 * stream order (advance() says why): the pipeline overlaps Redis work with one INSERT, never
 * two INSERTs, and never finishes a batch before its COMMIT.
 *
 * Nothing is removed from the stream before its COMMIT, so a worker killed at any point loses
 * nothing: its entries stay in the group's pending list and another worker (or itself, under a
 * new name) claims them after WORKER_CLAIM_IDLE_MS (XAUTOCLAIM). Replaying a batch is harmless:
 * the version guard makes an older or equal version a no-op, so no value ever goes back in time,
 * whichever worker commits first.
 *
 * The acknowledgement-to-commit delay of every entry (its commit time minus its stream id's
 * milliseconds) is counted in a histogram per batch (write_queue.h), added to Redis by the
 * finish script: no round trip of its own. Both times are on Redis's clock, so that workers on
 * other machines measure the same thing: the worker keeps the difference between Redis's TIME
 * and its own monotonic clock, read once at start-up and again from every finish script's reply
 * (once per batch), and dates a commit by its monotonic clock when PostgreSQL's reply arrives
 * plus that difference. Not the finish script's own TIME: that would add the cache
 * invalidations and a Redis round trip to every delay, and the script would have to bucket.
 *
 * A batch's entries, its rows and the slices still to write are batch.c's plain data; this file
 * is the pipeline that moves batches through their stages, and the process around it.
 *
 * Failures: PostgreSQL unreachable -> keep the batch, back off (100 ms doubling to 2 s), retry;
 * nothing is acknowledged. PostgreSQL refuses the batch (bad data) -> split it in halves until
 * the bad entries stand alone; one that still fails after WORKER_MAX_RETRIES goes to the
 * dead-letter stream l6:dead with its error, and the rest of the batch commits. An entry that
 * is not a write (fields missing) goes there at once.
 *
 * A program without HTTP (process.h): the process runs the loop, the settings, the maintenance
 * timer (heartbeat, reconnects) and the signals. SIGTERM/SIGINT: no more batches are read, the
 * ones in hand are finished (committed and acknowledged), then the worker exits 0; past
 * SHUTDOWN_TIMEOUT_MS the process exits anyway and their entries are left to be claimed. Two
 * Redis connections: XREADGROUP ... BLOCK holds one for up to WORKER_FLUSH_MS, so it gets its
 * own (redis_settings.blocking, redis_command_blocking), whose deadline is the block time plus
 * REDIS_TIMEOUT_MS.
 */
#include "backoff.h"
#include "batch.h"
#include "cache_aside.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "pool_config.h"
#include "process.h"
#include "records.h"
#include "redis.h"
#include "schema.h"
#include "write_queue.h"
#include "xalloc.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

/* The most batches a worker holds at once (WORKER_MAX_BATCHES): one being written while the
 * one before it is finished, or the one after it read (the pipeline; memory stays bounded by
 * two batches). 1 runs the steps in turn, as before the pipeline (kept to measure against). */
#define MAX_HELD 2

struct worker;

/* A step that failed and waits for its backoff before it runs again. */
struct retry {
    struct backoff backoff;          /* the wait after a failure */
    void (*resume)(struct worker *); /* what the timer runs */
    struct event *timer;             /* fires after the backoff */
    struct worker *worker;           /* resume's argument */
};

enum worker_state {
    WORKER_STARTING, /* schema and consumer group */
    WORKER_RUNNING,  /* reading, writing and finishing batches */
    WORKER_DONE,     /* leaving: callbacks from teardown are ignored */
};

struct worker {
    /* settings */
    struct pool_config db; /* DATABASE_URL, DB_* and DB_POOL_* */
    char *redis_url;       /* REDIS_URL */
    long redis_timeout_ms; /* REDIS_TIMEOUT_MS */
    long cache_ttl_s;      /* CACHE_TTL (the API's; invalidations use it) */
    long batch_size;       /* WORKER_BATCH_SIZE */
    long flush_ms;         /* WORKER_FLUSH_MS */
    long linger_ms;        /* WORKER_LINGER_MS */
    long max_retries;      /* WORKER_MAX_RETRIES */
    long claim_idle_ms;    /* WORKER_CLAIM_IDLE_MS */
    long max_batches;      /* WORKER_MAX_BATCHES (1 or MAX_HELD) */
    char *name;            /* WORKER_NAME ("" = the host name) */
    /* connections */
    struct process *process;    /* the loop, the signals, the exit */
    struct pool *pool;          /* PostgreSQL */
    struct redis *redis;        /* commands with short deadlines */
    struct redis *blocking;     /* XREADGROUP ... BLOCK only */
    struct cache_aside *cache;  /* the API's cache, invalidated after each commit */
    struct schema_task *schema; /* start-up */
    char consumer[160];         /* this process's name in the group */
    /* the batches in hand */
    enum worker_state state;      /* see enum */
    struct batch *held[MAX_HELD]; /* oldest first */
    size_t n_held;                /* count */
    bool reading;                 /* a read in flight, or backing off before one */
    bool advancing, again;        /* advance() is running / must run once more */
    struct wq_array arrays[4];    /* the INSERT's parameters while it runs (one at a time) */
    long long redis_clock_ms;     /* Redis's TIME minus monotonic_ms() (see the top) */
    bool clock_known;             /* redis_clock_ms has been read */
    /* timing */
    struct retry read_retry;   /* reading (and creating the group) */
    struct retry write_retry;  /* the INSERT */
    struct retry finish_retry; /* the finish script */
    struct event *linger;      /* the wait before the read after a batch that was not full */
    long long next_claim_ms;   /* when to look for a dead worker's entries again */
    char claim_cursor[48];     /* XAUTOCLAIM's cursor */
};

static struct worker worker;

static const struct config_row worker_rows[] = {
    {"WORKER_BATCH_SIZE", CONFIG_INT, "1000", 1, 100000, "most entries read and written at once",
     &worker.batch_size, NULL},
    {"WORKER_FLUSH_MS", CONFIG_INT, "50", 1, 60000,
     "longest wait for entries when the stream is empty (XREADGROUP BLOCK)", &worker.flush_ms,
     NULL},
    {"WORKER_LINGER_MS", CONFIG_INT, "10", 0, 1000,
     "after a batch that was not full, the next read waits this long, so that batches under a "
     "steady load are larger (0: read again at once)",
     &worker.linger_ms, NULL},
    {"WORKER_MAX_RETRIES", CONFIG_INT, "3", 0, 100,
     "retries of an entry the database refuses, then the dead-letter stream", &worker.max_retries,
     NULL},
    {"WORKER_CLAIM_IDLE_MS", CONFIG_INT, "30000", 100, 86400000,
     "an entry delivered this long ago and not acknowledged is taken over (its worker died)",
     &worker.claim_idle_ms, NULL},
    {"WORKER_MAX_BATCHES", CONFIG_INT, "2", 1, MAX_HELD,
     "batches held at once: 2 reads and finishes batches in Redis while one is written in "
     "PostgreSQL; 1 takes the steps in turn",
     &worker.max_batches, NULL},
    {"WORKER_NAME", CONFIG_STRING, "", 0, 0, "consumer name prefix (default: the host name)",
     &worker.name, NULL},
};

static const struct config_set worker_sets[] = {
    POOL_CONFIG_SET(&worker.db, "postgresql://layers@127.0.0.1:15460/layers"),
    REDIS_CONFIG_SET(&worker.redis_url, &worker.redis_timeout_ms, "redis://127.0.0.1:16460/0"),
    CACHE_CONFIG_SET(&worker.cache_ttl_s),
    CONFIG_SET("l6-worker", worker_rows),
};

static void advance(struct worker *w);
static void write_next(struct worker *w, struct batch *b);
static void finish_batch(struct worker *w);
static void heartbeat(struct worker *w);

/* ---- backoff and leaving ---- */

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct retry *r = arg;
    (void)fd, (void)what;
    r->resume(r->worker);
}

static bool retry_init(struct retry *r, struct worker *w, struct event_base *base)
{
    backoff_init(&r->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    r->worker = w;
    r->timer = evtimer_new(base, on_retry, r);
    return r->timer != NULL;
}

/* Runs resume after the step's next backoff (100 ms doubling to 2 s). A stop signal's deadline
 * still applies: the process exits at SHUTDOWN_TIMEOUT_MS, whatever is waiting. */
static void retry_later(struct retry *r, void (*resume)(struct worker *))
{
    r->resume = resume;
    struct timeval tv = ms_to_timeval(backoff_next(&r->backoff));
    event_add(r->timer, &tv);
}

static void leave(struct worker *w)
{
    w->state = WORKER_DONE;
    process_exit(w->process, 0);
}

/* The held batch at a stage (the oldest), or NULL. */
static struct batch *held_at(const struct worker *w, enum batch_stage stage)
{
    for (size_t i = 0; i < w->n_held; i++)
        if (w->held[i]->stage == stage)
            return w->held[i];
    return NULL;
}

/* ---- Redis's clock ---- */

/* Notes Redis's clock, in ms, as read just now. */
static void set_redis_clock(struct worker *w, long long redis_ms)
{
    w->redis_clock_ms = redis_ms - monotonic_ms();
    w->clock_known = true;
}

static void on_time(redisReply *reply, void *arg)
{
    struct worker *w = arg;
    if (w->state == WORKER_DONE || reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 2 || reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return; /* batches are not timed until a finish script's reply brings the clock */
    set_redis_clock(w, atoll(reply->element[0]->str) * 1000 + atoll(reply->element[1]->str) / 1000);
}

/* ---- reading ---- */

static void on_group(redisReply *reply, void *arg);

static void create_group(struct worker *w)
{
    const char *argv[] = {"XGROUP", "CREATE", WQ_STREAM, WQ_GROUP, "0", "MKSTREAM"};
    wq_command(w->redis, on_group, w, 6, argv);
}

/* The group exists: reading starts (or starts again, after NOGROUP). */
static void on_group(redisReply *reply, void *arg)
{
    struct worker *w = arg;
    if (w->state == WORKER_DONE)
        return;
    if (reply == NULL ||
        (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0)) {
        LOG_WARN("could not create the consumer group: %s", reply ? reply->str : "no Redis");
        retry_later(&w->read_retry, create_group);
        return;
    }
    backoff_reset(&w->read_retry.backoff);
    LOG_INFO("consumer %s in group %s of %s", w->consumer, WQ_GROUP, WQ_STREAM);
    heartbeat(w); /* listed before its first read: a consumer gone is found by its heartbeat */
    const char *time_argv[] = {"TIME"};
    wq_command(w->redis, on_time, w, 1, time_argv); /* answered before this batch's finish */
    w->state = WORKER_RUNNING;
    w->reading = false;
    advance(w);
}

/* The read's backoff is over: advance() reads again. */
static void read_again(struct worker *w)
{
    w->reading = false;
    advance(w);
}

/*
 * The linger. Every batch costs the same fixed work whatever its size (an XREADGROUP, the
 * invalidation and finish scripts, a statement and its COMMIT), and under a steady load a
 * worker that reads again at once finds only what arrived while it handled the last batch: tens
 * of entries, so that fixed work is paid every few dozen rows, on the same cores as the API.
 * After a batch that was not full, the next read therefore waits WORKER_LINGER_MS (the batch
 * in hand is written meanwhile: the wait overlaps its INSERT), and the next batch holds what
 * arrived in that time. The price: up to that much more time between acknowledgement and
 * commit. A full batch never waits (a backlog drains at full speed), nor does a read that found
 * nothing (it blocks until an entry comes), nor a claim of a dead worker's entries.
 */
static bool linger_after(const struct worker *w, size_t entries, bool claimed)
{
    return w->linger_ms > 0 && !claimed && entries > 0 && entries < (size_t)w->batch_size &&
           !process_stopping(w->process);
}

static void on_linger_over(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    read_again(arg);
}

static void on_entries(redisReply *reply, void *arg)
{
    struct worker *w = arg;
    if (w->state == WORKER_DONE)
        return;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply != NULL && strncmp(reply->str, "NOGROUP", 7) == 0) {
            create_group(w); /* the stream was deleted (e.g. FLUSHALL): start again */
            return;
        }
        LOG_WARN("reading the stream failed: %s", reply ? reply->str : "Redis unavailable");
        retry_later(&w->read_retry, read_again);
        return;
    }
    backoff_reset(&w->read_retry.backoff);
    const redisReply *list = NULL;
    bool claimed = false; /* XAUTOCLAIM's reply, not XREADGROUP's */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
        reply->element[0]->type == REDIS_REPLY_STRING) { /* XAUTOCLAIM: cursor, entries, gone */
        snprintf(w->claim_cursor, sizeof w->claim_cursor, "%s", reply->element[0]->str);
        if (strcmp(w->claim_cursor, "0-0") == 0) /* scanned it all: look again later */
            w->next_claim_ms = monotonic_ms() + (w->claim_idle_ms < 2000 ? w->claim_idle_ms : 1000);
        list = reply->element[1];
        claimed = true;
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
               reply->element[0]->type == REDIS_REPLY_ARRAY &&
               reply->element[0]->elements == 2) { /* XREADGROUP: [[stream, entries]] */
        list = reply->element[0]->element[1];
    }
    size_t n = list != NULL && list->type == REDIS_REPLY_ARRAY ? list->elements : 0;
    if (n > 0)
        w->held[w->n_held++] = batch_create(list); /* advance() read only below max_batches */
    if (linger_after(w, n, claimed)) {
        struct timeval tv = ms_to_timeval(w->linger_ms);
        event_add(w->linger, &tv); /* still "reading": on_linger_over reads again */
    } else {
        w->reading = false; /* or nothing (BLOCK timed out): advance() reads again */
    }
    advance(w);
}

/*
 * Reads the next batch: any entry a dead worker left behind (XAUTOCLAIM, on the short-deadline
 * connection), else new ones (XREADGROUP ... BLOCK, on the blocking one).
 */
static void read_batch(struct worker *w, bool claim)
{
    w->reading = true;
    char count[24];
    snprintf(count, sizeof count, "%ld", w->batch_size);
    if (claim) {
        char idle[24];
        snprintf(idle, sizeof idle, "%ld", w->claim_idle_ms);
        const char *argv[] = {"XAUTOCLAIM", WQ_STREAM,       WQ_GROUP, w->consumer,
                              idle,         w->claim_cursor, "COUNT",  count};
        wq_command(w->redis, on_entries, w, 8, argv);
        return;
    }
    char block[24];
    snprintf(block, sizeof block, "%ld", w->flush_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", WQ_GROUP,  w->consumer, "COUNT", count,
                          "BLOCK",      block,   "STREAMS", WQ_STREAM,   ">"};
    size_t lens[11];
    for (size_t i = 0; i < 11; i++)
        lens[i] = strlen(argv[i]);
    if (!redis_command_blocking(w->blocking, w->flush_ms, on_entries, w, 11, argv, lens))
        retry_later(&w->read_retry, read_again); /* its connection is not up (yet) */
}

/* ---- the pipeline ---- */

/* Starts the first thing that may start now (see advance); false when nothing may. */
static bool advance_step(struct worker *w)
{
    if (w->state != WORKER_RUNNING)
        return false;
    if (w->n_held > 0 && w->held[0]->stage == BATCH_WRITTEN) {
        w->held[0]->stage = BATCH_FINISHING;
        finish_batch(w);
        return true;
    }
    struct batch *next = held_at(w, BATCH_READ);
    if (next != NULL && held_at(w, BATCH_WRITING) == NULL) {
        next->stage = BATCH_WRITING;
        write_next(w, next);
        return true;
    }
    bool stopping = process_stopping(w->process);
    if (!w->reading && !stopping && w->n_held < (size_t)w->max_batches) {
        bool claim = monotonic_ms() >= w->next_claim_ms;
        if (!claim || w->n_held == 0) {
            read_batch(w, claim);
            return true;
        }
    }
    if (stopping && !w->reading && w->n_held == 0)
        leave(w);
    return false;
}

/*
 * The pipeline: starts whatever may start now, in this order.
 * - The oldest batch, once committed, is finished (its finish script; finishes in stream order,
 *   so that XTRIM MINID finds nothing older pending in the usual case).
 * - The oldest batch read and not written is written, when no INSERT is in flight: ONE INSERT
 *   at a time, batches in stream order. Two INSERTs in flight could commit out of order (on two
 *   connections), and each batch keeps only its newest entry per key: an older batch's value
 *   committed second would be refused by the version guard, so nothing would be lost, but the
 *   row would be locked by both transactions; one at a time is simpler and PostgreSQL is not
 *   the bound (README, "Where the time goes").
 * - The next batch is read while fewer than WORKER_MAX_BATCHES (2) are held: while batch N's
 *   INSERT runs in PostgreSQL, batch N+1 is read, and batch N-1's invalidations and finish
 *   script run in Redis. A claim (XAUTOCLAIM, once a second) waits until nothing is held: it
 *   would otherwise hand this worker its own batch in hand again, if that one was delivered
 *   long ago.
 * - After a stop signal: no more reads; the worker leaves when nothing is held or being read.
 * Called after every event, it starts everything that may start (one step at a time, until
 * none may); the callbacks it causes may run before the call that caused them returns (a
 * server down answers at once), so it runs again rather than nest.
 */
static void advance(struct worker *w)
{
    if (w->advancing) {
        w->again = true;
        return;
    }
    w->advancing = true;
    do
        w->again = false;
    while (advance_step(w) || w->again);
    w->advancing = false;
}

/* ---- writing ---- */

static void write_again(struct worker *w)
{
    struct batch *b = held_at(w, BATCH_WRITING);
    if (b != NULL)
        write_next(w, b);
}

static void on_written(PGresult *res, enum pg_status status, void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 4; i++)
        wq_array_cleanup(&w->arrays[i]);
    struct batch *b = held_at(w, BATCH_WRITING);
    if (w->state == WORKER_DONE || b == NULL)
        return;
    struct range r = b->todo[b->n_todo - 1];
    if (status == PG_OK) {
        if (w->clock_known)
            b->commit_ms = monotonic_ms() + w->redis_clock_ms;
        b->n_todo--;
        for (size_t i = r.start; i < r.start + r.count; i++)
            b->rows[i]->state = ENTRY_COMMITTED;
        backoff_reset(&w->write_retry.backoff);
        write_next(w, b);
        return;
    }
    if (status != PG_ERROR) { /* unreachable or busy: keep everything, try again */
        LOG_WARN("database unavailable; %zu rows kept, retrying", b->n_rows);
        retry_later(&w->write_retry, write_again);
        return;
    }
    if (r.count > 1) { /* refused: find the bad entries by halves */
        b->n_todo--;
        batch_push_range(b, r.start + r.count / 2, r.count - r.count / 2);
        batch_push_range(b, r.start, r.count / 2);
        write_next(w, b);
        return;
    }
    struct entry *e = b->rows[r.start];
    const char *why = res ? PQresultErrorMessage(res) : "refused";
    if (++e->failures <= w->max_retries) {
        LOG_WARN("entry %s refused (%d of %ld): %s", e->id, e->failures, w->max_retries + 1, why);
        retry_later(&w->write_retry, write_again);
        return;
    }
    LOG_WARN("entry %s (key of %zu bytes) goes to %s: %s", e->id, e->key_len, WQ_DEAD, why);
    size_t n = strlen(why);
    batch_kill_entry(e, why);
    while (n > 0 && (e->error[n - 1] == '\n' || e->error[n - 1] == ' '))
        e->error[--n] = '\0';
    b->n_todo--;
    write_next(w, b);
}

/*
 * Writes the slice on top of the batch's stack, or marks the batch written when none is left.
 * One statement (pool_query), one implicit transaction: the rows travel as four arrays, so a
 * batch of any size is one round trip; pool_batch would add nothing (there is no second
 * statement to send).
 */
static void write_next(struct worker *w, struct batch *b)
{
    if (b->n_todo == 0) {
        b->stage = BATCH_WRITTEN;
        advance(w);
        return;
    }
    struct range r = b->todo[b->n_todo - 1];
    for (int i = 0; i < 4; i++)
        wq_array_start(&w->arrays[i]);
    for (size_t i = r.start; i < r.start + r.count; i++) {
        const struct entry *e = b->rows[i];
        wq_array_add_text(&w->arrays[0], e->key, e->key_len);
        wq_array_add_text(&w->arrays[1], e->value, e->value_len);
        wq_array_add_int(&w->arrays[2], wq_version(e->sid));
        wq_array_add_int(&w->arrays[3], e->created_ms);
    }
    struct pg_call upsert = {{WQ_SQL_UPSERT,
                              4,
                              {wq_array_finish(&w->arrays[0]), wq_array_finish(&w->arrays[1]),
                               wq_array_finish(&w->arrays[2]), wq_array_finish(&w->arrays[3])}},
                             on_written,
                             w};
    pool_query(w->pool, &upsert);
}

/* ---- finishing ---- */

static void on_finished(redisReply *reply, void *arg)
{
    struct worker *w = arg;
    if (w->state == WORKER_DONE || w->n_held == 0 || w->held[0]->stage != BATCH_FINISHING)
        return;
    struct batch *b = w->held[0];
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        LOG_WARN("finishing a batch failed (%s); it is committed, retrying",
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "Redis unavailable");
        retry_later(&w->finish_retry, finish_batch);
        return;
    }
    set_redis_clock(w, reply->element[1]->integer);
    LOG_DEBUG("batch of %zu entries (%zu rows) done, %lld counted, commit delay max %lld ms",
              b->n_entries, b->n_rows, reply->element[0]->integer, b->delay.max_ms);
    backoff_reset(&w->finish_retry.backoff);
    batch_free(b);
    w->n_held--;
    memmove(&w->held[0], &w->held[1], w->n_held * sizeof w->held[0]);
    advance(w);
}

/*
 * After the COMMIT of the oldest batch held: the cached rows are invalidated first (a reader
 * that no longer finds the pending value must not find the old row either), on the same
 * connection as the script, so Redis runs them in that order. The script is idempotent, so
 * this whole step is retried until Redis confirms it.
 */
static void finish_batch(struct worker *w)
{
    struct batch *b = w->held[0];
    size_t n_pairs = 0, n_dead = 0, n_keys = 0;
    const char **keys = xcalloc(b->n_entries ? b->n_entries : 1, sizeof *keys);
    size_t *key_lens = xcalloc(b->n_entries ? b->n_entries : 1, sizeof *key_lens);
    for (size_t i = 0; i < b->n_entries; i++) {
        struct entry *e = &b->entries[i];
        if (e->state == ENTRY_COMMITTED) {
            keys[n_keys] = e->key, key_lens[n_keys++] = e->key_len;
            n_pairs++;
        } else if (e->state == ENTRY_DEAD) {
            n_dead++;
            n_pairs += e->key != NULL;
        }
    }
    cache_aside_invalidate_many(w->cache, keys, key_lens, n_keys); /* one script for the batch */
    free(keys);
    free(key_lens);
    batch_count_delays(b);
    size_t n_buckets = 0;
    for (int k = 0; k < WQ_DELAY_BUCKETS; k++)
        n_buckets += b->delay.counts[k] > 0;
    char top[48]; /* the newest id acknowledged here, for the script's XTRIM */
    batch_newest_id(b, top, sizeof top);
    size_t argc = 14 + 2 * n_buckets + 2 * n_pairs + 4 * n_dead + b->n_entries, n = 0;
    const char **argv = xcalloc(argc, sizeof *argv);
    size_t *lens = xcalloc(argc, sizeof *lens);
    char pairs[24], dead[24], buckets[24], max_delay[24];
    char(*numbers)[24] = xcalloc(2 * n_buckets + 1, sizeof *numbers); /* bucket, count ... */
    snprintf(pairs, sizeof pairs, "%zu", n_pairs);
    snprintf(dead, sizeof dead, "%zu", n_dead);
    snprintf(buckets, sizeof buckets, "%zu", n_buckets);
    snprintf(max_delay, sizeof max_delay, "%lld", b->delay.max_ms < 0 ? 0 : b->delay.max_ms);
#define ARG(s, len) (argv[n] = (s), lens[n++] = (len))
#define ARGS(s)     ARG((s), strlen(s))
    ARGS("EVAL"), ARGS(WQ_FINISH_SCRIPT), ARGS("5");
    ARGS(WQ_STREAM), ARGS(WQ_DEAD), ARGS(WQ_PENDING), ARGS(WQ_STATS), ARGS(WQ_DELAY);
    ARGS(WQ_GROUP), ARGS(pairs), ARGS(dead), ARGS(buckets), ARGS(max_delay), ARGS(top);
    for (int k = 0, m = 0; k < WQ_DELAY_BUCKETS; k++) {
        if (b->delay.counts[k] == 0)
            continue;
        snprintf(numbers[m], sizeof numbers[m], "%lld", wq_delay_upper(k));
        snprintf(numbers[m + 1], sizeof numbers[m + 1], "%lld", b->delay.counts[k]);
        ARGS(numbers[m]), ARGS(numbers[m + 1]);
        m += 2;
    }
    for (size_t i = 0; i < b->n_entries; i++) {
        const struct entry *e = &b->entries[i];
        if (e->state == ENTRY_COMMITTED || (e->state == ENTRY_DEAD && e->key != NULL))
            ARG(e->key, e->key_len), ARGS(e->id);
    }
    for (size_t i = 0; i < b->n_entries; i++) {
        const struct entry *e = &b->entries[i];
        if (e->state == ENTRY_DEAD) {
            ARGS(e->id), ARG(e->key ? e->key : "", e->key_len);
            ARG(e->value ? e->value : "", e->value_len), ARGS(e->error);
        }
    }
    for (size_t i = 0; i < b->n_entries; i++)
        if (b->entries[i].state != ENTRY_DEAD)
            ARGS(b->entries[i].id);
#undef ARG
#undef ARGS
    redis_command(w->redis, on_finished, w, (int)n, argv, lens);
    free(numbers);
    free(argv);
    free(lens);
}

/* ---- the process: start, maintenance, drain, stop ---- */

static void on_heartbeat(redisReply *reply, void *arg)
{
    (void)reply, (void)arg; /* a missed heartbeat shows in /stats' `workers`; nothing to do */
}

/* Records this worker's heartbeat; deletes the consumers of workers gone (WQ_HEARTBEAT_SCRIPT). */
static void heartbeat(struct worker *w)
{
    char gone[24]; /* silent this long: gone (its entries are claimed after claim_idle_ms) */
    snprintf(gone, sizeof gone, "%ld", w->claim_idle_ms > 10000 ? w->claim_idle_ms : 10000);
    const char *argv[] = {"EVAL",    WQ_HEARTBEAT_SCRIPT, "2",  WQ_WORKERS,
                          WQ_STREAM, w->consumer,         gone, WQ_GROUP};
    wq_command(w->redis, on_heartbeat, w, 8, argv);
}

static void maintain(void *arg)
{
    struct worker *w = arg;
    pool_maintain(w->pool);
    redis_maintain(w->redis);
    redis_maintain(w->blocking);
    cache_aside_maintain(w->cache);
    if (w->state == WORKER_RUNNING)
        heartbeat(w);
}

static void on_version_ready(void *arg)
{
    struct worker *w = arg;
    create_group(w); /* then on_group: running */
}

/* The common table first, then layer 6's column on it (the API does the same). */
static void on_schema_ready(void *arg)
{
    struct worker *w = arg;
    struct pgconn_settings pg = pool_config_pg(&w->db, "l6-worker");
    schema_task_free(w->schema);
    w->schema = schema_ensure(process_base(w->process), &pg, WQ_SQL_SCHEMA, on_version_ready, w);
}

/* A name no other live worker has: the host (or WORKER_NAME), the pid and the start time. */
static void name_consumer(struct worker *w)
{
    char host[64] = "worker";
    if (w->name[0] != '\0')
        snprintf(host, sizeof host, "%s", w->name);
    else if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "worker");
    host[sizeof host - 1] = '\0';
    struct timeval tv;
    gettimeofday(&tv, NULL);
    snprintf(w->consumer, sizeof w->consumer, "%s-%ld-%lld", host, (long)getpid(),
             (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000);
}

static bool start(struct process *process, void *arg)
{
    struct worker *w = arg;
    struct event_base *base = process_base(process);
    w->process = process;
    if (!pool_config_check(&w->db))
        return false;
    name_consumer(w);
    snprintf(w->claim_cursor, sizeof w->claim_cursor, "0-0");
    if (!retry_init(&w->read_retry, w, base) || !retry_init(&w->write_retry, w, base) ||
        !retry_init(&w->finish_retry, w, base))
        return false;
    w->linger = evtimer_new(base, on_linger_over, w);
    if (w->linger == NULL)
        return false;
    w->db.resolver = process_resolver(process); /* host names off the event loop */
    w->pool = pool_config_create(&w->db, base, "l6-worker", NULL);
    struct redis_settings rs =
        redis_settings_of(w->redis_url, w->redis_timeout_ms, process_resolver(process));
    w->redis = redis_create(base, &rs, NULL);
    rs.blocking = true; /* XREADGROUP ... BLOCK: a connection of its own */
    w->blocking = redis_create(base, &rs, NULL);
    if (w->redis == NULL || w->blocking == NULL)
        return false; /* logged: REDIS_URL is malformed */
    struct cache_settings cs = {"l6", w->cache_ttl_s, NULL};
    w->cache = cache_aside_create(w->redis, &cs, NULL);
    struct pgconn_settings pg = pool_config_pg(&w->db, "l6-worker");
    w->schema = schema_ensure(base, &pg, RECORDS_SQL_SCHEMA, on_schema_ready, w);
    return true;
}

/* A stop signal: finish the batches in hand (advance then leaves); before the first batch,
 * there is nothing to finish. */
static void drain(void *arg)
{
    struct worker *w = arg;
    LOG_INFO("finishing the batches in hand, then exiting");
    if (w->state == WORKER_STARTING) {
        leave(w);
        return;
    }
    if (evtimer_pending(w->linger, NULL)) { /* no read will follow the linger: end it */
        event_del(w->linger);
        w->reading = false;
    }
    advance(w); /* reads no more; leaves once nothing is held or being read */
}

static void stop(void *arg)
{
    struct worker *w = arg;
    w->state = WORKER_DONE; /* callbacks called by the teardown below are ignored */
    size_t left = 0;
    for (size_t i = 0; i < w->n_held; i++)
        left += w->held[i]->n_entries;
    if (left > 0) /* the shutdown deadline passed mid-batch */
        LOG_WARN("consumer %s leaves %zu entries to be claimed", w->consumer, left);
    schema_task_free(w->schema);
    cache_aside_free(w->cache);
    redis_free(w->blocking);
    redis_free(w->redis);
    pool_free(w->pool);
    for (int i = 0; i < 4; i++)
        wq_array_cleanup(&w->arrays[i]);
    for (size_t i = 0; i < w->n_held; i++)
        batch_free(w->held[i]);
    w->n_held = 0;
    struct retry *retries[] = {&w->read_retry, &w->write_retry, &w->finish_retry};
    for (size_t i = 0; i < 3; i++)
        if (retries[i]->timer)
            event_free(retries[i]->timer);
    if (w->linger)
        event_free(w->linger);
}

int main(int argc, char **argv)
{
    static const struct process_spec spec = {
        .program = "l6-worker",
        .summary = "drains layer 6's write stream into PostgreSQL in batches",
        CONFIG_SETS(worker_sets),
        .start = start,
        .maintain = maintain,
        .drain = drain,
        .stop = stop,
    };
    return process_main(argc, argv, &spec, &worker);
}
