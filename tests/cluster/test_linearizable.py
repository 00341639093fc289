# budget: 120
# asan: yes
"""Linearizable reads from the shell (issue 17, "Reads"): PRAGMA
raft_consistency = local | linearizable per connection (also the URI
parameter raft_consistency=linearizable).

- The pragma answers the level in force; a bad value is refused naming
  the two levels.
- Read-your-writes across nodes: 40 times, a row written on one node is
  read at once on another node at linearizable: always there.
- A leader cut off from its followers (both SIGSTOPped) refuses
  linearizable reads ("database is locked", raft_last_error() saying
  linearizable and why) while its local reads are served; a follower cut
  off from the others likewise. After SIGCONT they read again.
- A client process (a second shell on a follower's file) opened with
  the URI parameter reads linearizably: 20 writes on the leader, each
  read at once.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from rltest import Shell, check, check_eq, log, main  # noqa: E402
from rlcluster import Cluster  # noqa: E402


def test():
    c = Cluster(3)
    lead = c.leader()
    fols = [n for n in c.nodes if n is not lead]
    lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
    c.wait_all("SELECT count(*) FROM sqlite_schema;", "1")

    check_eq(fols[0].val("PRAGMA raft_consistency;"), "local",
             "the default level")
    check_eq(fols[0].val("PRAGMA raft_consistency = linearizable;"),
             "linearizable", "the pragma answers the level set")
    ok, out, err = fols[0].try_sql("PRAGMA raft_consistency = strong;")
    check(not ok and "local or linearizable" in err,
          "a bad level is refused naming the two: %s" % err)
    for n in c.nodes:
        n.sql("PRAGMA raft_consistency = linearizable;")

    # Read-your-writes across nodes.
    t0 = time.time()
    for i in range(40):
        w = c.nodes[i % 3]
        r = c.nodes[(i + 1) % 3]
        w.sql("INSERT INTO t VALUES (%d, 'w%d');" % (i, i))
        check_eq(r.val("SELECT v FROM t WHERE id = %d;" % i), "w%d" % i,
                 "%s reads %s's write %d at once" % (r.name, w.name, i))
    log("40 writes, each read linearizably at once on the next node "
        "(%.1fs)" % (time.time() - t0))

    # Cut off: the leader (followers stopped), then a follower.
    for victim, others in ((lead, fols), (fols[0], [lead, fols[1]])):
        before = {n.name: n.status() for n in c.nodes}
        for o in others:
            o.stop()
        try:
            victim.sql(".timeout 1500")
            t0 = time.time()
            ok, out, err = victim.try_sql("SELECT count(*) FROM t;")
            if ok:  # what each node said just before the cut
                log("states before the cut: %s" % {
                    k: (v["state"], v["term"], v["leader"])
                    for k, v in before.items()})
            check(not ok and "database is locked" in out,
                  "%s cut off must refuse a linearizable read (answered "
                  "after %.2fs): %s" % (victim.name, time.time() - t0, out))
            check("linearizable" in err, "the reason says so: %s" % err)
            log("%s cut off: %s" % (victim.name, err))
            victim.sql("PRAGMA raft_consistency = local;")
            check_eq(victim.val("SELECT count(*) FROM t;"), "40",
                     "%s serves local reads meanwhile" % victim.name)
            victim.sql("PRAGMA raft_consistency = linearizable;")
        finally:
            for o in others:
                o.cont()
        victim.sql(".timeout 10000")
        c.leader()
        check_eq(victim.val("SELECT count(*) FROM t;", timeout=60), "40",
                 "%s reads linearizably again" % victim.name)

    # The URI parameter, in a client process (a second shell on a
    # follower's file): its read point comes from the leader through its
    # host, and it waits for its file; it reads the leader's write at once.
    sh = Shell("file:%s?raft_consistency=linearizable" % fols[1].db,
               env=c.env, ext_path=c.ext)
    out = sh.sql("PRAGMA raft_consistency;")
    check_eq(out.strip(), "linearizable", "the URI parameter's level")
    for i in range(20):
        c.leader().sql("INSERT INTO t VALUES (%d, 'c%d');" % (100 + i, i))
        out = sh.sql("SELECT v FROM t WHERE id = %d;" % (100 + i))
        check_eq(out.strip(), "c%d" % i,
                 "a client process reads the leader's write %d at once" % i)
    log("a client process read 20 writes linearizably at once")
    sh.close()
    c.close()


if __name__ == "__main__":
    main(test)
