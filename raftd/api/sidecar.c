/*
** raftd/api/sidecar.c -- starts and stops the gRPC sidecar of a hosted node
** (see sidecar.h): the service (service.h) with the host's hooks, the auth
** file, and the gRPC server on the identity's address.
**
** This file must never touch the node or the database: it wires the host's
** hooks (host.h rl_host_write_done, rl_host_propose_txn) into the service,
** and the service does the rest.
*/
#include "sidecar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "cluster.h"
#include "host.h"
#include "rpc.h"
#include "service.h"

typedef struct rl_sidecar {
    rl_host *h;
    int grace_ms;
    struct rl_auth *auth; /* the loaded auth file (NULL: none) */
    rl_service *svc;
    rl_rpc_server *srv;
} rl_sidecar;

static int sc_write_done(void *ctx, int rc, int64_t remaining_ms, char *why,
                         size_t whylen)
{
    rl_sidecar *s = ctx;
    return rl_host_write_done(s->h, rc, remaining_ms, why, whylen);
}

static int sc_propose_txn(void *ctx, const struct rl_txn_asm *a,
                          int64_t remaining_ms, uint64_t *index, char *why,
                          size_t whylen)
{
    rl_sidecar *s = ctx;
    rl_forward_txn f;
    memset(&f, 0, sizeof f);
    f.payload = a->data;
    f.len = (size_t)a->received;
    f.base = a->base;
    f.origin_node = a->origin_node;
    f.origin_txn = a->origin_txn;
    f.origin_pid = a->origin_pid;
    return rl_host_propose_txn(s->h, &f, remaining_ms, index, why, whylen);
}

/* Stops the server (its calls drain for grace_ms), then the service and
** the auth table the calls used. */
static void sidecar_stop(void *arg)
{
    rl_sidecar *s = arg;
    if (s->srv)
        rl_rpc_server_free(s->srv, s->grace_ms);
    if (s->svc)
        rl_service_close(s->svc);
    rl_auth_free(s->auth);
    free(s);
}

int rl_sidecar_start(rl_host *h, char *err, size_t errlen)
{
    rl_host_sidecar hc;
    const rl_identity *id;
    rl_sidecar *s;
    rl_service_config sc;
    rl_service_hooks hooks;
    rl_rpc_server_config rc;
    rl_rpc_tls tls;
    char addr[300];
    rl_host_sidecar_config(h, &hc);
    id = hc.id;
    if (!id->grpc_addr[0])
        return 0;
    s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->h = h;
    s->grace_ms = hc.grace_ms;
    memset(&sc, 0, sizeof sc);
    sc.node_id = id->node_id;
    sc.grpc_addr = hc.grpc_adv;
    sc.max_msg_bytes = hc.max_msg_bytes;
    sc.raft_addr = id->raft_addr;
    sc.db_path = hc.db_path;
    sc.host = h;
    hooks.ctx = s;
    hooks.write_done = sc_write_done;
    hooks.propose_txn = sc_propose_txn;
    sc.hooks = &hooks; /* copied */
    s->svc = rl_service_open(&sc, err, errlen);
    if (!s->svc)
        goto fail;
    if (id->auth_file[0] &&
        rl_auth_load(id->auth_file, &s->auth, err, errlen) != 0)
        goto fail;
    /* Checked at every call before any handler (service_rpc.c). */
    rl_service_set_auth(s->svc, s->auth,
                        id->tls_cert[0] && id->tls_client_auth);
    if (s->auth && !(id->tls_cert[0] && id->tls_client_auth))
        rl_host_log(h, 1,
                    "the auth file %s is on without mutual TLS: calls "
                    "between nodes (ReadIndex, ForwardTxn, FetchImage, "
                    "forwarded writes) need node certificates and will be "
                    "refused; a cluster of more than one node needs "
                    "-tls-client-auth (raft_tls_client_auth=1)",
                    id->auth_file);
    if (rl_rpc_listen_addr(id->grpc_addr, addr, sizeof addr) != 0) {
        snprintf(err, errlen, "gRPC address too long");
        goto fail;
    }
    memset(&rc, 0, sizeof rc);
    rc.addr = addr;
    rc.tls = rl_host_tls(h, &tls, 1);
    rc.max_msg_bytes = hc.max_msg_bytes;
    rc.max_workers = hc.workers;
    rc.max_call_ms = hc.max_call_ms;
    rc.max_stream_ms = hc.max_stream_ms;
    rc.stream_idle_ms = hc.stream_idle_ms;
    rc.max_client_calls = hc.max_client_calls;
    s->srv = rl_rpc_server_new(&rc, err, errlen);
    if (!s->srv)
        goto fail;
    if (rl_service_register(s->svc, s->srv) != 0 ||
        rl_rpc_server_start(s->srv, err, errlen) < 0) {
        char e2[512];
        snprintf(e2, sizeof e2, "%s", err);
        snprintf(err, errlen, "cannot serve gRPC on %s: %s", addr, e2);
        goto fail;
    }
    rl_host_on_close(h, sidecar_stop, s);
    return 0;
fail:
    sidecar_stop(s);
    return -1;
}
