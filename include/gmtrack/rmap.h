/*
 * gmtrack/rmap.h — reverse maps: for each guest page, the set of shadow
 * PTEs (or any pointers) that map it, in one machine word per page.
 *
 *   struct gm_rmap_head heads[npages];     calloc'ed: all-zero = empty
 *
 *   head word (2 tag bits, entries must be 4-byte aligned):
 *     0                    empty
 *     ptr            | 00  one entry, stored inline, no allocation
 *     small block    | 01  2..15 entries in one 128-byte block
 *     hash directory | 10  16+ entries: linear hash of 128-byte blocks,
 *                          O(1) expected add, remove and membership
 *
 * Memory: 8 bytes per page mapped at most once; 128 bytes for 2..15
 * entries; long chains cost ~128/(15 x load) bytes per entry plus a
 * directory of 8 bytes per bucket (see src/rmap.c for the layout).
 *
 * Allocation follows KVM's rule: add never allocates. Blocks come from a
 * `struct gm_rmap_cache` the caller fills with gm_rmap_cache_topup()
 * OUTSIDE its lock; remove gives blocks back to the cache.
 *
 * Duplicates: the map is a SET. Adding a pointer already present returns
 * -EEXIST (the check is a scan of <= 15 entries, or one hash bucket).
 *
 * Concurrency: every function that takes a head must be called with the
 * caller's lock for that head held (reads included). There are no RCU or
 * lock-free readers. A cache is owned by one thread at a time.
 */
#ifndef GMTRACK_RMAP_H
#define GMTRACK_RMAP_H

#include <gmtrack/alloc.h>

#include <stdbool.h>

GM_BEGIN_DECLS

/* Low bits of an entry pointer the head uses as a tag; entries must have
 * these bits clear (4-byte alignment) or add returns -EINVAL. */
#define GM_RMAP_TAG_BITS 2
/* Size of every block the map takes from its cache. */
#define GM_RMAP_BLOCK_SIZE 128
/* Most blocks one gm_rmap_add can take from the cache. Top up to at least
 * this before each add (gm_rmap_cache_topup(cache, GM_RMAP_ADD_BLOCKS)). */
#define GM_RMAP_ADD_BLOCKS 2
/* Blocks a cache keeps when remove gives blocks back; more are freed. */
#define GM_RMAP_CACHE_KEEP 64

/* One machine word. All-zero = empty. Never touch `word` directly. */
struct gm_rmap_head {
	uintptr_t word;
};

/*
 * The object cache add takes memory from. Fields are private.
 * Besides 128-byte blocks it may hold one "directory" (a larger array a
 * long chain's hash table grows into once each time its bucket count
 * doubles past 13); an add on a long chain leaves a hint in dir_want so
 * that the next topup fetches the directory before it is needed.
 */
struct gm_rmap_cache {
	const struct gm_allocator *alloc;
	void *blocks;          /* free blocks, linked through their first word */
	size_t nblocks;
	void *dir;             /* spare directory or NULL */
	size_t dir_bytes;      /* its size */
	size_t dir_want;       /* size the next topup should provide (0: none) */
};

/*
 * gm_rmap_cache_init — an empty cache over `alloc` (NULL: default).
 * O(1). Never allocates. Returns 0, or -EINVAL if cache is NULL.
 */
GM_EXPORT int gm_rmap_cache_init(struct gm_rmap_cache *cache,
				 const struct gm_allocator *alloc);

/*
 * gm_rmap_cache_topup — makes the cache hold at least n blocks, and the
 * directory a previous add asked for (dir_want). Call it outside the lock
 * that protects the heads, before adds (n >= GM_RMAP_ADD_BLOCKS).
 * Cost: O(blocks allocated). Allocates.
 * Out of memory: -ENOMEM, and the cache is exactly as before the call
 * (what this call allocated is released).
 */
GM_EXPORT int gm_rmap_cache_topup(struct gm_rmap_cache *cache, size_t n);

/* gm_rmap_cache_bytes — bytes the cache holds (blocks + spare directory).
 * O(1). */
GM_EXPORT size_t gm_rmap_cache_bytes(const struct gm_rmap_cache *cache);

/* gm_rmap_cache_destroy — frees everything the cache holds. O(blocks).
 * The cache may be init'ed again afterwards. */
GM_EXPORT void gm_rmap_cache_destroy(struct gm_rmap_cache *cache);

/*
 * gm_rmap_add — adds ptr to the set at head.
 * Cost: O(1) expected, whatever the chain length (membership check
 * included); a long chain's add may also split one hash bucket (<= ~30
 * entries moved) and, once per doubling of its buckets, copy its directory.
 * Lock: caller's lock for head. Never allocates.
 * Returns 0; -EINVAL if head/cache is NULL, ptr is NULL or not 4-byte
 * aligned; -EEXIST if ptr is already there; -ENOMEM if the cache holds
 * fewer blocks than this add may need (at most GM_RMAP_ADD_BLOCKS) or
 * this add must grow a long chain's directory and the cache has none of
 * the size it asked for (cache->dir_want) — top up and retry. On any
 * error nothing changed (-ENOMEM may only record dir_want in the cache).
 */
