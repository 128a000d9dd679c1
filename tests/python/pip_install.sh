#!/bin/sh
# `pip install bindings/python` the way a user does it: a fresh virtual
# environment, no GMS_LIBRARY, then the README's Python example (between
# its "python-example:begin/end" markers), run outside the repository. It
# must load the libgms that the install built and put in the package, and
# GMS_LIBRARY must still override that. Everything pip fetches comes from
# the package index it is configured with.
# Usage: pip_install.sh SOURCE_DIR PYTHON WORK_DIR BUILT_LIBGMS
set -eu
src=$1 python=$2 work=$3 built=$4
rm -rf "$work"
mkdir -p "$work"
unset GMS_LIBRARY PYTHONPATH
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
"$python" -m venv "$work/venv"
py=$work/venv/bin/python
"$py" -m pip install -q --disable-pip-version-check "$src/bindings/python" "numpy>=2.1"

sed -n '/<!-- python-example:begin -->/,/<!-- python-example:end -->/p' "$src/README.md" \
  | sed '1,2d;$d' | sed '$d' > "$work/example.py"
test -s "$work/example.py"
cd "$work"
"$py" example.py > out.txt 2> err.txt || { cat out.txt err.txt; exit 1; }
cat out.txt
grep -qx "b'hello'" out.txt
# Nothing on stderr: no leak report at context close, no warning.
if [ -s err.txt ]; then cat err.txt; exit 1; fi

lib=$("$py" -c 'import gms; print(gms.library_path)')
case $lib in
  "$work"/venv/*/site-packages/gms/libgms.so) echo "bundled: $lib" ;;
  *) echo "loaded $lib, not the bundled libgms"; exit 1 ;;
esac
over=$(GMS_LIBRARY=$built "$py" -c 'import gms; print(gms.library_path)')
[ "$over" = "$built" ] || { echo "GMS_LIBRARY=$built loaded $over"; exit 1; }
echo "pip install: the README example ran on the bundled libgms; GMS_LIBRARY overrides it"
