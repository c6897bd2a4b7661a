/*
 * bench/scenarios/memslot_hva.c — hva -> memslot: which memslots overlap an
 * MMU-notifier invalidation of a host-virtual range? (seed 003; the
 * scalable-memslots series measured a 32k-slot unmap at 3.88 s with the
 * linear scan and 0.035 s with an interval tree.)
 *
 * Workload "memslots", at n = 10, 100, 509, 1000, 8194, 32764 slots (the
 * series' table, plus 1000):
 *  - slots laid out in ascending hva order with small gaps; sizes from 4 KiB
 *    to 1 GiB (70% <= 256 KiB, 25% <= 16 MiB, 5% larger); 1 in 20 slots
 *    aliases part of an earlier slot (overlapping hva ranges). Inserted in
 *    random order.
 *  - query: one invalidation of a random hva range (80% one page, 15% 2 MiB,
 *    5% up to 64 MiB), every overlapping slot collected into a buffer;
 *  - stab: the slots containing one random hva;
 *  - churn: one remove plus one insert (a slot moved to a new hva range).
 *
 * Workload "procmaps": the ranges of this machine's process mappings, read
 * from /proc/<pid>/maps at bench time (real, overlapping ranges no one
 * chose; n = how many were read, at most 32764), inserted in the order
 * read. A query is a random page of a random mapping and the same length
 * mix as above; a stab a random address of a random mapping; a churn
 * step moves a mapping's item to another mapping's range. If fewer than
 * PROCMAPS_MIN ranges can be read, a stated synthetic set stands in
 * (synthetic_maps: 24 address spaces shaped like a process's).
 *
 * Rows (structure/op/n/memslots): gm_itree (RCU mode), linear (array scan,
 * KVM before 2021), augrb (augmented red-black interval tree, KVM since
 * 2021). Reference: augrb. bytes_per_entry = bytes per stored interval:
 * gm_itree's nodes + handle as the counting allocator sees them (measured
 * on a plain-mode twin built by the same inserts, so pending deferred
 * frees do not count), linear's array capacity (counting allocator),
 * augrb's 48-byte intrusive node (+ its root pointer).
 */
#include "gmbench.h"

#include "augrb.h"
#include "linear.h"

#include <gmtrack/itree.h>
#include <gmtrack/rcu.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 4096ull
#define HITS_MAX 4096
#define READ_BATCH 16 /* gm_itree queries per RCU read-side section */

struct slot {
	struct bl_augrb_node node; /* augrb: intrusive, like kvm_memory_slot */
	uint64_t first, last;      /* the slot's hva range as generated */
};

struct move {
	uint32_t slot;
	uint64_t first, last; /* where the slot goes */
};

struct world {
	uint64_t n;
	struct slot *slots;
	uint64_t lo, hi;            /* the hva space used */
	uint64_t *qa, *qb, nq;      /* invalidation ranges */
	uint64_t *pt;               /* stab points (nq of them) */
	struct move *moves;         /* churn script */
	uint64_t nc;
	uint64_t (*cur)[2];         /* gm_itree/linear: each slot's current range */
	/* structures */
	struct gm_itree *itree;
	struct bl_augrb rb;
	struct bl_linear lin;
	uint64_t lin_nq, lin_nc;    /* fewer ops for the O(n) baseline */
	double rest_bytes;          /* gm_itree's bytes/entry at rest */
	double twin_bytes;          /* ... of a plain-mode twin after the build */
	void *hits[HITS_MAX];
};

static uint64_t slot_pages(struct gmb_rng *r)
{
	uint64_t u = gmb_rng_below(r, 100);
	if (u < 70)
		return 1 + gmb_rng_below(r, 64);
	if (u < 95)
		return 64 + gmb_rng_below(r, 4096);
	return 4096 + gmb_rng_below(r, 262144);
}

/* An invalidation's length in pages: 80% one page, 15% 2 MiB, 5% up to
 * 64 MiB. */
static uint64_t query_pages(struct gmb_rng *r)
{
	uint64_t u = gmb_rng_below(r, 100);
	if (u < 80)
		return 1;
	if (u < 95)
		return 512;
	return 1 + gmb_rng_below(r, 16384);
}

