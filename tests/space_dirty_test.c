/*
 * tests/space_dirty_test.c — the VMM additions to gm_space's dirty logs
 * (bulk bitmap import, dirty-ring gfn import, ranged harvest that stops
 * midway, restore) and the slot iterator, against a plain bitmap model:
 * random operations checked after every step (with gm_space_validate), edge
 * cases (NULL, reversed ranges, UINT64_MAX, slots not logging) and
 * out-of-memory injection showing the log unchanged after -ENOMEM.
 */
#include "harness.h"

#include <gmtrack/alloc.h>
#include <gmtrack/rcu.h>
#include <gmtrack/space.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A slot of NP frames (three dirty chunks and a bit) at an odd base. */
#define NP (3 * 32768 + 777)
#define BASE 100003ull

static void reg(void)
{
	static _Thread_local bool done;
	if (!done) {
		gm_rcu_register_thread();
		done = true;
	}
}

struct model {
	uint8_t d[NP];
};

struct collect {
	struct model *got;
	uint64_t base;
	uint64_t last_end; /* runs must ascend and not touch */
	uint64_t runs, frames;
	long fail_at_run;  /* -1: never */
	bool order_ok;
};

static int collect_fn(void *ctx, uint64_t first, uint64_t count)
{
	struct collect *c = ctx;
	if ((long)c->runs == c->fail_at_run) {
		c->runs++;
		return -EIO;
	}
	if (first < c->last_end)
		c->order_ok = false;
	c->last_end = first + count + 1; /* a run is maximal: next one starts later */
	for (uint64_t g = first; g < first + count; g++) {
		if (g < c->base || g >= c->base + NP || c->got->d[g - c->base])
			c->order_ok = false;
		else
			c->got->d[g - c->base] = 1;
	}
	c->runs++;
	c->frames += count;
	return 0;
}

static void collect_init(struct collect *c, struct model *got, long fail_at_run)
{
	memset(got, 0, sizeof(*got));
	*c = (struct collect){got, BASE, 0, 0, 0, fail_at_run, true};
}

static struct gm_space *space_with_slot(const struct gm_allocator *a,
					const struct gm_space_slot **slot)
{
	struct gm_space *s;
	CHECK_EQ(gm_space_create(&s, NULL, 0, a), 0);
	CHECK_EQ(gm_space_slot_add(s, 7, BASE, NP, 0x7f0000000000ull, GM_SPACE_SLOT_DIRTY_LOG), 0);
	*slot = gm_space_id_to_slot(s, 7);
	CHECK(*slot != NULL);
	return s;
}

/* Harvests everything and checks it equals the model (then clears it). */
static void check_and_drain(struct gm_space *s, const struct gm_space_slot *slot,
			    struct model *m)
{
	static struct model got;
	struct collect c;
	collect_init(&c, &got, -1);
	uint64_t want = 0;
	for (size_t i = 0; i < NP; i++)
		want += m->d[i];
	long n = gm_space_dirty_harvest(s, slot, 0, UINT64_MAX, collect_fn, &c);
	CHECK_EQ(n, (long)want);
	CHECK(c.order_ok);
	CHECK(memcmp(got.d, m->d, NP) == 0);
	memset(m, 0, sizeof(*m));
	CHECK_VALID(gm_space_validate(s, &reason), reason);
}

static void random_bitmap(struct gm_rng *r, uint64_t *bm, uint64_t nbits)
{
	unsigned density = (unsigned)gm_rng_below(r, 4);
	for (uint64_t w = 0; w < (nbits + 63) / 64; w++) {
		uint64_t v = gm_rng_next(r);
		if (density == 0)
			v &= gm_rng_next(r) & gm_rng_next(r);
		else if (density == 1)
			v = gm_rng_chance(r, 1, 8) ? v : 0;
		else if (density == 2)
			v = ~0ull;
		bm[w] = v;
	}
	if (nbits % 64) /* bits past nbits must be ignored: set them */
		bm[nbits / 64] |= ~0ull << (nbits % 64);
}

