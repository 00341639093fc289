#!/usr/bin/python3
# budget: 240
# serial: netns
# budget-long: 3000
# asan: yes
"""tests/faults/test_faults.py -- the project's own Jepsen-style fault
suite (issue 14): 3 build/raftd nodes, each in a network namespace of its
own (tests/lib/rlnetns.py), register, bank and set workloads from 7 client
threads over gRPC (tests/lib/rlfaults.py) while one fault is injected:

  kill-follower       kill -9 of a follower, restarted after a while
  kill-leader         kill -9 of the leader, restarted after a while
  pause-leader        SIGSTOP of the leader, SIGCONT after a while
  partition-leader    the leader cut off from both followers (nftables)
  partition-follower  a follower cut off from both others
  kill-all            kill -9 of all three, then all restarted

and then checks: the register history is linearizable (tests/lib/
lincheck.py, proven by test_lincheck.py), no acknowledged set element is
lost or refused one visible (in any STRONG read and at the end on every
node), every bank read (STRONG and EVENTUAL) sees the full total, at most
one leader per term (Status sampled every 100 ms), every node ends with
identical tables and PRAGMA integrity_check ok (through gRPC while
running, and the files through the stock shell after a SIGTERM that must
exit 0), no raftd died by itself, no core file, no sanitizer report in any
log (run against build/asan by the runner). The write outage after each
fault (fault to the first acknowledged write invoked after it) is printed,
and after a single-node fault must stay within OUTAGE_TARGET.

make test runs every fault once, short (the ASan run: SAN_FAULTS); with
RL_LONG=1 (make test-long) each fault runs several longer cycles.
A failed check prints the seed and the command that replays the case.

KNOWN_BUGS lists failures that are bugs of raftd known and being fixed
(issue 14). A failed check that matches an entry is reported as
"KNOWN BUG", counted and listed at the end; it does not fail the run unless
RL_STRICT=1. Every other failed check fails the run. Remove an entry once
its fix is merged: the suite then holds the line.

usage: test_faults.py [--fault NAME[,NAME...]] [--cycles N] [--seed N]
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))
import argparse
import random
import re
import threading
import time

from rltest import LONG, SAN, BUILD, check, fail, log, scratch, TestFailure
import rlnetns
import rlfaults
from rlfaults import SLOW, Bank, Ctx, Register, Sampler, SetW

FAULTS = ["kill-follower", "kill-leader", "pause-leader", "partition-leader",
          "partition-follower", "kill-all"]
# Under ASan (the runner's second run): the faults that stop a leader or
# restart nodes, to keep tests/faults within its 4 minutes.
SAN_FAULTS = ["kill-leader", "pause-leader", "partition-leader", "kill-all"]
SINGLE_NODE = set(FAULTS) - {"kill-all"}
# raft's election timeout is 1 s, randomized up to 2 s: a new leader can
# take 2 s; issue 14's target is that plus one second.
OUTAGE_TARGET = 3.0
# After any fault (kill-all included) writes resume within this many
# seconds of its healing.
RECOVERY = 20


class KnownBug:
    def __init__(self, name, issue, faults, checks, pattern):
        self.name, self.issue = name, issue
        self.faults, self.checks = set(faults), set(checks)
        self.pattern = re.compile(pattern, re.S)
        self.hits = 0

    def matches(self, fault, check_name, detail):
        return (fault in self.faults and check_name in self.checks
                and self.pattern.search(detail) is not None)


# Failures of a known, open bug: each hit is printed and counted, never
# passed silently (RL_STRICT=1 fails on them). Empty since the fixes of
# issue 14 landed (the step-down crash, the stale no-op answer and the
# slow failover: strict runs, plain and ASan, hit none of them).
KNOWN_BUGS = []
STRICT = os.environ.get("RL_STRICT") == "1"


class Case:
    def __init__(self, fault, seed, net, pb, pbg, cycles):
        self.fault, self.seed, self.net = fault, seed, net
        self.pb, self.pbg = pb, pbg
        self.cycles = cycles
        self.rnd = random.Random("%d/%s" % (seed, fault))
        self.problems = []  # (check, detail, KnownBug or None)
        self.outages = []   # (cycle, node, seconds or None)
        self.lock = threading.Lock()
        self.windows = []   # (t_fault, t_heal) per cycle
        self.ctx = None

    # ------------------------------------------------------------ nodes

    def problem(self, check_name, detail):
        kb = None
        for b in KNOWN_BUGS:
            if b.matches(self.fault, check_name, detail):
                kb = b
                b.hits += 1
                break
        self.problems.append((check_name, detail, kb))
        log("%s [%s] %s: %s" % ("KNOWN BUG %s" % kb.name if kb else
                                "FAILED CHECK", self.fault, check_name,
                                detail[:3000]))

    def status(self, addr, timeout=1.0):
        try:
            return self.ctx.stub(addr).Status(self.pb.StatusRequest(),
                                              timeout=timeout * SLOW)
        except rlfaults.grpc.RpcError:
            return None

    def leader(self, timeout=15):
        """Index of the node that leads (highest term), waiting for one."""
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            lead = rlfaults.leader_of(
                (i, self.status(n.grpc)) for i, n in enumerate(self.nodes)
                if n.running() and not n.paused)
            if lead is not None:
                return lead
            time.sleep(0.1)
        fail("no leader within %ds" % (timeout * SLOW))

    def crash_detail(self, n, what):
        text = n.log(all_runs=False)
        reports = rlfaults.sanitizer_reports(text)
        tail = "\n".join(text.splitlines()[-10:])
        cores = n.cores()
        bts = [rlfaults.backtrace(rlfaults_raftd(), c) for c in cores]
        return "%s %s; core files: %s%s; %s" % (
            n.name, what, cores or "none",
            "".join("\nbacktrace of %s:\n%s" % (c, b)
                    for c, b in zip(cores, bts)),
            ("sanitizer report:\n" + reports[0]) if reports
            else "log tail:\n" + tail)

    def watch(self):
        """A raftd that exits by itself is a crash: recorded, then started
        again so the run and its final checks go on with three nodes."""
        while not self.done.is_set():
            for n in self.nodes:
                with self.lock:
                    rc = n.poll_crash()
                    if rc is not None:
                        self.problem("crash", self.crash_detail(
                            n, n.crashes()[-1][1]))
                        n.start()
            time.sleep(0.1)

    def kill9(self, i):
        with self.lock:
            self.nodes[i].kill9()

    def start(self, i, wait=True):
        with self.lock:
            if not self.nodes[i].running():
                self.nodes[i].p = None
                self.nodes[i].start()
        if wait:
            self.nodes[i].wait_serving(60 * SLOW)

    # ------------------------------------------------------------ faults

    def inject(self, cycle):
        """One fault and its healing; returns (target name, t_fault,
        t_heal) in time.monotonic; t_fault is taken once the fault is in
        effect (the process dead or stopped, the nftables table loaded)."""
        # Fault lengths follow raft's timers, which ASan does not slow.
        # hold: two election timeouts (1-2 s each) elect a new leader well
        # within it; the outage is over before the healing.
        hold = 8 if LONG else 4
        down = 6 if LONG else 2.5
        f = self.fault
        L = self.leader()
        followers = [i for i in range(3) if i != L]
        now = time.monotonic
        if f == "kill-all":
            i = None
            for j in range(3):
                self.kill9(j)
            t0 = now()
            time.sleep(1)
            for j in range(3):
                self.start(j, wait=False)
            for j in range(3):
                self.nodes[j].wait_serving(60 * SLOW)
        else:
            # KIND-WHO: KIND starts the fault on the leader or a follower,
            # its pair heals it after secs.
            kind, _, who = f.partition("-")
            begin, heal, secs = {
                "kill": (self.kill9, self.start, down),
                "pause": (lambda j: self.nodes[j].pause(),
                          lambda j: self.nodes[j].resume(), hold),
                "partition": (self.net.isolate, self.net.heal, hold),
            }.get(kind, (None, None, None))
            check(begin is not None and who in ("leader", "follower"),
                  "unknown fault %r" % f)
            i = L if who == "leader" else self.rnd.choice(followers)
            begin(i)
            t0 = now()
            time.sleep(secs)
            heal(i)
        t1 = now()
        name = "all" if i is None else self.nodes[i].name
        log("  cycle %d: %s of %s (leader was %s), healed after %.1fs" % (
            cycle, f, name, self.nodes[L].name, t1 - t0))
        return name, t0, t1

    # -------------------------------------------------------------- run

    def run(self):
        t_start = time.time()
        pb = self.pb
        self.data = scratch("rlfaults-")
        net = self.net
        for i in range(3):
            net.heal(i)
        self.nodes = []
        for i in range(3):
            self.nodes.append(rlnetns.NsNode(
                rlfaults_raftd(), net.nodes[i], net.ips[i], "n%d" % (i + 1),
                self.data, join=None if i == 0 else self.nodes[0].grpc))
        self.nodes[0].start().wait_serving(30 * SLOW)
        for n in self.nodes[1:]:
            n.start()
        for n in self.nodes[1:]:
            n.wait_serving(30 * SLOW)
        self.ctx = ctx = Ctx(pb, self.pbg, self.seed)
        # Every node knows the leader and the three members.
        deadline = time.time() + 20 * SLOW
        while True:
            sts = [self.status(n.grpc) for n in self.nodes]
            if all(s and s.leader_id for s in sts):
                r = ctx.stub(self.nodes[0].grpc).Nodes(pb.NodesRequest(),
                                                       timeout=5 * SLOW)
                if len([x for x in r.nodes if x.node_id]) == 3:
                    break
            if time.time() > deadline:
                fail("cluster did not form: %s" % sts)
            time.sleep(0.1)
        reg, bank, sset = Register(ctx), Bank(ctx), SetW(ctx)
        sql = ";\n".join(reg.setup_sql() + bank.setup_sql() +
                         sset.setup_sql())
        w = ctx.stub(self.nodes[0].grpc).ExecuteWrite(
            pb.WriteRequest(sql=sql), timeout=20 * SLOW)
        check(w.success, "schema: %s" % w.error)
        self.workloads = (reg, bank, sset)
        threads = []
        for k in range(4):
            threads.append(threading.Thread(target=reg.worker, args=(
                k, self.nodes[k % 3].grpc), daemon=True))
        for k in range(2):
            threads.append(threading.Thread(target=bank.worker, args=(
                k, self.nodes[(k + 1) % 3].grpc), daemon=True))
        threads.append(threading.Thread(target=sset.worker, args=(
            0, self.nodes[2].grpc), daemon=True))
        sampler = Sampler(ctx, [n.grpc for n in self.nodes])
        self.done = threading.Event()
        watcher = threading.Thread(target=self.watch, daemon=True)
        for t in threads:
            t.start()
        sampler.start()
        watcher.start()
        time.sleep(2 if LONG else 1)
        cycles = []
        for c in range(self.cycles):
            name, t0, t1 = self.inject(c)
            cycles.append((name, t0, t1))
            self.windows.append((t0, t1 + 2 * SLOW))
            # Writes must resume after every fault, within RECOVERY of
            # its healing; then the cluster runs a while undisturbed.
            while rlfaults.outage(self.writes(), t0) is None:
                if time.monotonic() - t1 > RECOVERY * SLOW:
                    self.problem("recovery", "cycle %d: no write succeeded "
                                 "within %ds after the %s of %s healed" % (
                                     c, RECOVERY * SLOW, self.fault, name))
                    break
                time.sleep(0.1)
            time.sleep(6 if LONG else 1.5)
        ctx.stop.set()
        for t in threads:
            t.join(timeout=30 * SLOW)
        sampler.join()
        check(not any(t.is_alive() for t in threads),
              "a workload thread did not stop")

        writes = self.writes()
        for c, (name, t0, t1) in enumerate(cycles):
            o = rlfaults.outage(writes, t0)
            self.outages.append((c, name, o))
            target = OUTAGE_TARGET * (1.5 if SAN else 1)
            if self.fault in SINGLE_NODE and (o is None or o > target):
                self.problem("outage", "cycle %d: writes resumed %s after "
                             "the fault on %s (target %.1fs)" % (
                                 c, "never" if o is None else "%.2fs" % o,
                                 name, target))
        self.converge()
        self.done.set()
        watcher.join(timeout=10)
        self.final_checks(reg, bank, sset, sampler)
        self.stop_and_check_files()
        log("  %s: register %s; bank %s; set %s; %s; %.0fs" % (
            self.fault, reg.summary(), bank.summary(), sset.summary(),
            self.lin, time.time() - t_start))

    def writes(self):
        return sum((w.writes_ok() for w in self.workloads), [])

    def converge(self):
        """Waits until every node runs, knows a leader and applied the
        same index, twice in a row."""
        deadline = time.time() + 30 * SLOW
        last = None
        while time.time() < deadline:
            sts = [self.status(n.grpc) for n in self.nodes]
            if all(s and s.leader_id for s in sts):
                idx = tuple(s.applied_index for s in sts)
                if len(set(idx)) == 1 and idx == last:
                    return
                last = idx
            time.sleep(0.3)
        self.problem("converge", "nodes did not converge within %ds: %s" % (
            30 * SLOW, [(s.node_id, s.state, s.term, s.applied_index)
                        if s else None for s in sts]))

    def final_checks(self, reg, bank, sset, sampler):
        ctx = self.ctx
        for t, addr, text in ctx.errors:
            self.problem("workload", "%s at %.3f: %s" % (addr, t, text))
        t = time.time()
        r = reg.check()
        self.lin = "%d register ops checked in %.1fs (%d states)" % (
            len(reg.ops), time.time() - t, r.explored)
        if r.ok is not True:
            detail = ("register history (%d ops) %s: key %r: %s" % (
                len(reg.ops), "not linearizable" if r.ok is False else
                "undecided", r.key, r.detail))
            if r.ok is False and reg.recheck_stale_noop(self.windows).ok:
                detail += (" [linearizable if the 'not swapped' answers "
                           "invoked during a fault are taken as unknown]")
            self.problem("linearizable", detail)
        for b in bank.check():
            self.problem("bank-total", b)
        for b in sset.check():
            self.problem("set", b)
        for i, n in enumerate(self.nodes):
            t0 = ctx.now()
            try:
                vals = sset.read(ctx.stub(n.grpc), timeout=10 * SLOW)
            except rlfaults.grpc.RpcError as e:
                vals = "%s %s" % (e.code().name, e.details())
            if not isinstance(vals, frozenset):
                self.problem("set", "final STRONG read on %s failed: %s" % (
                    n.name, vals))
                continue
            for b in sset.check_read(t0, ctx.now(), vals,
                                     "final read on %s" % n.name):
                self.problem("set", b)
        for term, who in sorted(sampler.leaders_per_term().items()):
            if len(who) > 1:
                self.problem("one-leader", "term %d has leaders %s" % (
                    term, sorted(who)))
        check(len(sampler.samples) > 0, "no Status sample")
        dumps = {}
        deadline = time.time() + 15 * SLOW
        while True:
            dumps = {n.name: rlfaults.table_dumps(ctx, n.grpc)
                     for n in self.nodes}
            if len(set(h for h, _ in dumps.values())) == 1 and None not in [
                    h for h, _ in dumps.values()]:
                break
            if time.time() > deadline:
                self.problem("same-state", "tables differ between nodes "
                             "(sha256 of the rows through each node): %s" %
                             dumps)
                break
            time.sleep(0.5)
        for name, (h, ic) in dumps.items():
            if h is not None and ic != "ok":
                self.problem("integrity", "%s: PRAGMA integrity_check: %s" %
                             (name, ic))

    def stop_and_check_files(self):
        files = {}
        for n in self.nodes:
            with self.lock:
                rc = n.stop(60 * SLOW)
            if rc != 0:
                self.problem("crash" if isinstance(rc, int) and rc < 0
                             else "clean-exit", self.crash_detail(
                                 n, "SIGTERM gave exit %s" % rc))
            files[n.name] = rlfaults.file_dump(n.db)
        if len(set(h for h, _ in files.values())) != 1:
            self.problem("same-state", "the stopped nodes' files differ: %s"
                         % files)
        for name, (h, ic) in files.items():
            if ic != "ok":
                self.problem("integrity", "%s's file: %s" % (name, ic))
        for n in self.nodes:
            # Unexpected exits were reported when seen (watch, stop).
            cores = n.cores()
            if cores and not any(p[0] == "crash" for p in self.problems):
                self.problem("crash", "%s left core files %s" % (n.name,
                                                                 cores))
            reps = rlfaults.sanitizer_reports(n.log())
            if reps and not any(p[0] == "crash" and n.name in p[1]
                                for p in self.problems):
                self.problem("sanitizer", "%s's log:\n%s" % (n.name,
                                                             reps[0]))


def rlfaults_raftd():
    return os.path.join(BUILD, "raftd")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fault", help="comma-separated: " + ", ".join(FAULTS))
    ap.add_argument("--cycles", type=int, help="faults per case")
    ap.add_argument("--seed", type=int)
    args = ap.parse_args()
    faults = (args.fault.split(",") if args.fault
              else SAN_FAULTS if SAN else FAULTS)
    for f in faults:
        check(f in FAULTS, "unknown fault %r (one of %s)" % (f, FAULTS))
    seed = args.seed if args.seed is not None else int(
        os.environ.get("RL_SEED") or random.randrange(1, 1 << 30))
    cycles = args.cycles or (4 if LONG else 1)
    check(os.path.exists(rlfaults_raftd()), "no %s (build it)" %
          rlfaults_raftd())
    check(os.geteuid() == 0, "the fault suite needs root (namespaces)")
    log("fault suite: seed %d, faults %s, %d cycle(s) each, build %s" % (
        seed, ",".join(faults), cycles, BUILD))
    rlnetns.allow_cores()
    net = rlnetns.Net(3)
    net.enter()
    from rlgrpc import project_stubs
    pb, pbg = project_stubs()
    t0 = time.time()
    results = []
    for f in faults:
        log("== %s (seed %d)" % (f, seed))
        c = Case(f, seed, net, pb, pbg, cycles)
        try:
            c.run()
        except TestFailure as e:
            c.problem("harness", str(e))
        finally:
            for n in getattr(c, "nodes", []):
                n.resume()
                if n.running():
                    n.kill9()
        results.append(c)
    log("")
    log("== fault suite summary (seed %d, %.0fs)" % (seed, time.time() - t0))
    failed = []
    for c in results:
        outs = ", ".join("%s %s" % (name, "never" if o is None else
                                    "%.2fs" % o)
                         for _, name, o in c.outages)
        unexpected = [p for p in c.problems if p[2] is None]
        known = [p for p in c.problems if p[2] is not None]
        log("%-19s write outage: %-30s %s" % (
            c.fault, outs or "-", "ok" if not c.problems else
            "%d failed check(s), %d known bug(s)" % (len(unexpected),
                                                   len(known))))
        if unexpected or (STRICT and known):
            failed.append(c)
    hits = [b for b in KNOWN_BUGS if b.hits]
    log("KNOWN BUGS hit: %d (%s)" % (sum(b.hits for b in hits), ", ".join(
        "%s x%d" % (b.name, b.hits) for b in hits) or "none"))
    for b in hits:
        log("  KNOWN BUG %s: %s" % (b.name, b.issue))
    for c in results:
        if c.problems:
            env = "RL_SEED=%d RL_BUILD=%s RL_SAN=%d" % (seed, BUILD,
                                                        1 if SAN else 0)
            for k in ("RL_LONG", "ASAN_OPTIONS", "UBSAN_OPTIONS",
                      "LSAN_OPTIONS"):
                if os.environ.get(k):
                    env += " %s='%s'" % (k, os.environ[k])
            log("replay %s: %s /usr/bin/python3 tests/faults/test_faults.py "
                "--fault %s" % (c.fault, env, c.fault))
    if failed:
        log("FAILED: %s" % ", ".join(
            "%s (%s)" % (c.fault, ", ".join(sorted(set(
                p[0] for p in c.problems if p[2] is None or STRICT))))
            for c in failed))
        sys.exit(1)
    log("ok: every check passed%s" % (
        "" if not hits else " except the known bugs listed above"))
    sys.exit(0)


if __name__ == "__main__":
    main()
