/*
 * bench/scenarios/rangemap_basic.c — the range map's basic operations at
 * 10 .. 10^6 ranges (--size up to 10^7): store (random order, from
 * empty), load (random hits), iterate (all ranges), erase (all, random
 * order), find_gap (isolated only: 16 free indices from a random start).
 *
 * dist: isolated (ranges of 1..16 indices, gaps of 1..16, value = ordinal),
 * adjacent (no gaps, distinct values = ordinal), fewvalues (no gaps,
 * values 0..3, never equal to the left neighbour so nothing coalesces).
 * Rows: gm_rangemap (RCU mode), rbranges (red-black tree of ranges, BSD
 * sys/tree.h), sorted (binary search over sorted arrays: the lookup
 * reference; no updates). bytes_per_entry = bytes per stored range.
 */
#include "gmbench.h"
#include "rbranges.h"

#include <gmtrack/rangemap.h>
#include <gmtrack/rcu.h>

#include <stdio.h>
#include <stdlib.h>

enum dist { ISOLATED, ADJACENT, FEWVALUES, NDIST };
static const char *const dist_names[NDIST] = {"isolated", "adjacent", "fewvalues"};

struct layout {
	uint64_t n;
	uint64_t *first, *last, *value; /* in key order */
	uint64_t *order;                /* a random permutation of 0..n-1 */
	uint64_t *probe;                /* indices inside ranges */
	uint64_t nprobe;
	uint64_t *gmin;                 /* find_gap starts */
	uint64_t ngap;
};

static void layout_make(struct layout *l, enum dist d, uint64_t n, uint64_t nprobe,
			struct gmb_rng *rng)
{
	l->n = n;
	l->first = malloc(n * sizeof(uint64_t));
	l->last = malloc(n * sizeof(uint64_t));
	l->value = malloc(n * sizeof(uint64_t));
	l->order = malloc(n * sizeof(uint64_t));
	uint64_t pos = 0, prev = 99;
	for (uint64_t i = 0; i < n; i++) {
		if (d == ISOLATED)
			pos += 1 + gmb_rng_below(rng, 16);
		l->first[i] = pos;
		pos += gmb_rng_below(rng, 16);
		l->last[i] = pos++;
		if (d == FEWVALUES) {
			uint64_t v;
			do
				v = gmb_rng_below(rng, 4);
			while (v == prev);
			l->value[i] = prev = v;
		} else {
			l->value[i] = i;
		}
		l->order[i] = i;
	}
	for (uint64_t i = n - 1; i > 0; i--) {
		uint64_t j = gmb_rng_below(rng, i + 1), t = l->order[i];
		l->order[i] = l->order[j];
		l->order[j] = t;
	}
	l->nprobe = nprobe;
	l->probe = malloc(nprobe * sizeof(uint64_t));
	for (uint64_t i = 0; i < nprobe; i++) {
		uint64_t r = gmb_rng_below(rng, n);
		l->probe[i] = l->first[r] + gmb_rng_below(rng, l->last[r] - l->first[r] + 1);
	}
	l->ngap = nprobe / 16;
	l->gmin = malloc(l->ngap * sizeof(uint64_t));
	for (uint64_t i = 0; i < l->ngap; i++)
		l->gmin[i] = gmb_rng_below(rng, l->last[n - 1]);
}

static void layout_free(struct layout *l)
{
	free(l->first);
	free(l->last);
	free(l->value);
	free(l->order);
	free(l->probe);
	free(l->gmin);
}

#define GAP_SIZE 16

/* ---- gm_rangemap ---------------------------------------------------------- */

struct gm_case {
	const struct layout *l;
	struct gm_alloc_counting cnt;
	struct gm_rangemap *map;
	bool built;
};

static void gm_build(struct gm_case *c)
{
	gm_alloc_counting_init(&c->cnt, NULL);
	if (gm_rangemap_create(&c->map, GM_RCU, &c->cnt.allocator))
		abort();
	const struct layout *l = c->l;
	for (uint64_t i = 0; i < l->n; i++) {
		uint64_t r = l->order[i];
		if (gm_rangemap_store(c->map, l->first[r], l->last[r], l->value[r]))
			abort();
	}
}

static void gm_setup_empty(void *arg)
{
	struct gm_case *c = arg;
	gm_alloc_counting_init(&c->cnt, NULL);
	if (gm_rangemap_create(&c->map, GM_RCU, &c->cnt.allocator))
		abort();
}
static void gm_teardown(void *arg) { gm_rangemap_destroy(((struct gm_case *)arg)->map); }

