/*
 * gmtrack/pagemap.h — frame number -> pointer map, fast and small at every
 * population ("find the shadow page of this frame").
 *
 * Keys are any uint64_t (0 and UINT64_MAX included). Values are non-NULL
 * pointers: NULL cannot be stored (insert/store of NULL is -EINVAL), which
 * lets gm_pagemap_load() return NULL for "absent".
 *
 * Design (details and the node drawing in src/pagemap.c): a path-compressed
 * radix tree over the 64-bit key with 64-way levels whose branch nodes keep
 * only the children that exist (a 64-bit bitmap + a packed child array, so a
 * branch costs 16 + 8 * children bytes), and two kinds of leaf:
 *  - bitmap leaves for 64 neighbouring keys: 16 + 8 * entries bytes, so
 *    dense and clustered frames cost ~8.3 bytes per entry;
 *  - branches and bitmap leaves holding many children or keys are direct
 *    (a slot per chunk, 0 when absent), and take inserts and removals in
 *    place, without a copy;
 *  - sorted leaves of up to 256 (suffix, value) pairs for sparse keys, whose
 *    suffixes are 32-bit once the leaf spans <= 2^30 keys (12 B/entry).
 * Nothing needs its size guessed: the tree grows and shrinks a node at a
 * time, and a lookup costs at most 11 node visits (in practice 3-5).
 *
 * Concurrency: with GM_RCU, load, load_many, next, prev, iteration
 * and count may run under gm_rcu_read_lock() while ONE writer (serialized by
 * the caller) changes the map. Writers fill or clear a direct node's slot
 * with one release store, copy any other node whose shape changes and
 * publish the copy with one release store; replaced nodes are freed after
 * a grace period. A reader sees each key either before or after a
 * change, never a key missing that was present throughout.
 * Without the flag, the map is for one thread (or caller-locked use).
 */
#ifndef GMTRACK_PAGEMAP_H
#define GMTRACK_PAGEMAP_H

#include <gmtrack/alloc.h>
#include <gmtrack/common.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

GM_BEGIN_DECLS

/* create flags: GM_RCU (common.h). */

/* The map: an opaque handle (src/pagemap.c). */
struct gm_pagemap;

/* One entry, as lookups and iterators report it. */
struct gm_pagemap_entry {
	uint64_t key;
	void *value;
};

struct gm_pagemap_stats {
	uint64_t entries;
	uint64_t bytes;         /* bytes of live nodes (excludes the handle) */
	uint64_t branches;      /* 64-way branch nodes */
	uint64_t bitmap_leaves; /* leaves of 64 neighbouring keys (incl. full ones) */
	uint64_t sorted_leaves; /* leaves of sorted (suffix, value) pairs */
	uint64_t max_depth;     /* deepest leaf, in nodes from the root */
};

/*
 * gm_pagemap_create — makes an empty map in *out. flags: 0 or GM_RCU.
 * alloc: NULL for the default allocator. O(1); allocates the handle.
 * Returns 0, -EINVAL (out NULL, unknown flags) or -ENOMEM (nothing
 * allocated, *out untouched).
 */
GM_EXPORT int gm_pagemap_create(struct gm_pagemap **out, unsigned flags,
				const struct gm_allocator *alloc);

/*
 * gm_pagemap_destroy — frees every node and the handle (values are the
 * caller's: to free them first, gm_pagemap_walk). O(n). Writer context; in
 * RCU mode waits for a grace period and for every deferred free (call from
 * a registered thread, outside a read section, once no reader can find the
 * map). NULL is a no-op.
 */
GM_EXPORT void gm_pagemap_destroy(struct gm_pagemap *map);

/*
 * gm_pagemap_insert — adds key -> value. O(log64 n) plus, unless the key's
 * leaf or branch is direct, one copy of a node of at most 256 slots. Writer only (one at a time). Returns 0, -EEXIST if
 * key is present (map unchanged), -EINVAL for a NULL map or value, -ENOMEM
 * with the map unchanged.
 */
GM_EXPORT int gm_pagemap_insert(struct gm_pagemap *map, uint64_t key,
				void *value);

/*
 * gm_pagemap_store — sets key -> value, adding or replacing. *old (if old is
 * not NULL) receives the replaced value or NULL if key was absent. Replacing
 * is in place (one atomic store, never allocates). Writer only. Returns 0,
 * -EINVAL for a NULL map or value, -ENOMEM with the map unchanged.
 */
GM_EXPORT int gm_pagemap_store(struct gm_pagemap *map, uint64_t key,
			       void *value, void **old);

/*
 * gm_pagemap_load — the value of key, or NULL if absent (or map is NULL).
 * O(log64 n), no
 * allocation. RCU mode: call under gm_rcu_read_lock() (or as the writer);
 * the value is a snapshot, valid under the caller's own rules for values.
 */
