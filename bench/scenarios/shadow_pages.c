/*
 * bench/scenarios/shadow_pages.c — frame number -> shadow page (seed
 * 000: GVT-g moving its shadow-page table from a 256-bucket hash to a
 * radix tree). gm_pagemap against the designs that answer the same
 * question: hash256 (before), radix64 (after), BSD rbtree, JudyL, a good
 * open-addressing hash (openhash) and, for dense keys, a flat array.
 *
 * Distributions: dense (consecutive frames from 0x100000), clustered (runs
 * of 512 frames at random 512-aligned 36-bit frame numbers, like page
 * tables), random (distinct random 36-bit frame numbers), frames (the
 * physical frame numbers of a freshly touched anonymous mapping of n 4 KiB
 * pages, read from /proc/self/pagemap, in the mapping's page order; up to
 * 10^6 frames; where the frame bits cannot be read, a synthetic model, see
 * synthetic_frames).
 * Ops: insert (building the map; dense and clustered in frame order within
 * a run, random in random order), load (hits), load_miss, erase (a random
 * subset, re-inserted untimed), walk (up to nprobe entries from the
 * smallest key; hash tables walk in slot order), load_many (all probes in
 * one call; baselines without a batched lookup run their plain load loop).
 * bytes_per_entry: the structure's bytes after the inserts divided by n.
 */
#include "gmbench.h"

#include "flat.h"
#include "hash256.h"
#include "judyl.h"
#include "openhash.h"
#include "radix64.h"
#include "rbtree.h"

#include <gmtrack/alloc.h>
#include <gmtrack/pagemap.h>
#include <gmtrack/rcu.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { D_DENSE, D_CLUSTERED, D_RANDOM, D_FRAMES, NDIST };
static const char *const dist_name[NDIST] = {"dense", "clustered", "random", "frames"};
/* frames: a mapping of 10^6 pages is 4 GB; larger n are not run */
#define FRAMES_MAX_N 1000000
/* How the last frames workload was made (for the notes). */
static bool frames_real = true, frames_made;
#define DENSE_BASE 0x100000ULL
#define FRAME_BITS 36

static inline void *value_of(uint64_t key) { return (void *)(uintptr_t)(key << 1 | 1); }

/* ---- one adapter per structure ------------------------------------------ */

struct sp_impl {
	const char *name;
	void *(*create)(uint64_t base, uint64_t span);
	void (*destroy)(void *s);
	uint64_t (*insert_all)(void *s, const uint64_t *k, size_t n);
	uint64_t (*load_all)(void *s, const uint64_t *k, size_t n);
	uint64_t (*load_many)(void *s, const uint64_t *k, size_t n, void **out);
	uint64_t (*erase_all)(void *s, const uint64_t *k, size_t n);
	uint64_t (*walk)(void *s, uint64_t limit);
	size_t (*bytes)(void *s);
	bool dense_only;
	uint64_t max_n[NDIST]; /* 0: no cap */
};

/* Loops with direct (inlinable) calls, so no indirect call per op. */
#define SP_LOOPS(tag, T, LOAD, INSERT, ERASE)                                     \
	static uint64_t tag##_insert_all(void *s, const uint64_t *k, size_t n)   \
	{                                                                         \
		T *x = s;                                                         \
		uint64_t bad = 0;                                                 \
		for (size_t i = 0; i < n; i++)                                    \
			bad += INSERT(x, k[i], value_of(k[i])) != 0;              \
		return bad;                                                       \
	}                                                                         \
	static uint64_t tag##_load_all(void *s, const uint64_t *k, size_t n)     \
	{                                                                         \
		T *x = s;                                                         \
		uint64_t sum = 0;                                                 \
		for (size_t i = 0; i < n; i++)                                    \
			sum += (uintptr_t)LOAD(x, k[i]);                          \
		return sum;                                                       \
	}                                                                         \
	__attribute__((unused)) static uint64_t tag##_load_loop(void *s, const uint64_t *k, size_t n, \
					void **out)                               \
	{                                                                         \
		T *x = s;                                                         \
		uint64_t found = 0;                                               \
		for (size_t i = 0; i < n; i++)                                    \
			found += (out[i] = LOAD(x, k[i])) != NULL;                \
		return found;                                                     \
	}                                                                         \
	static uint64_t tag##_erase_all(void *s, const uint64_t *k, size_t n)    \
	{                                                                         \
		T *x = s;                                                         \
		uint64_t bad = 0;                                                 \
		for (size_t i = 0; i < n; i++)                                    \
			bad += ERASE(x, k[i]) != 0;                               \
		return bad;                                                       \
	}