/* Room for nq queries and stabs and nc moves; the generators fill it. */
static void alloc_scripts(struct world *w, uint64_t nq, uint64_t nc)
{
	w->nq = nq;
	w->qa = malloc(nq * sizeof(uint64_t));
	w->qb = malloc(nq * sizeof(uint64_t));
	w->pt = malloc(nq * sizeof(uint64_t));
	w->nc = nc;
	w->moves = malloc(nc * sizeof(*w->moves));
}

/* Query, stab and churn scripts over the slots' hva space [lo, hi). */
static void gen_ops_uniform(struct world *w, struct gmb_rng *r, uint64_t nq,
			    uint64_t nc)
{
	alloc_scripts(w, nq, nc);
	for (uint64_t i = 0; i < nq; i++) {
		uint64_t a = w->lo + gmb_rng_below(r, w->hi - w->lo) / PAGE * PAGE;
		w->qa[i] = a;
		w->qb[i] = a + query_pages(r) * PAGE - 1;
		w->pt[i] = w->lo + gmb_rng_below(r, w->hi - w->lo);
	}
	for (uint64_t i = 0; i < nc; i++) {
		uint64_t first = w->lo + gmb_rng_below(r, w->hi - w->lo) / PAGE * PAGE;
		w->moves[i] = (struct move){(uint32_t)gmb_rng_below(r, w->n), first,
					    first + slot_pages(r) * PAGE - 1};
	}
}

static void gen_world(struct world *w, struct gmb_rng *r, uint64_t n,
		      uint64_t nq, uint64_t nc)
{
	w->n = n;
	w->slots = calloc(n, sizeof(*w->slots));
	w->cur = calloc(n, sizeof(*w->cur));
	uint64_t cursor = 1ull << 32;
	w->lo = cursor;
	for (uint64_t i = 0; i < n; i++) {
		struct slot *s = &w->slots[i];
		if (i > 4 && gmb_rng_below(r, 20) == 0) {
			const struct slot *o = &w->slots[gmb_rng_below(r, i)];
			uint64_t pages = (o->last - o->first + 1) / PAGE;
			uint64_t off = gmb_rng_below(r, pages);
			s->first = o->first + off * PAGE;
			s->last = s->first + (1 + gmb_rng_below(r, pages - off)) * PAGE - 1;
		} else {
			s->first = cursor + gmb_rng_below(r, 16) * PAGE;
			s->last = s->first + slot_pages(r) * PAGE - 1;
			cursor = s->last + 1;
		}
	}
	w->hi = cursor;
	gen_ops_uniform(w, r, nq, nc);
}

/* ---- procmaps: this machine's process mappings ---------------------------- */

#define PROCMAPS_MAX 32764
#define PROCMAPS_MIN 16

/* Appends the ranges of one maps file to w->slots (up to PROCMAPS_MAX). */
static void read_maps_file(struct world *w, const char *path, uint64_t cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[512];
	unsigned long long a, b;
	while (w->n < cap && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%llx-%llx", &a, &b) != 2 || b <= a)
			continue;
		w->slots[w->n].first = a;
		w->slots[w->n].last = b - 1;
		w->n++;
	}
	fclose(f);
}

/* Every readable /proc/<pid>/maps, in directory order; returns how many
 * ranges were read (at most cap). */
static uint64_t read_proc_maps(struct world *w, uint64_t cap)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	struct dirent *e;
	char path[300];
	while (w->n < cap && (e = readdir(d))) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/maps", e->d_name);
		read_maps_file(w, path, cap);
	}
	closedir(d);
	return w->n;
}

/* The stand-in when /proc cannot be read: 24 address spaces, each a
 * program (4 mappings at 0x5555_5555_4000 + a random page offset), a heap,
 * 20 libraries of 3-5 mappings packed down from 0x7fff_f000_0000 minus a
 * random offset, and a stack; so mappings of different spaces overlap. */
static void synthetic_maps(struct world *w, struct gmb_rng *r)
{
	for (unsigned p = 0; p < 24; p++) {
		uint64_t at = 0x555555554000ull + gmb_rng_below(r, 1u << 20) * PAGE;
		for (unsigned j = 0; j < 5; j++) { /* program + heap */
			uint64_t len = (1 + gmb_rng_below(r, j == 4 ? 8192 : 64)) * PAGE;
			w->slots[w->n++] = (struct slot){.first = at, .last = at + len - 1};
			at += len;
		}
		at = 0x7ffff0000000ull - gmb_rng_below(r, 1u << 20) * PAGE;
		for (unsigned j = 0; j < 20 * 4; j++) { /* libraries, downwards */
			uint64_t len = (1 + gmb_rng_below(r, 512)) * PAGE;
			at -= len;
			w->slots[w->n++] = (struct slot){.first = at, .last = at + len - 1};
		}
		uint64_t stack = 0x7ffffffde000ull - gmb_rng_below(r, 1u << 16) * PAGE;
		w->slots[w->n++] = (struct slot){.first = stack, .last = stack + 33 * PAGE - 1};
	}
}

