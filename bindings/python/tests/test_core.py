"""Runtime, Context and Buffer on the host backend: checked access, the
exception of every error the library reports, finalizers, and what happens
to buffers when their context or runtime closes first."""

import ctypes
import gc
import threading

import pytest

import gms


def test_shared_runtime_is_one_runtime():
    a, b = gms.Runtime(), gms.Runtime()
    try:
        assert a.ptr == b.ptr
        assert a.backend == "host"  # GMS_BACKEND=host in the test run
    finally:
        a.close()
        b.close()
    assert a.closed
    with pytest.raises(gms.InvalidHandle):
        a.stats()


def test_private_runtime_options():
    with gms.Runtime(backend="host", safety="off", max_held_bytes=64 << 20) as rt:
        assert rt.backend == "host"
        assert "private" in repr(rt)
    with pytest.raises(TypeError):
        gms.Runtime(no_such_option=1)
    with pytest.raises(gms.InvalidArgument):
        gms.Runtime(backend="host", granule_bytes=12345)  # not a power of two


def test_round_trip(ctx):
    with ctx.alloc(4096, zero=True) as buf:
        assert len(buf) == buf.size == 4096
        assert buf.read() == bytes(4096)
        buf.write(b"hello, gms", 100)
        assert buf.read(10, 100) == b"hello, gms"
        buf.fill(0x7F, 0, 4)
        assert buf.read(4) == b"\x7f" * 4
        other = ctx.alloc(64)
        other.copy_from(buf, 0, 100, 10)
        assert other.read(10) == b"hello, gms"
        into = bytearray(10)
        assert buf.readinto(into, 100) == 10 and bytes(into) == b"hello, gms"
        buf.write(memoryview(b"abc"))  # read-only sources are copied first
        assert buf.read(3) == b"abc"
        info = buf.info()
        assert info.size == 4096 and info.tenant == "acme" and info.user == "alice"
        assert info.language == gms.Language.PYTHON and info.holders == 1
        assert buf.ptr == info.device_ptr
        other.free()


def test_raw_pointer_is_host_memory_on_host_backend(ctx):
    buf = ctx.alloc(256)
    ctypes.memmove(buf.ptr, b"raw!", 4)
    assert buf.read(4) == b"raw!"


def test_errors_are_typed(rt, ctx):
    buf = ctx.alloc(4096)
    with pytest.raises(gms.OutOfBounds) as e:
        buf.write(b"x" * 16, 4090)
    assert isinstance(e.value, IndexError) and e.value.code == -4
    assert "4096" in str(e.value)  # gms_error_last's message
    with pytest.raises(gms.OutOfBounds):
        buf.read(1, 1 << 63)  # offset + length overflows
    with pytest.raises(gms.InvalidArgument) as e:
        ctx.alloc(0)
    assert isinstance(e.value, ValueError)
    buf.free()
    with pytest.raises(gms.InvalidHandle):
        buf.free()  # double free: the library's check, not Python's
    with pytest.raises(gms.InvalidHandle):
        buf.read(1)  # use after free
    assert not buf.alive


def test_other_tenant_is_refused(rt, ctx):
    buf = ctx.alloc(128)
    with rt.context("globex", "mallory") as other:
        with pytest.raises(gms.AccessDenied) as e:
            gms.Buffer(other, buf.handle)  # the handle, used from another tenant
        assert isinstance(e.value, PermissionError)
        with pytest.raises(gms.InvalidHandle):
            gms.Buffer(other, buf.handle ^ 0x5A5A0000)


def test_quota(rt):
    rt.set_quota("small", max_bytes=64 << 10)
    with rt.context("small") as c:
        keep = [c.alloc(16 << 10) for _ in range(3)]
        with pytest.raises(gms.QuotaExceeded) as e:
            c.alloc(32 << 10)
        assert isinstance(e.value, MemoryError)
        [t] = [t for t in rt.tenant_stats() if t["tenant"] == "small"]
        assert t["quota_refusals"] >= 1 and t["max_bytes"] == 64 << 10
        rt.set_quota("small")  # lifted
        keep.append(c.alloc(32 << 10))
        del keep


def test_finalizer_frees(rt, ctx):
    base = rt.stats()["live_blocks"]
    buf = ctx.alloc(1000)
    assert rt.stats()["live_blocks"] == base + 1
    del buf
    assert rt.stats()["live_blocks"] == base
    # In a reference cycle the buffer goes when the collector runs.
    a = ctx.alloc(1000)
    cycle = [a]
    cycle.append(cycle)
    del a, cycle
    gc.collect()
    assert rt.stats()["live_blocks"] == base


def test_context_close_with_live_buffers():
    logs = []
    with gms.Runtime(backend="host", log=lambda lvl, msg: logs.append(msg)) as rt:
        c = rt.context("leaky")
        buf = c.alloc(512)
        c.close()  # the buffer is a leak: reported and reclaimed
        assert rt.stats()["leaked_blocks"] == 1
        assert any("leak" in m for m in logs), logs
        assert not buf.alive
        with pytest.raises(gms.InvalidHandle):
            buf.read(1)
        with pytest.raises(gms.InvalidHandle):
            buf.free()
        del buf  # its finalizer must not touch the closed context
        gc.collect()


