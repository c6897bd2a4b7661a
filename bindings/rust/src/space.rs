//! gm_space: one guest address space — memslots, gfn -> hva, dirty logs,
//! attributes, write tracking, I/O dispatch.

use crate::alloc::{hook_of, CountingAllocator};
use crate::rcu::{assert_registered, destroy_outside_read_section, in_read_section, ReadGuard};
use crate::{bounds, call_catching, check, check_count, resume, sys, validate_result, Error, Result};
use core::ffi::{c_int, c_uint, c_void};
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};
use crate::lock::{WriterGuard, WriterLock};
use std::sync::Arc;

/// Guest frames are 4 KiB.
pub const PAGE_SHIFT: u32 = sys::GM_SPACE_PAGE_SHIFT;
/// 4096.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// Memory and counts by component (`struct gm_space_stats`).
pub type SpaceStats = sys::gm_space_stats;

/// Memslot flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SlotFlags(u32);

impl SlotFlags {
    pub const NONE: SlotFlags = SlotFlags(0);
    /// `GM_SPACE_SLOT_READONLY`.
    pub const READONLY: SlotFlags = SlotFlags(sys::GM_SPACE_SLOT_READONLY);
    /// `GM_SPACE_SLOT_DIRTY_LOG`: the slot keeps a dirty log.
    pub const DIRTY_LOG: SlotFlags = SlotFlags(sys::GM_SPACE_SLOT_DIRTY_LOG);

    pub fn bits(self) -> u32 {
        self.0
    }
    pub fn from_bits(bits: u32) -> SlotFlags {
        SlotFlags(bits)
    }
    pub fn contains(self, o: SlotFlags) -> bool {
        self.0 & o.0 == o.0
    }
}

impl std::ops::BitOr for SlotFlags {
    type Output = SlotFlags;
    fn bitor(self, o: SlotFlags) -> SlotFlags {
        SlotFlags(self.0 | o.0)
    }
}

/// How to make a [`Space`] (`struct gm_space_config`).
#[derive(Clone, Debug, Default)]
pub struct SpaceConfig {
    /// 0: 32764 (`GM_SPACE_DEFAULT_MAX_SLOTS`).
    pub max_slots: u32,
    /// 0: 12. The host page size's shift (14, 16 on 16/64 KiB aarch64
    /// hosts); every slot's hva, base gfn and size are aligned to it.
    pub host_page_shift: u32,
    /// Count the space's memory here (default: the default allocator).
    pub allocator: Option<Arc<CountingAllocator>>,
}

/// MMIO or PIO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoKind {
    Mmio,
    Pio,
}

impl IoKind {
    fn raw(self) -> sys::gm_space_io_kind {
        match self {
            IoKind::Mmio => sys::GM_SPACE_MMIO,
            IoKind::Pio => sys::GM_SPACE_PIO,
        }
    }
}

/// A device's handler for a registered I/O range. Closures
/// `Fn(addr, data, is_write) + Send + Sync` are handlers.
pub trait IoHandler: Send + Sync {
    /// An access of `data.len()` bytes at `addr`: fill `data` on a read,
    /// consume it on a write.
    fn access(&self, addr: u64, data: &mut [u8], is_write: bool);
}

impl<F: Fn(u64, &mut [u8], bool) + Send + Sync> IoHandler for F {
    fn access(&self, addr: u64, data: &mut [u8], is_write: bool) {
        self(addr, data, is_write)
    }
}

/// What `ctx` of a registered `struct gm_space_io` points at.
struct IoEntry {
    handler: Box<dyn IoHandler>,
}

/// The `gm_space_io_fn` every Rust handler is registered with, for C code
/// that dispatches through the space (Rust code calls the handler directly).
unsafe extern "C" fn io_trampoline(ctx: *mut c_void, addr: u64, data: *mut c_void, size: c_uint, is_write: bool) {
    let e = &*(ctx as *const IoEntry);
    let buf: &mut [u8] = if size == 0 || data.is_null() {
        &mut []
    } else {
        std::slice::from_raw_parts_mut(data as *mut u8, size as usize)
    };
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.handler.access(addr, buf, is_write))).is_err() {
        eprintln!("gmtrack: an I/O handler panicked while called from C; aborting");
        std::process::abort();
    }
}

