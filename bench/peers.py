"""bench/peers.py -- the `peers` benchmark of bench/run.py: raftlite side by
side with plain SQLite and dqlite 1.11, every system started and stopped
here on loopback with fresh data (issue 18).

Systems: plain SQLite in the stock shell (synchronous FULL and NORMAL),
dqlite 1.11 three nodes (build/bench/dqlite-bench: go-dqlite's app package,
one process per node, a Go client process per workload), raftlite through
the leader's stock shell (the extension), raftlite over gRPC (three raftd,
Python grpc clients). Rounds are interleaved: each round runs every system
once, each on fresh data, in the same order.

This module never judges speed: it measures, prints one table, writes
build/bench/peers.csv and draws build/bench/peers.png (gnuplot). Its only
failures are sanity failures (a system that did not start, row counts that
do not add up), raised as rltest.TestFailure.
"""
import json
import os
import random
import shutil
import subprocess
import threading
import time

import rlcluster
import rltest
from rltest import Shell, check, fail, is_error, run_sql
from benchlib import SEGMENTS, count_lines, median, pctl, read_timing

VALUE = "v" * 100  # one row = an integer key and a 100-byte text
INSERT = "INSERT INTO t(v) VALUES('%s');\n" % VALUE
CREATE = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
TXN_ROWS = 1000
CLIENTS = 8

# Workloads, in table order: (key, title, baseline system).
WORKLOADS = (
    ("w1", "write, 1 client", "dqlite"),
    ("w8", "write, %d clients" % CLIENTS, "dqlite"),
    ("txn", "%d-row transaction" % TXN_ROWS, "dqlite"),
    ("rlocal", "point read, local", "stock shell, same file"),
    ("rwire", "point read, over the network", "dqlite"),
    ("rstrong", "STRONG read", "dqlite"),
)


class Results:
    """Measurements per (workload, system): one entry per round."""

    def __init__(self):
        self.rows = {}    # (work, system) -> list of round dicts
        self.order = []   # (work, system) in first-seen order
        self.notes = {}   # (work, system) -> text

    def add(self, work, system, ops, secs, lat=None, busy=0, errors=0,
            note=None, cpu=None, cpu_all=None):
        """cpu: CPU seconds the system's own processes (not the client)
        spent meanwhile, from cpu_seconds(); cpu_all: the same for every
        thread of the process when cpu is one thread's."""
        k = (work, system)
        if k not in self.rows:
            self.rows[k] = []
            self.order.append(k)
        self.rows[k].append({"ops": ops, "secs": secs, "lat": lat or [],
                             "busy": busy, "errors": errors, "cpu": cpu,
                             "cpu_all": cpu_all})
        if note:
            self.notes[k] = note

    def unsupported(self, work, system, why):
        k = (work, system)
        if k not in self.rows:
            self.rows[k] = []
            self.order.append(k)
        self.notes[k] = why

    def summary(self, work, system):
        rs = self.rows.get((work, system))
        if not rs:
            return None
        lat = [x for r in rs for x in r["lat"]]
        rates = [r["ops"] / r["secs"] for r in rs]
        return {"ops_per_s": median(rates), "rounds": rates,
                "p50": pctl(lat, 50) if lat else None,
                "p99": pctl(lat, 99) if lat else None,
                "busy": sum(r["busy"] for r in rs),
                "cpu_ms_per_op": (1e3 * sum(r["cpu"] for r in rs) /
                                  sum(r["ops"] for r in rs))
                if all(r["cpu"] is not None for r in rs) else None,
                "cpu_all_ms_per_op": (1e3 * sum(r["cpu_all"] for r in rs) /
                                      sum(r["ops"] for r in rs))
                if all(r["cpu_all"] is not None for r in rs) else None,
                "errors": sum(r["errors"] for r in rs),
                "ops": sum(r["ops"] for r in rs)}


