/*
 * redis: a Redis client on the server's own event loop (hiredis async + its libevent adapter).
 *
 * The connection, its connect deadline, reconnects with backoff and host name lookups are a
 * redis_link (redis_link.h); this module adds what a command client needs on top:
 * - every command has a deadline. Replies come back in order, so the commands in flight form a
 *   FIFO whose head is always the oldest: when the head is overdue, the connection is dropped
 *   and every pending command fails at once (its callback gets NULL), instead of waiting on a
 *   server that stopped answering;
 * - at most REDIS_MAX_PENDING commands are in flight; more fail at once.
 * A cache is optional: callers treat a NULL reply as "cache unavailable" and carry on without it.
 *
 * Blocking commands (XREADGROUP ... BLOCK n, BLPOP) wait on the server for up to n ms by design,
 * so on the shared command connection they would either hit the command deadline (and drop
 * the connection with everything in flight) or hold every command queued behind them. They get
 * a connection of their own: one created with settings.blocking, where redis_command_blocking
 * sends one command at a time with a deadline of its block time plus command_timeout_ms.
 */
#ifndef LAYERS_REDIS_H
#define LAYERS_REDIS_H

#include "config.h"
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct metrics;
struct redis;
struct resolver;

#define REDIS_MAX_PENDING 10000

struct redis_settings {
    const char *url;           /* redis://host:port[/db] (database 0 only) */
    long connect_timeout_ms;   /* deadline for connecting */
    long command_timeout_ms;   /* deadline for each command's reply */
    struct resolver *resolver; /* resolves a host name without blocking; NULL: hiredis does */
    bool blocking;             /* a connection for redis_command_blocking (see above) */
};

/*
 * Called exactly once per command, from the event loop or (when Redis is unavailable) before
 * redis_command returns. `reply` is NULL when the command failed (no connection, timeout,
 * disconnect); it is freed after the callback returns. A Redis error reply is a reply.
 */
typedef void (*redis_reply_cb)(redisReply *reply, void *arg);

/* The settings of a REDIS_CONFIG_SET: one deadline for connecting and for each reply. */
struct redis_settings redis_settings_of(const char *url, long timeout_ms,
                                        struct resolver *resolver);

/* NULL (logged) when the URL is malformed. */
struct redis *redis_create(struct event_base *base, const struct redis_settings *settings,
                           struct metrics *metrics);
/* Closes the connection; pending callbacks are called with NULL. NULL is a no-op. */
void redis_free(struct redis *redis);

/*
 * Sends one command (binary-safe arguments). On a blocking connection it fails at once (NULL)
 * while a blocking command is in flight: it would wait behind it.
 */
void redis_command(struct redis *redis, redis_reply_cb cb, void *arg, int argc, const char **argv,
                   const size_t *argvlen);

/*
 * Sends one blocking command whose server-side wait is at most block_ms (the BLOCK or timeout
 * argument the caller put in argv); its reply is due within block_ms + command_timeout_ms.
 * Returns false, without calling cb, when the command was refused: the connection was not
 * created with settings.blocking, is not connected, or has a command in flight. The caller tries
 * again later (its own timer, or the reply callback of the previous command).
 */
bool redis_command_blocking(struct redis *redis, long block_ms, redis_reply_cb cb, void *arg,
                            int argc, const char **argv, const size_t *argvlen)
    __attribute__((warn_unused_result));

/* True while connected. */
bool redis_available(const struct redis *redis);

/* Reconnects when due and enforces deadlines, and sends a heartbeat PING when nothing is in
 * flight (a hung Redis is noticed without traffic); call it once a second. */
void redis_maintain(struct redis *redis);

/* Parses redis://host:port[/db]; false when malformed (redis_link_parse_url). */
bool redis_parse_url(const char *url, char *host, size_t hostlen, int *port)
    __attribute__((warn_unused_result));

/* Its settings, as a set for a program's table (config.h). */
/* One Redis server: its URL (`char **`) and the deadline of connecting and of each command. */
#define REDIS_CONFIG_SET(url_target, timeout_target, default_url)                                  \
    CONFIG_ROWS_SET("Redis",                                                                       \
                    {"REDIS_URL", CONFIG_URL, (default_url), 0, 0, "Redis connection URL",         \
                     (url_target), NULL},                                                          \
                    {"REDIS_TIMEOUT_MS", CONFIG_INT, "500", 10, 60000,                             \
                     "deadline for connecting to Redis and for each command", (timeout_target),    \
                     NULL})

#endif
