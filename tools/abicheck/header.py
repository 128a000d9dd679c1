"""Reads the public headers into the neutral description (model.py).

Functions, records, enums and typedefs come from clang's JSON AST of one
translation unit that includes every header; only declarations whose
location is in the include folder are kept. Sizes, alignments, offsets and
the values of enum members and #define'd integer constants come from a
probe program compiled by the C compiler and run, so they are the
compiler's, not recomputed. The macros are those the headers add to what
<stddef.h> and <stdint.h> define (clang -dM -E of both, compared).
"""

import json
import os
import re
import subprocess
import tempfile

import model

BUILTINS = {
    "char": "char", "signed char": "i8", "unsigned char": "u8",
    "short": "i16", "unsigned short": "u16", "int": "i32", "unsigned int": "u32",
    "long": "i64", "unsigned long": "u64", "long long": "i64",
    "unsigned long long": "u64", "_Bool": "bool", "float": "f32", "double": "f64",
}
# Typedefs kept by name: a binding must say size_t, not the u64 it is here.
KEPT_TYPEDEFS = {"size_t": "size_t"}


class Header:
    def __init__(self):
        self.functions = {}  # name -> (ret, [(param name, type)])
        self.structs = {}    # name -> {"size", "align", "fields": [(name, type, offset, size)]}
        self.opaque = set()  # structs declared but not defined (gms_runtime)
        self.enums = {}      # enum name ("(anonymous N)" if none) -> [member names]
        self.constants = {}  # name -> int
        self.typedefs = {}   # name -> C type spelling

    def struct_by_key(self, key):
        for name in list(self.structs) + sorted(self.opaque):
            if model.struct_key(name) == key:
                return name
        return None

    def layout(self, name):
        s = self.structs.get(name)
        return (s["size"], s["align"]) if s else None

    def to_json(self):
        r = model.render
        return {
            "functions": {n: {"return": r(ret), "params": [{"name": p, "type": r(t)} for p, t in ps]}
                          for n, (ret, ps) in sorted(self.functions.items())},
            "structs": {n: {"size": s["size"], "align": s["align"],
                            "fields": [{"name": f, "type": r(t), "offset": o, "size": z}
                                       for f, t, o, z in s["fields"]]}
                        for n, s in sorted(self.structs.items())},
            "opaque_structs": sorted(self.opaque),
            "enums": dict(sorted(self.enums.items())),
            "constants": dict(sorted(self.constants.items())),
        }


# ---- C type spellings -> neutral types --------------------------------------

def _split_top(s, sep=","):
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def _matching_open(s, close):
    depth = 0
    for i in range(close, -1, -1):
        depth += {")": 1, "(": -1}.get(s[i], 0)
        if depth == 0:
            return i
    raise ValueError("unbalanced: " + s)


def split_function(spelling):
    """"int (gms_context *, size_t)" -> ("int", ["gms_context *", "size_t"])."""
    s = spelling.strip()
    start = _matching_open(s, len(s) - 1)
    params = [p.strip() for p in _split_top(s[start + 1:-1])]
    if params == ["void"]:
        params = []
    return s[:start].strip(), params


class TypeParser:
    def __init__(self, typedefs, anonymous):
        self.typedefs = typedefs    # name -> spelling
        self.anonymous = anonymous  # typedef name of an anonymous record/enum -> kind

    def parse(self, s):
        s = re.sub(r"\b(const|volatile|restrict|__restrict)\b", " ", s)
        s = " ".join(s.split())
        m = re.match(r"^(.*)\(\*\)\s*\((.*)\)$", s)
        if m:  # a function pointer: "void (*)(void *, int)"
            ret, params = split_function(m.group(1) + "(" + m.group(2) + ")")
            return model.ptr(("fn", self.parse(ret), tuple(self.parse(p) for p in params)))
        m = re.match(r"^(.*?)\s*\[(\d+)\]$", s)
        if m:
            return ("array", self.parse(m.group(1)), int(m.group(2)))
        if s.endswith("*"):
            return model.ptr(self.parse(s[:-1]))
        m = re.match(r"^(struct|union|enum) (\w+)$", s)
        if m:
            return ("enum" if m.group(1) == "enum" else "struct", m.group(2))
        if s == "void":
            return model.VOID
        if s in BUILTINS:
            return ("int", BUILTINS[s])
        if s in KEPT_TYPEDEFS:
            return ("int", KEPT_TYPEDEFS[s])
        if s in self.anonymous:
            return (self.anonymous[s], s)
        if s in self.typedefs:
            return self.parse(self.typedefs[s])
        raise ValueError("cannot read the C type %r" % s)


# ---- reading the headers ---------------------------------------------------

def _run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def _decl_files(nodes):
    """Yields (file, node) for top-level nodes. clang's JSON names a file only
    where it changes from the last location printed (in pre-order: loc,
    range, then inner nodes), so the walk keeps track of it."""
    state = {"file": None}

    def locations(part):
        return [part["spellingLoc"], part["expansionLoc"]] if "spellingLoc" in part else [part]

    def walk(node):
        for key in ("loc", "range"):
            parts = [node.get(key, {})] if key == "loc" else \
                [node.get(key, {}).get("begin", {}), node.get(key, {}).get("end", {})]
            for part in parts:
                for loc in locations(part):
                    if "file" in loc:
                        state["file"] = loc["file"]
            if key == "loc":
                where = state["file"]
        for child in node.get("inner", []):
            walk(child)
        return where

    for node in nodes:
        yield walk(node), node


