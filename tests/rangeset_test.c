/*
 * tests/rangeset_test.c — gm_rangeset against a bitmap oracle.
 *
 *  - every arrangement of two ranges (and of a range against two
 *    neighbours) for add, remove, subtract, intersect and union;
 *  - exhaustively, every pair of sets over an 8-value universe (at 0 and at
 *    the top of the space), every operation;
 *  - random differential sequences on larger universes with validate()
 *    after every step; edges; out-of-memory after every injected failure;
 *  - groups: select against one oracle per member through random changes
 *    of every kind, with and without the index and across its build and
 *    drop; join/leave errors, member numbers, the edges of the space,
 *    priority between large and small ranges; out of memory in the sets
 *    and in the groups; the index's table growing and shrinking.
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

/* The oracle's claim_range: the lowest run of sz indices, none held, that
 * starts at a multiple of align in [f, end]. A flag, not a sentinel:
 * UINT64_MAX itself can be the answer. */
static bool oracle_claim(const struct oracle *o, uint64_t sz, uint64_t align,
			 uint64_t f, uint64_t end, uint64_t *want)
{
	for (uint64_t x = (f + align - 1) & ~(align - 1);
	     x >= f && x - f <= end - f && end - x >= sz - 1; x += align) {
		bool free_run = true;
		for (uint64_t k = 0; k < sz && free_run; k++)
			free_run = !o->bit[x + k - o->base];
		if (free_run) {
			*want = x;
			return true;
		}
	}
	return false;
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
		CHECK_EQ(gm_rangeset_add(s, o->base + i, o->base + j), 0);
	}
}

struct collect {
	uint64_t first[ORACLE_MAX], last[ORACLE_MAX];
	unsigned n;
	int stop_after; /* -1: never */
};

static int collect_cb(void *ctx, uint64_t first, uint64_t last)
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
	CHECK_EQ(gm_rangeset_walk(s, 0, UINT64_MAX, collect_cb, c), 0);
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
	/* the iterator gives the same runs, both ways */
	struct gm_rangeset_iter it;
	struct gm_range r;
	CHECK_EQ(gm_rangeset_iter_init(&it, s, 0, UINT64_MAX, 0), 0);
	for (k = 0; gm_rangeset_iter_next(&it, &r) == 0; k++)
		CHECK(k < c->n && r.first == c->first[k] && r.last == c->last[k]);
	CHECK_EQ(k, c->n);
	CHECK_EQ(gm_rangeset_iter_init(&it, s, 0, UINT64_MAX, GM_ITER_REVERSE), 0);
	for (; gm_rangeset_iter_next(&it, &r) == 0; k--)
		CHECK(k > 0 && r.first == c->first[k - 1] && r.last == c->last[k - 1]);
	CHECK_EQ(k, 0);
	free(c);
}

static struct gm_rangeset *new_set(unsigned flags, uint64_t limit,
				   const struct gm_allocator *a)
{
	struct gm_rangeset *s;
	CHECK_EQ(gm_rangeset_create(&s, &(struct gm_rangeset_config){"test", limit}, flags, a), 0);
	return s;
}

static void free_set(struct gm_rangeset *s)
{
	gm_rangeset_destroy(s);
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
				CHECK_EQ(gm_rangeset_add(a, bf, bl), 0);
				oracle_set(o, bf, bl, 1);
				break;
			case 1: /* remove B from A */
				CHECK_EQ(gm_rangeset_remove(a, bf, bl), 0);
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
					CHECK_EQ(gm_rangeset_add(a, f, l), 0);
					oracle_set(o, f, l, 1);
				} else if (op == 1) {
					CHECK_EQ(gm_rangeset_remove(a, f, l), 0);
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
	CHECK_EQ(gm_rangeset_add(a, 0, 9), 0);
	CHECK_EQ(gm_rangeset_add(a, 20, 29), 0);
	CHECK_EQ(gm_rangeset_add(a, 40, 49), 0);
	CHECK_EQ(gm_rangeset_add(b, 5, 24), 0);
	CHECK_EQ(gm_rangeset_add(b, 45, 45), 0);
	CHECK_EQ(gm_rangeset_subtract(a, b), 0);
	struct collect c = {.stop_after = -1};
	CHECK_EQ(gm_rangeset_walk(a, 0, UINT64_MAX, collect_cb, &c), 0);
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
						CHECK_EQ(gm_rangeset_add(d, base + i, base + j), 0);
					else
						CHECK_EQ(gm_rangeset_remove(d, base + i, base + j), 0);
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
			rc = gm_rangeset_add(s, f, l);
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
			rc = gm_rangeset_remove(s, f, l);
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
			uint64_t got = 0, want = 0;
			rc = gm_rangeset_claim(s, sz, align, f, end, &got);
			bool found = oracle_claim(o, sz, align, f, end, &want);
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
				CHECK_EQ(gm_rangeset_add(other, g, m), 0);
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
			rc = gm_rangeset_walk(s, f, l, collect_cb, c);
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
			rc = gm_rangeset_consume(s, f, l, collect_cb, c);
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
		sets[i] = new_set(i % 2 ? GM_RCU : 0, 0, NULL);
		uint64_t n = i % 9 == 0 ? 0 : gm_rng_below(rng, i % 4 ? 40 : 4000);
		for (uint64_t k = 0; k < n; k++) {
			uint64_t f = gm_rng_below(rng, 200000);
			CHECK_EQ(gm_rangeset_add(sets[i], f, f + gm_rng_below(rng, 8)), 0);
		}
		if (i % 10 == 3)
			CHECK_EQ(gm_rangeset_add(sets[i], UINT64_MAX - 2, UINT64_MAX), 0);
		if (i % 10 == 4)
			CHECK_EQ(gm_rangeset_add(sets[i], 0, 0), 0);
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
		int want = -ENOENT;
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
	random_differential(GM_RCU, UINT64_MAX - 511, 512, 0, gm_test_iters(3000));
	gm_rcu_unregister_thread();
}

/* ---- edges -------------------------------------------------------------- */
GM_TEST(edges_whole_space_zero_and_max)
{
	struct gm_rangeset *s = new_set(0, 0, NULL);
	CHECK_EQ(gm_rangeset_add(s, 5, 4), -EINVAL);
	CHECK_EQ(gm_rangeset_remove(s, 5, 4), -EINVAL);
	CHECK(!gm_rangeset_contains_range(s, 5, 4));
	CHECK(!gm_rangeset_overlaps_range(s, 5, 4));
	CHECK(gm_rangeset_is_empty(s));
	CHECK_EQ(gm_rangeset_add(s, 0, UINT64_MAX), 0);
	CHECK_EQ(gm_rangeset_count(s), 1);
	CHECK(gm_rangeset_contains_range(s, 0, UINT64_MAX));
	CHECK(gm_rangeset_contains(s, 0) && gm_rangeset_contains(s, UINT64_MAX));
	uint64_t got;
	CHECK_EQ(gm_rangeset_claim(s, 1, 1, 0, UINT64_MAX, &got), -ENOSPC);
	CHECK_EQ(gm_rangeset_remove(s, 0, 0), 0);
	CHECK_EQ(gm_rangeset_remove(s, UINT64_MAX, UINT64_MAX), 0);
	CHECK_EQ(gm_rangeset_count(s), 1);
	CHECK(!gm_rangeset_contains(s, 0) && !gm_rangeset_contains(s, UINT64_MAX));
	CHECK(gm_rangeset_contains_range(s, 1, UINT64_MAX - 1));
	CHECK_EQ(gm_rangeset_claim(s, 1, 1, 0, UINT64_MAX, &got), 0);
	CHECK_EQ(got, 0);
	CHECK_EQ(gm_rangeset_claim(s, 1, 1, 0, UINT64_MAX, &got), 0);
	CHECK_EQ(got, UINT64_MAX);
	CHECK(gm_rangeset_contains_range(s, 0, UINT64_MAX));
	CHECK_EQ(gm_rangeset_remove(s, 0, UINT64_MAX), 0);
	CHECK(gm_rangeset_is_empty(s));
	CHECK_EQ(gm_rangeset_claim(s, 0, 1, 0, 10, &got), -EINVAL);
	CHECK_EQ(gm_rangeset_claim(s, 1, 3, 0, 10, &got), -EINVAL);
	CHECK_EQ(gm_rangeset_claim(s, 1, 1, 10, 0, &got), -EINVAL);
	CHECK_EQ(gm_rangeset_claim(s, 12, 1, 0, 10, &got), -ENOSPC);
	CHECK_EQ(gm_rangeset_walk(s, 3, 2, collect_cb, NULL), -EINVAL);
	/* The whole space as one claim. */
	CHECK_EQ(gm_rangeset_claim(s, UINT64_MAX, 1, 0, UINT64_MAX, &got), 0);
	CHECK_EQ(got, 0);
	CHECK(gm_rangeset_contains_range(s, 0, UINT64_MAX - 1));
	CHECK(!gm_rangeset_contains(s, UINT64_MAX));
	free_set(s);
}

