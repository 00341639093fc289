# budget: 240
# asan: yes
"""Issue #6, catch-up: a node down for 10,000 transactions rejoins and
converges; a new node joins a cluster whose log was compacted.

Case "log": snapshot threshold above the run (raft_snapshot_threshold=
50000): a follower is killed (-9), the leader commits 10,000
transactions (each an autocommit INSERT, its own Raft entry), the
follower restarts and replays them from the leader's log.
Case "compacted": threshold 1024, trailing 128: a follower exits cleanly
(.exit), 10,000 transactions compact the log many times over, the
follower restarts and must install a snapshot and a peer's image (its
snapshot_index > 0 afterwards); then a 4th node joins that cluster
(image again) and converges.
Each: every row on every node, integrity_check, byte-identical files
after a checkpoint (wait_converged). The catch-up times are printed.
Under ASan (RL_SAN=1) 2,000 transactions per case (said in the output);
the full 10,000 run in the plain run of make test.
"""
from rltest import *
from rlcluster import *

NTX = 2000 if SAN else 10000


def write_many(lead, start, n):
    t0 = time.time()
    for s in range(start, start + n, 500):
        lead.sql("\n".join(
            "INSERT INTO t(id, v) VALUES (%d, randomblob(%d));" %
            (i, 16 + i % 300) for i in range(s, min(start + n, s + 500))),
            timeout=300)
    return time.time() - t0


def catch_up(c, f, want):
    t0 = time.time()
    c.wait_val(f, "SELECT count(*) FROM t;", str(want), timeout=180)
    return time.time() - t0


def case(name, uri, how):
    c = Cluster(3, uri=uri)
    lead = c.leader()
    lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
    lead.sql("INSERT INTO t VALUES (-1, 'first');")
    c.wait_all("SELECT count(*) FROM t;", "1")
    f = next(n for n in c.nodes if n is not lead)
    if how == "kill":
        f.kill9()
    else:
        # The stock shell's status for its whole input: 1 if a statement
        # failed (wait_all may have met "no such table" before the schema
        # arrived), else 0.
        want = f.sh.expected_rc()
        rc = f.exit(".exit")
        check_eq(rc, want, "%s: .exit status" % f.name)
    took = write_many(lead, 0, NTX)
    st = lead.status()
    log("%s: %d transactions with %s down in %.1f s; leader %s" %
        (name, NTX, f.name, took, st))
    check(st["applied_index"] > NTX, "leader applied index %s" %
          st["applied_index"])
    if how == "kill":
        check(st["snapshot_index"] == 0, "%s: the leader compacted its log "
              "(snapshot_index %s): this case is log replay" %
              (name, st["snapshot_index"]))
    else:
        check(st["snapshot_index"] > NTX // 2, "%s: the leader's log was "
              "not compacted (snapshot_index %s)" %
              (name, st["snapshot_index"]))
    f.restart()
    t = catch_up(c, f, NTX + 1)
    fs = f.status()
    log("%s: %s caught up with %d transactions in %.1f s (status %s)" %
        (name, f.name, NTX, t, fs))
    if how != "kill":
        # The image can fill the file before raft has finished its
        # snapshot install (and published its index): give it a moment.
        deadline = time.time() + 20
        while fs["snapshot_index"] == 0 and time.time() < deadline:
            time.sleep(0.1)
            fs = f.status()
        check(fs["snapshot_index"] > 0, "%s: %s installed no snapshot "
              "(status %s)" % (name, f.name, fs))
    c.wait_converged(timeout=120)
    c.integrity()
    if how != "kill":
        via = next(n for n in c.live() if n is not c.leader())
        t0 = time.time()
        n4 = c.new_node().join(via, timeout=180)
        t = catch_up(c, n4, NTX + 1)
        log("%s: node4 joined the compacted cluster in %.1f s "
            "(snapshot_index %s)" % (name, time.time() - t0,
                                     n4.status()["snapshot_index"]))
        lead = c.leader()
        lead.sql("INSERT INTO t VALUES (-2, 'after the join');")
        c.wait_all("SELECT count(*) FROM t;", str(NTX + 2))
        c.wait_converged(timeout=120)
        c.integrity()
    c.close()


def test():
    if SAN:
        log("ASan run: %d transactions per case (10,000 in the plain run)" %
            NTX)
    case("log", "raft_snapshot_threshold=50000", "kill")
    case("compacted", "raft_snapshot_threshold=1024&raft_snapshot_trailing=128",
         "exit")


main(test)
