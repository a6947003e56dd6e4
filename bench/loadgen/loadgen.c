/*
 * loadgen: the benchmark's load generator; bench/run.sh runs it for every measured cell.
 *
 * Why not wrk: wrk 4.1.0 adds synthetic samples to its latency histogram to correct for
 * coordinated omission (wrk.c, stats_correct) before a script sees it, so its percentiles are
 * not those of the requests it measured, and it never looks at a reply's body. This program
 * reports only measured requests and checks every reply (expect.h) against the data set.
 *
 * Its connections are http_conn.h's, a plain HTTP/1.1 client of about 300 lines, not evhttp's:
 * it shares the two cores with the servers it measures, and evhttp's client cost about 30 us of
 * CPU a request against 17-20 (http_conn.h says where the difference goes).
 *
 * Two ways to send:
 *   closed loop (default)  N connections, each sending its next request when the previous
 *                          answer has arrived; latency runs from the send.
 *   open loop (--rate R)   requests are due at fixed times (R per second over all threads,
 *                          evenly spaced), sent on a free connection as soon as one is, and
 *                          latency runs from the time each was due, as wrk2 does: a server
 *                          that stalls is charged for the requests that queued behind it.
 *
 * A run is a warm-up (--warmup s: sent, checked, errors counted, not measured), then the
 * measured window (--duration s). A request belongs to the window whose send time (closed loop)
 * or due time (open loop) it falls in; every measured request's latency is recorded, even if
 * it completes after the window. Throughput is the answers that arrived within the window,
 * whenever their request was sent, divided by its length: the rate the server completed
 * requests at while the clients kept it busy. (Counting only answers to requests sent in the
 * window would undercount by about the mean latency over the window, and show nothing at all
 * for a server whose answers take longer than the window: layer 0 at 64 clients, where each
 * request opens a PostgreSQL connection.) After the window, no new request is sent; those in flight
 * (and, in open loop, those due but not yet sent) are awaited until --timeout, and any still
 * without an answer are "unfinished". `preload` and `verify` instead go over their keys once.
 *
 * Threads (--threads, default 2, never more than connections) each run their own event loop
 * over their share of the connections, their own random generator and their own histogram;
 * the histograms are merged at the end. Output: one line on stdout,
 *   RESULT rps=... requests=... mean=... p50=... p90=... p99=... p999=... max=... (us)
 *          bad_status=... bad_body=... socket=... unfinished=... warmup_requests=...
 *          warmup_errors=... elapsed=...
 * and the first failed checks, with why, on stderr. Exit status 1 if any request of the warm-up
 * or of the window failed or went unanswered, 2 on a usage error.
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <netdb.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "expect.h"
#include "histogram.h"
#include "http_conn.h"
#include "workload.h"
#include "xalloc.h"

#define ERRORS_SHOWN 3 /* failed checks printed per thread */

struct options {
    const char *host;            /* the server under test */
    int port;                    /* its port */
    enum workload_kind workload; /* what to send */
    uint64_t keys;               /* the data set: bench:1 .. bench:keys */
    size_t value_bytes;          /* the length of every value written */
    size_t expect_value_bytes;   /* the length reads must return (a test sets it wrong) */
    uint64_t verify_count;       /* verify: how many keys, evenly spaced (0: all) */
    int connections;             /* concurrent connections, over all threads */
    int threads;                 /* event loops */
    double warmup_s;             /* unmeasured seconds before the window */
    double duration_s;           /* the measured window */
    double rate;                 /* open loop: requests per second over all threads; 0: closed */
    double timeout_s;            /* longest wait for one answer */
    const char *header_name;     /* one extra request header (an API key), or NULL */
    const char *header_value;    /* its value */
};

struct counters {
    uint64_t requests;        /* measured requests answered (whatever the answer) */
    uint64_t in_window;       /* answers within the window (any send time): the throughput */
    uint64_t bad_status;      /* measured: a status other than 200 */
    uint64_t bad_body;        /* measured: 200 with a wrong body */
    uint64_t socket;          /* measured: no HTTP answer (connect, reset, timeout) */
    uint64_t unfinished;      /* measured, but not answered (or not sent) by the deadline */
    uint64_t warmup_requests; /* answered during the warm-up */
    uint64_t warmup_errors;   /* of those, failed (any of the three kinds) */
};

