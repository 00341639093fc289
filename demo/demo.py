#!/usr/bin/python3
"""demo/demo.py -- the body of `make demo`: a 3-node raftlite cluster of
raftd processes on loopback, used from the stock sqlite3 shell and over
gRPC, printed as a transcript.

1. three raftd: node1 -bootstrap, node2 and node3 -join node1;
2. over gRPC (demo/client.py): CREATE TABLE on node1, INSERT through node2
   (a follower: forwarded to the leader), a STRONG read on node3;
3. the stock sqlite3 shell with `.load build/raftlite` opened on node3's
   database file: a *client* of node3's raftd, so it reads the file locally
   and answers raft_nodes / raft_leader() / PRAGMA raft_status by asking
   that raftd over gRPC; its own write goes through that raftd (node3, a
   follower, relays it to the leader) and it reads it back at once;
4. the stock shell without the extension reads node1's file directly (the
   leader's file holds every acknowledged write);
5. SIGINT stops every raftd (each must exit 0).

Ports are picked free below 32768 when it runs; the data lives in a
temporary directory. Every raftd is stopped and the directory removed at
the end, also on failure or Ctrl-C. Exit status 0 iff every step did what
it shows. RL_BUILD names the build directory (default ./build).
"""
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
BUILD = os.environ.get("RL_BUILD") or os.path.join(ROOT, "build")
RAFTD = os.path.join(BUILD, "raftd")
EXT = os.path.join(BUILD, "raftlite")
CLIENT = os.path.join(ROOT, "demo", "client.py")
SQLITE3 = "/usr/bin/sqlite3"
PY = "/usr/bin/python3"


class DemoFailed(Exception):
    pass


def free_port(taken):
    """A free TCP port on 127.0.0.1 below 32768 (outside Linux's ephemeral
    range, so no outgoing connection takes it meanwhile)."""
    for _ in range(1000):
        port = random.randint(20000, 32000)
        if port in taken:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            taken.add(port)
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise DemoFailed("no free port below 32768")


def say(text=""):
    print(text, flush=True)


def quote(a):
    """a as a shell word, in double quotes when it holds single quotes
    (SQL literals) and nothing a shell expands inside double quotes."""
    if "'" in a and not any(c in a for c in '"$`\\'):
        return '"%s"' % a
    return shlex.quote(a)


def show(argv, tmp):
    """A command as the user would type it, in the demo's directory."""
    words = []
    for a in argv:
        a = a.replace(tmp + "/", "").replace(ROOT + "/", "")
        words.append(quote(a))
    say("$ " + " ".join(words))


