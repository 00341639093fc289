/*
** tests/unit/test_txn.c -- the transaction record (vfs/txn.c): CRC-32C
** vectors, validation, encode/decode round trips (zero copy), and rejection
** of every malformed form with a message, including truncation at every byte
** position. Every decode input is an exact-size heap copy, so the ASan build
** of this test (make test runs both) catches any read past the end.
**
**   test_txn                      run the tests
**   test_txn --write-seeds DIR    write a seed corpus for tests/fuzz/fuzz_txn
*/
#include "txn.h"
#include "bytes.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/seeds.h"
#include "lib/mem.h"
#include "lib/rng.h"

/* Deterministic, so a failure reproduces (tests/unit/lib/rng.h). */
static struct rl_rng rng = {0x9e3779b97f4a7c15ull};

static uint32_t rnd(void)
{
    return rl_rng_u32(&rng);
}

/* A test transaction: n pages of page_size random bytes with the given
** page numbers; data owned by t->owned. */
static void make_txn(rl_txn *t, uint32_t page_size, uint32_t db_pages,
                     uint32_t n, const uint32_t *pgnos)
{
    uint8_t *data = rl_xmalloc((size_t)n * page_size);
    uint32_t i;
    size_t k;
    for (k = 0; k < (size_t)n * page_size; k++)
        data[k] = (uint8_t)rnd();
    t->page_size = page_size;
    t->db_pages = db_pages;
    t->n_pages = n;
    t->pages = rl_xmalloc((size_t)n * sizeof(rl_page));
    t->owned = data;
    for (i = 0; i < n; i++) {
        t->pages[i].pgno = pgnos ? pgnos[i] : i + 1;
        t->pages[i].data = data + (size_t)i * page_size;
    }
}

static uint8_t *encode(const rl_txn *t, size_t *len)
{
    uint8_t *buf;
    int rc;
    *len = rl_txn_encoded_size(t);
    buf = rl_xmalloc(*len);
    rc = rl_txn_encode(t, buf, *len);
    CHECK(rc == RL_TXN_OK, "encode rc %d", rc);
    return buf;
}

static void reseal(uint8_t *buf, size_t len)
{
    rl_put_le32(buf + 28, rl_txn_checksum(buf, len));
}

/* Decodes an exact-size copy of buf and requires rejection with rc and a
** message containing want. */
static void expect_reject(const char *what, const uint8_t *buf, size_t len,
                          int want_rc, const char *want)
{
    uint8_t *copy = rl_xmemdup(buf, len);
    rl_txn t;
    char err[300] = "";
    int rc = rl_txn_decode(copy, len, &t, err, sizeof(err));
    CHECK(rc == want_rc, "%s: rc %d, want %d (%s)", what, rc, want_rc, err);
    CHECK(strstr(err, want) != NULL, "%s: message '%s' lacks '%s'", what, err,
          want);
    CHECK(t.pages == NULL && t.n_pages == 0 && t.owned == NULL,
          "%s: t not zeroed on error", what);
    free(copy);
}

static void expect_invalid(const char *what, const rl_txn *t, const char *want)
{
    char err[300] = "";
    uint8_t buf[8];
    int rc = rl_txn_validate(t, err, sizeof(err));
    CHECK(rc == RL_TXN_EINVAL, "%s: validate rc %d", what, rc);
    CHECK(strstr(err, want) != NULL, "%s: message '%s' lacks '%s'", what, err,
          want);
    /* encode refuses what validate refuses, before touching the buffer */
    CHECK(rl_txn_encode(t, buf, sizeof(buf)) == RL_TXN_EINVAL,
          "%s: encode accepted an invalid txn", what);
}

/* expect_invalid with one field of t set to v, then put back. */
static void expect_invalid_with(const char *what, rl_txn *t, uint32_t *field,
                                uint32_t v, const char *want)
{
    uint32_t keep = *field;
    *field = v;
    expect_invalid(what, t, want);
    *field = keep;
}

