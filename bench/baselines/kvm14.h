/*
 * bench/baselines/kvm14.h — KVM's rmap today (pte_list), our own code from
 * its description: the head word holds one pointer inline, or (bit 0) a
 * list of 128-byte descriptors of 14 entries. Only the head descriptor may
 * be partly full, so add is O(1); each descriptor records how many entries
 * the descriptors after it hold, so count is O(1). Remove searches the
 * chain linearly and fills the hole from the head descriptor. Descriptors
 * come from a cache topped up outside the lock. (KVM also zaps chains
 * longer than 1000 instead of growing them; not modelled.)
 */
#ifndef BL_KVM14_H
#define BL_KVM14_H

#include "bl_objcache.h"

#include <stdint.h>

#define BL_KVM14_N 14
struct bl_kvm14_desc {
	struct bl_kvm14_desc *more;
	uint32_t count;        /* entries in this descriptor */
	uint32_t tail_count;   /* entries in all descriptors after it */
	void *e[BL_KVM14_N];
};

void bl_kvm14_cache_init(struct bl_objcache *c, const struct gm_allocator *a);
int bl_kvm14_add(uintptr_t *head, void *p, struct bl_objcache *c);
int bl_kvm14_remove(uintptr_t *head, void *p, struct bl_objcache *c);
size_t bl_kvm14_count(const uintptr_t *head);
void bl_kvm14_clear(uintptr_t *head, struct bl_objcache *c,
		    void (*cb)(void *ctx, void *p), void *ctx);

#endif
