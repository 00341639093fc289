/*
** vfs/txn.h -- the transaction record raftlite replicates, and its
** serialized form.
**
** A record is what capture produces at a WAL commit and apply consumes on
** every node: the final image of each page the transaction wrote, the page
** size and the database size in pages after the commit. It holds no SQLite
** types and does no I/O.
**
** Serialized form (version 1; all integers little-endian u32):
**
**   offset  field
**   0       magic "RLTX" (bytes 52 4c 54 58)
**   4       version = 1
**   8       page_size (power of two, 512..65536)
**   12      db_pages (database size in pages after commit, >= 1)
**   16      n_pages (>= 1, <= db_pages)
**   20      flags, reserved: 0
**   24      reserved: 0
**   28      crc32c (Castagnoli) of bytes [0, 28) followed by [32, end)
**   32      n_pages x { u32 pgno, u32 reserved = 0 }, pgno ascending, unique,
**           1 <= pgno <= db_pages
**   32+8n   n_pages x page_size bytes of page data, in table order
**   end     zero padding to a multiple of 8 bytes
**
** Every part is a multiple of 8 bytes (raft 0.15 entries must be), so the
** padding of version 1 is always empty and a record is exactly
** 32 + n_pages * (8 + page_size) bytes; the decoder rejects any other length,
** trailing bytes included. The checksum covers the whole record except its
** own field, so decode proves integrity before anything is interpreted.
*/
#ifndef RL_TXN_H
#define RL_TXN_H

#include <stddef.h>
#include <stdint.h>

#define RL_TXN_MAGIC      "RLTX"
#define RL_TXN_VERSION    1u
#define RL_TXN_HDR_SIZE   32
#define RL_TXN_ENTRY_SIZE 8

/* Return codes: 0 success, negative errors. */
#define RL_TXN_OK      0
#define RL_TXN_EINVAL  (-1) /* the rl_txn breaks an invariant (validate) */
#define RL_TXN_ESHORT  (-2) /* output buffer smaller than the encoded size */
#define RL_TXN_EFORMAT (-3) /* malformed record: magic, version, sizes... */
#define RL_TXN_ECKSUM  (-4) /* record checksum mismatch */
#define RL_TXN_ENOMEM  (-5) /* allocation failed */

/* Whether ps is a page size SQLite can have: a power of two, 512..65536.
** Every format that carries one (WAL, record, image) checks it so. */
static inline int rl_page_size_ok(uint32_t ps)
{
    return ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0;
}

typedef struct rl_page {
    uint32_t pgno;
    const uint8_t *data; /* page_size bytes */
} rl_page;

typedef struct rl_txn {
    uint32_t page_size;
    uint32_t db_pages; /* database size in pages after commit */
    uint32_t n_pages;
    rl_page *pages; /* sorted by pgno ascending, unique; owned by t */
    void *owned;    /* buffer owning pages' data, or NULL: then the data
                       is borrowed (capture's frames, a decoded buffer)
                       and must outlive t */
} rl_txn;

/*
** Checks the invariants: page size a power of two in 512..65536,
** n_pages >= 1, pages non-NULL, every pgno in 1..db_pages, strictly
** ascending, data non-NULL. Returns 0 or RL_TXN_EINVAL with a message naming
** the cause in err (if err != NULL and errlen > 0).
*/
int rl_txn_validate(const rl_txn *t, char *err, size_t errlen);

/*
** Builds a record from the frames of one WAL transaction as capture saw
** them, in WAL order (frames[i] is the image last written at the i-th frame
** slot; a page may occur several times): keeps the last image of each page,
** drops pages above db_pages (the database shrank) and sorts by page
** number. The page data is NOT copied: t->pages point at the frames' data
** (t->owned = NULL), which must stay unchanged until rl_txn_free(t). Capture
** relies on it (its frame buffers live until the write lock is released,
** after the port's commit returned), so that the one copy of the pages on
** their way to Raft is rl_txn_encode's, into the entry the host proposes.
** Returns 0, RL_TXN_EINVAL (bad page size, a pgno 0 or NULL data, or no
** page within db_pages) or RL_TXN_ENOMEM, with a message in err.
*/
int rl_txn_build(rl_txn *t, uint32_t page_size, uint32_t db_pages,
                 uint32_t n_frames, const rl_page *frames, char *err,
                 size_t errlen);

/* Bytes rl_txn_encode writes for t (0 if t's sizes overflow size_t). */
size_t rl_txn_encoded_size(const rl_txn *t);
/*
** Serializes t into buf, which must hold rl_txn_encoded_size(t) bytes.
** Returns 0, RL_TXN_EINVAL (t fails rl_txn_validate) or RL_TXN_ESHORT.
*/
int rl_txn_encode(const rl_txn *t, uint8_t *buf, size_t buflen);
/*
** Parses a record: checks magic, version, reserved fields, page size,
** counts, length against buflen (exact), checksum, table entries, then
** rl_txn_validate. On success fills t with page pointers INTO buf (zero
** copy, t->owned = NULL; buf must outlive t) and allocates t->pages; free
** with rl_txn_free. Never reads outside buf[0, buflen). Returns 0,
** RL_TXN_EFORMAT, RL_TXN_ECKSUM, RL_TXN_EINVAL or RL_TXN_ENOMEM, with a
** message naming cause and fix in err. On error t is zeroed.
*/
int rl_txn_decode(const uint8_t *buf, size_t buflen, rl_txn *t, char *err,
                  size_t errlen);
/* Frees t->pages and t->owned (if set; borrowed data is left alone) and
** zeroes t. NULL-safe. */
void rl_txn_free(rl_txn *t);

/*
** The checksum field's value for an encoded record of buflen >= 32 bytes:
** crc32c over [0, 28) and [28+4, buflen). Decode compares it with the field
** at offset 28; tests and the fuzzer use it to craft records.
*/
uint32_t rl_txn_checksum(const uint8_t *buf, size_t buflen);
/*
** CRC-32C (Castagnoli, reflected, as iSCSI/ext4). Start with crc = 0 and
** chain: rl_crc32c(rl_crc32c(0, a, n), b, m) == crc of a followed by b. Uses
** the SSE4.2 instruction when the CPU has it.
*/
uint32_t rl_crc32c(uint32_t crc, const void *data, size_t n);
/* The table-driven path rl_crc32c falls back to; public so tests check it. */
uint32_t rl_crc32c_portable(uint32_t crc, const void *data, size_t n);

#endif /* RL_TXN_H */
