# budget: 90
# asan: yes
"""Concurrent linearizable reads share their quorum rounds (issue 17,
"Reads"). A follower's node is hosted by this test process (Python's
sqlite3 module with the extension loaded, as the README shows), with 8
connections at raft_consistency = linearizable, each in its own thread.

- Five times: the leader's shell commits a row, then the 8 threads read
  max(id) 25 times each at once: every read sees the row (it was
  acknowledged before the reads began).
- PRAGMA raft_status counts the read points (one per read transaction:
  at least 1,000; SQLite may begin one twice, after a schema change) and
  the ReadIndex rounds this follower asked of the leader for them: at
  most half as many as the reads (readers waiting together share the
  next round), and at least one.
- A gRPC STRONG read on that node takes the same path: read_points grows
  (at least one more).
- Client processes: 8 stock shells on the same follower's file (this
  process hosts its node, so they ask it for their read points at its
  local door, raftd/host/door.c), linearizable, three times: the leader
  commits a row, then the 8 read max(id) 25 times each at once: every
  read sees the row; every read is a door request and a read point
  (local_calls, read_points: at least 600 each), and the door's rounds
  take them together (read_rounds: at most half as many; 6-7 reads a
  round measured, 3.8-5 with the machine loaded by two busy loops).

Under ASan (RL_SAN=1) the test process loads the ASan build, so it
re-executes itself with libasan preloaded and LeakSanitizer off for
itself only (tests/lib/rltest.py san_host_process): the Python
interpreter keeps memory at exit by design. The shells of the other nodes
keep the full check.
"""
import json
import os
import sqlite3
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))
from rltest import EXT, Shell, check, check_eq, fail, log, main  # noqa
from rltest import san_host_process  # noqa: E402
from rlcluster import Cluster  # noqa: E402

THREADS = 8
READS = 25
ROWS = 5
SHELL_ROWS = 3


def status(c):
    return json.loads(c.execute("PRAGMA raft_status").fetchone()[0])


def test():
    c = Cluster(3)
    lead = c.leader()
    f = next(n for n in c.nodes if n is not lead)
    lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY);")
    lead.sql("INSERT INTO t VALUES (1);")
    c.wait_all("SELECT count(*) FROM t;", "1")
    # 1: an earlier statement failed (a poll before the table arrived).
    rc = f.exit()
    check(rc in (0, 1), "%s's shell exit: %s" % (f.name, rc))

    # This process hosts f's node from its first connection on.
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(EXT)
    conns = [sqlite3.connect(f.db, isolation_level=None, timeout=10,
                             check_same_thread=False)
             for _ in range(THREADS)]
    try:
        deadline = time.time() + 30
        while True:
            st = status(conns[0])
            if st["state"] == "follower" and st["leader"] == lead.name:
                break
            if time.time() > deadline:
                fail("this process's node did not follow %s: %r" %
                     (lead.name, st))
            time.sleep(0.05)
        for cn in conns:
            check_eq(cn.execute("PRAGMA raft_consistency = linearizable")
                     .fetchone()[0], "linearizable", "the level set")
        before = status(conns[0])
        stale = []

        def reader(cn, want):
            for _ in range(READS):
                got = cn.execute("SELECT max(id) FROM t").fetchone()[0]
                if got < want:
                    stale.append((want, got))

        t0 = time.time()
        for k in range(2, 2 + ROWS):
            lead.sql("INSERT INTO t VALUES (%d);" % k)
            ths = [threading.Thread(target=reader, args=(cn, k))
                   for cn in conns]
            for th in ths:
                th.start()
            for th in ths:
                th.join(120)
        secs = time.time() - t0
        check(not stale, "reads began after an acknowledged write and "
              "missed it (want, got): %r" % stale[:10])
        after = status(conns[0])
        points = after["read_points"] - before["read_points"]
        rounds = after["read_rounds"] - before["read_rounds"]
        reads = THREADS * READS * ROWS
        log("%d linearizable reads in %d threads (%.1fs): %d read points, "
            "%d rounds asked of the leader (%.1f reads per round)" %
            (reads, THREADS, secs, points, rounds,
             points / float(max(rounds, 1))))
        check(points >= reads, "a read point for every read: %d for %d "
              "reads" % (points, reads))
        check(1 <= rounds <= reads // 2,
              "concurrent reads share rounds: %d rounds for %d reads" %
              (rounds, reads))

        # A gRPC STRONG read on this node takes the same read point.
        import grpc
        from rlgrpc import project_stubs
        pb, pbg = project_stubs()
        ch = grpc.insecure_channel(f.grpc_addr)
        stub = pbg.DistributedSqliteStub(ch)
        r = stub.ExecuteRead(pb.ReadRequest(sql="SELECT max(id) FROM t",
                                            consistency=pb.STRONG),
                             timeout=20)
        check(not r.error, "STRONG read: %r" % r)
        check_eq(r.result.rows[0].typed[0].integer, 1 + ROWS,
                 "the STRONG read sees the last row")
        ch.close()
        more = status(conns[0])["read_points"] - after["read_points"]
        check(more >= 1, "a STRONG read takes a read point: %d" % more)
        log("a gRPC STRONG read on the same node: one read point more")

        # Client processes: 8 shells on f's file read through its door.
        shells = [Shell(f.db, env=c.env) for _ in range(THREADS)]
        for sh in shells:
            sh.sql_ok("PRAGMA raft_consistency = linearizable;")
        before = status(conns[0])
        script = "SELECT max(id) FROM t;\n" * READS
        outs = {}

        def shell_reader(i):
            outs[i] = shells[i].sql(script, 120)

        t0 = time.time()
        for k in range(2 + ROWS, 2 + ROWS + SHELL_ROWS):
            lead.sql("INSERT INTO t VALUES (%d);" % k)
            ths = [threading.Thread(target=shell_reader, args=(i,))
                   for i in range(THREADS)]
            for th in ths:
                th.start()
            for th in ths:
                th.join(150)
            for i in range(THREADS):
                got = outs.get(i, "").split()
                check(got == [str(k)] * READS,
                      "client process %d read max(id) %d times after the "
                      "row %d was acknowledged: %r" %
                      (i, READS, k, outs.get(i, "")[-300:]))
        secs = time.time() - t0
        after = status(conns[0])
        points = after["read_points"] - before["read_points"]
        rounds = after["read_rounds"] - before["read_rounds"]
        calls = after["local_calls"] - before["local_calls"]
        reads = THREADS * READS * SHELL_ROWS
        log("%d linearizable reads in %d client processes (%.1fs): %d door "
            "requests, %d read points, %d rounds (%.1f reads per round)" %
            (reads, THREADS, secs, calls, points, rounds,
             points / float(max(rounds, 1))))
        check(calls >= reads and points >= reads,
              "every read a door request and a read point: %d requests, "
              "%d points for %d reads" % (calls, points, reads))
        check(1 <= rounds <= reads // 2,
              "the door's rounds take the client processes' reads "
              "together: %d rounds for %d reads" % (rounds, reads))
        for sh in shells:
            sh.finish("client shell exit", 0)
    finally:
        for cn in conns:
            cn.close()
        boot.close()
    c.close(check_rc=False)


if __name__ == "__main__":
    san_host_process()
    main(test)
