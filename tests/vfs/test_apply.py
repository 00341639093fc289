# budget: 240
# asan: yes
"""Apply: the VFS appends records to a database's WAL and publishes them in
the wal-index itself. It handles a fresh, empty, restarted and truncated
WAL (after each kind of checkpoint of the applying side), more than 4062
frames (several hash blocks) whose hash blocks are byte-identical to those
SQLite's own recovery builds from the same WAL, and refuses malformed
records (wrong page size, page 0, truncated data) with an error, touching
nothing."""
import os
import shutil
import struct
from rltest import *

REC_MAGIC = 0x524d4c52


def encode_record(page_size, db_pages, pages):
    """A version-1 record (vfs/txn.h) for [(pgno, bytes)]."""
    hdr = struct.pack("<4sIIIIII", b"RLTX", 1, page_size, db_pages,
                      len(pages), 0, 0)
    table = b"".join(struct.pack("<II", p, 0) for p, _ in pages)
    data = b"".join(d for _, d in pages)
    body = table + data
    crc = crc32c(body, crc32c(hdr))
    return hdr + struct.pack("<I", crc) + body


def frame_log(rec):
    return struct.pack("<IIQ", REC_MAGIC, 0, len(rec)) + rec


def published(db):
    h = shm_header(db)
    return (h["mxFrame"], h["nPage"], h["salt"], h["iChange"])


def case_wal_states():
    """Fresh, empty (after TRUNCATE), restarted (after RESTART), and
    appended-to WALs on the applying side."""
    d = scratch()
    a, b = make_pair(d)
    log_ = os.path.join(d, "m.log")
    A = Shell(a, env={"RAFTLITE_TEST": "1", "RAFTLITE_MIRROR": log_})
    B = Shell(b, env={"RAFTLITE_TEST": "1"})
    check(not os.path.exists(b + "-wal"), "B starts without a WAL")
    A.sql_ok("CREATE TABLE t(a, b);")
    for i, mode in enumerate([None, "PASSIVE", "FULL", "RESTART", "TRUNCATE",
                              None, "TRUNCATE", "RESTART"]):
        if mode:
            out = B.sql_ok("PRAGMA wal_checkpoint(%s);" % mode).strip()
            check_eq(out.split("|")[0], "0", "%s checkpoint of B" % mode)
        if mode == "TRUNCATE":
            check_eq(os.path.getsize(b + "-wal"), 0, "WAL truncated")
        before = shm_header(b) if os.path.exists(b + "-shm") else None
        A.sql_ok("INSERT INTO t SELECT value, randomblob(300) FROM "
                 "generate_series(1, %d);" % (50 * (i + 1)))
        n = int(B.sql_ok("SELECT raft_mirror_apply('%s');" % log_))
        after = shm_header(b)
        if before and before["mxFrame"] and \
                before["nBackfill"] == before["mxFrame"]:
            # Everything was backfilled and no reader uses the WAL: the
            # applier starts the WAL over, as SQLite's writer would.
            check(after["salt"] != before["salt"],
                  "new WAL generation after %s" % mode)
            check_eq(after["mxFrame"], n,
                     "WAL restarted from frame 1 after %s" % mode)
        elif before:
            check_eq(after["mxFrame"], before["mxFrame"] + n,
                     "frames appended (%s)" % mode)
        check_eq(B.sql_ok(".sha3sum"), A.sql_ok(".sha3sum"),
                 "B after apply (%s)" % mode)
        check_eq(B.sql_ok("PRAGMA integrity_check;").strip(), "ok",
                 "B integrity (%s)" % mode)
    A.close()
    B.close()


