/*
** vfs/walfmt.c -- SQLite's WAL and wal-index formats as pure functions.
**
** What it is for: everything raftlite needs to append frames to a WAL that
** stock SQLite accepts (checksums in either word order, salts) and to publish
** them in the wal-index the way SQLite's own writer does (page arrays, hash
** tables, the double-copy header), so that every reader of the database,
** stock or not, sees replicated transactions.
**
** What it must never do: file I/O, SQLite calls, allocation, or a read or
** write outside the 32 KiB region the accessor returned, whatever bytes a
** corrupt or hostile -shm holds. Facts are from walformat.html and SQLite
** 3.40.1's wal.c; this code is raftlite's own.
**
** Layout of one 32 KiB wal-index region (native byte order):
**   bytes 0..16383      u32 page numbers: aPgno[k] is the page of frame
**                       iZero+k+1; in region 0 the first 136 bytes are the
**                       header, so region 0 indexes only 4062 frames
**   bytes 16384..32767  u16 hash slots: 0 = empty, else a 1-based index k
**                       into aPgno of the same region (linear probing from
**                       (pgno*383) & 8191)
** The invariant relied on throughout: within a region, frames are inserted
** in ascending order, so a probe sequence meets a page's frames in frame
** order and slots above the reader's mxFrame can be ignored.
*/
#include "walfmt.h"
#include "bytes.h"

#include <string.h>

_Static_assert(sizeof(rl_shm_hdr) == 48, "wal-index header copy is 48 bytes");
_Static_assert(offsetof(rl_shm_hdr, isInit) == 12, "isInit at 12");
_Static_assert(offsetof(rl_shm_hdr, szPage) == 14, "szPage at 14");
_Static_assert(offsetof(rl_shm_hdr, mxFrame) == 16, "mxFrame at 16");
_Static_assert(offsetof(rl_shm_hdr, aSalt) == 32, "aSalt at 32");
_Static_assert(offsetof(rl_shm_hdr, aCksum) == 40, "aCksum at 40");
_Static_assert(RL_SHM_NPAGE_ONE == RL_SHM_NPAGE - RL_SHM_HDR_SIZE / 4,
               "region 0 loses the header's words");
_Static_assert(RL_SHM_NPAGE * 4 + RL_SHM_NSLOT * 2 == RL_SHM_REGION_SIZE,
               "page array plus hash table fill a region");

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HOST_BIG_ENDIAN 1
#else
#define HOST_BIG_ENDIAN 0
#endif

#define HASH_MULT     383                /* SQLite's HASHTABLE_HASH_1 */
#define HASH_OFFSET   (RL_SHM_NPAGE * 4) /* byte offset of the hash table */
#define CKPT_OFFSET   96                 /* 2 header copies */
#define NBACKFILL_ATT (128 / 4)          /* word index of nBackfillAttempted */

/* A word in host order from 4 bytes, then swapped if the requested order
** differs from the host's: compiles to a load (plus bswap). */
static uint32_t load_word(const uint8_t *p, int swap)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return swap ? __builtin_bswap32(w) : w;
}

void rl_wal_cksum(int big_endian, const uint8_t *data, size_t n,
                  const uint32_t in[2], uint32_t out[2])
{
    uint32_t s1 = in ? in[0] : 0;
    uint32_t s2 = in ? in[1] : 0;
    int swap = (big_endian != 0) != HOST_BIG_ENDIAN;
    size_t i;

    for (i = 0; i + 8 <= n; i += 8) {
        s1 += load_word(data + i, swap) + s2;
        s2 += load_word(data + i + 4, swap) + s1;
    }
    out[0] = s1;
    out[1] = s2;
}

static int page_size_ok(uint32_t sz)
{
    return sz >= 512 && sz <= 65536 && (sz & (sz - 1)) == 0;
}

int rl_wal_big_endian(const rl_wal_hdr *h)
{
    return (int)(h->magic & 1);
}

