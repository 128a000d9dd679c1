# The C API of include/gms.h, declared with the C names: constants, enums,
# structs with C's layout, and one thin `@ccall` wrapper per C function.
# tools/abicheck (lang_julia.py) checks every line of it against the header;
# nothing else in the package calls libgms.
#
# Function pointers are `Ptr{Cvoid}` in Julia. Each callback type has an
# alias (`gms_pressure_fn`) and one function that makes such a pointer with
# `@cfunction` and declares the alias as its return type: the checker takes
# the alias's C signature from that `@cfunction`.

# ---- errors ---------------------------------------------------------------------

const GMS_OK = Cint(0)
const GMS_E_INVALID_ARG = Cint(-1)
const GMS_E_INVALID_HANDLE = Cint(-2)
const GMS_E_ACCESS_DENIED = Cint(-3)
const GMS_E_OUT_OF_BOUNDS = Cint(-4)
const GMS_E_QUOTA = Cint(-5)
const GMS_E_NO_MEMORY = Cint(-6)
const GMS_E_READ_ONLY = Cint(-7)
const GMS_E_CORRUPTION = Cint(-8)
const GMS_E_BACKEND = Cint(-9)
const GMS_E_UNSUPPORTED = Cint(-10)
const GMS_E_BUSY = Cint(-11)

# ---- constants ------------------------------------------------------------------

const GMS_NAME_MAX = 63
const GMS_RUNTIME_OPTIONS_VERSION = UInt32(2)
const GMS_CONTEXT_DESC_VERSION = UInt32(1)
const GMS_SHARE_DESC_VERSION = UInt32(1)
const GMS_UNLIMITED = typemax(UInt64)
const GMS_BUF_NULL = UInt64(0)
const GMS_ALLOC_ZERO = UInt32(1) << 0
const GMS_ALLOC_PAGES = UInt32(1) << 1
const GMS_ANY_LANGUAGE = Cint(-1)
const GMS_SHARE_GRANTS_MAX = 16

# ---- enums ----------------------------------------------------------------------

@enum Backend::Cint BACKEND_AUTO = 0 BACKEND_HOST = 1 BACKEND_CUDA = 2 BACKEND_HIP = 3
@enum LogLevel::Cint LOG_ERROR = 0 LOG_WARN = 1 LOG_INFO = 2
@enum Safety::Cint SAFETY_ON = 0 SAFETY_OFF = 1
@enum CorruptionPolicy::Cint ON_CORRUPTION_REPORT = 0 ON_CORRUPTION_ABORT = 1
@enum Level::Cint begin
    LEVEL_PUBLIC = 0
    LEVEL_INTERNAL = 1
    LEVEL_CONFIDENTIAL = 2
    LEVEL_SECRET = 3
end
@enum Language::Cint begin
    LANG_C = 0
    LANG_RUST = 1
    LANG_ELIXIR = 2
    LANG_JULIA = 3
    LANG_ZIG = 4
    LANG_NIM = 5
    LANG_PYTHON = 6
    LANG_OTHER = 7
end
# ACCESS_ATOMIC is gms/access.h's GMS_ACCESS_ATOMIC, an acquire mode.
@enum Access::Cint ACCESS_READ = 1 ACCESS_READ_WRITE = 2 ACCESS_ATOMIC = 3
@enum ViolationKind::Cint begin
    VIOLATION_OVERFLOW = 1
    VIOLATION_UNDERFLOW = 2
    VIOLATION_WRITE_AFTER_FREE = 3
    VIOLATION_FREE_MEMORY = 4
    VIOLATION_WIPE_FAILED = 5
    VIOLATION_INVARIANT = 6
    VIOLATION_IMMUTABLE_WRITE = 7
end

# ---- opaque objects and callback types ------------------------------------------

mutable struct gms_runtime end
mutable struct gms_context end

const gms_log_fn = Ptr{Cvoid}
const gms_pressure_fn = Ptr{Cvoid}
const gms_violation_fn = Ptr{Cvoid}

# ---- structs --------------------------------------------------------------------

struct gms_runtime_options
    version::UInt32
    backend::Backend
    device::Cint
    granule_bytes::UInt64
    chunk_bytes::UInt64
    retain_bytes::UInt64
    log::gms_log_fn
    log_user::Ptr{Cvoid}
    reserved::UInt64
    audit_dir::Cstring
    audit_key::Ptr{UInt8}
    audit_key_len::Csize_t
    audit_key_file::Cstring
    audit_lossy::Cint
    audit_segment_bytes::UInt64
    audit_retention_days::UInt32
    safety::Safety
    redzone_bytes::UInt32
    quarantine_bytes::UInt64
    quarantine_blocks::UInt64
    scrub_batch::UInt32
    verify_interval_ms::UInt32
    on_corruption::CorruptionPolicy
    secret_multipass::Cint
    max_held_bytes::UInt64
    broker::Cstring  # version 2
