//! `Runtime`: a gms runtime, private (options) or the process-wide shared one.

use std::cell::Cell;
use std::ffi::{CStr, CString, c_char, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};

use crate::context::ContextBuilder;
use crate::error::{Error, ErrorKind, Result, check};
use crate::sys;
use crate::types::{Backend, LogLevel, OnCorruption, Safety, ViolationKind};

type LogFn = dyn Fn(LogLevel, &str) + Send + Sync;
type ViolationFn = dyn Fn(&Violation) + Send + Sync;
type PressureFn = dyn Fn(&Pressure) + Send + Sync;

/// A callback registered with libgms, boxed twice so its address (the
/// `user` pointer libgms keeps) is thin and never moves.
#[allow(dead_code)] // held only to keep the closures alive
enum Hook {
    Violation(Box<Box<ViolationFn>>),
    Pressure(Box<Box<PressureFn>>),
}

/// Callbacks registered on the shared runtime. libgms has no call to
/// unregister one, and the shared runtime may outlive every Rust handle on
/// it (another language in the process still holds it), so they are kept
/// for the life of the process.
static SHARED_HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

thread_local! {
    /// How deep this thread is inside callbacks libgms called.
    static IN_CALLBACK: Cell<u32> = const { Cell::new(0) };
}

/// Marks the thread as inside a libgms callback while alive.
struct CallbackGuard;

impl CallbackGuard {
    fn enter() -> CallbackGuard {
        IN_CALLBACK.with(|d| d.set(d.get() + 1));
        CallbackGuard
    }
}

impl Drop for CallbackGuard {
    fn drop(&mut self) {
        IN_CALLBACK.with(|d| d.set(d.get() - 1));
    }
}

fn in_callback() -> bool {
    IN_CALLBACK.with(|d| d.get() > 0)
}

/// Copies a C string that may be NULL.
fn lossy(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libgms passes NUL-terminated strings valid for the call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A C string of a name or path given to gms; a NUL byte inside is
/// `InvalidArg` (libgms never sees it).
pub(crate) fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s)
        .map_err(|_| Error::new(sys::GMS_E_INVALID_ARG, format!("gms: the {what} {s:?} contains a NUL byte")))
}

/// Text out of a fixed C array (a tenant name in a stats struct).
pub(crate) fn from_c_array(a: &[c_char]) -> String {
    let bytes: Vec<u8> = a.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

unsafe extern "C" fn log_trampoline(user: *mut c_void, level: sys::gms_log_level, msg: *const c_char) {
    let _guard = CallbackGuard::enter();
    // SAFETY: user is the Box<LogFn> the runtime registered, which lives
    // until gms_runtime_close has returned.
    let f = unsafe { &*(user as *const Box<LogFn>) };
    f(LogLevel::from_raw(level).unwrap_or(LogLevel::Error), &lossy(msg));
}

unsafe extern "C" fn violation_trampoline(user: *mut c_void, v: *const sys::gms_violation) {
    let _guard = CallbackGuard::enter();
    // SAFETY: user is a Box<ViolationFn> the runtime keeps as long as
    // libgms may call it; v is valid for the call.
    let (f, v) = unsafe { (&*(user as *const Box<ViolationFn>), &*v) };
    f(&Violation {
        kind: ViolationKind::from_raw(v.kind),
        tenant: lossy(v.tenant),
        handle: v.handle,
        address: v.address,
        offset: v.offset,
        size: v.size,
        message: lossy(v.message),
    });
}

unsafe extern "C" fn pressure_trampoline(user: *mut c_void, p: *const sys::gms_pressure) {
    let _guard = CallbackGuard::enter();
    // SAFETY: as for violation_trampoline.
    let (f, p) = unsafe { (&*(user as *const Box<PressureFn>), &*p) };
    f(&Pressure {
        tenant: lossy(p.tenant),
        bytes_wanted: p.bytes_wanted,
        reason: ErrorKind::from_code(p.reason),
    });
}

/// A corruption report, as the violation callbacks receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// What was found; `None` for a kind this crate does not know.
    pub kind: Option<ViolationKind>,
    /// The pool's tenant.
    pub tenant: String,
    /// The buffer's handle (maybe no longer live).
    pub handle: u64,
    /// The first byte found changed (an immutable share's start).
    pub address: u64,
    /// Of that byte from the buffer's start.
    pub offset: i64,
    /// The buffer's size.
    pub size: u64,
    /// What was found where, with the block's history.
    pub message: String,
}

