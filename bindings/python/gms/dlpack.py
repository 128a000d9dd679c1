"""DLPack: gms buffers into other frameworks and their tensors into gms,
without copies, following the array API standard's protocol.

Export: Buffer.__dlpack__ (and TensorView.__dlpack__ for a typed view) asks
libgms for a managed tensor (gms_dlpack_export, or _export_legacy for a
consumer that does not pass max_version >= (1, 0)). The tensor holds its own
handle on the buffer, so the Python Buffer may go away first. It is handed
over in a PyCapsule named "dltensor_versioned" (or "dltensor"). A consumer
that takes the tensor renames the capsule "used_dltensor_versioned" (or
"used_dltensor") and calls the deleter itself later; the capsule's
destructor calls the deleter only when the capsule was never consumed.

The tensor's deleter is wrapped (see _guarded_delete) so that a consumer
calling it on any thread, before, during or after the exporting context's
or runtime's close, does no harm.

Import: from_dlpack(obj) asks obj.__dlpack__(max_version=(1, 0)) (the
legacy call when the producer rejects the keyword), renames the capsule
"used_*" (under a lock: a capsule is consumed once, whatever the threads)
and hands the tensor to gms_dlpack_import: gms then owns the tensor and
calls its deleter when the buffer is freed. If the import fails the
capsule gets its name back, and with it the tensor.

Streams: gms keeps no record of which stream last wrote a buffer; its own
copies (read, write, fill, copy) finish before they return. So there is no
work of gms's to order before the consumer's stream, and the stream argument
is checked but needs no action. Work the user queued on a buffer through
its raw pointer is the user's to synchronise, as with any raw CUDA memory.
On import gms does not wait for the producer's streams either: synchronise
(torch.cuda.synchronize(), stream.synchronize()) before gms reads a tensor
that a kernel may still be writing.
"""

import ctypes
import threading
from ctypes import POINTER, byref, c_int, c_int64, c_uint64, c_void_p, cast

from . import _lib

KDL_CPU, KDL_CUDA, KDL_ROCM = 1, 2, 10
MAX_DIMS = 16


def _immortal_name(s):
    """A C string that is never freed: capsules keep a pointer to their name,
    and a capsule may be destroyed during interpreter shutdown."""
    buf = ctypes.create_string_buffer(s)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(buf))
    return ctypes.addressof(buf)


_N_VERSIONED = _immortal_name(b"dltensor_versioned")
_N_LEGACY = _immortal_name(b"dltensor")
_N_USED_VERSIONED = _immortal_name(b"used_dltensor_versioned")
_N_USED_LEGACY = _immortal_name(b"used_dltensor")

# The capsule calls, through ctypes.pythonapi (they run with the GIL held).
# The *_raw variants take the object as a bare address: the destructor runs
# while the capsule's reference count is 0 and must not touch it.
_api = ctypes.pythonapi
_PF = ctypes.PYFUNCTYPE
_New = _PF(ctypes.py_object, c_void_p, c_void_p, c_void_p)(("PyCapsule_New", _api))
_IsValid = _PF(c_int, ctypes.py_object, c_void_p)(("PyCapsule_IsValid", _api))
_GetPointer = _PF(c_void_p, ctypes.py_object, c_void_p)(("PyCapsule_GetPointer", _api))
_SetName = _PF(c_int, ctypes.py_object, c_void_p)(("PyCapsule_SetName", _api))
_IsValidRaw = _PF(c_int, c_void_p, c_void_p)(("PyCapsule_IsValid", _api))
_GetPointerRaw = _PF(c_void_p, c_void_p, c_void_p)(("PyCapsule_GetPointer", _api))


def _capsule_destructor(capsule):
    # A consumed capsule has been renamed, so neither name matches and its
    # tensor is left to the consumer.
    if _IsValidRaw(capsule, _N_VERSIONED):
        t = cast(_GetPointerRaw(capsule, _N_VERSIONED), POINTER(_lib.DLManagedTensorVersioned))
    elif _IsValidRaw(capsule, _N_LEGACY):
        t = cast(_GetPointerRaw(capsule, _N_LEGACY), POINTER(_lib.DLManagedTensor))
    else:
        return
    if t and t.contents.deleter:
        t.contents.deleter(t)


# Kept for the module's life: a capsule may outlive any object holding it.
_DESTRUCTOR = ctypes.CFUNCTYPE(None, c_void_p)(_capsule_destructor)
_DESTRUCTOR_ADDR = cast(_DESTRUCTOR, c_void_p).value

