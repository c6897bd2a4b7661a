/* bench/baselines/xaloop.c — see xaloop.h. */
#include "xaloop.h"

#include <errno.h>
#include <string.h>

#define XA_SHIFT 6
#define XA_SLOTS 64

struct bl_xa_node {            /* 576 bytes, as struct xa_node on 64-bit */
	uint8_t shift, offset, count, nr_values;
	uint32_t pad;
	struct bl_xa_node *parent;
	void *array;
	void *private_list[2];
	void *slots[XA_SLOTS];
	uint64_t marks[3];
};

_Static_assert(sizeof(struct bl_xa_node) == 576, "xa node is 576 bytes");

void bl_xa_init(struct bl_xa *xa, const struct gm_allocator *alloc)
{
	xa->head = NULL;
	xa->shift = 0;
	xa->alloc = alloc;
	xa->bytes = 0;
}

static struct bl_xa_node *node_new(struct bl_xa *xa, unsigned shift, struct bl_xa_node *parent,
				   unsigned offset)
{
	struct bl_xa_node *n = gm_alloc_mem(xa->alloc, sizeof(*n), 64);
	if (!n)
		return NULL;
	memset(n, 0, sizeof(*n));
	n->shift = (uint8_t)shift;
	n->parent = parent;
	n->offset = (uint8_t)offset;
	n->array = xa;
	xa->bytes += sizeof(*n);
	return n;
}

static void node_free_tree(struct bl_xa *xa, struct bl_xa_node *n)
{
	if (n->shift)
		for (unsigned i = 0; i < XA_SLOTS; i++)
			if (n->slots[i])
				node_free_tree(xa, n->slots[i]);
	gm_alloc_release(xa->alloc, n, sizeof(*n));
	xa->bytes -= sizeof(*n);
}

void bl_xa_destroy(struct bl_xa *xa)
{
	if (xa->head)
		node_free_tree(xa, xa->head);
	xa->head = NULL;
}

static uint64_t max_index(unsigned shift)
{
	return shift + XA_SHIFT >= 64 ? UINT64_MAX : (1ULL << (shift + XA_SHIFT)) - 1;
}

int bl_xa_store(struct bl_xa *xa, uint64_t index, uint64_t value)
{
	if (!xa->head) {
		unsigned shift = 0;
		while (index > max_index(shift))
			shift += XA_SHIFT;
		if (!(xa->head = node_new(xa, shift, NULL, 0)))
			return -ENOMEM;
		xa->shift = shift;
	}
	while (index > max_index(xa->shift)) { /* grow upwards */
		struct bl_xa_node *top = node_new(xa, xa->shift + XA_SHIFT, NULL, 0);
		if (!top)
			return -ENOMEM;
		struct bl_xa_node *old = xa->head;
		top->slots[0] = old;
		top->count = 1;
		old->parent = top;
		xa->head = top;
		xa->shift += XA_SHIFT;
	}
	struct bl_xa_node *n = xa->head;
	while (n->shift) {
		unsigned off = (index >> n->shift) & (XA_SLOTS - 1);
		struct bl_xa_node *c = n->slots[off];
		if (!c) {
			if (!(c = node_new(xa, n->shift - XA_SHIFT, n, off)))
				return -ENOMEM;
			n->slots[off] = c;
			n->count++;
		}
		n = c;
	}
	unsigned off = index & (XA_SLOTS - 1);
	if (!n->slots[off]) {
		n->count++;
		n->nr_values++;
	}
	n->slots[off] = (void *)(uintptr_t)((value << 1) | 1);
	return 0;
}

void bl_xa_erase(struct bl_xa *xa, uint64_t index)
{
	struct bl_xa_node *n = xa->head;
	if (!n || index > max_index(xa->shift))
		return;
	while (n->shift) {
		n = n->slots[(index >> n->shift) & (XA_SLOTS - 1)];
		if (!n)
			return;
	}
	unsigned off = index & (XA_SLOTS - 1);
	if (!n->slots[off])
		return;
	n->slots[off] = NULL;
	n->count--;
	n->nr_values--;
	while (n && n->count == 0) { /* free empty nodes upwards */
		struct bl_xa_node *p = n->parent;
		if (p) {
			p->slots[n->offset] = NULL;
			p->count--;
		} else {
			xa->head = NULL;
		}
		gm_alloc_release(xa->alloc, n, sizeof(*n));
		xa->bytes -= sizeof(*n);
		n = p;
	}
}

int bl_xa_load(const struct bl_xa *xa, uint64_t index, uint64_t *value)
{
	const struct bl_xa_node *n = xa->head;
	if (!n || index > max_index(xa->shift))
		return -ENOENT;
	while (n->shift) {
		n = n->slots[(index >> n->shift) & (XA_SLOTS - 1)];
		if (!n)
			return -ENOENT;
	}
	uintptr_t e = (uintptr_t)n->slots[index & (XA_SLOTS - 1)];
	if (!e)
		return -ENOENT;
	*value = e >> 1;
	return 0;
}

int bl_xa_store_range(struct bl_xa *xa, uint64_t first, uint64_t last, uint64_t value)
{
	for (uint64_t i = first;; i++) {
		int rc = bl_xa_store(xa, i, value);
		if (rc || i == last)
			return rc;
	}
}

void bl_xa_erase_range(struct bl_xa *xa, uint64_t first, uint64_t last)
{
	for (uint64_t i = first;; i++) {
		bl_xa_erase(xa, i);
		if (i == last)
			return;
	}
}

size_t bl_xa_bytes(const struct bl_xa *xa) { return xa->bytes; }
