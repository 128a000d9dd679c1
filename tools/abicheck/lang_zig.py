"""Zig: `extern fn` declarations, `extern struct`s, `opaque {}`s, enums with
an integer tag (`enum(c_int)`) and `const`s (aliases and integer values) in
the package's .zig files (.zig-cache and zig-out left out), read as text.
What a binding takes from the header through translate-c (`b.addTranslateC`
in build.zig, then `c.gms_alloc`) is right by construction; a value written
as the header's constant (`secret = c.GMS_LEVEL_SECRET`) is checked by that
name. A binding with nothing hand-written has nothing here to check."""

import os
import re

import model
from check import Binding, Struct
from textparse import eval_int, line_of, matching, read, split_top, strip_comments

PRIMITIVES = {
    "u8": "u8", "i8": "i8", "u16": "u16", "i16": "i16", "u32": "u32", "i32": "i32",
    "u64": "u64", "i64": "i64", "usize": "size_t", "isize": "i64", "bool": "bool",
    "f32": "f32", "f64": "f64", "c_char": "char", "c_short": "i16", "c_ushort": "u16",
    "c_int": "i32", "c_uint": "u32", "c_long": "i64", "c_ulong": "u64", "c_longlong": "i64",
    "c_ulonglong": "u64",
}


class ZigTypes:
    def __init__(self, aliases, enums, consts):
        self.aliases, self.enums, self.consts = aliases, enums, consts

    def parse(self, s, depth=0):
        s = " ".join(s.split())
        if depth > 20:
            raise ValueError("alias loop at %r" % s)
        s = re.sub(r"^\?\s*", "", s)  # optional pointers are pointers
        if s in ("void", "anyopaque", "noreturn"):
            return model.VOID
        m = re.match(r"^(?:\*\s*const\s+|\*\s*)?fn\s*\(", s)
        if m:
            close = matching(s, m.end() - 1)
            ret = re.sub(r"callconv\([^)]*\)", "", s[close + 1:])
            params = [self.parse(re.sub(r"^\w+\s*:\s*", "", p), depth + 1)
                      for p in split_top(s[m.end():close])]
            return model.ptr(("fn", self.parse(ret, depth + 1), tuple(params)))
        m = re.match(r"^(?:\*|\[\*c?\]|\[\*:[^\]]*\])\s*(?:allowzero\s+)?(?:const\s+)?"
                     r"(?:volatile\s+)?(?:align\([^)]*\)\s*)?(.+)$", s)
        if m:
            return model.ptr(self.parse(m.group(1), depth + 1))
        m = re.match(r"^\[([^\]*:]+)\]\s*(.+)$", s)
        if m:
            return ("array", self.parse(m.group(2), depth + 1), eval_int(m.group(1), self.consts))
        name = s.split(".")[-1]
        if name in PRIMITIVES:
            return ("int", PRIMITIVES[name])
        if name in self.aliases:
            return self.parse(self.aliases[name], depth + 1)
        if name in self.enums:
            return ("enum", name)
        return ("struct", name)


def _files(root):
    if os.path.isfile(root):
        return [root]
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in (".zig-cache", "zig-cache", "zig-out", ".git")]
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".zig")]
    return sorted(out)


# `c.GMS_LEVEL_SECRET`: the header's constant, by name (a translate-c module)
HEADER_NAME = re.compile(r"^\s*\w+\.(GMS_[A-Z0-9_]*)\s*$")


def _value(expr, values):
    """An integer, the name of the header's constant it is, or None."""
    m = HEADER_NAME.match(expr or "")
    if m and m.group(1) not in values:
        return m.group(1)
    return eval_int(expr, values)


def _flag_bits(b, name, body, where):
    """A packed struct of bools standing for C flags (`AllocFlags`, field
    `zero` at bit 0): the constant each field is (`Alloc_zero`, 1 << 0),
    to be checked against the header's (GMS_ALLOC_ZERO); and, for a
    `...Flags`, its bits must be all of the header's GMS_ALLOC_*."""
    prefix, bit, out = re.sub(r"_?[Ff]lags$", "", name), 0, []
    for item in split_top(body):
        fm = re.match(r"^(\w+)\s*:\s*(bool|u(\d+))\b", item.strip())
        if not fm:
            return out  # a field of another type: the bits after it are not known
        if fm.group(2) == "bool" and not fm.group(1).startswith("_"):
            out.append(("%s_%s" % (prefix, fm.group(1)), str(1 << bit), where))
        bit += 1 if fm.group(2) == "bool" else int(fm.group(3))
    if out and prefix != name:
        family = "GMS_%s_" % re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", prefix).upper()
        b.value_sets.append(("%s (bits)" % name, family, {int(v) for _, v, _ in out}, where))
    return out


