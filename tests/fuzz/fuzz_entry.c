/*
** tests/fuzz/fuzz_entry.c -- libFuzzer target for the decoders of
** raftd/node/entry.c (entries, metadata, manifests).
**
** Raw input is fed to each decoder. Because a checksum guards every entry
** and manifest, random bytes rarely get past it, so the input is also used
** as the fields and payload of a valid entry that is encoded, damaged at an
** input-chosen offset, optionally re-sealed, and decoded again: the
** decoder's deeper checks then see near-valid data. A decoder that accepts
** must report fields consistent with the buffer, and a valid entry must
** round-trip exactly.
*/
#include "entry.h"
#include "../unit/lib/entry_seal.h"

#include <stdlib.h>
#include <string.h>

static void check(int ok)
{
    if (!ok)
        abort();
}

/* A valid manifest built from the input, damaged at an input-chosen byte,
** re-sealed (so the checks behind the checksum run), cut, decoded. */
static void fuzz_manifest(const uint8_t *data, size_t size)
{
    if (size < 16)
        return;
    struct rl_meta mem[3];
    unsigned nm = data[8] % 4;
    size_t off = 16;
    for (unsigned i = 0; i < nm; i++) {
        char s[3][16];
        for (int k = 0; k < 3; k++) {
            size_t n = off < size ? data[off] % 15 : 0;
            off++;
            size_t j = 0;
            for (; j < n && off < size; j++, off++)
                s[k][j] = (char)(data[off] ? data[off] : 'x');
            s[k][j] = 0;
        }
        if (rl_meta_set(&mem[i], i + 1, s[0][0] ? s[0] : "n",
                        s[1][0] ? s[1] : "a", s[2]) != 0)
            return;
    }
    struct rl_manifest m = {.S = rl_get_le64(data) | 2,
                            .A = 1,
                            .L = 1,
                            .db_size = data[9],
                            .n_members = nm,
                            .members = mem};
    void *buf;
    size_t len;
    check(rl_manifest_encode(&m, malloc, &buf, &len) == 0);
    struct rl_manifest d;
    char err[256];
    check(rl_manifest_decode(buf, len, &d, err, sizeof err) == 0);
    check(d.n_members == nm && d.S == m.S);
    rl_manifest_clear(&d);
    uint8_t *p = buf;
    p[(data[10] | (data[11] << 8)) % len] ^= data[12] ? data[12] : 1;
    if (data[13] & 1) {
        rl_test_manifest_reseal(p, len);
    }
    size_t cut = (data[13] & 2) ? len - (data[14] % (len + 1)) : len;
    uint8_t *c = malloc(cut ? cut : 1);
    memcpy(c, p, cut);
    if (rl_manifest_decode(c, cut, &d, err, sizeof err) == 0) {
        void *again;
        size_t alen;
        check(rl_manifest_encode(&d, malloc, &again, &alen) == 0);
        check(alen == cut && memcmp(again, c, cut) == 0);
        free(again);
        rl_manifest_clear(&d);
    } else {
        check(err[0] != 0 && d.members == NULL);
    }
    free(c);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    struct rl_entry e;
    if (rl_entry_decode(data, size, &e, err, sizeof err) == 0) {
        check(e.payload >= data && e.payload + e.h.payload_len <= data + size);
        check(rl_entry_size(e.h.payload_len) == size);
    }
    struct rl_meta m;
    if (rl_meta_decode(data, size, &m, err, sizeof err) == 0) {
        uint8_t out[1024];
        size_t n = rl_meta_encode(&m, out, sizeof out);
        check(n == size && memcmp(out, data, size) == 0);
    }
    struct rl_manifest man;
    if (rl_manifest_decode(data, size, &man, err, sizeof err) == 0) {
        void *buf;
        size_t len;
        check(rl_manifest_encode(&man, malloc, &buf, &len) == 0);
        check(len == size && memcmp(buf, data, size) == 0);
        free(buf);
        rl_manifest_clear(&man);
    }

    /* Structured: 24 bytes of control, the rest is payload. */
    if (size < 24)
        return 0;
    struct rl_entry_hdr h = {.kind = (uint8_t)(1 + data[0] % RL_ENTRY_KIND_MAX),
                             .base = rl_get_le64(data + 8),
                             .origin_node = rl_get_le64(data + 16),
                             .origin_txn = data[1],
                             .origin_pid = data[2],
                             .payload_len = size - 24};
    size_t len = rl_entry_size(h.payload_len);
    uint8_t *b = malloc(len);
    check(rl_entry_encode(&h, data + 24, b, len) == 0);
    check(rl_entry_decode(b, len, &e, err, sizeof err) == 0);
    check(e.h.kind == h.kind && e.h.base == h.base &&
          e.h.payload_len == h.payload_len &&
          memcmp(e.payload, data + 24, h.payload_len) == 0);
    /* Damage one byte and maybe cut the buffer, then decode a copy of
    ** exactly the remaining length so ASan sees any overread. */
    size_t at = (size_t)(data[3] | (data[4] << 8)) % len;
    b[at] ^= data[5] ? data[5] : 1;
    if (data[6] & 1)
        rl_test_entry_reseal(b, len);
    size_t cut = (data[6] & 2) ? len - (data[7] % (len + 1)) : len;
    uint8_t *c = malloc(cut ? cut : 1);
    memcpy(c, b, cut);
    int rc = rl_entry_decode(c, cut, &e, err, sizeof err);
    if (rc == 0) {
        /* Accepted after damage: only possible when the damage was re-sealed
        ** and hit a field with no constraint (base, origin, payload). */
        check(data[6] & 1);
        check(cut == len);
    } else {
        check(err[0] != 0);
    }
    free(c);
    free(b);
    fuzz_manifest(data, size);
    return 0;
}
