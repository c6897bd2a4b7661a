/*
 * bench/baselines/vecsnap.h — memslots as rust-vmm's GuestMemoryMmap keeps
 * its regions (our own code, ideas only): a vector sorted by base gfn,
 * copied into a new snapshot on every change and swapped in (ArcSwap-like:
 * the old snapshot is freed after a grace period, nobody waits); gfn
 * lookups binary-search, with no cache; hva lookups scan.
 * Readers: under gm_rcu_read_lock(). Writers: one at a time.
 */
#ifndef BL_VECSNAP_H
#define BL_VECSNAP_H

#include "kvm2020.h"

struct bl_vecsnap_arr;

struct bl_vecsnap {
	_Atomic(struct bl_vecsnap_arr *) cur;
	const struct gm_allocator *alloc;
};

int bl_vecsnap_init(struct bl_vecsnap *v, const struct gm_allocator *a);
void bl_vecsnap_destroy(struct bl_vecsnap *v);
int bl_vecsnap_add(struct bl_vecsnap *v, const struct bl_memslot *s);
int bl_vecsnap_delete(struct bl_vecsnap *v, uint32_t id);
int bl_vecsnap_move(struct bl_vecsnap *v, uint32_t id, uint64_t new_base);
int bl_vecsnap_gfn_to_hva(struct bl_vecsnap *v, uint64_t gfn, uint64_t *hva);
size_t bl_vecsnap_hva_range(struct bl_vecsnap *v, uint64_t a, uint64_t b,
			    bl_hva_fn fn, void *ctx);
size_t bl_vecsnap_bytes(const struct bl_vecsnap *v);

#endif
