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
 *  - sorted leaves of up to 256 (suffix, value) pairs for sparse keys, whose
 *    suffixes are 32-bit once the leaf spans <= 2^30 keys (12 B/entry).
 * Nothing needs its size guessed: the tree grows and shrinks a node at a
 * time, and a lookup costs at most 11 node visits (in practice 3-5).
 *
 * Concurrency: with GM_PAGEMAP_RCU, load, load_many, next, prev, iteration
 * and count may run under gm_rcu_read_lock() while ONE writer (serialized by
 * the caller) changes the map. Writers copy a node on every change of its
 * shape and publish it with one release store; replaced nodes are freed
 * after a grace period. A reader sees each key either before or after a
 * change, never a key missing that was present throughout.
 * Without the flag, the map is for one thread (or caller-locked use).
 */
#ifndef GMTRACK_PAGEMAP_H
#define GMTRACK_PAGEMAP_H

#include <gmtrack/alloc.h>
#include <gmtrack/common.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

GM_BEGIN_DECLS

/* init flag: readers run under RCU, replaced nodes wait for a grace period */
#define GM_PAGEMAP_RCU 1u

/* Private retire-list state (see src/internal.h); laid out here so a map can
 * be embedded by value. Do not touch. */
struct gm_pagemap_reclaim_ {
	const void *alloc_;
	bool rcu_;
	void *cur_, *spare_;
	size_t room_, pending_;
};

struct gm_pagemap {
	_Atomic uintptr_t root;       /* tagged node pointer, 0 when empty */
	_Atomic uint64_t count;       /* entries */
	const struct gm_allocator *alloc;
	unsigned flags;
	size_t bytes;                 /* bytes of live nodes */
	size_t nodes[5];              /* live nodes by kind (index = tag) */
	struct gm_pagemap_reclaim_ reclaim;
};

struct gm_pagemap_stats {
	uint64_t entries;
	size_t bytes;           /* bytes of live nodes (excludes struct gm_pagemap) */
	size_t branches;        /* 64-way branch nodes */
	size_t bitmap_leaves;   /* leaves of 64 neighbouring keys (incl. full ones) */
	size_t sorted_leaves;   /* leaves of sorted (suffix, value) pairs */
	unsigned max_depth;     /* deepest leaf, in nodes from the root */
};

/*
 * gm_pagemap_init — sets up an empty map. flags: 0 or GM_PAGEMAP_RCU.
 * alloc: NULL for the default allocator. O(1). Never allocates.
 * Returns 0, or -EINVAL for a NULL map or unknown flags.
 */
GM_EXPORT int gm_pagemap_init(struct gm_pagemap *map, unsigned flags,
			      const struct gm_allocator *alloc);

/*
 * gm_pagemap_destroy — frees every node; if fn is not NULL, first calls
 * fn(key, value, ctx) once per entry in key order (the "free all shadow
 * pages" path). O(n). Writer context; in RCU mode waits for a grace period
 * and for every deferred free (call from a registered thread, outside a read
 * section, once no reader can find the map). The map is empty afterwards
 * and may be reused after gm_pagemap_init.
 */
GM_EXPORT void gm_pagemap_destroy(struct gm_pagemap *map,
				  void (*fn)(uint64_t key, void *value, void *ctx),
				  void *ctx);

/*
 * gm_pagemap_insert — adds key -> value. O(log64 n) plus one copy of a node
 * of at most 256 slots. Writer only (one at a time). Returns 0, -EEXIST if
 * key is present (map unchanged), -EINVAL for a NULL value, -ENOMEM with the
 * map unchanged.
 */
GM_EXPORT int gm_pagemap_insert(struct gm_pagemap *map, uint64_t key,
				void *value);

/*
 * gm_pagemap_store — sets key -> value, adding or replacing. *old (if old is
 * not NULL) receives the replaced value or NULL if key was absent. Replacing
 * is in place (one atomic store, never allocates). Writer only. Returns 0,
 * -EINVAL for a NULL value, -ENOMEM with the map unchanged.
 */
GM_EXPORT int gm_pagemap_store(struct gm_pagemap *map, uint64_t key,
			       void *value, void **old);

/*
 * gm_pagemap_load — the value of key, or NULL if absent. O(log64 n), no
 * allocation. RCU mode: call under gm_rcu_read_lock() (or as the writer);
 * the value is a snapshot, valid under the caller's own rules for values.
 */
GM_EXPORT void *gm_pagemap_load(const struct gm_pagemap *map, uint64_t key);

/*
 * gm_pagemap_load_many — values[i] = load(keys[i]) for i < n. Walks the keys
 * in batches of 64, one tree level at a time, prefetching each level's lines
 * for the whole batch before reading them, so their cache misses overlap
 * (maps under 2^17 entries, which sit in cache, use a plain loop of loads).
 * Returns how many keys were found. O(n log64 n). Same rules as load (one
 * read-side critical section may cover the call); keys need not be sorted.
 * Allocates nothing.
 */
GM_EXPORT size_t gm_pagemap_load_many(const struct gm_pagemap *map,
				      const uint64_t *keys, size_t n,
				      void **values);

/*
 * gm_pagemap_erase — removes key; *old (if not NULL) receives its value.
 * O(log64 n) plus one node copy. Writer only. Returns 0, -ENOENT if absent
 * (map unchanged), -ENOMEM with the map unchanged (a node copy or, in RCU
 * mode, a retire batch could not be allocated).
 */
GM_EXPORT int gm_pagemap_erase(struct gm_pagemap *map, uint64_t key,
			       void **old);

/*
 * gm_pagemap_next — the first entry with key >= *key: sets *key and *value
 * (value may be NULL). Returns 0 or -ENOENT. O(log64 n). Reader rules as load.
 * gm_pagemap_prev — the same for the last entry with key <= *key.
 */
GM_EXPORT int gm_pagemap_next(const struct gm_pagemap *map, uint64_t *key,
			      void **value);
GM_EXPORT int gm_pagemap_prev(const struct gm_pagemap *map, uint64_t *key,
			      void **value);

/* Number of entries. O(1). Any context (a snapshot in RCU mode). */
GM_EXPORT uint64_t gm_pagemap_count(const struct gm_pagemap *map);

/*
 * Iteration over [first, last] in key order:
 *
 *     struct gm_pagemap_iter it;
 *     uint64_t k; void *v;
 *     gm_pagemap_iter_init(&it, map, first, last);
 *     while (gm_pagemap_iter_next(&it, &k, &v))
 *         ... may gm_pagemap_erase(map, k, NULL) here ...
 *
 * The iterator keeps only the next key to look for, so it stays valid when
 * the current entry (or any other) is erased or inserted: each step returns
 * the first entry >= the previous key + 1 at that moment. O(log64 n) per
 * step. first > last is an empty iteration. RCU: each step is a reader;
 * the whole walk may run in one read section or one per step.
 */
struct gm_pagemap_iter {
	const struct gm_pagemap *map;
	uint64_t pos, last;
	bool done;
};
GM_EXPORT void gm_pagemap_iter_init(struct gm_pagemap_iter *it,
				    const struct gm_pagemap *map,
				    uint64_t first, uint64_t last);
GM_EXPORT bool gm_pagemap_iter_next(struct gm_pagemap_iter *it, uint64_t *key,
				    void **value);

/* Fills *stats. O(n) (walks the tree for max_depth). Writer context. */
GM_EXPORT void gm_pagemap_stats(const struct gm_pagemap *map,
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
