#!/usr/bin/env python3
"""abicheck's own tests (CTest: abicheck/fixtures). For each language a
correct fixture passes and a deliberately wrong one is caught on each of
its mistakes; and C's layout rules, applied to the header's own field
types, give the compiler's layouts. Exits 77 without clang."""

import contextlib
import io
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import abicheck  # noqa: E402
import header  # noqa: E402
import model  # noqa: E402

FIX = os.path.join(HERE, "fixtures")

# What each bad fixture must be told: one line per deliberate mistake.
EXPECTED = {
    "python": [
        "gms_alloc: parameter 2 (size) is u32, header says size_t",
        "gms_alloc_asnyc: not in the header",
        "gms_on_violation: parameter 2 (fn) is fn(void*, struct ContextDesc*) -> void",
        "struct BufInfo (gms_buf_info): field 5 (flags) is u64, header says u32",
        "struct BufInfo (gms_buf_info): field 6 (level) at offset 40, header says 36",
        "enum Level: SECRET is 4, header says GMS_LEVEL_SECRET = 3",
        "ALLOC_ZERO is 2, header says GMS_ALLOC_ZERO = 1",
        "BY_CODE (error classes): no entry for GMS_E_BUSY (-11)",
        "gms_free: called without a declaration of its types",
    ],
    "rust": [
        "gms_alloc: parameter 2 (size) is u32, header says size_t",
        "gms_buf_pointer: not in the header",
        "gms_free: takes 1 parameters, header says 2",
        "gms_version: returns u64, header says u32",
        "struct gms_share_desc: field 4 (immutable) at offset 20, header says 24",
        "struct gms_share_desc: size 24, header says 32",
        "enum gms_access: GMS_ACCESS_READ_WRITE is 3, header says GMS_ACCESS_READ_WRITE = 2",
        "GMS_E_QUOTA is -6, header says GMS_E_QUOTA = -5",
    ],
    "zig": [
        "gms_alloc: parameter 2 (size) is u32, header says size_t",
        "gms_buf_size: not in the header",
        "struct gms_pressure: field 3 (reason) at offset 12, header says 16",
        "enum gms_level: GMS_LEVEL_SECRET is 4, header says GMS_LEVEL_SECRET = 3",
        "GMS_ALLOC_ZERO is 2, header says GMS_ALLOC_ZERO = 1",
        # wrapper types over a translate-c module (wrap.zig)
        "enum Level: secret is GMS_LEVEL_CONFIDENTIAL, header says GMS_LEVEL_SECRET",
        "alloc_zero is GMS_ALLOC_PAGES, header says GMS_ALLOC_ZERO",
        "struct Pressure (gms_pressure): field 3 (reason) is u64, header says i32",
        "Alloc_zero is 2, header says GMS_ALLOC_ZERO = 1",
        "AllocFlags (bits): 4 is not a GMS_ALLOC_* value of the header",
    ],
    "nim": [
        "gms_alloc: parameter 2 (size) is u32, header says size_t",
        "gms_buf_size: not in the header",
        "struct GmsContextDesc (gms_context_desc): field 5 (language) at offset 32, header says 28",
        "enum GmsLevel: lvlSecret is 4, header says GMS_LEVEL_SECRET = 3",
        "gmsEQuota is -4, header says GMS_E_QUOTA = -5",
        # the shapes of the real binding (callbacks.nim)
        "gms_on_violation: parameter 2 (fn) is fn(void*, struct GmsPressure*) -> void, "
        "header says fn(void*, struct gms_violation*) -> void",
        "gms_on_pressure: parameter 2 (fn) is closure fn(void*, struct GmsPressure*) -> void",
        "struct GmsPressure: the header has no struct gms_pressur",
        "struct GmsTestingOptions (gms_testing_options): field 1 (fail_nth_call) is u32, "
        "header says u64",
        "struct GmsViolation (gms_violation): field 1 (kind) is u8, "
        "header says enum gms_violation_kind",
    ],
    "julia": [
        "gms_alloc: parameter 2 (size) is u32, header says size_t",
        "gms_buf_size: not in the header",
        "gms_free: takes 1 parameters, header says 2",
        "gms_on_pressure: parameter 2 (fn) is fn(void*, struct gms_violation*) -> void, "
        "header says fn(void*, struct gms_pressure*) -> void",
        "gms_on_violation: parameter 2 (fn) is void*, header says fn(void*, struct gms_violation*)",
        "struct gms_pressure: field 3 (reason) at offset 12, header says 16",
        "struct gms_share_grant: field 4 (mode) has size 1, header says 4",
        "enum Level: LEVEL_SECRET is 4, header says GMS_LEVEL_SECRET = 3",
        "GMS_ALLOC_ZERO is 2, header says GMS_ALLOC_ZERO = 1",
        "ERROR_NAMES (error classes): no entry for GMS_E_BUSY (-11)",
    ],
}