GM_EXPORT int gm_rmap_add(struct gm_rmap_head *head, void *ptr,
			  struct gm_rmap_cache *cache);

/*
 * gm_rmap_remove — removes ptr from the set at head.
 * Cost: O(1) expected, whatever the chain length (a long chain may merge
 * one bucket pair, or turn back into a small block when <= 7 remain).
 * Lock: caller's lock for head. Never allocates; freed blocks go back to
 * the cache (beyond GM_RMAP_CACHE_KEEP, to the allocator).
 * Returns 0; -ENOENT if absent; -EINVAL on NULL head/cache/ptr or a
 * misaligned ptr. On error nothing changed.
 * Invalidates iterators on head (use gm_rmap_iter_remove while iterating).
 */
GM_EXPORT int gm_rmap_remove(struct gm_rmap_head *head, void *ptr,
			     struct gm_rmap_cache *cache);

/* gm_rmap_contains — true if ptr is in the set. O(1) expected.
 * Lock: caller's lock for head. */
GM_EXPORT bool gm_rmap_contains(const struct gm_rmap_head *head,
				const void *ptr);

/* gm_rmap_count — number of entries. O(1). Lock: caller's lock for head. */
GM_EXPORT size_t gm_rmap_count(const struct gm_rmap_head *head);

/*
 * Iteration, in no particular order, every entry exactly once:
 *
 *   struct gm_rmap_iter it;
 *   for (void *p = gm_rmap_iter_first(&it, head); p; p = gm_rmap_iter_next(&it))
 *       if (want_gone(p))
 *           gm_rmap_iter_remove(&it, cache);   // p removed, iteration goes on
 *
 * Removing the current entry with gm_rmap_iter_remove keeps the iterator
 * valid; any other change to head (add, gm_rmap_remove) invalidates it.
 * Cost: O(1) amortized per entry (O(buckets) per walk of a long chain).
 * Lock: caller's lock for head, held across the whole walk.
 */
struct gm_rmap_iter {
	struct gm_rmap_head *head;  /* private fields below */
	void *cur;
	void *blk;
	void *next_blk;
	uint32_t bucket;
	uint32_t idx;
	int form;
};

/* First entry, or NULL if empty. O(1) (O(buckets) worst case). */
GM_EXPORT void *gm_rmap_iter_first(struct gm_rmap_iter *it,
				   struct gm_rmap_head *head);
/* Next entry, or NULL at the end. */
GM_EXPORT void *gm_rmap_iter_next(struct gm_rmap_iter *it);
/*
 * gm_rmap_iter_remove — removes the entry the iterator last returned.
 * O(1). Never allocates; freed blocks go to the cache. Unlike
 * gm_rmap_remove it does not shrink a long chain's table (the next
 * gm_rmap_remove does), except that an emptied head frees everything.
 * Returns 0, or -EINVAL if there is no current entry (never returned one,
 * already removed, or at the end).
 */
GM_EXPORT int gm_rmap_iter_remove(struct gm_rmap_iter *it,
				  struct gm_rmap_cache *cache);

/*
 * gm_rmap_clear — calls cb(ctx, ptr) for every entry (cb may be NULL),
 * then empties head, giving its blocks to the cache. O(entries + buckets).
 * cb must not touch head. Lock: caller's lock for head. Never fails.
 */
GM_EXPORT void gm_rmap_clear(struct gm_rmap_head *head,
			     struct gm_rmap_cache *cache,
			     void (*cb)(void *ctx, void *ptr), void *ctx);

enum gm_rmap_form {
	GM_RMAP_EMPTY = 0,
	GM_RMAP_INLINE = 1,
	GM_RMAP_SMALL = 2,
	GM_RMAP_HASH = 3,
};

struct gm_rmap_stats {
	size_t count;        /* entries */
	int form;            /* enum gm_rmap_form */
	size_t blocks;       /* 128-byte blocks (hash directory not included) */
	size_t buckets;      /* hash form: buckets in use */
	size_t dir_bytes;    /* hash form: directory size */
	size_t bytes;        /* heap bytes this head owns (head word excluded) */
	size_t max_chain;    /* hash form: most blocks in one bucket */
};

/* gm_rmap_stats — fills *st. O(1) for empty/inline/small, O(blocks) for
 * the hash form. Lock: caller's lock for head. */
GM_EXPORT void gm_rmap_stats(const struct gm_rmap_head *head,
			     struct gm_rmap_stats *st);

/*
 * gm_rmap_validate — checks every invariant of head (see src/rmap.c).
 * Returns 0, or -EINVAL with *reason (if reason) naming the one that
 * failed. O(entries + buckets). Lock: caller's lock for head.
 */
GM_EXPORT int gm_rmap_validate(const struct gm_rmap_head *head,
			       const char **reason);

GM_END_DECLS

#endif /* GMTRACK_RMAP_H */
