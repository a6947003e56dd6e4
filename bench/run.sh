#!/usr/bin/env bash
# bench/run.sh: the benchmark harness behind `./layers bench` (methodology: bench/README.md).
#
#   ./layers bench [LAYER...] [options]      every built layer when none is named
#     --quick               smoke test: 16 clients, 1 s runs, no warm-up, 1,000 keys (CI runs it)
#     --duration S          measured seconds per run (default 3)
#     --warmup S            unmeasured seconds before each run (default 1; 0: none)
#     --concurrency LIST    concurrent clients, e.g. "1 16 64 256" (the default)
#     --keys N              keys written before the runs (default 10000, 100-byte values)
#     --workloads LIST      default "read-hit read-zipf read-miss write mixed"
#     --db-latency MS       put PostgreSQL MS milliseconds away (each way) behind delay-proxy
#     --out DIR             results folder (default bench/results/<date>-<host>)
#     --set NAME=VALUE      a server setting for this run (repeatable), e.g. to measure layer 3
#                           with one replica: --set REPLICA_DATABASE_URLS=postgresql://layers@127.0.0.1:24001/layers
#   ./layers bench --compare RESULTS_A RESULTS_B     B/A, workload by workload
#   ./layers bench --list                            the layers the benchmark knows
#
# For each layer: start its databases (fresh, on ports 24000+ and 24100+), start the server
# (24200), write the data set through the API, run each workload at each concurrency (a
# warm-up, then a measured run with wrk), stop everything it started. Ceilings measured in the
# same run: the HTTP layer alone (GET /ping), PostgreSQL alone (pgbench -S), Redis alone
# (redis-benchmark GET). Writes results.csv, ceilings.csv, machine.txt, report.md and SVG charts.
# Exits non-zero if any request failed (status >= 400 or a socket error) or a layer could not
# be measured; such runs are flagged in the report, never averaged in.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/stack.sh
source "$ROOT/scripts/stack.sh"
# shellcheck source=scripts/layers-table.sh
source "$ROOT/scripts/layers-table.sh"

# ---- the layers, as the benchmark sees them ----

# One line per layer. Names, databases and settings come from scripts/layers-table.sh; this
# table adds only what the benchmark needs. A layer is measured once its binary is built, so a
# new layer joins by filling in its line (often: by leaving it empty). Columns, split on '|':
#   layer | settings for the benchmark, beyond the layer's defaults (NAME=value ...)
#         | one extra request header ("Name: value")
#         | workloads it cannot serve, as "workload: why; workload: why"
BENCH_LAYERS=(
    "l0  |                |                   |"
    "l1  |                |                   |"
    "l2  |                |                   |"
    "l3  |                |                   |"
    "l4  |                |                   |"
    "l5  |                |                   |"
    "l6  |                |                   |"
    "l7  |                |                   |"
    "l8  |                |                   |"
    "l9  |                |                   |"
    "l10 | API_KEY=bench  | X-API-Key: bench  |"
)

ALL_WORKLOADS="read-hit read-zipf read-miss write mixed"

PG_BASE=24000    # PostgreSQL instance i of the layer under test listens on 24000 + i
REDIS_BASE=24100 # Redis instance i on 24100 + i
API_PORT=24200   # the server under test
PROXY_BASE=24300 # --db-latency: delay-proxy i on 24300 + i, in front of PostgreSQL i
PG_OPTIONS=(-c max_connections=400) # layer 0 opens one connection per concurrent request
PROXY_BIN="$ROOT/build/bench/delay-proxy/delay-proxy"

# Settings (empty until parse_args; --quick fills the ones not given)
WORKLOADS="" CONCURRENCY="" DURATION="" WARMUP="" KEYS="" DB_LATENCY="" OUT="" QUICK=0
SELECTED=()
EXTRA_SETTINGS=() # --set NAME=VALUE, for every server of this run

WORK=""         # this run's scratch directory (databases, logs), removed at exit
PIDS=()         # processes this run started and has not stopped yet
SERVER_PID=""   # the server under test
ERRORS=0        # failed requests and failed runs, over the whole run
START_S=$SECONDS
PLAN_LEFT=0     # estimated seconds of work left, for the progress lines
PLAN_DONE=0     # estimated seconds of work done

