"""Runtime, Context and Buffer: the Python face of include/gms.h.

Lifetimes follow the C API's: a Runtime holds Contexts, a Context holds
Buffers. Each Python object keeps the one it came from alive, and each has a
weakref.finalize that closes or frees its C object when Python drops it, so
a forgotten buffer is freed like any Python object.

A Runtime's and a Context's C pointer live in an `_Owner`, shared with the
finalizers (which must not hold the objects themselves). ctypes releases the
GIL for every call, so another thread may close an object while a call is
still inside libgms. So every call enters the owner first (a count of calls
in flight, taken under its lock) and leaves it after. A close only marks
the owner closing: from then on new calls raise gms.InvalidHandle, the
finalizers of its Buffers do nothing, and the C object is freed by the last
call to leave (by the close itself when none is in flight). A Context
counts as a call on its Runtime until its C context is freed. No Python
lock is held while libgms runs, so a call that ends in another object's
code (a DLPack deleter, a callback) never waits for a lock its own thread
holds. Buffers still live at a context's close are leaks, which libgms
reports and reclaims.

Checked calls (read, write, copy, fill) release the GIL while libgms copies.
"""

import enum
import gc
import os
import threading
import weakref
from collections import namedtuple
from ctypes import (POINTER, addressof, byref, c_char, c_char_p, c_int, c_uint8, c_uint64,
                    c_void_p, cast, create_string_buffer)

from . import _lib
from .errors import GmsError, InvalidHandle, check, error_for


class Backend(enum.IntEnum):
    AUTO = 0
    HOST = 1
    CUDA = 2
    HIP = 3


class Level(enum.IntEnum):
    PUBLIC = 0
    INTERNAL = 1
    CONFIDENTIAL = 2
    SECRET = 3


class Language(enum.IntEnum):
    C = 0
    RUST = 1
    ELIXIR = 2
    JULIA = 3
    ZIG = 4
    NIM = 5
    PYTHON = 6
    OTHER = 7


ANY_LANGUAGE = -1  # GMS_ANY_LANGUAGE, for Grant.language


class Access(enum.IntEnum):
    READ = 1
    READ_WRITE = 2
    ATOMIC = 3  # GMS_ACCESS_ATOMIC (gms/access.h): reads, writes through atomics only


class AtomicOp(enum.IntEnum):
    """gms_atomic_op: MIN and MAX compare unsigned, the _SIGNED ones signed."""
    ADD = 1
    AND = 2
    OR = 3
    XOR = 4
    MIN = 5
    MAX = 6
    MIN_SIGNED = 7
    MAX_SIGNED = 8
    EXCHANGE = 9
    CAS = 10


ACCESS_NOWAIT = 1


class Safety(enum.IntEnum):
    ON = 0
    OFF = 1


class OnCorruption(enum.IntEnum):
    REPORT = 0
    ABORT = 1


UNLIMITED = (1 << 64) - 1  # GMS_UNLIMITED
ALLOC_ZERO = 1
ALLOC_PAGES = 2

_ALIASES = {"rw": "READ_WRITE", "write": "READ_WRITE", "r": "READ", "ro": "READ"}


def _enum(cls, value):
    """An enum member from a member, an int or a case-insensitive name;
    ValueError for anything else."""
    try:
        if isinstance(value, str):
            name = value.upper().replace("-", "_")
            return cls[_ALIASES.get(value.lower(), name)]
        return cls(value)
    except (KeyError, ValueError, TypeError):
        raise ValueError("gms: %r is not a %s (one of %s)" % (
            value, cls.__name__, ", ".join(m.name.lower() for m in cls))) from None


def _no_nul(b, what, value):
    # ctypes passes bytes to C as a char *: C would read up to the first NUL
    # and act on a shorter name ("acme\0evil" would be tenant "acme").
    if b"\0" in b:
        raise ValueError("gms: the %s %r has a NUL byte; C would read it as %r"
                         % (what, value, b.split(b"\0", 1)[0].decode("ascii", "replace")))
    return b


def _name(s, what="name"):
    """A tenant or user name (a str or bytes) as bytes for C, None as None.
    libgms checks the rest (1 to 63 bytes of printable ASCII)."""
    if s is None:
        return None
    if isinstance(s, str):
        try:
            b = s.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("gms: the %s %r is not ASCII" % (what, s)) from None
    elif isinstance(s, (bytes, bytearray, memoryview)):
        b = bytes(s)
    else:
        raise TypeError("gms: the %s must be a str, not %s" % (what, type(s).__name__))
    return _no_nul(b, what, s)


def _path(p, what):
    """A filesystem path (str, bytes or os.PathLike) as bytes for C."""
    return _no_nul(os.fsencode(p), what, p)


