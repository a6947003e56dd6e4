#!/usr/bin/env bash
# bench/run.sh: the benchmark harness behind `./layers bench` (methodology: bench/README.md).
#
#   ./layers bench [LAYER...] [--quick] [--duration S] [--warmup S] [--concurrency "1 16 64 256"]
#                  [--keys N] [--workloads "read-hit ..."] [--db-latency MS] [--out DIR]
#   ./layers bench --compare RESULTS_A RESULTS_B
#
# For each layer (all that are built, by default): start its databases on benchmark ports, start
# the server, write the data set through the API, run every workload at every concurrency (a
# warm-up, then a measured run with wrk), and stop everything it started. Ceilings measured in
# the same run: the HTTP layer alone (GET /ping), PostgreSQL alone (pgbench -S) and Redis alone
# (redis-benchmark GET). Results: CSV files, a Markdown report and SVG charts in
# bench/results/<date>-<host>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/stack.sh
source "$ROOT/scripts/stack.sh"
# shellcheck source=scripts/layers-table.sh
source "$ROOT/scripts/layers-table.sh"

WORKLOADS="read-hit read-zipf read-miss write mixed"
CONCURRENCY="1 16 64 256"
DURATION=3
WARMUP=1
KEYS=10000
DB_LATENCY=""
OUT=""
SELECTED=()

PG_PORT=24000     # the benchmark's PostgreSQL
PROXY_PORT=24001  # the delay proxy in front of it (--db-latency)
REDIS_PORT=24100  # the benchmark's Redis
API_PORT=24200    # the server under test

WORK=""           # temporary directory of this run
PIDS=()           # processes to stop on exit

progress() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
    echo "bench: $*" >&2
    exit 1
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$WORK" ]; then
        pg_stop "$WORK/pg" 2>/dev/null || true
        redis_stop "$WORK/redis" 2>/dev/null || true
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
        --quick) CONCURRENCY="16"; DURATION=1; WARMUP=1; KEYS=1000 ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --keys) KEYS=$2; shift ;;
        --workloads) WORKLOADS=$2; shift ;;
        --db-latency) DB_LATENCY=${2%ms}; shift ;;
        --out) OUT=$2; shift ;;
        --compare) [ $# -eq 3 ] || fail "usage: --compare RESULTS_A RESULTS_B"
            exec /usr/bin/python3 "$ROOT/bench/report.py" compare "$2" "$3" ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) fail "unknown option $1 (try --help)" ;;
        *) SELECTED+=("$1") ;;
        esac
        shift
    done
}

layer_number() { layer_number_of "$1" || fail "unknown layer '$1' (try l0 ... l10)"; }

binary_of() { echo "$ROOT/build/${LAYER_NAMES[$1]}/${LAYER_NAMES[$1]}"; }

# ---- measurements ----

# Runs wrk; prints "rps p50 p90 p99 max non2xx socket requests" (latencies in microseconds).
run_wrk() { # WORKLOAD CONCURRENCY SECONDS
    local threads=$(($2 < 2 ? 1 : 2)) line
    line=$(WORKLOAD=$1 KEYS=$KEYS wrk -t"$threads" -c"$2" -d"${3}s" --timeout 10s \
        -s "$ROOT/bench/lua/workload.lua" "http://127.0.0.1:$API_PORT" | grep '^RESULT') ||
        fail "wrk failed for $1 at $2 clients"
    echo "$line" | sed -E 's/[a-z0-9]+=//g; s/^RESULT //'
}

cpu_seconds() { # PID: user + system CPU time so far
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"
}

peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# ---- the stack for one layer ----

start_backends() { # LAYER
    local kind
    for kind in $(layer_backends "$1"); do
        case $kind in
        pg) pg_start "$WORK/pg" "$PG_PORT" -c max_connections=400 -c shared_buffers=128MB >/dev/null ;;
        redis) redis_start "$WORK/redis" "$REDIS_PORT" ;;
        esac
    done
}

