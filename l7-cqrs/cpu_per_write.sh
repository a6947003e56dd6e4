#!/usr/bin/env bash
# Where a write's CPU goes in layer 7: CPU time (utime + stime from /proc) of every process that
# takes part, per write, over a fixed write load: the API, the relay, the projector, Redis, and
# each PostgreSQL process of the two databases, named by its application_name (the programs'
# pools), or by its title for the background ones (walwriter...); "postmaster+exited" is the
# postmaster and its children that exited meanwhile (autovacuum workers, this script's psql).
# Also: the relay's and the projector's batches (events per batch), commits per database, and
# Redis's command counts.
#
#   unshare -n bash -c 'ip link set lo up && l7-cqrs/cpu_per_write.sh [CLIENTS] [SECONDS]'
#
# Run from the repository after ./layers build; it starts the l7 stack (./layers up l7), empties
# it, runs loadgen's write workload (CLIENTS connections, default 16, for SECONDS, default 10,
# after a 2 s warm-up), waits for the projector to catch up, and stops the stack. Environment
# settings (RELAY_GATHER_MS=0 ...) pass through to the programs.
set -u
clients=${1:-16}
seconds=${2:-10}
work=$(mktemp -d)
build=${BUILD_DIR:-build}
./layers up l7 >"$work/up.log" 2>&1 || {
    cat "$work/up.log"
    exit 1
}
eval "$(./layers env l7)"
psqlw() { psql -X -At -d "$WRITE_DB_URL" -c "$1"; }
psqlr() { psql -X -At -d "$READ_DB_URL" -c "$1"; }
psqlw "TRUNCATE outbox, commands, command_keys;
       UPDATE relay_state SET published = 0, published_above = 0" >/dev/null
psqlr "TRUNCATE records; UPDATE projector_checkpoint SET position = 0, events_projected = 0,
       stream_id = '0-0'" >/dev/null
redis-cli -u "$REDIS_URL" flushall >/dev/null
LOG_LEVEL=debug "$build/l7-cqrs/l7-relay" 2>"$work/relay.log" &
relay=$!
LOG_LEVEL=info "$build/l7-cqrs/l7-projector" 2>"$work/projector.log" &
projector=$!
LOG_LEVEL=warn "$build/l7-cqrs/l7-cqrs" 2>"$work/api.log" &
api=$!
sleep 2
"$build/bench/loadgen/loadgen" --port "$PORT" --workload write --connections "$clients" \
    --duration 2 --keys 1000 >/dev/null 2>&1
sleep 1

ticks() { # PID [--children] -> utime + stime (+ those of its exited children), in ticks
    local stat f
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || {
        echo 0
        return
    }
    read -ra f <<<"${stat##*) }"
    if [ "${2:-}" = --children ]; then
        echo $((f[11] + f[12] + f[13] + f[14]))
    else
        echo $((f[11] + f[12]))
    fi
}
redis_pid=$(redis-cli -u "$REDIS_URL" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
snapshot() { # FILE: "name:pid ticks" lines, sorted
    local db url pid name postmaster
    {
        echo "api:$api $(ticks "$api")"
        echo "relay:$relay $(ticks "$relay")"
        echo "projector:$projector $(ticks "$projector")"
        echo "redis:$redis_pid $(ticks "$redis_pid")"
        for db in write read; do
            url=$WRITE_DB_URL
            [ "$db" = write ] || url=$READ_DB_URL
            while read -r pid name; do
                [ -n "$name" ] ||
                    name=$(tr '\0' ' ' <"/proc/$pid/cmdline" | sed 's/^postgres: *//; s/ *$//')
                echo "$db-db:${name// /_}:$pid $(ticks "$pid")"
                postmaster=$(ps -o ppid= -p "$pid" | tr -d ' ')
            done < <(psql -X -At -F' ' -d "$url" -c "SELECT pid, application_name
                     FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
            echo "$db-db:postmaster+exited:$postmaster $(ticks "$postmaster" --children)"
        done
    } | sort >"$1"
}
commits() { psql -X -At -d "$1" -c "SELECT xact_commit FROM pg_stat_database
                                     WHERE datname = current_database()"; }

w0=$(commits "$WRITE_DB_URL")
r0=$(commits "$READ_DB_URL")
e0=$(psqlw "SELECT count(*) FROM outbox")
snapshot "$work/before"
b0=$(grep -c 'relay: published' "$work/relay.log")
redis-cli -u "$REDIS_URL" config resetstat >/dev/null
"$build/bench/loadgen/loadgen" --port "$PORT" --workload write --connections "$clients" \
    --duration "$seconds" --keys 1000
for _ in $(seq 30); do # few psql sessions: each one's backend counts in postmaster+exited
    sleep 2
    [ "$(psqlw "SELECT max(position) FROM outbox")" = \
        "$(psqlr "SELECT position FROM projector_checkpoint")" ] && break
done
snapshot "$work/after"
w1=$(commits "$WRITE_DB_URL")
r1=$(commits "$READ_DB_URL")
writes=$(($(psqlw "SELECT count(*) FROM outbox") - e0))
batches=$(($(grep -c 'relay: published' "$work/relay.log") - b0))
echo "writes: $writes"
join -a2 "$work/before" "$work/after" |
    awk -v n="$writes" -v hz="$(getconf CLK_TCK)" '
        { d = $NF - (NF == 3 ? $2 : 0); name = $1; sub(/:[0-9]+$/, "", name); t[name] += d; all += d }
        END { for (k in t) printf "%-40s %8.1f us/write\n", k, t[k] * 1e6 / hz / n
              printf "%-40s %8.1f us/write\n", "all", all * 1e6 / hz / n }' | sort -k2 -nr
echo "relay: $batches batches, $(awk -v e="$writes" -v b="$batches" 'BEGIN { printf "%.1f", e / b }') events per batch"
echo "commits: write database $((w1 - w0)), read database $((r1 - r0)) (this script's own included)"
redis-cli -u "$REDIS_URL" info commandstats | grep -E 'xadd|xack|xtrim|xreadgroup|rpush|ltrim|eval'
kill "$projector"
wait "$projector"
grep "stopped after" "$work/projector.log"
echo "projector: events projected $(psqlr "SELECT events_projected FROM projector_checkpoint")" \
    "(the warm-up's included)"
kill "$api" "$relay"
wait
./layers down l7 >/dev/null 2>&1
rm -rf "$work"
