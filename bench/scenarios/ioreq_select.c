/*
 * bench/scenarios/ioreq_select.c — Xen's ioreq server selection (seed
 * 002_23177cd9ab4d429f.txt).
 *
 * Four ioreq servers, each with a few MMIO ranges and n write-protected
 * guest pages (XenGT's shadowed page tables: several hundred per vGPU on
 * Haswell, several thousand on Broadwell), scattered over a 36-bit frame
 * space or clustered in runs. A stream of trapped accesses asks, server by
 * server, whether the address is in its rangeset of that access type — Xen's
 * hvm_select_ioreq_server(). Rows:
 *   select  one trapped access resolved to its server (90% write-protected
 *           pages, 5% MMIO, 5% addresses no server claims)
 *   add     adding one range to a server's set of n ranges
 *   remove  removing one range from a server's set of n ranges
 * bytes_per_entry = bytes of the write-protect sets per range held.
 *
 * Structures: gm_rangeset (RCU mode, one read-side section around each
 * batch of selections; the four servers' sets of each kind are one
 * gm_rangeset_group, formed before the pages are added, and a selection is
 * one gm_rangeset_group_select; bytes include the group's index),
 * xenlist (Xen's sorted linked list), rbranges (a red-black tree of
 * ranges, the seed's proposal, BSD sys/tree.h).
 */
#include "gmbench.h"
#include "rbranges.h"
#include "xenlist.h"

#include <gmtrack/rangeset.h>
#include <gmtrack/rcu.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSERVERS 4
#define NMMIO 4

/* ---- the three designs behind one small interface ----------------------- */
struct impl {
	const char *name;
	void *(*create)(const struct gm_allocator *a);
	int (*add)(void *set, uint64_t first, uint64_t last);
	int (*remove)(void *set, uint64_t first, uint64_t last);
	bool (*contains)(const void *set, uint64_t index);
	void (*destroy)(void *set);
	/* Optional: a structure's own answer to the whole question. group()
	 * gathers sets[0..n-1] (in that order of priority) before any range is
	 * added, select() returns the first of them holding index, or -ENOENT.
	 * NULL: the scenario asks set by set with `contains`, stopping at the
	 * first hit. */
	void *(*group)(void *const *sets, unsigned n, const struct gm_allocator *a);
	int (*select)(const void *group, uint64_t index);
	void (*group_destroy)(void *group);
};

static void *gm_create(const struct gm_allocator *a)
{
	struct gm_rangeset *s;
	return gm_rangeset_create(&s, &(struct gm_rangeset_config){"wp", 0}, GM_RCU, a) ? NULL : s;
}
static int gm_add(void *s, uint64_t f, uint64_t l) { return gm_rangeset_add(s, f, l); }
static int gm_remove(void *s, uint64_t f, uint64_t l) { return gm_rangeset_remove(s, f, l); }
static bool gm_contains(const void *s, uint64_t i) { return gm_rangeset_contains(s, i); }
static void gm_destroy(void *s) { gm_rangeset_destroy(s); }
static void *gm_group(void *const *sets, unsigned n, const struct gm_allocator *a)
{
	struct gm_rangeset_group *g;
	if (gm_rangeset_group_create(&g, GM_RCU, a))
		return NULL;
	for (unsigned i = 0; i < n; i++)
		if (gm_rangeset_group_join(g, sets[i]) != (int)i) {
			gm_rangeset_group_destroy(g);
			return NULL;
		}
	return g;
}
static int gm_select(const void *g, uint64_t i) { return gm_rangeset_group_select(g, i); }
static void gm_group_destroy(void *g)
{
	gm_rangeset_group_destroy(g);
}

static void *xl_create(const struct gm_allocator *a)
{
	struct bl_xenlist *l = malloc(sizeof(*l));
	if (l)
		bl_xenlist_init(l, a);
	return l;
}
static int xl_add(void *s, uint64_t f, uint64_t l) { return bl_xenlist_add(s, f, l); }
static int xl_remove(void *s, uint64_t f, uint64_t l) { return bl_xenlist_remove(s, f, l); }
static bool xl_contains(const void *s, uint64_t i) { return bl_xenlist_contains(s, i, i); }
static void xl_destroy(void *s) { bl_xenlist_destroy(s); free(s); }

