/* bench/baselines/flat.c — see flat.h. */
#include "flat.h"

#include <string.h>

int bl_flat_init(struct bl_flat *f, uint64_t base, uint64_t span,
		 const struct gm_allocator *alloc)
{
	f->alloc = alloc;
	f->base = base;
	f->span = span;
	f->count = 0;
	f->slot = gm_alloc_mem(alloc, span * sizeof(void *), 64);
	if (!f->slot)
		return -ENOMEM;
	memset(f->slot, 0, span * sizeof(void *));
	return 0;
}

void bl_flat_destroy(struct bl_flat *f)
{
	gm_alloc_release(f->alloc, f->slot, f->span * sizeof(void *));
	f->slot = NULL;
}

int bl_flat_insert(struct bl_flat *f, uint64_t key, void *value)
{
	uint64_t i = key - f->base;
	if (i >= f->span || !value)
		return -EINVAL;
	if (f->slot[i])
		return -EEXIST;
	f->slot[i] = value;
	f->count++;
	return 0;
}

int bl_flat_erase(struct bl_flat *f, uint64_t key)
{
	uint64_t i = key - f->base;
	if (i >= f->span || !f->slot[i])
		return -ENOENT;
	f->slot[i] = NULL;
	f->count--;
	return 0;
}

uint64_t bl_flat_walk(const struct bl_flat *f, uint64_t limit)
{
	uint64_t sum = 0, seen = 0;
	for (uint64_t i = 0; i < f->span && seen < limit; i++)
		if (f->slot[i]) {
			sum += f->base + i;
			seen++;
		}
	return sum;
}

size_t bl_flat_bytes(const struct bl_flat *f)
{
	return sizeof(*f) + f->span * sizeof(void *);
}
