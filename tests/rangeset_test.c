/*
 * tests/rangeset_test.c — gm_rangeset against a bitmap oracle.
 *
 *  - every arrangement of two ranges (and of a range against two
 *    neighbours) for add, remove, subtract, intersect and union;
 *  - exhaustively, every pair of sets over an 8-value universe (at 0 and at
 *    the top of the space), every operation;
 *  - random differential sequences on larger universes with validate()
 *    after every step; edges; out-of-memory after every injected failure.
 */
#include "harness.h"

#include <gmtrack/rangeset.h>
#include <gmtrack/rcu.h>

#include <stdio.h>

/* ---- the oracle: one bit per index of [base, base + size) -------------- */
#define ORACLE_MAX 4096

struct oracle {
	uint64_t base;
	unsigned size;
	uint8_t bit[ORACLE_MAX];
};

static void oracle_init(struct oracle *o, uint64_t base, unsigned size)
{
	o->base = base;
	o->size = size;
	memset(o->bit, 0, sizeof(o->bit));
}

static void oracle_set(struct oracle *o, uint64_t first, uint64_t last, uint8_t v)
{
	for (uint64_t i = first - o->base; i <= last - o->base; i++)
		o->bit[i] = v;
}

static uint64_t oracle_runs(const struct oracle *o)
{
	uint64_t runs = 0;
	for (unsigned i = 0; i < o->size; i++)
		runs += o->bit[i] && (i == 0 || !o->bit[i - 1]);
	return runs;
}

/* Runs after setting [first, last] to v, without changing o. */
static uint64_t oracle_runs_after(const struct oracle *o, uint64_t first,
				  uint64_t last, uint8_t v)
{
	struct oracle *t = malloc(sizeof(*t));
	memcpy(t, o, sizeof(*t));
	oracle_set(t, first, last, v);
	uint64_t r = oracle_runs(t);
	free(t);
	return r;
}

/* Builds `s` to hold exactly the oracle's indices. */
static void build_from_oracle(struct gm_rangeset *s, const struct oracle *o)
{
	for (unsigned i = 0; i < o->size; i++) {
		if (!o->bit[i] || (i && o->bit[i - 1]))
			continue;
		unsigned j = i;
		while (j + 1 < o->size && o->bit[j + 1])
			j++;
		CHECK_EQ(gm_rangeset_add_range(s, o->base + i, o->base + j), 0);
	}
}

struct collect {
	uint64_t first[ORACLE_MAX], last[ORACLE_MAX];
	unsigned n;
	int stop_after; /* -1: never */
};

static int collect_cb(uint64_t first, uint64_t last, void *ctx)
{
	struct collect *c = ctx;
	if (c->stop_after >= 0 && (int)c->n == c->stop_after)
		return 7;
	c->first[c->n] = first;
	c->last[c->n] = last;
	c->n++;
	return 0;
}

/* The set holds exactly the oracle's indices, as maximal runs. */
static void check_equal(const struct gm_rangeset *s, const struct oracle *o)
{
	CHECK_VALID(gm_rangeset_validate(s, &reason), reason);
	struct collect *c = calloc(1, sizeof(*c));
	c->stop_after = -1;
	CHECK_EQ(gm_rangeset_report_ranges(s, 0, UINT64_MAX, collect_cb, c), 0);
	CHECK_EQ(c->n, oracle_runs(o));
	CHECK_EQ(gm_rangeset_count(s), oracle_runs(o));
	CHECK_EQ(gm_rangeset_is_empty(s), oracle_runs(o) == 0);
	unsigned k = 0;
	for (unsigned i = 0; i < o->size; i++) {
		if (!o->bit[i] || (i && o->bit[i - 1]))
			continue;
		unsigned j = i;
		while (j + 1 < o->size && o->bit[j + 1])
			j++;
		CHECK_EQ(c->first[k], o->base + i);
		CHECK_EQ(c->last[k], o->base + j);
		k++;
	}
	free(c);
}

