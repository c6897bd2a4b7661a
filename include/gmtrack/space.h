/*
 * gmtrack/space.h — one guest address space: memslots, per-frame attributes,
 * write tracking, MMIO/PIO dispatch, dirty logs and reverse maps.
 *
 *   struct gm_space *s;
 *   gm_space_create(&s, NULL, GM_RCU, NULL);
 *   gm_space_slot_add(s, 0, 0, 0x80000, hva_ram, 0);             // 2 GiB RAM
 *   gm_space_slot_add(s, 1, 0x100000, 0x40000, hva_hi, GM_SPACE_SLOT_DIRTY_LOG);
 *   gm_rcu_read_lock();                                          // vCPU thread
 *   uint64_t hva;
 *   if (gm_space_gfn_to_hva(s, &vcpu_cache, gfn, &hva) == 0) ...
 *   gm_rcu_read_unlock();
 *
 * Design (drawing and invariants in src/space.c). Memslots are immutable
 * objects. The space keeps TWO layouts (KVM's two copies), each with its own
 * gfn -> slot two-level sorted array, hva -> slot id gm_itree and id -> slot
 * hash table.
 * A commit applies its changes (after replaying the previous commit's) to
 * the inactive layout and publishes it with one release store; readers look
 * up in the layout they loaded. Unlike KVM the writer never waits for a
 * grace period: each layout carries a sequence count (odd while the writer
 * edits it), its indexes never free what a late reader walking a layout
 * being edited may touch before a grace period (the gfn and id indexes are
 * even edited in place there: such a reader only needs memory safety), and
 * a reader whose layout changed under it simply retries on the new active
 * layout. A slot add, delete or move therefore costs O(log n) index edits
 * (a move: none in the hva index), not an O(n) copy plus a grace period.
 *
 * Concurrency: writer calls (create, destroy, slot changes, attributes,
 * protections, I/O registration, stats, validate) are serialized by the
 * caller. Reader calls run under gm_rcu_read_lock() on registered threads,
 * lock-free (they retry, never wait), concurrently with the writer. Pointers
 * they return are valid until gm_rcu_read_unlock(). Dirty marking may run on
 * any number of reader threads at once; harvest of one slot is one thread
 * at a time. Rmap heads follow gm_rmap's rule: the caller's lock.
 *
 * Frames are 4 KiB (GM_SPACE_PAGE_SHIFT). All ranges are inclusive.
 */
#ifndef GMTRACK_SPACE_H
#define GMTRACK_SPACE_H

#include <gmtrack/alloc.h>
#include <gmtrack/common.h>
#include <gmtrack/rmap.h>

#include <stdbool.h>

GM_BEGIN_DECLS

#define GM_SPACE_PAGE_SHIFT 12
#define GM_SPACE_DEFAULT_MAX_SLOTS 32764u
/* Frames a slot may reach: base_gfn + npages <= GM_SPACE_GFN_LIMIT, so every
 * guest-physical byte address of a slot fits in 64 bits (as KVM requires). */
#define GM_SPACE_GFN_LIMIT (1ull << (64 - GM_SPACE_PAGE_SHIFT))

/* slot flags */
#define GM_SPACE_SLOT_READONLY 0x1u
#define GM_SPACE_SLOT_DIRTY_LOG 0x2u

struct gm_space; /* opaque */

/* What a reader sees of a slot. Immutable while the slot exists. */
struct gm_space_slot {
	uint64_t base_gfn; /* first guest frame */
	uint64_t npages;   /* >= 1 */
	uint64_t hva;      /* host virtual address of base_gfn */
	uint32_t id;
	uint32_t flags;    /* GM_SPACE_SLOT_* */
};

/* A per-thread (per-vCPU) last-used cache, owned by the caller. Zero it
 * (or call gm_space_cache_init) before first use. It holds a copy of the
 * last slot's range and hva, so a hit (gm_space_gfn_to_hva below) is one
 * generation compare and one range check, without touching the slot. */
struct gm_space_cache {
	uint64_t generation;               /* 0: empty (never published) */
	uint64_t base_gfn, npages, hva;    /* copies of slot's fields */
	const struct gm_space_slot *slot;  /* NULL when gm_space_gfn_to_hva
					    * filled it (a translation does
					    * not load the slot pointer) */
};

