#!/bin/sh
# budget: 60
# tests/fuzz/test_fuzz_walfmt.sh -- a short libFuzzer run (10 s; 60 s under
# make test-long) of walfmt's decoders and hash index over arbitrary
# wal-index content, build/fuzz/fuzz_walfmt. `make fuzz` runs it longer.
exec sh "$(dirname "$0")/run_fuzz.sh" fuzz_walfmt 10
