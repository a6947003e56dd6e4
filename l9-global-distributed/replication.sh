#!/usr/bin/env bash
# replication.sh: layer 9's tables, publications and subscriptions, on its three regions.
#
# Run by `./layers up l9` (and run, reset) and by the black-box tests, with the layer's settings:
# REGION_DATABASE_URLS (the three regions' PostgreSQL, in the order us-east, eu-west, asia-pac)
# and REGION_LINK_URLS (the six WAN links, l9-links; link = from * 2 + (to > from ? to - 1 : to)).
# Idempotent: what exists is kept. It waits (bounded) until the three clusters answer.
# PGPASSWORD, when set (docker-compose), is the superuser's password, also for subscriptions.
#
# On each region R, as the superuser (a subscription needs one in PostgreSQL 15):
#   - every region's tables: records_<r> (the rows region r wrote) and heartbeat_<r> (r's clock,
#     and, by a trigger that fires for replicated rows too, when this region applied it);
#   - on records_<r>, a trigger that only replication's apply workers fire (ENABLE REPLICA:
#     they run as session_replication_role = replica; the server's own writes do not) sends
#     NOTIFY l9_records with the row's key, at the apply's commit: the server LISTENs and
#     invalidates the key in R's Redis (region_cache.h);
#   - the application role `layers` may read them all but write only R's own (a replicated row
#     that conflicts with a local one would stop that subscription for good);
#   - publication pub_<R>: R's two tables;
#   - subscriptions sub_<R>_from_<P> for each other region P, created on a direct connection
#     (copy_data: the tables are empty or already in sync), waited for until every table's
#     initial copy is done (the script returns with replication in steady state), then pointed
#     at the WAN link R->P, so every replicated byte pays the link's delay (the worker retries
#     every 500 ms until the link runs). The subscription's name is its application_name on
#     the publisher, where pg_stat_replication.replay_lsn says how far it has applied (a strong
#     write waits on it).
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
REGIONS=(us_east eu_west asia_pac)

die() {
    echo "replication.sh: $*" >&2
    exit 1
}

