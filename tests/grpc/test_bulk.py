# budget: 90
# asan: yes
"""Payloads far over the 4 MiB message limit pass the internal service in
chunks: a 50 MB forwarded transaction (ForwardTxn, client streaming) and a
1 GB database image (FetchImage, server streaming), each checked byte for
byte by CRC-32 and length."""
import os
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlgrpc import *  # noqa: F401,F403


def test():
    pb, pbg = project_stubs()
    d, ch, s, internal = standalone(pbg)
    T = 120 * SAN_SLOW

    # 50 MB transaction in 1 MiB chunks.
    size = 50 * 1000 * 1000
    block = os.urandom(1 << 20)
    crc = 0
    sent = 0

    def chunks():
        nonlocal crc, sent
        off = 0
        while off < size:
            part = block[:min(len(block), size - off)]
            crc = zlib.crc32(part, crc)
            sent += len(part)
            yield pb.TxnChunk(offset=off, total_length=size if off == 0
                              else 0, data=part,
                              last=off + len(part) >= size)
            off += len(part)
    t0 = time.time()
    r = internal.ForwardTxn(chunks(), timeout=T)
    check(r.success and r.received_bytes == size == sent and r.crc32 == crc,
          "50 MB ForwardTxn: %r (sent %d, crc %d)" % (r, sent, crc))
    log("50 MB ForwardTxn in %.1fs" % (time.time() - t0))

    # 1 GB image: the node's database grown (sparse) to 1 GiB + 4 KiB
    # with a real page header at the start and data at the end.
    w = s.ExecuteWrite(pb.WriteRequest(sql="CREATE TABLE t(x); INSERT INTO t "
                                       "VALUES (randomblob(5000))"),
                       timeout=T)
    check(w.success, "setup: %r" % w)
    gib = (1 << 30) + 4096
    with open(d.db, "r+b") as f:
        f.truncate(gib)
        f.seek(gib - len(block))
        f.write(block)
    with open(d.db, "rb") as f:
        want_crc = 0
        while True:
            b = f.read(8 << 20)
            if not b:
                break
            want_crc = zlib.crc32(b, want_crc)
    t0 = time.time()
    got = 0
    got_crc = 0
    n = 0
    last = None
    for c in internal.FetchImage(pb.FetchImageRequest(name="sqlite.db"),
                                 timeout=T):
        check(c.offset == got, "chunk %d at offset %d, want %d" %
              (n, c.offset, got))
        check(zlib.crc32(c.data) == c.crc32, "chunk %d CRC" % n)
        got += len(c.data)
        got_crc = zlib.crc32(c.data, got_crc)
        n += 1
        last = c
    dt = time.time() - t0
    check(got == gib and last.last and last.total_size == gib and
          got_crc == want_crc and last.stream_crc32 == want_crc,
          "1 GiB image: %d bytes in %d chunks" % (got, n))
    log("FetchImage 1 GiB in %d chunks, %.1fs (%.0f MB/s)" %
        (n, dt, gib / dt / 1e6))
    # A small chunk size is honoured; an oversized one is capped.
    cs = list(internal.FetchImage(pb.FetchImageRequest(length=10000,
                                                       chunk_bytes=4096),
                                  timeout=T))
    check([len(c.data) for c in cs] == [4096, 4096, 1808], "chunk_bytes")
    cs = list(internal.FetchImage(pb.FetchImageRequest(
        length=9 << 20, chunk_bytes=64 << 20), timeout=T))
    check(all(len(c.data) < 4 << 20 for c in cs) and
          sum(len(c.data) for c in cs) == 9 << 20,
          "chunk_bytes over the limit is capped")
    ch.close()
    d.stop()


main(test)
