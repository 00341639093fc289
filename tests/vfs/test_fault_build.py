# budget: 30
"""tests/vfs/test_fault_build.py -- fault points are absent from release
builds (issue #6).

The point names are read from the sources (every RL_FAULT("name") in vfs/,
raftd/ and their subfolders, and lib/), so a new point is checked without editing this test. The test
build build/fault/raftlite.so (-DRL_FAULTS) must hold every name and the
facility's RAFTLITE_FAULT variable; the release build build/raftlite.so
(and build/raftd) must hold none of them: there RL_FAULT() compiles to
nothing."""
import glob
import os
import re
import subprocess

from rltest import ROOT, check, fail, log, main


def strings(path):
    check(os.path.exists(path), "%s is not built" % path)
    out = subprocess.run(["strings", "-a", path], stdout=subprocess.PIPE,
                         check=True).stdout.decode("latin-1")
    return set(out.split())


def test():
    names = set()
    for src in glob.glob(os.path.join(ROOT, "vfs", "**", "*.c"),
                         recursive=True) + \
            glob.glob(os.path.join(ROOT, "raftd", "**", "*.c"),
                      recursive=True) + \
            glob.glob(os.path.join(ROOT, "lib", "*.c")):
        with open(src) as f:
            names |= set(re.findall(r'RL_FAULT\("([a-z0-9-]+)"\)', f.read()))
    check(len(names) >= 10, "only %d fault points found in the sources: %s"
          % (len(names), sorted(names)))
    log("%d fault points: %s" % (len(names), " ".join(sorted(names))))
    fault = strings(os.path.join(ROOT, "build", "fault", "raftlite.so"))
    missing = sorted(n for n in names | {"RAFTLITE_FAULT"} if n not in fault)
    check(not missing, "build/fault/raftlite.so lacks %s" % missing)
    for rel in ("build/raftlite.so", "build/raftd"):
        path = os.path.join(ROOT, rel)
        if rel == "build/raftd" and not os.path.exists(path):
            continue
        found = sorted(n for n in names | {"RAFTLITE_FAULT"}
                       if n in strings(path))
        if found:
            fail("release build %s holds fault-point names %s" % (rel, found))
        log("%s: no fault-point name" % rel)


main(test)
