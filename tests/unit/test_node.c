/*
** tests/unit/test_node.c -- the Raft node (raftd/node/) on a cluster of
** three real nodes (tests/unit/lib/node_cluster.h: canonical/raft 0.15,
** real TCP on 127.0.0.1, real data dirs, a fake database per node):
** proposals and their verdicts (a stale base is not effective), outcomes
** on a follower (NOTLEADER with a hint), metadata, linearizable read
** points, snapshots, a 50 MB transaction, racing writers (first committer
** wins, same verdicts everywhere) and log compaction.
**
** The fake applier is the only mock: every check compares what each
** node's applier received with the others'. Leadership changes and
** restarts: test_node_membership.c; solo nodes and start and stop:
** test_node_start.c.
*/
#include "node.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/check.h"
#include "lib/node_cluster.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Writers racing like SQLite connections on different nodes' hosts: each
** proposes with the base it last saw; exactly one per base wins. */
struct racer {
    int id;
    int ok, effective, other;
};
static volatile int race_leader;

static void *racer_main(void *arg)
{
    struct racer *rc = arg;
    for (int i = 0; i < 40; i++) {
        struct rl_node_status st;
        rl_node_status(rl_tc_nodes[race_leader], &st);
        char p[32];
        int len = snprintf(p, sizeof p, "racer %d %d", rc->id, i);
        struct rl_proposal pr = {.kind = RL_ENTRY_TXN,
                                 .base = st.L,
                                 .origin_txn = (uint64_t)(rc->id * 1000 + i),
                                 .origin_pid = (uint32_t)rc->id,
                                 .payload = p,
                                 .len = (size_t)len};
        struct rl_result res;
        int r = rl_node_propose(rl_tc_nodes[race_leader], &pr, 10000, &res);
        if (r == RL_NODE_OK) {
            rc->ok++;
            rc->effective += res.effective;
        } else {
            rc->other++;
        }
    }
    return NULL;
}

static pthread_barrier_t read_go;
static uint64_t read_floor;
static int reads_ok;
static pthread_mutex_t reads_mu = PTHREAD_MUTEX_INITIALIZER;

static void *reader(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&read_go);
    struct rl_result res;
    int rc = rl_node_read_index(rl_tc_nodes[1], 5000, &res);
    int ok =
        rc == RL_NODE_OK && res.index >= read_floor &&
        rl_node_wait_applied(rl_tc_nodes[1], res.index, 5000) == RL_NODE_OK;
    pthread_mutex_lock(&reads_mu);
    reads_ok += ok;
    pthread_mutex_unlock(&reads_mu);
    return NULL;
}

/* Every connected TCP socket of this process (all of them are Raft
** connections between the nodes here) has TCP_NODELAY (raftd/node/transport.c);
** returns how many there are. */
static int raft_sockets_nodelay(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name), v = 0, dom = 0;
        socklen_t len = sizeof dom;
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        if (e->d_name[0] == '.' || fd == dirfd(d) ||
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) != 0 ||
            dom != AF_INET ||
            getpeername(fd, (struct sockaddr *)&peer, &plen) != 0)
            continue; /* not a connected IPv4 socket */
        len = sizeof v;
        CHECK(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0);
        if (!v)
            rl_tc_die("fd %d (peer port %d) has no TCP_NODELAY", fd,
                      ntohs(peer.sin_port));
        n++;
    }
    closedir(d);
    return n;
}

/* A write lease from leader for holder: it is refused while the holder
** has not stored everything committed (a moment after a proposal). */
static void grant_lease(int leader, int holder, unsigned *ms)
{
    double end = rl_tc_now() + 10;
    rl_err rc;
    while ((rc = rl_node_lease_grant(rl_tc_nodes[leader], holder, ms)) ==
               RL_ERR_INVALID &&
           rl_tc_now() < end)
        usleep(1000);
    if (rc != RL_OK || *ms == 0)
        rl_tc_die("no write lease for node %d from node %d: %s", holder, leader,
                  rl_node_strerror(rc));
}

