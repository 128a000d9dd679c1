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
after the other streams' work, and torch.cuda.empty_cache() trims. PyTorch's own memory counters
(torch.cuda.memory_allocated, max_memory_reserved...) do not apply to a
pluggable allocator: stats() gives gms's. Importing this module does not
import torch; use_gms() does.
"""

import ctypes
from ctypes import POINTER, byref, c_int, c_ssize_t, c_uint64, c_void_p

from . import _lib, torch_plugin_path
from .errors import check

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
        torch.cuda.memory.change_current_allocator(alloc)
        _allocator = alloc
    return _allocator


# PyTorch's setter of each hook, and the plug-in's function for it. A
# MempoolId_t (a pair of 64-bit words) passes as two words, and the
# capture's filter (a std::function) as a pointer the plug-in ignores.
_HOOKS = (("set_begin_allocate_to_pool", "gms_torch_begin_allocate_to_pool"),
          ("set_end_allocate_to_pool_fn", "gms_torch_end_allocate_to_pool"),
          ("set_release_pool", "gms_torch_release_pool"),
          ("set_record_stream_fn", "gms_torch_record_stream"),
          ("set_reset_fn", "gms_torch_empty_cache"))


def _set_hooks(hooks):
    """Gives PyTorch's pluggable allocator the plug-in's hooks it has
    setters for (PyTorch 2.3 and newer have all five). Without the graph
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
