/*
 * vmm/dirty.h — KVM's dirty tracking fed into gm_space's dirty logs, in
 * both modes KVM has: the per-slot bitmap (KVM_GET_DIRTY_LOG, and
 * KVM_CLEAR_DIRTY_LOG with manual protection) imported a word at a time
 * with gm_space_dirty_import, and the per-vCPU dirty ring
 * (KVM_CAP_DIRTY_LOG_RING) imported with gm_space_dirty_import_gfns and
 * KVM_RESET_DIRTY_RINGS. Times each part, and (on request) the flat
 * bit-by-bit walk of the same bitmap that rust-vmm / Firecracker do, for
 * comparison.
 */
#ifndef GMVM_DIRTY_H
#define GMVM_DIRTY_H

#include "vm.h"

struct gmvm_dirty_stats {
	uint64_t kvm_ns;      /* KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG, or ring reset */
	uint64_t import_ns;   /* gm_space_dirty_import(_gfns) */
	uint64_t ring_ns;     /* reading ring entries, flagging them RESET (not gm_space) */
	uint64_t flat_ns;     /* the flat walk of the same bitmaps (if asked) */
	uint64_t flat_pages;  /* pages the flat walk found */
	uint64_t entries;     /* ring entries collected */
	uint64_t bitmap_bits; /* bits KVM handed over */
};

/* Pulls what KVM saw dirty since the last call into gm_space (every
 * logging slot). Caller holds vm->mem.lock (slots stable). flat: also
 * time the flat walk. 0 or -errno (message in err). */
int gmvm_dirty_sync(struct gmvm_vm *vm, struct gmvm_dirty_stats *st, bool flat,
		    char *err, size_t errlen);
void gmvm_dirty_release(void);

uint64_t gmvm_now_ns(void);

#endif
