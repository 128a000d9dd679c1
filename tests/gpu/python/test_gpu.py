"""GPU tests of the Python bindings (needs a CUDA GPU, torch; cupy optional).

- gms buffers into torch and cupy through DLPack, and their tensors into
  gms, with the data checked both ways;
- a read-only share exported to torch cannot be written: torch refuses the
  read-only tensor, or the pointer is a read-only mapping and a kernel
  writing through it faults (in a child process: a device fault ends the
  CUDA context);
- the PyTorch allocator plug-in runs real training steps (a small CNN) on
  gms memory, in child processes since the allocator must be chosen before
  the first CUDA allocation, and matches the losses of PyTorch's own
  allocator;
- the CuPy allocator hook.

Run with pytest (`python -m pytest -q tests/gpu/python/test_gpu.py`) or, on a
machine without pytest, as a script (`python tests/gpu/python/test_gpu.py`),
which prints 'N passed, N failed, N skipped' (tests/gpu/run.sh does this in
its python-gpu step). libgms comes from $GMS_LIBRARY (tests/gpu/run.sh sets
it to build-gpu/libgms.so), the plug-in from beside it or $GMS_TORCH_PLUGIN.
Everything skips cleanly where torch.cuda is not available (script mode
then exits 77, the skip code).
"""

import gc
import json
import math
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

try:
    import pytest
except ImportError:  # the script mode below stands in for it
    pytest = None


class Skip(Exception):
    pass


def skip(msg):
    if pytest:
        pytest.skip(msg)
    raise Skip(msg)


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


try:
    import torch
    HAVE_CUDA = torch.cuda.is_available()
except ImportError:
    torch, HAVE_CUDA = None, False
if not HAVE_CUDA and pytest and __name__ != "__main__":
    pytest.skip("torch.cuda is not available", allow_module_level=True)

try:
    import cupy
except ImportError:
    cupy = None

import numpy as np  # noqa: E402

import gms  # noqa: E402

_rt = None


def cuda_rt():
    """One private CUDA runtime for the in-process tests (device 0)."""
    global _rt
    if _rt is None:
        _rt = gms.Runtime(backend="cuda", device=0)
    return _rt


def child_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "bindings", "python") + os.pathsep + \
        env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_child(code, timeout=240, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=child_env(**env),
                          capture_output=True, text=True, timeout=timeout)


# ---- DLPack ---------------------------------------------------------------------------------

def test_torch_sees_gms_buffer():
    rt = cuda_rt()
    with rt.context("acme", "alice") as ctx:
        n = 1 << 18
        buf = ctx.alloc(4 * n)
        assert buf.__dlpack_device__() == (2, 0)
        want = np.arange(n, dtype=np.float32)
        buf.write(want.tobytes())
        t = torch.from_dlpack(buf.as_tensor("float32", (n,)))
        assert t.device.type == "cuda" and t.dtype == torch.float32
        assert t.data_ptr() == buf.ptr  # no copy
        assert np.array_equal(t.cpu().numpy(), want)  # gms -> torch
        t.mul_(2).add_(1)
        torch.cuda.synchronize()  # gms does not track torch's streams
        got = np.frombuffer(buf.read(), np.float32)
        assert np.array_equal(got, want * 2 + 1)  # torch -> gms
        m = torch.from_dlpack(buf.as_tensor(torch.float32, (512, 512)))
        assert m.shape == (512, 512) and float(m[1, 0]) == float(want[512] * 2 + 1)
        del t, m
        buf.free()


def test_gms_imports_torch_tensor():
    rt = cuda_rt()
    with rt.context("acme", "alice") as ctx:
        t = torch.arange(100000, dtype=torch.int32, device="cuda")
        torch.cuda.synchronize()
        buf = gms.from_dlpack(t, context=ctx)
        assert buf.size == t.numel() * 4 and buf.ptr == t.data_ptr()
        assert np.array_equal(np.frombuffer(buf.read(), np.int32), t.cpu().numpy())
        buf.write(np.array([-7, -8], np.int32).tobytes(), 8)
        assert t[2].item() == -7 and t[3].item() == -8
        raises(gms.OutOfBounds, buf.read, 4, t.numel() * 4 - 2)
        buf.free()  # gms calls torch's deleter; t lives on
        assert t[4].item() == 4


