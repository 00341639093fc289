"""tests/lib/rlfaults.py -- the fault suite's cluster, workloads and
checks (tests/faults/test_faults.py drives them; other cluster tests may
reuse the workloads and checks).

A Cluster is 3 raftd in namespaces of their own (rlnetns.py). Workloads
run from client threads over gRPC, each thread bound to one node (a
follower forwards writes) and each recording a history: invoke and
completion times (time.monotonic) and the outcome, which is
  True     acknowledged
  REFUSED  surely not applied (the request never left, or the server said
           so before anything was proposed: DEFINITE below)
  "info"   unknown: a deadline, a broken connection, a commit whose
           outcome the server could not tell (today's "commit failed")
  register  keys 0..K-1: STRONG read, write (UPDATE ... SET v=?), and
            compare-and-set (UPDATE ... WHERE k=? AND v=?: rows_affected 1
            = swapped, 0 = "not swapped", an observation of the state)
  bank      N accounts; transfers as ExecuteTransaction (debit if the
            balance covers it, credit only if the debit happened); reads,
            STRONG and EVENTUAL, of every balance
  set       inserts of unique values; STRONG reads of the whole set
The checks never weaken an outcome: an unknown outcome is the most a
failure may become, and a history that cannot be decided is a failure.
"""
import hashlib
import itertools
import os
import random
import re
import subprocess
import threading
import time

# No fork handlers: they make a fork() wait for gRPC's threads to go idle,
# which under load never happens (seen: a hang restarting a node).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
import grpc  # noqa: E402

import lincheck  # noqa: E402
from lincheck import INFO, Op  # noqa: E402
from rltest import SAN, SLOW, SQLITE3, fail  # noqa: E402,F401

REFUSED = "refused"
RPC_TIMEOUT = 3.0 * SLOW

# A refusal that surely happened before anything was proposed to Raft.
DEFINITE = re.compile(
    r"^(no leader yet: (this node is|the leader \(raft id)"
    r"|cannot begin the write transaction"
    r"|statement( \d+:| failed)"
    r"|deadline exceeded while waiting for the writer)")


def outcomes(calls):
    """"ok=N info=N refused=N" of calls whose third field is True (done),
    INFO (outcome unknown) or anything else (refused)."""
    ok = sum(1 for c in calls if c[2] is True)
    info = sum(1 for c in calls if c[2] == INFO)
    return "ok=%d info=%d refused=%d" % (ok, info, len(calls) - ok - info)


def classify_error(text):
    return REFUSED if DEFINITE.match(text or "") else INFO


def classify_rpc_error(e):
    d = e.details() or ""
    if e.code() == grpc.StatusCode.UNAVAILABLE and (
            "failed to connect to all addresses" in d
            or "Connection refused" in d):
        return REFUSED  # no connection: the request was never sent
    return INFO


def channel(addr):
    # Reconnect fast (gRPC's default backoff grows to minutes): an outage
    # measured after a restart is the server's, not the client's backoff.
    return grpc.insecure_channel(addr, options=[
        ("grpc.enable_http_proxy", 0),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 500)])


class Ctx:
    """What every worker needs: stubs module, stop flag, clock."""

    def __init__(self, pb, pbg, seed):
        self.pb, self.pbg = pb, pbg
        self.stop = threading.Event()
        self.seed = seed
        self.counter = itertools.count(1)
        self.errors = []  # (time, node, text): worker-level surprises

    def stub(self, addr):
        return self.pbg.DistributedSqliteStub(channel(addr))

    def ival(self, x):
        return self.pb.Value(integer=x)

    def now(self):
        return time.monotonic()


def _pause(rnd):
    time.sleep(rnd.uniform(0.1, 0.3))


# ------------------------------------------------------------- register

