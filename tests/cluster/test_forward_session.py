#!/usr/bin/python3
# budget: 120
# asan: yes
"""tests/cluster/test_forward_session.py -- a follower's forwarded writes
ride one ForwardSession call to the leader (issue 17: a write through a
follower costs about one round trip more than on the leader), and a session
the leader ended loses or repeats nothing.

Three raftd nodes, each with -stream-idle-ms 1000, so that the leader ends
a quiet session after a second (by default 15 s). A stock shell is a client
process of a follower's raftd: its writes reach the follower's host through
the local door and the host relays them to the leader on its session.

- 40 writes in one script: all succeed, and the follower opened one session
  for them (StatusResponse / raft_status `forward_sessions`).
- Three times: 2 s of quiet (the leader ends the session with status OK;
  the follower still holds it, as it reuses one given back within 5 s),
  then 10 writes: all succeed, the first one after finding the session
  ended without an answer (never proposed, so sent again), and a new
  session carries the rest.
- Leadership moves to the third node: 10 more writes succeed, on one new
  session to the new leader.
- Every node then has exactly the 80 rows written, each once (every
  write was acknowledged to the shell: none failed, none had an unknown
  outcome).
- On the leader's gRPC port directly: a session whose chunk is transport
  only (no origin) is refused INVALID_ARGUMENT naming ForwardTxn; a
  session that sends nothing and stays open ends with status OK and no
  message after about -stream-idle-ms.
"""
import os
import threading
import time

from rlfault import SLOW, Cluster3, check, check_eq, log
from rltest import Shell, is_error, main

QUIET_S = 2.0  # beyond the leader's -stream-idle-ms 1000


def sessions(c, i):
    return c.api.status(c.g[i]).forward_sessions


def wait_rows(c, i, sql, want):
    """The first column of sql's rows on node i once they are want (or
    after 20 s, what they are then)."""
    deadline = time.time() + 20 * SLOW
    while True:
        r = c.api.stub(c.g[i]).ExecuteRead(c.api.pb.ReadRequest(sql=sql),
                                           timeout=20 * SLOW)
        got = [row.values[0].decode() for row in r.result.rows]
        if got == want or time.time() > deadline:
            return got
        time.sleep(0.1)


def test():
    c = Cluster3("rlfwdsess-", extra=["-stream-idle-ms", "1000"])
    api = c.api
    sh = None
    try:
        lead = c.leader()
        fol = next(i for i in range(3) if i != lead)
        check(api.write(c.g[lead], "CREATE TABLE t(k INTEGER PRIMARY KEY, "
                        "v TEXT)").success, "create table")
        db = os.path.join(c.dir, "data", "node%d" % (fol + 1), "sqlite.db")
        wait_rows(c, fol, "SELECT name FROM sqlite_schema", ["t"])
        sh = Shell(db)
        s0 = sessions(c, fol)
        out = sh.sql("".join("INSERT INTO t VALUES (%d, 'a%d');\n" % (k, k)
                             for k in range(40)) +
                     "SELECT count(*) FROM t;", 120 * SLOW)
        check(not is_error(out), "40 writes of a client of node%d: %s"
              % (fol + 1, out[-1500:]))
        check_eq(out.strip().splitlines()[-1], "40", "the client reads its "
                 "40 writes")
        s1 = sessions(c, fol)
        log("40 writes through follower node%d: %d session(s) opened"
            % (fol + 1, s1 - s0))
        check(s1 - s0 == 1, "40 forwarded writes ride one session: %d "
              "opened" % (s1 - s0))
        k = 40
        for rnd in range(3):
            time.sleep(QUIET_S)
            out = sh.sql("".join("INSERT INTO t VALUES (%d, 'b%d');\n"
                                 % (k + j, k + j) for j in range(10)) +
                         "SELECT count(*) FROM t;", 120 * SLOW)
            k += 10
            check(not is_error(out), "round %d: 10 writes after %.1f s of "
                  "quiet: %s" % (rnd + 1, QUIET_S, out[-1500:]))
            check_eq(out.strip().splitlines()[-1], str(k),
                     "round %d: the client reads its writes" % (rnd + 1))
        s2 = sessions(c, fol)
        log("after 3 quiet ends: %d more session(s)" % (s2 - s1))
        check(s2 - s1 == 3, "each write after a quiet end opens one new "
              "session (the ended one is not used again): %d" % (s2 - s1))
        # Leadership moves to the third node: the next writes go to it, on
        # a session of their own.
        third = next(i for i in range(3) if i not in (lead, fol))
        tr = api.stub(c.g[lead]).Transfer(api.pb.TransferRequest(
            node_id="node%d" % (third + 1)), timeout=20 * SLOW)
        check(tr.success, "leadership to node%d: %r" % (third + 1, tr))
        check_eq(c.leader(), third, "the new leader")
        out = sh.sql("".join("INSERT INTO t VALUES (%d, 'c%d');\n"
                             % (k + j, k + j) for j in range(10)) +
                     "SELECT count(*) FROM t;", 120 * SLOW)
        check(not is_error(out), "10 writes after the transfer: %s"
              % out[-1500:])
        check_eq(out.strip().splitlines()[-1], str(k + 10),
                 "the client reads its writes after the transfer")
        s3 = sessions(c, fol)
        check(s3 - s2 == 1, "the new leader gets one session: %d" % (s3 - s2))
        want = sorted(["a%d" % i for i in range(40)] +
                      ["b%d" % i for i in range(40, 70)] +
                      ["c%d" % i for i in range(70, 80)])
        for i in range(3):
            check_eq(wait_rows(c, i, "SELECT v FROM t ORDER BY v", want),
                     want, "node%d has each of the 80 writes once" % (i + 1))

        # The leader's ForwardSession, called directly.
        intl = api.pbg.RaftliteInternalStub(
            api.grpc.insecure_channel(c.g[third]))
        try:
            list(intl.ForwardSession(iter([api.pb.TxnChunk(
                offset=0, total_length=1, data=b"x", last=True)]),
                timeout=10 * SLOW))
            check(False, "a transport-only chunk on a session was taken")
        except api.grpc.RpcError as e:
            check(e.code() == api.grpc.StatusCode.INVALID_ARGUMENT and
                  "ForwardTxn" in e.details(),
                  "transport-only chunk: %s %s" % (e.code(), e.details()))
        hold = threading.Event()

        def nothing():
            hold.wait(30)
            return
            yield  # a generator that sends nothing and stays open

        t0 = time.time()
        got = list(intl.ForwardSession(nothing(), timeout=30 * SLOW))
        took = time.time() - t0
        hold.set()
        check(got == [] and took < 5 * SLOW, "a quiet session ends with OK "
              "and no message: %r after %.1f s" % (got, took))
        log("a quiet session on the leader ended OK after %.1f s" % took)
    finally:
        if sh:
            sh.close()
        c.close()


if __name__ == "__main__":
    main(test)
