//! `Buffer`: one handle on a gms buffer; shares and transfers.

use std::ffi::{CString, c_int};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use crate::context::Context;
use crate::error::{Error, Result, Returned, check};
use crate::runtime::{c_string, from_c_array};
use crate::sys;
use crate::types::{AllocFlags, Mode, Stream};
use crate::types::{Language, Level};

mod sealed {
    pub trait Sealed {}
}

/// What a [`Buffer`] handle may do: [`ReadWrite`], [`ReadOnly`] or
/// [`Atomic`]. The write calls exist only on `Buffer<ReadWrite>`, and the
/// atomics only where [`AtomicAccess`] allows them, so a holder of an
/// immutable share or of a read acquire cannot even try to write.
pub trait Access: sealed::Sealed + Send + Sync + 'static {
    /// The `gms_access` of such a handle.
    const MODE: Mode;
}

/// The access of a handle that may read and write.
#[derive(Debug)]
pub enum ReadWrite {}
/// The access of a handle that may only read: a read acquire, or any
/// holder of an immutable share (its owner included).
///
/// Such a buffer has no write method:
///
/// ```compile_fail,E0599
/// fn try_to_write(theirs: gms::Buffer<gms::ReadOnly>) {
///     theirs.write(0, b"no").unwrap();
/// }
/// ```
#[derive(Debug)]
pub enum ReadOnly {}

/// The access of an atomic holder (`GMS_ACCESS_ATOMIC`, from
/// [`Context::acquire_atomic`]): it reads, and writes through the checked
/// atomics only; any number of them may join a share's one writer.
///
/// Such a buffer has no write method either:
///
/// ```compile_fail,E0599
/// fn try_to_write(counter: gms::Buffer<gms::Atomic>) {
///     counter.write(0, b"no").unwrap();
/// }
/// ```
#[derive(Debug)]
pub enum Atomic {}

/// The handles that may run checked atomics ([`Buffer::fetch_add`] and
/// the rest): [`ReadWrite`] and [`Atomic`]. A `Buffer<ReadOnly>` has none:
///
/// ```compile_fail,E0599
/// fn try_to_add(theirs: gms::Buffer<gms::ReadOnly>) {
///     theirs.fetch_add(0, 1u64).unwrap();
/// }
/// ```
pub trait AtomicAccess: Access {}

impl sealed::Sealed for ReadWrite {}
impl sealed::Sealed for ReadOnly {}
impl sealed::Sealed for Atomic {}
impl Access for ReadWrite {
    const MODE: Mode = Mode::ReadWrite;
}
impl Access for ReadOnly {
    const MODE: Mode = Mode::Read;
}
impl Access for Atomic {
    const MODE: Mode = Mode::Atomic;
}
impl AtomicAccess for ReadWrite {}
impl AtomicAccess for Atomic {}

/// A share's id (`gms_share_id`): what another context, language or tenant
/// needs to [`acquire`](Context::acquire) the buffer. Keyed like handles,
/// so it cannot be guessed; a plain number that may cross any boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShareId(u64);

impl ShareId {
    /// An id received from elsewhere (another language, a message).
    pub fn from_raw(id: u64) -> ShareId {
        ShareId(id)
    }

    /// The number, to send elsewhere.
    pub fn as_raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ShareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

/// One entry of a share's access list (`gms_share_grant`): a context may
/// acquire when its tenant, user and language match, up to the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant<'a> {
    tenant: Option<&'a str>,
    user: Option<&'a str>,
    language: Option<Language>,
    mode: Mode,
}

impl<'a> Grant<'a> {
    /// Lets the owner's tenant, any user, any language read.
    pub fn read() -> Grant<'a> {
        Grant { tenant: None, user: None, language: None, mode: Mode::Read }
    }

    /// Lets them read and write (one writer at a time).
    pub fn read_write() -> Grant<'a> {
        Grant { mode: Mode::ReadWrite, ..Grant::read() }
    }

    /// Only this tenant (`"*"`: any tenant).
    pub fn tenant(self, tenant: &'a str) -> Grant<'a> {
        Grant { tenant: Some(tenant), ..self }
    }

    /// Only this user.
    pub fn user(self, user: &'a str) -> Grant<'a> {
        Grant { user: Some(user), ..self }
    }

    /// Only this language.
    pub fn language(self, language: Language) -> Grant<'a> {
        Grant { language: Some(language), ..self }
    }
}

