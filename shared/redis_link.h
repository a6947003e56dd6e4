/*
 * redis_link: one hiredis asynchronous connection on the event loop that keeps itself connected.
 *
 * hiredis 0.14 (Debian 12) neither times out a connect nor reconnects, and every user of Redis
 * needs both: the command client (redis.h), a pub/sub subscription (redis_subscriber.h), a
 * connection reserved for blocking commands. The link is that shared part, written once:
 * - connecting has a deadline (connect_timeout_ms); a failed or lost connection is retried with
 *   backoff (backoff.h: 100 ms doubling to 2 s), one log line per outage;
 * - with a resolver, a host name is looked up (evdns, resolve.h) on every (re)connect, off the
 *   event loop's critical path, and hiredis is given the numeric address: redisAsyncConnect
 *   would otherwise call the blocking getaddrinfo() on the loop. Without one (NULL), hiredis
 *   resolves the name itself, as before;
 * - a 50 ms tick drives the deadlines and retries, and lets the owner check its own deadlines
 *   (a command's reply, a SUBSCRIBE's confirmation) and drop the link when one has passed.
 * What travels on the connection (commands, subscriptions) and what a deadline means for it is
 * the owner's business: the link only hands out the context while it is up.
 *
 * States: DOWN (waiting for the next attempt) -> RESOLVING -> CONNECTING -> UP -> DOWN.
 * hiredis owns and frees its context after reporting a failed connect and after a disconnect;
 * the link calls redisAsyncFree only from its tick, redis_link_drop or redis_link_free, never
 * from inside a hiredis callback.
 */
#ifndef LAYERS_REDIS_LINK_H
#define LAYERS_REDIS_LINK_H

#include <hiredis/async.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct resolver;
struct redis_link;

/*
 * The owner's callbacks, all called on the event loop, never from inside redis_link_create,
 * redis_link_drop or redis_link_free. Any may be NULL.
 * - up: the connection is established; `ac` may carry commands until `down` is called.
 * - down: a connection that was up is gone (lost, or dropped by redis_link_drop). Commands in
 *   flight on it get their hiredis callback with a NULL reply (before or after this call).
 *   Called once per `up`.
 * - tick: every 50 ms, after the link's own deadlines: the owner's chance to enforce its own.
 */
struct redis_link_callbacks {
    void (*up)(redisAsyncContext *ac, void *arg);
    void (*down)(void *arg);
    void (*tick)(void *arg);
};

/*
 * Parses url (redis://host:port[/db], database 0 only) and starts connecting at once. NULL (and
 * a log line) when the URL is malformed. resolver may be NULL (hiredis resolves, blocking).
 */
struct redis_link *redis_link_create(struct event_base *base, struct resolver *resolver,
                                     const char *url, long connect_timeout_ms,
                                     const struct redis_link_callbacks *callbacks, void *arg);
/* Closes the connection without calling `down`; hiredis fails its commands (NULL replies). NULL is a no-op. */
void redis_link_free(struct redis_link *link);

/* The connection while UP, else NULL. */
redisAsyncContext *redis_link_context(const struct redis_link *link);
bool redis_link_up(const struct redis_link *link);

/*
 * Drops the connection now (an owner's deadline passed: the server stopped answering) and
 * schedules a reconnect with backoff; `down` is called if it was up. No-op while DOWN.
 */
void redis_link_drop(struct redis_link *link, const char *why);

/* Enforces the connect deadline and reconnects when due; safe to call often (the tick does). */
void redis_link_maintain(struct redis_link *link);

/* Parses redis://host:port[/db]; false when malformed. */
bool redis_link_parse_url(const char *url, char *host, size_t hostlen, int *port)
    __attribute__((warn_unused_result));

#endif