int rl_wal_hdr_decode(const uint8_t buf[32], rl_wal_hdr *out)
{
    uint32_t ck[2];

    out->magic = rl_get_be32(buf);
    out->version = rl_get_be32(buf + 4);
    out->page_size = rl_get_be32(buf + 8);
    out->ckpt_seq = rl_get_be32(buf + 12);
    out->salt1 = rl_get_be32(buf + 16);
    out->salt2 = rl_get_be32(buf + 20);
    out->cksum1 = rl_get_be32(buf + 24);
    out->cksum2 = rl_get_be32(buf + 28);
    if ((out->magic & ~1u) != RL_WAL_MAGIC)
        return RL_WALFMT_EMAGIC;
    if (!page_size_ok(out->page_size))
        return RL_WALFMT_EPAGESIZE;
    rl_wal_cksum(rl_wal_big_endian(out), buf, 24, NULL, ck);
    if (ck[0] != out->cksum1 || ck[1] != out->cksum2)
        return RL_WALFMT_ECKSUM;
    /* SQLite checks the version only once the checksum says the header is
    ** a real one; a wrong version then makes the database unopenable. */
    if (out->version != RL_WAL_VERSION)
        return RL_WALFMT_EVERSION;
    return RL_WALFMT_OK;
}

void rl_wal_hdr_encode(rl_wal_hdr *h, uint8_t buf[32])
{
    uint32_t ck[2];

    rl_put_be32(buf, h->magic);
    rl_put_be32(buf + 4, h->version);
    rl_put_be32(buf + 8, h->page_size);
    rl_put_be32(buf + 12, h->ckpt_seq);
    rl_put_be32(buf + 16, h->salt1);
    rl_put_be32(buf + 20, h->salt2);
    rl_wal_cksum(rl_wal_big_endian(h), buf, 24, NULL, ck);
    h->cksum1 = ck[0];
    h->cksum2 = ck[1];
    rl_put_be32(buf + 24, ck[0]);
    rl_put_be32(buf + 28, ck[1]);
}

void rl_wal_frame_encode(const rl_wal_hdr *h, uint32_t pgno, uint32_t commit,
                         const uint8_t *page, uint32_t cksum[2],
                         uint8_t out[24])
{
    int be = rl_wal_big_endian(h);

    rl_put_be32(out, pgno);
    rl_put_be32(out + 4, commit);
    rl_put_be32(out + 8, h->salt1);
    rl_put_be32(out + 12, h->salt2);
    /* The salts are not part of the checksum: only pgno, commit, page. */
    rl_wal_cksum(be, out, 8, cksum, cksum);
    rl_wal_cksum(be, page, h->page_size, cksum, cksum);
    rl_put_be32(out + 16, cksum[0]);
    rl_put_be32(out + 20, cksum[1]);
}

int rl_wal_frame_decode(const rl_wal_hdr *h, const uint8_t fh[24],
                        const uint8_t *page, uint32_t cksum[2], uint32_t *pgno,
                        uint32_t *commit)
{
    int be = rl_wal_big_endian(h);
    uint32_t ck[2];
    uint32_t p = rl_get_be32(fh);

    if (rl_get_be32(fh + 8) != h->salt1 || rl_get_be32(fh + 12) != h->salt2)
        return 0;
    if (p == 0)
        return 0;
    rl_wal_cksum(be, fh, 8, cksum, ck);
    rl_wal_cksum(be, page, h->page_size, ck, ck);
    if (ck[0] != rl_get_be32(fh + 16) || ck[1] != rl_get_be32(fh + 20))
        return 0;
    cksum[0] = ck[0];
    cksum[1] = ck[1];
    *pgno = p;
    *commit = rl_get_be32(fh + 4);
    return 1;
}

uint64_t rl_wal_frame_offset(uint32_t page_size, uint32_t iFrame)
{
    return RL_WAL_HDR_SIZE +
           ((uint64_t)iFrame - 1) * ((uint64_t)page_size + 24);
}

/* ---- wal-index header ---- */

/* Word-wise volatile copies: the compiler must not merge, reorder across
** the barrier, or elide these accesses to shared memory. */
static void hdr_load(const volatile uint32_t *w, rl_shm_hdr *h)
{
    uint32_t tmp[12];
    int i;
    for (i = 0; i < 12; i++)
        tmp[i] = w[i];
    memcpy(h, tmp, sizeof(tmp));
}