def case_many_frames_and_hash_blocks():
    """> 4062 + 4096 frames: three hash blocks, identical to recovery's."""
    d = scratch()
    a, b = make_pair(d, page_size=1024)
    log_ = os.path.join(d, "m.log")
    A = Shell(a, env={"RAFTLITE_TEST": "1", "RAFTLITE_MIRROR": log_})
    B = Shell(b, env={"RAFTLITE_TEST": "1"})
    A.sql_ok("PRAGMA wal_autocheckpoint=0; CREATE TABLE t(a, b);")
    total = 0
    for n in (5000, 2000, 1500, 30):  # rows of ~1 page each
        A.sql_ok("INSERT INTO t SELECT value, randomblob(900) FROM "
                 "generate_series(1, %d);" % n)
        total += int(B.sql_ok("SELECT raft_mirror_apply('%s');" % log_))
    mx = shm_header(b)["mxFrame"]
    check_eq(mx, total, "mxFrame equals the frames applied")
    check(mx > 4062 + 4096, "more than two hash blocks (%d frames)" % mx)
    check_eq(B.sql_ok(".sha3sum"), A.sql_ok(".sha3sum"), "B's content")
    # Let stock SQLite recover the same WAL in a copy, and compare the
    # hash blocks byte for byte (block 0 after its 136-byte header).
    c = os.path.join(d, "C.db")
    shutil.copyfile(b, c)
    shutil.copyfile(b + "-wal", c + "-wal")
    C = Shell(c, ext=False)
    check_eq(C.sql_ok("SELECT count(*) FROM t;").strip(),
             A.sql_ok("SELECT count(*) FROM t;").strip(), "recovered copy")
    check_eq(shm_header(c)["mxFrame"], mx, "recovery found every frame")
    ours, theirs = file_bytes(b + "-shm"), file_bytes(c + "-shm")
    blocks = (mx - 4062 + 4095) // 4096 + 1
    for i in range(blocks):
        lo = i * 32768 + (136 if i == 0 else 0)
        hi = (i + 1) * 32768
        check(ours[lo:hi] == theirs[lo:hi],
              "hash block %d differs from SQLite's recovery" % i)
    log("compared", blocks, "hash blocks,", mx, "frames")
    C.close()
    A.close()
    B.close()


def case_malformed():
    d = scratch()
    a, b = make_pair(d)
    log_ = os.path.join(d, "m.log")
    A = Shell(a, env={"RAFTLITE_TEST": "1", "RAFTLITE_MIRROR": log_})
    B = Shell(b, env={"RAFTLITE_TEST": "1"})
    A.sql_ok("CREATE TABLE t(a, b); INSERT INTO t VALUES (1, 2);")
    B.sql_ok("SELECT raft_mirror_apply('%s');" % log_)
    # B's own connection maps the wal-index from now on, as a node's
    # applier does: were the applier the last user of the -shm in its
    # process, the unix VFS would reset it and run recovery at the next
    # open (same content, iChange back to 0).
    check_eq(B.sql_ok("SELECT count(*) FROM t;").strip(), "1", "B reads")
    good = file_bytes(log_)
    page = b"\0" * 4096

    def refused(name, logbytes, want):
        bad = os.path.join(d, name + ".log")
        with open(bad, "wb") as f:
            f.write(logbytes)
        state = (file_bytes(b), file_bytes(b + "-wal"), published(b))
        out = B.sql_err("SELECT raft_mirror_apply('%s');" % bad)
        check(want in out, "%s: error names the cause (%r): %s" %
              (name, want, out))
        now = (file_bytes(b), file_bytes(b + "-wal"), published(b))
        for what, x, y in zip(("database file", "WAL", "wal-index header"),
                              state, now):
            check(x == y, "%s: the refused record changed the %s%s" %
                  (name, what, "" if len(x) > 10 else ": %r -> %r" % (x, y)))
        # Nothing half-applied: the database still answers as A.
        check_eq(B.sql_ok(".sha3sum"), A.sql_ok(".sha3sum"),
                 "%s: B after refusal" % name)

    # Wrong page size: a well-formed record of a 1024-byte-page database.
    refused("pagesize", frame_log(encode_record(1024, 2, [(1, b"\0" * 1024)])),
            "page size 1024 does not match")
    refused("page0", frame_log(encode_record(4096, 2, [(0, page)])),
            "page")
    rec = encode_record(4096, 3, [(1, page), (2, page)])
    refused("truncated", frame_log(rec)[:-100], "log damaged")
    short = rec[:-4096]  # length field consistent, data missing
    refused("short", frame_log(short), "bad record")
    refused("beyond", frame_log(encode_record(4096, 1, [(2, page)])), "page")
    # The good log still applies cleanly afterwards (nothing was left
    # locked or half-written).
    A.sql_ok("INSERT INTO t VALUES (3, 4);")
    B.sql_ok("SELECT raft_mirror_apply('%s');" % log_)
    check_eq(B.sql_ok(".sha3sum"), A.sql_ok(".sha3sum"), "B after more")
    check(len(good) > 0, "log had records")
    A.close()
    B.close()


def test():
    for case in (case_wal_states, case_many_frames_and_hash_blocks,
                 case_malformed):
        log("--", case.__name__)
        case()


main(test)
