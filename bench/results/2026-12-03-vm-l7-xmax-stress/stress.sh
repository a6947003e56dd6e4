#!/usr/bin/env bash
# Layer 7's watermark under the benchmark's preload, again and again: fresh tables (the outbox,
# the read model, the stream dropped), the relay, the projector and the API started, 1,000 keys
# written by loadgen's preload (32 connections), then bench/lag.py caught-up (15 s): the read
# model must hold every key the write side has. Stops at the first run that does not catch up
# and prints what the relay, the projector and Redis hold.
#
#   flock /tmp/layers-bench.lock unshare -n bash -c 'ip link set lo up && \
#     BUILD_DIR=build N=60 bash bench/results/2026-12-03-vm-l7-xmax-stress/stress.sh'
#
# Run from the repository after ./layers build (BUILD_DIR: the build whose programs to run).
set -u
build=${BUILD_DIR:-build} n=${N:-60}
./layers up l7 >/tmp/l7-stress-up.log 2>&1 || { cat /tmp/l7-stress-up.log; exit 1; }
eval "$(./layers env l7)"
echo "# build $build ($(git -C "$build/.." rev-parse --short HEAD)), $(date -u +%FT%TZ), $n runs"
for i in $(seq 1 "$n"); do
    psql -X -q -d "$WRITE_DB_URL" -c "DROP TABLE IF EXISTS outbox, commands, command_keys, relay_state" 2>/dev/null
    psql -X -q -d "$READ_DB_URL" -c "DROP TABLE IF EXISTS records, projector_checkpoint, read_flush" 2>/dev/null
    redis-cli -u "$REDIS_URL" flushall >/dev/null
    LOG_LEVEL=warn "$build/l7-cqrs/l7-relay" 2>/dev/null &
    relay=$!
    LOG_LEVEL=warn "$build/l7-cqrs/l7-projector" 2>/dev/null &
    projector=$!
    LOG_LEVEL=warn "$build/l7-cqrs/l7-cqrs" 2>/dev/null &
    api=$!
    for _ in $(seq 50); do
        curl -sf "localhost:$PORT/health" >/dev/null && break
        sleep 0.1
    done
    "$build/bench/loadgen/loadgen" --port "$PORT" --keys 1000 --value-bytes 100 --workload preload \
        --connections 32 --verify-count 0 >/dev/null
    if ! why=$(/usr/bin/python3 bench/lag.py caught-up "$PORT" 15 2>&1 >/dev/null); then
        echo "run $i: STUCK: ${why##*$'\n'}"
        psql -X -d "$WRITE_DB_URL" -c "SELECT watermark, highest, published, published_above, gaps FROM relay_state" \
            -c "SELECT count(*), max(position) FROM outbox"
        psql -X -d "$READ_DB_URL" -c "SELECT position, events_projected FROM projector_checkpoint" \
            -c "SELECT count(*) FROM records"
        kill "$api" "$relay" "$projector"
        wait
        ./layers down l7 >/dev/null 2>&1
        exit 1
    fi
    echo "run $i: caught up"
    kill "$api" "$relay" "$projector"
    wait
done
./layers down l7 >/dev/null 2>&1
