/*
 * tests/space_test.c — gm_space against a simple model: random sequences of
 * slot batches, attribute changes, protections and lookups, checked after
 * every step; failing allocator; bad input; dirty logs; rmaps; I/O.
 */
#include "harness.h"

#include <gmtrack/rcu.h>
#include <gmtrack/space.h>

#include <pthread.h>
#include <stdlib.h>

#define U 4096      /* gfn universe of the model */
#define NIDS 32
#define HVA_SPAN (1ull << 24)

struct mslot {
	bool present;
	uint64_t base, npages, hva;
	uint32_t flags;
};

struct model {
	struct mslot s[NIDS];
	uint64_t nslots, max;
	uint64_t attr[U];
	uint64_t wp[U];
	uint64_t generation;
};

enum { K_ADD, K_DEL, K_MOVE, K_RESIZE, K_FLAGS };
struct mop {
	int kind;
	uint32_t id, flags;
	uint64_t base, npages, hva;
};

static bool overlaps(const struct model *m, uint32_t skip, uint64_t base, uint64_t np)
{
	for (uint32_t i = 0; i < NIDS; i++) {
		const struct mslot *o = &m->s[i];
		if (i == skip || !o->present)
			continue;
		if (base <= o->base + o->npages - 1 && o->base <= base + np - 1)
			return true;
	}
	return false;
}

/* Applies a batch to a copy of the model; returns the error the space must
 * report (the first failing op), with *m changed only on success. */
static int model_commit(struct model *m, const struct mop *ops, int n)
{
	struct model t = *m;
	for (int i = 0; i < n; i++) {
		const struct mop *o = &ops[i];
		struct mslot *s = &t.s[o->id];
		if (o->kind == K_ADD) {
			if (s->present)
				return -EEXIST;
			if (t.nslots >= t.max)
				return -ENOSPC;
			if (overlaps(&t, NIDS, o->base, o->npages))
				return -EEXIST;
			*s = (struct mslot){true, o->base, o->npages, o->hva, o->flags};
			t.nslots++;
			continue;
		}
		if (!s->present)
			return -ENOENT;
		if (o->kind == K_DEL) {
			s->present = false;
			t.nslots--;
			continue;
		}
		struct mslot ns = *s;
		if (o->kind == K_MOVE)
			ns.base = o->base;
		else if (o->kind == K_RESIZE)
			ns.npages = o->npages;
		else
			ns.flags = o->flags;
		if (ns.base + ns.npages - 1 < ns.base)
			return -EINVAL;
		if (overlaps(&t, o->id, ns.base, ns.npages))
			return -EEXIST;
		*s = ns;
	}
	if (n)
		t.generation++;
	*m = t;
	return 0;
}

static int space_commit(struct gm_space *sp, const struct mop *ops, int n)
{
	gm_space_batch_begin(sp);
	for (int i = 0; i < n; i++) {
		const struct mop *o = &ops[i];
		int rc = 0;
		switch (o->kind) {
		case K_ADD: rc = gm_space_batch_add(sp, o->id, o->base, o->npages, o->hva, o->flags); break;
		case K_DEL: rc = gm_space_batch_remove(sp, o->id); break;
		case K_MOVE: rc = gm_space_batch_move(sp, o->id, o->base); break;
		case K_RESIZE: rc = gm_space_batch_resize(sp, o->id, o->npages); break;
		default: rc = gm_space_batch_set_flags(sp, o->id, o->flags); break;
		}
		if (rc)
			return rc;
	}
	return gm_space_batch_commit(sp);
}

static struct mop random_op(struct gm_rng *r)
{
	struct mop o = {0};
	o.kind = (int)gm_rng_below(r, 5);
	if (gm_rng_chance(r, 1, 3))
		o.kind = K_ADD;
	o.id = (uint32_t)gm_rng_below(r, NIDS);
	o.base = gm_rng_below(r, U - 200);
	o.npages = 1 + gm_rng_below(r, gm_rng_chance(r, 1, 4) ? 200 : 16);
	o.hva = gm_rng_below(r, HVA_SPAN >> 12) << 12;
	o.flags = (uint32_t)gm_rng_below(r, 4);
	return o;
}

