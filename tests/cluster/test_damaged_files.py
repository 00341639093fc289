# budget: 180
# asan: yes
"""Issue #6: a node whose local files were damaged while it was down
notices it at start, says why in its log, rebuilds its database from a
peer's image (raftd/host/rebuild.c), never serves the damaged file
meanwhile (the read gate), and converges; nothing acknowledged is lost.

A follower of a 3-node cluster of stock shells is killed (-9) after
writes it applied (the last ones still in its WAL), one file is damaged,
and it restarts. The damages and what the node must say (vfs.c
rec_check):
- the WAL removed: "the WAL was lost" (its frames were never
  checkpointed, so the database file lacks them);
- the database file removed (the WAL kept): "it was removed" (the host
  makes an empty WAL database in its place, raftd/host/rebuild.c recreate_removed_db);
- the database file truncated to half, its WAL empty (after a TRUNCATE
  checkpoint): the same;
- the WAL cut inside its last transaction: "its tail was lost";
- a stock sqlite3 (no extension) wrote to the file while the node was
  down: "committed by a process without raftlite" (its row must then be
  gone: the node takes the cluster's state);
and three restarts that must NOT rebuild: after kill -9 with frames in
the WAL; after a TRUNCATE checkpoint emptied the WAL (the applied record
marks that its frames were backfilled, RL_REC_BACKFILLED); after a stock
sqlite3 read the file as its last connection, whose close checkpoints and
removes the WAL and -shm (raftd/host/rebuild.c rl_host_open_applier takes that as a clean
checkpoint; a stock *write* followed by such a close cannot be told
apart, a documented limit).
"""
import os
import subprocess

from rltest import *
from rlcluster import *

REBUILD = "rebuilding it from a peer's image"


def restart_and_read(c, f, want):
    """Restarts f and reads until it answers `want` rows; returns all it
    printed (the host logs to the shell's stderr)."""
    f.restart()
    printed = f.sh.open_output
    deadline = time.time() + 60 * SLOW
    while True:
        ok, out, err = f.try_sql("SELECT 'rows ' || count(*) FROM t;")
        printed += out + err
        if ok and "rows %d" % want in out:
            return printed
        check(ok or "database is locked" in err,
              "%s: a read failed otherwise than by waiting: %s; it "
              "printed:\n%s" % (f.name, err, printed[-3000:]))
        check(time.time() < deadline, "%s: never answered %d rows; it "
              "printed:\n%s" % (f.name, want, printed[-3000:]))
        time.sleep(0.2)


class Rows:
    def __init__(self, c):
        self.c = c
        self.n = 0

    def write(self, k):
        lead = self.c.leader()
        for _ in range(k):
            lead.sql("INSERT INTO t VALUES (%d, randomblob(300));" % self.n)
            self.n += 1
        self.c.wait_all("SELECT count(*) FROM t;", str(self.n))


def damage_round(c, rows, name, damage, expect):
    lead = c.leader()
    f = [n for n in c.nodes if n is not lead][0]
    # A WAL that holds the latest transactions only: a TRUNCATE
    # checkpoint, then a few writes.
    f.checkpoint()
    rows.write(5)
    f.kill9()
    damage(f)
    printed = restart_and_read(c, f, rows.n)
    if expect is None:
        check(REBUILD not in printed,
              "%s (%s): rebuilt although its files were intact:\n%s" %
              (f.name, name, printed[-3000:]))
    else:
        check(REBUILD in printed and expect in printed,
              "%s (%s): did not say %r and rebuild; it printed:\n%s" %
              (f.name, name, expect, printed[-3000:]))
        check(not os.path.exists(f.db + "-raft/rebuild"),
              "%s (%s): the rebuild marker is left" % (f.name, name))
    rows.write(1)
    c.wait_converged(timeout=60)
    c.integrity()
    log("%s: %s: %s" % (f.name, name, "no rebuild" if expect is None
                        else "rebuilt (%s)" % expect))


def remove(path):
    def fn(f):
        os.unlink(f.db + path)
    return fn