def test_runtime_close_closes_contexts():
    rt = gms.Runtime(backend="host", log=lambda lvl, msg: None)
    c = rt.context("t")
    buf = c.alloc(64)
    rt.close()
    assert c.closed and not buf.alive
    del buf, c
    gc.collect()


def test_collector_order_does_not_matter():
    """Runtime, context and buffers dropped together in one cycle: whatever
    order the finalizers run in, no call reaches a closed object."""
    for _ in range(20):
        rt = gms.Runtime(backend="host", log=lambda lvl, msg: None)
        c = rt.context("t")
        junk = [c.alloc(64) for _ in range(5)]
        junk.append((rt, c, junk))
        del rt, c, junk
        gc.collect()


def test_stream_ordered_alloc(rt, ctx):
    # On the host backend there are no streams: the buffer is an ordinary
    # one, freed on the stream it was given, and the counters of the slow
    # calls stay at zero waits.
    buf = ctx.alloc(1000, zero=True, stream=0)
    assert buf.free_stream == 0 and buf.read(8) == bytes(8)
    buf.write(b"ok")
    buf.free()
    assert not buf.alive
    rt.sync()  # nothing queued on the host: returns at once
    s = rt.stats()
    assert s["device_waits"] == 0 and s["maps"] >= 1 and "unmaps" in s


def test_verify_and_stats(rt, ctx):
    bufs = [ctx.alloc(n) for n in (1, 100, 10000)]
    report = rt.verify()
    assert report["violations"] == 0 and report["live_blocks"] >= 3
    s = rt.stats()
    assert s["live_blocks"] == 3 and s["allocs"] >= 3 and s["contexts"] == 1
    rt.trim()
    del bufs


def test_overflow_through_raw_pointer_is_corruption():
    seen = []
    with gms.Runtime(backend="host", log=lambda lvl, msg: None) as rt:
        rt.on_violation(seen.append)
        with rt.context("t") as c:
            buf = c.alloc(100)
            # Into the redzone: every byte changed (a fixed value would match
            # the random poison one time in 256).
            redzone = ctypes.cast(buf.ptr + 100, ctypes.POINTER(ctypes.c_uint8))
            for i in range(4):
                redzone[i] ^= 0xFF
            with pytest.raises(gms.Corruption):
                buf.free()
    assert seen and seen[0].kind == 1 and seen[0].offset == 100  # OVERFLOW


def test_threads(rt, ctx):
    errors = []

    def work():
        try:
            for i in range(300):
                b = ctx.alloc(64 + i)
                b.write(b"x" * 64)
                assert b.read(64) == b"x" * 64
                if i % 2:
                    b.free()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    gc.collect()
    assert not errors
    assert rt.stats()["live_blocks"] == 0


def test_enums_by_name(rt):
    with rt.context("t", "u", level="confidential", language="rust") as c:
        assert c.level == gms.Level.CONFIDENTIAL and c.language == gms.Language.RUST
        assert c.alloc(8).info().level == gms.Level.CONFIDENTIAL


def test_names_with_nul_are_refused(rt, ctx, tmp_path):
    """C reads a name up to its first NUL: "acme\\0evil" would be tenant
    acme. Every name and path the package hands to C is refused instead,
    with ValueError, and nothing changes."""
    rt.set_quota("acme", max_bytes=1 << 20)
    before = rt.stats()["contexts"]
    for tenant, user in (("acme\0evil", None), ("acme", "alice\0root"), (b"acme\0", None)):
        with pytest.raises(ValueError, match="NUL"):
            rt.context(tenant, user)
    assert rt.stats()["contexts"] == before
    with pytest.raises(ValueError, match="NUL"):
        rt.set_quota("acme\0evil", max_bytes=0)
    [acme] = [t for t in rt.tenant_stats() if t["tenant"] == "acme"]
    assert acme["max_bytes"] == 1 << 20  # untouched
    buf = ctx.alloc(64)
    for grant in (gms.Grant(tenant="globex\0acme"), gms.Grant(user="bob\0")):
        with pytest.raises(ValueError, match="NUL"):
            buf.share([grant])
    assert buf.info().share_id == 0  # not shared
    for option in ("audit_dir", "audit_key_file"):
        with pytest.raises(ValueError, match="NUL"):
            gms.Runtime(backend="host", **{option: str(tmp_path) + "\0/elsewhere"})
    with pytest.raises(ValueError):
        rt.context("acme", level="secret\0")
    with pytest.raises(ValueError, match="not ASCII"):
        rt.context("acmé")
    with pytest.raises(TypeError):
        rt.context(42)  # bytes(42) would be 42 NULs