struct Writer {
    io: HashMap<(u32, u64), Box<IoEntry>>,
    /// Handlers removed while the remover was inside a read section (no
    /// grace period could be waited for): dropped with the space. Boxed:
    /// a reader may still be using the entry where ctx points.
    #[allow(clippy::vec_box)]
    retired: Vec<Box<IoEntry>>,
}

static NEXT_SPACE_ID: AtomicU64 = AtomicU64::new(1);

/// One guest address space (`struct gm_space`): memslots, their gfn ->
/// hva translation, dirty logs, attributes, write protection and I/O
/// ranges. Readers (vCPU threads) use `&self` under a [`ReadGuard`],
/// lock-free; writer calls take `&self` too and are serialized by an
/// internal mutex, so a `Space` is shared in an `Arc`.
///
/// Host virtual addresses are plain numbers here: the space never touches
/// the memory behind them (the caller maps it; see examples/vm_memory.rs).
pub struct Space {
    raw: NonNull<sys::gm_space>,
    id: u64,
    writer: WriterLock<Writer>,
    harvest: WriterLock<()>,
    _alloc: Option<Arc<CountingAllocator>>,
}

// SAFETY: a space is always RCU-safe: readers on any thread concurrently
// with one writer (the mutex); dirty marks from any number of threads;
// harvests one at a time (the harvest mutex).
unsafe impl Send for Space {}
unsafe impl Sync for Space {}

impl Space {
    /// An empty space with default limits.
    pub fn new() -> Result<Space> {
        Space::with_config(SpaceConfig::default())
    }

    /// An empty space made as `config` says ([`Error::Invalid`] for
    /// max_slots > 2^31, host_page_shift outside 12..30).
    pub fn with_config(config: SpaceConfig) -> Result<Space> {
        let c = sys::gm_space_config { max_slots: config.max_slots, host_page_shift: config.host_page_shift };
        let mut raw = ptr::null_mut();
        // SAFETY: pointers valid for the call; allocator kept alive in self.
        check(unsafe { sys::gm_space_create(&mut raw, &c, sys::GM_RCU, hook_of(&config.allocator)) })?;
        Ok(Space {
            raw: NonNull::new(raw).ok_or(Error::NoMemory)?,
            id: NEXT_SPACE_ID.fetch_add(1, Ordering::Relaxed),
            writer: WriterLock::new(Writer { io: HashMap::new(), retired: Vec::new() }),
            harvest: WriterLock::new(()),
            _alloc: config.allocator,
        })
    }

    fn p(&self) -> *mut sys::gm_space {
        self.raw.as_ptr()
    }

