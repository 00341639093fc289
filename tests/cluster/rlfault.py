"""tests/cluster/rlfault.py -- a three-node raftd cluster over gRPC for the
fault tests of issue 14 (SIGSTOP/SIGCONT of chosen nodes, leader lookup).

Builds on tests/poc/rlpoc.py (raftd from whole command lines, the Api of
proto/raftlite.proto). Everything started is killed and removed at exit.
"""
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "poc"))

from rlpoc import (SLOW, Api, Raftd, check, check_eq, fail,  # noqa: F401
                   free_port, log, scratch, wait_for)
from rlgrpc import project_stubs  # noqa: E402
from rltest import sigstop  # noqa: E402


class Cluster3:
    """node1 bootstraps, node2 and node3 join; g[i] is node i+1's gRPC
    address, nodes[i] its Raftd."""

    def __init__(self, prefix="rlfault-", extra=()):
        """extra: more raftd flags for every node."""
        self.pb, self.pbg = project_stubs()
        self.api = Api(self.pb, self.pbg)
        self.dir = scratch(prefix)
        self.g = ["127.0.0.1:%d" % free_port() for _ in range(3)]
        r = ["127.0.0.1:%d" % free_port() for _ in range(3)]
        self.nodes = []
        self.stopped = set()
        for i in range(3):
            a = ["raftd", "-id", "node%d" % (i + 1), "-grpc", self.g[i],
                 "-raft", r[i], "-data", "./data", "-log-level", "info"]
            a += ["-bootstrap"] if i == 0 else ["-join", self.g[0]]
            a += list(extra)
            n = Raftd(a, self.dir, "node%d" % (i + 1))
            if i == 0:
                n.wait_serving()
            self.nodes.append(n)
        for n in self.nodes[1:]:
            n.wait_serving()
        # Three voters: a join returns before its promotion commits, and a
        # leader whose peers are not voters yet has a quorum of its own.
        wait_for("three voters", lambda: [
            m[2] for m in self.api.members(self.g[0]).values()] ==
            ["voter"] * 3)

    def stop(self, i):
        sigstop(self.nodes[i].p.pid)
        self.stopped.add(i)

    def cont(self, i):
        os.kill(self.nodes[i].p.pid, signal.SIGCONT)
        self.stopped.discard(i)

    def alive_check(self):
        """Fails if a raftd died (a crash)."""
        for n in self.nodes:
            if n.p.poll() is not None:
                fail("%s exited %s:\n%s" % (n.name, n.p.returncode,
                                            n.log()[-6000:]))

    def state(self, i, timeout=5):
        """Node i's Raft state, or None if it does not answer (a dead
        node fails the test)."""
        try:
            return self.api.status(self.g[i], timeout=timeout * SLOW).state
        except self.api.grpc.RpcError:
            self.alive_check()
            return None

    def leader(self, among=None, not_i=None, timeout=20):
        """Index of the node that reports itself leader (among the running
        ones), waiting for one."""
        among = [i for i in (among if among is not None else range(3))
                 if i not in self.stopped and i != not_i]

        def find():
            for i in among:
                try:
                    if self.api.status(self.g[i], timeout=2).state == \
                            "leader":
                        return i + 1
                except self.api.grpc.RpcError:
                    pass
            return None
        return wait_for("a leader among %s" % [i + 1 for i in among],
                        find, timeout=timeout) - 1

    def settle(self, timeout=30):
        """Waits (bounded, never failing) until every node applied what
        the most advanced one committed: a node stopped while it still
        catches up (after a pause, say, by a snapshot) may be stopped in
        the middle of raft's snapshot install, and raft 0.15 then leaks
        the install's 16-byte buffer array (seen once under ASan in
        test_write_faults: a leak report allocated inside libraft). The
        leak check at exit is for raftlite's memory."""
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            try:
                st = [self.api.status(g, timeout=2) for g in self.g]
            except self.api.grpc.RpcError:
                return
            top = max(x.commit_index for x in st)
            if all(x.applied_index >= top for x in st):
                return
            time.sleep(0.1)

    def close(self):
        for i in list(self.stopped):
            self.cont(i)
        if all(n.p.poll() is None for n in self.nodes):
            self.settle()
        self.api.close()
        for n in self.nodes:
            if n.p.poll() is None:
                n.stop()