static struct gm_rangeset *new_set(unsigned flags, uint64_t limit,
				   const struct gm_allocator *a)
{
	struct gm_rangeset *s = malloc(sizeof(*s));
	CHECK_EQ(gm_rangeset_init(s, "test", flags, limit, a), 0);
	return s;
}

static void free_set(struct gm_rangeset *s)
{
	gm_rangeset_destroy(s);
	free(s);
}

enum setop { OP_UNION, OP_SUBTRACT, OP_INTERSECT };

static int apply_setop(struct gm_rangeset *d, const struct gm_rangeset *s, enum setop op)
{
	switch (op) {
	case OP_UNION: return gm_rangeset_union(d, s);
	case OP_SUBTRACT: return gm_rangeset_subtract(d, s);
	default: return gm_rangeset_intersect(d, s);
	}
}

static void oracle_setop(struct oracle *d, const struct oracle *s, enum setop op)
{
	for (unsigned i = 0; i < d->size; i++) {
		if (op == OP_UNION)
			d->bit[i] |= s->bit[i];
		else if (op == OP_SUBTRACT)
			d->bit[i] &= !s->bit[i];
		else
			d->bit[i] &= s->bit[i];
	}
}

/* ---- arrangements of two ranges ---------------------------------------- */
/* A = [10, 20]; B takes each position relative to A. */
static const struct { const char *name; uint64_t f, l; } arrangements[] = {
	{"disjoint before", 2, 7},     {"touching before", 4, 9},
	{"overlapping head", 5, 12},   {"contained", 12, 18},
	{"same start, inside", 10, 15}, {"same end, inside", 15, 20},
	{"equal", 10, 20},             {"containing", 5, 25},
	{"overlapping tail", 18, 25},  {"touching after", 21, 24},
	{"disjoint after", 23, 30},    {"one index at start", 10, 10},
	{"one index at end", 20, 20},  {"one index before", 9, 9},
	{"one index after", 21, 21},
};

GM_TEST(every_arrangement_of_two_ranges)
{
	for (size_t i = 0; i < sizeof(arrangements) / sizeof(arrangements[0]); i++) {
		uint64_t bf = arrangements[i].f, bl = arrangements[i].l;
		for (int op = 0; op < 5; op++) {
			struct oracle *o = calloc(1, sizeof(*o)), *ob = calloc(1, sizeof(*ob));
			oracle_init(o, 0, 40);
			oracle_init(ob, 0, 40);
			oracle_set(o, 10, 20, 1);
			oracle_set(ob, bf, bl, 1);
			struct gm_rangeset *a = new_set(0, 0, NULL), *b = new_set(0, 0, NULL);
			build_from_oracle(a, o);
			build_from_oracle(b, ob);
			switch (op) {
			case 0: /* add B to A */
				CHECK_EQ(gm_rangeset_add_range(a, bf, bl), 0);
				oracle_set(o, bf, bl, 1);
				break;
			case 1: /* remove B from A */
				CHECK_EQ(gm_rangeset_remove_range(a, bf, bl), 0);
				oracle_set(o, bf, bl, 0);
				break;
			default:
				CHECK_EQ(apply_setop(a, b, (enum setop)(op - 2)), 0);
				oracle_setop(o, ob, (enum setop)(op - 2));
			}
			check_equal(a, o);
			/* Predicates agree with the oracle on B's range. */
			bool all = true, any = false;
			for (uint64_t x = bf; x <= bl; x++) {
				all &= o->bit[x];
				any |= o->bit[x];
			}
			CHECK_EQ(gm_rangeset_contains_range(a, bf, bl), all);
			CHECK_EQ(gm_rangeset_overlaps_range(a, bf, bl), any);
			free_set(a);
			free_set(b);
			free(o);
			free(ob);
		}
	}
}

/* A range against two neighbours [10, 20] and [30, 40]: every placement of
 * its ends among the points that matter. */
