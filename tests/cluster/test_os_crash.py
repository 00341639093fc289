# budget: 150
# budget-long: 1200
"""tests/cluster/test_os_crash.py -- issue #6: an OS crash of a node (its
unsynced writes lost) loses no acknowledged write, and the node rebuilds
itself when what survived no longer fits together.

The picture of the disk after an OS crash comes from the fault build
(build/fault/raftlite) with RAFTLITE_FAULT_SYNCED=1: each time the node
syncs its WAL, its database file or its applied record, a copy of that
file as synced is kept in <db>-raft/synced/ (lib/fault.h). Everything
written after a file's last sync is what the crash may lose, and losing
all of it is one outcome the node must survive. The Raft log is written
with O_DSYNC (raft_uv) and kept as it is.

Round "os-crash" (3 times; 10 with RL_LONG=1, one of them on the leader):
a load writes through the leader and reads max(id) everywhere
(tests/lib/rlcrash.py); the victim's own shell checkpoints now and then;
the victim is killed (-9), and its WAL, database file and record are
replaced by their synced copies (a file never synced is emptied; the
database file is kept when it was never synced), its -shm removed; the
victim restarts. Every acknowledged write must then be on every node,
integrity_check ok, and all nodes converge to byte-identical files.

Round "record-ahead" (once): as above, and then the WAL also loses every
frame from the commit frame the applied record names on: the record
reached the disk, the WAL's tail did not (the case the record-first sync
order of rl_vfs_sync avoids, but a WAL restart between the two syncs, or a
disk that reorders writes, produces). The node must notice (the record
does not describe the WAL), say so, discard its database and rebuild it
from a peer's image (raftd/host/rebuild.c), and
converge; no acknowledged write lost. Its first start is armed to die
(fault point image-install) while it installs that image: the next start
must find the rebuild marker and rebuild again.
"""
import os
import random
import struct
import subprocess

from rltest import *
from rlcluster import *
from rlcrash import (make_table, Answers, Load, check_aborted, check_acked,
                     drain, start_node)

FAULT_EXT = os.path.join(ROOT, "build", "fault", "raftlite")
URI = "raft_snapshot_threshold=64&raft_snapshot_trailing=16"
WAL_HDR = 32
FRAME_HDR = 24


def os_crash(node):
    """Puts the synced copies in place of node's files (node is dead).
    Returns a description of what was lost."""
    syn = node.db + "-raft/synced"
    lost = []
    for name, path, keep_unsynced in (("wal", node.db + "-wal", False),
                                      ("applied", node.db + "-raft/applied",
                                       False),
                                      ("db", node.db, True)):
        cur = file_bytes(path) if os.path.exists(path) else b""
        copy = os.path.join(syn, name)
        if os.path.exists(copy):
            new = file_bytes(copy)
        elif keep_unsynced:
            new = cur
        else:
            new = b""
        if new != cur:
            lost.append("%s %d -> %d bytes%s" %
                        (name, len(cur), len(new),
                         "" if len(new) != len(cur) else " (content)"))
        with open(path, "wb") as f:
            f.write(new)
    if os.path.exists(node.db + "-shm"):
        os.unlink(node.db + "-shm")
    return ", ".join(lost) or "nothing"


def record_frame(node):
    """(index, salt, frame) of the applied record's settled state."""
    b = file_bytes(node.db + "-raft/applied")
    if len(b) != 80:
        return 0, b"", 0
    idx, = struct.unpack_from("<Q", b, 40)
    salt = b[48:56]
    frame, = struct.unpack_from("<I", b, 56)
    return idx, salt, frame


def cut_wal_before_record(node):
    """Cuts the WAL just before the record's commit frame. Returns the
    number of commit frames of the record's generation left before it
    (0: the cut leaves no valid commit, so no mismatch could be seen)."""
    idx, salt, frame = record_frame(node)
    wal = file_bytes(node.db + "-wal")
    if idx == 0 or frame < 2 or len(wal) < WAL_HDR:
        return 0
    if wal[16:24] != salt:
        return 0
    page, = struct.unpack_from(">I", wal, 8)
    size = FRAME_HDR + page
    commits = 0
    for k in range(frame - 1):
        off = WAL_HDR + k * size
        if off + size > len(wal):
            return 0
        _, dbsize = struct.unpack_from(">II", wal, off)
        if wal[off + 8:off + 16] == salt and dbsize:
            commits += 1
    with open(node.db + "-wal", "r+b") as f:
        f.truncate(WAL_HDR + (frame - 1) * size)
    log("%s: WAL cut before frame %d (record index %d); %d commit frames "
        "left" % (node.name, frame, idx, commits))
    return commits


