#!/usr/bin/env bash
# Checks the Julia binding without Julia (none can be installed here; see
# README.md). `make test-julia` calls it. Each check is one test:
#   abicheck   every @ccall of the package, its C structs, enums, constants
#              and error table against include/gms.h (tools/abicheck);
#   lint       fatou (a Julia linter) over the package: clean;
#   parse      tree-sitter's Julia grammar, a second parser, over the package
#              and the ```julia blocks of the READMEs: no syntax error;
#   names      every Gms.name the tests and the READMEs use is defined by
#              the package, and every export is;
#   sanity     both parsers and the names check reject a broken file, so a
#              pass above means something.
# The last line is "N passed, N failed"; exits 1 when anything failed.
#
# fatou and tree-sitter come from the Python package index, into a virtual
# environment in build/jlenv (python3-venv from Debian's packages when
# python3 has no venv module). The checks take seconds.
set -eu
cd "$(dirname "$0")/../.."
ROOT=$PWD
PKG=$ROOT/bindings/julia
PY=${PYTHON:-python3}
VENV=$ROOT/build/jlenv
PINS=(fatou==0.24.0 tree-sitter==0.26.1 tree-sitter-julia==0.23.1)

mkdir -p "$ROOT/build"
. "$ROOT/scripts/venv.sh"
make_venv "$VENV"
if ! "$VENV/bin/python" -c 'import tree_sitter, tree_sitter_julia' >/dev/null 2>&1 \
    || [ "$("$VENV/bin/fatou" --version 2>/dev/null)" != "fatou 0.24.0" ]; then
  echo "test.sh: installing ${PINS[*]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}"
fi
FATOU=("$VENV/bin/fatou" --no-config --color never)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
JL_FILES=$(find "$PKG" -name '*.jl' | sort)
READMES=("$ROOT/README.md" "$PKG/README.md")
# The READMEs' Julia examples, as files for the names check.
"$VENV/bin/python" "$PKG/test/parse_check.py" --extract "$WORK" "${READMES[@]}"
mkdir "$WORK/broken"
printf 'function f(x)\n    return x +\nend\nGms.no_such_function(1)\n' >"$WORK/broken/broken.jl"

passed=0
failed=0
# check NAME COMMAND...: one test; its output is shown, indented.
check() {
  local name=$1 rc=0
  shift
  "$@" >"$WORK/out" 2>&1 || rc=$?
  sed 's/^/  /' "$WORK/out"
  if [ "$rc" = 0 ]; then
    passed=$((passed + 1))
    echo "julia/$name: ok"
  else
    failed=$((failed + 1))
    echo "julia/$name: FAILED (status $rc)"
  fi
}

check abicheck "$PY" "$ROOT/tools/abicheck/abicheck.py" --julia "$PKG"
# shellcheck disable=SC2086
check lint "${FATOU[@]}" lint $JL_FILES
# shellcheck disable=SC2086
check parse "$VENV/bin/python" "$PKG/test/parse_check.py" $JL_FILES "${READMES[@]}"
check names "$PY" "$PKG/test/check_names.py" "$PKG" "$PKG/test/runtests.jl" "$WORK"/*.jl
# Each of the three must refuse the broken file.
sanity() {
  ! "${FATOU[@]}" lint "$WORK/broken/broken.jl" &&
    ! "$VENV/bin/python" "$PKG/test/parse_check.py" "$WORK/broken/broken.jl" &&
    ! "$PY" "$PKG/test/check_names.py" "$PKG" "$WORK/broken/broken.jl"
}
check sanity sanity

echo "Julia itself did not run: julia --project=bindings/julia -e 'using Pkg; Pkg.test()' runs the tests"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
