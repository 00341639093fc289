# budget: 150
# budget-long: 900
# asan: yes
"""Failover: the leader of a 3-node cluster is killed (-9) in the middle of
a stream of writes (its shell is running a batch of INSERT ... RETURNING,
so every acknowledged row is known). With default timeouts the writes
resume on a new leader within 10 s of the kill; every acknowledged row is
there; the old leader restarts (a new shell: .load, .open of the same file
restarts its node with its stored identity), rejoins as a follower and
converges to the same bytes. Done twice (the second time the new leader
dies); RL_LONG=1 five times."""
import threading
from rltest import *
from rlcluster import *

RESUME_LIMIT = 10.0  # seconds, default timeouts (the bound)


def stream(node, start, acked):
    """Autocommit INSERTs with RETURNING, 200 per shell call, until the
    shell dies; appends to acked every id the shell acknowledged (printed)."""
    i = start
    while True:
        text = "\n".join("INSERT INTO s(id, v) VALUES (%d, randomblob(64)) "
                         "RETURNING id;" % j for j in range(i, i + 200))
        out, finished = node.sh.partial(text, timeout=60 * SLOW)
        acked.extend(int(x) for x in out.split() if x.isdigit())
        i += 200
        if not finished:
            return


def failover(c, round_no, next_id):
    lead = c.leader()
    log("round %d: leader %s" % (round_no, lead.name))
    acked = []
    th = threading.Thread(
        target=stream, args=(lead, next_id, acked),
        daemon=True)
    th.start()
    # Let the stream run, then kill the leader in the middle of it.
    time.sleep(1.5 * SLOW)
    lead.kill9()
    t_kill = time.time()
    th.join(30)
    check(not th.is_alive(), "the stream's reader did not end")
    check(len(acked) > 10, "the stream acknowledged only %d writes before "
          "the kill" % len(acked))
    check_eq(acked, list(range(next_id, next_id + len(acked))),
             "acknowledged ids are in order")
    # Writes resume on a new leader: a writer tries the survivors until one
    # accepts (a write on a follower fails by design and names the leader).
    k = next_id + 100000
    new, _ = c.write("INSERT OR IGNORE INTO s(id, v) VALUES (%d, 'resumed');"
                     % k, timeout=RESUME_LIMIT + 20)
    resumed = time.time() - t_kill
    log("round %d: %d writes acknowledged before the kill; writes resumed "
        "on %s %.2fs after it" % (round_no, len(acked), new.name, resumed))
    check(new is not lead, "the killed node accepted a write")
    check(resumed <= RESUME_LIMIT * SLOW,
          "writes resumed %.1fs after the leader was killed (limit %.0fs)"
          % (resumed, RESUME_LIMIT * SLOW))
    # Every acknowledged write is on the new leader and the other survivor.
    last = acked[-1]
    for n in c.live():
        got = n.val("SELECT count(*) FROM s WHERE id BETWEEN %d AND %d;" %
                    (next_id, last))
        check_eq(got, str(len(acked)), "%s: acknowledged rows present" %
                 n.name)
    # A few more writes on the new leader while the old one is down.
    for i in range(1, 20):
        new.sql("INSERT INTO s(id, v) VALUES (%d, 'while down');" % (k + i))
    # The old leader restarts from its file and rejoins as a follower.
    term0 = new.status()["term"]
    lead.restart()
    st = lead.status()
    check_eq(st["id"], lead.name, "restarted node's identity")
    c.wait_all("SELECT count(*) FROM s WHERE id > %d;" % k, "19",
               nodes=[lead], timeout=30)
    # It follows the cluster's leader (its restart may cause an election
    # first: wait for the outcome, and log the terms).
    deadline = time.time() + 20 * SLOW
    while True:
        now = c.leader()
        st = lead.status()
        if st["state"] == "follower" and st["leader"] == now.name:
            break
        if time.time() > deadline:
            fail("restarted old leader %s does not follow leader %s: %s" %
                 (lead.name, now.name, st))
        time.sleep(0.1)
    log("round %d: %s restarted as follower of %s (term %d -> %d)" %
        (round_no, lead.name, now.name, term0, st["term"]))
    check(now is not lead, "the restarted node leads again")
    for n in c.live():
        check_eq(n.val("SELECT raft_leader();"), now.name,
                 "%s: raft_leader()" % n.name)
    c.wait_converged()
    return k + 100


def test():
    c = Cluster(3)
    c.leader().sql("CREATE TABLE s(id INTEGER PRIMARY KEY, v BLOB);")
    nxt = 1
    for r in range(5 if LONG else 2):
        nxt = failover(c, r + 1, nxt)
    c.integrity()
    c.close()


main(test)
