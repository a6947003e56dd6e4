#!/usr/bin/env bash
# Layer 7's CPU a write before and after the relay's read took a transaction id of its own (the
# xmax fix): l7-cqrs/cpu_per_write.sh CLIENTS 10, alternating a build of BEFORE (a worktree) and
# the current build/, ROUNDS times each. Run from the repository, after ./layers build:
#   git worktree add /tmp/wt-ns 7129602 && cmake -S /tmp/wt-ns -B /tmp/wt-ns/build \
#     -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build /tmp/wt-ns/build -j2 \
#     --target l7-cqrs l7-relay l7-projector loadgen
#   flock /tmp/layers-bench.lock unshare -n bash -c 'ip link set lo up && \
#     bash bench/results/2026-12-03-vm-l7-xmax-cpu/measure.sh' > raw.txt
set -u
ROUNDS=${ROUNDS:-3} CLIENTS=${CLIENTS:-16} BEFORE=${BEFORE:-/tmp/wt-ns/build}
echo "# commit $(git rev-parse --short HEAD), before $(git -C "$BEFORE/.." rev-parse --short HEAD), $(date -u +%FT%TZ), load $(cut -d' ' -f1 /proc/loadavg)"
for ((r = 1; r <= ROUNDS; r++)); do
    for v in before after; do
        b=build
        [ "$v" = after ] || b=$BEFORE
        echo "== round $r $v"
        BUILD_DIR=$b l7-cqrs/cpu_per_write.sh "$CLIENTS" 10 2>&1 |
            grep -E "RESULT|us/write|batch" | grep -v " 0.0 us"
    done
done
