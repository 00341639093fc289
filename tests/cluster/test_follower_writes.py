# budget: 180
"""Writes on every node (issue 17): a follower's stock shell writes, its
transaction forwarded to the leader and its frames written by its own
writer once its node applied the entry.

- Quiet cluster: 1,000 single-row autocommit INSERTs from a follower's
  shell, default busy timeout: none fails; every row on every node; the
  follower reads each of its writes at once (read-your-writes). Its
  write lease spares the ask: about one request to the leader per write
  (a forwarded transaction), not two (gRPC Status calls_served counts
  them), all on one ForwardSession call (raft_status forward_sessions).
- Client processes: 1,000 writes from a second stock shell on the
  leader's file, then 300 from one on a follower's file (its host relays
  them to the leader): none fails, each reads back at once, and none of
  it is a gRPC call to the host: it goes through the host's local door
  (<db>-raft/door; raft_status local_calls counts it). On the leader's
  file a write costs one request there (COMMIT), not two: the client
  reads whether its host leads, and its L, from the host's board. On the
  follower's file it costs two (the host answers the HINT from its write
  lease) and the leader about one call.
- One client writing on each node in turn (60 writes): none conflicts,
  since a follower's writer first waits for the leader's L.
- A write that changes nothing on a follower (an UPDATE matching no row)
  succeeds once the leader's read point proves its answer fresh.
- Conflict: a follower's explicit transaction is open while the leader
  commits; its COMMIT fails with SQLITE_BUSY_SNAPSHOT ("database is
  locked"), raft_last_error() says "conflict", nothing of it is visible
  anywhere, and the same transaction retried commits.
- Bank: a shell on every node and a client process (a second shell on a
  follower's file) move money between 10 accounts in explicit
  transactions for 15 s (30 s in make test-long; retrying on errors);
  every read of the
  total on every node sees the same total; every acknowledged transfer
  took effect exactly once (a row of its own in xfer, balances equal to
  the sum of the transfers); files converge byte-identical.
"""
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))
from rltest import LONG, Shell, check, check_eq, fail, is_error, log, main  # noqa
from rlcluster import Cluster, SLOW  # noqa: E402
from rlgrpc import project_stubs  # noqa: E402

import grpc  # noqa: E402

ACCOUNTS = 10
START = 1000
BANK_S = 30 if LONG else 15  # the 30 s in make test-long


def calls_served(node):
    """The gRPC calls node's sidecar has served (Status calls_served),
    less the Status call itself."""
    pb, pbg = project_stubs()
    ch = grpc.insecure_channel(node.grpc_addr)
    try:
        return pbg.DistributedSqliteStub(ch).Status(
            pb.StatusRequest(), timeout=20).calls_served - 1
    finally:
        ch.close()


def quiet(c, leader, f):
    before = calls_served(leader)
    sess_before = f.status()["forward_sessions"]
    t0 = time.time()
    lines = "".join("INSERT INTO q VALUES (%d, 'row %d');\n" % (i, i)
                    for i in range(1000))
    out = f.sh.sql(lines + "SELECT count(*) FROM q;", 300 * SLOW)
    check(not is_error(out), "a follower's 1,000 writes: %s" % out[-2000:])
    check_eq(out.strip().splitlines()[-1], "1000",
             "the follower reads its 1,000 writes at once")
    secs = time.time() - t0
    calls = calls_served(leader) - before - 1  # the first Status's own
    log("1,000 writes from follower %s in %.1fs (%.0f/s), %d calls to the "
        "leader" % (f.name, secs, 1000 / secs, calls))
    # One ForwardTxn per write; the ask of the write lock only when the
    # write lease needs renewing (every half lease) or does not cover.
    check(1000 <= calls <= 1100,
          "a follower's writer holding a write lease makes one call per "
          "write: %d calls for 1,000 writes" % calls)
    # The transactions ride one ForwardSession call (one message each
    # way per write; a second only if a write overlapped another).
    sess = f.status()["forward_sessions"] - sess_before
    check(1 <= sess <= 2, "1,000 forwarded writes on one session: %d "
          "opened" % sess)
    c.wait_all("SELECT count(*) FROM q;", "1000")


