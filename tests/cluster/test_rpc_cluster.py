#!/usr/bin/python3
# budget: 120
# asan: yes
"""tests/cluster/test_rpc_cluster.py -- the gRPC sidecar of hosted nodes.

A three-node cluster of stock shells; a python gRPC client (python3-grpcio,
stubs generated from proto/raftlite.proto) checks: Status reports the Raft
state, Leader/Nodes describe the cluster on every node, ExecuteWrite and
ExecuteTransaction sent to followers are forwarded to the leader, STRONG
reads on followers see every write acknowledged before them (ReadIndex from
the leader), ReadIndex is served by the leader only, Transfer and Remove
work and refuse unknown ids, and a leader cut off from its quorum refuses
STRONG reads while EVENTUAL reads still answer.
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))

from rltest import Shell, check, check_eq, free_port, log, main, scratch
from rlgrpc import project_stubs

import grpc

T = 20


def addr():
    return "127.0.0.1:%d" % free_port()


def test():
    pb, pbg = project_stubs()
    d = scratch("rlrpcc-")
    ra, ga, rb, gb, rc, gc = (addr() for _ in range(6))
    a = Shell(os.path.join(d, "a.db"))
    a.sql_ok("SELECT raft_bootstrap('n1', '%s', '%s');" % (ra, ga))
    a.sql_ok("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT);")
    b = Shell(os.path.join(d, "b.db"))
    b.sql_ok("SELECT raft_join('n2', '%s', '%s', '%s');" % (rb, gb, ga))
    c = Shell(os.path.join(d, "c.db"))
    c.sql_ok("SELECT raft_join('n3', '%s', '%s', '%s');" % (rc, gc, ga))

    chans = {n: grpc.insecure_channel(g) for n, g in
             (("n1", ga), ("n2", gb), ("n3", gc))}
    pub = {n: pbg.DistributedSqliteStub(ch) for n, ch in chans.items()}
    intl = {n: pbg.RaftliteInternalStub(ch) for n, ch in chans.items()}

    # Status, Leader, Nodes.
    for n, role in (("n1", "leader"), ("n2", "follower"), ("n3", "follower")):
        st = pub[n].Status(pb.StatusRequest(), timeout=T)
        check(st.node_id == n and st.role == role and st.state == role and
              st.leader_id == "n1" and st.leader_grpc == ga and
              st.term >= 1 and st.raft_id != 0 and st.commit_index >= 1,
              "Status of %s: %r" % (n, st))
        ld = pub[n].Leader(pb.LeaderRequest(), timeout=T)
        check(ld.known and ld.node_id == "n1" and ld.grpc_addr == ga and
              ld.raft_addr == ra, "Leader seen by %s: %r" % (n, ld))
    want = [("n1", ra, ga, "voter", True, False),
            ("n2", rb, gb, "voter", False, False),
            ("n3", rc, gc, "voter", False, False)]
    # A follower's configuration may trail the leader's by a heartbeat
    # (n3 shows as a spare until the voter assignment reaches n2).
    deadline = time.time() + 10
    while True:
        nodes = pub["n2"].Nodes(pb.NodesRequest(), timeout=T)
        got = sorted((x.node_id, x.raft_addr, x.grpc_addr, x.role,
                      x.is_leader, x.on_leader) for x in nodes.nodes)
        if got == want or time.time() > deadline:
            break
        time.sleep(0.05)
    check_eq(got, want, "Nodes on a follower")
    nodes = pub["n1"].Nodes(pb.NodesRequest(), timeout=T)
    check(all(x.on_leader and x.match_index > 0 for x in nodes.nodes),
          "Nodes on the leader carry match indexes: %r" % nodes)
    before = pub["n2"].Status(pb.StatusRequest(), timeout=T).calls_served
    pub["n2"].Leader(pb.LeaderRequest(), timeout=T)
    after = pub["n2"].Status(pb.StatusRequest(), timeout=T).calls_served
    check_eq(after - before, 2, "calls_served counts cluster RPCs")
    log("Status/Leader/Nodes: ok")

    # Writes through followers are forwarded; STRONG reads on followers
    # see every write acknowledged before they began.
    for i in range(20):
        w = pub["n3" if i % 2 else "n2"].ExecuteWrite(
            pb.WriteRequest(sql="INSERT INTO t VALUES (?, ?)",
                            params=[pb.Value(integer=i),
                                    pb.Value(text="v%d" % i)]), timeout=T)
        check(w.success and w.rows_affected == 1,
              "forwarded write %d: %r" % (i, w))
        for n in ("n2", "n3"):
            r = pub[n].ExecuteRead(pb.ReadRequest(
                sql="SELECT count(*) FROM t",
                consistency=pb.STRONG), timeout=T)
            check(not r.error, "STRONG read on %s: %r" % (n, r.error))
            check_eq(r.result.rows[0].typed[0].integer, i + 1,
                     "STRONG read on %s after write %d" % (n, i))
    tx = pub["n3"].ExecuteTransaction(pb.TransactionRequest(statements=[
        pb.Statement(sql="INSERT INTO t VALUES (100, 'a')"),
        pb.Statement(sql="UPDATE t SET v = 'b' WHERE k = 100")]), timeout=T)
    check(tx.success and len(tx.results) == 2, "forwarded transaction: %r"
          % tx)
    out = a.sql_ok("SELECT v FROM t WHERE k = 100;")
    check_eq([l for l in out.splitlines() if not l.startswith("raftlite[")],
             ["b"],
             "the forwarded transaction reached the leader's database")
    log("forwarded writes and STRONG reads: ok")

    ri = intl["n1"].ReadIndex(pb.ReadIndexRequest(), timeout=T)
    check(not ri.error and ri.index > 0, "ReadIndex on the leader: %r" % ri)
    ri = intl["n2"].ReadIndex(pb.ReadIndexRequest(), timeout=T)
    check("not the leader" in ri.error, "ReadIndex on a follower: %r" % ri)

    # Transfer and Remove.
    tr = pub["n2"].Transfer(pb.TransferRequest(node_id="n3"), timeout=T)
    check(tr.success and tr.leader_id == "n3", "Transfer: %r" % tr)
    tr = pub["n1"].Transfer(pb.TransferRequest(node_id="zz"), timeout=T)
    check(not tr.success and "no node 'zz'" in tr.error,
          "Transfer to an unknown id: %r" % tr)
    rm = pub["n1"].Remove(pb.RemoveRequest(node_id="zz"), timeout=T)
    check(not rm.success and "no node 'zz'" in rm.error,
          "Remove of an unknown id: %r" % rm)
    check_eq(len(pub["n3"].Nodes(pb.NodesRequest(), timeout=T).nodes), 3,
             "members after refused calls")
    rm = pub["n1"].Remove(pb.RemoveRequest(node_id="n1"), timeout=T)
    check(rm.success, "Remove n1 through itself (forwarded): %r" % rm)
    ns = pub["n3"].Nodes(pb.NodesRequest(), timeout=T).nodes
    check_eq(sorted(x.node_id for x in ns), ["n2", "n3"],
             "members after Remove")
    log("Transfer/Remove: ok")

    # A leader without its quorum: STRONG refused, EVENTUAL answers.
    lead = pub["n3"].Leader(pb.LeaderRequest(), timeout=T).node_id
    other = "n2" if lead == "n3" else "n3"
    (b if other == "n2" else c).finish(other)
    t0 = time.time()
    r = pub[lead].ExecuteRead(pb.ReadRequest(sql="SELECT count(*) FROM t",
                                             consistency=pb.STRONG),
                              timeout=T)
    check(r.error.startswith("STRONG read refused"),
          "STRONG read without a quorum: %r" % r)
    check(time.time() - t0 < T, "the refusal comes before the deadline")
    r = pub[lead].ExecuteRead(pb.ReadRequest(sql="SELECT count(*) FROM t",
                                             consistency=pb.EVENTUAL),
                              timeout=T)
    check(not r.error and r.result.rows[0].typed[0].integer == 21,
          "EVENTUAL read without a quorum: %r" % r)
    log("reads without a quorum: ok")
    for ch in chans.values():
        ch.close()
    for sh, name in ((a, "n1"), (b, "n2"), (c, "n3")):
        if sh.p.poll() is None:
            sh.finish(name)


main(test)