struct worker;

/* One connection and the request on it, if any. */
struct slot {
    struct worker *worker;  /* owner */
    struct http_conn *conn; /* kept alive across requests */
    struct request req;     /* what is in flight, for the check */
    uint64_t due_ns;        /* when it was due (open loop) or sent (closed loop) */
    bool busy;              /* a request is in flight */
};

struct worker {
    const struct options *opt; /* shared, read-only */
    int id;                    /* 0 .. threads - 1 */
    pthread_t thread;          /* runs worker_run */
    struct event_base *base;   /* this thread's loop */
    struct event *tick;        /* start, open-loop schedule and deadline timer */
    struct slot *slots;        /* this thread's connections */
    int nslots;                /* how many */
    int *free_slots;           /* stack of idle slot indexes */
    int nfree;                 /* its depth */
    struct rng rng;            /* this thread's key draws */
    const struct zipf *zipf;   /* shared, read-only; NULL unless the workload draws from it */
    struct histogram *latency; /* measured requests, microseconds */
    struct counters c;         /* this thread's counts */
    uint64_t start_ns;         /* when sending starts (the same for every thread) */
    uint64_t window_ns;        /* start of the measured window */
    uint64_t end_ns;           /* end of the window: nothing new is sent after it */
    uint64_t deadline_ns;      /* end + timeout: whatever is unanswered then is unfinished */
    double interval_ns;        /* open loop: between two due times of this thread */
    double offset_ns;          /* open loop: this thread's phase, so threads interleave */
    uint64_t next_due;         /* open loop: index of the next due request */
    uint64_t next_seq;         /* preload, verify: the next index this thread sends */
    uint64_t seq_length;       /* preload, verify: how many in all */
    bool started;              /* the start time has come */
    int errors_shown;          /* failed checks printed so far */
    char *request;             /* scratch: the request being formatted */
    size_t request_cap;        /* its size */
    char *value;               /* scratch: a value to write */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool is_sequence(const struct options *opt)
{
    return opt->workload == WORKLOAD_PRELOAD || opt->workload == WORKLOAD_VERIFY;
}

static void slot_send(struct slot *s, uint64_t due_ns, struct request req);

/* The due time of open-loop request k of this thread. */
static uint64_t due_time(const struct worker *w, uint64_t k)
{
    return w->start_ns + (uint64_t)(w->offset_ns + (double)k * w->interval_ns);
}

/* Sends whatever is due on the idle connections; returns false when this thread has nothing
 * left to send, ever. */
static bool worker_fill(struct worker *w, uint64_t now)
{
    const struct options *opt = w->opt;
    if (is_sequence(opt)) {
        while (w->nfree > 0 && w->next_seq < w->seq_length) {
            struct request req;
            if (!workload_sequence(opt->workload, opt->keys, opt->verify_count, w->next_seq, &req))
                break;
            w->next_seq += (uint64_t)opt->threads;
            slot_send(&w->slots[w->free_slots[--w->nfree]], now, req);
        }
        return w->next_seq < w->seq_length;
    }
    if (opt->rate <= 0) {
        while (w->nfree > 0 && now < w->end_ns) {
            struct request req = workload_next(opt->workload, opt->keys, w->zipf, &w->rng);
            slot_send(&w->slots[w->free_slots[--w->nfree]], now, req);
        }
        return now < w->end_ns;
    }
    while (w->nfree > 0) {
        uint64_t due = due_time(w, w->next_due);
        if (due > now || due >= w->end_ns)
            break;
        w->next_due++;
        struct request req = workload_next(opt->workload, opt->keys, w->zipf, &w->rng);
        slot_send(&w->slots[w->free_slots[--w->nfree]], due, req);
    }
    return due_time(w, w->next_due) < w->end_ns;
}

/* Arms the timer for the next thing this thread waits for. */
static void worker_arm(struct worker *w, uint64_t now)
{
    uint64_t at = w->deadline_ns;
    if (!w->started)
        at = w->start_ns;
    else if (w->opt->rate > 0 && !is_sequence(w->opt)) {
        uint64_t due = due_time(w, w->next_due);
        if (due < w->end_ns && w->nfree > 0 && due < at)
            at = due;
    }
    uint64_t wait = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(wait / 1000000000u), (suseconds_t)(wait % 1000000000u / 1000)};
    evtimer_add(w->tick, &tv);
}

