# budget: 120
# asan: yes
"""Identities and permissions on the gRPC API (issue 16), with real raftd
processes and certificates made here with the openssl CLI (a CA, node
certificates with the SAN URI raftlite:node:nX, client certificates by CN
and by SAN URI raftlite:client:NAME) and an auth file with crypt(3)
password hashes (openssl passwd -6).

Two nodes n1, n2 under mutual TLS with -auth: a client certificate cannot
Join, Remove, Transfer, FetchImage, ForwardTxn, ForwardSession or
ReadIndex (PERMISSION_DENIED naming the permission and the certificate);
the certificate of a node that is not a member cannot call ReadIndex,
ForwardTxn, ForwardSession, FetchImage or Remove, nor Join under another node's id; a
Join of that node with a dead Raft address is refused by the leader and
leaves no member behind; a user without `write` cannot ExecuteWrite, a
user with it can; a wrong password is UNAUTHENTICATED; an operator's
certificate with `admin` transfers leadership. A plaintext raftd with the
same auth file refuses a password (UNAUTHENTICATED, "over TLS only"). A
non-loopback -grpc or -raft without TLS is refused at start naming
-insecure, and served with it; the extension refuses raft_bootstrap on a
non-loopback Raft address naming raft_insecure=1. A shell-hosted node
with raft_auth= (and mutual TLS from raft_tls_*) enforces the file, and
still after a reopen without parameters. An auth file readable
by others, or with a bad line, stops raftd naming chmod 600 or FILE:LINE.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlgrpc import *  # noqa: F401,F403
from rltest import Shell
from rltls import make_ca, make_cert, make_node_cert, rd
import grpc
import queue

T = 20 * SAN_SLOW
PD = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED


def pw_hash(d, pw):
    r = subprocess.run(["openssl", "passwd", "-6", "-salt", "rlsalt", pw],
                       cwd=d, capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.startswith("$6$"),
          "openssl passwd: %r %r" % (r.stdout, r.stderr))
    return r.stdout.strip()


def creds(d, name):
    return grpc.ssl_channel_credentials(
        root_certificates=rd(d, "ca.pem"), private_key=rd(d, name + ".key"),
        certificate_chain=rd(d, name + ".pem"))


class Stubs:
    def __init__(self, pb, pbg, addr, cred):
        self.ch = channel(addr, cred)
        self.pub = pbg.DistributedSqliteStub(self.ch)
        self.intl = pbg.RaftliteInternalStub(self.ch)

    def close(self):
        self.ch.close()


def run_raftd(args, timeout=30):
    return subprocess.run([RAFTD] + args, capture_output=True, text=True,
                          timeout=timeout)


def session_reauth(pb, pbg, d, n1, n2):
    """A forward session is authorized again once a second passed: n1's
    node certificate opens one on the leader n2 while n1 is a member; n1
    is removed; the session's next transaction, 1.5 s later, is refused
    PERMISSION_DENIED (not read: the same transport-only chunk on a
    session of a member is INVALID_ARGUMENT)."""
    chunk = pb.TxnChunk(offset=0, total_length=1, data=b"x", last=True)
    s1 = Stubs(pb, pbg, n2.addr, creds(d, "n1"))
    det = expect_rpc_error(lambda: list(s1.intl.ForwardSession(
        iter([chunk]), timeout=T)), grpc.StatusCode.INVALID_ARGUMENT,
        "ForwardTxn", "a member's session, transport-only chunk")
    q = queue.Queue()

    def reqs():
        while True:
            item = q.get()
            if item is None:
                return
            yield item
    call = s1.intl.ForwardSession(reqs(), timeout=T)
    time.sleep(0.5)  # the session is open and authorized
    ops = Stubs(pb, pbg, n2.addr, creds(d, "opscert"))
    r = ops.pub.Remove(pb.RemoveRequest(node_id="n1"), timeout=T)
    check(r.success, "ops removes n1: %r" % r)
    ops.close()
    time.sleep(1.5)
    q.put(chunk)
    try:
        got = next(call)
        check(False, "a removed node's session took a transaction: %r" % got)
    except grpc.RpcError as e:
        check(e.code() == PD and "not a member" in e.details(),
              "a removed node's session is refused: %s %s (a member's: %s)"
              % (e.code(), e.details(), det))
    q.put(None)
    s1.close()
    log("a forward session of a node removed meanwhile is refused at its "
        "next transaction")


def test():
    pb, pbg = project_stubs()
    d = scratch("rlauth-")
    make_ca(d, "ca")
    for n in ("n1", "n2", "n9"):
        make_node_cert(d, "ca", n)
    make_cert(d, "ca", "app", False)  # a client by its CN
    make_cert(d, "ca", "opscert", False, uri="raftlite:client:ops")
    p = lambda n: os.path.join(d, n)  # noqa: E731
    auth = p("auth.conf")
    with open(auth, "w") as f:
        f.write("# users and certificates of this test\n"
                "user alice %s read,status\n"
                "user bob %s read,write,status\n"
                "cert app read,write,status\n"
                "cert ops admin,status\n"
                % (pw_hash(d, "alice-pw"), pw_hash(d, "bob-pw")))
    os.chmod(auth, 0o600)

    def tls(n):
        return ["-tls-cert", p(n + ".pem"), "-tls-key", p(n + ".key"),
                "-tls-ca", p("ca.pem"), "-tls-client-auth", "-auth", auth]
    data = scratch("rlauthdata-")
    n1 = Raftd(["-raft", "127.0.0.1:%d" % free_port(), "-bootstrap"] +
               tls("n1"), node="n1", data=data)
    n2 = Raftd(["-raft", "127.0.0.1:%d" % free_port(), "-join", n1.addr] +
               tls("n2"), node="n2", data=data)
    check("(mutual TLS)" in n2.log(), "n2 serves mutual TLS:\n%s" % n2.log())
    log("n1 and n2 under mutual TLS with -auth; n2 joined with its node "
        "certificate")

    # The application's certificate: read, write, status; nothing else.
    app = Stubs(pb, pbg, n1.addr, creds(d, "app"))
    w = app.pub.ExecuteWrite(pb.WriteRequest(
        sql="CREATE TABLE t(x); INSERT INTO t VALUES ('ok')"), timeout=T)
    check(w.success, "write with the app certificate: %r" % w)
    denied = (
        ("Join", lambda: app.pub.Join(pb.JoinRequest(
            node_id="app", raft_addr="127.0.0.1:1", grpc_addr="x:1"),
            timeout=T), "'admin'"),
        ("Remove", lambda: app.pub.Remove(pb.RemoveRequest(node_id="n2"),
                                          timeout=T), "'admin'"),
        ("Transfer", lambda: app.pub.Transfer(
            pb.TransferRequest(node_id="n2"), timeout=T), "'admin'"),
        ("FetchImage", lambda: list(app.intl.FetchImage(
            pb.FetchImageRequest(name="@image"), timeout=T)), "'backup'"),
        ("ForwardTxn", lambda: app.intl.ForwardTxn(iter([pb.TxnChunk(
            offset=0, total_length=1, data=b"x", last=True)]), timeout=T),
            "'node'"),
        ("ForwardSession", lambda: list(app.intl.ForwardSession(iter([
            pb.TxnChunk(offset=0, total_length=1, data=b"x", last=True)]),
            timeout=T)), "'node'"),
        ("ReadIndex", lambda: app.intl.ReadIndex(pb.ReadIndexRequest(),
                                                 timeout=T), "'node'"),
    )
    for name, fn, perm in denied:
        det = expect_rpc_error(fn, PD, perm, "%s with a client certificate"
                               % name)
        check(name in det and "client certificate 'app'" in det,
              "%s: the refusal names the method and the caller: %r"
              % (name, det))
    check_eq(len(n1_nodes(pb, app)), 2, "members after the refusals")
    log("a client certificate: Join, Remove, Transfer, FetchImage, "
        "ForwardTxn, ForwardSession, ReadIndex refused (PERMISSION_DENIED "
        "naming the "
        "permission)")

    # A node certificate of the CA that is not a member.
    n9 = Stubs(pb, pbg, n1.addr, creds(d, "n9"))
    for name, fn in (
            ("ReadIndex", lambda: n9.intl.ReadIndex(pb.ReadIndexRequest(),
                                                    timeout=T)),
            ("ForwardTxn", lambda: n9.intl.ForwardTxn(iter([pb.TxnChunk(
                offset=0, total_length=1, data=b"x", last=True)]),
                timeout=T)),
            ("ForwardSession", lambda: list(n9.intl.ForwardSession(iter([
                pb.TxnChunk(offset=0, total_length=1, data=b"x",
                            last=True)]), timeout=T))),
            ("FetchImage", lambda: list(n9.intl.FetchImage(
                pb.FetchImageRequest(name="@image"), timeout=T))),
            ("Remove", lambda: n9.pub.Remove(pb.RemoveRequest(node_id="n2"),
                                             timeout=T))):
        expect_rpc_error(fn, PD, "node 'n9' (not a member",
                         "%s with a non-member node certificate" % name)
    expect_rpc_error(lambda: n9.pub.Join(pb.JoinRequest(
        node_id="n2x", raft_addr="127.0.0.1:1", grpc_addr="127.0.0.1:2"),
        timeout=T), PD, "may join only as 'n9'", "Join under another id")
    # Its own Join with a Raft address nobody listens on: refused before
    # the configuration changes (the stale member of the review).
    dead = "127.0.0.1:%d" % free_port()
    r = n9.pub.Join(pb.JoinRequest(node_id="n9", raft_addr=dead,
                                   grpc_addr="127.0.0.1:%d" % free_port()),
                    timeout=T)
    check(not r.success and "cannot be reached" in r.error and dead in
          r.error, "Join with a dead raft address: %r" % r)
    ids = sorted(x.node_id for x in n1_nodes(pb, app))
    check_eq(ids, ["n1", "n2"], "no stale member after the dead Join")
    n9.close()
    log("a non-member node certificate: member-only RPCs refused; a Join "
        "with a dead raft address refused, no stale member")

    # Users with passwords (metadata over TLS).
    def md(user, pw):
        return (("x-raftlite-user", user), ("x-raftlite-password", pw))
    det = expect_rpc_error(lambda: app.pub.ExecuteWrite(
        pb.WriteRequest(sql="INSERT INTO t VALUES ('alice')"), timeout=T,
        metadata=md("alice", "alice-pw")), PD, "permission 'write'",
        "ExecuteWrite of a user without write")
    check("user 'alice'" in det, "names the user: %r" % det)
    rr = app.pub.ExecuteRead(pb.ReadRequest(sql="SELECT count(*) FROM t"),
                             timeout=T, metadata=md("alice", "alice-pw"))
    check(rr.result.rows[0].values[0] == b"1", "alice reads: %r" % rr)
    w = app.pub.ExecuteWrite(pb.WriteRequest(
        sql="INSERT INTO t VALUES ('bob')"), timeout=T,
        metadata=md("bob", "bob-pw"))
    check(w.success, "ExecuteWrite of a user with write: %r" % w)
    expect_rpc_error(lambda: app.pub.ExecuteRead(
        pb.ReadRequest(sql="SELECT 1"), timeout=T,
        metadata=md("bob", "alice-pw")), UNAUTH, "wrong password",
        "a wrong password")
    app.close()
    # The same through demo/client.py -user (password from the
    # environment).
    cli = [PY, os.path.join(ROOT, "demo", "client.py"), "-addr", n1.addr,
           "-tls-ca", p("ca.pem"), "-tls-cert", p("app.pem"), "-tls-key",
           p("app.key"), "-sql", "INSERT INTO t VALUES ('cli')"]
    env = dict(os.environ, RAFTLITE_PASSWORD="alice-pw")
    r = subprocess.run(cli + ["-user", "alice"], env=env,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "PERMISSION_DENIED" in r.stderr and
          "user 'alice'" in r.stderr, "client.py -user alice: %d %r"
          % (r.returncode, r.stderr))
    env["RAFTLITE_PASSWORD"] = "bob-pw"
    r = subprocess.run(cli + ["-user", "bob"], env=env,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and r.stdout == "ok\n",
          "client.py -user bob: %d %r %r" % (r.returncode, r.stdout,
                                              r.stderr))
    log("users: no write without 'write'; bob writes (stubs and "
        "demo/client.py -user); a wrong password is UNAUTHENTICATED")

    # An operator's certificate (SAN URI raftlite:client:ops) with admin.
    ops = Stubs(pb, pbg, n1.addr, creds(d, "opscert"))
    tr = ops.pub.Transfer(pb.TransferRequest(node_id="n2"), timeout=T)
    check(tr.success and tr.leader_id == "n2", "Transfer by ops: %r" % tr)
    expect_rpc_error(lambda: ops.pub.ExecuteRead(
        pb.ReadRequest(sql="SELECT 1"), timeout=T), PD,
        "client certificate 'ops'", "ops has no read")
    ops.close()
    # The write forwarded by the follower n1 to the new leader n2 (node to
    # node under mutual TLS) still goes through.
    app = Stubs(pb, pbg, n1.addr, creds(d, "app"))
    deadline = time.time() + T
    while True:
        w = app.pub.ExecuteWrite(pb.WriteRequest(
            sql="INSERT INTO t VALUES ('after transfer')"), timeout=T)
        if w.success or time.time() > deadline:
            break
        time.sleep(0.2)
    check(w.success, "a write through the follower after the transfer: %r"
          % w)
    app.close()
    session_reauth(pb, pbg, d, n1, n2)
    n2.stop()
    n1.stop()
    log("ops (admin) transferred leadership; forwarded writes go on")

    # Passwords are refused over plaintext (nothing checks them there).
    plain = Raftd(["-auth", auth], node="p1")
    ch = channel(plain.addr)
    expect_rpc_error(lambda: pbg.DistributedSqliteStub(ch).ExecuteRead(
        pb.ReadRequest(sql="SELECT 1"), timeout=T,
        metadata=md("bob", "bob-pw")), UNAUTH, "over TLS only",
        "a password over plaintext")
    ch.close()
    plain.stop()
    log("a password over plaintext: UNAUTHENTICATED")

    # Safe by default: non-loopback addresses need TLS or -insecure.
    for args, flag in ((["-grpc", "0.0.0.0:%d" % free_port()], "-grpc"),
                       (["-grpc", ":%d" % free_port()], "-grpc"),
                       (["-grpc", "127.0.0.1:%d" % free_port(), "-raft",
                         "0.0.0.0:%d" % free_port(), "-bootstrap"], "-raft")):
        r = run_raftd(["-id", "x", "-data", scratch("rlauthx-")] + args)
        check(r.returncode == 1 and "-insecure" in r.stderr and flag in
              r.stderr and "not a loopback address" in r.stderr,
              "%s without TLS: %d %r" % (args, r.returncode, r.stderr))
    port = free_port()
    ins = Raftd(["-insecure", "-grpc", "0.0.0.0:%d" % port], node="i2")
    ch = channel("127.0.0.1:%d" % port)
    check(pbg.DistributedSqliteStub(ch).Status(
        pb.StatusRequest(), timeout=T).node_id == "i2",
        "-insecure: served on every interface")
    ch.close()
    ins.stop()
    s = Shell(None)
    s.sql(".open file:%s?raft_insecure=0" % p("x.db"))
    out = s.sql("SELECT raft_bootstrap('x', '0.0.0.0:%d', '127.0.0.1:%d');"
                % (free_port(), free_port()))
    check("raft_insecure=1" in out and "not a loopback address" in out,
          "raft_bootstrap on 0.0.0.0 without TLS: %r" % out)
    check(not os.path.exists(p("x.db-raft")), "nothing left behind")
    s.close()
    log("non-loopback without TLS refused naming -insecure / raft_insecure=1;"
        " served with -insecure")

    # A shell-hosted node: raft_auth= among the URI parameters, kept with
    # its identity (a reopen without parameters still enforces it).
    sauth = p("shell-auth.conf")
    with open(sauth, "w") as f:
        f.write("cert app read,status\n")
    os.chmod(sauth, 0o600)
    sdb = p("n1s.db")
    sg = "127.0.0.1:%d" % free_port()
    s = Shell("file:%s?raft_tls_cert=%s&raft_tls_key=%s&raft_tls_ca=%s"
              "&raft_tls_client_auth=1&raft_auth=%s"
              % (sdb, p("n1.pem"), p("n1.key"), p("ca.pem"), sauth))
    s.sql_ok("SELECT raft_bootstrap('n1', '127.0.0.1:%d', '%s');"
             % (free_port(), sg))
    for k in range(2):
        app = Stubs(pb, pbg, sg, creds(d, "app"))
        rr = app.pub.ExecuteRead(pb.ReadRequest(sql="SELECT 7"), timeout=T)
        check(rr.result.rows[0].values[0] == b"7", "app reads: %r" % rr)
        expect_rpc_error(lambda: app.pub.ExecuteWrite(pb.WriteRequest(
            sql="CREATE TABLE u(x)"), timeout=T), PD,
            "permission 'write'", "raft_auth: app may not write (open %d)"
            % k)
        app.close()
        s.close()
        if k == 0:
            s = Shell(sdb)  # restarts the node from its stored identity
    log("raft_auth= of a shell-hosted node, kept across a reopen")

    # The auth file: private, and every line understood.
    os.chmod(auth, 0o644)
    r = run_raftd(["-id", "y", "-data", scratch("rlauthy-"), "-grpc",
                   "127.0.0.1:%d" % free_port(), "-auth", auth])
    check(r.returncode == 1 and "chmod 600" in r.stderr,
          "a world-readable auth file: %d %r" % (r.returncode, r.stderr))
    bad = p("bad.conf")
    with open(bad, "w") as f:
        f.write("cert app read\ncert app2 read,delete\n")
    os.chmod(bad, 0o600)
    r = run_raftd(["-id", "y", "-data", scratch("rlauthy-"), "-grpc",
                   "127.0.0.1:%d" % free_port(), "-auth", bad])
    check(r.returncode == 1 and "%s:2: unknown permission 'delete'" % bad
          in r.stderr, "a bad line: %d %r" % (r.returncode, r.stderr))
    log("auth file mode 644 refused naming chmod 600; a bad line names "
        "FILE:LINE")


def n1_nodes(pb, stubs):
    return stubs.pub.Nodes(pb.NodesRequest(), timeout=T).nodes


main(test)
