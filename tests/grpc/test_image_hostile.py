# budget: 120
# serial: netns
"""A joining raftd fetches its database image from a hostile peer (issue
15): the node's traffic to the leader's gRPC address is redirected
(nftables DNAT in the joiner's network namespace, tests/lib/rlnetns.py) to
a gRPC server in this test that passes every call on to the real leader
except the full FetchImage "@image", which it answers with one lie per
attempt: bytes that are no ImageChunk, a stream cut short, more bytes than
the stated total, chunks out of order, a wrong chunk CRC-32, a lying total
size, a wrong stream CRC-32, the raw database file instead of the image
(what a request for another name would get), a corrupted page with every
CRC-32 recomputed, an endless stream of empty chunks, a chunk after the
last, a message over the joiner's message limit (its error names
-max-msg-bytes), and an error status mid-stream. Each fetch must fail naming the
cause (the node's log), nothing of a failed fetch may survive (each new
attempt finds the temporary file empty, and none is left after a stop),
the node stays up (a joiner waits up to 60 s for its image before it
serves), its database file holds no user table; once the peer turns
honest, the same process installs the leader's image (in chunks that fit
its -max-msg-bytes of 64 KiB, below the image's size), serves, holds
exactly the leader's rows, applies later writes and stops cleanly."""
import os
import sqlite3
import sys
import threading
import time
import zlib
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlnetns  # noqa: E402
from rltest import BUILD, check, fail, log, main, scratch  # noqa: E402

PROXY_PORT = 7100
JOINER_MAX_MSG = 65536
Q = ("SELECT (SELECT count(*) FROM t), (SELECT sum(length(b)) FROM t), "
     "(SELECT group_concat(v) FROM (SELECT v FROM t ORDER BY id))")


class Hostile:
    """The man in the middle: a generic gRPC handler (requests and
    responses stay bytes) in front of the real leader."""

    def __init__(self, grpc, pb, upstream):
        self.grpc, self.pb = grpc, pb
        self.ch = grpc.insecure_channel(upstream)
        self.lock = threading.Lock()
        self.honest = False
        self.variants = []  # (name, fn(chunks) -> iterable of bytes)
        self.served = []    # (name, size of the joiner's image.tmp)
        self.tmp = None     # the joiner's temporary image file

    # -- the generic handler
    def service(self, details):
        g, m = self.grpc, details.method
        if m.endswith("/FetchImage"):
            return g.unary_stream_rpc_method_handler(
                lambda req, ctx: self.fetch(m, req, ctx))
        if m.endswith("/ForwardTxn"):
            return g.stream_unary_rpc_method_handler(
                lambda it, ctx: self.pass_on(
                    lambda t: self.ch.stream_unary(m)(it, timeout=t), ctx))
        return g.unary_unary_rpc_method_handler(
            lambda req, ctx: self.pass_on(
                lambda t: self.ch.unary_unary(m)(req, timeout=t), ctx))

    def pass_on(self, call, ctx):
        try:
            return call(ctx.time_remaining() or 30)
        except self.grpc.RpcError as e:
            ctx.abort(e.code(), e.details() or "")

    def chunks(self, name="@image"):
        """The leader's honest answer, in chunks of 16 KiB."""
        return [c.SerializeToString() for c in self.ch.unary_stream(
            "/proto.RaftliteInternal/FetchImage",
            request_serializer=self.pb.FetchImageRequest.SerializeToString,
            response_deserializer=self.pb.ImageChunk.FromString)(
                self.pb.FetchImageRequest(name=name, chunk_bytes=16384),
                timeout=30)]

    def fetch(self, m, req, ctx):
        r = self.pb.FetchImageRequest.FromString(req)
        with self.lock:
            honest = self.honest or r.name != "@image" or r.length != 0
            if not honest:
                name, fn = (self.variants.pop(0) if self.variants else
                            ("refuse", None))
                size = (os.path.getsize(self.tmp)
                        if os.path.exists(self.tmp) else None)
                self.served.append((name, size))
        if honest:
            try:
                for c in self.ch.unary_stream(m)(
                        req, timeout=ctx.time_remaining() or 30):
                    yield c
            except self.grpc.RpcError as e:
                ctx.abort(e.code(), e.details() or "")
            return
        if fn is None:
            ctx.abort(self.grpc.StatusCode.UNAVAILABLE,
                      "hostile peer: no image for you")
        for c in fn(self, ctx):
            yield c


def parse(pb, raw):
    return [pb.ImageChunk.FromString(c) for c in raw]


def ser(cs):
    return [c.SerializeToString() for c in cs]


def fix_crc(cs):
    """Recomputes every chunk and stream CRC-32 (the lie is elsewhere)."""
    s = 0
    for c in cs:
        c.crc32 = zlib.crc32(c.data)
        s = zlib.crc32(c.data, s)
        if c.last:
            c.stream_crc32 = s
    return cs