# The deleter of an exported tensor releases the tensor's handle on the
# buffer. A consumer may call it on any thread at any time: while the
# exporting context or runtime is open, while another thread closes it, or
# after (a torch tensor that outlives a `with` block, or one freed during
# interpreter exit, after the atexit finalizers closed everything).
# libgms's deleter copes with a closed context or runtime, but not with one
# being freed under it. So the package hands out tensors whose deleter is a
# guard that runs libgms's deleter through the context's _Owner
# (run_or_defer): at once while the context is open, as a call in flight;
# just after the free while a close is under way; through the runtime once
# the context is gone. No Python lock is held while it runs: the deleter
# may be called from inside another context's call (gms_free of a buffer
# imported from this tensor), and a lock held there would deadlock two
# contexts that imported each other's tensors.
_exports = {}  # tensor address -> (libgms's deleter, the context's _Owner)
_exports_lock = threading.Lock()


def _guarded_delete(t):
    with _exports_lock:
        entry = _exports.pop(cast(t, c_void_p).value, None)
    if entry is not None:
        deleter, owner = entry
        owner.run_or_defer(lambda: deleter(t))


_GUARD_VERSIONED = _lib.DLManagedTensorVersioned._fields_[2][1](_guarded_delete)
_GUARD_LEGACY = _lib.DLManagedTensor._fields_[2][1](_guarded_delete)


def _guard(out, owner, guard):
    # The field read gives a view into the struct: copy the address out
    # before the guard overwrites it.
    deleter = type(guard)(cast(out.contents.deleter, c_void_p).value)
    with _exports_lock:
        _exports[cast(out, c_void_p).value] = (deleter, owner)
    out.contents.deleter = guard

# ---- dtypes -------------------------------------------------------------------------------

_DTYPES = {
    "bool": (6, 8), "int8": (0, 8), "int16": (0, 16), "int32": (0, 32), "int64": (0, 64),
    "uint8": (1, 8), "uint16": (1, 16), "uint32": (1, 32), "uint64": (1, 64),
    "float16": (2, 16), "float32": (2, 32), "float64": (2, 64), "bfloat16": (4, 16),
    "complex64": (5, 64), "complex128": (5, 128),
    "half": (2, 16), "float": (2, 32), "double": (2, 64),
}


def parse_dtype(dtype):
    """(DLDataTypeCode, bits) of a name, a numpy dtype or type, or a torch dtype."""
    if isinstance(dtype, str):
        name = dtype
    elif isinstance(getattr(dtype, "name", None), str):  # numpy.dtype
        name = dtype.name
    elif isinstance(dtype, type):                         # numpy.float32
        name = dtype.__name__
    else:                                                 # torch.float32
        name = str(dtype).rsplit(".", 1)[-1]
    try:
        return _DTYPES[name]
    except KeyError:
        raise TypeError("gms: unsupported DLPack dtype %r" % (dtype,)) from None


