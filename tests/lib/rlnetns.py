"""tests/lib/rlnetns.py -- raftd nodes in network namespaces of their own,
for the fault suite (tests/faults): partitions with nftables, kill -9,
SIGSTOP/SIGCONT, restarts.

Layout (every name carries the test's pid, so parallel runs never meet):
  rlf<pid>c        the client namespace: bridge br0 (10.77.0.1/24); the
                   test process itself enters it (enter()), so its gRPC
                   clients reach the nodes and nothing else
  rlf<pid>n<i>     node i's namespace: lo, eth0 = 10.77.0.(10+i)/24, a
                   veth whose peer vn<i> sits on br0
The 10.77.0.0/24 addresses exist only inside these namespaces: no
interface, route or rule is ever added to the root namespace, and no
packet leaves them. A partition is an nftables table `rlfault` in a node's
namespace dropping what it exchanges with the other nodes (the client
still reaches it, as in a Jepsen partition).

It must never touch a namespace, interface or firewall it did not create:
cleanup (atexit and SIGTERM, pass or fail) kills the nodes it started and
deletes exactly its own namespaces, and at start it removes only
namespaces named rlf<pid>... whose pid is no longer alive (a run the test
runner SIGKILLed leaves them behind).
"""
import atexit
import ctypes
import os
import re
import resource
import signal
import subprocess
import time

import rltest
from rltest import check, fail

SUBNET = "10.77.0"
CLONE_NEWNET = 0x40000000
_nets = []


