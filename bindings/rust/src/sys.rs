//! The raw C API, written by hand from `include/gmtrack/*.h` (no bindgen).
//!
//! Every declaration mirrors its header exactly: opaque handles are
//! zero-sized `#[repr(C)]` types only ever used behind pointers, value
//! structs are `#[repr(C)]` with their sizes checked below at compile time
//! (LP64: x86_64, aarch64) and every field offset checked at test time
//! against the C compiler's view of the headers (`tests/layout.rs` builds
//! `tests/layout.c`).
//!
//! Covered: common.h, alloc.h, rcu.h, rangemap.h, pagemap.h, itree.h and
//! space.h (all but the rmap part). Not covered: rangeset.h, rmap.h.
//!
//! Everything here is `unsafe` to call; the safe API is the crate root.
#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_int, c_uint, c_void};
use core::mem::{align_of, size_of};

// ---- common.h -------------------------------------------------------------
pub const GM_RCU: c_uint = 0x1;
pub const GM_ITER_REVERSE: c_uint = 0x1;

// errno values (Linux, every architecture gmtrack builds on)
pub const EIO: c_int = 5;
pub const ENOENT: c_int = 2;
pub const ENOMEM: c_int = 12;
pub const EEXIST: c_int = 17;
pub const EINVAL: c_int = 22;
pub const ENOSPC: c_int = 28;

extern "C" {
    pub fn gm_version() -> *const c_char;
    pub fn gm_version_number() -> c_int;
}

// ---- alloc.h --------------------------------------------------------------
#[repr(C)]
#[derive(Clone, Copy)]
pub struct gm_allocator {
    pub alloc: Option<unsafe extern "C" fn(ctx: *mut c_void, size: usize, align: usize) -> *mut c_void>,
    pub free: Option<unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void, size: usize)>,
    pub ctx: *mut c_void,
}

#[repr(C)]
pub struct gm_alloc_counting {
    pub allocator: gm_allocator,
    pub parent: *const gm_allocator,
    pub bytes: usize,
    pub peak: usize,
    pub allocs: u64,
    pub frees: u64,
}

extern "C" {
    pub fn gm_alloc_default() -> *const gm_allocator;
    pub fn gm_alloc_counting_init(c: *mut gm_alloc_counting, parent: *const gm_allocator);
    pub fn gm_alloc_counting_bytes(c: *const gm_alloc_counting) -> usize;
    pub fn gm_alloc_counting_peak(c: *const gm_alloc_counting) -> usize;
    pub fn gm_alloc_counting_reset_peak(c: *mut gm_alloc_counting);
}
// gm_alloc_mem / gm_alloc_release are static inline in alloc.h and not
// needed here; gm_alloc_failing is not wrapped.

// ---- rcu.h ----------------------------------------------------------------
// THE ONE PLACE that names the read-side entry points. rcu.h is about to
// make gm_rcu_read_lock/unlock static inline and export out-of-line twins
// gm_rcu_read_lock_extern / gm_rcu_read_unlock_extern. build.rs sets the
// cfg `gmtrack_rcu_extern` when the rcu.h it finds declares the twins (or
// when GMTRACK_RCU_EXTERN=1); to switch by hand, change the two
// `link_name`s below (or the cfg_attr condition) — nothing else uses the
// names.
extern "C" {
    #[cfg_attr(gmtrack_rcu_extern, link_name = "gm_rcu_read_lock_extern")]
    #[cfg_attr(not(gmtrack_rcu_extern), link_name = "gm_rcu_read_lock")]
    pub fn rcu_read_lock();
    #[cfg_attr(gmtrack_rcu_extern, link_name = "gm_rcu_read_unlock_extern")]
    #[cfg_attr(not(gmtrack_rcu_extern), link_name = "gm_rcu_read_unlock")]
    pub fn rcu_read_unlock();
}

