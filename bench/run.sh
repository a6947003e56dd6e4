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
#           "*=KIND" for the rest (kinds: the ceilings below; "mongo", layer 8's stand-in
#           MongoDB, has none measured: its cells name it and show no share)
# Why each: hits served by Redis (layers 2-4, 6, 8) are bound by redis, in-process hits (5, 10)
# by http-only, misses and the primary's writes by pg-select and pg-write (layer 6's writes are
# queue appends, Redis; layer 7's commands and layer 9's writes are PostgreSQL upserts; layer
# 8's plain records live in MongoDB, its transactions in PostgreSQL).
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
    "l6  | QUEUE_MAX_LENGTH=1000000 QUEUE_MAX_AGE_MS=600000 | | | *=redis read-miss=pg-select"
    "l7  |               |                  | | *=pg-select write=pg-write"
    "l8  |               |                  | | *=redis read-miss=mongo write=mongo txn-write=pg-write"
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
VERIFY_SAMPLE=100 # keys read back after the preload by a layer without a cache (all with one)
# Layers bound by PostgreSQL's connection set-up (layer 0) take up to seconds per request: their
# cells, and the pg-connect ceiling, measure at least this many seconds (cell_duration).
CONNECT_MIN_DURATION=2

# Settings (empty until parse_args; --quick fills the ones not given)
WORKLOADS="" CONCURRENCY="" RATES="" DURATION="" WARMUP="" KEYS="" DB_LATENCY="" OUT="" QUICK=0
DURATION_MS=0 WARMUP_MS=0 # --duration and --warmup in milliseconds, for the arithmetic
HZ=100                    # clock ticks per second (/proc's CPU times), from getconf in main
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

# Stops every database of the run, all at once. The layer's clusters are thrown away right
# after, so they stop without a shutdown checkpoint (immediate): after a write cell a clean stop
# spent seconds flushing buffers nobody reads again. The template cluster stops cleanly.
stop_databases() {
    local dir pids=() pid
    [ -n "$WORK" ] || return 0
    [ ! -d "$WORK/pg-template" ] || { (pg_stop "$WORK/pg-template") || true; }
    for dir in "$WORK"/pg[0-9]*; do
        [ -d "$dir" ] && { (pg_stop "$dir" immediate || true) & pids+=($!); }
    done
    for dir in "$WORK"/redis[0-9]*; do
        [ -d "$dir" ] && { (redis_stop "$dir" || true) & pids+=($!); }
    done
    for dir in "$WORK"/mongo[0-9]*; do
        [ -d "$dir" ] && { (mongo_stop "$dir" || true) & pids+=($!); }
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
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
    to_ms DURATION_MS "$DURATION"
    to_ms WARMUP_MS "$WARMUP"
}

# ---- the layer table ----

# The harness runs in bash builtins wherever it loops (per cell, per reading): on a loaded
# 2-core machine each process it starts costs 60-100 ms, so the functions below set variables
# (printf -v, read from /proc) instead of printing into a command substitution, which forks.

