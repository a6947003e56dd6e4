/*
 * pool: the connection pool's state machine (see pool.h).
 *
 * Each connection lives in a slot: EMPTY -> OPENING -> IDLE <-> BUSY -> EMPTY. A BUSY slot has
 * one borrower, or in pipeline mode up to pipeline_depth borrowers sharing it (users); it becomes
 * IDLE, or is closed if broken or too old, when the last one releases it. Waiting requests
 * sit in a ring buffer of max_waiting entries; since all share one timeout, the oldest always
 * expires first, so one timer armed for the head of the queue serves them all.
 */
#include "pool.h"

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h> /* events embedded in our structs */
#include <stdlib.h>

enum slot_state { SLOT_EMPTY, SLOT_OPENING, SLOT_IDLE, SLOT_BUSY };

struct pool_slot {
    struct pool *pool;     /* owner, for connector callbacks */
    enum slot_state state; /* see above */
    void *conn;            /* the connector's handle, NULL when EMPTY */
    long long opened_ms;   /* when the connection was established */
    long long since_ms;    /* when it last became IDLE */
    int users;             /* borrowers holding it (more than 1 only in pipeline mode) */
    bool exclusive;        /* lent whole: no shares are added while BUSY */
    bool watched;          /* IDLE and watched by the connector */
    long long changed_ms;  /* when users last changed (for usage_ms) */
};

struct pool_waiter {
    pool_acquire_cb cb;  /* who to call */
    void *arg;           /* with what */
    long long queued_ms; /* when it started waiting */
    bool exclusive;      /* wants a whole connection, not a share */
};

struct pool {
    struct event_base *base;                /* loop for the wait timer */
    struct pool_settings settings;          /* bounds and timeouts */
    const struct pool_connector *connector; /* opens/closes handles */
    void *connector_ctx;                    /* the connector's context */
    struct metrics *metrics;                /* pool_* counters */
    struct pool_slot *slots;                /* max_size slots */
    int in_state[SLOT_BUSY + 1];            /* how many slots are in each state */
    struct pool_waiter *waiters;            /* ring buffer of max_waiting */
    int wait_head, wait_count;              /* ring position and fill */
    struct event wait_timer;                /* fires at the head waiter's deadline */
    struct backoff backoff;                 /* delay between failed attempts */
    long long backoff_until_ms;             /* no new attempt before this */
    struct pool_stats totals;               /* cumulative counters (gauges filled on demand) */
    double usage_ms_total, wait_ms_total;   /* for the averages */
    unsigned long long waits_served;        /* waiters that got a connection */
    int in_flight;                          /* borrowers now (calls, in pipeline mode) */
};

/* ---- counting ---- */

/* Every slot transition goes through here, so the per-state counts are always right. */
static void set_slot_state(struct pool *pool, struct pool_slot *slot, enum slot_state next)
{
    pool->in_state[slot->state]--;
    pool->in_state[next]++;
    slot->state = next;
}

static int count_slots(const struct pool *pool, enum slot_state state)
{
    return pool->in_state[state];
}

static int live_connections(const struct pool *pool)
{
    return count_slots(pool, SLOT_IDLE) + count_slots(pool, SLOT_BUSY);
}

/* ---- the wait queue ---- */

static void arm_wait_timer(struct pool *pool)
{
    if (pool->wait_count == 0 || event_pending(&pool->wait_timer, EV_TIMEOUT, NULL))
        return;
    const struct pool_waiter *head = &pool->waiters[pool->wait_head];
    long long left = head->queued_ms + pool->settings.acquire_timeout_ms - monotonic_ms();
    struct timeval tv = ms_to_timeval(left > 0 ? (long)left : 0);
    event_add(&pool->wait_timer, &tv);
}

static struct pool_waiter pop_waiter(struct pool *pool)
{
    struct pool_waiter w = pool->waiters[pool->wait_head];
    pool->wait_head = (pool->wait_head + 1) % pool->settings.max_waiting;
    pool->wait_count--;
    return w;
}

static void fail_waiter(struct pool *pool, enum pool_error err)
{
    struct pool_waiter w = pop_waiter(pool);
    if (err == POOL_TIMEOUT) {
        pool->totals.timeouts++;
        metrics_inc(pool->metrics, METRIC_POOL_TIMEOUTS);
    } else {
        pool->totals.unavailable++;
        metrics_inc(pool->metrics, METRIC_POOL_UNAVAILABLE);
    }
    w.cb(NULL, err, w.arg);
}