def test_cupy_round_trip():
    if cupy is None:
        skip("cupy is not installed")
    rt = cuda_rt()
    with rt.context("acme", "alice") as ctx:
        buf = ctx.alloc(4 * 4096)
        buf.write(np.arange(4096, dtype=np.int32).tobytes())
        a = cupy.from_dlpack(buf.as_tensor("int32", (64, 64)))
        assert int(a.sum()) == sum(range(4096))  # gms -> cupy
        a *= 3
        cupy.cuda.get_current_stream().synchronize()
        assert np.frombuffer(buf.read(8), np.int32).tolist() == [0, 3]  # cupy -> gms
        c = cupy.full(1000, 5, dtype=cupy.float64)
        cupy.cuda.get_current_stream().synchronize()
        back = gms.from_dlpack(c, context=ctx)
        assert np.frombuffer(back.read(), np.float64).sum() == 5000
        del a
        back.free()
        buf.free()


# ---- read-only shares -----------------------------------------------------------------------

_SHARE = """
import json, sys, gms, torch
rt = gms.Runtime(backend="cuda", device=0)
owner = rt.context("acme", "alice")
buf = owner.alloc(4 << 20, pages=True)        # whole granules: a read-only view
buf.write(b"\\x01" * (4 << 20))
sid = buf.share(immutable=True)
mine = rt.context("acme", "bob").acquire(sid)
info = mine.info()
"""


def test_read_only_share_in_torch():
    """What torch does with a read-only tensor, in this process (no write)."""
    rt = cuda_rt()
    owner = rt.context("acme", "alice")
    buf = owner.alloc(4 << 20, pages=True)
    buf.write(b"\x01" * (4 << 20))
    sid = buf.share(immutable=True)
    reader = rt.context("acme", "bob")
    mine = reader.acquire(sid)
    assert mine.info().read_only_view and mine.info().immutable
    raises(gms.ReadOnly, mine.write, b"x")
    raises(gms.ReadOnly, mine.__dlpack__)  # legacy tensors cannot say read-only
    try:
        t = torch.from_dlpack(mine)
    except Exception as e:  # torch refuses read-only tensors: fine
        print("torch refused the read-only tensor: %s: %s" % (type(e).__name__, e))
    else:
        print("torch accepted the read-only tensor (flag ignored); reads work")
        assert int(t[:16].sum()) == 16
        del t
    mine.free()
    buf.free()
    reader.close()
    owner.close()


def test_read_only_share_cannot_be_written():
    """A kernel writing through the read-only mapping faults: in a child, a
    torch tensor over the view (through DLPack if torch takes it, else
    through __cuda_array_interface__, which has no read-only check) is
    written; the child must fail and never report the write done."""
    r = run_child(_SHARE + """
assert info.read_only_view, info
class View:  # a framework that ignores the read-only flag
    __cuda_array_interface__ = {"shape": (4 << 20,), "typestr": "|u1",
                                "data": (mine.ptr, False), "version": 3}
try:
    t = torch.from_dlpack(mine)
    print("via dlpack", flush=True)
except Exception as e:
    t = torch.as_tensor(View(), device="cuda")
    print("via cuda array interface (%s)" % type(e).__name__, flush=True)
print("writing", flush=True)
t.fill_(7)
torch.cuda.synchronize()
print("wrote", flush=True)
""")
    out = r.stdout
    assert "writing" in out, (out, r.stderr[-3000:])
    assert "wrote" not in out and r.returncode != 0, (r.returncode, out, r.stderr[-3000:])
    print("child failed as expected (exit %d): %s" % (r.returncode, r.stderr.strip()[-300:]))


