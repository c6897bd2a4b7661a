/*
 * src/rangeset.c — a set of uint64_t indices as disjoint ranges, on top of
 * gm_rangemap.
 *
 *   struct gm_rangeset                       struct gm_rangemap (B-tree of
 *   +----------------------+                 range end points, rangemap.c)
 *   | _Atomic map  --------+---------------> [2..5]=1 gap [9..9]=1 gap ...
 *   | alloc, max_ranges    |
 *   | flags, name[32]      |   whole-set operations build a new map aside
 *   +----------------------+   and swing `map` to it with one release store
 *
 * Invariants (checked by gm_rangeset_validate):
 *  - every stored range has the value SET_VALUE, so coalescing merges any
 *    two touching ranges: the stored ranges are exactly the maximal runs of
 *    the set, and gm_rangemap_count is the number of ranges;
 *  - the count never passes max_ranges (when max_ranges != 0);
 *  - the map's GM_RCU flag equals the set's GM_RCU.
 *
 * Groups (gm_rangeset_group, at the end of this file): sets that join a
 * group keep, besides their own maps, a shared hash index of their small
 * ranges by 8-index chunk, so "which member holds x" is one probe; its
 * layout and invariants are drawn where the groups begin.
 *
 * Why a map pointer and not an embedded map: union, subtract and intersect
 * change many ranges, and both "all or nothing" on -ENOMEM and "readers see
 * the old set or the new one" are had for free by building the result
 * aside and publishing it with one pointer store. Single-range changes go
 * to the current map in place (gm_rangemap is itself all-or-nothing and
 * RCU-safe per index).
 */
#include <gmtrack/rangeset.h>
#include <gmtrack/rcu.h>

#include "internal.h"

#include <inttypes.h>
#include <limits.h>
#include <string.h>

#define SET_VALUE 1

/* The handles (opaque in rangeset.h). */
struct gm_rangeset {
	_Atomic(struct gm_rangemap *) map; /* the current set; replaced whole
					    * by whole-set operations */
	const struct gm_allocator *alloc;
	uint64_t max_ranges;               /* 0: no limit */
	unsigned flags;
	char name[GM_RANGESET_NAME_MAX];
	struct gm_rangeset_group *group;   /* the group it is a member of */
	unsigned member;                   /* its number there */
};

struct gm_rangeset_group {
	_Atomic(void *) index;            /* the chunk table, or NULL */
	_Atomic uint64_t ask;             /* members a selection asks directly */
	_Atomic(struct gm_rangeset *) member[GM_RANGESET_GROUP_MAX];
	_Atomic uint64_t members;         /* bit k: member k exists */
	uint64_t small;                   /* small ranges of all members */
	uint64_t large[GM_RANGESET_GROUP_MAX]; /* each member's other ranges */
	const struct gm_allocator *alloc;
	unsigned flags;                   /* GM_RCU */
	struct gm_reclaim reclaim;
};

/* Group hooks (defined with the groups, below). */
static int group_change(struct gm_rangeset *s, uint64_t first, uint64_t last, bool add);
static int publish_in_group(struct gm_rangeset *s, struct gm_rangemap *m);
static int swap_maps(struct gm_rangeset *a, struct gm_rangeset *b, struct gm_rangemap *ma,
		     struct gm_rangemap *mb);

/* ---- the current map ------------------------------------------------------ */
static struct gm_rangemap *map_of(const struct gm_rangeset *s)
{
	return atomic_load_explicit(&((struct gm_rangeset *)s)->map,
				    memory_order_acquire);
}

static struct gm_rangemap *map_new(const struct gm_rangeset *s)
{
	struct gm_rangemap *m;
	unsigned flags = (s->flags & GM_RCU) ? GM_RCU : 0;
	return gm_rangemap_create(&m, flags, s->alloc) ? NULL : m;
}

/* Frees a map nobody can reach any more (destroy waits for readers in RCU
 * mode before freeing nodes and the handle). */
static void map_free(const struct gm_rangeset *s, struct gm_rangemap *m)
{
	(void)s;
	gm_rangemap_destroy(m);
}

/* Makes m the set's map and frees the one it replaces. */
static void map_publish(struct gm_rangeset *s, struct gm_rangemap *m)
{
	struct gm_rangemap *old = atomic_exchange_explicit(&s->map, m,
							   memory_order_acq_rel);
	map_free(s, old);
}

/* ---- life ----------------------------------------------------------------- */
int gm_rangeset_create(struct gm_rangeset **out, const struct gm_rangeset_config *config,
		       unsigned flags, const struct gm_allocator *alloc)
{
	if (!out || (flags & ~GM_RCU))
		return -EINVAL;
	alloc = alloc ? alloc : gm_alloc_default();
	struct gm_rangeset *s = gm_alloc_mem(alloc, sizeof(*s), _Alignof(struct gm_rangeset));
	if (!s)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	s->alloc = alloc;
	s->flags = flags;
	s->max_ranges = config ? config->max_ranges : GM_RANGESET_NO_LIMIT;
	snprintf(s->name, sizeof(s->name), "%s", config && config->name ? config->name : "");
	struct gm_rangemap *m = map_new(s);
	if (!m) {
		gm_alloc_release(alloc, s, sizeof(*s));
		return -ENOMEM;
	}
	atomic_init(&s->map, m);
	*out = s;
	return 0;
}

void gm_rangeset_destroy(struct gm_rangeset *s)
{
	if (!s)
		return;
	if (s->group)
		gm_rangeset_group_leave(s);
	map_free(s, map_of(s));
	gm_alloc_release(s->alloc, s, sizeof(*s));
}

/* ---- counting what a change would leave ---------------------------------- */
/* Ranges that would remain after adding [first, last]: every range that
 * overlaps or touches it merges into one. O(log n + k). */
static uint64_t count_after_add(const struct gm_rangemap *m, uint64_t first,
				uint64_t last)
{
	struct gm_rangemap_iter c;
	struct gm_range r;
	uint64_t merged = 0;
	gm_rangemap_iter_init(&c, m, first ? first - 1 : 0,
				last == UINT64_MAX ? last : last + 1, 0);
	while (gm_rangemap_iter_next(&c, &r) == 0)
		merged++;
	return gm_rangemap_count(m) - merged + 1;
}

/* Ranges that would remain after removing [first, last]: those inside it
 * go, one that straddles it on both sides becomes two. O(log n + k). */
static uint64_t count_after_remove(const struct gm_rangemap *m, uint64_t first,
				   uint64_t last)
{
	struct gm_rangemap_iter c;
	struct gm_range r;
	uint64_t count = gm_rangemap_count(m);
	gm_rangemap_iter_init(&c, m, first, last, 0);
	while (gm_rangemap_iter_next(&c, &r) == 0) {
		if (r.first >= first && r.last <= last)
			count--;
		else if (r.first < first && r.last > last)
			count++;
	}
	return count;
}

static bool over_limit(const struct gm_rangeset *s, uint64_t count)
{
	return s->max_ranges != GM_RANGESET_NO_LIMIT && count > s->max_ranges;
}

/* ---- single-range changes -------------------------------------------------- */
int gm_rangeset_add(struct gm_rangeset *s, uint64_t first, uint64_t last)
{
	if (!s || first > last)
		return -EINVAL;
	struct gm_rangemap *m = map_of(s);
	if (s->max_ranges && over_limit(s, count_after_add(m, first, last)))
		return -ENOSPC;
	if (s->group)
		return group_change(s, first, last, true);
	return gm_rangemap_store(m, first, last, SET_VALUE);
}

