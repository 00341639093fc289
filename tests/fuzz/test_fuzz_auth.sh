#!/bin/sh
# budget: 30
# tests/fuzz/test_fuzz_auth.sh -- a short libFuzzer run (10 s; 60 s under
# make test-long) of the auth-file parser and verdicts (raftd/api/auth.c),
# build/fuzz/fuzz_auth, from the committed seeds. `make fuzz` runs it
# longer.
exec sh "$(dirname "$0")/run_fuzz.sh" fuzz_auth 10 \
    --dir tests/fuzz/seeds/fuzz_auth
