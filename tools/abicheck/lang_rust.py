"""Rust: `extern "C"` blocks (`unsafe extern "C"` in edition 2024), #[repr(C)]
structs, #[repr(C)]/#[repr(i32)]... enums, `type` aliases and `const`s in
the crate's .rs files (target/ left out), read as text."""

import os
import re

import model
from check import Binding, Struct
from textparse import eval_int, line_of, matching, read, split_top, strip_comments

PRIMITIVES = {
    "u8": "u8", "i8": "i8", "u16": "u16", "i16": "i16", "u32": "u32", "i32": "i32",
    "u64": "u64", "i64": "i64", "usize": "size_t", "isize": "i64", "bool": "bool",
    "f32": "f32", "f64": "f64", "c_char": "char", "c_schar": "i8", "c_uchar": "u8",
    "c_short": "i16", "c_ushort": "u16", "c_int": "i32", "c_uint": "u32", "c_long": "i64",
    "c_ulong": "u64", "c_longlong": "i64", "c_ulonglong": "u64", "c_float": "f32",
    "c_double": "f64", "size_t": "size_t",
}


class RustTypes:
    def __init__(self, aliases, enums, consts):
        self.aliases = aliases  # name -> type text
        self.enums = enums
        self.consts = consts    # name -> value, for array lengths

    def parse(self, s, depth=0):
        s = " ".join(s.split())
        if depth > 20:
            raise ValueError("alias loop at %r" % s)
        if s in ("", "()"):
            return model.VOID
        m = re.match(r"^(?:Option\s*<\s*)(.*)>$", s)
        if m:  # Option<fn>, Option<&T>, Option<NonNull<T>>: nullable pointers
            return self.parse(m.group(1), depth + 1)
        m = re.match(r"^(?:unsafe\s+)?(?:extern\s+\"C\"\s+)?fn\s*\((.*)\)\s*(?:->\s*(.*))?$", s)
        if m:
            params = [self.parse(_param_type(p), depth + 1) for p in split_top(m.group(1))]
            return model.ptr(("fn", self.parse(m.group(2) or "", depth + 1), tuple(params)))
        m = re.match(r"^(?:\*\s*(?:mut|const)|&\s*(?:mut\s+)?)\s*(.*)$", s) or \
            re.match(r"^(?:[\w:]*::)?NonNull\s*<(.*)>$", s)
        if m:
            return model.ptr(self.parse(m.group(1), depth + 1))
        m = re.match(r"^\[\s*(.*)\s*;\s*(.*)\]$", s)
        if m:
            n = eval_int(m.group(2), self.consts)
            return ("array", self.parse(m.group(1), depth + 1), n)
        name = s.split("::")[-1]
        if name in ("c_void", "core::ffi::c_void"):
            return model.VOID
        if name in PRIMITIVES:
            return ("int", PRIMITIVES[name])
        if name in self.aliases:
            return self.parse(self.aliases[name], depth + 1)
        if name in self.enums:
            return ("enum", name)
        return ("struct", name)


def _param_type(p):
    """"ctx: *mut gms_context" -> "*mut gms_context" (or the type alone)."""
    m = re.match(r"^(?:mut\s+)?[\w]+\s*:\s*(.*)$", p.strip(), re.S)
    return m.group(1) if m else p


def _files(root):
    if os.path.isfile(root):
        return [root]
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in ("target", ".git")]
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".rs")]
    return sorted(out)


ATTRS = r"((?:#\s*\[[^\]]*\]\s*)*)"


def extract(root):
    b = Binding("rust")
    raw_fns, raw_structs, aliases, enums, consts = [], [], {}, {}, []
    for path in _files(root):
        text = strip_comments(read(path))
        rel = os.path.relpath(path)
        for m in re.finditer(r"(?:unsafe\s+)?extern\s+\"C\"\s*\{", text):
            end = matching(text, m.end() - 1)
            body = text[m.end():end]
            for f in re.finditer(ATTRS + r"(?:pub(?:\([^)]*\))?\s+)?(?:(?:safe|unsafe)\s+)?"
                                 r"fn\s+(\w+)\s*\(", body):
                close = matching(body, f.end() - 1)
                semi = body.index(";", close)
                ret = re.sub(r"^\s*->\s*", "", body[close + 1:semi]).strip()
                link = re.search(r"link_name\s*=\s*\"(\w+)\"", f.group(1))
                raw_fns.append((link.group(1) if link else f.group(2), body[f.end():close], ret,
                                "%s:%d" % (rel, line_of(text, m.end() + f.start(2)))))
        for m in re.finditer(ATTRS + r"(?:pub(?:\([^)]*\))?\s+)?(struct|enum)\s+(\w+)\s*([{;(])",
                             text):
            reprs = re.findall(r"repr\s*\(([^)]*)\)", m.group(1))
            if not reprs or not re.search(r"\b(C|[iu](8|16|32|64))\b", reprs[0]):
                continue  # not an FFI type
            where = "%s:%d" % (rel, line_of(text, m.start(3)))
            body = ""
            if m.group(4) == "{":
                body = text[m.end():matching(text, m.end() - 1)]
            if m.group(2) == "struct":
                raw_structs.append((m.group(3), body, where))
            else:
                enums[m.group(3)] = (body, where)
        for m in re.finditer(r"(?:pub(?:\([^)]*\))?\s+)?type\s+(\w+)\s*=\s*([^;]+);", text):
            aliases[m.group(1)] = m.group(2).strip()
        for m in re.finditer(r"(?:pub(?:\([^)]*\))?\s+)?const\s+(\w+)\s*:\s*[^=]+=\s*([^;]+);", text):
            consts.append((m.group(1), m.group(2), "%s:%d" % (rel, line_of(text, m.start(1)))))

    values = {}
    for name, expr, where in consts:
        v = eval_int(expr, values)
        if v is not None:
            values[name] = v
            b.constants.append((name, v, where))
    types = RustTypes(aliases, enums, values)
    for name, (body, where) in enums.items():
        members, nxt = [], 0
        for item in split_top(body):
            item = re.sub(r"#\s*\[[^\]]*\]", "", item).strip()
            vm = re.match(r"^(\w+)\s*(?:=\s*(.+))?$", item)
            if vm:
                nxt = eval_int(vm.group(2), values) if vm.group(2) else nxt
                members.append((vm.group(1), nxt))
                nxt += 1
        b.enums[name] = (members, where)
    for name, params, ret, where in raw_fns:
        b.functions[name] = (types.parse(ret),
                             [(p.split(":")[0].strip(), types.parse(_param_type(p)))
                              for p in split_top(params)], where)
    for name, body, where in raw_structs:
        fields = []
        for item in split_top(body):
            item = re.sub(r"#\s*\[[^\]]*\]", "", item).strip()
            fm = re.match(r"^(?:pub(?:\([^)]*\))?\s+)?(\w+)\s*:\s*(.+)$", item, re.S)
            if fm:
                fields.append((fm.group(1), fm.group(2)))
        # The usual opaque type: `struct gms_runtime { _private: [u8; 0] }`.
        opaque = all(f.startswith("_") for f, _ in fields)
        b.structs[name] = Struct(name, [] if opaque else
                                 [(f, types.parse(t)) for f, t in fields], where, opaque=opaque)
    return b