GM_TEST(range_against_two_neighbours)
{
	static const uint64_t points[] = {5, 9, 10, 15, 20, 21, 25, 29, 30, 35, 40, 41, 45};
	const size_t np = sizeof(points) / sizeof(points[0]);
	for (size_t i = 0; i < np; i++)
		for (size_t j = i; j < np; j++)
			for (int op = 0; op < 5; op++) {
				uint64_t f = points[i], l = points[j];
				struct oracle *o = calloc(1, sizeof(*o)), *ob = calloc(1, sizeof(*ob));
				oracle_init(o, 0, 50);
				oracle_init(ob, 0, 50);
				oracle_set(o, 10, 20, 1);
				oracle_set(o, 30, 40, 1);
				oracle_set(ob, f, l, 1);
				struct gm_rangeset *a = new_set(0, 0, NULL), *b = new_set(0, 0, NULL);
				build_from_oracle(a, o);
				build_from_oracle(b, ob);
				if (op == 0) {
					CHECK_EQ(gm_rangeset_add_range(a, f, l), 0);
					oracle_set(o, f, l, 1);
				} else if (op == 1) {
					CHECK_EQ(gm_rangeset_remove_range(a, f, l), 0);
					oracle_set(o, f, l, 0);
				} else {
					CHECK_EQ(apply_setop(a, b, (enum setop)(op - 2)), 0);
					oracle_setop(o, ob, (enum setop)(op - 2));
				}
				check_equal(a, o);
				free_set(a);
				free_set(b);
				free(o);
				free(ob);
			}
}

/* Xen's subtraction was wrong for years when a range of the subtrahend
 * straddled two ranges of the minuend; spell the expected answer out. */
GM_TEST(subtract_spelled_out)
{
	struct gm_rangeset *a = new_set(0, 0, NULL), *b = new_set(0, 0, NULL);
	CHECK_EQ(gm_rangeset_add_range(a, 0, 9), 0);
	CHECK_EQ(gm_rangeset_add_range(a, 20, 29), 0);
	CHECK_EQ(gm_rangeset_add_range(a, 40, 49), 0);
	CHECK_EQ(gm_rangeset_add_range(b, 5, 24), 0);
	CHECK_EQ(gm_rangeset_add_range(b, 45, 45), 0);
	CHECK_EQ(gm_rangeset_subtract(a, b), 0);
	struct collect c = {.stop_after = -1};
	CHECK_EQ(gm_rangeset_report_ranges(a, 0, UINT64_MAX, collect_cb, &c), 0);
	CHECK_EQ(c.n, 4);
	CHECK(c.first[0] == 0 && c.last[0] == 4);
	CHECK(c.first[1] == 25 && c.last[1] == 29);
	CHECK(c.first[2] == 40 && c.last[2] == 44);
	CHECK(c.first[3] == 46 && c.last[3] == 49);
	free_set(a);
	free_set(b);
}

