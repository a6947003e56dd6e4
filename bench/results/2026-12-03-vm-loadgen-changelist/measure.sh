#!/bin/bash
# The load generator's own CPU a request, without and with the epoll changelist (commit 0797635),
# in alternating rounds against one running layer 6 (./layers run l6). Usage:
#   measure.sh OLD_LOADGEN NEW_LOADGEN [ROUNDS] > results.txt
# OLD_LOADGEN: bench/loadgen built at 0797635~1 (a git worktree), NEW_LOADGEN at 0797635.
# Per round and binary: write (64 clients, 5 s) and ping (64 clients, 5 s); the load generator's
# user + system CPU from /usr/bin/time divided by the requests it made; and the requests/s.
set -euo pipefail
old=$1 new=$2 rounds=${3:-3}
port=8006
printf 'round binary workload rps requests cpu_s us_per_request\n'
for r in $(seq 1 "$rounds"); do
    for which in old new; do
        bin=${!which}
        for w in write ping; do
            out=$(/usr/bin/time -f 'TIME %U %S' "$bin" --port $port --workload $w --keys 1000 \
                --connections 64 --duration 5 2>&1)
            rps=$(sed -n 's/.* rps=\([0-9.]*\) .*/\1/p' <<<"$out")
            req=$(sed -n 's/.* requests=\([0-9]*\) .*/\1/p' <<<"$out")
            cpu=$(awk '/^TIME/ {print $2 + $3}' <<<"$out")
            printf '%s %s %s %s %s %s %.1f\n' "$r" "$which" "$w" "$rps" "$req" "$cpu" \
                "$(awk -v c="$cpu" -v n="$req" 'BEGIN {print c * 1e6 / n}')"
        done
    done
done
