/*
 * Unit tests for offload (offload.c): worker threads and an event loop, no sockets.
 *
 * Jobs run on a worker thread and complete on the loop thread, once each; a full queue refuses
 * at once; a job whose wait in the queue outlasts its deadline completes as timed out without
 * running (while the only worker is still busy); offload_free with jobs running and queued
 * completes the running ones as done and the queued ones as cancelled.
 */
#include "offload.h"

#include "check_run.h"

#include <check.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct job {
    long sleep_ms;              /* how long the work blocks */
    atomic_bool ran;            /* the work function was called */
    atomic_bool started;        /* ... and has begun */
    bool ran_on_loop_thread;    /* work ran on the test's thread (it must not) */
    int completions;            /* completion calls */
    bool completed_on_loop;     /* every completion was on the test's thread */
    enum offload_status status; /* the last completion's */
};

static struct event_base *base;
static pthread_t loop_thread;
static int outstanding; /* jobs whose completion has not come yet */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void work(void *state, void *arg)
{
    struct job *job = arg;
    (void)state;
    atomic_store(&job->started, true);
    job->ran_on_loop_thread = pthread_equal(pthread_self(), loop_thread);
    sleep_ms(job->sleep_ms);
    atomic_store(&job->ran, true);
}

static void done(enum offload_status status, void *arg)
{
    struct job *job = arg;
    job->completions++;
    job->completed_on_loop = pthread_equal(pthread_self(), loop_thread);
    job->status = status;
    outstanding--;
    if (outstanding == 0)
        event_base_loopbreak(base);
}

/* Runs the loop until every submitted job completed, or 5 s. */
static void run_loop(void)
{
    struct timeval limit = {5, 0};
    event_base_loopexit(base, &limit);
    if (outstanding > 0)
        event_base_dispatch(base);
}

static struct offload *start(int threads, size_t queue_max)
{
    struct offload_settings settings = {threads, queue_max, 2000, NULL, NULL, NULL};
    return offload_create(base, &settings);
}

static void submit(struct offload *o, struct job *job, long timeout_ms)
{
    ck_assert(offload_submit(o, timeout_ms, work, done, job));
    outstanding++;
}

static void wait_started(struct job *job)
{
    for (int i = 0; i < 500 && !atomic_load(&job->started); i++)
        sleep_ms(2);
    ck_assert(atomic_load(&job->started));
}

static void setup(void)
{
    base = event_base_new();
    loop_thread = pthread_self();
    outstanding = 0;
}

static void teardown(void)
{
    event_base_free(base);
}

START_TEST(jobs_run_on_workers_and_complete_on_the_loop)
{
    struct offload *o = start(3, 16);
    struct job jobs[10] = {0};
    for (int i = 0; i < 10; i++) {
        jobs[i].sleep_ms = 5;
        submit(o, &jobs[i], 5000);
    }
    run_loop();
    ck_assert_int_eq(outstanding, 0);
    for (int i = 0; i < 10; i++) {
        ck_assert(atomic_load(&jobs[i].ran));
        ck_assert(!jobs[i].ran_on_loop_thread);
        ck_assert_int_eq(jobs[i].completions, 1);
        ck_assert(jobs[i].completed_on_loop);
        ck_assert_int_eq(jobs[i].status, OFFLOAD_DONE);
    }
    offload_free(o);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(jobs[i].completions, 1); /* nothing more at shutdown */
}
END_TEST

START_TEST(a_full_queue_refuses_at_once)
{
    struct offload *o = start(1, 2);
    struct job busy = {.sleep_ms = 200}, a = {0}, b = {0}, refused = {0};
    submit(o, &busy, 5000);
    wait_started(&busy); /* the worker holds it: the queue is empty */
    submit(o, &a, 5000);
    submit(o, &b, 5000);
    ck_assert_uint_eq(offload_queued(o), 2);
    ck_assert(!offload_submit(o, 5000, work, done, &refused));
    ck_assert_uint_eq(offload_queued(o), 2); /* never grows */
    run_loop();
    ck_assert_int_eq(outstanding, 0);
    ck_assert_int_eq(refused.completions, 0);
    ck_assert(!atomic_load(&refused.ran));
    ck_assert_int_eq(a.status, OFFLOAD_DONE);
    ck_assert_int_eq(b.status, OFFLOAD_DONE);
    offload_free(o);
}
END_TEST

