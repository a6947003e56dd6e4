/*
 * edge: shedding, keys, rate limits, deadlines and breakers in front of the handlers, and the
 * per-request JSON log line (edge.h).
 */
#include "edge.h"

#include "breaker.h"
#include "clock.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "rate_limit.h"
#include "server.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BREAKERS 16 /* shards and Redis servers shown */
#define LAG_TICK_MS  50 /* how often the event loop's lag is measured */

/* What became of requests, counted for /stats and /metrics. */
#define EDGE_OUTCOMES(X)                                                                           \
    X(ALLOWED, "allowed")                                                                          \
    X(RATE_LIMITED, "rate_limited")                                                                \
    X(UNAUTHORIZED, "unauthorized")                                                                \
    X(FORBIDDEN, "forbidden")                                                                      \
    X(SHED, "shed")                                                                                \
    X(DEADLINE, "deadline")                                                                        \
    X(BREAKER_OPEN, "breaker_open")

enum edge_outcome {
#define X(id, name) OUTCOME_##id,
    EDGE_OUTCOMES(X)
#undef X
        OUTCOME_COUNT
};

static const char *const outcome_names[] = {
#define X(id, name) name,
    EDGE_OUTCOMES(X)
#undef X
};

struct edge {
    struct server *server;                      /* loop, HTTP, metrics */
    struct edge_settings s;                     /* the limits */
    struct api_keys *keys;                      /* who may call */
    struct rate_limiter *limiter;               /* how often */
    struct breaker *breakers[MAX_BREAKERS];     /* shown in /stats, /health, /metrics */
    int breaker_count;                          /* entries used */
    struct event *lag_timer;                    /* measures the event loop's lag */
    long long last_tick_ms;                     /* when it last ran */
    long lag_ms;                                /* how late it ran, last time */
    unsigned long long outcomes[OUTCOME_COUNT]; /* requests by outcome */
};

/* ---- the event loop's lag ---- */

static void on_lag_tick(evutil_socket_t fd, short what, void *arg)
{
    struct edge *edge = arg;
    (void)fd, (void)what;
    long long now = monotonic_ms();
    long lag = (long)(now - edge->last_tick_ms - LAG_TICK_MS);
    edge->lag_ms = lag > 0 ? lag : 0;
    edge->last_tick_ms = now;
}

static long lag_at(const struct edge *edge, long long now_ms)
{
    /* A loop blocked right now has not run the tick: count the time since it was due. */
    long overdue = (long)(now_ms - edge->last_tick_ms - LAG_TICK_MS);
    return overdue > edge->lag_ms ? overdue : edge->lag_ms;
}

long edge_loop_lag_ms(const struct edge *edge)
{
    return lag_at(edge, monotonic_ms());
}

/* ---- metrics ---- */

static void render_gauges(struct evbuffer *out, void *arg)
{
    struct edge *edge = arg;
    evbuffer_add_printf(out, "# HELP l10_requests_total API requests by what the protections "
                             "decided.\n# TYPE l10_requests_total counter\n");
    for (int i = 0; i < OUTCOME_COUNT; i++)
        evbuffer_add_printf(out, "l10_requests_total{outcome=\"%s\"} %llu\n", outcome_names[i],
                            edge->outcomes[i]);
    evbuffer_add_printf(out, "# HELP l10_breaker_state Circuit breaker state: 0 closed, 1 open, "
                             "2 half-open.\n# TYPE l10_breaker_state gauge\n");
    for (int i = 0; i < edge->breaker_count; i++)
        evbuffer_add_printf(out, "l10_breaker_state{backend=\"%s\"} %d\n",
                            breaker_name(edge->breakers[i]), (int)breaker_state(edge->breakers[i]));
    evbuffer_add_printf(out, "# HELP l10_breaker_transitions_total Circuit breaker transitions "
                             "by the state entered.\n# TYPE l10_breaker_transitions_total "
                             "counter\n");
    for (int i = 0; i < edge->breaker_count; i++)
        for (int st = BREAKER_CLOSED; st <= BREAKER_HALF_OPEN; st++)
            evbuffer_add_printf(out,
                                "l10_breaker_transitions_total{backend=\"%s\",to=\"%s\"} "
                                "%llu\n",
                                breaker_name(edge->breakers[i]),
                                breaker_state_name((enum breaker_state)st),
                                breaker_transitions(edge->breakers[i], (enum breaker_state)st));
    if (edge->limiter != NULL) {
        evbuffer_add_printf(out,
                            "# HELP l10_rate_limit_decisions_total Rate limit checks, "
                            "decided in Redis (shared) or by this instance alone.\n"
                            "# TYPE l10_rate_limit_decisions_total counter\n"
                            "l10_rate_limit_decisions_total{where=\"redis\"} %llu\n"
                            "l10_rate_limit_decisions_total{where=\"local\"} %llu\n"
                            "# HELP l10_rate_limit_settles_total Script calls to the rate "
                            "limiter's Redis (each takes a slice of a key's budget).\n"
                            "# TYPE l10_rate_limit_settles_total counter\n"
                            "l10_rate_limit_settles_total %llu\n"
                            "# HELP l10_rate_limit_waits_total Requests that waited for a "
                            "round trip to the rate limiter's Redis (no slice held for them).\n"
                            "# TYPE l10_rate_limit_waits_total counter\n"
                            "l10_rate_limit_waits_total %llu\n",
                            rate_limiter_decisions(edge->limiter, true),
                            rate_limiter_decisions(edge->limiter, false),
                            rate_limiter_settles(edge->limiter), rate_limiter_waits(edge->limiter));
    }
    evbuffer_add_printf(out,
                        "# HELP l10_event_loop_lag_ms How late the event loop ran a timer, "
                        "last time.\n# TYPE l10_event_loop_lag_ms gauge\n"
                        "l10_event_loop_lag_ms %ld\n",
                        edge->lag_ms);
}

