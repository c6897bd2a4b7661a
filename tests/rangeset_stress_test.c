/*
 * tests/rangeset_stress_test.c — RCU readers query a gm_rangeset while one
 * writer churns it with single-range changes and whole-set operations.
 *
 * Layout per block k (block = 100 indices):
 *   [100k, 100k+9]     stable: always in the set
 *   [100k+20, 100k+89] churned by the writer
 *   [100k+95, 100k+99] never in the set
 * Readers fail if a stable index is ever missing, a never index is ever
 * present, or a report over a block misses its stable range.
 *
 * The second test does the same for gm_rangeset_group_select over an
 * indexed RCU group (layout there).
 */
#include "harness.h"

#include <gmtrack/rangeset.h>
#include <gmtrack/rcu.h>

#include <pthread.h>

#define BLOCKS 64

static struct gm_rangeset *set;
static atomic_bool stop;

struct reader_result {
	uint64_t bad, reads;
};

static int find_stable(void *ctx, uint64_t first, uint64_t last)
{
	uint64_t *want = ctx;
	if (first == *want && last == *want + 9)
		*want = UINT64_MAX; /* seen */
	return 0;
}

static void *reader(void *arg)
{
	struct reader_result *res = arg;
	struct gm_rng rng;
	gm_rng_init(&rng, (uint64_t)(uintptr_t)arg);
	gm_rcu_register_thread();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t k = gm_rng_below(&rng, BLOCKS), base = 100 * k;
		gm_rcu_read_lock();
		res->bad += !gm_rangeset_contains(set, base + gm_rng_below(&rng, 10));
		res->bad += !gm_rangeset_contains_range(set, base, base + 9);
		res->bad += gm_rangeset_contains(set, base + 95 + gm_rng_below(&rng, 5));
		res->bad += gm_rangeset_overlaps_range(set, base + 95, base + 99);
		res->bad += !gm_rangeset_overlaps_range(set, base + 5, base + 50);
		const struct gm_rangeset *two[2] = {set, set};
		res->bad += gm_rangeset_first_containing(two, 2, base + gm_rng_below(&rng, 10)) != 0;
		res->bad += gm_rangeset_first_containing(two, 2, base + 95 + gm_rng_below(&rng, 5)) != -ENOENT;
		uint64_t want = base;
		gm_rangeset_walk(set, base, base + 99, find_stable, &want);
		res->bad += want != UINT64_MAX;
		gm_rcu_read_unlock();
		res->reads++;
	}
	gm_rcu_unregister_thread();
	return NULL;
}