/* The start of every struct gm_space: the generation of the published
 * layout, written by the writer after each publication (__atomic builtins,
 * so C and C++ callers can read it). Not for direct use. */
struct gm_space_head {
	uint64_t generation;
};

struct gm_space_config {
	uint32_t max_slots;       /* 0: GM_SPACE_DEFAULT_MAX_SLOTS; <= 2^31 */
	uint32_t host_page_shift; /* 0: 12. The host's page size (14 and 16 on
				   * aarch64 hosts with 16/64 KiB pages): every
				   * slot's hva, base_gfn and npages are aligned
				   * to it. 12..30. */
};

/* One (slot, gfn range) that an hva range covers. */
struct gm_space_hva_hit {
	const struct gm_space_slot *slot;
	uint64_t first_gfn, last_gfn;
};

/* An I/O handler: called by the VMM, never by gm_space. */
typedef void (*gm_space_io_fn)(void *ctx, uint64_t addr, void *data,
			       unsigned size, bool is_write);
struct gm_space_io {
	uint64_t first, last;
	gm_space_io_fn fn;
	void *ctx;
};
enum gm_space_io_kind { GM_SPACE_MMIO = 0, GM_SPACE_PIO = 1 };

/* A run harvested from a dirty log: return 0 to take it (it is cleared),
 * or a negative errno to refuse it: the harvest stops, that run and every
 * run not delivered yet stay dirty, and the harvest returns the errno. */
typedef int (*gm_space_dirty_fn)(void *ctx, uint64_t first_gfn,
				 uint64_t count);

struct gm_space_stats {
	uint64_t slots;
	uint64_t guest_pages;      /* sum of npages */
	uint64_t generation;
	/* bytes held, by component (allocator sizes) */
	uint64_t bytes_space;      /* the space object and its two layouts */
	uint64_t bytes_slots;      /* slot objects, with the retired ones kept
				    * for reuse (at most 64 + slots / 8) */
	uint64_t bytes_gfn_index;  /* both layouts' gfn arrays (top + blocks) */
	uint64_t bytes_hva_index;  /* both layouts' hva itrees */
	uint64_t bytes_id_index;   /* both layouts' id tables */
	uint64_t bytes_attributes; /* attribute map (or its compact form) */
	uint64_t bytes_write_track;
	uint64_t bytes_io;
	uint64_t bytes_dirty;      /* dirty-log arrays and chunks */
	uint64_t bytes_rmap;       /* rmap head chunks and their index */
	uint64_t bytes_total;
	double bytes_per_gib;      /* bytes_total per GiB of guest memory */
};

/*
 * gm_space_create — an empty space (no slots, attributes 0, nothing
 * protected, no I/O ranges) in *out. config NULL: defaults. flags: 0 or
 * GM_RCU (a space is always read under RCU; the flag is accepted for the
 * common shape). alloc NULL: default allocator. O(1). 0, -EINVAL (out NULL,
 * unknown flags, max_slots > 2^31, host_page_shift outside 12..30),
 * -ENOMEM (nothing allocated).
 */
GM_EXPORT int gm_space_create(struct gm_space **out,
			      const struct gm_space_config *config,
			      unsigned flags, const struct gm_allocator *alloc);
/*
 * gm_space_destroy — frees everything (rmap entries left in heads are
 * dropped, their blocks freed). O(total size). Writer, registered thread,
 * outside a read section, once no reader can find the space; waits for
 * grace periods and deferred frees. NULL is a no-op.
 */
GM_EXPORT void gm_space_destroy(struct gm_space *s);

