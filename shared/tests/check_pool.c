/*
 * Unit tests for pool.c: the connection pool's state machine, without a database.
 *
 * The pool only ever talks to its connector, so these tests plug in a fake one: open() records
 * the slot and returns a handle, and the test decides when and how each attempt ends by calling
 * pool_open_done(slot, ok) itself. A real event_base drives the acquire-timeout timer, run for
 * a few milliseconds at a time with event_base_loopexit; nothing opens a socket. Each test
 * checks one rule of pool.h: min_size opened at create, an idle connection lent before
 * pool_acquire returns, lazy growth up to max_size, a FIFO wait queue with a bound and a
 * timeout, broken connections replaced, fail-fast while the database is unreachable, max
 * lifetime and idle trimming, and statistics that count what happened.
 */
#include "pool.h"

#include "clock.h"
#include "metrics.h"

#include "check_run.h"

#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAKE_MAX_CONNS 64

/* ---- the fake connector ---- */

struct fake_conn {
    struct pool_slot *slot; /* the pool's slot, for pool_open_done and pool_idle_broken */
    bool done;              /* the open attempt was finished by the test */
    bool broken;            /* what is_broken answers */
    bool closed;            /* the pool closed it */
    bool watched;           /* the pool watches it (it should exactly while idle) */
};

struct fake {
    struct fake_conn conns[FAKE_MAX_CONNS]; /* every handle opened, in order */
    int opens;                              /* open() calls */
    int closes;                             /* close() calls */
    bool destroyed;                         /* destroy() called */
    unsigned long long group_retries;       /* what group_retries() answers */
};

static void *fake_open(void *ctx, struct pool_slot *slot)
{
    struct fake *fake = ctx;
    ck_assert_int_lt(fake->opens, FAKE_MAX_CONNS);
    struct fake_conn *conn = &fake->conns[fake->opens++];
    conn->slot = slot;
    return conn;
}

static void fake_close(void *ctx, void *handle)
{
    struct fake *fake = ctx;
    struct fake_conn *conn = handle;
    ck_assert_msg(!conn->closed, "closed twice");
    ck_assert_msg(!conn->watched, "closed while still watched");
    conn->closed = true;
    fake->closes++;
}

static bool fake_is_broken(void *ctx, void *handle)
{
    return ((struct fake_conn *)handle)->broken;
}

static void fake_watch(void *ctx, void *handle, struct pool_slot *slot, bool on)
{
    struct fake_conn *conn = handle;
    ck_assert_msg(conn->watched != on, "watch(%d) twice", on);
    ck_assert_ptr_eq(slot, conn->slot);
    conn->watched = on;
}

static void fake_destroy(void *ctx)
{
    ((struct fake *)ctx)->destroyed = true;
}

static unsigned long long fake_group_retries(void *ctx)
{
    return ((struct fake *)ctx)->group_retries;
}

static const struct pool_connector fake_connector = {
    fake_open, fake_close, fake_is_broken, fake_watch, fake_destroy, fake_group_retries,
};

/* ---- fixture ---- */

static struct event_base *base;
static struct metrics *metrics;
static struct fake fake;
static struct pool *pool;
static int completions; /* acquisitions answered so far, for ordering */

/* What one pool_acquire got back. */
struct ticket {
    int calls;           /* must end at exactly 1 */
    void *conn;          /* the connection, on POOL_OK */
    enum pool_error err; /* the outcome */
    long long at_ms;     /* when the callback ran */
    int order;           /* 1 for the first callback of the test, 2 for the next... */
};

static void on_acquired(void *conn, enum pool_error err, void *arg)
{
    struct ticket *t = arg;
    t->calls++;
    t->conn = conn;
    t->err = err;
    t->at_ms = monotonic_ms();
    t->order = ++completions;
}

static void setup(void)
{
    base = event_base_new();
    metrics = metrics_create(METRIC_MODULE_POOL);
    memset(&fake, 0, sizeof fake);
    pool = NULL;
    completions = 0;
}

static void teardown(void)
{
    pool_free(pool);
    metrics_free(metrics);
    event_base_free(base);
}

/* Settings with generous limits; tests change what they exercise. */
static struct pool_settings settings(int min_size, int max_size)
{
    return (struct pool_settings){
        .min_size = min_size,
        .max_size = max_size,
        .acquire_timeout_ms = 5000,
        .max_waiting = 8,
        .max_lifetime_ms = 600000,
        .idle_timeout_ms = 600000,
    };
}

static void start(struct pool_settings s)
{
    pool = pool_create(base, &s, &fake_connector, &fake, metrics);
}

/* Finishes the oldest open attempt still under way; returns its handle. */
static struct fake_conn *complete(bool ok)
{
    for (int i = 0; i < fake.opens; i++) {
        struct fake_conn *conn = &fake.conns[i];
        if (!conn->done && !conn->closed) {
            conn->done = true;
            pool_open_done(conn->slot, ok);
            return conn;
        }
    }
    ck_abort_msg("no open attempt under way");
    return NULL;
}

static struct pool_stats stats(void)
{
    struct pool_stats s;
    pool_get_stats(pool, &s);
    return s;
}

