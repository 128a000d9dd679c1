#!/bin/sh
# tests/bench/stand_in_pipeline.sh GMS_BENCH TRACE SAFETY LAG: replays
# TRACE through the CUDA backend over the stand-in libcuda with a device
# (STAND_IN_DEVICE_LAG=LAG: its scrub kernels run on the host, LAG
# launches behind), safety on or off, so that the stream-ordered pipeline
# (batches gathered on the stream, launched, collected) and the CUDA
# retain policy run on a machine without a GPU. Checks
# that the replay runs through, that the pipeline launched batches (the
# launch log of $GMS_DEBUG_MAPS), and that the warm pass is steady: the
# layout the first pass made serves the second without mapping or
# unmapping more than a run or two. LD_LIBRARY_PATH must name the
# stand-in's folder.
set -eu
bench=$1
trace=$2
safety=$3
lag=$4
log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0
failed=0
check() { # check WHAT CONDITION: CONDITION is evaluated (set -e must not end the script on it)
    if eval "$2"; then passed=$((passed + 1)); else echo "FAILED: $1"; failed=$((failed + 1)); fi
}
out=$(STAND_IN_DEVICE_LAG=$lag GMS_DEBUG_MAPS=$log "$bench" replay --backend cuda --safety "$safety" "$trace") &&
    rc=0 || rc=$?
echo "$out"
check "the replay runs through (exit $rc)" '[ "$rc" -eq 0 ]'
launches=$(grep -c ' launch ' "$log" || true)
echo "launches logged: $launches"
check "the pipeline launched batches" '[ "$launches" -gt 0 ]'
maps=$(echo "$out" | sed -n 's/.*gms_warm_maps=\([0-9]*\).*/\1/p')
unmaps=$(echo "$out" | sed -n 's/.*gms_warm_unmaps=\([0-9]*\).*/\1/p')
check "a steady warm pass (maps/unmaps: ${maps:-none}/${unmaps:-none})" \
    '[ -n "$maps" ] && [ -n "$unmaps" ] && [ "$maps" -le 2 ] && [ "$unmaps" -le 2 ]'
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
