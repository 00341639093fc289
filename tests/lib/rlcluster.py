"""tests/lib/rlcluster.py -- a raftlite cluster of stock shells, for the
multi-process tests of tests/cluster/.

Each Node is one stock /usr/bin/sqlite3 process with the extension
(`.load <RL_BUILD>/raftlite`, `.open <dir>/nodeN.db`) driven through its
stdin/stdout like rltest.Shell: the node is hosted inside that shell. Ports
are free ports below 32768 on 127.0.0.1. Every process and file is removed
at exit, pass or fail (rltest's atexit handler).

Writes go to the leader. A write on a follower fails by design (the error
names the leader); Cluster.write() rediscovers the leader and retries,
which is only right for SQL that is idempotent (the caller's choice). In the
shell a failed write prints "disk I/O error" (a VFS cannot set error text):
try_sql() also returns `SELECT raft_last_error()`.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time

import rltest
from rltest import (EXT, SAN, SLOW, SQLITE3, Shell, check, check_eq, fail,
                    file_bytes, free_port, is_error, log, san_env, scratch)

HOST = "127.0.0.1"


def _ports(used):
    while True:
        p = free_port()
        if p not in used:
            used.add(p)
            return p


def port_free(port):
    """Whether a server could listen on 127.0.0.1:port now (SO_REUSEADDR,
    as servers do: connections in TIME_WAIT do not count)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((HOST, port))
        s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


# A line of a node's own log on the shell's stderr (not an answer).
NODE_LOG = re.compile(r"^raftlite\[[^\]]*\] (warning|info):")


class Node:
    """One node: a stock shell hosting <dir>/<name>.db."""

    def __init__(self, cluster, name):
        self.c = cluster
        self.name = name
        self.db = os.path.join(cluster.dir, name + ".db")
        self.raft_port = _ports(cluster.used_ports)
        self.grpc_port = _ports(cluster.used_ports)
        self.raft_addr = "%s:%d" % (HOST, self.raft_port)
        self.grpc_addr = "%s:%d" % (HOST, self.grpc_port)
        self.sh = None
        self.state = "down"  # down | up | stopped | killed | exited
        self.member = False
        self.start()

    # -- process
    def start(self, env=None):
        """A new shell: .load the extension and .open the file (which
        restarts the node if the file has a stored identity). env: extra
        environment for this shell only (RAFTLITE_FAULT, say)."""
        check(self.sh is None or self.sh.p.poll() is not None,
              "%s: start() while its shell runs" % self.name)
        e = dict(self.c.env)
        e.update(env or {})
        name = self.db
        if self.c.uri:
            name = "file:%s?%s" % (self.db, self.c.uri)
        self.sh = Shell(name, env=e, ext_path=self.c.ext)
        self.state = "up"
        return self

    def restart(self, env=None):
        return self.start(env)

    @property
    def pid(self):
        return self.sh.p.pid

    def alive(self):
        return self.state == "up" and self.sh.p.poll() is None

    def kill9(self):
        os.kill(self.sh.p.pid, signal.SIGKILL)
        self.sh.p.wait(timeout=30)
        self.state = "killed"
        log("%s: killed (-9)" % self.name)

    def stop(self):
        rltest.sigstop(self.sh.p.pid)
        self.state = "stopped"
        log("%s: SIGSTOP" % self.name)

    def cont(self):
        os.kill(self.sh.p.pid, signal.SIGCONT)
        self.state = "up"
        log("%s: SIGCONT" % self.name)

    def exit(self, how=".exit", timeout=60):
        """Ends the shell (".exit" or "eof") and returns its exit status."""
        try:
            if how == "eof":
                self.sh.p.stdin.close()
            else:
                self.sh.p.stdin.write(how + "\n")
                self.sh.p.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            rc = self.sh.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            fail("%s: shell did not exit within %ds of %s" %
                 (self.name, timeout, how))
        self.state = "exited"
        if rc != 0:
            # What it printed last (an ASan leak report, say) says why.
            self.exit_output = self.sh.rest(timeout=1)[-6000:]
            if rltest.lsan_tracer_crashed(rc, self.exit_output):
                # LSan's own tracer crashed while stopping the exiting
                # process's threads (grpc's, at exit): no check ran and
                # nothing was reported. Said, and the shell's own status
                # taken as what its input asked for.
                log("%s: LeakSanitizer could not run at exit (tracer "
                    "crash); no leak check for this shell" % self.name)
                parts = how.split()
                rc = (int(parts[1]) if parts[0] == ".exit" and len(parts) > 1
                      else self.sh.expected_rc())
        return rc

    # -- SQL
    def sql(self, text, timeout=60):
        """Runs text; fails the test on any error. Returns the output."""
        out = self.sh.sql(text, timeout * SLOW)
        if is_error(out):
            fail("%s: unexpected error from %r:\n%s\nraft_last_error: %s" %
                 (self.name, text[:300], out, self.last_error()))
        return out

    def last_error(self):
        return self.sh.sql("SELECT raft_last_error();", 30 * SLOW).strip()

    def try_sql(self, text, timeout=60):
        """Runs text; returns (ok, output, error) where error is the
        shell's error lines plus raft_last_error() when it failed."""
        out = self.sh.sql(text, timeout * SLOW)
        if not is_error(out):
            return True, out, ""
        return False, out, out.strip() + " | raft_last_error: " + \
            self.last_error()

    def val(self, text, timeout=60):
        """The value text prints: the node's own warning and info lines
        (raftlite[id] warning: ..., e.g. a loop stalled on a loaded
        machine) share the shell's stderr and are not part of it."""
        out = self.sql(text, timeout)
        return "\n".join(ln for ln in out.splitlines()
                         if not NODE_LOG.match(ln)).strip()

    def status(self, timeout=30):
        # val(): a node's warning line (e.g. the Raft log reopened after
        # a full disk) shares the shell's output and is not the status.
        out = self.val("PRAGMA raft_status;", timeout)
        try:
            return json.loads(out)
        except ValueError:
            fail("%s: PRAGMA raft_status is not JSON: %r" % (self.name, out))

    def nodes(self):
        """raft_nodes as a list of dicts."""
        cols = ["id", "raft_id", "raft_addr", "grpc_addr", "role",
                "is_leader", "match_index", "last_contact"]
        out = self.sql("SELECT id, raft_id, raft_addr, grpc_addr, role, "
                       "is_leader, match_index, last_contact FROM raft_nodes "
                       "ORDER BY id;")
        return [dict(zip(cols, line.split("|")))
                for line in out.splitlines() if line]

    def sha3(self):
        # val(): a node's warning line (seen: "Raft log reopened" after a
        # full disk) may come out with the digest.
        return self.val(".sha3sum")

    def bootstrap(self):
        got = self.val("SELECT raft_bootstrap('%s', '%s', '%s');" %
                       (self.name, self.raft_addr, self.grpc_addr))
        check_eq(got, self.name, "%s: raft_bootstrap's result" % self.name)
        self.member = True
        return self

    def join(self, peer, timeout=120):
        got = self.val("SELECT raft_join('%s', '%s', '%s', '%s');" %
                       (self.name, self.raft_addr, self.grpc_addr,
                        peer.grpc_addr), timeout)
        check_eq(got, self.name, "%s: raft_join's result" % self.name)
        self.member = True
        return self

    def checkpoint(self, timeout=30):
        """PRAGMA wal_checkpoint(TRUNCATE) until it completes (busy = 0)."""
        deadline = time.time() + timeout * SLOW
        while True:
            out = self.val("PRAGMA wal_checkpoint(TRUNCATE);")
            if out.split("|")[0] == "0":
                return out
            if time.time() > deadline:
                fail("%s: checkpoint stays busy: %r" % (self.name, out))
            time.sleep(0.1)

    def __repr__(self):
        return "<%s %s>" % (self.name, self.state)


