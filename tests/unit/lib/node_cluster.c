/*
** tests/unit/lib/node_cluster.c -- a cluster of real Raft nodes in one
** process (see node_cluster.h). Test code only; it judges nothing but what
** its helpers wait for, and dies with a message when a limit passes.
*/
#include "node_cluster.h"

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "ports.h"

char rl_tc_dir[256];
int rl_tc_ports[RL_TC_N];
struct rl_fake rl_tc_fakes[RL_TC_N];
struct rl_node *rl_tc_nodes[RL_TC_N];
int rl_tc_grpc_base = 7000;
uint64_t rl_tc_L;
uint64_t rl_tc_txn_seq;

static double t_start; /* of the run, for the log's times */
static int verbose;    /* RL_NODE_VERBOSE: every node log line */

void rl_tc_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%.3f] FAIL: ", rl_tc_now() - t_start);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    rl_tc_cleanup();
    _exit(1);
}

int rl_tc_slow(void)
{
    const char *v = getenv("RL_SAN");
    return v && strcmp(v, "1") == 0;
}

double rl_tc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fake_failed(const char *msg)
{
    rl_tc_die("%s", msg);
}

/* Both fakes hold identical records up to the lower applied index. */
void rl_tc_compare(int a, int b)
{
    struct rl_fake *x = &rl_tc_fakes[a], *y = &rl_tc_fakes[b];
    pthread_mutex_lock(&x->mu);
    pthread_mutex_lock(&y->mu);
    uint64_t lim = x->applied < y->applied ? x->applied : y->applied;
    size_t i = 0, j = 0;
    while (i < x->n && j < y->n && x->recs[i].index <= lim &&
           y->recs[j].index <= lim) {
        struct rl_fake_rec *p = &x->recs[i], *q = &y->recs[j];
        if (p->index != q->index || p->kind != q->kind ||
            p->effective != q->effective || p->sum != q->sum ||
            p->len != q->len)
            rl_tc_die(
                "node %d and %d differ at record %zu/%zu: index %llu/%llu "
                "kind %d/%d effective %d/%d",
                a, b, i, j, (unsigned long long)p->index,
                (unsigned long long)q->index, p->kind, q->kind, p->effective,
                q->effective);
        i++;
        j++;
    }
    int x_more = i < x->n && x->recs[i].index <= lim;
    int y_more = j < y->n && y->recs[j].index <= lim;
    pthread_mutex_unlock(&y->mu);
    pthread_mutex_unlock(&x->mu);
    if (x_more || y_more)
        rl_tc_die("node %d and %d hold different entry sets below %llu", a, b,
                  (unsigned long long)lim);
    printf("  nodes %d and %d agree on %zu records up to index %llu\n", a, b, i,
           (unsigned long long)lim);
}

struct rl_fake_rec rl_tc_find_rec(int id, uint64_t index)
{
    struct rl_fake *f = &rl_tc_fakes[id];
    struct rl_fake_rec r = {0};
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n; i++)
        if (f->recs[i].index == index)
            r = f->recs[i];
    pthread_mutex_unlock(&f->mu);
    return r;
}

/* First committer wins: in a node's records every effective TXN's base is
** the index of the previous effective TXN or GENESIS, and every
** not-effective TXN's base is not. */
void rl_tc_check_chain(int id)
{
    struct rl_fake *f = &rl_tc_fakes[id];
    pthread_mutex_lock(&f->mu);
    uint64_t L = 0;
    int started = 0;
    for (size_t i = 0; i < f->n; i++) {
        struct rl_fake_rec *r = &f->recs[i];
        if (r->kind == RL_ENTRY_GENESIS) {
            L = r->index;
            started = 1;
        } else if (r->kind == RL_ENTRY_TXN && started) {
            if (r->effective != (r->base == L))
                rl_tc_die(
                    "node %d: TXN %llu base %llu effective %d but L was %llu",
                    id, (unsigned long long)r->index,
                    (unsigned long long)r->base, r->effective,
                    (unsigned long long)L);
            if (r->effective)
                L = r->index;
        }
    }
    pthread_mutex_unlock(&f->mu);
}

