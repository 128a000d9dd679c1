//! gms for Zig: GPU memory that several language runtimes and tenants share
//! safely. A thin layer over libgms's C API (include/gms.h): every rule
//! (handle checks, bounds, quotas, sharing) is the C library's; this module
//! gives it Zig's shapes: handle types with `deinit`, an error set with one
//! error per GMS_E_* code, slices, enums and typed callbacks.
//!
//!     var rt = try gms.Runtime.openShared();
//!     defer rt.deinit();
//!     var ctx = try rt.openContext(.{ .tenant = "acme", .user = "alice" });
//!     defer ctx.deinit();
//!     var buf = try ctx.alloc(4096, .{ .zero = true });
//!     defer buf.deinit();
//!     try buf.write(0, "hello");
//!
//! Threading follows docs/threading.md: every call is thread-safe, so the
//! handle types may be used from several threads; closing one while another
//! thread still uses it is the caller's bug, as with any `deinit`.
const std = @import("std");

/// The C declarations, translated from gms.h at build time. For what this
/// module does not wrap; its own types convert to and from them.
pub const c = @import("gms_c");

const log = std.log.scoped(.gms);

// ---- errors ----------------------------------------------------------------

/// One error per GMS_E_* code of gms.h, and `Unexpected` for a code this
/// binding does not know (a newer libgms). `lastMessage()` says why in words.
pub const Error = error{
    /// GMS_E_INVALID_ARG: a NULL, out-of-range or malformed argument.
    InvalidArgument,
    /// GMS_E_INVALID_HANDLE: a stale, freed, forged or foreign handle.
    InvalidHandle,
    /// GMS_E_ACCESS_DENIED: the buffer belongs to another context.
    AccessDenied,
    /// GMS_E_OUT_OF_BOUNDS: an access not wholly inside the buffer.
    OutOfBounds,
    /// GMS_E_QUOTA: the tenant's byte or allocation quota.
    QuotaExceeded,
    /// GMS_E_NO_MEMORY: the backend or the host ran out of memory.
    OutOfMemory,
    /// GMS_E_READ_ONLY: a write to a read-only buffer or view.
    ReadOnly,
    /// GMS_E_CORRUPTION: an invariant was found broken.
    Corruption,
    /// GMS_E_BACKEND: the device backend failed.
    BackendFailure,
    /// GMS_E_UNSUPPORTED: not available in this build or backend.
    Unsupported,
    /// GMS_E_BUSY: the object is in use; try again later.
    Busy,
    /// A negative code this binding does not know.
    Unexpected,
};

const code_errors = [_]struct { code: c_int, err: Error }{
    .{ .code = c.GMS_E_INVALID_ARG, .err = error.InvalidArgument },
    .{ .code = c.GMS_E_INVALID_HANDLE, .err = error.InvalidHandle },
    .{ .code = c.GMS_E_ACCESS_DENIED, .err = error.AccessDenied },
    .{ .code = c.GMS_E_OUT_OF_BOUNDS, .err = error.OutOfBounds },
    .{ .code = c.GMS_E_QUOTA, .err = error.QuotaExceeded },
    .{ .code = c.GMS_E_NO_MEMORY, .err = error.OutOfMemory },
    .{ .code = c.GMS_E_READ_ONLY, .err = error.ReadOnly },
    .{ .code = c.GMS_E_CORRUPTION, .err = error.Corruption },
    .{ .code = c.GMS_E_BACKEND, .err = error.BackendFailure },
    .{ .code = c.GMS_E_UNSUPPORTED, .err = error.Unsupported },
    .{ .code = c.GMS_E_BUSY, .err = error.Busy },
};

/// The error of a negative GMS_E_* code.
pub fn errorFromCode(code: c_int) Error {
    inline for (code_errors) |e| {
        if (code == e.code) return e.err;
    }
    return error.Unexpected;
}

/// The GMS_E_* code of an error. `Unexpected` has none and gives -1000,
/// a code gms never returns.
pub fn codeOf(err: Error) c_int {
    inline for (code_errors) |e| {
        if (err == e.err) return e.code;
    }
    return -1000;
}

/// gms_strerror of the error: "GMS_E_QUOTA: quota exceeded".
pub fn describe(err: Error) [:0]const u8 {
    return std.mem.span(c.gms_strerror(codeOf(err)));
}

// A refusal made here, before any C call (a name with a NUL byte, too many
// grants), has no gms_error_last(): its message is kept here instead.
threadlocal var binding_message: ?[:0]const u8 = null;

fn refuse(message: [:0]const u8) Error {
    binding_message = message;
    return error.InvalidArgument;
}

fn check(rc: c_int) Error!void {
    if (rc == c.GMS_OK) return;
    binding_message = null;
    return errorFromCode(rc);
}

/// Why the last failed call of this thread failed, in words (gms_error_last,
/// or this binding's own message for what it refused before calling gms).
/// Valid until the next gms call on this thread.
pub fn lastMessage() [:0]const u8 {
    return binding_message orelse std.mem.span(c.gms_error_last());
}

/// The version of the libgms running (which may be newer than gms.h).
pub fn version() std.SemanticVersion {
    const v = c.gms_version();
    return .{ .major = v / 10000, .minor = v / 100 % 100, .patch = v % 100 };
}

// ---- enums and flags ---------------------------------------------------------

pub const Backend = enum(c_uint) { auto = 0, host = 1, cuda = 2, hip = 3 };
pub const Safety = enum(c_uint) { on = 0, off = 1 };
pub const OnCorruption = enum(c_uint) { report = 0, abort = 1 };

pub const Level = enum(c_uint) {
    public = 0,
    internal = 1,
    confidential = 2,
    secret = 3,

    /// gms_level_name: "public", "internal", ...
    pub fn name(level: Level) [:0]const u8 {
        return std.mem.span(c.gms_level_name(@backingInt(level)));
    }
};