/* ---- life cycle ---- */

struct edge *edge_create(struct server *server, const struct edge_settings *settings,
                         struct api_keys *keys, struct rate_limiter *limiter)
{
    struct edge *edge = xcalloc(1, sizeof *edge);
    edge->server = server;
    edge->s = *settings;
    edge->keys = keys;
    edge->limiter = limiter;
    edge->lag_timer = event_new(server_base(server), -1, EV_PERSIST, on_lag_tick, edge);
    struct timeval tick = {0, LAG_TICK_MS * 1000};
    event_add(edge->lag_timer, &tick);
    edge->last_tick_ms = monotonic_ms();
    metrics_add_gauges(server_metrics(server), render_gauges, edge);
    return edge;
}

void edge_free(struct edge *edge)
{
    if (edge == NULL)
        return;
    event_free(edge->lag_timer);
    free(edge);
}

void edge_add_breaker(struct edge *edge, struct breaker *breaker)
{
    if (edge->breaker_count < MAX_BREAKERS)
        edge->breakers[edge->breaker_count++] = breaker;
}

/* ---- replies and the log line ---- */

bool edge_logs_requests(void)
{
    return LOG_LEVEL_INFO >= log_threshold;
}

static void log_line(struct edge_call *call, int status)
{
    if (!edge_logs_requests())
        return;
    char shard[24] = "null";
    if (call->shard >= 0)
        snprintf(shard, sizeof shard, "\"shard%d\"", call->shard + 1);
    char key[API_KEY_ID_LEN + 3] = "null";
    if (call->key_id[0])
        snprintf(key, sizeof key, "\"%s\"", call->key_id);
    json_t *rid = json_string(call->request_id); /* the client may have chosen it: escaped */
    char *rid_text = json_dumps(rid, JSON_ENCODE_ANY);
    json_decref(rid);
    RLOG_INFO(call->request_id,
              "{\"request_id\":%s,\"key\":%s,\"route\":\"%s\",\"status\":%d,"
              "\"latency_ms\":%lld,\"shard\":%s,\"cache_level\":%s%s%s}",
              rid_text ? rid_text : "null", key, call->route, status,
              monotonic_ms() - call->started_ms, shard, call->cache_level ? "\"" : "",
              call->cache_level ? call->cache_level : "null", call->cache_level ? "\"" : "");
    free(rid_text);
}

void edge_replied(struct edge_call *call, int status)
{
    log_line(call, status);
    free(call);
}

void edge_reply_json(struct edge_call *call, int status, json_t *body)
{
    http_reply_json(call->req, status, body);
    edge_replied(call, status);
}

void edge_reply_buffer(struct edge_call *call, int status, struct evbuffer *body)
{
    http_reply_buffer(call->req, status, "application/json", body);
    edge_replied(call, status);
}

