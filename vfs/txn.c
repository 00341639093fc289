/*
** vfs/txn.c -- the replicated transaction record: validation, a zero-copy
** builder (from capture's frames), encoding and a zero-copy decoder (format
** in txn.h).
**
** What it is for: turning the pages capture collected into the bytes a Raft
** entry carries, and those bytes back into pages for apply, on every node.
**
** What it must never do: read outside the buffer it was given, trust any
** field before the length and checksum are proven, or accept a record that
** apply could not write (rl_txn_validate's invariants hold for every record
** decode returns); copy page data anywhere but into the encoded record
** (build and decode borrow it: the write path copies pages once). Input
** may come from a corrupt log or a hostile peer; tests/fuzz/fuzz_txn.c
** fuzzes the decoder.
**
** The only static state is the CRC table and the CPU feature flag, written
** once under pthread_once and read-only afterwards.
*/
#include "txn.h"
#include "bytes.h"
#include "errbuf.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

/* ---- CRC-32C ---- */

#define CRC32C_POLY 0x82f63b78u /* Castagnoli, reflected */

static uint32_t crc_table[256];
static int crc_have_sse42;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    uint32_t i, k, c;
    for (i = 0; i < 256; i++) {
        c = i;
        for (k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[i] = c;
    }
#if defined(__x86_64__)
    {
        unsigned a, b, cx, d;
        if (__get_cpuid(1, &a, &b, &cx, &d))
            crc_have_sse42 = (cx & bit_SSE4_2) != 0;
    }
#endif
}