/* ---- exhaustive over 8 values ------------------------------------------ */
static void exhaustive_at(uint64_t base, unsigned y_step)
{
	struct gm_rangeset *sets[256];
	struct oracle *o = malloc(sizeof(*o) * 256);
	for (unsigned m = 0; m < 256; m++) {
		oracle_init(&o[m], base, 8);
		for (unsigned i = 0; i < 8; i++)
			o[m].bit[i] = (m >> i) & 1;
		sets[m] = new_set(0, 0, NULL);
		build_from_oracle(sets[m], &o[m]);
		check_equal(sets[m], &o[m]);
	}
	struct oracle *r = malloc(sizeof(*r));
	for (unsigned x = 0; x < 256; x++) {
		for (unsigned y = x % y_step; y < 256; y += y_step)
			for (int op = 0; op < 3; op++) {
				struct gm_rangeset *d = new_set(0, 0, NULL);
				build_from_oracle(d, &o[x]);
				CHECK_EQ(apply_setop(d, sets[y], (enum setop)op), 0);
				memcpy(r, &o[x], sizeof(*r));
				oracle_setop(r, &o[y], (enum setop)op);
				check_equal(d, r);
				free_set(d);
			}
		/* Every range against set x. */
		for (unsigned i = 0; i < 8; i++)
			for (unsigned j = i; j < 8; j++) {
				bool all = true, any = false;
				for (unsigned k = i; k <= j; k++) {
					all &= o[x].bit[k];
					any |= o[x].bit[k];
				}
				CHECK_EQ(gm_rangeset_contains_range(sets[x], base + i, base + j), all);
				CHECK_EQ(gm_rangeset_overlaps_range(sets[x], base + i, base + j), any);
				for (int add = 0; add < 2; add++) {
					struct gm_rangeset *d = new_set(0, 0, NULL);
					build_from_oracle(d, &o[x]);
					memcpy(r, &o[x], sizeof(*r));
					oracle_set(r, base + i, base + j, (uint8_t)add);
					if (add)
						CHECK_EQ(gm_rangeset_add_range(d, base + i, base + j), 0);
					else
						CHECK_EQ(gm_rangeset_remove_range(d, base + i, base + j), 0);
					check_equal(d, r);
					free_set(d);
				}
			}
		for (unsigned i = 0; i < 8; i++)
			CHECK_EQ(gm_rangeset_contains(sets[x], base + i), o[x].bit[i]);
	}
	for (unsigned m = 0; m < 256; m++)
		free_set(sets[m]);
	free(o);
	free(r);
}

GM_TEST(exhaustive_pairs_over_8_values_at_zero) { exhaustive_at(0, 1); }
/* At the top of the space: every set, every range, every 5th partner set
 * (each set meets a different fifth, so all pairs' shapes still occur). */
GM_TEST(exhaustive_over_8_values_at_the_top) { exhaustive_at(UINT64_MAX - 7, 5); }

