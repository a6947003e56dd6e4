#!/usr/bin/env bash
# What each of layer 7's command rows costs PostgreSQL, and whether ordering a key's commands with
# a transaction-scoped advisory lock is cheaper than the command_keys row (l7-cqrs/cqrs.c,
# CQRS_SQL_COMMAND), against layer 1's upsert, by pgbench on a scratch cluster: no server, no
# relay, no projector, only the statements and their commit.
#
#   three     the command in use: command_keys upsert (orders a key's commands, decides
#             create/update), commands, outbox; one statement
#   lock2     a pipeline: BEGIN; pg_advisory_xact_lock(hashtextextended(key, 7)); commands +
#             outbox, create/update decided by EXISTS on commands(key) (an index); COMMIT.
#             The same guarantees as three (the lock's statement ends before the insert's
#             snapshot is taken, so the EXISTS sees every earlier command of the key)
#   lock2x    lock2 without the index and the EXISTS (create/update not decided): what the
#             index costs
#   two       commands + outbox in one statement, no order, no create/update: the floor of
#             the issue's "one more row"
#   one       the outbox row alone, as if it were the command log too (one insert)
#   l1        layer 1's upsert into records
#
# Every outbox takes its position from the PL/pgSQL default in use (outbox_next_position).
# ROUNDS rounds (default 5), the variants in a rotated order each round, pgbench -M prepared,
# 16 clients, DURATION s (default 8) each, 1,000 keys, 100-byte values. PostgreSQL's CPU per
# transaction: utime+stime of the postmaster, its live children and its ended ones
# (cutime+cstime), over the run, divided by the transactions pgbench processed.
# Run as root (initdb runs as the postgres user), on an idle machine:
#   bash measure.sh > raw.txt; /usr/bin/python3 analyze.py raw.txt
set -euo pipefail
ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-8} PORT=${PORT:-25998}
PG_BIN=$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -1)
DIR=$(mktemp -d /tmp/l7-command-rows-XXXXXX)
chmod 755 "$DIR"
chown postgres "$DIR"
trap 'runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
runuser -u postgres -- "$PG_BIN/initdb" -D "$DIR/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/pg.log" -w -o \
    "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null
PSQL=(psql -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -q -X postgres)
V=$(printf "'%0100d'" 0 | tr 0 v)
K="'bench:' || :k"

