#!/bin/sh
# Extracts the C example between the README's "example:begin/end" markers,
# compiles it against the built library with -Werror, and runs it.
set -eu
src=$1 cc=$2 build=$3 sanitize=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -n '/<!-- example:begin -->/,/<!-- example:end -->/p' "$src/README.md" \
  | sed '1,2d;$d' | sed '$d' > "$tmp/example.c"
test -s "$tmp/example.c"
san=""
[ -n "$sanitize" ] && san="-fsanitize=$sanitize"
$cc -std=c11 -Wall -Wextra -Werror $san -I"$src/include" "$tmp/example.c" \
  "$build/libgms.a" -lpthread -lcrypto -o "$tmp/example"
"$tmp/example"
