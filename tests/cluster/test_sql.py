#!/usr/bin/python3
# budget: 120
# asan: yes
"""tests/cluster/test_sql.py -- raftlite's cluster SQL surface end to end.

Three stock sqlite3 shells with the extension form a cluster on 127.0.0.1
(raft_bootstrap, raft_join through the leader and through a follower);
raft_nodes and PRAGMA raft_status describe it on every node and from a
client process (a fourth shell on a database another process hosts);
raft_transfer and raft_remove work from followers (forwarded) and on the
leader itself; every refused call names its cause and leaves the cluster
as it was: argument errors, a join through an unreachable peer, a
duplicate node id, a duplicate raft or gRPC address (the last two sent as
raw Join RPCs, since a second node cannot even listen on a taken address),
and raw Joins with a host name for a Raft address or a node id that could
not name a node.
The management functions are DIRECTONLY: a view or trigger in the
replicated schema cannot call them, and remote SQL over gRPC cannot
either.
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))

from rltest import Shell, check, check_eq, fail, free_port, log, main, scratch

STATUS_KEYS = {"id", "raft_id", "state", "term", "leader", "leader_grpc",
               "commit_index", "applied_index", "last_index",
               "snapshot_index", "read_points", "read_rounds",
               "local_calls", "forward_sessions"}


def addr():
    return "127.0.0.1:%d" % free_port()


def q(shell, sql):
    """Output of sql, without the nodes' log lines (the shell's stderr)."""
    out = shell.sql_ok(sql)
    return "\n".join(l for l in out.splitlines()
                     if not l.startswith("raftlite[")).strip()


def err_has(shell, sql, *parts):
    out = shell.sql_err(sql)
    for p in parts:
        check(p in out, "error of %r should say %r:\n%s" % (sql, p, out))
    return out


def status(shell):
    out = q(shell, "PRAGMA raft_status;")
    try:
        st = json.loads(out)
    except ValueError:
        fail("PRAGMA raft_status is not JSON: %r" % out)
    check_eq(set(st), STATUS_KEYS, "raft_status keys")
    return st


def nodes(shell):
    """{id: (raft_id, raft_addr, grpc_addr, role, is_leader, match_index,
    last_contact)} with SQL NULL as None."""
    out = q(shell, "SELECT id, raft_id, raft_addr, grpc_addr, role, "
            "is_leader, ifnull(match_index, 'NULL'), "
            "ifnull(last_contact, 'NULL') FROM raft_nodes;")
    res = {}
    for line in out.splitlines():
        f = line.split("|")
        check(len(f) == 8, "raft_nodes row %r" % line)
        conv = [None if x == "NULL" else x for x in f]
        res[f[0]] = (int(f[1]), f[2], f[3], f[4], int(f[5]),
                     None if conv[6] is None else int(conv[6]),
                     None if conv[7] is None else int(conv[7]))
    return res


def wait_for(what, fn, timeout=15):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            fail("timed out waiting for %s" % what)
        time.sleep(0.1)


def argument_errors(d):
    s = Shell(os.path.join(d, "plain.db"))
    boot = "SELECT raft_bootstrap(%s, %s, %s);"
    err_has(s, boot % ("''", "'127.0.0.1:7001'", "'127.0.0.1:7002'"),
            "raft_bootstrap: node id is empty")
    err_has(s, boot % ("NULL", "'127.0.0.1:7001'", "'127.0.0.1:7002'"),
            "node id is NULL")
    err_has(s, boot % ("printf('%.256c', 'x')", "'127.0.0.1:7001'",
                       "'127.0.0.1:7002'"),
            "node id is 256 bytes; at most 255")
    err_has(s, boot % ("'n' || char(10) || '1'", "'127.0.0.1:7001'",
                       "'127.0.0.1:7002'"),
            "node id contains the control character 0x0a")
    err_has(s, boot % ("'n1'", "'127.0.0.1'", "'127.0.0.1:7002'"),
            "raft address '127.0.0.1' is not host:port")
    err_has(s, boot % ("'n1'", "'127.0.0.1:7001'", "'127.0.0.1:70000'"),
            "gRPC address '127.0.0.1:70000' needs a numeric port 1..65535")
    err_has(s, boot % ("'n1'", "'127.0.0.1:0'", "'127.0.0.1:7002'"),
            "numeric port 1..65535")
    err_has(s, boot % ("'n1'", "'127.0.0.1:7001'", "':7002'"),
            "gRPC address ':7002' is not host:port")
    err_has(s, "SELECT raft_leader();", "is not a raft node",
            "raft_bootstrap(")
    err_has(s, "SELECT raft_remove('n1');", "is not a raft node")
    err_has(s, "SELECT raft_transfer('n1');", "is not a raft node")
    err_has(s, "SELECT * FROM raft_nodes;", "is not a raft node")
    err_has(s, "PRAGMA raft_status;", "is not a raft node",
            "raft_bootstrap(...) or raft_join(...)")
    err_has(s, "SELECT raft_join('n9', '127.0.0.1:7001', '127.0.0.1:7002', "
            "'127.0.0.1:7002');", "is this node's own")
    q(s, "CREATE TABLE x(a);")
    err_has(s, "SELECT raft_join('n9', '127.0.0.1:7001', '127.0.0.1:7002', "
            "'127.0.0.1:7003');", "holds tables", "must start empty")
    check(not os.path.exists(os.path.join(d, "plain.db-raft")),
          "refused calls must not make the database a node")
    cols = q(s, "SELECT group_concat(name || ':' || type, ',') FROM "
             "pragma_table_info('raft_nodes');")
    check_eq(cols, "id:TEXT,raft_id:INTEGER,raft_addr:TEXT,grpc_addr:TEXT,"
             "role:TEXT,is_leader:INTEGER,match_index:INTEGER,"
             "last_contact:INTEGER", "raft_nodes columns")
    q(s, ".open :memory:")
    err_has(s, boot % ("'n1'", "'127.0.0.1:7001'", "'127.0.0.1:7002'"),
            "in memory or temporary", ".open FILE")
    s.finish("plain")


def genesis(d):
    """A database that holds data becomes the cluster's initial state; a
    joining node receives it (as an image) before raft_join returns."""
    g = Shell(os.path.join(d, "g.db"))
    q(g, "CREATE TABLE old(a, b); INSERT INTO old VALUES (1, 'x'), (2, 'y');")
    rg, gg = addr(), addr()
    # An id with a quote and a backslash: raft_status stays valid JSON.
    check_eq(q(g, "SELECT raft_bootstrap('g\"1\\', '%s', '%s');" % (rg, gg)),
             'g"1\\', "bootstrap of a database with data")
    st = status(g)
    check(st["id"] == 'g"1\\' and st["leader"] == 'g"1\\',
          "raft_status of an id with JSON specials: %r" % st)
    h = Shell(os.path.join(d, "h.db"))
    check_eq(q(h, "SELECT raft_join('g2', '%s', '%s', '%s');" %
               (addr(), addr(), gg)), "g2", "join of a seeded cluster")
    check_eq(q(h, "SELECT group_concat(a || b) FROM old;"), "1x,2y",
             "the initial data on the joined node")
    g.finish("g1")
    h.finish("g2")


def raw_join(grpc_addr, node_id, raft_addr, own_grpc):
    from rlgrpc import project_stubs
    import grpc
    pb, pbg = project_stubs()
    with grpc.insecure_channel(grpc_addr) as ch:
        stub = pbg.DistributedSqliteStub(ch)
        return stub.Join(pb.JoinRequest(node_id=node_id, raft_addr=raft_addr,
                                        grpc_addr=own_grpc), timeout=20)


def direct_only(a, b, ga, members):
    """The management functions are SQLITE_DIRECTONLY: a view or trigger
    in the replicated schema (which any writer could create) cannot call
    them on someone else's read or write; and remote SQL (gRPC) cannot
    call them at all (the allow-list names no raft_* function)."""
    from rlgrpc import project_stubs
    import grpc
    q(a, "CREATE VIEW lead AS SELECT raft_leader(); CREATE TABLE trg(x); "
         "CREATE TRIGGER rm AFTER INSERT ON trg BEGIN "
         "SELECT raft_remove('n2'); END;")
    # b reads its own node's file: wait until the view has reached it.
    wait_for("the view on b's node", lambda: q(
        b, "SELECT count(*) FROM sqlite_schema WHERE name = 'lead';") == "1")
    err_has(b, "SELECT * FROM lead;", "unsafe use of raft_leader()")
    err_has(a, "INSERT INTO trg VALUES (1);", "unsafe use of raft_remove()")
    check_eq(q(a, "SELECT count(*) FROM trg;"), "0", "the trigger's insert")
    check_eq(set(nodes(a)), members, "members after the trigger")
    pb, pbg = project_stubs()
    with grpc.insecure_channel(ga) as ch:
        stub = pbg.DistributedSqliteStub(ch)
        for sql, fn in (("SELECT raft_remove('n2')", "raft_remove"),
                        ("SELECT * FROM lead", "raft_leader")):
            r = stub.ExecuteRead(pb.ReadRequest(sql=sql), timeout=20)
            check(r.error and fn in r.error, "gRPC %r: %r" % (sql, r))
        w = stub.ExecuteWrite(pb.WriteRequest(
            sql="SELECT raft_transfer('n2')"), timeout=20)
        check(not w.success and "raft_transfer" in w.error,
              "gRPC raft_transfer: %r" % w)
    check_eq(set(nodes(a)), members, "members after the gRPC calls")
    check_eq(q(a, "SELECT raft_leader();"), "n1", "leader after the calls")
    q(a, "DROP TRIGGER rm; DROP VIEW lead; DROP TABLE trg;")


def test():
    d = scratch("rlsql-")
    argument_errors(d)
    log("argument errors: ok")
    genesis(d)
    log("bootstrap with data, join: ok")

    ra, ga, rb, gb, rc, gc = (addr() for _ in range(6))
    a = Shell(os.path.join(d, "a.db"))
    check_eq(q(a, "SELECT raft_bootstrap('n1', '%s', '%s');" % (ra, ga)),
             "n1", "raft_bootstrap result")
    st = status(a)
    check(st["id"] == "n1" and st["state"] == "leader" and
          st["leader"] == "n1" and st["leader_grpc"] == ga,
          "bootstrapped node's status: %r" % st)
    err_has(a, "SELECT raft_bootstrap('n1', '%s', '%s');" % (ra, ga),
            "already node 'n1'")
    q(a, "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);")

    b = Shell(os.path.join(d, "b.db"))
    check_eq(q(b, "SELECT raft_join('n2', '%s', '%s', '%s');" %
               (rb, gb, ga)), "n2", "raft_join through the leader")
    c = Shell(os.path.join(d, "c.db"))
    # Through a follower: B forwards the Join to the leader.
    check_eq(q(c, "SELECT raft_join('n3', '%s', '%s', '%s');" %
               (rc, gc, gb)), "n3", "raft_join through a follower")
    check_eq(q(c, "SELECT group_concat(x) FROM t;"), "1,2",
             "a joined node holds the data once raft_join returns")
    err_has(c, "SELECT raft_join('n3', '%s', '%s', '%s');" % (rc, gc, gb),
            "already node 'n3'")
    log("bootstrap and joins: ok")

    want = {"n1": (ra, ga), "n2": (rb, gb), "n3": (rc, gc)}

    def leader_view_complete():
        ns = nodes(a)
        return ns if (set(ns) == set(want) and
                      all(v[6] == 1 for v in ns.values())) else None
    na = wait_for("the leader to hear from every node", leader_view_complete)
    for nid, (r, g) in want.items():
        v = na[nid]
        check(v[1] == r and v[2] == g and v[3] == "voter",
              "raft_nodes row of %s on the leader: %r" % (nid, v))
        check(v[4] == (1 if nid == "n1" else 0), "is_leader of %s" % nid)
        check(v[5] is not None and v[5] > 0, "match_index of %s" % nid)
    # A follower learns a member's id from its replicated metadata entry,
    # which may still be on its way.
    nb = wait_for("n2 to know every member's id",
                  lambda: (lambda ns: ns if set(ns) == set(want) else None)(
                      nodes(b)))
    check(all(v[5] is None and v[6] is None for v in nb.values()),
          "match_index/last_contact are NULL on a follower: %r" % nb)
    check_eq(nb["n1"][4], 1, "a follower knows the leader")
    for sh, nid in ((a, "n1"), (b, "n2"), (c, "n3")):
        st = status(sh)
        check(st["id"] == nid and st["leader"] == "n1" and
              st["leader_grpc"] == ga and st["raft_id"] == na[nid][0],
              "status of %s: %r (raft_nodes %r)" % (nid, st, na[nid]))
        check(st["applied_index"] >= 1 and
              st["commit_index"] <= st["last_index"],
              "indexes of %s: %r" % (nid, st))
        check_eq(q(sh, "SELECT raft_leader();"), "n1", "leader seen by " + nid)
    log("raft_nodes and raft_status: ok")
    direct_only(a, b, ga, set(want))
    log("raft_* functions: direct calls only, never through gRPC: ok")

    # A client process: the database is hosted by shell A, so this shell
    # asks A's sidecar.
    e = Shell(os.path.join(d, "a.db"))
    check_eq(q(e, "SELECT raft_leader();"), "n1", "raft_leader of a client")
    check_eq(set(nodes(e)), set(want), "raft_nodes of a client")
    check_eq(status(e)["id"], "n1", "raft_status of a client")
    e.finish("client")
    log("client process: ok")

    # Join refusals leave the cluster unchanged.
    dj = Shell(os.path.join(d, "d1.db"))
    dead = addr()
    t0 = time.time()
    err_has(dj, "SELECT raft_join('n4', '%s', '%s', '%s');" %
            (addr(), addr(), dead), "cannot reach", dead)
    check(time.time() - t0 < 20, "an unreachable peer is reported promptly")
    err_has(dj, "PRAGMA raft_status;", "is not a raft node")
    dj.finish("d1")
    dj = Shell(os.path.join(d, "d2.db"))
    err_has(dj, "SELECT raft_join('n2', '%s', '%s', '%s');" %
            (addr(), addr(), gc), "node 'n2' is already a member with raft "
            "address " + rb)
    dj.finish("d2")
    r = raw_join(ga, "n4", rb, addr())
    check(not r.success and ("raft address %s is already used by node 'n2'"
                             % rb) in r.error, "duplicate raft address: %r" % r)
    r = raw_join(gb, "n4", addr(), gc)  # through a follower
    check(not r.success and ("gRPC address %s is already used by node 'n3'"
                             % gc) in r.error, "duplicate gRPC address: %r" % r)
    # Fields a node could never have (checked before the cluster is
    # touched, and a host name is not looked up).
    for nid, raddr, needle in (
            ("n4", "localhost:%d" % free_port(), "not a numeric IPv4"),
            ("n4", "127.0.0.1", "not IPv4:PORT"),
            ("a/b", addr(), "path separator"),
            ("n" + chr(10), addr(), "the character 0x0a")):
        r = raw_join(ga, nid, raddr, "")
        check(not r.success and needle in r.error,
              "join of %r at %r: %r" % (nid, raddr, r))
    r = raw_join(ga, "n2", rb, gb)  # the same node again: idempotent
    check(r.success and r.leader_grpc_addr == ga, "rejoin as is: %r" % r)
    check_eq(set(nodes(a)), set(want), "members after refused joins")
    log("join refusals: ok")

    # Transfer from a follower (forwarded to the leader).
    check_eq(q(c, "SELECT raft_transfer('n2');"), "n2", "raft_transfer")
    wait_for("n1 to see n2 lead",
             lambda: q(a, "SELECT raft_leader();") == "n2")
    # The new leader's own published state may trail its first heartbeats.
    wait_for("n2 to report itself leader",
             lambda: status(b)["state"] == "leader", timeout=5)
    err_has(a, "SELECT raft_transfer('nope');", "no node 'nope'")
    q(b, "INSERT INTO t VALUES (3);")
    wait_for("the write on the new leader to reach n1",
             lambda: q(a, "SELECT count(*) FROM t;") == "3")
    log("transfer: ok")

    # Remove from a follower (forwarded), then an unknown id.
    check_eq(q(a, "SELECT raft_remove('n3');"), "n3", "raft_remove")
    check_eq(set(nodes(b)), {"n1", "n2"}, "members after removing n3")
    err_has(a, "SELECT raft_remove('zz');", "no node 'zz'", "nothing changed")
    check_eq(set(nodes(b)), {"n1", "n2"}, "members after a refused remove")
    # Removing the leader itself: it hands leadership over first.
    check_eq(q(b, "SELECT raft_remove('n2');"), "n2", "remove the leader")
    wait_for("n1 to lead alone", lambda: status(a)["state"] == "leader")
    check_eq(set(nodes(a)), {"n1"}, "members after removing the leader")
    q(a, "INSERT INTO t VALUES (4);")
    check_eq(q(a, "SELECT group_concat(x) FROM t;"), "1,2,3,4",
             "writes after the membership changes")
    err_has(a, "SELECT raft_remove('n1');", "only node", "nothing changed")
    log("remove: ok")
    for sh, name in ((a, "n1"), (b, "n2"), (c, "n3")):
        sh.finish(name)


main(test)
