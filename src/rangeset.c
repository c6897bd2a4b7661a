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
 *  - the map's GM_RANGEMAP_RCU flag equals the set's GM_RANGESET_RCU.
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

/* ---- the current map ------------------------------------------------------ */
static struct gm_rangemap *map_of(const struct gm_rangeset *s)
{
	return atomic_load_explicit(&((struct gm_rangeset *)s)->map,
				    memory_order_acquire);
}

static struct gm_rangemap *map_new(const struct gm_rangeset *s)
{
	struct gm_rangemap *m = gm_alloc_mem(s->alloc, sizeof(*m),
					     _Alignof(struct gm_rangemap));
	if (!m)
		return NULL;
	unsigned flags = (s->flags & GM_RANGESET_RCU) ? GM_RANGEMAP_RCU : 0;
	if (gm_rangemap_init(m, flags, s->alloc)) {
		gm_alloc_release(s->alloc, m, sizeof(*m));
		return NULL;
	}
	return m;
}

/* Frees a map nobody can reach any more (destroy waits for readers in RCU
 * mode before freeing nodes; the header goes after it). */
static void map_free(const struct gm_rangeset *s, struct gm_rangemap *m)
{
	gm_rangemap_destroy(m);
	gm_alloc_release(s->alloc, m, sizeof(*m));
}

/* Makes m the set's map and frees the one it replaces. */
static void map_publish(struct gm_rangeset *s, struct gm_rangemap *m)
{
	struct gm_rangemap *old = atomic_exchange_explicit(&s->map, m,
							   memory_order_acq_rel);
	map_free(s, old);
}

/* ---- life ----------------------------------------------------------------- */
int gm_rangeset_init(struct gm_rangeset *s, const char *name, unsigned flags,
		     uint64_t max_ranges, const struct gm_allocator *alloc)
{
	if (flags & ~GM_RANGESET_RCU)
		return -EINVAL;
	s->alloc = alloc ? alloc : gm_alloc_default();
	s->flags = flags;
	s->max_ranges = max_ranges;
	snprintf(s->name, sizeof(s->name), "%s", name ? name : "");
	struct gm_rangemap *m = map_new(s);
	if (!m)
		return -ENOMEM;
	atomic_init(&s->map, m);
	return 0;
}

void gm_rangeset_destroy(struct gm_rangeset *s)
{
	map_free(s, map_of(s));
	atomic_store_explicit(&s->map, NULL, memory_order_relaxed);
}

/* ---- counting what a change would leave ---------------------------------- */
/* Ranges that would remain after adding [first, last]: every range that
 * overlaps or touches it merges into one. O(log n + k). */
static uint64_t count_after_add(const struct gm_rangemap *m, uint64_t first,
				uint64_t last)
{
	struct gm_rangemap_cursor c;
	struct gm_range r;
	uint64_t merged = 0;
	gm_rangemap_cursor_init(&c, m, first ? first - 1 : 0,
				last == UINT64_MAX ? last : last + 1, 0);
	while (gm_rangemap_cursor_next(&c, &r) == 0)
		merged++;
	return gm_rangemap_count(m) - merged + 1;
}

/* Ranges that would remain after removing [first, last]: those inside it
 * go, one that straddles it on both sides becomes two. O(log n + k). */
