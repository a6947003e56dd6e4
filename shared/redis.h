/*
 * redis: a Redis client on the server's own event loop (hiredis async + its libevent adapter).
 *
 * hiredis 0.14 (Debian 12) neither times out nor reconnects, so this module adds both:
 * - connecting has a deadline; a lost or failed connection is retried with backoff
 *   (100 ms doubling to 2 s) from redis_maintain(), called by the server's maintenance timer
 *   and by its own 50 ms tick;
 * - every command has a deadline. Replies come back in order, so the commands in flight form a
 *   FIFO whose head is always the oldest: when the head is overdue, the connection is dropped
 *   and every pending command fails at once (its callback gets NULL), instead of waiting on a
 *   server that stopped answering;
 * - at most REDIS_MAX_PENDING commands are in flight; more fail at once.
 * A cache is optional: callers treat a NULL reply as "cache unavailable" and carry on without it.
 */
#ifndef LAYERS_REDIS_H
#define LAYERS_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct metrics;
struct redis;

#define REDIS_MAX_PENDING 10000

struct redis_settings {
    const char *url;         /* redis://host:port[/db] (database 0 only) */
    long connect_timeout_ms; /* deadline for connecting */
    long command_timeout_ms; /* deadline for each command's reply */
};

/*
 * Called exactly once per command, from the event loop or (when Redis is unavailable) before
 * redis_command returns. `reply` is NULL when the command failed (no connection, timeout,
 * disconnect); it is freed after the callback returns. A Redis error reply is a reply.
 */
typedef void (*redis_reply_cb)(redisReply *reply, void *arg);

struct redis *redis_create(struct event_base *base, const struct redis_settings *settings,
                           struct metrics *metrics);
/* Closes the connection; pending callbacks are called with NULL. NULL is a no-op. */
void redis_free(struct redis *redis);

/* Sends one command (binary-safe arguments). */
void redis_command(struct redis *redis, redis_reply_cb cb, void *arg, int argc, const char **argv,
                   const size_t *argvlen);

/* True while connected. */
bool redis_available(const struct redis *redis);

/* Reconnects when due and enforces deadlines; safe to call often. */
void redis_maintain(struct redis *redis);

/* Parses redis://host:port[/db]; false when malformed. */
bool redis_parse_url(const char *url, char *host, size_t hostlen, int *port)
    __attribute__((warn_unused_result));

#endif
