"""
    Gms

GPU buffers that are safe to hand between languages and tenants, over the C
API of libgms (include/gms.h); every rule stays in libgms.

```julia
using Gms
rt = Gms.Runtime()                          # the process-wide runtime
ctx = Gms.Context(rt, "acme"; user = "alice")
buf = Gms.alloc(ctx, 4096; zero = true)
Gms.write!(buf, b"hello")
String(read(buf, 5))                        # "hello"
Gms.unsafe_free!(buf)                       # now; or leave it to the GC
```

Lifetimes: a `Buffer` keeps its `Context` alive and a `Context` its
`Runtime`. Finalizers never call libgms: they push the handle onto a
lock-free list, which is emptied at the next call of this package and by a
task woken through a `Base.AsyncCondition` (a finalizer may run on any
thread, inside any allocation, where taking a lock or switching tasks
deadlocks). `unsafe_free!` and `close` release at once.

Errors: every refusal throws a subtype of `GmsError`, one per GMS_E_* code,
with gms_error_last()'s message.
"""
module Gms

using Libdl

export GmsError, Runtime, Context, Buffer, Grant, ShareId,
    alloc, unsafe_free!, write!, share, acquire, revoke, transfer, info, adopt,
    access, atomic_add!, atomic_and!, atomic_or!, atomic_xor!, atomic_min!, atomic_max!,
    atomic_xchg!, atomic_cas!

# ---- finding libgms -------------------------------------------------------------

const LIBPATH = Ref{String}("")

"""
    libgms() -> String

The path of libgms: `ENV["GMS_LIBRARY"]`, else `libgms` on the system's
library path (`LD_LIBRARY_PATH` included), else the `libdir` of
`pkg-config gms`. Found once; `@ccall` keeps the library it opened.
"""
function libgms()
    path = LIBPATH[]
    isempty(path) || return path
    LIBPATH[] = find_libgms()
end

function find_libgms()
    env = get(ENV, "GMS_LIBRARY", "")
    isempty(env) || return env
    found = Libdl.find_library(["libgms"])
    isempty(found) || return found
    libdir = try
        readchomp(pipeline(`pkg-config --variable=libdir gms`; stderr = devnull))
    catch
        ""
    end
    candidate = joinpath(libdir, "libgms." * Libdl.dlext)
    !isempty(libdir) && isfile(candidate) && return candidate
    error("Gms: libgms not found: set GMS_LIBRARY to its path, or install it where " *
          "the dynamic linker or `pkg-config gms` finds it")
end

include("libgms.jl")

# ---- errors ---------------------------------------------------------------------

"""A refused gms call. `errcode(e)` is its GMS_E_* code, `e.msg` gms_error_last()'s message."""
abstract type GmsError <: Exception end

struct InvalidArgError <: GmsError; msg::String; end      # GMS_E_INVALID_ARG
struct InvalidHandleError <: GmsError; msg::String; end   # GMS_E_INVALID_HANDLE
struct AccessDeniedError <: GmsError; msg::String; end    # GMS_E_ACCESS_DENIED
struct OutOfBoundsError <: GmsError; msg::String; end     # GMS_E_OUT_OF_BOUNDS
struct QuotaError <: GmsError; msg::String; end           # GMS_E_QUOTA
struct NoMemoryError <: GmsError; msg::String; end        # GMS_E_NO_MEMORY
struct ReadOnlyError <: GmsError; msg::String; end        # GMS_E_READ_ONLY
struct CorruptionError <: GmsError; msg::String; end      # GMS_E_CORRUPTION
struct BackendError <: GmsError; msg::String; end         # GMS_E_BACKEND
struct UnsupportedError <: GmsError; msg::String; end     # GMS_E_UNSUPPORTED
struct BusyError <: GmsError; msg::String; end            # GMS_E_BUSY
"""A code this version of the package does not know (a newer libgms)."""
struct UnknownGmsError <: GmsError
    code::Cint
    msg::String
end

const ERROR_TYPES = Dict{Cint,Type}(
    GMS_E_INVALID_ARG => InvalidArgError,
    GMS_E_INVALID_HANDLE => InvalidHandleError,
    GMS_E_ACCESS_DENIED => AccessDeniedError,
    GMS_E_OUT_OF_BOUNDS => OutOfBoundsError,
    GMS_E_QUOTA => QuotaError,
    GMS_E_NO_MEMORY => NoMemoryError,
    GMS_E_READ_ONLY => ReadOnlyError,
    GMS_E_CORRUPTION => CorruptionError,
    GMS_E_BACKEND => BackendError,
    GMS_E_UNSUPPORTED => UnsupportedError,
    GMS_E_BUSY => BusyError,
)
const ERROR_CODES = Dict{Type,Cint}(t => c for (c, t) in ERROR_TYPES)

"""    errcode(e::GmsError) -> Cint: the GMS_E_* code of the error."""
errcode(e::UnknownGmsError) = e.code
errcode(e::GmsError) = ERROR_CODES[typeof(e)]

Base.showerror(io::IO, e::GmsError) = print(io, nameof(typeof(e)), ": ", e.msg)

"""    gms_exception(code, msg): the exception of a GMS_E_* code."""
function gms_exception(code::Integer, msg::AbstractString)
    T = get(ERROR_TYPES, Cint(code), nothing)
    T === nothing ? UnknownGmsError(Cint(code), String(msg)) : T(String(msg))
end

@noinline function throw_code(rc::Cint)
    # Read the message first: any other call may replace it.
    msg = unsafe_string(gms_error_last())
    isempty(msg) && (msg = unsafe_string(gms_strerror(rc)))
    throw(gms_exception(rc, msg))
end

check(rc::Cint) = rc == GMS_OK ? nothing : throw_code(rc)

invalid_arg(msg) = throw(InvalidArgError("Gms: " * msg))
dead(msg) = throw(InvalidHandleError("Gms: " * msg))

"""    version() -> Int: the running libgms's version, major * 10000 + minor * 100 + patch."""
version() = Int(gms_version())

# ---- the release list: what finalizers leave to do ---------------------------------
#
# A finalizer runs inside whatever allocation triggered the GC, on any
# thread, where it must not block, take a lock, switch tasks or re-enter
# libgms (which may be in the middle of a call on this very thread). So it
# only pushes a node onto this Treiber stack (one CAS; no lock) and wakes
# the reaper task; the node is released by `drain()`, which every call of
# the package makes first, and by the reaper.

