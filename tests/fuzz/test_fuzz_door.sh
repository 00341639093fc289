#!/bin/sh
# budget: 40
# tests/fuzz/test_fuzz_door.sh -- a short libFuzzer run (10 s; 60 s under
# make test-long) of the local door's message decoders
# (raftd/host/doormsg.c), build/fuzz/fuzz_door. The seed corpus is written
# by the real encoders (test_doormsg --write-seeds). `make fuzz` runs it
# longer.
exec sh "$(dirname "$0")/run_fuzz.sh" fuzz_door 10 --write 3 \
    build/tests/unit/test_doormsg --write-seeds
