/*
** bench/bench_node.c -- benchmark of the in-process Raft node
*(raftd/node/node.h):
** three nodes in this process on 127.0.0.1 ports below 32768, one thread
** proposing 4 KiB TXN entries to the leader and waiting for each to be
** applied by the leader's FSM, against a baseline measured in the same run
** and the same directory: the latency of a 4 KiB O_DSYNC write, since
** raft's log is flushed before an entry counts towards the quorum.
**
** Rounds interleave the two measurements (fsync batch, proposal batch, ...)
** so that a slow moment of the shared disk falls on both. It prints a
** table and, with --json FILE, writes the numbers for bench/run.py.
**
** It must never judge the numbers (a benchmark is not a test): it exits 0
** when every measurement ran, nonzero only when it could not measure
** (setup failed, a proposal failed for good). It removes its data
** directory on every path it controls.
*/
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "node.h"
#include "transport.h"

#include "../tests/unit/lib/fake_applier.h"
#include "../tests/unit/lib/ports.h"

#define NNODES     3
#define FSYNC_RING 256 /* 4 KiB slots rewritten in a 1 MiB file */

/* The database side of a node (tests/unit/lib/fake_applier.h): keeps
** only the applied index. */
static struct rl_fake fakes[NNODES + 1];
static struct rl_node *nodes[NNODES + 1];
static int ports[NNODES + 1];
static char data_dir[4096];
static int data_dir_made;
static long segment_size = 1 << 20; /* --segment */
static int no_nodelay;              /* --no-nodelay: Raft without it */
static const char *tls_dir; /* --tls DIR: Raft in mutual TLS (transport.h) */
static char tls_files[NNODES + 1][3][4200];
static struct rl_transport_tls tls_cfg[NNODES + 1];

/* Node "bench-N" is raft id N (the TLS transport checks certificates). */
static uint64_t bench_raft_id(const char *node_id)
{
    int n = 0;
    return sscanf(node_id, "bench-%d", &n) == 1 && n > 0 ? (uint64_t)n : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(p) != 0)
        fprintf(stderr, "bench_node: cannot remove %s: %s\n", p,
                strerror(errno));
    return 0;
}

/* Stops every running node, then removes the data directory. */
static void cleanup(void)
{
    for (int i = 1; i <= NNODES; i++) {
        if (nodes[i]) {
            rl_node_stop(nodes[i]);
            nodes[i] = NULL;
        }
    }
    if (data_dir_made && !getenv("RL_KEEP")) {
        nftw(data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        data_dir_made = 0;
    }
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_node: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    cleanup();
    exit(1);
}

static void node_log(void *ctx, int level, const char *msg)
{
    if (level <= 0)
        fprintf(stderr, "[node %d] %s\n", (int)(intptr_t)ctx, msg);
}

/* Free ports below Linux's ephemeral range (tests/unit/lib/ports.h). */
static void pick_ports(void)
{
    srand((unsigned)(getpid() ^ time(NULL)));
    if (rl_test_pick_ports(ports + 1, NNODES, 0) != 0)
        die("no free port below 32768");
}

static void start_node(int id)
{
    char dir[4200], addr[64], nid[32];
    snprintf(dir, sizeof dir, "%s/n%d", data_dir, id);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ports[id]);
    snprintf(nid, sizeof nid, "bench-%d", id);
    rl_fake_init(&fakes[id], (uint64_t)id, 0, fakes, NNODES + 1);
    struct rl_node_config c = {
        .dir = dir,
        .raft_id = (uint64_t)id,
        .raft_addr = addr,
        .node_id = nid,
        .bootstrap = id == 1,
        .segment_size = (size_t)segment_size, /* 1 MiB: a few MB a node */
        .no_nodelay = no_nodelay,
        .applier = rl_fake_applier(&fakes[id]),
        .log = node_log,
        .log_ctx = (void *)(intptr_t)id,
    };
    if (tls_dir) { /* DIR/ca.pem, DIR/bench-N.pem and .key */
        snprintf(tls_files[id][0], sizeof tls_files[id][0], "%s/%s.pem",
                 tls_dir, nid);
        snprintf(tls_files[id][1], sizeof tls_files[id][1], "%s/%s.key",
                 tls_dir, nid);
        snprintf(tls_files[id][2], sizeof tls_files[id][2], "%s/ca.pem",
                 tls_dir);
        tls_cfg[id] = (struct rl_transport_tls){.cert_file = tls_files[id][0],
                                                .key_file = tls_files[id][1],
                                                .ca_file = tls_files[id][2],
                                                .raft_id_of = bench_raft_id};
        c.raft_tls = &tls_cfg[id];
    }
    char err[512];
    int rc = rl_node_start(&c, &nodes[id], err, sizeof err);
    if (rc != RL_NODE_OK)
        die("start node %d on %s: %s", id, addr, err);
}