    #[track_caller]
    fn w(&self, what: &str) -> WriterGuard<'_, Writer> {
        assert_registered(what);
        self.writer.lock(what)
    }

    // ---- memslot changes ------------------------------------------------

    /// Starts a batch of memslot changes published at once by
    /// [`Batch::commit`] (dropping the batch discards it). Holds the
    /// writer lock until then.
    pub fn batch(&self) -> Batch<'_> {
        let w = self.w("Space::batch");
        // SAFETY: live space, writer lock held.
        unsafe { sys::gm_space_batch_begin(self.p()) };
        Batch { space: self, _w: w, open: true }
    }

    /// Adds slot `id`: guest frames `[base_gfn, base_gfn + npages)` at host
    /// address `hva`. [`Error::Exists`] (overlap or id in use),
    /// [`Error::Invalid`] (npages 0, unaligned, past `GM_SPACE_GFN_LIMIT`),
    /// [`Error::NoSpace`] (max_slots).
    pub fn slot_add(&self, id: u32, base_gfn: u64, npages: u64, hva: u64, flags: SlotFlags) -> Result<()> {
        let _w = self.w("Space::slot_add");
        // SAFETY: live space, writer lock held.
        check(unsafe { sys::gm_space_slot_add(self.p(), id, base_gfn, npages, hva, flags.0) })
    }

    /// Removes slot `id` ([`Error::NotFound`]).
    pub fn slot_remove(&self, id: u32) -> Result<()> {
        let _w = self.w("Space::slot_remove");
        // SAFETY: as slot_add.
        check(unsafe { sys::gm_space_slot_remove(self.p(), id) })
    }

    /// Moves slot `id` to `new_base_gfn` (a new slot object: its dirty log
    /// starts empty).
    pub fn slot_move(&self, id: u32, new_base_gfn: u64) -> Result<()> {
        let _w = self.w("Space::slot_move");
        // SAFETY: as slot_add.
        check(unsafe { sys::gm_space_slot_move(self.p(), id, new_base_gfn) })
    }

    /// Resizes slot `id` to `new_npages` frames.
    pub fn slot_resize(&self, id: u32, new_npages: u64) -> Result<()> {
        let _w = self.w("Space::slot_resize");
        // SAFETY: as slot_add.
        check(unsafe { sys::gm_space_slot_resize(self.p(), id, new_npages) })
    }

    /// Gives slot `id` new flags (e.g. turns dirty logging on).
    pub fn slot_set_flags(&self, id: u32, flags: SlotFlags) -> Result<()> {
        let _w = self.w("Space::slot_set_flags");
        // SAFETY: as slot_add.
        check(unsafe { sys::gm_space_slot_set_flags(self.p(), id, flags.0) })
    }

    // ---- lookups (readers) ----------------------------------------------

    /// The host address of `gfn`'s frame. A hit in `cache` (same published
    /// generation, gfn inside the cached slot) costs one atomic load and one
    /// compare, in Rust (the static inline hit path of
    /// `gm_space_gfn_to_hva`, from the documented `struct gm_space_head`);
    /// a miss calls `gm_space_gfn_to_hva_slow` and refills the cache.
    #[inline]
    pub fn gfn_to_hva(&self, _g: &ReadGuard<'_>, cache: &mut GfnCache, gfn: u64) -> Option<u64> {
        let mut hva = 0;
        let c = cache.for_space(self.id);
        // SAFETY: live space, read guard held, cache used with this space only.
        (unsafe { sys::gm_space_gfn_to_hva(self.p(), c, gfn, &mut hva) } == 0).then_some(hva)
    }

    /// As [`Space::gfn_to_hva`] without a cache.
    pub fn gfn_to_hva_uncached(&self, _g: &ReadGuard<'_>, gfn: u64) -> Option<u64> {
        let mut hva = 0;
        // SAFETY: live space, read guard held.
        (unsafe { sys::gm_space_gfn_to_hva_slow(self.p(), ptr::null_mut(), gfn, &mut hva) } == 0).then_some(hva)
    }

    /// The host address of guest-physical byte address `gpa`.
    pub fn gpa_to_hva(&self, g: &ReadGuard<'_>, cache: &mut GfnCache, gpa: u64) -> Option<u64> {
        self.gfn_to_hva(g, cache, gpa >> PAGE_SHIFT).map(|h| h + (gpa & (PAGE_SIZE - 1)))
    }

    /// The slot holding `gfn`, valid for the read section.
    pub fn gfn_to_slot<'a>(&'a self, _g: &'a ReadGuard<'_>, cache: &mut GfnCache, gfn: u64) -> Option<Slot<'a>> {
        let mut slot = ptr::null();
        let c = cache.for_space(self.id);
        // SAFETY: live space, read guard held for 'a (the slot lives that long).
        if unsafe { sys::gm_space_gfn_to_slot(self.p(), c, gfn, &mut slot) } == 0 {
            // SAFETY: a slot returned under the guard stays valid until it ends.
            Some(Slot { raw: unsafe { &*slot }, space: self })
        } else {
            None
        }
    }

    /// The slot with this id.
    pub fn id_to_slot<'a>(&'a self, _g: &'a ReadGuard<'_>, id: u32) -> Option<Slot<'a>> {
        // SAFETY: live space, read guard held for 'a.
        let slot = unsafe { sys::gm_space_id_to_slot(self.p(), id) };
        // SAFETY: as gfn_to_slot.
        (!slot.is_null()).then(|| Slot { raw: unsafe { &*slot }, space: self })
    }

    /// Every (slot, gfn range) the host range `hva` covers, in hva order.
    pub fn hva_to_gfns<'a>(&'a self, _g: &'a ReadGuard<'_>, hva: RangeInclusive<u64>) -> Result<Vec<HvaHit<'a>>> {
        let (a, b) = bounds(&hva);
        let mut hits: Vec<sys::gm_space_hva_hit> = Vec::with_capacity(8);
        loop {
            // SAFETY: buffer of capacity() entries; read guard held for 'a.
            let n = check_count(unsafe { sys::gm_space_hva_fill(self.p(), a, b, hits.as_mut_ptr(), hits.capacity()) })?
                as usize;
            if n <= hits.capacity() {
                // SAFETY: the call wrote n entries.
                unsafe { hits.set_len(n) };
                break;
            }
            hits.reserve(n);
        }
        Ok(hits
            .into_iter()
            // SAFETY: slots from a lookup under the guard.
            .map(|h| HvaHit { slot: Slot { raw: unsafe { &*h.slot }, space: self }, first_gfn: h.first_gfn, last_gfn: h.last_gfn })
            .collect())
    }

    /// The generation of the published layout (+1 per commit).
    pub fn generation(&self) -> u64 {
        // SAFETY: reader or writer, any thread.
        unsafe { sys::gm_space_generation(self.p()) }
    }

    /// Number of slots.
    pub fn slot_count(&self) -> u64 {
        let _w = self.w("Space::slot_count");
        // SAFETY: writer call, lock held.
        unsafe { sys::gm_space_slot_count(self.p()) }
    }

    // ---- attributes and write tracking ------------------------------------

    /// Gives every frame of `gfns` the attribute `value` (0 = default).
    pub fn attr_set(&self, gfns: RangeInclusive<u64>, value: u64) -> Result<()> {
        let (a, b) = bounds(&gfns);
        let _w = self.w("Space::attr_set");
        // SAFETY: writer lock held.
        check(unsafe { sys::gm_space_attr_set(self.p(), a, b, value) })
    }

    /// The attribute of `gfn`.
    pub fn attr_get(&self, _g: &ReadGuard<'_>, gfn: u64) -> u64 {
        // SAFETY: reader, guard held.
        unsafe { sys::gm_space_attr_get(self.p(), gfn) }
    }

    /// Whether every frame of `gfns` has attribute `value`.
    pub fn attr_all(&self, _g: &ReadGuard<'_>, gfns: RangeInclusive<u64>, value: u64) -> bool {
        let (a, b) = bounds(&gfns);
        // SAFETY: reader, guard held.
        unsafe { sys::gm_space_attr_all(self.p(), a, b, value) }
    }

    /// Adds one write protection to every frame of `gfns`.
    pub fn protect(&self, gfns: RangeInclusive<u64>) -> Result<()> {
        let (a, b) = bounds(&gfns);
        let _w = self.w("Space::protect");
        // SAFETY: writer lock held.
        check(unsafe { sys::gm_space_protect(self.p(), a, b) })
    }

    /// Removes one write protection from every frame of `gfns`
    /// ([`Error::Invalid`] if one is not protected; nothing changes then).
    pub fn unprotect(&self, gfns: RangeInclusive<u64>) -> Result<()> {
        let (a, b) = bounds(&gfns);
        let _w = self.w("Space::unprotect");
        // SAFETY: writer lock held.
        check(unsafe { sys::gm_space_unprotect(self.p(), a, b) })
    }

    /// The protection count of `gfn` (0: writable).
    pub fn protect_count(&self, _g: &ReadGuard<'_>, gfn: u64) -> u64 {
        // SAFETY: reader, guard held.
        unsafe { sys::gm_space_protect_count(self.p(), gfn) }
    }

    // ---- I/O dispatch -----------------------------------------------------

    /// Routes `addrs` of the MMIO or PIO space to `handler`
    /// ([`Error::Exists`] if it overlaps a registered range).
    pub fn io_add<H: IoHandler + 'static>(&self, kind: IoKind, addrs: RangeInclusive<u64>, handler: H) -> Result<()> {
        let (a, b) = bounds(&addrs);
        let entry = Box::new(IoEntry { handler: Box::new(handler) });
        let ctx = &*entry as *const IoEntry as *mut c_void;
        let mut w = self.w("Space::io_add");
        // SAFETY: writer lock held; ctx lives in the registry until removed
        // and a grace period has passed.
        check(unsafe { sys::gm_space_io_add(self.p(), kind.raw(), a, b, Some(io_trampoline), ctx) })?;
        w.io.insert((kind.raw(), a), entry);
        Ok(())
    }

    /// Removes the range starting at `first` ([`Error::NotFound`]). Its
    /// handler is dropped after a grace period (at once if no reader can
    /// hold it; if this thread is in a read section itself, when the space
    /// is dropped).
    pub fn io_remove(&self, kind: IoKind, first: u64) -> Result<()> {
        let entry = {
            let mut w = self.w("Space::io_remove");
            // SAFETY: writer lock held.
            check(unsafe { sys::gm_space_io_remove(self.p(), kind.raw(), first) })?;
            w.io.remove(&(kind.raw(), first))
        };
        // A reader may still be dispatching to it: wait (outside the lock).
        if in_read_section() {
            if let Some(e) = entry {
                self.w("Space::io_remove").retired.push(e);
            }
        } else {
            // SAFETY: registered (asserted), outside a read section.
            unsafe { sys::gm_rcu_synchronize() };
            drop(entry);
        }
        Ok(())
    }

    /// The I/O range holding `addr`, valid for the read section.
    pub fn io_find<'a>(&'a self, _g: &'a ReadGuard<'_>, kind: IoKind, addr: u64) -> Option<IoRange<'a>> {
        let mut io = sys::gm_space_io { first: 0, last: 0, fn_: None, ctx: ptr::null_mut() };
        // SAFETY: reader, guard held.
        if unsafe { sys::gm_space_io_find(self.p(), kind.raw(), addr, &mut io) } != 0 {
            return None;
        }
        // SAFETY: every range is registered by io_add with an IoEntry ctx,
        // freed only after a grace period (this guard holds one off).
        let entry = unsafe { &*(io.ctx as *const IoEntry) };
        Some(IoRange { first: io.first, last: io.last, handler: &*entry.handler })
    }

    // ---- stats ----------------------------------------------------------

    /// Memory and counts by component.
    pub fn stats(&self) -> SpaceStats {
        let mut st = SpaceStats::default();
        let _w = self.w("Space::stats");
        // SAFETY: writer call, lock held.
        unsafe { sys::gm_space_stats(self.p(), &mut st) };
        st
    }

    /// Checks every invariant; `Err` names the first broken one.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut reason = ptr::null();
        let _w = self.w("Space::validate");
        // SAFETY: writer call, lock held.
        let rc = unsafe { sys::gm_space_validate(self.p(), &mut reason) };
        validate_result(rc, reason)
    }

    /// The C handle, for calls this crate does not wrap (rmaps).
    pub fn as_raw(&self) -> *mut sys::gm_space {
        self.p()
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        let p = self.p();
        // SAFETY: exclusive access; destroyed once; the handlers (in the
        // registry) are dropped after destroy has waited for readers.
        destroy_outside_read_section("Space", || unsafe { sys::gm_space_destroy(p) });
    }
}

