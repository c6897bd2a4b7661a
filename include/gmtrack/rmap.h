/*
 * gmtrack/rmap.h — reverse maps: for each guest page, the multiset of
 * shadow PTEs (or any pointers) that map it, in one machine word per page.
 *
 *   struct gm_rmap_head heads[npages];     calloc'ed: all-zero = empty
 *
 *   head word (2 tag bits, entries must be 4-byte aligned):
 *     0                  empty
 *     ptr          | 00  one entry, stored inline, no allocation
 *     table        | 01  2+ entries in a table of 64-byte lines (8 slots
 *     (or 1x)            each, one slot of line 0 is the header):
 *                        up to 9 lines (71 entries) unhashed (tag 1x):
 *                        entries packed, add appends (usually one store
 *                        into the table and one into the head word),
 *                        remove scans at most 9 lines; 10+ lines (tag
 *                        01): a bucketized cuckoo hash, every pointer in
 *                        one slot of one of two lines its hash picks, so
 *                        add, remove and membership touch at most 3 cache
 *                        lines whatever the chain length
 *
 * Memory: 8 bytes per page mapped at most once; 64 bytes for 2..7
 * entries; then tables of 2, 4, 9 lines (filled up to all slots),
 * 10, ..., 16 lines and +1/8 beyond, filled to <= 15/16, so a long chain
 * costs 8.5..9.6 bytes per entry (see src/rmap.c).
 *
 * Allocation follows KVM's rule: add never allocates. One-line tables
 * come from a `struct gm_rmap_cache` the caller fills with
 * gm_rmap_cache_topup() OUTSIDE its lock; a table that must grow takes a
 * table of the next size from the cache, whose size an add asks for in
 * advance (when its table is almost full) so the next topup stocks it.
 * With a topup(cache, n >= 1) before every add, an add fails with -ENOMEM
 * only when the table it must grow into is not in the cache: another head
 * took the one stocked (the cache keeps max(1, min(n, 16)) tables of each
 * size up to 16 lines, but ONE spare larger table, so heads past 16 lines
 * growing in the same stretch of adds compete for it), or a table grew
 * early after an unlucky hash placement. Top up and retry; the failed add
 * asked for the size, so the retry finds it. A head filled alone with a
 * topup before each add never fails while unhashed (up to 71 entries).
 * remove gives memory back to the cache.
 *
 * Duplicates: the map is a MULTISET (as KVM's rmap: adding a mapping
 * twice is the caller's bug, and looking for it would cost every add a
 * search). gm_rmap_add never looks for ptr in an unhashed table; remove
 * takes out one copy; count, iteration and clear see every copy. Copies
 * are limited where the table is hashed (stats form GM_RMAP_HASH: heads
 * that grew past GM_RMAP_LINEAR_MAX = 71 entries and have not shrunk
 * back), which keeps one slot per pointer with its copies in the slot's
 * tag bits:
 *   - an add into a hashed table that would make a pointer's
 *     GM_RMAP_MAX_COPIES + 1 (5th) copy fails with -ENOSPC;
 *   - the add that would turn a full unhashed table (71 entries) into a
 *     hashed one fails with -ENOSPC (whatever pointer it adds) while some
 *     pointer would then have more than GM_RMAP_MAX_COPIES copies;
 *     removing copies lets the head grow again.
 * Unhashed tables take any number of copies. On -ENOSPC nothing changed.
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
/* Size of the one-line tables (2..7 entries) the cache keeps a stock of. */
#define GM_RMAP_BLOCK_SIZE 64
/* Blocks one gm_rmap_add can take from the cache. Top up to at least this
 * before each add (gm_rmap_cache_topup(cache, GM_RMAP_ADD_BLOCKS)). */
#define GM_RMAP_ADD_BLOCKS 1
/* Copies of one pointer a hashed table (a head past 71 entries) holds at
 * most; see "Duplicates" above. */
#define GM_RMAP_MAX_COPIES 4
/* Most entries an unhashed table holds (9 lines of 8 slots, one the
 * header); the add that takes a head past it makes the table hashed. */
#define GM_RMAP_LINEAR_MAX 71
/* Blocks a cache keeps when remove gives blocks back; more are freed. */
#define GM_RMAP_CACHE_KEEP 64

/* One machine word. All-zero = empty. Never touch `word` directly. */
struct gm_rmap_head {
	uintptr_t word;
};

/* Tables of 2..GM_RMAP_SMALL_LINES lines are kept in the cache by size,
 * at most GM_RMAP_SMALL_KEEP of each. */
