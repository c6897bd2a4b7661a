/*
 * tests/itree_test.c — gm_itree against a model (an array scanned
 * linearly): random inserts/removes/queries with validate() after each
 * step, in both modes; edge cases; out-of-memory with the failing allocator.
 */
#include "harness.h"
#include "internal.h"

#include <gmtrack/itree.h>

/* ---- the model: an unsorted array of triples --------------------------- */

struct model {
	struct gm_itree_entry *e;
	size_t n, cap;
};

static int entry_cmp(const void *pa, const void *pb)
{
	const struct gm_itree_entry *a = pa, *b = pb;
	if (a->first != b->first)
		return a->first < b->first ? -1 : 1;
	if (a->last != b->last)
		return a->last < b->last ? -1 : 1;
	if (a->item != b->item)
		return (uintptr_t)a->item < (uintptr_t)b->item ? -1 : 1;
	return 0;
}

static ssize_t model_find(const struct model *m, uint64_t f, uint64_t l, void *item)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->e[i].first == f && m->e[i].last == l && m->e[i].item == item)
			return (ssize_t)i;
	return -1;
}

static int model_insert(struct model *m, uint64_t f, uint64_t l, void *item)
{
	if (f > l)
		return -EINVAL;
	if (model_find(m, f, l, item) >= 0)
		return -EEXIST;
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->e = realloc(m->e, m->cap * sizeof(*m->e));
	}
	m->e[m->n++] = (struct gm_itree_entry){f, l, item};
	return 0;
}

static int model_remove(struct model *m, uint64_t f, uint64_t l, void *item)
{
	if (f > l)
		return -EINVAL;
	ssize_t i = model_find(m, f, l, item);
	if (i < 0)
		return -ENOENT;
	m->e[i] = m->e[--m->n];
	return 0;
}

/* Overlaps of [a, b] in the model, sorted like the tree returns them. */
static size_t model_query(const struct model *m, uint64_t a, uint64_t b,
			  struct gm_itree_entry *out)
{
	size_t k = 0;
	for (size_t i = 0; i < m->n; i++)
		if (m->e[i].first <= b && m->e[i].last >= a)
			out[k++] = m->e[i];
	qsort(out, k, sizeof(*out), entry_cmp);
	return k;
}

static size_t tree_query(const struct gm_itree *t, uint64_t a, uint64_t b,
			 struct gm_itree_entry *out, size_t max)
{
	struct gm_itree_iter it;
	size_t k = 0;
	CHECK_EQ(gm_itree_iter_init(&it, t, a, b, 0), 0);
	while (k <= max && (gm_itree_iter_next(&it, &out[k]) == 0))
		k++;
	return k;
}

static void check_query(const struct gm_itree *t, const struct model *m,
			uint64_t a, uint64_t b)
{
	struct gm_itree_entry *want = malloc((m->n + 1) * sizeof(*want));
	struct gm_itree_entry *got = malloc((m->n + 10) * sizeof(*got));
	size_t nw = model_query(m, a, b, want);
	size_t ng = tree_query(t, a, b, got, m->n + 1);
	CHECK_MSG(nw == ng, "query [%" PRIu64 ", %" PRIu64 "]: %zu hits, want %zu",
		  a, b, ng, nw);
	for (size_t i = 0; i < nw; i++)
		CHECK_MSG(entry_cmp(&want[i], &got[i]) == 0,
			  "query [%" PRIu64 ", %" PRIu64 "]: hit %zu differs", a, b, i);
	/* the same through iter_fill, in batches of 1..8 */
	struct gm_itree_iter it;
	size_t batch = 1 + (size_t)gm_rng_below(gm_test_rng(), 8), k = 0, n;
	CHECK_EQ(gm_itree_iter_init(&it, t, a, b, 0), 0);
	while ((n = gm_itree_iter_fill(&it, &got[k], batch)) > 0) {
		CHECK(n <= batch);
		k += n;
		CHECK(k <= nw);
		if (n < batch)
			break;
	}
	CHECK_EQ(gm_itree_iter_fill(&it, got, batch), 0);
	CHECK_EQ(k, nw);
	for (size_t i = 0; i < nw; i++)
		CHECK_EQ(entry_cmp(&want[i], &got[i]), 0);
	/* backwards: the same hits, last first, one by one and in batches */
	CHECK_EQ(gm_itree_iter_init(&it, t, a, b, GM_ITER_REVERSE), 0);
	for (k = 0; k < nw + 1 && gm_itree_iter_next(&it, &got[k]) == 0;)
		k++;
	CHECK_EQ(k, nw);
	for (size_t i = 0; i < nw; i++)
		CHECK_EQ(entry_cmp(&want[nw - 1 - i], &got[i]), 0);
	CHECK_EQ(gm_itree_iter_init(&it, t, a, b, GM_ITER_REVERSE), 0);
	for (k = 0; (n = (size_t)gm_itree_iter_fill(&it, &got[k], batch)) > 0;)
		k += n;
	CHECK_EQ(k, nw);
	for (size_t i = 0; i < nw; i++)
		CHECK_EQ(entry_cmp(&want[nw - 1 - i], &got[i]), 0);
	/* the same through collect, into a buffer that may be too small */
	void **items = malloc((nw + 2) * sizeof(*items));
	size_t cap = (size_t)gm_rng_below(gm_test_rng(), nw + 2);
	for (size_t i = 0; i < nw + 2; i++)
		items[i] = (void *)(uintptr_t)0xdead;
	CHECK_EQ(gm_itree_fill(t, a, b, items, cap), nw);
	for (size_t i = 0; i < nw && i < cap; i++)
		CHECK(items[i] == want[i].item);
	for (size_t i = cap < nw ? cap : nw; i < nw + 2; i++)
		CHECK(items[i] == (void *)(uintptr_t)0xdead); /* nothing past max */
	free(items);
	free(want);
	free(got);
}

