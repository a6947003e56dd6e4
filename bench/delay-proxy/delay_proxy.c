/*
 * delay-proxy: a TCP proxy that delays every byte by a fixed one-way latency.
 *
 * Real databases are never on the same host as their clients, and this kernel has no netem, so
 * the benchmark puts this proxy between a server and its PostgreSQL (`--db-latency 5ms`) to
 * show what pooling and non-blocking I/O buy when a round trip costs milliseconds. Each chunk
 * read from one side is stamped with the time it may leave and held in a FIFO; a per-direction
 * timer forwards it when its time comes, so order is kept and the delay applies to each chunk
 * exactly once (a request/response round trip costs two delays). Buffers are bounded: a
 * direction holding more than MAX_HELD bytes stops reading until it drains.
 *
 *   delay-proxy LISTEN_PORT UPSTREAM_PORT DELAY_MS     (both on 127.0.0.1)
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define MAX_HELD (4 * 1024 * 1024)

struct chunk {
    struct chunk *next;   /* FIFO order */
    long long due_us;     /* monotonic time it may be forwarded */
    struct evbuffer *data; /* the bytes */
};

struct direction {
    struct bufferevent *from, *to; /* read side, write side */
    struct chunk *head, *tail;     /* held chunks */
    size_t held;                   /* bytes held */
    struct event *timer;           /* fires when the head is due */
    struct link *link;             /* the connection pair it belongs to */
};

struct link {
    struct direction up, down; /* client->server, server->client */
    int closing;               /* one side closed: finish when both directions drained */
};

static long delay_us;
static struct event_base *base;
static struct sockaddr_in upstream;

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void free_link(struct link *link)
{
    struct direction *dirs[] = {&link->up, &link->down};
    for (int i = 0; i < 2; i++) {
        struct chunk *c = dirs[i]->head;
        while (c) {
            struct chunk *next = c->next;
            evbuffer_free(c->data);
            free(c);
            c = next;
        }
        event_free(dirs[i]->timer);
    }
    bufferevent_free(link->up.from);
    bufferevent_free(link->down.from);
    free(link);
}

static void arm(struct direction *d)
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

static void maybe_finish(struct link *link)
{
    if (link->closing && link->up.head == NULL && link->down.head == NULL &&
        evbuffer_get_length(bufferevent_get_output(link->up.to)) == 0 &&
        evbuffer_get_length(bufferevent_get_output(link->down.to)) == 0)
        free_link(link);
}

static void on_due(evutil_socket_t fd, short what, void *arg)
{
    struct direction *d = arg;
    (void)fd, (void)what;
    long long now = now_us();
    while (d->head && d->head->due_us <= now) {
        struct chunk *c = d->head;
        d->head = c->next;
        if (d->head == NULL)
            d->tail = NULL;
        d->held -= evbuffer_get_length(c->data);
        bufferevent_write_buffer(d->to, c->data);
        evbuffer_free(c->data);
        free(c);
    }
    if (d->held < MAX_HELD && !d->link->closing)
        bufferevent_enable(d->from, EV_READ);
    arm(d);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct link *link = arg;
    struct direction *d = bev == link->up.from ? &link->up : &link->down;
    struct chunk *c = calloc(1, sizeof *c);
    c->data = evbuffer_new();
    c->due_us = now_us() + delay_us;
    d->held += evbuffer_get_length(bufferevent_get_input(bev));
    bufferevent_read_buffer(bev, c->data);
    if (d->tail)
        d->tail->next = c;
    else
        d->head = c;
    d->tail = c;
    if (d->held >= MAX_HELD)
        bufferevent_disable(bev, EV_READ); /* bounded: wait for the queue to drain */
    if (!event_pending(d->timer, EV_TIMEOUT, NULL))
        arm(d);
}

static void on_drained(struct bufferevent *bev, void *arg)
{
    (void)bev;
    maybe_finish(arg);
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
    if (what & BEV_EVENT_CONNECTED) {
        set_nodelay(bufferevent_getfd(bev));
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        /* Stop reading both ways; deliver what is held (after its delay), then close. */
        link->closing = 1;
        bufferevent_disable(link->up.from, EV_READ);
        bufferevent_disable(link->down.from, EV_READ);
        if (what & BEV_EVENT_ERROR) {
            free_link(link);
            return;
        }
        maybe_finish(link);
    }
}

static void init_direction(struct direction *d, struct link *link, struct bufferevent *from,
                           struct bufferevent *to)
{
    d->from = from;
    d->to = to;
    d->link = link;
    d->timer = evtimer_new(base, on_due, d);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                      int len, void *arg)
{
    (void)listener, (void)sa, (void)len, (void)arg;
    struct link *link = calloc(1, sizeof *link);
    set_nodelay(fd);
    struct bufferevent *client = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    struct bufferevent *server = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    init_direction(&link->up, link, client, server);
    init_direction(&link->down, link, server, client);
    bufferevent_setcb(client, on_read, on_drained, on_event, link);
    bufferevent_setcb(server, on_read, on_drained, on_event, link);
    if (bufferevent_socket_connect(server, (struct sockaddr *)&upstream, sizeof upstream) != 0) {
        free_link(link);
        return;
    }
    bufferevent_enable(client, EV_READ | EV_WRITE);
    bufferevent_enable(server, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what, (void)arg;
    event_base_loopexit(base, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT DELAY_MS\n", argv[0]);
        return 2;
    }
    int listen_port = atoi(argv[1]), upstream_port = atoi(argv[2]);
    delay_us = (long)(atof(argv[3]) * 1000.0);
    signal(SIGPIPE, SIG_IGN);
    /* Precise timers: libevent's default clock on Linux is coarse (a few ms), far too coarse
     * for delays of a few milliseconds. */
    struct event_config *config = event_config_new();
    event_config_set_flag(config, EVENT_BASE_FLAG_PRECISE_TIMER);
    base = event_base_new_with_config(config);
    event_config_free(config);
    upstream.sin_family = AF_INET;
    upstream.sin_port = htons((uint16_t)upstream_port);
    upstream.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)listen_port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct evconnlistener *listener =
        evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
                                512, (struct sockaddr *)&addr, sizeof addr);
    if (listener == NULL) {
        fprintf(stderr, "delay-proxy: cannot listen on 127.0.0.1:%d\n", listen_port);
        return 1;
    }
    struct event *term = evsignal_new(base, SIGTERM, on_signal, NULL);
    struct event *intr = evsignal_new(base, SIGINT, on_signal, NULL);
    event_add(term, NULL);
    event_add(intr, NULL);
    fprintf(stderr, "delay-proxy: 127.0.0.1:%d -> 127.0.0.1:%d, +%.2f ms each way\n", listen_port,
            upstream_port, (double)delay_us / 1000.0);
    event_base_dispatch(base);
    evconnlistener_free(listener);
    event_free(term);
    event_free(intr);
    event_base_free(base);
    return 0;
}
