/*
 * rate_limit: GCRA per API key in one Redis script, spent through a local allowance per key
 * (slices), with a local fallback (rate_limit.h).
 */
#include "rate_limit.h"

#include "breaker.h"
#include "clock.h"
#include "log.h"
#include "redis.h"
#include "xalloc.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * gcra_reserve, atomically in Redis. KEYS[1]: the key's bucket; ARGV[1]: limit, ARGV[2]: period
 * in ms, ARGV[3]: how many requests to reserve at most. Returns {granted, remaining, reset_ms,
 * retry_ms}; granted 0 is a refusal.
 */
static const char GCRA_SCRIPT[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local limit = tonumber(ARGV[1])\n"
    "local period = tonumber(ARGV[2])\n"
    "local want = tonumber(ARGV[3])\n"
    "local step = period / limit\n"
    "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
    "if tat < now then tat = now end\n"
    "local room = math.floor((now + period - tat) / step + 1e-9)\n"
    "if room > want then room = want end\n"
    "if room < 1 then\n"
    "  return {0, 0, math.ceil(tat - now), math.ceil(tat + step - period - now)}\n"
    "end\n"
    "local new_tat = tat + room * step\n"
    "redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))\n"
    "return {room, math.floor((now + period - new_tat) / step + 1e-9), math.ceil(new_tat - now), "
    "0}\n";

void gcra_apply(long long *tat, long long now_ms, long limit, long long period_ms,
                struct rate_decision *out)
{
    double step = (double)period_ms / (double)limit;
    double t = *tat > now_ms ? (double)*tat : (double)now_ms;
    double next = t + step;
    out->limit = limit;
    out->shared = false;
    if (next - (double)period_ms > (double)now_ms) {
        out->allowed = false;
        out->remaining = 0;
        out->reset_ms = (long long)(t - (double)now_ms + 0.999);
        out->retry_ms = (long long)(next - (double)period_ms - (double)now_ms + 0.999);
        return;
    }
    *tat = (long long)(next + 0.5);
    out->allowed = true;
    out->remaining = (long)(((double)now_ms + (double)period_ms - next) / step);
    out->reset_ms = (long long)(next - (double)now_ms + 0.999);
    out->retry_ms = 0;
}

long gcra_reserve(long long *tat, long long now_ms, long limit, long long period_ms, long want,
                  struct rate_decision *out)
{
    double step = (double)period_ms / (double)limit;
    double t = *tat > now_ms ? (double)*tat : (double)now_ms;
    double room = ((double)now_ms + (double)period_ms - t) / step + 1e-9;
    long granted = room < 1 ? 0 : room < (double)want ? (long)room : want;
    if (want < 1)
        granted = 0;
    out->limit = limit;
    out->shared = false;
    if (granted == 0) {
        out->allowed = false;
        out->remaining = 0;
        out->reset_ms = (long long)(t - (double)now_ms + 0.999);
        out->retry_ms = (long long)(t + step - (double)period_ms - (double)now_ms + 0.999);
        return 0;
    }
    double next = t + step * (double)granted;
    *tat = (long long)(next + 0.5);
    out->allowed = true;
    out->remaining = (long)(((double)now_ms + (double)period_ms - next) / step + 1e-9);
    out->reset_ms = (long long)(next - (double)now_ms + 0.999);
    out->retry_ms = 0;
    return granted;
}

long rate_slice_cap(long limit, long long period_ms, long lease_ms, long slice_max)
{
    long long refill = period_ms > 0 ? (long long)limit * lease_ms / period_ms : 1;
    long cap = refill < slice_max ? (long)refill : slice_max;
    return cap < 1 ? 1 : cap;
}

/* ---- one key's allowance, pure ---- */

static long at_most(long a, long b)
{
    return a < b ? a : b;
}

static void decision(struct rate_decision *out, bool allowed, long limit, long remaining,
                     long long reset_ms, long long retry_ms)
{
    *out = (struct rate_decision){allowed,
                                  limit,
                                  remaining < 0 ? 0 : at_most(remaining, limit),
                                  reset_ms < 0 ? 0 : reset_ms,
                                  retry_ms < 0 ? 0 : retry_ms,
                                  true};
}

enum allowance_step allowance_take(struct allowance *a, long long now_ms, long limit,
                                   struct rate_decision *out)
{
    if (a->tokens > 0 && now_ms >= a->expires_ms) {
        a->tokens = 0; /* it outlived its lease: dropped, never spent late */
        a->next_want = a->next_want > 1 ? a->next_want / 2 : 1;
    }
    if (a->tokens > 0) {
        a->tokens--;
        decision(out, true, limit, a->shared_remaining + a->tokens, a->reset_at_ms - now_ms, 0);
        return ALLOWANCE_SPENT;
    }
    if (now_ms < a->refused_until_ms) {
        decision(out, false, limit, 0, a->reset_at_ms - now_ms, a->retry_at_ms - now_ms);
        return ALLOWANCE_REFUSED;
    }
    return ALLOWANCE_ASK;
}

long allowance_want(struct allowance *a, long long now_ms, long cap, long waiting)
{
    if (a->next_want < 1)
        a->next_want = 1;
    if (a->expires_ms > now_ms) /* the last slice was spent within its lease: a busy key */
        a->next_want *= 2;
    if (a->next_want < waiting)
        a->next_want = waiting;
    a->next_want = at_most(a->next_want, cap);
    a->pending = true;
    return a->next_want - a->tokens > 0 ? a->next_want - a->tokens : 1;
}

long allowance_prefetch(struct allowance *a, long long now_ms, long cap)
{
    if (a->pending || a->tokens == 0 || now_ms >= a->expires_ms ||
        now_ms < a->retry_at_ms) /* Redis said there is nothing more until then */
        return 0;
    bool half_spent = a->tokens * 2 <= a->next_want;
    if (!half_spent && now_ms < a->renew_at_ms)
        return 0;
    if (half_spent)
        a->next_want = at_most(a->next_want * 2, cap); /* half gone within the lease: busy */
    if (a->next_want <= a->tokens)
        return 0;
    a->pending = true;
    return a->next_want - a->tokens; /* held, with what comes: at most one slice */
}

void allowance_settled(struct allowance *a, long long sent_ms, long long now_ms, long lease_ms,
                       long limit, long granted, long remaining, long long reset_ms,
                       long long retry_ms, bool for_request, bool alone, struct rate_decision *out)
{
    if (!alone)
        a->pending = false;
    a->shared_remaining = remaining;
    a->reset_at_ms = now_ms + reset_ms;
    if (granted > 0) {
        a->refused_until_ms = 0;
        granted -= for_request; /* the first is the asking request's */
        a->tokens += granted;
        a->expires_ms = sent_ms + lease_ms; /* a request within it finding none: a busy key */
        a->renew_at_ms = sent_ms + lease_ms / 2;
        if (for_request)
            decision(out, true, limit, remaining + a->tokens, reset_ms, 0);
        return;
    }
    a->retry_at_ms = now_ms + retry_ms;
    if (a->tokens == 0) {
        a->refused_until_ms = now_ms + (retry_ms < lease_ms ? retry_ms : lease_ms);
        if (for_request)
            decision(out, false, limit, 0, reset_ms, retry_ms);
        return;
    }
    if (for_request) { /* refused in Redis, but a slice came in meanwhile */
        a->tokens--;
        decision(out, true, limit, a->tokens, reset_ms, 0);
    }
}

void allowance_failed(struct allowance *a, bool alone)
{
    if (!alone)
        a->pending = false;
}

/* ---- local ---- */

/* One key's state in the local table. */
struct local_slot {
    char id[24];   /* the key's id, "" when free */
    long long tat; /* its GCRA state */
};

struct local_limiter {
    struct local_slot *slots; /* open addressing by the id's first hex digits */
    size_t count;             /* slots */
};

struct local_limiter *local_limiter_create(size_t slots)
{
    struct local_limiter *local = xcalloc(1, sizeof *local);
    local->count = slots ? slots : 1;
    local->slots = xcalloc(local->count, sizeof *local->slots);
    return local;
}

void local_limiter_free(struct local_limiter *local)
{
    if (local == NULL)
        return;
    free(local->slots);
    free(local);
}

/* Where a key id's slot search starts (FNV-1a over its hex digits; strtoull cost more, on
 * every request). */
static unsigned long long key_hash(const char *key_id)
{
    unsigned long long h = 1469598103934665603ULL;
    for (const char *c = key_id; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    return h;
}

void local_limiter_check(struct local_limiter *local, const char *key_id, long long now_ms,
                         long limit, long long period_ms, struct rate_decision *out)
{
    unsigned long long h = key_hash(key_id);
    size_t home = (size_t)(h % local->count);
    struct local_slot *slot = NULL;
    for (size_t i = 0; i < 8 && i < local->count; i++) { /* a short probe, then reuse */
        struct local_slot *s = &local->slots[(home + i) % local->count];
        if (strcmp(s->id, key_id) == 0) {
            slot = s;
            break;
        }
        if (slot == NULL && (s->id[0] == '\0' || s->tat <= now_ms))
            slot = s; /* free, or drained (its key would start afresh anyway) */
    }
    if (slot == NULL)
        slot = &local->slots[home]; /* full: the home slot's key starts afresh */
    if (strcmp(slot->id, key_id) != 0) {
        snprintf(slot->id, sizeof slot->id, "%s", key_id);
        slot->tat = 0;
    }
    gcra_apply(&slot->tat, now_ms, limit, period_ms, out);
}

/* ---- shared, in Redis ---- */

#define RATE_LIMIT_WAITERS 1024 /* requests of one key waiting for its settle, at most */

/* A request waiting for its key's settle. */
struct waiter {
    rate_limit_cb cb;    /* told once */
    void *arg;           /* its argument */
    struct waiter *next; /* the next one (FIFO) */
};

/* One key's allowance on this instance. */
struct allowance_slot {
    char id[24];                /* the key's id, "" when free */
    struct allowance a;         /* its slice */
    struct waiter *head, *tail; /* waiting for the settle in flight (a.pending), oldest first */
    long waiting;               /* entries, at most RATE_LIMIT_WAITERS */
};

struct rate_limiter {
    struct redis *redis;             /* the rate limiter's Redis, or NULL */
    struct breaker *breaker;         /* guards it, or NULL */
    struct rate_limit_settings s;    /* the limit, the slices' cap and lease */
    long cap;                        /* rate_slice_cap of the settings */
    char sha[41];                    /* the script's SHA-1, for EVALSHA */
    char limit_text[24];             /* ARGV[1] */
    char period_text[24];            /* ARGV[2] */
    struct allowance_slot *slices;   /* s.slots of them, open addressing by the id */
    struct local_limiter *local;     /* the fallback */
    bool shared_now;                 /* the last Redis check worked */
    unsigned long long decisions[2]; /* [0] local, [1] on the shared budget */
    unsigned long long settles;      /* script calls sent */
    unsigned long long waits;        /* requests that waited for a settle (none held for them) */
};

/* One settle waiting for Redis: a request's (cb set), or a slice asked for ahead. */
struct check {
    struct rate_limiter *limiter; /* its limiter */
    char key[48];                 /* "l10:rl:<id>" */
    char want_text[24];           /* ARGV[3] */
    long long sent_ms;            /* when it was sent: the slice's lease starts then */
    bool alone;                   /* a lone request's (its key had a settle in flight) */
    bool loaded;                  /* EVAL sent after NOSCRIPT */
    rate_limit_cb cb;             /* told once, or NULL (a slice asked for ahead) */
    void *arg;                    /* its argument */
};

struct rate_limiter *rate_limiter_create(struct redis *redis, struct breaker *breaker,
                                         const struct rate_limit_settings *settings)
{
    struct rate_limiter *l = xcalloc(1, sizeof *l);
    l->redis = redis;
    l->breaker = breaker;
    l->s = *settings;
    if (l->s.slots == 0)
        l->s.slots = 1;
    l->cap = rate_slice_cap(l->s.limit, l->s.period_ms, l->s.lease_ms, l->s.slice_max);
    snprintf(l->limit_text, sizeof l->limit_text, "%ld", l->s.limit);
    snprintf(l->period_text, sizeof l->period_text, "%lld", l->s.period_ms);
    unsigned char digest[20];
    unsigned int n = sizeof digest;
    if (!EVP_Digest(GCRA_SCRIPT, sizeof GCRA_SCRIPT - 1, digest, &n, EVP_sha1(), NULL))
        abort();
    for (int i = 0; i < 20; i++)
        snprintf(l->sha + 2 * i, 3, "%02x", digest[i]);
    l->slices = xcalloc(l->s.slots, sizeof *l->slices);
    l->local = local_limiter_create(l->s.slots);
    return l;
}

void rate_limiter_free(struct rate_limiter *limiter)
{
    if (limiter == NULL)
        return;
    local_limiter_free(limiter->local);
    for (size_t i = 0; i < limiter->s.slots; i++) { /* none after redis_free told them */
        while (limiter->slices[i].head != NULL) {
            struct waiter *w = limiter->slices[i].head;
            limiter->slices[i].head = w->next;
            free(w);
        }
    }
    free(limiter->slices);
    free(limiter);
}

static void decide_locally(struct rate_limiter *l, const char *key_id, rate_limit_cb cb, void *arg)
{
    struct rate_decision d;
    local_limiter_check(l->local, key_id, monotonic_ms(), l->s.limit, l->s.period_ms, &d);
    l->decisions[0]++;
    cb(&d, arg);
}

/* A slot is idle when nothing in it is worth keeping: no settle out, nothing held, no refusal. */
static bool idle(const struct allowance_slot *slot, long long now_ms)
{
    const struct allowance *a = &slot->a;
    return slot->id[0] == '\0' || (!a->pending && (a->tokens == 0 || now_ms >= a->expires_ms) &&
                                   now_ms >= a->refused_until_ms);
}

/*
 * key_id's slot; create: take an idle slot for it when it has none (a short probe). NULL when
 * it has none and none could be taken (the request then asks Redis alone, as without slices).
 */
static struct allowance_slot *slot_of(struct rate_limiter *l, const char *key_id, bool create,
                                      long long now_ms)
{
    unsigned long long h = key_hash(key_id);
    size_t home = (size_t)(h % l->s.slots);
    struct allowance_slot *free_slot = NULL;
    for (size_t i = 0; i < 8 && i < l->s.slots; i++) {
        struct allowance_slot *s = &l->slices[(home + i) % l->s.slots];
        if (strcmp(s->id, key_id) == 0)
            return s;
        if (free_slot == NULL && idle(s, now_ms))
            free_slot = s;
    }
    if (!create || free_slot == NULL)
        return NULL;
    snprintf(free_slot->id, sizeof free_slot->id, "%s", key_id);
    free_slot->a = (struct allowance){0};
    return free_slot;
}

static void wait_for_settle(struct allowance_slot *slot, rate_limit_cb cb, void *arg)
{
    struct waiter *w = xcalloc(1, sizeof *w);
    w->cb = cb;
    w->arg = arg;
    if (slot->tail != NULL)
        slot->tail->next = w;
    else
        slot->head = w;
    slot->tail = w;
    slot->waiting++;
}

static struct waiter *next_waiter(struct allowance_slot *slot)
{
    struct waiter *w = slot->head;
    slot->head = w->next;
    if (slot->head == NULL)
        slot->tail = NULL;
    slot->waiting--;
    return w;
}

static void settle(struct rate_limiter *l, const char *key_id, long want, bool alone,
                   long long now_ms, rate_limit_cb cb, void *arg);

/*
 * A settle came back: the waiting requests take from the slice in order (or are refused as Redis
 * said); those left when it is spent ask again. The callbacks answer requests and never call
 * back into the limiter, so the slot stays this key's meanwhile.
 */
static void serve_waiters(struct rate_limiter *l, struct allowance_slot *slot, long long now_ms)
{
    while (slot->head != NULL) {
        struct rate_decision d;
        if (allowance_take(&slot->a, now_ms, l->s.limit, &d) == ALLOWANCE_ASK)
            break;
        struct waiter *w = next_waiter(slot);
        l->decisions[1]++;
        w->cb(&d, w->arg);
        free(w);
    }
    if (slot->head != NULL && !slot->a.pending) {
        settle(l, slot->id, allowance_want(&slot->a, now_ms, l->cap, slot->waiting), false, now_ms,
               NULL, NULL);
        return;
    }
    long ahead = allowance_prefetch(&slot->a, now_ms, l->cap);
    if (ahead > 0)
        settle(l, slot->id, ahead, false, now_ms, NULL, NULL);
}

/* Redis is away: every waiting request is decided by the local limiter. */
static void fail_waiters(struct rate_limiter *l, struct allowance_slot *slot)
{
    while (slot->head != NULL) {
        struct waiter *w = next_waiter(slot);
        decide_locally(l, slot->id, w->cb, w->arg);
        free(w);
    }
}

static void send_script(struct check *c);

static bool integer_at(const redisReply *reply, size_t i, long long *out)
{
    if (reply->element[i]->type != REDIS_REPLY_INTEGER)
        return false;
    *out = reply->element[i]->integer;
    return true;
}

static void on_script(redisReply *reply, void *arg)
{
    struct check *c = arg;
    struct rate_limiter *l = c->limiter;
    const char *id = c->key + strlen("l10:rl:");
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && !c->loaded &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        c->loaded = true; /* Redis restarted or never saw it: EVAL loads it */
        send_script(c);
        return;
    }
    long long granted, remaining, reset, retry;
    bool ok = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 4 &&
              integer_at(reply, 0, &granted) && integer_at(reply, 1, &remaining) &&
              integer_at(reply, 2, &reset) && integer_at(reply, 3, &retry);
    long long now = monotonic_ms();
    if (l->breaker)
        breaker_record(l->breaker, ok, now);
    struct allowance_slot *slot = slot_of(l, id, false, now);
    struct allowance *a = slot != NULL ? &slot->a : NULL;
    if (!ok) {
        if (l->shared_now)
            LOG_WARN("rate limiter: Redis %s; deciding per instance (approximate)",
                     reply == NULL ? "unavailable" : "gave an unexpected reply");
        l->shared_now = false;
        if (a != NULL)
            allowance_failed(a, c->alone);
        if (c->cb != NULL)
            decide_locally(l, id, c->cb, c->arg);
        if (slot != NULL && !c->alone)
            fail_waiters(l, slot);
        free(c);
        return;
    }
    if (!l->shared_now)
        LOG_INFO("rate limiter: budgets are shared in Redis again");
    l->shared_now = true;
    struct rate_decision d;
    if (a != NULL)
        allowance_settled(a, c->sent_ms, now, l->s.lease_ms, l->s.limit, (long)granted,
                          (long)remaining, reset, retry, c->cb != NULL, c->alone, &d);
    else /* no slot for its key: the answer is this request's alone */
        decision(&d, granted > 0, l->s.limit, (long)remaining, reset, retry);
    if (c->cb != NULL) {
        l->decisions[1]++;
        c->cb(&d, c->arg);
    }
    if (slot != NULL && !c->alone)
        serve_waiters(l, slot, now);
    free(c);
}

static void send_script(struct check *c)
{
    struct rate_limiter *l = c->limiter;
    const char *argv[] = {c->loaded ? "EVAL" : "EVALSHA",
                          c->loaded ? GCRA_SCRIPT : l->sha,
                          "1",
                          c->key,
                          l->limit_text,
                          l->period_text,
                          c->want_text};
    size_t lens[7];
    for (int i = 0; i < 7; i++)
        lens[i] = strlen(argv[i]);
    l->settles++;
    redis_command(l->redis, on_script, c, 7, argv, lens);
}

/* Asks Redis for want requests of key_id's budget: for a request (cb), or ahead (cb NULL). */
static void settle(struct rate_limiter *l, const char *key_id, long want, bool alone,
                   long long now_ms, rate_limit_cb cb, void *arg)
{
    struct check *c = xcalloc(1, sizeof *c);
    c->limiter = l;
    snprintf(c->key, sizeof c->key, "l10:rl:%s", key_id);
    snprintf(c->want_text, sizeof c->want_text, "%ld", want);
    c->sent_ms = now_ms;
    c->alone = alone;
    c->cb = cb;
    c->arg = arg;
    send_script(c);
}

void rate_limiter_check(struct rate_limiter *l, const char *key_id, rate_limit_cb cb, void *arg)
{
    long long now = monotonic_ms();
    if (l->redis == NULL || !redis_available(l->redis) ||
        (l->breaker != NULL && !breaker_allow(l->breaker, now))) {
        l->shared_now = false;
        decide_locally(l, key_id, cb, arg);
        return;
    }
    struct allowance_slot *slot = slot_of(l, key_id, true, now);
    if (slot == NULL) { /* no slot free for it: decided in Redis alone */
        l->waits++;
        settle(l, key_id, 1, true, now, cb, arg);
        return;
    }
    struct allowance *a = &slot->a;
    struct rate_decision d;
    switch (allowance_take(a, now, l->s.limit, &d)) {
    case ALLOWANCE_SPENT: {
        long ahead = allowance_prefetch(a, now, l->cap);
        if (ahead > 0) /* before the callback, which may answer and free the request */
            settle(l, key_id, ahead, false, now, NULL, NULL);
        l->decisions[1]++;
        cb(&d, arg);
        return;
    }
    case ALLOWANCE_REFUSED:
        l->decisions[1]++;
        cb(&d, arg);
        return;
    case ALLOWANCE_ASK:
        break;
    }
    l->waits++; /* from here on the request waits for Redis */
    if (a->pending && slot->waiting >= RATE_LIMIT_WAITERS) { /* enough wait: this one asks */
        settle(l, key_id, 1, true, now, cb, arg);
        return;
    }
    wait_for_settle(slot, cb, arg);
    if (!a->pending) /* else the settle in flight serves it */
        settle(l, key_id, allowance_want(a, now, l->cap, slot->waiting), false, now, NULL, NULL);
}

bool rate_limiter_shared(const struct rate_limiter *limiter)
{
    return limiter->shared_now;
}

unsigned long long rate_limiter_decisions(const struct rate_limiter *limiter, bool shared)
{
    return limiter->decisions[shared];
}

unsigned long long rate_limiter_settles(const struct rate_limiter *limiter)
{
    return limiter->settles;
}

unsigned long long rate_limiter_waits(const struct rate_limiter *limiter)
{
    return limiter->waits;
}
