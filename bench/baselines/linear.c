/* bench/baselines/linear.c — see linear.h. */
#include "linear.h"

#include <string.h>

void bl_linear_init(struct bl_linear *l, const struct gm_allocator *alloc)
{
	l->a = NULL;
	l->n = l->cap = 0;
	l->alloc = alloc;
}

void bl_linear_destroy(struct bl_linear *l)
{
	gm_alloc_release(l->alloc, l->a, l->cap * sizeof(*l->a));
	bl_linear_init(l, l->alloc);
}

int bl_linear_insert(struct bl_linear *l, uint64_t first, uint64_t last, void *item)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct bl_linear_slot *a = gm_alloc_mem(l->alloc, cap * sizeof(*a),
							_Alignof(struct bl_linear_slot));
		if (!a)
			return -ENOMEM;
		if (l->n)
			memcpy(a, l->a, l->n * sizeof(*a));
		gm_alloc_release(l->alloc, l->a, l->cap * sizeof(*l->a));
		l->a = a;
		l->cap = cap;
	}
	l->a[l->n++] = (struct bl_linear_slot){first, last, item};
	return 0;
}

int bl_linear_remove(struct bl_linear *l, uint64_t first, uint64_t last, void *item)
{
	for (size_t i = 0; i < l->n; i++) {
		struct bl_linear_slot *s = &l->a[i];
		if (s->first == first && s->last == last && s->item == item) {
			*s = l->a[--l->n];
			return 0;
		}
	}
	return -ENOENT;
}

size_t bl_linear_query(const struct bl_linear *l, uint64_t a, uint64_t b,
		       void **out, size_t max)
{
	size_t k = 0;
	for (size_t i = 0; i < l->n; i++) {
		const struct bl_linear_slot *s = &l->a[i];
		if (s->first <= b && s->last >= a) {
			if (k < max)
				out[k] = s->item;
			k++;
		}
	}
	return k;
}

size_t bl_linear_bytes(const struct bl_linear *l)
{
	return l->cap * sizeof(*l->a);
}
