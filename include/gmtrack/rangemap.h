/*
 * gmtrack/rangemap.h — a B-tree range map: uint64_t index -> uint64_t value
 * over inclusive ranges [first, last], with range stores in O(log n + k),
 * equal touching neighbours merged (unless GM_RANGEMAP_NOCOALESCE), and
 * lock-free readers under RCU (GM_RCU).
 *
 *   struct gm_rangemap *map;
 *   gm_rangemap_create(&map, GM_RCU, NULL);
 *   gm_rangemap_store(map, 0, (1ULL << 28) - 1, PRIVATE);    // 1 TiB guest
 *   gm_rangemap_store(map, 0x1000, 0x1fff, SHARED);          // convert
 *   uint64_t v, first, last;
 *   gm_rcu_read_lock();
 *   if (gm_rangemap_load(map, 0x1234, &v, &first, &last) == 0) ...
 *   gm_rcu_read_unlock();
 *   gm_rangemap_destroy(map);
 *
 * An index outside every stored range is in a gap. Every index of
 * [0, UINT64_MAX] is either in exactly one range or in exactly one gap.
 *
 * Concurrency: writers (create, destroy, store, insert, remove, update) are
 * serialized by the caller. With GM_RCU, readers (load, contains, next,
 * prev, iterators, find_gap) may run concurrently with the writer inside
 * gm_rcu_read_lock()/gm_rcu_read_unlock(); each index is seen with its old
 * or its new value, never with a gap that was never there. count, stats and
 * validate are writer-side (or quiescent) calls. Without GM_RCU the
 * map is for single-threaded use (or callers that lock readers too).
 */
#ifndef GMTRACK_RANGEMAP_H
#define GMTRACK_RANGEMAP_H

#include <gmtrack/alloc.h>
#include <gmtrack/common.h>

#include <stdbool.h>

GM_BEGIN_DECLS

/* create flags: GM_RCU (common.h), and */
#define GM_RANGEMAP_NOCOALESCE 0x100u /* keep touching equal ranges apart */

/* iter_init flags: GM_ITER_REVERSE (common.h), and */
#define GM_RANGEMAP_ITER_CLIP 0x100u  /* clip yielded bounds to [first, last] */
#define GM_RANGEMAP_ITER_GAPS 0x200u  /* yield gaps (value 0), not ranges */

/* update flags */
#define GM_RANGEMAP_UPDATE_GAPS 0x1u /* also call fn on the gaps */

/* What an update callback asks for its piece. */
enum gm_rangemap_action {
	GM_RANGEMAP_KEEP = 0,  /* leave the piece as it is */
	GM_RANGEMAP_SET = 1,   /* store *value over the piece */
	GM_RANGEMAP_CLEAR = 2, /* make the piece a gap */
};

/* Deepest tree an iterator can walk (far beyond 2^64 ranges' needs). */
#define GM_RANGEMAP_MAX_HEIGHT 32

/* A range, or (where the call says so) a gap. A stored range may hold any
 * value, 0 included; a gap is reported with value 0, and only calls that
 * can report gaps (GM_RANGEMAP_ITER_GAPS, update's pieces) say which. */
struct gm_range {
	uint64_t first, last; /* inclusive */
	uint64_t value;
};

/* The map: an opaque handle (src/rangemap.c). */
struct gm_rangemap;

struct gm_rangemap_stats {
	uint64_t ranges;  /* stored ranges (== gm_rangemap_count) */
	uint64_t gaps;    /* gaps (explicit gap slots) */
	uint64_t leaves, inner_nodes;
	uint64_t bytes;   /* bytes of live nodes (allocator sizes) */
	uint64_t height;  /* levels, 1 = a single leaf */
	/* RCU mode: bytes the map holds besides its live nodes — retired
	 * nodes kept for reuse (past or awaiting their grace period) and the
	 * pool that keeps them. Counted by the allocator; not in bytes. */
	uint64_t kept_bytes;
};

/* An iterator over the ranges (or gaps) overlapping [first, last], in
 * ascending order (descending with GM_ITER_REVERSE). Lives on the caller's
 * stack; fields are private. Valid only inside one RCU read section (RCU
 * mode) or while no writer runs (otherwise). */
