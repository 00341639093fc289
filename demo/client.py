#!/usr/bin/python3
"""demo/client.py -- a small command-line gRPC client of raftlite (and of
any server of distributed-sqlite-poc's API), the counterpart of the PoC's
dsqlite-client:

    demo/client.py -addr 127.0.0.1:50051 -sql "CREATE TABLE demo (...)"
    demo/client.py -addr 127.0.0.1:50052 -sql "SELECT * FROM demo" -strong
    demo/client.py -addr 127.0.0.1:50053 -nodes

SQL that starts with SELECT, WITH, VALUES or EXPLAIN goes to ExecuteRead
(EVENTUAL: the node reads its own database; -strong asks for a STRONG
read, which first waits until the node applied everything committed before
the call), anything else to ExecuteWrite (a follower forwards it to the
leader). A read prints the column names and then one line per row, values
separated by '|' as the sqlite3 shell does (NULL as an empty field).
-nodes, -leader and -status print the cluster as the node sees it.
-tls-ca (and -tls-cert/-tls-key for mutual TLS) talk to a node started
with raftd's -tls-* flags; plaintext otherwise. -user NAME sends a user of
the node's auth file (README "Security"), its password taken from
$RAFTLITE_PASSWORD or asked for; over TLS only.

The stubs are generated when the client starts from proto/raftlite.proto
(or from the file -proto names, e.g. the PoC's frozen proto, which has
only ExecuteWrite, ExecuteRead and Join) with grpc_tools.protoc, into a
temporary directory removed once they are imported; it needs the Debian packages python3-grpcio and
python3-grpc-tools. Exit status: 0 ok, 1 the server refused (the error is
printed on stderr), 2 bad usage, 3 the server could not be reached.
"""
import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.realpath(__file__))
DEFAULT_PROTO = os.path.join(HERE, "..", "proto", "raftlite.proto")
READ_WORDS = ("SELECT", "WITH", "VALUES", "EXPLAIN")