static void hdr_store(volatile uint32_t *w, const rl_shm_hdr *h)
{
    uint32_t tmp[12];
    int i;
    memcpy(tmp, h, sizeof(tmp));
    for (i = 0; i < 12; i++)
        w[i] = tmp[i];
}

static void hdr_cksum(const rl_shm_hdr *h, uint32_t out[2])
{
    uint8_t b[48];
    memcpy(b, h, sizeof(b));
    /* Native word order: the wal-index never leaves this host. */
    rl_wal_cksum(HOST_BIG_ENDIAN, b, offsetof(rl_shm_hdr, aCksum), NULL, out);
}

int rl_shm_hdr_read(const volatile void *region0, rl_shm_hdr *out)
{
    const volatile uint32_t *w = (const volatile uint32_t *)region0;
    rl_shm_hdr h2;
    uint32_t ck[2];

    /* Copy 1 first, then copy 2: the writer stores them in the opposite
    ** order around a barrier, so equal copies are a consistent snapshot. */
    hdr_load(w, out);
    __sync_synchronize();
    hdr_load(w + 12, &h2);
    if (memcmp(out, &h2, sizeof(h2)) != 0)
        return RL_WALFMT_EHDRCOPY;
    if (out->isInit == 0)
        return RL_WALFMT_ENOTINIT;
    hdr_cksum(out, ck);
    if (ck[0] != out->aCksum[0] || ck[1] != out->aCksum[1])
        return RL_WALFMT_ECKSUM;
    if (out->iVersion != RL_WAL_VERSION)
        return RL_WALFMT_EVERSION;
    return RL_WALFMT_OK;
}

void rl_shm_hdr_write(volatile void *region0, rl_shm_hdr *h)
{
    volatile uint32_t *w = (volatile uint32_t *)region0;

    h->isInit = 1;
    h->iVersion = RL_WAL_VERSION;
    hdr_cksum(h, h->aCksum);
    hdr_store(w + 12, h);
    __sync_synchronize();
    hdr_store(w, h);
}

uint32_t rl_shm_page_size(const rl_shm_hdr *h)
{
    return (uint32_t)(h->szPage & 0xfe00) + ((uint32_t)(h->szPage & 1) << 16);
}

uint16_t rl_shm_encode_page_size(uint32_t page_size)
{
    return (uint16_t)((page_size & 0xff00) | (page_size >> 16));
}

volatile uint32_t *rl_shm_nbackfill(volatile void *region0)
{
    return (volatile uint32_t *)region0 + CKPT_OFFSET / 4;
}

volatile uint32_t *rl_shm_readmark(volatile void *region0, int i)
{
    return (volatile uint32_t *)region0 + CKPT_OFFSET / 4 + 1 + i;
}

volatile uint32_t *rl_shm_nbackfill_attempted(volatile void *region0)
{
    return (volatile uint32_t *)region0 + NBACKFILL_ATT;
}

/* ---- a new WAL generation ---- */

void rl_wal_new_generation(const rl_shm_hdr *cur, uint32_t prev_ckpt_seq,
                           uint32_t page_size, const uint32_t rnd[2],
                           rl_wal_hdr *wal_out, rl_shm_hdr *shm_out)
{
    rl_wal_hdr *w = wal_out;
    uint8_t buf[RL_WAL_HDR_SIZE];

    memset(shm_out, 0, sizeof(*shm_out));
    w->magic = RL_WAL_MAGIC | HOST_BIG_ENDIAN;
    w->version = RL_WAL_VERSION;
    w->page_size = page_size;
    if (cur == NULL) {
        w->ckpt_seq = 0;
        w->salt1 = rnd[0];
    } else {
        *shm_out = *cur;
        w->ckpt_seq = prev_ckpt_seq + 1;
        w->salt1 = rl_get_be32(cur->aSalt) + 1;
    }
    w->salt2 = rnd[1];
    rl_wal_hdr_encode(w, buf); /* for cksum1/2 */
    shm_out->mxFrame = 0;
    shm_out->bigEndCksum = HOST_BIG_ENDIAN;
    shm_out->szPage = rl_shm_encode_page_size(page_size);
    rl_put_be32(shm_out->aSalt, w->salt1);
    rl_put_be32(shm_out->aSalt + 4, w->salt2);
    shm_out->aFrameCksum[0] = w->cksum1;
    shm_out->aFrameCksum[1] = w->cksum2;
}