static void test_crc32c(void)
{
    static const char *digits = "123456789";
    uint8_t zeros[32], ones[32], inc[32], big[5000];
    size_t i, n;

    memset(zeros, 0, 32);
    memset(ones, 0xff, 32);
    for (i = 0; i < 32; i++)
        inc[i] = (uint8_t)i;
    /* RFC 3720 (iSCSI) B.4 vectors and the classic check value. */
    CHECK(rl_crc32c(0, digits, 9) == 0xe3069283u, "check value %08x",
          rl_crc32c(0, digits, 9));
    CHECK(rl_crc32c(0, zeros, 32) == 0x8a9136aau, "zeros");
    CHECK(rl_crc32c(0, ones, 32) == 0x62a8ab43u, "ones");
    CHECK(rl_crc32c(0, inc, 32) == 0x46dd794eu, "incrementing");
    CHECK(rl_crc32c_portable(0, digits, 9) == 0xe3069283u, "portable check");
    for (i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)rnd();
    /* The fast path equals the portable one at every length and alignment,
    ** and chaining equals one pass. */
    for (n = 0; n < 300; n++) {
        size_t off = n % 8;
        uint32_t a = rl_crc32c(0, big + off, n);
        CHECK(a == rl_crc32c_portable(0, big + off, n), "len %zu", n);
        CHECK(rl_crc32c(rl_crc32c(0, big, n / 3), big + n / 3, n - n / 3) ==
                  rl_crc32c(0, big, n),
              "chaining at %zu", n);
    }
    CHECK(rl_crc32c(0, big, sizeof(big)) ==
              rl_crc32c_portable(0, big, sizeof(big)),
          "long");
}

static void test_validate(void)
{
    rl_txn t;
    uint32_t pg[3] = {2, 5, 9};
    const uint8_t *keep;

    make_txn(&t, 1024, 9, 3, pg);
    CHECK(rl_txn_validate(&t, NULL, 0) == RL_TXN_OK, "valid txn");
    expect_invalid_with("page size 1000", &t, &t.page_size, 1000,
                        "page size 1000");
    expect_invalid_with("page size 256", &t, &t.page_size, 256,
                        "page size 256");
    expect_invalid_with("page size 128K", &t, &t.page_size, 131072,
                        "page size 131072");
    expect_invalid_with("no pages", &t, &t.n_pages, 0, "no pages");
    expect_invalid_with("pgno 0", &t, &t.pages[0].pgno, 0, "page number 0");
    expect_invalid_with("pgno > db_pages", &t, &t.db_pages, 8,
                        "beyond the database size");
    expect_invalid_with("duplicate", &t, &t.pages[1].pgno, 2,
                        "sorted ascending");
    expect_invalid_with("descending", &t, &t.pages[1].pgno, 1,
                        "sorted ascending");
    keep = t.pages[2].data;
    t.pages[2].data = NULL;
    expect_invalid("null data", &t, "no data");
    t.pages[2].data = keep;
    {
        rl_page *p = t.pages;
        t.pages = NULL;
        expect_invalid("null pages", &t, "no page array");
        t.pages = p;
    }
    CHECK(rl_txn_validate(NULL, NULL, 0) == RL_TXN_EINVAL, "NULL txn");
    CHECK(rl_txn_validate(&t, NULL, 0) == RL_TXN_OK, "restored txn");
    rl_txn_free(&t);
    CHECK(t.pages == NULL && t.owned == NULL, "free zeroes");
    rl_txn_free(&t); /* twice is harmless */
    rl_txn_free(NULL);
}

