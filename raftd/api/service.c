/*
** raftd/api/service.c -- the unary handlers of raftlite's gRPC API, run against
** the node's local SQLite database (see service.h): open and close, the
** standalone answers and the dispatch; connections and the statement
** helpers are service_conn.c, reads service_read.c, writes
** service_write.c, ForwardTxn's framing txnasm.c.
**
** It must never call gRPC (it is fuzzed without a server) and never let a
** request touch anything but the node's own database or leave state for
** the next call: every connection runs under the allow-list of
** sqlguard.h (no ATTACH, no TEMP objects, no setting PRAGMAs, named
** functions only, DEFENSIVE), reads run on read-only connections and
** must pass sqlite3_stmt_readonly, and SQLITE_LIMIT_LENGTH/SQL_LENGTH
** follow the message limit.
**
** Connections: one writer, used by group commit (group.h: concurrent
** write requests run as one transaction and one Raft entry, each in its
** own savepoint; a call waits in the queue only until its deadline), and
** a pool of read-only readers, so reads proceed while a write waits on a
** lock (WAL mode).
** Every connection carries the deadline of the call using it: the busy
** handler and the progress handler give up when it passes
** (service_conn.c).
*/
#include "service_int.h"
#include "methods.h"
#include "errbuf.h"
#include "fsio.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault.h"
SQLITE_EXTENSION_INIT3

#define RL_VERSION      "0.1.0"
#define DEFAULT_MAX_MSG (4u << 20)
/* Requests per group commit: bounds the entry a batch makes and the wait of
** its last request behind the others' statements. */
#define GROUP_MAX 32

rl_service *rl_service_open(const rl_service_config *cfg, char *err,
                            size_t errlen)
{
    rl_service *svc = calloc(1, sizeof(*svc));
    if (!svc) {
        rl_seterr(err, errlen, "out of memory");
        return NULL;
    }
    if (rl_group_init(&svc->group, GROUP_MAX, rl_svc_run_batch, svc) != 0) {
        rl_seterr(err, errlen, "out of memory");
        free(svc);
        return NULL;
    }
    pthread_mutex_init(&svc->rmu, NULL);
    pthread_mutex_init(&svc->smu, NULL);
    svc->node_id = dupstr(cfg->node_id);
    svc->grpc_addr = dupstr(cfg->grpc_addr);
    svc->raft_addr = dupstr(cfg->raft_addr);
    svc->db_path = dupstr(cfg->db_path);
    svc->max_msg = cfg->max_msg_bytes ? cfg->max_msg_bytes : DEFAULT_MAX_MSG;
    svc->max_value_bytes = cfg->max_value_bytes;
    svc->host = cfg->host;
    if (cfg->hooks)
        svc->hooks = *cfg->hooks;
    if (!svc->node_id || !svc->grpc_addr || !svc->raft_addr || !svc->db_path) {
        rl_seterr(err, errlen, "out of memory");
        rl_service_close(svc);
        return NULL;
    }
    svc->writer = rl_svc_conn_open(svc, 0, err, errlen);
    if (!svc->writer) {
        rl_service_close(svc);
        return NULL;
    }
    return svc;
}

void rl_service_close(rl_service *svc)
{
    conn *c, *next;
    if (!svc) {
        return;
    }
    rl_svc_conn_close(svc->writer);
    for (c = svc->readers; c; c = next) {
        next = c->next;
        rl_svc_conn_close(c);
    }
    free(svc->node_id);
    free(svc->grpc_addr);
    free(svc->raft_addr);
    free(svc->db_path);
    rl_group_close(&svc->group);
    pthread_mutex_destroy(&svc->rmu);
    pthread_mutex_destroy(&svc->smu);
    free(svc);
}

const char *rl_service_db_path(rl_service *svc)
{
    return svc->db_path;
}

struct rl_host *rl_service_host(rl_service *svc)
{
    return svc->host;
}

const char *rl_service_node_id(rl_service *svc)
{
    return svc->node_id;
}

void rl_service_set_auth(rl_service *svc, const struct rl_auth *auth, int mtls)
{
    svc->auth = auth;
    svc->auth_mtls = mtls;
}

const struct rl_auth *rl_service_auth(rl_service *svc, int *mtls)
{
    *mtls = svc->auth_mtls;
    return svc->auth;
}

void rl_service_count_call(rl_service *svc)
{
    pthread_mutex_lock(&svc->smu);
    svc->served++;
    pthread_mutex_unlock(&svc->smu);
}

size_t rl_service_max_msg(rl_service *svc)
{
    return svc->max_msg;
}

void rl_service_set_stop_reason(rl_service *svc, rl_stop_reason_fn fn)
{
    svc->stop_reason = fn;
}

/* Without a host (raftd started without -bootstrap or -join on a database
** that is not a node) there is no cluster to act on: say so and how to get
** one. */
#define STANDALONE                                                             \
    "this node runs standalone (raftd started without -bootstrap or -join), "  \
    "so it belongs to no cluster: ask a cluster member, or restart this node " \
    "with -bootstrap to start a cluster"

