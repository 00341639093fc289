"""tests/lib/rlcrash.py -- load and bookkeeping for the crash tests
(tests/cluster/test_crash_matrix.py, test_os_crash.py).

A Load runs one driver thread per live node of a Cluster. Each driver owns
its node's shell: it asks the node's state and its answer to
`SELECT max(id) FROM t`; a node that says it leads also writes a batch of
rows, each INSERT followed by `SELECT 'ack <id>' FROM t WHERE id = <id>`.
Only that second answer acknowledges a write: a row visible in the
leader's own file was committed through Raft (a commit frame reaches a
file only after its entry took effect), whereas an INSERT ... RETURNING
prints its row before the commit and proves nothing. Every answer a node
gives is recorded (Answers): a node must never answer a smaller max(id)
than it answered before, across crashes and restarts of that node.
"""
import itertools
import signal
import threading
import time

import rltest
from rlcluster import SLOW
from rltest import Shell, check, fail, log

TABLE = "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB);"


def make_table(c):
    """Creates t on the leader and waits until every node has it."""
    c.leader().sql(TABLE)
    c.wait_all("SELECT count(*) FROM sqlite_schema WHERE name = 't';", "1")


class Answers:
    """Every max(id) answer of every node, in the order given."""

    def __init__(self):
        self.mu = threading.Lock()
        self.last = {}  # node name -> (answer, when, what)
        self.count = 0

    def add(self, node, value, what):
        with self.mu:
            prev = self.last.get(node)
            if prev is not None and value < prev[0]:
                fail("%s answered max(id) = %d (%s) after answering %d (%s): "
                     "a node served an older state than it served before" %
                     (node, value, what, prev[0], prev[2]))
            self.last[node] = (value, time.time(), what)
            self.count += 1


class Load:
    """Writers and readers on every live member of c until stop()."""

    def __init__(self, c, answers, checkpoint_on=None, batch=10,
                 blob=300):
        self.c = c
        self.answers = answers
        self.acked = set()
        self.ids = itertools.count(answers_next_id(c))
        self.mu = threading.Lock()
        self.stopping = False
        self.out = {}  # node name -> everything its shell printed
        self.dead = {}  # node name -> shell exit status
        self.ckpt_on = checkpoint_on
        self.batch = batch
        self.blob = blob
        self.threads = []
        for n in c.live():
            th = threading.Thread(target=self._drive, args=(n,), daemon=True)
            self.threads.append(th)
            th.start()

    def _next_ids(self, k):
        with self.mu:
            return [next(self.ids) for _ in range(k)]

    def _call(self, n, text):
        out, finished = n.sh.partial(text, timeout=30 * SLOW)
        with self.mu:
            self.out[n.name] = self.out.get(n.name, "") + out
        return out, finished

    def _drive(self, n):
        last_ckpt = time.time()
        sh = n.sh
        while not self.stopping:
            if n.sh is not sh or sh.p.poll() is not None:
                break
            out, fin = self._call(
                n, "PRAGMA raft_status;\n"
                "SELECT 'max ' || coalesce(max(id), 0) FROM t;")
            if not fin:
                break
            leads = '"state":"leader"' in out.replace(" ", "")
            for line in out.splitlines():
                if line.startswith("max "):
                    self.answers.add(n.name, int(line[4:]), "read")
            if leads:
                ids = self._next_ids(self.batch)
                text = "\n".join(
                    "INSERT INTO t(id, v) VALUES (%d, randomblob(%d));\n"
                    "SELECT 'ack ' || id FROM t WHERE id = %d;" %
                    (i, self.blob, i) for i in ids)
                out, fin = self._call(n, text)
                got = [int(l[4:]) for l in out.splitlines()
                       if l.startswith("ack ")]
                with self.mu:
                    self.acked.update(got)
                if got:
                    self.answers.add(n.name, max(got), "ack")
                if not fin:
                    break
            else:
                time.sleep(0.02)
            if self.ckpt_on is n and time.time() - last_ckpt > 0.5:
                last_ckpt = time.time()
                out, fin = self._call(n, "PRAGMA wal_checkpoint(TRUNCATE);")
                if not fin:
                    break
        rc = sh.p.poll()
        if rc is not None:
            with self.mu:
                self.dead[n.name] = rc

    def wait_death(self, node, timeout):
        """Waits until node's shell exited; returns its status or None."""
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            rc = node.sh.p.poll()
            if rc is not None:
                return rc
            time.sleep(0.05)
        return None

    def stop(self):
        self.stopping = True
        for th in self.threads:
            th.join(60 * SLOW)
            check(not th.is_alive(), "a load driver did not stop")
        log("load: %d writes acknowledged" % len(self.acked))
        return self.acked


