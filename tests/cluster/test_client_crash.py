# budget: 90
"""A client process that dies between its commit's answer and its own
frames (issue 17, "Writes from anywhere"). A client process writes through
its host and writes the entry's frames itself; the host's applier waits
for it to (raftd/host/applier.c client_wrote) rather than take the lock
at once. When the client dies in between, the entry took effect in Raft
and must still reach every file, promptly: the dead client's lock is gone,
so the applier stops waiting and writes it.

For each point, on a 3-node cluster of stock shells: a second shell on
the leader's file (the fault build, RAFTLITE_FAULT=<point>:<N>) inserts
rows one by one until it dies by SIGABRT at the point. Then, within 5 s,
the row it was committing is on every node (it took effect: the point
comes after the host's answer), each node's count of rows is the same, and
the files converge byte-identical; a new client process then writes again.

- writer-intent-before: answered, nothing of its frames written;
- writer-settle-before: its frames written, its record not settled.
"""
import os
import time

from rltest import ROOT, Shell, check, check_eq, log, main
from rlcluster import Cluster

FAULT_EXT = os.path.join(ROOT, "build", "fault", "raftlite")
POINTS = (("writer-intent-before", 7), ("writer-settle-before", 5))


def test():
    c = Cluster(3)
    lead = c.leader()
    lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT);")
    c.wait_all("SELECT count(*) FROM sqlite_schema;", "1")
    base = 0
    for point, n in POINTS:
        env = dict(c.env, RAFTLITE_FAULT="%s:%d" % (point, n))
        sh = Shell(lead.db, env=env, ext_path=FAULT_EXT)
        # It dies on the way: feed it the statements, then wait for it.
        sh.p.stdin.write("".join("INSERT INTO t VALUES (%d, '%s');\n" %
                                 (base + i, point)
                                 for i in range(1, n + 5)))
        sh.p.stdin.flush()
        rc = sh.p.wait(timeout=60)
        text = sh.rest(timeout=2)
        check(rc == -6 or rc == 134, "the client died by SIGABRT at %s "
              "(exit %s): %s" % (point, rc, text[-1500:]))
        check(point in text, "it reported the point %s: %s" %
              (point, text[-1500:]))
        t0 = time.time()
        want = str(base + n)
        for node in c.nodes:
            c.wait_val(node, "SELECT max(id) FROM t;", want, timeout=5)
        log("%s: the client died after its commit %d was answered; every "
            "node has the row %.2fs later" % (point, base + n,
                                             time.time() - t0))
        c.wait_all("SELECT count(*) FROM t;", str(base + n))
        c.wait_converged()
        again = Shell(lead.db, env=c.env)
        out = again.sql("INSERT INTO t VALUES (%d, 'after');\n"
                        "SELECT count(*) FROM t;" % (base + n + 1))
        check_eq(out.strip().splitlines()[-1], str(base + n + 1),
                 "a new client process writes after the crash")
        again.finish("client after %s" % point, 0)
        base += n + 1
        c.wait_all("SELECT count(*) FROM t;", str(base))
    c.close()


if __name__ == "__main__":
    main(test)
