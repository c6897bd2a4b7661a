/*
 * tests/api_contract_test.c — the bad-input contract of docs/api.md, call
 * by call, through the public headers only: every public function fed NULL,
 * reversed ranges, 0, UINT64_MAX, the whole space and absurd sizes and
 * flags returns what its header says (-EINVAL, false, NULL or 0) and leaves
 * the structure as it was (validate passes, contents unchanged). Run under
 * ASan+UBSan by make check: a crash is a failure.
 */
#include "harness.h"

#include <gmtrack/gmtrack.h>

#include <string.h>

static const char *reason;
static const unsigned BAD_FLAGS = 0x80000000u;

/* ---- alloc ------------------------------------------------------------- */
GM_TEST(alloc_contract)
{
	CHECK(gm_alloc_default() != NULL);
	void *p = gm_alloc_mem(NULL, 0, 0); /* size 0 asks for 1 byte */
	CHECK(p != NULL);
	gm_alloc_release(NULL, p, 0);
	gm_alloc_release(NULL, NULL, 10); /* NULL pointer: nothing */
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	CHECK(gm_alloc_mem(&c.allocator, SIZE_MAX, 64) == NULL); /* absurd sizes */
	CHECK(gm_alloc_mem(&c.allocator, SIZE_MAX - 8, 4096) == NULL);
	CHECK(gm_alloc_mem(NULL, 64, 48) == NULL); /* alignment not a power of two */
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	struct gm_alloc_failing f;
	gm_alloc_failing_init(&f, NULL);
	gm_alloc_failing_arm_random(&f, 2.0, 1); /* p > 1: always */
	CHECK(gm_alloc_mem(&f.allocator, 8, 8) == NULL);
	gm_alloc_failing_disarm(&f);
	p = gm_alloc_mem(&f.allocator, 8, 8);
	CHECK(p != NULL);
	gm_alloc_release(&f.allocator, p, 8);
}

/* ---- rangemap ---------------------------------------------------------- */
static int keep_piece(void *ctx, const struct gm_range *piece, bool present, uint64_t *value)
{
	(void)ctx, (void)piece, (void)present, (void)value;
	return GM_RANGEMAP_KEEP;
}

