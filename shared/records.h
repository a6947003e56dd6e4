/*
 * records: the key/value table every layer stores in PostgreSQL, its SQL, and the step from
 * a row of it to a `struct record` (record.h), whose conversions and replies know nothing of
 * libpq: layers that get their rows elsewhere (a stream entry, a read model, a document) build
 * the same record and answer with the same replies.
 *
 * Timestamps are formatted by PostgreSQL itself as RFC 3339 UTC with microseconds.
 */
#ifndef LAYERS_RECORDS_H
#define LAYERS_RECORDS_H

#include "pgconn.h"
#include "record.h"

#include <jansson.h>
#include <stddef.h>

struct http_request;

/* Creates the table; safe when several instances start at once (an advisory lock). */
extern const char RECORDS_SQL_SCHEMA[];

/* $1 key, $2 value: insert, or replace the value and move updated_at (created_at is kept). */
extern const char RECORDS_SQL_UPSERT[];

/* $1 key -> value, created_at, updated_at (formatted), or no row. */
extern const char RECORDS_SQL_READ[];

/* The record in a RECORDS_SQL_READ result (caller frees), or NULL when there is no row. */
struct record *records_row(const PGresult *res, const char *key, size_t key_len);

/*
 * Answers a failed database call: 503 "Database unavailable", 503 "Too many requests waiting
 * for a database connection" (PG_BUSY), or 500 "Internal error". Frees req.
 */
void records_reply_failure(struct http_request *req, enum pg_status status);

#endif
