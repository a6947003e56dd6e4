#!/usr/bin/env bash
# The server's instructions per request on layer 1's PostgreSQL path, before and after a change
# (load-independent, unlike CPU time on a shared machine): layer 1 under callgrind, 1,000 keys
# written, a 1 s warm-up, counters zeroed, then 3 s of bench/loadgen at 16 clients; the
# instructions counted over those requests. Each build in exclusive and pipeline mode
# (DB_PIPELINE_SYNC=turn, the default), read-hit and write.
#
#   unshare -n bash bench/results/2026-12-02-vm-pgpath-callgrind/measure.sh BEFORE AFTER [OUT]
#
# BEFORE and AFTER are commits; each is built (git archive, RelWithDebInfo, layer 1 and loadgen
# only) in a temporary folder, unless a build folder of that commit is named as
# BEFORE=path/to/build. Writes OUT/results.csv (default: this folder) and, per run, the
# functions with the most instructions (inclusive) as OUT/profile-LABEL.txt. Needs valgrind,
# a free port 15410 and 8001 (run it in a private network namespace).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${3:-$HERE}
WORK=$(mktemp -d /tmp/pgpath-callgrind.XXXXXX)
chmod 755 "$WORK" # PostgreSQL runs as its own user when we are root
SERVER=""

cleanup() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    bash "$ROOT/scripts/stack.sh" pg-stop "$WORK/pg" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ip link set lo up 2>/dev/null || true

# Prints the build folder of SPEC (COMMIT or COMMIT=BUILD_DIR), building it if not given.
build_of() {
    local spec=$1 commit=${1%%=*}
    if [ "$spec" != "$commit" ]; then
        echo "${spec#*=}"
        return
    fi
    mkdir -p "$WORK/src-$commit"
    git -C "$ROOT" archive "$commit" | tar -x -C "$WORK/src-$commit"
    cmake -S "$WORK/src-$commit" -B "$WORK/build-$commit" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$WORK/build-$commit" -j2 --target l1-connection-pooling loadgen >/dev/null
    echo "$WORK/build-$commit"
}

wait_for_port() {
    for _ in $(seq 150); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.2
    done
    echo "measure: nothing listens on port $1" >&2
    return 1
}

# One run: LABEL BUILD MODE WORKLOAD; appends a row to results.csv.
run() {
    local label=$1 build=$2 mode=$3 workload=$4 requests total file
    local loadgen=$build/bench/loadgen/loadgen
    bash "$ROOT/scripts/stack.sh" pg-start "$WORK/pg" 15410 >/dev/null
    DATABASE_URL=postgresql://layers@127.0.0.1:15410/layers PORT=8001 DB_POOL_MODE=$mode \
        LOG_LEVEL=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$label" \
        "$build/l1-connection-pooling/l1-connection-pooling" >"$WORK/server.log" 2>&1 &
    SERVER=$!
    wait_for_port 8001
    "$loadgen" --port 8001 --workload preload --keys 1000 --connections 16 >/dev/null
    "$loadgen" --port 8001 --workload "$workload" --keys 1000 --connections 16 --duration 1 >/dev/null
    callgrind_control -z "$SERVER" >/dev/null
    "$loadgen" --port 8001 --workload "$workload" --keys 1000 --connections 16 --duration 3 \
        >"$WORK/loadgen.out"
    callgrind_control -d "$SERVER" >/dev/null
    kill "$SERVER"
    wait "$SERVER" || true
    SERVER=""
    bash "$ROOT/scripts/stack.sh" pg-stop "$WORK/pg" >/dev/null
    rm -rf "$WORK/pg"
    requests=$(grep -o 'RESULT.* requests=[0-9]*' "$WORK/loadgen.out" | grep -o '[0-9]*$')
    file=$WORK/cg.$label.1 # the dump after the zeroing
    callgrind_annotate --auto=no --inclusive=yes "$file" >"$WORK/annotate.txt" 2>/dev/null
    sed -n 1,70p "$WORK/annotate.txt" >"$OUT/profile-$label.txt"
    total=$(grep "PROGRAM TOTALS" "$OUT/profile-$label.txt" | awk '{gsub(",", "", $1); print $1}')
    echo "$label,$mode,$workload,16,$requests,$total,$((total / requests))" >>"$OUT/results.csv"
    echo "$label: $requests requests, $((total / requests)) instructions each"
}

before=$(build_of "$1")
after=$(build_of "$2")
echo "label,mode,workload,clients,requests,instructions,instructions_per_request" >"$OUT/results.csv"
for workload in read-hit write; do
    for mode in exclusive pipeline; do
        run "before-$mode-$workload" "$before" "$mode" "$workload"
        run "after-$mode-$workload" "$after" "$mode" "$workload"
    done
done
{
    echo "before: ${1%%=*}"
    echo "after: ${2%%=*}"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
    valgrind --version
} >"$OUT/machine.txt"
