#!/usr/bin/python3
# budget: 120
"""tests/poc/test_poc_failover.py -- raftd nodes survive what the PoC's
users will do to them.

Three raftd started with the PoC's flags (node1 -bootstrap, node2 and node3
-join node1, the two joiners at the same moment). kill -9 of the leader:
writes through both survivors' gRPC -- the new leader's and the
follower's, which forwards -- succeed again within 10 s; the killed node
restarted with exactly the same command (-bootstrap included) resumes its
stored node ("resuming node"), rejoins the same cluster as a follower (no
second cluster: every node reports the same members and the same leader)
and converges (same rows, same file contents). Then the whole cluster is
stopped with SIGTERM (exit 0 each) and restarted with the same commands:
it resumes with its data and members and takes writes again. SIGINT stops
everything cleanly at the end.
"""
import os
import signal
import subprocess
import time

from rlpoc import (LONG, SLOW, Api, Raftd, check, check_eq, fail, free_port,
                   log, restart_all, scratch, wait_for)
from rltest import SQLITE3
from rlgrpc import project_stubs


def file_dump(db):
    """The rows of t as a stock sqlite3 (no extension) reads the file."""
    r = subprocess.run([SQLITE3, "-readonly", db,
                        "SELECT group_concat(k || '=' || v, ',') FROM "
                        "(SELECT * FROM t ORDER BY k)"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "stock read of %s: %s" % (db, r.stderr))
    return r.stdout.strip()


def test():
    pb, pbg = project_stubs()
    api = Api(pb, pbg)
    d = scratch("rlpocfail-")
    g = ["127.0.0.1:%d" % free_port() for _ in range(3)]
    r = ["127.0.0.1:%d" % free_port() for _ in range(3)]
    argv = []
    for i in range(3):
        a = ["raftd", "-id", "node%d" % (i + 1), "-grpc", g[i], "-raft", r[i],
             "-data", "./data"]
        argv.append(a + (["-bootstrap"] if i == 0 else ["-join", g[0]]))
    nodes = [Raftd(argv[0], d, "node1").wait_serving()]
    nodes += [Raftd(argv[i], d, "node%d" % (i + 1)) for i in (1, 2)]
    for n in nodes[1:]:
        n.wait_serving()
    check_eq(sorted(api.members(g[0])), ["node1", "node2", "node3"],
             "members after two joins at once")
    log("bootstrap and two simultaneous joins: ok")

    rows = {}

    def write(addr, k, timeout=20):
        w = api.write(addr, "INSERT OR REPLACE INTO t VALUES (%d, 'v%d')"
                      % (k, k), timeout=timeout)
        if w.success:
            rows[k] = "v%d" % k
        return w

    check(api.write(g[0], "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
          .success, "create")
    for k in range(20):
        check(write(g[1 + k % 2], k).success, "write %d" % k)

    # kill -9 the leader; writes through a follower resume within 10 s.
    check_eq(api.status(g[0]).state, "leader", "node1's state")
    nodes[0].kill9()
    t0 = time.time()
    k = 100
    errors = []
    resumed = {}  # gRPC address -> seconds until its first good write
    while len(resumed) < 2:
        for a in g[1:]:
            if a in resumed:
                continue
            k += 1
            try:
                w = write(a, k, timeout=3)
                if w.success:
                    resumed[a] = time.time() - t0
                else:
                    errors.append(w.error)
            except api.grpc.RpcError as e:
                errors.append("%s %s" % (e.code(), e.details()))
        if len(resumed) < 2 and time.time() - t0 > 10 * SLOW:
            fail("writes did not resume through %s within %ds of the "
                 "leader's kill -9; errors: %s" % (
                     [a for a in g[1:] if a not in resumed], 10 * SLOW,
                     errors[-5:]))
        time.sleep(0.1)
    lead = api.status(g[1]).leader_id
    check(lead in ("node2", "node3"), "new leader %r" % lead)
    follower = g[2] if lead == "node2" else g[1]
    log("kill -9 of the leader: %s leads; writes resumed through the "
        "follower's gRPC after %.1fs, the leader's after %.1fs (%d refused "
        "meanwhile)" % (lead, resumed[follower],
                        resumed[g[1] if follower == g[2] else g[2]],
                        len(errors)))
    for k in range(120, 130):
        check(write(g[1 + k % 2], k).success, "write %d after failover" % k)

    # The killed node restarts with the same command, -bootstrap included.
    nodes[0].restart().wait_serving()
    check("resuming node node1" in nodes[0].log(),
          "restart resumes the stored node:\n%s" % nodes[0].log())
    lead = wait_for("node1 to follow the new leader",
                    lambda: (api.status(g[0]).leader_id not in ("", "node1")
                             and api.status(g[0]).leader_id))
    for i in range(3):
        st = api.status(g[i])
        check(st.leader_id == lead, "node%d sees leader %r, not %r" %
              (i + 1, st.leader_id, lead))
        wait_for("node%d to list the three members after the restart" %
                 (i + 1), lambda: sorted(api.members(g[i])) ==
                 ["node1", "node2", "node3"], timeout=15)
    check_eq(api.status(g[0]).state, "follower", "restarted node1's state")
    for k in range(200, 210):
        check(write(g[0], k).success, "write %d through the restarted node"
              % k)
    want = ",".join("%d=%s" % (k, rows[k]) for k in sorted(rows))
    for i in range(3):
        got = ",".join("=".join(x) for x in api.read(
            g[i], "SELECT k, v FROM t ORDER BY k", strong=True))
        check_eq(got, want, "STRONG read of every row on node%d" % (i + 1))
    for i in range(3):
        db = os.path.join(d, "data", "node%d" % (i + 1), "sqlite.db")
        wait_for("node%d's file to hold every row" % (i + 1),
                 lambda: file_dump(db) == want)
    log("restart with -bootstrap again: node1 rejoined as follower of %s "
        "and converged" % lead)

    # Stop the whole cluster; restart it with the same commands.
    api.close()
    restart_all(nodes, signal.SIGTERM)
    lead = wait_for("a leader after the full restart",
                    lambda: api.status(g[1]).leader_id)
    # Until a restarted node replayed its log (after the election) it
    # knows the configuration and node ids as of its last snapshot.
    for i in range(3):
        wait_for("node%d to know the leader" % (i + 1),
                 lambda: api.status(g[i]).leader_id == lead)
        wait_for("node%d to list the three members" % (i + 1),
                 lambda: sorted(api.members(g[i])) == ["node1", "node2",
                                                        "node3"],
                 timeout=15)
    n_rounds = 50 if LONG else 5
    for k in range(300, 300 + n_rounds):
        check(write(g[k % 3], k).success, "write %d after the full restart"
              % k)
    want = ",".join("%d=%s" % (k, rows[k]) for k in sorted(rows))
    for i in range(3):
        got = ",".join("=".join(x) for x in api.read(
            g[i], "SELECT k, v FROM t ORDER BY k", strong=True))
        check_eq(got, want, "every row on node%d after the full restart"
                 % (i + 1))
    log("full restart with the same commands: resumed, %d rows" % len(rows))
    api.close()
    for n in nodes:
        n.stop(signal.SIGINT)
    log("SIGINT: every raftd exited 0")


if __name__ == "__main__":
    from rltest import main
    main(test)
