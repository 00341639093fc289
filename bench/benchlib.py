"""bench/benchlib.py -- what bench/run.py and bench/peers.py share:
percentiles, and reading the per-commit timing lines RAFTLITE_TIMING
writes (lib/timing.h). Measures nothing itself.
"""
import os
import statistics


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# Timing points of a commit (lib/timing.h), as written after RL_T_CAPTURE.
TPOINTS = ("propose", "loop", "appended", "committed", "applied", "woken",
           "returned", "framed", "done")
# Segments printed: (name, from point, to point); "capture" is time 0.
SEGMENTS = (
    ("capture+encode", "capture", "propose"),
    ("hand-off to loop", "propose", "loop"),
    ("local append+fsync", "loop", "appended"),
    ("quorum after append", "appended", "committed"),
    ("raft_apply to commit", "loop", "committed"),
    ("apply callback", "committed", "applied"),
    ("writer wake-up", "applied", "returned"),
    ("commit frame+record", "returned", "framed"),
    ("WAL sync+unlock", "framed", "done"),
    ("total (in the VFS)", "capture", "done"),
)


def pctl(xs, p):
    """Nearest-rank percentile of xs (unsorted)."""
    if not xs:
        return float("nan")
    v = sorted(xs)
    k = max(1, min(len(v), int(p / 100.0 * len(v) + 0.999999)))
    return v[k - 1]


def read_timing(path, skip):
    """Timing lines of path after the first skip ones: a list of dicts
    point -> ms after capture; lines missing a point are left out."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        lines = f.readlines()[skip:]
    for line in lines:
        v = [int(x) for x in line.split()]
        if len(v) != len(TPOINTS) or 0 in v:
            continue
        d = {k: x / 1e6 for k, x in zip(TPOINTS, v)}
        d["capture"] = 0.0
        rows.append(d)
    return rows


def count_lines(path):
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)