mutable struct Pending
    target::Any        # a Context (handle != 0: free it; 0: drop a reference) or a Runtime
    handle::UInt64
    next::Union{Pending,Nothing}
end

mutable struct PendingList
    @atomic head::Union{Pending,Nothing}
end

const PENDING = PendingList(nothing)
const REAPER = Ref{Base.AsyncCondition}()

function defer(target, handle::UInt64)
    node = Pending(target, handle, nothing)
    while true
        old = @atomic PENDING.head
        node.next = old
        (@atomicreplace PENDING.head old => node).success && break
    end
    wake_reaper()
    return nothing
end

# uv_async_send is safe from any thread and from a finalizer: it only
# writes to the event loop's wake-up descriptor.
function wake_reaper()
    isassigned(REAPER) || return nothing
    ccall(:uv_async_send, Cint, (Ptr{Cvoid},), REAPER[].handle)
    return nothing
end

"""
    drain()

Makes the releases that finalizers queued. Called by every function of the
package first, by the reaper task, and by the pressure callback after a GC.
"""
function drain()
    node = @atomicswap PENDING.head = nothing   # take the whole list at once: no ABA
    while node !== nothing
        try
            release_pending(node.target, node.handle)
        catch e
            report_drop_error(e)
        end
        node = node.next
    end
end

"""    pending_releases() -> Int: how many releases are queued now (for tests)."""
function pending_releases()
    n, node = 0, @atomic PENDING.head
    while node !== nothing
        n += 1
        node = node.next
    end
    n
end

"""
    drop_error_hook[]

Called with the error when a buffer the GC collected cannot be freed (its
handle was killed behind Julia's back); `nothing`: printed to stderr.
"""
const drop_error_hook = Ref{Any}(nothing)

function report_drop_error(e)
    hook = drop_error_hook[]
    if hook === nothing
        print(stderr, "Gms: releasing a collected object: ")
        showerror(stderr, e)
        println(stderr)
    else
        hook(e)
    end
end

# ---- Runtime ----------------------------------------------------------------------

"""
    Runtime(; gc_on_pressure = true)
    Runtime(options::RuntimeOptions; gc_on_pressure = true)

The process-wide gms runtime that every language in the process shares
(reference counted by libgms), or a private one with `options`. The C runtime
closes once this object and every `Context` opened on it are gone (or after
`close(rt)` and theirs). `gc_on_pressure`: when an allocation is short of
memory or quota, libgms calls back and Julia runs `GC.gc()`, so buffers held
only by garbage are freed before the allocation is retried.
"""
mutable struct Runtime
    @atomic ptr::Ptr{gms_runtime}
    refs::Threads.Atomic{Int}      # this object (until closed or collected) + its Contexts
    @atomic own_ref::Bool          # this object's reference not yet dropped
    gc_callback::Bool              # counted in GC_RUNTIMES
end

"""
    RuntimeOptions(; kwargs...)

gms_runtime_options; every field left at zero keeps libgms's default. See
include/gms.h for each. `broker`: gmsd's socket (docs/broker.md); it wins
over the GMS_BROKER variable, which applies when it is `nothing`.
"""
Base.@kwdef struct RuntimeOptions
    backend::Backend = BACKEND_AUTO
    device::Int = 0
    granule_bytes::UInt64 = 0
    chunk_bytes::UInt64 = 0
    retain_bytes::UInt64 = 0
    audit_dir::Union{String,Nothing} = nothing
    audit_key::Union{Vector{UInt8},Nothing} = nothing
    audit_key_file::Union{String,Nothing} = nothing
    audit_lossy::Bool = false
    audit_segment_bytes::UInt64 = 0
    audit_retention_days::UInt32 = 0
    safety::Safety = SAFETY_ON
    redzone_bytes::UInt32 = 0
    quarantine_bytes::UInt64 = 0
    quarantine_blocks::UInt64 = 0
    verify_interval_ms::UInt32 = 0
    on_corruption::CorruptionPolicy = ON_CORRUPTION_REPORT
    secret_multipass::Bool = false
    max_held_bytes::UInt64 = 0
    broker::Union{String,Nothing} = nothing
    log::Union{Function,Nothing} = nothing  # (level::LogLevel, message::String) -> any
end

no_nul(s, what) = s !== nothing && occursin('\0', s) && invalid_arg("$what contains a NUL byte")
cstr(s::Union{String,Nothing}) = s === nothing ? Cstring(C_NULL) : Base.unsafe_convert(Cstring, s)

# Calls f(Ptr{gms_runtime_options}) with o in C's form; the strings stay
# rooted for the call.
function with_c_options(f, o::RuntimeOptions, log_user::Ptr{Cvoid})
    no_nul(o.audit_dir, "audit_dir")
    no_nul(o.audit_key_file, "audit_key_file")
    no_nul(o.broker, "broker")
    0 <= o.device <= typemax(Cint) || invalid_arg("device out of range")
    key = o.audit_key === nothing ? UInt8[] : o.audit_key
    GC.@preserve o key begin
        c = gms_runtime_options(GMS_RUNTIME_OPTIONS_VERSION, o.backend, Cint(o.device),
            o.granule_bytes, o.chunk_bytes, o.retain_bytes,
            o.log === nothing ? C_NULL : log_callback(), log_user, 0,
            cstr(o.audit_dir), isempty(key) ? Ptr{UInt8}(C_NULL) : pointer(key),
            Csize_t(length(key)), cstr(o.audit_key_file), Cint(o.audit_lossy),
            o.audit_segment_bytes, o.audit_retention_days, o.safety, o.redzone_bytes,
            o.quarantine_bytes, o.quarantine_blocks, 0, o.verify_interval_ms,
            o.on_corruption, Cint(o.secret_multipass), o.max_held_bytes, cstr(o.broker))
        r = Ref(c)
        GC.@preserve r f(Base.unsafe_convert(Ptr{gms_runtime_options}, r))
    end
end

function Runtime(; gc_on_pressure::Bool = true)
    drain()
    out = Ref{Ptr{gms_runtime}}(C_NULL)
    check(gms_runtime_open(out, Ptr{gms_runtime_options}(C_NULL)))
    wrap_runtime(out[], gc_on_pressure)
end

function Runtime(options::RuntimeOptions; gc_on_pressure::Bool = true)
    open_with(options, gc_on_pressure) do out, opts
        gms_runtime_open(out, opts)
    end
end

