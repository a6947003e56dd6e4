#!/usr/bin/env bash
# Smoke test of `./layers run LAYER`, the first command a new user types. The black-box tests
# start their own servers on test ports, so a broken `./layers run` (a setting it forgets to pass,
# a helper it does not start) would go unseen by them. For each layer this script does what the
# README tells a user to do: `./layers run lN`, the printed curls (write a value, read it back),
# `/health`, then Ctrl-C, and checks that the server and its helpers stopped; `./layers down lN`
# stops the stores afterwards. CI runs it for every layer; `scripts/run-smoke.sh 6 7` runs some.
# Run it where the layers' own ports (8000 + N and their stores' ports) are free, e.g. inside
# `unshare -n bash -c 'ip link set lo up && scripts/run-smoke.sh'`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/layers-table.sh
source scripts/layers-table.sh

START_TIMEOUT_S=180 # the first run of a layer creates its databases (initdb, schema)
READ_TIMEOUT_S=10   # layer 7 reads from a projection that follows the write within a second
STOP_TIMEOUT_S=30

say() { printf '== %s\n' "$*"; }
fail() {
    printf 'run-smoke: %s\n' "$*" >&2
    [ -n "${log:-}" ] && [ -f "$log" ] && { echo "--- ./layers run output:" >&2; tail -n 40 "$log" >&2; }
    exit 1
}

http_status() { # URL [curl options...]: the status code, 000 when nothing answered
    local url=$1
    shift
    curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" "$url" || true
}

smoke_layer() {
    local n=$1 dir port run_pid header=() value t body status
    dir=${LAYER_NAMES[$n]}
    port=$((8000 + n))
    log=$(mktemp /tmp/run-smoke-l"$n".XXXXXX)
    say "l$n: ./layers run l$n"
    # setsid: the run gets its own process group, so the SIGINT below reaches it the way a
    # terminal's Ctrl-C does (every process of the foreground group), and nothing else.
    setsid ./layers run "l$n" >"$log" 2>&1 &
    run_pid=$!
    for ((t = 0; ; t++)); do
        [ "$(http_status "http://127.0.0.1:$port/health")" = 200 ] && break
        kill -0 "$run_pid" 2>/dev/null || fail "l$n: ./layers run exited before /health answered 200"
        [ "$t" -lt $((START_TIMEOUT_S * 2)) ] || fail "l$n: /health not 200 within ${START_TIMEOUT_S} s"
        sleep 0.5
    done
    local client_header
    client_header=$(layer_client_header "$n")
    [ -z "$client_header" ] || header=(-H "$client_header")

    value="smoke-l$n-$$-$RANDOM"
    status=$(http_status "http://127.0.0.1:$port/write" "${header[@]}" -X POST \
        -H 'Content-Type: application/json' -d "{\"key\":\"smoke:l$n\",\"value\":\"$value\"}")
    [ "$status" = 200 ] || fail "l$n: POST /write answered $status"
    for ((t = 0; ; t++)); do
        body=$(curl -s -m 5 "${header[@]}" "http://127.0.0.1:$port/read/smoke:l$n" || true)
        [[ $body == *"\"value\":\"$value\""* ]] && break
        [ "$t" -lt $((READ_TIMEOUT_S * 5)) ] || fail "l$n: GET /read did not return the written value: $body"
        sleep 0.2
    done

    say "l$n: Ctrl-C"
    kill -INT -- "-$run_pid"
    for ((t = 0; ; t++)); do
        kill -0 "$run_pid" 2>/dev/null || break
        [ "$t" -lt $((STOP_TIMEOUT_S * 5)) ] || fail "l$n: ./layers run still running ${STOP_TIMEOUT_S} s after Ctrl-C"
        sleep 0.2
    done
    wait "$run_pid" || true
    if pgrep -f "^$ROOT/build/$dir/" >/dev/null; then
        pgrep -af "^$ROOT/build/$dir/" >&2
        fail "l$n: a program of the layer still runs after Ctrl-C"
    fi
    [ "$(http_status "http://127.0.0.1:$port/health")" = 000 ] || fail "l$n: port $port still answers"
    ./layers down "l$n" >/dev/null
    rm -f "$log"
    log=""
}

main() {
    local n layers=("$@")
    [ ${#layers[@]} -gt 0 ] || layers=("${!LAYER_NAMES[@]}")
    ./layers build >/dev/null
    for n in "${layers[@]}"; do
        smoke_layer "${n#l}"
    done
    say "run-smoke: ${#layers[@]} layers started, answered and stopped"
}

main "$@"
