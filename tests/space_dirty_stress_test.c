/*
 * tests/space_dirty_stress_test.c — the VMM dirty-log additions under
 * concurrency (also run under TSan): marker threads (gm_space_dirty_mark,
 * gm_space_dirty_import of one-word bitmaps, gm_space_dirty_import_gfns)
 * each dirty their own frames, every frame exactly once, while one
 * harvester runs gm_space_dirty_harvest over random sub-ranges,
 * sometimes failing a run (which must stay dirty) and sometimes putting a
 * delivered run back with gm_space_dirty_restore (which must come again).
 * At the end every frame was delivered exactly as often as it was marked
 * plus restored: no mark is lost, none invented.
 */
#include "harness.h"

#include <stdatomic.h>
#include <gmtrack/rcu.h>
#include <gmtrack/space.h>

#include <errno.h>
#include <pthread.h>

#define MARKERS 3
#define PER (3 * 32768 + 100) /* frames per marker */
#define NP (MARKERS * PER)

static struct gm_space *sp;
static const struct gm_space_slot *slot;
static _Atomic unsigned markers_done;
static _Atomic uint8_t delivered[NP]; /* times each frame came out */
static uint8_t restored[NP];          /* harvester only */

struct marker {
	unsigned index;
	uint64_t seed;
};

static void *marker(void *arg)
{
	struct marker *mk = arg;
	gm_rcu_register_thread();
	struct gm_rng r;
	gm_rng_init(&r, mk->seed);
	uint64_t base = (uint64_t)mk->index * PER;
	/* a random order of this marker's frames */
	static _Thread_local uint32_t order[PER];
	for (uint32_t i = 0; i < PER; i++)
		order[i] = i;
	for (uint32_t i = PER - 1; i > 0; i--) {
		uint32_t j = (uint32_t)gm_rng_below(&r, i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (uint32_t i = 0; i < PER;) {
		gm_rcu_read_lock();
		uint64_t g = slot->base_gfn + base + order[i];
		switch (gm_rng_below(&r, 3)) {
		case 0:
			CHECK_EQ(gm_space_dirty_mark(sp, slot, g), 0);
			i++;
			break;
		case 1: { /* a one-bit bitmap at an arbitrary offset */
			uint64_t bm = 1;
			CHECK_EQ(gm_space_dirty_import(sp, slot, g, &bm, 1), 0);
			i++;
			break;
		}
		default: { /* a few ring entries */
			uint64_t gfns[8];
			size_t n = 0;
			while (n < 8 && i < PER)
				gfns[n++] = slot->base_gfn + base + order[i++];
			CHECK_EQ(gm_space_dirty_import_gfns(sp, slot, gfns, n), 0);
			break;
		}
		}
		gm_rcu_read_unlock();
	}
	atomic_fetch_add(&markers_done, 1);
	gm_rcu_unregister_thread();
	return NULL;
}

struct harvest {
	struct gm_rng *r;
	int fail_at, runs;
	uint64_t restore_first, restore_count;
};

static int take(void *ctx, uint64_t first, uint64_t count)
{
	struct harvest *h = ctx;
	if (h->runs++ == h->fail_at)
		return -EAGAIN;
	for (uint64_t g = first; g < first + count; g++)
		atomic_fetch_add(&delivered[g - slot->base_gfn], 1);
	if (!h->restore_count && gm_rng_chance(h->r, 1, 50)) {
		h->restore_first = first;
		h->restore_count = count;
	}
	return 0;
}

static void one_round(struct gm_rng *r)
{
	CHECK_EQ(gm_space_create(&sp, NULL, 0, NULL), 0);
	CHECK_EQ(gm_space_slot_add(sp, 1, 12345, NP, 0x7f0000000000ull, GM_SPACE_SLOT_DIRTY_LOG), 0);
	slot = gm_space_id_to_slot(sp, 1);
	pthread_t t[MARKERS];
	struct marker mk[MARKERS];
	for (unsigned i = 0; i < MARKERS; i++) {
		mk[i] = (struct marker){i, gm_rng_next(r)};
		CHECK_EQ(pthread_create(&t[i], NULL, marker, &mk[i]), 0);
	}
	uint64_t restores = 0;
	bool last = false;
	while (!last) {
		last = atomic_load(&markers_done) == MARKERS; /* one more pass after */
		uint64_t a = gm_rng_below(r, NP), b = a + gm_rng_below(r, NP - a);
		if (gm_rng_chance(r, 1, 4) || last)
			a = 0, b = NP - 1;
		struct harvest h = {r, gm_rng_chance(r, 1, 3) ? (int)gm_rng_below(r, 20) : -1, 0, 0, 0};
		long n;
		do {
			h.runs = 0;
			gm_rcu_read_lock();
			n = gm_space_dirty_harvest(sp, slot, slot->base_gfn + a, slot->base_gfn + b,
							 take, &h);
			gm_rcu_read_unlock();
			h.fail_at = -1;
		} while (n == -EAGAIN);
		CHECK(n >= 0);
		if (h.restore_count) {
			CHECK_EQ(gm_space_dirty_restore(sp, slot, h.restore_first, h.restore_count), 0);
			for (uint64_t g = h.restore_first; g < h.restore_first + h.restore_count; g++)
				restored[g - slot->base_gfn]++;
			restores++;
			last = false;
		}
	}
	for (unsigned i = 0; i < MARKERS; i++)
		pthread_join(t[i], NULL);
	for (uint64_t i = 0; i < NP; i++)
		CHECK_MSG(atomic_load(&delivered[i]) == 1 + restored[i],
			  "frame %llu delivered %u times, marked once and restored %u times",
			  (unsigned long long)i, atomic_load(&delivered[i]), restored[i]);
	(void)restores;
	CHECK_VALID(gm_space_validate(sp, &reason), reason);
	gm_space_destroy(sp);
}

GM_TEST(no_mark_lost_under_concurrent_import_and_ranged_harvest)
{
	struct gm_rng *r = gm_test_rng();
	gm_rcu_register_thread();
	for (uint64_t i = 0; i < gm_test_iters(10); i++) {
		atomic_store(&markers_done, 0);
		for (uint64_t g = 0; g < NP; g++)
			atomic_store(&delivered[g], 0);
		memset(restored, 0, sizeof(restored));
		one_round(r);
	}
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
