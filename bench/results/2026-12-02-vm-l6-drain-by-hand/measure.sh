#!/usr/bin/env bash
# usage: l6c-measure.sh WORKER_BIN ROWS LABEL   (inside unshare -n, from the worktree)
set -u
W=$1 N=$2 L=$3
cd /work/wt/l6c
./layers up l6 >/dev/null 2>&1 || { echo up failed; exit 1; }
eval "$(./layers env l6)"
export LOG_LEVEL=warn
RC="redis-cli -p 16460"
$RC FLUSHALL >/dev/null
psql "$DATABASE_URL" -qc "TRUNCATE records" 2>/dev/null
build/l6-write-buffering/l6-write-buffering >/tmp/l6c-api.log 2>&1 & API=$!
sleep 1.5
build/bench/loadgen/loadgen --port 8006 --workload preload --keys "$N" --connections 32 2>&1 | tail -2
echo "XLEN $($RC XLEN l6:writes)"
$RC CONFIG RESETSTAT >/dev/null
rpid=$($RC INFO server | sed -n 's/^process_id:\([0-9]*\).*/\1/p' | tr -d '\r')
cpu() { awk '{print $14+$15+$16+$17}' /proc/$1/stat; }
pgpid=""; for d in /proc/[0-9]*; do [ "$(cat $d/comm 2>/dev/null)" = postgres ] && tr '\0' ' ' < $d/cmdline 2>/dev/null | grep -q -- "/work/wt/l6c/.state/l6/pg0" && { pgpid=${d#/proc/}; break; }; done
pgcpu() { local t; t=$(cpu "$pgpid"); for f in /proc/[0-9]*/stat; do read -r -a a < "$f" 2>/dev/null || continue; [ "${a[3]}" = "$pgpid" ] && t=$((t + a[13] + a[14])); done; echo "$t"; }
r0=$(cpu "$rpid"); p0=$(pgcpu)
t0=$(date +%s.%N)
"$W" >/tmp/l6c-worker-$L.log 2>&1 & WK=$!
while [ "$($RC XLEN l6:writes)" != 0 ]; do sleep 0.02; done
t1=$(date +%s.%N)
r1=$(cpu "$rpid"); p1=$(pgcpu)
wk=$(cpu $WK)
kill -TERM $WK; wait $WK
kill -TERM $API; wait $API
hz=$(getconf CLK_TCK)
echo "$L: $N rows in $(echo "$t1 - $t0" | bc) s = $(echo "$N / ($t1 - $t0)" | bc) rows/s; redis cpu $(echo "($r1-$r0)*1000000/$hz/$N" | bc) us/row; pg cpu $(echo "($p1-$p0)*1000000/$hz/$N" | bc) us/row (pgpid=$pgpid); worker $(echo "$wk*1000000/$hz/$N" | bc) us/row; load $(cut -d' ' -f1 /proc/loadavg)"
$RC INFO commandstats | tr -d '\r' | grep -v '^#' | awk -F'[:=,]' -v n="$N" 'NF>1 {printf "%-28s calls=%-8s usec_per_call=%-8s per_row_us=%.2f\n", $1, $3, $7, $5/n}' | sort -t= -k4 -rn | head -20
