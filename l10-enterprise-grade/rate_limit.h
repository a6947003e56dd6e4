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
 * A local allowance per key (the fast path): a round trip before every request would cost an L1
 * hit most of its speed, so each instance takes a slice of a key's budget from Redis in one
 * script call (it reserves up to `want` requests at once: GCRA moves TAT by want x step, as if
 * they had all arrived then) and spends it here with no round trip. It settles again when the
 * slice is spent (and asks for the next one ahead, once half of it is gone, or once half its
 * lease is and requests still spend it: each settle renews the lease of what is held) or when the
 * slice is older than its lease (RATE_LIMIT_LEASE_MS) with no request in its second half:
 * unspent requests are then dropped, never spent late. Requests that find the slice spent
 * while a settle is in flight wait for its answer (at most RATE_LIMIT_WAITERS per key; more ask
 * Redis each for itself), so a burst of concurrent requests costs one round trip, not one each. A
 * slice grows from 1 (doubling while the key's requests spend it within the lease, up to
 * RATE_LIMIT_SLICE) and shrinks again when it outlives its lease, so a quiet key is decided in
 * Redis request by request, exactly as before. Its cap is also the budget's refill during one lease
 * (limit x lease / period, at least 1): a key of 100 per minute always has slices of 1.
 *
 * The bound, and why it is acceptable: an instance admits only requests Redis counted, but one
 * counted when its slice was reserved may be admitted later (while the instance holds it). An
 * instance holds at most one slice, so in any interval a key's admitted requests exceed what GCRA
 * alone would admit by at most instances x slice, with slice <= limit x lease / period: with the
 * defaults (100 ms, at most 1,000) and a limit of 100,000 per minute, 166 per instance, 0.17% of
 * the budget (never more than 1,000, reached from 600,000 per minute); a limit under 1,200 per
 * minute is exact (slices of 1). The cap is 1,000, not 100, because a slice must outlast the
 * round trip of the settle asked for when half of it is gone, and one turn of the event loop
 * can bring as many requests as there are clients: with 100, half a slice (50) was less than
 * 64 clients' one turn, and requests waited for Redis (rate_limiter_waits). The
 * other way, an instance whose slice outlives its lease has taken up to one slice from the
 * others (the budget refills it within one lease). Remaining is this instance's view: Redis's
 * Remaining at the last settle plus the requests this instance still holds; Reset is as of the
 * last settle. A refusal from Redis is remembered for min(Retry-After, lease), so a client
 * hammering past its limit costs no round trip per 429 either.
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
 * The script's arithmetic, pure: reserves up to want requests (at least 1) at once; returns how
 * many were granted (0: refused, out->retry_ms says when one fits). out->remaining is what is
 * left after them, out->allowed whether any was granted.
 */
long gcra_reserve(long long *tat, long long now_ms, long limit, long long period_ms, long want,
                  struct rate_decision *out);

/* A slice's cap: RATE_LIMIT_SLICE, and no more than the budget refills in one lease (>= 1). */
long rate_slice_cap(long limit, long long period_ms, long lease_ms, long slice_max);

/*
 * One key's local allowance on one instance (a value, pure: time is passed in). Zeroed is a key
 * never seen. The caller takes a request from it; when it has none, the request waits for a
 * settle (the one in flight, or one of allowance_want() requests), and the caller tells the
 * allowance the answer, then takes from it again for each waiting request.
 */
struct allowance {
    long tokens;                /* requests reserved in Redis and not yet spent here */
    long long expires_ms;       /* the lease: tokens are dropped, not spent, after this */
    long next_want;             /* the next slice asked for (1 .. cap) */
    bool pending;               /* a settle of this key is in flight */
    long shared_remaining;      /* Redis's Remaining at the last settle (without tokens) */
    long long reset_at_ms;      /* the whole budget is back then, as of the last settle */
    long long refused_until_ms; /* Redis refused: refuse here until then, no round trip */
    long long retry_at_ms;      /* when Redis said one request fits again */
    long long renew_at_ms;      /* half the lease gone: a spend then asks ahead (renews it) */
};