def sh(*argv, check_rc=True, input=None):
    r = subprocess.run(list(argv), capture_output=True, text=True,
                       input=input, timeout=30)
    if check_rc and r.returncode != 0:
        fail("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                  (r.stderr or r.stdout).strip()))
    return r


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_stale():
    """Deletes namespaces rlf<pid>... of runs that are gone."""
    r = sh("ip", "netns", "list", check_rc=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"^rlf(\d+)(c|n\d+)$", name)
        if m and not _alive(int(m.group(1))):
            _kill_inside(name)
            sh("ip", "netns", "del", name, check_rc=False)


def _kill_inside(name):
    """SIGKILLs every process in namespace name (one of ours: a raftd that
    outlived its test, e.g. after the runner's SIGKILL)."""
    r = sh("ip", "netns", "pids", name, check_rc=False)
    for pid in r.stdout.split():
        if pid == str(os.getpid()):
            continue  # the test itself lives in its client namespace
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


class Net:
    """The namespaces, bridge and veths for n nodes."""

    def __init__(self, n=3):
        remove_stale()
        self.tag = "rlf%d" % os.getpid()
        self.client = self.tag + "c"
        self.nodes = ["%sn%d" % (self.tag, i) for i in range(1, n + 1)]
        self.ips = ["%s.%d" % (SUBNET, 10 + i) for i in range(1, n + 1)]
        self.made = []
        _nets.append(self)
        self._setup()

    def _add_ns(self, name):
        sh("ip", "netns", "add", name)
        self.made.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def _setup(self):
        c = self.client
        self._add_ns(c)
        sh("ip", "-n", c, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", c, "addr", "add", SUBNET + ".1/24", "dev", "br0")
        sh("ip", "-n", c, "link", "set", "br0", "up")
        for i, ns in enumerate(self.nodes):
            self._add_ns(ns)
            # Created inside the client namespace, peer moved straight into
            # the node's: the root namespace never sees either end.
            sh("ip", "-n", c, "link", "add", "vn%d" % (i + 1), "type", "veth",
               "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", c, "link", "set", "vn%d" % (i + 1), "master", "br0",
               "up")
            sh("ip", "-n", ns, "addr", "add", self.ips[i] + "/24", "dev",
               "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def enter(self):
        """Moves this process into the client namespace. Only while it is
        single-threaded (a thread keeps the namespace it had): call before
        any gRPC channel or thread exists."""
        tasks = os.listdir("/proc/self/task")
        check(len(tasks) == 1, "Net.enter needs a single-threaded process, "
              "it has %d threads" % len(tasks))
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/run/netns/" + self.client, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                fail("setns(%s): %s" % (self.client,
                                        os.strerror(ctypes.get_errno())))
        finally:
            os.close(fd)

    def isolate(self, i):
        """Node i exchanges nothing more with the other nodes (packets
        dropped both ways, as a cut cable); the clients still reach it."""
        others = ", ".join(ip for j, ip in enumerate(self.ips) if j != i)
        rules = ("table inet rlfault {\n"
                 " chain in { type filter hook input priority 0; "
                 "policy accept; ip saddr { %s } drop; }\n"
                 " chain out { type filter hook output priority 0; "
                 "policy accept; ip daddr { %s } drop; }\n"
                 "}\n" % (others, others))
        sh("ip", "netns", "exec", self.nodes[i], "nft", "-f", "-",
           input=rules)

    def cut_port(self, i, port):
        """Node i takes no TCP connection to port from the other nodes
        (their packets dropped): one service cut, the others still
        through."""
        others = ", ".join(ip for j, ip in enumerate(self.ips) if j != i)
        rules = ("table inet rlfault {\n"
                 " chain in { type filter hook input priority 0; "
                 "policy accept; ip saddr { %s } tcp dport %d drop; }\n"
                 "}\n" % (others, port))
        sh("ip", "netns", "exec", self.nodes[i], "nft", "-f", "-",
           input=rules)

    def heal(self, i=None):
        for j, ns in enumerate(self.nodes):
            if i is None or i == j:
                r = sh("ip", "netns", "exec", ns, "nft", "list", "tables",
                       check_rc=False)
                if "rlfault" in r.stdout:
                    sh("ip", "netns", "exec", ns, "nft", "delete", "table",
                       "inet", "rlfault")

    def isolated(self, i):
        r = sh("ip", "netns", "exec", self.nodes[i], "nft", "list", "tables")
        return "rlfault" in r.stdout

    def destroy(self):
        for name in reversed(self.made):
            _kill_inside(name)
            sh("ip", "netns", "del", name, check_rc=False)
        self.made = []


def start_nodes(net, raftd, data, timeout=30):
    """One raftd per namespace of net: the first bootstraps, the others
    join through it; returns the NsNodes once every one serves gRPC."""
    nodes = []
    for i, ns in enumerate(net.nodes):
        nodes.append(NsNode(raftd, ns, net.ips[i], "n%d" % (i + 1), data,
                            join=None if i == 0 else nodes[0].grpc))
    nodes[0].start().wait_serving(timeout)
    for n in nodes[1:]:
        n.start()
    for n in nodes[1:]:
        n.wait_serving(timeout)
    return nodes


def allow_cores():
    """Lets this process's children (raftd) dump core: with core_pattern
    "core" a crashing raftd leaves core in its cwd. Set on the test process
    itself: a preexec_fn would make Popen fork() while gRPC threads run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))


class NsNode(rltest.RunLog):
    """One raftd in namespace ns: gRPC at ip:7000, Raft at ip:7001, data in
    data/<name>, output appended to data/<name>.log, cwd data/cwd-<name>
    (where a core file would land). Tracks every exit: an exit that no
    kill9/stop asked for is a crash (crashes())."""

    GRPC_PORT, RAFT_PORT = 7000, 7001

    def __init__(self, raftd, ns, ip, name, data, join=None, env=None):
        self.ns, self.ip, self.name, self.data = ns, ip, name, data
        self.grpc = "%s:%d" % (ip, self.GRPC_PORT)
        self.raft = "%s:%d" % (ip, self.RAFT_PORT)
        # -insecure: 10.77.0.0/24 is not loopback, and these namespaces
        # are the trusted private network the flag is for (no TLS here).
        self.argv = ["ip", "netns", "exec", ns, raftd, "-id", name,
                     "-grpc", self.grpc, "-raft", self.raft, "-data", data,
                     "-log-level", "info", "-insecure"]
        self.argv += ["-join", join] if join else ["-bootstrap"]
        self.cwd = os.path.join(data, "cwd-" + name)
        os.makedirs(self.cwd, exist_ok=True)
        self.logpath = os.path.join(data, name + ".log")
        self.db = os.path.join(data, name, "sqlite.db")
        self.env = env or {}
        self.p = None
        self.paused = False
        self.exits = []  # (rc, expected)

    def start(self):
        check(self.p is None, "%s already running" % self.name)
        env = {k: v for k, v in os.environ.items()
               if "proxy" not in k.lower()}
        env.update(self.env)
        with self.new_run() as f:
            # ip netns exec execs raftd: the pid is raftd's own.
            self.p = subprocess.Popen(
                self.argv, cwd=self.cwd, stdout=f, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        rltest._procs.append(self.p)  # killed at exit, pass or fail
        return self

    def log(self, all_runs=True):
        """Every run's output by default (a crash report wants it all)."""
        return rltest.RunLog.log(self, all_runs)

    def wait_serving(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "serving gRPC" in self.log(all_runs=False):
                return self
            if self.p.poll() is not None:
                self.reap(expected=False)
                fail("%s exited at start:\n%s" % (self.name,
                                                  self.log()[-3000:]))
            time.sleep(0.05)
        fail("%s did not serve within %ds:\n%s" % (self.name, timeout,
                                                   self.log()[-3000:]))

    def running(self):
        return self.p is not None and self.p.poll() is None

    def reap(self, expected):
        """Records the exit of the current process."""
        rc = self.p.wait()
        self.exits.append((rc, expected))
        self.p = None
        self.paused = False
        return rc

    def poll_crash(self):
        """If the process exited by itself: record it (unexpected) and
        return its status; else None."""
        if self.p is not None and self.p.poll() is not None:
            return self.reap(expected=False)
        return None

    def kill9(self):
        if self.p is None:
            return
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
            self.reap(expected=True)
        else:
            self.reap(expected=False)

    def pause(self):
        rltest.sigstop(self.p.pid)
        self.paused = True

    def resume(self):
        if self.p is not None and self.paused:
            os.kill(self.p.pid, signal.SIGCONT)
        self.paused = False

    def stop(self, timeout=60):
        """SIGTERM; the exit status (0 clean; ASan's leak check exits 86)."""
        if self.p is None:
            return None
        self.resume()
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.reap(expected=True)
                return "no exit within %ds of SIGTERM" % timeout
        rc = self.p.returncode
        self.reap(expected=(rc == 0))
        return rc

    def crashes(self):
        """Unexpected exits: [(rc, description)]."""
        out = []
        for rc, expected in self.exits:
            if not expected:
                what = ("killed by %s" % signal.Signals(-rc).name
                        if rc < 0 else "exit %d" % rc)
                out.append((rc, what))
        return out

    def cores(self):
        return [os.path.join(self.cwd, f) for f in os.listdir(self.cwd)
                if f.startswith("core")]


def _cleanup():
    for n in _nets:
        n.destroy()


atexit.register(_cleanup)