# ---- the allocator plug-ins ---------------------------------------------------------------

_TRAIN = """
import json, math, sys, torch, torch.nn as nn, torch.nn.functional as F
use_gms = sys.argv[1] == "gms"
if use_gms:
    import gms.torch
    gms.torch.use_gms()
torch.manual_seed(0)
torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False
model = nn.Sequential(
    nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
g = torch.Generator(device="cuda").manual_seed(1)
x = torch.randn(64, 3, 32, 32, device="cuda", generator=g)
y = torch.randint(0, 10, (64,), device="cuda", generator=g)
losses = []
for step in range(5):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    losses.append(loss.item())
torch.cuda.synchronize()
out = {"losses": losses}
if use_gms:
    s = gms.torch.stats()
    out.update(live_blocks=s["live_blocks"], allocs=s["allocs"], frees=s["frees"],
               peak_held=s["peak_held_bytes"], live_pointers=gms.torch.live_pointers(),
               violations=gms.torch.runtime().verify(raise_on_violation=False)["violations"],
               params_in_gms=all(gms.torch.lookup(p.untyped_storage().data_ptr())
                                 for p in model.parameters()))
print("RESULT " + json.dumps(out))
"""


def _result(r):
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError("no result (exit %d): %s" % (r.returncode, r.stderr[-3000:]))


def test_torch_plugin_training_step():
    ref = _result(run_child(_TRAIN.replace("sys.argv[1]", "'torch'")))
    got = _result(run_child(_TRAIN.replace("sys.argv[1]", "'gms'")))
    assert all(math.isfinite(v) for v in got["losses"])
    assert got["losses"][-1] < got["losses"][0]  # it trains
    for a, b in zip(ref["losses"], got["losses"]):  # same numbers, other memory
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (ref["losses"], got["losses"])
    assert got["live_blocks"] > 0 and got["live_pointers"] > 0
    assert got["params_in_gms"]  # every parameter's storage is a gms block
    assert got["allocs"] > got["live_blocks"] and got["frees"] > 0
    assert got["violations"] == 0
    print("plug-in:", got)


def test_torch_plugin_refuses_late_switch():
    r = run_child("""
import torch, gms.torch
torch.zeros(1, device="cuda")        # PyTorch's allocator is in use now
try:
    gms.torch.use_gms()
except RuntimeError as e:
    print("refused:", e)
""")
    assert "refused" in r.stdout, (r.stdout, r.stderr[-2000:])


def test_cupy_allocator():
    if cupy is None:
        skip("cupy is not installed")
    import gms.cupy
    rt = cuda_rt()
    with rt.context("cupy-user") as ctx:
        before = rt.stats()["allocs"]
        gms.cupy.use_gms(ctx)
        try:
            a = cupy.arange(1 << 20, dtype=cupy.float32)
            b = (a * 2).sum()
            assert float(b) == float(np.arange(1 << 20, dtype=np.float64).sum() * 2)
            assert rt.stats()["allocs"] > before
            del a, b
            cupy.cuda.get_current_stream().synchronize()
            gc.collect()
        finally:
            gms.cupy.use_default()
        assert rt.stats()["live_blocks"] == 0


def main():
    """Script mode: run every test_* function, print a closing count."""
    if not HAVE_CUDA:
        print("0 passed, 0 failed, 1 skipped (torch.cuda is not available)")
        return 77  # the skip code: nothing ran (tests/gpu/run.sh counts it a failure)
    passed = failed = skipped = 0
    for name, fn in sorted(globals().items()):
        if not name.startswith("test_") or not callable(fn):
            continue
        try:
            fn()
            passed += 1
            print("PASS", name)
        except Skip as e:
            skipped += 1
            print("SKIP", name, e)
        except Exception as e:
            failed += 1
            print("FAIL", name, type(e).__name__, e)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    if failed:
        return 1
    return 0 if passed else 77  # every test skipped: nothing ran


if __name__ == "__main__":
    sys.exit(main())