int gm_rangeset_remove(struct gm_rangeset *s, uint64_t first,
			     uint64_t last)
{
	if (!s || first > last)
		return -EINVAL;
	struct gm_rangemap *m = map_of(s);
	if (s->max_ranges && over_limit(s, count_after_remove(m, first, last)))
		return -ENOSPC;
	if (s->group)
		return group_change(s, first, last, false);
	return gm_rangemap_remove(m, first, last);
}

int gm_rangeset_claim(struct gm_rangeset *s, uint64_t size,
			    uint64_t align, uint64_t min, uint64_t max,
			    uint64_t *first)
{
	if (!s || !first || size == 0 || min > max || (align > 1 && (align & (align - 1))))
		return -EINVAL;
	struct gm_rangemap *m = map_of(s);
	uint64_t at;
	int rc = gm_rangemap_find_gap(m, size, align, min, max, &at);
	if (rc)
		return rc == -ENOSPC ? -ENOSPC : rc;
	rc = gm_rangeset_add(s, at, at + (size - 1));
	if (rc == 0)
		*first = at;
	return rc;
}

/* ---- queries ---------------------------------------------------------------- */
bool gm_rangeset_contains(const struct gm_rangeset *s, uint64_t index)
{
	return s && gm_rangemap_contains(map_of(s), index);
}

/* In groups of 8 (gm_rangemap_contains_many's own group size): a later
 * group is asked only if no set of the earlier ones holds index. */
int gm_rangeset_first_containing(const struct gm_rangeset *const *sets, unsigned n,
				 uint64_t index)
{
	const struct gm_rangemap *maps[8];
	if (!sets)
		return -EINVAL;
	for (unsigned at = 0; at < n && at < INT_MAX - 8; at += 8) {
		unsigned k = n - at < 8 ? n - at : 8;
		for (unsigned i = 0; i < k; i++) {
			if (!sets[at + i])
				return -EINVAL;
			maps[i] = map_of(sets[at + i]);
		}
		uint64_t mask = gm_rangemap_contains_many(maps, k, index);
		if (mask)
			return (int)(at + (unsigned)__builtin_ctzll(mask));
	}
	return -ENOENT;
}

bool gm_rangeset_contains_range(const struct gm_rangeset *s, uint64_t first,
				uint64_t last)
{
	uint64_t range_last;
	if (!s || first > last)
		return false;
	return gm_rangemap_load(map_of(s), first, NULL, NULL, &range_last) == 0 &&
	       range_last >= last;
}

bool gm_rangeset_overlaps_range(const struct gm_rangeset *s, uint64_t first,
				uint64_t last)
{
	struct gm_range r;
	if (!s || first > last)
		return false;
	return gm_rangemap_next(map_of(s), first, &r) == 0 && r.first <= last;
}

bool gm_rangeset_is_empty(const struct gm_rangeset *s)
{
	struct gm_range r;
	return !s || gm_rangemap_next(map_of(s), 0, &r) != 0;
}

uint64_t gm_rangeset_count(const struct gm_rangeset *s)
{
	return s ? gm_rangemap_count(map_of(s)) : 0;
}

const char *gm_rangeset_name(const struct gm_rangeset *s)
{
	return s ? s->name : "";
}

int gm_rangeset_stats(const struct gm_rangeset *s, struct gm_rangeset_stats *st)
{
	struct gm_rangemap_stats ms;
	if (!s || !st)
		return -EINVAL;
	gm_rangemap_stats(map_of(s), &ms);
	st->ranges = ms.ranges;
	st->bytes = ms.bytes + gm_rangemap_handle_bytes_() + sizeof(*s);
	return 0;
}

int gm_rangeset_iter_init(struct gm_rangeset_iter *it, const struct gm_rangeset *s,
			  uint64_t first, uint64_t last, unsigned flags)
{
	if (!it)
		return -EINVAL;
	if (flags & ~GM_ITER_REVERSE)
		first = 1, last = 0; /* refused below, the iterator left empty */
	return gm_rangemap_iter_init(&it->map_iter, s ? map_of(s) : NULL, first, last,
				     flags | GM_RANGEMAP_ITER_CLIP);
}

int gm_rangeset_iter_next(struct gm_rangeset_iter *it, struct gm_range *range)
{
	if (!it || !range)
		return -EINVAL;
	int rc = gm_rangemap_iter_next(&it->map_iter, range);
	if (rc == 0)
		range->value = 0;
	return rc;
}

int gm_rangeset_walk(const struct gm_rangeset *s, uint64_t a,
			      uint64_t b, gm_rangeset_walk_fn cb, void *ctx)
{
	struct gm_rangemap_iter c;
	struct gm_range r;
	if (!s || !cb || a > b)
		return -EINVAL;
	gm_rangemap_iter_init(&c, map_of(s), a, b, GM_RANGEMAP_ITER_CLIP);
	while (gm_rangemap_iter_next(&c, &r) == 0) {
		int rc = cb(ctx, r.first, r.last);
		if (rc)
			return rc;
	}
	return 0;
}

/* Consumed pieces always form a prefix of the window: everything in
 * [a, stop - 1] goes, where stop is the first index of the piece whose
 * callback said no (or b + 1). So the removal is one erase. */
int gm_rangeset_consume(struct gm_rangeset *s, uint64_t a, uint64_t b,
			       gm_rangeset_walk_fn cb, void *ctx)
{
	struct gm_rangemap_iter c;
	struct gm_range r;
	if (!s || !cb || a > b)
		return -EINVAL;
	struct gm_rangemap *m = map_of(s);
	bool consumed_any = false;
	uint64_t consumed_last = 0;
	int answer = 0;
	gm_rangemap_iter_init(&c, m, a, b, GM_RANGEMAP_ITER_CLIP);
	while (gm_rangemap_iter_next(&c, &r) == 0) {
		answer = cb(ctx, r.first, r.last);
		if (answer)
			break;
		consumed_any = true;
		consumed_last = r.last;
	}
	if (!consumed_any)
		return answer;
	/* Erase up to the last consumed index: no index between it and the
	 * stopping piece is in the set, so this is the same as [a, stop-1]. */
	int rc = gm_rangeset_remove(s, a, consumed_last);
	return rc ? rc : answer;
}

/* ---- whole-set operations --------------------------------------------------- */
struct range_list {
	struct gm_range *r;
	uint64_t n;
};

/* Reads the set's ranges into an array from the allocator. */
static int list_of(const struct gm_rangeset *owner, const struct gm_rangeset *s,
		   struct range_list *l)
{
	const struct gm_rangemap *m = map_of(s);
	uint64_t n = gm_rangemap_count(m);
	l->n = 0;
	l->r = gm_alloc_mem(owner->alloc, (n ? n : 1) * sizeof(struct gm_range), 8);
	if (!l->r)
		return -ENOMEM;
	struct gm_rangemap_iter c;
	gm_rangemap_iter_init(&c, m, 0, UINT64_MAX, 0);
	while (l->n < n && gm_rangemap_iter_next(&c, &l->r[l->n]) == 0)
		l->n++;
	return 0;
}

static void list_free(const struct gm_rangeset *owner, struct range_list *l,
		      uint64_t capacity)
{
	gm_alloc_release(owner->alloc, l->r, (capacity ? capacity : 1) * sizeof(struct gm_range));
}

enum setop { SET_UNION, SET_SUBTRACT, SET_INTERSECT };