static void *rb_create(const struct gm_allocator *a)
{
	struct bl_rbranges *t = malloc(sizeof(*t));
	if (t)
		bl_rbranges_init(t, a);
	return t;
}
static int rb_add(void *s, uint64_t f, uint64_t l) { return bl_rbranges_store(s, f, l, 1); }
static int rb_remove(void *s, uint64_t f, uint64_t l) { return bl_rbranges_erase(s, f, l); }
static bool rb_contains(const void *s, uint64_t i)
{
	uint64_t v, f, l;
	return bl_rbranges_load(s, i, &v, &f, &l) == 0;
}
static void rb_destroy(void *s) { bl_rbranges_destroy(s); free(s); }

static const struct impl impls[] = {
	{"gm_rangeset", gm_create, gm_add, gm_remove, gm_contains, gm_destroy, gm_group, gm_select,
	 gm_group_destroy},
	{"rbranges", rb_create, rb_add, rb_remove, rb_contains, rb_destroy, NULL, NULL, NULL},
	{"xenlist", xl_create, xl_add, xl_remove, xl_contains, xl_destroy, NULL, NULL, NULL},
};

/* ---- the workload ------------------------------------------------------- */
struct range {
	uint64_t first, last;
};

struct access {
	uint64_t addr;
	int mmio;   /* 1: an MMIO access, 0: a write to guest memory (pfn) */
	int server; /* expected answer, -ENOENT for none */
};

struct server {
	void *wp, *mmio;
};

struct workload {
	struct range *wp[NSERVERS];  /* n ranges each, pfns */
	struct range mmio[NSERVERS][NMMIO];
	uint64_t n;
	struct access *acc;
	uint64_t nacc;
};

static int range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	return (x->first > y->first) - (x->first < y->first);
}

/* 4n disjoint, non-touching ranges: scattered (single pages at random
 * 36-bit frames) or clustered (runs of 1-8 pages a few frames apart, in
 * regions of 512 frames); dealt to servers in random order. */
static void make_ranges(struct workload *w, const char *dist, struct gmb_rng *rng)
{
	uint64_t total = NSERVERS * w->n;
	struct range *all = malloc(total * sizeof(*all));
	bool clustered = !strcmp(dist, "clustered");
	uint64_t at = 1ULL << 20;
	for (uint64_t i = 0; i < total; i++) {
		if (clustered) {
			if (i % 32 == 0) /* a new region: jump ahead */
				at += 512 + gmb_rng_below(rng, 1ULL << 24);
			uint64_t len = 1 + gmb_rng_below(rng, 8);
			all[i] = (struct range){at, at + len - 1};
			at += len + 1 + gmb_rng_below(rng, 8);
		} else {
			uint64_t pfn = gmb_rng_below(rng, 1ULL << 36);
			all[i] = (struct range){pfn, pfn};
		}
	}
	if (!clustered) { /* make them distinct and non-touching */
		qsort(all, total, sizeof(*all), range_cmp);
		for (uint64_t i = 1; i < total; i++)
			if (all[i].first <= all[i - 1].last + 1)
				all[i].first = all[i].last = all[i - 1].last + 2;
	}
	for (uint64_t i = total - 1; i > 0; i--) { /* shuffle */
		uint64_t j = gmb_rng_below(rng, i + 1);
		struct range t = all[i];
		all[i] = all[j];
		all[j] = t;
	}
	for (int s = 0; s < NSERVERS; s++) {
		w->wp[s] = malloc(w->n * sizeof(struct range));
		memcpy(w->wp[s], all + s * w->n, w->n * sizeof(struct range));
		for (int k = 0; k < NMMIO; k++) { /* a few BARs per server */
			uint64_t base = 0xf0000000ULL + (uint64_t)(s * NMMIO + k) * 0x100000;
			w->mmio[s][k] = (struct range){base, base + 0xfff};
		}
	}
	free(all);
}

static void make_accesses(struct workload *w, struct gmb_rng *rng)
{
	for (uint64_t i = 0; i < w->nacc; i++) {
		struct access *a = &w->acc[i];
		uint64_t kind = gmb_rng_below(rng, 100);
		int s = (int)gmb_rng_below(rng, NSERVERS);
		if (kind < 90) {
			struct range r = w->wp[s][gmb_rng_below(rng, w->n)];
			*a = (struct access){r.first + gmb_rng_below(rng, r.last - r.first + 1), 0, s};
		} else if (kind < 95) {
			struct range r = w->mmio[s][gmb_rng_below(rng, NMMIO)];
			*a = (struct access){r.first + gmb_rng_below(rng, 0x1000), 1, s};
		} else { /* above every frame the workload uses: nobody's */
			*a = (struct access){(1ULL << 40) + gmb_rng_below(rng, 1ULL << 30), 0, -ENOENT};
		}
	}
}

