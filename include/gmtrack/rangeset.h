/*
 * gmtrack/rangeset.h — a set of uint64_t indices kept as disjoint inclusive
 * ranges: Xen's rangeset API, complete and correct, for thousands of ranges.
 *
 * Built on gm_rangemap (a B-tree of range end points, see rangemap.h): the
 * set is the map's stored ranges, all with one value, coalesced, so touching
 * and overlapping ranges always merge and the set's representation is
 * canonical. Lookups cost O(log n) instead of the O(n) list walk of Xen's
 * rangeset, and no cap applies unless you set one.
 *
 *     set {[2,5], [9,9], [12,20]}  ==  rangemap  [2..5]=1 gap [9..9]=1 gap [12..20]=1
 *
 * Errors: first > last is -EINVAL; out of memory is -ENOMEM; a change that
 * would take the set past its range limit is -ENOSPC. In every error case
 * the set is exactly as it was.
 *
 * Concurrency: with GM_RCU, contains/first_containing/
 * contains_range/overlaps_range/walk/iterators/is_empty may run under
 * gm_rcu_read_lock() while one writer (serialized by the caller) changes the
 * set. Single-range changes (add, remove, claim) are seen
 * by readers index by index: each index shows its old or new membership.
 * consume removes what it consumed in one change, seen the same way.
 * Whole-set changes (union, subtract, intersect, purge, swap) build the new
 * set aside and publish it with one pointer store, so readers see the old
 * set or the new one, never a mix; they wait for a grace period before
 * freeing the old one, so they must not be called inside a read section.
 * Without the flag, the set is for one thread (or callers that lock readers
 * too).
 *
 * Groups (gm_rangeset_group, at the end of this header): sets that join one
 * answer "which of them holds x" with one probe of a shared index.
 */
#ifndef GMTRACK_RANGESET_H
#define GMTRACK_RANGESET_H

#include <gmtrack/alloc.h>
#include <gmtrack/rangemap.h>

#include <stdbool.h>
#include <stdio.h>

GM_BEGIN_DECLS

#define GM_RANGESET_NAME_MAX 32      /* name bytes kept, with the NUL */
#define GM_RANGESET_NO_LIMIT 0       /* max_ranges: unlimited */

struct gm_rangeset;        /* opaque (src/rangeset.c) */
struct gm_rangeset_group;  /* opaque */

/* What a set is made with besides its flags (gm_rangeset_create). */
struct gm_rangeset_config {
	const char *name;    /* NULL: ""; cut to GM_RANGESET_NAME_MAX - 1 bytes */
	uint64_t max_ranges; /* GM_RANGESET_NO_LIMIT: any number */
};

struct gm_rangeset_stats {
	uint64_t ranges;     /* == gm_rangeset_count */
	uint64_t bytes;      /* the set's memory: its map's nodes and headers */
};

/*
 * gm_rangeset_create — an empty set in *out, named and limited as config
 * says (NULL: no name, no limit). flags: GM_RCU. alloc NULL = default.
 * -EINVAL (out NULL, unknown flags), -ENOMEM (nothing allocated). O(1).
 * Not thread-safe.
 */
GM_EXPORT int gm_rangeset_create(struct gm_rangeset **out,
				 const struct gm_rangeset_config *config,
				 unsigned flags, const struct gm_allocator *alloc);
/*
 * gm_rangeset_destroy — frees everything (and leaves its group first, see
 * gm_rangeset_group_leave). O(n). In RCU mode waits for a grace period and
 * pending deferred frees (see rcu.h); call it from a registered thread
 * outside any read section once no reader can find s. NULL is a no-op.
 */
GM_EXPORT void gm_rangeset_destroy(struct gm_rangeset *s);

/*
 * gm_rangeset_add — adds every index of [first, last], merging with
 * overlapping and touching ranges. O(log n + k), k ranges merged.
 * Writer only. -EINVAL (s NULL, first > last), -ENOSPC (limit), -ENOMEM:
 * set unchanged.
 */
GM_EXPORT int gm_rangeset_add(struct gm_rangeset *s, uint64_t first,
			      uint64_t last);
/*
 * gm_rangeset_remove — removes every index of [first, last], splitting
 * a range that straddles it (which may need a new range: -ENOSPC at the
 * limit). O(log n + k). Writer only. -EINVAL/-ENOSPC/-ENOMEM: unchanged.
 */
GM_EXPORT int gm_rangeset_remove(struct gm_rangeset *s, uint64_t first,
				 uint64_t last);
/* True if every index of [first, last] is in the set (false if s is NULL
 * or first > last). O(log n). Reader (RCU) or writer. */
GM_EXPORT bool gm_rangeset_contains_range(const struct gm_rangeset *s,
					  uint64_t first, uint64_t last);
