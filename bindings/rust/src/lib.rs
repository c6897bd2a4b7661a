//! Safe Rust bindings to gmtrack, the C11 library of guest-memory tracking
//! structures with lock-free RCU readers.
//!
//! * [`Space`] — one guest address space: memslots (one at a time or in a
//!   [`Batch`]), gfn -> hva with a per-vCPU [`GfnCache`], dirty logs
//!   ([`Slot::mark_dirty`], [`Slot::harvest_dirty`]), per-frame attributes,
//!   write tracking and MMIO/PIO dispatch ([`Space::io_add`], [`Space::io_find`]).
//! * [`RangeMap`] — `u64` index -> `u64` value over inclusive ranges.
//! * [`PageMap`] — frame number -> pointer-sized value, any population.
//! * [`ITree`] — overlapping intervals -> pointer-sized items.
//!
//! # Threads and read sections
//!
//! Every structure here is created in RCU mode: any number of threads read
//! it without locks while writers change it. A thread that touches a
//! structure first registers with RCU by making an [`RcuThread`] (one per
//! thread; it is `!Send`, and dropping it unregisters the thread). Reads take
//! a [`ReadGuard`] borrowed from that `RcuThread`, so a read outside a
//! section, or on an unregistered thread, does not compile; whatever a read
//! returns by reference ([`Slot`], iterators) lives no longer than the guard.
//! Writers take `&self` and are serialized by a mutex inside each structure
//! (the C library leaves writer serialization to its caller), so a structure
//! can be shared in an `Arc` between vCPU threads and the VMM's control
//! thread. A writer call on a thread without an `RcuThread` panics with a
//! message saying so. Dropping a structure waits for a grace period (it
//! panics if the dropping thread is inside a read section, which would
//! deadlock).
//!
//! ```
//! use gmtrack::{RcuThread, RangeMap};
//! let rcu = RcuThread::register();
//! let map = RangeMap::new()?;
//! map.store(0..=(1 << 28) - 1, 1)?; // a 1 TiB guest, all private
//! map.store(0x1000..=0x1fff, 2)?;   // convert 16 MiB to shared
//! let g = rcu.read();
//! assert_eq!(map.load(&g, 0x1234).unwrap().value, 2);
//! # Ok::<(), gmtrack::Error>(())
//! ```
//!
//! The raw C API is in [`sys`].

use std::ffi::CStr;
use std::fmt;

pub mod sys;

mod alloc;
mod itree;
mod lock;
mod pagemap;
mod rangemap;
mod rcu;
mod space;

pub use alloc::CountingAllocator;
pub use itree::{ITree, ITreeEntry, ITreeIter, ITreeStats};
pub use pagemap::{PageMap, PageMapIter, PageMapStats};
pub use rangemap::{Range, RangeIter, RangeIterFlags, RangeMap, RangeMapOptions, RangeMapStats, Update};
pub use rcu::{RcuThread, ReadGuard};
pub use space::{
    Batch, GfnCache, HvaHit, IoHandler, IoKind, IoRange, Slot, SlotFlags, Space, SpaceConfig, SpaceStats,
    PAGE_SHIFT, PAGE_SIZE,
};

/// A gmtrack error: the negative errno a C call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// `-EINVAL`: a bad argument (first > last, an unaligned or oversized
    /// slot, unknown flags, a size that can never be met, ...).
    Invalid,
    /// `-ENOMEM`: out of memory; the structure is unchanged.
    NoMemory,
    /// `-EEXIST`: already present, or overlapping what is.
    Exists,
    /// `-ENOENT`: not present.
    NotFound,
    /// `-ENOSPC`: a limit (slot limit, tree height, no gap big enough).
    NoSpace,
    /// `-EIO`: output failed.
    Io,
    /// Any other errno (positive value).
    Errno(i32),
}

impl Error {
    /// The error of a negative errno return `rc` (`-EINVAL` -> `Invalid`).
    pub fn from_errno(rc: i32) -> Error {
        match -rc {
            sys::EINVAL => Error::Invalid,
            sys::ENOMEM => Error::NoMemory,
            sys::EEXIST => Error::Exists,
            sys::ENOENT => Error::NotFound,
            sys::ENOSPC => Error::NoSpace,
            sys::EIO => Error::Io,
            e => Error::Errno(e),
        }
    }

    /// The positive errno value.
    pub fn errno(self) -> i32 {
        match self {
            Error::Invalid => sys::EINVAL,
            Error::NoMemory => sys::ENOMEM,
            Error::Exists => sys::EEXIST,
            Error::NotFound => sys::ENOENT,
            Error::NoSpace => sys::ENOSPC,
            Error::Io => sys::EIO,
            Error::Errno(e) => e,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Error::Invalid => "invalid argument (EINVAL)",
            Error::NoMemory => "out of memory (ENOMEM)",
            Error::Exists => "already present or overlapping (EEXIST)",
            Error::NotFound => "not present (ENOENT)",
            Error::NoSpace => "limit reached (ENOSPC)",
            Error::Io => "output failed (EIO)",
            Error::Errno(e) => return write!(f, "gmtrack: errno {e}"),
        };
        write!(f, "gmtrack: {what}")
    }
}

impl std::error::Error for Error {}

/// `Result<T, gmtrack::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn check(rc: core::ffi::c_int) -> Result<()> {
    if rc < 0 {
        Err(Error::from_errno(rc))
    } else {
        Ok(())
    }
}

pub(crate) fn check_count(rc: i64) -> Result<u64> {
    if rc < 0 {
        Err(Error::from_errno(rc as i32))
    } else {
        Ok(rc as u64)
    }
}

pub(crate) fn bounds(r: &std::ops::RangeInclusive<u64>) -> (u64, u64) {
    (*r.start(), *r.end())
}

/// A `validate` call's result: `Err` holds the first broken invariant.
pub(crate) fn validate_result(rc: core::ffi::c_int, reason: *const core::ffi::c_char) -> std::result::Result<(), String> {
    if rc == 0 {
        return Ok(());
    }
    if reason.is_null() {
        return Err(format!("invalid ({})", Error::from_errno(rc)));
    }
    // SAFETY: the library's reasons are static NUL-terminated strings.
    Err(unsafe { CStr::from_ptr(reason) }.to_string_lossy().into_owned())
}

/// The linked library's version, "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    // SAFETY: gm_version returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(sys::gm_version()) }.to_str().unwrap_or("?")
}

/// The linked library's MAJOR * 10000 + MINOR * 100 + PATCH.
pub fn version_number() -> i32 {
    // SAFETY: no arguments, no state.
    unsafe { sys::gm_version_number() }
}

/// Calls `f` catching a panic into `slot` (the first one is kept; later
/// calls do nothing once a panic was caught), for closures called from C.
pub(crate) fn call_catching<R>(
    slot: &mut Option<Box<dyn std::any::Any + Send>>,
    f: impl FnOnce() -> R,
) -> Option<R> {
    if slot.is_some() {
        return None;
    }
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(p) => {
            *slot = Some(p);
            None
        }
    }
}

pub(crate) fn resume(slot: Option<Box<dyn std::any::Any + Send>>) {
    if let Some(p) = slot {
        std::panic::resume_unwind(p);
    }
}