fail() {
    echo "bench: $*" >&2
    exit 1
}

# ---- cleanup: whatever happens, stop what we started ----

stop_pids() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    SERVER_PID=""
}

stop_databases() {
    local dir
    [ -n "$WORK" ] || return 0
    for dir in "$WORK"/pg[0-9]* "$WORK"/pg-template; do
        [ -d "$dir" ] && { (pg_stop "$dir") || true; }
    done
    for dir in "$WORK"/redis[0-9]*; do
        [ -d "$dir" ] && { (redis_stop "$dir") || true; }
    done
    return 0
}

cleanup() {
    stop_pids
    stop_databases
    [ -z "$WORK" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- options ----

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
        --quick) QUICK=1 ;;
        --set)
            if [ $# -lt 2 ] || ! [[ $2 =~ ^[A-Z_][A-Z0-9_]*= ]]; then
                fail "--set needs NAME=VALUE (try --help)"
            fi
            EXTRA_SETTINGS+=("$2")
            shift
            ;;
        --duration | --warmup | --concurrency | --keys | --workloads | --db-latency | --out)
            [ $# -ge 2 ] || fail "$1 needs a value (try --help)"
            case $1 in
            --duration) DURATION=$2 ;;
            --warmup) WARMUP=$2 ;;
            --concurrency) CONCURRENCY=$2 ;;
            --keys) KEYS=$2 ;;
            --workloads) WORKLOADS=$2 ;;
            --db-latency) DB_LATENCY=${2%ms} ;;
            --out) OUT=$2 ;;
            esac
            shift
            ;;
        --compare)
            [ $# -eq 3 ] || fail "usage: ./layers bench --compare RESULTS_A RESULTS_B"
            exec /usr/bin/python3 "$ROOT/bench/report.py" compare "$2" "$3"
            ;;
        --list) list_layers; exit 0 ;;
        -h | --help) usage; exit 0 ;;
        -*) fail "unknown option $1 (try --help)" ;;
        *) SELECTED+=("$1") ;;
        esac
        shift
    done
    if [ "$QUICK" = 1 ]; then
        : "${CONCURRENCY:=16}" "${DURATION:=1}" "${WARMUP:=0}" "${KEYS:=1000}"
    fi
    : "${WORKLOADS:=$ALL_WORKLOADS}" "${CONCURRENCY:=1 16 64 256}" "${DURATION:=3}"
    : "${WARMUP:=1}" "${KEYS:=10000}"
    local w c
    [[ $DURATION =~ ^[1-9][0-9]*$ ]] || fail "--duration: whole seconds, at least 1"
    [[ $WARMUP =~ ^[0-9]+$ ]] || fail "--warmup: whole seconds"
    [[ $KEYS =~ ^[1-9][0-9]*$ ]] || fail "--keys: a positive number"
    [ -z "$DB_LATENCY" ] || [[ $DB_LATENCY =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
        fail "--db-latency: milliseconds, e.g. 5 or 0.5"
    for c in $CONCURRENCY; do
        if ! [[ $c =~ ^[1-9][0-9]*$ ]] || [ "$c" -gt 1000 ]; then
            fail "--concurrency: 1 to 1000 clients, got '$c'"
        fi
    done
    for w in $WORKLOADS; do
        [[ " $ALL_WORKLOADS " == *" $w "* ]] || fail "unknown workload '$w' ($ALL_WORKLOADS)"
    done
}

# ---- the layer table ----

trim() {
    local s=$1
    s=${s#"${s%%[![:space:]]*}"}
    echo "${s%"${s##*[![:space:]]}"}"
}

# Prints one column of a layer's BENCH_LAYERS line: bench_field N settings|header|unsupported
bench_field() {
    local line name settings header unsupported
    for line in "${BENCH_LAYERS[@]}"; do
        IFS='|' read -r name settings header unsupported <<<"$line"
        [ "$(trim "$name")" = "l$1" ] || continue
        case $2 in
        settings) trim "$settings" ;;
        header) trim "$header" ;;
        unsupported) trim "$unsupported" ;;
        esac
        return 0
    done
}

