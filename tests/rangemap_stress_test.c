/*
 * tests/rangemap_stress_test.c — RCU readers load and iterate a
 * gm_rangemap while one writer stores, erases and updates ranges.
 *
 * The lower half [0, K/2) is always fully stored with values in {1, 2, 3}:
 * a reader that sees a gap there, or another value, or a range reaching
 * outside, has seen a state that never existed. The upper half is stored
 * (values 1000..1009) and erased at random. Readers also walk the lower
 * half with a cursor and check the ranges tile it exactly.
 */
#include "harness.h"
#include "internal.h"

#include <gmtrack/rangemap.h>

extern uint64_t gm_rangemap_recycle_min_bytes_; /* src/rangemap.c; 0: pool in small maps too */

#include <pthread.h>

#define K 20000u
#define HALF (K / 2)

static struct gm_rangemap *map;
static atomic_bool stop;

struct reader_result {
	uint64_t loads, walks, bad;
	char why[160];
};

static void bad(struct reader_result *r, const char *why, uint64_t a, uint64_t b)
{
	if (!r->bad++)
		snprintf(r->why, sizeof(r->why), "%s (%llu, %llu)", why, (unsigned long long)a,
			 (unsigned long long)b);
}

static void check_load(struct reader_result *res, uint64_t idx)
{
	uint64_t v = 0, f = 0, l = 0;
	int rc = gm_rangemap_load(map, idx, &v, &f, &l);
	if (f > idx || l < idx)
		bad(res, "bounds do not hold the index", idx, f);
	if (idx < HALF) {
		if (rc != 0)
			bad(res, "gap in the always-stored half", idx, l);
		else if (v < 1 || v > 3)
			bad(res, "value never stored in the lower half", idx, v);
		else if (l >= HALF)
			bad(res, "lower-half range crosses into the upper half", idx, l);
	} else if (rc == 0 && (v < 1000 || v >= 1010)) {
		bad(res, "value never stored in the upper half", idx, v);
	} else if (rc == 0 && f < HALF) {
		bad(res, "upper-half range crosses into the lower half", idx, f);
	}
}

static void check_walk(struct reader_result *res)
{
	struct gm_rangemap_iter c;
	struct gm_range r;
	uint64_t next = 0;
	gm_rangemap_iter_init(&c, map, 0, HALF - 1, 0);
	while (gm_rangemap_iter_next(&c, &r) == 0) {
		if (r.first != next)
			bad(res, "cursor: ranges do not tile the lower half", r.first, next);
		if (r.value < 1 || r.value > 3)
			bad(res, "cursor: value never stored", r.first, r.value);
		next = r.last + 1;
	}
	if (next != HALF)
		bad(res, "cursor: walk ended early", next, HALF);
}

static void *reader(void *arg)
{
	struct reader_result *res = arg;
	struct gm_rng rng;
	gm_rng_init(&rng, (uint64_t)(uintptr_t)arg);
	gm_rcu_register_thread();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		gm_rcu_read_lock();
		for (int i = 0; i < 64; i++) {
			check_load(res, gm_rng_below(&rng, K + 10));
			res->loads++;
		}
		if (gm_rng_below(&rng, 8) == 0) {
			check_walk(res);
			res->walks++;
		}
		uint64_t first;
		if (gm_rangemap_find_gap(map, 1, 1, 0, HALF - 1, &first) == 0)
			bad(res, "find_gap found a gap in the lower half", first, 0);
		gm_rcu_read_unlock();
	}
	gm_rcu_unregister_thread();
	return NULL;
}

static int flip(void *ctx, const struct gm_range *piece, bool present, uint64_t *value)
{
	(void)piece;
	struct gm_rng *rng = ctx;
	if (!present || gm_rng_below(rng, 3) == 0)
		return GM_RANGEMAP_CLEAR;
	*value = 1000 + gm_rng_below(rng, 10);
	return GM_RANGEMAP_SET;
}

static void stress(unsigned flags)
{
	struct gm_rng *rng = gm_test_rng();
	gm_rangemap_recycle_min_bytes_ = 0; /* recycle in this small map too */
	/* One counting allocator per test: rcu.c's deferred-free callback
	 * reads it after the barrier without a TSan release, so reusing the
	 * same stack address in the next test would be reported. */
	static struct gm_alloc_counting cnts[2];
	struct gm_alloc_counting *c = &cnts[flags ? 1 : 0];
	gm_alloc_counting_init(c, NULL);
	CHECK_EQ(gm_rangemap_create(&map, GM_RCU | flags, &c->allocator), 0);
	CHECK_EQ(gm_rangemap_store(map, 0, HALF - 1, 1), 0);
	for (uint64_t i = 0; i < HALF; i += 1 + gm_rng_below(rng, 4))
		CHECK_EQ(gm_rangemap_store(map, i, i, 1 + gm_rng_below(rng, 3)), 0);
	atomic_store(&stop, false);
	struct reader_result res[2] = {0};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, reader, &res[i]), 0);

	uint64_t iters = gm_test_iters(30000);
	for (uint64_t i = 0; i < iters; i++) {
		uint64_t len = gm_rng_chance(rng, 1, 50) ? gm_rng_below(rng, HALF) : gm_rng_below(rng, 12);
		uint64_t lower = gm_rng_below(rng, HALF), upper = HALF + gm_rng_below(rng, HALF);
		int rc;
		switch (gm_rng_below(rng, 5)) {
		case 0: case 1:
			rc = gm_rangemap_store(map, lower, lower + len >= HALF ? HALF - 1 : lower + len,
					       1 + gm_rng_below(rng, 3));
			break;
		case 2:
			rc = gm_rangemap_store(map, upper, upper + len, 1000 + gm_rng_below(rng, 10));
			break;
		case 3:
			rc = gm_rangemap_remove(map, upper, upper + len);
			break;
		default:
			rc = gm_rangemap_update(map, upper, upper + len, flip, rng,
						GM_RANGEMAP_UPDATE_GAPS);
			break;
		}
		CHECK_EQ(rc, 0);
		if (i % 4096 == 0)
			CHECK_VALID(gm_rangemap_validate(map, &reason), reason);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++) {
		CHECK_MSG(res[i].bad == 0, "reader %d: %llu bad reads, first: %s", i,
			  (unsigned long long)res[i].bad, res[i].why);
		CHECK(res[i].loads > 0);
	}
	gm_test_note("readers: %llu loads, %llu walks", (unsigned long long)(res[0].loads + res[1].loads),
		     (unsigned long long)(res[0].walks + res[1].walks));
	CHECK_VALID(gm_rangemap_validate(map, &reason), reason);
	gm_rangemap_destroy(map);
	CHECK_EQ(gm_alloc_counting_bytes(c), 0);
}

GM_TEST(readers_see_old_or_new_values)
{
	gm_rcu_register_thread();
	/* The seed picks the mode: one map per process (a run stays short;
	 * it once also kept TSan off liburcu's barrier completion). */
	stress(gm_test_seed() & 1 ? GM_RANGEMAP_NOCOALESCE : 0);
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
