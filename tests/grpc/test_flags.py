# budget: 60
# asan: yes
"""raftd's Go-style flags: -flag value, -flag=value, --flag value and
--flag=value all work; a bad flag prints the usage and exits 2; -db and
-data place the database at DATA/ID/DB; -max-msg-bytes sets the limit;
SIGINT stops raftd cleanly like SIGTERM."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlgrpc import *  # noqa: F401,F403
import grpc


def run(args):
    return subprocess.run([RAFTD] + args, capture_output=True, text=True,
                          timeout=60)


def test():
    pb, pbg = project_stubs()
    d = scratch()
    port = "127.0.0.1:%d" % free_port()
    for args, needle in (
            ([], "-id is required"),
            (["-id", "a", "-nosuch"], "unknown flag -nosuch"),
            (["-id"], "needs a value"),
            (["-id", "a", "stray"], "unexpected argument"),
            (["-id", "a", "-max-msg-bytes", "12x"], "whole number"),
            (["-id", "a", "-max-msg-bytes=10"], "from 1024"),
            (["-id", "a", "-log-level", "loud"], "-log-level must be"),
            (["-id", "a", "-bootstrap=maybe"], "is a switch"),
            (["-id", "../x"], "the path separator"),
            (["-id", "a", "-db", "../../etc/x"], "plain file name"),
            (["-id", "a", "-tls-ca", "x.pem"], "need -tls-cert"),
            # Addresses are checked before anything starts.
            (["-id", "a", "-grpc", "127.0.0.1:99999"],
             "-grpc '127.0.0.1:99999' needs a numeric port 1..65535"),
            (["-id", "a", "-grpc", "127.0.0.1"], "is not host:port"),
            (["-id", "a", "-bootstrap", "-join", "127.0.0.1:1",
              "-raft", "127.0.0.1:2"], "-bootstrap and -join exclude"),
            (["-id", "a", "-bootstrap", "-raft", "localhost:23010"],
             "names a host; the Raft transport takes a numeric IPv4 "
             "address: write 127.0.0.1:23010"),
            (["-id", "a", "-raft", "127.0.0.1:0", "-bootstrap"],
             "-raft '127.0.0.1:0' needs a numeric port 1..65535"),
            (["-id", "a", "-join", "127.0.0.1:70000", "-raft",
              "127.0.0.1:2"], "-join '127.0.0.1:70000' needs a numeric port")):
        r = run(["-grpc", port, "-data", d] + args)
        check(r.returncode == 2 and needle in r.stderr and
              "usage: raftd" in r.stderr,
              "raftd %s: rc %d, stderr %r" % (args, r.returncode, r.stderr))
    # A gRPC port in use: raftd's own message, no line of the gRPC core's.
    holder = Raftd([], node="holder")
    r = run(["-id", "b", "-grpc", holder.addr, "-data", d])
    check(r.returncode == 1 and holder.addr in r.stderr and
          "chttp2" not in r.stderr and "E1" not in r.stderr.split("raftd")[0],
          "-grpc on a port in use: rc %d, stderr %r" % (r.returncode,
                                                        r.stderr))
    log("port in use: %s" % r.stderr.strip().splitlines()[-1])
    holder.p.terminate()
    holder.p.wait(timeout=30)
    r = run(["-h"])
    check(r.returncode == 0 and "usage: raftd" in r.stdout, "-h")
    r = run(["-id", "a", "-grpc", port, "-data", "/proc/nonexistent/dir"])
    check(r.returncode == 1 and "cannot create data directory" in r.stderr,
          "unwritable -data: %r" % r.stderr)

    # Every spelling of a flag, -db placing the file, -max-msg-bytes.
    n = Raftd(["--db", "other.db", "-max-msg-bytes=65536", "--workers=4",
               "-bootstrap", "--log-level=info",
               "-raft=127.0.0.1:%d" % free_port()], node="n7")
    check(os.path.exists(os.path.join(n.data, "n7", "other.db")),
          "-db other.db under DATA/ID")
    check(os.path.exists(os.path.join(n.data, "n7", "other.db-raft",
                                      "identity")),
          "-bootstrap made the database a node: %s" % n.log())
    r = run(["-id", "a", "-grpc", port, "-bootstrap"])
    check(r.returncode == 2 and "-raft IP:PORT is needed" in r.stderr,
          "-bootstrap without -raft: %r" % r.stderr)
    ch = channel(n.addr)
    s = pbg.DistributedSqliteStub(ch)
    st = s.Status(pb.StatusRequest(), timeout=20)
    check(st.database.endswith("/n7/other.db"), "Status.database %r" %
          st.database)
    try:
        s.ExecuteRead(pb.ReadRequest(sql="SELECT '" + "x" * 70000 + "'"),
                      timeout=20)
        fail("a 70 kB request passed a 64 KiB -max-msg-bytes")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
              "over -max-msg-bytes: %s" % e.code())
    r = s.ExecuteRead(pb.ReadRequest(sql="SELECT zeroblob(40000)"),
                      timeout=20)
    check("result too large" in r.error, "result over 64 KiB: %r" % r.error)
    ch.close()
    n.p.send_signal(signal.SIGINT)
    check(n.p.wait(timeout=60) == 0 and "stopped" in n.log(),
          "SIGINT stops raftd cleanly: %s" % n.log())

    # -grace-ms: a call with no deadline, stuck on a lock held elsewhere,
    # is cancelled once the grace is over and raftd still exits 0.
    n = Raftd(["-grace-ms", "300"], node="n8")
    ch = channel(n.addr)
    s = pbg.DistributedSqliteStub(ch)
    check(s.ExecuteWrite(pb.WriteRequest(sql="CREATE TABLE t(x)"),
                         timeout=20).success, "setup")
    con = sqlite3.connect(n.db, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    stuck = s.ExecuteWrite.future(pb.WriteRequest(
        sql="INSERT INTO t VALUES (1)"))
    time.sleep(0.5)
    check(not stuck.done(), "the write waits for the lock")
    t0 = time.time()
    n.p.terminate()
    rc = n.p.wait(timeout=30)
    took = time.time() - t0
    con.execute("ROLLBACK")
    con.close()
    check(rc == 0 and took < 5, "raftd exited %s %.1fs after SIGTERM with "
          "-grace-ms 300" % (rc, took))
    try:
        r = stuck.result(timeout=10)
        fail("the stuck call got a response: %r" % r)
    except grpc.RpcError as e:
        check(e.code() in (grpc.StatusCode.CANCELLED,
                           grpc.StatusCode.UNAVAILABLE),
              "stuck call ended with %s" % e.code())
    ch.close()


main(test)
