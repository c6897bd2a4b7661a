/*
 * src/alloc.c — default, counting and failing allocators (see alloc.h).
 */
#include <gmtrack/alloc.h>

#include "rng.h"

#include <stdlib.h>

static void *default_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx;
	if (align <= _Alignof(max_align_t))
		return malloc(size);
	if ((align & (align - 1)) || size > SIZE_MAX - align)
		return NULL; /* not a power of two, or the rounding would wrap */
	/* aligned_alloc wants size to be a multiple of align. */
	size_t rounded = (size + align - 1) & ~(align - 1);
	return aligned_alloc(align, rounded);
}

static void default_free(void *ctx, void *ptr, size_t size)
{
	(void)ctx;
	(void)size;
	free(ptr);
}

static const struct gm_allocator default_allocator = {
	.alloc = default_alloc,
	.free = default_free,
	.ctx = NULL,
};

const struct gm_allocator *gm_alloc_default(void)
{
	return &default_allocator;
}

/* ---- counting ---------------------------------------------------------- */

static void *counting_alloc(void *ctx, size_t size, size_t align)
{
	struct gm_alloc_counting *c = ctx;
	void *p = c->parent->alloc(c->parent->ctx, size, align);
	if (!p)
		return NULL;
	size_t now = __atomic_fetch_add(&c->bytes, size, __ATOMIC_RELAXED) + size;
	size_t peak = __atomic_load_n(&c->peak, __ATOMIC_RELAXED);
	while (now > peak &&
	       !__atomic_compare_exchange_n(&c->peak, &peak, now, true,
					     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	__atomic_fetch_add(&c->allocs, 1, __ATOMIC_RELAXED);
	return p;
}

static void counting_free(void *ctx, void *ptr, size_t size)
{
	struct gm_alloc_counting *c = ctx;
	__atomic_fetch_sub(&c->bytes, size, __ATOMIC_RELAXED);
	__atomic_fetch_add(&c->frees, 1, __ATOMIC_RELAXED);
	c->parent->free(c->parent->ctx, ptr, size);
}

void gm_alloc_counting_init(struct gm_alloc_counting *c,
			    const struct gm_allocator *parent)
{
	c->allocator.alloc = counting_alloc;
	c->allocator.free = counting_free;
	c->allocator.ctx = c;
	c->parent = parent ? parent : gm_alloc_default();
	__atomic_store_n(&c->bytes, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&c->peak, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&c->allocs, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&c->frees, 0, __ATOMIC_RELAXED);
}

size_t gm_alloc_counting_bytes(const struct gm_alloc_counting *c)
{
	return __atomic_load_n(&c->bytes, __ATOMIC_RELAXED);
}

size_t gm_alloc_counting_peak(const struct gm_alloc_counting *c)
{
	return __atomic_load_n(&c->peak, __ATOMIC_RELAXED);
}

void gm_alloc_counting_reset_peak(struct gm_alloc_counting *c)
{
	__atomic_store_n(&c->peak, gm_alloc_counting_bytes(c), __ATOMIC_RELAXED);
}

/* ---- failing ----------------------------------------------------------- */

/* splitmix64 step on an atomic state, so concurrent callers stay sane. */
static uint64_t failing_next_random(struct gm_alloc_failing *f)
{
	return gm_splitmix64_mix(__atomic_fetch_add(&f->rng, 0x9e3779b97f4a7c15ULL,
						    __ATOMIC_RELAXED) + 0x9e3779b97f4a7c15ULL);
}

static bool failing_should_fail(struct gm_alloc_failing *f)
{
	uint64_t call = __atomic_fetch_add(&f->calls, 1, __ATOMIC_RELAXED) + 1;
	if (f->fail_nth && (call == f->fail_nth ||
			    (f->sticky && call > f->fail_nth)))
		return true;
	if (f->probability > 0.0) {
		double u = (double)(failing_next_random(f) >> 11) * 0x1.0p-53;
		if (u < f->probability)
			return true;
	}
	return false;
}

static void *failing_alloc(void *ctx, size_t size, size_t align)
{
	struct gm_alloc_failing *f = ctx;
	if (failing_should_fail(f)) {
		__atomic_fetch_add(&f->failures, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	return f->parent->alloc(f->parent->ctx, size, align);
}

static void failing_free(void *ctx, void *ptr, size_t size)
{
	struct gm_alloc_failing *f = ctx;
	f->parent->free(f->parent->ctx, ptr, size);
}

void gm_alloc_failing_init(struct gm_alloc_failing *f,
			   const struct gm_allocator *parent)
{
	f->allocator.alloc = failing_alloc;
	f->allocator.free = failing_free;
	f->allocator.ctx = f;
	f->parent = parent ? parent : gm_alloc_default();
	__atomic_store_n(&f->calls, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&f->failures, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&f->rng, 0, __ATOMIC_RELAXED);
	f->fail_nth = 0;
	f->sticky = false;
	f->probability = 0.0;
}

void gm_alloc_failing_arm_nth(struct gm_alloc_failing *f, uint64_t nth,
			      bool sticky)
{
	__atomic_store_n(&f->calls, 0, __ATOMIC_RELAXED);
	f->fail_nth = nth;
	f->sticky = sticky;
}

void gm_alloc_failing_arm_random(struct gm_alloc_failing *f, double p,
				 uint64_t seed)
{
	__atomic_store_n(&f->rng, seed, __ATOMIC_RELAXED);
	f->probability = p;
}

void gm_alloc_failing_disarm(struct gm_alloc_failing *f)
{
	f->fail_nth = 0;
	f->sticky = false;
	f->probability = 0.0;
}
