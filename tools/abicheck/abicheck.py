#!/usr/bin/env python3
"""abicheck: checks each language binding's declarations against the public
headers of gms (include/gms.h, include/gms/*.h). See README.md.

  abicheck.py [--python [MODULE]] [--rust DIR] [--zig DIR] [--nim DIR] [--julia DIR]
              [--include DIR] [--dump FILE] [--verbose]

With no language named, every binding of the repository is checked and one
that is not there is skipped with a note. Exit status: 0 all match, 1 a
mismatch, 77 clang is missing (the test is then reported as not run).
"""

import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import check  # noqa: E402
import header  # noqa: E402

LANGS = {  # language -> (extractor module, the repository's binding)
    "python": ("lang_python", "bindings/python/gms/_lib.py"),
    "rust": ("lang_rust", "bindings/rust"),
    "zig": ("lang_zig", "bindings/zig"),
    "nim": ("lang_nim", "bindings/nim"),
    "julia": ("lang_julia", "bindings/julia"),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description="Check the bindings' declarations against gms's headers.")
    for lang, (_, default) in LANGS.items():
        ap.add_argument("--" + lang, nargs="?", const=os.path.join(REPO, default), metavar="PATH",
                        help="the %s binding (default %s)" % (lang, default))
    ap.add_argument("--include", default=os.path.join(REPO, "include"))
    ap.add_argument("--dump", metavar="FILE", help="write the headers' description as JSON")
    ap.add_argument("--clang", default=os.environ.get("CLANG", "clang"))
    ap.add_argument("--cc", default=os.environ.get("CC") or "cc")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the notes too")
    args = ap.parse_args(argv)

    if not shutil.which(args.clang):
        print("abicheck: %s not found: skipped" % args.clang)
        return 77
    h = header.read(args.include, clang=args.clang, cc=args.cc)
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump(h.to_json(), f, indent=1)
    print("abicheck: the headers declare %d functions, %d structs, %d constants"
          % (len(h.functions), len(h.structs), len(h.constants)))

    chosen = {lang: getattr(args, lang) for lang in LANGS if getattr(args, lang)}
    if not chosen:
        chosen = {lang: os.path.join(REPO, path) for lang, (_, path) in LANGS.items()}
    checker, failed = check.Checker(h), 0
    for lang, path in chosen.items():
        if not os.path.exists(path):
            print("%s: %s is not there: skipped" % (lang, os.path.relpath(path)))
            continue
        try:
            b = __import__(LANGS[lang][0]).extract(path)
        except Exception as e:  # a binding the extractor cannot read is a failure
            print("%s: cannot read %s: %s: %s" % (lang, path, type(e).__name__, e))
            failed += 1
            continue
        read_notes = list(b.notes)  # the extractor's; the checker adds its own
        problems = checker.check(b)
        gms_functions = [f for f in b.functions if f.startswith("gms_")]
        if not (gms_functions or b.structs or b.enums or b.matched_constants or b.value_sets):
            # e.g. Zig's b.addTranslateC: the declarations are the header's own
            print("%s (%s): nothing hand-written to check" % (lang, os.path.relpath(path)))
            for n in read_notes:
                print("  note: " + n)
            continue
        print("%s (%s): %d functions, %d structs, %d enums, %d constants: %s" % (
            lang, os.path.relpath(path), len(b.functions), len(b.structs), len(b.enums),
            len(b.constants), "%d mismatches" % len(problems) if problems else "OK"))
        for p in problems:
            print("  " + p)
        if args.verbose:
            for n in b.notes:
                print("  note: " + n)
        failed += len(problems)
    print("abicheck: %d mismatches" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
