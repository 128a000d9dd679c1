//! `Context`: who is acting (tenant, user, level, language).

use std::ptr::{self, NonNull};
use std::sync::Arc;

use crate::buffer::{Access, Atomic, Buffer, ReadOnly, ReadWrite, ShareId};
use crate::error::{Result, check};
use crate::runtime::{Runtime, c_string};
use crate::sys;
use crate::types::{AllocFlags, Language, Level, Stream};

pub(crate) struct ContextInner {
    ptr: NonNull<sys::gms_context>,
    /// Keeps the runtime open while the context is.
    runtime: Runtime,
    /// False for a context another binding opened and closes.
    owned: bool,
}

// SAFETY: a context may be used from several threads at once
// (docs/threading.md, rule 2); it is closed only when the last reference,
// hence the last user, is gone.
unsafe impl Send for ContextInner {}
// SAFETY: as above.
unsafe impl Sync for ContextInner {}

impl Drop for ContextInner {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: opened by gms_context_open and closed once, after its
            // last Buffer (each holds a Context) is gone.
            unsafe { sys::gms_context_close(self.ptr.as_ptr()) };
        }
    }
}

/// A security context: buffers live in the pool of its (tenant, level,
/// language), and every buffer call goes through the context that holds
/// the handle.
///
/// Like [`Runtime`], a cheap, reference-counted handle: the C context is
/// closed when the last clone and the last [`Buffer`] allocated or acquired
/// through it are dropped, so none can be used after the close. It is
/// `Send + Sync`: gms allows one context to be used from several threads at
/// once.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<ContextInner>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("ptr", &self.inner.ptr).finish()
    }
}

impl PartialEq for Context {
    fn eq(&self, other: &Context) -> bool {
        self.inner.ptr == other.inner.ptr
    }
}

impl Eq for Context {}

impl Context {
    /// Wraps a context another binding in the process opened on the same
    /// runtime (Python's `Context.ptr`, a C caller's), to hand it buffers
    /// ([`Buffer::transfer`]) or to use buffers through it. Dropping it does
    /// not close the context.
    ///
    /// # Safety
    ///
    /// `ptr` must be an open `gms_context` of `runtime`, and stay open as
    /// long as the returned `Context`, its clones and every [`Buffer`]
    /// made through them are alive.
    pub unsafe fn from_raw_borrowed(runtime: &Runtime, ptr: NonNull<sys::gms_context>) -> Context {
        Context { inner: Arc::new(ContextInner { ptr, runtime: runtime.clone(), owned: false }) }
    }

    /// The `gms_context *`, valid as long as this `Context` (or a clone) is.
    pub fn as_ptr(&self) -> *mut sys::gms_context {
        self.inner.ptr.as_ptr()
    }

    /// The runtime the context lives in.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// A new buffer of `size` bytes (`gms_alloc`); its contents are
    /// unspecified (poisoned with safety on): see [`Context::alloc_with`].
    pub fn alloc(&self, size: usize) -> Result<Buffer> {
        self.alloc_with(size, AllocFlags::NONE)
    }

    /// A new buffer with flags: [`AllocFlags::ZERO`] fills it with zeros,
    /// [`AllocFlags::PAGES`] gives it whole pages.
    pub fn alloc_with(&self, size: usize, flags: AllocFlags) -> Result<Buffer> {
        let mut h = sys::GMS_BUF_NULL;
        // SAFETY: the context is open and h a valid out-parameter.
        check(unsafe { sys::gms_alloc(self.as_ptr(), size, flags.bits(), &mut h) })?;
        Ok(Buffer::adopt(self.clone(), h, size))
    }

    /// A stream-ordered allocation, as `cudaMallocAsync`
    /// (`gms_alloc_async`, docs/stream-ordered.md): usable by work queued on
    /// `stream` after the call. Free it with [`Buffer::free_async`] on the
    /// stream its last user runs on.
    pub fn alloc_async(&self, size: usize, flags: AllocFlags, stream: Stream) -> Result<Buffer> {
        let mut h = sys::GMS_BUF_NULL;
        // SAFETY: the context is open; Stream's constructor promised a
        // valid stream (or NULL).
        check(unsafe { sys::gms_alloc_async(self.as_ptr(), size, flags.bits(), stream.as_raw(), &mut h) })?;
        Ok(Buffer::adopt(self.clone(), h, size))
    }

