#!/usr/bin/env bash
# run.sh: bench/regions.py against `./layers run l9` (servers at LOG_LEVEL=warn), from the work
# tree, under the benchmark lock, in a private network namespace:
#
#   flock /tmp/layers-bench.lock unshare -n bash bench/results/2026-12-02-vm-l9-strong/run.sh
#
# ROUNDS (3) rounds; regions.md, regions.csv and machine.txt land in OUT (this folder).
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel)
OUT=${OUT:-$HERE}
cd "$ROOT" || exit 1
ip link set lo up
export LOG_LEVEL=warn
./layers run l9 >"$OUT/run.log" 2>&1 &
runpid=$!
for _ in $(seq 1 240); do
    curl -sf localhost:8009/health >/dev/null && break
    sleep 0.5
done
bench/regions.py "$OUT" --rounds "${ROUNDS:-3}"
pkill -P "$runpid" -f "$ROOT/build/"
wait "$runpid"
sleep 1
./layers down l9 >/dev/null 2>&1
