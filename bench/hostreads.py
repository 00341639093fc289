"""bench/hostreads.py -- run by bench/anywhere.py as a process of its own:
this process hosts a node (Python's sqlite3 with the extension loaded, as
the README shows) and measures point reads on it, local and linearizable, from one
connection alone and from THREADS connections at once, each in its own
thread, interleaved over ROUNDS rounds. Prints one JSON object: seconds
per read of one connection alone and of one among THREADS (the group's
wall time / READS), per round and level, and the read points and quorum
rounds the node counted (PRAGMA raft_status) during the linearizable
reads.

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
    rows = conns[0].execute("SELECT max(id) FROM t").fetchone()[0]
    rnd = random.Random(2)
    out = {"one": [], "many": [], "points": 0, "rounds": 0,
           "local_one": [], "local_many": []}

    def run(c, ids):
        for i in ids:
            c.execute("SELECT length(v) FROM t WHERE id = ?", (i,)).fetchone()

    def level(name):
        for c in conns:
            c.execute("PRAGMA raft_consistency = %s" % name)

    def one_then_many(ids, key_one, key_many):
        t0 = time.perf_counter()
        run(conns[0], ids)
        out[key_one].append((time.perf_counter() - t0) / reads)
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
        out[key_many].append((time.perf_counter() - t0) / reads)

    for _ in range(rounds):
        ids = [rnd.randrange(1, rows + 1) for _ in range(reads)]
        # The same reads at local first: the machine's cost of them
        # without a read point, alone and THREADS at once.
        level("local")
        one_then_many(ids, "local_one", "local_many")
        level("linearizable")
        before = status(conns[0])
        one_then_many(ids, "one", "many")
        after = status(conns[0])
        out["points"] += after["read_points"] - before["read_points"]
        out["rounds"] += after["read_rounds"] - before["read_rounds"]
    for c in conns:
        c.close()
    boot.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
