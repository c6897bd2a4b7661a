/*
 * tests/rcu_stress_test.c — gmtrack's RCU under load. Readers follow a
 * pointer that a writer keeps replacing; the old object is poisoned, then
 * freed, after a grace period: through gm_rcu_call (the worker thread) or
 * through gm_rcu_synchronize + free on the writer. A reader that ever sees
 * poison, a torn object or (under ASan) freed memory fails the test; under
 * TSan a free that is not ordered after a reader's last access is a
 * reported race. Readers nest sections and re-read the outer object after
 * an inner section ended, a reader registers lazily, and reader threads
 * come and go (registry churn) while grace periods run. make check runs it
 * under TSan, and again with GM_RCU_MODE=fence (the no-membarrier path).
 */
#include "harness.h"
#include "internal.h"

#include <pthread.h>
#include <sched.h>

#define POISON 0xdeaddeaddeaddeadULL

struct obj {
	struct gm_rcu_head head;
	uint64_t a, b, c; /* live: b == ~a, c == a * 3 */
};

static _Atomic(struct obj *) published;
static _Atomic(struct obj *) published2; /* for nested sections */
static atomic_bool stop;
static _Atomic uint64_t reads, bad_reads;
static _Atomic uint64_t progress; /* readers: +1 per 16 sections */

static struct obj *obj_new(uint64_t v)
{
	struct obj *o = malloc(sizeof(*o));
	if (o) {
		o->a = v;
		o->b = ~v;
		o->c = v * 3;
	}
	return o;
}

static void obj_poison_free(struct obj *o)
{
	o->a = o->b = o->c = POISON;
	free(o);
}

static void obj_free_cb(struct gm_rcu_head *h)
{
	obj_poison_free((struct obj *)h);
}

/* Reads o twice, some time apart, as a lookup that walks a node would. */
static bool obj_ok(const struct obj *o, unsigned spin)
{
	uint64_t a = o->a;
	for (volatile unsigned i = 0; i < spin; i++)
		;
	return a != POISON && o->b == ~a && o->c == a * 3 && o->a == a;
}

struct reader_arg {
	bool do_register;
	bool nested;
	uint64_t seed;
};

static void read_once(const struct reader_arg *ra, struct gm_rng *rng)
{
	unsigned spin = (unsigned)gm_rng_below(rng, 64);
	gm_rcu_read_lock();
	struct obj *o = gm_load_acquire(&published);
	bool ok = obj_ok(o, spin);
	if (ra->nested) {
		gm_rcu_read_lock();
		struct obj *p = gm_load_acquire(&published2);
		ok &= obj_ok(p, spin);
		gm_rcu_read_unlock();
		/* the outer section still protects o */
		ok &= obj_ok(o, spin);
	}
	gm_rcu_read_unlock();
	if (!ok)
		atomic_fetch_add(&bad_reads, 1);
}

static void *reader(void *arg)
{
	struct reader_arg *ra = arg;
	struct gm_rng rng;
	gm_rng_init(&rng, ra->seed);
	if (ra->do_register)
		gm_rcu_register_thread();
	uint64_t n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		read_once(ra, &rng);
		if ((++n & 15) == 0)
			atomic_fetch_add_explicit(&progress, 1, memory_order_relaxed);
	}
	atomic_fetch_add(&reads, n);
	if (ra->do_register)
		gm_rcu_unregister_thread();
	return NULL;
}

/* Short-lived readers: registry churn while grace periods scan it. */
static void *churn_one(void *arg)
{
	struct reader_arg *ra = arg;
	struct gm_rng rng;
	gm_rng_init(&rng, ra->seed);
	gm_rcu_register_thread();
	for (int i = 0; i < 50; i++)
		read_once(ra, &rng);
	gm_rcu_unregister_thread();
	return NULL;
}

static void *churner(void *arg)
{
	struct reader_arg ra = *(struct reader_arg *)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		pthread_t th;
		ra.seed++;
		if (pthread_create(&th, NULL, churn_one, &ra) != 0)
			break;
		pthread_join(th, NULL);
	}
	return NULL;
}

enum how { VIA_CALL, VIA_SYNCHRONIZE, VIA_BOTH };

