//! Knobs for testing code that uses gms (`include/gms/testing.h`).
//!
//! **Not a stable API**, as the C header says: what is here may change or
//! go in any release. A program in production has no use for it.

use crate::error::Result;
use crate::runtime::{Runtime, RuntimeBuilder};
use crate::sys;

/// Opens a private runtime whose `fail_nth_call`-th fallible internal
/// operation (a backend call or a metadata allocation, counted from 1 at
/// the open) fails; 0: none does. Drives a program's error paths the way
/// a failing allocator does.
pub fn open_failing(builder: RuntimeBuilder, fail_nth_call: u64) -> Result<Runtime> {
    builder.open_with(Some(&sys::gms_testing_options { fail_nth_call }))
}

/// Shifts the clock that dates audit records, for every runtime of the
/// process, by `ns` nanoseconds; 0 puts it back.
pub fn audit_clock_skew(ns: i64) {
    // SAFETY: takes a plain number; no other precondition.
    unsafe { sys::gms_testing_audit_clock_skew(ns) }
}

/// Record slots per thread shard of the audit ring, for trails opened from
/// now on: a power of two from 2, or 0 for the default.
pub fn audit_ring_slots(slots: u32) -> Result<()> {
    // SAFETY: takes a plain number; no other precondition.
    crate::error::check(unsafe { sys::gms_testing_audit_ring_slots(slots) })
}
