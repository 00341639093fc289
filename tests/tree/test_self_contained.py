# budget: 60
"""The tree stands alone: no test, script or build file reads a path
outside the repository (a fresh clone has nothing beside it).

Scans every file git tracks (every file under the root outside a checkout)
that the build or the tests run -- Makefile and *.mk, shell and Python
scripts, C sources, .ci/ -- for references that leave the tree: the
sibling "shared" folder beside the checkout, the workplace's absolute /work path, a path
joined onto ROOT that climbs out with "..", or a home directory. Data the
tests use lives in the tree (tests/conformance/data, tests/poc/data), each
with its PROVENANCE file: the test checks they are there.

A self-test first feeds the scanner files with each kind of escape, so the
check cannot pass vacuously.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from rltest import ROOT, check, check_eq, log, main, scratch  # noqa: E402

# What leaves the tree. Each pattern names why it is refused. (The
# sibling folder's path is spelt in pieces so that this file does not
# contain it.)
SIBLING = ".." + "/" + "shared"
ESCAPES = [
    (re.compile(re.escape(SIBLING) + r"\b"), "the sibling shared folder"),
    (re.compile(r"(?<![\w.])/work/"), "the workplace's /work path"),
    (re.compile(r"\bshared/(testdata|reference)\b"),
     "a path into shared/testdata or shared/reference"),
    (re.compile(r"ROOT\s*,\s*[\"']\.\.[\"']"),
     "a path that climbs out of ROOT"),
    (re.compile(r"\$\(HOME\)|\$HOME\b|expanduser\(|[\"']~/"),
     "a home directory"),
]

SCANNED = re.compile(r"(^|/)(Makefile|[^/]*\.mk|[^/]*\.(sh|py|c|h|proto)"
                     r"|\.ci/[^/]+)$")
# Where a pattern may stand as text, not as a path the build reads: this
# test itself (it names the patterns).
EXEMPT = {"tests/tree/test_self_contained.py"}


def tracked_files(root):
    r = subprocess.run(["git", "-C", root, "ls-files", "-z", "--cached",
                        "--others", "--exclude-standard"],
                       capture_output=True)
    if r.returncode == 0 and r.stdout:
        return [p for p in r.stdout.decode().split("\0") if p]
    out = []  # not a git checkout: every file under root
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in (".git", "build")]
        for f in files:
            out.append(os.path.relpath(os.path.join(d, f), root))
    return out


def scan(root, files):
    """Returns [(path, line number, why, line)] for every escape."""
    found = []
    for rel in files:
        if rel in EXEMPT or not SCANNED.search(rel):
            continue
        if rel.startswith("tests/conformance/data/"):
            continue  # the corpus: SQL text, never run as a script
        try:
            with open(os.path.join(root, rel), errors="replace") as f:
                lines = f.readlines()
        except OSError:
            continue
        for no, line in enumerate(lines, 1):
            for pat, why in ESCAPES:
                if pat.search(line):
                    found.append((rel, no, why, line.strip()))
    return found


def self_test():
    d = scratch("selfcontained-")
    bad = {
        "a.py": 'C = os.path.join(ROOT, "..", "shared", "x")\n',
        "b.sh": "cat %s/testdata/x\n" % SIBLING,
        "Makefile": "X = /work/shared/y\n",
        "c.mk": "Y = $(HOME)/data\n",
        "ok.py": 'P = os.path.join(ROOT, "tests", "data")\n',
    }
    for name, text in bad.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    got = sorted({f for f, _, _, _ in scan(d, sorted(bad))})
    check_eq(got, ["Makefile", "a.py", "b.sh", "c.mk"],
             "self-test: files the scanner reports")
    log("self-test: every planted escape reported, the clean file not")


def test():
    self_test()
    files = tracked_files(ROOT)
    check(len(files) > 50, "only %d files found under %s" % (len(files), ROOT))
    found = scan(ROOT, files)
    for rel, no, why, line in found:
        log("%s:%d: %s: %s" % (rel, no, why, line))
    check(not found, "%d reference(s) to paths outside the tree (above): "
          "copy what they read into the repository" % len(found))
    for data in ("tests/conformance/data/sqllogictest/PROVENANCE.txt",
                 "tests/conformance/data/sqllogictest/MANIFEST.dev.txt",
                 "tests/poc/data/PROVENANCE.txt",
                 "tests/poc/data/distributed-sqlite-poc.proto",
                 "tests/poc/data/distributed-sqlite-poc.md"):
        check(os.path.isfile(os.path.join(ROOT, data)),
              "test data missing from the tree: %s" % data)
    log("%d files scanned: nothing outside the tree" % len(files))


if __name__ == "__main__":
    main(test)
