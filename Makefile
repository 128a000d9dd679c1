# gms: the two commands of the README are `make demo` and `make test`.
# Both install what they need first (scripts/deps.sh, Debian packages).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 30
BROKER_FUZZ_SECONDS ?= 10
CMAKE_FLAGS ?=

.PHONY: all build deps test test-release test-o3 test-python test-rust test-nim test-zig test-julia test-elixir test-asan test-tsan test-fuzz test-proofs demo bench clean install

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

# Every test: the normal build, the language bindings, ASan+UBSan, TSan on
# the threaded tests, a short fixed-time libFuzzer run, and the proofs.
test: test-release test-o3 test-python test-rust test-nim test-zig test-julia test-elixir test-asan test-tsan test-fuzz test-proofs
	@echo "make test: all suites passed"

test-release: build
	@cd build && ctest --output-on-failure -j $(JOBS)

# The library and gmsd built as CMAKE_BUILD_TYPE=Release (-O3) with
# -Werror: the optimiser's flow analysis warns where RelWithDebInfo's -O2
# does not, and a user's release build must not fail.
test-o3: deps
	@cmake -S . -B build-o3 -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-o3 -j $(JOBS) --target gms gmsd >/dev/null
	@echo "release build (-O3 -Werror): built"

# The Python bindings' tests (bindings/python/tests) on the host backend,
# against build/libgms.so, in a virtual environment under build/pyenv.
test-python: build
	@scripts/pytest.sh

# The Rust crate (bindings/rust): cargo test, clippy, the tests under ASan,
# Rust and Python in one process, and the README's example against an
# installed libgms.
test-rust: build
	@JOBS=$(JOBS) bindings/rust/test.sh

# The Nim binding's tests (bindings/nim/test.sh; installs nim from Debian's
# packages): nimble test under --mm:refc and --mm:orc, a Nim library and the
# Python package sharing buffers in one process, and an offline install.
test-nim: build
	@JOBS=$(JOBS) bindings/nim/test.sh

# The Zig binding (bindings/zig): lint, its tests against build/libgms.so, a
# Zig/Python test in one process and an install test; the compiler comes
# from the ziglang package (pip, into build/zigenv).
test-zig: build
	@JOBS=$(JOBS) bindings/zig/test.sh

# The Julia binding (bindings/julia), checked without Julia (none can be
# installed here): abicheck against the header, the fatou linter and a
# second parser clean, the names the tests use defined. Takes seconds.
test-julia: deps
	@bindings/julia/test.sh

# The Elixir binding (bindings/elixir/test.sh; installs elixir, erlang-dev
# and erlang-dialyzer from Debian's packages): mix compile
# --warnings-as-errors, the ExUnit tests (C code sharing buffers in the same
# process, a leak check), Dialyzer, and an install test.
test-elixir: build
	@JOBS=$(JOBS) bindings/elixir/test.sh

# The machine-checked proofs (proofs/run.sh, docs/proofs.md): Z3 on the
# TLSF class arithmetic and the handle word, Frama-C WP on src/core/tlsf.c,
# SPIN on the sharing protocol, Z3 on share.c's access decision and on
# tenant isolation in snapshots of random workloads (build/gms verify
# --prove), each with mutants its prover must reject. Builds libgms and the
# gms CLI in build/ when needed; installs frama-c-base, why3, cvc4, z3 and
# spin from Debian's packages, z3-solver into build/proofenv.
test-proofs: deps
	@JOBS=$(JOBS) proofs/run.sh

test-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DGMS_SANITIZE=address,undefined >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)
	@scripts/pytest.sh --asan

test-tsan: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	  -DGMS_SANITIZE=thread -DGMS_THREADS_ONLY=ON >/dev/null
	@cmake --build build-tsan -j $(JOBS)
	@cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -L threads

test-fuzz: deps
	@cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	  -DGMS_SANITIZE=address,undefined -DGMS_FUZZ=ON -DGMS_THREADS_ONLY=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_api fuzz_broker
	@mkdir -p build-fuzz/corpus build-fuzz/corpus-broker
	@build-fuzz/fuzz_api -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  build-fuzz/corpus 2>build-fuzz/fuzz.log || (tail -50 build-fuzz/fuzz.log; exit 1)
	@grep -E 'stat::number_of_executed_units' build-fuzz/fuzz.log
	@build-fuzz/fuzz_broker -max_total_time=$(BROKER_FUZZ_SECONDS) -print_final_stats=1 \
	  build-fuzz/corpus-broker tests/fuzz/broker_seeds 2>build-fuzz/fuzz-broker.log || (tail -50 build-fuzz/fuzz-broker.log; exit 1)
	@grep -E 'stat::number_of_executed_units' build-fuzz/fuzz-broker.log

# The demo writes an audit trail, verifies it and renders its HTML report.
DEMO_DIR ?= build/demo
demo: build
	@rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)/trail
	@build/gms audit keygen $(DEMO_DIR)/audit.key
	@GMS_AUDIT_DIR=$(DEMO_DIR)/trail GMS_AUDIT_KEY_FILE=$(DEMO_DIR)/audit.key build/gms-demo
	@echo
	@echo "== Audit trail ($(DEMO_DIR)/trail)"
	@build/gms audit verify $(DEMO_DIR)/trail --key-file $(DEMO_DIR)/audit.key
	@build/gms audit report $(DEMO_DIR)/trail --key-file $(DEMO_DIR)/audit.key \
	  --html $(DEMO_DIR)/report.html
	@echo "report: $(DEMO_DIR)/report.html"

bench: build
	@build/gms-bench latency --json
	@build/gms-bench replay --json --safety off ../shared/traces/*.csv.gz
	@build/gms-bench replay --json --safety on ../shared/traces/*.csv.gz

install: build
	@cmake --install build

clean:
	@rm -rf build build-o3 build-asan build-tsan build-fuzz bindings/rust/target \
	  bindings/elixir/_build bindings/elixir/priv
