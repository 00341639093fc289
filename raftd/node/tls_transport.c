/*
** raftd/node/tls_transport.c -- the mutual-TLS variant of raftlite's Raft
** transport (see transport.h): every Raft byte, raft's connection preamble
** included, travels inside TLS, and both ends prove with a certificate of
** the cluster CA that they are the member node they claim to be.
**
** This file is the loop side (raft's raft_uv_transport methods, accepted
** sockets, results of the threads, close); tls_conn.c is the connection
** threads' side; tls_int.h what they share.
**
** How: raft_uv reads and writes a uv_stream_t. Each connection gets a
** thread that opens (or accepts) the TCP socket, runs the TLS handshake,
** checks the peer's certificate (verified against the CA, role
** RL_CERT_NODE, and its node id: the id being dialled, or for an accepted
** connection the id the peer claims in raft's preamble), then creates a
** socketpair: one end goes to raft as a uv_pipe_t, the thread pumps bytes
** between the other end and the SSL connection until either side closes.
** Threads talk to the loop through one uv_async_t and the mutex `mu`.
**
** Raft's preamble (facts read from libraft 0.15's uv_tcp_connect.c and
** uv_tcp_listen.c; this is our own code): three little-endian u64 --
** protocol version 1, the sender's raft id, the length of the address
** field -- then the sender's address, NUL-terminated and padded with NULs
** to a multiple of 8 bytes. A dialler sends it, the acceptor reads it.
**
** It must never: hand raft a stream whose peer was not verified; block the
** loop thread (handshakes, DNS and connect run on the connection's thread);
** call raft's callbacks from any thread but the loop's; fire a dial's
** callback twice or not at all (RAFT_CANCELED when the transport closes
** first); let a thread outlive the transport (close waits for all of them);
** log the same refusal more than once a minute (raft redials every second).
*/
#include "tls_int.h"

static struct rl_tls *tls_of(struct raft_uv_transport *r)
{
    return ((struct rl_transport *)r)->tls; /* `raft` is the first member */
}

/* ------------------------------------------------------------- logging */

/* Loop thread: log msg unless the same text was logged in the last
** LOG_REPEAT_MS (a refused peer redials every second). */
static void emit_log(struct rl_tls *tls, const char *msg)
{
    struct rl_transport *t = tls->t;
    uint64_t h = 0xcbf29ce484222325ull, now = tls_now_ms();
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    unsigned oldest = 0;
    for (unsigned i = 0; i < LOG_MEMORY; i++) {
        if (tls->said[i].hash == h && tls->said[i].at &&
            now - tls->said[i].at < LOG_REPEAT_MS)
            return;
        if (tls->said[i].at < tls->said[oldest].at)
            oldest = i;
    }
    tls->said[oldest].hash = h;
    tls->said[oldest].at = now;
    t->tls_refused++;
    if (t->opts.log)
        t->opts.log(t->opts.log_ctx, msg);
    else
        fprintf(stderr, "raftlite: %s\n", msg);
}

/* ----------------------------------------------------------- loop side */

static void maybe_finish_close(struct rl_tls *tls);

static void pipe_free_cb(uv_handle_t *h)
{
    raft_free(h);
}

/* raft's stream over fd (raft frees it with RaftHeapFree after uv_close:
** allocate with raft_malloc). Closes fd and returns NULL on failure. */
static struct uv_stream_s *make_pipe(struct rl_tls *tls, int fd)
{
    uv_pipe_t *p = raft_malloc(sizeof *p);
    if (!p) {
        close(fd);
        return NULL;
    }
    if (uv_pipe_init(tls->loop, p, 0) != 0) {
        raft_free(p);
        close(fd);
        return NULL;
    }
    if (uv_pipe_open(p, fd) != 0) {
        close(fd);
        uv_close((uv_handle_t *)p, pipe_free_cb);
        return NULL;
    }
    return (struct uv_stream_s *)p;
}