struct gm_rangemap_iter {
	const struct gm_rangemap *map;
	uint64_t first, last;
	unsigned flags;
	int state;                /* 0 not started, 1 running, 2 done */
	unsigned depth;           /* inner levels on the path */
	unsigned slot;            /* slot in leaf */
	const void *leaf;
	const void *node[GM_RANGEMAP_MAX_HEIGHT];
	unsigned char pos[GM_RANGEMAP_MAX_HEIGHT];
};

/*
 * gm_rangemap_create — makes an empty map (one gap [0, UINT64_MAX]) in
 * *out. flags: GM_RCU, GM_RANGEMAP_NOCOALESCE. alloc NULL = default.
 * Cost O(1); allocates the handle and one small leaf. -EINVAL (out NULL,
 * unknown flags), -ENOMEM (nothing allocated, *out untouched).
 */
GM_EXPORT int gm_rangemap_create(struct gm_rangemap **out, unsigned flags,
				 const struct gm_allocator *alloc);

/*
 * gm_rangemap_destroy — frees every node and the handle. O(n). Writer-side;
 * in RCU mode it waits for a grace period and for all deferred frees (call
 * it from a registered thread, outside any read section, once no reader can
 * find the map), so the allocator may be torn down afterwards. NULL is a
 * no-op. Never fails.
 */
GM_EXPORT void gm_rangemap_destroy(struct gm_rangemap *map);

/*
 * gm_rangemap_store — maps every index of [first, last] to value,
 * overwriting what was there; unless NOCOALESCE, merges with touching
 * ranges of the same value. O(log n + k) for k ranges overwritten,
 * independent of last - first. Writer-side. -EINVAL if map is NULL or
 * first > last; -ENOMEM with the map unchanged.
 */
GM_EXPORT int gm_rangemap_store(struct gm_rangemap *map, uint64_t first,
				uint64_t last, uint64_t value);

/*
 * gm_rangemap_insert — like store, but -EEXIST (map unchanged) if any index
 * of [first, last] is already in a range. O(log n). Writer-side. -EINVAL,
 * -ENOMEM as store.
 */
GM_EXPORT int gm_rangemap_insert(struct gm_rangemap *map, uint64_t first,
				 uint64_t last, uint64_t value);

/*
 * gm_rangemap_remove — makes [first, last] a gap, cutting ranges at the
 * edges. O(log n + k). Writer-side. Returns 0 even if nothing was stored;
 * -EINVAL if map is NULL or first > last; -ENOMEM with the map unchanged.
 */
GM_EXPORT int gm_rangemap_remove(struct gm_rangemap *map, uint64_t first,
				uint64_t last);

/*
 * gm_rangemap_load — the range containing index: 0 with *value, *first,
 * *last set; or -ENOENT with *first, *last set to the gap's bounds (*value
 * untouched). value, first and last may be NULL; -EINVAL if map is NULL.
 * O(log n), never allocates. Reader: under gm_rcu_read_lock() in RCU mode.
 */
GM_EXPORT int gm_rangemap_load(const struct gm_rangemap *map, uint64_t index,
			       uint64_t *value, uint64_t *first,
			       uint64_t *last);

/*
 * gm_rangemap_contains — whether index lies in a stored range (any value):
 * gm_rangemap_load(map, index, NULL, NULL, NULL) == 0, on a shorter path
 * that reads only the slot's present bit. O(log n), never allocates.
 * false if map is NULL. Reader: under gm_rcu_read_lock() in RCU mode.
 */
GM_EXPORT bool gm_rangemap_contains(const struct gm_rangemap *map, uint64_t index);

/*
 * gm_rangemap_contains_many — gm_rangemap_contains for one index in each of
 * maps[0..n-1] at once: bit i of the result is set if index lies in a
 * stored range of maps[i]. n is at most 64 (maps past the 64th are not
 * looked at). The descents run side by side, level by level, so the maps'
 * cache misses and compares overlap: cheaper than n contains calls when
 * the caller needs most of the answers (hvm_select_ioreq_server asks each
 * server in turn). O(n log size), never allocates. 0 if maps or any of
 * maps[0..n-1] is NULL. Reader: under gm_rcu_read_lock() in RCU mode, for
 * every map.
 */
GM_EXPORT uint64_t gm_rangemap_contains_many(const struct gm_rangemap *const *maps,
					     unsigned n, uint64_t index);

/*
 * gm_rangemap_next — the first range with last >= index (the range holding
 * index, or the next one). gm_rangemap_prev — the last range with first <=
 * index. 0 and *range set, -ENOENT if there is none, -EINVAL if map or
 * range is NULL. O(log n). Reader (as load).
 */