def v_garbage(h, ctx):
    return [b"\xff\xfe not an ImageChunk \x00\x01"]


def v_truncated(h, ctx):
    raw = h.chunks()
    return raw[:len(raw) // 2]


def v_oversize(h, ctx):
    cs = parse(h.pb, h.chunks())
    cs[0].total_size = len(cs[0].data) - 1
    return ser(cs)


def v_out_of_order(h, ctx):
    raw = h.chunks()
    return [raw[0], raw[2]] + raw[3:]


def v_bad_crc(h, ctx):
    cs = parse(h.pb, h.chunks())
    cs[1].crc32 ^= 1
    return ser(cs)


def v_lying_total(h, ctx):
    cs = parse(h.pb, h.chunks())
    for c in cs:
        c.total_size += 4096
    return ser(cs)


def v_stream_crc(h, ctx):
    cs = parse(h.pb, h.chunks())
    cs[-1].stream_crc32 ^= 1
    return ser(cs)


def v_wrong_name(h, ctx):
    return h.chunks("sqlite.db")


def v_corrupt_page(h, ctx):
    cs = parse(h.pb, h.chunks())
    mid = cs[len(cs) // 2]
    d = bytearray(mid.data)
    d[len(d) // 2] ^= 0x55
    mid.data = bytes(d)
    return ser(fix_crc(cs))


def v_endless(h, ctx):
    raw = h.chunks()
    first = h.pb.ImageChunk.FromString(raw[0])
    yield raw[0]
    empty = h.pb.ImageChunk(offset=len(first.data), crc32=zlib.crc32(b""),
                            total_size=first.total_size).SerializeToString()
    for _ in range(100000):  # "forever": the joiner stops at the first
        if not ctx.is_active():
            return
        yield empty


def v_after_last(h, ctx):
    raw = h.chunks()
    cs = parse(h.pb, raw)
    extra = h.pb.ImageChunk(offset=cs[-1].offset + len(cs[-1].data),
                            data=b"x", crc32=zlib.crc32(b"x"),
                            total_size=cs[0].total_size, last=True)
    return raw + [extra.SerializeToString()]


def v_huge(h, ctx):
    data = b"\0" * (1 << 20)  # over the joiner's message limit
    return [h.pb.ImageChunk(offset=0, data=data, crc32=zlib.crc32(data),
                            total_size=len(data)).SerializeToString()]


def v_abort(h, ctx):
    raw = h.chunks()
    yield raw[0]
    yield raw[1]
    ctx.abort(h.grpc.StatusCode.INTERNAL, "hostile peer broke off")


VARIANTS = [
    ("garbage", v_garbage, "is not a valid ImageChunk"),
    ("truncated", v_truncated, "without its last chunk"),
    ("oversize", v_oversize, "more bytes than the stated total"),
    ("out-of-order", v_out_of_order, "expected"),
    ("bad-crc", v_bad_crc, "fails its CRC-32"),
    ("lying-total", v_lying_total, "is not the image's"),
    ("stream-crc", v_stream_crc, "fails its stream CRC-32"),
    ("wrong-name", v_wrong_name, "not a raftlite database image"),
    ("corrupt-page", v_corrupt_page, "pages checksum mismatch"),
    ("endless", v_endless, "an empty chunk"),
    ("after-last", v_after_last, "a chunk after the last one"),
    ("huge", v_huge, "raftd -max-msg-bytes raises it"),
    ("abort", v_abort, "hostile peer broke off"),
]


def test():
    net = rlnetns.Net(2)
    net.enter()  # before any gRPC thread exists
    import grpc
    from rlgrpc import project_stubs
    pb, pbg = project_stubs()
    raftd = os.path.join(BUILD, "raftd")
    data = scratch("rlhostile-")

    # The leader's database holds data before it becomes a node: the
    # joiner has no log to replay and must fetch the image.
    os.makedirs(os.path.join(data, "n1"))
    db = sqlite3.connect(os.path.join(data, "n1", "sqlite.db"))
    db.executescript(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);"
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
        "WHERE x < 30) INSERT INTO t(v, b) SELECT 'row ' || x, "
        "randomblob(2000 + x * 100) FROM c;")
    db.commit()
    db.close()
    a = rlnetns.NsNode(raftd, net.nodes[0], net.ips[0], "n1", data)
    a.start().wait_serving(30)
    sa = pbg.DistributedSqliteStub(grpc.insecure_channel(a.grpc))
    want = sa.ExecuteRead(pb.ReadRequest(sql=Q), timeout=30)
    check(not want.error and bytes(want.result.rows[0].values[0]) == b"30",
          "leader rows: %r" % want)

    hostile = Hostile(grpc, pb, a.grpc)
    hostile.variants = [(n, f) for n, f, _ in VARIANTS]
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                      handlers=[hostile])
    check(srv.add_insecure_port("%s.1:%d" % (rlnetns.SUBNET, PROXY_PORT)),
          "hostile server port")
    srv.start()
    # In the joiner's namespace, the leader's gRPC address leads to us.
    rules = ("table ip rlhostile {\n chain out { type nat hook output "
             "priority -100; policy accept; ip daddr %s tcp dport %d "
             "dnat to %s.1:%d; }\n}\n" % (net.ips[0], a.GRPC_PORT,
                                         rlnetns.SUBNET, PROXY_PORT))
    rlnetns.sh("ip", "netns", "exec", net.nodes[1], "nft", "-f", "-",
               input=rules)

    c = rlnetns.NsNode(raftd, net.nodes[1], net.ips[1], "n2", data,
                       join=a.grpc)
    # A message limit below the image (and the leader's 1 MiB chunks): an
    # honest fetch must ask for chunks this node can receive.
    c.argv += ["-max-msg-bytes", str(JOINER_MAX_MSG)]
    hostile.tmp = os.path.join(data, "n2", "sqlite.db-raft", "image.tmp")
    c.start()  # it serves once it has caught up: not before the image

    # Every lie is told once, in order, and each fetch fails naming it.
    deadline = time.time() + 40
    while time.time() < deadline:
        with hostile.lock:
            done = len(hostile.served) > len(VARIANTS) + 1
        if done or not c.running():
            break
        time.sleep(0.1)
    check(c.running(), "the joiner died facing the hostile peer:\n%s" %
          c.log()[-4000:])
    with hostile.lock:
        served = list(hostile.served)
    check(len(served) > len(VARIANTS) + 1,
          "the joiner asked for %d images, want more than %d: %r\n%s" %
          (len(served), len(VARIANTS) + 1, served, c.log()[-4000:]))
    text = c.log()
    fails = [ln for ln in text.splitlines()
             if "database needs an image" in ln and "(retrying)" in ln and
             a.grpc in ln]
    for i, (name, _, needle) in enumerate(VARIANTS):
        check(served[i][0] == name, "attempt %d served %r" % (i, served[i]))
        # Each attempt finds the temporary file just created: empty.
        check(served[i][1] == 0,
              "attempt %d (%s): image.tmp holds %r bytes of an earlier "
              "fetch" % (i, name, served[i][1]))
        check(i < len(fails) and needle in fails[i],
              "fetch %d (%s) should fail naming %r, the log says: %s" %
              (i, name, needle, fails[i] if i < len(fails) else "nothing"))
        log("%-13s -> %s" % (name, fails[i].split(": ", 3)[-1][:110]))
    check("installed a database image" not in text,
          "an image from the hostile peer was installed:\n%s" % text[-3000:])
    # Nothing half-fetched reached the database file: no user table.
    ro = sqlite3.connect("file:%s?immutable=1" % c.db, uri=True)
    check(ro.execute("PRAGMA integrity_check").fetchone()[0] == "ok",
          "joiner database integrity")
    tables = ro.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
    ro.close()
    check(tables == 0, "the joiner's database holds %d schema rows" % tables)

    # The peer turns honest: the same node, still joining, installs the
    # leader's image, finishes its join and serves.
    with hostile.lock:
        hostile.honest = True
    c.wait_serving(60)
    sc = pbg.DistributedSqliteStub(grpc.insecure_channel(c.grpc))
    deadline = time.time() + 60
    got = None
    while time.time() < deadline:
        r = sc.ExecuteRead(pb.ReadRequest(sql=Q), timeout=30)
        if not r.error and r.result.rows and \
                list(r.result.rows[0].values) == list(want.result.rows[0]
                                                      .values):
            got = r
            break
        time.sleep(0.2)
    check(got is not None, "the joiner never showed the leader's rows:\n%s" %
          c.log()[-3000:])
    check("installed a database image" in c.log(),
          "no image install in the joiner's log")
    check(not os.path.exists(hostile.tmp), "image.tmp left after install")
    ic = sc.ExecuteRead(pb.ReadRequest(sql="PRAGMA integrity_check"),
                        timeout=30)
    check(not ic.error and bytes(ic.result.rows[0].values[0]) == b"ok",
          "joiner integrity_check: %r" % ic)
    w = sa.ExecuteWrite(pb.WriteRequest(
        sql="INSERT INTO t(v) VALUES ('after')"), timeout=30)
    check(w.success, "write after the join: %r" % w)
    deadline = time.time() + 30
    while time.time() < deadline:
        r = sc.ExecuteRead(pb.ReadRequest(
            sql="SELECT count(*) FROM t WHERE v = 'after'"), timeout=30)
        if not r.error and bytes(r.result.rows[0].values[0]) == b"1":
            break
        time.sleep(0.1)
    else:
        fail("the write after the join never reached the joiner")
    log("joiner refused %d lies, stayed up, then installed the honest "
        "image" % len(VARIANTS))
    check(c.stop() == 0, "joiner stop")
    check(a.stop() == 0, "leader stop")
    srv.stop(0)


main(test)
