#!/bin/bash
cd "$(git rev-parse --show-toplevel)" || exit 1 # the worktree measured (/work/wt/l7wm)
echo "lock taken $(date -u +%T)"
ip link set lo up
echo "=== after (watermark, $(git rev-parse --short HEAD))"
l7-cqrs/cpu_per_write.sh 16 10
echo "=== before (base 8d9493a, marks)"
./layers up l7 >/dev/null 2>&1
eval "$(./layers env l7)"
psql -X -At -d "$WRITE_DB_URL" -c "ALTER TABLE outbox ALTER COLUMN position SET DEFAULT nextval('outbox_position_seq')" >/dev/null
BUILD_DIR=/tmp/l7wm-base/build l7-cqrs/cpu_per_write.sh 16 10
./layers down l7 >/dev/null 2>&1
echo "=== bench $(date -u +%T)"
./layers bench l1 l7 --workloads write --concurrency "16 64" --repeat 3 --out bench/results/2026-12-02-vm-l7-watermark
echo "=== done $(date -u +%T)"