static void on_wait_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pool *pool = arg;
    (void)fd, (void)what;
    long long now = monotonic_ms();
    while (pool->wait_count > 0 &&
           pool->waiters[pool->wait_head].queued_ms + pool->settings.acquire_timeout_ms <= now)
        fail_waiter(pool, POOL_TIMEOUT);
    arm_wait_timer(pool);
}

/* ---- slots ---- */

/* The integral of lent shares over time is the sum of every borrower's holding time (usage_ms),
 * whether one borrower holds a connection or many share it. */
static void account_usage(struct pool *pool, struct pool_slot *slot, long long now)
{
    pool->usage_ms_total += (double)slot->users * (double)(now - slot->changed_ms);
    slot->changed_ms = now;
}

static void unwatch(struct pool *pool, struct pool_slot *slot)
{
    if (slot->watched && pool->connector->watch)
        pool->connector->watch(pool->connector_ctx, slot->conn, slot, false);
    slot->watched = false;
}

static void close_slot(struct pool *pool, struct pool_slot *slot)
{
    unwatch(pool, slot);
    pool->connector->close(pool->connector_ctx, slot->conn);
    slot->conn = NULL;
    set_slot_state(pool, slot, SLOT_EMPTY);
}

static void retire_slot(struct pool *pool, struct pool_slot *slot)
{
    pool->totals.retired++;
    metrics_inc(pool->metrics, METRIC_POOL_RETIRED);
    close_slot(pool, slot);
}

/* Lends a whole connection (exclusive) or one more share of it (pipeline mode). */
static void lend(struct pool *pool, struct pool_slot *slot, bool exclusive, pool_acquire_cb cb,
                 void *arg)
{
    long long now = monotonic_ms();
    if (slot->state == SLOT_IDLE) {
        unwatch(pool, slot);
        set_slot_state(pool, slot, SLOT_BUSY);
        slot->exclusive = exclusive;
    }
    account_usage(pool, slot, now);
    slot->users++;
    pool->in_flight++;
    if (slot->users > pool->totals.max_depth)
        pool->totals.max_depth = slot->users;
    pool->totals.acquisitions++;
    metrics_inc(pool->metrics, METRIC_POOL_ACQUIRES);
    cb(slot->conn, POOL_OK, arg);
}

static bool too_old(const struct pool *pool, const struct pool_slot *slot, long long now)
{
    return now - slot->opened_ms >= pool->settings.max_lifetime_ms;
}

/*
 * The connection for the next borrower: an idle one for an exclusive borrower; for a shared one
 * in pipeline mode, the open connection with the fewest calls in flight below the depth (not
 * one lent exclusively, nor a broken one still failing its calls). Ties go to the most recently
 * used, so that the others stay idle long enough to be trimmed. Idle ones past their lifetime
 * are retired on the way.
 */
static struct pool_slot *pick(struct pool *pool, bool exclusive)
{
    long long now = monotonic_ms();
    bool share = !exclusive && pool->settings.pipeline_depth > 1;
    struct pool_slot *best = NULL;
    for (int i = 0; i < pool->settings.max_size; i++) {
        struct pool_slot *slot = &pool->slots[i];
        if (slot->state == SLOT_IDLE && too_old(pool, slot, now)) {
            retire_slot(pool, slot);
            continue;
        }
        bool usable = slot->state == SLOT_IDLE ||
                      (share && slot->state == SLOT_BUSY && !slot->exclusive &&
                       slot->users < pool->settings.pipeline_depth &&
                       !pool->connector->is_broken(pool->connector_ctx, slot->conn));
        if (!usable)
            continue;
        if (best == NULL || slot->users < best->users ||
            (slot->users == best->users && slot->since_ms > best->since_ms))
            best = slot;
    }
    return best;
}

/* Serves waiters in FIFO order while a connection (or a share) can be had for the oldest. An
 * exclusive waiter at the head waits for a connection to drain; those behind it wait too
 * (first come, first served: it is never overtaken for ever). */
static void serve_waiters(struct pool *pool)
{
    while (pool->wait_count > 0) {
        struct pool_slot *slot = pick(pool, pool->waiters[pool->wait_head].exclusive);
        if (slot == NULL)
            return;
        struct pool_waiter w = pop_waiter(pool);
        pool->wait_ms_total += (double)(monotonic_ms() - w.queued_ms);
        pool->waits_served++;
        lend(pool, slot, w.exclusive, w.cb, w.arg);
    }
}