/* ---- random differential ------------------------------------------------ */
static void random_differential(unsigned flags, uint64_t base, unsigned size,
				uint64_t limit, uint64_t steps)
{
	struct gm_rng *rng = gm_test_rng();
	struct oracle *o = calloc(1, sizeof(*o)), *ob = calloc(1, sizeof(*ob));
	oracle_init(o, base, size);
	oracle_init(ob, base, size);
	struct gm_rangeset *s = new_set(flags, limit, NULL);
	struct gm_rangeset *other = new_set(flags, 0, NULL);
	for (uint64_t step = 0; step < steps; step++) {
		/* Offsets first: base + size may wrap past UINT64_MAX. */
		uint64_t fo = gm_rng_below(rng, size);
		uint64_t len = gm_rng_chance(rng, 1, 4) ? gm_rng_below(rng, size / 4 + 1)
						       : gm_rng_below(rng, 8);
		uint64_t lo = fo + len < size ? fo + len : size - 1;
		uint64_t f = base + fo, l = base + lo, end = base + (size - 1);
		unsigned what = (unsigned)gm_rng_below(rng, 12);
		int rc;
		switch (what) {
		case 0: case 1: case 2: {
			rc = gm_rangeset_add_range(s, f, l);
			uint64_t after = oracle_runs_after(o, f, l, 1);
			if (limit && after > limit) {
				CHECK_EQ(rc, -ENOSPC);
			} else {
				CHECK_EQ(rc, 0);
				oracle_set(o, f, l, 1);
			}
			break;
		}
		case 3: case 4: {
			rc = gm_rangeset_remove_range(s, f, l);
			uint64_t after = oracle_runs_after(o, f, l, 0);
			if (limit && after > limit) {
				CHECK_EQ(rc, -ENOSPC);
			} else {
				CHECK_EQ(rc, 0);
				oracle_set(o, f, l, 0);
			}
			break;
		}
		case 5: { /* claim */
			uint64_t sz = 1 + gm_rng_below(rng, 16);
			uint64_t align = 1ULL << gm_rng_below(rng, 4);
			uint64_t got = 0;
			rc = gm_rangeset_claim_range(s, sz, align, f, end, &got);
			/* The oracle's answer: lowest aligned free run in [f, end]
			 * (a flag, not a sentinel: UINT64_MAX itself can be the
			 * answer). */
			uint64_t want = 0;
			bool found = false;
			for (uint64_t x = (f + align - 1) & ~(align - 1);
			     !found && x >= f && x - f <= end - f && end - x >= sz - 1; x += align) {
				bool free_run = true;
				for (uint64_t k = 0; k < sz && free_run; k++)
					free_run = !o->bit[x + k - base];
				if (free_run) {
					want = x;
					found = true;
				}
			}
			if (!found) {
				CHECK_EQ(rc, -ENOSPC);
			} else if (limit && oracle_runs_after(o, want, want + sz - 1, 1) > limit) {
				CHECK_EQ(rc, -ENOSPC);
			} else {
				CHECK_MSG(rc == 0 && got == want,
					  "claim size %" PRIu64 " align %" PRIu64 " in [%#" PRIx64
					  ", %#" PRIx64 "]: rc %d got %#" PRIx64 " want %#" PRIx64,
					  sz, align, f, end, rc, got, want);
				oracle_set(o, want, want + sz - 1, 1);
			}
			break;
		}
		case 6: { /* other := random small set, then a set operation */
			gm_rangeset_purge(other);
			oracle_init(ob, base, size);
			for (int k = 0; k < 4; k++) {
				uint64_t go = gm_rng_below(rng, size);
				uint64_t mo = go + gm_rng_below(rng, 32);
				uint64_t g = base + go, m = base + (mo < size ? mo : size - 1);
				CHECK_EQ(gm_rangeset_add_range(other, g, m), 0);
				oracle_set(ob, g, m, 1);
			}
			enum setop op = (enum setop)gm_rng_below(rng, 3);
			struct oracle *r = malloc(sizeof(*r));
			memcpy(r, o, sizeof(*r));
			oracle_setop(r, ob, op);
			rc = apply_setop(s, other, op);
			if (limit && oracle_runs(r) > limit) {
				CHECK_EQ(rc, -ENOSPC);
			} else {
				CHECK_EQ(rc, 0);
				memcpy(o, r, sizeof(*r));
			}
			free(r);
			break;
		}
		case 7: { /* report a window, stopping early sometimes */
			struct collect *c = calloc(1, sizeof(*c));
			c->stop_after = gm_rng_chance(rng, 1, 3) ? (int)gm_rng_below(rng, 4) : -1;
			rc = gm_rangeset_report_ranges(s, f, l, collect_cb, c);
			unsigned k = 0;
			bool stopped = false;
			for (uint64_t x = f; x - f <= l - f && !stopped; x++) {
				if (!o->bit[x - base] || (x > f && o->bit[x - 1 - base]))
					continue;
				uint64_t y = x;
				while (y < l && o->bit[y + 1 - base])
					y++;
				if (c->stop_after >= 0 && (int)k == c->stop_after) {
					stopped = true;
					break;
				}
				CHECK(k < c->n);
				CHECK_EQ(c->first[k], x);
				CHECK_EQ(c->last[k], y);
				k++;
			}
			CHECK_EQ(rc, stopped ? 7 : 0);
			CHECK_EQ(c->n, k);
			free(c);
			break;
		}
		case 8: { /* consume a window, stopping after some pieces */
			struct collect *c = calloc(1, sizeof(*c));
			c->stop_after = gm_rng_chance(rng, 1, 2) ? (int)gm_rng_below(rng, 3) : -1;
			rc = gm_rangeset_consume_ranges(s, f, l, collect_cb, c);
			if (rc == -ENOSPC) { /* cutting at the window's edge */
				CHECK(limit != 0);
				free(c);
				break;
			}
			CHECK(rc == 0 || rc == 7);
			for (unsigned k = 0; k < c->n; k++)
				oracle_set(o, c->first[k], c->last[k], 0);
			free(c);
			break;
		}
		case 9: { /* predicates */
			bool all = true, any = false;
			for (uint64_t x = f; x - f <= l - f; x++) {
				all &= o->bit[x - base];
				any |= o->bit[x - base];
			}
			CHECK_EQ(gm_rangeset_contains_range(s, f, l), all);
			CHECK_EQ(gm_rangeset_overlaps_range(s, f, l), any);
			CHECK_EQ(gm_rangeset_contains(s, f), o->bit[f - base]);
			break;
		}
		case 10: /* swap twice: contents come back */
			CHECK_EQ(gm_rangeset_swap(s, other), 0);
			CHECK_EQ(gm_rangeset_swap(s, other), 0);
			break;
		default:
			if (gm_rng_chance(rng, 1, 50)) {
				CHECK_EQ(gm_rangeset_purge(s), 0);
				oracle_init(o, base, size);
			}
		}
		check_equal(s, o);
	}
	free_set(s);
	free_set(other);
	free(o);
	free(ob);
}