GM_TEST(name_and_dump)
{
	struct gm_rangeset *s;
	CHECK_EQ(gm_rangeset_create(&s, &(struct gm_rangeset_config){"a-very-long-name-that-does-not-fit-in-32-bytes", 0}, 0, NULL), 0);
	CHECK_EQ(strlen(gm_rangeset_name(s)), GM_RANGESET_NAME_MAX - 1);
	CHECK_EQ(gm_rangeset_add(s, 0x10, 0x1f), 0);
	CHECK_EQ(gm_rangeset_add(s, 0x30, 0x30), 0);
	CHECK_EQ(gm_rangeset_add(s, UINT64_MAX, UINT64_MAX), 0);
	char buf[256] = {0};
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");
	CHECK_EQ(gm_rangeset_dump(s, f), 0);
	fclose(f);
	char want[256];
	snprintf(want, sizeof(want),
		 "%s { [0x10, 0x1f], [0x30], [0xffffffffffffffff] }\n",
		 gm_rangeset_name(s));
	CHECK_MSG(!strcmp(buf, want), "dump: '%s' want '%s'", buf, want);
	struct gm_rangeset *t = NULL;
	CHECK_EQ(gm_rangeset_create(&t, &(struct gm_rangeset_config){"x", 0}, 0x80, NULL), -EINVAL);
	CHECK(t == NULL);
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
		CHECK_EQ(gm_rangeset_add(other, g, m), 0);
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
			case 0: rc = gm_rangeset_add(s, f, l); oracle_set(r, f, l, 1); break;
			case 1: rc = gm_rangeset_remove(s, f, l); oracle_set(r, f, l, 0); break;
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
			CHECK_EQ(gm_rangeset_add(s, f, l), 0);
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

/* ---- groups: select against one oracle per member ------------------------ */
/*
 * A world: NSLOT sets over one universe, each with its oracle. Slots
 * 0..OUTSIDER-1 join and leave the group g in random order, so a slot's
 * member number is not its position; slot OUTSIDER belongs to a second
 * group g2 or to none, so swaps and set operations also meet a set whose
 * own group must stay exact. Slot LIMITED has a range limit: its changes
 * fail with -ENOSPC after the group has reserved room for them.
 */
#define NSLOT 8
#define OUTSIDER (NSLOT - 1)
#define LIMITED 1
#define GROUP_MEMBERS 6 /* most members g gets in these tests */

struct world {
	struct gm_rangeset_group *g, *g2;
	struct gm_rangeset *set[NSLOT];
	struct oracle o[NSLOT];
	uint64_t small[NSLOT];  /* runs of at most GROUP_SMALL indices in o[k] */
	int number[NSLOT];      /* member number in g (g2 for OUTSIDER), or -1 */
	uint64_t limit[NSLOT];
	uint64_t base;
	unsigned size, flags;
	const struct gm_allocator *set_alloc;
	struct gm_alloc_counting *group_count; /* the groups' allocator */
	bool exact;   /* allocations never fail, so builds never fail */
	bool indexed; /* what gm_rangeset_group_indexed said last */
	bool may_drop; /* the last change was a leave: it may drop the index */
};

static uint64_t small_runs(const struct oracle *o)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < o->size; i++) {
		if (!o->bit[i])
			continue;
		unsigned j = i;
		while (j + 1 < o->size && o->bit[j + 1])
			j++;
		n += j - i + 1 <= GM_RANGESET_GROUP_SMALL;
		i = j;
	}
	return n;
}

static void slot_commit(struct world *w, int k, const struct oracle *o)
{
	if (o != &w->o[k])
		memcpy(&w->o[k], o, sizeof(*o));
	w->small[k] = small_runs(o);
}

static void slot_init(struct world *w, int k)
{
	w->limit[k] = k == LIMITED ? 700 : 0;
	CHECK_EQ(gm_rangeset_create(&w->set[k], &(struct gm_rangeset_config){"member", w->limit[k]}, w->flags, w->set_alloc), 0);
	oracle_init(&w->o[k], w->base, w->size);
	w->small[k] = 0;
	w->number[k] = -1;
}

static struct world *world_new(unsigned flags, uint64_t base, unsigned size,
			       const struct gm_allocator *set_alloc,
			       struct gm_alloc_counting *group_count)
{
	struct world *w = calloc(1, sizeof(*w));
	w->base = base;
	w->size = size;
	w->flags = flags;
	w->set_alloc = set_alloc;
	w->group_count = group_count;
	w->exact = true;
	CHECK_EQ(gm_rangeset_group_create(&w->g, flags, &group_count->allocator), 0);
	CHECK_EQ(gm_rangeset_group_create(&w->g2, flags, &group_count->allocator), 0);
	for (int k = 0; k < NSLOT; k++)
		slot_init(w, k);
	return w;
}

/* Tears down in a mixed order: some members go with their set (which
 * leaves first), the rest with the group. */
static void world_free(struct world *w, struct gm_rng *rng)
{
	for (int k = 0; k < NSLOT; k++)
		if (gm_rng_chance(rng, 1, 2)) {
			gm_rangeset_destroy(w->set[k]);
			w->number[k] = -2; /* gone */
		}
	gm_rangeset_group_destroy(w->g);
	gm_rangeset_group_destroy(w->g2);
	for (int k = 0; k < NSLOT; k++)
		if (w->number[k] != -2) {
			/* The group let go of it: a valid set in no group. */
			CHECK_EQ(gm_rangeset_group_leave(w->set[k]), -ENOENT);
			check_equal(w->set[k], &w->o[k]);
			gm_rangeset_destroy(w->set[k]);
		}
	free(w);
}

static bool in_g(const struct world *w, int k)
{
	return k != OUTSIDER && w->number[k] >= 0;
}

static unsigned members_of_g(const struct world *w)
{
	unsigned n = 0;
	for (int k = 0; k < OUTSIDER; k++)
		n += in_g(w, k);
	return n;
}

static uint64_t world_small(const struct world *w)
{
	uint64_t n = 0;
	for (int k = 0; k < OUTSIDER; k++)
		n += in_g(w, k) ? w->small[k] : 0;
	return n;
}

/* What select(g, x) must say: the lowest member number holding x. */
static int want_select(const struct world *w, uint64_t x)
{
	if (x - w->base >= w->size)
		return -ENOENT;
	int best = -ENOENT;
	for (int k = 0; k < OUTSIDER; k++)
		if (in_g(w, k) && w->o[k].bit[x - w->base] &&
		    (best < 0 || w->number[k] < best))
			best = w->number[k];
	return best;
}

static int want_select_g2(const struct world *w, uint64_t x)
{
	return w->number[OUTSIDER] >= 0 && x - w->base < w->size &&
	       w->o[OUTSIDER].bit[x - w->base] ? w->number[OUTSIDER] : -ENOENT;
}

static void check_select(const struct world *w, uint64_t x)
{
	int got = gm_rangeset_group_select(w->g, x), want = want_select(w, x);
	CHECK_MSG(got == want, "select(%#" PRIx64 ") = %d, want %d (indexed %d, "
		  "%" PRIu64 " small ranges)", x, got, want,
		  gm_rangeset_group_indexed(w->g), world_small(w));
	CHECK_EQ(gm_rangeset_group_select(w->g2, x), want_select_g2(w, x));
}

/*
 * The index exists when the rules say: built once a change takes the
 * members to GROUP_INDEX_MIN small ranges, dropped under half of that, kept
 * in between. When allocations may fail, a build may fail too (best
 * effort), and a leave may drop the index, but nothing else may: a change
 * that succeeds keeps the index it found.
 */
/* Bytes of a group without an index: its handle. */
static size_t group_handle_bytes(void)
{
	static size_t bytes;
	if (!bytes) {
		struct gm_rangeset_group *g;
		CHECK_EQ(gm_rangeset_group_create(&g, 0, NULL), 0);
		bytes = gm_rangeset_group_bytes(g);
		gm_rangeset_group_destroy(g);
	}
	return bytes;
}

static void check_index_state(struct world *w)
{
	uint64_t small = world_small(w);
	bool now = gm_rangeset_group_indexed(w->g);
	bool was = w->indexed;
	if (small < GM_RANGESET_GROUP_INDEX_MIN / 2)
		CHECK_MSG(!now, "indexed with %" PRIu64 " small ranges", small);
	else if (small < GM_RANGESET_GROUP_INDEX_MIN && !was)
		CHECK_MSG(!now, "index built at %" PRIu64 " small ranges", small);
	else if (w->exact || (was && !w->may_drop))
		CHECK_MSG(now, "no index with %" PRIu64 " small ranges (was %d)",
			  small, was);
	w->indexed = now;
	w->may_drop = false;
	if (!(w->flags & GM_RCU)) {
		/* Non-RCU frees at once: the groups' allocator holds the
		 * handles and indexes and nothing else. */
		CHECK_EQ(gm_rangeset_group_bytes(w->g) + gm_rangeset_group_bytes(w->g2),
			 gm_alloc_counting_bytes(w->group_count));
	}
	if (!now) /* the handle alone */
		CHECK_EQ(gm_rangeset_group_bytes(w->g), group_handle_bytes());
}

static void check_members(const struct world *w)
{
	for (unsigned n = 0; n < GM_RANGESET_GROUP_MAX; n++) {
		const struct gm_rangeset *want = NULL;
		for (int k = 0; k < OUTSIDER; k++)
			if (w->number[k] == (int)n)
				want = w->set[k];
		CHECK(gm_rangeset_group_member(w->g, n) == want);
	}
	CHECK(gm_rangeset_group_member(w->g2, 0) ==
	      (w->number[OUTSIDER] == 0 ? w->set[OUTSIDER] : NULL));
}