/* Appends [f, l] to out, merging with the previous range if they touch or
 * overlap (f is never below the previous range's first; one that ends at
 * UINT64_MAX holds everything after it). */
static void emit(struct range_list *out, uint64_t f, uint64_t l)
{
	struct gm_range *prev = out->n ? &out->r[out->n - 1] : NULL;
	if (prev && (prev->last == UINT64_MAX || prev->last + 1 >= f)) {
		if (l > prev->last)
			prev->last = l;
		return;
	}
	out->r[out->n++] = (struct gm_range){f, l, SET_VALUE};
}

/* out := a op b over sorted, disjoint, non-touching lists. out holds at
 * most |a| + |b| ranges. A sweep over the end points, O(|a| + |b|). */
static void combine(const struct range_list *a, const struct range_list *b,
		    enum setop op, struct range_list *out)
{
	uint64_t i = 0, j = 0;
	out->n = 0;
	if (op == SET_UNION) {
		while (i < a->n || j < b->n) {
			const struct gm_range *x;
			if (j == b->n || (i < a->n && a->r[i].first <= b->r[j].first))
				x = &a->r[i++];
			else
				x = &b->r[j++];
			emit(out, x->first, x->last);
		}
		return;
	}
	for (; i < a->n; i++) {
		uint64_t f = a->r[i].first, l = a->r[i].last;
		/* Skip b's ranges that end before this one starts. */
		while (j < b->n && b->r[j].last < f)
			j++;
		uint64_t k = j;
		if (op == SET_INTERSECT) {
			for (; k < b->n && b->r[k].first <= l; k++) {
				uint64_t lo = b->r[k].first > f ? b->r[k].first : f;
				uint64_t hi = b->r[k].last < l ? b->r[k].last : l;
				emit(out, lo, hi);
			}
			continue;
		}
		/* Subtract: what of [f, l] lies between b's ranges. */
		uint64_t at = f;
		bool done = false;
		for (; k < b->n && b->r[k].first <= l; k++) {
			if (b->r[k].first > at)
				emit(out, at, b->r[k].first - 1);
			if (b->r[k].last >= l) {
				done = true;
				break;
			}
			at = b->r[k].last + 1;
		}
		if (!done)
			emit(out, at, l);
	}
}

static int build_map(const struct gm_rangeset *s, const struct range_list *l,
		     struct gm_rangemap **out)
{
	struct gm_rangemap *m = map_new(s);
	if (!m)
		return -ENOMEM;
	for (uint64_t i = 0; i < l->n; i++) {
		int rc = gm_rangemap_store(m, l->r[i].first, l->r[i].last, SET_VALUE);
		if (rc) {
			map_free(s, m);
			return rc;
		}
	}
	*out = m;
	return 0;
}

static int apply_setop(struct gm_rangeset *dst, const struct gm_rangeset *src,
		       enum setop op)
{
	struct range_list a, b, out = {0};
	int rc = list_of(dst, dst, &a);
	if (rc)
		return rc;
	uint64_t cap_a = gm_rangemap_count(map_of(dst));
	uint64_t cap_b = gm_rangemap_count(map_of(src));
	rc = list_of(dst, src, &b);
	if (rc) {
		list_free(dst, &a, cap_a);
		return rc;
	}
	uint64_t cap_out = a.n + b.n;
	out.r = gm_alloc_mem(dst->alloc, (cap_out ? cap_out : 1) * sizeof(struct gm_range), 8);
	struct gm_rangemap *m = NULL;
	if (!out.r) {
		rc = -ENOMEM;
	} else {
		combine(&a, &b, op, &out);
		rc = over_limit(dst, out.n) ? -ENOSPC : build_map(dst, &out, &m);
		list_free(dst, &out, cap_out);
	}
	list_free(dst, &a, cap_a);
	list_free(dst, &b, cap_b);
	return rc ? rc : publish_in_group(dst, m);
}

static bool setop_args_bad(const struct gm_rangeset *dst, const struct gm_rangeset *src)
{
	return !dst || !src || ((dst->flags ^ src->flags) & GM_RCU);
}

int gm_rangeset_union(struct gm_rangeset *dst, const struct gm_rangeset *src)
{
	if (setop_args_bad(dst, src))
		return -EINVAL;
	return apply_setop(dst, src, SET_UNION);
}

int gm_rangeset_subtract(struct gm_rangeset *dst, const struct gm_rangeset *src)
{
	if (setop_args_bad(dst, src))
		return -EINVAL;
	return apply_setop(dst, src, SET_SUBTRACT);
}

int gm_rangeset_intersect(struct gm_rangeset *dst, const struct gm_rangeset *src)
{
	if (setop_args_bad(dst, src))
		return -EINVAL;
	return apply_setop(dst, src, SET_INTERSECT);
}

int gm_rangeset_purge(struct gm_rangeset *s)
{
	if (!s)
		return -EINVAL;
	struct gm_rangemap *m = map_new(s);
	if (!m)
		return -ENOMEM;
	return publish_in_group(s, m);
}

int gm_rangeset_swap(struct gm_rangeset *a, struct gm_rangeset *b)
{
	if (!a || !b || ((a->flags ^ b->flags) & GM_RCU))
		return -EINVAL;
	if (a == b)
		return 0;
	struct gm_rangemap *ma = map_of(a), *mb = map_of(b);
	if (over_limit(a, gm_rangemap_count(mb)) ||
	    over_limit(b, gm_rangemap_count(ma)))
		return -ENOSPC;
	return swap_maps(a, b, ma, mb);
}

/* ---- dump and validate ------------------------------------------------------- */
int gm_rangeset_dump(const struct gm_rangeset *s, FILE *f)
{
	struct gm_rangemap_iter c;
	struct gm_range r;
	bool first = true;
	if (!s || !f)
		return -EINVAL;
	int bad = fprintf(f, "%s {", s->name) < 0;
	gm_rangemap_iter_init(&c, map_of(s), 0, UINT64_MAX, 0);
	while (gm_rangemap_iter_next(&c, &r) == 0) {
		const char *sep = first ? " " : ", ";
		first = false;
		if (r.first == r.last)
			bad |= fprintf(f, "%s[%#" PRIx64 "]", sep, r.first) < 0;
		else
			bad |= fprintf(f, "%s[%#" PRIx64 ", %#" PRIx64 "]", sep,
				       r.first, r.last) < 0;
	}
	bad |= fprintf(f, first ? "}\n" : " }\n") < 0;
	return bad ? -EIO : 0;
}

int gm_rangeset_validate(const struct gm_rangeset *s, const char **reason)
{
	const struct gm_rangemap *m = s ? map_of(s) : NULL;
	const char *why = NULL;
	if (!s) {
		why = "NULL set";
	} else if (!m) {
		why = "set has no map";
	} else if (gm_rangemap_validate(m, &why)) {
		/* why set by the map */
	} else if (over_limit(s, gm_rangemap_count(m))) {
		why = "more ranges than the set's limit";
	} else {
		struct gm_rangemap_iter c;
		struct gm_range r, prev = {0, 0, 0};
		uint64_t n = 0;
		gm_rangemap_iter_init(&c, m, 0, UINT64_MAX, 0);
		while (!why && gm_rangemap_iter_next(&c, &r) == 0) {
			if (r.value != SET_VALUE)
				why = "a range carries a value other than SET_VALUE";
			else if (n && prev.last + 1 >= r.first)
				why = "two ranges touch or overlap (not merged)";
			prev = r;
			n++;
		}
		if (!why && n != gm_rangemap_count(m))
			why = "range count differs from the ranges iterated";
	}
	if (why) {
		if (reason)
			*reason = why;
		return -EINVAL;
	}
	return 0;
}

