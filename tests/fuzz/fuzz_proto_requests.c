/*
** tests/fuzz/fuzz_proto_requests.c -- libFuzzer target for the request
** decoders of raftlite's gRPC API: the first input byte picks a method of
** rl_service_unary (which unpacks the protobuf-c request, runs it on an
** in-memory database and encodes the response) or a bare unpack of a
** message the streaming RPCs and node-to-node clients decode. The service
** is reopened every 500 inputs so that state cannot grow without bound.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "raftlite.pb-c.h"
#include "rpc.h"
#include "service.h"

static rl_service *svc;
static unsigned uses;
static int64_t deadline;

static int64_t remaining(void *ctx)
{
    int64_t now = rl_rpc_now_ms();
    (void)ctx;
    return deadline > now ? deadline - now : 0;
}

static const char *const methods[] = {
    "ExecuteWrite", "ExecuteRead", "Join",      "ExecuteTransaction", "Remove",
    "Status",       "Leader",      "ReadIndex", "NoSuchMethod",
};
/* Selectors 14 and 15 (added with the cluster RPCs; the numbers below 14
** keep their meaning so that older seeds still aim where they did). */
static const char *const methods2[] = {"Transfer", "Nodes"};

/* The bare unpacks, by selector (9..17 but 14 and 15). */
static const ProtobufCMessageDescriptor *const bare[18] = {
    [9] = &proto__fetch_image_request__descriptor,
    [10] = &proto__image_chunk__descriptor,
    [11] = &proto__forward_txn_response__descriptor,
    [12] = &proto__read_response__descriptor,
    [13] = &proto__txn_chunk__descriptor,
    [16] = &proto__nodes_response__descriptor, /* rl_cluster_nodes decodes */
    [17] = &proto__join_response__descriptor,  /* rl_cluster_join decodes */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    rl_rpc_buf reply;
    unsigned sel;
    if (size < 1) {
        return 0;
    }
    sel = data[0] % 18;
    data++;
    size--;
    if (sel >= 9 && sel != 14 && sel != 15) {
        ProtobufCMessage *m =
            protobuf_c_message_unpack(bare[sel], NULL, size, data);
        if (m) {
            /* A decoded message must encode again without trouble. */
            size_t n = protobuf_c_message_get_packed_size(m);
            uint8_t *buf = malloc(n ? n : 1);
            if (buf && protobuf_c_message_pack(m, buf) != n) {
                abort();
            }
            free(buf);
            protobuf_c_message_free_unpacked(m, NULL);
        }
        return 0;
    }
    if (!svc || ++uses % 500 == 0) {
        rl_service_config cfg;
        rl_service_close(svc);
        memset(&cfg, 0, sizeof(cfg));
        cfg.node_id = "fuzz";
        cfg.db_path = ":memory:";
        cfg.max_msg_bytes = 1 << 20;
        cfg.max_value_bytes = 1 << 20;
        svc = rl_service_open(&cfg, err, sizeof(err));
        if (!svc) {
            abort();
        }
    }
    deadline = rl_rpc_now_ms() + 50;
    int code =
        rl_service_unary(svc, sel < 9 ? methods[sel] : methods2[sel - 14], data,
                         size, remaining, NULL, &reply, err, sizeof(err));
    if (code == RL_RPC_OK) {
        if (!reply.data) {
            abort(); /* OK always carries a response */
        }
    } else if (!err[0]) {
        abort(); /* an error status always says why */
    }
    rl_rpc_buf_free(&reply);
    return 0;
}
