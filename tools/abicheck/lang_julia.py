"""Julia: every `@ccall` and `ccall` of libgms (its library expression names
gms, or the function is a gms_* one), structs with C names (gms_*, DL*:
the fields give C's layout; a struct with no fields is opaque), `@enum`s,
`const` integers and type aliases, in the package's .jl files, read as text.

Julia has no function pointer types: a callback is `Ptr{Cvoid}`. An alias
`const gms_pressure_fn = Ptr{Cvoid}` gets a C signature from the function
that makes such pointers, `f()::gms_pressure_fn = @cfunction(g, R, (A, B))`;
an alias without one stays `void *`, which the header's function pointer
types refuse. A `const` Dict or tuple of pairs keyed by GMS_E_* constants
(the error classes) must have one entry per GMS_E_* code of the header.
One C function called with two different signatures is an error."""

import os
import re

import model
from check import Binding, Struct
from textparse import eval_int, line_of, matching, split_top, strip_comments

PRIMITIVES = {
    "Cint": "i32", "Int32": "i32", "Cuint": "u32", "UInt32": "u32", "Clong": "i64",
    "Culong": "u64", "Clonglong": "i64", "Culonglong": "u64", "Int64": "i64", "UInt64": "u64",
    "Int": "i64", "Csize_t": "size_t", "UInt": "size_t", "Cssize_t": "i64",
    "Cptrdiff_t": "i64", "Cintmax_t": "i64", "Cuintmax_t": "u64", "Cchar": "char",
    "Cuchar": "u8", "UInt8": "u8", "Int8": "i8", "Cshort": "i16", "Int16": "i16",
    "Cushort": "u16", "UInt16": "u16", "Cfloat": "f32", "Float32": "f32", "Cdouble": "f64",
    "Float64": "f64", "Bool": "bool",
}
_MAX = {"UInt8": 2**8 - 1, "UInt16": 2**16 - 1, "UInt32": 2**32 - 1, "Cuint": 2**32 - 1,
        "UInt64": 2**64 - 1, "UInt": 2**64 - 1, "Csize_t": 2**64 - 1, "Int32": 2**31 - 1,
        "Cint": 2**31 - 1, "Int64": 2**63 - 1, "Int": 2**63 - 1}


def _blank(text, pattern):
    """text with every match of pattern blanked, newlines kept."""
    return re.sub(pattern, lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)


def clean(text):
    """Comments and string literals out of the way: docstrings and other
    triple-quoted strings blanked, then #= =# blocks, then # lines."""
    text = _blank(text, r'"""(?:\\.|[^\\])*?"""')
    text = _blank(text, r"#=.*?=#")
    return strip_comments(text, line="#", block=None)


def julia_int(expr, values):
    """The value of a Julia constant expression (Cint(-5), UInt32(1) << 1,
    typemax(UInt64), 0x10, 63 + 1), or None."""
    s = re.sub(r"\btypemax\(\s*(\w+)\s*\)", lambda m: str(_MAX.get(m.group(1), "?")), expr)
    s = re.sub(r"\b(?:C\w+|U?Int\d*)\(", "(", s)     # conversions: Cint(x) is x
    s = s.replace("\u22bb", "^").replace("\u00f7", "//")   # xor, div
    return eval_int(s, values)


class JuliaTypes:
    def __init__(self, aliases, enums, consts, fn_sigs):
        self.aliases = aliases    # name -> type text
        self.enums = enums        # name -> base type text
        self.consts = consts      # name -> value, for NTuple lengths
        self.fn_sigs = fn_sigs    # alias name -> (return text, [param texts])

    def parse(self, s, depth=0):
        s = " ".join(s.split())
        if depth > 20:
            raise ValueError("alias loop at %r" % s)
        if s in ("Cvoid", "Nothing"):
            return model.VOID
        if s == "Cstring":
            return model.ptr(("int", "char"))
        m = re.match(r"^(?:Ptr|Ref)\s*\{(.*)\}$", s)
        if m:
            return model.ptr(self.parse(m.group(1), depth + 1))
        m = re.match(r"^NTuple\s*\{(.*)\}$", s)
        if m:
            n, elem = split_top(m.group(1))
            return ("array", self.parse(elem, depth + 1), julia_int(n, self.consts))
        name = s.split(".")[-1]
        if name in self.fn_sigs:
            ret, params = self.fn_sigs[name]
            return model.ptr(("fn", self.parse(ret, depth + 1),
                              tuple(self.parse(p, depth + 1) for p in params)))
        if name in PRIMITIVES:
            return ("int", PRIMITIVES[name])
        if name in self.aliases:
            return self.parse(self.aliases[name], depth + 1)
        if name in self.enums:
            base = self.parse(self.enums[name], depth + 1)
            # a C enum is an int: an @enum of another size is that size, and wrong
            return ("enum", name) if base in (("int", "i32"), ("int", "u32")) else base
        return ("struct", name)


