#!/bin/sh
# budget: 30
# tests/fuzz/test_fuzz_auth.sh -- a short libFuzzer run (10 s; 60 s under
# make test-long) of the auth-file parser and verdicts (raftd/api/auth.c),
# build/fuzz/fuzz_auth, from the committed seeds. `make fuzz` runs it
# longer.
set -eu
ROOT=${RL_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
SECS=10
[ "${RL_LONG:-0}" = 1 ] && SECS=60
sh "$ROOT/tests/fuzz/run_fuzz.sh" fuzz_auth "$SECS" \
    "$ROOT/tests/fuzz/seeds/fuzz_auth"
