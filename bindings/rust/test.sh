#!/usr/bin/env bash
# The Rust binding's tests (`make test-rust`), against build/libgms.so:
#
#  1. cargo test: the crate's unit, integration and doc tests; every test
#     runtime checks at its end that gms reported no leak;
#  2. clippy with its FFI and unsafe lints, and rustfmt, where installed;
#     rustdoc with warnings as errors (broken links);
#  3. the tests again under AddressSanitizer (nightly -Zsanitizer=address;
#     LeakSanitizer sees every malloc of the process, libgms's included),
#     where a nightly toolchain is installed;
#  4. xlang: a Rust cdylib and the gms Python package exchanging buffers in
#     one process, on the shared runtime of one libgms.so;
#  5. the README's example in a fresh cargo project that depends on the
#     crate by path and finds libgms installed (cmake --install into a
#     temporary prefix) through pkg-config.
#
# Without cargo it installs Debian's (cargo-web and rustc-web: bookworm's
# plain rustc, 1.63, predates edition 2024); where no Debian rustc of 1.85
# or later exists it says so and skips. Nothing comes from a crate
# registry: the crate has no dependencies (--offline).
set -eu -o pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CRATE=$ROOT/bindings/rust
JOBS=${JOBS:-2}

need_version=1.85
version_ok() { # is $1 >= $need_version?
  [ "$(printf '%s\n%s\n' "$need_version" "$1" | sort -V | head -1)" = "$need_version" ]
}

if ! command -v cargo >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  cand=$(apt-cache policy rustc-web 2>/dev/null | sed -n 's/^ *Candidate: \([0-9.]*\).*/\1/p')
  if [ -n "$cand" ] && version_ok "$cand"; then
    echo "rust: installing Debian's cargo-web and rustc-web $cand"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cargo-web rustc-web >/dev/null
  fi
fi
if ! command -v cargo >/dev/null; then
  echo "rust: SKIP: no cargo, and Debian offers no rustc >= $need_version (edition 2024)"
  exit 0
fi
rustc_version=$(rustc --version | awk '{print $2}')
if ! version_ok "${rustc_version%%-*}"; then
  echo "rust: SKIP: rustc $rustc_version is older than $need_version (edition 2024)"
  exit 0
fi

# `make test-rust` has built it all; `cmake --install` below needs all of it.
if [ ! -f "$ROOT/build/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$ROOT/build" -j "$JOBS" >/dev/null
export GMS_LIB_DIR=$ROOT/build GMS_BACKEND=host CARGO_TERM_COLOR=never
cd "$CRATE"

echo "== rust: cargo test"
cargo test --offline -j "$JOBS" 2>&1 | { grep -vE '^\s+(Compiling|Running|Doc-tests|Finished)|^$' || true; }

echo "== rust: clippy, rustfmt and rustdoc"
lints=(-D warnings -W clippy::undocumented_unsafe_blocks -W clippy::missing_safety_doc)
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --offline -q --all-targets -- "${lints[@]}"
  (cd xlang && cargo clippy --offline -q --target-dir ../target -- "${lints[@]}")
  echo "clippy: clean"
else
  echo "clippy: SKIP: not installed with this toolchain"
fi
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --check && (cd xlang && cargo fmt --check) && echo "rustfmt: clean"
else
  echo "rustfmt: SKIP: not installed with this toolchain"
fi
RUSTDOCFLAGS="-D warnings" cargo doc --offline -q --no-deps && echo "rustdoc: clean"

echo "== rust: cargo test under AddressSanitizer"
host=$(rustc -vV | sed -n 's/^host: //p')
if cargo +nightly --version >/dev/null 2>&1; then
  log=target/asan/test.log
  mkdir -p target/asan
  if RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    cargo +nightly test --offline -q -j "$JOBS" --tests --target "$host" --target-dir target/asan >"$log" 2>&1; then
    grep '^test result' "$log"
  else
    tail -80 "$log"
    echo "rust: the tests failed under ASan (all of it: bindings/rust/$log)"
    exit 1
  fi
else
  echo "asan: SKIP: no nightly toolchain (the tests still check gms's own leak report)"
fi

echo "== rust: Rust and Python in one process"
(cd xlang && cargo build --offline -q -j "$JOBS" --target-dir ../target)
GMS_LIBRARY=$ROOT/build/libgms.so PYTHONPATH=$ROOT/bindings/python \
  GMS_XLANG_LIB=$CRATE/target/debug/libgms_xlang.so python3 xlang/test_xlang.py

echo "== rust: the README example, against an installed libgms"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$ROOT/build" --prefix "$tmp/prefix" >/dev/null
pc=$(dirname "$(find "$tmp/prefix" -name gms.pc | head -1)")
mkdir -p "$tmp/app/src"
cat >"$tmp/app/Cargo.toml" <<TOML
[package]
name = "gms-readme-example"
version = "0.1.0"
edition = "2024"

[dependencies]
gms = { path = "$CRATE" }
TOML
sed -n '/<!-- rust-example:begin -->/,/<!-- rust-example:end -->/p' "$ROOT/README.md" \
  | sed '1,2d;$d' | sed '$d' >"$tmp/app/src/main.rs"
test -s "$tmp/app/src/main.rs"
(
  cd "$tmp/app"
  unset GMS_LIB_DIR
  PKG_CONFIG_PATH=$pc cargo build --offline -q -j "$JOBS"
  # The link came from pkg-config, not from a build of the source tree.
  grep -q "rustc-link-search=native=$tmp/prefix" target/debug/build/gms-*/output
  LD_LIBRARY_PATH=$(PKG_CONFIG_PATH=$pc pkg-config --variable=libdir gms) ./target/debug/gms-readme-example >out.txt
  cat out.txt
  grep -q '^read back: hello, gms$' out.txt && grep -q '^shared:    4096 bytes, read-only: true$' out.txt
)
echo "readme example: 1 passed, 0 failed"