static void deliver(struct rl_tls *tls, struct conn *c)
{
    struct rl_transport *t = tls->t;
    struct uv_stream_s *s = NULL;
    if (c->state == C_READY && !tls->closing) {
        s = make_pipe(tls, c->theirs);
        c->theirs = -1;
    } else if (c->theirs >= 0) {
        close(c->theirs); /* the pump sees EOF and ends */
        c->theirs = -1;
    }
    if (s)
        t->conns++;
    if (c->dial) {
        struct raft_uv_connect *req = c->req;
        req->cb(req, s,
                s              ? 0
                : tls->closing ? RAFT_CANCELED
                               : RAFT_NOCONNECTION);
    } else if (s) {
        t->accept_cb(&t->raft, c->id, c->address, s);
    }
}

static void async_cb(uv_async_t *a)
{
    struct rl_tls *tls = a->data;
    struct conn *ready = NULL, *dead = NULL;
    char logs[LOG_QUEUE][512];
    unsigned nlogs;
    pthread_mutex_lock(&tls->mu);
    nlogs = tls->nlogq;
    memcpy(logs, tls->logq, sizeof logs[0] * nlogs);
    tls->nlogq = 0;
    for (struct conn **p = &tls->conns; *p;) {
        struct conn *c = *p;
        if (c->state != C_HANDSHAKE && !c->delivered) {
            c->delivered = 1;
            c->later = ready;
            ready = c;
        }
        if (c->exited) {
            *p = c->next;
            c->next = dead;
            dead = c;
            tls->nconns--;
        } else {
            p = &c->next;
        }
    }
    pthread_mutex_unlock(&tls->mu);
    for (unsigned i = 0; i < nlogs; i++)
        emit_log(tls, logs[i]);
    /* Oldest first is not needed: each conn is independent. */
    for (struct conn *c = ready; c; c = c->later)
        deliver(tls, c);
    while (dead) {
        struct conn *c = dead;
        dead = c->next;
        pthread_join(c->th, NULL);
        free(c);
    }
    maybe_finish_close(tls);
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    struct rl_tls *tls = h->data;
    (void)status, (void)events;
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(tls->lfd, (struct sockaddr *)&sa, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or an error the next poll retries */
        char why[200], peer[INET6_ADDRSTRLEN + 8] = "?";
        if (sa.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, peer,
                      sizeof peer);
        else if (sa.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, peer,
                      sizeof peer);
        struct conn *c = tls_conn_start(tls, 0, fd, why, sizeof why);
        if (c) {
            snprintf(c->peer, sizeof c->peer, "%s", peer);
            if (tls_conn_run(c, why, sizeof why) == 0)
                continue;
            free(c);
        }
        close(fd);
        char msg[400];
        snprintf(msg, sizeof msg, "Raft TLS: connection from %s refused: %s",
                 peer, why);
        emit_log(tls, msg);
    }
}

static void handle_closed(uv_handle_t *h)
{
    struct rl_tls *tls = h->data;
    if (h == (uv_handle_t *)&tls->lpoll) {
        close(tls->lfd);
        tls->lfd = -1;
        tls->lpoll_open = 0;
        if (tls->free_when_closed && !tls->async_open)
            rl_tls_free(tls);
        else
            maybe_finish_close(tls);
        return;
    }
    tls->async_open = 0;
    if (tls->free_when_closed) {
        if (!tls->lpoll_open)
            rl_tls_free(tls);
        return;
    }
    raft_uv_transport_close_cb cb = tls->close_cb;
    tls->close_cb = NULL;
    if (cb)
        cb(&tls->t->raft);
}

/* Once closing and every thread is gone and the listener closed: close
** the async handle; its close callback calls raft's close callback. */
static void maybe_finish_close(struct rl_tls *tls)
{
    if (!tls->closing || tls->lpoll_open || !tls->async_open ||
        uv_is_closing((uv_handle_t *)&tls->async))
        return;
    pthread_mutex_lock(&tls->mu);
    int busy = tls->conns != NULL;
    pthread_mutex_unlock(&tls->mu);
    if (!busy)
        uv_close((uv_handle_t *)&tls->async, handle_closed);
}

/* ------------------------------------------------ raft_uv_transport */

