#!/usr/bin/env bash
# bench/run.sh: the benchmark harness behind `./layers bench` (methodology: bench/README.md).
#
#   ./layers bench [LAYER...] [options]      every built layer when none is named
#     LAYER@NAME=VALUE[,NAME=VALUE]   a variant: that layer with these settings, for that entry
#                           only, measured in the same rotation as the others and labelled
#                           LAYER@VALUE[+VALUE] (e.g. l1 l1@DB_POOL_MODE=pipeline)
#     --quick               CI smoke test: 16 clients, 1 round, 1 s cells, 1,000 keys
#     --repeat R            rounds (default 3): every cell R times, interleaved across layers
#     --duration S          measured seconds per cell (default 1)
#     --warmup S            checked, unmeasured seconds before each cell (default 0.3; 0: none)
#     --concurrency LIST    concurrent connections, e.g. "1 16 64 256" (default "16 64")
#     --rate LIST           open loop: requests/s per cell, e.g. "1000 2000" (default: closed loop)
#     --keys N              keys written before the runs (default 1000, 100-byte values)
#     --workloads LIST      default "read-hit read-zipf read-miss write mixed drain lag"; layer 8's
#                           polyglot txn-read txn-write only when named
#     --drain-rows N        drain: the backlog a stopped worker leaves (default 30000)
#     --drain-rate R        drain: writes/s of the steady load its commit delay is read under
#                           (default 5000, on 16 connections)
#     --lag-rate R          lag: writes/s of the steady load layer 7's projection lag is read
#                           under (default 500, on 16 connections)
#     --db-latency MS       put PostgreSQL MS milliseconds away (each way) behind delay-proxy
#     --out DIR             results folder (default bench/results/<date>-<host>)
#     --set NAME=VALUE      a server setting for this run (repeatable)
#     --allow-dirty         measure a work tree with uncommitted changes (the report says so)
#     --no-ceilings         skip the ceilings (the harness's own test)
#     --no-build            measure build/ as it is (the harness's own test; implies a dirty mark)
#     --build-dir DIR       the build to measure (default build/)
#     --wrong-expectation   test hook: the cells expect 101-byte values where 100 were written,
#                           so every read fails its check (bench/test_bench.sh: the run fails)
#   ./layers bench --compare RESULTS_A RESULTS_B     B against A, cell by cell, with the spread
#   ./layers bench --list                            the layers the benchmark knows
#
# Round by round (R rounds), in an order that rotates each round: the ceilings, then for each
# layer: start fresh databases and the layer's programs, write the data set through the API and
# read it back (checked), run every cell (workload x clients) with bench/loadgen, then the
# drain of a layer with a write queue (layer 6: measure_drain), the projection lag of a layer
# with a read model (layer 7: measure_lag), stop
# everything. Writes results.csv (one row per cell and round), ceilings.csv, checks.csv,
# bounds.csv, machine.txt, report.md and SVG charts. Exits non-zero if any request failed its
# check (in a cell, its warm-up, the preload or its verification) or a layer could not be
# measured; such cells are flagged in the report, never averaged in.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/stack.sh
source "$ROOT/scripts/stack.sh"
# shellcheck source=scripts/layers-table.sh
source "$ROOT/scripts/layers-table.sh"

# ---- the layers, as the benchmark sees them ----

# One line per layer. Names, databases and settings come from scripts/layers-table.sh; this
# table adds only what the benchmark needs. A layer is measured once its binary is built, so a
# new layer joins by filling in its line (its extra programs: start_programs below). Columns,
# split on '|':
#   layer | settings for the benchmark, beyond the layer's defaults (NAME=value ...)
#         | one extra request header ("Name: value")
#         | workloads it cannot serve, as "workload: why; workload: why"
#         | the ceiling that bounds it: "KIND" for every workload, or "WORKLOAD=KIND ..." with
#           "*=KIND" for the rest (kinds: the ceilings below)
# Layer 0 opens a connection per request; its 2 s connect deadline (DB_CONNECT_TIMEOUT_MS)
# refused 18% of the preload's 32 concurrent writes (503) on this machine at load 12-18, where
# PostgreSQL took over 130 ms per connection: 10 s here, so that its throughput is measured
# and the queue for connections shows in its latency instead. Layer 6's queue bounds would
# refuse the drain's backlog (bench/README.md, "The drain").
BENCH_LAYERS=(
    "l0  | DB_CONNECT_TIMEOUT_MS=10000 |     | | pg-connect"
    "l1  |               |                  | | *=pg-select write=pg-write mixed=pg-select"
    "l2  |               |                  | | *=redis read-miss=pg-select write=pg-write"
    "l3  |               |                  | | *=redis read-miss=pg-select write=pg-write"
    "l4  |               |                  | | *=redis read-miss=pg-select write=pg-write"
    "l5  |               |                  | | *=http-only read-miss=pg-select write=pg-write"
    "l6  | QUEUE_MAX_LENGTH=1000000 QUEUE_MAX_AGE_MS=600000 | | | *=redis"
    "l7  |               |                  | | *=pg-select"
    "l8  |               |                  | | *=redis"
    "l9  |               | X-Region: eu-west | | *=pg-select write=pg-write mixed=pg-select"
    "l10 | API_KEYS=bench:read+write+admin RATE_LIMIT_REQUESTS=100000000 | X-API-Key: bench | | *=http-only read-miss=pg-select write=pg-write"
)

ALL_WORKLOADS="read-hit read-zipf read-miss write mixed drain lag"
# Layer 8's own workloads (its transaction and summary routes): measured only when named in
# --workloads, and only on layer 8 (other layers' rows say "not served").
LAYER8_WORKLOADS="polyglot txn-read txn-write"
# The order cells run in, each round: reads first, so that the read cells of a layer with a
# cache start warm and no write of this run has invalidated anything yet; the drain last (it
# stops and restarts the worker and leaves many more keys).
RUN_ORDER="read-hit read-zipf read-miss mixed polyglot txn-read write txn-write lag drain"
# The layers with a write queue and a worker draining it: the only ones `drain` measures
# (elsewhere it has no rows). Its worker program, by layer.
DRAIN_WORKERS=([6]=l6-worker)
DRAIN_CONNECTIONS=16 # the steady load of the drain's second phase
# The layers with a read model fed by a projector: the only ones `lag` measures.
LAG_LAYERS=([7]=l7-projector)
LAG_CONNECTIONS=16 # the steady load the lag is read under

PG_BASE=24000    # PostgreSQL instance i of the layer under test listens on 24000 + i
REDIS_BASE=24100 # Redis instance i on 24100 + i
API_PORT=24200   # the server under test
PROXY_BASE=24300 # --db-latency: delay-proxy i on 24300 + i, in front of PostgreSQL i
MONGO_BASE=24400 # MongoDB (layer 8's stand-in, scripts/stack.sh) instance i on 24400 + i
PG_OPTIONS=(-c max_connections=400) # layer 0 opens one connection per concurrent request
VALUE_BYTES=100
VERIFY_SAMPLE=500 # keys read back after the preload by a layer without a cache (all with one)

# Settings (empty until parse_args; --quick fills the ones not given)
WORKLOADS="" CONCURRENCY="" RATES="" DURATION="" WARMUP="" KEYS="" DB_LATENCY="" OUT="" QUICK=0
DRAIN_ROWS="" DRAIN_RATE=""
REPEAT="" ALLOW_DIRTY=0 CEILINGS=1 BUILD=1 WRONG=0
BUILD_DIR="$ROOT/build"
SELECTED=()
EXTRA_SETTINGS=() # --set NAME=VALUE, for every server of this run
VARIANT_SETTINGS=() # the settings of the entry being measured (LAYER@NAME=VALUE,...), else none
VARIANT_LABEL=""    # its suffix to the layer's name in every row: "@VALUE+VALUE", else empty
VARIANTS=()         # the run's variants, "LABEL = LAYER with NAME=VALUE ..." (machine.txt)