function open_with(opener, options::RuntimeOptions, gc_on_pressure::Bool)
    drain()
    log_user = options.log === nothing ? C_NULL : rooted_handler(options.log)
    out = Ref{Ptr{gms_runtime}}(C_NULL)
    with_c_options(options, log_user) do opts
        check(opener(out, opts))
    end
    wrap_runtime(out[], gc_on_pressure)
end

const GC_RUNTIMES = Dict{Ptr{gms_runtime},Int}()   # C runtime => Runtimes with the GC callback
const GC_RUNTIMES_LOCK = ReentrantLock()            # never taken by a finalizer

function wrap_runtime(p::Ptr{gms_runtime}, gc_on_pressure::Bool)
    rt = Runtime(p, Threads.Atomic{Int}(1), true, false)
    if gc_on_pressure
        lock(GC_RUNTIMES_LOCK) do
            n = get(GC_RUNTIMES, p, 0)
            # Once per C runtime: the shared one is the same pointer for
            # every Runtime(); libgms cannot unregister a callback. With 16
            # callbacks there already, the runtime works without this one.
            if n > 0 || gms_on_pressure(p, pressure_callback(), C_NULL) == GMS_OK
                GC_RUNTIMES[p] = n + 1
                rt.gc_callback = true
            end
        end
    end
    finalizer(rt -> (@atomicswap rt.own_ref = false) && defer(rt, GMS_BUF_NULL), rt)
end

function unref(rt::Runtime)
    Threads.atomic_sub!(rt.refs, 1) == 1 || return nothing
    p = @atomicswap rt.ptr = Ptr{gms_runtime}(C_NULL)
    p == C_NULL && return nothing
    if rt.gc_callback
        lock(GC_RUNTIMES_LOCK) do
            n = get(GC_RUNTIMES, p, 0)
            n > 1 ? (GC_RUNTIMES[p] = n - 1) : delete!(GC_RUNTIMES, p)
        end
    end
    gms_runtime_close(p)
    return nothing
end

function live(rt::Runtime)
    p = @atomic rt.ptr
    (p == C_NULL || !(@atomic rt.own_ref)) && dead("the runtime is closed")
    p
end

"""
    close(rt::Runtime)

Drops this Runtime now; the C runtime closes once its Contexts are gone too.
"""
function Base.close(rt::Runtime)
    drain()
    (@atomicswap rt.own_ref = false) && unref(rt)
    return nothing
end

Base.isopen(rt::Runtime) = (@atomic rt.own_ref) && (@atomic rt.ptr) != C_NULL

"""    backend_name(rt) -> String: "host", "cuda" or "hip"."""
backend_name(rt::Runtime) = unsafe_string(gms_runtime_backend_name(live(rt)))

"""    raw(rt) -> Ptr: the gms_runtime pointer, for another binding in the process."""
raw(rt::Runtime) = live(rt)

const UNLIMITED = GMS_UNLIMITED

"""
    set_quota!(rt, tenant; max_bytes = Gms.UNLIMITED, max_allocs = Gms.UNLIMITED)

Limits the tenant's live bytes and allocations (`UNLIMITED` lifts a limit).
"""
function set_quota!(rt::Runtime, tenant::AbstractString; max_bytes::Integer = UNLIMITED,
                    max_allocs::Integer = UNLIMITED)
    drain()
    no_nul(tenant, "tenant")
    (max_bytes < 0 || max_allocs < 0) && invalid_arg("a negative quota")
    check(gms_tenant_set_quota(live(rt), String(tenant), UInt64(max_bytes), UInt64(max_allocs)))
end

"""    stats(rt) -> gms_stats: the runtime's counters (see include/gms.h)."""
function stats(rt::Runtime)
    drain()
    out = Ref{gms_stats}()
    check(gms_stats_get(live(rt), out))
    out[]
end

c_string(chars::NTuple{N,Cchar}) where {N} =
    String(UInt8[reinterpret(UInt8, c) for c in Iterators.takewhile(!iszero, chars)])

"""    tenant_stats(rt) -> Vector of (tenant::String, stats::gms_tenant_stats), in order of appearance."""
function tenant_stats(rt::Runtime)
    n = stats(rt).tenants
    map(0:Int(n)-1) do i
        out = Ref{gms_tenant_stats}()
        check(gms_tenant_stats_get(live(rt), UInt64(i), out))
        (tenant = c_string(out[].tenant), stats = out[])
    end
end

"""    trim!(rt): returns every unused mapped granule to the backend now."""
trim!(rt::Runtime) = (drain(); check(gms_trim(live(rt))))

"""    sync!(rt): waits for the queued safety work and reports what it found."""
sync!(rt::Runtime) = (drain(); check(gms_sync(live(rt))))

"""    audit_flush(rt): writes and seals the audit records so far (UnsupportedError: no trail)."""
audit_flush(rt::Runtime) = (drain(); check(gms_audit_flush(live(rt))))

"""
    verify(rt; throw_on_violation = true) -> NamedTuple

Walks all state and checks the invariants (gms_verify): a violation throws
`CorruptionError`, or is only reported in the result.
"""
function verify(rt::Runtime; throw_on_violation::Bool = true)
    drain()
    out = Ref{gms_report}()
    rc = gms_verify(live(rt), out)
    rc != GMS_OK && (throw_on_violation || rc != GMS_E_CORRUPTION) && throw_code(rc)
    r = out[]
    (pools = r.pools, chunks = r.chunks, live_blocks = r.live_blocks, free_blocks = r.free_blocks,
     live_handles = r.live_handles, violations = r.violations,
     first_violation = c_string(r.first_violation))
end

# ---- callbacks from libgms ----------------------------------------------------------
#
# libgms calls back on the thread that found the event: the allocating
# thread for pressure (which may be another language's), a gms background
# thread for violations and logs. Julia (>= 1.9) adopts a foreign thread
# that enters a @cfunction. The violation and log trampolines only copy the
# event and queue it (lock-free, as the release list) for a Julia task to
# hand to the handler, so user code never runs on a gms thread; nothing
# throws into C.

function collect_on_pressure(::Ptr{Cvoid}, ::Ptr{gms_pressure})
    try
        # The finalizers of buffers that only garbage holds queue their
        # frees; drain() makes them now, so libgms's retry finds the memory.
        # (A thread holding a ReentrantLock runs no finalizers: they run
        # once it lets go, too late for this allocation.)
        GC.gc(true)
        drain()
    catch
    end
    return nothing
end

pressure_callback()::gms_pressure_fn =
    @cfunction(collect_on_pressure, Cvoid, (Ptr{Cvoid}, Ptr{gms_pressure}))

