"""gms for Python: safe GPU memory over libgms, through ctypes only.

    import gms
    with gms.Runtime() as rt, rt.context("acme", "alice") as ctx:
        buf = ctx.alloc(4096, zero=True)
        buf.write(b"hello")
        arr = numpy.from_dlpack(buf)       # no copy; uint8 view
        sid = buf.share([gms.Grant(mode="read")], immutable=True)

Errors are exceptions, one class per GMS_E_* code (gms.QuotaExceeded,
gms.InvalidHandle, ...), all subclasses of gms.GmsError. See docs/python.md.

The library is found through $GMS_LIBRARY, next to this package, or in the
repository's build/ folder. gms.torch and gms.cupy hold the allocator hooks
(importing gms imports neither framework).
"""

import os
import threading

from . import _lib
from .core import (ANY_LANGUAGE, UNLIMITED, Access, AtomicOp, Backend, Buffer, BufferInfo,
                   Context, Grant, Language, Level, OnCorruption, PressureEvent, Runtime,
                   Safety, ViolationEvent, Window)
from .dlpack import TensorView, parse_dtype
from .errors import (AccessDenied, BackendError, Busy, Corruption, GmsError, InvalidArgument,
                     InvalidHandle, NoMemory, OutOfBounds, QuotaExceeded, ReadOnly,
                     Unsupported)

__version__ = "0.1.0"
library_path = _lib.path


def version():
    """The version of the libgms loaded, "major.minor.patch" (gms_version()).
    __version__ is this package's; the two may differ. Raises gms.Unsupported
    with a libgms older than gms_version()."""
    v = _lib.gms_version()
    return "%d.%d.%d" % (v // 10000, v // 100 % 100, v % 100)


_default = None
_default_lock = threading.Lock()


def default_context():
    """A Context on the shared runtime, opened on first use: tenant
    $GMS_TENANT (default "python"), user $GMS_USER (default: the tenant)."""
    global _default
    with _default_lock:
        if _default is None or _default.closed or _default.runtime.closed:
            rt = Runtime()
            _default = rt.context(os.environ.get("GMS_TENANT", "python"),
                                  os.environ.get("GMS_USER") or None)
        return _default


def from_dlpack(obj, context=None, stream=None):
    """A Buffer over obj's memory without a copy (obj: a numpy array, torch
    tensor, cupy array... or an unconsumed DLPack capsule). context defaults
    to default_context(). The Buffer owns the tensor: freeing it calls the
    producer's deleter. gms does not wait for the producer's streams."""
    from .dlpack import import_tensor
    return import_tensor(context or default_context(), obj, stream)


def torch_plugin_path():
    """Path of libgms_torch.so, the PyTorch allocator plug-in:
    $GMS_TORCH_PLUGIN, else next to the loaded libgms, else next to this
    package."""
    env = os.environ.get("GMS_TORCH_PLUGIN")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    for d in (os.path.dirname(os.path.realpath(_lib.path)), here):
        p = os.path.join(d, "libgms_torch.so")
        if os.path.exists(p):
            return p
    raise FileNotFoundError("gms: libgms_torch.so not found next to %s; build it "
                            "(make build) or set GMS_TORCH_PLUGIN" % _lib.path)


__all__ = ["Runtime", "Context", "Buffer", "AtomicOp", "Window", "TensorView", "Grant", "BufferInfo",
           "PressureEvent", "ViolationEvent", "Backend", "Level", "Language", "Access",
           "Safety", "OnCorruption", "ANY_LANGUAGE", "UNLIMITED", "GmsError",
           "InvalidArgument", "InvalidHandle", "AccessDenied", "OutOfBounds", "QuotaExceeded",
           "NoMemory", "ReadOnly", "Corruption", "BackendError", "Unsupported", "Busy",
           "default_context", "from_dlpack", "torch_plugin_path", "parse_dtype",
           "library_path", "version"]
