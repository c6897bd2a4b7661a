/*
 * bench/baselines/rbranges.h — a red-black tree of ranges (BSD sys/tree.h),
 * the "interval tree of ranges" design: one node per range, keyed by its
 * first index, 56 bytes a node. store overwrites and merges touching
 * neighbours of equal value (like gm_rangemap); erase cuts ranges at the
 * edges. Memory goes through a gm_allocator so bytes are exact. Not
 * thread-safe. Names prefixed bl_rbranges_.
 */
#ifndef BL_RBRANGES_H
#define BL_RBRANGES_H

#include <gmtrack/alloc.h>

#include <stddef.h>
#include <stdint.h>

struct bl_rbranges_node;

struct bl_rbranges {
	struct bl_rbranges_node *root; /* layout of RB_HEAD: one root pointer */
	const struct gm_allocator *alloc;
	uint64_t count;
	size_t bytes;
};

/* Callback for iterate: return non-zero to stop. */
typedef int (*bl_rbranges_fn)(void *ctx, uint64_t first, uint64_t last, uint64_t value);

void bl_rbranges_init(struct bl_rbranges *t, const struct gm_allocator *alloc);
void bl_rbranges_destroy(struct bl_rbranges *t);
/* [first, last] := value; merges equal touching neighbours. 0, -EINVAL,
 * -ENOMEM (tree unchanged). O(log n + k). */
int bl_rbranges_store(struct bl_rbranges *t, uint64_t first, uint64_t last, uint64_t value);
/* Makes [first, last] empty. 0, -EINVAL, -ENOMEM. O(log n + k). */
int bl_rbranges_erase(struct bl_rbranges *t, uint64_t first, uint64_t last);
/* 0 with the range holding index, or -ENOENT. O(log n). */
int bl_rbranges_load(const struct bl_rbranges *t, uint64_t index, uint64_t *value,
		     uint64_t *first, uint64_t *last);
/* Calls fn on each range overlapping [a, b], ascending (whole bounds). */
int bl_rbranges_iterate(const struct bl_rbranges *t, uint64_t a, uint64_t b,
			bl_rbranges_fn fn, void *ctx);
/* Lowest first >= min with [first, first+size-1] free and <= max, by a
 * walk over the ranges (no gap summaries): O(log n + ranges passed). */
int bl_rbranges_find_gap(const struct bl_rbranges *t, uint64_t size, uint64_t min,
			 uint64_t max, uint64_t *first);
uint64_t bl_rbranges_count(const struct bl_rbranges *t);
size_t bl_rbranges_bytes(const struct bl_rbranges *t);

#endif