static void pick_ports(void)
{
    srand((unsigned)(getpid() ^ time(NULL)));
    if (rl_test_pick_ports(rl_tc_ports + 1, RL_TC_N - 1, 0) != 0)
        rl_tc_die("no free port below 32768");
}

void rl_tc_log(void *ctx, int level, const char *msg)
{
    if (level <= 1 || verbose)
        fprintf(stderr, "[%.3f node %d] %s\n", rl_tc_now() - t_start,
                (int)(intptr_t)ctx, msg);
}

void rl_tc_board_path(char *out, size_t n, int id)
{
    snprintf(out, n, "%s/board%d", rl_tc_dir, id);
}

void rl_tc_start(int id, int bootstrap)
{
    char dir[300], addr[64], nid[16], grpc[64], board[300];
    snprintf(dir, sizeof dir, "%s/n%d", rl_tc_dir, id);
    rl_tc_board_path(board, sizeof board, id);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", rl_tc_ports[id]);
    snprintf(nid, sizeof nid, "node-%d", id);
    snprintf(grpc, sizeof grpc, "127.0.0.1:%d", rl_tc_grpc_base + id);
    rl_tc_fakes[id].raft_id = (uint64_t)id;
    struct rl_node_config c = {
        .dir = dir,
        .raft_id = (uint64_t)id,
        .raft_addr = addr,
        .node_id = nid,
        .grpc_addr = grpc,
        .bootstrap = bootstrap,
        /* Under ASan a 50 MB proposal stalls the loop thread for
        ** seconds (copies, checksums): elections would then keep the
        ** cluster leaderless while the test waits, so they wait longer. */
        .election_timeout_ms = rl_tc_slow() ? 2000 : 600,
        .heartbeat_timeout_ms = rl_tc_slow() ? 200 : 60,
        .snapshot_threshold = 16,
        .snapshot_trailing = 4,
        .snapshot_threshold_bytes = 8 << 20,
        .snapshot_trailing_bytes = 1 << 20,
        .snapshot_timeout_ms = 5000,
        .segment_size =
            getenv("RL_SEG") ? (size_t)atol(getenv("RL_SEG")) : 1 << 20,
        .applier = rl_fake_applier(&rl_tc_fakes[id]),
        .log = rl_tc_log,
        .log_ctx = (void *)(intptr_t)id,
        .board_path = board,
    };
    char err[512];
    int rc = rl_node_start(&c, &rl_tc_nodes[id], err, sizeof err);
    if (rc != RL_NODE_OK)
        rl_tc_die("start node %d: %s", id, err);
}

void rl_tc_stop(int id)
{
    rl_node_stop(rl_tc_nodes[id]);
    rl_tc_nodes[id] = NULL;
}

/* Wait until node id is the ready leader of the highest term. */
void rl_tc_wait_leader_is(int id, double limit_s)
{
    double end = rl_tc_now() + limit_s;
    for (;;) {
        int ok = 1;
        struct rl_node_status me;
        rl_node_status(rl_tc_nodes[id], &me);
        ok = me.state == RL_STATE_LEADER && me.ready;
        for (int i = 1; ok && i < RL_TC_N; i++) {
            if (!rl_tc_nodes[i] || i == id)
                continue;
            struct rl_node_status st;
            rl_node_status(rl_tc_nodes[i], &st);
            ok = st.term <= me.term && st.state != RL_STATE_LEADER;
        }
        if (ok)
            return;
        if (rl_tc_now() > end)
            rl_tc_die("node %d is not the only ready leader after %.1f s", id,
                      limit_s);
        usleep(10000);
    }
}