void rl_shm_reset_ckpt(volatile void *region0)
{
    int i;
    *rl_shm_nbackfill(region0) = 0;
    *rl_shm_nbackfill_attempted(region0) = 0;
    *rl_shm_readmark(region0, 0) = 0;
    *rl_shm_readmark(region0, 1) = 0;
    for (i = 2; i < RL_SHM_NREADER; i++)
        *rl_shm_readmark(region0, i) = RL_READMARK_NOT_USED;
}

/* ---- hash index ---- */

/* Where one region's page array and hash table live. */
typedef struct hash_loc {
    volatile uint32_t *aPgno; /* aPgno[k] is the page of frame iZero+k+1 */
    volatile uint16_t *aHash; /* RL_SHM_NSLOT slots */
    uint32_t iZero;           /* frame number before the region's first */
    uint32_t nPage;           /* capacity of aPgno */
} hash_loc;

int rl_shm_region_of(uint32_t frame)
{
    /* 64-bit so that frames near 2^32 do not wrap. */
    return (int)(((uint64_t)frame + RL_SHM_NPAGE - RL_SHM_NPAGE_ONE - 1) /
                 RL_SHM_NPAGE);
}

static int hash_get(rl_shm_region_fn fn, void *arg, int i, hash_loc *loc)
{
    volatile uint8_t *r = (volatile uint8_t *)fn(arg, i);
    if (r == NULL)
        return RL_WALFMT_EMAP;
    loc->aHash = (volatile uint16_t *)(r + HASH_OFFSET);
    if (i == 0) {
        loc->aPgno = (volatile uint32_t *)(r + RL_SHM_HDR_SIZE);
        loc->iZero = 0;
        loc->nPage = RL_SHM_NPAGE_ONE;
    } else {
        loc->aPgno = (volatile uint32_t *)r;
        loc->iZero =
            RL_SHM_NPAGE_ONE + (uint32_t)(i - 1) * (uint32_t)RL_SHM_NPAGE;
        loc->nPage = RL_SHM_NPAGE;
    }
    return RL_WALFMT_OK;
}

static unsigned hash_key(uint32_t pgno)
{
    return (pgno * HASH_MULT) & (RL_SHM_NSLOT - 1);
}

static unsigned hash_next(unsigned key)
{
    return (key + 1) & (RL_SHM_NSLOT - 1);
}

int rl_shm_truncate(rl_shm_region_fn fn, void *arg, uint32_t mx_frame)
{
    hash_loc loc;
    uint32_t limit, k;
    int rc;

    if (mx_frame == 0)
        return RL_WALFMT_OK;
    rc = hash_get(fn, arg, rl_shm_region_of(mx_frame), &loc);
    if (rc)
        return rc;
    limit = mx_frame - loc.iZero; /* 1..nPage by choice of region */
    for (k = 0; k < RL_SHM_NSLOT; k++) {
        if (loc.aHash[k] > limit)
            loc.aHash[k] = 0;
    }
    for (k = limit; k < loc.nPage; k++)
        loc.aPgno[k] = 0;
    return RL_WALFMT_OK;
}

