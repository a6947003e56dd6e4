/*
 * resolve: host names to addresses without blocking the event loop.
 *
 * libpq's PQconnectStart and hiredis's redisAsyncConnect both call getaddrinfo() themselves,
 * which blocks the whole server for as long as the DNS server takes (seconds, when it is down).
 * With docker-compose every URL names a host ("l6-db"), so each reconnect would stall every
 * request. This module asks libevent's asynchronous resolver (evdns, which also reads
 * /etc/hosts) instead; callers then connect to the numeric address it hands back. A numeric
 * host is answered without any lookup.
 *
 * One resolver per event loop, created by whoever owns the loop and passed down explicitly.
 */
#ifndef LAYERS_RESOLVE_H
#define LAYERS_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct resolver;
struct resolve_request;

/* The longest a lookup may take before it fails (evdns retries inside this bound). */
#define RESOLVE_TIMEOUT_MS 2000

/*
 * Called exactly once per resolver_lookup that was not cancelled, always from the event loop
 * and never from inside resolver_lookup. `address` is a numeric IPv4 or IPv6 address valid only
 * during the call, or NULL when the name could not be resolved (the reason is logged).
 */
typedef void (*resolve_cb)(const char *address, void *arg);

struct resolver *resolver_create(struct event_base *base);
/* Fails every lookup still under way (their callbacks are not called). NULL is a no-op. */
void resolver_free(struct resolver *resolver);

/* Starts resolving host; returns a handle for resolve_cancel, valid until the callback. */
struct resolve_request *resolver_lookup(struct resolver *resolver, const char *host, resolve_cb cb,
                                        void *arg);

/* Cancels a lookup under way: its callback will not be called. NULL is a no-op. */
void resolve_cancel(struct resolve_request *request);

/* True when host is already a numeric IPv4 or IPv6 address (no lookup needed). */
bool resolve_is_numeric(const char *host);

#endif