/* The leader among running nodes, once it is ready; dies after limit. */
int rl_tc_wait_leader(double limit_s)
{
    double end = rl_tc_now() + limit_s;
    while (rl_tc_now() < end) {
        /* A deposed leader may still publish "leader" for a tick: the
        ** ready leader of the highest term among the nodes is the one. */
        int best = 0;
        uint64_t best_term = 0, max_term = 0;
        for (int i = 1; i < RL_TC_N; i++) {
            if (!rl_tc_nodes[i])
                continue;
            struct rl_node_status st;
            rl_node_status(rl_tc_nodes[i], &st);
            if (st.term > max_term)
                max_term = st.term;
            if (st.state == RL_STATE_LEADER && st.ready &&
                st.term > best_term) {
                best = i;
                best_term = st.term;
            }
        }
        if (best && best_term == max_term)
            return best;
        usleep(10000);
    }
    rl_tc_die("no ready leader within %.1f s", limit_s);
    return 0;
}

uint64_t rl_tc_propose(int id, uint8_t kind, uint64_t base, const void *p,
                       size_t len, int want_effective)
{
    struct rl_proposal pr = {.kind = kind,
                             .base = base,
                             .origin_txn = ++rl_tc_txn_seq,
                             .origin_pid = (uint32_t)getpid(),
                             .payload = p,
                             .len = len};
    struct rl_result res;
    int rc;
    if (rl_tc_txn_seq % 2) {
        /* Half the proposals write their payload in place, as the host's
        ** replicator does: no copy in the node. */
        void *entry = rl_node_entry_alloc(len);
        CHECK(entry != NULL);
        if (len)
            memcpy(rl_node_entry_payload(entry), p, len);
        pr.payload = NULL;
        rc = rl_node_propose_entry(rl_tc_nodes[id], &pr, entry, 20000, &res);
    } else {
        rc = rl_node_propose(rl_tc_nodes[id], &pr, 20000, &res);
    }
    if (rc != RL_NODE_OK)
        rl_tc_die("propose %s on node %d: %s: %s", rl_entry_kind_name(kind), id,
                  rl_node_strerror(rc), res.msg);
    if (res.effective != want_effective)
        rl_tc_die("entry %llu (%s, base %llu): effective %d, expected %d",
                  (unsigned long long)res.index, rl_entry_kind_name(kind),
                  (unsigned long long)base, res.effective, want_effective);
    if (want_effective && (kind == RL_ENTRY_TXN || kind == RL_ENTRY_GENESIS))
        rl_tc_L = res.index;
    return res.index;
}

uint64_t rl_tc_txn(int id, int i)
{
    char payload[64];
    int n = snprintf(payload, sizeof payload, "txn %d on %d", i, id);
    return rl_tc_propose(id, RL_ENTRY_TXN, rl_tc_L, payload, (size_t)n, 1);
}

void rl_tc_wait_applied(int id, uint64_t index)
{
    int rc = rl_node_wait_applied(rl_tc_nodes[id], index, 20000);
    if (rc != RL_NODE_OK) {
        struct rl_node_status st;
        rl_node_status(rl_tc_nodes[id], &st);
        rl_tc_die("node %d did not apply %llu: %s (applier at %llu, fsm %llu, "
                  "commit %llu, need_image %d)",
                  id, (unsigned long long)index, rl_node_strerror(rc),
                  (unsigned long long)st.applier_index,
                  (unsigned long long)st.fsm_applied,
                  (unsigned long long)st.commit_index, st.need_image);
    }
}