static uint64_t gm_store_body(void *arg)
{
	struct gm_case *c = arg;
	const struct layout *l = c->l;
	for (uint64_t i = 0; i < l->n; i++) {
		uint64_t r = l->order[i];
		gm_rangemap_store(c->map, l->first[r], l->last[r], l->value[r]);
	}
	return l->n;
}

static uint64_t gm_erase_body(void *arg)
{
	struct gm_case *c = arg;
	const struct layout *l = c->l;
	for (uint64_t i = 0; i < l->n; i++) {
		uint64_t r = l->order[i];
		gm_rangemap_remove(c->map, l->first[r], l->last[r]);
	}
	return l->n;
}

static uint64_t gm_load_body(void *arg)
{
	struct gm_case *c = arg;
	const struct layout *l = c->l;
	uint64_t sum = 0, v = 0;
	gm_rcu_read_lock();
	for (uint64_t i = 0; i < l->nprobe; i++) {
		gm_rangemap_load(c->map, l->probe[i], &v, NULL, NULL);
		sum += v;
	}
	gm_rcu_read_unlock();
	gmb_sink(sum);
	return l->nprobe;
}

static uint64_t gm_iterate_body(void *arg)
{
	struct gm_case *c = arg;
	struct gm_rangemap_iter cur;
	struct gm_range r;
	uint64_t sum = 0, n = 0;
	gm_rcu_read_lock();
	gm_rangemap_iter_init(&cur, c->map, 0, UINT64_MAX, 0);
	while (gm_rangemap_iter_next(&cur, &r) == 0) {
		sum += r.value;
		n++;
	}
	gm_rcu_read_unlock();
	gmb_sink(sum);
	return n;
}

static uint64_t gm_find_gap_body(void *arg)
{
	struct gm_case *c = arg;
	const struct layout *l = c->l;
	uint64_t sum = 0, f = 0;
	gm_rcu_read_lock();
	for (uint64_t i = 0; i < l->ngap; i++) {
		gm_rangemap_find_gap(c->map, GAP_SIZE, 1, l->gmin[i], UINT64_MAX, &f);
		sum += f;
	}
	gm_rcu_read_unlock();
	gmb_sink(sum);
	return l->ngap;
}

/* ---- rbranges ---------------------------------------------------------------- */

struct rb_case {
	const struct layout *l;
	struct gm_alloc_counting cnt;
	struct bl_rbranges t;
};

static void rb_setup_empty(void *arg)
{
	struct rb_case *c = arg;
	gm_alloc_counting_init(&c->cnt, NULL);
	bl_rbranges_init(&c->t, &c->cnt.allocator);
}

static uint64_t rb_store_body(void *arg)
{
	struct rb_case *c = arg;
	const struct layout *l = c->l;
	for (uint64_t i = 0; i < l->n; i++) {
		uint64_t r = l->order[i];
		bl_rbranges_store(&c->t, l->first[r], l->last[r], l->value[r]);
	}
	return l->n;
}

static void rb_setup_built(void *arg)
{
	rb_setup_empty(arg);
	rb_store_body(arg);
}
static void rb_teardown(void *arg) { bl_rbranges_destroy(&((struct rb_case *)arg)->t); }

static uint64_t rb_erase_body(void *arg)
{
	struct rb_case *c = arg;
	const struct layout *l = c->l;
	for (uint64_t i = 0; i < l->n; i++) {
		uint64_t r = l->order[i];
		bl_rbranges_erase(&c->t, l->first[r], l->last[r]);
	}
	return l->n;
}

static uint64_t rb_load_body(void *arg)
{
	struct rb_case *c = arg;
	const struct layout *l = c->l;
	uint64_t sum = 0, v = 0;
	for (uint64_t i = 0; i < l->nprobe; i++) {
		bl_rbranges_load(&c->t, l->probe[i], &v, NULL, NULL);
		sum += v;
	}
	gmb_sink(sum);
	return l->nprobe;
}

static int rb_count_fn(void *ctx, uint64_t first, uint64_t last, uint64_t value)
{
	(void)first;
	(void)last;
	uint64_t *acc = ctx;
	acc[0] += value;
	acc[1]++;
	return 0;
}

static uint64_t rb_iterate_body(void *arg)
{
	struct rb_case *c = arg;
	uint64_t acc[2] = {0, 0};
	bl_rbranges_iterate(&c->t, 0, UINT64_MAX, rb_count_fn, acc);
	gmb_sink(acc[0]);
	return acc[1];
}

