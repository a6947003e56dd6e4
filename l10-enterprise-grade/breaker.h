/*
 * breaker: a circuit breaker, one per backend (each shard, each Redis).
 *
 * A backend that is down or slow makes every request that uses it wait for a connect or query
 * timeout; under load those waits pile up and take the whole server with them. The breaker
 * watches each call's outcome and, when too many fail, stops calling for a while:
 *
 *   CLOSED    --(failures >= FAILURE_PERCENT of at least MIN_CALLS within WINDOW)--> OPEN
 *   OPEN      --(OPEN_MS passed: the next call is let through as the one probe)----> HALF_OPEN
 *             (a health probe that sees the backend answer ends OPEN_MS early)
 *   HALF_OPEN --(the probe succeeds)--> CLOSED        --(the probe fails)--> OPEN
 *
 * While open (and while the probe is out) calls are refused at once: the caller answers 503
 * with Retry-After (a shard) or carries on without the backend (a cache, the rate limiter's
 * Redis). The window is a ring of ten buckets, so old outcomes age out without a timer. Pure
 * logic: time is passed in, so every transition is unit-tested without a socket.
 *
 * Every allowed call must be followed by exactly one breaker_record (its outcome). A late
 * outcome of a call allowed while closed, arriving after the breaker opened, is ignored; one
 * arriving during half-open is taken as the probe's (a small imprecision, never a stuck state).
 */
#ifndef L10_BREAKER_H
#define L10_BREAKER_H

#include <stdbool.h>

struct breaker;

struct breaker_settings {
    long window_ms;       /* outcomes older than this are forgotten */
    long min_calls;       /* fewer calls in the window never open the breaker */
    long failure_percent; /* open at this share of failures (1-100) */
    long open_ms;         /* how long an open breaker refuses before it probes */
};

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct breaker *breaker_create(const char *name, const struct breaker_settings *settings);
/* NULL is a no-op. */
void breaker_free(struct breaker *breaker);

/* May a call go to the backend now? In OPEN after open_ms this moves to HALF_OPEN and lets
 * this one call through as the probe. */
bool breaker_allow(struct breaker *breaker, long long now_ms) __attribute__((warn_unused_result));

/* The outcome of a call breaker_allow let through. */
void breaker_record(struct breaker *breaker, bool success, long long now_ms);

/*
 * A health probe outside the request path (a SELECT 1 sent while the breaker is open) saw the
 * backend answer: the open time ends now, so the next call is the half-open probe at once
 * instead of after the rest of open_ms. Only a real call closes the breaker. No-op unless open.
 */
void breaker_backend_answered(struct breaker *breaker, long long now_ms);

enum breaker_state breaker_state(const struct breaker *breaker);
const char *breaker_state_name(enum breaker_state state); /* "closed", "open", "half_open" */
const char *breaker_name(const struct breaker *breaker);

/* Seconds until a refused caller may try again (at least 1), for Retry-After. */
long breaker_retry_after_s(const struct breaker *breaker, long long now_ms);

/* Transitions into each state since creation (opens, half-opens, closes). */
unsigned long long breaker_transitions(const struct breaker *breaker, enum breaker_state to);

/* Calls refused since creation. */
unsigned long long breaker_refused(const struct breaker *breaker);

#endif
