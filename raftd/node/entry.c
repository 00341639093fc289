/*
** raftd/node/entry.c -- encoders and decoders of raftlite's Raft formats (log
** entries, node metadata, snapshot manifests); see entry.h for the layouts.
**
** Decoders must never read outside [buf, buf+len), never trust a length
** field before comparing it with what remains, and never allocate more
** than a bounded multiple of len. Nothing here may call SQLite or Raft.
*/
#include "entry.h"
#include "bytes.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 16-bit little-endian (the version field); wider ones are lib/bytes.h's. */
static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static int fail(int rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static uint64_t pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

static uint64_t mix_step(uint64_t h, uint64_t w)
{
    h ^= w;
    h *= 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

static uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

/* Four independent multiply-xorshift lanes over little-endian 64-bit
** words (each step a bijection of the lane, so any change to one word
** changes its lane), folded at the end. Independent lanes keep the
** multiplier busy: about 2 GB/s here, so checking a 50 MB entry on the
** Raft loop thread costs tens of ms rather than hundreds. It guards
** against corruption and mix-ups, not against an adversary. */
uint64_t rl_checksum64(uint64_t seed, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t h0 = seed ^ 0x243f6a8885a308d3ull,
             h1 = seed ^ 0x13198a2e03707344ull,
             h2 = seed ^ 0xa4093822299f31d0ull,
             h3 = seed ^ 0x082efa98ec4e6c89ull;
    size_t n = len;
    while (n >= 32) {
        h0 = mix_step(h0, rl_get_le64(p));
        h1 = mix_step(h1, rl_get_le64(p + 8));
        h2 = mix_step(h2, rl_get_le64(p + 16));
        h3 = mix_step(h3, rl_get_le64(p + 24));
        p += 32;
        n -= 32;
    }
    while (n >= 8) {
        h0 = mix_step(h0, rl_get_le64(p));
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        uint8_t tail[8] = {0};
        memcpy(tail, p, n);
        h1 = mix_step(h1, rl_get_le64(tail) ^ ((uint64_t)n << 56));
    }
    uint64_t h = fmix64(h0 ^ (uint64_t)len);
    h = fmix64(h ^ h1);
    h = fmix64(h ^ h2);
    return fmix64(h ^ h3);
}

const char *rl_entry_kind_name(int kind)
{
    switch (kind) {
    case RL_ENTRY_TXN:
        return "TXN";
    case RL_ENTRY_GENESIS:
        return "GENESIS";
    case RL_ENTRY_META:
        return "META";
    case RL_ENTRY_NOOP:
        return "NOOP";
    case RL_ENTRY_BARRIER:
        return "BARRIER";
    }
    return "?";
}

size_t rl_entry_size(uint64_t payload_len)
{
    if (payload_len > RL_ENTRY_MAX_PAYLOAD)
        return 0;
    return (size_t)(RL_ENTRY_HDR_SIZE + pad8(payload_len));
}

/* Checksum of an entry: header bytes 0..47 chained into the padded
** payload. */
static uint64_t entry_checksum(const uint8_t *hdr, const uint8_t *payload,
                               uint64_t padded)
{
    uint64_t h = rl_checksum64(0, hdr, 48);
    return rl_checksum64(h, payload, (size_t)padded);
}

/* Whether h can head an entry of out_len bytes (RL_EFMT_ARG if not). */
static int entry_hdr_check(const struct rl_entry_hdr *h, size_t out_len)
{
    size_t need = rl_entry_size(h->payload_len);
    if (need == 0 || out_len < need || h->kind < 1 ||
        h->kind > RL_ENTRY_KIND_MAX || h->flags != 0)
        return RL_EFMT_ARG;
    return 0;
}

int rl_entry_seal(const struct rl_entry_hdr *h, void *out, size_t out_len)
{
    if (out == NULL || entry_hdr_check(h, out_len) != 0)
        return RL_EFMT_ARG;
    uint8_t *p = out;
    rl_put_le32(p, RL_ENTRY_MAGIC);
    put16(p + 4, RL_ENTRY_VERSION);
    p[6] = h->kind;
    p[7] = h->flags;
    rl_put_le64(p + 8, h->base);
    rl_put_le64(p + 16, h->origin_node);
    rl_put_le64(p + 24, h->origin_txn);
    rl_put_le32(p + 32, h->origin_pid);
    rl_put_le32(p + 36, 0);
    rl_put_le64(p + 40, h->payload_len);
    uint64_t padded = pad8(h->payload_len);
    memset(p + RL_ENTRY_HDR_SIZE + h->payload_len, 0,
           (size_t)(padded - h->payload_len));
    rl_put_le64(p + 48, entry_checksum(p, p + RL_ENTRY_HDR_SIZE, padded));
    return 0;
}

int rl_entry_encode(const struct rl_entry_hdr *h, const void *payload,
                    void *out, size_t out_len)
{
    if (out == NULL || entry_hdr_check(h, out_len) != 0 ||
        (h->payload_len > 0 && payload == NULL))
        return RL_EFMT_ARG;
    if (h->payload_len > 0)
        memcpy((uint8_t *)out + RL_ENTRY_HDR_SIZE, payload,
               (size_t)h->payload_len);
    return rl_entry_seal(h, out, out_len);
}

int rl_entry_decode(const void *buf, size_t len, struct rl_entry *e, char *err,
                    size_t errlen)
{
    const uint8_t *p = buf;
    if (p == NULL || len < RL_ENTRY_HDR_SIZE)
        return fail(RL_EFMT_SHORT, err, errlen,
                    "entry of %zu bytes is shorter than the %d-byte header",
                    len, RL_ENTRY_HDR_SIZE);
    if (rl_get_le32(p) != RL_ENTRY_MAGIC)
        return fail(RL_EFMT_MAGIC, err, errlen,
                    "bad entry magic 0x%08x: not a raftlite log entry",
                    rl_get_le32(p));
    if (get16(p + 4) != RL_ENTRY_VERSION)
        return fail(RL_EFMT_VERSION, err, errlen,
                    "entry format version %u unknown to this build (knows "
                    "%d): upgrade raftlite",
                    get16(p + 4), RL_ENTRY_VERSION);
    uint8_t kind = p[6];
    if (kind < 1 || kind > RL_ENTRY_KIND_MAX)
        return fail(RL_EFMT_KIND, err, errlen, "unknown entry kind %u", kind);
    if (p[7] != 0 || rl_get_le32(p + 36) != 0)
        return fail(RL_EFMT_FLAGS, err, errlen,
                    "entry flags 0x%02x / reserved 0x%08x set: written by a "
                    "newer raftlite?",
                    p[7], rl_get_le32(p + 36));
    uint64_t plen = rl_get_le64(p + 40);
    uint64_t body = len - RL_ENTRY_HDR_SIZE;
    if (plen > RL_ENTRY_MAX_PAYLOAD || pad8(plen) != body)
        return fail(RL_EFMT_LENGTH, err, errlen,
                    "entry payload length %llu does not match the %llu "
                    "bytes after the header (padded to 8)",
                    (unsigned long long)plen, (unsigned long long)body);
    const uint8_t *payload = p + RL_ENTRY_HDR_SIZE;
    for (uint64_t i = plen; i < body; i++)
        if (payload[i] != 0)
            return fail(RL_EFMT_PADDING, err, errlen,
                        "nonzero padding byte at payload offset %llu",
                        (unsigned long long)i);
    uint64_t want = rl_get_le64(p + 48);
    uint64_t got = entry_checksum(p, payload, body);
    if (want != got)
        return fail(RL_EFMT_CHECKSUM, err, errlen,
                    "entry checksum mismatch (stored %016llx, computed "
                    "%016llx): corrupted entry",
                    (unsigned long long)want, (unsigned long long)got);
    if (e) {
        e->h.kind = kind;
        e->h.flags = 0;
        e->h.base = rl_get_le64(p + 8);
        e->h.origin_node = rl_get_le64(p + 16);
        e->h.origin_txn = rl_get_le64(p + 24);
        e->h.origin_pid = rl_get_le32(p + 32);
        e->h.payload_len = plen;
        e->payload = payload;
        e->checksum = want;
    }
    return 0;
}

/* ---- metadata ---- */

static int str_ok(const char *s, int allow_empty)
{
    size_t n = strnlen(s, RL_META_STR_MAX + 1);
    return n <= RL_META_STR_MAX && (allow_empty || n > 0);
}

size_t rl_meta_size(const struct rl_meta *m)
{
    if (m->raft_id == 0 || !str_ok(m->node_id, 0) || !str_ok(m->raft_addr, 0) ||
        !str_ok(m->grpc_addr, 1))
        return 0;
    return 8 + 6 + strlen(m->node_id) + strlen(m->raft_addr) +
           strlen(m->grpc_addr);
}

size_t rl_meta_encode(const struct rl_meta *m, void *out, size_t out_len)
{
    size_t need = rl_meta_size(m);
    if (need == 0 || out_len < need)
        return 0;
    uint8_t *p = out;
    rl_put_le64(p, m->raft_id);
    p += 8;
    const char *s[3] = {m->node_id, m->raft_addr, m->grpc_addr};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(s[i]);
        put16(p, (uint16_t)n);
        memcpy(p + 2, s[i], n);
        p += 2 + n;
    }
    return need;
}

int rl_meta_decode(const void *buf, size_t len, struct rl_meta *m, char *err,
                   size_t errlen)
{
    const uint8_t *p = buf;
    size_t off = 8;
    if (p == NULL || len < 8)
        return fail(RL_EFMT_SHORT, err, errlen,
                    "metadata of %zu bytes is shorter than 8", len);
    uint64_t id = rl_get_le64(p);
    if (id == 0)
        return fail(RL_EFMT_ARG, err, errlen, "metadata has raft id 0");
    char *dst[3] = {m->node_id, m->raft_addr, m->grpc_addr};
    static const char *names[3] = {"node id", "raft address", "gRPC address"};
    for (int i = 0; i < 3; i++) {
        if (len - off < 2)
            return fail(RL_EFMT_SHORT, err, errlen,
                        "metadata truncated before the %s", names[i]);
        size_t n = get16(p + off);
        off += 2;
        if (n > len - off)
            return fail(RL_EFMT_LENGTH, err, errlen,
                        "metadata %s length %zu exceeds the %zu bytes left",
                        names[i], n, len - off);
        if (n > RL_META_STR_MAX || (n == 0 && i < 2) ||
            memchr(p + off, 0, n) != NULL)
            return fail(RL_EFMT_STRING, err, errlen,
                        "metadata %s is empty, longer than %d bytes or holds "
                        "a NUL",
                        names[i], RL_META_STR_MAX);
        memcpy(dst[i], p + off, n);
        dst[i][n] = 0;
        off += n;
    }
    if (off != len)
        return fail(RL_EFMT_LENGTH, err, errlen,
                    "metadata has %zu trailing bytes", len - off);
    m->raft_id = id;
    return 0;
}

int rl_meta_set(struct rl_meta *m, uint64_t raft_id, const char *node_id,
                const char *raft_addr, const char *grpc_addr)
{
    if (raft_id == 0 || !node_id || !raft_addr)
        return RL_EFMT_ARG;
    if (!grpc_addr)
        grpc_addr = "";
    if (!str_ok(node_id, 0) || !str_ok(raft_addr, 0) || !str_ok(grpc_addr, 1))
        return RL_EFMT_STRING;
    memset(m, 0, sizeof *m);
    m->raft_id = raft_id;
    strcpy(m->node_id, node_id);
    strcpy(m->raft_addr, raft_addr);
    strcpy(m->grpc_addr, grpc_addr);
    return 0;
}

/* ---- manifests ---- */

#define MANIFEST_HDR 48

int rl_manifest_encode(const struct rl_manifest *m, void *(*malloc_fn)(size_t),
                       void **out, size_t *len)
{
    if (m->n_members > RL_MANIFEST_MAX_MEMBERS || m->L > m->A || m->A > m->S ||
        (m->n_members > 0 && m->members == NULL))
        return RL_EFMT_ARG;
    size_t total = MANIFEST_HDR + 8;
    for (uint32_t i = 0; i < m->n_members; i++) {
        size_t n = rl_meta_size(&m->members[i]);
        if (n == 0)
            return RL_EFMT_ARG;
        total += pad8(4 + n);
    }
    uint8_t *p = malloc_fn(total);
    if (p == NULL)
        return RL_EFMT_NOMEM;
    memset(p, 0, total);
    rl_put_le32(p, RL_MANIFEST_MAGIC);
    put16(p + 4, RL_MANIFEST_VERSION);
    rl_put_le64(p + 8, m->S);
    rl_put_le64(p + 16, m->A);
    rl_put_le64(p + 24, m->L);
    rl_put_le64(p + 32, m->db_size);
    rl_put_le32(p + 40, m->n_members);
    size_t off = MANIFEST_HDR;
    for (uint32_t i = 0; i < m->n_members; i++) {
        size_t n = rl_meta_encode(&m->members[i], p + off + 4, total - off - 4);
        rl_put_le32(p + off, (uint32_t)n);
        off += pad8(4 + n);
    }
    rl_put_le64(p + off, rl_checksum64(0, p, off));
    *out = p;
    *len = total;
    return 0;
}

int rl_manifest_decode(const void *buf, size_t len, struct rl_manifest *m,
                       char *err, size_t errlen)
{
    const uint8_t *p = buf;
    memset(m, 0, sizeof *m);
    if (p == NULL || len < MANIFEST_HDR + 8)
        return fail(RL_EFMT_SHORT, err, errlen,
                    "snapshot manifest of %zu bytes is too short", len);
    if (rl_get_le32(p) != RL_MANIFEST_MAGIC)
        return fail(RL_EFMT_MAGIC, err, errlen,
                    "bad manifest magic 0x%08x: not a raftlite snapshot",
                    rl_get_le32(p));
    if (get16(p + 4) != RL_MANIFEST_VERSION)
        return fail(RL_EFMT_VERSION, err, errlen,
                    "manifest version %u unknown to this build: upgrade "
                    "raftlite",
                    get16(p + 4));
    if (get16(p + 6) != 0 || rl_get_le32(p + 44) != 0)
        return fail(RL_EFMT_FLAGS, err, errlen, "manifest reserved fields set");
    if (len % 8 != 0)
        return fail(RL_EFMT_LENGTH, err, errlen,
                    "manifest length %zu is not a multiple of 8", len);
    uint64_t want = rl_get_le64(p + len - 8);
    uint64_t got = rl_checksum64(0, p, len - 8);
    if (want != got)
        return fail(RL_EFMT_CHECKSUM, err, errlen,
                    "manifest checksum mismatch: corrupted snapshot");
    uint64_t S = rl_get_le64(p + 8), A = rl_get_le64(p + 16),
             L = rl_get_le64(p + 24);
    if (L > A || A > S)
        return fail(RL_EFMT_ARG, err, errlen,
                    "manifest indexes out of order: L %llu, A %llu, S %llu",
                    (unsigned long long)L, (unsigned long long)A,
                    (unsigned long long)S);
    uint32_t n = rl_get_le32(p + 40);
    if (n > RL_MANIFEST_MAX_MEMBERS)
        return fail(RL_EFMT_LENGTH, err, errlen,
                    "manifest lists %u members (at most %d)", n,
                    RL_MANIFEST_MAX_MEMBERS);
    /* Each member needs at least 8 bytes: bound the allocation by len. */
    if ((uint64_t)n * 8 > len)
        return fail(RL_EFMT_LENGTH, err, errlen,
                    "manifest member count %u exceeds its length", n);
    struct rl_meta *mem = NULL;
    if (n > 0) {
        mem = calloc(n, sizeof *mem);
        if (mem == NULL)
            return fail(RL_EFMT_NOMEM, err, errlen, "out of memory");
    }
    size_t off = MANIFEST_HDR, end = len - 8;
    for (uint32_t i = 0; i < n; i++) {
        if (end - off < 4) {
            free(mem);
            return fail(RL_EFMT_SHORT, err, errlen,
                        "manifest truncated at member %u", i);
        }
        uint32_t ml = rl_get_le32(p + off);
        if (ml > end - off - 4 || pad8(4 + (uint64_t)ml) > end - off) {
            free(mem);
            return fail(RL_EFMT_LENGTH, err, errlen,
                        "manifest member %u length %u exceeds the manifest", i,
                        ml);
        }
        char sub[160];
        int rc = rl_meta_decode(p + off + 4, ml, &mem[i], sub, sizeof sub);
        if (rc != 0) {
            free(mem);
            return fail(rc, err, errlen, "manifest member %u: %s", i, sub);
        }
        for (size_t j = off + 4 + ml; j < off + pad8(4 + ml); j++)
            if (p[j] != 0) {
                free(mem);
                return fail(RL_EFMT_PADDING, err, errlen,
                            "manifest member %u has nonzero padding", i);
            }
        off += pad8(4 + ml);
    }
    if (off != end) {
        free(mem);
        return fail(RL_EFMT_LENGTH, err, errlen,
                    "manifest has %zu bytes after its members", end - off);
    }
    m->S = S;
    m->A = A;
    m->L = L;
    m->db_size = rl_get_le64(p + 32);
    m->n_members = n;
    m->members = mem;
    return 0;
}

void rl_manifest_clear(struct rl_manifest *m)
{
    free(m->members);
    memset(m, 0, sizeof *m);
}

int rl_manifest_patch_db_size(void *buf, size_t len, uint64_t db_size)
{
    uint8_t *p = buf;
    if (p == NULL || len < MANIFEST_HDR + 8 || len % 8 != 0 ||
        rl_get_le32(p) != RL_MANIFEST_MAGIC)
        return RL_EFMT_SHORT;
    rl_put_le64(p + 32, db_size);
    rl_put_le64(p + len - 8, rl_checksum64(0, p, len - 8));
    return 0;
}

uint64_t rl_entry_checksum(const void *buf, size_t len)
{
    if (len < RL_ENTRY_HDR_SIZE)
        return 0;
    return rl_get_le64((const uint8_t *)buf + 48);
}