# Why layer N cannot serve workload W, or nothing if it can.
unsupported_reason() {
    local entry entries=()
    IFS=';' read -ra entries <<<"$(bench_field "$1" unsupported)"
    for entry in "${entries[@]}"; do
        entry=$(trim "$entry")
        if [ "${entry%%:*}" = "$2" ]; then
            trim "${entry#*:}"
            return 0
        fi
    done
}

binary_of() { echo "$ROOT/build/${LAYER_NAMES[$1]}/${LAYER_NAMES[$1]}"; }

list_layers() {
    local line name n state
    for line in "${BENCH_LAYERS[@]}"; do
        name=$(trim "${line%%|*}")
        n=${name#l}
        state="not built"
        [ -x "$(binary_of "$n")" ] && state="built: measured by default"
        printf '%-26s %-12s %s\n' "${LAYER_NAMES[$n]}" "$(layer_backends "$n" | tr ' ' '+')" "$state"
    done
}

# ---- progress ----

plan() { PLAN_LEFT=$((PLAN_LEFT + $1)); }

# Marks S estimated seconds as done.
plan_done() {
    PLAN_LEFT=$((PLAN_LEFT - $1))
    PLAN_DONE=$((PLAN_DONE + $1))
}

# "[bench 07:09:11, ~4m05s left] MESSAGE": time left is the estimate scaled by how the
# estimate has fared so far (start-up, preload and tool overheads are only guessed).
progress() {
    local elapsed=$((SECONDS - START_S)) left=$PLAN_LEFT
    if [ "$PLAN_DONE" -gt 0 ] && [ "$elapsed" -gt "$PLAN_DONE" ]; then
        left=$((PLAN_LEFT * elapsed / PLAN_DONE))
    fi
    [ "$left" -ge 0 ] || left=0
    printf '[bench %s, ~%dm%02ds left] %s\n' "$(date +%H:%M:%S)" $((left / 60)) $((left % 60)) \
        "$*" >&2
}

# ---- measurements ----

# Runs wrk; prints "rps p50 p90 p99 max non2xx socket requests" (latencies in microseconds)
# and appends wrk's own output to raw.log. Returns non-zero if wrk produced no result.
run_wrk() { # WORKLOAD CLIENTS SECONDS HEADER LABEL
    local threads=2 out
    [ "$2" -ge 2 ] || threads=1
    out=$(WORKLOAD=$1 KEYS=$KEYS HEADER=$4 wrk -t"$threads" -c"$2" -d"${3}s" --timeout 10s \
        -s "$ROOT/bench/lua/workload.lua" "http://127.0.0.1:$API_PORT" 2>&1) || true
    if [ -n "$5" ]; then
        printf '==== %s: wrk -t%s -c%s -d%ss (WORKLOAD=%s KEYS=%s)\n%s\n\n' "$5" "$threads" "$2" \
            "$3" "$1" "$KEYS" "$out" >>"$OUT/raw.log"
    fi
    echo "$out" | awk '/^RESULT / {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print v["rps"], v["p50"], v["p90"], v["p99"], v["max"], v["non2xx"], v["socket"], v["requests"]
        found = 1
    } END { exit !found }'
}

# CPU seconds (user + system) of processes, from /proc/PID/stat; with --children, also the
# CPU of their children that have exited (PostgreSQL's backends, counted by the postmaster).
cpu_ticks() {
    local with_children=0
    if [ "${1:-}" = --children ]; then
        with_children=1
        shift
    fi
    local pid
    for pid in "$@"; do cat "/proc/$pid/stat" 2>/dev/null || true; done |
        awk -v c="$with_children" '{ sub(/^.*\) /, ""); t += $12 + $13; if (c) t += $14 + $15 }
            END { print t + 0 }'
}

