#!/usr/bin/env bash
# Runs everything the Zig binding is checked by (`make test-zig` calls it):
#   lint     zig fmt --check and zig ast-check of every .zig file, and the
#            README's example;
#   unit     `zig build test`: tests/gms_test.zig against build/libgms.so;
#   cross    Zig and Python in one process (tests/cross);
#   install  the README's example in a fresh project against a
#            `cmake --install` prefix, found by pkg-config (tests/install).
# Each suite's "N passed, N failed" is shown as "SUITE: N ok, N failing";
# the last line is the plain total, "N passed, N failed". Exits 1 when
# anything failed.
#
# The compiler is the `ziglang` package of the Python package index,
# installed here into a virtual environment in build/zigenv when missing
# (python3-venv comes from Debian's packages when python3 has no venv
# module). Zig's caches live in build/zig-cache and build/zig-local.
# libgms is configured and built in build/ as `make build` does, if needed.
set -eu
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=$ROOT/build
JOBS=${JOBS:-2}
export GMS_BACKEND=host
export ZIG_GLOBAL_CACHE_DIR=$BUILD/zig-cache
# Zig compiles its own tools (the build runner, translate-c) on first use,
# optimised unless ZIG_DEBUG_CMD is set. Built for debugging they compile
# in under a minute instead of several on 2 cores, and they have little to
# do here.
export ZIG_DEBUG_CMD=1

# ---- the compiler --------------------------------------------------------------
PY=${PYTHON:-python3}
ZIGENV=$BUILD/zigenv
. "$ROOT/scripts/venv.sh"
make_venv "$ZIGENV"
if ! "$ZIGENV/bin/python" -m ziglang version >/dev/null 2>&1; then
  echo "test.sh: installing the ziglang package"
  "$ZIGENV/bin/python" -m pip install -q --disable-pip-version-check "ziglang>=0.17,<0.18"
fi
ZIG=("$ZIGENV/bin/python" -m ziglang)
echo "zig $("${ZIG[@]}" version)"

# ---- libgms ----------------------------------------------------------------------
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
# Everything `cmake --install` puts in a prefix, for the install test.
cmake --build "$BUILD" -j "$JOBS" >/dev/null

# ---- the suites ------------------------------------------------------------------
passed=0
failed=0
# suite NAME COMMAND...: runs the command, shows its output with its closing
# "N passed, N failed" renamed, and adds that line to the totals (a suite
# that fails with no such line counts as one failure).
suite() {
  local name=$1 log=$BUILD/zig-test-$1.log rc=0 line p f
  shift
  "$@" >"$log" 2>&1 || rc=$?
  sed -E "s/^([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?$/$name: \\1 ok, \\2 failing\\3/" "$log"
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1 || true)
  p=0 f=1
  if [ -n "$line" ]; then
    p=${line%% passed*}
    f=${line#*passed, }
    f=${f%% failed*}
  fi
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    f=1
    echo "$name: exited with status $rc"
  fi
  passed=$((passed + p))
  failed=$((failed + f))
}

lint() {
  local ok=0 bad=0 f
  cd "$ROOT/bindings/zig"
  for f in $(find . -name '*.zig' -not -path './.zig-cache/*' -not -path './zig-out/*' | sort); do
    if "${ZIG[@]}" fmt --check "$f" >/dev/null && "${ZIG[@]}" ast-check "$f"; then
      ok=$((ok + 1))
    else
      bad=$((bad + 1))
      echo "not clean (zig fmt --check, zig ast-check): $f"
    fi
  done
  # The README's example is code users copy: formatted too.
  if sed -n '/<!-- zig-example:begin -->/,/<!-- zig-example:end -->/p' "$ROOT/README.md" \
    | sed '1,2d;$d' | sed '$d' | "${ZIG[@]}" fmt --check --stdin >/dev/null; then
    ok=$((ok + 1))
  else
    bad=$((bad + 1))
    echo "not clean (zig fmt): README.md's Zig example"
  fi
  echo "$ok passed, $bad failed"
}

ZIG_BUILD=("${ZIG[@]}" build --cache-dir "$BUILD/zig-local" --prefix "$BUILD/zig-out"
  -Dgms-include-dir="$ROOT/include" -Dgms-lib-dir="$BUILD")

unit() {
  cd "$ROOT/bindings/zig"
  "${ZIG_BUILD[@]}" test
}

cross() {
  cd "$ROOT/bindings/zig"
  "${ZIG_BUILD[@]}" cross || { echo "0 passed, 1 failed"; return 1; }
  # The Python package and the Zig library load the same libgms.so.
  PYTHONPATH="$ROOT/bindings/python" GMS_LIBRARY="$BUILD/libgms.so" \
    "$ZIGENV/bin/python" tests/cross/test_cross.py "$BUILD/zig-out/lib/libgms_zig_cross.so"
}

suite lint lint
suite unit unit
suite cross cross
suite install "$ROOT/bindings/zig/tests/install/run.sh" "$ROOT" "$BUILD" "${ZIG[@]}"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
