"""Zig and Python in one process, on one libgms and its process-wide
runtime: buffers made by the Zig binding (libgms_zig_cross.so, loaded with
ctypes) are acquired and read by the gms Python package, and the reverse.

Usage: test_cross.py PATH/TO/libgms_zig_cross.so (with bindings/python on
PYTHONPATH and GMS_LIBRARY naming the libgms.so the Zig library links).
Prints one line per test and the plain "N passed, N failed" line; exits 1
when a test failed. Needs only the standard library.
"""

import ctypes
import os
import sys
import traceback
from ctypes import byref, c_char_p, c_int, c_size_t, c_uint64, c_void_p

import gms

OK, E_INVALID_HANDLE, E_READ_ONLY = 0, -2, -7

zig = ctypes.CDLL(sys.argv[1])
zig.gms_zig_open.restype = c_int
zig.gms_zig_runtime.restype = c_void_p
zig.gms_zig_context.restype = c_void_p
zig.gms_zig_message.restype = c_char_p
zig.gms_zig_share.argtypes = [c_char_p, c_size_t, c_int, ctypes.POINTER(c_uint64), ctypes.POINTER(c_uint64)]
zig.gms_zig_acquire.argtypes = [c_uint64, c_int, ctypes.POINTER(c_uint64)]
zig.gms_zig_read.argtypes = [c_uint64, c_uint64, c_char_p, c_size_t]
zig.gms_zig_write.argtypes = [c_uint64, c_uint64, c_char_p, c_size_t]
zig.gms_zig_release.argtypes = [c_uint64]
zig.gms_zig_give.argtypes = [c_char_p, c_size_t, c_void_p, ctypes.POINTER(c_uint64), ctypes.POINTER(c_uint64)]

rt = gms.Runtime()  # the process-wide runtime: no options
py = rt.context("acme", "py")  # language Python


def zig_ok(rc):
    assert rc == OK, "zig side: %d %s" % (rc, zig.gms_zig_message().decode())


def zig_read(handle, n):
    out = ctypes.create_string_buffer(n)
    zig_ok(zig.gms_zig_read(handle, 0, out, n))
    return out.raw


def zig_share(text, immutable=False):
    sid, handle = c_uint64(), c_uint64()
    zig_ok(zig.gms_zig_share(text, len(text), int(immutable), byref(sid), byref(handle)))
    return sid.value, handle.value


def zig_acquire(sid, write=False):
    h = c_uint64()
    rc = zig.gms_zig_acquire(sid, int(write), byref(h))
    return rc, h.value


def live_blocks():
    return rt.stats()["live_blocks"]


def test_one_runtime_one_library():
    zig_ok(zig.gms_zig_open())
    assert zig.gms_zig_runtime() == rt.ptr, "Zig and Python hold different runtimes"
    # One libgms mapped in the process: the file Python loaded, which the
    # Zig library was linked against.
    maps = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "libgms.so" in os.path.basename(path):
                maps.add(os.stat(path).st_ino)
    assert maps == {os.stat(gms.library_path).st_ino}, maps


def test_zig_share_read_in_python():
    sid, zh = zig_share(b"made in zig")
    mine = py.acquire(sid)
    assert mine.read(11) == b"made in zig"
    assert mine.info().holders == 2
    # The Python reader's handle cannot write.
    try:
        mine.write(b"x")
        raise AssertionError("a reader wrote")
    except gms.ReadOnly:
        pass
    mine.free()
    zig_ok(zig.gms_zig_release(zh))


def test_python_share_read_in_zig():
    buf = py.alloc(64)
    buf.write(b"made in python")
    sid = buf.share([gms.Grant(language=gms.Language.ZIG)])
    rc, zh = zig_acquire(sid)
    zig_ok(rc)
    assert zig_read(zh, 14) == b"made in python"
    assert zig.gms_zig_write(zh, 0, b"x", 1) == E_READ_ONLY
    zig_ok(zig.gms_zig_release(zh))
    buf.free()


