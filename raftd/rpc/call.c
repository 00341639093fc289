/*
** raftd/rpc/call.c -- what a handler does with its server call (see rpc.h):
** receive and send messages under the stream idle limit, set the status,
** see its deadline, its client going away and who the client is.
**
** A call is used by the one worker thread running its handler (the close
** op is polled by that thread too); it must never block past the call's
** deadline or the idle limit, and never touch another call.
*/
#include "rpc_int.h"
#include "errbuf.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Runs one batch of a server call, waiting at most stream_idle_ms (or
** the call's remaining time, if shorter): a client that stops sending or
** reading is cut with a status naming the limit. */
static int run_call_batch(rl_rpc_call *c, const grpc_op *ops, size_t n,
                          const char *what)
{
    grpc_event ev;
    void *tag = (void *)ops;
    int64_t left = rl_rpc_call_remaining_ms(c), wait = c->srv->idle_ms;
    int by_idle = 1;
    char msg[RL_RPC_ERRMAX];
    if (grpc_call_start_batch(c->call, ops, n, tag, NULL) != GRPC_CALL_OK) {
        return -1;
    }
    if (wait <= 0 || left < wait) {
        wait = left;
        by_idle = 0;
    }
    ev = grpc_completion_queue_pluck(
        c->cq, tag,
        wait == INT64_MAX
            ? gpr_inf_future(GPR_CLOCK_REALTIME)
            : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                           gpr_time_from_millis(wait, GPR_TIMESPAN)),
        NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        if (by_idle) {
            snprintf(msg, sizeof(msg),
                     "%s: idle for %lld ms while %s a message, the server's "
                     "limit (raftd -stream-idle-ms raises it)",
                     c->method, (long long)c->srv->idle_ms, what);
            c->idle_cut = 1;
        } else {
            snprintf(msg, sizeof(msg), "%s: %s while %s a message", c->method,
                     rl_rpc_call_stop_reason(c)[0] ? rl_rpc_call_stop_reason(c)
                                                   : "deadline exceeded",
                     what);
        }
        rl_rpc_lock_error(c, RL_RPC_DEADLINE_EXCEEDED, msg);
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                     msg, NULL);
        ev = grpc_completion_queue_pluck(
            c->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        return -1;
    }
    return ev.type == GRPC_OP_COMPLETE && ev.success ? 0 : -1;
}

/* A received byte buffer (NULL: the client's stream ended) as *msg:
** 1, 0 at the end, or -1 for a message over the limit (which sets the
** call's status). Destroys bb. */
static int take_message(rl_rpc_call *c, grpc_byte_buffer *bb, rl_rpc_buf *msg)
{
    if (!bb) {
        return 0;
    }
    if (grpc_byte_buffer_length(bb) > c->srv->max_msg) {
        char m[RL_RPC_ERRMAX];
        snprintf(m, sizeof(m),
                 "request message of %zu bytes exceeds this server's receive "
                 "limit of %zu bytes (raftd -max-msg-bytes, or the URI "
                 "parameter raft_max_msg_bytes of a shell-hosted node, "
                 "raises it)",
                 grpc_byte_buffer_length(bb), c->srv->max_msg);
        grpc_byte_buffer_destroy(bb);
        rl_rpc_lock_error(c, RL_RPC_RESOURCE_EXHAUSTED, m);
        return -1;
    }
    return rl_rpc_take_bb(bb, msg) == 0 ? 1 : -1;
}

int rl_rpc_call_recv(rl_rpc_call *c, rl_rpc_buf *msg)
{
    grpc_op op;
    grpc_byte_buffer *bb = NULL;
    msg->data = NULL;
    msg->len = 0;
    if (c->recv_pending) {
        return -1; /* after recv_wait said 2, the handler must end */
    }
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (run_call_batch(c, &op, 1, "waiting for") != 0) {
        if (bb) {
            grpc_byte_buffer_destroy(bb);
        }
        return -1;
    }
    return take_message(c, bb, msg);
}

/* Whether a call waits for what quiet call c holds: a worker (the pool at
** its maximum, none idle) or a slot of c's client (its cap). A quiet
** handler then ends its call. Reads the server's queue and counts under
** s->mu; changes nothing. */
static int wanted_elsewhere(rl_rpc_call *c)
{
    rl_rpc_server *s = c->srv;
    int wanted = 0;
    int full = 0;
    pthread_mutex_lock(&s->mu);
    if (s->qhead) {
        /* Calls wait only when no worker can take them: the pool is at
        ** its maximum, or their client is at its cap. */
        wanted = s->nidle == 0 && s->nthreads >= s->max_workers;
        for (int i = 0; c->counted && i < s->max_workers; i++)
            if (s->peers[i].n > 0 && strcmp(s->peers[i].id, c->peer) == 0)
                full = s->peers[i].n >= s->client_cap;
        for (rl_rpc_call *q = s->qhead; q && full && !wanted; q = q->next)
            wanted = strcmp(q->peer, c->peer) == 0;
    }
    pthread_mutex_unlock(&s->mu);
    return wanted;
}

