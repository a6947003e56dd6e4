/*
 * redis_link: a hiredis connection that keeps itself connected (see redis_link.h).
 *
 * Every state change goes through set_state; went_down is the one way into DOWN, so the
 * backoff, the outage log line and the owner's `down` call cannot be forgotten on any path.
 */
#include "redis_link.h"

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "resolve.h"
#include "xalloc.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 50

enum link_state { LINK_DOWN, LINK_RESOLVING, LINK_CONNECTING, LINK_UP };

struct redis_link {
    struct event_base *base;               /* the loop hiredis is attached to */
    struct resolver *resolver;             /* host name lookups, or NULL (hiredis resolves) */
    char host[256];                        /* from the URL */
    int port;                              /* from the URL */
    long connect_timeout_ms;               /* deadline for connecting */
    struct redis_link_callbacks callbacks; /* the owner's */
    void *arg;                             /* their argument */
    enum link_state state;                 /* see redis_link.h */
    redisAsyncContext *ac;                 /* CONNECTING or UP: hiredis's context, else NULL */
    struct resolve_request *lookup;        /* RESOLVING: the lookup under way */
    long long deadline_ms;                 /* CONNECTING: give up at */
    long long next_attempt_ms;             /* DOWN: try again at */
    struct backoff backoff;                /* waits between attempts */
    struct event *tick;                    /* deadlines and retries */
    bool logged_down;                      /* one log line per outage */
};

static void set_state(struct redis_link *l, enum link_state state)
{
    l->state = state;
}

/* The connection failed or was lost: forget the context (hiredis or the caller frees it). */
static void went_down(struct redis_link *l, const char *why)
{
    bool was_up = l->state == LINK_UP;
    if (!l->logged_down)
        LOG_WARN("redis: %s:%d unavailable (%s); retrying with backoff", l->host, l->port, why);
    l->logged_down = true;
    l->ac = NULL;
    l->lookup = NULL;
    set_state(l, LINK_DOWN);
    l->next_attempt_ms = monotonic_ms() + backoff_next(&l->backoff);
    if (was_up && l->callbacks.down != NULL)
        l->callbacks.down(l->arg);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    if (l->ac != ac)
        return; /* dropped by us already */
    if (status != REDIS_OK) {
        went_down(l, ac->errstr); /* hiredis frees the context */
        return;
    }
    if (l->logged_down)
        LOG_INFO("redis: %s:%d available again", l->host, l->port);
    l->logged_down = false;
    set_state(l, LINK_UP);
    backoff_reset(&l->backoff);
    if (l->callbacks.up != NULL)
        l->callbacks.up(l->ac, l->arg);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    if (l->ac != ac)
        return; /* we dropped it ourselves and said so already */
    went_down(l, status == REDIS_OK ? "closed" : ac->errstr); /* hiredis frees the context */
}

/* Connects to a numeric address (or, without a resolver, to the host name). */
static void connect_to(struct redis_link *l, const char *address)
{
    redisAsyncContext *ac = redisAsyncConnect(address, l->port);
    if (ac == NULL || ac->err) {
        went_down(l, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return;
    }
    ac->data = l;
    redisLibeventAttach(ac, l->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    l->ac = ac;
    set_state(l, LINK_CONNECTING);
    l->deadline_ms = monotonic_ms() + l->connect_timeout_ms;
}

/* The resolver's answer (bounded by RESOLVE_TIMEOUT_MS, always from the loop). */
static void on_resolved(const char *address, void *arg)
{
    struct redis_link *l = arg;
    l->lookup = NULL;
    if (address == NULL) {
        went_down(l, "cannot resolve host");
        return;
    }
    connect_to(l, address);
}

static void attempt(struct redis_link *l)
{
    if (l->resolver == NULL || resolve_is_numeric(l->host)) {
        connect_to(l, l->host);
        return;
    }
    set_state(l, LINK_RESOLVING);
    l->lookup = resolver_lookup(l->resolver, l->host, on_resolved, l);
}

void redis_link_drop(struct redis_link *l, const char *why)
{
    redisAsyncContext *ac = l->ac;
    if (l->state == LINK_DOWN)
        return;
    if (l->state == LINK_RESOLVING)
        resolve_cancel(l->lookup);
    went_down(l, why);
    if (ac != NULL)
        redisAsyncFree(ac); /* commands in flight get NULL replies; on_disconnect ignores it */
}

void redis_link_maintain(struct redis_link *l)
{
    long long now = monotonic_ms();
    if (l->state == LINK_CONNECTING && now >= l->deadline_ms)
        redis_link_drop(l, "connect timed out");
    if (l->state == LINK_DOWN && now >= l->next_attempt_ms)
        attempt(l);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct redis_link *l = arg;
    (void)fd, (void)what;
    redis_link_maintain(l);
    if (l->callbacks.tick != NULL)
        l->callbacks.tick(l->arg);
}

bool redis_link_parse_url(const char *url, char *host, size_t hostlen, int *port)
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

struct redis_link *redis_link_create(struct event_base *base, struct resolver *resolver,
                                     const char *url, long connect_timeout_ms,
                                     const struct redis_link_callbacks *callbacks, void *arg)
{
    struct redis_link *l = xcalloc(1, sizeof *l);
    if (!redis_link_parse_url(url, l->host, sizeof l->host, &l->port)) {
        LOG_ERROR("redis: cannot parse URL '%s' (expected redis://host:port)", url);
        free(l);
        return NULL;
    }
    l->base = base;
    l->resolver = resolver;
    l->connect_timeout_ms = connect_timeout_ms;
    l->callbacks = *callbacks;
    l->arg = arg;
    backoff_init(&l->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    set_state(l, LINK_DOWN);
    l->next_attempt_ms = 0; /* at once */
    l->tick = event_new(base, -1, EV_PERSIST, on_tick, l);
    struct timeval tv = ms_to_timeval(TICK_MS);
    event_add(l->tick, &tv);
    attempt(l); /* now: the first commands need not wait for a tick */
    return l;
}

void redis_link_free(struct redis_link *l)
{
    if (l == NULL)
        return;
    event_free(l->tick);
    if (l->state == LINK_RESOLVING)
        resolve_cancel(l->lookup);
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    l->callbacks = (struct redis_link_callbacks){0}; /* nothing reaches the owner any more */
    set_state(l, LINK_DOWN);
    if (ac != NULL)
        redisAsyncFree(ac); /* commands in flight get NULL replies; on_disconnect ignores it */
    free(l);
}

redisAsyncContext *redis_link_context(const struct redis_link *l)
{
    return l->state == LINK_UP ? l->ac : NULL;
}

bool redis_link_up(const struct redis_link *l)
{
    return l->state == LINK_UP;
}
