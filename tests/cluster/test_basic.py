# budget: 150
# budget-long: 900
# asan: yes
"""Clusters of 3 and 5 stock shells with the extension: a write on the
leader, and one on each follower (sent to the leader), is visible on
every node; non-deterministic SQL (random(),
datetime('now'), randomblob(), strftime('%f'), last_insert_rowid())
stores the same values everywhere; an acknowledged write survives any
single node failing (kill -9) afterwards, a new leader takes writes, and
the failed node restarted from its file (new shell, .load, .open) catches
up. After every step all live nodes converge: same .sha3sum and, after a
checkpoint, byte-identical files. Under RL_SAN=1 the 5-node cluster fails
two of its nodes instead of all five; RL_LONG=1 writes more."""
from rltest import *
from rlcluster import *

NONDET = ("INSERT INTO nd(r, t, b, f, h) VALUES (random(), datetime('now'), "
          "randomblob(%d), strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now'), "
          "hex(randomblob(8)) || last_insert_rowid());")
ROWS = "SELECT count(*), total(r), group_concat(hex(b)), group_concat(t), " \
       "group_concat(f), group_concat(h) FROM nd;"


def visibility(c):
    lead = c.leader()
    lead.sql("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT);"
             "CREATE TABLE nd(id INTEGER PRIMARY KEY, r INTEGER, t TEXT, "
             "b BLOB, f TEXT, h TEXT);")
    lead.sql("INSERT INTO kv VALUES (1, 'one');")
    c.wait_all("SELECT v FROM kv WHERE k = 1;", "one")
    # A multi-statement transaction is visible whole or not at all.
    lead.sql("BEGIN; INSERT INTO kv VALUES (2, 'two'); "
             "UPDATE kv SET v = 'uno' WHERE k = 1; COMMIT;")
    c.wait_all("SELECT group_concat(v, ',') FROM kv;", "uno,two")
    # Non-deterministic SQL: the values the leader drew are the values
    # every node stores (pages are replicated, not statements).
    n = 40 if LONG else 8
    for i in range(n):
        lead.sql(NONDET % (1 + i * 37))
    want = lead.val(ROWS)
    check(want.startswith("%d|" % n), "leader holds %d nd rows: %r" %
          (n, want[:80]))
    rs = lead.val("SELECT count(DISTINCT r), count(DISTINCT b) FROM nd;")
    check_eq(rs, "%d|%d" % (n, n), "random() and randomblob() vary")
    c.wait_all(ROWS, want)
    # A write on a follower commits through the leader: the follower
    # reads it at once, every node gets it.
    for f in c.live():
        if f is lead:
            continue
        f.sql("INSERT INTO kv VALUES (%d, 'on %s');" % (1000 + int(
            f.name[4:]), f.name))
        check_eq(f.val("SELECT v FROM kv WHERE k = %d;" %
                       (1000 + int(f.name[4:]))), "on %s" % f.name,
                 "%s reads its own write at once" % f.name)
    followers = len(c.live()) - 1
    c.wait_all("SELECT count(*) FROM kv WHERE k > 1000;", str(followers))
    log("visibility and non-deterministic SQL ok on", len(c.live()), "nodes")
    c.wait_converged()


def survive_each(c, victims):
    """For each victim: an acknowledged write, then the victim fails; the
    write is on every other node, the cluster takes a new write (on a new
    leader if the victim led), the victim restarts and catches up."""
    k = 100
    for name in victims:
        victim = next(n for n in c.nodes if n.name == name)
        k += 1
        lead, _ = c.write("INSERT OR REPLACE INTO kv VALUES (%d, 'ack %s');"
                          % (k, name))
        # Acknowledged: now the victim dies (it may be the leader that
        # acknowledged it, or a follower that has not applied it yet).
        was_leader = victim is lead
        victim.kill9()
        t0 = time.time()
        rest = c.live()
        for n in rest:
            c.wait_val(n, "SELECT v FROM kv WHERE k = %d;" % k, "ack " + name)
        k += 1
        lead2, _ = c.write("INSERT OR REPLACE INTO kv VALUES (%d, 'after %s');"
                           % (k, name), timeout=30)
        log("%s (%s) killed: next write on %s %.1fs after the kill" %
            (name, "leader" if was_leader else "follower", lead2.name,
             time.time() - t0))
        check(lead2 is not victim, "write accepted by the killed node")
        victim.restart()
        st = victim.status()
        check_eq(st["id"], name, "restarted node's stored identity")
        c.wait_all("SELECT v FROM kv WHERE k = %d;" % k, "after " + name)
        for kk in range(101, k + 1):
            got = victim.val("SELECT v IS NOT NULL FROM kv WHERE k = %d;" % kk)
            check_eq(got, "1", "%s has row %d after restart" % (name, kk))
        c.wait_converged()


def run(n, victims):
    log("--- %d nodes" % n)
    c = Cluster(n)
    names = [x["id"] for x in c.leader().nodes()]
    check_eq(names, sorted("node%d" % (i + 1) for i in range(n)),
             "raft_nodes lists every member")
    visibility(c)
    survive_each(c, victims(c))
    c.integrity()
    c.close()


def test():
    # 3 nodes: every node fails once, the leader first.
    run(3, lambda c: [c.leader().name] +
        [x.name for x in c.nodes if x is not c.leader()])
    # 5 nodes: every node (leader first); under ASan the leader and one
    # follower.
    def five(c):
        lead = c.leader()
        rest = [x.name for x in c.nodes if x is not lead]
        return [lead.name] + (rest[:1] if SAN else rest)
    run(5, five)


main(test)
