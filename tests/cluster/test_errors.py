# budget: 240
# asan: yes
"""What a program sees when raftlite refuses: standard SQLite result codes
(issue "A new user's first hour"), raft_last_error() per connection, the
VFS's name, the raft_status table, and the address checks of the SQL
functions.

Python's own sqlite3 module is the client, with the extension loaded into
this test process (as the README shows): its exceptions carry
sqlite_errorname, the code every driver sees. node1 is a stock shell;
node2 is hosted by this process.

 - a follower's write commits (through the leader) and the follower
   reads it at once;
 - a conflict: a transaction open on node2 while node1 led and committed a
   row; node2 leads again and the COMMIT fails with SQLITE_BUSY_SNAPSHOT,
   nothing of it is visible anywhere, and the same transaction retried
   commits;
 - raft_last_error() is empty after a statement that succeeded, set after
   each failing raft_* call, and per connection (another connection of the
   same process keeps its own);
 - .vfsname says raft/unix; SELECT * FROM raft_status has the columns
   name and value and agrees with PRAGMA raft_status;
 - raft_bootstrap/raft_join refuse a host name where the Raft transport
   needs an IP, and a port out of range.
"""
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from rltest import EXT, check, check_eq, fail, log, main, scratch  # noqa
from rltest import san_host_process  # noqa: E402
from rlcluster import Cluster, HOST, _ports  # noqa: E402


def connect(db):
    c = sqlite3.connect(db, isolation_level=None, timeout=10)
    return c


def one(c, sql, *args):
    return c.execute(sql, args).fetchone()[0]


def refused(c, sql, want, what):
    """Runs sql on c; it must fail with sqlite_errorname want."""
    try:
        c.execute(sql)
    except sqlite3.Error as e:
        name = getattr(e, "sqlite_errorname", None)
        check_eq(name, want, "%s: sqlite_errorname (%s)" % (what, e))
        detail = one(c, "SELECT raft_last_error()")
        check(detail, "%s: raft_last_error() is empty" % what)
        log("%s: %s (%s) | raft_last_error: %s" % (what, name, e, detail))
        return detail
    fail("%s: %r succeeded" % (what, sql))


