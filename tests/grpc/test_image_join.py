# budget: 90
# asan: yes
"""A node joins a cluster whose database already held data before it
became a node (GENESIS): the joiner has nothing to apply pages to, so its
host fetches the consistent image from the leader (FetchImage "@image",
rl_image_restore) and installs it before it serves. Two real raftd
processes: the joiner's database must hold exactly the leader's rows, have
the leader's page size (also one a joiner would not guess: it asks the
peer's image header before its file becomes WAL) and pass integrity_check,
its log must say it installed an image, and a write after the join must
reach it (the image left the file in a state later entries apply to)."""
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlgrpc import *  # noqa: F401,F403

Q = ("SELECT (SELECT count(*) FROM t), (SELECT sum(length(b)) FROM t), "
     "(SELECT group_concat(v) FROM (SELECT v FROM t ORDER BY id)), "
     "(SELECT hex(b) FROM t WHERE id = 7), (SELECT count(*) FROM u)")


def read(s, pb, sql, T):
    r = s.ExecuteRead(pb.ReadRequest(sql=sql), timeout=T)
    check(not r.error, "%s: %s" % (sql, r.error))
    return [bytes(v) for v in r.result.rows[0].values]


def test():
    pb, pbg = project_stubs()
    # The cluster's default page size, joiner without a file; then a page
    # size the joiner would not guess (1024), joiner with a one-page WAL
    # database already: it must take the cluster's page size before it
    # becomes a node, or the image could never be installed.
    join_case(pb, pbg, 4096, False)
    join_case(pb, pbg, 1024, True)


def join_case(pb, pbg, page_size, joiner_wal):
    T = 30 * SAN_SLOW
    d1data, d2data = scratch("rlimgjoin1-"), scratch("rlimgjoin2-")
    if joiner_wal:
        os.makedirs(os.path.join(d2data, "n2"))
        db = sqlite3.connect(os.path.join(d2data, "n2", "sqlite.db"))
        check(db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal",
              "joiner WAL")
        db.close()
    # The leader's database holds data before it becomes a node.
    os.makedirs(os.path.join(d1data, "n1"))
    db = sqlite3.connect(os.path.join(d1data, "n1", "sqlite.db"))
    db.executescript(
        "PRAGMA page_size=%d; VACUUM;"
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);" % page_size +
        "CREATE TABLE u(n INT); CREATE INDEX u_n ON u(n);"
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
        "WHERE x < 40) INSERT INTO t(v, b) SELECT 'row ' || x, "
        "randomblob(x * 3000) FROM c;"
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
        "WHERE x < 5000) INSERT INTO u SELECT x FROM c;")
    db.commit()
    db.close()

    n1 = Raftd(node="n1", data=d1data,
               args=["-bootstrap", "-raft", "127.0.0.1:%d" % free_port()])
    ch1 = channel(n1.addr)
    s1 = pbg.DistributedSqliteStub(ch1)
    want = read(s1, pb, Q, T)
    check(want[0] == b"40" and want[4] == b"5000", "leader rows: %r" % want)

    n2 = Raftd(node="n2", data=d2data,
               args=["-join", n1.addr, "-raft", "127.0.0.1:%d" % free_port()])
    ch2 = channel(n2.addr)
    s2 = pbg.DistributedSqliteStub(ch2)
    deadline = time.time() + T
    got = None
    while time.time() < deadline:
        r = s2.ExecuteRead(pb.ReadRequest(sql=Q), timeout=T)
        if not r.error and r.result.rows and \
                [bytes(v) for v in r.result.rows[0].values] == want:
            got = want
            break
        time.sleep(0.1)
    check(got == want, "joiner never showed the leader's rows: %r\n%s" %
          (r, n2.log()[-3000:]))
    check("installed a database image" in n2.log(),
          "the joiner's log does not show an image install:\n%s" %
          n2.log()[-3000:])
    ic = read(s2, pb, "PRAGMA integrity_check", T)
    check(ic == [b"ok"], "joiner integrity_check: %r" % ic)
    ps = read(s2, pb, "PRAGMA page_size", T)
    check(ps == [str(page_size).encode()], "joiner page size %r, want %d" %
          (ps, page_size))

    # A write after the join reaches the joiner.
    w = s1.ExecuteWrite(pb.WriteRequest(
        sql="INSERT INTO t(v, b) VALUES ('after', x'00ff')"), timeout=T)
    check(w.success, "write after join: %r" % w)
    deadline = time.time() + T
    while time.time() < deadline:
        if read(s2, pb, "SELECT count(*) FROM t WHERE v = 'after'",
                T) == [b"1"]:
            break
        time.sleep(0.05)
    else:
        fail("the write after the join never reached the joiner:\n%s" %
             n2.log()[-3000:])
    log("page size %d: joiner installed the genesis image and applied a "
        "later write" % page_size)
    ch1.close()
    ch2.close()
    n2.stop()
    n1.stop()


main(test)
