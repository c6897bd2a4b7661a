//! gm_itree: overlapping intervals -> items, RCU queries that never miss.

use crate::alloc::{hook_of, CountingAllocator};
use crate::rcu::{assert_registered, destroy_outside_read_section, ReadGuard};
use crate::{bounds, check, check_count, sys, validate_result, Error, Result};
use core::ffi::c_void;
use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::ptr::{self, NonNull};
use crate::lock::{WriterGuard, WriterLock};
use std::sync::Arc;

/// Shape and exact memory (`struct gm_itree_stats`).
pub type ITreeStats = sys::gm_itree_stats;

/// One stored interval `[first, last]` and its item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ITreeEntry {
    pub first: u64,
    pub last: u64,
    pub item: usize,
}

/// An interval tree (`struct gm_itree`, RCU mode) of triples `(first, last,
/// item)`; the same interval may be stored with several items. Overlap
/// queries under a [`ReadGuard`] return every entry present for the whole
/// section, in order of (first, last, item).
pub struct ITree {
    raw: NonNull<sys::gm_itree>,
    writer: WriterLock<()>,
    _alloc: Option<Arc<CountingAllocator>>,
}

// SAFETY: RCU mode, writers serialized by the mutex.
unsafe impl Send for ITree {}
unsafe impl Sync for ITree {}

impl ITree {
    /// An empty tree, default allocator.
    pub fn new() -> Result<ITree> {
        ITree::make(None)
    }

    /// An empty tree whose memory is counted by `alloc`.
    pub fn with_allocator(alloc: &Arc<CountingAllocator>) -> Result<ITree> {
        ITree::make(Some(alloc.clone()))
    }

    fn make(alloc: Option<Arc<CountingAllocator>>) -> Result<ITree> {
        let mut raw = ptr::null_mut();
        // SAFETY: out pointer valid; allocator kept alive in self.
        check(unsafe { sys::gm_itree_create(&mut raw, sys::GM_RCU, hook_of(&alloc)) })?;
        Ok(ITree { raw: NonNull::new(raw).ok_or(Error::NoMemory)?, writer: WriterLock::new(()), _alloc: alloc })
    }

    #[track_caller]
    fn w(&self, what: &str) -> WriterGuard<'_, ()> {
        assert_registered(what);
        self.writer.lock(what)
    }

    fn p(&self) -> *mut sys::gm_itree {
        self.raw.as_ptr()
    }

    /// Adds `(range, item)`; [`Error::Exists`] if the identical triple is present.
    pub fn insert(&self, range: RangeInclusive<u64>, item: usize) -> Result<()> {
        let (a, b) = bounds(&range);
        let _w = self.w("ITree::insert");
        // SAFETY: live tree, writer serialized.
        check(unsafe { sys::gm_itree_insert(self.p(), a, b, item as *mut c_void) })
    }

    /// Removes the triple `(range, item)`; [`Error::NotFound`] if absent.
    pub fn remove(&self, range: RangeInclusive<u64>, item: usize) -> Result<()> {
        let (a, b) = bounds(&range);
        let _w = self.w("ITree::remove");
        // SAFETY: as insert.
        check(unsafe { sys::gm_itree_remove(self.p(), a, b, item as *mut c_void) })
    }

    /// The entries overlapping `range` (a point: `x..=x`), ascending or,
    /// with `reverse`, descending.
    pub fn iter<'a>(&'a self, _g: &'a ReadGuard<'_>, range: RangeInclusive<u64>, reverse: bool) -> ITreeIter<'a> {
        let (a, b) = bounds(&range);
        // SAFETY: all-zero is a valid pre-init state.
        let mut it: Box<sys::gm_itree_iter> = Box::new(unsafe { std::mem::zeroed() });
        let flags = if reverse { sys::GM_ITER_REVERSE } else { 0 };
        // SAFETY: live tree, read guard held for 'a.
        let rc = unsafe { sys::gm_itree_iter_init(&mut *it, self.p(), a, b, flags) };
        ITreeIter { it, done: rc != 0, _l: PhantomData }
    }

    /// The items of the entries overlapping `range`, into `items`; returns
    /// how many overlap (may exceed `items.len()`: only that many are stored).
    pub fn fill(&self, _g: &ReadGuard<'_>, range: RangeInclusive<u64>, items: &mut [usize]) -> Result<u64> {
        let (a, b) = bounds(&range);
        // SAFETY: usize and void* share a layout; read guard held.
        check_count(unsafe { sys::gm_itree_fill(self.p(), a, b, items.as_mut_ptr() as *mut *mut c_void, items.len()) })
    }

    /// The items of every entry overlapping `range`, in order of first.
    pub fn overlapping(&self, g: &ReadGuard<'_>, range: RangeInclusive<u64>) -> Result<Vec<usize>> {
        let mut items = vec![0usize; 16];
        loop {
            let n = self.fill(g, range.clone(), &mut items)? as usize;
            if n <= items.len() {
                items.truncate(n);
                return Ok(items);
            }
            items.resize(n, 0);
        }
    }

    /// Number of stored triples.
    pub fn count(&self) -> u64 {
        // SAFETY: any thread.
        unsafe { sys::gm_itree_count(self.p()) }
    }

    /// Shape and exact memory.
    pub fn stats(&self) -> ITreeStats {
        let mut st = ITreeStats::default();
        let _w = self.w("ITree::stats");
        // SAFETY: writer side, serialized.
        unsafe { sys::gm_itree_stats(self.p(), &mut st) };
        st
    }

    /// Checks every invariant; `Err` names the first broken one.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut reason = ptr::null();
        let _w = self.w("ITree::validate");
        // SAFETY: writer side, serialized.
        let rc = unsafe { sys::gm_itree_validate(self.p(), &mut reason) };
        validate_result(rc, reason)
    }

    /// The C handle, for calls this crate does not wrap.
    pub fn as_raw(&self) -> *mut sys::gm_itree {
        self.p()
    }
}

impl Drop for ITree {
    fn drop(&mut self) {
        let p = self.p();
        // SAFETY: exclusive access; destroyed once.
        destroy_outside_read_section("ITree", || unsafe { sys::gm_itree_destroy(p) });
    }
}

impl std::fmt::Debug for ITree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ITree").field("raw", &self.raw).finish()
    }
}

/// Iterator of [`ITree::iter`]; fetches a leaf's hits per C call.
pub struct ITreeIter<'a> {
    it: Box<sys::gm_itree_iter>, // 576 bytes: boxed so the iterator moves cheaply
    done: bool,
    _l: PhantomData<(&'a ITree, &'a ReadGuard<'a>)>,
}

impl Iterator for ITreeIter<'_> {
    type Item = ITreeEntry;
    fn next(&mut self) -> Option<ITreeEntry> {
        if self.done {
            return None;
        }
        let mut e = sys::gm_itree_entry { first: 0, last: 0, item: ptr::null_mut() };
        // SAFETY: initialized iterator over a live tree, in its read section.
        if unsafe { sys::gm_itree_iter_next(&mut *self.it, &mut e) } == 0 {
            Some(ITreeEntry { first: e.first, last: e.last, item: e.item as usize })
        } else {
            self.done = true;
            None
        }
    }
}

impl std::iter::FusedIterator for ITreeIter<'_> {}