"""One event for a handler: a `Violation`, or a log line (level, message)."""
mutable struct Event
    handler::Any
    payload::Any
    next::Union{Event,Nothing}
end
mutable struct EventList
    @atomic head::Union{Event,Nothing}
end
const EVENTS = EventList(nothing)

mutable struct EventHandler   # mutable: libgms holds a pointer to it
    f::Function
end

# libgms cannot unregister a callback, and the shared runtime outlives any
# one Runtime object: a handler it may call stays rooted for the process.
const ROOTED = EventHandler[]
const ROOTED_LOCK = ReentrantLock()

function rooted_handler(f::Function)
    box = EventHandler(f)
    lock(() -> push!(ROOTED, box), ROOTED_LOCK)
    pointer_from_objref(box)
end

function post_event(user::Ptr{Cvoid}, payload)
    node = Event(unsafe_pointer_to_objref(user)::EventHandler, payload, nothing)
    while true
        old = @atomic EVENTS.head
        node.next = old
        (@atomicreplace EVENTS.head old => node).success && break
    end
    wake_reaper()
end

function deliver_events()
    node = @atomicswap EVENTS.head = nothing
    events = Event[]
    while node !== nothing
        push!(events, node)
        node = node.next
    end
    for ev in Iterators.reverse(events)    # in the order they came
        try
            ev.payload isa Tuple ? ev.handler.f(ev.payload...) : ev.handler.f(ev.payload)
        catch e
            print(stderr, "Gms: a handler threw: ")
            showerror(stderr, e)
            println(stderr)
        end
    end
end

"""What libgms found: see gms_violation in include/gms.h."""
struct Violation
    kind::ViolationKind
    tenant::String
    handle::UInt64
    address::UInt64
    offset::Int64
    size::UInt64
    message::String
end

function violation_trampoline(user::Ptr{Cvoid}, v::Ptr{gms_violation})
    try
        c = unsafe_load(v)   # valid during the call only: copy it
        post_event(user, Violation(c.kind, unsafe_string(c.tenant), c.handle, c.address,
            c.offset, c.size, unsafe_string(c.message)))
    catch
    end
    return nothing
end

violation_callback()::gms_violation_fn =
    @cfunction(violation_trampoline, Cvoid, (Ptr{Cvoid}, Ptr{gms_violation}))

function log_trampoline(user::Ptr{Cvoid}, level::LogLevel, msg::Cstring)
    try
        post_event(user, (level, unsafe_string(msg)))
    catch
    end
    return nothing
end

log_callback()::gms_log_fn = @cfunction(log_trampoline, Cvoid, (Ptr{Cvoid}, LogLevel, Cstring))

"""
    on_violation(handler, rt)

Calls `handler(v::Violation)` for every corruption libgms detects, from a
Julia task soon after (at most 16 callbacks per runtime; they stay for the
runtime's life). `Gms.deliver_events()` delivers what is queued now.
"""
function on_violation(handler::Function, rt::Runtime)
    drain()
    check(gms_on_violation(live(rt), violation_callback(), rooted_handler(handler)))
end

# ---- Context ------------------------------------------------------------------------

"""
    Context(rt, tenant; user = tenant, level = LEVEL_INTERNAL, language = LANG_JULIA)

Who is acting. Buffers live in the pool of its (tenant, level, language).
The C context closes when this object and its Buffers are gone, or at once
with `close(ctx)`, which reports and reclaims the buffers still alive
(libgms's leak report) and makes them dead.
"""
mutable struct Context
    @atomic ptr::Ptr{gms_context}
    refs::Threads.Atomic{Int}   # this object + its live Buffers
    @atomic own_ref::Bool
    runtime::Runtime
    # Held by the frees drain() makes and by close: drain may run on
    # another thread (the reaper, a pressure callback) than a close. Not a
    # SpinLock: a close may call back into Julia (the log), which allocates.
    closing::ReentrantLock
end

function Context(rt::Runtime, tenant::AbstractString; user::AbstractString = tenant,
                 level::Level = LEVEL_INTERNAL, language::Language = LANG_JULIA)
    drain()
    no_nul(tenant, "tenant")
    no_nul(user, "user")
    t, u = String(tenant), String(user)
    out = Ref{Ptr{gms_context}}(C_NULL)
    GC.@preserve t u begin
        desc = gms_context_desc(GMS_CONTEXT_DESC_VERSION, cstr(t), cstr(u), level, language)
        check(gms_context_open(out, live(rt), desc))
    end
    Threads.atomic_add!(rt.refs, 1)
    ctx = Context(out[], Threads.Atomic{Int}(1), true, rt, ReentrantLock())
    finalizer(c -> (@atomicswap c.own_ref = false) && defer(c, GMS_BUF_NULL), ctx)
end

function unref(ctx::Context)
    Threads.atomic_sub!(ctx.refs, 1) == 1 || return nothing
    p = @atomicswap ctx.ptr = Ptr{gms_context}(C_NULL)
    p == C_NULL || gms_context_close(p)
    unref(ctx.runtime)
end

function live(ctx::Context)
    p = @atomic ctx.ptr
    p == C_NULL && dead("the context is closed")
    p
end

"""
    close(ctx::Context)

Closes the C context now. Its Buffers still alive are leaks: libgms reports
them (log and stats) and reclaims them, and they go dead.
"""
function Base.close(ctx::Context)
    drain()
    lock(ctx.closing) do
        p = @atomicswap ctx.ptr = Ptr{gms_context}(C_NULL)
        p == C_NULL || gms_context_close(p)
    end
    (@atomicswap ctx.own_ref = false) && unref(ctx)
    return nothing
end

Base.isopen(ctx::Context) = (@atomic ctx.ptr) != C_NULL

"""    raw(ctx) -> Ptr: the gms_context pointer, for another binding in the process."""
raw(ctx::Context) = live(ctx)

function release_pending(target::Context, handle::UInt64)
    if handle != GMS_BUF_NULL
        rc = lock(target.closing) do
            p = @atomic target.ptr
            p == C_NULL ? GMS_OK : gms_free(p, handle)   # a closed context reclaimed it
        end
        unref(target)
        # CORRUPTION: the free found a redzone overwritten; freed all the same
        rc == GMS_OK || throw_code(rc)
    else
        unref(target)
    end
end
release_pending(target::Runtime, ::UInt64) = unref(target)

# ---- Buffer ---------------------------------------------------------------------------

