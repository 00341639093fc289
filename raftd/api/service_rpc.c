/*
** raftd/api/service_rpc.c -- binds the service (service.c) to the gRPC wrapper
** (rpc.h): the unary RPCs of both services and the streaming internal
** RPCs, ForwardTxn, ForwardSession and FetchImage.
**
** A service with a host offers each unary call to the cluster layer
** (cluster.h) first: it forwards to the leader or serves the cluster RPCs,
** and hands the rest back to service.c.
**
** ForwardTxn checks the chunk framing; a stream whose first chunk names
** an origin is a follower's transaction, committed through the host's
** propose_txn hook (host.c) and answered with its index and outcome; any
** other stream is transport only (length and CRC-32 of what arrived).
** ForwardSession carries such transactions one after another on one call
** (forward_session_cb says when it ends).
**
** FetchImage with name RL_IMAGE_FETCH_NAME ("@image") streams a consistent
** image of the node's database (vfs/image.h: one read transaction's pages
** paired with the applied index), read through a private connection of the
** raft VFS that lives for the call; with any other name it streams the
** database file as it is on disk (the bulk-transfer test uses that).
** FetchImage must never serve any other path: the request may only name
** the database file's own base name or the image.
**
** Every call passes authorize (raftd/api/auth.h: who the caller is, and the
** permission its method needs) before any handler runs: nothing is
** decoded beyond the request the check needs, nothing served before it.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "auth.h"
#include "certid.h"
#include "cluster.h"
#include "host.h"
#include "image.h"
#include "image_fetch.h"
#include "methods.h"
#include "node.h"
#include "raftlite.pb-c.h"
#include "reqcheck.h"
#include "service.h"
#include "sqlite3ext.h"
#include "vfs.h"
SQLITE_EXTENSION_INIT3

static int64_t call_remaining(void *ctx)
{
    return rl_rpc_call_remaining_ms(ctx);
}

static const char *call_stop_reason(void *ctx)
{
    return rl_rpc_call_stop_reason(ctx);
}

/* rl_auth_server.is_member: this node, or a node of the configuration
** (a voter, standby or spare) whose replicated id is node_id. */
static int is_member(void *ctx, const char *node_id)
{
    rl_service *svc = ctx;
    struct rl_host *h = rl_service_host(svc);
    struct rl_member *ms = NULL;
    unsigned n = 0, i;
    uint64_t rid;
    int found = 0;
    if (!strcmp(node_id, rl_service_node_id(svc)))
        return 1;
    if (!h || rl_node_members(rl_host_node(h), &ms, &n) != RL_NODE_OK)
        return 0;
    rid = rl_raft_id_of(node_id);
    for (i = 0; i < n && !found; i++)
        found = ms[i].raft_id == rid &&
                (!ms[i].has_meta || !strcmp(ms[i].meta.node_id, node_id));
    free(ms);
    return found;
}

/*
** The one permission check of every call (raftd/api/auth.h has the table):
** who the caller is (the verified certificate's identity, or a user whose
** password matches), and whether the method allows it. join_id: the id a
** JoinRequest names; method: the table entry to check, if not the
** method's own (FetchImage of the header alone). 0 to serve the call,
** else the status code it was answered with (PERMISSION_DENIED or
** UNAUTHENTICATED, naming the permission and the caller).
*/
static int authorize(rl_rpc_call *call, rl_service *svc, const char *method,
                     const char *join_id)
{
    const char *m = strrchr(rl_rpc_call_method(call), '/');
    rl_auth_server as;
    rl_auth_caller c;
    char user[RL_AUTH_NAME_MAX + 1], pass[1024], cerr[256];
    char err[RL_RPC_ERRMAX];
    const char *pem;
    size_t len = 0;
    int code, ru, rp;
    memset(&as, 0, sizeof as);
    memset(&c, 0, sizeof c);
    as.auth = rl_service_auth(svc, &as.mtls);
    as.is_member = is_member;
    as.ctx = svc;
    c.tls = rl_rpc_call_tls(call);
    pem = rl_rpc_call_peer_cert(call, &len);
    if (pem) {
        if (rl_cert_identity_pem(pem, len, &c.cert, cerr, sizeof cerr) == 0)
            c.has_cert = 1;
        else
            c.cert_err = cerr;
    }
    ru = rl_rpc_call_metadata(call, RL_AUTH_MD_USER, user, sizeof user);
    rp = rl_rpc_call_metadata(call, RL_AUTH_MD_PASSWORD, pass, sizeof pass);
    if (ru < 0 || rp < 0) {
        return rl_rpc_call_error(call, RL_RPC_UNAUTHENTICATED,
                                 "metadata %s is longer than %zu bytes or "
                                 "holds a NUL",
                                 ru < 0 ? RL_AUTH_MD_USER : RL_AUTH_MD_PASSWORD,
                                 ru < 0 ? sizeof user - 1 : sizeof pass - 1);
    }
    c.user = ru ? user : NULL;
    c.password = rp ? pass : NULL;
    if (!method)
        method = m ? m + 1 : "";
    code = rl_auth_decide(&as, method, &c, join_id, NULL, 0, err, sizeof err);
    explicit_bzero(pass, sizeof pass);
    return code ? rl_rpc_call_error(call, code, "%s", err) : 0;
}

