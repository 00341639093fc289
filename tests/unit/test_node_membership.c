/*
** tests/unit/test_node_membership.c -- the Raft node (raftd/node/) when
** the cluster changes, on three real nodes (tests/unit/lib/node_cluster.h):
** leadership transfer, a stopped leader replaced, a node restarted from its
** data dir (restores, an image when it fell behind), a new gRPC address
** announced, a fresh node joining after compaction and its removal, a
** leader without a quorum (UNKNOWN, then the log decides) and a whole
** cluster restarted from its data dirs after a crash of the databases.
**
** The fake applier is the only mock: every check compares what each
** node's applier received with the others'.
*/
#include "node.h"

#include <stdio.h>
#include <string.h>

#include "lib/check.h"
#include "lib/node_cluster.h"

int main(void)
{
    rl_tc_init(&rl_check_cleanup);
    double t0 = rl_tc_now();
    rl_tc_form();
    int all3[] = {1, 2, 3};

    printf("proposals on the leader, so that every node takes snapshots\n");
    uint64_t last = 0;
    for (int i = 0; i < 30; i++)
        last = rl_tc_txn(1, i);

    printf("transfer leadership to node 2\n");
    {
        int from = rl_tc_wait_leader(10);
        int to = from == 2 ? 3 : 2;
        struct rl_result res;
        int rc = rl_node_transfer(rl_tc_nodes[from], (uint64_t)to, 10000, &res);
        if (rc != RL_NODE_OK)
            rl_tc_die("transfer %d -> %d: %s: %s", from, to,
                      rl_node_strerror(rc), res.msg);
        rl_tc_wait_leader_is(to, 10);
        last = rl_tc_txn(to, 300);
        if (to != 2) {
            rc = rl_node_transfer(rl_tc_nodes[to], 2, 10000, &res);
            if (rc != RL_NODE_OK)
                rl_tc_die("transfer %d -> 2: %s: %s", to, rl_node_strerror(rc),
                          res.msg);
            rl_tc_wait_leader_is(2, 10);
            last = rl_tc_txn(2, 301);
        }
    }

    printf("stop the leader (node 2): a new leader is elected\n");
    rl_tc_stop(2);
    double t = rl_tc_now();
    int leader = rl_tc_wait_leader(10);
    printf("  node %d leads after %.2f s\n", leader, rl_tc_now() - t);
    CHECK(leader == 1 || leader == 3);
    for (int i = 0; i < 40; i++)
        last = rl_tc_txn(leader, 400 + i);

    printf("restart node 2 from its data dir: it restores and catches up\n");
    int have_before = rl_tc_fakes[2].restores_have;
    rl_tc_start(2, 0);
    for (int id = 1; id <= 3; id++)
        rl_tc_wait_applied(id, last);
    /* At start raft restores the local snapshot: the database has it.
    ** Down for more than the trailing entries, it then also receives the
    ** leader's snapshot, which its database does not have: an image. */
    printf("  node 2: restores with database ahead %d, needing an image %d "
           "(images %d)\n",
           rl_tc_fakes[2].restores_have - have_before,
           rl_tc_fakes[2].restores_need, rl_tc_fakes[2].images);
    CHECK(rl_tc_fakes[2].restores_have > have_before);
    CHECK(rl_tc_fakes[2].restores_need == rl_tc_fakes[2].images);
    rl_tc_compare(1, 2);
    rl_tc_compare(2, 3);

    printf("node 2 came back with a new gRPC address: it is announced\n");
    {
        rl_tc_grpc_base = 8000;
        rl_tc_stop(2);
        rl_tc_start(2, 0);
        rl_tc_grpc_base = 7000;
        CHECK(!rl_node_meta_current(rl_tc_nodes[2]));
        /* What the gRPC side does for a follower: forward its own META. */
        struct rl_meta self;
        uint8_t buf[1024];
        rl_node_self_meta(rl_tc_nodes[2], &self);
        CHECK(strcmp(self.grpc_addr, "127.0.0.1:8002") == 0);
        size_t len = rl_meta_encode(&self, buf, sizeof buf);
        CHECK(len > 0);
        last = rl_tc_propose(leader, RL_ENTRY_META, 0, buf, len, 1);
        for (int id = 1; id <= 3; id++)
            rl_tc_wait_applied(id, last);
        CHECK(rl_node_meta_current(rl_tc_nodes[2]));
        struct rl_meta m;
        CHECK(rl_node_meta(rl_tc_nodes[3], 2, NULL, &m) == RL_NODE_OK);
        CHECK(strcmp(m.grpc_addr, "127.0.0.1:8002") == 0);
    }

    printf("a fresh node 4 joins after compaction: it needs an image\n");
    rl_tc_start(4, 0);
    rl_tc_add(leader, 4);
    last = rl_tc_txn(leader, 500);
    rl_tc_wait_applied(4, last);
    CHECK(rl_tc_fakes[4].images >= 1 && rl_tc_fakes[4].restores_need >= 1);
    rl_tc_compare(4, 1);
    rl_tc_compare(4, 3);
    {
        struct rl_node_status st;
        rl_node_status(rl_tc_nodes[4], &st);
        CHECK(!st.need_image && st.restores >= 1);
    }

    printf("remove node 4\n");
    {
        struct rl_result res;
        int rc = rl_node_remove(rl_tc_nodes[leader], 4, 10000, &res);
        if (rc != RL_NODE_OK)
            rl_tc_die("remove: %s: %s", rl_node_strerror(rc), res.msg);
        rl_tc_stop(4);
        rl_tc_wait_members(leader, 3, all3);
    }

    printf("leader without a quorum: a proposal ends UNKNOWN\n");
    {
        int f[2], k = 0;
        for (int id = 1; id <= 3; id++)
            if (id != leader)
                f[k++] = id;
        rl_tc_stop(f[0]);
        rl_tc_stop(f[1]);
        char payload[] = "no quorum";
        struct rl_proposal pr = {.kind = RL_ENTRY_TXN,
                                 .base = rl_tc_L,
                                 .origin_txn = ++rl_tc_txn_seq,
                                 .payload = payload,
                                 .len = sizeof payload};
        struct rl_result res;
        double t = rl_tc_now();
        int rc = rl_node_propose(rl_tc_nodes[leader], &pr, 2000, &res);
        printf("  %s after %.2f s (index %llu): %s\n", rl_node_strerror(rc),
               rl_tc_now() - t, (unsigned long long)res.index, res.msg);
        CHECK(rc == RL_NODE_UNKNOWN && res.index > last);
        rl_tc_start(f[0], 0);
        rl_tc_start(f[1], 0);
        leader = rl_tc_wait_leader(15);
        /* Whether that entry committed is for the log to say; every node
        ** must agree either way, and L follows it. */
        last = rl_tc_propose(leader, RL_ENTRY_NOOP, 0, NULL, 0, 1);
        for (int id = 1; id <= 3; id++)
            rl_tc_wait_applied(id, last);
        struct rl_fake_rec r = rl_tc_find_rec(leader, res.index);
        printf("  entry %llu: %s\n", (unsigned long long)res.index,
               r.kind == RL_ENTRY_TXN ? "committed" : "replaced");
        struct rl_node_status st;
        rl_node_status(rl_tc_nodes[leader], &st);
        rl_tc_L = st.L;
        rl_tc_compare(1, 2);
        rl_tc_compare(1, 3);
    }
    printf("whole cluster restart from the data dirs\n");
    {
        for (int id = 1; id <= 3; id++)
            rl_tc_stop(id);
        /* Each database loses what no snapshot made durable (a crash): the
        ** nodes must replay it from their logs with the same verdicts. */
        for (int id = 1; id <= 3; id++) {
            struct rl_fake *f = &rl_tc_fakes[id];
            while (f->n > 0 && f->recs[f->n - 1].index > f->durable)
                f->n--;
            f->applied = f->durable;
            printf("  node %d database back to %llu\n", id,
                   (unsigned long long)f->durable);
        }
        for (int id = 1; id <= 3; id++)
            rl_tc_start(id, id == 1); /* bootstrap is ignored: not pristine */
        leader = rl_tc_wait_leader(15);
        last = rl_tc_txn(leader, 900);
        for (int id = 1; id <= 3; id++)
            rl_tc_wait_applied(id, last);
        rl_tc_compare(1, 2);
        rl_tc_compare(1, 3);
        int all[] = {1, 2, 3};
        rl_tc_wait_members(leader, 3, all);
    }

    for (int id = 1; id < RL_TC_N; id++)

        rl_tc_close();
    printf("test_node_membership: all passed in %.1f s\n", rl_tc_now() - t0);
    return 0;
}