impl std::fmt::Debug for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Space").field("raw", &self.raw).field("generation", &self.generation()).finish()
    }
}

/// A batch of memslot changes ([`Space::batch`]), published together by
/// [`Batch::commit`]; dropped uncommitted, it is discarded. Each change is
/// checked for form when recorded and against the layout at commit.
pub struct Batch<'s> {
    space: &'s Space,
    _w: WriterGuard<'s, Writer>,
    open: bool,
}

impl Batch<'_> {
    fn p(&self) -> *mut sys::gm_space {
        self.space.p()
    }
    /// Records a slot add (see [`Space::slot_add`]).
    pub fn add(&mut self, id: u32, base_gfn: u64, npages: u64, hva: u64, flags: SlotFlags) -> Result<&mut Self> {
        // SAFETY: writer lock held by the batch.
        check(unsafe { sys::gm_space_batch_add(self.p(), id, base_gfn, npages, hva, flags.0) })?;
        Ok(self)
    }
    /// Records a slot removal.
    pub fn remove(&mut self, id: u32) -> Result<&mut Self> {
        // SAFETY: as add.
        check(unsafe { sys::gm_space_batch_remove(self.p(), id) })?;
        Ok(self)
    }
    /// Records a move to `new_base_gfn`.
    pub fn move_to(&mut self, id: u32, new_base_gfn: u64) -> Result<&mut Self> {
        // SAFETY: as add.
        check(unsafe { sys::gm_space_batch_move(self.p(), id, new_base_gfn) })?;
        Ok(self)
    }
    /// Records a resize to `new_npages`.
    pub fn resize(&mut self, id: u32, new_npages: u64) -> Result<&mut Self> {
        // SAFETY: as add.
        check(unsafe { sys::gm_space_batch_resize(self.p(), id, new_npages) })?;
        Ok(self)
    }
    /// Records new flags.
    pub fn set_flags(&mut self, id: u32, flags: SlotFlags) -> Result<&mut Self> {
        // SAFETY: as add.
        check(unsafe { sys::gm_space_batch_set_flags(self.p(), id, flags.0) })?;
        Ok(self)
    }
    /// Applies the changes in order and publishes them at once
    /// (generation + 1); on error the layout is exactly as before.
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        // SAFETY: as add.
        check(unsafe { sys::gm_space_batch_commit(self.p()) })
    }
    /// Discards the batch (what dropping it does).
    pub fn abort(self) {}
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.open {
            // SAFETY: writer lock still held.
            unsafe { sys::gm_space_batch_abort(self.p()) };
        }
    }
}