static int unary_cb(rl_rpc_call *call, void *arg)
{
    rl_service *svc = arg;
    const char *m = strrchr(rl_rpc_call_method(call), '/');
    const rl_api_method *am = rl_api_method_find(m + 1);
    rl_rpc_buf req, reply;
    char err[RL_RPC_ERRMAX];
    int code, got = rl_rpc_call_recv(call, &req);
    if (got < 0) {
        return rl_rpc_call_error(call, RL_RPC_CANCELLED,
                                 "request not received (call cancelled or "
                                 "message too large)");
    }
    if (got == 0) {
        return rl_rpc_call_error(call, RL_RPC_INVALID_ARGUMENT,
                                 "no request message: %s is unary",
                                 rl_rpc_call_method(call));
    }
    if (am && am->id == RL_M_JOIN) {
        /* The check needs the id the node joins as. */
        Proto__JoinRequest *jr =
            proto__join_request__unpack(NULL, req.len, req.data);
        code = authorize(call, svc, NULL, jr ? jr->node_id : NULL);
        if (jr)
            proto__join_request__free_unpacked(jr, NULL);
    } else {
        code = authorize(call, svc, NULL, NULL);
    }
    if (code != 0) {
        rl_rpc_buf_free(&req);
        return code;
    }
    code = RL_CLUSTER_PASS;
    if (rl_service_host(svc)) {
        code = rl_cluster_serve(svc, rl_service_host(svc), m + 1, req.data,
                                req.len, call_remaining, call, &reply, err,
                                sizeof(err));
    }
    if (code == RL_CLUSTER_PASS) {
        code = rl_service_unary(svc, m + 1, req.data, req.len, call_remaining,
                                call, &reply, err, sizeof(err));
    } else if (!am || am->id != RL_M_STATUS) {
        rl_service_count_call(svc); /* Status counted itself (service.c) */
    }
    rl_rpc_buf_free(&req);
    if (code != RL_RPC_OK) {
        return rl_rpc_call_error(call, code, "%s", err);
    }
    if (rl_rpc_call_remaining_ms(call) == 0) {
        rl_rpc_buf_free(&reply);
        return rl_rpc_call_error(call, RL_RPC_DEADLINE_EXCEEDED, "%s",
                                 rl_rpc_call_stop_reason(call));
    }
    if (rl_rpc_call_send(call, reply.data, reply.len) != 0) {
        rl_rpc_buf_free(&reply);
        return rl_rpc_call_error(call, RL_RPC_CANCELLED,
                                 "response not sent: the client is gone");
    }
    rl_rpc_buf_free(&reply);
    return RL_RPC_OK;
}

