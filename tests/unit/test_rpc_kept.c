/*
** tests/unit/test_rpc_kept.c -- kept streams of the gRPC wrapper
** (raftd/rpc/kept.c, rl_rpc_call_recv_wait) in one process, its client
** against its server on 127.0.0.1: a stream taken, used and given back is
** taken again (one call for many exchanges); a handler that ends a quiet
** stream never acts on a request it did not answer, even when the request
** arrives as it ends (the client sees status OK and no answer, and sends
** again); a server stopping ends its quiet streams at once; a method the
** target refused is not asked again; a client's receive that waits too
** long cancels the call; at most RL_RPC_KEPT streams are kept; a stream
** idle too long is not reused; a quiet stream gives way to a call that
** needs its worker or its client's slot.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rpc.h"

#include "lib/check.h"
#include "lib/ports.h"

#define LIFE_MS 60000

/* What a session handler did: requests acted on (answered or not), and
** how its calls ended. */
typedef struct sess_stats {
    int64_t quiet_ms;
    int acted, quiet_ends, closed_ends, broken;
} sess_stats;

/* A session: one answer (the request echoed) per request, until the client
** closes, the stream is quiet for quiet_ms, or it breaks. */
static int session_cb(rl_rpc_call *c, void *arg)
{
    sess_stats *st = arg;
    for (;;) {
        rl_rpc_buf m;
        int got = rl_rpc_call_recv_wait(c, &m, st->quiet_ms);
        if (got == 2) {
            __atomic_add_fetch(&st->quiet_ends, 1, __ATOMIC_RELAXED);
            return RL_RPC_OK;
        }
        if (got == 0) {
            __atomic_add_fetch(&st->closed_ends, 1, __ATOMIC_RELAXED);
            return RL_RPC_OK;
        }
        if (got < 0) {
            __atomic_add_fetch(&st->broken, 1, __ATOMIC_RELAXED);
            return rl_rpc_call_error(c, RL_RPC_CANCELLED, "broken");
        }
        __atomic_add_fetch(&st->acted, 1, __ATOMIC_RELAXED);
        got = rl_rpc_call_send(c, m.data, m.len);
        rl_rpc_buf_free(&m);
        if (got != 0)
            return rl_rpc_call_error(c, RL_RPC_CANCELLED, "answer not sent");
    }
}

/* Takes one request and never answers: works until the call must stop. */
static int hold_cb(rl_rpc_call *c, void *arg)
{
    rl_rpc_buf m;
    (void)arg;
    if (rl_rpc_call_recv(c, &m) == 1)
        rl_rpc_buf_free(&m);
    for (int i = 0; i < 1000 && rl_rpc_call_remaining_ms(c) > 0; i++)
        usleep(10000);
    return rl_rpc_call_error(c, RL_RPC_DEADLINE_EXCEEDED, "held");
}

static sess_stats slow_quiet = {10000, 0, 0, 0, 0};
static sess_stats fast_quiet = {30, 0, 0, 0, 0};

/* One exchange of msg on a kept stream of method: 1 answered (and the
** stream given back), 0 the call ended with status OK and no answer, -1
** another failure (*code says which), -2 no stream. */
static int exchange(rl_rpc_client *cl, const char *target, const char *method,
                    int64_t idle_ms, const char *msg, int *reused, int *code)
{
    rl_rpc_stream *st;
    rl_rpc_buf r;
    char err[256];
    int got;
    *code = RL_RPC_OK;
    st = rl_rpc_stream_take(cl, target, method, idle_ms, LIFE_MS, reused, err,
                            sizeof err);
    if (!st)
        return -2;
    if (rl_rpc_stream_send(st, msg, strlen(msg)) == 0) {
        got = rl_rpc_stream_recv_wait(st, &r, 5000);
        if (got == 1) {
            int same = r.len == strlen(msg) && !memcmp(r.data, msg, r.len);
            rl_rpc_buf_free(&r);
            EXPECT(same, "the answer echoes %s", msg);
            rl_rpc_stream_keep(cl, st);
            return 1;
        }
    }
    *code = rl_rpc_stream_finish(st, err, sizeof err);
    return *code == RL_RPC_OK ? 0 : -1;
}

