#!/usr/bin/env bash
# proofs/tlsf-wp/wp.sh [MUTANT]: Frama-C WP (with -wp-rte) on the real
# src/core/tlsf.c through the contracts of proofs/tlsf-wp/tlsf_wp.c. Exit
# 0 when every goal is Valid, 1 when some goal is not, 2 when WP did not
# run. MUTANT (remove-clears-fl, insert-no-prev) proves a copy of tlsf.c
# with that bug seeded instead (build/proofs/mutant-*/core/tlsf.c).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/build/proofs
inc=$ROOT/src
case ${1:-} in
  "") ;;
  remove-clears-fl) sed_expr='s/^        if (!t->sl_bitmap\[fl\])$/        if (1)/' ;;
  insert-no-prev) sed_expr='/^    b->u.free.prev = NULL;$/d' ;;
  *) echo "unknown mutant $1"; exit 2 ;;
esac
if [ -n "${1:-}" ]; then
  inc=$OUT/mutant-$1
  mkdir -p "$inc/core"
  sed "$sed_expr" src/core/tlsf.c >"$inc/core/tlsf.c"
  cmp -s src/core/tlsf.c "$inc/core/tlsf.c" && { echo "the mutant changed nothing"; exit 2; }
fi
export WHY3CONFIG=${WHY3CONFIG:-$OUT/why3.conf}
[ -f "$WHY3CONFIG" ] || why3 config detect >/dev/null 2>&1
log=$OUT/wp${1:+-$1}.out
# The mutant's directory comes first, so `#include "core/tlsf.c"` finds its copy.
frama-c -pp-annot \
  -cpp-extra-args="-I$inc -I$ROOT/include -I$ROOT/src -include $ROOT/proofs/tlsf-wp/atomic_shim.h" \
  proofs/tlsf-wp/tlsf_wp.c -wp -wp-rte -wp-prover cvc4 -wp-timeout "${WP_TIMEOUT:-30}" \
  -wp-par "${JOBS:-2}" -wp-fct fls64,gms__tlsf_mapping,gms__tlsf_insert,gms__tlsf_remove \
  >"$log" 2>&1
grep -E "^\[wp\] .*Goal .*: (Unknown|Timeout|Failed)|^\[wp\] \[Failed\]" "$log"
line=$(grep -E "Proved goals: *[0-9]+ / [0-9]+" "$log") || { tail -20 "$log"; exit 2; }
echo "$line"
read -r got all < <(echo "$line" | sed -E 's/.*: *([0-9]+) \/ ([0-9]+).*/\1 \2/')
[ "$got" = "$all" ] && exit 0
exit 1