/* ---- memslot changes: a batch is published at once --------------------- */
/*
 * The batch is the advanced form of a memslot change: several changes
 * published at once (KVM's memslot update is one change at a time; a VMM
 * that must move RAM and a BAR together needs both or neither).
 *
 * gm_space_batch_begin — starts a batch (discarding an uncommitted one).
 * gm_space_batch_abort — discards the batch. Both O(1); NULL is a no-op.
 * gm_space_batch_add / _remove / _move / _resize / _set_flags — record one
 * change; checked for form at once (-EINVAL: s NULL, npages 0, a slot
 * reaching GM_SPACE_GFN_LIMIT, an hva range past UINT64_MAX, hva, base_gfn
 * or npages not aligned to the host page, unknown flags; -ENOMEM: the batch
 * could not grow; the batch is unchanged on error), checked against the
 * layout at commit. A moved, resized or re-flagged slot is a NEW slot
 * object with the same id: its dirty log and rmaps start empty (harvest and
 * zap first, as KVM requires). Writer only.
 */
GM_EXPORT void gm_space_batch_begin(struct gm_space *s);
GM_EXPORT void gm_space_batch_abort(struct gm_space *s);
GM_EXPORT int gm_space_batch_add(struct gm_space *s, uint32_t id,
				 uint64_t base_gfn, uint64_t npages,
				 uint64_t hva, uint32_t flags);
GM_EXPORT int gm_space_batch_remove(struct gm_space *s, uint32_t id);
GM_EXPORT int gm_space_batch_move(struct gm_space *s, uint32_t id,
				  uint64_t new_base_gfn);
GM_EXPORT int gm_space_batch_resize(struct gm_space *s, uint32_t id,
				    uint64_t new_npages);
GM_EXPORT int gm_space_batch_set_flags(struct gm_space *s, uint32_t id,
				       uint32_t flags);
/*
 * gm_space_batch_commit — applies the batch in order and publishes the result at
 * once (generation + 1). Cost O(k log n) for k changes in this batch and the
 * previous one; never waits for readers. Errors, with the published layout
 * and every slot exactly as before and the batch discarded: -EEXIST (a gfn
 * range overlaps another slot's, or an id added twice), -ENOENT (unknown
 * id), -ENOSPC (more than max_slots), -EINVAL (s NULL, or a move/resize
 * giving a slot that batch_add would refuse), -ENOMEM. An empty batch
 * commits nothing and returns 0. Writer only.
 */
GM_EXPORT int gm_space_batch_commit(struct gm_space *s);
/* The simple form: begin + one change + commit, same errors. */
GM_EXPORT int gm_space_slot_add(struct gm_space *s, uint32_t id,
				uint64_t base_gfn, uint64_t npages,
				uint64_t hva, uint32_t flags);
GM_EXPORT int gm_space_slot_remove(struct gm_space *s, uint32_t id);
GM_EXPORT int gm_space_slot_move(struct gm_space *s, uint32_t id,
				 uint64_t new_base_gfn);
GM_EXPORT int gm_space_slot_resize(struct gm_space *s, uint32_t id,
				   uint64_t new_npages);
GM_EXPORT int gm_space_slot_set_flags(struct gm_space *s, uint32_t id,
				      uint32_t flags);

/* ---- lookups: readers under gm_rcu_read_lock() -------------------------- */
/* Clears a cache (NULL: no-op). O(1). */
GM_EXPORT void gm_space_cache_init(struct gm_space_cache *c);
/*
 * gm_space_gfn_to_slot — the slot holding gfn: 0 and *slot, -ENOENT, or
 * -EINVAL if s or slot is NULL. cache may be NULL; otherwise tried first in
 * O(1) (last slot + generation) and refreshed. Then the layout's shared
 * last-used hint, then the gfn index, O(log n). Reader; never allocates;
 * retries (no wait) if the layout it read was being edited.
 */
GM_EXPORT int gm_space_gfn_to_slot(const struct gm_space *s,
				   struct gm_space_cache *cache, uint64_t gfn,
				   const struct gm_space_slot **slot);
/*
 * gm_space_gfn_to_hva_slow — as gfn_to_slot, then the hva of gfn's frame
 * (the index entry holds base, npages and hva, so a miss does not touch the
 * slot object, nor load its pointer: cache->slot is left NULL, and a later
 * gm_space_gfn_to_slot refills it). The out-of-line half of
 * gm_space_gfn_to_hva.
 */
GM_EXPORT int gm_space_gfn_to_hva_slow(const struct gm_space *s,
				       struct gm_space_cache *cache,
				       uint64_t gfn, uint64_t *hva);
