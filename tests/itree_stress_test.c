/*
 * tests/itree_stress_test.c — the property gm_itree exists for: an RCU
 * reader's overlap query never misses an entry that was present for its
 * whole read-side section, while one writer churns other entries (with
 * splits, merges, redistributions and root height changes).
 *
 * "Stable" intervals are inserted first and never removed; "churn"
 * intervals come and go. Each churn id has a fixed interval, so a reader
 * can also tell a torn or invented entry from a real one. Readers check
 * every result: it overlaps the query, comes in strictly increasing
 * (first, last, item) order, is a real entry; and every stable interval
 * overlapping the query was returned.
 */
#include "harness.h"
#include "internal.h"

#include <gmtrack/itree.h>

#include <pthread.h>
#include <time.h>

#define NSTABLE 150
#define NCHURN 4000
#define SPACE (1ull << 24)
#define NREADERS 2

struct ival {
	uint64_t first, last;
};

static struct ival stable[NSTABLE]; /* sorted by first */
static unsigned nstable = NSTABLE, nchurn = NCHURN;
static uint64_t space = SPACE;
static struct ival churn[NCHURN];
static struct gm_itree *tree;
static atomic_bool stop;
static _Atomic uint64_t queries, misses, bad_entries, bad_order, live_queries;

static void *stable_item(unsigned i) { return (void *)(uintptr_t)(i * 2 + 1); }
static void *churn_item(unsigned i) { return (void *)(uintptr_t)(i * 2); }

static void make_interval(struct gm_rng *r, struct ival *v)
{
	v->first = gm_rng_below(r, space);
	uint64_t len = gm_rng_chance(r, 1, 10) ? gm_rng_below(r, space / 8 + 1)
					       : gm_rng_below(r, space / 4096 + 1);
	v->last = v->first + len;
}

static int ival_cmp(const void *pa, const void *pb)
{
	const struct ival *a = pa, *b = pb;
	return a->first < b->first ? -1 : a->first > b->first;
}

static bool entry_real(const struct gm_itree_entry *e)
{
	uintptr_t it = (uintptr_t)e->item;
	if ((it & 1 ? it / 2 >= nstable : it / 2 >= nchurn))
		return false;
	const struct ival *v = it & 1 ? &stable[it / 2] : &churn[it / 2];
	return v->first == e->first && v->last == e->last;
}

/* A collected item is real and its interval overlaps [a, b]. */
static bool item_overlaps(void *item, uint64_t a, uint64_t b)
{
	uintptr_t it = (uintptr_t)item;
	if ((it & 1 ? it / 2 >= nstable : it / 2 >= nchurn))
		return false;
	const struct ival *v = it & 1 ? &stable[it / 2] : &churn[it / 2];
	return v->first <= b && v->last >= a;
}

static bool entry_less(const struct gm_itree_entry *a,
		       const struct gm_itree_entry *b)
{
	if (a->first != b->first)
		return a->first < b->first;
	if (a->last != b->last)
		return a->last < b->last;
	return (uintptr_t)a->item < (uintptr_t)b->item;
}

static void one_query(struct gm_rng *r)
{
	uint64_t a = gm_rng_below(r, space + space / 8);
	uint64_t b = gm_rng_chance(r, 1, 4) ? a : a + gm_rng_below(r, space / 64 + 1);
	bool seen[NSTABLE] = {false};
	struct gm_itree_iter it;
	struct gm_itree_entry e, prev;
	bool have_prev = false;
	uint64_t bad = 0, order = 0;

	gm_rcu_read_lock();
	if (gm_rng_chance(r, 1, 3)) { /* the one-call form */
		void *items[NSTABLE + NCHURN];
		size_t got = gm_itree_fill(tree, a, b, items, NSTABLE + NCHURN);
		for (size_t i = 0; i < got && i < NSTABLE + NCHURN; i++) {
			if (!item_overlaps(items[i], a, b))
				bad++;
			else if ((uintptr_t)items[i] & 1)
				seen[(uintptr_t)items[i] / 2] = true;
		}
		gm_itree_iter_init(&it, tree, 1, 0, 0); /* -EINVAL: empty cursor */
	} else {
		gm_itree_iter_init(&it, tree, a, b, 0);
	}
	while ((gm_itree_iter_next(&it, &e) == 0)) {
		/* hot mode: dawdle between entries so writes land mid-leaf */
		for (volatile unsigned spin = 0; space < 4096 && spin < 300; spin++)
			;
		if (e.first > b || e.last < a || !entry_real(&e))
			bad++;
		else if ((uintptr_t)e.item & 1)
			seen[(uintptr_t)e.item / 2] = true;
		if (have_prev && !entry_less(&prev, &e))
			order++;
		prev = e;
		have_prev = true;
	}
	gm_rcu_read_unlock();

	uint64_t missed = 0;
	for (unsigned i = 0; i < nstable && stable[i].first <= b; i++)
		if (stable[i].last >= a && !seen[i])
			missed++;
	if (missed)
		atomic_fetch_add(&misses, missed);
	if (bad)
		atomic_fetch_add(&bad_entries, bad);
	if (order)
		atomic_fetch_add(&bad_order, order);
}

