/*
 * Layer 4: the shards' recorded layouts (see layout.h): the SQL, shared by the server and
 * l4-reshard. The server's check is in layout_check.c (it needs the server's pools).
 */
#include "layout.h"

/* One row, whatever the number of servers that start at once: the primary key is a constant. */
const char LAYOUT_SQL_SCHEMA[] = "BEGIN;"
                                 "SELECT pg_advisory_xact_lock(327579063635);"
                                 "CREATE TABLE IF NOT EXISTS shard_layout ("
                                 " only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),"
                                 " layout text NOT NULL,"
                                 " shard integer NOT NULL,"
                                 " recorded_at timestamptz NOT NULL DEFAULT now());"
                                 "COMMIT;";

const char LAYOUT_SQL_RECORD[] =
    "INSERT INTO shard_layout (layout, shard) VALUES ($1, $2::integer) ON CONFLICT (only_row) "
    "DO UPDATE SET layout = EXCLUDED.layout, shard = EXCLUDED.shard, recorded_at = now()";

