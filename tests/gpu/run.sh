#!/usr/bin/env bash
# tests/gpu/run.sh: everything the CUDA backend needs checked on a GPU
# machine, in one go (docs/gpu.md): a fresh build, the GPU tests, the same
# under compute-sanitizer memcheck (our kernels must be clean), and the GPU
# benchmarks with their anchors measured in the same run. All output goes
# to $OUT/gpu.log (OUT defaults to build-gpu/out).
#
#   bash tests/gpu/run.sh            # from the repository root
#   GMS_GPU_STEPS=gpu-tests,python-gpu bash tests/gpu/run.sh   # some steps
#
# The traces are read from .gpu-traces/ (a git-ignored copy of
# ../shared/traces) or GMS_TRACES. Each step has its own time limit so the
# whole run stays under ten minutes on an H100.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/build-gpu/out}
mkdir -p "$OUT"
LOG=$OUT/gpu.log
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
B=$ROOT/build-gpu
JOBS=$(nproc 2>/dev/null || echo 8)
fails=()
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
# GMS_GPU_STEPS, a comma-separated list of step names, runs only those
# (after the build); unset runs them all.
want() { [ -z "${GMS_GPU_STEPS:-}" ] || [[ ",$GMS_GPU_STEPS," == *",$1,"* ]]; }
run() { # run NAME SECONDS CMD...
    local name=$1 secs=$2; shift 2
    want "$name" || return 0
    step "$name"
    timeout "$secs" "$@"
    local rc=$?
    # 77 is a test's "cannot run here" (no GPU seen): on this machine, a failure.
    [ $rc -ne 77 ] || echo "$name did not run (exit 77, skipped): counted as a failure here"
    [ $rc -eq 0 ] || { echo "FAILED: $name (exit $rc)"; fails+=("$name"); }
    return $rc
}

step "machine"
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 || true
nvcc --version | tail -2
cmake --version | head -1
uname -r

# The build needs OpenSSL, zlib, jansson and libmicrohttpd headers; a bare image may lack them:
# then the Debian packages carried in .gpu-deps are unpacked beside us.
CMAKE_EXTRA=()
if [ ! -f /usr/include/openssl/hmac.h ] || [ ! -f /usr/include/zlib.h ] || [ ! -f /usr/include/jansson.h ] || [ ! -f /usr/include/microhttpd.h ]; then
    if ls .gpu-deps/*.deb >/dev/null 2>&1; then
        echo "headers missing: unpacking .gpu-deps into /tmp/gpudeps"
        for f in .gpu-deps/*.deb; do dpkg -x "$f" /tmp/gpudeps; done
        L=/tmp/gpudeps/usr/lib/x86_64-linux-gnu
        # The libraries themselves (libssl3): CMake 4 makes no OpenSSL::Crypto
        # target from a link that leads nowhere.
        crypto=$(readlink -f $L/libcrypto.so) ssl=$(readlink -f $L/libssl.so)
        CMAKE_EXTRA=(-DOPENSSL_ROOT_DIR=/tmp/gpudeps/usr -DOPENSSL_INCLUDE_DIR=/tmp/gpudeps/usr/include
                     -DOPENSSL_CRYPTO_LIBRARY=$crypto -DOPENSSL_SSL_LIBRARY=$ssl
                     -DZLIB_INCLUDE_DIR=/tmp/gpudeps/usr/include -DZLIB_LIBRARY=$L/libz.so
                     -DGMS_JANSSON_INCLUDE=/tmp/gpudeps/usr/include -DGMS_JANSSON_LIB=$L/libjansson.so
                     -DGMS_MHD_INCLUDE=/tmp/gpudeps/usr/include -DGMS_MHD_LIB=$L/libmicrohttpd.so)
        [ -e $L/libz.so ] || ln -sf "$(ls /usr/lib/x86_64-linux-gnu/libz.so.1* /lib/x86_64-linux-gnu/libz.so.1 2>/dev/null | head -1)" $L/libz.so
        export LD_LIBRARY_PATH=$L${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    else
        echo "warning: OpenSSL or zlib headers missing and no .gpu-deps"
    fi
fi

# GMS_GPU_KEEP_BUILD=1 builds over the last call's build-gpu (a warm machine).
[ -n "${GMS_GPU_KEEP_BUILD:-}" ] || rm -rf "$B"
step configure
timeout 120 cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${CMAKE_EXTRA[@]}" >/dev/null \
    || { echo "configure failed"; exit 1; }
step build
timeout 300 cmake --build "$B" -j "$JOBS" >"$B/build.log" 2>&1 \
    || { tail -40 "$B/build.log"; echo "build failed"; exit 1; }
grep -E "nvcc|warning" "$B/build.log" | head -20

run gpu-tests 180 "$B/tests/test_gpu_cuda"
# Sealed regions (docs/sealed.md): 10,000 buffers each way against OpenSSL,
# tampering, digests; then seal, unseal and digest of 1 GiB in GB/s beside
# the copy bandwidth measured in the same run (targets >= 100 GB/s each).
run seal-gpu 300 "$B/tests/test_gpu_seal"
run seal-bench 120 "$B/tests/test_gpu_seal" bench
# The backend contract's suite (tests/backend/conformance.c) on the GPU.
run conformance-cuda 120 "$B/tests/test_backend_conformance" cuda
run ctest-gpu 120 ctest --test-dir "$B" -R '^(gpu/|backend/conformance/cuda$)' -E '^gpu/migrate_2gpu$' \
    --output-on-failure
# The fault-injection campaign on the CUDA backend (docs/safety.md), 30,000
# trials per class; one JSON line per class.
run inject-cuda 300 "$B/gms-inject" --backend cuda --json
run inject-overflow 60 "$B/gms-inject" --backend cuda --json --verbose --class overflow_raw
run inject-underflow 60 "$B/gms-inject" --backend cuda --json --verbose --class underflow_raw

CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer \
     /usr/local/cuda*/compute-sanitizer/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
