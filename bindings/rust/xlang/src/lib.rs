//! A Rust library with a C ABI, loaded by Python through ctypes in the same
//! process as the gms Python package (test_xlang.py). Both use the
//! process-wide runtime; buffers cross through share ids and transfers.
//!
//! Every function returns a `GMS_E_*` code (0 for success).

use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::Mutex;

use gms::{Buffer, Context, Grant, Language, ReadOnly, Runtime, ShareId, sys};

struct State {
    rt: Runtime,
    ctx: Context,
    /// The owners' handles of shared buffers, released by gms_xl_drop_shared.
    shared: Vec<Buffer>,
    frozen: Vec<Buffer<ReadOnly>>,
    /// Small buffers allocated before each shared one; they keep the pages
    /// of the shared buffers mapped after those are freed.
    pads: Vec<Buffer>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut State) -> gms::Result<T>) -> Result<T, c_int> {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let state = guard.as_mut().ok_or(sys::GMS_E_INVALID_ARG)?;
    f(state).map_err(|e| e.code())
}

fn code(r: Result<(), c_int>) -> c_int {
    r.err().unwrap_or(sys::GMS_OK)
}

/// # Safety
/// `p` must be valid for `len` bytes (or `len` 0).
unsafe fn bytes<'a>(p: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: the caller promised p is valid for len bytes.
    unsafe { std::slice::from_raw_parts(p, len) }
}

/// Opens the shared runtime and a Rust context of tenant "acme", user "rusty".
#[unsafe(no_mangle)]
pub extern "C" fn gms_xl_open() -> c_int {
    let open = || -> gms::Result<State> {
        let rt = Runtime::shared()?;
        let ctx = rt.context("acme").user("rusty").language(Language::Rust).open()?;
        Ok(State { rt, ctx, shared: Vec::new(), frozen: Vec::new(), pads: Vec::new() })
    };
    match open() {
        Ok(s) => {
            *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
            sys::GMS_OK
        }
        Err(e) => e.code(),
    }
}

/// Drops everything this side holds, its context and its runtime reference.
#[unsafe(no_mangle)]
pub extern "C" fn gms_xl_close() {
    STATE.lock().unwrap_or_else(|e| e.into_inner()).take();
}

/// The runtime Rust uses.
#[unsafe(no_mangle)]
pub extern "C" fn gms_xl_runtime() -> *mut sys::gms_runtime {
    with(|s| Ok(s.rt.as_ptr())).unwrap_or(std::ptr::null_mut())
}

/// The Rust context.
#[unsafe(no_mangle)]
pub extern "C" fn gms_xl_context() -> *mut sys::gms_context {
    with(|s| Ok(s.ctx.as_ptr())).unwrap_or(std::ptr::null_mut())
}

/// Allocates `size` bytes after a small pad (so the buffer shares its
/// first page and gets no read-only mapping), writes `data` at 0, shares it
/// with Python code of the tenant (immutable when asked), and keeps the
/// owner's handle. `*id` is the share, `*addr` the owner's raw address.
///
/// # Safety
/// `data` valid for `len` bytes; `id` and `addr` valid to write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gms_xl_share(
    data: *const u8,
    len: usize,
    size: usize,
    immutable: c_int,
    id: *mut u64,
    addr: *mut u64,
) -> c_int {
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) };
    code(with(|s| {
        s.pads.push(s.ctx.alloc(100)?);
        let buf = s.ctx.alloc(size)?;
        buf.write(0, data)?;
        let grants = [Grant::read().language(Language::Python)];
        let (share, ptr) = if immutable != 0 {
            let (share, frozen) = buf.share_immutable(&grants)?;
            let ptr = frozen.as_ptr()? as u64;
            s.frozen.push(frozen);
            (share, ptr)
        } else {
            let share = buf.share(&grants)?;
            let ptr = buf.as_ptr()? as u64;
            s.shared.push(buf);
            (share, ptr)
        };
        // SAFETY: the caller's promise.
        unsafe {
            *id = share.as_raw();
            *addr = ptr;
        }
        Ok(())
    }))
}

/// Frees the handles this side kept from gms_xl_share (the shared buffers'
/// owners let go; the far side's holders keep the memory alive).
#[unsafe(no_mangle)]
pub extern "C" fn gms_xl_drop_shared() -> c_int {
    code(with(|s| {
        for b in s.frozen.drain(..) {
            b.release()?;
        }
        for b in s.shared.drain(..) {
            b.release()?;
        }
        Ok(())
    }))
}

/// Acquires a share made elsewhere, reads `len` bytes of it into `out`,
/// tries to acquire it for writing too (`*write_rc`: that attempt's code)
/// and releases what it got.
///
/// # Safety
/// `out` valid for `len` bytes; `write_rc` valid to write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gms_xl_read_share(id: u64, out: *mut u8, len: usize, write_rc: *mut c_int) -> c_int {
    code(with(|s| {
        let id = ShareId::from_raw(id);
        let theirs = s.ctx.acquire(id)?;
        // SAFETY: the caller's promise.
        let out = unsafe { std::slice::from_raw_parts_mut(out, len) };
        theirs.read(0, out)?;
        let rc = match s.ctx.acquire_mut(id) {
            Ok(w) => {
                w.release()?;
                sys::GMS_OK
            }
            Err(e) => e.code(),
        };
        // SAFETY: the caller's promise.
        unsafe { *write_rc = rc };
        theirs.release()
    }))
}

/// Allocates a buffer holding `data` and transfers it to `to` (a context
/// of another language). `*handle` is the new owner's handle, `*old` the
/// handle Rust had, dead once this returns.
///
/// # Safety
/// `to` an open context of the shared runtime; `data` valid for `len`
/// bytes; `handle` and `old` valid to write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gms_xl_give(
    to: *mut sys::gms_context,
    data: *const u8,
    len: usize,
    handle: *mut u64,
    old: *mut u64,
) -> c_int {
    let Some(to) = NonNull::new(to) else { return sys::GMS_E_INVALID_ARG };
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) };
    code(with(|s| {
        let buf = s.ctx.alloc(len.max(1))?;
        buf.write(0, data)?;
        // SAFETY: the caller's promise.
        unsafe { *old = buf.handle() };
        // SAFETY: the caller promised `to` is open.
        let new = unsafe { buf.transfer_to_raw(to) }?;
        // SAFETY: the caller's promise.
        unsafe { *handle = new };
        Ok(())
    }))
}

/// 0 when the Rust context holds a live buffer by `handle`, else the code
/// gms gives for it.
#[unsafe(no_mangle)]
pub extern "C" fn gms_xl_handle_rc(handle: u64) -> c_int {
    code(with(|s| {
        let b = Buffer::<ReadOnly>::from_raw(&s.ctx, handle)?;
        b.into_raw(); // only looked at
        Ok(())
    }))
}

/// Takes over a handle another language transferred to the Rust context,
/// reads `len` bytes into `out` and frees it.
///
/// # Safety
/// `out` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gms_xl_take(handle: u64, out: *mut u8, len: usize) -> c_int {
    code(with(|s| {
        let b: Buffer = Buffer::from_raw(&s.ctx, handle)?;
        // SAFETY: the caller's promise.
        b.read(0, unsafe { std::slice::from_raw_parts_mut(out, len) })?;
        b.free()
    }))
}