_OPEN, _CLOSING, _FREEING, _FREED = range(4)


class _Owner:
    """A Runtime's or Context's C pointer and the calls in flight on it.

    refs counts the object's own reference (dropped by close), the calls in
    flight and, for a runtime, its open contexts; whoever drops it to zero
    frees the C object. The lock guards only these fields and is never held
    across a call into libgms. It is re-entrant because the cycle collector
    may run a finalizer (which enters an owner) on a thread inside one of
    these few lines; they do nothing that a re-entry could split."""

    __slots__ = ("ptr", "what", "release", "parent", "keep", "lock", "state", "refs",
                 "children", "pending", "__weakref__")

    def __init__(self, ptr, what, release, parent=None, keep=None):
        self.ptr = ptr
        self.what = what          # "runtime" or "context", for messages
        self.release = release    # release(ptr) frees the C object
        self.parent = parent      # a context's runtime owner, entered for its life
        self.keep = keep          # what C may call until the free (a log callback)
        self.lock = threading.RLock()
        self.state = _OPEN
        self.refs = 1
        self.children = set()     # a runtime's open contexts' owners
        self.pending = []         # deleters that came during the close

    @property
    def open(self):
        return self.state == _OPEN

    def try_enter(self):
        """The pointer, counted as a call in flight; None once closing."""
        with self.lock:
            if self.state != _OPEN:
                return None
            self.refs += 1
            return self.ptr

    def enter(self):
        ptr = self.try_enter()
        if ptr is None:
            raise InvalidHandle("gms: the %s is closed" % self.what, code=-2)
        return ptr

    def leave(self):
        with self.lock:
            self.refs -= 1
            last = self.refs == 0
            if last:
                self.state = _FREEING
        if last:
            self._free()

    def call(self, fn, *args):
        """fn(ptr, *args) as a call in flight: the C object stays alive
        until it returns."""
        ptr = self.enter()
        try:
            return fn(ptr, *args)
        finally:
            self.leave()

    def checked(self, fn, *args):
        """call() for a function that returns a gms code; raises its
        exception (made before leaving: the last one out may call libgms,
        which would overwrite this thread's gms_error_last)."""
        ptr = self.enter()
        try:
            return check(fn(ptr, *args))
        finally:
            self.leave()

    def close(self):
        """Refuses new calls; the C object goes once the calls in flight
        have left. A runtime closes its contexts first."""
        with self.lock:
            if self.state != _OPEN:
                return
            self.state = _CLOSING
            children = list(self.children)
        for child in children:
            child.close()
        self.leave()

    def run_or_defer(self, fn):
        """Runs fn(), a DLPack deleter of a tensor this object exported, at
        a moment it cannot race with the free: now, as a call in flight,
        while the object is open; just after the free while a close is
        under way; through the parent once the object is gone (a deleter
        needs the runtime, not the context)."""
        with self.lock:
            state = self.state
            if state == _OPEN:
                self.refs += 1
            elif state != _FREED:
                self.pending.append(fn)
        if state == _OPEN:
            try:
                fn()
            finally:
                self.leave()
        elif state == _FREED:
            if self.parent is not None:
                self.parent.run_or_defer(fn)
            else:  # libgms cut the tensor loose at the runtime's close
                fn()

    def _free(self):
        try:
            self.release(self.ptr)
        finally:
            with self.lock:
                self.state = _FREED
                self.ptr = None
                pending, self.pending = self.pending, None
            for fn in pending:
                fn()
            parent = self.parent
            if parent is not None:
                with parent.lock:
                    parent.children.discard(self)
                parent.leave()


def _free_buffer(owner, handle, stream_cell):
    """A Buffer's finalizer: frees its handle unless the context is closed
    or closing (its close reclaims the handle). Errors cannot be raised from
    here; libgms has logged them already."""
    ctx = owner.try_enter()
    if ctx is None:
        return
    try:
        stream = stream_cell[0]
        if stream is not None:  # 0: the legacy default stream
            _lib.gms_free_async(ctx, handle, stream or None)
        else:
            _lib.gms_free(ctx, handle)
    finally:
        owner.leave()


# ---- memory pressure -----------------------------------------------------------------
#
# libgms calls its pressure callbacks when an allocation would fail, after its
# own steps (drain the quarantine, trim). The callback that every Runtime
# registers runs gc.collect(), so Buffers that are only garbage (reference
# cycles) are freed and the allocation is retried. There is no call to
# unregister a callback, so the C-callable objects live as long as the module.

def _on_pressure_gc(user, p):
    gc.collect()


_GC_CALLBACK = _lib.pressure_fn(_on_pressure_gc)
_gc_registered = {}   # runtime pointer -> number of open Python Runtimes on it
_callbacks = []       # user callbacks' C-callables, kept for the module's life
_registry_lock = threading.Lock()


