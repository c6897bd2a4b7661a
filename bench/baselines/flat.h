/*
 * bench/baselines/flat.h — a flat array of values indexed by key - base:
 * the physical limit for dense keys (8 bytes per entry, one access per
 * lookup). Only meaningful when keys are dense in [base, base + span).
 */
#ifndef BL_FLAT_H
#define BL_FLAT_H

#include <gmtrack/alloc.h>

struct bl_flat {
	void **slot;
	uint64_t base, span, count;
	const struct gm_allocator *alloc;
};

static inline void *bl_flat_load(const struct bl_flat *f, uint64_t key)
{
	uint64_t i = key - f->base;
	return i < f->span ? f->slot[i] : NULL;
}

int bl_flat_init(struct bl_flat *f, uint64_t base, uint64_t span,
		 const struct gm_allocator *alloc);
void bl_flat_destroy(struct bl_flat *f);
int bl_flat_insert(struct bl_flat *f, uint64_t key, void *value);
int bl_flat_erase(struct bl_flat *f, uint64_t key);
uint64_t bl_flat_walk(const struct bl_flat *f, uint64_t limit);
size_t bl_flat_bytes(const struct bl_flat *f);

#endif
