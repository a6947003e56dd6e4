/*
 * Layer 7: the shared schemas, statements and event encoding (see cqrs.h).
 */
#include "cqrs.h"

#include <stdlib.h>
#include <string.h>

#define TIMESTAMP_UTC(column)                                                                      \
    "to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* The advisory lock id every layer's schema SQL takes (records.c). */
const char CQRS_SQL_WRITE_SCHEMA[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(327579063634);"
    "CREATE TABLE IF NOT EXISTS command_keys ("
    " key varchar(255) PRIMARY KEY,"
    " commands bigint NOT NULL DEFAULT 1);"
    "CREATE TABLE IF NOT EXISTS commands ("
    " id bigserial PRIMARY KEY,"
    " key varchar(255) NOT NULL,"
    " value text NOT NULL,"
    " kind text NOT NULL CHECK (kind IN ('create', 'update')),"
    " created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE IF NOT EXISTS outbox ("
    " position bigserial PRIMARY KEY,"
    " key varchar(255) NOT NULL,"
    " value text NOT NULL,"
    " event_type text NOT NULL CHECK (event_type IN ('RecordCreated', 'RecordUpdated')),"
    " command_id bigint NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now(),"
    " published_at timestamptz);"
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS stream_id text;" /* set when published */
    /* No foreign key to commands: CQRS_SQL_COMMAND inserts both rows in one statement, the id
     * from the command's own RETURNING, and neither table is ever updated or deleted from by a
     * client; the key's check (a row lock on the command just inserted: a lock record in the
     * WAL, and a dirtied page) cost 5-15% of the command's database CPU (README). */
    "ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_command_id_fkey;"
    /* A position is taken under its transaction's id: the default assigns the id first
     * (pg_current_xact_id), then takes the sequence's next value. The relay's watermark relies
     * on it (relay.c): a position taken before a read and not visible to it must belong to a
     * transaction that read's snapshot lists as in progress; a transaction that took its
     * position before having an id would be invisible to that test. CQRS_SQL_COMMAND's first
     * write (command_keys) already assigns the id before the outbox row; this makes any INSERT
     * INTO outbox (a psql session, a test) safe too. */
    "CREATE OR REPLACE FUNCTION outbox_next_position() RETURNS bigint LANGUAGE plpgsql AS $f$"
    " BEGIN PERFORM pg_current_xact_id(); RETURN nextval('outbox_position_seq'); END $f$;"
    "ALTER TABLE outbox ALTER COLUMN position SET DEFAULT outbox_next_position();"
    /* The relay no longer marks rows (published_at, stream_id stay NULL on new rows): nothing
     * reads unpublished rows by that flag any more. */
    "DROP INDEX IF EXISTS outbox_unpublished;"
    "CREATE TABLE IF NOT EXISTS relay_state ("
    " id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),"
    " published bigint NOT NULL DEFAULT 0);" /* events at or below the watermark */
    "INSERT INTO relay_state (id) VALUES (1) ON CONFLICT DO NOTHING;"
    /* The watermark W: every position <= W is in the stream, at or before entry stream_id;
     * published_above: positions above W the relay has published (events_published is
     * published + published_above, the backlog the rows above W less published_above). */
    "ALTER TABLE relay_state ADD COLUMN IF NOT EXISTS watermark bigint;"
    "ALTER TABLE relay_state ADD COLUMN IF NOT EXISTS stream_id text NOT NULL DEFAULT '0-0';"
    "ALTER TABLE relay_state ADD COLUMN IF NOT EXISTS"
    " published_above bigint NOT NULL DEFAULT 0;"
    /* For the tokens: every position <= highest and not in gaps is in the stream at or before
     * entry stream_id too (gaps: the positions between W and highest not published yet). */
    "ALTER TABLE relay_state ADD COLUMN IF NOT EXISTS highest bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE relay_state ADD COLUMN IF NOT EXISTS gaps bigint[] NOT NULL DEFAULT '{}';"
    /* Once, for an outbox the marking relay published: W below its first unmarked row. */
    "WITH w AS (SELECT COALESCE((SELECT min(position) - 1 FROM outbox WHERE published_at IS NULL),"
    " (SELECT max(position) FROM outbox), 0) AS w) "
    "UPDATE relay_state SET watermark = w.w, highest = w.w,"
    " published = (SELECT count(*) FROM outbox WHERE position <= w.w) FROM w"
    " WHERE watermark IS NULL;"
    "ALTER TABLE relay_state ALTER COLUMN watermark SET NOT NULL,"
    " ALTER COLUMN watermark SET DEFAULT 0;" /* INSERT ... ON CONFLICT checks it first */
    "COMMIT;";

const char CQRS_SQL_READ_SCHEMA[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(327579063634);"
    "CREATE TABLE IF NOT EXISTS records ("
    " key varchar(255) PRIMARY KEY,"
    " value text NOT NULL,"
    " created_at timestamptz NOT NULL,"
    " updated_at timestamptz NOT NULL,"
    " write_count bigint NOT NULL DEFAULT 0,"
    " read_count bigint NOT NULL DEFAULT 0,"
    " last_position bigint NOT NULL);"
    "CREATE TABLE IF NOT EXISTS projector_checkpoint ("
    " id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),"
    " position bigint NOT NULL DEFAULT 0,"
    " events_projected bigint NOT NULL DEFAULT 0,"
    " updated_at timestamptz NOT NULL DEFAULT now());"
    "ALTER TABLE projector_checkpoint ADD COLUMN IF NOT EXISTS"
    " stream_id text NOT NULL DEFAULT '0-0';" /* the last stream entry applied */
    "INSERT INTO projector_checkpoint (id) VALUES (1) ON CONFLICT DO NOTHING;"
    "CREATE TABLE IF NOT EXISTS read_flush ("
    " id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),"
    " generation bigint NOT NULL DEFAULT 0);"
    "INSERT INTO read_flush (id) VALUES (1) ON CONFLICT DO NOTHING;"
    "COMMIT;";

/*
 * One statement, three rows. The key's row in command_keys is inserted or updated first: that
 * takes its row lock until COMMIT, so two commands on one key run one after the other, and
 * the second takes its outbox position after the first committed. A key's events are thus
 * committed in position order (the projector relies on it), and the first command of a key is
 * the one that inserted that row (commands = 1): a RecordCreated decided without a race.
 */
const char CQRS_SQL_COMMAND[] =
    "WITH k AS (INSERT INTO command_keys AS ck (key) VALUES ($1) "
    "  ON CONFLICT (key) DO UPDATE SET commands = ck.commands + 1 RETURNING commands), "
    "c AS (INSERT INTO commands (key, value, kind) "
    "  SELECT $1, $2, CASE WHEN $3 = 'post' AND k.commands = 1 THEN 'create' ELSE 'update' END "
    "  FROM k RETURNING id, kind) "
    "INSERT INTO outbox (key, value, event_type, command_id) "
    "SELECT $1, $2, CASE c.kind WHEN 'create' THEN 'RecordCreated' ELSE 'RecordUpdated' END, c.id "
    "FROM c RETURNING position::text, event_type";

const char CQRS_SQL_NOTIFY[] = "NOTIFY " CQRS_CHANNEL;

/* set_config(..., true) is SET LOCAL: it lasts until the batch's commit. Not SET LOCAL itself: a
 * batch is an implicit transaction (pipeline, one sync), not a BEGIN block, so SET LOCAL works
 * there too but warns every time ("SET LOCAL can only be used in transaction blocks"): a line in
 * the server's log and a notice to the client per relay step and per NOTIFY. */
const char CQRS_SQL_ASYNC_COMMIT[] = "SELECT set_config('synchronous_commit', 'off', true)";

const char CQRS_SQL_PROJECT_LOCK[] = "SELECT pg_advisory_xact_lock(7007)";

/*
 * Applies a batch of events, each at most once: an event counts only when its position is
 * beyond its key's last_position (a duplicate, a replay after a crash, is a no-op). Events of
 * one key in one batch collapse into one row change (its newest value, write_count + their
 * number); created_at is the time of the key's first event by position, kept afterwards (not
 * the batch's earliest time: an event's time is its transaction's start, so a later command of
 * a key may carry an earlier one, and created_at would depend on how events fall into batches,
 * the rebuild's or the projector's). The checkpoint (the highest
 * position, and the last stream entry id, which only moves forward) moves in the same
 * transaction, so the read model and the checkpoint never disagree. Each event looks its key up
 * by the primary key (a subquery per event, not a join): a join planned before `records` has
 * statistics (a fresh database) hashes the whole table at every batch.
 */
const char CQRS_SQL_PROJECT[] =
    "WITH ev AS (SELECT DISTINCT ON (position) * FROM json_to_recordset($1::json) "
    "  AS e(position bigint, key text, value text, at timestamptz)), "
    "fresh AS (SELECT ev.* FROM ev WHERE ev.position > "
    "  COALESCE((SELECT r.last_position FROM records r WHERE r.key = ev.key), 0)), "
    "agg AS (SELECT DISTINCT ON (key) key, value, at, position, count(*) OVER w AS n, "
    "  first_value(at) OVER (w ORDER BY position) AS first_at FROM fresh "
    "  WINDOW w AS (PARTITION BY key) "
    "  ORDER BY key, position DESC), "
    "up AS (INSERT INTO records AS r "
    "  (key, value, created_at, updated_at, write_count, read_count, last_position) "
    "  SELECT key, value, first_at, at, n, 0, position FROM agg "
    "  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at, "
    "  write_count = r.write_count + EXCLUDED.write_count, last_position = EXCLUDED.last_position "
    "  WHERE r.last_position < EXCLUDED.last_position RETURNING 1) "
    "UPDATE projector_checkpoint SET "
    " position = GREATEST(position, COALESCE((SELECT max(position) FROM ev), 0)), "
    " events_projected = events_projected + (SELECT count(*) FROM fresh), updated_at = now(), "
    " stream_id = CASE WHEN $2::text IS NOT NULL AND "
    "  (split_part($2, '-', 1)::numeric, split_part($2, '-', 2)::numeric) > "
    "  (split_part(stream_id, '-', 1)::numeric, split_part(stream_id, '-', 2)::numeric) "
    "  THEN $2 ELSE stream_id END "
    "RETURNING position::text";

const char CQRS_SQL_OUTBOX_PAGE[] = "SELECT position::text, event_type, key, value, " TIMESTAMP_UTC(
    "created_at") ", command_id::text FROM outbox WHERE position > $1::bigint "
                  "ORDER BY outbox.position LIMIT $2::int";

bool cqrs_stream_id_parse(const char *text, struct cqrs_stream_id *out)
{
    char *end;
    if (text == NULL || *text < '0' || *text > '9')
        return false;
    out->ms = strtoull(text, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return false;
    out->seq = strtoull(end + 1, &end, 10);
    return *end == '\0';
}

int cqrs_stream_id_cmp(const struct cqrs_stream_id *a, const struct cqrs_stream_id *b)
{
    if (a->ms != b->ms)
        return a->ms < b->ms ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static const redisReply *field(const redisReply *fields, const char *name, size_t *len)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i], *v = fields->element[i + 1];
        if (f->type == REDIS_REPLY_STRING && strcmp(f->str, name) == 0 &&
            v->type == REDIS_REPLY_STRING) {
            if (len != NULL)
                *len = v->len;
            return v;
        }
    }
    return NULL;
}

bool cqrs_event_parse(const redisReply *entry, struct cqrs_event *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING) {
        *why = "not a stream entry";
        return false;
    }
    out->id = entry->element[0]->str;
    const redisReply *fields = entry->element[1];
    if (fields->type != REDIS_REPLY_ARRAY) {
        *why = "entry without fields";
        return false;
    }
    const redisReply *position = field(fields, "position", NULL);
    const redisReply *type = field(fields, "type", NULL);
    const redisReply *key = field(fields, "key", &out->key_len);
    const redisReply *value = field(fields, "value", &out->value_len);
    const redisReply *at = field(fields, "at", NULL);
    const redisReply *command = field(fields, "command_id", NULL);
    if (position == NULL || type == NULL || key == NULL || value == NULL || at == NULL) {
        *why = "a field is missing (position, type, key, value, at)";
        return false;
    }
    char *end;
    out->position = strtoll(position->str, &end, 10);
    if (*end != '\0' || out->position <= 0) {
        *why = "position is not a positive integer";
        return false;
    }
    if (strcmp(type->str, "RecordCreated") != 0 && strcmp(type->str, "RecordUpdated") != 0) {
        *why = "unknown event type";
        return false;
    }
    out->type = type->str;
    out->key = key->str;
    out->value = value->str;
    out->at = at->str;
    out->command_id = command != NULL ? command->str : "";
    return true;
}

json_t *cqrs_event_json(const struct cqrs_event *e)
{
    return json_pack("{s:I, s:s%, s:s%, s:s}", "position", (json_int_t)e->position, "key", e->key,
                     e->key_len, "value", e->value, e->value_len, "at", e->at);
}
