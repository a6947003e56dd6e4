/*
 * record: one key/value row, as every layer stores and answers it, whatever it came from.
 *
 * A record is the contract's row (key, value, created_at, updated_at) plus the optional members a
 * layer adds to it (a shard id, a version, a read count...), kept as a small JSON object of
 * extras. Layers 0-5 get a record from a PostgreSQL row (records_row, in records.h, the only
 * place that knows libpq) or from a cache entry; later layers get one from a Redis stream entry,
 * a read model or a MongoDB document. Whatever the source, the contract's replies are built
 * here, once, so every layer answers with the same members.
 *
 * The cache entry is the record's JSON without its key (the cache is keyed by it):
 * {"value":V,"created_at":T,"updated_at":T, ...extras}. An entry that is not such an object (an
 * older format, a foreign writer, a torn value) is not a record: record_from_cache returns NULL
 * and the caller treats it as a miss, so a bad entry costs one database read, never a bad reply.
 * Timestamps are kept as the text the source formatted (RFC 3339 UTC with microseconds).
 */
#ifndef LAYERS_RECORD_H
#define LAYERS_RECORD_H

#include <jansson.h>
#include <stddef.h>

struct record;

/* Copies every string; the timestamps are NUL-terminated. Aborts only when out of memory. */
struct record *record_create(const char *key, size_t key_len, const char *value, size_t value_len,
                             const char *created_at, const char *updated_at);
void record_free(struct record *rec);

const char *record_key(const struct record *rec, size_t *len);
const char *record_value(const struct record *rec, size_t *len);
const char *record_created_at(const struct record *rec);
const char *record_updated_at(const struct record *rec);

/* Sets an optional member (takes ownership of value). The contract's own members cannot be
 * extras: setting "key", "value", "created_at", "updated_at", "success" or "message" is ignored
 * (value is released). */
void record_set_extra(struct record *rec, const char *name, json_t *value);

/* An optional member (borrowed), or NULL. */
json_t *record_extra(const struct record *rec, const char *name);

/* The cache entry for rec, compact JSON (caller frees with free()), and its length. */
char *record_to_cache(const struct record *rec, size_t *len);

/* The record a cache entry holds for key, or NULL when the entry is malformed (a miss): not a
 * JSON object, or value/created_at/updated_at missing or not strings. Other members become
 * extras. */
struct record *record_from_cache(const char *key, size_t key_len, const char *data, size_t len);

/*
 * The contract's GET /read reply. Found (rec not NULL): {"success":true,"key","value",
 * "created_at","updated_at","message":null} plus rec's extras. Not found (rec NULL):
 * {"success":false,"key":key,"value":null,"created_at":null,"updated_at":null,
 * "message":"Key not found"}. Every member is always present; a layer adds its own after.
 */
json_t *record_read_reply(const struct record *rec, const char *key, size_t key_len);

/* The contract's POST /write reply: {"success":true,"key":K,"message":"Data written successfully"}.
 */
json_t *record_write_reply(const char *key, size_t key_len);

#endif