static void retire(struct obj *old, enum how how, uint64_t i)
{
	if (how == VIA_CALL || (how == VIA_BOTH && i % 2)) {
		gm_rcu_call(&old->head, obj_free_cb);
	} else {
		gm_rcu_synchronize();
		obj_poison_free(old);
	}
}

static void run(enum how how, uint64_t iters, int nreaders, bool nested, bool churn)
{
	atomic_store(&published, obj_new(0));
	atomic_store(&published2, obj_new(0));
	atomic_store(&stop, false);
	atomic_store(&reads, 0);
	atomic_store(&bad_reads, 0);
	pthread_t th[4], ch;
	struct reader_arg ra[4];
	for (int i = 0; i < nreaders; i++) {
		/* the last reader never registers: its read_lock does */
		ra[i] = (struct reader_arg){.do_register = i != nreaders - 1,
					    .nested = nested,
					    .seed = gm_test_seed() + (uint64_t)i};
		CHECK_EQ(pthread_create(&th[i], NULL, reader, &ra[i]), 0);
	}
	struct reader_arg cra = {.do_register = true, .nested = nested,
				 .seed = gm_test_seed() + 100};
	if (churn)
		CHECK_EQ(pthread_create(&ch, NULL, churner, &cra), 0);
	for (uint64_t i = 1; i <= iters; i++) {
		struct obj *n = obj_new(i);
		CHECK(n != NULL);
		_Atomic(struct obj *) *slot = nested && (i & 1) ? &published2 : &published;
		struct obj *old = atomic_exchange_explicit(slot, n, memory_order_acq_rel);
		retire(old, how, i);
		/* Readers keep up: every 64 replacements, at least one of them
		 * went through 16 more sections. */
		uint64_t p = atomic_load_explicit(&progress, memory_order_relaxed);
		while (i % 64 == 0 && nreaders &&
		       atomic_load_explicit(&progress, memory_order_relaxed) == p)
			sched_yield();
	}
	atomic_store(&stop, true);
	for (int i = 0; i < nreaders; i++)
		pthread_join(th[i], NULL);
	if (churn)
		pthread_join(ch, NULL);
	gm_rcu_barrier();
	CHECK_EQ(atomic_load(&bad_reads), 0);
	CHECK(atomic_load(&reads) > 0);
	obj_poison_free(atomic_load(&published));
	obj_poison_free(atomic_load(&published2));
}

GM_TEST(readers_never_see_objects_freed_through_gm_rcu_call)
{
	gm_rcu_register_thread();
	run(VIA_CALL, gm_test_iters(100000), 2, false, false);
	gm_rcu_unregister_thread();
}

GM_TEST(readers_never_see_objects_freed_after_synchronize)
{
	run(VIA_SYNCHRONIZE, gm_test_iters(3000), 2, false, false);
}

GM_TEST(nested_sections_protect_the_outer_object)
{
	gm_rcu_register_thread();
	run(VIA_BOTH, gm_test_iters(6000), 2, true, false);
	gm_rcu_unregister_thread();
}

GM_TEST(registry_churn_during_grace_periods)
{
	gm_rcu_register_thread();
	run(VIA_BOTH, gm_test_iters(6000), 1, true, true);
	gm_rcu_unregister_thread();
}

/* Many writers queue callbacks and wait in barriers at once. */
struct wr {
	_Atomic uint64_t *ran;
	uint64_t n;
};

struct counted {
	struct gm_rcu_head head;
	_Atomic uint64_t *ran;
};

static void counted_cb(struct gm_rcu_head *h)
{
	struct counted *c = (struct counted *)h;
	atomic_fetch_add(c->ran, 1);
	free(c);
}

static void *call_writer(void *arg)
{
	struct wr *w = arg;
	for (uint64_t i = 0; i < w->n; i++) {
		struct counted *c = malloc(sizeof(*c));
		if (!c)
			break;
		c->ran = w->ran;
		gm_rcu_call(&c->head, counted_cb);
		if (i % 1000 == 999)
			gm_rcu_barrier();
	}
	gm_rcu_barrier();
	return NULL;
}

GM_TEST(concurrent_callers_and_barriers)
{
	_Atomic uint64_t ran = 0;
	struct wr w = {.ran = &ran, .n = gm_test_iters(20000)};
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, call_writer, &w), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(atomic_load(&ran), 3 * w.n);
}

GM_TEST_MAIN()
