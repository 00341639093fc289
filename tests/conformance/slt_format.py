#!/usr/bin/python3
"""tests/conformance/slt_format.py -- the sqllogictest format for slt.py:
records parsed from a test file, the shell's `.mode quote` output decoded
into exact values, and those values rendered as sqllogictest's SQLite
engine does (see slt.py's docstring for the rules). Pure: no process, no
file but the text it is given."""
import functools
import hashlib
import re
import struct

ENGINE = "sqlite"
DEFAULT_HASH_THRESHOLD = 8
SORTS = ("nosort", "rowsort", "valuesort")


class SltError(Exception):
    """A failure of the runner's machinery (not of a record)."""


# ---------------------------------------------------------------------------
# Parsing

class Record:
    """One record of a test file. kind is one of statement, query,
    hash-threshold, label (a skipped query whose label must still agree),
    bad (a malformed record: always a failure)."""
    __slots__ = ("kind", "line", "ok", "sql", "types", "sort", "label",
                 "expected", "n", "why")

    def __init__(self, kind, line, **kw):
        self.kind = kind
        self.line = line
        for k in self.__slots__[2:]:
            setattr(self, k, kw.get(k))


def _lines(text):
    """The file's lines as (number, text): a trailing \\r is removed, a line
    of only whitespace becomes empty (a record separator) and lines starting
    with '#' are dropped wherever they are, as the C runner does."""
    out = []
    for i, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            line = ""
        if line.startswith("#"):
            continue
        out.append((i, line))
    return out


def parse(text):
    """Parses a test file (str; undecodable bytes as surrogate escapes).
    Returns (records, nskipped, halted_at)."""
    lines = _lines(text)
    recs = []
    nskipped = 0
    i, n = 0, len(lines)
    while True:
        while i < n and lines[i][1] == "":
            i += 1
        if i >= n:
            return recs, nskipped, None
        j = i
        while j < n and lines[j][1] != "":
            j += 1
        block = lines[i:j]          # the record's lines
        i = j
        skip = False
        k = 0
        toks = block[0][1].split()
        while toks[0] in ("skipif", "onlyif"):
            match = len(toks) > 1 and toks[1].lower() == ENGINE
            if (toks[0] == "skipif") == match:
                skip = True
            k += 1
            if k >= len(block):
                toks = [""]
                break
            toks = block[k][1].split()
        line = block[k][0] if k < len(block) else block[-1][0]
        body = [t for _, t in block[k + 1:]]
        kind = toks[0]
        if skip:
            nskipped += 1
            if kind == "query" and len(toks) > 3:
                # The C runner in verify mode still checks that a skipped
                # query's expected results agree with its label.
                exp = _split_query(body)[1]
                recs.append(Record("label", line, label=toks[3],
                                   expected=exp))
            continue
        if kind == "statement":
            if len(toks) < 2 or toks[1] not in ("ok", "error"):
                recs.append(Record("bad", line, why="statement argument "
                                   "should be 'ok' or 'error'"))
                continue
            recs.append(Record("statement", line, ok=toks[1] == "ok",
                               sql="\n".join(body)))
        elif kind == "query":
            types = toks[1] if len(toks) > 1 else ""
            sort = toks[2] if len(toks) > 2 else "nosort"
            if not types or any(c not in "TIR" for c in types):
                recs.append(Record("bad", line, why="bad type string %r" %
                                   types))
                continue
            if sort not in SORTS:
                recs.append(Record("bad", line, why="unknown sort method %r"
                                   % sort))
                continue
            sql, exp = _split_query(body)
            recs.append(Record("query", line, types=types, sort=sort,
                               label=toks[3] if len(toks) > 3 else None,
                               sql=sql, expected=exp))
        elif kind == "hash-threshold":
            try:
                nval = int(toks[1])
            except (IndexError, ValueError):
                nval = 0
            recs.append(Record("hash-threshold", line, n=nval))
        elif kind == "halt":
            return recs, nskipped, line
        else:
            recs.append(Record("bad", line, why="unknown record type %r" %
                               kind))
            return recs, nskipped, None


def _split_query(body):
    """(sql, expected lines or None) of a query record's body."""
    if "----" in body:
        k = body.index("----")
        return "\n".join(body[:k]), body[k + 1:]
    return "\n".join(body), None


# ---------------------------------------------------------------------------
# Decoding `.mode quote` output

_TOK = re.compile(rb"NULL|'(?:[^']|'')*'|X'[0-9A-Fa-f]*'|-?Inf|"
                  rb"-?[0-9][0-9.eE+-]*")
_INT = re.compile(rb"-?[0-9]+\Z")


def _value(tok):
    """A quote-mode token as (class, value): None for NULL, ('i', int),
    ('r', float), ('t', bytes), ('b', bytes)."""
    c = tok[:1]
    if c == b"'":
        return ("t", tok[1:-1].replace(b"''", b"'"))
    if tok == b"NULL":
        return None
    if c == b"X":
        return ("b", bytes.fromhex(tok[2:-1].decode()))
    if _INT.match(tok):
        return ("i", int(tok))
    return ("r", float(tok.replace(b"Inf", b"inf")))


