"""Objects used and closed from several threads at once: calls still inside
libgms when another thread closes their context or runtime, DLPack deleters
run on other threads during and after those closes, and two contexts that
imported each other's tensors freed on two threads. The exact interleavings
are pinned where it matters by callbacks that wait inside a libgms call
(a pressure callback, a tensor's deleter); the stress test at the end
checks only what holds in every interleaving. Run them under ASan with
`scripts/pytest.sh --asan`."""

import collections
import ctypes
import gc
import random
import threading

import pytest

import gms
from gms import _lib, dlpack
from conftest import needs

pytestmark = needs("gms_on_pressure", "gms_dlpack_export", "gms_dlpack_import")

WAIT = 20  # seconds: only a broken build waits this long


def quiet(level, msg):
    pass


def run(fn, *args):
    """fn(*args) on a daemon thread (a deadlocked one cannot hang pytest's
    exit); the thread's .result is fn's return value or exception."""
    def body():
        try:
            t.result = fn(*args)
        except BaseException as e:  # handed to the test
            t.result = e
    t = threading.Thread(target=body, daemon=True)
    t.result = None
    t.start()
    return t


def joined(*threads):
    for t in threads:
        t.join(WAIT)
    return not any(t.is_alive() for t in threads)


class Blocker:
    """A pressure callback that, once armed, holds the allocating thread
    inside gms_alloc until released."""

    def __init__(self, rt):
        self.armed = False
        self.inside, self.go = threading.Event(), threading.Event()
        rt.on_pressure(self)

    def __call__(self, event):
        if self.armed:
            self.inside.set()
            self.go.wait(WAIT)


@pytest.fixture
def tight():
    """A private runtime where tenant "tight" may hold 4 KiB, and a Blocker."""
    rt = gms.Runtime(backend="host", log=quiet)
    rt.set_quota("tight", max_bytes=4096)
    yield rt, Blocker(rt)
    rt.close()


def test_context_close_waits_for_calls_in_flight(tight):
    rt, block = tight
    ctx = rt.context("tight")
    keep = ctx.alloc(64)
    block.armed = True
    t = run(ctx.alloc, 8192)  # over quota: waits in the pressure callback
    assert block.inside.wait(WAIT)
    ctx.close()  # while that call is inside libgms
    assert ctx.closed and not keep.alive
    with pytest.raises(gms.InvalidHandle, match="context is closed"):
        ctx.alloc(16)  # new calls are refused...
    with pytest.raises(gms.InvalidHandle):
        keep.read(1)
    assert rt.stats()["contexts"] == 1  # ...but the C context stays for the one inside
    block.go.set()
    assert joined(t)
    assert isinstance(t.result, gms.QuotaExceeded)
    s = rt.stats()
    assert s["contexts"] == 0 and s["live_blocks"] == 0  # the last call out freed it
    del keep
    gc.collect()


def test_runtime_close_waits_for_calls_in_flight(tight):
    rt, block = tight
    ctx = rt.context("tight")
    block.armed = True
    t = run(ctx.alloc, 8192)
    assert block.inside.wait(WAIT)
    rt.close()
    assert rt.closed and ctx.closed
    for call in (rt.stats, rt.verify, lambda: rt.context("x"), lambda: ctx.alloc(1)):
        with pytest.raises(gms.InvalidHandle):
            call()
    assert rt._owner.ptr is not None  # not freed under the call in flight
    block.go.set()
    assert joined(t)
    assert isinstance(t.result, gms.QuotaExceeded)
    assert rt._owner.ptr is None and ctx._owner.ptr is None