START_TEST(a_job_past_its_queue_deadline_times_out_without_running)
{
    struct offload *o = start(1, 4);
    struct job busy = {.sleep_ms = 600}, late = {0};
    submit(o, &busy, 5000);
    wait_started(&busy);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    submit(o, &late, 50);
    long elapsed_ms = 0;
    while (late.completions == 0 && elapsed_ms < 5000) {
        event_base_loop(base, EVLOOP_ONCE); /* the sweep wakes it every few ms */
        clock_gettime(CLOCK_MONOTONIC, &t1);
        elapsed_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    }
    ck_assert_int_eq(late.completions, 1);
    ck_assert_int_eq(late.status, OFFLOAD_TIMED_OUT);
    ck_assert(late.completed_on_loop);
    ck_assert(!atomic_load(&late.ran));
    ck_assert_msg(elapsed_ms < 500, "timed out after %ld ms, not while the worker was busy",
                  elapsed_ms);
    ck_assert(!atomic_load(&busy.ran));
    run_loop();
    ck_assert_int_eq(busy.status, OFFLOAD_DONE);
    offload_free(o);
    ck_assert(!atomic_load(&late.ran));
}
END_TEST

START_TEST(shutdown_completes_running_jobs_and_cancels_queued_ones)
{
    struct offload *o = start(2, 8);
    struct job running[2] = {{.sleep_ms = 150}, {.sleep_ms = 150}};
    struct job queued[3] = {0};
    submit(o, &running[0], 5000);
    submit(o, &running[1], 5000);
    wait_started(&running[0]);
    wait_started(&running[1]);
    for (int i = 0; i < 3; i++)
        submit(o, &queued[i], 5000);
    offload_free(o); /* no loop iteration: everything completes inside free */
    ck_assert_int_eq(outstanding, 0);
    for (int i = 0; i < 2; i++) {
        ck_assert(atomic_load(&running[i].ran));
        ck_assert_int_eq(running[i].completions, 1);
        ck_assert_int_eq(running[i].status, OFFLOAD_DONE);
        ck_assert(running[i].completed_on_loop);
    }
    for (int i = 0; i < 3; i++) {
        ck_assert(!atomic_load(&queued[i].ran));
        ck_assert_int_eq(queued[i].completions, 1);
        ck_assert_int_eq(queued[i].status, OFFLOAD_CANCELLED);
        ck_assert(queued[i].completed_on_loop);
    }
}
END_TEST

static int thread_states;
static void *thread_init(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&thread_states, 1, __ATOMIC_SEQ_CST);
    return &thread_states;
}
static void thread_cleanup(void *state, void *arg)
{
    (void)arg;
    ck_assert_ptr_eq(state, &thread_states);
    __atomic_sub_fetch(&thread_states, 1, __ATOMIC_SEQ_CST);
}

START_TEST(each_worker_gets_its_own_state)
{
    struct offload_settings settings = {3, 4, 2000, thread_init, thread_cleanup, NULL};
    struct offload *o = offload_create(base, &settings);
    struct job job = {0};
    submit(o, &job, 5000);
    run_loop();
    ck_assert_int_eq(job.status, OFFLOAD_DONE);
    offload_free(o);
    ck_assert_int_eq(__atomic_load_n(&thread_states, __ATOMIC_SEQ_CST), 0);
}
END_TEST

static Suite *offload_suite(void)
{
    Suite *s = suite_create("offload");
    TCase *tc =
        check_tcase("core", setup, teardown, 30,
                    (const TTest *const[]){jobs_run_on_workers_and_complete_on_the_loop,
                                           a_full_queue_refuses_at_once,
                                           a_job_past_its_queue_deadline_times_out_without_running,
                                           shutdown_completes_running_jobs_and_cancels_queued_ones,
                                           each_worker_gets_its_own_state, NULL});
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    evthread_use_pthreads(); /* before any event_base: workers activate the completion event */
    return check_run(offload_suite(), CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
