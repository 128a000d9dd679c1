"""CuPy on gms memory: an allocator for cupy.cuda.set_allocator.

    import cupy, gms.cupy
    gms.cupy.use_gms()       # every later CuPy allocation comes from gms

Each allocation is a gms Buffer wrapped in cupy.cuda.UnownedMemory, with
the Buffer as the owner: when CuPy drops the memory, the Buffer's finalizer
frees it. Both are ordered on the stream that was current at allocation
(gms_alloc_async, gms_free_async), as with CuPy's own pool. CuPy's memory pool is replaced, not layered: gms's pools
cache freed memory themselves. The default context is gms.default_context()
(the shared runtime, which picks the CUDA backend on a GPU machine, device
0); pass a Context of a Runtime(backend="cuda", device=n) for another GPU.
Importing this module does not import cupy; use_gms() does.
"""

from . import default_context


class Allocator:
    """A callable allocator(size) -> cupy.cuda.MemoryPointer over gms."""

    def __init__(self, context=None):
        self.context = context or default_context()

    def __call__(self, size):
        import cupy
        # Stream-ordered on CuPy's current stream, freed on it too.
        stream = cupy.cuda.get_current_stream().ptr
        buf = self.context.alloc(max(int(size), 1), stream=stream)  # gms refuses 0 bytes
        mem = cupy.cuda.UnownedMemory(buf.ptr, size, buf)
        return cupy.cuda.MemoryPointer(mem, 0)


def use_gms(context=None):
    """Routes CuPy's allocations to gms; returns the Allocator."""
    import cupy
    alloc = Allocator(context)
    cupy.cuda.set_allocator(alloc)
    return alloc


def use_default():
    """Gives CuPy its own memory pool back."""
    import cupy
    cupy.cuda.set_allocator(cupy.get_default_memory_pool().malloc)