pub const Language = enum(c_uint) {
    c = 0,
    rust = 1,
    elixir = 2,
    julia = 3,
    zig = 4,
    nim = 5,
    python = 6,
    other = 7,

    /// gms_language_name: "c", "rust", ...
    pub fn name(language: Language) [:0]const u8 {
        return std.mem.span(c.gms_language_name(@backingInt(language)));
    }
};

/// A share's access modes; `atomic` (gms/access.h's GMS_ACCESS_ATOMIC) is
/// an acquire mode only: reads, and writes through the atomics.
pub const Access = enum(c_uint) { read = 1, read_write = 2, atomic = 3 };

/// gms_atomic_op. `min` and `max` compare as the word type does: the
/// binding passes GMS_ATOMIC_MIN_SIGNED/MAX_SIGNED for i32 and i64.
pub const AtomicOp = enum(c_uint) {
    add = 1,
    @"and" = 2,
    @"or" = 3,
    xor = 4,
    min = 5,
    max = 6,
    exchange = 9,
    cas = 10,
};

/// Non-exhaustive: a newer libgms may report kinds this binding does not name.
pub const ViolationKind = enum(c_uint) {
    overflow = 1,
    underflow = 2,
    write_after_free = 3,
    free_memory = 4,
    wipe_failed = 5,
    invariant = 6,
    immutable_write = 7,
    _,
};

/// GMS_ALLOC_* flags.
pub const AllocFlags = packed struct(u32) {
    /// Fill with zeros before returning.
    zero: bool = false,
    /// Own whole pages (2 MiB granules on a GPU), so that an immutable
    /// share is a read-only mapping the MMU enforces.
    pages: bool = false,
    _unused: u30 = 0,
};

// The enums above must say what gms.h says; a mismatch does not compile.
comptime {
    const pairs = .{
        .{ Backend.host, c.GMS_BACKEND_HOST },
        .{ Backend.hip, c.GMS_BACKEND_HIP },
        .{ Safety.off, c.GMS_SAFETY_OFF },
        .{ OnCorruption.abort, c.GMS_ON_CORRUPTION_ABORT },
        .{ Level.public, c.GMS_LEVEL_PUBLIC },
        .{ Level.secret, c.GMS_LEVEL_SECRET },
        .{ Language.zig, c.GMS_LANG_ZIG },
        .{ Language.python, c.GMS_LANG_PYTHON },
        .{ Language.other, c.GMS_LANG_OTHER },
        .{ Access.read, c.GMS_ACCESS_READ },
        .{ Access.read_write, c.GMS_ACCESS_READ_WRITE },
        .{ Access.atomic, c.GMS_ACCESS_ATOMIC },
        .{ AtomicOp.add, c.GMS_ATOMIC_ADD },
        .{ AtomicOp.min, c.GMS_ATOMIC_MIN },
        .{ AtomicOp.max, c.GMS_ATOMIC_MAX },
        .{ AtomicOp.exchange, c.GMS_ATOMIC_EXCHANGE },
        .{ AtomicOp.cas, c.GMS_ATOMIC_CAS },
        .{ ViolationKind.overflow, c.GMS_VIOLATION_OVERFLOW },
        .{ ViolationKind.immutable_write, c.GMS_VIOLATION_IMMUTABLE_WRITE },
    };
    for (pairs) |p| {
        if (@backingInt(p[0]) != p[1]) @compileError("gms.zig disagrees with gms.h on " ++ @tagName(p[0]));
    }
    if (@as(u32, @bitCast(AllocFlags{ .zero = true })) != c.GMS_ALLOC_ZERO or
        @as(u32, @bitCast(AllocFlags{ .pages = true })) != c.GMS_ALLOC_PAGES)
        @compileError("gms.zig disagrees with gms.h on the GMS_ALLOC_* flags");
}

/// A buffer handle as gms names it: keyed, generational, never guessable.
/// `.none` (GMS_BUF_NULL) is never a live handle.
pub const Handle = enum(u64) { none = 0, _ };

/// A share's id, made like handles; hand it to the contexts that acquire.
pub const ShareId = enum(u64) { _ };

/// A CUDA stream (CUstream) passed through untouched; null is the legacy
/// default stream. On the host backend, streams do not exist and the
/// stream-ordered calls are the plain ones.
pub const Stream = ?*anyopaque;

/// The largest tenant or user name (printable ASCII, 1..63 bytes).
pub const name_max = c.GMS_NAME_MAX;
/// The most grants one share may have.
pub const share_grants_max = c.GMS_SHARE_GRANTS_MAX;

fn cName(name: [:0]const u8) Error![*:0]const u8 {
    // C would stop at an inner NUL: "acme\x00evil" would be tenant "acme".
    if (std.mem.indexOfScalar(u8, name, 0) != null) return refuse("gms: a name contains a NUL byte");
    return name.ptr;
}

fn cOptionalName(name: ?[:0]const u8) Error!?[*:0]const u8 {
    return if (name) |n| try cName(n) else null;
}

fn fixedName(bytes: anytype) []const u8 {
    return std.mem.sliceTo(bytes, 0);
}

// ---- runtime -----------------------------------------------------------------