class Register:
    K = 3

    def __init__(self, ctx):
        self.ctx = ctx
        self.ops = []
        self.last = {k: 0 for k in range(self.K)}

    def setup_sql(self):
        return ["CREATE TABLE reg(k INTEGER PRIMARY KEY, v INTEGER)"] + [
            "INSERT INTO reg VALUES (%d, 0)" % k for k in range(self.K)]

    def worker(self, idx, addr):
        c, pb = self.ctx, self.ctx.pb
        rnd = random.Random(c.seed * 1000 + idx)
        stub = c.stub(addr)
        while not c.stop.is_set():
            k = rnd.randrange(self.K)
            x = rnd.random()
            meta = {"node": addr}
            t0 = c.now()
            if x < 0.4:
                try:
                    r = stub.ExecuteRead(pb.ReadRequest(
                        sql="SELECT v FROM reg WHERE k = ?",
                        params=[c.ival(k)], consistency=pb.STRONG),
                        timeout=RPC_TIMEOUT)
                except grpc.RpcError:
                    _pause(rnd)
                    continue
                t1 = c.now()
                if r.error:
                    _pause(rnd)
                    continue
                if len(r.result.rows) != 1:
                    c.errors.append((t1, addr, "register read of key %d "
                                     "returned %d rows" % (
                                         k, len(r.result.rows))))
                    continue
                v = int(r.result.rows[0].values[0])
                self.last[k] = v
                self.ops.append(Op("read", v, True, t0, t1, k, meta))
                continue
            new = next(c.counter)
            if x < 0.7:
                f, val = "write", new
                req = pb.WriteRequest(sql="UPDATE reg SET v = ? WHERE k = ?",
                                      params=[c.ival(new), c.ival(k)])
            else:
                exp = self.last[k]
                f, val = "cas", (exp, new)
                req = pb.WriteRequest(
                    sql="UPDATE reg SET v = ? WHERE k = ? AND v = ?",
                    params=[c.ival(new), c.ival(k), c.ival(exp)])
            try:
                r = stub.ExecuteWrite(req, timeout=RPC_TIMEOUT)
                t1 = c.now()
                if r.success:
                    n = r.rows_affected
                    if f == "write" and n != 1:
                        c.errors.append((t1, addr, "register write of key "
                                         "%d changed %d rows" % (k, n)))
                    ok = True if f == "write" else n == 1
                else:
                    ok = classify_error(r.error)
                    meta["err"] = r.error[:160]
            except grpc.RpcError as e:
                t1 = c.now()
                ok = classify_rpc_error(e)
                meta["err"] = "%s %s" % (e.code().name, (e.details() or "")
                                         [:120])
            if ok == REFUSED:
                _pause(rnd)
                continue
            op = Op(f, val, ok, t0, None if ok == INFO else t1, k, meta)
            op.meta["t1"] = t1
            self.ops.append(op)
            if ok is True:
                self.last[k] = new
            if ok == INFO:
                _pause(rnd)

    def writes_ok(self):
        """Completion times of acknowledged writes that changed the
        register (a cas that did not swap changes nothing)."""
        return [(o.call, o.meta["t1"]) for o in self.ops
                if o.f in ("write", "cas") and o.ok is True]

    def check(self, max_states=500000):
        return lincheck.check(self.ops, init=0, max_states=max_states)

    def recheck_stale_noop(self, windows):
        """The same history with every "not swapped" answer invoked in one
        of the windows [(t0, t1)] taken as unknown: linearizable then means
        the failure came from such answers alone (issue 14 #2)."""
        ops = []
        for o in self.ops:
            if (o.f == "cas" and o.ok is False
                    and any(a <= o.call <= b for a, b in windows)):
                o = Op(o.f, o.value, INFO, o.call, None, o.key, o.meta)
            ops.append(o)
        return lincheck.check(ops, init=0)

    def summary(self):
        n = {}
        for o in self.ops:
            key = "%s/%s" % (o.f, {True: "ok", False: "noswap",
                                   INFO: "info"}[o.ok])
            n[key] = n.get(key, 0) + 1
        return " ".join("%s=%d" % kv for kv in sorted(n.items()))


# ----------------------------------------------------------------- bank

