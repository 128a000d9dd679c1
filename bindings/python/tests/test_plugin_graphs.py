"""The allocator plug-in's hooks for CUDA graphs, Tensor.record_stream and
the memory fraction, called as PyTorch calls them (beside other threads'
allocations too), on the CUDA backend over the stand-in driver
(tests/backend/stand_in: host memory, a device that runs scrubs on the
host, streams that a test marks as capturing). The stand-in counts work
queued into a capturing stream and calls that a capture in the default
mode forbids: gms must make neither. A GPU runs the same through PyTorch
in tests/gpu/python/graph_probe.py."""

import os
import subprocess
import sys

import pytest

import gms

HERE = os.path.dirname(os.path.abspath(__file__))


def stand_in_dir():
    try:
        plugin = gms.torch_plugin_path()
    except FileNotFoundError:
        return None
    d = os.path.join(os.path.dirname(os.path.realpath(plugin)), "stand-in", "cuda")
    return d if os.path.exists(os.path.join(d, "libcuda.so.1")) else None


def run_child(code):
    d = stand_in_dir()
    if not d:
        pytest.skip("no stand-in driver beside the plug-in (a build tree has one)")
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."), GMS_TORCH_BACKEND="cuda",
               STAND_IN_DEVICE_LAG="4",
               LD_LIBRARY_PATH=d + os.pathsep + os.environ.get("LD_LIBRARY_PATH", ""))
    env.pop("GMS_TORCH_SAFETY", None)
    r = subprocess.run([sys.executable, "-c", PRELUDE + code], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


PRELUDE = """
import ctypes
import gms.torch as gt
p = gt.plugin()
cuda = ctypes.CDLL("libcuda.so.1")  # the stand-in
for name in ("stand_in_captured", "stand_in_unsafe", "stand_in_waits"):
    getattr(cuda, name).restype = ctypes.c_ulong
cuda.stand_in_capture.argtypes = [ctypes.c_void_p, ctypes.c_int]
MiB = 1 << 20

def stream():
    s = ctypes.c_void_p()
    assert cuda.cuStreamCreate(ctypes.byref(s), 1) == 0
    return s.value

def alloc(n, s):
    ptr = p.gms_torch_alloc(n, 0, s)
    assert ptr, "allocation failed"
    return ptr

def free(ptr, n, s):
    p.gms_torch_free(ptr, n, 0, s)

def live():
    gt.runtime(0).sync()
    return gt.stats(0)["live_bytes"]

S, S2 = stream(), stream()
"""


def test_graph_memory_stays_apart_until_released():
    """A capture's blocks are the graph's: freed during or after the capture
    they are kept for its pool (reused by its later allocations), never
    handed to other tensors, and go back to gms once every graph using the
    pool is released. Nothing of gms's is queued into the capture, and
    nothing a capture forbids is called."""
    run_child("""
warm = alloc(MiB, S)                       # an eager tensor before the capture
p.gms_torch_begin_allocate_to_pool(0, 0, 7, None)
cuda.stand_in_capture(S, 1)
a = alloc(3 * MiB, S)                      # the graph's
b = alloc(MiB, S)
free(a, 3 * MiB, S)                        # an intermediate: kept for the pool
c = alloc(3 * MiB, S)
assert c == a, "the pool's freed block is reused on its stream"
side = alloc(3 * MiB, S2)                  # another stream, not capturing: not the graph's
assert side != a
free(warm, MiB, S)                         # an eager block freed during the capture: after it
cuda.stand_in_capture(S, 0)
p.gms_torch_end_allocate_to_pool(0, 0, 7)
assert cuda.stand_in_captured() == 0, "gms queued work into the capture"
assert cuda.stand_in_unsafe() == 0, "gms made a call the capture forbids"

eager = [alloc(n, S) for n in (MiB, 3 * MiB) for _ in range(6)]
assert a not in eager and b not in eager, "another tensor got the graph's memory"
free(b, MiB, S)                            # the graph's output, dropped after the capture
assert alloc(MiB, S) != b
held = live()

# A second graph captured into the same pool takes the block back.
p.gms_torch_begin_allocate_to_pool(0, 0, 7, None)
cuda.stand_in_capture(S, 1)
e = alloc(MiB, S)
assert e == b, "a later capture into the pool reuses its freed block"
free(e, MiB, S)
cuda.stand_in_capture(S, 0)
p.gms_torch_end_allocate_to_pool(0, 0, 7)
assert live() == held

p.gms_torch_release_pool(0, 0, 7)          # the first graph: the second still uses the pool
assert live() == held
p.gms_torch_release_pool(0, 0, 7)          # the last: its freed blocks go back
after = live()
assert held - after >= MiB, (held, after)
free(c, 3 * MiB, S)                        # still PyTorch's after the release: freed as any
assert held - live() >= 4 * MiB
assert cuda.stand_in_captured() == 0 and cuda.stand_in_unsafe() == 0
p.gms_torch_empty_cache()
print("ok")
""")


def test_record_stream_orders_the_free_after_the_other_stream():
    """Tensor.record_stream(S2) on a block allocated on S: its free on S
    waits, on the device, for the work queued on S2 (one event wait, made
    once however often the stream was recorded); a block used on its own
    stream only makes none."""
    run_child("""
x = alloc(MiB, S)
p.gms_torch_record_stream(x, S2)
p.gms_torch_record_stream(x, S2)
p.gms_torch_record_stream(x, S)            # its own stream: nothing to wait for
w = cuda.stand_in_waits()
free(x, MiB, S)
assert cuda.stand_in_waits() - w == 1, cuda.stand_in_waits() - w
y = alloc(MiB, S)
w = cuda.stand_in_waits()
free(y, MiB, S)
assert cuda.stand_in_waits() == w
assert p.gms_torch_live_pointers() == 0
print("ok")
""")


def test_hooks_refuse_what_is_not_theirs():
    """A release or end of a pool that was never begun, a device out of
    range and a record_stream of a pointer the plug-in did not allocate
    change nothing (the last says so)."""
    r = run_child("""
p.gms_torch_end_allocate_to_pool(0, 5, 5)
p.gms_torch_release_pool(0, 5, 5)
p.gms_torch_release_pool(-1, 0, 1)
p.gms_torch_begin_allocate_to_pool(9999, 0, 1, None)
p.gms_torch_record_stream(0x1234000, S)
x = alloc(MiB, S)
free(x, MiB, S)
assert p.gms_torch_live_pointers() == 0
print("ok")
""")
    assert "record_stream of 0x1234000" in r.stderr


def test_memory_fraction_is_a_quota():
    """torch.cuda.set_per_process_memory_fraction(f) through the plug-in's
    hook: the tenant may keep at most f of the device's memory (the stand-in
    says 16 GiB) in live blocks; past it an allocation is refused."""
    run_child("""
p.gms_torch_set_memory_fraction(1 / 1024, 0)  # 16 MiB of 16 GiB
a = alloc(8 * MiB, S)
assert p.gms_torch_alloc(16 * MiB, 0, S) is None, "past the fraction"
free(a, 8 * MiB, S)
b = alloc(15 * MiB, S)
free(b, 15 * MiB, S)
p.gms_torch_set_memory_fraction(1.5, 0)  # not a fraction: said, and nothing changes
assert p.gms_torch_alloc(16 * MiB, 0, S) is None
print("ok")
""")


def test_captures_beside_other_threads():
    """Captures begun, filled and ended on one stream while four threads
    allocate, record streams and free on their own streams (ctypes drops
    the GIL: the plug-in's calls run at once). Every thread's blocks are
    its own, nothing leaks, and the graphs' memory goes back when their
    pool is released."""
    run_child("""
import threading
streams = [stream() for _ in range(4)]
errors = []

def worker(i):
    # Relaxed, as a thread must be to map memory while another captures in
    # the default mode (the plug-in relaxes only once it knows of a capture;
    # a worker between its check and the capture's start would race).
    mode = ctypes.c_int(2)
    cuda.cuThreadExchangeStreamCaptureMode(ctypes.byref(mode))
    try:
        s, other = streams[i], streams[(i + 1) % 4]
        for n in range(400):
            ptrs = [alloc((n % 7 + 1) * 4096, s) for _ in range(4)]
            assert len(set(ptrs)) == 4
            p.gms_torch_record_stream(ptrs[0], other)
            for q in ptrs:
                free(q, 0, s)
    except BaseException as e:  # reported by the main thread
        errors.append(repr(e))

threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
base = None
for k in range(20):
    p.gms_torch_begin_allocate_to_pool(0, 1, 100 + k, None)
    cuda.stand_in_capture(S, 1)
    kept = [alloc(MiB, S) for _ in range(3)]
    free(kept[1], MiB, S)
    cuda.stand_in_capture(S, 0)
    p.gms_torch_end_allocate_to_pool(0, 1, 100 + k)
    for q in (kept[0], kept[2]):
        free(q, MiB, S)
    p.gms_torch_release_pool(0, 1, 100 + k)
for t in threads:
    t.join()
assert not errors, errors
assert p.gms_torch_live_pointers() == 0
assert live() == 0, live()
assert cuda.stand_in_captured() == 0 and cuda.stand_in_unsafe() == 0
print("ok")
""")


def test_quarantine_exits_stay_out_of_a_capture():
    """Blocks freed on a stream before its capture (a warm-up run, as
    torch.compile's plain graphs make on the stream they then capture) wait
    in gms's quarantine. Allocations during the capture that make the pool
    grow push them out, and their checks run on the stream they were freed
    on: none of those may be queued into the capture, where every replay
    would check and poison memory that other tensors use by then."""
    run_child("""
sizes = [n for n in (MiB, 2 * MiB, 4 * MiB, 8 * MiB) for _ in range(4)]
warm = [alloc(n, S) for n in sizes]
for ptr, n in zip(warm, sizes):
    free(ptr, n, S)                        # the warm-up's blocks: into quarantine, on S
p.gms_torch_begin_allocate_to_pool(0, 0, 9, None)
cuda.stand_in_capture(S, 1)
graph = [alloc(16 * MiB, S) for _ in range(8)]   # the pool grows: mapping lets the quarantine go
cuda.stand_in_capture(S, 0)
p.gms_torch_end_allocate_to_pool(0, 0, 9)
assert cuda.stand_in_captured() == 0, "gms queued %d launches into the capture" % cuda.stand_in_captured()
assert cuda.stand_in_unsafe() == 0
for g in graph:
    free(g, 16 * MiB, S)
p.gms_torch_release_pool(0, 0, 9)
print("ok")
""")