/* ---- groups: which member holds an index ---------------------------------- */
/*
 * A group's index (struct chunk_table): open addressing with linear probing,
 * power-of-two capacity, at most 3/4 full.
 *
 *   slot:  | key = index >> 3 (EMPTY_KEY: never used) | owners (8 bytes) |
 *   owners byte i, for index key * 8 + i: NOBODY if no member's small range
 *   (at most GM_RANGESET_GROUP_SMALL indices) holds it; else bits 0-5 the
 *   lowest member that does, bit 6 (SHARED) set if a later one does too.
 *   SHARED spares a member that lets go of an index the lookups in the
 *   others' trees for its next holder, unless there is one.
 *
 * Invariants (gm_rangeset_group_validate):
 *  G1 every index of every member's small range has a slot, and each owners
 *     byte is exactly as above;
 *  G2 used counts the slots with a key, live those with an owner; used never
 *     passes 3/4 of the capacity, so a probe always ends (a change first
 *     makes room for the NEW_CHUNKS slots it may claim);
 *  G3 small and large[k] count the members' small and other ranges; ask has
 *     bit k when large[k] > 0 (a selection asks those members' trees).
 *
 * Readers never see a slot half-made: a key, once written, stays until the
 * table is replaced (a slot whose owners are all NOBODY is dead, comes back
 * to life only for its own key, and is dropped when the table is copied),
 * and each change to a chunk is one store of its owners word. A reader that
 * probes while the writer claims slots can only miss a chunk that was not
 * there when it began. Whole tables are replaced with one release store and
 * freed after a grace period.
 */
#define CHUNK_SHIFT 3
#define NOBODY 0xffu
#define SHARED 0x40u         /* owners byte: a later member holds it too */
#define OWNER_MASK 0x3fu
#define ALL_NOBODY UINT64_MAX
#define EMPTY_KEY UINT64_MAX /* chunk numbers end at 2^61 - 1 */
#define TABLE_MIN 64
#define WINDOW_MAX 8         /* ranges a change may meet and still edit in place */
#define NEW_CHUNKS 9         /* most slots one change claims: 3 ranges, 3 chunks each */


struct chunk_slot {
	_Atomic uint64_t key;
	_Atomic uint64_t owners;
};

struct chunk_table {
	uint64_t mask;  /* capacity - 1 */
	unsigned shift; /* 64 - log2(capacity) */
	uint64_t used;  /* slots with a key */
	uint64_t live;  /* slots with an owner */
	struct chunk_slot slot[];
};

static inline bool range_small(uint64_t first, uint64_t last)
{
	return last - first < GM_RANGESET_GROUP_SMALL;
}

/* The owners byte of offset i (owner and SHARED, or NOBODY). */
static inline unsigned owner_at(uint64_t owners, unsigned i)
{
	return (unsigned)(owners >> (8 * i)) & 0xffu;
}

static inline unsigned byte_owner(unsigned b)
{
	return b == NOBODY ? NOBODY : b & OWNER_MASK;
}

static inline uint64_t owner_set(uint64_t owners, unsigned i, unsigned k)
{
	return (owners & ~(0xffull << (8 * i))) | ((uint64_t)k << (8 * i));
}

static struct gm_reclaim *group_reclaim(const struct gm_rangeset_group *g)
{
	return (struct gm_reclaim *)(uintptr_t)&g->reclaim;
}

static struct chunk_table *group_table(const struct gm_rangeset_group *g)
{
	return atomic_load_explicit(&((struct gm_rangeset_group *)g)->index,
				    memory_order_acquire);
}

static struct gm_rangeset *group_member(const struct gm_rangeset_group *g, unsigned k)
{
	return atomic_load_explicit(&((struct gm_rangeset_group *)g)->member[k],
				    memory_order_acquire);
}

/* ---- the chunk table ---- */
static uint64_t table_cap(const struct chunk_table *t) { return t->mask + 1; }

static size_t table_bytes(uint64_t cap)
{
	return sizeof(struct chunk_table) + cap * sizeof(struct chunk_slot);
}

/* The capacity that holds n slots at most 3/4 full. */
static uint64_t table_cap_for(uint64_t n)
{
	uint64_t cap = TABLE_MIN;
	while (cap / 4 * 3 < n)
		cap *= 2;
	return cap;
}

static bool table_has_room(const struct chunk_table *t)
{
	return t->used + NEW_CHUNKS <= table_cap(t) / 4 * 3;
}

static struct chunk_table *table_new(const struct gm_rangeset_group *g, uint64_t cap)
{
	struct chunk_table *t = gm_alloc_mem(g->alloc, table_bytes(cap), 64);
	if (!t)
		return NULL;
	t->mask = cap - 1;
	t->shift = 64u - (unsigned)__builtin_ctzll(cap);
	t->used = t->live = 0;
	for (uint64_t i = 0; i < cap; i++) {
		atomic_init(&t->slot[i].key, EMPTY_KEY);
		atomic_init(&t->slot[i].owners, ALL_NOBODY);
	}
	return t;
}

static void table_free(const struct gm_rangeset_group *g, struct chunk_table *t)
{
	gm_alloc_release(g->alloc, t, table_bytes(table_cap(t)));
}

static inline uint64_t chunk_home(const struct chunk_table *t, uint64_t chunk)
{
	return (chunk * 0x9e3779b97f4a7c15ull) >> t->shift;
}

/* Reader: chunk's slot, or NULL. */
static const struct chunk_slot *table_find(const struct chunk_table *t, uint64_t chunk)
{
	for (uint64_t h = chunk_home(t, chunk);; h = (h + 1) & t->mask) {
		uint64_t key = atomic_load_explicit(&t->slot[h].key, memory_order_acquire);
		if (key == chunk)
			return &t->slot[h];
		if (key == EMPTY_KEY)
			return NULL;
	}
}

/* Writer: chunk's slot, claimed (owners all NOBODY) if it had none. */
static struct chunk_slot *table_claim(struct chunk_table *t, uint64_t chunk)
{
	uint64_t h = chunk_home(t, chunk);
	for (;; h = (h + 1) & t->mask) {
		uint64_t key = gm_load_relaxed(&t->slot[h].key);
		if (key == chunk)
			return &t->slot[h];
		if (key == EMPTY_KEY)
			break;
	}
	t->used++;
	gm_store_release(&t->slot[h].key, chunk);
	return &t->slot[h];
}

/* Writer: one store of a chunk's new owners. */
static void slot_store(struct chunk_table *t, struct chunk_slot *s, uint64_t owners)
{
	uint64_t old = gm_load_relaxed(&s->owners);
	if (old == owners)
		return;
	if (old == ALL_NOBODY)
		t->live++;
	else if (owners == ALL_NOBODY)
		t->live--;
	gm_store_release(&s->owners, owners);
}

/* A copy of t's live slots in a table of cap slots (dead ones dropped). */
static struct chunk_table *table_copy(const struct gm_rangeset_group *g,
				      const struct chunk_table *t, uint64_t cap)
{
	struct chunk_table *n = table_new(g, cap);
	if (!n)
		return NULL;
	for (uint64_t i = 0; i <= t->mask; i++) {
		uint64_t owners = gm_load_relaxed(&t->slot[i].owners);
		if (owners != ALL_NOBODY)
			slot_store(n, table_claim(n, gm_load_relaxed(&t->slot[i].key)), owners);
	}
	return n;
}