/* Asks select about the window [wf, wl] (every index of it, or a sample
 * when it is long), random indices, the edges of the universe, and, when
 * `full`, every index; checks the index state and the member table. */
static void world_probe(struct world *w, struct gm_rng *rng, uint64_t wf,
			uint64_t wl, bool full)
{
	check_index_state(w);
	check_members(w);
	uint64_t stride = (wl - wf) / 64 + 1;
	for (uint64_t x = wf; x - wf <= wl - wf; x += stride) {
		check_select(w, x - 1);
		check_select(w, x);
		if (x + stride < x)
			break; /* at the top of the space */
	}
	check_select(w, wl + 1);
	for (int i = 0; i < 48; i++)
		check_select(w, w->base + gm_rng_below(rng, w->size));
	const uint64_t edges[] = {0, UINT64_MAX, w->base, w->base - 1,
				  w->base + w->size - 1, w->base + w->size};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		check_select(w, edges[i]);
	for (unsigned i = 0; full && i < w->size; i++)
		check_select(w, w->base + i);
}

/* world_probe after validating both groups. */
static void world_check(struct world *w, struct gm_rng *rng, uint64_t wf,
			uint64_t wl, bool full)
{
	CHECK_VALID(gm_rangeset_group_validate(w->g, &reason), reason);
	CHECK_VALID(gm_rangeset_group_validate(w->g2, &reason), reason);
	world_probe(w, rng, wf, wl, full);
}

/* Whether step i of a fill or a drain is near the threshold where the
 * index is built (none yet) or dropped: it validates after those steps,
 * elsewhere now and then (validate is O(N), the phases O(N) steps). */
static bool near_threshold(const struct world *w, uint64_t i)
{
	uint64_t small = world_small(w), at = GM_RANGESET_GROUP_INDEX_MIN;
	if (w->indexed)
		at /= 2;
	return i % 128 == 0 || (small + 16 >= at && small <= at + 16);
}

/* ---- one change to the world ----------------------------------------------- */
enum gop { G_ADD, G_REMOVE, G_CLAIM, G_CONSUME, G_SETOP, G_PURGE, G_SWAP };

/* A change, drawn once so that it can be run again after an injected
 * failure. */
struct gchange {
	enum gop op;
	int a, b;                /* slots: the changed one, the other one */
	uint64_t f, l;           /* window */
	uint64_t size, align;    /* claim */
	int stop_after;          /* consume: pieces before the callback says stop */
	enum setop setop;
	/* Filled by run_change: */
	int slot[2];             /* slots whose sets change, -1: none */
	struct oracle after[2];  /* their contents if the call succeeds */
	int want;                /* the call's result if no allocation fails */
	int rc;                  /* what it returned */
};

/* A window: mostly a few indices, often either side of GROUP_SMALL, at
 * times long enough to swallow many ranges. */
static void pick_window(const struct world *w, struct gm_rng *rng,
			uint64_t *f, uint64_t *l)
{
	uint64_t len; /* last - first */
	switch (gm_rng_below(rng, 16)) {
	case 0: case 1: case 2:
		len = GM_RANGESET_GROUP_SMALL - 4 + gm_rng_below(rng, 8);
		break;
	case 3: case 4:
		len = gm_rng_below(rng, 80);
		break;
	case 5:
		len = gm_rng_below(rng, w->size / 3);
		break;
	default:
		len = gm_rng_below(rng, 4);
	}
	uint64_t fo = gm_rng_below(rng, w->size);
	*f = w->base + fo;
	*l = w->base + (fo + len < w->size ? fo + len : w->size - 1);
}

/* A slot to change: a member of g most of the time. */
static int pick_slot(const struct world *w, struct gm_rng *rng)
{
	if (members_of_g(w) && gm_rng_chance(rng, 4, 5))
		for (;;) {
			int k = (int)gm_rng_below(rng, OUTSIDER);
			if (in_g(w, k))
				return k;
		}
	return (int)gm_rng_below(rng, NSLOT);
}

static void draw_change(const struct world *w, struct gm_rng *rng,
			struct gchange *c)
{
	static const enum gop mix[] = {
		G_ADD, G_ADD, G_ADD, G_ADD, G_ADD, G_ADD, G_REMOVE, G_REMOVE,
		G_REMOVE, G_REMOVE, G_CLAIM, G_CONSUME, G_SETOP, G_SETOP,
		G_PURGE, G_SWAP, G_SWAP,
	};
	c->op = mix[gm_rng_below(rng, sizeof(mix) / sizeof(mix[0]))];
	if (c->op == G_PURGE && gm_rng_chance(rng, 2, 3))
		c->op = G_REMOVE; /* purges empty the group too fast */
	c->a = pick_slot(w, rng);
	c->b = pick_slot(w, rng);
	pick_window(w, rng, &c->f, &c->l);
	c->size = 1 + gm_rng_below(rng, 20);
	c->align = 1ULL << gm_rng_below(rng, 4);
	c->stop_after = gm_rng_chance(rng, 1, 2) ? (int)gm_rng_below(rng, 4) : -1;
	c->setop = (enum setop)gm_rng_below(rng, 3);
}

/* -ENOSPC if `after` would take slot k past its limit, else 0. */
static int limit_rc(const struct world *w, int k, const struct oracle *after)
{
	return w->limit[k] && oracle_runs(after) > w->limit[k] ? -ENOSPC : 0;
}

static void run_claim(struct world *w, struct gchange *c)
{
	uint64_t got = 0, want = 0, end = w->base + (w->size - 1);
	c->rc = gm_rangeset_claim(w->set[c->a], c->size, c->align, c->f,
					end, &got);
	if (!oracle_claim(&w->o[c->a], c->size, c->align, c->f, end, &want)) {
		c->want = -ENOSPC;
		return;
	}
	oracle_set(&c->after[0], want, want + c->size - 1, 1);
	c->want = limit_rc(w, c->a, &c->after[0]);
	if (c->rc == 0)
		CHECK_EQ(got, want);
}

/* The pieces consume_ranges reported: the set's runs in [f, l], clipped,
 * in order, as many as the callback took; they are what it removes. */
static void run_consume(struct world *w, struct gchange *c)
{
	const struct oracle *o = &w->o[c->a];
	struct collect *got = calloc(1, sizeof(*got));
	got->stop_after = c->stop_after;
	c->rc = gm_rangeset_consume(w->set[c->a], c->f, c->l, collect_cb, got);
	unsigned runs = 0;
	for (uint64_t x = c->f; x - c->f <= c->l - c->f; x++)
		runs += o->bit[x - w->base] && (x == c->f || !o->bit[x - 1 - w->base]);
	bool stopped = c->stop_after >= 0 && runs > (unsigned)c->stop_after;
	CHECK_EQ(got->n, stopped ? (unsigned)c->stop_after : runs);
	for (unsigned i = 0; i < got->n; i++) {
		uint64_t pf = got->first[i], pl = got->last[i];
		CHECK(pf >= c->f && pl <= c->l && pf <= pl);
		CHECK(i == 0 || pf > got->last[i - 1] + 1);
		CHECK(pf == c->f || !o->bit[pf - 1 - w->base]);
		CHECK(pl == c->l || !o->bit[pl + 1 - w->base]);
		oracle_set(&c->after[0], pf, pl, 0);
	}
	for (unsigned i = 0; i < got->n; i++) /* x == last ends it: last may be UINT64_MAX */
		for (uint64_t x = got->first[i];; x++) {
			CHECK(o->bit[x - w->base]);
			if (x == got->last[i])
				break;
		}
	c->want = got->n ? limit_rc(w, c->a, &c->after[0]) : 0;
	if (c->want == 0 && stopped)
		c->want = 7;
	free(got);
}

static void run_swap(struct world *w, struct gchange *c)
{
	c->rc = gm_rangeset_swap(w->set[c->a], w->set[c->b]);
	if (c->a == c->b) {
		c->slot[0] = -1;
		c->want = 0;
		return;
	}
	c->slot[1] = c->b;
	memcpy(&c->after[0], &w->o[c->b], sizeof(struct oracle));
	memcpy(&c->after[1], &w->o[c->a], sizeof(struct oracle));
	c->want = limit_rc(w, c->a, &c->after[0]);
	if (!c->want)
		c->want = limit_rc(w, c->b, &c->after[1]);
}

/* Makes the call and works out what it should have done. Draws nothing. */
static void run_change(struct world *w, struct gchange *c)
{
	struct gm_rangeset *s = w->set[c->a];
	c->slot[0] = c->a;
	c->slot[1] = -1;
	memcpy(&c->after[0], &w->o[c->a], sizeof(struct oracle));
	switch (c->op) {
	case G_ADD:
	case G_REMOVE:
		c->rc = c->op == G_ADD ? gm_rangeset_add(s, c->f, c->l)
				       : gm_rangeset_remove(s, c->f, c->l);
		oracle_set(&c->after[0], c->f, c->l, c->op == G_ADD);
		c->want = limit_rc(w, c->a, &c->after[0]);
		break;
	case G_CLAIM:
		run_claim(w, c);
		break;
	case G_CONSUME:
		run_consume(w, c);
		break;
	case G_SETOP:
		c->rc = apply_setop(s, w->set[c->b], c->setop);
		oracle_setop(&c->after[0], &w->o[c->b], c->setop);
		c->want = limit_rc(w, c->a, &c->after[0]);
		break;
	case G_PURGE:
		c->rc = gm_rangeset_purge(s);
		oracle_init(&c->after[0], w->base, w->size);
		c->want = 0;
		break;
	case G_SWAP:
		run_swap(w, c);
		break;
	}
}

