#!/usr/bin/python3
# budget: 120
"""tests/cluster/test_tls_uri.py -- TLS and mutual TLS of the sidecar a
stock shell hosts, from URI parameters of the database name.

Two shells open `file:nodeN.db?raft_tls_cert=..&raft_tls_key=..&
raft_tls_ca=..&raft_tls_client_auth=1` (certificates made here with
openssl; each node certificate is good for serving and for calling peers),
bootstrap and join over mutual TLS, and replicate. A python client with a
client certificate is served; one without a certificate, one trusting
another CA and a plaintext one are refused. Reopened with a plain `.open`
(no parameters) the node keeps its TLS settings (they are stored with its
identity): plaintext is still refused, TLS still served, and its Raft port
still refuses a plaintext AppendEntries (tests/cluster/raft_forge.c: its
term and leader are unchanged).
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))

from rltest import (BUILD, Shell, check, check_eq, free_port, log, main,
                    scratch)
from rlgrpc import project_stubs
from rltls import make_ca, make_cert, make_node_cert, rd

import grpc


def uri(d, name, cert):
    p = lambda n: os.path.join(d, n)  # noqa: E731
    return ("file:%s?raft_tls_cert=%s&raft_tls_key=%s&raft_tls_ca=%s"
            "&raft_tls_client_auth=1" % (p(name + ".db"), p(cert + ".pem"),
                                         p(cert + ".key"), p("ca.pem")))


def status(pb, pbg, addr, creds):
    ch = (grpc.secure_channel(addr, creds) if creds
          else grpc.insecure_channel(addr))
    try:
        return pbg.DistributedSqliteStub(ch).Status(pb.StatusRequest(),
                                                    timeout=10)
    finally:
        ch.close()


def refused(pb, pbg, addr, creds, what):
    try:
        status(pb, pbg, addr, creds)
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAVAILABLE,
              "%s: status %s (%s), want UNAVAILABLE" % (what, e.code(),
                                                       e.details()))
        return
    check(False, "%s: the call went through" % what)


def test():
    pb, pbg = project_stubs()
    d = scratch("rltlsuri-")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_node_cert(d, "ca", "node1")
    make_node_cert(d, "ca", "node2")
    make_cert(d, "ca", "client", False)
    make_cert(d, "otherca", "rogue", False)
    ports = [free_port() for _ in range(4)]
    raft = ["127.0.0.1:%d" % p for p in ports[:2]]
    grpc_addr = ["127.0.0.1:%d" % p for p in ports[2:]]

    s1 = Shell(uri(d, "node1", "node1"))
    check_eq(s1.sql_ok("SELECT raft_bootstrap('node1', '%s', '%s');" %
                       (raft[0], grpc_addr[0])).strip(), "node1", "bootstrap")
    s1.sql_ok("CREATE TABLE t(x); INSERT INTO t VALUES ('over mTLS');")
    s2 = Shell(uri(d, "node2", "node2"))
    check_eq(s2.sql_ok("SELECT raft_join('node2', '%s', '%s', '%s');" %
                       (raft[1], grpc_addr[1], grpc_addr[0])).strip(),
             "node2", "join over mutual TLS")
    check_eq(s2.sql_ok("SELECT x FROM t;").strip(), "over mTLS",
             "replicated to the node that joined over mTLS")

    good = grpc.ssl_channel_credentials(rd(d, "ca.pem"), rd(d, "client.key"),
                                        rd(d, "client.pem"))
    for a in grpc_addr:
        st = status(pb, pbg, a, good)
        check(st.node_id in ("node1", "node2"), "mTLS Status on %s" % a)
    refused(pb, pbg, grpc_addr[0],
            grpc.ssl_channel_credentials(rd(d, "ca.pem")),
            "no client certificate")
    refused(pb, pbg, grpc_addr[0],
            grpc.ssl_channel_credentials(rd(d, "otherca.pem"),
                                         rd(d, "rogue.key"),
                                         rd(d, "rogue.pem")),
            "client trusting another CA")
    refused(pb, pbg, grpc_addr[1], None, "plaintext to an mTLS sidecar")

    # Reopened without parameters: the stored TLS settings still apply.
    s2.close()
    s2 = Shell(os.path.join(d, "node2.db"))
    s1.sql_ok("INSERT INTO t VALUES ('after reopen');")
    deadline = time.time() + 20
    while s2.sql_ok("SELECT count(*) FROM t;").strip() != "2":
        check(time.time() < deadline,
              "node2 reopened did not catch up over mTLS")
        time.sleep(0.2)
    check_eq(status(pb, pbg, grpc_addr[1], good).node_id, "node2",
             "TLS kept after a plain .open")
    refused(pb, pbg, grpc_addr[1], None, "plaintext after a plain .open")
    # The stored settings secure Raft too: a plaintext AppendEntries posing
    # as leader 999 at term 1000 (tests/cluster/raft_forge.c) is refused.
    term = status(pb, pbg, grpc_addr[1], good).term
    forge = os.path.join(BUILD, "tests", "tools", "raft_forge")
    r = subprocess.run([forge, scratch("rlforge-"), raft[1], "1000000"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "raft_forge: %s%s" % (r.stdout, r.stderr))
    time.sleep(0.5)
    st = status(pb, pbg, grpc_addr[1], good)
    check(st.term == term and st.leader_id == "node1",
          "node2 after a plaintext AppendEntries: term %d (was %d), leader "
          "%r" % (st.term, term, st.leader_id))
    log("mTLS from URI parameters: join, replication, refusals, kept on "
        "reopen")
    s1.close()
    s2.close()


main(test)