/* ---- what the members hold ---- */
/* The members as a rebuild sees them: join, leave and whole-set operations
 * rebuild from a view with their change applied before it is made. */
struct view {
	uint64_t mask;
	const struct gm_rangemap *map[GM_RANGESET_GROUP_MAX];
};

struct census {
	uint64_t small, chunks;
	uint64_t large[GM_RANGESET_GROUP_MAX];
};

static void view_of(const struct gm_rangeset_group *g, struct view *v)
{
	v->mask = gm_load_relaxed(&((struct gm_rangeset_group *)g)->members);
	for (uint64_t m = v->mask; m; m &= m - 1) {
		unsigned k = (unsigned)__builtin_ctzll(m);
		v->map[k] = map_of(group_member(g, k));
	}
}

/* A walk over every range of a view's members, member by member in number
 * order; k is the member whose range view_walk_next gave last. */
struct view_walk {
	const struct view *v;
	uint64_t left; /* members not started yet */
	unsigned k;    /* NOBODY before the first */
	struct gm_rangemap_iter cur;
};

static void view_walk_init(struct view_walk *w, const struct view *v)
{
	w->v = v;
	w->left = v->mask;
	w->k = NOBODY;
}

static bool view_walk_next(struct view_walk *w, struct gm_range *r)
{
	while (w->k == NOBODY || gm_rangemap_iter_next(&w->cur, r)) {
		if (!w->left)
			return false;
		w->k = (unsigned)__builtin_ctzll(w->left);
		w->left &= w->left - 1;
		gm_rangemap_iter_init(&w->cur, w->v->map[w->k], 0, UINT64_MAX, 0);
	}
	return true;
}

static void take_census(const struct view *v, struct census *c)
{
	struct view_walk w;
	struct gm_range r;
	memset(c, 0, sizeof(*c));
	view_walk_init(&w, v);
	while (view_walk_next(&w, &r)) {
		if (!range_small(r.first, r.last)) {
			c->large[w.k]++;
			continue;
		}
		c->small++;
		c->chunks += (r.last >> CHUNK_SHIFT) - (r.first >> CHUNK_SHIFT) + 1;
	}
}

static uint64_t large_mask(uint64_t members, const uint64_t *large)
{
	uint64_t mask = 0;
	for (uint64_t m = members; m; m &= m - 1) {
		unsigned k = (unsigned)__builtin_ctzll(m);
		if (large[k])
			mask |= 1ull << k;
	}
	return mask;
}

/* Claims the chunks of small range [first, last] for member k: each index
 * without an owner gets k, one with an owner is SHARED (members are filled
 * in increasing order). */
static void fill_range(struct chunk_table *t, unsigned k, uint64_t first, uint64_t last)
{
	for (uint64_t c = first >> CHUNK_SHIFT;; c++) {
		struct chunk_slot *s = table_claim(t, c);
		uint64_t owners = gm_load_relaxed(&s->owners);
		/* Offsets in the chunk, not indices: the last chunk ends at
		 * UINT64_MAX. */
		unsigned from = c == first >> CHUNK_SHIFT ? (unsigned)(first & 7) : 0;
		unsigned to = c == last >> CHUNK_SHIFT ? (unsigned)(last & 7) : 7;
		for (unsigned i = from; i <= to; i++) {
			unsigned b = owner_at(owners, i);
			owners = owner_set(owners, i, b == NOBODY ? k : b | SHARED);
		}
		slot_store(t, s, owners);
		if (c == last >> CHUNK_SHIFT)
			return;
	}
}

/* Every small range of the view's members, in member order. */
static void table_fill(struct chunk_table *t, const struct view *v)
{
	struct view_walk w;
	struct gm_range r;
	view_walk_init(&w, v);
	while (view_walk_next(&w, &r))
		if (range_small(r.first, r.last))
			fill_range(t, w.k, r.first, r.last);
}

/* A new table for the view (c its census): sized for c->chunks, then, if
 * the chunks were shared more than that bound assumed, copied into a
 * smaller one when memory allows. NULL if out of memory. */
static struct chunk_table *table_build(const struct gm_rangeset_group *g, const struct view *v,
				       const struct census *c)
{
	struct chunk_table *t = table_new(g, table_cap_for(c->chunks + NEW_CHUNKS));
	if (!t)
		return NULL;
	table_fill(t, v);
	uint64_t fit = table_cap_for(t->live + NEW_CHUNKS);
	if (fit < table_cap(t)) {
		struct chunk_table *smaller = table_copy(g, t, fit);
		if (smaller) {
			table_free(g, t);
			t = smaller;
		}
	}
	return t;
}

/* Frees a table readers may hold: after a grace period through the
 * reclaim list, or (if its batch cannot be allocated) after waiting for
 * one here. */
static void table_retire(struct gm_rangeset_group *g, struct chunk_table *t)
{
	if (!t)
		return;
	if (gm_reclaim_reserve(group_reclaim(g), 1) == 0) {
		/* Queued at once: a table is far more than the few bytes a
		 * partly filled batch may hold back. */
		gm_reclaim_retire(group_reclaim(g), t, table_bytes(table_cap(t)));
		gm_reclaim_flush(group_reclaim(g));
		return;
	}
	if (g->flags & GM_RCU)
		gm_rcu_synchronize();
	table_free(g, t);
}

/* Makes t (may be NULL: no index) the group's index for state c. ask grows
 * before the table is seen and shrinks after, so a reader always asks at
 * least the members whose large ranges its table does not cover. */
static void group_install(struct gm_rangeset_group *g, const struct census *c,
			  uint64_t members, struct chunk_table *t)
{
	struct chunk_table *old = gm_load_relaxed(&g->index);
	uint64_t ask = large_mask(members, c->large);
	g->small = c->small;
	memcpy(g->large, c->large, sizeof(g->large));
	gm_store_release(&g->ask, gm_load_relaxed(&g->ask) | ask);
	gm_store_release(&g->index, t);
	gm_store_release(&g->ask, ask);
	if (old != t)
		table_retire(g, old);
}

/* A rebuild prepared (allocations done) but not yet visible. */
struct rebuild {
	struct census c;
	struct chunk_table *t;
};

/* Counts the view and, if the group should have an index, builds it.
 * -ENOMEM (nothing allocated) when fallible; otherwise goes on without an
 * index. */
static int rebuild_prepare(struct gm_rangeset_group *g, const struct view *v, bool fallible,
			   struct rebuild *rb)
{
	take_census(v, &rb->c);
	rb->t = NULL;
	bool had = gm_load_relaxed(&g->index) != NULL;
	if (rb->c.small < (had ? GM_RANGESET_GROUP_INDEX_MIN / 2 : GM_RANGESET_GROUP_INDEX_MIN))
		return 0;
	if (gm_reclaim_reserve(group_reclaim(g), 1) == 0)
		rb->t = table_build(g, v, &rb->c);
	/* Building a first index is best effort; losing one is a failure. */
	return !rb->t && fallible && had ? -ENOMEM : 0;
}

static void rebuild_cancel(struct gm_rangeset_group *g, struct rebuild *rb)
{
	if (rb->t)
		table_free(g, rb->t);
}

static void rebuild_commit(struct gm_rangeset_group *g, const struct view *v, struct rebuild *rb)
{
	group_install(g, &rb->c, v->mask, rb->t);
}

