#!/bin/sh
# deploy.sh: the deployment files of deploy/ give gmsd only options it
# accepts, and the example policy passes gmsd's check (docs/broker.md,
# "Deployment"). Usage: deploy.sh REPO GMSD
set -u
repo=$1
gmsd=$2
passed=0
failed=0
ok() { passed=$((passed + 1)); }
ko() { echo "FAIL: $1"; failed=$((failed + 1)); }
policy=$repo/deploy/policy.example.json

if "$gmsd" --policy "$policy" --check >/dev/null; then ok; else ko "the example policy"; fi
# gmsd parses every option before --check acts on the policy alone, so an
# unknown option or a missing value fails here.
unit=$(sed -n '/^ExecStart=/,/[^\\]$/p' "$repo/deploy/gmsd.service" | tr -d '\\\n' |
       sed 's/^ExecStart=[^ ]*//')
if [ -n "$unit" ] && "$gmsd" $unit --policy "$policy" --check >/dev/null; then ok
else ko "the systemd unit's ExecStart options: $unit"; fi
ds=$(sed -n '/args: \[/,/\]/p' "$repo/deploy/gmsd-daemonset.yaml" | tr -d '\n' |
     sed 's/.*args: \[//; s/\].*//; s/,/ /g; s/"//g')
if [ -n "$ds" ] && "$gmsd" $ds --policy "$policy" --check >/dev/null; then ok
else ko "the DaemonSet's gmsd args: $ds"; fi
# The control: an option gmsd does not know is refused.
if "$gmsd" --policy "$policy" --no-such-option --check >/dev/null 2>&1; then
    ko "gmsd accepted an unknown option"; else ok; fi
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify checks the unit's syntax; it may warn that the binary is absent.
    if systemd-analyze verify "$repo/deploy/gmsd.service" 2>&1 | grep -qiE "unknown (key|section)|invalid|failed to parse"; then
        ko "systemd-analyze verify found a syntax error"
    else ok; fi
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
