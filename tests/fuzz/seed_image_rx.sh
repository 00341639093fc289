#!/bin/sh
# tests/fuzz/seed_image_rx.sh TEST_IMAGE OUTDIR -- writes the seed corpus of
# build/fuzz/fuzz_image_rx into OUTDIR: each valid image that TEST_IMAGE
# --write-seeds writes, wrapped as honest framed-mode inputs (mode byte 1,
# then the cut sizes, no lie, then the image) cut three ways. Not a test.
set -eu
SEEDER=$1
OUT=$2
[ -x "$SEEDER" ] || { echo "missing $SEEDER: run make test" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/seed_image_rx.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
"$SEEDER" --write-seeds "$TMP"
mkdir -p "$OUT"
i=0
for f in "$TMP"/*; do
    i=$((i + 1))
    # one chunk; chunks of 1+3*97 and 1+7*97 bytes; of 1 and 98 bytes
    { printf '\001\000\000'; cat "$f"; } >"$OUT/whole-$i"
    { printf '\001\002\003\007\000'; cat "$f"; } >"$OUT/cut-$i"
    { printf '\001\002\000\001\000'; cat "$f"; } >"$OUT/small-$i"
done
[ "$i" -ge 1 ] || { echo "no seed images written" >&2; exit 1; }