/* The whole content must equal the model (query over the whole space). */
static void check_same(const struct gm_itree *t, const struct model *m)
{
	CHECK_EQ(gm_itree_count(t), m->n);
	check_query(t, m, 0, UINT64_MAX);
}

/* ---- workload generators ----------------------------------------------- */

/* Random interval in a space of `span` (small spans make duplicates,
 * nesting and shared `first`s common). */
static void random_interval(struct gm_rng *r, uint64_t span, uint64_t *f,
			    uint64_t *l)
{
	switch (gm_rng_below(r, 8)) {
	case 0: /* near the top of the space */
		*l = UINT64_MAX - gm_rng_below(r, span);
		*f = *l - gm_rng_below(r, span);
		return;
	case 1: /* a point */
		*f = *l = gm_rng_below(r, span);
		return;
	case 2: /* long */
		*f = gm_rng_below(r, span);
		*l = *f + gm_rng_below(r, span * 4);
		return;
	default:
		*f = gm_rng_below(r, span);
		*l = *f + gm_rng_below(r, span / 16 + 1);
	}
}

static void *random_item(struct gm_rng *r)
{
	return (void *)(uintptr_t)gm_rng_below(r, 4);
}

static void differential(unsigned flags, uint64_t span, uint64_t steps,
			 size_t target)
{
	struct gm_rng *r = gm_test_rng();
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	struct gm_itree *t;
	CHECK_EQ(gm_itree_create(&t, flags, &c.allocator), 0);
	struct model m = {0};
	for (uint64_t s = 0; s < steps; s++) {
		uint64_t f, l;
		unsigned op = (unsigned)gm_rng_below(r, 10);
		bool grow = m.n < target;
		if (op < (grow ? 5u : 3u)) {
			random_interval(r, span, &f, &l);
			void *item = random_item(r);
			CHECK_EQ(gm_itree_insert(t, f, l, item), model_insert(&m, f, l, item));
		} else if (op < 8 && m.n) {
			/* remove an existing triple, or (1 in 8) a near miss */
			struct gm_itree_entry e = m.e[gm_rng_below(r, m.n)];
			if (gm_rng_chance(r, 1, 8))
				e.item = (void *)((uintptr_t)e.item + 1);
			CHECK_EQ(gm_itree_remove(t, e.first, e.last, e.item),
				 model_remove(&m, e.first, e.last, e.item));
		} else if (op == 8 && m.n) {
			/* duplicate triple must be refused */
			struct gm_itree_entry e = m.e[gm_rng_below(r, m.n)];
			CHECK_EQ(gm_itree_insert(t, e.first, e.last, e.item), -EEXIST);
		} else {
			random_interval(r, span, &f, &l);
			check_query(t, &m, f, l);
			uint64_t p = gm_rng_below(r, span);
			struct gm_itree_iter it;
			struct gm_itree_entry want[512], got;
			gm_itree_iter_init(&it, t, p, p, 0);
			size_t nw = model_query(&m, p, p, want), k = 0;
			while ((gm_itree_iter_next(&it, &got) == 0)) {
				CHECK(k < nw);
				CHECK_EQ(entry_cmp(&got, &want[k]), 0);
				k++;
			}
			CHECK_EQ(k, nw);
		}
		CHECK_VALID(gm_itree_validate(t, &reason), reason);
		CHECK_EQ(gm_itree_count(t), m.n);
	}
	check_same(t, &m);
	/* empty it in random order; validate all the way down */
	while (m.n) {
		struct gm_itree_entry e = m.e[gm_rng_below(r, m.n)];
		CHECK_EQ(gm_itree_remove(t, e.first, e.last, e.item), 0);
		CHECK_EQ(model_remove(&m, e.first, e.last, e.item), 0);
		CHECK_VALID(gm_itree_validate(t, &reason), reason);
	}
	struct gm_itree_stats st;
	CHECK_EQ(gm_itree_stats(t, &st), 0);
	CHECK_EQ(st.entries, 0);
	CHECK_EQ(st.height, 0);
	gm_itree_destroy(t);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	free(m.e);
}

