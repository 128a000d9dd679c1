"""PyTorch on gms memory: the Python side of the allocator plug-in.

    import torch, gms.torch
    gms.torch.use_gms()          # before the first CUDA tensor is made
    ...                          # the program as it was

use_gms() is the two lines of the README in one call:

    alloc = torch.cuda.memory.CUDAPluggableAllocator(
        gms.torch_plugin_path(), "gms_torch_alloc", "gms_torch_free")
    torch.cuda.memory.change_current_allocator(alloc)

From then on every CUDA tensor lives in gms memory (one private runtime per
device, CUDA backend, safety on; tenant $GMS_TENANT, default "torch"), and
is freed in stream order. use_gms() also gives PyTorch the plug-in's hooks
where this PyTorch has them: CUDA graphs (torch.cuda.graph) keep their
memory apart until they are released, Tensor.record_stream orders a free
after the other streams' work, and torch.cuda.empty_cache() trims. PyTorch
has no memory counters for a pluggable allocator (torch.cuda.memory_allocated
and its kin raise): use_gms() makes them answer from gms (see
memory_functions), and stats() gives the whole of gms's.
torch.backends.cudnn.benchmark needs what only PyTorch's own allocator
gives (its largest free block): under gms it stays off, with a warning when
a program asks for it. torch.compile(mode="reduce-overhead") captures
inductor's plain CUDA graphs (its graph trees need what only PyTorch's own
allocator gives). Importing this module does not import torch; use_gms()
does.
"""

import ctypes
from ctypes import POINTER, byref, c_int, c_ssize_t, c_uint64, c_void_p

from . import _lib, torch_plugin_path
from .errors import InvalidArgument, check

_plugin = None
_allocator = None


def plugin():
    """libgms_torch.so through ctypes, its functions declared (the same
    copy that PyTorch loads: the dynamic loader keeps one per path)."""
    global _plugin
    if _plugin is None:
        p = ctypes.CDLL(torch_plugin_path())
        p.gms_torch_alloc.restype = c_void_p
        p.gms_torch_alloc.argtypes = [c_ssize_t, c_int, c_void_p]
        p.gms_torch_free.restype = None
        p.gms_torch_free.argtypes = [c_void_p, c_ssize_t, c_int, c_void_p]
        p.gms_torch_stats.restype = c_int
        p.gms_torch_stats.argtypes = [c_int, POINTER(_lib.Stats)]
        p.gms_torch_runtime.restype = c_void_p
        p.gms_torch_runtime.argtypes = [c_int]
        p.gms_torch_context.restype = c_void_p
        p.gms_torch_context.argtypes = [c_int]
        p.gms_torch_trim.restype = c_int
        p.gms_torch_trim.argtypes = []
        p.gms_torch_live_pointers.restype = c_uint64
        p.gms_torch_live_pointers.argtypes = []
        p.gms_torch_lookup.restype = c_int
        p.gms_torch_lookup.argtypes = [c_void_p, POINTER(c_uint64), POINTER(c_int)]
        p.gms_torch_timing.restype = None
        p.gms_torch_timing.argtypes = [POINTER(c_uint64)]
        p.gms_torch_memory.restype = c_int
        p.gms_torch_memory.argtypes = [c_int, POINTER(c_uint64)]
        p.gms_torch_reset_peak.restype = c_int
        p.gms_torch_reset_peak.argtypes = [c_int]
        p.gms_torch_raise_on_failure.restype = None
        p.gms_torch_raise_on_failure.argtypes = [c_int]
        p.gms_torch_set_memory_fraction.restype = None
        p.gms_torch_set_memory_fraction.argtypes = [ctypes.c_double, c_int]
        p.gms_torch_record_stream.restype = None
        p.gms_torch_record_stream.argtypes = [c_void_p, c_void_p]
        p.gms_torch_empty_cache.restype = None
        p.gms_torch_empty_cache.argtypes = []
        # PyTorch's graph hooks: (device, pool id as two words[, filter])
        p.gms_torch_begin_allocate_to_pool.restype = None
        p.gms_torch_begin_allocate_to_pool.argtypes = [c_int, c_uint64, c_uint64, c_void_p]
        p.gms_torch_end_allocate_to_pool.restype = None
        p.gms_torch_end_allocate_to_pool.argtypes = [c_int, c_uint64, c_uint64]
        p.gms_torch_release_pool.restype = None
        p.gms_torch_release_pool.argtypes = [c_int, c_uint64, c_uint64]
        _plugin = p
    return _plugin


