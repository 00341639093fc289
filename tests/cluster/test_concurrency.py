# budget: 150
# asan: yes
"""Concurrent writers on the leader while the leader is killed: the
leader's shell streams INSERTs, four gRPC clients write through the
leader's sidecar (ExecuteWrite, each its own connection in the leader's
process) and one through a follower's sidecar (forwarded to the leader);
a second shell on the leader's file is a client whose write commits
through the host. Then the leader is killed (-9). Afterwards every node,
the restarted old leader included, passes PRAGMA integrity_check, every
acknowledged write is on every node, and the nodes converge to the same
bytes."""
import os
import sys
import threading
from rltest import *
from rlcluster import *

sys.path.insert(0, os.path.join(ROOT, "tests", "grpc"))
from rlgrpc import project_stubs, channel  # noqa: E402

NGRPC = 4


def grpc_writer(pb, pbg, addr, wid, acked, errors, stop):
    """Writes rows wid*10^6 + seq through addr until stop; records the ids
    acknowledged (success) and the errors seen."""
    try:
        s = pbg.DistributedSqliteStub(channel(addr))
    except Exception as e:  # noqa: BLE001 -- recorded, asserted below
        errors.append("writer %d: channel: %s" % (wid, e))
        return
    seq = 0
    while not stop.is_set():
        seq += 1
        k = wid * 1000000 + seq
        try:
            r = s.ExecuteWrite(pb.WriteRequest(
                sql="INSERT INTO c(id, w, v) VALUES (?, ?, randomblob(100))",
                params=[pb.Value(integer=k), pb.Value(integer=wid)]),
                timeout=10 * SLOW)
        except Exception as e:  # noqa: BLE001 -- grpc.RpcError after kill
            errors.append("writer %d: %s" % (wid, str(e)[:200]))
            time.sleep(0.05)
            continue
        if r.success:
            acked.append(k)
        else:
            errors.append("writer %d: %s" % (wid, r.error[:200]))
            time.sleep(0.05)


SLOWEST = [0.0]  # the shell's slowest call of 10 INSERTs (logged)


def shell_stream(node, acked, stop):
    i = 1
    while not stop.is_set():
        t0 = time.time()
        text = "\n".join("INSERT INTO c(id, w, v) VALUES (%d, 0, "
                         "randomblob(100)) RETURNING id;" % j
                         for j in range(i, i + 10))
        out, finished = node.sh.partial(text, timeout=60 * SLOW)
        acked.extend(int(x) for x in out.split() if x.isdigit())
        i += 10
        if not finished:
            return
        SLOWEST[0] = max(SLOWEST[0], time.time() - t0)


def test():
    pb, pbg = project_stubs()
    c = Cluster(3)
    lead = c.leader()
    lead.sql("CREATE TABLE c(id INTEGER PRIMARY KEY, w INTEGER, v BLOB);")
    c.wait_all("SELECT count(*) FROM sqlite_schema WHERE name = 'c';", "1")
    follower = next(n for n in c.live() if n is not lead)

    # A second shell on the leader's file is a client of its host: its
    # write goes through the host and is on every node.
    client = Shell(lead.db, env=c.env)
    out = client.sql("INSERT INTO c(id, w) VALUES (-1, -1);")
    check(not is_error(out), "a client shell's write: %r" % out)
    client.finish("client shell exit", 0)
    c.wait_all("SELECT w FROM c WHERE id = -1;", "-1")

    stop = threading.Event()
    acked = {i: [] for i in range(NGRPC + 2)}
    errors = []
    threads = [threading.Thread(target=grpc_writer, daemon=True, args=(
        pb, pbg, lead.grpc_addr, w, acked[w], errors, stop))
        for w in range(1, NGRPC + 1)]
    threads.append(threading.Thread(target=grpc_writer, daemon=True, args=(
        pb, pbg, follower.grpc_addr, NGRPC + 1, acked[NGRPC + 1], errors,
        stop)))
    threads.append(threading.Thread(target=shell_stream, daemon=True,
                                    args=(lead, acked[0], stop)))
    for t in threads:
        t.start()
    # Every writer (0 = the shell) has written before the kill, so the
    # kill lands among writers that all run. The shell's busy handler
    # polls while the sidecar's writers queue in-process, so its writes
    # can wait seconds (logged): wait for it, within a limit.
    t0 = time.time()
    time.sleep(2 * SLOW)
    while min(len(a) for a in acked.values()) < 3:
        if time.time() - t0 > 40 * SLOW:
            fail("a writer made fewer than 3 writes in %ds while the leader "
                 "lived: %s (errors: %s)" % (
                     40 * SLOW, {w: len(a) for w, a in acked.items()},
                     errors[:5]))
        time.sleep(0.1)
    before = {w: len(a) for w, a in acked.items()}
    log("acknowledged before the kill (%.1fs):" % (time.time() - t0), before,
        "errors:", errors[:5], "slowest 10 shell INSERTs: %.2fs" % SLOWEST[0])
    lead.kill9()
    time.sleep(4 * SLOW)
    stop.set()
    for t in threads:
        t.join(30 * SLOW)
        check(not t.is_alive(), "a writer did not stop")
    log("acknowledged in all:", {w: len(a) for w, a in acked.items()},
        "errors:", len(errors))

    # Survivors, then the restarted old leader.
    c.leader()
    c.integrity()
    lead.restart()
    c.wait_converged(timeout=60)
    c.integrity()
    allacked = sorted(k for a in acked.values() for k in a)
    check_eq(len(set(allacked)), len(allacked), "no id acknowledged twice")
    for n in c.live():
        present = set(int(x) for x in n.sql("SELECT id FROM c;").split())
        missing = [k for k in allacked if k not in present]
        check(not missing, "%s lacks %d acknowledged rows, e.g. %s" %
              (n.name, len(missing), missing[:10]))
    c.close()


main(test)