def test_transfer_kills_the_givers_handle():
    old, new = c_uint64(), c_uint64()
    zig_ok(zig.gms_zig_give(b"yours now", 9, py.ptr, byref(old), byref(new)))
    assert zig.gms_zig_read(old.value, 0, ctypes.create_string_buffer(1), 1) == E_INVALID_HANDLE
    assert zig.gms_zig_release(old.value) == E_INVALID_HANDLE
    theirs = gms.Buffer(py, new.value)  # Python's now: it reads and frees it
    assert theirs.read(9) == b"yours now"
    assert theirs.info().holders == 1
    theirs.free()


def test_immutable_share_cannot_be_written_by_the_other_side():
    # Made and frozen in Zig: Python can only read.
    sid, zh = zig_share(b"frozen in zig", immutable=True)
    try:
        py.acquire(sid, "read_write")
        raise AssertionError("a read-write acquire of an immutable share")
    except gms.ReadOnly:
        pass
    mine = py.acquire(sid)
    assert mine.read(13) == b"frozen in zig"
    assert mine.info().immutable
    try:
        mine.write(b"x")
        raise AssertionError("wrote an immutable share")
    except gms.ReadOnly:
        pass
    mine.free()
    zig_ok(zig.gms_zig_release(zh))

    # Made and frozen in Python: Zig can only read.
    buf = py.alloc(4096, pages=True)
    buf.write(b"frozen in python")
    sid = buf.share([gms.Grant(language=gms.Language.ZIG)], immutable=True)
    rc, _ = zig_acquire(sid, write=True)
    assert rc == E_READ_ONLY, rc
    rc, zh = zig_acquire(sid)
    zig_ok(rc)
    assert zig.gms_zig_write(zh, 0, b"x", 1) == E_READ_ONLY
    assert zig_read(zh, 16) == b"frozen in python"
    zig_ok(zig.gms_zig_release(zh))
    buf.free()


def test_last_release_on_the_far_side_frees_and_wipes():
    # A live neighbour in each side's pool keeps the freed block's memory
    # mapped (a wholly free granule goes back to the backend at once), so
    # it can be looked at after the free: it holds gms's poison.
    _, zig_neighbour = zig_share(b"neighbour")
    py_neighbour = py.alloc(64)
    secret = b"zig's secret bytes"
    before = live_blocks()
    sid, zh = zig_share(secret)
    mine = py.acquire(sid)
    address = mine.ptr  # same tenant: the reader sees the memory itself
    zig_ok(zig.gms_zig_release(zh))  # the owner lets go first...
    assert live_blocks() == before + 1  # ...and Python's handle keeps it
    assert mine.read(len(secret)) == secret
    assert ctypes.string_at(address, len(secret)) == secret
    mine.free()  # the last holder, in Python
    assert live_blocks() == before
    # Freed memory stays mapped (quarantine): it no longer holds the bytes.
    assert secret not in ctypes.string_at(address, 4096)

    # The reverse: Python owns, Zig holds last.
    buf = py.alloc(4096)
    buf.write(secret)
    sid = buf.share([gms.Grant(language=gms.Language.ZIG)])
    rc, zh = zig_acquire(sid)
    zig_ok(rc)
    address = buf.ptr
    assert ctypes.string_at(address, len(secret)) == secret
    buf.free()
    assert zig_read(zh, len(secret)) == secret
    zig_ok(zig.gms_zig_release(zh))
    assert live_blocks() == before
    assert secret not in ctypes.string_at(address, 4096)
    zig_ok(zig.gms_zig_release(zig_neighbour))
    py_neighbour.free()


def main():
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
            passed += 1
            print("PASS", name)
        except Exception:
            failed += 1
            print("FAIL", name)
            traceback.print_exc()
    zig.gms_zig_close()
    py.close()
    # Nothing either side made is left.
    leaked = rt.stats()["leaked_blocks"]
    if leaked:
        failed += 1
        print("FAIL %d leaked blocks" % leaked)
    rt.close()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
