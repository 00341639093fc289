# budget: 90
# asan: yes
"""Every RPC of raftlite's proto against a real raftd (stubs generated now
from proto/raftlite.proto); the PoC's three RPCs with stubs generated from
the frozen PoC proto; bad input of every kind gets a gRPC status or an
`error` field naming the problem, and raftd keeps serving."""
import os
import sys
import subprocess
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlgrpc import *  # noqa: F401,F403
import grpc

POC_CLIENT = r'''
import sys, grpc
sys.path.insert(0, sys.argv[1])
import poc_pb2 as p, poc_pb2_grpc as g
ch = grpc.insecure_channel(sys.argv[2])
s = g.DistributedSqliteStub(ch)
w = s.ExecuteWrite(p.WriteRequest(sql="CREATE TABLE poc(id INTEGER PRIMARY KEY, v TEXT, r REAL, b BLOB, n)"), timeout=20)
assert w.success and not w.error, w
w = s.ExecuteWrite(p.WriteRequest(sql="INSERT INTO poc(v, r, b, n) VALUES ('Hello Raft!', 2.5, x'00ff', NULL)"), timeout=20)
assert w.success, w
r = s.ExecuteRead(p.ReadRequest(sql="SELECT id, v, r, b, n FROM poc", consistency=p.EVENTUAL), timeout=20)
assert not r.error, r
assert list(r.result.columns) == ["id", "v", "r", "b", "n"], r
assert len(r.result.rows) == 1, r
assert list(r.result.rows[0].values) == [b"1", b"Hello Raft!", b"2.5", b"\x00\xff", b""], r.result.rows[0]
r = s.ExecuteRead(p.ReadRequest(sql="DELETE FROM poc"), timeout=20)
assert "ExecuteWrite" in r.error, r
w = s.ExecuteWrite(p.WriteRequest(sql="INSERT INTO nosuch VALUES (1)"), timeout=20)
assert not w.success and "no such table" in w.error, w
j = s.Join(p.JoinRequest(node_id="n2", raft_addr="127.0.0.1:1"), timeout=20)
assert not j.success and "runs standalone" in j.error, j
print("poc client ok")
'''


