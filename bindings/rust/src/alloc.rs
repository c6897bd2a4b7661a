//! The counting allocator (alloc.h): exact bytes of the structures built on it.

use crate::sys;
use std::cell::UnsafeCell;
use std::sync::Arc;

/// `struct gm_alloc_counting` over the default allocator: give it to
/// structures (`with_allocator`) to read their exact memory use. The
/// structures keep an `Arc` of it, so it outlives them.
///
/// ```
/// use gmtrack::{CountingAllocator, PageMap, RcuThread};
/// let _rcu = RcuThread::register();
/// let counting = CountingAllocator::new();
/// let map = PageMap::with_allocator(&counting)?;
/// map.insert(7, 0x1000)?;
/// assert!(counting.bytes() > 0);
/// drop(map);
/// assert_eq!(counting.bytes(), 0);
/// # Ok::<(), gmtrack::Error>(())
/// ```
pub struct CountingAllocator {
    // Boxed: the allocator hook's ctx points into the struct.
    raw: Box<UnsafeCell<sys::gm_alloc_counting>>,
}

// SAFETY: the counters are updated with atomic builtins, and the default
// allocator underneath is thread-safe (alloc.h): structures call it from the
// writer's thread and from liburcu's call_rcu thread.
unsafe impl Send for CountingAllocator {}
unsafe impl Sync for CountingAllocator {}

impl CountingAllocator {
    /// A counting allocator over the default (malloc) allocator.
    pub fn new() -> Arc<CountingAllocator> {
        // SAFETY: gm_alloc_counting_init fills every field; zeroes are a
        // valid starting bit pattern (null pointers, None callbacks).
        let raw: Box<UnsafeCell<sys::gm_alloc_counting>> = Box::new(UnsafeCell::new(unsafe { std::mem::zeroed() }));
        unsafe { sys::gm_alloc_counting_init(raw.get(), std::ptr::null()) };
        Arc::new(CountingAllocator { raw })
    }

    /// Bytes allocated through it now.
    pub fn bytes(&self) -> usize {
        // SAFETY: live struct; atomic reads inside.
        unsafe { sys::gm_alloc_counting_bytes(self.raw.get()) }
    }

    /// The highest byte count seen since creation or the last reset.
    pub fn peak(&self) -> usize {
        // SAFETY: as bytes.
        unsafe { sys::gm_alloc_counting_peak(self.raw.get()) }
    }

    /// Sets the peak to the current byte count.
    pub fn reset_peak(&self) {
        // SAFETY: atomic store inside.
        unsafe { sys::gm_alloc_counting_reset_peak(self.raw.get()) }
    }

    pub(crate) fn hook(&self) -> *const sys::gm_allocator {
        // `allocator` is the first field of struct gm_alloc_counting.
        self.raw.get() as *const sys::gm_allocator
    }
}

impl std::fmt::Debug for CountingAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingAllocator").field("bytes", &self.bytes()).field("peak", &self.peak()).finish()
    }
}

/// The allocator a structure was made with, kept alive by the structure.
pub(crate) fn hook_of(a: &Option<Arc<CountingAllocator>>) -> *const sys::gm_allocator {
    a.as_ref().map_or(std::ptr::null(), |c| c.hook())
}
