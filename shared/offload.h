/*
 * offload: runs calls that can only block (a driver without a non-blocking API, such as
 * libmongoc in layer 8) on a fixed set of worker threads, and hands each result back to the
 * event loop.
 *
 * The event loop must never wait, so a blocking call is packed into a job and submitted; a
 * worker thread runs it and the job's completion is called later on the loop thread, where the
 * rest of the request lives (no locks in handlers). Everything is bounded:
 * - the queue holds at most queue_max jobs: submitting to a full queue fails at once and the
 *   caller answers 503, as a full pool's wait queue does; it never grows;
 * - each job has a deadline for its wait in the queue: a job that is still queued when it passes
 *   is completed as timed out without running (the client has been answered 503 already, or is
 *   about to be), so a backlog drains instead of running work nobody waits for any more;
 * - threads is fixed: the blocking driver sees at most that many concurrent calls.
 * A job that is running cannot be interrupted: its own call must be bounded (the driver's socket
 * and server-selection timeouts).
 *
 * Each worker may hold a state of its own (libmongoc: a client popped from a
 * mongoc_client_pool_t, which is not thread-safe to share), made by thread_init on the worker
 * thread and handed to every job it runs. Completions reach the loop through an event activated
 * from the worker thread: libevent's pthreads support must be on (evthread_use_pthreads())
 * before the event_base is created.
 *
 * Same pattern as redis's bio.c (background jobs on their own threads), with a bound and
 * deadlines on the queue, and completions posted back instead of fire-and-forget.
 */
#ifndef LAYERS_OFFLOAD_H
#define LAYERS_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct offload;

enum offload_status {
    OFFLOAD_DONE,      /* the work function ran */
    OFFLOAD_TIMED_OUT, /* it waited in the queue past its deadline and never ran */
    OFFLOAD_CANCELLED, /* it was still queued at offload_free and never ran */
};

/* Runs on a worker thread with that worker's state (thread_init's result). Must be bounded. */
typedef void (*offload_work_fn)(void *worker_state, void *job);

/*
 * The completion: called exactly once per accepted job (offload_submit returned true), always on
 * the loop thread (from the event loop, or from inside offload_free), never from inside
 * offload_submit, and never while the work function may still be running. The job's memory is
 * the caller's again from this call on. The one exception is a job still running when
 * offload_free gives up waiting for it (logged): its completion is never called.
 */
typedef void (*offload_done_fn)(enum offload_status status, void *job);

struct offload_settings {
    int threads;                                  /* worker threads, >= 1 */
    size_t queue_max;                             /* jobs waiting for a worker, >= 1 */
    long shutdown_timeout_ms;                     /* how long offload_free waits for running jobs */
    void *(*thread_init)(void *arg);              /* on each worker at start, may be NULL */
    void (*thread_cleanup)(void *state, void *arg); /* on each worker at exit, may be NULL */
    void *arg;                                    /* for thread_init and thread_cleanup */
};

/* Starts the workers. NULL (logged) when a thread cannot be started or settings are invalid. */
struct offload *offload_create(struct event_base *base, const struct offload_settings *settings);

/*
 * Stops taking jobs, completes the queued ones as OFFLOAD_CANCELLED, waits up to
 * shutdown_timeout_ms for the running ones (completing them as OFFLOAD_DONE), stops the
 * workers. Call on the loop thread. NULL is a no-op.
 */
void offload_free(struct offload *offload);

/*
 * Queues job; queue_timeout_ms bounds its wait for a worker. False when the queue is full or
 * shutting down: nothing was queued and done will not be called (answer 503).
 */
bool offload_submit(struct offload *offload, long queue_timeout_ms, offload_work_fn work,
                    offload_done_fn done, void *job) __attribute__((warn_unused_result));

/* Jobs waiting for a worker now (for a stats endpoint). */
size_t offload_queued(struct offload *offload);

#endif
