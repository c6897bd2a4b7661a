/*
 * bench/baselines/bl_objcache.h — the object cache the KVM-style baselines
 * share: fixed-size objects topped up outside the lock, taken under it
 * (our own code, modelled on the idea of KVM's mmu memory caches).
 */
#ifndef BL_OBJCACHE_H
#define BL_OBJCACHE_H

#include <gmtrack/alloc.h>

#include <errno.h>
#include <stddef.h>

struct bl_objcache {
	const struct gm_allocator *alloc;
	size_t size, align;
	void *free;      /* linked through the first word */
	size_t n;
};

static inline void bl_objcache_init(struct bl_objcache *c, const struct gm_allocator *a,
				    size_t size, size_t align)
{
	c->alloc = a;
	c->size = size;
	c->align = align;
	c->free = NULL;
	c->n = 0;
}

static inline void bl_objcache_put(struct bl_objcache *c, void *p)
{
	if (c->n >= 64) {
		gm_alloc_release(c->alloc, p, c->size);
		return;
	}
	*(void **)p = c->free;
	c->free = p;
	c->n++;
}

static inline int bl_objcache_topup(struct bl_objcache *c, size_t n)
{
	while (c->n < n) {
		void *p = gm_alloc_mem(c->alloc, c->size, c->align);
		if (!p)
			return -ENOMEM;
		*(void **)p = c->free;
		c->free = p;
		c->n++;
	}
	return 0;
}

static inline void *bl_objcache_take(struct bl_objcache *c)
{
	void *p = c->free;
	if (p) {
		c->free = *(void **)p;
		c->n--;
	}
	return p;
}

static inline void bl_objcache_destroy(struct bl_objcache *c)
{
	void *p;
	while ((p = bl_objcache_take(c)))
		gm_alloc_release(c->alloc, p, c->size);
}

static inline size_t bl_objcache_bytes(const struct bl_objcache *c) { return c->n * c->size; }

#endif
