# budget: 90
# asan: yes
"""A leader confirms a linearizable read with one round of questions to
its voters, not with a log entry (issue 17, "Reads": a linearizable read
costs about one quorum round over a local read; raftd/node/confirm.c).

- 3 nodes, the leader's shell at raft_consistency = linearizable: 300
  reads, each its own read transaction, each sees the row committed
  before them. raft_status: read_points and read_rounds grow by at least
  300, and last_index does not move: no barrier (a log entry written and
  synced on a quorum) was appended for any of them.
- One follower SIGSTOPped: the leader still serves linearizable reads
  (itself and the other follower are a majority), still without a log
  entry; a row committed meanwhile is seen at once.
- The follower's shell at linearizable reads the leader's new row at once,
  and the log still holds no entry for reads. Its ReadIndex carries its
  term, and with the leader's that is a majority of three: the leader's
  read_points grow with each read while its read_rounds do not (it asked
  no one), and the follower's read_rounds grow by one per read.
- 40 times a row written on the leader is read at once on a follower at
  linearizable: seen every time, the 40 pairs in under 3 s (the leader
  pushes its commit index when the read point is beyond what the
  follower knows; waiting for the heartbeat took 200 ms a pair).
- 5 nodes: 100 linearizable reads on the leader append nothing (it needs
  two followers' terms); with two followers SIGSTOPped, 50 more on the
  leader and 20 on a live follower are served, still without a log
  entry.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from rltest import SLOW, check, check_eq, log, main  # noqa: E402
from rlcluster import Cluster  # noqa: E402

READS = 300
PAIRS = 40


def reads(node, n, query):
    """n linearizable read transactions in one shell call: their outputs."""
    out = node.val("PRAGMA raft_consistency = linearizable;\n" +
                   (query + "\n") * n)
    lines = out.splitlines()
    check_eq(lines[0], "linearizable", "%s: the level set" % node.name)
    return lines[1:]


def reads_write_nothing(lead, node, n, want, what):
    """n linearizable reads of count(*) on node: each must say want, and
    the leader's log must not grow. The leader's status before and after."""
    before = lead.status()
    got = reads(node, n, "SELECT count(*) FROM t;")
    after = lead.status()
    check_eq(got, [want] * n, "%s: linearizable reads" % what)
    check_eq(after["last_index"], before["last_index"],
             "%s: no log entry appended for %d reads" % (what, n))
    return before, after


def with_stopped(stopped, fn):
    """fn() while the shells of stopped are SIGSTOPped."""
    for n in stopped:
        n.stop()
    try:
        fn()
    finally:
        for n in stopped:
            n.cont()


def test():
    c = Cluster(3)
    lead = c.leader()
    fols = [n for n in c.nodes if n is not lead]
    lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY);")
    lead.sql("INSERT INTO t VALUES (1);")
    c.wait_all("SELECT count(*) FROM t;", "1")

    before, after = reads_write_nothing(lead, lead, READS, "1", "leader")
    log("leader: read_points +%d, read_rounds +%d, last_index %d -> %d" %
        (after["read_points"] - before["read_points"],
         after["read_rounds"] - before["read_rounds"],
         before["last_index"], after["last_index"]))
    check(after["read_points"] - before["read_points"] >= READS,
          "a read point per read: %s -> %s" %
          (before["read_points"], after["read_points"]))
    check(after["read_rounds"] - before["read_rounds"] >= READS,
          "a round per read taken one at a time: %s -> %s" %
          (before["read_rounds"], after["read_rounds"]))

    # One follower stopped: the other still makes a majority.
    def one_stopped():
        lead.sql("INSERT INTO t VALUES (2);")
        reads_write_nothing(lead, lead, 50, "2", "one follower stopped")
    with_stopped(fols[:1], one_stopped)

    lead.sql("INSERT INTO t VALUES (3);")
    c.wait_all("SELECT count(*) FROM t;", "3")
    fbefore = fols[1].status()
    before, after = reads_write_nothing(lead, fols[1], 20, "3", "follower")
    fafter = fols[1].status()
    # The follower's word (its term, sent with its ReadIndex) and the
    # leader's make a majority of three: the leader answers without a
    # round of its own.
    check(fafter["read_rounds"] - fbefore["read_rounds"] >= 20,
          "the follower asked the leader once per read: %s -> %s" %
          (fbefore["read_rounds"], fafter["read_rounds"]))
    check(after["read_points"] - before["read_points"] >= 20,
          "the leader took a read point per read: %s -> %s" %
          (before["read_points"], after["read_points"]))
    check_eq(after["read_rounds"], before["read_rounds"],
             "the leader asked no one for the follower's reads")

    # A read right after a write on another node: the follower hears that
    # the write committed from the leader's next AppendEntries, which the
    # leader sends at once when the read point is beyond what the follower
    # knows (otherwise at the next heartbeat: 200 ms a pair, measured).
    fols[1].sh.sql("PRAGMA raft_consistency = linearizable;", 30)
    t0 = time.time()
    for i in range(PAIRS):
        lead.sql("INSERT INTO t VALUES (%d);" % (100 + i))
        check_eq(fols[1].val("SELECT count(*) FROM t;"), str(4 + i),
                 "a linearizable read on a follower right after write %d "
                 "on the leader" % i)
    secs = time.time() - t0
    log("%d writes on the leader, each read at once on a follower: %.2fs" %
        (PAIRS, secs))
    check(secs < PAIRS * 0.075 * SLOW,
          "the follower applied each read point within a round trip, not a "
          "heartbeat: %d pairs took %.2fs" % (PAIRS, secs))
    c.wait_converged()
    c.close()

    # Five voters: the leader needs two of four followers' terms, asks two
    # first and the others after the hedge or a "no"; with two followers
    # stopped the other two still make the majority.
    c = Cluster(5)
    lead = c.leader()
    fols = [n for n in c.nodes if n is not lead]
    lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY);")
    lead.sql("INSERT INTO t VALUES (1);")
    c.wait_all("SELECT count(*) FROM t;", "1")
    reads_write_nothing(lead, lead, 100, "1", "five voters")

    def two_stopped():
        lead.sql("INSERT INTO t VALUES (2);")
        reads_write_nothing(lead, lead, 50, "2", "five voters, two stopped")
        check_eq(reads(fols[2], 20, "SELECT count(*) FROM t;"), ["2"] * 20,
                 "five voters, two stopped: a follower's reads")
    with_stopped(fols[:2], two_stopped)
    c.wait_converged()
    c.close()


if __name__ == "__main__":
    main(test)