    fn acquire_as<A: Access>(&self, id: ShareId) -> Result<Buffer<A>> {
        let mut h = sys::GMS_BUF_NULL;
        // SAFETY: the context is open and h a valid out-parameter.
        check(unsafe { sys::gms_acquire(self.as_ptr(), id.as_raw(), A::MODE.to_raw(), &mut h) })?;
        Buffer::from_raw(self, h).inspect_err(|_| {
            // SAFETY: h is the handle just acquired, not adopted: ours to drop.
            unsafe { sys::gms_release(self.as_ptr(), h) };
        })
    }

    /// A handle of this context's own on a shared buffer, to read
    /// (`gms_acquire` with `GMS_ACCESS_READ`). Refused with `AccessDenied`
    /// when no grant lets this context in or the share was revoked, and
    /// `InvalidHandle` for an id that is not a live share.
    pub fn acquire(&self, id: ShareId) -> Result<Buffer<ReadOnly>> {
        self.acquire_as(id)
    }

    /// A handle to read and write a mutable share: `ReadOnly` for an
    /// immutable share, `Busy` while another holder can write,
    /// `AccessDenied` beyond what the grant allows.
    pub fn acquire_mut(&self, id: ShareId) -> Result<Buffer<ReadWrite>> {
        self.acquire_as(id)
    }

    /// An atomic holder's handle (`GMS_ACCESS_ATOMIC`, docs/ordering.md):
    /// it reads, and writes through the checked atomics only, beside the
    /// share's one writer and any number of other atomic holders. Needs a
    /// read-write grant (`AccessDenied`) and a mutable share (`ReadOnly`).
    pub fn acquire_atomic(&self, id: ShareId) -> Result<Buffer<Atomic>> {
        self.acquire_as(id)
    }

    /// Stops new acquires of a share this context made (`gms_revoke`);
    /// holders keep their handles.
    pub fn revoke(&self, id: ShareId) -> Result<()> {
        // SAFETY: the context is open.
        check(unsafe { sys::gms_revoke(self.as_ptr(), id.as_raw()) })
    }
}

/// Says who a new context acts for; [`Runtime::context`] makes one.
#[must_use = "a builder does nothing until open() is called"]
pub struct ContextBuilder {
    runtime: Runtime,
    tenant: String,
    user: Option<String>,
    level: Level,
    language: Language,
}

impl ContextBuilder {
    pub(crate) fn new(runtime: Runtime, tenant: &str) -> ContextBuilder {
        ContextBuilder {
            runtime,
            tenant: tenant.to_owned(),
            user: None,
            level: Level::Internal,
            language: Language::Rust,
        }
    }

    /// The user (1 to 63 printable ASCII bytes); the tenant's name if unset.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// The security level (`Internal` if unset).
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// The language acting (`Rust` if unset).
    pub fn language(mut self, language: Language) -> Self {
        self.language = language;
        self
    }

    /// Opens the context (`gms_context_open`).
    pub fn open(self) -> Result<Context> {
        let tenant = c_string("tenant", &self.tenant)?;
        let user = c_string("user", self.user.as_deref().unwrap_or(&self.tenant))?;
        // SAFETY: plain data, filled next by the library.
        let mut desc: sys::gms_context_desc = unsafe { std::mem::zeroed() };
        // SAFETY: desc is a valid struct of the version asked for.
        check(unsafe { sys::gms_context_desc_init_version(&mut desc, sys::GMS_CONTEXT_DESC_VERSION) })?;
        desc.tenant = tenant.as_ptr();
        desc.user = user.as_ptr();
        desc.level = self.level.to_raw();
        desc.language = self.language.to_raw();
        let mut ptr = ptr::null_mut();
        // SAFETY: the runtime is open; desc and its strings live until the
        // call returns (the context copies the names).
        check(unsafe { sys::gms_context_open(&mut ptr, self.runtime.as_ptr(), &desc) })?;
        let ptr = NonNull::new(ptr).expect("gms_context_open returned GMS_OK and NULL");
        Ok(Context { inner: Arc::new(ContextInner { ptr, runtime: self.runtime, owned: true }) })
    }
}