/* A connection with no borrower: serves the waiters, and parks it (watched) if none took it. */
static void hand_off(struct pool *pool, struct pool_slot *slot)
{
    if (slot->state != SLOT_IDLE)
        set_slot_state(pool, slot, SLOT_IDLE);
    slot->exclusive = false;
    slot->since_ms = monotonic_ms();
    serve_waiters(pool);
    if (slot->state == SLOT_IDLE && !slot->watched && pool->connector->watch) {
        slot->watched = true;
        pool->connector->watch(pool->connector_ctx, slot->conn, slot, true);
    }
}

static void open_slot(struct pool *pool, struct pool_slot *slot)
{
    set_slot_state(pool, slot, SLOT_OPENING);
    slot->conn = pool->connector->open(pool->connector_ctx, slot);
}

/* Opens connections while requests wait for them (or the pool is below min_size). */
static void grow(struct pool *pool)
{
    if (monotonic_ms() < pool->backoff_until_ms)
        return;
    for (int i = 0; i < pool->settings.max_size; i++) {
        int opening = count_slots(pool, SLOT_OPENING);
        bool needed = pool->wait_count > opening ||
                      live_connections(pool) + opening < pool->settings.min_size;
        if (!needed)
            return;
        if (pool->slots[i].state == SLOT_EMPTY)
            open_slot(pool, &pool->slots[i]);
    }
}

/*
 * Pipeline mode: a call just shared a busy connection because none was idle, and the least
 * loaded one already carried `before` calls. One backend runs its pipeline's queries one after
 * the other, on one core, and commits them one by one: so the pool still grows by load, one
 * connection at a time up to max_size. But it grows only once every open connection carries a
 * quarter of the depth: a pipeline pays only when calls share it (one round trip, one write
 * and one wake-up of the backend for several calls), and growing at the first shared call put
 * the calls of 16 clients on 10 connections, one or two each, where pipelining gains nothing
 * (l1's README, "Pipeline mode"). Two cores run a few backends at once, not ten.
 */
static void grow_for_load(struct pool *pool, int before)
{
    int fill = pool->settings.pipeline_depth / 4;
    if (before < (fill > 1 ? fill : 1))
        return;
    if (monotonic_ms() < pool->backoff_until_ms || count_slots(pool, SLOT_OPENING) > 0)
        return;
    for (int i = 0; i < pool->settings.max_size; i++) {
        if (pool->slots[i].state == SLOT_EMPTY) {
            open_slot(pool, &pool->slots[i]);
            return;
        }
    }
}

void pool_open_done(struct pool_slot *slot, bool ok)
{
    struct pool *pool = slot->pool;
    if (ok) {
        pool->totals.opened++;
        backoff_reset(&pool->backoff);
        pool->backoff_until_ms = 0;
        slot->opened_ms = monotonic_ms();
        hand_off(pool, slot);
        return;
    }
    pool->totals.open_failures++;
    close_slot(pool, slot);
    pool->backoff_until_ms = monotonic_ms() + backoff_next(&pool->backoff);
    /* Nobody will release a connection if none is open: fail the waiters now, not later. */
    if (live_connections(pool) == 0 && count_slots(pool, SLOT_OPENING) == 0) {
        for (int n = pool->wait_count; n > 0 && pool->wait_count > 0; n--)
            fail_waiter(pool, POOL_UNAVAILABLE);
    }
}

void pool_idle_broken(struct pool_slot *slot)
{
    struct pool *pool = slot->pool;
    pool->totals.broken++;
    metrics_inc(pool->metrics, METRIC_POOL_BROKEN);
    close_slot(pool, slot);
}

/* ---- acquire and release ---- */