extern "C" {
    pub fn gm_rcu_register_thread();
    pub fn gm_rcu_unregister_thread();
    pub fn gm_rcu_read_ongoing() -> c_int;
    pub fn gm_rcu_synchronize();
    pub fn gm_rcu_barrier();
}

// ---- rangemap.h -------------------------------------------------------------
pub const GM_RANGEMAP_NOCOALESCE: c_uint = 0x100;
pub const GM_RANGEMAP_ITER_CLIP: c_uint = 0x100;
pub const GM_RANGEMAP_ITER_GAPS: c_uint = 0x200;
pub const GM_RANGEMAP_UPDATE_GAPS: c_uint = 0x1;
pub const GM_RANGEMAP_KEEP: c_int = 0;
pub const GM_RANGEMAP_SET: c_int = 1;
pub const GM_RANGEMAP_CLEAR: c_int = 2;
pub const GM_RANGEMAP_MAX_HEIGHT: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct gm_range {
    pub first: u64,
    pub last: u64,
    pub value: u64,
}

#[repr(C)]
pub struct gm_rangemap {
    _p: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct gm_rangemap_stats {
    pub ranges: u64,
    pub gaps: u64,
    pub leaves: u64,
    pub inner_nodes: u64,
    pub bytes: u64,
    pub height: u64,
    pub kept_bytes: u64,
}

#[repr(C)]
pub struct gm_rangemap_iter {
    pub map: *const gm_rangemap,
    pub first: u64,
    pub last: u64,
    pub flags: c_uint,
    pub state: c_int,
    pub depth: c_uint,
    pub slot: c_uint,
    pub leaf: *const c_void,
    pub node: [*const c_void; GM_RANGEMAP_MAX_HEIGHT],
    pub pos: [u8; GM_RANGEMAP_MAX_HEIGHT],
}

pub type gm_rangemap_update_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, piece: *const gm_range, present: bool, value: *mut u64) -> c_int>;

extern "C" {
    pub fn gm_rangemap_create(out: *mut *mut gm_rangemap, flags: c_uint, alloc: *const gm_allocator) -> c_int;
    pub fn gm_rangemap_destroy(map: *mut gm_rangemap);
    pub fn gm_rangemap_store(map: *mut gm_rangemap, first: u64, last: u64, value: u64) -> c_int;
    pub fn gm_rangemap_insert(map: *mut gm_rangemap, first: u64, last: u64, value: u64) -> c_int;
    pub fn gm_rangemap_remove(map: *mut gm_rangemap, first: u64, last: u64) -> c_int;
    pub fn gm_rangemap_load(
        map: *const gm_rangemap,
        index: u64,
        value: *mut u64,
        first: *mut u64,
        last: *mut u64,
    ) -> c_int;
    pub fn gm_rangemap_contains(map: *const gm_rangemap, index: u64) -> bool;
    pub fn gm_rangemap_contains_many(maps: *const *const gm_rangemap, n: c_uint, index: u64) -> u64;
    pub fn gm_rangemap_next(map: *const gm_rangemap, index: u64, range: *mut gm_range) -> c_int;
    pub fn gm_rangemap_prev(map: *const gm_rangemap, index: u64, range: *mut gm_range) -> c_int;
    pub fn gm_rangemap_iter_init(
        it: *mut gm_rangemap_iter,
        map: *const gm_rangemap,
        first: u64,
        last: u64,
        flags: c_uint,
    ) -> c_int;
    pub fn gm_rangemap_iter_next(it: *mut gm_rangemap_iter, range: *mut gm_range) -> c_int;
    pub fn gm_rangemap_find_gap(
        map: *const gm_rangemap,
        size: u64,
        align: u64,
        min: u64,
        max: u64,
        first: *mut u64,
    ) -> c_int;
    pub fn gm_rangemap_update(
        map: *mut gm_rangemap,
        first: u64,
        last: u64,
        fn_: gm_rangemap_update_fn,
        ctx: *mut c_void,
        flags: c_uint,
    ) -> c_int;
    pub fn gm_rangemap_count(map: *const gm_rangemap) -> u64;
    pub fn gm_rangemap_stats(map: *const gm_rangemap, stats: *mut gm_rangemap_stats) -> c_int;
    pub fn gm_rangemap_validate(map: *const gm_rangemap, reason: *mut *const c_char) -> c_int;
}

