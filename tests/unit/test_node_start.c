/*
** tests/unit/test_node_start.c -- the Raft node (raftd/node/) alone: a
** solo node restarted after snapshots with the trailing budget squeezed to
** the minimum (its database loses what no snapshot made durable and the
** log replays it with the same verdicts), stop from an atexit handler
** with the applier stuck on a client's lock, and start failures that say
** why. Scratch dir, ports and fake databases: tests/unit/lib/node_cluster.h.
*/
#include "node.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/check.h"
#include "lib/node_cluster.h"

/* A single node's config: raft id 1 bootstrapping alone at
** 127.0.0.1:port, with data in rl_tc_dir/name. c points into the struct:
** it must stay where it was initialized. */
struct solo {
    char dir[300], addr[64];
    struct rl_node_config c;
};

static void solo_init(struct solo *s, const char *name, int port,
                      struct rl_applier applier)
{
    snprintf(s->dir, sizeof s->dir, "%s/%s", rl_tc_dir, name);
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", port);
    s->c = (struct rl_node_config){.dir = s->dir,
                                   .raft_id = 1,
                                   .raft_addr = s->addr,
                                   .node_id = name,
                                   .bootstrap = 1,
                                   .election_timeout_ms = 600,
                                   .heartbeat_timeout_ms = 60,
                                   .applier = applier};
}

/* ---- restart after snapshots with trailing entries squeezed to the minimum:
** raft 0.15 mis-indexes its reloaded log when trailing is 0 ---- */

static void test_solo_restart(void)
{
    printf("one node: snapshots with a 1-byte trailing budget, crash of the "
           "database's non-durable part, restart, replay\n");
    struct rl_fake *f = &rl_tc_fakes[0];
    char err[512];
    struct solo so;
    solo_init(&so, "solo", rl_tc_ports[4], rl_fake_applier(f));
    struct rl_node_config c = so.c;
    c.snapshot_threshold = 8;
    c.snapshot_trailing = 2;
    c.snapshot_trailing_bytes = 1;
    c.segment_size = 1 << 20;
    c.log = rl_tc_log;
    struct rl_node *n;
    for (int round = 0; round < 2; round++) {
        if (rl_node_start(&c, &n, err, sizeof err) != RL_NODE_OK)
            rl_tc_die("solo start: %s", err);
        CHECK(rl_node_wait_leader(n, 10000) == RL_NODE_OK);
        struct rl_node_status st;
        rl_node_status(n, &st);
        uint64_t L = st.L, last = 0;
        for (int i = 0; i < 60; i++) {
            char p[32];
            int len = snprintf(p, sizeof p, "solo %d.%d", round, i);
            struct rl_proposal pr = {
                .kind = RL_ENTRY_TXN, .base = L, .payload = p, .len = len};
            struct rl_result res;
            int rc = rl_node_propose(n, &pr, 10000, &res);
            if (rc != RL_NODE_OK || !res.effective)
                rl_tc_die("solo propose: %s %s", rl_node_strerror(rc), res.msg);
            L = last = res.index;
        }
        CHECK(rl_node_wait_applied(n, last, 10000) == RL_NODE_OK);
        rl_node_stop(n);
        /* Crash: the database keeps only what snapshots made durable. */
        pthread_mutex_lock(&f->mu);
        size_t before = f->n;
        struct rl_fake_rec *saved = malloc(before * sizeof *saved);
        CHECK(saved);
        memcpy(saved, f->recs, before * sizeof *saved);
        while (f->n > 0 && f->recs[f->n - 1].index > f->durable)
            f->n--;
        f->applied = f->durable;
        printf("  round %d: %zu records, %zu durable (up to %llu)\n", round,
               before, f->n, (unsigned long long)f->durable);
        pthread_mutex_unlock(&f->mu);
        if (rl_node_start(&c, &n, err, sizeof err) != RL_NODE_OK)
            rl_tc_die("solo restart: %s", err);
        CHECK(rl_node_wait_leader(n, 10000) == RL_NODE_OK);
        CHECK(rl_node_wait_applied(n, last, 10000) == RL_NODE_OK);
        rl_node_stop(n);
        /* The replay must give back exactly what was applied before. */
        pthread_mutex_lock(&f->mu);
        int same = f->n == before;
        for (size_t i = 0; same && i < before; i++)
            same = f->recs[i].index == saved[i].index &&
                   f->recs[i].effective == saved[i].effective &&
                   f->recs[i].sum == saved[i].sum;
        pthread_mutex_unlock(&f->mu);
        free(saved);
        if (!same)
            rl_tc_die(
                "replay after restart differs from the first application");
    }
}

/* ---- stop from atexit while the applier is stuck on a client's lock ---- */

static pthread_mutex_t client_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rl_node *ax_node;
static char ax_marker[400];