/*
 * gm_space_gfn_to_hva — the hva of gfn's frame: 0, -ENOENT, or -EINVAL if s
 * or hva is NULL. Inline hit path: if cache (may be NULL) was filled at the
 * published generation and holds gfn, O(1) with no call and no access to
 * the slot; otherwise gm_space_gfn_to_hva_slow (O(log n), refreshes cache).
 * Reader.
 */
static inline int gm_space_gfn_to_hva(const struct gm_space *s,
				      struct gm_space_cache *cache,
				      uint64_t gfn, uint64_t *hva)
{
	const struct gm_space_head *h = (const struct gm_space_head *)(const void *)s;
	if (!s || !hva)
		return -EINVAL;
	if (cache &&
	    cache->generation == __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE) &&
	    gfn - cache->base_gfn < cache->npages) {
		*hva = cache->hva + ((gfn - cache->base_gfn) << GM_SPACE_PAGE_SHIFT);
		return 0;
	}
	return gm_space_gfn_to_hva_slow(s, cache, gfn, hva);
}
/* gm_space_id_to_slot — the slot with this id, or NULL (also for a NULL
 * s). O(log64 n). Reader. */
GM_EXPORT const struct gm_space_slot *gm_space_id_to_slot(const struct gm_space *s,
							  uint32_t id);
/*
 * gm_space_hva_fill — every (slot, gfn range) the hva range [first, last]
 * covers, from one layout, in order of slot hva. Fills up to max hits;
 * returns the total number (may exceed max), or -EINVAL (s NULL, hits NULL
 * with max > 0, first > last). O(log n + k). Reader.
 */
GM_EXPORT int64_t gm_space_hva_fill(const struct gm_space *s, uint64_t first,
				    uint64_t last, struct gm_space_hva_hit *hits,
				    size_t max);
/* The generation of the active layout (0 for NULL). O(1). Reader or
 * writer. */
GM_EXPORT uint64_t gm_space_generation(const struct gm_space *s);
/* Number of slots in the active layout (0 for NULL). O(1). Writer. */
GM_EXPORT uint64_t gm_space_slot_count(const struct gm_space *s);
/* An iterator over the slots a gfn range touches, in gfn order (or the
 * reverse). Caller-owned; no allocation; no cleanup; fields private. */
struct gm_space_slot_iter {
	const struct gm_space *space;
	uint64_t next_gfn, end_gfn;
	bool reverse, done;
};
/*
 * gm_space_slot_iter_init — starts an iteration over the slots that hold a
 * frame of [first_gfn, last_gfn] ([0, UINT64_MAX]: all slots), ascending,
 * or descending with GM_ITER_REVERSE. O(1). -EINVAL (it or s NULL,
 * first_gfn > last_gfn, unknown flags: the iterator is then empty).
 * gm_space_slot_iter_next — the next such slot: 0 and *out, or -ENOENT at
 * the end (-EINVAL: NULL). O(log n) per call.
 * Reader (under gm_rcu_read_lock(), *out valid until the unlock) or
 * writer. Each call looks in the layout published at that moment, from the
 * gfn after the previous slot's end: a slot never appears twice, and a
 * slot that is in every layout the iteration sees is returned.
 */
GM_EXPORT int gm_space_slot_iter_init(struct gm_space_slot_iter *it,
				      const struct gm_space *s, uint64_t first_gfn,
				      uint64_t last_gfn, unsigned flags);
GM_EXPORT int gm_space_slot_iter_next(struct gm_space_slot_iter *it,
				      const struct gm_space_slot **out);

/* ---- attributes per gfn (small integers, 0 = default) ------------------- */
/*
 * gm_space_attr_set — gives [first, last] the attribute value. O(log n + k)
 * in attribute ranges. The common "one range, nothing else" state is kept
 * in one 32-byte object; a rangemap is built when a second range appears.
 * Writer. -EINVAL (s NULL, first > last), -ENOMEM (unchanged).
 */
GM_EXPORT int gm_space_attr_set(struct gm_space *s, uint64_t first,
				uint64_t last, uint64_t value);
