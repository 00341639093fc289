# budget: 90
# serial: netns
"""Stale reads under a real network partition (issue 17): three raftd,
each in a network namespace of its own (tests/lib/rlnetns.py), and a
client process (the stock sqlite3 shell with the extension, run in the
leader's namespace) on the leader's file, at raft_consistency =
linearizable. The leader is cut off from both followers (nftables drops
their packets both ways); a new leader is elected on the other side and
takes a write. Meanwhile, on the old leader's side:

- a linearizable read is refused ("database is locked") with
  raft_last_error() naming the linearizable read, never answered with the
  old value;
- a local read (raft_consistency = local) is served, with the old value
  (what the README documents as possibly stale);
- a write is not acknowledged.

After the partition heals the same client reads the new value
linearizably and the refused write is nowhere.
"""
import os
import queue
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))

import rlfaults  # noqa: E402
import rlnetns  # noqa: E402
import rltest  # noqa: E402
from rltest import (BUILD, EXT, SAN, SQLITE3, check, check_eq,  # noqa
                    is_error, log, main, san_env, scratch, spawn)

SLOW = 3 if SAN else 1


class NsShell(rltest.Shell):
    """rltest.Shell run inside network namespace ns (ip netns exec)."""

    def __init__(self, ns, db):
        e = {}
        san_env(e)
        self.p = spawn(["ip", "netns", "exec", ns, SQLITE3, "-batch"],
                       env=e, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.q = queue.Queue()
        self.n = 0
        threading.Thread(target=self._reader, daemon=True).start()
        self.sql_ok(".load %s" % EXT)
        self.open_output = self.sql_ok(".open '%s'" % db)


def test():
    net = rlnetns.Net(3)
    net.enter()
    from rlgrpc import project_stubs
    pb, pbg = project_stubs()
    data = scratch("rlstale-")
    nodes = rlnetns.start_nodes(net, os.path.join(BUILD, "raftd"), data,
                                30 * SLOW)
    sts = rlfaults.Statuses(pb, pbg, nodes)
    stubs, leader = sts.stubs, sts.leader

    L = leader(range(3))
    w = stubs[L].ExecuteWrite(pb.WriteRequest(
        sql="CREATE TABLE reg(k INTEGER PRIMARY KEY, v TEXT); "
            "INSERT INTO reg VALUES (1, 'before')"), timeout=10 * SLOW)
    check(w.success, "setup write: %r" % w)
    sh = NsShell(net.nodes[L], nodes[L].db)
    sh.sql_ok("PRAGMA raft_consistency = linearizable;\n.timeout 3000")
    check_eq(sh.sql_ok("SELECT v FROM reg WHERE k = 1;").strip(), "before",
             "a linearizable read on the leader before the partition")

    net.isolate(L)
    log("%s (leader) cut off from the others" % nodes[L].name)
    rest = [i for i in range(3) if i != L]
    N = leader(rest)
    w = stubs[N].ExecuteWrite(pb.WriteRequest(
        sql="UPDATE reg SET v = 'after' WHERE k = 1"), timeout=10 * SLOW)
    check(w.success, "write on the new leader %s: %r" % (nodes[N].name, w))
    log("%s leads the majority side and took a write" % nodes[N].name)

    out = sh.sql("SELECT v FROM reg WHERE k = 1;", 60 * SLOW)
    why = sh.sql_ok("SELECT raft_last_error();").strip()
    check(is_error(out) and "database is locked" in out and
          "after" not in out and "before" not in out,
          "the cut-off old leader must refuse a linearizable read: %r" % out)
    check("linearizable" in why, "raft_last_error() says why: %r" % why)
    log("linearizable read on the old leader refused: %s" % why)
    sh.sql_ok("PRAGMA raft_consistency = local;")
    check_eq(sh.sql_ok("SELECT v FROM reg WHERE k = 1;").strip(), "before",
             "a local read on the old leader is served (possibly stale)")
    out = sh.sql("UPDATE reg SET v = 'stale write' WHERE k = 1;", 60 * SLOW)
    check(is_error(out), "a write on the cut-off old leader must not be "
          "acknowledged: %r" % out)
    log("write on the old leader not acknowledged: %s" %
        out.strip().splitlines()[-1])

    net.heal(L)
    sh.sql_ok("PRAGMA raft_consistency = linearizable;\n.timeout 10000")
    deadline = time.time() + 30 * SLOW
    while True:
        out = sh.sql("SELECT v FROM reg WHERE k = 1;", 60 * SLOW)
        if not is_error(out):
            break
        check(time.time() < deadline, "no linearizable read after healing: "
              "%r" % out)
        time.sleep(0.2)
    check(out.strip() in ("after", "stale write"),
          "after healing the client reads the newest value: %r" % out)
    check_eq(out.strip(), "after", "the unacknowledged write took no "
             "effect (it was refused, not unknown)")
    log("healed: %s reads 'after' linearizably" % nodes[L].name)
    sh.close()
    for n in nodes:
        n.stop()


if __name__ == "__main__":
    main(test)