"${PSQL[@]}" <<'SQL'
CREATE TABLE records (key varchar(255) PRIMARY KEY, value text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION make_command_tables(sfx text) RETURNS void LANGUAGE plpgsql AS $f$ BEGIN
  EXECUTE format('CREATE TABLE command_keys_%s (key varchar(255) PRIMARY KEY,'
    ' commands bigint NOT NULL DEFAULT 1)', sfx);
  EXECUTE format('CREATE TABLE commands_%s (id bigserial PRIMARY KEY, key varchar(255) NOT NULL,'
    ' value text NOT NULL, kind text NOT NULL CHECK (kind IN (''create'', ''update'')),'
    ' created_at timestamptz NOT NULL DEFAULT now())', sfx);
  EXECUTE format('CREATE TABLE outbox_%s (position bigserial PRIMARY KEY, key varchar(255) NOT NULL,'
    ' value text NOT NULL, event_type text NOT NULL CHECK (event_type IN (''RecordCreated'','
    ' ''RecordUpdated'')), command_id bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),'
    ' published_at timestamptz, stream_id text)', sfx);
  EXECUTE format('CREATE FUNCTION next_position_%s() RETURNS bigint LANGUAGE plpgsql AS $g$'
    ' BEGIN PERFORM pg_current_xact_id(); RETURN nextval(''outbox_%s_position_seq''); END $g$',
    sfx, sfx);
  EXECUTE format('ALTER TABLE outbox_%s ALTER COLUMN position SET DEFAULT next_position_%s()',
    sfx, sfx);
END $f$;
SELECT make_command_tables('three'), make_command_tables('lock2'), make_command_tables('lock2x'),
  make_command_tables('two'), make_command_tables('one');
CREATE INDEX ON commands_lock2 (key);
SQL

printf '\\set k random(1, 1000)\nINSERT INTO records (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();\n' \
    "$K" "$V" >"$DIR/l1.sql"
printf '\\set k random(1, 1000)\nWITH k AS (INSERT INTO command_keys_three AS ck (key) VALUES (%s) ON CONFLICT (key) DO UPDATE SET commands = ck.commands + 1 RETURNING commands), c AS (INSERT INTO commands_three (key, value, kind) SELECT %s, %s, CASE WHEN k.commands = 1 THEN %s ELSE %s END FROM k RETURNING id, kind) INSERT INTO outbox_three (key, value, event_type, command_id) SELECT %s, %s, CASE c.kind WHEN %s THEN %s ELSE %s END, c.id FROM c RETURNING position::text, event_type;\n' \
    "$K" "$K" "$V" "'create'" "'update'" "$K" "$V" "'create'" "'RecordCreated'" "'RecordUpdated'" >"$DIR/three.sql"
# $1: the table suffix, $2: the kind expression
two_rows() {
    printf 'WITH c AS (INSERT INTO commands_%s (key, value, kind) SELECT %s, %s, %s RETURNING id, kind) INSERT INTO outbox_%s (key, value, event_type, command_id) SELECT %s, %s, CASE c.kind WHEN %s THEN %s ELSE %s END, c.id FROM c RETURNING position::text, event_type;\n' \
        "$1" "$K" "$V" "$2" "$1" "$K" "$V" "'create'" "'RecordCreated'" "'RecordUpdated'"
}
lock() { printf 'SELECT pg_advisory_xact_lock(hashtextextended(%s, 7));\n' "$K"; }
{
    printf '\\set k random(1, 1000)\n\\startpipeline\nBEGIN;\n'
    lock
    two_rows lock2 "CASE WHEN EXISTS (SELECT 1 FROM commands_lock2 WHERE key = $K) THEN 'update' ELSE 'create' END"
    printf 'COMMIT;\n\\endpipeline\n'
} >"$DIR/lock2.sql"
{
    printf '\\set k random(1, 1000)\n\\startpipeline\nBEGIN;\n'
    lock
    two_rows lock2x "'update'"
    printf 'COMMIT;\n\\endpipeline\n'
} >"$DIR/lock2x.sql"
{ printf '\\set k random(1, 1000)\n'; two_rows two "'update'"; } >"$DIR/two.sql"
printf '\\set k random(1, 1000)\nINSERT INTO outbox_one (key, value, event_type, command_id) VALUES (%s, %s, %s, 0) RETURNING position::text, event_type;\n' \
    "$K" "$V" "'RecordUpdated'" >"$DIR/one.sql"
cat "$DIR"/*.sql >&2

pg_cpu_ticks() {
    local pm t=0 c f g
    pm=$(head -1 "$DIR/data/postmaster.pid")
    read -r -a f <"/proc/$pm/stat"
    t=$((f[13] + f[14] + f[15] + f[16]))
    for c in $(pgrep -P "$pm"); do
        read -r -a g <"/proc/$c/stat" 2>/dev/null && t=$((t + g[13] + g[14]))
    done
    echo "$t"
}

variants=(three lock2 lock2x two one l1)
echo "# commit $(git -C "$(dirname "$0")" rev-parse --short HEAD), $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < ${#variants[@]}; i++)); do
        v=${variants[$(((i + r - 1) % ${#variants[@]}))]}
        a=$(pg_cpu_ticks)
        out=$(pgbench -h 127.0.0.1 -p "$PORT" -U postgres -n -M prepared -c 16 -j 2 -T "$DURATION" \
            -f "$DIR/$v.sql" postgres 2>&1)
        sleep 0.3 # the backends' exit, so their CPU is in the postmaster's cutime
        b=$(pg_cpu_ticks)
        n=$(awk '/number of transactions actually processed/ {print $NF}' <<<"$out" | cut -d/ -f1)
        tps=$(awk '/^tps/ {printf "%d", $3}' <<<"$out")
        echo "round=$r variant=$v tps=$tps transactions=$n pg_cpu_us_per_tx=$(((b - a) * 1000000 / $(getconf CLK_TCK) / n)) load=$(cut -d' ' -f1 /proc/loadavg)"
    done
done