static void *reader(void *arg)
{
	struct gm_rng r;
	gm_rng_init(&r, (uint64_t)(uintptr_t)arg);
	gm_rcu_register_thread();
	uint64_t n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		one_query(&r);
		n++;
		atomic_fetch_add_explicit(&live_queries, 1, memory_order_relaxed);
	}
	atomic_fetch_add(&queries, n);
	gm_rcu_unregister_thread();
	return NULL;
}

static void stress(bool hot)
{
	struct gm_rng *r = gm_test_rng();
	gm_rcu_register_thread();
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	CHECK_EQ(gm_itree_create(&tree, GM_RCU, &c.allocator), 0);
	atomic_store(&queries, 0);
	atomic_store(&misses, 0);
	atomic_store(&bad_entries, 0);
	atomic_store(&bad_order, 0);
	atomic_store(&live_queries, 0);
	nstable = hot ? 6 : NSTABLE;
	nchurn = hot ? 30 : NCHURN;
	space = hot ? 1024 : SPACE;
	for (unsigned i = 0; i < nstable; i++)
		make_interval(r, &stable[i]);
	qsort(stable, nstable, sizeof(stable[0]), ival_cmp);
	for (unsigned i = 0; i < nchurn; i++) {
		make_interval(r, &churn[i]);
		/* some churn intervals share a stable one's bounds exactly */
		if (gm_rng_chance(r, 1, 8))
			churn[i] = stable[gm_rng_below(r, nstable)];
	}
	for (unsigned i = 0; i < nstable; i++)
		CHECK_EQ(gm_itree_insert(tree, stable[i].first, stable[i].last,
					 stable_item(i)), 0);
	atomic_store(&stop, false);
	pthread_t th[NREADERS];
	for (uintptr_t i = 0; i < NREADERS; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, reader,
					(void *)(gm_test_seed() + i + 1)), 0);

	static bool present[NCHURN];
	memset(present, 0, sizeof(present));
	size_t npresent = 0, peak = 0, low = SIZE_MAX;
	unsigned hmin = 99, hmax = 0;
	/* churn for `ops` writes, and on until the readers ran `min_queries`
	 * queries (slow under TSan), but never more than ~4 s */
	uint64_t ops = gm_test_iters(300000);
	uint64_t min_queries = gm_test_iters(hot ? 400000 : 100000);
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint64_t s = 0;; s++) {
		if (s >= ops && s % 1024 == 0) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (atomic_load_explicit(&live_queries, memory_order_relaxed) >= min_queries ||
			    now.tv_sec - t0.tv_sec >= 4)
				break;
		}
		/* the target size swings so the tree grows and shrinks a level */
		uint64_t phase = (s / 20000) % 2;
		bool grow = phase == 0 ? gm_rng_chance(r, 3, 4) : gm_rng_chance(r, 1, 20);
		unsigned i = (unsigned)gm_rng_below(r, nchurn);
		if (present[i] && !grow) {
			CHECK_EQ(gm_itree_remove(tree, churn[i].first, churn[i].last,
						 churn_item(i)), 0);
			present[i] = false;
			npresent--;
		} else if (!present[i] && grow) {
			CHECK_EQ(gm_itree_insert(tree, churn[i].first, churn[i].last,
						 churn_item(i)), 0);
			present[i] = true;
			npresent++;
		}
		peak = npresent > peak ? npresent : peak;
		if (s % 256 == 0) {
			struct gm_itree_stats st;
			gm_itree_stats(tree, &st);
			hmin = st.height < hmin ? st.height : hmin;
			hmax = st.height > hmax ? st.height : hmax;
		}
		if (s > 20000)
			low = npresent < low ? npresent : low;
	}
	atomic_store(&stop, true);
	for (int i = 0; i < NREADERS; i++)
		pthread_join(th[i], NULL);
	gm_test_note("%" PRIu64 " queries, churn entries between %zu and %zu, "
		     "height %u..%u", atomic_load(&queries), low, peak, hmin, hmax);
	if (!hot)
		CHECK(hmax > hmin); /* the root split and collapsed under readers */
	CHECK_EQ(atomic_load(&misses), 0);
	CHECK_EQ(atomic_load(&bad_entries), 0);
	CHECK_EQ(atomic_load(&bad_order), 0);
	CHECK(atomic_load(&queries) > 0);
	CHECK_VALID(gm_itree_validate(tree, &reason), reason);
	CHECK_EQ(gm_itree_count(tree), nstable + npresent);
	gm_itree_destroy(tree);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	gm_rcu_unregister_thread();
}

GM_TEST(readers_never_miss_stable_intervals)
{
	stress(false);
}

/* A few dozen intervals in two or three leaves: removes and inserts hit
 * the same leaves constantly, so freed slots are rewritten while readers
 * read them (without the leaf's seq check, readers would take torn,
 * invented or out-of-order entries). */
GM_TEST(hot_leaves_reuse_freed_slots_safely)
{
	stress(true);
}

GM_TEST_MAIN()