class TensorView:
    """A typed, shaped view of a Buffer for DLPack consumers (made by
    Buffer.as_tensor). It keeps the Buffer alive; the tensors exported from
    it hold their own handles."""

    def __init__(self, buffer, dtype="uint8", shape=None, strides=None, offset=0):
        code, bits = parse_dtype(dtype)
        item = bits // 8
        if shape is None:
            shape = ((buffer.size - offset) // item,)
        shape = tuple(int(x) for x in shape)
        if len(shape) > MAX_DIMS:
            raise ValueError("gms: at most %d dimensions" % MAX_DIMS)
        self.buffer = buffer
        self.dtype = dtype
        self.shape = shape
        self.strides = None if strides is None else tuple(int(x) for x in strides)
        self._shape = (c_int64 * max(len(shape), 1))(*shape)
        self._strides = None if strides is None else (c_int64 * max(len(shape), 1))(*self.strides)
        self._desc = _lib.DlpackDesc(
            _lib.DLPACK_DESC_VERSION, _lib.DLDataType(code, bits, 1), len(shape),
            self._shape, self._strides, int(offset))

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        return export(self.buffer, self._desc, stream, max_version, dl_device, copy)

    def __dlpack_device__(self):
        return device_of(self.buffer)

    def __repr__(self):
        return "<gms.TensorView %s %s of %r>" % (self.dtype, self.shape, self.buffer)


# ---- export ---------------------------------------------------------------------------------

def device_of(buf):
    """(device type, ordinal) of a buffer, the same for a whole runtime: asked
    of libgms once (through an export) and remembered."""
    rt = buf.context.runtime
    if rt._dl_device is None:
        name = rt.backend
        if name == "host":
            rt._dl_device = (KDL_CPU, 0)
        elif _lib.has("gms_dlpack_export"):
            out = POINTER(_lib.DLManagedTensorVersioned)()
            buf._call(_lib.gms_dlpack_export, None, byref(out))
            dev = out.contents.dl_tensor.device
            rt._dl_device = (int(dev.device_type), int(dev.device_id))
            out.contents.deleter(out)  # libgms's own: safe whatever happens to the context
        else:
            rt._dl_device = (KDL_CUDA if name == "cuda" else KDL_ROCM, rt._device or 0)
    return rt._dl_device


def _check_stream(device, stream):
    """The array API's rules for the consumer's stream argument."""
    if device[0] == KDL_CPU:
        if stream not in (None, -1):
            raise BufferError("gms: a CPU buffer takes stream=None, not %r" % (stream,))
    elif stream == 0:
        raise BufferError("gms: stream 0 is ambiguous in DLPack: pass 1 (legacy "
                          "default), 2 (per-thread default) or a stream")
    elif stream is not None and not isinstance(stream, int):
        raise BufferError("gms: stream must be an int, not %r" % (stream,))


def export(buf, desc, stream=None, max_version=None, dl_device=None, copy=None):
    """The body of __dlpack__: a capsule over a new managed tensor of buf."""
    device = device_of(buf)
    _check_stream(device, stream)
    if dl_device is not None and tuple(int(x) for x in dl_device) != device:
        raise BufferError("gms: cannot export a buffer of device %r to %r"
                          % (device, tuple(dl_device)))
    versioned = max_version is not None and int(max_version[0]) >= 1
    src, tmp = buf, None
    if copy:  # the standard's copy=True: the consumer gets memory of its own
        tmp = buf.context.alloc(buf.size)
        tmp.copy_from(buf)
        src = tmp
    desc_p = byref(desc) if desc is not None else None
    try:
        if versioned:
            out = POINTER(_lib.DLManagedTensorVersioned)()
            src._call(_lib.gms_dlpack_export, desc_p, byref(out))
            if copy:
                out.contents.flags |= _lib.DLPACK_FLAG_IS_COPIED
            _guard(out, src._owner, _GUARD_VERSIONED)
            name = _N_VERSIONED
        else:
            out = POINTER(_lib.DLManagedTensor)()
            src._call(_lib.gms_dlpack_export_legacy, desc_p, byref(out))
            _guard(out, src._owner, _GUARD_LEGACY)
            name = _N_LEGACY
    finally:
        if tmp is not None:
            tmp.free()  # the tensor holds its own handle on the copy
    try:
        return _New(cast(out, c_void_p), name, _DESTRUCTOR_ADDR)
    except BaseException:
        out.contents.deleter(out)
        raise


# ---- import ---------------------------------------------------------------------------------

def _is_capsule(obj):
    return type(obj).__name__ == "PyCapsule"


_consume_lock = threading.Lock()


def import_tensor(ctx, obj, stream=None):
    """A Buffer of ctx over obj's memory (an object with __dlpack__, or an
    unconsumed DLPack capsule). stream goes to the producer as is."""
    from .core import Buffer
    if _is_capsule(obj):
        capsule = obj
    else:
        kw = {} if stream is None else {"stream": stream}
        try:
            capsule = obj.__dlpack__(max_version=(1, 0), **kw)
        except TypeError:  # a producer older than DLPack 1.0
            capsule = obj.__dlpack__(**kw)
    # Consumed (renamed) before the import and given back if it fails:
    # checked and renamed after, two threads importing one capsule would
    # both own its tensor, and its deleter would run twice.
    with _consume_lock:
        if _IsValid(capsule, _N_VERSIONED):
            name, used, kind = _N_VERSIONED, _N_USED_VERSIONED, _lib.DLManagedTensorVersioned
            fn = _lib.gms_dlpack_import
        elif _IsValid(capsule, _N_LEGACY):
            name, used, kind = _N_LEGACY, _N_USED_LEGACY, _lib.DLManagedTensor
            fn = _lib.gms_dlpack_import_legacy
        else:
            raise BufferError("gms: not an unconsumed DLPack capsule")
        t = cast(_GetPointer(capsule, name), POINTER(kind))
        _SetName(capsule, used)
    h = c_uint64()
    try:
        ctx._owner.checked(fn, t, byref(h))
    except BaseException:
        _SetName(capsule, name)  # not imported: the capsule's again
        raise
    return Buffer(ctx, h.value)
