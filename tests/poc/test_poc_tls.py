#!/usr/bin/python3
# budget: 60
"""tests/poc/test_poc_tls.py -- a raftd cluster with raftd's TLS flags.

Certificates made here with openssl (tests/lib/rltls.py): a CA, one
certificate per node (SAN URI raftlite:node:<id>: Raft runs in mutual TLS
too) and one valid for server and client use that the client presents.
Three raftd with -tls-cert, -tls-key, -tls-ca and -tls-client-auth (mutual TLS): node2 and node3 join
node1 over TLS; demo/client.py with -tls-ca/-tls-cert/-tls-key creates on
node1, writes through a follower (forwarded over TLS), reads STRONG on the
other (ReadIndex over TLS) and lists the members; then the project's stubs
over mutual TLS write through both followers and read STRONG on both after
each write; a plaintext client and a TLS client without a
certificate are refused; a follower restarted with the same flags resumes
and serves TLS again; SIGTERM stops every node (exit 0).
"""
import os
import signal

from rlpoc import (Api, Raftd, check, check_eq, client, client_ok, free_port,
                   log, scratch)
from rlgrpc import project_stubs
from rltls import make_ca, make_cert, make_node_cert

import grpc


def test():
    d = scratch("rlpoctls-")
    make_ca(d, "ca")
    make_cert(d, "ca", "node", server=True, client=True)
    for i in range(3):  # Raft's mutual TLS wants each node's own certificate
        make_node_cert(d, "ca", "node%d" % (i + 1))
    pem = {n: os.path.join(d, n) for n in ("ca.pem", "node.pem", "node.key")}

    def tls(i):
        p = os.path.join(d, "node%d" % (i + 1))
        return ["-tls-cert", p + ".pem", "-tls-key", p + ".key",
                "-tls-ca", pem["ca.pem"], "-tls-client-auth"]
    g = ["127.0.0.1:%d" % free_port() for _ in range(3)]
    nodes = []
    for i in range(3):
        argv = (["raftd", "-id", "node%d" % (i + 1), "-grpc", g[i], "-raft",
                 "127.0.0.1:%d" % free_port(), "-data", "./data"] + tls(i) +
                (["-bootstrap"] if i == 0 else ["-join", g[0]]))
        nodes.append(Raftd(argv, d, "node%d" % (i + 1)).wait_serving())
        check("(mutual TLS)" in nodes[-1].log(), "node%d serves mutual TLS:"
              "\n%s" % (i + 1, nodes[-1].log()))
    ctls = ["-tls-ca", pem["ca.pem"], "-tls-cert", pem["node.pem"],
            "-tls-key", pem["node.key"]]

    def c(i, *args):
        return client_ok(["-addr", g[i]] + ctls + list(args))
    # demo/client.py over mutual TLS, then the project's stubs (faster).
    c(0, "-sql", "CREATE TABLE t(k INTEGER PRIMARY KEY)")
    check_eq(c(1, "-sql", "INSERT INTO t VALUES (0)"), "ok\n",
             "a write through node2 over TLS")
    check_eq(c(2, "-strong", "-sql", "SELECT count(*) FROM t").split(),
             ["count(*)", "1"], "a STRONG read on node3 over TLS")
    out = c(2, "-nodes")
    check(out.count("|voter|") == 3 and "node1|" in out, "members: %r" % out)
    pb, pbg = project_stubs()
    with open(pem["ca.pem"], "rb") as f1, open(pem["node.key"], "rb") as f2, \
            open(pem["node.pem"], "rb") as f3:
        creds = grpc.ssl_channel_credentials(f1.read(), f2.read(), f3.read())
    api = Api(pb, pbg, creds)
    for k in range(1, 11):
        w = api.write(g[1 + k % 2], "INSERT INTO t VALUES (%d)" % k)
        check(w.success, "write %d through node%d: %r" % (k, 2 + k % 2, w))
        for i in (1, 2):
            check_eq(api.read(g[i], "SELECT count(*) FROM t", strong=True),
                     [[str(k + 1)]], "STRONG read on node%d after write %d"
                     % (i + 1, k))
    api.close()
    log("mutual TLS: joins, forwarded writes, STRONG reads: ok")

    rc, _, err = client(["-addr", g[1], "-timeout", "1", "-nodes"])
    check(rc == 3 and "does it use TLS" in err,
          "a plaintext client of a TLS node: %d %r" % (rc, err))
    rc, _, err = client(["-addr", g[1], "-timeout", "1", "-tls-ca",
                         pem["ca.pem"], "-nodes"])
    check(rc == 3, "a TLS client without a certificate under mutual TLS: "
          "%d %r" % (rc, err))
    log("plaintext and certificate-less clients: refused")

    nodes[2].stop(signal.SIGTERM)
    nodes[2].restart().wait_serving()
    check("resuming node node3" in nodes[2].log() and
          "(mutual TLS)" in nodes[2].log(),
          "node3 resumed with TLS:\n%s" % nodes[2].log())
    check_eq(c(2, "-sql", "INSERT INTO t VALUES (100)"), "ok\n",
             "a write through the restarted node")
    check_eq(c(1, "-strong", "-sql", "SELECT count(*) FROM t").split(),
             ["count(*)", "12"], "STRONG read after the restart")
    log("restart with the same TLS flags: resumed")
    for n in nodes:
        n.stop(signal.SIGTERM)


if __name__ == "__main__":
    from rltest import main
    main(test)
