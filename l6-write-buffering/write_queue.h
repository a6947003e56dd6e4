/*
 * write_queue: the queue of layer 6, as its API and its worker use it: the Redis key names, the
 * Lua scripts that touch them, the SQL of the drain, the encodings of a write on its way, and
 * the API's three calls on the queue (append a write, look up a key's queued write, read the
 * queue's numbers), so that the handlers read like layer 2's with the queue in front.
 *
 *   API:    EVALSHA WRITE_SCRIPT (the writes of one loop turn, appender.c) -> XLEN, per write
 *           XADD l6:writes and HSET l6:pending, HINCRBY l6:stats (atomic)
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

#include "redis.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct record;

#define WQ_STREAM  "l6:writes"  /* the queue: one entry per accepted write */
#define WQ_PENDING "l6:pending" /* key -> {"id","created","value"} of its newest queued write */
#define WQ_STATS   "l6:stats"   /* counters shared by every process */
#define WQ_DEAD    "l6:dead"    /* entries the database refused for good */
#define WQ_WORKERS "l6:workers" /* consumer -> last heartbeat (Redis time, ms) */
#define WQ_GROUP   "workers"    /* the consumer group of the workers */
#define WQ_DELAY   "l6:commit_delay" /* bucket's upper bound (ms) -> entries; "max" -> largest */

/* The error a full queue answers WRITE_SCRIPT with (the reply's text starts with it). */
#define WQ_FULL "QUEUE_FULL"

/* KEYS stream pending stats; ARGV max_length (key value)... -> per write, in order, its entry's
 * id, or 0 when refused by the length bound. */
extern const char WQ_WRITE_SCRIPT[];
/* KEYS stream dead pending stats delay; ARGV group n_pairs n_dead n_buckets max_delay_ms
 * (bucket count)*n_buckets (key id)*n_pairs (id key value error)*n_dead id...
 * -> {writes counted as processed, Redis's clock in ms}. See write_queue.c. */
extern const char WQ_FINISH_SCRIPT[];
/* KEYS workers stream; ARGV consumer gone_ms group: records a heartbeat at Redis's own clock and
 * deletes the consumers of workers silent for gone_ms that hold no pending entry. */
extern const char WQ_HEARTBEAT_SCRIPT[];
/* KEYS stream stats dead workers delay; ARGV group -> {length, queued, processed, batches,
 * pending, dead, oldest_age_ms (-1 when empty), workers seen in the last 5 s, HGETALL delay}. */
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
bool wq_parse_id(const char *text, size_t len, struct wq_id *out)
    __attribute__((warn_unused_result));

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

/*
 * The acknowledgement-to-commit delay: for each entry a worker commits, its commit time minus
 * its stream id's milliseconds, both on Redis's clock. Counted in a log-bucketed histogram:
 * exact below 16 ms, then 8 buckets per power of two (a bucket's values within 12.5% of each
 * other). The worker adds each batch's counts to WQ_DELAY (one field per bucket, named by the
 * bucket's upper bound in ms) in its finish script; the API reads them back for /stats.
 */
#define WQ_DELAY_EXACT   16  /* delays below this have a bucket each */
#define WQ_DELAY_SUB     8   /* buckets per power of two above it */
#define WQ_DELAY_BUCKETS 304 /* up to 2^40 ms; longer delays count in the last bucket */

struct wq_delay {
    long long counts[WQ_DELAY_BUCKETS]; /* entries per bucket */
    long long count;                    /* their sum */
    long long max_ms;                   /* the largest delay added, exactly */
};

/* The bucket of a delay (negative delays, from a clock stepped back, count as 0). */
int wq_delay_bucket(long long ms);
/* The largest delay in a bucket, in ms. */
long long wq_delay_upper(int bucket);
void wq_delay_add(struct wq_delay *h, long long ms, long long n);
/* The delay p (0 < p <= 1) of the entries are at most: the upper bound of the bucket it falls
 * in, never above max_ms; -1 when the histogram is empty. */
long long wq_delay_percentile(const struct wq_delay *h, double p);
/* Fills h from an HGETALL WQ_DELAY reply; fields it does not know are skipped. */
void wq_delay_parse(const redisReply *reply, struct wq_delay *h);

/* ---- the API's calls on the queue (callbacks as redis_command's: exactly once) ---- */