/* ---- a member's single-range change ---- */
/* The ranges overlapping [a, b] (whole): the first WINDOW_MAX of them, and
 * how many there are, small and not. */
struct window {
	struct gm_range r[WINDOW_MAX];
	uint64_t total, small, large;
};

static void window_count(struct window *w, const struct gm_range *r)
{
	if (w->total < WINDOW_MAX)
		w->r[w->total] = *r;
	w->total++;
	if (range_small(r->first, r->last))
		w->small++;
	else
		w->large++;
}

/* Slot by slot with lookups (a change's window usually holds a range or
 * two, and a lookup is several times cheaper than setting up a cursor);
 * a cursor counts the rest when the window turns out to hold many. */
static void window_read(const struct gm_rangemap *m, uint64_t a, uint64_t b, struct window *w)
{
	w->total = w->small = w->large = 0;
	uint64_t x = a;
	for (;;) {
		struct gm_range r = {0, 0, SET_VALUE};
		bool present = gm_rangemap_load(m, x, NULL, &r.first, &r.last) == 0;
		if (present)
			window_count(w, &r);
		/* A gap follows a range: the next range starts two past it. */
		if (r.last >= b || (present && r.last + 1 >= b))
			return;
		x = r.last + 1;
		if (w->total > WINDOW_MAX)
			break;
	}
	struct gm_rangemap_iter c;
	struct gm_range r;
	gm_rangemap_iter_init(&c, m, x, b, 0);
	while (gm_rangemap_iter_next(&c, &r) == 0)
		window_count(w, &r);
}

/* Whether a range of window w holding x is small: whether member k held
 * (before) or holds (after) x by a small range, for x in a range of either
 * window. */
static bool holds_small(const struct window *w, uint64_t x)
{
	for (uint64_t i = 0; i < w->total && i < WINDOW_MAX; i++)
		if (w->r[i].first <= x && x <= w->r[i].last)
			return range_small(w->r[i].first, w->r[i].last);
	return false;
}

/* Whether map m holds x by a small range (one the index holds). */
static bool map_holds_small(const struct gm_rangemap *m, uint64_t x)
{
	uint64_t first, last;
	return gm_rangemap_load(m, x, NULL, &first, &last) == 0 && range_small(first, last);
}

/* The lowest member above k holding x by a small range, or NOBODY. */
static unsigned next_holder(const struct gm_rangeset_group *g, unsigned k, uint64_t x)
{
	uint64_t above = gm_load_relaxed(&((struct gm_rangeset_group *)g)->members) &
			 ~((2ull << k) - 1);
	for (; above; above &= above - 1) {
		unsigned m = (unsigned)__builtin_ctzll(above);
		if (map_holds_small(map_of(group_member(g, m)), x))
			return m;
	}
	return NOBODY;
}

/* The owners byte for x when its lowest holder after member k is wanted. */
static unsigned holder_after(const struct gm_rangeset_group *g, unsigned k, uint64_t x)
{
	unsigned m = next_holder(g, k, x);
	if (m == NOBODY)
		return NOBODY;
	return next_holder(g, m, x) == NOBODY ? m : m | SHARED;
}

/* Rewrites chunk c's owners bytes for member k's change: only indices that
 * k held by a small range before and not after, or the other way round,
 * change (the windows list every range of k around the change). The other
 * members' trees are asked only when k lets go of an index that some other
 * member holds too. */
static void chunk_redo(const struct gm_rangeset_group *g, struct chunk_table *t, unsigned k,
		       uint64_t c, const struct window *before, const struct window *after)
{
	struct chunk_slot *s = table_claim(t, c);
	uint64_t owners = gm_load_relaxed(&s->owners);
	for (unsigned i = 0; i < 8; i++) {
		uint64_t x = (c << CHUNK_SHIFT) + i;
		bool held = holds_small(before, x), holds = holds_small(after, x);
		if (held == holds)
			continue;
		unsigned b = owner_at(owners, i), owner = byte_owner(b), nb;
		if (holds) /* owner is not k: nobody, one before k, or one after */
			nb = owner == NOBODY ? k : owner < k ? b | SHARED : k | SHARED;
		else if (owner == k)
			nb = b & SHARED ? holder_after(g, k, x) : NOBODY;
		else /* owner < k stays; is anyone after it left? (k's tree is new) */
			nb = next_holder(g, owner, x) == NOBODY ? owner : owner | SHARED;
		owners = owner_set(owners, i, nb);
	}
	slot_store(t, s, owners);
}

/* Adds the chunks of w's small ranges to c[0..*n), once each. */
static void window_chunks(const struct window *w, uint64_t *c, unsigned *n)
{
	for (uint64_t i = 0; i < w->total && i < WINDOW_MAX; i++) {
		if (!range_small(w->r[i].first, w->r[i].last))
			continue;
		for (uint64_t x = w->r[i].first >> CHUNK_SHIFT; x <= w->r[i].last >> CHUNK_SHIFT; x++) {
			unsigned j = 0;
			while (j < *n && c[j] != x)
				j++;
			if (j == *n)
				c[(*n)++] = x;
		}
	}
}

/* Brings t up to date after member k's change, from the windows before and
 * after it. Each chunk is redone once (chunk_redo reads the byte it
 * rewrites). */
static void table_edit(struct gm_rangeset_group *g, struct chunk_table *t, unsigned k,
		       const struct window *before, const struct window *after)
{
	uint64_t bit = 1ull << k, ask = gm_load_relaxed(&g->ask);
	uint64_t chunks[2 * WINDOW_MAX * 3];
	unsigned n = 0;
	if (g->large[k])
		gm_store_release(&g->ask, ask | bit);
	window_chunks(before, chunks, &n);
	window_chunks(after, chunks, &n);
	for (unsigned i = 0; i < n; i++)
		chunk_redo(g, t, k, chunks[i], before, after);
	if (!g->large[k])
		gm_store_release(&g->ask, gm_load_relaxed(&g->ask) & ~bit);
}

/* Replaces the index with a copy of cap slots (same contents). */
static int table_resize(struct gm_rangeset_group *g, struct chunk_table *t, uint64_t cap)
{
	if (gm_reclaim_reserve(group_reclaim(g), 1))
		return -ENOMEM;
	struct chunk_table *n = table_copy(g, t, cap);
	if (!n)
		return -ENOMEM;
	gm_store_release(&g->index, n);
	table_retire(g, t);
	return 0;
}

/* After a change: build the index once the group is large enough, drop it
 * when it shrank under half of that, shrink a mostly empty table. Best
 * effort: nothing here can make the change fail, and a drop or shrink
 * whose retirement cannot be allocated waits for a later change (a
 * single-range change never waits for a grace period). */
static void group_settle(struct gm_rangeset_group *g)
{
	struct chunk_table *t = gm_load_relaxed(&g->index);
	if (!t) {
		if (g->small < GM_RANGESET_GROUP_INDEX_MIN)
			return;
		struct view v;
		struct rebuild rb;
		view_of(g, &v);
		rebuild_prepare(g, &v, false, &rb);
		if (rb.t)
			rebuild_commit(g, &v, &rb);
		return;
	}
	if (g->small < GM_RANGESET_GROUP_INDEX_MIN / 2) {
		if (gm_reclaim_reserve(group_reclaim(g), 1) == 0) {
			gm_store_release(&g->index, NULL);
			table_retire(g, t);
		}
		return;
	}
	uint64_t fit = table_cap_for(t->live + NEW_CHUNKS);
	if (fit * 4 <= table_cap(t))
		table_resize(g, t, fit);
}

