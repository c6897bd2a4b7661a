/* bench/baselines/rbranges.c — see rbranges.h. */
#define __unused __attribute__((unused))
#include <bsd/sys/tree.h>

#include "rbranges.h"

#include <errno.h>

struct bl_rbranges_node {
	RB_ENTRY(bl_rbranges_node) link;
	uint64_t first, last, value;
};

RB_HEAD(bl_rbranges_tree, bl_rbranges_node);

static int node_cmp(struct bl_rbranges_node *a, struct bl_rbranges_node *b)
{
	return a->first < b->first ? -1 : a->first > b->first;
}

RB_GENERATE_STATIC(bl_rbranges_tree, bl_rbranges_node, link, node_cmp)

#define TREE(t) ((struct bl_rbranges_tree *)(void *)&(t)->root)

void bl_rbranges_init(struct bl_rbranges *t, const struct gm_allocator *alloc)
{
	t->root = NULL;
	t->alloc = alloc;
	t->count = 0;
	t->bytes = 0;
}

static void node_free(struct bl_rbranges *t, struct bl_rbranges_node *n)
{
	gm_alloc_release(t->alloc, n, sizeof(*n));
	t->bytes -= sizeof(*n);
	t->count--;
}

void bl_rbranges_destroy(struct bl_rbranges *t)
{
	struct bl_rbranges_node *n, *next;
	RB_FOREACH_SAFE(n, bl_rbranges_tree, TREE(t), next) {
		RB_REMOVE(bl_rbranges_tree, TREE(t), n);
		node_free(t, n);
	}
}

/* The node holding index, or the first after it. */
static struct bl_rbranges_node *find_from(const struct bl_rbranges *t, uint64_t index)
{
	struct bl_rbranges_node key = {.first = index};
	struct bl_rbranges_tree *tr = TREE((struct bl_rbranges *)t);
	struct bl_rbranges_node *n = RB_NFIND(bl_rbranges_tree, tr, &key);
	struct bl_rbranges_node *p = n ? RB_PREV(bl_rbranges_tree, tr, n)
				       : RB_MAX(bl_rbranges_tree, tr);
	if (p && p->last >= index)
		return p;
	return n;
}

/* Cuts [first, last] out of the tree; `spare` is a preallocated node for a
 * split (consumed if used: *spare set to NULL). */
static void cut(struct bl_rbranges *t, uint64_t first, uint64_t last,
		struct bl_rbranges_node **spare)
{
	struct bl_rbranges_node *n = find_from(t, first);
	if (n && n->first < first) {
		if (n->last > last) { /* split n around the hole */
			struct bl_rbranges_node *r = *spare;
			*spare = NULL;
			r->first = last + 1;
			r->last = n->last;
			r->value = n->value;
			n->last = first - 1;
			RB_INSERT(bl_rbranges_tree, TREE(t), r);
			t->count++;
			t->bytes += sizeof(*r);
			return;
		}
		n->last = first - 1;
		n = RB_NEXT(bl_rbranges_tree, TREE(t), n);
	}
	while (n && n->first <= last) {
		struct bl_rbranges_node *next = RB_NEXT(bl_rbranges_tree, TREE(t), n);
		if (n->last > last) {
			n->first = last + 1; /* stays between its neighbours */
			break;
		}
		RB_REMOVE(bl_rbranges_tree, TREE(t), n);
		node_free(t, n);
		n = next;
	}
}

int bl_rbranges_store(struct bl_rbranges *t, uint64_t first, uint64_t last, uint64_t value)
{
	if (first > last)
		return -EINVAL;
	struct bl_rbranges_node *nn = gm_alloc_mem(t->alloc, sizeof(*nn), 8);
	struct bl_rbranges_node *spare = gm_alloc_mem(t->alloc, sizeof(*spare), 8);
	if (!nn || !spare) {
		gm_alloc_release(t->alloc, nn, sizeof(*nn));
		gm_alloc_release(t->alloc, spare, sizeof(*spare));
		return -ENOMEM;
	}
	cut(t, first, last, &spare);
	gm_alloc_release(t->alloc, spare, sizeof(*spare));
	nn->first = first;
	nn->last = last;
	nn->value = value;
	RB_INSERT(bl_rbranges_tree, TREE(t), nn);
	t->count++;
	t->bytes += sizeof(*nn);
	struct bl_rbranges_node *p = RB_PREV(bl_rbranges_tree, TREE(t), nn);
	if (p && p->last + 1 == first && p->value == value) {
		nn->first = p->first; /* order unchanged: p was just before */
		RB_REMOVE(bl_rbranges_tree, TREE(t), p);
		node_free(t, p);
	}
	struct bl_rbranges_node *x = RB_NEXT(bl_rbranges_tree, TREE(t), nn);
	if (x && last != UINT64_MAX && x->first == last + 1 && x->value == value) {
		nn->last = x->last;
		RB_REMOVE(bl_rbranges_tree, TREE(t), x);
		node_free(t, x);
	}
	return 0;
}

int bl_rbranges_erase(struct bl_rbranges *t, uint64_t first, uint64_t last)
{
	if (first > last)
		return -EINVAL;
	struct bl_rbranges_node *spare = gm_alloc_mem(t->alloc, sizeof(*spare), 8);
	if (!spare)
		return -ENOMEM;
	cut(t, first, last, &spare);
	gm_alloc_release(t->alloc, spare, sizeof(*spare));
	return 0;
}

int bl_rbranges_load(const struct bl_rbranges *t, uint64_t index, uint64_t *value,
		     uint64_t *first, uint64_t *last)
{
	/* One descent: the last node with first <= index. */
	struct bl_rbranges_node *n = t->root, *best = NULL;
	while (n) {
		if (n->first <= index) {
			best = n;
			n = RB_RIGHT(n, link);
		} else {
			n = RB_LEFT(n, link);
		}
	}
	if (!best || best->last < index)
		return -ENOENT;
	if (value)
		*value = best->value;
	if (first)
		*first = best->first;
	if (last)
		*last = best->last;
	return 0;
}

int bl_rbranges_iterate(const struct bl_rbranges *t, uint64_t a, uint64_t b,
			bl_rbranges_fn fn, void *ctx)
{
	for (struct bl_rbranges_node *n = find_from(t, a); n && n->first <= b;
	     n = RB_NEXT(bl_rbranges_tree, TREE((struct bl_rbranges *)t), n)) {
		int rc = fn(ctx, n->first, n->last, n->value);
		if (rc)
			return rc;
	}
	return 0;
}

int bl_rbranges_find_gap(const struct bl_rbranges *t, uint64_t size, uint64_t min,
			 uint64_t max, uint64_t *first)
{
	if (!size || min > max)
		return -EINVAL;
	uint64_t start = min;
	struct bl_rbranges_node *n = find_from(t, min);
	for (;;) {
		if (n && n->first <= start) {
			if (n->last >= max)
				return -ENOSPC;
			start = n->last + 1;
			n = RB_NEXT(bl_rbranges_tree, TREE((struct bl_rbranges *)t), n);
			continue;
		}
		uint64_t end = n ? n->first - 1 : UINT64_MAX;
		if (end > max)
			end = max;
		if (start > end)
			return -ENOSPC;
		if (end - start >= size - 1) {
			*first = start;
			return 0;
		}
		if (!n)
			return -ENOSPC;
		start = n->first; /* too small: skip past n next round */
	}
}

uint64_t bl_rbranges_count(const struct bl_rbranges *t) { return t->count; }
size_t bl_rbranges_bytes(const struct bl_rbranges *t) { return t->bytes; }