/// `gms_buf_info`: what gms knows of a buffer, seen through one handle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BufInfo {
    /// Bytes requested.
    pub size: u64,
    /// Bytes reserved (with the redzone, rounded up to the alignment).
    pub block_size: u64,
    /// The address this handle gets (0 when it gets none).
    pub device_ptr: u64,
    /// The pool's id.
    pub pool_id: u64,
    /// The flags it was made with.
    pub flags: AllocFlags,
    /// The owner's level; `None` for a value this crate does not know.
    pub level: Option<Level>,
    /// The owner's language; `None` likewise.
    pub language: Option<Language>,
    /// The owner's tenant.
    pub tenant: String,
    /// Who allocated it.
    pub user: String,
    /// This handle's access.
    pub access: Option<Mode>,
    /// Handles alive on the buffer, this one included.
    pub holders: u32,
    /// Its share, if shared.
    pub share_id: Option<ShareId>,
    /// Shared immutable: nobody may write it.
    pub immutable: bool,
    /// The pointer of this handle is a read-only mapping.
    pub read_only_view: bool,
}

/// One handle on a gms buffer, in the context that holds it.
///
/// Not `Copy` nor `Clone`: the handle is freed (or, for a holder of a
/// share, released) exactly once, by [`Buffer::free`] or by `Drop`. An
/// error in `Drop` cannot be returned: a corruption found by the free has
/// already been delivered by libgms to the violation callbacks, the audit
/// trail and the log, and the binding reports the error itself through
/// the runtime's log function ([`RuntimeBuilder::log`](crate::RuntimeBuilder::log),
/// stderr by default). Call [`Buffer::free`] to see the result.
///
/// All access is bounds-checked by libgms; the data never becomes a Rust
/// reference, so a `Buffer` is `Send + Sync` (gms serialises the calls on
/// the pool's lock, docs/threading.md).
///
/// A buffer cannot be copied, and once freed, transferred or shared
/// immutably it is gone:
///
/// ```compile_fail,E0599
/// fn twice(buf: gms::Buffer) {
///     let copy = buf.clone();
/// }
/// ```
///
/// ```compile_fail,E0382
/// fn use_after_free(buf: gms::Buffer) {
///     buf.free().unwrap();
///     buf.write(0, b"after free").unwrap();
/// }
/// ```
pub struct Buffer<A: Access = ReadWrite> {
    ctx: Context,
    handle: sys::gms_buf,
    len: usize,
    _access: PhantomData<A>,
}

impl<A: Access> fmt::Debug for Buffer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("handle", &format_args!("{:#018x}", self.handle))
            .field("len", &self.len)
            .field("access", &A::MODE)
            .finish()
    }
}

impl<A: Access> Drop for Buffer<A> {
    fn drop(&mut self) {
        if self.handle == sys::GMS_BUF_NULL {
            return;
        }
        // SAFETY: the context is open (self holds it) and the handle ours.
        let rc = unsafe { sys::gms_free(self.ctx.as_ptr(), self.handle) };
        if rc != sys::GMS_OK {
            let e = Error::last(rc);
            self.ctx.runtime().report(&format!("dropping buffer {:#018x}: {e}", self.handle));
        }
    }
}

impl<A: Access> Buffer<A> {
    pub(crate) fn adopt(ctx: Context, handle: sys::gms_buf, len: usize) -> Buffer<A> {
        Buffer { ctx, handle, len, _access: PhantomData }
    }