enum allowance_step {
    ALLOWANCE_SPENT,   /* allowed from the slice: *out is the decision */
    ALLOWANCE_REFUSED, /* refused as Redis last said: *out is the decision */
    ALLOWANCE_ASK,     /* nothing held: ask Redis (allowance_want) */
};

/* Takes one request if the slice holds one (the lease not over). */
enum allowance_step allowance_take(struct allowance *a, long long now_ms, long limit,
                                   struct rate_decision *out);

/*
 * No settle in flight (!a->pending): how many to ask Redis for (1 .. cap), at least `waiting`
 * (the requests waiting for it) when the cap allows; marks a settle in flight.
 */
long allowance_want(struct allowance *a, long long now_ms, long cap, long waiting);

/*
 * After a request was spent: how many to ask for ahead, or 0. Ahead when half the slice is gone
 * (it doubles: a busy key), or when half its lease is (the spent ones are replaced, the lease
 * renewed): a slice larger than a lease's requests is then kept, not dropped at the lease's end
 * with every request after it waiting for Redis. Never more than one slice held, with what comes.
 */
long allowance_prefetch(struct allowance *a, long long now_ms, long cap);

/*
 * Redis granted `granted` of a settle sent at sent_ms (remaining, reset_ms, retry_ms as the
 * script returned them). for_request: the first granted is the asking request's, and *out is
 * its decision; alone: a request's own settle of 1 (no settle was marked in flight).
 */
void allowance_settled(struct allowance *a, long long sent_ms, long long now_ms, long lease_ms,
                       long limit, long granted, long remaining, long long reset_ms,
                       long long retry_ms, bool for_request, bool alone, struct rate_decision *out);

/* A settle failed (Redis away): nothing granted. */
void allowance_failed(struct allowance *a, bool alone);

/*
 * Called exactly once per check, from the event loop or before rate_limiter_check returns.
 * The decision is valid during the call.
 */
typedef void (*rate_limit_cb)(const struct rate_decision *decision, void *arg);

/* The limit and how it is kept. */
struct rate_limit_settings {
    long limit;          /* RATE_LIMIT_REQUESTS */
    long long period_ms; /* RATE_LIMIT_WINDOW_S, in ms */
    long slice_max;      /* RATE_LIMIT_SLICE: most requests an instance takes from Redis at once */
    long lease_ms;       /* RATE_LIMIT_LEASE_MS: a slice's lifetime */
    size_t slots;        /* RATE_LIMIT_LOCAL_SLOTS: keys tracked here (slices, and the fallback) */
};

/* redis may be NULL (local only); breaker guards it (may be NULL). */
struct rate_limiter *rate_limiter_create(struct redis *redis, struct breaker *breaker,
                                         const struct rate_limit_settings *settings);
/* Pending checks still get their callback (from redis_free). NULL is a no-op. */
void rate_limiter_free(struct rate_limiter *limiter);

/* Checks (and spends one request of) the budget of key_id (a key's id, api_keys.h). */
void rate_limiter_check(struct rate_limiter *limiter, const char *key_id, rate_limit_cb cb,
                        void *arg);

/* Whether the last Redis check succeeded (the budget is shared right now). */
bool rate_limiter_shared(const struct rate_limiter *limiter);

/* Decisions so far: on the shared budget (in Redis or from a slice), and by the local limiter. */
unsigned long long rate_limiter_decisions(const struct rate_limiter *limiter, bool shared);

/* Script calls sent to Redis so far (settles): with slices, far fewer than decisions. */
unsigned long long rate_limiter_settles(const struct rate_limiter *limiter);

/*
 * Requests that found nothing held for their key and waited for a settle's round trip (a new or
 * quiet key's, or a busy key's whose next slice came too late): the slices' misses.
 */
unsigned long long rate_limiter_waits(const struct rate_limiter *limiter);

/* ---- the local limiter (also used alone in unit tests) ---- */

struct local_limiter;
struct local_limiter *local_limiter_create(size_t slots);
void local_limiter_free(struct local_limiter *local);
void local_limiter_check(struct local_limiter *local, const char *key_id, long long now_ms,
                         long limit, long long period_ms, struct rate_decision *out);

#endif