/*
 * Checks what run_change returned and keeps it in the oracles. With `oom`,
 * -ENOMEM is a possible answer too, and then every set must be as it was.
 * `light` skips comparing whole sets (for the long fill phases).
 */
static void settle(struct world *w, struct gchange *c, bool oom, bool light)
{
	CHECK(c->rc <= 0 || c->rc == 7);
	if (!(oom && c->rc == -ENOMEM)) {
		CHECK_MSG(c->rc == c->want, "op %d on slot %d (%d): rc %d, want %d",
			  c->op, c->a, c->b, c->rc, c->want);
		for (int i = 0; i < 2 && (c->rc == 0 || c->rc == 7); i++)
			if (c->slot[i] >= 0)
				slot_commit(w, c->slot[i], &c->after[i]);
	}
	for (int i = 0; i < 2 && !light; i++)
		if (c->slot[i] >= 0)
			check_equal(w->set[c->slot[i]], &w->o[c->slot[i]]);
}

/* ---- membership changes ------------------------------------------------------ */
static int lowest_free(const struct world *w)
{
	for (int n = 0;; n++) {
		bool used = false;
		for (int k = 0; k < OUTSIDER; k++)
			used |= w->number[k] == n;
		if (!used)
			return n;
	}
}

/* Slot k joins g (OUTSIDER: g2) and gets the lowest free number. With
 * `oom`, -ENOMEM may come back, with nothing changed. */
static int world_join(struct world *w, int k, bool oom)
{
	struct gm_rangeset_group *g = k == OUTSIDER ? w->g2 : w->g;
	int rc = gm_rangeset_group_join(g, w->set[k]);
	if (oom && rc == -ENOMEM)
		return rc;
	CHECK_EQ(rc, k == OUTSIDER ? 0 : lowest_free(w));
	w->number[k] = rc;
	return rc;
}

/* Random slots that are not members join g until it has `members`. */
static void join_some(struct world *w, struct gm_rng *rng, unsigned members)
{
	while (members_of_g(w) < members) {
		int k = (int)gm_rng_below(rng, OUTSIDER);
		if (!in_g(w, k))
			world_join(w, k, false);
	}
}

static void world_leave(struct world *w, int k)
{
	CHECK_EQ(gm_rangeset_group_leave(w->set[k]), w->number[k] >= 0 ? 0 : -ENOENT);
	w->number[k] = -1;
	w->may_drop = true;
}

/* Destroys slot k's set (it leaves its group first) and makes it anew. */
static void world_reinit(struct world *w, int k)
{
	gm_rangeset_destroy(w->set[k]);
	w->may_drop = true;
	slot_init(w, k);
}

/* Joins or leaves; a member first tries joining again (-EEXIST, in either
 * group). */
static void world_toggle(struct world *w, struct gm_rng *rng, int k, bool oom)
{
	if (w->number[k] < 0) {
		if (k == OUTSIDER || members_of_g(w) < GROUP_MEMBERS)
			world_join(w, k, oom);
		return;
	}
	if (gm_rng_chance(rng, 1, 4)) {
		struct gm_rangeset_group *g = gm_rng_chance(rng, 1, 2) ? w->g : w->g2;
		CHECK_EQ(gm_rangeset_group_join(g, w->set[k]), -EEXIST);
	}
	world_leave(w, k);
}

/* One random step: mostly a change to a set, sometimes a join, a leave or
 * a set destroyed and made anew. */
static void world_step(struct world *w, struct gm_rng *rng)
{
	unsigned r = (unsigned)gm_rng_below(rng, 100);
	if (r < 4) {
		world_toggle(w, rng, (int)gm_rng_below(rng, NSLOT), false);
		world_check(w, rng, w->base, w->base, false);
		return;
	}
	if (r < 5) {
		int k = (int)gm_rng_below(rng, NSLOT);
		bool member = w->number[k] >= 0;
		world_reinit(w, k);
		if (member && gm_rng_chance(rng, 1, 2))
			world_join(w, k, false);
		world_check(w, rng, w->base, w->base, false);
		return;
	}
	struct gchange *c = malloc(sizeof(*c));
	draw_change(w, rng, c);
	run_change(w, c);
	settle(w, c, false, false);
	bool whole = c->op == G_SETOP || c->op == G_PURGE || c->op == G_SWAP;
	world_check(w, rng, whole ? w->base : c->f, whole ? w->base : c->l, false);
	free(c);
}

/* Adds one-index ranges at even offsets of members (so they stay apart)
 * until the group holds `target` small ranges. */
static void world_fill(struct world *w, struct gm_rng *rng, uint64_t target)
{
	unsigned want = 3;
	join_some(w, rng, want);
	struct gchange *c = malloc(sizeof(*c));
	uint64_t best = world_small(w), since = 0;
	for (uint64_t i = 0; world_small(w) < target; i++) {
		CHECK(i < 100000);
		/* Members whose large ranges cover their space take no new small
		 * range: when the count stops growing, one more member joins. */
		if (world_small(w) > best)
			best = world_small(w), since = 0;
		else if (++since == 2000 && want < OUTSIDER)
			join_some(w, rng, ++want), since = 0;
		c->op = G_ADD;
		do
			c->a = (int)gm_rng_below(rng, OUTSIDER);
		while (!in_g(w, c->a));
		c->f = c->l = w->base + 2 * gm_rng_below(rng, w->size / 2);
		run_change(w, c);
		settle(w, c, false, true);
		if (near_threshold(w, i)) {
			world_check(w, rng, c->f, c->l, false);
		} else {
			check_index_state(w);
			check_select(w, c->f - 1);
			check_select(w, c->f);
			check_select(w, c->f + 1);
		}
	}
	free(c);
	world_check(w, rng, w->base, w->base, true);
}

/* Removes short windows from members until fewer than `target` small
 * ranges are left. */
static void world_drain(struct world *w, struct gm_rng *rng, uint64_t target)
{
	struct gchange *c = malloc(sizeof(*c));
	for (uint64_t i = 0; world_small(w) >= target; i++) {
		CHECK(i < 100000);
		c->op = G_REMOVE;
		do
			c->a = (int)gm_rng_below(rng, OUTSIDER);
		while (!in_g(w, c->a));
		uint64_t fo = gm_rng_below(rng, w->size - 32);
		c->f = w->base + fo;
		c->l = c->f + 4 + gm_rng_below(rng, 28);
		run_change(w, c);
		settle(w, c, false, i % 16 != 0);
		if (near_threshold(w, i))
			world_check(w, rng, c->f, c->l, false);
		else
			world_probe(w, rng, c->f, c->l, false);
	}
	free(c);
	world_check(w, rng, w->base, w->base, true);
}

/*
 * The differential: 1..6 members, random steps without an index, then
 * twice: fill past GROUP_INDEX_MIN small ranges (the index is built), random
 * steps (mostly with the index; purges and long removals may drop it and
 * fills build it again), drain under half (the index is dropped).
 */
static void group_differential(unsigned flags, uint64_t base, uint64_t steps)
{
	struct gm_rng *rng = gm_test_rng();
	struct gm_alloc_counting count;
	gm_alloc_counting_init(&count, NULL);
	struct world *w = world_new(flags, base, ORACLE_MAX, NULL, &count);
	join_some(w, rng, 1 + (unsigned)gm_rng_below(rng, GROUP_MEMBERS));
	if (gm_rng_chance(rng, 1, 2))
		world_join(w, OUTSIDER, false);
	for (uint64_t i = 0; i < steps; i++)
		world_step(w, rng);
	uint64_t indexed_steps = 0;
	for (int round = 0; round < 2; round++) {
		world_fill(w, rng, GM_RANGESET_GROUP_INDEX_MIN + 600);
		CHECK(gm_rangeset_group_indexed(w->g));
		CHECK(gm_rangeset_group_bytes(w->g) > 0);
		for (uint64_t i = 0; i < steps; i++) {
			world_step(w, rng);
			indexed_steps += w->indexed;
			/* Set operations, purges and swaps with small sets eat
			 * ranges: top up, not always, so that some steps run
			 * after the index was dropped. */
			if (world_small(w) < GM_RANGESET_GROUP_INDEX_MIN &&
			    gm_rng_chance(rng, 1, 8))
				world_fill(w, rng, GM_RANGESET_GROUP_INDEX_MIN + 300);
		}
		world_drain(w, rng, GM_RANGESET_GROUP_INDEX_MIN / 2 - 100);
		CHECK(!gm_rangeset_group_indexed(w->g));
	}
	CHECK(indexed_steps > steps); /* most of them */
	world_free(w, rng);
	if (flags & GM_RCU)
		gm_rcu_barrier();
	CHECK_EQ(gm_alloc_counting_bytes(&count), 0);
}