    /// Takes over a handle that `ctx` holds, received from elsewhere (a
    /// transfer made by another language, [`Buffer::into_raw`]): the
    /// `Buffer` frees it when dropped. Refused (`InvalidHandle`) when `ctx`
    /// does not hold a live buffer by that handle, and (`ReadOnly`) for a
    /// `Buffer<ReadWrite>` of a handle that may only read (or run
    /// atomics), or a `Buffer<Atomic>` of one that may only read. A handle that
    /// someone else frees meanwhile only makes later calls fail: handles
    /// are checked on every call and never reused.
    pub fn from_raw(ctx: &Context, handle: u64) -> Result<Buffer<A>> {
        let mut b = Buffer::adopt(ctx.clone(), handle, 0);
        let checked = b.info().and_then(|info| {
            // A writer may be taken as an atomic holder, not the reverse.
            let allowed = match A::MODE {
                Mode::Read => true,
                Mode::ReadWrite => info.access == Some(Mode::ReadWrite),
                Mode::Atomic => matches!(info.access, Some(Mode::ReadWrite | Mode::Atomic)),
            };
            if !allowed || (A::MODE != Mode::Read && info.immutable) {
                return Err(Error::new(
                    sys::GMS_E_READ_ONLY,
                    format!(
                        "gms: handle {handle:#018x} may not be a Buffer<{:?}>: its access is less",
                        A::MODE
                    ),
                ));
            }
            usize::try_from(info.size)
                .map_err(|_| Error::new(sys::GMS_E_INVALID_ARG, "gms: buffer too large"))
        });
        match checked {
            Ok(len) => {
                b.len = len;
                Ok(b)
            }
            Err(e) => {
                b.handle = sys::GMS_BUF_NULL; // still the caller's
                Err(e)
            }
        }
    }

    /// Gives up the handle without freeing it, to hand it to other code
    /// (which must free it through the same context).
    pub fn into_raw(mut self) -> u64 {
        std::mem::replace(&mut self.handle, sys::GMS_BUF_NULL)
    }

    /// The handle (`gms_buf`), a plain 64-bit value.
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// The context holding this handle.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the size is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `gms_buf_info`.
    pub fn info(&self) -> Result<BufInfo> {
        // SAFETY: plain data; all zeros is a valid value.
        let mut i: sys::gms_buf_info = unsafe { std::mem::zeroed() };
        // SAFETY: the context is open and i a valid out-parameter.
        check(unsafe { sys::gms_buf_info_get(self.ctx.as_ptr(), self.handle, &mut i) })?;
        Ok(BufInfo {
            size: i.size,
            block_size: i.block_size,
            device_ptr: i.device_ptr,
            pool_id: i.pool_id,
            flags: AllocFlags::from_bits(i.flags),
            level: Level::from_raw(i.level),
            language: Language::from_raw(i.language),
            tenant: from_c_array(&i.tenant),
            user: from_c_array(&i.user),
            access: Mode::from_raw(i.access),
            holders: i.holders,
            share_id: (i.share_id != 0).then_some(ShareId(i.share_id)),
            immutable: i.immutable != 0,
            read_only_view: i.read_only_view != 0,
        })
    }

    /// Reads `dst.len()` bytes from `offset` (`gms_read`); `OutOfBounds`,
    /// touching nothing, unless wholly inside the buffer.
    pub fn read(&self, offset: u64, dst: &mut [u8]) -> Result<()> {
        // SAFETY: the context is open; dst is valid for dst.len() bytes.
        check(unsafe {
            sys::gms_read(self.ctx.as_ptr(), self.handle, offset, dst.as_mut_ptr().cast(), dst.len())
        })
    }