/* Runs the event loop for about ms milliseconds. */
static void run_for(long ms)
{
    struct timeval tv = ms_to_timeval(ms);
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Runs the event loop until t is answered, for at most max_ms. */
static void run_until(const struct ticket *t, long max_ms)
{
    long long deadline = monotonic_ms() + max_ms;
    while (t->calls == 0 && monotonic_ms() < deadline)
        run_for(5);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A pool of n open, idle connections (min_size n). */
static void start_ready(struct pool_settings s)
{
    start(s);
    for (int i = 0; i < s.min_size; i++)
        complete(true);
}

/* ---- opening ---- */

START_TEST(min_size_opened_at_create)
{
    start(settings(2, 4));
    ck_assert_int_eq(fake.opens, 2);
    struct pool_stats s = stats();
    ck_assert_int_eq(s.opening, 2);
    ck_assert_int_eq(s.size, 0);

    complete(true);
    complete(true);
    s = stats();
    ck_assert_int_eq(s.opening, 0);
    ck_assert_int_eq(s.size, 2);
    ck_assert_int_eq(s.available, 2);
    ck_assert_uint_eq(s.opened, 2);
    ck_assert(fake.conns[0].watched && fake.conns[1].watched); /* idle ones are watched */
    ck_assert_int_eq(fake.opens, 2);                           /* and no more are opened */
}
END_TEST

START_TEST(zero_min_size_opens_nothing)
{
    start(settings(0, 4));
    ck_assert_int_eq(fake.opens, 0);
    pool_maintain(pool);
    ck_assert_int_eq(fake.opens, 0);
}
END_TEST

/* ---- acquiring ---- */

START_TEST(idle_connection_lent_before_acquire_returns)
{
    start_ready(settings(1, 2));
    struct ticket t = {0};
    pool_acquire(pool, on_acquired, &t);
    ck_assert_int_eq(t.calls, 1);
    ck_assert_int_eq(t.err, POOL_OK);
    ck_assert_ptr_eq(t.conn, &fake.conns[0]);
    ck_assert(!fake.conns[0].watched); /* not watched while lent */
    ck_assert_int_eq(fake.opens, 1);   /* no new connection for it */

    struct pool_stats s = stats();
    ck_assert_int_eq(s.in_use, 1);
    ck_assert_int_eq(s.available, 0);
    ck_assert_uint_eq(s.acquisitions, 1);
    ck_assert_uint_eq(s.waits, 0);

    pool_release(pool, t.conn);
    s = stats();
    ck_assert_int_eq(s.in_use, 0);
    ck_assert_int_eq(s.available, 1);
    ck_assert(fake.conns[0].watched);
    ck_assert_int_eq(t.calls, 1);
}
END_TEST

START_TEST(most_recently_used_connection_is_lent_first)
{
    start_ready(settings(2, 2));
    struct ticket a = {0}, b = {0}, c = {0};
    pool_acquire(pool, on_acquired, &a);
    pool_acquire(pool, on_acquired, &b);
    pool_release(pool, a.conn);
    sleep_ms(2);
    pool_release(pool, b.conn); /* b's connection (the second slot) is now the most recent */
    pool_acquire(pool, on_acquired, &c);
    ck_assert_ptr_eq(c.conn, b.conn);
}
END_TEST

START_TEST(grows_lazily_up_to_max_size)
{
    start(settings(0, 2));
    struct ticket a = {0}, b = {0}, c = {0};
    pool_acquire(pool, on_acquired, &a);
    ck_assert_int_eq(a.calls, 0);
    ck_assert_int_eq(fake.opens, 1);
    pool_acquire(pool, on_acquired, &b);
    ck_assert_int_eq(fake.opens, 2);
    pool_acquire(pool, on_acquired, &c);
    ck_assert_int_eq(fake.opens, 2); /* max_size reached: c waits for a release */

    struct pool_stats s = stats();
    ck_assert_int_eq(s.waiting, 3);
    ck_assert_int_eq(s.opening, 2);
    ck_assert_uint_eq(s.waits, 3);

    complete(true);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.err, POOL_OK);
    ck_assert_int_eq(b.calls, 0);
    complete(true);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_int_eq(c.calls, 0);

    pool_release(pool, a.conn);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_ptr_eq(c.conn, a.conn);
    ck_assert_int_eq(fake.opens, 2);
    ck_assert_int_eq(stats().size, 2);
}
END_TEST

START_TEST(waiters_are_served_in_fifo_order)
{
    start_ready(settings(1, 1));
    struct ticket holder = {0}, w[4] = {{0}};
    pool_acquire(pool, on_acquired, &holder);
    for (int i = 0; i < 4; i++)
        pool_acquire(pool, on_acquired, &w[i]);
    ck_assert_int_eq(stats().waiting, 4);

    void *conn = holder.conn;
    for (int i = 0; i < 4; i++) {
        pool_release(pool, conn);
        /* The release hands the connection over at once, to the oldest waiter. */
        ck_assert_int_eq(w[i].calls, 1);
        ck_assert_int_eq(w[i].err, POOL_OK);
        ck_assert_int_eq(w[i].order, i + 2);
        for (int j = i + 1; j < 4; j++)
            ck_assert_int_eq(w[j].calls, 0);
        ck_assert_int_eq(stats().waiting, 3 - i);
        conn = w[i].conn;
    }
    pool_release(pool, conn);
    ck_assert_int_eq(stats().available, 1);
    ck_assert_uint_eq(stats().acquisitions, 5);
}
END_TEST

START_TEST(full_queue_rejects_at_once)
{
    struct pool_settings s = settings(1, 1);
    s.max_waiting = 2;
    start_ready(s);
    struct ticket holder = {0}, w1 = {0}, w2 = {0}, extra = {0};
    pool_acquire(pool, on_acquired, &holder);
    pool_acquire(pool, on_acquired, &w1);
    pool_acquire(pool, on_acquired, &w2);
    ck_assert_int_eq(w1.calls + w2.calls, 0);

    pool_acquire(pool, on_acquired, &extra);
    ck_assert_int_eq(extra.calls, 1); /* before pool_acquire returned */
    ck_assert_int_eq(extra.err, POOL_QUEUE_FULL);
    ck_assert_ptr_null(extra.conn);

    struct pool_stats st = stats();
    ck_assert_uint_eq(st.rejected, 1);
    ck_assert_int_eq(st.waiting, 2);
    ck_assert_uint_eq(st.waits, 2); /* the rejected one never queued */
    ck_assert_uint_eq(metrics_get(metrics, METRIC_POOL_REJECTED), 1);

    /* The queued ones are unaffected and still served in order. */
    pool_release(pool, holder.conn);
    ck_assert_int_eq(w1.calls, 1);
    ck_assert_int_eq(w1.err, POOL_OK);
    ck_assert_int_eq(extra.calls, 1);
}
END_TEST

START_TEST(acquire_times_out_after_acquire_timeout)
{
    struct pool_settings s = settings(1, 1);
    s.acquire_timeout_ms = 100;
    start_ready(s);
    struct ticket holder = {0}, w = {0};
    pool_acquire(pool, on_acquired, &holder);

    long long queued = monotonic_ms();
    pool_acquire(pool, on_acquired, &w);
    run_for(50);
    ck_assert_int_eq(w.calls, 0); /* not before the timeout */

    run_until(&w, 2000);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_int_eq(w.err, POOL_TIMEOUT);
    ck_assert_ptr_null(w.conn);
    long long waited = w.at_ms - queued;
    ck_assert_msg(waited >= 100, "timed out after %lld ms", waited);
    ck_assert_msg(waited < 600, "timed out only after %lld ms", waited);

    struct pool_stats st = stats();
    ck_assert_uint_eq(st.timeouts, 1);
    ck_assert_int_eq(st.waiting, 0);
    ck_assert_uint_eq(metrics_get(metrics, METRIC_POOL_TIMEOUTS), 1);

    /* The late release finds nobody waiting: the connection goes back to idle. */
    pool_release(pool, holder.conn);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_int_eq(stats().available, 1);
}
END_TEST

START_TEST(each_waiter_gets_its_own_deadline)
{
    struct pool_settings s = settings(1, 1);
    s.acquire_timeout_ms = 300;
    start_ready(s);
    struct ticket holder = {0}, first = {0}, second = {0};
    pool_acquire(pool, on_acquired, &holder);

    /* 250 ms apart: a stall of the test process shorter than that cannot make both deadlines
     * pass at once. */
    long long first_queued = monotonic_ms();
    pool_acquire(pool, on_acquired, &first);
    run_for(250);
    long long second_queued = monotonic_ms();
    pool_acquire(pool, on_acquired, &second);

    run_until(&first, 2000);
    ck_assert_int_eq(first.err, POOL_TIMEOUT);
    ck_assert_int_ge(first.at_ms - first_queued, 300);
    ck_assert_int_eq(second.calls, 0); /* its deadline is later */

    run_until(&second, 2000);
    ck_assert_int_eq(second.err, POOL_TIMEOUT);
    ck_assert_int_ge(second.at_ms - second_queued, 300);
    ck_assert_uint_eq(stats().timeouts, 2);
}
END_TEST

START_TEST(served_waiter_does_not_time_out)
{
    struct pool_settings s = settings(1, 1);
    s.acquire_timeout_ms = 400; /* far beyond the 20 ms below, even on a loaded machine */
    start_ready(s);
    struct ticket holder = {0}, w = {0};
    pool_acquire(pool, on_acquired, &holder);
    pool_acquire(pool, on_acquired, &w);
    run_for(20);
    pool_release(pool, holder.conn);
    ck_assert_int_eq(w.err, POOL_OK);
    run_for(500); /* past the deadline it had while waiting */
    ck_assert_int_eq(w.calls, 1);
    ck_assert_uint_eq(stats().timeouts, 0);
    pool_release(pool, w.conn);
}
END_TEST

/* ---- broken connections ---- */

START_TEST(broken_connection_is_closed_and_replaced)
{
    start_ready(settings(1, 1));
    struct ticket t = {0};
    pool_acquire(pool, on_acquired, &t);
    struct fake_conn *conn = t.conn;
    conn->broken = true;
    pool_release(pool, conn);

    ck_assert(conn->closed);
    ck_assert_int_eq(fake.opens, 2); /* a replacement, to keep min_size */
    struct pool_stats s = stats();
    ck_assert_uint_eq(s.broken, 1);
    ck_assert_int_eq(s.size, 0);
    ck_assert_int_eq(s.opening, 1);
    ck_assert_uint_eq(metrics_get(metrics, METRIC_POOL_BROKEN), 1);

    complete(true);
    struct ticket u = {0};
    pool_acquire(pool, on_acquired, &u);
    ck_assert_ptr_eq(u.conn, &fake.conns[1]);
}
END_TEST

START_TEST(broken_connection_is_never_given_to_a_waiter)
{
    start_ready(settings(1, 1));
    struct ticket holder = {0}, w = {0};
    pool_acquire(pool, on_acquired, &holder);
    pool_acquire(pool, on_acquired, &w);
    ((struct fake_conn *)holder.conn)->broken = true;
    pool_release(pool, holder.conn);
    ck_assert_int_eq(w.calls, 0);
    ck_assert_int_eq(fake.opens, 2);
    complete(true);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_int_eq(w.err, POOL_OK);
    ck_assert_ptr_eq(w.conn, &fake.conns[1]);
}
END_TEST

START_TEST(idle_connection_that_breaks_is_dropped)
{
    start_ready(settings(2, 2));
    ck_assert(fake.conns[0].watched);
    pool_idle_broken(fake.conns[0].slot);
    ck_assert(fake.conns[0].closed);
    struct pool_stats s = stats();
    ck_assert_int_eq(s.size, 1);
    ck_assert_uint_eq(s.broken, 1);

    struct ticket t = {0};
    pool_acquire(pool, on_acquired, &t);
    ck_assert_ptr_eq(t.conn, &fake.conns[1]);

    pool_maintain(pool); /* back to min_size */
    ck_assert_int_eq(fake.opens, 3);
}
END_TEST

/* ---- an unreachable database ---- */

START_TEST(open_failure_fails_waiters_then_fails_fast)
{
    start(settings(0, 2));
    struct ticket a = {0};
    pool_acquire(pool, on_acquired, &a);
    ck_assert_int_eq(fake.opens, 1);
    complete(false);
    /* No connection is open or opening: nobody would ever serve a, so it fails now. */
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.err, POOL_UNAVAILABLE);

    struct ticket b = {0};
    pool_acquire(pool, on_acquired, &b);
    ck_assert_int_eq(b.calls, 1); /* during the backoff: at once, without a new attempt */
    ck_assert_int_eq(b.err, POOL_UNAVAILABLE);
    ck_assert_int_eq(fake.opens, 1);

    struct pool_stats s = stats();
    ck_assert_uint_eq(s.unavailable, 2);
    ck_assert_uint_eq(s.open_failures, 1);
    ck_assert_int_eq(s.waiting, 0);
    ck_assert_uint_eq(metrics_get(metrics, METRIC_POOL_UNAVAILABLE), 2);

    /* After the backoff (100 ms) a request makes a new attempt, which can succeed. */
    sleep_ms(130);
    struct ticket c = {0};
    pool_acquire(pool, on_acquired, &c);
    ck_assert_int_eq(c.calls, 0);
    ck_assert_int_eq(fake.opens, 2);
    complete(true);
    ck_assert_int_eq(c.err, POOL_OK);
}
END_TEST

