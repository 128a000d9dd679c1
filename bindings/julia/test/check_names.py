#!/usr/bin/env python3
"""Without Julia, a check of what the linter cannot see across files: every
`Gms.name` that the tests and the READMEs use is defined by the package
(a function, const, struct, @enum or one of its members, or a function
of Base the package adds a method to), and every name the module exports is defined.

  check_names.py PACKAGE_DIR FILE...      exit 1 and a line per unknown name
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "tools", "abicheck"))

from lang_julia import clean  # noqa: E402  (comments and docstrings out)


def definitions(pkg):
    names = set()
    for d, _, files in os.walk(os.path.join(pkg, "src")):
        for f in files:
            if not f.endswith(".jl"):
                continue
            text = clean(open(os.path.join(d, f), encoding="utf-8").read())
            names |= set(re.findall(r"^[ \t]*(?:function\s+)?(\w+!?)\s*\(", text, re.M))
            names |= set(re.findall(r"^[ \t]*(?:Base\.@kwdef\s+)?(?:mutable\s+)?struct\s+(\w+)",
                                    text, re.M))
            names |= set(re.findall(r"^[ \t]*(?:abstract\s+type|const)\s+(\w+)", text, re.M))
            names |= set(re.findall(r"^[ \t]*(\w+!?)\(.*\)\s*(?:::\s*\w+\s*)?=", text, re.M))
            for m in re.finditer(r"@enum\s+(\w+)(?:::\w+)?(.*?)(?:\bend\b|$)", text, re.S | re.M):
                names.add(m.group(1))
                names |= set(re.findall(r"\b([A-Z][A-Z0-9_]+)\b", m.group(2)))
            for m in re.finditer(r"@enum\s+\w+(?:::\w+)?\s+begin(.*?)\bend\b", text, re.S):
                names |= set(re.findall(r"^\s*(\w+)", m.group(1), re.M))
            names |= set(re.findall(r"^[ \t]*(?:function\s+)?Base\.(\w+!?)\s*\(", text, re.M))
            exports = re.findall(r"^export\s+(.*?)\n\s*\n", text, re.M | re.S)
            names.add("__exports__:" + ",".join(exports))
    return names


def main(pkg, files):
    defined = definitions(pkg)
    exported = set()
    for n in defined:
        if n.startswith("__exports__:"):
            exported |= {e for e in re.split(r"[\s,]+", n.split(":", 1)[1]) if e}
    defined = {n for n in defined if not n.startswith("__exports__:")}
    bad = ["export %s: not defined" % e for e in sorted(exported - defined)]
    for path in files:
        text = open(path, encoding="utf-8").read()
        for i, line in enumerate(text.splitlines(), 1):
            for name in re.findall(r"\bGms\.(\w+!?)", line):
                if name not in defined:
                    bad.append("%s:%d: Gms.%s is not defined by the package" % (path, i, name))
    for b in bad:
        print(b)
    print("names: %d files, %d names defined: %s" % (len(files), len(defined),
                                                     "%d unknown" % len(bad) if bad else "OK"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