int main(void)
{
    rl_tc_init(&rl_check_cleanup);
    double t0 = rl_tc_now();
    uint64_t gi = rl_tc_form();

    printf("proposals on the leader; a stale base is not effective\n");
    uint64_t stale_base = rl_tc_L, last = 0;
    for (int i = 0; i < 30; i++)
        last = rl_tc_txn(1, i);
    uint64_t stale = rl_tc_propose(1, RL_ENTRY_TXN, stale_base, "stale", 5, 0);
    uint64_t noop = rl_tc_propose(1, RL_ENTRY_NOOP, 0, NULL, 0, 1);
    last = rl_tc_txn(1, 100);
    for (int id = 1; id <= 3; id++)
        rl_tc_wait_applied(id, last);
    rl_tc_compare(1, 2);
    rl_tc_compare(1, 3);
    for (int id = 1; id <= 3; id++) {
        struct rl_fake_rec r = rl_tc_find_rec(id, stale);
        CHECK(r.index == stale && r.kind == RL_ENTRY_TXN && !r.effective);
        r = rl_tc_find_rec(id, noop);
        CHECK(r.index == noop && r.kind == RL_ENTRY_NOOP);
        r = rl_tc_find_rec(id, gi);
        CHECK(r.kind == RL_ENTRY_GENESIS && r.effective && r.len == 10);
    }

    printf("every Raft connection has TCP_NODELAY\n");
    {
        /* Leader to each follower and each follower to the leader at
        ** least: 4 connections, both ends in this process. */
        int socks = raft_sockets_nodelay();
        printf("  %d connected sockets, all with TCP_NODELAY\n", socks);
        CHECK(socks >= 8);
    }

    printf("a proposal on a follower gets NOTLEADER with a leader hint\n");
    {
        struct rl_proposal pr = {
            .kind = RL_ENTRY_TXN, .base = rl_tc_L, .payload = "x", .len = 1};
        struct rl_result res;
        int rc = rl_node_propose(rl_tc_nodes[2], &pr, 5000, &res);
        CHECK(rc == RL_NODE_NOTLEADER);
        CHECK(res.leader_id == 1);
        CHECK(strstr(res.leader_addr, "127.0.0.1:") != NULL);
        /* An entry handed over is the node's even when refused: freed
        ** there exactly once (ASan: neither leaked nor freed twice). */
        void *entry = rl_node_entry_alloc(1);
        CHECK(entry != NULL);
        rl_node_entry_payload(entry)[0] = 'x';
        pr.payload = NULL;
        rc = rl_node_propose_entry(rl_tc_nodes[2], &pr, entry, 5000, &res);
        CHECK(rc == RL_NODE_NOTLEADER && res.leader_id == 1);
        pr.kind = 0; /* refused before any request exists */
        rc = rl_node_propose_entry(rl_tc_nodes[2], &pr, rl_node_entry_alloc(1),
                                   5000, &res);
        CHECK(rc == RL_NODE_INVALID);
        CHECK(rl_node_entry_alloc((size_t)RL_ENTRY_MAX_PAYLOAD + 1) == NULL);
    }

    printf("the board: each node posts its role and L; damage reads as none\n");
    {
        char path[300];
        struct rl_node_board b;
        struct rl_node_status st;
        for (int id = 1; id <= 3; id++) {
            /* The applier may hand an entry over a moment before the loop
            ** posts it (fsm_apply queues the entry, then publishes). */
            rl_tc_board_path(path, sizeof path, id);
            for (int i = 0; i < 200; i++) {
                if (rl_node_board_read(path, &b) == 0 && b.L == rl_tc_L)
                    break;
                usleep(10000);
            }
            rl_node_status(rl_tc_nodes[id], &st);
            printf("  node %d: state %d, L %llu\n", id, b.state,
                   (unsigned long long)b.L);
            CHECK(b.state == (id == 1 ? RL_STATE_LEADER : RL_STATE_FOLLOWER));
            CHECK(b.L == st.L && b.L == rl_tc_L);
        }
        /* The leader posts a new L before its proposer hears of it. */
        uint64_t next = rl_tc_txn(1, 101);
        rl_tc_board_path(path, sizeof path, 1);
        CHECK(rl_node_board_read(path, &b) == 0 && b.L == next);
        /* Damaged, short, empty or absent: no board (readers then ask). */
        {
            char copy[300];
            uint8_t raw[24];
            int fd;
            rl_tc_board_path(path, sizeof path, 3);
            fd = open(path, O_RDONLY);
            CHECK(fd >= 0 && pread(fd, raw, sizeof raw, 0) == 24);
            close(fd);
            snprintf(copy, sizeof copy, "%s/board-copy", rl_tc_dir);
            for (int i = 0; i < 24; i++) {
                raw[i] ^= 0x40;
                fd = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                CHECK(fd >= 0 && pwrite(fd, raw, 24, 0) == 24);
                close(fd);
                CHECK(rl_node_board_read(copy, &b) == -1);
                raw[i] ^= 0x40;
            }
            fd = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            CHECK(fd >= 0 && pwrite(fd, raw, 23, 0) == 23);
            close(fd);
            CHECK(rl_node_board_read(copy, &b) == -1);
            CHECK(truncate(copy, 0) == 0);
            CHECK(rl_node_board_read(copy, &b) == -1);
            CHECK(unlink(copy) == 0);
            CHECK(rl_node_board_read(copy, &b) == -1);
        }
    }

    printf("metadata visible on every node\n");
    int all3[] = {1, 2, 3};
    for (int id = 1; id <= 3; id++)
        rl_tc_wait_members(id, 3, all3);
    {
        struct rl_meta m;
        CHECK(rl_node_meta(rl_tc_nodes[3], 0, "node-2", &m) == RL_NODE_OK);
        CHECK(m.raft_id == 2 && strcmp(m.grpc_addr, "127.0.0.1:7002") == 0);
        CHECK(rl_node_meta(rl_tc_nodes[3], 0, "nobody", &m) == RL_NODE_INVALID);
        for (int id = 1; id <= 3; id++)
            CHECK(rl_node_meta_current(rl_tc_nodes[id]));
        struct rl_member *mm;
        unsigned n;
        CHECK(rl_node_members(rl_tc_nodes[1], &mm, &n) == RL_NODE_OK);
        for (unsigned i = 0; i < n; i++) {
            printf("  leader sees %llu: match %llu, recent contact %d\n",
                   (unsigned long long)mm[i].raft_id,
                   (unsigned long long)mm[i].match_index, mm[i].recent_contact);
            CHECK(mm[i].recent_contact >= 0);
            CHECK(mm[i].is_leader == (mm[i].raft_id == 1));
            CHECK(mm[i].raft_id == 1 || mm[i].match_index >= last);
        }
        free(mm);
    }

    printf("linearizable read points on the leader, shared by concurrent "
           "readers\n");
    {
        struct rl_result res;
        CHECK(rl_node_read_index(rl_tc_nodes[2], 5000, &res) ==
              RL_NODE_NOTLEADER);
        struct rl_node_status st;
        rl_node_status(rl_tc_nodes[1], &st);
        unsigned before = st.read_barriers;
        read_floor = last;
        pthread_t th[8];
        pthread_barrier_init(&read_go, NULL, 8);
        for (int i = 0; i < 8; i++)
            pthread_create(&th[i], NULL, reader, NULL);
        for (int i = 0; i < 8; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&read_go);
        CHECK(reads_ok == 8);
        rl_node_status(rl_tc_nodes[1], &st);
        printf("  8 reads, %u barriers\n", st.read_barriers - before);
        CHECK(st.read_barriers > before && st.read_barriers - before <= 8);
        /* A follower waits for the leader's read point, then reads. */
        CHECK(rl_node_read_index(rl_tc_nodes[1], 5000, &res) == RL_NODE_OK);
        CHECK(rl_node_wait_applied(rl_tc_nodes[3], res.index, 5000) ==
              RL_NODE_OK);
    }

    printf("snapshots were taken (threshold 16)\n");
    for (int id = 1; id <= 3; id++) {
        struct rl_node_status st;
        rl_node_status(rl_tc_nodes[id], &st);
        printf("  node %d: snapshots %u taken %u failed, index %llu\n", id,
               st.snapshots_taken, st.snapshots_failed,
               (unsigned long long)st.snapshot_index);
        CHECK(st.snapshots_taken > 0);
    }

    printf("a 50 MB transaction\n");
    {
        size_t big = 50u << 20;
        unsigned char *p = malloc(big);
        CHECK(p);
        for (size_t i = 0; i < big; i++)
            p[i] = (unsigned char)(i * 2654435761u >> 13);
        /* The leader may lose its post while 50 MB move: NOTLEADER is a
        ** definite failure and is retried on the new leader, as a client
        ** would. */
        uint64_t bi = 0;
        for (int attempt = 0; bi == 0; attempt++) {
            int l = rl_tc_wait_leader(10);
            struct rl_proposal pr = {.kind = RL_ENTRY_TXN,
                                     .base = rl_tc_L,
                                     .origin_txn = ++rl_tc_txn_seq,
                                     .payload = p,
                                     .len = big};
            struct rl_result res;
            double t = rl_tc_now();
            int rc = rl_node_propose(rl_tc_nodes[l], &pr, 15000, &res);
            printf("  attempt %d on node %d: %s in %.2f s\n", attempt, l,
                   rl_node_strerror(rc), rl_tc_now() - t);
            if (rc == RL_NODE_OK) {
                CHECK(res.effective);
                bi = res.index;
                rl_tc_L = bi;
            } else if (rc == RL_NODE_UNKNOWN && attempt < 5) {
                /* Appended, then the leader fell while 50 MB moved: the
                ** log decides. Make the cluster progress, then look. */
                int l2 = rl_tc_wait_leader(15);
                uint64_t x = rl_tc_propose(l2, RL_ENTRY_NOOP, 0, NULL, 0, 1);
                for (int id = 1; id <= 3; id++)
                    rl_tc_wait_applied(id, x);
                struct rl_fake_rec r = rl_tc_find_rec(l2, res.index);
                printf("  entry %llu after UNKNOWN: %s\n",
                       (unsigned long long)res.index,
                       r.len == big ? "committed" : "not committed");
                if (r.len == big) {
                    CHECK(r.effective && r.sum == rl_checksum64(0, p, big));
                    bi = res.index;
                }
                struct rl_node_status st;
                rl_node_status(rl_tc_nodes[l2], &st);
                rl_tc_L = st.L;
            } else if (rc != RL_NODE_NOTLEADER || attempt == 5) {
                rl_tc_die("50 MB proposal: %s: %s", rl_node_strerror(rc),
                          res.msg);
            }
        }
        printf("  committed at %llu\n", (unsigned long long)bi);
        uint64_t sum = rl_checksum64(0, p, big);
        free(p);
        for (int id = 1; id <= 3; id++) {
            rl_tc_wait_applied(id, bi);
            struct rl_fake_rec r = rl_tc_find_rec(id, bi);
            CHECK(r.len == big && r.sum == sum && r.effective);
        }
        /* Moving 50 MB may outlast an election timeout: whoever leads
        ** now must carry on. */
        int l = rl_tc_wait_leader(10);
        printf("  leader after it: node %d\n", l);
        last = rl_tc_txn(l, 200);
    }

    int leader = rl_tc_wait_leader(10);

    printf("4 racing writers: first committer wins, same verdicts "
           "everywhere\n");
    {
        race_leader = leader;
        struct racer rs[4];
        pthread_t th[4];
        for (int i = 0; i < 4; i++) {
            rs[i] = (struct racer){.id = i + 1};
            pthread_create(&th[i], NULL, racer_main, &rs[i]);
        }
        int ok = 0, eff = 0;
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            ok += rs[i].ok;
            eff += rs[i].effective;
            CHECK(rs[i].other == 0);
        }
        printf("  %d applied, %d effective, %d conflicts\n", ok, eff, ok - eff);
        CHECK(ok == 160 && eff > 0);
        struct rl_node_status st;
        rl_node_status(rl_tc_nodes[leader], &st);
        rl_tc_L = st.L;
        last = st.fsm_applied;
        for (int id = 1; id <= 3; id++)
            rl_tc_wait_applied(id, st.L);
        rl_tc_compare(1, 2);
        rl_tc_compare(1, 3);
        for (int id = 1; id <= 3; id++)
            rl_tc_check_chain(id);
    }

    printf("log compaction keeps the data dirs bounded\n");
    {
        /* Settable at run time: a wider policy for this phase. */
        for (int id = 1; id <= 3; id++)
            CHECK(rl_node_set_snapshot(rl_tc_nodes[id], 32, 8, 0, 0, 5000) ==
                  RL_NODE_OK);
        struct rl_node_status st0;
        rl_node_status(rl_tc_nodes[leader], &st0);
        char *p = malloc(4096);
        CHECK(p);
        memset(p, 'x', 4096);
        static double lat[300];
        for (int i = 0; i < 300; i++) {
            p[0] = (char)i;
            double t = rl_tc_now();
            last = rl_tc_propose(leader, RL_ENTRY_TXN, rl_tc_L, p, 4096, 1);
            lat[i] = rl_tc_now() - t;
        }
        struct rl_node_status st1;
        rl_node_status(rl_tc_nodes[leader], &st1);
        unsigned snaps = st1.snapshots_taken - st0.snapshots_taken;
        printf("  %u snapshots for 300 entries at threshold 32\n", snaps);
        CHECK(snaps >= 6 && snaps <= 12); /* 16 would give ~19 */
        qsort(lat, 300, sizeof lat[0], cmp_double);
        printf("  4 KiB proposals: median %.2f ms, p90 %.2f ms, max %.2f ms\n",
               lat[150] * 1e3, lat[270] * 1e3, lat[299] * 1e3);
        free(p);
        for (int id = 1; id <= 3; id++)
            rl_tc_wait_applied(id, last);
        usleep(300000); /* let the last snapshot's truncation land */
        for (int id = 1; id <= 3; id++) {
            uint64_t b = rl_tc_dir_bytes(id);
            printf("  node %d data dir: %.1f MB\n", id, b / 1048576.0);
            CHECK(b < (uint64_t)12 << 20);
        }
        rl_tc_compare(1, 2);
        rl_tc_compare(1, 3);
    }

    printf("write leases: no answer before the holder stored the entry; "
           "a stopped holder holds answers for one lease at most\n");
    {
        int holder = leader == 3 ? 2 : 3;
        unsigned ms = 0;
        struct rl_node_status st0, st1, hs;
        /* Only the leader grants, only to another replicating member. */
        CHECK(rl_node_lease_grant(rl_tc_nodes[holder], leader, &ms) ==
                  RL_ERR_NOTLEADER &&
              ms == 0);
        CHECK(rl_node_lease_grant(rl_tc_nodes[leader], leader, &ms) ==
              RL_ERR_INVALID);
        CHECK(rl_node_lease_grant(rl_tc_nodes[leader], 99, &ms) ==
              RL_ERR_INVALID);
        rl_node_status(rl_tc_nodes[leader], &st0);
        uint64_t idx = 0;
        for (int i = 0; i < 100; i++) {
            if (i % 10 == 0) /* well within one lease */
                grant_lease(leader, holder, &ms);
            idx = rl_tc_txn(leader, 200 + i);
            rl_node_status(rl_tc_nodes[holder], &hs);
            if (hs.last_index < idx)
                rl_tc_die("entry %llu answered before holder %d stored it "
                          "(its last index %llu)",
                          (unsigned long long)idx, holder,
                          (unsigned long long)hs.last_index);
        }
        rl_node_status(rl_tc_nodes[leader], &st1);
        printf("  100 answers after the holder stored each; %llu leases "
               "granted, %llu answers waited for the holder\n",
               (unsigned long long)(st1.leases_granted - st0.leases_granted),
               (unsigned long long)(st1.lease_waits - st0.lease_waits));
        CHECK(st1.leases_granted - st0.leases_granted >= 10);
        /* The holder stops. Its own write (a transaction it forwarded)
        ** waits for nobody: its writer knows of it. */
        grant_lease(leader, holder, &ms);
        double t = rl_tc_now();
        rl_tc_stop(holder);
        {
            struct rl_proposal pr = {.kind = RL_ENTRY_TXN,
                                     .base = rl_tc_L,
                                     .origin_node = (uint64_t)holder,
                                     .origin_txn = ++rl_tc_txn_seq,
                                     .origin_pid = 1,
                                     .payload = "own",
                                     .len = 3};
            struct rl_result res;
            rl_node_status(rl_tc_nodes[leader], &st0);
            CHECK(rl_node_propose(rl_tc_nodes[leader], &pr, 20000, &res) ==
                      RL_OK &&
                  res.effective);
            rl_tc_L = res.index;
            rl_node_status(rl_tc_nodes[leader], &st1);
            CHECK(st1.lease_waits == st0.lease_waits);
        }
        /* Any other answer waits until the holder's lease ends (counted
        ** from the grant, before the clock was read), no longer than that
        ** plus a few ticks. */
        idx = rl_tc_txn(leader, 300);
        double took = rl_tc_now() - t;
        printf("  holder stopped: answer after %.0f ms (lease %u ms)\n",
               took * 1e3, ms);
        CHECK(took * 1e3 >= ms - 5);
        CHECK(took * 1e3 < ms + 3000);
        rl_node_status(rl_tc_nodes[leader], &st0);
        CHECK(st0.lease_waits == st1.lease_waits + 1);
        /* Without a holder, answers wait for nobody. */
        idx = rl_tc_txn(leader, 301);
        rl_node_status(rl_tc_nodes[leader], &st1);
        CHECK(st1.lease_waits == st0.lease_waits);
        for (int id = 1; id <= 3; id++)
            if (rl_tc_nodes[id])
                rl_tc_wait_applied(id, idx);
    }

    printf("a stopped node's board says it serves nothing\n");
    {
        char path[300];
        struct rl_node_board b;
        if (rl_tc_nodes[3])
            rl_tc_stop(3);
        rl_tc_board_path(path, sizeof path, 3);
        CHECK(rl_node_board_read(path, &b) == 0 &&
              b.state == RL_STATE_UNAVAILABLE);
    }
    rl_tc_close();
    printf("test_node: all passed in %.1f s\n", rl_tc_now() - t0);
    return 0;
}