/* first_containing: the first set holding the index, as the set-by-set
 * loop finds it, for 0..70 sets (more than one group of 64) of every
 * height, RCU mode or not, with both in-node searches. */
GM_TEST(first_containing_matches_the_loop)
{
	gm_rcu_register_thread();
	struct gm_rng *rng = gm_test_rng();
	enum { NSETS = 70 };
	struct gm_rangeset *sets[NSETS];
	const struct gm_rangeset *ask[NSETS + 2];
	for (unsigned i = 0; i < NSETS; i++) {
		sets[i] = new_set(i % 2 ? GM_RANGESET_RCU : 0, 0, NULL);
		uint64_t n = i % 9 == 0 ? 0 : gm_rng_below(rng, i % 4 ? 40 : 4000);
		for (uint64_t k = 0; k < n; k++) {
			uint64_t f = gm_rng_below(rng, 200000);
			CHECK_EQ(gm_rangeset_add_range(sets[i], f, f + gm_rng_below(rng, 8)), 0);
		}
		if (i % 10 == 3)
			CHECK_EQ(gm_rangeset_add_range(sets[i], UINT64_MAX - 2, UINT64_MAX), 0);
		if (i % 10 == 4)
			CHECK_EQ(gm_rangeset_add_range(sets[i], 0, 0), 0);
	}
	gm_rcu_read_lock();
	for (uint64_t iter = 0; iter < gm_test_iters(5000); iter++) {
		unsigned n = (unsigned)gm_rng_below(rng, NSETS + 3);
		for (unsigned i = 0; i < n; i++)
			ask[i] = sets[gm_rng_below(rng, NSETS)];
		uint64_t x;
		switch (gm_rng_below(rng, 5)) {
		case 0: x = 0; break;
		case 1: x = UINT64_MAX - gm_rng_below(rng, 4); break;
		case 2: x = gm_rng_next(rng); break;
		default: x = gm_rng_below(rng, 200010); break;
		}
		int want = -1;
		for (unsigned i = 0; i < n && want < 0; i++)
			if (gm_rangeset_contains(ask[i], x))
				want = (int)i;
		const bool avx2 = gm_test_cpu_avx2();
		for (int simd = 0; simd < 2; simd++) {
			gm_cpu_avx2_ = simd && avx2;
			CHECK_EQ(gm_rangeset_first_containing(ask, n, x), want);
		}
	}
	gm_rcu_read_unlock();
	gm_cpu_avx2_ = gm_test_cpu_avx2();
	for (unsigned i = 0; i < NSETS; i++)
		free_set(sets[i]);
	gm_rcu_unregister_thread();
}

GM_TEST(random_differential_small_universe)
{
	random_differential(0, 0, 64, 0, gm_test_iters(20000));
}

GM_TEST(random_differential_large_universe)
{
	random_differential(0, 1000000, 4096, 0, gm_test_iters(5000));
}

