#!/usr/bin/env bash
# Runs the Python bindings' tests (bindings/python/tests) against
# build/libgms.so on the host backend; `make test-python` calls it after the
# build. It keeps a virtual environment in build/pyenv with pytest and a
# numpy new enough for versioned DLPack capsules (2.1), making it on the
# first run; python3-venv comes from Debian's packages when python3 has no
# venv module. Extra arguments go to pytest.
#
# scripts/pytest.sh --asan runs the same tests against build-asan/libgms.so
# (configured and built here as `make test-asan` does: clang, ASan+UBSan),
# with the sanitizer's runtime preloaded into python: a use after free or a
# race that corrupts memory in libgms, reached through the package, stops
# the run with ASan's report. Leak detection is off (CPython keeps objects
# until exit) and Python allocates with malloc so ASan sees ctypes' buffers.
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
ASAN=
if [ "${1:-}" = "--asan" ]; then
  ASAN=1
  shift
fi
PY=${PYTHON:-python3}
VENV=$ROOT/build/pyenv

. "$ROOT/scripts/venv.sh"
make_venv "$VENV"
if ! "$VENV/bin/python" - <<'PYEOF' >/dev/null 2>&1
import pytest, numpy
assert tuple(int(x) for x in numpy.__version__.split(".")[:2]) >= (2, 1)
PYEOF
then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "pytest>=7" "numpy>=2.1"
fi

export GMS_BACKEND=host
PRELOAD=
if [ -n "$ASAN" ]; then
  BUILD=$ROOT/build-asan
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
      -DCMAKE_CXX_COMPILER=clang++ -DGMS_SANITIZE=address,undefined >/dev/null
  fi
  cmake --build "$BUILD" -j "${JOBS:-2}" --target gms gms_torch stand_in_cuda >/dev/null
  # The runtime of the compiler that built it: clang's or gcc's.
  CC=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
  for name in "libclang_rt.asan-$(uname -m).so" libasan.so; do
    f=$("$CC" -print-file-name="$name")
    if [ -f "$f" ]; then PRELOAD=$f; break; fi
  done
  if [ -z "$PRELOAD" ]; then
    echo "pytest.sh --asan: no ASan runtime found for $CC" >&2
    exit 1
  fi
  export GMS_LIBRARY=${GMS_LIBRARY:-$BUILD/libgms.so}
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export PYTHONMALLOC=malloc
  # ASan reports on fd 2, which pytest must leave alone; its faulthandler
  # would catch a SIGSEGV before ASan could say where it came from.
  set -- --capture=sys -p no:faulthandler "$@"
fi
export GMS_LIBRARY=${GMS_LIBRARY:-$ROOT/build/libgms.so}
# pytest's cache would land in the source tree.
exec env ${PRELOAD:+LD_PRELOAD="$PRELOAD"} "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  "$ROOT/bindings/python/tests" "$@"