START_TEST(backoff_doubles_after_each_failure)
{
    start(settings(0, 1));
    struct ticket t[3] = {{0}};
    pool_acquire(pool, on_acquired, &t[0]);
    complete(false); /* backoff 100 ms */
    sleep_ms(130);
    pool_acquire(pool, on_acquired, &t[1]);
    ck_assert_int_eq(fake.opens, 2);
    complete(false); /* backoff 200 ms */
    sleep_ms(130);
    pool_acquire(pool, on_acquired, &t[2]);
    ck_assert_int_eq(t[2].err, POOL_UNAVAILABLE); /* still within the longer backoff */
    ck_assert_int_eq(fake.opens, 2);
}
END_TEST

START_TEST(open_failure_keeps_waiters_while_connections_live)
{
    start_ready(settings(1, 2));
    struct ticket holder = {0}, w = {0};
    pool_acquire(pool, on_acquired, &holder);
    pool_acquire(pool, on_acquired, &w);
    ck_assert_int_eq(fake.opens, 2); /* grows for the waiter */
    complete(false);
    ck_assert_int_eq(w.calls, 0); /* a release can still serve it */
    pool_release(pool, holder.conn);
    ck_assert_int_eq(w.err, POOL_OK);
    ck_assert_ptr_eq(w.conn, holder.conn);
}
END_TEST

