"""Compares one binding's declarations with the header's description.

An extractor (lang_*.py) fills a Binding with the binding's own names and
neutral types (model.py); everything below is common to the languages.
"""

import re

import model


class Struct:
    def __init__(self, name, fields, where="", c_name=None, opaque=False, layout=None):
        self.name = name          # the binding's name for it
        self.c_name = c_name      # the C name, where the binding says it (Nim's importc)
        self.fields = fields      # [(name, type)]
        self.where = where
        self.opaque = opaque
        # (size, align, [offsets], [field sizes]) where the language states it
        # (ctypes); otherwise computed here with C's rules.
        self.layout = layout


class Binding:
    def __init__(self, lang):
        self.lang = lang
        self.functions = {}   # C name -> (ret, [(param name, type)], where)
        self.structs = {}     # binding name -> Struct
        # A value is an int, or the name of the header's constant the binding
        # takes it from (Zig's `c.GMS_LEVEL_SECRET`).
        self.enums = {}       # binding name -> ([(member, value)], where)
        self.enum_c_names = {}  # binding name -> the C name, where the binding says it
        self.constants = []   # [(binding name, value, where)]
        self.matched_constants = 0  # how many constants meet the header's (set by check)
        self.value_sets = []  # [(what, C name prefix, {values}, where)]: must equal the header's
        self.aliases = set()  # {(header int kind, binding int kind)} the language cannot tell apart
        self.calls = {}       # C name -> where: functions the binding calls (Python)
        self.notes = []


def _words(name):
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w for w in name.lower().split("_") if w]


def _common_prefix(word_lists):
    """How many leading words all names share (Nim's lvlPublic, lvlSecret:
    1), leaving each at least one."""
    if len(word_lists) < 2:
        return 0
    n = 0
    while all(len(w) > n + 1 and w[n] == word_lists[0][n] for w in word_lists):
        n += 1
    return n


def resolve_member(name, members):
    """The header member (of one enum) a binding's member name means."""
    w, n = _words(name), model.norm(name)
    exact = [m for m in members if model.norm(m) in (n, "gms" + n)]
    if exact:
        return exact[0]
    for cands in ([m for m in members if _words(m)[-len(w):] == w],
                  [m for m in members if model.norm(m).endswith(n)]):
        if len(cands) == 1:
            return cands[0]
    return None


