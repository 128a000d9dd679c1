"""DLPack round trips with numpy on the host backend (kDLCPU): gms buffers
into numpy through versioned and legacy capsules, numpy arrays into gms,
the capsule protocol's ownership rules, and the array API's keywords."""

import ctypes
import gc

import pytest

import gms
from conftest import needs

np = pytest.importorskip("numpy")

pytestmark = needs("gms_dlpack_export", "gms_dlpack_export_legacy", "gms_dlpack_import",
                   "gms_dlpack_import_legacy")

_valid = ctypes.pythonapi.PyCapsule_IsValid
_valid.restype = ctypes.c_int
_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]


def holders(buf):
    return buf.info().holders


def test_numpy_sees_gms_memory(ctx):
    buf = ctx.alloc(4096, zero=True)
    assert buf.__dlpack_device__() == (1, 0)
    arr = np.from_dlpack(buf)  # numpy asks for a versioned capsule
    assert arr.dtype == np.uint8 and arr.shape == (4096,)
    assert arr.ctypes.data == buf.ptr  # no copy
    arr[:5] = np.frombuffer(b"hello", np.uint8)
    assert buf.read(5) == b"hello"
    buf.write(b"world", 10)
    assert bytes(arr[10:15]) == b"world"


def test_capsule_names_and_ownership(ctx):
    buf = ctx.alloc(256)
    cap = buf.__dlpack__(max_version=(1, 0))
    assert _valid(cap, b"dltensor_versioned")
    assert holders(buf) == 2  # the tensor's own handle
    del cap  # never consumed: the capsule's destructor calls the deleter
    gc.collect()
    assert holders(buf) == 1
    legacy = buf.__dlpack__()  # no max_version: a pre-1.0 consumer
    assert _valid(legacy, b"dltensor")
    arr = np.from_dlpack(buf.as_tensor())  # consumed: numpy's from here
    assert holders(buf) == 3
    del legacy, arr
    gc.collect()
    assert holders(buf) == 1


def test_tensor_outlives_buffer(rt, ctx):
    buf = ctx.alloc(64)
    buf.write(b"still here")
    arr = np.from_dlpack(buf)
    buf.free()  # the exported tensor holds its own handle
    assert bytes(arr[:10]) == b"still here"
    assert rt.stats()["live_blocks"] == 1
    del arr
    gc.collect()
    assert rt.stats()["live_blocks"] == 0


def test_typed_views(ctx):
    buf = ctx.alloc(4 * 32)
    want = np.arange(32, dtype=np.float32).reshape(4, 8)
    buf.write(want.tobytes())
    got = np.from_dlpack(buf.as_tensor("float32", (4, 8)))
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert np.array_equal(np.from_dlpack(buf.as_tensor(np.float32)), want.ravel())
    col = np.from_dlpack(buf.as_tensor(np.dtype("float32"), (4,), strides=(8,), offset=4))
    assert np.array_equal(col, want[:, 1])
    tail = np.from_dlpack(buf.as_tensor("int32", (2,), offset=120))
    assert tail.shape == (2,)
    with pytest.raises(gms.OutOfBounds):
        np.from_dlpack(buf.as_tensor("float32", (4, 9)))  # past the end
    with pytest.raises(TypeError):
        buf.as_tensor("float8")


def test_array_api_keywords(ctx):
    buf = ctx.alloc(16, zero=True)
    with pytest.raises(BufferError):
        buf.__dlpack__(max_version=(1, 0), dl_device=(2, 0))  # not on this device
    with pytest.raises(BufferError):
        buf.__dlpack__(stream=5)  # a CPU buffer takes no stream
    cap = buf.__dlpack__(max_version=(1, 0), dl_device=(1, 0), stream=None)
    del cap
    copy = np.from_dlpack(buf, copy=True)  # numpy passes copy=True on
    copy[:] = 7
    assert buf.read(1) == b"\0"  # the original is untouched
    same = np.from_dlpack(buf, copy=False)
    same[0] = 9
    assert buf.read(1) == b"\x09"