void rl_tc_add(int leader, int id)
{
    char addr[64], nid[16], grpc[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", rl_tc_ports[id]);
    snprintf(nid, sizeof nid, "node-%d", id);
    snprintf(grpc, sizeof grpc, "127.0.0.1:%d", 7000 + id);
    struct rl_meta m;
    CHECK(rl_meta_set(&m, (uint64_t)id, nid, addr, grpc) == 0);
    struct rl_result res;
    int rc = rl_node_add(rl_tc_nodes[leader], (uint64_t)id, addr, RL_ROLE_VOTER,
                         &m, 20000, &res);
    if (rc != RL_NODE_OK)
        rl_tc_die("add node %d: %s: %s", id, rl_node_strerror(rc), res.msg);
}

static int nftw_rm(const char *p, const struct stat *sb, int flag,
                   struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

void rl_tc_cleanup(void)
{
    if (getenv("RL_KEEP")) {
        fprintf(stderr, "kept %s\n", rl_tc_dir);
        return;
    }
    if (rl_tc_dir[0])
        nftw(rl_tc_dir, nftw_rm, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t rl_tc_dir_bytes(int id)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/n%d", rl_tc_dir, id);
    DIR *d = opendir(dir);
    CHECK(d);
    uint64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char p[600];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
            total += (uint64_t)sb.st_blocks * 512;
    }
    closedir(d);
    return total;
}

static void check_members(int id, int expect_n, const int *ids)
{
    struct rl_member *m;
    unsigned n;
    CHECK(rl_node_members(rl_tc_nodes[id], &m, &n) == RL_NODE_OK);
    int ok = (int)n == expect_n;
    for (int k = 0; ok && k < expect_n; k++) {
        int found = 0;
        for (unsigned i = 0; i < n; i++) {
            char nid[16];
            snprintf(nid, sizeof nid, "node-%d", ids[k]);
            if (m[i].raft_id == (uint64_t)ids[k] && m[i].has_meta &&
                m[i].role == RL_ROLE_VOTER &&
                strcmp(m[i].meta.node_id, nid) == 0 &&
                m[i].meta.grpc_addr[0] != 0)
                found = 1;
        }
        ok = found;
    }
    free(m);
    if (!ok)
        rl_tc_die("node %d does not list the expected %d voters with metadata",
                  id, expect_n);
}

/* Members with metadata appear once their META entries are applied. */
void rl_tc_wait_members(int id, int expect_n, const int *ids)
{
    double end = rl_tc_now() + 10;
    for (;;) {
        struct rl_member *m;
        unsigned n;
        CHECK(rl_node_members(rl_tc_nodes[id], &m, &n) == RL_NODE_OK);
        int with_meta = 0;
        for (unsigned i = 0; i < n; i++)
            with_meta += m[i].has_meta && m[i].role == RL_ROLE_VOTER;
        free(m);
        if ((int)n == expect_n && with_meta == expect_n)
            break;
        if (rl_tc_now() > end)
            break;
        usleep(20000);
    }
    check_members(id, expect_n, ids);
}

void rl_tc_init(void (**check_cleanup)(void))
{
    verbose = getenv("RL_NODE_VERBOSE") != NULL;
    setvbuf(stdout, NULL, _IONBF, 0);
    /* A failed CHECK, here or in the test, removes the scratch dir. */
    rl_check_cleanup = rl_tc_cleanup;
    *check_cleanup = rl_tc_cleanup;
    for (int i = 0; i < RL_TC_N; i++) {
        rl_fake_init(&rl_tc_fakes[i], (uint64_t)i, 1, rl_tc_fakes, RL_TC_N);
        rl_tc_fakes[i].fail = fake_failed;
    }
    snprintf(rl_tc_dir, sizeof rl_tc_dir, "/tmp/rl-test-node-XXXXXX");
    CHECK(mkdtemp(rl_tc_dir) != NULL);
    pick_ports();
    t_start = rl_tc_now();
}

void rl_tc_close(void)
{
    for (int id = 1; id < RL_TC_N; id++)
        if (rl_tc_nodes[id])
            rl_tc_stop(id);
    for (int i = 0; i < RL_TC_N; i++)
        rl_fake_clear(&rl_tc_fakes[i]);
    rl_tc_cleanup();
}

uint64_t rl_tc_form(void)
{
    printf("bootstrap node 1, add nodes 2 and 3\n");
    rl_tc_start(1, 1);
    CHECK(rl_tc_wait_leader(10) == 1);
    uint64_t gi = rl_tc_propose(1, RL_ENTRY_GENESIS, 0, "image-meta", 10, 1);
    CHECK(rl_tc_L == gi);
    rl_tc_start(2, 0);
    rl_tc_start(3, 0);
    rl_tc_add(1, 2);
    rl_tc_add(1, 3);
    return gi;
}