static uint64_t count_after_remove(const struct gm_rangemap *m, uint64_t first,
				   uint64_t last)
{
	struct gm_rangemap_cursor c;
	struct gm_range r;
	uint64_t count = gm_rangemap_count(m);
	gm_rangemap_cursor_init(&c, m, first, last, 0);
	while (gm_rangemap_cursor_next(&c, &r) == 0) {
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
int gm_rangeset_add_range(struct gm_rangeset *s, uint64_t first, uint64_t last)
{
	if (first > last)
		return -EINVAL;
	struct gm_rangemap *m = map_of(s);
	if (s->max_ranges && over_limit(s, count_after_add(m, first, last)))
		return -ENOSPC;
	return gm_rangemap_store(m, first, last, SET_VALUE);
}

int gm_rangeset_remove_range(struct gm_rangeset *s, uint64_t first,
			     uint64_t last)
{
	if (first > last)
		return -EINVAL;
	struct gm_rangemap *m = map_of(s);
	if (s->max_ranges && over_limit(s, count_after_remove(m, first, last)))
		return -ENOSPC;
	return gm_rangemap_erase(m, first, last);
}

int gm_rangeset_claim_range(struct gm_rangeset *s, uint64_t size,
			    uint64_t align, uint64_t min, uint64_t max,
			    uint64_t *first)
{
	if (size == 0 || min > max || (align > 1 && (align & (align - 1))))
		return -EINVAL;
	struct gm_rangemap *m = map_of(s);
	uint64_t at;
	int rc = gm_rangemap_find_gap(m, size, align, min, max, &at);
	if (rc)
		return rc == -ENOSPC ? -ENOSPC : rc;
	rc = gm_rangeset_add_range(s, at, at + (size - 1));
	if (rc == 0)
		*first = at;
	return rc;
}

/* ---- queries ---------------------------------------------------------------- */
bool gm_rangeset_contains(const struct gm_rangeset *s, uint64_t index)
{
	return gm_rangemap_contains(map_of(s), index);
}

/* In groups of 8 (gm_rangemap_contains_many's own group size): a later
 * group is asked only if no set of the earlier ones holds index. */
int gm_rangeset_first_containing(const struct gm_rangeset *const *sets, unsigned n,
				 uint64_t index)
{
	const struct gm_rangemap *maps[8];
	for (unsigned at = 0; at < n && at < INT_MAX - 8; at += 8) {
		unsigned k = n - at < 8 ? n - at : 8;
		for (unsigned i = 0; i < k; i++)
			maps[i] = map_of(sets[at + i]);
		uint64_t mask = gm_rangemap_contains_many(maps, k, index);
		if (mask)
			return (int)(at + (unsigned)__builtin_ctzll(mask));
	}
	return -1;
}

bool gm_rangeset_contains_range(const struct gm_rangeset *s, uint64_t first,
				uint64_t last)
{
	uint64_t range_last;
	if (first > last)
		return false;
	return gm_rangemap_load(map_of(s), first, NULL, NULL, &range_last) == 0 &&
	       range_last >= last;
}

bool gm_rangeset_overlaps_range(const struct gm_rangeset *s, uint64_t first,
				uint64_t last)
{
	struct gm_range r;
	if (first > last)
		return false;
	return gm_rangemap_next(map_of(s), first, &r) == 0 && r.first <= last;
}

bool gm_rangeset_is_empty(const struct gm_rangeset *s)
{
	struct gm_range r;
	return gm_rangemap_next(map_of(s), 0, &r) != 0;
}

uint64_t gm_rangeset_count(const struct gm_rangeset *s)
{
	return gm_rangemap_count(map_of(s));
}

const char *gm_rangeset_name(const struct gm_rangeset *s)
{
	return s->name;
}

size_t gm_rangeset_bytes(const struct gm_rangeset *s)
{
	struct gm_rangemap_stats st;
	gm_rangemap_stats(map_of(s), &st);
	return (size_t)st.bytes + sizeof(struct gm_rangemap);
}

int gm_rangeset_report_ranges(const struct gm_rangeset *s, uint64_t a,
			      uint64_t b, gm_rangeset_report_fn cb, void *ctx)
{
	struct gm_rangemap_cursor c;
	struct gm_range r;
	if (a > b)
		return -EINVAL;
	gm_rangemap_cursor_init(&c, map_of(s), a, b, GM_RANGEMAP_ITER_CLIP);
	while (gm_rangemap_cursor_next(&c, &r) == 0) {
		int rc = cb(r.first, r.last, ctx);
		if (rc)
			return rc;
	}
	return 0;
}

/* Consumed pieces always form a prefix of the window: everything in
 * [a, stop - 1] goes, where stop is the first index of the piece whose
 * callback said no (or b + 1). So the removal is one erase. */
int gm_rangeset_consume_ranges(struct gm_rangeset *s, uint64_t a, uint64_t b,
			       gm_rangeset_report_fn cb, void *ctx)
{
	struct gm_rangemap_cursor c;
	struct gm_range r;
	if (a > b)
		return -EINVAL;
	struct gm_rangemap *m = map_of(s);
	bool consumed_any = false;
	uint64_t consumed_last = 0;
	int answer = 0;
	gm_rangemap_cursor_init(&c, m, a, b, GM_RANGEMAP_ITER_CLIP);
	while (gm_rangemap_cursor_next(&c, &r) == 0) {
		answer = cb(r.first, r.last, ctx);
		if (answer)
			break;
		consumed_any = true;
		consumed_last = r.last;
	}
	if (!consumed_any)
		return answer;
	/* Erase up to the last consumed index: no index between it and the
	 * stopping piece is in the set, so this is the same as [a, stop-1]. */
	int rc = gm_rangeset_remove_range(s, a, consumed_last);
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
	struct gm_rangemap_cursor c;
	gm_rangemap_cursor_init(&c, m, 0, UINT64_MAX, 0);
	while (l->n < n && gm_rangemap_cursor_next(&c, &l->r[l->n]) == 0)
		l->n++;
	return 0;
}

static void list_free(const struct gm_rangeset *owner, struct range_list *l,
		      uint64_t capacity)
{
	gm_alloc_release(owner->alloc, l->r, (capacity ? capacity : 1) * sizeof(struct gm_range));
}

enum setop { SET_UNION, SET_SUBTRACT, SET_INTERSECT };

/* Appends [f, l] to out, merging with the previous range if they touch. */
static void emit(struct range_list *out, uint64_t f, uint64_t l)
{
	if (out->n && out->r[out->n - 1].last != UINT64_MAX &&
	    out->r[out->n - 1].last + 1 >= f) {
		if (l > out->r[out->n - 1].last)
			out->r[out->n - 1].last = l;
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
	if (rc == 0)
		map_publish(dst, m);
	return rc;
}

int gm_rangeset_union(struct gm_rangeset *dst, const struct gm_rangeset *src)
{
	return apply_setop(dst, src, SET_UNION);
}

int gm_rangeset_subtract(struct gm_rangeset *dst, const struct gm_rangeset *src)
{
	return apply_setop(dst, src, SET_SUBTRACT);
}

int gm_rangeset_intersect(struct gm_rangeset *dst, const struct gm_rangeset *src)
{
	return apply_setop(dst, src, SET_INTERSECT);
}

int gm_rangeset_purge(struct gm_rangeset *s)
{
	struct gm_rangemap *m = map_new(s);
	if (!m)
		return -ENOMEM;
	map_publish(s, m);
	return 0;
}

int gm_rangeset_swap(struct gm_rangeset *a, struct gm_rangeset *b)
{
	if ((a->flags ^ b->flags) & GM_RANGESET_RCU)
		return -EINVAL;
	if (a == b)
		return 0;
	struct gm_rangemap *ma = map_of(a), *mb = map_of(b);
	if (over_limit(a, gm_rangemap_count(mb)) ||
	    over_limit(b, gm_rangemap_count(ma)))
		return -ENOSPC;
	atomic_store_explicit(&a->map, mb, memory_order_release);
	atomic_store_explicit(&b->map, ma, memory_order_release);
	return 0;
}

/* ---- dump and validate ------------------------------------------------------- */
int gm_rangeset_dump(const struct gm_rangeset *s, FILE *f)
{
	struct gm_rangemap_cursor c;
	struct gm_range r;
	bool first = true;
	int bad = fprintf(f, "%s {", s->name) < 0;
	gm_rangemap_cursor_init(&c, map_of(s), 0, UINT64_MAX, 0);
	while (gm_rangemap_cursor_next(&c, &r) == 0) {
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
	const struct gm_rangemap *m = map_of(s);
	const char *why = NULL;
	if (!m) {
		why = "set has no map";
	} else if (gm_rangemap_validate(m, &why)) {
		/* why set by the map */
	} else if (((m->flags & GM_RANGEMAP_RCU) != 0) !=
		   ((s->flags & GM_RANGESET_RCU) != 0)) {
		why = "map's RCU flag differs from the set's";
	} else if (over_limit(s, gm_rangemap_count(m))) {
		why = "more ranges than the set's limit";
	} else {
		struct gm_rangemap_cursor c;
		struct gm_range r, prev = {0, 0, 0};
		uint64_t n = 0;
		gm_rangemap_cursor_init(&c, m, 0, UINT64_MAX, 0);
		while (!why && gm_rangemap_cursor_next(&c, &r) == 0) {
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