/*
** Answers the complete transaction a on call: proposed when it commits
** (a follower's), else transport only (its length and CRC-32). Returns
** RL_RPC_OK once the answer was sent, else the code the call ends with.
*/
static int forward_answer(rl_rpc_call *call, rl_service *svc, rl_txn_asm *a)
{
    Proto__ForwardTxnResponse resp = PROTO__FORWARD_TXN_RESPONSE__INIT;
    char why[RL_RPC_ERRMAX];
    uint8_t *out;
    size_t n;
    int sent;
    resp.success = 1;
    resp.received_bytes = a->received;
    resp.crc32 = a->crc;
    if (a->commit) {
        /* A follower's transaction: commit it through Raft. */
        int outcome =
            rl_service_propose_txn(svc, a, rl_rpc_call_remaining_ms(call),
                                   &resp.index, why, sizeof why);
        if (outcome < 0) {
            return rl_rpc_call_error(call, RL_RPC_FAILED_PRECONDITION, "%s",
                                     why);
        }
        resp.outcome = (Proto__WriteOutcome)outcome;
        resp.success = outcome == RL_OUTCOME_APPLIED;
        if (!resp.success) {
            resp.error = why;
        }
    }
    n = proto__forward_txn_response__get_packed_size(&resp);
    out = malloc(n ? n : 1);
    if (!out) {
        return rl_rpc_call_error(call, RL_RPC_RESOURCE_EXHAUSTED,
                                 "out of memory");
    }
    proto__forward_txn_response__pack(&resp, out);
    sent = rl_rpc_call_send(call, out, n);
    free(out);
    return sent == 0
               ? RL_RPC_OK
               : rl_rpc_call_error(call, RL_RPC_CANCELLED, "response not sent");
}

/* Receives the rest of a transaction whose first chunk a has, up to the
** chunk marked last: RL_RPC_OK, or the code the call ends with. */
static int forward_rest(rl_rpc_call *call, rl_txn_asm *a)
{
    rl_rpc_buf msg;
    char err[RL_RPC_ERRMAX];
    int got, code;
    while (!a->last_seen && (got = rl_rpc_call_recv(call, &msg)) == 1) {
        code = rl_txn_asm_add(a, msg.data, msg.len, err, sizeof(err));
        rl_rpc_buf_free(&msg);
        if (code != RL_RPC_OK) {
            return rl_rpc_call_error(call, code, "%s", err);
        }
    }
    code = rl_txn_asm_finish(a, err, sizeof(err));
    return code == RL_RPC_OK ? code : rl_rpc_call_error(call, code, "%s", err);
}

static int forward_txn_cb(rl_rpc_call *call, void *arg)
{
    rl_txn_asm a;
    rl_rpc_buf msg;
    char err[RL_RPC_ERRMAX];
    int got, code;
    rl_service *svc = arg;
    if ((code = authorize(call, arg, NULL, NULL)) != 0)
        return code;
    rl_service_count_call(svc);
    rl_txn_asm_init(&a);
    while ((got = rl_rpc_call_recv(call, &msg)) == 1) {
        code = rl_txn_asm_add(&a, msg.data, msg.len, err, sizeof(err));
        rl_rpc_buf_free(&msg);
        if (code != RL_RPC_OK) {
            rl_txn_asm_free(&a);
            return rl_rpc_call_error(call, code, "%s", err);
        }
    }
    if (got < 0) {
        rl_txn_asm_free(&a);
        return rl_rpc_call_error(call, RL_RPC_CANCELLED,
                                 "ForwardTxn stream broken after %llu bytes",
                                 (unsigned long long)a.received);
    }
    code = rl_txn_asm_finish(&a, err, sizeof(err));
    if (code == RL_RPC_OK)
        code = forward_answer(call, svc, &a);
    else
        code = rl_rpc_call_error(call, code, "%s", err);
    rl_txn_asm_free(&a);
    return code;
}

/* How long a forward session may stay quiet before its handler ends it
** (status OK): well beyond the client's reuse window (peers.c), so that
** a client finds a session ended only after a restart or a stop. */
#define SESSION_QUIET_MS 15000
/* A session's caller is authorized again (authorize: its identity, its
** membership, the auth file's permissions as reloaded) before a
** transaction when this long passed since the last time: a node removed
** or a permission revoked stops writing within a second, and a busy
** session does not parse the peer's certificate for every write. */
#define SESSION_REAUTH_MS 1000
/* A session stops taking transactions when its call has less than this
** left, or half of what it had at first when that is less (a short
** -max-stream-ms): the last one taken still has time for its answer. */
#define SESSION_RESERVE_MS 20000

