/*
 * Layer 7: the relay (l7-relay). Moves the outbox's events, in position order, into the Redis
 * stream l7:events, and keeps a durable watermark W: every outbox position <= W is published.
 * It does not mark the rows it publishes (no UPDATE per event: README, "Where a write's CPU
 * goes"); one row, relay_state, moves once per step.
 *
 *   woken (NOTIFY outbox, or the RELAY_POLL_MS safety poll) -> one SELECT, one snapshot: the
 *   statement's pg_current_snapshot(), the rows above W that were not there before (the gaps)
 *   and the rows above the highest position published (RELAY_BATCH of them) -> XADD each to
 *   l7:events (pipelined) -> W moves if it may (below) -> UPDATE relay_state (W, the last entry
 *   id, the counters) -> again at once if the batch was full, else sleep until woken
 *
 * Why W needs care: a position is taken (nextval) before its transaction commits, so a row with
 * a smaller position may become visible after a larger one was read. Every position is taken
 * under its transaction's id (cqrs.c: the column's default assigns the id first), so a
 * position that was taken before a read and is not visible to it belongs to a transaction in
 * progress at that read, and one that is taken after the read is larger than every position
 * the read saw. In progress at a read: the ids in its snapshot's xip list, and possibly any id
 * at or above the snapshot's xmax. PostgreSQL (14 and later) sets xmax to the latest completed
 * id + 1, not to the next id to assign, so an open transaction whose id is higher than every
 * completed one is in no list: ids and positions come in different orders (T2 takes its id
 * after T1, its position before T1's; T1 commits; the snapshot's xmax is T1's id + 1, and T2's
 * position is invisible with an empty xip list). The read therefore takes an id of its own
 * (pg_current_xact_id()): every transaction that had an id at the read's snapshot has a smaller
 * one, so "in progress at R" is within R's xip list and [R's xmax, R's own id). Hence: W may
 * become H, the highest position published at a read R, once a later read's snapshot shows all
 * of those ended (or R had none: an empty list and its own id equal to its xmax): that later
 * read saw every committed position <= H. Until then the relay
 * remembers what it published above W (pending, at most RELAY_PENDING_MAX positions apart) and
 * reads the gaps between them again at each step; a transaction held open stops W, not the
 * publishing. A restart republishes everything above the stored W (the projector refuses the
 * copies: an event counts only if its position is beyond its key's last one).
 *
 * Tokens: relay_state also holds the stream entry id of the last entry added when W was
 * stored; every position <= W is in the stream at or before it. A read with token N waits
 * until W >= N, takes that id, and waits until the projector has applied it (handlers.c).
 *
 * Batches under load: a wake-up right after a batch that was not full waits RELAY_GATHER_MS
 * (2 ms) before reading, so the commands committing meanwhile join one batch: one SELECT, one
 * pipeline of XADDs and one relay_state update for them all. While W waits for transactions
 * in progress, the relay looks again after RELAY_SETTLE_MS, doubling up to RELAY_POLL_MS.
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
 * Redis down: XADD fails, W does not move, the relay backs off (100 ms doubling to 2 s) and
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

#define OUTBOX_COLUMNS "position, event_type, key, value, created_at, command_id FROM outbox "

/* $1 the gaps ("{4,9}": positions above W, below the highest published, not published yet),
 * $2 the highest published, $3 how many rows above it -> the statement's snapshot, then those
 * rows in position order (one row of NULLs after the snapshot when there are none), each with
 * the read's own transaction id (taken after the snapshot: above every id assigned before it).
 * One statement, so the snapshot is the one the rows were read in. */
