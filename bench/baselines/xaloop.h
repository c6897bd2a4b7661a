/*
 * bench/baselines/xaloop.h — the per-index design KVM uses for memory
 * attributes today: a 64-way radix tree (the xarray's shape: 576-byte
 * nodes with 64 slots, a count, a parent pointer and mark bitmaps) and a
 * loop that stores one index at a time. Values are stored as tagged
 * integers ((v << 1) | 1, as xa_mk_value); storing 0 ... is allowed, and
 * erase frees nodes whose count drops to zero. Our own code; not
 * thread-safe. Names prefixed bl_xa_.
 */
#ifndef BL_XALOOP_H
#define BL_XALOOP_H

#include <gmtrack/alloc.h>

#include <stddef.h>
#include <stdint.h>

struct bl_xa_node;

struct bl_xa {
	void *head;      /* a node, or NULL */
	unsigned shift;  /* shift of the head node (0: leaf level) */
	const struct gm_allocator *alloc;
	size_t bytes;
};

void bl_xa_init(struct bl_xa *xa, const struct gm_allocator *alloc);
void bl_xa_destroy(struct bl_xa *xa);
/* One index. 0 or -ENOMEM. O(height). */
int bl_xa_store(struct bl_xa *xa, uint64_t index, uint64_t value);
void bl_xa_erase(struct bl_xa *xa, uint64_t index);
/* 0 and *value, or -ENOENT. */
int bl_xa_load(const struct bl_xa *xa, uint64_t index, uint64_t *value);
/* The KVM loops: every index of [first, last], one at a time. */
int bl_xa_store_range(struct bl_xa *xa, uint64_t first, uint64_t last, uint64_t value);
void bl_xa_erase_range(struct bl_xa *xa, uint64_t first, uint64_t last);
size_t bl_xa_bytes(const struct bl_xa *xa);

#endif