def fsync_ms(d, n=200):
    """Latencies (ms) of n rounds of a 4 KiB pwrite + fsync in d, in a
    preallocated 256 KiB file: the disk's flush time of the moment."""
    path = os.path.join(d, "fsync-probe.dat")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    buf = b"\x5a" * 4096
    out = []
    try:
        os.pwrite(fd, buf * 64, 0)
        os.fsync(fd)
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, buf, (i % 64) * 4096)
            os.fsync(fd)
            out.append((time.perf_counter() - t0) * 1e3)
    finally:
        os.close(fd)
        os.unlink(path)
    return out


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids, main_thread=False):
    """CPU seconds (user + system, all threads) the processes pids have
    used so far: read before and after a workload, it is the servers'
    cost per operation, which the machine's load skews far less than
    their latency (the benchmark's other processes wait for a core).
    main_thread: only each process's main thread (a shell's, which runs
    the SQL; not the node's threads hosted in the same process)."""
    t = 0
    for pid in pids:
        path = ("/proc/%d/task/%d/stat" % (pid, pid) if main_thread
                else "/proc/%d/stat" % pid)
        with open(path) as f:
            v = f.read().rsplit(")", 1)[1].split()
        t += int(v[11]) + int(v[12])  # utime, stime (fields 14, 15)
    return t / TICK


def read_ids(n, top, seed):
    rng = random.Random(seed)
    return [rng.randint(1, top) for _ in range(n)]


def read_script(ids):
    """Point reads sent to a shell at once, their rows printed to
    /dev/null (the pipe to this script is not what is measured)."""
    return (".output /dev/null\n" +
            "".join("SELECT v FROM t WHERE id = %d;\n" % i for i in ids) +
            ".output stdout\n")


def timed_sql(sh, text, timeout=600):
    t0 = time.perf_counter()
    out = sh.sql(text, timeout=timeout)
    return time.perf_counter() - t0, out


# ------------------------------------------------------------ plain SQLite

def run_sqlite(cfg, res, root, sync, rnd):
    name = "SQLite %s" % sync
    d = os.path.join(root, "sqlite-%s-%d" % (sync, rnd))
    os.mkdir(d)
    db = os.path.join(d, "p.db")
    run_sql(db, "PRAGMA journal_mode=WAL;\n" + CREATE + "\n", ext=False)
    pragma = "PRAGMA synchronous=%s;\n.timeout 60000\n" % sync

    def shell():
        sh = Shell(db, ext=False)
        sh.sql_ok(pragma)
        got = sh.sql_ok("PRAGMA synchronous;").strip()
        check(got == {"FULL": "2", "NORMAL": "1"}[sync],
              "%s: synchronous is %r" % (name, got))
        return sh

    sh = shell()
    c0 = cpu_seconds([sh.p.pid])
    secs, out = timed_sql(sh, INSERT * cfg.n1)
    check(not is_error(out), "%s: inserts failed: %s" % (name, out[-300:]))
    res.add("w1", name, cfg.n1, secs, cpu=cpu_seconds([sh.p.pid]) - c0)

    # Eight stock shells on the same file (SQLite's busy handler waits
    # inside each: a BUSY is visible only when it gives up, as an error).
    shells = [shell() for _ in range(CLIENTS)]
    outs = [None] * CLIENTS
    share = cfg.n8 // CLIENTS

    def client(i):
        outs[i] = shells[i].sql(INSERT * share, timeout=600)

    ths = [threading.Thread(target=client, args=(i,))
           for i in range(CLIENTS)]
    pids = [x.p.pid for x in shells]
    c0 = cpu_seconds(pids)
    t0 = time.perf_counter()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    secs = time.perf_counter() - t0
    cpu = cpu_seconds(pids) - c0
    errs = sum(1 for o in outs for line in (o or "").splitlines()
               if is_error(line))
    busy = sum(1 for o in outs for line in (o or "").splitlines()
               if is_error(line) and "locked" in line)
    res.add("w8", name, share * CLIENTS, secs, busy=busy, errors=errs,
            cpu=cpu)
    for s in shells:
        s.close()

    lat = []
    c0 = cpu_seconds([sh.p.pid])
    t0 = time.perf_counter()
    for _ in range(cfg.ntx):
        a = time.perf_counter()
        sh.sql_ok("BEGIN;\n" + INSERT * TXN_ROWS + "COMMIT;")
        lat.append((time.perf_counter() - a) * 1e3)
    res.add("txn", name, cfg.ntx, time.perf_counter() - t0, lat,
            cpu=cpu_seconds([sh.p.pid]) - c0)
    got = sh.sql_ok("SELECT count(*) FROM t;").strip()
    want = cfg.n1 + share * CLIENTS - errs + cfg.ntx * TXN_ROWS
    check(got == str(want), "%s: %s rows, want %d" % (name, got, want))
    check(sh.close() == 0, "%s: shell exited nonzero" % name)
    shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------ dqlite

