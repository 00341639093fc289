# budget: 120
"""Group commit survives a crash between its entry and its
acknowledgements (issue 18): a 3-node cluster of stock shells loading the
fault build, every node armed with RAFTLITE_FAULT=group-ack:N (only the
process that runs a group, the leader's, reaches it). Eight gRPC clients
write to the leader, each request one row, until the leader dies by
SIGABRT right after a group's COMMIT went through Raft and before any of
its requests was answered. The shell is restarted unarmed; then every
acknowledged row is on every node and all nodes converge to
byte-identical files."""
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))

from rltest import ROOT, check, log, main  # noqa: E402
from rlcluster import Cluster  # noqa: E402
from rlcrash import check_aborted, check_acked, drain, make_table  # noqa: E402
from rlgrpc import project_stubs  # noqa: E402
import grpc  # noqa: E402

FAULT_EXT = os.path.join(ROOT, "build", "fault", "raftlite")


def test():
    pb, pbg = project_stubs()
    n = random.randint(5, 25)
    log("RAFTLITE_FAULT=group-ack:%d" % n)
    c = Cluster(3, ext=FAULT_EXT, env={"RAFTLITE_FAULT": "group-ack:%d" % n})
    make_table(c)
    leader = c.leader()
    ch = grpc.insecure_channel(leader.grpc_addr)
    stub = pbg.DistributedSqliteStub(ch)
    acked, mu, stop = set(), threading.Lock(), threading.Event()

    def client(k):
        i = 0
        while not stop.is_set():
            rid = 1000000 + k * 100000 + i
            i += 1
            try:
                r = stub.ExecuteWrite(pb.WriteRequest(
                    sql="INSERT INTO t VALUES (%d, x'00')" % rid), timeout=10)
            except grpc.RpcError:
                time.sleep(0.05)
                continue
            if r.success:
                with mu:
                    acked.add(rid)

    ths = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in ths:
        t.start()
    try:
        rc = leader.sh.p.wait(timeout=60)
    except Exception:  # noqa: BLE001
        rc = None
    stop.set()
    for t in ths:
        t.join(30)
    ch.close()
    check_aborted(leader, rc, "group-ack", drain(leader))
    log("leader died at group-ack with %d writes acknowledged" % len(acked))
    check(len(acked) > 0, "no write was acknowledged before the crash")
    leader.restart(env={"RAFTLITE_FAULT": ""})
    c.leader()
    check_acked(c, acked, nodes=c.nodes)
    c.wait_converged()


if __name__ == "__main__":
    main(test)