/* ---- timed bodies ------------------------------------------------------- */
struct run {
	const struct impl *impl;
	struct workload *w;
	struct server srv[NSERVERS];
	void *wp_group, *mmio_group; /* for impl->select */
	uint64_t k;          /* ranges removed and re-added per add/remove run */
	uint64_t *victims;   /* indices into wp[s], k per server */
	uint64_t nacc;       /* selections timed per run (w->acc[0..nacc)) */
	bool rcu, built;
	uint64_t wrong;
	double bytes;        /* bytes per range of the write-protect sets */
	struct gm_alloc_counting count;
};

/* hvm_select_ioreq_server(): the first server whose set of the access's
 * type holds the address. Asked set by set (Xen's loop, stopping at the
 * first hit) unless the structure answers the whole question itself
 * (gm_rangeset_group_select: one probe of the group's index). */
static uint64_t body_select(void *arg)
{
	struct run *r = arg;
	const struct impl *im = r->impl;
	uint64_t wrong = 0;
	if (r->rcu)
		gm_rcu_read_lock();
	for (uint64_t i = 0; i < r->nacc; i++) {
		const struct access *a = &r->w->acc[i];
		int found = -ENOENT;
		if (im->select) {
			found = im->select(a->mmio ? r->mmio_group : r->wp_group, a->addr);
			wrong += found != a->server;
			continue;
		}
		for (int s = 0; s < NSERVERS; s++) {
			if (im->contains(a->mmio ? r->srv[s].mmio : r->srv[s].wp, a->addr)) {
				found = s;
				break;
			}
		}
		wrong += found != a->server;
	}
	if (r->rcu)
		gm_rcu_read_unlock();
	r->wrong += wrong;
	return r->nacc;
}

static uint64_t body_remove(void *arg)
{
	struct run *r = arg;
	for (int s = 0; s < NSERVERS; s++)
		for (uint64_t i = 0; i < r->k; i++) {
			struct range x = r->w->wp[s][r->victims[s * r->k + i]];
			r->wrong += r->impl->remove(r->srv[s].wp, x.first, x.last) != 0;
		}
	return NSERVERS * r->k;
}

static uint64_t body_add(void *arg)
{
	struct run *r = arg;
	for (int s = 0; s < NSERVERS; s++)
		for (uint64_t i = 0; i < r->k; i++) {
			struct range x = r->w->wp[s][r->victims[s * r->k + i]];
			r->wrong += r->impl->add(r->srv[s].wp, x.first, x.last) != 0;
		}
	return NSERVERS * r->k;
}

/* add is timed after an untimed remove of the same ranges, and the other
 * way round, so every run starts from the full set of n ranges. */
static void setup_add(void *arg) { body_remove(arg); }
static void teardown_remove(void *arg) { body_add(arg); }

static bool build(struct run *r, struct gm_alloc_counting *count)
{
	void *wp[NSERVERS], *mmio[NSERVERS];
	for (int s = 0; s < NSERVERS; s++) {
		wp[s] = r->srv[s].wp = r->impl->create(&count->allocator);
		mmio[s] = r->srv[s].mmio = r->impl->create(NULL);
		if (!r->srv[s].wp || !r->srv[s].mmio)
			return false;
	}
	/* The servers register first; their pages get write-protected later
	 * (so a group's index grows with them, as it would in Xen). */
	if (r->impl->group) {
		r->wp_group = r->impl->group(wp, NSERVERS, &count->allocator);
		r->mmio_group = r->impl->group(mmio, NSERVERS, NULL);
		if (!r->wp_group || !r->mmio_group)
			return false;
	}
	for (int s = 0; s < NSERVERS; s++) {
		/* Sorted insertion: the cheapest order for the list. */
		struct range *sorted = malloc(r->w->n * sizeof(*sorted));
		memcpy(sorted, r->w->wp[s], r->w->n * sizeof(*sorted));
		qsort(sorted, r->w->n, sizeof(*sorted), range_cmp);
		for (uint64_t i = 0; i < r->w->n; i++)
			if (r->impl->add(r->srv[s].wp, sorted[i].first, sorted[i].last))
				return false;
		free(sorted);
		for (int k = 0; k < NMMIO; k++)
			if (r->impl->add(r->srv[s].mmio, r->w->mmio[s][k].first,
					 r->w->mmio[s][k].last))
				return false;
	}
	return true;
}

