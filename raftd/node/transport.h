/*
** raftd/node/transport.h -- raftlite's own raft_uv_transport: libraft 0.15's
** raft_uv_tcp underneath, with a hook on every connection it dials or
** accepts before libraft sees the stream.
**
** Why: raft_uv_tcp sets no TCP_NODELAY, so a small Raft message (an
** AppendEntries result, a heartbeat) waits behind Nagle until the peer's
** delayed ACK (~40 ms on Linux): 1-2 % of commits took ~40 ms (issue 18,
** DESIGN.md section 7). This transport sets TCP_NODELAY on both ends.
**
** Layering: raft_uv talks to `rl_transport.raft` (the interface below);
** its methods forward to the wrapped raft_uv_tcp (`inner`) and intercept
** its connect and accept callbacks in conn_ready() (transport.c), the one
** place where a connection is adjusted before raft gets it. A TLS layer
** With TLS settings (opts.tls), the methods are tls_transport.c's instead:
** mutual TLS with the cluster CA around every Raft byte, raft's preamble
** included, and the peer's certificate must name the node it claims to be
** (SAN URI raftlite:node:<id>, see certid.h). Without them, nothing of the
** TLS code runs: the plain path is raft_uv_tcp with TCP_NODELAY.
**
** It must never keep a stream libraft owns (ownership passes to raft with
** the callback), never call raft_* functions, and runs on the node's loop
** thread only, like raft_uv_tcp itself.
*/
#ifndef RL_TRANSPORT_H
#define RL_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

/* Mutual TLS on every Raft connection: all three files (PEM) are needed. */
struct rl_transport_tls {
    const char *cert_file; /* this node's certificate (raftlite:node:<id>) */
    const char *key_file;
    const char *ca_file; /* the cluster CA: peers must chain to it */
    /* The raft id of a node id (host.c's rl_raft_id_of): a peer's
    ** certificate names a node id, raft's preamble a raft id. */
    uint64_t (*raft_id_of)(const char *node_id);
};

struct rl_transport_opts {
    /* 1 (the default everywhere): TCP_NODELAY on every connection. 0 only
    ** for measurements (bench_node --no-nodelay) and tests. */
    int nodelay;
    const struct rl_transport_tls *tls; /* NULL: plaintext (raft_uv_tcp) */
    /* Where refused TLS connections are reported (loop thread; at most once
    ** a minute per distinct reason). NULL: stderr. */
    void (*log)(void *ctx, const char *msg);
    void *log_ctx;
};

struct rl_tls; /* tls_transport.c */

struct rl_transport {
    struct raft_uv_transport raft;  /* given to raft_uv_init */
    struct raft_uv_transport inner; /* raft_uv_tcp */
    struct rl_transport_opts opts;
    raft_uv_accept_cb accept_cb;         /* raft_uv's */
    raft_uv_transport_close_cb close_cb; /* raft_uv's */
    unsigned long conns;                 /* connections handed to raft */
    unsigned long nodelay_failed;        /* setsockopt refused (logged by
                                            the caller: it has no logger) */
    int inner_ready;                     /* inner initialized */
    struct rl_tls *tls;                  /* non-NULL: mutual TLS */
    unsigned long tls_refused;           /* TLS refusals and warnings
                                            logged (deduplicated) */
};

/* Initializes t on loop (raft_uv_tcp_init underneath, or the TLS
** transport when opts->tls); opts NULL means the defaults (nodelay on,
** plaintext). The option strings are used during this call only. Returns 0 or a
*RAFT_* code. Then pass
** &t->raft to raft_uv_init. */
int rl_transport_init(struct rl_transport *t, uv_loop_t *loop,
                      const struct rl_transport_opts *opts);

/* Frees what rl_transport_init allocated; call where raft_uv_tcp_close
** would be called (after raft_uv_close, or after a failed init). */
void rl_transport_close(struct rl_transport *t);

#endif /* RL_TRANSPORT_H */
