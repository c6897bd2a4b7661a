/*
 * fuzz/rangeset_fuzz.c — libFuzzer drives two gm_rangesets (one with a
 * range limit) against bitmap oracles over a 256-index universe placed at 0
 * or at the top of the space; every step is checked, and a failing
 * allocator injects -ENOMEM, after which the set must be unchanged.
 *
 * Input: byte 0 picks the universe base (bit 0) and the group mode (bits
 * 1-4, see "groups" below); then 4-byte records (op, a, b, extra).
 */
#include <gmtrack/rangeset.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define U 256

struct model {
	uint8_t bit[U];
};

static uint64_t base;

static uint64_t runs(const struct model *m)
{
	uint64_t r = 0;
	for (int i = 0; i < U; i++)
		r += m->bit[i] && (i == 0 || !m->bit[i - 1]);
	return r;
}

static int check_cb(void *ctx, uint64_t first, uint64_t last)
{
	struct model *seen = ctx;
	if (first < base || last - base >= U)
		abort();
	for (uint64_t i = first - base; i <= last - base; i++)
		seen->bit[i] = 1;
	return 0;
}

static void check(const struct gm_rangeset *s, const struct model *m)
{
	const char *why;
	if (gm_rangeset_validate(s, &why))
		abort();
	struct model seen;
	memset(&seen, 0, sizeof(seen));
	gm_rangeset_walk(s, 0, UINT64_MAX, check_cb, &seen);
	if (memcmp(&seen, m, sizeof(seen)) || gm_rangeset_count(s) != runs(m))
		abort();
}

/* One record on the two sets; returns nothing, aborts on a wrong answer. */
static void set_op(struct gm_rangeset **s, struct model *m, const uint8_t *data,
		   struct gm_alloc_failing *fail)
{
	int which = data[0] & 1, other = !which;
	unsigned op = (data[0] >> 1) % 8;
	uint64_t lo = data[1] < data[2] ? data[1] : data[2];
	uint64_t hi = data[1] < data[2] ? data[2] : data[1];
	uint64_t f = base + lo, l = base + hi;
	if (data[3] & 0x80) /* inject a failure somewhere in this op */
		gm_alloc_failing_arm_nth(fail, 1 + (data[3] & 7), false);
	struct model want = m[which];
	int rc = 0;
	switch (op) {
	case 0:
		rc = gm_rangeset_add(s[which], f, l);
		memset(want.bit + lo, 1, hi - lo + 1);
		break;
	case 1:
		rc = gm_rangeset_remove(s[which], f, l);
		memset(want.bit + lo, 0, hi - lo + 1);
		break;
	case 2:
		rc = gm_rangeset_union(s[which], s[other]);
		for (int i = 0; i < U; i++)
			want.bit[i] |= m[other].bit[i];
		break;
	case 3:
		rc = gm_rangeset_subtract(s[which], s[other]);
		for (int i = 0; i < U; i++)
			want.bit[i] &= !m[other].bit[i];
		break;
	case 4:
		rc = gm_rangeset_intersect(s[which], s[other]);
		for (int i = 0; i < U; i++)
			want.bit[i] &= m[other].bit[i];
		break;
	case 5: {
		uint64_t got, sz = 1 + (data[3] & 15);
		rc = gm_rangeset_claim(s[which], sz, 1, f, base + (U - 1), &got);
		if (rc == 0) {
			if (got < f || got - base + sz > U)
				abort();
			for (uint64_t i = 0; i < sz; i++) {
				if (want.bit[got - base + i])
					abort(); /* claimed an index in the set */
				want.bit[got - base + i] = 1;
			}
		}
		break;
	}
	case 6: {
		bool all = true, any = false;
		for (uint64_t i = lo; i <= hi; i++) {
			all &= m[which].bit[i];
			any |= m[which].bit[i];
		}
		if (gm_rangeset_contains_range(s[which], f, l) != all ||
		    gm_rangeset_overlaps_range(s[which], f, l) != any ||
		    gm_rangeset_contains(s[which], f) != (bool)m[which].bit[lo])
			abort();
		const struct gm_rangeset *ask[3] = {s[which], s[other], s[which]};
		int first = m[which].bit[lo] ? 0 : m[other].bit[lo] ? 1 : -ENOENT;
		if (gm_rangeset_first_containing(ask, 3, f) != first ||
		    gm_rangeset_first_containing(ask + 1, 2, l) !=
			    (m[other].bit[hi] ? 0 : m[which].bit[hi] ? 1 : -ENOENT))
			abort();
		break;
	}
	default:
		rc = gm_rangeset_purge(s[which]);
		memset(&want, 0, sizeof(want));
	}
	gm_alloc_failing_disarm(fail);
	if (rc == 0)
		m[which] = want;
	else if (rc != -ENOMEM && rc != -ENOSPC)
		abort();
	else if (rc == -ENOSPC && which == 0 && op != 5)
		abort(); /* set 0 has no limit */
	check(s[which], &m[which]);
}

