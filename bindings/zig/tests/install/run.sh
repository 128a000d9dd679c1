#!/usr/bin/env bash
# The Zig package installed as a new user would: libgms installed with
# `cmake --install` into a fresh prefix, a fresh project outside the
# repository that depends on bindings/zig by path (build.zig.zon) and finds
# libgms through pkg-config alone, and the README's Zig example as its
# main.zig, built and run. Prints "N passed, N failed".
# Usage: run.sh REPO_ROOT BUILD_DIR ZIG_COMMAND...
set -eu
root=$1 build=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
here=$root/bindings/zig/tests/install

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null

mkdir -p "$tmp/app/src"
cp "$here/build.zig" "$tmp/app/"
cat >"$tmp/app/build.zig.zon" <<ZON
.{
    .name = .gms_example,
    .version = "0.0.0",
    .fingerprint = 0x80d9e70c9d414b23,
    .dependencies = .{
        .gms = .{ .path = "$(realpath --relative-to="$tmp/app" "$root/bindings/zig")" },
    },
    .paths = .{""},
}
ZON
sed -n '/<!-- zig-example:begin -->/,/<!-- zig-example:end -->/p' "$root/README.md" \
  | sed '1,2d;$d' | sed '$d' >"$tmp/app/src/main.zig"
test -s "$tmp/app/src/main.zig"

# Only the installed copy can be found: no -D option names the repository.
fail() {
  echo "install test: $*"
  echo "0 passed, 1 failed"
  exit 1
}
cd "$tmp/app"
PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" "$@" build || fail "zig build failed"
# It runs on the installed library (found through the rpath of its link),
# not the build tree's.
linked=$(ldd zig-out/bin/example | awk '/libgms/ { print $3 }')
[ -n "$linked" ] && [ "$(realpath "$linked")" = "$(realpath "$tmp/prefix/lib/libgms.so.0")" ] \
  || fail "not linked to the installed libgms: $(ldd zig-out/bin/example)"
out=$(GMS_BACKEND=host zig-out/bin/example 2>&1) || fail "the example failed: $out"
echo "$out"
for want in "read back: hello, gms" "overflow:  OutOfBounds: " "frozen:    hello, gms"; do
  grep -qF "$want" <<<"$out" || fail "the example did not print \"$want\""
done
echo "1 passed, 0 failed"
