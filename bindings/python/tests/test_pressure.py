"""The pressure callback: an allocation refused for quota runs gc.collect()
through gms_on_pressure, so buffers that only garbage cycles hold are freed
and the allocation succeeds."""

import gc

import pytest

import gms
from conftest import needs

pytestmark = needs("gms_on_pressure")


class Node:
    """Garbage that only the cycle collector can free."""

    def __init__(self, buf):
        self.buf = buf
        self.me = self


@pytest.fixture
def no_auto_gc():
    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()


def test_gc_frees_cycles_on_quota_pressure(no_auto_gc):
    with gms.Runtime(backend="host") as rt:
        rt.set_quota("tight", max_bytes=1 << 20)
        events = []
        rt.on_pressure(events.append)
        with rt.context("tight") as c:
            for _ in range(3):
                Node(c.alloc(256 << 10))  # unreachable at once, but in a cycle
            assert rt.stats()["live_blocks"] == 3
            big = c.alloc(512 << 10)  # over quota until the collector runs
            s = rt.stats()
            assert s["live_blocks"] == 1
            assert s["pressure_events"] >= 1 and s["pressure_recovered"] >= 1
            assert events and events[0].tenant == "tight" and events[0].reason == -5
            assert events[0].bytes_wanted == 512 << 10
            big.free()


def test_still_refused_when_nothing_is_garbage(no_auto_gc):
    with gms.Runtime(backend="host") as rt:
        rt.set_quota("tight", max_bytes=1 << 20)
        with rt.context("tight") as c:
            keep = [c.alloc(256 << 10) for _ in range(3)]
            with pytest.raises(gms.QuotaExceeded):
                c.alloc(512 << 10)
            assert rt.stats()["pressure_recovered"] == 0
            del keep


def test_no_gc_callback_when_asked(no_auto_gc):
    with gms.Runtime(backend="host", gc_on_pressure=False) as rt:
        rt.set_quota("tight", max_bytes=1 << 20)
        with rt.context("tight") as c:
            Node(c.alloc(768 << 10))
            with pytest.raises(gms.QuotaExceeded):
                c.alloc(512 << 10)
            gc.collect()
            c.alloc(512 << 10).free()
