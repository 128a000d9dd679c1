//! Access windows and checked atomics (`include/gms/access.h`,
//! docs/ordering.md): how holders of a shared buffer in different
//! languages order their work, and count, flag and claim in one buffer.

use std::fmt;
use std::ops::Deref;

use crate::buffer::{Access, AtomicAccess, Buffer, ReadWrite};
use crate::error::{Result, check};
use crate::sys;
use crate::types::{Mode, Stream};

/// An open access window (`gms_access_begin` .. `gms_access_end`): the
/// work this holder queues on the window's stream while it is open reads
/// (or, for [`Mode::ReadWrite`], writes) the buffer, and gms orders it
/// after the conflicting windows of the other holders, whatever their
/// language. Dropping it ends the window; [`Window::end`] returns the
/// result.
///
/// The window borrows its buffer, so the buffer cannot be freed,
/// released or transferred while the window is open (gms would refuse
/// with `Busy`):
///
/// ```compile_fail,E0505
/// fn free_under_window(buf: gms::Buffer) {
///     let w = buf.access(gms::Mode::ReadWrite, gms::Stream::DEFAULT).unwrap();
///     buf.free().unwrap();
///     drop(w);
/// }
/// ```
#[must_use = "the window ends when it is dropped"]
pub struct Window<'a, A: Access> {
    buf: &'a Buffer<A>,
    mode: Mode,
    stream: Stream,
}

impl<A: Access> Buffer<A> {
    fn begin(&self, mode: Mode, stream: Stream, flags: u32) -> Result<Window<'_, A>> {
        // SAFETY: the context is open (self holds it); Stream's constructor
        // promised a valid stream.
        check(unsafe {
            sys::gms_access_begin(
                self.context().as_ptr(),
                self.handle(),
                mode.to_raw(),
                flags,
                stream.as_raw(),
            )
        })?;
        Ok(Window { buf: self, mode, stream })
    }

    /// Opens an access window of `mode` ([`Mode::Read`] or
    /// [`Mode::ReadWrite`]) for the work this holder queues on `stream`,
    /// waiting on the host while a conflicting window of another holder is
    /// open (readers run together, a writer alone, first come first
    /// served). `ReadOnly` for a write window on a handle that may not
    /// write; `InvalidArg` when this handle already has a window.
    pub fn access(&self, mode: Mode, stream: Stream) -> Result<Window<'_, A>> {
        self.begin(mode, stream, 0)
    }

    /// [`Buffer::access`] without waiting (`GMS_ACCESS_NOWAIT`): `Busy`,
    /// changing nothing, while a conflicting window is open.
    pub fn try_access(&self, mode: Mode, stream: Stream) -> Result<Window<'_, A>> {
        self.begin(mode, stream, sys::GMS_ACCESS_NOWAIT)
    }
}

impl<A: Access> Window<'_, A> {
    /// The window's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The stream whose work the window covers.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    fn end_raw(&self) -> Result<()> {
        let buf = self.buf;
        // SAFETY: the context is open (the buffer holds it); the stream is
        // the one the window was opened with.
        check(unsafe { sys::gms_access_end(buf.context().as_ptr(), buf.handle(), self.stream.as_raw()) })
    }

    /// Ends the window now (`gms_access_end`): on a GPU it records the
    /// event later conflicting windows wait for.
    pub fn end(self) -> Result<()> {
        let r = self.end_raw();
        std::mem::forget(self);
        r
    }
}

impl<A: Access> Deref for Window<'_, A> {
    type Target = Buffer<A>;

    fn deref(&self) -> &Buffer<A> {
        self.buf
    }
}

impl<A: Access> Drop for Window<'_, A> {
    fn drop(&mut self) {
        if let Err(e) = self.end_raw() {
            let msg = format!("ending the window on buffer {:#018x}: {e}", self.buf.handle());
            self.buf.context().runtime().report(&msg);
        }
    }
}

impl<A: Access> fmt::Debug for Window<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Window").field("buffer", &self.buf).field("mode", &self.mode).finish()
    }
}

/// A checked atomic operation (`gms_atomic_op`). Min and max compare as
/// the word type does: unsigned for `u32`/`u64`, two's complement for
/// `i32`/`i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// `word += operand`, wrapping.
    Add,
    /// `word &= operand`.
    And,
    /// `word |= operand`.
    Or,
    /// `word ^= operand`.
    Xor,
    /// `word = min(word, operand)`.
    Min,
    /// `word = max(word, operand)`.
    Max,
    /// `word = operand`.
    Exchange,
    /// `if word == compare { word = operand }`.
    CompareExchange,
}