/// The fields of gms_runtime_options; 0 (and null) are gms's defaults.
pub const Options = struct {
    /// .auto: the GMS_BACKEND variable, else a GPU when present, else host.
    backend: Backend = .auto,
    device: c_int = 0,
    granule_bytes: u64 = 0,
    chunk_bytes: u64 = 0,
    retain_bytes: u64 = 0,
    audit_dir: ?[:0]const u8 = null,
    audit_key: ?[]const u8 = null,
    audit_key_file: ?[:0]const u8 = null,
    audit_lossy: bool = false,
    audit_segment_bytes: u64 = 0,
    audit_retention_days: u32 = 0,
    safety: Safety = .on,
    redzone_bytes: u32 = 0,
    quarantine_bytes: u64 = 0,
    quarantine_blocks: u64 = 0,
    verify_interval_ms: u32 = 0,
    on_corruption: OnCorruption = .report,
    secret_multipass: bool = false,
    max_held_bytes: u64 = 0,
    /// gmsd's socket: memory comes from the broker (docs/broker.md). Wins
    /// over the GMS_BROKER variable, which applies when this is null.
    broker: ?[:0]const u8 = null,

    fn toC(o: Options) Error!c.gms_runtime_options {
        var out: c.gms_runtime_options = undefined;
        try check(c.gms_runtime_options_init_version(&out, c.GMS_RUNTIME_OPTIONS_VERSION));
        out.backend = @backingInt(o.backend);
        out.device = o.device;
        out.granule_bytes = o.granule_bytes;
        out.chunk_bytes = o.chunk_bytes;
        out.retain_bytes = o.retain_bytes;
        out.audit_dir = try cOptionalName(o.audit_dir);
        if (o.audit_key) |key| {
            out.audit_key = key.ptr;
            out.audit_key_len = key.len;
        }
        out.audit_key_file = try cOptionalName(o.audit_key_file);
        out.audit_lossy = @intFromBool(o.audit_lossy);
        out.audit_segment_bytes = o.audit_segment_bytes;
        out.audit_retention_days = o.audit_retention_days;
        out.safety = @backingInt(o.safety);
        out.redzone_bytes = o.redzone_bytes;
        out.quarantine_bytes = o.quarantine_bytes;
        out.quarantine_blocks = o.quarantine_blocks;
        out.verify_interval_ms = o.verify_interval_ms;
        out.on_corruption = @backingInt(o.on_corruption);
        out.secret_multipass = @intFromBool(o.secret_multipass);
        out.max_held_bytes = o.max_held_bytes;
        out.broker = try cOptionalName(o.broker);
        return out;
    }
};

/// Who is acting: buffers live in the pool of (tenant, level, language).
pub const ContextOptions = struct {
    tenant: [:0]const u8,
    /// null: the tenant's name.
    user: ?[:0]const u8 = null,
    level: Level = .internal,
    language: Language = .zig,
};

/// A tenant's limits; null lifts one (GMS_UNLIMITED).
pub const Quota = struct {
    max_bytes: ?u64 = null,
    max_allocs: ?u64 = null,
};

pub const Stats = c.gms_stats;
pub const Report = c.gms_report;

pub const TenantStats = struct {
    raw: c.gms_tenant_stats,

    pub fn tenant(s: *const TenantStats) []const u8 {
        return fixedName(&s.raw.tenant);
    }
};

/// A detected corruption, as the violation callback receives it. The
/// strings are valid during the call only.
pub const Violation = struct {
    kind: ViolationKind,
    tenant: [:0]const u8,
    handle: Handle,
    address: u64,
    offset: i64,
    size: u64,
    message: [:0]const u8,
};

/// An allocation about to fail, as the pressure callback receives it.
pub const Pressure = struct {
    tenant: [:0]const u8,
    bytes_wanted: u64,
    /// error.OutOfMemory or error.QuotaExceeded.
    reason: Error,
};

fn span(s: [*c]const u8) [:0]const u8 {
    return if (s == null) "" else std.mem.span(@as([*:0]const u8, s));
}

