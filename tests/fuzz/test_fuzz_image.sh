#!/bin/sh
# budget: 60
# tests/fuzz/test_fuzz_image.sh -- a short libFuzzer run (15 s; 60 s under
# make test-long) of the database image checker, build/fuzz/fuzz_image.
# The seed corpus is written by the unit test's encoder (test_image
# --write-seeds). `make fuzz` runs it longer.
exec sh "$(dirname "$0")/run_fuzz.sh" fuzz_image 15 --write 4 \
    build/tests/unit/test_image --write-seeds