static int echo_cb(rl_rpc_call *c, void *arg)
{
    rl_rpc_buf m;
    int rc;
    (void)arg;
    if (rl_rpc_call_recv(c, &m) != 1)
        return rl_rpc_call_error(c, RL_RPC_INVALID_ARGUMENT, "no request");
    rc = rl_rpc_call_send(c, m.data, m.len);
    rl_rpc_buf_free(&m);
    return rc == 0 ? RL_RPC_OK : RL_RPC_CANCELLED;
}

static rl_rpc_server *start_server_with(char *target, size_t n, int workers,
                                        int client_cap)
{
    rl_rpc_server_config cfg = {0};
    rl_rpc_server *s;
    char addr[64], err[256];
    int port = 0;
    if (rl_test_pick_ports(&port, 1, 0) != 0)
        port = 0;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    cfg.addr = addr;
    cfg.max_workers = workers;
    cfg.max_client_calls = client_cap;
    s = rl_rpc_server_new(&cfg, err, sizeof err);
    EXPECT(s != NULL, "server_new: %s", err);
    if (!s)
        return NULL;
    EXPECT(rl_rpc_server_add(s, "/t.K/Session", session_cb, &slow_quiet) == 0 &&
               rl_rpc_server_add(s, "/t.K/Quick", session_cb, &fast_quiet) ==
                   0 &&
               rl_rpc_server_add(s, "/t.K/Hold", hold_cb, NULL) == 0 &&
               rl_rpc_server_add(s, "/t.K/Echo", echo_cb, NULL) == 0,
           "add");
    port = rl_rpc_server_start(s, err, sizeof err);
    EXPECT(port > 0, "start: %s", err);
    snprintf(target, n, "127.0.0.1:%d", port);
    return s;
}

static rl_rpc_server *start_server(char *target, size_t n)
{
    return start_server_with(target, n, 16, 0);
}

/*
** A server of `workers` workers and a cap of client_cap calls per client,
** with `quiet` sessions of this client kept quiet on it: a unary call of
** the same client (it needs a worker, or a slot of the client's cap, that
** a quiet session holds) is served within a second, not after the
** sessions' 10 s of quiet: a quiet session gives way.
*/
static void gives_way(const char *what, int workers, int client_cap, int quiet)
{
    rl_rpc_server *s;
    rl_rpc_client *cl = NULL;
    char target[64], err[256];
    rl_rpc_stream *st[4];
    rl_rpc_buf r;
    int reused, code, taken = 0;
    int64_t t0;
    s = start_server_with(target, sizeof target, workers, client_cap);
    if (s)
        cl = rl_rpc_client_new(NULL, 0, err, sizeof err);
    EXPECT(s && cl, "%s: server and client", what);
    for (int i = 0; s && cl && i < quiet; i++) {
        /* One exchange each, at once: the sessions are in service. */
        st[i] = rl_rpc_stream_take(cl, target, "/t.K/Session", 10000, LIFE_MS,
                                   &reused, err, sizeof err);
        if (st[i] && rl_rpc_stream_send(st[i], "s", 1) == 0 &&
            rl_rpc_stream_recv_wait(st[i], &r, 5000) == 1) {
            rl_rpc_buf_free(&r);
            taken++;
        }
    }
    EXPECT(taken == quiet, "%s: %d sessions answered", what, taken);
    for (int i = 0; i < taken; i++)
        rl_rpc_stream_keep(cl, st[i]);
    if (taken == quiet) {
        t0 = rl_rpc_now_ms();
        code = rl_rpc_unary(cl, target, "/t.K/Echo", "e", 1, 8000, &r, err,
                            sizeof err);
        EXPECT(code == RL_RPC_OK, "%s: echo %d %s", what, code, err);
        if (code == RL_RPC_OK)
            rl_rpc_buf_free(&r);
        EXPECT(rl_rpc_now_ms() - t0 < 1000,
               "%s: a call waiting for what a quiet session holds is served "
               "in %lld ms",
               what, (long long)(rl_rpc_now_ms() - t0));
    }
    rl_rpc_client_free(cl);
    rl_rpc_server_free(s, 1000);
}