class Producer:
    """A DLPack producer whose deleter calls on_delete(): a capsule over
    nbytes of ctypes memory."""

    def __init__(self, nbytes, on_delete):
        self.data = (ctypes.c_uint8 * nbytes)()
        self.shape = (ctypes.c_int64 * 1)(nbytes)
        t = self.tensor = _lib.DLManagedTensorVersioned()
        t.version = _lib.DLPackVersion(1, 0)
        t.dl_tensor = _lib.DLTensor(ctypes.addressof(self.data), _lib.DLDevice(1, 0), 1,
                                    _lib.DLDataType(1, 8, 1), self.shape, None, 0)
        self.deleter = type(t.deleter)(lambda p: on_delete())
        t.deleter = self.deleter

    def capsule(self):
        return dlpack._New(ctypes.cast(ctypes.pointer(self.tensor), ctypes.c_void_p),
                           dlpack._N_VERSIONED, None)


def test_a_deleter_inside_a_call_holds_no_lock(ctx):
    """While a tensor's deleter runs inside gms_free on one thread, other
    threads' calls on the same context go on: nothing waits for a lock that
    thread holds (the root of the two-context deadlock below)."""
    inside, go = threading.Event(), threading.Event()

    def on_delete():
        inside.set()
        go.wait(WAIT)

    producer = Producer(64, on_delete)
    imported = ctx.from_dlpack(producer.capsule())
    other = ctx.alloc(64)
    t = run(imported.free)
    assert inside.wait(WAIT)
    u = run(lambda: (other.free(), ctx.alloc(8).free()))
    u.join(5)
    blocked = u.is_alive()
    go.set()
    assert joined(t, u)
    assert not blocked, "a call on the context waited for a deleter on another thread"
    assert t.result is None and u.result is not None and not isinstance(u.result, Exception)


def test_a_capsule_is_consumed_once(rt):
    """Two threads import the same capsule at once: one gets the tensor,
    the other a BufferError, and the producer's deleter runs exactly once."""
    a, b = rt.context("acme", "a"), rt.context("acme", "b")
    for _ in range(100):
        deleted = []
        producer = Producer(64, lambda: deleted.append(1))
        capsule = producer.capsule()
        start = threading.Barrier(2)
        t1 = run(lambda: (start.wait(), a.from_dlpack(capsule))[1])
        t2 = run(lambda: (start.wait(), b.from_dlpack(capsule))[1])
        assert joined(t1, t2)
        got = [t.result for t in (t1, t2) if isinstance(t.result, gms.Buffer)]
        refused = [t.result for t in (t1, t2) if isinstance(t.result, BufferError)]
        assert len(got) == 1 and len(refused) == 1, (t1.result, t2.result)
        got[0].free()
        del got, capsule, t1, t2
        assert deleted == [1]


def test_contexts_that_imported_each_others_tensors(rt):
    """Each of two contexts holds a tensor the other exported; both are
    freed at once on two threads, each free running the other context's
    deleter."""
    a, b = rt.context("acme", "a"), rt.context("acme", "b")
    for _ in range(200):
        in_b = b.from_dlpack(a.alloc(64))  # the exporting buffers go at once:
        in_a = a.from_dlpack(b.alloc(64))  # the tensors hold their own handles
        start = threading.Barrier(2)
        t1 = run(lambda: (start.wait(), in_b.free()))
        t2 = run(lambda: (start.wait(), in_a.free()))
        assert joined(t1, t2), "deadlock"
        assert not isinstance(t1.result, Exception) and not isinstance(t2.result, Exception)
    assert rt.stats()["live_blocks"] == 0


def test_deleter_during_and_after_the_close(tight):
    """An exported tensor deleted on another thread while its context is
    closing (a call still inside) runs once the close is done; one deleted
    after the context, or the runtime, is gone runs at once."""
    np = pytest.importorskip("numpy")
    rt, block = tight
    ctx = rt.context("tight")
    buf = ctx.alloc(1024)
    during = [np.from_dlpack(buf) for _ in range(3)]
    after = [np.from_dlpack(buf)]
    capsule = buf.__dlpack__(max_version=(1, 0))
    block.armed = True
    t = run(ctx.alloc, 8192)
    assert block.inside.wait(WAIT)
    ctx.close()
    # numpy calls the deleters on that thread: they wait for the free.
    assert joined(run(during.clear))
    assert rt.stats()["contexts"] == 1
    block.go.set()
    assert joined(t)
    # The tensors still out (one array, one capsule) keep the buffer until
    # their deleters run, past the context's close.
    assert rt.stats()["contexts"] == 0 and rt.stats()["live_blocks"] == 1
    assert joined(run(after.clear))  # the context is gone: through the runtime
    assert rt.stats()["live_blocks"] == 1  # the capsule's tensor still holds it
    rt.close()
    del capsule, buf  # the runtime is gone: libgms cut the tensor loose
    gc.collect()


