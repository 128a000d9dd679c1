//! Safe Rust bindings to gms, which keeps GPU memory safe when several
//! language runtimes and tenants share one GPU.
//!
//! The crate is a thin layer over the C API of `include/gms.h` (declared
//! in [`sys`]): every rule lives in libgms. A [`Runtime`] holds the pools;
//! a [`Context`] says who is acting; a [`Buffer`] is one checked handle on
//! device memory, freed when dropped. Every call returns
//! `Result<T, gms::Error>`, whose [`ErrorKind`] names the `GMS_E_*` code and
//! whose message is libgms's `gms_error_last()`.
//!
//! ```
//! use gms::{ErrorKind, Grant, Language, Runtime};
//!
//! # fn main() -> Result<(), gms::Error> {
//! let rt = Runtime::shared()?; // the process-wide runtime, shared with other languages
//! let ctx = rt.context("acme").user("alice").open()?;
//! let buf = ctx.alloc(4096)?;
//! buf.write(0, b"hello, gms")?;
//! let mut back = [0u8; 10];
//! buf.read(0, &mut back)?;
//! assert_eq!(&back, b"hello, gms");
//!
//! // Past the end: refused, and nothing is written.
//! let err = buf.write(4090, b"hello, gms").unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::OutOfBounds);
//!
//! // An immutable share for Python code of the same tenant: nobody may
//! // write it any more, so the owner's handle becomes read-only too.
//! let (id, frozen) = buf.share_immutable(&[Grant::read().language(Language::Python)])?;
//! let python = rt.context("acme").user("bob").language(Language::Python).open()?;
//! let theirs = python.acquire(id)?;
//! assert_eq!(theirs.to_vec()?, frozen.to_vec()?);
//! # Ok(())
//! # }
//! ```
//!
//! # Ownership and threads
//!
//! [`Runtime`] and [`Context`] are reference-counted handles; each
//! [`Buffer`] keeps its context, and each context its runtime, alive, so
//! nothing is closed while still in use (the C library leaves that to the
//! caller). All three are `Send + Sync`, as docs/threading.md allows:
//! every function is thread-safe, a context may be used from several
//! threads at once, and handles carry no thread affinity. Callbacks run on
//! whichever thread found what they report, so they must be
//! `Send + Sync + 'static`.
//!
//! # Reading and writing
//!
//! Data moves through bounds-checked copies ([`Buffer::read`],
//! [`Buffer::write`]); raw device pointers are available for kernels, and
//! using them is `unsafe` as always. A handle that may only read (a read
//! acquire, an immutable share) is a `Buffer<ReadOnly>`, which has no write
//! methods at all.

#![warn(missing_docs)]

mod access;
mod buffer;
mod context;
mod error;
mod runtime;
pub mod sys;
pub mod testing;
mod types;

pub use access::{AtomicItem, AtomicOp, Window, Word};
pub use buffer::{Access, Atomic, AtomicAccess, BufInfo, Buffer, Grant, ReadOnly, ReadWrite, ShareId};
pub use context::{Context, ContextBuilder};
pub use error::{Error, ErrorKind, Result, Returned, strerror};
pub use runtime::{Pressure, Report, Runtime, RuntimeBuilder, Stats, TenantStats, Violation};
pub use types::{
    AllocFlags, Backend, Language, Level, LogLevel, Mode, OnCorruption, Safety, Stream, ViolationKind,
};

/// The version of the libgms running, as `GMS_VERSION` counts it
/// (major * 10000 + minor * 100 + patch); it may be newer than
/// [`HEADER_VERSION`].
pub fn version() -> u32 {
    // SAFETY: no precondition.
    unsafe { sys::gms_version() }
}

/// The version of `gms.h` this crate was written against.
pub const HEADER_VERSION: u32 = sys::GMS_VERSION;
