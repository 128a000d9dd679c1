"""Sharing, acquiring, releasing, transferring and revoking between
contexts from Python, and the exception each refusal raises."""

import gc
import os
import subprocess
import sys
import textwrap

import pytest

import gms
from conftest import needs

pytestmark = needs("gms_share", "gms_acquire", "gms_transfer", "gms_revoke")


def test_read_share(rt, ctx):
    buf = ctx.alloc(4096)
    buf.write(b"weights")
    sid = buf.share([gms.Grant(language=gms.Language.RUST, mode="read"),
                     {"tenant": "research", "user": "alice", "mode": gms.Access.READ}])
    assert buf.info().share_id == sid
    with rt.context("acme", "bob", language="rust") as rust, \
         rt.context("research", "alice") as research, \
         rt.context("research", "eve") as eve:
        a = rust.acquire(sid)
        b = research.acquire(sid, "read")
        assert a.read(7) == b.read(7) == b"weights"
        assert a.info().holders == 3 and a.handle not in (buf.handle, b.handle)
        with pytest.raises(gms.ReadOnly):
            a.write(b"x")
        with pytest.raises(gms.AccessDenied):
            eve.acquire(sid)  # no grant matches her
        with pytest.raises(gms.AccessDenied):
            research.acquire(sid, "read_write")  # beyond the grant
        with pytest.raises(gms.InvalidHandle):
            eve.acquire(sid ^ 0x1234)  # a forged id
        with pytest.raises(gms.Busy):
            buf.share()  # one share per buffer
        a.free()
        with pytest.raises(gms.InvalidHandle):
            a.free()  # this holder's double release...
        assert b.read(7) == b"weights"  # ...hurts no one else
        buf.free()  # the owner goes first; the last holder keeps it alive
        assert b.read(7) == b"weights"
        live = rt.stats()["live_blocks"]
        b.free()
        assert rt.stats()["live_blocks"] == live - 1


def test_one_writer_at_a_time(rt, ctx):
    buf = ctx.alloc(64)
    sid = buf.share([gms.Grant(mode="read_write")])
    with rt.context("acme", "w1") as w1, rt.context("acme", "w2") as w2:
        reader = w2.acquire(sid, "read")  # readers are never blocked
        with pytest.raises(gms.Busy):
            w1.acquire(sid, "rw")  # the owner can still write
        buf.free()  # the reader keeps the buffer alive
        first = w1.acquire(sid, "rw")
        first.write(b"mine")
        with pytest.raises(gms.Busy):
            w2.acquire(sid, "rw")
        assert reader.read(4) == b"mine"
        first.free()
        second = w2.acquire(sid, "rw")
        second.write(b"next")
        del first, second, reader


def test_immutable_share(rt, ctx):
    buf = ctx.alloc(100)
    buf.write(b"frozen")
    sid = buf.share(gms.Grant(), immutable=True)
    assert buf.info().immutable
    with pytest.raises(gms.ReadOnly):
        buf.write(b"x")  # the owner too
    with rt.context("acme", "bob") as bob:
        with pytest.raises(gms.ReadOnly):
            bob.acquire(sid, "read_write")
        mine = bob.acquire(sid)
        assert mine.read(6) == b"frozen"
        mine.free()


def test_revoke(rt, ctx):
    buf = ctx.alloc(64)
    sid = buf.share()
    with rt.context("acme", "bob") as bob:
        kept = bob.acquire(sid)
        ctx.revoke(sid)
        with pytest.raises(gms.AccessDenied):
            bob.acquire(sid)
        assert kept.read(1) is not None  # holders keep their handles
        with pytest.raises((gms.AccessDenied, gms.InvalidArgument)):
            bob.revoke(sid)  # only the context that made the share
        kept.free()


def test_transfer_within_tenant(rt, ctx):
    buf = ctx.alloc(256)
    buf.write(b"payload")
    addr = buf.ptr
    with rt.context("acme", "bob") as bob:
        moved = buf.transfer(bob)
        assert not buf.alive and moved.context is bob
        with pytest.raises(gms.InvalidHandle):
            buf.read(1)  # the old handle died at once
        assert moved.read(7) == b"payload" and moved.ptr == addr  # no copy
        assert moved.info().user == "alice"  # who allocated it
        moved.free()


def test_transfer_to_other_tenant_copies(rt, ctx):
    buf = ctx.alloc(256)
    buf.write(b"payload")
    with rt.context("globex") as other:
        moved = buf.transfer(other)
        assert moved.read(7) == b"payload"
        assert moved.info().tenant == "globex"
        [t] = [t for t in rt.tenant_stats() if t["tenant"] == "globex"]
        assert t["live_blocks"] == 1  # on the new tenant's quota
        moved.free()


def test_transfer_refused_with_other_holders(rt, ctx):
    buf = ctx.alloc(64)
    sid = buf.share()
    with rt.context("acme", "bob") as bob:
        held = bob.acquire(sid)
        with pytest.raises(gms.Busy):
            buf.transfer(bob)
        assert buf.alive  # nothing changed
        held.free()


def test_finalizers_release_shared_handles(rt, ctx):
    buf = ctx.alloc(64)
    sid = buf.share()
    with rt.context("acme", "bob") as bob:
        for _ in range(10):
            bob.acquire(sid)  # dropped at once: the finalizer releases it
        gc.collect()
        assert buf.info().holders == 1


@pytest.mark.skipif(sys.platform != "linux", reason="fork and signals")
def test_immutable_page_share_write_faults(tmp_path):
    """A whole-page buffer's immutable share gives other holders a read-only
    mapping: a write through the raw pointer is a SIGSEGV, so it runs in a
    child process."""
    code = textwrap.dedent("""
        import ctypes, gms
        rt = gms.Runtime(backend="host")
        owner = rt.context("acme", "alice")
        buf = owner.alloc(1 << 16, pages=True)
        buf.write(b"frozen")
        sid = buf.share(immutable=True)
        mine = rt.context("acme", "bob").acquire(sid)
        assert mine.info().read_only_view, mine.info()
        print("mapped", flush=True)
        ctypes.memset(mine.ptr, 0x41, 1)
        print("wrote", flush=True)
    """)
    # Under scripts/pytest.sh --asan the fault must stay a SIGSEGV too.
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":handle_segv=0").lstrip(":")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."),
               PYTHONFAULTHANDLER="", ASAN_OPTIONS=asan)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert "mapped" in r.stdout, r.stderr
    assert "wrote" not in r.stdout and r.returncode == -11, (r.returncode, r.stderr)


def test_ptr_follows_the_buffer(rt, ctx):
    """Buffer.ptr is asked of libgms each time: after an immutable share of
    a whole-page buffer it is the read-only view, not the first mapping."""
    buf = ctx.alloc(1 << 16, pages=True)
    first = buf.ptr
    buf.share(immutable=True)
    info = buf.info()
    assert info.read_only_view
    assert buf.ptr == info.device_ptr != first
