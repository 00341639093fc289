"""tests/fuzz/seed_cluster_req.py [DIR] -- writes the committed seed corpus
of build/fuzz/fuzz_cluster_req (tests/fuzz/seeds/fuzz_cluster_req): one
valid request of each method, framed as the target reads its input
([selector][2-byte length][request][rest]), with a cluster configuration
for Join and a message limit and file size for FetchImage. The protobuf
encoding is written out by hand (field tags and varints) so that the
script needs nothing outside the repository. Not a test; run it again
after a change of the target's input format."""
import os
import struct
import sys

METHODS = ["Join", "Remove", "Transfer", "Leader", "Nodes", "Status",
           "ReadIndex", "ExecuteRead", "FetchImage"]


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def s(field, text):
    b = text.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b


def u(field, n):
    return varint(field << 3) + varint(n)


def frame(method, req, rest=b""):
    return bytes([METHODS.index(method)]) + struct.pack("<H", len(req)) + \
        req + rest


SEEDS = {
    "join": frame("Join", s(1, "n3") + s(2, "127.0.0.1:7003") +
                  s(3, "127.0.0.1:50053"),
                  bytes([0x00, 0x03, 0x00, 0x03, 0x02, 0x05, 0x05, 0x05])),
    "join-again": frame("Join", s(1, "n3") + s(2, "127.0.0.1:7003"),
                        bytes([0x01, 0x0b, 0x05, 0x05])),
    "remove": frame("Remove", s(1, "n2")),
    "transfer": frame("Transfer", s(1, "n1")),
    "transfer-any": frame("Transfer", b""),
    "leader": frame("Leader", b""),
    "nodes": frame("Nodes", b""),
    "status": frame("Status", b""),
    "readindex": frame("ReadIndex", b""),
    "read-strong": frame("ExecuteRead", s(1, "SELECT 1") + u(2, 2)),
    "fetch-image": frame("FetchImage", s(1, "@image") + u(5, 7),
                         bytes([0, 0, 0x40, 0, 0, 0x10, 0])),
    "fetch-probe": frame("FetchImage", s(1, "@image") + u(3, 48)),
    "fetch-file": frame("FetchImage", s(1, "sqlite.db") + u(2, 10) +
                        u(3, 100) + u(4, 4096),
                        bytes([0, 0x10, 0, 0, 0x20, 0, 0])),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else \
        os.path.join(here, "seeds", "fuzz_cluster_req")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


main()
