#!/bin/sh
# budget: 60
# tests/fuzz/test_fuzz_image_rx.sh -- a short libFuzzer run (8 s; 60 s
# under make test-long) of the chunk checks of an image fetch
# (raftd/host/image_rx.c), build/fuzz/fuzz_image_rx: a hostile peer's garbage,
# truncated, oversize, out-of-order and lying chunks. Seeded with honest
# streams of test_image's valid images (seed_image_rx.sh). `make fuzz`
# runs it longer.
set -eu
ROOT=${RL_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
SEEDER="$ROOT/build/tests/unit/test_image"
SECS=8
[ "${RL_LONG:-0}" = 1 ] && SECS=60
[ -x "$SEEDER" ] || { echo "missing $SEEDER: run make test" >&2; exit 1; }
SEEDS=$(mktemp -d "${TMPDIR:-/tmp}/fuzz_image_rx_seeds.XXXXXX")
trap 'rm -rf "$SEEDS"' EXIT INT TERM
sh "$ROOT/tests/fuzz/seed_image_rx.sh" "$SEEDER" "$SEEDS"
n=$(ls "$SEEDS" | wc -l)
[ "$n" -ge 3 ] || { echo "seed corpus not written ($n files)" >&2; exit 1; }
sh "$ROOT/tests/fuzz/run_fuzz.sh" fuzz_image_rx "$SECS" "$SEEDS"