/* Queries and stabs land in random mappings; a move gives a slot the
 * range of another mapping. */
static void gen_ops_maps(struct world *w, struct gmb_rng *r, uint64_t nq,
			 uint64_t nc)
{
	alloc_scripts(w, nq, nc);
	for (uint64_t i = 0; i < nq; i++) {
		const struct slot *s = &w->slots[gmb_rng_below(r, w->n)];
		uint64_t size = s->last - s->first + 1;
		uint64_t a = s->first + gmb_rng_below(r, size) / PAGE * PAGE;
		uint64_t end = a + query_pages(r) * PAGE - 1;
		w->qa[i] = a;
		w->qb[i] = end < a ? UINT64_MAX : end; /* [vsyscall] ends near the top */
		s = &w->slots[gmb_rng_below(r, w->n)];
		w->pt[i] = s->first + gmb_rng_below(r, s->last - s->first + 1);
	}
	for (uint64_t i = 0; i < nc; i++) {
		const struct slot *to = &w->slots[gmb_rng_below(r, w->n)];
		w->moves[i] = (struct move){(uint32_t)gmb_rng_below(r, w->n),
					    to->first, to->last};
	}
}

/* The procmaps world; *real says whether /proc was read. */
static void gen_world_maps(struct world *w, struct gmb_rng *r, uint64_t cap,
			   uint64_t nq, uint64_t nc, bool *real)
{
	w->slots = calloc(PROCMAPS_MAX, sizeof(*w->slots));
	w->n = 0;
	cap = cap < PROCMAPS_MAX ? cap : PROCMAPS_MAX;
	*real = read_proc_maps(w, cap) >= (cap < PROCMAPS_MIN ? cap : PROCMAPS_MIN);
	if (!*real) {
		w->n = 0;
		synthetic_maps(w, r);
		w->n = w->n < cap ? w->n : cap;
	}
	w->cur = calloc(w->n, sizeof(*w->cur));
	w->lo = UINT64_MAX;
	w->hi = 0;
	for (uint64_t i = 0; i < w->n; i++) {
		w->lo = w->slots[i].first < w->lo ? w->slots[i].first : w->lo;
		w->hi = w->slots[i].last + 1 > w->hi ? w->slots[i].last + 1 : w->hi;
	}
	gen_ops_maps(w, r, nq, nc);
}

static void free_world(struct world *w)
{
	free(w->slots);
	free(w->cur);
	free(w->qa);
	free(w->qb);
	free(w->pt);
	free(w->moves);
}

/* Random insertion order (memslots are not created in hva order). */
static uint64_t *shuffled(struct gmb_rng *r, uint64_t n)
{
	uint64_t *p = malloc(n * sizeof(uint64_t));
	for (uint64_t i = 0; i < n; i++)
		p[i] = i;
	for (uint64_t i = n; i > 1; i--) {
		uint64_t j = gmb_rng_below(r, i), t = p[i - 1];
		p[i - 1] = p[j];
		p[j] = t;
	}
	return p;
}

static void reset_ranges(struct world *w)
{
	for (uint64_t i = 0; i < w->n; i++) {
		w->cur[i][0] = w->slots[i].first;
		w->cur[i][1] = w->slots[i].last;
	}
}

/* ---- gm_itree ----------------------------------------------------------- */

static size_t itree_collect(struct world *w, struct gm_itree_iter *it)
{
	struct gm_itree_entry e[16];
	size_t k = 0, got;
	do {
		got = gm_itree_iter_fill(it, e, 16);
		for (size_t j = 0; j < got; j++, k++)
			if (k < HITS_MAX)
				w->hits[k] = e[j].item;
	} while (got == 16);
	return k;
}