def decode_rows(seg):
    """Rows of values from a record's stdout segment. Raises SltError on
    anything that is not quote-mode output."""
    rows = []
    if b"'" not in seg:                     # fast path: no text values
        for line in seg.split(b"\n")[:-1]:
            row = []
            for tok in line.split(b","):
                m = _TOK.match(tok)
                if not m or m.end() != len(tok):
                    raise SltError("undecodable shell output %r" % line[:200])
                row.append(_value(tok))
            rows.append(row)
        if not seg.endswith(b"\n") and seg:
            raise SltError("shell output not newline-terminated: %r" %
                           seg[-200:])
        return rows
    p, n = 0, len(seg)
    row = []
    while p < n:
        m = _TOK.match(seg, p)
        if not m:
            raise SltError("undecodable shell output at %r" % seg[p:p + 200])
        row.append(_value(m.group()))
        p = m.end()
        sep = seg[p:p + 1]
        p += 1
        if sep == b"\n":
            rows.append(row)
            row = []
        elif sep != b",":
            raise SltError("undecodable shell output after %r" %
                           seg[max(0, p - 200):p])
    if row:
        raise SltError("shell output ends inside a row")
    return rows


# ---------------------------------------------------------------------------
# Rendering values as the C runner does

_AT = bytes(b if 0x20 <= b <= 0x7e else 0x40 for b in range(256))
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def wrap32(i):
    """(int) of an int64, as gcc does it: the low 32 bits, signed."""
    i &= 0xffffffff
    return i - (1 << 32) if i & 0x80000000 else i


def double_to_int64(r):
    """SQLite 3.40.1 doubleToInt64(): clamp, then truncate toward zero."""
    if r != r:
        return 0
    if r <= float(_I64_MIN):
        return _I64_MIN
    if r >= float(_I64_MAX):
        return _I64_MAX
    return int(r)


def conversion(tc, v):
    """The key of a conversion the formatter shell must compute for type
    char tc and value v, or None when it is computed here exactly."""
    if v is None:
        return None
    cls, x = v
    if tc == "T":
        return ("T", "r", x) if cls == "r" else None
    if tc == "I":
        return ("I", cls, x) if cls in ("t", "b") else None
    return ("R", cls, x)


def _sql_of(key):
    """SQL expression computing conversion key with SQLite's own code."""
    tc, cls, x = key
    if cls == "r":
        arg = "ieee754_from_blob(X'%s')" % struct.pack(">d", x).hex()
    elif cls == "i":
        arg = "(%d)" % x if x != _I64_MIN else "(-9223372036854775807-1)"
    elif cls == "t":
        arg = "CAST(X'%s' AS TEXT)" % x.hex()
    else:
        arg = "X'%s'" % x.hex()
    if tc == "R":
        return "printf('%%.3f', %s)" % arg
    if tc == "T":
        return "CAST(%s AS TEXT)" % arg
    return "CAST(%s AS INTEGER)" % arg


def render(tc, v, conv):
    if v is None:
        return "NULL"
    cls, x = v
    if tc == "T":
        if cls == "i":
            return str(x)
        if cls == "r":
            s = conv[("T", "r", x)]
        else:
            s = x.split(b"\0", 1)[0]    # column_text is a C string
        if not s:
            return "(empty)"
        return s.translate(_AT).decode("ascii")
    if tc == "I":
        if cls == "i":
            return str(wrap32(x))
        if cls == "r":
            return str(wrap32(double_to_int64(x)))
        return str(wrap32(conv[("I", cls, x)]))
    return conv[("R", cls, x)].decode("ascii")


def md5_of(values):
    h = hashlib.md5()
    for v in values:
        h.update(v.encode("ascii", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()


# ---------------------------------------------------------------------------
# Driving the stock shell

_SQLTOK = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`|"""
                     r"""\[[^\]]*\]|--[^\n]*|/\*.*?\*/|[A-Za-z_]+|.""",
                     re.S)


def needs_read(sql):
    """True if the shell might not see sql followed by a ';' line as a
    complete statement, so that it would swallow the lines after it: an
    unterminated quote, identifier or comment, or a trigger (complete only
    at END;). Such SQL is run through `.read`."""
    p = 0
    for m in _SQLTOK.finditer(sql):
        t = m.group()
        c = t[0]
        if c in "'\"`[":
            close = {"[": "]"}.get(c, c)
            if len(t) < 2 or t[-1] != close:
                return True
        elif t == "/" and sql.startswith("/*", m.start()):
            return True                 # /* without */
        elif c.isalpha() and t.upper() == "TRIGGER":
            return True
        p = m.end()
    return p != len(sql)