/* ---- groups ------------------------------------------------------------ */
/*
 * With byte 0's bit 1 set, s[0] and s[1] join a group (s[1] first if bit 2
 * is set) whose index comes from the failing allocator too, with a third
 * member, the filler, whose FILL one-index ranges lie outside the universe:
 * filled (bit 3), the group holds more than GROUP_INDEX_MIN small ranges
 * and selects through its index. Records with an op byte of 0xc0 or more
 * are then group operations. After every record the group is validated
 * and select is asked over the record's window and the universe's edges,
 * against both the models and a contains loop over the members. Bit 4:
 * the group is destroyed before its members rather than after.
 */
#define FILL 2100 /* > GM_RANGESET_GROUP_INDEX_MIN */
#define FILL_AT (1ULL << 32)

struct grp {
	struct gm_rangeset_group *g;
	struct gm_rangeset *member[3]; /* s[0], s[1], the filler */
	struct gm_rangeset *filler;
	bool filler_full;
	int number[3];                 /* member number, or -1 */
};

/* What the filler holds when full; built once, never changed. */
static const struct gm_rangeset *pattern(void)
{
	static struct gm_rangeset *p;
	static bool made;
	if (!made) {
		if (gm_rangeset_create(&p, &(struct gm_rangeset_config){"pattern", 0}, 0, NULL))
			abort();
		for (uint64_t i = 0; i < FILL; i++)
			if (gm_rangeset_add(p, FILL_AT + 2 * i, FILL_AT + 2 * i))
				abort();
		made = true;
	}
	return p;
}

/* Member i joins; the answer is the lowest free number, or -ENOMEM (an
 * injected failure) with nothing changed. */
static void group_join(struct grp *gr, int i)
{
	int rc = gm_rangeset_group_join(gr->g, gr->member[i]);
	if (rc == -ENOMEM)
		return;
	int lowest = 0;
	while (gr->number[0] == lowest || gr->number[1] == lowest ||
	       gr->number[2] == lowest)
		lowest++;
	if (rc != lowest)
		abort();
	gr->number[i] = rc;
}

static void group_begin(struct grp *gr, struct gm_rangeset **s, uint8_t mode,
			struct gm_alloc_failing *fail)
{
	if (gm_rangeset_group_create(&gr->g, 0, &fail->allocator) ||
	    gm_rangeset_create(&gr->filler, &(struct gm_rangeset_config){"filler", 0}, 0, &fail->allocator))
		abort();
	gr->member[0] = s[0];
	gr->member[1] = s[1];
	gr->member[2] = gr->filler;
	gr->number[0] = gr->number[1] = gr->number[2] = -1;
	gr->filler_full = mode & 8;
	if (gr->filler_full && gm_rangeset_union(gr->filler, pattern()))
		abort();
	int first = (mode >> 2) & 1;
	group_join(gr, first);
	group_join(gr, !first);
	group_join(gr, 2);
	if (gr->number[0] < 0 || gr->number[1] < 0 || gr->number[2] < 0)
		abort();
}

static void group_end(struct grp *gr, struct gm_rangeset **s, uint8_t mode)
{
	if (mode & 16)
		gm_rangeset_group_destroy(gr->g);
	gm_rangeset_destroy(s[0]);
	gm_rangeset_destroy(s[1]);
	gm_rangeset_destroy(gr->filler);
	if (!(mode & 16))
		gm_rangeset_group_destroy(gr->g);
}

static int want_select(const struct grp *gr, const struct model *m, uint64_t x)
{
	int best = -ENOENT;
	for (int i = 0; i < 2; i++)
		if (gr->number[i] >= 0 && x - base < U && m[i].bit[x - base] &&
		    (best < 0 || gr->number[i] < best))
			best = gr->number[i];
	bool filler = gr->number[2] >= 0 && gr->filler_full && x >= FILL_AT &&
		      x - FILL_AT < 2 * FILL && (x - FILL_AT) % 2 == 0;
	if (filler && (best < 0 || gr->number[2] < best))
		best = gr->number[2];
	return best;
}

static void check_select(const struct grp *gr, const struct model *m, uint64_t x)
{
	int loop = -ENOENT;
	for (unsigned k = 0; k < GM_RANGESET_GROUP_MAX && loop < 0; k++) {
		const struct gm_rangeset *s = gm_rangeset_group_member(gr->g, k);
		if (s && gm_rangeset_contains(s, x))
			loop = (int)k;
	}
	int got = gm_rangeset_group_select(gr->g, x);
	if (got != loop || got != want_select(gr, m, x))
		abort();
}

static void group_check(const struct grp *gr, const struct model *m,
			uint64_t lo, uint64_t hi)
{
	const char *why;
	if (gm_rangeset_group_validate(gr->g, &why))
		abort();
	for (uint64_t i = lo; i <= hi; i++)
		check_select(gr, m, base + i);
	const uint64_t edges[] = {base - 1, base + U, FILL_AT, FILL_AT + 1,
				  FILL_AT + 2 * FILL - 2, FILL_AT + 2 * FILL};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		check_select(gr, m, edges[i]);
	/* Without the filler, a few hundred small ranges at most: no index. */
	if ((gr->number[2] < 0 || !gr->filler_full) && gm_rangeset_group_indexed(gr->g))
		abort();
	if (gm_rangeset_count(gr->filler) != (gr->filler_full ? FILL : 0))
		abort();
}