stop_backends() {
    pg_stop "$WORK/pg" || true
    redis_stop "$WORK/redis" || true
    rm -rf "$WORK/pg" "$WORK/redis"
}

start_server() { # LAYER -> sets SERVER_PID
    local n=$1 pg=$PG_PORT
    if [ -n "$DB_LATENCY" ]; then
        "$ROOT/build/bench/delay-proxy/delay-proxy" "$PROXY_PORT" "$PG_PORT" "$DB_LATENCY" \
            2>>"$WORK/proxy.log" &
        PIDS+=($!)
        pg=$PROXY_PORT
    fi
    (
        eval "$(layer_env "$n" "$pg" "$REDIS_PORT" "$API_PORT")"
        export LOG_LEVEL=warn DB_POOL_MAX_WAITING=10000
        exec "$(binary_of "$n")"
    ) 2>>"$WORK/server.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local _
    for _ in $(seq 1 200); do
        curl -fs -o /dev/null "http://127.0.0.1:$API_PORT/health" && return 0
        sleep 0.05
    done
    tail -n 20 "$WORK/server.log" >&2
    fail "${LAYER_NAMES[$n]} did not become healthy"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    PIDS=()
}

# Writes bench:1..bench:KEYS (100-byte values) through the API, 32 at a time.
preload() {
    local value cfg="$WORK/preload.curl" i failures
    value=$(printf 'v%.0s' $(seq 1 100))
    : >"$cfg"
    for i in $(seq 1 "$KEYS"); do
        [ "$i" -gt 1 ] && echo "next" >>"$cfg"
        printf 'url = "http://127.0.0.1:%d/write"\ndata = "{\\"key\\":\\"bench:%d\\",\\"value\\":\\"%s\\"}"\nheader = "Content-Type: application/json"\noutput = /dev/null\nwrite-out = "%%{http_code}\\n"\n' \
            "$API_PORT" "$i" "$value" >>"$cfg"
    done
    failures=$(curl -s --no-progress-meter -Z --parallel-max 32 -K "$cfg" 2>/dev/null | grep -cv '^200$' || true)
    [ "$failures" = 0 ] || fail "preload: $failures of $KEYS writes failed"
}

bench_layer() { # LAYER
    local n=$1 name=${LAYER_NAMES[$1]} w c cpu0 cpu1 result flag
    progress "$name: starting its databases and server"
    start_backends "$n"
    start_server "$n"
    progress "$name: writing $KEYS keys"
    preload
    for w in $WORKLOADS; do
        for c in $CONCURRENCY; do
            progress "$name: $w at $c clients (${WARMUP}s warm-up + ${DURATION}s)"
            run_wrk "$w" "$c" "$WARMUP" >/dev/null
            cpu0=$(cpu_seconds "$SERVER_PID")
            result=$(run_wrk "$w" "$c" "$DURATION")
            cpu1=$(cpu_seconds "$SERVER_PID")
            read -r rps p50 p90 p99 max non2xx socket requests <<<"$result"
            flag=""
            if [ "$non2xx" != 0 ] || [ "$socket" != 0 ]; then
                flag="ERRORS"
                ERRORS=$((ERRORS + non2xx + socket))
                progress "$name: $w at $c clients: $non2xx non-2xx, $socket socket errors"
            fi
            echo "$name,$w,$c,$rps,$p50,$p90,$p99,$max,$non2xx,$socket,$requests,$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.2f", b - a}'),$(peak_rss_kb "$SERVER_PID"),$flag" >>"$OUT/results.csv"
        done
    done
    stop_server
    stop_backends
}

