/*
** tests/unit/test_entry.c -- raftd/node/entry.c: entries, metadata and
** manifests round-trip, and every malformed case is rejected with its own
** code and a message (never an out-of-bounds read: this also runs under
** ASan).
*/
#include "entry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/entry_seal.h"

/* Decode a private heap copy of exactly len bytes, so ASan catches any read
** past the end. */
static int decode_copy(const uint8_t *b, size_t len, struct rl_entry *e,
                       char *err)
{
    uint8_t *c = malloc(len ? len : 1);
    memcpy(c, b, len);
    int rc = rl_entry_decode(c, len, e, err, 200);
    free(c);
    return rc;
}

/* The header every entry of these tests carries. */
static struct rl_entry_hdr test_hdr(uint8_t kind, uint64_t plen)
{
    struct rl_entry_hdr h = {.kind = kind,
                             .base = 41,
                             .origin_node = 7,
                             .origin_txn = 99,
                             .origin_pid = 1234,
                             .payload_len = plen};
    return h;
}

static uint8_t *make(uint8_t kind, uint64_t plen, size_t *len)
{
    struct rl_entry_hdr h = test_hdr(kind, plen);
    uint8_t *payload = malloc(plen ? plen : 1);
    for (uint64_t i = 0; i < plen; i++)
        payload[i] = (uint8_t)(i * 7 + 1);
    *len = rl_entry_size(plen);
    uint8_t *out = malloc(*len);
    EXPECT(rl_entry_encode(&h, payload, out, *len) == 0);
    free(payload);
    return out;
}

static void test_roundtrip(void)
{
    for (uint64_t plen = 0; plen < 40; plen++) {
        for (uint8_t kind = 1; kind <= RL_ENTRY_KIND_MAX; kind++) {
            size_t len;
            uint8_t *b = make(kind, plen, &len);
            EXPECT(len % 8 == 0);
            EXPECT(len == RL_ENTRY_HDR_SIZE + ((plen + 7) / 8) * 8);
            struct rl_entry e;
            char err[200];
            EXPECT(rl_entry_decode(b, len, &e, err, sizeof err) == 0);
            EXPECT(e.h.kind == kind);
            EXPECT(e.h.base == 41 && e.h.origin_node == 7);
            EXPECT(e.h.origin_txn == 99 && e.h.origin_pid == 1234);
            EXPECT(e.h.payload_len == plen);
            for (uint64_t i = 0; i < plen; i++)
                EXPECT(e.payload[i] == (uint8_t)(i * 7 + 1));
            free(b);
        }
    }
}

static void expect(const uint8_t *b, size_t len, int code, const char *what)
{
    struct rl_entry e;
    char err[200] = "";
    int rc = decode_copy(b, len, &e, err);
    if (rc != code)
        fprintf(stderr, "%s: expected code %d, got %d (%s)\n", what, code, rc,
                err);
    EXPECT(rc == code);
    EXPECT(err[0] != 0);
    printf("rejected %-28s -> %s\n", what, err);
}

