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
 */
#include "harness.h"

#include <gmtrack/rangeset.h>
#include <gmtrack/rcu.h>

#include <pthread.h>

#define BLOCKS 64

static struct gm_rangeset set;
static atomic_bool stop;

struct reader_result {
	uint64_t bad, reads;
};

static int find_stable(uint64_t first, uint64_t last, void *ctx)
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
		res->bad += !gm_rangeset_contains(&set, base + gm_rng_below(&rng, 10));
		res->bad += !gm_rangeset_contains_range(&set, base, base + 9);
		res->bad += gm_rangeset_contains(&set, base + 95 + gm_rng_below(&rng, 5));
		res->bad += gm_rangeset_overlaps_range(&set, base + 95, base + 99);
		res->bad += !gm_rangeset_overlaps_range(&set, base + 5, base + 50);
		const struct gm_rangeset *two[2] = {&set, &set};
		res->bad += gm_rangeset_first_containing(two, 2, base + gm_rng_below(&rng, 10)) != 0;
		res->bad += gm_rangeset_first_containing(two, 2, base + 95 + gm_rng_below(&rng, 5)) != -1;
		uint64_t want = base;
		gm_rangeset_report_ranges(&set, base, base + 99, find_stable, &want);
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
	CHECK_EQ(gm_rangeset_init(&set, "stress", GM_RANGESET_RCU, 0, NULL), 0);
	struct gm_rangeset other;
	CHECK_EQ(gm_rangeset_init(&other, "other", GM_RANGESET_RCU, 0, NULL), 0);
	for (uint64_t k = 0; k < BLOCKS; k++)
		CHECK_EQ(gm_rangeset_add_range(&set, 100 * k, 100 * k + 9), 0);
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
			CHECK_EQ(gm_rangeset_purge(&other), 0);
			CHECK_EQ(gm_rangeset_add_range(&other, f, l), 0);
			CHECK_EQ(gm_rangeset_union(&set, &other), 0);
			break;
		}
		case 1: /* subtract a churn zone */
			CHECK_EQ(gm_rangeset_purge(&other), 0);
			CHECK_EQ(gm_rangeset_add_range(&other, base + 20, base + 89), 0);
			CHECK_EQ(gm_rangeset_subtract(&set, &other), 0);
			break;
		case 2: { /* intersect with everything but one churn zone */
			CHECK_EQ(gm_rangeset_purge(&other), 0);
			CHECK_EQ(gm_rangeset_add_range(&other, 0, UINT64_MAX), 0);
			CHECK_EQ(gm_rangeset_remove_range(&other, f, l), 0);
			CHECK_EQ(gm_rangeset_intersect(&set, &other), 0);
			break;
		}
		default:
			if (gm_rng_chance(rng, 1, 2))
				CHECK_EQ(gm_rangeset_add_range(&set, f, l), 0);
			else
				CHECK_EQ(gm_rangeset_remove_range(&set, f, l), 0);
		}
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(res[0].bad + res[1].bad, 0);
	CHECK(res[0].reads + res[1].reads > 0);
	CHECK_VALID(gm_rangeset_validate(&set, &reason), reason);
	gm_rangeset_destroy(&other);
	gm_rangeset_destroy(&set);
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
