//! The C API of `include/gms.h`, `include/gms/access.h` and
//! `include/gms/testing.h`, declared by
//! hand, name for name and field for field (no bindgen: it is not available
//! offline). `tests/abi.rs` compares every struct's size and offsets with
//! the C compiler's. Everything here is `unsafe` to call and follows the C
//! rules; the rest of the crate wraps it.
//!
//! C enums are `c_uint` (what GCC and Clang give an enum with no negative
//! value); the anonymous enums of codes and flags are plain constants.

#![allow(non_camel_case_types, missing_docs)]

use std::ffi::{c_char, c_int, c_uint, c_void};

pub const GMS_VERSION_MAJOR: u32 = 0;
pub const GMS_VERSION_MINOR: u32 = 1;
pub const GMS_VERSION_PATCH: u32 = 0;
pub const GMS_VERSION: u32 = GMS_VERSION_MAJOR * 10000 + GMS_VERSION_MINOR * 100 + GMS_VERSION_PATCH;

// ---- errors ----
pub const GMS_OK: c_int = 0;
pub const GMS_E_INVALID_ARG: c_int = -1;
pub const GMS_E_INVALID_HANDLE: c_int = -2;
pub const GMS_E_ACCESS_DENIED: c_int = -3;
pub const GMS_E_OUT_OF_BOUNDS: c_int = -4;
pub const GMS_E_QUOTA: c_int = -5;
pub const GMS_E_NO_MEMORY: c_int = -6;
pub const GMS_E_READ_ONLY: c_int = -7;
pub const GMS_E_CORRUPTION: c_int = -8;
pub const GMS_E_BACKEND: c_int = -9;
pub const GMS_E_UNSUPPORTED: c_int = -10;
pub const GMS_E_BUSY: c_int = -11;

// ---- runtime ----
#[repr(C)]
pub struct gms_runtime {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct gms_context {
    _opaque: [u8; 0],
}

pub type gms_backend_kind = c_uint;
pub const GMS_BACKEND_AUTO: gms_backend_kind = 0;
pub const GMS_BACKEND_HOST: gms_backend_kind = 1;
pub const GMS_BACKEND_CUDA: gms_backend_kind = 2;
pub const GMS_BACKEND_HIP: gms_backend_kind = 3;

pub type gms_log_level = c_uint;
pub const GMS_LOG_ERROR: gms_log_level = 0;
pub const GMS_LOG_WARN: gms_log_level = 1;
pub const GMS_LOG_INFO: gms_log_level = 2;

pub type gms_log_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, level: gms_log_level, msg: *const c_char)>;

pub type gms_safety_mode = c_uint;
pub const GMS_SAFETY_ON: gms_safety_mode = 0;
pub const GMS_SAFETY_OFF: gms_safety_mode = 1;

pub type gms_corruption_policy = c_uint;
pub const GMS_ON_CORRUPTION_REPORT: gms_corruption_policy = 0;
pub const GMS_ON_CORRUPTION_ABORT: gms_corruption_policy = 1;

pub const GMS_RUNTIME_OPTIONS_VERSION: u32 = 2;
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gms_runtime_options {
    pub version: u32,
    pub backend: gms_backend_kind,
    pub device: c_int,
    pub granule_bytes: u64,
    pub chunk_bytes: u64,
    pub retain_bytes: u64,
    pub log: gms_log_fn,
    pub log_user: *mut c_void,
    pub reserved: u64,
    pub audit_dir: *const c_char,
    pub audit_key: *const u8,
    pub audit_key_len: usize,
    pub audit_key_file: *const c_char,
    pub audit_lossy: c_int,
    pub audit_segment_bytes: u64,
    pub audit_retention_days: u32,
    pub safety: gms_safety_mode,
    pub redzone_bytes: u32,
    pub quarantine_bytes: u64,
    pub quarantine_blocks: u64,
    pub scrub_batch: u32,
    pub verify_interval_ms: u32,
    pub on_corruption: gms_corruption_policy,
    pub secret_multipass: c_int,
    pub max_held_bytes: u64,
    /// Version 2.
    pub broker: *const c_char,
}

// ---- contexts ----
pub type gms_level = c_uint;
pub const GMS_LEVEL_PUBLIC: gms_level = 0;
pub const GMS_LEVEL_INTERNAL: gms_level = 1;
pub const GMS_LEVEL_CONFIDENTIAL: gms_level = 2;
pub const GMS_LEVEL_SECRET: gms_level = 3;

