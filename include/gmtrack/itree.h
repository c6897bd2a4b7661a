/*
 * gmtrack/itree.h — overlapping intervals [first, last] -> item, with RCU
 * overlap queries that never miss (hva -> memslot, MMIO dispatch, ...).
 *
 * Entries are triples (first, last, item) with inclusive uint64_t bounds.
 * The same interval may be stored several times with different items; only
 * an identical triple is a duplicate. Queries return every entry that
 * overlaps [first, last], in order of `first` (then `last`, then `item`),
 * or the reverse order with GM_ITER_REVERSE.
 *
 * Why not an augmented red-black tree (Linux, QEMU, kvmtool)? A lockless
 * reader walking a red-black tree while a writer rotates it can miss whole
 * subtrees: QEMU documents that "not returning an element does NOT mean it's
 * not present", and KVM keeps two complete copies of its memslots to cope.
 * gm_itree is a B+tree ordered by (first, last, item) whose inner entries
 * carry each child subtree's maximum `last`:
 *
 *   inner:  | prefix max[32] | max last[32] | sep[32] | child[32] |
 *   leaf:   | order word | first0 .. first14 | last0 .. last14 | item0 .. item14 |
 *
 * An overlap query of [a, b] descends only into children whose max `last`
 * >= a and whose separator's `first` <= b. A leaf lists its entries through one
 * 64-bit "order word" (count + a permutation of its slots): an insert fills
 * a free slot and publishes a new order word, a remove publishes one
 * without the entry, so most writes touch one leaf in place, without
 * copying. A freed slot may be refilled at once: the leaf's sequence count
 * moves first, and a reader that read the leaf meanwhile reads it again
 * (as with a seqlock). Every structural change (split, merge, root
 * change) is copy-on-write along the path, published with one release
 * store (of the root or of one child pointer). The other fields changed in
 * place are the max-`last` summaries, always >= the `last` of every entry
 * that stays in that subtree. So a reader never sees a half-done node or
 * leaf snapshot, and never skips a subtree holding an entry that was
 * present for its whole read-side section: such an entry is found, while a
 * concurrent insert or remove of OTHER entries may or may not be seen.
 * Replaced nodes are freed after a grace period.
 *
 * Memory: 384-byte leaves (15 entries) and 1600-byte inner nodes (32
 * children), cache-line aligned in chunks of up to 64 KiB; about 37-45
 * bytes per entry at the fill random or ascending inserts give (a Linux
 * interval_tree_node is 48). An overflowing node shares entries with a
 * sibling that has room rather than splitting, so churn keeps nodes
 * fairly full. In RCU mode a write that splits, merges or redistributes
 * copies nodes, and the ones it replaced stay allocated until a grace
 * period has passed: while a writer churns, the tree also holds what it
 * retired during the last grace period (gm_itree_stats' total_bytes
 * counts them); after it they are reused or freed.
 *
 *   struct gm_itree *t;
 *   gm_itree_create(&t, GM_RCU, NULL);
 *   gm_itree_insert(t, slot->hva, slot->hva + slot->size - 1, slot);  // writer
 *   ...
 *   struct gm_itree_iter it;                                          // reader
 *   struct gm_itree_entry e;
 *   gm_rcu_read_lock();
 *   gm_itree_iter_init(&it, t, start, end - 1, 0);
 *   while (gm_itree_iter_next(&it, &e) == 0)
 *       invalidate(e.item, start, end);
 *   gm_rcu_read_unlock();
 *
 * Concurrency: one writer at a time (the caller serializes insert/remove/
 * destroy); with GM_RCU any number of readers iterate under
 * gm_rcu_read_lock() without locks. Without the flag, readers must not run
 * concurrently with a writer, and a write invalidates open iterators.
 */
#ifndef GMTRACK_ITREE_H
#define GMTRACK_ITREE_H

#include <gmtrack/alloc.h>
#include <gmtrack/common.h>

