#!/usr/bin/python3
# budget: 90
"""tests/poc/test_readme.py -- README.md's quickstart, run as written.

The section from "## Quickstart" to the next "## " heading: every fenced
`sh` block in order, in a scratch directory where `build` links to this
build and `demo` to the tree's demo/, with every port number (4 or 5
digits after a ':') replaced by a free port below 32768 -- the same number
always by the same port, in commands and expected outputs alike. A line
starting with `./build/raftd` runs in the background (a terminal of its
own) and is done once it prints `serving gRPC`; the rest of a block runs
in bash. If a `text` block follows a `sh` block, the block's output
(stdout and stderr together) must equal it line by line, `...` standing
for any text within a line; otherwise the block must exit 0. Finally each
node gets SIGINT (must exit 0), is started again with the same command and
must resume its node, and the -nodes command of the quickstart must list
the same members again, one of them leader, within 15 s.
"""
import os
import re
import shlex
import signal
import subprocess
import time

from rlpoc import (BUILD, ROOT, SLOW, PortMap, Raftd, check, fail, log,
                   restart_all, scratch)

README = os.path.join(ROOT, "README.md")


def quickstart():
    """[(sh block text, expected text or None)] of the quickstart."""
    with open(README) as f:
        text = f.read()
    m = re.search(r"^## Quickstart.*?(?=^## )", text, re.M | re.S)
    check(m, "README.md has no '## Quickstart' section")
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", m.group(0), re.M | re.S)
    out = []
    for lang, body in blocks:
        if lang == "sh":
            out.append([body, None])
        elif lang == "text":
            check(out and out[-1][1] is None,
                  "a text block without its sh block: %r" % body[:200])
            out[-1][1] = body
        else:
            fail("quickstart block of unknown kind %r: %r" % (lang,
                                                               body[:200]))
    check(len(out) >= 5, "quickstart blocks: %r" % out)
    return out


def matches(got, want):
    """Line-by-line equality, '...' in want matching any text."""
    g, w = got.rstrip("\n").split("\n"), want.rstrip("\n").split("\n")
    if len(g) != len(w):
        return False
    for a, b in zip(g, w):
        pat = ".*".join(re.escape(x) for x in b.split("..."))
        if not re.fullmatch(pat, a):
            return False
    return True


def same_members(got, want):
    """-nodes output: the same rows but for is_leader (the last field; any
    node may lead after a restart), and exactly one leader."""
    g, w = got.rstrip("\n").split("\n"), want.rstrip("\n").split("\n")
    strip = [x.rsplit("|", 1)[0] for x in g]
    return (strip == [x.rsplit("|", 1)[0] for x in w] and
            [x.rsplit("|", 1)[1] for x in g[1:]].count("1") == 1)


def test():
    d = scratch("rlreadme-")
    os.symlink(BUILD, os.path.join(d, "build"))
    os.symlink(os.path.join(ROOT, "demo"), os.path.join(d, "demo"))
    env = dict(os.environ, PATH="/usr/bin:/bin:" + os.environ["PATH"])
    ports = PortMap()
    logdir = scratch("rlreadmelog-")
    servers = []
    nodes_cmd = None
    for body, want in quickstart():
        body = ports.sub(body)
        want = ports.sub(want) if want is not None else None
        rest = []
        for line in body.split("\n"):
            if line.startswith("./build/raftd "):
                if rest:
                    run(d, env, "\n".join(rest), None)
                    rest = []
                log("$ %s &" % line)
                argv = shlex.split(line)
                servers.append(Raftd(argv, d, "raftd%d" % len(servers),
                                     logdir=logdir, as_written=True)
                               .wait_serving())
            else:
                rest.append(line)
        if "".join(rest).strip():
            run(d, env, "\n".join(rest), want)
            if " -nodes" in body:
                nodes_cmd = ("\n".join(rest), want)
    check(len(servers) == 3, "three raftd commands: %d" % len(servers))
    check(nodes_cmd, "the quickstart shows -nodes")

    # Ctrl-C stops a node cleanly; the same command resumes it.
    restart_all(servers, signal.SIGINT)
    # Members are known by id once the restarted nodes elected a leader
    # and applied their log again (a moment): poll for the same members
    # with one leader (not necessarily node1).
    t0 = time.time()
    while True:
        r = subprocess.run(["/bin/bash", "-c", nodes_cmd[0]], cwd=d, env=env,
                           capture_output=True, text=True, timeout=60)
        if r.returncode == 0 and same_members(r.stdout, nodes_cmd[1]):
            break
        if time.time() - t0 > 15 * SLOW:
            fail("after the restart -nodes answers\n%s%s\nwant\n%s" % (
                r.stdout, r.stderr, nodes_cmd[1]))
        time.sleep(0.2)
    log("SIGINT and the same commands again: resumed; -nodes lists the "
        "members after %.1fs:\n%s" % (time.time() - t0, r.stdout))
    for n in servers:
        n.stop(signal.SIGINT)


def run(cwd, env, script, want):
    for line in script.strip("\n").split("\n"):
        log("$ " + line)
    r = subprocess.run(["/bin/bash", "-c", script], cwd=cwd, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, text=True, timeout=120)
    log(r.stdout.rstrip("\n"))
    if want is None:
        check(r.returncode == 0, "exit %d from:\n%s\n%s" % (
            r.returncode, script, r.stdout))
    else:
        check(matches(r.stdout, want), "output of\n%s\nis\n%s\nwant\n%s" % (
            script, r.stdout, want))


if __name__ == "__main__":
    from rltest import main
    main(test)
