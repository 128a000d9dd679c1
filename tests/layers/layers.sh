#!/bin/sh
# layers.sh: src/ keeps its layers (scripts/check-layers.sh), and the check
# itself fails on a tree that breaks them, so its "passed" means something.
# Usage: layers.sh REPO
set -u
repo=$1
check=$repo/scripts/check-layers.sh
passed=0
failed=0
ok() { passed=$((passed + 1)); }
ko() { echo "FAIL: $1"; failed=$((failed + 1)); }

if sh "$check" "$repo/src"; then ok; else ko "src/ includes across its layers (above)"; fi

# A copy of src/ with one include upwards in each of three layers: base
# including the core, the backend including the audit code, and safety
# including the core above it. Each must be reported.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$repo/src" "$tmp/src"
echo '#include "core/internal.h"' >>"$tmp/src/base/util.c"
echo '#include "audit/audit.h"' >>"$tmp/src/backend/failing.c"
echo '#include "core/internal.h"' >>"$tmp/src/safety/scrub.c"
out=$(sh "$check" "$tmp/src")
if [ $? -ne 0 ]; then ok; else ko "the check passed a tree with includes upwards"; fi
for f in base/util.c backend/failing.c safety/scrub.c; do
    if echo "$out" | grep -q "^src/$f "; then ok; else ko "src/$f's include upwards not reported"; fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