static void teardown(struct run *r)
{
	if (r->wp_group)
		r->impl->group_destroy(r->wp_group);
	if (r->mmio_group)
		r->impl->group_destroy(r->mmio_group);
	for (int s = 0; s < NSERVERS; s++) {
		if (r->srv[s].wp)
			r->impl->destroy(r->srv[s].wp);
		if (r->srv[s].mmio)
			r->impl->destroy(r->srv[s].mmio);
	}
}

/* Builds im's four servers' sets into *r (r->built says if it worked). */
static void run_prepare(struct run *r, const struct impl *im, struct workload *w,
			struct gmb_rng *rng)
{
	*r = (struct run){.impl = im, .w = w, .rcu = im->create == gm_create,
			  .nacc = w->nacc};
	gm_alloc_counting_init(&r->count, NULL);
	bool slow = im->create == xl_create;
	/* The list walks n/2 nodes per server per access: fewer accesses. */
	if (slow && w->n >= 4096)
		r->nacc = w->nacc / (w->n / 1024);
	r->k = w->n / 8 < 256 ? w->n / 8 : 256;
	if (slow && w->n >= 16384)
		r->k = 32;
	r->victims = malloc(NSERVERS * r->k * sizeof(uint64_t));
	for (int s = 0; s < NSERVERS; s++) /* distinct victims per server */
		for (uint64_t i = 0; i < r->k; i++)
			r->victims[s * r->k + i] = i * (w->n / r->k) + gmb_rng_below(rng, w->n / r->k);
	r->built = build(r, &r->count);
	if (!r->built) {
		fprintf(stderr, "ioreq_select: %s: build failed\n", im->name);
		return;
	}
	gm_rcu_barrier(); /* deferred frees of the build are not the set's size */
	r->bytes = (double)gm_alloc_counting_bytes(&r->count) / (double)(NSERVERS * w->n);
}

/* The three designs on one workload: selection, then adds, then removes,
 * each side by side (gmb_measure_group: the targets are their ratios). */
static void run_all(struct gmb_ctx *ctx, struct workload *w, const char *dist,
		    struct gmb_rng *rng)
{
	enum { N = sizeof(impls) / sizeof(impls[0]) };
	struct run r[N];
	struct gmb_case cases[N];
	double t[N];
	bool all = true;
	for (int i = 0; i < N; i++) {
		run_prepare(&r[i], &impls[i], w, rng);
		all &= r[i].built;
		cases[i] = (struct gmb_case){.arg = &r[i], .body = body_select};
	}
	if (all) {
		gmb_measure_group(ctx, cases, N, t);
		for (int i = 0; i < N; i++)
			gmb_row(ctx, impls[i].name, "select", w->n, dist, t[i], r[i].bytes);
	}
	if (all) { /* the changes side by side too: the targets compare them */
		for (int i = 0; i < N; i++)
			cases[i] = (struct gmb_case){.arg = &r[i], .setup = setup_add,
						     .body = body_add};
		gmb_measure_group(ctx, cases, N, t);
		for (int i = 0; i < N; i++)
			gmb_row(ctx, impls[i].name, "add", w->n, dist, t[i], r[i].bytes);
		for (int i = 0; i < N; i++)
			cases[i] = (struct gmb_case){.arg = &r[i], .body = body_remove,
						     .teardown = teardown_remove};
		gmb_measure_group(ctx, cases, N, t);
		for (int i = 0; i < N; i++)
			gmb_row(ctx, impls[i].name, "remove", w->n, dist, t[i], r[i].bytes);
	}
	for (int i = 0; i < N && all; i++) {
		if (r[i].wrong)
			gmb_note(ctx, "%s n=%llu %s: %llu wrong answers or failed changes",
				 impls[i].name, (unsigned long long)w->n, dist,
				 (unsigned long long)r[i].wrong);
	}
	for (int i = 0; i < N; i++) {
		teardown(&r[i]);
		free(r[i].victims);
	}
}

/* Issue 18's targets at n ranges per server: add and remove at most
 * rbranges' time, selection at most a quarter of it. */
static void change_targets(struct gmb_ctx *ctx, uint64_t n, const char *dist)
{
	static const char *const ops[3] = {"add", "remove", "select"};
	char what[160];
	for (int o = 0; o < 3; o++) {
		double bound = o == 2 ? 0.25 : 1.0;
		snprintf(what, sizeof(what), "%s at %llu ranges/server (%s) <= %.2gx rbranges",
			 ops[o], (unsigned long long)n, dist, bound);
		gmb_target_ratio(ctx, what, (struct gmb_sel){"gm_rangeset", ops[o], n, dist},
				 (struct gmb_sel){"rbranges", ops[o], n, dist}, GMB_AT_MOST, bound);
	}
}