def clients(c, leader, f):
    """Client processes (a second stock shell on a hosted file, no node of
    its own) write through their host's local door: 1,000 on the leader's
    file, then 300 on a follower's (relayed to the leader); none fails,
    each reads its own writes at once, every node gets them."""
    for node, count in ((leader, 1000), (f, 300)):
        before = calls_served(node)
        lead_before = calls_served(leader)
        door_before = node.status()["local_calls"]
        sh = Shell(node.db, env=c.env)
        t0 = time.time()
        out = sh.sql("".join(
            "INSERT INTO c(who) VALUES ('client of %s');\n" % node.name
            for _ in range(count)) +
            "SELECT count(*) FROM c WHERE who = 'client of %s';" % node.name,
            300 * SLOW)
        check(not is_error(out), "a client of %s: %s" % (node.name,
                                                          out[-2000:]))
        check_eq(out.strip().splitlines()[-1], str(count),
                 "the client of %s reads its writes at once" % node.name)
        sh.finish("client shell exit", 0)
        secs = time.time() - t0
        calls = calls_served(node) - before - 1  # the first Status's own
        door = node.status()["local_calls"] - door_before
        log("%d writes from a client process of %s in %.1fs (%.0f/s), "
            "%d requests at its host's local door, %d gRPC calls to it" %
            (count, node.name, secs, count / secs, door, calls))
        # Nothing of it goes through the host's gRPC sidecar: the local
        # door (<db>-raft/door) takes it.
        check(calls <= 5, "a client process's writes use its host's local "
              "door, not gRPC: %d gRPC calls for %d writes" % (calls, count))
        if node is leader:
            # One COMMIT per write (the ask made it two): the host posts
            # its L on its board.
            check(count <= door <= count + count // 10,
                  "a client process of the leader's host makes one request "
                  "per write (the board replaces the write lock's ask): "
                  "%d requests for %d writes" % (door, count))
            continue
        # A follower's host answers its client's ask (HINT) from its write
        # lease and relays only the COMMIT to the leader: one call there
        # per write, not two.
        lead = calls_served(leader) - lead_before - 2  # the Status calls
        log("  and %d calls to the leader" % lead)
        check(2 * count <= door <= 2 * count + count // 10,
              "a client process of a follower's host makes two requests "
              "per write: %d requests for %d writes" % (door, count))
        check(count <= lead <= count + count // 10,
              "its host, holding a write lease, relays one call per write "
              "to the leader: %d calls for %d writes" % (lead, count))
    c.wait_all("SELECT count(*) FROM c;", "1300")


def alternate(c):
    """One client writing on each node in turn: a write that begins after
    another node's write finished never conflicts with it (the follower's
    writer waits for the leader's L when it takes the write lock)."""
    for i in range(60):
        n = c.nodes[i % len(c.nodes)]
        ok, out, err = n.try_sql("INSERT INTO t VALUES (%d, '%s');" %
                                 (100 + i, n.name))
        check(ok, "write %d on %s after one on another node: %s" %
              (i, n.name, err))
    c.wait_all("SELECT count(*) FROM t WHERE id >= 100;", "60")
    log("60 writes, each on the next node: none conflicted")


def noop(c, f):
    """A write that changes nothing on a follower: its answer comes from
    the follower's file, so it is acknowledged once the leader's read point
    shows nothing took effect since it read."""
    ok, out, err = f.try_sql("UPDATE t SET v = 'x' WHERE id = 999;\n"
                             "SELECT changes();")
    check(ok and out.strip() == "0",
          "an UPDATE matching nothing on a follower: %s" % (err or out))


def conflict(c, leader, f):
    out = f.sh.sql("BEGIN IMMEDIATE;\nINSERT INTO t VALUES (1, 'follower');")
    check(not is_error(out), "open a transaction on %s: %s" % (f.name, out))
    leader.sql("INSERT INTO t VALUES (2, 'leader');")
    ok, out, err = f.try_sql("COMMIT;")
    check(not ok and "database is locked" in out,
          "the follower's COMMIT after the leader's must fail with "
          "SQLITE_BUSY_SNAPSHOT: %s" % (out or "it succeeded"))
    check("conflict" in err, "raft_last_error() says conflict: %s" % err)
    log("conflict on a follower: %s" % err)
    f.sh.sql("ROLLBACK;")  # an explicit COMMIT that failed keeps its txn
    c.wait_all("SELECT group_concat(id) FROM t WHERE id < 100;", "2")
    ok, out, err = f.try_sql("BEGIN IMMEDIATE;\nINSERT INTO t VALUES "
                             "(1, 'follower');\nCOMMIT;")
    check(ok, "the same transaction retried commits: %s" % err)
    c.wait_all("SELECT group_concat(id) FROM (SELECT id FROM t WHERE id < "
               "100 ORDER BY id);", "1,2")


class ClientProcess:
    """A second stock shell on a node's file (a client of its host), with
    the little of Node the bank's workers use."""

    def __init__(self, node, env):
        self.name = "client-of-" + node.name
        self.sh = Shell(node.db, env=env)

    def last_error(self):
        return self.sh.sql("SELECT raft_last_error();").strip()