/* The queue's bounds: past either, a write is refused (503 + Retry-After). */
struct wq_limits {
    long max_length; /* QUEUE_MAX_LENGTH: entries not yet committed */
    long max_age_ms; /* QUEUE_MAX_AGE_MS: age of the oldest of them */
};

/*
 * A Lua script run by its SHA1 (EVALSHA): loaded with SCRIPT LOAD on first use, sent as EVAL
 * (and loaded again) when Redis answers NOSCRIPT. Free it after the Redis connection (whose
 * teardown answers the calls in flight).
 */
struct wq_script;
struct wq_script *wq_script_create(struct redis *redis, const char *body);
void wq_script_free(struct wq_script *script);
/* argv: numkeys, the keys, the arguments (copied: a NOSCRIPT answer sends them again). */
void wq_script_run(struct wq_script *script, redis_reply_cb cb, void *arg, int argc,
                   const char **argv, const size_t *lens);

enum wq_append_result {
    WQ_APPEND_OK,          /* in the stream (and in Redis's AOF buffer) */
    WQ_APPEND_FULL,        /* refused: the queue is past a bound */
    WQ_APPEND_UNAVAILABLE, /* Redis unreachable, or it failed the script (logged) */
};

/* What a failed write script call says for all its writes (an error reply, or NULL): full
 * when the error starts with WQ_FULL, else unavailable; any other reply: OK. */
enum wq_append_result wq_append_result(const redisReply *reply);
/* What a write script call's reply says for its i-th of n writes; *id: its stream id when OK
 * (points into reply), else NULL. A failed call fails each of its writes. */
enum wq_append_result wq_append_result_of(const redisReply *reply, size_t i, size_t n,
                                          const char **id) __attribute__((warn_unused_result));

/* Looks up the key's queued write (HGET l6:pending key). */
void wq_lookup(struct redis *redis, const char *key, size_t key_len, redis_reply_cb cb, void *arg);

/*
 * The queued write a wq_lookup reply holds, as a record (caller frees): its value, updated_at
 * at its append, created_at at the first queued write of the key (what a new row will get).
 * NULL when no write of the key is queued, or the pending value is malformed (logged).
 */
struct record *wq_queued_record(const redisReply *reply, const char *key, size_t key_len);

/* The queue's numbers, counted where they happen (the write script, the workers). */
struct wq_stats {
    bool available;          /* Redis answered */
    long long length;        /* XLEN: entries not yet committed */
    long long queued;        /* writes_queued, by the write script */
    long long processed;     /* writes_processed, by the workers' finish script */
    long long batches;       /* batches finished by all workers */
    long long pending;       /* XPENDING: delivered to a worker, not acknowledged */
    long long dead;          /* XLEN of the dead-letter stream */
    long long oldest_age_ms; /* age of the oldest entry, -1 when the stream is empty */
    long long workers;       /* workers with a heartbeat in the last 5 s */
    long long delays;        /* entries in the commit-delay histogram */
    long long delay_p50_ms;  /* its median, in ms (-1 when empty) */
    long long delay_p99_ms;  /* its 99th percentile */
    long long delay_max_ms;  /* the largest delay counted */
};

/* Reads them in one script (WQ_STATS_SCRIPT); parse the reply with wq_parse_stats. */
void wq_read_stats(struct redis *redis, redis_reply_cb cb, void *arg);
void wq_parse_stats(const redisReply *reply, struct wq_stats *out);

/* The age bound, against the API's last reading of the queue (its maintenance timer, once a
 * second): true when that reading saw the oldest uncommitted write older than max_age_ms. */
bool wq_too_old(const struct wq_stats *reading, const struct wq_limits *limits);

/* True when Redis answered and a write would be accepted now. */
bool wq_accepting(const struct wq_stats *stats, const struct wq_limits *limits);

/* The /stats members of the queue (null numbers when Redis did not answer), with
 * commit_delay_ms {p50, p99, max, count} (null numbers when no commit was counted). */
json_t *wq_stats_json(const struct wq_stats *stats, const struct wq_limits *limits);

/* A metrics_gauge_fn (arg: a struct wq_stats, refreshed by the caller): queue_length,
 * queue_pending, queue_dead_letters, while the last reading succeeded. */
void wq_render_gauges(struct evbuffer *out, void *stats);

/* Sends a command of at most 16 arguments, all NUL-terminated text. */
void wq_command(struct redis *redis, redis_reply_cb cb, void *arg, int argc, const char **argv);

#endif
