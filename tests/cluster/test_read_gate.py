# budget: 150
# asan: yes
"""Issue #6: a node never serves a file it cannot vouch for (the read
gate, raftd/host/gate.c rl_host_gate_main and vfs.c gate_closed).

Case "restart without a majority": a follower is killed (-9) after writes
it applied and answered; both other nodes are stopped (SIGSTOP); the
follower restarts. Its file may be older than what it answered (after an
OS crash the WAL's unsynced tail is gone; here the file is intact, but the
node cannot know that) and nobody can tell it how far the cluster went:
its reads wait (busy handler) and fail after the connection's busy
timeout with "database is locked", raft_last_error() naming the cause (it
restarted and catches up; no leader reachable). A stock sqlite3 without
the extension is not gated (documented). After SIGCONT of the others the
same shell's read succeeds and shows every row.

Case "rebuild": a follower's applied record is damaged while it is down,
the others are stopped, the follower restarts: it says the record does
not fit, starts a rebuild from a peer's image, and until it has one its
reads wait and fail naming the rebuild; after SIGCONT it rebuilds, reads
show every row, and the nodes converge.

Case "ordinary restart": with the cluster up, a restarted follower's first
read answers at once (within its busy timeout) with every row: the gate
costs a restart nothing visible while a majority is up.
"""
import os

from rltest import *
from rlcluster import *

ROWS = 200


def gated_read(node, what):
    """A read that must be refused by the gate; returns the error text."""
    t0 = time.time()
    ok, out, err = node.try_sql(".timeout 1500\nSELECT count(*) FROM t;")
    took = time.time() - t0
    check(not ok, "%s: a read was served %s: %r" % (node.name, what, out))
    check("database is locked" in err,
          "%s: the gated read failed otherwise: %s" % (node.name, err))
    check("does not serve reads yet" in err,
          "%s: raft_last_error() does not say why reads wait: %s" %
          (node.name, err))
    check(took >= 1.0, "%s: the gated read failed after %.2f s, before its "
          "busy timeout (1.5 s)" % (node.name, took))
    log("%s: read refused after %.1f s %s: %s" % (node.name, took, what,
                                                  err[-300:]))
    return err


def test():
    c = Cluster(3)
    lead = c.leader()
    lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
    for i in range(0, ROWS, 50):
        lead.sql("BEGIN;" + "".join(
            "INSERT INTO t VALUES (%d, 'r%d');" % (k, k)
            for k in range(i, i + 50)) + "COMMIT;")
    c.wait_all("SELECT count(*) FROM t;", str(ROWS))

    # -- ordinary restart: the gate is invisible while a majority is up.
    f = [n for n in c.nodes if n is not lead][0]
    f.kill9()
    lead.sql("INSERT INTO t VALUES (%d, 'while down');" % ROWS)
    f.restart()
    t0 = time.time()
    got = f.val("SELECT count(*) FROM t;")
    log("%s: first read after an ordinary restart: %s rows in %.2f s" %
        (f.name, got, time.time() - t0))
    check_eq(got, str(ROWS + 1), "%s: first read after its restart" % f.name)

    # -- restart without a majority: reads wait, say why, then resume.
    f.kill9()
    others = [n for n in c.nodes if n is not f]
    for n in others:
        n.stop()
    f.restart()
    err = gated_read(f, "while no majority is up")
    check("restarted and catches up" in err and "no leader reachable" in err,
          "%s: the reason does not name the restart and the missing "
          "majority: %s" % (f.name, err))
    rc, out = stock_val(f.db, "SELECT count(*) FROM t;")
    check(rc == 0 and out == str(ROWS + 1),
          "a stock reader (no extension, not gated) of %s: rc %d %r" %
          (f.db, rc, out))
    for n in others:
        n.cont()
    # The others may first hold an election (f campaigned meanwhile) and
    # f then catches up: more than the 1.5 s busy timeout set above on a
    # loaded machine. The read waits for it.
    f.sql(".timeout %d" % (20000 * SLOW))
    got = f.val("SELECT count(*) FROM t;")
    check_eq(got, str(ROWS + 1), "%s: read once the others are back" %
             f.name)

    # -- rebuild: a damaged record; reads wait until a peer's image is in.
    lead = c.leader()
    lead.sql("INSERT INTO t VALUES (%d, 'before the rebuild');" % (ROWS + 1))
    c.wait_all("SELECT count(*) FROM t;", str(ROWS + 2))
    f = [n for n in c.nodes if n is not lead][0]
    f.kill9()
    rec = f.db + "-raft/applied"
    with open(rec, "r+b") as fh:
        b = bytearray(fh.read())
        b[20] ^= 0xFF  # inside the settled state: the CRC no longer fits
        fh.seek(0)
        fh.write(b)
    others = [n for n in c.nodes if n is not f]
    for n in others:
        n.stop()
    f.restart()
    err = gated_read(f, "during a rebuild without peers")
    check("rebuilding its database" in err,
          "%s: the reason does not name the rebuild: %s" % (f.name, err))
    for n in others:
        n.cont()
    lead = c.leader()
    lead.sql("INSERT INTO t VALUES (%d, 'after the rebuild');" % (ROWS + 2))
    # Everything the shell prints (the host logs to its stderr) is kept:
    # the rebuild must be said.
    printed = err
    deadline = time.time() + 60 * SLOW
    while True:
        ok, out, e = f.try_sql("SELECT 'rows ' || count(*) FROM t;")
        printed += out + e
        if ok and "rows %d" % (ROWS + 3) in out:
            break
        check(time.time() < deadline, "%s: the rows did not arrive after "
              "the rebuild; it printed:\n%s" % (f.name, printed[-3000:]))
        time.sleep(0.2)
    check("rebuilt from a peer's image" in printed,
          "%s did not say it rebuilt from an image:\n%s" %
          (f.name, printed[-3000:]))
    check(not os.path.exists(f.db + "-raft/rebuild"),
          "the rebuild marker is still there after the rebuild")
    c.wait_converged(timeout=60)
    c.integrity()
    c.close()


main(test)