/* Compares every observable thing of the space with the model. */
static void check_same(struct gm_space *sp, const struct model *m, struct gm_rng *r)
{
	CHECK_VALID(gm_space_validate(sp, &reason), reason);
	CHECK_EQ(gm_space_slot_count(sp), m->nslots);
	CHECK_EQ(gm_space_generation(sp), m->generation);
	gm_rcu_read_lock();
	for (uint32_t id = 0; id < NIDS; id++) {
		const struct gm_space_slot *p = gm_space_id_to_slot(sp, id);
		CHECK_EQ(p != NULL, m->s[id].present);
		if (p) {
			CHECK_EQ(p->base_gfn, m->s[id].base);
			CHECK_EQ(p->npages, m->s[id].npages);
			CHECK_EQ(p->hva, m->s[id].hva);
			CHECK_EQ(p->flags, m->s[id].flags);
		}
	}
	struct gm_space_cache cache;
	gm_space_cache_init(&cache);
	for (int i = 0; i < 64; i++) {
		uint64_t gfn = gm_rng_below(r, U), hva = 0;
		int want = -1;
		for (int id = 0; id < NIDS; id++)
			if (m->s[id].present && gfn - m->s[id].base < m->s[id].npages)
				want = id;
		int rc = gm_space_gfn_to_hva(sp, i & 1 ? &cache : NULL, gfn, &hva);
		if (want < 0) {
			CHECK_EQ(rc, -ENOENT);
		} else {
			CHECK_EQ(rc, 0);
			CHECK_EQ(hva, m->s[want].hva + ((gfn - m->s[want].base) << 12));
		}
		CHECK_EQ(gm_space_attr_get(sp, gfn), m->attr[gfn]);
		CHECK_EQ(gm_space_protect_count(sp, gfn), m->wp[gfn]);
		uint64_t last = gfn + gm_rng_below(r, 64);
		if (last >= U)
			last = U - 1;
		for (uint64_t v = 0; v < 3; v++) {
			bool all = true;
			for (uint64_t g = gfn; g <= last; g++)
				all &= m->attr[g] == v;
			CHECK_EQ(gm_space_attr_all(sp, gfn, last, v), all);
		}
	}
	/* hva invalidation against brute force */
	for (int i = 0; i < 8; i++) {
		uint64_t a = gm_rng_below(r, HVA_SPAN), b = a + gm_rng_below(r, 1u << 20);
		struct gm_space_hva_hit hits[NIDS];
		long n = gm_space_hva_fill(sp, a, b, hits, NIDS);
		long want = 0;
		for (int id = 0; id < NIDS; id++) {
			const struct mslot *s = &m->s[id];
			if (!s->present)
				continue;
			uint64_t e = s->hva + (s->npages << 12) - 1;
			if (a > e || b < s->hva)
				continue;
			want++;
			bool found = false;
			for (long k = 0; k < n && k < NIDS; k++) {
				if (hits[k].slot->id != (uint32_t)id)
					continue;
				found = true;
				uint64_t lo = a > s->hva ? a : s->hva, hi = b < e ? b : e;
				CHECK_EQ(hits[k].first_gfn, s->base + ((lo - s->hva) >> 12));
				CHECK_EQ(hits[k].last_gfn, s->base + ((hi - s->hva) >> 12));
			}
			CHECK(found);
		}
		CHECK_EQ(n, want);
	}
	gm_rcu_read_unlock();
}

static void model_attr(struct model *m, uint64_t a, uint64_t b, uint64_t v)
{
	for (uint64_t g = a; g <= b; g++)
		m->attr[g] = v;
}

static int model_wp(struct model *m, uint64_t a, uint64_t b, bool inc)
{
	for (uint64_t g = a; g <= b; g++)
		if (!inc && !m->wp[g])
			return -EINVAL;
	for (uint64_t g = a; g <= b; g++)
		m->wp[g] += inc ? 1 : (uint64_t)-1;
	return 0;
}

/* One random step on both; returns the space's rc. */
static int random_step(struct gm_space *sp, struct model *m, struct gm_rng *r)
{
	uint64_t kind = gm_rng_below(r, 10);
	uint64_t a = gm_rng_below(r, U), b = a + gm_rng_below(r, 300);
	if (b >= U)
		b = U - 1;
	if (kind < 5) {
		struct mop ops[3];
		int n = (int)gm_rng_below(r, 4);
		for (int i = 0; i < n; i++)
			ops[i] = random_op(r);
		int rc = space_commit(sp, ops, n);
		if (rc == -ENOMEM)
			return rc;
		CHECK_EQ(rc, model_commit(m, ops, n));
		return rc;
	}
	if (kind < 7) {
		uint64_t v = gm_rng_below(r, 3);
		int rc = gm_space_attr_set(sp, a, b, v);
		if (!rc)
			model_attr(m, a, b, v);
		return rc;
	}
	bool inc = kind < 9;
	int rc = inc ? gm_space_protect(sp, a, b) : gm_space_unprotect(sp, a, b);
	if (rc == -ENOMEM)
		return rc;
	struct model t = *m;
	CHECK_EQ(rc, model_wp(&t, a, b, inc));
	if (!rc)
		*m = t;
	return rc;
}

static struct model *model_new(uint64_t max)
{
	struct model *m = calloc(1, sizeof(*m));
	m->max = max;
	m->generation = 1;
	return m;
}

static void reg(void)
{
	static __thread bool done;
	if (!done)
		gm_rcu_register_thread();
	done = true;
}

GM_TEST(model_random_sequences)
{
	struct gm_rng *r = gm_test_rng();
	struct gm_alloc_counting cnt;
	reg();
	gm_alloc_counting_init(&cnt, NULL);
	struct gm_space *sp;
	struct gm_space_config cfg = {.max_slots = 20};
	CHECK_EQ(gm_space_create(&sp, &cfg, 0, &cnt.allocator), 0);
	struct model *m = model_new(20);
	uint64_t steps = gm_test_iters(3000);
	for (uint64_t i = 0; i < steps; i++) {
		CHECK_EQ(random_step(sp, m, r) == -ENOMEM, 0);
		check_same(sp, m, r);
	}
	gm_space_destroy(sp);
	CHECK_EQ(gm_alloc_counting_bytes(&cnt), 0);
	free(m);
}