class Bank:
    N, START = 5, 100

    def __init__(self, ctx):
        self.ctx = ctx
        self.transfers = []  # (call, ret, ok, frm, to, amt, moved)
        self.reads = []      # (call, ret, node, consistency, balances)

    @property
    def total(self):
        return self.N * self.START

    def setup_sql(self):
        return ["CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER)"] + [
            "INSERT INTO acct VALUES (%d, %d)" % (i, self.START)
            for i in range(self.N)]

    def worker(self, idx, addr):
        c, pb = self.ctx, self.ctx.pb
        rnd = random.Random(c.seed * 1000 + 100 + idx)
        stub = c.stub(addr)
        while not c.stop.is_set():
            t0 = c.now()
            if rnd.random() < 0.35:
                strong = rnd.random() < 0.5
                try:
                    r = stub.ExecuteRead(pb.ReadRequest(
                        sql="SELECT id, bal FROM acct ORDER BY id",
                        consistency=pb.STRONG if strong else pb.EVENTUAL),
                        timeout=RPC_TIMEOUT)
                except grpc.RpcError:
                    _pause(rnd)
                    continue
                if r.error:
                    _pause(rnd)
                    continue
                bals = [(int(row.values[0]), int(row.values[1]))
                        for row in r.result.rows]
                self.reads.append((t0, c.now(), addr,
                                   "STRONG" if strong else "EVENTUAL", bals))
                continue
            frm, to = rnd.sample(range(self.N), 2)
            amt = rnd.randint(1, 5)
            # The credit runs only if the debit changed a row: changes()
            # is the previous statement's count while this one runs.
            req = pb.TransactionRequest(statements=[
                pb.Statement(sql="UPDATE acct SET bal = bal - ? "
                             "WHERE id = ? AND bal >= ?",
                             params=[c.ival(amt), c.ival(frm), c.ival(amt)]),
                pb.Statement(sql="UPDATE acct SET bal = bal + ? "
                             "WHERE id = ? AND changes() = 1",
                             params=[c.ival(amt), c.ival(to)])])
            try:
                r = stub.ExecuteTransaction(req, timeout=RPC_TIMEOUT)
                t1 = c.now()
                if r.success:
                    ok = True
                    rows = [x.rows_affected for x in r.results]
                    if len(rows) != 2 or rows[0] != rows[1]:
                        c.errors.append((t1, addr, "transfer changed %s "
                                         "rows" % rows))
                    moved = rows[0] == 1 if rows else False
                else:
                    ok, moved = classify_error(r.error), None
            except grpc.RpcError as e:
                t1 = c.now()
                ok, moved = classify_rpc_error(e), None
            self.transfers.append((t0, t1, ok, frm, to, amt, moved))
            if ok is not True:
                _pause(rnd)

    def writes_ok(self):
        return [(t0, t1) for t0, t1, ok, _, _, _, moved in self.transfers
                if ok is True and moved]

    def check(self):
        """Problems: reads whose total or account count is wrong."""
        bad = []
        for t0, t1, node, cons, bals in self.reads:
            if len(bals) != self.N or sum(b for _, b in bals) != self.total:
                bad.append("%s read on %s at %.3f: %d accounts, total %d "
                           "(want %d): %s" % (cons, node, t0, len(bals),
                                              sum(b for _, b in bals),
                                              self.total, bals))
        return bad

    def summary(self):
        return "transfers %s, reads=%d" % (outcomes(self.transfers),
                                           len(self.reads))


# ------------------------------------------------------------------ set