/* One random operation on both; returns the operation's rc. */
static long random_op(struct gm_rng *r, struct gm_space *s,
		      const struct gm_space_slot *slot, struct model *m)
{
	static uint64_t bm[NP / 64 + 2];
	static struct model got;
	uint64_t a = gm_rng_below(r, NP), b = gm_rng_below(r, NP);
	if (a > b) {
		uint64_t t = a; a = b; b = t;
	}
	if (gm_rng_chance(r, 1, 3))
		b = a + gm_rng_below(r, b - a < 200 ? b - a + 1 : 200);
	uint64_t n = b - a + 1;
	switch (gm_rng_below(r, 6)) {
	case 0: { /* bitmap import (often word-aligned, as KVM's are) */
		if (gm_rng_chance(r, 1, 2)) {
			a &= ~63ull;
			n = b - a + 1;
		}
		random_bitmap(r, bm, n);
		int rc = gm_space_dirty_import(s, slot, BASE + a, bm, n);
		if (rc == 0)
			for (uint64_t i = 0; i < n; i++)
				if (bm[i / 64] >> (i % 64) & 1)
					m->d[a + i] = 1;
		return rc;
	}
	case 1: { /* ring entries */
		uint64_t g[64] = {0};
		size_t k = (size_t)gm_rng_below(r, 64);
		for (size_t i = 0; i < k; i++)
			g[i] = BASE + gm_rng_below(r, NP);
		int rc = gm_space_dirty_import_gfns(s, slot, g, k);
		if (rc == 0)
			for (size_t i = 0; i < k; i++)
				m->d[g[i] - BASE] = 1;
		return rc;
	}
	case 2: { /* restore */
		int rc = gm_space_dirty_restore(s, slot, BASE + a, n);
		if (rc == 0)
			memset(m->d + a, 1, n);
		return rc;
	}
	case 3: { /* single marks */
		gm_rcu_read_lock();
		int rc = gm_space_dirty_mark(s, slot, BASE + a);
		gm_rcu_read_unlock();
		if (rc == 0)
			m->d[a] = 1;
		return rc;
	}
	default: { /* ranged harvest, possibly failing at some run */
		struct collect c;
		if (gm_rng_chance(r, 1, 3)) /* the whole slot: its own path */
			a = 0, b = NP - 1;
		long fail = gm_rng_chance(r, 1, 2) ? (long)gm_rng_below(r, 5) : -1;
		collect_init(&c, &got, fail);
		long rc = gm_space_dirty_harvest(s, slot, BASE + a, BASE + b, collect_fn, &c);
		CHECK(c.order_ok);
		uint64_t delivered = 0;
		for (uint64_t i = 0; i < NP; i++) {
			if (!got.d[i])
				continue;
			CHECK(i >= a && i <= b);
			CHECK(m->d[i]);
			m->d[i] = 0;
			delivered++;
		}
		if (rc >= 0) {
			CHECK_EQ(rc, (long)delivered);
			for (uint64_t i = a; i <= b; i++)
				CHECK(!m->d[i] || !"a dirty frame in range was not delivered");
		} else {
			CHECK_EQ(rc, -EIO);
			CHECK_EQ(c.frames, delivered);
		}
		return 0;
	}
	}
}

GM_TEST(differential_against_bitmap_model)
{
	struct gm_rng *r = gm_test_rng();
	reg();
	const struct gm_space_slot *slot;
	struct gm_space *s = space_with_slot(NULL, &slot);
	struct model *m = calloc(1, sizeof(*m));
	uint64_t steps = gm_test_iters(3000);
	for (uint64_t i = 0; i < steps; i++) {
		CHECK_EQ(random_op(r, s, slot, m), 0);
		CHECK_VALID(gm_space_validate(s, &reason), reason);
		if (gm_rng_chance(r, 1, 50))
			check_and_drain(s, slot, m);
	}
	check_and_drain(s, slot, m);
	free(m);
	gm_space_destroy(s);
}