/* True if some index of [first, last] is in the set (false if s is NULL
 * or first > last). O(log n). Reader (RCU) or writer. */
GM_EXPORT bool gm_rangeset_overlaps_range(const struct gm_rangeset *s,
					  uint64_t first, uint64_t last);
/* True if index is in the set (false if s is NULL). O(log n). Reader (RCU)
 * or writer. */
GM_EXPORT bool gm_rangeset_contains(const struct gm_rangeset *s,
				    uint64_t index);
/*
 * gm_rangeset_first_containing — the position i of the first of
 * sets[0..n-1] that holds index, -ENOENT if none does, -EINVAL if sets or
 * one of sets[0..n-1] is NULL (Xen's
 * hvm_select_ioreq_server asks this of its servers' sets on every trapped
 * access). The same answer as calling gm_rangeset_contains on each set in
 * turn, but the sets' lookups run side by side (up to 64 at a time, see
 * gm_rangemap_contains_many), so their cache misses overlap: cheaper than
 * the loop when it would ask most of the sets. O(n log size). Reader (RCU)
 * or writer; in RCU mode hold one read section around the call.
 */
GM_EXPORT int gm_rangeset_first_containing(const struct gm_rangeset *const *sets,
					   unsigned n, uint64_t index);

/*
 * gm_rangeset_claim — finds the lowest run of `size` indices, none in
 * the set, that starts at a multiple of `align` (0 or 1: any) and lies in
 * [min, max]; adds it and stores its first index in *first.
 * O(log n) through the map's gap summaries. Writer only.
 * -EINVAL (s or first NULL, size 0, min > max, align not a power of two),
 * -ENOSPC (no such run, or the range limit), -ENOMEM: set unchanged.
 */
GM_EXPORT int gm_rangeset_claim(struct gm_rangeset *s, uint64_t size,
				uint64_t align, uint64_t min, uint64_t max,
				uint64_t *first);

/*
 * Iteration over the set's ranges overlapping [first, last], ascending (or
 * descending with GM_ITER_REVERSE), each clipped to [first, last]:
 *
 *     struct gm_rangeset_iter it;
 *     struct gm_range r;                   // r.value is always 0
 *     gm_rangeset_iter_init(&it, s, first, last, 0);
 *     while (gm_rangeset_iter_next(&it, &r) == 0)
 *         ...
 *
 * iter_init: O(1), -EINVAL (it or s NULL, first > last, unknown flags; the
 * iterator then yields nothing). iter_next: 0 and *range set, -ENOENT at the
 * end, -EINVAL on NULL; O(log n) for the first, O(1) amortised after.
 * Reader: the whole walk in one read section (RCU), or no writer running.
 * A whole-set operation replaces the set's map: an iterator keeps walking
 * the map it started on, which stays valid until its read section ends.
 */
struct gm_rangeset_iter {
	struct gm_rangemap_iter map_iter; /* private */
};
GM_EXPORT int gm_rangeset_iter_init(struct gm_rangeset_iter *it,
				    const struct gm_rangeset *s,
				    uint64_t first, uint64_t last,
				    unsigned flags);
GM_EXPORT int gm_rangeset_iter_next(struct gm_rangeset_iter *it,
				    struct gm_range *range);

/*
 * A walk callback: gets one range (clipped to the asked window); returns
 * 0 to go on, anything else to stop (that value is passed back).
 */
typedef int (*gm_rangeset_walk_fn)(void *ctx, uint64_t first, uint64_t last);

/*
 * gm_rangeset_walk — calls fn on each range that overlaps [first, last],
 * in increasing order, clipped to [first, last]. Returns 0, the callback's
 * nonzero value, or -EINVAL (s or fn NULL, first > last). O(log n + k).
 * Reader (RCU) or writer; the callback must not change s.
 */
GM_EXPORT int gm_rangeset_walk(const struct gm_rangeset *s, uint64_t first,
			       uint64_t last, gm_rangeset_walk_fn fn,
			       void *ctx);
/*
 * gm_rangeset_consume — like walk, and removes from the set each piece
 * whose callback returned 0. Stops at the first nonzero return (that piece
 * and the rest stay) and returns it. The removal is one change made after
 * the callbacks: if it fails (-ENOMEM, or -ENOSPC when cutting a range at
 * the window's edge would pass the limit) the set is unchanged — the pieces
 * reported stay in it — and that error is returned. O(log n + k). Writer
 * only; fn must not change s. -EINVAL (s or fn NULL, first > last).
 */
GM_EXPORT int gm_rangeset_consume(struct gm_rangeset *s, uint64_t first,
				  uint64_t last, gm_rangeset_walk_fn fn,
				  void *ctx);