def use_gms():
    """Makes PyTorch allocate CUDA memory from gms. Call it before the
    first CUDA allocation (PyTorch refuses to swap an allocator in use).
    Returns the CUDAPluggableAllocator; a second call returns it again."""
    import torch
    global _allocator
    if _allocator is None:
        alloc = torch.cuda.memory.CUDAPluggableAllocator(
            torch_plugin_path(), "gms_torch_alloc", "gms_torch_free")
        _set_hooks(alloc._allocator)
        # PyTorch does not check for NULL: a refused allocation is thrown,
        # and PyTorch raises it as a RuntimeError carrying gms's reason.
        plugin().gms_torch_raise_on_failure(1)
        torch.cuda.memory.change_current_allocator(alloc)
        _allocator = alloc
        index = lambda device: torch.cuda._get_device_index(device, optional=True)  # noqa: E731
        for name, fn in memory_functions(index).items():
            for module in (torch.cuda, torch.cuda.memory):
                setattr(module, name, fn)
        keep_cudnn_benchmark_off(torch._C, type(torch.backends.cudnn))
        when_imported("torch._inductor.config", plain_cuda_graphs)
    return _allocator


def plain_cuda_graphs(inductor_config):
    """torch.compile(mode="reduce-overhead") keeps its CUDA graphs'
    memory in graph trees, which ask the allocator which blocks of a pool
    are live (checkPoolLiveAllocations): PyTorch raises for a pluggable
    allocator. Inductor's plain graphs, each with its own private pool,
    run on gms, so the trees go off."""
    inductor_config.triton.cudagraph_trees = False


def when_imported(name, then):
    """Calls then(module) once the module name is imported: at once if it
    is, else right after its import (torch._inductor.config costs seconds
    to import, which a program that never compiles should not pay)."""
    import sys
    module = sys.modules.get(name)
    if module is not None:
        then(module)
    elif not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, then))


class _AfterImport:
    """A finder that answers for one module only: it finds the module
    through the other finders and runs then(module) after the module's
    own code, then leaves. A lookup that imports nothing
    (importlib.util.find_spec) leaves it in place."""

    def __init__(self, name, then):
        self.name, self.then, self.finding = name, then, False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or self.finding:
            return None
        import importlib.util
        import sys
        self.finding = True  # the other finders' answer, not ours again
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.finding = False
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader

        def exec_module(module):
            del loader.exec_module  # the loader's own again
            loader.exec_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            self.then(module)

        loader.exec_module = exec_module
        return spec


def keep_cudnn_benchmark_off(C, cudnn_class):
    """torch.backends.cudnn.benchmark makes cuDNN's plan search ask the
    allocator for its largest free block (cacheInfo), which PyTorch's
    pluggable allocators cannot answer: the first convolution would raise.
    Under gms it stays off (cuDNN's heuristics pick the algorithms), and
    asking for it warns. C is torch._C; cudnn_class the class of
    torch.backends.cudnn, whose `benchmark` property is rebuilt on the
    guarded setter (the property keeps the setter it was made with)."""
    import warnings
    set_benchmark = C._set_cudnn_benchmark

    def guarded(on):
        if on:
            warnings.warn("gms.torch: torch.backends.cudnn.benchmark stays off under gms: cuDNN's "
                          "plan search needs the allocator's largest free block, which PyTorch's "
                          "pluggable allocators cannot give", RuntimeWarning, stacklevel=3)
        set_benchmark(False)

    if C._get_cudnn_benchmark():
        guarded(True)
    C._set_cudnn_benchmark = guarded
    prop = cudnn_class.__dict__.get("benchmark")
    if prop is not None:
        cudnn_class.benchmark = type(prop)(C._get_cudnn_benchmark, guarded)


# PyTorch's setter of each hook, and the plug-in's function for it. A
# MempoolId_t (a pair of 64-bit words) passes as two words, and the
# capture's filter (a std::function) as a pointer the plug-in ignores.
_HOOKS = (("set_begin_allocate_to_pool", "gms_torch_begin_allocate_to_pool"),
          ("set_end_allocate_to_pool_fn", "gms_torch_end_allocate_to_pool"),
          ("set_release_pool", "gms_torch_release_pool"),
          ("set_record_stream_fn", "gms_torch_record_stream"),
          ("set_memory_fraction_fn", "gms_torch_set_memory_fraction"),
          ("set_reset_fn", "gms_torch_empty_cache"))


def _set_hooks(hooks):
    """Gives PyTorch's pluggable allocator the plug-in's hooks it has
    setters for (PyTorch 2.3 and newer have them all). Without the graph
    hooks, a CUDA graph's memory would go back to other tensors while the
    graph still replays into it: use_gms() then says so."""
    p = plugin()
    missing = [setter for setter, _ in _HOOKS[:3] if not hasattr(hooks, setter)]
    for setter, name in _HOOKS:
        if hasattr(hooks, setter):
            getattr(hooks, setter)(ctypes.cast(getattr(p, name), c_void_p).value)
    if missing:
        import warnings
        warnings.warn("gms.torch: this PyTorch has no %s: do not capture CUDA graphs on gms memory"
                      % ", ".join(missing), RuntimeWarning, stacklevel=3)


