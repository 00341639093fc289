# budget: 150
# asan: yes
"""Remote SQL cannot escape (issue 15): against a running 3-node raftd
cluster, every attack of the security review is refused with a clear error
— fts3_tokenizer's pointer leak through a read and its crash through a
write forwarded by a follower (text and bound blob), a TEMP trigger that
rewrote other clients' inserts, PRAGMA query_only, writable_schema,
hard_heap_limit and temp_store_directory through a read, ATTACH and VACUUM
INTO — and afterwards every node is up, the next client sees no effect, the
replicas are identical and the applier keeps applying. Limits: a 300 MB
result is cut by SQLITE_LIMIT_LENGTH (RSS grows < 100 MB), an endless
recursive CTE without a deadline is cut by -max-call-ms, a cancelled one
and one whose client process is killed stop burning CPU within a second, a
request over -max-msg-bytes is refused naming the flag, one client cannot
take every worker (-max-client-calls), a ForwardTxn stream that never
pauses is cut at -max-stream-ms and FetchImage, of the database file and of
the consistent image "@image" (which holds a read transaction while it
streams), is cut when its client stops reading (-stream-idle-ms)."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlgrpc import *  # noqa: F401,F403
import grpc

T = 30 * SAN_SLOW
# The endless CTE waits for it: 12 s under ASan is ample for every
# ordinary call of this test.
MAX_CALL_MS = 6000 * (2 if SAN_SLOW > 1 else 1)
# The standalone node's longest stream: a ForwardTxn that never idles is
# cut at it; the node's other streams (a 24 MB image) end well before.
MAX_STREAM_MS = 6000
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024.0
    return 0.0


def rows(r):
    return [[bytes(v).decode() for v in row.values] for row in r.result.rows]


def read(s, pb, sql):
    r = s.ExecuteRead(pb.ReadRequest(sql=sql), timeout=T)
    check(not r.error, "%s: %s" % (sql, r.error))
    return rows(r)


def refused_read(s, pb, sql, needle):
    r = s.ExecuteRead(pb.ReadRequest(sql=sql), timeout=T)
    check(r.error and needle in r.error and not r.result.rows,
          "read %r should be refused naming %r: %r" % (sql, needle, r))
    return r.error


def refused_write(s, pb, sql, needle, params=()):
    w = s.ExecuteWrite(pb.WriteRequest(sql=sql, params=list(params)),
                       timeout=T)
    check(not w.success and needle in w.error,
          "write %r should be refused naming %r: %r" % (sql, needle, w))
    return w.error


def test():
    pb, pbg = project_stubs()
    flags = ["-max-call-ms", str(MAX_CALL_MS)]
    n1 = Raftd(node="n1", args=["-bootstrap", "-raft",
                                "127.0.0.1:%d" % free_port()] + flags)
    s1 = pbg.DistributedSqliteStub(channel(n1.addr))
    n2 = Raftd(node="n2", args=["-join", n1.addr, "-raft",
                                "127.0.0.1:%d" % free_port()] + flags)
    n3 = Raftd(node="n3", args=["-join", n1.addr, "-raft",
                                "127.0.0.1:%d" % free_port()] + flags)
    nodes = [n1, n2, n3]
    stubs = [s1] + [pbg.DistributedSqliteStub(channel(n.addr))
                    for n in (n2, n3)]
    s2 = stubs[1]
    w = s1.ExecuteWrite(pb.WriteRequest(
        sql="CREATE TABLE msgs(id INTEGER PRIMARY KEY, v TEXT)"), timeout=T)
    check(w.success, "setup: %r" % w)

    def converged(want_count):
        """Every node holds the same rows (want_count of them)."""
        deadline = time.time() + T
        while time.time() < deadline:
            seen = []
            for s in stubs:
                r = s.ExecuteRead(pb.ReadRequest(
                    sql="SELECT count(*), group_concat(id || ':' || v, ',') "
                        "FROM (SELECT * FROM msgs ORDER BY id)"), timeout=T)
                seen.append(r.error or rows(r))
            if all(x == seen[0] for x in seen) and not r.error and \
                    seen[0][0][0] == str(want_count):
                return seen[0]
            time.sleep(0.05)
        fail("replicas differ or lack rows: %r" % seen)

    converged(0)

    # --- fts3_tokenizer: pointer leak through a read, crash through a
    # write sent to a follower (forwarded to the leader), bound blob too.
    refused_read(s2, pb, "SELECT hex(fts3_tokenizer('simple'))",
                 "fts3_tokenizer")
    refused_write(s2, pb, "SELECT fts3_tokenizer('evil', "
                  "x'4141414141414141'); CREATE VIRTUAL TABLE temp.f USING "
                  "fts3(tokenize=evil)", "fts3_tokenizer")
    refused_write(s2, pb, "SELECT fts3_tokenizer('evil', ?)",
                  "fts3_tokenizer",
                  params=[pb.Value(blob=b"\x41" * 8)])
    refused_write(s2, pb, "CREATE VIRTUAL TABLE f USING fts3(tokenize=evil)",
                  "module 'fts3'")
    refused_read(s1, pb, "SELECT load_extension('/nonexistent.so')",
                 "load_extension")

    # --- the shared writer cannot be poisoned for other clients.
    refused_write(s2, pb, "CREATE TEMP TRIGGER tamper BEFORE INSERT ON msgs "
                  "BEGIN UPDATE msgs SET v = 'x'; END", "TEMP")
    refused_write(s1, pb, "CREATE TEMP TABLE scratch(x)", "TEMP")
    refused_write(s1, pb, "PRAGMA query_only=1", "PRAGMA query_only")
    refused_write(s1, pb, "PRAGMA writable_schema=ON; UPDATE sqlite_schema "
                  "SET sql = 'CREATE TABLE msgs(broken' WHERE name = 'msgs'",
                  "PRAGMA writable_schema")
    refused_write(s1, pb, "UPDATE sqlite_schema SET sql = 'x' WHERE "
                  "name = 'msgs'", "may not be modified")
    vac = os.path.join(n1.data, "copy.db")
    # (a write runs inside its transaction, where VACUUM cannot; a read
    # must not write; the allow-list denies the ATTACH VACUUM INTO does)
    refused_write(s1, pb, "VACUUM INTO '%s'" % vac, "VACUUM")
    r = s1.ExecuteRead(pb.ReadRequest(sql="VACUUM INTO '%s'" % vac),
                       timeout=T)
    check(r.error, "VACUUM INTO through a read: %r" % r)
    check(not os.path.exists(vac), "VACUUM INTO wrote %s" % vac)
    refused_write(s1, pb, "ATTACH '%s' AS x" % vac, "ATTACH")

    # --- a read cannot set process-wide or connection state.
    refused_read(s1, pb, "PRAGMA hard_heap_limit=200000", "hard_heap_limit")
    refused_read(s1, pb, "PRAGMA soft_heap_limit=200000", "soft_heap_limit")
    refused_read(s1, pb, "PRAGMA temp_store_directory='/tmp'",
                 "temp_store_directory")
    refused_read(s2, pb, "SELECT * FROM pragma_hard_heap_limit(200000)",
                 "hard_heap_limit")

    # The next clients see no effect: inserts keep their values on every
    # node, writes work (no query_only), the schema reads fine, the
    # applier applies (the followers get every row).
    for i, s in enumerate(stubs * 2):
        w = s.ExecuteWrite(pb.WriteRequest(
            sql="INSERT INTO msgs(v) VALUES (?)",
            params=[pb.Value(text="hello%d" % i)]), timeout=T)
        check(w.success, "write after the attacks via node %d: %r" %
              (i % 3 + 1, w))
    got = converged(6)
    check("tampered" not in got[0][1] and "hello0" in got[0][1],
          "rows: %r" % got)
    for s in stubs:
        check(read(s, pb, "PRAGMA integrity_check") == [["ok"]],
              "integrity_check")
        check(read(s, pb, "SELECT count(*) FROM temp.sqlite_master") ==
              [["0"]], "temp schema empty")
        check(read(s, pb, "PRAGMA query_only") == [["0"]], "query_only off")
        check(read(s, pb, "SELECT length(randomblob(300000))") ==
              [["300000"]], "memory not limited by a heap limit")
    for n in nodes:
        check(n.p.poll() is None, "node %s died:\n%s" % (n.addr,
                                                          n.log()[-3000:]))
    log("every attack refused; 3 replicas identical, applier applying")

    # Ordinary SQL the allow-list must keep: FTS5, R-Tree, JSON, windows,
    # informational PRAGMAs.
    w = s2.ExecuteWrite(pb.WriteRequest(
        sql="CREATE VIRTUAL TABLE docs USING fts5(body); "
            "INSERT INTO docs VALUES ('the quick brown fox'); "
            "CREATE VIRTUAL TABLE box USING rtree(id, x0, x1); "
            "INSERT INTO box VALUES (1, 0, 5)"), timeout=T)
    check(w.success, "fts5/rtree: %r" % w)
    check(read(s1, pb, "SELECT highlight(docs, 0, '[', ']') FROM docs "
               "WHERE docs MATCH 'quick'") == [["the [quick] brown fox"]],
          "fts5 query")
    check(read(s1, pb, "SELECT json_extract('{\"a\":[1,2]}', '$.a[1]'), "
               "row_number() OVER (), (SELECT count(*) FROM box WHERE "
               "x0 >= 0) FROM pragma_table_info('msgs') LIMIT 1") ==
          [["2", "1", "1"]], "json/window/rtree/pragma function")

    # --- limits: a 300 MB value is refused by SQLITE_LIMIT_LENGTH.
    pid = n1.p.pid
    before = rss_mb(pid)
    e = refused_read(s1, pb, "SELECT length(hex(randomblob(300000000)))",
                     "-max-msg-bytes")
    after = rss_mb(pid)
    check(after - before < 100, "RSS grew %.0f MB (%.0f -> %.0f)" %
          (after - before, before, after))
    log("300 MB result refused (%s); RSS %.0f -> %.0f MB" %
        (e[:80], before, after))

    # A request larger than -max-msg-bytes is refused naming the flag.
    expect_rpc_error(lambda: s1.ExecuteWrite(pb.WriteRequest(
        sql="SELECT '" + "x" * (5 << 20) + "'"), timeout=T),
        grpc.StatusCode.RESOURCE_EXHAUSTED, "-max-msg-bytes",
        "5 MiB request")

    # An endless recursive CTE without a client deadline: cut by the
    # server's maximum call time, naming the flag.
    cte = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
           "SELECT count(*) FROM c")
    t0 = time.time()
    e = expect_rpc_error(lambda: s2.ExecuteRead(pb.ReadRequest(sql=cte)),
                         grpc.StatusCode.DEADLINE_EXCEEDED, "-max-call-ms",
                         "endless CTE without a deadline")
    took = time.time() - t0
    check(took < MAX_CALL_MS / 1000.0 + 5, "cut after %.1fs" % took)
    log("endless CTE cut after %.1fs: %s" % (took, e))

    # At once, on two nodes: a CTE whose call is cancelled (n3) and one
    # whose client process is killed (n2, no deadline) stop burning CPU
    # within a second of the client going.
    pid2, pid3 = n2.p.pid, n3.p.pid
    fut = stubs[2].ExecuteRead.future(pb.ReadRequest(sql=cte), timeout=T)
    client = spawn([sys.executable, "-c",
                    "import grpc, sys\n"
                    "ch = grpc.insecure_channel(sys.argv[1])\n"
                    "ch.unary_unary('/proto.DistributedSqlite/ExecuteRead')"
                    "(bytes.fromhex(sys.argv[2]))\n",
                    n2.addr, pb.ReadRequest(sql=cte).SerializeToString()
                    .hex()])
    # (The client process needs a moment to start, and on a loaded machine
    # either node may get little CPU for a while: watch both in 0.3 s
    # windows until each has burned at least 0.17 s/s, and take the
    # highest rate seen as its "before".)
    busy = [0.0, 0.0]
    deadline = time.time() + T
    while min(busy) < 0.17 and time.time() < deadline:
        c0 = (cpu_s(pid2), cpu_s(pid3))
        time.sleep(0.3)
        busy[0] = max(busy[0], (cpu_s(pid2) - c0[0]) / 0.3)
        busy[1] = max(busy[1], (cpu_s(pid3) - c0[1]) / 0.3)
    check(min(busy) >= 0.17, "the CTEs should be burning CPU: %.2f, %.2fs/s"
          % tuple(busy))
    fut.cancel()
    client.kill()
    client.wait()
    time.sleep(1.0)
    c0 = (cpu_s(pid2), cpu_s(pid3))
    time.sleep(1.0)
    idle = (cpu_s(pid2) - c0[0], cpu_s(pid3) - c0[1])
    for what, i in (("client process killed", 0), ("call cancelled", 1)):
        check(idle[i] < 0.08 and idle[i] < busy[i] / 2,
              "CPU %.2fs/s after the %s (%.2fs/s before)" %
              (idle[i], what, busy[i]))
        log("%s: %.2fs/s CPU before, %.2fs/s from 1s after" %
            (what, busy[i], idle[i]))
    check(read(stubs[2], pb, "SELECT count(*) FROM msgs") == [["6"]],
          "n3 serves after the cancel")

    for n in nodes:
        check(n.p.poll() is None, "node died:\n%s" % n.log()[-3000:])
        n.stop()

    limits_standalone(pb, pbg)


def limits_standalone(pb, pbg):
    """-workers 2: one client's endless reads cannot starve others (the
    per-client cap refuses its second call); FetchImage of the database
    file and of the consistent image "@image" (which holds a read
    transaction while it streams) are cut when their client stops reading,
    ForwardTxn when its client stops sending, and one that never pauses
    at -max-stream-ms. One node of its own."""
    d = Raftd(node="n1", args=["-bootstrap", "-raft",
                               "127.0.0.1:%d" % free_port(),
                               "-workers", "2",
                               "-max-call-ms", str(4000 * SAN_SLOW),
                               "-stream-idle-ms", "1500",
                               "-max-stream-ms", str(MAX_STREAM_MS),
                               "-max-msg-bytes", str(1 << 20)])
    ch = channel(d.addr)
    s = pbg.DistributedSqliteStub(ch)
    cte = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
           "SELECT count(*) FROM c")
    first = s.ExecuteRead.future(pb.ReadRequest(sql=cte), timeout=T)
    time.sleep(0.5)
    # The cap is 1 (2 workers less one): the client's second call waits
    # without a worker, and is answered at its deadline naming the cap.
    t0 = time.time()
    expect_rpc_error(lambda: s.ExecuteRead(pb.ReadRequest(sql="SELECT 1"),
                                           timeout=1.5),
                     grpc.StatusCode.DEADLINE_EXCEEDED, "-max-client-calls",
                     "second call of one client")
    # Status is not capped and finds the second worker.
    t0 = time.time()
    st = s.Status(pb.StatusRequest(), timeout=T)
    check(st.node_id == "n1" and time.time() - t0 < 2,
          "Status beside a running CTE: %r" % st)
    waiting = s.ExecuteRead.future(pb.ReadRequest(sql="SELECT 42"),
                                   timeout=T)
    time.sleep(0.3)
    check(not waiting.done(), "the client's second call should wait")
    first.cancel()
    # The cancelled call leaves the server at once: the waiting one runs.
    t0 = time.time()
    r = waiting.result()
    check(rows(r) == [["42"]] and time.time() - t0 < 1.0,
          "waiting call after the cancel: %r after %.1fs" %
          (r, time.time() - t0))

    # A database larger than the transport's windows (24 MB).
    w = s.ExecuteWrite(pb.WriteRequest(sql="CREATE TABLE big(b)"), timeout=T)
    check(w.success, "big table: %r" % w)
    for _ in range(6):
        w = s.ExecuteWrite(pb.WriteRequest(
            sql="WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                "FROM c WHERE x < 8) INSERT INTO big "
                "SELECT randomblob(500000) FROM c"), timeout=T)
        check(w.success, "big rows: %r" % w)
    internal = pbg.RaftliteInternalStub(ch)

    # At once: FetchImage of the file and of "@image" read one chunk and
    # stop reading; ForwardTxn sends one chunk and stops sending. The
    # server cuts each after -stream-idle-ms. (Three calls of one client:
    # idle streams hold no worker, or the cap of 1 would refuse them.)
    # Each stream on a connection of its own: HTTP/2 flow control is
    # shared by the streams of one connection.
    streams, chans = {}, []
    for name in ("sqlite.db", "@image"):
        own = grpc.insecure_channel(
            d.addr, options=[("grpc.use_local_subchannel_pool", 1)])
        chans.append(own)
        it = pbg.RaftliteInternalStub(own).FetchImage(
            pb.FetchImageRequest(name=name, chunk_bytes=200000), timeout=T)
        c = next(it)
        check(c.offset == 0 and c.total_size > 20000000,
              "first chunk of %s: offset %d of %d" % (name, c.offset,
                                                     c.total_size))
        streams[name] = it

    def chunks():
        yield pb.TxnChunk(total_length=8, offset=0, data=b"abcd")
        time.sleep(4)
        yield pb.TxnChunk(offset=4, data=b"efgh", last=True)

    fwd = {}

    def forward():
        t0 = time.time()
        try:
            internal.ForwardTxn(chunks(), timeout=T)
            fwd["err"] = "ForwardTxn was not cut"
        except grpc.RpcError as e:
            fwd["code"], fwd["details"] = e.code(), e.details() or ""
        fwd["took"] = time.time() - t0

    # A ForwardTxn that sends a chunk every 0.4 s (never idle) for ever:
    # cut at -max-stream-ms, the total time of a stream.
    def trickle():
        for i in range(200):
            yield pb.TxnChunk(total_length=100000, offset=10 * i,
                              data=b"0123456789")
            time.sleep(0.4)

    total = {}

    def forward_total():
        t0 = time.time()
        try:
            internal.ForwardTxn(trickle(), timeout=T * 4)
            total["err"] = "ForwardTxn was not cut"
        except grpc.RpcError as e:
            total["code"], total["details"] = e.code(), e.details() or ""
        total["took"] = time.time() - t0

    th = threading.Thread(target=forward)
    th.start()
    th2 = threading.Thread(target=forward_total)
    th2.start()
    time.sleep(4)
    for name, it in streams.items():
        t0 = time.time()
        try:
            for _ in it:
                pass
            fail("FetchImage %s was not cut while its client stopped "
                 "reading" % name)
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and
                  "-stream-idle-ms" in (e.details() or ""),
                  "FetchImage %s cut: %s %s" % (name, e.code(), e.details()))
            log("idle FetchImage %s cut: %s" % (name, e.details()))
        check(time.time() - t0 < T, "draining the cut stream")
    th.join(T)
    check("err" not in fwd and
          fwd.get("code") == grpc.StatusCode.DEADLINE_EXCEEDED and
          "-stream-idle-ms" in fwd.get("details", ""),
          "ForwardTxn idle: %r" % fwd)
    check(fwd["took"] < 4.5, "ForwardTxn idle cut took %.1fs" % fwd["took"])
    for own in chans:
        own.close()
    th2.join(T)
    check("err" not in total and
          total.get("code") == grpc.StatusCode.DEADLINE_EXCEEDED and
          "-max-stream-ms" in total.get("details", "") and
          MAX_STREAM_MS / 1000.0 - 0.5 < total["took"] <
          MAX_STREAM_MS / 1000.0 + 3, "ForwardTxn total: %r" % total)
    log("ForwardTxn without pause cut after %.1fs: %s" %
        (total["took"], total["details"]))

    # The image's read transaction is gone: writes go on, and a whole
    # image of the database as it is now streams to a client that reads.
    w = s.ExecuteWrite(pb.WriteRequest(sql="INSERT INTO big VALUES (1)"),
                       timeout=T)
    check(w.success, "write after the cut: %r" % w)
    got, total = 0, None
    for c in internal.FetchImage(pb.FetchImageRequest(name="@image"),
                                 timeout=T):
        check(c.offset == got, "chunk at %d, expected %d" % (c.offset, got))
        got += len(c.data)
        total = c.total_size
    check(total and got == total, "whole image: %d of %r bytes" %
          (got, total))
    check(d.p.poll() is None, "raftd died:\n%s" % d.log()[-3000:])
    ch.close()
    d.stop()


main(test)
