# budget: 300
# budget-long: 2400
"""tests/cluster/test_crash_matrix.py -- issue #6: a node killed at any
moment loses no acknowledged write and never shows an older state than it
showed.

One 3-node cluster of stock shells loading the fault build
(build/fault/raftlite, -DRL_FAULTS), opened with a small snapshot policy
(`raft_snapshot_threshold=64&raft_snapshot_trailing=16`) so snapshots and
images happen. For each fault point and role (the leader, or a follower),
the victim is restarted with RAFTLITE_FAULT=<point>:<N> (N random; the
leader round then transfers leadership to it) while a load (tests/lib/
rlcrash.py) writes on whichever node leads and reads max(id) from every
node, recording each answer and each acknowledged write; the victim's
shell also checkpoints (TRUNCATE) twice a second, so checkpoints and WAL
restarts happen. The round passes only if the victim died by SIGABRT and
reported that very point (a point never reached fails the test), and after
it restarts (a new shell on the same file: its node restarts with its
identity): every acknowledged write is on every node, no node ever answered
a smaller max(id) than it answered before (across the restart too),
integrity_check is ok and all nodes converge to the same .sha3sum and
byte-identical files after a checkpoint (Cluster.wait_converged).

Image points need a follower that must fetch an image: it is killed, the
others write past two snapshots, and it restarts armed. make test runs
each round once (17 rounds, the crash-between-intent-and-settle ones
first); RL_LONG=1 runs every point in every role it can reach 6 times with
other N.
"""
import os
import random

from rltest import *
from rlcluster import *
from rlcrash import (make_table, Answers, Load, check_aborted, check_acked,
                     drain, start_node)

FAULT_EXT = os.path.join(ROOT, "build", "fault", "raftlite")
URI = "raft_snapshot_threshold=64&raft_snapshot_trailing=16"

# (point, role, N range): the roles in which a point is reached in this
# load. Writer points run only where SQLite's writer commits (the
# leader's shell); the database-apply points where the applier writes
# entries of another origin (followers); image points on a follower that
# is behind a snapshot.
MATRIX = [
    ("raft-apply", "leader", (150, 260)),
    ("wal-restart", "leader", (1, 3)),
    ("checkpoint-write", "leader", (1, 20)),
    ("snapshot-sync", "leader", (2, 3)),
    ("raft-apply", "follower", (150, 260)),
    ("apply-before-frames", "follower", (5, 60)),
    ("apply-settle-after", "follower", (5, 60)),
    ("checkpoint-write", "follower", (1, 20)),
    ("wal-restart", "follower", (1, 3)),
    ("snapshot-sync", "follower", (1, 2)),
    ("image-fetch", "image", (1, 1)),
    ("image-install", "image", (1, 1)),
]
# A crash between an applied-record intent and its settle (writer or
# applier): the restarted node's WAL recovery must get the write lock (it
# once could not, and the database stayed locked), and the intent must be
# resolved from the recovered WAL.
INTENT_WINDOW = [
    ("writer-intent-after", "leader", (5, 60)),
    ("writer-settle-before", "leader", (5, 60)),
    ("apply-intent-after", "follower", (5, 60)),
    ("apply-after-frames", "follower", (5, 60)),
    ("apply-after-publish", "follower", (5, 60)),
]
LONG_ONLY = [
    ("writer-intent-before", "leader", (5, 60)),
    ("writer-settle-after", "leader", (5, 60)),
    ("apply-intent-before", "follower", (5, 60)),
]


def make_leader(c, node):
    """Transfers leadership to node (retried: it may still catch up).
    False if node died meanwhile (it reached its armed point while it
    caught up: the round then checks that crash, as a follower's)."""
    deadline = time.time() + 60 * SLOW
    while True:
        if node.sh.p.poll() is not None:
            return False
        lead = c.leader()
        if lead is node:
            return True
        ok, out, err = lead.try_sql("SELECT raft_transfer('%s');" % node.name)
        if time.time() > deadline:
            fail("cannot make %s the leader: %s" % (node.name, err or out))
        time.sleep(0.3)