def _files(root):
    if os.path.isfile(root):
        return [root]
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".jl")]
    return sorted(out)


def _type_at(text, i):
    """The type expression starting at text[i] (a dotted name with {...}
    parameters) and the index after it."""
    m = re.compile(r"\s*([\w.]+)").match(text, i)
    if not m:
        return "", i
    j = m.end()
    if j < len(text) and text[j] == "{":
        j = matching(text, j, "{}") + 1
    return text[m.start(1):j], j


def _split_annotation(arg):
    """"out::Ref{UInt64}" -> ("out", "Ref{UInt64}"): at the last top-level ::."""
    depth, cut = 0, -1
    for i, ch in enumerate(arg):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and arg.startswith("::", i) and not arg.startswith("::", i + 1):
            cut = i
    if cut < 0:
        raise ValueError("@ccall argument without a type: %r" % arg)
    return arg[:cut].strip(), arg[cut + 2:].strip()


def _calls(text):
    """(C name, library text, [(value text, type text)], return text, offset) per call."""
    for m in re.finditer(r"@ccall\s+(?:((?:\$?\(?[\w.\"]+\)?)(?:\(\))?)\.)?(\w+)\s*\(", text):
        close = matching(text, m.end() - 1)
        body = text[m.end():close]
        if ";" in body:
            raise ValueError("a variadic @ccall of %s" % m.group(2))
        rest = re.compile(r"\s*::").match(text, close + 1)
        ret = _type_at(text, rest.end())[0] if rest else "Any"
        yield (m.group(2), m.group(1) or "", [_split_annotation(a) for a in split_top(body)],
               ret, m.start(2))
    for m in re.finditer(r"(?<![@\w])ccall\s*\(", text):
        close = matching(text, m.end() - 1)
        items = split_top(text[m.end():close])
        if len(items) < 3:
            continue
        fm = re.match(r"^\(\s*:(\w+)\s*,\s*(.+)\)$|^:(\w+)$", items[0])
        if not fm:
            continue  # a call through a pointer: no name to check
        name, lib = (fm.group(1), fm.group(2)) if fm.group(1) else (fm.group(3), "")
        types = items[2].strip()
        if not (types.startswith("(") and types.endswith(")")):
            raise ValueError("ccall of %s: argument types are not a tuple" % name)
        args = items[3:]
        yield (name, lib, [(args[i] if i < len(args) else "", t)
                           for i, t in enumerate(split_top(types[1:-1]))], items[1], m.start())