GM_TEST(group_differential_at_zero)
{
	group_differential(0, 0, gm_test_iters(300));
}

GM_TEST(group_differential_at_the_top_rcu_mode)
{
	gm_rcu_register_thread();
	group_differential(GM_RCU, UINT64_MAX - (ORACLE_MAX - 1),
			   gm_test_iters(200));
	gm_rcu_unregister_thread();
}

/* ---- groups: edges ------------------------------------------------------------- */
GM_TEST(group_join_and_leave_errors)
{
	gm_rcu_register_thread();
	struct gm_rangeset_group *g, *h, *r;
	CHECK_EQ(gm_rangeset_group_create(&g, 0x80, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_group_create(&g, 0, NULL), 0);
	CHECK_EQ(gm_rangeset_group_create(&h, 0, NULL), 0);
	CHECK_EQ(gm_rangeset_group_create(&r, GM_RCU, NULL), 0);
	struct gm_rangeset *sets[GM_RANGESET_GROUP_MAX + 1];
	for (unsigned i = 0; i <= GM_RANGESET_GROUP_MAX; i++)
		sets[i] = new_set(0, 0, NULL);
	struct gm_rangeset *rs = new_set(GM_RCU, 0, NULL);
	/* The RCU modes must agree, both ways round. */
	CHECK_EQ(gm_rangeset_group_join(g, rs), -EINVAL);
	CHECK_EQ(gm_rangeset_group_join(r, sets[0]), -EINVAL);
	CHECK_EQ(gm_rangeset_group_join(r, rs), 0);
	CHECK_EQ(gm_rangeset_group_join(r, rs), -EEXIST);
	CHECK_EQ(gm_rangeset_group_leave(sets[0]), -ENOENT);
	for (unsigned i = 0; i < GM_RANGESET_GROUP_MAX; i++) {
		CHECK_EQ(gm_rangeset_add(sets[i], 1000 * i, 1000 * i + 3 * i), 0);
		CHECK_EQ(gm_rangeset_group_join(g, sets[i]), i);
	}
	CHECK_EQ(gm_rangeset_group_join(g, sets[GM_RANGESET_GROUP_MAX]), -ENOSPC);
	CHECK_EQ(gm_rangeset_group_join(g, sets[3]), -EEXIST);
	CHECK_EQ(gm_rangeset_group_join(h, sets[3]), -EEXIST); /* in another group */
	CHECK(gm_rangeset_group_member(g, GM_RANGESET_GROUP_MAX) == NULL);
	CHECK(gm_rangeset_group_member(g, GM_RANGESET_GROUP_MAX - 1) ==
	      sets[GM_RANGESET_GROUP_MAX - 1]);
	for (unsigned i = 0; i < GM_RANGESET_GROUP_MAX; i++)
		CHECK_EQ(gm_rangeset_group_select(g, 1000 * i + 3 * i), i);
	CHECK_VALID(gm_rangeset_group_validate(g, &reason), reason);
	/* A failed join left the set in no group: h takes it. */
	CHECK_EQ(gm_rangeset_group_join(h, sets[GM_RANGESET_GROUP_MAX]), 0);
	CHECK_EQ(gm_rangeset_group_leave(sets[5]), 0);
	CHECK_EQ(gm_rangeset_group_leave(sets[5]), -ENOENT);
	CHECK(gm_rangeset_group_member(g, 5) == NULL);
	CHECK_EQ(gm_rangeset_group_select(g, 5000), -ENOENT);
	CHECK_EQ(gm_rangeset_group_join(h, sets[5]), 1);
	CHECK_EQ(gm_rangeset_group_select(h, 5000), 1);
	CHECK_VALID(gm_rangeset_group_validate(g, &reason), reason);
	CHECK_VALID(gm_rangeset_group_validate(h, &reason), reason);
	gm_rangeset_group_destroy(g);
	for (unsigned i = 0; i <= GM_RANGESET_GROUP_MAX; i++)
		free_set(sets[i]); /* 5 and 64 leave h on the way */
	CHECK(gm_rangeset_group_member(h, 0) == NULL);
	CHECK(gm_rangeset_group_member(h, 1) == NULL);
	CHECK_EQ(gm_rangeset_group_select(h, 5000), -ENOENT);
	gm_rangeset_group_destroy(h);
	gm_rangeset_group_destroy(r);
	CHECK_EQ(gm_rangeset_group_leave(rs), -ENOENT);
	free_set(rs);
	gm_rcu_unregister_thread();
}

/* Member numbers: a join takes the lowest free one. */
GM_TEST(group_member_numbers_reused)
{
	struct gm_rangeset_group *g;
	CHECK_EQ(gm_rangeset_group_create(&g, 0, NULL), 0);
	struct gm_rangeset *s[8];
	for (int i = 0; i < 8; i++) {
		s[i] = new_set(0, 0, NULL);
		CHECK_EQ(gm_rangeset_add(s[i], 100, 100 + i), 0);
	}
	for (int i = 0; i < 5; i++)
		CHECK_EQ(gm_rangeset_group_join(g, s[i]), i);
	CHECK_EQ(gm_rangeset_group_select(g, 104), 4);
	CHECK_EQ(gm_rangeset_group_leave(s[3]), 0);
	CHECK_EQ(gm_rangeset_group_leave(s[1]), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 101), 2);
	CHECK_EQ(gm_rangeset_group_select(g, 103), 4);
	CHECK_EQ(gm_rangeset_group_join(g, s[7]), 1); /* now first after s[0] */
	CHECK_EQ(gm_rangeset_group_select(g, 107), 1);
	CHECK_EQ(gm_rangeset_group_select(g, 103), 1);
	CHECK_EQ(gm_rangeset_group_join(g, s[1]), 3);
	CHECK_EQ(gm_rangeset_group_join(g, s[6]), 5);
	CHECK(gm_rangeset_group_member(g, 3) == s[1]);
	gm_rangeset_destroy(s[0]); /* leaves: 0 is free again */
	CHECK(gm_rangeset_group_member(g, 0) == NULL);
	CHECK_EQ(gm_rangeset_group_select(g, 100), 1);
	CHECK_EQ(gm_rangeset_create(&s[0], &(struct gm_rangeset_config){"again", 0}, 0, NULL), 0);
	CHECK_EQ(gm_rangeset_group_join(g, s[0]), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 100), 1); /* s[0] is empty now */
	CHECK_VALID(gm_rangeset_group_validate(g, &reason), reason);
	gm_rangeset_group_destroy(g);
	for (int i = 0; i < 8; i++) {
		CHECK_EQ(gm_rangeset_group_leave(s[i]), -ENOENT);
		CHECK_VALID(gm_rangeset_validate(s[i], &reason), reason);
		free_set(s[i]);
	}
}

/* create must not trust the memory it is given: a set and a group made
 * from an allocator that hands out garbage work as if it were zeroed. */
static void *dirty_alloc(void *ctx, size_t size, size_t align)
{
	const struct gm_allocator *d = ctx;
	void *p = d->alloc(d->ctx, size, align);
	if (p)
		memset(p, 0xa5, size);
	return p;
}
static void dirty_free(void *ctx, void *p, size_t size)
{
	const struct gm_allocator *d = ctx;
	d->free(d->ctx, p, size);
}

GM_TEST(group_join_of_a_set_made_in_dirty_memory)
{
	struct gm_allocator dirty = {dirty_alloc, dirty_free, (void *)gm_alloc_default()};
	struct gm_rangeset_group *g;
	struct gm_rangeset *s;
	CHECK_EQ(gm_rangeset_group_create(&g, 0, &dirty), 0);
	CHECK_EQ(gm_rangeset_create(&s, &(struct gm_rangeset_config){"dirty", 0}, 0, &dirty), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 0), -ENOENT);
	CHECK(!gm_rangeset_group_indexed(g));
	CHECK_EQ(gm_rangeset_group_leave(s), -ENOENT);
	CHECK_EQ(gm_rangeset_group_join(g, s), 0);
	CHECK_EQ(gm_rangeset_add(s, 7, 7), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 7), 0);
	CHECK_VALID(gm_rangeset_group_validate(g, &reason), reason);
	gm_rangeset_destroy(s);
	CHECK_EQ(gm_rangeset_group_select(g, 7), -ENOENT);
	gm_rangeset_group_destroy(g);
}

/* Adds `n` one-index ranges at 2i from `at` to s: small ranges that, in the
 * set of a member, take the group past GROUP_INDEX_MIN. */
static void add_spaced(struct gm_rangeset *s, uint64_t at, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(gm_rangeset_add(s, at + 2 * i, at + 2 * i), 0);
}

/* select against the set-by-set loop over the members, in number order,
 * over [first, last]. */
static void check_select_loop(const struct gm_rangeset_group *g, uint64_t first,
			      uint64_t last)
{
	for (uint64_t x = first;; x++) {
		int want = -ENOENT;
		for (unsigned k = 0; k < GM_RANGESET_GROUP_MAX && want < 0; k++) {
			const struct gm_rangeset *m = gm_rangeset_group_member(g, k);
			if (m && gm_rangeset_contains(m, x))
				want = (int)k;
		}
		CHECK_MSG(gm_rangeset_group_select(g, x) == want,
			  "select(%#" PRIx64 ") = %d, want %d (indexed %d)", x,
			  gm_rangeset_group_select(g, x), want,
			  gm_rangeset_group_indexed(g));
		if (x == last)
			break;
	}
	CHECK_VALID(gm_rangeset_group_validate(g, &reason), reason);
}