def read(include_dir, clang="clang", cc="cc"):
    include_dir = os.path.abspath(include_dir)
    headers = [os.path.join(include_dir, "gms.h")] + sorted(
        os.path.join(include_dir, "gms", f)
        for f in os.listdir(os.path.join(include_dir, "gms")) if f.endswith(".h"))
    h = Header()
    with tempfile.TemporaryDirectory() as tmp:
        tu = os.path.join(tmp, "all.c")
        with open(tu, "w") as f:
            f.writelines('#include "%s"\n' % p for p in headers)
        base = os.path.join(tmp, "base.c")
        with open(base, "w") as f:
            f.write("#include <stddef.h>\n#include <stdint.h>\n")
        ast = json.loads(_run([clang, "-Xclang", "-ast-dump=json", "-fsyntax-only",
                               "-std=c11", "-I", include_dir, tu]))
        _read_ast(h, ast, include_dir)
        macros = _macros(_run([clang, "-dM", "-E", "-I", include_dir, tu]))
        for name in _macros(_run([clang, "-dM", "-E", base])):
            macros.pop(name, None)
        _probe(h, macros, headers, tmp, cc, include_dir)
    return h


def _read_ast(h, ast, include_dir):
    owned = {}       # record/enum id -> typedef name, for anonymous ones
    records, enums = [], []
    for file, node in _decl_files(ast["inner"]):
        kind = node["kind"]
        if kind == "TypedefDecl":
            h.typedefs[node["name"]] = node["type"]["qualType"]
            tag = node.get("inner", [{}])[0].get("ownedTagDecl")
            if tag and not tag.get("name"):
                owned[tag["id"]] = node["name"]
        if not (file and os.path.abspath(file).startswith(include_dir + os.sep)):
            continue
        if kind == "FunctionDecl":
            h.functions[node["name"]] = node
        elif kind == "RecordDecl":
            records.append(node)
        elif kind == "EnumDecl":
            enums.append(node)
    anonymous = {}
    for node in records + enums:
        if not node.get("name") and node["id"] in owned:
            anonymous[owned[node["id"]]] = "enum" if node["kind"] == "EnumDecl" else "struct"
    tp = TypeParser(h.typedefs, anonymous)
    for name, node in list(h.functions.items()):
        ret, _ = split_function(node["type"]["qualType"])
        params = [(p.get("name", ""), tp.parse(p["type"]["qualType"]))
                  for p in node.get("inner", []) if p["kind"] == "ParmVarDecl"]
        h.functions[name] = (tp.parse(ret), params)
    for node in records:
        name = node.get("name") or owned.get(node["id"])
        if not name:
            continue
        if not node.get("completeDefinition"):
            if name not in h.structs:
                h.opaque.add(name)
            continue
        h.opaque.discard(name)
        h.structs[name] = {"fields": [(f["name"], tp.parse(f["type"]["qualType"]), None, None)
                                      for f in node.get("inner", [])
                                      if f["kind"] == "FieldDecl"]}
    for i, node in enumerate(enums):
        name = node.get("name") or owned.get(node["id"]) or "(anonymous %d)" % i
        h.enums[name] = [c["name"] for c in node.get("inner", []) if c["kind"] == "EnumConstantDecl"]


def _macros(text):
    """Object-like macros: name -> body."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"#define (\w+)(\(?)\s*(.*)$", line)
        if m and not m.group(2):
            out[m.group(1)] = m.group(3)
    return out


def _probe(h, macros, headers, tmp, cc, include_dir):
    """Compiles and runs a program printing every layout and value."""
    ints = [n for n, body in macros.items()
            if body and not re.search(r'[{"]|__attribute__|^\s*$', body)]
    consts = [m for members in h.enums.values() for m in members] + ints
    lines = ['#include "%s"' % p for p in headers]
    lines += ["#include <stdio.h>", "#include <stddef.h>", "int main(void) {"]
    for name, s in h.structs.items():
        t = name if name[0].isupper() else "struct " + name
        lines.append('printf("S %s %%zu %%zu\\n", sizeof(%s), _Alignof(%s));' % (name, t, t))
        for f, _, _, _ in s["fields"]:
            lines.append('printf("F %s %s %%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s *)0)->%s));'
                         % (name, f, t, f, t, f))
    for c in consts:
        lines.append('printf("C %s %%d %%llu\\n", (%s) < 0, (unsigned long long)(%s));' % (c, c, c))
    lines += ["return 0;", "}"]
    src, exe = os.path.join(tmp, "probe.c"), os.path.join(tmp, "probe")
    with open(src, "w") as f:
        f.write("\n".join(lines) + "\n")
    _run([cc, "-std=c11", "-w", "-I", include_dir, src, "-o", exe])
    fields = {}
    for line in _run([exe]).splitlines():
        w = line.split()
        if w[0] == "S":
            h.structs[w[1]]["size"], h.structs[w[1]]["align"] = int(w[2]), int(w[3])
        elif w[0] == "F":
            fields[(w[1], w[2])] = (int(w[3]), int(w[4]))
        elif w[0] == "C":
            v = int(w[3])
            h.constants[w[1]] = v - (1 << 64) if w[2] == "1" else v
    for name, s in h.structs.items():
        s["fields"] = [(f, t) + fields[(name, f)] for f, t, _, _ in s["fields"]]
