#!/bin/sh
# budget: 30
# tests/fuzz/test_fuzz_identity.sh -- a short libFuzzer run (6 s; 60 s
# under make test-long) of the identity-file parser (raftd/host/identity.c),
# build/fuzz/fuzz_identity, from the committed seeds. `make fuzz` runs it
# longer.
set -eu
ROOT=${RL_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
SECS=6
[ "${RL_LONG:-0}" = 1 ] && SECS=60
sh "$ROOT/tests/fuzz/run_fuzz.sh" fuzz_identity "$SECS" \
    "$ROOT/tests/fuzz/seeds/fuzz_identity"
