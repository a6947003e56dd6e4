/*
 * Layer 7: what the API, the relay and the projector share: the two databases' schemas, the
 * statements more than one program runs, the event as it travels in the stream, and the Redis
 * keys.
 *
 *   write database: commands (append-only), command_keys (one row per key: its command count,
 *                   and the row lock that orders a key's commands), outbox (the events),
 *                   relay_state (one row: the relay's watermark, what it published above it,
 *                   the last entry id it added, the events it published)
 *   read database:  records (the read model), projector_checkpoint, read_flush
 *   Redis:          l7:events (the stream), l7:dead (dead letters), l7:reads (read counts not
 *                   flushed yet), l7:reads:flushing, l7:reads:gen
 *
 * An event in the stream is one entry with the fields position, type, key, value, at
 * (RFC 3339 UTC) and command_id; the stream's own entry id is Redis's (the relay may publish
 * a late-committing event after a later position, see README "Ordering"). The stream's order is
 * the order the projector applies events in, so the relay stores, with its watermark, the last
 * entry id it added (relay_state.stream_id: every position it says is published is at or before
 * it) and the projector the last one it applied with its checkpoint
 * (projector_checkpoint.stream_id): a consistency token waits for such an id.
 */
#ifndef L7_CQRS_H
#define L7_CQRS_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CQRS_STREAM         "l7:events"
#define CQRS_DEAD           "l7:dead"
#define CQRS_GROUP          "l7-projectors"
#define CQRS_READS          "l7:reads"
#define CQRS_READS_FLUSHING "l7:reads:flushing"
#define CQRS_READS_GEN      "l7:reads:gen"
#define CQRS_CHANNEL        "outbox"
#define CQRS_LAG            "l7:lag" /* projection lag samples, microseconds (projector.c) */
#define CQRS_LAG_SAMPLES    "100000" /* the newest kept */

extern const char CQRS_SQL_WRITE_SCHEMA[];
extern const char CQRS_SQL_READ_SCHEMA[];

/* $1 key, $2 value, $3 'post' or 'put' -> position, event_type. */
extern const char CQRS_SQL_COMMAND[];
/* Wakes the relay; sent after commands commit, in a transaction of its own (handlers.c). */
extern const char CQRS_SQL_NOTIFY[];
/* First in a PG_BATCH_TRANSACTION batch: its commit does not wait for the WAL flush. */
extern const char CQRS_SQL_ASYNC_COMMIT[];
/* $1 JSON array of events [{position,key,value,at}], $2 the stream entry id of the batch's last
 * entry (NULL: the rebuild, which does not read the stream) -> the checkpoint after the batch. */
extern const char CQRS_SQL_PROJECT[];
/* The projector's lock: one applier of events at a time. */
extern const char CQRS_SQL_PROJECT_LOCK[];
/* $1 position -> up to $2 outbox rows after it, in position order (the rebuild). */
extern const char CQRS_SQL_OUTBOX_PAGE[];

/* One event, parsed from a stream entry. Strings point into the reply it came from. */
struct cqrs_event {
    const char *id;         /* the stream entry id */
    long long position;     /* its outbox position (0: missing) */
    const char *type;       /* RecordCreated | RecordUpdated */
    const char *key;        /* the key (binary-safe, key_len bytes) */
    size_t key_len;         /* bytes */
    const char *value;      /* the value (value_len bytes) */
    size_t value_len;       /* bytes */
    const char *at;         /* when the command committed */
    const char *command_id; /* the command's id */
};

/* A Redis stream entry id, "ms-seq": the order the projector applies events in. */
struct cqrs_stream_id {
    unsigned long long ms;  /* Redis's clock when the entry was added */
    unsigned long long seq; /* its number within that millisecond */
};

/* Parses "ms-seq". false when text is not one. */
bool cqrs_stream_id_parse(const char *text, struct cqrs_stream_id *out)
    __attribute__((warn_unused_result));

/* <0, 0, >0 as a comes before, is, or comes after b in the stream. */
int cqrs_stream_id_cmp(const struct cqrs_stream_id *a, const struct cqrs_stream_id *b);

/* Parses one XREADGROUP entry ([id, [field, value, ...]]). false with *why when it is not an
 * event (a field missing or malformed). */
bool cqrs_event_parse(const redisReply *entry, struct cqrs_event *out, const char **why)
    __attribute__((warn_unused_result));

/* The JSON object CQRS_SQL_PROJECT reads for one event. */
json_t *cqrs_event_json(const struct cqrs_event *e);

#endif
