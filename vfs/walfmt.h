/*
** vfs/walfmt.h -- the WAL file and wal-index (-shm) formats of SQLite 3.40,
** as pure functions over memory.
**
** This module encodes, decodes and checks WAL headers, WAL frames, the
** wal-index header and the wal-index hash tables, so that raftlite can
** append replicated transactions to a WAL and publish them to every reader,
** stock SQLite included. It never does file I/O, never calls SQLite and never
** includes sqlite3.h: callers hand it bytes and mapped regions. Facts come
** from https://www.sqlite.org/walformat.html and SQLite 3.40.1's wal.c; the
** code is raftlite's own.
**
** Byte orders: the WAL file is big-endian throughout; its checksum reads the
** data as 32-bit words whose order the magic's low bit selects (1 = big).
** The wal-index is native-endian, except aSalt, which is a raw copy of the
** WAL header's salt bytes.
*/
#ifndef RL_WALFMT_H
#define RL_WALFMT_H

#include <stddef.h>
#include <stdint.h>

#define RL_WAL_HDR_SIZE       32
#define RL_WAL_FRAME_HDR_SIZE 24
#define RL_WAL_MAGIC          0x377f0682u /* | 1 => big-endian checksum words */
#define RL_WAL_VERSION        3007000u
#define RL_SHM_REGION_SIZE    32768
#define RL_SHM_HDR_SIZE       136  /* 2 x 48-byte header + 40-byte ckpt info */
#define RL_SHM_NPAGE_ONE      4062 /* frames indexed by region 0 */
#define RL_SHM_NPAGE          4096 /* frames per later region */
#define RL_SHM_NSLOT          8192 /* hash slots per region */
#define RL_READMARK_NOT_USED  0xffffffffu
#define RL_SHM_NREADER        5 /* read marks 0..4 */

/* Return codes. 0 is success; every error is negative. */
#define RL_WALFMT_OK        0
#define RL_WALFMT_EMAGIC    (-1) /* WAL header magic is not 0x377f068[23] */
#define RL_WALFMT_EVERSION  (-2) /* WAL or wal-index version is not 3007000 */
#define RL_WALFMT_EPAGESIZE (-3) /* not a power of 2 in 512..65536 */
#define RL_WALFMT_ECKSUM    (-4) /* WAL header or wal-index header checksum */
#define RL_WALFMT_EHDRCOPY  (-5) /* the two wal-index header copies differ */
#define RL_WALFMT_ENOTINIT  (-6) /* wal-index header isInit is 0 */
#define RL_WALFMT_ECORRUPT  (-7) /* hash table full or holding bad slots */
#define RL_WALFMT_EMAP      (-8) /* region accessor returned NULL */
#define RL_WALFMT_EARG      (-9) /* caller broke a documented precondition */

/*
** Checksum as SQLite's WAL: the words of data are read big-endian if
** big_endian, else little-endian, whatever the host. n must be a multiple
** of 8. in may be NULL (start from 0,0); out may alias in.
*/
void rl_wal_cksum(int big_endian, const uint8_t *data, size_t n,
                  const uint32_t in[2], uint32_t out[2]);

/* The 32-byte WAL header, values as integers (big-endian on disk). */
typedef struct rl_wal_hdr {
    uint32_t magic, version, page_size, ckpt_seq, salt1, salt2, cksum1, cksum2;
} rl_wal_hdr;

/*
** Decodes and checks a WAL header: 0, or RL_WALFMT_EMAGIC, _EPAGESIZE,
** _ECKSUM, _EVERSION (checked in that order, as SQLite's recovery does).
** out is filled even on error (for diagnostics).
*/
int rl_wal_hdr_decode(const uint8_t buf[32], rl_wal_hdr *out);
/* Computes h->cksum1/2 from the other fields and writes the header. */
void rl_wal_hdr_encode(rl_wal_hdr *h, uint8_t buf[32]);
/* 1 if the checksums of this WAL read big-endian words (magic & 1). */
int rl_wal_big_endian(const rl_wal_hdr *h);

/*
** Frame header: pgno, commit (db size in pages after commit, 0 for a
** non-commit frame), the salts of h, and the running checksum over the
** first 8 header bytes and the page. cksum is the running checksum in and
** out: it starts at the WAL header's cksum1/2 and continues over every
** frame in order. page holds h->page_size bytes.
*/
void rl_wal_frame_encode(const rl_wal_hdr *h, uint32_t pgno, uint32_t commit,
                         const uint8_t *page, uint32_t cksum[2],
                         uint8_t out[24]);
/*
** Checks a frame as SQLite's recovery does (salts match h, pgno != 0,
** checksum continues the chain in cksum). Returns 1 if valid, setting *pgno,
** *commit and advancing cksum; 0 if not, leaving cksum unchanged.
*/
int rl_wal_frame_decode(const rl_wal_hdr *h, const uint8_t fh[24],
                        const uint8_t *page, uint32_t cksum[2], uint32_t *pgno,
                        uint32_t *commit);
/* Byte offset of frame iFrame (1-based) in a WAL of this page size. */
uint64_t rl_wal_frame_offset(uint32_t page_size, uint32_t iFrame);

