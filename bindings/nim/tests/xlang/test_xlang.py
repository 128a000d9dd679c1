"""Nim and Python in one process, on one process-wide runtime: the gms
Python package (bindings/python) and a Nim shared library built from
nimside.nim, loaded through ctypes, hand buffers to each other.

    python3 test_xlang.py path/to/libnimside.so

with bindings/python on PYTHONPATH and GMS_LIBRARY naming the libgms.so
that the Nim library was linked against. Prints "N passed, N failed".
"""

import ctypes
import os
import sys
import traceback
from ctypes import byref, c_char_p, c_int, c_uint64, c_void_p

import gms
from gms.core import Buffer

E_INVALID_HANDLE, E_READ_ONLY = -2, -7

rt = gms.Runtime()  # the process-wide runtime, opened by Python first
nim = ctypes.CDLL(sys.argv[1])
nim.nimside_runtime.restype = c_void_p
nim.nimside_share.argtypes = [c_char_p, c_int, ctypes.POINTER(c_uint64), ctypes.POINTER(c_uint64)]
nim.nimside_write_own.argtypes = [c_char_p]
nim.nimside_acquire.argtypes = [c_uint64, c_char_p, c_int]
nim.nimside_acquire_write.argtypes = [c_uint64]
nim.nimside_transfer_to.argtypes = [c_void_p, c_char_p, ctypes.POINTER(c_uint64)]
assert nim.nimside_open() == 0
py = rt.context("acme", "py")  # language: Python

passed = failed = 0


def test(fn):
    global passed, failed
    try:
        fn()
        passed += 1
    except Exception:  # report every failure, run the rest
        failed += 1
        print("FAIL", fn.__name__, flush=True)
        traceback.print_exc()
    return fn


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    raise AssertionError("%s not raised" % exc.__name__)


def nim_share(text, immutable):
    sid, address = c_uint64(), c_uint64()
    assert nim.nimside_share(text, immutable, byref(sid), byref(address)) == 0
    return sid.value, address.value


def live_blocks():
    return rt.stats()["live_blocks"]


@test
def one_libgms_one_runtime():
    paths = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "libgms.so" in line:
                paths.add(os.path.realpath(line.split()[-1]))
    assert len(paths) == 1, paths
    assert nim.nimside_runtime() == rt.ptr


@test
def nim_share_is_read_in_python():
    sid, _ = nim_share(b"from nim", 0)
    b = py.acquire(sid, "read")
    assert b.read(8) == b"from nim"
    assert b.info().language == gms.Language.NIM and b.info().holders == 2  # Nim's pool
    assert nim.nimside_write_own(b"FROM") == 0  # Nim still writes...
    assert b.read(8) == b"FROM nim"  # ...and Python sees it
    raises(gms.ReadOnly, b.write, b"x")  # a read handle
    b.free()
    assert nim.nimside_drop_own() == 0


@test
def python_cannot_write_nims_immutable_share():
    sid, _ = nim_share(b"frozen", 1)
    raises(gms.ReadOnly, py.acquire, sid, "read_write")
    b = py.acquire(sid, "read")
    raises(gms.ReadOnly, b.write, b"x")
    assert b.read(6) == b"frozen"
    assert nim.nimside_write_own(b"x") == E_READ_ONLY  # nor may Nim, its owner
    b.free()
    assert nim.nimside_drop_own() == 0


@test
def nim_cannot_write_pythons_immutable_share_and_releases_last():
    before = live_blocks()
    buf = py.alloc(4096)
    buf.write(b"from python")
    sid = buf.share([gms.Grant(language=gms.Language.NIM)], immutable=True)
    assert nim.nimside_acquire_write(sid) == E_READ_ONLY
    dst = ctypes.create_string_buffer(11)
    assert nim.nimside_acquire(sid, dst, 11) == 0
    assert dst.raw == b"from python"
    buf.free()  # Python lets go first
    assert live_blocks() == before + 1
    assert nim.nimside_release_held() == 0  # the last release, in Nim
    assert live_blocks() == before


@test
def last_release_in_python_frees_and_wipes_nims_buffer():
    before = live_blocks()
    sid, address = nim_share(b"secret!!", 0)
    b = py.acquire(sid, "read")
    assert nim.nimside_drop_own() == 0  # the maker lets go first
    assert b.read(8) == b"secret!!" and live_blocks() == before + 1
    b.free()  # the last release, on the far side
    assert live_blocks() == before
    assert ctypes.string_at(address, 8) != b"secret!!"  # wiped (poisoned)


@test
def transfer_from_nim_kills_the_givers_handle():
    handle = c_uint64()
    assert nim.nimside_transfer_to(py.ptr, b"moved", byref(handle)) == 0
    b = Buffer(py, handle.value)  # Python owns it now
    assert b.read(5) == b"moved"
    assert nim.nimside_use_old_handle() == E_INVALID_HANDLE
    b.free()


@test
def nothing_leaks():
    nim.nimside_close()
    py.close()
    s = rt.stats()
    assert s["live_blocks"] == 0 and s["leaked_blocks"] == 0, s
    assert s["contexts"] == 0 and s["shares"] == 0, s


print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