/// An allocation that ran short, as the pressure callbacks receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pressure {
    /// Whose allocation failed.
    pub tenant: String,
    /// The size asked for.
    pub bytes_wanted: u64,
    /// [`ErrorKind::NoMemory`] or [`ErrorKind::Quota`].
    pub reason: ErrorKind,
}

/// `gms_stats`: the runtime's figures, all pools together.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)] // the fields are gms_stats's, documented in gms.h
pub struct Stats {
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

/// `gms_tenant_stats`: one tenant's figures and quota.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)] // the fields are gms_tenant_stats's
pub struct TenantStats {
    pub tenant: String,
    pub live_bytes: u64,
    pub live_blocks: u64,
    pub peak_live_bytes: u64,
    pub held_bytes: u64,
    /// `None`: no limit.
    pub max_bytes: Option<u64>,
    /// `None`: no limit.
    pub max_allocs: Option<u64>,
    pub quota_refusals: u64,
    pub leaked_blocks: u64,
    pub leaked_bytes: u64,
}

/// `gms_report`: what a [`Runtime::verify`] walk saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)] // the fields are gms_report's
pub struct Report {
    pub pools: u64,
    pub chunks: u64,
    pub live_blocks: u64,
    pub free_blocks: u64,
    pub live_handles: u64,
}

fn limit(v: u64) -> Option<u64> {
    (v != sys::GMS_UNLIMITED).then_some(v)
}

pub(crate) struct RuntimeInner {
    ptr: NonNull<sys::gms_runtime>,
    shared: bool,
    log: Option<Box<Box<LogFn>>>,
    hooks: Mutex<Vec<Hook>>,
}

// SAFETY: every gms function is thread-safe (docs/threading.md, rule 1);
// the closures kept here are Send + Sync.
unsafe impl Send for RuntimeInner {}
// SAFETY: as above.
unsafe impl Sync for RuntimeInner {}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        if in_callback() {
            // A callback dropped the last handle on a runtime: closing it
            // there is forbidden (docs/threading.md, "Callbacks that call
            // gms"), since the call reporting may be this runtime's. It
            // stays open, with its callbacks, until the process ends.
            eprintln!("gms: a Runtime's last handle was dropped inside a gms callback; it is left open");
            std::mem::forget(self.log.take());
            std::mem::forget(std::mem::take(&mut *self.hooks.lock().unwrap_or_else(|e| e.into_inner())));
            return;
        }
        // SAFETY: the pointer came from gms_runtime_open and is closed once,
        // here, when no Context (each holds a Runtime) is left; the
        // callbacks are freed only after the close returns.
        unsafe { sys::gms_runtime_close(self.ptr.as_ptr()) };
    }
}

/// A gms runtime: a backend, its pools and tenants, its safety settings.
///
/// `Runtime` is a cheap handle: clones share one C runtime, which is
/// closed when the last clone, and the last [`Context`](crate::Context) and
/// [`Buffer`](crate::Buffer) made from it, are gone. gms's rule that closing
/// an object still in use is the caller's bug (docs/threading.md, rule 5)
/// is thus kept by reference counting rather than by lifetimes: a
/// `Context` or `Buffer` can be stored next to its runtime, moved into a
/// spawned thread or kept in a long-lived struct, and none of them can
/// outlive what it calls through. It is `Send + Sync`: every gms function
/// is thread-safe.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("ptr", &self.inner.ptr).field("shared", &self.inner.shared).finish()
    }
}

impl Runtime {
    /// The process-wide runtime (`gms_runtime_open(&rt, NULL)`), with default
    /// settings: every language in the process that opens it gets the same
    /// one, so buffers can be shared between them. Each `shared()` counts
    /// one reference, given back when its last clone is dropped.
    pub fn shared() -> Result<Runtime> {
        let mut ptr = ptr::null_mut();
        // SAFETY: ptr is a valid out-parameter; NULL options ask for the
        // shared runtime.
        check(unsafe { sys::gms_runtime_open(&mut ptr, ptr::null()) })?;
        Ok(Runtime::from_open(ptr, true, None))
    }