server_cpu() { awk -v t="$(cpu_ticks "$SERVER_PID")" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'; }

# The databases' CPU: every PostgreSQL (postmaster, its backends, those that ended) and Redis.
# Approximate: a backend ending between two reads can be missed (layer 0 ends one per request).
backend_cpu() {
    local dir pm t=0
    for dir in "$WORK"/pg[0-9]*; do
        [ -f "$dir/postmaster.pid" ] || continue
        pm=$(head -n 1 "$dir/postmaster.pid")
        t=$((t + $(cpu_ticks --children "$pm")))
        # shellcheck disable=SC2046 # one pid per word
        t=$((t + $(cpu_ticks $(ps -o pid= --ppid "$pm"))))
    done
    for dir in "$WORK"/redis[0-9]*; do
        [ -f "$dir/redis.pid" ] && t=$((t + $(cpu_ticks "$(cat "$dir/redis.pid")")))
    done
    awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# Peak resident memory of the server since the last reset_peak_rss (since start if the kernel
# refuses the reset).
reset_peak_rss() { echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null || true; }
peak_rss_kb() { awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo ""; }

# ---- the stack of one layer: databases, delay proxies, server ----

# Starts PostgreSQL instance I on PG_BASE + I, as a copy of a template cluster (initdb once).
start_pg() { # I
    if [ ! -d "$WORK/pg-template" ]; then
        (pg_start "$WORK/pg-template" "$PG_BASE" && pg_stop "$WORK/pg-template") >/dev/null ||
            return 1
    fi
    cp -a "$WORK/pg-template" "$WORK/pg$1"
    (pg_start "$WORK/pg$1" $((PG_BASE + $1)) "${PG_OPTIONS[@]}") >/dev/null
}

start_proxy() { # I: delay-proxy on PROXY_BASE + I in front of PostgreSQL I
    local port=$((PROXY_BASE + $1)) _
    ! port_in_use "$port" || { echo "port $port is in use" >&2; return 1; }
    "$PROXY_BIN" "$port" $((PG_BASE + $1)) "$DB_LATENCY" 2>>"$WORK/proxy$1.log" &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        port_in_use "$port" && return 0
        sleep 0.05
    done
    echo "delay-proxy did not start on $port" >&2
    return 1
}

# Starts what layer N needs, then the server; returns non-zero (with a reason on stderr) if
# anything does not come up. SERVER_PID is set once the server answers /health.
start_stack() { # N
    local n=$1 kind pg_i=0 redis_i=0 pg_port=$PG_BASE _
    for kind in $(layer_backends "$n"); do
        case $kind in
        pg)
            start_pg "$pg_i" || return 1
            if [ -n "$DB_LATENCY" ]; then start_proxy "$pg_i" || return 1; fi
            pg_i=$((pg_i + 1))
            ;;
        standby) # a streaming replica of instance 0 (layer 3), on PG_BASE + its index
            (pg_standby_start "$WORK/pg0" "$PG_BASE" "$WORK/pg$pg_i" $((PG_BASE + pg_i)) \
                "standby_$pg_i" "${PG_OPTIONS[@]}") >/dev/null || return 1
            if [ -n "$DB_LATENCY" ]; then start_proxy "$pg_i" || return 1; fi
            pg_i=$((pg_i + 1))
            ;;
        redis)
            (redis_start "$WORK/redis$redis_i" $((REDIS_BASE + redis_i)) "$(layer_redis_mode "$n")") ||
                return 1
            redis_i=$((redis_i + 1))
            ;;
        esac
    done
    [ -z "$DB_LATENCY" ] || pg_port=$PROXY_BASE
    ! port_in_use "$API_PORT" || { echo "port $API_PORT is in use" >&2; return 1; }
    local settings=()
    read -ra settings <<<"$(bench_field "$n" settings)"
    (
        eval "$(layer_env "$n" "$pg_port" "$REDIS_BASE" "$API_PORT")"
        exec env LOG_LEVEL=warn "${settings[@]}" "${EXTRA_SETTINGS[@]}" "$(binary_of "$n")"
    ) 2>>"$WORK/server.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local helper # the layer's workers (layer 6), with the server's settings
    for helper in $(layer_helpers "$n"); do
        (
            eval "$(layer_env "$n" "$pg_port" "$REDIS_BASE" "$API_PORT")"
            exec env LOG_LEVEL=warn "${settings[@]}" "${EXTRA_SETTINGS[@]}" \
                "$ROOT/build/${LAYER_NAMES[$n]}/$helper"
        ) 2>>"$WORK/helpers.log" &
        PIDS+=($!)
    done
    for _ in $(seq 1 300); do
        curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$API_PORT/health" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    tail -n 15 "$WORK/server.log" >&2
    echo "${LAYER_NAMES[$n]} did not become healthy" >&2
    return 1
}

