#!/bin/sh
# budget: 60
# tests/fuzz/test_fuzz_entry.sh -- a short libFuzzer run (15 s) of the
# decoders of raftd/entry.c; `make fuzz` runs them longer. Fails if the
# fuzzer finds a crash, a leak or a sanitizer report, or if the target is
# missing (never skipped).
set -eu
BIN="${RL_BUILD:-build}/fuzz/fuzz_entry"
if [ ! -x "$BIN" ]; then
    echo "missing fuzz target $BIN (make unit-bins builds it)" >&2
    exit 1
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT INT TERM
cd "$WORK"
mkdir corpus
rc=0
"$BIN" -max_total_time="${RL_FUZZ_SECONDS:-15}" -rss_limit_mb=2048 \
    -print_final_stats=1 corpus >fuzz.log 2>&1 || rc=$?
tail -15 fuzz.log
if [ "$rc" != 0 ]; then
    echo "fuzzer exited $rc: it found a failing input (see above)" >&2
    grep -A30 -m1 'ERROR\|==ERROR\|runtime error\|deadly signal' fuzz.log >&2 || true
    exit 1
fi
echo "fuzz_entry: no failure found in ${RL_FUZZ_SECONDS:-15} s"
