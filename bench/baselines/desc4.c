/* bench/baselines/desc4.c — see desc4.h. */
#include "desc4.h"

void bl_desc4_cache_init(struct bl_objcache *c, const struct gm_allocator *a)
{
	bl_objcache_init(c, a, sizeof(struct bl_desc4), 8);
}

int bl_desc4_add(uintptr_t *head, void *p, struct bl_objcache *c)
{
	if (!*head) {
		*head = (uintptr_t)p;
		return 0;
	}
	if (!(*head & 1)) {
		struct bl_desc4 *d = bl_objcache_take(c);
		if (!d)
			return -ENOMEM;
		*d = (struct bl_desc4){{(void *)*head, p, NULL, NULL}, NULL};
		*head = (uintptr_t)d | 1;
		return 0;
	}
	struct bl_desc4 *d = (struct bl_desc4 *)(*head & ~(uintptr_t)1);
	while (d->e[BL_DESC4_N - 1] && d->more)
		d = d->more;
	if (d->e[BL_DESC4_N - 1]) {
		struct bl_desc4 *n = bl_objcache_take(c);
		if (!n)
			return -ENOMEM;
		*n = (struct bl_desc4){{p, NULL, NULL, NULL}, NULL};
		d->more = n;
		return 0;
	}
	int i = 0;
	while (d->e[i])
		i++;
	d->e[i] = p;
	return 0;
}

int bl_desc4_remove(uintptr_t *head, void *p, struct bl_objcache *c)
{
	if (!*head)
		return -ENOENT;
	if (!(*head & 1)) {
		if ((void *)*head != p)
			return -ENOENT;
		*head = 0;
		return 0;
	}
	struct bl_desc4 *prev = NULL;
	for (struct bl_desc4 *d = (struct bl_desc4 *)(*head & ~(uintptr_t)1); d;
	     prev = d, d = d->more) {
		for (int i = 0; i < BL_DESC4_N && d->e[i]; i++) {
			if (d->e[i] != p)
				continue;
			int j = BL_DESC4_N - 1;
			while (!d->e[j])
				j--;
			d->e[i] = d->e[j];
			d->e[j] = NULL;
			if (j == 0) {   /* descriptor emptied: unlink and free */
				if (prev)
					prev->more = d->more;
				else
					*head = d->more ? (uintptr_t)d->more | 1 : 0;
				bl_objcache_put(c, d);
			}
			/* one entry left in a lone descriptor: back inline */
			struct bl_desc4 *f = (struct bl_desc4 *)(*head & ~(uintptr_t)1);
			if ((*head & 1) && !f->more && !f->e[1]) {
				*head = (uintptr_t)f->e[0];
				bl_objcache_put(c, f);
			}
			return 0;
		}
	}
	return -ENOENT;
}

void bl_desc4_clear(uintptr_t *head, struct bl_objcache *c,
		    void (*cb)(void *ctx, void *p), void *ctx)
{
	uintptr_t w = *head;
	*head = 0;
	if (!(w & 1)) {
		if (w)
			cb(ctx, (void *)w);
		return;
	}
	struct bl_desc4 *d = (struct bl_desc4 *)(w & ~(uintptr_t)1);
	while (d) {
		struct bl_desc4 *more = d->more;
		for (int i = 0; i < BL_DESC4_N && d->e[i]; i++)
			cb(ctx, d->e[i]);
		bl_objcache_put(c, d);
		d = more;
	}
}
