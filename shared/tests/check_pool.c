/*
 * Unit tests for the pool's state machine (pool.c), driven through a fake connector: "opening"
 * a connection just records the slot, and the test decides when (and whether) it succeeds. Real
 * timers on a real event_base, no sockets and no database.
 */
#include "pool.h"

#include <check.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_FAKES 16

struct fake_conn {
    int id;      /* 1, 2, ... */
    bool broken; /* what is_broken reports */
    bool closed; /* close() was called */
};

static struct fake_conn fakes[MAX_FAKES];
static struct pool_slot *pending[MAX_FAKES]; /* slots whose open the test has not finished */
static int opened, pending_count;

static void *fake_open(void *ctx, struct pool_slot *slot)
{
    (void)ctx;
    struct fake_conn *c = &fakes[opened++];
    c->id = opened;
    pending[pending_count++] = slot;
    return c;
}

static void fake_close(void *ctx, void *conn)
{
    (void)ctx;
    ((struct fake_conn *)conn)->closed = true;
}

static bool fake_is_broken(void *ctx, void *conn)
{
    (void)ctx;
    return ((struct fake_conn *)conn)->broken;
}

static const struct pool_connector fake_connector = {fake_open, fake_close, fake_is_broken, NULL,
                                                     NULL};

/* Finishes the oldest pending open. */
static void finish_open(bool ok)
{
    ck_assert_int_gt(pending_count, 0);
    struct pool_slot *slot = pending[0];
    memmove(pending, pending + 1, (size_t)(--pending_count) * sizeof pending[0]);
    pool_open_done(slot, ok);
}

/* What the acquire callbacks received, in order. */
struct outcome {
    void *conn;
    enum pool_error err;
    bool called;
};
static struct outcome outcomes[32];

static void on_acquire(void *conn, enum pool_error err, void *arg)
{
    struct outcome *o = arg;
    ck_assert(!o->called); /* exactly once */
    o->conn = conn;
    o->err = err;
    o->called = true;
}

static struct event_base *base;
static struct pool *pool;

static void make_pool(int min, int max, long timeout_ms, int max_waiting)
{
    struct pool_settings s = {min, max, timeout_ms, max_waiting, 3600000, 3600000};
    pool = pool_create(base, &s, &fake_connector, NULL, NULL);
}

static void setup(void)
{
    memset(fakes, 0, sizeof fakes);
    memset(outcomes, 0, sizeof outcomes);
    opened = pending_count = 0;
    base = event_base_new();
}

static void teardown(void)
{
    pool_free(pool);
    pool = NULL;
    event_base_free(base);
}

static void run_for_ms(long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

START_TEST(opens_min_size_and_lends_idle_at_once)
{
    make_pool(2, 4, 1000, 4);
    ck_assert_int_eq(opened, 2);
    finish_open(true);
    finish_open(true);
    pool_acquire(pool, on_acquire, &outcomes[0]);
    ck_assert(outcomes[0].called); /* before pool_acquire returned */
    ck_assert_int_eq(outcomes[0].err, POOL_OK);
    struct pool_stats st;
    pool_get_stats(pool, &st);
    ck_assert_int_eq(st.size, 2);
    ck_assert_int_eq(st.in_use, 1);
    ck_assert_int_eq(st.available, 1);
    pool_release(pool, outcomes[0].conn);
    pool_get_stats(pool, &st);
    ck_assert_int_eq(st.available, 2);
    ck_assert_uint_eq(st.acquisitions, 1);
}
END_TEST

START_TEST(grows_lazily_and_serves_waiters_in_order)
{
    make_pool(0, 2, 1000, 8);
    ck_assert_int_eq(opened, 0);
    for (int i = 0; i < 3; i++)
        pool_acquire(pool, on_acquire, &outcomes[i]);
    ck_assert_int_eq(opened, 2); /* grows to max, not beyond */
    ck_assert(!outcomes[0].called);
    finish_open(true);
    ck_assert(outcomes[0].called && outcomes[0].err == POOL_OK);
    ck_assert(!outcomes[1].called);
    finish_open(true);
    ck_assert(outcomes[1].called && !outcomes[2].called);
    pool_release(pool, outcomes[0].conn); /* goes to the oldest waiter */
    ck_assert(outcomes[2].called && outcomes[2].conn == outcomes[0].conn);
}
END_TEST

START_TEST(queue_is_bounded)
{
    make_pool(1, 1, 1000, 2);
    finish_open(true);
    for (int i = 0; i < 4; i++)
        pool_acquire(pool, on_acquire, &outcomes[i]);
    ck_assert(outcomes[0].called && outcomes[0].err == POOL_OK);
    ck_assert(!outcomes[1].called && !outcomes[2].called);
    ck_assert(outcomes[3].called && outcomes[3].err == POOL_QUEUE_FULL);
    struct pool_stats st;
    pool_get_stats(pool, &st);
    ck_assert_int_eq(st.waiting, 2);
    ck_assert_uint_eq(st.rejected, 1);
}
END_TEST

START_TEST(acquire_times_out)
{
    make_pool(1, 1, 150, 4);
    finish_open(true);
    pool_acquire(pool, on_acquire, &outcomes[0]);
    pool_acquire(pool, on_acquire, &outcomes[1]);
    run_for_ms(80);
    ck_assert(!outcomes[1].called); /* not before the timeout */
    run_for_ms(200);
    ck_assert(outcomes[1].called && outcomes[1].err == POOL_TIMEOUT);
    struct pool_stats st;
    pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.timeouts, 1);
    ck_assert_int_eq(st.waiting, 0);
}
END_TEST

