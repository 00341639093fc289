#!/usr/bin/python3
# budget: 120
# asan: yes
"""tests/cluster/test_raft_tls.py -- Raft traffic in mutual TLS (issue 16).

Certificates made here with openssl: a cluster CA and another CA; node
certificates (SAN URI raftlite:node:<id>) for n1..n4 and for n9 (not a
member) from the cluster CA, a client certificate (raftlite:client:app)
from it too, and a certificate naming node n2 from the other CA.

Three raftd with -tls-cert/-tls-key/-tls-ca/-tls-client-auth: Raft and gRPC
both in mutual TLS. Writes replicate to every node (STRONG reads).

Attacks on a follower's Raft port, each with build/tests/tools/raft_forge
(one AppendEntries posing as leader 999 at term 1000, encoded by libraft,
its entry by the project's encoders):
  * in plaintext (the attack of issue 16): refused, the follower logs that
    the TLS handshake failed;
  * in TLS with the node certificate of the other CA: refused, the log
    says the peer certificate was refused;
  * in TLS with the client certificate of the cluster CA: refused, "not a
    node certificate";
  * in TLS with n9's node certificate, claiming raft id 999 in the
    preamble: refused, the preamble claims another node's id.
After each, the follower's term, leader and data are unchanged and the
cluster takes writes. Control: the same plaintext forgery against a
plaintext raftd does move its term to 1000 or beyond (so the check can
fail).

Then kill -9 of the leader: a new leader takes over and writes resume;
1,100 more writes (the log is compacted), n4 joins and catches up by a
database image and the log; the killed node is removed from the members; the
survivors stop cleanly (exit 0; under ASan, no leak).
"""
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "poc"))

from rlpoc import (BUILD, SLOW, Api, Raftd, check, check_eq, free_port,
                   log, scratch, wait_for)
from rlgrpc import project_stubs
from rltls import make_ca, make_cert, make_node_cert

import grpc

FORGE = os.path.join(BUILD, "tests", "tools", "raft_forge")


def forge(d, raft_addr, cert=None):
    """Runs raft_forge against raft_addr (TLS with cert's files, trusting
    both CAs, when cert is given): its one line of output."""
    work = scratch("rlforge-")
    argv = [FORGE, work, raft_addr, "1000000"]
    if cert:
        argv += [os.path.join(d, cert + ".pem"), os.path.join(d, cert + ".key"),
                 os.path.join(d, "both.pem")]
    r = subprocess.run(argv, capture_output=True, text=True,
                       timeout=30 * SLOW)
    check(r.returncode == 0, "raft_forge %s: exit %d\n%s%s" % (
        argv, r.returncode, r.stdout, r.stderr))
    return r.stdout.strip()


