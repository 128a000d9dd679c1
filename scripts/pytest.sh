#!/usr/bin/env bash
# Runs the Python bindings' tests (bindings/python/tests) against
# build/libgms.so on the host backend; `make test-python` calls it after the
# build. It keeps a virtual environment in build/pyenv with pytest and a
# numpy new enough for versioned DLPack capsules (2.1), making it on the
# first run; python3-venv comes from Debian's packages when python3 has no
# venv module. Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
VENV=$ROOT/build/pyenv

if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "pytest.sh: installing python3-venv python3-pip"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv python3-pip >/dev/null
  PY=/usr/bin/python3
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" - <<'PYEOF' >/dev/null 2>&1
import pytest, numpy
assert tuple(int(x) for x in numpy.__version__.split(".")[:2]) >= (2, 1)
PYEOF
then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "pytest>=7" "numpy>=2.1"
fi

export GMS_LIBRARY=${GMS_LIBRARY:-$ROOT/build/libgms.so}
export GMS_BACKEND=host
# pytest's cache would land in the source tree.
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/bindings/python/tests" "$@"
