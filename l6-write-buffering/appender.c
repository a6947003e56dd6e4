/*
 * appender: the writes of one loop turn in one script call (appender.h).
 */
#include "appender.h"

#include "redis.h"
#include "write_queue.h"
#include "xalloc.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One write waiting for its call's reply. */
struct waiter {
    const char *key, *value; /* the caller's, valid until cb */
    size_t key_len;          /* bytes */
    size_t value_len;        /* bytes */
    appender_cb cb;          /* answered exactly once */
    void *arg;               /* its argument */
};

/* One script call: the writes it carries. */
struct call {
    size_t n;                                   /* writes */
    struct waiter writes[WQ_APPEND_MAX_WRITES]; /* in arrival order */
};

struct appender {
    struct wq_script *script;       /* WQ_WRITE_SCRIPT */
    const struct wq_limits *limits; /* the length bound, read at each send */
    struct event *turn;             /* fires at the end of the turn that queued the first write */
    struct call *open;              /* the writes of this turn not sent yet, or NULL */
    size_t max_writes;              /* a call is sent once it carries this many */
};

static void on_appended(redisReply *reply, void *arg)
{
    struct call *call = arg;
    for (size_t i = 0; i < call->n; i++) {
        const char *id = NULL;
        enum wq_append_result result = wq_append_result_of(reply, i, call->n, &id);
        call->writes[i].cb(result, id, call->writes[i].arg);
    }
    free(call);
}

/* Sends the open call: KEYS stream pending stats; ARGV max_length (key value)*n. */
static void send_open(struct appender *a)
{
    struct call *call = a->open;
    a->open = NULL;
    if (call == NULL)
        return;
    char max_length[24];
    snprintf(max_length, sizeof max_length, "%ld", a->limits->max_length);
    const char *argv[5 + 2 * WQ_APPEND_MAX_WRITES] = {"3", WQ_STREAM, WQ_PENDING, WQ_STATS,
                                                      max_length};
    size_t lens[5 + 2 * WQ_APPEND_MAX_WRITES] = {1, strlen(WQ_STREAM), strlen(WQ_PENDING),
                                                 strlen(WQ_STATS), strlen(max_length)};
    int argc = 5;
    for (size_t i = 0; i < call->n; i++) {
        const struct waiter *w = &call->writes[i];
        argv[argc] = w->key, lens[argc++] = w->key_len;
        argv[argc] = w->value, lens[argc++] = w->value_len;
    }
    wq_script_run(a->script, on_appended, call, argc, argv, lens);
}

static void on_turn(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    send_open(arg);
}

struct appender *appender_create(struct event_base *base, struct wq_script *script,
                                 const struct wq_limits *limits, size_t max_writes)
{
    struct appender *a = xcalloc(1, sizeof *a);
    a->script = script;
    a->limits = limits;
    a->max_writes =
        max_writes < 1 || max_writes > WQ_APPEND_MAX_WRITES ? WQ_APPEND_MAX_WRITES : max_writes;
    a->turn = evtimer_new(base, on_turn, a);
    if (a->turn == NULL)
        abort(); /* out of memory, as xmalloc */
    return a;
}

void appender_free(struct appender *a)
{
    if (a == NULL)
        return;
    event_free(a->turn);
    if (a->open != NULL)
        on_appended(NULL, a->open); /* never sent: none acknowledged */
    free(a);
}

void appender_append(struct appender *a, const char *key, size_t key_len, const char *value,
                     size_t value_len, appender_cb cb, void *arg)
{
    if (a->open == NULL) {
        a->open = xmalloc(sizeof *a->open);
        a->open->n = 0;
        /* It leaves at the end of this loop turn, with the writes that arrive in it: an
         * activated event runs after the callbacks already active (the other ready sockets). */
        event_active(a->turn, EV_TIMEOUT, 1);
    }
    a->open->writes[a->open->n++] = (struct waiter){key, value, key_len, value_len, cb, arg};
    if (a->open->n == a->max_writes)
        send_open(a); /* full: the turn's event finds nothing open, or the next writes */
}