int rl_shm_append(rl_shm_region_fn fn, void *arg, uint32_t mx_frame,
                  uint32_t iFrame, uint32_t pgno)
{
    hash_loc loc;
    uint32_t idx, n_collide;
    unsigned key;
    int rc;

    if (pgno == 0 || iFrame <= mx_frame)
        return RL_WALFMT_EARG;
    rc = hash_get(fn, arg, rl_shm_region_of(iFrame), &loc);
    if (rc)
        return rc;
    idx = iFrame - loc.iZero; /* 1..nPage */

    if (idx == 1) {
        /* A region's content is only meaningful up to the frames appended
        ** since its first frame: whatever an earlier WAL generation left
        ** there goes. The cast drops volatile for speed; nobody reads this
        ** region's slots for frames above the published mxFrame. */
        memset((void *)loc.aPgno, 0,
               loc.nPage * sizeof(uint32_t) + RL_SHM_NSLOT * sizeof(uint16_t));
    }

    if (loc.aPgno[idx - 1] != 0) {
        /* A writer died after indexing uncommitted frames: drop them. */
        rc = rl_shm_truncate(fn, arg, mx_frame);
        if (rc)
            return rc;
        if (loc.aPgno[idx - 1] != 0)
            return RL_WALFMT_ECORRUPT; /* frames were not appended in order */
    }

    /* At most idx-1 slots are in use, so meeting more occupied slots than
    ** that means the table is corrupt; stop instead of looping forever. */
    n_collide = idx;
    for (key = hash_key(pgno); loc.aHash[key] != 0; key = hash_next(key)) {
        if (n_collide-- == 0)
            return RL_WALFMT_ECORRUPT;
    }
    /* Page number first, then the slot that makes it reachable. */
    loc.aPgno[idx - 1] = pgno;
    loc.aHash[key] = (uint16_t)idx;
    return RL_WALFMT_OK;
}

int rl_shm_find(rl_shm_region_fn fn, void *arg, uint32_t min_frame,
                uint32_t mx_frame, uint32_t pgno, uint32_t *frame)
{
    uint32_t best = 0;
    int i, min_region;

    *frame = 0;
    if (mx_frame == 0 || pgno == 0 || min_frame > mx_frame)
        return RL_WALFMT_OK;
    min_region = rl_shm_region_of(min_frame);
    for (i = rl_shm_region_of(mx_frame); i >= min_region; i--) {
        hash_loc loc;
        uint32_t n_collide = RL_SHM_NSLOT;
        unsigned key = hash_key(pgno);
        uint16_t h;
        int rc = hash_get(fn, arg, i, &loc);
        if (rc)
            return rc;
        while ((h = loc.aHash[key]) != 0) {
            uint32_t f = loc.iZero + h;
            /* A slot beyond the page array can only be garbage; SQLite
            ** would read past the region, we refuse. */
            if (h > loc.nPage)
                return RL_WALFMT_ECORRUPT;
            if (f <= mx_frame && f >= min_frame && loc.aPgno[h - 1] == pgno &&
                f > best)
                best = f;
            if (n_collide-- == 0)
                return RL_WALFMT_ECORRUPT;
            key = hash_next(key);
        }
        if (best)
            break;
    }
    *frame = best;
    return RL_WALFMT_OK;
}

const char *rl_walfmt_errstr(int rc)
{
    switch (rc) {
    case RL_WALFMT_OK:
        return "ok";
    case RL_WALFMT_EMAGIC:
        return "WAL header magic is not 0x377f0682/3: not a WAL file";
    case RL_WALFMT_EVERSION:
        return "WAL or wal-index version is not 3007000: written by an "
               "incompatible SQLite";
    case RL_WALFMT_EPAGESIZE:
        return "WAL page size is not a power of two between 512 and 65536";
    case RL_WALFMT_ECKSUM:
        return "checksum mismatch: the header is torn or corrupt";
    case RL_WALFMT_EHDRCOPY:
        return "wal-index header copies differ: a writer is mid-update or "
               "died; retry, or rebuild the wal-index from the WAL";
    case RL_WALFMT_ENOTINIT:
        return "wal-index header not initialized: run recovery first";
    case RL_WALFMT_ECORRUPT:
        return "wal-index hash table corrupt (full, or slots out of range): "
               "rebuild the wal-index from the WAL";
    case RL_WALFMT_EMAP:
        return "could not map a wal-index region";
    case RL_WALFMT_EARG:
        return "invalid argument (page 0, or frame not above mxFrame)";
    default:
        return "unknown walfmt error";
    }
}
