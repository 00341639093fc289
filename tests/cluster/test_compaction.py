# budget: 150
# budget-long: 900
"""Log compaction under a steady write load: a 3-node cluster of stock
shells takes 6,000 single-row transactions (40,000 with RL_LONG=1); the
Raft data directory of every node is measured after each batch. Snapshots
are taken (snapshot_index advances with the load, by the default threshold
of 1,024 entries) and closed segments are dropped behind them, so the
directories stop growing: after the first 2,000 transactions no directory
exceeds its largest size seen until then by more than two (1 MiB) segments, while
the data keeps growing. The members still converge to the same bytes."""
from rltest import *
from rlcluster import *


def raft_dir_bytes(node):
    d = node.db + "-raft/raft"
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
               if os.path.isfile(os.path.join(d, f)))


def test():
    c = Cluster(3)
    lead = c.leader()
    lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
    ntx = 40000 if LONG else 6000
    batch = 500
    warm = 2000
    seen_warm = {}
    snaps = []
    for start in range(0, ntx, batch):
        lead.sql("\n".join("INSERT INTO t(v) VALUES ('row %d %s');" %
                           (i, "x" * (i % 64))
                           for i in range(start, start + batch)),
                 timeout=300)
        done = start + batch
        sizes = {n.name: raft_dir_bytes(n) for n in c.nodes}
        snaps.append(lead.status()["snapshot_index"])
        log("%6d txns: raft dirs %s, snapshot_index %d" %
            (done, sizes, snaps[-1]))
        if done <= warm:
            for k, v in sizes.items():
                seen_warm[k] = max(seen_warm.get(k, 0), v)
            continue
        for k, v in sizes.items():
            # Two more (1 MiB) open segments may be preallocated.
            check(v <= seen_warm[k] + 2 * 1024 * 1024 + 65536,
                  "%s: raft dir grew to %d bytes after %d txns (at most "
                  "%d seen in the first %d)" % (k, v, done, seen_warm[k],
                                                 warm))
    check(snaps[-1] >= ntx - 2048,
          "snapshots follow the load: snapshot_index %d after %d txns" %
          (snaps[-1], ntx))
    check(len(set(snaps)) >= 3, "several snapshots taken: %s" % snaps)
    c.wait_all("SELECT count(*) FROM t;", str(ntx), timeout=60)
    c.wait_converged()
    c.close()


main(test)
