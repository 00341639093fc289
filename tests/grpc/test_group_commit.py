# budget: 90
# asan: yes
"""Group commit (issue 18): concurrent ExecuteWrite/ExecuteTransaction
calls at the leader of a 3-node raftd cluster run as one SQLite
transaction and one Raft entry, each request in its own savepoint.

- Results stay per request: in 6 rounds of 8 concurrent calls (released
  together), one call fails (a UNIQUE violation, or the second statement
  of a transaction) and fails alone, with its own error and outcome
  NOT_APPLIED and none of its statements applied; the other 7 succeed with
  their own rows_affected and last_insert_rowid, and every node holds
  exactly their rows.
- Requests do share entries: 8 clients x 40 writes advance the leader's
  applied index by fewer entries than there were writes (printed).
- Writes sent to a follower (forwarded to the leader) are grouped the same
  way and keep their results.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlgrpc import *  # noqa: F401,F403

T = 30 * SAN_SLOW


def rows(r):
    return [[bytes(v).decode() for v in row.values] for row in r.result.rows]


def concurrently(fns):
    """Runs every fn at once (released by one barrier); their results."""
    out = [None] * len(fns)
    bar = threading.Barrier(len(fns))

    def run(i):
        bar.wait()
        try:
            out[i] = fns[i]()
        except Exception as e:  # noqa: BLE001 (reported as the result)
            out[i] = e

    ths = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in ths:
        t.start()
    for t in ths:
        t.join(T * 2)
    return out


def test():
    pb, pbg = project_stubs()
    n1 = Raftd(node="n1", args=["-bootstrap", "-raft",
                                "127.0.0.1:%d" % free_port()])
    n2 = Raftd(node="n2", args=["-join", n1.addr, "-raft",
                                "127.0.0.1:%d" % free_port()])
    n3 = Raftd(node="n3", args=["-join", n1.addr, "-raft",
                                "127.0.0.1:%d" % free_port()])
    nodes = [n1, n2, n3]
    stubs = [pbg.DistributedSqliteStub(channel(n.addr)) for n in nodes]
    s1 = stubs[0]
    w = s1.ExecuteWrite(pb.WriteRequest(
        sql="CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE); "
            "INSERT INTO t VALUES (0, 'taken')"), timeout=T)
    check(w.success, "setup: %r" % w)

    def all_rows(s):
        r = s.ExecuteRead(pb.ReadRequest(
            sql="SELECT id, v FROM t ORDER BY id"), timeout=T)
        check(not r.error, r.error)
        return rows(r)

    def converged(want):
        deadline = time.time() + T
        while True:
            seen = [all_rows(s) for s in stubs]
            if all(x == want for x in seen):
                return
            if time.time() > deadline:
                fail("nodes differ from %r: %r" % (want, seen))
            time.sleep(0.05)

    want = [["0", "taken"]]
    next_id = 1
    for rnd in range(6):
        via = stubs[0] if rnd % 2 == 0 else stubs[1]  # leader, follower
        bad = rnd % 8
        fns, ids = [], []
        for i in range(8):
            rid = next_id
            next_id += 1
            ids.append(rid)
            if i == bad and rnd % 3 == 2:
                # A transaction whose second statement fails: its first
                # must not survive either.
                fns.append(lambda rid=rid: via.ExecuteTransaction(
                    pb.TransactionRequest(statements=[
                        pb.Statement(sql="INSERT INTO t VALUES (%d, 'x%d')"
                                     % (rid, rid)),
                        pb.Statement(sql="INSERT INTO t VALUES (%d, "
                                     "'taken')" % (rid + 1000))]),
                    timeout=T))
            elif i == bad:
                fns.append(lambda rid=rid: via.ExecuteWrite(pb.WriteRequest(
                    sql="INSERT INTO t VALUES (%d, 'taken')" % rid),
                    timeout=T))
            else:
                fns.append(lambda rid=rid: via.ExecuteWrite(pb.WriteRequest(
                    sql="INSERT INTO t VALUES (?, ?)",
                    params=[pb.Value(integer=rid), pb.Value(text="v%d" % rid)]),
                    timeout=T))
        res = concurrently(fns)
        for i, r in enumerate(res):
            check(not isinstance(r, Exception),
                  "round %d call %d raised %r" % (rnd, i, r))
            if i == bad:
                check(not r.success and "UNIQUE" in r.error,
                      "round %d: the bad call must fail with its own "
                      "error: %r" % (rnd, r))
                check(r.outcome == pb.OUTCOME_NOT_APPLIED,
                      "round %d: bad call outcome %r" % (rnd, r.outcome))
            else:
                check(r.success and not r.error,
                      "round %d call %d must succeed beside the bad one: "
                      "%r" % (rnd, i, r))
                check(r.rows_affected == 1 and
                      r.last_insert_rowid == ids[i],
                      "round %d call %d: its own results, got %d/%d want "
                      "1/%d" % (rnd, i, r.rows_affected,
                                r.last_insert_rowid, ids[i]))
                check(r.outcome == pb.OUTCOME_APPLIED,
                      "round %d call %d outcome %r" % (rnd, i, r.outcome))
                want.append([str(ids[i]), "v%d" % ids[i]])
        want.sort(key=lambda x: int(x[0]))
        converged(want)
    log("6 rounds: every bad call failed alone, its 7 neighbours applied "
        "on every node")

    # --- entries are shared: applied index advances by fewer entries
    # than writes.
    def applied():
        st = s1.Status(pb.StatusRequest(), timeout=T)
        return st.applied_index

    a0 = applied()
    per, clients = 40, 8

    def client(c):
        def go():
            for i in range(per):
                rid = 100000 + c * 1000 + i
                r = s1.ExecuteWrite(pb.WriteRequest(
                    sql="INSERT INTO t VALUES (%d, 'g%d')" % (rid, rid)),
                    timeout=T)
                if not r.success:
                    return r.error
            return None
        return go

    t0 = time.time()
    errs = concurrently([client(c) for c in range(clients)])
    secs = time.time() - t0
    check(errs == [None] * clients, "grouped writes failed: %r" % errs)
    deadline = time.time() + T
    while applied() - a0 < 1 and time.time() < deadline:
        time.sleep(0.05)
    entries = applied() - a0
    log("%d writes from %d clients in %.2fs took %d entries (%.1f writes "
        "per entry)" % (per * clients, clients, secs, entries,
                        per * clients / max(entries, 1)))
    check(0 < entries < per * clients,
          "group commit: %d writes took %d entries (no batch formed)" %
          (per * clients, entries))
    r = s1.ExecuteRead(pb.ReadRequest(
        sql="SELECT count(*) FROM t WHERE id >= 100000"), timeout=T)
    check(rows(r) == [[str(per * clients)]], "grouped rows: %r" % rows(r))
    for n in nodes:
        n.stop()


if __name__ == "__main__":
    main(test)
