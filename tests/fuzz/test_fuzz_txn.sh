#!/bin/sh
# budget: 60
# tests/fuzz/test_fuzz_txn.sh -- a short libFuzzer run (15 s; 60 s under
# make test-long) of the transaction-record decoder, build/fuzz/fuzz_txn.
# The seed corpus is written by the real encoder (test_txn --write-seeds).
# `make fuzz` runs it longer.
exec sh "$(dirname "$0")/run_fuzz.sh" fuzz_txn 15 --write 4 \
    build/tests/unit/test_txn --write-seeds