class Checker:
    def __init__(self, header):
        self.h = header
        self.problems = []

    def problem(self, b, where, text):
        self.problems.append("%s: %s%s" % (b.lang, text, "  [%s]" % where if where else ""))

    # ---- types ----------------------------------------------------------

    def header_struct(self, b, name):
        """The header's name for a struct the binding names."""
        s = b.structs.get(name)
        if s is not None and s.c_name:  # the binding says which; no guessing
            return s.c_name if s.c_name in self.h.structs or s.c_name in self.h.opaque else None
        return name if name in self.h.structs or name in self.h.opaque else \
            self.h.struct_by_key(model.struct_key(name))

    def same(self, b, ht, bt):
        hk, bk = ht[0], bt[0]
        if hk == "int" and bk == "int":
            chars = {"char", "i8", "u8"}
            return ht[1] == bt[1] or (ht[1] == "char" and bt[1] in chars) or \
                (bt[1] == "char" and ht[1] in chars) or (ht[1], bt[1]) in b.aliases
        if hk == "enum" or (bk == "enum" and hk == "int"):
            # a C enum is passed as an int; which int type the binding uses for it is its own
            return bk == "enum" or (bk == "int" and bt[1] in ("i32", "u32"))
        if hk == "ptr" and bk == "ptr":
            hi, bi = ht[1], bt[1]
            if hi[0] == "struct" and hi[1] in self.h.opaque:
                return bi == model.VOID or (bi[0] == "struct" and
                                            self.header_struct(b, bi[1]) == hi[1])
            return self.same(b, hi, bi)
        if hk == "array" and bk == "array":
            return ht[2] == bt[2] and self.same(b, ht[1], bt[1])
        if hk == "struct" and bk == "struct":
            return self.header_struct(b, bt[1]) == ht[1]
        if hk == "fn" and bk == "fn":
            return len(ht[2]) == len(bt[2]) and self.same(b, ht[1], bt[1]) and \
                all(self.same(b, x, y) for x, y in zip(ht[2], bt[2]))
        return ht == bt

    # ---- functions --------------------------------------------------------

    def functions(self, b):
        for name, (ret, params, where) in sorted(b.functions.items()):
            decl = self.h.functions.get(name)
            if decl is None and not name.startswith("gms_"):
                # another library's (libc, a test's helper): not gms's to check
                b.notes.append("%s: not a gms function (not checked)  [%s]" % (name, where))
                continue
            if decl is None:
                self.problem(b, where, "%s: not in the header" % name)
                continue
            hret, hparams = decl
            if ret is not None and not self.same(b, hret, ret):
                self.problem(b, where, "%s: returns %s, header says %s"
                             % (name, model.render(ret), model.render(hret)))
            if params is None:
                continue
            if len(params) != len(hparams):
                self.problem(b, where, "%s: takes %d parameters, header says %d"
                             % (name, len(params), len(hparams)))
            for i, ((pname, t), (hname, ht)) in enumerate(zip(params, hparams), 1):
                if not self.same(b, ht, t):
                    self.problem(b, where, "%s: parameter %d (%s) is %s, header says %s"
                                 % (name, i, hname, model.render(t), model.render(ht)))
        for name, where in sorted(b.calls.items()):
            if name in self.h.functions and name not in b.functions:
                self.problem(b, where, "%s: called without a declaration of its types" % name)
        unbound = sorted(set(self.h.functions) - set(b.functions))
        if unbound:
            b.notes.append("%d header functions not declared: %s"
                           % (len(unbound), " ".join(unbound)))

    # ---- structs --------------------------------------------------------------

    def binding_layout(self, b, s, seen=()):
        """(size, align, offsets, field sizes) of a binding's struct."""
        if s.layout:
            return s.layout
        if s.name in seen:
            return None

        def nested(name):
            inner = b.structs.get(name)
            if inner is not None and not inner.opaque:
                lay = self.binding_layout(b, inner, seen + (s.name,))
                return lay and lay[:2]
            hname = self.header_struct(b, name)
            return self.h.layout(hname) if hname else None

        types = [t for _, t in s.fields]
        lay = model.struct_layout(types, nested)
        if lay is None:
            return None
        sizes = [model.layout_of(t, nested)[0] for t in types]
        return lay + (sizes,)

    def structs(self, b):
        for bname, s in sorted(b.structs.items()):
            hname = self.header_struct(b, bname)
            if hname is None:
                self.problem(b, s.where, "struct %s: the header has no struct %s" % (
                    bname, s.c_name or "of that name"))
                continue
            label = "struct %s" % bname + ("" if bname == hname else " (%s)" % hname)
            if hname in self.h.opaque or s.opaque:
                if (hname in self.h.opaque) != s.opaque:
                    self.problem(b, s.where, "%s: %s here, %s in the header" % (
                        label, "opaque" if s.opaque else "defined",
                        "opaque" if hname in self.h.opaque else "defined"))
                continue
            hs = self.h.structs[hname]
            lay = self.binding_layout(b, s)
            if lay is None:
                self.problem(b, s.where, "%s: cannot compute its layout" % label)
                continue
            size, align, offsets, sizes = lay
            if size != hs["size"]:
                self.problem(b, s.where, "%s: size %d, header says %d" % (label, size, hs["size"]))
            if align != hs["align"]:
                self.problem(b, s.where, "%s: alignment %d, header says %d"
                             % (label, align, hs["align"]))
            if len(s.fields) != len(hs["fields"]):
                self.problem(b, s.where, "%s: %d fields, header has %d"
                             % (label, len(s.fields), len(hs["fields"])))
            shifted = 0  # fields after a misplaced one: counted, not listed
            for i, ((fname, t), off, fsize, (hf, ht, hoff, hsize)) in enumerate(
                    zip(s.fields, offsets, sizes, hs["fields"]), 1):
                what = "%s: field %d (%s)" % (label, i, hf)
                if model.norm(fname) != model.norm(hf):
                    self.problem(b, s.where, "%s is named %s" % (what, fname))
                if off != hoff and shifted:
                    shifted += 1
                elif off != hoff:
                    shifted = 1
                    self.problem(b, s.where, "%s at offset %d, header says %d" % (what, off, hoff))
                if fsize != hsize:
                    self.problem(b, s.where, "%s has size %d, header says %d"
                                 % (what, fsize, hsize))
                if not self.same(b, ht, t):
                    self.problem(b, s.where, "%s is %s, header says %s"
                                 % (what, model.render(t), model.render(ht)))
            if shifted > 1:
                self.problem(b, s.where, "%s: %d more fields after it are misplaced"
                             % (label, shifted - 1))

    # ---- enums and constants ---------------------------------------------------

    def header_enum(self, b, bname, members):
        c_name = b.enum_c_names.get(bname)
        if c_name:  # the binding says which; no guessing
            return c_name if c_name in self.h.enums else None
        for hname in self.h.enums:
            if not hname.startswith("(") and model.struct_key(hname) == model.struct_key(bname):
                return hname
        best, count = [], 0
        prefix = _common_prefix([_words(m) for m, _ in members])
        for hname, hmembers in self.h.enums.items():
            n = sum(1 for m, _ in members if resolve_member(m, hmembers) or
                    resolve_member("_".join(_words(m)[prefix:]), hmembers))
            if n > count:
                best, count = [hname], n
            elif n == count and n:
                best.append(hname)
        return best[0] if len(best) == 1 and count * 2 >= len(members) else None

    def constants(self, b):
        for bname, (members, where) in sorted(b.enums.items()):
            hname = self.header_enum(b, bname, members)
            if hname is None and bname in b.enum_c_names:
                self.problem(b, where, "enum %s: the header has no enum %s"
                             % (bname, b.enum_c_names[bname]))
                continue
            if hname is None:  # may be the binding's own, not the header's
                b.notes.append("enum %s: no enum of the header matches it (not checked)" % bname)
                continue
            prefix = _common_prefix([_words(m) for m, _ in members])
            # A member a later header adds as a #define with the enum's
            # prefix (gms/access.h's GMS_ACCESS_ATOMIC extends gms_access).
            hm = list(self.h.enums[hname])
            cprefix = "_".join(_words(hm[0])[:_common_prefix([_words(x) for x in hm])]) \
                if len(hm) > 1 else None
            for m, value in members:
                c = resolve_member(m, self.h.enums[hname]) or \
                    resolve_member("_".join(_words(m)[prefix:]), self.h.enums[hname])
                if c is None and cprefix:
                    extra = (cprefix + "_" + "_".join(_words(m)[prefix:])).upper()
                    c = extra if extra in self.h.constants else None
                if c is None:
                    self.problem(b, where, "enum %s: %s is not a member of the header's %s"
                                 % (bname, m, hname))
                elif isinstance(value, str) and value != c:
                    self.problem(b, where, "enum %s: %s is %s, header says %s"
                                 % (bname, m, value, c))
                elif isinstance(value, int) and (value - self.h.constants[c]) % 2**64:
                    self.problem(b, where, "enum %s: %s is %d, header says %s = %d"
                                 % (bname, m, value, c, self.h.constants[c]))
        by_norm = {model.norm(c): c for c in self.h.constants}
        for bname, value, where in b.constants:
            n = model.norm(bname)
            c = by_norm.get(n) or by_norm.get("gms" + n)
            b.matched_constants += c is not None or isinstance(value, str)
            if isinstance(value, str):  # the header's constant, by name
                if value not in self.h.constants:
                    self.problem(b, where, "%s is %s, which the header does not define"
                                 % (bname, value))
                elif c is not None and value != c:
                    self.problem(b, where, "%s is %s, header says %s" % (bname, value, c))
                continue
            if c is not None and (value - self.h.constants[c]) % 2**64:  # !0 is UINT64_MAX
                self.problem(b, where, "%s is %d, header says %s = %d"
                             % (bname, value, c, self.h.constants[c]))
        for what, prefix, values, where in b.value_sets:
            want = {v for c, v in self.h.constants.items() if c.startswith(prefix)}
            for v in sorted(want - values):
                self.problem(b, where, "%s: no entry for %s (%d)" % (what, " ".join(
                    c for c, x in self.h.constants.items() if c.startswith(prefix) and x == v), v))
            for v in sorted(values - want):
                self.problem(b, where, "%s: %d is not a %s* value of the header" % (what, v, prefix))

    def check(self, b):
        before = len(self.problems)
        self.functions(b)
        self.structs(b)
        self.constants(b)
        return self.problems[before:]
