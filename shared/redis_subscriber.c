/*
 * redis_subscriber: a resilient pub/sub subscription (see redis_subscriber.h).
 *
 * States: DOWN -> CONNECTING -> SUBSCRIBING -> ACTIVE -> DOWN. A 50 ms tick enforces the
 * connect deadline and schedules reconnects (100 ms doubling to 2 s).
 */
#include "redis_subscriber.h"

#include "clock.h"
#include "log.h"
#include "redis.h"
#include "xalloc.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS        50
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

enum sub_state { SUB_DOWN, SUB_CONNECTING, SUB_SUBSCRIBING, SUB_ACTIVE };

struct redis_subscriber {
    struct event_base *base; /* the loop */
    char host[256];          /* from the URL */
    int port;
    char *channel;               /* what to subscribe to */
    long connect_timeout_ms;     /* deadline for connecting */
    redisAsyncContext *ac;       /* NULL when DOWN */
    enum sub_state state;        /* see above */
    long long deadline_ms;       /* CONNECTING/SUBSCRIBING: give up at */
    long long next_attempt_ms;   /* DOWN: retry at */
    long backoff_ms;             /* current backoff */
    struct event *tick;          /* deadlines and retries */
    redis_message_cb on_message; /* owner's callbacks */
    redis_subscription_cb on_state;
    void *arg;
};

static void set_down(struct redis_subscriber *s)
{
    bool was_active = s->state == SUB_ACTIVE;
    s->ac = NULL;
    s->state = SUB_DOWN;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (s->backoff_ms > BACKOFF_MAX_MS)
        s->backoff_ms = BACKOFF_MAX_MS;
    s->next_attempt_ms = monotonic_ms() + s->backoff_ms;
    if (was_active) {
        LOG_WARN("redis: subscription to %s lost; retrying", s->channel);
        s->on_state(false, s->arg);
    }
}

static void on_subscription_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_subscriber *s = privdata;
    redisReply *r = reply;
    (void)ac;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return; /* NULL: disconnecting; the disconnect callback handles it */
    if (strcmp(r->element[0]->str, "subscribe") == 0) {
        s->state = SUB_ACTIVE;
        s->backoff_ms = 0;
        LOG_INFO("redis: subscribed to %s", s->channel);
        s->on_state(true, s->arg);
    } else if (strcmp(r->element[0]->str, "message") == 0 &&
               r->element[2]->type == REDIS_REPLY_STRING) {
        s->on_message(r->element[2]->str, r->element[2]->len, s->arg);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_subscriber *s = ac->data;
    if (s->ac != ac)
        return;
    if (status != REDIS_OK) {
        set_down(s); /* hiredis frees the context */
        return;
    }
    s->state = SUB_SUBSCRIBING;
    s->deadline_ms = monotonic_ms() + s->connect_timeout_ms;
    const char *argv[] = {"SUBSCRIBE", s->channel};
    const size_t lens[] = {9, strlen(s->channel)};
    redisAsyncCommandArgv(s->ac, on_subscription_reply, s, 2, argv, lens);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_subscriber *s = ac->data;
    (void)status;
    if (s->ac == ac)
        set_down(s); /* hiredis frees the context */
}

static void connect_now(struct redis_subscriber *s)
{
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (ac == NULL || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        set_down(s);
        return;
    }
    ac->data = s;
    redisLibeventAttach(ac, s->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->ac = ac;
    s->state = SUB_CONNECTING;
    s->deadline_ms = monotonic_ms() + s->connect_timeout_ms;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct redis_subscriber *s = arg;
    (void)fd, (void)what;
    long long now = monotonic_ms();
    if ((s->state == SUB_CONNECTING || s->state == SUB_SUBSCRIBING) && now >= s->deadline_ms) {
        redisAsyncContext *ac = s->ac;
        set_down(s);
        redisAsyncFree(ac);
    }
    if (s->state == SUB_DOWN && now >= s->next_attempt_ms)
        connect_now(s);
}

struct redis_subscriber *redis_subscriber_create(struct event_base *base, const char *url,
                                                 long connect_timeout_ms, const char *channel,
                                                 redis_message_cb on_message,
                                                 redis_subscription_cb on_state, void *arg)
{
    struct redis_subscriber *s = xcalloc(1, sizeof *s);
    if (!redis_parse_url(url, s->host, sizeof s->host, &s->port)) {
        free(s);
        return NULL;
    }
    s->base = base;
    s->channel = xstrdup(channel);
    s->connect_timeout_ms = connect_timeout_ms;
    s->on_message = on_message;
    s->on_state = on_state;
    s->arg = arg;
    s->tick = event_new(base, -1, EV_PERSIST, on_tick, s);
    struct timeval tv = ms_to_timeval(TICK_MS);
    event_add(s->tick, &tv);
    connect_now(s);
    return s;
}

void redis_subscriber_free(struct redis_subscriber *s)
{
    if (s == NULL)
        return;
    event_free(s->tick);
    if (s->ac != NULL) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        s->state = SUB_DOWN; /* no on_state call while being freed */
        redisAsyncFree(ac);
    }
    free(s->channel);
    free(s);
}

bool redis_subscriber_active(const struct redis_subscriber *s)
{
    return s->state == SUB_ACTIVE;
}