static const char READ_SQL[] =
    "SELECT s.snapshot, o.position::text, o.event_type, o.key, o.value, " TIMESTAMP_UTC(
        "o.created_at") ", o.command_id::text, s.own "
                        "FROM (SELECT pg_current_snapshot()::text AS snapshot, "
                        "pg_current_xact_id()::text AS own) s "
                        "LEFT JOIN LATERAL ((SELECT " OUTBOX_COLUMNS
                        "WHERE position = ANY($1::bigint[])) UNION ALL (SELECT " OUTBOX_COLUMNS
                        "WHERE position > $2::bigint ORDER BY position LIMIT $3::int)) o ON true "
                        "ORDER BY o.position";

/* $1 W, $2 the last entry id, $3 events published at or below W, $4 published above it, $5 the
 * highest position published, $6 the gaps below it (what a consistency token looks up). */
static const char STORE_SQL[] =
    "UPDATE relay_state SET watermark = $1::bigint, stream_id = $2, published = $3::bigint, "
    "published_above = $4::bigint, highest = $5::bigint, gaps = $6::bigint[] WHERE id = 1";

static const char LOAD_SQL[] =
    "SELECT watermark::text, stream_id, published::text FROM relay_state WHERE id = 1";

enum relay_state {
    RELAY_STARTING,   /* the schema is being created, then relay_state read */
    RELAY_IDLE,       /* waiting to be woken */
    RELAY_READING,    /* the SELECT in flight */
    RELAY_PUBLISHING, /* XADDs in flight */
    RELAY_STORING,    /* the relay_state UPDATE in flight */
    RELAY_BACKOFF,    /* a step failed; the retry timer runs */
};

/* What a read may not have seen: its snapshot's transactions in progress (pg_snapshot's text
 * "xmin:xmax:xip,...") and the ids from its xmax up to the read's own (see the top). */
struct xid_list {
    unsigned long long *xids; /* the xip list */
    size_t count;             /* its length */
    size_t cap;               /* allocated */
    unsigned long long xmax;  /* the snapshot's xmax */
    unsigned long long own;   /* the read's own transaction id (>= xmax) */
};

struct relay {
    struct pool_config db;         /* DB_* settings for the write database's pool */
    char *write_db_url;            /* WRITE_DB_URL */
    char *redis_url;               /* REDIS_URL */
    long redis_timeout_ms;         /* REDIS_TIMEOUT_MS */
    long batch;                    /* RELAY_BATCH */
    long pending_max;              /* RELAY_PENDING_MAX */
    long poll_ms;                  /* RELAY_POLL_MS */
    long gather_ms;                /* RELAY_GATHER_MS */
    long settle_ms;                /* RELAY_SETTLE_MS */
    long settle_wait;              /* the next settle wait (doubles while W waits) */
    struct process *process;       /* the program's life cycle */
    struct pool *pool;             /* the write database */
    struct redis *redis;           /* the stream's Redis */
    struct pg_listener *listener;  /* LISTEN outbox */
    struct schema_task *schema;    /* start-up table creation */
    struct event *timer;           /* the safety poll, a settle or gather wait, or the backoff */
    struct backoff backoff;        /* waits after failures */
    enum relay_state state;        /* see above */
    bool woken;                    /* woken while busy: look again when done */
    bool gathering;                /* the timer runs a gather wait (not the poll) */
    bool stopping;                 /* a stop signal: exit after the step in hand */
    bool loaded;                   /* relay_state was read (W, the entry id, the count) */
    long long watermark;           /* W: every position <= W is published (stored) */
    long long stored_watermark;    /* W as relay_state last got it */
    char last_id[48];              /* the stream id of the last entry added (or the stored one) */
    long long published;           /* events published at or below W (relay_state.published) */
    long long *pending;            /* positions published above W, ascending */
    size_t pending_count;          /* how many */
    size_t pending_cap;            /* allocated */
    long long highest;             /* the highest position published (W if none above it) */
    bool candidate;                /* a read whose xip list must end before W may pass: */
    long long candidate_highest;   /* the highest published at that read */
    struct xid_list candidate_xip; /* its transactions in progress */
    struct xid_list read_xip;      /* the step's read's transactions in progress */
    long long *batch_positions;    /* the step's rows' positions, ascending */
    int rows;                      /* rows in the step */
    int above;                     /* of them, above the highest published (the rest: gaps) */
    long limit;                    /* rows asked above the highest published */
    char *gaps;                    /* the read's $1, "{4,9}" (alive until its reply) */
    char highest_text[24];         /* its $2 */
    char limit_text[24];           /* its $3 */
    char store_text[4][24];        /* STORE_SQL's $1, $3, $4, $5 */
    char *store_gaps;              /* its $6 (alive until its reply) */
    int pending_adds;              /* XADD replies still to come */
    bool failed;                   /* one of them failed */
    unsigned long long added;      /* entries this process added */
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
    {"RELAY_SETTLE_MS", CONFIG_INT, "5", 1, 10000,
     "first wait before looking again while the watermark waits for transactions in progress",
     &relay.settle_ms, NULL},
    {"RELAY_PENDING_MAX", CONFIG_INT, "1000000", 1, 100000000,
     "positions above the watermark the relay may publish while it waits (a bound)",
     &relay.pending_max, NULL},
};

