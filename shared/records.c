/*
 * records: the shared table, its SQL and reply shapes (see records.h).
 */
#include "records.h"

#include "http.h"

#define TIMESTAMP_UTC(column)                                                                      \
    "to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* 0x4c41594552 = "LAYER": one advisory lock id for schema changes, shared by all layers. */
const char RECORDS_SQL_SCHEMA[] = "BEGIN;"
                                  "SELECT pg_advisory_xact_lock(327579063634);"
                                  "CREATE TABLE IF NOT EXISTS records ("
                                  " key varchar(255) PRIMARY KEY,"
                                  " value text NOT NULL,"
                                  " created_at timestamptz NOT NULL DEFAULT now(),"
                                  " updated_at timestamptz NOT NULL DEFAULT now());"
                                  "COMMIT;";

const char RECORDS_SQL_UPSERT[] =
    "INSERT INTO records (key, value) VALUES ($1, $2) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()";

const char RECORDS_SQL_READ[] = "SELECT value, " TIMESTAMP_UTC("created_at") ", " TIMESTAMP_UTC(
    "updated_at") " FROM records WHERE key = $1";

json_t *records_write_reply(const char *key, size_t key_len)
{
    return json_pack("{s:b, s:s%, s:s}", "success", 1, "key", key, key_len, "message",
                     "Data written successfully");
}

json_t *records_read_reply(const PGresult *res, const char *key, size_t key_len)
{
    if (PQntuples(res) == 0)
        return json_pack("{s:b, s:s%, s:n, s:n, s:n, s:s}", "success", 0, "key", key, key_len,
                         "value", "created_at", "updated_at", "message", "Key not found");
    return json_pack("{s:b, s:s%, s:s%, s:s, s:s, s:n}", "success", 1, "key", key, key_len, "value",
                     PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), "created_at",
                     PQgetvalue(res, 0, 1), "updated_at", PQgetvalue(res, 0, 2), "message");
}

json_t *records_cached_reply(const json_t *row, const char *key, size_t key_len)
{
    if (row == NULL)
        return NULL;
    /* json_pack fails (NULL) when an O argument is NULL: a missing member. */
    return json_pack("{s:b, s:s%, s:O, s:O, s:O, s:n}", "success", 1, "key", key, key_len, "value",
                     json_object_get(row, "value"), "created_at",
                     json_object_get(row, "created_at"), "updated_at",
                     json_object_get(row, "updated_at"), "message");
}

void records_reply_failure(struct http_request *req, enum pg_status status)
{
    switch (status) {
    case PG_BUSY:
        http_reply_error(req, 503, "Too many requests waiting for a database connection");
        return;
    case PG_UNAVAILABLE:
        http_reply_error(req, 503, "Database unavailable");
        return;
    case PG_OK:
    case PG_ERROR:
        break;
    }
    http_reply_error(req, 500, "Internal error");
}