DQLITE = "dqlite 1.11, Go client"


class Dqlite:
    """Three dqlite-bench nodes on loopback, fresh data dirs."""

    def __init__(self, root, rnd):
        self.exe = os.path.join(rltest.BUILD, "bench", "dqlite-bench")
        check(os.path.exists(self.exe), "%s is missing: run `make "
              "bench-bins`" % self.exe)
        self.dir = os.path.join(root, "dqlite-%d" % rnd)
        os.mkdir(self.dir)
        self.procs, self.addrs = [], []
        used = set()
        for i in range(3):
            addr = "127.0.0.1:%d" % rlcluster._ports(used)
            d = os.path.join(self.dir, "n%d" % (i + 1))
            os.mkdir(d)
            argv = [self.exe, "node", "-dir", d, "-addr", addr]
            if i:
                argv += ["-join", self.addrs[0]]
            logp = os.path.join(self.dir, "n%d.log" % (i + 1))
            logf = open(logp, "w")
            p = rltest.spawn(argv, stdout=logf, stderr=subprocess.STDOUT)
            logf.close()
            self.procs.append((p, logp))
            self.addrs.append(addr)
            self.wait_ready(p, logp)
        self.cluster = ",".join(self.addrs)

    @staticmethod
    def wait_ready(p, logp, timeout=90):
        t0 = time.time()
        while time.time() - t0 < timeout:
            with open(logp, errors="replace") as f:
                text = f.read()
            if "ready" in text.split():
                return
            if p.poll() is not None:
                fail("dqlite node exited %s at start:\n%s" % (p.returncode,
                                                             text[-2000:]))
            time.sleep(0.05)
        fail("dqlite node not ready within %ds" % timeout)

    def client(self, work, **kw):
        """Runs one client process; its JSON result, with "cpu": the
        nodes' CPU seconds meanwhile."""
        pids = [p.pid for p, _ in self.procs]
        c0 = cpu_seconds(pids)
        argv = [self.exe, "client", "-cluster", self.cluster, "-work", work]
        for k, v in kw.items():
            argv += ["-" + k, str(v)]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        check(p.returncode == 0, "dqlite-bench client %s exited %d: %s" %
              (work, p.returncode, p.stderr[-2000:]))
        r = json.loads(p.stdout)
        r["cpu"] = cpu_seconds(pids) - c0
        return r

    def close(self):
        for p, logp in self.procs:
            if p.poll() is None:
                p.terminate()
        for p, logp in self.procs:
            try:
                rc = p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                fail("dqlite node did not stop within 60 s of SIGTERM")
            if rc != 0:
                with open(logp, errors="replace") as f:
                    fail("dqlite node exited %d at SIGTERM:\n%s" %
                         (rc, f.read()[-2000:]))
        shutil.rmtree(self.dir, ignore_errors=True)


def run_dqlite(cfg, res, root, rnd):
    dq = Dqlite(root, rnd)
    try:
        dq.client("setup")
        errors = 0
        for work, kw in (("w1", {"work": "insert", "n": cfg.n1}),
                         ("w8", {"work": "insert", "n": cfg.n8,
                                 "clients": CLIENTS}),
                         ("txn", {"work": "txn", "n": cfg.ntx,
                                  "rows": TXN_ROWS})):
            kw = dict(kw)
            r = dq.client(kw.pop("work"), **kw)
            res.add(work, DQLITE, r["ops"], r["seconds"], r["lat_ms"],
                    r["busy"], r["errors"], cpu=r["cpu"],
                    note=("first error: " + r["first_error"][:60])
                    if r["first_error"] else None)
            errors += r["errors"]
        got = dq.client("count")["ops"]
        want = cfg.n1 + cfg.n8 + cfg.ntx * TXN_ROWS
        # A write that failed for good after its retries was not applied
        # (dqlite's BUSY is definite), a txn error loses TXN_ROWS rows.
        check(want - errors * TXN_ROWS <= got <= want,
              "dqlite: %d rows, want %d (%d errors)" % (got, want, errors))
        r = dq.client("read", n=cfg.nreads)
        res.add("rwire", DQLITE, r["ops"], r["seconds"], r["lat_ms"],
                r["busy"], r["errors"], cpu=r["cpu"])
        # dqlite reads go to the leader (its wire protocol has no other
        # read): the same measurement is the baseline of STRONG reads.
        res.add("rstrong", DQLITE, r["ops"], r["seconds"], r["lat_ms"],
                r["busy"], r["errors"], cpu=r["cpu"],
                note="leader reads (the same run as above)")
    finally:
        dq.close()