def answers_next_id(c):
    """A fresh id range: above every id any live node has. An armed shell
    is not asked: it may die at its fault point inside the query (its
    reads wait at the read gate while it catches up, and the point may
    come meanwhile); it holds no id the others lack beyond the margin."""
    best = 0
    for n in c.live():
        if isinstance(n.sh, ArmedShell):
            continue
        v = n.val("SELECT coalesce(max(id), 0) FROM t;")
        best = max(best, int(v))
    return best + 1000


class LoggedShell(Shell):
    """A Shell that keeps everything its shell printed in .printed
    (the node's log lines arrive in whichever call reads them)."""

    def _run(self, text, timeout):
        out, how = Shell._run(self, text, timeout)
        self.printed = getattr(self, "printed", "") + out
        return out, how


class ArmedShell(LoggedShell):
    """A LoggedShell whose start may die: the node may reach its armed
    fault point while `.open` restarts it."""

    def sql_ok(self, text, timeout=120):
        out, how = self._run(text, timeout)
        return out


def start_node(node, env=None, armed=False):
    """(Re)starts node's shell like Node.start, with env added; armed: the
    shell may die during its start (an armed fault point)."""
    e = dict(node.c.env)
    e.update(env or {})
    name = node.db
    if node.c.uri:
        name = "file:%s?%s" % (node.db, node.c.uri)
    cls = ArmedShell if armed else LoggedShell
    node.sh = cls(name, env=e, ext_path=node.c.ext)
    node.state = "up"
    return node


def drain(node):
    """Everything the (dead) shell printed: what calls read, then what
    no call read."""
    out = []
    while True:
        try:
            line = node.sh.q.get(timeout=2)
        except Exception:
            break
        if line is None:
            node.sh.q.put(None)
            break
        out.append(line)
    return getattr(node.sh, "printed", "") + "".join(out)


def check_aborted(node, rc, point, printed):
    """node's shell died by SIGABRT at fault point `point`."""
    check(rc is not None, "%s did not die at fault point %s: the point was "
          "never reached (a point not reached is a failure)" %
          (node.name, point))
    check(rc == -signal.SIGABRT,
          "%s exited with status %s, not by SIGABRT at %s; output:\n%s" %
          (node.name, rc, point, printed[-3000:]))
    check("fault point %s reached" % point in printed,
          "%s died by SIGABRT but did not report fault point %s; "
          "output:\n%s" % (node.name, point, printed[-3000:]))
    node.state = "killed"


def check_acked(c, acked, nodes=None, timeout=60):
    """Every acknowledged id is in t on every node (waits for followers)."""
    if not acked:
        return
    deadline = time.time() + timeout * SLOW
    for n in nodes or c.live():
        while True:
            out = n.val("SELECT id FROM t WHERE id >= %d;" % min(acked))
            have = set(int(x) for x in out.split() if x.isdigit())
            lost = acked - have
            if not lost:
                break
            if time.time() > deadline:
                fail("%s lacks %d acknowledged writes (e.g. %s)" %
                     (n.name, len(lost), sorted(lost)[:10]))
            time.sleep(0.2)
