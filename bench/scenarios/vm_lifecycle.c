/*
 * bench/scenarios/vm_lifecycle.c — one guest address space through a VM's
 * life: the scalable-memslots table (add, delete, move a slot;
 * set up all slots) at n = 10, 100, 509, 8194, 32764 slots, translations
 * (cache hit / miss), MMU-notifier hva invalidations, private/shared
 * conversions and dirty-log harvests.
 *
 * Layout at n slots: slot i maps gfn [i*512, i*512+255] (1 MiB) at hva
 * 0x7f0000000000 + i*2 MiB. Adds and moves go above the last slot.
 *
 * Rows (structure/op/n/memslots): gm_space; kvm2020 (sorted array, full
 * copy + grace period per change, lru hint + binary search, hva by linear
 * scan); vecsnap (rust-vmm: sorted vector copied per change, freed after a
 * grace period without waiting, binary search, hva by scan). Reference:
 * kvm2020. bytes_per_entry = metadata bytes per GiB of guest memory
 * (counting allocator). translate_* hold one read lock around a batch of
 * lookups and run on one thread (gm_space's per-thread cache is the
 * caller's; tests/space_stress_test.c runs readers on several threads).
 * convert: gm_space only (the baselines have no attributes). harvest: one
 * 1 TiB slot with 1000 dirty frames (n = 1); kvm2020's row is the flat
 * bitmap scan KVM_GET_DIRTY_LOG does, vecsnap has no dirty log.
 */
#include "gmbench.h"

#include "kvm2020.h"
#include "vecsnap.h"

#include <gmtrack/rcu.h>
#include <gmtrack/space.h>

#include <stdio.h>
#include <stdlib.h>

#define STRIDE 512ull
#define SLOT_PAGES 256ull
#define HVA0 0x7f0000000000ull
#define NQ 65536

struct world {
	uint64_t n;
	struct gm_alloc_counting cg, ck, cv;
	struct gm_space *sp;
	struct bl_kvm2020 kvm;
	struct bl_vecsnap vec;
	int which; /* 0 gm_space, 1 kvm2020, 2 vecsnap */
	uint64_t k; /* ops per timed run */
	uint64_t ks[3]; /* k for add and delete, by structure (move: <= n) */
	uint64_t *gfn_hit, *gfn_miss, *hva_a, *hva_b;
	struct gmb_rng rng;
};

static struct bl_memslot slot_of(uint64_t i, uint64_t base)
{
	return (struct bl_memslot){base, SLOT_PAGES, HVA0 + i * 2 * 1024 * 1024, (uint32_t)i, 0};
}

static int do_add(struct world *w, uint64_t id, uint64_t base)
{
	struct bl_memslot s = slot_of(id, base);
	switch (w->which) {
	case 0: return gm_space_slot_add(w->sp, s.id, s.base_gfn, s.npages, s.hva, 0);
	case 1: return bl_kvm2020_add(&w->kvm, &s);
	default: return bl_vecsnap_add(&w->vec, &s);
	}
}

static int do_delete(struct world *w, uint64_t id)
{
	switch (w->which) {
	case 0: return gm_space_slot_remove(w->sp, (uint32_t)id);
	case 1: return bl_kvm2020_delete(&w->kvm, (uint32_t)id);
	default: return bl_vecsnap_delete(&w->vec, (uint32_t)id);
	}
}

static int do_move(struct world *w, uint64_t id, uint64_t base)
{
	switch (w->which) {
	case 0: return gm_space_slot_move(w->sp, (uint32_t)id, base);
	case 1: return bl_kvm2020_move(&w->kvm, (uint32_t)id, base);
	default: return bl_vecsnap_move(&w->vec, (uint32_t)id, base);
	}
}

static uint64_t free_base(struct world *w, uint64_t j)
{
	return (w->n + 16 + j) * STRIDE;
}