def wait_leader(c, name, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = json.loads(one(c, "PRAGMA raft_status"))
        if st["state"] == "leader" and st["leader"] == name:
            return st
        time.sleep(0.05)
    fail("%s did not become leader: %r" % (name, st))


def test():
    # The extension, loaded the README's way: on a :memory: connection;
    # every later connection of this process uses raftlite.
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(EXT)

    cl = Cluster(1)
    n1 = cl.nodes[0]
    n1.sql("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT);")
    d = scratch("errors-")
    db2 = os.path.join(d, "node2.db")
    raft2 = "%s:%d" % (HOST, _ports(cl.used_ports))
    grpc2 = "%s:%d" % (HOST, _ports(cl.used_ports))
    a1 = connect(db2)
    a2 = connect(db2)

    # Address checks of the SQL functions (nothing starts).
    detail = refused(a1, "SELECT raft_join('node2', 'localhost:%s', '%s', "
                     "'%s')" % (raft2.split(":")[1], grpc2, n1.grpc_addr),
                     "SQLITE_ERROR", "raft_join with a host name")
    check("numeric IPv4" in detail and "write 127.0.0.1:" in detail,
          "the refusal names the cause and the fix: %r" % detail)
    detail = refused(a1, "SELECT raft_join('node2', '127.0.0.1:99999', '%s', "
                     "'%s')" % (grpc2, n1.grpc_addr), "SQLITE_ERROR",
                     "raft_join with port 99999")
    check("numeric port 1..65535" in detail, "names the port range: %r" % detail)
    check_eq(one(a1, "SELECT raft_last_error()"), "",
             "raft_last_error() after a successful SELECT")

    check_eq(one(a1, "SELECT raft_join('node2', ?, ?, ?)", raft2, grpc2,
                 n1.grpc_addr), "node2", "raft_join")
    check_eq(one(a1, "SELECT raft_last_error()"), "",
             "raft_last_error() after raft_join succeeded")
    cl.wait_val(n1, "SELECT count(*) FROM raft_nodes;", "2")

    # Failing raft_* calls set it; a success clears it.
    for sql, what in (("SELECT raft_remove('nosuch')", "raft_remove"),
                      ("SELECT raft_transfer('nosuch')", "raft_transfer"),
                      ("SELECT raft_bootstrap('x', '127.0.0.1:1', "
                       "'127.0.0.1:2')", "raft_bootstrap on a node")):
        detail = refused(a1, sql, "SQLITE_ERROR", what)
        check(what.split()[0] in detail, "%s names itself: %r" % (what,
                                                                   detail))
    check_eq(one(a2, "SELECT raft_last_error()"), "",
             "another connection keeps its own raft_last_error()")
    one(a1, "SELECT 1")
    check_eq(one(a1, "SELECT raft_last_error()"), "",
             "raft_last_error() after the next successful statement")

    # A follower's write goes to the leader and commits; the follower
    # reads it at once (read-your-writes) and raft_last_error() is empty.
    a2.execute("INSERT INTO t VALUES(1, 'on a follower')")
    check_eq(one(a2, "SELECT v FROM t WHERE k = 1"), "on a follower",
             "the follower reads its own write at once")
    check_eq(one(a2, "SELECT raft_last_error()"), "",
             "raft_last_error() after a follower's write")
    cl.wait_val(n1, "SELECT v FROM t WHERE k = 1;", "on a follower")

    # The VFS's name and the status table.
    out = n1.sql(".vfsname").strip()
    check_eq(out, "raft/unix", ".vfsname of a replicated database")
    out = n1.sql(".headers on\nSELECT * FROM raft_status;\n.headers off")
    lines = out.strip().splitlines()
    check_eq(lines[0], "name|value", "raft_status's column names")
    rows = dict(line.split("|", 1) for line in lines[1:])
    st = n1.status()
    for k in ("id", "state", "term", "leader", "commit_index"):
        check_eq(rows.get(k), str(st[k]), "raft_status row %s vs PRAGMA" % k)
    check_eq(st["commit_index"], st["applied_index"],
             "an idle leader: commit_index vs applied_index")

    # A conflict. node2 leads; a1 opens a write transaction; node1 leads
    # and commits a row; node2 leads again; a1's COMMIT cannot take effect.
    check_eq(one(a2, "SELECT raft_transfer('node2')"), "node2", "transfer")
    wait_leader(a2, "node2")
    a1.execute("BEGIN IMMEDIATE")
    a1.execute("INSERT INTO t VALUES(10, 'from a1')")
    check_eq(one(a2, "SELECT raft_transfer('node1')"), "node1", "transfer")
    cl.leader()
    n1.sql("INSERT INTO t VALUES(2, 'from node1');")
    check_eq(one(a2, "SELECT raft_transfer('node2')"), "node2", "transfer")
    wait_leader(a2, "node2")
    detail = refused(a1, "COMMIT", "SQLITE_BUSY_SNAPSHOT", "conflict")
    check("conflict" in detail and "retry" in detail,
          "the conflict says so and what to do: %r" % detail)
    check(not a1.in_transaction, "the conflicting transaction is rolled back")
    # Retried, the same transaction commits.
    a1.execute("BEGIN IMMEDIATE")
    a1.execute("INSERT INTO t VALUES(10, 'from a1')")
    a1.execute("COMMIT")
    check_eq(one(a1, "SELECT raft_last_error()"), "",
             "raft_last_error() after the retried COMMIT")
    cl.wait_val(n1, "SELECT group_concat(k) FROM (SELECT k FROM t ORDER BY k);",
                "1,2,10")
    check_eq(one(a2, "SELECT group_concat(k) FROM (SELECT k FROM t "
                     "ORDER BY k)"), "1,2,10", "node2's rows")
    # An idle follower: commit and applied agree too (raft's own entries,
    # such as the new leader's barrier, count as applied).
    deadline = time.time() + 10
    while True:
        st = n1.status()
        if st["commit_index"] == st["applied_index"] or \
                time.time() > deadline:
            break
        time.sleep(0.1)
    check_eq(st["commit_index"], st["applied_index"],
             "an idle follower: commit_index vs applied_index")
    a1.close()
    a2.close()
    cl.close()


if __name__ == "__main__":
    san_host_process()  # under ASan: libasan in front of the ASan build
    main(test)
