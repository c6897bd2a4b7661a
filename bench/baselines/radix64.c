/* bench/baselines/radix64.c — see radix64.h. */
#include "radix64.h"

#include <string.h>

void bl_radix64_init(struct bl_radix64 *r, const struct gm_allocator *alloc)
{
	memset(r, 0, sizeof(*r));
	r->alloc = alloc;
}

static struct bl_radix64_node *rx_node(struct bl_radix64 *r, unsigned shift,
				       struct bl_radix64_node *parent, unsigned offset)
{
	struct bl_radix64_node *n = gm_alloc_mem(r->alloc, sizeof(*n), 64);
	if (!n)
		return NULL;
	memset(n, 0, sizeof(*n));
	n->shift = (uint8_t)shift;
	n->parent = parent;
	n->offset = (uint8_t)offset;
	r->nodes++;
	return n;
}

static void rx_free(struct bl_radix64 *r, struct bl_radix64_node *n)
{
	gm_alloc_release(r->alloc, n, sizeof(*n));
	r->nodes--;
}

static void rx_destroy_node(struct bl_radix64 *r, struct bl_radix64_node *n)
{
	if (n->shift)
		for (int i = 0; i < 64; i++)
			if (n->slot[i])
				rx_destroy_node(r, n->slot[i]);
	rx_free(r, n);
}

void bl_radix64_destroy(struct bl_radix64 *r)
{
	if (r->root)
		rx_destroy_node(r, r->root);
	r->root = NULL;
	r->height = 0;
	r->count = 0;
}

/* Levels needed so that key fits. */
static unsigned rx_height_for(uint64_t key)
{
	unsigned h = 1;
	while (h < 11 && key >> (6 * h))
		h++;
	return h;
}

int bl_radix64_insert(struct bl_radix64 *r, uint64_t key, void *value)
{
	if (!value)
		return -EINVAL;
	unsigned need = rx_height_for(key);
	if (!r->root) {
		r->root = rx_node(r, 6 * (need - 1), NULL, 0);
		if (!r->root)
			return -ENOMEM;
		r->height = need;
	}
	while (r->height < need) { /* grow at the top, like xa_expand */
		struct bl_radix64_node *old = r->root;
		struct bl_radix64_node *top = rx_node(r, 6 * r->height, NULL, 0);
		if (!top)
			return -ENOMEM;
		if (old->count) {
			top->slot[0] = old;
			top->count = 1;
			old->parent = top;
			old->offset = 0;
		} else {
			rx_free(r, old);
		}
		r->root = top;
		r->height++;
	}
	struct bl_radix64_node *n = r->root;
	while (n->shift) {
		unsigned i = (key >> n->shift) & 63;
		if (!n->slot[i]) {
			struct bl_radix64_node *c = rx_node(r, n->shift - 6, n, i);
			if (!c)
				return -ENOMEM;
			n->slot[i] = c;
			n->count++;
		}
		n = n->slot[i];
	}
	unsigned i = key & 63;
	if (n->slot[i])
		return -EEXIST;
	n->slot[i] = value;
	n->count++;
	r->count++;
	return 0;
}

int bl_radix64_erase(struct bl_radix64 *r, uint64_t key)
{
	if (!r->height || (r->height < 11 && key >> (6 * r->height)))
		return -ENOENT;
	struct bl_radix64_node *n = r->root;
	while (n->shift) {
		n = n->slot[(key >> n->shift) & 63];
		if (!n)
			return -ENOENT;
	}
	unsigned i = key & 63;
	if (!n->slot[i])
		return -ENOENT;
	n->slot[i] = NULL;
	n->count--;
	r->count--;
	/* free nodes that became empty, bottom up */
	while (n->count == 0 && n->parent) {
		struct bl_radix64_node *p = n->parent;
		p->slot[n->offset] = NULL;
		p->count--;
		rx_free(r, n);
		n = p;
	}
	return 0;
}

static uint64_t rx_walk(const struct bl_radix64_node *n, uint64_t prefix,
			uint64_t *left, uint64_t sum)
{
	for (unsigned i = 0; i < 64 && *left; i++) {
		void *s = n->slot[i];
		if (!s)
			continue;
		uint64_t k = prefix | (uint64_t)i << n->shift;
		if (n->shift) {
			sum = rx_walk(s, k, left, sum);
		} else {
			sum += k;
			(*left)--;
		}
	}
	return sum;
}

uint64_t bl_radix64_walk(const struct bl_radix64 *r, uint64_t limit)
{
	return r->root ? rx_walk(r->root, 0, &limit, 0) : 0;
}

size_t bl_radix64_bytes(const struct bl_radix64 *r)
{
	return sizeof(*r) + r->nodes * sizeof(struct bl_radix64_node);
}
