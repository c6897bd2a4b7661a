/*
 * tests/rcu_test.c — gmtrack's RCU, one behaviour at a time: registration
 * nests, sections nest, read_ongoing, a grace period waits for a section
 * that began before it (and not for later ones), gm_rcu_call runs in order
 * after a grace period, gm_rcu_barrier waits for the callbacks queued
 * before it, and the documented answers to misuse (unregistered threads,
 * unbalanced unlocks, synchronize or barrier inside a section or a
 * callback, a thread that exits inside a section).
 */
#include "harness.h"
#include "internal.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static bool registered(void)
{
	return gm_rcu_reader_.mode != GM_RCU_MODE_UNREGISTERED_;
}

GM_TEST(register_twice_nests)
{
	CHECK(!registered());
	gm_rcu_register_thread();
	gm_rcu_register_thread();
	CHECK(registered());
	gm_rcu_unregister_thread();
	CHECK(registered()); /* one registration left */
	gm_rcu_unregister_thread();
	CHECK(!registered());
	gm_rcu_unregister_thread(); /* more unregisters than registers */
	CHECK(!registered());
	gm_rcu_register_thread();
	CHECK(registered());
	gm_rcu_unregister_thread();
	CHECK(!registered());
}

GM_TEST(sections_nest_and_read_ongoing_follows)
{
	gm_rcu_register_thread();
	CHECK(!gm_rcu_read_ongoing());
	CHECK_EQ(gm_rcu_reader_.ctr, 0);
	gm_rcu_read_lock();
	CHECK(gm_rcu_read_ongoing());
	uint64_t ctr = gm_rcu_reader_.ctr;
	CHECK(ctr != 0);
	gm_rcu_synchronize(); /* inside: leaves and re-enters the section */
	gm_rcu_read_lock();
	gm_rcu_read_lock();
	CHECK_EQ(gm_rcu_reader_.nest, 3);
	gm_rcu_read_unlock();
	gm_rcu_read_unlock();
	CHECK(gm_rcu_read_ongoing());
	CHECK(gm_rcu_reader_.ctr > ctr); /* re-entered after that grace period */
	gm_rcu_read_unlock();
	CHECK(!gm_rcu_read_ongoing());
	CHECK_EQ(gm_rcu_reader_.ctr, 0);
	gm_rcu_unregister_thread();
}

GM_TEST(unbalanced_unlock_does_nothing)
{
	gm_rcu_register_thread();
	gm_rcu_read_unlock();
	CHECK(!gm_rcu_read_ongoing());
	CHECK_EQ(gm_rcu_reader_.nest, 0);
	gm_rcu_read_lock(); /* and the next section is a normal one */
	CHECK(gm_rcu_read_ongoing());
	CHECK(gm_rcu_reader_.ctr != 0);
	gm_rcu_read_unlock();
	CHECK(!gm_rcu_read_ongoing());
	CHECK_EQ(gm_rcu_reader_.ctr, 0);
	gm_rcu_unregister_thread();
}

GM_TEST(unregister_inside_a_section_keeps_the_thread_registered)
{
	gm_rcu_register_thread();
	gm_rcu_read_lock();
	gm_rcu_unregister_thread();
	CHECK(registered()); /* the section stays protected */
	gm_rcu_read_unlock();
	gm_rcu_unregister_thread(); /* outside: now it leaves */
	CHECK(!registered());
}

/* ---- a reader thread held in a section --------------------------------- */

struct held {
	bool do_register; /* else the first read_lock registers lazily */
	int depth;        /* nested sections */
	int hold_ms;
	_Atomic int entered, left;
	_Atomic int registered_in_section;
};

static void *hold_section(void *arg)
{
	struct held *h = arg;
	if (h->do_register)
		gm_rcu_register_thread();
	for (int i = 0; i < h->depth; i++)
		gm_rcu_read_lock();
	atomic_store(&h->registered_in_section, registered());
	atomic_store(&h->entered, 1);
	sleep_ms(h->hold_ms);
	atomic_store(&h->left, 1);
	for (int i = 0; i < h->depth; i++)
		gm_rcu_read_unlock();
	if (h->do_register)
		gm_rcu_unregister_thread();
	return NULL;
}

/* A grace period that starts while another thread is in a section ends
 * only after that section. */
static void check_synchronize_waits(bool do_register, int depth)
{
	struct held h = {.do_register = do_register, .depth = depth, .hold_ms = 60};
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, hold_section, &h), 0);
	while (!atomic_load(&h.entered))
		sleep_ms(1);
	gm_rcu_synchronize();
	int left = atomic_load(&h.left);
	pthread_join(th, NULL);
	CHECK(atomic_load(&h.registered_in_section));
	CHECK_MSG(left, "synchronize returned while a reader (register %d, depth %d) "
		  "was still in its section", do_register, depth);
}

GM_TEST(synchronize_waits_for_a_registered_reader)
{
	check_synchronize_waits(true, 1);
}

GM_TEST(synchronize_waits_for_a_nested_reader)
{
	check_synchronize_waits(true, 3);
}

GM_TEST(unregistered_reader_is_registered_by_read_lock_and_protected)
{
	check_synchronize_waits(false, 1);
}

GM_TEST(synchronize_returns_with_no_readers)
{
	gm_rcu_synchronize(); /* unregistered caller */
	gm_rcu_register_thread();
	for (int i = 0; i < 100; i++)
		gm_rcu_synchronize();
	gm_rcu_unregister_thread();
}

struct flip {
	_Atomic int entered, in_second, left;
};