pub const Runtime = struct {
    ptr: *c.gms_runtime,

    /// The process-wide runtime (gms_runtime_open with NULL options): every
    /// language in the process gets the same one, reference counted; each
    /// openShared is matched by one deinit.
    pub fn openShared() Error!Runtime {
        var ptr: ?*c.gms_runtime = null;
        try check(c.gms_runtime_open(&ptr, null));
        return .{ .ptr = ptr.? };
    }

    /// A private runtime with these options.
    pub fn open(options: Options) Error!Runtime {
        const opts = try options.toC();
        var ptr: ?*c.gms_runtime = null;
        try check(c.gms_runtime_open(&ptr, &opts));
        return .{ .ptr = ptr.? };
    }

    /// Closes the runtime (one reference of the shared one); on the last
    /// close, contexts still open are closed and their buffers reported as
    /// leaks.
    pub fn deinit(rt: *Runtime) void {
        c.gms_runtime_close(rt.ptr);
        rt.* = undefined;
    }

    /// "host", "cuda" or "hip".
    pub fn backendName(rt: Runtime) [:0]const u8 {
        return std.mem.span(c.gms_runtime_backend_name(rt.ptr));
    }

    pub fn openContext(rt: Runtime, options: ContextOptions) Error!Context {
        var desc: c.gms_context_desc = undefined;
        try check(c.gms_context_desc_init_version(&desc, c.GMS_CONTEXT_DESC_VERSION));
        desc.tenant = try cName(options.tenant);
        desc.user = try cName(options.user orelse options.tenant);
        desc.level = @backingInt(options.level);
        desc.language = @backingInt(options.language);
        var ptr: ?*c.gms_context = null;
        try check(c.gms_context_open(&ptr, rt.ptr, &desc));
        return .{ .ptr = ptr.? };
    }

    pub fn setQuota(rt: Runtime, tenant: [:0]const u8, quota: Quota) Error!void {
        try check(c.gms_tenant_set_quota(
            rt.ptr,
            try cName(tenant),
            quota.max_bytes orelse c.GMS_UNLIMITED,
            quota.max_allocs orelse c.GMS_UNLIMITED,
        ));
    }

    pub fn stats(rt: Runtime) Error!Stats {
        var out: Stats = undefined;
        try check(c.gms_stats_get(rt.ptr, &out));
        return out;
    }

    /// Tenants in the order they first appeared; index < stats().tenants.
    pub fn tenantStats(rt: Runtime, index: u64) Error!TenantStats {
        var out: TenantStats = undefined;
        try check(c.gms_tenant_stats_get(rt.ptr, index, &out.raw));
        return out;
    }

    /// Returns every unused mapped granule to the backend now.
    pub fn trim(rt: Runtime) Error!void {
        try check(c.gms_trim(rt.ptr));
    }

    /// Waits for the queued safety work and reports what it found.
    pub fn sync(rt: Runtime) Error!void {
        try check(c.gms_sync(rt.ptr));
    }

    /// Checks every invariant; error.Corruption when one fails, with the
    /// first violation in `report` when given.
    pub fn verify(rt: Runtime, report: ?*Report) Error!void {
        try check(c.gms_verify(rt.ptr, report));
    }

    /// Writes and seals the audit records so far; error.Unsupported
    /// without a trail.
    pub fn auditFlush(rt: Runtime) Error!void {
        try check(c.gms_audit_flush(rt.ptr));
    }

    /// Calls `handler(context, violation)` on every detected corruption, from
    /// whichever thread found it (at most 16 callbacks per runtime; they
    /// stay until the runtime closes, so `context` must live as long).
    pub fn onViolation(
        rt: Runtime,
        context: anytype,
        comptime handler: fn (@TypeOf(context), Violation) void,
    ) Error!void {
        const Context_ = @TypeOf(context);
        const trampoline = struct {
            fn call(user: ?*anyopaque, v: [*c]const c.gms_violation) callconv(.c) void {
                handler(fromUser(Context_, user), .{
                    .kind = @fromBackingInt(v.*.kind),
                    .tenant = span(v.*.tenant),
                    .handle = @fromBackingInt(v.*.handle),
                    .address = v.*.address,
                    .offset = v.*.offset,
                    .size = v.*.size,
                    .message = span(v.*.message),
                });
            }
        };
        try check(c.gms_on_violation(rt.ptr, trampoline.call, toUser(context)));
    }

    /// Calls `handler(context, pressure)` when an allocation would fail,
    /// after gms's own steps: it should release what its runtime no longer
    /// uses. Called on the allocating thread with no gms lock held.
    pub fn onPressure(
        rt: Runtime,
        context: anytype,
        comptime handler: fn (@TypeOf(context), Pressure) void,
    ) Error!void {
        const Context_ = @TypeOf(context);
        const trampoline = struct {
            fn call(user: ?*anyopaque, p: [*c]const c.gms_pressure) callconv(.c) void {
                handler(fromUser(Context_, user), .{
                    .tenant = span(p.*.tenant),
                    .bytes_wanted = p.*.bytes_wanted,
                    .reason = errorFromCode(p.*.reason),
                });
            }
        };
        try check(c.gms_on_pressure(rt.ptr, trampoline.call, toUser(context)));
    }
};

// A callback's context is any pointer; it travels through C as void *.
fn toUser(context: anytype) ?*anyopaque {
    if (@typeInfo(@TypeOf(context)) != .pointer) @compileError("a callback's context is a pointer");
    return @ptrCast(@constCast(context));
}

fn fromUser(comptime T: type, user: ?*anyopaque) T {
    return @ptrCast(@alignCast(user));
}

// ---- contexts ----------------------------------------------------------------

/// One entry of a share's access list.
pub const Grant = struct {
    /// null: the owner's tenant; "*": any tenant.
    tenant: ?[:0]const u8 = null,
    /// null: any user.
    user: ?[:0]const u8 = null,
    /// null: any language.
    language: ?Language = null,
    /// The most this entry allows.
    mode: Access = .read,
};

pub const Context = struct {
    ptr: *c.gms_context,

    /// Closes the context. Buffers it still holds are leaks: gms reports
    /// them (log, stats) and reclaims them.
    pub fn deinit(ctx: *Context) void {
        c.gms_context_close(ctx.ptr);
        ctx.* = undefined;
    }

    /// A new buffer of `size` bytes.
    pub fn alloc(ctx: Context, size: usize, flags: AllocFlags) Error!Buffer {
        var h: c.gms_buf = c.GMS_BUF_NULL;
        try check(c.gms_alloc(ctx.ptr, size, @bitCast(flags), &h));
        return .{ .ctx = ctx, .handle = @fromBackingInt(h) };
    }

    /// gms_alloc_async: a buffer for work queued on `stream` after the call
    /// (docs/stream-ordered.md). Free it with `releaseAsync`.
    pub fn allocAsync(ctx: Context, size: usize, flags: AllocFlags, stream: Stream) Error!Buffer {
        var h: c.gms_buf = c.GMS_BUF_NULL;
        try check(c.gms_alloc_async(ctx.ptr, size, @bitCast(flags), stream, &h));
        return .{ .ctx = ctx, .handle = @fromBackingInt(h) };
    }

    /// A new buffer holding a copy of `bytes`.
    pub fn allocCopy(ctx: Context, bytes: []const u8) Error!Buffer {
        var buf = try ctx.alloc(bytes.len, .{});
        errdefer buf.deinit();
        try buf.write(0, bytes);
        return buf;
    }

    /// This context's own read-only handle on a shared buffer.
    pub fn acquire(ctx: Context, id: ShareId) Error!View {
        var h: c.gms_buf = c.GMS_BUF_NULL;
        try check(c.gms_acquire(ctx.ptr, @backingInt(id), c.GMS_ACCESS_READ, &h));
        return .{ .ctx = ctx, .handle = @fromBackingInt(h) };
    }

    /// This context's own writable handle on a mutable share: one writer at
    /// a time (error.Busy while another holder can write; error.ReadOnly
    /// for an immutable share).
    pub fn acquireWrite(ctx: Context, id: ShareId) Error!Buffer {
        var h: c.gms_buf = c.GMS_BUF_NULL;
        try check(c.gms_acquire(ctx.ptr, @backingInt(id), c.GMS_ACCESS_READ_WRITE, &h));
        return .{ .ctx = ctx, .handle = @fromBackingInt(h) };
    }

    /// An atomic holder's handle (Access.atomic, docs/ordering.md): it
    /// reads, and writes through the atomics only, beside the share's one
    /// writer and any number of other atomic holders. Needs a read_write
    /// grant (error.AccessDenied) and a mutable share (error.ReadOnly).
    pub fn acquireAtomic(ctx: Context, id: ShareId) Error!View {
        var h: c.gms_buf = c.GMS_BUF_NULL;
        try check(c.gms_acquire(ctx.ptr, @backingInt(id), c.GMS_ACCESS_ATOMIC, &h));
        return .{ .ctx = ctx, .handle = @fromBackingInt(h) };
    }

    /// Stops new acquires of a share this context made; holders keep theirs.
    pub fn revoke(ctx: Context, id: ShareId) Error!void {
        try check(c.gms_revoke(ctx.ptr, @backingInt(id)));
    }
};

