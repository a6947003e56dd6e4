/*
 * redis: commands with deadlines on a self-reconnecting link (see redis.h).
 *
 * The link (redis_link.c) keeps the connection; this file keeps the commands in flight: a FIFO
 * ring in the order they were sent, which is the order hiredis answers them, so its head is
 * always the oldest and the only deadline to watch. When the head is overdue the link is
 * dropped, and hiredis fails every command in flight (NULL replies) in order.
 */
#include "redis.h"

#include "clock.h"
#include "metrics.h"
#include "redis_link.h"
#include "xalloc.h"

#include <hiredis/async.h>
#include <stdlib.h>

struct pending {
    redis_reply_cb cb;     /* the caller's callback */
    void *arg;             /* its argument */
    long long deadline_ms; /* monotonic time the reply is due */
};

struct redis {
    struct redis_link *link; /* the connection, kept up */
    struct metrics *metrics; /* redis_* counters */
    long command_timeout_ms; /* settings */
    bool blocking;           /* settings.blocking: a connection for redis_command_blocking */
    bool blocking_in_flight; /* a blocking command is the one in flight */
    struct pending *fifo;    /* commands in flight, oldest first (ring) */
    int head, count;         /* ring position and fill */
};

/* Every reply (or failure) arrives here, in the order the commands were sent. */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis *r = privdata;
    (void)ac;
    if (r->count == 0)
        return; /* cannot happen: one entry per command sent */
    struct pending p = r->fifo[r->head];
    r->head = (r->head + 1) % REDIS_MAX_PENDING;
    r->count--;
    r->blocking_in_flight = false; /* (only ever alone in flight) */
    if (reply == NULL)
        metrics_inc(r->metrics, METRIC_REDIS_FAILURES);
    p.cb(reply, p.arg);
}

/* The link's tick: the oldest command's deadline. */
static void on_tick(void *arg)
{
    struct redis *r = arg;
    if (r->count > 0 && monotonic_ms() >= r->fifo[r->head].deadline_ms)
        redis_link_drop(r->link, "command timed out");
}

/* Queues a command due within timeout_ms; false (nothing sent) when it cannot be sent. */
static bool send(struct redis *r, long timeout_ms, redis_reply_cb cb, void *arg, int argc,
                 const char **argv, const size_t *argvlen)
{
    redisAsyncContext *ac = redis_link_context(r->link);
    if (ac == NULL || r->count == REDIS_MAX_PENDING)
        return false;
    int tail = (r->head + r->count) % REDIS_MAX_PENDING;
    r->fifo[tail] = (struct pending){cb, arg, monotonic_ms() + timeout_ms};
    r->count++;
    if (redisAsyncCommandArgv(ac, on_reply, r, argc, argv, argvlen) != REDIS_OK) {
        r->count--; /* never queued: undo */
        return false;
    }
    return true;
}

static void on_heartbeat(redisReply *reply, void *arg)
{
    (void)reply, (void)arg; /* a reply is all it asks for; a timeout drops the link (on_tick) */
}

void redis_maintain(struct redis *r)
{
    redis_link_maintain(r->link);
    on_tick(r);
    /* A heartbeat when nothing else is in flight: a Redis that hangs without closing the
     * connection is noticed within a second and the command timeout, traffic or not, so
     * /health and redis_available() say so instead of trusting a silent connection. */
    if (!r->blocking && r->count == 0) {
        const char *argv[] = {"PING"};
        const size_t lens[] = {4};
        (void)send(r, r->command_timeout_ms, on_heartbeat, r, 1, argv, lens);
    }
}

void redis_command(struct redis *r, redis_reply_cb cb, void *arg, int argc, const char **argv,
                   const size_t *argvlen)
{
    metrics_inc(r->metrics, METRIC_REDIS_COMMANDS);
    if (r->blocking_in_flight || !send(r, r->command_timeout_ms, cb, arg, argc, argv, argvlen)) {
        metrics_inc(r->metrics, METRIC_REDIS_FAILURES);
        cb(NULL, arg);
    }
}

bool redis_command_blocking(struct redis *r, long block_ms, redis_reply_cb cb, void *arg, int argc,
                            const char **argv, const size_t *argvlen)
{
    if (!r->blocking || r->count > 0 || block_ms < 0)
        return false;
    if (!send(r, block_ms + r->command_timeout_ms, cb, arg, argc, argv, argvlen))
        return false;
    metrics_inc(r->metrics, METRIC_REDIS_COMMANDS);
    r->blocking_in_flight = true;
    return true;
}

bool redis_available(const struct redis *r)
{
    return redis_link_up(r->link);
}

bool redis_parse_url(const char *url, char *host, size_t hostlen, int *port)
{
    return redis_link_parse_url(url, host, hostlen, port);
}

struct redis_settings redis_settings_of(const char *url, long timeout_ms, struct resolver *resolver)
{
    struct redis_settings rs = {.url = url,
                                .connect_timeout_ms = timeout_ms,
                                .command_timeout_ms = timeout_ms,
                                .resolver = resolver};
    return rs;
}

struct redis *redis_create(struct event_base *base, const struct redis_settings *settings,
                           struct metrics *metrics)
{
    struct redis *r = xcalloc(1, sizeof *r);
    r->metrics = metrics;
    r->command_timeout_ms = settings->command_timeout_ms;
    r->blocking = settings->blocking;
    r->fifo = xcalloc(REDIS_MAX_PENDING, sizeof *r->fifo);
    const struct redis_link_callbacks callbacks = {.tick = on_tick};
    r->link = redis_link_create(base, settings->resolver, settings->url,
                                settings->connect_timeout_ms, &callbacks, r);
    if (r->link == NULL) {
        free(r->fifo);
        free(r);
        return NULL;
    }
    return r;
}

void redis_free(struct redis *r)
{
    if (r == NULL)
        return;
    redis_link_free(r->link); /* pending callbacks get NULL, through on_reply */
    free(r->fifo);
    free(r);
}