echo "compute-sanitizer: ${CS:-not found}"
run memcheck 240 env GMS_GPU_NO_FAULTS=1 "${CS:-compute-sanitizer}" --tool memcheck --error-exitcode 9 \
    --print-limit 20 "$B/tests/test_gpu_cuda"
run memcheck-seal 240 env GMS_SEAL_GPU_BUFFERS=100 "${CS:-compute-sanitizer}" --tool memcheck --error-exitcode 9 \
    --print-limit 20 "$B/tests/test_gpu_seal"
# Access windows and checked atomics (tests/gpu/ordering.cu): 0 torn
# reads in 10,000 rounds between two streams, tears without the windows,
# 1,000,000 atomic adds from two contexts; then, smaller, under memcheck
# (which serialises kernels: the control's tears are only reported); then
# what a window and an atomic cost.
run ordering-gpu 180 "$B/tests/test_gpu_ordering" test
run ordering-memcheck 300 "${CS:-compute-sanitizer}" --tool memcheck --error-exitcode 9 \
    --print-limit 20 "$B/tests/test_gpu_ordering" test --quick
run ordering-bench 120 "$B/tests/test_gpu_ordering" bench

if want anchors; then
    step "anchors build"
    nvcc -O3 -std=c++17 -arch=sm_90 -Iinclude tests/gpu/anchors.cu -L"$B" -lgms \
        -Xlinker -rpath="$B" -o "$B/anchors" || fails+=(anchors-build)
fi
run anchors 150 "$B/anchors"
if want vmm-sync; then
    step "vmm-sync build"
    nvcc -O2 -arch=sm_90 tests/gpu/vmm_sync.cu -lcuda -o "$B/vmm_sync" || fails+=(vmm-sync-build)
fi
run vmm-sync 60 "$B/vmm_sync"
if want vmm-costs; then
    step "vmm-costs build"
    nvcc -O2 -arch=sm_90 tests/gpu/vmm_costs.cu -lcuda -o "$B/vmm_costs" || fails+=(vmm-costs-build)
fi
run vmm-costs 60 "$B/vmm_costs"
if want launch-cost; then
    step "launch-cost build"
    nvcc -O2 -arch=sm_90 tests/gpu/launch_cost.cu -o "$B/launch_cost" || fails+=(launch-cost-build)
fi
run launch-cost 60 "$B/launch_cost"
# Migration (tests/gpu/migrate_2gpu.c, docs/migration.md). On one GPU: an
# 8 GiB pool moved to new memory of its own device, pointers unchanged and
# data checked. Two GPUs or more: a 16 GiB pool moved between GPUs, its
# GB/s against cuMemcpyPeer's in the same run; not in the default list,
# only when GMS_GPU_STEPS names migrate-2gpu.
run migrate-1gpu 300 env GMS_MIGRATE_GIB=8 "$B/tests/test_gpu_migrate_2gpu" same
if [[ ",${GMS_GPU_STEPS:-}," == *",migrate-2gpu,"* ]]; then
    run migrate-2gpu 300 "$B/tests/test_gpu_migrate_2gpu"