/* The ranges overlapping the window after adding (add) or removing
 * [first, last], from those before (all of them, before->total <=
 * WINDOW_MAX): an add merges them all with [first, last]; a remove keeps
 * what lies outside [first, last]. Saves reading the window again. */
static void window_after(const struct window *before, uint64_t first, uint64_t last, bool add,
			 struct window *after)
{
	after->total = after->small = after->large = 0;
	if (add) {
		struct gm_range r = {first, last, SET_VALUE};
		if (before->total) {
			r.first = before->r[0].first < first ? before->r[0].first : first;
			r.last = before->r[before->total - 1].last > last ? before->r[before->total - 1].last
									  : last;
		}
		window_count(after, &r);
		return;
	}
	for (uint64_t i = 0; i < before->total; i++) {
		const struct gm_range *r = &before->r[i];
		if (r->first < first)
			window_count(after, &(struct gm_range){r->first,
							       r->last < first ? r->last : first - 1,
							       SET_VALUE});
		if (r->last > last)
			window_count(after, &(struct gm_range){r->first > last ? r->first : last + 1,
							       r->last, SET_VALUE});
	}
}

/*
 * Adds (add) or removes [first, last] in member s of group g, with the
 * index kept.
 * The index's room is made before the set is touched (a table with no room
 * grows; a change that meets more than WINDOW_MAX ranges gets a table to
 * rebuild into), so -ENOMEM leaves both as they were. The window is
 * [first - 1, last + 1]: every range the change can merge, cut or drop
 * overlaps it, before or after.
 */
static int group_change(struct gm_rangeset *s, uint64_t first, uint64_t last, bool add)
{
	struct gm_rangeset_group *g = s->group;
	struct gm_rangemap *m = map_of(s);
	uint64_t a = first ? first - 1 : 0, b = last == UINT64_MAX ? last : last + 1;
	struct window before, after;
	struct chunk_table *t = gm_load_relaxed(&g->index), *fresh = NULL;
	window_read(m, a, b, &before);
	if (t && before.total <= WINDOW_MAX && !table_has_room(t)) {
		int rc = table_resize(g, t, table_cap_for(t->live + NEW_CHUNKS));
		if (rc)
			return rc;
		t = gm_load_relaxed(&g->index);
	}
	if (t && before.total > WINDOW_MAX) {
		if (gm_reclaim_reserve(group_reclaim(g), 1))
			return -ENOMEM;
		/* Its fill may claim NEW_CHUNKS slots more than t has live,
		 * and must leave room for the next change. */
		fresh = table_new(g, table_cap_for(t->live + 2 * NEW_CHUNKS));
		if (!fresh)
			return -ENOMEM;
	}
	int rc = add ? gm_rangemap_store(m, first, last, SET_VALUE) : gm_rangemap_remove(m, first, last);
	if (rc) {
		if (fresh)
			table_free(g, fresh);
		return rc;
	}
	if (before.total > WINDOW_MAX) /* the list is cut short: read it */
		window_read(m, a, b, &after);
	else
		window_after(&before, first, last, add, &after);
	g->small = g->small - before.small + after.small;
	g->large[s->member] = g->large[s->member] - before.large + after.large;
	if (fresh) { /* a change this wide: fill the new table from scratch */
		struct view v;
		struct census c = {.small = g->small};
		view_of(g, &v);
		memcpy(c.large, g->large, sizeof(c.large));
		table_fill(fresh, &v);
		group_install(g, &c, v.mask, fresh);
	} else if (t) {
		table_edit(g, t, s->member, &before, &after);
	}
	group_settle(g);
	return 0;
}

/* ---- groups: life, membership, selection ----------------------------------- */
int gm_rangeset_group_create(struct gm_rangeset_group **out, unsigned flags,
			     const struct gm_allocator *alloc)
{
	if (!out || (flags & ~GM_RCU))
		return -EINVAL;
	alloc = alloc ? alloc : gm_alloc_default();
	struct gm_rangeset_group *g = gm_alloc_mem(alloc, sizeof(*g), _Alignof(struct gm_rangeset_group));
	if (!g)
		return -ENOMEM;
	memset(g, 0, sizeof(*g));
	g->alloc = alloc;
	g->flags = flags;
	atomic_init(&g->index, NULL);
	gm_reclaim_init(group_reclaim(g), g->alloc, flags & GM_RCU);
	*out = g;
	return 0;
}

void gm_rangeset_group_destroy(struct gm_rangeset_group *g)
{
	if (!g)
		return;
	struct chunk_table *t = gm_load_relaxed(&g->index);
	gm_store_release(&g->index, NULL);
	for (uint64_t m = gm_load_relaxed(&g->members); m; m &= m - 1) {
		unsigned k = (unsigned)__builtin_ctzll(m);
		struct gm_rangeset *s = group_member(g, k);
		s->group = NULL;
		gm_store_release(&g->member[k], NULL);
	}
	gm_store_release(&g->members, 0);
	table_retire(g, t);
	gm_reclaim_destroy(group_reclaim(g));
	gm_alloc_release(g->alloc, g, sizeof(*g));
}

int gm_rangeset_group_join(struct gm_rangeset_group *g, struct gm_rangeset *s)
{
	if (!g || !s || ((s->flags ^ g->flags) & GM_RCU))
		return -EINVAL;
	if (s->group)
		return -EEXIST;
	uint64_t members = gm_load_relaxed(&g->members);
	if (members == UINT64_MAX)
		return -ENOSPC;
	unsigned k = (unsigned)__builtin_ctzll(~members);
	struct view v;
	struct rebuild rb;
	view_of(g, &v);
	v.mask |= 1ull << k;
	v.map[k] = map_of(s);
	int rc = rebuild_prepare(g, &v, true, &rb);
	if (rc)
		return rc;
	/* The member first: a reader told to ask k finds it. */
	gm_store_release(&g->member[k], s);
	s->group = g;
	s->member = k;
	rebuild_commit(g, &v, &rb);
	gm_store_release(&g->members, v.mask);
	return (int)k;
}

int gm_rangeset_group_leave(struct gm_rangeset *s)
{
	if (!s)
		return -EINVAL;
	struct gm_rangeset_group *g = s->group;
	if (!g)
		return -ENOENT;
	unsigned k = s->member;
	struct view v;
	struct rebuild rb;
	view_of(g, &v);
	v.mask &= ~(1ull << k);
	rebuild_prepare(g, &v, false, &rb); /* no room: the group goes on unindexed */
	rebuild_commit(g, &v, &rb);
	gm_store_release(&g->members, v.mask);
	gm_store_release(&g->member[k], NULL);
	s->group = NULL;
	return 0;
}

/* The first member of mask (in number order) holding index, or -1: their
 * trees asked side by side, eight at a time. */
static int ask_members(const struct gm_rangeset_group *g, uint64_t mask, uint64_t index)
{
	while (mask) {
		const struct gm_rangemap *maps[8];
		unsigned who[8], n = 0;
		for (; mask && n < 8; mask &= mask - 1) {
			unsigned k = (unsigned)__builtin_ctzll(mask);
			const struct gm_rangeset *s = group_member(g, k);
			if (s) {
				maps[n] = map_of(s);
				who[n++] = k;
			}
		}
		uint64_t hit = n ? gm_rangemap_contains_many(maps, n, index) : 0;
		if (hit)
			return (int)who[__builtin_ctzll(hit)];
	}
	return -ENOENT;
}