"""
    Buffer

A handle of a context on a gms buffer: from `alloc`, `acquire` or
`transfer`. Freed by `unsafe_free!`, or queued for freeing by its finalizer
when the GC collects it. Offsets are 0-based byte offsets, as in C.
"""
mutable struct Buffer
    ctx::Context
    @atomic handle::UInt64
    size::Int
    writable::Bool     # false for a read acquire
end

function make_buffer(ctx::Context, h::UInt64, size::Integer, writable::Bool)
    Threads.atomic_add!(ctx.refs, 1)
    b = Buffer(ctx, h, size, writable)
    finalizer(b) do b
        h = @atomicswap b.handle = GMS_BUF_NULL
        h == GMS_BUF_NULL || defer(b.ctx, h)   # never gms_free here: see the release list
    end
end

function handle_of(b::Buffer)
    h = @atomic b.handle
    h == GMS_BUF_NULL && dead("the buffer was freed or moved")
    h
end

Base.length(b::Buffer) = b.size
Base.sizeof(b::Buffer) = b.size
"""    handle(b) -> UInt64: the raw gms_buf (0 once freed or moved)."""
handle(b::Buffer) = @atomic b.handle
"""    isfreed(b): true once freed, transferred or disowned."""
isfreed(b::Buffer) = (@atomic b.handle) == GMS_BUF_NULL
iswritable(b::Buffer) = b.writable

"""A CUDA stream (CUstream), opaque here; `Stream()` is the default stream."""
struct Stream
    ptr::Ptr{Cvoid}
end
Stream() = Stream(C_NULL)

alloc_flags(zero::Bool, pages::Bool) =
    (zero ? GMS_ALLOC_ZERO : UInt32(0)) | (pages ? GMS_ALLOC_PAGES : UInt32(0))

function checked_size(n::Integer, what = "size")
    n < 0 && invalid_arg("$what is negative")
    Csize_t(n)
end
function checked_offset(n::Integer)
    n < 0 && invalid_arg("offset is negative")
    UInt64(n)
end

"""
    alloc(ctx, size; zero = false, pages = false, stream = nothing) -> Buffer

Allocates `size` bytes (zero: filled with zeros; pages: on whole pages, so
an immutable share is an MMU-enforced read-only mapping; stream: stream-ordered,
gms_alloc_async). On memory or quota pressure the GC runs first (see `Runtime`).
"""
function alloc(ctx::Context, size::Integer; zero::Bool = false, pages::Bool = false,
               stream::Union{Stream,Nothing} = nothing)
    drain()
    n = checked_size(size)
    out = Ref{UInt64}(GMS_BUF_NULL)
    if stream === nothing
        check(gms_alloc(live(ctx), n, alloc_flags(zero, pages), out))
    else
        check(gms_alloc_async(live(ctx), n, alloc_flags(zero, pages), stream.ptr, out))
    end
    make_buffer(ctx, out[], size, true)
end

"""
    unsafe_free!(b::Buffer; stream = nothing)

Drops this handle now (gms_free; with a stream, gms_free_async). A buffer
shared with other holders lives until the last of them releases it. Freeing
twice is a no-op. `CorruptionError`: its redzones were overwritten through a
raw pointer (it is freed all the same).
"""
function unsafe_free!(b::Buffer; stream::Union{Stream,Nothing} = nothing)
    drain()
    h = @atomicswap b.handle = GMS_BUF_NULL
    h == GMS_BUF_NULL && return nothing
    p = @atomic b.ctx.ptr
    rc = if p == C_NULL
        GMS_OK               # the context's close reclaimed it
    elseif stream === nothing
        gms_free(p, h)
    else
        gms_free_async(p, h, stream.ptr)
    end
    unref(b.ctx)
    check(rc)
end

"""
    disown!(b) -> UInt64

Gives up the handle without freeing it, for another binding in the process
to own (it must free it in the same context).
"""
function disown!(b::Buffer)
    h = @atomicswap b.handle = GMS_BUF_NULL
    h == GMS_BUF_NULL && dead("the buffer was freed or moved")
    unref(b.ctx)
    h
end

"""What libgms knows of one handle (gms_buf_info)."""
struct BufInfo
    size::UInt64
    block_size::UInt64
    device_ptr::UInt64
    pool_id::UInt64
    flags::UInt32
    level::Level
    language::Language
    tenant::String
    user::String
    access::Access
    holders::UInt32
    share_id::UInt64
    immutable::Bool
    read_only_view::Bool
end

function info(b::Buffer)
    drain()
    out = Ref{gms_buf_info}()
    check(gms_buf_info_get(live(b.ctx), handle_of(b), out))
    i = out[]
    BufInfo(i.size, i.block_size, i.device_ptr, i.pool_id, i.flags, i.level, i.language,
        c_string(i.tenant), c_string(i.user), Access(i.access), i.holders, i.share_id,
        i.immutable != 0, i.read_only_view != 0)
end

"""
    pointer(b::Buffer) -> Ptr{UInt8}

The raw device pointer (host memory on the host backend): unchecked access,
valid while the buffer is. A reader of another tenant gets `AccessDeniedError`.
"""
function Base.pointer(b::Buffer)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check(gms_buf_ptr(live(b.ctx), handle_of(b), out))
    Ptr{UInt8}(out[])
end

"""
    read!(b, dst::Vector{UInt8}; offset = 0) -> dst

Bounds-checked read of `length(dst)` bytes at `offset` (`OutOfBoundsError`,
dst untouched, when not wholly inside).
"""
function Base.read!(b::Buffer, dst::Vector{UInt8}; offset::Integer = 0)
    off = checked_offset(offset)
    GC.@preserve dst check(gms_read(live(b.ctx), handle_of(b), off, pointer(dst),
                                    Csize_t(length(dst))))
    dst
end

"""    read(b, n; offset = 0) -> Vector{UInt8}: `n` bytes at `offset`, bounds-checked."""
Base.read(b::Buffer, n::Integer; offset::Integer = 0) =
    read!(b, Vector{UInt8}(undef, checked_size(n, "length")); offset)

"""
    write!(b, src; offset = 0) -> b

Bounds-checked write of the bytes of `src` (a byte vector or a string) at
`offset` (`ReadOnlyError` on a read handle or an immutable share).
"""
function write!(b::Buffer, src::Union{AbstractVector{UInt8},AbstractString}; offset::Integer = 0)
    off = checked_offset(offset)
    bytes = src isa AbstractString ? Vector{UInt8}(codeunits(String(src))) : Vector{UInt8}(src)
    GC.@preserve bytes check(gms_write(live(b.ctx), handle_of(b), off, pointer(bytes),
                                       Csize_t(length(bytes))))
    b
