#!/bin/sh
# tests/kernels/hip_compile.sh SRC_DIR OUT_DIR: the kernels' HIP path
# (src/kernels/scrub.cu through gpu_compat.h) compiles for an AMD GPU
# (gfx90a) with -Wall -Wextra -Werror, where no hipcc or ROCm is
# installed: clang's HIP mode against the stand-in headers of
# tests/kernels/hip_stub. Both kernels must be there, with kernel
# arguments the size of the host's structs (gms_kparams, gms_kasync).
# Exits 77 (skipped) without a clang that targets amdgcn.
set -u
src=$1
out=$2
mkdir -p "$out"
command -v clang >/dev/null 2>&1 || { echo "SKIP: no clang"; exit 77; }
clang -print-targets 2>/dev/null | grep -q amdgcn || { echo "SKIP: clang without the amdgcn target"; exit 77; }
clang -x hip --cuda-device-only -nogpulib -nogpuinc --offload-arch=gfx90a -O3 -std=c++17 \
    -Wall -Wextra -Werror -S -I"$src/tests/kernels/hip_stub" -I"$src/src/kernels" \
    "$src/src/kernels/scrub.cu" -o "$out/scrub_gfx90a.s" || { echo "0 passed, 1 failed"; exit 1; }
cat >"$out/sizes.c" <<'C'
#include <stdio.h>
#include "kernels/scrub.h"
int main(void) { printf("%zu %zu\n", sizeof(gms_kparams), sizeof(gms_kasync)); return 0; }
C
${CC:-cc} -I"$src/src" -o "$out/sizes" "$out/sizes.c" || { echo "0 passed, 1 failed"; exit 1; }
set -- $("$out/sizes")
pass=0 fail=0
check() { # check NAME KERNARG_BYTES
    got=$(awk -v k="$1" '/\.kernarg_segment_size:/ { s = $2 } /\.name:/ && $2 == k { print s }' "$out/scrub_gfx90a.s")
    if [ "$got" = "$2" ]; then pass=$((pass + 1)); echo "$1: kernel arguments $got bytes, as the host's";
    else fail=$((fail + 1)); echo "$1: kernel arguments '$got' bytes, the host's $2"; fi
}
check gms_scrub_kernel "$1"
check gms_scrub_async_kernel "$2"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