/// A per-vCPU last-used-slot cache (`struct gm_space_cache`): one per
/// thread, used with one space at a time (it resets itself when given
/// another space).
#[derive(Debug)]
pub struct GfnCache {
    raw: sys::gm_space_cache,
    space: u64,
}

// SAFETY: plain data; the slot pointer inside is only dereferenced by the
// library for the space it was filled from, under a read section.
unsafe impl Send for GfnCache {}

impl Default for GfnCache {
    fn default() -> Self {
        GfnCache::new()
    }
}

impl GfnCache {
    /// An empty cache.
    pub fn new() -> GfnCache {
        GfnCache {
            raw: sys::gm_space_cache { generation: 0, base_gfn: 0, npages: 0, hva: 0, slot: ptr::null() },
            space: 0,
        }
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        // SAFETY: valid cache.
        unsafe { sys::gm_space_cache_init(&mut self.raw) };
    }

    fn for_space(&mut self, id: u64) -> *mut sys::gm_space_cache {
        if self.space != id {
            self.clear();
            self.space = id;
        }
        &mut self.raw
    }
}

/// A memslot as a reader sees it, valid for the read section it was found
/// in (immutable while it exists; a move or resize makes a new slot).
#[derive(Clone, Copy)]
pub struct Slot<'a> {
    raw: &'a sys::gm_space_slot,
    space: &'a Space,
}