/* The plain harvest sees what import put in (the two agree on the log). */
static int count_fn(void *ctx, uint64_t first, uint64_t count)
{
	(void)first;
	*(uint64_t *)ctx += count;
	return 0;
}

GM_TEST(import_is_seen_by_plain_harvest_unaligned)
{
	reg();
	const struct gm_space_slot *slot;
	struct gm_space *s = space_with_slot(NULL, &slot);
	uint64_t bm[3] = {~0ull, 0x8000000000000001ull, 0xff};
	for (uint64_t shift = 0; shift < 70; shift += 7) {
		CHECK_EQ(gm_space_dirty_import(s, slot, BASE + 32768 - 37 + shift, bm, 136), 0);
		uint64_t n = 0;
		CHECK_EQ(gm_space_dirty_harvest(s, slot, 0, UINT64_MAX, count_fn, &n), 64 + 2 + 8);
		CHECK_EQ(n, 74);
	}
	gm_space_destroy(s);
}

GM_TEST(edge_cases)
{
	reg();
	const struct gm_space_slot *slot;
	struct gm_space *s = space_with_slot(NULL, &slot);
	CHECK_EQ(gm_space_slot_add(s, 8, 0, 16, 0x1000000, 0), 0); /* not logging */
	const struct gm_space_slot *plain = gm_space_id_to_slot(s, 8);
	uint64_t bm[2] = {1, 1}, g = BASE;
	struct collect c;
	static struct model got;
	collect_init(&c, &got, -1);
	/* NULL */
	CHECK_EQ(gm_space_dirty_import(NULL, slot, BASE, bm, 1), -EINVAL);
	CHECK_EQ(gm_space_dirty_import(s, NULL, BASE, bm, 1), -EINVAL);
	CHECK_EQ(gm_space_dirty_import(s, slot, BASE, NULL, 1), -EINVAL);
	CHECK_EQ(gm_space_dirty_import_gfns(s, slot, NULL, 1), -EINVAL);
	CHECK_EQ(gm_space_dirty_import_gfns(NULL, slot, &g, 1), -EINVAL);
	CHECK_EQ(gm_space_dirty_restore(s, NULL, BASE, 1), -EINVAL);
	CHECK_EQ(gm_space_dirty_harvest(s, slot, 0, 1, NULL, NULL), -EINVAL);
	CHECK_EQ(gm_space_dirty_harvest(NULL, slot, 0, 1, collect_fn, &c), -EINVAL);
	/* not logging */
	CHECK_EQ(gm_space_dirty_import(s, plain, 0, bm, 1), -ENOENT);
	CHECK_EQ(gm_space_dirty_import_gfns(s, plain, &g, 0), -ENOENT);
	CHECK_EQ(gm_space_dirty_restore(s, plain, 0, 1), -ENOENT);
	CHECK_EQ(gm_space_dirty_harvest(s, plain, 0, 15, collect_fn, &c), -ENOENT);
	/* reversed, outside, UINT64_MAX */
	CHECK_EQ(gm_space_dirty_harvest(s, slot, BASE + 5, BASE + 4, collect_fn, &c), -EINVAL);
	CHECK_EQ(gm_space_dirty_harvest(s, slot, 0, BASE - 1, collect_fn, &c), 0);
	CHECK_EQ(gm_space_dirty_harvest(s, slot, BASE + NP, UINT64_MAX, collect_fn, &c), 0);
	CHECK_EQ(gm_space_dirty_import(s, slot, BASE - 1, bm, 2), -EINVAL);
	CHECK_EQ(gm_space_dirty_import(s, slot, BASE + NP - 1, bm, 2), -EINVAL);
	CHECK_EQ(gm_space_dirty_import(s, slot, UINT64_MAX, bm, 1), -EINVAL);
	CHECK_EQ(gm_space_dirty_import(s, slot, BASE, bm, UINT64_MAX), -EINVAL);
	CHECK_EQ(gm_space_dirty_restore(s, slot, BASE + 1, UINT64_MAX), -EINVAL);
	CHECK_EQ(gm_space_dirty_restore(s, slot, UINT64_MAX, 1), -EINVAL);
	g = BASE + NP;
	CHECK_EQ(gm_space_dirty_import_gfns(s, slot, &g, 1), -EINVAL);
	g = UINT64_MAX;
	CHECK_EQ(gm_space_dirty_import_gfns(s, slot, &g, 1), -EINVAL);
	/* nothing was marked by any of those; zero-length calls do nothing */
	CHECK_EQ(gm_space_dirty_import(s, slot, BASE, bm, 0), 0);
	CHECK_EQ(gm_space_dirty_restore(s, slot, BASE, 0), 0);
	CHECK_EQ(gm_space_dirty_harvest(s, slot, 0, UINT64_MAX, collect_fn, &c), 0);
	/* the last frame and the first */
	CHECK_EQ(gm_space_dirty_restore(s, slot, BASE + NP - 1, 1), 0);
	CHECK_EQ(gm_space_dirty_import(s, slot, BASE, bm, 1), 0);
	CHECK_EQ(gm_space_dirty_harvest(s, slot, 0, UINT64_MAX, collect_fn, &c), 2);
	CHECK_EQ(c.runs, 2);
	CHECK_VALID(gm_space_validate(s, &reason), reason);
	gm_space_destroy(s);
}

