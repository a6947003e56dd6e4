/*
 * delay-proxy: a TCP proxy that delays every byte by a fixed one-way latency.
 *
 * Real databases are never on the same host as their clients, and this kernel has no netem, so
 * the benchmark puts this proxy between a server and its PostgreSQL (`--db-latency 5`) to show
 * what pooling and non-blocking I/O buy when a round trip costs milliseconds; the multi-region
 * layer uses it for its WAN links.
 *
 * How: each chunk read from one side is stamped with the time it may leave (now + delay) and
 * appended to that direction's FIFO; one timer per direction forwards the chunks whose time has
 * come. Stamps only grow, so order is kept, and every byte is delayed exactly once: a
 * request/response round trip costs two delays, like a real link. The proxy never blocks (one
 * libevent loop, non-blocking sockets and connects) and every buffer is bounded: a direction
 * holding MAX_HELD bytes (queued plus not yet written) stops reading its source until the
 * destination has taken them, so a slow reader slows its writer, as TCP would.
 *
 * Closing follows TCP: when one side closes, what it sent is still delivered (after the delay)
 * and then the other side sees end-of-file; the pair is freed when both directions are done,
 * or at once on a socket error (which closes both sides).
 *
 *   delay-proxy [LISTEN_HOST:]LISTEN_PORT [UPSTREAM_HOST:]UPSTREAM_PORT DELAY_MS [SLOW_MS]
 *
 * (DELAY_MS may be 0.5.) Without hosts it listens on 127.0.0.1 and forwards to 127.0.0.1, as the
 * benchmark, `./layers chaos` and layer 9's native links use it. LISTEN_HOST is a numeric address
 * (0.0.0.0: every interface; [::] for IPv6); UPSTREAM_HOST an address or a name, resolved for
 * each connection without blocking (libevent's evdns: /etc/hosts, then resolv.conf's servers),
 * so a container that comes back with another address is found again: docker-compose's layer 9
 * runs one proxy per WAN link this way (`0.0.0.0:5432 l9-pg-eu-west:5432 40`).
 *
 * With SLOW_MS, SIGUSR1 switches the delay of new chunks to SLOW_MS and SIGUSR2 back to
 * DELAY_MS (`./layers chaos` makes a backend slow this way). A chunk is never due before the
 * one ahead of it, so the order holds when the delay shrinks.
 *
 * SIGTERM or SIGINT stops it; it then prints what it forwarded.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "xalloc.h"

#define MAX_HELD (1024 * 1024) /* bytes one direction may hold before it stops reading */

struct proxy {
    struct event_base *base;          /* the one event loop */
    struct sockaddr_storage upstream; /* where every connection goes (no upstream_host) */
    int upstream_len;                 /* its length; 0 when upstream_host names it */
    const char *upstream_host;        /* a name resolved per connection, or NULL */
    int upstream_port;                /* the port with upstream_host */
    struct evdns_base *dns;           /* the resolver for upstream_host, or NULL */
    long long delay_us;               /* one-way delay added to every chunk now */
    long long normal_us;              /* DELAY_MS: the delay SIGUSR2 restores */
    long long slow_us;           /* SLOW_MS: the delay SIGUSR1 sets (DELAY_MS when not given) */
    long long links_open;        /* connection pairs alive now */
    long long links_total;       /* connection pairs accepted since start */
    long long upstream_failures; /* pairs closed because the upstream could not be reached */
    long long bytes[2];          /* forwarded client->upstream, upstream->client */
};

struct chunk {
    struct chunk *next;    /* FIFO order */
    long long due_us;      /* monotonic time at which it may be forwarded */
    struct evbuffer *data; /* the bytes, as read */
};

struct direction {
    struct bufferevent *from, *to; /* the side it reads, the side it writes */
    struct chunk *head, *tail;     /* chunks waiting for their time */
    size_t queued;                 /* bytes in those chunks */
    struct event *timer;           /* fires when the head chunk is due */
    bool eof;                      /* `from` has closed: nothing more will be queued */
    bool done;                     /* everything delivered and `to` shut for writing */
    struct link *link;             /* the pair it belongs to */
    int index;                     /* 0 client->upstream, 1 upstream->client */
};

struct link {
    struct proxy *proxy;     /* owner and statistics */
    struct direction dir[2]; /* client->upstream, upstream->client */
    bool connected;          /* the upstream connect has completed */
};

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void link_free(struct link *link)
{
    for (int i = 0; i < 2; i++) {
        struct direction *d = &link->dir[i];
        struct chunk *c = d->head;
        while (c != NULL) {
            struct chunk *next = c->next;
            evbuffer_free(c->data);
            free(c);
            c = next;
        }
        event_free(d->timer);
    }
    /* Safe inside the bufferevents' own callbacks: libevent defers the free until they return. */
    bufferevent_free(link->dir[0].from);
    bufferevent_free(link->dir[1].from);
    link->proxy->links_open--;
    free(link);
}

