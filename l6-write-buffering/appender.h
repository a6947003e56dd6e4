/*
 * appender: the API's writes of one event-loop turn, appended to the queue in one script call.
 *
 * Every write used to be one EVALSHA of the write script: a script call costs Redis about as
 * much as the five commands it runs (README, "Where the time goes"), and the API one round trip
 * and one reply to parse per write. Under load many writes arrive in the same turn of the loop
 * (every ready connection is read before the loop waits again), so the appender collects them
 * and sends them together at the end of the turn: one EVALSHA carrying N writes (the length
 * check once, N XADDs and pending values in arrival order, one HINCRBY by N).
 *
 * The rules of the queue hold per write (README, "The rules that make it lossless"):
 * - a write is acknowledged only by the reply of the call that carried it, which Redis sends
 *   after every XADD of the call ran; its own stream id is its element of that reply;
 * - the writes of a call are appended in arrival order, and calls are sent in order on one
 *   connection, so the order per key is still the order of the writes' arrival, as the stream's;
 * - the length bound stays exact: the script counts the stream as it appends, and refuses
 *   (WQ_APPEND_FULL) each write past the bound, the writes before it accepted;
 * - a call that fails (Redis unreachable, a timeout, an error reply) fails every write it
 *   carried: none is acknowledged, each gets its 503.
 * Bounded: at most QUEUE_APPEND_MAX_WRITES (64) writes a call (a full call is sent at once, the
 * next writes start another); no timer wait: a lone write leaves at the end of its own turn, so the
 * latency a quiet server adds is one pass of the loop, not a flush interval.
 */
#ifndef L6_APPENDER_H
#define L6_APPENDER_H

#include "write_queue.h"

#include <stddef.h>

struct event_base;
struct appender;

/* The most writes one script call carries (its reply is an array of as many ids); the setting
 * QUEUE_APPEND_MAX_WRITES may lower it. */
#define WQ_APPEND_MAX_WRITES 64

/* Called exactly once per write, from the event loop, or from appender_free for writes not
 * sent yet (WQ_APPEND_UNAVAILABLE). id is the write's stream id when the result is
 * WQ_APPEND_OK (valid during the call), else NULL. */
typedef void (*appender_cb)(enum wq_append_result result, const char *id, void *arg);

/* script: WQ_WRITE_SCRIPT on the queue's connection; limits: read at every send; max_writes:
 * the writes a call carries at most (1 to WQ_APPEND_MAX_WRITES; 1: a call per write, as before
 * the appender, kept to measure against). */
struct appender *appender_create(struct event_base *base, struct wq_script *script,
                                 const struct wq_limits *limits, size_t max_writes);
/* Answers the writes not sent yet (unavailable); calls in flight are answered by the script's
 * connection. NULL is a no-op. */
void appender_free(struct appender *a);

/* Queues a write for the end of this loop turn. key and value are NOT copied: they must stay
 * valid until cb is called. */
void appender_append(struct appender *a, const char *key, size_t key_len, const char *value,
                     size_t value_len, appender_cb cb, void *arg);

#endif