def fixture(lang, which):
    if lang == "python":
        return os.path.join(FIX, "python", which + ".py")
    return os.path.join(FIX, lang, which)


def run(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = abicheck.main(list(args))
    return code, out.getvalue()


class Fixtures(unittest.TestCase):
    def test_correct_fixtures_pass(self):
        for lang in EXPECTED:
            with self.subTest(lang=lang):
                code, out = run("--" + lang, fixture(lang, "good"))
                self.assertEqual(code, 0, out)
                self.assertIn(": OK", out)

    def test_every_mistake_is_caught(self):
        for lang, wanted in EXPECTED.items():
            with self.subTest(lang=lang):
                code, out = run("--" + lang, fixture(lang, "bad"))
                self.assertEqual(code, 1, out)
                for line in wanted:
                    self.assertIn("%s: %s" % (lang, line), out)

    def test_translate_c_binding_has_nothing_to_check(self):
        # Zig's declarations from b.addTranslateC; its own enum, a libc
        # function and brackets in strings are no concern of abicheck.
        code, out = run("--zig", fixture("zig", "translatec"))
        self.assertEqual(code, 0, out)
        self.assertIn("zig (%s): nothing hand-written to check"
                      % os.path.relpath(fixture("zig", "translatec")), out)
        self.assertIn("through b.addTranslateC", out)

    def test_julia_call_with_two_signatures_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "two.jl"), "w") as f:
                f.write("a(c, b) = @ccall libgms().gms_free(c::Ptr{Cvoid}, b::UInt64)::Cint\n"
                        "b(c, b) = @ccall libgms().gms_free(c::Ptr{Cvoid}, b::UInt32)::Cint\n")
            code, out = run("--julia", d)
        self.assertEqual(code, 1, out)
        self.assertIn("gms_free is called with two signatures", out)

    def test_missing_binding_is_skipped(self):
        code, out = run("--rust", os.path.join(FIX, "no-such-crate"))
        self.assertEqual(code, 0, out)
        self.assertIn("is not there: skipped", out)


class Header(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.h = header.read(os.path.join(HERE, "..", "..", "include"))

    def test_reads_the_api(self):
        h = self.h
        ret, params = h.functions["gms_alloc"]
        self.assertEqual(ret, ("int", "i32"))
        self.assertEqual([t for _, t in params], [
            model.ptr(("struct", "gms_context")), ("int", "size_t"), ("int", "u32"),
            model.ptr(("int", "u64"))])
        self.assertIn("gms_runtime", h.opaque)
        self.assertEqual(h.constants["GMS_E_BUSY"], -11)
        self.assertEqual(h.constants["GMS_UNLIMITED"], 2**64 - 1)
        self.assertEqual(h.constants["GMS_ANY_LANGUAGE"], -1)
        self.assertIn("GMS_LEVEL_SECRET", h.enums["gms_level"])
        self.assertEqual(h.structs["DLDevice"]["size"], 8)  # a typedef'd anonymous struct

    def test_c_layout_rules_give_the_compilers_layouts(self):
        # The layouts of Rust, Zig and Nim structs are computed with these rules.
        for name, s in self.h.structs.items():
            with self.subTest(struct=name):
                size, align, offsets = model.struct_layout([f[1] for f in s["fields"]],
                                                           self.h.layout)
                self.assertEqual((size, align), (s["size"], s["align"]))
                self.assertEqual(offsets, [f[2] for f in s["fields"]])


if __name__ == "__main__":
    if not shutil.which(os.environ.get("CLANG", "clang")):
        print("abicheck: clang not found: skipped")
        sys.exit(77)
    result = unittest.main(exit=False, verbosity=1).result
    # a failed subtest counts once, as its test
    failed = len({getattr(t, "test_case", t).id() for t, _ in result.failures + result.errors})
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