/* Bytes this direction holds: queued for their time, or forwarded but not yet written. */
static size_t direction_held(const struct direction *d)
{
    return d->queued + evbuffer_get_length(bufferevent_get_output(d->to));
}

static void direction_arm(struct direction *d)
{
    if (d->head == NULL)
        return;
    long long wait = d->head->due_us - now_us();
    struct timeval tv = {0, 0};
    if (wait > 0) {
        tv.tv_sec = (time_t)(wait / 1000000);
        tv.tv_usec = (suseconds_t)(wait % 1000000);
    }
    event_add(d->timer, &tv);
}

/* Reads again once the destination has taken enough (the bound on held bytes). */
static void direction_resume(struct direction *d)
{
    if (!d->eof && direction_held(d) < MAX_HELD)
        bufferevent_enable(d->from, EV_READ);
}

/*
 * Called whenever a direction may have finished: once its source has closed and every byte is
 * written, the destination gets end-of-file (shutdown for writing). Frees the pair when both
 * directions are done; returns true if it did, and the caller must not touch the link again.
 */
static bool link_check_done(struct link *link)
{
    for (int i = 0; i < 2; i++) {
        struct direction *d = &link->dir[i];
        /* A socket still connecting cannot be shut down: wait for BEV_EVENT_CONNECTED. */
        if (!d->done && d->eof && direction_held(d) == 0 && link->connected) {
            shutdown(bufferevent_getfd(d->to), SHUT_WR);
            d->done = true;
        }
    }
    if (link->dir[0].done && link->dir[1].done) {
        link_free(link);
        return true;
    }
    return false;
}

/* Timer: forwards every chunk whose time has come, in order, then waits for the next one. */
static void on_due(evutil_socket_t fd, short what, void *arg)
{
    struct direction *d = arg;
    long long now = now_us();
    while (d->head != NULL && d->head->due_us <= now) {
        struct chunk *c = d->head;
        d->head = c->next;
        if (d->head == NULL)
            d->tail = NULL;
        size_t n = evbuffer_get_length(c->data);
        d->queued -= n;
        d->link->proxy->bytes[d->index] += (long long)n;
        bufferevent_write_buffer(d->to, c->data); /* moves the bytes; written when writable */
        evbuffer_free(c->data);
        free(c);
    }
    direction_arm(d);
    /* Not done here even if the queue is empty: the write callback sees the output drain. */
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct link *link = arg;
    struct direction *d = bev == link->dir[0].from ? &link->dir[0] : &link->dir[1];
    struct evbuffer *input = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(input);
    if (n == 0)
        return;
    struct chunk *c = xcalloc(1, sizeof *c);
    c->data = evbuffer_new();
    if (c->data == NULL) {
        fprintf(stderr, "delay-proxy: out of memory\n");
        abort();
    }
    c->due_us = now_us() + link->proxy->delay_us;
    if (d->tail != NULL && c->due_us < d->tail->due_us)
        c->due_us = d->tail->due_us; /* the delay shrank (SIGUSR2): keep the order */
    evbuffer_add_buffer(c->data, input);
    d->queued += n;
    if (d->tail != NULL)
        d->tail->next = c;
    else
        d->head = c;
    d->tail = c;
    if (direction_held(d) >= MAX_HELD)
        bufferevent_disable(bev, EV_READ); /* bounded: wait until the destination takes it */
    if (!event_pending(d->timer, EV_TIMEOUT, NULL))
        direction_arm(d);
}

/* Write callback of `to`: its output buffer is empty. */
static void on_written(struct bufferevent *bev, void *arg)
{
    struct link *link = arg;
    struct direction *d = bev == link->dir[0].to ? &link->dir[0] : &link->dir[1];
    if (link_check_done(link))
        return;
    direction_resume(d);
}

/* No Nagle: a small chunk must leave when its delay is over, not when an ACK comes back. */
static void set_nodelay(evutil_socket_t fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct link *link = arg;
    bool upstream_side = bev == link->dir[1].from;
    if (what & BEV_EVENT_CONNECTED) {
        set_nodelay(bufferevent_getfd(bev));
        link->connected = true;
        link_check_done(link); /* the client may already have closed */
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        if (upstream_side && !link->connected)
            link->proxy->upstream_failures++;
        link_free(link); /* a reset or a refused connect: close both sides */
        return;
    }
    if (what & BEV_EVENT_EOF) {
        struct direction *d = upstream_side ? &link->dir[1] : &link->dir[0];
        d->eof = true;
        bufferevent_disable(bev, EV_READ);
        link_check_done(link);
    }
}