static uint64_t rb_find_gap_body(void *arg)
{
	struct rb_case *c = arg;
	const struct layout *l = c->l;
	uint64_t sum = 0, f = 0;
	for (uint64_t i = 0; i < l->ngap; i++) {
		bl_rbranges_find_gap(&c->t, GAP_SIZE, l->gmin[i], UINT64_MAX, &f);
		sum += f;
	}
	gmb_sink(sum);
	return l->ngap;
}

/* ---- sorted arrays ---------------------------------------------------------- */

static uint64_t sorted_load_body(void *arg)
{
	const struct layout *l = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < l->nprobe; i++) {
		uint64_t j = gmb_lower_bound(l->last, l->n, l->probe[i]);
		if (j < l->n && l->first[j] <= l->probe[i])
			sum += l->value[j];
	}
	gmb_sink(sum);
	return l->nprobe;
}

static uint64_t sorted_iterate_body(void *arg)
{
	const struct layout *l = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < l->n; i++)
		sum += l->value[i] + l->first[i];
	gmb_sink(sum);
	return l->n;
}

static uint64_t sorted_find_gap_body(void *arg)
{
	const struct layout *l = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < l->ngap; i++) {
		uint64_t j = gmb_lower_bound(l->last, l->n, l->gmin[i]);
		uint64_t start = l->gmin[i];
		for (; j < l->n; j++) {
			if (l->first[j] > start && l->first[j] - start >= GAP_SIZE)
				break;
			if (l->last[j] + 1 > start)
				start = l->last[j] + 1;
		}
		sum += start;
	}
	gmb_sink(sum);
	return l->ngap;
}

/* ---- driver ------------------------------------------------------------------ */

/* Read-only bodies of the three designs, one op: measured side by side
 * (gmb_measure_group: interleaved rounds), so that the ratios the targets
 * read meet the same machine; a NULL body is skipped. */
static void measure_reads(struct gmb_ctx *ctx, void *const arg[3],
			  uint64_t (*const body[3])(void *), double ns[3])
{
	struct gmb_case cases[3];
	int idx[3], k = 0;
	for (int i = 0; i < 3; i++) {
		ns[i] = -1;
		if (body[i]) {
			cases[k] = (struct gmb_case){.arg = arg[i], .body = body[i]};
			idx[k++] = i;
		}
	}
	double t[3];
	gmb_measure_group(ctx, cases, k, t);
	for (int j = 0; j < k; j++)
		ns[idx[j]] = t[j];
}

/* Stores and erases are timed in cycles on one structure: store all n
 * ranges into the empty structure (the store time), then erase them all,
 * which leaves it empty for the next cycle (the erase time). Rebuilding a
 * structure before every timed erase would cost more than the erases at
 * 10^6. The designs' cycles alternate (gm_rangemap, rbranges, gm_rangemap,
 * ...), so a ratio compares runs taken under the same load: with one run
 * of each design at 10^6, seconds apart, the 10^6 store ratio moved
 * between 0.42x and 0.60x from one run of gmbench to the next. Medians
 * over --repeat runs (at most 3 from 10^5 ranges); one untimed warm-up
 * cycle each below 10^6. Below CYCLE_OPS ranges a run is several cycles
 * back to back (each half timed on its own), so that a run times enough
 * stores for the clock's cost and resolution not to count. */
#define CYCLE_OPS 8192
struct cycle {
	void *arg;
	uint64_t (*store)(void *arg);
	uint64_t (*erase)(void *arg);
	double store_ns, erase_ns; /* out: medians */
};

static void cycle_run(struct cycle *c, uint64_t reps, double *st, double *er)
{
	uint64_t ts = 0, te = 0, ns = 0, ne = 0;
	for (uint64_t r = 0; r < reps; r++) {
		uint64_t t0 = gmb_now_ns();
		ns += c->store(c->arg);
		uint64_t t1 = gmb_now_ns();
		ne += c->erase(c->arg);
		uint64_t t2 = gmb_now_ns();
		ts += t1 - t0;
		te += t2 - t1;
	}
	*st = (double)ts / (double)ns;
	*er = (double)te / (double)ne;
}