impl<'a> Slot<'a> {
    pub fn id(&self) -> u32 {
        self.raw.id
    }
    pub fn base_gfn(&self) -> u64 {
        self.raw.base_gfn
    }
    pub fn npages(&self) -> u64 {
        self.raw.npages
    }
    /// The last frame of the slot.
    pub fn last_gfn(&self) -> u64 {
        self.raw.base_gfn + self.raw.npages - 1
    }
    /// Host address of the slot's first frame.
    pub fn hva(&self) -> u64 {
        self.raw.hva
    }
    pub fn flags(&self) -> SlotFlags {
        SlotFlags(self.raw.flags)
    }
    /// Whether `gfn` is in the slot.
    pub fn contains(&self, gfn: u64) -> bool {
        gfn.wrapping_sub(self.raw.base_gfn) < self.raw.npages
    }
    /// Host address of `gfn`'s frame, if it is in the slot.
    pub fn gfn_to_hva(&self, gfn: u64) -> Option<u64> {
        self.contains(gfn).then(|| self.raw.hva + ((gfn - self.raw.base_gfn) << PAGE_SHIFT))
    }

    /// Marks `gfn` dirty (lock-free; any number of threads).
    /// [`Error::NotFound`]: gfn outside the slot, or the slot has no dirty log.
    pub fn mark_dirty(&self, gfn: u64) -> Result<()> {
        // SAFETY: slot from a lookup in the current read section.
        check(unsafe { sys::gm_space_dirty_mark(self.space.p(), self.raw, gfn) })
    }

