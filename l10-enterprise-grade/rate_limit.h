/*
 * rate_limit: a request budget per API key, shared by every instance of the server.
 *
 * The algorithm is GCRA (the generic cell rate algorithm, a leaky bucket kept as one number):
 * each key has a "theoretical arrival time" (TAT). A request at time now is allowed when
 * TAT - period <= now, and then moves TAT to max(TAT, now) + period/limit. That gives `limit`
 * requests per `period` with bursts of up to `limit`, a smooth refill (one request every
 * period/limit), and exact Remaining/Reset/Retry-After figures from the same number. Chosen over
 * a sliding window log (a sorted set per key, O(limit) memory, several commands) and a fixed
 * window (twice the limit across a window edge): GCRA is one GET and one SET of one integer.
 *
 * Shared: the check is one Lua script run in Redis (EVALSHA; EVAL once when Redis does not know
 * it yet), so read-decide-write is atomic across instances and a budget is per key whichever
 * instance a request reaches. The script reads Redis's own clock (TIME), so instances' clocks
 * need not agree. The Redis key is "l10:rl:<key id>" (api_keys.h), with a TTL of the time the
 * bucket needs to drain: idle keys cost nothing.
 *
 * Redis down (or its breaker open): a local limiter in this process takes over, the same GCRA
 * over a bounded table of keys (RATE_LIMIT_LOCAL_SLOTS, a slot reused when full). It is
 * approximate by design: each instance gives each key the whole budget, so N instances allow up
 * to N times the limit while Redis is away; never "no limit".
 */
#ifndef L10_RATE_LIMIT_H
#define L10_RATE_LIMIT_H

#include <stdbool.h>
#include <stddef.h>

struct breaker;
struct redis;
struct rate_limiter;

/* The outcome of one check. */
struct rate_decision {
    bool allowed;       /* false: 429 */
    long limit;         /* X-RateLimit-Limit */
    long remaining;     /* X-RateLimit-Remaining */
    long long reset_ms; /* until the whole budget is back (X-RateLimit-Reset, seconds up) */
    long long retry_ms; /* refused: until one request is allowed (Retry-After, seconds up) */
    bool shared;        /* decided in Redis (false: by the local limiter) */
};

/*
 * GCRA, pure: *tat is the key's state (0 for a new key), updated when the request is allowed.
 * limit requests per period_ms.
 */
void gcra_apply(long long *tat, long long now_ms, long limit, long long period_ms,
                struct rate_decision *out);

/*
 * Called exactly once per check, from the event loop or before rate_limiter_check returns.
 * The decision is valid during the call.
 */
typedef void (*rate_limit_cb)(const struct rate_decision *decision, void *arg);

/* redis may be NULL (local only); breaker guards it (may be NULL). */
struct rate_limiter *rate_limiter_create(struct redis *redis, struct breaker *breaker, long limit,
                                         long long period_ms, size_t local_slots);
/* Pending checks still get their callback (from redis_free). NULL is a no-op. */
void rate_limiter_free(struct rate_limiter *limiter);

/* Checks (and spends one request of) the budget of key_id (a key's id, api_keys.h). */
void rate_limiter_check(struct rate_limiter *limiter, const char *key_id, rate_limit_cb cb,
                        void *arg);

/* Whether the last Redis check succeeded (the budget is shared right now). */
bool rate_limiter_shared(const struct rate_limiter *limiter);

/* Decisions so far: in Redis, and by the local limiter. */
unsigned long long rate_limiter_decisions(const struct rate_limiter *limiter, bool shared);

/* ---- the local limiter (also used alone in unit tests) ---- */

struct local_limiter;
struct local_limiter *local_limiter_create(size_t slots);
void local_limiter_free(struct local_limiter *local);
void local_limiter_check(struct local_limiter *local, const char *key_id, long long now_ms,
                         long limit, long long period_ms, struct rate_decision *out);

#endif
