/*
** tests/unit/test_rpc.c -- the gRPC wrapper (raftd/rpc/) end to end in one
** process: its client against its server on 127.0.0.1. Unary and streaming
** calls both ways, payloads over one message limit in chunks, UNIMPLEMENTED
** for unknown methods, deadlines seen by client and handler, channel reuse,
** calls served concurrently, one request fanned out to several targets
** (enough answers end it, a hedge delays the rest), and shutdown that
** cancels a call which would never end.
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

/* "127.0.0.1:PORT" with a free port below 32768 (tests never bind the
** ephemeral range, as port 0 would), into buf. */
static const char *free_addr(char *buf, size_t n)
{
    int port = 0;
    static int seeded;
    if (!seeded++)
        srand((unsigned)getpid() ^ (unsigned)time(NULL));
    if (rl_test_pick_ports(&port, 1, 0) != 0)
        port = 0; /* start fails and the test says so */
    snprintf(buf, n, "127.0.0.1:%d", port);
    return buf;
}

static int echo_cb(rl_rpc_call *c, void *arg)
{
    rl_rpc_buf m;
    (void)arg;
    if (rl_rpc_call_recv(c, &m) != 1) {
        return rl_rpc_call_error(c, RL_RPC_INVALID_ARGUMENT, "no request");
    }
    int rc = rl_rpc_call_send(c, m.data, m.len);
    rl_rpc_buf_free(&m);
    return rc == 0 ? RL_RPC_OK : RL_RPC_CANCELLED;
}

/* Client streaming: replies with the total length and a byte sum. */
static int sum_cb(rl_rpc_call *c, void *arg)
{
    rl_rpc_buf m;
    uint64_t out[2] = {0, 0};
    int got;
    (void)arg;
    while ((got = rl_rpc_call_recv(c, &m)) == 1) {
        size_t i;
        out[0] += m.len;
        for (i = 0; i < m.len; i++) {
            out[1] += m.data[i];
        }
        rl_rpc_buf_free(&m);
    }
    if (got < 0) {
        return RL_RPC_CANCELLED;
    }
    return rl_rpc_call_send(c, out, sizeof(out)) == 0 ? RL_RPC_OK
                                                      : RL_RPC_CANCELLED;
}

/* Server streaming: the request is a count n; sends n 1 KiB messages. */
static int count_cb(rl_rpc_call *c, void *arg)
{
    rl_rpc_buf m;
    uint32_t n, i;
    uint8_t buf[1024];
    (void)arg;
    if (rl_rpc_call_recv(c, &m) != 1 || m.len != 4) {
        rl_rpc_buf_free(&m);
        return rl_rpc_call_error(c, RL_RPC_INVALID_ARGUMENT, "want 4 bytes");
    }
    memcpy(&n, m.data, 4);
    rl_rpc_buf_free(&m);
    for (i = 0; i < n; i++) {
        memset(buf, (int)(i & 0xff), sizeof(buf));
        if (rl_rpc_call_send(c, buf, sizeof(buf)) != 0) {
            return RL_RPC_CANCELLED;
        }
    }
    return RL_RPC_OK;
}

static volatile int sleep_saw_deadline;

/* Works until the deadline (or shutdown) says stop, at most 10 s. */
static int sleep_cb(rl_rpc_call *c, void *arg)
{
    rl_rpc_buf m;
    int i;
    (void)arg;
    if (rl_rpc_call_recv(c, &m) == 1) {
        rl_rpc_buf_free(&m);
    }
    for (i = 0; i < 1000; i++) {
        if (rl_rpc_call_remaining_ms(c) == 0) {
            sleep_saw_deadline = 1;
            return rl_rpc_call_error(c, RL_RPC_DEADLINE_EXCEEDED, "stopped");
        }
        usleep(10000);
    }
    return rl_rpc_call_send(c, "z", 1) == 0 ? RL_RPC_OK : RL_RPC_CANCELLED;
}

static int fail_cb(rl_rpc_call *c, void *arg)
{
    (void)arg;
    return rl_rpc_call_error(c, RL_RPC_FAILED_PRECONDITION, "nope %d", 42);
}

typedef struct slow_arg {
    rl_rpc_client *cl;
    const char *target;
    int64_t timeout_ms;
    int code;
    double secs;
} slow_arg;

static double now_s(void)
{
    return (double)rl_rpc_now_ms() / 1000.0;
}

