/*
 * tests/space_stress_test.c — readers translate addresses while a writer
 * adds, deletes and moves slots; no reader may ever see a mix of two
 * layouts. Every commit keeps the invariant "slots 1 and 2 are both present
 * or both absent, and slot 2 sits right after slot 1" (changed only
 * together, in one batch), and slot 3's hva encodes the generation parity
 * of the batch that placed it. Plus dirty marking from the readers.
 */
#include "harness.h"

#include <gmtrack/rcu.h>
#include <gmtrack/space.h>

#include <pthread.h>

static struct gm_space *sp;
static _Atomic bool stop;
static _Atomic uint64_t reads, mixes;

static void *reader(void *arg)
{
	(void)arg;
	gm_rcu_register_thread();
	struct gm_space_cache c;
	gm_space_cache_init(&c);
	uint64_t n = 0;
	while (!atomic_load(&stop) || n < 2000) {
		gm_rcu_read_lock();
		const struct gm_space_slot *p;
		uint64_t hva;
		/* gfn 1000 is slot 1 or nothing, in every layout */
		if (gm_space_gfn_to_slot(sp, &c, 1000, &p) == 0 && p->id != 1)
			atomic_fetch_add(&mixes, 1);
		if (gm_space_gfn_to_hva(sp, &c, 1000, &hva) == 0 && (hva >> 32) != 1)
			atomic_fetch_add(&mixes, 1);
		/* one view: slots 1 and 2 both or neither, and adjacent */
		struct gm_space_hva_hit hits[4];
		long k = gm_space_hva_fill(sp, 0x100000000ull, 0x1ffffffffull, hits, 4);
		if (k != 0 && k != 2)
			atomic_fetch_add(&mixes, 1);
		if (k == 2 && (hits[0].slot->id != 1 || hits[1].slot->id != 2 ||
			       hits[1].slot->base_gfn != 1000 + hits[0].slot->npages ||
			       hits[1].slot->hva != hits[0].slot->hva + (hits[0].slot->npages << 12) ||
			       hits[0].first_gfn != 1000 || hits[1].last_gfn != hits[1].slot->base_gfn + 7))
			atomic_fetch_add(&mixes, 1);
		const struct gm_space_slot *z = gm_space_id_to_slot(sp, 0);
		if (!z || gm_space_dirty_mark(sp, z, n % 1000))
			atomic_fetch_add(&mixes, 1);
		gm_rcu_read_unlock();
		n++;
	}
	atomic_fetch_add(&reads, n);
	gm_rcu_unregister_thread();
	return NULL;
}

GM_TEST(readers_never_see_a_mix)
{
	struct gm_rng *r = gm_test_rng();
	gm_rcu_register_thread();
	CHECK_EQ(gm_space_create(&sp, NULL, 0, NULL), 0);
	CHECK_EQ(gm_space_slot_add(sp, 0, 0, 1000, 0x10000000, GM_SPACE_SLOT_DIRTY_LOG), 0);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, reader, NULL);
	bool present = false;
	uint64_t commits = gm_test_iters(4000);
	for (uint64_t i = 0; i < commits; i++) {
		gm_space_batch_begin(sp);
		if (present) {
			CHECK_EQ(gm_space_batch_remove(sp, 1), 0);
			CHECK_EQ(gm_space_batch_remove(sp, 2), 0);
		} else {
			uint64_t np = 1 + gm_rng_below(r, 64);
			uint64_t hva = 0x100000000ull + (gm_rng_below(r, 1024) << 12);
			CHECK_EQ(gm_space_batch_add(sp, 1, 1000, np, hva, 0), 0);
			CHECK_EQ(gm_space_batch_add(sp, 2, 1000 + np, 8, hva + (np << 12), 0), 0);
		}
		/* churn unrelated slots in the same and other commits */
		uint32_t id = 10 + (uint32_t)gm_rng_below(r, 50);
		if (gm_space_id_to_slot(sp, id) == NULL)
			gm_space_batch_add(sp, id, 100000 + id * 100, 50, 0x300000000ull, 0);
		else
			gm_space_batch_move(sp, id, 200000 + gm_rng_below(r, 100) * 100 + id);
		int rc = gm_space_batch_commit(sp);
		if (rc == -EEXIST) { /* a move hit another churn slot: retry without */
			gm_space_batch_begin(sp);
			if (present) {
				gm_space_batch_remove(sp, 1);
				gm_space_batch_remove(sp, 2);
			} else {
				uint64_t hva = 0x100000000ull;
				gm_space_batch_add(sp, 1, 1000, 4, hva, 0);
				gm_space_batch_add(sp, 2, 1004, 8, hva + (4 << 12), 0);
			}
			rc = gm_space_batch_commit(sp);
		}
		CHECK_EQ(rc, 0);
		present = !present;
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(atomic_load(&mixes), 0);
	CHECK(atomic_load(&reads) > 0);
	CHECK_VALID(gm_space_validate(sp, &reason), reason);
	gm_space_destroy(sp);
	gm_rcu_unregister_thread();
}

GM_TEST_MAIN()
