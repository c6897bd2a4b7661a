/*
 * bench/baselines/linear.h — memslots as a flat array scanned linearly:
 * how KVM answered "which memslots overlap this hva range?" before 2021
 * (kvm_for_each_memslot over the whole array on every MMU-notifier
 * invalidation). Our own code. 24 bytes per slot plus unused capacity.
 */
#ifndef BL_LINEAR_H
#define BL_LINEAR_H

#include <gmtrack/alloc.h>

struct bl_linear_slot {
	uint64_t first, last; /* inclusive hva range */
	void *item;
};

struct bl_linear {
	struct bl_linear_slot *a;
	size_t n, cap;
	const struct gm_allocator *alloc;
};

void bl_linear_init(struct bl_linear *l, const struct gm_allocator *alloc);
void bl_linear_destroy(struct bl_linear *l);
/* Appends; 0 or -ENOMEM. O(1) amortized (doubling). */
int bl_linear_insert(struct bl_linear *l, uint64_t first, uint64_t last, void *item);
/* Removes the triple (the last slot fills the hole); 0 or -ENOENT. O(n). */
int bl_linear_remove(struct bl_linear *l, uint64_t first, uint64_t last, void *item);
/* Visits every slot overlapping [a, b]; returns the number of hits and
 * stores up to max of their items in out. O(n). */
size_t bl_linear_query(const struct bl_linear *l, uint64_t a, uint64_t b,
		       void **out, size_t max);
/* Bytes held (the array's capacity). */
size_t bl_linear_bytes(const struct bl_linear *l);

#endif