static void *slow_thread(void *p)
{
    slow_arg *a = p;
    rl_rpc_buf r;
    char err[256];
    double t0 = now_s();
    a->code = rl_rpc_unary(a->cl, a->target, "/t.S/Sleep", "x", 1,
                           a->timeout_ms, &r, err, sizeof(err));
    a->secs = now_s() - t0;
    rl_rpc_buf_free(&r);
    return NULL;
}

/* A fan's answers as the test's callback saw them (rl_rpc_unary_fan). */
typedef struct fan_tally {
    int ok_needed; /* enough once this many OK answers came */
    int ok, failed, order[8], codes[8], n;
} fan_tally;

static int fan_cb(void *arg, int i, int code, const rl_rpc_buf *reply,
                  const char *err)
{
    fan_tally *t = arg;
    (void)err;
    if (t->n < 8) {
        t->order[t->n] = i;
        t->codes[t->n] = code;
    }
    t->n++;
    if (code == RL_RPC_OK && reply && reply->len == 3 &&
        memcmp(reply->data, "fan", 3) == 0)
        t->ok++;
    else
        t->failed++;
    return t->ok >= t->ok_needed;
}

/* One fan of "fan" to Echo on tg: its answers in *t, its time in *secs. */
static int run_fan(rl_rpc_client *cl, const char *const *tg, int n, int first,
                   int64_t hedge_ms, int64_t timeout_ms, int ok_needed,
                   fan_tally *t, double *secs)
{
    double t0 = now_s();
    int got;
    memset(t, 0, sizeof *t);
    t->ok_needed = ok_needed;
    got = rl_rpc_unary_fan(cl, tg, n, first, hedge_ms, "/t.S/Echo", "fan", 3,
                           timeout_ms, fan_cb, t);
    *secs = now_s() - t0;
    return got;
}

/* The fan: targets that answer, one that never does (its handler works
** until cancelled), one where nothing listens. */
static void fan_checks(rl_rpc_client *cl, const char *fast, const char *slow,
                       const char *dead)
{
    const char *all[3] = {dead, slow, fast}, *hedged[2] = {slow, fast};
    const char *failing[2] = {dead, fast}, *never[3] = {fast, dead, slow};
    fan_tally t;
    double secs;
    int got;

    /* All at once: the fast answer is enough; the slow call is cancelled
    ** long before its 5 s deadline. */
    got = run_fan(cl, all, 3, 0, 0, 5000, 1, &t, &secs);
    EXPECT(t.ok == 1 && got == t.n && got <= 2, "fan of 3: %d answers, %d ok",
           got, t.ok);
    EXPECT(secs < 2.0,
           "fan of 3 took %.2fs (the slow one is cancelled once "
           "enough came)",
           secs);

    /* Only the first at once; the second after the 200 ms hedge. */
    got = run_fan(cl, hedged, 2, 1, 200, 5000, 1, &t, &secs);
    EXPECT(got == 1 && t.ok == 1 && t.order[0] == 1,
           "hedged fan: %d answers, %d ok, first from %d", got, t.ok,
           t.order[0]);
    EXPECT(secs >= 0.19 && secs < 2.0,
           "hedged fan took %.2fs: the second call waits for the hedge", secs);

    /* The first fails at once: the rest are called then, not at the 10 s
    ** hedge. */
    got = run_fan(cl, failing, 2, 1, 10000, 5000, 1, &t, &secs);
    EXPECT(got == 2 && t.ok == 1 && t.codes[0] == RL_RPC_UNAVAILABLE,
           "after a failure: %d answers, %d ok, first code %d", got, t.ok,
           t.codes[0]);
    EXPECT(secs < 3.0, "a failed first call took %.2fs", secs);

    /* Never enough: every call's outcome is handed over, the slow one at
    ** its deadline. */
    got = run_fan(cl, never, 3, 0, 0, 500, 2, &t, &secs);
    EXPECT(got == 3 && t.ok == 1 && t.failed == 2,
           "never enough: %d answers, %d ok", got, t.ok);
    EXPECT(secs >= 0.45 && secs < 3.0,
           "never enough ends at the deadline: %.2fs", secs);

    memset(&t, 0, sizeof t);
    EXPECT(rl_rpc_unary_fan(cl, NULL, 0, 0, 0, "/t.S/Echo", "", 0, 100, fan_cb,
                            &t) == 0 &&
               t.n == 0,
           "an empty fan answers nothing");
}