START_TEST(successful_open_ends_the_backoff)
{
    /* Of two attempts one fails and one succeeds: the database is reachable after all. */
    start(settings(2, 3));
    complete(false);
    complete(true);
    struct ticket a = {0}, b = {0};
    pool_acquire(pool, on_acquired, &a);
    ck_assert_int_eq(a.err, POOL_OK);
    pool_acquire(pool, on_acquired, &b);
    ck_assert_int_eq(b.calls, 0);
    ck_assert_msg(fake.opens == 3, "a waiter with room to grow should start an attempt (opens: %d)",
                  fake.opens);
}
END_TEST

/* ---- lifetime and idleness ---- */

START_TEST(max_lifetime_retires_on_release)
{
    struct pool_settings s = settings(1, 1);
    s.max_lifetime_ms = 50;
    start_ready(s);
    struct ticket t = {0};
    pool_acquire(pool, on_acquired, &t);
    sleep_ms(60);
    pool_release(pool, t.conn);
    ck_assert(fake.conns[0].closed);
    struct pool_stats st = stats();
    ck_assert_uint_eq(st.retired, 1);
    ck_assert_uint_eq(st.broken, 0);
    ck_assert_int_eq(fake.opens, 2); /* replaced, to keep min_size */
    ck_assert_uint_eq(metrics_get(metrics, METRIC_POOL_RETIRED), 1);
}
END_TEST