# Stops the server, the proxies and the databases; keeps the logs in OUT/logs/LABEL.log.
stop_stack() { # LABEL
    stop_pids
    stop_databases
    local log="$OUT/logs/$1.log" f
    mkdir -p "$OUT/logs"
    {
        [ ! -s "$WORK/server.log" ] || { echo "== server (last 1000 lines)"; tail -n 1000 "$WORK/server.log"; }
        [ ! -s "$WORK/helpers.log" ] || { echo "== workers (last 1000 lines)"; tail -n 1000 "$WORK/helpers.log"; }
        for f in "$WORK"/proxy[0-9]*.log; do
            [ -f "$f" ] && { echo "== $(basename "$f" .log)"; cat "$f"; }
        done
    } >"$log"
    [ -s "$log" ] || rm -f "$log"
    rm -rf "$WORK"/pg[0-9]* "$WORK"/redis[0-9]* "$WORK"/server.log "$WORK"/helpers.log "$WORK"/proxy[0-9]*.log
}

# Writes bench:1 .. bench:KEYS (100-byte values) through the API, 32 requests in flight, then
# reads three of them back. Returns non-zero (with a reason) if any write failed.
preload() { # N
    local value cfg="$WORK/preload.curl" i failures header k body extra=()
    header=$(bench_field "$1" header)
    [ -z "$header" ] || extra=(-H "$header")
    value=$(printf 'v%.0s' $(seq 1 100))
    for i in $(seq 1 "$KEYS"); do
        [ "$i" = 1 ] || echo "next"
        printf 'url = "http://127.0.0.1:%d/write"\n' "$API_PORT"
        printf 'data = "{\\"key\\":\\"bench:%d\\",\\"value\\":\\"%s\\"}"\n' "$i" "$value"
        printf 'header = "Content-Type: application/json"\n'
        [ -z "$header" ] || printf 'header = "%s"\n' "$header"
        printf 'output = /dev/null\nwrite-out = "%%{http_code}\\n"\n'
    done >"$cfg"
    failures=$(curl -s --max-time 30 -Z --parallel-max 32 -K "$cfg" 2>/dev/null | grep -cv '^200$' || true)
    [ "$failures" = 0 ] || { echo "preload: $failures of $KEYS writes failed" >&2; return 1; }
    for k in 1 $((KEYS / 2 + 1)) "$KEYS"; do
        body=$(curl -fs --max-time 5 "${extra[@]}" "http://127.0.0.1:$API_PORT/read/bench:$k") || true
        [[ $body == *'"success":true'* ]] || { echo "preload: bench:$k does not read back" >&2; return 1; }
    done
}

# ---- one layer ----

csv_row() { (IFS=,; echo "$*") >>"$OUT/results.csv"; }