GM_TEST(random_differential_with_limit)
{
	random_differential(0, 0, 256, 5, gm_test_iters(10000));
}

GM_TEST(random_differential_rcu_mode)
{
	gm_rcu_register_thread();
	random_differential(GM_RANGESET_RCU, UINT64_MAX - 511, 512, 0, gm_test_iters(3000));
	gm_rcu_unregister_thread();
}

/* ---- edges -------------------------------------------------------------- */
GM_TEST(edges_whole_space_zero_and_max)
{
	struct gm_rangeset *s = new_set(0, 0, NULL);
	CHECK_EQ(gm_rangeset_add_range(s, 5, 4), -EINVAL);
	CHECK_EQ(gm_rangeset_remove_range(s, 5, 4), -EINVAL);
	CHECK(!gm_rangeset_contains_range(s, 5, 4));
	CHECK(!gm_rangeset_overlaps_range(s, 5, 4));
	CHECK(gm_rangeset_is_empty(s));
	CHECK_EQ(gm_rangeset_add_range(s, 0, UINT64_MAX), 0);
	CHECK_EQ(gm_rangeset_count(s), 1);
	CHECK(gm_rangeset_contains_range(s, 0, UINT64_MAX));
	CHECK(gm_rangeset_contains(s, 0) && gm_rangeset_contains(s, UINT64_MAX));
	uint64_t got;
	CHECK_EQ(gm_rangeset_claim_range(s, 1, 1, 0, UINT64_MAX, &got), -ENOSPC);
	CHECK_EQ(gm_rangeset_remove_range(s, 0, 0), 0);
	CHECK_EQ(gm_rangeset_remove_range(s, UINT64_MAX, UINT64_MAX), 0);
	CHECK_EQ(gm_rangeset_count(s), 1);
	CHECK(!gm_rangeset_contains(s, 0) && !gm_rangeset_contains(s, UINT64_MAX));
	CHECK(gm_rangeset_contains_range(s, 1, UINT64_MAX - 1));
	CHECK_EQ(gm_rangeset_claim_range(s, 1, 1, 0, UINT64_MAX, &got), 0);
	CHECK_EQ(got, 0);
	CHECK_EQ(gm_rangeset_claim_range(s, 1, 1, 0, UINT64_MAX, &got), 0);
	CHECK_EQ(got, UINT64_MAX);
	CHECK(gm_rangeset_contains_range(s, 0, UINT64_MAX));
	CHECK_EQ(gm_rangeset_remove_range(s, 0, UINT64_MAX), 0);
	CHECK(gm_rangeset_is_empty(s));
	CHECK_EQ(gm_rangeset_claim_range(s, 0, 1, 0, 10, &got), -EINVAL);
	CHECK_EQ(gm_rangeset_claim_range(s, 1, 3, 0, 10, &got), -EINVAL);
	CHECK_EQ(gm_rangeset_claim_range(s, 1, 1, 10, 0, &got), -EINVAL);
	CHECK_EQ(gm_rangeset_claim_range(s, 12, 1, 0, 10, &got), -ENOSPC);
	CHECK_EQ(gm_rangeset_report_ranges(s, 3, 2, collect_cb, NULL), -EINVAL);
	/* The whole space as one claim. */
	CHECK_EQ(gm_rangeset_claim_range(s, UINT64_MAX, 1, 0, UINT64_MAX, &got), 0);
	CHECK_EQ(got, 0);
	CHECK(gm_rangeset_contains_range(s, 0, UINT64_MAX - 1));
	CHECK(!gm_rangeset_contains(s, UINT64_MAX));
	free_set(s);
}