START_TEST(waiter_gets_a_fresh_connection_not_a_retired_one)
{
    struct pool_settings s = settings(1, 1);
    s.max_lifetime_ms = 50;
    start_ready(s);
    struct ticket holder = {0}, w = {0};
    pool_acquire(pool, on_acquired, &holder);
    pool_acquire(pool, on_acquired, &w);
    sleep_ms(60);
    pool_release(pool, holder.conn);
    ck_assert(fake.conns[0].closed);
    ck_assert_int_eq(w.calls, 0);
    ck_assert_int_eq(fake.opens, 2);
    complete(true);
    ck_assert_int_eq(w.err, POOL_OK);
    ck_assert_ptr_eq(w.conn, &fake.conns[1]);
}
END_TEST

START_TEST(young_connection_is_kept_on_release)
{
    struct pool_settings s = settings(1, 1);
    s.max_lifetime_ms = 10000;
    start_ready(s);
    struct ticket t = {0};
    pool_acquire(pool, on_acquired, &t);
    pool_release(pool, t.conn);
    ck_assert(!fake.conns[0].closed);
    ck_assert_uint_eq(stats().retired, 0);
}
END_TEST

START_TEST(old_idle_connection_is_not_lent)
{
    struct pool_settings s = settings(1, 2);
    s.max_lifetime_ms = 50;
    start_ready(s);
    sleep_ms(60);
    struct ticket t = {0};
    pool_acquire(pool, on_acquired, &t);
    ck_assert(fake.conns[0].closed);
    ck_assert_int_eq(t.calls, 0); /* waits for a fresh one instead */
    ck_assert_int_eq(fake.opens, 2);
    complete(true);
    ck_assert_ptr_eq(t.conn, &fake.conns[1]);
    ck_assert_uint_eq(stats().retired, 1);
}
END_TEST

START_TEST(idle_timeout_trims_down_to_min_size)
{
    struct pool_settings s = settings(1, 3);
    s.idle_timeout_ms = 50;
    start_ready(s);
    struct ticket t[3] = {{0}};
    for (int i = 0; i < 3; i++)
        pool_acquire(pool, on_acquired, &t[i]);
    complete(true);
    complete(true);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(t[i].err, POOL_OK);
        pool_release(pool, t[i].conn);
    }
    ck_assert_int_eq(stats().available, 3);

    pool_maintain(pool); /* not idle long enough yet */
    ck_assert_int_eq(stats().size, 3);

    sleep_ms(60);
    pool_maintain(pool);
    struct pool_stats st = stats();
    ck_assert_int_eq(st.size, 1);
    ck_assert_uint_eq(st.retired, 2);
    ck_assert_int_eq(fake.closes, 2);
    ck_assert_int_eq(fake.opens, 3); /* nothing reopened */

    sleep_ms(60);
    pool_maintain(pool); /* min_size stays, however idle */
    ck_assert_int_eq(stats().size, 1);
}
END_TEST

START_TEST(busy_connections_are_never_trimmed)
{
    struct pool_settings s = settings(0, 2);
    s.idle_timeout_ms = 10;
    start(s);
    struct ticket t = {0};
    pool_acquire(pool, on_acquired, &t);
    complete(true);
    sleep_ms(30);
    pool_maintain(pool);
    ck_assert(!((struct fake_conn *)t.conn)->closed);
    ck_assert_int_eq(stats().in_use, 1);
    pool_release(pool, t.conn);
}
END_TEST

/* ---- statistics ---- */

START_TEST(stats_count_what_happened)
{
    struct pool_settings s = settings(1, 1);
    s.max_waiting = 1;
    start_ready(s);
    struct ticket holder = {0}, w = {0}, rejected = {0};
    pool_acquire(pool, on_acquired, &holder);
    pool_acquire(pool, on_acquired, &w);
    pool_acquire(pool, on_acquired, &rejected);
    sleep_ms(20);
    pool_release(pool, holder.conn); /* held about 20 ms; w waited about 20 ms */
    sleep_ms(20);
    pool_release(pool, w.conn);

    struct pool_stats st = stats();
    ck_assert_int_eq(st.size, 1);
    ck_assert_int_eq(st.available, 1);
    ck_assert_int_eq(st.in_use, 0);
    ck_assert_int_eq(st.waiting, 0);
    ck_assert_int_eq(st.min_size, 1);
    ck_assert_int_eq(st.max_size, 1);
    ck_assert_uint_eq(st.acquisitions, 2);
    ck_assert_uint_eq(st.waits, 1);
    ck_assert_uint_eq(st.rejected, 1);
    ck_assert_uint_eq(st.timeouts, 0);
    ck_assert_uint_eq(st.opened, 1);
    ck_assert(st.usage_ms_avg >= 20.0 && st.usage_ms_avg < 1000.0);
    ck_assert(st.wait_ms_avg >= 20.0 && st.wait_ms_avg < 1000.0);
    ck_assert_uint_eq(metrics_get(metrics, METRIC_POOL_ACQUIRES), 2);
    ck_assert_uint_eq(metrics_get(metrics, METRIC_POOL_WAITS), 1);
}
END_TEST

