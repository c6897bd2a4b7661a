/*
 * tests/reclaim_stress_test.c — readers follow a published pointer under
 * RCU while one writer replaces it and retires the old object through the
 * deferred-free batches. Run under ASan (use-after-free would show) and
 * TSan (a free racing a reader would show).
 */
#include "harness.h"
#include "internal.h"

#include <pthread.h>

struct obj {
	uint64_t a, b; /* invariant: b == ~a */
};

static _Atomic(struct obj *) published;
static atomic_bool stop;
static _Atomic uint64_t reads;

static void *reader(void *arg)
{
	(void)arg;
	gm_rcu_register_thread();
	uint64_t bad = 0, n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		gm_rcu_read_lock();
		struct obj *o = gm_load_acquire(&published);
		if (o->b != ~o->a)
			bad++;
		gm_rcu_read_unlock();
		n++;
	}
	atomic_fetch_add(&reads, n);
	gm_rcu_unregister_thread();
	return (void *)(uintptr_t)bad;
}

GM_TEST(readers_never_see_freed_or_torn_objects)
{
	gm_rcu_register_thread();
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	struct gm_reclaim r;
	gm_reclaim_init(&r, &c.allocator, true);

	struct obj *o = gm_alloc_mem(&c.allocator, sizeof(*o), 8);
	o->a = 0;
	o->b = ~0ULL;
	atomic_store(&published, o);
	atomic_store(&stop, false);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, reader, NULL), 0);

	uint64_t iters = gm_test_iters(200000);
	for (uint64_t i = 1; i <= iters; i++) {
		CHECK_EQ(gm_reclaim_reserve(&r, 1), 0);
		struct obj *n = gm_alloc_mem(&c.allocator, sizeof(*n), 8);
		CHECK(n != NULL);
		n->a = i;
		n->b = ~i;
		struct obj *old = atomic_exchange_explicit(&published, n,
							   memory_order_acq_rel);
		gm_reclaim_retire(&r, old, sizeof(*old));
	}
	atomic_store(&stop, true);
	uint64_t bad = 0;
	for (int i = 0; i < 2; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		bad += (uintptr_t)ret;
	}
	CHECK_EQ(bad, 0);
	CHECK(atomic_load(&reads) > 0);
	gm_reclaim_destroy(&r);
	gm_alloc_release(&c.allocator, atomic_load(&published), sizeof(struct obj));
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