static void measure_cycles(struct gmb_ctx *ctx, uint64_t n, struct cycle *c, int nc)
{
	int runs = gmb_repeat(ctx), cap = n >= 100000 ? 3 : 64;
	uint64_t reps = n < CYCLE_OPS ? CYCLE_OPS / n : 1;
	if (runs > cap)
		runs = cap;
	if (n < 1000000) {
		for (int k = 0; k < nc; k++) {
			c[k].store(c[k].arg);
			c[k].erase(c[k].arg);
		}
	}
	double st[2][64], er[2][64]; /* nc <= 2, cap <= 64 */
	for (int i = 0; i < runs; i++)
		for (int k = 0; k < nc; k++)
			cycle_run(&c[k], reps, &st[k][i], &er[k][i]);
	for (int k = 0; k < nc; k++) {
		c[k].store_ns = gmb_median(st[k], runs);
		c[k].erase_ns = gmb_median(er[k], runs);
	}
}

/* Bytes the counting allocator holds for the structure, per range. */
static double gm_bytes(struct gm_case *g, uint64_t n)
{
	gm_rcu_barrier(); /* count the map, not nodes still waiting for a grace period */
	return (double)gm_alloc_counting_bytes(&g->cnt) / (double)n;
}

static void run_one(struct gmb_ctx *ctx, enum dist d, uint64_t n, struct gmb_rng *rng)
{
	const char *dn = dist_names[d];
	struct layout l;
	layout_make(&l, d, n, gmb_quick(ctx) ? 1 << 14 : n >= 1000000 ? 1 << 18 : 1 << 20, rng);

	struct gm_case g = {.l = &l};
	struct rb_case r = {.l = &l};
	gm_setup_empty(&g);
	rb_setup_empty(&r);
	struct cycle cyc[2] = {{&g, gm_store_body, gm_erase_body, 0, 0},
			       {&r, rb_store_body, rb_erase_body, 0, 0}};
	measure_cycles(ctx, n, cyc, 2);
	if (gm_rangemap_count(g.map) != 0)
		abort();
	gm_teardown(&g);
	rb_teardown(&r);
	gm_build(&g);
	double gbytes = gm_bytes(&g, n);
	if (gm_rangemap_count(g.map) != n)
		abort();
	rb_setup_built(&r);
	double rbytes = (double)gm_alloc_counting_bytes(&r.cnt) / (double)n;

	void *const arg[3] = {&g, &r, &l};
	static const char *const who[3] = {"gm_rangemap", "rbranges", "sorted"};
	static uint64_t (*const loads[3])(void *) = {gm_load_body, rb_load_body, sorted_load_body};
	static uint64_t (*const iters[3])(void *) = {gm_iterate_body, rb_iterate_body,
						      sorted_iterate_body};
	static uint64_t (*const gaps[3])(void *) = {gm_find_gap_body, rb_find_gap_body,
						     sorted_find_gap_body};
	double load[3], iter[3], gap[3] = {-1, -1, -1};
	measure_reads(ctx, arg, loads, load);
	measure_reads(ctx, arg, iters, iter);
	if (d == ISOLATED)
		measure_reads(ctx, arg, gaps, gap);
	gm_rangemap_destroy(g.map);
	rb_teardown(&r);

	const double bytes[3] = {gbytes, rbytes, 24.0};
	for (int i = 0; i < 3; i++) {
		if (i < 2)
			gmb_row(ctx, who[i], "store", n, dn, cyc[i].store_ns, bytes[i]);
		gmb_row(ctx, who[i], "load", n, dn, load[i], bytes[i]);
		gmb_row(ctx, who[i], "iterate", n, dn, iter[i], bytes[i]);
		if (d == ISOLATED)
			gmb_row(ctx, who[i], "find_gap", n, dn, gap[i], bytes[i]);
		if (i < 2)
			gmb_row(ctx, who[i], "erase", n, dn, cyc[i].erase_ns, bytes[i]);
	}
	layout_free(&l);
}

/* Issue 18's targets at every size measured: load against the sorted
 * array (at most its time; at most half from 10^5 ranges), store against
 * rbranges, bytes per isolated range. */
static void size_targets(struct gmb_ctx *ctx, uint64_t n)
{
	char what[160];
	for (int d = 0; d < NDIST; d++) {
		const char *dn = dist_names[d];
		double bound = n >= 100000 ? 0.5 : 1.0;
		snprintf(what, sizeof(what), "load <= %.1fx sorted at n=%llu (%s)", bound,
			 (unsigned long long)n, dn);
		gmb_target_ratio(ctx, what, (struct gmb_sel){"gm_rangemap", "load", n, dn},
				 (struct gmb_sel){"sorted", "load", n, dn}, GMB_AT_MOST, bound);
		snprintf(what, sizeof(what), "store <= 1.0x rbranges at n=%llu (%s), RCU mode",
			 (unsigned long long)n, dn);
		gmb_target_ratio(ctx, what, (struct gmb_sel){"gm_rangemap", "store", n, dn},
				 (struct gmb_sel){"rbranges", "store", n, dn}, GMB_AT_MOST, 1.0);
	}
	snprintf(what, sizeof(what), "<= 16 bytes per isolated range at n=%llu",
		 (unsigned long long)n);
	gmb_target_bound(ctx, what, (struct gmb_sel){"gm_rangemap", "store", n, "isolated"},
			 GMB_BYTES, GMB_AT_MOST, 16);
}