static json_int_t member_int(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    ck_assert_msg(json_is_integer(v), "member '%s' missing or not an integer", name);
    return json_integer_value(v);
}

static double member_real(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    ck_assert_msg(json_is_real(v), "member '%s' missing or not a number", name);
    return json_real_value(v);
}

START_TEST(stats_json_has_the_contract_members)
{
    struct pool_settings s = settings(2, 3);
    s.max_waiting = 1;
    s.acquire_timeout_ms = 30;
    start_ready(s);
    struct ticket a = {0}, b = {0}, c = {0}, d = {0}, d2 = {0}, e = {0};
    pool_acquire(pool, on_acquired, &a);
    pool_acquire(pool, on_acquired, &b);
    pool_acquire(pool, on_acquired, &c);  /* waits; a third connection starts opening */
    pool_acquire(pool, on_acquired, &d);  /* rejected: the queue holds one */
    pool_acquire(pool, on_acquired, &d2); /* rejected too */
    run_until(&c, 2000);                  /* c times out */
    sleep_ms(10);
    pool_release(pool, a.conn);
    pool_acquire(pool, on_acquired, &e);

    json_t *j = pool_stats_json(pool);
    ck_assert_int_eq(member_int(j, "pool_size"), 2);
    ck_assert_int_eq(member_int(j, "pool_available"), 0);
    ck_assert_int_eq(member_int(j, "requests_waiting"), 0);
    ck_assert_int_eq(member_int(j, "in_use"), 2);
    ck_assert_int_eq(member_int(j, "opening"), 1);
    ck_assert_int_eq(member_int(j, "min_size"), 2);
    ck_assert_int_eq(member_int(j, "max_size"), 3);
    ck_assert_int_eq(member_int(j, "acquisitions"), 3);
    ck_assert_int_eq(member_int(j, "waits"), 1);
    ck_assert_int_eq(member_int(j, "timeouts"), 1);
    ck_assert_int_eq(member_int(j, "rejected"), 2);
    ck_assert_int_eq(member_int(j, "unavailable"), 0);
    ck_assert_int_eq(member_int(j, "connections_opened"), 2);
    ck_assert_int_eq(member_int(j, "connection_failures"), 0);
    ck_assert_int_eq(member_int(j, "connections_broken"), 0);
    ck_assert_int_eq(member_int(j, "connections_retired"), 0);
    double usage = member_real(j, "usage_ms");
    ck_assert_msg(usage >= 30.0 && usage < 1000.0, "usage_ms %f", usage);
    /* Milliseconds to three decimals. */
    double thousandths = usage * 1000.0 - (double)(long long)(usage * 1000.0 + 0.5);
    ck_assert_msg(thousandths > -1e-6 && thousandths < 1e-6, "usage_ms %.9f", usage);
    /* c timed out: the mean wait covers only waits that ended with a connection. */
    ck_assert(member_real(j, "wait_ms") == 0.0);
    json_decref(j);
}
END_TEST

START_TEST(gauges_render_current_sizes)
{
    start_ready(settings(2, 2));
    struct ticket t = {0};
    pool_acquire(pool, on_acquired, &t);
    struct evbuffer *out = evbuffer_new();
    pool_render_gauges(out, pool);
    size_t len = evbuffer_get_length(out);
    char *text = malloc(len + 1);
    evbuffer_remove(out, text, len);
    text[len] = '\0';
    ck_assert(strstr(text, "# TYPE pool_size gauge\npool_size 2\n") != NULL);
    ck_assert(strstr(text, "# TYPE pool_available gauge\npool_available 1\n") != NULL);
    ck_assert(strstr(text, "# TYPE pool_waiting gauge\npool_waiting 0\n") != NULL);
    free(text);
    evbuffer_free(out);
    pool_release(pool, t.conn);
}
END_TEST

START_TEST(free_closes_every_connection)
{
    start(settings(3, 3));
    complete(true);
    complete(true); /* two idle (watched), one still opening */
    struct ticket t = {0};
    pool_acquire(pool, on_acquired, &t); /* and one of them lent */
    pool_free(pool);
    pool = NULL;
    ck_assert_int_eq(fake.opens, 3);
    ck_assert_int_eq(fake.closes, 3);
    for (int i = 0; i < 3; i++)
        ck_assert(fake.conns[i].closed && !fake.conns[i].watched);
    ck_assert(fake.destroyed);
    pool_free(NULL);
}
END_TEST

/* ---- pipeline mode: shares of a connection ---- */

static struct pool_settings pipelined(int min_size, int max_size, int depth)
{
    struct pool_settings s = settings(min_size, max_size);
    s.pipeline_depth = depth;
    return s;
}