GM_TEST(readers_see_stable_ranges_through_churn)
{
	gm_rcu_register_thread();
	CHECK_EQ(gm_rangeset_create(&set, &(struct gm_rangeset_config){"stress", 0}, GM_RCU, NULL), 0);
	struct gm_rangeset *other;
	CHECK_EQ(gm_rangeset_create(&other, &(struct gm_rangeset_config){"other", 0}, GM_RCU, NULL), 0);
	for (uint64_t k = 0; k < BLOCKS; k++)
		CHECK_EQ(gm_rangeset_add(set, 100 * k, 100 * k + 9), 0);
	atomic_store(&stop, false);
	pthread_t th[2];
	struct reader_result res[2] = {{0, 0}, {0, 0}};
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, reader, &res[i]), 0);

	struct gm_rng *rng = gm_test_rng();
	uint64_t steps = gm_test_iters(6000);
	for (uint64_t i = 0; i < steps; i++) {
		uint64_t base = 100 * gm_rng_below(rng, BLOCKS);
		uint64_t f = base + 20 + gm_rng_below(rng, 70);
		uint64_t l = f + gm_rng_below(rng, base + 90 - f);
		/* Whole-set operations wait for a grace period: keep them rare. */
		switch (gm_rng_below(rng, 100)) {
		case 0: { /* union with ranges inside churn zones */
			CHECK_EQ(gm_rangeset_purge(other), 0);
			CHECK_EQ(gm_rangeset_add(other, f, l), 0);
			CHECK_EQ(gm_rangeset_union(set, other), 0);
			break;
		}
		case 1: /* subtract a churn zone */
			CHECK_EQ(gm_rangeset_purge(other), 0);
			CHECK_EQ(gm_rangeset_add(other, base + 20, base + 89), 0);
			CHECK_EQ(gm_rangeset_subtract(set, other), 0);
			break;
		case 2: { /* intersect with everything but one churn zone */
			CHECK_EQ(gm_rangeset_purge(other), 0);
			CHECK_EQ(gm_rangeset_add(other, 0, UINT64_MAX), 0);
			CHECK_EQ(gm_rangeset_remove(other, f, l), 0);
			CHECK_EQ(gm_rangeset_intersect(set, other), 0);
			break;
		}
		default:
			if (gm_rng_chance(rng, 1, 2))
				CHECK_EQ(gm_rangeset_add(set, f, l), 0);
			else
				CHECK_EQ(gm_rangeset_remove(set, f, l), 0);
		}
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(res[0].bad + res[1].bad, 0);
	CHECK(res[0].reads + res[1].reads > 0);
	CHECK_VALID(gm_rangeset_validate(set, &reason), reason);
	gm_rangeset_destroy(other);
	gm_rangeset_destroy(set);
	gm_rcu_unregister_thread();
}

/*
 * ---- groups ---------------------------------------------------------------
 * Four members of an RCU group; per block k (GBLOCK = 64 indices):
 *   offsets  0..3   A stable, B churned     select: always 0
 *   offsets  4..7   B stable                        always 1
 *   offsets  8..15  B churned                       1 or -1
 *   offsets 16..47  A churned (small and large)     0 or -1,
 *   offsets 32..39    of which B stable             0 or 1
 *   offsets 48..63  nobody                          always -1
 * C holds CSMALL one-index ranges at FILL_C + 2i (always 2; the odd
 * indices between: always -1); D holds DSMALL at FILL_D + 2i (3 or -1),
 * and the writer now and then empties D and fills it again, or makes it
 * leave and join again. With D full the group holds more than
 * GROUP_INDEX_MIN small ranges, so selection goes through the index while
 * it is rewritten, rebuilt, dropped and built again.
 */
#define GBLOCK 64
#define GBLOCKS 64
#define FILL_C (1ULL << 20)
#define FILL_D (1ULL << 21)
#define CSMALL 400
#define DSMALL 1600

enum { GA, GB, GC, GD, GMEMBERS };
static struct gm_rangeset_group *group;
static struct gm_rangeset *gset[GMEMBERS];

/* The answers select may give for x: `a` or `b` (the same when fixed). */
static void answers(uint64_t x, int *a, int *b)
{
	if (x >= FILL_D) {
		bool filler = x - FILL_D < 2 * DSMALL && (x - FILL_D) % 2 == 0;
		*a = -ENOENT, *b = filler ? 3 : -ENOENT;
	} else if (x >= FILL_C) {
		*a = *b = x - FILL_C < 2 * CSMALL && (x - FILL_C) % 2 == 0 ? 2 : -ENOENT;
	} else if (x >= GBLOCK * GBLOCKS) {
		*a = *b = -ENOENT;
	} else {
		unsigned o = (unsigned)(x % GBLOCK);
		*a = o < 4 ? 0 : o < 16 ? 1 : o < 48 ? 0 : -ENOENT;
		*b = o < 8 ? *a : o >= 32 && o < 40 ? 1 : -ENOENT;
	}
}

static uint64_t group_probe(struct gm_rng *rng)
{
	switch (gm_rng_below(rng, 4)) {
	case 0: return FILL_C + gm_rng_below(rng, 2 * CSMALL + 2);
	case 1: return FILL_D + gm_rng_below(rng, 2 * DSMALL + 2);
	default: return gm_rng_below(rng, GBLOCK * GBLOCKS);
	}
}