static void direction_init(struct direction *d, struct link *link, int index,
                           struct bufferevent *from, struct bufferevent *to)
{
    d->from = from;
    d->to = to;
    d->link = link;
    d->index = index;
    d->timer = evtimer_new(link->proxy->base, on_due, d);
    if (d->timer == NULL) {
        fprintf(stderr, "delay-proxy: out of memory\n");
        abort();
    }
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                      int len, void *arg)
{
    struct proxy *proxy = arg;
    set_nodelay(fd);
    struct bufferevent *client = bufferevent_socket_new(proxy->base, fd, BEV_OPT_CLOSE_ON_FREE);
    struct bufferevent *server = bufferevent_socket_new(proxy->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (client == NULL || server == NULL) {
        fprintf(stderr, "delay-proxy: cannot set up a connection pair\n");
        if (client != NULL)
            bufferevent_free(client);
        else
            evutil_closesocket(fd);
        if (server != NULL)
            bufferevent_free(server);
        return;
    }
    struct link *link = xcalloc(1, sizeof *link);
    link->proxy = proxy;
    proxy->links_open++;
    proxy->links_total++;
    direction_init(&link->dir[0], link, 0, client, server);
    direction_init(&link->dir[1], link, 1, server, client);
    bufferevent_setcb(client, on_read, on_written, on_event, link);
    bufferevent_setcb(server, on_read, on_written, on_event, link);
    /* Non-blocking connect (and lookup); a refusal or a failed lookup arrives later as
     * BEV_EVENT_ERROR. */
    int connecting =
        proxy->upstream_host != NULL
            ? bufferevent_socket_connect_hostname(server, proxy->dns, AF_UNSPEC,
                                                  proxy->upstream_host, proxy->upstream_port)
            : bufferevent_socket_connect(server, (struct sockaddr *)&proxy->upstream,
                                         proxy->upstream_len);
    if (connecting != 0) {
        proxy->upstream_failures++;
        link_free(link);
        return;
    }
    bufferevent_enable(client, EV_READ | EV_WRITE);
    bufferevent_enable(server, EV_READ | EV_WRITE);
}

/* Accept failed (out of descriptors, say): say so and keep serving the pairs that exist. */
static void on_accept_error(struct evconnlistener *listener, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    fprintf(stderr, "delay-proxy: accept: %s\n", evutil_socket_error_to_string(err));
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct proxy *proxy = arg;
    if (sig == SIGUSR1 || sig == SIGUSR2) {
        proxy->delay_us = sig == SIGUSR1 ? proxy->slow_us : proxy->normal_us;
        return;
    }
    event_base_loopexit(proxy->base, NULL);
}

/* Many clients each hold two descriptors here: raise the soft limit as far as allowed. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static bool parse_port(const char *s, int *port)
{
    if (s == NULL)
        return false;
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 65535)
        return false;
    *port = (int)v;
    return true;
}

/* "PORT" (127.0.0.1) or a numeric "ADDRESS:PORT" ("[ADDRESS]:PORT" for IPv6). */
static bool parse_listen(const char *s, struct sockaddr_storage *addr, int *len)
{
    int port;
    if (parse_port(s, &port)) {
        struct sockaddr_in *in = (struct sockaddr_in *)addr;
        memset(addr, 0, sizeof *addr);
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = (int)sizeof *in;
        return true;
    }
    *len = (int)sizeof *addr;
    return strchr(s, ':') != NULL &&
           evutil_parse_sockaddr_port(s, (struct sockaddr *)addr, len) == 0;
}

/* The upstream: as parse_listen, or "NAME:PORT", resolved for each connection. */
static bool parse_upstream(char *s, struct proxy *proxy)
{
    if (parse_listen(s, &proxy->upstream, &proxy->upstream_len))
        return true;
    char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || strchr(s, '[') != NULL ||
        !parse_port(colon + 1, &proxy->upstream_port))
        return false;
    *colon = '\0';
    proxy->upstream_host = s;
    return true;
}

/* The address as text, for the start-up line. */
static const char *address_text(const struct sockaddr_storage *addr, char *buf, size_t size)
{
    const void *ip = addr->ss_family == AF_INET6
                         ? (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr
                         : (const void *)&((const struct sockaddr_in *)addr)->sin_addr;
    int port = ntohs(addr->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)addr)->sin6_port
                                                 : ((const struct sockaddr_in *)addr)->sin_port);
    char ip_text[INET6_ADDRSTRLEN] = "?";
    evutil_inet_ntop(addr->ss_family, ip, ip_text, sizeof ip_text);
    snprintf(buf, size, addr->ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip_text, port);
    return buf;
}

