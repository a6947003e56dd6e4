/*
 * breaker: a circuit breaker with a failure-rate window and a single half-open probe
 * (breaker.h). The state and every transition live in this file's three functions.
 */
#include "breaker.h"

#include "log.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#define BUCKETS 10 /* the window's resolution: window_ms / BUCKETS */

/* The outcomes of one slice of the window. */
struct bucket {
    long long start_ms;     /* when this slice began (bucket index = start / slice) */
    unsigned calls, failed; /* outcomes recorded in it */
};

struct breaker {
    char *name;                        /* "shard1", "redis_cache", ... */
    struct breaker_settings s;         /* thresholds */
    enum breaker_state state;          /* see the diagram in breaker.h */
    long long opened_ms;               /* when it last opened */
    bool probe_out;                    /* HALF_OPEN: the probe has been let through */
    struct bucket buckets[BUCKETS];    /* the window, a ring */
    unsigned long long transitions[3]; /* into each state */
    unsigned long long refused;        /* calls refused while open or probing */
};

struct breaker *breaker_create(const char *name, const struct breaker_settings *settings)
{
    struct breaker *b = xcalloc(1, sizeof *b);
    b->name = xstrdup(name);
    b->s = *settings;
    if (b->s.window_ms < BUCKETS)
        b->s.window_ms = BUCKETS;
    return b;
}

void breaker_free(struct breaker *breaker)
{
    if (breaker == NULL)
        return;
    free(breaker->name);
    free(breaker);
}

static void forget_window(struct breaker *b)
{
    memset(b->buckets, 0, sizeof b->buckets);
}

static void move_to(struct breaker *b, enum breaker_state to, long long now_ms)
{
    if (b->state == to)
        return;
    LOG_WARN("breaker %s: %s -> %s", b->name, breaker_state_name(b->state), breaker_state_name(to));
    b->state = to;
    b->transitions[to]++;
    b->probe_out = false;
    if (to == BREAKER_OPEN)
        b->opened_ms = now_ms;
    if (to == BREAKER_CLOSED)
        forget_window(b); /* the failures that opened it are history */
}

bool breaker_allow(struct breaker *b, long long now_ms)
{
    switch (b->state) {
    case BREAKER_CLOSED:
        return true;
    case BREAKER_OPEN:
        if (now_ms - b->opened_ms < b->s.open_ms)
            break;
        move_to(b, BREAKER_HALF_OPEN, now_ms);
        b->probe_out = true;
        return true;
    case BREAKER_HALF_OPEN:
        break; /* the probe is out: everyone else waits for its outcome */
    }
    b->refused++;
    return false;
}

void breaker_record(struct breaker *b, bool success, long long now_ms)
{
    switch (b->state) {
    case BREAKER_OPEN:
        return; /* a late outcome of a call from before it opened */
    case BREAKER_HALF_OPEN:
        move_to(b, success ? BREAKER_CLOSED : BREAKER_OPEN, now_ms);
        return;
    case BREAKER_CLOSED:
        break;
    }
    long long slice = b->s.window_ms / BUCKETS;
    long long start = now_ms - now_ms % slice;
    struct bucket *cur = &b->buckets[(start / slice) % BUCKETS];
    if (cur->start_ms != start) { /* a slice from an older round of the ring */
        cur->start_ms = start;
        cur->calls = cur->failed = 0;
    }
    cur->calls++;
    cur->failed += !success;
    if (success)
        return;
    unsigned long calls = 0, failed = 0;
    for (int i = 0; i < BUCKETS; i++) {
        if (now_ms - b->buckets[i].start_ms < b->s.window_ms) {
            calls += b->buckets[i].calls;
            failed += b->buckets[i].failed;
        }
    }
    if (calls >= (unsigned long)b->s.min_calls &&
        failed * 100 >= (unsigned long)b->s.failure_percent * calls)
        move_to(b, BREAKER_OPEN, now_ms);
}

void breaker_backend_answered(struct breaker *b, long long now_ms)
{
    if (b->state == BREAKER_OPEN && now_ms - b->opened_ms < b->s.open_ms)
        b->opened_ms = now_ms - b->s.open_ms; /* the open time is over */
}

enum breaker_state breaker_state(const struct breaker *breaker)
{
    return breaker->state;
}

const char *breaker_state_name(enum breaker_state state)
{
    switch (state) {
    case BREAKER_CLOSED:
        return "closed";
    case BREAKER_OPEN:
        return "open";
    case BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "?";
}

const char *breaker_name(const struct breaker *breaker)
{
    return breaker->name;
}

long breaker_retry_after_s(const struct breaker *b, long long now_ms)
{
    long long left = b->state == BREAKER_OPEN ? b->s.open_ms - (now_ms - b->opened_ms) : 0;
    long s = (long)((left + 999) / 1000);
    return s < 1 ? 1 : s;
}

unsigned long long breaker_transitions(const struct breaker *breaker, enum breaker_state to)
{
    return breaker->transitions[to];
}

unsigned long long breaker_refused(const struct breaker *breaker)
{
    return breaker->refused;
}
