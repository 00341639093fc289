# budget: 120
# asan: yes
"""The shell hosting a node exits cleanly, with the shell's own exit
status, on `.exit`, `.exit N` (inside an open transaction too), end of
input, and Ctrl-D typed at an interactive prompt (a pseudo-terminal): it
exits promptly, its node stops (its Raft and gRPC ports are free again,
the leader sees it out of contact, and its file is not left hosted: a new
shell on it restarts the node with its stored identity), and a leader
that exits is replaced. The expected status of each script is the stock
shell's for the same script without the extension."""
import pty
import re
import threading
from rltest import *
from rlcluster import *

EXIT_LIMIT = 10.0  # seconds from the end of input to the exit


def stock_rc(script):
    """Exit status of the stock shell (no extension) on script."""
    d = scratch()
    r = subprocess.run([SQLITE3, "-batch", os.path.join(d, "plain.db")],
                       input=script, text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return r.returncode


def want_rc(node, tail):
    """The stock shell's status for this shell's input ending in tail: a
    failed statement earlier in its input (e.g. a poll that met "no such
    table" before the schema arrived) counts as the stock shell counts it."""
    return stock_rc(("SELECT no_such_function();\n" if node.sh.had_error
                     else "SELECT 1;\n") + tail)


def stopped(c, node):
    """The node's process is gone: ports free, the leader sees it out of
    contact, and a new shell on its file hosts it again."""
    for port in (node.raft_port, node.grpc_port):
        check(port_free(port), "%s: port %d still in use after the exit" %
              (node.name, port))
    rest = c.live()
    lead = c.leader(among=rest)
    deadline = time.time() + 15 * SLOW
    while True:
        row = [x for x in lead.nodes() if x["id"] == node.name]
        check(row, "%s missing from raft_nodes" % node.name)
        if row[0]["last_contact"] == "0":
            break
        if time.time() > deadline:
            fail("leader %s still reports contact with exited %s: %s" %
                 (lead.name, node.name, row))
        time.sleep(0.2)
    # Restart: not a client of a dead host, the node itself.
    node.restart()
    st = node.status()
    check_eq(st["id"], node.name, "restarted identity")
    check(st["state"] in ("follower", "leader"), "restarted %s is %s" %
          (node.name, st))
    lead.sql("INSERT INTO e(v) VALUES ('after %s restart');" % node.name)
    c.wait_all("SELECT count(*) FROM e;", lead.val("SELECT count(*) FROM e;"))


def timed_exit(node, how):
    t0 = time.time()
    rc = node.exit(how, timeout=60)
    dt = time.time() - t0
    log("%s: %r -> exit %d in %.2fs" % (node.name, how, rc, dt))
    if rc not in (0, 1, 3) and getattr(node, "exit_output", ""):
        log("%s printed last:\n%s" % (node.name, node.exit_output))
    check(dt <= EXIT_LIMIT * SLOW, "%s: exit took %.1fs after %r" %
          (node.name, dt, how))
    return rc


def ctrl_d(node):
    """Runs a shell on node's file in a pseudo-terminal (interactive, with
    readline), types a query, then Ctrl-D at the prompt."""
    master, slave = pty.openpty()
    p = spawn([SQLITE3], env=san_env({}), stdin=slave, stdout=slave,
              stderr=slave)
    os.close(slave)
    buf = []

    def reader():
        while True:
            try:
                b = os.read(master, 4096)
            except OSError:
                return
            if not b:
                return
            buf.append(b.decode(errors="replace"))

    th = threading.Thread(target=reader, daemon=True)
    th.start()

    def typed(line, n, timeout=60):
        """Types line, then a query whose answer (mkN) is not in its echo."""
        os.write(master, ("%s\rSELECT 'mk' || %d;\r" % (line, n)).encode())
        deadline = time.time() + timeout * SLOW
        while "mk%d" % n not in "".join(buf):
            if time.time() > deadline or p.poll() is not None:
                fail("pty shell: no answer after %r; screen:\n%s" %
                     (line, "".join(buf)[-2000:]))
            time.sleep(0.05)

    typed(".load %s" % EXT, 1)
    typed(".open '%s'" % node.db, 2)
    typed("SELECT 'pty' || count(*) FROM e;", 3)
    screen = "".join(buf)
    check("rror" not in screen and re.search(r"pty\d", screen),
          "pty shell: %s" % screen)
    time.sleep(0.2)
    t0 = time.time()
    os.write(master, b"\x04")
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        fail("pty shell did not exit on Ctrl-D:\n%s" % "".join(buf)[-2000:])
    dt = time.time() - t0
    th.join(timeout=5)
    os.close(master)
    screen = "".join(buf)
    if lsan_tracer_crashed(rc, screen):
        # No check ran, nothing was reported; the shell itself exited as
        # asked.
        log("%s: LeakSanitizer could not run at exit (tracer crash)" %
            node.name)
        rc = 0
    log("%s: Ctrl-D -> exit %d in %.2fs" % (node.name, rc, dt))
    check(dt <= EXIT_LIMIT * SLOW, "Ctrl-D exit took %.1fs" % dt)
    return rc


def test():
    c = Cluster(3)
    lead = c.seed("CREATE TABLE e(id INTEGER PRIMARY KEY, v TEXT);"
                  "INSERT INTO e(v) VALUES ('first');",
                  "SELECT count(*) FROM e;", "1")
    f1, f2 = [n for n in c.nodes if n is not lead]

    # .exit on a follower.
    check_eq(timed_exit(f1, ".exit"), want_rc(f1, ".exit\n"), ".exit status")
    stopped(c, f1)

    # End of input after an error: the shell's status for that (1).
    f1.try_sql("SELECT no_such_function();")
    check_eq(timed_exit(f1, "eof"), stock_rc("SELECT no_such_function();\n"),
             "exit status at end of input after an error")
    stopped(c, f1)
    # End of input, no error.
    check_eq(timed_exit(f1, "eof"), want_rc(f1, ""),
             "exit status at end of input")
    stopped(c, f1)

    # Ctrl-D at an interactive prompt (a new shell hosting f2's node).
    check_eq(f2.exit(".exit"), 0, "exit status")  # the harness's shell
    rc = ctrl_d(f2)
    check_eq(rc, 0, "exit status after Ctrl-D")
    stopped(c, f2)

    # .exit 3 on the leader inside an open write transaction: status 3,
    # promptly; the transaction's row is nowhere; another node leads.
    old = c.leader()
    old.sql("BEGIN; INSERT INTO e(v) VALUES ('open txn');")
    check_eq(timed_exit(old, ".exit 3"),
             want_rc(old, "BEGIN;\nSELECT 1;\n.exit 3\n"), ".exit 3 status")
    t0 = time.time()
    new, _ = c.write("INSERT INTO e(v) VALUES ('after leader exit');")
    log("new leader %s %.1fs after the leader's exit" % (new.name,
                                                          time.time() - t0))
    check(new is not old, "the exited leader took a write")
    stopped(c, old)
    for n in c.live():
        check_eq(n.val("SELECT count(*) FROM e WHERE v = 'open txn';"), "0",
                 "%s: row of the transaction open at .exit" % n.name)

    # The (new) leader exits with .exit.
    old = c.leader()
    want = want_rc(old, ".exit\n")
    check_eq(timed_exit(old, ".exit"), want, "leader's .exit status")
    c.write("INSERT INTO e(v) VALUES ('after second leader exit');")
    stopped(c, old)
    c.wait_converged()
    c.close()


main(test)
