"""Rust and Python in one process, on one runtime.

The Rust shared library (bindings/rust/xlang, built as a cdylib on the gms
crate) is loaded with ctypes next to the gms Python package; both open the
process-wide runtime of the one libgms.so they load. Buffers cross both ways
through share ids and transfers. Run by bindings/rust/test.sh with
GMS_XLANG_LIB naming the library; prints "N passed, N failed".
"""

import ctypes
import os
import struct
import sys
import traceback
from ctypes import POINTER, byref, c_int, c_uint64, c_void_p

import gms
from gms import _lib

xl = ctypes.CDLL(os.environ["GMS_XLANG_LIB"])
xl.gms_xl_runtime.restype = c_void_p
xl.gms_xl_context.restype = c_void_p
xl.gms_xl_share.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, c_int,
                            POINTER(c_uint64), POINTER(c_uint64)]
xl.gms_xl_read_share.argtypes = [c_uint64, ctypes.c_char_p, ctypes.c_size_t, POINTER(c_int)]
xl.gms_xl_give.argtypes = [c_void_p, ctypes.c_char_p, ctypes.c_size_t, POINTER(c_uint64),
                           POINTER(c_uint64)]
xl.gms_xl_handle_rc.argtypes = [c_uint64]
xl.gms_xl_take.argtypes = [c_uint64, ctypes.c_char_p, ctypes.c_size_t]

rt = gms.Runtime()  # the shared runtime
py = rt.context("acme", "snake", language=gms.Language.PYTHON)
assert xl.gms_xl_open() == 0


def rust_share(data, size=None, immutable=False):
    sid, addr = c_uint64(), c_uint64()
    rc = xl.gms_xl_share(data, len(data), size or len(data), int(immutable), byref(sid), byref(addr))
    assert rc == 0, rc
    return sid.value, addr.value


def test_one_libgms_one_runtime():
    assert xl.gms_xl_runtime() == rt.ptr
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "libgms.so" in line}
    assert len(libs) == 1, libs


def test_rust_share_is_read_in_python():
    sid, _ = rust_share(b"made in rust")
    mine = py.acquire(sid)
    assert mine.read(12) == b"made in rust"
    assert mine.info().holders == 2
    with expect(gms.ReadOnly):
        mine.write(b"x")  # a read acquire
    mine.free()
    assert xl.gms_xl_drop_shared() == 0


def test_python_share_is_read_in_rust():
    buf = py.alloc(64)
    buf.write(b"made in python")
    sid = buf.share([gms.Grant(language=gms.Language.RUST, mode="read_write")])
    out, write_rc = ctypes.create_string_buffer(14), c_int(1)
    assert xl.gms_xl_read_share(sid, out, 14, byref(write_rc)) == 0
    assert out.raw == b"made in python"
    assert write_rc.value == -11  # BUSY: the Python owner is still the writer
    buf.free()


def test_immutable_rust_share_cannot_be_written_in_python():
    sid, _ = rust_share(b"frozen by rust", immutable=True)
    with expect(gms.ReadOnly):
        py.acquire(sid, "read_write")
    mine = py.acquire(sid)
    assert mine.info().immutable
    with expect(gms.ReadOnly):
        mine.write(b"x")
    assert mine.read(14) == b"frozen by rust"
    mine.free()
    assert xl.gms_xl_drop_shared() == 0


def test_immutable_python_share_cannot_be_written_in_rust():
    buf = py.alloc(64)
    buf.write(b"frozen by python")
    sid = buf.share([gms.Grant(language=gms.Language.RUST)], immutable=True)
    out, write_rc = ctypes.create_string_buffer(16), c_int(0)
    assert xl.gms_xl_read_share(sid, out, 16, byref(write_rc)) == 0
    assert out.raw == b"frozen by python"
    assert write_rc.value == -7  # READ_ONLY
    buf.free()


def test_transfer_from_rust_kills_rusts_handle():
    h, old = c_uint64(), c_uint64()
    assert xl.gms_xl_give(py.ptr, b"given by rust", 13, byref(h), byref(old)) == 0
    assert xl.gms_xl_handle_rc(old.value) == -2  # INVALID_HANDLE: dead at once
    mine = gms.core.Buffer(py, h.value)
    assert mine.read(13) == b"given by rust"
    assert mine.info().holders == 1
    mine.free()


def test_transfer_from_python_kills_pythons_handle():
    buf = py.alloc(32)
    buf.write(b"given by python")
    out = c_uint64()
    assert _lib.gms_transfer(py.ptr, buf.handle, xl.gms_xl_context(), byref(out)) == 0
    with expect(gms.InvalidHandle):
        buf.read(1)
    got = ctypes.create_string_buffer(15)
    assert xl.gms_xl_take(out.value, got, 15) == 0
    assert got.raw == b"given by python"
    assert xl.gms_xl_take(out.value, got, 15) == -2  # freed by Rust already


def test_last_release_in_python_frees_and_wipes():
    words = [0x5EC2E7_0000_0000 + i * 0x1_0001 for i in range(512)]
    secret = struct.pack("<512Q", *words)
    sid, addr = rust_share(secret)
    mine = py.acquire(sid)
    assert xl.gms_xl_drop_shared() == 0  # Rust lets go first
    assert mine.info().holders == 1
    before = rt.stats()
    assert ctypes.string_at(addr, 16) == secret[:16]
    mine.free()  # the last handle, in Python
    after = rt.stats()
    assert after["live_blocks"] == before["live_blocks"] - 1
    assert after["frees"] == before["frees"] + 1
    # The memory (still mapped: quarantined, next to a live pad) holds the
    # runtime's poison now, not one word of the secret.
    seen = struct.unpack("<512Q", ctypes.string_at(addr, len(secret)))
    assert not set(seen) & set(words)
    assert len(set(seen)) == 1 and seen[0] not in (0, 2**64 - 1)
    rt.verify()


class expect:
    def __init__(self, exc):
        self.exc = exc

    def __enter__(self):
        return self

    def __exit__(self, typ, value, tb):
        if typ is None:
            raise AssertionError("%s not raised" % self.exc.__name__)
        return issubclass(typ, self.exc)


def main():
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
            passed += 1
            print("ok    " + name)
        except Exception:
            failed += 1
            print("FAIL  " + name)
            traceback.print_exc()
    xl.gms_xl_close()
    py.close()
    stats = rt.stats()
    if stats["live_blocks"] or stats["leaked_blocks"]:
        failed += 1
        print("FAIL  leaks: %r" % stats)
    rt.close()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