/*
 * The writer grows ask (W1), then changes the index (a table pointer or an
 * owners word, W2), then shrinks ask (W3). ask is read before the index and
 * again after it, and both are asked: if this reader saw the index before
 * W2, its first read came before W3 and still holds the old members; if
 * after W2, its second read comes after W1 and holds the new ones.
 */
int gm_rangeset_group_select(const struct gm_rangeset_group *g, uint64_t index)
{
	struct gm_rangeset_group *w = (struct gm_rangeset_group *)g;
	if (GM_UNLIKELY(!g))
		return -EINVAL;
	uint64_t ask = atomic_load_explicit(&w->ask, memory_order_acquire);
	const struct chunk_table *t = group_table(g);
	if (!t)
		return ask_members(g, atomic_load_explicit(&w->members, memory_order_acquire), index);
	const struct chunk_slot *s = table_find(t, index >> CHUNK_SHIFT);
	unsigned owner = s ? byte_owner(owner_at(atomic_load_explicit(
					     &((struct chunk_slot *)s)->owners, memory_order_acquire),
				     (unsigned)(index & 7)))
			   : NOBODY;
	ask |= atomic_load_explicit(&w->ask, memory_order_acquire);
	if (owner != NOBODY)
		ask &= (1ull << owner) - 1; /* only members ranked before it */
	if (ask) {
		int k = ask_members(g, ask, index);
		if (k >= 0)
			return k;
	}
	return owner == NOBODY ? -ENOENT : (int)owner;
}

struct gm_rangeset *gm_rangeset_group_member(const struct gm_rangeset_group *g, unsigned k)
{
	return g && k < GM_RANGESET_GROUP_MAX ? group_member(g, k) : NULL;
}

bool gm_rangeset_group_indexed(const struct gm_rangeset_group *g)
{
	return g && group_table(g) != NULL;
}

size_t gm_rangeset_group_bytes(const struct gm_rangeset_group *g)
{
	if (!g)
		return 0;
	const struct chunk_table *t = group_table(g);
	return sizeof(*g) + (t ? table_bytes(table_cap(t)) : 0);
}

/* ---- groups: validate ---- */
/* x's owners byte as the members' trees say it should be. */
static unsigned true_owner(const struct view *v, uint64_t x)
{
	unsigned b = NOBODY;
	for (uint64_t m = v->mask; m; m &= m - 1) {
		unsigned k = (unsigned)__builtin_ctzll(m);
		if (!map_holds_small(v->map[k], x))
			continue;
		if (b != NOBODY)
			return b | SHARED;
		b = k;
	}
	return b;
}

static const char *table_check(const struct chunk_table *t, const struct view *v)
{
	uint64_t used = 0, live = 0;
	for (uint64_t i = 0; i <= t->mask; i++) {
		uint64_t key = gm_load_relaxed(&t->slot[i].key);
		uint64_t owners = gm_load_relaxed(&t->slot[i].owners);
		if (key == EMPTY_KEY) {
			if (owners != ALL_NOBODY)
				return "an empty slot has owners";
			continue;
		}
		used++;
		live += owners != ALL_NOBODY;
		if (table_find(t, key) != &t->slot[i])
			return "a chunk's slot is not where its probe finds it";
		for (unsigned j = 0; j < 8; j++)
			if (owner_at(owners, j) != true_owner(v, (key << CHUNK_SHIFT) + j))
				return "an index's owners byte is not its holders' (owner, SHARED)";
	}
	if (used != t->used || live != t->live)
		return "used or live slot count is wrong";
	if (t->used > table_cap(t) / 4 * 3)
		return "table more than 3/4 full";
	struct view_walk w;
	struct gm_range r;
	view_walk_init(&w, v);
	while (view_walk_next(&w, &r))
		for (uint64_t c = r.first >> CHUNK_SHIFT;
		     range_small(r.first, r.last) && c <= r.last >> CHUNK_SHIFT; c++)
			if (!table_find(t, c))
				return "a small range's chunk has no slot";
	return NULL;
}

int gm_rangeset_group_validate(const struct gm_rangeset_group *g, const char **reason)
{
	const char *why = NULL;
	struct view v;
	struct census c;
	if (!g) {
		if (reason)
			*reason = "NULL group";
		return -EINVAL;
	}
	view_of(g, &v);
	for (unsigned k = 0; k < GM_RANGESET_GROUP_MAX && !why; k++) {
		const struct gm_rangeset *s = group_member(g, k);
		if (!(v.mask >> k & 1) != !s)
			why = "member slots and the member mask disagree";
		else if (s && (s->group != g || s->member != k))
			why = "a member does not know its group or number";
	}
	if (!why) {
		take_census(&v, &c);
		if (c.small != g->small || memcmp(c.large, g->large, sizeof(c.large)))
			why = "small or large range counts are wrong";
	}
	const struct chunk_table *t = group_table(g);
	if (!why && t && gm_load_relaxed(&((struct gm_rangeset_group *)g)->ask) !=
			     large_mask(v.mask, c.large))
		why = "ask is not the members with large ranges";
	if (!why && t)
		why = table_check(t, &v);
	if (why) {
		if (reason)
			*reason = why;
		return -EINVAL;
	}
	return 0;
}

/* ---- groups: whole-set changes of members ---------------------------------- */
/* Publishes m as member s's new map (a whole-set change), with the group's
 * index rebuilt for it first; -ENOMEM frees m and changes nothing. */
static int publish_in_group(struct gm_rangeset *s, struct gm_rangemap *m)
{
	struct gm_rangeset_group *g = s->group;
	if (!g) {
		map_publish(s, m);
		return 0;
	}
	struct view v;
	struct rebuild rb;
	view_of(g, &v);
	v.map[s->member] = m;
	int rc = rebuild_prepare(g, &v, true, &rb);
	if (rc) {
		map_free(s, m);
		return rc;
	}
	struct gm_rangemap *old = atomic_exchange_explicit(&s->map, m, memory_order_acq_rel);
	rebuild_commit(g, &v, &rb);
	map_free(s, old);
	return 0;
}

/* Prepares the rebuild of x's group (if any) for x holding mx (and, in the
 * same group, y holding my). */
static int swap_prepare(struct gm_rangeset *x, struct gm_rangemap *mx, struct gm_rangeset *y,
			struct gm_rangemap *my, struct view *v, struct rebuild *rb)
{
	view_of(x->group, v);
	v->map[x->member] = mx;
	if (y->group == x->group)
		v->map[y->member] = my;
	return rebuild_prepare(x->group, v, true, rb);
}

static int swap_maps(struct gm_rangeset *a, struct gm_rangeset *b, struct gm_rangemap *ma,
		     struct gm_rangemap *mb)
{
	struct gm_rangeset_group *ga = a->group, *gb = b->group == ga ? NULL : b->group;
	struct view va, vb;
	struct rebuild ra, rb;
	int rc = ga ? swap_prepare(a, mb, b, ma, &va, &ra) : 0;
	if (!rc && gb) {
		rc = swap_prepare(b, ma, a, mb, &vb, &rb);
		if (rc && ga)
			rebuild_cancel(ga, &ra);
	}
	if (rc)
		return rc;
	atomic_store_explicit(&a->map, mb, memory_order_release);
	atomic_store_explicit(&b->map, ma, memory_order_release);
	if (ga)
		rebuild_commit(ga, &va, &ra);
	if (gb)
		rebuild_commit(gb, &vb, &rb);
	return 0;
}