// ---- buffers -----------------------------------------------------------------

/// What gms_buf_info says about a handle.
pub const Info = struct {
    size: u64,
    block_size: u64,
    device_ptr: u64,
    pool_id: u64,
    flags: AllocFlags,
    level: Level,
    language: Language,
    access: Access,
    /// Handles alive on the buffer, this one included.
    holders: u32,
    share_id: ?ShareId,
    immutable: bool,
    read_only_view: bool,
    tenant_bytes: [name_max + 1]u8,
    user_bytes: [name_max + 1]u8,

    pub fn tenant(i: *const Info) []const u8 {
        return fixedName(&i.tenant_bytes);
    }

    pub fn user(i: *const Info) []const u8 {
        return fixedName(&i.user_bytes);
    }
};

fn getInfo(ctx: Context, handle: Handle) Error!Info {
    var i: c.gms_buf_info = undefined;
    try check(c.gms_buf_info_get(ctx.ptr, @backingInt(handle), &i));
    return .{
        .size = i.size,
        .block_size = i.block_size,
        .device_ptr = i.device_ptr,
        .pool_id = i.pool_id,
        .flags = @bitCast(i.flags),
        .level = @fromBackingInt(i.level),
        .language = @fromBackingInt(i.language),
        .access = @fromBackingInt(i.access),
        .holders = i.holders,
        .share_id = if (i.share_id == 0) null else @fromBackingInt(i.share_id),
        .immutable = i.immutable != 0,
        .read_only_view = i.read_only_view != 0,
        .tenant_bytes = i.tenant,
        .user_bytes = i.user,
    };
}

fn readInto(ctx: Context, handle: Handle, offset: u64, dest: []u8) Error!void {
    try check(c.gms_read(ctx.ptr, @backingInt(handle), offset, dest.ptr, dest.len));
}

fn rawPtr(ctx: Context, handle: Handle) Error![*]u8 {
    var p: ?*anyopaque = null;
    try check(c.gms_buf_ptr(ctx.ptr, @backingInt(handle), &p));
    return @ptrCast(p.?);
}

/// Drops one handle; `handle.*` becomes .none once gms took it.
fn releaseHandle(ctx: Context, handle: *Handle, stream: ?Stream) Error!void {
    if (handle.* == .none) return;
    const rc = if (stream) |s|
        c.gms_free_async(ctx.ptr, @backingInt(handle.*), s)
    else
        c.gms_free(ctx.ptr, @backingInt(handle.*));
    // A free that finds the redzones overwritten frees all the same.
    if (rc == c.GMS_OK or rc == c.GMS_E_CORRUPTION) handle.* = .none;
    try check(rc);
}

fn deinitHandle(ctx: Context, handle: *Handle) void {
    releaseHandle(ctx, handle, null) catch |err| {
        // deinit cannot fail; say why the handle was refused instead.
        log.warn("release of handle 0x{x} refused: {t}: {s}", .{ @backingInt(handle.*), err, lastMessage() });
    };
    handle.* = .none;
}

fn shareDesc(grants: []const Grant, immutable: bool, storage: *[share_grants_max]c.gms_share_grant) Error!c.gms_share_desc {
    if (grants.len > share_grants_max) return refuse("gms: a share takes at most 16 grants");
    for (grants, storage[0..grants.len]) |g, *out| {
        out.* = .{
            .tenant = try cOptionalName(g.tenant),
            .user = try cOptionalName(g.user),
            .language = if (g.language) |l| @intCast(@backingInt(l)) else c.GMS_ANY_LANGUAGE,
            .mode = @backingInt(g.mode),
        };
    }
    var desc: c.gms_share_desc = undefined;
    try check(c.gms_share_desc_init_version(&desc, c.GMS_SHARE_DESC_VERSION));
    desc.grants = storage;
    desc.ngrants = grants.len;
    desc.immutable = @intFromBool(immutable);
    return desc;
}