GM_TEST(name_and_dump)
{
	struct gm_rangeset *s = malloc(sizeof(*s));
	CHECK_EQ(gm_rangeset_init(s, "a-very-long-name-that-does-not-fit-in-32-bytes", 0, 0, NULL), 0);
	CHECK_EQ(strlen(gm_rangeset_name(s)), GM_RANGESET_NAME_MAX - 1);
	CHECK_EQ(gm_rangeset_add_range(s, 0x10, 0x1f), 0);
	CHECK_EQ(gm_rangeset_add_range(s, 0x30, 0x30), 0);
	CHECK_EQ(gm_rangeset_add_range(s, UINT64_MAX, UINT64_MAX), 0);
	char buf[256] = {0};
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");
	CHECK_EQ(gm_rangeset_dump(s, f), 0);
	fclose(f);
	char want[256];
	snprintf(want, sizeof(want),
		 "%s { [0x10, 0x1f], [0x30], [0xffffffffffffffff] }\n",
		 gm_rangeset_name(s));
	CHECK_MSG(!strcmp(buf, want), "dump: '%s' want '%s'", buf, want);
	CHECK_EQ(gm_rangeset_init(s + 0, "x", 0x80, 0, NULL) == -EINVAL, 1);
	free_set(s);
}

/* ---- out of memory ------------------------------------------------------- */
GM_TEST(out_of_memory_leaves_the_set_unchanged)
{
	struct gm_rng *rng = gm_test_rng();
	struct gm_alloc_failing fail;
	gm_alloc_failing_init(&fail, NULL);
	struct gm_alloc_counting count;
	gm_alloc_counting_init(&count, &fail.allocator);
	struct oracle *o = calloc(1, sizeof(*o)), *ob = calloc(1, sizeof(*ob));
	oracle_init(o, 0, 2048);
	oracle_init(ob, 0, 2048);
	struct gm_rangeset *s = new_set(0, 0, &count.allocator);
	struct gm_rangeset *other = new_set(0, 0, NULL);
	for (int k = 0; k < 40; k++) {
		uint64_t g = gm_rng_below(rng, 2000), m = g + gm_rng_below(rng, 40);
		CHECK_EQ(gm_rangeset_add_range(other, g, m), 0);
		oracle_set(ob, g, m, 1);
	}
	uint64_t failures = 0;
	for (uint64_t step = 0; step < gm_test_iters(3000); step++) {
		uint64_t f = gm_rng_below(rng, 2000), l = f + gm_rng_below(rng, 30);
		unsigned what = (unsigned)gm_rng_below(rng, 5);
		for (uint64_t nth = 1;; nth++) {
			gm_alloc_failing_arm_nth(&fail, nth, false);
			int rc;
			struct oracle *r = malloc(sizeof(*r));
			memcpy(r, o, sizeof(*r));
			switch (what) {
			case 0: rc = gm_rangeset_add_range(s, f, l); oracle_set(r, f, l, 1); break;
			case 1: rc = gm_rangeset_remove_range(s, f, l); oracle_set(r, f, l, 0); break;
			case 2: rc = gm_rangeset_union(s, other); oracle_setop(r, ob, OP_UNION); break;
			case 3: rc = gm_rangeset_subtract(s, other); oracle_setop(r, ob, OP_SUBTRACT); break;
			default: rc = gm_rangeset_intersect(s, other); oracle_setop(r, ob, OP_INTERSECT); break;
			}
			gm_alloc_failing_disarm(&fail);
			if (rc == -ENOMEM) {
				failures++;
				check_equal(s, o); /* exactly as before */
				free(r);
				continue;
			}
			CHECK_EQ(rc, 0);
			memcpy(o, r, sizeof(*r));
			free(r);
			check_equal(s, o);
			break;
		}
		if (what >= 2 && gm_rng_chance(rng, 1, 2)) { /* keep s non-trivial */
			CHECK_EQ(gm_rangeset_add_range(s, f, l), 0);
			oracle_set(o, f, l, 1);
		}
	}
	CHECK(failures > 0);
	free_set(s);
	free_set(other);
	CHECK_EQ(gm_alloc_counting_bytes(&count), 0); /* nothing leaked */
	free(o);
	free(ob);
}

GM_TEST_MAIN()
