#!/usr/bin/env bash
# measure.sh: layer 7's command path alone against layer 1's writes and against layer 7 whole, in
# the same interleaved rounds, with the CPU of every process. Run from the work tree, under the
# benchmark lock, in a private network namespace:
#
#   flock /tmp/layers-bench.lock unshare -n bash bench/results/2026-12-02-vm-l7-command-path/measure.sh
#
# Each round (ROUNDS, 3): layer 1 (`./layers run l1`), then layer 7 (`./layers run l7`: the API,
# the relay and the projector) measured twice on the same stack: first whole ("l7"), then with
# the relay and the projector stopped (`./layers stop l7 relay`, `... projector`: the outbox only
# grows; "l7-command", the command's own transaction: a command row, an outbox row, the key's
# row, in one round trip). For each, 1,000 keys preloaded, 3 s of writes to warm up, then for
# each of CONC (16 64) clients DUR (8) s of loadgen's write workload (the benchmark's), the CPU
# of every process before and after (layer 9's cpu.sh). analyze.py RAW prints the table.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel)
CPU=$HERE/../2026-12-02-vm-l9-local-path/cpu.sh
OUT=${OUT:-$HERE/raw}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-8}
CONC=${CONC:-16 64}
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

cell() { # NAME PORT: one measured cell per client count
    local name=$1 port=$2 c tag
    for c in $CONC; do
        tag="r${round}-$name-c$c"
        "$CPU" "$ROOT" >"$OUT/$tag.before"
        "$LG" --port "$port" --workload write --keys 1000 --connections "$c" --duration "$DUR" \
            >"$OUT/$tag.lg" 2>&1
        "$CPU" "$ROOT" >"$OUT/$tag.after"
        echo "$tag: $(grep -o 'rps=[0-9.]*' "$OUT/$tag.lg"); load $(cut -d' ' -f1-3 /proc/loadavg)" |
            tee -a "$OUT/cells.txt"
    done
}

warm() { # PORT
    "$LG" --port "$1" --workload write --keys 1000 --connections 16 --duration 3 >/dev/null 2>&1
}

stack() { # LAYER PORT: starts the stack, preloads, warms up
    ./layers run "$1" >>"$OUT/run-$1.log" 2>&1 &
    runpid=$!
    for _ in $(seq 1 240); do
        curl -sf "localhost:$2/health" >/dev/null && break
        sleep 0.5
    done
    "$LG" --port "$2" --workload preload --keys 1000 --connections 32 >/dev/null 2>&1
    warm "$2"
}

unstack() { # LAYER
    pkill -P "$runpid" -f "$ROOT/build/" || kill "$runpid"
    wait "$runpid"
    sleep 1
    ./layers down "$1" >/dev/null 2>&1
}

for round in $(seq 1 "$ROUNDS"); do
    stack l1 8001
    cell l1 8001
    unstack l1
    stack l7 8007
    cell l7 8007
    ./layers stop l7 relay >>"$OUT/run-l7.log" 2>&1
    ./layers stop l7 projector >>"$OUT/run-l7.log" 2>&1
    warm 8007
    cell l7-command 8007
    unstack l7
done
echo "ended $(date -u +%FT%TZ)" >>"$OUT/meta.txt"
uptime >>"$OUT/meta.txt"
