//! The small value types of the API: enums of gms.h and the flag set of
//! `gms_alloc`.

use std::ffi::CStr;
use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use crate::sys;

macro_rules! c_enum {
    ($(#[$m:meta])* $name:ident : $cty:ty { $($(#[$vm:meta])* $variant:ident = $value:path,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)*
        }
        impl $name {
            /// The C value.
            pub fn to_raw(self) -> $cty {
                match self { $($name::$variant => $value,)* }
            }
            /// The variant of a C value; `None` for one this crate does not know.
            pub fn from_raw(raw: $cty) -> Option<$name> {
                match raw { $(v if v == $value => Some($name::$variant),)* _ => None }
            }
        }
    };
}

c_enum! {
    /// Which device backend a runtime uses (`gms_backend_kind`).
    Backend: sys::gms_backend_kind {
        /// A GPU backend when a GPU is present, else host (or `GMS_BACKEND`).
        Auto = sys::GMS_BACKEND_AUTO,
        /// Host memory behind the same interface (tests, CI).
        Host = sys::GMS_BACKEND_HOST,
        /// NVIDIA GPUs.
        Cuda = sys::GMS_BACKEND_CUDA,
        /// AMD GPUs.
        Hip = sys::GMS_BACKEND_HIP,
    }
}

c_enum! {
    /// A context's security level (`gms_level`): pools never mix levels,
    /// and memory is wiped as the level asks.
    Level: sys::gms_level {
        /// `GMS_LEVEL_PUBLIC`.
        Public = sys::GMS_LEVEL_PUBLIC,
        /// `GMS_LEVEL_INTERNAL`, the default.
        Internal = sys::GMS_LEVEL_INTERNAL,
        /// `GMS_LEVEL_CONFIDENTIAL`.
        Confidential = sys::GMS_LEVEL_CONFIDENTIAL,
        /// `GMS_LEVEL_SECRET`.
        Secret = sys::GMS_LEVEL_SECRET,
    }
}

c_enum! {
    /// The language runtime a context acts for (`gms_language`).
    Language: sys::gms_language {
        /// C.
        C = sys::GMS_LANG_C,
        /// Rust, the default of this crate's contexts.
        Rust = sys::GMS_LANG_RUST,
        /// Elixir.
        Elixir = sys::GMS_LANG_ELIXIR,
        /// Julia.
        Julia = sys::GMS_LANG_JULIA,
        /// Zig.
        Zig = sys::GMS_LANG_ZIG,
        /// Nim.
        Nim = sys::GMS_LANG_NIM,
        /// Python.
        Python = sys::GMS_LANG_PYTHON,
        /// Any other.
        Other = sys::GMS_LANG_OTHER,
    }
}

c_enum! {
    /// What a share lets a holder do (`gms_access`).
    Mode: sys::gms_access {
        /// Read only.
        Read = sys::GMS_ACCESS_READ,
        /// Read and write (one writer at a time).
        ReadWrite = sys::GMS_ACCESS_READ_WRITE,
        /// Read, and write through atomics only (`GMS_ACCESS_ATOMIC`, an
        /// acquire mode of `gms/access.h`): any number beside the writer.
        Atomic = sys::GMS_ACCESS_ATOMIC,
    }
}

c_enum! {
    /// Redzones, poison, quarantine and wipe (`gms_safety_mode`).
    Safety: sys::gms_safety_mode {
        /// All of them (the default).
        On = sys::GMS_SAFETY_ON,
        /// None of them: for measuring their cost only.
        Off = sys::GMS_SAFETY_OFF,
    }
}

c_enum! {
    /// What a runtime does when it finds corruption (`gms_corruption_policy`).
    OnCorruption: sys::gms_corruption_policy {
        /// Report it and continue (the default).
        Report = sys::GMS_ON_CORRUPTION_REPORT,
        /// Report it, then abort the process.
        Abort = sys::GMS_ON_CORRUPTION_ABORT,
    }
}

c_enum! {
    /// The level of a log line (`gms_log_level`).
    LogLevel: sys::gms_log_level {
        /// An error.
        Error = sys::GMS_LOG_ERROR,
        /// A warning: leaks reported at context close, corruption.
        Warn = sys::GMS_LOG_WARN,
        /// Information.
        Info = sys::GMS_LOG_INFO,
    }
}