def restart_after(c, victim, ans, acked, point):
    """The victim restarts unarmed; its first answer must not be older than
    its answers before the crash; the cluster must take writes again; then
    every acknowledged write everywhere, integrity, convergence."""
    start_node(victim)
    first = int(victim.val("SELECT coalesce(max(id), 0) FROM t;"))
    ans.add(victim.name, first, "first answer after restart at %s" % point)
    k = max(acked or {0}) + 500
    c.write("INSERT OR IGNORE INTO t(id, v) VALUES (%d, 'after');" % k,
            timeout=60)
    acked.add(k)
    check_acked(c, acked)
    c.wait_converged(timeout=60)
    c.integrity()
    for n in c.live():
        ans.add(n.name, int(n.val("SELECT coalesce(max(id), 0) FROM t;")),
                "after convergence at %s" % point)


def crash_round(c, ans, all_acked, point, role, nrange):
    n_arm = random.randint(*nrange)
    arm = {"RAFTLITE_FAULT": "%s:%d" % (point, n_arm)}
    lead = c.leader()
    t0 = time.time()
    if role == "image":
        victim = random.choice([n for n in c.live() if n is not lead])
        log("== %s on follower %s (needs an image), N=%d" %
            (point, victim.name, n_arm))
        victim.kill9()
        ld = Load(c, ans)
        # Past two snapshots of the leader and their trailing entries, so
        # the victim's next entry is no longer in the log.
        deadline = time.time() + 60 * SLOW
        while len(ld.acked) < 220 and time.time() < deadline:
            time.sleep(0.1)
        start_node(victim, arm, armed=True)
        rc = ld.wait_death(victim, 40)
        acked = ld.stop()
        printed = drain(victim)
    else:
        victim = lead if role == "leader" else \
            random.choice([n for n in c.live() if n is not lead])
        log("== %s on %s %s, N=%d" % (point, role, victim.name, n_arm))
        check_eq(victim.exit(), 0, "%s's clean exit before arming" %
                 victim.name)
        start_node(victim, arm, armed=True)
        if role == "leader" and not make_leader(c, victim):
            log("%s died before it led (its point came first while it "
                "caught up)" % victim.name)
        ld = Load(c, ans, checkpoint_on=victim)
        rc = ld.wait_death(victim, 45)
        time.sleep(0.5)  # the others go on without it for a moment
        acked = ld.stop()
        printed = drain(victim)
    check_aborted(victim, rc, point, printed)
    log("%s died at %s after %.1fs; %d writes acknowledged" %
        (victim.name, point, time.time() - t0, len(acked)))
    # A victim may die at its very first write (wal-restart:1 on a new
    # leader): then the round acknowledged nothing, which is fine.
    all_acked |= acked
    restart_after(c, victim, ans, all_acked, point)
    log("round %s/%s passed in %.1fs" % (point, role, time.time() - t0))


def test():
    random.seed(os.getpid())
    check(os.path.exists(FAULT_EXT + ".so"),
          "%s.so is not built (make fault)" % FAULT_EXT)
    c = Cluster(3, ext=FAULT_EXT, uri=URI)
    make_table(c)
    ans = Answers()
    acked = set()  # every write acknowledged in any round
    rounds = MATRIX if not LONG else (MATRIX + LONG_ONLY) * 6
    rounds = INTENT_WINDOW + rounds
    only = os.environ.get("RL_CRASH_ONLY")  # "point/role": one round
    for point, role, nrange in rounds:
        if only and only != "%s/%s" % (point, role):
            continue
        crash_round(c, ans, acked, point, role, nrange)
    check(len(acked) > 100 * len(rounds) // 4, "only %d writes were "
          "acknowledged in %d rounds: the load did not run" %
          (len(acked), len(rounds)))
    log("%d answers recorded, none older than an earlier one; %d "
        "acknowledged writes on every node" % (ans.count, len(acked)))
    c.close()


main(test)