def truncate_db_half(f):
    # The WAL is empty (a TRUNCATE checkpoint ran): the file alone is
    # the database.
    check(os.path.getsize(f.db + "-wal") == 0, "%s: the WAL is not empty" %
          f.name)
    size = os.path.getsize(f.db)
    with open(f.db, "r+b") as fh:
        fh.truncate(size // 2 // 4096 * 4096)


def cut_wal(f):
    size = os.path.getsize(f.db + "-wal")
    check(size > 32 + 3 * (24 + 4096), "%s: WAL too short to cut (%d)" %
          (f.name, size))
    os.truncate(f.db + "-wal", size - 100)


def stock_write(f):
    """A stock sqlite3 inserts row -1 while a stock reader keeps the file
    open (then killed), so the stock frames stay in the WAL after the
    node's last commit frame."""
    holder = Shell(f.db, ext=False)
    holder.sql_ok("SELECT count(*) FROM t;")
    try:
        r = subprocess.run([SQLITE3, "-batch", f.db],
                           input="INSERT INTO t VALUES (-1, 'stock');\n",
                           text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        check(r.returncode == 0, "the stock write failed: %s" % r.stdout)
        out = holder.sql_ok("SELECT count(*) FROM t WHERE id = -1;")
        check(out.strip() == "1", "the stock row is not in %s: %r" %
              (f.db, out))
    finally:
        holder.p.kill()
        holder.p.wait()


def stock_read_last(f):
    """A stock sqlite3 (not read-only) reads the file as its last
    connection: its close checkpoints everything and removes the WAL and
    the -shm. Legitimate: the node must start without a rebuild."""
    r = subprocess.run([SQLITE3, "-batch", f.db],
                       input="SELECT count(*) FROM t;\n", text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    check(r.returncode == 0, "the stock read failed: %s" % r.stdout)
    check(not os.path.exists(f.db + "-wal") and
          not os.path.exists(f.db + "-shm"),
          "the stock close did not remove the WAL and -shm")


def test():
    c = Cluster(3)
    c.leader().sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
    rows = Rows(c)
    rows.write(40)
    damage_round(c, rows, "kill -9, frames in the WAL", lambda f: None,
                 None)

    # A TRUNCATE checkpoint right before the kill: the WAL is empty and the
    # record says its frames were backfilled.
    lead = c.leader()
    f = [n for n in c.nodes if n is not lead][0]
    rows.write(3)
    f.checkpoint()
    check(os.path.getsize(f.db + "-wal") == 0, "TRUNCATE left a WAL")
    f.kill9()
    printed = restart_and_read(c, f, rows.n)
    check(REBUILD not in printed, "%s rebuilt after a TRUNCATE checkpoint "
          "emptied its WAL:\n%s" % (f.name, printed[-3000:]))
    log("%s: empty WAL after TRUNCATE: no rebuild" % f.name)

    damage_round(c, rows, "WAL removed", remove("-wal"), "the WAL was lost")
    damage_round(c, rows, "database file removed", remove(""),
                 "it was removed")
    damage_round(c, rows, "WAL cut inside its last transaction", cut_wal,
                 "its tail was lost")
    damage_round(c, rows, "written by a stock sqlite3", stock_write,
                 "committed by a process without raftlite")
    damage_round(c, rows, "read by a stock sqlite3 closing last",
                 stock_read_last, None)
    for n in c.nodes:
        check_eq(n.val("SELECT count(*) FROM t WHERE id = -1;"), "0",
                 "%s: the stock process's row" % n.name)

    # Truncated database file, WAL empty: checkpoint, kill, truncate.
    lead = c.leader()
    f = [n for n in c.nodes if n is not lead][0]
    rows.write(200)
    f.checkpoint()
    f.kill9()
    truncate_db_half(f)
    printed = restart_and_read(c, f, rows.n)
    check(REBUILD in printed and "removed, replaced or truncated" in printed,
          "%s: a truncated database file was not rebuilt:\n%s" %
          (f.name, printed[-3000:]))
    rows.write(1)
    c.wait_converged(timeout=60)
    c.integrity()
    log("%s: database file truncated: rebuilt" % f.name)
    c.close()


main(test)
