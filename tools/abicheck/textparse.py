"""Small, tolerant helpers for reading other languages' FFI declarations as
text: comments out, brackets matched, constant expressions evaluated."""

import ast
import operator
import re


def strip_comments(text, line="//", block=("/*", "*/"), strings='"'):
    """text with comments blanked (newlines kept, so positions still give
    line numbers); string literals are left alone."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text[i] in strings:
            j = i + 1
            while j < n and text[j] != text[i] and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith(line, i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif block and text.startswith(block[0], i):
            j = text.find(block[1], i + len(block[0]))
            j = n if j < 0 else j + len(block[1])
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


_LITERAL = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])\'|\\\\[^\n]*')


def matching(text, start, pairs="(){}[]"):
    """The index of the bracket closing the one at text[start]; brackets in
    string and character literals (Zig's \\ lines too) are not counted."""
    opens, closes = pairs[0::2], pairs[1::2]
    depth, i = 0, start
    while i < len(text):
        lit = _LITERAL.match(text, i) if text[i] in "\"'\\" else None
        if lit:
            i = lit.end()
            continue
        if text[i] in opens:
            depth += 1
        elif text[i] in closes:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError("unbalanced bracket at offset %d" % start)


def split_top(s, sep=","):
    """s split at sep outside (), [], {} and <> (a '->' is not a bracket)."""
    out, depth, cur = [], 0, []
    for i, ch in enumerate(s):
        if ch in "([{" or (ch == "<"):
            depth += 1
        elif ch in ")]}" or (ch == ">" and (i == 0 or s[i - 1] != "-")):
            depth -= 1
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur))
    return [x.strip() for x in out if x.strip()]


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.FloorDiv: operator.floordiv, ast.LShift: operator.lshift,
        ast.RShift: operator.rshift, ast.BitOr: operator.or_, ast.BitAnd: operator.and_,
        ast.BitXor: operator.xor, ast.USub: operator.neg, ast.Invert: operator.invert}
_MAX = {"u8": 2**8 - 1, "u16": 2**16 - 1, "u32": 2**32 - 1, "u64": 2**64 - 1, "usize": 2**64 - 1,
        "uint8": 2**8 - 1, "uint16": 2**16 - 1, "uint32": 2**32 - 1, "uint64": 2**64 - 1,
        "i32": 2**31 - 1, "i64": 2**63 - 1, "c_int": 2**31 - 1, "cint": 2**31 - 1,
        "c_uint": 2**32 - 1, "cuint": 2**32 - 1}


def eval_int(expr, names=None):
    """The integer value of a constant expression of Rust, Zig or Nim
    (literals with type suffixes, casts, shifts, or, u64::MAX...), or None."""
    names = names or {}
    s = expr.strip()
    s = re.sub(r"\bas\s+[\w:]+", "", s)                                 # Rust: x as c_int
    s = re.sub(r"@as\(\s*[\w.]+\s*,", "(", s)                             # Zig: @as(c_int, x)
    s = re.sub(r"@(intCast|bitCast|truncate)\(", "(", s)
    s = re.sub(r"(?:std\.math\.)?maxInt\(\s*(\w+)\s*\)", lambda m: str(_MAX.get(m.group(1), "?")), s)
    s = re.sub(r"\bhigh\(\s*(\w+)\s*\)", lambda m: str(_MAX.get(m.group(1), "?")), s)  # Nim
    s = re.sub(r"(?:\w+::)*(\w+)::MAX\b", lambda m: str(_MAX.get(m.group(1), "?")), s)
    s = re.sub(r"\b(\d[\w]*)'\w+", r"\1", s)                            # Nim: 5'u64
    s = re.sub(r"\.(c\w+|u?int\d*)\b", "", s)                            # Nim: 5.cint
    s = re.sub(r"\b(c\w+|u?int\d*)\((.*)\)", r"(\2)", s)                 # Nim: cint(5)
    s = re.sub(r"\b(0x[0-9a-fA-F_]+|0b[01_]+|\d[\d_]*)(?:_?[iu](?:8|16|32|64|size))?\b",
               lambda m: m.group(1).replace("_", ""), s)
    s = re.sub(r"\bshl\b", "<<", s)
    s = re.sub(r"\bshr\b", ">>", s)
    s = re.sub(r"\bor\b", "|", s)
    s = re.sub(r"\band\b", "&", s)
    s = re.sub(r"\bdiv\b", "//", s)
    s = s.replace("!", "~")
    try:
        tree = ast.parse(s, mode="eval")
    except SyntaxError:
        return None

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.Attribute) and node.attr in names:  # Zig: Enum.member
            return names[node.attr]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            a, b = ev(node.left), ev(node.right)
            return None if a is None or b is None else _OPS[type(node.op)](a, b)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            a = ev(node.operand)
            return None if a is None else _OPS[type(node.op)](a)
        return None

    return ev(tree)


def logical_lines(text, continues=(",", "=")):
    """[(line number, line)] of text with each line that leaves a bracket
    open, or ends in one of `continues`, joined with the lines after it
    (Nim's multi-line pragmas and proc types). A joined line keeps the
    first line's number and indentation; brackets in string and character
    literals are not counted."""
    out, cur, start, depth = [], [], 0, 0
    for no, line in enumerate(text.split("\n"), 1):
        if not cur:
            start = no
        cur.append(line if not cur else line.strip())
        depth += sum(1 if c in "([{" else -1 if c in ")]}" else 0
                     for c in re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])\'', '""', line))
        if depth <= 0 and not line.rstrip().endswith(continues):
            out.append((start, " ".join(cur)))
            cur, depth = [], 0
    if cur:
        out.append((start, " ".join(cur)))
    return out


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()