static uint64_t itree_query(void *arg)
{
	struct world *w = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < w->nq; i++) {
		if (i % READ_BATCH == 0)
			gm_rcu_read_lock();
		sum += gm_itree_fill(w->itree, w->qa[i], w->qb[i], w->hits, HITS_MAX);
		if (i % READ_BATCH == READ_BATCH - 1 || i == w->nq - 1)
			gm_rcu_read_unlock();
	}
	gmb_sink(sum + (uintptr_t)w->hits[0]);
	return w->nq;
}

static uint64_t itree_stab(void *arg)
{
	struct world *w = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < w->nq; i++) {
		if (i % READ_BATCH == 0)
			gm_rcu_read_lock();
		sum += gm_itree_fill(w->itree, w->pt[i], w->pt[i], w->hits, HITS_MAX);
		if (i % READ_BATCH == READ_BATCH - 1 || i == w->nq - 1)
			gm_rcu_read_unlock();
	}
	gmb_sink(sum + (uintptr_t)w->hits[0]);
	return w->nq;
}

static uint64_t itree_churn(void *arg)
{
	struct world *w = arg;
	uint64_t bad = 0;
	for (uint64_t i = 0; i < w->nc; i++) {
		const struct move *m = &w->moves[i];
		uint64_t *c = w->cur[m->slot];
		void *item = &w->slots[m->slot];
		bad += gm_itree_remove(w->itree, c[0], c[1], item) != 0;
		c[0] = m->first;
		c[1] = m->last;
		bad += gm_itree_insert(w->itree, c[0], c[1], item) != 0;
	}
	if (bad)
		fprintf(stderr, "memslot_hva: gm_itree churn failed %llu times\n",
			(unsigned long long)bad);
	return w->nc;
}

/* ---- linear ------------------------------------------------------------- */

static uint64_t linear_query(void *arg)
{
	struct world *w = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < w->lin_nq; i++)
		sum += bl_linear_query(&w->lin, w->qa[i], w->qb[i], w->hits, HITS_MAX);
	gmb_sink(sum + (uintptr_t)w->hits[0]);
	return w->lin_nq;
}

static uint64_t linear_stab(void *arg)
{
	struct world *w = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < w->lin_nq; i++)
		sum += bl_linear_query(&w->lin, w->pt[i], w->pt[i], w->hits, HITS_MAX);
	gmb_sink(sum + (uintptr_t)w->hits[0]);
	return w->lin_nq;
}

static uint64_t linear_churn(void *arg)
{
	struct world *w = arg;
	uint64_t bad = 0;
	for (uint64_t i = 0; i < w->lin_nc; i++) {
		const struct move *m = &w->moves[i];
		uint64_t *c = w->cur[m->slot];
		void *item = &w->slots[m->slot];
		bad += bl_linear_remove(&w->lin, c[0], c[1], item) != 0;
		c[0] = m->first;
		c[1] = m->last;
		bad += bl_linear_insert(&w->lin, c[0], c[1], item) != 0;
	}
	if (bad)
		fprintf(stderr, "memslot_hva: linear churn failed\n");
	return w->lin_nc;
}

/* ---- augrb -------------------------------------------------------------- */

static size_t augrb_collect(struct world *w, uint64_t a, uint64_t b)
{
	size_t k = 0;
	for (struct bl_augrb_node *n = bl_augrb_iter_first(&w->rb, a, b); n;
	     n = bl_augrb_iter_next(n, a, b)) {
		if (k < HITS_MAX)
			w->hits[k] = n;
		k++;
	}
	return k;
}

static uint64_t augrb_query(void *arg)
{
	struct world *w = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < w->nq; i++)
		sum += augrb_collect(w, w->qa[i], w->qb[i]);
	gmb_sink(sum + (uintptr_t)w->hits[0]);
	return w->nq;
}

static uint64_t augrb_stab(void *arg)
{
	struct world *w = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < w->nq; i++)
		sum += augrb_collect(w, w->pt[i], w->pt[i]);
	gmb_sink(sum + (uintptr_t)w->hits[0]);
	return w->nq;
}

static uint64_t augrb_churn(void *arg)
{
	struct world *w = arg;
	for (uint64_t i = 0; i < w->nc; i++) {
		const struct move *m = &w->moves[i];
		struct bl_augrb_node *n = &w->slots[m->slot].node;
		bl_augrb_remove(&w->rb, n);
		n->start = m->first;
		n->last = m->last;
		bl_augrb_insert(&w->rb, n);
	}
	return w->nc;
}