uint32_t rl_crc32c_portable(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
/* Records are whole pages (tens of MB for a large transaction) and every
** node checksums each one: the instruction is ~10x the table's speed. */
__attribute__((target("sse4.2"))) static uint32_t
crc_sse42(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

uint32_t rl_crc32c(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
    if (crc_have_sse42)
        return crc_sse42(crc, data, n);
#endif
    return rl_crc32c_portable(crc, data, n);
}

/* ---- helpers ---- */

#define OFF_VERSION  4
#define OFF_PAGESIZE 8
#define OFF_DBPAGES  12
#define OFF_NPAGES   16
#define OFF_FLAGS    20
#define OFF_RESERVED 24
#define OFF_CRC      28

/* ---- validate, encode ---- */

int rl_txn_validate(const rl_txn *t, char *err, size_t errlen)
{
    uint32_t i, prev = 0;

    if (t == NULL)
        return rl_fail(err, errlen, RL_TXN_EINVAL, "no transaction");
    if (!rl_page_size_ok(t->page_size))
        return rl_fail(err, errlen, RL_TXN_EINVAL,
                       "page size %u is not a power of two between 512 and "
                       "65536",
                       t->page_size);
    if (t->n_pages == 0)
        return rl_fail(err, errlen, RL_TXN_EINVAL,
                       "transaction has no pages: a commit writes at least one "
                       "page");
    if (t->pages == NULL)
        return rl_fail(err, errlen, RL_TXN_EINVAL,
                       "transaction of %u pages has no page array", t->n_pages);
    for (i = 0; i < t->n_pages; i++) {
        uint32_t pg = t->pages[i].pgno;
        if (pg == 0)
            return rl_fail(
                err, errlen, RL_TXN_EINVAL,
                "page entry %u has page number 0: page numbers start "
                "at 1",
                i);
        if (pg > t->db_pages)
            return rl_fail(
                err, errlen, RL_TXN_EINVAL,
                "page entry %u: page %u is beyond the database size "
                "after commit (%u pages): pages above that size must "
                "be dropped",
                i, pg, t->db_pages);
        if (pg <= prev)
            return rl_fail(err, errlen, RL_TXN_EINVAL,
                           "page entry %u: page %u follows page %u: pages must "
                           "be sorted ascending without duplicates",
                           i, pg, prev);
        if (t->pages[i].data == NULL)
            return rl_fail(err, errlen, RL_TXN_EINVAL,
                           "page entry %u (page %u) has no data", i, pg);
        prev = pg;
    }
    return RL_TXN_OK;
}

/* A frame slot by page number, then position: the last image of a page
** ends its run. Positions are distinct, so the order is total whatever
** qsort's stability. */
typedef struct frame_key {
    uint32_t pgno, pos;
} frame_key;

static int cmp_frame_key(const void *a, const void *b)
{
    const frame_key *x = a, *y = b;
    if (x->pgno != y->pgno)
        return x->pgno < y->pgno ? -1 : 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

int rl_txn_build(rl_txn *t, uint32_t page_size, uint32_t db_pages,
                 uint32_t n_frames, const rl_page *frames, char *err,
                 size_t errlen)
{
    frame_key *keys;
    uint32_t i, m = 0;
    int rc;

    memset(t, 0, sizeof(*t));
    if (!rl_page_size_ok(page_size))
        return rl_fail(err, errlen, RL_TXN_EINVAL,
                       "page size %u is not a power of two between 512 and "
                       "65536",
                       page_size);
    if (n_frames == 0 || frames == NULL)
        return rl_fail(err, errlen, RL_TXN_EINVAL,
                       "transaction has no frames: a commit writes at least "
                       "one page");
    for (i = 0; i < n_frames; i++) {
        if (frames[i].pgno == 0 || frames[i].data == NULL)
            return rl_fail(err, errlen, RL_TXN_EINVAL,
                           "frame %u has %s: capture lost a frame", i,
                           frames[i].pgno == 0 ? "page number 0" : "no data");
    }
    keys = malloc((size_t)n_frames * sizeof(*keys));
    if (keys == NULL)
        return rl_fail(err, errlen, RL_TXN_ENOMEM,
                       "out of memory sorting %u frames", n_frames);
    for (i = 0; i < n_frames; i++) {
        keys[i].pgno = frames[i].pgno;
        keys[i].pos = i;
    }
    qsort(keys, n_frames, sizeof(*keys), cmp_frame_key);
    /* Keep the last of each run, within the post-commit size. */
    for (i = 0; i < n_frames; i++) {
        int last = i + 1 == n_frames || keys[i + 1].pgno != keys[i].pgno;
        if (last && keys[i].pgno <= db_pages)
            keys[m++] = keys[i];
    }
    if (m == 0) {
        free(keys);
        return rl_fail(err, errlen, RL_TXN_EINVAL,
                       "no page of the transaction lies within its database "
                       "size (%u pages)",
                       db_pages);
    }
    t->pages = malloc((size_t)m * sizeof(rl_page));
    if (t->pages == NULL) {
        free(keys);
        return rl_fail(err, errlen, RL_TXN_ENOMEM,
                       "out of memory listing %u pages", m);
    }
    /* Borrowed, not copied (txn.h): the caller's frames outlive t. */
    for (i = 0; i < m; i++) {
        t->pages[i].pgno = keys[i].pgno;
        t->pages[i].data = frames[keys[i].pos].data;
    }
    free(keys);
    t->page_size = page_size;
    t->db_pages = db_pages;
    t->n_pages = m;
    t->owned = NULL;
    rc = rl_txn_validate(t, err, errlen);
    if (rc)
        rl_txn_free(t);
    return rc;
}

size_t rl_txn_encoded_size(const rl_txn *t)
{
    uint64_t n =
        (uint64_t)t->n_pages * (RL_TXN_ENTRY_SIZE + (uint64_t)t->page_size) +
        RL_TXN_HDR_SIZE;
    /* Each part is a multiple of 8 already; the round-up keeps the promise
    ** of the format should a later version add an odd-sized part. */
    n = (n + 7) & ~(uint64_t)7;
    if (n > SIZE_MAX)
        return 0;
    return (size_t)n;
}

uint32_t rl_txn_checksum(const uint8_t *buf, size_t buflen)
{
    uint32_t c;
    if (buflen < RL_TXN_HDR_SIZE)
        return 0;
    c = rl_crc32c(0, buf, OFF_CRC);
    return rl_crc32c(c, buf + OFF_CRC + 4, buflen - (OFF_CRC + 4));
}

int rl_txn_encode(const rl_txn *t, uint8_t *buf, size_t buflen)
{
    size_t size, off;
    uint32_t i;
    int rc = rl_txn_validate(t, NULL, 0);

    if (rc)
        return rc;
    size = rl_txn_encoded_size(t);
    if (size == 0 || buf == NULL || buflen < size)
        return RL_TXN_ESHORT;
    memcpy(buf, RL_TXN_MAGIC, 4);
    rl_put_le32(buf + OFF_VERSION, RL_TXN_VERSION);
    rl_put_le32(buf + OFF_PAGESIZE, t->page_size);
    rl_put_le32(buf + OFF_DBPAGES, t->db_pages);
    rl_put_le32(buf + OFF_NPAGES, t->n_pages);
    rl_put_le32(buf + OFF_FLAGS, 0);
    rl_put_le32(buf + OFF_RESERVED, 0);
    rl_put_le32(buf + OFF_CRC, 0);
    off = RL_TXN_HDR_SIZE;
    for (i = 0; i < t->n_pages; i++) {
        rl_put_le32(buf + off, t->pages[i].pgno);
        rl_put_le32(buf + off + 4, 0);
        off += RL_TXN_ENTRY_SIZE;
    }
    for (i = 0; i < t->n_pages; i++) {
        memcpy(buf + off, t->pages[i].data, t->page_size);
        off += t->page_size;
    }
    memset(buf + off, 0, size - off);
    rl_put_le32(buf + OFF_CRC, rl_txn_checksum(buf, size));
    return RL_TXN_OK;
}

/* ---- decode ---- */

int rl_txn_decode(const uint8_t *buf, size_t buflen, rl_txn *t, char *err,
                  size_t errlen)
{
    uint32_t version, page_size, db_pages, n_pages, flags, reserved, crc, i;
    uint64_t want, pad_from, k;
    const uint8_t *tab, *data;
    rl_page *pages;
    int rc;

    memset(t, 0, sizeof(*t));
    if (buf == NULL || buflen < RL_TXN_HDR_SIZE)
        return rl_fail(err, errlen, RL_TXN_EFORMAT,
                       "transaction record truncated: %zu bytes, its header "
                       "alone is %d",
                       buf ? buflen : 0, RL_TXN_HDR_SIZE);
    if (memcmp(buf, RL_TXN_MAGIC, 4) != 0)
        return rl_fail(err, errlen, RL_TXN_EFORMAT,
                       "bad magic %02x %02x %02x %02x (want \"RLTX\"): not a "
                       "raftlite transaction record",
                       buf[0], buf[1], buf[2], buf[3]);
    version = rl_get_le32(buf + OFF_VERSION);
    page_size = rl_get_le32(buf + OFF_PAGESIZE);
    db_pages = rl_get_le32(buf + OFF_DBPAGES);
    n_pages = rl_get_le32(buf + OFF_NPAGES);
    flags = rl_get_le32(buf + OFF_FLAGS);
    reserved = rl_get_le32(buf + OFF_RESERVED);
    crc = rl_get_le32(buf + OFF_CRC);
    if (version != RL_TXN_VERSION)
        return rl_fail(err, errlen, RL_TXN_EFORMAT,
                       "transaction record version %u is not supported (this "
                       "build reads version %u): run the same raftlite version "
                       "on every node",
                       version, RL_TXN_VERSION);
    if (flags != 0 || reserved != 0)
        return rl_fail(err, errlen, RL_TXN_EFORMAT,
                       "transaction record reserved header fields are set "
                       "(0x%x, 0x%x): written by a newer raftlite or corrupt",
                       flags, reserved);
    if (!rl_page_size_ok(page_size))
        return rl_fail(err, errlen, RL_TXN_EFORMAT,
                       "transaction record page size %u is not a power of two "
                       "between 512 and 65536",
                       page_size);
    if (n_pages == 0)
        return rl_fail(err, errlen, RL_TXN_EFORMAT,
                       "transaction record holds no pages: a commit writes at "
                       "least one");
    /* No overflow: 2^32 * (8 + 65536) < 2^49. */
    pad_from = RL_TXN_HDR_SIZE +
               (uint64_t)n_pages * (RL_TXN_ENTRY_SIZE + (uint64_t)page_size);
    want = (pad_from + 7) & ~(uint64_t)7;
    if ((uint64_t)buflen < want)
        return rl_fail(err, errlen, RL_TXN_EFORMAT,
                       "transaction record truncated: %zu bytes, but %u pages "
                       "of %u bytes need %llu",
                       buflen, n_pages, page_size, (unsigned long long)want);
    if ((uint64_t)buflen > want)
        return rl_fail(err, errlen, RL_TXN_EFORMAT,
                       "transaction record has %llu trailing bytes after %llu "
                       "bytes of %u pages of %u bytes: pass the exact entry "
                       "payload",
                       (unsigned long long)(buflen - want),
                       (unsigned long long)want, n_pages, page_size);
    for (k = pad_from; k < want; k++) {
        if (buf[k] != 0)
            return rl_fail(
                err, errlen, RL_TXN_EFORMAT,
                "transaction record padding byte %llu is 0x%02x, not "
                "zero",
                (unsigned long long)k, buf[k]);
    }
    if (rl_txn_checksum(buf, buflen) != crc)
        return rl_fail(err, errlen, RL_TXN_ECKSUM,
                       "transaction record checksum mismatch (stored 0x%08x, "
                       "computed 0x%08x): the record is corrupt",
                       crc, rl_txn_checksum(buf, buflen));

    tab = buf + RL_TXN_HDR_SIZE;
    data = tab + (size_t)n_pages * RL_TXN_ENTRY_SIZE;
    for (i = 0; i < n_pages; i++) {
        uint32_t r = rl_get_le32(tab + (size_t)i * RL_TXN_ENTRY_SIZE + 4);
        if (r != 0)
            return rl_fail(err, errlen, RL_TXN_EFORMAT,
                           "transaction record page entry %u has reserved "
                           "field 0x%x set: written by a newer raftlite or "
                           "corrupt",
                           i, r);
    }
    /* The length check above bounds n_pages by buflen / 520, so this
    ** allocation is proportional to the input. */
    pages = malloc((size_t)n_pages * sizeof(*pages));
    if (pages == NULL)
        return rl_fail(err, errlen, RL_TXN_ENOMEM,
                       "out of memory decoding %u pages", n_pages);
    for (i = 0; i < n_pages; i++) {
        pages[i].pgno = rl_get_le32(tab + (size_t)i * RL_TXN_ENTRY_SIZE);
        pages[i].data = data + (size_t)i * page_size;
    }
    t->page_size = page_size;
    t->db_pages = db_pages;
    t->n_pages = n_pages;
    t->pages = pages;
    t->owned = NULL;
    rc = rl_txn_validate(t, err, errlen);
    if (rc) {
        free(pages);
        memset(t, 0, sizeof(*t));
        return rc;
    }
    return RL_TXN_OK;
}

void rl_txn_free(rl_txn *t)
{
    if (t == NULL)
        return;
    free(t->pages);
    free(t->owned);
    memset(t, 0, sizeof(*t));
}