static void ax_apply(void *ctx, const struct rl_applied *e)
{
    (void)ctx;
    if (e->kind == RL_ENTRY_TXN) { /* blocks like a database write would */
        pthread_mutex_lock(&client_lock);
        pthread_mutex_unlock(&client_lock);
    }
}
static uint64_t ax_applied(void *ctx)
{
    (void)ctx;
    return 0;
}
static int ax_snapshot_ready(void *ctx, uint64_t A, unsigned t, uint64_t *sz)
{
    (void)ctx, (void)A, (void)t, (void)sz;
    return 1;
}
static int ax_restore(void *ctx, const struct rl_manifest *m)
{
    (void)ctx, (void)m;
    return 1;
}
static int ax_need_image(void *ctx, const struct rl_manifest *m)
{
    (void)ctx, (void)m;
    return 1;
}

/* The applier of the atexit child and of the failed starts. */
static struct rl_applier ax_applier(void)
{
    return (struct rl_applier){.apply = ax_apply,
                               .applied_index = ax_applied,
                               .snapshot_ready = ax_snapshot_ready,
                               .restore = ax_restore,
                               .need_image = ax_need_image};
}

static void *ax_waiter(void *arg)
{
    (void)arg;
    /* Blocked in the node when exit() runs: must not crash or hang it. */
    rl_node_wait_applied(ax_node, (uint64_t)1 << 40, 60000);
    return NULL;
}

static void ax_atexit(void)
{
    double t = rl_tc_now();
    rl_node_stop(ax_node);
    FILE *f = fopen(ax_marker, "w");
    if (f) {
        fprintf(f, "stopped in %.2f s\n", rl_tc_now() - t);
        fclose(f);
    }
}

/* Child process: a node whose applier is stuck on a lock the exiting
** thread holds (like .exit inside an open transaction), a thread blocked
** in the node, then exit(0) with rl_node_stop in an atexit handler. */
static void atexit_child(void)
{
    char err[512];
    struct solo so;
    solo_init(&so, "ax", rl_tc_ports[1], ax_applier());
    struct rl_node_config c = so.c;
    c.stop_wait_ms = 500;
    if (rl_node_start(&c, &ax_node, err, sizeof err) != RL_NODE_OK) {
        fprintf(stderr, "atexit child: %s\n", err);
        _exit(2);
    }
    if (rl_node_wait_leader(ax_node, 10000) != RL_NODE_OK)
        _exit(3);
    pthread_mutex_lock(&client_lock);
    struct rl_proposal pr = {.kind = RL_ENTRY_TXN, .payload = "t", .len = 1};
    struct rl_result res;
    if (rl_node_propose(ax_node, &pr, 10000, &res) != RL_NODE_OK)
        _exit(4);
    /* The FSM applied it; the applier is now stuck on client_lock. */
    pthread_t t;
    pthread_create(&t, NULL, ax_waiter, NULL);
    usleep(100000);
    atexit(ax_atexit);
    exit(0);
}

/* ---- start failures say why ---- */

static void test_bad_start(void)
{
    printf("start on a busy port or an impossible dir fails with a message\n");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)rl_tc_ports[4])};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(s, 1) == 0);
    char err[512] = "";
    struct solo so;
    solo_init(&so, "busy", rl_tc_ports[4], ax_applier());
    struct rl_node_config c = so.c;
    c.election_timeout_ms = c.heartbeat_timeout_ms = 0; /* defaults */
    struct rl_node *n = NULL;
    int rc = rl_node_start(&c, &n, err, sizeof err);
    printf("  busy port: %s: %s\n", rl_node_strerror(rc), err);
    CHECK(rc != RL_NODE_OK && n == NULL && strstr(err, so.addr) != NULL);
    close(s);
    snprintf(so.dir, sizeof so.dir, "/proc/raftlite-cannot-exist/x");
    rc = rl_node_start(&c, &n, err, sizeof err);
    printf("  bad dir: %s: %s\n", rl_node_strerror(rc), err);
    CHECK(rc != RL_NODE_OK && n == NULL && strstr(err, "data dir") != NULL);
    c.dir = rl_tc_dir;
    c.raft_id = 0;
    rc = rl_node_start(&c, &n, err, sizeof err);
    CHECK(rc == RL_NODE_INVALID && n == NULL);
}

static void test_atexit(void)
{
    printf("stop from an atexit handler with the applier stuck\n");
    snprintf(ax_marker, sizeof ax_marker, "%s/ax-stopped", rl_tc_dir);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        atexit_child();
    double end = rl_tc_now() + 30;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (rl_tc_now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            rl_tc_die("process with a node did not exit within 30 s");
        }
        usleep(20000);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rl_tc_die("atexit child ended with status 0x%x", status);
    FILE *f = fopen(ax_marker, "r");
    char line[100] = "";
    CHECK(f != NULL);
    CHECK(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    printf("  %s", line);
}

int main(void)
{
    rl_tc_init(&rl_check_cleanup);
    double t0 = rl_tc_now();
    test_atexit(); /* forks: before this process starts any thread */
    test_solo_restart();
    test_bad_start();
    rl_tc_close();
    printf("test_node_start: all passed in %.1f s\n", rl_tc_now() - t0);
    return 0;
}