GM_EXPORT int gm_rangemap_next(const struct gm_rangemap *map, uint64_t index,
			       struct gm_range *range);
GM_EXPORT int gm_rangemap_prev(const struct gm_rangemap *map, uint64_t index,
			       struct gm_range *range);

/*
 * gm_rangemap_iter_init — prepares it to yield the ranges (or with
 * GM_RANGEMAP_ITER_GAPS the gaps) that overlap [first, last], in ascending
 * order, or descending with GM_ITER_REVERSE; bounds are whole unless
 * GM_RANGEMAP_ITER_CLIP. O(1); the first iter_next seeks in O(log n), later
 * ones cost O(1) amortised. -EINVAL (it or map NULL, first > last, unknown
 * flags; the iterator then yields nothing). Reader: the whole iteration
 * inside one read section in RCU mode; no writer may run otherwise.
 */
GM_EXPORT int gm_rangemap_iter_init(struct gm_rangemap_iter *it,
				    const struct gm_rangemap *map,
				    uint64_t first, uint64_t last,
				    unsigned flags);
/* gm_rangemap_iter_next — the next range (or gap): 0 and *range set,
 * -ENOENT at the end, -EINVAL if it or range is NULL. O(1) amortised. */
GM_EXPORT int gm_rangemap_iter_next(struct gm_rangemap_iter *it,
				    struct gm_range *range);

/*
 * gm_rangemap_find_gap — the lowest first such that [first, first+size-1]
 * is all gap, lies inside [min, max], and first % align == 0 (align 0 or 1:
 * any; otherwise a power of two). O(log n) through the per-child max-gap
 * summaries of inner nodes (subtrees whose largest gap is too small are
 * skipped; with align > 1 a subtree may be visited and found wanting, at
 * most O(log n) extra nodes per such miss). 0 and *first set, -ENOSPC if
 * none, -EINVAL if map or first is NULL, size == 0, align not a power of
 * two, or min > max. Reader (as load); exact when called by the writer.
 */
GM_EXPORT int gm_rangemap_find_gap(const struct gm_rangemap *map,
				   uint64_t size, uint64_t align,
				   uint64_t min, uint64_t max,
				   uint64_t *first);

/*
 * Update callback: `piece` is one stored range (or, with
 * GM_RANGEMAP_UPDATE_GAPS, one gap) clipped to [first, last]; present says
 * which (a stored range may hold 0 too); *value holds its value (0 for a
 * gap). Return GM_RANGEMAP_KEEP,
 * GM_RANGEMAP_SET (after writing *value) or GM_RANGEMAP_CLEAR; a negative
 * errno aborts the update with the map unchanged.
 */
typedef int (*gm_rangemap_update_fn)(void *ctx, const struct gm_range *piece,
				     bool present, uint64_t *value);

/*
 * gm_rangemap_update — calls fn on each piece of [first, last] in ascending
 * order, then stores all answers in one change, splitting and merging as
 * needed. O(log n + k) for k pieces. Writer-side; fn must not touch the
 * map. -EINVAL if map or fn is NULL, first > last or flags unknown; fn's
 * negative return (or -EINVAL for a return that is no action), map
 * unchanged; -ENOMEM with the map unchanged (fn has been called, though).
 */
GM_EXPORT int gm_rangemap_update(struct gm_rangemap *map, uint64_t first,
				 uint64_t last, gm_rangemap_update_fn fn,
				 void *ctx, unsigned flags);

/* Number of stored ranges (0 for a NULL map). O(1). Writer-side. */
GM_EXPORT uint64_t gm_rangemap_count(const struct gm_rangemap *map);

/* gm_rangemap_stats — node, byte and range counts and the height into
 * *stats. O(n). Writer-side. 0, or -EINVAL if map or stats is NULL. */
GM_EXPORT int gm_rangemap_stats(const struct gm_rangemap *map,
				struct gm_rangemap_stats *stats);

/*
 * gm_rangemap_validate — checks every invariant (see src/rangemap.c); 0, or
 * -EINVAL with *reason (if reason is not NULL) naming the first broken one
 * ("NULL map" for a NULL map). O(n). Writer-side.
 */
GM_EXPORT int gm_rangemap_validate(const struct gm_rangemap *map,
				   const char **reason);

GM_END_DECLS

#endif /* GMTRACK_RANGEMAP_H */