GM_EXPORT void *gm_pagemap_load(const struct gm_pagemap *map, uint64_t key);

/*
 * gm_pagemap_load_many — values[i] = load(keys[i]) for i < n. Walks the keys
 * in batches of 64, one tree level at a time, prefetching each level's lines
 * for the whole batch before reading them, so their cache misses overlap
 * (maps under 2^17 entries, which sit in cache, use a plain loop of loads).
 * Returns how many keys were found, or -EINVAL (map NULL, keys or values
 * NULL with n > 0). O(n log64 n). Same rules as load (one read-side
 * critical section may cover the call); keys need not be sorted. Allocates
 * nothing.
 */
GM_EXPORT int64_t gm_pagemap_load_many(const struct gm_pagemap *map,
				       const uint64_t *keys, size_t n,
				       void **values);

/*
 * gm_pagemap_remove — removes key; *old (if not NULL) receives its value.
 * O(log64 n) plus one node copy. Writer only. Returns 0, -ENOENT if absent
 * (map unchanged), -EINVAL if map is NULL, -ENOMEM with the map unchanged (a node copy or, in RCU
 * mode, a retire batch could not be allocated).
 */
GM_EXPORT int gm_pagemap_remove(struct gm_pagemap *map, uint64_t key,
			       void **old);

/*
 * gm_pagemap_next — the first entry with key >= key into *out;
 * gm_pagemap_prev — the last entry with key <= key. 0, -ENOENT if there is
 * none, -EINVAL if map or out is NULL. O(log64 n). Reader rules as load.
 */
GM_EXPORT int gm_pagemap_next(const struct gm_pagemap *map, uint64_t key,
			      struct gm_pagemap_entry *out);
GM_EXPORT int gm_pagemap_prev(const struct gm_pagemap *map, uint64_t key,
			      struct gm_pagemap_entry *out);

/* Number of entries (0 for NULL). O(1). Any context (a snapshot in RCU
 * mode). */
GM_EXPORT uint64_t gm_pagemap_count(const struct gm_pagemap *map);

/*
 * Iteration over [first, last] in key order (descending with
 * GM_ITER_REVERSE):
 *
 *     struct gm_pagemap_iter it;
 *     struct gm_pagemap_entry e;
 *     gm_pagemap_iter_init(&it, map, first, last, 0);
 *     while (gm_pagemap_iter_next(&it, &e) == 0)
 *         ... may gm_pagemap_remove(map, e.key, NULL) here ...
 *
 * The iterator keeps only the next key to look for, so it stays valid when
 * the current entry (or any other) is removed or inserted: each step returns
 * the first entry after the previous key at that moment. O(log64 n) per
 * step. iter_init: -EINVAL (it or map NULL, first > last, unknown flags;
 * the iterator then yields nothing). iter_next: 0 and *out set, -ENOENT at
 * the end, -EINVAL on NULL. RCU: each step is a reader; the whole walk may
 * run in one read section or one per step.
 */
struct gm_pagemap_iter {
	const struct gm_pagemap *map;  /* private fields */
	uint64_t pos, end;
	bool reverse, done;
};
GM_EXPORT int gm_pagemap_iter_init(struct gm_pagemap_iter *it,
				   const struct gm_pagemap *map,
				   uint64_t first, uint64_t last,
				   unsigned flags);
GM_EXPORT int gm_pagemap_iter_next(struct gm_pagemap_iter *it,
				   struct gm_pagemap_entry *out);

/*
 * gm_pagemap_walk — calls fn(ctx, key, value) for each entry of [first,
 * last] in key order; fn returns 0 to go on, anything else to stop (that
 * value is returned). fn may remove the entry it is given (the walk is an
 * iterator, above). 0 at the end, -EINVAL (map or fn NULL, first > last).
 * O(k log64 n). Reader rules as iteration.
 */
typedef int (*gm_pagemap_walk_fn)(void *ctx, uint64_t key, void *value);
GM_EXPORT int gm_pagemap_walk(const struct gm_pagemap *map, uint64_t first,
			      uint64_t last, gm_pagemap_walk_fn fn, void *ctx);

/* gm_pagemap_stats — fills *stats. O(n) (walks the tree for max_depth).
 * Writer context. 0, or -EINVAL if map or stats is NULL. */
GM_EXPORT int gm_pagemap_stats(const struct gm_pagemap *map,
			       struct gm_pagemap_stats *stats);

/*
 * gm_pagemap_validate — checks every invariant of src/pagemap.c; returns 0,
 * or -EINVAL and sets *reason (if not NULL) to the one that failed. O(n).
 * Writer context (no concurrent writer).
 */
GM_EXPORT int gm_pagemap_validate(const struct gm_pagemap *map,
				  const char **reason);

GM_END_DECLS

#endif /* GMTRACK_PAGEMAP_H */