    /// Imports a dirty bitmap (bit i of `words[i / 64]` = frame
    /// `first_gfn + i`, as KVM's GET_DIRTY_LOG gives it); returns the
    /// frames marked.
    pub fn mark_dirty_bitmap(&self, first_gfn: u64, words: &[u64]) -> Result<u64> {
        let n: u64 = words.iter().map(|w| w.count_ones() as u64).sum();
        // The bitmap may be rounded up to whole words past the slot's end:
        // import the slot's part, and refuse a bit set beyond it.
        let end = self.base_gfn() + self.npages();
        if first_gfn < self.base_gfn() || first_gfn >= end {
            return Err(Error::Invalid);
        }
        let nbits = (words.len() as u64 * 64).min(end - first_gfn);
        let beyond = words.iter().enumerate().any(|(i, &w)| {
            let lo = i as u64 * 64;
            lo + 64 > nbits && (if lo >= nbits { w } else { w >> (nbits - lo) }) != 0
        });
        if beyond {
            return Err(Error::Invalid);
        }
        // SAFETY: slot from the current read section; words outlives the
        // call, and nbits covers exactly the words given.
        check(unsafe {
            sys::gm_space_dirty_import(self.space.p(), self.raw, first_gfn, words.as_ptr(), nbits)
        })?;
        Ok(n)
    }

    /// Calls `f(first_gfn, count)` for each run of dirty frames, ascending,
    /// clearing them; returns the number of dirty frames. Marks concurrent
    /// with a harvest are reported by this one or the next. Harvests of a
    /// space run one at a time. [`Error::NotFound`]: no dirty log.
    pub fn harvest_dirty<F: FnMut(u64, u64)>(&self, mut f: F) -> Result<u64> {
        struct Ctx<'f> {
            f: &'f mut dyn FnMut(u64, u64),
            panic: Option<Box<dyn std::any::Any + Send>>,
        }
        unsafe extern "C" fn tramp(ctx: *mut c_void, first: u64, count: u64) -> c_int {
            let c = &mut *(ctx as *mut Ctx<'_>);
            let f = &mut c.f;
            call_catching(&mut c.panic, || f(first, count));
            0
        }
        let mut ctx = Ctx { f: &mut f, panic: None };
        let rc = {
            let _h = self.space.harvest.lock("Slot::harvest_dirty");
            // SAFETY: slot from this read section; one harvester (the lock);
            // ctx outlives the call.
            unsafe {
                sys::gm_space_dirty_harvest(
                    self.space.p(),
                    self.raw,
                    0,
                    u64::MAX,
                    Some(tramp),
                    &mut ctx as *mut Ctx as *mut c_void,
                )
            }
        };
        resume(ctx.panic);
        check_count(rc)
    }

    /// Harvests the dirty log into a bitmap of the slot's frames (bit i of
    /// word i / 64 = frame `base_gfn + i`).
    pub fn harvest_dirty_bitmap(&self) -> Result<Vec<u64>> {
        let base = self.base_gfn();
        let mut bits = vec![0u64; self.npages().div_ceil(64) as usize];
        self.harvest_dirty(|first, count| {
            for i in first - base..first - base + count {
                bits[(i / 64) as usize] |= 1 << (i % 64);
            }
        })?;
        Ok(bits)
    }
}

impl std::fmt::Debug for Slot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("id", &self.id())
            .field("base_gfn", &format_args!("{:#x}", self.base_gfn()))
            .field("npages", &self.npages())
            .field("hva", &format_args!("{:#x}", self.hva()))
            .field("flags", &self.flags())
            .finish()
    }
}

/// One (slot, gfn range) an hva range covers ([`Space::hva_to_gfns`]).
#[derive(Clone, Copy, Debug)]
pub struct HvaHit<'a> {
    pub slot: Slot<'a>,
    pub first_gfn: u64,
    pub last_gfn: u64,
}

/// A registered I/O range ([`Space::io_find`]), valid for the read section.
#[derive(Clone, Copy)]
pub struct IoRange<'a> {
    pub first: u64,
    pub last: u64,
    handler: &'a dyn IoHandler,
}

impl<'a> IoRange<'a> {
    /// The range's handler.
    pub fn handler(&self) -> &'a dyn IoHandler {
        self.handler
    }
    /// Calls the handler for an access at `addr`.
    pub fn dispatch(&self, addr: u64, data: &mut [u8], is_write: bool) {
        self.handler.access(addr, data, is_write)
    }
}

impl std::fmt::Debug for IoRange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoRange").field("first", &self.first).field("last", &self.last).finish_non_exhaustive()
    }
}
