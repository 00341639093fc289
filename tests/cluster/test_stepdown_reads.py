#!/usr/bin/python3
# budget: 120
# asan: yes
"""tests/cluster/test_stepdown_reads.py -- a leader that steps down with
STRONG reads waiting survives and refuses them (issue 14, fault 1).

Three raftd nodes over gRPC. Six client threads send STRONG reads to the
leader in a loop; both followers are SIGSTOPped, so the leader's read
barrier never commits, later reads queue behind it, and after an election
timeout without a quorum the leader steps down. raft 0.15 fails the
barrier from inside its step-down, while it still reports the leader
state; a read barrier issued from that callback crashed raftd
(raft_barrier <- read_flush <- read_barrier_cb). Each of ROUNDS rounds
requires: the leader process still runs, every waiting read ended with an
`error` (never rows) well before the client deadline, and after SIGCONT
the cluster serves STRONG reads and writes again.

Then PAUSES times: the leader is paused (SIGSTOP) until another node
leads and wrote; the STRONG read sent to it as soon as it resumes is
served, through its successor, and sees that write (a deposed leader that
knows its successor relays the read instead of refusing it).
"""
import threading
import time

from rlfault import SLOW, Cluster3, check, check_eq, log
from rltest import LONG, main

ROUNDS = 12 if LONG else 4
CLIENTS = 6
PAUSES = 3  # leaders paused, deposed, then asked a STRONG read at once
DEADLINE = 8  # seconds, per STRONG read


def test():
    c = Cluster3("rlstepdown-")
    api = c.api
    try:
        api.write(c.g[0], "CREATE TABLE t(k INTEGER PRIMARY KEY, v)")
        check(api.write(c.g[0], "INSERT INTO t VALUES (1, 'a')").success,
              "first write")
        for rnd in range(ROUNDS):
            lead = c.leader()
            fol = [i for i in range(3) if i != lead]
            addr = c.g[lead]
            stop = threading.Event()
            stats = {"ok": 0, "refused": 0, "rpc_error": 0, "slow": 0,
                     "bad": []}
            mu = threading.Lock()

            def reader():
                stub = api.stub(addr)
                while not stop.is_set():
                    t0 = time.time()
                    try:
                        r = stub.ExecuteRead(api.pb.ReadRequest(
                            sql="SELECT v FROM t WHERE k = 1",
                            consistency=api.pb.STRONG),
                            timeout=DEADLINE * SLOW)
                        dt = time.time() - t0
                        with mu:
                            if r.error:
                                stats["refused"] += 1
                                if dt > (DEADLINE - 1) * SLOW:
                                    stats["slow"] += 1
                            elif [v.decode() for row in r.result.rows
                                  for v in row.values] == ["a"]:
                                stats["ok"] += 1
                            else:
                                stats["bad"].append(str(r))
                    except ValueError:
                        return  # the channel was closed at the end
                    except api.grpc.RpcError as e:
                        with mu:
                            stats["rpc_error"] += 1
                            stats["last_rpc"] = "%s %s" % (e.code(),
                                                           e.details())
                        time.sleep(0.05)
            ts = [threading.Thread(target=reader) for _ in range(CLIENTS)]
            for t in ts:
                t.start()
            time.sleep(0.3)
            for i in fol:
                c.stop(i)
            t0 = time.time()
            # The leader steps down within two election timeouts (1 s each)
            # of its last quorum contact.
            t_down = None
            while time.time() - t0 < 4 * SLOW:
                c.alive_check()
                if c.state(lead) != "leader":
                    t_down = time.time() - t0
                    break
                time.sleep(0.05)
            c.alive_check()
            stepped = c.state(lead)
            time.sleep(0.5 * SLOW)
            c.alive_check()
            stop.set()
            for i in fol:
                c.cont(i)
            for t in ts:
                t.join(timeout=(DEADLINE + 5) * SLOW)
            c.alive_check()
            log("round %d: leader node%d %s after SIGSTOP of its "
                "followers; reads ok %d, refused %d, rpc errors %d" % (
                    rnd + 1, lead + 1,
                    "stepped down %.1fs" % t_down if t_down is not None
                    else "still leads 4 s", stats["ok"], stats["refused"],
                    stats["rpc_error"]))
            check(stepped != "leader", "round %d: node%d still leads 4 s "
                  "after losing both followers" % (rnd + 1, lead + 1))
            check(not stats["bad"], "wrong rows: %s" % stats["bad"][:3])
            check(stats["refused"] > 0, "round %d: no STRONG read was "
                  "refused while the followers were stopped" % (rnd + 1))
            check(stats["slow"] == 0, "round %d: %d refusals came only at "
                  "the client deadline" % (rnd + 1, stats["slow"]))
            check(stats["rpc_error"] == 0, "round %d: %d reads failed in "
                  "transport (%s)" % (rnd + 1, stats["rpc_error"],
                                      stats.get("last_rpc")))
            # The cluster serves again.
            c.leader(timeout=20)
            deadline = time.time() + 20 * SLOW
            while True:
                try:
                    r = api.stub(c.g[lead]).ExecuteRead(api.pb.ReadRequest(
                        sql="SELECT v FROM t WHERE k = 1",
                        consistency=api.pb.STRONG), timeout=5 * SLOW)
                    if not r.error:
                        break
                except api.grpc.RpcError:
                    pass
                check(time.time() < deadline, "no STRONG read on node%d "
                      "20 s after SIGCONT" % (lead + 1))
                time.sleep(0.1)
            c.alive_check()
        log("%d rounds: no crash, waiting STRONG reads refused at step-down"
            % ROUNDS)
        deposed(c)
    finally:
        c.close()


def deposed(c):
    """A leader back from a pause serves a STRONG read sent to it at once
    through its successor: it learns it was deposed (a higher term in an
    answer) and who leads (the next heartbeat), and relays the read rather
    than refusing it. Every read sees the write its successor made."""
    api = c.api
    for rnd in range(PAUSES):
        old = c.leader()
        c.stop(old)
        new = c.leader(not_i=old, timeout=20)
        v = "p%d" % rnd
        check(api.write(c.g[new], "UPDATE t SET v='%s' WHERE k = 1" % v)
              .success, "write on the new leader node%d" % (new + 1))
        c.cont(old)
        t0 = time.time()
        r = api.stub(c.g[old]).ExecuteRead(api.pb.ReadRequest(
            sql="SELECT v FROM t WHERE k = 1", consistency=api.pb.STRONG),
            timeout=DEADLINE * SLOW)
        check(not r.error, "pause %d: STRONG read on node%d, deposed while "
              "paused: %s" % (rnd + 1, old + 1, r.error))
        rows = [[x.decode() for x in row.values] for row in r.result.rows]
        check_eq(rows, [[v]], "pause %d: STRONG read on the deposed node%d"
                 % (rnd + 1, old + 1))
        log("pause %d: node%d deposed while paused served a STRONG read "
            "through node%d in %.2fs" % (rnd + 1, old + 1, new + 1,
                                         time.time() - t0))


if __name__ == "__main__":
    main(test)