#include <stdbool.h>

GM_BEGIN_DECLS

/* create flags: GM_RCU (common.h). iter_init flags: GM_ITER_REVERSE. */

/* Deepest tree an iterator can walk; a tree never grows beyond it
 * (insert returns -ENOSPC first; needs > 2^33 entries in practice). */
#define GM_ITREE_MAX_HEIGHT 20

/* Entries a leaf holds at most (an iterator buffers one leaf's hits). */
#define GM_ITREE_LEAF_ENTRIES 15

struct gm_itree; /* opaque */

struct gm_itree_entry {
	uint64_t first; /* inclusive */
	uint64_t last;  /* inclusive, >= first */
	void *item;
};

/* An iterator over the entries overlapping [first, last]. Lives on the
 * caller's stack (about 570 bytes on 64-bit); needs no cleanup; fields are
 * private. In RCU mode, use it only inside one read-side section. */
struct gm_itree_iter {
	uint64_t a, b;
	int level;  /* level of node[level] being scanned; -1 when finished */
	int top;    /* level of the root this iteration started from */
	bool reverse;
	const void *node[GM_ITREE_MAX_HEIGHT];
	uint8_t idx[GM_ITREE_MAX_HEIGHT]; /* inner levels: next child to look at */
	/* the current leaf's entries overlapping [a, b], copied in order when
	 * the iterator arrived (one consistent snapshot of the leaf) */
	uint8_t nhits, next_hit;
	bool past_b; /* an entry of the leaf starts after b: the walk ends there */
	struct gm_itree_entry hit[GM_ITREE_LEAF_ENTRIES];
};

struct gm_itree_stats {
	uint64_t entries;    /* stored triples */
	uint64_t height;     /* levels, 0 when empty, 1 = a single leaf */
	uint64_t leaf_nodes;
	uint64_t inner_nodes;
	uint64_t node_bytes; /* bytes held by live nodes (excl. the handle; in
			      * RCU mode, also excl. retired nodes waiting for
			      * a grace period or kept for reuse) */
	uint64_t total_bytes; /* the handle + the node chunks: live nodes,
			      * free slots and (RCU mode) retired nodes not
			      * yet taken back; excl. deferred-free batches */
};

/*
 * gm_itree_create — makes an empty tree in *out. flags: 0 or GM_RCU.
 * alloc: NULL for the default allocator; every byte goes through it.
 * Cost O(1). Returns 0, -EINVAL (bad flags or out == NULL) or -ENOMEM
 * (nothing allocated, *out untouched).
 */
GM_EXPORT int gm_itree_create(struct gm_itree **out, unsigned flags,
			      const struct gm_allocator *alloc);

/*
 * gm_itree_destroy — frees the tree and every node (items are the caller's).
 * Cost O(n). Writer only, no concurrent writer. In RCU mode: from a
 * registered thread, outside a read section, once no reader can still find
 * the tree; waits for a grace period and for all deferred frees. NULL is a
 * no-op.
 */
GM_EXPORT void gm_itree_destroy(struct gm_itree *t);

/*
 * gm_itree_insert — adds (first, last, item).
 * Cost O(log n): an in-place leaf edit when the leaf has room, else a split
 * with O(log n) node copies. Writer only (caller serializes writers); RCU
 * readers may run.
 * Returns 0; -EINVAL if t is NULL or first > last; -EEXIST if the identical
 * triple is
 * present; -ENOSPC if the tree would exceed GM_ITREE_MAX_HEIGHT; -ENOMEM
 * with the tree unchanged (everything is allocated before anything changes).
 */
GM_EXPORT int gm_itree_insert(struct gm_itree *t, uint64_t first,
			      uint64_t last, void *item);

/*
 * gm_itree_remove — removes the triple (first, last, item).
 * Cost O(log n), like insert. Writer only; RCU readers may run.
 * Returns 0; -EINVAL if t is NULL or first > last; -ENOENT if absent;
 * -ENOMEM with the
 * tree unchanged (a remove that rebalances copies nodes).
 */