WORK=""          # this run's scratch directory (databases, logs), removed at exit
PIDS=()          # processes this run started and has not stopped yet
PROGRAM_PIDS=()  # of those, the layer's own programs (their CPU is the "server" CPU)
ERRORS=0         # failed requests and failed runs, over the whole run
ROUND=0          # the round under way
START_S=$SECONDS
PLAN_LEFT=0      # estimated seconds of work left, for the progress lines
PLAN_DONE=0      # estimated seconds of work done

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
    PROGRAM_PIDS=()
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
    for dir in "$WORK"/mongo[0-9]*; do
        [ -d "$dir" ] && { (mongo_stop "$dir") || true; }
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

usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; }

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
        --quick) QUICK=1 ;;
        --allow-dirty) ALLOW_DIRTY=1 ;;
        --no-ceilings) CEILINGS=0 ;;
        --no-build) BUILD=0 ;;
        --wrong-expectation) WRONG=1 ;;
        --set)
            if [ $# -lt 2 ] || ! [[ $2 =~ ^[A-Z_][A-Z0-9_]*= ]]; then
                fail "--set needs NAME=VALUE (try --help)"
            fi
            EXTRA_SETTINGS+=("$2")
            shift
            ;;
        --duration | --warmup | --concurrency | --rate | --keys | --workloads | --db-latency | \
            --out | --repeat | --build-dir | --drain-rows | --drain-rate | --lag-rate)
            [ $# -ge 2 ] || fail "$1 needs a value (try --help)"
            case $1 in
            --duration) DURATION=$2 ;;
            --warmup) WARMUP=$2 ;;
            --concurrency) CONCURRENCY=$2 ;;
            --rate) RATES=$2 ;;
            --keys) KEYS=$2 ;;
            --workloads) WORKLOADS=$2 ;;
            --db-latency) DB_LATENCY=${2%ms} ;;
            --out) OUT=$2 ;;
            --repeat) REPEAT=$2 ;;
            --build-dir) BUILD_DIR=$(cd "$2" && pwd) ;;
            --drain-rows) DRAIN_ROWS=$2 ;;
            --drain-rate) DRAIN_RATE=$2 ;;
            --lag-rate) LAG_RATE=$2 ;;
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
        : "${CONCURRENCY:=16}" "${DURATION:=1}" "${WARMUP:=0.3}" "${KEYS:=1000}" "${REPEAT:=1}"
        : "${DRAIN_ROWS:=20000}" "${DRAIN_RATE:=1000}" "${LAG_RATE:=500}"
    fi
    : "${DRAIN_ROWS:=30000}" "${DRAIN_RATE:=5000}" "${LAG_RATE:=500}"
    [[ $LAG_RATE =~ ^[1-9][0-9]*$ ]] || fail "--lag-rate: writes per second, more than 0"
    [[ $DRAIN_ROWS =~ ^[1-9][0-9]*$ ]] || fail "--drain-rows: a positive number"
    [[ $DRAIN_RATE =~ ^[1-9][0-9]*$ ]] || fail "--drain-rate: writes per second, more than 0"
    : "${WORKLOADS:=$ALL_WORKLOADS}" "${CONCURRENCY:=16 64}" "${DURATION:=1}"
    : "${WARMUP:=0.3}" "${KEYS:=1000}" "${REPEAT:=3}" "${RATES:=0}"
    local w c r
    if ! [[ $DURATION =~ ^[0-9]+(\.[0-9]+)?$ ]] || [ "$DURATION" = 0 ]; then
        fail "--duration: seconds, more than 0"
    fi
    [[ $WARMUP =~ ^[0-9]+(\.[0-9]+)?$ ]] || fail "--warmup: seconds"
    [[ $KEYS =~ ^[1-9][0-9]*$ ]] || fail "--keys: a positive number"
    [[ $REPEAT =~ ^[1-9][0-9]*$ ]] || fail "--repeat: a positive number"
    [ -z "$DB_LATENCY" ] || [[ $DB_LATENCY =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
        fail "--db-latency: milliseconds, e.g. 5 or 0.5"
    for c in $CONCURRENCY; do
        if ! [[ $c =~ ^[1-9][0-9]*$ ]] || [ "$c" -gt 1000 ]; then
            fail "--concurrency: 1 to 1000 clients, got '$c'"
        fi
    done
    for r in $RATES; do
        [[ $r =~ ^[0-9]+$ ]] || fail "--rate: requests per second, got '$r'"
    done
    for w in $WORKLOADS; do
        [[ " $ALL_WORKLOADS $LAYER8_WORKLOADS " == *" $w "* ]] ||
            fail "unknown workload '$w' ($ALL_WORKLOADS $LAYER8_WORKLOADS)"
    done
}

# ---- the layer table ----

trim() {
    local s=$1
    s=${s#"${s%%[![:space:]]*}"}
    echo "${s%"${s##*[![:space:]]}"}"
}

# Prints one column of a layer's BENCH_LAYERS line: bench_field N settings|header|unsupported|bound
bench_field() {
    local line name settings header unsupported bound
    for line in "${BENCH_LAYERS[@]}"; do
        IFS='|' read -r name settings header unsupported bound <<<"$line"
        [ "$(trim "$name")" = "l$1" ] || continue
        case $2 in
        settings) trim "$settings" ;;
        header) trim "$header" ;;
        unsupported) trim "$unsupported" ;;
        bound) trim "$bound" ;;
        esac
        return 0
    done
}

# Why layer N cannot serve workload W, or nothing if it can.
unsupported_reason() {
    local entry entries=()
    if [[ " $LAYER8_WORKLOADS " == *" $2 "* ]] && [ "$1" != 8 ]; then
        echo "layer 8's transaction routes"
        return 0
    fi
    IFS=';' read -ra entries <<<"$(bench_field "$1" unsupported)"
    for entry in "${entries[@]}"; do
        entry=$(trim "$entry")
        if [ "${entry%%:*}" = "$2" ]; then
            trim "${entry#*:}"
            return 0
        fi
    done
}

# The ceiling that bounds layer N on workload W.
bound_of() {
    local spec entry kind=""
    spec=$(bench_field "$1" bound)
    for entry in $spec; do
        case $entry in
        "$2="*) echo "${entry#*=}"; return 0 ;;
        "*="*) kind=${entry#*=} ;;
        *=*) ;;
        *) kind=$entry ;;
        esac
    done
    echo "$kind"
}

binary_of() { echo "$BUILD_DIR/${LAYER_NAMES[$1]}/${LAYER_NAMES[$1]}"; }
LOADGEN() { "$BUILD_DIR/bench/loadgen/loadgen" "$@"; }

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

plan() { PLAN_LEFT=$(awk -v a="$PLAN_LEFT" -v b="$1" 'BEGIN { printf "%d", a + b }'); }

# Marks S estimated seconds as done.
plan_done() {
    PLAN_LEFT=$(awk -v a="$PLAN_LEFT" -v b="$1" 'BEGIN { printf "%d", a - b }')
    PLAN_DONE=$(awk -v a="$PLAN_DONE" -v b="$1" 'BEGIN { printf "%d", a + b }')
}

# "[bench 07:09:11, round 2/3, ~4m05s left] MESSAGE": time left is the estimate scaled by how
# the estimate has fared so far.
progress() {
    local elapsed=$((SECONDS - START_S)) left=$PLAN_LEFT
    if [ "$PLAN_DONE" -gt 0 ] && [ "$elapsed" -gt "$PLAN_DONE" ]; then
        left=$((PLAN_LEFT * elapsed / PLAN_DONE))
    fi
    [ "$left" -ge 0 ] || left=0
    printf '[bench %s, round %s/%s, ~%dm%02ds left] %s\n' "$(date +%H:%M:%S)" "$ROUND" "$REPEAT" \
        $((left / 60)) $((left % 60)) "$*" >&2
}

