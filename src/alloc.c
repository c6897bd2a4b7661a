/*
 * src/alloc.c — default, counting and failing allocators (see alloc.h).
 */
#include <gmtrack/alloc.h>

#include <stdlib.h>

static void *default_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx;
	if (align <= _Alignof(max_align_t))
		return malloc(size);
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
	size_t now = atomic_fetch_add_explicit(&c->bytes, size,
					       memory_order_relaxed) + size;
	size_t peak = atomic_load_explicit(&c->peak, memory_order_relaxed);
	while (now > peak &&
	       !atomic_compare_exchange_weak_explicit(&c->peak, &peak, now,
						      memory_order_relaxed,
						      memory_order_relaxed))
		;
	atomic_fetch_add_explicit(&c->allocs, 1, memory_order_relaxed);
	return p;
}

static void counting_free(void *ctx, void *ptr, size_t size)
{
	struct gm_alloc_counting *c = ctx;
	atomic_fetch_sub_explicit(&c->bytes, size, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->frees, 1, memory_order_relaxed);
	c->parent->free(c->parent->ctx, ptr, size);
}

void gm_alloc_counting_init(struct gm_alloc_counting *c,
			    const struct gm_allocator *parent)
{
	c->allocator.alloc = counting_alloc;
	c->allocator.free = counting_free;
	c->allocator.ctx = c;
	c->parent = parent ? parent : gm_alloc_default();
	atomic_init(&c->bytes, 0);
	atomic_init(&c->peak, 0);
	atomic_init(&c->allocs, 0);
	atomic_init(&c->frees, 0);
}

size_t gm_alloc_counting_bytes(const struct gm_alloc_counting *c)
{
	return atomic_load_explicit(&c->bytes, memory_order_relaxed);
}

size_t gm_alloc_counting_peak(const struct gm_alloc_counting *c)
{
	return atomic_load_explicit(&c->peak, memory_order_relaxed);
}

void gm_alloc_counting_reset_peak(struct gm_alloc_counting *c)
{
	atomic_store_explicit(&c->peak, gm_alloc_counting_bytes(c),
			      memory_order_relaxed);
}

/* ---- failing ----------------------------------------------------------- */

/* splitmix64 step on an atomic state, so concurrent callers stay sane. */
static uint64_t failing_next_random(struct gm_alloc_failing *f)
{
	uint64_t z = atomic_fetch_add_explicit(&f->rng, 0x9e3779b97f4a7c15ULL,
					       memory_order_relaxed) +
		     0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static bool failing_should_fail(struct gm_alloc_failing *f)
{
	uint64_t call = atomic_fetch_add_explicit(&f->calls, 1,
						  memory_order_relaxed) + 1;
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
		atomic_fetch_add_explicit(&f->failures, 1, memory_order_relaxed);
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
	atomic_init(&f->calls, 0);
	atomic_init(&f->failures, 0);
	atomic_init(&f->rng, 0);
	f->fail_nth = 0;
	f->sticky = false;
	f->probability = 0.0;
}

void gm_alloc_failing_arm_nth(struct gm_alloc_failing *f, uint64_t nth,
			      bool sticky)
{
	atomic_store_explicit(&f->calls, 0, memory_order_relaxed);
	f->fail_nth = nth;
	f->sticky = sticky;
}

void gm_alloc_failing_arm_random(struct gm_alloc_failing *f, double p,
				 uint64_t seed)
{
	atomic_store_explicit(&f->rng, seed, memory_order_relaxed);
	f->probability = p;
}

void gm_alloc_failing_disarm(struct gm_alloc_failing *f)
{
	f->fail_nth = 0;
	f->sticky = false;
	f->probability = 0.0;
}