GM_TEST(out_of_memory_leaves_space_unchanged)
{
	struct gm_rng *r = gm_test_rng();
	struct gm_alloc_counting cnt;
	struct gm_alloc_failing fail;
	reg();
	gm_alloc_counting_init(&cnt, NULL);
	gm_alloc_failing_init(&fail, &cnt.allocator);
	struct gm_space *sp;
	struct gm_space_config cfg = {.max_slots = 24};
	for (uint64_t nth = 1; nth < 8; nth++) {
		gm_alloc_failing_arm_nth(&fail, nth, false);
		int rc = gm_space_create(&sp, &cfg, 0, &fail.allocator);
		if (rc == 0)
			gm_space_destroy(sp);
		else
			CHECK_EQ(rc, -ENOMEM);
		gm_rcu_barrier();
		CHECK_EQ(gm_alloc_counting_bytes(&cnt), 0);
	}
	gm_alloc_failing_disarm(&fail);
	CHECK_EQ(gm_space_create(&sp, &cfg, 0, &fail.allocator), 0);
	struct model *m = model_new(24), *before = model_new(24);
	uint64_t steps = gm_test_iters(1500), injected = 0;
	for (uint64_t i = 0; i < steps; i++) {
		struct gm_rng saved = *r;
		*before = *m;
		gm_alloc_failing_arm_nth(&fail, 1 + gm_rng_below(r, 6), false);
		int rc = random_step(sp, m, r);
		gm_alloc_failing_disarm(&fail);
		if (rc == -ENOMEM) {
			injected++;
			CHECK(memcmp(m, before, sizeof(*m)) == 0);
			check_same(sp, m, r);
			/* the same step succeeds once memory is back */
			*r = saved;
			(void)gm_rng_below(r, 6);
			CHECK_NE(random_step(sp, m, r), -ENOMEM);
		}
		check_same(sp, m, r);
	}
	CHECK(injected > 0);
	gm_space_destroy(sp);
	CHECK_EQ(gm_alloc_counting_bytes(&cnt), 0);
	free(m);
	free(before);
}