end

struct gms_context_desc
    version::UInt32
    tenant::Cstring
    user::Cstring
    level::Level
    language::Language
end

struct gms_buf_info
    size::UInt64
    block_size::UInt64
    device_ptr::UInt64
    pool_id::UInt64
    flags::UInt32
    level::Level
    language::Language
    tenant::NTuple{GMS_NAME_MAX + 1,Cchar}
    user::NTuple{GMS_NAME_MAX + 1,Cchar}
    access::UInt32
    holders::UInt32
    share_id::UInt64
    immutable::Cint
    read_only_view::Cint
end

struct gms_share_grant
    tenant::Cstring
    user::Cstring
    language::Cint
    mode::Access
end

struct gms_share_desc
    version::UInt32
    grants::Ptr{gms_share_grant}
    ngrants::Csize_t
    immutable::Cint
end

struct gms_pressure
    tenant::Cstring
    bytes_wanted::UInt64
    reason::Cint
end

struct gms_stats
    live_bytes::UInt64
    live_blocks::UInt64
    peak_live_bytes::UInt64
    held_bytes::UInt64
    peak_held_bytes::UInt64
    reserved_bytes::UInt64
    fragmentation::Cdouble
    allocs::UInt64
    frees::UInt64
    quota_refusals::UInt64
    leaked_blocks::UInt64
    leaked_bytes::UInt64
    pools::UInt64
    contexts::UInt64
    tenants::UInt64
    shares::UInt64
    pressure_events::UInt64
    pressure_recovered::UInt64
    pressure_steps::UInt64
    maps::UInt64
    unmaps::UInt64
    device_waits::UInt64
end

struct gms_tenant_stats
    tenant::NTuple{GMS_NAME_MAX + 1,Cchar}
    live_bytes::UInt64
    live_blocks::UInt64
    peak_live_bytes::UInt64
    held_bytes::UInt64
    max_bytes::UInt64
    max_allocs::UInt64
    quota_refusals::UInt64
    leaked_blocks::UInt64
    leaked_bytes::UInt64
end

struct gms_report
    pools::UInt64
    chunks::UInt64
    live_blocks::UInt64
    free_blocks::UInt64
    live_handles::UInt64
    violations::UInt64
    first_violation::NTuple{512,Cchar}
end

struct gms_violation
    kind::ViolationKind
    tenant::Cstring
    handle::UInt64
    address::UInt64
    offset::Int64
    size::UInt64
    message::Cstring
end

# ---- DLPack (gms/dlpack.h) --------------------------------------------------------

const GMS_DLPACK_DESC_VERSION = UInt32(1)
const GMS_DLPACK_MAX_DIMS = 16
const DLPACK_FLAG_BITMASK_READ_ONLY = UInt64(1) << 0

@enum DLDeviceType::Cint begin
    kDLCPU = 1
    kDLCUDA = 2
    kDLCUDAHost = 3
    kDLOpenCL = 4
    kDLVulkan = 7
    kDLMetal = 8
    kDLVPI = 9
    kDLROCM = 10
    kDLROCMHost = 11
    kDLExtDev = 12
    kDLCUDAManaged = 13
    kDLOneAPI = 14
    kDLWebGPU = 15
    kDLHexagon = 16
end
@enum DLDataTypeCode::Cint begin
    kDLInt = 0
    kDLUInt = 1
    kDLFloat = 2
    kDLOpaqueHandle = 3
    kDLBfloat = 4
    kDLComplex = 5
    kDLBool = 6
end

const DLManagedTensorVersionedDeleter = Ptr{Cvoid}

struct DLPackVersion
    major::UInt32
    minor::UInt32
end

struct DLDevice
    device_type::DLDeviceType
    device_id::Int32
end

struct DLDataType
    code::UInt8
    bits::UInt8
    lanes::UInt16
end

struct DLTensor
    data::Ptr{Cvoid}
    device::DLDevice
    ndim::Int32
    dtype::DLDataType
    shape::Ptr{Int64}
    strides::Ptr{Int64}
    byte_offset::UInt64
end

struct DLManagedTensorVersioned
    version::DLPackVersion
    manager_ctx::Ptr{Cvoid}
    deleter::DLManagedTensorVersionedDeleter
    flags::UInt64
    dl_tensor::DLTensor