class Demo:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="raftlite-demo-")
        self.procs = []

    def raftd(self, name, args):
        argv = [RAFTD, "-id", name] + args
        show([os.path.join(ROOT, "build", "raftd")] + argv[1:], self.tmp)
        logpath = os.path.join(self.tmp, name + ".log")
        with open(logpath, "w") as log:
            p = subprocess.Popen(argv, cwd=self.tmp, stdout=log,
                                 stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        self.procs.append((name, p, logpath))
        deadline = time.time() + 60
        while True:
            with open(logpath, errors="replace") as f:
                out = f.read()
            if "serving gRPC" in out:
                break
            if p.poll() is not None or time.time() > deadline:
                raise DemoFailed("%s did not start (exit %s):\n%s" % (
                    name, p.poll(), out))
            time.sleep(0.05)
        for line in out.splitlines():
            if line.startswith("raftd: info: node "):
                say("  " + line)
        say("  (%s: pid %d)" % (name, p.pid))

    def run(self, argv, input=None, want_rc=0, shown=None, shown_input=None):
        show(shown or argv, self.tmp)
        if input is not None:
            for line in (shown_input or input).rstrip("\n").split("\n"):
                say("  > " + line)
        r = subprocess.run(argv, cwd=self.tmp, input=input, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120)
        for line in r.stdout.rstrip("\n").split("\n"):
            say("  " + line)
        if r.returncode != want_rc:
            raise DemoFailed("exit status %d, want %d" % (r.returncode,
                                                          want_rc))
        return r.stdout

    def client(self, args):
        return self.run([PY, CLIENT] + args,
                        shown=[os.path.join(ROOT, "demo", "client.py")] + args)

    def expect(self, what, cond):
        if not cond:
            raise DemoFailed("unexpected result: " + what)

    def main(self):
        taken = set()
        g = ["127.0.0.1:%d" % free_port(taken) for _ in range(3)]
        r = ["127.0.0.1:%d" % free_port(taken) for _ in range(3)]
        say("raftlite demo in %s (removed at the end)" % self.tmp)
        say()
        say("== 1. three raftd nodes on loopback (ports picked free)")
        self.raftd("node1", ["-grpc", g[0], "-raft", r[0], "-data", "data",
                             "-bootstrap"])
        for i in (1, 2):
            self.raftd("node%d" % (i + 1), ["-grpc", g[i], "-raft", r[i],
                                            "-data", "data", "-join", g[0]])
        say()
        say("== 2. over gRPC: create on node1, insert through node2 "
            "(a follower: forwarded to the leader), read on node3")
        self.client(["-addr", g[0], "-sql",
                     "CREATE TABLE demo (id INTEGER PRIMARY KEY, value TEXT)"])
        self.client(["-addr", g[1], "-sql",
                     "INSERT INTO demo (value) VALUES ('Hello Raft!'), "
                     "('Distributed Systems are Fun')"])
        out = self.client(["-addr", g[2], "-strong", "-sql",
                           "SELECT * FROM demo"])
        self.expect("node3 reads both rows", out.splitlines() == [
            "id|value", "1|Hello Raft!", "2|Distributed Systems are Fun"])
        out = self.client(["-addr", g[2], "-nodes"])
        self.expect("three voters, node1 leads",
                    "node1|%s|%s|voter|1" % (r[0], g[0]) in out and
                    out.count("|voter|") == 3)
        say()
        say("== 3. the stock sqlite3 shell with the extension, on node3's "
            "database file:")
        say("   a client of node3's raftd: it reads the file locally and "
            "asks node3 over gRPC for raft_nodes and the status;")
        say("   its own writes go through node3 (which relays them to the "
            "leader), and it reads them back at once")
        db3 = "data/node3/sqlite.db"
        session = ("SELECT * FROM demo;\n"
                   ".headers on\n"
                   "SELECT id, raft_addr, grpc_addr, role, is_leader FROM "
                   "raft_nodes;\n"
                   ".headers off\n"
                   "SELECT raft_leader();\n"
                   "PRAGMA raft_status;\n"
                   "INSERT INTO demo (value) VALUES ('from a client shell');\n"
                   "SELECT value FROM demo WHERE id = 3;\n")
        out = self.run([SQLITE3, "-batch"], want_rc=0,
                       input=".load %s\n.open %s\n%s" % (EXT, db3, session),
                       shown_input=".load build/raftlite\n.open %s\n%s" %
                       (db3, session))
        self.expect("the client shell reads, lists the nodes, writes",
                    "2|Distributed Systems are Fun" in out and
                    "node3|%s|%s|voter|0" % (r[2], g[2]) in out and
                    '"state":"follower"' in out and
                    out.rstrip().endswith("from a client shell"))
        say()
        say("== 4. the stock sqlite3 shell without the extension reads "
            "node1's file directly")
        out = self.run([SQLITE3, "data/node1/sqlite.db",
                        "SELECT value FROM demo ORDER BY id"])
        self.expect("node1's file holds every row", out.splitlines() == [
            "Hello Raft!", "Distributed Systems are Fun",
            "from a client shell"])
        say()
        say("== 5. stop: SIGINT (Ctrl-C) to every raftd")
        for name, p, logpath in self.procs:
            p.send_signal(signal.SIGINT)
            try:
                rc = p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                raise DemoFailed("%s did not stop within 60 s" % name)
            say("  %s exited %d" % (name, rc))
            if rc != 0:
                with open(logpath, errors="replace") as f:
                    raise DemoFailed("%s exited %d:\n%s" % (name, rc,
                                                            f.read()[-3000:]))
        say()
        say("demo ok")

    def cleanup(self):
        for name, p, _ in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def interrupted(sig, frame):
    raise KeyboardInterrupt()


def main():
    for f in (RAFTD, EXT + ".so", SQLITE3):
        if not os.path.exists(f):
            print("demo: %s is missing: run `make` first (make demo builds "
                  "it)" % f, file=sys.stderr)
            return 1
    # Installed explicitly: a process started with SIGINT ignored (a
    # background job of a non-interactive shell) would otherwise ignore
    # Ctrl-C.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    demo = Demo()
    try:
        demo.main()
        rc = 0
    except DemoFailed as e:
        print("demo FAILED: %s" % e, file=sys.stderr, flush=True)
        rc = 1
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr, flush=True)
        rc = 130
    finally:
        demo.cleanup()
    say("stopped every raftd and removed %s" % demo.tmp)
    return rc


if __name__ == "__main__":
    sys.exit(main())