/* Ends the loop when nothing is left to send and nothing is in flight. */
static void worker_step(struct worker *w)
{
    uint64_t now = now_ns();
    bool more = worker_fill(w, now);
    if (!more && w->nfree == w->nslots) {
        event_base_loopbreak(w->base);
        return;
    }
    worker_arm(w, now);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    uint64_t now = now_ns();
    if (!w->started) {
        w->started = true;
    } else if (!is_sequence(w->opt) && now >= w->deadline_ns) {
        /* Unanswered requests, and in open loop those due in the window but never sent. */
        w->c.unfinished += (uint64_t)(w->nslots - w->nfree);
        for (int i = 0; i < w->nslots; i++)
            w->slots[i].busy = false; /* a late answer, if libevent still delivers it, is ignored */
        if (w->opt->rate > 0) {
            while (due_time(w, w->next_due) < w->end_ns) {
                w->c.unfinished++;
                w->next_due++;
            }
        }
        event_base_loopbreak(w->base);
        return;
    }
    worker_step(w);
}

/* The request's method, its target written into `path`. */
static const char *request_target(const struct request *req, char *path, size_t size)
{
    switch (req->kind) {
    case REQUEST_READ_HIT:
        snprintf(path, size, "/read/bench:%" PRIu64, req->key);
        break;
    case REQUEST_READ_MISS:
        snprintf(path, size, "/read/miss:%" PRIu64, req->key);
        break;
    case REQUEST_PING:
        snprintf(path, size, "/ping");
        break;
    case REQUEST_WRITE:
        snprintf(path, size, "/write");
        return "POST";
    case REQUEST_TXN_WRITE:
        snprintf(path, size, "/write/transaction");
        return "POST";
    case REQUEST_TXN_READ:
        snprintf(path, size, "/read/transaction/bench-user:%" PRIu64, req->key);
        break;
    case REQUEST_SUMMARY:
        snprintf(path, size, "/users/bench-user:%" PRIu64 "/summary", req->key);
        break;
    }
    return "GET";
}

/* The request in a failure message: "GET /read/bench:7", "POST /write bench:7". */
static void describe(const struct request *req, char *out, size_t size)
{
    char path[64];
    const char *method = request_target(req, path, sizeof path);
    if (req->kind == REQUEST_WRITE)
        snprintf(out, size, "%s %s bench:%" PRIu64, method, path, req->key);
    else if (req->kind == REQUEST_TXN_WRITE)
        snprintf(out, size, "%s %s bench-user:%" PRIu64, method, path, req->key);
    else
        snprintf(out, size, "%s %s", method, path);
}

/* Counts one answered (or failed) request; `result` is EXPECT_OK or why not, `socket_error`
 * when no HTTP answer came at all. */
static void slot_finish(struct slot *s, bool socket_error, enum expect_result result,
                        const char *why, const char *body, size_t len)
{
    struct worker *w = s->worker;
    uint64_t now = now_ns();
    bool failed = socket_error || result != EXPECT_OK;
    if (failed && w->errors_shown < ERRORS_SHOWN) {
        char what[128];
        describe(&s->req, what, sizeof(what));
        fprintf(stderr, "loadgen: %s: %s%s%.*s\n", what, socket_error ? "no answer" : why,
                len ? "; body: " : "", len > 300 ? 300 : (int)len, body ? body : "");
        w->errors_shown++;
    }
    w->c.in_window += is_sequence(w->opt) || (now >= w->window_ns && now < w->end_ns);
    if (!is_sequence(w->opt) && s->due_ns < w->window_ns) {
        w->c.warmup_requests++;
        w->c.warmup_errors += failed;
    } else {
        w->c.requests++;
        histogram_record(w->latency, (now - s->due_ns) / 1000u);
        if (socket_error)
            w->c.socket++;
        else if (result == EXPECT_BAD_STATUS)
            w->c.bad_status++;
        else if (result == EXPECT_BAD_BODY)
            w->c.bad_body++;
    }
    s->busy = false;
    w->free_slots[w->nfree++] = (int)(s - w->slots);
}