/* A cluster request a standalone node refuses (reqd: its request, respd:
** its response, whose `error` field gets why, formatted with the request's
** node_id if why has a %s). INVALID_ARGUMENT if the request does not
** decode, as for every method. */
static int refuse(rl_service *svc, const ProtobufCMessageDescriptor *reqd,
                  const ProtobufCMessageDescriptor *respd, const char *why,
                  const uint8_t *req, size_t len, rl_rpc_buf *reply, char *err,
                  size_t errlen)
{
    const ProtobufCFieldDescriptor *ef =
        protobuf_c_message_descriptor_get_field_by_name(respd, "error");
    const ProtobufCFieldDescriptor *nf =
        protobuf_c_message_descriptor_get_field_by_name(reqd, "node_id");
    ProtobufCMessage *r = protobuf_c_message_unpack(reqd, NULL, len, req);
    const char *id = "";
    char msg[512];
    void *resp;
    int code;
    if (!r) {
        rl_seterr(err, errlen,
                  "malformed %s: the bytes are not a valid protobuf message "
                  "of that type",
                  reqd->short_name);
        return RL_RPC_INVALID_ARGUMENT;
    }
    if (nf) {
        id = *(const char *const *)((const char *)r + nf->offset);
    }
    rl_seterr(msg, sizeof(msg), why, id);
    resp = calloc(1, respd->sizeof_message);
    if (!resp || !ef) {
        free(resp);
        protobuf_c_message_free_unpacked(r, NULL);
        rl_seterr(err, errlen, "out of memory");
        return RL_RPC_RESOURCE_EXHAUSTED;
    }
    respd->message_init(resp);
    *(char **)((char *)resp + ef->offset) = msg;
    code = rl_api_pack(resp, svc->max_msg, reply, err, errlen);
    free(resp);
    protobuf_c_message_free_unpacked(r, NULL);
    return code;
}

static int do_status(rl_service *svc, const uint8_t *req, size_t len,
                     rl_rpc_buf *reply, char *err, size_t errlen)
{
    RL_API_DECODE(Proto__StatusRequest, proto__status_request__unpack, r,
                  "StatusRequest");
    Proto__StatusResponse resp = PROTO__STATUS_RESPONSE__INIT;
    resp.node_id = svc->node_id;
    resp.grpc_addr = svc->grpc_addr;
    resp.raft_addr = svc->raft_addr;
    resp.role = (char *)"standalone";
    resp.database = svc->db_path;
    resp.version = (char *)RL_VERSION;
    resp.sqlite_version = (char *)sqlite3_libversion();
    pthread_mutex_lock(&svc->smu);
    resp.calls_served = svc->served;
    pthread_mutex_unlock(&svc->smu);
    proto__status_request__free_unpacked(r, NULL);
    return rl_api_pack(&resp.base, svc->max_msg, reply, err, errlen);
}

static int do_read_index(rl_service *svc, const uint8_t *req, size_t len,
                         char *err, size_t errlen)
{
    RL_API_DECODE(Proto__ReadIndexRequest, proto__read_index_request__unpack, r,
                  "ReadIndexRequest");
    (void)svc;
    proto__read_index_request__free_unpacked(r, NULL);
    rl_seterr(err, errlen, "ReadIndex needs a Raft leader: %s", STANDALONE);
    return RL_RPC_FAILED_PRECONDITION;
}

int rl_service_unary(rl_service *svc, const char *method, const uint8_t *req,
                     size_t len, rl_remaining_fn rem, void *ctx,
                     rl_rpc_buf *reply, char *err, size_t errlen)
{
    const rl_api_method *m = rl_api_method_find(method);
    int code;
    reply->data = NULL;
    reply->len = 0;
    err[0] = 0;
    switch (m ? (int)m->id : -1) {
    case RL_M_EXECUTE_WRITE:
        code = rl_svc_write(svc, req, len, rem, ctx, reply, err, errlen);
        break;
    case RL_M_EXECUTE_READ:
        code = rl_svc_read(svc, req, len, rem, ctx, reply, err, errlen);
        break;
    case RL_M_EXECUTE_TXN:
        code = rl_svc_txn(svc, req, len, rem, ctx, reply, err, errlen);
        break;
    case RL_M_JOIN:
        code = refuse(svc, &proto__join_request__descriptor,
                      &proto__join_response__descriptor,
                      "cannot add node '%s': " STANDALONE, req, len, reply, err,
                      errlen);
        break;
    case RL_M_REMOVE:
        code = refuse(svc, &proto__remove_request__descriptor,
                      &proto__remove_response__descriptor,
                      "cannot remove node '%s': " STANDALONE, req, len, reply,
                      err, errlen);
        break;
    case RL_M_STATUS:
        code = do_status(svc, req, len, reply, err, errlen);
        break;
    case RL_M_LEADER:
        code = refuse(svc, &proto__leader_request__descriptor,
                      &proto__leader_response__descriptor,
                      "no leader: " STANDALONE, req, len, reply, err, errlen);
        break;
    case RL_M_TRANSFER:
        code = refuse(svc, &proto__transfer_request__descriptor,
                      &proto__transfer_response__descriptor,
                      "cannot transfer leadership: " STANDALONE, req, len,
                      reply, err, errlen);
        break;
    case RL_M_NODES:
        code = refuse(svc, &proto__nodes_request__descriptor,
                      &proto__nodes_response__descriptor,
                      "no cluster nodes: " STANDALONE, req, len, reply, err,
                      errlen);
        break;
    case RL_M_READ_INDEX:
        code = do_read_index(svc, req, len, err, errlen);
        break;
    default: /* unknown, or not unary */
        rl_seterr(err, errlen, "unknown method %s", method);
        code = RL_RPC_UNIMPLEMENTED;
        break;
    }
    pthread_mutex_lock(&svc->smu);
    svc->served++;
    pthread_mutex_unlock(&svc->smu);
    return code;
}

int rl_service_propose_txn(rl_service *svc, const struct rl_txn_asm *a,
                           int64_t remaining_ms, uint64_t *index, char *why,
                           size_t whylen)
{
    *index = 0;
    if (!svc->hooks.propose_txn) {
        rl_seterr(why, whylen,
                  "this node is standalone: it commits no forwarded "
                  "transaction");
        return -1;
    }
    return svc->hooks.propose_txn(svc->hooks.ctx, a, remaining_ms, index, why,
                                  whylen);
}
