/*
 * bench/baselines/xenlist.h — Xen's rangeset as it is today: a sorted,
 * doubly linked list of disjoint inclusive ranges, searched linearly from
 * the head. Our own re-implementation of the design (Xen's code is GPL and
 * was read for the idea only). No per-set cap on the number of ranges, so
 * that it can hold what the workload needs (Xen caps ioreq servers at 256).
 */
#ifndef BL_XENLIST_H
#define BL_XENLIST_H

#include <gmtrack/alloc.h>
#include <stdbool.h>
#include <stdint.h>

struct bl_xenlist_range {
	struct bl_xenlist_range *prev, *next;
	uint64_t s, e; /* inclusive */
};

struct bl_xenlist {
	struct bl_xenlist_range head; /* sentinel: head.next is the lowest */
	uint64_t nr_ranges;
	const struct gm_allocator *alloc;
};

void bl_xenlist_init(struct bl_xenlist *r, const struct gm_allocator *a);
void bl_xenlist_destroy(struct bl_xenlist *r);
/* Adds [s, e], merging with overlapping and touching ranges. 0 / -ENOMEM. */
int bl_xenlist_add(struct bl_xenlist *r, uint64_t s, uint64_t e);
/* Removes [s, e], splitting a range that straddles it. 0 / -ENOMEM. */
int bl_xenlist_remove(struct bl_xenlist *r, uint64_t s, uint64_t e);
/* True if every index of [s, e] is in the set. */
bool bl_xenlist_contains(const struct bl_xenlist *r, uint64_t s, uint64_t e);

#endif