GM_TEST(bad_input_changes_nothing)
{
	struct gm_space *sp;
	reg();
	CHECK_EQ(gm_space_create(NULL, NULL, 0, NULL), -EINVAL);
	struct gm_space_config big = {.max_slots = 0x80000001u};
	CHECK_EQ(gm_space_create(&sp, &big, 0, NULL), -EINVAL);
	CHECK_EQ(gm_space_create(&sp, NULL, 0, NULL), 0);
	CHECK_EQ(gm_space_slot_add(sp, 1, 100, 10, 0x10000, 0), 0);
	uint64_t gen = gm_space_generation(sp);
	CHECK_EQ(gm_space_slot_add(sp, 2, 0, 0, 0, 0), -EINVAL);               /* 0 pages */
	CHECK_EQ(gm_space_slot_add(sp, 2, UINT64_MAX, 2, 0, 0), -EINVAL);      /* gfn wraps */
	CHECK_EQ(gm_space_slot_add(sp, 2, 0, 2, UINT64_MAX - 4096, 0), -EINVAL); /* hva wraps */
	CHECK_EQ(gm_space_slot_add(sp, 2, 0, 1ull << 60, 0, 0), -EINVAL);      /* hva bytes wrap */
	CHECK_EQ(gm_space_slot_add(sp, 2, 0, 1, 0, 0x80), -EINVAL);            /* flags */
	CHECK_EQ(gm_space_slot_add(sp, 2, 105, 10, 0x10000, 0), -EEXIST);      /* overlap */
	CHECK_EQ(gm_space_slot_add(sp, 1, 500, 10, 0x10000, 0), -EEXIST);      /* same id */
	CHECK_EQ(gm_space_slot_remove(sp, 7), -ENOENT);
	CHECK_EQ(gm_space_slot_move(sp, 7, 0), -ENOENT);
	CHECK_EQ(gm_space_slot_move(sp, 1, UINT64_MAX - 3), -EINVAL);
	CHECK_EQ(gm_space_slot_resize(sp, 1, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_resize(sp, 1, UINT64_MAX), -EINVAL);
	/* a batch whose last op fails leaves the first ones undone */
	gm_space_batch_begin(sp);
	CHECK_EQ(gm_space_batch_add(sp, 3, 1000, 1, 0, 0), 0);
	CHECK_EQ(gm_space_batch_remove(sp, 1), 0);
	CHECK_EQ(gm_space_batch_remove(sp, 1), 0);
	CHECK_EQ(gm_space_batch_commit(sp), -ENOENT);
	CHECK_EQ(gm_space_generation(sp), gen);
	CHECK_EQ(gm_space_slot_count(sp), 1);
	gm_rcu_read_lock();
	CHECK(gm_space_id_to_slot(sp, 3) == NULL);
	CHECK(gm_space_id_to_slot(sp, 1) != NULL);
	CHECK_EQ(gm_space_hva_fill(sp, 5, 4, NULL, 0), -EINVAL);
	gm_rcu_read_unlock();
	CHECK_EQ(gm_space_attr_set(sp, 5, 4, 1), -EINVAL);
	CHECK_EQ(gm_space_protect(sp, 5, 4), -EINVAL);
	CHECK_EQ(gm_space_unprotect(sp, 1, 1), -EINVAL);
	CHECK_EQ(gm_space_protect(sp, 0, UINT64_MAX), 0);
	CHECK_EQ(gm_space_unprotect(sp, 0, UINT64_MAX), 0);
	CHECK_EQ(gm_space_unprotect(sp, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_batch_commit(sp), 0); /* empty batch */
	CHECK_EQ(gm_space_generation(sp), gen);
	/* the whole guest-physical space and its edges: a slot ends at
	 * GM_SPACE_GFN_LIMIT - 1 at most (its last byte's address fits in 64
	 * bits), KVM's rule too */
	const uint64_t top = GM_SPACE_GFN_LIMIT - 1;
	CHECK_EQ(gm_space_slot_remove(sp, 1), 0);
	CHECK_EQ(gm_space_slot_add(sp, 9, 0, GM_SPACE_GFN_LIMIT + 1, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_add(sp, 10, UINT64_MAX, 1, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_add(sp, 10, GM_SPACE_GFN_LIMIT, 1, 0, 0), -EINVAL);
	CHECK_EQ(gm_space_slot_add(sp, 10, 0, 1, 0x1800, 0), -EINVAL); /* hva not page-aligned */
	CHECK_EQ(gm_space_slot_add(sp, 9, 0, GM_SPACE_GFN_LIMIT, 0, 0), 0);
	CHECK_EQ(gm_space_slot_remove(sp, 9), 0);
	CHECK_EQ(gm_space_slot_add(sp, 9, 0, top - 3, 0, 0), 0);
	CHECK_EQ(gm_space_slot_add(sp, 10, top, 1, 1ull << 63, 0), 0);
	CHECK_EQ(gm_space_slot_move(sp, 10, top + 1), -EINVAL);
	CHECK_EQ(gm_space_slot_resize(sp, 10, 2), -EINVAL);
	gm_rcu_read_lock();
	uint64_t hva;
	CHECK_EQ(gm_space_gfn_to_hva(sp, NULL, top - 4, &hva), 0);
	CHECK_EQ(hva, (top - 4) << 12);
	CHECK_EQ(gm_space_gfn_to_hva(sp, NULL, top - 1, &hva), -ENOENT);
	CHECK_EQ(gm_space_gfn_to_hva(sp, NULL, top, &hva), 0);
	CHECK_EQ(hva, 1ull << 63);
	CHECK_EQ(gm_space_gfn_to_hva(sp, NULL, top + 1, &hva), -ENOENT);
	CHECK_EQ(gm_space_gfn_to_hva(sp, NULL, UINT64_MAX, &hva), -ENOENT);
	gm_rcu_read_unlock();
	/* the top frames through a cache after the entry ending there moved
	 * down a place in its block (its old place keeps its last and hva
	 * behind the padding); UINT64_MAX, the padding keys, is never found */
	CHECK_EQ(gm_space_slot_remove(sp, 10), 0);
	CHECK_EQ(gm_space_slot_add(sp, 11, top - 3, 4, 1ull << 40, 0), 0);
	CHECK_EQ(gm_space_slot_remove(sp, 9), 0);
	struct gm_space_cache c;
	gm_space_cache_init(&c);
	gm_rcu_read_lock();
	CHECK_EQ(gm_space_gfn_to_hva(sp, &c, top, &hva), 0);
	CHECK_EQ(hva, (1ull << 40) + (3ull << 12));
	CHECK_EQ(gm_space_gfn_to_hva(sp, &c, UINT64_MAX, &hva), -ENOENT);
	gm_space_cache_init(&c);
	CHECK_EQ(gm_space_gfn_to_hva(sp, &c, UINT64_MAX, &hva), -ENOENT);
	CHECK_EQ(gm_space_gfn_to_hva(sp, &c, top - 3, &hva), 0);
	CHECK_EQ(hva, 1ull << 40);
	CHECK_EQ(gm_space_gfn_to_hva(sp, &c, top - 4, &hva), -ENOENT);
	CHECK_EQ(gm_space_gfn_to_hva(sp, &c, 0, &hva), -ENOENT);
	gm_rcu_read_unlock();
	CHECK_VALID(gm_space_validate(sp, &reason), reason);
	gm_space_destroy(sp);
}

GM_TEST(max_slots_and_generation)
{
	struct gm_space *sp;
	reg();
	struct gm_space_config cfg = {.max_slots = 3};
	CHECK_EQ(gm_space_create(&sp, &cfg, 0, NULL), 0);
	CHECK_EQ(gm_space_generation(sp), 1);
	for (uint32_t i = 0; i < 3; i++)
		CHECK_EQ(gm_space_slot_add(sp, i, i * 10, 10, 0, 0), 0);
	CHECK_EQ(gm_space_slot_add(sp, 3, 100, 1, 0, 0), -ENOSPC);
	CHECK_EQ(gm_space_generation(sp), 4);
	/* delete + add in one batch at the limit is fine */
	gm_space_batch_begin(sp);
	CHECK_EQ(gm_space_batch_remove(sp, 0), 0);
	CHECK_EQ(gm_space_batch_add(sp, 3, 100, 1, 0, 0), 0);
	CHECK_EQ(gm_space_batch_commit(sp), 0);
	CHECK_EQ(gm_space_generation(sp), 5);
	CHECK_VALID(gm_space_validate(sp, &reason), reason);
	gm_space_destroy(sp);
}

GM_TEST(attributes_one_tib_private_is_compact)
{
	struct gm_space *sp;
	struct gm_alloc_counting cnt;
	reg();
	gm_alloc_counting_init(&cnt, NULL);
	CHECK_EQ(gm_space_create(&sp, NULL, 0, &cnt.allocator), 0);
	size_t base = gm_alloc_counting_bytes(&cnt);
	CHECK_EQ(gm_space_attr_set(sp, 0, (1ull << 28) - 1, 1), 0);
	gm_rcu_barrier();
	struct gm_space_stats st;
	gm_space_stats(sp, &st);
	CHECK(st.bytes_attributes <= 64);
	CHECK(gm_alloc_counting_bytes(&cnt) - base <= 64);
	gm_rcu_read_lock();
	CHECK(gm_space_attr_all(sp, 0, (1ull << 28) - 1, 1));
	CHECK(!gm_space_attr_all(sp, 0, 1ull << 28, 1));
	CHECK(gm_space_attr_all(sp, 1ull << 28, UINT64_MAX, 0));
	gm_rcu_read_unlock();
	/* a conversion makes a map; converting back keeps the answers right */
	CHECK_EQ(gm_space_attr_set(sp, 0x1000, 0x1fff, 2), 0);
	gm_rcu_read_lock();
	CHECK_EQ(gm_space_attr_get(sp, 0x1000), 2);
	CHECK_EQ(gm_space_attr_get(sp, 0x2000), 1);
	CHECK(!gm_space_attr_all(sp, 0, (1ull << 28) - 1, 1));
	gm_rcu_read_unlock();
	CHECK_EQ(gm_space_attr_set(sp, 0x1000, 0x1fff, 1), 0);
	gm_rcu_read_lock();
	CHECK(gm_space_attr_all(sp, 0, (1ull << 28) - 1, 1));
	gm_rcu_read_unlock();
	CHECK_VALID(gm_space_validate(sp, &reason), reason);
	gm_space_destroy(sp);
	CHECK_EQ(gm_alloc_counting_bytes(&cnt), 0);
}

static void io_fn(void *opaque, uint64_t addr, void *data, unsigned size, bool w)
{
	(void)opaque; (void)addr; (void)data; (void)size; (void)w;
}

GM_TEST(io_dispatch)
{
	struct gm_space *sp;
	int a, b;
	reg();
	CHECK_EQ(gm_space_create(&sp, NULL, 0, NULL), 0);
	CHECK_EQ(gm_space_io_add(sp, GM_SPACE_MMIO, 0xfee00000, 0xfee00fff, io_fn, &a), 0);
	CHECK_EQ(gm_space_io_add(sp, GM_SPACE_MMIO, 0xfee00800, 0xfee01fff, io_fn, &b), -EEXIST);
	CHECK_EQ(gm_space_io_add(sp, GM_SPACE_PIO, 0x3f8, 0x3ff, io_fn, &b), 0);
	CHECK_EQ(gm_space_io_add(sp, GM_SPACE_PIO, 0x3ff, 0x3f8, io_fn, &b), -EINVAL);
	CHECK_EQ(gm_space_io_add(sp, GM_SPACE_PIO, 0, 1, NULL, &b), -EINVAL);
	CHECK_EQ(gm_space_io_add(sp, 7, 0, 1, io_fn, &b), -EINVAL);
	struct gm_space_io io;
	gm_rcu_read_lock();
	CHECK_EQ(gm_space_io_find(sp, GM_SPACE_MMIO, 0xfee00abc, &io), 0);
	CHECK(io.ctx == &a && io.first == 0xfee00000 && io.last == 0xfee00fff);
	CHECK_EQ(gm_space_io_find(sp, GM_SPACE_MMIO, 0x3f8, &io), -ENOENT);
	CHECK_EQ(gm_space_io_find(sp, GM_SPACE_PIO, 0x3fa, &io), 0);
	CHECK(io.ctx == &b);
	gm_rcu_read_unlock();
	CHECK_EQ(gm_space_io_remove(sp, GM_SPACE_MMIO, 0xfee00001), -ENOENT);
	CHECK_EQ(gm_space_io_remove(sp, GM_SPACE_MMIO, 0xfee00000), 0);
	CHECK_EQ(gm_space_io_add(sp, GM_SPACE_MMIO, 0xfee00800, 0xfee01fff, io_fn, &b), 0);
	CHECK_VALID(gm_space_validate(sp, &reason), reason);
	gm_space_destroy(sp);
}

struct collect {
	uint64_t *runs; /* pairs */
	size_t n, cap;
	uint64_t frames;
};

static int collect_fn(void *ctx, uint64_t first, uint64_t count)
{
	struct collect *c = ctx;
	if (c->n + 2 > c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->runs = realloc(c->runs, c->cap * sizeof(uint64_t));
	}
	c->runs[c->n++] = first;
	c->runs[c->n++] = count;
	c->frames += count;
	return 0;
}

GM_TEST(dirty_log_harvest_runs)
{
	struct gm_rng *r = gm_test_rng();
	struct gm_space *sp;
	reg();
	CHECK_EQ(gm_space_create(&sp, NULL, 0, NULL), 0);
	const uint64_t base = 1000, np = 300000;
	CHECK_EQ(gm_space_slot_add(sp, 1, base, np, 0, GM_SPACE_SLOT_DIRTY_LOG), 0);
	CHECK_EQ(gm_space_slot_add(sp, 2, 0, 10, 0, 0), 0);
	uint8_t *want = calloc(np, 1);
	for (int round = 0; round < 20; round++) {
		gm_rcu_read_lock();
		const struct gm_space_slot *p = gm_space_id_to_slot(sp, 1), *q = gm_space_id_to_slot(sp, 2);
		CHECK_EQ(gm_space_dirty_mark(sp, q, 3), -ENOENT);
		CHECK_EQ(gm_space_dirty_mark(sp, p, base - 1), -ENOENT);
		CHECK_EQ(gm_space_dirty_mark(sp, p, base + np), -ENOENT);
		uint64_t k = gm_rng_below(r, 2000);
		for (uint64_t i = 0; i < k; i++) {
			uint64_t off = gm_rng_below(r, np), len = gm_rng_chance(r, 1, 4) ? gm_rng_below(r, 200) : 1;
			for (uint64_t j = off; j < off + len && j < np; j++) {
				CHECK_EQ(gm_space_dirty_mark(sp, p, base + j), 0);
				want[j] = 1;
			}
		}
		struct collect c = {0};
		long n = gm_space_dirty_harvest(sp, p, 0, UINT64_MAX, collect_fn, &c);
		CHECK_EQ(gm_space_dirty_harvest(sp, q, 0, UINT64_MAX, collect_fn, &c), -ENOENT);
		gm_rcu_read_unlock();
		CHECK_EQ((uint64_t)n, c.frames);
		uint64_t prev_end = 0;
		for (size_t i = 0; i < c.n; i += 2) {
			uint64_t f = c.runs[i], cnt = c.runs[i + 1];
			CHECK(cnt > 0);
			CHECK(i == 0 || f > prev_end); /* sorted, coalesced */
			for (uint64_t g = f; g < f + cnt; g++) {
				CHECK_EQ(want[g - base], 1);
				want[g - base] = 0;
			}
			prev_end = f + cnt;
		}
		for (uint64_t j = 0; j < np; j++)
			CHECK_EQ(want[j], 0);
		free(c.runs);
	}
	free(want);
	CHECK_VALID(gm_space_validate(sp, &reason), reason);
	gm_space_destroy(sp);
}

struct marker {
	struct gm_space *sp;
	uint64_t first, n;
};

static void *mark_thread(void *arg)
{
	struct marker *m = arg;
	gm_rcu_register_thread();
	for (uint64_t i = 0; i < m->n; i++) {
		gm_rcu_read_lock();
		const struct gm_space_slot *p;
		if (gm_space_gfn_to_slot(m->sp, NULL, m->first + i * 3, &p) == 0)
			gm_space_dirty_mark(m->sp, p, m->first + i * 3);
		gm_rcu_read_unlock();
	}
	gm_rcu_unregister_thread();
	return NULL;
}

GM_TEST(dirty_log_many_threads_nothing_lost)
{
	struct gm_space *sp;
	reg();
	CHECK_EQ(gm_space_create(&sp, NULL, 0, NULL), 0);
	const uint64_t np = 1 << 20;
	CHECK_EQ(gm_space_slot_add(sp, 1, 0, np, 0, GM_SPACE_SLOT_DIRTY_LOG), 0);
	pthread_t t[4];
	struct marker mk[4];
	uint64_t per = gm_test_iters(40000);
	for (int i = 0; i < 4; i++) {
		mk[i] = (struct marker){sp, (uint64_t)i, per};
		pthread_create(&t[i], NULL, mark_thread, &mk[i]);
	}
	uint8_t *seen = calloc(np, 1);
	struct collect c = {0};
	for (int k = 0; k < 20; k++) {
		gm_rcu_read_lock();
		gm_space_dirty_harvest(sp, gm_space_id_to_slot(sp, 1), 0, UINT64_MAX, collect_fn, &c);
		gm_rcu_read_unlock();
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	gm_rcu_read_lock();
	gm_space_dirty_harvest(sp, gm_space_id_to_slot(sp, 1), 0, UINT64_MAX, collect_fn, &c);
	gm_rcu_read_unlock();
	for (size_t i = 0; i < c.n; i += 2)
		for (uint64_t g = c.runs[i]; g < c.runs[i] + c.runs[i + 1]; g++)
			seen[g] = 1;
	for (int i = 0; i < 4; i++)
		for (uint64_t j = 0; j < per; j++)
			CHECK_EQ(seen[i + j * 3], 1);
	uint64_t total = 0;
	for (uint64_t g = 0; g < np; g++)
		total += seen[g];
	uint64_t maxg = 3 + (per - 1) * 3 + 1;
	CHECK_EQ(total, maxg < np ? maxg : np);
	free(seen);
	free(c.runs);
	gm_space_destroy(sp);
}

GM_TEST(rmaps_lazy_and_freed_with_slot)
{
	struct gm_space *sp;
	struct gm_alloc_counting cnt;
	reg();
	gm_alloc_counting_init(&cnt, NULL);
	CHECK_EQ(gm_space_create(&sp, NULL, 0, &cnt.allocator), 0);
	CHECK_EQ(gm_space_slot_add(sp, 1, 0, 1ull << 28, 0, 0), 0); /* 1 TiB */
	struct gm_space_stats st;
	gm_space_stats(sp, &st);
	CHECK_EQ(st.bytes_rmap, 0);
	struct gm_rmap_cache *cache;
	gm_rmap_cache_create(&cache, 0, &cnt.allocator);
	static uint64_t sptes[64];
	gm_rcu_read_lock();
	const struct gm_space_slot *p = gm_space_id_to_slot(sp, 1);
	CHECK(gm_space_rmap_head(sp, p, 12345, false) == NULL);
	for (int i = 0; i < 64; i++) {
		struct gm_rmap_head *h = gm_space_rmap_head(sp, p, 12345 + (uint64_t)(i % 4) * 1000000, true);
		CHECK(h != NULL);
		CHECK_EQ(gm_rmap_cache_topup(cache, GM_RMAP_ADD_BLOCKS), 0);
		int rc = gm_rmap_add(h, &sptes[i], cache);
		if (rc == -ENOMEM) { /* a table must grow: topup fetches it (rmap.h) */
			CHECK_EQ(gm_rmap_cache_topup(cache, GM_RMAP_ADD_BLOCKS), 0);
			rc = gm_rmap_add(h, &sptes[i], cache);
		}
		CHECK_EQ(rc, 0);
	}
	CHECK_EQ(gm_rmap_count(gm_space_rmap_head(sp, p, 12345, false)), 16);
	CHECK(gm_space_rmap_head(sp, p, 1ull << 28, true) == NULL);
	gm_rcu_read_unlock();
	gm_space_stats(sp, &st);
	CHECK(st.bytes_rmap > 0 && st.bytes_rmap < 64 * 1024);
	/* deleting the slot with entries left frees them after grace periods */
	CHECK_EQ(gm_space_slot_remove(sp, 1), 0);
	CHECK_EQ(gm_space_slot_add(sp, 2, 0, 1, 0, 0), 0);
	gm_rcu_barrier();
	gm_rcu_barrier();
	gm_space_stats(sp, &st);
	CHECK_EQ(st.bytes_rmap, 0);
	gm_rmap_cache_destroy(cache);
	gm_space_destroy(sp);
	CHECK_EQ(gm_alloc_counting_bytes(&cnt), 0);
}

/* The first rmap chunk of a slot allocates its map too: either failing
 * leaves nothing behind, and the next try works. */
GM_TEST(rmaps_out_of_memory_leaves_nothing)
{
	struct gm_space *sp;
	struct gm_alloc_counting cnt;
	struct gm_alloc_failing fail;
	reg();
	gm_alloc_counting_init(&cnt, NULL);
	gm_alloc_failing_init(&fail, &cnt.allocator);
	CHECK_EQ(gm_space_create(&sp, NULL, 0, &fail.allocator), 0);
	CHECK_EQ(gm_space_slot_add(sp, 1, 0, 1u << 20, 0, 0), 0);
	gm_rcu_barrier();
	gm_rcu_barrier();
	gm_rcu_read_lock();
	const struct gm_space_slot *p = gm_space_id_to_slot(sp, 1);
	for (uint64_t nth = 1; nth <= 4; nth++) {
		for (uint64_t chunk = 0; chunk < 2; chunk++) { /* first, then second */
			uint64_t gfn = chunk * 4096 + nth;
			if (chunk && !gm_space_rmap_head(sp, p, 0, true))
				CHECK(0);
			size_t bytes = gm_alloc_counting_bytes(&cnt);
			struct gm_space_stats st0, st1;
			gm_space_stats(sp, &st0);
			gm_alloc_failing_arm_nth(&fail, nth, false);
			struct gm_rmap_head *h = gm_space_rmap_head(sp, p, gfn, true);
			gm_alloc_failing_disarm(&fail);
			gm_space_stats(sp, &st1);
			if (!h) {
				CHECK_EQ(gm_alloc_counting_bytes(&cnt), bytes);
				CHECK_EQ(st1.bytes_rmap, st0.bytes_rmap);
				CHECK(gm_space_rmap_head(sp, p, gfn, false) == NULL);
				CHECK(gm_space_rmap_head(sp, p, gfn, true) != NULL);
			}
			gm_space_stats(sp, &st1);
			CHECK_EQ(st1.bytes_rmap, gm_alloc_counting_bytes(&cnt) - bytes + st0.bytes_rmap);
		}
		gm_rcu_read_unlock();
		/* a fresh slot (no map yet) for the next nth */
		CHECK_EQ(gm_space_slot_remove(sp, 1), 0);
		CHECK_EQ(gm_space_slot_add(sp, 1, 0, 1u << 20, 0, 0), 0);
		gm_rcu_barrier();
		gm_rcu_barrier();
		gm_rcu_read_lock();
		p = gm_space_id_to_slot(sp, 1);
	}
	gm_rcu_read_unlock();
	gm_space_destroy(sp);
	CHECK_EQ(gm_alloc_counting_bytes(&cnt), 0);
}

GM_TEST(cache_and_stats)
{
	struct gm_space *sp;
	struct gm_alloc_counting cnt;
	reg();
	gm_alloc_counting_init(&cnt, NULL);
	CHECK_EQ(gm_space_create(&sp, NULL, 0, &cnt.allocator), 0);
	CHECK_EQ(gm_space_slot_add(sp, 1, 0, 1000, 0x100000, 0), 0);
	struct gm_space_cache c;
	gm_space_cache_init(&c);
	uint64_t hva;
	gm_rcu_read_lock();
	CHECK_EQ(gm_space_gfn_to_hva(sp, &c, 5, &hva), 0);
	CHECK(c.slot == NULL && c.generation == gm_space_generation(sp)); /* hva: no slot */
	const struct gm_space_slot *sp5;
	CHECK_EQ(gm_space_gfn_to_slot(sp, &c, 5, &sp5), 0); /* refills with the slot */
	CHECK(c.slot == sp5 && sp5->id == 1);
	CHECK_EQ(gm_space_gfn_to_slot(sp, &c, 6, &sp5), 0); /* a hit now */
	CHECK(c.slot == sp5);
	gm_rcu_read_unlock();
	CHECK_EQ(gm_space_slot_move(sp, 1, 5000), 0);
	gm_rcu_read_lock();
	CHECK_EQ(gm_space_gfn_to_hva(sp, &c, 5, &hva), -ENOENT); /* stale cache not used */
	CHECK_EQ(gm_space_gfn_to_hva(sp, &c, 5005, &hva), 0);
	CHECK_EQ(hva, 0x100000 + 5 * 4096);
	gm_rcu_read_unlock();
	gm_rcu_barrier();
	gm_rcu_barrier();
	struct gm_space_stats st;
	gm_space_stats(sp, &st);
	CHECK_EQ(st.slots, 1);
	CHECK_EQ(st.guest_pages, 1000);
	/* exact, except empty retire batches the indexes keep in reserve */
	CHECK(st.bytes_total <= gm_alloc_counting_bytes(&cnt));
	CHECK(gm_alloc_counting_bytes(&cnt) - st.bytes_total <= 8 * 1000);
	gm_space_destroy(sp);
}

/* ---- the gfn index at scale: many blocks, crowded and sparse buckets ---- */

#define BIG_N 1500

struct big {
	bool present[BIG_N];
	uint64_t base[BIG_N], npages[BIG_N];
};

/* A base in one of the clusters that phase allows: a dense low range
 * (phase 0: every bucket holds one or two blocks), then also a cluster
 * near 2^40 and one just below UINT64_MAX (the low ranges then crowd into
 * one bucket: the fallback search). */
static uint64_t big_base(struct gm_rng *r, int phase, uint64_t *npages)
{
	*npages = 1 + gm_rng_below(r, 8);
	switch (phase ? gm_rng_below(r, 3) : 0) {
	case 0: return gm_rng_below(r, 1u << 16);
	case 1: return (1ull << 40) + gm_rng_below(r, 1u << 14);
	default: return GM_SPACE_GFN_LIMIT - gm_rng_below(r, 1u << 12) - *npages;
	}
}

static bool big_overlaps(const struct big *m, uint32_t skip, uint64_t base, uint64_t np)
{
	for (uint32_t i = 0; i < BIG_N; i++)
		if (i != skip && m->present[i] && base <= m->base[i] + m->npages[i] - 1 &&
		    m->base[i] <= base + np - 1)
			return true;
	return false;
}

/* gfn -> hva (with and without a cache) and gfn -> slot near random slots
 * and at random, against a scan of the model. */
static void big_check(struct gm_space *sp, const struct big *m, struct gm_rng *r)
{
	CHECK_VALID(gm_space_validate(sp, &reason), reason);
	struct gm_space_cache cache;
	gm_space_cache_init(&cache);
	gm_rcu_read_lock();
	for (int q = 0; q < 64; q++) {
		uint32_t id = (uint32_t)gm_rng_below(r, BIG_N);
		uint64_t gfn = m->present[id] ? m->base[id] + m->npages[id] / 2 - 2 +
						 gm_rng_below(r, m->npages[id] + 4)
					     : gm_rng_next(r);
		int want = -1;
		for (int i = 0; i < BIG_N; i++)
			if (m->present[i] && gfn - m->base[i] < m->npages[i])
				want = i;
		uint64_t hva = 0;
		int rc = gm_space_gfn_to_hva(sp, q & 1 ? &cache : NULL, gfn, &hva);
		const struct gm_space_slot *p = NULL;
		int rs = gm_space_gfn_to_slot(sp, q & 2 ? &cache : NULL, gfn, &p);
		if (want < 0) {
			CHECK_EQ(rc, -ENOENT);
			CHECK_EQ(rs, -ENOENT);
			continue;
		}
		CHECK_EQ(rc, 0);
		CHECK_EQ(hva, ((uint64_t)want << 32) + ((gfn - m->base[want]) << 12));
		CHECK_EQ(rs, 0);
		CHECK_EQ(p->id, (uint32_t)want);
	}
	gm_rcu_read_unlock();
}

GM_TEST(gfn_index_many_slots_skewed)
{
	struct gm_rng *r = gm_test_rng();
	struct gm_space *sp;
	reg();
	CHECK_EQ(gm_space_create(&sp, NULL, 0, NULL), 0);
	struct big *m = calloc(1, sizeof(*m));
	uint64_t steps = gm_test_iters(6000);
	for (uint64_t i = 0; i < steps; i++) {
		int phase = i >= steps / 2;
		uint32_t id = (uint32_t)gm_rng_below(r, BIG_N);
		uint64_t np, base = big_base(r, phase, &np);
		int rc, want;
		if (!m->present[id]) { /* add (ids fill up: the index grows) */
			want = big_overlaps(m, id, base, np) ? -EEXIST : 0;
			rc = gm_space_slot_add(sp, id, base, np, (uint64_t)id << 32, 0);
			if (!want) {
				m->present[id] = true;
				m->base[id] = base;
				m->npages[id] = np;
			}
		} else if (gm_rng_chance(r, 1, 3)) {
			want = 0;
			rc = gm_space_slot_remove(sp, id);
			m->present[id] = false;
		} else {
			bool past_max = base + m->npages[id] > GM_SPACE_GFN_LIMIT; /* bad input */
			want = past_max ? -EINVAL : big_overlaps(m, id, base, m->npages[id]) ? -EEXIST : 0;
			rc = gm_space_slot_move(sp, id, base);
			if (!want)
				m->base[id] = base;
		}
		CHECK_EQ(rc, want);
		if (i % 64 == 0 || i + 1 == steps)
			big_check(sp, m, r);
	}
	gm_space_destroy(sp);
	free(m);
}

GM_TEST_MAIN()