void edge_reply_error(struct edge_call *call, int status, const char *detail)
{
    http_reply_error(call->req, status, detail);
    edge_replied(call, status);
}

void edge_reply_failure(struct edge_call *call, enum pg_status status)
{
    switch (status) {
    case PG_BUSY:
        edge_reply_error(call, 503, "Too many requests waiting for a database connection");
        return;
    case PG_UNAVAILABLE:
        edge_reply_error(call, 503, "Database unavailable");
        return;
    case PG_OK:
    case PG_ERROR:
        break;
    }
    edge_reply_error(call, 500, "Internal error");
}

static void set_retry_after(struct http_request *req, long seconds)
{
    char text[24];
    snprintf(text, sizeof text, "%ld", seconds < 1 ? 1 : seconds);
    http_request_set_header(req, "Retry-After", text);
}

void edge_reply_refused(struct edge_call *call, enum edge_refusal why, struct breaker *breaker,
                        const char *what)
{
    char detail[96];
    snprintf(detail, sizeof detail, "%s unavailable", what);
    if (why == EDGE_BREAKER_OPEN) {
        call->edge->outcomes[OUTCOME_BREAKER_OPEN]++;
        set_retry_after(call->req, breaker_retry_after_s(breaker, monotonic_ms()));
    } else {
        call->edge->outcomes[OUTCOME_DEADLINE]++;
        set_retry_after(call->req, 1);
    }
    edge_reply_error(call, 503, detail);
}

/* ---- deadlines and breakers around a query ---- */

/* A query guarded by a breaker: records its outcome, then tells the caller. */
struct guarded {
    struct pg_call inner;          /* the caller's call */
    struct breaker *breaker;       /* told the outcome, once */
    struct event *timer;           /* edge_guard_pg_write's deadline, or NULL */
    void (*on_expired)(void *arg); /* told when it passes */
    bool expired;                  /* it passed: the breaker has been told */
};

static void on_guarded(PGresult *res, enum pg_status status, void *arg)
{
    struct guarded *g = arg;
    if (g->breaker != NULL && !g->expired)
        breaker_record(g->breaker, status == PG_OK || status == PG_ERROR, monotonic_ms());
    if (g->timer != NULL)
        event_free(g->timer);
    g->inner.cb(res, status, g->inner.arg);
    free(g);
}

static void on_write_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct guarded *g = arg;
    (void)fd, (void)what;
    g->expired = true;
    if (g->breaker != NULL)
        breaker_record(g->breaker, false, monotonic_ms());
    g->on_expired(g->inner.arg);
}

long edge_remaining_ms(const struct edge_call *call)
{
    return (long)(call->deadline_ms - monotonic_ms());
}

static enum edge_refusal guard(struct edge_call *call, struct breaker *breaker,
                               const struct pg_call *inner, struct guarded **out)
{
    if (edge_remaining_ms(call) <= 0)
        return EDGE_BUDGET_SPENT;
    if (breaker != NULL && !breaker_allow(breaker, monotonic_ms()))
        return EDGE_BREAKER_OPEN;
    struct guarded *g = xcalloc(1, sizeof *g);
    g->inner = *inner;
    g->breaker = breaker;
    *out = g;
    return EDGE_GO;
}

enum edge_refusal edge_guard_pg(struct edge_call *call, struct breaker *breaker,
                                const struct pg_call *inner, struct pg_call *out)
{
    struct guarded *g;
    enum edge_refusal why = guard(call, breaker, inner, &g);
    if (why != EDGE_GO)
        return why;
    struct pg_call recorded = *inner;
    recorded.cb = on_guarded;
    recorded.arg = g;
    *out = pg_call_within(server_base(call->edge->server), &recorded, edge_remaining_ms(call));
    return EDGE_GO;
}

enum edge_refusal edge_guard_pg_write(struct edge_call *call, struct breaker *breaker,
                                      const struct pg_call *inner, void (*on_expired)(void *arg),
                                      struct pg_call *out)
{
    struct guarded *g;
    enum edge_refusal why = guard(call, breaker, inner, &g);
    if (why != EDGE_GO)
        return why;
    long left = edge_remaining_ms(call);
    g->on_expired = on_expired;
    g->timer = evtimer_new(server_base(call->edge->server), on_write_deadline, g);
    struct timeval t = {left / 1000, (left % 1000) * 1000};
    event_add(g->timer, &t);
    *out = *inner;
    out->cb = on_guarded;
    out->arg = g;
    return EDGE_GO;
}

