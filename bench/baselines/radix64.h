/*
 * bench/baselines/radix64.h — the GVT-g table after the patch: a 64-way
 * radix tree in the style of the kernel's radix tree / xarray, our own code.
 * Every node is 576 bytes (64 slots + a 64-byte header with shift, count,
 * parent, offset and three 64-bit mark bitmaps, as xa_node), allocated in
 * full however few slots it uses. The tree is as tall as the largest key
 * needs (no path compression); it grows at the top when a larger key comes
 * and frees nodes that become empty.
 */
#ifndef BL_RADIX64_H
#define BL_RADIX64_H

#include <gmtrack/alloc.h>

struct bl_radix64_node {
	uint8_t shift;       /* bits below this node's chunk */
	uint8_t offset;      /* slot in the parent */
	uint16_t count;      /* non-NULL slots */
	uint32_t pad;
	struct bl_radix64_node *parent;
	uint64_t marks[3];   /* unused here, kept for the real footprint */
	uint64_t reserved[3]; /* private list head, rcu head remains */
	void *slot[64];
};
_Static_assert(sizeof(struct bl_radix64_node) == 576, "xa_node-sized node");

struct bl_radix64 {
	void *root;          /* node, or NULL */
	unsigned height;     /* levels (0: empty) */
	uint64_t count, nodes;
	const struct gm_allocator *alloc;
};

static inline void *bl_radix64_load(const struct bl_radix64 *r, uint64_t key)
{
	if (!r->height || (r->height < 11 && key >> (6 * r->height)))
		return NULL;
	const struct bl_radix64_node *n = r->root;
	for (;;) {
		void *s = n->slot[(key >> n->shift) & 63];
		if (!n->shift || !s)
			return s;
		n = s;
	}
}

void bl_radix64_init(struct bl_radix64 *r, const struct gm_allocator *alloc);
void bl_radix64_destroy(struct bl_radix64 *r);
int bl_radix64_insert(struct bl_radix64 *r, uint64_t key, void *value);
int bl_radix64_erase(struct bl_radix64 *r, uint64_t key);
/* Visits up to limit entries in key order; returns the sum of their keys. */
uint64_t bl_radix64_walk(const struct bl_radix64 *r, uint64_t limit);
size_t bl_radix64_bytes(const struct bl_radix64 *r);

#endif
