/*
** raftd/api/msg.c -- rl_api_pack (see msg.h). It must never build a
** response larger than the caller's limit.
*/
#include "msg.h"

#include <stdlib.h>

int rl_api_pack(const ProtobufCMessage *m, size_t max, rl_rpc_buf *out,
                char *err, size_t errlen)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > max) {
        rl_seterr(
            err, errlen,
            "response of %zu bytes exceeds the message limit of %zu bytes", n,
            max);
        return RL_RPC_RESOURCE_EXHAUSTED;
    }
    out->data = malloc(n ? n : 1);
    if (!out->data) {
        rl_seterr(err, errlen, "out of memory");
        return RL_RPC_RESOURCE_EXHAUSTED;
    }
    out->len = protobuf_c_message_pack(m, out->data);
    return RL_RPC_OK;
}
