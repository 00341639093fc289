#!/bin/sh
# budget: 60
# tests/fuzz/test_fuzz_image_rx.sh -- a short libFuzzer run (8 s; 60 s
# under make test-long) of the chunk checks of an image fetch
# (raftd/host/image_rx.c), build/fuzz/fuzz_image_rx: a hostile peer's garbage,
# truncated, oversize, out-of-order and lying chunks. Seeded with honest
# streams of test_image's valid images (seed_image_rx.sh). `make fuzz`
# runs it longer.
exec sh "$(dirname "$0")/run_fuzz.sh" fuzz_image_rx 8 --write 3 \
    sh tests/fuzz/seed_image_rx.sh build/tests/unit/test_image
