# budget: 180
# asan: yes
# budget-long: 1200
"""Membership: after more than 3,000 transactions (so the log was
compacted behind a snapshot and a joiner needs an image) a 4th node joins
and holds everything; a follower is removed; leadership is transferred;
the leader removes itself and the rest elect a new leader and keep taking
writes. raft_nodes, raft_leader() and PRAGMA raft_status say so at every
step, and the members converge to the same bytes. RL_LONG=1: 20,000
transactions."""
import functools

from rltest import *
from rlcluster import *


def ids(node):
    return [x["id"] for x in node.nodes()]


# Membership changes wait for elections and catch-up: 30 s (x SLOW).
wait_for = functools.partial(wait_for, timeout=30)


def test():
    c = Cluster(3)
    lead = c.leader()
    lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);")
    # Many small transactions from one shell: 500 autocommit INSERTs per
    # call, each its own Raft entry.
    ntx = 20000 if LONG else 3100
    t0 = time.time()
    for start in range(0, ntx, 500):
        lead.sql("\n".join(
            "INSERT INTO t(v, b) VALUES ('row %d', randomblob(%d));" %
            (i, 16 + i % 200) for i in range(start, min(ntx, start + 500))),
            timeout=300)
    st = lead.status()
    log("%d transactions in %.1fs; leader status %s" %
        (ntx, time.time() - t0, st))
    check(st["applied_index"] > ntx, "applied index %d after %d transactions"
          % (st["applied_index"], ntx))
    check(st["snapshot_index"] > 0, "the leader took no snapshot after %d "
          "transactions: %s" % (ntx, st))
    c.wait_converged()

    # --- a 4th node joins through a follower (forwarded to the leader).
    via = next(n for n in c.live() if n is not lead)
    t0 = time.time()
    n4 = c.new_node().join(via, timeout=120)
    st4 = n4.status()
    log("node4 joined in %.1fs through %s: %s" % (time.time() - t0, via.name,
                                                  st4))
    check(st4["snapshot_index"] > 0, "node4 installed no image (its "
          "snapshot_index is %s): it was not sent a snapshot" %
          st4["snapshot_index"])
    check_eq(n4.val("SELECT count(*) FROM t;"), str(ntx), "node4's rows")
    check_eq(st4["leader"], lead.name, "node4 knows the leader")
    check_eq(ids(lead), ["node1", "node2", "node3", "node4"],
             "raft_nodes on the leader after the join")
    wait_for("node4 becomes a voter", lambda: [
        x for x in lead.nodes() if x["id"] == "node4" and
        x["role"] == "voter"])
    lead.sql("INSERT INTO t(v) VALUES ('after join');")
    c.wait_all("SELECT count(*) FROM t WHERE v = 'after join';", "1")
    c.wait_converged()

    # --- remove a follower (not the one the 4th joined through).
    gone = next(n for n in c.live() if n is not lead and n is not via
                and n is not n4)
    check_eq(lead.val("SELECT raft_remove('%s');" % gone.name), gone.name,
             "raft_remove's result")
    gone.member = False
    wait_for("%s leaves raft_nodes" % gone.name,
             lambda: gone.name not in ids(lead))
    for n in c.live():
        wait_for("%s: raft_nodes without %s" % (n.name, gone.name),
                 lambda: gone.name not in ids(n))
    check_eq(gone.exit(), gone.sh.expected_rc(), "removed node's shell exit")
    lead.sql("INSERT INTO t(v) VALUES ('after remove');")
    c.wait_all("SELECT count(*) FROM t WHERE v = 'after remove';", "1")
    c.wait_converged()

    # --- transfer leadership to a named voter.
    to = next(n for n in c.live() if n is not lead)
    got = lead.val("SELECT raft_transfer('%s');" % to.name)
    check_eq(got, to.name, "raft_transfer's result")
    new = c.leader()
    check_eq(new.name, to.name, "leader after the transfer")
    for n in c.live():
        wait_for("%s: raft_leader() after the transfer" % n.name,
                 lambda: n.val("SELECT raft_leader();") == to.name)
    check_eq(lead.status()["state"], "follower", "old leader's state")
    # The old leader, now a follower, writes through the new one.
    lead.sql("INSERT INTO t(v) VALUES ('on follower');")
    c.wait_all("SELECT count(*) FROM t WHERE v = 'on follower';", "1")
    new.sql("INSERT INTO t(v) VALUES ('after transfer');")
    c.wait_all("SELECT count(*) FROM t WHERE v = 'after transfer';", "1")
    c.wait_converged()

    # --- the leader removes itself.
    got = new.val("SELECT raft_remove('%s');" % new.name, timeout=60)
    check_eq(got, new.name, "raft_remove(self)'s result")
    new.member = False
    rest = c.live()
    check_eq(len(rest), 2, "two members left")
    after = c.leader(among=rest)
    check(after is not new, "the removed leader still leads")
    wait_for("raft_nodes without %s" % new.name,
             lambda: new.name not in ids(after))
    check_eq(sorted(ids(after)), sorted(n.name for n in rest),
             "members after the leader removed itself")
    after.sql("INSERT INTO t(v) VALUES ('after leader removal');")
    c.wait_all("SELECT count(*) FROM t WHERE v = 'after leader removal';",
               "1", nodes=rest)
    check_eq(after.val("SELECT count(*) FROM t;"), str(ntx + 5),
             "rows after all membership changes")
    c.wait_converged(rest)
    c.integrity(rest)
    check_eq(new.exit(), new.sh.expected_rc(), "removed leader's shell exit")
    c.close()


main(test)