/*
 * The edges of the space and of the index: an empty group, index 0 and
 * UINT64_MAX, [0, UINT64_MAX] in a member, with and without an index (a
 * filler member, last in priority, holds GROUP_INDEX_MIN small ranges far
 * from the indices asked).
 */
static void group_edges(bool indexed)
{
	struct gm_rangeset_group *g;
	CHECK_EQ(gm_rangeset_group_create(&g, 0, NULL), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 0), -ENOENT);
	CHECK_EQ(gm_rangeset_group_select(g, UINT64_MAX), -ENOENT);
	CHECK_VALID(gm_rangeset_group_validate(g, &reason), reason);
	struct gm_rangeset *s[4];
	for (int i = 0; i < 4; i++) {
		s[i] = new_set(0, 0, NULL);
		CHECK_EQ(gm_rangeset_group_join(g, s[i]), i);
	}
	CHECK_EQ(gm_rangeset_group_select(g, 12345), -ENOENT); /* empty members */
	add_spaced(s[3], 1ULL << 40, indexed ? GM_RANGESET_GROUP_INDEX_MIN + 10 : 10);
	CHECK_EQ(gm_rangeset_group_indexed(g), indexed);
	CHECK_EQ(gm_rangeset_add(s[2], 0, 0), 0);
	CHECK_EQ(gm_rangeset_add(s[1], UINT64_MAX, UINT64_MAX), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 0), 2);
	CHECK_EQ(gm_rangeset_group_select(g, 1), -ENOENT);
	CHECK_EQ(gm_rangeset_group_select(g, UINT64_MAX), 1);
	CHECK_EQ(gm_rangeset_group_select(g, UINT64_MAX - 1), -ENOENT);
	check_select_loop(g, UINT64_MAX - 20, UINT64_MAX);
	check_select_loop(g, 0, 20);
	/* The whole space in member 2: everything is 2 but what 0 and 1 hold. */
	CHECK_EQ(gm_rangeset_add(s[0], UINT64_MAX - 3, UINT64_MAX), 0);
	CHECK_EQ(gm_rangeset_add(s[2], 0, UINT64_MAX), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 0), 2);
	CHECK_EQ(gm_rangeset_group_select(g, UINT64_MAX), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 1ULL << 40), 2); /* over the filler */
	CHECK_EQ(gm_rangeset_group_select(g, UINT64_MAX - 4), 2);
	check_select_loop(g, UINT64_MAX - 20, UINT64_MAX);
	check_select_loop(g, (1ULL << 40) - 5, (1ULL << 40) + 40);
	/* Punch holes: small pieces of the whole space at both ends. */
	CHECK_EQ(gm_rangeset_remove(s[2], 3, UINT64_MAX - 8), 0);
	CHECK_EQ(gm_rangeset_count(s[2]), 2);
	check_select_loop(g, 0, 20);
	check_select_loop(g, UINT64_MAX - 20, UINT64_MAX);
	check_select_loop(g, (1ULL << 40) - 5, (1ULL << 40) + 40);
	CHECK_EQ(gm_rangeset_remove(s[0], 0, UINT64_MAX), 0);
	CHECK_EQ(gm_rangeset_group_select(g, UINT64_MAX), 1);
	CHECK_EQ(gm_rangeset_group_select(g, UINT64_MAX - 1), 2);
	check_select_loop(g, UINT64_MAX - 20, UINT64_MAX);
	CHECK_EQ(gm_rangeset_group_indexed(g), indexed);
	gm_rangeset_group_destroy(g);
	for (int i = 0; i < 4; i++)
		free_set(s[i]);
}

GM_TEST(group_edges_of_the_space_without_index) { group_edges(false); }
GM_TEST(group_edges_of_the_space_with_index) { group_edges(true); }

/*
 * Priority: where members overlap, the lowest number wins, whatever the
 * lengths. The hard case for the index is a lower member's *large* range
 * (which only its tree knows) over a higher member's small one (which the
 * index knows), and ranges crossing GROUP_SMALL as they shrink and grow.
 */
static void group_priority(bool indexed)
{
	struct gm_rangeset_group *g;
	CHECK_EQ(gm_rangeset_group_create(&g, 0, NULL), 0);
	struct gm_rangeset *s[5];
	for (int i = 0; i < 5; i++) {
		s[i] = new_set(0, 0, NULL);
		CHECK_EQ(gm_rangeset_group_join(g, s[i]), i);
	}
	add_spaced(s[4], 1ULL << 40, indexed ? GM_RANGESET_GROUP_INDEX_MIN + 10 : 10);
	CHECK_EQ(gm_rangeset_group_indexed(g), indexed);
	CHECK_EQ(gm_rangeset_add(s[1], 1050, 1050), 0);
	CHECK_EQ(gm_rangeset_add(s[1], 1098, 1101), 0);
	CHECK_EQ(gm_rangeset_add(s[2], 1090, 1105), 0); /* exactly SMALL */
	CHECK_EQ(gm_rangeset_add(s[0], 1000, 1099), 0); /* large, first */
	CHECK_EQ(gm_rangeset_add(s[3], 990, 1200), 0);  /* large, last */
	CHECK_EQ(gm_rangeset_group_select(g, 989), -ENOENT);
	CHECK_EQ(gm_rangeset_group_select(g, 990), 3);
	CHECK_EQ(gm_rangeset_group_select(g, 1000), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 1050), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 1099), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 1100), 1);
	CHECK_EQ(gm_rangeset_group_select(g, 1102), 2);
	CHECK_EQ(gm_rangeset_group_select(g, 1106), 3);
	check_select_loop(g, 980, 1210);
	/* A hole in the large range shows what is under it. */
	CHECK_EQ(gm_rangeset_remove(s[0], 1045, 1055), 0);
	CHECK_EQ(gm_rangeset_group_select(g, 1050), 1);
	CHECK_EQ(gm_rangeset_group_select(g, 1049), 3);
	check_select_loop(g, 980, 1210);
	/* The first piece shrinks to exactly SMALL indices, then grows past. */
	CHECK_EQ(gm_rangeset_remove(s[0], 1000 + GM_RANGESET_GROUP_SMALL, 1044), 0);
	check_select_loop(g, 980, 1210);
	CHECK_EQ(gm_rangeset_add(s[0], 1000 + GM_RANGESET_GROUP_SMALL,
				       1000 + GM_RANGESET_GROUP_SMALL), 0);
	check_select_loop(g, 980, 1210);
	/* The small member grows large and shrinks back under the others. */
	CHECK_EQ(gm_rangeset_add(s[2], 1080, 1110), 0);
	check_select_loop(g, 980, 1210);
	CHECK_EQ(gm_rangeset_remove(s[2], 1080, 1097), 0);
	check_select_loop(g, 980, 1210);
	/* Swap priorities: the large ranges trade places with small ones. */
	CHECK_EQ(gm_rangeset_swap(s[0], s[1]), 0);
	check_select_loop(g, 980, 1210);
	CHECK_EQ(gm_rangeset_swap(s[3], s[1]), 0);
	check_select_loop(g, 980, 1210);
	/* Large ranges leave and come back with their set. */
	CHECK_EQ(gm_rangeset_group_leave(s[1]), 0);
	check_select_loop(g, 980, 1210);
	CHECK_EQ(gm_rangeset_group_join(g, s[1]), 1);
	check_select_loop(g, 980, 1210);
	CHECK_EQ(gm_rangeset_group_indexed(g), indexed);
	gm_rangeset_group_destroy(g);
	for (int i = 0; i < 5; i++)
		free_set(s[i]);
}

GM_TEST(group_priority_without_index) { group_priority(false); }
GM_TEST(group_priority_with_index) { group_priority(true); }

/* ---- groups: out of memory ------------------------------------------------------- */
/*
 * The sets and the groups each take their own failing allocator, so that
 * failures can be aimed at the group's allocations (its index and the
 * batches that free old ones: few per change, tried one by one) or at the
 * set's own (many for a whole-set change, tried at growing intervals).
 */
struct ooms {
	struct gm_alloc_failing sets, groups;
};

static bool whole_set(const struct gchange *c)
{
	return c->op == G_SETOP || c->op == G_PURGE || c->op == G_SWAP;
}

/* Runs c with the nth allocation of `fail` failing, for n = start,
 * start + 1, ... (growing faster unless `every`), until it succeeds; after
 * each failure everything must be as before. A change may survive a
 * failure (a best-effort allocation) and make more allocations after it,
 * hence the start, drawn by the caller. Returns the failures. */