def test():
    check(os.path.exists(FORGE), "%s missing (make unit-bins)" % FORGE)
    pb, pbg = project_stubs()
    d = scratch("rlrafttls-")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    for n in ("n1", "n2", "n3", "n4", "n9"):
        make_node_cert(d, "ca", n)
    make_node_cert(d, "otherca", "n2", name="rogue")
    make_cert(d, "ca", "app", False, uri="raftlite:client:app")
    with open(os.path.join(d, "both.pem"), "wb") as f:
        for ca in ("ca.pem", "otherca.pem"):
            with open(os.path.join(d, ca), "rb") as g:
                f.write(g.read())

    names = ["n1", "n2", "n3", "n4"]
    g = {n: "127.0.0.1:%d" % free_port() for n in names}
    r = {n: "127.0.0.1:%d" % free_port() for n in names}

    def start(n, join=None):
        p = os.path.join(d, n)
        argv = (["raftd", "-id", n, "-grpc", g[n], "-raft", r[n], "-data",
                 "./data", "-tls-cert", p + ".pem", "-tls-key", p + ".key",
                 "-tls-ca", os.path.join(d, "ca.pem"), "-tls-client-auth"] +
                (["-join", g[join]] if join else ["-bootstrap"]))
        return Raftd(argv, d, n).wait_serving()

    nodes = {"n1": start("n1")}
    nodes["n2"] = start("n2", "n1")
    nodes["n3"] = start("n3", "n1")
    with open(os.path.join(d, "ca.pem"), "rb") as f1, \
            open(os.path.join(d, "n1.key"), "rb") as f2, \
            open(os.path.join(d, "n1.pem"), "rb") as f3:
        creds = grpc.ssl_channel_credentials(f1.read(), f2.read(), f3.read())
    api = Api(pb, pbg, creds)

    check(api.write(g["n1"], "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
          .success, "create over mTLS")
    for k in range(10):
        w = api.write(g[names[k % 3]], "INSERT INTO t VALUES (%d, 'v')" % k)
        check(w.success, "write %d: %r" % (k, w))
    for n in ("n1", "n2", "n3"):
        check_eq(api.read(g[n], "SELECT count(*) FROM t", strong=True),
                 [["10"]], "STRONG read on %s" % n)
        check("Raft traffic is plaintext" not in nodes[n].log(),
              "%s runs Raft in TLS:\n%s" % (n, nodes[n].log()[-3000:]))
    log("3 nodes, Raft and gRPC in mutual TLS: writes replicate")

    # --- the attacks, on follower n2 ---
    check_eq(api.status(g["n1"]).state, "leader", "n1's state")
    before = api.status(g["n2"])
    check(before.term < 1000, "n2's term %d" % before.term)
    count = 10

    def unharmed(what, needle):
        nonlocal count
        wait_for("n2 to log why it refused %s" % what,
                 lambda: needle in nodes["n2"].log(), timeout=10)
        st = api.status(g["n2"])
        check(st.term == before.term and st.leader_id == "n1",
              "after %s: n2 at term %d, leader %r (before: term %d, n1)" % (
                  what, st.term, st.leader_id, before.term))
        w = api.write(g["n2"], "INSERT INTO t VALUES (%d, 'after')" % count)
        check(w.success, "a write after %s: %r" % (what, w))
        count += 1
        for n in ("n1", "n2", "n3"):
            check_eq(api.read(g[n], "SELECT count(*), min(v) FROM t",
                              strong=True), [[str(count), "after"]],
                     "rows on %s after %s" % (n, what))
        log("%s: refused (%s), nothing changed" % (what, needle))

    out = forge(d, r["n2"])
    unharmed("a plaintext AppendEntries (%s)" % out,
             "Raft TLS: connection from 127.0.0.1 refused: TLS handshake")
    forge(d, r["n2"], "rogue")
    unharmed("a node certificate of another CA",
             "peer certificate refused")
    forge(d, r["n2"], "app")
    unharmed("a client certificate of the cluster CA",
             "peer certificate of 'app' is not a node certificate")
    forge(d, r["n2"], "n9")
    unharmed("n9's certificate claiming raft id 999",
             "certificate of node 'n9' but the preamble claims raft id 999")

    # Control: the same forgery fools a plaintext node.
    cg, cr = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()
    plain = Raftd(["raftd", "-id", "c1", "-grpc", cg, "-raft", cr, "-data",
                   "./control", "-bootstrap"], d, "c1").wait_serving()
    papi = Api(pb, pbg)
    t0 = papi.status(cg).term
    check(t0 < 1000, "control term %d" % t0)
    out = forge(d, cr)
    check_eq(out, "sent", "the forgery reached the plaintext node")
    wait_for("the plaintext node to adopt the forged term",
             lambda: papi.status(cg).term >= 1000, timeout=10)
    papi.close()
    plain.stop()
    log("control: the plaintext node moved from term %d to >= 1000" % t0)

    # --- kill -9 of the leader, a join, a removal, all over TLS ---
    nodes["n1"].kill9()
    t0 = time.time()

    def new_leader():
        for n in ("n2", "n3"):
            try:
                st = api.status(g[n], timeout=2)
            except api.grpc.RpcError:
                continue
            if st.state == "leader":
                return n
        return None
    lead = wait_for("a new leader after kill -9 of n1", new_leader,
                    timeout=20)

    def write_ok():
        try:
            return api.write(g[lead], "INSERT INTO t VALUES (%d, 'k')" %
                             count, timeout=3).success
        except api.grpc.RpcError:
            return False
    wait_for("a write through the new leader", write_ok, timeout=20)
    count += 1
    log("kill -9 of n1: %s leads after %.1fs, writes resume" % (
        lead, time.time() - t0))

    # Past raft's snapshot threshold (1024 entries): the log is compacted,
    # so n4 catches up by a database image (FetchImage over mTLS) and the
    # rest of the log over Raft in TLS.
    stub, t0, k0 = api.stub(g[lead]), time.time(), count
    while count < k0 + 1100:
        futs = [stub.ExecuteWrite.future(pb.WriteRequest(
            sql="INSERT INTO t VALUES (%d, 'c')" % (count + i)),
            timeout=30 * SLOW) for i in range(16)]
        for f in futs:
            check(f.result().success, "bulk write: %r" % f.result())
        count += len(futs)
    log("%d writes through %s in %.1fs" % (count - k0, lead,
                                          time.time() - t0))
    nodes["n4"] = start("n4", lead)
    wait_for("n4 to catch up", lambda: api.read(
        g["n4"], "SELECT count(*) FROM t", strong=True) == [[str(count)]],
        timeout=30)
    check("installed a database image" in nodes["n4"].log(),
          "n4 caught up by an image:\n%s" % nodes["n4"].log()[-3000:])
    log("n4 joined and caught up over TLS (an image, then the log)")

    rm = api.stub(g[lead]).Remove(pb.RemoveRequest(node_id="n1"),
                                  timeout=20 * SLOW)
    check(rm.success, "Remove n1: %r" % rm)
    wait_for("n4 to see the members n2, n3, n4",
             lambda: set(api.members(g["n4"])) == {"n2", "n3", "n4"},
             timeout=10)
    for k in range(5):
        w = api.write(g[["n2", "n3", "n4"][k % 3]],
                      "INSERT INTO t VALUES (%d, 'z')" % count)
        check(w.success, "write after the removal: %r" % w)
        count += 1
    for n in ("n2", "n3", "n4"):
        check_eq(api.read(g[n], "SELECT count(*) FROM t", strong=True),
                 [[str(count)]], "rows on %s at the end" % n)
    log("n1 removed; n2, n3, n4 replicate")
    api.close()
    for n in ("n2", "n3", "n4"):
        nodes[n].stop(signal.SIGTERM)


if __name__ == "__main__":
    from rltest import main
    main(test)
