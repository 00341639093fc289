#!/bin/sh
# tests/fuzz/run_fuzz.sh NAME SECONDS [SEED_DIR] -- runs build/fuzz/NAME (a
# libFuzzer binary built with clang -fsanitize=fuzzer,address,undefined)
# for SECONDS on a fresh corpus (seeded from SEED_DIR if given), in a
# temporary directory removed at exit. Fails on any crash, sanitizer report
# or broken invariant (artifact written), or if the run did too little.
# Used by the test_fuzz_*.sh scripts; not a test itself.
set -eu
NAME=$1
SECS=$2
SEEDS=${3:-}
ROOT=${RL_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
FUZZ="$ROOT/build/fuzz/$NAME"
if [ ! -x "$FUZZ" ]; then
    echo "missing $FUZZ: run make test (or make $FUZZ)" >&2
    exit 1
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/$NAME.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
mkdir "$TMP/corpus" "$TMP/art"
rc=0
# Stop at the first error and make it fail the run.
ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
"$FUZZ" -max_total_time="$SECS" -max_len=12000 -timeout=10 \
    -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$TMP/art/" \
    "$TMP/corpus" $SEEDS >"$TMP/log" 2>&1 || rc=$?
tail -n 12 "$TMP/log"
if [ "$rc" != 0 ] || [ -n "$(ls "$TMP/art")" ]; then
    echo "$NAME failed (exit $rc); artifacts: $(ls "$TMP/art")" >&2
    for a in "$TMP"/art/*; do
        [ -f "$a" ] && od -A d -t x1 "$a" | head -20
    done
    exit 1
fi
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/log")
echo "$NAME: ${runs:-0} executions in ${SECS}s, no crash"
if [ "${runs:-0}" -lt 1000 ]; then
    echo "$NAME: too few executions" >&2
    exit 1
fi