GM_EXPORT int gm_itree_remove(struct gm_itree *t, uint64_t first,
			      uint64_t last, void *item);

/*
 * gm_itree_iter_init — starts an iterator over the entries overlapping
 * [first, last] (inclusive; first == last is a stabbing query), in order of
 * (first, last, item), or the reverse order with GM_ITER_REVERSE. Cost
 * O(1). Readers: in RCU mode inside gm_rcu_read_lock(), and the whole
 * iteration must stay inside that one section. Never allocates. Returns 0,
 * or -EINVAL (it or t NULL, first > last, unknown flags; the iterator then
 * yields nothing).
 */
GM_EXPORT int gm_itree_iter_init(struct gm_itree_iter *it,
				 const struct gm_itree *t, uint64_t first,
				 uint64_t last, unsigned flags);

/*
 * gm_itree_iter_next — the next overlapping entry copied to *out: 0, or
 * -ENOENT when there is none, -EINVAL if it or out is NULL. A whole
 * iteration costs O(log n + k) node visits for k results (each node scan is
 * <= 16 slots; a reverse walk cannot stop early on the left and visits every
 * child whose max `last` reaches first). Same context rule as iter_init. In
 * RCU mode it returns every entry present for the whole read section, and
 * each entry at most once (arriving at a leaf, the iterator copies the
 * leaf's hits as one snapshot, and reads the leaf again in the rare case
 * that the writer reused one of its slots meanwhile). Never allocates.
 */
GM_EXPORT int gm_itree_iter_next(struct gm_itree_iter *it,
				 struct gm_itree_entry *out);

/*
 * gm_itree_iter_fill — up to max next overlapping entries into out[0..),
 * in the same order as iter_next; returns how many (fewer than max only at
 * the end, 0 when done), or -EINVAL (it NULL, out NULL with max > 0). Same
 * rules and cost as iter_next, one call for a whole batch (typical memslot
 * queries finish in one call). Never allocates.
 */
GM_EXPORT int64_t gm_itree_iter_fill(struct gm_itree_iter *it,
				     struct gm_itree_entry *out, size_t max);

/*
 * gm_itree_fill — stores the items of the entries overlapping [first,
 * last], in order of first, into items[0..max) and returns how many entries
 * overlap (may exceed max: only the first max are stored); -EINVAL if t is
 * NULL, first > last, or items is NULL with max > 0. Cost O(log n + k) for
 * k overlapping entries; a tree of one leaf (<= 15 entries) is one flat
 * scan. Reader: same rules as iteration (in RCU mode inside one read-side
 * section; returns every entry present for the whole section). Never
 * allocates.
 */
GM_EXPORT int64_t gm_itree_fill(const struct gm_itree *t, uint64_t first,
				uint64_t last, void **items, size_t max);

/*
 * gm_itree_count — number of stored triples (0 for NULL). O(1). Any thread
 * (in RCU mode a reader sees a recent value; it is not synchronized with
 * iteration).
 */
GM_EXPORT uint64_t gm_itree_count(const struct gm_itree *t);

/*
 * gm_itree_stats — fills *s (shape and exact memory). O(n). Writer side (not
 * concurrently with a writer). Never allocates. Returns 0 or -EINVAL.
 */
GM_EXPORT int gm_itree_stats(const struct gm_itree *t,
			     struct gm_itree_stats *s);

/*
 * gm_itree_validate — checks every invariant (ordering, separators, node
 * fill, equal leaf depth, exact max-`last` summaries, count). O(n). Writer
 * side. Returns 0, or -EINVAL with *reason (if reason != NULL) naming the
 * first broken invariant ("NULL tree" for NULL). Never allocates.
 */
GM_EXPORT int gm_itree_validate(const struct gm_itree *t, const char **reason);

GM_END_DECLS

#endif /* GMTRACK_ITREE_H */