# Records the runs of layer N as FAILED: all of them, or those after workload AFTER_W at
# AFTER_C clients (the runs before have their rows). Counts as one error.
record_failed() { # N REASON [AFTER_W AFTER_C]
    local name=${LAYER_NAMES[$1]} w c todo=1
    [ $# -lt 3 ] || todo=0
    for w in $WORKLOADS; do
        for c in $CONCURRENCY; do
            [ "$todo" = 0 ] || csv_row "$name" "$w" "$c" "" "" "" "" "" "" "" "" "" "" "" "FAILED: ${2//,/;}"
            [ "$w $c" != "${3:-} ${4:-}" ] || todo=1
        done
    done
    ERRORS=$((ERRORS + 1))
    progress "$name: FAILED: $2"
}

# Runs every workload at every concurrency against the running server of layer N, one row
# each in results.csv. Returns non-zero after recording a failure that ends the layer's runs.
measure_layer() { # N
    local n=$1 name=${LAYER_NAMES[$1]} header w c why result cpu0 bcpu0 flag
    local rps p50 p90 p99 max non2xx socket requests
    header=$(bench_field "$n" header)
    for w in $WORKLOADS; do
        why=$(unsupported_reason "$n" "$w")
        for c in $CONCURRENCY; do
            if [ -n "$why" ]; then
                csv_row "$name" "$w" "$c" "" "" "" "" "" "" "" "" "" "" "" "not served: ${why//,/;}"
                continue
            fi
            progress "$name: $w at $c clients (${WARMUP}s warm-up + ${DURATION}s)"
            [ "$WARMUP" = 0 ] || run_wrk "$w" "$c" "$WARMUP" "$header" "" >/dev/null || true
            reset_peak_rss
            cpu0=$(server_cpu)
            bcpu0=$(backend_cpu)
            if ! result=$(run_wrk "$w" "$c" "$DURATION" "$header" "$name $w $c"); then
                csv_row "$name" "$w" "$c" "" "" "" "" "" "" "" "" "" "" "" "FAILED: no result from wrk (raw.log)"
                record_failed "$n" "wrk gave no result for $w at $c clients (raw.log)" "$w" "$c"
                return 1
            fi
            read -r rps p50 p90 p99 max non2xx socket requests <<<"$result"
            flag=""
            if [ "$non2xx" != 0 ] || [ "$socket" != 0 ]; then
                flag="ERRORS"
                ERRORS=$((ERRORS + non2xx + socket))
            fi
            csv_row "$name" "$w" "$c" "$rps" "$p50" "$p90" "$p99" "$max" "$non2xx" "$socket" \
                "$requests" "$(awk -v a="$cpu0" -v b="$(server_cpu)" 'BEGIN {printf "%.2f", b - a}')" \
                "$(awk -v a="$bcpu0" -v b="$(backend_cpu)" 'BEGIN {printf "%.2f", b - a}')" \
                "$(peak_rss_kb)" "$flag"
            plan_done $((WARMUP + DURATION))
            if [ -n "$flag" ]; then
                progress "$name: $w at $c clients: ERRORS: $non2xx responses >= 400, $socket socket errors"
            else
                progress "$name: $w at $c clients: $(awk -v r="$rps" -v p="$p99" \
                    'BEGIN {printf "%.0f req/s, p99 %.2f ms", r, p / 1000}')"
            fi
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                record_failed "$n" "the server exited during $w at $c clients (logs/$name.log)" "$w" "$c"
                return 1
            fi
        done
    done
}

# Estimated seconds of one layer: start-up and preload, then the runs.
layer_plan() {
    local runs=0 w c
    for w in $WORKLOADS; do for c in $CONCURRENCY; do runs=$((runs + 1)); done; done
    echo $((5 + KEYS / 2000 + runs * (WARMUP + DURATION)))
}

# Starts layer N's stack, loads the data set, measures, stops; a failure is recorded and the
# run goes on with the next layer.
bench_layer() { # N
    local n=$1 name=${LAYER_NAMES[$1]} done_before=$PLAN_DONE
    progress "$name: starting its databases ($(layer_backends "$n")) and the server"
    if ! start_stack "$n" 2>>"$WORK/why"; then
        record_failed "$n" "$(tail -n 1 "$WORK/why")"
    else
        progress "$name: writing $KEYS keys through the API"
        if ! preload "$n" 2>>"$WORK/why"; then
            record_failed "$n" "$(tail -n 1 "$WORK/why")"
        else
            plan_done $((5 + KEYS / 2000))
            measure_layer "$n" || true
        fi
    fi
    stop_stack "$name"
    plan_done $(($(layer_plan) - (PLAN_DONE - done_before)))
}

# ---- ceilings: the HTTP layer alone, PostgreSQL alone, Redis alone ----

# With --db-latency, pgbench goes through the delay proxy like the servers do.
bench_ceilings() {
    local c rps avg p99 err socket failed out pg_port=$PG_BASE threads levels=0 pg_time
    for c in $CONCURRENCY; do levels=$((levels + 1)); done
    progress "ceilings: GET /ping (HTTP only), pgbench -S (PostgreSQL), redis-benchmark GET (Redis)"
    if ! start_stack 0 2>>"$WORK/why" || ! (redis_start "$WORK/redis0" "$REDIS_BASE") >/dev/null; then
        ERRORS=$((ERRORS + 1))
        progress "ceilings: FAILED: $(tail -n 1 "$WORK/why")"
        for c in $CONCURRENCY; do
            printf '%s,%s,,,,1\n' http-only "$c" postgresql "$c" redis "$c" >>"$OUT/ceilings.csv"
        done
        stop_stack ceilings
        plan_done $((levels * 3 * DURATION + 5))
        return 0
    fi
    [ -z "$DB_LATENCY" ] || pg_port=$PROXY_BASE
    as_pg_owner "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_BASE" -U layers -i -s 1 -q layers \
        >>"$OUT/raw.log" 2>&1 || progress "ceilings: pgbench -i failed (raw.log)"
    redis-benchmark -p "$REDIS_BASE" -t set -n $((KEYS * 3)) -r "$KEYS" -d 100 -q >/dev/null 2>&1 || true
    for c in $CONCURRENCY; do
        progress "ceilings at $c clients"
        # HTTP only: GET /ping on layer 0's server (the route is the shared core's).
        if out=$(run_wrk ping "$c" "$DURATION" "" "ceiling http-only $c"); then
            read -r rps _ _ p99 _ err socket _ <<<"$out"
            err=$((err + socket))
            csv_ceiling http-only "$c" "$rps" "" "$p99" "$err"
        else
            csv_ceiling http-only "$c" "" "" "" 1
        fi
        # PostgreSQL only: primary-key selects on pgbench's 100,000-row table.
        threads=2
        [ "$c" -ge 2 ] || threads=1
        err=0
        # pgbench opens its connections one at a time per thread, inside -T, and reports tps
        # without that time; through the delay proxy each costs several round trips, so -T
        # grows by about that much (256 clients 5 ms away: about 4 s), or nothing is measured.
        pg_time=$(awk -v d="$DURATION" -v c="$c" -v t="$threads" -v l="${DB_LATENCY:-0}" \
            'BEGIN { x = c / t * l * 6 / 1000; printf "%d", d + (x > 0 ? int(x) + 1 : 0) }')
        out=$(as_pg_owner "$PG_BIN/pgbench" -h 127.0.0.1 -p "$pg_port" -U layers -S -n -c "$c" \
            -j "$threads" -T "$pg_time" layers 2>&1) || err=1
        printf '==== ceiling postgresql %s: pgbench -S -c %s -j %s -T %s\n%s\n\n' "$c" "$c" \
            "$threads" "$pg_time" "$out" >>"$OUT/raw.log"
        rps=$(echo "$out" | awk '/^tps/ {print $3}')
        avg=$(echo "$out" | awk '/^latency average/ {printf "%.0f", $4 * 1000}')
        failed=$(echo "$out" | awk '/^number of failed transactions/ {print $5}')
        [ -n "$rps" ] || err=1
        csv_ceiling postgresql "$c" "$rps" "$avg" "" $((err + ${failed:-0}))
        # Redis only: GET of 100-byte values over KEYS keys.
        err=0
        out=$(redis-benchmark -p "$REDIS_BASE" -t get -c "$c" -n $((20000 * DURATION)) -r "$KEYS" \
            -q --csv 2>&1) || err=1
        printf '==== ceiling redis %s: redis-benchmark -t get -c %s -n %s\n%s\n\n' "$c" "$c" \
            $((20000 * DURATION)) "$out" >>"$OUT/raw.log"
        rps=$(echo "$out" | awk -F'"' '$2 == "GET" {print $4}')
        avg=$(echo "$out" | awk -F'"' '$2 == "GET" {printf "%.0f", $6 * 1000}')
        p99=$(echo "$out" | awk -F'"' '$2 == "GET" {printf "%.0f", $14 * 1000}')
        [ -n "$rps" ] || err=1
        csv_ceiling redis "$c" "$rps" "$avg" "$p99" "$err"
        plan_done $((3 * DURATION))
    done
    stop_stack ceilings
    plan_done 5
}

csv_ceiling() { # KIND CLIENTS RPS AVG_US P99_US ERRORS
    (IFS=,; echo "$*") >>"$OUT/ceilings.csv"
    if [ "$6" != 0 ]; then
        ERRORS=$((ERRORS + $6))
        progress "ceiling $1 at $2 clients: ERRORS ($6; raw.log)"
    fi
}

# ---- the run ----

describe_machine() {
    local commit dirty=""
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$ROOT" diff --quiet HEAD -- . ':!bench/results' 2>/dev/null || dirty=" (with local changes)"
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "command: ./layers bench $*"
        echo "commit: $commit$dirty"
        echo "host: $(hostname)"
        echo "cpu: $(nproc) x $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
        echo "memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
        echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "kernel: $(uname -r)"
        echo "postgresql: $("$PG_BIN/postgres" --version | awk '{print $3}') (${PG_OPTIONS[*]}, other settings default)"
        echo "redis: $(redis-server --version | awk '{print $3}' | cut -d= -f2)"
        echo "wrk: $(wrk -v 2>&1 | awk 'NR==1 {print $2}')"
        echo "servers: their defaults, LOG_LEVEL=warn"
        echo "settings: keys=$KEYS duration=${DURATION}s warmup=${WARMUP}s concurrency=$CONCURRENCY db_latency=${DB_LATENCY:-0}ms"
        [ ${#EXTRA_SETTINGS[@]} = 0 ] || echo "server settings: ${EXTRA_SETTINGS[*]}"
        echo "note: load generator, servers and databases share this machine"
    } >"$OUT/machine.txt"
}

check_tools() {
    local tool
    for tool in wrk curl redis-server redis-benchmark /usr/bin/python3 "$PG_BIN/pgbench"; do
        command -v "$tool" >/dev/null || fail "$tool is not installed (./layers deps)"
    done
    command -v gnuplot >/dev/null || echo "bench: gnuplot is not installed: no charts" >&2
    [ -x "$(binary_of 0)" ] || fail "layer 0 is not built (./layers build); it also serves the HTTP ceiling"
    [ -z "$DB_LATENCY" ] || [ -x "$PROXY_BIN" ] || fail "the delay proxy is not built (./layers build)"
}

main() {
    parse_args "$@"
    check_tools
    local layers=() l n
    if [ ${#SELECTED[@]} -eq 0 ]; then
        for n in "${!LAYER_NAMES[@]}"; do
            [ -x "$(binary_of "$n")" ] && layers+=("$n")
        done
    else
        for l in "${SELECTED[@]}"; do
            n=$(layer_number_of "$l") || fail "unknown layer '$l' (try l0 ... l10, or --list)"
            [ -x "$(binary_of "$n")" ] || fail "${LAYER_NAMES[$n]} is not built (./layers build)"
            layers+=("$n")
        done
    fi
    if [ -z "$OUT" ]; then
        OUT="$ROOT/bench/results/$(date -u +%Y-%m-%d)-$(hostname -s)"
        [ ! -e "$OUT" ] || OUT="$OUT-$(date -u +%H%M%S)"
    fi
    [ ! -e "$OUT/results.csv" ] || fail "$OUT already holds results; choose another --out"
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    WORK=$(mktemp -d /tmp/layers-bench-XXXXXX)
    chmod 755 "$WORK" # PostgreSQL runs as user postgres when we are root
    : >"$WORK/why"
    : >"$OUT/raw.log"
    echo "layer,workload,concurrency,rps,p50_us,p90_us,p99_us,max_us,non2xx,socket_errors,requests,server_cpu_s,backend_cpu_s,server_peak_rss_kb,flag" >"$OUT/results.csv"
    echo "kind,concurrency,rps,avg_us,p99_us,errors" >"$OUT/ceilings.csv"
    describe_machine "$@"

    local levels=0 c
    for c in $CONCURRENCY; do levels=$((levels + 1)); done
    plan $((levels * 3 * DURATION + 5))
    for n in "${layers[@]}"; do plan "$(layer_plan)"; done
    progress "layers: $(for n in "${layers[@]}"; do printf '%s ' "${LAYER_NAMES[$n]}"; done)-> ${OUT#"$ROOT"/}"

    bench_ceilings
    for n in "${layers[@]}"; do bench_layer "$n"; done

    echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ) ($((SECONDS - START_S)) s)" >>"$OUT/machine.txt"
    /usr/bin/python3 "$ROOT/bench/report.py" report "$OUT"
    /usr/bin/python3 "$ROOT/bench/report.py" summary "$OUT"
    progress "results in ${OUT#"$ROOT"/}/: report.md, results.csv, ceilings.csv, charts, raw.log"
    if [ "$ERRORS" != 0 ]; then
        progress "FAILED: $ERRORS failed requests or runs (flagged in report.md)"
        exit 1
    fi
}

main "$@"