    /// The whole buffer's contents.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut v = vec![0; self.len];
        self.read(0, &mut v)?;
        Ok(v)
    }

    /// The raw device address (`gms_buf_ptr`; a host address on the host
    /// backend), for kernels and frameworks. Nothing through it is checked;
    /// a holder that may only read gets a read-only mapping where the block
    /// owns whole pages, and a reader of another tenant gets none
    /// (`AccessDenied`). Valid while the buffer lives.
    pub fn as_ptr(&self) -> Result<*const u8> {
        let mut p = ptr::null_mut();
        // SAFETY: the context is open and p a valid out-parameter.
        check(unsafe { sys::gms_buf_ptr(self.ctx.as_ptr(), self.handle, &mut p) })?;
        Ok(p as *const u8)
    }

    fn drop_with(mut self, f: impl FnOnce(*mut sys::gms_context, sys::gms_buf) -> c_int) -> Result<()> {
        let h = std::mem::replace(&mut self.handle, sys::GMS_BUF_NULL);
        check(f(self.ctx.as_ptr(), h))
    }

    /// Frees the handle now (`gms_free`) and says how it went. The handle
    /// is gone whatever the result: `Corruption` (overwritten redzones, a
    /// changed immutable share) still frees, as libgms does.
    pub fn free(self) -> Result<()> {
        // SAFETY: the context is open and the handle ours, given up here.
        self.drop_with(|c, h| unsafe { sys::gms_free(c, h) })
    }

    /// The same as [`Buffer::free`] under the sharing API's name (`gms_release`).
    pub fn release(self) -> Result<()> {
        // SAFETY: as in free.
        self.drop_with(|c, h| unsafe { sys::gms_release(c, h) })
    }

    /// Frees the handle after the work queued on `stream` so far, as
    /// `cudaFreeAsync` (`gms_free_async`): the handle dies at once, the
    /// memory's check and wipe run in stream order.
    pub fn free_async(self, stream: Stream) -> Result<()> {
        // SAFETY: as in free; Stream's constructor promised a valid stream.
        self.drop_with(|c, h| unsafe { sys::gms_free_async(c, h, stream.as_raw()) })
    }
}

impl Buffer<ReadWrite> {
    /// Writes `src` at `offset` (`gms_write`); `OutOfBounds`, writing
    /// nothing, unless wholly inside.
    pub fn write(&self, offset: u64, src: &[u8]) -> Result<()> {
        // SAFETY: the context is open; src is valid for src.len() bytes.
        check(unsafe {
            sys::gms_write(self.ctx.as_ptr(), self.handle, offset, src.as_ptr().cast(), src.len())
        })
    }

    /// Sets `len` bytes from `offset` to `byte` (`gms_fill`).
    pub fn fill(&self, offset: u64, byte: u8, len: usize) -> Result<()> {
        // SAFETY: the context is open.
        check(unsafe { sys::gms_fill(self.ctx.as_ptr(), self.handle, offset, c_int::from(byte), len) })
    }

    /// Copies `len` bytes of `src` from `src_offset` to `offset` in this
    /// buffer (`gms_copy`; overlap is handled). Both handles must be held
    /// by this buffer's context.
    pub fn copy_from<B: Access>(
        &self,
        offset: u64,
        src: &Buffer<B>,
        src_offset: u64,
        len: usize,
    ) -> Result<()> {
        // SAFETY: the context is open; both handles are plain values it checks.
        check(unsafe { sys::gms_copy(self.ctx.as_ptr(), self.handle, offset, src.handle, src_offset, len) })
    }

    /// The raw device address, writable (see [`Buffer::as_ptr`]).
    pub fn as_mut_ptr(&self) -> Result<*mut u8> {
        self.as_ptr().map(|p| p as *mut u8)
    }