def bank(c):
    leader = c.leader()
    client = ClientProcess(next(n for n in c.nodes if n is not leader), c.env)
    nodes = c.nodes + [client]  # the workers: every node's shell, a client
    leader.sql("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER);\n"
               "CREATE TABLE xfer(id INTEGER PRIMARY KEY, src INTEGER, "
               "dst INTEGER, amount INTEGER);\n" +
               "".join("INSERT INTO acct VALUES (%d, %d);\n" % (i, START)
                       for i in range(ACCOUNTS)))
    c.wait_all("SELECT count(*) FROM acct;", str(ACCOUNTS))
    total = str(ACCOUNTS * START)
    acked, errors, reads = {}, [], [0]
    mu = threading.Lock()
    stop = time.time() + BANK_S

    def worker(k, n):
        rnd = random.Random(k)
        i = 0
        while time.time() < stop:
            i += 1
            xid = k * 1000000 + i
            a, b = rnd.sample(range(ACCOUNTS), 2)
            amt = rnd.randint(1, 50)
            # One statement at a time, as a program does: the shell goes
            # on after an error, so a failed BEGIN would leave the rest
            # to autocommit and a failed UPDATE would be committed around.
            stmts = ["BEGIN IMMEDIATE;",
                     "UPDATE acct SET bal = bal - %d WHERE id = %d;" % (amt, a),
                     "UPDATE acct SET bal = bal + %d WHERE id = %d;" % (amt, b),
                     "INSERT INTO xfer VALUES (%d, %d, %d, %d);" %
                     (xid, a, b, amt),
                     "COMMIT;"]
            failed = None
            for st in stmts:
                out = n.sh.sql(st, 60 * SLOW)
                if is_error(out):
                    failed = "%s: %s failed: %s | %s" % (
                        n.name, st.split()[0], out.strip().splitlines()[-1],
                        n.last_error())
                    n.sh.sql("ROLLBACK;")
                    break
            with mu:
                if failed:
                    errors.append(failed)
                else:
                    acked[xid] = (a, b, amt)
            got = n.sh.sql("SELECT sum(bal) FROM acct;").strip()
            if got != total:
                with mu:
                    errors.append("TOTAL %s on %s" % (got, n.name))
            with mu:
                reads[0] += 1
            # Think time, the same on every node: a leader's shell that
            # commits back to back wins every race against followers.
            time.sleep(rnd.uniform(0, 0.01))

    ths = [threading.Thread(target=worker, args=(k + 1, n))
           for k, n in enumerate(nodes)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(BANK_S + 120)
    bad = [e for e in errors if e.startswith("TOTAL")]
    check(not bad, "a read saw another total than %s: %s" % (total, bad[:5]))
    log("bank: %d transfers acknowledged, %d refused and retried (e.g. %s), "
        "%d total reads all %s" % (len(acked), len(errors), errors[:2],
                                   reads[0], total))
    check(len(acked) > 20, "too few transfers went through: %d" % len(acked))
    c.wait_converged()
    for n in c.nodes:
        rows = n.sql("SELECT id, src, dst, amount FROM xfer;").split()
        have = {}
        for r in rows:
            xid, a, b, amt = (int(x) for x in r.split("|"))
            check(xid not in have, "%s: transfer %d twice" % (n.name, xid))
            have[xid] = (a, b, amt)
        lost = [x for x in acked if acked[x] != have.get(x)]
        check(not lost, "%s lacks acknowledged transfers %s" % (n.name,
                                                                lost[:5]))
        bal = [START] * ACCOUNTS
        for a, b, amt in have.values():
            bal[a] -= amt
            bal[b] += amt
        got = [int(x) for x in n.sql("SELECT bal FROM acct ORDER BY id;")
               .split()]
        check_eq(got, bal, "%s: balances are the sum of the transfers" %
                 n.name)
    # Every node's shell wrote, followers included.
    for n in nodes:
        mine = [e for e in errors if e.startswith(n.name + ":")]
        log("%s: %d acknowledged, %d refused, e.g. %s" % (
            n.name, sum(1 for x in acked
                        if x // 1000000 == nodes.index(n) + 1),
            len(mine), mine[-1:]))
    origins = set(x // 1000000 for x in acked)
    check_eq(origins, set(range(1, len(nodes) + 1)),
             "every node's shell and the client process had transfers "
             "acknowledged")
    client.sh.finish("client process", 1 if any(
        e.startswith(client.name + ":") for e in errors) else 0)


def test():
    c = Cluster(3)
    leader = c.leader()
    f = [n for n in c.nodes if n is not leader][0]
    leader.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n"
               "CREATE TABLE q(id INTEGER PRIMARY KEY, v TEXT);\n"
               "CREATE TABLE c(id INTEGER PRIMARY KEY, who TEXT);")
    c.wait_all("SELECT count(*) FROM sqlite_schema;", "3")
    quiet(c, leader, f)
    clients(c, leader, f)
    alternate(c)
    noop(c, f)
    conflict(c, leader, f)
    bank(c)
    c.close()


if __name__ == "__main__":
    main(test)
