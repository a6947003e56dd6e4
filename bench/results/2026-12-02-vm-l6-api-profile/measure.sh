#!/bin/bash
# The API's write path profiled by hand (README.md here): the local stack of layer 6 in a private
# network namespace, the API and one worker at LOG_LEVEL=warn, a 2 s warm-up, then a 64-client
# write cell of DUR seconds (default 5) under one of:
#   cpu        utime+stime of the API, Redis, the worker and PostgreSQL over the cell
#   perf       perf record -g of the API during the cell (perf.data)
#   strace     strace -c of the API during the cell (strace.txt)
#   callgrind  the API under valgrind --tool=callgrind (cg.out; instructions per write)
# plus INFO commandstats after CONFIG RESETSTAT. Run from the repository's root:
#   unshare -n bench/results/2026-12-02-vm-l6-api-profile/measure.sh cpu OUTDIR
set -u
mode=${1:?mode: cpu, perf, strace or callgrind}
out=${2:?output directory}
mkdir -p "$out"
ip link set lo up
./layers up l6 >"$out/up.log" 2>&1 || exit 1
eval "$(./layers env l6)"
export LOG_LEVEL=warn
if [ "$mode" = callgrind ]; then
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
        build/l6-write-buffering/l6-write-buffering >"$out/api.log" 2>&1 &
else
    build/l6-write-buffering/l6-write-buffering >"$out/api.log" 2>&1 &
fi
api=$!
build/l6-write-buffering/l6-worker >"$out/worker.log" 2>&1 &
worker=$!
for _ in $(seq 400); do curl -s 127.0.0.1:8006/ping >/dev/null && break; sleep 0.2; done
redis=$(pgrep -f "redis-server.*16460" | head -1)
postmaster=$(pgrep -f "postgres.*-p 15460" | head -1)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pg_cpu() { # the postmaster and its children, ended backends included
    local t=0 p
    for p in $(pgrep -P "$postmaster") "$postmaster"; do
        t=$((t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat")))
    done
    echo "$t"
}
build/bench/loadgen/loadgen --port 8006 --workload write --connections 64 --duration 2 >/dev/null 2>&1
redis-cli -p 16460 CONFIG RESETSTAT >/dev/null
a0=$(cpu "$api") r0=$(cpu "$redis") w0=$(cpu "$worker") p0=$(pg_cpu)
tool=
case "$mode" in
    perf) perf record -F 999 -g -o "$out/perf.data" -p "$api" -- sleep 5 >"$out/perf.log" 2>&1 & tool=$! ;;
    strace) strace -c -f -p "$api" -o "$out/strace.txt" & tool=$! ;;
esac
build/bench/loadgen/loadgen --port 8006 --workload write --connections 64 --duration "${DUR:-5}" \
    >"$out/loadgen.txt" 2>&1
[ "$mode" = strace ] && kill -INT "$tool"
[ -n "$tool" ] && wait "$tool"
a1=$(cpu "$api") r1=$(cpu "$redis") w1=$(cpu "$worker") p1=$(pg_cpu)
redis-cli -p 16460 INFO commandstats >"$out/commandstats.txt"
{
    cat "$out/loadgen.txt"
    echo "CPU ticks (10 ms) over the cell: api $((a1 - a0)) redis $((r1 - r0)) worker $((w1 - w0)) postgresql $((p1 - p0))"
} | tee "$out/summary.txt"
kill "$worker" "$api"
wait "$api" 2>/dev/null
./layers down l6 >/dev/null 2>&1
