/*
 * offload: a bounded job queue, worker threads, completions posted to the loop (see offload.h).
 *
 * One mutex guards everything shared with the workers: the queue (FIFO, at most queue_max), the
 * list of finished jobs waiting for the loop, the count of running jobs and the stop flag.
 * A job moves QUEUED -> RUNNING -> FINISHED on a worker, or QUEUED -> FINISHED on the loop (its
 * deadline passed: the sweep; shutdown: offload_free). The loop thread alone calls completions:
 * a worker appends its finished job to `finished` and activates the `completions` event, whose
 * callback takes the whole list under the lock and calls them outside it.
 */
#include "offload.h"

#include "clock.h"
#include "log.h"
#include "xalloc.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define SWEEP_MS 10 /* how late a queued job's timeout may be noticed */

struct job {
    offload_work_fn work;       /* the caller's blocking call */
    offload_done_fn done;       /* its completion */
    void *arg;                  /* the caller's job */
    long long deadline_ms;      /* monotonic time its wait in the queue ends */
    enum offload_status status; /* set when it finishes */
    struct job *next;           /* in the queue or the finished list */
};

struct job_list {
    struct job *head, *tail; /* FIFO */
};

struct offload {
    struct event_base *base;          /* the loop completions are called on */
    struct offload_settings settings; /* copy */
    pthread_mutex_t lock;             /* guards everything below */
    pthread_cond_t work_ready;        /* a job was queued, or stopping */
    pthread_cond_t idle;              /* a running job finished */
    struct job_list queue;            /* waiting for a worker */
    size_t queued;                    /* its length, <= queue_max */
    struct job_list finished;         /* waiting for the loop to call their completions */
    int running;                      /* jobs inside a work function */
    bool stopping;                    /* offload_free has begun */
    pthread_t *threads;               /* the workers */
    int started;                      /* how many of them were started */
    struct event *completions;        /* activated by workers: finished jobs to complete */
    struct event *sweep;              /* the queue's deadlines */
};

static void list_push(struct job_list *list, struct job *job)
{
    job->next = NULL;
    if (list->tail != NULL)
        list->tail->next = job;
    else
        list->head = job;
    list->tail = job;
}

static struct job *list_pop(struct job_list *list)
{
    struct job *job = list->head;
    if (job != NULL) {
        list->head = job->next;
        if (list->head == NULL)
            list->tail = NULL;
    }
    return job;
}

/* Calls the completions of a detached list, on the loop thread, outside the lock. */
static void complete_all(struct job_list list)
{
    struct job *job;
    while ((job = list_pop(&list)) != NULL) {
        job->done(job->status, job->arg);
        free(job);
    }
}

static void on_completions(evutil_socket_t fd, short what, void *arg)
{
    struct offload *o = arg;
    (void)fd, (void)what;
    pthread_mutex_lock(&o->lock);
    struct job_list list = o->finished;
    o->finished = (struct job_list){NULL, NULL};
    pthread_mutex_unlock(&o->lock);
    complete_all(list);
}

/* Takes the queued jobs whose deadline passed (all of them when `all`), with `status`. */
static struct job_list take_queued(struct offload *o, bool all, enum offload_status status)
{
    struct job_list taken = {NULL, NULL}, kept = {NULL, NULL};
    long long now = monotonic_ms();
    struct job *job;
    while ((job = list_pop(&o->queue)) != NULL) {
        if (all || now >= job->deadline_ms) {
            job->status = status;
            list_push(&taken, job);
            o->queued--;
        } else {
            list_push(&kept, job);
        }
    }
    o->queue = kept;
    return taken;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct offload *o = arg;
    (void)fd, (void)what;
    pthread_mutex_lock(&o->lock);
    struct job_list expired = take_queued(o, false, OFFLOAD_TIMED_OUT);
    pthread_mutex_unlock(&o->lock);
    complete_all(expired);
}

