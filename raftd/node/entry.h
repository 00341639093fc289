/*
** raftd/node/entry.h -- the byte formats raftlite puts into Raft: log entries,
** cluster-metadata records and snapshot manifests.
**
** Every Raft entry raftlite proposes is
**
**   offset size  field
**   0      4     magic "RLE1" (bytes 52 4c 45 31)
**   4      2     format version (1)
**   6      1     kind (enum rl_entry_kind)
**   7      1     flags (none defined: must be 0)
**   8      8     base: Raft index of the last database-changing entry the
**                writer's snapshot reflects (TXN); 0 for other kinds
**   16     8     origin node (Raft id of the proposing node)
**   24     8     origin transaction id (unique per origin node and pid)
**   32     4     origin pid
**   36     4     reserved, 0
**   40     8     payload length in bytes (before padding)
**   48     8     checksum over bytes 0..47 and the padded payload
**   56     n     payload, then zeros up to a multiple of 8 bytes
**
** all integers little-endian. The total size is always a multiple of 8:
** raft 0.15 renames a segment "corrupt-*" on restart if an entry is not
** (DESIGN.md section 7). Decoders here never read outside the buffer they
** are given and reject anything malformed with a message naming the cause;
** they must stay that way: they face bytes from the network (fuzzed by
** tests/fuzz/fuzz_entry.c). Nothing here knows SQLite or Raft calls.
*/
#ifndef RL_ENTRY_H
#define RL_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#define RL_ENTRY_MAGIC       0x31454c52u /* "RLE1" read little-endian */
#define RL_ENTRY_VERSION     1
#define RL_ENTRY_HDR_SIZE    56
#define RL_ENTRY_MAX_PAYLOAD ((uint64_t)1 << 31) /* 2 GiB: a sanity bound */

enum rl_entry_kind {
    RL_ENTRY_TXN = 1,     /* a database transaction: opaque payload */
    RL_ENTRY_GENESIS = 2, /* names an initial image: opaque metadata */
    RL_ENTRY_META = 3,    /* a node's metadata: rl_meta encoded */
    RL_ENTRY_NOOP = 4,    /* changes nothing (tests, keep-alives) */
    RL_ENTRY_BARRIER = 5, /* changes nothing; proposed to wait for apply */
};
#define RL_ENTRY_KIND_MAX 5

/* Error codes of the decoders (0 is success). */
#define RL_EFMT_SHORT    1  /* buffer shorter than the format requires */
#define RL_EFMT_MAGIC    2  /* not an entry of raftlite */
#define RL_EFMT_VERSION  3  /* format version this build does not know */
#define RL_EFMT_KIND     4  /* unknown kind */
#define RL_EFMT_FLAGS    5  /* unknown flag bits or reserved field set */
#define RL_EFMT_LENGTH   6  /* length fields disagree with the buffer */
#define RL_EFMT_PADDING  7  /* nonzero padding bytes */
#define RL_EFMT_CHECKSUM 8  /* checksum mismatch */
#define RL_EFMT_STRING   9  /* bad string (empty, too long, NUL inside) */
#define RL_EFMT_NOMEM    10 /* allocation failed while decoding */
#define RL_EFMT_ARG      11 /* bad arguments to an encoder */

struct rl_entry_hdr {
    uint8_t kind;
    uint8_t flags;
    uint64_t base;
    uint64_t origin_node;
    uint64_t origin_txn;
    uint32_t origin_pid;
    uint64_t payload_len;
};

/* A decoded entry: payload points into the decoded buffer (no copy). */
struct rl_entry {
    struct rl_entry_hdr h;
    const uint8_t *payload;
    uint64_t checksum;
};

/* Size of an encoded entry with payload_len bytes of payload, or 0 if
** payload_len exceeds RL_ENTRY_MAX_PAYLOAD. */
size_t rl_entry_size(uint64_t payload_len);

/* Encode header h (h->payload_len must equal the payload's length) and the
** payload into out, which must hold rl_entry_size(h->payload_len) bytes.
** Returns 0 or RL_EFMT_ARG (bad kind, flags or length). */
int rl_entry_encode(const struct rl_entry_hdr *h, const void *payload,
                    void *out, size_t out_len);