pub type gms_language = c_uint;
pub const GMS_LANG_C: gms_language = 0;
pub const GMS_LANG_RUST: gms_language = 1;
pub const GMS_LANG_ELIXIR: gms_language = 2;
pub const GMS_LANG_JULIA: gms_language = 3;
pub const GMS_LANG_ZIG: gms_language = 4;
pub const GMS_LANG_NIM: gms_language = 5;
pub const GMS_LANG_PYTHON: gms_language = 6;
pub const GMS_LANG_OTHER: gms_language = 7;

pub const GMS_NAME_MAX: usize = 63;

pub const GMS_CONTEXT_DESC_VERSION: u32 = 1;
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gms_context_desc {
    pub version: u32,
    pub tenant: *const c_char,
    pub user: *const c_char,
    pub level: gms_level,
    pub language: gms_language,
}

// ---- quotas and buffers ----
pub const GMS_UNLIMITED: u64 = u64::MAX;

pub type gms_buf = u64;
pub const GMS_BUF_NULL: gms_buf = 0;
pub const GMS_ALIGNMENT: u32 = 256;
pub const GMS_ALLOC_ZERO: u32 = 1 << 0;
pub const GMS_ALLOC_PAGES: u32 = 1 << 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gms_buf_info {
    pub size: u64,
    pub block_size: u64,
    pub device_ptr: u64,
    pub pool_id: u64,
    pub flags: u32,
    pub level: gms_level,
    pub language: gms_language,
    pub tenant: [c_char; GMS_NAME_MAX + 1],
    pub user: [c_char; GMS_NAME_MAX + 1],
    pub access: u32,
    pub holders: u32,
    pub share_id: u64,
    pub immutable: c_int,
    pub read_only_view: c_int,
}

// ---- sharing ----
pub type gms_share_id = u64;

pub type gms_access = c_uint;
pub const GMS_ACCESS_READ: gms_access = 1;
pub const GMS_ACCESS_READ_WRITE: gms_access = 2;

pub const GMS_ANY_LANGUAGE: c_int = -1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gms_share_grant {
    pub tenant: *const c_char,
    pub user: *const c_char,
    pub language: c_int,
    pub mode: gms_access,
}

pub const GMS_SHARE_GRANTS_MAX: usize = 16;

pub const GMS_SHARE_DESC_VERSION: u32 = 1;
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gms_share_desc {
    pub version: u32,
    pub grants: *const gms_share_grant,
    pub ngrants: usize,
    pub immutable: c_int,
}

// ---- memory pressure ----
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gms_pressure {
    pub tenant: *const c_char,
    pub bytes_wanted: u64,
    pub reason: c_int,
}

pub type gms_pressure_fn = Option<unsafe extern "C" fn(user: *mut c_void, p: *const gms_pressure)>;