/* ---- driver ------------------------------------------------------------- */

/* Every structure must return the same hit counts, or the timings mean
 * nothing: compares them on the first queries. */
static bool same_answers(struct world *w)
{
	for (uint64_t i = 0; i < w->nq && i < 256; i++) {
		struct gm_itree_iter it;
		gm_rcu_read_lock();
		gm_itree_iter_init(&it, w->itree, w->qa[i], w->qb[i], 0);
		size_t a = itree_collect(w, &it);
		size_t a2 = gm_itree_fill(w->itree, w->qa[i], w->qb[i], w->hits, HITS_MAX);
		gm_rcu_read_unlock();
		if (a2 != a)
			return false;
		size_t b = augrb_collect(w, w->qa[i], w->qb[i]);
		size_t c = bl_linear_query(&w->lin, w->qa[i], w->qb[i], w->hits, HITS_MAX);
		if (a != b || b != c)
			return false;
	}
	return true;
}

/* Builds all three structures from the same slots in the same order;
 * gm_itree (RCU mode) through *count. */
static void build(struct world *w, const uint64_t *order,
		  struct gm_alloc_counting *count, struct gm_alloc_counting *lin_count)
{
	if (gm_itree_create(&w->itree, GM_RCU, &count->allocator)) {
		fprintf(stderr, "memslot_hva: out of memory\n");
		exit(1);
	}
	bl_augrb_init(&w->rb);
	bl_linear_init(&w->lin, &lin_count->allocator);
	reset_ranges(w);
	for (uint64_t j = 0; j < w->n; j++) {
		struct slot *s = &w->slots[order ? order[j] : j];
		int rc = gm_itree_insert(w->itree, s->first, s->last, s);
		rc |= bl_linear_insert(&w->lin, s->first, s->last, s);
		s->node.start = s->first;
		s->node.last = s->last;
		bl_augrb_insert(&w->rb, &s->node);
		if (rc) {
			fprintf(stderr, "memslot_hva: build failed (%d)\n", rc);
			exit(1);
		}
	}
}

static void set_lin_ops(struct gmb_ctx *ctx, struct world *w)
{
	uint64_t budget = gmb_quick(ctx) ? 1ull << 19 : 1ull << 23, n = w->n;
	w->lin_nq = budget / n < w->nq ? (budget / n ? budget / n : 1) : w->nq;
	w->lin_nc = budget / n < w->nc ? (budget / n ? budget / n : 1) : w->nc;
	if (w->lin_nq < 32)
		w->lin_nq = 32;
	if (w->lin_nc < 32)
		w->lin_nc = 32;
}

static double held_per_entry(const struct gm_alloc_counting *c, uint64_t n)
{
	return (double)gm_alloc_counting_bytes(c) / (double)n;
}

/* gm_itree's bytes per entry at rest: after a grace period and the
 * deferred calls (gm_rcu_barrier), and one write (a slot removed and put
 * back where it is), after which the writer has taken every retired node
 * back into its chunk. */
static double itree_rest_bytes(struct world *w, const struct gm_alloc_counting *c)
{
	gm_rcu_barrier();
	void *item = &w->slots[0];
	int rc = gm_itree_remove(w->itree, w->cur[0][0], w->cur[0][1], item);
	rc |= gm_itree_insert(w->itree, w->cur[0][0], w->cur[0][1], item);
	if (rc) {
		fprintf(stderr, "memslot_hva: gm_itree write at rest failed (%d)\n", rc);
		exit(1);
	}
	return held_per_entry(c, w->n);
}

/* The earlier measure of bytes/entry: the same inserts into a
 * plain-mode tree through a counting allocator, right after the build
 * (no churn, so no retired nodes and no free slots they leave). */
static double plain_twin_bytes(const struct world *w, const uint64_t *order)
{
	struct gm_alloc_counting count;
	gm_alloc_counting_init(&count, NULL);
	struct gm_itree *plain;
	if (gm_itree_create(&plain, 0, &count.allocator)) {
		fprintf(stderr, "memslot_hva: out of memory\n");
		exit(1);
	}
	for (uint64_t j = 0; j < w->n; j++) {
		const struct slot *s = &w->slots[order ? order[j] : j];
		gm_itree_insert(plain, s->first, s->last, (void *)s);
	}
	double bytes = held_per_entry(&count, w->n);
	gm_itree_destroy(plain);
	return bytes;
}