/* gm_space_attr_get — the attribute of gfn (0 for a NULL s). O(log n).
 * Reader. */
GM_EXPORT uint64_t gm_space_attr_get(const struct gm_space *s, uint64_t gfn);
/* gm_space_attr_all — true if every frame of [first, last] has value.
 * O(log n) (equal neighbours are merged). Reader; false if s is NULL or
 * first > last. */
GM_EXPORT bool gm_space_attr_all(const struct gm_space *s, uint64_t first,
				 uint64_t last, uint64_t value);

/* ---- write tracking ------------------------------------------------------ */
/*
 * gm_space_protect / gm_space_unprotect — add / remove one protection of
 * every frame of [first, last] (a count per frame, up to 2^32). O(log n + k)
 * in protected ranges. Writer. -EINVAL (s NULL, first > last, unprotect of a frame
 * not protected, or a count overflow), -ENOMEM; unchanged on error.
 */
GM_EXPORT int gm_space_protect(struct gm_space *s, uint64_t first,
			       uint64_t last);
GM_EXPORT int gm_space_unprotect(struct gm_space *s, uint64_t first,
				 uint64_t last);
/* The protection count of gfn (0: not protected, or s NULL). O(log n).
 * Reader. */
GM_EXPORT uint64_t gm_space_protect_count(const struct gm_space *s, uint64_t gfn);

/* ---- I/O dispatch -------------------------------------------------------- */
/*
 * gm_space_io_add — routes [first, last] of the MMIO or PIO space to
 * (fn, ctx). O(log n). Writer. -EINVAL (s NULL, first > last, fn NULL, bad
 * kind), -EEXIST (overlaps a registered range), -ENOMEM; unchanged on error.
 * gm_space_io_remove — removes the range that starts at first. -ENOENT
 * if none does, -EINVAL (s NULL, bad kind).
 */
GM_EXPORT int gm_space_io_add(struct gm_space *s, enum gm_space_io_kind kind,
			      uint64_t first, uint64_t last, gm_space_io_fn fn,
			      void *ctx);
GM_EXPORT int gm_space_io_remove(struct gm_space *s, enum gm_space_io_kind kind,
				 uint64_t first);
/* gm_space_io_find — the handler of addr copied to *io: 0, -ENOENT, or
 * -EINVAL (s or io NULL, bad kind). O(log n). Reader. */
GM_EXPORT int gm_space_io_find(const struct gm_space *s, enum gm_space_io_kind kind,
			       uint64_t addr, struct gm_space_io *io);

/* ---- dirty logging (slots with GM_SPACE_SLOT_DIRTY_LOG) ------------------ */
/*
 * gm_space_dirty_mark — marks gfn of slot dirty. Lock-free: one atomic
 * fetch-or in the common case, plus summary bits when a word turns
 * non-zero, and a CAS-installed 4 KiB chunk the first time its 32768
 * frames are touched. Reader (slot from a lookup in the same section); any
 * number of threads. -EINVAL (s or slot NULL), -ENOENT (gfn outside slot,
 * slot not logging), -ENOMEM (chunk not allocated; nothing marked).
 */
GM_EXPORT int gm_space_dirty_mark(struct gm_space *s,
				  const struct gm_space_slot *slot,
				  uint64_t gfn);

/*
 * What a VMM needs beside mark and harvest: KVM's bitmap and dirty-ring
 * entries merged into the log in bulk, and a way to put a run back. All
 * return 0 or a negative errno; NULL pointers are -EINVAL. Locking as for
 * gm_space_dirty_mark (any number of threads, beside markers), the slot from
 * a lookup in the same RCU read section (or the writer's own).
 */

/*
 * gm_space_dirty_import — ORs a KVM-style bitmap into slot's log: bit i of
 * bitmap (bit i % 64 of bitmap[i / 64]) marks frame first_gfn + i. The
 * range [first_gfn, first_gfn + nbits - 1] must lie in the slot. Works a
 * word at a time (aligned or not): O(nbits / 64) plus one summary update
 * per word that turns non-zero. nbits 0: nothing to do. -EINVAL (NULL, range
 * outside the slot), -ENOENT (slot not logging), -ENOMEM (a 4 KiB chunk of
 * the log could not be allocated: no frame marked; chunks installed before
 * the failure stay, empty).
 */
