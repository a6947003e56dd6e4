/*
 * pg_listener: a PostgreSQL connection of its own that LISTENs on one channel and says when a
 * NOTIFY arrives (layer 7's relay is woken this way instead of polling).
 *
 * NOTIFY is PostgreSQL's built-in signal: a transaction that runs `NOTIFY outbox` delivers it to
 * every session that ran `LISTEN outbox`, when (and only if) it commits. A listening session
 * must stay open and idle, reading what the server sends, so it cannot be a pooled connection
 * (a pool lends connections to queries and closes idle ones); it gets its own, here.
 *
 * What a notification does NOT promise: delivery while the listener is disconnected (a NOTIFY
 * sent then is lost). So the owner treats a notification as a hint to look, and this module
 * calls `wake` once more after every (re)connect, and the owner keeps a slow poll as a safety
 * net. Connecting has a deadline; a lost connection is retried with backoff (100 ms doubling to
 * 2 s, backoff.h), one log line per outage. Notifications that arrive together (one read of the
 * socket) wake the owner once.
 *
 * The URL's host name is looked up with the caller's resolver (resolve.h), so a slow DNS never
 * stalls the loop; with a NULL resolver libpq looks it up itself (blocking: tools only).
 */
#ifndef LAYERS_PG_LISTENER_H
#define LAYERS_PG_LISTENER_H

#include <stdbool.h>

struct event_base;
struct pg_listener;
struct resolver;

/* Called from the event loop, never from inside pg_listener_create or pg_listener_free: a
 * notification arrived on the channel, or the listener has just (re)connected. */
typedef void (*pg_listener_wake_cb)(void *arg);

/* Called once per notification with its payload (the NOTIFY's text, valid during the call),
 * before the wake it belongs to: for an owner that acts on what a notification names (layer 9
 * invalidates the key a replicated row changed). */
typedef void (*pg_listener_payload_cb)(const char *payload, void *arg);

/* Starts connecting at once. channel must be a plain identifier (letters, digits, '_'). */
struct pg_listener *pg_listener_create(struct event_base *base, struct resolver *resolver,
                                       const char *url, const char *channel,
                                       long connect_timeout_ms, pg_listener_wake_cb wake,
                                       void *arg);
/* Closes the connection; no more callbacks. NULL is a no-op. */
void pg_listener_free(struct pg_listener *listener);

/* True while the LISTEN is in force (connected, LISTEN acknowledged). */
bool pg_listener_up(const struct pg_listener *listener);

/* Notifications received since creation. */
unsigned long long pg_listener_notifications(const struct pg_listener *listener);

/* Also hands each notification's payload to cb (with the wake's arg); NULL stops it. */
void pg_listener_on_payload(struct pg_listener *listener, pg_listener_payload_cb cb);

/* How many times the LISTEN has come into force (1 after the first connect). An owner that must
 * not miss a notification sees a reconnect, and so possibly lost notifications, when it grows. */
unsigned long long pg_listener_sessions(const struct pg_listener *listener);

#endif
