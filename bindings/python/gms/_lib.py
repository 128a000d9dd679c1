"""Loading libgms and describing its C API to ctypes.

This module finds the shared library, mirrors the public structs of
include/gms.h and include/gms/dlpack.h field for field (the ABI test in
tests/test_abi.py compares every offset with the C compiler's), and declares
the prototype of every function the package calls. A function the loaded
library does not export (an older build) is replaced by a stub that raises
gms.Unsupported when called, so the rest of the package keeps working.

Nothing here is public: the classes in gms.core wrap it.
"""

import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double,
                    c_int, c_int32, c_int64, c_size_t, c_uint8, c_uint16,
                    c_uint32, c_uint64, c_void_p)

NAME_MAX = 63

# ---- finding the library ---------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__))
# bindings/python/gms -> the repository root, where `make build` puts build/.
_REPO = os.path.normpath(os.path.join(_HERE, "..", "..", ".."))


def library_candidates():
    """Where libgms is looked for, in order: $GMS_LIBRARY, next to the
    package, the repository's build/ folder, then the system's search."""
    env = os.environ.get("GMS_LIBRARY")
    if env:
        return [env]
    out = [os.path.join(_HERE, "libgms.so"),
           os.path.join(_REPO, "build", "libgms.so")]
    found = ctypes.util.find_library("gms")
    if found:
        out.append(found)
    return out


def _load():
    tried = []
    for path in library_candidates():
        # A bare name (from find_library) is for the dynamic loader to find.
        if os.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError("gms: cannot load libgms; set GMS_LIBRARY to its path. Tried: "
                      + "; ".join(tried))


lib, path = _load()

# ---- structs of gms.h ----------------------------------------------------------

log_fn = CFUNCTYPE(None, c_void_p, c_int, c_char_p)


class RuntimeOptions(Structure):
    _fields_ = [
        ("version", c_uint32),
        ("backend", c_int),
        ("device", c_int),
        ("granule_bytes", c_uint64),
        ("chunk_bytes", c_uint64),
        ("retain_bytes", c_uint64),
        ("log", log_fn),
        ("log_user", c_void_p),
        ("reserved", c_uint64),  # must be 0 (it held fail_nth_call: gms/testing.h)
        ("audit_dir", c_char_p),
        ("audit_key", POINTER(c_uint8)),
        ("audit_key_len", c_size_t),
        ("audit_key_file", c_char_p),
        ("audit_lossy", c_int),
        ("audit_segment_bytes", c_uint64),
        ("audit_retention_days", c_uint32),
        ("safety", c_int),
        ("redzone_bytes", c_uint32),
        ("quarantine_bytes", c_uint64),
        ("quarantine_blocks", c_uint64),
        ("scrub_batch", c_uint32),
        ("verify_interval_ms", c_uint32),
        ("on_corruption", c_int),
        ("secret_multipass", c_int),
        ("max_held_bytes", c_uint64),
        ("broker", c_char_p),  # version 2: gmsd's socket (docs/broker.md)
    ]


RUNTIME_OPTIONS_VERSION = 2  # GMS_RUNTIME_OPTIONS_VERSION: the fields above


class ContextDesc(Structure):
    _fields_ = [
        ("version", c_uint32),
        ("tenant", c_char_p),
        ("user", c_char_p),
        ("level", c_int),
        ("language", c_int),
    ]


class BufInfo(Structure):
    _fields_ = [
        ("size", c_uint64),
        ("block_size", c_uint64),
        ("device_ptr", c_uint64),
        ("pool_id", c_uint64),
        ("flags", c_uint32),
        ("level", c_int),
        ("language", c_int),
        ("tenant", c_char * (NAME_MAX + 1)),
        ("user", c_char * (NAME_MAX + 1)),
        ("access", c_uint32),
        ("holders", c_uint32),
        ("share_id", c_uint64),
        ("immutable", c_int),
        ("read_only_view", c_int),
    ]


class ShareGrant(Structure):
    _fields_ = [
        ("tenant", c_char_p),
        ("user", c_char_p),
        ("language", c_int),
        ("mode", c_int),
    ]


class ShareDesc(Structure):
    _fields_ = [
        ("version", c_uint32),
        ("grants", POINTER(ShareGrant)),
        ("ngrants", c_size_t),
        ("immutable", c_int),
    ]


class Pressure(Structure):
    _fields_ = [
        ("tenant", c_char_p),
        ("bytes_wanted", c_uint64),
        ("reason", c_int),
    ]


pressure_fn = CFUNCTYPE(None, c_void_p, POINTER(Pressure))


