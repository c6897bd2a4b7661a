//! gm_pagemap: frame number -> pointer-sized value, fast and small at any
//! population.

use crate::alloc::{hook_of, CountingAllocator};
use crate::rcu::{assert_registered, destroy_outside_read_section, ReadGuard};
use crate::{bounds, check, check_count, sys, validate_result, Error, Result};
use core::ffi::c_void;
use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::ptr::{self, NonNull};
use crate::lock::{WriterGuard, WriterLock};
use std::sync::Arc;

/// Entries, bytes and node counts (`struct gm_pagemap_stats`).
pub type PageMapStats = sys::gm_pagemap_stats;

/// A map from any `u64` key to a non-zero `usize` value (`struct
/// gm_pagemap`, RCU mode; the C values are non-NULL pointers). Values are
/// plain numbers to this crate: store indexes, or pointers whose lifetime
/// you manage (a reader may still see a value just removed until a grace
/// period has passed, [`crate::RcuThread::synchronize`]).
pub struct PageMap {
    raw: NonNull<sys::gm_pagemap>,
    writer: WriterLock<()>,
    _alloc: Option<Arc<CountingAllocator>>,
}

// SAFETY: RCU mode, writers serialized by the mutex.
unsafe impl Send for PageMap {}
unsafe impl Sync for PageMap {}

fn val(v: *mut c_void) -> Option<usize> {
    (!v.is_null()).then_some(v as usize)
}

impl PageMap {
    /// An empty map, default allocator.
    pub fn new() -> Result<PageMap> {
        PageMap::make(None)
    }

    /// An empty map whose memory is counted by `alloc`.
    pub fn with_allocator(alloc: &Arc<CountingAllocator>) -> Result<PageMap> {
        PageMap::make(Some(alloc.clone()))
    }

    fn make(alloc: Option<Arc<CountingAllocator>>) -> Result<PageMap> {
        let mut raw = ptr::null_mut();
        // SAFETY: out pointer valid; allocator kept alive in self.
        check(unsafe { sys::gm_pagemap_create(&mut raw, sys::GM_RCU, hook_of(&alloc)) })?;
        Ok(PageMap { raw: NonNull::new(raw).ok_or(Error::NoMemory)?, writer: WriterLock::new(()), _alloc: alloc })
    }