static void round_trip(uint32_t page_size, uint32_t db_pages, uint32_t n,
                       const uint32_t *pgnos)
{
    rl_txn t, d;
    size_t len, i;
    uint8_t *buf, *small;
    char err[300] = "";
    int rc;

    make_txn(&t, page_size, db_pages, n, pgnos);
    len = rl_txn_encoded_size(&t);
    CHECK(len == 32 + (size_t)n * (8 + page_size), "size %zu", len);
    CHECK(len % 8 == 0, "size multiple of 8");
    small = rl_xmalloc(len - 1);
    CHECK(rl_txn_encode(&t, small, len - 1) == RL_TXN_ESHORT, "short buffer");
    free(small);
    buf = encode(&t, &len);
    CHECK(memcmp(buf, "RLTX", 4) == 0, "magic");
    rc = rl_txn_decode(buf, len, &d, err, sizeof(err));
    CHECK(rc == RL_TXN_OK, "decode: %s", err);
    CHECK(d.page_size == page_size && d.db_pages == db_pages && d.n_pages == n,
          "header fields");
    CHECK(d.owned == NULL, "zero copy owns nothing");
    for (i = 0; i < n; i++) {
        CHECK(d.pages[i].pgno == t.pages[i].pgno, "pgno %zu", i);
        CHECK(d.pages[i].data == buf + 32 + 8 * (size_t)n + i * page_size,
              "page %zu points into the buffer", i);
        CHECK(memcmp(d.pages[i].data, t.pages[i].data, page_size) == 0,
              "page %zu data", i);
    }
    rl_txn_free(&d);
    rl_txn_free(&t);
    free(buf);
}

static void test_round_trips(void)
{
    static const uint32_t sizes[] = {512,  1024,  2048,  4096,
                                     8192, 16384, 32768, 65536};
    uint32_t sparse[5] = {1, 7, 8, 1000, 4000000000u};
    uint32_t *many;
    uint32_t i;
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        round_trip(sizes[i], 3, 3, NULL);
    round_trip(4096, 4000000000u, 5, sparse);
    round_trip(65536, 1, 1, NULL);
    /* a large one: 20000 pages of 512 bytes (10 MB) */
    many = rl_xmalloc(20000 * sizeof(uint32_t));
    for (i = 0; i < 20000; i++)
        many[i] = 3 * i + 2;
    round_trip(512, 70000, 20000, many);
    free(many);
}

/* One 32-bit field of a good record changed: where, to what, whether the
** record's checksum is recomputed, and the refusal expected. */
typedef struct mutation {
    const char *what;
    uint32_t off, val;
    int reseal;
    int rc;
    const char *msg;
} mutation;