    fn share_raw(&self, grants: &[Grant<'_>], immutable: bool) -> Result<ShareId> {
        let names: Vec<(Option<CString>, Option<CString>)> = grants
            .iter()
            .map(|g| {
                Ok((
                    g.tenant.map(|t| c_string("tenant", t)).transpose()?,
                    g.user.map(|u| c_string("user", u)).transpose()?,
                ))
            })
            .collect::<Result<_>>()?;
        let c_grants: Vec<sys::gms_share_grant> = grants
            .iter()
            .zip(&names)
            .map(|(g, (t, u))| sys::gms_share_grant {
                tenant: t.as_ref().map_or(ptr::null(), |t| t.as_ptr()),
                user: u.as_ref().map_or(ptr::null(), |u| u.as_ptr()),
                language: g.language.map_or(sys::GMS_ANY_LANGUAGE, |l| l.to_raw() as c_int),
                mode: g.mode.to_raw(),
            })
            .collect();
        // SAFETY: plain data, filled next by the library.
        let mut desc: sys::gms_share_desc = unsafe { std::mem::zeroed() };
        // SAFETY: desc is a valid struct of the version asked for.
        check(unsafe { sys::gms_share_desc_init_version(&mut desc, sys::GMS_SHARE_DESC_VERSION) })?;
        desc.grants = if c_grants.is_empty() { ptr::null() } else { c_grants.as_ptr() };
        desc.ngrants = c_grants.len();
        desc.immutable = immutable.into();
        let mut id = 0;
        // SAFETY: the context is open; desc, the grants and their strings
        // live until the call returns (the share copies them).
        check(unsafe { sys::gms_share(self.ctx.as_ptr(), self.handle, &desc, &mut id) })?;
        Ok(ShareId(id))
    }

    /// Shares the buffer with the contexts the grants (1 to 16) let in
    /// (`gms_share`, docs/sharing.md): each [`acquire`](Context::acquire)s a
    /// handle of its own, and the memory is freed when the last holder lets
    /// go, whoever that is. This handle stays the writer. A second share of
    /// one buffer is `Busy`.
    pub fn share(&self, grants: &[Grant<'_>]) -> Result<ShareId> {
        self.share_raw(grants, false)
    }

    /// Shares the buffer immutably: nobody writes it any more, this owner
    /// included, so the handle comes back as a `Buffer<ReadOnly>`. On
    /// failure the buffer comes back unchanged.
    pub fn share_immutable(
        self,
        grants: &[Grant<'_>],
    ) -> Result<(ShareId, Buffer<ReadOnly>), Returned<Self>> {
        match self.share_raw(grants, true) {
            Ok(id) => Ok((id, self.retype())),
            Err(error) => Err(Returned { error, value: self }),
        }
    }

    fn retype<B: Access>(mut self) -> Buffer<B> {
        let h = std::mem::replace(&mut self.handle, sys::GMS_BUF_NULL);
        Buffer::adopt(self.ctx.clone(), h, self.len)
    }

    fn transfer_with(
        mut self,
        to: *mut sys::gms_context,
        f: impl FnOnce(*mut sys::gms_context, sys::gms_buf, *mut sys::gms_context, &mut sys::gms_buf) -> c_int,
    ) -> Result<sys::gms_buf, Returned<Self>> {
        let mut out = sys::GMS_BUF_NULL;
        let rc = f(self.ctx.as_ptr(), self.handle, to, &mut out);
        if rc != sys::GMS_OK {
            return Err(Returned { error: Error::last(rc), value: self });
        }
        self.handle = sys::GMS_BUF_NULL; // dead in libgms already
        Ok(out)
    }

    /// Moves exclusive ownership to `to` (`gms_transfer`): this handle dies
    /// and the new one is `to`'s. Within a tenant, to the same or a lower
    /// level, nothing moves; otherwise the bytes are copied into `to`'s
    /// pool and the original wiped. `Busy` when the buffer is shared or has
    /// other holders; on failure the buffer comes back unchanged.
    pub fn transfer(self, to: &Context) -> Result<Buffer, Returned<Self>> {
        let len = self.len;
        // SAFETY: both contexts are open; out is a valid out-parameter.
        let h = self.transfer_with(to.as_ptr(), |f, b, t, o| unsafe { sys::gms_transfer(f, b, t, o) })?;
        Ok(Buffer::adopt(to.clone(), h, len))
    }

    /// [`Buffer::transfer`] once the work queued on `stream` so far has
    /// finished (`gms_transfer_async`), so the next holder never sees a
    /// half-written buffer.
    pub fn transfer_async(self, to: &Context, stream: Stream) -> Result<Buffer, Returned<Self>> {
        let len = self.len;
        // SAFETY: as in transfer; Stream's constructor promised a valid stream.
        let h = self.transfer_with(to.as_ptr(), |f, b, t, o| unsafe {
            sys::gms_transfer_async(f, b, t, stream.as_raw(), o)
        })?;
        Ok(Buffer::adopt(to.clone(), h, len))
    }

    /// Transfers to a context that another binding holds, returning the
    /// new handle, which is that context's to free.
    ///
    /// # Safety
    ///
    /// `to` must be an open `gms_context` of this buffer's runtime for the
    /// length of the call.
    pub unsafe fn transfer_to_raw(self, to: NonNull<sys::gms_context>) -> Result<u64, Returned<Self>> {
        // SAFETY: the caller promised `to` is open; ours is held by self.
        self.transfer_with(to.as_ptr(), |f, b, t, o| unsafe { sys::gms_transfer(f, b, t, o) })
    }
}