static int fail_always(void *ctx, uint64_t first, uint64_t count)
{
	(void)first;
	(void)count;
	++*(int *)ctx;
	return -EAGAIN;
}

GM_TEST(failed_send_loses_nothing)
{
	reg();
	const struct gm_space_slot *slot;
	struct gm_space *s = space_with_slot(NULL, &slot);
	CHECK_EQ(gm_space_dirty_restore(s, slot, BASE + 10, 90000), 0);
	int calls = 0;
	CHECK_EQ(gm_space_dirty_harvest(s, slot, 0, UINT64_MAX, fail_always, &calls), -EAGAIN);
	CHECK_EQ(calls, 1);
	uint64_t n = 0;
	CHECK_EQ(gm_space_dirty_harvest(s, slot, 0, UINT64_MAX, count_fn, &n), 90000);
	gm_space_destroy(s);
}

GM_TEST(out_of_memory_leaves_log_unchanged)
{
	struct gm_rng *r = gm_test_rng();
	reg();
	struct gm_alloc_failing fail;
	gm_alloc_failing_init(&fail, NULL);
	const struct gm_space_slot *slot;
	struct gm_space *s = space_with_slot(&fail.allocator, &slot);
	struct model *m = calloc(1, sizeof(*m)), *before = calloc(1, sizeof(*m));
	uint64_t injected = 0, steps = gm_test_iters(400);
	for (uint64_t i = 0; i < steps; i++) {
		*before = *m;
		gm_alloc_failing_arm_nth(&fail, 1, true);
		long rc = random_op(r, s, slot, m);
		gm_alloc_failing_disarm(&fail);
		if (rc == -ENOMEM) {
			injected++;
			CHECK(memcmp(m, before, sizeof(*m)) == 0);
		} else {
			CHECK_EQ(rc, 0);
		}
		CHECK_VALID(gm_space_validate(s, &reason), reason);
		if (gm_rng_chance(r, 1, 8)) {
			check_and_drain(s, slot, m); /* chunks stay: the next op may not allocate */
			gm_space_batch_begin(s);           /* a fresh slot object: empty, no chunks */
			CHECK_EQ(gm_space_batch_set_flags(s, 7, 0), 0);
			CHECK_EQ(gm_space_batch_commit(s), 0);
			CHECK_EQ(gm_space_slot_add(s, 9, 1, 1, 0x1000, 0), 0);
			CHECK_EQ(gm_space_slot_remove(s, 9), 0);
			gm_space_batch_begin(s);
			CHECK_EQ(gm_space_batch_set_flags(s, 7, GM_SPACE_SLOT_DIRTY_LOG), 0);
			CHECK_EQ(gm_space_batch_commit(s), 0);
			slot = gm_space_id_to_slot(s, 7);
		}
	}
	check_and_drain(s, slot, m);
	CHECK(injected > 0);
	free(m);
	free(before);
	gm_space_destroy(s);
}