/* Section A, then at once section B, held long. */
static void *flip_sections(void *arg)
{
	struct flip *f = arg;
	gm_rcu_register_thread();
	gm_rcu_read_lock();
	atomic_store(&f->entered, 1);
	sleep_ms(50);
	gm_rcu_read_unlock();
	gm_rcu_read_lock();
	atomic_store(&f->in_second, 1);
	sleep_ms(2000);
	atomic_store(&f->left, 1);
	gm_rcu_read_unlock();
	gm_rcu_unregister_thread();
	return NULL;
}

/* A grace period waits for the section it saw, not for one that began
 * after it (a reader going from section to section does not starve it). */
GM_TEST(synchronize_does_not_wait_for_a_later_section)
{
	struct flip f = {0};
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, flip_sections, &f), 0);
	while (!atomic_load(&f.entered))
		sleep_ms(1);
	gm_rcu_synchronize();
	CHECK_MSG(!atomic_load(&f.left), "synchronize waited for a later section");
	pthread_join(th, NULL);
}

GM_TEST(synchronize_inside_a_section_does_not_wait_for_itself)
{
	gm_rcu_register_thread();
	gm_rcu_read_lock();
	gm_rcu_read_lock();
	gm_rcu_synchronize();
	CHECK(gm_rcu_read_ongoing()); /* re-entered, at the same depth */
	CHECK_EQ(gm_rcu_reader_.nest, 2);
	CHECK(gm_rcu_reader_.ctr != 0);
	gm_rcu_read_unlock();
	gm_rcu_read_unlock();
	CHECK_EQ(gm_rcu_reader_.ctr, 0);
	gm_rcu_unregister_thread();
}

static void *exit_in_section(void *arg)
{
	(void)arg;
	gm_rcu_register_thread();
	gm_rcu_read_lock();
	return NULL; /* a bug of the caller's: exits inside its section */
}

GM_TEST(thread_exiting_inside_a_section_does_not_block_grace_periods)
{
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, exit_in_section, NULL), 0);
	pthread_join(th, NULL);
	gm_rcu_synchronize(); /* would wait forever (or read freed TLS) */
}

/* ---- deferred calls ---------------------------------------------------- */

struct cb {
	struct gm_rcu_head head;
	int index;
	int *log;
	_Atomic int *nlog;
};

static void log_cb(struct gm_rcu_head *head)
{
	struct cb *c = (struct cb *)head;
	c->log[atomic_fetch_add(c->nlog, 1)] = c->index;
}

GM_TEST(calls_run_in_order_and_barrier_waits_for_them)
{
	enum { N = 2000 };
	static struct cb cbs[N];
	static int log[N];
	_Atomic int nlog = 0;
	for (int i = 0; i < N; i++) {
		cbs[i] = (struct cb){.index = i, .log = log, .nlog = &nlog};
		gm_rcu_call(&cbs[i].head, log_cb);
		if (i % 500 == 0)
			sleep_ms(2); /* spread over several rounds */
	}
	gm_rcu_barrier();
	CHECK_EQ(atomic_load(&nlog), N);
	for (int i = 0; i < N; i++)
		CHECK_EQ(log[i], i);
	gm_rcu_barrier(); /* nothing queued: returns */
}

GM_TEST(call_waits_for_a_grace_period)
{
	struct held h = {.do_register = true, .depth = 1, .hold_ms = 80};
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, hold_section, &h), 0);
	while (!atomic_load(&h.entered))
		sleep_ms(1);
	int log[1];
	_Atomic int nlog = 0;
	struct cb c = {.index = 7, .log = log, .nlog = &nlog};
	gm_rcu_call(&c.head, log_cb);
	sleep_ms(20);
	CHECK_EQ(atomic_load(&nlog), 0); /* the reader is still in its section */
	gm_rcu_barrier();
	CHECK(atomic_load(&h.left));
	CHECK_EQ(atomic_load(&nlog), 1);
	CHECK_EQ(log[0], 7);
	pthread_join(th, NULL);
}

GM_TEST(call_with_null_does_nothing)
{
	struct gm_rcu_head h;
	gm_rcu_call(NULL, log_cb);
	gm_rcu_call(&h, NULL);
	gm_rcu_barrier();
}

struct chain {
	struct gm_rcu_head head;
	_Atomic int stage;
	_Atomic int barrier_returned;
};

static void chain_second(struct gm_rcu_head *head)
{
	struct chain *c = (struct chain *)head;
	atomic_store(&c->stage, 2);
}

static void chain_first(struct gm_rcu_head *head)
{
	struct chain *c = (struct chain *)head;
	gm_rcu_barrier(); /* from a callback: returns at once */
	atomic_store(&c->barrier_returned, 1);
	gm_rcu_read_lock(); /* a callback may read */
	gm_rcu_read_unlock();
	atomic_store(&c->stage, 1);
	gm_rcu_call(&c->head, chain_second);
}

GM_TEST(callback_may_queue_a_call_and_barrier_in_it_returns)
{
	struct chain c = {.stage = 0};
	gm_rcu_call(&c.head, chain_first);
	gm_rcu_barrier();
	CHECK(atomic_load(&c.stage) >= 1);
	CHECK(atomic_load(&c.barrier_returned));
	gm_rcu_barrier(); /* the second stage was queued before this one */
	CHECK_EQ(atomic_load(&c.stage), 2);
}

GM_TEST(barrier_inside_a_section_returns)
{
	gm_rcu_register_thread();
	int log[1];
	_Atomic int nlog = 0;
	struct cb c = {.index = 1, .log = log, .nlog = &nlog};
	gm_rcu_read_lock();
	gm_rcu_call(&c.head, log_cb);
	gm_rcu_barrier(); /* would wait for its own section otherwise */
	CHECK(gm_rcu_read_ongoing());
	gm_rcu_read_unlock();
	CHECK_EQ(atomic_load(&nlog), 1);
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