static void acquire(struct pool *pool, bool exclusive, pool_acquire_cb cb, void *arg)
{
    /* With requests already waiting, a newcomer queues behind them (first come, first served). */
    struct pool_slot *slot = pool->wait_count == 0 ? pick(pool, exclusive) : NULL;
    if (slot != NULL) {
        bool shared_busy = slot->state == SLOT_BUSY;
        int before = slot->users;
        lend(pool, slot, exclusive, cb, arg);
        if (shared_busy)
            grow_for_load(pool, before);
        return;
    }
    if (pool->wait_count == pool->settings.max_waiting) {
        pool->totals.rejected++;
        metrics_inc(pool->metrics, METRIC_POOL_REJECTED);
        cb(NULL, POOL_QUEUE_FULL, arg);
        return;
    }
    /* Nothing open, nothing opening, and the last attempt failed moments ago: fail fast. */
    bool unreachable = live_connections(pool) == 0 && count_slots(pool, SLOT_OPENING) == 0 &&
                       monotonic_ms() < pool->backoff_until_ms;
    if (unreachable) {
        pool->totals.unavailable++;
        metrics_inc(pool->metrics, METRIC_POOL_UNAVAILABLE);
        cb(NULL, POOL_UNAVAILABLE, arg);
        return;
    }
    int tail = (pool->wait_head + pool->wait_count) % pool->settings.max_waiting;
    pool->waiters[tail] = (struct pool_waiter){cb, arg, monotonic_ms(), exclusive};
    pool->wait_count++;
    pool->totals.waits++;
    metrics_inc(pool->metrics, METRIC_POOL_WAITS);
    grow(pool);
    arm_wait_timer(pool);
}

void pool_acquire(struct pool *pool, pool_acquire_cb cb, void *arg)
{
    acquire(pool, true, cb, arg);
}

void pool_acquire_shared(struct pool *pool, pool_acquire_cb cb, void *arg)
{
    acquire(pool, pool->settings.pipeline_depth <= 1, cb, arg);
}

bool pool_is_pipelined(const struct pool *pool)
{
    return pool->settings.pipeline_depth > 1;
}

static struct pool_slot *slot_of(struct pool *pool, void *conn)
{
    for (int i = 0; i < pool->settings.max_size; i++)
        if (pool->slots[i].conn == conn && pool->slots[i].state == SLOT_BUSY)
            return &pool->slots[i];
    abort(); /* releasing a connection the pool did not lend: a programming error */
}

void pool_release(struct pool *pool, void *conn)
{
    struct pool_slot *slot = slot_of(pool, conn);
    long long now = monotonic_ms();
    account_usage(pool, slot, now);
    slot->users--;
    pool->in_flight--;
    if (slot->users > 0) { /* still shared: a waiter may take the freed share */
        serve_waiters(pool);
        return;
    }
    /* The last borrower is gone: only now may a broken or old connection be closed (its other
     * calls have been failed or answered first). */
    if (pool->connector->is_broken(pool->connector_ctx, conn)) {
        pool->totals.broken++;
        metrics_inc(pool->metrics, METRIC_POOL_BROKEN);
        close_slot(pool, slot);
        grow(pool); /* a waiter may now need a fresh connection */
        return;
    }
    if (too_old(pool, slot, now)) {
        retire_slot(pool, slot);
        grow(pool);
        return;
    }
    hand_off(pool, slot);
}

void pool_maintain(struct pool *pool)
{
    long long now = monotonic_ms();
    for (int i = 0; i < pool->settings.max_size; i++) {
        struct pool_slot *slot = &pool->slots[i];
        if (slot->state != SLOT_IDLE)
            continue;
        bool idle_too_long = now - slot->since_ms >= pool->settings.idle_timeout_ms &&
                             live_connections(pool) > pool->settings.min_size;
        if (too_old(pool, slot, now) || idle_too_long)
            retire_slot(pool, slot);
    }
    grow(pool);
}

/* ---- life cycle and statistics ---- */