/*
** ForwardSession: ForwardTxn's transactions one after another on one
** call, each answered before the next is read (a follower's host keeps
** one open to the leader: rl_cluster_forward_txn). Only transactions to
** commit. It ends itself with status OK, between transactions, when the
** stream is quiet, the server stops, or the call nears its deadline;
** it never ends with OK while it holds a transaction it proposed without
** answering: a client that sees OK and no answer knows that its
** transaction was never proposed (rl_rpc_call_recv_wait).
*/
static int forward_session_cb(rl_rpc_call *call, void *arg)
{
    rl_service *svc = arg;
    int64_t reserve = rl_rpc_call_remaining_ms(call) / 2;
    int64_t authorized = rl_rpc_now_ms();
    int code;
    if ((code = authorize(call, arg, NULL, NULL)) != 0)
        return code;
    if (reserve > SESSION_RESERVE_MS)
        reserve = SESSION_RESERVE_MS;
    for (;;) {
        rl_txn_asm a;
        rl_rpc_buf msg;
        char err[RL_RPC_ERRMAX];
        int64_t left = rl_rpc_call_remaining_ms(call) - reserve;
        int got;
        if (left <= 0)
            return RL_RPC_OK; /* ends between transactions */
        got = rl_rpc_call_recv_wait(
            call, &msg, left < SESSION_QUIET_MS ? left : SESSION_QUIET_MS);
        if (got == 2 || got == 0)
            return RL_RPC_OK; /* quiet, stopping, or the client closed */
        if (got < 0)
            return rl_rpc_call_error(call, RL_RPC_CANCELLED,
                                     "ForwardSession stream broken");
        if (rl_rpc_now_ms() - authorized >= SESSION_REAUTH_MS) {
            if ((code = authorize(call, arg, NULL, NULL)) != 0) {
                rl_rpc_buf_free(&msg);
                return code; /* refused before anything was proposed */
            }
            authorized = rl_rpc_now_ms();
        }
        rl_service_count_call(svc);
        rl_txn_asm_init(&a);
        code = rl_txn_asm_add(&a, msg.data, msg.len, err, sizeof(err));
        rl_rpc_buf_free(&msg);
        if (code != RL_RPC_OK)
            code = rl_rpc_call_error(call, code, "%s", err);
        else if (!a.commit)
            code = rl_rpc_call_error(call, RL_RPC_INVALID_ARGUMENT,
                                     "ForwardSession carries transactions to "
                                     "commit only (a first chunk with "
                                     "origin_node); use ForwardTxn");
        else
            code = forward_rest(call, &a);
        if (code == RL_RPC_OK)
            code = forward_answer(call, svc, &a);
        rl_txn_asm_free(&a);
        if (code != RL_RPC_OK)
            return code;
    }
}

/* Fills the next ImageChunk of a stream with buf[0..n) at *off (advanced
** by n): its CRC-32, the stream's running CRC-32 (*scrc, sent with the
** last chunk, the one that reaches end) and the total size. */
static void fill_chunk(Proto__ImageChunk *ic, uint64_t *off, const uint8_t *buf,
                       size_t n, uint64_t total, uint64_t end, uint32_t *scrc)
{
    ic->offset = *off;
    ic->data.data = (uint8_t *)buf;
    ic->data.len = n;
    ic->crc32 = (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, (uInt)n);
    *scrc = (uint32_t)crc32(*scrc, buf, (uInt)n);
    ic->total_size = total;
    *off += n;
    ic->last = *off >= end;
    if (ic->last) {
        ic->stream_crc32 = *scrc;
    }
}

/* Streams [off, end) of fd as ImageChunks. */
static int stream_image(rl_rpc_call *call, int fd, uint64_t size, uint64_t off,
                        uint64_t end, size_t chunk)
{
    uint8_t *buf = malloc(chunk), *out = NULL;
    uint32_t scrc = (uint32_t)crc32(0L, Z_NULL, 0);
    int code = RL_RPC_OK;
    if (!buf || !(out = malloc(chunk + 128))) {
        free(buf);
        return rl_rpc_call_error(call, RL_RPC_RESOURCE_EXHAUSTED,
                                 "out of memory");
    }
    do {
        Proto__ImageChunk ic = PROTO__IMAGE_CHUNK__INIT;
        size_t want = end - off < chunk ? (size_t)(end - off) : chunk, got = 0;
        while (got < want) {
            ssize_t r = pread(fd, buf + got, want - got, (off_t)(off + got));
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r <= 0) {
                code = rl_rpc_call_error(call, RL_RPC_DATA_LOSS,
                                         "image read failed at offset %llu: %s",
                                         (unsigned long long)(off + got),
                                         r < 0 ? strerror(errno)
                                               : "file shrank while streaming");
                goto out;
            }
            got += (size_t)r;
        }
        if (rl_rpc_call_remaining_ms(call) == 0) {
            code = rl_rpc_call_error(
                call, RL_RPC_DEADLINE_EXCEEDED, "stopped at offset %llu: %s",
                (unsigned long long)off, rl_rpc_call_stop_reason(call));
            goto out;
        }
        fill_chunk(&ic, &off, buf, want, size, end, &scrc);
        size_t n = proto__image_chunk__pack(&ic, out);
        if (rl_rpc_call_send(call, out, n) != 0) {
            code = rl_rpc_call_error(call, RL_RPC_CANCELLED,
                                     "client went away at offset %llu",
                                     (unsigned long long)off);
            goto out;
        }
    } while (off < end);