GM_TEST(differential_small_space_plain)
{
	differential(0, 64, gm_test_iters(20000), 300);
}

GM_TEST(differential_wide_space_plain)
{
	differential(0, 1ull << 40, gm_test_iters(20000), 2000);
}

GM_TEST(differential_small_space_rcu)
{
	gm_rcu_register_thread();
	differential(GM_RCU, 256, gm_test_iters(20000), 600);
	gm_rcu_unregister_thread();
}

GM_TEST(differential_wide_space_rcu)
{
	gm_rcu_register_thread();
	differential(GM_RCU, 1ull << 50, gm_test_iters(10000), 3000);
	gm_rcu_unregister_thread();
}

/* The same differential runs on the portable search paths, so they are
 * checked on an AVX2 machine too (gm_cpu_avx2_ picks the paths). */
GM_TEST(portable_paths_without_avx2)
{
	gm_cpu_avx2_ = false;
	differential(0, 1ull << 40, gm_test_iters(5000), 2000);
	gm_rcu_register_thread();
	differential(GM_RCU, 256, gm_test_iters(5000), 600);
	gm_rcu_unregister_thread();
	gm_cpu_avx2_ = gm_test_cpu_avx2();
}

/* Ascending and descending runs hit the edge-split rule; nested intervals
 * (all sharing `first` or all sharing `last`) stress the max summaries. */
static void patterned(unsigned flags)
{
	struct gm_itree *t;
	CHECK_EQ(gm_itree_create(&t, flags, NULL), 0);
	struct model m = {0};
	const uint64_t n = 3000;
	for (uint64_t i = 0; i < n; i++) {
		CHECK_EQ(gm_itree_insert(t, i * 10, i * 10 + 5, NULL), 0);
		model_insert(&m, i * 10, i * 10 + 5, NULL);
		uint64_t d = UINT64_MAX - i * 10;
		CHECK_EQ(gm_itree_insert(t, d - 3, d, (void *)1), 0);
		model_insert(&m, d - 3, d, (void *)1);
		CHECK_EQ(gm_itree_insert(t, 1000000, 1000000 + i, (void *)2), 0);
		model_insert(&m, 1000000, 1000000 + i, (void *)2);
		CHECK_EQ(gm_itree_insert(t, 2000000 - i, 2000000, (void *)3), 0);
		model_insert(&m, 2000000 - i, 2000000, (void *)3);
	}
	CHECK_VALID(gm_itree_validate(t, &reason), reason);
	struct gm_itree_stats st;
	CHECK_EQ(gm_itree_stats(t, &st), 0);
	CHECK_EQ(st.entries, 4 * n);
	/* middle runs split in half: still within the 48-byte budget */
	CHECK_MSG(st.node_bytes / st.entries <= 64, "%zu bytes/entry",
		  st.node_bytes / st.entries);
	check_same(t, &m);
	check_query(t, &m, 1000000 + 17, 1000000 + 17);
	check_query(t, &m, 1999990, 1999990);
	check_query(t, &m, 55, 12345);
	check_query(t, &m, UINT64_MAX, UINT64_MAX);
	check_query(t, &m, 0, 0);
	gm_itree_destroy(t);
	free(m.e);
}