START_TEST(shares_go_to_the_least_loaded_connection_up_to_the_depth)
{
    start_ready(pipelined(2, 2, 3));
    ck_assert(pool_is_pipelined(pool));
    struct ticket t[7] = {{0}};
    for (int i = 0; i < 6; i++) {
        pool_acquire_shared(pool, on_acquired, &t[i]);
        ck_assert_int_eq(t[i].err, POOL_OK);
        ck_assert(!((struct fake_conn *)t[i].conn)->watched); /* lent: not watched as idle */
    }
    /* alternating: each new call went to the connection with fewer in flight */
    for (int i = 0; i < 6; i++)
        ck_assert_ptr_eq(t[i].conn, t[i % 2].conn);
    ck_assert_ptr_ne(t[0].conn, t[1].conn);
    struct pool_stats s = stats();
    ck_assert_int_eq(s.in_flight, 6);
    ck_assert_int_eq(s.in_use, 2);
    ck_assert_int_eq(s.max_depth, 3);
    ck_assert_int_eq(s.pipeline_depth, 3);
    /* both at the depth: the seventh waits, and gets the first share released */
    pool_acquire_shared(pool, on_acquired, &t[6]);
    ck_assert_int_eq(t[6].calls, 0);
    ck_assert_int_eq(stats().waiting, 1);
    pool_release(pool, t[3].conn);
    ck_assert_int_eq(t[6].calls, 1);
    ck_assert_ptr_eq(t[6].conn, t[3].conn);
    ck_assert_int_eq(stats().max_depth, 3);
    for (int i = 0; i < 7; i++)
        if (i != 3)
            pool_release(pool, t[i].conn);
    s = stats();
    ck_assert_int_eq(s.in_flight, 0);
    ck_assert_int_eq(s.available, 2);
    ck_assert(fake.conns[0].watched && fake.conns[1].watched); /* idle again, watched */
}
END_TEST

START_TEST(exclusive_borrower_waits_for_a_connection_to_drain)
{
    start_ready(pipelined(1, 1, 4));
    struct ticket a = {0}, b = {0}, x = {0}, c = {0};
    pool_acquire_shared(pool, on_acquired, &a);
    pool_acquire_shared(pool, on_acquired, &b);
    ck_assert_ptr_eq(a.conn, b.conn);
    pool_acquire(pool, on_acquired, &x); /* a transaction: the whole connection */
    ck_assert_int_eq(x.calls, 0);
    /* a later call queues behind it even though the connection has spare depth */
    pool_acquire_shared(pool, on_acquired, &c);
    ck_assert_int_eq(c.calls, 0);
    pool_release(pool, a.conn);
    ck_assert_int_eq(x.calls, 0); /* b is still in flight */
    pool_release(pool, b.conn);
    ck_assert_int_eq(x.calls, 1);
    ck_assert_int_eq(x.err, POOL_OK);
    ck_assert_int_eq(c.calls, 0); /* lent whole: no share while x holds it */
    pool_release(pool, x.conn);
    ck_assert_int_eq(c.calls, 1);
    ck_assert(x.order < c.order);
    pool_release(pool, c.conn);
}
END_TEST

START_TEST(broken_shared_connection_closes_when_its_last_call_is_released)
{
    start_ready(pipelined(1, 2, 4));
    struct ticket t[3] = {{0}};
    for (int i = 0; i < 3; i++)
        pool_acquire_shared(pool, on_acquired, &t[i]);
    struct fake_conn *conn = t[0].conn;
    ck_assert_ptr_eq(t[2].conn, conn);
    conn->broken = true;
    /* no new share goes to a broken connection: a new one is opened for it */
    struct ticket d = {0};
    pool_acquire_shared(pool, on_acquired, &d);
    ck_assert_int_eq(d.calls, 0);
    ck_assert_int_eq(fake.opens, 2);
    pool_release(pool, conn);
    pool_release(pool, conn);
    ck_assert(!conn->closed); /* one call is still being failed */
    pool_release(pool, conn);
    ck_assert(conn->closed);
    ck_assert_uint_eq(stats().broken, 1);
    complete(true);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_ptr_eq(d.conn, &fake.conns[1]);
    pool_release(pool, d.conn);
}
END_TEST

START_TEST(sharing_a_busy_connection_grows_the_pool)
{
    start_ready(pipelined(1, 3, 4));
    struct ticket a = {0}, b = {0}, c = {0};
    pool_acquire_shared(pool, on_acquired, &a);
    ck_assert_int_eq(fake.opens, 1); /* an idle one was there */
    pool_acquire_shared(pool, on_acquired, &b);
    ck_assert_ptr_eq(b.conn, a.conn); /* shared at once, and one more is opened */
    ck_assert_int_eq(fake.opens, 2);
    struct ticket d = {0};
    pool_acquire_shared(pool, on_acquired, &d);
    ck_assert_int_eq(fake.opens, 2); /* one opening at a time */
    complete(true);
    pool_acquire_shared(pool, on_acquired, &c);
    ck_assert_ptr_eq(c.conn, &fake.conns[1]); /* the least loaded */
    pool_release(pool, a.conn);
    pool_release(pool, b.conn);
    pool_release(pool, c.conn);
    pool_release(pool, d.conn);
}
END_TEST

