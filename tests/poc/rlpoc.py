"""tests/poc/rlpoc.py -- helpers for the walkthrough tests of issue #5:
raftd processes started from whole command lines (as a user types them,
e.g. the PoC README's), the command-line client demo/client.py, and the
cluster as the project's gRPC API reports it.

Everything a test starts is killed and every scratch directory removed at
exit, pass or fail (tests/lib/rltest.py). Ports are free, below 32768.
"""
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))

from rltest import (BUILD, ROOT, SAN, SLOW, LONG, check, check_eq,  # noqa
                    fail, free_port, log, scratch, spawn, wait_for,
                    RunLog)
from rlgrpc import POC_PROTO, PY, RAFTD  # noqa: F401

CLIENT = os.path.join(ROOT, "demo", "client.py")
POC_README = os.path.join(os.path.dirname(POC_PROTO),
                          "distributed-sqlite-poc.md")


class PortMap:
    """Maps the ports written in a text (':50051') to free ports below
    32768, the same port always to the same free one; a bare ':PORT'
    (every interface) becomes 127.0.0.1:PORT."""

    def __init__(self):
        self.map = {}

    def port(self, p):
        p = int(p)
        if p not in self.map:
            taken = set(self.map.values())
            q = free_port()
            while q in taken:
                q = free_port()
            self.map[p] = q
        return self.map[p]

    def sub(self, text):
        # ':PORT' alone means every interface to raftd (as in the PoC):
        # tests bind loopback only, so it becomes 127.0.0.1:PORT.
        text = re.sub(r"(?<=\s):(?=\d{4,5}\b)", "127.0.0.1:", text)
        return re.sub(r"(?<=:)(\d{4,5})\b",
                      lambda m: str(self.port(m.group(1))), text)


class Raftd(RunLog):
    """One raftd started from argv in directory cwd (argv[0] is replaced
    by the build's raftd unless as_written); its output goes to a log file.
    restart() starts it again with the same argv; log() is this run's
    output (all_runs: every run's)."""

    def __init__(self, argv, cwd, name, logdir=None, start=True,
                 as_written=False):
        self.argv = list(argv) if as_written else [RAFTD] + list(argv[1:])
        self.cwd = cwd
        self.name = name
        self.logpath = os.path.join(logdir or cwd, "%s.log" % name)
        self.p = None
        if start:
            self.start()

    def start(self):
        check(self.p is None or self.p.poll() is not None,
              "%s is already running" % self.name)
        with self.new_run() as f:
            self.p = spawn(self.argv, cwd=self.cwd, stdout=f,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    restart = start

    def wait_serving(self, timeout=30):
        """Waits for the 'serving gRPC' line raftd prints once the node is
        bootstrapped, joined or resumed."""
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            if "serving gRPC" in self.log():
                return self
            if self.p.poll() is not None:
                fail("%s exited %s at start:\n%s" % (self.name,
                                                     self.p.returncode,
                                                     self.log()[-4000:]))
            time.sleep(0.05)
        fail("%s did not serve within %ds:\n%s" % (self.name, timeout * SLOW,
                                                   self.log()[-4000:]))

    def wait_exit(self, timeout=60):
        try:
            return self.p.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            fail("%s did not exit within %ds:\n%s" % (
                self.name, timeout * SLOW, self.log()[-4000:]))

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Sends sig and requires a clean exit: status 0 (under ASan a leak
        exits 86) and the 'stopped' line."""
        self.p.send_signal(sig)
        rc = self.wait_exit(timeout)
        out = self.log()
        check(rc == 0 and "raftd: info: stopped" in out,
              "%s after %s: exit %d, log:\n%s" % (
                  self.name, signal.Signals(sig).name, rc, out[-6000:]))

    def kill9(self):
        os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait()


def restart_all(nodes, sig):
    """Stops every node with sig (each must exit cleanly), starts them
    again with the same commands, and checks that each resumed its node."""
    for n in nodes:
        n.stop(sig)
    for n in nodes:
        n.start()
    for n in nodes:
        n.wait_serving()
        check("resuming node" in n.log(), "%s resumed:\n%s" % (n.name,
                                                              n.log()))


def run_raftd(argv, cwd, timeout=60):
    """Runs a raftd that is expected to exit by itself (a refused start):
    (status, output)."""
    r = subprocess.run([RAFTD] + list(argv[1:]), cwd=cwd,
                       stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout * SLOW)
    return r.returncode, r.stdout + r.stderr


def client(args, proto=None, timeout=60):
    """Runs demo/client.py with args (a list, or a command line whose first
    word is the client's name): (status, stdout, stderr)."""
    if isinstance(args, str):
        args = shlex.split(args)[1:]
    argv = [PY, CLIENT] + (["-proto", proto] if proto else []) + list(args)
    r = subprocess.run(argv, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=timeout * SLOW)
    return r.returncode, r.stdout, r.stderr


def client_ok(args, proto=None):
    rc, out, err = client(args, proto)
    check(rc == 0, "client %s: exit %d\n%s%s" % (args, rc, out, err))
    return out


def port_free(port):
    """True if nothing listens on port (any interface)."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Api:
    """The project's gRPC API (stubs from proto/raftlite.proto) on a few
    nodes: api.pub[addr] is a DistributedSqliteStub."""

    def __init__(self, pb, pbg, creds=None):
        import grpc
        self.grpc = grpc
        self.pb, self.pbg = pb, pbg
        self.creds = creds  # grpc channel credentials, None: plaintext
        self.chans = {}

    def stub(self, addr):
        if addr not in self.chans:
            self.chans[addr] = (
                self.grpc.secure_channel(addr, self.creds) if self.creds
                else self.grpc.insecure_channel(addr))
        return self.pbg.DistributedSqliteStub(self.chans[addr])

    def status(self, addr, timeout=20):
        return self.stub(addr).Status(self.pb.StatusRequest(),
                                      timeout=timeout * SLOW)

    def members(self, addr, timeout=20):
        """{id: (raft_addr, grpc_addr, role, is_leader)} as addr sees it."""
        r = self.stub(addr).Nodes(self.pb.NodesRequest(),
                                  timeout=timeout * SLOW)
        check(not r.error, "Nodes on %s: %s" % (addr, r.error))
        return {n.node_id: (n.raft_addr, n.grpc_addr, n.role, n.is_leader)
                for n in r.nodes}

    def write(self, addr, sql, timeout=20):
        return self.stub(addr).ExecuteWrite(self.pb.WriteRequest(sql=sql),
                                            timeout=timeout * SLOW)

    def read(self, addr, sql, strong=False, timeout=20):
        """Rows as lists of text values; fails the test on an error."""
        r = self.stub(addr).ExecuteRead(self.pb.ReadRequest(
            sql=sql, consistency=self.pb.STRONG if strong
            else self.pb.EVENTUAL), timeout=timeout * SLOW)
        check(not r.error, "%s read on %s of %r: %s" % (
            "STRONG" if strong else "EVENTUAL", addr, sql, r.error))
        return [[v.decode() for v in row.values] for row in r.result.rows]

    def close(self):
        for ch in self.chans.values():
            ch.close()
        self.chans = {}