def _pressure_register_gc(ptr):
    with _registry_lock:
        n = _gc_registered.get(ptr, 0)
        _gc_registered[ptr] = n + 1
    if n == 0 and _lib.has("gms_on_pressure"):
        rc = _lib.gms_on_pressure(ptr, _GC_CALLBACK, None)
        if rc != 0:  # 16 callbacks already: the runtime still works without ours
            with _registry_lock:
                _gc_registered.pop(ptr, None)


def _pressure_forget(ptr):
    with _registry_lock:
        n = _gc_registered.get(ptr, 0) - 1
        if n > 0:
            _gc_registered[ptr] = n
        else:
            _gc_registered.pop(ptr, None)


PressureEvent = namedtuple("PressureEvent", "tenant bytes_wanted reason")
ViolationEvent = namedtuple("ViolationEvent", "kind tenant handle address offset size message")
BufferInfo = namedtuple("BufferInfo", "size block_size device_ptr pool_id flags level language "
                        "tenant user access holders share_id immutable read_only_view")


class Grant(namedtuple("Grant", "tenant user language mode")):
    """One entry of a share's access list. tenant None: the owner's tenant,
    "*": any tenant; user None: any user; language ANY_LANGUAGE or a
    Language; mode the most this entry allows (Access.READ by default)."""

    def __new__(cls, tenant=None, user=None, language=ANY_LANGUAGE, mode=Access.READ):
        return super().__new__(cls, tenant, user, language, mode)


# ---- runtime --------------------------------------------------------------------------

def _runtime_release(borrowed, gc_registered):
    """What frees a Runtime's C object: gms_runtime_close, unless it is
    borrowed (the torch plug-in's runtime, which the plug-in keeps)."""
    def release(ptr):
        if gc_registered:
            _pressure_forget(ptr)
        if not borrowed:
            _lib.gms_runtime_close(ptr)
    return release