/* The ready leader of the highest term, or 0 after limit_s. */
static int find_leader(double limit_s)
{
    double end = now_s() + limit_s;
    while (now_s() < end) {
        int best = 0;
        uint64_t best_term = 0;
        for (int i = 1; i <= NNODES; i++) {
            if (!nodes[i])
                continue;
            struct rl_node_status st;
            rl_node_status(nodes[i], &st);
            if (st.state == RL_STATE_LEADER && st.ready &&
                st.term >= best_term) {
                best = i;
                best_term = st.term;
            }
        }
        if (best)
            return best;
        usleep(10000);
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

struct stats {
    double median, p90, p99, mean, max;
};

static struct stats summarize(double *v, size_t n)
{
    struct stats s = {0};
    double sum = 0;
    qsort(v, n, sizeof *v, cmp_double);
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    s.median = pct(v, n, 50);
    s.p90 = pct(v, n, 90);
    s.p99 = pct(v, n, 99);
    s.mean = n ? sum / (double)n : 0;
    s.max = n ? v[n - 1] : 0;
    return s;
}

/* count O_DSYNC 4 KiB writes over a preallocated 1 MiB ring (as raft
** writes into preallocated segments); latencies in ms appended to out. */
static void fsync_batch(int fd, const char *buf, size_t count, double *out)
{
    for (size_t i = 0; i < count; i++) {
        off_t off = (off_t)(i % FSYNC_RING) * 4096;
        double t0 = now_s();
        ssize_t w = pwrite(fd, buf, 4096, off);
        double t1 = now_s();
        if (w != 4096)
            die("O_DSYNC write: %s", w < 0 ? strerror(errno) : "short write");
        out[i] = (t1 - t0) * 1e3;
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_node --dir DIR [--json FILE] [--count N] "
            "[--rounds R] [--size BYTES]\n"
            "       [--segment BYTES (raft open segment size, 1 MiB)]\n"
            "       [--no-nodelay (Raft connections without TCP_NODELAY)]\n"
            "       [--tls DIR (Raft in mutual TLS: DIR/ca.pem, "
            "DIR/bench-N.pem and .key)]\n"
            "  DIR must not exist; it is created and removed at the end.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *json = NULL, *dir = NULL;
    long count = 1000, rounds = 3, size = 4096;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-nodelay")) {
            no_nodelay = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--dir"))
            dir = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            json = argv[++i];
        else if (!strcmp(argv[i], "--count"))
            count = atol(argv[++i]);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atol(argv[++i]);
        else if (!strcmp(argv[i], "--size"))
            size = atol(argv[++i]);
        else if (!strcmp(argv[i], "--segment"))
            segment_size = atol(argv[++i]);
        else if (!strcmp(argv[i], "--tls"))
            tls_dir = argv[++i];
        else
            usage();
    }
    if (!dir || count < 1 || rounds < 1 || size < 1 || size > (64 << 20) ||
        segment_size < 4096 || segment_size % 4096)
        usage();
    if (snprintf(data_dir, sizeof data_dir, "%s", dir) >= (int)sizeof data_dir)
        die("--dir is too long");
    if (mkdir(data_dir, 0755) != 0)
        die("mkdir %s: %s (it must not exist)", data_dir, strerror(errno));
    data_dir_made = 1;

    size_t total = (size_t)count * (size_t)rounds;
    double *flat = calloc(total, sizeof *flat);
    double *plat = calloc(total, sizeof *plat);
    double *rate = calloc((size_t)rounds, sizeof *rate);
    char *payload = malloc((size_t)size);
    char *fbuf = NULL;
    if (!flat || !plat || !rate || !payload ||
        posix_memalign((void **)&fbuf, 4096, 4096) != 0)
        die("out of memory");
    for (long i = 0; i < size; i++)
        payload[i] = (char)(i * 131 + 7);
    memset(fbuf, 0x5a, 4096);

    /* Baseline file: written in full and flushed once, so the timed
    ** writes overwrite allocated blocks. */
    char fpath[4200];
    snprintf(fpath, sizeof fpath, "%s/fsync.dat", data_dir);
    int fd = open(fpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die("open %s: %s", fpath, strerror(errno));
    for (int i = 0; i < FSYNC_RING; i++)
        if (pwrite(fd, fbuf, 4096, (off_t)i * 4096) != 4096)
            die("prefill %s: %s", fpath, strerror(errno));
    if (fsync(fd) != 0 || close(fd) != 0)
        die("fsync %s: %s", fpath, strerror(errno));
    fd = open(fpath, O_WRONLY | O_DSYNC | O_CLOEXEC);
    if (fd < 0)
        die("open %s O_DSYNC: %s", fpath, strerror(errno));

    pick_ports();
    double t_setup = now_s();
    start_node(1);
    if (find_leader(15) != 1)
        die("node 1 did not become leader");
    for (int id = 2; id <= NNODES; id++) {
        char addr[64], nid[32];
        struct rl_meta m;
        struct rl_result res;
        start_node(id);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", ports[id]);
        snprintf(nid, sizeof nid, "bench-%d", id);
        if (rl_meta_set(&m, (uint64_t)id, nid, addr, "") != 0)
            die("metadata of node %d", id);
        int rc = rl_node_add(nodes[1], (uint64_t)id, addr, RL_ROLE_VOTER, &m,
                             20000, &res);
        if (rc != RL_NODE_OK)
            die("add node %d: %s: %s", id, rl_node_strerror(rc), res.msg);
    }
    printf("bench_node: 3 nodes up in %.2f s (ports %d %d %d), %ld rounds "
           "of %ld fsyncs + %ld proposals of %ld bytes%s%s\n",
           now_s() - t_setup, ports[1], ports[2], ports[3], rounds, count,
           count, size, no_nodelay ? ", Raft without TCP_NODELAY" : "",
           tls_dir ? ", Raft in mutual TLS" : "");
    fflush(stdout);

    int leader = find_leader(15);
    if (!leader)
        die("no leader");
    struct rl_node_status st;
    rl_node_status(nodes[leader], &st);
    uint64_t base = st.L, txn = 0;
    unsigned retries = 0, not_effective = 0;
    size_t nf = 0, np = 0;
    for (long r = 0; r < rounds; r++) {
        fsync_batch(fd, fbuf, (size_t)count, flat + nf);
        nf += (size_t)count;
        double t0 = now_s();
        for (long i = 0; i < count; i++) {
            struct rl_proposal p = {.kind = RL_ENTRY_TXN,
                                    .base = base,
                                    .origin_txn = ++txn,
                                    .origin_pid = (uint32_t)getpid(),
                                    .payload = payload,
                                    .len = (size_t)size};
            struct rl_result res;
            double a = now_s();
            int rc = rl_node_propose(nodes[leader], &p, 10000, &res);
            double b = now_s();
            if (rc != RL_NODE_OK) {
                /* A leader change on a shared machine is possible: find
                ** the new leader and go on; give up only if it persists. */
                if (++retries > 20)
                    die("proposal failed: %s: %s", rl_node_strerror(rc),
                        res.msg);
                leader = find_leader(15);
                if (!leader)
                    die("no leader after a failed proposal");
                rl_node_status(nodes[leader], &st);
                base = st.L;
                i--;
                continue;
            }
            if (res.effective)
                base = res.index;
            else
                not_effective++;
            plat[np++] = (b - a) * 1e3;
        }
        rate[r] = (double)count / (now_s() - t0);
    }
    if (close(fd) != 0)
        die("close %s: %s", fpath, strerror(errno));

    /* Context for the tail: snapshots (every snapshot_threshold = 1024
    ** entries by default) and slow commits. */
    rl_node_status(nodes[leader], &st);
    size_t slow = 0;
    for (size_t i = 0; i < np; i++)
        slow += plat[i] > 10.0;
    struct stats fs = summarize(flat, nf), ps = summarize(plat, np);
    struct stats rs = summarize(rate, (size_t)rounds);
    printf("\nnode: %ld-byte TXN proposals on a 3-node loopback cluster, one "
           "thread, vs O_DSYNC 4 KiB writes in the same dir (ms)\n",
           size);
    printf("  %-26s %8s %8s %8s %8s %8s\n", "measure", "median", "p90", "p99",
           "mean", "max");
    printf("  %-26s %8.3f %8.3f %8.3f %8.3f %8.3f\n", "fsync (O_DSYNC 4 KiB)",
           fs.median, fs.p90, fs.p99, fs.mean, fs.max);
    printf("  %-26s %8.3f %8.3f %8.3f %8.3f %8.3f\n", "commit (propose->apply)",
           ps.median, ps.p90, ps.p99, ps.mean, ps.max);
    printf("  %-26s %8.2f %8.2f %8.2f %8.2f\n", "ratio commit/fsync",
           ps.median / fs.median, ps.p90 / fs.p90, ps.p99 / fs.p99,
           ps.mean / fs.mean);
    printf("  proposals/s: median of rounds %.0f (rounds:", rs.median);
    for (long r = 0; r < rounds; r++)
        printf(" %.0f", rate[r]);
    printf("); %.1f MB/s of payload; retries %u, not effective %u\n",
           rs.median * (double)size / 1e6, retries, not_effective);
    printf("  commits over 10 ms: %zu of %zu; leader took %u snapshots, "
           "term %llu\n",
           slow, np, st.snapshots_taken, (unsigned long long)st.term);

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f)
            die("open %s: %s", json, strerror(errno));
        fprintf(f,
                "{\"payload_bytes\": %ld, \"count\": %ld, \"rounds\": %ld,\n"
                " \"proposals_per_s\": %.3f, \"proposals_per_s_rounds\": [",
                size, count, rounds, rs.median);
        for (long r = 0; r < rounds; r++)
            fprintf(f, "%s%.3f", r ? ", " : "", rate[r]);
        fprintf(f,
                "],\n \"fsync_ms\": {\"median\": %.4f, \"p90\": %.4f, "
                "\"p99\": %.4f, \"mean\": %.4f, \"max\": %.4f},\n",
                fs.median, fs.p90, fs.p99, fs.mean, fs.max);
        fprintf(f,
                " \"commit_ms\": {\"median\": %.4f, \"p90\": %.4f, "
                "\"p99\": %.4f, \"mean\": %.4f, \"max\": %.4f},\n",
                ps.median, ps.p90, ps.p99, ps.mean, ps.max);
        fprintf(f,
                " \"ratio_commit_fsync\": {\"median\": %.4f, \"p90\": "
                "%.4f, \"p99\": %.4f, \"mean\": %.4f},\n",
                ps.median / fs.median, ps.p90 / fs.p90, ps.p99 / fs.p99,
                ps.mean / fs.mean);
        fprintf(f,
                " \"commits_over_10ms\": %zu, \"snapshots\": %u, "
                "\"term\": %llu,\n",
                slow, st.snapshots_taken, (unsigned long long)st.term);
        fprintf(f, " \"retries\": %u, \"not_effective\": %u}\n", retries,
                not_effective);
        if (fclose(f) != 0)
            die("write %s: %s", json, strerror(errno));
    }
    cleanup();
    free(flat);
    free(plat);
    free(rate);
    free(payload);
    free(fbuf);
    return 0;
}
