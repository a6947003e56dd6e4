#!/bin/bash
# How busy the two cores are while bench/loadgen drives one layer at 64 clients: the machine's
# CPU shares from /proc/stat over each cell (user, system, softirq, idle, steal), with the
# requests/s. Usage, against a running layer (./layers run l6):
#   measure.sh [PORT] [ROUNDS] > results.txt
set -euo pipefail
port=${1:-8006} rounds=${2:-3}
loadgen=$(dirname "$0")/../../../build/bench/loadgen/loadgen
printf 'round workload clients rps user%% system%% softirq%% idle%% iowait%% steal%%\n'
for r in $(seq 1 "$rounds"); do
    for w in ping write; do
        before=$(grep '^cpu ' /proc/stat)
        out=$("$loadgen" --port "$port" --workload "$w" --keys 1000 --connections 64 --duration 5)
        after=$(grep '^cpu ' /proc/stat)
        rps=$(sed -n 's/.* rps=\([0-9.]*\) .*/\1/p' <<<"$out")
        awk -v b="$before" -v r="$r" -v w="$w" -v rps="$rps" 'BEGIN {split(b, x, " ")}
            {t = 0; for (i = 2; i <= NF; i++) t += $i - x[i]
             printf "%s %s 64 %s %.1f %.1f %.1f %.1f %.1f %.1f\n", r, w, rps,
                 ($2 - x[2]) * 100 / t, ($4 - x[4]) * 100 / t, ($8 - x[8]) * 100 / t,
                 ($5 - x[5]) * 100 / t, ($6 - x[6]) * 100 / t, ($9 - x[9]) * 100 / t}' <<<"$after"
    done
done
