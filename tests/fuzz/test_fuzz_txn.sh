#!/bin/sh
# budget: 60
# tests/fuzz/test_fuzz_txn.sh -- a short libFuzzer run (15 s, 60 s under
# make test-long) of the transaction-record decoder, build/fuzz/fuzz_txn
# (vfs/module.mk builds it with clang -fsanitize=fuzzer,address,undefined).
# The seed corpus is written by the real encoder (test_txn --write-seeds).
# Fails if the fuzzer finds a crash, a sanitizer report or a broken
# invariant, or if any artifact is missing. `make fuzz` runs longer.
set -eu
ROOT=${RL_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
FUZZ="$ROOT/build/fuzz/fuzz_txn"
SEEDER="$ROOT/build/tests/unit/test_txn"
SECS=15
[ "${RL_LONG:-0}" = 1 ] && SECS=60
for f in "$FUZZ" "$SEEDER"; do
    if [ ! -x "$f" ]; then
        echo "missing $f: run make test (or make $f)" >&2
        exit 1
    fi
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fuzz_txn.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
mkdir "$TMP/corpus" "$TMP/seeds" "$TMP/art"
"$SEEDER" --write-seeds "$TMP/seeds"
n=$(ls "$TMP/seeds" | wc -l)
[ "$n" -ge 4 ] || { echo "seed corpus not written ($n files)" >&2; exit 1; }
# ASAN_OPTIONS from the runner would not hurt, but be explicit: stop at the
# first error and make it fail the test.
rc=0
ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
"$FUZZ" -max_total_time=$SECS -max_len=12000 -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$TMP/art/" \
    "$TMP/corpus" "$TMP/seeds" >"$TMP/log" 2>&1 || rc=$?
tail -n 25 "$TMP/log"
if [ "$rc" != 0 ] || [ -n "$(ls "$TMP/art")" ]; then
    echo "fuzz_txn failed (exit $rc); artifacts: $(ls "$TMP/art")" >&2
    for a in "$TMP"/art/*; do [ -f "$a" ] && od -A d -t x1 "$a" | head -20; done
    exit 1
fi
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/log")
echo "fuzz_txn: $runs executions in ${SECS}s, no crash"
[ "${runs:-0}" -gt 1000 ] || { echo "too few executions" >&2; exit 1; }
