#!/usr/bin/python3
# budget: 90
"""tests/poc/test_poc_join.py -- raftd -join mistakes get clear errors and
change nothing.

A two-node raftd cluster (node1 -bootstrap, node2 -join). Then raftd -join
with: an unreachable peer (nothing listens), a wrong peer (node1's Raft
port instead of its gRPC port; a standalone raftd that is no cluster's
member), a duplicate id (node2 again, with other addresses), a duplicate
Raft address and a duplicate gRPC address (node2's, on this machine; also
a standalone raftd on a port another raftd serves). Each
raftd exits 1 within its time limit with an error naming the cause and
what to do, leaves its database an ordinary file (no <db>-raft/), and the
cluster keeps its two members, its leader and its writes. Afterwards the
same data directory joins with correct flags. (Refusals of raw Join RPCs
and of Remove of an unknown id are proven by tests/cluster/test_sql.py and
tests/cluster/test_rpc_cluster.py.)
"""
import os
import signal
import time

from rlpoc import (SLOW, Api, Raftd, check, check_eq, free_port, log,
                   run_raftd, scratch)
from rlgrpc import project_stubs


def addr():
    return "127.0.0.1:%d" % free_port()


def test():
    pb, pbg = project_stubs()
    api = Api(pb, pbg)
    d = scratch("rlpocjoin-")
    g1, r1, g2, r2 = addr(), addr(), addr(), addr()
    n1 = Raftd(["raftd", "-id", "node1", "-grpc", g1, "-raft", r1, "-data",
                "./data", "-bootstrap"], d, "node1").wait_serving()
    n2 = Raftd(["raftd", "-id", "node2", "-grpc", g2, "-raft", r2, "-data",
                "./data", "-join", g1], d, "node2").wait_serving()
    check(api.write(g1, "CREATE TABLE t(x)").success, "create")
    want = sorted(api.members(g1).items())
    check_eq([m[0] for m in want], ["node1", "node2"], "members")
    solo_g = addr()
    solo = Raftd(["raftd", "-id", "solo", "-grpc", solo_g, "-data",
                  "./solo"], d, "solo").wait_serving()

    dead = addr()
    cases = [
        ("unreachable peer", "node3", addr(), addr(), dead,
         ["cannot reach the node at " + dead,
          "is a raftlite node serving gRPC there?"]),
        ("peer given as a Raft address", "node3", addr(), addr(), r1,
         ["cannot reach the node at " + r1,
          "is a raftlite node serving gRPC there?"]),
        ("peer that runs standalone", "node3", addr(), addr(), solo_g,
         ["this node runs standalone", "ask a cluster member"]),
        ("duplicate id", "node2", addr(), addr(), g1,
         ["node 'node2' is already a member with raft address " + r2,
          "remove it first"]),
        ("duplicate Raft address", "node3", r2, addr(), g1,
         ["raft_start(" + r2, "is the address in use"]),
        ("duplicate gRPC address", "node3", addr(), g2, g1,
         ["cannot listen on " + g2, "address in use"]),
    ]
    n = 0
    for what, nid, raft, grpc, peer, needles in cases:
        data = os.path.join(d, "bad%d" % n)
        n += 1
        argv = ["raftd", "-id", nid, "-grpc", grpc, "-raft", raft, "-data",
                data, "-join", peer]
        t0 = time.time()
        rc, out = run_raftd(argv, d)
        dt = time.time() - t0
        check(rc == 1, "%s: raftd exited %d, want 1:\n%s" % (what, rc, out))
        for s in needles:
            check(s in out, "%s: the error lacks %r:\n%s" % (what, s, out))
        check(dt < 20 * SLOW, "%s: refused after %.1fs" % (what, dt))
        db = os.path.join(data, nid, "sqlite.db")
        check(not os.path.exists(db + "-raft"),
              "%s: %s-raft/ was left behind" % (what, db))
        check_eq(sorted(api.members(g1).items()), want,
                 "members after a join with a %s" % what)
        check_eq(api.status(g2).leader_id, "node1",
                 "leader after a join with a %s" % what)
        check(api.write(g2, "INSERT INTO t VALUES (%d)" % n).success,
              "a write after a join with a %s" % what)
        log("%s: refused in %.1fs: %s" % (
            what, dt, [x for x in out.splitlines() if "error" in x][-1]))

    # A standalone raftd on a port another raftd serves does not start
    # (grpc's default SO_REUSEPORT would have let it share the port).
    rc, out = run_raftd(["raftd", "-id", "solo2", "-grpc", solo_g, "-data",
                         "./solo2"], d)
    check(rc == 1 and "cannot listen on " + solo_g in out,
          "a second raftd on a served port: exit %d:\n%s" % (rc, out))
    log("a second raftd on a served gRPC port: refused")

    # The data directory of the first refusal joins with correct flags.
    g3 = addr()
    n3 = Raftd(["raftd", "-id", "node3", "-grpc", g3, "-raft", addr(),
                "-data", os.path.join(d, "bad0"), "-join", g2], d,
               "node3").wait_serving()
    check_eq(sorted(api.members(g1)), ["node1", "node2", "node3"],
             "members after the correct join")
    check_eq(api.read(g3, "SELECT count(*) FROM t", strong=True),
             [[str(n)]], "the joined node holds every write")
    log("a correct join after the refusals: ok")
    api.close()
    for p in (n3, n2, n1, solo):
        p.stop(signal.SIGTERM)


if __name__ == "__main__":
    from rltest import main
    main(test)