end

"""    fill!(b::Buffer, byte; offset = 0, len = length(b) - offset) -> b"""
function Base.fill!(b::Buffer, byte::Integer; offset::Integer = 0, len::Integer = length(b) - offset)
    0 <= byte <= 255 || invalid_arg("fill byte out of range")
    check(gms_fill(live(b.ctx), handle_of(b), checked_offset(offset), Cint(byte),
                   checked_size(len, "length")))
    b
end

"""
    copybytes!(dst, src; dst_offset = 0, src_offset = 0, len) -> dst

Copies `len` bytes between two buffers of the same context (overlap allowed),
both ranges bounds-checked.
"""
function copybytes!(dst::Buffer, src::Buffer; dst_offset::Integer = 0, src_offset::Integer = 0,
                    len::Integer)
    dst.ctx === src.ctx || invalid_arg("copy between buffers of different contexts")
    check(gms_copy(live(dst.ctx), handle_of(dst), checked_offset(dst_offset), handle_of(src),
                   checked_offset(src_offset), checked_size(len, "length")))
    dst
end

# ---- sharing (docs/sharing.md) --------------------------------------------------------

"""Names a share, for acquire and revoke."""
struct ShareId
    id::UInt64
end

"""
    Grant(; tenant = nothing, user = nothing, language = nothing, mode = ACCESS_READ)

One entry of a share's access list. tenant `nothing`: the owner's tenant,
`"*"`: any tenant; user `nothing`: any user; language `nothing`: any.
"""
Base.@kwdef struct Grant
    tenant::Union{String,Nothing} = nothing
    user::Union{String,Nothing} = nothing
    language::Union{Language,Nothing} = nothing
    mode::Access = ACCESS_READ
end

"""
    share(b, grants; immutable = false) -> ShareId

Makes the buffer available to the contexts the grants let in (1 to 16
entries). immutable: nobody writes it any more, its owner included.
"""
function share(b::Buffer, grants::AbstractVector{Grant}; immutable::Bool = false)
    drain()
    for g in grants
        no_nul(g.tenant, "a grant's tenant")
        no_nul(g.user, "a grant's user")
    end
    out = Ref{UInt64}(0)
    GC.@preserve grants begin
        cgrants = [gms_share_grant(cstr(g.tenant), cstr(g.user),
                       g.language === nothing ? GMS_ANY_LANGUAGE : Cint(g.language), g.mode)
                   for g in grants]
        GC.@preserve cgrants begin
            desc = gms_share_desc(GMS_SHARE_DESC_VERSION,
                isempty(cgrants) ? Ptr{gms_share_grant}(C_NULL) : pointer(cgrants),
                Csize_t(length(cgrants)), Cint(immutable))
            check(gms_share(live(b.ctx), handle_of(b), desc, out))
        end
    end
    ShareId(out[])
end
share(b::Buffer, grant::Grant; immutable::Bool = false) = share(b, [grant]; immutable)

"""
    acquire(ctx, id::ShareId; mode = ACCESS_READ) -> Buffer

A handle of this context's own on a shared buffer. `ACCESS_READ_WRITE` on a
mutable share: one writer at a time (`BusyError` while another holder can
write; `ReadOnlyError` if immutable).
"""
function acquire(ctx::Context, id::ShareId; mode::Access = ACCESS_READ)
    drain()
    p = live(ctx)
    out = Ref{UInt64}(GMS_BUF_NULL)
    check(gms_acquire(p, id.id, mode, out))
    h = out[]
    binfo = Ref{gms_buf_info}()
    rc = gms_buf_info_get(p, h, binfo)
    if rc != GMS_OK
        gms_release(p, h)   # give the handle back; the info error is the one to report
        throw_code(rc)
    end
    make_buffer(ctx, h, binfo[].size, mode == ACCESS_READ_WRITE)
end

"""    revoke(ctx, id): stops new acquires; holders keep their handles."""
revoke(ctx::Context, id::ShareId) = (drain(); check(gms_revoke(live(ctx), id.id)))

"""
    transfer(b, to::Context) -> Buffer

Moves exclusive ownership to `to`: `b` is dead afterwards and the result is
to's handle (copied into to's pool across tenants or up a level).
"""
function transfer(b::Buffer, to::Context)
    drain()
    out = Ref{UInt64}(GMS_BUF_NULL)
    check(gms_transfer(live(b.ctx), handle_of(b), live(to), out))
    # libgms killed b's handle: drop it without a free
    (@atomicswap b.handle = GMS_BUF_NULL) == GMS_BUF_NULL || unref(b.ctx)
    make_buffer(to, out[], b.size, true)
end

# ---- DLPack (gms/dlpack.h): Julia Arrays over gms buffers, and back ----------------

const DL_TYPE_CODES = Dict{DataType,DLDataTypeCode}(
    Int8 => kDLInt, Int16 => kDLInt, Int32 => kDLInt, Int64 => kDLInt,
    UInt8 => kDLUInt, UInt16 => kDLUInt, UInt32 => kDLUInt, UInt64 => kDLUInt,
    Float16 => kDLFloat, Float32 => kDLFloat, Float64 => kDLFloat,
    ComplexF32 => kDLComplex, ComplexF64 => kDLComplex, Bool => kDLBool,
)

function dl_dtype(T::Type)
    code = get(DL_TYPE_CODES, T, nothing)
    code === nothing && invalid_arg("no DLPack type for $T")
    DLDataType(UInt8(Integer(code)), UInt8(8 * sizeof(T)), UInt16(1))
end

# A tensor gms exported for a Julia Array: its deleter gives the tensor's
# handle back, from the release list once the Array is collected.
mutable struct Exported
    tensor::Ptr{DLManagedTensorVersioned}
end

call_deleter(t::Ptr{DLManagedTensorVersioned}) =
    ccall(unsafe_load(t).deleter, Cvoid, (Ptr{DLManagedTensorVersioned},), t)
release_pending(e::Exported, ::UInt64) = call_deleter(e.tensor)