// ---- statistics and verification ----
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gms_stats {
    pub live_bytes: u64,
    pub live_blocks: u64,
    pub peak_live_bytes: u64,
    pub held_bytes: u64,
    pub peak_held_bytes: u64,
    pub reserved_bytes: u64,
    pub fragmentation: f64,
    pub allocs: u64,
    pub frees: u64,
    pub quota_refusals: u64,
    pub leaked_blocks: u64,
    pub leaked_bytes: u64,
    pub pools: u64,
    pub contexts: u64,
    pub tenants: u64,
    pub shares: u64,
    pub pressure_events: u64,
    pub pressure_recovered: u64,
    pub pressure_steps: u64,
    pub maps: u64,
    pub unmaps: u64,
    pub device_waits: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gms_tenant_stats {
    pub tenant: [c_char; GMS_NAME_MAX + 1],
    pub live_bytes: u64,
    pub live_blocks: u64,
    pub peak_live_bytes: u64,
    pub held_bytes: u64,
    pub max_bytes: u64,
    pub max_allocs: u64,
    pub quota_refusals: u64,
    pub leaked_blocks: u64,
    pub leaked_bytes: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gms_report {
    pub pools: u64,
    pub chunks: u64,
    pub live_blocks: u64,
    pub free_blocks: u64,
    pub live_handles: u64,
    pub violations: u64,
    pub first_violation: [c_char; 512],
}

// ---- corruption reports ----
pub type gms_violation_kind = c_uint;
pub const GMS_VIOLATION_OVERFLOW: gms_violation_kind = 1;
pub const GMS_VIOLATION_UNDERFLOW: gms_violation_kind = 2;
pub const GMS_VIOLATION_WRITE_AFTER_FREE: gms_violation_kind = 3;
pub const GMS_VIOLATION_FREE_MEMORY: gms_violation_kind = 4;
pub const GMS_VIOLATION_WIPE_FAILED: gms_violation_kind = 5;
pub const GMS_VIOLATION_INVARIANT: gms_violation_kind = 6;
pub const GMS_VIOLATION_IMMUTABLE_WRITE: gms_violation_kind = 7;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gms_violation {
    pub kind: gms_violation_kind,
    pub tenant: *const c_char,
    pub handle: gms_buf,
    pub address: u64,
    pub offset: i64,
    pub size: u64,
    pub message: *const c_char,
}

pub type gms_violation_fn = Option<unsafe extern "C" fn(user: *mut c_void, v: *const gms_violation)>;

// ---- gms/audit.h (included by gms.h) ----
pub type gms_audit_op = c_uint;
pub const GMS_AUDIT_RUNTIME_OPEN: gms_audit_op = 1;
pub const GMS_AUDIT_RUNTIME_CLOSE: gms_audit_op = 2;
pub const GMS_AUDIT_CONTEXT_OPEN: gms_audit_op = 3;
pub const GMS_AUDIT_CONTEXT_CLOSE: gms_audit_op = 4;
pub const GMS_AUDIT_ALLOC: gms_audit_op = 5;
pub const GMS_AUDIT_FREE: gms_audit_op = 6;
pub const GMS_AUDIT_SHARE: gms_audit_op = 7;
pub const GMS_AUDIT_ACQUIRE: gms_audit_op = 8;
pub const GMS_AUDIT_RELEASE: gms_audit_op = 9;
pub const GMS_AUDIT_TRANSFER: gms_audit_op = 10;
pub const GMS_AUDIT_REVOKE: gms_audit_op = 11;
pub const GMS_AUDIT_QUOTA_REFUSED: gms_audit_op = 12;
pub const GMS_AUDIT_ACCESS_DENIED: gms_audit_op = 13;
pub const GMS_AUDIT_VIOLATION: gms_audit_op = 14;
pub const GMS_AUDIT_LEAK: gms_audit_op = 15;
pub const GMS_AUDIT_WIPE: gms_audit_op = 16;
pub const GMS_AUDIT_CONFIG: gms_audit_op = 17;
pub const GMS_AUDIT_DROPPED: gms_audit_op = 18;

// ---- gms/access.h: access windows and checked atomics ----
pub const GMS_ACCESS_NOWAIT: u32 = 1 << 0;
pub const GMS_ACCESS_ATOMIC: gms_access = 3;

pub type gms_atomic_op = c_uint;
pub const GMS_ATOMIC_ADD: gms_atomic_op = 1;
pub const GMS_ATOMIC_AND: gms_atomic_op = 2;
pub const GMS_ATOMIC_OR: gms_atomic_op = 3;
pub const GMS_ATOMIC_XOR: gms_atomic_op = 4;
pub const GMS_ATOMIC_MIN: gms_atomic_op = 5;
pub const GMS_ATOMIC_MAX: gms_atomic_op = 6;
pub const GMS_ATOMIC_MIN_SIGNED: gms_atomic_op = 7;
pub const GMS_ATOMIC_MAX_SIGNED: gms_atomic_op = 8;
pub const GMS_ATOMIC_EXCHANGE: gms_atomic_op = 9;
pub const GMS_ATOMIC_CAS: gms_atomic_op = 10;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct gms_atomic_item {
    pub offset: u64,
    pub operand: u64,
    pub compare: u64,
    pub op: u32,
    pub width: u32,
}

// ---- gms/testing.h (not a stable API) ----
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct gms_testing_options {
    pub fail_nth_call: u64,
}

unsafe extern "C" {
    pub fn gms_version() -> u32;
    pub fn gms_strerror(code: c_int) -> *const c_char;
    pub fn gms_error_last() -> *const c_char;

    pub fn gms_runtime_options_init_version(opts: *mut gms_runtime_options, version: u32) -> c_int;
    pub fn gms_runtime_options_init(opts: *mut gms_runtime_options);
    pub fn gms_runtime_open(out: *mut *mut gms_runtime, opts: *const gms_runtime_options) -> c_int;
    pub fn gms_runtime_close(rt: *mut gms_runtime);
    pub fn gms_audit_flush(rt: *mut gms_runtime) -> c_int;
    pub fn gms_runtime_backend_name(rt: *const gms_runtime) -> *const c_char;

    pub fn gms_context_desc_init_version(desc: *mut gms_context_desc, version: u32) -> c_int;
    pub fn gms_context_desc_init(desc: *mut gms_context_desc);
    pub fn gms_context_open(
        out: *mut *mut gms_context,
        rt: *mut gms_runtime,
        desc: *const gms_context_desc,
    ) -> c_int;
    pub fn gms_context_close(ctx: *mut gms_context);
    pub fn gms_level_name(level: gms_level) -> *const c_char;
    pub fn gms_language_name(language: gms_language) -> *const c_char;

    pub fn gms_tenant_set_quota(
        rt: *mut gms_runtime,
        tenant: *const c_char,
        max_bytes: u64,
        max_allocs: u64,
    ) -> c_int;

    pub fn gms_alloc(ctx: *mut gms_context, size: usize, flags: u32, out: *mut gms_buf) -> c_int;
    pub fn gms_free(ctx: *mut gms_context, buf: gms_buf) -> c_int;
    pub fn gms_alloc_async(
        ctx: *mut gms_context,
        size: usize,
        flags: u32,
        stream: *mut c_void,
        out: *mut gms_buf,
    ) -> c_int;
    pub fn gms_free_async(ctx: *mut gms_context, buf: gms_buf, stream: *mut c_void) -> c_int;
    pub fn gms_buf_info_get(ctx: *mut gms_context, buf: gms_buf, out: *mut gms_buf_info) -> c_int;
    pub fn gms_buf_ptr(ctx: *mut gms_context, buf: gms_buf, out: *mut *mut c_void) -> c_int;
    pub fn gms_write(ctx: *mut gms_context, dst: gms_buf, off: u64, src: *const c_void, len: usize) -> c_int;
    pub fn gms_read(ctx: *mut gms_context, src: gms_buf, off: u64, dst: *mut c_void, len: usize) -> c_int;
    pub fn gms_copy(
        ctx: *mut gms_context,
        dst: gms_buf,
        dst_off: u64,
        src: gms_buf,
        src_off: u64,
        len: usize,
    ) -> c_int;
    pub fn gms_fill(ctx: *mut gms_context, dst: gms_buf, off: u64, byte: c_int, len: usize) -> c_int;

    pub fn gms_share_desc_init_version(desc: *mut gms_share_desc, version: u32) -> c_int;
    pub fn gms_share_desc_init(desc: *mut gms_share_desc);
    pub fn gms_share(
        owner: *mut gms_context,
        buf: gms_buf,
        desc: *const gms_share_desc,
        out: *mut gms_share_id,
    ) -> c_int;
    pub fn gms_acquire(ctx: *mut gms_context, id: gms_share_id, mode: gms_access, out: *mut gms_buf)
    -> c_int;
    pub fn gms_release(ctx: *mut gms_context, buf: gms_buf) -> c_int;
    pub fn gms_transfer(
        from: *mut gms_context,
        buf: gms_buf,
        to: *mut gms_context,
        out: *mut gms_buf,
    ) -> c_int;
    pub fn gms_transfer_async(
        from: *mut gms_context,
        buf: gms_buf,
        to: *mut gms_context,
        stream: *mut c_void,
        out: *mut gms_buf,
    ) -> c_int;
    pub fn gms_revoke(owner: *mut gms_context, id: gms_share_id) -> c_int;

    pub fn gms_on_pressure(rt: *mut gms_runtime, fn_: gms_pressure_fn, user: *mut c_void) -> c_int;

    pub fn gms_stats_get(rt: *mut gms_runtime, out: *mut gms_stats) -> c_int;
    pub fn gms_tenant_stats_get(rt: *mut gms_runtime, index: u64, out: *mut gms_tenant_stats) -> c_int;
    pub fn gms_trim(rt: *mut gms_runtime) -> c_int;
    pub fn gms_sync(rt: *mut gms_runtime) -> c_int;
    pub fn gms_verify(rt: *mut gms_runtime, out: *mut gms_report) -> c_int;

    pub fn gms_on_violation(rt: *mut gms_runtime, fn_: gms_violation_fn, user: *mut c_void) -> c_int;

    pub fn gms_access_begin(
        ctx: *mut gms_context,
        buf: gms_buf,
        mode: gms_access,
        flags: u32,
        stream: *mut c_void,
    ) -> c_int;
    pub fn gms_access_end(ctx: *mut gms_context, buf: gms_buf, stream: *mut c_void) -> c_int;
    pub fn gms_atomic(
        ctx: *mut gms_context,
        buf: gms_buf,
        offset: u64,
        op: gms_atomic_op,
        width: u32,
        operand: u64,
        compare: u64,
        stream: *mut c_void,
        old: *mut u64,
    ) -> c_int;
    pub fn gms_atomic_batch(
        ctx: *mut gms_context,
        buf: gms_buf,
        items: *const gms_atomic_item,
        n: usize,
        results: gms_buf,
        results_offset: u64,
        stream: *mut c_void,
    ) -> c_int;

    pub fn gms_testing_runtime_open(
        out: *mut *mut gms_runtime,
        opts: *const gms_runtime_options,
        testing: *const gms_testing_options,
    ) -> c_int;
    pub fn gms_testing_audit_clock_skew(ns: i64);
    pub fn gms_testing_audit_ring_slots(slots: u32) -> c_int;
}