fi
# A benchmark, not a CTest test (tests/gpu/bench.c).
run gms-gpu-bench 180 "$B/tests/test_gpu_bench"
# The stream-ordered kernel alone, on the batch shapes of the free path.
run async-bench 60 "$B/tests/test_gpu_bench" async

# The replay set: ../shared/traces (carried as .gpu-traces) and the traces
# recorded here (bench/traces), each replayed through gms and through
# cudaMallocAsync by the same program.
TR=${GMS_TRACES:-$ROOT/.gpu-traces}
if ls "$TR"/*.csv.gz >/dev/null 2>&1; then
    TRACES=("$TR"/*.csv.gz bench/traces/*.csv.gz)
    run replay-cuda 240 "$B/gms-bench" replay --backend cuda "${TRACES[@]}"
    run replay-cuda-safety-off 240 "$B/gms-bench" replay --backend cuda --safety off "${TRACES[@]}"
else
    echo "no traces in $TR"; fails+=(replay-no-traces)
fi
# Informational, for the retain policy: chosen traces replayed with every
# map, unmap and blocked trim logged (GMS_DEBUG_MAPS), safety off and on;
# the logs land in $OUT/maps/.
if want replay-maps; then
    step replay-maps
    mkdir -p "$OUT/maps"
    for f in ${GMS_MAPS_TRACES:-bench/traces/bert_serve_varlen.csv.gz}; do
        for s in off on; do
            n=$(basename "$f" .csv.gz)-$s
            GMS_DEBUG_MAPS="$OUT/maps/$n.log" timeout 120 "$B/gms-bench" replay --backend cuda \
                --safety $s "$f" | grep RESULT
            grep -c "stopped by device work" "$OUT/maps/$n.log"
        done
    done
fi
# Where a replay's time goes on the device (kernel times against the
# wall), when Nsight Systems is installed: one trace, safety on.
if want nsys-replay; then
    step nsys-replay
    NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
    if [ -n "$NSYS" ] && ls "$TR"/gpt2_train_bf16.csv.gz >/dev/null 2>&1; then
        timeout 200 "$NSYS" profile -q -o "$B/replay" --force-overwrite true -t cuda \
            "$B/gms-bench" replay --backend cuda "$TR"/gpt2_train_bf16.csv.gz bench/traces/bert_serve_varlen.csv.gz
        timeout 100 "$NSYS" stats -q -r cuda_gpu_kern_sum,cuda_api_sum -f csv "$B/replay.nsys-rep" | cut -c1-220 | head -60
    else
        echo "nsys not found (or no traces): skipped"
    fi
fi
run latency-cuda 150 "$B/gms-bench" latency --backend cuda --iters 20000

# gmsd serving CUDA memory (docs/broker.md, "CUDA memory"): its test over
# the real driver with safety on (data, quota, kill -9, a second tenant,
# a kernel of one tenant on the other's address), then its costs.
run broker-cuda 120 env GMSD="$B/gmsd" "$B/tests/test_broker_cuda_memory"
run broker-cuda-bench 120 env GMSD="$B/gmsd" "$B/tests/test_broker_cuda_memory" bench

# Sharing on the GPU: the immutable_write class alone (its view trials run
# in exec'd children), and the pressure ladder's recovery on the device.
run inject-immutable 240 "$B/gms-inject" --backend cuda --json --class immutable_write --trials 6000
run pressure-cuda 120 "$B/gms-bench" pressure --backend cuda --json

# The Python bindings under PyTorch and CuPy (bindings/python, docs/python.md):
# DLPack both ways, read-only shares, the allocator plug-in in a training
# step; then the training and serving benchmark against PyTorch's allocator.
export GMS_LIBRARY="$B/libgms.so" GMS_TORCH_PLUGIN="$B/libgms_torch.so"
export PYTHONPATH="$ROOT/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
run python-gpu 240 python3 tests/gpu/python/test_gpu.py
run torch-bench 420 python3 tests/gpu/python/bench_torch.py --out "$OUT/torch_bench.json"
# CUDA graphs captured by PyTorch on gms memory (torch.cuda.graph and
# torch.compile(mode="reduce-overhead")): outputs, isolation, release.
run graph-probe 500 python3 tests/gpu/python/graph_probe.py --timeout 120
# torch.compile(mode="reduce-overhead") with inductor's plain graphs (its
# trees off) on gms, inference and training, safety on and off: exact at
# every call?
run compiled-graphs 560 bash -c "for mode in '' --train; do for safety in on off; do \
    GMS_TORCH_SAFETY=\$safety python3 tests/gpu/python/compiled_graphs_probe.py \$mode || exit 1; done; done && \
    python3 tests/gpu/python/graph_probe.py --only reduce_overhead --timeout 120"
# Workloads outside the three above (bench_torch.py --extra), so that gms is
# judged on more than what it was measured on while it was built.
run torch-extra 470 python3 tests/gpu/python/bench_torch.py --extra --budget 400 --timeout 120 --markdown --out "$OUT/torch_extra.json"
# The training workloads with gmsd in between: the gms children's memory
# is leases of device memory from a gmsd serving CUDA (64 MiB leases).
# torch-broker-blocking runs ResNet-50 alone with CUDA_LAUNCH_BLOCKING=1 in
# the gms children, so that a fault is reported by the launch that made it
# (docs/broker.md, "Known problem").
torch_broker() { # torch_broker STEP OUTFILE BENCH_ARGS...
    local name=$1 out=$2; shift 2
    want "$name" || return 0
    step "$name"
    BD=$(mktemp -d)
    printf '{"lease_bytes": 67108864, "tenants": [{"name": "trainer", "uids": [%s], "quota_bytes": 128849018880, "quota_leases": 4096}]}' \
        "$(id -u)" >"$BD/policy.json"
    "$B/gmsd" --policy "$BD/policy.json" --socket "$BD/gmsd.sock" --memory cuda 2>"$BD/gmsd.log" &
    GMSD_PID=$!
    for _ in $(seq 100); do [ -S "$BD/gmsd.sock" ] && break; sleep 0.1; done
    timeout 420 python3 tests/gpu/python/bench_torch.py "$@" \
        --gms-env GMS_BROKER="$BD/gmsd.sock" --gms-env GMS_TENANT=trainer \
        --out "$OUT/$out" || fails+=("$name")
    kill "$GMSD_PID"; wait "$GMSD_PID"; tail -5 "$BD/gmsd.log"
}
torch_broker torch-broker torch_broker.json --only resnet50_train,gpt2_train
torch_broker torch-broker-blocking torch_broker_blocking.json --only resnet50_train \
    --gms-env CUDA_LAUNCH_BLOCKING=1
# The same without the client's spare lease (GMS_BROKER_SPARE=0).
torch_broker torch-broker-nospare torch_broker_nospare.json --only resnet50_train \
    --gms-env GMS_BROKER_SPARE=0
# Whether the scrub's traffic would hide behind a training step's kernels
# on a stream of its own (docs/stream-ordered.md, "What is still open").
run overlap-probe 300 python3 tests/gpu/python/overlap_probe.py resnet50 gpt2
# Where the training steps' device time goes, kernel by kernel.
run torch-profile 300 python3 tests/gpu/python/bench_torch.py --profile --only resnet50_train,gpt2_train \
    --out "$OUT/torch_profile.json"

# Informational, for tuning the retain policy: the GPT-2 training child
# with every map and unmap logged, safety off, then on.
if want torch-maps; then
    step torch-maps
    for cfg in off on; do
        set -- $cfg
        echo "--- safety $1 ${2:-}"
        rm -f "$OUT/maps.log"
        env GMS_TORCH_SAFETY=$1 ${2:-} GMS_DEBUG_MAPS="$OUT/maps.log" timeout 150 \
            python3 tests/gpu/python/bench_torch.py --child gpt2_train gms | cut -c1-400
        wc -l <"$OUT/maps.log"; tail -30 "$OUT/maps.log"
    done
fi

# Informational: the whole suite on this machine, where `auto` picks cuda.
if want ctest-all; then
    step "ctest (all, informational)"
    timeout 150 ctest --test-dir "$B" -j 8 -E '^gpu/' 2>&1 | tail -15
fi

step "summary"
grep -h "^RESULT" "$LOG" | sort -u
if [ ${#fails[@]} -eq 0 ]; then
    echo "gpu run: all steps passed"
else
    echo "gpu run: failed steps: ${fails[*]}"
    exit 1
fi
