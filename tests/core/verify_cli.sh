#!/bin/sh
# verify_cli.sh GMS: `gms verify` runs the workload its seed decides (the
# same counts twice), passes gms_verify, writes a snapshot; --prove runs
# the prover ($GMS_PROOFS_PYTHON on $GMS_PROOFS_DIR/snapshot/snapshot.py)
# on it and exits with its status; a wrong argument or an unwritable
# snapshot path is exit 2 before any work.
gms=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
passed=0 failed=0
check() { # check WHAT COMMAND...
  what=$1
  shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $what"; fi
}
status() { # status WANT COMMAND...: the command exits with WANT
  want=$1
  shift
  "$@" >"$dir/out" 2>"$dir/err"
  [ $? = "$want" ] || { cat "$dir/out" "$dir/err"; return 1; }
}

check "a run with a snapshot" status 0 "$gms" verify --seed 5 --ops 200 --snapshot "$dir/a.json"
check "gms_verify passed" grep -q '^gms_verify: ok' "$dir/out"
counts() { sed -n 's/^gms verify: seed [0-9]*, //p' "$dir/out" >"$dir/$1"; }
counts c1
check "the workload's counts are printed" grep -q ' steps: ' "$dir/c1"
check "the snapshot is written" grep -q '^{"gms_snapshot": 1, "backend": "host"' "$dir/a.json"
check "it lists live blocks" grep -q '"state": "live"' "$dir/a.json"
check "the same seed again" status 0 "$gms" verify --seed 5 --ops 200
counts c2
check "...makes the same workload" cmp -s "$dir/c1" "$dir/c2"
check "another seed" status 0 "$gms" verify --seed 6 --ops 200
counts c3
check "...makes another" sh -c "! cmp -s '$dir/c1' '$dir/c3'"

check "an unknown argument" status 2 "$gms" verify --bogus
check "...says so" grep -q "unknown or incomplete argument '--bogus'" "$dir/err"
check "a bad number" status 2 "$gms" verify --ops 12x
check "an unwritable snapshot" status 2 "$gms" verify --snapshot "$dir/none/a.json"
check "...is told before any work" sh -c "[ ! -s '$dir/out' ] && grep -q 'No such file' '$dir/err'"

# A stand-in prover: a shell script where snapshot.py would be.
mkdir -p "$dir/proofs/snapshot"
printf 'grep -q gms_snapshot "$1" || exit 2; echo "prover saw $1"; exit ${PROVER_EXIT:-0}\n' \
  >"$dir/proofs/snapshot/snapshot.py"
export GMS_PROOFS_DIR="$dir/proofs" GMS_PROOFS_PYTHON=sh
check "--prove: proved" status 0 "$gms" verify --ops 50 --prove
check "...on a snapshot of this run" grep -q '^prover saw /' "$dir/out"
check "--prove: refuted is exit 1" status 1 env PROVER_EXIT=1 "$gms" verify --ops 50 --prove
check "--prove with --snapshot keeps the file" status 0 "$gms" verify --ops 50 --prove --snapshot "$dir/b.json"
check "...and proves that file" grep -q "^prover saw $dir/b.json" "$dir/out"
check "a prover that cannot start is exit 2" status 2 env GMS_PROOFS_PYTHON="$dir/none" "$gms" verify --ops 50 --prove

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
