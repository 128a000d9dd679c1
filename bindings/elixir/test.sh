#!/usr/bin/env bash
# Runs every check of the Elixir binding (`make test-elixir` calls it):
#   compile   mix compile --warnings-as-errors (the NIF builds with -Werror);
#   format    mix format --check-formatted, the README's example too;
#   exunit    mix test: the ExUnit tests against build/libgms.so, with C
#             code in the same process, the README's example, and the leak
#             check printed after the suite ("gms leak check: clean");
#   dialyzer  Dialyzer on the Gms modules (PLT cached in build/elixir);
#   install   the README's example in a fresh Mix project against a
#             `cmake --install` prefix, found by pkg-config;
#   asan      the ExUnit tests again with the NIFs built with ASan and UBSan.
# ExUnit prints its own closing line; the other checks end with a plain
# "N passed, N failed" line. Exits 1 when anything failed.
#
# Elixir, erlang-dev (erl_nif.h) and erlang-dialyzer come from Debian's
# packages, installed here when missing; nothing comes from hex. libgms
# is configured and built in build/ as `make build` does, if needed.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=$ROOT/build
WORK=$BUILD/elixir
HERE=$ROOT/bindings/elixir
JOBS=${JOBS:-2}
export GMS_BACKEND=host

if ! command -v mix >/dev/null || ! command -v dialyzer >/dev/null \
    || ! ls /usr/lib/erlang/usr/include/erl_nif.h >/dev/null 2>&1; then
  echo "test-elixir: installing elixir, erlang-dev and erlang-dialyzer"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq elixir erlang-dev erlang-dialyzer >/dev/null
fi
command -v cmake >/dev/null || "$ROOT/scripts/deps.sh"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
fi
# The install test installs these targets.
cmake --build "$BUILD" -j "$JOBS" --target gms gms_static gms_torch >/dev/null || exit 1

mkdir -p "$WORK"
export GMS_LIB_DIR=$BUILD GMS_INCLUDE_DIR=$ROOT/include
# Mix's own state (no hex, no rebar) stays in the build tree.
export MIX_HOME=$WORK/mix-home HEX_OFFLINE=1
# Mix's build products too, off the source tree.
export MIX_BUILD_ROOT=$WORK/_build
cd "$HERE"

passed=0 failed=0
ok() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

echo "== mix compile --warnings-as-errors"
for env in dev test; do
  if MIX_ENV=$env mix compile --force --warnings-as-errors >"$WORK/compile-$env.log" 2>&1; then
    ok
  else
    cat "$WORK/compile-$env.log"; fail "mix compile ($env)"
  fi
done

echo "== mix format --check-formatted (and the README's example)"
if mix format --check-formatted >"$WORK/format.log" 2>&1; then ok; else cat "$WORK/format.log"; fail "mix format"; fi
sed -n '/<!-- elixir-example:begin -->/,/<!-- elixir-example:end -->/p' "$ROOT/README.md" \
  | sed '1,2d;$d' | sed '$d' >"$WORK/example.exs"
if [ -s "$WORK/example.exs" ] && mix format - <"$WORK/example.exs" | cmp -s - "$WORK/example.exs"; then
  ok
else
  fail "README.md's Elixir example is not as mix format writes it"
fi

echo "== mix test"
MIX_ENV=test mix test 2>&1 | tee "$WORK/exunit.log"
rc=${PIPESTATUS[0]}
# ExUnit's closing line counts its tests; what follows is this script's.
if grep -q '^gms leak check: clean' "$WORK/exunit.log"; then ok; else fail "the leak check"; fi
grep -qE '^[0-9]+ tests?, 0 failures' "$WORK/exunit.log" || [ "$rc" != 0 ] || fail "mix test printed no result"
[ "$rc" = 0 ] || fail "mix test exited $rc"

echo "== dialyzer"
# Without dialyxir (a hex package): dialyzer on the compiled modules, with
# elixir on its code path to read their debug info. Its PLT (erts, kernel,
# stdlib, elixir, logger, mix) takes about 4 minutes of a 2-core machine to
# build, too long for every CI run: it is built when GMS_DIALYZER=1 asks,
# and the check runs whenever the PLT is there (it then takes seconds).
EL=$(elixir -e 'IO.puts(:code.lib_dir(:elixir))')/..
PLT=$WORK/gms.plt
if [ ! -f "$PLT" ] && [ "${GMS_DIALYZER:-0}" = 0 ]; then
  echo "dialyzer: skipped (no PLT in build/elixir; GMS_DIALYZER=1 builds it and runs the check)"
elif [ ! -f "$PLT" ]; then
  dialyzer -pa "$EL/elixir/ebin" --build_plt --output_plt "$PLT" --apps erts kernel stdlib \
    "$EL/elixir/ebin" "$EL/logger/ebin" "$EL/mix/ebin" >"$WORK/plt.log" 2>&1 \
    || { tail -20 "$WORK/plt.log"; rm -f "$PLT"; }
fi
if [ ! -f "$PLT" ] && [ "${GMS_DIALYZER:-0}" = 0 ]; then
  : # skipped, said above
elif [ -f "$PLT" ] && dialyzer -pa "$EL/elixir/ebin" --plt "$PLT" --no_check_plt \
    -Wunmatched_returns -Werror_handling -Wunderspecs \
    "$MIX_BUILD_ROOT/dev/lib/gms/ebin" >"$WORK/dialyzer.log" 2>&1; then
  tail -1 "$WORK/dialyzer.log"; ok
else
  cat "$WORK/dialyzer.log" 2>/dev/null; fail "dialyzer"
fi

echo "== install: cmake --install, a fresh Mix project"
if env -u MIX_BUILD_ROOT "$HERE/test/install/run.sh" "$ROOT" "$BUILD" >"$WORK/install.log" 2>&1; then
  grep -v '^[0-9]* passed' "$WORK/install.log"; ok
else
  cat "$WORK/install.log"; fail "the install test"
fi

echo "== the ExUnit tests with the NIFs under ASan and UBSan"
# The NIF and the C peer built with the sanitizers (gcc's runtimes
# preloaded into the BEAM, which is not built with them: no leak check, the
# BEAM's own allocations would swamp it), in a build tree of their own;
# priv/ is rebuilt without them afterwards.
asan=$(gcc -print-file-name=libasan.so) ubsan=$(gcc -print-file-name=libubsan.so)
if [ -f "$asan" ] && [ -f "$ubsan" ]; then
  if GMS_NIF_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
      MIX_BUILD_ROOT=$WORK/_build_asan MIX_ENV=test mix compile --force >"$WORK/asan.log" 2>&1 \
      && ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LD_PRELOAD="$asan $ubsan" \
        MIX_BUILD_ROOT=$WORK/_build_asan MIX_ENV=test mix test >>"$WORK/asan.log" 2>&1; then
    grep -E '^[0-9]+ tests?, ' "$WORK/asan.log" | sed 's/^/asan: /'
    ok
  else
    tail -40 "$WORK/asan.log"; fail "the tests under ASan/UBSan"
  fi
  MIX_ENV=test mix compile --force >/dev/null 2>&1 || fail "rebuilding the NIF without sanitizers"
else
  echo "asan: skipped (gcc's libasan/libubsan not found)"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$rc" = 0 ]
