/*
 * redis_subscriber: a resilient pub/sub subscription (see redis_subscriber.h).
 *
 * The link (redis_link.c) connects and reconnects; each time it comes up, SUBSCRIBE is sent,
 * and the subscription is ACTIVE once Redis confirms it. States: DOWN -> SUBSCRIBING -> ACTIVE
 * -> DOWN. A confirmation that does not come within the connect deadline drops the link, which
 * then reconnects with backoff.
 */
#include "redis_subscriber.h"

#include "clock.h"
#include "log.h"
#include "redis_link.h"
#include "xalloc.h"

#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>

enum sub_state { SUB_DOWN, SUB_SUBSCRIBING, SUB_ACTIVE };

struct redis_subscriber {
    struct redis_link *link;        /* the connection, kept up */
    char *channel;                  /* what to subscribe to */
    long connect_timeout_ms;        /* also the deadline for the confirmation */
    enum sub_state state;           /* see above */
    long long deadline_ms;          /* SUBSCRIBING: give up at */
    redis_message_cb on_message;    /* owner's callbacks */
    redis_subscription_cb on_state; /* (see redis_subscriber.h) */
    void *arg;                      /* their argument */
};

static void on_subscription_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_subscriber *s = privdata;
    redisReply *r = reply;
    (void)ac;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return; /* NULL: disconnecting; the link's `down` handles it */
    if (strcmp(r->element[0]->str, "subscribe") == 0) {
        s->state = SUB_ACTIVE;
        LOG_INFO("redis: subscribed to %s", s->channel);
        s->on_state(true, s->arg);
    } else if (strcmp(r->element[0]->str, "message") == 0 &&
               r->element[2]->type == REDIS_REPLY_STRING) {
        s->on_message(r->element[2]->str, r->element[2]->len, s->arg);
    }
}

static void on_up(redisAsyncContext *ac, void *arg)
{
    struct redis_subscriber *s = arg;
    s->state = SUB_SUBSCRIBING;
    s->deadline_ms = monotonic_ms() + s->connect_timeout_ms;
    const char *argv[] = {"SUBSCRIBE", s->channel};
    const size_t lens[] = {9, strlen(s->channel)};
    if (redisAsyncCommandArgv(ac, on_subscription_reply, s, 2, argv, lens) != REDIS_OK)
        s->deadline_ms = 0; /* the next tick drops the link and tries again */
}

static void on_down(void *arg)
{
    struct redis_subscriber *s = arg;
    bool was_active = s->state == SUB_ACTIVE;
    s->state = SUB_DOWN;
    if (was_active) {
        LOG_WARN("redis: subscription to %s lost; retrying", s->channel);
        s->on_state(false, s->arg);
    }
}

static void on_tick(void *arg)
{
    struct redis_subscriber *s = arg;
    if (s->state == SUB_SUBSCRIBING && monotonic_ms() >= s->deadline_ms)
        redis_link_drop(s->link, "subscribe timed out");
}

struct redis_subscriber *redis_subscriber_create(struct event_base *base, struct resolver *resolver,
                                                 const char *url, long connect_timeout_ms,
                                                 const char *channel, redis_message_cb on_message,
                                                 redis_subscription_cb on_state, void *arg)
{
    struct redis_subscriber *s = xcalloc(1, sizeof *s);
    s->channel = xstrdup(channel);
    s->connect_timeout_ms = connect_timeout_ms;
    s->on_message = on_message;
    s->on_state = on_state;
    s->arg = arg;
    const struct redis_link_callbacks callbacks = {.up = on_up, .down = on_down, .tick = on_tick};
    s->link = redis_link_create(base, resolver, url, connect_timeout_ms, &callbacks, s);
    if (s->link == NULL) {
        free(s->channel);
        free(s);
        return NULL;
    }
    return s;
}

void redis_subscriber_free(struct redis_subscriber *s)
{
    if (s == NULL)
        return;
    s->state = SUB_DOWN;      /* no on_state call while being freed */
    redis_link_free(s->link); /* calls nothing back */
    free(s->channel);
    free(s);
}

bool redis_subscriber_active(const struct redis_subscriber *s)
{
    return s->state == SUB_ACTIVE;
}
