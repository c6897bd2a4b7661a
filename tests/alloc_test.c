/* tests/alloc_test.c — the allocator hooks and the deferred-free batches. */
#include "harness.h"
#include "internal.h"

#include <gmtrack/gmtrack.h>

GM_TEST(default_allocator_honours_alignment)
{
	for (size_t align = 1; align <= 4096; align *= 2) {
		void *p = gm_alloc_mem(NULL, 100, align);
		CHECK(p != NULL);
		CHECK_EQ((uintptr_t)p % align, 0);
		gm_alloc_release(NULL, p, 100);
	}
}

GM_TEST(counting_tracks_bytes_peak_and_calls)
{
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	void *a = gm_alloc_mem(&c.allocator, 100, 8);
	void *b = gm_alloc_mem(&c.allocator, 28, 64);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 128);
	gm_alloc_release(&c.allocator, a, 100);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 28);
	CHECK_EQ(gm_alloc_counting_peak(&c), 128);
	gm_alloc_counting_reset_peak(&c);
	CHECK_EQ(gm_alloc_counting_peak(&c), 28);
	gm_alloc_release(&c.allocator, b, 28);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	CHECK_EQ(atomic_load(&c.allocs), 2);
	CHECK_EQ(atomic_load(&c.frees), 2);
}

GM_TEST(failing_fails_exactly_the_nth_call)
{
	struct gm_alloc_failing f;
	gm_alloc_failing_init(&f, NULL);
	gm_alloc_failing_arm_nth(&f, 3, false);
	void *p[5];
	for (int i = 0; i < 5; i++)
		p[i] = gm_alloc_mem(&f.allocator, 16, 8);
	for (int i = 0; i < 5; i++) {
		CHECK_EQ(p[i] == NULL, i == 2);
		gm_alloc_release(&f.allocator, p[i], 16);
	}
	gm_alloc_failing_arm_nth(&f, 2, true);
	void *ok = gm_alloc_mem(&f.allocator, 16, 8);
	CHECK(ok != NULL);
	gm_alloc_release(&f.allocator, ok, 16);
	CHECK(gm_alloc_mem(&f.allocator, 16, 8) == NULL);
	CHECK(gm_alloc_mem(&f.allocator, 16, 8) == NULL);
	gm_alloc_failing_disarm(&f);
	void *q = gm_alloc_mem(&f.allocator, 16, 8);
	CHECK(q != NULL);
	gm_alloc_release(&f.allocator, q, 16);
}

GM_TEST(failing_random_is_reproducible)
{
	struct gm_alloc_failing f;
	gm_alloc_failing_init(&f, NULL);
	bool first[200];
	for (int round = 0; round < 2; round++) {
		gm_alloc_failing_arm_random(&f, 0.3, 1234);
		int nfail = 0;
		for (int i = 0; i < 200; i++) {
			void *p = gm_alloc_mem(&f.allocator, 8, 8);
			bool failed = p == NULL;
			if (round == 0)
				first[i] = failed;
			else
				CHECK_EQ(first[i], failed);
			nfail += failed;
			gm_alloc_release(&f.allocator, p, 8);
		}
		CHECK(nfail > 20 && nfail < 110);
	}
}

GM_TEST(reclaim_without_rcu_frees_at_once)
{
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	struct gm_reclaim r;
	gm_reclaim_init(&r, &c.allocator, false);
	CHECK_EQ(gm_reclaim_reserve(&r, 1000), 0);
	void *p = gm_alloc_mem(&c.allocator, 40, 8);
	gm_reclaim_retire(&r, p, 40);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	gm_reclaim_destroy(&r);
}

GM_TEST(reclaim_with_rcu_frees_after_barrier)
{
	gm_rcu_register_thread();
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	struct gm_reclaim r;
	gm_reclaim_init(&r, &c.allocator, true);
	size_t n = 3 * GM_RETIRE_BATCH + 7;
	CHECK_EQ(gm_reclaim_reserve(&r, n), 0);
	size_t reserved = gm_alloc_counting_bytes(&c);
	CHECK(reserved > 0);
	for (size_t i = 0; i < n; i++)
		gm_reclaim_retire(&r, gm_alloc_mem(&c.allocator, 24, 8), 24);
	gm_reclaim_destroy(&r);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	gm_rcu_unregister_thread();
}

GM_TEST(reclaim_reserve_fails_cleanly)
{
	gm_rcu_register_thread();
	struct gm_alloc_failing f;
	gm_alloc_failing_init(&f, NULL);
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, &f.allocator);
	struct gm_reclaim r;
	gm_reclaim_init(&r, &c.allocator, true);
	gm_alloc_failing_arm_nth(&f, 1, true);
	CHECK_EQ(gm_reclaim_reserve(&r, 1), -ENOMEM);
	gm_alloc_failing_disarm(&f);
	CHECK_EQ(gm_reclaim_reserve(&r, 1), 0);
	gm_reclaim_destroy(&r);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	gm_rcu_unregister_thread();
}

GM_TEST(version_is_consistent)
{
	CHECK_EQ(gm_version_number(), GM_VERSION_MAJOR * 10000 +
				      GM_VERSION_MINOR * 100 + GM_VERSION_PATCH);
	CHECK(gm_version()[0] >= '0' && gm_version()[0] <= '9');
}

GM_TEST_MAIN()