def test_numpy_into_gms(ctx):
    src = np.arange(1000, dtype=np.int32)
    buf = gms.from_dlpack(src, context=ctx)
    assert buf.size == src.nbytes
    assert np.frombuffer(buf.read(), np.int32).tolist() == src.tolist()
    buf.write(np.array([-1], np.int32).tobytes(), 4)
    assert src[1] == -1  # the same memory
    with pytest.raises(gms.OutOfBounds):
        buf.read(1, src.nbytes)  # bounds are the tensor's extent
    buf.free()  # calls numpy's deleter; src lives on
    assert src[2] == 2


def test_import_consumes_the_capsule(ctx):
    src = np.ones(8, np.float64)
    cap = src.__dlpack__(max_version=(1, 0))
    buf = ctx.from_dlpack(cap)
    assert _valid(cap, b"used_dltensor_versioned")
    with pytest.raises(BufferError):
        ctx.from_dlpack(cap)  # a capsule is consumed once
    legacy = src.__dlpack__()
    b2 = ctx.from_dlpack(legacy)
    assert _valid(legacy, b"used_dltensor")
    assert b2.read(8) == np.float64(1).tobytes()
    del buf, b2


def test_default_context():
    buf = gms.from_dlpack(np.zeros(4, np.uint8))
    assert buf.context is gms.default_context()
    assert buf.context.tenant == "python"


def test_read_only_numpy_array_gives_read_only_buffer(ctx):
    src = np.zeros(16, np.uint8)
    src.flags.writeable = False
    buf = ctx.from_dlpack(src)
    assert buf.read(4) == bytes(4)
    with pytest.raises(gms.ReadOnly):
        buf.write(b"x")


def test_strided_import_is_refused(ctx):
    src = np.zeros((4, 4), np.float32)[:, ::2]
    with pytest.raises((gms.Unsupported, BufferError)):
        ctx.from_dlpack(src)


def test_gms_to_numpy_to_gms(ctx):
    buf = ctx.alloc(64)
    buf.write(bytes(range(64)))
    again = ctx.from_dlpack(np.from_dlpack(buf))
    assert again.read() == bytes(range(64))
    assert again.ptr == buf.ptr


@needs("gms_share", "gms_acquire")
def test_immutable_share_exports_read_only(rt, ctx):
    buf = ctx.alloc(4096)
    buf.write(b"frozen")
    sid = buf.share([gms.Grant(mode="read")], immutable=True)
    with rt.context("acme", "bob") as reader:
        mine = reader.acquire(sid, "read")
        arr = np.from_dlpack(mine)
        assert not arr.flags.writeable
        assert bytes(arr[:6]) == b"frozen"
        with pytest.raises(ValueError):
            arr[0] = 1
        with pytest.raises(gms.ReadOnly):
            mine.__dlpack__()  # legacy tensors cannot say read-only
        del arr
        mine.free()


def test_tensor_outlives_its_context(rt):
    """A consumer may delete an exported tensor after the context that made
    it is closed: the deleter must not reach the closed context."""
    ctx = rt.context("acme")
    buf = ctx.alloc(64)
    buf.write(b"x" * 64)
    arr = np.from_dlpack(buf)
    cap = buf.__dlpack__(max_version=(1, 0))
    legacy = buf.__dlpack__()
    ctx.close()  # the tensors keep the buffer: their deleters release it
    del arr, cap, legacy, buf
    gc.collect()


def test_exit_with_live_tensors(tmp_path):
    """Exported tensors kept in globals until interpreter exit, after the
    atexit finalizers have closed the default context and runtime."""
    import os
    import subprocess
    import sys
    code = ("import gms, numpy as np\n"
            "b = gms.default_context().alloc(64)\n"
            "a = np.from_dlpack(b)\n"
            "c = b.__dlpack__(max_version=(1, 0))\n"
            "l = b.__dlpack__()\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr


def test_gms_import_of_its_own_export(ctx):
    buf = ctx.alloc(128)
    buf.write(b"self")
    again = ctx.from_dlpack(buf)  # gms consumes gms's tensor
    assert again.read(4) == b"self" and again.ptr == buf.ptr
    assert buf.info().holders == 2
    again.free()  # gms calls the guarded deleter from inside gms_free
    assert buf.info().holders == 1
