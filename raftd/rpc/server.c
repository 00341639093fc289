/*
** raftd/rpc/server.c -- the gRPC server of the wrapper (see rpc.h): request
** slots, the dispatcher, the worker pool with its per-client cap, start and
** shutdown. What a handler does with its call is call.c.
**
** This and the other raftd/rpc/ files are the only code of raftlite that
** includes a grpc header or calls a grpc_* / gpr_* function. They must
** never know a protobuf message or the meaning of a method: they move
** bytes and status codes.
**
** Server threading (measured on gRPC 1.51): one dispatcher thread drains
** the server's completion queue, whose only events are "a call arrived"
** (one per outstanding request slot) and the shutdown notification. Each
** request slot carries its own pluck completion queue that becomes the
** call's queue, so a worker thread can run the call's batches
** synchronously without any other thread touching that queue. Generic
** grpc_server_request_call is used for every method: it reports unknown
** methods too, which a worker then answers UNIMPLEMENTED (registered
** methods alone would leave them hanging until their deadline).
**
** Invariants:
**   - a request slot is posted only while !stopping, under s->mu, so no
**     grpc_server_request_call follows grpc_server_shutdown_and_notify;
**   - s->inflight counts calls handed to the pool and not yet finished;
**     the server is destroyed only when it is 0 and the shutdown tag came;
**   - a call's pluck queue has at most one batch in flight at a time
**     besides its RECV_CLOSE_ON_SERVER batch (tag &close_tag, started on
**     arrival, polled without blocking to see a cancelled call and
**     plucked before the call is freed) and, once a quiet handler
**     ended, the receive it left posted (tag &recv_tag, plucked after the
**     status batch);
**   - calls of a client at its cap stay queued: a worker takes the first
**     admissible call (admit), never one that would exceed the cap.
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

#define DEFAULT_WORKERS 64
#define DEFAULT_SPARE   8
/* A call waiting for its client's slot is answered this long before its
** deadline (see admit). */
#define WAIT_ANSWER_EARLY_MS 250

static void call_free(rl_rpc_call *c)
{
    if (c->call) {
        grpc_call_unref(c->call);
    }
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    rl_rpc_destroy_cq(c->cq);
    free(c->cert_pem);
    free(c);
}

/* Posts one request slot. Caller holds s->mu. */
static void post_request(rl_rpc_server *s)
{
    rl_rpc_call *c;
    if (s->stopping) {
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        return; /* the next arrival retries */
    }
    c->srv = s;
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    if (grpc_server_request_call(s->server, &c->call, &c->details, &c->md,
                                 c->cq, s->cq, c) != GRPC_CALL_OK) {
        call_free(c);
    }
}