static const struct config_set relay_sets[] = {
    POOL_EACH_CONFIG_SET(&relay.db),
    REDIS_CONFIG_SET(&relay.redis_url, &relay.redis_timeout_ms, "redis://127.0.0.1:16470/0"),
    CONFIG_SET("relay", relay_rows),
};

static void step(struct relay *r);
static void load(struct relay *r);

/* Parses pg_snapshot's text form and the read's own id into list. false when they are not. */
static bool parse_snapshot(const char *text, const char *own, struct xid_list *list)
{
    char *end;
    list->count = 0;
    list->own = strtoull(own, &end, 10);
    if (*own < '0' || *own > '9' || *end != '\0')
        return false;
    (void)strtoull(text, &end, 10); /* xmin */
    if (*end != ':')
        return false;
    list->xmax = strtoull(end + 1, &end, 10);
    if (*end != ':' || list->own < list->xmax)
        return false;
    const char *p = end + 1;
    while (*p != '\0') {
        unsigned long long xid = strtoull(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0'))
            return false;
        if (list->count == list->cap) {
            list->cap = list->cap ? list->cap * 2 : 16;
            list->xids = xrealloc(list->xids, list->cap * sizeof *list->xids);
        }
        list->xids[list->count++] = xid;
        p = *end == ',' ? end + 1 : end;
    }
    return true;
}

/* Nothing was in progress at the read: no id in its xip list, none between its xmax and its
 * own id. */
static bool none_in_progress(const struct xid_list *read)
{
    return read->count == 0 && read->own == read->xmax;
}

/* Every transaction that may have been in progress at earlier (its xip list, and the ids from
 * its xmax up to its own) has ended by later's snapshot. An id below later's xmax is in progress
 * at later only if it is in later's xip; one at or above it may be. */
static bool all_ended(const struct xid_list *earlier, const struct xid_list *later)
{
    if (earlier->own > later->xmax)
        return false;
    for (size_t j = 0; j < later->count; j++)
        if (later->xids[j] >= earlier->xmax && later->xids[j] < earlier->own)
            return false;
    for (size_t i = 0; i < earlier->count; i++)
        for (size_t j = 0; j < later->count; j++)
            if (earlier->xids[i] == later->xids[j])
                return false;
    return true;
}

static void xid_list_copy(struct xid_list *to, const struct xid_list *from)
{
    if (to->cap < from->count) {
        to->cap = from->count;
        to->xids = xrealloc(to->xids, to->cap * sizeof *to->xids);
    }
    if (from->count > 0)
        memcpy(to->xids, from->xids, from->count * sizeof *from->xids);
    to->count = from->count;
    to->xmax = from->xmax;
    to->own = from->own;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

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

static void free_batch(struct relay *r)
{
    free(r->gaps);
    r->gaps = NULL;
    free(r->store_gaps);
    r->store_gaps = NULL;
    free(r->batch_positions);
    r->batch_positions = NULL;
}

/* The step in hand is over: sleep, exit, or go on. */
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
    if (r->candidate) { /* W waits for transactions in progress: look again soon */
        arm(r, r->settle_wait);
        r->settle_wait = r->settle_wait * 2 < r->poll_ms ? r->settle_wait * 2 : r->poll_ms;
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

static bool step_full(const struct relay *r)
{
    return r->limit > 0 && r->above == r->limit;
}

static void on_stored(const struct pg_reply *replies, int count, enum pg_status status, void *arg)
{
    struct relay *r = arg;
    (void)replies, (void)count;
    if (status != PG_OK) {
        /* What was published stays published, and pending: the next step stores it. */
        fail_step(r, "storing the watermark failed (write database unavailable?)");
        return;
    }
    backoff_reset(&r->backoff);
    r->stored_watermark = r->watermark;
    finish_step(r, step_full(r));
}

/* The positions between W and the highest published that are not published (in progress,
 * rolled back, or committed since), "{4,9}": the read's $1, and stored for the tokens; at most
 * RELAY_PENDING_MAX. */
static char *gap_list(const struct relay *r)
{
    size_t cap = (size_t)(r->highest - r->watermark - (long long)r->pending_count) * 21 + 3;
    char *text = xmalloc(cap);
    size_t used = 0, next = 0;
    text[used++] = '{';
    for (long long p = r->watermark + 1; p < r->highest; p++) {
        if (next < r->pending_count && r->pending[next] == p) {
            next++;
            continue;
        }
        used += (size_t)snprintf(text + used, cap - used, "%s%lld", used > 1 ? "," : "", p);
    }
    snprintf(text + used, cap - used, "}");
    return text;
}

/* The step's rows are in the stream: add them to pending, move W if the candidate read's
 * transactions have all ended, and store the result. */
static void published(struct relay *r)
{
    if (r->rows > 0) {
        size_t need = r->pending_count + (size_t)r->rows;
        if (need > r->pending_cap) {
            r->pending_cap = need * 2;
            r->pending = xrealloc(r->pending, r->pending_cap * sizeof *r->pending);
        }
        memcpy(r->pending + r->pending_count, r->batch_positions,
               (size_t)r->rows * sizeof *r->pending);
        r->pending_count = need;
        if (r->above < r->rows) /* gaps were published: below some of pending */
            qsort(r->pending, r->pending_count, sizeof *r->pending, cmp_ll);
        if (r->pending[r->pending_count - 1] > r->highest)
            r->highest = r->pending[r->pending_count - 1];
    }
    long long watermark = r->watermark;
    if (r->candidate && all_ended(&r->candidate_xip, &r->read_xip)) {
        watermark = r->candidate_highest;
        r->candidate = false;
    }
    if (!r->candidate) { /* this read becomes the one W waits on */
        if (none_in_progress(&r->read_xip)) {
            watermark = r->highest; /* this read saw everything */
        } else {
            r->candidate = true;
            r->candidate_highest = r->highest;
            xid_list_copy(&r->candidate_xip, &r->read_xip);
        }
    }
    if (watermark > r->watermark) {
        size_t passed = 0;
        while (passed < r->pending_count && r->pending[passed] <= watermark)
            passed++;
        memmove(r->pending, r->pending + passed, (r->pending_count - passed) * sizeof *r->pending);
        r->pending_count -= passed;
        r->published += (long long)passed;
        r->watermark = watermark;
        r->settle_wait = r->settle_ms;
    }
    if (r->rows == 0 && r->watermark == r->stored_watermark) {
        backoff_reset(&r->backoff);
        finish_step(r, false);
        return;
    }
    r->state = RELAY_STORING;
    snprintf(r->store_text[0], sizeof r->store_text[0], "%lld", r->watermark);
    snprintf(r->store_text[1], sizeof r->store_text[1], "%lld", r->published);
    snprintf(r->store_text[2], sizeof r->store_text[2], "%zu", r->pending_count);
    snprintf(r->store_text[3], sizeof r->store_text[3], "%lld", r->highest);
    r->store_gaps = gap_list(r);
    /* Committed without waiting for its WAL flush: a W lost in a crash of the write database
     * only makes a restarted relay publish those rows again (the projector refuses the
     * copies), so it need not cost a flush per step, taken from the commands' group commits. */
    struct pg_batch store = {.mode = PG_BATCH_TRANSACTION,
                             .count = 2,
                             .statements = {{CQRS_SQL_ASYNC_COMMIT, 0, {NULL}},
                                            {STORE_SQL,
                                             6,
                                             {r->store_text[0], r->last_id, r->store_text[1],
                                              r->store_text[2], r->store_text[3], r->store_gaps}}},
                             .cb = on_stored,
                             .arg = r};
    pool_batch(r->pool, &store);
}
static void on_added(redisReply *reply, void *arg)
{
    struct relay *r = arg;
    struct cqrs_stream_id id;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING || reply->len >= sizeof r->last_id ||
        !cqrs_stream_id_parse(reply->str, &id))
        r->failed = true;
    else if (!r->failed) /* replies come in XADD order: the last one is the stream's newest */
        memcpy(r->last_id, reply->str, reply->len + 1);
    if (--r->pending_adds > 0)
        return;
    if (r->failed) {
        fail_step(r, "XADD to " CQRS_STREAM " failed (Redis unavailable?)");
        return;
    }
    r->added += (unsigned long long)r->rows;
    LOG_DEBUG("relay: published %d events (W %lld, %zu above it)", r->rows, r->watermark,
              r->pending_count);
    published(r);
}

static void on_rows(PGresult *res, enum pg_status status, void *arg)
{
    struct relay *r = arg;
    if (status != PG_OK || PQntuples(res) < 1 || PQnfields(res) != 8 ||
        !parse_snapshot(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 7), &r->read_xip)) {
        fail_step(r, "reading the outbox failed (write database unavailable?)");
        return;
    }
    r->rows = PQgetisnull(res, 0, 1) ? 0 : PQntuples(res);
    r->above = 0;
    if (r->rows == 0) {
        published(r);
        return;
    }
    r->batch_positions = xmalloc((size_t)r->rows * sizeof *r->batch_positions);
    for (int i = 0; i < r->rows; i++) {
        r->batch_positions[i] = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        r->above += r->batch_positions[i] > r->highest;
    }
    r->state = RELAY_PUBLISHING;
    r->pending_adds = r->rows;
    r->failed = false;
    /* Nothing may touch r after the last XADD: with Redis down its callback runs at once and
     * ends the step. */
    for (int i = 0; i < r->rows; i++) {
        const char *argv[] = {"XADD",
                              CQRS_STREAM,
                              "*",
                              "position",
                              PQgetvalue(res, i, 1),
                              "type",
                              PQgetvalue(res, i, 2),
                              "key",
                              PQgetvalue(res, i, 3),
                              "value",
                              PQgetvalue(res, i, 4),
                              "at",
                              PQgetvalue(res, i, 5),
                              "command_id",
                              PQgetvalue(res, i, 6)};
        size_t lens[15];
        for (int a = 0; a < 15; a++)
            lens[a] = strlen(argv[a]);
        lens[8] = (size_t)PQgetlength(res, i, 3);  /* the key */
        lens[10] = (size_t)PQgetlength(res, i, 4); /* the value */
        redis_command(r->redis, on_added, r, 15, argv, lens);
    }
}

static void on_read(const struct pg_reply *replies, int count, enum pg_status status, void *arg)
{
    on_rows(count == 2 ? replies[1].res : NULL, status, arg);
}

/* One step: read the gaps and a batch above the highest published (the rest follows from the
 * callbacks). Positions published above W stay within RELAY_PENDING_MAX of it: when they
 * reach it, the step reads only the gaps, until W moves. */
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
    long long room = r->pending_max - (r->highest - r->watermark);
    r->limit = room < 0 ? 0 : room < r->batch ? (long)room : r->batch;
    r->gaps = gap_list(r);
    snprintf(r->highest_text, sizeof r->highest_text, "%lld", r->highest);
    snprintf(r->limit_text, sizeof r->limit_text, "%ld", r->limit);
    /* The read takes a transaction id (READ_SQL): its commit writes a record, not waited for. */
    struct pg_batch read = {
        .mode = PG_BATCH_TRANSACTION,
        .count = 2,
        .statements = {{CQRS_SQL_ASYNC_COMMIT, 0, {NULL}},
                       {READ_SQL, 3, {r->gaps, r->highest_text, r->limit_text}}},
        .cb = on_read,
        .arg = r};
    pool_batch(r->pool, &read);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct relay *r = arg;
    (void)fd, (void)what;
    if (!r->loaded) {
        if (!r->stopping)
            load(r);
        return;
    }
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

static void on_loaded(PGresult *res, enum pg_status status, void *arg)
{
    struct relay *r = arg;
    if (r->stopping)
        return; /* the pool is being freed: stop() has run or runs now */
    if (status != PG_OK || PQntuples(res) != 1) {
        LOG_WARN("relay: reading relay_state failed; retrying");
        arm(r, backoff_next(&r->backoff));
        return;
    }
    backoff_reset(&r->backoff);
    r->loaded = true;
    r->watermark = r->stored_watermark = r->highest = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(r->last_id, sizeof r->last_id, "%s", PQgetvalue(res, 0, 1));
    r->published = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    LOG_INFO("relay: publishing the outbox to %s from position %lld", CQRS_STREAM,
             r->watermark + 1);
    r->state = RELAY_IDLE;
    step(r);
}

/* Reads the stored W, its entry id and the count of events at or below it. */
static void load(struct relay *r)
{
    struct pg_call call = {{LOAD_SQL, 0, {NULL}}, on_loaded, r};
    pool_query(r->pool, &call);
}

static void on_schema_ready(void *arg)
{
    load(arg);
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
    /* Every read of the relay is by position, the outbox's key. Without statistics (a fresh
     * outbox, before autovacuum's first ANALYZE) the planner prefers a scan of the whole outbox
     * to READ_SQL's index scans, and keeps that plan as the outbox grows (README, "What it
     * costs"). */
    r->db.options = "-c enable_seqscan=off";
    struct event_base *base = process_base(process);
    struct pgconn_settings pg = pool_config_pg(&r->db, "l7-relay");
    r->pool = pool_config_create(&r->db, base, "l7-relay", NULL);
    struct redis_settings rs =
        redis_settings_of(r->redis_url, r->redis_timeout_ms, process_resolver(process));
    r->redis = redis_create(base, &rs, NULL);
    if (r->redis == NULL)
        return false;
    backoff_init(&r->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    r->settle_wait = r->settle_ms;
    r->timer = evtimer_new(base, on_timer, r);
    r->state = RELAY_STARTING;
    r->listener = pg_listener_create(base, process_resolver(process), r->write_db_url, CQRS_CHANNEL,
                                     r->db.connect_timeout_ms, on_notify, r);
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
    LOG_INFO("relay: stopped after adding %llu entries (W %lld)", r->added, r->watermark);
    pg_listener_free(r->listener);
    schema_task_free(r->schema);
    if (r->timer != NULL)
        event_free(r->timer);
    redis_free(r->redis);
    pool_free(r->pool);
    free_batch(r);
    free(r->pending);
    free(r->candidate_xip.xids);
    free(r->read_xip.xids);
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