// ---- pagemap.h --------------------------------------------------------------
#[repr(C)]
pub struct gm_pagemap {
    _p: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct gm_pagemap_entry {
    pub key: u64,
    pub value: *mut c_void,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct gm_pagemap_stats {
    pub entries: u64,
    pub bytes: u64,
    pub branches: u64,
    pub bitmap_leaves: u64,
    pub sorted_leaves: u64,
    pub max_depth: u64,
}

#[repr(C)]
pub struct gm_pagemap_iter {
    pub map: *const gm_pagemap,
    pub pos: u64,
    pub end: u64,
    pub reverse: bool,
    pub done: bool,
}

pub type gm_pagemap_walk_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, key: u64, value: *mut c_void) -> c_int>;

extern "C" {
    pub fn gm_pagemap_create(out: *mut *mut gm_pagemap, flags: c_uint, alloc: *const gm_allocator) -> c_int;
    pub fn gm_pagemap_destroy(map: *mut gm_pagemap);
    pub fn gm_pagemap_insert(map: *mut gm_pagemap, key: u64, value: *mut c_void) -> c_int;
    pub fn gm_pagemap_store(map: *mut gm_pagemap, key: u64, value: *mut c_void, old: *mut *mut c_void) -> c_int;
    pub fn gm_pagemap_load(map: *const gm_pagemap, key: u64) -> *mut c_void;
    pub fn gm_pagemap_load_many(map: *const gm_pagemap, keys: *const u64, n: usize, values: *mut *mut c_void) -> i64;
    pub fn gm_pagemap_remove(map: *mut gm_pagemap, key: u64, old: *mut *mut c_void) -> c_int;
    pub fn gm_pagemap_next(map: *const gm_pagemap, key: u64, out: *mut gm_pagemap_entry) -> c_int;
    pub fn gm_pagemap_prev(map: *const gm_pagemap, key: u64, out: *mut gm_pagemap_entry) -> c_int;
    pub fn gm_pagemap_count(map: *const gm_pagemap) -> u64;
    pub fn gm_pagemap_iter_init(
        it: *mut gm_pagemap_iter,
        map: *const gm_pagemap,
        first: u64,
        last: u64,
        flags: c_uint,
    ) -> c_int;
    pub fn gm_pagemap_iter_next(it: *mut gm_pagemap_iter, out: *mut gm_pagemap_entry) -> c_int;
    pub fn gm_pagemap_walk(
        map: *const gm_pagemap,
        first: u64,
        last: u64,
        fn_: gm_pagemap_walk_fn,
        ctx: *mut c_void,
    ) -> c_int;
    pub fn gm_pagemap_stats(map: *const gm_pagemap, stats: *mut gm_pagemap_stats) -> c_int;
    pub fn gm_pagemap_validate(map: *const gm_pagemap, reason: *mut *const c_char) -> c_int;
}

// ---- itree.h ----------------------------------------------------------------
pub const GM_ITREE_MAX_HEIGHT: usize = 20;
pub const GM_ITREE_LEAF_ENTRIES: usize = 15;

#[repr(C)]
pub struct gm_itree {
    _p: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct gm_itree_entry {
    pub first: u64,
    pub last: u64,
    pub item: *mut c_void,
}

#[repr(C)]
pub struct gm_itree_iter {
    pub a: u64,
    pub b: u64,
    pub level: c_int,
    pub top: c_int,
    pub reverse: bool,
    pub node: [*const c_void; GM_ITREE_MAX_HEIGHT],
    pub idx: [u8; GM_ITREE_MAX_HEIGHT],
    pub nhits: u8,
    pub next_hit: u8,
    pub past_b: bool,
    pub hit: [gm_itree_entry; GM_ITREE_LEAF_ENTRIES],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct gm_itree_stats {
    pub entries: u64,
    pub height: u64,
    pub leaf_nodes: u64,
    pub inner_nodes: u64,
    pub node_bytes: u64,
    pub total_bytes: u64,
}

extern "C" {
    pub fn gm_itree_create(out: *mut *mut gm_itree, flags: c_uint, alloc: *const gm_allocator) -> c_int;
    pub fn gm_itree_destroy(t: *mut gm_itree);
    pub fn gm_itree_insert(t: *mut gm_itree, first: u64, last: u64, item: *mut c_void) -> c_int;
    pub fn gm_itree_remove(t: *mut gm_itree, first: u64, last: u64, item: *mut c_void) -> c_int;
    pub fn gm_itree_iter_init(it: *mut gm_itree_iter, t: *const gm_itree, first: u64, last: u64, flags: c_uint)
        -> c_int;
    pub fn gm_itree_iter_next(it: *mut gm_itree_iter, out: *mut gm_itree_entry) -> c_int;
    pub fn gm_itree_iter_fill(it: *mut gm_itree_iter, out: *mut gm_itree_entry, max: usize) -> i64;
    pub fn gm_itree_fill(t: *const gm_itree, first: u64, last: u64, items: *mut *mut c_void, max: usize) -> i64;
    pub fn gm_itree_count(t: *const gm_itree) -> u64;
    pub fn gm_itree_stats(t: *const gm_itree, s: *mut gm_itree_stats) -> c_int;
    pub fn gm_itree_validate(t: *const gm_itree, reason: *mut *const c_char) -> c_int;
}

// ---- space.h ----------------------------------------------------------------
pub const GM_SPACE_PAGE_SHIFT: u32 = 12;
pub const GM_SPACE_DEFAULT_MAX_SLOTS: u32 = 32764;
pub const GM_SPACE_GFN_LIMIT: u64 = 1u64 << (64 - GM_SPACE_PAGE_SHIFT);
pub const GM_SPACE_SLOT_READONLY: u32 = 0x1;
pub const GM_SPACE_SLOT_DIRTY_LOG: u32 = 0x2;

#[repr(C)]
pub struct gm_space {
    _p: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct gm_space_slot {
    pub base_gfn: u64,
    pub npages: u64,
    pub hva: u64,
    pub id: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct gm_space_cache {
    pub generation: u64,
    pub base_gfn: u64,
    pub npages: u64,
    pub hva: u64,
    pub slot: *const gm_space_slot,
}

/// The documented start of every `struct gm_space` (its published
/// generation, written with `__atomic` release stores): what the inline hit
/// path of `gm_space_gfn_to_hva` reads.
#[repr(C)]
pub struct gm_space_head {
    pub generation: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct gm_space_config {
    pub max_slots: u32,
    pub host_page_shift: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct gm_space_hva_hit {
    pub slot: *const gm_space_slot,
    pub first_gfn: u64,
    pub last_gfn: u64,
}

pub type gm_space_io_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, addr: u64, data: *mut c_void, size: c_uint, is_write: bool)>;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct gm_space_io {
    pub first: u64,
    pub last: u64,
    pub fn_: gm_space_io_fn,
    pub ctx: *mut c_void,
}

/// `enum gm_space_io_kind` (an int-sized C enum).
pub type gm_space_io_kind = c_uint;
pub const GM_SPACE_MMIO: gm_space_io_kind = 0;
pub const GM_SPACE_PIO: gm_space_io_kind = 1;

pub type gm_space_dirty_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, first_gfn: u64, count: u64) -> c_int>;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct gm_space_stats {
    pub slots: u64,
    pub guest_pages: u64,
    pub generation: u64,
    pub bytes_space: u64,
    pub bytes_slots: u64,
    pub bytes_gfn_index: u64,
    pub bytes_hva_index: u64,
    pub bytes_id_index: u64,
    pub bytes_attributes: u64,
    pub bytes_write_track: u64,
    pub bytes_io: u64,
    pub bytes_dirty: u64,
    pub bytes_rmap: u64,
    pub bytes_total: u64,
    pub bytes_per_gib: f64,
}

extern "C" {
    pub fn gm_space_create(
        out: *mut *mut gm_space,
        config: *const gm_space_config,
        flags: c_uint,
        alloc: *const gm_allocator,
    ) -> c_int;
    pub fn gm_space_destroy(s: *mut gm_space);

    pub fn gm_space_batch_begin(s: *mut gm_space);
    pub fn gm_space_batch_abort(s: *mut gm_space);
    pub fn gm_space_batch_add(s: *mut gm_space, id: u32, base_gfn: u64, npages: u64, hva: u64, flags: u32) -> c_int;
    pub fn gm_space_batch_remove(s: *mut gm_space, id: u32) -> c_int;
    pub fn gm_space_batch_move(s: *mut gm_space, id: u32, new_base_gfn: u64) -> c_int;
    pub fn gm_space_batch_resize(s: *mut gm_space, id: u32, new_npages: u64) -> c_int;
    pub fn gm_space_batch_set_flags(s: *mut gm_space, id: u32, flags: u32) -> c_int;
    pub fn gm_space_batch_commit(s: *mut gm_space) -> c_int;
    pub fn gm_space_slot_add(s: *mut gm_space, id: u32, base_gfn: u64, npages: u64, hva: u64, flags: u32) -> c_int;
    pub fn gm_space_slot_remove(s: *mut gm_space, id: u32) -> c_int;
    pub fn gm_space_slot_move(s: *mut gm_space, id: u32, new_base_gfn: u64) -> c_int;
    pub fn gm_space_slot_resize(s: *mut gm_space, id: u32, new_npages: u64) -> c_int;
    pub fn gm_space_slot_set_flags(s: *mut gm_space, id: u32, flags: u32) -> c_int;

    pub fn gm_space_cache_init(c: *mut gm_space_cache);
    pub fn gm_space_gfn_to_slot(
        s: *const gm_space,
        cache: *mut gm_space_cache,
        gfn: u64,
        slot: *mut *const gm_space_slot,
    ) -> c_int;
    /// The out-of-line half of the static inline `gm_space_gfn_to_hva`
    /// (which has no symbol: see `gfn_to_hva` below).
    pub fn gm_space_gfn_to_hva_slow(s: *const gm_space, cache: *mut gm_space_cache, gfn: u64, hva: *mut u64) -> c_int;
    pub fn gm_space_id_to_slot(s: *const gm_space, id: u32) -> *const gm_space_slot;
    pub fn gm_space_hva_fill(
        s: *const gm_space,
        first: u64,
        last: u64,
        hits: *mut gm_space_hva_hit,
        max: usize,
    ) -> i64;
    pub fn gm_space_generation(s: *const gm_space) -> u64;
    pub fn gm_space_slot_count(s: *const gm_space) -> u64;

    pub fn gm_space_attr_set(s: *mut gm_space, first: u64, last: u64, value: u64) -> c_int;
    pub fn gm_space_attr_get(s: *const gm_space, gfn: u64) -> u64;
    pub fn gm_space_attr_all(s: *const gm_space, first: u64, last: u64, value: u64) -> bool;

    pub fn gm_space_protect(s: *mut gm_space, first: u64, last: u64) -> c_int;
    pub fn gm_space_unprotect(s: *mut gm_space, first: u64, last: u64) -> c_int;
    pub fn gm_space_protect_count(s: *const gm_space, gfn: u64) -> u64;

    pub fn gm_space_io_add(
        s: *mut gm_space,
        kind: gm_space_io_kind,
        first: u64,
        last: u64,
        fn_: gm_space_io_fn,
        ctx: *mut c_void,
    ) -> c_int;
    pub fn gm_space_io_remove(s: *mut gm_space, kind: gm_space_io_kind, first: u64) -> c_int;
    pub fn gm_space_io_find(s: *const gm_space, kind: gm_space_io_kind, addr: u64, io: *mut gm_space_io) -> c_int;

    pub fn gm_space_dirty_mark(s: *mut gm_space, slot: *const gm_space_slot, gfn: u64) -> c_int;
    pub fn gm_space_dirty_harvest(
        s: *mut gm_space,
        slot: *const gm_space_slot,
        first_gfn: u64,
        last_gfn: u64,
        fn_: gm_space_dirty_fn,
        ctx: *mut c_void,
    ) -> i64;
    pub fn gm_space_dirty_import(
        s: *mut gm_space,
        slot: *const gm_space_slot,
        first_gfn: u64,
        bitmap: *const u64,
        nbits: u64,
    ) -> c_int;

    pub fn gm_space_stats(s: *const gm_space, st: *mut gm_space_stats) -> c_int;
    pub fn gm_space_validate(s: *const gm_space, reason: *mut *const c_char) -> c_int;
}
// gm_space_rmap_head (and rmap.h) are not declared: the crate does not wrap
// reverse maps.

/// The inline hit path of `gm_space_gfn_to_hva` (space.h), in Rust: a hit
/// is one acquire load of the space's published generation
/// (`struct gm_space_head`, the documented start of every space) and one
/// range check; a miss calls `gm_space_gfn_to_hva_slow`.
///
/// # Safety
/// `s` is a live space and the caller is inside an RCU read section on a
/// registered thread; `cache` (may be null) is a cache only ever used with
/// `s` since its last reset.
#[inline]
pub unsafe fn gm_space_gfn_to_hva(s: *const gm_space, cache: *mut gm_space_cache, gfn: u64, hva: *mut u64) -> c_int {
    if s.is_null() || hva.is_null() {
        return -EINVAL;
    }
    if !cache.is_null() {
        let head = s as *const gm_space_head as *mut u64;
        // The writer publishes with __atomic_store_n(.., __ATOMIC_RELEASE).
        let generation = core::sync::atomic::AtomicU64::from_ptr(head).load(core::sync::atomic::Ordering::Acquire);
        let c = &*cache;
        if c.generation == generation && gfn.wrapping_sub(c.base_gfn) < c.npages {
            *hva = c.hva + ((gfn - c.base_gfn) << GM_SPACE_PAGE_SHIFT);
            return 0;
        }
    }
    gm_space_gfn_to_hva_slow(s, cache, gfn, hva)
}

// ---- layout: sizes and alignments on LP64 (checked field by field at test
// time against the headers, tests/layout.rs) -----------------------------------
macro_rules! layout {
    ($($t:ty => $size:expr, $align:expr;)*) => {
        $(const _: () = assert!(size_of::<$t>() == $size && align_of::<$t>() == $align);)*
    };
}
#[cfg(target_pointer_width = "64")]
layout! {
    gm_allocator => 24, 8;
    gm_alloc_counting => 64, 8;
    gm_range => 24, 8;
    gm_rangemap_stats => 56, 8;
    gm_rangemap_iter => 336, 8;
    gm_pagemap_entry => 16, 8;
    gm_pagemap_stats => 48, 8;
    gm_pagemap_iter => 32, 8;
    gm_itree_entry => 24, 8;
    gm_itree_iter => 576, 8;
    gm_itree_stats => 48, 8;
    gm_space_slot => 32, 8;
    gm_space_cache => 40, 8;
    gm_space_head => 8, 8;
    gm_space_config => 8, 4;
    gm_space_hva_hit => 24, 8;
    gm_space_io => 32, 8;
    gm_space_stats => 120, 8;
}
