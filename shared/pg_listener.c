/*
 * pg_listener: LISTEN on a connection of its own (see pg_listener.h).
 *
 * States: DOWN (a retry timer runs) -> RESOLVING (the host name, when there is one and a
 * resolver) -> CONNECTING (PQconnectPoll) -> LISTENING (the LISTEN sent, then acknowledged: up)
 * -> DOWN. One deadline covers the lookup and the connect. Every change goes through
 * set_down/start_connect/on_connected.
 */
#include "pg_listener.h"

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "pgconn.h"
#include "resolve.h"
#include "xalloc.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum listener_state {
    LISTENER_DOWN,       /* no connection; the timer starts the next attempt */
    LISTENER_RESOLVING,  /* looking the host name up; the timer is the deadline */
    LISTENER_CONNECTING, /* PQconnectPoll in progress; the timer is the deadline */
    LISTENER_LISTENING,  /* LISTEN sent; up once its result arrived */
};

struct pg_listener {
    struct event_base *base;          /* the loop */
    char *url;                        /* where to connect */
    struct resolver *resolver;        /* host names off the loop, or NULL (libpq resolves) */
    struct resolve_request *lookup;   /* the lookup under way (RESOLVING), or NULL */
    char *listen_sql;                 /* "LISTEN channel" */
    char application[64];             /* its application_name: "listen channel" */
    long connect_timeout_ms;          /* deadline of one attempt */
    pg_listener_wake_cb wake;         /* the owner's callback */
    pg_listener_payload_cb payload;   /* each notification's payload to the owner, or NULL */
    void *arg;                        /* its argument */
    enum listener_state state;        /* see above */
    bool up;                          /* the LISTEN is acknowledged */
    bool outage_logged;               /* one warning per outage */
    PGconn *pg;                       /* the connection, or NULL when DOWN */
    struct event *io;                 /* readiness of its socket (recreated per socket) */
    struct event *timer;              /* retry wait (DOWN) or connect deadline (CONNECTING) */
    struct backoff backoff;           /* waits between attempts */
    unsigned long long notifications; /* received so far */
    unsigned long long sessions;      /* times the LISTEN came into force */
};

static void start_connect(struct pg_listener *l);

static void arm_timer(struct pg_listener *l, long ms)
{
    struct timeval tv = ms_to_timeval(ms);
    event_add(l->timer, &tv);
}

static void close_connection(struct pg_listener *l)
{
    resolve_cancel(l->lookup);
    l->lookup = NULL;
    if (l->io != NULL)
        event_free(l->io);
    l->io = NULL;
    if (l->pg != NULL)
        PQfinish(l->pg);
    l->pg = NULL;
    l->up = false;
}

/* Any failure: close, wait (backoff), try again. */
static void set_down(struct pg_listener *l, const char *why)
{
    if (!l->outage_logged)
        LOG_WARN("pg_listener: %s (retrying with backoff)", why);
    l->outage_logged = true;
    close_connection(l);
    l->state = LISTENER_DOWN;
    arm_timer(l, backoff_next(&l->backoff));
}

static void on_io(evutil_socket_t fd, short what, void *arg);

static void watch_socket(struct pg_listener *l, short what)
{
    if (l->io != NULL)
        event_free(l->io);
    l->io = event_new(l->base, PQsocket(l->pg), what, on_io, l);
    event_add(l->io, NULL);
}

/* Reads what the server sent: the LISTEN's result, then notifications. */
static void read_input(struct pg_listener *l)
{
    if (!PQconsumeInput(l->pg)) {
        set_down(l, PQerrorMessage(l->pg));
        return;
    }
    while (!PQisBusy(l->pg)) {
        PGresult *res = PQgetResult(l->pg);
        if (res == NULL)
            break;
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok) {
            set_down(l, "LISTEN refused");
            return;
        }
        if (!l->up) { /* the LISTEN is in force: look once for what happened meanwhile */
            l->up = true;
            l->sessions++;
            if (l->outage_logged)
                LOG_INFO("pg_listener: listening again");
            l->outage_logged = false;
            backoff_reset(&l->backoff);
            l->wake(l->arg);
            if (l->pg == NULL)
                return;
        }
    }
    bool woken = false;
    PGnotify *n;
    while ((n = PQnotifies(l->pg)) != NULL) {
        if (l->payload != NULL)
            l->payload(n->extra, l->arg);
        PQfreemem(n);
        l->notifications++;
        woken = true;
    }
    if (woken)
        l->wake(l->arg);
}

