# budget: 90
# asan: yes
"""Host takeover (issue 17): when the process hosting a node dies, a
process that has the database open as a client takes over hosting it,
without reopening it. A client shell on the leader's file writes in a
loop (one autocommit INSERT per call, through its host); the hosting
shell is killed (-9). The client's writes fail for a moment, then resume
(it now hosts the node, a follower of the new leader); every acknowledged
write is on every node; PRAGMA raft_status in the client names the node
it took over; the files converge.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from rltest import Shell, check, check_eq, is_error, log, main  # noqa: E402
from rlcluster import Cluster  # noqa: E402


def test():
    c = Cluster(3)
    lead = c.leader()
    lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
    c.wait_all("SELECT count(*) FROM sqlite_schema;", "1")
    client = Shell(lead.db, env=c.env)
    acked, failed, stop = [], [], threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            out = client.sql("INSERT INTO t VALUES (%d, 'client');" % i, 60)
            (failed if is_error(out) else acked).append((time.time(), i))
            time.sleep(0.01)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    time.sleep(2)
    check(acked, "the client wrote nothing through its host")
    t_kill = time.time()
    lead.kill9()
    deadline = t_kill + 20
    while time.time() < deadline:
        if any(t > t_kill + 0.5 for t, _ in acked) and \
                len([1 for t, _ in acked if t > t_kill]) > 20:
            break
        time.sleep(0.1)
    stop.set()
    th.join(60)
    after = [t for t, _ in acked if t > t_kill]
    check(after, "the client's writes did not resume within 20 s of the "
          "host's kill (%d refused meanwhile)" % len(failed))
    log("host killed; the client's writes resumed after %.1fs (%d refused "
        "meanwhile), %d acknowledged in all" % (min(after) - t_kill,
                                               len(failed), len(acked)))
    st = client.sql("SELECT value FROM raft_status WHERE name = 'id';")
    check_eq(st.strip(), lead.name, "the client hosts the node it took over")
    ids = set(i for _, i in acked)
    for n in c.nodes:
        if n is lead:
            continue
        c.wait_val(n, "SELECT count(*) FROM t WHERE id IN (%s);" %
                   ",".join(str(i) for i in sorted(ids)), str(len(ids)))
    got = client.sql("SELECT count(*) FROM t WHERE id IN (%s);" %
                     ",".join(str(i) for i in sorted(ids))).strip()
    check_eq(got, str(len(ids)), "the client's own file holds its writes")
    log("every acknowledged write is on every node")
    client.finish("client", 1 if failed else 0)
    c.close(check_rc=False)


if __name__ == "__main__":
    main(test)