/* Empties the filler or fills it again: the group crosses
 * GROUP_INDEX_MIN. Or, with extra's bit 6, a whole-set change that leaves
 * it as it is (subtracting a set of the universe): an index rebuild. */
static void filler_op(struct grp *gr, struct gm_rangeset **s, uint8_t extra)
{
	int rc;
	if (extra & 0x40) {
		rc = gm_rangeset_subtract(gr->filler, s[extra & 1]);
	} else if (gr->filler_full) {
		rc = gm_rangeset_purge(gr->filler);
		gr->filler_full = rc != 0;
	} else {
		rc = gm_rangeset_union(gr->filler, pattern());
		gr->filler_full = rc == 0;
	}
	if (rc && rc != -ENOMEM)
		abort();
}

/* Swaps the two sets' contents: -ENOSPC if s[1] (limit 6) cannot take
 * s[0]'s, -ENOMEM (an index rebuild failed); nothing changed then. */
static void swap_op(struct gm_rangeset **s, struct model *m)
{
	int rc = gm_rangeset_swap(s[0], s[1]);
	if (rc == 0) {
		struct model t = m[0];
		m[0] = m[1];
		m[1] = t;
	} else if (!(rc == -ENOSPC && runs(&m[0]) > 6) && rc != -ENOMEM) {
		abort();
	}
}

/* Destroys s[which] (it leaves the group) and makes it anew, empty; joins
 * again if it was a member and extra's bit 6 says so. */
static void reinit_op(struct grp *gr, struct gm_rangeset **s, struct model *m,
		      int which, uint8_t extra, struct gm_alloc_failing *fail)
{
	bool member = gr->number[which] >= 0;
	gm_rangeset_destroy(s[which]);
	gr->number[which] = -1;
	gm_alloc_failing_disarm(fail);
	if (gm_rangeset_create(&s[which], &(struct gm_rangeset_config){which ? "b" : "a", which ? 6 : 0}, 0, &fail->allocator))
		abort();
	gr->member[which] = s[which]; /* a new handle */
	memset(&m[which], 0, sizeof(m[which]));
	if (member && (extra & 0x40))
		group_join(gr, which);
}

static void group_op(struct grp *gr, struct gm_rangeset **s, struct model *m,
		     const uint8_t *data, struct gm_alloc_failing *fail)
{
	int which = data[0] & 1;
	int who = data[3] & 0x40 ? 2 : which; /* membership: a set or the filler */
	if (data[3] & 0x80)
		gm_alloc_failing_arm_nth(fail, 1 + (data[3] & 7), false);
	switch ((data[0] >> 1) & 7) {
	case 0: /* leave, or join */
		if (gr->number[who] >= 0) {
			if (gm_rangeset_group_leave(gr->member[who]))
				abort();
			gr->number[who] = -1;
		} else {
			group_join(gr, who);
		}
		break;
	case 1:
		swap_op(s, m);
		break;
	case 2:
		reinit_op(gr, s, m, which, data[3], fail);
		break;
	case 3:
		filler_op(gr, s, data[3]);
		break;
	case 4: /* a member joins again, a non-member leaves */
		if (gr->number[who] >= 0
			    ? gm_rangeset_group_join(gr->g, gr->member[who]) != -EEXIST
			    : gm_rangeset_group_leave(gr->member[who]) != -ENOENT)
			abort();
		break;
	default: /* select over the whole universe (below) */
		break;
	}
	gm_alloc_failing_disarm(fail);
	check(s[0], &m[0]);
	check(s[1], &m[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	base = data[0] & 1 ? UINT64_MAX - (U - 1) : 0;
	uint8_t mode = data[0];
	data++, size--;
	struct gm_alloc_failing fail;
	gm_alloc_failing_init(&fail, NULL);
	struct gm_rangeset *s[2];
	struct model m[2];
	memset(m, 0, sizeof(m));
	if (gm_rangeset_create(&s[0], &(struct gm_rangeset_config){"a", 0}, 0, &fail.allocator) ||
	    gm_rangeset_create(&s[1], &(struct gm_rangeset_config){"b", 6}, 0, &fail.allocator))
		abort();
	struct grp gr;
	if (mode & 2)
		group_begin(&gr, s, mode, &fail);
	for (; size >= 4; data += 4, size -= 4) {
		if (!(mode & 2)) {
			set_op(s, m, data, &fail);
			continue;
		}
		uint64_t lo = data[1] < data[2] ? data[1] : data[2];
		uint64_t hi = data[1] < data[2] ? data[2] : data[1];
		if (data[0] >= 0xc0) {
			group_op(&gr, s, m, data, &fail);
			lo = 0, hi = U - 1;
		} else {
			set_op(s, m, data, &fail);
		}
		group_check(&gr, m, lo, hi);
	}
	if (mode & 2) {
		group_end(&gr, s, mode);
		return 0;
	}
	gm_rangeset_destroy(s[0]);
	gm_rangeset_destroy(s[1]);
	return 0;
}