# -------------------------------------------------- raftlite, stock shells

RL_SHELL = "raftlite, leader's shell"
RL_FOLLOWER = "raftlite, a follower's shell"
STOCK = "stock shell, same file"
RL_LOCAL = "raftlite, leader's shell (extension)"
READ_REPS = 10  # alternating timed passes of local reads per round


def timing_rows(tdir, pid, skip):
    """(rows, lines now) of RAFTLITE_TIMING's commits-<pid>.txt after the
    first skip lines (benchlib.read_timing)."""
    path = os.path.join(tdir, "commits-%d.txt" % pid)
    return read_timing(path, skip), count_lines(path)


def run_rl_shell(cfg, res, root, rnd, breakdown):
    tdir = rltest.scratch("rlpeers-timing-")
    c = rlcluster.Cluster(3, env={"RAFTLITE_TIMING": tdir})
    try:
        lead = c.leader()
        lead.sql(CREATE)
        pids = [n.pid for n in c.nodes]
        _, skip = timing_rows(tdir, lead.pid, 0)
        c0 = cpu_seconds(pids)
        t0 = time.perf_counter()
        out = lead.sql(INSERT * cfg.n1, timeout=600)
        secs = time.perf_counter() - t0
        cpu = cpu_seconds(pids) - c0
        check(not is_error(out), "leader's shell: inserts failed: %s" %
              out[-300:])
        rows, skip = timing_rows(tdir, lead.pid, skip)
        check(len(rows) >= cfg.n1 * 0.99, "timing: %d of %d commits "
              "recorded" % (len(rows), cfg.n1))
        breakdown.setdefault(RL_SHELL + ", 1 client", []).extend(rows)
        res.add("w1", RL_SHELL, cfg.n1, secs, [x["done"] for x in rows],
                cpu=cpu, note="latency: the commit inside the VFS (RAFTLITE_TIMING)")

        # A follower's shell: its writes go to the leader (ForwardTxn).
        # If one is refused (an old build), the row says why.
        fol = next(n for n in c.live() if n is not lead)
        c.wait_val(fol, "SELECT count(*) FROM sqlite_master WHERE name = "
                   "'t';", "1")  # the table replicated: not the error
        ok, out, err = fol.try_sql(INSERT)
        if ok:
            t0 = time.perf_counter()
            out = fol.sql(INSERT * cfg.n1, timeout=600)
            res.add("w1", RL_FOLLOWER, cfg.n1, time.perf_counter() - t0)
        else:
            why = err.split("raft_last_error:")[-1].strip()
            why = why.split(" failed: ", 1)[-1]  # after the file's path
            res.unsupported("w1", RL_FOLLOWER, "refused: %s" % why[:90])

        lat = []
        c0 = cpu_seconds(pids)
        t0 = time.perf_counter()
        for _ in range(cfg.ntx):
            a = time.perf_counter()
            lead.sql("BEGIN;\n" + INSERT * TXN_ROWS + "COMMIT;", timeout=600)
            lat.append((time.perf_counter() - a) * 1e3)
        res.add("txn", RL_SHELL, cfg.ntx, time.perf_counter() - t0, lat,
                cpu=cpu_seconds(pids) - c0)
        want = cfg.n1 + cfg.ntx * TXN_ROWS + (1 if ok else 0) + (
            cfg.n1 if ok else 0)
        got = lead.val("SELECT count(*) FROM t;")
        check(got == str(want), "leader: %s rows, want %d" % (got, want))

        # Local point reads on the leader's file: its own shell (through
        # the extension) and a stock shell without it, read-only,
        # alternating, the same ids.
        stock = Shell(lead.db, ext=False, args=("-readonly",))
        got = stock.sql_ok("SELECT count(*) FROM t;").strip()
        check(got == str(want), "stock shell on the leader's file: %s rows, "
              "want %d" % (got, want))
        # Each shell reads the ids once untimed (its page cache warm),
        # then READ_REPS timed passes alternate between the two.
        # 4x the reads of the network workloads per pass: a pass of ~0.1 s
        # is less at the mercy of one preemption on the loaded machine.
        ids = read_ids(4 * cfg.nreads, want, rnd)
        script = read_script(ids)
        shells = ((STOCK, stock), (RL_LOCAL, lead.sh))
        for name, sh in shells:
            sh.sql(script, timeout=600)
        for rep in range(READ_REPS):
            for name, sh in shells:
                c0 = cpu_seconds([sh.p.pid], main_thread=True)
                a0 = cpu_seconds([sh.p.pid])
                secs, out = timed_sql(sh, script)
                check(not is_error(out), "%s: reads failed: %s" %
                      (name, out[-300:]))
                res.add("rlocal", name, len(ids), secs,
                        cpu=cpu_seconds([sh.p.pid], main_thread=True) - c0,
                        cpu_all=cpu_seconds([sh.p.pid]) - a0)
        check(stock.close() == 0, "stock reader exited nonzero")
    finally:
        c.close(check_rc=False)
        shutil.rmtree(c.dir, ignore_errors=True)
        shutil.rmtree(tdir, ignore_errors=True)