impl AtomicOp {
    fn to_raw(self, signed: bool) -> sys::gms_atomic_op {
        match (self, signed) {
            (AtomicOp::Add, _) => sys::GMS_ATOMIC_ADD,
            (AtomicOp::And, _) => sys::GMS_ATOMIC_AND,
            (AtomicOp::Or, _) => sys::GMS_ATOMIC_OR,
            (AtomicOp::Xor, _) => sys::GMS_ATOMIC_XOR,
            (AtomicOp::Min, false) => sys::GMS_ATOMIC_MIN,
            (AtomicOp::Max, false) => sys::GMS_ATOMIC_MAX,
            (AtomicOp::Min, true) => sys::GMS_ATOMIC_MIN_SIGNED,
            (AtomicOp::Max, true) => sys::GMS_ATOMIC_MAX_SIGNED,
            (AtomicOp::Exchange, _) => sys::GMS_ATOMIC_EXCHANGE,
            (AtomicOp::CompareExchange, _) => sys::GMS_ATOMIC_CAS,
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A word type the atomics work on: `u32`, `i32` (4 bytes), `u64`, `i64`
/// (8 bytes), little-endian and naturally aligned in the buffer.
pub trait Word: sealed::Sealed + Copy + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// Its width in bytes.
    const WIDTH: u32;
    /// Whether min and max compare it signed.
    const SIGNED: bool;
    /// The value as gms passes it (sign-extended bits for the signed types;
    /// gms reads the low `WIDTH` bytes).
    fn to_bits(self) -> u64;
    /// The value of the low `WIDTH` bytes of `bits`.
    fn from_bits(bits: u64) -> Self;
}

macro_rules! word {
    ($($t:ty, $width:expr, $signed:expr;)*) => {$(
        impl sealed::Sealed for $t {}
        impl Word for $t {
            const WIDTH: u32 = $width;
            const SIGNED: bool = $signed;
            fn to_bits(self) -> u64 {
                self as u64
            }
            fn from_bits(bits: u64) -> $t {
                bits as $t
            }
        }
    )*};
}

word! {
    u32, 4, false;
    i32, 4, true;
    u64, 8, false;
    i64, 8, true;
}

/// One item of [`Buffer::atomic_batch`] (`gms_atomic_item`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct AtomicItem(sys::gms_atomic_item);

impl AtomicItem {
    /// `op` with `operand` on the `T` word at `offset` (for
    /// [`AtomicOp::CompareExchange`], see [`AtomicItem::compare_exchange`]).
    pub fn new<T: Word>(op: AtomicOp, offset: u64, operand: T) -> AtomicItem {
        AtomicItem(sys::gms_atomic_item {
            offset,
            operand: operand.to_bits(),
            compare: 0,
            op: op.to_raw(T::SIGNED),
            width: T::WIDTH,
        })
    }

    /// Sets the word to `new` if it holds `current`.
    pub fn compare_exchange<T: Word>(offset: u64, current: T, new: T) -> AtomicItem {
        let mut item = AtomicItem::new(AtomicOp::CompareExchange, offset, new);
        item.0.compare = current.to_bits();
        item
    }
}

/// The checked atomics (`gms_atomic`), for the handles that may run them
/// (the writer, [`Buffer<ReadWrite>`], and atomic holders,
/// [`Buffer<Atomic>`](crate::Atomic)). Each works on the naturally aligned
/// `T` word at `offset`: `OutOfBounds` unless wholly inside the buffer,
/// `InvalidArg` when `offset` is not a multiple of its width, `ReadOnly`
/// on an immutable share; a refusal changes nothing. The `fetch_*` calls
/// run on the default stream and return the word's old value (on a GPU
/// they wait for that stream to run them); [`Buffer::atomic`] takes a
/// stream. None is part of a window: to order one with other holders'
/// work, call it inside a write window on the same stream.
impl<A: AtomicAccess> Buffer<A> {
    fn atomic_raw<T: Word>(
        &self,
        op: AtomicOp,
        offset: u64,
        operand: T,
        compare: T,
        stream: Stream,
        old: Option<&mut u64>,
    ) -> Result<()> {
        let old = old.map_or(std::ptr::null_mut(), |o| o as *mut u64);
        // SAFETY: the context is open (self holds it); old is null or a
        // valid out-parameter; Stream's constructor promised a valid stream.
        check(unsafe {
            sys::gms_atomic(
                self.context().as_ptr(),
                self.handle(),
                offset,
                op.to_raw(T::SIGNED),
                T::WIDTH,
                operand.to_bits(),
                compare.to_bits(),
                stream.as_raw(),
                old,
            )
        })
    }

    /// `op` on the `T` word at `offset`, queued on `stream`; returns the
    /// word's old value once the stream has run it. `compare` is read by
    /// [`AtomicOp::CompareExchange`] only.
    pub fn atomic<T: Word>(
        &self,
        op: AtomicOp,
        offset: u64,
        operand: T,
        compare: T,
        stream: Stream,
    ) -> Result<T> {
        let mut old = 0;
        self.atomic_raw(op, offset, operand, compare, stream, Some(&mut old))?;
        Ok(T::from_bits(old))
    }

    /// `op` queued on `stream` without waiting for it to run (old value
    /// not fetched): the checks are made now, the operation runs in
    /// stream order.
    pub fn atomic_queued<T: Word>(
        &self,
        op: AtomicOp,
        offset: u64,
        operand: T,
        compare: T,
        stream: Stream,
    ) -> Result<()> {
        self.atomic_raw(op, offset, operand, compare, stream, None)
    }

    /// Adds `value` (wrapping); returns the old word.
    pub fn fetch_add<T: Word>(&self, offset: u64, value: T) -> Result<T> {
        self.atomic(AtomicOp::Add, offset, value, T::from_bits(0), Stream::DEFAULT)
    }

    /// Bitwise and; returns the old word.
    pub fn fetch_and<T: Word>(&self, offset: u64, value: T) -> Result<T> {
        self.atomic(AtomicOp::And, offset, value, T::from_bits(0), Stream::DEFAULT)
    }

    /// Bitwise or; returns the old word.
    pub fn fetch_or<T: Word>(&self, offset: u64, value: T) -> Result<T> {
        self.atomic(AtomicOp::Or, offset, value, T::from_bits(0), Stream::DEFAULT)
    }

    /// Bitwise xor; returns the old word.
    pub fn fetch_xor<T: Word>(&self, offset: u64, value: T) -> Result<T> {
        self.atomic(AtomicOp::Xor, offset, value, T::from_bits(0), Stream::DEFAULT)
    }

    /// The smaller of the word and `value` (signed for `i32`/`i64`);
    /// returns the old word.
    pub fn fetch_min<T: Word>(&self, offset: u64, value: T) -> Result<T> {
        self.atomic(AtomicOp::Min, offset, value, T::from_bits(0), Stream::DEFAULT)
    }

    /// The larger of the word and `value`; returns the old word.
    pub fn fetch_max<T: Word>(&self, offset: u64, value: T) -> Result<T> {
        self.atomic(AtomicOp::Max, offset, value, T::from_bits(0), Stream::DEFAULT)
    }

    /// Stores `value`; returns the old word.
    pub fn swap<T: Word>(&self, offset: u64, value: T) -> Result<T> {
        self.atomic(AtomicOp::Exchange, offset, value, T::from_bits(0), Stream::DEFAULT)
    }

    /// Stores `new` if the word holds `current`, as
    /// `AtomicU64::compare_exchange`: `Ok(Ok(current))` when it swapped,
    /// `Ok(Err(actual))` when the word held `actual` instead.
    pub fn compare_exchange<T: Word>(&self, offset: u64, current: T, new: T) -> Result<Result<T, T>> {
        let old = self.atomic(AtomicOp::CompareExchange, offset, new, current, Stream::DEFAULT)?;
        Ok(if old == current { Ok(old) } else { Err(old) })
    }

    /// Many operations in one call (`gms_atomic_batch`), all checked before
    /// any runs (a refusal names the first bad item). `results`: a buffer
    /// of this context and the offset (a multiple of 8) where item i's old
    /// value goes, as the 8-byte word at `offset + 8 * i`, in stream order.
    pub fn atomic_batch(
        &self,
        items: &[AtomicItem],
        results: Option<(&Buffer<ReadWrite>, u64)>,
        stream: Stream,
    ) -> Result<()> {
        let (res, res_offset) = results.map_or((sys::GMS_BUF_NULL, 0), |(b, o)| (b.handle(), o));
        // SAFETY: AtomicItem is a transparent wrapper of gms_atomic_item in
        // a slice (repr(transparent): the same layout); the context is open.
        check(unsafe {
            sys::gms_atomic_batch(
                self.context().as_ptr(),
                self.handle(),
                items.as_ptr().cast(),
                items.len(),
                res,
                res_offset,
                stream.as_raw(),
            )
        })
    }
}