/* Measures the three designs on world w (built in `order`, NULL: as
 * generated) and emits its rows under `dist`; returns gm_itree's bytes
 * per entry at rest. */
static double run_world(struct gmb_ctx *ctx, struct world *w, const uint64_t *order,
		      const char *dist)
{
	const uint64_t n = w->n;
	struct gm_alloc_counting it_count, lin_count;
	gm_alloc_counting_init(&it_count, NULL);
	gm_alloc_counting_init(&lin_count, NULL);
	set_lin_ops(ctx, w);
	build(w, order, &it_count, &lin_count);
	if (!same_answers(w)) {
		fprintf(stderr, "memslot_hva: structures disagree at n=%llu (%s)\n",
			(unsigned long long)n, dist);
		exit(1);
	}
	double it_bytes = held_per_entry(&it_count, n);
	w->twin_bytes = plain_twin_bytes(w, order);
	double rb_bytes = sizeof(struct bl_augrb_node) + (double)sizeof(struct bl_augrb) / (double)n;
	double lin_bytes = held_per_entry(&lin_count, n);

	/* The structures side by side (gmb_measure_group): the targets are
	 * ratios of these rows. */
	static const char *const names[3] = {"gm_itree", "linear", "augrb"};
	static const struct {
		const char *op;
		uint64_t (*body[3])(void *);
	} reads[] = {{"query", {itree_query, linear_query, augrb_query}},
		     {"stab", {itree_stab, linear_stab, augrb_stab}}};
	double t[2][3];
	for (unsigned r = 0; r < 2; r++) {
		struct gmb_case cases[3];
		for (int i = 0; i < 3; i++)
			cases[i] = (struct gmb_case){.arg = w, .body = reads[r].body[i]};
		gmb_measure_group(ctx, cases, 3, t[r]);
	}

	/* churn last: it moves slots (each structure tracks its own ranges;
	 * gm_itree's and linear's in w->cur, so linear goes after a reset) */
	double churn[3];
	gmb_measure_group(ctx, (struct gmb_case[]){{.arg = w, .body = itree_churn},
						   {.arg = w, .body = augrb_churn}}, 2, churn);
	double after = held_per_entry(&it_count, n);
	it_bytes = after > it_bytes ? after : it_bytes;
	w->rest_bytes = itree_rest_bytes(w, &it_count);
	reset_ranges(w); /* linear was built from the original ranges */
	churn[2] = gmb_measure(ctx, &(struct gmb_case){.arg = w, .body = linear_churn});

	const double bytes[3] = {it_bytes, lin_bytes, rb_bytes};
	for (unsigned r = 0; r < 2; r++)
		for (int i = 0; i < 3; i++)
			gmb_row(ctx, names[i], reads[r].op, n, dist, t[r][i], bytes[i]);
	gmb_row(ctx, "gm_itree", "churn", n, dist, churn[0], it_bytes);
	gmb_row(ctx, "augrb", "churn", n, dist, churn[1], rb_bytes);
	gmb_row(ctx, "linear", "churn", n, dist, churn[2], lin_bytes);

	const char *why = NULL;
	if (gm_itree_validate(w->itree, &why) || bl_augrb_check(&w->rb)) {
		fprintf(stderr, "memslot_hva: invalid after churn: %s\n", why ? why : "augrb");
		exit(1);
	}
	gm_itree_destroy(w->itree);
	bl_linear_destroy(&w->lin);
	return w->rest_bytes;
}

/* One memslots size; returns gm_itree's bytes per entry at rest, and in
 * *twin a plain-mode twin's after the build. */
static double run_size(struct gmb_ctx *ctx, struct gmb_rng *r, uint64_t n,
		       uint64_t nq, uint64_t nc, double *twin)
{
	struct world w = {0};
	gen_world(&w, r, n, nq, nc);
	uint64_t *order = shuffled(r, n);
	double rest = run_world(ctx, &w, order, "memslots");
	*twin = w.twin_bytes;
	free(order);
	free_world(&w);
	return rest;
}

/* The procmaps world (inserted in the order read); returns its n and in
 * *rest gm_itree's bytes per entry at rest. */