static int tr_init(struct raft_uv_transport *r, raft_id id, const char *address)
{
    struct rl_tls *tls = tls_of(r);
    if (strlen(address) >= sizeof tls->address) {
        snprintf(r->errmsg, sizeof r->errmsg, "address too long");
        return RAFT_INVALID;
    }
    tls->id = id;
    snprintf(tls->address, sizeof tls->address, "%s", address);
    int rv = uv_async_init(tls->loop, &tls->async, async_cb);
    if (rv != 0) {
        snprintf(r->errmsg, sizeof r->errmsg, "uv_async_init: %s",
                 uv_strerror(rv));
        return RAFT_IOERR;
    }
    tls->async.data = tls;
    tls->async_open = 1;
    /* Our own certificate must name us, or every peer refuses us: say so
    ** at start rather than once per refused connection on the peers. */
    X509 *own = SSL_CTX_get0_certificate(tls->ctx);
    rl_cert_id cid;
    char err[200], msg[400];
    if (!own || rl_cert_identity(own, &cid, err, sizeof err) != 0 ||
        cid.role != RL_CERT_NODE || tls->raft_id_of(cid.name) != id) {
        snprintf(msg, sizeof msg,
                 "Raft TLS: this node's certificate does not name it (it "
                 "needs the subjectAltName URI " RL_CERT_NODE_PREFIX
                 "<this node's id>): its peers will refuse its Raft "
                 "connections");
        emit_log(tls, msg);
    }
    return 0;
}

static int tr_listen(struct raft_uv_transport *r, raft_uv_accept_cb cb)
{
    struct rl_tls *tls = tls_of(r);
    char host[256], port[32];
    tls->t->accept_cb = cb;
    if (tls_split_addr(tls->address, host, sizeof host, port, sizeof port) !=
        0) {
        snprintf(r->errmsg, sizeof r->errmsg, "malformed address '%.200s'",
                 tls->address);
        return RAFT_INVALID;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (g != 0) {
        snprintf(r->errmsg, sizeof r->errmsg, "resolving '%.200s': %s",
                 tls->address, gai_strerror(g));
        return RAFT_IOERR;
    }
    int fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol),
        one = 1;
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        snprintf(r->errmsg, sizeof r->errmsg, "listen on %.200s: %s",
                 tls->address, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return RAFT_IOERR;
    }
    freeaddrinfo(ai);
    int rv = uv_poll_init(tls->loop, &tls->lpoll, fd);
    if (rv == 0) {
        tls->lpoll.data = tls;
        tls->lfd = fd;
        tls->lpoll_open = 1;
        rv = uv_poll_start(&tls->lpoll, UV_READABLE, on_accept);
        if (rv == 0)
            return 0;
        uv_close((uv_handle_t *)&tls->lpoll, handle_closed);
    } else {
        close(fd);
    }
    snprintf(r->errmsg, sizeof r->errmsg, "listen on %.200s: %s", tls->address,
             uv_strerror(rv));
    return RAFT_IOERR;
}

static int tr_connect(struct raft_uv_transport *r, struct raft_uv_connect *req,
                      raft_id id, const char *address, raft_uv_connect_cb cb)
{
    struct rl_tls *tls = tls_of(r);
    char why[200];
    if (strlen(address) >= ADDRESS_MAX) {
        snprintf(r->errmsg, sizeof r->errmsg, "address too long");
        return RAFT_NOCONNECTION;
    }
    struct conn *c = tls_conn_start(tls, 1, -1, why, sizeof why);
    if (!c) {
        snprintf(r->errmsg, sizeof r->errmsg, "%s", why);
        return RAFT_NOCONNECTION;
    }
    c->id = id;
    snprintf(c->address, sizeof c->address, "%s", address);
    c->req = req;
    req->cb = cb;
    if (tls_conn_run(c, why, sizeof why) != 0) {
        free(c);
        snprintf(r->errmsg, sizeof r->errmsg, "%s", why);
        return RAFT_NOCONNECTION;
    }
    return 0;
}

/* Stops the listener and every thread (they poll stopfd). */
static void stop_all(struct rl_tls *tls)
{
    uint64_t one = 1;
    tls->closing = 1;
    if (write(tls->stopfd, &one, sizeof one) != sizeof one) {
        /* An eventfd write fails only on overflow: it is readable then. */
    }
    if (tls->lpoll_open && !uv_is_closing((uv_handle_t *)&tls->lpoll)) {
        uv_poll_stop(&tls->lpoll);
        uv_close((uv_handle_t *)&tls->lpoll, handle_closed);
    }
}

