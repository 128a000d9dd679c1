"""The neutral description both sides are put into, and C's layout rules.

A type is a tuple:
  ("int", k)          k: i8 u8 i16 u16 i32 u32 i64 u64 size_t char bool f32 f64
  ("void",)
  ("ptr", T)          constness is not part of the ABI and is dropped
  ("array", T, n)
  ("struct", name)    a record, by its C name (or the binding's name for it)
  ("enum", name)      an enum type; passed as a C int
  ("fn", R, (P, ...)) a function pointer's target
  ("closure", F)      a Nim proc type without a C calling convention: a
                      function and its environment, two pointers
Types are for LP64 (Linux x86-64 and arm64), where gms runs.
"""

import re

INT_SIZES = {"i8": 1, "u8": 1, "char": 1, "bool": 1, "i16": 2, "u16": 2, "i32": 4,
             "u32": 4, "f32": 4, "i64": 8, "u64": 8, "size_t": 8, "f64": 8}

VOID = ("void",)


def ptr(t):
    return ("ptr", t)


def struct_key(name):
    """Names of one struct across languages meet here: gms_buf_info,
    GmsBufInfo and BufInfo all give "bufinfo"."""
    k = re.sub(r"[^a-z0-9]", "", name.lower())
    return k[3:] if k.startswith("gms") and len(k) > 3 else k


def norm(name):
    """A constant's name, style-insensitively (as Nim compares them)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def render(t):
    kind = t[0]
    if kind == "int":
        return t[1]
    if kind == "void":
        return "void"
    if kind == "ptr":
        # A pointer to a function is what C code calls a function pointer.
        return render(t[1]) if t[1][0] == "fn" else render(t[1]) + "*"
    if kind == "array":
        return "%s[%d]" % (render(t[1]), t[2])
    if kind in ("struct", "enum"):
        return "%s %s" % (kind, t[1])
    if kind == "fn":
        return "fn(%s) -> %s" % (", ".join(render(p) for p in t[2]), render(t[1]))
    if kind == "closure":
        return "closure " + render(t[1])
    return repr(t)


def layout_of(t, structs):
    """(size, align) of t by C's rules; structs maps a name to (size, align)
    or None when unknown (then this returns None)."""
    kind = t[0]
    if kind == "int":
        n = INT_SIZES[t[1]]
        return n, n
    if kind in ("ptr", "fn"):
        return 8, 8
    if kind == "enum":
        return 4, 4
    if kind == "closure":
        return 16, 8
    if kind == "array":
        inner = layout_of(t[1], structs)
        return None if inner is None else (inner[0] * t[2], inner[1])
    if kind == "struct":
        return structs(t[1])
    return None


def struct_layout(field_types, structs):
    """C's layout of a struct with these field types: (size, align, offsets),
    or None if a field's layout is unknown."""
    off, align, offsets = 0, 1, []
    for t in field_types:
        lay = layout_of(t, structs)
        if lay is None:
            return None
        size, a = lay
        off = (off + a - 1) // a * a
        offsets.append(off)
        off += size
        align = max(align, a)
    return (off + align - 1) // align * align, align, offsets
