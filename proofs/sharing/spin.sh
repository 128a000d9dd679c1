#!/usr/bin/env bash
# proofs/sharing/spin.sh DEFINES [LTL]: checks proofs/sharing/sharing.pml
# under the -D settings in DEFINES: with no LTL name, every assert() and
# the end states (no deadlock: every stream drains, every window ends);
# with one, that LTL formula. Exit 0 when SPIN finds no error in the whole
# (bounded) state space, 1 when it finds one (its trail is printed), 2 else.
# SPIN_BFS=1: breadth-first, which finds a seeded bug's short trail first.
set -u
cd "$(dirname "$0")"
defs=$1 ltl=${2:-}
dir=$(cd ../.. && pwd)/build/proofs/spin-$(echo "$defs $ltl" | tr -c 'A-Za-z0-9' _)
mkdir -p "$dir" && cp sharing.pml "$dir/" && cd "$dir" || exit 2
# shellcheck disable=SC2086
spin $defs -a sharing.pml >spin.log 2>&1 || { cat spin.log; exit 2; }
if [ -z "$ltl" ]; then
  cc -w -O2 -DSAFETY -DNOCLAIM -DCOLLAPSE ${SPIN_BFS:+-DBFS} -o pan pan.c || exit 2
  ./pan -m100000 >pan.log 2>&1
else
  cc -w -O2 -DSAFETY -DCOLLAPSE ${SPIN_BFS:+-DBFS} -o pan pan.c || exit 2
  ./pan -m100000 -N "$ltl" >pan.log 2>&1
fi
grep -E "violated|errors:|states, stored|depth" pan.log
grep -q "errors: 0" pan.log && ! grep -q "Search not completed" pan.log && exit 0
if grep -qE "errors: [1-9]" pan.log; then
  # shellcheck disable=SC2086
  spin $defs -t -p -g sharing.pml 2>&1 | tail -25
  exit 1
fi
exit 2
