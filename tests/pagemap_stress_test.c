/*
 * tests/pagemap_stress_test.c — RCU readers (load, load_many, next, prev,
 * iteration) against one writer that inserts, stores and erases keys next to
 * a set of keys that stay present throughout. Readers check that every value
 * belongs to its key, that stable keys are never missing, and that walks are
 * ascending. Under ASan a freed node read by a reader would show; under TSan
 * a node freed before the grace period, or a torn publication, would.
 */
#include "harness.h"
#include "pagemap_kv.h"
#include "internal.h"

#include <gmtrack/pagemap.h>

#include <pthread.h>

#define NSTABLE 2048
#define NVOLATILE 8192

static struct gm_pagemap *map;
extern uint64_t gm_pagemap_many_loop_max_; /* src/pagemap.c; 0: always batch */
static uint64_t stable[NSTABLE];      /* sorted, present throughout */
static uint64_t volatile_keys[NVOLATILE];
static atomic_bool stop;
static _Atomic uint64_t reader_errors, reader_ops;

/* Values carry their key: (key << 8) | generation << 1 | 1 (never NULL). */
static inline void *value_for(uint64_t key, unsigned gen)
{
	return (void *)(uintptr_t)(key << 8 | (gen & 0x7f) << 1 | 1);
}
static inline bool value_matches(uint64_t key, void *v)
{
	return v && ((uintptr_t)v & 1) && ((uintptr_t)v >> 8) == key;
}

static void *reader(void *arg)
{
	uint64_t seed = (uintptr_t)arg;
	struct gm_rng r;
	gm_rng_init(&r, seed);
	gm_rcu_register_thread();
	uint64_t errors = 0, ops = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		gm_rcu_read_lock();
		switch (gm_rng_below(&r, 5)) {
		case 0: { /* stable keys are always found, with their value */
			uint64_t k = stable[gm_rng_below(&r, NSTABLE)];
			errors += !value_matches(k, gm_pagemap_load(map, k));
			uint64_t vk = volatile_keys[gm_rng_below(&r, NVOLATILE)];
			void *v = gm_pagemap_load(map, vk);
			errors += v && !value_matches(vk, v);
			break;
		}
		case 1: { /* batch */
			uint64_t keys[32];
			void *vals[32];
			for (int i = 0; i < 32; i++)
				keys[i] = i & 1 ? stable[gm_rng_below(&r, NSTABLE)]
						: volatile_keys[gm_rng_below(&r, NVOLATILE)];
			size_t found = gm_pagemap_load_many(map, keys, 32, vals);
			errors += found < 16;
			for (int i = 0; i < 32; i++) {
				if (i & 1)
					errors += !value_matches(keys[i], vals[i]);
				else
					errors += vals[i] && !value_matches(keys[i], vals[i]);
			}
			break;
		}
		case 2: { /* next from just above a stable key never skips the next stable key */
			unsigned i = (unsigned)gm_rng_below(&r, NSTABLE - 1);
			uint64_t k = stable[i] + 1;
			void *v;
			if (pm_seek_kv(map, &k, &v, true) != 0 || k > stable[i + 1] ||
			    !value_matches(k, v))
				errors++;
			break;
		}
		case 3: { /* prev likewise */
			unsigned i = 1 + (unsigned)gm_rng_below(&r, NSTABLE - 1);
			uint64_t k = stable[i] - 1;
			void *v;
			if (pm_seek_kv(map, &k, &v, false) != 0 || k < stable[i - 1] ||
			    !value_matches(k, v))
				errors++;
			break;
		}
		default: { /* a walk sees every stable key in its range, ascending */
			unsigned i = (unsigned)gm_rng_below(&r, NSTABLE - 40);
			struct gm_pagemap_iter it;
			gm_pagemap_iter_init(&it, map, stable[i], stable[i + 32], 0);
			uint64_t k, prev = 0;
			void *v;
			unsigned j = i, n = 0;
			while (pm_iter_kv(&it, &k, &v)) {
				if ((n && k <= prev) || !value_matches(k, v))
					errors++;
				if (j <= i + 32 && k == stable[j])
					j++;
				else if (j <= i + 32 && k > stable[j])
					errors++; /* skipped a stable key */
				prev = k;
				n++;
			}
			errors += j != i + 33;
			break;
		}
		}
		gm_rcu_read_unlock();
		ops++;
	}
	atomic_fetch_add(&reader_errors, errors);
	atomic_fetch_add(&reader_ops, ops);
	gm_rcu_unregister_thread();
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

GM_TEST(readers_see_consistent_map_while_writer_churns)
{
	gm_pagemap_many_loop_max_ = 0;
	gm_rcu_register_thread();
	struct gm_rng *r = gm_test_rng();
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, NULL);
	CHECK_EQ(gm_pagemap_create(&map, GM_RCU, &c.allocator), 0);
	/* Stable and volatile keys interleave in three shapes: dense frames,
	 * 512-runs, and random 36-bit frames, so leaves split and merge
	 * around keys readers depend on. */
	for (unsigned i = 0; i < NSTABLE + NVOLATILE; i++) {
		uint64_t k;
		do {
			switch (i % 3) {
			case 0: k = gm_rng_below(r, 20000); break;
			case 1: k = 0x40000000ULL + gm_rng_below(r, 8) * 4096 * 512 + gm_rng_below(r, 2048); break;
			default: k = gm_rng_below(r, 1ULL << 36); break;
			}
		} while (gm_pagemap_load(map, k));
		CHECK_EQ(gm_pagemap_insert(map, k, value_for(k, 0)), 0);
		if (i < NSTABLE)
			stable[i] = k;
		else
			volatile_keys[i - NSTABLE] = k;
	}
	qsort(stable, NSTABLE, sizeof(uint64_t), cmp_u64);
	atomic_store(&stop, false);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, reader, (void *)(uintptr_t)(gm_test_seed() + i + 1)), 0);

	uint64_t iters = gm_test_iters(300000);
	for (uint64_t i = 0; i < iters; i++) {
		uint64_t k = volatile_keys[gm_rng_below(r, NVOLATILE)];
		switch (gm_rng_below(r, 3)) {
		case 0: {
			int rc = gm_pagemap_insert(map, k, value_for(k, (unsigned)i));
			CHECK(rc == 0 || rc == -EEXIST);
			break;
		}
		case 1:
			CHECK_EQ(gm_pagemap_store(map, k, value_for(k, (unsigned)i), NULL), 0);
			break;
		default: {
			int rc = gm_pagemap_remove(map, k, NULL);
			CHECK(rc == 0 || rc == -ENOENT);
			break;
		}
		}
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(atomic_load(&reader_errors), 0);
	CHECK(atomic_load(&reader_ops) > 0);
	CHECK_VALID(gm_pagemap_validate(map, &reason), reason);
	gm_pagemap_destroy(map);
	CHECK_EQ(gm_alloc_counting_bytes(&c), 0);
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