#define GM_RMAP_SMALL_LINES 16
#define GM_RMAP_SMALL_KEEP 16

/*
 * The object cache add takes memory from: an opaque handle (src/rmap.c),
 * one per thread that adds (a vCPU), made with gm_rmap_cache_create.
 * It holds 64-byte blocks (one-line tables), a stock of tables of each
 * small size (2..16 lines) and one spare larger table. An add that took a
 * small table, or that will soon need a table of a size the cache lacks
 * (the table is almost full), or a remove that would shrink into one,
 * marks that size wanted, and the next topup stocks it.
 */
struct gm_rmap_cache;

/* Most blocks one topup may be asked for (a larger n is -EINVAL). */
#define GM_RMAP_TOPUP_MAX 65536

/*
 * gm_rmap_cache_create — an empty cache over `alloc` (NULL: default) in
 * *out. flags: 0. O(1); allocates the handle. Returns 0, -EINVAL (out NULL,
 * flags not 0) or -ENOMEM (nothing allocated).
 */
GM_EXPORT int gm_rmap_cache_create(struct gm_rmap_cache **out, unsigned flags,
				   const struct gm_allocator *alloc);

/*
 * gm_rmap_cache_topup — makes the cache hold at least n blocks, at least
 * max(1, min(n, GM_RMAP_SMALL_KEEP)) tables of every small size a
 * previous add or remove took or asked for (small_want), and the spare
 * large table one asked for (dir_want; an old spare of another size is
 * freed). Call it outside the lock that protects the heads, before every
 * add (n >= GM_RMAP_ADD_BLOCKS).
 * Cost: O(1) when nothing is missing, else O(tables allocated). Allocates.
 * -EINVAL if cache is NULL or n > GM_RMAP_TOPUP_MAX (nothing allocated).
 * Out of memory: -ENOMEM, and the cache is exactly as before the call
 * (what this call allocated is released).
 */
GM_EXPORT int gm_rmap_cache_topup(struct gm_rmap_cache *cache, size_t n);

/* gm_rmap_cache_bytes — bytes the cache holds: its handle, blocks and
 * tables; 0 for NULL. O(1). */
GM_EXPORT size_t gm_rmap_cache_bytes(const struct gm_rmap_cache *cache);

/* gm_rmap_cache_destroy — frees everything the cache holds and the handle.
 * O(blocks). NULL is a no-op. */
GM_EXPORT void gm_rmap_cache_destroy(struct gm_rmap_cache *cache);

/*
 * gm_rmap_add — adds one copy of ptr to the multiset at head (it may be
 * there already: see "Duplicates" above).
 * Cost: O(1): an unhashed table (<= 71 entries): one store into line 0
 * (every 8th add: the header read and line 0's 7 entries moved into the
 * next line), no search; a hashed one: two candidate lines (plus line
 * 0's header), or rarely a cuckoo move of one or two entries. A full
 * table is copied (unhashed) or rebuilt one size up (O(count), amortized
 * O(1)).
 * Lock: caller's lock for head. Never allocates.
 * Returns 0; -EINVAL if head/cache is NULL, ptr is NULL or not 4-byte
 * aligned; -ENOSPC past 2^31 entries or past the copy limit
 * (GM_RMAP_MAX_COPIES, see "Duplicates");
 * -ENOMEM if the cache lacks the block (2nd entry) or the spare table of
 * the size this add must grow to (recorded in cache->dir_want) — top up
 * and retry. On any error nothing changed (-ENOMEM may only record
 * dir_want in the cache).
 */
GM_EXPORT int gm_rmap_add(struct gm_rmap_head *head, void *ptr,
			  struct gm_rmap_cache *cache);

/*
 * gm_rmap_remove — removes one copy of ptr from the multiset at head.
 * Cost: O(1): two candidate lines, or a scan of <= 9 lines (unhashed
 * tables, all requested at once; the last entry moves into the hole).
 * A table left with one entry goes back
 * inline (O(table)); one left under ~5/8 full is rebuilt one size down
 * (O(count), amortized O(1)) if the cache holds a table of that size —
 * else it asks for one in dir_want and stays as it is for now.
 * Lock: caller's lock for head. Never allocates; freed memory goes back
 * to the cache (beyond GM_RMAP_CACHE_KEEP blocks, to the allocator).
 * Returns 0; -ENOENT if absent; -EINVAL on NULL head/cache/ptr or a
 * misaligned ptr. On error nothing changed.
 * Invalidates iterators on head (use gm_rmap_iter_remove while iterating).
 */
