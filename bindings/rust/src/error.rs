//! `gms::Error`: a `GMS_E_*` code and the message `gms_error_last()` gave
//! for it on the failing thread.

use std::ffi::{CStr, c_int};
use std::fmt;

use crate::sys;

/// What went wrong: one kind per `GMS_E_*` code (docs/errors.md says what to
/// do about each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `GMS_E_INVALID_ARG`: a null, out-of-range or malformed argument.
    InvalidArg,
    /// `GMS_E_INVALID_HANDLE`: a stale, freed, forged or foreign handle or share id.
    InvalidHandle,
    /// `GMS_E_ACCESS_DENIED`: the buffer or share is not this context's to use.
    AccessDenied,
    /// `GMS_E_OUT_OF_BOUNDS`: an access not wholly inside the buffer.
    OutOfBounds,
    /// `GMS_E_QUOTA`: the tenant's byte or allocation quota.
    Quota,
    /// `GMS_E_NO_MEMORY`: the backend or the host ran out of memory.
    NoMemory,
    /// `GMS_E_READ_ONLY`: a write to a read-only buffer or view.
    ReadOnly,
    /// `GMS_E_CORRUPTION`: an invariant was found broken.
    Corruption,
    /// `GMS_E_BACKEND`: the device backend failed.
    Backend,
    /// `GMS_E_UNSUPPORTED`: not available in this build or backend.
    Unsupported,
    /// `GMS_E_BUSY`: the object is in use; try again later.
    Busy,
    /// A code this crate does not know (a newer libgms); see [`Error::code`].
    Unknown,
}

impl ErrorKind {
    /// The kind of a `GMS_E_*` code.
    pub fn from_code(code: i32) -> ErrorKind {
        match code {
            sys::GMS_E_INVALID_ARG => ErrorKind::InvalidArg,
            sys::GMS_E_INVALID_HANDLE => ErrorKind::InvalidHandle,
            sys::GMS_E_ACCESS_DENIED => ErrorKind::AccessDenied,
            sys::GMS_E_OUT_OF_BOUNDS => ErrorKind::OutOfBounds,
            sys::GMS_E_QUOTA => ErrorKind::Quota,
            sys::GMS_E_NO_MEMORY => ErrorKind::NoMemory,
            sys::GMS_E_READ_ONLY => ErrorKind::ReadOnly,
            sys::GMS_E_CORRUPTION => ErrorKind::Corruption,
            sys::GMS_E_BACKEND => ErrorKind::Backend,
            sys::GMS_E_UNSUPPORTED => ErrorKind::Unsupported,
            sys::GMS_E_BUSY => ErrorKind::Busy,
            _ => ErrorKind::Unknown,
        }
    }
}

/// A failed gms call: its code, and the thread's message for it, read at
/// once (`gms_error_last()` is overwritten by the next call on the thread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: i32,
    message: String,
}

/// `Result<T, gms::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a message of the binding's own (a check made before
    /// calling libgms, such as a name with a NUL byte).
    pub(crate) fn new(code: c_int, message: impl Into<String>) -> Error {
        Error { code, message: message.into() }
    }

    /// The error of a call that just returned `code`, with this thread's
    /// `gms_error_last()`.
    pub(crate) fn last(code: c_int) -> Error {
        // SAFETY: gms_error_last never returns NULL and its string stays
        // valid until the next gms call on this thread; it is copied now.
        let message = unsafe { CStr::from_ptr(sys::gms_error_last()) }.to_string_lossy().into_owned();
        Error { code, message }
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from_code(self.code)
    }

    /// The `GMS_E_*` code, a negative number.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// What libgms said about it (names the call, the handle, the limit).
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// `gms_strerror(code)`: the code's name and meaning, as
/// `"GMS_E_QUOTA: tenant quota exceeded"`.
pub fn strerror(code: i32) -> String {
    // SAFETY: gms_strerror returns a static, NUL-terminated string for any code.
    unsafe { CStr::from_ptr(sys::gms_strerror(code)) }.to_string_lossy().into_owned()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(&strerror(self.code))
        } else {
            write!(f, "{} ({})", self.message, strerror(self.code))
        }
    }
}

impl std::error::Error for Error {}

/// `Ok(())` for `GMS_OK`, else the error with this thread's message.
pub(crate) fn check(rc: c_int) -> Result<()> {
    if rc == sys::GMS_OK { Ok(()) } else { Err(Error::last(rc)) }
}

/// A call that took a value (a buffer) failed and changed nothing: the
/// value comes back with the error. `?` turns it into the plain [`Error`]
/// (dropping, and so freeing, the value).
pub struct Returned<T> {
    /// Why the call failed.
    pub error: Error,
    /// What the call was given, as it was.
    pub value: T,
}

impl<T> Returned<T> {
    /// The value given back.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> fmt::Debug for Returned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Returned").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<T> fmt::Display for Returned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<T> std::error::Error for Returned<T> {}

impl<T> From<Returned<T>> for Error {
    fn from(r: Returned<T>) -> Error {
        r.error
    }
}