    #[track_caller]
    fn w(&self, what: &str) -> WriterGuard<'_, ()> {
        assert_registered(what);
        self.writer.lock(what)
    }

    fn p(&self) -> *mut sys::gm_pagemap {
        self.raw.as_ptr()
    }

    /// Adds `key -> value`; [`Error::Exists`] if `key` is present,
    /// [`Error::Invalid`] if `value` is 0.
    pub fn insert(&self, key: u64, value: usize) -> Result<()> {
        let _w = self.w("PageMap::insert");
        // SAFETY: live map, writer serialized.
        check(unsafe { sys::gm_pagemap_insert(self.p(), key, value as *mut c_void) })
    }

    /// Sets `key -> value` (non-zero), returning the value it replaced.
    pub fn store(&self, key: u64, value: usize) -> Result<Option<usize>> {
        let mut old = ptr::null_mut();
        let _w = self.w("PageMap::store");
        // SAFETY: as insert.
        check(unsafe { sys::gm_pagemap_store(self.p(), key, value as *mut c_void, &mut old) })?;
        Ok(val(old))
    }

    /// Removes `key`, returning its value (`None` if it was absent).
    pub fn remove(&self, key: u64) -> Result<Option<usize>> {
        let mut old = ptr::null_mut();
        let _w = self.w("PageMap::remove");
        // SAFETY: as insert.
        match unsafe { sys::gm_pagemap_remove(self.p(), key, &mut old) } {
            0 => Ok(val(old)),
            rc if rc == -sys::ENOENT => Ok(None),
            rc => Err(Error::from_errno(rc)),
        }
    }

    /// The value of `key`.
    #[inline]
    pub fn load(&self, _g: &ReadGuard<'_>, key: u64) -> Option<usize> {
        // SAFETY: live map, read guard held.
        val(unsafe { sys::gm_pagemap_load(self.p(), key) })
    }

    /// `values[i] = load(keys[i])` (0 for absent) in one batched walk;
    /// returns how many were found.
    ///
    /// # Panics
    /// If the slices' lengths differ.
    pub fn load_many(&self, _g: &ReadGuard<'_>, keys: &[u64], values: &mut [usize]) -> u64 {
        assert_eq!(keys.len(), values.len(), "gmtrack: PageMap::load_many needs one value slot per key");
        // SAFETY: usize and void* have the same layout; lengths checked.
        let rc = unsafe {
            sys::gm_pagemap_load_many(self.p(), keys.as_ptr(), keys.len(), values.as_mut_ptr() as *mut *mut c_void)
        };
        check_count(rc).unwrap_or(0)
    }

    /// The first entry with key >= `key`.
    pub fn next(&self, _g: &ReadGuard<'_>, key: u64) -> Option<(u64, usize)> {
        let mut e = sys::gm_pagemap_entry { key: 0, value: ptr::null_mut() };
        // SAFETY: live map, read guard held.
        (unsafe { sys::gm_pagemap_next(self.p(), key, &mut e) } == 0).then_some((e.key, e.value as usize))
    }

    /// The last entry with key <= `key`.
    pub fn prev(&self, _g: &ReadGuard<'_>, key: u64) -> Option<(u64, usize)> {
        let mut e = sys::gm_pagemap_entry { key: 0, value: ptr::null_mut() };
        // SAFETY: live map, read guard held.
        (unsafe { sys::gm_pagemap_prev(self.p(), key, &mut e) } == 0).then_some((e.key, e.value as usize))
    }

    /// The entries of `range` in key order (descending if `reverse`).
    pub fn iter<'a>(&'a self, _g: &'a ReadGuard<'_>, range: RangeInclusive<u64>, reverse: bool) -> PageMapIter<'a> {
        let (a, b) = bounds(&range);
        // SAFETY: all-zero is a valid pre-init state.
        let mut it: sys::gm_pagemap_iter = unsafe { std::mem::zeroed() };
        let flags = if reverse { sys::GM_ITER_REVERSE } else { 0 };
        // SAFETY: live map, read guard held for 'a.
        let rc = unsafe { sys::gm_pagemap_iter_init(&mut it, self.p(), a, b, flags) };
        PageMapIter { it, done: rc != 0, _l: PhantomData }
    }

    /// Number of entries.
    pub fn count(&self) -> u64 {
        // SAFETY: any context (a snapshot).
        unsafe { sys::gm_pagemap_count(self.p()) }
    }

    /// Bytes and node counts.
    pub fn stats(&self) -> PageMapStats {
        let mut st = PageMapStats::default();
        let _w = self.w("PageMap::stats");
        // SAFETY: writer context, serialized.
        unsafe { sys::gm_pagemap_stats(self.p(), &mut st) };
        st
    }

    /// Checks every invariant; `Err` names the first broken one.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut reason = ptr::null();
        let _w = self.w("PageMap::validate");
        // SAFETY: writer context, serialized.
        let rc = unsafe { sys::gm_pagemap_validate(self.p(), &mut reason) };
        validate_result(rc, reason)
    }

    /// The C handle, for calls this crate does not wrap.
    pub fn as_raw(&self) -> *mut sys::gm_pagemap {
        self.p()
    }
}

impl Drop for PageMap {
    fn drop(&mut self) {
        let p = self.p();
        // SAFETY: exclusive access; destroyed once.
        destroy_outside_read_section("PageMap", || unsafe { sys::gm_pagemap_destroy(p) });
    }
}

impl std::fmt::Debug for PageMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageMap").field("raw", &self.raw).finish()
    }
}

/// Iterator of [`PageMap::iter`], yielding `(key, value)`.
pub struct PageMapIter<'a> {
    it: sys::gm_pagemap_iter,
    done: bool,
    _l: PhantomData<(&'a PageMap, &'a ReadGuard<'a>)>,
}

impl Iterator for PageMapIter<'_> {
    type Item = (u64, usize);
    fn next(&mut self) -> Option<(u64, usize)> {
        if self.done {
            return None;
        }
        let mut e = sys::gm_pagemap_entry { key: 0, value: ptr::null_mut() };
        // SAFETY: initialized iterator over a live map, in its read section.
        if unsafe { sys::gm_pagemap_iter_next(&mut self.it, &mut e) } == 0 {
            Some((e.key, e.value as usize))
        } else {
            self.done = true;
            None
        }
    }
}

impl std::iter::FusedIterator for PageMapIter<'_> {}