static uint64_t setup_all(void *arg)
{
	struct world *w = arg;
	for (uint64_t i = 0; i < w->n; i++)
		if (do_add(w, i, i * STRIDE))
			abort();
	return w->n;
}

static uint64_t add_body(void *arg)
{
	struct world *w = arg;
	for (uint64_t j = 0; j < w->k; j++)
		if (do_add(w, w->n + j, free_base(w, j)))
			abort();
	return w->k;
}

static void add_undo(void *arg)
{
	struct world *w = arg;
	for (uint64_t j = 0; j < w->k; j++)
		do_delete(w, w->n + j);
}

static uint64_t delete_body(void *arg)
{
	struct world *w = arg;
	for (uint64_t j = 0; j < w->k; j++)
		if (do_delete(w, w->n + j))
			abort();
	return w->k;
}

static void delete_setup(void *arg)
{
	struct world *w = arg;
	for (uint64_t j = 0; j < w->k; j++)
		do_add(w, w->n + j, free_base(w, j));
}

static uint64_t move_id(struct world *w, uint64_t j)
{
	return (j * 7919) % w->n;
}

static uint64_t move_body(void *arg)
{
	struct world *w = arg;
	for (uint64_t j = 0; j < w->k; j++)
		if (do_move(w, move_id(w, j), free_base(w, j)))
			abort();
	return w->k;
}

static void move_undo(void *arg)
{
	struct world *w = arg;
	for (uint64_t j = 0; j < w->k; j++)
		do_move(w, move_id(w, j), move_id(w, j) * STRIDE);
}

static uint64_t translate(struct world *w, const uint64_t *gfns)
{
	uint64_t sum = 0, hva = 0;
	struct gm_space_cache c;
	gm_space_cache_init(&c);
	gm_rcu_read_lock();
	for (int r = 0; r < 4; r++) {
		for (uint64_t i = 0; i < NQ; i++) {
			if (w->which == 0)
				gm_space_gfn_to_hva(w->sp, &c, gfns[i], &hva);
			else if (w->which == 1)
				bl_kvm2020_gfn_to_hva(&w->kvm, gfns[i], &hva);
			else
				bl_vecsnap_gfn_to_hva(&w->vec, gfns[i], &hva);
			sum += hva;
		}
	}
	gm_rcu_read_unlock();
	gmb_sink(sum);
	return 4 * NQ;
}

static uint64_t hit_body(void *arg) { struct world *w = arg; return translate(w, w->gfn_hit); }
static uint64_t miss_body(void *arg) { struct world *w = arg; return translate(w, w->gfn_miss); }

static void count_hit(void *ctx, const struct bl_memslot *s, uint64_t a, uint64_t b)
{
	(void)s;
	*(uint64_t *)ctx += b - a + 1;
}

static uint64_t inval_body(void *arg)
{
	struct world *w = arg;
	uint64_t sum = 0, q = 4096;
	struct gm_space_hva_hit hits[8];
	gm_rcu_read_lock();
	for (uint64_t i = 0; i < q; i++) {
		if (w->which == 0) {
			long n = gm_space_hva_fill(w->sp, w->hva_a[i], w->hva_b[i], hits, 8);
			for (long j = 0; j < n && j < 8; j++)
				sum += hits[j].last_gfn - hits[j].first_gfn + 1;
		} else if (w->which == 1) {
			bl_kvm2020_hva_range(&w->kvm, w->hva_a[i], w->hva_b[i], count_hit, &sum);
		} else {
			bl_vecsnap_hva_range(&w->vec, w->hva_a[i], w->hva_b[i], count_hit, &sum);
		}
	}
	gm_rcu_read_unlock();
	gmb_sink(sum);
	return q;
}

