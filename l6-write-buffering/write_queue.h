/*
 * write_queue: what the API and the worker of layer 6 share: the Redis key names, the Lua
 * scripts that touch them, the SQL of the drain, and the encodings of a write on its way.
 *
 *   API:    EVAL WRITE_SCRIPT  -> XADD l6:writes, HSET l6:pending, HINCRBY l6:stats (atomic)
 *   worker: XREADGROUP l6:writes -> INSERT ... FROM unnest(arrays) -> EVAL FINISH_SCRIPT
 *           (dead letters, XACK, XDEL, pending fields still its own removed, counters)
 *
 * A write's version is its stream id "ms-seq" as one bigint, ms * 1,000,000 + seq. Redis makes
 * ids strictly increasing, so versions are too; they cannot collide while seq stays below a
 * million, i.e. fewer than a million writes in one millisecond (a thousand times what one Redis
 * can append). An id past that (only possible after the clock stepped back a long way under
 * heavy load) is refused by wq_parse_id and goes to the dead letters, never stored out of order.
 */
#ifndef L6_WRITE_QUEUE_H
#define L6_WRITE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#define WQ_STREAM  "l6:writes"  /* the queue: one entry per accepted write */
#define WQ_PENDING "l6:pending" /* key -> {"id","created","value"} of its newest queued write */
#define WQ_STATS   "l6:stats"   /* counters shared by every process */
#define WQ_DEAD    "l6:dead"    /* entries the database refused for good */
#define WQ_WORKERS "l6:workers" /* consumer -> last heartbeat (Redis time, ms) */
#define WQ_GROUP   "workers"    /* the consumer group of the workers */

/* The error a full queue answers WRITE_SCRIPT with (the reply's text starts with it). */
#define WQ_FULL "QUEUE_FULL"

/* KEYS stream pending stats; ARGV key value max_length max_age_ms -> the entry's id. */
extern const char WQ_WRITE_SCRIPT[];
/* KEYS stream dead pending stats; ARGV group n_pairs n_dead (key id)*n_pairs
 * (id key value error)*n_dead id... -> writes counted as processed. See write_queue.c. */
extern const char WQ_FINISH_SCRIPT[];
/* KEYS workers; ARGV consumer: records a heartbeat at Redis's own clock. */
extern const char WQ_HEARTBEAT_SCRIPT[];
/* KEYS stream stats dead workers; ARGV group -> {length, queued, processed, batches, pending,
 * dead, oldest_age_ms (-1 when empty), workers seen in the last 5 s}. */
extern const char WQ_STATS_SCRIPT[];

/* Adds the version column to the common table (idempotent, under the schema lock). */
extern const char WQ_SQL_SCHEMA[];
/* $1 keys, $2 values, $3 versions, $4 created (epoch ms): array literals. Applies each row
 * only over an older version; created_at is set on insert and kept on update. */
extern const char WQ_SQL_UPSERT[];

/* A stream id "ms-seq". */
struct wq_id {
    long long ms;  /* Redis server time of the append, milliseconds since the epoch */
    long long seq; /* sequence within that millisecond */
};

/* Parses "ms-seq"; false when malformed or seq >= 1,000,000. */
bool wq_parse_id(const char *text, size_t len, struct wq_id *out) __attribute__((warn_unused_result));

/* ms * 1,000,000 + seq */
long long wq_version(struct wq_id id);

/* Formats epoch milliseconds as RFC 3339 UTC with microseconds (as PostgreSQL's replies):
 * "2026-11-22T09:09:18.386000Z". out needs 32 bytes. */
void wq_format_ms(long long ms, char *out, size_t outlen);

/*
 * PostgreSQL array literals, built one element at a time: wq_array_start, then
 * wq_array_add_text / wq_array_add_int, then wq_array_finish. Text elements are always quoted,
 * with `"` and `\` escaped, so any text (braces, commas, quotes, "NULL") arrives as itself.
 */
struct wq_array {
    char *data;   /* the literal so far, NUL-terminated */
    size_t len;   /* its length */
    size_t cap;   /* bytes allocated */
    size_t count; /* elements added */
};

void wq_array_start(struct wq_array *a);
void wq_array_add_text(struct wq_array *a, const char *text, size_t len);
void wq_array_add_int(struct wq_array *a, long long n);
/* Returns the finished literal (owned by a until wq_array_cleanup). */
const char *wq_array_finish(struct wq_array *a);
void wq_array_cleanup(struct wq_array *a);

#endif
