"""tests/grpc/rlgrpc.py -- helpers for the gRPC sidecar tests.

Stubs are generated at test time from the project's proto (and, in a
separate process, from the frozen PoC proto: both define package `proto`, so
they cannot share one Python descriptor pool). raftd runs as a real process
on 127.0.0.1 and a free port; every process and file is cleaned at exit.
"""
import os
import subprocess
import sys
import time

from rltest import *  # noqa: F401,F403
from rltest import BUILD, ROOT, check, fail, log, scratch, spawn, free_port

import grpc  # python3-grpcio (Debian)

PROTO = os.path.join(ROOT, "proto", "raftlite.proto")
# The PoC's frozen proto and README, kept in the tree (tests/poc/data).
POC_PROTO = os.path.join(ROOT, "tests", "poc", "data",
                         "distributed-sqlite-poc.proto")
RAFTD = os.path.join(BUILD, "raftd")
PY = "/usr/bin/python3"


def gen_stubs(proto, outdir, modname):
    """Generates modname_pb2 / modname_pb2_grpc into outdir with grpc_tools
    (python3-grpc-tools) and returns outdir."""
    os.makedirs(outdir, exist_ok=True)
    src = os.path.join(outdir, modname + ".proto")
    with open(proto) as f, open(src, "w") as g:
        g.write(f.read())
    r = subprocess.run([PY, "-m", "grpc_tools.protoc", "-I", outdir,
                        "--python_out", outdir, "--grpc_python_out", outdir,
                        src], capture_output=True, text=True)
    if r.returncode != 0:
        fail("grpc_tools.protoc failed on %s:\n%s" % (proto, r.stderr))
    return outdir


def project_stubs():
    """Imports and returns (pb2, pb2_grpc) of the project's proto."""
    d = gen_stubs(PROTO, os.path.join(scratch("rlstubs-"), "s"), "raftlite")
    sys.path.insert(0, d)
    import raftlite_pb2
    import raftlite_pb2_grpc
    return raftlite_pb2, raftlite_pb2_grpc


class Raftd:
    """A raftd process serving on 127.0.0.1:port."""

    def __init__(self, args=(), node="n1", data=None, wait=True,
                 tls_client=None):
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.data = data or scratch("rlraftd-")
        self.db = os.path.join(self.data, node, "sqlite.db")
        self.logpath = os.path.join(self.data, "raftd-%s.log" % node)
        self.logf = open(self.logpath, "w")
        argv = [RAFTD, "-id", node, "-grpc", self.addr, "-data", self.data,
                "-log-level", "info"] + list(args)
        self.p = spawn(argv, stdout=self.logf, stderr=subprocess.STDOUT)
        if wait:
            self.wait_serving()

    def wait_serving(self, timeout=30):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.p.poll() is not None:
                fail("raftd exited %s at start:\n%s" % (self.p.returncode,
                                                        self.log()))
            if "serving gRPC" in self.log():
                return
            time.sleep(0.05)
        fail("raftd did not start serving within %ds:\n%s" % (timeout,
                                                             self.log()))

    def log(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def stop(self, timeout=60):
        """SIGTERM, wait; fails if raftd does not exit 0 (under ASan a leak
        makes it exit 86)."""
        if self.p.poll() is None:
            self.p.terminate()
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            fail("raftd did not stop within %ds of SIGTERM:\n%s" %
                 (timeout, self.log()[-4000:]))
        self.logf.close()
        if rc != 0:
            fail("raftd exited %d after SIGTERM:\n%s" % (rc,
                                                        self.log()[-6000:]))
        return rc


def channel(addr, creds=None, max_recv=None):
    opts = []
    if max_recv:
        opts.append(("grpc.max_receive_message_length", max_recv))
    if creds is None:
        ch = grpc.insecure_channel(addr, options=opts)
    else:
        ch = grpc.secure_channel(addr, creds, options=opts)
    grpc.channel_ready_future(ch).result(timeout=20)
    return ch


def standalone(pbg, **kw):
    """A standalone raftd (Raftd(**kw)) and a channel to it: (raftd,
    channel, DistributedSqlite stub, RaftliteInternal stub)."""
    d = Raftd(**kw)
    ch = channel(d.addr)
    return (d, ch, pbg.DistributedSqliteStub(ch),
            pbg.RaftliteInternalStub(ch))


def expect_rpc_error(fn, code, needle=None, what=""):
    """Calls fn(); it must raise grpc.RpcError with this status code (and a
    details text containing needle). Returns the details."""
    try:
        fn()
    except grpc.RpcError as e:
        if e.code() != code:
            fail("%s: status %s (%s), want %s" % (what, e.code(), e.details(),
                                                 code))
        if needle and needle not in (e.details() or ""):
            fail("%s: details %r lack %r" % (what, e.details(), needle))
        return e.details()
    fail("%s: call succeeded, want status %s" % (what, code))


SAN_SLOW = 4 if os.environ.get("RL_SAN") == "1" else 1