class Stats(Structure):
    _fields_ = [(n, c_uint64) for n in (
        "live_bytes", "live_blocks", "peak_live_bytes", "held_bytes",
        "peak_held_bytes", "reserved_bytes")] + [("fragmentation", c_double)] + [
        (n, c_uint64) for n in (
            "allocs", "frees", "quota_refusals", "leaked_blocks", "leaked_bytes",
            "pools", "contexts", "tenants", "shares", "pressure_events",
            "pressure_recovered", "pressure_steps", "maps", "unmaps", "device_waits")]


class TenantStats(Structure):
    _fields_ = [("tenant", c_char * (NAME_MAX + 1))] + [(n, c_uint64) for n in (
        "live_bytes", "live_blocks", "peak_live_bytes", "held_bytes", "max_bytes",
        "max_allocs", "quota_refusals", "leaked_blocks", "leaked_bytes")]


class Report(Structure):
    _fields_ = [(n, c_uint64) for n in (
        "pools", "chunks", "live_blocks", "free_blocks", "live_handles",
        "violations")] + [("first_violation", c_char * 512)]


class Violation(Structure):
    _fields_ = [
        ("kind", c_int),
        ("tenant", c_char_p),
        ("handle", c_uint64),
        ("address", c_uint64),
        ("offset", c_int64),
        ("size", c_uint64),
        ("message", c_char_p),
    ]


violation_fn = CFUNCTYPE(None, c_void_p, POINTER(Violation))
# gms/seal.h: a key provider writes a tenant's 32-byte KEK, 0 or refuses (< 0).
key_fn = CFUNCTYPE(c_int, c_void_p, c_char_p, POINTER(c_uint8))

# ---- structs of gms/dlpack.h (the DLPack 1.x ABI) ------------------------------


class DLPackVersion(Structure):
    _fields_ = [("major", c_uint32), ("minor", c_uint32)]


class DLDevice(Structure):
    _fields_ = [("device_type", c_int), ("device_id", c_int32)]


class DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(Structure):
    _fields_ = [
        ("data", c_void_p),
        ("device", DLDevice),
        ("ndim", c_int32),
        ("dtype", DLDataType),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
        ("byte_offset", c_uint64),
    ]


class DLManagedTensor(Structure):
    pass


DLManagedTensor._fields_ = [
    ("dl_tensor", DLTensor),
    ("manager_ctx", c_void_p),
    ("deleter", CFUNCTYPE(None, POINTER(DLManagedTensor))),
]


class DLManagedTensorVersioned(Structure):
    pass


DLManagedTensorVersioned._fields_ = [
    ("version", DLPackVersion),
    ("manager_ctx", c_void_p),
    ("deleter", CFUNCTYPE(None, POINTER(DLManagedTensorVersioned))),
    ("flags", c_uint64),
    ("dl_tensor", DLTensor),
]

DLPACK_FLAG_READ_ONLY = 1 << 0
DLPACK_FLAG_IS_COPIED = 1 << 1


class DlpackDesc(Structure):
    _fields_ = [
        ("version", c_uint32),
        ("dtype", DLDataType),
        ("ndim", c_int32),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
        ("byte_offset", c_uint64),
    ]


DLPACK_DESC_VERSION = 1  # GMS_DLPACK_DESC_VERSION: there is no _init function

class AtomicItem(Structure):
    """gms_atomic_item (include/gms/access.h)."""
    _fields_ = [("offset", c_uint64), ("operand", c_uint64), ("compare", c_uint64),
                ("op", c_uint32), ("width", c_uint32)]


# ---- functions ---------------------------------------------------------------------

_rt, _ctx, _buf = c_void_p, c_void_p, c_uint64
_u64p = POINTER(c_uint64)