# The HTTP layer alone, PostgreSQL alone, Redis alone: what the machine allows.
bench_ceilings() {
    local c result rps p99
    progress "ceilings: HTTP only (GET /ping on l0), pgbench -S, redis-benchmark GET"
    pg_start "$WORK/pg" "$PG_PORT" -c max_connections=400 -c shared_buffers=128MB >/dev/null
    redis_start "$WORK/redis" "$REDIS_PORT"
    start_server 0
    as_pg_owner "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U layers -i -s 1 -q layers \
        >/dev/null 2>&1
    for c in $CONCURRENCY; do
        result=$(run_wrk ping "$c" "$DURATION")
        read -r rps _ _ p99 _ <<<"$result"
        echo "http-only,$c,$rps,$p99" >>"$OUT/ceilings.csv"
        rps=$(as_pg_owner "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U layers -S -n \
            -c "$c" -j $((c < 2 ? 1 : 2)) -T "$DURATION" layers 2>/dev/null |
            awk '/^tps/ {print $3}')
        echo "postgresql,$c,$rps," >>"$OUT/ceilings.csv"
        rps=$(redis-benchmark -p "$REDIS_PORT" -t get -c "$c" -n $((20000 * DURATION)) -r "$KEYS" \
            -q --csv 2>/dev/null | awk -F'"' '/GET/ {print $4}')
        echo "redis,$c,$rps," >>"$OUT/ceilings.csv"
    done
    stop_server
    stop_backends
}

describe_machine() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "command: ./layers bench $*"
        echo "host: $(hostname)"
        echo "cpu: $(nproc) x $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
        echo "memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
        echo "kernel: $(uname -r)"
        echo "postgresql: $("$PG_BIN/postgres" --version | awk '{print $3}')"
        echo "redis: $(redis-server --version | awk '{print $3}' | cut -d= -f2)"
        echo "wrk: $(wrk -v 2>&1 | awk 'NR==1 {print $2}')"
        echo "settings: keys=$KEYS duration=${DURATION}s warmup=${WARMUP}s concurrency='$CONCURRENCY' db_latency=${DB_LATENCY:-0}ms"
        echo "note: load generator, servers and databases share this machine"
    } >"$OUT/machine.txt"
}

main() {
    parse_args "$@"
    command -v wrk >/dev/null || fail "wrk is not installed (./layers deps)"
    [ -x "$(binary_of 0)" ] || fail "nothing is built yet (./layers build)"
    [ -z "$DB_LATENCY" ] || [ -x "$ROOT/build/bench/delay-proxy/delay-proxy" ] ||
        fail "the delay proxy is not built (./layers build)"
    local layers=() l n
    if [ ${#SELECTED[@]} -eq 0 ]; then
        for n in "${!LAYER_NAMES[@]}"; do [ -x "$(binary_of "$n")" ] && layers+=("$n"); done
    else
        for l in "${SELECTED[@]}"; do
            n=$(layer_number "$l")
            [ -x "$(binary_of "$n")" ] || fail "${LAYER_NAMES[$n]} is not built"
            layers+=("$n")
        done
    fi
    if [ -z "$OUT" ]; then
        OUT="$ROOT/bench/results/$(date -u +%Y-%m-%d)-$(hostname -s)"
        [ -e "$OUT" ] && OUT="$OUT-$(date -u +%H%M%S)"
    fi
    mkdir -p "$OUT"
    WORK=$(mktemp -d /tmp/layers-bench-XXXXXX)
    chmod 755 "$WORK"
    echo "layer,workload,concurrency,rps,p50_us,p90_us,p99_us,max_us,non2xx,socket_errors,requests,server_cpu_s,server_peak_rss_kb,flag" >"$OUT/results.csv"
    echo "kind,concurrency,rps,p99_us" >"$OUT/ceilings.csv"
    describe_machine "$@"
    ERRORS=0
    bench_ceilings
    for n in "${layers[@]}"; do bench_layer "$n"; done
    /usr/bin/python3 "$ROOT/bench/report.py" report "$OUT"
    progress "results in ${OUT#"$ROOT"/}: report.md, results.csv, ceilings.csv, *.svg"
    if [ "$ERRORS" != 0 ]; then
        progress "FAILED REQUESTS: $ERRORS (flagged in the report)"
        exit 1
    fi
}

main "$@"