/* ascending inserts (memslots in address order) fill leaves to ~80% */
GM_TEST(ascending_inserts_stay_compact)
{
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	struct gm_itree *t;
	CHECK_EQ(gm_itree_create(&t, 0, &c.allocator), 0);
	for (uint64_t i = 0; i < 10000; i++)
		CHECK_EQ(gm_itree_insert(t, i << 21, (i << 21) + 4095, NULL), 0);
	struct gm_itree_stats st;
	CHECK_EQ(gm_itree_stats(t, &st), 0);
	CHECK_EQ(st.total_bytes, gm_alloc_counting_bytes(&c));
	/* ~80% full 384-byte leaves (32 B/entry) + inner nodes (~5) + the
	 * chunks' free slots (~1/16 of a kind's nodes at most) */
	CHECK_MSG(st.node_bytes / st.entries <= 37, "%zu bytes/entry",
		  st.node_bytes / st.entries);
	CHECK_MSG(st.total_bytes / st.entries <= 40, "%zu bytes/entry",
		  st.total_bytes / st.entries);
	CHECK_VALID(gm_itree_validate(t, &reason), reason);
	gm_itree_destroy(t);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
}

GM_TEST(patterned_plain)
{
	patterned(0);
}

GM_TEST(patterned_rcu)
{
	gm_rcu_register_thread();
	patterned(GM_RCU);
	gm_rcu_unregister_thread();
}

GM_TEST(edge_cases)
{
	struct gm_itree *t;
	struct gm_itree_iter it;
	struct gm_itree_entry e;
	CHECK_EQ(gm_itree_create(NULL, 0, NULL), -EINVAL);
	CHECK_EQ(gm_itree_create(&t, 0x80, NULL), -EINVAL);
	CHECK_EQ(gm_itree_create(&t, 0, NULL), 0);
	/* empty */
	CHECK_EQ(gm_itree_count(t), 0);
	CHECK_EQ(gm_itree_iter_init(&it, t, 0, UINT64_MAX, 0), 0);
	CHECK(!(gm_itree_iter_next(&it, &e) == 0));
	CHECK(!(gm_itree_iter_next(&it, &e) == 0));
	CHECK_EQ(gm_itree_remove(t, 1, 2, NULL), -ENOENT);
	CHECK_VALID(gm_itree_validate(t, &reason), reason);
	/* reversed ranges */
	CHECK_EQ(gm_itree_insert(t, 5, 4, NULL), -EINVAL);
	CHECK_EQ(gm_itree_remove(t, 5, 4, NULL), -EINVAL);
	CHECK_EQ(gm_itree_iter_init(&it, t, 9, 8, 0), -EINVAL);
	CHECK(!(gm_itree_iter_next(&it, &e) == 0));
	void *one[1];
	CHECK_EQ(gm_itree_fill(t, 0, UINT64_MAX, one, 1), 0);
	CHECK_EQ(gm_itree_insert(t, 1, 100, (void *)3), 0);
	CHECK_EQ(gm_itree_fill(t, 9, 8, one, 1), -EINVAL);
	CHECK_EQ(gm_itree_fill(t, 8, 9, one, 1), 1);
	CHECK(one[0] == (void *)3);
	CHECK_EQ(gm_itree_remove(t, 1, 100, (void *)3), 0);
	/* the whole space, points at both ends */
	CHECK_EQ(gm_itree_insert(t, 0, UINT64_MAX, (void *)7), 0);
	CHECK_EQ(gm_itree_insert(t, 0, UINT64_MAX, (void *)7), -EEXIST);
	CHECK_EQ(gm_itree_insert(t, 0, UINT64_MAX, (void *)8), 0);
	CHECK_EQ(gm_itree_insert(t, 0, 0, NULL), 0);
	CHECK_EQ(gm_itree_insert(t, UINT64_MAX, UINT64_MAX, NULL), 0);
	CHECK_EQ(gm_itree_count(t), 4);
	gm_itree_iter_init(&it, t, UINT64_MAX, UINT64_MAX, 0);
	CHECK((gm_itree_iter_next(&it, &e) == 0));
	CHECK_EQ(e.first, 0);
	CHECK_EQ((uintptr_t)e.item, 7);
	CHECK((gm_itree_iter_next(&it, &e) == 0));
	CHECK_EQ((uintptr_t)e.item, 8);
	CHECK((gm_itree_iter_next(&it, &e) == 0));
	CHECK_EQ(e.first, UINT64_MAX);
	CHECK(!(gm_itree_iter_next(&it, &e) == 0));
	gm_itree_iter_init(&it, t, 0, 0, 0);
	size_t k = 0;
	while ((gm_itree_iter_next(&it, &e) == 0))
		k++;
	CHECK_EQ(k, 3);
	gm_itree_iter_init(&it, t, 12345, 12345, 0);
	k = 0;
	while ((gm_itree_iter_next(&it, &e) == 0))
		k++;
	CHECK_EQ(k, 2);
	CHECK_EQ(gm_itree_remove(t, 0, UINT64_MAX, (void *)9), -ENOENT);
	CHECK_EQ(gm_itree_remove(t, 0, UINT64_MAX, (void *)7), 0);
	CHECK_EQ(gm_itree_remove(t, 0, UINT64_MAX, (void *)7), -ENOENT);
	CHECK_VALID(gm_itree_validate(t, &reason), reason);
	struct gm_itree_stats st;
	CHECK_EQ(gm_itree_stats(t, &st), 0);
	CHECK_EQ(st.entries, 3);
	CHECK_EQ(st.height, 1);
	CHECK_EQ(st.leaf_nodes, 1);
	CHECK_EQ(gm_itree_stats(NULL, &st), -EINVAL);
	const char *why = NULL;
	CHECK_EQ(gm_itree_validate(NULL, &why), -EINVAL);
	CHECK(why != NULL);
	gm_itree_destroy(t);
	gm_itree_destroy(NULL);
}