/* The seed's question (Xen's lists vs a tree), at the largest size run. */
static void answer(struct gmb_ctx *ctx)
{
	uint64_t n = gmb_largest_n(ctx, "gm_rangeset", "select", "scattered");
	double gm = gmb_value_of(ctx, "gm_rangeset", "select", n, "scattered", false);
	double xl = gmb_value_of(ctx, "xenlist", "select", n, "scattered", false);
	gmb_answer(ctx, "at %llu write-protected pages per server, choosing the server of a "
		   "trapped access costs %.0f ns through a gm_rangeset group, against %.0f ns "
		   "for Xen's linked lists (%.0fx) and %.0f ns for red-black trees; %.0f B per "
		   "range (trees: %.0f), and a remove costs %.0f ns (trees: %.0f).", (unsigned long long)n,
		   gm, xl, gm > 0 ? xl / gm : 0,
		   gmb_value_of(ctx, "rbranges", "select", n, "scattered", false),
		   gmb_value_of(ctx, "gm_rangeset", "select", n, "scattered", true),
		   gmb_value_of(ctx, "rbranges", "select", n, "scattered", true),
		   gmb_value_of(ctx, "gm_rangeset", "remove", n, "scattered", false),
		   gmb_value_of(ctx, "rbranges", "remove", n, "scattered", false));
}

static void run(struct gmb_ctx *ctx)
{
	gm_rcu_register_thread();
	gmb_reference(ctx, "xenlist");
	uint64_t max = gmb_max_size(ctx, gmb_quick(ctx) ? 1024 : 65536);
	static const char *dists[] = {"scattered", "clustered"};
	struct gmb_rng rng;
	gmb_rng_init(&rng, gmb_seed(ctx));
	for (uint64_t n = 256; n <= max; n *= 4) {
		for (int d = 0; d < 2; d++) {
			struct workload w = {.n = n, .nacc = gmb_quick(ctx) ? 4096 : 65536};
			make_ranges(&w, dists[d], &rng);
			w.acc = malloc(w.nacc * sizeof(*w.acc));
			make_accesses(&w, &rng);
			run_all(ctx, &w, dists[d], &rng);
			for (int s = 0; s < NSERVERS; s++)
				free(w.wp[s]);
			free(w.acc);
		}
	}
	for (int d = 0; d < 2; d++) {
		char what[160];
		struct gmb_sel gm = {"gm_rangeset", "select", 4096, dists[d]};
		snprintf(what, sizeof(what), "select at 4096 ranges/server (%s) >= 100x faster than xenlist", dists[d]);
		gmb_target_ratio(ctx, what, (struct gmb_sel){"xenlist", "select", 4096, dists[d]}, gm,
				 GMB_AT_LEAST, 100.0);
		snprintf(what, sizeof(what), "select at 4096 ranges/server (%s) <= 0.5x rbranges", dists[d]);
		gmb_target_ratio(ctx, what, gm, (struct gmb_sel){"rbranges", "select", 4096, dists[d]},
				 GMB_AT_MOST, 0.5);
		for (uint64_t n = 256; n <= max; n *= 4)
			change_targets(ctx, n, dists[d]);
		for (uint64_t n = 256; n <= max; n *= 4) {
			snprintf(what, sizeof(what), "bytes/range <= rbranges at n=%llu (%s)",
				 (unsigned long long)n, dists[d]);
			gmb_target_bytes_ratio(ctx, what,
					       (struct gmb_sel){"gm_rangeset", "select", n, dists[d]},
					       (struct gmb_sel){"rbranges", "select", n, dists[d]},
					       GMB_AT_MOST, 1.0);
		}
	}
	gmb_note(ctx, "gm_rangeset runs in RCU mode; selection holds one read-side "
		      "section per batch of accesses; each kind's four server sets "
		      "form a gm_rangeset_group (indexed once it holds 2048 small "
		      "ranges, so from n=1024 on) and a selection is one "
		      "gm_rangeset_group_select; gm_rangeset's bytes and add/remove "
		      "include the group's index; xenlist and rbranges are asked "
		      "set by set, stopping at the first hit; selections, adds and removes "
		      "are each timed side by side. xenlist's selection and "
		      "changes at n >= 4096 are timed on fewer operations (it walks "
		      "the list), same per-op meaning.");
	gm_rcu_unregister_thread();
	answer(ctx);
}

GMB_SCENARIO(ioreq_select, "Xen ioreq server selection over rangesets (seed 002)", run)
