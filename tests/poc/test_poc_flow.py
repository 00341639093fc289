#!/usr/bin/python3
# budget: 90
# asan: yes
"""tests/poc/test_poc_flow.py -- raftd runs distributed-sqlite-poc's README.

The commands are read from the PoC's README itself
(tests/poc/data/distributed-sqlite-poc.md): its three server commands
(./distributed-sqlite-poc -id node1 -grpc :50051 ... -bootstrap, then two
-join localhost:50051) run as written with ./build/raftd, the ports
replaced by free ones below 32768 (and ':PORT', every interface, by
127.0.0.1:PORT: tests bind loopback only), in a scratch directory (so -data ./data
lands there), one after the other once each prints that it serves, as the
README says. Its five client commands (./dsqlite-client -addr ... -sql ...)
run through demo/client.py with stubs generated from the frozen PoC proto
(same flags as the PoC's client): create on node 1, inserts through nodes 2
and 3 (forwarded to the leader), reads on 2 and 1 with the results the
README describes. The PoC's reads are local (eventually consistent), so a
read on a follower may be retried for a few seconds; STRONG reads (project
proto) on both followers right after each write must see it at once. A stock
sqlite3 opened on a node's database file reads it directly; with the
extension loaded it is a client of that raftd and shows raft_nodes. SIGINT
stops every raftd cleanly (exit 0, ports free).
"""
import os
import shlex
import signal
import subprocess
import time

from rlpoc import (LONG, POC_PROTO, POC_README, SLOW, Api, PortMap, Raftd,
                   check, check_eq, client, client_ok, log, port_free,
                   scratch)
from rltest import SQLITE3, Shell
from rlgrpc import project_stubs


def poc_commands():
    """(server command lines, [(comment, client command line)]) of the PoC
    README, in order."""
    check(os.path.exists(POC_README), "the PoC README is missing: %s" %
          POC_README)
    servers, clients, comment = [], [], ""
    with open(POC_README) as f:
        for line in f:
            s = line.strip()
            if s.startswith("./distributed-sqlite-poc "):
                servers.append(s)
            elif s.startswith("# "):
                comment = s[2:]
            elif s.startswith("./dsqlite-client -addr localhost:"):
                clients.append((comment, s))
    check(len(servers) == 3 and "-bootstrap" in servers[0] and
          all("-join" in s for s in servers[1:]),
          "the PoC README's server commands: %r" % servers)
    check(len(clients) == 5, "the PoC README's client commands: %r" % clients)
    return servers, clients