end

struct gms_dlpack_desc
    version::UInt32
    dtype::DLDataType
    ndim::Int32
    shape::Ptr{Int64}
    strides::Ptr{Int64}
    byte_offset::UInt64
end

# ---- access windows and checked atomics (gms/access.h) ---------------------------

const GMS_ACCESS_NOWAIT = UInt32(1) << 0

@enum AtomicOp::Cint begin
    ATOMIC_ADD = 1
    ATOMIC_AND = 2
    ATOMIC_OR = 3
    ATOMIC_XOR = 4
    ATOMIC_MIN = 5
    ATOMIC_MAX = 6
    ATOMIC_MIN_SIGNED = 7
    ATOMIC_MAX_SIGNED = 8
    ATOMIC_EXCHANGE = 9
    ATOMIC_CAS = 10
end

struct gms_atomic_item
    offset::UInt64
    operand::UInt64
    compare::UInt64
    op::UInt32
    width::UInt32
end

# ---- testing (gms/testing.h) -----------------------------------------------------

struct gms_testing_options
    fail_nth_call::UInt64
end

# ---- functions ------------------------------------------------------------------

gms_version() = @ccall libgms().gms_version()::UInt32
gms_strerror(code) = @ccall libgms().gms_strerror(code::Cint)::Cstring
gms_error_last() = @ccall libgms().gms_error_last()::Cstring

gms_runtime_open(out, opts) =
    @ccall libgms().gms_runtime_open(out::Ref{Ptr{gms_runtime}}, opts::Ptr{gms_runtime_options})::Cint
gms_runtime_close(rt) = @ccall libgms().gms_runtime_close(rt::Ptr{gms_runtime})::Cvoid
gms_audit_flush(rt) = @ccall libgms().gms_audit_flush(rt::Ptr{gms_runtime})::Cint
gms_runtime_backend_name(rt) = @ccall libgms().gms_runtime_backend_name(rt::Ptr{gms_runtime})::Cstring
gms_testing_runtime_open(out, opts, testing) =
    @ccall libgms().gms_testing_runtime_open(out::Ref{Ptr{gms_runtime}},
        opts::Ptr{gms_runtime_options}, testing::Ref{gms_testing_options})::Cint

gms_context_open(out, rt, desc) =
    @ccall libgms().gms_context_open(out::Ref{Ptr{gms_context}}, rt::Ptr{gms_runtime},
        desc::Ref{gms_context_desc})::Cint
gms_context_close(ctx) = @ccall libgms().gms_context_close(ctx::Ptr{gms_context})::Cvoid
gms_level_name(level) = @ccall libgms().gms_level_name(level::Level)::Cstring
gms_language_name(language) = @ccall libgms().gms_language_name(language::Language)::Cstring

gms_tenant_set_quota(rt, tenant, max_bytes, max_allocs) =
    @ccall libgms().gms_tenant_set_quota(rt::Ptr{gms_runtime}, tenant::Cstring,
        max_bytes::UInt64, max_allocs::UInt64)::Cint

gms_alloc(ctx, size, flags, out) =
    @ccall libgms().gms_alloc(ctx::Ptr{gms_context}, size::Csize_t, flags::UInt32,
        out::Ref{UInt64})::Cint
gms_free(ctx, buf) = @ccall libgms().gms_free(ctx::Ptr{gms_context}, buf::UInt64)::Cint
gms_alloc_async(ctx, size, flags, stream, out) =
    @ccall libgms().gms_alloc_async(ctx::Ptr{gms_context}, size::Csize_t, flags::UInt32,
        stream::Ptr{Cvoid}, out::Ref{UInt64})::Cint
gms_free_async(ctx, buf, stream) =
    @ccall libgms().gms_free_async(ctx::Ptr{gms_context}, buf::UInt64, stream::Ptr{Cvoid})::Cint
gms_buf_info_get(ctx, buf, out) =
    @ccall libgms().gms_buf_info_get(ctx::Ptr{gms_context}, buf::UInt64,
        out::Ref{gms_buf_info})::Cint
gms_buf_ptr(ctx, buf, out) =
    @ccall libgms().gms_buf_ptr(ctx::Ptr{gms_context}, buf::UInt64, out::Ref{Ptr{Cvoid}})::Cint

gms_write(ctx, dst, off, src, len) =
    @ccall libgms().gms_write(ctx::Ptr{gms_context}, dst::UInt64, off::UInt64, src::Ptr{Cvoid},
        len::Csize_t)::Cint
