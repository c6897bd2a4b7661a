/* bench/baselines/rbtree.c — see rbtree.h. */
#define __unused __attribute__((unused))
#include <bsd/sys/tree.h>

#include "rbtree.h"

struct bl_rb_node {
	RB_ENTRY(bl_rb_node) link;
	uint64_t key;
	void *value;
};

static int bl_rb_cmp(struct bl_rb_node *a, struct bl_rb_node *b)
{
	return a->key < b->key ? -1 : a->key > b->key;
}

RB_HEAD(bl_rb_head, bl_rb_node);
RB_GENERATE_STATIC(bl_rb_head, bl_rb_node, link, bl_rb_cmp)

struct bl_rbtree {
	struct bl_rb_head head;
	uint64_t count;
	const struct gm_allocator *alloc;
};

struct bl_rbtree *bl_rbtree_create(const struct gm_allocator *alloc)
{
	struct bl_rbtree *t = gm_alloc_mem(alloc, sizeof(*t), 8);
	if (!t)
		return NULL;
	RB_INIT(&t->head);
	t->count = 0;
	t->alloc = alloc;
	return t;
}

void bl_rbtree_destroy(struct bl_rbtree *t)
{
	struct bl_rb_node *n, *next;
	RB_FOREACH_SAFE(n, bl_rb_head, &t->head, next) {
		RB_REMOVE(bl_rb_head, &t->head, n);
		gm_alloc_release(t->alloc, n, sizeof(*n));
	}
	gm_alloc_release(t->alloc, t, sizeof(*t));
}

int bl_rbtree_insert(struct bl_rbtree *t, uint64_t key, void *value)
{
	struct bl_rb_node *n = gm_alloc_mem(t->alloc, sizeof(*n), 8);
	if (!n)
		return -ENOMEM;
	n->key = key;
	n->value = value;
	if (RB_INSERT(bl_rb_head, &t->head, n)) {
		gm_alloc_release(t->alloc, n, sizeof(*n));
		return -EEXIST;
	}
	t->count++;
	return 0;
}

void *bl_rbtree_load(const struct bl_rbtree *t, uint64_t key)
{
	const struct bl_rb_node *n = RB_ROOT(&t->head);
	while (n) {
		if (key < n->key)
			n = RB_LEFT(n, link);
		else if (key > n->key)
			n = RB_RIGHT(n, link);
		else
			return n->value;
	}
	return NULL;
}

int bl_rbtree_erase(struct bl_rbtree *t, uint64_t key)
{
	struct bl_rb_node find = {.key = key};
	struct bl_rb_node *n = RB_FIND(bl_rb_head, &t->head, &find);
	if (!n)
		return -ENOENT;
	RB_REMOVE(bl_rb_head, &t->head, n);
	gm_alloc_release(t->alloc, n, sizeof(*n));
	t->count--;
	return 0;
}

uint64_t bl_rbtree_walk(const struct bl_rbtree *t, uint64_t limit)
{
	uint64_t sum = 0, seen = 0;
	struct bl_rb_node *n;
	for (n = RB_MIN(bl_rb_head, (struct bl_rb_head *)&t->head); n && seen < limit;
	     n = RB_NEXT(bl_rb_head, NULL, n), seen++)
		sum += n->key;
	return sum;
}

size_t bl_rbtree_bytes(const struct bl_rbtree *t)
{
	return sizeof(*t) + t->count * sizeof(struct bl_rb_node);
}