def extract(root):
    b = Binding("zig")
    fns, structs, aliases, enums, consts = [], [], {}, {}, []
    for path in _files(root):
        if os.path.basename(path) == "build.zig":
            if "addTranslateC" in read(path):
                b.notes.append("%s: the declarations come from the header through "
                               "b.addTranslateC" % os.path.relpath(path))
            continue
        text = strip_comments(read(path), block=None)
        rel = os.path.relpath(path)

        def where(pos):
            return "%s:%d" % (rel, line_of(text, pos))

        for m in re.finditer(r"\bextern\s+(?:\"\w+\"\s+)?fn\s+(\w+)\s*\(", text):
            close = matching(text, m.end() - 1)
            semi = text.index(";", close)
            ret = re.sub(r"callconv\([^)]*\)", "", text[close + 1:semi]).strip()
            fns.append((m.group(1), text[m.end():close], ret, where(m.start(1))))
        for m in re.finditer(r"\bconst\s+(\w+)\s*(?::\s*([^=]+?))?\s*=\s*", text):
            name, rhs_at = m.group(1), m.end()
            rest = text[rhs_at:]
            sm = re.match(r"(extern|packed)?\s*(?:struct|union)\s*(?:\([^)]*\))?\s*\{|opaque\s*\{|"
                          r"enum\s*(\([^)]*\))?\s*\{", rest)
            if sm:
                end = matching(text, rhs_at + sm.end() - 1)
                body = text[rhs_at + sm.end():end]
                if rest.startswith("opaque"):
                    structs.append((name, None, where(m.start(1))))
                elif rest.startswith("enum") and sm.group(2):  # enum(c_int): a C enum
                    enums[name] = (body, where(m.start(1)))
                elif sm.group(1) == "extern" and "struct" in sm.group(0):
                    structs.append((name, body, where(m.start(1))))
                elif sm.group(1) == "packed" and "struct" in sm.group(0):
                    consts += _flag_bits(b, name, body, where(m.start(1)))
                continue
            rhs = rest[:rest.index(";")] if ";" in rest else rest
            if m.group(2) is None and not re.match(r"^\s*[-(\d@~]|^\s*std\.math", rhs) \
                    and not rhs.strip().startswith(("@import", "@cImport")) \
                    and not HEADER_NAME.match(rhs):
                aliases[name] = rhs.strip()  # a type: `const gms_buf = u64;`
            else:
                consts.append((name, rhs, where(m.start(1))))

    values = {}
    for name, expr, at in consts:
        v = _value(expr, values)
        if isinstance(v, int):
            values[name] = v
        if v is not None:
            b.constants.append((name, v, at))
    types = ZigTypes(aliases, enums, values)
    for name, (body, at) in enums.items():
        members, nxt = [], 0
        for item in split_top(body):
            vm = re.match(r"^@?\"?(\w+)\"?\s*(?:=\s*(.+))?$", item.strip(), re.S)
            if vm and vm.group(1) not in ("pub", "fn", "const", "_"):
                nxt = _value(vm.group(2), values) if vm.group(2) else nxt
                if nxt is None:
                    b.notes.append("enum %s: cannot read the value of %s" % (name, vm.group(1)))
                    break
                members.append((vm.group(1), nxt))
                # after `x = c.GMS_X` an unnumbered member is X + 1: not known here
                nxt = nxt + 1 if isinstance(nxt, int) else None
        b.enums[name] = (members, at)
    for name, params, ret, at in fns:
        ps = []
        for p in split_top(params):
            pm = re.match(r"^(?:noalias\s+|comptime\s+)?(\w+)\s*:\s*(.+)$", p)
            ps.append((pm.group(1), types.parse(pm.group(2))) if pm else ("", types.parse(p)))
        b.functions[name] = (types.parse(ret), ps, at)
    for name, body, at in structs:
        if body is None:
            b.structs[name] = Struct(name, [], at, opaque=True)
            continue
        fields = []
        for item in split_top(body):
            fm = re.match(r"^(\w+)\s*:\s*(.+?)(?:\s*=\s*.*)?$", item.strip(), re.S)
            if fm and fm.group(1) not in ("pub", "const", "fn"):
                fields.append((fm.group(1), types.parse(fm.group(2))))
        b.structs[name] = Struct(name, fields, at)
    return b