# Sets variable VAR to S without leading and trailing blanks.
trim_to() { # VAR S
    local s=$2
    s=${s#"${s%%[![:space:]]*}"}
    printf -v "$1" '%s' "${s%"${s##*[![:space:]]}"}"
}

# The columns of BENCH_LAYERS by layer number, split once (load_bench_table).
declare -A BENCH_SETTINGS=() BENCH_HEADER=() BENCH_UNSUPPORTED=() BENCH_BOUND=()
load_bench_table() {
    local line name settings header unsupported bound n
    for line in "${BENCH_LAYERS[@]}"; do
        IFS='|' read -r name settings header unsupported bound <<<"$line"
        trim_to n "$name"
        n=${n#l}
        trim_to "BENCH_SETTINGS[$n]" "$settings"
        trim_to "BENCH_HEADER[$n]" "$header"
        trim_to "BENCH_UNSUPPORTED[$n]" "$unsupported"
        trim_to "BENCH_BOUND[$n]" "$bound"
    done
}

# Sets WHY to why layer N cannot serve workload W, or to nothing if it can.
unsupported_reason() { # N W
    local entry entries=()
    WHY=""
    if [[ " $LAYER8_WORKLOADS " == *" $2 "* ]] && [ "$1" != 8 ]; then
        WHY="layer 8's transaction routes"
        return 0
    fi
    IFS=';' read -ra entries <<<"${BENCH_UNSUPPORTED[$1]:-}"
    for entry in "${entries[@]}"; do
        trim_to entry "$entry"
        if [ "${entry%%:*}" = "$2" ]; then
            trim_to WHY "${entry#*:}"
            return 0
        fi
    done
}

# Sets BOUND to the ceiling that bounds layer N on workload W.
bound_of() { # N W
    local entry
    BOUND=""
    for entry in ${BENCH_BOUND[$1]:-}; do
        case $entry in
        "$2="*) BOUND=${entry#*=}; return 0 ;;
        "*="*) BOUND=${entry#*=} ;;
        *=*) ;;
        *) BOUND=$entry ;;
        esac
    done
}

binary_of() { echo "$BUILD_DIR/${LAYER_NAMES[$1]}/${LAYER_NAMES[$1]}"; }

list_layers() {
    local line name n state backends
    for line in "${BENCH_LAYERS[@]}"; do
        trim_to name "${line%%|*}"
        n=${name#l}
        state="not built"
        [ -x "$BUILD_DIR/${LAYER_NAMES[$n]}/${LAYER_NAMES[$n]}" ] && state="built: measured by default"
        backends=$(layer_backends "$n")
        printf '%-26s %-12s %s\n' "${LAYER_NAMES[$n]}" "${backends// /+}" "$state"
    done
}

# ---- arithmetic in builtins ----

# Sets VAR to seconds S (e.g. "1.3", "2", "0.25") in whole milliseconds.
to_ms() { # VAR S
    local whole=${2%%.*} frac=
    [[ $2 != *.* ]] || frac=${2#*.}
    frac=${frac}000
    printf -v "$1" '%d' $((10#${whole:-0} * 1000 + 10#${frac:0:3}))
}

# Sets VAR to N hundredths as a decimal: 1234 -> "12.34" (N >= 0).
hundredths() { # VAR N
    printf -v "$1" '%d.%02d' $(($2 / 100)) $(($2 % 100))
}

# ---- progress ----

plan() { PLAN_LEFT=$((PLAN_LEFT + $1)); } # MS: estimated milliseconds of work to come

# Marks MS estimated milliseconds as done.
plan_done() {
    PLAN_LEFT=$((PLAN_LEFT - $1))
    PLAN_DONE=$((PLAN_DONE + $1))
}

# "[bench 07:09:11, round 2/3, ~4m05s left] MESSAGE": time left is the estimate scaled by how
# the estimate has fared so far.
progress() {
    local elapsed=$(((SECONDS - START_S) * 1000)) left=$PLAN_LEFT
    if [ "$PLAN_DONE" -gt 0 ] && [ "$elapsed" -gt "$PLAN_DONE" ]; then
        left=$((PLAN_LEFT * elapsed / PLAN_DONE))
    fi
    left=$((left / 1000))
    [ "$left" -ge 0 ] || left=0
    printf '[bench %(%H:%M:%S)T, round %s/%s, ~%dm%02ds left] %s\n' -1 "$ROUND" "$REPEAT" \
        $((left / 60)) $((left % 60)) "$*" >&2
}

# Sleeps S seconds without starting a process (read's timeout on a pipe nobody writes to).
SLEEP_FD=""
nap() { # S
    [ -n "$SLEEP_FD" ] || exec {SLEEP_FD}<> <(:)
    read -r -t "$1" -u "$SLEEP_FD" || true
}

# Sets LOAD1 to the 1-minute load average.
read_load() {
    local _rest
    read -r LOAD1 _rest </proc/loadavg
}

# Warns when other work competes for the machine before the run starts (a load average of half
# the cores or more): the figures would then measure the competition as much as the layers, and
# must not be compared with committed results measured on a quieter machine.
warn_if_loaded() {
    local cores load_ms=0
    cores=$(nproc)
    read_load
    to_ms load_ms "$LOAD1"
    if [ $((load_ms * 2)) -ge $((cores * 1000)) ]; then
        progress "WARNING: load average $LOAD1 on $cores cores before the run: other work is" \
            "competing, so these figures are not comparable with committed results measured on a" \
            "quieter machine (each result folder's machine.txt and results.csv record the load)"
    fi
}

# ---- measurements ----

declare -A RES # the last loadgen RESULT, by name (run_loadgen)

# Runs loadgen into a file (no command substitution: no extra process), appends what it
# printed to raw.log under LABEL and fills RES from its RESULT line. Returns non-zero if
# loadgen produced no result at all.
run_loadgen() { # LABEL LAYER_N ARGS...
    local label=$1 n=$2 header=${BENCH_HEADER[$2]:-} args line kv found=1 lines=()
    shift 2
    args=(--port "$API_PORT" --keys "$KEYS" --value-bytes "$VALUE_BYTES" "$@")
    [ -z "$header" ] || args+=(--header "$header")
    "$BUILD_DIR/bench/loadgen/loadgen" "${args[@]}" >"$WORK/loadgen.out" 2>&1 || true
    mapfile -t lines <"$WORK/loadgen.out"
    printf '==== round %s, %s: loadgen %s\n' "$ROUND" "$label" "${args[*]}" >>"$OUT/raw.log"
    printf '%s\n' "${lines[@]}" "" >>"$OUT/raw.log"
    RES=()
    for line in "${lines[@]}"; do
        [[ $line == "RESULT "* ]] || continue
        for kv in ${line#RESULT }; do RES[${kv%%=*}]=${kv#*=}; done
        found=0
    done
    return $found
}

# Reads /proc/PID/stat into TICKS: the CPU ticks (user + system) of PID; with --children, also
# those of its children that have exited (PostgreSQL's backends, counted by the postmaster).
# Adds to TICKS, which the caller zeroes. A process that is gone counts 0.
add_ticks() { # [--children] PID
    local children=0 stat f=()
    if [ "$1" = --children ]; then
        children=1
        shift
    fi
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
    read -ra f <<<"${stat##*) }" # from the state on: utime is f[11], stime f[12]
    TICKS=$((TICKS + f[11] + f[12]))
    [ "$children" = 0 ] || TICKS=$((TICKS + f[13] + f[14]))
}

# Sets SERVER_TICKS: the CPU of the layer's own programs (the server and any worker, relay,
# projector).
server_ticks() {
    local pid TICKS=0
    for pid in "${PROGRAM_PIDS[@]}"; do add_ticks "$pid"; done
    SERVER_TICKS=$TICKS
}

# Sets BACKEND_TICKS: the databases' CPU: every PostgreSQL (postmaster, its backends, those
# that ended), Redis and layer 8's stand-in MongoDB.
# Approximate: a backend ending between two reads can be missed (layer 0 ends one per request).
backend_ticks() {
    local dir pm pid TICKS=0 children=()
    for dir in "$WORK"/pg[0-9]*; do
        [ -f "$dir/postmaster.pid" ] || continue
        read -r pm <"$dir/postmaster.pid"
        add_ticks --children "$pm"
        children=() # one line of pids with no newline at its end: read fills it, then says EOF
        { read -ra children <"/proc/$pm/task/$pm/children"; } 2>/dev/null || true
        for pid in "${children[@]}"; do add_ticks "$pid"; done
    done
    for dir in "$WORK"/redis[0-9]*/redis.pid "$WORK"/mongo[0-9]*/congodb.pid; do
        [ -f "$dir" ] || continue
        read -r pid <"$dir"
        add_ticks "$pid"
    done
    BACKEND_TICKS=$TICKS
}

# Sets VAR to the CPU seconds of TICKS ticks ("12.34").
ticks_seconds() { # VAR TICKS
    hundredths "$1" $(($2 * 100 / HZ))
}

# Readings taken before a cell: the programs' and databases' CPU, the machine's counters.
CELL_SERVER0=0 CELL_BACKEND0=0 CELL_STAT0=""
cell_begin() {
    server_ticks
    backend_ticks
    CELL_SERVER0=$SERVER_TICKS CELL_BACKEND0=$BACKEND_TICKS
    cpu_stat
    CELL_STAT0=$STAT
}

# After a cell: sets CELL_CPU to "server_cpu_s,backend_cpu_s,server_peak_rss_kb,load1,
# steal_pct,busy_pct" since cell_begin (results.csv's columns).
cell_end() {
    local server backend
    server_ticks
    backend_ticks
    ticks_seconds server $((SERVER_TICKS - CELL_SERVER0))
    ticks_seconds backend $((BACKEND_TICKS - CELL_BACKEND0))
    peak_rss_kb
    machine_during "$CELL_STAT0"
    CELL_CPU="$server,$backend,$PEAK_RSS,$MACHINE"
}

# Sets STAT to the machine's CPU counters: "busy steal total" ticks since boot (/proc/stat).
cpu_stat() {
    local f=() t=0 i
    read -ra f </proc/stat # "cpu user nice system idle iowait irq softirq steal guest guest_nice"
    for ((i = 1; i < ${#f[@]}; i++)); do t=$((t + f[i])); done
    STAT="$((t - f[4] - f[5])) ${f[8]} $t" # busy: all but idle and iowait
}

# Sets MACHINE to "load1,steal%,busy%" between the cpu_stat BEFORE and now.
machine_during() { # BEFORE
    local a=() b=() t steal busy
    read -ra a <<<"$1"
    cpu_stat
    read -ra b <<<"$STAT"
    t=$((b[2] - a[2]))
    [ "$t" -gt 0 ] || t=1
    steal=$(((b[1] - a[1]) * 1000 / t)) # tenths of a percent
    busy=$((((b[0] - a[0]) * 200 / t + 1) / 2)) # rounded percent
    read_load
    MACHINE="$LOAD1,$((steal / 10)).$((steal % 10)),$busy"
}

# Peak resident memory of the server since the last reset_peak_rss (since start if the kernel
# refuses the reset): PEAK_RSS (kB), empty if unknown.
reset_peak_rss() { echo 5 >"/proc/${PROGRAM_PIDS[0]}/clear_refs" 2>/dev/null || true; }
peak_rss_kb() {
    local key value _unit
    PEAK_RSS=""
    while read -r key value _unit; do
        [ "$key" != VmHWM: ] || { PEAK_RSS=$value; return 0; }
    done 2>/dev/null <"/proc/${PROGRAM_PIDS[0]:-0}/status" || true
}

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
    local port=$((PROXY_BASE + $1)) tries
    ! port_in_use "$port" || { echo "port $port is in use" >&2; return 1; }
    "$BUILD_DIR/bench/delay-proxy/delay-proxy" "$port" $((PG_BASE + $1)) "$DB_LATENCY" \
        2>>"$WORK/proxy$1.log" &
    PIDS+=($!)
    for ((tries = 0; tries < 100; tries++)); do
        port_in_use "$port" && return 0
        nap 0.05
    done
    echo "delay-proxy did not start on $port" >&2
    return 1
}

# Starts one program of layer N (build/<layer>/PROGRAM) with the layer's settings for this
# stack, the benchmark's settings, --set's and the variant's, its log in WORK/PROGRAM.log.
start_program() { # N PROGRAM
    local n=$1 program=$2 pg_port=$PG_BASE settings=()
    [ -z "$DB_LATENCY" ] || pg_port=$PROXY_BASE
    read -ra settings <<<"${BENCH_SETTINGS[$n]:-}"
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
    local n=$1 kind pg_i=0 redis_i=0 mongo_i=0 tries pid
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
    for ((tries = 0; tries < 300; tries++)); do
        port_in_use "$API_PORT" &&
            curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$API_PORT/health" && return 0
        for pid in "${PROGRAM_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || break 2; done
        nap 0.05
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
            f=${f##*/}
            echo "== round $ROUND: ${f%.log} (last 300 lines)"
            f="$WORK/$f"
            tail -n 300 "$f"
        done
    } >>"$log"
    [ -s "$log" ] || rm -f "$log"
    rm -rf "$WORK"/pg[0-9]* "$WORK"/redis[0-9]* "$WORK"/mongo[0-9]* "$WORK"/*.log
}

# Writes bench:1 .. bench:KEYS in one INSERT on PostgreSQL instance 0, each with the value
# bench/loadgen writes and checks ("bench:N=" padded with 'v' to VALUE_BYTES); sets SQL_SECONDS
# to the time it took. For a layer bound by PostgreSQL's
# connection set-up (layer 0: 20-40 new connections a second here), whose API would take 30-50 s
# a round to write the data set; its verification still reads it back through the API.
preload_by_sql() {
    local t0=$EPOCHREALTIME ms
    as_pg_owner "$PG_BIN/psql" -q -X -h 127.0.0.1 -p "$PG_BASE" -U layers -d layers \
        -v ON_ERROR_STOP=1 -c "INSERT INTO records (key, value)
            SELECT 'bench:' || i, rpad('bench:' || i || '=', $VALUE_BYTES, 'v')
            FROM generate_series(1, $KEYS) AS i
            ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()" \
        >>"$OUT/raw.log" 2>&1 || return 1
    to_ms ms "$EPOCHREALTIME"
    to_ms t0 "$t0"
    ms=$((ms - t0))
    printf -v SQL_SECONDS '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

# Writes bench:1 .. bench:KEYS through the API (32 connections, every reply checked; by SQL on a
# layer bound by connection set-up, preload_by_sql), then reads keys back and checks each value:
# every key on a layer with a cache (which also leaves the cache warm: the state every read cell
# starts from), an evenly spaced sample of VERIFY_SAMPLE on the others. One row per step in
# checks.csv. Returns non-zero if any failed.
preload() { # N
    local n=$1 name=${LAYER_NAMES[$1]}$VARIANT_LABEL step count=$VERIFY_SAMPLE bad by_sql=0 why
    [[ " $BACKENDS " != *" redis "* ]] || count=0
    bound_of "$n" write
    [ "$BOUND" != pg-connect ] || by_sql=1
    if [ "$by_sql" = 1 ]; then
        printf '==== round %s, %s preload: one INSERT of %s rows (psql)\n' "$ROUND" "$name" \
            "$KEYS" >>"$OUT/raw.log"
        preload_by_sql || { echo "preload: the INSERT failed (raw.log)" >&2; return 1; }
        echo "$name,$ROUND,preload (SQL),$KEYS,0,$SQL_SECONDS" >>"$OUT/checks.csv"
    fi
    for step in preload verify; do
        [ "$step" != preload ] || [ "$by_sql" = 0 ] || continue
        # A read model fed by a projector (layer 7) answers reads once it has caught up.
        if [ "$step" = verify ] && [ -n "${LAG_LAYERS[$n]:-}" ] &&
            ! why=$(/usr/bin/python3 "$ROOT/bench/lag.py" caught-up "$API_PORT" 120 2>&1 >/dev/null); then
            echo "verify: the projector did not catch up with the preload: ${why##*$'\n'}" >&2
            return 1
        fi
        run_loadgen "$name $step" "$n" --workload "$step" --connections 32 \
            --verify-count "$count" || { echo "$step: no result from loadgen (raw.log)" >&2; return 1; }
        bad=$((RES[bad_status] + RES[bad_body] + RES[socket]))
        echo "$name,$ROUND,$step,${RES[requests]},$bad,${RES[elapsed]}" >>"$OUT/checks.csv"
        if [ "$bad" != 0 ]; then
            ERRORS=$((ERRORS + bad))
            echo "$step: $bad of ${RES[requests]} requests failed their check (raw.log)" >&2
            return 1
        fi
    done
}

# ---- one layer ----

csv_row() {
    local IFS=,
    printf '%s\n' "$*" >>"$OUT/results.csv"
}

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
    local n=$1 name=${LAYER_NAMES[$1]}$VARIANT_LABEL w c r flag bad warm mode rps p99 duration
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
        unsupported_reason "$n" "$w"
        cell_duration "$n" "$w"
        duration=$CELL_DURATION
        for c in $CONCURRENCY; do
            for r in $RATES; do
                if [ -n "$WHY" ]; then
                    csv_empty_row "$name" "$w" "$c" "$r" "not served: ${WHY//,/;}"
                    continue
                fi
                mode="$c clients"
                [ "$r" = 0 ] || mode="$r req/s on $c connections"
                progress "$name: $w, $mode (${WARMUP}s warm-up + ${duration}s)"
                reset_peak_rss
                cell_begin
                if ! run_loadgen "$name $w $mode" "$n" --workload "$w" --connections "$c" \
                    --rate "$r" --warmup "$WARMUP" --duration "$duration" \
                    --expect-value-bytes $((VALUE_BYTES + WRONG)); then
                    csv_empty_row "$name" "$w" "$c" "$r" "FAILED: no result from loadgen (raw.log)"
                    record_failed "$n" "loadgen gave no result for $w, $mode (raw.log)" "$w" "$c" "$r"
                    return 1
                fi
                cell_end
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
                csv_row "$name" "$w" "$c" "$r" "$ROUND" "${RES[rps]}" \
                    "${RES[mean]}" "${RES[p50]}" "${RES[p90]}" \
                    "${RES[p99]}" "${RES[p999]}" "${RES[max]}" \
                    "${RES[requests]}" "${RES[bad_status]}" \
                    "${RES[bad_body]}" "${RES[socket]}" \
                    "${RES[unfinished]}" "${RES[warmup_requests]}" "$warm" \
                    "$CELL_CPU" "$flag"
                plan_done $((WARMUP_MS + CELL_DURATION_MS))
                if [ -n "$flag" ]; then
                    progress "$name: $w, $mode: $flag: ${RES[bad_status]} bad statuses, ${RES[bad_body]} bad bodies, ${RES[socket]} socket errors, $warm in the warm-up, ${RES[unfinished]} unfinished"
                else
                    rps=${RES[rps]%.*}
                    hundredths p99 $((${RES[p99]:-0} / 10))
                    progress "$name: $w, $mode: $rps req/s, p99 $p99 ms"
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
steady_row() { # NAME WORKLOAD CONNECTIONS RATE P50 P99 MAX COUNT (after cell_end)
    local bad=$((RES[bad_status] + RES[bad_body] + RES[socket]))
    FLAG=""
    if [ "$bad" != 0 ]; then
        FLAG="ERRORS"
        ERRORS=$((ERRORS + bad))
    elif [ "${RES[unfinished]}" != 0 ]; then
        FLAG="UNFINISHED"
    fi
    csv_row "$1" "$2" "$3" "$4" "$ROUND" "${RES[rps]}" "" "$5" "" "$6" "" "$7" "$8" \
        "${RES[bad_status]}" "${RES[bad_body]}" "${RES[socket]}" "${RES[unfinished]}" 0 0 \
        "$CELL_CPU" "$FLAG"
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
    local n=$1 name=${LAYER_NAMES[$1]}$VARIANT_LABEL program=${DRAIN_WORKERS[$1]} pid="" p comm out bad flag
    local timeout=$((DRAIN_ROWS / 1000 + 120))
    progress "$name: drain: stopping $program once the queue is empty"
    if ! out=$(/usr/bin/python3 "$ROOT/bench/drain.py" empty "$API_PORT" 120 2>&1); then
        drain_failed "$n" rate "$out"
        return 1
    fi
    for p in "${PROGRAM_PIDS[@]}"; do
        { read -r comm <"/proc/$p/comm"; } 2>/dev/null || continue
        [ "$comm" != "$program" ] || { pid=$p; break; }
    done
    [ -z "$pid" ] || stop_program "$pid"
    progress "$name: drain: writing a backlog of $DRAIN_ROWS entries through the API"
    run_loadgen "$name drain backlog" "$n" --workload preload --keys "$DRAIN_ROWS" \
        --connections 32 || { drain_failed "$n" rate "no result from loadgen (raw.log)"; return 1; }
    bad=$((RES[bad_status] + RES[bad_body] + RES[socket]))
    echo "$name,$ROUND,drain backlog,${RES[requests]},$bad,${RES[elapsed]}" >>"$OUT/checks.csv"
    if [ "$bad" != 0 ]; then
        ERRORS=$((ERRORS + bad))
        drain_failed "$n" rate "$bad of ${RES[requests]} backlog writes failed their check (raw.log)"
        return 1
    fi
    progress "$name: drain: one $program draining $DRAIN_ROWS entries"
    cell_begin
    start_program "$n" "$program" || { drain_failed "$n" rate "$program did not start"; return 1; }
    out=$(/usr/bin/python3 "$ROOT/bench/drain.py" rate "$API_PORT" "$DRAIN_ROWS" "$timeout" 2>&1) || true
    printf '==== round %s, %s drain: bench/drain.py rate %s
%s

' "$ROUND" "$name" "$DRAIN_ROWS"         "$out" >>"$OUT/raw.log"
    if ! [[ $out =~ DRAIN\ rows=([0-9]+).*\ rps=([0-9.]+) ]]; then
        drain_failed "$n" rate "$(echo "$out" | tail -n 1)"
        return 1
    fi
    cell_end
    csv_row "$name" drain 1 0 "$ROUND" "${BASH_REMATCH[2]}" "" "" "" "" "" "" "${BASH_REMATCH[1]}" \
        0 0 0 0 0 0 "$CELL_CPU" ""
    progress "$name: drain: ${BASH_REMATCH[2]%.*} rows/s with one worker"

    progress "$name: drain: commit delay under $DRAIN_RATE writes/s (${DURATION}s)"
    redis-cli -p "$REDIS_BASE" DEL l6:commit_delay >/dev/null
    reset_peak_rss
    cell_begin
    if ! run_loadgen "$name drain delay $DRAIN_RATE req/s" "$n" --workload write \
        --connections "$DRAIN_CONNECTIONS" --rate "$DRAIN_RATE" --warmup 0 --duration "$DURATION" \
        --expect-value-bytes "$VALUE_BYTES"; then
        drain_failed "$n" delay "no result from loadgen (raw.log)"
        return 1
    fi
    out=$(/usr/bin/python3 "$ROOT/bench/drain.py" delay "$API_PORT" 120 2>&1) || true
    printf '==== round %s, %s drain: bench/drain.py delay
%s

' "$ROUND" "$name" "$out" >>"$OUT/raw.log"
    if ! [[ $out =~ DELAY\ p50_us=([0-9]+)\ p99_us=([0-9]+)\ max_us=([0-9]+)\ count=([0-9]+) ]]; then
        drain_failed "$n" delay "$(echo "$out" | tail -n 1)"
        return 1
    fi
    cell_end
    steady_row "$name" drain "$DRAIN_CONNECTIONS" "$DRAIN_RATE" "${BASH_REMATCH[@]:1:4}"
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
    local n=$1 name=${LAYER_NAMES[$1]}$VARIANT_LABEL out flag why p50 p99
    progress "$name: lag: projection lag under $LAG_RATE writes/s (${DURATION}s)"
    if ! why=$(/usr/bin/python3 "$ROOT/bench/lag.py" caught-up "$API_PORT" 120 2>&1 >/dev/null); then
        record_failed "$n" "lag: ${why:-lag.py failed}" write "${CONCURRENCY##* }" "${RATES##* }"
        return 1
    fi
    redis-cli -p "$REDIS_BASE" DEL l7:lag >/dev/null
    reset_peak_rss
    cell_begin
    if ! run_loadgen "$name lag $LAG_RATE req/s" "$n" --workload write \
        --connections "$LAG_CONNECTIONS" --rate "$LAG_RATE" --warmup 0 --duration "$DURATION" \
        --expect-value-bytes "$VALUE_BYTES"; then
        record_failed "$n" "lag: no result from loadgen (raw.log)" write "${CONCURRENCY##* }" "${RATES##* }"
        return 1
    fi
    out=$( { /usr/bin/python3 "$ROOT/bench/lag.py" caught-up "$API_PORT" 120 >/dev/null &&
        /usr/bin/python3 "$ROOT/bench/lag.py" read "$REDIS_BASE"; } 2>&1) || true
    printf '==== round %s, %s lag: bench/lag.py read\n%s\n\n' "$ROUND" "$name" "$out" >>"$OUT/raw.log"
    if ! [[ $out =~ LAG\ p50_us=([0-9]+)\ p99_us=([0-9]+)\ max_us=([0-9]+)\ count=([0-9]+) ]]; then
        record_failed "$n" "lag: $(echo "$out" | tail -n 1)" write "${CONCURRENCY##* }" "${RATES##* }"
        return 1
    fi
    cell_end
    steady_row "$name" lag "$LAG_CONNECTIONS" "$LAG_RATE" "${BASH_REMATCH[@]:1:4}"
    flag=$FLAG
    hundredths p50 $((BASH_REMATCH[1] / 10))
    hundredths p99 $((BASH_REMATCH[2] / 10))
    progress "$name: lag: p50 $p50 ms, p99 $p99 ms${flag:+ ($flag)}"
    programs_alive || { record_failed "$n" "a program exited during the lag (logs/$name.log)" lag; return 1; }
}

# The measured seconds of layer N's cells of workload W: --duration, but at least
# CONNECT_MIN_DURATION where the layer is bound by PostgreSQL's connection set-up (layer 0):
# there an answer takes up to seconds, so a 1 s window holds too few answers to count.
# Sets CELL_DURATION and CELL_DURATION_MS.
cell_duration() { # N W
    bound_of "$1" "$2"
    CELL_DURATION=$DURATION CELL_DURATION_MS=$DURATION_MS
    if [ "$BOUND" = pg-connect ] && [ "$DURATION_MS" -lt $((CONNECT_MIN_DURATION * 1000)) ]; then
        CELL_DURATION=$CONNECT_MIN_DURATION CELL_DURATION_MS=$((CONNECT_MIN_DURATION * 1000))
    fi
}

# Estimated milliseconds of layer N in one round: start-up and preload, then the cells (and a
# drain, roughly, if it has a queue); sets PLAN_MS.
layer_plan() { # N
    local w c r x=0
    if [[ " $WORKLOADS " == *" drain "* ]] && [ -n "${DRAIN_WORKERS[$1]:-}" ]; then
        x=$(((DRAIN_ROWS / 5000 + 5) * 1000 + DURATION_MS))
    fi
    if [[ " $WORKLOADS " == *" lag "* ]] && [ -n "${LAG_LAYERS[$1]:-}" ]; then
        x=$((x + DURATION_MS + 2000))
    fi
    PLAN_MS=$((5000 + KEYS + x))
    for w in $WORKLOADS; do
        case $w in drain | lag) continue ;; esac
        cell_duration "$1" "$w"
        for c in $CONCURRENCY; do
            for r in $RATES; do PLAN_MS=$((PLAN_MS + WARMUP_MS + CELL_DURATION_MS)); done
        done
    done
}

# The layer number of an entry of the run: N, or N@NAME=VALUE,... (a variant).
entry_layer() { echo "${1%%@*}"; }
# (per layer and round only; in loops: ${entry%%@*})

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
    n=${1%%@*}
    local name=${LAYER_NAMES[$n]}$VARIANT_LABEL done_before=$PLAN_DONE
    BACKENDS=$(layer_backends "$n")
    progress "$name: starting its databases ($BACKENDS) and programs"
    if ! start_stack "$n" 2>>"$WORK/why"; then
        record_failed "$n" "$(tail -n 1 "$WORK/why")"
    else
        progress "$name: writing $KEYS keys through the API and reading them back"
        if ! preload "$n" 2>>"$WORK/why"; then
            record_failed "$n" "$(tail -n 1 "$WORK/why")"
        else
            plan_done $((5000 + KEYS))
            measure_layer "$n" || true
        fi
    fi
    stop_stack "$name"
    layer_plan "$n"
    plan_done $((PLAN_MS - (PLAN_DONE - done_before)))
    use_variant "$n"
}

# ---- ceilings: what this machine allows without a layer in between ----

CEILING_COLUMNS="kind,concurrency,round,rps,avg_us,p99_us,errors,load1,steal_pct,busy_pct"

csv_ceiling() { # KIND CLIENTS RPS AVG_US P99_US ERRORS STAT0
    machine_during "$7"
    echo "$1,$2,$ROUND,$3,$4,$5,$6,$MACHINE" >>"$OUT/ceilings.csv"
    if [ "$6" != 0 ]; then
        ERRORS=$((ERRORS + $6))
        progress "ceiling $1 at $2 clients: ERRORS ($6; raw.log)"
    fi
}

# Sets VAR to X x PER with one decimal (X a decimal number, PER a whole one): "1234.5678" 10
# -> "12345.7"; empty if X is.
times_per() { # VAR X PER
    local milli
    [ -n "$2" ] || { printf -v "$1" '%s' ""; return 0; }
    to_ms milli "$2"
    milli=$(((milli * $3 + 50) / 100)) # tenths
    printf -v "$1" '%d.%d' $((milli / 10)) $((milli % 10))
}

# pgbench's connection set-up allowance, in ms per connection and thread: 200 at first (over
# 100 ms was seen at load 13), then three times the largest per-connection time the last
# pgbench of a round reported ("initial connection time"), at least 50.
CONNECT_SETUP_MS=200

# Runs pgbench with ARGS at C clients for the cell's duration; records KIND with rps =
# transactions/s x PER (statements per transaction).
pgbench_ceiling() { # KIND C PER ARGS...
    local kind=$1 c=$2 per=$3 threads=2 err=0 pg_port=$PG_BASE stat0 pg_time tps="" avg="" failed=0
    local line lines=() setup=$CONNECT_SETUP_MS d_ms=$DURATION_MS x per_conn
    shift 3
    [ "$c" -ge 2 ] || threads=1
    [ -z "$DB_LATENCY" ] || pg_port=$PROXY_BASE
    # pgbench's -T is whole seconds and includes opening its connections, one at a time per
    # thread (its tps leaves that time out): each costs 30 ms on a quiet 2-core machine and
    # over 100 ms on one at load 13, and through the delay proxy several round trips more, so
    # -T grows by that much (CONNECT_SETUP_MS per connection and thread); with a 1 s cell, 64
    # clients would otherwise finish no transaction at all. Not for -C, which connects per
    # transaction, within the measured time, and runs at least CONNECT_MIN_DURATION (as the
    # cells it bounds).
    if [[ " $* " == *" -C "* ]]; then
        setup=0
        [ "$d_ms" -ge $((CONNECT_MIN_DURATION * 1000)) ] || d_ms=$((CONNECT_MIN_DURATION * 1000))
    fi
    to_ms x "${DB_LATENCY:-0}"
    x=$((c * (x * 6 / 1000 + setup) / threads)) # ms
    pg_time=$(((d_ms + 999) / 1000 + (x > 0 ? x / 1000 + 1 : 0)))
    cpu_stat
    stat0=$STAT
    as_pg_owner "$PG_BIN/pgbench" -h 127.0.0.1 -p "$pg_port" -U layers -n -c "$c" \
        -j "$threads" -T "$pg_time" "$@" layers >"$WORK/pgbench.out" 2>&1 || err=1
    mapfile -t lines <"$WORK/pgbench.out"
    printf '==== round %s, ceiling %s %s: pgbench -c %s -j %s -T %s %s\n' "$ROUND" "$kind" \
        "$c" "$c" "$threads" "$pg_time" "$*" >>"$OUT/raw.log"
    printf '%s\n' "${lines[@]}" "" >>"$OUT/raw.log"
    for line in "${lines[@]}"; do
        if [[ -z $tps && $line =~ ^tps\ =\ ([0-9.]+) ]]; then
            tps=${BASH_REMATCH[1]}
        elif [[ $line =~ ^latency\ average\ =\ ([0-9.]+)\ ms ]]; then
            to_ms avg "${BASH_REMATCH[1]}" # ms -> µs
        elif [[ $line =~ ^number\ of\ failed\ transactions:\ ([0-9]+) ]]; then
            failed=${BASH_REMATCH[1]}
        elif [[ $setup != 0 && $line =~ ^initial\ connection\ time\ =\ ([0-9.]+)\ ms ]]; then
            to_ms per_conn "${BASH_REMATCH[1]}"
            per_conn=$((per_conn * threads * 3 / c / 1000))
            [ "$per_conn" -ge 50 ] || per_conn=50
            [ "$per_conn" -le 200 ] || per_conn=200
            CONNECT_SETUP_MS=$per_conn
        fi
    done
    [ -n "$tps" ] || err=1
    times_per tps "$tps" "$per"
    csv_ceiling "$kind" "$c" "$tps" "$avg" "" $((err + failed)) "$stat0"
}

# pgbench scripts, readable by PostgreSQL's owner: ten primary-key selects in one pipeline (a
# round trip carries ten queries), and the servers' own upsert of a 100-byte value.
write_pgbench_scripts() {
    local i
    {
        for ((i = 1; i <= 10; i++)); do printf '\\set aid%d random(1, 100000 * :scale)\n' "$i"; done
        printf '\\startpipeline\n'
        for ((i = 1; i <= 10; i++)); do echo "SELECT abalance FROM pgbench_accounts WHERE aid = :aid$i;"; done
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
    local c out stat0 rps line name avg p99 _x
    progress "ceilings: http-only, pg-select, pg-pipelined, pg-write, pg-connect, redis"
    if ! start_stack 0 2>>"$WORK/why" || ! (redis_start "$WORK/redis0" "$REDIS_BASE") >/dev/null; then
        ERRORS=$((ERRORS + 1))
        progress "ceilings: FAILED: $(tail -n 1 "$WORK/why")"
        stop_stack ceilings
        ceilings_plan
        plan_done "$PLAN_MS"
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
        cpu_stat
        stat0=$STAT
        if run_loadgen "ceiling http-only $c" 0 --workload ping --connections "$c" \
            --warmup "$WARMUP" --duration "$DURATION"; then
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
        cpu_stat
        stat0=$STAT
        redis-benchmark -p "$REDIS_BASE" -t get -c "$c" -n $((20000 * ${DURATION%.*} + 10000)) \
            -r "$KEYS" -q --csv >"$WORK/redis-benchmark.out" 2>&1 || true
        printf '==== round %s, ceiling redis %s: redis-benchmark -t get -c %s\n' "$ROUND" "$c" \
            "$c" >>"$OUT/raw.log"
        rps="" avg="" p99=""
        while IFS=, read -r name rps avg _x _x _x p99 _x; do
            [ "$name" = '"GET"' ] && break
            rps="" avg="" p99=""
        done <"$WORK/redis-benchmark.out"
        { cat "$WORK/redis-benchmark.out"; echo; } >>"$OUT/raw.log"
        rps=${rps//\"/} avg=${avg//\"/} p99=${p99//\"/}
        [ -z "$avg" ] || to_ms avg "$avg" # ms -> µs
        [ -z "$p99" ] || to_ms p99 "$p99"
        csv_ceiling redis "$c" "$rps" "$avg" "$p99" $((${#rps} == 0)) "$stat0"
        plan_done $((6 * DURATION_MS + WARMUP_MS))
    done
    stop_stack ceilings
    plan_done 5000
}

# Sets PLAN_MS to the estimated milliseconds of the ceilings of one round.
ceilings_plan() {
    local c
    PLAN_MS=5000
    for c in $CONCURRENCY; do PLAN_MS=$((PLAN_MS + 6 * DURATION_MS + WARMUP_MS)); done
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
        # Configured once (a build type other than RelWithDebInfo is configured again);
        # `cmake --build` configures again by itself when a CMakeLists.txt changed.
        : >"$WORK/build.log"
        if { ! grep -qx 'CMAKE_BUILD_TYPE:STRING=RelWithDebInfo' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null &&
            ! cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WORK/build.log"; } ||
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
    load_bench_table
    parse_args "$@"
    HZ=$(getconf CLK_TCK)
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
            [ "$w" = drain ] || [ "$w" = lag ] || { bound_of "$n" "$w"; echo "${LAYER_NAMES[$n]}$VARIANT_LABEL,$w,$BOUND" >>"$OUT/bounds.csv"; }
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
        [ "$CEILINGS" = 0 ] || { ceilings_plan; plan "$PLAN_MS"; }
        for e in "${layers[@]}"; do layer_plan "${e%%@*}"; plan "$PLAN_MS"; done
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