class Runtime:
    """A gms runtime. Runtime() with no arguments is the process-wide shared
    runtime (reference counted: every language in the process gets the same
    one); any option makes a private runtime. Options are the fields of
    gms_runtime_options by name (backend="cuda", device=0, safety="off",
    max_held_bytes=..., audit_dir=..., broker="/run/gms/gmsd.sock"); enum
    fields take names or ints; paths take str, bytes or os.PathLike; a
    field left out keeps gms_runtime_options_init's default. broker makes
    the runtime a client of gmsd (docs/broker.md) and wins over the
    GMS_BROKER variable, which applies when broker is left out. log=fn(level,
    message) receives the library's diagnostics (private runtimes only).
    gc_on_pressure=True registers a pressure callback that runs gc.collect()."""

    def __init__(self, *, gc_on_pressure=True, log=None, **options):
        self._borrowed = False
        self._log = None
        opts = None
        if options or log is not None:
            opts = _lib.RuntimeOptions()
            check(_lib.gms_runtime_options_init_version(byref(opts),
                                                        _lib.RUNTIME_OPTIONS_VERSION))
            self._keep = []  # strings the options point to, alive until open returns
            for key, value in options.items():
                if key in ("version", "log", "log_user") or not hasattr(opts, key):
                    raise TypeError("Runtime: unknown option %r" % key)
                if value is None:
                    continue
                if key == "backend":
                    value = _enum(Backend, value)
                elif key == "safety":
                    value = _enum(Safety, value)
                elif key == "on_corruption":
                    value = _enum(OnCorruption, value)
                elif key == "audit_key":
                    key_bytes = bytes(value)
                    self._keep.append(key_bytes)
                    opts.audit_key_len = len(key_bytes)
                    value = cast(key_bytes, POINTER(_lib.c_uint8))
                elif dict(opts._fields_)[key] is c_char_p:  # audit_dir, audit_key_file, broker
                    value = _path(value, key)
                    self._keep.append(value)
                setattr(opts, key, int(value) if isinstance(value, enum.IntEnum) else value)
            if log is not None:
                self._log = _lib.log_fn(lambda user, level, msg: log(
                    int(level), (msg or b"").decode("utf-8", "replace")))
                opts.log = self._log
        ptr = c_void_p()
        check(_lib.gms_runtime_open(byref(ptr), byref(opts) if opts is not None else None))
        self._owner = _Owner(ptr.value, "runtime", _runtime_release(False, gc_on_pressure),
                             keep=self._log)
        self._private = opts is not None
        self._device = int(opts.device) if opts is not None else None
        self._dl_device = None
        if gc_on_pressure:
            _pressure_register_gc(ptr.value)
        self._finalizer = weakref.finalize(self, self._owner.close)

    @classmethod
    def _borrow(cls, ptr):
        """Wraps a runtime that someone else opened and closes (the torch
        plug-in's): close() forgets it but does not close it."""
        self = cls.__new__(cls)
        self._borrowed, self._log, self._private = True, None, True
        self._owner = _Owner(ptr, "runtime", _runtime_release(True, False))
        self._device = None
        self._dl_device = None
        self._finalizer = weakref.finalize(self, self._owner.close)
        return self

    @property
    def ptr(self):
        """The gms_runtime * as an int (for other bindings in the process).
        Nothing keeps it valid once this Runtime is closed."""
        o = self._owner
        p = o.ptr
        if not o.open or not p:
            raise InvalidHandle("gms: the runtime is closed", code=-2)
        return p

    @property
    def closed(self):
        """True from the close on (the C runtime goes once the calls still
        in flight on other threads have returned)."""
        return not self._owner.open

    @property
    def backend(self):
        """"host", "cuda" or "hip"."""
        return self._owner.call(_lib.gms_runtime_backend_name).decode()

    def context(self, tenant, user=None, level=Level.INTERNAL, language=Language.PYTHON):
        """Opens a Context: who is acting."""
        return Context(self, tenant, user, level, language)

    def close(self):
        """Closes the runtime (one reference of the shared one) and every
        Context opened on it from Python; their live Buffers are leaks.
        Calls from then on raise gms.InvalidHandle; calls already inside
        libgms on other threads finish first, and the last of them frees
        the C runtime."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        if self.closed:
            return "<gms.Runtime closed>"
        return "<gms.Runtime %s %s>" % (self.backend, "private" if self._private else "shared")

    def set_quota(self, tenant, max_bytes=None, max_allocs=None):
        """Limits a tenant's live bytes and allocations; None lifts a limit."""
        self._owner.checked(_lib.gms_tenant_set_quota, _name(tenant, "tenant"),
                            UNLIMITED if max_bytes is None else max_bytes,
                            UNLIMITED if max_allocs is None else max_allocs)

    def stats(self):
        """gms_stats as a dict."""
        s = _lib.Stats()
        self._owner.checked(_lib.gms_stats_get, byref(s))
        return {name: getattr(s, name) for name, _ in s._fields_}

    def tenant_stats(self):
        """gms_tenant_stats of every tenant, as a list of dicts."""
        out = []
        for i in range(self.stats()["tenants"]):
            t = _lib.TenantStats()
            self._owner.checked(_lib.gms_tenant_stats_get, i, byref(t))
            d = {name: getattr(t, name) for name, _ in t._fields_}
            d["tenant"] = d["tenant"].decode()
            out.append(d)
        return out

    def trim(self):
        """Returns every unused mapped granule to the backend now."""
        self._owner.checked(_lib.gms_trim)

    def sync(self):
        """Waits until the device has run the safety work queued so far and
        reports what it found (callbacks, audit, log) before returning; on a
        GPU such findings otherwise arrive within about a millisecond of the
        device running that work, on the runtime's collector thread."""
        self._owner.checked(_lib.gms_sync)

    def verify(self, raise_on_violation=True):
        """Runs the verifier; returns its report as a dict, or raises
        gms.Corruption (with the report as .report) when an invariant fails."""
        r = _lib.Report()
        e = None
        ptr = self._owner.enter()
        try:
            rc = _lib.gms_verify(ptr, byref(r))
            if rc != 0 and (raise_on_violation or rc != -8):
                e = error_for(rc)  # before leaving: see _Owner.checked
        finally:
            self._owner.leave()
        d = {name: getattr(r, name) for name, _ in r._fields_}
        d["first_violation"] = d["first_violation"].decode("utf-8", "replace")
        if e is not None:
            e.report = d
            raise e
        return d

    def audit_flush(self):
        self._owner.checked(_lib.gms_audit_flush)

    def on_pressure(self, fn):
        """Registers fn(PressureEvent), called when an allocation would fail,
        after the library's own steps (at most 16 callbacks per runtime, the
        gc.collect one included; they cannot be removed)."""
        def call(user, p):
            p = p.contents
            fn(PressureEvent((p.tenant or b"").decode(), p.bytes_wanted, p.reason))
        cfn = _lib.pressure_fn(call)
        self._owner.checked(_lib.gms_on_pressure, cfn, None)
        _callbacks.append(cfn)
        return fn

    def on_key_request(self, fn):
        """Sets the key provider of sealed regions (docs/sealed.md):
        fn(tenant) returns the tenant's 32-byte key-encryption key (bytes),
        or None to refuse (the gms call then raises gms.AccessDenied). It
        replaces any earlier provider; fn=None removes it. Python keeps the
        bytes it returns in ordinary memory: a KMS client that cares holds
        the key no longer than the call."""
        if fn is None:
            self._owner.checked(_lib.gms_on_key_request, _lib.key_fn(), None)
            return None

        def call(user, tenant, out):
            try:
                key = fn(tenant.decode())
            except Exception:
                return -1
            if key is None or len(key) != 32:
                return -1
            for i, b in enumerate(bytes(key)):
                out[i] = b
            return 0
        cfn = _lib.key_fn(call)
        self._owner.checked(_lib.gms_on_key_request, cfn, None)
        _callbacks.append(cfn)
        return fn

    def seal_key_file(self, tenant, path):
        """Reads tenant's key-encryption key from path (32 raw bytes or 64
        hex digits) into locked memory; that tenant never asks the provider."""
        self._owner.checked(_lib.gms_seal_key_file, _name(tenant, "tenant"), _path(path, "path"))

    def on_violation(self, fn):
        """Registers fn(ViolationEvent), called on every detected corruption."""
        def call(user, v):
            v = v.contents
            fn(ViolationEvent(v.kind, (v.tenant or b"").decode(), v.handle, v.address,
                              v.offset, v.size, (v.message or b"").decode("utf-8", "replace")))
        cfn = _lib.violation_fn(call)
        self._owner.checked(_lib.gms_on_violation, cfn, None)
        _callbacks.append(cfn)
        return fn