c_enum! {
    /// What a corruption report found (`gms_violation_kind`).
    ViolationKind: sys::gms_violation_kind {
        /// Bytes after a buffer were written.
        Overflow = sys::GMS_VIOLATION_OVERFLOW,
        /// Bytes before a buffer were written.
        Underflow = sys::GMS_VIOLATION_UNDERFLOW,
        /// A quarantined block was written.
        WriteAfterFree = sys::GMS_VIOLATION_WRITE_AFTER_FREE,
        /// Free memory was written.
        FreeMemory = sys::GMS_VIOLATION_FREE_MEMORY,
        /// A wipe did not read back.
        WipeFailed = sys::GMS_VIOLATION_WIPE_FAILED,
        /// `gms_verify` found state broken.
        Invariant = sys::GMS_VIOLATION_INVARIANT,
        /// An immutable share was changed.
        ImmutableWrite = sys::GMS_VIOLATION_IMMUTABLE_WRITE,
    }
}

fn static_name(p: *const std::ffi::c_char) -> &'static str {
    if p.is_null() {
        return "?";
    }
    // SAFETY: gms_level_name and gms_language_name return NULL or a static,
    // NUL-terminated ASCII string.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("?")
}

impl Level {
    /// `gms_level_name`: "public", "internal"...
    pub fn name(self) -> &'static str {
        // SAFETY: any value is accepted; the result is a static string.
        static_name(unsafe { sys::gms_level_name(self.to_raw()) })
    }
}

impl Language {
    /// `gms_language_name`: "c", "rust"...
    pub fn name(self) -> &'static str {
        // SAFETY: any value is accepted; the result is a static string.
        static_name(unsafe { sys::gms_language_name(self.to_raw()) })
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The flags of an allocation (`GMS_ALLOC_*`), combined with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AllocFlags(u32);

impl AllocFlags {
    /// No flag.
    pub const NONE: AllocFlags = AllocFlags(0);
    /// Fill with zeros before returning.
    pub const ZERO: AllocFlags = AllocFlags(sys::GMS_ALLOC_ZERO);
    /// Start on a page boundary and own whole pages (2 MiB granules on a
    /// GPU), so an immutable share of the buffer is a read-only mapping.
    pub const PAGES: AllocFlags = AllocFlags(sys::GMS_ALLOC_PAGES);

    /// The C bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Flags from C bits (bits gms does not know are kept, and refused by
    /// the allocation).
    pub fn from_bits(bits: u32) -> AllocFlags {
        AllocFlags(bits)
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: AllocFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for AllocFlags {
    type Output = AllocFlags;
    fn bitor(self, rhs: AllocFlags) -> AllocFlags {
        AllocFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for AllocFlags {
    fn bitor_assign(&mut self, rhs: AllocFlags) {
        self.0 |= rhs.0;
    }
}

/// A CUDA stream (`CUstream`), passed to gms as an opaque pointer.
/// [`Stream::DEFAULT`] is the legacy default stream; on the host backend,
/// which has no streams, every stream is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream(*mut std::ffi::c_void);

// SAFETY: a CUDA stream handle may be used from any thread; gms only passes
// it to the driver.
unsafe impl Send for Stream {}
// SAFETY: as above; the handle is never dereferenced by Rust.
unsafe impl Sync for Stream {}

impl Stream {
    /// The legacy default stream (NULL).
    pub const DEFAULT: Stream = Stream(std::ptr::null_mut());

    /// Wraps a `CUstream` (or `cudaStream_t`) made by the CUDA driver or
    /// runtime.
    ///
    /// # Safety
    ///
    /// `raw` must be null or a stream of the context of the runtime's
    /// device that stays alive while gms may use it (until the work queued
    /// on it by the calls it is given to has run).
    pub unsafe fn from_raw(raw: *mut std::ffi::c_void) -> Stream {
        Stream(raw)
    }

    /// The `CUstream` as a pointer.
    pub fn as_raw(self) -> *mut std::ffi::c_void {
        self.0
    }
}

impl Default for Stream {
    fn default() -> Stream {
        Stream::DEFAULT
    }
}