static uint64_t run_procmaps(struct gmb_ctx *ctx, struct gmb_rng *r,
			     uint64_t cap, uint64_t nq, uint64_t nc, double *rest)
{
	struct world w = {0};
	bool real;
	gen_world_maps(&w, r, cap, nq, nc, &real);
	gmb_progress(ctx, "procmaps: n = %llu", (unsigned long long)w.n);
	*rest = run_world(ctx, &w, NULL, "procmaps");
	if (real)
		gmb_note(ctx, "procmaps: %llu ranges read from this machine's "
			      "/proc/<pid>/maps at bench time.",
			 (unsigned long long)w.n);
	else
		gmb_note(ctx, "procmaps: /proc/<pid>/maps gave fewer than %d "
			      "ranges; the synthetic stand-in of %llu ranges "
			      "(24 process-shaped address spaces) was used.",
			 PROCMAPS_MIN, (unsigned long long)w.n);
	uint64_t n = w.n;
	free_world(&w);
	return n;
}

/* The targets of one (n, dist): churn, query/stab and bytes (held, and
 * at rest: rest = gm_itree's bytes per entry after a grace period). */
static void targets_at(struct gmb_ctx *ctx, uint64_t n, const char *dist,
		       double rest)
{
	char what[160];
	static const char *const reads[2] = {"query", "stab"};
	if (n != 32764 || strcmp(dist, "memslots")) {
		snprintf(what, sizeof(what), "insert+remove at %llu %s <= 2x augrb's time",
			 (unsigned long long)n, dist);
		gmb_target_ratio(ctx, what, (struct gmb_sel){"gm_itree", "churn", n, dist},
				 (struct gmb_sel){"augrb", "churn", n, dist}, GMB_AT_MOST, 2.0);
		for (unsigned r = 0; r < 2; r++) {
			snprintf(what, sizeof(what), "%s at %llu %s <= 1.0x augrb's time",
				 reads[r], (unsigned long long)n, dist);
			gmb_target_ratio(ctx, what,
					 (struct gmb_sel){"gm_itree", reads[r], n, dist},
					 (struct gmb_sel){"augrb", reads[r], n, dist},
					 GMB_AT_MOST, 1.0);
		}
	}
	snprintf(what, sizeof(what), "bytes/entry held <= 64 at %llu %s",
		 (unsigned long long)n, dist);
	gmb_target_bound(ctx, what, (struct gmb_sel){"gm_itree", "churn", n, dist},
			 GMB_BYTES, GMB_AT_MOST, 64.0);
	char measured[64];
	snprintf(what, sizeof(what),
		 "bytes/entry held at rest (after a grace period) <= 64 at %llu %s",
		 (unsigned long long)n, dist);
	snprintf(measured, sizeof(measured), "%.4g B", rest);
	gmb_target_verdict(ctx, what, measured, rest <= 64.0);
}


/* The seed's question (an interval tree for hva lookups), at the largest
 * slot count run. */
static void answer(struct gmb_ctx *ctx)
{
	const char *d = "memslots";
	uint64_t n = gmb_largest_n(ctx, "gm_itree", "query", d);
	gmb_answer(ctx, "at %llu memslots an hva invalidation query costs %.0f ns in gm_itree "
		   "(an augmented red-black tree: %.0f, the pre-2021 linear scan: %.0f), an "
		   "insert+remove %.0f ns (the tree: %.0f), and gm_itree's readers never miss a "
		   "slot during a change.", (unsigned long long)n,
		   gmb_value_of(ctx, "gm_itree", "query", n, d, false),
		   gmb_value_of(ctx, "augrb", "query", n, d, false),
		   gmb_value_of(ctx, "linear", "query", n, d, false),
		   gmb_value_of(ctx, "gm_itree", "churn", n, d, false),
		   gmb_value_of(ctx, "augrb", "churn", n, d, false));
}