static uint64_t convert_body(void *arg)
{
	struct world *w = arg;
	uint64_t q = 1024;
	for (uint64_t i = 0; i < q; i++) {
		uint64_t slot = gmb_rng_below(&w->rng, w->n);
		uint64_t off = gmb_rng_below(&w->rng, SLOT_PAGES / 64) * 64;
		uint64_t f = slot * STRIDE + off;
		gm_space_attr_set(w->sp, f, f + 63, i & 1 ? 1 : 2); /* private <-> shared */
	}
	return q;
}

static double meta_per_gib(size_t bytes, uint64_t n)
{
	return (double)bytes / ((double)n * SLOT_PAGES * 4096 / (double)(1ull << 30));
}

/* Untimed setups that point the bodies at one structure (which, and its
 * k), for gmb_measure_group; THEN: the case's own setup. */
#define DEFINE_PICK(NAME, WHICH, THEN)                  \
	static void NAME(void *arg)                     \
	{                                               \
		struct world *w = arg;                  \
		w->which = WHICH;                       \
		w->k = w->ks[WHICH];                    \
		THEN;                                   \
	}
DEFINE_PICK(pick_gm, 0, (void)0)
DEFINE_PICK(pick_kvm, 1, (void)0)
DEFINE_PICK(pick_vec, 2, (void)0)
DEFINE_PICK(pick_gm_delete, 0, delete_setup(w))
DEFINE_PICK(pick_kvm_delete, 1, delete_setup(w))
DEFINE_PICK(pick_vec_delete, 2, delete_setup(w))
DEFINE_PICK(pick_gm_move, 0, w->k = w->k < w->n ? w->k : w->n)
DEFINE_PICK(pick_kvm_move, 1, w->k = w->k < w->n ? w->k : w->n)
DEFINE_PICK(pick_vec_move, 2, w->k = w->k < w->n ? w->k : w->n)