"""
    array(b::Buffer, T, dims; offset = 0) -> Array{T}

The buffer's bytes from `offset` as a Julia `Array{T}` of size `dims`,
without a copy, through a DLPack tensor of gms (gms_dlpack_export; shape
reversed, as Julia is column-major). The tensor holds a handle of its own:
the Array stays valid after `unsafe_free!(b)` until the GC collects it.
Host memory only (`UnsupportedError` on a GPU); `ReadOnlyError` for a
read-only handle or an immutable share, as a Julia Array is writable;
`OutOfBoundsError` when the elements do not lie inside the buffer.
"""
function array(b::Buffer, ::Type{T}, dims::Dims{N}; offset::Integer = 0) where {T,N}
    drain()
    N <= GMS_DLPACK_MAX_DIMS || invalid_arg("more than $GMS_DLPACK_MAX_DIMS dimensions")
    shape = Int64[reverse(dims)...]
    out = Ref{Ptr{DLManagedTensorVersioned}}(C_NULL)
    GC.@preserve shape begin
        desc = gms_dlpack_desc(GMS_DLPACK_DESC_VERSION, dl_dtype(T), Int32(N), pointer(shape),
            Ptr{Int64}(C_NULL), checked_offset(offset))
        check(gms_dlpack_export(live(b.ctx), handle_of(b), desc, out))
    end
    t = out[]
    m = unsafe_load(t)
    if m.flags & DLPACK_FLAG_BITMASK_READ_ONLY != 0 || m.dl_tensor.device.device_type != kDLCPU
        call_deleter(t)
        m.dl_tensor.device.device_type != kDLCPU &&
            throw(UnsupportedError("Gms: only host memory can be a Julia Array"))
        throw(ReadOnlyError("Gms: a read-only buffer cannot be a (writable) Julia Array"))
    end
    a = unsafe_wrap(Array, Ptr{T}(m.dl_tensor.data + m.dl_tensor.byte_offset), dims; own = false)
    exported = Exported(t)
    finalizer(_ -> defer(exported, GMS_BUF_NULL), a)
end
array(b::Buffer, ::Type{T}, dims::Integer...; offset::Integer = 0) where {T} =
    array(b, T, map(Int, dims); offset)

# A Julia Array lent to gms (adopt): rooted until gms calls the deleter.
mutable struct Adopted
    array::Array
    tensor::Ptr{DLManagedTensorVersioned}
    shape::Ptr{Int64}
end

const ADOPTED = Set{Adopted}()
const ADOPTED_LOCK = ReentrantLock()

# libgms calls the deleter when the buffer's last handle goes, from
# whatever thread frees it: queue the unrooting, as a finalizer does.
function release_adopted(t::Ptr{DLManagedTensorVersioned})
    try
        defer(unsafe_pointer_to_objref(unsafe_load(t).manager_ctx)::Adopted, GMS_BUF_NULL)
    catch
    end
    return nothing
end

dlpack_deleter()::DLManagedTensorVersionedDeleter =
    @cfunction(release_adopted, Cvoid, (Ptr{DLManagedTensorVersioned},))

function release_pending(box::Adopted, ::UInt64)
    lock(() -> delete!(ADOPTED, box), ADOPTED_LOCK)
    Libc.free(box.shape)
    Libc.free(box.tensor)
end

"""    adopted_count() -> Int: Arrays lent to gms by `adopt` and not yet given back."""
adopted_count() = lock(() -> length(ADOPTED), ADOPTED_LOCK)

"""
    adopt(ctx, a::Array) -> Buffer

Lends the memory of `a` to gms as a buffer of `ctx` (gms_dlpack_import),
for other languages to use through gms's handles and shares, bounds-checked
like any buffer. `a` is kept alive until the buffer's last handle is freed;
do not resize it meanwhile. Host backend only (`UnsupportedError` otherwise).
"""
function adopt(ctx::Context, a::Array{T}) where {T}
    drain()
    dtype = dl_dtype(T)
    p = live(ctx)
    dims = reverse(size(a))
    shape = Ptr{Int64}(Libc.malloc(sizeof(Int64) * max(length(dims), 1)))
    tensor = Ptr{DLManagedTensorVersioned}(Libc.malloc(sizeof(DLManagedTensorVersioned)))
    (shape == C_NULL || tensor == C_NULL) && (Libc.free(shape); Libc.free(tensor); throw(OutOfMemoryError()))
    for (i, d) in enumerate(dims)
        unsafe_store!(shape, d, i)
    end
    box = Adopted(a, tensor, shape)
    lock(() -> push!(ADOPTED, box), ADOPTED_LOCK)
    unsafe_store!(tensor, DLManagedTensorVersioned(DLPackVersion(1, 1), pointer_from_objref(box),
        dlpack_deleter(), 0, DLTensor(pointer(a), DLDevice(kDLCPU, 0), Int32(ndims(a)), dtype,
        shape, Ptr{Int64}(C_NULL), 0)))
    out = Ref{UInt64}(GMS_BUF_NULL)
    rc = gms_dlpack_import(p, tensor, out)
    if rc != GMS_OK
        err = try
            throw_code(rc)
        catch e
            e
        end
        release_pending(box, GMS_BUF_NULL)   # refused: the tensor is still ours
        throw(err)
    end
    make_buffer(ctx, out[], sizeof(a), true)
end

# ---- testing (gms/testing.h: not a stable API) ------------------------------------

"""
    testing_runtime(options = RuntimeOptions(); fail_nth_call = 0, gc_on_pressure = true)

A private runtime with gms/testing.h's knobs: the `fail_nth_call`-th fallible
internal operation fails (0: none). For tests of failure paths only.
"""
function testing_runtime(options::RuntimeOptions = RuntimeOptions(); fail_nth_call::Integer = 0,
                         gc_on_pressure::Bool = true)
    testing = Ref(gms_testing_options(UInt64(fail_nth_call)))
    open_with(options, gc_on_pressure) do out, opts
        gms_testing_runtime_open(out, opts, testing)
    end
end

# ---- the reaper ---------------------------------------------------------------------------

function __init__()
    # Woken by finalizers and callbacks (uv_async_send); runs on a Julia task.
    REAPER[] = Base.AsyncCondition() do _
        drain()
        deliver_events()
    end
end


# ---- access windows and checked atomics (gms/access.h, docs/ordering.md) -----------