START_TEST(broken_connections_are_replaced)
{
    make_pool(1, 1, 1000, 4);
    finish_open(true);
    pool_acquire(pool, on_acquire, &outcomes[0]);
    pool_acquire(pool, on_acquire, &outcomes[1]);
    struct fake_conn *c = outcomes[0].conn;
    c->broken = true;
    pool_release(pool, c);
    ck_assert(c->closed);
    ck_assert_int_eq(opened, 2); /* a replacement for the waiter */
    finish_open(true);
    ck_assert(outcomes[1].called && outcomes[1].conn != c);
    struct pool_stats st;
    pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.broken, 1);
}
END_TEST

START_TEST(unreachable_database_fails_fast)
{
    make_pool(0, 2, 5000, 4);
    pool_acquire(pool, on_acquire, &outcomes[0]);
    finish_open(false); /* no connection at all: the waiter fails now, not in 5 s */
    ck_assert(outcomes[0].called && outcomes[0].err == POOL_UNAVAILABLE);
    pool_acquire(pool, on_acquire, &outcomes[1]); /* during the backoff: immediately */
    ck_assert(outcomes[1].called && outcomes[1].err == POOL_UNAVAILABLE);
    ck_assert_int_eq(opened, 1);
    run_for_ms(150); /* backoff (100 ms) over: the next request tries again */
    pool_acquire(pool, on_acquire, &outcomes[2]);
    ck_assert_int_eq(opened, 2);
    finish_open(true);
    ck_assert(outcomes[2].called && outcomes[2].err == POOL_OK);
}
END_TEST

START_TEST(idle_connections_trimmed_to_min)
{
    struct pool_settings s = {1, 3, 1000, 4, 3600000, 50};
    pool = pool_create(base, &s, &fake_connector, NULL, NULL);
    finish_open(true);
    for (int i = 0; i < 3; i++)
        pool_acquire(pool, on_acquire, &outcomes[i]);
    finish_open(true);
    finish_open(true);
    for (int i = 0; i < 3; i++)
        pool_release(pool, outcomes[i].conn);
    run_for_ms(80);
    pool_maintain(pool);
    struct pool_stats st;
    pool_get_stats(pool, &st);
    ck_assert_int_eq(st.size, 1);
    ck_assert_uint_eq(st.retired, 2);
}
END_TEST

START_TEST(old_connections_retired_on_release)
{
    struct pool_settings s = {0, 2, 1000, 4, 30, 3600000};
    pool = pool_create(base, &s, &fake_connector, NULL, NULL);
    pool_acquire(pool, on_acquire, &outcomes[0]);
    finish_open(true);
    run_for_ms(50);
    struct fake_conn *c = outcomes[0].conn;
    pool_release(pool, c);
    ck_assert(c->closed);
    struct pool_stats st;
    pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.retired, 1);
    ck_assert_int_eq(st.size, 0);
}
END_TEST

START_TEST(stats_json_members)
{
    make_pool(1, 2, 1000, 4);
    finish_open(true);
    json_t *j = pool_stats_json(pool);
    const char *members[] = {"pool_size",    "pool_available", "requests_waiting", "usage_ms",
                             "acquisitions", "waits",          "timeouts",         "rejected",
                             "min_size",     "max_size"};
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
        ck_assert_msg(json_is_number(json_object_get(j, members[i])), "%s", members[i]);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "pool_size")), 1);
    json_decref(j);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, opens_min_size_and_lends_idle_at_once);
    tcase_add_test(tc, grows_lazily_and_serves_waiters_in_order);
    tcase_add_test(tc, queue_is_bounded);
    tcase_add_test(tc, acquire_times_out);
    tcase_add_test(tc, broken_connections_are_replaced);
    tcase_add_test(tc, unreachable_database_fails_fast);
    tcase_add_test(tc, idle_connections_trimmed_to_min);
    tcase_add_test(tc, old_connections_retired_on_release);
    tcase_add_test(tc, stats_json_members);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