def test():
    servers, clients = poc_commands()
    ports = PortMap()
    d = scratch("rlpocflow-")
    nodes = []
    for i, cmd in enumerate(servers):
        argv = shlex.split(ports.sub(cmd))
        log("$ %s   # as build/raftd" % " ".join(argv))
        nodes.append(Raftd(argv, d, "node%d" % (i + 1)).wait_serving())
    grpc = ["127.0.0.1:%d" % ports.port(50051 + i) for i in range(3)]
    for i in range(3):
        check(os.path.exists(os.path.join(d, "data", "node%d" % (i + 1),
                                          "sqlite.db")),
              "-data ./data puts node%d's database under data/node%d/" %
              (i + 1, i + 1))

    # The PoC's client commands, with the PoC proto's stubs.
    want_rows = ["id|value", "1|Hello Raft!", "2|Distributed Systems are Fun"]
    for comment, cmd in clients:
        cmd = ports.sub(cmd)
        log("$ %s   # %s; as demo/client.py -proto <PoC proto>" %
            (cmd, comment))
        if " SELECT " not in cmd and '"SELECT ' not in cmd:
            out = client_ok(cmd, proto=POC_PROTO)
            check_eq(out, "ok\n", "PoC client write: %s" % cmd)
            continue
        want = (want_rows if "SELECT *" in cmd
                else ["value", "Distributed Systems are Fun"])
        deadline = time.time() + 5 * SLOW
        tries = 0
        while True:
            tries += 1
            out = client_ok(cmd, proto=POC_PROTO)
            if out.splitlines() == want or time.time() > deadline:
                break
            time.sleep(0.1)
        check_eq(out.splitlines(), want, "PoC client read: %s" % cmd)
        log(out.rstrip() + ("\n(local read retried %d times)" % (tries - 1)
                            if tries > 1 else ""))

    # The project's API: node1 leads; STRONG reads on both followers right
    # after each write see it (no retry).
    pb, pbg = project_stubs()
    api = Api(pb, pbg)
    st = api.status(grpc[0])
    check(st.state == "leader" and st.node_id == "node1",
          "node1 leads: %r" % st)
    n = 2
    for i in range(100 if LONG else 10):
        w = api.write(grpc[i % 3], "INSERT INTO demo (value) VALUES "
                      "('strong %d')" % i)
        check(w.success, "write %d through node%d: %r" % (i, i % 3 + 1, w))
        n += 1
        for g in grpc[1:]:
            check_eq(api.read(g, "SELECT count(*) FROM demo", strong=True),
                     [[str(n)]], "STRONG read on %s right after write %d" %
                     (g, i))
    w = api.write(grpc[0], "INSERT INTO demo (value) VALUES ('last')")
    check(w.success, "last write: %r" % w)
    n += 1
    out = client_ok(["-addr", grpc[2], "-sql", "SELECT count(*) FROM demo",
                     "-strong"], proto=POC_PROTO)
    check_eq(out.split(), ["count(*)", str(n)],
             "STRONG read with the PoC proto's ReadConsistency right after "
             "a write")
    log("STRONG reads on followers after each write: ok")

    # A stock shell reads a raftd's database file directly; with the
    # extension it is a client of that raftd.
    db3 = os.path.join(d, "data", "node3", "sqlite.db")
    r = subprocess.run([SQLITE3, db3, "SELECT count(*) FROM demo"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.strip() == str(n),
          "stock sqlite3 on node3's file: %r %r" % (r.stdout, r.stderr))
    sh = Shell(db3)
    out = sh.sql_ok("SELECT id || ' ' || is_leader FROM raft_nodes "
                    "ORDER BY id;")
    check_eq(out.split("\n")[:3], ["node1 1", "node2 0", "node3 0"],
             "raft_nodes in a client shell of node3's raftd")
    check_eq(sh.sql_ok("SELECT count(*) FROM demo;").strip(), str(n),
             "the client shell reads node3's file")
    sh.finish("the client shell's exit status", 0)
    log("stock shell on a raftd database: ok")
    api.close()

    # The client's refusals: a failing statement, -strong on a write, an
    # RPC the PoC proto lacks.
    rc, out, err = client(["-addr", grpc[1], "-sql", "INSERT INTO nosuch "
                           "VALUES (1)"])
    check(rc == 1 and "no such table: nosuch" in err,
          "client write error: %d %r %r" % (rc, out, err))
    rc, out, err = client(["-addr", grpc[1], "-strong", "-sql",
                           "DELETE FROM demo"])
    check(rc == 2 and "-strong applies to reads only" in err,
          "client -strong write: %d %r" % (rc, err))
    rc, out, err = client(["-addr", grpc[1], "-nodes"], proto=POC_PROTO)
    check(rc == 2 and "has no Nodes RPC" in err,
          "client -nodes with the PoC proto: %d %r" % (rc, err))

    # SIGINT stops each raftd cleanly; its ports are free afterwards.
    for i, node in enumerate(nodes):
        node.stop(signal.SIGINT)
        for p in (50051 + i, 12001 + i):
            check(port_free(ports.port(p)),
                  "port %d of node%d still taken after it stopped" %
                  (ports.port(p), i + 1))
    log("SIGINT: every raftd exited 0")
    rc, out, err = client(["-addr", grpc[0], "-timeout", "1", "-sql",
                           "SELECT 1"])
    check(rc == 3 and "cannot reach" in err,
          "client of a stopped node: %d %r" % (rc, err))


if __name__ == "__main__":
    from rltest import main
    main(test)