def load_stubs(proto):
    """(messages module, services module) generated from proto by
    grpc_tools.protoc into a temporary directory (removed before return:
    the modules are imported by then)."""
    import importlib
    import subprocess
    tmp = tempfile.mkdtemp(prefix="rlclient-")
    try:
        with open(proto) as f, open(os.path.join(tmp, "rlapi.proto"),
                                    "w") as g:
            g.write(f.read())
        r = subprocess.run([sys.executable, "-m", "grpc_tools.protoc",
                            "-I", tmp, "--python_out", tmp,
                            "--grpc_python_out", tmp,
                            os.path.join(tmp, "rlapi.proto")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("error: cannot generate stubs from %s (needs "
                     "python3-grpc-tools):\n%s" % (proto, r.stderr))
        sys.path.insert(0, tmp)
        try:
            return (importlib.import_module("rlapi_pb2"),
                    importlib.import_module("rlapi_pb2_grpc"))
        finally:
            sys.path.remove(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_read(sql):
    words = sql.lstrip(" \t\r\n(").split(None, 1)
    return bool(words) and words[0].upper() in READ_WORDS


def show_value(v):
    return v.decode("utf-8", errors="replace")


def main():
    ap = argparse.ArgumentParser(
        prog="client.py", description="raftlite gRPC client")
    ap.add_argument("-addr", required=True,
                    help="a node's gRPC address HOST:PORT")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("-sql", help="one SQL text to run")
    what.add_argument("-nodes", action="store_true",
                      help="list the cluster's members")
    what.add_argument("-leader", action="store_true",
                      help="print the leader's id and gRPC address")
    what.add_argument("-status", action="store_true",
                      help="print the node's Raft status")
    ap.add_argument("-strong", action="store_true",
                    help="STRONG read (linearizable) instead of EVENTUAL")
    ap.add_argument("-proto", default=DEFAULT_PROTO,
                    help="proto file to generate the stubs from")
    ap.add_argument("-timeout", type=float, default=20.0,
                    help="seconds to wait for the server (default 20)")
    ap.add_argument("-tls-ca", dest="tls_ca",
                    help="CA (PEM) of the server's certificate: use TLS")
    ap.add_argument("-tls-cert", dest="tls_cert",
                    help="client certificate (PEM), for mutual TLS")
    ap.add_argument("-tls-key", dest="tls_key",
                    help="client private key (PEM), for mutual TLS")
    ap.add_argument("-user",
                    help="a user of the node's auth file; the password comes "
                    "from $RAFTLITE_PASSWORD or is asked for (TLS only)")
    a = ap.parse_args()
    if (a.tls_cert is None) != (a.tls_key is None):
        ap.error("-tls-cert and -tls-key go together")
    if a.tls_cert and not a.tls_ca:
        ap.error("-tls-cert needs -tls-ca (TLS is on only with -tls-ca)")
    a.md = None
    if a.user:
        if not a.tls_ca:
            ap.error("-user needs TLS (-tls-ca): a node refuses passwords "
                     "over plaintext")
        pw = os.environ.get("RAFTLITE_PASSWORD")
        if pw is None:
            import getpass
            pw = getpass.getpass("password for %s: " % a.user)
        a.md = (("x-raftlite-user", a.user), ("x-raftlite-password", pw))

    import grpc
    pb, svc = load_stubs(a.proto)
    need = ("NodesRequest" if a.nodes else "LeaderRequest" if a.leader
            else "StatusRequest" if a.status else None)
    if need and not hasattr(pb, need):
        print("error: %s has no %s RPC (the PoC's proto has only "
              "ExecuteWrite, ExecuteRead and Join)" % (a.proto, need[:-7]),
              file=sys.stderr)
        return 2
    if a.tls_ca:
        def pem(path):
            with open(path, "rb") as f:
                return f.read()
        creds = grpc.ssl_channel_credentials(
            root_certificates=pem(a.tls_ca),
            private_key=pem(a.tls_key) if a.tls_key else None,
            certificate_chain=pem(a.tls_cert) if a.tls_cert else None)
        ch = grpc.secure_channel(a.addr, creds)
    else:
        ch = grpc.insecure_channel(a.addr)
    try:
        grpc.channel_ready_future(ch).result(timeout=a.timeout)
    except grpc.FutureTimeoutError:
        print("error: cannot reach %s within %gs (is the node running? "
              "does it use TLS: -tls-ca, and for mutual TLS -tls-cert and "
              "-tls-key?)" % (a.addr, a.timeout), file=sys.stderr)
        return 3
    stub = svc.DistributedSqliteStub(ch)
    try:
        return run(a, pb, stub)
    except grpc.RpcError as e:
        print("error: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
        return 3 if e.code() == grpc.StatusCode.UNAVAILABLE else 1
    finally:
        ch.close()


def run(a, pb, stub):
    t = a.timeout
    if a.nodes:
        r = stub.Nodes(pb.NodesRequest(), timeout=t, metadata=a.md)
        if r.error:
            print("error: " + r.error, file=sys.stderr)
            return 1
        print("id|raft_addr|grpc_addr|role|is_leader")
        for n in sorted(r.nodes, key=lambda n: n.node_id):
            print("%s|%s|%s|%s|%d" % (n.node_id, n.raft_addr, n.grpc_addr,
                                      n.role, n.is_leader))
        return 0
    if a.leader:
        r = stub.Leader(pb.LeaderRequest(), timeout=t, metadata=a.md)
        if not r.known:
            print("error: " + (r.error or "no leader known"), file=sys.stderr)
            return 1
        print("%s %s" % (r.node_id, r.grpc_addr))
        return 0
    if a.status:
        r = stub.Status(pb.StatusRequest(), timeout=t, metadata=a.md)
        print("node %s: %s, term %d, leader %s, commit %d, applied %d" %
              (r.node_id, r.state or r.role, r.term, r.leader_id or "-",
               r.commit_index, r.applied_index))
        return 0
    if is_read(a.sql):
        r = stub.ExecuteRead(pb.ReadRequest(
            sql=a.sql, consistency=pb.STRONG if a.strong else pb.EVENTUAL),
            timeout=t, metadata=a.md)
        if r.error:
            print("error: " + r.error, file=sys.stderr)
            return 1
        print("|".join(r.result.columns))
        for row in r.result.rows:
            print("|".join(show_value(v) for v in row.values))
        return 0
    if a.strong:
        print("error: -strong applies to reads only", file=sys.stderr)
        return 2
    r = stub.ExecuteWrite(pb.WriteRequest(sql=a.sql), timeout=t, metadata=a.md)
    if not r.success:
        print("error: " + r.error, file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