/* Makes a CA, a server certificate for 127.0.0.1 and a client certificate
** with the openssl command in dir, before grpc starts any thread (system()
** forks). Returns 0 on success. */
static int make_certs(const char *dir)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "cd %s && exec >log 2>&1 && "
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ca "
             "-keyout ca.key -out ca.pem && "
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=o "
             "-keyout other.key -out other.pem && "
             "printf 'subjectAltName=IP:127.0.0.1\\n' > srv.ext && "
             "openssl req -newkey rsa:2048 -nodes -subj /CN=s -keyout s.key "
             "-out s.csr && openssl x509 -req -in s.csr -CA ca.pem -CAkey "
             "ca.key -CAcreateserial -days 2 -extfile srv.ext -out s.pem && "
             "openssl req -newkey rsa:2048 -nodes -subj /CN=c -keyout c.key "
             "-out c.csr && openssl x509 -req -in c.csr -CA ca.pem -CAkey "
             "ca.key -CAcreateserial -days 2 -out c.pem",
             dir);
    return system(cmd);
}

/* Mutual TLS through the wrapper on both sides. */
/* One Echo to target with a new client of settings t (NULL: plaintext):
** the status code (-1: no client). */
static int echo_once(const rl_rpc_tls *t, const char *target)
{
    char err[RL_RPC_ERRMAX];
    rl_rpc_buf r = {0};
    rl_rpc_client *cl = rl_rpc_client_new(t, 0, err, sizeof(err));
    int code;
    if (!cl) {
        return -1;
    }
    code = rl_rpc_unary(cl, target, "/t.S/Echo", "tls", 3, 5000, &r, err,
                        sizeof(err));
    rl_rpc_buf_free(&r);
    rl_rpc_client_free(cl);
    return code;
}

static void tls_checks(const char *dir)
{
    char cert[512], key[512], ca[512], ccert[512], ckey[512], other[512];
    char err[512], target[64], laddr[64];
    rl_rpc_tls stls, ctls;
    rl_rpc_server_config cfg = {0};
    rl_rpc_server *srv;
    rl_rpc_client *cl;
    rl_rpc_buf r;
    int port, code;
    snprintf(cert, sizeof(cert), "%s/s.pem", dir);
    snprintf(key, sizeof(key), "%s/s.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(ccert, sizeof(ccert), "%s/c.pem", dir);
    snprintf(ckey, sizeof(ckey), "%s/c.key", dir);
    snprintf(other, sizeof(other), "%s/other.pem", dir);
    stls = (rl_rpc_tls){cert, key, ca, 1};
    cfg.addr = free_addr(laddr, sizeof(laddr));
    cfg.tls = &stls;
    srv = rl_rpc_server_new(&cfg, err, sizeof(err));
    EXPECT(srv != NULL, "mTLS server: %s", err);
    if (!srv) {
        return;
    }
    rl_rpc_server_add(srv, "/t.S/Echo", echo_cb, NULL);
    port = rl_rpc_server_start(srv, err, sizeof(err));
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);

    ctls = (rl_rpc_tls){ccert, ckey, ca, 0};
    cl = rl_rpc_client_new(&ctls, 0, err, sizeof(err));
    EXPECT(cl != NULL, "mTLS client: %s", err);
    code = rl_rpc_unary(cl, target, "/t.S/Echo", "tls", 3, 10000, &r, err,
                        sizeof(err));
    EXPECT(code == RL_RPC_OK && r.len == 3, "echo over mTLS: %d %s", code, err);
    rl_rpc_buf_free(&r);
    rl_rpc_client_free(cl);

    ctls = (rl_rpc_tls){NULL, NULL, ca, 0};
    code = echo_once(&ctls, target);
    EXPECT(code == RL_RPC_UNAVAILABLE, "no client certificate refused: %d",
           code);
    ctls = (rl_rpc_tls){ccert, ckey, other, 0};
    code = echo_once(&ctls, target);
    EXPECT(code == RL_RPC_UNAVAILABLE, "server from another CA refused: %d",
           code);
    code = echo_once(NULL, target);
    EXPECT(code == RL_RPC_UNAVAILABLE, "plaintext to mTLS refused: %d", code);
    rl_rpc_server_free(srv, 100);
}

