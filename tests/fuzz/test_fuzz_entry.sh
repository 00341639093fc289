#!/bin/sh
# budget: 60
# tests/fuzz/test_fuzz_entry.sh -- a short libFuzzer run (15 s; 60 s under
# make test-long) of the decoders of raftd/node/entry.c (log entries, node
# metadata, snapshot manifests), build/fuzz/fuzz_entry. The seed corpus is
# written by the real encoders (test_entry --write-seeds). `make fuzz` runs
# it longer.
set -eu
ROOT=${RL_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
SEEDER="$ROOT/build/tests/unit/test_entry"
SECS=15
[ "${RL_LONG:-0}" = 1 ] && SECS=60
[ -x "$SEEDER" ] || { echo "missing $SEEDER: run make test" >&2; exit 1; }
SEEDS=$(mktemp -d "${TMPDIR:-/tmp}/fuzz_entry_seeds.XXXXXX")
trap 'rm -rf "$SEEDS"' EXIT INT TERM
"$SEEDER" --write-seeds "$SEEDS"
n=$(ls "$SEEDS" | wc -l)
[ "$n" -ge 7 ] || { echo "seed corpus not written ($n files)" >&2; exit 1; }
sh "$ROOT/tests/fuzz/run_fuzz.sh" fuzz_entry "$SECS" "$SEEDS"
