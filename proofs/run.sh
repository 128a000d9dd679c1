#!/usr/bin/env bash
# proofs/run.sh: every machine-checked proof of docs/proofs.md, and for
# each a mutant (a seeded bug) that its prover must reject. Each proof and
# each mutant is a counted case; the last line is `N passed, N failed`.
# `make test-proofs` (and so `make test`) runs it.
#
# Installs what it needs when missing: frama-c-base, why3, cvc4, z3 and
# spin from Debian's packages, z3-solver from the Python package index
# into build/proofenv. Builds libgms and the gms CLI in build/ (configured
# as `make build` does, if it is not yet). Work files go to build/proofs.
#
#   proofs/run.sh            every case
#   proofs/run.sh FILTER     the cases whose name contains FILTER
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/build/proofs
mkdir -p "$OUT"
FILTER=${1:-}

need=()
command -v frama-c >/dev/null || need+=(frama-c-base)
command -v why3 >/dev/null || need+=(why3)
command -v cvc4 >/dev/null || need+=(cvc4)
command -v z3 >/dev/null || need+=(z3)
command -v spin >/dev/null || need+=(spin)
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  echo "proofs: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
PY=${PYTHON:-python3}
. "$ROOT/scripts/venv.sh"
VENV=$ROOT/build/proofenv
make_venv "$VENV"
"$VENV/bin/python" -c 'import z3' 2>/dev/null ||
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "z3-solver>=4.8"
# Why3's prover list, private to this build.
export WHY3CONFIG=$OUT/why3.conf
[ -f "$WHY3CONFIG" ] || why3 config detect >/dev/null 2>&1
# The compiled tlsf.c and handle.c that the Z3 models are checked against.
export GMS_PROOF_ORACLE=$OUT/oracle
cc -O1 -Wall -Wextra -Werror -I"$ROOT/include" -I"$ROOT/src" "$ROOT/proofs/lib/oracle.c" \
  "$ROOT/src/core/tlsf.c" "$ROOT/src/core/handle.c" -o "$GMS_PROOF_ORACLE" -lpthread || exit 1
# Section 5 needs the library and the gms CLI (build/gms verify), built
# as `make build` builds them, and the acquire oracle linked with libgms.
BUILD=$ROOT/build
[ -f "$BUILD/CMakeCache.txt" ] ||
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_FLAGS:-} >/dev/null || exit 1
cmake --build "$BUILD" -j "$(nproc 2>/dev/null || echo 2)" --target gms gms_cli >/dev/null || exit 1
export GMS_ACQUIRE_ORACLE=$OUT/acquire_oracle
cc -O1 -Wall -Wextra -Werror -I"$ROOT/include" "$ROOT/proofs/snapshot/acquire_oracle.c" \
  -L"$BUILD" -lgms -Wl,-rpath,"$BUILD" -o "$GMS_ACQUIRE_ORACLE" || exit 1