static uint64_t change_until_done(struct world *w, struct gm_rng *rng,
				  struct gm_alloc_failing *fail, struct gchange *c,
				  uint64_t start, bool every)
{
	uint64_t failures = 0;
	for (uint64_t nth = start;; nth += every ? 1 : 1 + nth / 2) {
		gm_alloc_failing_arm_nth(fail, nth, false);
		run_change(w, c);
		gm_alloc_failing_disarm(fail);
		settle(w, c, true, false);
		world_check(w, rng, whole_set(c) ? w->base : c->f,
			    whole_set(c) ? w->base : c->l, false);
		if (c->rc != -ENOMEM)
			return failures;
		failures++;
	}
}

/* Both allocators fail at random: several failures in one call. */
static uint64_t change_at_random(struct world *w, struct gm_rng *rng,
				 struct ooms *oom, struct gchange *c)
{
	gm_alloc_failing_arm_random(&oom->sets, 0.05, gm_rng_next(rng));
	gm_alloc_failing_arm_random(&oom->groups, 0.2, gm_rng_next(rng));
	run_change(w, c);
	gm_alloc_failing_disarm(&oom->sets);
	gm_alloc_failing_disarm(&oom->groups);
	settle(w, c, true, false);
	world_check(w, rng, w->base, w->base, false);
	return c->rc == -ENOMEM;
}

/* A join failing at each group allocation in turn, then succeeding; or a
 * leave or a set's destroy while group allocations fail (they may cost the
 * index, nothing else). */
static void membership_under_oom(struct world *w, struct gm_rng *rng,
				 struct ooms *oom)
{
	int k = (int)gm_rng_below(rng, NSLOT);
	if (w->number[k] < 0 && (k == OUTSIDER || members_of_g(w) < GROUP_MEMBERS)) {
		for (uint64_t nth = 1;; nth++) {
			gm_alloc_failing_arm_nth(&oom->groups, nth, false);
			int rc = world_join(w, k, true);
			gm_alloc_failing_disarm(&oom->groups);
			world_check(w, rng, w->base, w->base, false);
			if (rc != -ENOMEM)
				break;
		}
		return;
	}
	gm_alloc_failing_arm_random(&oom->groups, 0.5, gm_rng_next(rng));
	if (gm_rng_chance(rng, 1, 4)) {
		bool member = w->number[k] >= 0;
		world_reinit(w, k);
		gm_alloc_failing_disarm(&oom->groups);
		if (member)
			world_join(w, k, false);
	} else {
		world_leave(w, k);
	}
	gm_alloc_failing_disarm(&oom->groups);
	world_check(w, rng, w->base, w->base, false);
}

/*
 * In indexed mode, changes fail at every group allocation in turn, at the
 * sets' allocations, or at random in both; after each -ENOMEM every set is
 * as before, the groups valid and select right. Joins fail at every group
 * allocation in turn. In RCU mode the groups also allocate the batches
 * that free old tables after a grace period, and those fail too.
 */
static void group_out_of_memory(unsigned flags, uint64_t base, uint64_t steps)
{
	struct gm_rng *rng = gm_test_rng();
	struct ooms oom;
	gm_alloc_failing_init(&oom.sets, NULL);
	gm_alloc_failing_init(&oom.groups, NULL);
	struct gm_alloc_counting set_count, group_count;
	gm_alloc_counting_init(&set_count, &oom.sets.allocator);
	gm_alloc_counting_init(&group_count, &oom.groups.allocator);
	struct world *w = world_new(flags, base, ORACLE_MAX, &set_count.allocator,
				    &group_count);
	join_some(w, rng, 4);
	world_join(w, OUTSIDER, false);
	world_fill(w, rng, GM_RANGESET_GROUP_INDEX_MIN + 400);
	CHECK(gm_rangeset_group_indexed(w->g));
	w->exact = false;
	struct gchange *c = malloc(sizeof(*c));
	uint64_t failures[3] = {0}, indexed_failures = 0;
	for (uint64_t step = 0; step < steps; step++) {
		if (gm_rng_chance(rng, 1, 20)) {
			membership_under_oom(w, rng, &oom);
			continue;
		}
		draw_change(w, rng, c);
		bool indexed = gm_rangeset_group_indexed(w->g);
		unsigned how = (unsigned)gm_rng_below(rng, 3);
		uint64_t f;
		if (how == 0)
			f = change_until_done(w, rng, &oom.groups, c,
					      1 + gm_rng_below(rng, 3), true);
		else if (how == 1)
			f = change_until_done(w, rng, &oom.sets, c, 1, !whole_set(c));
		else
			f = change_at_random(w, rng, &oom, c);
		failures[how] += f;
		indexed_failures += indexed && how == 0 ? f : 0;
		/* Refill what set operations and purges ate, so that most
		 * steps run with the index. */
		if (world_small(w) < GM_RANGESET_GROUP_INDEX_MIN)
			world_fill(w, rng, GM_RANGESET_GROUP_INDEX_MIN + 400);
	}
	free(c);
	CHECK(failures[0] > 0 && failures[1] > 0 && failures[2] > 0);
	CHECK(indexed_failures > 0);
	world_free(w, rng);
	if (flags & GM_RCU)
		gm_rcu_barrier();
	CHECK_EQ(gm_alloc_counting_bytes(&set_count), 0);
	CHECK_EQ(gm_alloc_counting_bytes(&group_count), 0);
}

GM_TEST(group_out_of_memory_leaves_sets_and_index_exact)
{
	group_out_of_memory(0, 0, gm_test_iters(300));
}

GM_TEST(group_out_of_memory_at_the_top_rcu_mode)
{
	gm_rcu_register_thread();
	group_out_of_memory(GM_RCU, UINT64_MAX - (ORACLE_MAX - 1),
			    gm_test_iters(120));
	gm_rcu_unregister_thread();
}

/*
 * A swap between members of two indexed groups rebuilds both; if the
 * second rebuild cannot be had, the first is given up and nothing changes.
 * Every group allocation fails in turn (a failure that the swap survives,
 * such as a best-effort one, is swapped back to try the next).
 */
GM_TEST(group_swap_between_indexed_groups_out_of_memory)
{
	struct gm_alloc_failing fail;
	gm_alloc_failing_init(&fail, NULL);
	struct gm_rangeset_group *g[2];
	struct gm_rangeset *member[2], *filler[2];
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(gm_rangeset_group_create(&g[i], 0, &fail.allocator), 0);
		member[i] = new_set(0, 0, NULL);
		filler[i] = new_set(0, 0, NULL);
		CHECK_EQ(gm_rangeset_group_join(g[i], member[i]), 0);
		CHECK_EQ(gm_rangeset_group_join(g[i], filler[i]), 1);
		add_spaced(filler[i], (1ULL << 40) * (i + 1), GM_RANGESET_GROUP_INDEX_MIN + 10);
		CHECK(gm_rangeset_group_indexed(g[i]));
	}
	/* member 0: small ranges; member 1: a large one over filler 0's. */
	add_spaced(member[0], 1000, 40);
	CHECK_EQ(gm_rangeset_add(member[1], (1ULL << 40) - 4, (1ULL << 40) + 100), 0);
	uint64_t failures = 0;
	for (uint64_t nth = 1;; nth++) {
		uint64_t failed = fail.failures;
		gm_alloc_failing_arm_nth(&fail, nth, false);
		int rc = gm_rangeset_swap(member[0], member[1]);
		gm_alloc_failing_disarm(&fail);
		for (int i = 0; i < 2; i++) {
			CHECK_EQ(gm_rangeset_group_indexed(g[i]), true);
			check_select_loop(g[i], 995, 1085);
			check_select_loop(g[i], (1ULL << 40) - 6, (1ULL << 40) + 102);
		}
		if (rc == 0 && fail.failures == failed)
			break; /* every allocation has had its turn */
		if (rc == 0) {
			CHECK_EQ(gm_rangeset_swap(member[0], member[1]), 0);
		} else {
			CHECK_EQ(rc, -ENOMEM);
			failures++;
		}
		CHECK_EQ(gm_rangeset_count(member[0]), 40);
		CHECK_EQ(gm_rangeset_group_select(g[0], 1000), 0);
		CHECK_EQ(gm_rangeset_group_select(g[0], 1ULL << 40), 1);
	}
	CHECK(failures >= 2); /* the table of each group's rebuild */
	CHECK_EQ(gm_rangeset_count(member[1]), 40);
	CHECK_EQ(gm_rangeset_group_select(g[1], 1000), 0);
	CHECK_EQ(gm_rangeset_group_select(g[0], 1000), -ENOENT);
	CHECK_EQ(gm_rangeset_group_select(g[0], 1ULL << 40), 0);
	for (int i = 0; i < 2; i++) {
		gm_rangeset_group_destroy(g[i]);
		free_set(member[i]);
		free_set(filler[i]);
	}
}

/* ---- groups: the index grows and shrinks ---------------------------------------- */
/*
 * One-index ranges, each most likely in a chunk of its own (8 indices
 * apart, at random offsets, so that members sometimes share chunks and
 * indices), up to SPREAD_TOP of them in GROUP_MEMBERS members: the table
 * must grow several times, then, removed down under half of
 * GROUP_INDEX_MIN, shrink and go. A bitmap per member is the oracle. With
 * `oom`, every change first fails at each group allocation in turn: from
 * the 1st with an index (a full table grows before the member changes, so
 * a failed growth leaves both as they were), from the 1st to the 3rd
 * without (so that a best-effort build gets through now and then).
 */
#define SPREAD_CHUNKS 16384
#define SPREAD_TOP 7000