static void run(struct gmb_ctx *ctx)
{
	static const uint64_t sizes[] = {10, 100, 509, 1000, 8194, 32764};
	const unsigned nsizes = sizeof(sizes) / sizeof(sizes[0]);
	uint64_t max = gmb_max_size(ctx, 32764);
	uint64_t nq = gmb_quick(ctx) ? 1 << 12 : 1 << 16;
	uint64_t nc = gmb_quick(ctx) ? 1 << 11 : 1 << 15;
	struct gmb_rng r;
	gmb_rng_init(&r, gmb_seed(ctx));
	gmb_reference(ctx, "augrb");
	gm_rcu_register_thread();
	double rest[sizeof(sizes) / sizeof(sizes[0])], twin[sizeof(sizes) / sizeof(sizes[0])];
	double maps_rest;
	for (unsigned i = 0; i < nsizes; i++) {
		if (sizes[i] > max)
			break;
		gmb_progress(ctx, "n = %llu", (unsigned long long)sizes[i]);
		rest[i] = run_size(ctx, &r, sizes[i], nq, nc, &twin[i]);
	}
	uint64_t maps_n = run_procmaps(ctx, &r, max, nq, nc, &maps_rest);
	gm_rcu_unregister_thread();

	gmb_note(ctx, "gm_itree runs in RCU mode: queries/stabs run in read-side "
		      "sections of %d queries each (gm_rcu_read_lock/unlock once per "
		      "batch), each one gm_itree_fill call (items into a buffer, "
		      "like linear's query; the driver checks it against the "
		      "iterator); churn edits leaves in place (order word; a freed slot "
		      "is refilled at once, under the leaf's sequence count), copies "
		      "nodes only to split, merge or share entries with a sibling, and "
		      "reuses replaced nodes' memory after a grace period (gm_rcu_call,"
		      " each write's retired nodes sent at its end); a tree "
		      "of 1024 or more nodes of a kind keeps them in 64-byte aligned "
		      "chunks of up to 64 KiB, a smaller one gives each node its own.",
		 READ_BATCH);
	gmb_note(ctx, "query = one invalidation of a random hva range (80%% one "
		      "page, 15%% 2 MiB, 5%% up to 64 MiB), all overlapping slots "
		      "collected; churn = one remove + one insert (a slot moved).");
	gmb_note(ctx, "bytes/entry: gm_itree = everything its counting allocator "
		      "holds for the measured RCU-mode tree (handle, node chunks "
		      "with their free slots, nodes retired and not yet past a grace "
		      "period, recycle and retire batches), the larger of the counts "
		      "after the build and after the churn runs; linear = array "
		      "capacity; augrb = its 48-byte intrusive node, embedded in the "
		      "slot object as in KVM (no allocation per insert).");

	const uint64_t big = 32764;
	gmb_target_ratio(ctx, "query at 32764 slots >= 100x faster than linear",
			 (struct gmb_sel){"gm_itree", "query", big, "memslots"},
			 (struct gmb_sel){"linear", "query", big, "memslots"},
			 GMB_AT_MOST, 0.01);
	gmb_target_ratio(ctx, "query at 32764 slots <= 0.5x augrb's time",
			 (struct gmb_sel){"gm_itree", "query", big, "memslots"},
			 (struct gmb_sel){"augrb", "query", big, "memslots"},
			 GMB_AT_MOST, 0.5);
	gmb_target_ratio(ctx, "query at 10 slots no slower than linear",
			 (struct gmb_sel){"gm_itree", "query", 10, "memslots"},
			 (struct gmb_sel){"linear", "query", 10, "memslots"},
			 GMB_AT_MOST, 1.0);
	gmb_target_ratio(ctx, "insert+remove at 32764 slots <= 1.0x augrb's time",
			 (struct gmb_sel){"gm_itree", "churn", big, "memslots"},
			 (struct gmb_sel){"augrb", "churn", big, "memslots"},
			 GMB_AT_MOST, 1.0);
	gmb_target_bound(ctx, "bytes/entry <= 48 (the Linux node) at 32764 slots",
			 (struct gmb_sel){"gm_itree", "churn", big, "memslots"},
			 GMB_BYTES, GMB_AT_MOST, 48.0);
	for (unsigned i = 0; i < nsizes && sizes[i] <= max; i++) {
		if (sizes[i] != big)
			continue;
		char measured[64];
		snprintf(measured, sizeof(measured), "%.4g B", twin[i]);
		gmb_target_verdict(ctx, "bytes/entry <= 48 at 32764 slots, measured "
					"the earlier way (plain-mode twin right "
					"after the build)", measured, twin[i] <= 48.0);
	}
	for (unsigned i = 0; i < nsizes && sizes[i] <= max; i++)
		targets_at(ctx, sizes[i], "memslots", rest[i]);
	targets_at(ctx, maps_n, "procmaps", maps_rest);
	answer(ctx);
}

GMB_SCENARIO(memslot_hva, "hva -> memslot: overlapping intervals, invalidation queries, churn", run)
