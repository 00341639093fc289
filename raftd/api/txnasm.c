/*
** raftd/api/txnasm.c -- the framing of a forwarded transaction (ForwardTxn's
** TxnChunk stream, see service.h): offsets, lengths, CRC and the origin of
** a transaction to commit.
**
** Pure and grpc-free (fuzzed: tests/fuzz/fuzz_proto_txnchunks.c): it must
** never trust a stated length (it reserves nothing beyond what arrived)
** nor accept a chunk that breaks the framing.
*/
#include "service.h"
#include "errbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "raftlite.pb-c.h"

/* ---- ForwardTxn framing ---- */

void rl_txn_asm_init(rl_txn_asm *a)
{
    memset(a, 0, sizeof(*a));
    a->crc = (uint32_t)crc32(0L, Z_NULL, 0);
}

void rl_txn_asm_free(rl_txn_asm *a)
{
    free(a->data);
    a->data = NULL;
    a->cap = 0;
}

/* Appends n bytes to a->data, doubling its room as needed (never beyond
** the stated total). 0, or -1 out of memory. */
static int asm_keep(rl_txn_asm *a, const uint8_t *p, size_t n)
{
    size_t need = (size_t)a->received + n;
    if (need > a->cap) {
        size_t cap = a->cap ? a->cap : 65536;
        uint8_t *d;
        while (cap < need)
            cap *= 2;
        if (cap > a->total)
            cap = (size_t)a->total;
        d = realloc(a->data, cap ? cap : 1);
        if (!d)
            return -1;
        a->data = d;
        a->cap = cap;
    }
    memcpy(a->data + a->received, p, n);
    return 0;
}

int rl_txn_asm_add(rl_txn_asm *a, const uint8_t *msg, size_t len, char *err,
                   size_t errlen)
{
    Proto__TxnChunk *ch = proto__txn_chunk__unpack(NULL, len, msg);
    int code = RL_RPC_OK;
    if (!ch) {
        rl_seterr(err, errlen,
                  "malformed TxnChunk: not a valid protobuf "
                  "message of that type");
        return RL_RPC_INVALID_ARGUMENT;
    }
    if (a->last_seen) {
        rl_seterr(err, errlen, "TxnChunk after the chunk marked last");
        code = RL_RPC_INVALID_ARGUMENT;
    } else if (a->chunks == 0 && ch->origin_node != 0 &&
               ch->total_length > RL_TXN_COMMIT_MAX) {
        rl_seterr(err, errlen,
                  "transaction of %llu bytes exceeds the limit of %llu bytes "
                  "for one Raft entry",
                  (unsigned long long)ch->total_length,
                  (unsigned long long)RL_TXN_COMMIT_MAX);
        code = RL_RPC_RESOURCE_EXHAUSTED;
    } else if (a->chunks > 0 && (ch->origin_node || ch->txn_base ||
                                 ch->origin_txn || ch->origin_pid)) {
        rl_seterr(err, errlen,
                  "TxnChunk %llu states an origin or base; only the first "
                  "chunk may",
                  (unsigned long long)a->chunks);
        code = RL_RPC_INVALID_ARGUMENT;
    } else if (a->chunks == 0 && ch->total_length > RL_TXN_MAX) {
        rl_seterr(err, errlen,
                  "transaction of %llu bytes exceeds the limit of %llu bytes",
                  (unsigned long long)ch->total_length,
                  (unsigned long long)RL_TXN_MAX);
        code = RL_RPC_RESOURCE_EXHAUSTED;
    } else if (a->chunks > 0 && ch->total_length != 0 &&
               ch->total_length != a->total) {
        rl_seterr(err, errlen,
                  "TxnChunk %llu states total_length %llu, the first said %llu",
                  (unsigned long long)a->chunks,
                  (unsigned long long)ch->total_length,
                  (unsigned long long)a->total);
        code = RL_RPC_INVALID_ARGUMENT;
    } else if (ch->offset != a->received) {
        rl_seterr(err, errlen,
                  "TxnChunk %llu has offset %llu, expected %llu (chunks must "
                  "arrive in order without gaps)",
                  (unsigned long long)a->chunks, (unsigned long long)ch->offset,
                  (unsigned long long)a->received);
        code = RL_RPC_INVALID_ARGUMENT;
    } else if (ch->data.len >
               (a->chunks == 0 ? ch->total_length : a->total) - a->received) {
        rl_seterr(
            err, errlen, "TxnChunk %llu carries bytes beyond total_length %llu",
            (unsigned long long)a->chunks,
            (unsigned long long)(a->chunks == 0 ? ch->total_length : a->total));
        code = RL_RPC_INVALID_ARGUMENT;
    } else {
        if (a->chunks == 0) {
            a->total = ch->total_length;
            a->commit = ch->origin_node != 0;
            a->base = ch->txn_base;
            a->origin_node = ch->origin_node;
            a->origin_txn = ch->origin_txn;
            a->origin_pid = ch->origin_pid;
        }
        if (a->commit && ch->data.len &&
            asm_keep(a, ch->data.data, ch->data.len) != 0) {
            rl_seterr(err, errlen,
                      "out of memory keeping a %llu-byte "
                      "transaction",
                      (unsigned long long)a->total);
            proto__txn_chunk__free_unpacked(ch, NULL);
            return RL_RPC_RESOURCE_EXHAUSTED;
        }
        if (ch->data.len) {
            a->crc = (uint32_t)crc32(a->crc, ch->data.data, (uInt)ch->data.len);
        }
        a->received += ch->data.len;
        a->chunks++;
        a->last_seen = ch->last;
    }
    proto__txn_chunk__free_unpacked(ch, NULL);
    return code;
}

int rl_txn_asm_finish(rl_txn_asm *a, char *err, size_t errlen)
{
    if (a->chunks == 0) {
        rl_seterr(err, errlen, "ForwardTxn stream carried no TxnChunk");
        return RL_RPC_INVALID_ARGUMENT;
    }
    if (!a->last_seen || a->received != a->total) {
        rl_seterr(err, errlen,
                  "ForwardTxn stream ended early: %llu of %llu bytes%s",
                  (unsigned long long)a->received, (unsigned long long)a->total,
                  a->last_seen ? "" : ", no chunk marked last");
        return RL_RPC_INVALID_ARGUMENT;
    }
    return RL_RPC_OK;
}
