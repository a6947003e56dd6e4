/*
 * records: the shared table, its SQL, and its rows as records (see records.h).
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

struct record *records_row(const PGresult *res, const char *key, size_t key_len)
{
    if (PQntuples(res) != 1 || PQnfields(res) != 3)
        return NULL;
    return record_create(key, key_len, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0),
                         PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
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
