#!/bin/bash
# Two builds of the same layer's API, side by side on one running stack, measured in turns: the
# CPU a request of each API process, and the requests/s. Usage:
#   measure.sh OLD_PORT NEW_PORT [ROUNDS] [WORKLOAD] > results.txt
# Each port is an API process of its own (the same layer, built at two commits) on the same
# databases and worker. Per round and port: bench/loadgen, 64 clients, 5 s; the API's user +
# system CPU from /proc divided by the requests the load generator made.
set -euo pipefail
old=$1 new=$2 rounds=${3:-3} workload=${4:-write}
loadgen=$(dirname "$0")/../../../build/bench/loadgen/loadgen
pid_on() { ss -ltnpH "sport = :$1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
printf 'round api port workload rps requests api_cpu_s api_us_per_request\n'
for r in $(seq 1 "$rounds"); do
    order="old new"; [ $((r % 2)) = 0 ] && order="new old" # each goes first in half the rounds
    for which in $order; do
        port=${!which}
        pid=$(pid_on "$port")
        t0=$(ticks "$pid")
        out=$("$loadgen" --port "$port" --workload "$workload" --keys 1000 --connections 64 \
            --duration 5)
        sleep 0.5
        t1=$(ticks "$pid")
        rps=$(sed -n 's/.* rps=\([0-9.]*\) .*/\1/p' <<<"$out")
        req=$(sed -n 's/.* requests=\([0-9]*\) .*/\1/p' <<<"$out")
        awk -v r="$r" -v w="$which" -v p="$port" -v wl="$workload" -v rps="$rps" -v n="$req" \
            -v t="$((t1 - t0))" -v hz="$hz" \
            'BEGIN {printf "%s %s %s %s %s %s %.2f %.1f\n", r, w, p, wl, rps, n, t / hz, t / hz * 1e6 / n}'
    done
done