/* gm_pagemap, in RCU mode; lookups hold one read lock per batch. */
struct sp_pagemap {
	struct gm_pagemap *map;
	struct gm_alloc_counting counting;
};
static void *pm_create(uint64_t base, uint64_t span)
{
	(void)base, (void)span;
	struct sp_pagemap *p = malloc(sizeof(*p));
	gm_alloc_counting_init(&p->counting, NULL);
	gm_pagemap_create(&p->map, GM_RCU, &p->counting.allocator);
	return p;
}
static void pm_destroy(void *s)
{
	struct sp_pagemap *p = s;
	gm_pagemap_destroy(p->map);
	free(p);
}
static inline int pm_ins(struct sp_pagemap *p, uint64_t k, void *v) { return gm_pagemap_insert(p->map, k, v); }
static inline void *pm_get(struct sp_pagemap *p, uint64_t k) { return gm_pagemap_load(p->map, k); }
static inline int pm_del(struct sp_pagemap *p, uint64_t k) { return gm_pagemap_remove(p->map, k, NULL); }
SP_LOOPS(pm, struct sp_pagemap, pm_get, pm_ins, pm_del)
static uint64_t pm_load_all_locked(void *s, const uint64_t *k, size_t n)
{
	gm_rcu_read_lock();
	uint64_t r = pm_load_all(s, k, n);
	gm_rcu_read_unlock();
	return r;
}
static uint64_t pm_load_many(void *s, const uint64_t *k, size_t n, void **out)
{
	struct sp_pagemap *p = s;
	gm_rcu_read_lock();
	uint64_t r = gm_pagemap_load_many(p->map, k, n, out);
	gm_rcu_read_unlock();
	return r;
}
static uint64_t pm_walk(void *s, uint64_t limit)
{
	struct sp_pagemap *p = s;
	struct gm_pagemap_iter it;
	struct gm_pagemap_entry e;
	uint64_t sum = 0, seen = 0;
	gm_rcu_read_lock();
	gm_pagemap_iter_init(&it, p->map, 0, UINT64_MAX, 0);
	while (seen < limit && gm_pagemap_iter_next(&it, &e) == 0) {
		sum += e.key;
		seen++;
	}
	gm_rcu_read_unlock();
	return sum;
}
static size_t pm_bytes(void *s)
{
	struct sp_pagemap *p = s;
	struct gm_pagemap_stats st;
	gm_pagemap_stats(p->map, &st);
	return sizeof(p->map) + st.bytes;
}

/* hash256 */
struct sp_hash256 {
	struct bl_hash256 h;
};
static void *h256_create(uint64_t base, uint64_t span)
{
	(void)base, (void)span;
	struct sp_hash256 *h = malloc(sizeof(*h));
	bl_hash256_init(&h->h, NULL);
	return h;
}
static void h256_destroy(void *s) { bl_hash256_destroy(s); free(s); }
static inline int h256_ins(struct sp_hash256 *h, uint64_t k, void *v) { return bl_hash256_insert(&h->h, k, v); }
static inline void *h256_get(struct sp_hash256 *h, uint64_t k) { return bl_hash256_load(&h->h, k); }
static inline int h256_del(struct sp_hash256 *h, uint64_t k) { return bl_hash256_erase(&h->h, k); }
SP_LOOPS(h256, struct sp_hash256, h256_get, h256_ins, h256_del)
static uint64_t h256_walk(void *s, uint64_t limit) { return bl_hash256_walk(s, limit); }
static size_t h256_bytes(void *s) { return bl_hash256_bytes(s); }

/* radix64 */
static void *rx_create(uint64_t base, uint64_t span)
{
	(void)base, (void)span;
	struct bl_radix64 *r = malloc(sizeof(*r));
	bl_radix64_init(r, NULL);
	return r;
}
static void rx_destroy(void *s) { bl_radix64_destroy(s); free(s); }
SP_LOOPS(rx, struct bl_radix64, bl_radix64_load, bl_radix64_insert, bl_radix64_erase)
static uint64_t rx_walk(void *s, uint64_t limit) { return bl_radix64_walk(s, limit); }
static size_t rx_bytes(void *s) { return bl_radix64_bytes(s); }

/* rbtree */
static void *rb_create(uint64_t base, uint64_t span)
{
	(void)base, (void)span;
	return bl_rbtree_create(NULL);
}
static void rb_destroy(void *s) { bl_rbtree_destroy(s); }
SP_LOOPS(rb, struct bl_rbtree, bl_rbtree_load, bl_rbtree_insert, bl_rbtree_erase)
static uint64_t rb_walk(void *s, uint64_t limit) { return bl_rbtree_walk(s, limit); }
static size_t rb_bytes(void *s) { return bl_rbtree_bytes(s); }

/* judyl */
static void *jl_create(uint64_t base, uint64_t span)
{
	(void)base, (void)span;
	struct bl_judyl *j = malloc(sizeof(*j));
	bl_judyl_init(j);
	return j;
}
static void jl_destroy(void *s) { bl_judyl_destroy(s); free(s); }
SP_LOOPS(jl, struct bl_judyl, bl_judyl_load, bl_judyl_insert, bl_judyl_erase)
static uint64_t jl_walk(void *s, uint64_t limit) { return bl_judyl_walk(s, limit); }
static size_t jl_bytes(void *s) { return bl_judyl_bytes(s); }