gms_read(ctx, src, off, dst, len) =
    @ccall libgms().gms_read(ctx::Ptr{gms_context}, src::UInt64, off::UInt64, dst::Ptr{Cvoid},
        len::Csize_t)::Cint
gms_copy(ctx, dst, dst_off, src, src_off, len) =
    @ccall libgms().gms_copy(ctx::Ptr{gms_context}, dst::UInt64, dst_off::UInt64, src::UInt64,
        src_off::UInt64, len::Csize_t)::Cint
gms_fill(ctx, dst, off, byte, len) =
    @ccall libgms().gms_fill(ctx::Ptr{gms_context}, dst::UInt64, off::UInt64, byte::Cint,
        len::Csize_t)::Cint

gms_share(owner, buf, desc, out) =
    @ccall libgms().gms_share(owner::Ptr{gms_context}, buf::UInt64, desc::Ref{gms_share_desc},
        out::Ref{UInt64})::Cint
gms_acquire(ctx, id, mode, out) =
    @ccall libgms().gms_acquire(ctx::Ptr{gms_context}, id::UInt64, mode::Access,
        out::Ref{UInt64})::Cint
gms_release(ctx, buf) = @ccall libgms().gms_release(ctx::Ptr{gms_context}, buf::UInt64)::Cint
gms_transfer(from, buf, to, out) =
    @ccall libgms().gms_transfer(from::Ptr{gms_context}, buf::UInt64, to::Ptr{gms_context},
        out::Ref{UInt64})::Cint
gms_revoke(owner, id) = @ccall libgms().gms_revoke(owner::Ptr{gms_context}, id::UInt64)::Cint

gms_on_pressure(rt, fn, user) =
    @ccall libgms().gms_on_pressure(rt::Ptr{gms_runtime}, fn::gms_pressure_fn,
        user::Ptr{Cvoid})::Cint
gms_on_violation(rt, fn, user) =
    @ccall libgms().gms_on_violation(rt::Ptr{gms_runtime}, fn::gms_violation_fn,
        user::Ptr{Cvoid})::Cint

gms_stats_get(rt, out) = @ccall libgms().gms_stats_get(rt::Ptr{gms_runtime}, out::Ref{gms_stats})::Cint
gms_tenant_stats_get(rt, index, out) =
    @ccall libgms().gms_tenant_stats_get(rt::Ptr{gms_runtime}, index::UInt64,
        out::Ref{gms_tenant_stats})::Cint
gms_trim(rt) = @ccall libgms().gms_trim(rt::Ptr{gms_runtime})::Cint
gms_sync(rt) = @ccall libgms().gms_sync(rt::Ptr{gms_runtime})::Cint
gms_dlpack_export(ctx, buf, desc, out) =
    @ccall libgms().gms_dlpack_export(ctx::Ptr{gms_context}, buf::UInt64,
        desc::Ref{gms_dlpack_desc}, out::Ref{Ptr{DLManagedTensorVersioned}})::Cint
gms_dlpack_import(ctx, tensor, out) =
    @ccall libgms().gms_dlpack_import(ctx::Ptr{gms_context}, tensor::Ptr{DLManagedTensorVersioned},
        out::Ref{UInt64})::Cint
gms_verify(rt, out) = @ccall libgms().gms_verify(rt::Ptr{gms_runtime}, out::Ref{gms_report})::Cint

gms_access_begin(ctx, buf, mode, flags, stream) =
    @ccall libgms().gms_access_begin(ctx::Ptr{gms_context}, buf::UInt64, mode::Access, flags::UInt32,
        stream::Ptr{Cvoid})::Cint
gms_access_end(ctx, buf, stream) =
    @ccall libgms().gms_access_end(ctx::Ptr{gms_context}, buf::UInt64, stream::Ptr{Cvoid})::Cint
gms_atomic(ctx, buf, offset, op, width, operand, compare, stream, old) =
    @ccall libgms().gms_atomic(ctx::Ptr{gms_context}, buf::UInt64, offset::UInt64, op::AtomicOp,
        width::UInt32, operand::UInt64, compare::UInt64, stream::Ptr{Cvoid}, old::Ref{UInt64})::Cint
gms_atomic_batch(ctx, buf, items, n, results, results_offset, stream) =
    @ccall libgms().gms_atomic_batch(ctx::Ptr{gms_context}, buf::UInt64, items::Ptr{gms_atomic_item},
        n::Csize_t, results::UInt64, results_offset::UInt64, stream::Ptr{Cvoid})::Cint
