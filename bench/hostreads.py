"""bench/hostreads.py -- run by bench/anywhere.py as a process of its own:
this process hosts a node (Python's sqlite3 with the extension loaded, as
the README shows) and measures linearizable point reads on it, from one
connection alone and from THREADS connections at once, each in its own
thread, interleaved over ROUNDS rounds. Prints one JSON object: seconds
per read of one connection alone and of one among THREADS (the group's
wall time / READS), per round, and the read points and quorum rounds the
node counted (PRAGMA raft_status) during the concurrent reads.

Usage: hostreads.py EXT DB THREADS READS ROUNDS
It never judges speed; it exits nonzero when a read fails.
"""
import json
import random
import sqlite3
import sys
import threading
import time


def status(c):
    return json.loads(c.execute("PRAGMA raft_status").fetchone()[0])


def main():
    ext, db = sys.argv[1], sys.argv[2]
    threads, reads, rounds = (int(x) for x in sys.argv[3:6])
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(ext)
    conns = [sqlite3.connect(db, isolation_level=None, timeout=10,
                             check_same_thread=False)
             for _ in range(threads)]
    deadline = time.time() + 30
    while True:
        st = status(conns[0])
        if st["state"] in ("follower", "leader") and st["leader"]:
            break
        if time.time() > deadline:
            sys.exit("the node did not find its leader: %r" % st)
        time.sleep(0.05)
    for c in conns:
        c.execute("PRAGMA raft_consistency = linearizable")
    rows = conns[0].execute("SELECT max(id) FROM t").fetchone()[0]
    rnd = random.Random(2)
    out = {"one": [], "many": [], "points": 0, "rounds": 0}

    def run(c, ids):
        for i in ids:
            c.execute("SELECT length(v) FROM t WHERE id = ?", (i,)).fetchone()

    for _ in range(rounds):
        ids = [rnd.randrange(1, rows + 1) for _ in range(reads)]
        t0 = time.perf_counter()
        run(conns[0], ids)
        out["one"].append((time.perf_counter() - t0) / reads)
        before = status(conns[0])
        bar = threading.Barrier(threads + 1)

        def reader(c):
            bar.wait()
            run(c, ids)

        ths = [threading.Thread(target=reader, args=(c,)) for c in conns]
        for t in ths:
            t.start()
        bar.wait()
        t0 = time.perf_counter()
        for t in ths:
            t.join()
        out["many"].append((time.perf_counter() - t0) / reads)
        after = status(conns[0])
        out["points"] += after["read_points"] - before["read_points"]
        out["rounds"] += after["read_rounds"] - before["read_rounds"]
    for c in conns:
        c.close()
    boot.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
