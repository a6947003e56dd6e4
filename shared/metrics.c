/*
 * metrics: Prometheus counters and latency histograms (see metrics.h).
 */
#include "metrics.h"

#include "xalloc.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES        32
#define MAX_GAUGE_SOURCES 8

/* Status codes get their own series; anything else is counted as "other". */
static const int tracked_statuses[] = {200, 400, 401, 404, 405, 408, 413, 422, 429, 500, 503};
#define STATUS_SLOTS (sizeof tracked_statuses / sizeof tracked_statuses[0] + 1)

static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
#define BUCKETS (sizeof bucket_bounds / sizeof bucket_bounds[0])

struct histogram {
    uint64_t buckets[BUCKETS]; /* non-cumulative counts; summed when rendered */
    uint64_t count;            /* observations, including those above the last bound */
    double sum;                /* seconds */
};

struct route_label {
    char method[8]; /* "GET" */
    char path[64];  /* "/read/{key}" */
};

struct gauge_source {
    metrics_gauge_fn fn; /* prints the lines */
    void *arg;           /* its context */
};

struct metrics {
    unsigned modules;                          /* which counter modules to show */
    uint64_t counters[METRIC_COUNTER_COUNT];   /* updated atomically */
    struct route_label routes[MAX_ROUTES + 1]; /* last slot: requests that matched no route */
    int route_count;                           /* registered routes */
    struct histogram latency[MAX_ROUTES + 1][STATUS_SLOTS]; /* event-loop thread only */
    struct gauge_source gauges[MAX_GAUGE_SOURCES];          /* extra gauge printers */
    int gauge_count;                                        /* used entries of gauges */
};

static const struct {
    unsigned module;
    const char *name;
    const char *help;
} counter_info[] = {
#define METRIC_INFO(id, module, name, help) {module, name, help},
    METRIC_COUNTERS(METRIC_INFO)
#undef METRIC_INFO
};

struct metrics *metrics_create(unsigned modules)
{
    struct metrics *m = xcalloc(1, sizeof *m);
    m->modules = modules;
    strcpy(m->routes[MAX_ROUTES].method, "*");
    strcpy(m->routes[MAX_ROUTES].path, "unmatched");
    return m;
}

void metrics_free(struct metrics *m)
{
    free(m);
}

void metrics_add(struct metrics *m, enum metric_counter counter, uint64_t amount)
{
    if (m != NULL)
        __atomic_fetch_add(&m->counters[counter], amount, __ATOMIC_RELAXED);
}

uint64_t metrics_get(const struct metrics *m, enum metric_counter counter)
{
    return m ? __atomic_load_n(&m->counters[counter], __ATOMIC_RELAXED) : 0;
}

int metrics_route_register(struct metrics *m, const char *method, const char *route)
{
    if (m == NULL || m->route_count == MAX_ROUTES)
        return -1;
    struct route_label *label = &m->routes[m->route_count];
    snprintf(label->method, sizeof label->method, "%s", method);
    snprintf(label->path, sizeof label->path, "%s", route);
    return m->route_count++;
}

static size_t status_slot(int status)
{
    for (size_t i = 0; i < STATUS_SLOTS - 1; i++)
        if (tracked_statuses[i] == status)
            return i;
    return STATUS_SLOTS - 1;
}

void metrics_observe(struct metrics *m, int route, int status, double seconds)
{
    if (m == NULL)
        return;
    if (route < 0 || route >= m->route_count)
        route = MAX_ROUTES;
    struct histogram *h = &m->latency[route][status_slot(status)];
    size_t b = 0;
    while (b < BUCKETS && seconds > bucket_bounds[b])
        b++;
    if (b < BUCKETS)
        h->buckets[b]++;
    h->count++;
    h->sum += seconds;
}

void metrics_add_gauges(struct metrics *m, metrics_gauge_fn fn, void *arg)
{
    if (m != NULL && m->gauge_count < MAX_GAUGE_SOURCES)
        m->gauges[m->gauge_count++] = (struct gauge_source){fn, arg};
}

static void status_label(size_t slot, char *out, size_t outlen)
{
    if (slot == STATUS_SLOTS - 1)
        snprintf(out, outlen, "other");
    else
        snprintf(out, outlen, "%d", tracked_statuses[slot]);
}

static void render_requests(struct metrics *m, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP http_requests_total Requests answered, by route and status.\n"
                             "# TYPE http_requests_total counter\n");
    for (int r = 0; r <= MAX_ROUTES; r++) {
        for (size_t s = 0; s < STATUS_SLOTS; s++) {
            const struct histogram *h = &m->latency[r][s];
            if (h->count == 0)
                continue;
            char status[8];
            status_label(s, status, sizeof status);
            evbuffer_add_printf(out,
                                "http_requests_total{method=\"%s\",route=\"%s\",status=\"%s\"} "
                                "%llu\n",
                                m->routes[r].method, m->routes[r].path, status,
                                (unsigned long long)h->count);
        }
    }
    evbuffer_add_printf(out, "# HELP http_request_duration_seconds Time from request to reply.\n"
                             "# TYPE http_request_duration_seconds histogram\n");
    for (int r = 0; r <= MAX_ROUTES; r++) {
        for (size_t s = 0; s < STATUS_SLOTS; s++) {
            const struct histogram *h = &m->latency[r][s];
            if (h->count == 0)
                continue;
            char labels[160], status[8];
            status_label(s, status, sizeof status);
            snprintf(labels, sizeof labels, "method=\"%s\",route=\"%s\",status=\"%s\"",
                     m->routes[r].method, m->routes[r].path, status);
            uint64_t cumulative = 0;
            for (size_t b = 0; b < BUCKETS; b++) {
                cumulative += h->buckets[b];
                evbuffer_add_printf(out,
                                    "http_request_duration_seconds_bucket{%s,le=\"%g\"} %llu\n",
                                    labels, bucket_bounds[b], (unsigned long long)cumulative);
            }
            evbuffer_add_printf(out,
                                "http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n"
                                "http_request_duration_seconds_sum{%s} %.6f\n"
                                "http_request_duration_seconds_count{%s} %llu\n",
                                labels, (unsigned long long)h->count, labels, h->sum, labels,
                                (unsigned long long)h->count);
        }
    }
}

void metrics_render(struct metrics *m, struct evbuffer *out)
{
    render_requests(m, out);
    for (int i = 0; i < METRIC_COUNTER_COUNT; i++) {
        if (!(counter_info[i].module & m->modules))
            continue;
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counter_info[i].name,
                            counter_info[i].help, counter_info[i].name, counter_info[i].name,
                            (unsigned long long)metrics_get(m, (enum metric_counter)i));
    }
    for (int i = 0; i < m->gauge_count; i++)
        m->gauges[i].fn(out, m->gauges[i].arg);
}
