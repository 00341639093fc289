# budget: 150
# asan: yes
"""No quorum: both followers of a 3-node cluster are stopped (SIGSTOP). A
COMMIT on the leader does not succeed, and while the followers stay
stopped the row is visible nowhere (the leader's own shell, a second
shell, and stock readers of all three files). After SIGCONT the cluster
takes writes again and every node agrees on whether that row exists; the
nodes converge to the same bytes."""
import threading
from rltest import *
from rlcluster import *

PROBE = "SELECT count(*) FROM kv WHERE v = 'no quorum';"


def visible_anywhere(c):
    """Which files show the row to a stock reader (no extension)."""
    seen = []
    for n in c.nodes:
        rc, out = stock_val(n.db, PROBE)
        check(rc == 0, "stock reader of %s: rc %d: %s" % (n.name, rc, out))
        if out != "0":
            seen.append((n.name, out))
    return seen


def test():
    c = Cluster(3)
    lead = c.seed("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT);"
                  "INSERT INTO kv VALUES (1, 'before');",
                  "SELECT v FROM kv WHERE k = 1;", "before")
    c.wait_converged()
    followers = [n for n in c.nodes if n is not lead]
    for f in followers:
        f.stop()

    # The COMMIT runs in the leader's shell; the shell may block for a
    # while (the wait has a limit), so it runs in a thread while the test
    # looks at every file.
    res = {}

    def commit():
        t0 = time.time()
        res["ok"], res["out"], res["err"] = lead.try_sql(
            "BEGIN; INSERT INTO kv VALUES (2, 'no quorum'); COMMIT;",
            timeout=120)
        res["secs"] = time.time() - t0

    # A second shell with the extension on the leader's file is a client
    # of the leader's host: it reads the file, and must not see the row.
    other = Shell(lead.db, env=c.env)
    th = threading.Thread(target=commit, daemon=True)
    th.start()
    t0 = time.time()
    looks = 0
    while th.is_alive() or looks < 3:
        seen = visible_anywhere(c)
        check(not seen, "row committed without quorum is visible: %s" % seen)
        check_eq(other.sql_ok(PROBE).strip(), "0",
                 "a client shell on the leader's file during the COMMIT")
        looks += 1
        if time.time() - t0 > 130 * SLOW:
            fail("the leader's COMMIT neither failed nor succeeded")
        time.sleep(0.3)
    th.join()
    log("COMMIT without quorum: ok=%s after %.1fs: %s" %
        (res["ok"], res["secs"], res["err"][:400]))
    check(not res["ok"], "COMMIT succeeded with both followers stopped:\n%s"
          % res["out"])
    # The leader's shell (its transaction is over) does not show the row,
    # nor does a second shell with the extension (a client of this host).
    lead.try_sql("ROLLBACK;")
    check_eq(lead.val(PROBE), "0", "the failed COMMIT's row on the leader")
    check_eq(other.sql_ok(PROBE).strip(), "0", "a second shell on the leader")
    other.finish("second shell's exit", 0)
    check(not visible_anywhere(c), "row visible after the failed COMMIT")
    time.sleep(1)
    check(not visible_anywhere(c), "row visible while followers stopped")

    for f in followers:
        f.cont()
    # The cluster continues: a new write succeeds (on whichever leads).
    c.write("INSERT OR REPLACE INTO kv VALUES (3, 'after');", timeout=60)
    c.wait_all("SELECT v FROM kv WHERE k = 3;", "after")
    # Every node agrees on whether the row exists (its entry may or may
    # not have been committed by the new term: either answer, but one).
    answers = {n.name: n.val(PROBE) for n in c.nodes}
    log("row 'no quorum' after SIGCONT:", answers)
    check(len(set(answers.values())) == 1, "nodes disagree: %s" % answers)
    check(answers[lead.name] in ("0", "1"), "count is 0 or 1: %s" % answers)
    c.wait_converged()
    c.integrity()
    c.close()


main(test)
