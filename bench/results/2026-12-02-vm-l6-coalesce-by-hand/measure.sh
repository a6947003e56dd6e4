#!/bin/bash
# CPU per accepted write, API and Redis, QUEUE_APPEND_MAX_WRITES=1 against 64, at a fixed rate.
set -u
cd /work/wt/l6d
ip link set lo up
eval "$(./layers env l6)"
nice -n 19 ./layers up l6 >/dev/null 2>&1 || { echo "up failed"; exit 1; }
RPID=$(pgrep -f "redis-server.*:16460" | head -1)
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
HZ=$(getconf CLK_TCK)
RATE=${RATE:-3000}; DUR=${DUR:-5}
for M in ${MS:-1 64 1 64}; do
  redis-cli -p 16460 flushall >/dev/null
  QUEUE_APPEND_MAX_WRITES=$M LOG_LEVEL=warn nice -n 19 build/l6-write-buffering/l6-write-buffering >/tmp/l6d-m/api.$M.log 2>&1 &
  API=$!
  for i in $(seq 100); do curl -sf localhost:8006/health >/dev/null && break; sleep 0.1; done
  nice -n 19 build/bench/loadgen/loadgen --port 8006 --workload write --connections 64 --duration 1 --rate 1000 >/dev/null 2>&1
  redis-cli -p 16460 config resetstat >/dev/null
  a0=$(ticks $API); r0=$(ticks $RPID)
  OUT=$(nice -n 19 build/bench/loadgen/loadgen --port 8006 --workload write --connections 64 --duration $DUR 2>&1 | tail -3)
  a1=$(ticks $API); r1=$(ticks $RPID)
  N=$(echo "$OUT" | sed -n 's/.* requests=\([0-9]*\).*/\1/p')
  CALLS=$(redis-cli -p 16460 info commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),usec=\([0-9]*\),usec_per_call=\([0-9.]*\).*/\1 \2 \3/p')
  set -- $CALLS
  echo "max_writes=$M writes=$N api_us_per_write=$(( (a1-a0)*1000000/HZ/N )) redis_us_per_write=$(( (r1-r0)*1000000/HZ/N )) evalsha_calls=$1 writes_per_call=$(echo "scale=1; $N/$1" | bc) evalsha_usec_per_write=$(echo "scale=2; $2/$N" | bc) usec_per_call=$3 load=$(cut -d' ' -f1 /proc/loadavg)"
  echo "  $OUT"
  kill $API; wait $API 2>/dev/null
done
./layers down l6 >/dev/null 2>&1
kill $RPID 2>/dev/null; kill -INT $(pgrep -f "postgres -D /work/wt/l6d/.state/l6/pg0") 2>/dev/null; sleep 2
