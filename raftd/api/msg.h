/*
** raftd/api/msg.h -- encoding and decoding of the API's protobuf messages,
** shared by the SQL service and the cluster handlers.
**
** A response must never exceed the call's message limit: rl_api_pack
** refuses it (RESOURCE_EXHAUSTED) before it is built.
*/
#ifndef RL_API_MSG_H
#define RL_API_MSG_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "errbuf.h"
#include "rpc.h"

/* Encodes m into *out (malloc'd) if it fits in max bytes. RL_RPC_OK, or
** RESOURCE_EXHAUSTED with err (too large, out of memory). */
int rl_api_pack(const ProtobufCMessage *m, size_t max, rl_rpc_buf *out,
                char *err, size_t errlen);

/* Declares `type *var` decoded from (req, len) with the protobuf-c unpack
** function fn, or returns INVALID_ARGUMENT from the enclosing handler with
** err naming what was expected. */
#define RL_API_DECODE(type, fn, var, what)                                     \
    type *var = fn(NULL, len, req);                                            \
    if (!var) {                                                                \
        rl_seterr(                                                             \
            err, errlen,                                                       \
            "malformed %s: the bytes are not a valid protobuf message of "     \
            "that type",                                                       \
            what);                                                             \
        return RL_RPC_INVALID_ARGUMENT;                                        \
    }

#endif /* RL_API_MSG_H */