GM_TEST(slot_iterator_lists_in_gfn_order)
{
	struct gm_rng *r = gm_test_rng();
	reg();
	struct gm_space *s;
	CHECK_EQ(gm_space_create(&s, NULL, 0, NULL), 0);
	enum { N = 300 };
	static uint64_t base[N], np[N];
	static bool present[N];
	for (uint64_t step = 0; step < gm_test_iters(400); step++) {
		uint32_t id = (uint32_t)gm_rng_below(r, N);
		if (present[id]) {
			CHECK_EQ(gm_space_slot_remove(s, id), 0);
			present[id] = false;
		} else {
			base[id] = (uint64_t)id * 1000 + gm_rng_below(r, 500);
			np[id] = 1 + gm_rng_below(r, 499);
			CHECK_EQ(gm_space_slot_add(s, id, base[id], np[id], 0x10000000ull * (id + 1), 0), 0);
			present[id] = true;
		}
		uint64_t a = gm_rng_below(r, N * 1000), b = a + gm_rng_below(r, 30000);
		if (gm_rng_chance(r, 1, 10))
			a = 0, b = UINT64_MAX;
		struct gm_space_slot_iter it;
		const struct gm_space_slot *sl;
		CHECK_EQ(gm_space_slot_iter_init(&it, s, a, b, 0), 0);
		uint32_t next_id = 0;
		gm_rcu_read_lock();
		while (gm_space_slot_iter_next(&it, &sl) == 0) {
			while (next_id < N && !(present[next_id] && base[next_id] + np[next_id] - 1 >= a &&
						base[next_id] <= b))
				next_id++;
			CHECK_EQ(sl->id, next_id); /* ids ascend with gfns here */
			CHECK_EQ(sl->base_gfn, base[next_id]);
			next_id++;
		}
		gm_rcu_read_unlock();
		while (next_id < N && !(present[next_id] && base[next_id] + np[next_id] - 1 >= a &&
					base[next_id] <= b))
			next_id++;
		CHECK_EQ(next_id, N);
		CHECK_EQ(gm_space_slot_iter_next(&it, &sl), -ENOENT);
		/* backwards: the same slots, the highest first */
		CHECK_EQ(gm_space_slot_iter_init(&it, s, a, b, GM_ITER_REVERSE), 0);
		uint32_t prev_id = N;
		gm_rcu_read_lock();
		while (gm_space_slot_iter_next(&it, &sl) == 0) {
			while (prev_id > 0 && !(present[prev_id - 1] &&
						base[prev_id - 1] + np[prev_id - 1] - 1 >= a &&
						base[prev_id - 1] <= b))
				prev_id--;
			CHECK(prev_id > 0);
			CHECK_EQ(sl->id, prev_id - 1);
			prev_id--;
		}
		gm_rcu_read_unlock();
		while (prev_id > 0 && !(present[prev_id - 1] && base[prev_id - 1] + np[prev_id - 1] - 1 >= a &&
					base[prev_id - 1] <= b))
			prev_id--;
		CHECK_EQ(prev_id, 0);
	}
	struct gm_space_slot_iter it;
	const struct gm_space_slot *sl;
	CHECK_EQ(gm_space_slot_iter_init(&it, s, 5, 4, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_iter_next(&it, &sl), -ENOENT);
	CHECK_EQ(gm_space_slot_iter_init(NULL, s, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_iter_init(&it, NULL, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_iter_next(NULL, &sl), -EINVAL);
	CHECK_EQ(gm_space_slot_iter_init(&it, s, UINT64_MAX, UINT64_MAX, 0), 0);
	CHECK_EQ(gm_space_slot_iter_next(&it, NULL), -EINVAL);
	CHECK_EQ(gm_space_slot_iter_next(&it, &sl), -ENOENT);
	gm_space_destroy(s);
}

GM_TEST_MAIN()
