# budget: 60
# asan: yes
"""A host's local door (raftd/host/door.c): the Unix socket
<db>-raft/door through which the client processes of its machine commit,
ask and read, spoken to here byte by byte as a hostile local process
would.

- The door is a socket of mode 0600 in the 0700 <db>-raft directory, and
  greets each connection OK; a client process's writes go through it
  (raft_status local_calls), not through gRPC.
- Bad input closes the connection and changes nothing: a wrong magic, a
  kind that is no request, a body over the limit, a HINT asking to wait 0
  ms, a COMMIT cut short (the peer leaves mid-body). A COMMIT whose
  transaction is malformed is answered "not applied", naming it
  malformed; no row appears anywhere. The door serves the next
  connection each time (HINT and READ answered with indexes). A READ of
  the wrong length closes the connection too, as do bytes sent after a
  request before its answer; one that arrives in three
  pieces is answered; READs on 8 connections at once are each answered
  and counted (read_points, local_calls: 8 each).
- 64 connections at once: the 65th is greeted FULL (a client then uses
  gRPC); once they close, a new one is greeted OK.
- A process of another user (its effective uid nobody) is greeted
  REFUSED, and the host names the refusal in its log.
- The door leaves with its host: after the hosting shell exits no door
  is left; kill -9 leaves a stale socket, which the next host replaces;
  a client process writes through the new door.
- A database whose door path is too long for a Unix socket (108 bytes)
  gets no door, says so, and its client processes write through gRPC.
"""
import ctypes
import os
import socket
import stat
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from rltest import Shell, check, check_eq, fail, is_error, log, main  # noqa
from rlcluster import Cluster, Node, SLOW  # noqa: E402

MAGIC = 0x31444C52
HELLO, COMMIT, HINT, READ, ANSWER = 1, 2, 3, 4, 5
OK, FULL, REFUSED = 0, 1, 2
NOT_APPLIED = 1


def hdr(kind, n):
    return struct.pack("<III", MAGIC, kind, n)


def recv_exact(s, n, timeout=10):
    s.settimeout(timeout * SLOW)
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            return None  # closed
        buf += b
    return buf


def connect(path):
    """A connection and its greeting's status."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    h = recv_exact(s, 16)
    check(h is not None, "the door greets a new connection")
    magic, kind, n, status = struct.unpack("<IIII", h)
    check_eq((magic, kind, n), (MAGIC, HELLO, 4), "a greeting's header")
    return s, status


def answer(s):
    h = recv_exact(s, 12, 20)
    check(h is not None, "an answer came")
    magic, kind, n = struct.unpack("<III", h)
    check_eq((magic, kind), (MAGIC, ANSWER), "an answer's header")
    body = recv_exact(s, n)
    status, index, L = struct.unpack("<IQQ", body[:20])
    return status, index, L, body[20:].decode()


def closed_by_door(s):
    """The door closed s (reads end) without answering."""
    s.settimeout(10 * SLOW)
    try:
        data = s.recv(64)
    except ConnectionResetError:
        data = b""
    check_eq(data, b"", "the door closed the connection without answering")
    s.close()


def serves(path):
    """A fresh connection gets HINT and READ answered."""
    s, st = connect(path)
    check_eq(st, OK, "greeting")
    s.sendall(hdr(HINT, 4) + struct.pack("<I", 1000))
    status, commit, L, text = answer(s)
    check_eq(status, 0, "HINT answered (%s)" % text)
    check(commit >= 1 and L >= 1, "HINT: commit %d, L %d" % (commit, L))
    s.sendall(hdr(READ, 4) + struct.pack("<I", 2000))
    status, index, _, text = answer(s)
    check_eq(status, 0, "READ answered (%s)" % text)
    check(index >= L, "READ's point %d >= the L %d answered before" %
          (index, L))
    s.close()


def wait_log(node, text, timeout=10):
    """Polls node's shell until its output (the host logs to it) shows
    text."""
    seen = ""
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        seen += node.sh.sql("SELECT 1;")
        if text in seen:
            return
        time.sleep(0.1)
    fail("the host never logged %r; it printed:\n%s" % (text, seen[-2000:]))


def refused_as_nobody(path):
    """Connects from a child whose effective uid is nobody (65534) and
    whose file-system uid stays root (to reach the 0700 directory): the
    greeting's status, or -1."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 100
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            os.seteuid(65534)
            libc.setfsuid(0)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.settimeout(10)
            h = b""
            while len(h) < 16:
                b = s.recv(16 - len(h))
                if not b:
                    break
                h += b
            code = struct.unpack("<IIII", h)[3] if len(h) == 16 else 101
        finally:
            os.write(w, bytes([code]))
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    return got[0] if got else -1


