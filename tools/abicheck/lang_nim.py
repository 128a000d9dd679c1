"""Nim: procs with an importc pragma (or inside a {.push importc.} block),
objects with an importc, bycopy or incompleteStruct pragma, enums, type
aliases and distinct types, and consts, in the package's .nim files, read
as text (tests/ and nimcache/ left out). A declaration may run over
several lines; `importc: "gms_x"` gives a type's or an enum's C name. Nim
compares names style-insensitively, and so does this."""

import os
import re

import model
from check import Binding, Struct
from textparse import eval_int, line_of, logical_lines, matching, read, split_top, strip_comments

PRIMITIVES = {
    "int8": "i8", "uint8": "u8", "byte": "u8", "int16": "i16", "uint16": "u16",
    "int32": "i32", "uint32": "u32", "int64": "i64", "uint64": "u64", "int": "i64",
    "uint": "u64", "bool": "bool", "char": "char", "float32": "f32", "float64": "f64",
    "float": "f64", "cchar": "char", "cschar": "i8", "cuchar": "u8", "cshort": "i16",
    "cushort": "u16", "cint": "i32", "cuint": "u32", "clong": "i64", "culong": "u64",
    "clonglong": "i64", "culonglong": "u64", "csize_t": "size_t", "cfloat": "f32",
    "cdouble": "f64",
}


class NimTypes:
    def __init__(self, aliases, enums, consts):
        self.aliases, self.consts = aliases, consts
        self.enums = enums  # name -> the type it is passed as (_enum_type)

    def parse(self, s, depth=0):
        s = " ".join(s.split())
        if depth > 20:
            raise ValueError("alias loop at %r" % s)
        if s in ("", "void"):
            return model.VOID
        if s == "pointer":
            return model.ptr(model.VOID)
        if s == "cstring":
            return model.ptr(("int", "char"))
        m = re.match(r"^proc\s*\((.*)\)\s*(?::\s*([^{]+?))?\s*(\{\..*\.\})?$", s)
        if m:
            params = [t for _, t in _params(m.group(1), self)]
            fn = ("fn", self.parse(m.group(2) or "", depth + 1), tuple(params))
            # without a calling convention a proc type is a closure: two pointers
            convention = re.search(r"\b(cdecl|nimcall|noconv)\b", m.group(3) or "")
            return model.ptr(fn) if convention else ("closure", fn)
        m = re.match(r"^(?:ptr|var|ref)\s+(.+)$", s)
        if m:
            return model.ptr(self.parse(m.group(1), depth + 1))
        m = re.match(r"^UncheckedArray\[(.+)\]$", s)
        if m:  # ptr UncheckedArray[T] is T*
            return self.parse(m.group(1), depth + 1)
        m = re.match(r"^array\[(.+)\]$", s)
        if m:
            n, elem = split_top(m.group(1))
            r = re.match(r"^(.+?)\s*\.\.[<]?\s*(.+)$", n)
            if r:  # array[0..63, char]: 64 elements; 0..<64 too
                lo, hi = eval_int(r.group(1), self.consts), eval_int(r.group(2), self.consts)
                count = None if lo is None or hi is None else hi - lo + (0 if "..<" in n else 1)
            else:
                count = eval_int(n, self.consts)
            return ("array", self.parse(elem, depth + 1), count)
        if s in PRIMITIVES:
            return ("int", PRIMITIVES[s])
        if s in self.aliases:
            return self.parse(self.aliases[s], depth + 1)
        if s in self.enums:
            return self.enums[s]
        return ("struct", s)


def _params(text, types):
    """"a: T, b, c: U; d: V" -> [(a, T), (b, U), (c, U), (d, V)]."""
    out, pending = [], []
    for part in split_top(text.replace(";", ",")):
        m = re.match(r"^(\w+)\s*:\s*(.+?)(?:\s*=\s*.+)?$", part, re.S)
        if m:
            t = types.parse(m.group(2))
            out += [(n, t) for n in pending + [m.group(1)]]
            pending = []
        else:
            pending.append(part.strip())
    return out


def _files(root):
    if os.path.isfile(root):
        return [root]
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in ("nimcache", ".git", "tests")]
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".nim")]
    return sorted(out)


def _pragma_name(pragma, default):
    m = re.search(r"importc\s*:\s*\"(\w+)\"", pragma or "")
    return m.group(1) if m else default


def _enum_type(name, pragma, values):
    """The type a Nim enum is passed as: a C int with {.size: sizeof(cint).}
    (or size: 4); without it, the smallest Nim picks for its values (one
    byte for 0..255), which is not a C enum."""
    m = re.search(r"\bsize\s*:\s*(?:sizeof\(\s*(\w+)\s*\)|(\d+))", pragma)
    if m:
        size = model.INT_SIZES[PRIMITIVES[m.group(1)]] if m.group(1) in PRIMITIVES \
            else int(m.group(2) or 0)
    elif values and min(values) < 0:
        size = 4
    else:
        top = max(values or [0])
        size = 1 if top < 2**8 else 2 if top < 2**16 else 4 if top < 2**32 else 8
    return ("enum", name) if size == 4 else ("int", {1: "u8", 2: "u16", 8: "i64"}.get(size, "?"))


