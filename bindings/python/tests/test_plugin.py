"""The PyTorch allocator plug-in (libgms_torch.so) without PyTorch or a GPU:
its alloc and free functions called directly, on the host backend
($GMS_TORCH_BACKEND=host), checking the pointer-to-handle table through
many allocations, frees in random order and the table's growth."""

import ctypes
import os
import random

import pytest

import gms

os.environ["GMS_TORCH_BACKEND"] = "host"  # read at the plug-in's first allocation

try:
    import gms.torch as gt
    gt.plugin()
except (OSError, FileNotFoundError) as e:  # pragma: no cover - not built
    pytest.skip("libgms_torch.so: %s" % e, allow_module_level=True)


def test_alloc_free_many():
    p = gt.plugin()
    rng = random.Random(7)
    base = gt.live_pointers()
    live, order = {}, []
    for i in range(20000):  # grows the table past its first size (4096)
        if order and rng.random() < 0.4:
            j = rng.randrange(len(order))  # free a random one: swap-remove
            order[j], order[-1] = order[-1], order[j]
            ptr = order.pop()
            p.gms_torch_free(ptr, live.pop(ptr), 0, None)
        else:
            size = rng.choice([1, 100, 4096, 70000, 1 << 20])
            ptr = p.gms_torch_alloc(size, 0, None)
            assert ptr and ptr % 256 == 0 and ptr not in live
            ctypes.memset(ptr, i & 0xFF, size)  # all of it is ours
            live[ptr] = size
            order.append(ptr)
    assert gt.live_pointers() == base + len(live)
    for ptr in order[:100]:
        h, dev = gt.lookup(ptr)
        assert dev == 0 and h
    assert gt.lookup(order[0] + 1) is None  # inside a block: not a start
    s = gt.stats(0)
    assert s["live_blocks"] == len(live) + base
    rt = gt.runtime()
    assert rt.backend == "host"
    assert rt.verify()["violations"] == 0  # no redzone was touched
    for ptr, size in live.items():
        p.gms_torch_free(ptr, size, 0, None)
    assert gt.live_pointers() == base
    assert gt.stats()["live_blocks"] == base
    assert gt.stats()["peak_held_bytes"] >= gt.stats()["held_bytes"]
    gt.empty_cache()
    rt.close()  # borrowed: the plug-in's runtime stays open
    assert gt.stats()["contexts"] == 1


def test_edge_cases(capfd):
    p = gt.plugin()
    assert not p.gms_torch_alloc(0, 0, None)  # an empty tensor
    p.gms_torch_free(None, 0, 0, None)
    p.gms_torch_free(0x1000, 16, 0, None)  # not ours: reported, ignored
    assert "did not allocate" in capfd.readouterr().err
    assert not p.gms_torch_alloc(16, 999, None)  # no such device slot
    ptr = p.gms_torch_alloc(100, 0, None)
    ctypes.memset(ptr + 100, 0xEE, 8)  # an overflow into the redzone
    p.gms_torch_free(ptr, 100, 0, None)
    err = capfd.readouterr().err
    assert "overflow" in err and "gms_torch: free" in err  # found at the free
    with pytest.raises(gms.InvalidArgument):
        gt.stats(5)  # a device never used


def test_tenant_from_environment():
    rt = gt.runtime(0)
    tenants = [t["tenant"] for t in rt.tenant_stats()]
    assert tenants == [os.environ.get("GMS_TENANT", "torch")]


@pytest.mark.parametrize("name,value", [("GMS_TORCH_MAX_HELD_BYTES", "8G"),
                                        ("GMS_TORCH_RETAIN_BYTES", "-1"),
                                        ("GMS_TORCH_QUARANTINE_BYTES", "99999999999999999999"),
                                        ("GMS_TORCH_SAFETY", "Off"),
                                        ("GMS_TORCH_BACKEND", "hots")])
def test_bad_settings_are_refused(name, value):
    """A setting the plug-in cannot read as what it says keeps gms off on
    the device, with a message naming it: never a silent default ("8G" was
    once 0, the library's default; "-1" was 2^64-1)."""
    import subprocess
    import sys
    code = ("import gms.torch as gt\n"
            "print(gt.plugin().gms_torch_alloc(64, 0, None))\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."),
               GMS_TORCH_BACKEND="host")
    env[name] = value
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "None"  # no memory handed out
    assert "$%s=\"%s\"" % (name, value) in r.stderr, r.stderr


@pytest.mark.parametrize("timing", ["1", None])
def test_host_timing(timing):
    """GMS_TORCH_TIMING=1 counts every alloc and free and the time spent in
    them (the benchmark's split of a step); unset, it counts nothing."""
    import subprocess
    import sys
    code = ("import ctypes, gms.torch as gt\n"
            "p = gt.plugin()\n"
            "ptrs = [p.gms_torch_alloc(4096 * (i + 1), 0, None) for i in range(50)]\n"
            "for q in ptrs[:30]: p.gms_torch_free(q, 0, 0, None)\n"
            "t = (ctypes.c_uint64 * 6)()\n"
            "p.gms_torch_timing(t)\n"
            "print(*t)\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."),
               GMS_TORCH_BACKEND="host")
    env.pop("GMS_TORCH_TIMING", None)
    if timing:
        env["GMS_TORCH_TIMING"] = timing
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    alloc_ns, allocs, alloc_max, free_ns, frees, free_max = map(int, r.stdout.split())
    if timing:
        assert (allocs, frees) == (50, 30)
        assert 0 < alloc_max <= alloc_ns and 0 < free_max <= free_ns
    else:
        assert (alloc_ns, allocs, alloc_max, free_ns, frees, free_max) == (0,) * 6