struct pool *pool_create(struct event_base *base, const struct pool_settings *settings,
                         const struct pool_connector *connector, void *connector_ctx,
                         struct metrics *metrics)
{
    struct pool *pool = xcalloc(1, sizeof *pool);
    backoff_init(&pool->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    pool->base = base;
    pool->settings = *settings;
    if (pool->settings.pipeline_depth < 1)
        pool->settings.pipeline_depth = 1; /* exclusive */
    pool->connector = connector;
    pool->connector_ctx = connector_ctx;
    pool->metrics = metrics;
    pool->slots = xcalloc((size_t)settings->max_size, sizeof *pool->slots);
    for (int i = 0; i < settings->max_size; i++)
        pool->slots[i].pool = pool;
    pool->in_state[SLOT_EMPTY] = settings->max_size;
    pool->waiters = xcalloc((size_t)settings->max_waiting, sizeof *pool->waiters);
    evtimer_assign(&pool->wait_timer, base, on_wait_timer, pool);
    grow(pool); /* open min_size connections in the background */
    return pool;
}

void pool_free(struct pool *pool)
{
    if (pool == NULL)
        return;
    event_del(&pool->wait_timer);
    for (int i = 0; i < pool->settings.max_size; i++)
        if (pool->slots[i].state != SLOT_EMPTY)
            close_slot(pool, &pool->slots[i]);
    free(pool->slots);
    free(pool->waiters);
    if (pool->connector->destroy)
        pool->connector->destroy(pool->connector_ctx);
    free(pool);
}

void pool_get_stats(const struct pool *pool, struct pool_stats *out)
{
    *out = pool->totals;
    out->available = count_slots(pool, SLOT_IDLE);
    out->in_use = count_slots(pool, SLOT_BUSY);
    out->size = out->available + out->in_use;
    out->opening = count_slots(pool, SLOT_OPENING);
    out->waiting = pool->wait_count;
    out->min_size = pool->settings.min_size;
    out->max_size = pool->settings.max_size;
    out->in_flight = pool->in_flight;
    out->pipeline_depth = pool->settings.pipeline_depth;
    out->group_retries =
        pool->connector->group_retries ? pool->connector->group_retries(pool->connector_ctx) : 0;
    unsigned long long released = pool->totals.acquisitions - (unsigned long long)pool->in_flight;
    out->usage_ms_avg = released ? pool->usage_ms_total / (double)released : 0.0;
    out->wait_ms_avg = pool->waits_served ? pool->wait_ms_total / (double)pool->waits_served : 0.0;
}

static double round3(double x)
{
    return (double)(long long)(x * 1000.0 + 0.5) / 1000.0;
}

json_t *pool_stats_json(const struct pool *pool)
{
    struct pool_stats s;
    pool_get_stats(pool, &s);
    s.usage_ms_avg = round3(s.usage_ms_avg);
    s.wait_ms_avg = round3(s.wait_ms_avg);
    return json_pack(
        "{s:i, s:i, s:i, s:f, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:I, s:f, s:s, s:i, s:i, s:i, s:I}",
        "pool_size", s.size, "pool_available", s.available, "requests_waiting", s.waiting,
        "usage_ms", s.usage_ms_avg, "in_use", s.in_use, "opening", s.opening, "min_size",
        s.min_size, "max_size", s.max_size, "acquisitions", (json_int_t)s.acquisitions, "waits",
        (json_int_t)s.waits, "timeouts", (json_int_t)s.timeouts, "rejected", (json_int_t)s.rejected,
        "unavailable", (json_int_t)s.unavailable, "connections_opened", (json_int_t)s.opened,
        "connection_failures", (json_int_t)s.open_failures, "connections_broken",
        (json_int_t)s.broken, "connections_retired", (json_int_t)s.retired, "wait_ms",
        s.wait_ms_avg, "mode", s.pipeline_depth > 1 ? "pipeline" : "exclusive", "pipeline_depth",
        s.pipeline_depth, "in_flight", s.in_flight, "max_depth_reached", s.max_depth,
        "group_retries", (json_int_t)s.group_retries);
}

void pool_render_gauges(struct evbuffer *out, void *arg)
{
    struct pool_stats s;
    pool_get_stats(arg, &s);
    evbuffer_add_printf(
        out,
        "# HELP pool_size Open connections (idle and in use).\n"
        "# TYPE pool_size gauge\npool_size %d\n"
        "# HELP pool_available Idle connections.\n"
        "# TYPE pool_available gauge\npool_available %d\n"
        "# HELP pool_waiting Requests waiting for a connection.\n"
        "# TYPE pool_waiting gauge\npool_waiting %d\n"
        "# HELP pool_in_flight Borrowers now (in pipeline mode: calls in flight).\n"
        "# TYPE pool_in_flight gauge\npool_in_flight %d\n"
        "# HELP pool_max_depth_reached Most borrowers one connection has had at "
        "once.\n"
        "# TYPE pool_max_depth_reached gauge\npool_max_depth_reached %d\n"
        "# HELP pool_group_retries_total Pipelined groups that failed and were sent "
        "again, call by call.\n"
        "# TYPE pool_group_retries_total counter\npool_group_retries_total %llu\n",
        s.size, s.available, s.waiting, s.in_flight, s.max_depth, s.group_retries);
}