/* http_conn calls this once per request: with the answer, or with status 0 when the
 * connection failed or timed out. */
static void on_reply(void *arg, int status, const char *body, size_t len)
{
    struct slot *s = arg;
    if (!s->busy)
        return; /* counted already (the deadline passed) */
    if (status == 0) {
        slot_finish(s, true, EXPECT_OK, "", NULL, 0);
    } else {
        char why[160];
        enum expect_result result = expect_reply(&s->req, s->worker->opt->expect_value_bytes,
                                                 status, body, len, why, sizeof(why));
        slot_finish(s, false, result, why, result == EXPECT_OK ? NULL : body,
                    result == EXPECT_OK ? 0 : len);
    }
    worker_step(s->worker);
}

/* Formats req as an HTTP/1.1 request into w->request; returns its length. */
static size_t format_request(struct worker *w, const struct request *req)
{
    const struct options *opt = w->opt;
    char path[64], head[160] = "";
    const char *method = request_target(req, path, sizeof path);
    const char *value = "", *tail = ""; /* a write's body is head, value, tail */
    if (req->kind == REQUEST_WRITE) {
        value_for_key(req->key, opt->value_bytes, w->value);
        value = w->value, tail = "\"}";
        snprintf(head, sizeof head, "{\"key\":\"bench:%" PRIu64 "\",\"value\":\"", req->key);
    } else if (req->kind == REQUEST_TXN_WRITE) {
        snprintf(head, sizeof head,
                 "{\"user_id\":\"bench-user:%" PRIu64
                 "\",\"amount\":12.34,\"transaction_type\":\"deposit\"}",
                 req->key);
    }
    size_t content = strlen(head) + strlen(value) + strlen(tail);
    size_t need = 256 + strlen(opt->host) + content +
                  (opt->header_name ? strlen(opt->header_name) + strlen(opt->header_value) : 0);
    if (need > w->request_cap) {
        w->request_cap = need;
        w->request = xrealloc(w->request, need);
    }
    int n = snprintf(w->request, w->request_cap, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path,
                     opt->host);
    if (opt->header_name)
        n += snprintf(w->request + n, w->request_cap - (size_t)n, "%s: %s\r\n", opt->header_name,
                      opt->header_value);
    if (strcmp(method, "POST") == 0)
        n += snprintf(w->request + n, w->request_cap - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", content);
    n += snprintf(w->request + n, w->request_cap - (size_t)n, "\r\n%s%s%s", head, value, tail);
    return (size_t)n;
}

static void slot_send(struct slot *s, uint64_t due_ns, struct request req)
{
    struct worker *w = s->worker;
    s->req = req;
    s->due_ns = due_ns;
    s->busy = true;
    size_t len = format_request(w, &req);
    if (http_conn_send(s->conn, w->request, len, on_reply, s) != 0)
        slot_finish(s, true, EXPECT_OK, "", NULL, 0); /* never: one request a slot at a time */
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

static void worker_init(struct worker *w, const struct options *opt, int id, int nslots,
                        const struct zipf *zipf, uint64_t start_ns, const struct addrinfo *server)
{
    *w = (struct worker){.opt = opt, .id = id, .nslots = nslots, .zipf = zipf};
    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    w->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (w->base == NULL) {
        fprintf(stderr, "loadgen: cannot create an event loop\n");
        exit(2);
    }
    w->tick = evtimer_new(w->base, on_tick, w);
    w->slots = xcalloc((size_t)nslots, sizeof(struct slot));
    w->free_slots = xcalloc((size_t)nslots, sizeof(int));
    for (int i = 0; i < nslots; i++) {
        w->slots[i].worker = w;
        w->slots[i].conn =
            http_conn_new(w->base, server->ai_addr, server->ai_addrlen, opt->timeout_s);
        w->free_slots[w->nfree++] = nslots - 1 - i;
    }
    rng_init(&w->rng, (uint64_t)start_ns ^ ((uint64_t)id * 7777 + 1));
    w->latency = histogram_create();
    w->start_ns = start_ns;
    w->window_ns = start_ns + (uint64_t)(opt->warmup_s * 1e9);
    w->end_ns = w->window_ns + (uint64_t)(opt->duration_s * 1e9);
    w->deadline_ns = w->end_ns + (uint64_t)(opt->timeout_s * 1e9);
    if (opt->rate > 0) {
        w->interval_ns = 1e9 * opt->threads / opt->rate;
        w->offset_ns = w->interval_ns * id / opt->threads;
    }
    w->next_seq = (uint64_t)id;
    w->seq_length = workload_sequence_length(opt->workload, opt->keys, opt->verify_count);
    w->value = xmalloc(opt->value_bytes + 1);
    worker_arm(w, now_ns());
}

static void worker_cleanup(struct worker *w)
{
    for (int i = 0; i < w->nslots; i++)
        http_conn_free(w->slots[i].conn);
    event_free(w->tick);
    event_base_free(w->base);
    histogram_free(w->latency);
    free(w->slots);
    free(w->free_slots);
    free(w->request);
    free(w->value);
}

static void usage(FILE *out)
{
    fputs("usage: loadgen --port P --workload W [options]\n"
          "  --workload W         read-hit read-zipf read-miss write mixed ping preload verify\n"
          "                       txn-write txn-read polyglot (layer 8)\n"
          "  --host H             default 127.0.0.1\n"
          "  --keys N             the data set, bench:1..N (default 10000)\n"
          "  --value-bytes B      length of the values written (default 100)\n"
          "  --expect-value-bytes B  length reads must return (default: --value-bytes)\n"
          "  --verify-count N     verify: keys read, evenly spaced (default 0: every key)\n"
          "  --connections N      concurrent connections (default 16)\n"
          "  --threads T          event loops (default 2, at most --connections)\n"
          "  --warmup S           unmeasured seconds first (default 0)\n"
          "  --duration S         measured seconds (default 3)\n"
          "  --rate R             open loop: R requests/s, latency from the due time\n"
          "  --timeout S          longest wait for an answer (default 10)\n"
          "  --header 'N: V'      one extra request header\n",
          out);
}

static bool parse_number(const char *text, double min, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || v < min)
        return false;
    *out = v;
    return true;
}

static bool parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longs[] = {
        {"host", 1, 0, 'h'},         {"port", 1, 0, 'p'},        {"workload", 1, 0, 'w'},
        {"keys", 1, 0, 'k'},         {"value-bytes", 1, 0, 'b'}, {"expect-value-bytes", 1, 0, 'e'},
        {"verify-count", 1, 0, 'v'}, {"connections", 1, 0, 'c'}, {"threads", 1, 0, 't'},
        {"warmup", 1, 0, 'W'},       {"duration", 1, 0, 'd'},    {"rate", 1, 0, 'r'},
        {"timeout", 1, 0, 'T'},      {"header", 1, 0, 'H'},      {0, 0, 0, 0},
    };
    double v, expect = -1, threads = 2;
    bool workload = false;
    int o;
    while ((o = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        const char *a = optarg;
        switch (o) {
        case 'h':
            opt->host = a;
            break;
        case 'w':
            if (!workload_parse(a, &opt->workload))
                return false;
            workload = true;
            break;
        case 'H': {
            char *colon = strchr(a, ':');
            if (colon == NULL)
                return false;
            opt->header_name = xstrndup(a, (size_t)(colon - a));
            opt->header_value = colon + 1 + strspn(colon + 1, " ");
            break;
        }
        default:
            if (o == '?' || !parse_number(a, 0, &v))
                return false;
            switch (o) {
            case 'p':
                opt->port = (int)v;
                break;
            case 'k':
                opt->keys = (uint64_t)v;
                break;
            case 'b':
                opt->value_bytes = (size_t)v;
                break;
            case 'e':
                expect = v;
                break;
            case 'v':
                opt->verify_count = (uint64_t)v;
                break;
            case 'c':
                opt->connections = (int)v;
                break;
            case 't':
                threads = v;
                break;
            case 'W':
                opt->warmup_s = v;
                break;
            case 'd':
                opt->duration_s = v;
                break;
            case 'r':
                opt->rate = v;
                break;
            case 'T':
                opt->timeout_s = v;
                break;
            }
        }
    }
    opt->expect_value_bytes = expect < 0 ? opt->value_bytes : (size_t)expect;
    opt->threads = (int)threads < 1 ? 1 : (int)threads;
    if (opt->threads > opt->connections)
        opt->threads = opt->connections;
    return workload && optind == argc && opt->port > 0 && opt->port < 65536 && opt->keys > 0 &&
           opt->connections > 0 && opt->connections <= 10000 && opt->timeout_s > 0 &&
           (opt->duration_s > 0 || is_sequence(opt)) && opt->value_bytes >= 1;
}

int main(int argc, char **argv)
{
    struct options opt = {.host = "127.0.0.1",
                          .keys = 10000,
                          .value_bytes = 100,
                          .connections = 16,
                          .duration_s = 3,
                          .timeout_s = 10};
    if (!parse_options(argc, argv, &opt)) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *server;
    char port[8];
    snprintf(port, sizeof port, "%d", opt.port);
    int gai = getaddrinfo(opt.host, port, &hints, &server);
    if (gai != 0) {
        fprintf(stderr, "loadgen: %s: %s\n", opt.host, gai_strerror(gai));
        return 2;
    }
    struct zipf *zipf = NULL;
    if (opt.workload == WORKLOAD_READ_ZIPF || opt.workload == WORKLOAD_MIXED)
        zipf = zipf_create(opt.keys, 0.99);
    if (is_sequence(&opt))
        opt.warmup_s = opt.duration_s = 0;

    /* Every thread starts at the same time, once all are set up. */
    uint64_t start_ns = now_ns() + 20000000u;
    struct worker *workers = xcalloc((size_t)opt.threads, sizeof(struct worker));
    for (int i = 0; i < opt.threads; i++) {
        int share = opt.connections / opt.threads + (i < opt.connections % opt.threads);
        worker_init(&workers[i], &opt, i, share, zipf, start_ns, server);
    }
    for (int i = 0; i < opt.threads; i++)
        pthread_create(&workers[i].thread, NULL, worker_run, &workers[i]);

    struct histogram *latency = histogram_create();
    struct counters c = {0};
    for (int i = 0; i < opt.threads; i++) {
        struct worker *w = &workers[i];
        pthread_join(w->thread, NULL);
        histogram_merge(latency, w->latency);
        c.requests += w->c.requests;
        c.in_window += w->c.in_window;
        c.bad_status += w->c.bad_status;
        c.bad_body += w->c.bad_body;
        c.socket += w->c.socket;
        c.unfinished += w->c.unfinished;
        c.warmup_requests += w->c.warmup_requests;
        c.warmup_errors += w->c.warmup_errors;
    }
    double elapsed = (double)(now_ns() - start_ns) / 1e9;
    double window = is_sequence(&opt) ? elapsed : opt.duration_s;
    printf("RESULT workload=%s connections=%d threads=%d rate=%g rps=%.1f requests=%" PRIu64
           " mean=%.0f p50=%" PRIu64 " p90=%" PRIu64 " p99=%" PRIu64 " p999=%" PRIu64
           " max=%" PRIu64 " bad_status=%" PRIu64 " bad_body=%" PRIu64 " socket=%" PRIu64
           " unfinished=%" PRIu64 " warmup_requests=%" PRIu64 " warmup_errors=%" PRIu64
           " elapsed=%.2f\n",
           workload_name(opt.workload), opt.connections, opt.threads, opt.rate,
           (double)c.in_window / window, c.requests, histogram_mean(latency),
           histogram_percentile(latency, 50), histogram_percentile(latency, 90),
           histogram_percentile(latency, 99), histogram_percentile(latency, 99.9),
           histogram_max(latency), c.bad_status, c.bad_body, c.socket, c.unfinished,
           c.warmup_requests, c.warmup_errors, elapsed);
    fflush(stdout);

    for (int i = 0; i < opt.threads; i++)
        worker_cleanup(&workers[i]);
    free(workers);
    histogram_free(latency);
    zipf_free(zipf);
    freeaddrinfo(server);
    bool failed = c.bad_status || c.bad_body || c.socket || c.unfinished || c.warmup_errors;
    return failed ? 1 : 0;
}
