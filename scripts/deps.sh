#!/usr/bin/env bash
# Installs what the build and the tests need, from Debian's packages, when it
# is missing: a machine that has never seen the project gets it here.
set -eu
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null || need+=(gcc)
command -v c++ >/dev/null || need+=(g++) # the PyTorch plug-in's one C++ file
command -v make >/dev/null || need+=(make)
command -v clang >/dev/null || need+=(clang)
command -v pkg-config >/dev/null || need+=(pkg-config)
# Python with venv and pip: the Python package's tests and its pip install test.
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv python3-pip)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
[ -f /usr/include/openssl/hmac.h ] || need+=(libssl-dev)   # the audit trail's HMAC-SHA-256
[ -f /usr/include/jansson.h ] || need+=(libjansson-dev)     # gmsd's policy file (JSON)
[ -f /usr/include/microhttpd.h ] || need+=(libmicrohttpd-dev) # gmsd's metrics endpoint (HTTP)
# Headless Chromium renders the audit report in tests/audit/report.c.
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 \
  || ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-aarch64.a >/dev/null 2>&1 \
  || need+=(libclang-rt-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
