# budget: 120
"""Register workload through stock shells on every node (issue 17): a
shell on each of 3 nodes, each at raft_consistency = linearizable, does
writes, compare-and-set (UPDATE ... WHERE v = old; SELECT changes()) and
reads of 3 keys for 20 s, while the leader's shell is killed (-9) and
restarted (twice). Every operation is recorded with its invocation and
completion time; an operation whose outcome is unknown ("disk I/O error",
or the shell died under it) stays open; a refused one (conflict, no
leader, a cas whose "0 rows" could not be confirmed) is left out. The
history must pass tests/lib/lincheck.py (proven on the jepsen verdicts by
tests/faults/test_lincheck.py), and the nodes converge.
"""
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import lincheck  # noqa: E402
import rltest  # noqa: E402
from rltest import check, is_error, log, main  # noqa: E402
from rlcluster import Cluster  # noqa: E402

K = 3
RUN_S = 20
SETUP = "PRAGMA raft_consistency = linearizable;\n.timeout 3000"


def unknown(out):
    """The outcome of a write is unknown: it may have taken effect."""
    return "disk I/O error" in out


def test():
    seed = int(os.environ.get("RL_SEED", random.randrange(1 << 30)))
    log("seed %d (RL_SEED=%d replays the schedule)" % (seed, seed))
    c = Cluster(3)
    lead = c.leader()
    lead.sql("CREATE TABLE reg(k INTEGER PRIMARY KEY, v INTEGER);\n" +
             "".join("INSERT INTO reg VALUES (%d, 0);\n" % k
                     for k in range(K)))
    c.wait_all("SELECT count(*) FROM reg;", str(K))
    for n in c.nodes:
        n.sql(SETUP)
    ops, mu, stop = [], threading.Lock(), threading.Event()
    counter = [0]
    down = {}  # node name -> Event set while its shell is being replaced
    locks = {}  # node name -> Lock held by whoever talks to its shell
    for n in c.nodes:
        down[n.name] = threading.Event()
        locks[n.name] = threading.Lock()
    t_base = time.monotonic()

    def now():
        return time.monotonic() - t_base

    def record(op):
        with mu:
            ops.append(op)

    def worker(n, idx):
        rnd = random.Random(seed * 10 + idx)
        while not stop.is_set():
            if down[n.name].is_set() or not n.alive():
                time.sleep(0.05)
                continue
            with locks[n.name]:
                one(n, rnd)

    def one(n, rnd):
        """One operation on n's shell (its lock held)."""
        sh = n.sh
        k = rnd.randrange(K)
        x = rnd.random()
        with mu:
            counter[0] += 1
            val = counter[0]
        t0 = now()
        try:
            if x < 0.4:
                out = sh.sql("SELECT v FROM reg WHERE k = %d;" % k, 30)
                if not is_error(out):
                    record(lincheck.Op("read", int(out.strip()), True,
                                       t0, now(), key=k,
                                       meta=n.name))
            elif x < 0.7:
                out = sh.sql("UPDATE reg SET v = %d WHERE k = %d;" %
                             (val, k), 30)
                if not is_error(out):
                    record(lincheck.Op("write", val, True, t0, now(),
                                       key=k, meta=n.name))
                elif unknown(out):
                    record(lincheck.Op("write", val, lincheck.INFO, t0,
                                       key=k, meta=n.name))
            else:
                old = rnd.choice([0] + list(range(max(1, val - 20),
                                                  val)))
                out = sh.sql("UPDATE reg SET v = %d WHERE k = %d AND "
                             "v = %d;\nSELECT changes();" %
                             (val, k, old), 30)
                if not is_error(out):
                    swapped = out.strip().splitlines()[-1] == "1"
                    record(lincheck.Op("cas", (old, val), swapped, t0,
                                       now(), key=k, meta=n.name))
                elif unknown(out):
                    record(lincheck.Op("cas", (old, val), lincheck.INFO,
                                       t0, key=k, meta=n.name))
        except rltest.TestFailure:
            # The shell died under the call (killed): a write's
            # outcome is unknown; a read's answer is lost.
            if x >= 0.4:
                v = val if x < 0.7 else (old, val)
                record(lincheck.Op("write" if x < 0.7 else "cas", v,
                                   lincheck.INFO, t0, key=k,
                                   meta=n.name))
            time.sleep(0.05)

    def leader():
        """c.leader(), with every shell to itself meanwhile."""
        for n in c.nodes:
            locks[n.name].acquire()
        try:
            return c.leader()
        finally:
            for n in c.nodes:
                locks[n.name].release()

    ths = [threading.Thread(target=worker, args=(n, i), daemon=True)
           for i, n in enumerate(c.nodes)]
    for t in ths:
        t.start()
    t_end = time.time() + RUN_S
    for kill in range(2):
        time.sleep(RUN_S / 3.0)
        victim = leader()
        down[victim.name].set()
        victim.kill9()
        time.sleep(1.5)
        victim.restart()
        victim.sql(SETUP)
        down[victim.name].clear()
        leader()
        log("kill -9 of the leader %s at %.1fs, restarted" % (victim.name,
                                                             now()))
    time.sleep(max(0, t_end - time.time()))
    stop.set()
    for t in ths:
        t.join(60)
    reads = sum(1 for o in ops if o.f == "read")
    info = sum(1 for o in ops if o.ok == lincheck.INFO)
    log("history: %d operations (%d reads, %d with unknown outcome) from "
        "%s" % (len(ops), reads, info, sorted(set(o.meta for o in ops))))
    check(reads > 30 and len(ops) - reads > 30,
          "too few operations completed: %d" % len(ops))
    check(len(set(o.meta for o in ops if o.f != "read" and o.ok is True))
          == 3, "every node's shell had writes acknowledged")
    res = lincheck.check(ops, init=0)
    check(res.ok is True, "the history is not linearizable (seed %d): %s" %
          (seed, res))
    log("linearizable (%d states explored)" % res.explored)
    c.wait_converged()
    c.close(check_rc=False)


if __name__ == "__main__":
    main(test)