static void test_malformed(void)
{
    size_t len;
    uint8_t *b = make(RL_ENTRY_TXN, 13, &len);
    uint8_t *c = malloc(len);

    /* Every truncation is rejected. */
    for (size_t n = 0; n < len; n++) {
        struct rl_entry e;
        EXPECT(decode_copy(b, n, &e, NULL) != 0);
    }
    expect(b, 10, RL_EFMT_SHORT, "short header");
    expect(b, len - 8, RL_EFMT_LENGTH, "truncated payload");
    EXPECT(rl_entry_decode(NULL, 0, NULL, NULL, 0) == RL_EFMT_SHORT);

    /* One byte of a valid entry changed (resealed unless the checksum is
    ** what must catch it), and the code it is refused with. */
    static const struct {
        int off; /* < 0: from the end */
        uint8_t val;
        int flip;   /* 1: xor val in; 0: set the byte to val */
        int reseal; /* recompute the header checksum after */
        int code;
        const char *what;
    } bad[] = {
        {0, 1, 1, 0, RL_EFMT_MAGIC, "bad magic"},
        {4, 2, 0, 1, RL_EFMT_VERSION, "bad version"},
        {6, 0, 0, 1, RL_EFMT_KIND, "kind 0"},
        {6, RL_ENTRY_KIND_MAX + 1, 0, 1, RL_EFMT_KIND, "kind too big"},
        {7, 1, 0, 1, RL_EFMT_FLAGS, "flags set"},
        {37, 1, 0, 1, RL_EFMT_FLAGS, "reserved set"},
        /* 21 pads to 24, the buffer holds 16 */
        {40, 21, 0, 1, RL_EFMT_LENGTH, "length too big"},
        /* 5 pads to 8, the buffer holds 16 */
        {40, 5, 0, 1, RL_EFMT_LENGTH, "length too small"},
        /* absurd length: no overflow in the comparison */
        {47, 0x80, 0, 1, RL_EFMT_LENGTH, "length huge"},
        /* a padding byte (13 bytes of payload in 16) */
        {-1, 1, 0, 1, RL_EFMT_PADDING, "nonzero padding"},
        {RL_ENTRY_HDR_SIZE + 2, 4, 1, 0, RL_EFMT_CHECKSUM, "payload bit flip"},
        {9, 4, 1, 0, RL_EFMT_CHECKSUM, "base bit flip"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        size_t at =
            bad[k].off < 0 ? len - (size_t)-bad[k].off : (size_t)bad[k].off;
        memcpy(c, b, len);
        c[at] = bad[k].flip ? (uint8_t)(c[at] ^ bad[k].val) : bad[k].val;
        if (bad[k].reseal)
            rl_test_entry_reseal(c, len);
        expect(c, len, bad[k].code, bad[k].what);
    }

    for (size_t i = 0; i < len; i++) {
        memcpy(c, b, len);
        c[i] ^= 0x10;
        struct rl_entry e;
        EXPECT(decode_copy(c, len, &e, NULL) != 0);
    }

    /* Encoder refuses bad arguments. */
    struct rl_entry_hdr h = {.kind = 9, .payload_len = 0};
    EXPECT(rl_entry_encode(&h, NULL, c, len) == RL_EFMT_ARG);
    h.kind = RL_ENTRY_TXN;
    h.payload_len = 100;
    EXPECT(rl_entry_encode(&h, c, c, len) == RL_EFMT_ARG); /* out too small */
    EXPECT(rl_entry_size(RL_ENTRY_MAX_PAYLOAD + 1) == 0);
    free(c);
    free(b);
}

/* Sealing a payload written in place gives the bytes encode writes, over
** whatever the buffer held around it (raft_malloc'd memory is not zeroed). */
static void test_seal(void)
{
    for (uint64_t plen = 0; plen < 40; plen++) {
        size_t len;
        uint8_t *want = make(RL_ENTRY_TXN, plen, &len);
        uint8_t *b = malloc(len);
        memset(b, 0xa5, len);
        for (uint64_t i = 0; i < plen; i++)
            b[RL_ENTRY_HDR_SIZE + i] = (uint8_t)(i * 7 + 1);
        struct rl_entry_hdr h = test_hdr(RL_ENTRY_TXN, plen);
        EXPECT(rl_entry_seal(&h, b, len) == 0);
        EXPECT(memcmp(b, want, len) == 0);
        EXPECT(rl_entry_decode(b, len, NULL, NULL, 0) == 0);
        EXPECT(rl_entry_seal(&h, b, len - 1) == RL_EFMT_ARG); /* too small */
        h.kind = 0;
        EXPECT(rl_entry_seal(&h, b, len) == RL_EFMT_ARG);
        h.kind = RL_ENTRY_TXN;
        h.flags = 1;
        EXPECT(rl_entry_seal(&h, b, len) == RL_EFMT_ARG);
        EXPECT(memcmp(b, want, len) == 0); /* a refusal writes nothing */
        free(b);
        free(want);
    }
}

static void test_meta(void)
{
    struct rl_meta m, d;
    EXPECT(rl_meta_set(&m, 3, "node-c", "127.0.0.1:9003", "127.0.0.1:7003") ==
           0);
    uint8_t buf[1024];
    size_t n = rl_meta_encode(&m, buf, sizeof buf);
    EXPECT(n == rl_meta_size(&m) && n > 0);
    char err[200];
    EXPECT(rl_meta_decode(buf, n, &d, err, sizeof err) == 0);
    EXPECT(d.raft_id == 3 && strcmp(d.node_id, "node-c") == 0);
    EXPECT(strcmp(d.raft_addr, "127.0.0.1:9003") == 0);
    EXPECT(strcmp(d.grpc_addr, "127.0.0.1:7003") == 0);
    for (size_t k = 0; k < n; k++)
        EXPECT(rl_meta_decode(buf, k, &d, err, sizeof err) != 0);
    EXPECT(rl_meta_decode(buf, n + 1, &d, err, sizeof err) == RL_EFMT_LENGTH);
    uint8_t c[1024];
    memcpy(c, buf, n);
    c[8] = 0; /* node id length 0 */
    c[9] = 0;
    EXPECT(rl_meta_decode(c, n, &d, err, sizeof err) != 0);
    memcpy(c, buf, n);
    c[11] = 0; /* NUL inside node id */
    EXPECT(rl_meta_decode(c, n, &d, err, sizeof err) == RL_EFMT_STRING);
    memset(c, 0, 8);
    EXPECT(rl_meta_decode(c, n, &d, err, sizeof err) == RL_EFMT_ARG);
    /* Empty gRPC address is allowed; empty node id is not. */
    EXPECT(rl_meta_set(&m, 3, "x", "a:1", "") == 0);
    EXPECT(rl_meta_set(&m, 3, "", "a:1", "") != 0);
    EXPECT(rl_meta_set(&m, 0, "x", "a:1", "") != 0);
    char longs[400];
    memset(longs, 'a', sizeof longs - 1);
    longs[399] = 0;
    EXPECT(rl_meta_set(&m, 3, longs, "a:1", "") == RL_EFMT_STRING);
}

/* Three members: 1 "a", 2 "bb" (no gRPC address), 3 "ccc". */
static void members(struct rl_meta mem[3])
{
    rl_meta_set(&mem[0], 1, "a", "127.0.0.1:1", "127.0.0.1:11");
    rl_meta_set(&mem[1], 2, "bb", "127.0.0.1:2", "");
    rl_meta_set(&mem[2], 3, "ccc", "127.0.0.1:3", "h:3");
}

/* A manifest of mem[0..n) at S, A, L with a 4096-byte database, encoded
** into *buf (malloc). Returns rl_manifest_encode's code. */
static int encode_manifest(struct rl_meta *mem, uint32_t n, uint64_t S,
                           uint64_t A, uint64_t L, void **buf, size_t *len)
{
    struct rl_manifest m = {.S = S,
                            .A = A,
                            .L = L,
                            .db_size = 4096,
                            .n_members = n,
                            .members = mem};
    return rl_manifest_encode(&m, malloc, buf, len);
}

static void test_manifest(void)
{
    struct rl_meta mem[3];
    members(mem);
    void *buf;
    size_t len;
    EXPECT(encode_manifest(mem, 3, 100, 98, 97, &buf, &len) == 0);
    EXPECT(len % 8 == 0);
    struct rl_manifest d;
    char err[200];
    EXPECT(rl_manifest_decode(buf, len, &d, err, sizeof err) == 0);
    EXPECT(d.S == 100 && d.A == 98 && d.L == 97 && d.db_size == 4096 &&
           d.n_members == 3);
    EXPECT(strcmp(d.members[1].node_id, "bb") == 0);
    EXPECT(strcmp(d.members[2].grpc_addr, "h:3") == 0);
    rl_manifest_clear(&d);
    uint8_t *b = buf;
    for (size_t k = 0; k < len; k++) {
        uint8_t *c = malloc(len);
        memcpy(c, b, len);
        c[k] ^= 0x01;
        EXPECT(rl_manifest_decode(c, len, &d, err, sizeof err) != 0);
        EXPECT(d.members == NULL);
        EXPECT(rl_manifest_decode(c, k, &d, err, sizeof err) != 0);
        free(c);
    }
    free(buf);
    struct rl_manifest bad = {.S = 3, .A = 1, .L = 2};
    EXPECT(rl_manifest_encode(&bad, malloc, &buf, &len) == RL_EFMT_ARG);
    struct rl_manifest empty = {.S = 5, .A = 4, .L = 0};
    EXPECT(rl_manifest_encode(&empty, malloc, &buf, &len) == 0);
    EXPECT(rl_manifest_decode(buf, len, &d, err, sizeof err) == 0);
    EXPECT(d.S == 5 && d.n_members == 0);
    rl_manifest_clear(&d);
    free(buf);
}

/* Write valid encodings (entries of each kind, metadata, manifests) into
** dir as a seed corpus for tests/fuzz/fuzz_entry.c. */
static int write_seeds(const char *dir)
{
    int n = 0;
    char path[512];
    for (uint8_t kind = 1; kind <= RL_ENTRY_KIND_MAX; kind++) {
        size_t len;
        uint8_t *b = make(kind, (uint64_t)kind * 5, &len);
        snprintf(path, sizeof path, "%s/entry-%d", dir, kind);
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(b, 1, len, f) != len)
            return -1;
        fclose(f);
        free(b);
        n++;
    }
    struct rl_meta mem[3];
    members(mem);
    uint8_t mb[1024];
    size_t ml = rl_meta_encode(&mem[0], mb, sizeof mb);
    snprintf(path, sizeof path, "%s/meta", dir);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(mb, 1, ml, f) != ml)
        return -1;
    fclose(f);
    n++;
    void *buf;
    size_t len;
    if (encode_manifest(mem, 2, 9, 8, 7, &buf, &len) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/manifest", dir);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, len, f) != len)
        return -1;
    fclose(f);
    free(buf);
    n++;
    printf("wrote %d seeds to %s\n", n, dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
        return write_seeds(argv[2]) == 0 ? 0 : 1;
    test_roundtrip();
    test_malformed();
    test_seal();
    test_meta();
    test_manifest();
    return rl_check_report("test_entry");
}