_PROTOTYPES = {
    "gms_version": (c_uint32, []),
    "gms_strerror": (c_char_p, [c_int]),
    "gms_error_last": (c_char_p, []),
    "gms_runtime_options_init": (None, [POINTER(RuntimeOptions)]),
    "gms_runtime_options_init_version": (c_int, [POINTER(RuntimeOptions), c_uint32]),
    "gms_runtime_open": (c_int, [POINTER(c_void_p), POINTER(RuntimeOptions)]),
    "gms_runtime_close": (None, [_rt]),
    "gms_runtime_backend_name": (c_char_p, [_rt]),
    "gms_audit_flush": (c_int, [_rt]),
    "gms_context_desc_init": (None, [POINTER(ContextDesc)]),
    "gms_context_open": (c_int, [POINTER(c_void_p), _rt, POINTER(ContextDesc)]),
    "gms_context_close": (None, [_ctx]),
    "gms_level_name": (c_char_p, [c_int]),
    "gms_language_name": (c_char_p, [c_int]),
    "gms_tenant_set_quota": (c_int, [_rt, c_char_p, c_uint64, c_uint64]),
    "gms_alloc": (c_int, [_ctx, c_size_t, c_uint32, _u64p]),
    "gms_free": (c_int, [_ctx, _buf]),
    "gms_free_async": (c_int, [_ctx, _buf, c_void_p]),
    "gms_alloc_async": (c_int, [_ctx, c_size_t, c_uint32, c_void_p, POINTER(c_uint64)]),
    "gms_buf_info_get": (c_int, [_ctx, _buf, POINTER(BufInfo)]),
    "gms_buf_ptr": (c_int, [_ctx, _buf, POINTER(c_void_p)]),
    "gms_write": (c_int, [_ctx, _buf, c_uint64, c_void_p, c_size_t]),
    "gms_read": (c_int, [_ctx, _buf, c_uint64, c_void_p, c_size_t]),
    "gms_copy": (c_int, [_ctx, _buf, c_uint64, _buf, c_uint64, c_size_t]),
    "gms_fill": (c_int, [_ctx, _buf, c_uint64, c_int, c_size_t]),
    "gms_share_desc_init": (None, [POINTER(ShareDesc)]),
    "gms_share": (c_int, [_ctx, _buf, POINTER(ShareDesc), _u64p]),
    "gms_acquire": (c_int, [_ctx, c_uint64, c_int, _u64p]),
    "gms_release": (c_int, [_ctx, _buf]),
    "gms_transfer": (c_int, [_ctx, _buf, _ctx, _u64p]),
    "gms_transfer_async": (c_int, [_ctx, _buf, _ctx, c_void_p, _u64p]),
    "gms_revoke": (c_int, [_ctx, c_uint64]),
    "gms_access_begin": (c_int, [_ctx, _buf, c_int, c_uint32, c_void_p]),
    "gms_access_end": (c_int, [_ctx, _buf, c_void_p]),
    "gms_atomic": (c_int, [_ctx, _buf, c_uint64, c_int, c_uint32, c_uint64, c_uint64, c_void_p,
                           _u64p]),
    "gms_atomic_batch": (c_int, [_ctx, _buf, POINTER(AtomicItem), c_size_t, _buf, c_uint64,
                                 c_void_p]),
    "gms_on_pressure": (c_int, [_rt, pressure_fn, c_void_p]),
    "gms_on_violation": (c_int, [_rt, violation_fn, c_void_p]),
    "gms_stats_get": (c_int, [_rt, POINTER(Stats)]),
    "gms_tenant_stats_get": (c_int, [_rt, c_uint64, POINTER(TenantStats)]),
    "gms_trim": (c_int, [_rt]),
    "gms_sync": (c_int, [_rt]),
    "gms_verify": (c_int, [_rt, POINTER(Report)]),
    "gms_dlpack_export": (c_int, [_ctx, _buf, POINTER(DlpackDesc),
                                  POINTER(POINTER(DLManagedTensorVersioned))]),
    "gms_dlpack_export_legacy": (c_int, [_ctx, _buf, POINTER(DlpackDesc),
                                         POINTER(POINTER(DLManagedTensor))]),
    "gms_dlpack_import": (c_int, [_ctx, POINTER(DLManagedTensorVersioned), _u64p]),
    "gms_dlpack_import_legacy": (c_int, [_ctx, POINTER(DLManagedTensor), _u64p]),
    # gms/seal.h (docs/sealed.md)
    "gms_seal": (c_int, [_ctx, _buf]),
    "gms_unseal": (c_int, [_ctx, _buf]),
    "gms_is_sealed": (c_int, [_ctx, _buf, POINTER(c_int)]),
    "gms_digest": (c_int, [_ctx, _buf, c_uint64, c_uint64, POINTER(c_uint8)]),
    "gms_on_key_request": (c_int, [_rt, key_fn, c_void_p]),
    "gms_seal_key_file": (c_int, [_rt, c_char_p, c_char_p]),
}


class _Missing:
    """Stands in for a function this build of libgms does not export."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        from .errors import Unsupported
        raise Unsupported("%s is not exported by %s (an older libgms?)" % (self.name, path),
                          code=-10)


def has(name):
    """True when the loaded library exports the function `name`."""
    return not isinstance(globals().get(name), _Missing)


for _name, (_res, _args) in _PROTOTYPES.items():
    try:
        _f = getattr(lib, _name)
    except AttributeError:
        globals()[_name] = _Missing(_name)
        continue
    _f.restype = _res
    _f.argtypes = _args
    globals()[_name] = _f


_error_last = globals()["gms_error_last"]
_strerror = globals()["gms_strerror"]


def error_last():
    """gms_error_last(): this thread's message of the last failed call."""
    return (_error_last() or b"").decode("utf-8", "replace")


def strerror(code):
    return (_strerror(code) or b"").decode("utf-8", "replace")
