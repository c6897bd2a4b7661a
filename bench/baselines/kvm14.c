/* bench/baselines/kvm14.c — see kvm14.h. */
#include "kvm14.h"

_Static_assert(sizeof(struct bl_kvm14_desc) == 128, "128-byte descriptor");

void bl_kvm14_cache_init(struct bl_objcache *c, const struct gm_allocator *a)
{
	bl_objcache_init(c, a, sizeof(struct bl_kvm14_desc), 64);
}

int bl_kvm14_add(uintptr_t *head, void *p, struct bl_objcache *c)
{
	if (!*head) {
		*head = (uintptr_t)p;
		return 0;
	}
	if (!(*head & 1)) {
		struct bl_kvm14_desc *d = bl_objcache_take(c);
		if (!d)
			return -ENOMEM;
		d->more = NULL;
		d->count = 2;
		d->tail_count = 0;
		d->e[0] = (void *)*head;
		d->e[1] = p;
		*head = (uintptr_t)d | 1;
		return 0;
	}
	struct bl_kvm14_desc *d = (struct bl_kvm14_desc *)(*head & ~(uintptr_t)1);
	if (d->count == BL_KVM14_N) {
		struct bl_kvm14_desc *n = bl_objcache_take(c);
		if (!n)
			return -ENOMEM;
		n->more = d;
		n->count = 0;
		n->tail_count = d->tail_count + d->count;
		*head = (uintptr_t)n | 1;
		d = n;
	}
	d->e[d->count++] = p;
	return 0;
}

int bl_kvm14_remove(uintptr_t *head, void *p, struct bl_objcache *c)
{
	if (!*head)
		return -ENOENT;
	if (!(*head & 1)) {
		if ((void *)*head != p)
			return -ENOENT;
		*head = 0;
		return 0;
	}
	struct bl_kvm14_desc *first = (struct bl_kvm14_desc *)(*head & ~(uintptr_t)1);
	for (struct bl_kvm14_desc *d = first; d; d = d->more) {
		for (uint32_t i = 0; i < d->count; i++) {
			if (d->e[i] != p)
				continue;
			d->e[i] = first->e[--first->count];
			if (first->count == 0) {
				*head = first->more ? (uintptr_t)first->more | 1 : 0;
				bl_objcache_put(c, first);
			}
			return 0;
		}
	}
	return -ENOENT;
}

size_t bl_kvm14_count(const uintptr_t *head)
{
	if (!(*head & 1))
		return *head != 0;
	const struct bl_kvm14_desc *d = (const void *)(*head & ~(uintptr_t)1);
	return d->count + d->tail_count;
}

void bl_kvm14_clear(uintptr_t *head, struct bl_objcache *c,
		    void (*cb)(void *ctx, void *p), void *ctx)
{
	uintptr_t w = *head;
	*head = 0;
	if (!(w & 1)) {
		if (w)
			cb(ctx, (void *)w);
		return;
	}
	struct bl_kvm14_desc *d = (struct bl_kvm14_desc *)(w & ~(uintptr_t)1);
	while (d) {
		struct bl_kvm14_desc *more = d->more;
		for (uint32_t i = 0; i < d->count; i++)
			cb(ctx, d->e[i]);
		bl_objcache_put(c, d);
		d = more;
	}
}
