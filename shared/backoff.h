/*
 * backoff: how long to wait before the next attempt to reach a server that is down.
 *
 * Each failed attempt doubles the wait, from min_ms up to max_ms; a success starts again from
 * the bottom. Retrying at once would hammer a server that is restarting (and fill the log);
 * waiting long would keep the service degraded after it came back. 100 ms doubling to 2 s is
 * what every connection of the core uses (Redis links; PostgreSQL pools may share it).
 * A plain value, embedded in its owner: backoff_init, no heap.
 */
#ifndef LAYERS_BACKOFF_H
#define LAYERS_BACKOFF_H

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

struct backoff {
    long min_ms;     /* the first wait */
    long max_ms;     /* the longest wait */
    long current_ms; /* the last wait handed out, 0 after a success */
};

static inline void backoff_init(struct backoff *b, long min_ms, long max_ms)
{
    b->min_ms = min_ms;
    b->max_ms = max_ms;
    b->current_ms = 0;
}

/* An attempt failed: the wait before the next one (min_ms, then doubling up to max_ms). */
static inline long backoff_next(struct backoff *b)
{
    b->current_ms = b->current_ms ? b->current_ms * 2 : b->min_ms;
    if (b->current_ms > b->max_ms)
        b->current_ms = b->max_ms;
    return b->current_ms;
}

/* An attempt succeeded: the next failure waits min_ms again. */
static inline void backoff_reset(struct backoff *b)
{
    b->current_ms = 0;
}

#endif