/* openhash */
static void *oh_create(uint64_t base, uint64_t span)
{
	(void)base, (void)span;
	struct bl_openhash *h = malloc(sizeof(*h));
	bl_openhash_init(h, NULL);
	return h;
}
static void oh_destroy(void *s) { bl_openhash_destroy(s); free(s); }
SP_LOOPS(oh, struct bl_openhash, bl_openhash_load, bl_openhash_insert, bl_openhash_erase)
static uint64_t oh_load_many(void *s, const uint64_t *k, size_t n, void **out)
{
	return bl_openhash_load_many(s, k, n, out);
}
static uint64_t oh_walk(void *s, uint64_t limit) { return bl_openhash_walk(s, limit); }
static size_t oh_bytes(void *s) { return bl_openhash_bytes(s); }

/* flat */
static void *fl_create(uint64_t base, uint64_t span)
{
	struct bl_flat *f = malloc(sizeof(*f));
	bl_flat_init(f, base, span, NULL);
	return f;
}
static void fl_destroy(void *s) { bl_flat_destroy(s); free(s); }
SP_LOOPS(fl, struct bl_flat, bl_flat_load, bl_flat_insert, bl_flat_erase)
static uint64_t fl_walk(void *s, uint64_t limit) { return bl_flat_walk(s, limit); }
static size_t fl_bytes(void *s) { return bl_flat_bytes(s); }

enum { I_PAGEMAP, I_HASH256, I_RADIX64, I_RBTREE, I_JUDYL, I_OPENHASH, I_FLAT, NIMPL };
static const struct sp_impl impls[NIMPL] = {
	{"gm_pagemap", pm_create, pm_destroy, pm_insert_all, pm_load_all_locked, pm_load_many,
	 pm_erase_all, pm_walk, pm_bytes, false, {0}},
	/* chains grow as n/256: past 10^6 one lookup walks ~4000 cold nodes */
	{"hash256", h256_create, h256_destroy, h256_insert_all, h256_load_all, h256_load_loop,
	 h256_erase_all, h256_walk, h256_bytes, false, {0}},
	/* random 36-bit keys need ~2 nodes of 576 B per key: 1.3 GB at 10^6 */
	{"radix64", rx_create, rx_destroy, rx_insert_all, rx_load_all, rx_load_loop,
	 rx_erase_all, rx_walk, rx_bytes, false, {0, 0, 100000}},
	/* ~2 us per cold lookup at 10^6: 10^7 would cost a minute of the run */
	{"rbtree", rb_create, rb_destroy, rb_insert_all, rb_load_all, rb_load_loop,
	 rb_erase_all, rb_walk, rb_bytes, false, {1000000, 1000000, 1000000}},
	{"judyl", jl_create, jl_destroy, jl_insert_all, jl_load_all, jl_load_loop,
	 jl_erase_all, jl_walk, jl_bytes, false, {0}},
	{"openhash", oh_create, oh_destroy, oh_insert_all, oh_load_all, oh_load_many,
	 oh_erase_all, oh_walk, oh_bytes, false, {0}},
	{"flat", fl_create, fl_destroy, fl_insert_all, fl_load_all, fl_load_loop,
	 fl_erase_all, fl_walk, fl_bytes, true, {0}},
};

/* ---- workloads ---------------------------------------------------------- */