/// The handle of a buffer that this context may write. Not to be copied
/// (two copies are one handle): pass `*Buffer` or `Buffer` by value to the
/// methods and let one owner `deinit` it. Every access is bounds-checked by
/// gms; `slice()` is the unchecked raw memory.
pub const Buffer = struct {
    ctx: Context,
    handle: Handle,

    /// Drops this handle (the memory goes once its last holder lets go). A
    /// refusal cannot be returned from here; it goes to the log (std.log,
    /// scope .gms): use `release` to see it. Does nothing after `release`,
    /// `transfer` or `freeze`.
    pub fn deinit(buf: *Buffer) void {
        deinitHandle(buf.ctx, &buf.handle);
    }

    /// Drops this handle, as `deinit`, returning gms's refusal.
    pub fn release(buf: *Buffer) Error!void {
        try releaseHandle(buf.ctx, &buf.handle, null);
    }

    /// gms_free_async: the handle dies now; the memory's check and wipe
    /// follow the work queued on `stream`.
    pub fn releaseAsync(buf: *Buffer, stream: Stream) Error!void {
        try releaseHandle(buf.ctx, &buf.handle, stream);
    }

    pub fn write(buf: Buffer, offset: u64, bytes: []const u8) Error!void {
        try check(c.gms_write(buf.ctx.ptr, @backingInt(buf.handle), offset, bytes.ptr, bytes.len));
    }

    /// Fills `dest` from the buffer at `offset`.
    pub fn read(buf: Buffer, offset: u64, dest: []u8) Error!void {
        try readInto(buf.ctx, buf.handle, offset, dest);
    }

    pub fn fill(buf: Buffer, offset: u64, byte: u8, len: usize) Error!void {
        try check(c.gms_fill(buf.ctx.ptr, @backingInt(buf.handle), offset, byte, len));
    }

    /// Copies `len` bytes of `src` (a handle of the same context: a
    /// Buffer's or a View's) at `src_offset` to `offset`; overlap is fine.
    pub fn copyFrom(buf: Buffer, offset: u64, src: Handle, src_offset: u64, len: usize) Error!void {
        try check(c.gms_copy(buf.ctx.ptr, @backingInt(buf.handle), offset, @backingInt(src), src_offset, len));
    }

    pub fn info(buf: Buffer) Error!Info {
        return getInfo(buf.ctx, buf.handle);
    }

    /// The raw memory (host memory on the host backend, a device address on
    /// a GPU): unchecked, for kernels and frameworks. Ask again after a
    /// share: the mapping may change.
    pub fn slice(buf: Buffer) Error![]u8 {
        const i = try buf.info();
        return (try rawPtr(buf.ctx, buf.handle))[0..@intCast(i.size)];
    }

    /// Shares the buffer with the contexts `grants` let in (1..16 grants);
    /// this handle stays this context's writer. One share per buffer.
    pub fn share(buf: Buffer, grants: []const Grant) Error!ShareId {
        var storage: [share_grants_max]c.gms_share_grant = undefined;
        const desc = try shareDesc(grants, false, &storage);
        var id: c.gms_share_id = 0;
        try check(c.gms_share(buf.ctx.ptr, @backingInt(buf.handle), &desc, &id));
        return @fromBackingInt(id);
    }

    /// Shares the buffer immutably: nobody writes it any more, this context
    /// included, so the handle becomes a `View` and `buf` is spent.
    pub fn freeze(buf: *Buffer, grants: []const Grant) Error!Frozen {
        var storage: [share_grants_max]c.gms_share_grant = undefined;
        const desc = try shareDesc(grants, true, &storage);
        var id: c.gms_share_id = 0;
        try check(c.gms_share(buf.ctx.ptr, @backingInt(buf.handle), &desc, &id));
        defer buf.handle = .none;
        return .{ .id = @fromBackingInt(id), .view = .{ .ctx = buf.ctx, .handle = buf.handle } };
    }

    /// Moves exclusive ownership to `to` (gms_transfer): `buf` is spent and
    /// its old handle dead; the result is `to`'s. error.Busy while the
    /// buffer is shared or has other holders.
    pub fn transfer(buf: *Buffer, to: Context) Error!Buffer {
        var h: c.gms_buf = c.GMS_BUF_NULL;
        try check(c.gms_transfer(buf.ctx.ptr, @backingInt(buf.handle), to.ptr, &h));
        buf.handle = .none;
        return .{ .ctx = to, .handle = @fromBackingInt(h) };
    }

    /// `transfer` once the work queued on `stream` has finished.
    pub fn transferAsync(buf: *Buffer, to: Context, stream: Stream) Error!Buffer {
        var h: c.gms_buf = c.GMS_BUF_NULL;
        try check(c.gms_transfer_async(buf.ctx.ptr, @backingInt(buf.handle), to.ptr, stream, &h));
        buf.handle = .none;
        return .{ .ctx = to, .handle = @fromBackingInt(h) };
    }

    pub const beginAccess = Ordered(Buffer).beginAccess;
    pub const atomic = Ordered(Buffer).atomic;
    pub const fetchAdd = Ordered(Buffer).fetchAdd;
    pub const fetchAnd = Ordered(Buffer).fetchAnd;
    pub const fetchOr = Ordered(Buffer).fetchOr;
    pub const fetchXor = Ordered(Buffer).fetchXor;
    pub const fetchMin = Ordered(Buffer).fetchMin;
    pub const fetchMax = Ordered(Buffer).fetchMax;
    pub const swap = Ordered(Buffer).swap;
    pub const cmpxchg = Ordered(Buffer).cmpxchg;
    pub const atomicBatch = Ordered(Buffer).atomicBatch;
};

/// What `Buffer.freeze` gives: the share's id and the owner's view.
pub const Frozen = struct { id: ShareId, view: View };