class Cluster:
    """Nodes named node1, node2, ... in one scratch directory."""

    def __init__(self, n=0, env=None, ext=None, uri=None):
        """ext: the extension to load (default rltest.EXT; the crash tests
        load the fault build); uri: URI parameters every node's database
        is opened with ("raft_snapshot_threshold=64&...")."""
        self.dir = scratch("rlcluster-")
        self.env = dict(env or {})
        self.ext = ext
        self.uri = uri
        self.used_ports = set()
        self.nodes = []
        if n:
            self.form(n)

    def new_node(self):
        node = Node(self, "node%d" % (len(self.nodes) + 1))
        self.nodes.append(node)
        return node

    def form(self, n):
        """Bootstraps node1 and joins n-1 more through it."""
        t0 = time.time()
        first = self.new_node().bootstrap()
        for _ in range(n - 1):
            self.new_node().join(first)
        # n voters: a join returns before its promotion commits (raft
        # first catches the node up), and until then a leader whose peers
        # are not voters yet is a quorum of its own (seen: a leader cut
        # off from both "followers" confirmed a linearizable read).
        deadline = time.time() + 60 * SLOW
        while True:
            roles = [m["role"] for m in self.leader().nodes()]
            if roles.count("voter") == n:
                break
            if time.time() > deadline:
                fail("no %d voters after 60 s: %s" % (n, roles))
            time.sleep(0.05)
        log("cluster of %d formed in %.1fs" % (n, time.time() - t0))
        return self

    def live(self):
        """Members whose shell runs and is not stopped."""
        return [n for n in self.nodes if n.member and n.alive()]

    def leader(self, timeout=30, among=None):
        """The leader: the one live member (or node of among) that says
        it leads at the highest term any of them reports. Waits up to
        timeout."""
        deadline = time.time() + timeout * SLOW
        seen = ""
        while True:
            cand = among or self.live()
            sts = {}
            for n in cand:
                try:
                    sts[n.name] = (n, n.status(timeout=10))
                except rltest.TestFailure as e:
                    seen = "%s: %s" % (n.name, e)
            if sts:
                top = max(s["term"] for _, s in sts.values())
                leaders = [n for n, s in sts.values()
                           if s["state"] == "leader" and s["term"] == top]
                if len(leaders) == 1:
                    return leaders[0]
                seen = ", ".join("%s=%s/%s" % (k, s["state"], s["term"])
                                 for k, (_, s) in sorted(sts.items()))
            if time.time() > deadline:
                fail("no leader among %s within %ds (%s)" %
                     ([n.name for n in cand], timeout * SLOW, seen))
            time.sleep(0.1)

    def write(self, text, timeout=30):
        """Runs text on the current leader, retrying on the new leader
        until it succeeds: text must be idempotent. Returns (node, out)."""
        deadline = time.time() + timeout * SLOW
        while True:
            lead = self.leader(timeout=max(1, deadline - time.time()))
            ok, out, err = lead.try_sql(text)
            if ok:
                return lead, out
            if time.time() > deadline:
                fail("write %r did not succeed within %ds; last: %s: %s" %
                     (text[:200], timeout * SLOW, lead.name, err))
            log("write on %s failed, retrying: %s" % (lead.name, err[:300]))
            time.sleep(0.1)

    def wait_val(self, node, text, want, timeout=20):
        """Polls node until text gives want."""
        deadline = time.time() + timeout * SLOW
        while True:
            # An error (e.g. "no such table" before the schema arrived) is
            # a state to wait out, not a failure; the last one is reported.
            got = node.sh.sql(text, 60 * SLOW).strip()
            if got == want:
                return got
            if time.time() > deadline:
                fail("%s: %r gives %r, want %r (after %ds)" %
                     (node.name, text, got, want, timeout * SLOW))
            time.sleep(0.05)

    def seed(self, sql, query, want):
        """Runs sql on the leader and waits until every live member answers
        query with want (a test's first data); returns the leader."""
        lead = self.leader()
        lead.sql(sql)
        self.wait_all(query, want)
        return lead

    def wait_all(self, text, want, nodes=None, timeout=20):
        for n in nodes or self.live():
            self.wait_val(n, text, want, timeout)

    def wait_converged(self, nodes=None, timeout=30):
        """All live members (or nodes) give the same .sha3sum, and after a
        TRUNCATE checkpoint on each their database files are
        byte-identical. Returns the digest."""
        nodes = nodes or self.live()
        check(len(nodes) >= 1, "no live node to compare")
        deadline = time.time() + timeout * SLOW
        while True:
            sums = [(n.name, n.sha3()) for n in nodes]
            if len(set(s for _, s in sums)) == 1:
                break
            if time.time() > deadline:
                fail("nodes do not converge within %ds: %s" %
                     (timeout * SLOW, sums))
            time.sleep(0.2)
        digest = sums[0][1]
        for n in nodes:
            n.checkpoint()
        for n in nodes:
            check_eq(n.sha3(), digest, "%s's digest after checkpoint" % n.name)
        ref = file_bytes(nodes[0].db)
        for n in nodes[1:]:
            b = file_bytes(n.db)
            if b != ref:
                diff = next((i for i in range(min(len(b), len(ref)))
                             if b[i] != ref[i]), min(len(b), len(ref)))
                fail("%s and %s: same content but different files after "
                     "checkpoint (%d vs %d bytes, first difference at byte "
                     "%d, page %d)" % (nodes[0].name, n.name, len(ref),
                                       len(b), diff, diff // 4096 + 1))
        log("converged: %s (%d bytes) on %s" %
            (digest[:16], len(ref), [n.name for n in nodes]))
        return digest

    def integrity(self, nodes=None):
        for n in nodes or self.live():
            check_eq(n.val("PRAGMA integrity_check;"), "ok",
                     "%s: integrity_check" % n.name)

    def close(self, check_rc=True):
        """Ends every running shell with .exit; each must exit with the
        stock shell's status for its input (0, or 1 if a statement failed;
        under ASan a leak makes it exit 86)."""
        bad = []
        for n in self.nodes:
            if n.state == "stopped":
                n.cont()
            if n.state == "up" and n.sh.p.poll() is None:
                want = n.sh.expected_rc()
                rc = n.exit()
                if rc != want:
                    bad.append((n.name, rc, want))
                    log("%s exited %d; its last output:\n%s" %
                        (n.name, rc, getattr(n, "exit_output", "")))
        if check_rc and bad:
            fail("shells' exit status at .exit (node, got, want): %s" % bad)


def stock_val(db, text):
    """Runs text in a stock shell without the extension, read-only (a
    plain reader: its close cannot checkpoint the file)."""
    r = subprocess.run([SQLITE3, "-batch", "-readonly", db], input=text,
                       text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    return r.returncode, r.stdout.strip()