def test():
    c = Cluster(1)
    n = c.nodes[0]
    n.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
    door = n.db + "-raft/door"
    st = os.lstat(door)
    check(stat.S_ISSOCK(st.st_mode), "%s is a socket" % door)
    check_eq(stat.S_IMODE(st.st_mode), 0o600, "the door's mode")
    check_eq(stat.S_IMODE(os.stat(n.db + "-raft").st_mode), 0o700,
             "its directory's mode")

    # A client process writes through it.
    before = n.status()["local_calls"]
    cl = Shell(n.db, env=c.env)
    cl.sql_ok("INSERT INTO t(v) VALUES ('client 1'), ('client 2');")
    cl.sql_ok("INSERT INTO t(v) VALUES ('client 3');")
    check_eq(cl.sql_ok("SELECT count(*) FROM t;").strip(), "3",
             "the client reads its writes")
    check_eq(n.status()["local_calls"] - before, 2,
             "the client's two commits went through the door")
    cl.finish("client shell exit", 0)
    serves(door)

    # Bad input: the connection is closed, nothing changes.
    rows = n.val("SELECT count(*) FROM t;")
    cases = [
        ("a wrong magic", struct.pack("<III", 0x12345678, COMMIT, 4) +
         b"xxxx", "not a door message"),
        ("an ANSWER sent to the door", hdr(ANSWER, 20) + b"\0" * 20,
         "unexpected message kind 5"),
        ("a body over the limit", hdr(COMMIT, 0xFFFFFFF0),
         "message (at most"),
        ("a HINT to wait 0 ms", hdr(HINT, 4) + struct.pack("<I", 0),
         "a wait of 0 ms"),
        ("a COMMIT with no transaction", hdr(COMMIT, 16) + b"\0" * 16,
         "carries no transaction"),
        ("a READ of 8 bytes", hdr(READ, 8) + struct.pack("<II", 2000, 0),
         "a READ of 8 bytes (4 expected)"),
        ("a HINT of 0 bytes with 4 more after it", hdr(HINT, 0) + b"\0" * 4,
         "kind 3 and 0 bytes followed by 4 more before its answer"),
    ]
    for what, data, logged in cases:
        s, st = connect(door)
        check_eq(st, OK, "greeting")
        s.sendall(data)
        closed_by_door(s)
        wait_log(n, logged)
        log("%s: closed, the host logged %r" % (what, logged))
    # A READ that comes in pieces is answered all the same.
    s, _ = connect(door)
    req = hdr(READ, 4) + struct.pack("<I", 2000)
    for part in (req[:5], req[5:13], req[13:]):
        s.sendall(part)
        time.sleep(0.05)
    status, index, _, text = answer(s)
    check(status == 0 and index >= 1, "a READ sent in three pieces: status "
          "%d, index %d (%s)" % (status, index, text))
    s.close()
    # READs on 8 connections at once: each answered, each a read point.
    before = n.status()
    socks = [connect(door)[0] for _ in range(8)]
    for s in socks:
        s.sendall(req)
    for s in socks:
        status, index, _, text = answer(s)
        check(status == 0 and index >= 1, "one of 8 READs at once: status "
              "%d, index %d (%s)" % (status, index, text))
        s.close()
    after = n.status()
    check_eq(after["read_points"] - before["read_points"], 8,
             "read points for 8 READs at once")
    check_eq(after["local_calls"] - before["local_calls"], 8,
             "door requests for 8 READs at once")
    log("a READ in pieces answered; 8 READs at once: 8 read points in %d "
        "rounds" % (after["read_rounds"] - before["read_rounds"]))
    # A COMMIT cut short: the peer leaves mid-body.
    s, _ = connect(door)
    s.sendall(hdr(COMMIT, 1000) + b"\0" * 100)
    s.close()
    serves(door)
    # A malformed transaction is answered, never proposed.
    s, _ = connect(door)
    s.sendall(hdr(COMMIT, 16 + 12) + struct.pack("<QQ", 1, 1) +
              b"RLTXjunkjunk")
    status, index, _, text = answer(s)
    s.close()
    check_eq(status, NOT_APPLIED, "a malformed transaction: not applied")
    check("malformed" in text and index == 0,
          "its answer names it malformed: %r (index %d)" % (text, index))
    check_eq(n.val("SELECT count(*) FROM t;"), rows,
             "rows after the bad input")
    serves(door)

    # 64 connections at once; the 65th is greeted FULL.
    conns = []
    for _ in range(64):
        s, st = connect(door)
        check_eq(st, OK, "connection %d greeted OK" % (len(conns) + 1))
        conns.append(s)
    s, st = connect(door)
    check_eq(st, FULL, "the 65th connection's greeting")
    s.close()
    for s in conns:
        s.close()
    deadline = time.time() + 10 * SLOW
    while True:
        s, st = connect(door)
        s.close()
        if st == OK:
            break
        check(time.time() < deadline, "a new connection greeted OK once "
              "the 64 closed")
        time.sleep(0.05)
    log("64 connections served, the 65th greeted FULL")

    # Another user: refused.
    check_eq(refused_as_nobody(door), REFUSED,
             "a process of user nobody is greeted")
    wait_log(n, "refused a process of user 65534")

    # The door leaves with its host.
    n.exit(".exit")
    check(not os.path.exists(door), "no door after the host exited")
    n.restart()
    check(stat.S_ISSOCK(os.lstat(door).st_mode), "a restarted host's door")
    c.leader()
    n.kill9()
    check(os.path.exists(door), "kill -9 leaves the socket behind")
    n.restart()
    c.leader()
    cl = Shell(n.db, env=c.env)
    before = n.status()["local_calls"]
    cl.sql_ok("INSERT INTO t(v) VALUES ('after kill');")
    check_eq(n.status()["local_calls"] - before, 1,
             "a client writes through the next host's door")
    cl.finish("client shell exit", 0)
    check_eq(n.val("SELECT count(*) FROM t;"), str(int(rows) + 1),
             "rows at the end")
    c.close()

    # No door where the path is too long: the client uses gRPC.
    c2 = Cluster()
    name = "n" + "x" * max(1, 110 - len(os.path.join(c2.dir, ".db-raft/door")))
    node = Node(c2, name)
    c2.nodes.append(node)
    out = node.sh.sql("SELECT raft_bootstrap('%s', '%s', '%s');" %
                      (name, node.raft_addr, node.grpc_addr))
    check("no local door" in out and "client processes use gRPC" in out,
          "the host says it has no door: %r" % out[-500:])
    node.member = True
    node.sql("CREATE TABLE t(v);")
    door = node.db + "-raft/door"
    check(len(door) > 107 and not os.path.exists(door),
          "no door at a %d-byte path" % len(door))
    cl = Shell(node.db, env=c2.env)
    cl.sql_ok("INSERT INTO t VALUES ('through gRPC');")
    cl.finish("client shell exit", 0)
    check_eq(node.val("SELECT count(*) FROM t;"), "1", "the client's row")
    check_eq(node.status()["local_calls"], 0, "requests at a door")
    log("a %d-byte door path: no door, the client wrote through gRPC" %
        len(door))
    c2.close()


if __name__ == "__main__":
    main(test)