class SetW:
    def __init__(self, ctx):
        self.ctx = ctx
        self.adds = []   # (call, ret, ok, value)
        self.reads = []  # (call, ret, node, frozenset)

    def setup_sql(self):
        return ["CREATE TABLE s(v INTEGER PRIMARY KEY)"]

    def read(self, stub, timeout=RPC_TIMEOUT):
        pb = self.ctx.pb
        r = stub.ExecuteRead(pb.ReadRequest(sql="SELECT v FROM s",
                                            consistency=pb.STRONG),
                             timeout=timeout)
        if r.error:
            return None
        return frozenset(int(row.values[0]) for row in r.result.rows)

    def worker(self, idx, addr):
        c, pb = self.ctx, self.ctx.pb
        rnd = random.Random(c.seed * 1000 + 200 + idx)
        stub = c.stub(addr)
        n = 0
        while not c.stop.is_set():
            n += 1
            t0 = c.now()
            if n % 8 == 0:
                try:
                    vals = self.read(stub)
                except grpc.RpcError:
                    vals = None
                if vals is None:
                    _pause(rnd)
                else:
                    self.reads.append((t0, c.now(), addr, vals))
                continue
            v = next(c.counter)
            try:
                r = stub.ExecuteWrite(pb.WriteRequest(
                    sql="INSERT INTO s(v) VALUES (?)", params=[c.ival(v)]),
                    timeout=RPC_TIMEOUT)
                t1 = c.now()
                ok = True if r.success else classify_error(r.error)
            except grpc.RpcError as e:
                t1 = c.now()
                ok = classify_rpc_error(e)
            self.adds.append((t0, t1, ok, v))
            if ok is not True:
                _pause(rnd)

    def writes_ok(self):
        return [(t0, t1) for t0, t1, ok, _ in self.adds if ok is True]

    def check_read(self, t0, t1, vals, what):
        bad = []
        lost = sorted(v for a0, a1, ok, v in self.adds
                      if ok is True and a1 < t0 and v not in vals)
        if lost:
            bad.append("%s lacks %d acknowledged elements: %s" % (
                what, len(lost), lost[:20]))
        refused = sorted(v for a0, a1, ok, v in self.adds
                         if ok == REFUSED and v in vals)
        if refused:
            bad.append("%s holds elements whose insert was refused: %s" % (
                what, refused[:20]))
        known = set(v for a0, a1, ok, v in self.adds if a0 <= t1)
        ghost = sorted(vals - known)
        if ghost:
            bad.append("%s holds elements never inserted before it "
                       "ended: %s" % (what, ghost[:20]))
        return bad

    def check(self):
        bad = []
        for t0, t1, node, vals in self.reads:
            bad += self.check_read(t0, t1, vals, "STRONG set read on %s at "
                                   "%.3f" % (node, t0))
        return bad

    def summary(self):
        return "adds %s, reads=%d" % (outcomes(self.adds), len(self.reads))


# ------------------------------------------------------------- sampling

class Sampler:
    """Status of every node every 100 ms (a thread per node, so a paused
    node does not slow the others): (time, node, term, state)."""

    def __init__(self, ctx, addrs):
        self.ctx = ctx
        self.addrs = addrs
        self.samples = []
        self.threads = [threading.Thread(target=self._run, args=(a,),
                                         daemon=True) for a in addrs]

    def start(self):
        for t in self.threads:
            t.start()

    def _run(self, addr):
        c = self.ctx
        stub = c.stub(addr)
        while not c.stop.is_set():
            try:
                st = stub.Status(c.pb.StatusRequest(), timeout=0.5 * SLOW)
                self.samples.append((c.now(), addr, st.term, st.state,
                                     st.node_id))
            except grpc.RpcError:
                pass
            time.sleep(0.1)

    def join(self):
        for t in self.threads:
            t.join(timeout=10 * SLOW)

    def leaders_per_term(self):
        terms = {}
        for _, addr, term, state, nid in self.samples:
            if state == "leader":
                terms.setdefault(term, set()).add(nid or addr)
        return terms