/*
 * Whole-set operations: dst = dst ∪ src, dst \ src, dst ∩ src. src is not
 * changed (src == dst is allowed). O(n + m). Writer of dst; src must not be
 * changed meanwhile. -EINVAL (dst or src NULL, or their GM_RCU modes
 * differ), -ENOSPC if the result would pass dst's limit, -ENOMEM:
 * dst unchanged. In RCU mode readers of dst see the old or the new set; the
 * call waits for a grace period before freeing the old one.
 */
GM_EXPORT int gm_rangeset_union(struct gm_rangeset *dst,
				const struct gm_rangeset *src);
GM_EXPORT int gm_rangeset_subtract(struct gm_rangeset *dst,
				   const struct gm_rangeset *src);
GM_EXPORT int gm_rangeset_intersect(struct gm_rangeset *dst,
				    const struct gm_rangeset *src);
/* Empties the set. O(n). Writer only; -EINVAL (s NULL), -ENOMEM (a new
 * empty map could not be allocated), set unchanged. */
GM_EXPORT int gm_rangeset_purge(struct gm_rangeset *s);
/* Exchanges the contents (not names, limits or groups) of a and b. O(1),
 * plus a rebuild of the group index of each (indexed) group they are in.
 * Writer of both. RCU readers of either see the old or the new contents.
 * -EINVAL if a or b is NULL or the two differ in GM_RCU; -ENOSPC if either would
 * pass its limit; -ENOMEM (a group index could not be rebuilt); nothing
 * changed then. */
GM_EXPORT int gm_rangeset_swap(struct gm_rangeset *a, struct gm_rangeset *b);
/* True if the set holds no index (true for a NULL set). O(log n). Reader
 * (RCU) or writer. */
GM_EXPORT bool gm_rangeset_is_empty(const struct gm_rangeset *s);
/* Number of ranges (maximal runs of indices); 0 for NULL. O(1). Writer. */
GM_EXPORT uint64_t gm_rangeset_count(const struct gm_rangeset *s);
/* The set's name ("" for NULL). O(1). Any context. */
GM_EXPORT const char *gm_rangeset_name(const struct gm_rangeset *s);
/* gm_rangeset_stats — ranges and bytes held (its map's nodes, the map's
 * and the set's handles) into *st. O(n). Writer. 0 or -EINVAL (NULL). */
GM_EXPORT int gm_rangeset_stats(const struct gm_rangeset *s,
				struct gm_rangeset_stats *st);

/*
 * gm_rangeset_dump — writes `name { [a, b], [c], ... }` (hexadecimal, a
 * one-index range as [a]) and a newline to f. O(n). Reader or writer.
 * Returns 0, -EINVAL if s or f is NULL, or -EIO if writing failed.
 */
GM_EXPORT int gm_rangeset_dump(const struct gm_rangeset *s, FILE *f);

/* Checks every invariant (those of the map, plus: one value, no two
 * touching ranges, count within the limit). 0, or -EINVAL with *reason (if
 * reason is not NULL). O(n). Writer. */
GM_EXPORT int gm_rangeset_validate(const struct gm_rangeset *s,
				   const char **reason);


/*
 * ---- Groups: which of several sets holds an index -------------------------
 *
 * Xen asks, on every trapped access, which ioreq server's set holds the
 * address: the first server, in order, whose set does. A group answers that
 * in one step. Sets join a group (at most GM_RANGESET_GROUP_MAX, numbered
 * from 0 in the order of priority the caller chooses); every change to a
 * member keeps the group's index up to date, and gm_rangeset_group_select
 * returns the lowest-numbered member holding an index.
 *
 * The index is a hash table over 8-index chunks: for each chunk that some
 * member's *small* range (at most GM_RANGESET_GROUP_SMALL indices) touches,
 * the lowest member holding each of its 8 indices. A selection is one probe
 * (20-30 ns in gmbench's ioreq_select at 4 x 4096 ranges, against 146-170 ns
 * for the four members' trees side by side), plus a tree lookup in each
 * member that has larger ranges and ranks before the answer. Large ranges
 * (MMIO BARs, whole regions) are few and stay in the members' trees, whose
 * lookups are fast when they hold few ranges.
 *
 * A group whose members hold fewer than GM_RANGESET_GROUP_INDEX_MIN small
 * ranges has no index (selection asks every member's tree side by side,
 * gm_rangeset_first_containing, and the memory stays that of the trees); the
 * index is built when a change takes the group to that many and dropped when
 * it falls under half of it. Both are best effort: if memory runs out then
 * (for the table, or for deferring the old one's free), selection keeps
 * asking the members, or keeps the exact index it has, and a later change
 * tries again. Once built, changes reserve the index's room before they touch the member,
 * so a change either succeeds with the index updated or fails (-ENOMEM) with
 * set and index as they were.
 *
 * Costs: a member's gm_rangeset_add/remove also reads the changed window and
 * rewrites the chunks of its small ranges there (O(1) for ranges up to
 * GM_RANGESET_GROUP_SMALL indices, plus, where it held an index first, one
 * lookup per later member holding the index too; in ioreq_select a
 * remove takes 0.3-1.1 us, 0.2-0.3 us outside a group). A change that
 * merges or removes more than a few ranges at once, a whole-set operation,
 * join and leave rebuild the index, O(N) for N ranges in the group.
 *
 * Concurrency: as for the sets. Members of a group must all be in RCU mode
 * or all not (the group's own GM_RCU flag). Readers call
 * gm_rangeset_group_select under gm_rcu_read_lock() while one writer,
 * serialized by the caller with the members' writers, changes members;
 * each index is seen with its old or its new holders. The group is the
 * writer's: join, leave and destroy must not race with changes to members.
 */