# ---- everything at once --------------------------------------------------------------

def test_stress_close_free_share_dlpack():
    """Workers allocate, write, read, free, share, acquire, release,
    transfer, export to numpy and import from it, and drop one another's
    arrays, on a few contexts of two tenants, while a closer closes the
    contexts one by one and, every other round, the runtime under them. A
    call may fail only because its context or buffer is gone; at the end
    nothing is left live."""
    np = pytest.importorskip("numpy")
    errors, ok = [], collections.Counter()
    for rnd in range(4):
        rt = gms.Runtime(backend="host", log=quiet)
        ctxs = [rt.context(t, u) for t, u in (("acme", "a"), ("acme", "b"), ("globex", "c"))]
        arrays, lock = [], threading.Lock()  # numpy views that any worker may drop
        ops_done = threading.Semaphore(0)

        def worker(seed):
            rng = random.Random(seed)
            mine = []
            for i in range(150):
                ctx = rng.choice(ctxs)
                try:
                    op = rng.randrange(9)
                    if op == 0 or not mine:
                        b = ctx.alloc(rng.choice((16, 256, 4096)))
                        b.write(b"z" * 16)
                        assert b.read(16) == b"z" * 16
                        mine.append(b)
                    elif op == 1:
                        mine.pop(rng.randrange(len(mine))).free()
                    elif op == 2:
                        b = rng.choice(mine)
                        sid = b.share([gms.Grant(tenant="*")])
                        got = rng.choice(ctxs).acquire(sid)
                        got.read(1)
                        got.free()
                    elif op == 3:
                        b = mine.pop(rng.randrange(len(mine)))
                        if b.info().holders == 1:
                            mine.append(b.transfer(rng.choice([c for c in ctxs
                                                               if c is not b.context])))
                    elif op == 4:
                        a = np.from_dlpack(rng.choice(mine))
                        with lock:
                            arrays.append(a)
                    elif op == 5:
                        with lock:
                            a = arrays.pop(rng.randrange(len(arrays))) if arrays else None
                        del a  # a deleter, often of another thread's export
                    elif op == 6:
                        mine.append(ctx.from_dlpack(np.zeros(rng.choice((8, 64)), np.uint8)))
                    elif op == 7:
                        mine.append(ctx.from_dlpack(rng.choice(mine)))  # gms into gms
                    else:
                        rng.choice(mine).ptr
                    ok[op] += 1
                except gms.InvalidHandle:
                    pass  # its context closed, or the buffer was freed or moved
                except gms.Busy:
                    pass  # a share of a buffer already shared
                except Exception as e:
                    errors.append(e)
                finally:
                    ops_done.release()
            del mine

        def closer(seed):
            rng = random.Random(seed)
            order = ctxs[:]
            rng.shuffle(order)
            for c in order:
                for _ in range(rng.randrange(50, 250)):  # some work first (900 ops in all)
                    ops_done.acquire(timeout=WAIT)
                c.close()
            if rnd % 2:
                rt.close()

        workers = [run(worker, rnd * 100 + i) for i in range(6)]
        close = run(closer, rnd)
        done = joined(*workers)
        assert not errors, errors
        assert done and joined(close), "deadlock"
        assert close.result is None, close.result
        # The arrays' tensors keep their buffers past the contexts' close.
        del arrays[:]
        gc.collect()
        if not rt.closed:
            s = rt.stats()
            assert s["contexts"] == 0 and s["live_blocks"] == 0, s
            assert rt.verify()["violations"] == 0
        rt.close()
    assert len(ok) == 9, ok  # every kind of call got through sometimes