    /// A builder for a private runtime with options.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    fn from_open(ptr: *mut sys::gms_runtime, shared: bool, log: Option<Box<Box<LogFn>>>) -> Runtime {
        let ptr = NonNull::new(ptr).expect("gms_runtime_open returned GMS_OK and NULL");
        Runtime { inner: Arc::new(RuntimeInner { ptr, shared, log, hooks: Mutex::new(Vec::new()) }) }
    }

    /// The `gms_runtime *`, for another binding in the process. It is valid
    /// as long as this `Runtime` (or a clone) is.
    pub fn as_ptr(&self) -> *mut sys::gms_runtime {
        self.inner.ptr.as_ptr()
    }

    /// Whether this is the process-wide runtime.
    pub fn is_shared(&self) -> bool {
        self.inner.shared
    }

    /// The backend in use (`gms_runtime_backend_name`): never `Auto`.
    pub fn backend(&self) -> Backend {
        // SAFETY: the runtime is open; the name is a static string.
        let name = unsafe { CStr::from_ptr(sys::gms_runtime_backend_name(self.as_ptr())) };
        match name.to_bytes() {
            b"host" => Backend::Host,
            b"cuda" => Backend::Cuda,
            b"hip" => Backend::Hip,
            _ => Backend::Auto,
        }
    }

    /// A builder for a context of `tenant` (who is acting); the user is the
    /// tenant's name, the level `Internal` and the language Rust unless the
    /// builder says otherwise.
    pub fn context(&self, tenant: &str) -> ContextBuilder {
        ContextBuilder::new(self.clone(), tenant)
    }

    /// Limits a tenant's live bytes and live allocations
    /// (`gms_tenant_set_quota`); `None` lifts a limit.
    pub fn set_quota(&self, tenant: &str, max_bytes: Option<u64>, max_allocs: Option<u64>) -> Result<()> {
        let tenant = c_string("tenant", tenant)?;
        // SAFETY: the runtime is open and tenant a C string for the call.
        check(unsafe {
            sys::gms_tenant_set_quota(
                self.as_ptr(),
                tenant.as_ptr(),
                max_bytes.unwrap_or(sys::GMS_UNLIMITED),
                max_allocs.unwrap_or(sys::GMS_UNLIMITED),
            )
        })
    }

    /// `gms_stats`.
    pub fn stats(&self) -> Result<Stats> {
        // SAFETY: gms_stats is plain data; all zeros is a valid value.
        let mut s: sys::gms_stats = unsafe { std::mem::zeroed() };
        // SAFETY: the runtime is open and s a valid out-parameter.
        check(unsafe { sys::gms_stats_get(self.as_ptr(), &mut s) })?;
        Ok(Stats {
            live_bytes: s.live_bytes,
            live_blocks: s.live_blocks,
            peak_live_bytes: s.peak_live_bytes,
            held_bytes: s.held_bytes,
            peak_held_bytes: s.peak_held_bytes,
            reserved_bytes: s.reserved_bytes,
            fragmentation: s.fragmentation,
            allocs: s.allocs,
            frees: s.frees,
            quota_refusals: s.quota_refusals,
            leaked_blocks: s.leaked_blocks,
            leaked_bytes: s.leaked_bytes,
            pools: s.pools,
            contexts: s.contexts,
            tenants: s.tenants,
            shares: s.shares,
            pressure_events: s.pressure_events,
            pressure_recovered: s.pressure_recovered,
            pressure_steps: s.pressure_steps,
            maps: s.maps,
            unmaps: s.unmaps,
            device_waits: s.device_waits,
        })
    }

    /// `gms_tenant_stats_get` for the tenant at `index` (tenants are counted
    /// in the order they first appeared, up to `stats().tenants`).
    pub fn tenant_stats_at(&self, index: u64) -> Result<TenantStats> {
        // SAFETY: plain data; all zeros is a valid value.
        let mut t: sys::gms_tenant_stats = unsafe { std::mem::zeroed() };
        // SAFETY: the runtime is open and t a valid out-parameter.
        check(unsafe { sys::gms_tenant_stats_get(self.as_ptr(), index, &mut t) })?;
        Ok(TenantStats {
            tenant: from_c_array(&t.tenant),
            live_bytes: t.live_bytes,
            live_blocks: t.live_blocks,
            peak_live_bytes: t.peak_live_bytes,
            held_bytes: t.held_bytes,
            max_bytes: limit(t.max_bytes),
            max_allocs: limit(t.max_allocs),
            quota_refusals: t.quota_refusals,
            leaked_blocks: t.leaked_blocks,
            leaked_bytes: t.leaked_bytes,
        })
    }

    /// Every tenant's figures.
    pub fn tenant_stats(&self) -> Result<Vec<TenantStats>> {
        (0..self.stats()?.tenants).map(|i| self.tenant_stats_at(i)).collect()
    }

    /// Returns unused mapped memory to the backend now (`gms_trim`).
    pub fn trim(&self) -> Result<()> {
        // SAFETY: the runtime is open.
        check(unsafe { sys::gms_trim(self.as_ptr()) })
    }

    /// Waits for the safety work queued so far and reports what it found
    /// (`gms_sync`).
    pub fn sync(&self) -> Result<()> {
        // SAFETY: the runtime is open.
        check(unsafe { sys::gms_sync(self.as_ptr()) })
    }

    /// Writes and seals every audit record so far (`gms_audit_flush`);
    /// [`ErrorKind::Unsupported`] without a trail.
    pub fn audit_flush(&self) -> Result<()> {
        // SAFETY: the runtime is open.
        check(unsafe { sys::gms_audit_flush(self.as_ptr()) })
    }

    /// Walks all state and checks every invariant (`gms_verify`). A
    /// violation is [`ErrorKind::Corruption`] with the first violation in
    /// its message, and is also delivered to the violation callbacks.
    pub fn verify(&self) -> Result<Report> {
        // SAFETY: plain data; all zeros is a valid value.
        let mut r: sys::gms_report = unsafe { std::mem::zeroed() };
        // SAFETY: the runtime is open and r a valid out-parameter.
        let rc = unsafe { sys::gms_verify(self.as_ptr(), &mut r) };
        if rc == sys::GMS_E_CORRUPTION {
            let first = from_c_array(&r.first_violation);
            let msg = format!("gms_verify: {} violation(s); the first: {first}", r.violations);
            return Err(Error::new(rc, msg));
        }
        check(rc)?;
        Ok(Report {
            pools: r.pools,
            chunks: r.chunks,
            live_blocks: r.live_blocks,
            free_blocks: r.free_blocks,
            live_handles: r.live_handles,
        })
    }

    /// Calls `f` on every corruption found (`gms_on_violation`), from the
    /// thread that found it: a caller's, the background verifier's or the
    /// collector's, hence `Send + Sync`. At most 16 per runtime. On the
    /// shared runtime the closure is kept until the process ends (another
    /// language may keep the runtime open after the last Rust handle).
    ///
    /// `f` may call gms (docs/threading.md, "Callbacks that call gms"); if
    /// it owns a clone of this runtime, the runtime is never closed. A panic
    /// in `f` cannot unwind through libgms: it aborts the process.
    pub fn on_violation<F: Fn(&Violation) + Send + Sync + 'static>(&self, f: F) -> Result<()> {
        let boxed: Box<Box<ViolationFn>> = Box::new(Box::new(f));
        let user = &*boxed as *const Box<ViolationFn> as *mut c_void;
        // SAFETY: the runtime is open; user points to the closure, which is
        // kept (below) as long as libgms may call it.
        check(unsafe { sys::gms_on_violation(self.as_ptr(), Some(violation_trampoline), user) })?;
        self.keep(Hook::Violation(boxed));
        Ok(())
    }

    /// Calls `f` when an allocation runs short, so that it can release what
    /// it no longer needs (`gms_on_pressure`); on the allocating thread. At
    /// most 16 per runtime; kept as [`Runtime::on_violation`] keeps its.
    pub fn on_pressure<F: Fn(&Pressure) + Send + Sync + 'static>(&self, f: F) -> Result<()> {
        let boxed: Box<Box<PressureFn>> = Box::new(Box::new(f));
        let user = &*boxed as *const Box<PressureFn> as *mut c_void;
        // SAFETY: as in on_violation.
        check(unsafe { sys::gms_on_pressure(self.as_ptr(), Some(pressure_trampoline), user) })?;
        self.keep(Hook::Pressure(boxed));
        Ok(())
    }

    fn keep(&self, hook: Hook) {
        let hooks = if self.inner.shared { &SHARED_HOOKS } else { &self.inner.hooks };
        hooks.lock().unwrap_or_else(|e| e.into_inner()).push(hook);
    }

    /// Reports an error that cannot be returned (a failed free in `Drop`):
    /// through the runtime's log function when it has one, else on stderr
    /// as libgms's own log does.
    pub(crate) fn report(&self, msg: &str) {
        match &self.inner.log {
            Some(log) => log(LogLevel::Error, msg),
            None => eprintln!("gms: {msg}"),
        }
    }
}

