#!/usr/bin/env python3
"""A second parser's opinion, with no Julia: tree-sitter's Julia grammar
parses each file (and each ```julia block of a Markdown file) and every
ERROR or MISSING node is printed with its line. Exit 1 on any.

  parse_check.py FILE...        (.jl files and .md files)
  parse_check.py --extract DIR FILE.md...   writes the ```julia blocks to DIR
"""

import os
import re
import sys

import tree_sitter
import tree_sitter_julia

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))


def julia_blocks(markdown):
    """(first line number, code) of each ```julia block."""
    out = []
    for m in re.finditer(r"^```julia[ \t]*\n(.*?)^```", markdown, re.M | re.S):
        out.append((markdown.count("\n", 0, m.start(1)) + 1, m.group(1)))
    return out


def problems(code, first_line=1):
    found = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            found.append((node.start_point[0] + first_line,
                          "missing " + node.type if node.is_missing else "cannot parse",
                          node.text[:50].decode("utf-8", "replace").split("\n")[0]))
            return
        for child in node.children:
            walk(child)

    walk(PARSER.parse(code.encode("utf-8")).root_node)
    return found


def main(args):
    if args[:1] == ["--extract"]:
        out = args[1]
        for path in args[2:]:
            for i, (line, code) in enumerate(julia_blocks(open(path, encoding="utf-8").read())):
                name = "%s-%d.jl" % (os.path.basename(os.path.dirname(os.path.abspath(path))), i)
                with open(os.path.join(out, name), "w") as f:
                    f.write(code)
        return 0
    bad = 0
    for path in args:
        text = open(path, encoding="utf-8").read()
        units = julia_blocks(text) if path.endswith(".md") else [(1, text)]
        for first, code in units:
            for line, what, near in problems(code, first):
                print("%s:%d: %s near %r" % (path, line, what, near))
                bad += 1
    print("tree-sitter-julia: %d files: %s" % (len(args), "%d errors" % bad if bad else "OK"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
