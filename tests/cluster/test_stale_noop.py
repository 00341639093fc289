# budget: 240
"""A write transaction that changes nothing is not answered from stale
state by a hosting shell (issue 14, item 2, in a hosting process).

Each round: the leader's shell is paused (SIGSTOP) with an
`UPDATE kv SET v=... WHERE k=1 AND v=<new>` already waiting on its input;
the other two elect a new leader, which commits k=1 -> <new>; the old
leader continues and runs the UPDATE at once, before it learns of the new
term. Its file still holds the old value, so the UPDATE matches no row:
without the confirmation the shell answered "0 rows" and committed. Now
the no-row transaction's commit must prove leadership with a read index
(ext/ext.c confirm_unchanged_txn): it fails, or, once the node caught up
(it learnt of the new term and waited for the leader's last commit), the
UPDATE matches and either commits through the leader as a follower's
write (issue 17; then every node holds its value) or is refused. Never
success with 0 rows. 10 rounds (40 with RL_LONG=1). A no-row transaction on the
real leader still commits, and raft_last_error() names the cause when
refused.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from rltest import LONG, check, check_eq, fail, log, main  # noqa: E402
from rlcluster import Cluster, SLOW  # noqa: E402

ROUNDS = 40 if LONG else 10


def test():
    c = Cluster(3)
    lead = c.seed("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT);"
                  "INSERT INTO kv VALUES (1, 'v0');",
                  "SELECT v FROM kv WHERE k=1;", "v0")
    # On the leader a no-row write transaction commits (after its read
    # index) and says 0 rows.
    out = lead.sql("UPDATE kv SET v='z' WHERE k=1 AND v='nomatch';"
                   "SELECT changes();").strip()
    check_eq(out, "0", "a no-row UPDATE on the leader")
    refused = caught_up = committed = 0
    for r in range(ROUNDS):
        old = c.leader()
        new_v = "v%d" % (r + 1)
        # Queue the probe, then pause: it runs the instant the shell
        # continues, while the node still believes it leads.
        old.stop()
        old.sh.p.stdin.write(
            "UPDATE kv SET v='probe%d' WHERE k=1 AND v='%s';\n"
            "SELECT 'probe-error:' || raft_last_error();\n"
            "SELECT 'probe-changes:' || changes();\n" % (r, new_v))
        old.sh.p.stdin.flush()
        others = [n for n in c.nodes if n is not old]
        nl = c.leader(among=others, timeout=30)
        nl.sql("UPDATE kv SET v='%s' WHERE k=1;" % new_v)
        old.cont()
        out = old.sh.sql("SELECT 'probe-done';", 60 * SLOW)
        lines = out.splitlines()
        changes = [l.split(":", 1)[1] for l in lines
                   if l.startswith("probe-changes:")]
        failed = any("Runtime error" in l or "Error" in l for l in lines)
        check(changes, "round %d: the probe did not run: %r" % (r, out))
        if not failed and changes[0] == "0":
            fail("round %d: the old leader acknowledged a stale write "
                 "transaction (0 rows) although %s had committed v=%s:\n%s"
                 % (r, nl.name, new_v, out))
        if not failed:
            # It matched v=<new>: the node had caught up, and its write
            # went through the leader. It must then be everywhere.
            check_eq(changes[0], "1", "round %d: rows the probe changed" % r)
            c.wait_all("SELECT v FROM kv WHERE k=1;", "probe%d" % r,
                       timeout=30 * SLOW)
            committed += 1
            continue
        why = [l for l in lines if l.startswith("probe-error:")][0]
        check("leader" in why or "lead" in why,
              "round %d: raft_last_error does not say why: %r" % (r, why))
        if "could not prove it still leads" in why or \
                "prove" in why:
            refused += 1
        else:
            caught_up += 1
        c.wait_all("SELECT v FROM kv WHERE k=1;", new_v, timeout=30 * SLOW)
    log("%d rounds: %d refused by the read index, %d refused after "
        "catching up, %d committed through the leader after catching up; "
        "never a stale answer" % (ROUNDS, refused, caught_up, committed))
    c.wait_converged()
    c.close()


if __name__ == "__main__":
    main(test)