struct sp_work {
	uint64_t *keys, n;          /* insert order */
	uint64_t *sorted;           /* for membership */
	uint64_t *hit, *miss, *gone; /* probes */
	size_t nprobe, ngone;
	void **out;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool present(const struct sp_work *w, uint64_t key)
{
	return bsearch(&key, w->sorted, w->n, sizeof(uint64_t), cmp_u64) != NULL;
}

static void shuffle(uint64_t *a, uint64_t n, struct gmb_rng *rng)
{
	for (uint64_t i = n; i > 1; i--) {
		uint64_t j = gmb_rng_below(rng, i);
		uint64_t t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

/* Distinct random values below 2^bits, made distinct by sort + redraw. */
static void distinct_random(uint64_t *a, uint64_t n, unsigned bits, struct gmb_rng *rng)
{
	for (uint64_t i = 0; i < n; i++)
		a[i] = gmb_rng_below(rng, 1ULL << bits);
	for (;;) {
		uint64_t *s = malloc(n * sizeof(uint64_t));
		memcpy(s, a, n * sizeof(uint64_t));
		qsort(s, n, sizeof(uint64_t), cmp_u64);
		uint64_t dups = 0;
		for (uint64_t i = 1; i < n; i++)
			dups += s[i] == s[i - 1];
		if (!dups) {
			free(s);
			return;
		}
		/* redraw every value that repeats its sorted neighbour */
		uint64_t w = 0;
		for (uint64_t i = 0; i < n; i++)
			if (i == 0 || s[i] != s[i - 1])
				s[w++] = s[i];
		for (uint64_t i = w; i < n; i++)
			s[i] = gmb_rng_below(rng, 1ULL << bits);
		memcpy(a, s, n * sizeof(uint64_t));
		free(s);
		shuffle(a, n, rng);
	}
}

/* The physical frame numbers of n freshly touched 4 KiB anonymous pages
 * (MADV_NOHUGEPAGE), in the order of their virtual addresses, from
 * /proc/self/pagemap (bits 0-54 when bit 63 says present; the kernel
 * shows 0 to readers without CAP_SYS_ADMIN). False if not all n could be
 * read. The mapping is gone when this returns: the numbers are only keys. */
static bool real_frames(uint64_t *out, uint64_t n)
{
	long page = sysconf(_SC_PAGESIZE);
	if (page != 4096)
		return false;
	size_t len = (size_t)n * 4096;
	char *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return false;
	madvise(a, len, MADV_NOHUGEPAGE);
	for (uint64_t i = 0; i < n; i++)
		a[i * 4096] = 1;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	bool ok = fd >= 0;
	off_t off = (off_t)((uintptr_t)a / 4096 * 8);
	for (uint64_t done = 0; ok && done < n;) {
		ssize_t r = pread(fd, out + done, (size_t)(n - done) * 8, off + (off_t)(done * 8));
		ok = r > 0 && r % 8 == 0;
		done += ok ? (uint64_t)r / 8 : 0;
	}
	for (uint64_t i = 0; ok && i < n; i++) {
		ok = out[i] >> 63 && (out[i] & ((1ULL << 55) - 1));
		out[i] &= (1ULL << 55) - 1;
	}
	if (fd >= 0)
		close(fd);
	munmap(a, len);
	return ok;
}

/* The stated model where real frames cannot be read: runs of 1-64
 * consecutive frames (uniform length), each starting at a distinct
 * 64-aligned frame below 2^26 (a 256 GiB machine), in run order. */
static void synthetic_frames(uint64_t *out, uint64_t n, struct gmb_rng *rng)
{
	uint64_t runs = n / 8 + 2, *start = malloc(runs * sizeof(uint64_t));
	uint64_t i;
	do { /* n / 8 runs hold n frames unless the lengths average under 8 */
		distinct_random(start, runs, 26 - 6, rng);
		i = 0;
		for (uint64_t r = 0; r < runs && i < n; r++) {
			uint64_t len = 1 + gmb_rng_below(rng, 64);
			for (uint64_t j = 0; j < len && i < n; j++)
				out[i++] = start[r] * 64 + j;
		}
	} while (i < n);
	free(start);
}

static void make_frames(uint64_t *out, uint64_t n, struct gmb_rng *rng)
{
	bool real = real_frames(out, n);
	if (real) { /* distinct unless the kernel moved a page meanwhile */
		uint64_t *s = malloc(n * sizeof(uint64_t));
		memcpy(s, out, n * sizeof(uint64_t));
		qsort(s, n, sizeof(uint64_t), cmp_u64);
		for (uint64_t i = 1; i < n && real; i++)
			real = s[i] != s[i - 1];
		free(s);
	}
	if (!real)
		synthetic_frames(out, n, rng);
	frames_real = frames_real && real;
	frames_made = true;
}

/* A probe key for load_miss: absent, in the keys' own range. */
static uint64_t miss_key(const struct sp_work *w, int dist, struct gmb_rng *rng)
{
	uint64_t n = w->n, k;
	do {
		if (dist == D_DENSE)
			k = DENSE_BASE + n + gmb_rng_below(rng, n);
		else if (dist == D_FRAMES)
			k = w->sorted[0] + gmb_rng_below(rng, w->sorted[n - 1] - w->sorted[0] + n);
		else
			k = gmb_rng_below(rng, 1ULL << FRAME_BITS);
	} while (present(w, k));
	return k;
}

static void make_work(struct sp_work *w, int dist, uint64_t n, size_t nprobe,
		      struct gmb_rng *rng)
{
	w->n = n;
	w->keys = malloc(n * sizeof(uint64_t));
	switch (dist) {
	case D_DENSE:
		for (uint64_t i = 0; i < n; i++)
			w->keys[i] = DENSE_BASE + i;
		break;
	case D_CLUSTERED: {
		uint64_t runs = (n + 511) / 512;
		uint64_t *start = malloc(runs * sizeof(uint64_t));
		distinct_random(start, runs, FRAME_BITS - 9, rng);
		for (uint64_t i = 0; i < n; i++)
			w->keys[i] = start[i / 512] * 512 + i % 512;
		free(start);
		break;
	}
	case D_FRAMES:
		make_frames(w->keys, n, rng);
		break;
	default:
		distinct_random(w->keys, n, FRAME_BITS, rng);
		break;
	}
	w->sorted = malloc(n * sizeof(uint64_t));
	memcpy(w->sorted, w->keys, n * sizeof(uint64_t));
	qsort(w->sorted, n, sizeof(uint64_t), cmp_u64);
	w->nprobe = nprobe;
	w->hit = malloc(nprobe * sizeof(uint64_t));
	w->miss = malloc(nprobe * sizeof(uint64_t));
	w->out = malloc(nprobe * sizeof(void *));
	for (size_t i = 0; i < nprobe; i++) {
		w->hit[i] = w->keys[gmb_rng_below(rng, n)];
		w->miss[i] = miss_key(w, dist, rng);
	}
	/* erase a random subset of distinct keys: a prefix of a shuffled copy */
	w->ngone = n / 2 < nprobe ? n / 2 : nprobe;
	w->gone = malloc(n * sizeof(uint64_t));
	memcpy(w->gone, w->keys, n * sizeof(uint64_t));
	for (size_t i = 0; i < w->ngone; i++) {
		uint64_t j = i + gmb_rng_below(rng, n - i);
		uint64_t t = w->gone[i];
		w->gone[i] = w->gone[j];
		w->gone[j] = t;
	}
}

static void free_work(struct sp_work *w)
{
	free(w->keys);
	free(w->sorted);
	free(w->hit);
	free(w->miss);
	free(w->gone);
	free(w->out);
}

/* ---- timed bodies ------------------------------------------------------- */

struct sp_case {
	const struct sp_impl *impl;
	void *s;
	const struct sp_work *w;
	const uint64_t *probe;
	size_t nprobe;
	uint64_t failures;
};

static void c_create(void *arg)
{
	struct sp_case *c = arg;
	c->s = c->impl->create(DENSE_BASE, c->w->n);
}
static void c_destroy(void *arg)
{
	struct sp_case *c = arg;
	c->impl->destroy(c->s);
	c->s = NULL;
}
static uint64_t c_insert(void *arg)
{
	struct sp_case *c = arg;
	c->failures += c->impl->insert_all(c->s, c->w->keys, c->w->n);
	return c->w->n;
}
static uint64_t c_load(void *arg)
{
	struct sp_case *c = arg;
	gmb_sink(c->impl->load_all(c->s, c->probe, c->nprobe));
	return c->nprobe;
}
static uint64_t c_load_many(void *arg)
{
	struct sp_case *c = arg;
	gmb_sink(c->impl->load_many(c->s, c->probe, c->nprobe, c->w->out));
	return c->nprobe;
}
static uint64_t c_erase(void *arg)
{
	struct sp_case *c = arg;
	c->failures += c->impl->erase_all(c->s, c->probe, c->nprobe);
	return c->nprobe;
}
static void c_reinsert(void *arg)
{
	struct sp_case *c = arg;
	c->failures += c->impl->insert_all(c->s, c->probe, c->nprobe);
}
static uint64_t c_walk(void *arg)
{
	struct sp_case *c = arg;
	gmb_sink(c->impl->walk(c->s, c->nprobe));
	return c->nprobe;
}

/* Results kept for the targets: ns[impl][op][dist][decade]. */
enum { O_LOAD, O_MANY, O_INSERT, O_ERASE, NOPS_KEPT };
#define MAX_DECADE 9
static double kept[NIMPL][NOPS_KEPT][NDIST][MAX_DECADE];
static double kept_bpe[NIMPL][NDIST][MAX_DECADE];

/* One design's part of one (n, distribution) run. */
struct sp_built {
	struct sp_case c;
	size_t probes; /* lookups per timed run */
	double bpe;
};

/* Builds impl's map (the insert row) and keeps it for the lookups. */
static void build_impl(struct gmb_ctx *ctx, const struct sp_impl *impl, int dist,
		       unsigned decade, const struct sp_work *w, size_t nprobe,
		       struct sp_built *b)
{
	uint64_t n = w->n;
	*b = (struct sp_built){.c = {.impl = impl, .w = w}, .probes = nprobe};
	struct sp_case *c = &b->c;
	/* Cheap ops are probed nprobe times; hash256's chains hold n/256
	 * entries, so it gets fewer probes at large n to keep the run short. */
	if (impl == &impls[I_HASH256]) {
		uint64_t budget = (1ULL << 26) / n;
		b->probes = budget < 16 ? 16 : budget < nprobe ? (size_t)budget : nprobe;
	}
	double ns;
	if (n <= 100000) {
		ns = gmb_measure(ctx, &(struct gmb_case){.arg = c, .setup = c_create,
							  .body = c_insert, .teardown = c_destroy});
		c_create(c);
		c_insert(c);
	} else {
		c_create(c);
		ns = gmb_measure_n(ctx, &(struct gmb_case){.arg = c, .body = c_insert}, 1, false);
	}
	/* Untimed: let the insert phase's deferred frees (gm_pagemap's
	 * replaced nodes) finish, so the lookups below do not share the
	 * machine with the reclaim thread. */
	gm_rcu_barrier();
	b->bpe = (double)impl->bytes(c->s) / (double)n;
	gmb_row(ctx, impl->name, "insert", n, dist_name[dist], ns, b->bpe);
	kept[impl - impls][O_INSERT][dist][decade] = ns;
	kept_bpe[impl - impls][dist][decade] = b->bpe;
}

/* One lookup op over every built design, measured side by side
 * (gmb_measure_group), so that the ratios the targets take compare runs
 * made under the same load: measured one design after the other, seconds
 * apart, gm_pagemap's load at 10^5 and 10^7 random keys moved 1.6-1.8x
 * between runs of gmbench while judyl's did not. */
struct sp_lookup {
	const char *op;
	bool miss;                 /* probes: absent keys, else present ones */
	uint64_t (*body)(void *);
	int kept;                  /* slot of kept[] for the targets, or -1 */
};
static const struct sp_lookup lookup_ops[] = {
	{"load", false, c_load, O_LOAD},
	{"load_miss", true, c_load, -1},
	{"load_many", false, c_load_many, O_MANY},
};

static void lookups(struct gmb_ctx *ctx, struct sp_built *b, int nb, int dist,
		    unsigned decade, const struct sp_lookup *l)
{
	struct gmb_case cases[NIMPL];
	double ns[NIMPL];
	for (int i = 0; i < nb; i++) {
		b[i].c.probe = l->miss ? b[i].c.w->miss : b[i].c.w->hit;
		b[i].c.nprobe = b[i].probes;
		cases[i] = (struct gmb_case){.arg = &b[i].c, .body = l->body};
	}
	gmb_measure_group(ctx, cases, nb, ns);
	for (int i = 0; i < nb; i++) {
		const struct sp_impl *impl = b[i].c.impl;
		gmb_row(ctx, impl->name, l->op, b[i].c.w->n, dist_name[dist], ns[i], b[i].bpe);
		if (l->kept >= 0)
			kept[impl - impls][l->kept][dist][decade] = ns[i];
	}
}

/* erase and walk (each design on its own), then the map is destroyed. */
static void finish_impl(struct gmb_ctx *ctx, int dist, unsigned decade, size_t nprobe,
			struct sp_built *b)
{
	struct sp_case *c = &b->c;
	const struct sp_work *w = c->w;
	uint64_t n = w->n;
	const char *d = dist_name[dist];
	c->probe = w->gone;
	c->nprobe = w->ngone < b->probes ? w->ngone : b->probes;
	/* One cold run: a re-insert would put hash256's keys at the heads of
	 * their chains and make later runs unrealistically cheap. */
	double ns = gmb_measure_n(ctx, &(struct gmb_case){.arg = c, .body = c_erase,
							   .teardown = c_reinsert}, 1, false);
	gmb_row(ctx, c->impl->name, "erase", n, d, ns, b->bpe);
	kept[c->impl - impls][O_ERASE][dist][decade] = ns;

	c->nprobe = n < nprobe ? n : nprobe;
	ns = gmb_measure(ctx, &(struct gmb_case){.arg = c, .body = c_walk});
	gmb_row(ctx, c->impl->name, "walk", n, d, ns, b->bpe);

	if (c->failures)
		gmb_note(ctx, "%s %s n=%llu: %llu operations failed unexpectedly",
			 c->impl->name, d, (unsigned long long)n,
			 (unsigned long long)c->failures);
	c_destroy(c);
}

/* n runs over the decades a distribution is measured at. */
static uint64_t dist_max(int d, uint64_t max)
{
	return d == D_FRAMES && max > FRAMES_MAX_N ? FRAMES_MAX_N : max;
}

static void target_ns(struct gmb_ctx *ctx, const char *op, uint64_t n, int d,
		      const char *other, const char *other_op, double bound)
{
	char what[160];
	snprintf(what, sizeof(what), "%s <= %.1fx %s%s%s at n=%llu %s", op, bound, other,
		 strcmp(op, other_op) ? "'s " : "", strcmp(op, other_op) ? other_op : "",
		 (unsigned long long)n, dist_name[d]);
	gmb_target_ratio(ctx, what, (struct gmb_sel){"gm_pagemap", op, n, dist_name[d]},
			 (struct gmb_sel){other, other_op, n, dist_name[d]}, GMB_AT_MOST, bound);
}

static void target_bytes(struct gmb_ctx *ctx, uint64_t n, int d, const char *other,
			 double bound)
{
	char what[160];
	snprintf(what, sizeof(what), "bytes/entry <= %.2fx %s at n=%llu %s", bound, other,
		 (unsigned long long)n, dist_name[d]);
	gmb_target_bytes_ratio(ctx, what, (struct gmb_sel){"gm_pagemap", "load", n, dist_name[d]},
			       (struct gmb_sel){other, "load", n, dist_name[d]},
			       GMB_AT_MOST, bound);
}

/* Issue 19's targets, per distribution and n. */
static void declare_targets(struct gmb_ctx *ctx, uint64_t max)
{
	for (int d = 0; d < NDIST; d++) {
		bool radix_ground = d != D_RANDOM; /* dense, clustered, frames */
		for (uint64_t n = 100; n <= dist_max(d, max); n *= 10) {
			if (radix_ground && (d != D_FRAMES || n >= 100000))
				target_ns(ctx, "load", n, d, "radix64", "load", 1.0);
			if (n >= 10000)
				target_ns(ctx, "load", n, d, "judyl", "load", 0.8);
			for (int w = 0; w < 2; w++) {
				const char *op = w ? "erase" : "insert";
				if (radix_ground)
					target_ns(ctx, op, n, d, "radix64", op, 2.0);
				target_ns(ctx, op, n, d, "judyl", op, 1.0);
			}
			target_bytes(ctx, n, d, "judyl", 1.0);
			if (d == D_RANDOM && n <= impls[I_RADIX64].max_n[D_RANDOM])
				target_bytes(ctx, n, d, "radix64", 0.25);
			if (n >= 1000000) {
				target_ns(ctx, "load_many", n, d, "gm_pagemap", "load", 0.4);
				if (d != D_RANDOM)
					target_ns(ctx, "load_many", n, d, "radix64", "load_many", 1.0);
			}
		}
	}
}

/* The design with the lowest kept value (op, or bytes when op < 0) at d
 * and decade, among those measured; -1 if none. */
static int best_impl(int op, int d, unsigned decade)
{
	int best = -1;
	for (int i = 0; i < NIMPL; i++) {
		double v = op < 0 ? kept_bpe[i][d][decade] : kept[i][op][d][decade];
		double b = best < 0 ? 0 : op < 0 ? kept_bpe[best][d][decade] : kept[best][op][d][decade];
		if (v > 0 && (best < 0 || v < b))
			best = i;
	}
	return best;
}

/* Appends "10^a-10^b X, ..." : the winner of op over the decades. */
static int winners(char *buf, size_t size, int op, int d, unsigned first, unsigned last)
{
	int len = 0, prev = -2;
	unsigned from = first;
	for (unsigned k = first; k <= last + 1; k++) {
		int w = k <= last ? best_impl(op, d, k) : -3;
		if (k > first && w != prev && prev >= 0)
			len += snprintf(buf + len, size - (size_t)len, "%s%s at 10^%u%s%.0u",
					len ? ", " : "", impls[prev].name, from,
					k - 1 > from ? "-10^" : "", k - 1 > from ? k - 1 : 0);
		if (w != prev)
			from = k;
		prev = w;
	}
	return len;
}

/* The decades where gm_pagemap's op time is at or below other's: "at every
 * measured n", "at no measured n", or "at 10^a, 10^b of 10^c-10^d". */
static const char *crossing(char *buf, size_t size, int op, int d, int other,
			    unsigned first, unsigned last)
{
	int len = 0, measured = 0, below = 0;
	unsigned lo = 0, hi = 0;
	for (unsigned k = first; k <= last; k++) {
		double a = kept[I_PAGEMAP][op][d][k], b = kept[other][op][d][k];
		if (a <= 0 || b <= 0)
			continue;
		lo = measured++ ? lo : k;
		hi = k;
		if (a <= b)
			len += snprintf(buf + len, size - (size_t)len, "%s10^%u",
					below++ ? ", " : "at or below it at ", k);
	}
	if (!measured)
		snprintf(buf, size, "not measured");
	else if (below == measured)
		snprintf(buf, size, "at or below it at every measured n");
	else if (!below)
		snprintf(buf, size, "above it at every measured n");
	else
		snprintf(buf + len, size - (size_t)len, " (of 10^%u-10^%u)", lo, hi);
	return buf;
}

/* The paragraph answering the seed (hash vs radix vs rb-tree, for which
 * population), from this run's figures. */
static void declare_story(struct gmb_ctx *ctx, uint64_t max)
{
	char text[4096], a[400], b[400], c1[160], c2[160], c3[160];
	int len = snprintf(text, sizeof(text), "Which structure for which population "
			   "(this run's medians): ");
	for (int d = 0; d < NDIST; d++) {
		unsigned last = 2;
		for (uint64_t n = 1000; n <= dist_max(d, max) && last + 1 < MAX_DECADE; n *= 10)
			last++;
		winners(a, sizeof(a), O_LOAD, d, 2, last);
		winners(b, sizeof(b), -1, d, 2, last);
		len += snprintf(text + len, sizeof(text) - (size_t)len,
				"%s: fastest load %s; smallest %s; gm_pagemap's load vs "
				"radix64 %s, vs openhash %s; its insert vs radix64 %s. ",
				dist_name[d], a, b,
				crossing(c1, sizeof(c1), O_LOAD, d, I_RADIX64, 2, last),
				crossing(c2, sizeof(c2), O_LOAD, d, I_OPENHASH, 2, last),
				crossing(c3, sizeof(c3), O_INSERT, d, I_RADIX64, 2, last));
		if (len >= (int)sizeof(text))
			break;
	}
	gmb_note(ctx, "%s", text);
	unsigned k = 2; /* radix64's largest random n */
	while (k + 1 < MAX_DECADE && kept_bpe[I_RADIX64][D_RANDOM][k + 1] > 0)
		k++;
	double rx = kept_bpe[I_PAGEMAP][D_RANDOM][k] > 0
		? kept_bpe[I_RADIX64][D_RANDOM][k] / kept_bpe[I_PAGEMAP][D_RANDOM][k] : 0;
	gmb_note(ctx, "So: a flat array where frames are dense and bounded; a hash "
		      "(openhash) where only single loads of known keys matter, not order "
		      "or memory; a radix tree (radix64) only where frames are known to be "
		      "dense or clustered (random keys: %.0fx gm_pagemap's bytes at "
		      "10^%u); gm_pagemap where the population is unknown or mixed, or "
		      "must be walked in order, at the least memory.", rx, k);
}

static void run(struct gmb_ctx *ctx)
{
	bool quick = gmb_quick(ctx);
	uint64_t max = gmb_max_size(ctx, quick ? 10000 : 10000000);
	struct gmb_rng rng;
	gmb_rng_init(&rng, gmb_seed(ctx));
	gm_rcu_register_thread();
	gmb_reference(ctx, "openhash");
	for (int dist = 0; dist < NDIST; dist++) {
		unsigned decade = 2;
		for (uint64_t n = 100; n <= dist_max(dist, max) && decade < MAX_DECADE;
		     n *= 10, decade++) {
			/* enough probes for a stable median, few enough that the
			 * default run (10^7) stays near two minutes */
			size_t nprobe = quick ? 1u << 12 : n >= 10000000 ? 1u << 15
						 : n >= 1000000 ? 1u << 16 : 1u << 17;
			struct sp_work w;
			make_work(&w, dist, n, nprobe, &rng);
			struct sp_built built[NIMPL];
			int nb = 0;
			for (int i = 0; i < NIMPL; i++) {
				const struct sp_impl *impl = &impls[i];
				if ((impl->dense_only && dist != D_DENSE) ||
				    (impl->max_n[dist] && n > impl->max_n[dist]))
					continue;
				gmb_progress(ctx, "%s %s n=%llu", impl->name, dist_name[dist],
					     (unsigned long long)n);
				build_impl(ctx, impl, dist, decade, &w, nprobe, &built[nb++]);
			}
			for (size_t o = 0; o < sizeof(lookup_ops) / sizeof(lookup_ops[0]); o++)
				lookups(ctx, built, nb, dist, decade, &lookup_ops[o]);
			for (int i = 0; i < nb; i++)
				finish_impl(ctx, dist, decade, nprobe, &built[i]);
			free_work(&w);
		}
	}
	gm_rcu_unregister_thread();
	gmb_note(ctx, "gm_pagemap runs in RCU mode (GM_RCU); its load, "
		      "load_many and walk hold one gm_rcu_read_lock() around a whole "
		      "batch of probes; before its lookups, gm_rcu_barrier() (untimed) lets "
		      "the frees deferred by the inserts finish. Its bytes are its live nodes (gm_pagemap_stats, "
		      "equal to the counting allocator's figure) plus struct gm_pagemap.");
	gmb_note(ctx, "load_many: gm_pagemap walks batches of 64 keys level by level "
		      "with prefetches (a plain loop of loads below 2^17 entries), "
		      "openhash prefetches 16 home slots; the other rows "
		      "are their plain load loop. walk: ordered for the trees, JudyL "
		      "and flat; slot order for hash256 and openhash.");
	gmb_note(ctx, "load, load_miss and load_many: every design's map for one n and "
		      "distribution is built first, then each op is timed on all of "
		      "them side by side (one warm-up each, then --repeat rounds, "
		      "medians), so the ratios compare runs made under the same load.");
	gmb_note(ctx, "Probes per op: 2^17 up to n=10^5, 2^16 at 10^6, 2^15 at 10^7. "
		      "hash256 gets fewer (2^26/n, at least 16): each lookup walks a "
		      "chain of n/256 nodes. Capped to keep the default run near two "
		      "minutes: rbtree stops at n=10^6 (~2 us per cold lookup), radix64 "
		      "at 10^5 random keys (~2 nodes of 576 B per random key).");
	if (frames_made)
		gmb_note(ctx, "frames: %s", frames_real
			 ? "the physical frame numbers of a freshly touched anonymous "
			   "mapping of n 4 KiB pages (MADV_NOHUGEPAGE), read from "
			   "/proc/self/pagemap (readable as root), inserted in the "
			   "mapping's page order"
			 : "the frame bits of /proc/self/pagemap could not be read (not "
			   "root?), so the synthetic model: runs of 1-64 consecutive "
			   "frames (uniform), each at a distinct 64-aligned frame below "
			   "2^26, in run order");
	declare_targets(ctx, max);
	declare_story(ctx, max);
}

GMB_SCENARIO(shadow_pages, "frame number -> shadow page: gm_pagemap vs hash256, "
	     "radix64, rbtree, judyl, openhash, flat", run)