/// Options of a private runtime (`gms_runtime_options`); what is not set
/// keeps the library's default.
#[derive(Default)]
#[must_use = "a builder does nothing until open() is called"]
pub struct RuntimeBuilder {
    backend: Option<Backend>,
    device: Option<i32>,
    granule_bytes: Option<u64>,
    chunk_bytes: Option<u64>,
    retain_bytes: Option<u64>,
    log: Option<Box<Box<LogFn>>>,
    audit_dir: Option<PathBuf>,
    audit_key: Option<Vec<u8>>,
    audit_key_file: Option<PathBuf>,
    audit_lossy: Option<bool>,
    audit_segment_bytes: Option<u64>,
    audit_retention_days: Option<u32>,
    safety: Option<Safety>,
    redzone_bytes: Option<u32>,
    quarantine_bytes: Option<u64>,
    quarantine_blocks: Option<u64>,
    verify_interval_ms: Option<u32>,
    on_corruption: Option<OnCorruption>,
    secret_multipass: Option<bool>,
    max_held_bytes: Option<u64>,
    broker: Option<PathBuf>,
}

macro_rules! setters {
    ($($(#[$m:meta])* $name:ident: $ty:ty,)*) => {
        $(
            $(#[$m])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = Some(value);
                self
            }
        )*
    };
}

fn path_c(what: &str, p: &Option<PathBuf>) -> Result<Option<CString>> {
    let Some(p) = p else { return Ok(None) };
    CString::new(p.as_os_str().as_bytes())
        .map(Some)
        .map_err(|_| Error::new(sys::GMS_E_INVALID_ARG, format!("gms: the {what} {p:?} contains a NUL byte")))
}

impl RuntimeBuilder {
    setters! {
        /// The backend (`Auto`: the `GMS_BACKEND` variable, else a GPU when present).
        backend: Backend,
        /// The GPU ordinal for GPU backends.
        device: i32,
        /// The unit of growth and return: a power of two, at least 4096.
        granule_bytes: u64,
        /// Address space reserved per pool chunk.
        chunk_bytes: u64,
        /// Free granules a pool keeps mapped (0: what the recent peak needs).
        retain_bytes: u64,
        /// Safety on (the default) or off.
        safety: Safety,
        /// Pattern bytes after each buffer (0: 32; at most 4096).
        redzone_bytes: u32,
        /// Freed bytes held back from reuse.
        quarantine_bytes: u64,
        /// Freed blocks held back from reuse.
        quarantine_blocks: u64,
        /// The background verifier's period (0: none).
        verify_interval_ms: u32,
        /// Report corruption and continue, or abort.
        on_corruption: OnCorruption,
        /// Overwrite freed SECRET memory four times before the poison.
        secret_multipass: bool,
        /// Device memory the runtime may map, all pools together.
        max_held_bytes: u64,
        /// Drop audit records when the ring is full (counting them) rather than wait.
        audit_lossy: bool,
        /// Rotate audit segments at this size.
        audit_segment_bytes: u64,
        /// Delete audit segments older than this.
        audit_retention_days: u32,
        /// The audit trail's HMAC key (at least 16 bytes).
        audit_key: Vec<u8>,
    }

    /// Where the audit trail goes (docs/audit.md); it needs a key.
    pub fn audit_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.audit_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// A file holding the audit trail's HMAC key.
    pub fn audit_key_file(mut self, file: impl AsRef<Path>) -> Self {
        self.audit_key_file = Some(file.as_ref().to_owned());
        self
    }

    /// gmsd's socket: the runtime's memory comes from the broker
    /// (docs/broker.md). Wins over the `GMS_BROKER` variable, which applies
    /// when this is not set; a socket that cannot be reached is an error,
    /// never a fallback to the variable or to another backend.
    pub fn broker(mut self, socket: impl AsRef<Path>) -> Self {
        self.broker = Some(socket.as_ref().to_owned());
        self
    }

    /// Receives the library's diagnostics (leak reports at context close,
    /// corruption) instead of stderr, and the errors this crate cannot
    /// return (a free that failed in `Drop`). Called from any thread. Like
    /// every callback, it must not panic: a panic cannot unwind through
    /// libgms and aborts the process.
    pub fn log<F: Fn(LogLevel, &str) + Send + Sync + 'static>(mut self, f: F) -> Self {
        self.log = Some(Box::new(Box::new(f)));
        self
    }

    /// Opens the private runtime.
    pub fn open(self) -> Result<Runtime> {
        self.open_with(None)
    }

    /// Opens it, with gms/testing.h's knobs when `testing` is given.
    pub(crate) fn open_with(mut self, testing: Option<&sys::gms_testing_options>) -> Result<Runtime> {
        // SAFETY: plain data, filled next by the library.
        let mut o: sys::gms_runtime_options = unsafe { std::mem::zeroed() };
        // SAFETY: o is a valid struct of the version asked for.
        check(unsafe { sys::gms_runtime_options_init_version(&mut o, sys::GMS_RUNTIME_OPTIONS_VERSION) })?;
        let audit_dir = path_c("audit dir", &self.audit_dir)?;
        let audit_key_file = path_c("audit key file", &self.audit_key_file)?;
        let broker = path_c("broker socket", &self.broker)?;
        if let Some(v) = self.backend {
            o.backend = v.to_raw();
        }
        if let Some(v) = self.device {
            o.device = v;
        }
        if let Some(v) = self.granule_bytes {
            o.granule_bytes = v;
        }
        if let Some(v) = self.chunk_bytes {
            o.chunk_bytes = v;
        }
        if let Some(v) = self.retain_bytes {
            o.retain_bytes = v;
        }
        if let Some(log) = &self.log {
            o.log = Some(log_trampoline);
            o.log_user = &**log as *const Box<LogFn> as *mut c_void;
        }
        if let Some(d) = &audit_dir {
            o.audit_dir = d.as_ptr();
        }
        if let Some(k) = &self.audit_key {
            o.audit_key = k.as_ptr();
            o.audit_key_len = k.len();
        }
        if let Some(f) = &audit_key_file {
            o.audit_key_file = f.as_ptr();
        }
        if let Some(v) = self.audit_lossy {
            o.audit_lossy = v.into();
        }
        if let Some(v) = self.audit_segment_bytes {
            o.audit_segment_bytes = v;
        }
        if let Some(v) = self.audit_retention_days {
            o.audit_retention_days = v;
        }
        if let Some(v) = self.safety {
            o.safety = v.to_raw();
        }
        if let Some(v) = self.redzone_bytes {
            o.redzone_bytes = v;
        }
        if let Some(v) = self.quarantine_bytes {
            o.quarantine_bytes = v;
        }
        if let Some(v) = self.quarantine_blocks {
            o.quarantine_blocks = v;
        }
        if let Some(v) = self.verify_interval_ms {
            o.verify_interval_ms = v;
        }
        if let Some(v) = self.on_corruption {
            o.on_corruption = v.to_raw();
        }
        if let Some(v) = self.secret_multipass {
            o.secret_multipass = v.into();
        }
        if let Some(v) = self.max_held_bytes {
            o.max_held_bytes = v;
        }
        if let Some(b) = &broker {
            o.broker = b.as_ptr();
        }
        let mut ptr = ptr::null_mut();
        // SAFETY: o and the strings and key it points to live until the call
        // returns; the log closure's box is kept by the Runtime.
        let rc = unsafe {
            match testing {
                Some(t) => sys::gms_testing_runtime_open(&mut ptr, &o, t),
                None => sys::gms_runtime_open(&mut ptr, &o),
            }
        };
        check(rc)?;
        Ok(Runtime::from_open(ptr, false, self.log.take()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_dropped_inside_a_callback_stays_open() {
        let rt = Runtime::builder().backend(Backend::Host).open().unwrap();
        let ptr = rt.as_ptr();
        {
            let _inside = CallbackGuard::enter(); // as a callback libgms called
            drop(rt);
        }
        // SAFETY: the runtime was left open, so the pointer is still valid;
        // it is closed here, once.
        unsafe {
            let mut s = std::mem::zeroed();
            assert_eq!(sys::gms_stats_get(ptr, &mut s), sys::GMS_OK);
            sys::gms_runtime_close(ptr);
        }
    }
}