static void run_n(struct gmb_ctx *ctx, uint64_t n)
{
	static const char *names[3] = {"gm_space", "kvm2020", "vecsnap"};
	struct world *w = calloc(1, sizeof(*w));
	w->n = n;
	gmb_rng_init(&w->rng, gmb_seed(ctx) + n);
	w->gfn_hit = malloc(NQ * 8);
	w->gfn_miss = malloc(NQ * 8);
	w->hva_a = malloc(4096 * 8);
	w->hva_b = malloc(4096 * 8);
	uint64_t hs = n / 2;
	for (uint64_t i = 0; i < NQ; i++) {
		w->gfn_hit[i] = hs * STRIDE + gmb_rng_below(&w->rng, SLOT_PAGES);
		w->gfn_miss[i] = gmb_rng_below(&w->rng, n) * STRIDE + gmb_rng_below(&w->rng, SLOT_PAGES);
	}
	for (uint64_t i = 0; i < 4096; i++) {
		uint64_t s = gmb_rng_below(&w->rng, n);
		w->hva_a[i] = HVA0 + s * 2 * 1024 * 1024 + gmb_rng_below(&w->rng, SLOT_PAGES) * 4096;
		w->hva_b[i] = w->hva_a[i] + (gmb_rng_below(&w->rng, 4) ? 4095 : 2 * 1024 * 1024 - 1);
	}
	gm_alloc_counting_init(&w->cg, NULL);
	gm_alloc_counting_init(&w->ck, NULL);
	gm_alloc_counting_init(&w->cv, NULL);
	struct gm_space_config cfg = {.max_slots = (uint32_t)n + 1024}; /* room for add's extra slots */
	gm_space_create(&w->sp, &cfg, 0, &w->cg.allocator);
	bl_kvm2020_init(&w->kvm, &w->ck.allocator);
	bl_vecsnap_init(&w->vec, &w->cv.allocator);
	double bpgs[3];
	for (int s = 0; s < 3; s++) {
		w->which = s;
		gmb_progress(ctx, "vm_lifecycle n=%llu %s", (unsigned long long)n, names[s]);
		double ns = gmb_measure_n(ctx, &(struct gmb_case){.body = setup_all, .arg = w}, 1, false);
		gm_rcu_barrier();
		gm_rcu_barrier();
		size_t bytes = s == 0 ? gm_alloc_counting_bytes(&w->cg)
			     : s == 1 ? gm_alloc_counting_bytes(&w->ck) : gm_alloc_counting_bytes(&w->cv);
		double bpg = meta_per_gib(bytes, n);
		gmb_row(ctx, names[s], "setup", n, "memslots", ns, bpg);
		w->ks[s] = s == 0 ? 256 : s == 1 ? (n > 8000 ? 8 : 32) : (n > 8000 ? 32 : 128);
		bpgs[s] = bpg;
	}
	/* Every op with the three structures side by side (gmb_measure_group;
	 * each run's setup points the body at its structure). */
	static const struct {
		const char *op;
		uint64_t (*body)(void *);
		void (*setup[3])(void *);
		void (*teardown)(void *);
	} ops[] = {
		{"add", add_body, {pick_gm, pick_kvm, pick_vec}, add_undo},
		{"delete", delete_body, {pick_gm_delete, pick_kvm_delete, pick_vec_delete}, NULL},
		{"move", move_body, {pick_gm_move, pick_kvm_move, pick_vec_move}, move_undo},
		{"translate_hit", hit_body, {pick_gm, pick_kvm, pick_vec}, NULL},
		{"translate_miss", miss_body, {pick_gm, pick_kvm, pick_vec}, NULL},
		{"hva_invalidate", inval_body, {pick_gm, pick_kvm, pick_vec}, NULL},
	};
	for (unsigned o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
		struct gmb_case cases[3];
		double t[3];
		for (int s = 0; s < 3; s++)
			cases[s] = (struct gmb_case){.arg = w, .setup = ops[o].setup[s],
						     .body = ops[o].body,
						     .teardown = ops[o].teardown};
		gmb_measure_group(ctx, cases, 3, t);
		for (int s = 0; s < 3; s++)
			gmb_row(ctx, names[s], ops[o].op, n, "memslots", t[s], bpgs[s]);
	}
	w->which = 0;
	gm_space_attr_set(w->sp, 0, n * STRIDE - 1, 1); /* all private */
	double ns = gmb_measure(ctx, &(struct gmb_case){.arg = w, .body = convert_body});
	gm_rcu_barrier();
	gmb_row(ctx, "gm_space", "convert", n, "memslots", ns,
		meta_per_gib(gm_alloc_counting_bytes(&w->cg), n));
	gm_space_destroy(w->sp);
	bl_kvm2020_destroy(&w->kvm);
	bl_vecsnap_destroy(&w->vec);
	free(w->gfn_hit);
	free(w->gfn_miss);
	free(w->hva_a);
	free(w->hva_b);
	free(w);
}

/* ---- harvest: one 1 TiB slot, 1000 dirty frames ------------------------- */

#define TIB_PAGES (1ull << 28)

struct harvest {
	struct gm_space *sp;
	const struct gm_space_slot *slot;
	struct bl_flatlog flat;
	uint64_t offs[1000];
	bool flat_mode;
	uint64_t got;
};

static int sink_run(void *ctx, uint64_t f, uint64_t c)
{
	*(uint64_t *)ctx += f + c;
	return 0;
}

static void harvest_setup(void *arg)
{
	struct harvest *h = arg;
	gm_rcu_read_lock();
	for (int i = 0; i < 1000; i++) {
		if (h->flat_mode)
			bl_flatlog_mark(&h->flat, h->offs[i]);
		else
			gm_space_dirty_mark(h->sp, h->slot, h->offs[i]);
	}
	gm_rcu_read_unlock();
}

static void harvest_setup_gm(void *arg)
{
	((struct harvest *)arg)->flat_mode = false;
	harvest_setup(arg);
}

static void harvest_setup_flat(void *arg)
{
	((struct harvest *)arg)->flat_mode = true;
	harvest_setup(arg);
}