/* validate() must notice a broken invariant, or the other tests prove
 * nothing: corrupt a summary through the internal layout and expect it. */
GM_TEST(validate_detects_corruption)
{
	struct gm_itree *t;
	CHECK_EQ(gm_itree_create(&t, 0, NULL), 0);
	for (uint64_t i = 0; i < 200; i++)
		CHECK_EQ(gm_itree_insert(t, i, i + 3, NULL), 0);
	CHECK_VALID(gm_itree_validate(t, &reason), reason);
	/* the handle starts with the root pointer; the root is inner here,
	 * and its max_last[0] follows the header's cache line and
	 * prefix_max[32] */
	struct itnode_hdr { uint8_t level, count; };
	void *root = atomic_load((_Atomic(void *) *)t);
	CHECK(((struct itnode_hdr *)root)->level >= 1);
	uint64_t *max0 = (uint64_t *)((char *)root + 64 + 32 * 8);
	*max0 += 1;
	const char *why = NULL;
	CHECK_EQ(gm_itree_validate(t, &why), -EINVAL);
	CHECK(why != NULL && strstr(why, "max_last") != NULL);
	*max0 -= 1;
	CHECK_VALID(gm_itree_validate(t, &reason), reason);
	gm_itree_destroy(t);
}

/* ---- out of memory ------------------------------------------------------ */

static size_t retire_batch_bytes(void)
{
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	struct gm_reclaim r;
	gm_reclaim_init(&r, &c.allocator, true);
	CHECK_EQ(gm_reclaim_reserve(&r, 1), 0);
	size_t b = gm_alloc_counting_bytes(&c);
	gm_reclaim_destroy(&r);
	return b;
}

