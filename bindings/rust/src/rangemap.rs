//! gm_rangemap: `u64` index -> `u64` value over inclusive ranges.

use crate::alloc::{hook_of, CountingAllocator};
use crate::rcu::{assert_registered, destroy_outside_read_section, ReadGuard};
use crate::{bounds, call_catching, check, resume, sys, validate_result, Error, Result};
use core::ffi::{c_int, c_void};
use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::ptr::{self, NonNull};
use crate::lock::{WriterGuard, WriterLock};
use std::sync::Arc;

/// A stored range `[first, last]` (inclusive) and its value; or, from an
/// iteration with [`RangeIterFlags::GAPS`], a gap (value 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Range {
    pub first: u64,
    pub last: u64,
    pub value: u64,
}

impl From<sys::gm_range> for Range {
    fn from(r: sys::gm_range) -> Range {
        Range { first: r.first, last: r.last, value: r.value }
    }
}

/// Node, byte and range counts of a map (`struct gm_rangemap_stats`).
pub type RangeMapStats = sys::gm_rangemap_stats;

/// What an [`RangeMap::update`] closure asks for its piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Leave the piece as it is.
    Keep,
    /// Store this value over the piece.
    Set(u64),
    /// Make the piece a gap.
    Clear,
}

/// Iteration flags ([`RangeMap::iter_with`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeIterFlags(u32);

impl RangeIterFlags {
    /// Ascending, whole ranges.
    pub const NONE: RangeIterFlags = RangeIterFlags(0);
    /// Descending (`GM_ITER_REVERSE`).
    pub const REVERSE: RangeIterFlags = RangeIterFlags(sys::GM_ITER_REVERSE);
    /// Clip the bounds yielded to the range asked (`GM_RANGEMAP_ITER_CLIP`).
    pub const CLIP: RangeIterFlags = RangeIterFlags(sys::GM_RANGEMAP_ITER_CLIP);
    /// Yield the gaps instead of the ranges (`GM_RANGEMAP_ITER_GAPS`).
    pub const GAPS: RangeIterFlags = RangeIterFlags(sys::GM_RANGEMAP_ITER_GAPS);
}

impl std::ops::BitOr for RangeIterFlags {
    type Output = RangeIterFlags;
    fn bitor(self, o: RangeIterFlags) -> RangeIterFlags {
        RangeIterFlags(self.0 | o.0)
    }
}

/// How to make a [`RangeMap`].
#[derive(Clone, Debug)]
pub struct RangeMapOptions {
    /// Merge touching ranges of equal value (default true; false is
    /// `GM_RANGEMAP_NOCOALESCE`).
    pub coalesce: bool,
    /// Count the map's memory here (default: the plain default allocator).
    pub allocator: Option<Arc<CountingAllocator>>,
}

impl Default for RangeMapOptions {
    fn default() -> Self {
        RangeMapOptions { coalesce: true, allocator: None }
    }
}

/// A B-tree range map (`struct gm_rangemap`, RCU mode): every index of
/// `[0, u64::MAX]` is in exactly one stored range or one gap. Reads under a
/// [`ReadGuard`], lock-free; writes serialized by an internal mutex.
pub struct RangeMap {
    raw: NonNull<sys::gm_rangemap>,
    writer: WriterLock<()>,
    _alloc: Option<Arc<CountingAllocator>>,
}

// SAFETY: RCU mode: readers on any thread concurrently with one writer,
// which the internal mutex guarantees.
unsafe impl Send for RangeMap {}
unsafe impl Sync for RangeMap {}

impl RangeMap {
    /// An empty map (one gap), coalescing, default allocator.
    pub fn new() -> Result<RangeMap> {
        RangeMap::with_options(RangeMapOptions::default())
    }

    /// An empty map made as `opts` say.
    pub fn with_options(opts: RangeMapOptions) -> Result<RangeMap> {
        let flags = sys::GM_RCU | if opts.coalesce { 0 } else { sys::GM_RANGEMAP_NOCOALESCE };
        let mut raw = ptr::null_mut();
        // SAFETY: out pointer valid; the allocator (if any) is kept alive in self.
        check(unsafe { sys::gm_rangemap_create(&mut raw, flags, hook_of(&opts.allocator)) })?;
        Ok(RangeMap { raw: NonNull::new(raw).ok_or(Error::NoMemory)?, writer: WriterLock::new(()), _alloc: opts.allocator })
    }