static uint64_t harvest_body(void *arg)
{
	struct harvest *h = arg;
	uint64_t sum = 0;
	if (h->flat_mode) {
		bl_flatlog_harvest(&h->flat, sink_run, &sum);
	} else {
		gm_rcu_read_lock();
		h->got = (uint64_t)gm_space_dirty_harvest(h->sp, h->slot, 0, UINT64_MAX, sink_run, &sum);
		gm_rcu_read_unlock();
	}
	gmb_sink(sum);
	return 1;
}

static void run_harvest(struct gmb_ctx *ctx)
{
	struct harvest *h = calloc(1, sizeof(*h));
	struct gm_alloc_counting cg, ck;
	struct gmb_rng r;
	gmb_rng_init(&r, gmb_seed(ctx));
	gm_alloc_counting_init(&cg, NULL);
	gm_alloc_counting_init(&ck, NULL);
	for (int i = 0; i < 1000; i++)
		h->offs[i] = gmb_rng_below(&r, TIB_PAGES);
	gm_space_create(&h->sp, NULL, 0, &cg.allocator);
	gm_space_slot_add(h->sp, 0, 0, TIB_PAGES, HVA0, GM_SPACE_SLOT_DIRTY_LOG);
	gm_rcu_read_lock();
	h->slot = gm_space_id_to_slot(h->sp, 0);
	gm_rcu_read_unlock();
	double gib = 1024;
	/* One after the other, not side by side (gmb_measure_group): between
	 * two of gm_space's harvests the flat scan would sweep 32 MiB through
	 * the caches and the TLB, and every harvest would start cold (measured
	 * so: 54-99 us, 1.4-3.2% of the scan; 22-50 us warm). Both are
	 * reported: the row is the warm one, the note gives the cold. */
	double ns = gmb_measure(ctx, &(struct gmb_case){.arg = h, .setup = harvest_setup_gm, .body = harvest_body});
	gmb_row(ctx, "gm_space", "harvest", 1, "memslots", ns, (double)gm_alloc_counting_bytes(&cg) / gib);
	if (h->got != 1000)
		gmb_note(ctx, "gm_space harvest found %llu frames, expected 1000", (unsigned long long)h->got);
	bl_flatlog_init(&h->flat, TIB_PAGES, &ck.allocator);
	double flat = gmb_measure(ctx, &(struct gmb_case){.arg = h, .setup = harvest_setup_flat, .body = harvest_body});
	gmb_row(ctx, "kvm2020", "harvest", 1, "memslots", flat, (double)gm_alloc_counting_bytes(&ck) / gib);
	double t[2];
	gmb_measure_group(ctx, (struct gmb_case[]){{.arg = h, .setup = harvest_setup_gm, .body = harvest_body},
						   {.arg = h, .setup = harvest_setup_flat, .body = harvest_body}},
			  2, t);
	gmb_note(ctx, "harvest with cold caches (each gm_space harvest right after a "
		      "flat scan): gm_space %.0f ns, flat scan %.0f ns, ratio %.4f; the "
		      "harvest row and target are measured warm (harvests back to back).",
		 t[0], t[1], t[0] / t[1]);
	bl_flatlog_destroy(&h->flat);
	gm_space_destroy(h->sp);
	free(h);
}

static void attr_footprint(struct gmb_ctx *ctx)
{
	struct gm_space *sp;
	struct gm_space_stats st;
	gm_space_create(&sp, NULL, 0, NULL);
	gm_space_slot_add(sp, 0, 0, TIB_PAGES, HVA0, 0);
	gm_space_attr_set(sp, 0, TIB_PAGES - 1, 1);
	gm_space_stats(sp, &st);
	char buf[64];
	snprintf(buf, sizeof(buf), "%zu B", st.bytes_attributes);
	gmb_target_verdict(ctx, "1 TiB guest all private, no protections: attribute metadata <= 64 B",
			   buf, st.bytes_attributes <= 64);
	gmb_note(ctx, "1 TiB guest (one slot, all private): %zu B total metadata, attributes %zu B "
		 "(one 24-byte range object), gfn/hva/id indexes of both layouts %zu B",
		 st.bytes_total, st.bytes_attributes,
		 st.bytes_gfn_index + st.bytes_hva_index + st.bytes_id_index);
	gm_space_destroy(sp);
}