/// A handle that may only read: an acquire for reading, or any holder of an
/// immutable share. It has no write methods, and its raw memory is `[]const
/// u8` (a read-only mapping where the block owns whole pages).
pub const View = struct {
    ctx: Context,
    handle: Handle,

    /// As `Buffer.deinit`.
    pub fn deinit(view: *View) void {
        deinitHandle(view.ctx, &view.handle);
    }

    pub fn release(view: *View) Error!void {
        try releaseHandle(view.ctx, &view.handle, null);
    }

    pub fn releaseAsync(view: *View, stream: Stream) Error!void {
        try releaseHandle(view.ctx, &view.handle, stream);
    }

    pub fn read(view: View, offset: u64, dest: []u8) Error!void {
        try readInto(view.ctx, view.handle, offset, dest);
    }

    pub fn info(view: View) Error!Info {
        return getInfo(view.ctx, view.handle);
    }

    /// The raw memory, read-only. error.AccessDenied for a reader of
    /// another tenant where the block has no read-only mapping.
    pub fn slice(view: View) Error![]const u8 {
        const i = try view.info();
        return (try rawPtr(view.ctx, view.handle))[0..@intCast(i.size)];
    }

    /// Windows: a view opens read windows (error.ReadOnly for read_write).
    pub const beginAccess = Ordered(View).beginAccess;
    /// The atomics, for the view of an atomic holder (acquireAtomic); a
    /// reader's view is refused with error.ReadOnly.
    pub const atomic = Ordered(View).atomic;
    pub const fetchAdd = Ordered(View).fetchAdd;
    pub const fetchAnd = Ordered(View).fetchAnd;
    pub const fetchOr = Ordered(View).fetchOr;
    pub const fetchXor = Ordered(View).fetchXor;
    pub const fetchMin = Ordered(View).fetchMin;
    pub const fetchMax = Ordered(View).fetchMax;
    pub const swap = Ordered(View).swap;
    pub const cmpxchg = Ordered(View).cmpxchg;
    pub const atomicBatch = Ordered(View).atomicBatch;
};

// ---- access windows and checked atomics (gms/access.h, docs/ordering.md) ------

pub const AccessOptions = struct {
    /// The stream whose work the window covers (null: the default stream).
    stream: Stream = null,
    /// false: error.Busy instead of waiting on the host for a conflicting
    /// window still open (GMS_ACCESS_NOWAIT).
    wait: bool = true,
};

/// An open access window: the work its holder queues on `stream` until
/// `end` reads (or writes) the buffer, and gms orders it after the
/// conflicting windows of the other holders, whatever their language.
///
///     var window = try buf.beginAccess(.read_write, .{});
///     defer window.end();
pub const Window = struct {
    ctx: Context,
    handle: Handle,
    stream: Stream,

    /// Ends the window (on a GPU: records the event later conflicting
    /// windows wait for). A refusal cannot be returned from here; it goes
    /// to the log: use `finish` to see it.
    pub fn end(w: Window) void {
        w.finish() catch |err| {
            log.warn("ending the window on handle 0x{x} refused: {t}: {s}", .{ @backingInt(w.handle), err, lastMessage() });
        };
    }

    /// `end`, returning gms's refusal (error.InvalidArgument: not open).
    pub fn finish(w: Window) Error!void {
        try check(c.gms_access_end(w.ctx.ptr, @backingInt(w.handle), w.stream));
    }
};

/// One operation of `atomicBatch` (gms_atomic_item).
pub const AtomicItem = extern struct {
    offset: u64,
    operand: u64,
    compare: u64 = 0,
    op: u32,
    width: u32,

    /// `op` with `operand` on the T word at `offset`; `compare` is read by
    /// .cas only.
    pub fn init(comptime T: type, op: AtomicOp, offset: u64, operand: T, compare: T) AtomicItem {
        return .{ .offset = offset, .operand = toBits(T, operand), .compare = toBits(T, compare), .op = opCode(T, op), .width = @sizeOf(T) };
    }
};

pub const AtomicOptions = struct {
    /// The stream the operation is queued on (null: the default stream).
    stream: Stream = null,
    /// Read by .cas only.
    compare: u64 = 0,
};

/// Where `atomicBatch` writes item i's old value: the 8-byte word at
/// `offset + 8*i` of `buffer` (a buffer of the same context).
pub const BatchResults = struct { buffer: *const Buffer, offset: u64 = 0 };

fn checkWord(comptime T: type) void {
    if (T != u32 and T != i32 and T != u64 and T != i64)
        @compileError("gms atomics work on u32, i32, u64 and i64 words, not " ++ @typeName(T));
}

fn toBits(comptime T: type, v: T) u64 {
    comptime checkWord(T);
    const U = @Int(.unsigned, @bitSizeOf(T));
    return @as(U, @bitCast(v));
}

fn fromBits(comptime T: type, bits: u64) T {
    comptime checkWord(T);
    const U = @Int(.unsigned, @bitSizeOf(T));
    return @bitCast(@as(U, @truncate(bits)));
}

fn opCode(comptime T: type, op: AtomicOp) u32 {
    const signed = @typeInfo(T).int.signedness == .signed;
    return switch (op) {
        .min => if (signed) c.GMS_ATOMIC_MIN_SIGNED else c.GMS_ATOMIC_MIN,
        .max => if (signed) c.GMS_ATOMIC_MAX_SIGNED else c.GMS_ATOMIC_MAX,
        else => @backingInt(op),
    };
}