def extract(root):
    b = Binding("julia")
    calls, structs, aliases, enums, consts, fn_sigs, pairs = [], [], {}, {}, [], {}, []
    for path in _files(root):
        text = clean(open(path, encoding="utf-8").read())
        rel = os.path.relpath(path)

        def where(pos):
            return "%s:%d" % (rel, line_of(text, pos))

        for name, lib, args, ret, at in _calls(text):
            if "gms" in lib or name.startswith("gms_"):
                calls.append((name, args, ret, where(at)))
            else:
                b.notes.append("%s: %s is not libgms's (not checked)" % (where(at), name))
        for m in re.finditer(r"^[ \t]*(?:mutable\s+)?struct\s+(\w+)(?:\s*<:\s*[\w.]+)?(.*)$",
                             text, re.M):
            name = m.group(1)
            if not (name.startswith("gms_") or name.startswith("DL")):
                continue  # not a C struct
            if m.group(2).strip() == "end":
                structs.append((name, None, where(m.start(1))))
                continue
            end = re.compile(r"^[ \t]*end\b", re.M).search(text, m.end())
            if end is None:
                raise ValueError("struct %s has no end" % name)
            fields = []
            for line in text[m.end():end.start()].splitlines():
                line = line.strip()
                if not line:
                    continue
                fm = re.match(r"^(?:const\s+)?(\w+)\s*::\s*(.+)$", line)
                if not fm:
                    raise ValueError("struct %s: cannot read %r" % (name, line))
                fields.append((fm.group(1), fm.group(2).strip()))
            structs.append((name, fields, where(m.start(1))))
        for m in re.finditer(r"@enum\s+(\w+)(?:\s*::\s*([\w.]+))?[ \t]*(begin\b)?", text):
            if m.group(3):
                end = re.compile(r"^[ \t]*end\b", re.M).search(text, m.end())
                body = text[m.end():end.start()].split("\n")
            else:
                body = [text[m.end():text.find("\n", m.end())]]
            items = []
            for line in body:
                items += re.findall(r"(\w+)(?:\s*=\s*([^\s=]+))?", re.sub(r"\s*=\s*", "=", line))
            enums[m.group(1)] = (m.group(2) or "Int32", items, where(m.start(1)))
        for m in re.finditer(r"^[ \t]*const\s+(\w+)\s*=\s*(.+)$", text, re.M):
            rhs = m.group(2).strip()
            if re.match(r"^(?:\w+(?:\{[^}]*\})?)?\($", rhs):   # Dict(...) or (...), on lines
                open_at = m.start(2) + len(rhs) - 1
                close = matching(text, open_at)
                pairs.append((m.group(1), text[open_at + 1:close], where(m.start(1))))
            elif re.match(r"^(?:Ptr|Ref|NTuple)\s*\{.*\}$|^C[a-z]\w*$|^U?Int\d*$|^Float\d+$", rhs):
                aliases[m.group(1)] = rhs
            else:
                consts.append((m.group(1), rhs, where(m.start(1))))
        for m in re.finditer(r"\b\w+\(\s*\)\s*::\s*(\w+)\s*=\s*@cfunction\s*\(", text):
            close = matching(text, m.end() - 1)
            items = split_top(text[m.end():close])
            if len(items) != 3 or not items[2].startswith("("):
                raise ValueError("%s: cannot read this @cfunction" % where(m.start()))
            fn_sigs[m.group(1)] = (items[1], split_top(items[2].strip()[1:-1]))

    values = {}
    for name, expr, at in consts:
        v = julia_int(expr, values)
        if v is not None:
            values[name] = v
            b.constants.append((name, v, at))
    types = JuliaTypes(aliases, {n: e[0] for n, e in enums.items()}, values, fn_sigs)
    for name, (base, items, at) in enums.items():
        members, nxt = [], 0
        for member, value in items:
            nxt = julia_int(value, values) if value else nxt
            members.append((member, nxt))
            nxt += 1
        b.enums[name] = (members, at)
    for name, body, at in pairs:
        # split_top counts < and > as brackets: take the arrows out first
        keys = [item.split("\u2192")[0].strip() for item in split_top(body.replace("=>", "\u2192"))]
        if keys and all(re.match(r"^GMS_E_\w+$", k) for k in keys) and \
                all(k in values for k in keys):
            b.value_sets.append(("%s (error classes)" % name, "GMS_E_",
                                 {values[k] for k in keys}, at))
    for name, args, ret, at in calls:
        decl = (types.parse(ret), [(v if re.match(r"^\w+$", v) else "", types.parse(t))
                                   for v, t in args], at)
        seen = b.functions.get(name)
        if seen is not None and (seen[0], [t for _, t in seen[1]]) != \
                (decl[0], [t for _, t in decl[1]]):
            raise ValueError("%s is called with two signatures: at %s and at %s"
                             % (name, seen[2], at))
        b.functions.setdefault(name, decl)
    for name, fields, at in structs:
        if fields is None:
            b.structs[name] = Struct(name, [], at, opaque=True)
        else:
            b.structs[name] = Struct(name, [(f, types.parse(t)) for f, t in fields], at)
    return b
