#!/bin/sh
# names.sh: no internal symbol of the library carries the public prefix
# (docs/conventions.md, "Names"): every global symbol of libgms.a named
# gms_x (one underscore) is exported by libgms.so. A control list with one
# such symbol too many must be caught, so that "passed" means something.
# Usage: names.sh BUILD_DIR
set -u
build=$1
passed=0
failed=0
ok() { passed=$((passed + 1)); }
ko() { echo "FAIL: $1"; failed=$((failed + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

nm -g --defined-only "$build/libgms.a" | awk '{print $3}' | grep '^gms_[^_]' | sort -u >"$tmp/global"
nm -D --defined-only "$build/libgms.so" | awk '{print $3}' | sort -u >"$tmp/exported"
# Internal: global in the archive, not exported by the shared library.
internal() { comm -23 "$1" "$tmp/exported"; }

if [ -s "$tmp/global" ] && [ -s "$tmp/exported" ]; then ok; else ko "nm listed no symbols"; fi
bad=$(internal "$tmp/global")
if [ -z "$bad" ]; then ok; else ko "internal symbols with the public prefix (rename to gms__): $bad"; fi
{ cat "$tmp/global"; echo gms_internal_control; } | sort -u >"$tmp/control"
if internal "$tmp/control" | grep -qx gms_internal_control; then ok; else ko "the check missed a planted internal name"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