GM_TEST(rangemap_contract)
{
	struct gm_rangemap *m = NULL;
	struct gm_range r;
	struct gm_rangemap_iter it;
	uint64_t v = 0, f = 0;
	CHECK_EQ(gm_rangemap_create(NULL, 0, NULL), -EINVAL);
	CHECK_EQ(gm_rangemap_create(&m, BAD_FLAGS, NULL), -EINVAL);
	CHECK(m == NULL);
	gm_rangemap_destroy(NULL);
	CHECK_EQ(gm_rangemap_store(NULL, 0, 1, 1), -EINVAL);
	CHECK_EQ(gm_rangemap_insert(NULL, 0, 1, 1), -EINVAL);
	CHECK_EQ(gm_rangemap_remove(NULL, 0, 1), -EINVAL);
	CHECK_EQ(gm_rangemap_load(NULL, 0, &v, NULL, NULL), -EINVAL);
	CHECK(!gm_rangemap_contains(NULL, 0));
	CHECK_EQ(gm_rangemap_contains_many(NULL, 3, 0), 0);
	CHECK_EQ(gm_rangemap_next(NULL, 0, &r), -EINVAL);
	CHECK_EQ(gm_rangemap_prev(NULL, 0, &r), -EINVAL);
	CHECK_EQ(gm_rangemap_iter_init(NULL, NULL, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_rangemap_iter_init(&it, NULL, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_rangemap_iter_next(&it, &r), -ENOENT); /* refused: empty */
	CHECK_EQ(gm_rangemap_iter_next(NULL, &r), -EINVAL);
	CHECK_EQ(gm_rangemap_find_gap(NULL, 1, 1, 0, 9, &f), -EINVAL);
	CHECK_EQ(gm_rangemap_update(NULL, 0, 1, keep_piece, NULL, 0), -EINVAL);
	CHECK_EQ(gm_rangemap_count(NULL), 0);
	struct gm_rangemap_stats st;
	CHECK_EQ(gm_rangemap_stats(NULL, &st), -EINVAL);
	CHECK_EQ(gm_rangemap_validate(NULL, &reason), -EINVAL);

	CHECK_EQ(gm_rangemap_create(&m, GM_RCU, NULL), 0);
	CHECK_EQ(gm_rangemap_store(m, 100, 199, 7), 0);
	CHECK_EQ(gm_rangemap_store(m, 5, 4, 1), -EINVAL);
	CHECK_EQ(gm_rangemap_insert(m, UINT64_MAX, 0, 1), -EINVAL);
	CHECK_EQ(gm_rangemap_remove(m, 1, 0), -EINVAL);
	CHECK_EQ(gm_rangemap_insert(m, 150, 150, 1), -EEXIST);
	CHECK_EQ(gm_rangemap_load(m, UINT64_MAX, NULL, NULL, NULL), -ENOENT);
	CHECK_EQ(gm_rangemap_next(m, 0, NULL), -EINVAL);
	CHECK_EQ(gm_rangemap_prev(m, 0, NULL), -EINVAL);
	const struct gm_rangemap *with_null[2] = {m, NULL};
	CHECK_EQ(gm_rangemap_contains_many(with_null, 2, 150), 0);
	CHECK_EQ(gm_rangemap_contains_many(with_null, 1, 150), 1);
	CHECK_EQ(gm_rangemap_iter_init(&it, m, 9, 8, 0), -EINVAL);
	CHECK_EQ(gm_rangemap_iter_next(&it, &r), -ENOENT);
	CHECK_EQ(gm_rangemap_iter_init(&it, m, 0, 1, BAD_FLAGS), -EINVAL);
	CHECK_EQ(gm_rangemap_iter_init(&it, m, 0, UINT64_MAX, GM_ITER_REVERSE), 0);
	CHECK_EQ(gm_rangemap_iter_next(&it, NULL), -EINVAL);
	CHECK_EQ(gm_rangemap_find_gap(m, 0, 1, 0, 9, &f), -EINVAL);
	CHECK_EQ(gm_rangemap_find_gap(m, 1, 3, 0, 9, &f), -EINVAL);
	CHECK_EQ(gm_rangemap_find_gap(m, 1, 1, 9, 0, &f), -EINVAL);
	CHECK_EQ(gm_rangemap_find_gap(m, 1, 1, 0, 9, NULL), -EINVAL);
	CHECK_EQ(gm_rangemap_find_gap(m, UINT64_MAX, 1, 0, UINT64_MAX, &f), -ENOSPC);
	CHECK_EQ(gm_rangemap_update(m, 0, 1, NULL, NULL, 0), -EINVAL);
	CHECK_EQ(gm_rangemap_update(m, 1, 0, keep_piece, NULL, 0), -EINVAL);
	CHECK_EQ(gm_rangemap_update(m, 0, 1, keep_piece, NULL, BAD_FLAGS), -EINVAL);
	CHECK_EQ(gm_rangemap_stats(m, NULL), -EINVAL);
	CHECK_EQ(gm_rangemap_validate(m, NULL), 0);
	/* nothing above changed the map */
	CHECK_EQ(gm_rangemap_count(m), 1);
	CHECK_EQ(gm_rangemap_load(m, 150, &v, NULL, NULL), 0);
	CHECK_EQ(v, 7);
	/* the whole space, and back */
	CHECK_EQ(gm_rangemap_store(m, 0, UINT64_MAX, 3), 0);
	CHECK_EQ(gm_rangemap_count(m), 1);
	CHECK_EQ(gm_rangemap_remove(m, 0, UINT64_MAX), 0);
	CHECK_EQ(gm_rangemap_count(m), 0);
	CHECK_VALID(gm_rangemap_validate(m, &reason), reason);
	gm_rangemap_destroy(m);
}

/* ---- pagemap ----------------------------------------------------------- */
static int count_entry(void *ctx, uint64_t key, void *value)
{
	(void)key, (void)value;
	++*(int *)ctx;
	return 0;
}

GM_TEST(pagemap_contract)
{
	struct gm_pagemap *m = NULL;
	struct gm_pagemap_entry e;
	struct gm_pagemap_iter it;
	void *old, *vals[2];
	uint64_t keys[2] = {0, UINT64_MAX};
	int x;
	CHECK_EQ(gm_pagemap_create(NULL, 0, NULL), -EINVAL);
	CHECK_EQ(gm_pagemap_create(&m, BAD_FLAGS, NULL), -EINVAL);
	CHECK(m == NULL);
	gm_pagemap_destroy(NULL);
	CHECK_EQ(gm_pagemap_insert(NULL, 0, &x), -EINVAL);
	CHECK_EQ(gm_pagemap_store(NULL, 0, &x, NULL), -EINVAL);
	CHECK(gm_pagemap_load(NULL, 0) == NULL);
	CHECK_EQ(gm_pagemap_load_many(NULL, keys, 2, vals), -EINVAL);
	CHECK_EQ(gm_pagemap_remove(NULL, 0, &old), -EINVAL);
	CHECK_EQ(gm_pagemap_next(NULL, 0, &e), -EINVAL);
	CHECK_EQ(gm_pagemap_prev(NULL, 0, &e), -EINVAL);
	CHECK_EQ(gm_pagemap_count(NULL), 0);
	CHECK_EQ(gm_pagemap_iter_init(NULL, NULL, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_pagemap_iter_init(&it, NULL, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_pagemap_iter_next(&it, &e), -ENOENT);
	CHECK_EQ(gm_pagemap_iter_next(NULL, &e), -EINVAL);
	CHECK_EQ(gm_pagemap_walk(NULL, 0, 1, count_entry, &x), -EINVAL);
	struct gm_pagemap_stats st;
	CHECK_EQ(gm_pagemap_stats(NULL, &st), -EINVAL);
	CHECK_EQ(gm_pagemap_validate(NULL, &reason), -EINVAL);

	CHECK_EQ(gm_pagemap_create(&m, GM_RCU, NULL), 0);
	CHECK_EQ(gm_pagemap_insert(m, 0, &x), 0);
	CHECK_EQ(gm_pagemap_insert(m, UINT64_MAX, &x), 0);
	CHECK_EQ(gm_pagemap_insert(m, 5, NULL), -EINVAL);
	CHECK_EQ(gm_pagemap_insert(m, 0, &x), -EEXIST);
	CHECK_EQ(gm_pagemap_store(m, 5, NULL, &old), -EINVAL);
	CHECK_EQ(gm_pagemap_remove(m, 5, NULL), -ENOENT);
	CHECK_EQ(gm_pagemap_load_many(m, NULL, 2, vals), -EINVAL);
	CHECK_EQ(gm_pagemap_load_many(m, keys, 2, NULL), -EINVAL);
	CHECK_EQ(gm_pagemap_load_many(m, NULL, 0, NULL), 0);
	CHECK_EQ(gm_pagemap_load_many(m, keys, SIZE_MAX, vals), -EINVAL);
	gm_rcu_register_thread();
	gm_rcu_read_lock();
	CHECK_EQ(gm_pagemap_load_many(m, keys, 2, vals), 2);
	CHECK_EQ(gm_pagemap_next(m, 0, NULL), -EINVAL);
	CHECK_EQ(gm_pagemap_next(m, 1, &e), 0);
	CHECK_EQ(e.key, UINT64_MAX);
	CHECK_EQ(gm_pagemap_prev(m, UINT64_MAX - 1, &e), 0);
	CHECK_EQ(e.key, 0);
	CHECK_EQ(gm_pagemap_iter_init(&it, m, 2, 1, 0), -EINVAL);
	CHECK_EQ(gm_pagemap_iter_init(&it, m, 0, 1, BAD_FLAGS), -EINVAL);
	CHECK_EQ(gm_pagemap_iter_init(&it, m, 0, UINT64_MAX, GM_ITER_REVERSE), 0);
	CHECK_EQ(gm_pagemap_iter_next(&it, NULL), -EINVAL);
	CHECK_EQ(gm_pagemap_iter_next(&it, &e), 0);
	CHECK_EQ(e.key, UINT64_MAX);
	gm_rcu_read_unlock();
	CHECK_EQ(gm_pagemap_walk(m, 0, UINT64_MAX, NULL, NULL), -EINVAL);
	CHECK_EQ(gm_pagemap_walk(m, 1, 0, count_entry, &x), -EINVAL);
	x = 0;
	CHECK_EQ(gm_pagemap_walk(m, 0, UINT64_MAX, count_entry, &x), 0);
	CHECK_EQ(x, 2);
	CHECK_EQ(gm_pagemap_stats(m, NULL), -EINVAL);
	CHECK_EQ(gm_pagemap_count(m), 2);
	CHECK_VALID(gm_pagemap_validate(m, &reason), reason);
	gm_pagemap_destroy(m);
	gm_rcu_unregister_thread();
}

/* ---- itree ------------------------------------------------------------- */
GM_TEST(itree_contract)
{
	struct gm_itree *t = NULL;
	struct gm_itree_iter it;
	struct gm_itree_entry e, many[2];
	void *items[2];
	int x;
	CHECK_EQ(gm_itree_create(NULL, 0, NULL), -EINVAL);
	CHECK_EQ(gm_itree_create(&t, BAD_FLAGS, NULL), -EINVAL);
	CHECK(t == NULL);
	gm_itree_destroy(NULL);
	CHECK_EQ(gm_itree_insert(NULL, 0, 1, &x), -EINVAL);
	CHECK_EQ(gm_itree_remove(NULL, 0, 1, &x), -EINVAL);
	CHECK_EQ(gm_itree_iter_init(NULL, NULL, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_itree_iter_init(&it, NULL, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_itree_iter_next(&it, &e), -ENOENT);
	CHECK_EQ(gm_itree_iter_next(NULL, &e), -EINVAL);
	CHECK_EQ(gm_itree_iter_fill(NULL, many, 2), -EINVAL);
	CHECK_EQ(gm_itree_fill(NULL, 0, 1, items, 2), -EINVAL);
	CHECK_EQ(gm_itree_count(NULL), 0);
	struct gm_itree_stats st;
	CHECK_EQ(gm_itree_stats(NULL, &st), -EINVAL);
	CHECK_EQ(gm_itree_validate(NULL, &reason), -EINVAL);

	CHECK_EQ(gm_itree_create(&t, GM_RCU, NULL), 0);
	CHECK_EQ(gm_itree_insert(t, 0, UINT64_MAX, &x), 0); /* the whole space */
	CHECK_EQ(gm_itree_insert(t, 0, UINT64_MAX, &x), -EEXIST);
	CHECK_EQ(gm_itree_insert(t, 2, 1, &x), -EINVAL);
	CHECK_EQ(gm_itree_remove(t, 2, 1, &x), -EINVAL);
	CHECK_EQ(gm_itree_remove(t, 0, 1, &x), -ENOENT);
	gm_rcu_register_thread();
	gm_rcu_read_lock();
	CHECK_EQ(gm_itree_iter_init(&it, t, 1, 0, 0), -EINVAL);
	CHECK_EQ(gm_itree_iter_next(&it, &e), -ENOENT);
	CHECK_EQ(gm_itree_iter_init(&it, t, 0, 1, BAD_FLAGS), -EINVAL);
	CHECK_EQ(gm_itree_iter_init(&it, t, UINT64_MAX, UINT64_MAX, 0), 0);
	CHECK_EQ(gm_itree_iter_next(&it, NULL), -EINVAL);
	CHECK_EQ(gm_itree_iter_fill(&it, NULL, 2), -EINVAL);
	CHECK_EQ(gm_itree_iter_fill(&it, many, 2), 1);
	CHECK_EQ(gm_itree_fill(t, 1, 0, items, 2), -EINVAL);
	CHECK_EQ(gm_itree_fill(t, 0, 1, NULL, 2), -EINVAL);
	CHECK_EQ(gm_itree_fill(t, 0, 1, NULL, 0), 1); /* count only */
	gm_rcu_read_unlock();
	CHECK_EQ(gm_itree_stats(t, NULL), -EINVAL);
	CHECK_EQ(gm_itree_count(t), 1);
	CHECK_VALID(gm_itree_validate(t, &reason), reason);
	gm_itree_destroy(t);
	gm_rcu_unregister_thread();
}

/* ---- rmap -------------------------------------------------------------- */
GM_TEST(rmap_contract)
{
	struct gm_rmap_cache *c = NULL;
	struct gm_rmap_head h = {0};
	struct gm_rmap_iter it;
	void *p;
	static uint64_t spte[2];
	CHECK_EQ(gm_rmap_cache_create(NULL, 0, NULL), -EINVAL);
	CHECK_EQ(gm_rmap_cache_create(&c, BAD_FLAGS, NULL), -EINVAL);
	CHECK(c == NULL);
	CHECK_EQ(gm_rmap_cache_topup(NULL, 1), -EINVAL);
	CHECK_EQ(gm_rmap_cache_bytes(NULL), 0);
	gm_rmap_cache_destroy(NULL);
	CHECK_EQ(gm_rmap_cache_create(&c, 0, NULL), 0);
	CHECK_EQ(gm_rmap_cache_topup(c, SIZE_MAX), -EINVAL); /* never met: at once */
	CHECK_EQ(gm_rmap_cache_topup(c, GM_RMAP_TOPUP_MAX + 1), -EINVAL);
	CHECK_EQ(gm_rmap_cache_topup(c, 0), 0);
	CHECK_EQ(gm_rmap_add(NULL, &spte[0], c), -EINVAL);
	CHECK_EQ(gm_rmap_add(&h, NULL, c), -EINVAL);
	CHECK_EQ(gm_rmap_add(&h, (char *)&spte[0] + 1, c), -EINVAL);
	CHECK_EQ(gm_rmap_add(&h, &spte[0], NULL), -EINVAL);
	CHECK_EQ(gm_rmap_remove(NULL, &spte[0], c), -EINVAL);
	CHECK_EQ(gm_rmap_remove(&h, &spte[0], NULL), -EINVAL);
	CHECK_EQ(gm_rmap_remove(&h, &spte[0], c), -ENOENT);
	CHECK(!gm_rmap_contains(NULL, &spte[0]));
	CHECK_EQ(gm_rmap_count(NULL), 0);
	CHECK_EQ(gm_rmap_iter_init(NULL, &h), -EINVAL);
	CHECK_EQ(gm_rmap_iter_init(&it, NULL), -EINVAL);
	CHECK_EQ(gm_rmap_iter_next(&it, &p), -ENOENT);
	CHECK_EQ(gm_rmap_iter_next(NULL, &p), -EINVAL);
	CHECK_EQ(gm_rmap_iter_remove(NULL, c), -EINVAL);
	gm_rmap_clear(NULL, c, NULL, NULL);
	gm_rmap_clear(&h, NULL, NULL, NULL);
	struct gm_rmap_stats st;
	CHECK_EQ(gm_rmap_stats(NULL, &st), -EINVAL);
	CHECK_EQ(gm_rmap_stats(&h, NULL), -EINVAL);
	CHECK_EQ(gm_rmap_validate(NULL, &reason), -EINVAL);

	CHECK_EQ(gm_rmap_cache_topup(c, GM_RMAP_ADD_BLOCKS), 0);
	CHECK_EQ(gm_rmap_add(&h, &spte[0], c), 0);
	CHECK_EQ(gm_rmap_cache_topup(c, GM_RMAP_ADD_BLOCKS), 0);
	CHECK_EQ(gm_rmap_add(&h, &spte[1], c), 0);
	CHECK_EQ(gm_rmap_iter_init(&it, &h), 0);
	CHECK_EQ(gm_rmap_iter_remove(&it, c), -EINVAL); /* nothing returned yet */
	CHECK_EQ(gm_rmap_iter_next(&it, NULL), -EINVAL);
	CHECK_EQ(gm_rmap_iter_next(&it, &p), 0);
	CHECK_EQ(gm_rmap_iter_remove(&it, NULL), -EINVAL);
	CHECK_EQ(gm_rmap_count(&h), 2);
	CHECK_VALID(gm_rmap_validate(&h, &reason), reason);
	gm_rmap_clear(&h, c, NULL, NULL);
	CHECK_EQ(gm_rmap_count(&h), 0);
	gm_rmap_cache_destroy(c);
}

/* ---- rangeset ---------------------------------------------------------- */
static int stop_at_first(void *ctx, uint64_t first, uint64_t last)
{
	(void)ctx, (void)first, (void)last;
	return 1;
}

GM_TEST(rangeset_contract)
{
	struct gm_rangeset *s = NULL, *t = NULL;
	struct gm_rangeset_iter it;
	struct gm_range r;
	uint64_t first;
	CHECK_EQ(gm_rangeset_create(NULL, NULL, 0, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_create(&s, NULL, BAD_FLAGS, NULL), -EINVAL);
	CHECK(s == NULL);
	gm_rangeset_destroy(NULL);
	CHECK_EQ(gm_rangeset_add(NULL, 0, 1), -EINVAL);
	CHECK_EQ(gm_rangeset_remove(NULL, 0, 1), -EINVAL);
	CHECK(!gm_rangeset_contains_range(NULL, 0, 1));
	CHECK(!gm_rangeset_overlaps_range(NULL, 0, 1));
	CHECK(!gm_rangeset_contains(NULL, 0));
	CHECK_EQ(gm_rangeset_first_containing(NULL, 2, 0), -EINVAL);
	CHECK_EQ(gm_rangeset_claim(NULL, 1, 1, 0, 9, &first), -EINVAL);
	CHECK_EQ(gm_rangeset_iter_init(NULL, NULL, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_rangeset_iter_init(&it, NULL, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_rangeset_iter_next(&it, &r), -ENOENT);
	CHECK_EQ(gm_rangeset_iter_next(NULL, &r), -EINVAL);
	CHECK_EQ(gm_rangeset_walk(NULL, 0, 1, stop_at_first, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_consume(NULL, 0, 1, stop_at_first, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_union(NULL, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_subtract(NULL, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_intersect(NULL, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_purge(NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_swap(NULL, NULL), -EINVAL);
	CHECK(gm_rangeset_is_empty(NULL));
	CHECK_EQ(gm_rangeset_count(NULL), 0);
	CHECK(strcmp(gm_rangeset_name(NULL), "") == 0);
	struct gm_rangeset_stats st;
	CHECK_EQ(gm_rangeset_stats(NULL, &st), -EINVAL);
	CHECK_EQ(gm_rangeset_dump(NULL, stdout), -EINVAL);
	CHECK_EQ(gm_rangeset_validate(NULL, &reason), -EINVAL);

	struct gm_rangeset_config cfg = {"limited", 2};
	CHECK_EQ(gm_rangeset_create(&s, &cfg, 0, NULL), 0);
	CHECK_EQ(gm_rangeset_create(&t, NULL, GM_RCU, NULL), 0);
	CHECK_EQ(gm_rangeset_add(s, 10, 19), 0);
	CHECK_EQ(gm_rangeset_add(s, 1, 0), -EINVAL);
	CHECK_EQ(gm_rangeset_remove(s, 1, 0), -EINVAL);
	CHECK(!gm_rangeset_contains_range(s, 19, 10));
	CHECK(!gm_rangeset_overlaps_range(s, 19, 10));
	CHECK_EQ(gm_rangeset_add(s, 30, 30), 0);
	CHECK_EQ(gm_rangeset_add(s, 50, 50), -ENOSPC); /* the limit */
	CHECK_EQ(gm_rangeset_remove(s, 15, 15), -ENOSPC);
	CHECK_EQ(gm_rangeset_claim(s, 1, 1, 0, 9, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_claim(s, 0, 1, 0, 9, &first), -EINVAL);
	CHECK_EQ(gm_rangeset_claim(s, 1, 3, 0, 9, &first), -EINVAL);
	CHECK_EQ(gm_rangeset_claim(s, 1, 1, 9, 0, &first), -EINVAL);
	CHECK_EQ(gm_rangeset_claim(s, UINT64_MAX, 1, 0, UINT64_MAX, &first), -ENOSPC);
	const struct gm_rangeset *with_null[2] = {s, NULL};
	CHECK_EQ(gm_rangeset_first_containing(with_null, 2, 10), -EINVAL);
	CHECK_EQ(gm_rangeset_first_containing(with_null, 1, 10), 0);
	CHECK_EQ(gm_rangeset_first_containing(with_null, 1, 11111), -ENOENT);
	CHECK_EQ(gm_rangeset_iter_init(&it, s, 1, 0, 0), -EINVAL);
	CHECK_EQ(gm_rangeset_iter_next(&it, &r), -ENOENT);
	CHECK_EQ(gm_rangeset_iter_init(&it, s, 0, 1, BAD_FLAGS), -EINVAL);
	CHECK_EQ(gm_rangeset_iter_next(&it, &r), -ENOENT);
	CHECK_EQ(gm_rangeset_iter_init(&it, s, 0, UINT64_MAX, GM_ITER_REVERSE), 0);
	CHECK_EQ(gm_rangeset_iter_next(&it, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_iter_next(&it, &r), 0);
	CHECK_EQ(r.first, 30);
	CHECK_EQ(gm_rangeset_walk(s, 0, 1, NULL, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_walk(s, 1, 0, stop_at_first, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_walk(s, 0, UINT64_MAX, stop_at_first, NULL), 1);
	CHECK_EQ(gm_rangeset_consume(s, 0, 1, NULL, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_consume(s, 1, 0, stop_at_first, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_union(s, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_union(s, t), -EINVAL); /* RCU modes differ */
	CHECK_EQ(gm_rangeset_swap(s, t), -EINVAL);
	CHECK_EQ(gm_rangeset_dump(s, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_stats(s, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_stats(s, &st), 0);
	CHECK_EQ(st.ranges, 2);
	CHECK_EQ(gm_rangeset_count(s), 2);
	CHECK_VALID(gm_rangeset_validate(s, &reason), reason);

	/* groups */
	struct gm_rangeset_group *g = NULL;
	CHECK_EQ(gm_rangeset_group_create(NULL, 0, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_group_create(&g, BAD_FLAGS, NULL), -EINVAL);
	CHECK(g == NULL);
	gm_rangeset_group_destroy(NULL);
	CHECK_EQ(gm_rangeset_group_join(NULL, s), -EINVAL);
	CHECK_EQ(gm_rangeset_group_leave(NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_group_select(NULL, 0), -EINVAL);
	CHECK(gm_rangeset_group_member(NULL, 0) == NULL);
	CHECK(!gm_rangeset_group_indexed(NULL));
	CHECK_EQ(gm_rangeset_group_bytes(NULL), 0);
	CHECK_EQ(gm_rangeset_group_validate(NULL, &reason), -EINVAL);
	CHECK_EQ(gm_rangeset_group_create(&g, 0, NULL), 0);
	CHECK_EQ(gm_rangeset_group_join(g, NULL), -EINVAL);
	CHECK_EQ(gm_rangeset_group_join(g, t), -EINVAL); /* RCU modes differ */
	CHECK_EQ(gm_rangeset_group_leave(s), -ENOENT);
	CHECK_EQ(gm_rangeset_group_join(g, s), 0);
	CHECK_EQ(gm_rangeset_group_join(g, s), -EEXIST);
	CHECK(gm_rangeset_group_member(g, GM_RANGESET_GROUP_MAX) == NULL);
	CHECK(gm_rangeset_group_member(g, UINT32_MAX) == NULL);
	CHECK_EQ(gm_rangeset_group_select(g, 15), 0);
	CHECK_EQ(gm_rangeset_group_select(g, UINT64_MAX), -ENOENT);
	CHECK_VALID(gm_rangeset_group_validate(g, &reason), reason);
	gm_rangeset_group_destroy(g);
	gm_rangeset_destroy(s);
	gm_rcu_register_thread();
	gm_rangeset_destroy(t);
	gm_rcu_unregister_thread();
}

/* ---- space ------------------------------------------------------------- */
static void io_nop(void *ctx, uint64_t addr, void *data, unsigned size, bool is_write)
{
	(void)ctx, (void)addr, (void)data, (void)size, (void)is_write;
}

static int dirty_nop(void *ctx, uint64_t first_gfn, uint64_t count)
{
	(void)ctx, (void)first_gfn, (void)count;
	return 0;
}

GM_TEST(space_contract)
{
	struct gm_space *s = NULL;
	struct gm_space_cache cache;
	const struct gm_space_slot *slot;
	struct gm_space_hva_hit hits[2];
	struct gm_space_io io;
	uint64_t hva;
	gm_space_cache_init(NULL);
	gm_space_cache_init(&cache);
	CHECK_EQ(gm_space_create(NULL, NULL, 0, NULL), -EINVAL);
	CHECK_EQ(gm_space_create(&s, NULL, BAD_FLAGS, NULL), -EINVAL);
	struct gm_space_config cfg = {.max_slots = UINT32_MAX};
	CHECK_EQ(gm_space_create(&s, &cfg, 0, NULL), -EINVAL);
	cfg = (struct gm_space_config){.host_page_shift = 40};
	CHECK_EQ(gm_space_create(&s, &cfg, 0, NULL), -EINVAL);
	cfg = (struct gm_space_config){.host_page_shift = 11};
	CHECK_EQ(gm_space_create(&s, &cfg, 0, NULL), -EINVAL);
	CHECK(s == NULL);
	gm_space_destroy(NULL);
	gm_space_batch_begin(NULL);
	gm_space_batch_abort(NULL);
	CHECK_EQ(gm_space_batch_add(NULL, 0, 0, 1, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_batch_remove(NULL, 0), -EINVAL);
	CHECK_EQ(gm_space_batch_move(NULL, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_batch_resize(NULL, 0, 1), -EINVAL);
	CHECK_EQ(gm_space_batch_set_flags(NULL, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_batch_commit(NULL), -EINVAL);
	CHECK_EQ(gm_space_slot_add(NULL, 0, 0, 1, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_remove(NULL, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_move(NULL, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_resize(NULL, 0, 1), -EINVAL);
	CHECK_EQ(gm_space_slot_set_flags(NULL, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_gfn_to_slot(NULL, &cache, 0, &slot), -EINVAL);
	CHECK_EQ(gm_space_gfn_to_hva(NULL, &cache, 0, &hva), -EINVAL);
	CHECK_EQ(gm_space_gfn_to_hva_slow(NULL, &cache, 0, &hva), -EINVAL);
	CHECK(gm_space_id_to_slot(NULL, 0) == NULL);
	CHECK_EQ(gm_space_hva_fill(NULL, 0, 1, hits, 2), -EINVAL);
	CHECK_EQ(gm_space_generation(NULL), 0);
	CHECK_EQ(gm_space_slot_count(NULL), 0);
	CHECK_EQ(gm_space_attr_set(NULL, 0, 1, 1), -EINVAL);
	CHECK_EQ(gm_space_attr_get(NULL, 0), 0);
	CHECK(!gm_space_attr_all(NULL, 0, 1, 0));
	CHECK_EQ(gm_space_protect(NULL, 0, 1), -EINVAL);
	CHECK_EQ(gm_space_unprotect(NULL, 0, 1), -EINVAL);
	CHECK_EQ(gm_space_protect_count(NULL, 0), 0);
	CHECK_EQ(gm_space_io_add(NULL, GM_SPACE_PIO, 0, 1, io_nop, NULL), -EINVAL);
	CHECK_EQ(gm_space_io_remove(NULL, GM_SPACE_PIO, 0), -EINVAL);
	CHECK_EQ(gm_space_io_find(NULL, GM_SPACE_PIO, 0, &io), -EINVAL);
	CHECK_EQ(gm_space_dirty_mark(NULL, NULL, 0), -EINVAL);
	CHECK_EQ(gm_space_dirty_harvest(NULL, NULL, 0, UINT64_MAX, dirty_nop, NULL), -EINVAL);
	CHECK(gm_space_rmap_head(NULL, NULL, 0, true) == NULL);
	struct gm_space_stats st;
	CHECK_EQ(gm_space_stats(NULL, &st), -EINVAL);
	CHECK_EQ(gm_space_validate(NULL, &reason), -EINVAL);

	gm_rcu_register_thread();
	CHECK_EQ(gm_space_create(&s, NULL, GM_RCU, NULL), 0);
	CHECK_EQ(gm_space_slot_add(s, 1, 0, 16, 0x10000, GM_SPACE_SLOT_DIRTY_LOG), 0);
	uint64_t gen = gm_space_generation(s);
	/* slots KVM would refuse */
	CHECK_EQ(gm_space_slot_add(s, 2, 100, 0, 0, 0), -EINVAL);                 /* empty */
	CHECK_EQ(gm_space_slot_add(s, 2, UINT64_MAX, 1, 0, 0), -EINVAL);          /* gpa wraps */
	CHECK_EQ(gm_space_slot_add(s, 2, GM_SPACE_GFN_LIMIT, 1, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_add(s, 2, 100, UINT64_MAX, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_add(s, 2, 100, 1, 0x10001, 0), -EINVAL);           /* hva misaligned */
	CHECK_EQ(gm_space_slot_add(s, 2, 100, 2, UINT64_MAX - 4095, 0), -EINVAL); /* hva wraps */
	CHECK_EQ(gm_space_slot_add(s, 2, 100, 1, 0, BAD_FLAGS), -EINVAL);
	CHECK_EQ(gm_space_slot_add(s, 2, 8, 1, 0, 0), -EEXIST);                    /* overlap */
	CHECK_EQ(gm_space_slot_move(s, 1, GM_SPACE_GFN_LIMIT - 8), -EINVAL);
	CHECK_EQ(gm_space_slot_resize(s, 1, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_resize(s, 1, UINT64_MAX), -EINVAL);
	CHECK_EQ(gm_space_slot_set_flags(s, 1, BAD_FLAGS), -EINVAL);
	CHECK_EQ(gm_space_slot_set_flags(s, 9, 0), -ENOENT);
	CHECK_EQ(gm_space_slot_remove(s, UINT32_MAX), -ENOENT);
	CHECK_EQ(gm_space_generation(s), gen); /* nothing was published */
	gm_space_batch_begin(s);
	CHECK_EQ(gm_space_batch_add(s, 3, 1000, 1, 0, 0), 0);
	gm_space_batch_abort(s);
	CHECK_EQ(gm_space_batch_commit(s), 0); /* aborted: nothing to commit */
	CHECK_EQ(gm_space_slot_count(s), 1);
	gm_rcu_read_lock();
	CHECK_EQ(gm_space_gfn_to_slot(s, &cache, 0, NULL), -EINVAL);
	CHECK_EQ(gm_space_gfn_to_hva(s, &cache, 0, NULL), -EINVAL);
	CHECK_EQ(gm_space_gfn_to_hva(s, &cache, UINT64_MAX, &hva), -ENOENT);
	CHECK_EQ(gm_space_hva_fill(s, 1, 0, hits, 2), -EINVAL);
	CHECK_EQ(gm_space_hva_fill(s, 0, UINT64_MAX, NULL, 2), -EINVAL);
	CHECK_EQ(gm_space_hva_fill(s, 0, UINT64_MAX, NULL, 0), 1);
	CHECK_EQ(gm_space_io_find(s, GM_SPACE_PIO, 0, NULL), -EINVAL);
	CHECK_EQ(gm_space_io_find(s, (enum gm_space_io_kind)7, 0, &io), -EINVAL);
	slot = gm_space_id_to_slot(s, 1);
	CHECK(slot != NULL);
	CHECK(gm_space_id_to_slot(s, UINT32_MAX) == NULL);
	CHECK_EQ(gm_space_dirty_mark(s, NULL, 0), -EINVAL);
	CHECK_EQ(gm_space_dirty_mark(s, slot, 16), -ENOENT);
	CHECK_EQ(gm_space_dirty_mark(s, slot, UINT64_MAX), -ENOENT);
	CHECK_EQ(gm_space_dirty_harvest(s, NULL, 0, UINT64_MAX, dirty_nop, NULL), -EINVAL);
	CHECK_EQ(gm_space_dirty_harvest(s, slot, 0, UINT64_MAX, NULL, NULL), -EINVAL);
	CHECK(gm_space_rmap_head(s, NULL, 0, true) == NULL);
	CHECK(gm_space_rmap_head(s, slot, 16, true) == NULL);
	gm_rcu_read_unlock();
	/* the bulk dirty calls and the slot iterator */
	uint64_t bits[2] = {~0ull, ~0ull}, gfns[2] = {3, UINT64_MAX};
	CHECK_EQ(gm_space_dirty_import(NULL, slot, 0, bits, 16), -EINVAL);
	CHECK_EQ(gm_space_dirty_import(s, NULL, 0, bits, 16), -EINVAL);
	CHECK_EQ(gm_space_dirty_import(s, slot, 0, NULL, 16), -EINVAL);
	CHECK_EQ(gm_space_dirty_import(s, slot, 0, bits, 17), -EINVAL);          /* past the slot */
	CHECK_EQ(gm_space_dirty_import(s, slot, UINT64_MAX, bits, 2), -EINVAL);
	CHECK_EQ(gm_space_dirty_import(s, slot, 1, bits, UINT64_MAX), -EINVAL);
	CHECK_EQ(gm_space_dirty_import_gfns(s, slot, NULL, 1), -EINVAL);
	CHECK_EQ(gm_space_dirty_import_gfns(s, slot, gfns, 2), -EINVAL);        /* all or nothing */
	CHECK_EQ(gm_space_dirty_import_gfns(NULL, slot, gfns, 1), -EINVAL);
	CHECK_EQ(gm_space_dirty_restore(s, slot, 0, UINT64_MAX), -EINVAL);
	CHECK_EQ(gm_space_dirty_restore(s, slot, UINT64_MAX, 1), -EINVAL);
	CHECK_EQ(gm_space_dirty_restore(NULL, slot, 0, 1), -EINVAL);
	CHECK_EQ(gm_space_dirty_harvest(s, slot, 0, UINT64_MAX, dirty_nop, NULL), 0); /* none marked */
	struct gm_space_slot_iter si;
	const struct gm_space_slot *got;
	CHECK_EQ(gm_space_slot_iter_init(NULL, s, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_iter_init(&si, NULL, 0, 1, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_iter_next(&si, &got), -ENOENT);
	CHECK_EQ(gm_space_slot_iter_init(&si, s, 1, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_iter_init(&si, s, 0, 1, BAD_FLAGS), -EINVAL);
	CHECK_EQ(gm_space_slot_iter_init(&si, s, 0, UINT64_MAX, GM_ITER_REVERSE), 0);
	CHECK_EQ(gm_space_slot_iter_next(&si, NULL), -EINVAL);
	CHECK_EQ(gm_space_slot_iter_next(NULL, &got), -EINVAL);
	CHECK_EQ(gm_space_slot_iter_next(&si, &got), 0);
	CHECK(got == slot);
	CHECK_EQ(gm_space_slot_iter_next(&si, &got), -ENOENT);
	gm_rcu_call(NULL, NULL); /* void: a no-op */
	CHECK_EQ(gm_space_attr_set(s, 1, 0, 1), -EINVAL);
	CHECK(!gm_space_attr_all(s, 1, 0, 0));
	CHECK_EQ(gm_space_protect(s, 1, 0), -EINVAL);
	CHECK_EQ(gm_space_unprotect(s, 0, 0), -EINVAL); /* not protected */
	CHECK_EQ(gm_space_io_add(s, GM_SPACE_PIO, 1, 0, io_nop, NULL), -EINVAL);
	CHECK_EQ(gm_space_io_add(s, GM_SPACE_PIO, 0, 1, NULL, NULL), -EINVAL);
	CHECK_EQ(gm_space_io_add(s, (enum gm_space_io_kind)7, 0, 1, io_nop, NULL), -EINVAL);
	CHECK_EQ(gm_space_io_add(s, GM_SPACE_PIO, 0x3f8, 0x3ff, io_nop, NULL), 0);
	CHECK_EQ(gm_space_io_add(s, GM_SPACE_PIO, 0x3f0, 0x3f8, io_nop, NULL), -EEXIST);
	CHECK_EQ(gm_space_io_remove(s, GM_SPACE_PIO, 0x3f9), -ENOENT);
	CHECK_EQ(gm_space_io_remove(s, (enum gm_space_io_kind)7, 0x3f8), -EINVAL);
	CHECK_EQ(gm_space_stats(s, NULL), -EINVAL);
	CHECK_EQ(gm_space_stats(s, &st), 0);
	CHECK_EQ(st.slots, 1);
	CHECK_VALID(gm_space_validate(s, &reason), reason);
	gm_space_destroy(s);

	/* a 64 KiB-page host: slots aligned to 16 frames */
	cfg = (struct gm_space_config){.host_page_shift = 16};
	CHECK_EQ(gm_space_create(&s, &cfg, 0, NULL), 0);
	CHECK_EQ(gm_space_slot_add(s, 1, 16, 16, 0x10000, 0), 0);
	CHECK_EQ(gm_space_slot_add(s, 2, 40, 16, 0x20000, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_add(s, 2, 48, 8, 0x20000, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_add(s, 2, 48, 16, 0x21000, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_move(s, 1, 8), -EINVAL);
	CHECK_EQ(gm_space_slot_add(s, 2, 48, 16, 0x20000, 0), 0);
	CHECK_VALID(gm_space_validate(s, &reason), reason);
	gm_space_destroy(s);
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