def memory(device=-1):
    """What PyTorch holds through the plug-in on a device (-1: the first
    used): allocated_bytes (its tensors' bytes, as PyTorch asked for them),
    peak_allocated_bytes (since the last reset_peak) and tensors."""
    out = (c_uint64 * 3)()
    check(plugin().gms_torch_memory(device, out))
    return {"allocated_bytes": out[0], "peak_allocated_bytes": out[1], "tensors": out[2]}


def reset_peak(device=-1):
    """The allocated peak starts again from what is allocated now."""
    check(plugin().gms_torch_reset_peak(device))


def memory_functions(device_index):
    """torch.cuda's memory counters answered from gms, by name, for
    use_gms() to put in place of PyTorch's (which raise for a pluggable
    allocator). device_index maps their device argument to an index.
    Allocated bytes are what PyTorch's tensors hold (their peak resets with
    reset_peak_memory_stats); reserved bytes are what gms has mapped on the
    device, and their peak is the runtime's since it opened (gms keeps no
    other)."""
    def mapped(device):
        try:
            return stats(device)
        except InvalidArgument:  # no allocation on the device yet
            return {"held_bytes": 0, "peak_held_bytes": 0, "maps": 0, "unmaps": 0}

    def memory_stats(device=None):
        d = device_index(device)
        m, s = memory(d), mapped(d)
        return {"allocated_bytes.all.current": m["allocated_bytes"],
                "allocated_bytes.all.peak": m["peak_allocated_bytes"],
                "active_bytes.all.current": m["allocated_bytes"],
                "active_bytes.all.peak": m["peak_allocated_bytes"],
                "allocation.all.current": m["tensors"],
                "reserved_bytes.all.current": s["held_bytes"],
                "reserved_bytes.all.peak": s["peak_held_bytes"],
                "num_device_alloc": s["maps"], "num_device_free": s["unmaps"],
                "num_alloc_retries": 0, "num_ooms": 0}

    def memory_allocated(device=None):
        return memory(device_index(device))["allocated_bytes"]

    def max_memory_allocated(device=None):
        return memory(device_index(device))["peak_allocated_bytes"]

    def memory_reserved(device=None):
        return mapped(device_index(device))["held_bytes"]

    def max_memory_reserved(device=None):
        return mapped(device_index(device))["peak_held_bytes"]

    def reset_peak_memory_stats(device=None):
        reset_peak(device_index(device))

    def memory_summary(device=None, abbreviated=False):
        st = memory_stats(device)
        mib = lambda n: "%.1f MiB" % (n / 2**20)  # noqa: E731
        return ("gms memory summary, device %d\n"
                "  allocated: %s now, %s peak, %d tensors\n"
                "  mapped:    %s now, %s peak\n" % (
                    device_index(device), mib(st["allocated_bytes.all.current"]),
                    mib(st["allocated_bytes.all.peak"]), st["allocation.all.current"],
                    mib(st["reserved_bytes.all.current"]), mib(st["reserved_bytes.all.peak"])))

    return {"memory_stats": memory_stats, "memory_allocated": memory_allocated,
            "max_memory_allocated": max_memory_allocated, "memory_reserved": memory_reserved,
            "max_memory_reserved": max_memory_reserved,
            "reset_peak_memory_stats": reset_peak_memory_stats,
            "reset_max_memory_allocated": reset_peak_memory_stats,
            "memory_summary": memory_summary}


def stats(device=-1):
    """gms_stats of the plug-in's runtime for a device (-1: the first used),
    as a dict: live_bytes, peak_held_bytes... gms.InvalidArgument before the
    device's first allocation."""
    s = _lib.Stats()
    check(plugin().gms_torch_stats(device, byref(s)))
    return {name: getattr(s, name) for name, _ in s._fields_}


def runtime(device=-1):
    """The plug-in's runtime for a device as a gms.Runtime that does not
    close it (for verify(), tenant_stats(), on_violation()...), or None
    before the device's first allocation."""
    from .core import Runtime
    ptr = plugin().gms_torch_runtime(device)
    return Runtime._borrow(ptr) if ptr else None


def empty_cache():
    """Returns the unused mapped memory of every device to the driver."""
    check(plugin().gms_torch_trim())


def lookup(ptr):
    """(gms handle, device) of a block the plug-in allocated, by its start
    address (tensor.untyped_storage().data_ptr()), or None."""
    h, dev = c_uint64(), c_int()
    if plugin().gms_torch_lookup(ptr, byref(h), byref(dev)):
        return h.value, dev.value
    return None


def live_pointers():
    """Tensors' blocks allocated through the plug-in and not yet freed."""
    return plugin().gms_torch_live_pointers()
