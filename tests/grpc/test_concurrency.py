# budget: 60
# asan: yes
"""Calls are served concurrently: a write blocked 5 s on a database lock
does not delay 100 concurrent reads; deadlines give DEADLINE_EXCEEDED and
the server stops waiting for them; SIGTERM drains a call in flight and
refuses new ones; 16 client threads of mixed reads and writes for 10 s lose
nothing (under ASan raftd must exit without a leak)."""
import os
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlgrpc import *  # noqa: F401,F403
import grpc


def hold_lock(db, seconds, started):
    """Holds the database's write lock from another process' view: a
    second SQLite connection (Python's sqlite3) in BEGIN IMMEDIATE."""
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT OR REPLACE INTO kv VALUES (-1, 'holder')")
        started.set()
        time.sleep(seconds)
        con.execute("COMMIT")
    finally:
        con.close()


def test():
    pb, pbg = project_stubs()
    d, ch, s, _ = standalone(pbg)
    T = 30 * SAN_SLOW
    w = s.ExecuteWrite(pb.WriteRequest(
        sql="CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT); "
            "INSERT INTO kv VALUES (0, 'zero')"), timeout=T)
    check(w.success, "setup: %r" % w)

    # --- a write blocked 5 s on a lock vs 100 concurrent reads.
    started = threading.Event()
    holder = threading.Thread(target=hold_lock, args=(d.db, 5, started))
    holder.start()
    started.wait(10)
    t0 = time.time()
    blocked = s.ExecuteWrite.future(pb.WriteRequest(
        sql="INSERT INTO kv VALUES (1, 'after the lock')"), timeout=T)
    time.sleep(0.2)
    check(not blocked.done(), "the write should wait for the lock")
    with ThreadPoolExecutor(max_workers=100) as ex:
        futs = [ex.submit(lambda i=i: s.ExecuteRead(pb.ReadRequest(
            sql="SELECT v FROM kv WHERE k = 0"), timeout=T))
            for i in range(100)]
        res = [f.result() for f in futs]
    reads_s = time.time() - t0
    check(all(r.result.rows[0].values[0] == b"zero" for r in res),
          "100 reads answered")
    check(not blocked.done(), "the write is still blocked after the reads")
    log("100 concurrent reads took %.2fs while a write was blocked" % reads_s)
    check(reads_s < 4.0, "100 reads took %.1fs beside a blocked write" %
          reads_s)
    w = blocked.result(timeout=T)
    waited = time.time() - t0
    check(w.success and 4.0 < waited, "blocked write finished after the "
          "lock (%.1fs): %r" % (waited, w))
    holder.join()

    # --- deadlines: a write waiting on a lock, a long query.
    started = threading.Event()
    holder = threading.Thread(target=hold_lock, args=(d.db, 3, started))
    holder.start()
    started.wait(10)
    t1 = time.time()
    expect_rpc_error(lambda: s.ExecuteWrite(pb.WriteRequest(
        sql="INSERT INTO kv VALUES (2, 'late')"), timeout=1.0),
        grpc.StatusCode.DEADLINE_EXCEEDED, None, "write past its deadline")
    check(time.time() - t1 < 2.5, "deadline honoured promptly")
    holder.join()
    expect_rpc_error(lambda: s.ExecuteRead(pb.ReadRequest(
        sql="WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) "
            "SELECT count(*) FROM c"), timeout=0.5),
        grpc.StatusCode.DEADLINE_EXCEEDED, None, "endless query")
    # The server gave up on both: the lock is free and the row not there.
    w = s.ExecuteWrite(pb.WriteRequest(sql="INSERT INTO kv VALUES (3, 'x')"),
                       timeout=T)
    check(w.success, "writer free after the deadlines: %r" % w)
    r = s.ExecuteRead(pb.ReadRequest(sql="SELECT count(*) FROM kv WHERE k=2"),
                      timeout=T)
    check(r.result.rows[0].typed[0].integer == 0,
          "the write past its deadline did not happen")

    # --- 16 threads, 10 s, mixed reads and writes: nothing lost.
    stop = time.time() + (10 if not LONG else 60)
    acked = [[] for _ in range(16)]
    errors = []

    def worker(i):
        n = 0
        try:
            while time.time() < stop:
                key = 1000000 * (i + 1) + n
                if n % 3 == 2:
                    r = s.ExecuteRead(pb.ReadRequest(
                        sql="SELECT count(*) FROM kv WHERE k >= ? AND k < ?",
                        params=[pb.Value(integer=1000000 * (i + 1)),
                                pb.Value(integer=1000000 * (i + 2))]),
                        timeout=T)
                    if r.error or r.result.rows[0].typed[0].integer != len(
                            acked[i]):
                        errors.append("thread %d read %r, acked %d" %
                                      (i, r, len(acked[i])))
                        return
                else:
                    w = s.ExecuteWrite(pb.WriteRequest(
                        sql="INSERT INTO kv VALUES (?, ?)",
                        params=[pb.Value(integer=key),
                                pb.Value(text="v%d" % key)]), timeout=T)
                    if not w.success:
                        errors.append("thread %d write: %r" % (i, w))
                        return
                    acked[i].append(key)
                n += 1
        except grpc.RpcError as e:
            errors.append("thread %d: %s %s" % (i, e.code(), e.details()))

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    check(not errors, "soak errors: %s" % errors[:3])
    total = sum(len(a) for a in acked)
    r = s.ExecuteRead(pb.ReadRequest(sql="SELECT k FROM kv WHERE k >= 1000000"
                                     " ORDER BY k"), timeout=T)
    got = [row.typed[0].integer for row in r.result.rows]
    check(got == sorted(k for a in acked for k in a),
          "every acknowledged write is there and nothing else (%d rows, %d "
          "acked)" % (len(got), total))
    log("soak: %d writes acknowledged by 16 threads" % total)
    check(total > 50, "the soak did some work (%d writes)" % total)

    # --- graceful shutdown: a call in flight finishes, new calls refused.
    started = threading.Event()
    holder = threading.Thread(target=hold_lock, args=(d.db, 1.5, started))
    holder.start()
    started.wait(10)
    inflight = s.ExecuteWrite.future(pb.WriteRequest(
        sql="INSERT INTO kv VALUES (4, 'drained')"), timeout=T)
    time.sleep(0.3)
    d.p.terminate()
    time.sleep(0.3)
    try:
        ch2 = grpc.insecure_channel(d.addr)
        stub2 = pbg.DistributedSqliteStub(ch2)
        stub2.Status(pb.StatusRequest(), timeout=2)
        fail("a new call was accepted after SIGTERM")
    except grpc.RpcError as e:
        check(e.code() in (grpc.StatusCode.UNAVAILABLE,
                           grpc.StatusCode.DEADLINE_EXCEEDED),
              "new call after SIGTERM: %s" % e.code())
    w = inflight.result(timeout=T)
    check(w.success, "the call in flight at SIGTERM completed: %r" % w)
    holder.join()
    d.stop()
    con = sqlite3.connect(d.db)
    check(con.execute("SELECT v FROM kv WHERE k = 4").fetchone() ==
          ("drained",), "the drained write is in the database")
    con.close()


main(test)
