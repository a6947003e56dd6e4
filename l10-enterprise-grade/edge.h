/*
 * edge: the protections every API request passes before a handler runs, in this order:
 *
 *   request -> shed?      in flight > MAX_IN_FLIGHT or event-loop lag > MAX_LOOP_LAG_MS: 503
 *           -> key?       X-API-Key missing or unknown: 401; without the route's scope: 403
 *           -> budget?    the key's rate limit (rate_limit.h): 429 + Retry-After
 *           -> handler    with a deadline: REQUEST_TIMEOUT_MS from arrival; each backend call
 *                         gets what is left (edge_guard_pg), behind its circuit breaker
 *
 * Shedding comes first because it is the cheapest and protects everything after it; the key
 * before the budget because budgets are per key (a header the client chooses, such as
 * X-Client-ID, could reset it). Every reply of an admitted request carries X-RateLimit-Limit,
 * -Remaining and -Reset, and goes through edge_reply_*, which writes one structured JSON log
 * line (request id, key id - never the key -, route, status, latency, shard, cache level).
 *
 * An admitted request is an edge_call: the handler gets it, keeps it in its flow, and answers
 * it exactly once with edge_reply_* (or edge_replied when a core helper such as
 * validate_write_body answered the request itself); that frees it.
 */
#ifndef L10_EDGE_H
#define L10_EDGE_H

#include "api_keys.h"
#include "pgconn.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct api_keys;
struct breaker;
struct evbuffer;
struct edge;
struct http_request;
struct rate_limiter;
struct server;

struct edge_settings {
    long request_timeout_ms; /* REQUEST_TIMEOUT_MS: each request's whole budget */
    long max_in_flight;      /* MAX_IN_FLIGHT: more requests at once are shed */
    long max_loop_lag_ms;    /* MAX_LOOP_LAG_MS: a later event loop sheds new requests */
    bool protections;        /* PROTECTIONS=on (off: no key, no limit, no shedding; benchmarks) */
    bool rate_limit;         /* false for PROTECTIONS=no-rate-limit (its cost, measured apart) */
};

struct edge_call;
typedef void (*edge_handler_fn)(struct edge_call *call);

/* One admitted request (see above). */
struct edge_call {
    struct http_request *req;          /* answered once, through edge_reply_* */
    struct edge *edge;                 /* the gate it came through */
    void *arg;                         /* the route's argument (the layer) */
    edge_handler_fn handler;           /* runs once the request is admitted */
    const char *route;                 /* "/read/{key}", for the log line */
    long long started_ms, deadline_ms; /* arrival, and arrival + REQUEST_TIMEOUT_MS */
    char key_id[API_KEY_ID_LEN + 1];   /* the caller's key id ("" when protections are off) */
    char request_id[72];               /* a copy, for the log line after the reply */
    int shard;                         /* the shard it used (0-based), or -1 */
    const char *cache_level;           /* "L1", "L2", "L3" or NULL */
};

struct edge *edge_create(struct server *server, const struct edge_settings *settings,
                         struct api_keys *keys, struct rate_limiter *limiter);
/* NULL is a no-op. Does not free the keys or the limiter. */
void edge_free(struct edge *edge);

/* Shows the breaker in /stats, /health and /metrics (edge_breakers_json, the gauges). */
void edge_add_breaker(struct edge *edge, struct breaker *breaker);

/* Runs the request through the protections and then handler (now or later), or answers it. */
void edge_admit(struct edge *edge, struct http_request *req, const char *route, unsigned scope,
                edge_handler_fn handler, void *arg);

/* Milliseconds left of the request's budget (<= 0: spent). */
long edge_remaining_ms(const struct edge_call *call);

/* Why a backend call was not made. */
enum edge_refusal {
    EDGE_GO,           /* *out is the call to make */
    EDGE_BREAKER_OPEN, /* the backend's breaker refuses */
    EDGE_BUDGET_SPENT, /* no time left */
};

/*
 * Guards one query: refused when the breaker is open or the budget is spent; otherwise *out is
 * `inner` with a deadline of what is left of the budget (a timeout is PG_UNAVAILABLE) and its
 * outcome recorded in the breaker (breaker may be NULL when protections are off).
 */
enum edge_refusal edge_guard_pg(struct edge_call *call, struct breaker *breaker,
                                const struct pg_call *inner, struct pg_call *out)
    __attribute__((warn_unused_result));

/*
 * The same for a write, whose outcome matters after its deadline: when the budget runs out,
 * on_expired(inner's arg) is called (the caller answers 503 then), and inner's callback is still
 * called once with the real answer when it comes (the caller then invalidates caches for a write
 * that did commit). inner's parameters must stay valid until that callback.
 */
enum edge_refusal edge_guard_pg_write(struct edge_call *call, struct breaker *breaker,
                                      const struct pg_call *inner, void (*on_expired)(void *arg),
                                      struct pg_call *out) __attribute__((warn_unused_result));

/* Answers a refused call: 503 "<what> unavailable" with Retry-After. */
void edge_reply_refused(struct edge_call *call, enum edge_refusal why, struct breaker *breaker,
                        const char *what);

void edge_reply_json(struct edge_call *call, int status, json_t *body);
void edge_reply_buffer(struct edge_call *call, int status, struct evbuffer *body);
void edge_reply_error(struct edge_call *call, int status, const char *detail);
/* A database failure as records_reply_failure answers it. */
void edge_reply_failure(struct edge_call *call, enum pg_status status);
/* The request was answered by someone else (a 422 from validate_*): logs and frees call. */
void edge_replied(struct edge_call *call, int status);
#define EDGE_DECIMAL_LEN 24 /* a long long in decimal, its sign and the NUL */
/* n in decimal, written backwards into buf; returns where it starts. For what every reply
 * carries (X-RateLimit-*, an L1 hit's latency), where snprintf's format parsing cost more than
 * the digits themselves. */
const char *edge_decimal(long long n, char buf[EDGE_DECIMAL_LEN]);

/* Whether replies write the per-request log line (LOG_LEVEL info or debug): fields only it
 * shows (an L1 hit's shard) need not be worked out otherwise. */
bool edge_logs_requests(void);

/* {"allowed":n,"rate_limited":n,"unauthorized":n,"forbidden":n,"shed":n,"deadline":n} */
json_t *edge_outcomes_json(const struct edge *edge);
/* {"shard1":"closed",...} for every breaker added. */
json_t *edge_breakers_json(const struct edge *edge);
/* Whether the event loop keeps up (lag under the limit). */
long edge_loop_lag_ms(const struct edge *edge);

#endif