int main(void)
{
    char certdir[] = "/tmp/rltest-rpc-XXXXXX";
    int have_certs;
    rl_rpc_server_config cfg = {0};
    rl_rpc_server *srv;
    rl_rpc_client *cl;
    char err[512], target[64], target2[64], laddr[64];
    rl_rpc_buf r;
    int port, code, i;

    EXPECT(mkdtemp(certdir) != NULL, "mkdtemp");
    have_certs = make_certs(certdir) == 0;
    EXPECT(have_certs, "openssl could not make certificates in %s", certdir);

    EXPECT(rl_rpc_listen_addr(":50051", target, sizeof(target)) == 0 &&
               strcmp(target, "0.0.0.0:50051") == 0,
           "':PORT' is every interface: %s", target);
    EXPECT(rl_rpc_listen_addr("127.0.0.1:7", target, sizeof(target)) == 0 &&
               strcmp(target, "127.0.0.1:7") == 0,
           "HOST:PORT kept: %s", target);

    cfg.addr = free_addr(laddr, sizeof(laddr));
    cfg.max_msg_bytes = 1 << 20;
    cfg.max_workers = 8;
    srv = rl_rpc_server_new(&cfg, err, sizeof(err));
    EXPECT(srv != NULL, "server_new: %s", err);
    if (!srv) {
        return 1;
    }
    EXPECT(rl_rpc_server_add(srv, "/t.S/Echo", echo_cb, NULL) == 0 &&
               rl_rpc_server_add(srv, "/t.S/Sum", sum_cb, NULL) == 0 &&
               rl_rpc_server_add(srv, "/t.S/Count", count_cb, NULL) == 0 &&
               rl_rpc_server_add(srv, "/t.S/Sleep", sleep_cb, NULL) == 0 &&
               rl_rpc_server_add(srv, "/t.S/Fail", fail_cb, NULL) == 0,
           "add");
    port = rl_rpc_server_start(srv, err, sizeof(err));
    EXPECT(port > 0, "start: %s", err);
    EXPECT(rl_rpc_server_add(srv, "/t.S/Late", echo_cb, NULL) != 0,
           "no handler added after start");
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    snprintf(target2, sizeof(target2), "localhost:%d", port);

    cl = rl_rpc_client_new(NULL, 4 << 20, err, sizeof(err));
    EXPECT(cl != NULL, "client_new: %s", err);

    /* Unary, and channel reuse. */
    for (i = 0; i < 20; i++) {
        code = rl_rpc_unary(cl, target, "/t.S/Echo", "hello", 5, 5000, &r, err,
                            sizeof(err));
        EXPECT(code == RL_RPC_OK && r.len == 5 && !memcmp(r.data, "hello", 5),
               "echo %d: code %d %s", i, code, err);
        rl_rpc_buf_free(&r);
    }
    code = rl_rpc_unary(cl, target, "/t.S/Echo", "", 0, 5000, &r, err,
                        sizeof(err));
    EXPECT(code == RL_RPC_OK && r.len == 0, "empty echo: %d %s", code, err);
    rl_rpc_buf_free(&r);
    EXPECT(rl_rpc_client_channels(cl) == 1, "one channel for 21 calls: %d",
           rl_rpc_client_channels(cl));
    code = rl_rpc_unary(cl, target2, "/t.S/Echo", "x", 1, 5000, &r, err,
                        sizeof(err));
    EXPECT(code == RL_RPC_OK, "echo via localhost: %d %s", code, err);
    rl_rpc_buf_free(&r);
    EXPECT(rl_rpc_client_channels(cl) == 2,
           "a second target, a second "
           "channel: %d",
           rl_rpc_client_channels(cl));

    /* One request to several targets (rl_rpc_unary_fan): a second server
    ** whose Echo never answers, and a port where nothing listens. */
    {
        rl_rpc_server_config c2 = cfg;
        char saddr[64], slow[64], dead[64];
        rl_rpc_server *s2;
        c2.addr = free_addr(saddr, sizeof(saddr));
        s2 = rl_rpc_server_new(&c2, err, sizeof(err));
        EXPECT(s2 != NULL, "second server: %s", err);
        if (s2 && rl_rpc_server_add(s2, "/t.S/Echo", sleep_cb, NULL) == 0 &&
            (port = rl_rpc_server_start(s2, err, sizeof(err))) > 0) {
            snprintf(slow, sizeof(slow), "127.0.0.1:%d", port);
            free_addr(dead, sizeof(dead));
            fan_checks(cl, target, slow, dead);
        } else {
            EXPECT(0, "second server did not start: %s", err);
        }
        rl_rpc_server_free(s2, 100);
    }

    /* Status with a message; unknown methods. */
    code = rl_rpc_unary(cl, target, "/t.S/Fail", "", 0, 5000, &r, err,
                        sizeof(err));
    EXPECT(code == RL_RPC_FAILED_PRECONDITION && strcmp(err, "nope 42") == 0,
           "handler status: %d %s", code, err);
    code = rl_rpc_unary(cl, target, "/t.S/Nope", "", 0, 5000, &r, err,
                        sizeof(err));
    EXPECT(code == RL_RPC_UNIMPLEMENTED && strstr(err, "unknown method"),
           "unknown method: %d %s", code, err);

    /* A status sent before the request is read reaches the client at
    ** once, unary and streaming (a 1.51 pitfall, see rpc.c). */
    for (i = 0; i < 100; i++) {
        rl_rpc_stream *st;
        int64_t t0 = rl_rpc_now_ms();
        code = rl_rpc_unary(cl, target, "/t.S/Fail", "abc", 3, 3000, &r, err,
                            sizeof(err));
        EXPECT(code == RL_RPC_FAILED_PRECONDITION, "unary early status %d: %d",
               i, code);
        st =
            rl_rpc_stream_open(cl, target, "/t.S/Fail", 3000, err, sizeof(err));
        if (st) {
            (void)rl_rpc_stream_send(st, "abc", 3);
            (void)rl_rpc_stream_close_send(st);
            while (rl_rpc_stream_recv(st, &r) == 1) {
                rl_rpc_buf_free(&r);
            }
            code = rl_rpc_stream_finish(st, err, sizeof(err));
        }
        EXPECT(st && code == RL_RPC_FAILED_PRECONDITION &&
                   rl_rpc_now_ms() - t0 < 2000,
               "stream early status %d: %d", i, code);
    }

    /* Over the server's 1 MiB limit in one message: refused. */
    {
        size_t n = 2 << 20;
        uint8_t *big = calloc(1, n);
        code = rl_rpc_unary(cl, target, "/t.S/Echo", big, n, 5000, &r, err,
                            sizeof(err));
        EXPECT(code == RL_RPC_RESOURCE_EXHAUSTED, "2 MiB message: %d %s", code,
               err);
        free(big);
    }

    /* Client streaming: 20 MiB in 512 KiB messages. */
    {
        size_t chunk = 512 << 10, n;
        uint8_t *buf = malloc(chunk);
        uint64_t sum = 0, out[2];
        rl_rpc_stream *st =
            rl_rpc_stream_open(cl, target, "/t.S/Sum", 30000, err, sizeof(err));
        EXPECT(st != NULL, "open: %s", err);
        for (n = 0; n < chunk; n++) {
            buf[n] = (uint8_t)(n * 7);
            sum += buf[n];
        }
        for (i = 0; i < 40; i++) {
            EXPECT(rl_rpc_stream_send(st, buf, chunk) == 0, "send %d", i);
        }
        EXPECT(rl_rpc_stream_close_send(st) == 0, "close_send");
        EXPECT(rl_rpc_stream_recv(st, &r) == 1 && r.len == sizeof(out),
               "sum reply");
        if (r.len == sizeof(out)) {
            memcpy(out, r.data, sizeof(out));
            EXPECT(out[0] == 40 * chunk && out[1] == 40 * sum,
                   "20 MiB arrived whole: %llu bytes",
                   (unsigned long long)out[0]);
        }
        rl_rpc_buf_free(&r);
        code = rl_rpc_stream_finish(st, err, sizeof(err));
        EXPECT(code == RL_RPC_OK, "finish: %d %s", code, err);
        free(buf);
    }

    /* Server streaming: 3000 messages. */
    {
        uint32_t n = 3000, got = 0;
        int k;
        rl_rpc_stream *st = rl_rpc_stream_open(cl, target, "/t.S/Count", 30000,
                                               err, sizeof(err));
        EXPECT(st && rl_rpc_stream_send(st, &n, 4) == 0 &&
                   rl_rpc_stream_close_send(st) == 0,
               "count request");
        while ((k = rl_rpc_stream_recv(st, &r)) == 1) {
            EXPECT(r.len == 1024 && r.data[0] == (got & 0xff), "message %u",
                   got);
            got++;
            rl_rpc_buf_free(&r);
        }
        EXPECT(k == 0 && got == n, "3000 messages: %u (end %d)", got, k);
        code = rl_rpc_stream_finish(st, err, sizeof(err));
        EXPECT(code == RL_RPC_OK, "finish: %d %s", code, err);
    }

    /* Deadline: the client gets DEADLINE_EXCEEDED, the handler stops. */
    {
        slow_arg a = {cl, target, 300, -1, 0};
        slow_thread(&a);
        EXPECT(a.code == RL_RPC_DEADLINE_EXCEEDED && a.secs < 2.0,
               "deadline: code %d after %.2fs", a.code, a.secs);
        for (i = 0; i < 100 && !sleep_saw_deadline; i++) {
            usleep(10000);
        }
        EXPECT(sleep_saw_deadline, "the handler saw its deadline pass");
    }

    /* Concurrency: 6 slow calls (1 s deadline) do not hold up an echo. */
    {
        pthread_t th[6];
        slow_arg a[6];
        double t0;
        for (i = 0; i < 6; i++) {
            a[i] = (slow_arg){cl, target, 1000, -1, 0};
            pthread_create(&th[i], NULL, slow_thread, &a[i]);
        }
        usleep(200000);
        t0 = now_s();
        code = rl_rpc_unary(cl, target, "/t.S/Echo", "q", 1, 5000, &r, err,
                            sizeof(err));
        EXPECT(code == RL_RPC_OK && now_s() - t0 < 0.5,
               "echo beside 6 blocked calls: %d in %.2fs", code, now_s() - t0);
        rl_rpc_buf_free(&r);
        for (i = 0; i < 6; i++) {
            pthread_join(th[i], NULL);
            EXPECT(a[i].code == RL_RPC_DEADLINE_EXCEEDED, "slow %d: %d", i,
                   a[i].code);
        }
    }

    /* Shutdown: a call with no deadline is cancelled after the grace. */
    {
        pthread_t th;
        slow_arg a = {cl, target, 0, -1, 0};
        double t0;
        pthread_create(&th, NULL, slow_thread, &a);
        usleep(300000);
        t0 = now_s();
        rl_rpc_server_free(srv, 200);
        EXPECT(now_s() - t0 < 5.0, "shutdown took %.2fs", now_s() - t0);
        pthread_join(th, NULL);
        EXPECT(a.code != RL_RPC_OK, "the endless call ended with %d", a.code);
        code = rl_rpc_unary(cl, target, "/t.S/Echo", "x", 1, 1000, &r, err,
                            sizeof(err));
        EXPECT(code == RL_RPC_UNAVAILABLE || code == RL_RPC_DEADLINE_EXCEEDED,
               "after shutdown: %d %s", code, err);
    }
    rl_rpc_client_free(cl);

    /* Bad TLS settings are refused with a reason. */
    {
        rl_rpc_tls t = {"/nonexistent/cert.pem", "/nonexistent/key.pem", NULL,
                        0};
        rl_rpc_client *bad = rl_rpc_client_new(&t, 0, err, sizeof(err));
        EXPECT(!bad && strstr(err, "cannot open TLS"), "bad client TLS: %s",
               err);
        cfg.tls = &t;
        srv = rl_rpc_server_new(&cfg, err, sizeof(err));
        EXPECT(!srv && strstr(err, "cannot open TLS"), "bad server TLS: %s",
               err);
        rl_rpc_server_free(srv, 0);
    }
    /* A server that never started frees cleanly; a bad address fails. */
    cfg.tls = NULL;
    srv = rl_rpc_server_new(&cfg, err, sizeof(err));
    EXPECT(srv != NULL, "unstarted: %s", err);
    rl_rpc_server_free(srv, 0);
    cfg.addr = "999.1.1.1:1";
    srv = rl_rpc_server_new(&cfg, err, sizeof(err));
    EXPECT(!srv && strstr(err, "cannot listen"), "bad address: %s", err);

    if (have_certs) {
        tls_checks(certdir);
    }
    {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", certdir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", certdir);
        }
    }
    if (rl_failures) {
        fprintf(stderr, "%d rl_failures\n", rl_failures);
        return 1;
    }
    printf("rpc ok\n");
    return 0;
}