static void on_connected(struct pg_listener *l)
{
    event_del(l->timer);
    l->state = LISTENER_LISTENING;
    if (PQsetnonblocking(l->pg, 1) != 0 || !PQsendQuery(l->pg, l->listen_sql)) {
        set_down(l, PQerrorMessage(l->pg));
        return;
    }
    PQflush(l->pg);
    watch_socket(l, EV_READ | EV_PERSIST);
}

static void poll_connect(struct pg_listener *l)
{
    switch (PQconnectPoll(l->pg)) {
    case PGRES_POLLING_READING:
        watch_socket(l, EV_READ);
        return;
    case PGRES_POLLING_WRITING:
        watch_socket(l, EV_WRITE);
        return;
    case PGRES_POLLING_OK:
        on_connected(l);
        return;
    default:
        set_down(l, PQerrorMessage(l->pg));
        return;
    }
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct pg_listener *l = arg;
    (void)fd, (void)what;
    if (l->state == LISTENER_CONNECTING)
        poll_connect(l);
    else if (l->state == LISTENER_LISTENING)
        read_input(l);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pg_listener *l = arg;
    (void)fd, (void)what;
    if (l->state == LISTENER_DOWN)
        start_connect(l);
    else if (l->state == LISTENER_RESOLVING || l->state == LISTENER_CONNECTING)
        set_down(l, "connect timed out");
}

/* libpq's connect; hostaddr (numeric, or NULL) overrides the URL's host, whose name libpq
 * keeps (keywords after dbname override the URL). */
static void connect_to(struct pg_listener *l, const char *hostaddr)
{
    const char *keywords[] = {"gssencmode",       "sslmode",  "dbname",
                              "application_name", "hostaddr", NULL};
    const char *values[] = {"disable", "disable", l->url, l->application, hostaddr, NULL};
    if (hostaddr == NULL)
        keywords[4] = NULL;
    l->state = LISTENER_CONNECTING;
    l->pg = PQconnectStartParams(keywords, values, 1);
    if (l->pg == NULL || PQstatus(l->pg) == CONNECTION_BAD) {
        set_down(l, l->pg ? PQerrorMessage(l->pg) : "out of memory");
        return;
    }
    watch_socket(l, EV_WRITE);
}

static void on_resolved(const char *address, void *arg)
{
    struct pg_listener *l = arg;
    l->lookup = NULL;
    if (address == NULL)
        set_down(l, "host name not resolved");
    else
        connect_to(l, address);
}

static void start_connect(struct pg_listener *l)
{
    arm_timer(l, l->connect_timeout_ms); /* the deadline of the lookup and the connect */
    char host[256];
    if (l->resolver != NULL && pgconn_host_to_resolve(l->url, host, sizeof host)) {
        l->state = LISTENER_RESOLVING;
        l->lookup = resolver_lookup(l->resolver, host, on_resolved, l);
        return;
    }
    connect_to(l, NULL);
}

/* The first attempt starts from the loop, so no callback runs inside pg_listener_create. */
struct pg_listener *pg_listener_create(struct event_base *base, struct resolver *resolver,
                                       const char *url, const char *channel,
                                       long connect_timeout_ms, pg_listener_wake_cb wake, void *arg)
{
    struct pg_listener *l = xcalloc(1, sizeof *l);
    l->base = base;
    l->resolver = resolver;
    l->url = xstrdup(url);
    size_t len = sizeof "LISTEN " + strlen(channel);
    l->listen_sql = xmalloc(len);
    snprintf(l->listen_sql, len, "LISTEN %s", channel);
    snprintf(l->application, sizeof l->application, "listen %s", channel);
    l->connect_timeout_ms = connect_timeout_ms;
    l->wake = wake;
    l->arg = arg;
    l->state = LISTENER_DOWN;
    backoff_init(&l->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    l->timer = evtimer_new(base, on_timer, l);
    arm_timer(l, 0);
    return l;
}

void pg_listener_free(struct pg_listener *l)
{
    if (l == NULL)
        return;
    close_connection(l);
    event_free(l->timer);
    free(l->url);
    free(l->listen_sql);
    free(l);
}

bool pg_listener_up(const struct pg_listener *l)
{
    return l->up;
}

unsigned long long pg_listener_notifications(const struct pg_listener *l)
{
    return l->notifications;
}

void pg_listener_on_payload(struct pg_listener *l, pg_listener_payload_cb cb)
{
    l->payload = cb;
}

unsigned long long pg_listener_sessions(const struct pg_listener *l)
{
    return l->sessions;
}
