/*
 * records: the key/value table every layer stores, its SQL, and the JSON shapes of the
 * contract's /write and /read replies.
 *
 * All layers keep the same `records` table and answer with the same members, so these live
 * here once; a layer adds its extras (`from_cache`, `shard_id`...) to the object it gets back.
 * Timestamps are formatted by PostgreSQL itself as RFC 3339 UTC with microseconds.
 */
#ifndef LAYERS_RECORDS_H
#define LAYERS_RECORDS_H

#include "pgconn.h"

#include <jansson.h>
#include <stddef.h>

struct http_request;

/* Creates the table; safe when several instances start at once (an advisory lock). */
extern const char RECORDS_SQL_SCHEMA[];

/* $1 key, $2 value: insert, or replace the value and move updated_at (created_at is kept). */
extern const char RECORDS_SQL_UPSERT[];

/* $1 key -> value, created_at, updated_at (formatted), or no row. */
extern const char RECORDS_SQL_READ[];

/* {"success":true,"key":K,"message":"Data written successfully"} */
json_t *records_write_reply(const char *key, size_t key_len);

/* The found or not-found reply for a RECORDS_SQL_READ result. */
json_t *records_read_reply(const PGresult *res, const char *key, size_t key_len);

/*
 * The found reply for a row a cache holds ({"value","created_at","updated_at"}, parsed), or
 * NULL if row is NULL or lacks a member: an entry this code did not write counts as a miss.
 */
json_t *records_cached_reply(const json_t *row, const char *key, size_t key_len);

/*
 * Answers a failed database call: 503 "Database unavailable", 503 "Too many requests waiting
 * for a database connection" (PG_BUSY), or 500 "Internal error". Frees req.
 */
void records_reply_failure(struct http_request *req, enum pg_status status);

#endif