GM_EXPORT int gm_space_dirty_import(struct gm_space *s,
				    const struct gm_space_slot *slot,
				    uint64_t first_gfn, const uint64_t *bitmap,
				    uint64_t nbits);
/*
 * gm_space_dirty_import_gfns — marks each of gfns[0..n) dirty (dirty-ring
 * entries, converted to gfns). All or nothing: one pass checks every gfn
 * (-EINVAL if one is outside the slot) and allocates the log chunks they
 * need (-ENOMEM), before any frame is marked; then bits of one log word are
 * gathered and ORed in at once. O(n). -ENOENT: slot not logging.
 */
GM_EXPORT int gm_space_dirty_import_gfns(struct gm_space *s,
					 const struct gm_space_slot *slot,
					 const uint64_t *gfns, size_t n);
/*
 * gm_space_dirty_harvest — calls fn(ctx, first_gfn, count) for each run of
 * dirty frames of slot within [first_gfn, last_gfn] (clipped to the slot;
 * [0, UINT64_MAX]: the whole slot), in ascending order, clearing the runs
 * fn takes. A run is taken from the log before fn sees it; when fn returns
 * a negative errno the harvest stops, that run and every frame not yet
 * delivered stay dirty (they are put back), and the call returns that
 * errno. fn returning >= 0 accepts the run. Otherwise returns the number of
 * frames delivered (0 if the range misses the slot). Cost: O(chunks of the
 * range / 64 + dirty words of the range): it grows with the dirty frames,
 * not the slot's size; frames outside the range are untouched. Marks
 * concurrent with it are delivered by this harvest or a later one, never
 * lost. Never allocates. One harvester per slot; reader section (or the
 * writer). -EINVAL (s, slot or fn NULL, first_gfn > last_gfn), -ENOENT
 * (slot not logging).
 */
GM_EXPORT int64_t gm_space_dirty_harvest(struct gm_space *s,
					 const struct gm_space_slot *slot,
					 uint64_t first_gfn, uint64_t last_gfn,
					 gm_space_dirty_fn fn, void *ctx);
/*
 * gm_space_dirty_restore — marks [first_gfn, first_gfn + count - 1] dirty
 * again (a send that failed after a harvest loses nothing). O(count / 64).
 * count 0: nothing to do. -EINVAL (NULL, range outside the slot), -ENOENT
 * (not logging), -ENOMEM (no frame marked).
 */
GM_EXPORT int gm_space_dirty_restore(struct gm_space *s,
				     const struct gm_space_slot *slot,
				     uint64_t first_gfn, uint64_t count);


/* ---- reverse maps -------------------------------------------------------- */
/*
 * gm_space_rmap_head — the gm_rmap head of gfn in slot, allocating its
 * 512-head chunk when create is true and it is missing. NULL: s or slot
 * NULL, gfn outside slot, no chunk (create false), or out of memory.
 * O(log64 chunks).
 * Lock: the caller's MMU lock (one thread at a time for all rmap calls of
 * the space), slot from a lookup under gm_rcu_read_lock() held throughout.
 */
GM_EXPORT struct gm_rmap_head *gm_space_rmap_head(struct gm_space *s,
						  const struct gm_space_slot *slot,
						  uint64_t gfn, bool create);

/* ---- stats and validation ------------------------------------------------ */
/* gm_space_stats — fills *st. O(size of the indexes). Writer. 0, or
 * -EINVAL if s or st is NULL. */
GM_EXPORT int gm_space_stats(const struct gm_space *s, struct gm_space_stats *st);
/*
 * gm_space_validate — checks every invariant of src/space.c (both
 * layouts' indexes, that they agree, slot sanity, attribute and protection
 * maps). 0 or -EINVAL with *reason (if reason is not NULL). O(n log n).
 * Writer.
 */
GM_EXPORT int gm_space_validate(const struct gm_space *s, const char **reason);

GM_END_DECLS

#endif /* GMTRACK_SPACE_H */