def test_memory_counters():
    """torch.cuda.memory_allocated and its kin, which PyTorch cannot answer
    for a pluggable allocator, answered from the plug-in: the bytes its
    tensors hold, their peak until reset_peak_memory_stats, what gms maps;
    memory_stats has the keys programs read."""
    p = gt.plugin()
    fns = gt.memory_functions(lambda device: 0 if device is None else device)
    base = fns["memory_allocated"]()
    a = p.gms_torch_alloc(3000, 0, None)
    b = p.gms_torch_alloc(1 << 20, 0, None)
    assert fns["memory_allocated"](0) == base + 3000 + (1 << 20)
    p.gms_torch_free(b, 1 << 20, 0, None)
    assert fns["memory_allocated"]() == base + 3000
    assert fns["max_memory_allocated"]() >= base + 3000 + (1 << 20)
    fns["reset_peak_memory_stats"]()
    assert fns["max_memory_allocated"]() == base + 3000
    st = fns["memory_stats"]()
    assert st["allocated_bytes.all.current"] == base + 3000
    assert st["allocation.all.current"] >= 1
    assert st["reserved_bytes.all.current"] >= st["allocated_bytes.all.current"]
    assert fns["max_memory_reserved"]() >= fns["memory_reserved"]() > 0
    assert "gms memory summary" in fns["memory_summary"]()
    p.gms_torch_free(a, 3000, 0, None)
    assert fns["memory_allocated"]() == base
    with pytest.raises(gms.InvalidArgument):
        gt.memory(1 << 20)  # no such device


def test_cudnn_benchmark_stays_off():
    """cudnn.benchmark, which a pluggable allocator cannot serve, is
    turned off when asked for, through the property and through torch._C
    (what torch.backends.cudnn.flags() calls), with a warning; asking for
    it off is quiet. Over stand-ins for torch._C and the cudnn module's
    class (CI has no torch)."""
    import types
    import warnings

    class Prop:  # the shape of torch.backends.ContextProp
        def __init__(self, getter, setter):
            self.getter, self.setter = getter, setter

        def __get__(self, obj, objtype):
            return self.getter()

        def __set__(self, obj, value):
            self.setter(value)

    flag = [True]  # a program that turned it on before use_gms()
    C = types.SimpleNamespace(_get_cudnn_benchmark=lambda: flag[0],
                              _set_cudnn_benchmark=lambda on: flag.__setitem__(0, on))
    Cudnn = type("Cudnn", (), {"benchmark": Prop(C._get_cudnn_benchmark, C._set_cudnn_benchmark)})
    cudnn = Cudnn()
    with pytest.warns(RuntimeWarning, match="benchmark stays off"):
        gt.keep_cudnn_benchmark_off(C, Cudnn)
    assert flag[0] is False
    with pytest.warns(RuntimeWarning, match="benchmark stays off"):
        cudnn.benchmark = True
    assert cudnn.benchmark is False
    with pytest.warns(RuntimeWarning):
        C._set_cudnn_benchmark(True)
    assert flag[0] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cudnn.benchmark = False
    assert flag[0] is False


def test_inductor_gets_plain_cuda_graphs(tmp_path, monkeypatch):
    """use_gms() turns inductor's CUDA-graph trees off (they need an
    allocator call PyTorch keeps for its own) when inductor's config is
    imported, not before: a stand-in package plays torch._inductor."""
    import importlib
    import importlib.util
    import sys
    pkg = tmp_path / "standin_inductor"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("class triton:\n    cudagraph_trees = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    name = "standin_inductor.config"
    gt.when_imported(name, gt.plain_cuda_graphs)
    gt.when_imported(name, gt.plain_cuda_graphs)  # a second use_gms(): one finder
    assert name not in sys.modules  # nothing imported ahead
    assert sum(type(f).__name__ == "_AfterImport" for f in sys.meta_path) == 1
    assert importlib.util.find_spec(name) is not None  # a probe, no import: the finder stays
    assert sum(type(f).__name__ == "_AfterImport" for f in sys.meta_path) == 1
    config = importlib.import_module(name)
    assert config.triton.cudagraph_trees is False
    assert not any(type(f).__name__ == "_AfterImport" for f in sys.meta_path)
    assert "exec_module" not in vars(config.__spec__.loader)  # the loader is its own again
    config.triton.cudagraph_trees = True  # already imported: turned off at once
    gt.when_imported(name, gt.plain_cuda_graphs)
    assert config.triton.cudagraph_trees is False
    del sys.modules[name], sys.modules["standin_inductor"]
