/*
 * process: start-up, settings, signals, maintenance and a bounded stop (see process.h).
 */
#include "process.h"

#include "log.h"
#include "resolve.h"
#include "xalloc.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define PROCESS_ROW_COUNT 2

struct process {
    const struct process_spec *spec;           /* the program's description */
    void *context;                             /* the program's context */
    struct process_config config;              /* LOG_LEVEL, SHUTDOWN_TIMEOUT_MS */
    struct config_row rows[PROCESS_ROW_COUNT]; /* the PROCESS set, pointing into config */
    struct config_set *sets;                   /* the PROCESS set, then the program's */
    size_t set_count;                          /* entries in sets */
    struct event_base *base;                   /* the one event loop */
    struct resolver *resolver;                 /* host names to addresses, off the loop */
    struct event *sigterm, *sigint;            /* stop signals */
    struct event *maintenance;                 /* once a second */
    struct event *deadline;                    /* SHUTDOWN_TIMEOUT_MS after the signal */
    int status;                                /* exit code, once exiting */
    bool stopping;                             /* a stop signal arrived */
    bool exiting;                              /* process_exit() was called */
};

static void build_sets(struct process *p)
{
    const struct config_row rows[PROCESS_ROW_COUNT] = {
        {"LOG_LEVEL", CONFIG_ENUM, "info", 0, 0, "lines below this level are not logged",
         &p->config.log_level, log_level_names},
        {"SHUTDOWN_TIMEOUT_MS", CONFIG_INT, "10000", 0, 600000,
         "how long SIGTERM waits for the work in progress (requests, a batch)",
         &p->config.shutdown_timeout_ms, NULL},
    };
    memcpy(p->rows, rows, sizeof rows);
    p->set_count = 1 + p->spec->set_count;
    p->sets = xcalloc(p->set_count, sizeof *p->sets);
    p->sets[0] = (struct config_set)CONFIG_SET("process", p->rows);
    if (p->spec->set_count > 0)
        memcpy(p->sets + 1, p->spec->sets, p->spec->set_count * sizeof *p->sets);
}

/* --help, or the settings loaded, checked and printed. false: exit with *status. */
static bool load_config(struct process *p, int argc, char **argv, int *status)
{
    const struct process_spec *spec = p->spec;
    char err[512];
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("%s: %s\n\nUsage: %s [--help]\n\n", spec->program, spec->summary, spec->program);
        config_sets_usage(p->sets, p->set_count, stdout);
        *status = 0;
        return false;
    }
    *status = 1;
    if (argc > 1) {
        fprintf(stderr, "%s: unknown argument '%s' (try --help)\n", spec->program, argv[1]);
        return false;
    }
    if (!config_sets_load(p->sets, p->set_count, NULL, NULL, err, sizeof err)) {
        fprintf(stderr, "%s: configuration error: %s\n", spec->program, err);
        return false;
    }
    enum log_level level = LOG_LEVEL_INFO;
    if (!log_level_parse(p->config.log_level, &level)) /* the enum row let only these through */
        return false;
    log_threshold = level;
    fprintf(stderr, "%s configuration:\n", spec->program);
    config_sets_print(p->sets, p->set_count, stderr);
    return true;
}

/* Every client and every database connection is a file descriptor: allow as many as the
 * system lets this process have (the soft limit is often 1024). */
static void raise_fd_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
            LOG_WARN("could not raise the open-file limit");
    }
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct process *p = arg;
    (void)fd, (void)what;
    LOG_WARN("shutdown: work still in progress after %ld ms; stopping anyway",
             p->config.shutdown_timeout_ms);
    process_exit(p, 0);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct process *p = arg;
    (void)what;
    if (p->stopping)
        return;
    p->stopping = true;
    LOG_INFO("shutdown: signal %d", (int)sig);
    struct timeval tv = {p->config.shutdown_timeout_ms / 1000,
                         (p->config.shutdown_timeout_ms % 1000) * 1000};
    event_add(p->deadline, &tv);
    if (p->spec->drain != NULL)
        p->spec->drain(p->context);
    else
        process_exit(p, 0);
}