# Warns when other work competes for the machine before the run starts (a load average of half
# the cores or more): the figures would then measure the competition as much as the layers, and
# must not be compared with committed results measured on a quieter machine.
warn_if_loaded() {
    local load cores
    load=$(cut -d' ' -f1 /proc/loadavg) cores=$(nproc)
    if awk -v l="$load" -v c="$cores" 'BEGIN { exit !(l >= c / 2) }'; then
        progress "WARNING: load average $load on $cores cores before the run: other work is" \
            "competing, so these figures are not comparable with committed results measured on a" \
            "quieter machine (each result folder's machine.txt and results.csv record the load)"
    fi
}

# ---- measurements ----

# Runs loadgen; prints its RESULT line's values as "name=value ..." and appends its output to
# raw.log under LABEL. Returns non-zero if loadgen produced no result at all.
run_loadgen() { # LABEL LAYER_N ARGS...
    local label=$1 n=$2 header out args
    shift 2
    header=$(bench_field "$n" header)
    args=(--port "$API_PORT" --keys "$KEYS" --value-bytes "$VALUE_BYTES" "$@")
    [ -z "$header" ] || args+=(--header "$header")
    out=$(LOADGEN "${args[@]}" 2>&1) || true
    printf '==== round %s, %s: loadgen %s\n%s\n\n' "$ROUND" "$label" "${args[*]}" "$out" >>"$OUT/raw.log"
    echo "$out" | awk '/^RESULT / { sub(/^RESULT /, ""); print; found = 1 } END { exit !found }'
}

declare -A RES # the last loadgen RESULT, by name (parse_result)

# Fills RES from a "name=value ..." line.
parse_result() { # LINE
    local kv
    RES=()
    for kv in $1; do RES[${kv%%=*}]=${kv#*=}; done
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

# The CPU of the layer's own programs (the server and any worker, relay, projector).
server_cpu() {
    awk -v t="$(cpu_ticks "${PROGRAM_PIDS[@]}")" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.2f", t / hz }'
}

# The databases' CPU: every PostgreSQL (postmaster, its backends, those that ended), Redis and
# layer 8's stand-in MongoDB.
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
    for dir in "$WORK"/mongo[0-9]*; do
        [ -f "$dir/congodb.pid" ] && t=$((t + $(cpu_ticks "$(cat "$dir/congodb.pid")")))
    done
    awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# The machine's CPU counters: "busy steal total" ticks since boot, from /proc/stat.
cpu_stat() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, $9, t }' /proc/stat; }

# "load1 steal% busy%" between a cpu_stat taken before (BEFORE) and now.
machine_during() { # BEFORE
    local now
    now=$(cpu_stat)
    awk -v a="$1" -v b="$now" -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
        split(a, x, " "); split(b, y, " "); t = y[3] - x[3]; if (t <= 0) t = 1
        printf "%s %.1f %.0f", l, 100 * (y[2] - x[2]) / t, 100 * (y[1] - x[1]) / t }'
}

# Peak resident memory of the server since the last reset_peak_rss (since start if the kernel
# refuses the reset).
reset_peak_rss() { echo 5 >"/proc/${PROGRAM_PIDS[0]}/clear_refs" 2>/dev/null || true; }
peak_rss_kb() { awk '/^VmHWM/ {print $2}' "/proc/${PROGRAM_PIDS[0]}/status" 2>/dev/null || echo ""; }

# ---- the stack of one layer: databases, delay proxies, programs ----

# Starts PostgreSQL instance I on PG_BASE + I, as a copy of a template cluster (initdb once).
start_pg() { # I [LAYER: its own postgres options, layer_pg_settings]
    if [ ! -d "$WORK/pg-template" ]; then
        (pg_start "$WORK/pg-template" "$PG_BASE" && pg_stop "$WORK/pg-template") >/dev/null ||
            return 1
    fi
    cp -a "$WORK/pg-template" "$WORK/pg$1"
    # shellcheck disable=SC2046 # layer_pg_settings prints several words
    (pg_start "$WORK/pg$1" $((PG_BASE + $1)) "${PG_OPTIONS[@]}" $(layer_pg_settings "${2:-}")) >/dev/null
}

start_proxy() { # I: delay-proxy on PROXY_BASE + I in front of PostgreSQL I
    local port=$((PROXY_BASE + $1)) _
    ! port_in_use "$port" || { echo "port $port is in use" >&2; return 1; }
    "$BUILD_DIR/bench/delay-proxy/delay-proxy" "$port" $((PG_BASE + $1)) "$DB_LATENCY" \
        2>>"$WORK/proxy$1.log" &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        port_in_use "$port" && return 0
        sleep 0.05
    done
    echo "delay-proxy did not start on $port" >&2
    return 1
}

# Starts one program of layer N (build/<layer>/PROGRAM) with the layer's settings for this
# stack, the benchmark's settings, --set's and the variant's, its log in WORK/PROGRAM.log.
start_program() { # N PROGRAM
    local n=$1 program=$2 pg_port=$PG_BASE settings=()
    [ -z "$DB_LATENCY" ] || pg_port=$PROXY_BASE
    read -ra settings <<<"$(bench_field "$n" settings)"
    [ -x "$BUILD_DIR/${LAYER_NAMES[$n]}/$program" ] || { echo "$program is not built" >&2; return 1; }
    (
        eval "$(layer_env "$n" "$pg_port" "$REDIS_BASE" "$API_PORT" "$MONGO_BASE")"
        exec env LOG_LEVEL=warn "${settings[@]}" "${EXTRA_SETTINGS[@]}" "${VARIANT_SETTINGS[@]}" \
            "$BUILD_DIR/${LAYER_NAMES[$n]}/$program"
    ) 2>>"$WORK/$program.log" &
    PIDS+=($!)
    PROGRAM_PIDS+=($!)
}

# THE place where a layer's processes start: its server, then whatever else it runs. A layer
# with more programs adds one line each (they get the same settings as the server):
#     6) start_program 6 l6-worker ;;
#     7) start_program 7 l7-relay && start_program 7 l7-projector ;;
# Returns non-zero if one does not start; the server is waited for (GET /health) by start_stack.
start_programs() { # N
    start_program "$1" "${LAYER_NAMES[$1]}" || return 1 # the server, on API_PORT: always first
    case $1 in
    6) start_program 6 l6-worker ;;
    7) start_program 7 l7-relay && start_program 7 l7-projector ;;
    9) start_program 9 l9-links && setup_layer 9 ;; # the WAN links, then replication
    *) ;;
    esac
}

# Runs the layer's set-up script (layer_setup_script: layer 9's tables and subscriptions).
setup_layer() { # N
    local script
    script=$(layer_setup_script "$1")
    [ -n "$script" ] || return 0
    (
        eval "$(layer_env "$1" "$PG_BASE" "$REDIS_BASE" "$API_PORT" "$MONGO_BASE")"
        "$ROOT/$script"
    ) >>"$WORK/setup.log" 2>&1
}

