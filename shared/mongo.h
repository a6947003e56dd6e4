/*
 * mongo: MongoDB from the event loop, through libmongoc on worker threads (layer 8).
 *
 * libmongoc 1.23 (Debian 12) has no non-blocking API: every call waits on its socket. So the
 * calls never run on the loop: each operation is packed into a job for offload.h's bounded
 * queue, a worker thread runs it with its own client popped from one mongoc_client_pool_t (a
 * client is not thread-safe; the pool is), and the result comes back to the loop, where the
 * request lives. The price of a blocking driver, and how it is bounded:
 * - at most `threads` operations run at once (the pool's size is the thread count);
 * - at most `queue_max` wait; submitting to a full queue fails at once (503);
 * - every operation has a deadline, MONGO_TIMEOUT_MS, twice: for its wait in the queue
 *   (offload's deadline) and for the call itself (socketTimeoutMS, connectTimeoutMS and
 *   serverSelectionTimeoutMS in the URI), so a MongoDB that is down costs a caller at most
 *   about two deadlines, and a worker at most one per operation;
 * - recovery needs nothing: the pool's monitor finds the server again (heartbeatFrequencyMS
 *   is lowered to 1 s) and the next operation succeeds.
 *
 * Documents are kept by a string `key` with a unique index on it, created at start-up with the
 * createIndexes command (the index-model API is newer than 1.23) and retried until MongoDB
 * answers, like the PostgreSQL schema. Writes are upserts filtered by key, so they never make a
 * second document for a key even where the index is missing or not enforced (the stand-in
 * MongoDB of the native stack does not enforce it); where it is enforced, two first upserts of
 * one key racing can make the loser fail with a duplicate-key error, which is retried once (it
 * then finds the winner's document and updates it).
 *
 * JSON from clients becomes BSON by hand (mongo_bson_from_json), not through libbson's JSON
 * parser: that one reads MongoDB Extended JSON, so a client's {"$date": 1} would be stored as a
 * date and read back as something else. Field names starting with '$', or holding '.' or NUL,
 * are refused (MongoDB gives them meaning); nesting is bounded.
 *
 * Call mongoc_init/mongoc_cleanup once per process: mongo_create and mongo_free do, so a
 * program has one struct mongo.
 */
#ifndef LAYERS_MONGO_H
#define LAYERS_MONGO_H

#include "config.h"

#include <bson/bson.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct mongo;

enum mongo_status {
    MONGO_OK,          /* the operation ran */
    MONGO_UNAVAILABLE, /* no server, a broken connection, a deadline passed, or the queue is full:
                          a 503 */
    MONGO_ERROR,       /* the server refused it (a bug or bad data): a 500 */
};

/* An operation's outcome, valid only during the callback. */
struct mongo_result {
    enum mongo_status status; /* as above */
    const bson_t *doc;        /* mongo_find_one: the document, NULL when there is none */
    int64_t count;            /* mongo_count: the number of documents */
    int64_t created_ms;       /* mongo_find_one: created_at (ms since the epoch), 0 if none */
    int64_t updated_ms;       /* mongo_find_one: updated_at */
};

/*
 * Called exactly once per operation, on the loop thread: from the loop when the job has run
 * or timed out, or before the call returns when the queue is full (status MONGO_UNAVAILABLE).
 */
typedef void (*mongo_cb)(const struct mongo_result *result, void *arg);

/* Called once, when every unique index exists. */
typedef void (*mongo_ready_cb)(void *arg);

struct mongo_settings {
    const char *url;   /* mongodb://host:port/database (the database defaults to "layers") */
    long timeout_ms;   /* MONGO_TIMEOUT_MS: each operation's deadline */
    long threads;      /* MONGO_THREADS: worker threads = pool size */
    long queue_max;    /* MONGO_QUEUE_MAX: operations waiting for a worker */
    long delay_ms;     /* a test hook: each operation waits this long first (0) */
};

/* Starts the workers. NULL (logged) when the URL is invalid or a thread cannot start. */
struct mongo *mongo_create(struct event_base *base, const struct mongo_settings *settings);

/* Cancels what is queued (callbacks get MONGO_UNAVAILABLE), waits for what runs, closes the
 * pool. NULL is a no-op. */
void mongo_free(struct mongo *mongo);

/* Creates a unique index on `key` in each collection (NULL-terminated), retrying once a second
 * until MongoDB answers; then calls ready. */
void mongo_ensure_unique_keys(struct mongo *mongo, const char *const *collections,
                              mongo_ready_cb ready, void *arg);

/* Upserts the document with this key: `$set` every field of `fields` and updated_at,
 * `$setOnInsert` created_at. fields is copied. */
void mongo_upsert(struct mongo *mongo, const char *collection, const char *key, size_t key_len,
                  const bson_t *fields, mongo_cb cb, void *arg);

/* Finds the document with this key (result->doc, or NULL). */
void mongo_find_one(struct mongo *mongo, const char *collection, const char *key, size_t key_len,
                    mongo_cb cb, void *arg);

/* Counts a collection's documents (the estimated count: metadata, no scan). */
void mongo_count(struct mongo *mongo, const char *collection, mongo_cb cb, void *arg);

/* Pings the server (for /health). */
void mongo_ping(struct mongo *mongo, mongo_cb cb, void *arg);

/* Operations running on a worker now, and the pool's size (for /stats). */
int mongo_in_use(const struct mongo *mongo);
int mongo_pool_size(const struct mongo *mongo);
/* Operations waiting for a worker now. */
size_t mongo_queued(struct mongo *mongo);

/* ---- JSON <-> BSON (pure functions, unit-tested) ---- */

#define MONGO_MAX_DEPTH 64 /* nesting of objects and arrays in a stored document */

/*
 * Appends every member of the JSON object `obj` to `out` (initialised by the caller). False,
 * with the reason in err, for a field name MongoDB would read as an operator or a path ('$'
 * first, '.', NUL, empty) or nesting deeper than MONGO_MAX_DEPTH.
 */
bool mongo_bson_from_json(const json_t *obj, bson_t *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The JSON object of a BSON document (new reference). Types JSON lacks (dates, ids...) become
 * strings in MongoDB's relaxed Extended JSON. */
json_t *mongo_json_from_bson(const bson_t *doc);

/* Formats ms since the epoch as RFC 3339 UTC with microseconds (MongoDB keeps milliseconds:
 * the last three digits are zeros). buf holds at least 32 bytes. */
void mongo_format_time(int64_t ms, char *buf, size_t len);

/* Its settings, as a set for a program's table (config.h). */
#define MONGO_CONFIG_SET(s, url_target, default_url)                                               \
    CONFIG_ROWS_SET("MongoDB",                                                                     \
                    {"MONGODB_URL", CONFIG_URL, (default_url), 0, 0,                               \
                     "MongoDB connection URL (mongodb://host:port/database)", (url_target), NULL}, \
                    {"MONGO_TIMEOUT_MS", CONFIG_INT, "2000", 50, 60000,                            \
                     "deadline of each MongoDB operation: its wait for a worker, and the call",    \
                     &(s)->timeout_ms, NULL},                                                      \
                    {"MONGO_THREADS", CONFIG_INT, "4", 1, 64,                                      \
                     "worker threads running libmongoc (its blocking calls), = its pool size",     \
                     &(s)->threads, NULL},                                                         \
                    {"MONGO_QUEUE_MAX", CONFIG_INT, "1024", 1, 100000,                             \
                     "MongoDB operations waiting for a worker; more are refused with a 503",       \
                     &(s)->queue_max, NULL})

#endif
