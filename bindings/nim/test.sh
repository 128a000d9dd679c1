#!/usr/bin/env bash
# Runs every test of the Nim binding (`make test-nim` calls it):
#   - nim check --styleCheck:error on the package, its tests and the
#     cross-language library;
#   - `nimble test`: tests/tgms.nim under --mm:refc and --mm:orc, against
#     build/libgms.so;
#   - that Runtime, Context, Buffer, View and Window copies do not compile;
#   - the cross-language test: a Nim --app:lib library and the gms Python
#     package in one process on one runtime (refc and orc builds);
#   - the README's Nim example, compiled and run;
#   - the install test: libgms installed with cmake --install into a
#     temporary prefix, the package installed with nimble into a fresh
#     NIMBLE_DIR with no network, and a fresh nimble project using both
#     found through pkg-config, running the README example.
# It installs nim from Debian's packages when missing and builds libgms
# when needed, then prints "N passed, N failed".
set -u
cd "$(dirname "$0")"
HERE=$PWD
ROOT=$(cd ../.. && pwd)
WORK=$ROOT/build/nim
JOBS=${JOBS:-2}
export GMS_BACKEND=host

if ! command -v nim >/dev/null || ! command -v nimble >/dev/null; then
  echo "test-nim: installing nim"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nim >/dev/null
