/*
** raftd/node/transport.c -- raftlite's raft_uv_transport over raft_uv_tcp (see
** transport.h): forwards init, listen, connect and close to the wrapped
** raft_uv_tcp and adjusts every connection in conn_ready() before raft
** gets its stream (TCP_NODELAY). With TLS settings it hands over to
** tls_transport.c instead, and raft_uv_tcp is not used at all.
**
** It must never keep or close a stream after handing it to raft (raft owns
** it then), never lose a dial (its callback fires exactly once whenever
** the inner connect returned 0: raft 0.15's uv_tcp_connect.c, checked),
** and never block: it runs inside libuv callbacks on the loop thread.
*/
#include "transport.h"

#include "tls_transport.h"

#include <stdio.h>
#include <string.h>

/* One dial in flight: raft's request, and ours given to raft_uv_tcp. */
struct dial {
    struct raft_uv_connect inner_req; /* given to raft_uv_tcp */
    struct raft_uv_connect *req;      /* raft_uv's */
    struct rl_transport *t;
};

static struct rl_transport *outer(struct raft_uv_transport *r)
{
    return (struct rl_transport *)r; /* `raft` is the first member */
}

/* raft_uv reads errmsg of the transport it was given: pass the inner's. */
static void copy_errmsg(struct rl_transport *t)
{
    memcpy(t->raft.errmsg, t->inner.errmsg, sizeof t->raft.errmsg);
    t->raft.errmsg[sizeof t->raft.errmsg - 1] = '\0';
}

/*
** Every connection passes here once, dialled or accepted, before raft
** sees it. Nodelay: a failure is counted, not fatal (the connection still
** works, only slower); raft_uv_tcp's streams are TCP handles.
*/
static void conn_ready(struct rl_transport *t, struct uv_stream_s *stream)
{
    t->conns++;
    if (t->opts.nodelay && stream->type == UV_TCP &&
        uv_tcp_nodelay((uv_tcp_t *)stream, 1) != 0)
        t->nodelay_failed++;
}

static int tr_init(struct raft_uv_transport *r, raft_id id, const char *address)
{
    struct rl_transport *t = outer(r);
    int rv = t->inner.init(&t->inner, id, address);
    if (rv != 0)
        copy_errmsg(t);
    return rv;
}

static void tr_accept_cb(struct raft_uv_transport *inner, raft_id id,
                         const char *address, struct uv_stream_s *stream)
{
    struct rl_transport *t = inner->data;
    conn_ready(t, stream);
    t->accept_cb(&t->raft, id, address, stream);
}

static int tr_listen(struct raft_uv_transport *r, raft_uv_accept_cb cb)
{
    struct rl_transport *t = outer(r);
    t->accept_cb = cb;
    int rv = t->inner.listen(&t->inner, tr_accept_cb);
    if (rv != 0)
        copy_errmsg(t);
    return rv;
}

static void tr_connect_cb(struct raft_uv_connect *inner_req,
                          struct uv_stream_s *stream, int status)
{
    struct dial *d = inner_req->data;
    struct raft_uv_connect *req = d->req;
    struct rl_transport *t = d->t;
    raft_free(d);
    if (status == 0)
        conn_ready(t, stream);
    else
        copy_errmsg(t);
    req->cb(req, stream, status);
}

static int tr_connect(struct raft_uv_transport *r, struct raft_uv_connect *req,
                      raft_id id, const char *address, raft_uv_connect_cb cb)
{
    struct rl_transport *t = outer(r);
    struct dial *d = raft_malloc(sizeof *d);
    if (d == NULL) {
        snprintf(t->raft.errmsg, sizeof t->raft.errmsg, "out of memory");
        return RAFT_NOMEM;
    }
    d->req = req;
    d->t = t;
    d->inner_req.data = d;
    /* raft_uv_tcp sets inner_req.cb too; raft's req->cb is ours to set,
    ** as the interface says the transport does. */
    req->cb = cb;
    int rv =
        t->inner.connect(&t->inner, &d->inner_req, id, address, tr_connect_cb);
    if (rv != 0) { /* no callback will come */
        copy_errmsg(t);
        raft_free(d);
    }
    return rv;
}

static void tr_close_cb(struct raft_uv_transport *inner)
{
    struct rl_transport *t = inner->data;
    raft_uv_transport_close_cb cb = t->close_cb;
    t->close_cb = NULL;
    if (cb)
        cb(&t->raft);
}

static void tr_close(struct raft_uv_transport *r, raft_uv_transport_close_cb cb)
{
    struct rl_transport *t = outer(r);
    t->close_cb = cb;
    t->inner.close(&t->inner, tr_close_cb);
}

int rl_transport_init(struct rl_transport *t, uv_loop_t *loop,
                      const struct rl_transport_opts *opts)
{
    memset(t, 0, sizeof *t);
    t->opts.nodelay = 1;
    if (opts)
        t->opts = *opts;
    t->opts.tls = NULL; /* only for this call: the strings are the caller's */
    if (opts && opts->tls) {
        if (!opts->tls->cert_file || !opts->tls->key_file ||
            !opts->tls->ca_file || !opts->tls->raft_id_of) {
            snprintf(t->raft.errmsg, sizeof t->raft.errmsg,
                     "Raft TLS needs a certificate, its key and the CA");
            return RAFT_INVALID;
        }
        return rl_tls_init(t, loop, opts->tls);
    }
    int rv = raft_uv_tcp_init(&t->inner, loop);
    if (rv != 0) {
        copy_errmsg(t);
        return rv;
    }
    t->inner_ready = 1;
    /* raft_uv_tcp keeps transport->data as it finds it and never uses it;
    ** raft_uv owns t->raft.data (it sets and clears it itself). */
    t->inner.data = t;
    t->raft.init = tr_init;
    t->raft.listen = tr_listen;
    t->raft.connect = tr_connect;
    t->raft.close = tr_close;
    return 0;
}

void rl_transport_close(struct rl_transport *t)
{
    rl_tls_free(t->tls);
    t->tls = NULL;
    if (t->inner_ready)
        raft_uv_tcp_close(&t->inner);
    t->inner_ready = 0;
}