static void on_maintenance(evutil_socket_t fd, short what, void *arg)
{
    struct process *p = arg;
    (void)fd, (void)what;
    if (p->spec->maintain != NULL)
        p->spec->maintain(p->context);
}

/* The loop and its events; false when libevent cannot give us a thread-safe loop. */
static bool create_loop(struct process *p)
{
    /* Before the base exists: worker threads (offloaded drivers, l4-reshard's mover) post
     * completions to it with event_active(), which is only safe on a base with locks. */
    if (evthread_use_pthreads() != 0) {
        LOG_ERROR("libevent has no pthreads support");
        return false;
    }
    /* epoll's changelist: the adds and deletes a loop turn makes on one descriptor become at
     * most one epoll_ctl when the turn ends. evhttp turns a connection's reading off and its
     * writing on for each reply, and back after it: 4 epoll_ctl a request otherwise. It cut the
     * server's CPU a request by 3-15%, in every cell measured
     * (bench/results/2026-12-02-vm-epoll-changelist). libevent's caveat, a descriptor cloned
     * with dup() whose twin is closed, does not arise here: no descriptor on a loop is dup()ed. */
    struct event_config *config = event_config_new();
    if (config == NULL) {
        LOG_ERROR("cannot create the event loop");
        return false;
    }
    event_config_set_flag(config, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    p->base = event_base_new_with_config(config);
    event_config_free(config);
    if (p->base == NULL) {
        LOG_ERROR("cannot create the event loop");
        return false;
    }
    p->resolver = resolver_create(p->base);
    p->sigterm = evsignal_new(p->base, SIGTERM, on_signal, p);
    p->sigint = evsignal_new(p->base, SIGINT, on_signal, p);
    p->maintenance = event_new(p->base, -1, EV_PERSIST, on_maintenance, p);
    p->deadline = evtimer_new(p->base, on_deadline, p);
    struct timeval second = {1, 0};
    event_add(p->sigterm, NULL);
    event_add(p->sigint, NULL);
    event_add(p->maintenance, &second);
    return true;
}

static void free_loop(struct process *p)
{
    if (p->sigterm)
        event_free(p->sigterm);
    if (p->sigint)
        event_free(p->sigint);
    if (p->maintenance)
        event_free(p->maintenance);
    if (p->deadline)
        event_free(p->deadline);
    resolver_free(p->resolver);
    if (p->base)
        event_base_free(p->base);
}

int process_main(int argc, char **argv, const struct process_spec *spec, void *context)
{
    struct process p = {.spec = spec, .context = context};
    int status;
    signal(SIGPIPE, SIG_IGN); /* a peer that hangs up must not kill the process */
    build_sets(&p);
    if (!load_config(&p, argc, argv, &status))
        goto done;
    raise_fd_limit();
    if (!create_loop(&p)) {
        status = 1;
        goto done;
    }
    if (!spec->start(&p, context))
        process_exit(&p, 1);
    else
        event_base_dispatch(p.base);
    status = p.exiting ? p.status : 0;
    if (spec->stop != NULL)
        spec->stop(context);
    LOG_INFO("%s stopped", spec->program);
done:
    free_loop(&p);
    config_sets_release(p.sets, p.set_count);
    free(p.sets);
    return status;
}

void process_exit(struct process *process, int status)
{
    if (process->exiting)
        return;
    process->exiting = true;
    process->status = status;
    event_base_loopexit(process->base, NULL);
}

bool process_stopping(const struct process *process)
{
    return process->stopping;
}

struct event_base *process_base(struct process *process)
{
    return process->base;
}

struct resolver *process_resolver(struct process *process)
{
    return process->resolver;
}

const struct process_config *process_config(const struct process *process)
{
    return &process->config;
}

const struct process_spec *process_spec(const struct process *process)
{
    return process->spec;
}
