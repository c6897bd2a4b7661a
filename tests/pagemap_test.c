/* tests/pagemap_test.c — gm_pagemap against a sorted-array model. */
#include "harness.h"
#include "pagemap_kv.h"
#include "internal.h"

#include <gmtrack/pagemap.h>

/* src/pagemap.c: below this count load_many is a plain loop of lookups;
 * most tests set it to 0 so their small maps go through the batches. */
extern uint64_t gm_pagemap_many_loop_max_;

/* ---- the model: a sorted array of (key, value) --------------------------- */
struct model {
	uint64_t *keys;
	uintptr_t *vals;
	size_t n, cap;
};

static size_t model_lb(const struct model *m, uint64_t key)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (m->keys[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static uintptr_t model_get(const struct model *m, uint64_t key)
{
	size_t i = model_lb(m, key);
	return i < m->n && m->keys[i] == key ? m->vals[i] : 0;
}

static void model_set(struct model *m, uint64_t key, uintptr_t v)
{
	size_t i = model_lb(m, key);
	if (i < m->n && m->keys[i] == key) {
		m->vals[i] = v;
		return;
	}
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->keys = realloc(m->keys, m->cap * sizeof(*m->keys));
		m->vals = realloc(m->vals, m->cap * sizeof(*m->vals));
	}
	memmove(m->keys + i + 1, m->keys + i, (m->n - i) * sizeof(*m->keys));
	memmove(m->vals + i + 1, m->vals + i, (m->n - i) * sizeof(*m->vals));
	m->keys[i] = key;
	m->vals[i] = v;
	m->n++;
}

static void model_del(struct model *m, uint64_t key)
{
	size_t i = model_lb(m, key);
	if (i < m->n && m->keys[i] == key) {
		memmove(m->keys + i, m->keys + i + 1, (m->n - i - 1) * sizeof(*m->keys));
		memmove(m->vals + i, m->vals + i + 1, (m->n - i - 1) * sizeof(*m->vals));
		m->n--;
	}
}

static void model_free(struct model *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

/* Whole-contents comparison: iteration order, values, count. */
static void check_same(const struct gm_pagemap *map, const struct model *m)
{
	CHECK_EQ(gm_pagemap_count(map), m->n);
	struct gm_pagemap_iter it;
	gm_pagemap_iter_init(&it, map, 0, UINT64_MAX, 0);
	uint64_t k;
	void *v;
	size_t i = 0;
	while (pm_iter_kv(&it, &k, &v)) {
		CHECK(i < m->n);
		CHECK_EQ(k, m->keys[i]);
		CHECK_EQ((uintptr_t)v, m->vals[i]);
		i++;
	}
	CHECK_EQ(i, m->n);
}

/* Keys from a mix of shapes that stress the tree's edges. */
static uint64_t pick_key(struct gm_rng *r, const struct model *m)
{
	switch (gm_rng_below(r, 8)) {
	case 0: return gm_rng_next(r);                              /* anywhere */
	case 1: return gm_rng_below(r, 4096);                       /* dense, low */
	case 2: return UINT64_MAX - gm_rng_below(r, 300);           /* top edge */
	case 3: return 0x123456789aULL + gm_rng_below(r, 1u << 14); /* clustered */
	case 4: return gm_rng_below(r, 1ULL << 36);                 /* frame numbers */
	case 5: return (gm_rng_below(r, 2) << 63) | gm_rng_below(r, 2); /* top/bottom bit */
	case 6: return m->n ? m->keys[gm_rng_below(r, m->n)] : 0;   /* present */
	default: return m->n ? m->keys[gm_rng_below(r, m->n)] + gm_rng_below(r, 3) - 1 : 1;
	}
}

static uintptr_t pick_value(struct gm_rng *r)
{
	return (uintptr_t)(gm_rng_next(r) | 1);
}

/* One random step applied to both; returns nothing, checks everything. */
static void random_step(struct gm_pagemap *map, struct model *m, struct gm_rng *r)
{
	uint64_t key = pick_key(r, m);
	uintptr_t want = model_get(m, key);
	switch (gm_rng_below(r, 10)) {
	case 0: case 1: case 2: { /* insert */
		uintptr_t v = pick_value(r);
		int rc = gm_pagemap_insert(map, key, (void *)v);
		CHECK_EQ(rc, want ? -EEXIST : 0);
		if (!want)
			model_set(m, key, v);
		break;
	}
	case 3: case 4: { /* store */
		uintptr_t v = pick_value(r);
		void *old = (void *)1;
		CHECK_EQ(gm_pagemap_store(map, key, (void *)v, &old), 0);
		CHECK_EQ((uintptr_t)old, want);
		model_set(m, key, v);
		break;
	}
	case 5: case 6: { /* erase */
		void *old = NULL;
		int rc = gm_pagemap_remove(map, key, &old);
		CHECK_EQ(rc, want ? 0 : -ENOENT);
		if (want) {
			CHECK_EQ((uintptr_t)old, want);
			model_del(m, key);
		}
		break;
	}
	case 7: { /* next */
		uint64_t k = key;
		void *v;
		size_t i = model_lb(m, key);
		int rc = pm_seek_kv(map, &k, &v, true);
		CHECK_EQ(rc, i < m->n ? 0 : -ENOENT);
		if (i < m->n) {
			CHECK_EQ(k, m->keys[i]);
			CHECK_EQ((uintptr_t)v, m->vals[i]);
		}
		break;
	}
	case 8: { /* prev */
		uint64_t k = key;
		void *v;
		size_t i = model_lb(m, key);
		bool exact = i < m->n && m->keys[i] == key;
		bool has = exact || i > 0;
		size_t at = exact ? i : i - 1;
		int rc = pm_seek_kv(map, &k, &v, false);
		CHECK_EQ(rc, has ? 0 : -ENOENT);
		if (has) {
			CHECK_EQ(k, m->keys[at]);
			CHECK_EQ((uintptr_t)v, m->vals[at]);
		}
		break;
	}
	default: { /* load and a bounded iteration */
		CHECK_EQ((uintptr_t)gm_pagemap_load(map, key), want);
		uint64_t last = key + gm_rng_below(r, 1u << 20);
		if (last < key)
			last = UINT64_MAX;
		struct gm_pagemap_iter it;
		gm_pagemap_iter_init(&it, map, key, last, 0);
		size_t i = model_lb(m, key);
		uint64_t k;
		void *v;
		for (int steps = 0; steps < 200 && pm_iter_kv(&it, &k, &v); steps++, i++) {
			CHECK(i < m->n);
			CHECK_EQ(k, m->keys[i]);
			CHECK_EQ((uintptr_t)v, m->vals[i]);
		}
		break;
	}
	}
}

GM_TEST(differential_random_operations)
{
	struct gm_rng *r = gm_test_rng();
	for (int round = 0; round < 4; round++) {
		uint64_t saved_loop_max = gm_pagemap_many_loop_max_;
		if (round % 2)
			gm_pagemap_many_loop_max_ = 0;
		struct gm_alloc_counting c;
		gm_alloc_counting_init(&c, NULL);
		struct gm_pagemap *map;
		CHECK_EQ(gm_pagemap_create(&map, 0, &c.allocator), 0);
		struct model m = {0};
		uint64_t steps = gm_test_iters(6000);
		for (uint64_t s = 0; s < steps; s++) {
			random_step(map, &m, r);
			CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
		}
		check_same(map, &m);
		/* load_many agrees with load */
		uint64_t keys[100];
		void *vals[100];
		size_t want_found = 0;
		for (int i = 0; i < 100; i++) {
			keys[i] = pick_key(r, &m);
			want_found += model_get(&m, keys[i]) != 0;
		}
		CHECK_EQ(gm_pagemap_load_many(map, keys, 100, vals), want_found);
		for (int i = 0; i < 100; i++)
			CHECK_EQ((uintptr_t)vals[i], model_get(&m, keys[i]));
		gm_pagemap_destroy(map);
		CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
		model_free(&m);
		gm_pagemap_many_loop_max_ = saved_loop_max;
	}
}

/* Bulk shapes: grow to thousands of keys and shrink back to empty. */
GM_TEST(grow_and_shrink_each_distribution)
{
	struct gm_rng *r = gm_test_rng();
	for (int dist = 0; dist < 3; dist++) {
		struct gm_alloc_counting c;
		gm_alloc_counting_init(&c, NULL);
		struct gm_pagemap *map;
		CHECK_EQ(gm_pagemap_create(&map, 0, &c.allocator), 0);
		struct model m = {0};
		uint64_t n = gm_test_iters(12000);
		for (uint64_t i = 0; i < n; i++) {
			uint64_t key = dist == 0 ? i : dist == 1 ? (i / 512) * 1000003 * 512 + i % 512
							: gm_rng_below(r, 1ULL << 36);
			uintptr_t v = pick_value(r);
			int rc = gm_pagemap_insert(map, key, (void *)v);
			CHECK(rc == 0 || rc == -EEXIST);
			if (rc == 0)
				model_set(&m, key, v);
		}
		CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
		check_same(map, &m);
		struct gm_pagemap_stats st;
		gm_pagemap_stats(map, &st);
		CHECK_EQ(st.entries, m.n);
		CHECK_EQ(gm_pagemap_bytes_(map), gm_alloc_counting_bytes(&c));
		if (dist == 0)
			CHECK(st.bytes < 8.3 * (double)m.n); /* dense: full bitmap leaves */
		CHECK(st.max_depth <= 11);
		/* erase in random order, validating now and then */
		while (m.n) {
			uint64_t key = m.keys[gm_rng_below(r, m.n)];
			void *old;
			CHECK_EQ(gm_pagemap_remove(map, key, &old), 0);
			CHECK_EQ((uintptr_t)old, model_get(&m, key));
			model_del(&m, key);
			if (m.n % 997 == 0)
				CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
		}
		CHECK_EQ(gm_pagemap_count(map), 0);
		CHECK_EQ(gm_alloc_counting_bytes(&c), gm_pagemap_bytes_(map)); /* the handle */
		gm_pagemap_destroy(map);
		model_free(&m);
	}
}

/* Direct branches and leaves: frames filled ascending, descending and in
 * random order turn leaves and branches direct (in place), and drained in
 * random order they pass back through the packed forms; every step is
 * validated and checked against the model, ordered reads included. */
GM_TEST(direct_nodes_fill_and_drain)
{
	struct gm_rng *r = gm_test_rng();
	for (int order = 0; order < 3; order++) {
		struct gm_alloc_counting c;
		gm_alloc_counting_init(&c, NULL);
		struct gm_pagemap *map;
		CHECK_EQ(gm_pagemap_create(&map, order == 2 ? GM_RCU : 0, &c.allocator), 0);
		struct model m = {0};
		enum { N = 3 * 4096 };
		static uint64_t keys[N];
		for (unsigned i = 0; i < N; i++)
			keys[i] = 0x5000000ULL * (i / 4096) + (order == 1 ? 4095 - i % 4096 : i % 4096);
		for (unsigned i = N; order == 2 && i > 1; i--) {
			unsigned j = (unsigned)gm_rng_below(r, i);
			uint64_t t = keys[i - 1];
			keys[i - 1] = keys[j];
			keys[j] = t;
		}
		if (order == 2)
			gm_rcu_register_thread();
		for (unsigned i = 0; i < N; i++) {
			uintptr_t v = pick_value(r);
			CHECK_EQ(gm_pagemap_insert(map, keys[i], (void *)v), 0);
			model_set(&m, keys[i], v);
			if (i % 61 == 0)
				CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
		}
		check_same(map, &m);
		struct gm_pagemap_stats st;
		gm_pagemap_stats(map, &st);
		CHECK(st.bytes < 8.5 * N); /* full direct leaves */
		while (m.n) {
			uint64_t key = m.keys[gm_rng_below(r, m.n)];
			void *old;
			CHECK_EQ(gm_pagemap_remove(map, key, &old), 0);
			CHECK_EQ((uintptr_t)old, model_get(&m, key));
			model_del(&m, key);
			CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
			for (int probe = 0; probe < 2; probe++)
				random_step(map, &m, r);
		}
		if (order != 2) /* RCU: retired nodes wait for a grace period */
			CHECK_EQ(gm_alloc_counting_bytes(&c), gm_pagemap_bytes_(map));
		gm_pagemap_destroy(map);
		if (order == 2)
			gm_rcu_unregister_thread();
		CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
		model_free(&m);
	}
}

/* Sorted leaves whose keys are far from uniform: the interpolated start
 * of a lookup is then far from the key, so the windowed count misses it and
 * the galloping search must find it (and misses must stay misses). 256
 * background keys make the root leaf split, so the skewed keys land in a
 * leaf at shift 12 (suffixes of 18 bits) that their outlier spans. */
GM_TEST(skewed_sorted_leaves_find_every_key)
{
	gm_pagemap_many_loop_max_ = 0; /* batches, whatever the size */
	static const unsigned sizes[] = {3, 9, 17, 31, 33, 100, 255};
	for (unsigned si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		for (int top_heavy = 0; top_heavy < 2; top_heavy++) {
			struct gm_pagemap *map;
			CHECK_EQ(gm_pagemap_create(&map, 0, NULL), 0);
			unsigned n = sizes[si];
			uint64_t keys[256], base = 5ULL << 40;
			keys[0] = top_heavy ? base : base + (1ULL << 18) - 1;
			CHECK_EQ(gm_pagemap_insert(map, keys[0], (void *)(uintptr_t)(keys[0] | 1)), 0);
			for (uint64_t j = 0; j < 256; j++)
				CHECK_EQ(gm_pagemap_insert(map, base + (1ULL << 23) + j * 1000, (void *)1), 0);
			for (unsigned i = 1; i < n; i++)
				keys[i] = top_heavy ? base + (1ULL << 18) - 97ULL * i : base + 97ULL * i;
			for (unsigned i = 1; i < n; i++)
				CHECK_EQ(gm_pagemap_insert(map, keys[i], (void *)(uintptr_t)(keys[i] | 1)), 0);
			CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
			uint64_t probe[512];
			void *out[512];
			for (unsigned i = 0; i < n; i++) {
				CHECK_EQ((uintptr_t)gm_pagemap_load(map, keys[i]), keys[i] | 1);
				CHECK(gm_pagemap_load(map, keys[i] + 1) == NULL);
				probe[2 * i] = keys[i];
				probe[2 * i + 1] = keys[i] + 1;
			}
			CHECK_EQ(gm_pagemap_load_many(map, probe, 2 * n, out), n);
			for (unsigned i = 0; i < n; i++) {
				CHECK_EQ((uintptr_t)out[2 * i], keys[i] | 1);
				CHECK(out[2 * i + 1] == NULL);
			}
			gm_pagemap_destroy(map);
		}
	}
}

/* load_many skips the prefix check of a sorted leaf reached through
 * levels that each consumed the key's own chunk: keys that differ from a
 * stored key in any one bit (inside or above the skipped levels) must still
 * miss, in trees with full branches, compressed paths and both leaf kinds. */
GM_TEST(load_many_one_bit_flips_miss)
{
	gm_pagemap_many_loop_max_ = 0; /* batches, whatever the size */
	struct gm_rng *r = gm_test_rng();
	for (int shape = 0; shape < 4; shape++) {
		struct gm_pagemap *map;
		CHECK_EQ(gm_pagemap_create(&map, 0, NULL), 0);
		struct model m = {0};
		unsigned n = shape == 0 ? 9000 : shape == 1 ? 20000 : shape == 2 ? 3000 : 600;
		for (unsigned i = 0; i < n; i++) {
			uint64_t k;
			switch (shape) {
			case 0: k = (3ULL << 50) + i; break;                   /* dense, compressed above */
			case 1: k = gm_rng_next(r) & ((1ULL << 36) - 1); break; /* random frames */
			case 2: k = (i & 1 ? 7ULL << 44 : 0) + (gm_rng_next(r) & ((1ULL << 30) - 1)); break;
			default: k = gm_rng_next(r); break;                  /* whole key space */
			}
			if (model_get(&m, k))
				continue;
			CHECK_EQ(gm_pagemap_insert(map, k, (void *)(uintptr_t)(k | 1)), 0);
			model_set(&m, k, k | 1);
		}
		CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
		uint64_t probe[65];
		void *out[65];
		for (size_t i = 0; i < m.n; i += 1 + m.n / 300) {
			probe[0] = m.keys[i];
			for (unsigned b = 0; b < 64; b++)
				probe[b + 1] = m.keys[i] ^ (1ULL << b);
			size_t want = 0;
			for (unsigned b = 0; b < 65; b++)
				want += model_get(&m, probe[b]) != 0;
			CHECK_EQ(gm_pagemap_load_many(map, probe, 65, out), want);
			for (unsigned b = 0; b < 65; b++) {
				CHECK_EQ((uintptr_t)out[b], model_get(&m, probe[b]));
				CHECK_EQ((uintptr_t)gm_pagemap_load(map, probe[b]), model_get(&m, probe[b]));
			}
		}
		gm_pagemap_destroy(map);
		model_free(&m);
	}
}

GM_TEST(key_edges)
{
	struct gm_pagemap *map;
	CHECK_EQ(gm_pagemap_create(&map, 0, NULL), 0);
	uint64_t k = 5;
	void *v;
	CHECK_EQ(pm_seek_kv(map, &k, &v, true), -ENOENT);
	CHECK_EQ(pm_seek_kv(map, &k, &v, false), -ENOENT);
	CHECK(gm_pagemap_load(map, 0) == NULL);
	CHECK_EQ(gm_pagemap_remove(map, 0, NULL), -ENOENT);
	const uint64_t edges[] = {0, UINT64_MAX, 1, 1ULL << 63, (1ULL << 63) | 1,
				  UINT64_MAX - 1, 0x7fffffffffffffffULL,
				  0xabcdef0123456700ULL, 0xabcdef0123456701ULL,
				  0xabcdef0123456780ULL, 63, 64, 4095, 4096};
	const size_t ne = sizeof(edges) / sizeof(edges[0]);
	for (size_t i = 0; i < ne; i++) {
		CHECK_EQ(gm_pagemap_insert(map, edges[i], (void *)(uintptr_t)(i + 1)), 0);
		CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
	}
	for (size_t i = 0; i < ne; i++) {
		CHECK_EQ(gm_pagemap_insert(map, edges[i], (void *)1), -EEXIST);
		CHECK_EQ((uintptr_t)gm_pagemap_load(map, edges[i]), i + 1);
	}
	k = UINT64_MAX;
	CHECK_EQ(pm_seek_kv(map, &k, &v, true), 0);
	CHECK_EQ(k, UINT64_MAX);
	k = 0;
	CHECK_EQ(pm_seek_kv(map, &k, &v, false), 0);
	CHECK_EQ(k, 0);
	k = 2;
	CHECK_EQ(pm_seek_kv(map, &k, &v, false), 0);
	CHECK_EQ(k, 1);
	k = (1ULL << 63) - 2;
	CHECK_EQ(pm_seek_kv(map, &k, &v, true), 0);
	CHECK_EQ(k, 0x7fffffffffffffffULL);
	/* NULL values and bad arguments */
	CHECK_EQ(gm_pagemap_insert(map, 7, NULL), -EINVAL);
	CHECK_EQ(gm_pagemap_store(map, 7, NULL, NULL), -EINVAL);
	CHECK_EQ(gm_pagemap_insert(NULL, 7, (void *)1), -EINVAL);
	CHECK_EQ(gm_pagemap_next(map, 0, NULL), -EINVAL);
	CHECK_EQ(gm_pagemap_create(&map, 0x80, NULL), -EINVAL);
	/* reversed range is empty; whole-space range visits all in order */
	struct gm_pagemap_iter it;
	gm_pagemap_iter_init(&it, map, 10, 9, 0);
	CHECK(!pm_iter_kv(&it, &k, &v));
	gm_pagemap_iter_init(&it, map, 0, UINT64_MAX, 0);
	size_t seen = 0;
	uint64_t prev = 0;
	while (pm_iter_kv(&it, &k, &v)) {
		CHECK(seen == 0 || k > prev);
		prev = k;
		seen++;
	}
	CHECK_EQ(seen, ne);
	CHECK_EQ(prev, UINT64_MAX);
	gm_pagemap_destroy(map);
}

GM_TEST(iteration_survives_erasing_the_current_entry)
{
	struct gm_pagemap *map;
	CHECK_EQ(gm_pagemap_create(&map, 0, NULL), 0);
	for (uint64_t i = 0; i < 3000; i++)
		CHECK_EQ(gm_pagemap_insert(map, i * 7, (void *)(uintptr_t)(i + 1)), 0);
	struct gm_pagemap_iter it;
	gm_pagemap_iter_init(&it, map, 700, 14000, 0);
	uint64_t k, expect = 700;
	void *v;
	while (pm_iter_kv(&it, &k, &v)) {
		CHECK_EQ(k, expect);
		expect += 7;
		CHECK_EQ(gm_pagemap_remove(map, k, NULL), 0);
	}
	CHECK_EQ(expect, 14007);
	CHECK_EQ(gm_pagemap_count(map), 3000 - 1901);
	CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
	gm_pagemap_destroy(map);
}

struct destroy_seen {
	uint64_t n, last_key, sum;
	bool ordered;
};

static int on_walk(void *ctx, uint64_t key, void *value)
{
	struct destroy_seen *d = ctx;
	if (d->n && key <= d->last_key)
		d->ordered = false;
	d->last_key = key;
	d->sum += (uintptr_t)value;
	d->n++;
	return 0;
}

GM_TEST(walk_calls_back_once_per_value_in_order)
{
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	struct gm_pagemap *map;
	CHECK_EQ(gm_pagemap_create(&map, 0, &c.allocator), 0);
	struct gm_rng *r = gm_test_rng();
	uint64_t sum = 0, n = 0;
	for (int i = 0; i < 5000; i++) {
		uint64_t v = gm_rng_below(r, 1000) + 1;
		if (gm_pagemap_insert(map, gm_rng_next(r) >> gm_rng_below(r, 64), (void *)(uintptr_t)v) == 0) {
			sum += v;
			n++;
		}
	}
	struct destroy_seen d = {.ordered = true};
	CHECK_EQ(gm_pagemap_walk(map, 0, UINT64_MAX, on_walk, &d), 0);
	CHECK_EQ(d.n, n);
	CHECK_EQ(d.sum, sum);
	CHECK(d.ordered);
	CHECK_EQ(gm_pagemap_walk(map, 1, 0, on_walk, &d), -EINVAL);
	CHECK_EQ(gm_pagemap_walk(map, 0, 1, NULL, &d), -EINVAL);
	gm_pagemap_destroy(map);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
}

/* Every allocation of every kind of change fails once: the map must be
 * exactly as before (contents and bytes), and nothing may leak. */
static void oom_round(bool rcu)
{
	if (rcu)
		gm_rcu_register_thread();
	struct gm_rng *r = gm_test_rng();
	struct gm_alloc_failing f;
	gm_alloc_failing_init(&f, NULL);
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, &f.allocator);
	struct gm_pagemap *map;
	CHECK_EQ(gm_pagemap_create(&map, rcu ? GM_RCU : 0, &c.allocator), 0);
	struct model m = {0};
	uint64_t steps = gm_test_iters(2500);
	uint64_t injected = 0;
	for (uint64_t s = 0; s < steps; s++) {
		uint64_t key = pick_key(r, &m);
		uintptr_t v = pick_value(r);
		bool erase = m.n > 50 && gm_rng_chance(r, 2, 5);
		/* try each allocation of this change failing, then let it pass */
		/* In RCU mode deferred frees run on the RCU worker thread at any time;
		 * every 64th step waits for them so the allocator's total can be
		 * compared exactly (modulo one reserved retire batch). */
		bool exact = !rcu || s % 64 == 0;
		for (uint64_t nth = 1;; nth++) {
			if (rcu && exact)
				gm_rcu_barrier();
			size_t before = gm_alloc_counting_bytes(&c);
			size_t before_map = gm_pagemap_bytes_(map);
			gm_alloc_failing_arm_nth(&f, nth, false);
			int rc = erase ? gm_pagemap_remove(map, key, NULL)
				       : gm_pagemap_insert(map, key, (void *)v);
			gm_alloc_failing_disarm(&f);
			if (rc == -ENOMEM && rcu && exact) {
				gm_rcu_barrier();
				size_t after = gm_alloc_counting_bytes(&c);
				/* May fall: a reserve queues nodes retired by earlier
				 * writes; may grow only by a spare retire batch. */
				CHECK(after <= before + 2048);
			}
			if (rc != -ENOMEM) {
				uintptr_t want = model_get(&m, key);
				if (erase) {
					CHECK_EQ(rc, want ? 0 : -ENOENT);
					model_del(&m, key);
				} else {
					CHECK_EQ(rc, want ? -EEXIST : 0);
					if (!want)
						model_set(&m, key, v);
				}
				break;
			}
			injected++;
			CHECK_EQ(gm_pagemap_bytes_(map), before_map);
			if (!rcu)
				CHECK_EQ(gm_alloc_counting_bytes(&c), before);
			CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
			if (s % 64 == 0 || m.n < 100)
				check_same(map, &m);
			CHECK_EQ(gm_pagemap_count(map), m.n);
		}
	}
	CHECK(injected > steps / 2);
	check_same(map, &m);
	gm_pagemap_destroy(map);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	model_free(&m);
	if (rcu)
		gm_rcu_unregister_thread();
}

GM_TEST(out_of_memory_leaves_map_unchanged) { oom_round(false); }
GM_TEST(out_of_memory_leaves_map_unchanged_rcu) { oom_round(true); }

GM_TEST(rcu_mode_single_thread_matches_model)
{
	gm_rcu_register_thread();
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	struct gm_pagemap *map;
	CHECK_EQ(gm_pagemap_create(&map, GM_RCU, &c.allocator), 0);
	struct model m = {0};
	struct gm_rng *r = gm_test_rng();
	uint64_t steps = gm_test_iters(5000);
	for (uint64_t s = 0; s < steps; s++) {
		gm_rcu_read_lock();
		random_step(map, &m, r);
		gm_rcu_read_unlock();
	}
	CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
	check_same(map, &m);
	gm_pagemap_destroy(map);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	model_free(&m);
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