fi
command -v cmake >/dev/null || "$ROOT/scripts/deps.sh"
if [ ! -f "$ROOT/build/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
fi
# The install test installs these three targets.
cmake --build "$ROOT/build" -j "$JOBS" --target gms gms_static gms_torch >/dev/null || exit 1

rm -rf "$WORK" && mkdir -p "$WORK"
export GMS_INCLUDE_DIR=$ROOT/include GMS_LIB_DIR=$ROOT/build
BUILD_TREE="-d:gmsIncludeDir=$GMS_INCLUDE_DIR -d:gmsLibDir=$GMS_LIB_DIR"
# No network for nimble: any fetch would fail through this proxy.
export http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9

passed=0 failed=0
ok() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
# Adds the "N passed, N failed" lines of a runner's output to the totals.
count() {
  local p f
  p=$(sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1/p' "$1" | awk '{s+=$1} END {print s+0}')
  f=$(sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\2/p' "$1" | awk '{s+=$1} END {print s+0}')
  passed=$((passed + p)) failed=$((failed + f))
}

echo "== nim check --styleCheck:error"
for f in src/gms.nim src/gms/testing.nim tests/tgms.nim tests/xlang/nimside.nim; do
  if nim check --hints:off --styleCheck:error $BUILD_TREE "$f" >"$WORK/check.log" 2>&1; then
    ok
  else
    cat "$WORK/check.log"; fail "nim check $f"
  fi
done

echo "== nimble test"
nimble test --nimbleDir:"$WORK/nimble-test" >"$WORK/nimble-test.log" 2>&1
rc=$?
cat "$WORK/nimble-test.log"
before=$failed
count "$WORK/nimble-test.log"
[ $rc = 0 ] || [ "$failed" -gt "$before" ] || fail "nimble test exited $rc"

echo "== copies must not compile"
nim c --hints:off --errorMax:100 -d:gmsPrefix=/nonexistent --nimcache:"$WORK/nocopy-cache" \
  -o:"$WORK/nocopy" tests/nocopy.nim >"$WORK/nocopy.log" 2>&1
for type in Runtime Context Buffer View Window; do
  if grep -q "'=copy' is not available for type <$type>" "$WORK/nocopy.log"; then
    ok
  else
    cat "$WORK/nocopy.log"; fail "a copy of $type compiled"
  fi
done

echo "== Nim and Python in one process"
for mm in refc orc; do
  lib=$WORK/libnimside_$mm.so
  if nim c --hints:off --app:lib --mm:$mm $BUILD_TREE --nimcache:"$WORK/xlang-cache-$mm" \
      -o:"$lib" tests/xlang/nimside.nim >"$WORK/xlang.log" 2>&1; then
    GMS_LIBRARY=$ROOT/build/libgms.so PYTHONPATH=$ROOT/bindings/python \
      python3 tests/xlang/test_xlang.py "$lib" >"$WORK/xlang.log" 2>&1
    rc=$?
    echo "-- --mm:$mm"; cat "$WORK/xlang.log"
    before=$failed
    count "$WORK/xlang.log"
    [ $rc = 0 ] || [ "$failed" -gt "$before" ] || fail "cross-language test (--mm:$mm) exited $rc"
  else
    cat "$WORK/xlang.log"; fail "building the Nim library (--mm:$mm)"
  fi
done

# The README's Nim example, between its nim-example markers.
sed -n '/<!-- nim-example:begin -->/,/<!-- nim-example:end -->/p' "$ROOT/README.md" \
  | sed '1,2d;$d' | sed '$d' >"$WORK/example.nim"
EXPECTED="read back: hello, gms"

echo "== the README example"
if [ -s "$WORK/example.nim" ] && nim c --hints:off -p:src $BUILD_TREE --nimcache:"$WORK/example-cache" \
    -o:"$WORK/example" "$WORK/example.nim" >"$WORK/example.log" 2>&1 \
    && "$WORK/example" >"$WORK/example.out" 2>&1 && grep -qx "$EXPECTED" "$WORK/example.out"; then
  cat "$WORK/example.out"; ok
else
  cat "$WORK/example.log" "$WORK/example.out" 2>/dev/null; fail "the README example"
fi

echo "== install: cmake --install, nimble install, a fresh project"
install_test() {
  local prefix=$WORK/prefix nimbledir=$WORK/nimble app=$WORK/app pc
  cmake --install "$ROOT/build" --prefix "$prefix" >/dev/null || return 1
  pc=$(dirname "$(find "$prefix" -name gms.pc | head -1)")
  export PKG_CONFIG_PATH=$pc
  # Offline, nimble's package list is a local file (an empty one here):
  # resolving `requires "gms"` then reads it instead of downloading.
  export XDG_CONFIG_HOME=$WORK/config
  mkdir -p "$XDG_CONFIG_HOME/nimble"
  echo '[]' >"$WORK/packages.json"
  printf '[PackageList]\nname = "Official"\npath = "%s"\n' "$WORK/packages.json" \
    >"$XDG_CONFIG_HOME/nimble/nimble.ini"
  # The package from a copy of its folder, as a user's checkout.
  cp -r "$HERE" "$WORK/pkg" && rm -rf "$WORK/pkg/tests/bin"
  (cd "$WORK/pkg" && nimble install -y --nimbleDir:"$nimbledir") || return 1
  mkdir -p "$app/src"
  cp "$WORK/example.nim" "$app/src/app.nim"
  cat >"$app/app.nimble" <<'EOF'
version = "0.1.0"
author = "a user"
description = "uses gms"
license = "MIT"
srcDir = "src"
bin = @["app"]
requires "nim >= 1.6.0", "gms >= 0.1.0"
EOF
  # No build-tree defines and no GMS_* variables: pkg-config finds libgms.
  (cd "$app" && env -u GMS_INCLUDE_DIR -u GMS_LIB_DIR \
     nimble build -y --nimbleDir:"$nimbledir") || return 1
  "$app/app" >"$WORK/app.out" || return 1
  cat "$WORK/app.out"
  grep -qx "$EXPECTED" "$WORK/app.out" || return 1
  # It runs on the installed libgms, found through its run path.
  ldd "$app/app" | grep -q "$prefix/.*libgms.so" || { ldd "$app/app"; return 1; }
}
if install_test >"$WORK/install.log" 2>&1 \
    && ! grep -q 'Downloading' "$WORK/install.log"; then # nimble fetched nothing
  grep -v '^ *\(Verifying\|Installing\|Building\|Success\)' "$WORK/install.log" || true
  ok
else
  cat "$WORK/install.log"; fail "the install test"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