#define GM_RANGESET_GROUP_MAX 64        /* members per group */
#define GM_RANGESET_GROUP_SMALL 16      /* longest range the index holds */
#define GM_RANGESET_GROUP_INDEX_MIN 2048 /* small ranges before an index */

/*
 * gm_rangeset_group_create — an empty group in *out. flags: GM_RCU (its
 * members' mode). The handle's and the index's memory come from alloc
 * (NULL: default). -EINVAL (out NULL, unknown flags), -ENOMEM. O(1).
 */
GM_EXPORT int gm_rangeset_group_create(struct gm_rangeset_group **out,
				       unsigned flags,
				       const struct gm_allocator *alloc);
/*
 * gm_rangeset_group_destroy — makes every member leave, frees the index
 * and the handle. The members stay valid sets. O(N). In RCU mode waits for
 * a grace period (registered thread, outside any read section). NULL is a
 * no-op. Never fails.
 */
GM_EXPORT void gm_rangeset_group_destroy(struct gm_rangeset_group *g);
/*
 * gm_rangeset_group_join — s becomes the group's lowest free member number,
 * which is returned (0..GM_RANGESET_GROUP_MAX-1). O(N) (the index, if any,
 * is rebuilt with s's ranges). Writer. -EINVAL if g or s is NULL or s's RCU
 * mode differs from the group's, -EEXIST if s is in a group already, -ENOSPC if the group is
 * full, -ENOMEM: nothing changed.
 */
GM_EXPORT int gm_rangeset_group_join(struct gm_rangeset_group *g,
				     struct gm_rangeset *s);
/*
 * gm_rangeset_group_leave — s leaves its group; its number becomes free.
 * O(N) (index rebuilt without s; if that cannot be allocated, the group
 * goes on without an index until a later change builds one). Writer. In RCU
 * mode, readers may still look at s until a grace period has passed
 * (gm_rangeset_destroy waits for one). 0, -ENOENT if s is in no group,
 * -EINVAL if s is NULL.
 */
GM_EXPORT int gm_rangeset_group_leave(struct gm_rangeset *s);
/*
 * gm_rangeset_group_select — the lowest member number whose set holds
 * index, -ENOENT if none does, -EINVAL if g is NULL. O(1) expected with an index (one probe, plus a tree lookup
 * in each lower-numbered member holding ranges longer than
 * GM_RANGESET_GROUP_SMALL); O(members log n) without. Never allocates.
 * Reader (RCU) or writer.
 */
GM_EXPORT int gm_rangeset_group_select(const struct gm_rangeset_group *g,
				       uint64_t index);
/* The member with number k, or NULL (also for a NULL g). O(1). Reader or
 * writer. */
GM_EXPORT struct gm_rangeset *gm_rangeset_group_member(const struct gm_rangeset_group *g,
						       unsigned k);
/* Whether the group has its index now (false for NULL). O(1). Writer. */
GM_EXPORT bool gm_rangeset_group_indexed(const struct gm_rangeset_group *g);
/* Bytes the group holds: its handle and its index (0 for NULL); the
 * members' memory is theirs. O(1). Writer. */
GM_EXPORT size_t gm_rangeset_group_bytes(const struct gm_rangeset_group *g);
/*
 * gm_rangeset_group_validate — checks that the index says exactly what the
 * members hold (every chunk entry, every small range, the counts, the
 * members asked directly). O(N * members log n). Writer. 0, or -EINVAL with
 * *reason (if reason is not NULL).
 */
GM_EXPORT int gm_rangeset_group_validate(const struct gm_rangeset_group *g,
					 const char **reason);

GM_END_DECLS

#endif /* GMTRACK_RANGESET_H */
