/*
** tests/fuzz/fuzz_proto_txnchunks.c -- libFuzzer target for the ForwardTxn
** chunk framing (rl_txn_asm_*): the input is a sequence of messages, each
** a 2-byte little-endian length and that many bytes of (maybe) TxnChunk.
** The assembler must never accept bytes past the stated total, out of
** order, or after the last chunk.
*/
#include <stdint.h>
#include <stdlib.h>

#include "rpc.h"
#include "service.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rl_txn_asm a;
    char err[512];
    size_t off = 0;
    int code = RL_RPC_OK;
    rl_txn_asm_init(&a);
    while (off + 2 <= size) {
        size_t n = (size_t)data[off] | (size_t)data[off + 1] << 8;
        uint64_t before = a.received;
        off += 2;
        if (n > size - off) {
            n = size - off;
        }
        code = rl_txn_asm_add(&a, data + off, n, err, sizeof(err));
        off += n;
        if (code != RL_RPC_OK) {
            if (!err[0] || a.received != before) {
                abort(); /* a refused chunk says why and changes nothing */
            }
            break;
        }
        if (a.received > a.total) {
            abort();
        }
        /* A transaction to commit keeps exactly what arrived. */
        if (a.commit && (a.cap < a.received || a.cap > a.total)) {
            abort();
        }
    }
    if (code == RL_RPC_OK &&
        rl_txn_asm_finish(&a, err, sizeof(err)) == RL_RPC_OK) {
        if (!a.last_seen || a.received != a.total || a.chunks == 0) {
            abort();
        }
    }
    rl_txn_asm_free(&a);
    return 0;
}