/* One guest's memslots against KVM's 2020 copy-the-array design and
 * rust-vmm's sorted Vec, at the largest slot count run. */
static void answer(struct gmb_ctx *ctx)
{
	uint64_t n = gmb_largest_n(ctx, "gm_space", "add", "memslots");
	gmb_answer(ctx, "at %llu memslots a slot add costs %.0f ns in gm_space against %.0f ns "
		   "for KVM's 2020 memslots and %.0f ns for rust-vmm's snapshots; gfn->hva costs "
		   "%.1f ns on a vCPU cache hit and %.0f ns on a miss (rust-vmm's binary search: "
		   "%.0f ns).", (unsigned long long)n,
		   gmb_value_of(ctx, "gm_space", "add", n, "memslots", false),
		   gmb_value_of(ctx, "kvm2020", "add", n, "memslots", false),
		   gmb_value_of(ctx, "vecsnap", "add", n, "memslots", false),
		   gmb_value_of(ctx, "gm_space", "translate_hit", n, "memslots", false),
		   gmb_value_of(ctx, "gm_space", "translate_miss", n, "memslots", false),
		   gmb_value_of(ctx, "vecsnap", "translate_miss", n, "memslots", false));
}

static void run(struct gmb_ctx *ctx)
{
	static const uint64_t sizes[] = {10, 100, 509, 8194, 32764};
	uint64_t max = gmb_max_size(ctx, gmb_quick(ctx) ? 509 : 32764);
	gmb_reference(ctx, "kvm2020");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (sizes[i] <= max)
			run_n(ctx, sizes[i]);
	run_harvest(ctx);
	attr_footprint(ctx);
	static const char *ops[3] = {"add", "delete", "move"};
	for (int i = 0; i < 3; i++) {
		char what[96];
		snprintf(what, sizeof(what), "%s at 32764 slots >= 100x faster than kvm2020", ops[i]);
		gmb_target_ratio(ctx, what, (struct gmb_sel){"kvm2020", ops[i], 32764, "memslots"},
				 (struct gmb_sel){"gm_space", ops[i], 32764, "memslots"}, GMB_AT_LEAST, 100);
	}
	gmb_target_bound(ctx, "gfn->hva with a cache hit <= 5 ns at 32764 slots",
			 (struct gmb_sel){"gm_space", "translate_hit", 32764, "memslots"}, GMB_NS,
			 GMB_AT_MOST, 5);
	gmb_target_ratio(ctx, "gfn->hva with a miss <= 0.5x vecsnap's binary search at 32764 slots",
			 (struct gmb_sel){"gm_space", "translate_miss", 32764, "memslots"},
			 (struct gmb_sel){"vecsnap", "translate_miss", 32764, "memslots"}, GMB_AT_MOST, 0.5);
	gmb_target_ratio(ctx, "harvest 1 TiB slot, 1000 dirty frames <= 1% of the flat bitmap scan",
			 (struct gmb_sel){"gm_space", "harvest", 1, "memslots"},
			 (struct gmb_sel){"kvm2020", "harvest", 1, "memslots"}, GMB_AT_MOST, 0.01);
	gmb_note(ctx, "translate_*: one read lock around 4 x 65536 lookups, one thread; the cache is "
		 "the caller's per-vCPU struct gm_space_cache. add/delete/move: one commit per change.");
	answer(ctx);
}

GMB_SCENARIO(vm_lifecycle, "one guest address space: memslots, translations, conversions, dirty logs", run)