/* The summary's sentence, at the largest n this run measured. */
static void answer(struct gmb_ctx *ctx)
{
	uint64_t n = gmb_largest_n(ctx, "gm_rangemap", "load", "isolated");
	gmb_answer(ctx, "at %llu isolated ranges gm_rangemap loads in %.0f ns (a red-black tree "
		   "of ranges: %.0f, a sorted array's binary search: %.0f) and stores in %.0f ns "
		   "(the tree: %.0f), in %.1f bytes per range (the tree: %.0f).", (unsigned long long)n,
		   gmb_value_of(ctx, "gm_rangemap", "load", n, "isolated", false),
		   gmb_value_of(ctx, "rbranges", "load", n, "isolated", false),
		   gmb_value_of(ctx, "sorted", "load", n, "isolated", false),
		   gmb_value_of(ctx, "gm_rangemap", "store", n, "isolated", false),
		   gmb_value_of(ctx, "rbranges", "store", n, "isolated", false),
		   gmb_value_of(ctx, "gm_rangemap", "load", n, "isolated", true),
		   gmb_value_of(ctx, "rbranges", "load", n, "isolated", true));
}

static void run(struct gmb_ctx *ctx)
{
	uint64_t max = gmb_max_size(ctx, gmb_quick(ctx) ? 10000 : 1000000);
	struct gmb_rng rng;
	gmb_rng_init(&rng, gmb_seed(ctx));
	gm_rcu_register_thread();
	gmb_reference(ctx, "rbranges");
	for (uint64_t n = 10; n <= max; n *= 10) {
		for (int d = 0; d < NDIST; d++)
			run_one(ctx, (enum dist)d, n, &rng);
		gmb_progress(ctx, "n = %llu done", (unsigned long long)n);
	}
	gm_rcu_unregister_thread();
	gmb_note(ctx, "gm_rangemap runs in RCU mode (stores publish copy-on-write leaves and "
		      "retire the old ones); load/iterate/find_gap batches hold one "
		      "gm_rcu_read_lock(); the three designs' reads are timed side by side, "
		      "their stores and erases in alternating cycles. Values are the range's ordinal (isolated, adjacent) or "
		      "0..3 (fewvalues); leaves store value deltas, so 64-bit random values "
		      "cost up to 8 more bytes per slot. sorted = three arrays (first, last, "
		      "value), 24 B per range, no updates.");
	const uint64_t M = 1000000;
	gmb_target_ratio(ctx, "load at 1e6 random ranges <= 0.5x rbranges",
			 (struct gmb_sel){"gm_rangemap", "load", M, "isolated"},
			 (struct gmb_sel){"rbranges", "load", M, "isolated"}, GMB_AT_MOST, 0.5);
	gmb_target_ratio(ctx, "load at 1e6 random ranges <= 1.5x sorted",
			 (struct gmb_sel){"gm_rangemap", "load", M, "isolated"},
			 (struct gmb_sel){"sorted", "load", M, "isolated"}, GMB_AT_MOST, 1.5);
	gmb_target_bound(ctx, "<= 24 bytes per isolated range at 1e6",
			 (struct gmb_sel){"gm_rangemap", "store", M, "isolated"}, GMB_BYTES,
			 GMB_AT_MOST, 24);
	gmb_target_bound(ctx, "<= 12 bytes per adjacent range at 1e6",
			 (struct gmb_sel){"gm_rangemap", "store", M, "adjacent"}, GMB_BYTES,
			 GMB_AT_MOST, 12);
	gmb_target_ratio(ctx, "store at 1e6 ranges <= 0.5x rbranges, RCU mode",
			 (struct gmb_sel){"gm_rangemap", "store", M, "isolated"},
			 (struct gmb_sel){"rbranges", "store", M, "isolated"}, GMB_AT_MOST, 0.5);
	for (uint64_t n = 10; n <= max; n *= 10)
		size_targets(ctx, n);
	answer(ctx);
}

GMB_SCENARIO(rangemap_basic, "range map: store/load/iterate/erase/find_gap vs rbtree and sorted array", run)