# Starts what layer N needs, then its programs; returns non-zero (with a reason on stderr) if
# anything does not come up. Returns once the server answers /health.
start_stack() { # N
    local n=$1 kind pg_i=0 redis_i=0 mongo_i=0 _ pid
    for kind in $(layer_backends "$n"); do
        case $kind in
        pg)
            start_pg "$pg_i" "$n" || return 1
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
            (redis_start "$WORK/redis$redis_i" $((REDIS_BASE + redis_i)) "$(layer_redis_mode "$n" "$redis_i")") ||
                return 1
            redis_i=$((redis_i + 1))
            ;;
        mongo) # layer 8's stand-in MongoDB (CongoDB, in memory)
            (mongo_start "$WORK/mongo$mongo_i" $((MONGO_BASE + mongo_i))) >/dev/null || return 1
            mongo_i=$((mongo_i + 1))
            ;;
        esac
    done
    ! port_in_use "$API_PORT" || { echo "port $API_PORT is in use" >&2; return 1; }
    start_programs "$n" || return 1
    for _ in $(seq 1 300); do
        curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$API_PORT/health" && return 0
        for pid in "${PROGRAM_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || break 2; done
        sleep 0.05
    done
    tail -n 15 "$WORK"/*.log >&2 2>/dev/null || true
    echo "${LAYER_NAMES[$n]} did not become healthy" >&2
    return 1
}

# True while every program of the layer is alive.
programs_alive() {
    local pid
    for pid in "${PROGRAM_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}

# Stops the programs, the proxies and the databases; appends the logs to OUT/logs/LABEL.log.
stop_stack() { # LABEL
    stop_pids
    stop_databases
    local log="$OUT/logs/$1.log" f
    mkdir -p "$OUT/logs"
    {
        for f in "$WORK"/*.log; do
            [ -s "$f" ] || continue
            echo "== round $ROUND: $(basename "$f" .log) (last 300 lines)"
            tail -n 300 "$f"
        done
    } >>"$log"
    [ -s "$log" ] || rm -f "$log"
    rm -rf "$WORK"/pg[0-9]* "$WORK"/redis[0-9]* "$WORK"/mongo[0-9]* "$WORK"/*.log
}

# Writes bench:1 .. bench:KEYS through the API (32 connections, every reply checked), then
# reads keys back and checks each value: every key on a layer with a cache (which also leaves
# the cache warm: the state every read cell starts from), an evenly spaced sample of
# VERIFY_SAMPLE on the others. One row per step in checks.csv. Returns non-zero if any failed.
preload() { # N
    local n=$1 name=${LAYER_NAMES[$1]}$VARIANT_LABEL step result count=$VERIFY_SAMPLE bad
    [[ " $(layer_backends "$n") " != *" redis "* ]] || count=0
    for step in preload verify; do
        # A read model fed by a projector (layer 7) answers reads once it has caught up.
        if [ "$step" = verify ] && [ -n "${LAG_LAYERS[$n]:-}" ] &&
            ! /usr/bin/python3 "$ROOT/bench/lag.py" caught-up "$API_PORT" 120 >/dev/null; then
            echo "verify: the projector did not catch up with the preload in 120 s" >&2
            return 1
        fi
        result=$(run_loadgen "$name $step" "$n" --workload "$step" --connections 32 \
            --verify-count "$count") || { echo "$step: no result from loadgen (raw.log)" >&2; return 1; }
        parse_result "$result"
        bad=$((RES[bad_status] + RES[bad_body] + RES[socket]))
        (IFS=,; echo "$name,$ROUND,$step,${RES[requests]},$bad,${RES[elapsed]}") \
            >>"$OUT/checks.csv"
        if [ "$bad" != 0 ]; then
            ERRORS=$((ERRORS + bad))
            echo "$step: $bad of ${RES[requests]} requests failed their check (raw.log)" >&2
            return 1
        fi
    done
}

# ---- one layer ----

csv_row() { (IFS=,; echo "$*") >>"$OUT/results.csv"; }

RESULT_COLUMNS="layer,workload,concurrency,rate,round,rps,mean_us,p50_us,p90_us,p99_us,p999_us,max_us,requests,bad_status,bad_body,socket_errors,unfinished,warmup_requests,warmup_errors,server_cpu_s,backend_cpu_s,server_peak_rss_kb,load1,steal_pct,busy_pct,flag"

# A row with no measurement: LAYER WORKLOAD CLIENTS RATE FLAG
csv_empty_row() { csv_row "$1" "$2" "$3" "$4" "$ROUND" "" "" "" "" "" "" "" "" "" "" "" "" "" "" "" "" "" "" "" "" "$5"; }

# Records the cells of layer N as FAILED: all of them, or those after workload AFTER_W at
# AFTER_C clients and AFTER_R req/s (the cells before have their rows). Counts as one error.
record_failed() { # N REASON [AFTER_W AFTER_C AFTER_R]
    local name=${LAYER_NAMES[$1]}$VARIANT_LABEL w c r todo=1
    [ $# -lt 3 ] || todo=0
    for w in $RUN_ORDER; do
        [[ " $WORKLOADS " == *" $w "* ]] || continue
        if [ "$w" = lag ]; then # its own row, on a layer with a read model
            [ "$todo" = 0 ] || [ -z "${LAG_LAYERS[$1]:-}" ] ||
                csv_empty_row "$name" lag "$LAG_CONNECTIONS" "$LAG_RATE" "FAILED: ${2//,/;}"
            continue
        fi
        if [ "$w" = drain ]; then # its own two rows, on a layer with a queue
            if [ "$todo" = 1 ] && [ -n "${DRAIN_WORKERS[$1]:-}" ]; then
                csv_empty_row "$name" drain 1 0 "FAILED: ${2//,/;}"
                csv_empty_row "$name" drain "$DRAIN_CONNECTIONS" "$DRAIN_RATE" "FAILED: ${2//,/;}"
            fi
            continue
        fi
        for c in $CONCURRENCY; do
            for r in $RATES; do
                [ "$todo" = 0 ] || csv_empty_row "$name" "$w" "$c" "$r" "FAILED: ${2//,/;}"
                [ "$w $c $r" != "${3:-} ${4:-} ${5:-}" ] || todo=1
            done
        done
    done
    ERRORS=$((ERRORS + 1))
    progress "$name: FAILED: $2"
}

# Runs every cell (workload x clients x rate) against the running layer N, one row each in
# results.csv. Returns non-zero after recording a failure that ends the layer's round.
measure_layer() { # N
    local n=$1 name=${LAYER_NAMES[$1]}$VARIANT_LABEL w c r why result cpu0 bcpu0 stat0 flag bad warm
    local mode
    for w in $RUN_ORDER; do
        [[ " $WORKLOADS " == *" $w "* ]] || continue
        if [ "$w" = drain ]; then
            [ -z "${DRAIN_WORKERS[$n]:-}" ] || measure_drain "$n" || return 1
            continue
        fi
        if [ "$w" = lag ]; then
            [ -z "${LAG_LAYERS[$n]:-}" ] || measure_lag "$n" || return 1
            continue
        fi
        why=$(unsupported_reason "$n" "$w")
        for c in $CONCURRENCY; do
            for r in $RATES; do
                if [ -n "$why" ]; then
                    csv_empty_row "$name" "$w" "$c" "$r" "not served: ${why//,/;}"
                    continue
                fi
                mode="$c clients"
                [ "$r" = 0 ] || mode="$r req/s on $c connections"
                progress "$name: $w, $mode (${WARMUP}s warm-up + ${DURATION}s)"
                reset_peak_rss
                cpu0=$(server_cpu)
                bcpu0=$(backend_cpu)
                stat0=$(cpu_stat)
                if ! result=$(run_loadgen "$name $w $mode" "$n" --workload "$w" --connections "$c" \
                    --rate "$r" --warmup "$WARMUP" --duration "$DURATION" \
                    --expect-value-bytes $((VALUE_BYTES + WRONG))); then
                    csv_empty_row "$name" "$w" "$c" "$r" "FAILED: no result from loadgen (raw.log)"
                    record_failed "$n" "loadgen gave no result for $w, $mode (raw.log)" "$w" "$c" "$r"
                    return 1
                fi
                parse_result "$result"
                bad=$((RES[bad_status] + RES[bad_body] + RES[socket]))
                warm=${RES[warmup_errors]}
                flag=""
                if [ "$bad" != 0 ] || [ "$warm" != 0 ]; then
                    flag="ERRORS"
                    ERRORS=$((ERRORS + bad + warm))
                elif [ "${RES[unfinished]}" != 0 ]; then
                    flag="UNFINISHED" # open loop past saturation, or answers slower than --timeout
                    [ "$r" != 0 ] || ERRORS=$((ERRORS + 1))
                fi
                # shellcheck disable=SC2046 # three words
                csv_row "$name" "$w" "$c" "$r" "$ROUND" "${RES[rps]}" \
                    "${RES[mean]}" "${RES[p50]}" "${RES[p90]}" \
                    "${RES[p99]}" "${RES[p999]}" "${RES[max]}" \
                    "${RES[requests]}" "${RES[bad_status]}" \
                    "${RES[bad_body]}" "${RES[socket]}" \
                    "${RES[unfinished]}" "${RES[warmup_requests]}" "$warm" \
                    "$(awk -v a="$cpu0" -v b="$(server_cpu)" 'BEGIN {printf "%.2f", b - a}')" \
                    "$(awk -v a="$bcpu0" -v b="$(backend_cpu)" 'BEGIN {printf "%.2f", b - a}')" \
                    "$(peak_rss_kb)" $(machine_during "$stat0") "$flag"
                plan_done "$(awk -v a="$WARMUP" -v b="$DURATION" 'BEGIN { print a + b }')"
                if [ -n "$flag" ]; then
                    progress "$name: $w, $mode: $flag: ${RES[bad_status]} bad statuses, ${RES[bad_body]} bad bodies, ${RES[socket]} socket errors, $warm in the warm-up, ${RES[unfinished]} unfinished"
                else
                    progress "$name: $w, $mode: $(awk -v r="${RES[rps]}" -v p="${RES[p99]}" \
                        'BEGIN {printf "%.0f req/s, p99 %.2f ms", r, p / 1000}')"
                fi
                if ! programs_alive; then
                    record_failed "$n" "a program exited during $w, $mode (logs/$name.log)" "$w" "$c" "$r"
                    return 1
                fi
            done
        done
    done
}

# Stops one program of the layer (SIGTERM: a worker finishes its batch) and forgets it.
stop_program() { # PID
    local pid keep=()
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
    keep=()
    for pid in "${PROGRAM_PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
    PROGRAM_PIDS=("${keep[@]}")
}

# A drain failure: its rows (those not written yet) flagged, the layer's round ended.
drain_failed() { # N PHASE REASON
    local name=${LAYER_NAMES[$1]}$VARIANT_LABEL
    [ "$2" != rate ] || csv_empty_row "$name" drain 1 0 "FAILED: ${3//,/;}"
    csv_empty_row "$name" drain "$DRAIN_CONNECTIONS" "$DRAIN_RATE" "FAILED: ${3//,/;}"
    ERRORS=$((ERRORS + 1))
    progress "$name: drain: FAILED: $3"
}

# One row of results.csv for a figure read under a steady open-loop load that loadgen has just
# applied (RES): the drain's commit delay, the projection lag. rps = the writes/s sustained,
# p50/p99/max = the figure (µs), requests = its samples. Sets FLAG (ERRORS, UNFINISHED or
# empty) and adds the load's failed requests to ERRORS.
steady_row() { # NAME WORKLOAD CONNECTIONS RATE P50 P99 MAX COUNT CPU0 BCPU0 STAT0
    local bad=$((RES[bad_status] + RES[bad_body] + RES[socket]))
    FLAG=""
    if [ "$bad" != 0 ]; then
        FLAG="ERRORS"
        ERRORS=$((ERRORS + bad))
    elif [ "${RES[unfinished]}" != 0 ]; then
        FLAG="UNFINISHED"
    fi
    # shellcheck disable=SC2046 # three words
    csv_row "$1" "$2" "$3" "$4" "$ROUND" "${RES[rps]}" "" "$5" "" "$6" "" "$7" "$8" \
        "${RES[bad_status]}" "${RES[bad_body]}" "${RES[socket]}" "${RES[unfinished]}" 0 0 \
        "$(awk -v a="$9" -v b="$(server_cpu)" 'BEGIN {printf "%.2f", b - a}')" \
        "$(awk -v a="${10}" -v b="$(backend_cpu)" 'BEGIN {printf "%.2f", b - a}')" \
        "$(peak_rss_kb)" $(machine_during "${11}") "$FLAG"
}

# The drain of layer N's write queue, in two phases, two rows of results.csv (workload drain):
#   rate   the worker stopped (once the queue is empty), a backlog of DRAIN_ROWS written
#          through POST /write (loadgen preload of bench:1 .. bench:DRAIN_ROWS, every reply
#          checked; checks.csv), ONE worker started: rows/s from the first to the last commit,
#          from /stats (bench/drain.py). Row: concurrency 1 (one worker), rate 0, rps = rows/s,
#          requests = rows.
#   delay  l6:commit_delay emptied, then DRAIN_RATE writes/s (open loop, DRAIN_CONNECTIONS
#          connections, DURATION s, no warm-up: the worker is warm) with the worker running;
#          once the queue is empty, /stats' commit_delay_ms. Row: concurrency DRAIN_CONNECTIONS,
#          rate DRAIN_RATE, rps = the writes/s loadgen sustained, p50/p99/max = the
#          acknowledgement-to-commit delay (µs; the histogram's resolution: 1 ms below 16 ms,
#          12.5% above), requests = delays counted; the load's own latency is in raw.log.
measure_drain() { # N
    local n=$1 name=${LAYER_NAMES[$1]}$VARIANT_LABEL program=${DRAIN_WORKERS[$1]} pid result out bad flag
    local cpu0 bcpu0 stat0 timeout=$((DRAIN_ROWS / 1000 + 120))
    progress "$name: drain: stopping $program once the queue is empty"
    if ! out=$(/usr/bin/python3 "$ROOT/bench/drain.py" empty "$API_PORT" 120 2>&1); then
        drain_failed "$n" rate "$out"
        return 1
    fi
    pid=$(for p in "${PROGRAM_PIDS[@]}"; do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$program" ] && echo "$p"; done | head -n 1)
    [ -z "$pid" ] || stop_program "$pid"
    progress "$name: drain: writing a backlog of $DRAIN_ROWS entries through the API"
    result=$(run_loadgen "$name drain backlog" "$n" --workload preload --keys "$DRAIN_ROWS"         --connections 32) || { drain_failed "$n" rate "no result from loadgen (raw.log)"; return 1; }
    parse_result "$result"
    bad=$((RES[bad_status] + RES[bad_body] + RES[socket]))
    (IFS=,; echo "$name,$ROUND,drain backlog,${RES[requests]},$bad,${RES[elapsed]}") >>"$OUT/checks.csv"
    if [ "$bad" != 0 ]; then
        ERRORS=$((ERRORS + bad))
        drain_failed "$n" rate "$bad of ${RES[requests]} backlog writes failed their check (raw.log)"
        return 1
    fi
    progress "$name: drain: one $program draining $DRAIN_ROWS entries"
    cpu0=$(server_cpu)
    bcpu0=$(backend_cpu)
    stat0=$(cpu_stat)
    start_program "$n" "$program" || { drain_failed "$n" rate "$program did not start"; return 1; }
    out=$(/usr/bin/python3 "$ROOT/bench/drain.py" rate "$API_PORT" "$DRAIN_ROWS" "$timeout" 2>&1) || true
    printf '==== round %s, %s drain: bench/drain.py rate %s
%s

' "$ROUND" "$name" "$DRAIN_ROWS"         "$out" >>"$OUT/raw.log"
    if ! [[ $out =~ DRAIN\ rows=([0-9]+).*\ rps=([0-9.]+) ]]; then
        drain_failed "$n" rate "$(echo "$out" | tail -n 1)"
        return 1
    fi
    # shellcheck disable=SC2046 # three words
    csv_row "$name" drain 1 0 "$ROUND" "${BASH_REMATCH[2]}" "" "" "" "" "" "" "${BASH_REMATCH[1]}"         0 0 0 0 0 0         "$(awk -v a="$cpu0" -v b="$(server_cpu)" 'BEGIN {printf "%.2f", b - a}')"         "$(awk -v a="$bcpu0" -v b="$(backend_cpu)" 'BEGIN {printf "%.2f", b - a}')"         "$(peak_rss_kb)" $(machine_during "$stat0") ""
    progress "$name: drain: $(awk -v r="${BASH_REMATCH[2]}" 'BEGIN {printf "%.0f", r}') rows/s with one worker"

    progress "$name: drain: commit delay under $DRAIN_RATE writes/s (${DURATION}s)"
    redis-cli -p "$REDIS_BASE" DEL l6:commit_delay >/dev/null
    reset_peak_rss
    cpu0=$(server_cpu)
    bcpu0=$(backend_cpu)
    stat0=$(cpu_stat)
    if ! result=$(run_loadgen "$name drain delay $DRAIN_RATE req/s" "$n" --workload write         --connections "$DRAIN_CONNECTIONS" --rate "$DRAIN_RATE" --warmup 0 --duration "$DURATION"         --expect-value-bytes "$VALUE_BYTES"); then
        drain_failed "$n" delay "no result from loadgen (raw.log)"
        return 1
    fi
    parse_result "$result"
    out=$(/usr/bin/python3 "$ROOT/bench/drain.py" delay "$API_PORT" 120 2>&1) || true
    printf '==== round %s, %s drain: bench/drain.py delay
%s

' "$ROUND" "$name" "$out" >>"$OUT/raw.log"
    if ! [[ $out =~ DELAY\ p50_us=([0-9]+)\ p99_us=([0-9]+)\ max_us=([0-9]+)\ count=([0-9]+) ]]; then
        drain_failed "$n" delay "$(echo "$out" | tail -n 1)"
        return 1
    fi
    steady_row "$name" drain "$DRAIN_CONNECTIONS" "$DRAIN_RATE" "${BASH_REMATCH[@]:1:4}" \
        "$cpu0" "$bcpu0" "$stat0"
    flag=$FLAG
    progress "$name: drain: commit delay p50 $((BASH_REMATCH[1] / 1000)) ms, p99 $((BASH_REMATCH[2] / 1000)) ms${flag:+ ($flag)}"
    programs_alive || { record_failed "$n" "a program exited during the drain (logs/$name.log)" drain; return 1; }
}

# The projection lag of layer N's read model under a steady write load: one row of results.csv
# (workload lag). Once the projector has applied everything (bench/lag.py caught-up), l7:lag
# is emptied, then LAG_RATE writes/s (open loop, LAG_CONNECTIONS connections, DURATION s, no
# warm-up: the layer is warm from the cells before); once the projector has caught up again,
# the lag samples it recorded (bench/lag.py read: what a sample is, there). Row: concurrency
# LAG_CONNECTIONS, rate LAG_RATE, rps = the writes/s loadgen sustained, p50/p99/max = the lag
# (µs), requests = samples; the load's own latency is in raw.log.
measure_lag() { # N
    local n=$1 name=${LAYER_NAMES[$1]}$VARIANT_LABEL result out bad flag cpu0 bcpu0 stat0 why
    progress "$name: lag: projection lag under $LAG_RATE writes/s (${DURATION}s)"
    if ! why=$(/usr/bin/python3 "$ROOT/bench/lag.py" caught-up "$API_PORT" 120 2>&1 >/dev/null); then
        record_failed "$n" "lag: ${why:-lag.py failed}" write "${CONCURRENCY##* }" "${RATES##* }"
        return 1
    fi
    redis-cli -p "$REDIS_BASE" DEL l7:lag >/dev/null
    reset_peak_rss
    cpu0=$(server_cpu)
    bcpu0=$(backend_cpu)
    stat0=$(cpu_stat)
    if ! result=$(run_loadgen "$name lag $LAG_RATE req/s" "$n" --workload write \
        --connections "$LAG_CONNECTIONS" --rate "$LAG_RATE" --warmup 0 --duration "$DURATION" \
        --expect-value-bytes "$VALUE_BYTES"); then
        record_failed "$n" "lag: no result from loadgen (raw.log)" write "${CONCURRENCY##* }" "${RATES##* }"
        return 1
    fi
    parse_result "$result"
    out=$( { /usr/bin/python3 "$ROOT/bench/lag.py" caught-up "$API_PORT" 120 >/dev/null &&
        /usr/bin/python3 "$ROOT/bench/lag.py" read "$REDIS_BASE"; } 2>&1) || true
    printf '==== round %s, %s lag: bench/lag.py read\n%s\n\n' "$ROUND" "$name" "$out" >>"$OUT/raw.log"
    if ! [[ $out =~ LAG\ p50_us=([0-9]+)\ p99_us=([0-9]+)\ max_us=([0-9]+)\ count=([0-9]+) ]]; then
        record_failed "$n" "lag: $(echo "$out" | tail -n 1)" write "${CONCURRENCY##* }" "${RATES##* }"
        return 1
    fi
    steady_row "$name" lag "$LAG_CONNECTIONS" "$LAG_RATE" "${BASH_REMATCH[@]:1:4}" \
        "$cpu0" "$bcpu0" "$stat0"
    flag=$FLAG
    progress "$name: lag: p50 $(awk -v v="${BASH_REMATCH[1]}" 'BEGIN {printf "%.1f", v / 1000}') ms, p99 $(awk -v v="${BASH_REMATCH[2]}" 'BEGIN {printf "%.1f", v / 1000}') ms${flag:+ ($flag)}"
    programs_alive || { record_failed "$n" "a program exited during the lag (logs/$name.log)" lag; return 1; }
}

# The number of cells of one layer in one round (the drain not counted: drain_plan).
cells() {
    local w c r k=0
    for w in $WORKLOADS; do
        case $w in drain | lag) continue ;; esac
        for c in $CONCURRENCY; do for r in $RATES; do k=$((k + 1)); done; done
    done
    echo "$k"
}

# Estimated seconds of one layer in one round: start-up and preload, then the cells (and a
# drain, roughly, if it has a queue).
layer_plan() { # [N]
    local drain=0
    if [[ " $WORKLOADS " == *" drain "* ]] && [ -n "${DRAIN_WORKERS[${1:-0}]:-}" ]; then
        drain=$((DRAIN_ROWS / 5000 + 5))
        drain=$(awk -v a="$drain" -v d="$DURATION" 'BEGIN { printf "%d", a + d }')
    fi
    if [[ " $WORKLOADS " == *" lag "* ]] && [ -n "${LAG_LAYERS[${1:-0}]:-}" ]; then
        drain=$(awk -v a="$drain" -v d="$DURATION" 'BEGIN { printf "%d", a + d + 2 }')
    fi
    awk -v k="$(cells)" -v w="$WARMUP" -v d="$DURATION" -v keys="$KEYS" -v x="$drain" \
        'BEGIN { printf "%d", 5 + keys / 1000 + k * (w + d) + x }'
}

# The layer number of an entry of the run: N, or N@NAME=VALUE,... (a variant).
entry_layer() { echo "${1%%@*}"; }

# Sets VARIANT_SETTINGS and VARIANT_LABEL for an entry: a variant's settings (split on ',') and
# "@" and their values joined by '+'; none and "" for a plain layer.
use_variant() { # N[@NAME=VALUE,...]
    local setting values=()
    VARIANT_SETTINGS=()
    VARIANT_LABEL=""
    [[ $1 == *@* ]] || return 0
    IFS=, read -ra VARIANT_SETTINGS <<<"${1#*@}"
    for setting in "${VARIANT_SETTINGS[@]}"; do values+=("${setting#*=}"); done
    VARIANT_LABEL="@$(IFS=+; echo "${values[*]}")"
}

# Starts the stack of an entry (layer N, or a variant of it), loads and verifies the data set,
# measures, stops; a failure is recorded and the run goes on with the next entry.
bench_layer() { # N[@NAME=VALUE,...]
    use_variant "$1"
    local n
    n=$(entry_layer "$1")
    local name=${LAYER_NAMES[$n]}$VARIANT_LABEL done_before=$PLAN_DONE
    progress "$name: starting its databases ($(layer_backends "$n")) and programs"
    if ! start_stack "$n" 2>>"$WORK/why"; then
        record_failed "$n" "$(tail -n 1 "$WORK/why")"
    else
        progress "$name: writing $KEYS keys through the API and reading them back"
        if ! preload "$n" 2>>"$WORK/why"; then
            record_failed "$n" "$(tail -n 1 "$WORK/why")"
        else
            plan_done $((5 + KEYS / 1000))
            measure_layer "$n" || true
        fi
    fi
    stop_stack "$name"
    plan_done $(($(layer_plan "$n") - (PLAN_DONE - done_before)))
    use_variant "$n"
}

# ---- ceilings: what this machine allows without a layer in between ----

CEILING_COLUMNS="kind,concurrency,round,rps,avg_us,p99_us,errors,load1,steal_pct,busy_pct"

csv_ceiling() { # KIND CLIENTS RPS AVG_US P99_US ERRORS STAT0
    # shellcheck disable=SC2046 # three words
    (IFS=,; echo "$1,$2,$ROUND,$3,$4,$5,$6,$(machine_during "$7" | tr ' ' ',')") >>"$OUT/ceilings.csv"
    if [ "$6" != 0 ]; then
        ERRORS=$((ERRORS + $6))
        progress "ceiling $1 at $2 clients: ERRORS ($6; raw.log)"
    fi
}

# Runs pgbench with ARGS at C clients for the cell's duration; records KIND with rps =
# transactions/s x PER (statements per transaction).
pgbench_ceiling() { # KIND C PER ARGS...
    local kind=$1 c=$2 per=$3 threads=2 out err=0 pg_port=$PG_BASE stat0 pg_time tps avg failed
    shift 3
    [ "$c" -ge 2 ] || threads=1
    [ -z "$DB_LATENCY" ] || pg_port=$PROXY_BASE
    # pgbench's -T is whole seconds and includes opening its connections, one at a time per
    # thread (its tps leaves that time out): each costs 30 ms on a quiet 2-core machine and
    # over 100 ms on one at load 13 (200 ms allowed), and through the delay proxy several
    # round trips more, so -T grows by that much; with a 1 s cell, 64 clients would otherwise
    # finish no transaction at all. Not for -C, which connects per transaction, within the
    # measured time.
    local setup=200
    [[ " $* " != *" -C "* ]] || setup=0
    pg_time=$(awk -v d="$DURATION" -v c="$c" -v t="$threads" -v l="${DB_LATENCY:-0}" -v s="$setup" \
        'BEGIN { x = c / t * (l * 6 + s) / 1000; d = (d == int(d)) ? d : int(d) + 1;
                 printf "%d", d + (x > 0 ? int(x) + 1 : 0) }')
    stat0=$(cpu_stat)
    out=$(as_pg_owner "$PG_BIN/pgbench" -h 127.0.0.1 -p "$pg_port" -U layers -n -c "$c" \
        -j "$threads" -T "$pg_time" "$@" layers 2>&1) || err=1
    printf '==== round %s, ceiling %s %s: pgbench -c %s -j %s -T %s %s\n%s\n\n' "$ROUND" "$kind" \
        "$c" "$c" "$threads" "$pg_time" "$*" "$out" >>"$OUT/raw.log"
    tps=$(echo "$out" | awk '/^tps/ {print $3; exit}')
    avg=$(echo "$out" | awk '/^latency average/ {printf "%.0f", $4 * 1000}')
    failed=$(echo "$out" | awk '/^number of failed transactions/ {print $5}')
    [ -n "$tps" ] || err=1
    csv_ceiling "$kind" "$c" "$(awk -v t="${tps:-}" -v p="$per" 'BEGIN { if (t != "") printf "%.1f", t * p }')" \
        "$avg" "" $((err + ${failed:-0})) "$stat0"
}

# pgbench scripts, readable by PostgreSQL's owner: ten primary-key selects in one pipeline (a
# round trip carries ten queries), and the servers' own upsert of a 100-byte value.
write_pgbench_scripts() {
    local i
    {
        for i in $(seq 1 10); do printf '\\set aid%d random(1, 100000 * :scale)\n' "$i"; done
        printf '\\startpipeline\n'
        for i in $(seq 1 10); do echo "SELECT abalance FROM pgbench_accounts WHERE aid = :aid$i;"; done
        printf '\\endpipeline\n'
    } >"$WORK/pipeline.sql"
    cat >"$WORK/upsert.sql" <<SQL
\\set k random(1, $KEYS)
INSERT INTO records (key, value) VALUES ('bench:' || :k, repeat('v', $VALUE_BYTES)) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now();
SQL
    chmod 644 "$WORK/pipeline.sql" "$WORK/upsert.sql"
}

# The ceilings of one round, at each client count: layer 0's server for GET /ping and its
# database for pgbench (layer 0 creates the records table the upsert needs), one Redis.
bench_ceilings() {
    local c out stat0 rps
    progress "ceilings: http-only, pg-select, pg-pipelined, pg-write, pg-connect, redis"
    if ! start_stack 0 2>>"$WORK/why" || ! (redis_start "$WORK/redis0" "$REDIS_BASE") >/dev/null; then
        ERRORS=$((ERRORS + 1))
        progress "ceilings: FAILED: $(tail -n 1 "$WORK/why")"
        stop_stack ceilings
        plan_done "$(ceilings_plan)"
        return 0
    fi
    write_pgbench_scripts
    as_pg_owner "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_BASE" -U layers -i -s 1 -q layers \
        >>"$OUT/raw.log" 2>&1 || progress "ceilings: pgbench -i failed (raw.log)"
    redis-benchmark -p "$REDIS_BASE" -t set -n $((KEYS * 3)) -r "$KEYS" -d "$VALUE_BYTES" -q \
        >/dev/null 2>&1 || true
    for c in $CONCURRENCY; do
        progress "ceilings at $c clients"
        # HTTP only: GET /ping on layer 0's server (a route of the shared core: no backend).
        stat0=$(cpu_stat)
        if out=$(run_loadgen "ceiling http-only $c" 0 --workload ping --connections "$c" \
            --warmup "$WARMUP" --duration "$DURATION"); then
            parse_result "$out"
            csv_ceiling http-only "$c" "${RES[rps]}" "${RES[mean]}" "${RES[p99]}" \
                $((RES[bad_status] + RES[socket] + RES[warmup_errors])) "$stat0"
        else
            csv_ceiling http-only "$c" "" "" "" 1 "$stat0"
        fi
        pgbench_ceiling pg-select "$c" 1 -S -M prepared
        pgbench_ceiling pg-pipelined "$c" 10 -M prepared -f "$WORK/pipeline.sql"
        pgbench_ceiling pg-write "$c" 1 -M prepared -f "$WORK/upsert.sql"
        pgbench_ceiling pg-connect "$c" 1 -S -C
        # Redis only: GET of 100-byte values over KEYS keys.
        stat0=$(cpu_stat)
        out=$(redis-benchmark -p "$REDIS_BASE" -t get -c "$c" -n $((20000 * ${DURATION%.*} + 10000)) \
            -r "$KEYS" -q --csv 2>&1) || true
        printf '==== round %s, ceiling redis %s: redis-benchmark -t get -c %s\n%s\n\n' "$ROUND" "$c" \
            "$c" "$out" >>"$OUT/raw.log"
        rps=$(echo "$out" | awk -F'"' '$2 == "GET" {print $4}')
        csv_ceiling redis "$c" "$rps" "$(echo "$out" | awk -F'"' '$2 == "GET" {printf "%.0f", $6 * 1000}')" \
            "$(echo "$out" | awk -F'"' '$2 == "GET" {printf "%.0f", $14 * 1000}')" \
            "$([ -n "$rps" ] && echo 0 || echo 1)" "$stat0"
        plan_done "$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", 6 * d + w }')"
    done
    stop_stack ceilings
    plan_done 5
}

ceilings_plan() {
    local c k=0
    for c in $CONCURRENCY; do k=$((k + 1)); done
    awk -v k="$k" -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", 5 + k * (6 * d + w) }'
}

# ---- provenance: what was measured ----

COMMIT="" DIRTY=""

# Refuses a work tree with changes (bench/results aside) unless --allow-dirty, then builds the
# binaries from it, so that the commit recorded is the source of what is measured.
provenance() {
    COMMIT=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
    DIRTY=$(git -C "$ROOT" status --porcelain -- . ':!bench/results' 2>/dev/null || true)
    if [ -n "$DIRTY" ] && [ "$ALLOW_DIRTY" = 0 ]; then
        echo "$DIRTY" | head -n 10 >&2
        fail "the work tree has uncommitted changes (above): commit them, or measure them with --allow-dirty"
    fi
    if [ "$BUILD" = 1 ]; then
        progress "building $BUILD_DIR from the work tree (commit ${COMMIT:0:12})"
        if ! cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WORK/build.log" ||
            ! cmake --build "$BUILD_DIR" -j"$(nproc)" >>"$WORK/build.log" 2>&1; then
            tail -n 20 "$WORK/build.log" >&2
            fail "the build failed"
        fi
    fi
}

describe_machine() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "command: ./layers bench $*"
        if [ -n "$DIRTY" ]; then
            echo "commit: $COMMIT with uncommitted changes (--allow-dirty): $(echo "$DIRTY" | wc -l) files"
        else
            echo "commit: $COMMIT (clean work tree)"
        fi
        if [ "$BUILD" = 1 ]; then
            echo "build: $BUILD_DIR, built by the harness from that work tree before measuring"
        else
            echo "build: $BUILD_DIR as found (--no-build): it may not match the commit"
        fi
        echo "host: $(hostname)"
        echo "cpu: $(nproc) x $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
        echo "memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
        echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "kernel: $(uname -r)"
        echo "postgresql: $("$PG_BIN/postgres" --version | awk '{print $3}') (${PG_OPTIONS[*]}, other settings default)"
        echo "redis: $(redis-server --version | awk '{print $3}' | cut -d= -f2)"
        echo "load generator: bench/loadgen (measured latencies, every reply checked)"
        echo "servers: their defaults, LOG_LEVEL=warn"
        echo "settings: repeat=$REPEAT keys=$KEYS duration=${DURATION}s warmup=${WARMUP}s concurrency=$CONCURRENCY rate=$RATES db_latency=${DB_LATENCY:-0}ms drain_rows=$DRAIN_ROWS drain_rate=$DRAIN_RATE drain_connections=$DRAIN_CONNECTIONS lag_rate=$LAG_RATE lag_connections=$LAG_CONNECTIONS"
        echo "cache state: every key read once after the preload (layers with Redis); cells then in the order $RUN_ORDER, clients ascending, each after its own warm-up"
        [ ${#EXTRA_SETTINGS[@]} = 0 ] || echo "server settings: ${EXTRA_SETTINGS[*]}"
        local v
        for v in "${VARIANTS[@]}"; do echo "variant: $v"; done
        [ "$WRONG" = 0 ] || echo "TEST HOOK: --wrong-expectation (every read is expected to fail its check)"
        echo "note: load generator, servers and databases share this machine"
    } >"$OUT/machine.txt"
}

check_tools() {
    local tool
    for tool in curl git cmake redis-server redis-benchmark /usr/bin/python3 "$PG_BIN/pgbench"; do
        command -v "$tool" >/dev/null || fail "$tool is not installed (./layers deps)"
    done
    command -v gnuplot >/dev/null || echo "bench: gnuplot is not installed: no charts" >&2
}

check_built() {
    [ -x "$BUILD_DIR/bench/loadgen/loadgen" ] || fail "bench/loadgen is not built (./layers build)"
    [ -x "$(binary_of 0)" ] || fail "layer 0 is not built (./layers build); it also serves the HTTP ceiling"
    [ -z "$DB_LATENCY" ] || [ -x "$BUILD_DIR/bench/delay-proxy/delay-proxy" ] ||
        fail "the delay proxy is not built (./layers build)"
}

main() {
    parse_args "$@"
    check_tools
    WORK=$(mktemp -d /tmp/layers-bench-XXXXXX)
    chmod 755 "$WORK" # PostgreSQL runs as user postgres when we are root
    : >"$WORK/why"
    provenance
    check_built
    # The entries of the run: layer numbers, and variants as N@NAME=VALUE,... (use_variant).
    local layers=() labels=() l n w e
    if [ ${#SELECTED[@]} -eq 0 ]; then
        for n in "${!LAYER_NAMES[@]}"; do
            [ -x "$(binary_of "$n")" ] && layers+=("$n")
        done
    else
        for l in "${SELECTED[@]}"; do
            n=$(layer_number_of "${l%%@*}") || fail "unknown layer '${l%%@*}' (try l0 ... l10, or --list)"
            [ -x "$(binary_of "$n")" ] || fail "${LAYER_NAMES[$n]} is not built (./layers build)"
            if [[ $l == *@* ]]; then
                [[ ${l#*@} =~ ^[A-Z_][A-Z0-9_]*=[A-Za-z0-9._:-]+(,[A-Z_][A-Z0-9_]*=[A-Za-z0-9._:-]+)*$ ]] ||
                    fail "'$l': a variant is LAYER@NAME=VALUE[,NAME=VALUE], values of A-Z a-z 0-9 . _ : -"
                n="$n@${l#*@}"
            fi
            use_variant "$n"
            e=${LAYER_NAMES[$(entry_layer "$n")]}$VARIANT_LABEL
            [[ " ${labels[*]} " != *" $e "* ]] || fail "'$l': $e is already in the run"
            labels+=("$e")
            layers+=("$n")
        done
        use_variant 0
    fi
    if [ -z "$OUT" ]; then
        OUT="$ROOT/bench/results/$(date -u +%Y-%m-%d)-$(hostname -s)"
        [ ! -e "$OUT" ] || OUT="$OUT-$(date -u +%H%M%S)"
    fi
    [ ! -e "$OUT/results.csv" ] || fail "$OUT already holds results; choose another --out"
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    : >"$OUT/raw.log"
    echo "$RESULT_COLUMNS" >"$OUT/results.csv"
    echo "$CEILING_COLUMNS" >"$OUT/ceilings.csv"
    echo "layer,round,step,requests,failed,seconds" >"$OUT/checks.csv"
    echo "layer,workload,ceiling" >"$OUT/bounds.csv"
    for e in "${layers[@]}"; do
        use_variant "$e"
        n=$(entry_layer "$e")
        for w in $WORKLOADS; do
            [ "$w" = drain ] || [ "$w" = lag ] || echo "${LAYER_NAMES[$n]}$VARIANT_LABEL,$w,$(bound_of "$n" "$w")" >>"$OUT/bounds.csv"
        done
        [ -z "$VARIANT_LABEL" ] || VARIANTS+=("${LAYER_NAMES[$n]}$VARIANT_LABEL = ${LAYER_NAMES[$n]} with ${VARIANT_SETTINGS[*]}")
    done
    use_variant 0
    describe_machine "$@"

    # One round: the ceilings and every layer, in an order rotated by one each round, so that
    # no layer is always measured first (fresh machine) or last (after the others' load).
    local items=() round i k
    [ "$CEILINGS" = 0 ] || items+=(ceilings)
    items+=("${layers[@]}")
    for round in $(seq 1 "$REPEAT"); do
        [ "$CEILINGS" = 0 ] || plan "$(ceilings_plan)"
        for e in "${layers[@]}"; do plan "$(layer_plan "$(entry_layer "$e")")"; done
    done
    progress "layers: $(for e in "${layers[@]}"; do use_variant "$e"; printf '%s ' "${LAYER_NAMES[$(entry_layer "$e")]}$VARIANT_LABEL"; done)x $REPEAT rounds -> ${OUT#"$ROOT"/}"
    warn_if_loaded
    for round in $(seq 1 "$REPEAT"); do
        ROUND=$round
        for ((k = 0; k < ${#items[@]}; k++)); do
            i=${items[$(((k + round - 1) % ${#items[@]}))]}
            if [ "$i" = ceilings ]; then bench_ceilings; else bench_layer "$i"; fi
        done
    done

    echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ) ($((SECONDS - START_S)) s)" >>"$OUT/machine.txt"
    /usr/bin/python3 "$ROOT/bench/report.py" report "$OUT"
    /usr/bin/python3 "$ROOT/bench/report.py" summary "$OUT"
    progress "results in ${OUT#"$ROOT"/}/: report.md, results.csv, ceilings.csv, charts, raw.log"
    if [ "$ERRORS" != 0 ]; then
        progress "FAILED: $ERRORS failed requests, checks or runs (flagged in report.md)"
        exit 1
    fi
}

main "$@"