# ---- contexts ---------------------------------------------------------------------------

class Context:
    """A security context: tenant, user, level and language. Buffers live in
    the pool of its (tenant, level, language). Use it as a context manager,
    or call close(); Python closes it when it is dropped."""

    def __init__(self, runtime, tenant, user=None, level=Level.INTERNAL,
                 language=Language.PYTHON):
        desc = _lib.ContextDesc()
        _lib.gms_context_desc_init(byref(desc))
        tenant_b = _name(tenant, "tenant")
        user_b = _name(user, "user") if user is not None else tenant_b
        desc.tenant, desc.user = tenant_b, user_b
        desc.level = _enum(Level, level)
        desc.language = _enum(Language, language)
        ptr = c_void_p()
        parent = runtime._owner
        # The context is a call in flight on its runtime until it is freed.
        rt = parent.enter()
        opened = False
        try:
            check(_lib.gms_context_open(byref(ptr), rt, byref(desc)))
            opened = True
        finally:
            if not opened:
                parent.leave()
        self.runtime = runtime
        self.tenant = tenant
        self.user = user if user is not None else tenant
        self.level = Level(desc.level)
        self.language = Language(desc.language)
        self._owner = _Owner(ptr.value, "context", _lib.gms_context_close, parent=parent)
        with parent.lock:
            closing = not parent.open  # the runtime began to close meanwhile
            if not closing:
                parent.children.add(self._owner)
        self._finalizer = weakref.finalize(self, self._owner.close)
        if closing:
            self.close()
            raise InvalidHandle("gms: the runtime is closed", code=-2)

    @property
    def ptr(self):
        """The gms_context * as an int. Nothing keeps it valid once this
        Context is closed."""
        o = self._owner
        p = o.ptr
        if not o.open or not p:
            raise InvalidHandle("gms: the context is closed", code=-2)
        return p

    @property
    def closed(self):
        """True from the close on (the C context goes once the calls still
        in flight on other threads have returned)."""
        return not self._owner.open

    def close(self):
        """Closes the context. Its Buffers still alive are leaks: libgms
        reports and reclaims them, and their Python objects go dead. Calls
        from then on raise gms.InvalidHandle; calls already inside libgms on
        other threads finish first, and the last of them frees the C
        context."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<gms.Context %s/%s %s %s%s>" % (self.tenant, self.user, self.level.name,
                                              self.language.name,
                                              " closed" if self.closed else "")

    def alloc(self, size, zero=False, pages=False, stream=None):
        """A new Buffer of size bytes. zero=True fills it with zeros;
        pages=True gives it whole pages (2 MiB granules on a GPU), so that an
        immutable share of it is a read-only mapping the MMU enforces (and,
        through a gmsd serving CUDA memory, a memory of its own that a
        mutable share can hand to another tenant).
        stream (a CUDA stream handle, as an int) makes it stream-ordered like
        cudaMallocAsync: usable by work queued on that stream, and freed on
        it too unless free_stream says otherwise."""
        h = c_uint64()
        flags = (ALLOC_ZERO if zero else 0) | (ALLOC_PAGES if pages else 0)
        if stream is None:
            self._owner.checked(_lib.gms_alloc, size, flags, byref(h))
        else:
            self._owner.checked(_lib.gms_alloc_async, size, flags, c_void_p(stream), byref(h))
        buf = Buffer(self, h.value, size)
        if stream is not None:
            buf.free_stream = stream
        return buf

    def acquire(self, share_id, mode=Access.READ):
        """This context's own Buffer on a shared one (see Buffer.share)."""
        h = c_uint64()
        self._owner.checked(_lib.gms_acquire, int(share_id), _enum(Access, mode), byref(h))
        return Buffer(self, h.value)

    def revoke(self, share_id):
        """Stops new acquires of a share this context made."""
        self._owner.checked(_lib.gms_revoke, int(share_id))

    def from_dlpack(self, obj, stream=None):
        """A Buffer of this context over another framework's tensor (no copy)."""
        from .dlpack import import_tensor
        return import_tensor(self, obj, stream)