static void *group_reader(void *arg)
{
	struct reader_result *res = arg;
	struct gm_rng rng;
	gm_rng_init(&rng, (uint64_t)(uintptr_t)arg);
	gm_rcu_register_thread();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		gm_rcu_read_lock();
		for (int i = 0; i < 16; i++) {
			uint64_t x = group_probe(&rng);
			int a, b, got = gm_rangeset_group_select(group, x);
			answers(x, &a, &b);
			res->bad += got != a && got != b;
		}
		gm_rcu_read_unlock();
		res->reads++;
	}
	gm_rcu_unregister_thread();
	return NULL;
}

static void group_setup(struct gm_rangeset **dfull)
{
	CHECK_EQ(gm_rangeset_group_create(&group, GM_RCU, NULL), 0);
	for (int i = 0; i < GMEMBERS; i++) {
		CHECK_EQ(gm_rangeset_create(&gset[i], &(struct gm_rangeset_config){"member", 0}, GM_RCU, NULL), 0);
		CHECK_EQ(gm_rangeset_group_join(group, gset[i]), i);
	}
	CHECK_EQ(gm_rangeset_create(dfull, &(struct gm_rangeset_config){"d-full", 0}, GM_RCU, NULL), 0);
	for (uint64_t k = 0; k < GBLOCKS; k++) {
		uint64_t b = GBLOCK * k;
		CHECK_EQ(gm_rangeset_add(gset[GA], b, b + 3), 0);
		CHECK_EQ(gm_rangeset_add(gset[GB], b + 4, b + 7), 0);
		CHECK_EQ(gm_rangeset_add(gset[GB], b + 32, b + 39), 0);
	}
	for (uint64_t i = 0; i < CSMALL; i++)
		CHECK_EQ(gm_rangeset_add(gset[GC], FILL_C + 2 * i, FILL_C + 2 * i), 0);
	for (uint64_t i = 0; i < DSMALL; i++)
		CHECK_EQ(gm_rangeset_add(*dfull, FILL_D + 2 * i, FILL_D + 2 * i), 0);
	CHECK_EQ(gm_rangeset_union(gset[GD], *dfull), 0);
	CHECK(gm_rangeset_group_indexed(group));
}

/* A single-range change in a churned zone of A or B. */
static void group_churn_one(struct gm_rng *rng)
{
	uint64_t b = GBLOCK * gm_rng_below(rng, GBLOCKS), f, l;
	struct gm_rangeset *s;
	if (gm_rng_chance(rng, 1, 3)) { /* B: offsets 0..3 or 8..15 */
		s = gset[GB];
		bool low = gm_rng_chance(rng, 1, 3);
		f = b + (low ? gm_rng_below(rng, 4) : 8 + gm_rng_below(rng, 8));
		l = f + gm_rng_below(rng, (low ? b + 4 : b + 16) - f);
	} else { /* A: offsets 16..47, up to all 32 of them */
		s = gset[GA];
		f = b + 16 + gm_rng_below(rng, 32);
		l = f + gm_rng_below(rng, b + 48 - f);
	}
	if (gm_rng_chance(rng, 1, 2))
		CHECK_EQ(gm_rangeset_add(s, f, l), 0);
	else
		CHECK_EQ(gm_rangeset_remove(s, f, l), 0);
}

/* A whole-set change of A that keeps its stable ranges: a union or a
 * subtraction inside churn zones, an intersection with all but one, or a
 * swap with a copy of its stable part plus other churn. */