static void oom(unsigned flags)
{
	struct gm_rng *r = gm_test_rng();
	struct gm_alloc_failing f;
	gm_alloc_failing_init(&f, NULL);
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, &f.allocator);
	size_t batch = retire_batch_bytes();
	struct gm_itree *t;
	gm_alloc_failing_arm_nth(&f, 1, false);
	CHECK_EQ(gm_itree_create(&t, flags, &c.allocator), -ENOMEM);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	gm_alloc_failing_disarm(&f);
	CHECK_EQ(gm_itree_create(&t, flags, &c.allocator), 0);
	struct model m = {0};
	uint64_t steps = gm_test_iters(flags ? 3000 : 6000), nfail = 0;
	for (uint64_t s = 0; s < steps; s++) {
		uint64_t fi, la;
		void *item;
		bool ins = m.n < 50 || gm_rng_chance(r, 11, 20);
		if (ins) {
			random_interval(r, 1u << 16, &fi, &la);
			item = random_item(r);
		} else {
			struct gm_itree_entry e = m.e[gm_rng_below(r, m.n)];
			fi = e.first, la = e.last, item = e.item;
		}
		/* Deferred frees of earlier steps run on the RCU worker thread and
		 * would blur the byte count: in RCU mode, wait for them (slow,
		 * so only on every 16th step) and check bytes only then. */
		bool exact = !(flags & GM_RCU) || s % 16 == 0;
		if (flags & GM_RCU && exact)
			gm_rcu_barrier();
		size_t before = gm_alloc_counting_bytes(&c);
		gm_alloc_failing_arm_nth(&f, 1 + gm_rng_below(r, 6), gm_rng_chance(r, 1, 2));
		int rc = ins ? gm_itree_insert(t, fi, la, item)
			     : gm_itree_remove(t, fi, la, item);
		gm_alloc_failing_disarm(&f);
		if (rc == -ENOMEM) {
			nfail++;
			size_t after = gm_alloc_counting_bytes(&c);
			CHECK(!exact || after >= before);
			CHECK_MSG(!exact || (after - before) % batch == 0,
				  "failed op changed bytes by %zu", after - before);
			CHECK_VALID(gm_itree_validate(t, &reason), reason);
			check_same(t, &m);
			continue;
		}
		CHECK_EQ(rc, ins ? model_insert(&m, fi, la, item)
				 : model_remove(&m, fi, la, item));
		CHECK_VALID(gm_itree_validate(t, &reason), reason);
		if (s % 64 == 0)
			check_same(t, &m);
	}
	gm_test_note("%" PRIu64 " of %" PRIu64 " ops failed with -ENOMEM", nfail, steps);
	/* Injection reached the tree. Most ops allocate nothing (in-place leaf
	 * edits; in RCU mode recycled nodes too), so only ~1-2% can fail: ask
	 * for a clearly non-zero share that no seed falls under. */
	CHECK(nfail > steps / 500);
	check_same(t, &m);
	gm_itree_destroy(t);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	free(m.e);
}

/* An RCU-mode tree of a few hundred entries, churned until many writes
 * have split, merged or redistributed nodes, holds little beyond its live
 * nodes once the grace periods are over and the writer took the retired
 * nodes back: no spare slots (fewer than 16 nodes of a kind), nodes of a
 * small tree in chunks of their own. Slack: the chunk ends, the handle,
 * and what the last write may have retired itself. */
GM_TEST(rcu_churned_small_tree_gives_memory_back)
{
	gm_rcu_register_thread();
	struct gm_rng *r = gm_test_rng();
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	struct gm_itree *t;
	CHECK_EQ(gm_itree_create(&t, GM_RCU, &c.allocator), 0);
	struct model m = {0};
	while (m.n < 150) {
		uint64_t fi, la;
		random_interval(r, 1u << 20, &fi, &la);
		void *item = random_item(r);
		if (gm_itree_insert(t, fi, la, item) == 0)
			CHECK_EQ(model_insert(&m, fi, la, item), 0);
	}
	uint64_t steps = gm_test_iters(20000);
	for (uint64_t s = 0; s < steps; s++) {
		struct gm_itree_entry e = m.e[gm_rng_below(r, m.n)];
		CHECK_EQ(gm_itree_remove(t, e.first, e.last, e.item), 0);
		CHECK_EQ(model_remove(&m, e.first, e.last, e.item), 0);
		uint64_t fi, la;
		random_interval(r, 1u << 20, &fi, &la);
		CHECK_EQ(gm_itree_insert(t, fi, la, e.item), 0);
		CHECK_EQ(model_insert(&m, fi, la, e.item), 0);
	}
	for (int round = 0; round < 3; round++) { /* take back what came back */
		gm_rcu_barrier();
		struct gm_itree_entry e = m.e[0];
		CHECK_EQ(gm_itree_remove(t, e.first, e.last, e.item), 0);
		CHECK_EQ(gm_itree_insert(t, e.first, e.last, e.item), 0);
	}
	struct gm_itree_stats st;
	CHECK_EQ(gm_itree_stats(t, &st), 0);
	uint64_t nodes = st.leaf_nodes + st.inner_nodes;
	uint64_t slack = 16 * nodes + 1024 + 2 * 384 + 2 * 1600;
	CHECK_MSG(st.total_bytes <= st.node_bytes + slack,
		  "%" PRIu64 " bytes held for %" PRIu64 " of live nodes",
		  st.total_bytes, st.node_bytes);
	CHECK_VALID(gm_itree_validate(t, &reason), reason);
	check_same(t, &m);
	gm_itree_destroy(t);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	free(m.e);
	gm_rcu_unregister_thread();
}

GM_TEST(oom_plain_leaves_tree_unchanged)
{
	oom(0);
}

GM_TEST(oom_rcu_leaves_tree_unchanged)
{
	gm_rcu_register_thread();
	oom(GM_RCU);
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