    #[track_caller]
    fn w(&self, what: &str) -> WriterGuard<'_, ()> {
        assert_registered(what);
        self.writer.lock(what)
    }

    fn p(&self) -> *mut sys::gm_rangemap {
        self.raw.as_ptr()
    }

    /// Maps every index of `range` to `value`, overwriting (O(log n + k)).
    pub fn store(&self, range: RangeInclusive<u64>, value: u64) -> Result<()> {
        let (a, b) = bounds(&range);
        let _w = self.w("RangeMap::store");
        // SAFETY: live map, writer serialized.
        check(unsafe { sys::gm_rangemap_store(self.p(), a, b, value) })
    }

    /// As store, but [`Error::Exists`] if any index of `range` is stored.
    pub fn insert(&self, range: RangeInclusive<u64>, value: u64) -> Result<()> {
        let (a, b) = bounds(&range);
        let _w = self.w("RangeMap::insert");
        // SAFETY: as store.
        check(unsafe { sys::gm_rangemap_insert(self.p(), a, b, value) })
    }

    /// Makes `range` a gap, cutting ranges at its edges.
    pub fn remove(&self, range: RangeInclusive<u64>) -> Result<()> {
        let (a, b) = bounds(&range);
        let _w = self.w("RangeMap::remove");
        // SAFETY: as store.
        check(unsafe { sys::gm_rangemap_remove(self.p(), a, b) })
    }

    /// Calls `f(piece, present)` on each stored range of `range` (clipped),
    /// and with `gaps` on each gap too (present false, value 0), in
    /// ascending order; then applies every answer in one change. A panic in
    /// `f` leaves the map unchanged and is resumed.
    pub fn update<F>(&self, range: RangeInclusive<u64>, gaps: bool, mut f: F) -> Result<()>
    where
        F: FnMut(Range, bool) -> Update,
    {
        struct Ctx<'f> {
            f: &'f mut dyn FnMut(Range, bool) -> Update,
            panic: Option<Box<dyn std::any::Any + Send>>,
        }
        unsafe extern "C" fn tramp(ctx: *mut c_void, piece: *const sys::gm_range, present: bool, value: *mut u64) -> c_int {
            let c = &mut *(ctx as *mut Ctx<'_>);
            let piece = Range::from(*piece);
            let f = &mut c.f;
            match call_catching(&mut c.panic, || f(piece, present)) {
                Some(Update::Keep) => sys::GM_RANGEMAP_KEEP,
                Some(Update::Set(v)) => {
                    *value = v;
                    sys::GM_RANGEMAP_SET
                }
                Some(Update::Clear) => sys::GM_RANGEMAP_CLEAR,
                None => -125, // ECANCELED: aborts the update, map unchanged
            }
        }
        let (a, b) = bounds(&range);
        let mut ctx = Ctx { f: &mut f, panic: None };
        let flags = if gaps { sys::GM_RANGEMAP_UPDATE_GAPS } else { 0 };
        let rc = {
            let _w = self.w("RangeMap::update");
            // SAFETY: ctx outlives the call; tramp matches the C signature.
            unsafe { sys::gm_rangemap_update(self.p(), a, b, Some(tramp), &mut ctx as *mut Ctx as *mut c_void, flags) }
        };
        resume(ctx.panic);
        check(rc)
    }

    fn load_raw(&self, index: u64) -> (c_int, sys::gm_range) {
        let mut r = sys::gm_range::default();
        // SAFETY: live map; the caller holds a read guard.
        let rc = unsafe { sys::gm_rangemap_load(self.p(), index, &mut r.value, &mut r.first, &mut r.last) };
        (rc, r)
    }

    /// The stored range holding `index`, or `None` if it is in a gap.
    pub fn load(&self, _g: &ReadGuard<'_>, index: u64) -> Option<Range> {
        match self.load_raw(index) {
            (0, r) => Some(r.into()),
            _ => None,
        }
    }

    /// The gap holding `index` as `(first, last)`, or `None` if it is stored.
    pub fn gap_at(&self, _g: &ReadGuard<'_>, index: u64) -> Option<(u64, u64)> {
        match self.load_raw(index) {
            (0, _) => None,
            (_, r) => Some((r.first, r.last)),
        }
    }

    /// Whether `index` is in a stored range.
    pub fn contains(&self, _g: &ReadGuard<'_>, index: u64) -> bool {
        // SAFETY: live map, read guard held.
        unsafe { sys::gm_rangemap_contains(self.p(), index) }
    }

    /// Bit i set if `index` is stored in `maps[i]` (up to 64 maps, looked up
    /// side by side).
    pub fn contains_many(_g: &ReadGuard<'_>, maps: &[&RangeMap], index: u64) -> u64 {
        assert!(maps.len() <= 64, "gmtrack: RangeMap::contains_many takes at most 64 maps");
        let raw: Vec<*const sys::gm_rangemap> = maps.iter().map(|m| m.p() as *const _).collect();
        // SAFETY: every map live, read guard held.
        unsafe { sys::gm_rangemap_contains_many(raw.as_ptr(), raw.len() as u32, index) }
    }

    /// The first range with `last >= index`.
    pub fn next(&self, _g: &ReadGuard<'_>, index: u64) -> Option<Range> {
        let mut r = sys::gm_range::default();
        // SAFETY: live map, read guard held.
        (unsafe { sys::gm_rangemap_next(self.p(), index, &mut r) } == 0).then(|| r.into())
    }

    /// The last range with `first <= index`.
    pub fn prev(&self, _g: &ReadGuard<'_>, index: u64) -> Option<Range> {
        let mut r = sys::gm_range::default();
        // SAFETY: live map, read guard held.
        (unsafe { sys::gm_rangemap_prev(self.p(), index, &mut r) } == 0).then(|| r.into())
    }

    /// The lowest `first` with `[first, first + size - 1]` all gap, inside
    /// `within`, `first % align == 0` (align 0 or 1: any; else a power of
    /// two). [`Error::NoSpace`] if there is none.
    pub fn find_gap(&self, _g: &ReadGuard<'_>, size: u64, align: u64, within: RangeInclusive<u64>) -> Result<u64> {
        let (a, b) = bounds(&within);
        let mut first = 0;
        // SAFETY: live map, read guard held.
        check(unsafe { sys::gm_rangemap_find_gap(self.p(), size, align, a, b, &mut first) })?;
        Ok(first)
    }

    /// The stored ranges overlapping `range`, ascending, whole.
    pub fn iter<'a>(&'a self, g: &'a ReadGuard<'_>, range: RangeInclusive<u64>) -> RangeIter<'a> {
        self.iter_with(g, range, RangeIterFlags::NONE)
    }

    /// The ranges (or gaps) overlapping `range`, as `flags` say. An
    /// iterator over a reversed range (start > end) yields nothing.
    pub fn iter_with<'a>(&'a self, _g: &'a ReadGuard<'_>, range: RangeInclusive<u64>, flags: RangeIterFlags) -> RangeIter<'a> {
        let (a, b) = bounds(&range);
        // SAFETY: an all-zero iterator is what iter_init overwrites.
        let mut it: sys::gm_rangemap_iter = unsafe { std::mem::zeroed() };
        // SAFETY: live map, read guard held for 'a.
        let rc = unsafe { sys::gm_rangemap_iter_init(&mut it, self.p(), a, b, flags.0) };
        RangeIter { it, done: rc != 0, _l: PhantomData }
    }

    /// Number of stored ranges.
    pub fn count(&self) -> u64 {
        let _w = self.w("RangeMap::count");
        // SAFETY: writer-side call, serialized.
        unsafe { sys::gm_rangemap_count(self.p()) }
    }

    /// Nodes, bytes, height.
    pub fn stats(&self) -> RangeMapStats {
        let mut st = RangeMapStats::default();
        let _w = self.w("RangeMap::stats");
        // SAFETY: writer-side call, serialized.
        unsafe { sys::gm_rangemap_stats(self.p(), &mut st) };
        st
    }

    /// Checks every invariant; `Err` names the first broken one.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut reason = ptr::null();
        let _w = self.w("RangeMap::validate");
        // SAFETY: writer-side call, serialized.
        let rc = unsafe { sys::gm_rangemap_validate(self.p(), &mut reason) };
        validate_result(rc, reason)
    }

    /// The C handle, for calls this crate does not wrap.
    pub fn as_raw(&self) -> *mut sys::gm_rangemap {
        self.p()
    }
}

impl Drop for RangeMap {
    fn drop(&mut self) {
        let p = self.p();
        // SAFETY: no reader can reach the map (&mut self), destroy once.
        destroy_outside_read_section("RangeMap", || unsafe { sys::gm_rangemap_destroy(p) });
    }
}

impl std::fmt::Debug for RangeMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeMap").field("raw", &self.raw).finish()
    }
}

/// Iterator of [`RangeMap::iter`]; lives inside its read section.
pub struct RangeIter<'a> {
    it: sys::gm_rangemap_iter,
    done: bool,
    _l: PhantomData<(&'a RangeMap, &'a ReadGuard<'a>)>,
}

impl Iterator for RangeIter<'_> {
    type Item = Range;
    fn next(&mut self) -> Option<Range> {
        if self.done {
            return None;
        }
        let mut r = sys::gm_range::default();
        // SAFETY: initialized iterator over a live map, in its read section.
        if unsafe { sys::gm_rangemap_iter_next(&mut self.it, &mut r) } == 0 {
            Some(r.into())
        } else {
            self.done = true;
            None
        }
    }
}

impl std::iter::FusedIterator for RangeIter<'_> {}