def table_dumps(ctx, addr):
    """(sha256 of every table's rows, integrity_check) through addr's
    local (EVENTUAL) reads; None if the node does not answer."""
    pb = ctx.pb
    stub = ctx.stub(addr)
    h = hashlib.sha256()
    try:
        for sql in ("SELECT k, v FROM reg ORDER BY k",
                    "SELECT id, bal FROM acct ORDER BY id",
                    "SELECT v FROM s ORDER BY v"):
            r = stub.ExecuteRead(pb.ReadRequest(sql=sql,
                                                consistency=pb.EVENTUAL),
                                 timeout=5 * SLOW)
            if r.error:
                return None, r.error
            for row in r.result.rows:
                h.update(b"|".join(row.values) + b"\n")
            h.update(b"--\n")
        r = stub.ExecuteRead(pb.ReadRequest(sql="PRAGMA integrity_check",
                                            consistency=pb.EVENTUAL),
                             timeout=20 * SLOW)
        if r.error:
            return None, r.error
        ic = ";".join(v.decode() for row in r.result.rows for v in row.values)
    except grpc.RpcError as e:
        return None, "%s %s" % (e.code().name, e.details())
    return h.hexdigest(), ic


def file_dump(db):
    """(sha256 of the rows, integrity_check) of a stopped node's file, as
    the stock sqlite3 shell reads it."""
    sql = ("SELECT k || '|' || v FROM reg ORDER BY k; SELECT '--';"
           "SELECT id || '|' || bal FROM acct ORDER BY id; SELECT '--';"
           "SELECT v FROM s ORDER BY v; SELECT '--';"
           "PRAGMA integrity_check;")
    r = subprocess.run([SQLITE3, "-readonly", db, sql], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        fail("stock sqlite3 on %s: %s" % (db, r.stderr))
    lines = r.stdout.splitlines()
    return (hashlib.sha256("\n".join(lines[:-1]).encode()).hexdigest(),
            lines[-1] if lines else "")


SAN_RE = re.compile(r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                    r"runtime error:|UndefinedBehaviorSanitizer|"
                    r"ThreadSanitizer)")


def sanitizer_reports(text):
    """Excerpts of every sanitizer report in a log."""
    out = []
    for m in SAN_RE.finditer(text):
        out.append(text[max(0, m.start() - 200):m.start() + 1500])
    return out


def backtrace(binary, core):
    """The crashing thread's stack in a core file (gdb, when installed)."""
    try:
        r = subprocess.run(["gdb", "-batch", "-nx", "-ex", "bt 20", binary,
                            core], capture_output=True, text=True,
                           timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "(no backtrace: %s)" % e
    frames = []
    for line in r.stdout.splitlines():
        # gdb prints frame #0 once on loading the core, then in bt.
        if line.startswith("#") and line not in frames:
            frames.append(line)
    return "\n".join(frames) or "(no backtrace)"


class Statuses:
    """Status calls to nodes through the project's stubs (pb, pbg from
    rlgrpc.project_stubs), a failed call read as None."""

    def __init__(self, pb, pbg, nodes):
        self.pb, self.nodes = pb, nodes
        self.stubs = [pbg.DistributedSqliteStub(channel(n.grpc))
                      for n in nodes]

    def status(self, i):
        try:
            return self.stubs[i].Status(self.pb.StatusRequest(),
                                        timeout=1 * SLOW)
        except grpc.RpcError:
            return None

    def leader(self, among, timeout=30):
        """The index of the node of among that leads, once every one of
        them knows a leader; fails after timeout."""
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            sts = [(i, self.status(i)) for i in among]
            lead = leader_of(sts)
            if lead is not None and all(s and s.leader_id for _, s in sts):
                return lead
            time.sleep(0.1)
        fail("no leader among %s" % [self.nodes[i].name for i in among])


def leader_of(statuses):
    """Of (index, Status or None) pairs, the index of the node that says
    it leads in the highest term; None if none does."""
    best = None
    for i, st in statuses:
        if st and st.state == "leader" and (best is None or
                                            st.term > best[1]):
            best = (i, st.term)
    return best[0] if best else None


def outage(writes, t_fault):
    """Seconds from t_fault to the first acknowledged write invoked at or
    after it (None if none)."""
    ends = [t1 for t0, t1 in writes if t0 >= t_fault]
    return min(ends) - t_fault if ends else None
