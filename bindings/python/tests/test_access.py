"""Access windows and checked atomics from Python: the with block orders a
writer and a reader of another language, refusals raise the right
exception, atomics return the old word and add up exactly across threads."""

import struct
import threading

import pytest

import gms
from conftest import needs

pytestmark = needs("gms_access_begin", "gms_access_end", "gms_atomic", "gms_atomic_batch")


def shared(rt, ctx, mode=gms.Access.READ):
    buf = ctx.alloc(4096, zero=True)
    sid = buf.share(gms.Grant(language=gms.ANY_LANGUAGE, mode="read_write"))
    other = rt.context("acme", "bob", language="rust")
    return buf, other, other.acquire(sid, mode)


def test_window_excludes(rt, ctx):
    buf, rust, reader = shared(rt, ctx)
    with buf.access("w") as w:
        assert w.open
        with pytest.raises(gms.Busy, match="conflicting window"):
            reader.access("r", wait=False).begin()
        with pytest.raises(gms.Busy, match="gms_access_end it first"):
            buf.free()
        buf.write(b"x")
    assert not w.open
    with reader.access("r", wait=False), buf.access("r", wait=False):
        assert reader.read(1) == b"x"  # readers together
    with pytest.raises(gms.ReadOnly):
        reader.access("w").begin()
    with pytest.raises(ValueError):
        buf.access("x")
    with buf.access("w"):
        with pytest.raises(gms.InvalidArgument, match="already has a window"):
            buf.access("r").begin()
    with pytest.raises(gms.InvalidArgument, match="no open window"):
        gms.Window(buf, "r", None, True).end()
    reader.free()
    buf.free()
    rust.close()


def test_writer_and_reader_threads(rt, ctx):
    """A Python writer and a Rust reader, each in its own thread: every read
    inside a window sees one whole round."""
    buf, rust, reader = shared(rt, ctx)
    rounds, torn, seen = 300, [], set()

    def write():
        for r in range(1, rounds + 1):
            with buf.access("w"):
                for i in range(0, 512, 64):
                    buf.write(struct.pack("<8Q", *([r] * 8)), i)

    def read():
        while True:
            with reader.access("r"):
                words = set(struct.unpack("<64Q", reader.read(512)))
            if len(words) != 1:
                torn.append(words)
            seen.update(words)
            if rounds in words:
                return

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not torn
    assert rounds in seen
    reader.free()
    buf.free()
    rust.close()


def test_atomics(rt, ctx):
    buf = ctx.alloc(64, zero=True)
    assert buf.atomic_add(0, 5) == 0
    assert buf.atomic_add(0, 2) == 5
    assert buf.atomic_max(0, 3) == 7 and buf.atomic_min(0, 3) == 7
    assert buf.atomic_cas(0, 3, 10) == 3 and buf.atomic_cas(0, 3, 11) == 10
    assert buf.atomic_exchange(8, -1) == 0
    assert buf.atomic_min(8, 4, signed=True) == (1 << 64) - 1  # -1 < 4: stays -1
    assert buf.atomic_min(8, 4) == (1 << 64) - 1  # unsigned: 4 is smaller
    assert buf.atomic_or(16, 0xF0, width=4) == 0
    assert buf.atomic_xor(16, 0xFF, width=4) == 0xF0
    assert buf.atomic_and(16, 0x0F, width=4, fetch=False) is None
    assert struct.unpack("<QqI", buf.read(20)) == (10, 4, 0x0F)
    with pytest.raises(gms.InvalidArgument, match="not a multiple"):
        buf.atomic_add(4, 1)
    with pytest.raises(gms.OutOfBounds):
        buf.atomic_add(64, 1)
    with pytest.raises(ValueError):
        buf.atomic("nand", 0, 1)
    res = ctx.alloc(32, zero=True)
    buf.atomic_batch([("add", 0, 1), (gms.AtomicOp.CAS, 8, 7, 4), ("or", 16, 1, 0, 4)], res)
    assert struct.unpack("<3Q", res.read(24)) == (10, 4, 0x0F)
    assert struct.unpack("<QqI", buf.read(20)) == (11, 7, 0x0F)
    res.free()
    buf.free()


def test_atomic_holders_add_exactly(rt, ctx):
    buf, rust, counter = shared(rt, ctx, gms.Access.ATOMIC)
    assert counter.info().access == gms.Access.ATOMIC
    with pytest.raises(gms.ReadOnly):
        counter.write(b"x")
    n = 2000

    def add(b):
        for _ in range(n):
            b.atomic_add(0, 1, fetch=False)

    threads = [threading.Thread(target=add, args=(b,)) for b in (buf, counter, buf, counter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert struct.unpack("<Q", counter.read(8))[0] == 4 * n
    counter.free()
    buf.free()
    rust.close()
