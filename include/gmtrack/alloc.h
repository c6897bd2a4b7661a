/*
 * gmtrack/alloc.h — the allocator hook every structure takes at init.
 *
 * A structure never calls malloc() itself: every byte it holds comes from
 * the `struct gm_allocator` given at init, and goes back through the same
 * hook with its size. That makes memory use exactly countable (the counting
 * allocator below is what gmbench reports bytes/entry from) and lets tests
 * fail any chosen allocation (the failing allocator).
 *
 *    struct gm_allocator { alloc(ctx, size, align) ; free(ctx, ptr, size) ; ctx }
 *          ^                           ^
 *          | wraps                     | wraps
 *    gm_alloc_counting  (bytes, peak, calls)    gm_alloc_failing (Nth / p)
 *
 * Thread-safety: the hook may be called from the writer's thread and, for
 * structures in RCU mode, from gmtrack's RCU worker thread (gm_rcu_call:
 * deferred frees). The default, counting and failing allocators are safe for that.
 */
#ifndef GMTRACK_ALLOC_H
#define GMTRACK_ALLOC_H

#include <gmtrack/common.h>

#include <stdbool.h>

GM_BEGIN_DECLS

struct gm_allocator {
	/* Returns `size` bytes aligned to `align` (a power of two, >= 1), or
	 * NULL. `size` is never 0. */
	void *(*alloc)(void *ctx, size_t size, size_t align);
	/* Gives back memory from alloc; `size` is the size asked for. ptr is
	 * never NULL. */
	void (*free)(void *ctx, void *ptr, size_t size);
	void *ctx;
};

/*
 * gm_alloc_default — the allocator of malloc/aligned_alloc/free. Used when a
 * structure's init is given NULL. Cost O(1); never fails itself.
 */
GM_EXPORT const struct gm_allocator *gm_alloc_default(void);

/* Internal-looking but public helpers so that code holding only a
 * `const struct gm_allocator *` reads naturally. NULL means default. */
static inline void *gm_alloc_mem(const struct gm_allocator *a, size_t size,
				 size_t align)
{
	if (!a)
		a = gm_alloc_default();
	return a->alloc(a->ctx, size ? size : 1, align ? align : 1);
}

static inline void gm_alloc_release(const struct gm_allocator *a, void *ptr,
				    size_t size)
{
	if (!ptr)
		return;
	if (!a)
		a = gm_alloc_default();
	a->free(a->ctx, ptr, size ? size : 1);
}

/*
 * The counting allocator: forwards to `parent` and keeps exact counts.
 * The counters are updated with atomic operations (__atomic builtins, so the
 * struct is the same in C and C++), so deferred frees on another thread are
 * counted; read them through the functions below, not directly.
 *
 *     struct gm_alloc_counting c;
 *     gm_alloc_counting_init(&c, NULL);
 *     gm_rangemap_create(&map, 0, &c.allocator);
 *     ... gm_alloc_counting_bytes(&c) is the map's footprint ...
 */
struct gm_alloc_counting {
	struct gm_allocator allocator;    /* hand this to a structure */
	const struct gm_allocator *parent;
	size_t bytes;             /* in use now */
	size_t peak;              /* highest `bytes` seen */
	uint64_t allocs;          /* successful alloc calls */
	uint64_t frees;           /* free calls */
};

/* Sets up `c` over `parent` (NULL: default). O(1). Never allocates. */
GM_EXPORT void gm_alloc_counting_init(struct gm_alloc_counting *c,
				      const struct gm_allocator *parent);
/* Bytes currently allocated through `c`. O(1). Any thread. */
GM_EXPORT size_t gm_alloc_counting_bytes(const struct gm_alloc_counting *c);
/* Highest byte count seen since init or the last reset. O(1). */
GM_EXPORT size_t gm_alloc_counting_peak(const struct gm_alloc_counting *c);
/* Sets the peak to the current byte count. O(1). */
GM_EXPORT void gm_alloc_counting_reset_peak(struct gm_alloc_counting *c);

/*
 * The failing allocator: forwards to `parent` but fails chosen calls, for
 * out-of-memory tests.
 *  - fail_nth = N > 0: the Nth alloc call from now fails (only that one,
 *    unless `sticky`, in which case every call from the Nth on fails);
 *  - probability p in [0, 1]: each call fails with probability p, drawn
 *    from a PRNG seeded with `seed` (reproducible).
 * Both may be set; a call fails if either says so.
 */
struct gm_alloc_failing {
	struct gm_allocator allocator;   /* hand this to a structure */
	const struct gm_allocator *parent;
	uint64_t calls;          /* alloc calls seen */
	uint64_t failures;       /* alloc calls failed */
	uint64_t fail_nth;               /* 0: off */
	bool sticky;
	double probability;              /* 0: off */
	uint64_t rng;
};

/* Sets up `f` over `parent` (NULL: default) failing nothing. O(1). */
GM_EXPORT void gm_alloc_failing_init(struct gm_alloc_failing *f,
				     const struct gm_allocator *parent);
/* Fails the nth alloc call counted from now (1 = the next one); 0 disarms.
 * With sticky, every call from the nth on fails. O(1). */
GM_EXPORT void gm_alloc_failing_arm_nth(struct gm_alloc_failing *f,
					uint64_t nth, bool sticky);
/* Fails each call with probability p (0 disarms), reproducibly from seed. */
GM_EXPORT void gm_alloc_failing_arm_random(struct gm_alloc_failing *f,
					   double p, uint64_t seed);
/* Disarms both modes. O(1). */
GM_EXPORT void gm_alloc_failing_disarm(struct gm_alloc_failing *f);

GM_END_DECLS

#endif /* GMTRACK_ALLOC_H */
