#!/bin/sh
# budget: 60
# tests/fuzz/test_fuzz_entry.sh -- a short libFuzzer run (15 s; 60 s under
# make test-long) of the decoders of raftd/node/entry.c (log entries, node
# metadata, snapshot manifests), build/fuzz/fuzz_entry. The seed corpus is
# written by the real encoders (test_entry --write-seeds). `make fuzz` runs
# it longer.
exec sh "$(dirname "$0")/run_fuzz.sh" fuzz_entry 15 --write 7 \
    build/tests/unit/test_entry --write-seeds
