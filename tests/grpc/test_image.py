# budget: 60
# asan: yes
"""FetchImage "@image" end to end through a real raftd: a Python gRPC
client streams the consistent image of raftd's replicated database and
checks the chunk framing (offsets, per-chunk CRC-32, total size, last flag,
stream CRC-32), the image header (magic, version, page size, page count,
index, header CRC-32C) and trailer (CRC-32C of the pages); the pages, saved
as a file, must open as an SQLite database that passes integrity_check and
holds exactly the rows raftd's database holds. An image below min_index,
an offset into the image, and a database that is not replicated are
refused with the documented status codes."""
import os
import sqlite3
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlgrpc import *  # noqa: F401,F403
from rltest import crc32c  # noqa: F401
import grpc


def fetch(internal, pb, **kw):
    """Streams one image; checks the chunk framing; returns its bytes."""
    out = bytearray()
    scrc = 0
    chunks = list(internal.FetchImage(pb.FetchImageRequest(name="@image",
                                                           **kw),
                                      timeout=60 * SAN_SLOW))
    check(chunks, "no chunk")
    total = chunks[0].total_size
    for i, c in enumerate(chunks):
        check(c.offset == len(out), "chunk %d at %d, want %d" %
              (i, c.offset, len(out)))
        check(zlib.crc32(c.data) == c.crc32, "chunk %d CRC-32" % i)
        check(c.total_size == total, "chunk %d total_size changed" % i)
        check(c.last == (i == len(chunks) - 1), "chunk %d last flag" % i)
        out += c.data
        scrc = zlib.crc32(c.data, scrc)
    check(len(out) == total, "got %d bytes of %d" % (len(out), total))
    check(chunks[-1].stream_crc32 == scrc, "stream CRC-32")
    return bytes(out), len(chunks)


def parse(img):
    """Checks header and trailer; returns (index, page_size, pages)."""
    check(len(img) >= 64, "image of %d bytes" % len(img))
    hdr = img[:48]
    check(hdr[:8] == b"RLIMAGE\0", "magic %r" % hdr[:8])
    version, ps, n, flags, index, r1, r2, hcrc = struct.unpack(
        "<IIIIQQII", hdr[8:])
    check(version == 1 and flags == 0 and r1 == 0 and r2 == 0,
          "version/reserved: %r" % ((version, flags, r1, r2),))
    check(hcrc == crc32c(hdr[:44]), "header CRC-32C")
    check(ps in [1 << k for k in range(9, 17)], "page size %d" % ps)
    check(len(img) == 48 + n * ps + 16, "size %d for %d pages of %d" %
          (len(img), n, ps))
    body = img[48:48 + n * ps]
    tr = img[48 + n * ps:]
    check(tr[:8] == b"RLIMGEND", "trailer magic")
    bcrc, n2 = struct.unpack("<II", tr[8:])
    check(n2 == n, "trailer page count")
    check(bcrc == crc32c(body), "pages CRC-32C")
    check(body[:16] == b"SQLite format 3\0", "page 1 header")
    return index, ps, n, body


def rows(path):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        r = (db.execute("PRAGMA integrity_check").fetchone()[0],
             db.execute("SELECT id, v, length(b), hex(substr(b, 1, 64)), "
                        "hex(substr(b, -64)) FROM t ORDER BY id").fetchall(),
             db.execute("SELECT count(*), sum(n) FROM u").fetchone())
    finally:
        db.close()
    return r


def test():
    pb, pbg = project_stubs()
    data = scratch("rlimage-")
    # A replicated database: "<db>-raft/" beside it before raftd opens it.
    os.makedirs(os.path.join(data, "n1", "sqlite.db-raft"))
    d = Raftd(data=data)
    ch = channel(d.addr)
    s = pbg.DistributedSqliteStub(ch)
    internal = pbg.RaftliteInternalStub(ch)
    T = 60 * SAN_SLOW

    sqls = ["CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)",
            "CREATE TABLE u(n INT)",
            "CREATE INDEX u_n ON u(n)"]
    for i in range(30):
        sqls.append("INSERT INTO t(v, b) VALUES ('row %d', randomblob(%d))"
                    % (i, 1000 + i * 7000))
        sqls.append("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 "
                    "FROM c WHERE x < 200) INSERT INTO u SELECT x + %d FROM c"
                    % i)
    for q in sqls:
        w = s.ExecuteWrite(pb.WriteRequest(sql=q), timeout=T)
        check(w.success, "%s: %r" % (q, w))

    img, nchunks = fetch(internal, pb, chunk_bytes=65536)
    index, ps, n, body = parse(img)
    check(nchunks > 10, "only %d chunks for %d bytes" % (nchunks, len(img)))
    log("image: index %d, %d pages of %d bytes, %d chunks" %
        (index, n, ps, nchunks))

    # The pages are the database: open them as one.
    copy = os.path.join(scratch("rlimage-copy-"), "copy.db")
    with open(copy, "wb") as f:
        f.write(body)
    got = rows(copy)
    check(got[0] == "ok", "integrity_check of the image: %r" % got[0])
    check(len(got[1]) == 30 and got[2][0] == 30 * 200,
          "image rows: %d t, %r u" % (len(got[1]), got[2]))

    # The header alone (length 48): index and page size, no transfer.
    hc = list(internal.FetchImage(pb.FetchImageRequest(name="@image",
                                                       length=48),
                                  timeout=T))
    check(len(hc) == 1 and len(hc[0].data) == 48 and hc[0].last and
          hc[0].total_size == len(img) and hc[0].data == img[:48],
          "header-only fetch: %r" % [(len(c.data), c.last, c.total_size)
                                     for c in hc])

    # Refusals.
    expect_rpc_error(lambda: fetch(internal, pb, min_index=index + 1),
                     grpc.StatusCode.FAILED_PRECONDITION, "below",
                     "image below min_index")
    expect_rpc_error(lambda: fetch(internal, pb, offset=48),
                     grpc.StatusCode.INVALID_ARGUMENT, "offset",
                     "offset into the image")
    # Same index asked for: served.
    img2, _ = fetch(internal, pb, min_index=index)
    check(parse(img2)[0] == index, "second image index")
    ch.close()
    d.stop()

    # The image holds exactly what the database holds (nothing was
    # written after it).
    want = rows(d.db)
    check(got == want, "image content differs from the database")

    # A database that is not replicated has no image.
    d2 = Raftd(node="n2")
    ch2 = channel(d2.addr)
    internal2 = pbg.RaftliteInternalStub(ch2)
    expect_rpc_error(lambda: fetch(internal2, pb),
                     grpc.StatusCode.FAILED_PRECONDITION, "not a replicated",
                     "image of a plain database")
    ch2.close()
    d2.stop()


main(test)
