/*
 * bench/baselines/xenlist.c — see xenlist.h. Every operation starts with
 * find_range(): walk from the lowest range to the last one whose start is
 * <= s. That linear walk is the cost the ioreq_select scenario measures.
 */
#include "xenlist.h"

#include <errno.h>

void bl_xenlist_init(struct bl_xenlist *r, const struct gm_allocator *a)
{
	r->head.prev = r->head.next = &r->head;
	r->nr_ranges = 0;
	r->alloc = a;
}

void bl_xenlist_destroy(struct bl_xenlist *r)
{
	struct bl_xenlist_range *x = r->head.next;
	while (x != &r->head) {
		struct bl_xenlist_range *next = x->next;
		gm_alloc_release(r->alloc, x, sizeof(*x));
		x = next;
	}
	bl_xenlist_init(r, r->alloc);
}

/* The last range whose start is <= s, or NULL. */
static struct bl_xenlist_range *find_range(const struct bl_xenlist *r, uint64_t s)
{
	struct bl_xenlist_range *x = NULL;
	for (struct bl_xenlist_range *y = r->head.next; y != &r->head; y = y->next) {
		if (y->s > s)
			break;
		x = y;
	}
	return x;
}

static struct bl_xenlist_range *new_range(struct bl_xenlist *r, uint64_t s,
					  uint64_t e, struct bl_xenlist_range *after)
{
	struct bl_xenlist_range *x = gm_alloc_mem(r->alloc, sizeof(*x), 8);
	if (!x)
		return NULL;
	x->s = s;
	x->e = e;
	x->prev = after;
	x->next = after->next;
	after->next->prev = x;
	after->next = x;
	r->nr_ranges++;
	return x;
}

static void delete_range(struct bl_xenlist *r, struct bl_xenlist_range *x)
{
	x->prev->next = x->next;
	x->next->prev = x->prev;
	gm_alloc_release(r->alloc, x, sizeof(*x));
	r->nr_ranges--;
}

static struct bl_xenlist_range *next_of(const struct bl_xenlist *r,
					struct bl_xenlist_range *x)
{
	struct bl_xenlist_range *n = x ? x->next : r->head.next;
	return n == &r->head ? NULL : n;
}

int bl_xenlist_add(struct bl_xenlist *r, uint64_t s, uint64_t e)
{
	if (s > e)
		return -EINVAL;
	struct bl_xenlist_range *x = find_range(r, s);
	if (!x || (x->e < s && x->e + 1 != s)) {
		/* No range reaches s: start a new one after x. */
		x = new_range(r, s, e, x ? x : &r->head);
		if (!x)
			return -ENOMEM;
	} else if (x->e < e) {
		x->e = e; /* x reaches s: extend it */
	}
	/* Swallow the ranges that now overlap or touch x. */
	struct bl_xenlist_range *y;
	while ((y = next_of(r, x)) && (x->e == UINT64_MAX || y->s <= x->e + 1)) {
		if (y->e > x->e)
			x->e = y->e;
		delete_range(r, y);
	}
	return 0;
}

int bl_xenlist_remove(struct bl_xenlist *r, uint64_t s, uint64_t e)
{
	if (s > e)
		return -EINVAL;
	struct bl_xenlist_range *x = find_range(r, s);
	if (x && x->s < s && x->e > e) {
		/* [s, e] is strictly inside x: split it in two. */
		if (!new_range(r, e + 1, x->e, x))
			return -ENOMEM;
		x->e = s - 1;
		return 0;
	}
	if (x && x->s < s && x->e >= s)
		x->e = s - 1; /* trim the range that straddles s */
	struct bl_xenlist_range *y = x && x->s >= s ? x : next_of(r, x);
	while (y && y->e <= e) {
		struct bl_xenlist_range *n = next_of(r, y);
		delete_range(r, y);
		y = n;
	}
	if (y && y->s <= e)
		y->s = e + 1; /* trim the range that straddles e */
	return 0;
}

bool bl_xenlist_contains(const struct bl_xenlist *r, uint64_t s, uint64_t e)
{
	const struct bl_xenlist_range *x = find_range(r, s);
	return x && x->e >= e;
}