static int64_t deadline_of(grpc_call_details *d)
{
    gpr_timespec dl = gpr_convert_clock_type(d->deadline, GPR_CLOCK_MONOTONIC);
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    gpr_timespec left;
    int64_t ms;
    if (gpr_time_cmp(dl, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0 ||
        dl.tv_sec > now.tv_sec + 100LL * 365 * 86400) {
        return INT64_MAX;
    }
    left = gpr_time_sub(dl, now);
    ms = (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
    return rl_rpc_now_ms() + (ms > 0 ? ms : 0);
}

/* The client identity the per-client cap counts: the TLS peer identity
** (certificate name) when there is one, else the peer's address without
** its port (a client may open many connections). */
static void peer_identity(rl_rpc_call *c)
{
    grpc_auth_context *ctx = grpc_call_auth_context(c->call);
    char *p;
    if (ctx) {
        grpc_auth_property_iterator it = grpc_auth_context_peer_identity(ctx);
        const grpc_auth_property *prop = grpc_auth_property_iterator_next(&it);
        if (prop && prop->value && prop->value_length > 0) {
            snprintf(c->peer, sizeof(c->peer), "tls:%.*s",
                     (int)(prop->value_length < 150 ? prop->value_length : 150),
                     prop->value);
        }
        grpc_auth_context_release(ctx);
        if (c->peer[0]) {
            return;
        }
    }
    p = grpc_call_get_peer(c->call);
    if (p) {
        char *colon = strrchr(p, ':');
        const char *addr = strncmp(p, "ipv4:", 5) == 0   ? p + 5
                           : strncmp(p, "ipv6:", 5) == 0 ? p + 5
                                                         : p;
        if (colon && colon > addr) {
            *colon = 0;
        }
        snprintf(c->peer, sizeof(c->peer), "ip:%s", addr);
        gpr_free(p);
    } else {
        snprintf(c->peer, sizeof(c->peer), "unknown");
    }
}

/* Whether a queued call may start now: a capped call only while its
** client has fewer than client_cap calls in service (then it is counted).
** A call whose deadline passed is let through to be answered at once.
** Caller holds s->mu. */
static int admit(rl_rpc_server *s, rl_rpc_call *c)
{
    int i, free_slot = -1;
    if (s->client_cap <= 0 || !c->m || (c->m->flags & RL_RPC_UNCAPPED)) {
        return 1;
    }
    for (i = 0; i < s->max_workers; i++) {
        if (s->peers[i].n > 0 && strcmp(s->peers[i].id, c->peer) == 0) {
            break;
        }
        if (s->peers[i].n == 0 && free_slot < 0) {
            free_slot = i;
        }
    }
    if (i == s->max_workers) {
        /* Calls in service never outnumber the workers: a slot is free. */
        i = free_slot;
        if (i < 0) {
            return 0;
        }
        snprintf(s->peers[i].id, sizeof(s->peers[i].id), "%s", c->peer);
    }
    if (s->peers[i].n >= s->client_cap) {
        c->waited_behind = s->peers[i].n;
        /* Answered a little before its deadline, so that the client gets
        ** the reason rather than its own bare DEADLINE_EXCEEDED. */
        c->gave_up = c->deadline != INT64_MAX &&
                     rl_rpc_now_ms() >= c->deadline - WAIT_ANSWER_EARLY_MS;
        return c->gave_up;
    }
    s->peers[i].n++;
    c->counted = 1;
    return 1;
}

/* Caller holds s->mu. */
static void peer_leave(rl_rpc_server *s, rl_rpc_call *c)
{
    int i;
    if (!c->counted) {
        return;
    }
    for (i = 0; i < s->max_workers; i++) {
        if (s->peers[i].n > 0 && strcmp(s->peers[i].id, c->peer) == 0) {
            s->peers[i].n--;
            break;
        }
    }
    c->counted = 0;
    /* A call of this client may be waiting for the slot. */
    pthread_cond_broadcast(&s->work_cv);
}

/* On arrival (dispatcher): the method, the server's deadline cap and the
** client identity, which the pool needs to pick calls. */
static void prepare_call(rl_rpc_server *s, rl_rpc_call *c)
{
    int i;
    int64_t cap;
    rl_rpc_copy_slice(c->method, sizeof(c->method), c->details.method);
    for (i = 0; i < s->nmethods; i++) {
        if (strcmp(s->methods[i].name, c->method) == 0) {
            c->m = &s->methods[i];
            break;
        }
    }
    /* The server's maximum: a call without a client deadline gets it. */
    cap = c->m && (c->m->flags & RL_RPC_STREAMING) ? s->max_stream_ms
                                                   : s->max_call_ms;
    if (cap > 0 &&
        (c->deadline == INT64_MAX || c->arrived + cap < c->deadline)) {
        c->deadline = c->arrived + cap;
        c->cap_ms = cap;
        c->cap_flag = c->m && (c->m->flags & RL_RPC_STREAMING)
                          ? "-max-stream-ms"
                          : "-max-call-ms";
    }
    peer_identity(c);
}

static void serve_call(rl_rpc_call *c)
{
    grpc_op ops[3];
    size_t n = 0;
    int code;
    const method *m = c->m;
    grpc_slice details;

    /* Completes when the call ends: early if the client cancels or goes,
    ** which the progress handler of a running statement polls. */
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[0].data.recv_close_on_server.cancelled = &c->cancelled;
    c->close_started = grpc_call_start_batch(c->call, ops, 1, &c->close_tag,
                                             NULL) == GRPC_CALL_OK;
    if (!m) {
        code = rl_rpc_call_error(c, RL_RPC_UNIMPLEMENTED,
                                 "unknown method %s: this server does not "
                                 "implement it",
                                 c->method);
    } else if (c->gave_up) {
        code = rl_rpc_call_error(
            c, RL_RPC_DEADLINE_EXCEEDED,
            "%s never started: it waited behind %d calls of client %s, the "
            "cap of calls in service per client (raftd -max-client-calls "
            "raises it), until its deadline",
            c->method, c->waited_behind, c->peer);
    } else if (rl_rpc_call_remaining_ms(c) == 0) {
        code = rl_rpc_call_error(c, RL_RPC_DEADLINE_EXCEEDED,
                                 "%s never started: %s", c->method,
                                 rl_rpc_call_stop_reason(c));
    } else {
        code = m->fn(c, m->arg);
    }
    if (c->locked) {
        code = c->errcode;
    }
    if (code != RL_RPC_OK && !c->errmsg[0]) {
        snprintf(c->errmsg, sizeof(c->errmsg), "%s failed (code %d)", c->method,
                 code);
    }
    n = 0;
    memset(ops, 0, sizeof(ops));
    if (!c->sent_md) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
    }
    details = grpc_slice_from_copied_string(code == RL_RPC_OK ? "" : c->errmsg);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n].data.send_status_from_server.status_details = &details;
    n++;
    /* Failure here means the client is gone; nothing is left to tell. */
    (void)rl_rpc_run_batch(c->call, c->cq, ops, n);
    grpc_slice_unref(details);
    /* A receive a quiet handler left posted (rl_rpc_call_recv_wait)
    ** completes once the status went out; what it got is never read. */
    if (c->recv_pending) {
        (void)grpc_completion_queue_pluck(
            c->cq, &c->recv_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (c->recv_bb) {
            grpc_byte_buffer_destroy(c->recv_bb);
            c->recv_bb = NULL;
        }
        c->recv_pending = 0;
    }
    /* Wait out a poll in progress on another thread, then the close op
    ** (it completes once the status went out or the call was cancelled). */
    while (__atomic_load_n(&c->polling, __ATOMIC_ACQUIRE)) {
        sched_yield();
    }
    if (c->close_started && !__atomic_load_n(&c->closed, __ATOMIC_ACQUIRE)) {
        (void)grpc_completion_queue_pluck(
            c->cq, &c->close_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
}

/* Unlinks and returns the first queued call that may start (see admit),
** or NULL. Caller holds s->mu. */
static rl_rpc_call *take_call(rl_rpc_server *s)
{
    rl_rpc_call *c, *prev = NULL;
    for (c = s->qhead; c; prev = c, c = c->next) {
        if (admit(s, c)) {
            break;
        }
    }
    if (!c) {
        return NULL;
    }
    if (prev) {
        prev->next = c->next;
    } else {
        s->qhead = c->next;
    }
    if (s->qtail == c) {
        s->qtail = prev;
    }
    s->qlen--;
    return c;
}

static void *worker_main(void *arg)
{
    rl_rpc_server *s = arg;
    rl_rpc_call *c;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!(c = take_call(s)) && !s->exiting) {
            s->nidle++;
            if (s->qhead) {
                /* Only calls of clients at their cap wait: look again
                ** when one of their calls ends, or soon, for a deadline. */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 50 * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&s->work_cv, &s->mu, &ts);
            } else {
                pthread_cond_wait(&s->work_cv, &s->mu);
            }
            s->nidle--;
        }
        if (!c) {
            break;
        }
        pthread_mutex_unlock(&s->mu);
        serve_call(c);
        pthread_mutex_lock(&s->mu);
        peer_leave(s, c);
        pthread_mutex_unlock(&s->mu);
        call_free(c);
        pthread_mutex_lock(&s->mu);
        s->inflight--;
        s->calls++;
        pthread_cond_broadcast(&s->state_cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Queues an arrived call for the pool. Caller holds s->mu. */
static void enqueue(rl_rpc_server *s, rl_rpc_call *c)
{
    c->next = NULL;
    if (s->qtail) {
        s->qtail->next = c;
    } else {
        s->qhead = c;
    }
    s->qtail = c;
    s->inflight++;
    s->qlen++;
    /* Idle workers may not have woken for calls queued just before, so
    ** compare with the queue length, not with zero. */
    if (s->qlen > s->nidle && s->nthreads < s->max_workers &&
        pthread_create(&s->threads[s->nthreads], NULL, worker_main, s) == 0) {
        s->nthreads++;
    }
    pthread_cond_signal(&s->work_cv);
}

static void *dispatcher_main(void *arg)
{
    rl_rpc_server *s = arg;
    grpc_event ev;
    rl_rpc_call *c;
    for (;;) {
        ev = grpc_completion_queue_next(
            s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.type != GRPC_OP_COMPLETE) {
            continue;
        }
        pthread_mutex_lock(&s->mu);
        if (ev.tag == &s->shutdown_tag) {
            s->shutdown_notified = 1;
            pthread_cond_broadcast(&s->state_cv);
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        c = ev.tag;
        if (!ev.success) {
            /* A slot given back at shutdown: no call in it. */
            pthread_mutex_unlock(&s->mu);
            call_free(c);
            continue;
        }
        c->deadline = deadline_of(&c->details);
        c->arrived = rl_rpc_now_ms();
        prepare_call(s, c);
        enqueue(s, c);
        post_request(s);
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

rl_rpc_server *rl_rpc_server_new(const rl_rpc_server_config *cfg, char *err,
                                 size_t errlen)
{
    rl_rpc_server *s;
    grpc_arg a[3];
    grpc_channel_args ca;
    if (!cfg->addr || snprintf(NULL, 0, "%s", cfg->addr) >= 256) {
        rl_seterr(err, errlen, "listen address missing or too long");
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        rl_seterr(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(s->addr, sizeof(s->addr), "%s", cfg->addr);
    s->max_msg = cfg->max_msg_bytes ? cfg->max_msg_bytes : DEFAULT_MAX_MSG;
    s->max_workers = cfg->max_workers > 0 ? cfg->max_workers : DEFAULT_WORKERS;
    s->spare = cfg->spare_requests > 0 ? cfg->spare_requests : DEFAULT_SPARE;
    s->max_call_ms = cfg->max_call_ms ? cfg->max_call_ms : RL_RPC_MAX_CALL_MS;
    s->max_stream_ms =
        cfg->max_stream_ms ? cfg->max_stream_ms : RL_RPC_MAX_STREAM_MS;
    s->idle_ms =
        cfg->stream_idle_ms ? cfg->stream_idle_ms : RL_RPC_STREAM_IDLE_MS;
    s->client_cap = cfg->max_client_calls;
    if (s->client_cap == 0) {
        int reserve = s->max_workers / 8 > 1 ? s->max_workers / 8 : 1;
        s->client_cap = s->max_workers > reserve ? s->max_workers - reserve : 1;
    }
    s->threads = calloc((size_t)s->max_workers, sizeof(pthread_t));
    s->peers = calloc((size_t)s->max_workers, sizeof(peer_count));
    if (!s->threads || !s->peers) {
        free(s->threads);
        free(s->peers);
        free(s);
        rl_seterr(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->state_cv, NULL);
    rl_rpc_init();
    /* The core receives up to twice the limit, so that rl_rpc_call_recv
    ** can refuse a message over it naming -max-msg-bytes (the core's own
    ** refusal names no flag); beyond twice the core refuses by itself. */
    rl_rpc_limit_args(a, &ca,
                      s->max_msg > 0x3fffffff ? 0x7fffffff : 2 * s->max_msg);
    a[1].value.integer = s->max_msg > 0x7fffffff ? 0x7fffffff : (int)s->max_msg;
    /* grpc listens with SO_REUSEPORT by default: a second server on an
    ** address already served would start "successfully" and the kernel
    ** would split the connections between two nodes. Without it the
    ** second bind fails and start reports the address in use. */
    a[2].type = GRPC_ARG_INTEGER;
    a[2].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
    a[2].value.integer = 0;
    ca.num_args = 3;
    s->server = grpc_server_create(&ca, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);

    grpc_server_credentials *creds = rl_rpc_server_creds(cfg->tls, err, errlen);
    if (!creds) {
        rl_rpc_server_free(s, 0);
        return NULL;
    }
    int port = grpc_server_add_http2_port(s->server, s->addr, creds);
    grpc_server_credentials_release(creds);
    if (port <= 0) {
        rl_seterr(err, errlen,
                  "cannot listen on %s (address in use or invalid)", s->addr);
        rl_rpc_server_free(s, 0);
        return NULL;
    }
    s->started = -port; /* bound, not started; remembered for start */
    return s;
}

static int server_add(rl_rpc_server *s, const char *name, rl_rpc_handler_fn fn,
                      void *arg, int flags)
{
    method *m;
    if (s->started > 0) {
        return -1;
    }
    m = realloc(s->methods, (size_t)(s->nmethods + 1) * sizeof(*m));
    if (!m) {
        return -1;
    }
    s->methods = m;
    m[s->nmethods].name = strdup(name);
    if (!m[s->nmethods].name) {
        return -1;
    }
    m[s->nmethods].fn = fn;
    m[s->nmethods].arg = arg;
    m[s->nmethods].flags = flags;
    s->nmethods++;
    return 0;
}

int rl_rpc_server_add(rl_rpc_server *s, const char *name, rl_rpc_handler_fn fn,
                      void *arg)
{
    return server_add(s, name, fn, arg, 0);
}

int rl_rpc_server_add_flags(rl_rpc_server *s, const char *name,
                            rl_rpc_handler_fn fn, void *arg, int flags)
{
    return server_add(s, name, fn, arg, flags);
}

int rl_rpc_server_start(rl_rpc_server *s, char *err, size_t errlen)
{
    int port = -s->started, i;
    if (port <= 0) {
        rl_seterr(err, errlen, "server already started");
        return -1;
    }
    grpc_server_start(s->server);
    if (pthread_create(&s->dispatcher, NULL, dispatcher_main, s) != 0) {
        rl_seterr(err, errlen, "cannot start the dispatcher thread");
        return -1;
    }
    s->started = port;
    pthread_mutex_lock(&s->mu);
    for (i = 0; i < s->spare; i++) {
        post_request(s);
    }
    pthread_mutex_unlock(&s->mu);
    return port;
}

uint64_t rl_rpc_server_calls(rl_rpc_server *s)
{
    uint64_t n;
    pthread_mutex_lock(&s->mu);
    n = s->calls;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void rl_rpc_server_free(rl_rpc_server *s, int grace_ms)
{
    int i;
    if (!s) {
        return;
    }
    if (s->started > 0) {
        int64_t end = rl_rpc_now_ms() + (grace_ms > 0 ? grace_ms : 0);
        pthread_mutex_lock(&s->mu);
        /* Read without the lock by quiet handlers (call.c). */
        __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&s->mu);
        grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
        pthread_mutex_lock(&s->mu);
        while (s->inflight > 0 && rl_rpc_now_ms() < end) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&s->state_cv, &s->mu, &ts);
        }
        if (s->inflight > 0) {
            __atomic_store_n(&s->cancelling, 1, __ATOMIC_RELEASE);
            pthread_mutex_unlock(&s->mu);
            grpc_server_cancel_all_calls(s->server);
            pthread_mutex_lock(&s->mu);
        }
        while (s->inflight > 0 || !s->shutdown_notified) {
            pthread_cond_wait(&s->state_cv, &s->mu);
        }
        s->exiting = 1;
        pthread_cond_broadcast(&s->work_cv);
        pthread_mutex_unlock(&s->mu);
        for (i = 0; i < s->nthreads; i++) {
            pthread_join(s->threads[i], NULL);
        }
        grpc_completion_queue_shutdown(s->cq);
        pthread_join(s->dispatcher, NULL);
        grpc_server_destroy(s->server);
        grpc_completion_queue_destroy(s->cq);
    } else {
        /* Never started: grpc 1.51 asserts at destroy if a listener was
        ** added and shutdown was not called, so call it and wait. */
        grpc_event ev;
        grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
        do {
            ev = grpc_completion_queue_next(
                s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        } while (ev.type != GRPC_OP_COMPLETE || ev.tag != &s->shutdown_tag);
        grpc_server_destroy(s->server);
        grpc_completion_queue_shutdown(s->cq);
        do {
            ev = grpc_completion_queue_next(
                s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        } while (ev.type != GRPC_QUEUE_SHUTDOWN);
        grpc_completion_queue_destroy(s->cq);
    }
    for (i = 0; i < s->nmethods; i++) {
        free(s->methods[i].name);
    }
    free(s->methods);
    free(s->threads);
    free(s->peers);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->state_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    grpc_shutdown();
}
