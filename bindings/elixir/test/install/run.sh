#!/usr/bin/env bash
# The Elixir package used as a new user would: libgms installed with
# `cmake --install` into a fresh prefix, a fresh Mix project outside the
# repository that depends on a copy of bindings/elixir by path and finds
# libgms through pkg-config alone (no GMS_LIB_DIR), running the README's
# Elixir example. Prints "N passed, N failed".
# Usage: run.sh REPO_ROOT BUILD_DIR
set -eu
root=$1 build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "install test: $*"
  echo "0 passed, 1 failed"
  exit 1
}

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null || fail "cmake --install failed"
pc=$(dirname "$(find "$tmp/prefix" -name gms.pc | head -1)")

# The package from a copy of its sources, as a user's checkout.
mkdir -p "$tmp/gms"
(cd "$root/bindings/elixir" && cp -r mix.exs c_src lib "$tmp/gms/")

mkdir -p "$tmp/app/lib"
cat >"$tmp/app/mix.exs" <<'MIX'
defmodule App.MixProject do
  use Mix.Project

  def project, do: [app: :app, version: "0.1.0", deps: [{:gms, path: "../gms"}]]
  def application, do: [extra_applications: [:logger]]
end
MIX
{
  echo 'defmodule App do'
  echo '  def main do'
  sed -n '/<!-- elixir-example:begin -->/,/<!-- elixir-example:end -->/p' "$root/README.md" \
    | sed '1,2d;$d' | sed '$d'
  echo '  end'
  echo 'end'
} >"$tmp/app/lib/app.ex"
grep -q 'Gms.open' "$tmp/app/lib/app.ex" || fail "no example found in README.md"

cd "$tmp/app"
out=$(env -u GMS_LIB_DIR -u GMS_INCLUDE_DIR PKG_CONFIG_PATH="$pc" MIX_ENV=prod \
  mix do compile --warnings-as-errors, run -e App.main 2>&1) || fail "the example failed: $out"
echo "$out"
for want in "read back: hello, gms" "overflow:  out_of_bounds: " "frozen:    hello, gms" \
  "owner died: invalid_handle"; do
  grep -qF "$want" <<<"$out" || fail "the example did not print \"$want\""
done
# The NIF runs on the installed libgms (found through its run path).
nif=$tmp/app/_build/prod/lib/gms/priv/gms_nif.so
linked=$(ldd "$nif" | awk '/libgms/ { print $3 }')
[ -n "$linked" ] && [ "$(realpath "$linked")" = "$(realpath "$tmp/prefix/lib/libgms.so.0")" ] \
  || fail "the NIF is not linked to the installed libgms: $(ldd "$nif")"
echo "1 passed, 0 failed"
