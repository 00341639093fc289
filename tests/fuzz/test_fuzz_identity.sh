#!/bin/sh
# budget: 30
# tests/fuzz/test_fuzz_identity.sh -- a short libFuzzer run (6 s; 60 s
# under make test-long) of the identity-file parser (raftd/host/identity.c),
# build/fuzz/fuzz_identity, from the committed seeds. `make fuzz` runs it
# longer.
exec sh "$(dirname "$0")/run_fuzz.sh" fuzz_identity 6 \
    --dir tests/fuzz/seeds/fuzz_identity