static void test_malformed(void)
{
    static const mutation muts[] = {
        {"version 2", 4, 2, 1, RL_TXN_EFORMAT, "version 2"},
        {"version 0 unsealed", 4, 0, 0, RL_TXN_EFORMAT, "version 0"},
        {"flags", 20, 1, 1, RL_TXN_EFORMAT, "reserved"},
        {"reserved", 24, 0x100, 1, RL_TXN_EFORMAT, "reserved"},
        {"page size 513", 8, 513, 1, RL_TXN_EFORMAT, "page size 513"},
        {"page size 0", 8, 0, 0, RL_TXN_EFORMAT, "page size 0"},
        /* a valid page size that does not match the data: the length betrays it
         */
        {"page size 1024 on 512 data", 8, 1024, 1, RL_TXN_EFORMAT, "truncated"},
        {"page size 256", 8, 256, 1, RL_TXN_EFORMAT, "page size 256"},
        {"no pages", 16, 0, 1, RL_TXN_EFORMAT, "no pages"},
        {"n_pages too small", 16, 2, 1, RL_TXN_EFORMAT, "trailing"},
        {"n_pages huge", 16, 0xffffffffu, 1, RL_TXN_EFORMAT, "truncated"},
        /* semantic errors behind a good checksum */
        {"pgno 0", 32, 0, 1, RL_TXN_EINVAL, "page number 0"},
        {"pgno > db_pages", 32 + 16, 7, 1, RL_TXN_EINVAL,
         "beyond the database size"},
        {"db_pages shrunk", 12, 5, 1, RL_TXN_EINVAL,
         "beyond the database size"},
        {"duplicate", 32 + 8, 1, 1, RL_TXN_EINVAL, "sorted ascending"},
        {"descending", 32 + 16, 3, 1, RL_TXN_EINVAL, "sorted ascending"},
        {"entry reserved", 32 + 4, 9, 1, RL_TXN_EFORMAT, "reserved field"},
    };
    rl_txn t;
    uint32_t pg[3] = {1, 4, 6};
    uint8_t *buf, *b;
    size_t len, cut, i;

    make_txn(&t, 512, 6, 3, pg);
    buf = encode(&t, &len);
    b = rl_xmalloc(len + 16);

#define FRESH() memcpy(b, buf, len)
    FRESH();
    b[0] = 'X';
    expect_reject("magic", b, len, RL_TXN_EFORMAT, "bad magic");
    for (i = 0; i < sizeof muts / sizeof muts[0]; i++) {
        FRESH();
        rl_put_le32(b + muts[i].off, muts[i].val);
        if (muts[i].reseal)
            reseal(b, len);
        expect_reject(muts[i].what, b, len, muts[i].rc, muts[i].msg);
    }
    /* checksum: the field itself, the header, the table, the data */
    FRESH();
    b[28] ^= 1;
    expect_reject("crc field", b, len, RL_TXN_ECKSUM, "checksum mismatch");
    FRESH();
    b[12] ^= 0x80; /* db_pages: 6 -> 134, still valid but unsealed */
    expect_reject("header bit", b, len, RL_TXN_ECKSUM, "checksum mismatch");
    FRESH();
    b[32 + 8] ^= 2; /* pgno 4 -> 6: still would be caught by the checksum */
    expect_reject("table bit", b, len, RL_TXN_ECKSUM, "checksum mismatch");
    FRESH();
    b[len - 1] ^= 0x40;
    expect_reject("data bit", b, len, RL_TXN_ECKSUM, "checksum mismatch");
    /* trailing bytes, zero ("padding") or not, are refused */
    FRESH();
    memset(b + len, 0, 16);
    expect_reject("8 zero bytes of padding", b, len + 8, RL_TXN_EFORMAT,
                  "trailing");
    expect_reject("1 zero byte", b, len + 1, RL_TXN_EFORMAT, "trailing");
    b[len] = 0x55;
    expect_reject("nonzero trailing", b, len + 8, RL_TXN_EFORMAT, "trailing");
    /* truncation at every byte position, each an exact-size copy */
    for (cut = 0; cut < len; cut++)
        expect_reject("truncated", buf, cut, RL_TXN_EFORMAT, "truncated");
    {
        rl_txn d;
        char err[100] = "";
        CHECK(rl_txn_decode(NULL, 0, &d, err, sizeof(err)) == RL_TXN_EFORMAT,
              "NULL buffer");
        /* a tiny err buffer is truncated, not overrun */
        CHECK(rl_txn_decode(buf, 3, &d, err, 5) == RL_TXN_EFORMAT &&
                  strlen(err) == 4,
              "err truncated to its size");
        CHECK(rl_txn_decode(buf, 3, &d, NULL, 0) == RL_TXN_EFORMAT,
              "err may be NULL");
    }
#undef FRESH
    free(b);
    free(buf);
    rl_txn_free(&t);
}