GM_EXPORT int gm_rmap_remove(struct gm_rmap_head *head, void *ptr,
			     struct gm_rmap_cache *cache);

/* gm_rmap_contains — true if ptr is there (once or more); false if head
 * is NULL. O(1). Lock: caller's lock for head. */
GM_EXPORT bool gm_rmap_contains(const struct gm_rmap_head *head,
				const void *ptr);

/* gm_rmap_count — number of entries, copies included (0 for NULL). O(1).
 * Lock: caller's lock for head. */
GM_EXPORT uint64_t gm_rmap_count(const struct gm_rmap_head *head);

/*
 * Iteration, in no particular order (a multiset has none, so there is no
 * range and no GM_ITER_REVERSE), every entry exactly once (a pointer added
 * n times is returned n times):
 *
 *   struct gm_rmap_iter it;
 *   void *p;
 *   gm_rmap_iter_init(&it, head);
 *   while (gm_rmap_iter_next(&it, &p) == 0)
 *       if (want_gone(p))
 *           gm_rmap_iter_remove(&it, cache);   // p removed, iteration goes on
 *
 * Removing the current entry with gm_rmap_iter_remove keeps the iterator
 * valid; any other change to head (add, gm_rmap_remove) invalidates it.
 * Cost: O(1) amortized per entry (O(table lines) per walk).
 * Lock: caller's lock for head, held across the whole walk.
 */
struct gm_rmap_iter {
	struct gm_rmap_head *head;  /* private fields below */
	void *cur;
	void *tab;
	uint32_t line;
	uint32_t idx;
	uint32_t resume;
	int form;
	int fresh;
};

/* gm_rmap_iter_init — starts a walk of head. O(1) (O(buckets) worst
 * case). 0, or -EINVAL if it or head is NULL (the iterator then yields
 * nothing). */
GM_EXPORT int gm_rmap_iter_init(struct gm_rmap_iter *it,
				struct gm_rmap_head *head);
/* gm_rmap_iter_next — the next entry into *ptr: 0, -ENOENT at the end,
 * -EINVAL if it or ptr is NULL. O(1) amortized. */
GM_EXPORT int gm_rmap_iter_next(struct gm_rmap_iter *it, void **ptr);
/*
 * gm_rmap_iter_remove — removes the entry the iterator last returned.
 * O(1). Never allocates. The walk goes on unaffected: an unhashed table
 * moves its last entry (one the walk has passed) into the hole. Unlike gm_rmap_remove it never shrinks the table or
 * turns it back inline (the next gm_rmap_remove does), except that an
 * emptied head frees its table.
 * Returns 0, or -EINVAL if it or cache is NULL or there is no current entry
 * (none returned yet, already removed, or at the end).
 */
GM_EXPORT int gm_rmap_iter_remove(struct gm_rmap_iter *it,
				  struct gm_rmap_cache *cache);

/*
 * gm_rmap_clear — calls cb(ctx, ptr) for every entry (cb may be NULL),
 * then empties head, giving its blocks to the cache. O(entries + buckets).
 * cb must not touch head. Lock: caller's lock for head. Never fails; a NULL
 * head or cache is a no-op.
 */
GM_EXPORT void gm_rmap_clear(struct gm_rmap_head *head,
			     struct gm_rmap_cache *cache,
			     void (*cb)(void *ctx, void *ptr), void *ctx);

enum gm_rmap_form {
	GM_RMAP_EMPTY = 0,
	GM_RMAP_INLINE = 1,
	GM_RMAP_SMALL = 2,   /* a one-line table: 2..7 entries */
	GM_RMAP_HASH = 3,    /* a hashed table (10+ lines) */
	GM_RMAP_LIST = 4,    /* an unhashed table of 2, 4 or 9 lines */
};

struct gm_rmap_stats {
	uint64_t count;      /* entries */
	int form;            /* enum gm_rmap_form */
	uint64_t lines;      /* table lines (64 B each), 0 if none */
	uint64_t slots;      /* entry slots in the table (8 x lines - 1,
				hashed: - 2: a two-slot header) */
	uint64_t bytes;      /* heap bytes this head owns (head word excluded) */
	uint64_t second;     /* entries in their second-choice line */
};

/* gm_rmap_stats — fills *st. O(table lines). Lock: caller's lock for
 * head. 0, or -EINVAL if head or st is NULL. */
GM_EXPORT int gm_rmap_stats(const struct gm_rmap_head *head,
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