/* Seal an entry whose payload (h->payload_len bytes) the caller already
** wrote at out + RL_ENTRY_HDR_SIZE: writes the header, the zero padding
** and the checksum, leaving the payload in place (no copy). out must hold
** rl_entry_size(h->payload_len) bytes. Returns 0 or RL_EFMT_ARG. The bytes
** are those rl_entry_encode writes for the same header and payload. */
int rl_entry_seal(const struct rl_entry_hdr *h, void *out, size_t out_len);

/* Decode buf[0..len). On success fills *e (payload points into buf) and
** returns 0; otherwise returns an RL_EFMT_* code and, if err is not NULL,
** writes a message naming the cause into err[0..errlen). */
int rl_entry_decode(const void *buf, size_t len, struct rl_entry *e, char *err,
                    size_t errlen);

/* The checksum stored in an encoded entry (the one rl_entry_encode
** wrote), unverified: what identifies the entry among others at an index.
** 0 if len is shorter than a header. */
uint64_t rl_entry_checksum(const void *buf, size_t len);

/* Name of a kind ("TXN", ...) or "?" */
const char *rl_entry_kind_name(int kind);

/* The 64-bit checksum used by the formats of this file. */
uint64_t rl_checksum64(uint64_t seed, const void *buf, size_t len);

/*
** Cluster metadata of one node, the payload of a META entry:
**   8 raft id (nonzero), then three strings each as a 2-byte length and
**   bytes: string node id (1..255 bytes), raft address (1..255), gRPC
**   address (0..255). No NUL inside a string.
*/
#define RL_META_STR_MAX 255
struct rl_meta {
    uint64_t raft_id;
    char node_id[RL_META_STR_MAX + 1];
    char raft_addr[RL_META_STR_MAX + 1];
    char grpc_addr[RL_META_STR_MAX + 1];
};

/* Encoded size of m, or 0 if a string of m is invalid. */
size_t rl_meta_size(const struct rl_meta *m);
/* Encode m into out[0..out_len); returns bytes written or 0 on error. */
size_t rl_meta_encode(const struct rl_meta *m, void *out, size_t out_len);
/* Decode exactly len bytes; returns 0 or RL_EFMT_*. */
int rl_meta_decode(const void *buf, size_t len, struct rl_meta *m, char *err,
                   size_t errlen);
/* Fill m from C strings; returns 0 or RL_EFMT_STRING / RL_EFMT_ARG. */
int rl_meta_set(struct rl_meta *m, uint64_t raft_id, const char *node_id,
                const char *raft_addr, const char *grpc_addr);

/*
** A snapshot manifest (the whole Raft snapshot of raftlite):
**   4 magic "RLM1", 2 version (1), 2 reserved (0),
**   8 S: the Raft index the snapshot covers,
**   8 A: the last index at or below S whose entry went to the FSM (raft's
**     own barrier and configuration entries never do): a database that has
**     applied A satisfies S,
**   8 L: the last database-changing entry that took effect (L <= A <= S),
**   8 database size in bytes (0 = unknown),
**   4 member count (<= RL_MANIFEST_MAX_MEMBERS), 4 reserved (0),
**   per member: 4 length n, n bytes of rl_meta, zeros to a multiple of 8;
**   8 checksum of everything before it.
*/
#define RL_MANIFEST_MAGIC       0x314d4c52u /* "RLM1" */
#define RL_MANIFEST_VERSION     1
#define RL_MANIFEST_MAX_MEMBERS 1024
struct rl_manifest {
    uint64_t S;
    uint64_t A;
    uint64_t L;
    uint64_t db_size;
    uint32_t n_members;
    struct rl_meta *members; /* owned: rl_manifest_clear() frees */
};

/* Encode into a buffer from malloc_fn (raft_malloc for raft): *out, *len.
** Returns 0, RL_EFMT_NOMEM or RL_EFMT_ARG. */
int rl_manifest_encode(const struct rl_manifest *m, void *(*malloc_fn)(size_t),
                       void **out, size_t *len);
/* Decode; on success m->members is malloc'ed (rl_manifest_clear frees). */
int rl_manifest_decode(const void *buf, size_t len, struct rl_manifest *m,
                       char *err, size_t errlen);
void rl_manifest_clear(struct rl_manifest *m);
/* Rewrite the database size of an encoded manifest in place (and its
** checksum). Returns 0 or RL_EFMT_SHORT if buf is not a manifest's size. */
int rl_manifest_patch_db_size(void *buf, size_t len, uint64_t db_size);

#endif /* RL_ENTRY_H */