def durable_consistent(node):
    """Whether node's database and WAL as they now are form a sound
    database for stock SQLite (checked on copies: recovery runs there).
    SQLite's own ordering (the WAL synced before a checkpoint writes the
    database file) guarantees that after a real OS crash; a cut that makes
    the WAL lack frames the database file already holds does not."""
    d = scratch("rlcut-")
    for suffix in ("", "-wal"):
        if os.path.exists(node.db + suffix):
            with open(os.path.join(d, "x.db" + suffix), "wb") as f:
                f.write(file_bytes(node.db + suffix))
    r = subprocess.run([SQLITE3, "-batch", os.path.join(d, "x.db"),
                        "PRAGMA integrity_check;"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    return r.stdout.strip() == "ok"


def restart_checked(c, victim, acked, ans, what):
    before = ans.last.get(victim.name, (None,))[0]
    start_node(victim)
    deadline = time.time() + 60 * SLOW
    while True:
        # A read waits at the gate up to the busy timeout (10 s); a
        # rebuild may take longer: then "database is locked", and again.
        out = victim.sh.sql("SELECT 'max ' || coalesce(max(id), 0) FROM t;")
        got = [l for l in out.splitlines() if l.startswith("max ")]
        if got or "database is locked" not in out or time.time() > deadline:
            break
        log("%s: its first read waited at the gate and timed out: again" %
            victim.name)
    check(got, "%s: no answer after the restart:\n%s" % (victim.name, out))
    first = int(got[0][4:])
    log("%s restarted after %s: first answer max(id) = %d, last before "
        "the crash %s" % (victim.name, what, first, before))
    # The crash took the WAL's unsynced tail, but the node's reads wait
    # (raftd/host/gate.c rl_host_gate_main) until it has applied what its log held:
    # never an older answer than before.
    ans.add(victim.name, first, "first answer after %s" % what)
    k = max(acked or {0}) + 500
    c.write("INSERT OR IGNORE INTO t(id, v) VALUES (%d, 'after');" % k,
            timeout=60)
    acked.add(k)
    try:
        check_acked(c, acked)
    except TestFailure:
        victim.sh.partial("SELECT 1;", timeout=5)
        log("%s printed:\n%s" % (victim.name, victim.sh.printed[-4000:]))
        raise
    c.wait_converged(timeout=60)
    c.integrity()
    victim.sh.sql("SELECT 1;")
    return victim.sh.printed


def crash_round(c, ans, all_acked, role, cut):
    lead = c.leader()
    victim = lead if role == "leader" else \
        random.choice([n for n in c.live() if n is not lead])
    for attempt in range(5):
        ld = Load(c, ans, checkpoint_on=None if cut else
                  random.choice([victim, None]))
        time.sleep(random.uniform(1.5, 3.0) * SLOW)
        victim.kill9()
        time.sleep(0.3)
        acked = ld.stop()
        all_acked |= acked
        lost = os_crash(victim)
        log("%s (%s): OS crash loses %s" % (victim.name, role, lost))
        if not cut:
            break
        if cut_wal_before_record(victim) > 0 and durable_consistent(victim):
            break
        log("the cut leaves no valid commit before the record's frame, or "
            "the WAL lacks frames the database file holds (no OS crash "
            "leaves that): try again")
        restart_checked(c, victim, all_acked, ans, "a discarded cut")
    else:
        fail("could not set up a WAL that lacks the record's commit frame")
    if cut:
        # First a start that dies while it installs the rebuilding image:
        # the next start must know the rebuild is not done.
        start_node(victim, {"RAFTLITE_FAULT": "image-install:1"}, armed=True)
        deadline = time.time() + 40 * SLOW
        while victim.sh.p.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        check_aborted(victim, victim.sh.p.poll(), "image-install",
                      drain(victim))
        check("does not describe" in victim.sh.printed or
              "is not the commit frame" in victim.sh.printed or
              "its tail was lost" in victim.sh.printed,
              "%s did not report that its record does not describe its "
              "WAL; output:\n%s" % (victim.name, victim.sh.printed[-3000:]))
        check(os.path.exists(victim.db + "-raft/rebuild"),
              "no rebuild marker after a rebuild was cut short")
    out = restart_checked(c, victim, all_acked, ans,
                          "the record-ahead cut" if cut else "an OS crash")
    rebuilt = "rebuilt from a peer's image" in out
    if cut:
        check("a rebuild begun earlier did not finish" in out,
              "%s did not resume the rebuild it had begun; output:\n%s" %
              (victim.name, out[-3000:]))
        check(not os.path.exists(victim.db + "-raft/rebuild"),
              "the rebuild marker is still there after the rebuild")
        check(rebuilt, "%s did not rebuild from an image; output:\n%s" %
              (victim.name, out[-3000:]))
    log("round %s/%s passed%s" % (role, "cut" if cut else "os-crash",
                                  " (the node rebuilt itself)"
                                  if rebuilt else ""))
    return lost


def test():
    random.seed(os.getpid())
    check(os.path.exists(FAULT_EXT + ".so"),
          "%s.so is not built (make fault)" % FAULT_EXT)
    c = Cluster(3, ext=FAULT_EXT, uri=URI,
                env={"RAFTLITE_FAULT_SYNCED": "1"})
    make_table(c)
    ans = Answers()
    acked = set()
    rounds = [("follower", False)] * (8 if LONG else 2) + \
        [("leader", False)] * (2 if LONG else 1) + [("follower", True)]
    lost_any = False
    for role, cut in rounds:
        lost = crash_round(c, ans, acked, role, cut)
        lost_any = lost_any or "wal" in lost
    check(lost_any, "no round lost any unsynced WAL bytes: the simulation "
          "did not simulate anything")
    check_acked(c, acked)
    c.close()


main(test)
