#!/usr/bin/env bash
# measure.sh: run inside `unshare -n` from the work tree: starts `./layers run l9`, preloads
# 1,000 keys, warms up 3 s, then snapshots cpu.sh before and after DUR (10) s of eventual writes
# from 16 clients in eu-west (the benchmark's write workload), lists pg_stat_activity of each
# region (to name the processes), and stops the stack. analyze.py DIR prints CPU µs per write.
cd /work/wt/l9d || exit 1
HERE=$(dirname "$0")
OUT=${OUT:-/tmp/l9d}
DUR=${DUR:-10}
ip link set lo up
./layers run l9 >"$OUT/run.log" 2>&1 &
RUNPID=$!
for _ in $(seq 1 240); do curl -sf localhost:8009/health >/dev/null && break; sleep 0.5; done
LG=./build/bench/loadgen/loadgen
$LG --port 8009 --workload preload --keys 1000 --connections 32 --header 'X-Region: eu-west' | tail -1
$LG --port 8009 --workload write --keys 1000 --connections 16 --duration 3 --header 'X-Region: eu-west' | tail -1
${BEFORE_HOOK:-true}
"$HERE/cpu.sh" >"$OUT/before.txt"
$LG --port 8009 --workload write --keys 1000 --connections 16 --duration "$DUR" \
    --header 'X-Region: eu-west' | tee "$OUT/lg.txt" | tail -1
"$HERE/cpu.sh" >"$OUT/after.txt"
for p in 5450 5451 5452; do
    psql -X -h 127.0.0.1 -p $((p + 10040)) -U postgres -d layers -Atc \
        "select pid, backend_type, application_name from pg_stat_activity" | sed "s/^/$p|/"
done >"$OUT/activity.txt"
pkill -P "$RUNPID" -f 'l9-global-distributed$'
wait "$RUNPID"
sleep 1
./layers down l9 >/dev/null 2>&1
