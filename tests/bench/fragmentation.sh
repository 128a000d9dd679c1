#!/bin/sh
# tests/bench/fragmentation.sh GMS_BENCH on|off TRACE_DIR...: replays every
# real allocation trace found (bench/traces, and ../shared/traces where it
# exists) on the host backend with safety on or off, and fails if gms holds more
# than 5% above the peak of live memory on any of them (1 - peak live /
# peak held, the figure bench/RESULTS.md reports). Deterministic: the
# replay's layout depends on the trace alone.
set -eu
bench=$1
safety=$2
shift 2
traces=""
for dir in "$@"; do
    for t in "$dir"/*.csv.gz; do
        [ -f "$t" ] && traces="$traces $t"
    done
done
[ -n "$traces" ] || { echo "no traces found"; exit 1; }
# shellcheck disable=SC2086
"$bench" replay --json --safety "$safety" $traces | awk '
    /"bench":"replay"/ {
        match($0, /"trace":"[^"]*"/); name = substr($0, RSTART + 9, RLENGTH - 10)
        match($0, /"frag":[0-9.e-]*/); frag = substr($0, RSTART + 7, RLENGTH - 7) + 0
        n++
        status = frag <= 0.05 ? "ok" : "OVER 5%"
        if (frag > 0.05) bad++
        printf "%-24s fragmentation %6.2f%%  %s\n", name, 100 * frag, status
    }
    END {
        printf "%d passed, %d failed\n", n - bad, bad
        exit bad > 0 || n == 0
    }'
