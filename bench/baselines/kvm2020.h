/*
 * bench/baselines/kvm2020.h — memslots as KVM kept them before the 2021
 * scalable-memslots series (our own code, ideas only): one array of slots
 * sorted by base gfn plus an id -> index table (KVM's id_to_index[], 2-byte
 * entries for every possible id, copied with the array: 64 KiB), both in one
 * block. Every change builds a complete new copy (kvm_dup_memslots: the
 * table and all n slots), places the slot by sorted insert or delete, and
 * publishes it, waiting for a grace period (synchronize_srcu) before freeing
 * the old copy. Delete and move first publish a copy with the slot marked
 * INVALID and wait a grace period (so no vCPU can still use the old slot),
 * then publish the final array and wait again: 1 copy + 2 grace periods,
 * as __kvm_set_memory_region did up to 5.12. gfn lookups try an "lru slot"
 * hint then binary-search; hva lookups scan every slot; the dirty log is a
 * flat bitmap harvested word by word.
 * Readers: under gm_rcu_read_lock(). Writers: one at a time.
 */
#ifndef BL_KVM2020_H
#define BL_KVM2020_H

#include <gmtrack/alloc.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bl_memslot {
	uint64_t base_gfn, npages, hva;
	uint32_t id, flags;
};

/* The copy both array baselines (kvm2020, vecsnap) make on every change:
 * src[0..n) sorted by base_gfn, minus src[skip] (SIZE_MAX: none), plus
 * *add (NULL: none) at its place, into dst. Returns the count written. */
static inline size_t bl_memslot_copy_sorted(struct bl_memslot *dst,
					    const struct bl_memslot *src, size_t n,
					    size_t skip, const struct bl_memslot *add)
{
	size_t j = 0;
	bool placed = add == NULL;
	for (size_t i = 0; i < n; i++) {
		if (i == skip)
			continue;
		if (!placed && add->base_gfn < src[i].base_gfn) {
			dst[j++] = *add;
			placed = true;
		}
		dst[j++] = src[i];
	}
	if (!placed)
		dst[j++] = *add;
	return j;
}

#define BL_KVM2020_IDS 33792u   /* ids 0..33791 (KVM: 32767) */
#define BL_KVM2020_INVALID 0x1u  /* flag: slot being deleted or moved */

struct bl_kvm2020_arr {
	size_t n;
	_Atomic size_t lru;
	uint16_t id_to_index[BL_KVM2020_IDS]; /* 0xffff: no such id */
	struct bl_memslot s[];
};

struct bl_kvm2020 {
	_Atomic(struct bl_kvm2020_arr *) cur;
	const struct gm_allocator *alloc;
	bool wait_grace; /* KVM: synchronize_srcu after every change */
};

typedef void (*bl_hva_fn)(void *ctx, const struct bl_memslot *s,
			  uint64_t first_gfn, uint64_t last_gfn);

int bl_kvm2020_init(struct bl_kvm2020 *k, const struct gm_allocator *a);
void bl_kvm2020_destroy(struct bl_kvm2020 *k);
/* O(n) copy + a grace period each. 0, -EEXIST, -ENOENT, -ENOMEM. */
int bl_kvm2020_add(struct bl_kvm2020 *k, const struct bl_memslot *s);
int bl_kvm2020_delete(struct bl_kvm2020 *k, uint32_t id);
int bl_kvm2020_move(struct bl_kvm2020 *k, uint32_t id, uint64_t new_base);
/* Readers. */
int bl_kvm2020_gfn_to_hva(struct bl_kvm2020 *k, uint64_t gfn, uint64_t *hva);
size_t bl_kvm2020_hva_range(struct bl_kvm2020 *k, uint64_t a, uint64_t b,
			    bl_hva_fn fn, void *ctx);
size_t bl_kvm2020_bytes(const struct bl_kvm2020 *k);

/* The flat dirty bitmap of one slot: npages bits, harvested by scanning
 * every word (KVM_GET_DIRTY_LOG's loop). */
struct bl_flatlog {
	_Atomic uint64_t *w;
	uint64_t nwords;
	const struct gm_allocator *alloc;
};
int bl_flatlog_init(struct bl_flatlog *f, uint64_t npages,
		    const struct gm_allocator *a);
void bl_flatlog_destroy(struct bl_flatlog *f);
void bl_flatlog_mark(struct bl_flatlog *f, uint64_t off);
/* fn(ctx, first, count) per run (its answer is not asked: the flat walk
 * cannot put a run back); returns dirty frames. */
uint64_t bl_flatlog_harvest(struct bl_flatlog *f,
			    int (*fn)(void *, uint64_t, uint64_t), void *ctx);

#endif
