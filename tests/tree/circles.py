#!/usr/bin/python3
"""Prints pairs of source files that call each other (a circle between
files): for each non-static rl_/rlv_/node_/host_ function, the file
defining it; then every pair a.c -> b.c and b.c -> a.c. Run from a
checkout's root (tests/tree/test_no_circles.py runs it); the last line
is "N circles".

Files under tests/, bench/ and demo/ are left out. The scan is textual
(a regex over each file, no preprocessor), so a name in a comment
followed by "(" counts as a call: say it without the parenthesis."""
import re
import subprocess

srcs = [l for l in subprocess.check_output(['git', 'ls-files', '*.c']).decode().split()
        if not l.startswith(('tests/', 'bench/', 'demo/'))]
defs = {}
for p in srcs:
    s = open(p).read()
    for m in re.finditer(r'^(?!static)[a-zA-Z_][\w \*]*?\b(rl_\w+|rlv_\w+|node_\w+|host_\w+)\s*\(', s, re.M):
        defs.setdefault(m.group(1), p)
calls = {}
for p in srcs:
    s = open(p).read()
    calls[p] = {}
    for name in set(re.findall(r'\b(rl_\w+|rlv_\w+|node_\w+|host_\w+)\s*\(', s)):
        q = defs.get(name)
        if q and q != p:
            calls[p].setdefault(q, set()).add(name)
pairs = set()
for a in sorted(calls):
    for b in sorted(calls[a]):
        if a in calls.get(b, {}) and (b, a) not in pairs:
            pairs.add((a, b))
            print(a, '->', b, sorted(calls[a][b]))
            print('   ', b, '->', a, sorted(calls[b][a]))
print(len(pairs), "circles")
