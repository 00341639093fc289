#!/bin/sh
# tests/fuzz/run_fuzz.sh NAME SECONDS [SEEDS] -- the one runner of the
# test_fuzz_*.sh scripts (not a test itself): runs build/fuzz/NAME (a
# libFuzzer binary built with clang -fsanitize=fuzzer,address,undefined)
# for SECONDS (60 under make test-long, RL_LONG=1) on a fresh corpus, in a
# temporary directory removed at exit. SEEDS, if given, is either
#   --dir DIR                 the committed seed corpus DIR (relative to
#                             the checkout), or
#   --write MIN CMD [ARG...]  a corpus that `CMD ARG... OUTDIR` writes
#                             (the real encoders); fewer than MIN files
#                             written fails the run.
# Fails on any crash, sanitizer report or broken invariant (artifact
# written), or if the run did too little. Must never leave files behind.
set -eu
NAME=$1
SECS=$2
shift 2
[ "${RL_LONG:-0}" = 1 ] && SECS=60
ROOT=${RL_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$ROOT"
FUZZ="$ROOT/build/fuzz/$NAME"
if [ ! -x "$FUZZ" ]; then
    echo "missing $FUZZ: run make test (or make $FUZZ)" >&2
    exit 1
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/$NAME.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
mkdir "$TMP/corpus" "$TMP/art"
SEEDS=
case "${1:-}" in
"") ;;
--dir)
    SEEDS="$ROOT/$2"
    [ -d "$SEEDS" ] || { echo "missing seed corpus $SEEDS" >&2; exit 1; }
    ;;
--write)
    MIN=$2
    shift 2
    # The seeder is a build product (a unit test): say which one is missing.
    case "$1" in
    */*) [ -x "$1" ] || { echo "missing $1: run make test" >&2; exit 1; } ;;
    esac
    SEEDS="$TMP/seeds"
    mkdir "$SEEDS"
    "$@" "$SEEDS"
    n=$(ls "$SEEDS" | wc -l)
    [ "$n" -ge "$MIN" ] || {
        echo "seed corpus not written ($n files, want $MIN)" >&2
        exit 1
    }
    ;;
*)
    echo "run_fuzz.sh: unknown seeds option $1" >&2
    exit 2
    ;;
esac
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
