/*
 * rate_limit: GCRA per API key in one Redis script, with a local fallback (rate_limit.h).
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
 * The same GCRA as gcra_apply, atomically in Redis. KEYS[1]: the key's bucket; ARGV[1]: limit,
 * ARGV[2]: period in ms. Returns {allowed, remaining, reset_ms, retry_ms}.
 */
static const char GCRA_SCRIPT[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local limit = tonumber(ARGV[1])\n"
    "local period = tonumber(ARGV[2])\n"
    "local step = period / limit\n"
    "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
    "if tat < now then tat = now end\n"
    "local new_tat = tat + step\n"
    "if new_tat - period > now then\n"
    "  return {0, 0, math.ceil(tat - now), math.ceil(new_tat - period - now)}\n"
    "end\n"
    "redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))\n"
    "return {1, math.floor((now + period - new_tat) / step), math.ceil(new_tat - now), 0}\n";

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

void local_limiter_check(struct local_limiter *local, const char *key_id, long long now_ms,
                         long limit, long long period_ms, struct rate_decision *out)
{
    unsigned long long h = strtoull(key_id[0] ? key_id : "0", NULL, 16) ^ strlen(key_id);
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

struct rate_limiter {
    struct redis *redis;             /* the rate limiter's Redis, or NULL */
    struct breaker *breaker;         /* guards it, or NULL */
    long limit;                      /* RATE_LIMIT_REQUESTS */
    long long period_ms;             /* RATE_LIMIT_WINDOW_S, in ms */
    char sha[41];                    /* the script's SHA-1, for EVALSHA */
    char limit_text[24];             /* ARGV[1] */
    char period_text[24];            /* ARGV[2] */
    struct local_limiter *local;     /* the fallback */
    bool shared_now;                 /* the last Redis check worked */
    unsigned long long decisions[2]; /* [0] local, [1] in Redis */
};

/* One check waiting for Redis. */
struct check {
    struct rate_limiter *limiter; /* its limiter */
    char key[48];                 /* "l10:rl:<id>" */
    bool loaded;                  /* EVAL sent after NOSCRIPT */
    rate_limit_cb cb;             /* told once */
    void *arg;                    /* its argument */
};

struct rate_limiter *rate_limiter_create(struct redis *redis, struct breaker *breaker, long limit,
                                         long long period_ms, size_t local_slots)
{
    struct rate_limiter *l = xcalloc(1, sizeof *l);
    l->redis = redis;
    l->breaker = breaker;
    l->limit = limit;
    l->period_ms = period_ms;
    snprintf(l->limit_text, sizeof l->limit_text, "%ld", limit);
    snprintf(l->period_text, sizeof l->period_text, "%lld", period_ms);
    unsigned char digest[20];
    unsigned int n = sizeof digest;
    if (!EVP_Digest(GCRA_SCRIPT, sizeof GCRA_SCRIPT - 1, digest, &n, EVP_sha1(), NULL))
        abort();
    for (int i = 0; i < 20; i++)
        snprintf(l->sha + 2 * i, 3, "%02x", digest[i]);
    l->local = local_limiter_create(local_slots);
    return l;
}

void rate_limiter_free(struct rate_limiter *limiter)
{
    if (limiter == NULL)
        return;
    local_limiter_free(limiter->local);
    free(limiter);
}

static void decide_locally(struct rate_limiter *l, const char *key_id, rate_limit_cb cb, void *arg)
{
    struct rate_decision d;
    local_limiter_check(l->local, key_id, monotonic_ms(), l->limit, l->period_ms, &d);
    l->decisions[0]++;
    cb(&d, arg);
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
    long long allowed, remaining, reset, retry;
    bool ok = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 4 &&
              integer_at(reply, 0, &allowed) && integer_at(reply, 1, &remaining) &&
              integer_at(reply, 2, &reset) && integer_at(reply, 3, &retry);
    if (l->breaker)
        breaker_record(l->breaker, ok, monotonic_ms());
    if (!ok) {
        if (l->shared_now)
            LOG_WARN("rate limiter: Redis %s; deciding per instance (approximate)",
                     reply == NULL ? "unavailable" : "gave an unexpected reply");
        l->shared_now = false;
        decide_locally(l, id, c->cb, c->arg);
        free(c);
        return;
    }
    if (!l->shared_now)
        LOG_INFO("rate limiter: budgets are shared in Redis again");
    l->shared_now = true;
    struct rate_decision d = {allowed == 1, l->limit, (long)remaining, reset, retry, true};
    l->decisions[1]++;
    c->cb(&d, c->arg);
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
                          l->period_text};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    redis_command(l->redis, on_script, c, 6, argv, lens);
}

void rate_limiter_check(struct rate_limiter *l, const char *key_id, rate_limit_cb cb, void *arg)
{
    if (l->redis == NULL || !redis_available(l->redis) ||
        (l->breaker != NULL && !breaker_allow(l->breaker, monotonic_ms()))) {
        l->shared_now = false;
        decide_locally(l, key_id, cb, arg);
        return;
    }
    struct check *c = xcalloc(1, sizeof *c);
    c->limiter = l;
    snprintf(c->key, sizeof c->key, "l10:rl:%s", key_id);
    c->cb = cb;
    c->arg = arg;
    send_script(c);
}

bool rate_limiter_shared(const struct rate_limiter *limiter)
{
    return limiter->shared_now;
}

unsigned long long rate_limiter_decisions(const struct rate_limiter *limiter, bool shared)
{
    return limiter->decisions[shared];
}