static void group_churn_whole(struct gm_rng *rng, struct gm_rangeset *other)
{
	uint64_t b = GBLOCK * gm_rng_below(rng, GBLOCKS);
	uint64_t f = b + 16 + gm_rng_below(rng, 32), l = f + gm_rng_below(rng, b + 48 - f);
	CHECK_EQ(gm_rangeset_purge(other), 0);
	switch (gm_rng_below(rng, 4)) {
	case 0:
		CHECK_EQ(gm_rangeset_add(other, f, l), 0);
		CHECK_EQ(gm_rangeset_union(gset[GA], other), 0);
		break;
	case 1:
		CHECK_EQ(gm_rangeset_add(other, b + 16, b + 47), 0);
		CHECK_EQ(gm_rangeset_subtract(gset[GA], other), 0);
		break;
	case 2:
		CHECK_EQ(gm_rangeset_add(other, 0, UINT64_MAX), 0);
		CHECK_EQ(gm_rangeset_remove(other, f, l), 0);
		CHECK_EQ(gm_rangeset_intersect(gset[GA], other), 0);
		break;
	default:
		for (uint64_t k = 0; k < GBLOCKS; k++) {
			uint64_t c = GBLOCK * k + 16 + gm_rng_below(rng, 28);
			CHECK_EQ(gm_rangeset_add(other, GBLOCK * k, GBLOCK * k + 3), 0);
			CHECK_EQ(gm_rangeset_add(other, c, c + gm_rng_below(rng, 4)), 0);
		}
		CHECK_EQ(gm_rangeset_swap(gset[GA], other), 0);
	}
}

/* Empties D or makes it leave, or brings it back: the group's small ranges
 * cross GROUP_INDEX_MIN (and, unless churn holds them up, half of it). */
static void group_toggle_d(struct gm_rng *rng, const struct gm_rangeset *dfull,
			   bool *d_in, bool *d_full)
{
	if (*d_in && *d_full) {
		if (gm_rng_chance(rng, 1, 2)) {
			CHECK_EQ(gm_rangeset_purge(gset[GD]), 0);
			*d_full = false;
		} else {
			CHECK_EQ(gm_rangeset_group_leave(gset[GD]), 0);
			*d_in = false;
		}
		return;
	}
	if (!*d_in) {
		CHECK_EQ(gm_rangeset_group_join(group, gset[GD]), GD);
		*d_in = true;
	}
	if (!*d_full) {
		CHECK_EQ(gm_rangeset_union(gset[GD], dfull), 0);
		*d_full = true;
	}
	CHECK(gm_rangeset_group_indexed(group));
}

GM_TEST(group_readers_see_stable_answers_through_churn)
{
	gm_rcu_register_thread();
	struct gm_rangeset *dfull, *other;
	group_setup(&dfull);
	CHECK_EQ(gm_rangeset_create(&other, &(struct gm_rangeset_config){"other", 0}, GM_RCU, NULL), 0);
	atomic_store(&stop, false);
	pthread_t th[2];
	struct reader_result res[2] = {{0, 0}, {0, 0}};
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, group_reader, &res[i]), 0);

	struct gm_rng *rng = gm_test_rng();
	bool d_in = true, d_full = true;
	uint64_t steps = gm_test_iters(6000), unindexed = 0;
	for (uint64_t i = 0; i < steps; i++) {
		/* Whole-set changes, joins and leaves rebuild the index and
		 * wait for a grace period: keep them rare. */
		uint64_t r = gm_rng_below(rng, 200);
		if (r == 0)
			group_toggle_d(rng, dfull, &d_in, &d_full);
		else if (r < 3)
			group_churn_whole(rng, other);
		else
			group_churn_one(rng);
		unindexed += !gm_rangeset_group_indexed(group);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(res[0].bad + res[1].bad, 0);
	CHECK(res[0].reads + res[1].reads > 0);
	CHECK(unindexed < steps); /* most steps ran with the index */
	CHECK_VALID(gm_rangeset_group_validate(group, &reason), reason);
	gm_rangeset_group_destroy(group);
	for (int i = 0; i < GMEMBERS; i++)
		gm_rangeset_destroy(gset[i]);
	gm_rangeset_destroy(dfull);
	gm_rangeset_destroy(other);
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