/* ---- admission ---- */

const char *edge_decimal(long long n, char buf[EDGE_DECIMAL_LEN])
{
    char *p = buf + EDGE_DECIMAL_LEN - 1;
    *p = '\0';
    unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (n < 0)
        *--p = '-';
    return p;
}

static void set_rate_headers(struct http_request *req, const struct rate_decision *d)
{
    char text[EDGE_DECIMAL_LEN];
    http_request_set_header(req, "X-RateLimit-Limit", edge_decimal(d->limit, text));
    http_request_set_header(req, "X-RateLimit-Remaining", edge_decimal(d->remaining, text));
    http_request_set_header(req, "X-RateLimit-Reset",
                            edge_decimal((d->reset_ms + 999) / 1000, text));
}

static void run(struct edge_call *call)
{
    if (edge_remaining_ms(call) <= 0) {
        edge_reply_refused(call, EDGE_BUDGET_SPENT, NULL, "Service");
        return;
    }
    call->edge->outcomes[OUTCOME_ALLOWED]++;
    call->handler(call);
}

static void on_decision(const struct rate_decision *d, void *arg)
{
    struct edge_call *call = arg;
    set_rate_headers(call->req, d);
    if (!d->allowed) {
        call->edge->outcomes[OUTCOME_RATE_LIMITED]++;
        set_retry_after(call->req, (long)((d->retry_ms + 999) / 1000));
        edge_reply_error(call, 429, "Rate limit exceeded");
        return;
    }
    run(call);
}

static bool overloaded(struct edge *edge, long long now_ms)
{
    return http_server_in_flight(server_http(edge->server)) > (size_t)edge->s.max_in_flight ||
           lag_at(edge, now_ms) > edge->s.max_loop_lag_ms;
}

void edge_admit(struct edge *edge, struct http_request *req, const char *route, unsigned scope,
                edge_handler_fn handler, void *arg)
{
    struct edge_call *call = xcalloc(1, sizeof *call);
    call->req = req;
    call->edge = edge;
    call->arg = arg;
    call->handler = handler;
    call->route = route;
    call->started_ms = monotonic_ms();
    call->deadline_ms = call->started_ms + edge->s.request_timeout_ms;
    call->shard = -1;
    const char *rid = http_request_id(req); /* copied, truncated as snprintf would */
    memcpy(call->request_id, rid, strnlen(rid, sizeof call->request_id - 1));
    if (!edge->s.protections) {
        run(call);
        return;
    }
    if (overloaded(edge, call->started_ms)) { /* the arrival's clock read, not another */
        edge->outcomes[OUTCOME_SHED]++;
        set_retry_after(req, 1);
        edge_reply_error(call, 503, "Server overloaded");
        return;
    }
    switch (
        api_keys_check(edge->keys, http_request_header(req, "X-API-Key"), scope, call->key_id)) {
    case API_KEY_OK:
        break;
    case API_KEY_MISSING:
    case API_KEY_UNKNOWN:
        edge->outcomes[OUTCOME_UNAUTHORIZED]++;
        http_request_set_header(req, "WWW-Authenticate", "ApiKey header=\"X-API-Key\"");
        edge_reply_error(call, 401, "Invalid or missing API key");
        return;
    case API_KEY_FORBIDDEN:
        edge->outcomes[OUTCOME_FORBIDDEN]++;
        edge_reply_error(call, 403, "This API key lacks the scope for this route");
        return;
    }
    if (!edge->s.rate_limit) {
        run(call);
        return;
    }
    rate_limiter_check(edge->limiter, call->key_id, on_decision, call);
}

/* ---- numbers ---- */

json_t *edge_outcomes_json(const struct edge *edge)
{
    json_t *o = json_object();
    for (int i = 0; i < OUTCOME_COUNT; i++)
        json_object_set_new(o, outcome_names[i], json_integer((json_int_t)edge->outcomes[i]));
    return o;
}

json_t *edge_breakers_json(const struct edge *edge)
{
    json_t *o = json_object();
    for (int i = 0; i < edge->breaker_count; i++)
        json_object_set_new(o, breaker_name(edge->breakers[i]),
                            json_string(breaker_state_name(breaker_state(edge->breakers[i]))));
    return o;
}
