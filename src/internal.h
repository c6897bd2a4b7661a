/*
 * src/internal.h — helpers shared by the library's .c files. Not installed.
 */
#ifndef GMTRACK_INTERNAL_H
#define GMTRACK_INTERNAL_H

#include <gmtrack/alloc.h>
#include <gmtrack/rcu.h>
#include <gmtrack/rmap.h>

#include <stdatomic.h>
#include <stdbool.h>

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GM_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define GM_TSAN 1
#endif


/* x86-64 with AVX2 and BMI2: found once at load time (src/cpu.c), so a
 * read path dispatches on one byte. Not public: tests clear it to run the
 * portable paths on an AVX2 machine. */
extern bool gm_cpu_avx2_;
/* x86-64 with POPCNT (pagemap's rank lookups), found the same way. */
extern bool gm_cpu_popcnt_;

/* Pushes node onto the lock-free stack at *top, linked through
 * node->link (release: the node's contents travel with it). How retired
 * memory comes back to a writer after its grace period: the deferred call
 * pushes, the writer takes the whole stack with one exchange (acquire). */
#define gm_stack_push(top, node, link)                                         \
	do {                                                                   \
		(node)->link = atomic_load_explicit((top), memory_order_relaxed); \
		while (!atomic_compare_exchange_weak_explicit(                 \
			(top), &(node)->link, (node), memory_order_release,     \
			memory_order_relaxed))                                 \
			;                                                      \
	} while (0)

#define GM_LIKELY(x) __builtin_expect(!!(x), 1)
#define GM_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Pointer publication: readers follow pointers with an acquire load; the
 * writer publishes fully-built nodes with a release store. */
#define gm_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define gm_store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define gm_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define gm_store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)

/*
 * Deferred reclamation ("retire lists").
 *
 * A writer that unlinks nodes readers may still hold retires them here.
 * Retired pointers are gathered into batches of GM_RETIRE_BATCH; a full
 * batch (or, at the next reserve, one holding GM_RETIRE_PENDING_MAX bytes)
 * goes to gm_rcu_call and is freed after a grace period. Retiring never
 * allocates: a write operation first calls gm_reclaim_reserve(r, n) for the
 * most nodes it can retire (which may allocate batches and may fail with
 * -ENOMEM before anything changed), then changes the structure, then
 * retires. Without RCU, retire frees at once and reserve is free.
 */
#define GM_RETIRE_BATCH 30
/* Retired bytes a map may hold back before its partly filled batch is
 * queued (at the next reserve): bounds the memory a quiet map keeps. */
#define GM_RETIRE_PENDING_MAX 2048

struct gm_retire_batch;

struct gm_reclaim {
	const struct gm_allocator *alloc;
	bool rcu;
	struct gm_retire_batch *cur;    /* being filled, may be NULL */
	struct gm_retire_batch *spare;  /* reserved empty batches */
	size_t room;                    /* retirements possible without alloc */
	size_t pending_bytes;           /* retired, not yet queued for free */
};

void gm_reclaim_init(struct gm_reclaim *r, const struct gm_allocator *a,
		     bool rcu);
/* Ensures n retirements can follow without allocating. -ENOMEM, nothing
 * changed, if a batch cannot be allocated. O(n / GM_RETIRE_BATCH). */
int gm_reclaim_reserve(struct gm_reclaim *r, size_t n);
/* Retires ptr (size bytes from r->alloc). Never fails after a reserve. */
void gm_reclaim_retire(struct gm_reclaim *r, void *ptr, size_t size);
/* Queues the partly filled batch for freeing after a grace period. */
void gm_reclaim_flush(struct gm_reclaim *r);
/* A call to run after a grace period, in order with the frees retired
 * around it: embed it in an object and retire it with gm_reclaim_defer. */
struct gm_deferred {
	void (*fn)(struct gm_deferred *d);
};
/* Runs d->fn(d) after a grace period (at once without RCU). Takes one
 * retirement slot: never fails after a reserve. fn runs on gmtrack's RCU
 * worker thread (gm_rcu_call) and must not block; it owns d (frees it if
 * it must). */
void gm_reclaim_defer(struct gm_reclaim *r, struct gm_deferred *d);
/* Flushes, waits for all deferred frees (gm_rcu_barrier), frees spares. */
void gm_reclaim_destroy(struct gm_reclaim *r);

/* ---- what one module needs of another's opaque handle ---------------- */
struct gm_rangemap;
struct gm_pagemap;
/* Bytes of a gm_rangemap handle (allocated from its allocator). */
size_t gm_rangemap_handle_bytes_(void);
/* Bytes of a gm_pagemap's live nodes plus its handle. O(1). */
size_t gm_pagemap_bytes_(const struct gm_pagemap *map);

/* The rmap cache handle, embedded by space.c's frees (which must not
 * allocate): set up and torn down in place. */
struct gm_rmap_cache {
	const struct gm_allocator *alloc;
	void *blocks;          /* free blocks, linked through their first word */
	size_t nblocks;
	void *small[GM_RMAP_SMALL_LINES + 1];      /* free tables by line count */
	uint32_t nsmall[GM_RMAP_SMALL_LINES + 1];
	uint32_t small_want;   /* bit k: the next topup stocks k-line tables */
	void *dir;             /* spare table of > 16 lines, or NULL */
	size_t dir_bytes;      /* its size */
	size_t dir_want;       /* size the next topup should provide (0: none) */
};

void gm_rmap_cache_init_(struct gm_rmap_cache *c, const struct gm_allocator *a);
void gm_rmap_cache_fini_(struct gm_rmap_cache *c);

#endif /* GMTRACK_INTERNAL_H */