# ---------------------------------------------------------- raftlite, gRPC

RL_GRPC = "raftlite gRPC, leader"
RL_GRPC_FWD = "raftlite gRPC, via a follower"


def run_rl_grpc(cfg, res, root, rnd, stubs_mod, breakdown):
    import grpc
    from rlgrpc import Raftd, channel
    pb, pbg = stubs_mod
    tdir = rltest.scratch("rlpeers-timing-")
    # Raftd spawns with this process's environment.
    os.environ["RAFTLITE_TIMING"] = tdir
    nodes = []

    def data(name):
        d = os.path.join(root, "raftd-%d-%s" % (rnd, name))
        os.mkdir(d)
        return d

    try:
        n1 = Raftd(node="n1", data=data("n1"), args=[
            "-bootstrap", "-raft", "127.0.0.1:%d" % rltest.free_port()])
        nodes.append(n1)
        for name in ("n2", "n3"):
            nodes.append(Raftd(node=name, data=data(name), args=[
                "-join", n1.addr, "-raft",
                "127.0.0.1:%d" % rltest.free_port()]))
    finally:
        os.environ.pop("RAFTLITE_TIMING", None)
    chans = []
    try:
        def stub(n):
            ch = channel(n.addr)
            chans.append(ch)
            return pbg.DistributedSqliteStub(ch)

        lead, fol = stub(nodes[0]), stub(nodes[1])
        ld = lead.Leader(pb.LeaderRequest(), timeout=30)
        check(ld.known and ld.node_id == "n1", "raftd: n1 is not the "
              "leader: %r" % ld)
        w = lead.ExecuteWrite(pb.WriteRequest(sql=CREATE), timeout=30)
        check(w.success, "raftd: CREATE TABLE: %s" % w.error)
        pid = nodes[0].p.pid
        pids = [n.p.pid for n in nodes]
        _, skip = timing_rows(tdir, pid, 0)
        req = pb.WriteRequest(sql="INSERT INTO t(v) VALUES (?)",
                              params=[pb.Value(text=VALUE)])

        def writes(s, n, lat, errs):
            for _ in range(n):
                a = time.perf_counter()
                try:
                    r = s.ExecuteWrite(req, timeout=60)
                    if not r.success:
                        errs.append(r.error)
                except grpc.RpcError as e:
                    errs.append("%s %s" % (e.code(), e.details()))
                lat.append((time.perf_counter() - a) * 1e3)

        def busy_of(errs):
            return sum(1 for e in errs if "BUSY" in e.upper() or
                       "LOCKED" in e.upper())

        applied = 0
        for work, system, s, n in (("w1", RL_GRPC, lead, cfg.n1),
                                   ("w1", RL_GRPC_FWD, fol, cfg.n1 // 2)):
            lat, errs = [], []
            c0 = cpu_seconds(pids)
            t0 = time.perf_counter()
            writes(s, n, lat, errs)
            secs = time.perf_counter() - t0
            res.add(work, system, n, secs, lat, busy_of(errs), len(errs),
                    cpu=cpu_seconds(pids) - c0, note=("first error: " + errs[0][:60]) if errs else None)
            applied += n - len(errs)
            rows, skip = timing_rows(tdir, pid, skip)
            if system == RL_GRPC:
                breakdown.setdefault(RL_GRPC + ", 1 client", []).extend(rows)

        # Eight clients, one thread and one channel each, released
        # together.
        cstubs = [stub(nodes[0]) for _ in range(CLIENTS)]
        share = cfg.n8 // CLIENTS
        lats = [[] for _ in range(CLIENTS)]
        errs = [[] for _ in range(CLIENTS)]
        bar = threading.Barrier(CLIENTS + 1)

        def client(i):
            bar.wait()
            writes(cstubs[i], share, lats[i], errs[i])

        ths = [threading.Thread(target=client, args=(i,))
               for i in range(CLIENTS)]
        for t in ths:
            t.start()
        c0 = cpu_seconds(pids)
        bar.wait()
        t0 = time.perf_counter()
        for t in ths:
            t.join()
        secs = time.perf_counter() - t0
        cpu = cpu_seconds(pids) - c0
        allerr = [e for x in errs for e in x]
        rows, skip = timing_rows(tdir, pid, skip)
        breakdown.setdefault(RL_GRPC + ", %d clients" % CLIENTS,
                             []).extend(rows)
        res.add("w8", RL_GRPC, share * CLIENTS, secs,
                [x for y in lats for x in y], busy_of(allerr), len(allerr),
                cpu=cpu, note="%.1f requests per Raft entry" %
                (share * CLIENTS / max(1, len(rows))))
        applied += share * CLIENTS - len(allerr)

        treq = pb.TransactionRequest(statements=[
            pb.Statement(sql="INSERT INTO t(v) VALUES (?)",
                         params=[pb.Value(text=VALUE)])] * TXN_ROWS)
        lat, terrs = [], []
        c0 = cpu_seconds(pids)
        t0 = time.perf_counter()
        for _ in range(cfg.ntx):
            a = time.perf_counter()
            r = lead.ExecuteTransaction(treq, timeout=120)
            lat.append((time.perf_counter() - a) * 1e3)
            if not r.success:
                terrs.append(r.error)
        res.add("txn", RL_GRPC, cfg.ntx, time.perf_counter() - t0, lat,
                busy_of(terrs), len(terrs), cpu=cpu_seconds(pids) - c0)
        applied += (cfg.ntx - len(terrs)) * TXN_ROWS

        r = lead.ExecuteRead(pb.ReadRequest(sql="SELECT count(*) FROM t"),
                             timeout=30)
        check(not r.error, "raftd: count: %s" % r.error)
        got = int(bytes(r.result.rows[0].values[0]))
        check(got == applied, "raftd: %d rows, want %d" % (got, applied))

        ids = read_ids(cfg.nreads, got, rnd)
        for work, system, s, cons in (
                ("rwire", RL_GRPC + " (local read)", lead, pb.EVENTUAL),
                ("rstrong", RL_GRPC, lead, pb.STRONG),
                ("rstrong", RL_GRPC_FWD.replace("via", "on"), fol,
                 pb.STRONG)):
            lat, rerrs = [], []
            c0 = cpu_seconds(pids)
            t0 = time.perf_counter()
            for i in ids:
                a = time.perf_counter()
                r = s.ExecuteRead(pb.ReadRequest(
                    sql="SELECT v FROM t WHERE id = ?",
                    params=[pb.Value(integer=i)], consistency=cons),
                    timeout=30)
                lat.append((time.perf_counter() - a) * 1e3)
                if r.error or len(r.result.rows) != 1 or \
                        len(r.result.rows[0].values[0]) != len(VALUE):
                    rerrs.append(r.error or "wrong row")
            res.add(work, system, len(ids), time.perf_counter() - t0, lat,
                    busy_of(rerrs), len(rerrs), cpu=cpu_seconds(pids) - c0)
    finally:
        for ch in chans:
            ch.close()
        for n in reversed(nodes):
            n.stop()
            shutil.rmtree(n.data, ignore_errors=True)
        shutil.rmtree(tdir, ignore_errors=True)


# ----------------------------------------------------------------- driver

def bench_peers(args, results, root, table):
    from rlgrpc import project_stubs
    stubs_mod = project_stubs()
    cfg = args
    res = Results()
    breakdown = {}
    fsyncs = []
    load0 = os.getloadavg()
    nproc = subprocess.run(["nproc"], capture_output=True,
                           text=True).stdout.strip()
    systems = (
        ("SQLite FULL", lambda r: run_sqlite(cfg, res, root, "FULL", r)),
        ("SQLite NORMAL", lambda r: run_sqlite(cfg, res, root, "NORMAL", r)),
        ("dqlite", lambda r: run_dqlite(cfg, res, root, r)),
        ("raftlite shell", lambda r: run_rl_shell(cfg, res, root, r,
                                                  breakdown)),
        ("raftlite gRPC", lambda r: run_rl_grpc(cfg, res, root, r, stubs_mod,
                                                breakdown)),
    )
    for rnd in range(cfg.peers_rounds):
        for name, fn in systems:  # interleaved: every system each round
            t0 = time.time()
            fn(rnd)
            print("  peers round %d: %s done in %.1f s" %
                  (rnd, name, time.time() - t0), flush=True)
        fsyncs += fsync_ms(root)
    load1 = os.getloadavg()

    out, csv = [], ["workload,system,baseline,ops_per_s,p50_ms,p99_ms,"
                    "ratio_to_baseline,busy,errors,server_cpu_ms_per_op,"
                    "round_ops_per_s,note"]
    rows = []
    for work, title, base in WORKLOADS:
        bs = res.summary(work, base if base != "dqlite" else DQLITE)
        for (w, system) in res.order:
            if w != work:
                continue
            s = res.summary(work, system)
            note = res.notes.get((work, system), "")
            if s is None:
                rows.append([title, system, "-", "-", "-", "-", "-", "-",
                             "-", "-", note])
                csv.append('"%s","%s","%s",,,,,,,,,"%s"' %
                           (title, system, base, note.replace('"', "'")))
                out.append({"workload": title, "system": system,
                            "baseline": base, "note": note})
                continue
            ratio = s["ops_per_s"] / bs["ops_per_s"] if bs else None
            if s["cpu_all_ms_per_op"] is not None:
                note = ("cpu of the whole process (all threads): %.4f "
                        "ms/op" % s["cpu_all_ms_per_op"])
            f = lambda x: "-" if x is None else "%.2f" % x  # noqa: E731
            rows.append([title, system, "%.0f" % s["ops_per_s"], f(s["p50"]),
                         f(s["p99"]), base, f(ratio), str(s["busy"]),
                         str(s["errors"]), f(s["cpu_ms_per_op"]), note])
            csv.append('"%s","%s","%s",%.1f,%s,%s,%s,%d,%d,%s,"%s","%s"' % (
                title, system, base, s["ops_per_s"],
                "" if s["p50"] is None else "%.3f" % s["p50"],
                "" if s["p99"] is None else "%.3f" % s["p99"],
                "" if ratio is None else "%.3f" % ratio, s["busy"],
                s["errors"], "" if s["cpu_ms_per_op"] is None else
                "%.4f" % s["cpu_ms_per_op"], " ".join("%.0f" % x for x in s["rounds"]),
                note.replace('"', "'")))
            d = dict(s, workload=title, system=system, baseline=base,
                     ratio=ratio, note=note)
            out.append(d)
    fs = {"p50": pctl(fsyncs, 50), "p99": pctl(fsyncs, 99), "n": len(fsyncs)}
    table("peers: %d interleaved round(s), fresh data per system per round, "
          "loopback; nproc %s; load average %.1f at start, %.1f at end; "
          "fsync of a 4 KiB write in the data dir: p50 %.2f ms, p99 %.2f ms "
          "(%d); ops/s = median of rounds; p50/p99 ms = client round trip "
          "(leader's shell: the commit inside the VFS; shell scripts "
          "otherwise have none); busy = BUSY/locked answers a client saw "
          "(dqlite: each retried), errors = all client-visible errors; "
          "cpu = CPU ms per op of the system's own processes (all nodes, "
          "not the client; local reads: the shell's main thread only)"
          % (cfg.peers_rounds, nproc, load0[0], load1[0], fs["p50"],
             fs["p99"], fs["n"]),
          ["workload", "system", "ops/s", "p50", "p99", "baseline", "ratio",
           "busy", "errors", "cpu", "note"], rows)

    # Where a raftlite write's time goes (RAFTLITE_TIMING), per path.
    bd_rows, bd = [], {}
    names = [k for k in breakdown if breakdown[k]]
    for seg, a, b in SEGMENTS:
        row = [seg]
        for k in names:
            xs = [max(0.0, x[b] - x[a]) for x in breakdown[k]]
            bd.setdefault(k, {})[seg] = {"p50": pctl(xs, 50),
                                         "p99": pctl(xs, 99)}
            row += ["%.3f" % pctl(xs, 50), "%.3f" % pctl(xs, 99)]
        bd_rows.append(row)
    head = ["segment"]
    for k in names:
        head += ["%s p50" % k, "p99"]
    table("peers: raftlite commit breakdown (ms; commits: %s)" %
          ", ".join("%s %d" % (k, len(breakdown[k])) for k in names),
          head, bd_rows)

    bdir = os.path.join(rltest.BUILD, "bench")
    os.makedirs(bdir, exist_ok=True)
    csv_path = os.path.join(bdir, "peers.csv")
    with open(csv_path, "w") as f:
        f.write("\n".join(csv) + "\n")
    png = chart(out, bdir)
    print("  peers: %s, %s" % (csv_path, png or "no chart (gnuplot failed)"))
    results["peers"] = {"nproc": nproc, "loadavg_start": load0,
                        "loadavg_end": load1, "fsync_ms": fs,
                        "rounds": cfg.peers_rounds, "rows": out,
                        "breakdown": bd,
                        "sizes": {"writes_1": cfg.n1, "writes_8": cfg.n8,
                                  "txns": cfg.ntx, "reads": cfg.nreads}}


def chart(rows, bdir):
    """build/bench/peers.png: ops/s per system (log scale), one panel,
    bars grouped by workload, each labelled with its ratio to the
    baseline. Returns the path, or None if gnuplot failed (said)."""
    dat = os.path.join(bdir, "peers.dat")
    png = os.path.join(bdir, "peers.png")
    with open(dat, "w") as f:
        f.write("# label ops_per_s ratio\n")
        for r in rows:
            if r.get("ops_per_s") is None:
                continue
            label = "%s: %s" % (r["workload"], r["system"])
            f.write('"%s" %.1f "%s"\n' % (
                label.replace('"', "'"), r["ops_per_s"],
                "x%.2f" % r["ratio"] if r.get("ratio") is not None else ""))
    gp = """set terminal pngcairo size 1600,900 font ',9'
set output '%s'
set title 'raftlite side by side with peers (bench/run.py --only peers): ops/s, log scale; label = ratio to the workload baseline'
set style data histograms
set style fill solid 0.7 border -1
set boxwidth 0.8
set logscale y
set ylabel 'ops/s'
set yrange [0.5:*]
set grid ytics
set xtics rotate by -40 left
set bmargin 18
set rmargin 22
unset key
plot '%s' using 2:xtic(1) lc rgb '#4a7ab5', \\
     '' using 0:($2*1.15):3 with labels font ',8'
""" % (png, dat)
    p = subprocess.run(["gnuplot"], input=gp, capture_output=True,
                       text=True)
    if p.returncode != 0:
        print("  peers: gnuplot failed: %s" % p.stderr[-500:])
        return None
    return png