/* How soon a quiet wait (rl_rpc_call_recv_wait) sees the server stopping,
** or another call waiting for its worker or its client's slot: it waits
** in slices of this length. */
#define QUIET_SLICE_MS 100

int rl_rpc_call_recv_wait(rl_rpc_call *c, rl_rpc_buf *msg, int64_t wait_ms)
{
    grpc_op op;
    grpc_event ev;
    grpc_byte_buffer *bb;
    int64_t left = rl_rpc_call_remaining_ms(c), now = rl_rpc_now_ms(), until;
    msg->data = NULL;
    msg->len = 0;
    if (c->recv_pending) {
        return 2;
    }
    if (left == 0) {
        return -1; /* cancelled, gone, or out of time */
    }
    /* Quiet for at most wait_ms, the idle limit and the time left: the
    ** operator's -stream-idle-ms bounds how long a quiet call holds a
    ** worker, and the handler ends it cleanly before its deadline. */
    if (c->srv->idle_ms > 0 && c->srv->idle_ms < wait_ms) {
        wait_ms = c->srv->idle_ms;
    }
    if (left < wait_ms) {
        wait_ms = left;
    }
    until = now + (wait_ms > 0 ? wait_ms : 0);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    c->recv_bb = NULL;
    if (grpc_call_start_batch(c->call, &op, 1, &c->recv_tag, NULL) !=
        GRPC_CALL_OK) {
        return -1;
    }
    c->recv_pending = 1;
    for (;;) {
        int64_t slice = until - now;
        if (slice > QUIET_SLICE_MS) {
            slice = QUIET_SLICE_MS;
        }
        ev = grpc_completion_queue_pluck(
            c->cq, &c->recv_tag,
            gpr_time_add(
                gpr_now(GPR_CLOCK_MONOTONIC),
                gpr_time_from_millis(slice > 0 ? slice : 0, GPR_TIMESPAN)),
            NULL);
        if (ev.type != GRPC_QUEUE_TIMEOUT) {
            break;
        }
        now = rl_rpc_now_ms();
        if (now >= until ||
            __atomic_load_n(&c->srv->stopping, __ATOMIC_ACQUIRE) ||
            wanted_elsewhere(c)) {
            return 2; /* serve_call collects the receive */
        }
    }
    c->recv_pending = 0;
    bb = c->recv_bb;
    c->recv_bb = NULL;
    if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
        if (bb) {
            grpc_byte_buffer_destroy(bb);
        }
        return -1;
    }
    return take_message(c, bb, msg);
}

int rl_rpc_call_send(rl_rpc_call *c, const void *data, size_t len)
{
    grpc_op ops[2];
    size_t n = 0;
    int rc;
    grpc_byte_buffer *bb;
    if (len > c->srv->max_msg) {
        rl_rpc_call_error(c, RL_RPC_RESOURCE_EXHAUSTED,
                          "response of %zu bytes exceeds the message limit "
                          "of %zu bytes",
                          len, c->srv->max_msg);
        return -1;
    }
    bb = rl_rpc_make_bb(data, len);
    memset(ops, 0, sizeof(ops));
    if (!c->sent_md) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    n++;
    rc = run_call_batch(c, ops, n, "sending");
    c->sent_md = 1;
    grpc_byte_buffer_destroy(bb);
    return rc;
}

/* Sets an error the handler cannot replace (a limit the wrapper hit). */
void rl_rpc_lock_error(rl_rpc_call *c, int code, const char *msg)
{
    snprintf(c->errmsg, sizeof(c->errmsg), "%s", msg);
    c->errcode = code;
    c->locked = 1;
}

int rl_rpc_call_error(rl_rpc_call *c, int code, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (c->locked) {
        return c->errcode; /* the limit the wrapper named stays the cause */
    }
    va_start(ap, fmt);
    n = vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(c->errmsg)) {
        memcpy(c->errmsg + sizeof(c->errmsg) - 4, "...", 4);
    }
    c->errcode = code;
    return code;
}