static void *worker_main(void *arg)
{
    struct offload *o = arg;
    void *state = o->settings.thread_init ? o->settings.thread_init(o->settings.arg) : NULL;
    pthread_mutex_lock(&o->lock);
    for (;;) {
        while (o->queue.head == NULL && !o->stopping)
            pthread_cond_wait(&o->work_ready, &o->lock);
        if (o->stopping)
            break; /* what is still queued is offload_free's to cancel */
        struct job *job = list_pop(&o->queue);
        o->queued--;
        if (monotonic_ms() >= job->deadline_ms) {
            job->status = OFFLOAD_TIMED_OUT; /* nobody waits for it any more: do not run it */
        } else {
            o->running++;
            pthread_mutex_unlock(&o->lock);
            job->work(state, job->arg);
            pthread_mutex_lock(&o->lock);
            o->running--;
            job->status = OFFLOAD_DONE;
            pthread_cond_broadcast(&o->idle);
        }
        list_push(&o->finished, job);
        event_active(o->completions, EV_READ, 0); /* thread-safe with evthread_use_pthreads */
    }
    pthread_mutex_unlock(&o->lock);
    if (o->settings.thread_cleanup)
        o->settings.thread_cleanup(state, o->settings.arg);
    return NULL;
}

bool offload_submit(struct offload *o, long queue_timeout_ms, offload_work_fn work,
                    offload_done_fn done, void *arg)
{
    pthread_mutex_lock(&o->lock);
    bool accepted = !o->stopping && o->queued < o->settings.queue_max;
    if (accepted) {
        struct job *job = xcalloc(1, sizeof *job);
        *job = (struct job){work, done, arg, monotonic_ms() + queue_timeout_ms, OFFLOAD_DONE, NULL};
        list_push(&o->queue, job);
        o->queued++;
        pthread_cond_signal(&o->work_ready);
    }
    pthread_mutex_unlock(&o->lock);
    return accepted;
}

size_t offload_queued(struct offload *o)
{
    pthread_mutex_lock(&o->lock);
    size_t queued = o->queued;
    pthread_mutex_unlock(&o->lock);
    return queued;
}

/* Tells the workers to stop and waits for them, for at most shutdown_timeout_ms. */
static bool stop_workers(struct offload *o)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += o->settings.shutdown_timeout_ms / 1000;
    until.tv_nsec += (o->settings.shutdown_timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&o->lock);
    o->stopping = true;
    pthread_cond_broadcast(&o->work_ready);
    int rc = 0;
    while (o->running > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&o->idle, &o->lock, &until);
    bool stopped = o->running == 0;
    pthread_mutex_unlock(&o->lock);
    for (int i = 0; i < o->started; i++) {
        if (stopped)
            pthread_join(o->threads[i], NULL); /* each is leaving its loop now */
        else
            pthread_detach(o->threads[i]);
    }
    return stopped;
}

void offload_free(struct offload *o)
{
    if (o == NULL)
        return;
    bool stopped = stop_workers(o);
    pthread_mutex_lock(&o->lock);
    struct job_list cancelled = take_queued(o, true, OFFLOAD_CANCELLED);
    struct job_list finished = o->finished;
    o->finished = (struct job_list){NULL, NULL};
    pthread_mutex_unlock(&o->lock);
    complete_all(finished);
    complete_all(cancelled);
    event_free(o->sweep);
    o->sweep = NULL;
    if (!stopped) {
        /* The workers still use o: it is left to them (a bounded leak at exit). */
        LOG_ERROR("offload: %d job(s) still running after %ld ms; abandoning them", o->running,
                  o->settings.shutdown_timeout_ms);
        return;
    }
    event_free(o->completions);
    pthread_cond_destroy(&o->work_ready);
    pthread_cond_destroy(&o->idle);
    pthread_mutex_destroy(&o->lock);
    free(o->threads);
    free(o);
}

struct offload *offload_create(struct event_base *base, const struct offload_settings *settings)
{
    if (settings->threads < 1 || settings->queue_max < 1) {
        LOG_ERROR("offload: needs at least one thread and a queue of at least one job");
        return NULL;
    }
    struct offload *o = xcalloc(1, sizeof *o);
    o->base = base;
    o->settings = *settings;
    pthread_mutex_init(&o->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&o->idle, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&o->work_ready, NULL);
    o->completions = event_new(base, -1, 0, on_completions, o);
    o->sweep = event_new(base, -1, EV_PERSIST, on_sweep, o);
    struct timeval tv = ms_to_timeval(SWEEP_MS);
    event_add(o->sweep, &tv);
    o->threads = xcalloc((size_t)settings->threads, sizeof *o->threads);
    for (; o->started < settings->threads; o->started++) {
        if (pthread_create(&o->threads[o->started], NULL, worker_main, o) != 0) {
            LOG_ERROR("offload: cannot start worker thread %d", o->started + 1);
            offload_free(o);
            return NULL;
        }
    }
    return o;
}