# ---- buffers --------------------------------------------------------------------------------

def _as_source(data, writable=False):
    """(address, length, keepalive) of a bytes-like object: its own memory
    when it is contiguous and writable, else a copy (refused when the caller
    needs to write into it)."""
    mv = memoryview(data)
    if writable and (mv.readonly or not mv.c_contiguous):
        raise TypeError("need a writable, contiguous buffer")
    if not mv.c_contiguous:
        mv = memoryview(mv.tobytes())
    mv = mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
    n = mv.nbytes
    if n == 0:
        return None, 0, mv
    if mv.readonly:  # ctypes cannot take the address of read-only memory
        copy = create_string_buffer(bytes(mv), n)
        return addressof(copy), n, copy
    c = (c_char * n).from_buffer(mv)
    return addressof(c), n, (c, mv)


class Buffer:
    """A gms buffer, seen from one Context. Its handle is freed when the
    object is dropped (weakref.finalize), or at once by free() or the end of
    a with block. After that every method raises gms.InvalidHandle."""

    __slots__ = ("context", "handle", "_size", "_owner", "_finalizer", "_stream", "__weakref__")

    def __init__(self, context, handle, size=None):
        self.context = context
        self.handle = handle
        self._owner = context._owner
        self._stream = [None]  # free_stream: a one-element cell the finalizer reads
        self._finalizer = weakref.finalize(self, _free_buffer, self._owner, handle, self._stream)
        try:
            self._size = size if size is not None else self.info().size
        except BaseException:
            self._finalizer.detach()  # not a handle of this context's: nothing to free
            raise

    # -- identity
    @property
    def size(self):
        return self._size

    def __len__(self):
        return self._size

    @property
    def alive(self):
        """False once freed, transferred, or its context closed."""
        return self._finalizer.alive and self._owner.open

    @property
    def free_stream(self):
        """A CUDA stream (an int; 0 is the legacy default stream) that the
        finalizer orders the free after (gms_free_async); None, the default,
        frees at once. Allocator hooks set it to the stream they hand the
        memory to."""
        return self._stream[0]

    @free_stream.setter
    def free_stream(self, stream):
        self._stream[0] = None if stream is None else int(stream)

    def _call(self, fn, *args):
        """fn(context, handle, *args) as a checked call in flight on the
        context."""
        return self._owner.checked(fn, self.handle, *args)

    def __repr__(self):
        return "<gms.Buffer %#x size=%d%s>" % (self.handle, self._size,
                                                "" if self.alive else " dead")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._finalizer.alive:
            self.free()

    # -- lifetime
    def free(self, stream=None):
        """Drops this handle now. stream: a CUDA stream (an int, 0 for the
        legacy default) whose queued work must finish before the memory is
        reused (gms_free_async). A second free raises gms.InvalidHandle with
        libgms's message."""
        ctx = self._owner.enter()  # a closed context's buffers are dead already
        try:
            self._finalizer.detach()
            if stream is not None:
                check(_lib.gms_free_async(ctx, self.handle, stream or None))
            else:
                check(_lib.gms_free(ctx, self.handle))
        finally:
            self._owner.leave()

    release = free

    def transfer(self, to, stream=None):
        """Moves exclusive ownership to Context `to`; this Buffer dies and the
        returned one is `to`'s. stream: a CUDA stream (int) whose queued work
        must finish first (gms_transfer_async)."""
        h = c_uint64()
        dst = to._owner.enter()
        try:
            if stream is not None:
                self._call(_lib.gms_transfer_async, dst, stream, byref(h))
            else:
                self._call(_lib.gms_transfer, dst, byref(h))
        finally:
            to._owner.leave()
        self._finalizer.detach()
        return Buffer(to, h.value, self._size)

    def share(self, grants=None, immutable=False):
        """Makes the buffer available to other contexts and returns the share
        id (an int) for Context.acquire. grants: Grant entries (default: any
        user and language of the owner's tenant, read only). immutable: nobody
        writes it any more, this context included."""
        if grants is None:
            grants = [Grant()]
        elif isinstance(grants, Grant):
            grants = [grants]
        arr = (_lib.ShareGrant * len(grants))()
        keep = []
        for i, g in enumerate(grants):
            g = Grant(**g) if isinstance(g, dict) else Grant(*g) if not isinstance(g, Grant) else g
            t, u = _name(g.tenant, "grant's tenant"), _name(g.user, "grant's user")
            keep += [t, u]
            lang = ANY_LANGUAGE if g.language in (None, ANY_LANGUAGE) else _enum(Language, g.language)
            arr[i] = _lib.ShareGrant(t, u, int(lang), int(_enum(Access, g.mode)))
        desc = _lib.ShareDesc()
        _lib.gms_share_desc_init(byref(desc))
        desc.grants = arr
        desc.ngrants = len(grants)
        desc.immutable = 1 if immutable else 0
        sid = c_uint64()
        self._call(_lib.gms_share, byref(desc), byref(sid))
        return sid.value

    # -- information
    def info(self):
        """gms_buf_info as a BufferInfo named tuple."""
        i = _lib.BufInfo()
        self._call(_lib.gms_buf_info_get, byref(i))
        return BufferInfo(i.size, i.block_size, i.device_ptr, i.pool_id, i.flags,
                          Level(i.level), Language(i.language), i.tenant.decode(),
                          i.user.decode(), i.access, i.holders, i.share_id,
                          bool(i.immutable), bool(i.read_only_view))

    @property
    def ptr(self):
        """The raw device address (a host address on the host backend):
        unchecked access, for kernels and frameworks. Asked of libgms each
        time: it changes when the buffer does (an immutable share's
        read-only view)."""
        p = c_void_p()
        self._call(_lib.gms_buf_ptr, byref(p))
        return p.value or 0

    # -- sealed regions (docs/sealed.md)
    def seal(self):
        """Encrypts the buffer in place (AES-256-GCM under its own key);
        until unseal() every access raises gms.AccessDenied."""
        self._call(_lib.gms_seal)

    def unseal(self):
        """Checks every chunk's tag, then decrypts in place; a changed byte
        raises gms.Corruption naming the first bad chunk, and the buffer
        stays sealed, unchanged."""
        self._call(_lib.gms_unseal)

    @property
    def sealed(self):
        out = c_int()
        self._call(_lib.gms_is_sealed, byref(out))
        return bool(out.value)

    def digest(self, offset=0, length=None):
        """The keyed digest (32 bytes) of [offset, offset+length), computed
        on the buffer's device under the tenant's digest key."""
        offset, length = self._span(offset, length)
        out = (c_uint8 * 32)()
        self._call(_lib.gms_digest, offset, length, out)
        return bytes(out)

    # -- checked access
    def _span(self, offset, n):
        if n is None:
            n = self._size - offset if 0 <= offset <= self._size else 0
        return offset, n

    def read(self, n=None, offset=0):
        """n bytes from offset (default: to the end) as bytes."""
        offset, n = self._span(offset, n)
        out = create_string_buffer(max(n, 1))
        self._call(_lib.gms_read, offset, out, n)
        return out.raw[:n]

    def readinto(self, dst, offset=0):
        """Fills a writable bytes-like object (bytearray, numpy array...)
        from offset; returns the number of bytes read."""
        addr, n, keep = _as_source(dst, writable=True)
        self._call(_lib.gms_read, offset, addr, n)
        del keep
        return n

    def write(self, data, offset=0):
        """Copies a bytes-like object into the buffer at offset."""
        addr, n, keep = _as_source(data)
        self._call(_lib.gms_write, offset, addr, n)
        del keep
        return n

    def fill(self, byte, offset=0, n=None):
        offset, n = self._span(offset, n)
        self._call(_lib.gms_fill, offset, byte, n)

    def copy_from(self, src, offset=0, src_offset=0, n=None):
        """Copies n bytes of Buffer src (same context) into this one."""
        if n is None:
            n = min(self._size - offset, src.size - src_offset)
        self._call(_lib.gms_copy, offset, src.handle, src_offset, n)

    # -- ordering between holders (docs/ordering.md)
    def access(self, mode="r", stream=None, wait=True):
        """An access window, for a with block: the work this holder queues
        on `stream` (a CUDA stream as an int; None the legacy default) inside
        the block reads ("r") or writes ("w") the buffer, and gms orders it
        after the conflicting windows of the other holders, whatever their
        language. wait=False raises gms.Busy instead of waiting on the host
        for a conflicting window still open."""
        return Window(self, mode, stream, wait)

    # -- checked atomics (docs/ordering.md)
    def atomic(self, op, offset, operand, compare=0, width=8, stream=None, fetch=True):
        """One atomic operation (an AtomicOp or its name) on the width-byte
        word at offset. Returns the word's old value when fetch is True (on
        a GPU that waits for the stream to run it); None without waiting
        when fetch is False."""
        op = _enum(AtomicOp, op)
        old = c_uint64() if fetch else None
        self._call(_lib.gms_atomic, offset, int(op), width, operand & _MASK64,
                   compare & _MASK64, _stream(stream), byref(old) if fetch else None)
        return old.value if fetch else None

    def atomic_add(self, offset, value, **kw):
        return self.atomic(AtomicOp.ADD, offset, value, **kw)

    def atomic_and(self, offset, value, **kw):
        return self.atomic(AtomicOp.AND, offset, value, **kw)

    def atomic_or(self, offset, value, **kw):
        return self.atomic(AtomicOp.OR, offset, value, **kw)

    def atomic_xor(self, offset, value, **kw):
        return self.atomic(AtomicOp.XOR, offset, value, **kw)

    def atomic_min(self, offset, value, signed=False, **kw):
        return self.atomic(AtomicOp.MIN_SIGNED if signed else AtomicOp.MIN, offset, value, **kw)

    def atomic_max(self, offset, value, signed=False, **kw):
        return self.atomic(AtomicOp.MAX_SIGNED if signed else AtomicOp.MAX, offset, value, **kw)

    def atomic_exchange(self, offset, value, **kw):
        return self.atomic(AtomicOp.EXCHANGE, offset, value, **kw)

    def atomic_cas(self, offset, expected, new, **kw):
        """Sets the word to new if it holds expected; returns the old word
        (equal to expected iff it swapped)."""
        return self.atomic(AtomicOp.CAS, offset, new, compare=expected, **kw)

    def atomic_batch(self, items, results=None, results_offset=0, stream=None):
        """Many operations in one call: items are (op, offset, operand),
        optionally with compare and width (default 0 and 8). results: a
        Buffer of this context that receives item i's old value as the
        8-byte word at results_offset + 8*i, in stream order."""
        arr = (_lib.AtomicItem * max(len(items), 1))()
        for i, item in enumerate(items):
            op, offset, operand, *rest = item
            compare = rest[0] if rest else 0
            width = rest[1] if len(rest) > 1 else 8
            arr[i] = _lib.AtomicItem(offset, operand & _MASK64, compare & _MASK64,
                                     int(_enum(AtomicOp, op)), width)
        res = results.handle if results is not None else 0
        self._call(_lib.gms_atomic_batch, arr, len(items), res, results_offset, _stream(stream))

    # -- DLPack (the array API protocol)
    def as_tensor(self, dtype="uint8", shape=None, strides=None, offset=0):
        """A typed view for DLPack consumers: dtype a name ("float32",
        "bfloat16"...), a numpy dtype or a torch dtype; shape default: as
        many elements as fit; strides in elements; offset in bytes."""
        from .dlpack import TensorView
        return TensorView(self, dtype, shape, strides, offset)

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        from .dlpack import export
        return export(self, None, stream, max_version, dl_device, copy)

    def __dlpack_device__(self):
        from .dlpack import device_of
        return device_of(self)