/* Polls the close op (at most every CANCEL_POLL_MS): 1 once the client
** cancelled the call or went away. */
#define CANCEL_POLL_MS 5
static int client_gone(rl_rpc_call *c, int64_t now)
{
    int expected = 0;
    grpc_event ev;
    if (__atomic_load_n(&c->closed, __ATOMIC_ACQUIRE)) {
        return c->cancelled;
    }
    if (!c->close_started ||
        now - __atomic_load_n(&c->last_poll, __ATOMIC_RELAXED) <
            CANCEL_POLL_MS ||
        !__atomic_compare_exchange_n(&c->polling, &expected, 1, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        return 0;
    }
    __atomic_store_n(&c->last_poll, now, __ATOMIC_RELAXED);
    ev = grpc_completion_queue_pluck(c->cq, &c->close_tag,
                                     gpr_inf_past(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_OP_COMPLETE) {
        __atomic_store_n(&c->closed, 1, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&c->polling, 0, __ATOMIC_RELEASE);
    return __atomic_load_n(&c->closed, __ATOMIC_ACQUIRE) ? c->cancelled : 0;
}

int64_t rl_rpc_call_remaining_ms(rl_rpc_call *c)
{
    int64_t now;
    int cancelling;
    /* Read without the server mutex: SQLite's progress handler asks this
    ** every thousand VM steps of every running call. */
    cancelling = __atomic_load_n(&c->srv->cancelling, __ATOMIC_ACQUIRE);
    if (cancelling || c->idle_cut) {
        return 0;
    }
    now = rl_rpc_now_ms();
    if (client_gone(c, now)) {
        return 0;
    }
    if (c->deadline == INT64_MAX) {
        return INT64_MAX;
    }
    return c->deadline > now ? c->deadline - now : 0;
}

const char *rl_rpc_call_stop_reason(rl_rpc_call *c)
{
    int64_t now = rl_rpc_now_ms();
    c->stop[0] = 0;
    if (__atomic_load_n(&c->srv->cancelling, __ATOMIC_ACQUIRE)) {
        snprintf(c->stop, sizeof(c->stop),
                 "the server is shutting down (calls still running after "
                 "the drain time -grace-ms are cancelled)");
    } else if (c->idle_cut) {
        snprintf(c->stop, sizeof(c->stop),
                 "no message moved for %lld ms (raftd -stream-idle-ms)",
                 (long long)c->srv->idle_ms);
    } else if (c->deadline != INT64_MAX && now >= c->deadline) {
        if (c->cap_ms) {
            snprintf(c->stop, sizeof(c->stop),
                     "the server's maximum call time of %lld ms passed (raftd "
                     "%s raises it)",
                     (long long)c->cap_ms, c->cap_flag);
        } else {
            snprintf(c->stop, sizeof(c->stop),
                     "the deadline the client set passed");
        }
    } else if (client_gone(c, now + CANCEL_POLL_MS)) {
        snprintf(c->stop, sizeof(c->stop),
                 "the client cancelled the call or went away");
    }
    return c->stop;
}

const char *rl_rpc_call_peer(rl_rpc_call *c)
{
    return c->peer;
}

int64_t rl_rpc_call_deadline(rl_rpc_call *c)
{
    return c->deadline;
}

const char *rl_rpc_call_method(rl_rpc_call *c)
{
    return c->method;
}

size_t rl_rpc_call_max_msg(rl_rpc_call *c)
{
    return c->srv->max_msg;
}

/* Looks up the connection's security once per call (worker thread). */
static void call_security(rl_rpc_call *c)
{
    grpc_auth_context *ctx;
    grpc_auth_property_iterator it;
    const grpc_auth_property *prop;
    if (c->sec_known)
        return;
    c->sec_known = 1;
    ctx = grpc_call_auth_context(c->call);
    if (!ctx)
        return;
    it = grpc_auth_context_find_properties_by_name(
        ctx, GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
    prop = grpc_auth_property_iterator_next(&it);
    c->tls = prop && prop->value &&
             prop->value_length == strlen(GRPC_SSL_TRANSPORT_SECURITY_TYPE) &&
             !memcmp(prop->value, GRPC_SSL_TRANSPORT_SECURITY_TYPE,
                     prop->value_length);
    /* The core sets the certificate property only for a certificate the
    ** handshake verified against the server's CA. */
    it = grpc_auth_context_find_properties_by_name(
        ctx, GRPC_X509_PEM_CERT_PROPERTY_NAME);
    prop = grpc_auth_property_iterator_next(&it);
    if (c->tls && prop && prop->value && prop->value_length > 0 &&
        (c->cert_pem = malloc(prop->value_length + 1)) != NULL) {
        memcpy(c->cert_pem, prop->value, prop->value_length);
        c->cert_pem[prop->value_length] = 0;
        c->cert_len = prop->value_length;
    }
    grpc_auth_context_release(ctx);
}

int rl_rpc_call_tls(rl_rpc_call *c)
{
    call_security(c);
    return c->tls;
}

const char *rl_rpc_call_peer_cert(rl_rpc_call *c, size_t *len)
{
    call_security(c);
    if (len)
        *len = c->cert_len;
    return c->cert_pem;
}

int rl_rpc_call_metadata(rl_rpc_call *c, const char *key, char *out,
                         size_t outlen)
{
    size_t i, klen = strlen(key);
    for (i = 0; i < c->md.count; i++) {
        const grpc_metadata *m = &c->md.metadata[i];
        size_t n = GRPC_SLICE_LENGTH(m->key), vn;
        if (n != klen || memcmp(GRPC_SLICE_START_PTR(m->key), key, n) != 0)
            continue;
        vn = GRPC_SLICE_LENGTH(m->value);
        if (vn >= outlen || memchr(GRPC_SLICE_START_PTR(m->value), 0, vn))
            return -1;
        memcpy(out, GRPC_SLICE_START_PTR(m->value), vn);
        out[vn] = 0;
        return 1;
    }
    return 0;
}
