# budget: 90
# serial: netns
"""A leader whose followers' sidecars it cannot reach, while Raft still
flows (issue 17, "Reads"; raftd/node/confirm.c, raftd/host/fresh.c):
three raftd, each in a network namespace of its own (tests/lib/
rlnetns.py), STRONG reads (the same read point as a linearizable SQL read)
from the test's gRPC client on the leader.

- Before the cut: 20 STRONG reads see the row and the leader's last_index
  does not move: each read point is its term confirmed by a follower,
  nothing written.
- Both followers drop TCP to their gRPC port from the other nodes
  (nftables; the Raft port and the test's client still pass): the next 20
  STRONG reads are all served with the row. The first waits for the
  confirmation's limit (1 s) and falls back to a barrier; the others take
  a barrier at once (a log entry each, so last_index grows by at least
  20), so the 20 take well under 20 s.
- Healed, after the 5 s the leader keeps to barriers: 20 more reads and
  last_index no longer moves.
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))

import rlfaults  # noqa: E402
import rlnetns  # noqa: E402
from rltest import BUILD, SAN, check, check_eq, log, main  # noqa
from rltest import scratch  # noqa: E402

SLOW = 3 if SAN else 1
READS = 20


def test():
    net = rlnetns.Net(3)
    net.enter()
    from rlgrpc import project_stubs
    pb, pbg = project_stubs()
    data = scratch("rlcut-")
    nodes = rlnetns.start_nodes(net, os.path.join(BUILD, "raftd"), data,
                                30 * SLOW)
    sts = rlfaults.Statuses(pb, pbg, nodes)
    stubs, status = sts.stubs, sts.status
    L = sts.leader(range(3))
    w = stubs[L].ExecuteWrite(pb.WriteRequest(
        sql="CREATE TABLE reg(k INTEGER PRIMARY KEY, v TEXT); "
            "INSERT INTO reg VALUES (1, 'x')"), timeout=10 * SLOW)
    check(w.success, "setup write: %r" % w)

    def strong_reads(what):
        """READS STRONG reads on the leader: (seconds, last_index grown)."""
        before = status(L)
        t0 = time.time()
        for k in range(READS):
            r = stubs[L].ExecuteRead(pb.ReadRequest(
                sql="SELECT v FROM reg WHERE k = 1",
                consistency=pb.STRONG), timeout=10 * SLOW)
            check(not r.error and len(r.result.rows) == 1 and
                  r.result.rows[0].values[0] == b"x",
                  "%s: STRONG read %d: %r" % (what, k, r))
        secs = time.time() - t0
        after = status(L)
        check(before is not None and after is not None and
              after.state == "leader", "%s: %s still leads" %
              (what, nodes[L].name))
        grown = after.last_index - before.last_index
        log("%s: %d STRONG reads in %.2fs, last_index +%d" %
            (what, READS, secs, grown))
        return secs, grown

    secs, grown = strong_reads("before the cut")
    check_eq(grown, 0, "read points confirmed by a follower write nothing")

    for i in range(3):
        if i != L:
            net.cut_port(i, rlnetns.NsNode.GRPC_PORT)
    log("the followers take no gRPC from the other nodes")
    secs, grown = strong_reads("sidecars cut")
    check(grown >= READS, "each read point was a barrier (a log entry): "
          "last_index +%d" % grown)
    check(secs < 10 * SLOW, "after the first read's 1 s, barriers at once: "
          "%d reads took %.2fs" % (READS, secs))

    net.heal()
    time.sleep(6)
    secs, grown = strong_reads("healed")
    check_eq(grown, 0, "healed, read points are confirmed again")
    for n in nodes:
        n.stop()


if __name__ == "__main__":
    main(test)
