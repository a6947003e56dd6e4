#!/usr/bin/env bash
# measure.sh: layer 9's local write path against layer 1's and against layer 9 replicating, in
# the same interleaved rounds, with the CPU of every process. Run from the work tree, under the
# benchmark lock, in a private network namespace:
#
#   flock /tmp/layers-bench.lock unshare -n bash bench/results/2026-12-02-vm-l9-local-path/measure.sh
#
# Each round (ROUNDS, 3): layer 1 (`./layers run l1`), then layer 9 (`./layers run l9`: three
# regions, their subscriptions, the six WAN links) measured twice on the same stack: first
# replicating ("l9"), then with every subscription disabled (`ALTER SUBSCRIPTION ... DISABLE`,
# six of them: no apply worker, no walsender, so no decoding, no applying, no link traffic, no
# replicated invalidation; "l9-local", the local path alone). For each, 1,000 keys preloaded, 3 s
# of writes to warm up, then for each of CONC (16 64) clients DUR (8) s of loadgen's write
# workload (the benchmark's: layer 9 with `X-Region: eu-west`), cpu.sh before and after. The
# subscriptions are enabled again before the stack stops. The servers log at LOG_LEVEL=warn, as
# in the benchmark. analyze.py OUT prints the table.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel)
OUT=${OUT:-$HERE/raw}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-8}
CONC=${CONC:-16 64}
PSQL=/usr/lib/postgresql/15/bin/psql
LG=$ROOT/build/bench/loadgen/loadgen
cd "$ROOT" || exit 1
export LOG_LEVEL=warn
ip link set lo up
mkdir -p "$OUT"
{
    echo "commit $(git rev-parse --short HEAD) $(git status --porcelain | grep -q . && echo dirty || echo clean)"
    echo "started $(date -u +%FT%TZ); rounds $ROUNDS; $DUR s per cell; clients $CONC"
    echo "load before: $(cat /proc/loadavg)"
} >"$OUT/meta.txt"

subscriptions() { # ENABLE|DISABLE: every subscription of the three regions
    local p sub
    for p in 15490 15491 15492; do
        for sub in $("$PSQL" -X -h 127.0.0.1 -p "$p" -U postgres -d layers -Atc \
            "select subname from pg_subscription"); do
            "$PSQL" -X -q -h 127.0.0.1 -p "$p" -U postgres -d layers \
                -c "ALTER SUBSCRIPTION $sub $1"
        done
    done
}

cell() { # NAME PORT HEADER... : warm-up done; one measured cell per client count
    local name=$1 port=$2 c
    shift 2
    for c in $CONC; do
        local tag="r${round}-$name-c$c"
        "$HERE/cpu.sh" "$ROOT" >"$OUT/$tag.before"
        "$LG" --port "$port" --workload write --keys 1000 --connections "$c" --duration "$DUR" \
            "$@" >"$OUT/$tag.lg" 2>&1
        "$HERE/cpu.sh" "$ROOT" >"$OUT/$tag.after"
        echo "$tag: $(grep -o 'rps=[0-9.]*' "$OUT/$tag.lg"); load $(cut -d' ' -f1-3 /proc/loadavg)" |
            tee -a "$OUT/cells.txt"
    done
}

stack() { # LAYER PORT HEADER...: starts the stack, preloads, warms up
    local n=$1 port=$2
    shift 2
    ./layers run "$n" >>"$OUT/run-$n.log" 2>&1 &
    runpid=$!
    for _ in $(seq 1 240); do
        curl -sf "localhost:$port/health" >/dev/null && break
        sleep 0.5
    done
    "$LG" --port "$port" --workload preload --keys 1000 --connections 32 "$@" >/dev/null 2>&1
    "$LG" --port "$port" --workload write --keys 1000 --connections 16 --duration 3 "$@" >/dev/null 2>&1
}

unstack() { # LAYER
    # the server ./layers run started (layer 1's replaced ./layers itself: exec)
    pkill -P "$runpid" -f "$ROOT/build/" || kill "$runpid"
    wait "$runpid"
    sleep 1
    ./layers down "$1" >/dev/null 2>&1
}

for round in $(seq 1 "$ROUNDS"); do
    stack l1 8001
    cell l1 8001
    unstack l1
    stack l9 8009 --header 'X-Region: eu-west'
    cell l9 8009 --header 'X-Region: eu-west'
    subscriptions DISABLE
    sleep 2 # the apply workers and walsenders exit
    "$LG" --port 8009 --workload write --keys 1000 --connections 16 --duration 2 \
        --header 'X-Region: eu-west' >/dev/null 2>&1
    cell l9-local 8009 --header 'X-Region: eu-west'
    subscriptions ENABLE
    unstack l9
done
echo "ended $(date -u +%FT%TZ)" >>"$OUT/meta.txt"
uptime >>"$OUT/meta.txt"
