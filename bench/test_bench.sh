#!/usr/bin/env bash
# test_bench.sh BUILD_DIR: the harness's own test (ctest bench_selftest, run by ./layers test).
#
# CI trusts `./layers bench --quick` to fail when a server answers wrongly. This proves it: a
# short run of layer 1 whose cells expect a wrong value (--wrong-expectation: 101 bytes where
# 100 were written) must exit non-zero with its read cells flagged ERRORS and bad bodies
# counted; the same run with the right expectation must pass, so the failure is the check's.
#
# Variants (LAYER@NAME=VALUE): the wrong run measures l1@DB_POOL_MODE=bogus first, whose server
# must refuse the setting (its cells FAILED, under its own label) while the plain l1 after it
# starts: the setting reaches that entry and no other. The right run measures l1 next to
# l1@DB_POOL_MODE=pipeline, each under its own label, both clean.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:?usage: test_bench.sh BUILD_DIR}
OUT=$(mktemp -d /tmp/layers-bench-test-XXXXXX)
trap 'rm -rf "$OUT"' EXIT
RUN=("$ROOT/bench/run.sh" --quick --no-ceilings --no-build --allow-dirty --build-dir "$BUILD"
    --workloads "read-hit write" --concurrency 4 --duration 0.5 --warmup 0.2 --keys 200)

fail() {
    echo "test_bench: FAIL: $*" >&2
    exit 1
}

if "${RUN[@]}" l1@DB_POOL_MODE=bogus l1 --wrong-expectation --out "$OUT/wrong" >"$OUT/wrong.log" 2>&1; then
    cat "$OUT/wrong.log"
    fail "a run expecting wrong values exited 0"
fi
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $2 == "read-hit" && $(col["flag"]) == "ERRORS" && $(col["bad_body"]) > 0 && $(col["bad_body"]) == $(col["requests"]) { found = 1 }
    END { exit !found }' "$OUT/wrong/results.csv" ||
    { cat "$OUT/wrong/results.csv"; fail "the wrong reads were not all counted as bad bodies"; }
grep -q 'ERRORS' "$OUT/wrong/report.md" || fail "report.md does not flag the failed cell"
echo "test_bench: a wrong expectation fails the run, every read counted as a bad body"
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == "l1-connection-pooling@bogus" { n++; if ($(col["flag"]) !~ /^FAILED/) bad = 1 }
    END { exit !(n > 0 && !bad) }' "$OUT/wrong/results.csv" ||
    { cat "$OUT/wrong/results.csv"; fail "the variant with a refused setting was not FAILED under its label"; }
grep -qx 'variant: l1-connection-pooling@bogus = l1-connection-pooling with DB_POOL_MODE=bogus' \
    "$OUT/wrong/machine.txt" || fail "machine.txt does not name the variant's settings"
echo "test_bench: a variant's setting reaches its own server only (bogus refused, plain l1 measured)"

"${RUN[@]}" l1 l1@DB_POOL_MODE=pipeline --out "$OUT/right" >"$OUT/right.log" 2>&1 ||
    { cat "$OUT/right.log"; fail "the same run with the right expectation failed"; }
echo "test_bench: the same run with the right expectation passes"
for label in l1-connection-pooling l1-connection-pooling@pipeline; do
    for w in read-hit write; do
        awk -F, -v l="$label" -v w="$w" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
            $1 == l && $2 == w && $(col["rps"]) > 0 && $(col["flag"]) == "" { found = 1 }
            END { exit !found }' "$OUT/right/results.csv" ||
            { cat "$OUT/right/results.csv"; fail "no clean $w row labelled $label"; }
    done
    grep -q "^| $label |" "$OUT/right/report.md" || fail "report.md has no row for $label"
done
echo "test_bench: a layer and its variant are measured in one run, each under its own label"
