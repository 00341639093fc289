# budget: 60
# asan: yes
"""TLS and mutual TLS from PEM files given by flags (certificates made here
with openssl): plaintext, TLS and mTLS calls work; a client trusting the
wrong CA, a client without a certificate on an mTLS port, and a plaintext
client on a TLS port are refused; under mTLS a client certificate may not
FetchImage (PERMISSION_DENIED naming backup), the node's own certificate
may; bad TLS flags are refused at start. The per-client cap
(-max-client-calls) counts TLS identities: a capped client does not hold
back another certificate from the same address."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlgrpc import *  # noqa: F401,F403
from rltls import make_ca, make_cert, make_node_cert, rd
import grpc


def refused(pbg, pb, addr, creds, what):
    ch = (grpc.secure_channel(addr, creds) if creds
          else grpc.insecure_channel(addr))
    try:
        pbg.DistributedSqliteStub(ch).Status(pb.StatusRequest(), timeout=5)
        fail("%s: the call went through" % what)
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAVAILABLE,
              "%s: status %s (%s), want UNAVAILABLE" % (what, e.code(),
                                                       e.details()))
    finally:
        ch.close()


def test():
    pb, pbg = project_stubs()
    d = scratch("rltls-")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_node_cert(d, "ca", "n1", name="server")
    make_cert(d, "ca", "client", False)
    make_cert(d, "ca", "client2", False)
    make_cert(d, "otherca", "rogue", False)
    p = lambda n: os.path.join(d, n)  # noqa: E731

    # Plaintext (the default).
    n0 = Raftd()
    ch = channel(n0.addr)
    check(pbg.DistributedSqliteStub(ch).Status(pb.StatusRequest(),
                                                timeout=20).node_id == "n1",
          "plaintext call")
    ch.close()
    n0.stop()

    # TLS: server certificate only.
    n1 = Raftd(["-tls-cert", p("server.pem"), "-tls-key", p("server.key")])
    check("(TLS)" in n1.log(), "raftd says it serves TLS: %s" % n1.log())
    good = grpc.ssl_channel_credentials(root_certificates=rd(d, "ca.pem"))
    ch = channel(n1.addr, good)
    s = pbg.DistributedSqliteStub(ch)
    w = s.ExecuteWrite(pb.WriteRequest(sql="CREATE TABLE t(x)"), timeout=20)
    check(w.success, "write over TLS: %r" % w)
    ch.close()
    refused(pbg, pb, n1.addr, grpc.ssl_channel_credentials(
        root_certificates=rd(d, "otherca.pem")), "TLS client trusting the "
        "wrong CA")
    refused(pbg, pb, n1.addr, None, "plaintext client on a TLS port")
    n1.stop()

    # Mutual TLS.
    n2 = Raftd(["-tls-cert", p("server.pem"), "-tls-key", p("server.key"),
                "-tls-ca", p("ca.pem"), "-tls-client-auth",
                "-workers", "4", "-max-client-calls", "1"])
    check("(mutual TLS)" in n2.log(), "raftd says mutual TLS: %s" % n2.log())
    mtls = grpc.ssl_channel_credentials(
        root_certificates=rd(d, "ca.pem"), private_key=rd(d, "client.key"),
        certificate_chain=rd(d, "client.pem"))
    ch = channel(n2.addr, mtls)
    s = pbg.DistributedSqliteStub(ch)
    r = s.ExecuteRead(pb.ReadRequest(sql="SELECT 40 + 2"), timeout=20)
    check(r.result.rows[0].values[0] == b"42", "read over mTLS: %r" % r)
    internal = pbg.RaftliteInternalStub(ch)
    try:
        list(internal.FetchImage(pb.FetchImageRequest(), timeout=20))
        check(False, "FetchImage served to a client certificate")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.PERMISSION_DENIED and
              "'backup'" in e.details() and "'client'" in e.details(),
              "FetchImage of a client certificate: %s %s" % (e.code(),
                                                             e.details()))
    ch.close()
    # The node's own certificate (SAN URI raftlite:node:n1) may stream.
    ch = channel(n2.addr, grpc.ssl_channel_credentials(
        root_certificates=rd(d, "ca.pem"), private_key=rd(d, "server.key"),
        certificate_chain=rd(d, "server.pem")))
    chunks = list(pbg.RaftliteInternalStub(ch).FetchImage(
        pb.FetchImageRequest(), timeout=20))
    check(chunks and chunks[-1].last, "streaming over mTLS")
    ch.close()
    ch = channel(n2.addr, mtls)
    s = pbg.DistributedSqliteStub(ch)
    # The per-client cap counts TLS identities, not addresses: while
    # "client" runs an endless CTE, its second call waits (and is answered
    # naming -max-client-calls) but "client2", from the same address, is
    # served at once.
    cte = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
           "SELECT count(*) FROM c")
    endless = s.ExecuteRead.future(pb.ReadRequest(sql=cte), timeout=30)
    time.sleep(0.5)
    expect_rpc_error(lambda: s.ExecuteRead(pb.ReadRequest(sql="SELECT 1"),
                                           timeout=1.5),
                     grpc.StatusCode.DEADLINE_EXCEEDED, "-max-client-calls",
                     "second call of one TLS identity")
    ch2 = channel(n2.addr, grpc.ssl_channel_credentials(
        root_certificates=rd(d, "ca.pem"), private_key=rd(d, "client2.key"),
        certificate_chain=rd(d, "client2.pem")))
    t0 = time.time()
    r = pbg.DistributedSqliteStub(ch2).ExecuteRead(
        pb.ReadRequest(sql="SELECT 2"), timeout=20)
    check(r.result.rows[0].values[0] == b"2" and time.time() - t0 < 1.0,
          "another TLS identity beside a capped one: %r after %.1fs" %
          (r, time.time() - t0))
    endless.cancel()
    ch2.close()
    ch.close()
    refused(pbg, pb, n2.addr, grpc.ssl_channel_credentials(
        root_certificates=rd(d, "ca.pem")), "mTLS port, no client cert")
    refused(pbg, pb, n2.addr, grpc.ssl_channel_credentials(
        root_certificates=rd(d, "ca.pem"), private_key=rd(d, "rogue.key"),
        certificate_chain=rd(d, "rogue.pem")),
        "mTLS port, client cert from another CA")
    refused(pbg, pb, n2.addr, None, "plaintext client on an mTLS port")
    n2.stop()

    # Bad TLS flags: refused at start with a message naming the cause.
    for args, needle in (
            (["-tls-cert", p("server.pem")], "go together"),
            (["-tls-cert", p("server.pem"), "-tls-key", p("server.key"),
              "-tls-client-auth"], "needs -tls-ca"),
            (["-tls-cert", p("nosuch.pem"), "-tls-key", p("server.key")],
             "cannot open TLS certificate file"),
            (["-tls-cert", p("server.ext"), "-tls-key", p("server.key")],
             "is not PEM")):
        r = subprocess.run([RAFTD, "-id", "x", "-grpc",
                            "127.0.0.1:%d" % free_port(), "-data", d] + args,
                           capture_output=True, text=True, timeout=60)
        check(r.returncode != 0 and needle in r.stderr,
              "raftd %s: rc %d, stderr %r" % (args, r.returncode, r.stderr))


main(test)