struct spread {
	struct gm_rangeset_group *g;
	struct gm_rangeset *s[GROUP_MEMBERS];
	uint8_t *bit[GROUP_MEMBERS]; /* per member, 8 * SPREAD_CHUNKS */
	uint64_t base;
	struct gm_alloc_failing fail;
	struct gm_alloc_counting count;
};

static int spread_want(const struct spread *sp, uint64_t x)
{
	if (x - sp->base >= 8 * SPREAD_CHUNKS)
		return -ENOENT;
	for (int k = 0; k < GROUP_MEMBERS; k++)
		if (sp->bit[k][x - sp->base])
			return k;
	return -ENOENT;
}

static void spread_probe(const struct spread *sp, uint64_t x)
{
	int got = gm_rangeset_group_select(sp->g, x), want = spread_want(sp, x);
	CHECK_MSG(got == want, "select(%#" PRIx64 ") = %d, want %d (indexed %d)",
		  x, got, want, gm_rangeset_group_indexed(sp->g));
}

static uint64_t spread_ranges(const struct spread *sp)
{
	uint64_t n = 0;
	for (int k = 0; k < GROUP_MEMBERS; k++)
		n += gm_rangeset_count(sp->s[k]);
	return n;
}

/* Adds (add) or removes x in member k; with `oom`, first fails at each
 * group allocation in turn from the start'th. */
static void spread_change(struct spread *sp, int k, uint64_t x, bool add, bool oom,
			  uint64_t start)
{
	for (uint64_t nth = start;; nth++) {
		if (oom)
			gm_alloc_failing_arm_nth(&sp->fail, nth, false);
		uint64_t ranges = gm_rangeset_count(sp->s[k]);
		int rc = add ? gm_rangeset_add(sp->s[k], x, x)
			     : gm_rangeset_remove(sp->s[k], x, x);
		gm_alloc_failing_disarm(&sp->fail);
		if (rc == 0)
			break;
		CHECK(oom);
		CHECK_EQ(rc, -ENOMEM);
		CHECK_EQ(gm_rangeset_count(sp->s[k]), ranges);
		CHECK_EQ(gm_rangeset_contains(sp->s[k], x), sp->bit[k][x - sp->base]);
		CHECK_VALID(gm_rangeset_group_validate(sp->g, &reason), reason);
		spread_probe(sp, x);
	}
	sp->bit[k][x - sp->base] = add;
	spread_probe(sp, x - 1);
	spread_probe(sp, x);
	spread_probe(sp, x + 1);
}

static uint64_t spread_start(const struct spread *sp, struct gm_rng *rng)
{
	return gm_rangeset_group_indexed(sp->g) ? 1 : 1 + gm_rng_below(rng, 3);
}

/* After step i: the index state, now and then validate and a sample. */
static void spread_check(struct spread *sp, struct gm_rng *rng, uint64_t i,
			 bool *was, bool oom)
{
	uint64_t n = spread_ranges(sp);
	bool now = gm_rangeset_group_indexed(sp->g);
	/* Under half, the index goes; if the change could not allocate the
	 * deferred free of the table, it goes at a later change. */
	if (n < GM_RANGESET_GROUP_INDEX_MIN / 2 || (n < GM_RANGESET_GROUP_INDEX_MIN && !*was))
		CHECK_MSG(!now || (oom && *was), "indexed at %" PRIu64 " ranges", n);
	else if (!oom)
		CHECK_MSG(now, "no index at %" PRIu64 " ranges", n);
	*was = now;
	if (i % 512)
		return;
	CHECK_VALID(gm_rangeset_group_validate(sp->g, &reason), reason);
	for (int j = 0; j < 512; j++)
		spread_probe(sp, sp->base + gm_rng_below(rng, 8 * SPREAD_CHUNKS));
}

static void group_growth(unsigned flags, uint64_t base, bool oom)
{
	struct gm_rng *rng = gm_test_rng();
	struct spread *sp = calloc(1, sizeof(*sp));
	sp->base = base;
	gm_alloc_failing_init(&sp->fail, NULL);
	gm_alloc_counting_init(&sp->count, &sp->fail.allocator);
	CHECK_EQ(gm_rangeset_group_create(&sp->g, flags, &sp->count.allocator), 0);
	for (int k = 0; k < GROUP_MEMBERS; k++) {
		sp->s[k] = new_set(flags, 0, NULL);
		sp->bit[k] = calloc(8 * SPREAD_CHUNKS, 1);
		CHECK_EQ(gm_rangeset_group_join(sp->g, sp->s[k]), k);
	}
	uint64_t *added = malloc(SPREAD_TOP * 2 * sizeof(*added)), n = 0, i = 0;
	size_t bytes_built = 0, bytes_max = 0;
	bool was = false;
	for (; spread_ranges(sp) < SPREAD_TOP; i++) {
		int k = (int)gm_rng_below(rng, GROUP_MEMBERS);
		uint64_t x = base + 8 * gm_rng_below(rng, SPREAD_CHUNKS) + gm_rng_below(rng, 8);
		spread_change(sp, k, x, true, oom, spread_start(sp, rng));
		added[n++] = (x - base) * GROUP_MEMBERS + (uint64_t)k;
		spread_check(sp, rng, i, &was, oom);
		size_t b = gm_rangeset_group_bytes(sp->g);
		bytes_built = bytes_built ? bytes_built : b;
		bytes_max = b > bytes_max ? b : bytes_max;
	}
	CHECK(bytes_max > bytes_built); /* it grew */
	while (spread_ranges(sp) >= GM_RANGESET_GROUP_INDEX_MIN / 2 - 100) {
		uint64_t j = gm_rng_below(rng, n), e = added[j];
		added[j] = added[--n];
		spread_change(sp, (int)(e % GROUP_MEMBERS), base + e / GROUP_MEMBERS,
			      false, oom, spread_start(sp, rng));
		spread_check(sp, rng, i++, &was, oom);
	}
	if (oom) { /* one change that can allocate: a drop left waiting happens */
		uint64_t e = added[--n];
		spread_change(sp, (int)(e % GROUP_MEMBERS), base + e / GROUP_MEMBERS, false,
			      false, 1);
	}
	CHECK(!gm_rangeset_group_indexed(sp->g));
	CHECK_EQ(gm_rangeset_group_bytes(sp->g), group_handle_bytes());
	for (uint64_t x = base; x - base < 8 * SPREAD_CHUNKS; x += 7)
		spread_probe(sp, x);
	gm_rangeset_group_destroy(sp->g);
	if (flags & GM_RCU)
		gm_rcu_barrier();
	CHECK_EQ(gm_alloc_counting_bytes(&sp->count), 0);
	for (int k = 0; k < GROUP_MEMBERS; k++) {
		free_set(sp->s[k]);
		free(sp->bit[k]);
	}
	free(added);
	free(sp);
}

/*
 * The state a change leaves just before the next one must grow the table
 * is a valid one: validate there. A first pass finds the adds that grow
 * the table (its bytes change); a second, the same adds in a new group,
 * validates right before each. Validating after every add would cost
 * O(N^2).
 */
static void add_in_own_chunks(struct gm_rangeset_group *g, struct gm_rangeset *s,
			      uint64_t n, const uint64_t *grows, unsigned ngrows)
{
	for (uint64_t i = 0, j = 0; i < n; i++) {
		if (j < ngrows && grows[j] == i) {
			CHECK_VALID(gm_rangeset_group_validate(g, &reason), reason);
			j++;
		}
		CHECK_EQ(gm_rangeset_add(s, 8 * i, 8 * i), 0);
	}
	CHECK_VALID(gm_rangeset_group_validate(g, &reason), reason);
}

GM_TEST(group_valid_just_before_the_table_grows)
{
	uint64_t grows[16];
	unsigned ngrows = 0;
	for (int pass = 0; pass < 2; pass++) {
		struct gm_rangeset_group *g;
		CHECK_EQ(gm_rangeset_group_create(&g, 0, NULL), 0);
		struct gm_rangeset *s = new_set(0, 0, NULL);
		CHECK_EQ(gm_rangeset_group_join(g, s), 0);
		if (pass == 0) {
			size_t bytes = 0;
			for (uint64_t i = 0; i < SPREAD_TOP; i++) {
				CHECK_EQ(gm_rangeset_add(s, 8 * i, 8 * i), 0);
				size_t b = gm_rangeset_group_bytes(g);
				if (bytes && b != bytes && ngrows < 16)
					grows[ngrows++] = i;
				bytes = b;
			}
			CHECK(ngrows > 0);
		} else {
			add_in_own_chunks(g, s, SPREAD_TOP, grows, ngrows);
		}
		gm_rangeset_group_destroy(g);
		free_set(s);
	}
}

GM_TEST(group_index_grows_and_shrinks)
{
	group_growth(0, 1ULL << 32, false);
}

GM_TEST(group_index_grows_and_shrinks_out_of_memory)
{
	group_growth(0, 0, true);
}

GM_TEST(group_index_grows_and_shrinks_at_the_top_rcu_mode_out_of_memory)
{
	gm_rcu_register_thread();
	group_growth(GM_RCU, UINT64_MAX - (8 * SPREAD_CHUNKS - 1), true);
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