def _sections(text):
    """The entries of the file's type and const sections: [(section,
    (line number, header line), [body lines])], by indentation, each line
    a logical one (multi-line pragmas and proc types joined)."""
    out, section, entry_indent, kw_indent = [], None, None, 0
    for no, line in logical_lines(text):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        km = re.match(r"^\s*(type|const|let|var|proc|func|template|macro|import|when|"
                      r"include|export|from|iterator|converter|method)\b(.*)$", line)
        if km and (entry_indent is None or indent < entry_indent or section is None):
            section, entry_indent, kw_indent = km.group(1), None, indent
            line = " " * (indent + len(km.group(1)) + 1) + km.group(2)
            if not km.group(2).strip():
                continue
            indent = len(line) - len(line.lstrip())
        if section not in ("type", "const"):
            continue
        if entry_indent is None:
            entry_indent = indent
        if indent <= kw_indent:
            section = None
        elif indent != entry_indent:
            # an object's field or an enum's members; in `type X = object`
            # on one line, the fields are indented less than X
            if out and out[-1][0] == section:
                out[-1][2].append(line.strip())
        else:
            out.append((section, (no, line), []))
    return out


def extract(root):
    b = Binding("nim")
    procs, objects, aliases, enums, consts = [], [], {}, {}, []
    for path in _files(root):
        text = strip_comments(read(path), line="#", block=("#[", "]#"))
        rel = os.path.relpath(path)
        # procs; a {.push importc.} region makes every proc in it imported, and
        # so does a pragma of {.pragma: name, importc...} that names it
        imports = ["importc"] + re.findall(r"\{\.\s*pragma\s*:\s*(\w+)\s*,[^}]*\bimportc\b", text)
        importing = r"\b(%s)\b" % "|".join(imports)
        pushed = [(m.start(), m.end()) for m in re.finditer(
            r"\{\.\s*push\b[^}]*%s.*?\.\}(.*?)(\{\.\s*pop\s*\.\}|$)" % importing, text, re.S)]
        for m in re.finditer(r"\bproc\s+`?(\w+)`?\s*\*?\s*\(", text):
            close = matching(text, m.end() - 1)
            tail = re.match(r"\s*(?::\s*([^{=\n]+?))?\s*(\{\..*?\.\})?\s*(=|\n|$)",
                            text[close + 1:], re.S)
            pragma = tail.group(2) or ""
            if not re.search(importing, pragma) and not any(a <= m.start() < e for a, e in pushed):
                continue
            procs.append((_pragma_name(pragma, m.group(1)), text[m.end():close],
                          (tail.group(1) or "").strip(), "%s:%d" % (rel, line_of(text, m.start()))))
        for section, (no, line), body in _sections(text):
            at = "%s:%d" % (rel, no)
            if section == "const":
                cm = re.match(r"^\s*(\w+)\*?\s*(?::\s*[\w\[\], ]+)?\s*=\s*(.+)$", line)
                if cm:
                    consts.append((cm.group(1), cm.group(2), at))
                continue
            tm = re.match(r"^\s*(\w+)\*?\s*(\{\..*?\.\})?\s*=\s*(.*)$", line)
            if not tm:
                continue
            name, pragma, rhs = tm.group(1), tm.group(2) or "", tm.group(3).strip()
            if re.match(r"^object\b", rhs):
                if re.search(r"\b(importc|bycopy|incompleteStruct|exportc)\b", pragma):
                    objects.append((name, body, pragma, at))
            elif re.match(r"^enum\b", rhs):
                enums[name] = ([rhs[4:].strip()] if rhs[4:].strip() else []) + body, pragma, at
            else:
                aliases[name] = re.sub(r"^distinct\s+", "", rhs)

    values = {}
    for name, expr, at in consts:
        v = eval_int(expr, values)
        if v is not None:
            values[name] = v
            b.constants.append((name, v, at))
    enum_types = {}
    for name, (body, pragma, at) in enums.items():
        members, nxt = [], 0
        for item in split_top(",".join(body)):
            vm = re.match(r"^(\w+)\s*(?:=\s*(.+))?$", item.strip())
            if vm:
                val = vm.group(2)
                if val and val.startswith("("):  # a = (0, "text")
                    val = split_top(val[1:-1])[0]
                nxt = eval_int(val, values) if val else nxt
                if nxt is None:
                    b.notes.append("enum %s: cannot read the value of %s" % (name, vm.group(1)))
                    break
                members.append((vm.group(1), nxt))
                nxt += 1
        b.enums[name] = (members, at)
        if _pragma_name(pragma, None):
            b.enum_c_names[name] = _pragma_name(pragma, None)
        enum_types[name] = _enum_type(name, pragma, [v for _, v in members])
    types = NimTypes(aliases, enum_types, values)
    for name, params, ret, at in procs:
        b.functions[name] = (types.parse(ret), _params(params, types), at)
    for name, body, pragma, at in objects:
        fields = []
        for line in body:
            fm = re.match(r"^(.+?)\s*:\s*(.+?)(?:\s*=\s*[^=].*)?$", line)
            if fm:
                t = types.parse(re.sub(r"\{\..*?\.\}", "", fm.group(2)))
                for f in fm.group(1).split(","):
                    fields.append((re.sub(r"[*\s]|\{\..*?\.\}", "", f), t))
        b.structs[name] = Struct(name, fields, at, c_name=_pragma_name(pragma, None),
                                 opaque=not fields)
    return b
