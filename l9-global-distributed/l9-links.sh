#!/usr/bin/env bash
# l9-links: the six WAN links between layer 9's regions, one delay proxy each
# (bench/delay-proxy), for as long as this program runs; SIGTERM stops them all.
#
# Link from -> to (from * 2 + (to > from ? to - 1 : to)) listens where REGION_LINK_URLS's entry
# says and forwards to region `to`'s PostgreSQL (REGION_DATABASE_URLS), adding the one-way
# latency of the pair: us-east<->eu-west 40 ms, us-east<->asia-pac 90 ms, eu-west<->asia-pac
# 80 ms, or REGION_LATENCY_MS ("us-east:eu-west=40,eu-west:asia-pac=5"; a pair is symmetric).
# Replication (a subscriber in `from` reading `to`'s publication) and the server's requests for
# region `from` served by region `to` both cross the link, so both pay its delay.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROXY=${DELAY_PROXY:-$HERE/../bench/delay-proxy/delay-proxy}
NAMES=(us-east eu-west asia-pac)
declare -A LATENCY=([us-east:eu-west]=40 [us-east:asia-pac]=90 [eu-west:asia-pac]=80)

die() {
    echo "l9-links: $*" >&2
    exit 1
}
url_port() { local u=${1##*:}; echo "${u%%/*}"; }

[ -x "$PROXY" ] || die "no delay proxy at $PROXY (build it, or set DELAY_PROXY)"
IFS=, read -r -a DBS <<<"${REGION_DATABASE_URLS:?REGION_DATABASE_URLS is not set}"
IFS=, read -r -a LINKS <<<"${REGION_LINK_URLS:?REGION_LINK_URLS is not set}"
if [ -n "${REGION_LATENCY_MS:-}" ]; then
    IFS=, read -r -a pairs <<<"$REGION_LATENCY_MS"
    for pair in "${pairs[@]}"; do
        [[ $pair =~ ^([a-z-]+):([a-z-]+)=([0-9]+(\.[0-9]+)?)$ ]] ||
            die "REGION_LATENCY_MS: '$pair' is not REGION:REGION=MS"
        a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} ms=${BASH_REMATCH[3]}
        if [ -n "${LATENCY[$a:$b]:-}" ]; then LATENCY[$a:$b]=$ms
        elif [ -n "${LATENCY[$b:$a]:-}" ]; then LATENCY[$b:$a]=$ms
        else die "REGION_LATENCY_MS: unknown pair '$a:$b' (regions: ${NAMES[*]})"; fi
    done
fi

pids=()
# shellcheck disable=SC2317 # called by the trap
stop() {
    kill "${pids[@]}" 2>/dev/null || true
    wait || true
    exit 0
}
trap stop TERM INT
for from in 0 1 2; do
    for to in 0 1 2; do
        [ "$from" = "$to" ] && continue
        a=${NAMES[$from]} b=${NAMES[$to]}
        ms=${LATENCY[$a:$b]:-${LATENCY[$b:$a]:-}}
        link=${LINKS[$((from * 2 + (to > from ? to - 1 : to)))]}
        "$PROXY" "$(url_port "$link")" "$(url_port "${DBS[$to]}")" "$ms" &
        pids+=($!)
        echo "link $a -> $b: 127.0.0.1:$(url_port "$link") -> :$(url_port "${DBS[$to]}"), $ms ms one way"
    done
done
wait -n "${pids[@]}" || true
echo "l9-links: a delay proxy exited; stopping the others" >&2
kill "${pids[@]}" 2>/dev/null || true
exit 1