def test():
    pb, pbg = project_stubs()
    d, ch, s, internal = standalone(pbg)
    T = 20 * SAN_SLOW

    def alive(what):
        st = s.Status(pb.StatusRequest(), timeout=T)
        check(st.node_id == "n1", "after %s: Status answers %r" % (what, st))

    # --- PoC stubs, in their own process (same package name `proto`).
    pocdir = gen_stubs(POC_PROTO, os.path.join(scratch(), "poc"), "poc")
    r = subprocess.run([PY, "-c", POC_CLIENT, pocdir, d.addr],
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0 and "poc client ok" in r.stdout,
          "PoC-proto client failed:\n%s%s" % (r.stdout, r.stderr))

    # --- ExecuteWrite: rows affected, last rowid, multi-statement atomic.
    w = s.ExecuteWrite(pb.WriteRequest(
        sql="CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, r REAL, b BLOB, "
            "n INTEGER); INSERT INTO t(v) VALUES ('a'), ('b')"), timeout=T)
    check(w.success and w.rows_affected == 2 and w.last_insert_rowid == 2,
          "multi-statement write: %r" % w)
    w = s.ExecuteWrite(pb.WriteRequest(
        sql="INSERT INTO t(v) VALUES ('c'); INSERT INTO nosuch VALUES (1)"),
        timeout=T)
    check(not w.success and "no such table: nosuch" in w.error,
          "failing multi-statement write: %r" % w)
    r = s.ExecuteRead(pb.ReadRequest(sql="SELECT count(*) FROM t"), timeout=T)
    check(r.result.rows[0].typed[0].integer == 2,
          "a failing statement rolls back the whole write: %r" % r)

    # --- parameters, positional and named, every type.
    w = s.ExecuteWrite(pb.WriteRequest(
        sql="INSERT INTO t(v, r, b, n) VALUES (?, ?, ?, ?)",
        params=[pb.Value(text="héllo"), pb.Value(real=-1.25),
                pb.Value(blob=b"\x00\x01\xfe"), pb.Value(null=True)]),
        timeout=T)
    check(w.success and w.rows_affected == 1 and w.last_insert_rowid == 3,
          "write with params: %r" % w)
    w = s.ExecuteWrite(pb.WriteRequest(
        sql="INSERT INTO t(v, n) VALUES (:v, @n)",
        named_params=[pb.NamedValue(name=":v", value=pb.Value(text="")),
                      pb.NamedValue(name="@n",
                                    value=pb.Value(integer=-(2 ** 63)))]),
        timeout=T)
    check(w.success and w.last_insert_rowid == 4, "named params: %r" % w)
    w = s.ExecuteWrite(pb.WriteRequest(sql="INSERT INTO t(v) VALUES (?)",
                                       params=[pb.Value(text="x")] * 2),
                       timeout=T)
    check(not w.success and "2 parameters given" in w.error,
          "too many params: %r" % w)
    w = s.ExecuteWrite(pb.WriteRequest(
        sql="INSERT INTO t(v) VALUES (:v)",
        named_params=[pb.NamedValue(name=":w", value=pb.Value(text="x"))]),
        timeout=T)
    check(not w.success and "no parameter named ':w'" in w.error,
          "unknown named param: %r" % w)

    w = s.ExecuteWrite(pb.WriteRequest(
        sql="INSERT INTO t(v) VALUES (?); DELETE FROM t",
        params=[pb.Value(text="x")]), timeout=T)
    check(not w.success and "exactly one statement" in w.error,
          "params with two statements: %r" % w)

    # --- ExecuteRead: typed values, column types, PoC text form.
    r = s.ExecuteRead(pb.ReadRequest(
        sql="SELECT id, v, r, b, n FROM t WHERE id >= ? ORDER BY id",
        params=[pb.Value(integer=3)]), timeout=T)
    check(not r.error, "read: %r" % r.error)
    q = r.result
    check(list(q.columns) == ["id", "v", "r", "b", "n"], "columns %r" %
          list(q.columns))
    check(list(q.declared_types) == ["INTEGER", "TEXT", "REAL", "BLOB",
                                     "INTEGER"],
          "declared types %r" % list(q.declared_types))
    check(len(q.rows) == 2, "two rows: %r" % q)
    r3, r4 = q.rows
    check(r3.typed[1].text == "héllo" and r3.typed[2].real == -1.25 and
          r3.typed[3].blob == b"\x00\x01\xfe" and
          r3.typed[4].WhichOneof("kind") == "null",
          "typed values of row 3: %r" % r3)
    check(list(r3.values) == [b"3", "héllo".encode(), b"-1.25",
                              b"\x00\x01\xfe", b""],
          "PoC values of row 3: %r" % list(r3.values))
    check(r4.typed[1].WhichOneof("kind") == "text" and r4.typed[1].text == ""
          and r4.typed[4].integer == -(2 ** 63),
          "'' is text, not NULL, and int64 min survives: %r" % r4)
    check(list(q.column_types) == [
        pb.COLUMN_TYPE_INTEGER, pb.COLUMN_TYPE_TEXT, pb.COLUMN_TYPE_REAL,
        pb.COLUMN_TYPE_BLOB, pb.COLUMN_TYPE_INTEGER],
        "column types (NULLs do not count) %r" % list(q.column_types))
    r = s.ExecuteRead(pb.ReadRequest(
        sql="SELECT 1, NULL UNION ALL SELECT 'a', NULL"), timeout=T)
    check(list(r.result.column_types) == [pb.COLUMN_TYPE_UNSPECIFIED,
                                          pb.COLUMN_TYPE_NULL],
          "mixed and all-NULL columns: %r" % list(r.result.column_types))

    # --- ExecuteTransaction: all or nothing.
    tr = s.ExecuteTransaction(pb.TransactionRequest(statements=[
        pb.Statement(sql="INSERT INTO t(v) VALUES (?)",
                     params=[pb.Value(text="t1")]),
        pb.Statement(sql="UPDATE t SET n = 7 WHERE v IN ('a', 'b')"),
    ]), timeout=T)
    check(tr.success and [x.rows_affected for x in tr.results] == [1, 2] and
          tr.results[0].last_insert_rowid == 5 and tr.failed_statement == -1,
          "transaction: %r" % tr)
    tr = s.ExecuteTransaction(pb.TransactionRequest(statements=[
        pb.Statement(sql="INSERT INTO t(v) VALUES ('t2')"),
        pb.Statement(sql="INSERT INTO t(id) VALUES (1)"),
    ]), timeout=T)
    check(not tr.success and tr.failed_statement == 1 and
          "UNIQUE constraint failed" in tr.error,
          "failing transaction: %r" % tr)
    r = s.ExecuteRead(pb.ReadRequest(sql="SELECT count(*) FROM t WHERE "
                                     "v = 't2'"), timeout=T)
    check(r.result.rows[0].typed[0].integer == 0,
          "failed transaction left nothing behind: %r" % r)
    tr = s.ExecuteTransaction(pb.TransactionRequest(statements=[
        pb.Statement(sql="DELETE FROM t"), pb.Statement(sql="COMMIT")]),
        timeout=T)
    check(not tr.success and tr.failed_statement == 1 and
          "not authorized" in tr.error, "COMMIT inside a transaction: %r" % tr)
    tr = s.ExecuteTransaction(pb.TransactionRequest(), timeout=T)
    check(not tr.success and "empty transaction" in tr.error, "empty: %r" % tr)

    # --- Join / Remove / Leader / Status.
    j = s.Join(pb.JoinRequest(node_id="n2", raft_addr="127.0.0.1:1",
                              grpc_addr="127.0.0.1:2"), timeout=T)
    check(not j.success and "runs standalone" in j.error, "Join: %r" % j)
    rm = s.Remove(pb.RemoveRequest(node_id="n2"), timeout=T)
    check(not rm.success and "runs standalone" in rm.error, "Remove: %r" % rm)
    ld = s.Leader(pb.LeaderRequest(), timeout=T)
    check(not ld.known and "runs standalone" in ld.error, "Leader: %r" % ld)
    st = s.Status(pb.StatusRequest(), timeout=T)
    check(st.node_id == "n1" and st.role == "standalone" and
          st.database == d.db and st.sqlite_version.startswith("3."),
          "Status: %r" % st)

    # --- internal service (transport only).
    payload = os.urandom(300000)

    def chunks(data, size=65536):
        off = 0
        while True:
            part = data[off:off + size]
            yield pb.TxnChunk(offset=off, total_length=len(data), data=part,
                              last=off + len(part) >= len(data))
            off += len(part)
            if off >= len(data):
                return
    fr = internal.ForwardTxn(chunks(payload), timeout=T)
    check(fr.success and fr.received_bytes == len(payload) and
          fr.crc32 == zlib.crc32(payload), "ForwardTxn: %r" % fr)
    bad = [pb.TxnChunk(offset=0, total_length=10, data=b"abc"),
           pb.TxnChunk(offset=5, data=b"def", last=True)]
    expect_rpc_error(lambda: internal.ForwardTxn(iter(bad), timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, "expected 3",
                     "ForwardTxn with a gap")
    short = [pb.TxnChunk(offset=0, total_length=10, data=b"abc")]
    expect_rpc_error(lambda: internal.ForwardTxn(iter(short), timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, "ended early",
                     "ForwardTxn cut short")
    expect_rpc_error(lambda: internal.ReadIndex(pb.ReadIndexRequest(),
                                                timeout=T),
                     grpc.StatusCode.FAILED_PRECONDITION, "runs standalone",
                     "ReadIndex")
    img = b""
    for c in internal.FetchImage(pb.FetchImageRequest(chunk_bytes=1000),
                                 timeout=T):
        check(c.offset == len(img) and zlib.crc32(c.data) == c.crc32,
              "image chunk at %d" % c.offset)
        img += c.data
        last = c
    with open(d.db, "rb") as f:
        disk = f.read()
    check(img == disk and last.last and last.total_size == len(disk) and
          last.stream_crc32 == zlib.crc32(disk),
          "FetchImage returns the database file (%d vs %d bytes)" %
          (len(img), len(disk)))
    part = list(internal.FetchImage(pb.FetchImageRequest(
        name="sqlite.db", offset=100, length=50), timeout=T))
    check(len(part) == 1 and part[0].data == disk[100:150],
          "FetchImage range")
    for name in ("../../../etc/passwd", "/etc/passwd", "sqlite.db-wal",
                 "other.db"):
        expect_rpc_error(lambda: list(internal.FetchImage(
            pb.FetchImageRequest(name=name), timeout=T)),
            grpc.StatusCode.PERMISSION_DENIED, "only this node's database",
            "FetchImage %s" % name)
    expect_rpc_error(lambda: list(internal.FetchImage(
        pb.FetchImageRequest(offset=1 << 40), timeout=T)),
        grpc.StatusCode.OUT_OF_RANGE, "past the image's end", "offset")

    # --- bad input.
    for m, what in (("ExecuteWrite", "WriteRequest"),
                    ("ExecuteRead", "ReadRequest"), ("Join", "JoinRequest"),
                    ("ExecuteTransaction", "TransactionRequest"),
                    ("Remove", "RemoveRequest"), ("Status", "StatusRequest"),
                    ("Leader", "LeaderRequest")):
        raw = ch.unary_unary("/proto.DistributedSqlite/" + m)
        for junk in (b"\xff\xff\xff\xff", b"\x0a\x80", b"\x12\x05ab"):
            expect_rpc_error(lambda: raw(junk, timeout=T),
                             grpc.StatusCode.INVALID_ARGUMENT,
                             "malformed " + what, "%s with junk" % m)
    raw = ch.unary_unary("/proto.RaftliteInternal/ReadIndex")
    expect_rpc_error(lambda: raw(b"\xff", timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, "malformed",
                     "ReadIndex junk")
    fi = ch.unary_stream("/proto.RaftliteInternal/FetchImage")
    expect_rpc_error(lambda: list(fi(b"\xff", timeout=T)),
                     grpc.StatusCode.INVALID_ARGUMENT, "malformed",
                     "FetchImage junk")
    ft = ch.stream_unary("/proto.RaftliteInternal/ForwardTxn")
    expect_rpc_error(lambda: ft(iter([b"\xff"]), timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, "malformed TxnChunk",
                     "ForwardTxn junk")
    for name in ("/proto.DistributedSqlite/Nope", "/nosuch.Service/X",
                 "/proto.RaftliteInternal/Nope"):
        expect_rpc_error(lambda: ch.unary_unary(name)(b"", timeout=T),
                         grpc.StatusCode.UNIMPLEMENTED, "unknown method",
                         name)
    alive("junk")
    big = pb.WriteRequest(sql="SELECT '" + "x" * (5 << 20) + "'")
    expect_rpc_error(lambda: s.ExecuteWrite(big, timeout=T),
                     grpc.StatusCode.RESOURCE_EXHAUSTED, None,
                     "a 5 MiB request over the 4 MiB limit")
    alive("oversized")
    w = s.ExecuteWrite(pb.WriteRequest(sql="INSERT INTO t VALUES (1,, 2)"),
                       timeout=T)
    check(not w.success and "invalid SQL" in w.error and "syntax" in w.error,
          "invalid SQL write: %r" % w)
    r = s.ExecuteRead(pb.ReadRequest(sql="SELEC 1"), timeout=T)
    check("invalid SQL" in r.error and "syntax error" in r.error,
          "invalid SQL read: %r" % r)
    for sql in ("INSERT INTO t(v) VALUES ('sneak')", "DELETE FROM t",
                "CREATE TABLE u(x)"):
        r = s.ExecuteRead(pb.ReadRequest(sql=sql), timeout=T)
        check("refuses SQL that writes" in r.error and not r.result.rows,
              "write via ExecuteRead %r: %r" % (sql, r))
    # A setting PRAGMA is refused by the allow-list before that (issue 15).
    r = s.ExecuteRead(pb.ReadRequest(sql="PRAGMA user_version = 5"),
                      timeout=T)
    check("not authorized" in r.error and "PRAGMA user_version" in r.error
          and not r.result.rows, "setting PRAGMA via ExecuteRead: %r" % r)
    r = s.ExecuteRead(pb.ReadRequest(sql="SELECT 1; DELETE FROM t"),
                      timeout=T)
    check("exactly one statement" in r.error, "smuggled write: %r" % r)
    for sql in ("ATTACH '/etc/passwd' AS x", "BEGIN", "SAVEPOINT a"):
        r = s.ExecuteRead(pb.ReadRequest(sql=sql), timeout=T)
        check(r.error, "%s via ExecuteRead refused: %r" % (sql, r))
    w = s.ExecuteWrite(pb.WriteRequest(sql="ATTACH '%s' AS x" %
                                       os.path.join(d.data, "evil.db")),
                       timeout=T)
    check(not w.success and "not authorized" in w.error and
          not os.path.exists(os.path.join(d.data, "evil.db")),
          "ATTACH refused: %r" % w)
    w = s.ExecuteWrite(pb.WriteRequest(sql="BEGIN; DELETE FROM t"), timeout=T)
    check(not w.success and "ExecuteTransaction" in w.error,
          "transaction control in SQL refused: %r" % w)
    r = s.ExecuteRead(pb.ReadRequest(sql="SELECT count(*) FROM t"), timeout=T)
    check(r.result.rows[0].typed[0].integer == 5, "nothing was deleted")
    for sql in ("", "   ", "-- just a comment"):
        w = s.ExecuteWrite(pb.WriteRequest(sql=sql), timeout=T)
        check(not w.success and "empty SQL" in w.error, "empty write %r: %r"
              % (sql, w))
        r = s.ExecuteRead(pb.ReadRequest(sql=sql), timeout=T)
        check("empty SQL" in r.error, "empty read %r: %r" % (sql, r))
    huge = "y" * (3 << 19)
    r = s.ExecuteRead(pb.ReadRequest(sql="SELECT length(?), length('%s')" %
                                     huge, params=[pb.Value(text=huge)]),
                      timeout=T)
    check(not r.error and r.result.rows[0].typed[0].integer == 3 << 19 and
          r.result.rows[0].typed[1].integer == 3 << 19, "huge strings: %r" %
          r.error)
    # A result over the 4 MiB limit: a clear error, never a cut result.
    w = s.ExecuteWrite(pb.WriteRequest(
        sql="CREATE TABLE big(b); INSERT INTO big SELECT zeroblob(1500000) "
            "FROM (SELECT 1 UNION ALL SELECT 2)"), timeout=T)
    check(w.success, "big rows: %r" % w)
    r = s.ExecuteRead(pb.ReadRequest(sql="SELECT b FROM big"), timeout=T)
    check("result too large" in r.error and "-max-msg-bytes" in r.error and
          not r.result.rows, "oversized result: %r" % r.error)
    r = s.ExecuteRead(pb.ReadRequest(sql="SELECT length(b) FROM big LIMIT 1"),
                      timeout=T)
    check(not r.error and r.result.rows[0].typed[0].integer == 1500000,
          "paged read works: %r" % r.error)
    alive("bad input")
    ch.close()
    d.stop()


main(test)