int main(int argc, char **argv)
{
    struct proxy proxy = {0};
    struct sockaddr_storage addr;
    int addr_len;
    char *end = NULL, *slow_end = NULL;
    double delay_ms = argc == 4 || argc == 5 ? strtod(argv[3], &end) : -1;
    double slow_ms = argc == 5 ? strtod(argv[4], &slow_end) : delay_ms;
    if ((argc != 4 && argc != 5) || !parse_listen(argv[1], &addr, &addr_len) ||
        !parse_upstream(argv[2], &proxy) || end == argv[3] || *end != '\0' ||
        !(delay_ms >= 0 && delay_ms <= 60000) ||
        (argc == 5 && (slow_end == argv[4] || *slow_end != '\0')) ||
        !(slow_ms >= 0 && slow_ms <= 60000)) {
        fprintf(
            stderr,
            "usage: %s [LISTEN_HOST:]LISTEN_PORT [UPSTREAM_HOST:]UPSTREAM_PORT DELAY_MS "
            "[SLOW_MS]\n"
            "  forwards LISTEN_HOST:LISTEN_PORT (default 127.0.0.1; a numeric address) to\n"
            "  UPSTREAM_HOST:UPSTREAM_PORT (default 127.0.0.1; an address or a name), delaying\n"
            "  each direction by DELAY_MS milliseconds (0 to 60000, fractions allowed);\n"
            "  SIGUSR1 switches to SLOW_MS, SIGUSR2 back to DELAY_MS\n",
            argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    proxy.delay_us = (long long)(delay_ms * 1000.0 + 0.5);
    proxy.normal_us = proxy.delay_us;
    proxy.slow_us = (long long)(slow_ms * 1000.0 + 0.5);
    /* Precise timers: libevent's default clock on Linux is coarse (a few ms), far too coarse
     * for delays of a few milliseconds. */
    struct event_config *config = event_config_new();
    event_config_set_flag(config, EVENT_BASE_FLAG_PRECISE_TIMER);
    proxy.base = event_base_new_with_config(config);
    event_config_free(config);
    if (proxy.base == NULL) {
        fprintf(stderr, "delay-proxy: cannot create the event loop\n");
        return 1;
    }

    char listen_text[INET6_ADDRSTRLEN + 16], upstream_text[INET6_ADDRSTRLEN + 16];
    address_text(&addr, listen_text, sizeof listen_text);
    if (proxy.upstream_host != NULL) {
        snprintf(upstream_text, sizeof upstream_text, "%.*s:%d", INET6_ADDRSTRLEN,
                 proxy.upstream_host, proxy.upstream_port);
        proxy.dns = evdns_base_new(proxy.base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                                   EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (proxy.dns == NULL) {
            fprintf(stderr, "delay-proxy: cannot set up the resolver\n");
            event_base_free(proxy.base);
            return 1;
        }
    } else {
        address_text(&proxy.upstream, upstream_text, sizeof upstream_text);
    }
    struct evconnlistener *listener = evconnlistener_new_bind(
        proxy.base, on_accept, &proxy, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 1024,
        (struct sockaddr *)&addr, addr_len);
    if (listener == NULL) {
        fprintf(stderr, "delay-proxy: cannot listen on %s: %s\n", listen_text, strerror(errno));
        if (proxy.dns != NULL)
            evdns_base_free(proxy.dns, 0);
        event_base_free(proxy.base);
        return 1;
    }
    evconnlistener_set_error_cb(listener, on_accept_error);
    struct event *term = evsignal_new(proxy.base, SIGTERM, on_signal, &proxy);
    struct event *intr = evsignal_new(proxy.base, SIGINT, on_signal, &proxy);
    struct event *usr1 = evsignal_new(proxy.base, SIGUSR1, on_signal, &proxy);
    struct event *usr2 = evsignal_new(proxy.base, SIGUSR2, on_signal, &proxy);
    event_add(term, NULL);
    event_add(intr, NULL);
    event_add(usr1, NULL);
    event_add(usr2, NULL);
    fprintf(stderr, "delay-proxy: %s -> %s, +%.3f ms each way\n", listen_text, upstream_text,
            (double)proxy.delay_us / 1000.0);

    event_base_dispatch(proxy.base);

    fprintf(stderr,
            "delay-proxy: stopped; %lld connections (%lld open, %lld upstream failures), "
            "%lld bytes to upstream, %lld bytes back\n",
            proxy.links_total, proxy.links_open, proxy.upstream_failures, proxy.bytes[0],
            proxy.bytes[1]);
    evconnlistener_free(listener);
    event_free(term);
    event_free(intr);
    event_free(usr1);
    event_free(usr2);
    if (proxy.dns != NULL)
        evdns_base_free(proxy.dns, 0);
    event_base_free(proxy.base); /* pairs still open are abandoned: the process ends here */
    return 0;
}