START_TEST(sharing_grows_the_pool_only_once_connections_carry_a_quarter_of_the_depth)
{
    start_ready(pipelined(1, 3, 8)); /* a quarter of 8: 2 calls */
    struct ticket a = {0}, b = {0}, c = {0};
    pool_acquire_shared(pool, on_acquired, &a);
    pool_acquire_shared(pool, on_acquired, &b);
    ck_assert_ptr_eq(b.conn, a.conn);
    ck_assert_int_eq(fake.opens, 1); /* it carried 1 call: fill it rather than open another */
    pool_acquire_shared(pool, on_acquired, &c);
    ck_assert_ptr_eq(c.conn, a.conn);
    ck_assert_int_eq(fake.opens, 2); /* it carried 2: one more is opened */
    pool_release(pool, a.conn);
    pool_release(pool, b.conn);
    pool_release(pool, c.conn);
}
END_TEST

START_TEST(exclusive_mode_shares_nothing)
{
    start_ready(settings(1, 1));
    ck_assert(!pool_is_pipelined(pool));
    struct ticket a = {0}, b = {0};
    pool_acquire_shared(pool, on_acquired, &a);
    pool_acquire_shared(pool, on_acquired, &b);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(b.calls, 0);
    ck_assert_int_eq(stats().max_depth, 1);
    pool_release(pool, a.conn);
    ck_assert_int_eq(b.calls, 1);
    pool_release(pool, b.conn);
}
END_TEST

START_TEST(gauges_render_depth_in_use)
{
    start_ready(pipelined(1, 1, 4));
    struct ticket a = {0}, b = {0};
    pool_acquire_shared(pool, on_acquired, &a);
    pool_acquire_shared(pool, on_acquired, &b);
    fake.group_retries = 3; /* the connector's count, as the pool reports it */
    struct evbuffer *out = evbuffer_new();
    pool_render_gauges(out, pool);
    size_t len = evbuffer_get_length(out);
    char *text = calloc(1, len + 1);
    evbuffer_remove(out, text, len);
    ck_assert_ptr_nonnull(strstr(text, "\npool_in_flight 2\n"));
    ck_assert_ptr_nonnull(strstr(text, "\npool_max_depth_reached 2\n"));
    ck_assert_ptr_nonnull(strstr(text, "\npool_group_retries_total 3\n"));
    free(text);
    evbuffer_free(out);
    json_t *j = pool_stats_json(pool);
    ck_assert_str_eq(json_string_value(json_object_get(j, "mode")), "pipeline");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "in_flight")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "max_depth_reached")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "group_retries")), 3);
    ck_assert_uint_eq(stats().group_retries, 3);
    json_decref(j);
    pool_release(pool, a.conn);
    pool_release(pool, b.conn);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, min_size_opened_at_create);
    tcase_add_test(tc, zero_min_size_opens_nothing);
    tcase_add_test(tc, idle_connection_lent_before_acquire_returns);
    tcase_add_test(tc, most_recently_used_connection_is_lent_first);
    tcase_add_test(tc, grows_lazily_up_to_max_size);
    tcase_add_test(tc, waiters_are_served_in_fifo_order);
    tcase_add_test(tc, full_queue_rejects_at_once);
    tcase_add_test(tc, acquire_times_out_after_acquire_timeout);
    tcase_add_test(tc, each_waiter_gets_its_own_deadline);
    tcase_add_test(tc, served_waiter_does_not_time_out);
    tcase_add_test(tc, broken_connection_is_closed_and_replaced);
    tcase_add_test(tc, broken_connection_is_never_given_to_a_waiter);
    tcase_add_test(tc, idle_connection_that_breaks_is_dropped);
    tcase_add_test(tc, open_failure_fails_waiters_then_fails_fast);
    tcase_add_test(tc, backoff_doubles_after_each_failure);
    tcase_add_test(tc, open_failure_keeps_waiters_while_connections_live);
    tcase_add_test(tc, successful_open_ends_the_backoff);
    tcase_add_test(tc, max_lifetime_retires_on_release);
    tcase_add_test(tc, waiter_gets_a_fresh_connection_not_a_retired_one);
    tcase_add_test(tc, young_connection_is_kept_on_release);
    tcase_add_test(tc, old_idle_connection_is_not_lent);
    tcase_add_test(tc, idle_timeout_trims_down_to_min_size);
    tcase_add_test(tc, busy_connections_are_never_trimmed);
    tcase_add_test(tc, stats_count_what_happened);
    tcase_add_test(tc, stats_json_has_the_contract_members);
    tcase_add_test(tc, gauges_render_current_sizes);
    tcase_add_test(tc, free_closes_every_connection);
    tcase_add_test(tc, shares_go_to_the_least_loaded_connection_up_to_the_depth);
    tcase_add_test(tc, exclusive_borrower_waits_for_a_connection_to_drain);
    tcase_add_test(tc, broken_shared_connection_closes_when_its_last_call_is_released);
    tcase_add_test(tc, sharing_a_busy_connection_grows_the_pool);
    tcase_add_test(tc, sharing_grows_the_pool_only_once_connections_carry_a_quarter_of_the_depth);
    tcase_add_test(tc, exclusive_mode_shares_nothing);
    tcase_add_test(tc, gauges_render_depth_in_use);
    suite_add_tcase(suite, tc);

    return check_run(suite, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