_MASK64 = (1 << 64) - 1


def _stream(stream):
    return c_void_p(int(stream)) if stream else None


_WINDOW_MODES = {"r": Access.READ, "read": Access.READ, "w": Access.READ_WRITE,
                 "rw": Access.READ_WRITE, "write": Access.READ_WRITE}


class Window:
    """An access window on one Buffer (Buffer.access): begin on entering a
    with block (or begin()), end on leaving it (or end())."""

    __slots__ = ("buffer", "mode", "stream", "wait", "open")

    def __init__(self, buffer, mode, stream, wait):
        if isinstance(mode, str):
            if mode not in _WINDOW_MODES:
                raise ValueError("access mode %r: use 'r' or 'w'" % (mode,))
            mode = _WINDOW_MODES[mode]
        self.buffer = buffer
        self.mode = _enum(Access, mode)
        self.stream = stream
        self.wait = wait
        self.open = False

    def begin(self):
        self.buffer._call(_lib.gms_access_begin, int(self.mode),
                          0 if self.wait else ACCESS_NOWAIT, _stream(self.stream))
        self.open = True
        return self

    def end(self):
        self.open = False
        self.buffer._call(_lib.gms_access_end, _stream(self.stream))

    def __enter__(self):
        return self.begin()

    def __exit__(self, *exc):
        if self.open:
            self.end()

    def __repr__(self):
        return "<gms.Window %s on %#x%s>" % (self.mode.name, self.buffer.handle,
                                             " open" if self.open else "")


__all__ = ["Backend", "Level", "Language", "Access", "AtomicOp", "Window", "Safety", "OnCorruption", "ANY_LANGUAGE",
           "UNLIMITED", "Grant", "Runtime", "Context", "Buffer", "BufferInfo", "PressureEvent",
           "ViolationEvent", "GmsError"]