static void tr_close(struct raft_uv_transport *r, raft_uv_transport_close_cb cb)
{
    struct rl_tls *tls = tls_of(r);
    tls->close_cb = cb;
    stop_all(tls);
    maybe_finish_close(tls);
}

/* -------------------------------------------------------------- setup */

int rl_tls_init(struct rl_transport *t, uv_loop_t *loop,
                const struct rl_transport_tls *cfg)
{
    struct rl_tls *tls = calloc(1, sizeof *tls);
    char buf[160];
    if (!tls) {
        snprintf(t->raft.errmsg, sizeof t->raft.errmsg, "out of memory");
        return RAFT_NOMEM;
    }
    tls->t = t;
    tls->loop = loop;
    tls->lfd = -1;
    tls->raft_id_of = cfg->raft_id_of;
    pthread_mutex_init(&tls->mu, NULL);
    tls->stopfd = eventfd(0, EFD_CLOEXEC);
    const char *what = NULL, *file = NULL;
    if (tls->stopfd < 0) {
        what = "eventfd";
    } else if (!(tls->ctx = SSL_CTX_new(TLS_method()))) {
        what = "SSL_CTX_new";
    } else if (!SSL_CTX_set_min_proto_version(tls->ctx, TLS1_2_VERSION)) {
        what = "TLS 1.2";
    } else if (SSL_CTX_use_certificate_chain_file(tls->ctx, cfg->cert_file) !=
               1) {
        what = "loading the certificate", file = cfg->cert_file;
    } else if (SSL_CTX_use_PrivateKey_file(tls->ctx, cfg->key_file,
                                           SSL_FILETYPE_PEM) != 1) {
        what = "loading the private key", file = cfg->key_file;
    } else if (SSL_CTX_check_private_key(tls->ctx) != 1) {
        what = "the private key does not match the certificate",
        file = cfg->key_file;
    } else if (SSL_CTX_load_verify_locations(tls->ctx, cfg->ca_file, NULL) !=
               1) {
        what = "loading the CA", file = cfg->ca_file;
    }
    if (what) {
        snprintf(t->raft.errmsg, sizeof t->raft.errmsg, "Raft TLS: %s%s%s: %s",
                 what, file ? " " : "", file ? file : "",
                 tls_ssl_reason(buf, sizeof buf, "failed"));
        rl_tls_free(tls);
        return RAFT_INVALID;
    }
    SSL_CTX_set_verify(tls->ctx,
                       SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_mode(tls->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(tls->ctx, SSL_OP_NO_RENEGOTIATION);
    /* Raft connections are long-lived: no resumption tickets to store. */
    SSL_CTX_set_num_tickets(tls->ctx, 0);
    t->tls = tls;
    t->raft.init = tr_init;
    t->raft.listen = tr_listen;
    t->raft.connect = tr_connect;
    t->raft.close = tr_close;
    return 0;
}

void rl_tls_free(struct rl_tls *tls)
{
    if (!tls)
        return;
    if (tls->async_open || tls->lpoll_open) {
        /* Freed without tr_close (raft never started): stop the threads,
        ** wait for them, close the handles; the last close frees. */
        if (!tls->closing)
            stop_all(tls);
        for (;;) {
            pthread_mutex_lock(&tls->mu);
            struct conn *c = tls->conns;
            if (c)
                tls->conns = c->next;
            pthread_mutex_unlock(&tls->mu);
            if (!c)
                break;
            pthread_join(c->th, NULL);
            if (c->theirs >= 0)
                close(c->theirs);
            if (c->dial && !c->delivered)
                c->req->cb(c->req, NULL, RAFT_CANCELED);
            free(c);
        }
        tls->free_when_closed = 1;
        if (tls->t && tls->t->tls == tls)
            tls->t->tls = NULL;
        if (tls->async_open && !uv_is_closing((uv_handle_t *)&tls->async))
            uv_close((uv_handle_t *)&tls->async, handle_closed);
        return;
    }
    if (tls->t && tls->t->tls == tls)
        tls->t->tls = NULL;
    if (tls->ctx)
        SSL_CTX_free(tls->ctx);
    if (tls->stopfd >= 0)
        close(tls->stopfd);
    pthread_mutex_destroy(&tls->mu);
    free(tls);
}
