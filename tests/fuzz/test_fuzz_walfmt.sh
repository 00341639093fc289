#!/bin/sh
# budget: 60
# tests/fuzz/test_fuzz_walfmt.sh -- a short libFuzzer run (10 s; 60 s under
# make test-long) of walfmt's decoders and hash index over arbitrary
# wal-index content, build/fuzz/fuzz_walfmt. `make fuzz` runs it longer.
set -eu
ROOT=${RL_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
SECS=10
[ "${RL_LONG:-0}" = 1 ] && SECS=60
sh "$ROOT/tests/fuzz/run_fuzz.sh" fuzz_walfmt "$SECS"