out:
    free(buf);
    free(out);
    return code;
}

/* Longest wait for the database write lock when an image is taken. */
#define IMAGE_LOCK_MS 10000

/* Maps an rl_image_* code of the source to a status code. */
static int image_status(int rc)
{
    switch (rc) {
    case RL_IMAGE_EARG:
        return RL_RPC_FAILED_PRECONDITION;
    case RL_IMAGE_ENOMEM:
        return RL_RPC_RESOURCE_EXHAUSTED;
    case RL_IMAGE_EIO:
        return RL_RPC_DATA_LOSS;
    default:
        return RL_RPC_UNAVAILABLE;
    }
}

/* Streams the consistent image of the node's database: header first, then
** the pages as the source reads them, then the trailer, in ImageChunks of
** at most chunk bytes; stream_crc32 on the last. */
static int serve_image(rl_rpc_call *call, rl_service *svc,
                       const rl_fetch_plan *r)
{
    size_t chunk = r->chunk;
    const char *path = rl_service_db_path(svc);
    sqlite3 *db = NULL;
    rl_image_src *src = NULL;
    const rl_image_info *info;
    uint8_t *buf = NULL, *out = NULL;
    uint64_t off = 0, total, end;
    uint32_t scrc = (uint32_t)crc32(0L, Z_NULL, 0);
    int64_t left = rl_rpc_call_remaining_ms(call);
    char err[512];
    int code = RL_RPC_OK, rc;

    if (!sqlite3_vfs_find("raft"))
        return rl_rpc_call_error(call, RL_RPC_FAILED_PRECONDITION,
                                 "no raft VFS in this process: this node "
                                 "serves no replicated database");
    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                         "raft");
    if (rc != SQLITE_OK) {
        code = rl_rpc_call_error(call, RL_RPC_UNAVAILABLE,
                                 "cannot open the database %s: %s", path,
                                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        goto out;
    }
    sqlite3_busy_timeout(db, 5000);
    rc = rl_image_src_open(db, left < IMAGE_LOCK_MS ? (int)left : IMAGE_LOCK_MS,
                           &src, err, sizeof err);
    if (rc != RL_IMAGE_OK) {
        code = rl_rpc_call_error(call, image_status(rc), "%s", err);
        goto out;
    }
    info = rl_image_src_info(src);
    if (info->index < r->min_index) {
        code = rl_rpc_call_error(call, RL_RPC_FAILED_PRECONDITION,
                                 "this node's database is at index %llu, "
                                 "below the %llu asked for: ask another peer",
                                 (unsigned long long)info->index,
                                 (unsigned long long)r->min_index);
        goto out;
    }
    total = rl_image_size(info);
    /* length > 0: only the image's first bytes (48 = the header: page
    ** size and index without the transfer). total_size stays the image's.
    ** The offset is 0 (rl_req_fetch_image): the range is always valid. */
    rl_req_fetch_range(r, total, &end, err, sizeof err);
    if (!(buf = malloc(chunk)) || !(out = malloc(chunk + 128))) {
        code =
            rl_rpc_call_error(call, RL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    while (off < end) {
        Proto__ImageChunk ic = PROTO__IMAGE_CHUNK__INIT;
        size_t got = 0, n;
        rc = rl_image_src_read(src, buf,
                               end - off < chunk ? (size_t)(end - off) : chunk,
                               &got, err, sizeof err);
        if (rc != RL_IMAGE_OK || got == 0) {
            code = rl_rpc_call_error(
                call, RL_RPC_DATA_LOSS, "image read failed at offset %llu: %s",
                (unsigned long long)off, rc ? err : "ended early");
            goto out;
        }
        if (rl_rpc_call_remaining_ms(call) == 0) {
            code = rl_rpc_call_error(
                call, RL_RPC_DEADLINE_EXCEEDED, "stopped at offset %llu: %s",
                (unsigned long long)off, rl_rpc_call_stop_reason(call));
            goto out;
        }
        fill_chunk(&ic, &off, buf, got, total, end, &scrc);
        n = proto__image_chunk__pack(&ic, out);
        if (rl_rpc_call_send(call, out, n) != 0) {
            code = rl_rpc_call_error(call, RL_RPC_CANCELLED,
                                     "client went away at offset %llu",
                                     (unsigned long long)off);
            goto out;
        }
    }
out:
    free(buf);
    free(out);
    rl_image_src_close(src);
    sqlite3_close(db); /* NULL-safe; ends nothing else: the call owns it */
    return code;
}

static int fetch_image_cb(rl_rpc_call *call, void *arg)
{
    rl_service *svc = arg;
    const char *path = rl_service_db_path(svc);
    const char *base = strrchr(path, '/');
    rl_fetch_plan plan;
    rl_rpc_buf msg;
    struct stat sb;
    uint64_t end;
    char why[512];
    int fd, code, got = rl_rpc_call_recv(call, &msg);
    base = base ? base + 1 : path;
    if (got != 1) {
        return rl_rpc_call_error(call, RL_RPC_INVALID_ARGUMENT,
                                 "FetchImage needs one FetchImageRequest");
    }
    /* Name, offset and chunk size are checked by reqcheck.c (fuzzed). */
    code = rl_req_fetch_image(msg.data, msg.len, base, rl_service_max_msg(svc),
                              &plan, why, sizeof why);
    rl_rpc_buf_free(&msg);
    if (code != RL_RPC_OK) {
        return rl_rpc_call_error(call, code, "%s", why);
    }
    /* The image's header alone (page size and index: what a node asks
    ** before it joins) needs 'status'; anything more, 'backup' or a
    ** member node. */
    code = authorize(call, svc,
                     plan.image && plan.length &&
                             plan.length <= RL_IMAGE_HDR_SIZE && !plan.offset
                         ? "FetchImageHeader"
                         : NULL,
                     NULL);
    if (code != 0) {
        return code;
    }
    rl_service_count_call(svc);
    if (plan.image) {
        return serve_image(call, svc, &plan);
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        code = rl_rpc_call_error(call, RL_RPC_NOT_FOUND,
                                 "cannot open the database image %s: %s", path,
                                 strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return code;
    }
    if (rl_req_fetch_range(&plan, (uint64_t)sb.st_size, &end, why,
                           sizeof why) != RL_RPC_OK) {
        code = rl_rpc_call_error(call, RL_RPC_OUT_OF_RANGE, "%s", why);
    } else {
        code = stream_image(call, fd, (uint64_t)sb.st_size, plan.offset, end,
                            plan.chunk);
    }
    close(fd);
    return code;
}

int rl_service_register(rl_service *svc, rl_rpc_server *srv)
{
    char name[128];
    size_t i;
    /* FetchImage "@image" reads through the raft VFS; a host registers it
    ** with its port resolver first, plain raftd here (no port: nothing
    ** this process writes through it). */
    if (!sqlite3_vfs_find("raft") && rl_vfs_register(0, NULL) != SQLITE_OK) {
        return -1;
    }
    rl_service_set_stop_reason(svc, call_stop_reason);
    /* Every method of the table (methods.h), with its flags. */
    for (i = 0; i < rl_api_nmethods; i++) {
        const rl_api_method *m = &rl_api_methods[i];
        rl_rpc_handler_fn fn = unary_cb;
        if (!m->service) {
            continue; /* a permission, not a method */
        }
        if (m->id == RL_M_FORWARD_TXN) {
            fn = forward_txn_cb;
        } else if (m->id == RL_M_FORWARD_SESSION) {
            fn = forward_session_cb;
        } else if (m->id == RL_M_FETCH_IMAGE) {
            fn = fetch_image_cb;
        }
        snprintf(name, sizeof(name), "%s%s", m->service, m->name);
        if (rl_rpc_server_add_flags(srv, name, fn, svc, m->rpc_flags) != 0) {
            return -1;
        }
    }
    return 0;
}
