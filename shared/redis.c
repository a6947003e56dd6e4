/*
 * redis: hiredis on the event loop, with deadlines and reconnects (see redis.h).
 *
 * States: DOWN (waiting for the next attempt) -> CONNECTING -> UP -> DOWN. hiredis owns and frees
 * its context after the connect callback reports a failure and after the disconnect callback;
 * redisAsyncFree is only called from our own timer or redis_free, never from inside hiredis.
 */
#include "redis.h"

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS        50
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

enum redis_state { REDIS_DOWN, REDIS_CONNECTING, REDIS_UP };

struct pending {
    redis_reply_cb cb;     /* the caller's callback */
    void *arg;             /* its argument */
    long long deadline_ms; /* monotonic time the reply is due */
};

struct redis {
    struct event_base *base; /* the server's loop */
    struct metrics *metrics; /* redis_* counters */
    char host[256];          /* from the URL */
    int port;                /* from the URL */
    long connect_timeout_ms; /* settings */
    long command_timeout_ms;
    redisAsyncContext *ac;         /* NULL unless CONNECTING or UP */
    enum redis_state state;        /* see above */
    long long attempt_deadline_ms; /* CONNECTING: give up at */
    long long next_attempt_ms;     /* DOWN: try again at */
    long backoff_ms;               /* current backoff */
    struct pending *fifo;          /* commands in flight, oldest first (ring) */
    int head, count;               /* ring position and fill */
    struct event *tick;            /* deadlines and reconnects */
    bool logged_down;              /* one log line per outage */
};

static void schedule_retry(struct redis *r)
{
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (r->backoff_ms > BACKOFF_MAX_MS)
        r->backoff_ms = BACKOFF_MAX_MS;
    r->next_attempt_ms = monotonic_ms() + r->backoff_ms;
}

static void went_down(struct redis *r, const char *why)
{
    if (!r->logged_down)
        LOG_WARN("redis: %s:%d unavailable (%s); retrying with backoff", r->host, r->port, why);
    r->logged_down = true;
    r->ac = NULL;
    r->state = REDIS_DOWN;
    schedule_retry(r);
}

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
    if (reply == NULL)
        metrics_inc(r->metrics, METRIC_REDIS_FAILURES);
    p.cb(reply, p.arg);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis *r = ac->data;
    if (status != REDIS_OK) {
        went_down(r, ac->errstr); /* hiredis frees the context */
        return;
    }
    if (r->logged_down)
        LOG_INFO("redis: %s:%d available again", r->host, r->port);
    r->logged_down = false;
    r->state = REDIS_UP;
    r->backoff_ms = 0;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis *r = ac->data;
    if (r->ac != ac)
        return; /* we dropped it ourselves and said so already */
    went_down(r, status == REDIS_OK ? "closed" : ac->errstr); /* hiredis frees the context */
}

static void connect_now(struct redis *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (ac == NULL || ac->err) {
        went_down(r, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return;
    }
    ac->data = r;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->state = REDIS_CONNECTING;
    r->attempt_deadline_ms = monotonic_ms() + r->connect_timeout_ms;
}

/* Drops the connection now; hiredis fails every pending command (NULL reply) in order. */
static void drop(struct redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    went_down(r, why);
    if (ac != NULL)
        redisAsyncFree(ac);
}

void redis_maintain(struct redis *r)
{
    long long now = monotonic_ms();
    if (r->state == REDIS_CONNECTING && now >= r->attempt_deadline_ms)
        drop(r, "connect timed out");
    else if (r->state == REDIS_UP && r->count > 0 && now >= r->fifo[r->head].deadline_ms)
        drop(r, "command timed out");
    if (r->state == REDIS_DOWN && now >= r->next_attempt_ms)
        connect_now(r);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    redis_maintain(arg);
}

void redis_command(struct redis *r, redis_reply_cb cb, void *arg, int argc, const char **argv,
                   const size_t *argvlen)
{
    metrics_inc(r->metrics, METRIC_REDIS_COMMANDS);
    if (r->state != REDIS_UP || r->count == REDIS_MAX_PENDING) {
        metrics_inc(r->metrics, METRIC_REDIS_FAILURES);
        cb(NULL, arg);
        return;
    }
    int tail = (r->head + r->count) % REDIS_MAX_PENDING;
    r->fifo[tail] = (struct pending){cb, arg, monotonic_ms() + r->command_timeout_ms};
    r->count++;
    if (redisAsyncCommandArgv(r->ac, on_reply, r, argc, argv, argvlen) != REDIS_OK) {
        r->count--; /* never queued: undo, and fail it here */
        metrics_inc(r->metrics, METRIC_REDIS_FAILURES);
        cb(NULL, arg);
    }
}

bool redis_available(const struct redis *r)
{
    return r->state == REDIS_UP;
}

bool redis_parse_url(const char *url, char *host, size_t hostlen, int *port)
{
    const char *p = strncmp(url, "redis://", 8) == 0 ? url + 8 : url;
    const char *at = strchr(p, '@');
    if (at != NULL)
        p = at + 1; /* credentials are not supported; ignore them */
    size_t len = strcspn(p, ":/");
    if (len == 0 || len >= hostlen)
        return false;
    memcpy(host, p, len);
    host[len] = '\0';
    *port = 6379;
    if (p[len] == ':') {
        char *end;
        long value = strtol(p + len + 1, &end, 10);
        if (end == p + len + 1 || value < 1 || value > 65535 || (*end != '\0' && *end != '/'))
            return false;
        *port = (int)value;
    }
    return true;
}

struct redis *redis_create(struct event_base *base, const struct redis_settings *settings,
                           struct metrics *metrics)
{
    struct redis *r = xcalloc(1, sizeof *r);
    r->base = base;
    r->metrics = metrics;
    if (!redis_parse_url(settings->url, r->host, sizeof r->host, &r->port)) {
        LOG_ERROR("redis: cannot parse URL '%s' (expected redis://host:port)", settings->url);
        free(r);
        return NULL;
    }
    r->connect_timeout_ms = settings->connect_timeout_ms;
    r->command_timeout_ms = settings->command_timeout_ms;
    r->fifo = xcalloc(REDIS_MAX_PENDING, sizeof *r->fifo);
    r->tick = event_new(base, -1, EV_PERSIST, on_tick, r);
    struct timeval tv = ms_to_timeval(TICK_MS);
    event_add(r->tick, &tv);
    connect_now(r);
    return r;
}

void redis_free(struct redis *r)
{
    if (r == NULL)
        return;
    event_free(r->tick);
    if (r->ac != NULL) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        redisAsyncFree(ac); /* pending callbacks get NULL; on_disconnect may run */
    }
    free(r->fifo);
    free(r);
}