"""
    access_begin(b, mode = ACCESS_READ; stream = Stream(), wait = true)

Opens an access window on `b`: the work this holder queues on `stream`
until `access_end` reads (`ACCESS_READ`) or writes (`ACCESS_READ_WRITE`)
the buffer, and gms orders it after the conflicting windows of the other
holders, whatever their language. Readers run together, a writer alone,
first come first served: a conflicting window still open makes it wait on
the host, or with `wait = false` throw `BusyError`. `ReadOnlyError`: a
write window on a handle that may not write; `InvalidArgError`: the handle
already has a window. Prefer the do-block form, `access`.
"""
function access_begin(b::Buffer, mode::Access = ACCESS_READ; stream::Stream = Stream(),
                      wait::Bool = true)
    check(gms_access_begin(live(b.ctx), handle_of(b), mode,
                           wait ? UInt32(0) : GMS_ACCESS_NOWAIT, stream.ptr))
end

"""    access_end(b; stream = Stream()): ends `b`'s window (`InvalidArgError` when none is open)."""
access_end(b::Buffer; stream::Stream = Stream()) =
    check(gms_access_end(live(b.ctx), handle_of(b), stream.ptr))

"""
    access(f, b, mode = ACCESS_READ; stream = Stream(), wait = true)

Runs `f()` inside an access window of `mode` on `b` and returns its value;
the window ends however `f` leaves:

    Gms.access(buf, Gms.ACCESS_READ_WRITE) do
        Gms.write!(buf, "round 1")
    end
"""
function access(f, b::Buffer, mode::Access = ACCESS_READ; stream::Stream = Stream(),
                wait::Bool = true)
    access_begin(b, mode; stream, wait)
    try
        f()
    finally
        access_end(b; stream)
    end
end

"""The words the atomics work on: naturally aligned, 4 or 8 bytes."""
const AtomicWord = Union{Int32,UInt32,Int64,UInt64}

"""
    atomic!(b, op::AtomicOp, offset, operand::T; compare::T = zero(T), stream = Stream()) -> T

One checked atomic (gms_atomic) on the `T` word at `offset` (`T` one of
`Int32`, `UInt32`, `Int64`, `UInt64`); returns the word's old value once the
stream ran it. `ATOMIC_MIN` and `ATOMIC_MAX` compare as `T` does (signed
for `Int32` and `Int64`). `InvalidArgError`: `offset` not a multiple of
`sizeof(T)`; `OutOfBoundsError`: not wholly inside; `ReadOnlyError`: a
holder that may not write (the writer and `ACCESS_ATOMIC` holders may).
"""
function atomic!(b::Buffer, op::AtomicOp, offset::Integer, operand::T;
                 compare::T = zero(T), stream::Stream = Stream()) where {T<:AtomicWord}
    if T <: Signed
        op == ATOMIC_MIN && (op = ATOMIC_MIN_SIGNED)
        op == ATOMIC_MAX && (op = ATOMIC_MAX_SIGNED)
    end
    old = Ref{UInt64}(0)
    check(gms_atomic(live(b.ctx), handle_of(b), checked_offset(offset), op, UInt32(sizeof(T)),
                     word_bits(operand), word_bits(compare), stream.ptr, old))
    old[] % T   # the low sizeof(T) bytes, as T
end

# The value as the 64 bits gms takes (it reads the low sizeof(T) bytes).
word_bits(v::AtomicWord) = UInt64(reinterpret(unsigned(typeof(v)), v))

"""    atomic_add!(b, offset, value::T) -> T: adds (wrapping); the old word."""
atomic_add!(b::Buffer, offset::Integer, value::AtomicWord) = atomic!(b, ATOMIC_ADD, offset, value)
"""    atomic_and!(b, offset, value::T) -> T: bitwise and; the old word."""
atomic_and!(b::Buffer, offset::Integer, value::AtomicWord) = atomic!(b, ATOMIC_AND, offset, value)
"""    atomic_or!(b, offset, value::T) -> T: bitwise or; the old word."""
atomic_or!(b::Buffer, offset::Integer, value::AtomicWord) = atomic!(b, ATOMIC_OR, offset, value)
"""    atomic_xor!(b, offset, value::T) -> T: bitwise xor; the old word."""
atomic_xor!(b::Buffer, offset::Integer, value::AtomicWord) = atomic!(b, ATOMIC_XOR, offset, value)
"""    atomic_min!(b, offset, value::T) -> T: the smaller, compared as T; the old word."""
atomic_min!(b::Buffer, offset::Integer, value::AtomicWord) = atomic!(b, ATOMIC_MIN, offset, value)
"""    atomic_max!(b, offset, value::T) -> T: the larger, compared as T; the old word."""
atomic_max!(b::Buffer, offset::Integer, value::AtomicWord) = atomic!(b, ATOMIC_MAX, offset, value)
"""    atomic_xchg!(b, offset, value::T) -> T: stores value; the old word."""
atomic_xchg!(b::Buffer, offset::Integer, value::AtomicWord) =
    atomic!(b, ATOMIC_EXCHANGE, offset, value)

"""
    atomic_cas!(b, offset, expected::T, new::T) -> T

Stores `new` if the word holds `expected`; returns the old word (equal to
`expected` iff it swapped), as `Threads.atomic_cas!`.
"""
atomic_cas!(b::Buffer, offset::Integer, expected::T, new::T) where {T<:AtomicWord} =
    atomic!(b, ATOMIC_CAS, offset, new; compare = expected)

"""
    atomic_batch!(b, items; results = nothing, results_offset = 0, stream = Stream())

Many operations in one call, all checked before any runs: `items` are
`(op, offset, operand::T)` or `(op, offset, operand::T, compare::T)`.
`results`: a Buffer of the same context that receives item i's old value
as the 8-byte word at `results_offset + 8(i-1)`, in stream order.
"""
function atomic_batch!(b::Buffer, items; results::Union{Buffer,Nothing} = nothing,
                       results_offset::Integer = 0, stream::Stream = Stream())
    c_items = map(items) do item
        op, offset, operand = item[1], item[2], item[3]
        compare = length(item) > 3 ? item[4] : zero(operand)
        T = typeof(operand)
        if T <: Signed
            op == ATOMIC_MIN && (op = ATOMIC_MIN_SIGNED)
            op == ATOMIC_MAX && (op = ATOMIC_MAX_SIGNED)
        end
        gms_atomic_item(checked_offset(offset), word_bits(operand), word_bits(compare),
                        UInt32(Integer(op)), UInt32(sizeof(T)))
    end
    res = results === nothing ? GMS_BUF_NULL : handle_of(results)
    v = collect(gms_atomic_item, c_items)
    GC.@preserve v check(gms_atomic_batch(live(b.ctx), handle_of(b), pointer(v), length(v), res,
                                          checked_offset(results_offset), stream.ptr))
end

end # module