/*
** One 48-byte copy of the wal-index header, in the shm's native layout.
** aSalt holds the raw bytes of the WAL header's salts (big-endian).
*/
typedef struct rl_shm_hdr {
    uint32_t iVersion, unused, iChange;
    uint8_t isInit, bigEndCksum;
    uint16_t szPage; /* page size, 65536 stored as 1 */
    uint32_t mxFrame, nPage, aFrameCksum[2];
    uint8_t aSalt[8];
    uint32_t aCksum[2];
} rl_shm_hdr;

/*
** Reads the header as a stock reader does: copy 1, barrier, copy 2. Returns
** 0 iff the copies agree, isInit is set, the native checksum over the first
** 40 bytes holds and iVersion is 3007000; else RL_WALFMT_EHDRCOPY,
** _ENOTINIT, _ECKSUM or _EVERSION. out holds copy 1 either way. region0
** must be 4-byte aligned (mapped memory is).
*/
int rl_shm_hdr_read(const volatile void *region0, rl_shm_hdr *out);
/*
** Publishes h: sets h->isInit = 1, h->iVersion = 3007000 and h->aCksum,
** writes copy 2, a full memory barrier, then copy 1 (the reverse of the
** reader's order, so a reader sees both copies equal only once both are
** new). The caller bumps iChange for a new transaction, as SQLite does, and
** holds the WAL write lock.
*/
void rl_shm_hdr_write(volatile void *region0, rl_shm_hdr *h);
uint32_t rl_shm_page_size(const rl_shm_hdr *h); /* 1 => 65536 */
uint16_t rl_shm_encode_page_size(uint32_t page_size);

/* Checkpoint info: volatile u32 pointers into region 0 at offset 96. */
volatile uint32_t *rl_shm_nbackfill(volatile void *region0);
volatile uint32_t *rl_shm_readmark(volatile void *region0, int i); /* 0..4 */
volatile uint32_t *rl_shm_nbackfill_attempted(volatile void *region0);

/*
** A new WAL generation, as SQLite's writer starts one (walRestartHdr, then
** the WAL header write in sqlite3WalFrames). Fills wal_out with the header
** to write at offset 0 of the WAL and shm_out with the wal-index header to
** publish (rl_shm_hdr_write) before any frame of the new generation:
** mxFrame 0, the new salts, aFrameCksum = the new header's checksum (where
** the frame chain starts), page size and host checksum order (SQLite's
** writer always writes host order); nPage and iChange are kept from cur.
** cur is the current wal-index header, or NULL if the WAL never had a
** header: then both salts are rnd[0], rnd[1] and ckpt_seq is 0. Otherwise
** salt1 = old salt1 + 1 (no frame of the old generation can pass for a new
** one), salt2 = rnd[1], ckpt_seq = prev_ckpt_seq + 1 (the current WAL
** header's). Restart only when nBackfill == mxFrame, holding the write lock
** and READ(1..4) exclusively; then also call rl_shm_reset_ckpt.
*/
void rl_wal_new_generation(const rl_shm_hdr *cur, uint32_t prev_ckpt_seq,
                           uint32_t page_size, const uint32_t rnd[2],
                           rl_wal_hdr *wal_out, rl_shm_hdr *shm_out);
/*
** Resets the checkpoint info for a restarted WAL as walRestartHdr does:
** nBackfill 0, nBackfillAttempted 0, read mark 1 = 0 and read marks 2..4
** unused (read mark 0 is always 0).
*/
void rl_shm_reset_ckpt(volatile void *region0);

/*
** Hash index. The accessor returns the mapped 32 KiB region i (mapping or
** extending it if needed), 4-byte aligned, or NULL on error.
*/
typedef volatile void *(*rl_shm_region_fn)(void *arg, int i);
/* Which region indexes frame (1-based); frame 0 gives region 0. */
int rl_shm_region_of(uint32_t frame);

/*
** Indexes frame iFrame for page pgno as SQLite's walIndexAppend does.
** mx_frame is the last frame to keep (the wal-index header's mxFrame when
** the batch began); the frames of one batch are appended in order
** mx_frame+1, mx_frame+2, ... If iFrame is the first frame of its region,
** that region's page array and hash table are zeroed (never the 136-byte
** header of region 0); if iFrame's page slot is already set, entries above
** mx_frame are removed first (a writer died mid-transaction). Returns 0,
** RL_WALFMT_EARG (pgno 0, iFrame <= mx_frame), _EMAP, or _ECORRUPT (hash
** table full or stale entries that cleanup cannot reach).
*/
int rl_shm_append(rl_shm_region_fn fn, void *arg, uint32_t mx_frame,
                  uint32_t iFrame, uint32_t pgno);
/*
** Removes entries for frames > mx_frame from the region holding mx_frame
** (walCleanupHash: later regions are zeroed when their first frame is
** appended). mx_frame 0 does nothing. Returns 0 or RL_WALFMT_EMAP.
*/
int rl_shm_truncate(rl_shm_region_fn fn, void *arg, uint32_t mx_frame);
/*
** Looks pgno up as a reader would: *frame = the latest frame f with
** min_frame <= f <= mx_frame holding pgno, or 0. Returns 0, RL_WALFMT_EMAP
** or RL_WALFMT_ECORRUPT (never reads outside a region, whatever it holds).
*/
int rl_shm_find(rl_shm_region_fn fn, void *arg, uint32_t min_frame,
                uint32_t mx_frame, uint32_t pgno, uint32_t *frame);

/* Text for an RL_WALFMT_* code: names the cause. */
const char *rl_walfmt_errstr(int rc);

#endif /* RL_WALFMT_H */