rm -f "$OUT"/*.count
passed=0 failed=0
# case NAME EXPECT COMMAND...: EXPECT is `proved` (exit 0) or `rejected`
# (exit 1: the prover found the seeded bug; any other status is a failure).
case_run() {
  local name=$1 expect=$2
  shift 2
  [ -n "$FILTER" ] && [[ $name != *"$FILTER"* ]] && return
  local log=$OUT/$name.log start=$SECONDS rc
  "$@" >"$log" 2>&1
  rc=$?
  local ok=0
  { [ "$expect" = proved ] && [ $rc = 0 ]; } && ok=1
  { [ "$expect" = rejected ] && [ $rc = 1 ]; } && ok=1
  if [ $ok = 1 ]; then
    passed=$((passed + 1))
    echo "PASS $name ($expect, $((SECONDS - start))s)"
  else
    failed=$((failed + 1))
    echo "FAIL $name (expected $expect, exit $rc, $((SECONDS - start))s; log: $log)"
    tail -15 "$log" | sed 's/^/    /'
  fi
}

# case_bg NAME EXPECT COMMAND...: the same, in the background, at most
# PROOF_JOBS (default: the cores) at once; cases_wait adds up their counts.
# For the SPIN cases, which take most of the time and each work in a
# folder of their own.
PROOF_JOBS=${PROOF_JOBS:-$(nproc 2>/dev/null || echo 2)}
case_bg() {
  while [ "$(jobs -rp | wc -l)" -ge "$PROOF_JOBS" ]; do wait -n; done
  (passed=0 failed=0; case_run "$@"; echo "$passed $failed" >"$OUT/$1.count") &
}
cases_wait() {
  wait
  local p f c
  for c in "$OUT"/*.count; do
    [ -e "$c" ] || continue
    read -r p f <"$c"
    passed=$((passed + p))
    failed=$((failed + f))
    rm -f "$c"
  done
}

Z3PY=$VENV/bin/python
# 1. TLSF class arithmetic (Z3)
case_run tlsf-arith proved "$Z3PY" proofs/tlsf-arith/tlsf_arith.py
for m in round-no-minus-one fl-off-by-one search-same-fl; do
  case_run "tlsf-arith-mutant-$m" rejected "$Z3PY" proofs/tlsf-arith/tlsf_arith.py --mutant $m
done
# 2. the handle word (Z3)
case_run handle proved "$Z3PY" proofs/handle/handle.py
for m in no-generation-bump fields-overlap check-ignores-generation no-parity; do
  case_run "handle-mutant-$m" rejected "$Z3PY" proofs/handle/handle.py --mutant $m
done
# 3. TLSF lists (Frama-C WP on src/core/tlsf.c; its bit lemmas in Z3)
case_run tlsf-wp-lemmas proved "$Z3PY" proofs/tlsf-wp/bit_lemmas.py
case_run tlsf-wp-lemmas-mutant rejected "$Z3PY" proofs/tlsf-wp/bit_lemmas.py --mutant
case_run tlsf-wp proved proofs/tlsf-wp/wp.sh
# A mutant fails on its first timeout: a shorter one saves a minute.
case_run tlsf-wp-mutant-remove-clears-fl rejected env WP_TIMEOUT=8 proofs/tlsf-wp/wp.sh remove-clears-fl
case_run tlsf-wp-mutant-insert-no-prev rejected env WP_TIMEOUT=8 proofs/tlsf-wp/wp.sh insert-no-prev
# 5. tenant isolation on snapshots of random workloads (Z3), and the access
# decision of share.c; before 4, whose SPIN cases run last, in the
# background. Two fixed seeds and one new each run (SNAPSHOT_SEED to repeat
# one; the log names it).
case_run share-decision proved "$Z3PY" proofs/snapshot/share_decision.py
for m in or-for-and no-immutable-check no-writer-check; do
  case_run "share-decision-mutant-$m" rejected "$Z3PY" proofs/snapshot/share_decision.py --mutant $m
done
export GMS_PROOFS_PYTHON=$Z3PY GMS_PROOFS_DIR=$ROOT/proofs
for seed in 1 2 "${SNAPSHOT_SEED:-$(date +%s)}"; do
  name=snapshot-seed-$seed
  [ "$seed" = 1 ] || [ "$seed" = 2 ] || name=snapshot-seed-new
  case_run "$name" proved "$BUILD/gms" verify --seed "$seed" --prove --snapshot "$OUT/$name.json"
done
# The mutants seed their bug into a smaller snapshot, written here (a
# failed write fails them all: the prover exits 2 on a missing file).
rm -f "$OUT/snapshot-mutants.json"
"$BUILD/gms" verify --seed 3 --ops 150 --snapshot "$OUT/snapshot-mutants.json" >"$OUT/snapshot-mutants.log" 2>&1
for m in overlap granule-two-tenants outside-chunk quota owner-other-tenant unmapped grant-mode; do
  case_run "snapshot-mutant-$m" rejected "$Z3PY" proofs/snapshot/snapshot.py --mutant $m \
    "$OUT/snapshot-mutants.json"
done
# 4. the sharing protocol (SPIN)
SP=proofs/sharing/spin.sh
case_bg sharing-protocol proved $SP "-DWINDOWS=0 -DSTEPS=4"
case_bg sharing-windows proved $SP "-DWINDOWS=1 -DSTEPS=3"
for f in one_writer no_overlap frees_once; do
  case_bg "sharing-ltl-$f" proved $SP "-DWINDOWS=1 -DSTEPS=3" "$f"
done
# The mutants breadth-first: the shortest trail of the seeded bug comes first.
export SPIN_BFS=1
for m in 1 2 3 4 8 9; do
  case_bg "sharing-mutant-$m" rejected $SP "-DWINDOWS=0 -DSTEPS=4 -DMUTANT=$m"
done
for m in 5 6; do
  case_bg "sharing-mutant-$m" rejected $SP "-DWINDOWS=1 -DSTEPS=3 -DMUTANT=$m"
done
case_bg sharing-mutant-7-ltl rejected $SP "-DWINDOWS=0 -DSTEPS=4 -DMUTANT=7" one_writer
cases_wait
unset SPIN_BFS

echo "proofs: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