int main(void)
{
    rl_rpc_server *srv;
    rl_rpc_client *cl;
    char target[64], err[256], msg[64];
    uint64_t opened, reused_n, o0, r0;
    int reused, code, rc;

    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    srv = start_server(target, sizeof target);
    cl = rl_rpc_client_new(NULL, 0, err, sizeof err);
    EXPECT(srv && cl, "server and client: %s", err);
    if (!srv || !cl)
        return 1;

    /* Reuse: 50 exchanges, one call. */
    for (int i = 0; i < 50; i++) {
        snprintf(msg, sizeof msg, "req %d", i);
        rc = exchange(cl, target, "/t.K/Session", 10000, msg, &reused, &code);
        EXPECT(rc == 1, "exchange %d answered: %d (code %d)", i, rc, code);
        EXPECT(reused == (i > 0), "exchange %d reused %d", i, reused);
    }
    rl_rpc_kept_counts(cl, &opened, &reused_n);
    EXPECT(opened == 1 && reused_n == 49,
           "50 exchanges: opened %llu, reused "
           "%llu",
           (unsigned long long)opened, (unsigned long long)reused_n);
    EXPECT(slow_quiet.acted == 50, "the server acted on 50: %d",
           slow_quiet.acted);

    /* Quiet ends, some as a request arrives: every request the server
    ** acted on was answered, and each one is answered exactly once after
    ** at most one resend. */
    {
        int answered = 0, resent = 0;
        for (int i = 0; i < 150; i++) {
            snprintf(msg, sizeof msg, "quick %d", i);
            rc = exchange(cl, target, "/t.K/Quick", 10000, msg, &reused, &code);
            if (rc == 0) {
                resent++;
                rc = exchange(cl, target, "/t.K/Quick", 10000, msg, &reused,
                              &code);
                EXPECT(rc == 1 && !reused,
                       "request %d, sent again on a new call: %d (code %d)", i,
                       rc, code);
            }
            EXPECT(rc == 1, "request %d answered: %d (code %d)", i, rc, code);
            answered += rc == 1;
            usleep((useconds_t)(25000 + rand() % 10000)); /* about quiet_ms */
        }
        EXPECT(answered == 150, "150 answered: %d", answered);
        EXPECT(fast_quiet.acted == 150,
               "the server acted on exactly the 150 answered: %d",
               fast_quiet.acted);
        EXPECT(fast_quiet.quiet_ends > 0 && resent > 0,
               "quiet ends happened (%d) and were met by a request (%d)",
               fast_quiet.quiet_ends, resent);
        EXPECT(fast_quiet.broken == 0, "no session broke: %d",
               fast_quiet.broken);
        fprintf(stderr, "quiet ends %d, requests sent again %d\n",
                fast_quiet.quiet_ends, resent);
    }

    /* Idle too long: not reused. */
    rc = exchange(cl, target, "/t.K/Session", 10000, "a", &reused, &code);
    EXPECT(rc == 1, "exchange before idling: %d", rc);
    usleep(60000);
    rc = exchange(cl, target, "/t.K/Session", 20, "b", &reused, &code);
    EXPECT(rc == 1 && !reused,
           "a stream idle 60 ms is not reused with "
           "idle_ms 20: rc %d reused %d",
           rc, reused);

    /* At most RL_RPC_KEPT kept. */
    {
        rl_rpc_stream *st[6];
        int reuses = 0;
        rl_rpc_kept_counts(cl, &o0, &r0);
        for (int round = 0; round < 2; round++) {
            for (int i = 0; i < 6; i++) {
                st[i] = rl_rpc_stream_take(cl, target, "/t.K/Session", 10000,
                                           LIFE_MS, &reused, err, sizeof err);
                EXPECT(st[i] != NULL, "take %d: %s", i, err);
                reuses += reused;
            }
            for (int i = 0; i < 6; i++)
                if (st[i])
                    rl_rpc_stream_keep(cl, st[i]);
        }
        rl_rpc_kept_counts(cl, &opened, &reused_n);
        /* Round 1: at most one kept before, 5 or 6 opened; round 2: 4
        ** reused, 2 opened. */
        EXPECT(reuses >= 4 && reuses <= 5 &&
                   reused_n - r0 == (uint64_t)reuses &&
                   opened - o0 == (uint64_t)(12 - reuses),
               "12 takes: %d reused, %llu opened", reuses,
               (unsigned long long)(opened - o0));
    }

    /* A client's receive that waits too long cancels its call. */
    {
        rl_rpc_stream *st = rl_rpc_stream_take(
            cl, target, "/t.K/Hold", 10000, LIFE_MS, &reused, err, sizeof err);
        rl_rpc_buf r;
        int64_t t0 = rl_rpc_now_ms();
        EXPECT(st != NULL, "take Hold: %s", err);
        if (st) {
            EXPECT(rl_rpc_stream_send(st, "x", 1) == 0, "send to Hold");
            rc = rl_rpc_stream_recv_wait(st, &r, 150);
            code = rl_rpc_stream_finish(st, err, sizeof err);
            EXPECT(rc == -1 && code == RL_RPC_CANCELLED,
                   "receive gave up: %d, status %d", rc, code);
            EXPECT(rl_rpc_now_ms() - t0 < 2000, "within its wait: %lld ms",
                   (long long)(rl_rpc_now_ms() - t0));
        }
    }

    /* A method the target does not have: UNIMPLEMENTED, then remembered. */
    rc = exchange(cl, target, "/t.K/Nope", 10000, "?", &reused, &code);
    EXPECT(rc == -1 && code == RL_RPC_UNIMPLEMENTED, "unknown method: %d %d",
           rc, code);
    rl_rpc_stream_refused(cl, target, "/t.K/Nope", 60000);
    EXPECT(rl_rpc_stream_take(cl, target, "/t.K/Nope", 10000, LIFE_MS, &reused,
                              err, sizeof err) == NULL &&
               strstr(err, "refused") != NULL,
           "refused method not asked again: %s", err);
    rc = exchange(cl, target, "/t.K/Session", 10000, "c", &reused, &code);
    EXPECT(rc == 1, "another method of the target still works: %d", rc);

    /* A quiet session gives way to a call that needs its worker, or its
    ** client's slot. */
    gives_way("pool at its maximum", 2, 8, 2);
    gives_way("client at its cap", 8, 1, 1);

    /* A server stopping ends its quiet streams at once (grace 5 s unused),
    ** and a kept stream then reports that nothing was acted on. */
    {
        int before = slow_quiet.acted;
        int64_t t0 = rl_rpc_now_ms();
        rl_rpc_server_free(srv, 5000);
        srv = NULL;
        EXPECT(rl_rpc_now_ms() - t0 < 1500,
               "server stopped in %lld ms with quiet streams kept",
               (long long)(rl_rpc_now_ms() - t0));
        rc =
            exchange(cl, target, "/t.K/Session", 10000, "late", &reused, &code);
        EXPECT(rc != 1 && slow_quiet.acted == before,
               "after the stop: %d (code %d), acted %d", rc, code,
               slow_quiet.acted);
    }
    rl_rpc_client_free(cl);
    return rl_check_report("test_rpc_kept");
}