/* Capture's view: frames in WAL order with rewrites and pages above the
** post-commit size; build keeps the last image of each page within it. */
static void test_build(void)
{
    enum { PS = 512, NF = 9 };
    static const uint32_t pg[NF] = {5, 2, 9, 5, 1, 12, 2, 5, 3};
    uint8_t img[NF][PS];
    rl_page fr[NF];
    rl_txn t;
    char err[300] = "";
    uint32_t i;
    int rc;

    for (i = 0; i < NF; i++) {
        memset(img[i], (int)(0x10 + i), PS);
        fr[i].pgno = pg[i];
        fr[i].data = img[i];
    }
    rc = rl_txn_build(&t, PS, 10, NF, fr, err, sizeof(err));
    CHECK(rc == RL_TXN_OK, "build: %s", err);
    CHECK(t.n_pages == 5 && t.db_pages == 10 && t.page_size == PS &&
              t.owned == NULL,
          "5 pages (page 12 dropped), borrowed");
    {
        /* page -> index of the frame whose image must win */
        static const uint32_t want_pg[5] = {1, 2, 3, 5, 9};
        static const uint32_t want_fr[5] = {4, 6, 8, 7, 2};
        for (i = 0; i < 5; i++) {
            CHECK(t.pages[i].pgno == want_pg[i], "page %u", i);
            CHECK(t.pages[i].data == img[want_fr[i]],
                  "page %u points at frame %u's image (no copy)", want_pg[i],
                  want_fr[i]);
        }
    }
    {
        /* The encoding is the one copy: it is independent of capture's
        ** buffers once made. */
        size_t len;
        uint8_t *buf = encode(&t, &len);
        rl_txn d;
        memset(img, 0, sizeof(img));
        CHECK(rl_txn_decode(buf, len, &d, err, sizeof(err)) == 0, "%s", err);
        CHECK(d.n_pages == 5 && d.pages[0].data[0] == 0x14 &&
                  d.pages[4].data[PS - 1] == 0x12,
              "encoded pages survive the frames");
        rl_txn_free(&d);
        free(buf);
    }
    /* free leaves borrowed data alone (ASan: no free of a stack buffer) */
    rl_txn_free(&t);
    CHECK(t.pages == NULL && t.owned == NULL, "free zeroes");

    for (i = 0; i < NF; i++)
        fr[i].data = img[i];
    CHECK(rl_txn_build(&t, PS, 0, NF, fr, err, sizeof(err)) == RL_TXN_EINVAL &&
              strstr(err, "within its database size"),
          "nothing within size: %s", err);
    CHECK(rl_txn_build(&t, 1000, 10, NF, fr, err, sizeof(err)) ==
                  RL_TXN_EINVAL &&
              strstr(err, "page size 1000"),
          "page size: %s", err);
    CHECK(rl_txn_build(&t, PS, 10, 0, fr, err, sizeof(err)) == RL_TXN_EINVAL &&
              strstr(err, "no frames"),
          "no frames: %s", err);
    fr[3].pgno = 0;
    CHECK(rl_txn_build(&t, PS, 10, NF, fr, err, sizeof(err)) == RL_TXN_EINVAL &&
              strstr(err, "frame 3 has page number 0"),
          "pgno 0: %s", err);
    fr[3].pgno = 5;
    fr[4].data = NULL;
    CHECK(rl_txn_build(&t, PS, 10, NF, fr, err, sizeof(err)) == RL_TXN_EINVAL &&
              strstr(err, "frame 4 has no data"),
          "NULL data: %s", err);
    CHECK(t.pages == NULL && t.owned == NULL, "t zeroed on error");
}

/* Seeds: valid records of a few shapes, plus near-misses. */
static int write_seeds(const char *dir)
{
    static const struct {
        uint32_t page_size, db_pages, n;
    } shapes[] = {{512, 1, 1}, {512, 9, 3}, {1024, 4, 2}, {4096, 2, 1}};
    size_t i;
    int bad = 0;
    for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        rl_txn t;
        uint8_t *buf;
        size_t len;
        char name[64];
        uint32_t pg[3] = {1, 5, 9};
        make_txn(&t, shapes[i].page_size, shapes[i].db_pages, shapes[i].n,
                 shapes[i].n == 3 ? pg : NULL);
        buf = encode(&t, &len);
        snprintf(name, sizeof(name), "seed-valid-%zu", i);
        bad |= rl_seed_write(dir, name, buf, len);
        buf[len - 1] ^= 1;
        snprintf(name, sizeof(name), "seed-badcrc-%zu", i);
        bad |= rl_seed_write(dir, name, buf, len);
        snprintf(name, sizeof(name), "seed-short-%zu", i);
        bad |= rl_seed_write(dir, name, buf, len / 2);
        free(buf);
        rl_txn_free(&t);
    }
    return bad;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
        return write_seeds(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--write-seeds DIR]\n", argv[0]);
        return 2;
    }
    test_crc32c();
    test_validate();
    test_round_trips();
    test_malformed();
    test_build();
    printf("test_txn: %d checks passed\n", rl_checks);
    return 0;
}