# host and port of a postgresql:// URL
url_host() { local u=${1#*@}; echo "${u%%:*}"; }
url_port() { local u=${1##*:}; echo "${u%%/*}"; }

[ -n "${REGION_DATABASE_URLS:-}" ] || die "REGION_DATABASE_URLS is not set"
[ -n "${REGION_LINK_URLS:-}" ] || die "REGION_LINK_URLS is not set"
IFS=, read -r -a DBS <<<"$REGION_DATABASE_URLS"
IFS=, read -r -a LINKS <<<"$REGION_LINK_URLS"
[ ${#DBS[@]} = 3 ] || die "REGION_DATABASE_URLS needs 3 URLs"
[ ${#LINKS[@]} = 6 ] || die "REGION_LINK_URLS needs 6 URLs"

psql_on() { # REGION_INDEX [psql options]
    local i=$1
    shift
    "$PG_BIN/psql" -X -q -h "$(url_host "${DBS[$i]}")" -p "$(url_port "${DBS[$i]}")" -U postgres \
        -d layers -v ON_ERROR_STOP=1 "$@"
}

for i in 0 1 2; do
    for _ in $(seq 1 120); do
        psql_on "$i" -c 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.5
    done
    psql_on "$i" -c 'SELECT 1' >/dev/null || die "region ${REGIONS[$i]} does not answer"
done

for i in 0 1 2; do
    own=${REGIONS[$i]}
    {
        echo "SELECT pg_advisory_lock(327579063639);"
        echo "SELECT 'CREATE ROLE layers LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'layers')\\gexec"
        for r in "${REGIONS[@]}"; do
            cat <<SQL
CREATE TABLE IF NOT EXISTS records_$r (
  key varchar(255) PRIMARY KEY, value text NOT NULL, hlc bigint NOT NULL, region text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS heartbeat_$r (
  region text PRIMARY KEY, beat timestamptz NOT NULL, applied_at timestamptz);
GRANT SELECT ON records_$r, heartbeat_$r TO layers;
SQL
        done
        cat <<SQL
CREATE OR REPLACE FUNCTION heartbeat_applied() RETURNS trigger LANGUAGE plpgsql AS
  \$\$ BEGIN NEW.applied_at := clock_timestamp(); RETURN NEW; END \$\$;
CREATE OR REPLACE FUNCTION records_applied() RETURNS trigger LANGUAGE plpgsql AS
  \$\$ BEGIN PERFORM pg_notify('l9_records', NEW.key); RETURN NULL; END \$\$;
SQL
        for r in "${REGIONS[@]}"; do
            cat <<SQL
CREATE OR REPLACE TRIGGER heartbeat_${r}_applied BEFORE INSERT OR UPDATE ON heartbeat_$r
  FOR EACH ROW EXECUTE FUNCTION heartbeat_applied();
ALTER TABLE heartbeat_$r ENABLE ALWAYS TRIGGER heartbeat_${r}_applied;
CREATE OR REPLACE TRIGGER records_${r}_applied AFTER INSERT OR UPDATE ON records_$r
  FOR EACH ROW EXECUTE FUNCTION records_applied();
ALTER TABLE records_$r ENABLE REPLICA TRIGGER records_${r}_applied;
SQL
        done
        cat <<SQL
GRANT INSERT, UPDATE ON records_$own, heartbeat_$own TO layers;
GRANT pg_read_all_stats TO layers;
SELECT 'CREATE PUBLICATION pub_$own FOR TABLE records_$own, heartbeat_$own'
  WHERE NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'pub_$own')\\gexec
SELECT pg_advisory_unlock(327579063639);
SQL
    } | psql_on "$i" >/dev/null
done

# The connection string of the subscription of region I to region P: direct, or through the link.
sub_conn() { # I P KIND (direct | link)
    local i=$1 p=$2 auth url
    auth="user=postgres dbname=layers${PGPASSWORD:+ password=$PGPASSWORD}"
    url=${DBS[$p]}
    [ "$3" = direct ] || url=${LINKS[$((i * 2 + (p > i ? p - 1 : p)))]}
    echo "host=$(url_host "$url") port=$(url_port "$url") $auth"
}

for i in 0 1 2; do
    for p in 0 1 2; do
        [ "$p" = "$i" ] && continue
        sub="sub_${REGIONS[$i]}_from_${REGIONS[$p]}"
        psql_on "$i" >/dev/null <<SQL
SELECT format('CREATE SUBSCRIPTION $sub CONNECTION %L PUBLICATION pub_${REGIONS[$p]}',
              '$(sub_conn "$i" "$p" direct)')
  WHERE NOT EXISTS (SELECT FROM pg_subscription WHERE subname = '$sub')\\gexec
SQL
    done
done

# The initial copy of every table, on the direct connections, before the subscriptions move to
# the links: through a link, each table's sync (its slot, its snapshot, the copy, the catch-up
# with the apply worker) pays the link's delay many times over and goes on for seconds after
# this script has returned, in whatever the stack does first (the benchmark's first cells).
# Set up means synced: wait (bounded) until every region has its 4 tables ready ('r').
for i in 0 1 2; do
    for _ in $(seq 1 600); do
        ready=$(psql_on "$i" -At -c "SELECT count(*) FILTER (WHERE srsubstate = 'r') || ' ' || count(*)
            FROM pg_subscription_rel") || ready=""
        [ "$ready" = "4 4" ] && break
        sleep 0.1
    done
    [ "$ready" = "4 4" ] ||
        die "region ${REGIONS[$i]}: the subscriptions' initial copy did not end in 60 s ($ready)"
done

for i in 0 1 2; do
    for p in 0 1 2; do
        [ "$p" = "$i" ] && continue
        psql_on "$i" >/dev/null <<SQL
ALTER SUBSCRIPTION sub_${REGIONS[$i]}_from_${REGIONS[$p]} CONNECTION '$(sub_conn "$i" "$p" link)';
SQL
    done
done
echo "replication: 3 regions, 3 publications, 6 subscriptions over the WAN links"
