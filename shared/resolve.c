/*
 * resolve: asynchronous name lookups through evdns (see resolve.h).
 *
 * evdns_getaddrinfo() may answer at once (numeric hosts, /etc/hosts) by calling its callback
 * before it returns; the contract of resolve.h promises callers the opposite, so every answer
 * is handed over from a zero-delay timer. Cancelling marks the request: evdns still calls back
 * (with EVUTIL_EAI_CANCEL), and the request is freed there.
 */
#include "resolve.h"

#include "log.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct resolver {
    struct event_base *base; /* the loop answers are delivered on */
    struct evdns_base *dns;  /* libevent's resolver, with the system's name servers */
};

struct resolve_request {
    struct resolver *resolver;             /* owner */
    char *host;                            /* what was asked, for the log */
    resolve_cb cb;                         /* the caller's callback */
    void *arg;                             /* its argument */
    struct evdns_getaddrinfo_request *dns; /* the lookup under way, or NULL once answered */
    struct event *deliver;                 /* zero-delay timer handing the answer over */
    char address[INET6_ADDRSTRLEN];        /* the answer, "" when the lookup failed */
    bool cancelled;                        /* resolve_cancel was called */
};

bool resolve_is_numeric(const char *host)
{
    struct in6_addr v6;
    struct in_addr v4;
    return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1;
}

struct resolver *resolver_create(struct event_base *base)
{
    struct resolver *r = xcalloc(1, sizeof *r);
    r->base = base;
    r->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                      EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (r->dns == NULL) /* no resolv.conf: numeric addresses and /etc/hosts still work */
        r->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (r->dns != NULL) {
        char seconds[16];
        snprintf(seconds, sizeof seconds, "%.1f", RESOLVE_TIMEOUT_MS / 2000.0);
        evdns_base_set_option(r->dns, "timeout:", seconds);
        evdns_base_set_option(r->dns, "attempts:", "2");
        evdns_base_load_hosts(r->dns, NULL);
    }
    return r;
}

void resolver_free(struct resolver *r)
{
    if (r == NULL)
        return;
    if (r->dns != NULL)
        evdns_base_free(r->dns, 1); /* fails pending lookups: their callbacks see a cancel */
    free(r);
}

static void request_free(struct resolve_request *q)
{
    if (q->deliver != NULL)
        event_free(q->deliver);
    free(q->host);
    free(q);
}

static void deliver(evutil_socket_t fd, short what, void *arg)
{
    struct resolve_request *q = arg;
    (void)fd, (void)what;
    if (!q->cancelled)
        q->cb(q->address[0] ? q->address : NULL, q->arg);
    request_free(q);
}

static void schedule_delivery(struct resolve_request *q)
{
    static const struct timeval now = {0, 0};
    q->deliver = evtimer_new(q->resolver->base, deliver, q);
    event_add(q->deliver, &now);
}

static void on_answer(int result, struct evutil_addrinfo *res, void *arg)
{
    struct resolve_request *q = arg;
    q->dns = NULL;
    if (result == 0 && res != NULL) {
        const void *addr = res->ai_family == AF_INET6
                               ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                               : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
        inet_ntop(res->ai_family, addr, q->address, sizeof q->address);
    } else if (!q->cancelled) {
        LOG_WARN("cannot resolve host %s: %s", q->host, evutil_gai_strerror(result));
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
    if (q->cancelled || result == EVUTIL_EAI_CANCEL) {
        request_free(q);
        return;
    }
    schedule_delivery(q);
}

struct resolve_request *resolver_lookup(struct resolver *r, const char *host, resolve_cb cb,
                                        void *arg)
{
    struct resolve_request *q = xcalloc(1, sizeof *q);
    q->resolver = r;
    q->host = xstrdup(host);
    q->cb = cb;
    q->arg = arg;
    if (resolve_is_numeric(host)) {
        snprintf(q->address, sizeof q->address, "%s", host);
        schedule_delivery(q);
        return q;
    }
    if (r->dns == NULL) {
        LOG_WARN("cannot resolve host %s: no resolver", host);
        schedule_delivery(q);
        return q;
    }
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
    /* May call on_answer before returning (and then returns NULL): on_answer defers. */
    struct evdns_getaddrinfo_request *dns = evdns_getaddrinfo(r->dns, host, NULL, &hints, on_answer, q);
    if (dns != NULL && q->deliver == NULL)
        q->dns = dns;
    return q;
}

void resolve_cancel(struct resolve_request *q)
{
    if (q == NULL)
        return;
    q->cancelled = true;
    if (q->dns != NULL)
        evdns_getaddrinfo_cancel(q->dns); /* calls on_answer, which frees q */
}
