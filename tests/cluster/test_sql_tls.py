#!/usr/bin/python3
# budget: 90
"""tests/cluster/test_sql_tls.py -- the cluster SQL functions of a client
process when the host serves gRPC over mutual TLS.

Shell 1 hosts node1 with TLS settings from URI parameters (stored with the
node's identity). Shell 2 opens the same database with a plain `.open`: it
is a client of shell 1, and raft_leader(), raft_nodes, PRAGMA raft_status
and raft_transfer() must reach shell 1's sidecar with the identity's TLS
settings (a plaintext call would be refused by the mTLS server).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from rltest import Shell, check, check_eq, free_port, log, main, scratch
from rltls import make_ca, make_cert, make_node_cert


def q(shell, sql):
    out = shell.sql_ok(sql)
    return "\n".join(l for l in out.splitlines()
                     if not l.startswith("raftlite[")).strip()


def test():
    d = scratch("rlsqltls-")
    make_ca(d, "ca")
    make_node_cert(d, "ca", "node1")
    p = lambda n: os.path.join(d, n)  # noqa: E731
    db = p("node1.db")
    raft, grpc_addr = ("127.0.0.1:%d" % free_port() for _ in range(2))
    s1 = Shell("file:%s?raft_tls_cert=%s&raft_tls_key=%s&raft_tls_ca=%s"
               "&raft_tls_client_auth=1" % (db, p("node1.pem"),
                                            p("node1.key"), p("ca.pem")))
    check_eq(q(s1, "SELECT raft_bootstrap('node1', '%s', '%s');" %
               (raft, grpc_addr)), "node1", "bootstrap over mTLS")

    s2 = Shell(db)  # a client of s1: plain path, TLS from the identity
    check_eq(q(s2, "SELECT raft_leader();"), "node1", "raft_leader over mTLS")
    check_eq(q(s2, "SELECT id || '|' || grpc_addr || '|' || role FROM "
               "raft_nodes;"), "node1|%s|voter" % grpc_addr,
             "raft_nodes over mTLS")
    st = json.loads(q(s2, "PRAGMA raft_status;"))
    check(st["id"] == "node1" and st["state"] == "leader",
          "raft_status over mTLS: %r" % st)
    check_eq(q(s2, "SELECT raft_transfer('node1');"), "node1",
             "raft_transfer to the leader itself over mTLS")
    log("client-process calls over mutual TLS: ok")
    s2.close()
    s1.close()


main(test)