/// Windows and atomics for a handle type (Buffer, View): every check is
/// gms's, so a reader's View is refused at run time (error.ReadOnly).
fn Ordered(comptime Self: type) type {
    return struct {
        /// Opens an access window of `mode` (.read or .read_write): readers
        /// run together, a writer alone, first come first served; waits on
        /// the host while a conflicting window is open (or, with .wait =
        /// false, error.Busy). error.ReadOnly: a write window on a handle
        /// that may not write; error.InvalidArgument: the handle already
        /// has a window. Release and transfer are refused (error.Busy)
        /// while it is open.
        pub fn beginAccess(self: Self, mode: Access, options: AccessOptions) Error!Window {
            const flags: u32 = if (options.wait) 0 else c.GMS_ACCESS_NOWAIT;
            try check(c.gms_access_begin(self.ctx.ptr, @backingInt(self.handle), @backingInt(mode), flags, options.stream));
            return .{ .ctx = self.ctx, .handle = self.handle, .stream = options.stream };
        }

        /// One checked atomic on the naturally aligned T word (u32, i32,
        /// u64, i64) at `offset`, returning its old value once the stream
        /// ran it. error.InvalidArgument: offset not a multiple of the
        /// width; error.OutOfBounds: not wholly inside; error.ReadOnly: a
        /// holder that may not write, or an immutable share.
        pub fn atomic(self: Self, comptime T: type, op: AtomicOp, offset: u64, operand: T, options: AtomicOptions) Error!T {
            var old: u64 = 0;
            try check(c.gms_atomic(self.ctx.ptr, @backingInt(self.handle), offset, opCode(T, op), @sizeOf(T), toBits(T, operand), options.compare, options.stream, &old));
            return fromBits(T, old);
        }

        /// Adds `value` (wrapping); returns the old word.
        pub fn fetchAdd(self: Self, comptime T: type, offset: u64, value: T) Error!T {
            return atomic(self, T, .add, offset, value, .{});
        }

        pub fn fetchAnd(self: Self, comptime T: type, offset: u64, value: T) Error!T {
            return atomic(self, T, .@"and", offset, value, .{});
        }

        pub fn fetchOr(self: Self, comptime T: type, offset: u64, value: T) Error!T {
            return atomic(self, T, .@"or", offset, value, .{});
        }

        pub fn fetchXor(self: Self, comptime T: type, offset: u64, value: T) Error!T {
            return atomic(self, T, .xor, offset, value, .{});
        }

        /// The smaller of the word and `value`, compared as T.
        pub fn fetchMin(self: Self, comptime T: type, offset: u64, value: T) Error!T {
            return atomic(self, T, .min, offset, value, .{});
        }

        pub fn fetchMax(self: Self, comptime T: type, offset: u64, value: T) Error!T {
            return atomic(self, T, .max, offset, value, .{});
        }

        /// Stores `value`; returns the old word.
        pub fn swap(self: Self, comptime T: type, offset: u64, value: T) Error!T {
            return atomic(self, T, .exchange, offset, value, .{});
        }

        /// Stores `new` if the word holds `expected`, as @cmpxchgStrong:
        /// null when it swapped, else the value it held.
        pub fn cmpxchg(self: Self, comptime T: type, offset: u64, expected: T, new: T) Error!?T {
            const old = try atomic(self, T, .cas, offset, new, .{ .compare = toBits(T, expected) });
            return if (old == expected) null else old;
        }

        /// Many operations in one call, all checked before any runs.
        pub fn atomicBatch(self: Self, items: []const AtomicItem, results: ?BatchResults, stream: Stream) Error!void {
            const res: c.gms_buf = if (results) |r| @backingInt(r.buffer.handle) else c.GMS_BUF_NULL;
            const res_offset: u64 = if (results) |r| r.offset else 0;
            try check(c.gms_atomic_batch(self.ctx.ptr, @backingInt(self.handle), @ptrCast(items.ptr), items.len, res, res_offset, stream));
        }
    };
}

comptime {
    const C = c.gms_atomic_item;
    if (@sizeOf(AtomicItem) != @sizeOf(C) or @offsetOf(AtomicItem, "op") != @offsetOf(C, "op") or
        @offsetOf(AtomicItem, "width") != @offsetOf(C, "width"))
        @compileError("gms.zig's AtomicItem disagrees with gms/access.h");
}

// ---- testing -----------------------------------------------------------------

/// gms/testing.h: knobs for testing code that uses gms. Not a stable API.
pub const testing = struct {
    /// A private runtime whose `fail_nth_call`th fallible internal operation
    /// (a backend call or a metadata allocation, counted from 1 at the
    /// open) fails; 0: none does.
    pub fn openRuntime(options: Options, fail_nth_call: u64) Error!Runtime {
        const opts = try options.toC();
        const knobs: c.gms_testing_options = .{ .fail_nth_call = fail_nth_call };
        var ptr: ?*c.gms_runtime = null;
        try check(c.gms_testing_runtime_open(&ptr, &opts, &knobs));
        return .{ .ptr = ptr.? };
    }

    /// gms's twin of std.testing.checkAllAllocationFailures: runs
    /// `test_fn(runtime, extra_args...)` on a fresh runtime whose 1st, 2nd,
    /// 3rd ... internal operation fails, until it succeeds. Each failure
    /// must come back as a gms error (anything else is returned), with
    /// every context closed and nothing left behind: no live block, no
    /// share, no leak reclaimed at a context close. Returns how many
    /// operations the first success needed.
    pub fn checkAllFailures(options: Options, comptime test_fn: anytype, extra_args: anytype) !u64 {
        var n: u64 = 1;
        while (n < 100_000) : (n += 1) {
            var rt = openRuntime(options, n) catch |err| {
                if (lastMessage().len == 0) return error.NoMessage;
                switch (err) {
                    error.OutOfMemory, error.BackendFailure => continue,
                    else => return err,
                }
            };
            defer rt.deinit();
            const outcome = @call(.auto, test_fn, .{rt} ++ extra_args);
            try expectNothingLeft(rt, n);
            if (outcome) |_| {
                return n;
            } else |err| {
                if (@as(anyerror, err) == error.Unexpected or !isGmsError(err)) return err;
            }
        }
        return error.NeverSucceeded;
    }

    fn isGmsError(err: anyerror) bool {
        inline for (@typeInfo(Error).error_set.error_names.?) |name| {
            if (err == @field(anyerror, name)) return true;
        }
        return false;
    }

    /// Fails unless the runtime holds no context, live block or share and
    /// reclaimed no leaked block.
    pub fn expectNothingLeft(rt: Runtime, fail_nth_call: u64) !void {
        const s = try rt.stats();
        if (s.contexts != 0 or s.live_blocks != 0 or s.shares != 0 or s.leaked_blocks != 0) {
            std.debug.print(
                "gms: with fail_nth_call = {d}: {d} contexts, {d} live blocks, {d} shares, {d} leaked blocks left\n",
                .{ fail_nth_call, s.contexts, s.live_blocks, s.shares, s.leaked_blocks },
            );
            return error.LeftBehind;
        }
    }
};
