/*
 * bench/scenarios/rmap_fork.c — reverse maps under shadow paging.
 *
 * Entries are pointers to simulated shadow PTEs (8-byte slots of one big
 * array). Four designs, same vtable, same allocator accounting:
 *   gm_rmap  one-word head; 2+ entries: cuckoo table of 64-B lines (ours)
 *   desc4    2010 KVM: descriptors of 4 + more; add walks, remove searches
 *   sibling  2010 proposal: per-PTE "next sibling" array, intrusive list
 *   kvm14    KVM today: 128-byte descriptors of 14, full non-head ones
 *
 * Rows:
 *  add/remove, dist "chain", n = chain length L: K = max(1, T / L) heads
 *    of L entries each (T = 100,000 entries in all, so every row works on
 *    the same ~1 MB of entries and only the chain shape differs). remove
 *    = removing R random entries (random heads, random members), untimed
 *    re-add afterwards; add = the same R removed untimed, the cache topped
 *    up, then re-adding them timed (topups an add still needs are inside
 *    the timing). bytes_per_entry = bytes the heads and everything they
 *    own take per mapping (head words included; sibling: its array).
 *  fork, dist "storm": P pages mapped once by a parent; N children each
 *    map every page (in a random order), then exit in random order, each
 *    removing its mappings. ns per child mapping (add + remove);
 *    bytes_per_entry = extra bytes per additional mapping at the peak.
 *  zap, dist "storm": at the peak of the storm, all mappings of P/4 random
 *    pages are zapped (clear with a callback that clears the PTE); ns per
 *    mapping zapped.
 */
#include "gmbench.h"

#include <gmtrack/alloc.h>
#include <gmtrack/rmap.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "desc4.h"
#include "kvm14.h"
#include "sibling.h"

/* ---- one vtable over the four designs ----------------------------------- */
struct impl {
	const char *name;
	int kind;
	struct gm_alloc_counting counting;
	struct gm_rmap_cache *cache;       /* gm_rmap */
	struct bl_objcache objs;          /* desc4, kvm14 */
	struct bl_sibling sib;            /* sibling */
};

enum { K_GM, K_DESC4, K_SIBLING, K_KVM14, K_COUNT };
static const char *const impl_names[K_COUNT] = {"gm_rmap", "desc4", "sibling", "kvm14"};

static void impl_init(struct impl *im, int kind, uint64_t *ptes, size_t nslots)
{
	memset(im, 0, sizeof(*im));
	im->kind = kind;
	im->name = impl_names[kind];
	gm_alloc_counting_init(&im->counting, NULL);
	const struct gm_allocator *a = &im->counting.allocator;
	switch (kind) {
	case K_GM:
		gm_rmap_cache_create(&im->cache, 0, a);
		break;
	case K_DESC4:
		bl_desc4_cache_init(&im->objs, a);
		break;
	case K_KVM14:
		bl_kvm14_cache_init(&im->objs, a);
		break;
	case K_SIBLING:
		if (bl_sibling_init(&im->sib, a, ptes, nslots)) {
			fprintf(stderr, "rmap_fork: out of memory\n");
			exit(1);
		}
		break;
	}
}

static void impl_destroy(struct impl *im)
{
	gm_rmap_cache_destroy(im->cache);
	bl_objcache_destroy(&im->objs);
	if (im->kind == K_SIBLING)
		bl_sibling_destroy(&im->sib);
}

/* Every add is preceded by the same top-up call for every cache-based
 * design, as KVM does before each fault: "make the cache hold at least
 * TOPUP objects" (O(1) when it does). Outside the caller's lock in real
 * use; here it is timed with the add. gm_rmap's cache also stocks the
 * table sizes recent adds asked for; an add that still finds its size
 * missing (a table that must grow early after an unlucky placement) gets
 * -ENOMEM, and is topped up and retried, as a KVM caller would. */
#define TOPUP 8
static size_t gm_retries;   /* gm_rmap adds that got -ENOMEM after a topup */

static inline void impl_add(struct impl *im, uintptr_t *head, void *p)
{
	int rc = 0;
	switch (im->kind) {
	case K_GM:
		gm_rmap_cache_topup(im->cache, TOPUP);
		rc = gm_rmap_add((struct gm_rmap_head *)head, p, im->cache);
		if (rc == -ENOMEM) {
			gm_retries++;
			gm_rmap_cache_topup(im->cache, TOPUP);
			rc = gm_rmap_add((struct gm_rmap_head *)head, p, im->cache);
		}
		break;
	case K_DESC4:
		bl_objcache_topup(&im->objs, TOPUP);
		rc = bl_desc4_add(head, p, &im->objs);
		break;
	case K_KVM14:
		bl_objcache_topup(&im->objs, TOPUP);
		rc = bl_kvm14_add(head, p, &im->objs);
		break;
	case K_SIBLING:
		rc = bl_sibling_add(&im->sib, head, p);
		break;
	}
	if (rc) {
		fprintf(stderr, "rmap_fork: %s add failed (%d)\n", im->name, rc);
		abort();
	}
}

static inline void impl_remove(struct impl *im, uintptr_t *head, void *p)
{
	int rc = 0;
	switch (im->kind) {
	case K_GM:
		rc = gm_rmap_remove((struct gm_rmap_head *)head, p, im->cache);
		break;
	case K_DESC4:
		rc = bl_desc4_remove(head, p, &im->objs);
		break;
	case K_KVM14:
		rc = bl_kvm14_remove(head, p, &im->objs);
		break;
	case K_SIBLING:
		rc = bl_sibling_remove(&im->sib, head, p);
		break;
	}
	if (rc) {
		fprintf(stderr, "rmap_fork: %s remove failed (%d)\n", im->name, rc);
		abort();
	}
}

static void zap_pte(void *ctx, void *p)
{
	(void)ctx;
	*(uint64_t *)p = 0;
}

static inline void impl_zap(struct impl *im, uintptr_t *head)
{
	switch (im->kind) {
	case K_GM:
		gm_rmap_clear((struct gm_rmap_head *)head, im->cache, zap_pte, NULL);
		break;
	case K_DESC4:
		bl_desc4_clear(head, &im->objs, zap_pte, NULL);
		break;
	case K_KVM14:
		bl_kvm14_clear(head, &im->objs, zap_pte, NULL);
		break;
	case K_SIBLING:
		bl_sibling_clear(&im->sib, head, zap_pte, NULL);
		break;
	}
}

/* Bytes the heads own for `mappings` mappings (cache contents excluded). */
static double impl_bytes(struct impl *im, size_t nheads, size_t mappings)
{
	if (im->kind == K_SIBLING)   /* one sibling pointer per mapped PTE */
		return 8.0 * (double)nheads + 8.0 * (double)mappings;
	size_t b = gm_alloc_counting_bytes(&im->counting);
	b -= gm_rmap_cache_bytes(im->cache) + bl_objcache_bytes(&im->objs);
	return 8.0 * (double)nheads + (double)b;
}

static void shuffle(uint32_t *a, size_t n, struct gmb_rng *rng)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = gmb_rng_below(rng, i);
		uint32_t t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

/* ---- chain rows -------------------------------------------------------- */
struct chain {
	struct impl *im;
	uintptr_t *heads;
	uint64_t *ptes;
	size_t len, nheads, built, r;  /* slots [0, built) are mapped */
	uint32_t *victims;             /* slots removed / re-added */
	uint32_t *vhead;               /* their heads (victims[i] / len) */
	uint32_t *perm;                /* 0..built-1, partially shuffled */
	struct gmb_rng rng;
};

/* The head of victim i. Its index is computed in setup (untimed): a
 * 64-bit division per operation in the timed loop (slot / len) delays the
 * start of every operation's dependent loads and cost the long-chain rows
 * far more than the chain-1 rows (gm_rmap remove at chain 100000: ~33 ns
 * with it, ~17 ns without; chain 1: ~5 ns either way). A VMM finds the
 * head with a shift and an add. */
static uintptr_t *head_of(struct chain *c, size_t i) { return &c->heads[c->vhead[i]]; }

static void remove_setup(void *arg)
{
	struct chain *c = arg;
	for (size_t i = 0; i < c->r; i++) {   /* R distinct random slots */
		size_t j = i + gmb_rng_below(&c->rng, c->built - i);
		uint32_t t = c->perm[i];
		c->perm[i] = c->perm[j];
		c->perm[j] = t;
		c->victims[i] = c->perm[i];
		c->vhead[i] = (uint32_t)(c->perm[i] / c->len);
	}
}

static uint64_t remove_body(void *arg)
{
	struct chain *c = arg;
	for (size_t i = 0; i < c->r; i++)
		impl_remove(c->im, head_of(c, i), &c->ptes[c->victims[i]]);
	return c->r;
}

static void remove_teardown(void *arg)
{
	struct chain *c = arg;
	for (size_t i = c->r; i-- > 0;)
		impl_add(c->im, head_of(c, i), &c->ptes[c->victims[i]]);
}

/* add: the same R random entries are removed untimed first, the cache is
 * topped up, and re-adding them is timed, so every chain length (1
 * included: an add into an empty head) is measured on warm heads and a
 * full cache, as remove is. */
static void add_setup(void *arg)
{
	struct chain *c = arg;
	remove_setup(c);
	for (size_t i = 0; i < c->r; i++)
		impl_remove(c->im, head_of(c, i), &c->ptes[c->victims[i]]);
	if (c->im->kind == K_GM)
		gm_rmap_cache_topup(c->im->cache, TOPUP);
	else if (c->im->kind != K_SIBLING)
		bl_objcache_topup(&c->im->objs, TOPUP);
}

static uint64_t add_body(void *arg)
{
	struct chain *c = arg;
	for (size_t i = c->r; i-- > 0;)
		impl_add(c->im, head_of(c, i), &c->ptes[c->victims[i]]);
	return c->r;
}

static void run_chain(struct gmb_ctx *ctx, size_t len, size_t total)
{
	size_t nheads = len >= total ? 1 : total / len;
	size_t built = nheads * len;
	size_t r = 2000000 / len;
	r = r < 200 ? 200 : r > 20000 ? 20000 : r;
	if (r > built / 2 && built > 1)
		r = built / 2;
	if (r < 1)
		r = 1;
	uint64_t *ptes = calloc(built + r, sizeof(uint64_t));
	uintptr_t *heads = calloc(nheads, sizeof(uintptr_t));
	uint32_t *victims = malloc(r * sizeof(uint32_t));
	uint32_t *vhead = malloc(r * sizeof(uint32_t));
	uint32_t *perm = malloc(built * sizeof(uint32_t));
	if (!ptes || !heads || !victims || !vhead || !perm) {
		fprintf(stderr, "rmap_fork: out of memory\n");
		exit(1);
	}
	for (int k = 0; k < K_COUNT; k++) {
		struct impl im;
		impl_init(&im, k, ptes, built + r);
		struct chain c = {&im, heads, ptes, len, nheads, built, r, victims, vhead, perm, {{0}}};
		gmb_rng_init(&c.rng, gmb_seed(ctx) + len);
		for (uint32_t i = 0; i < built; i++)
			perm[i] = i;
		/* build round by round, so the heads' blocks interleave in memory */
		for (size_t j = 0; j < len; j++)
			for (size_t h = 0; h < nheads; h++)
				impl_add(&im, &heads[h], &ptes[h * len + j]);
		double bytes = impl_bytes(&im, nheads, built) / (double)built;
		double ns = gmb_measure(ctx, &(struct gmb_case){.arg = &c, .setup = remove_setup,
				.body = remove_body, .teardown = remove_teardown});
		gmb_row(ctx, im.name, "remove", len, "chain", ns, bytes);
		ns = gmb_measure(ctx, &(struct gmb_case){.arg = &c, .setup = add_setup,
				.body = add_body});
		gmb_row(ctx, im.name, "add", len, "chain", ns, bytes);
		for (size_t h = 0; h < nheads; h++)
			impl_zap(&im, &heads[h]);
		impl_destroy(&im);
	}
	free(ptes);
	free(heads);
	free(victims);
	free(vhead);
	free(perm);
}

/* ---- the fork storm ------------------------------------------------------ */
struct storm {
	struct impl *im;
	uintptr_t *heads;
	uint64_t *ptes;            /* slot c * P + i: process c's PTE for page i */
	size_t pages, children;
	uint32_t *order;           /* per child: its page-fault order */
	uint32_t *exit_order;      /* children */
	uint32_t *zap;             /* pages to zap */
	size_t nzap;
	struct gmb_rng rng;
};

static void storm_map(struct storm *s)
{
	for (size_t c = 1; c <= s->children; c++) {
		const uint32_t *ord = &s->order[(c - 1) * s->pages];
		for (size_t k = 0; k < s->pages; k++) {
			uint32_t i = ord[k];
			s->ptes[c * s->pages + i] = 1;
			impl_add(s->im, &s->heads[i], &s->ptes[c * s->pages + i]);
		}
	}
}

static void storm_exit(struct storm *s)
{
	for (size_t x = 0; x < s->children; x++) {
		size_t c = s->exit_order[x];
		for (size_t i = 0; i < s->pages; i++)
			impl_remove(s->im, &s->heads[i], &s->ptes[c * s->pages + i]);
	}
}

static uint64_t fork_body(void *arg)
{
	struct storm *s = arg;
	storm_map(s);
	storm_exit(s);
	return s->pages * s->children;
}

static void zap_setup(void *arg)
{
	struct storm *s = arg;
	storm_map(s);
	for (size_t i = 0; i < s->nzap; i++)
		s->zap[i] = (uint32_t)gmb_rng_below(&s->rng, s->pages);
}

static uint64_t zap_body(void *arg)
{
	struct storm *s = arg;
	uint64_t zapped = 0;
	for (size_t i = 0; i < s->nzap; i++) {
		uintptr_t *h = &s->heads[s->zap[i]];
		zapped += *h ? s->children + 1 : 0;  /* repeats zap nothing */
		impl_zap(s->im, h);
	}
	return zapped ? zapped : 1;
}

static void zap_teardown(void *arg)
{
	struct storm *s = arg;   /* back to: each page mapped by the parent */
	for (size_t i = 0; i < s->pages; i++) {
		impl_zap(s->im, &s->heads[i]);
		impl_add(s->im, &s->heads[i], &s->ptes[i]);
	}
}

/* Every design gets its own heads over the same PTE slots and fault
 * orders. The fork rows (the target's) are timed side by side
 * (gmb_measure_group): timed one design after the other, kvm14's storm
 * read 82 ns per mapping in one run of gmbench and 218 ns in another,
 * while gm_rmap's moved less (93-118 ns). zap is timed per design. */
static void run_storm(struct gmb_ctx *ctx, size_t pages, size_t children)
{
	size_t nslots = pages * (children + 1);
	uint64_t *ptes = calloc(nslots, sizeof(uint64_t));
	uintptr_t *heads = calloc((size_t)K_COUNT * pages, sizeof(uintptr_t));
	uint32_t *order = malloc(pages * children * sizeof(uint32_t));
	uint32_t *exit_order = malloc(children * sizeof(uint32_t));
	uint32_t *zap = malloc(pages * sizeof(uint32_t));
	if (!ptes || !heads || !order || !exit_order || !zap) {
		fprintf(stderr, "rmap_fork: out of memory\n");
		exit(1);
	}
	struct gmb_rng rng;
	gmb_rng_init(&rng, gmb_seed(ctx) ^ 0x5eed);
	for (size_t c = 0; c < children; c++) {
		for (size_t i = 0; i < pages; i++)
			order[c * pages + i] = (uint32_t)i;
		shuffle(&order[c * pages], pages, &rng);
		exit_order[c] = (uint32_t)(c + 1);
	}
	shuffle(exit_order, children, &rng);
	struct impl im[K_COUNT];
	struct storm s[K_COUNT];
	struct gmb_case fork_cases[K_COUNT];
	double extra[K_COUNT], ns[K_COUNT];
	for (int k = 0; k < K_COUNT; k++) {
		uintptr_t *h = &heads[(size_t)k * pages];
		impl_init(&im[k], k, ptes, nslots);
		s[k] = (struct storm){&im[k], h, ptes, pages, children, order, exit_order,
				      zap, pages / 4, {{0}}};
		gmb_rng_init(&s[k].rng, gmb_seed(ctx));
		for (size_t i = 0; i < pages; i++)
			impl_add(&im[k], &h[i], &ptes[i]);
		double before = impl_bytes(&im[k], pages, pages);
		storm_map(&s[k]);
		double peak = impl_bytes(&im[k], pages, nslots);
		storm_exit(&s[k]);
		extra[k] = (peak - before) / (double)(pages * children);
		fork_cases[k] = (struct gmb_case){.arg = &s[k], .body = fork_body};
	}
	gmb_measure_group(ctx, fork_cases, K_COUNT, ns);
	for (int k = 0; k < K_COUNT; k++)
		gmb_row(ctx, im[k].name, "fork", pages * children, "storm", ns[k], extra[k]);
	for (int k = 0; k < K_COUNT; k++) {
		double z = gmb_measure(ctx, &(struct gmb_case){.arg = &s[k], .setup = zap_setup,
				.body = zap_body, .teardown = zap_teardown});
		gmb_row(ctx, im[k].name, "zap", pages * children, "storm", z, -1);
		for (size_t i = 0; i < pages; i++)
			impl_zap(&im[k], &s[k].heads[i]);
		impl_destroy(&im[k]);
	}
	free(ptes);
	free(heads);
	free(order);
	free(exit_order);
	free(zap);
}

static void run(struct gmb_ctx *ctx)
{
	bool quick = gmb_quick(ctx);
	uint64_t max = gmb_max_size(ctx, quick ? 10000 : 100000);
	size_t total = quick ? 10000 : 100000;
	if (max > total)
		total = (size_t)max;
	gmb_reference(ctx, "kvm14");
	/* 1, 10, then 64 (the first length well past the inline head and a
	 * one-line table: where the flat line starts), 100, ... */
	for (uint64_t len = 1; len <= max; len = len == 10 ? 64 : len == 64 ? 100 : len * 10) {
		gmb_progress(ctx, "chains of %llu", (unsigned long long)len);
		run_chain(ctx, (size_t)len, total);
	}
	size_t pages = quick ? 1024 : 8192, children = quick ? 16 : 64;
	gmb_progress(ctx, "fork storm: %zu pages, %zu children", pages, children);
	run_storm(ctx, pages, children);

	uint64_t top = 1;
	while (top * 10 <= max)
		top *= 10;
	gmb_note(ctx, "chain rows: %zu entries in all, in max(1, %zu/L) heads of L; "
		      "remove = a random member of a random head (re-added untimed), "
		      "add = re-adding R entries removed untimed, into warm heads. "
		      "Every add of every design is preceded by the same timed call "
		      "'top the cache up to %d objects' (KVM's per-fault topup; O(1) when full; "
		      "sibling has no cache); remove and zap free into the same caches. "
		      "fork storm: %zu pages, parent + %zu children mapping every page "
		      "in random order (per mapping: PTE write + topup + add), exiting in "
		      "random order (per mapping: remove); fork ns = (map + exit) / mappings; "
		      "fork bytes = extra bytes per additional mapping at the peak, caches "
		      "excluded. gm_rmap adds retried after -ENOMEM (size not stocked): %zu "
		      "over the whole run. zap: all mappings of %zu random pages at the peak.",
		 total, total, TOPUP, pages, children, gm_retries, pages / 4);
	/* O(1) whatever the length, from 64 up (both past the head) */
	for (uint64_t len = 1000; len <= max; len *= 10) {
		for (int w = 0; w < 2; w++) {
			const char *op = w ? "remove" : "add";
			char what[128];
			snprintf(what, sizeof(what), "gm_rmap %s at chain %llu <= 1.5x at chain 64",
				 op, (unsigned long long)len);
			gmb_target_ratio(ctx, what, (struct gmb_sel){"gm_rmap", op, len, "chain"},
					 (struct gmb_sel){"gm_rmap", op, 64, "chain"},
					 GMB_AT_MOST, 1.5);
		}
	}
	gmb_target_bound(ctx, "<= 8 bytes per page for pages mapped at most once",
			 (struct gmb_sel){"gm_rmap", "add", 1, "chain"}, GMB_BYTES,
			 GMB_AT_MOST, 8.0);
	gmb_target_bound(ctx, "<= 9.2 bytes per mapping on the longest chain (KVM's 128 B / 14)",
			 (struct gmb_sel){"gm_rmap", "add", top, "chain"}, GMB_BYTES,
			 GMB_AT_MOST, 9.2);
	gmb_target_bound(ctx, "<= 9.2 bytes per additional mapping in the fork storm",
			 (struct gmb_sel){"gm_rmap", "fork", pages * children, "storm"},
			 GMB_BYTES, GMB_AT_MOST, 9.2);
	gmb_target_ratio(ctx, "fork storm >= 1.3x faster than kvm14",
			 (struct gmb_sel){"gm_rmap", "fork", pages * children, "storm"},
			 (struct gmb_sel){"kvm14", "fork", pages * children, "storm"},
			 GMB_AT_MOST, 1.0 / 1.3);
}

GMB_SCENARIO(rmap_fork, "reverse maps: chains of 1..1e5 and a fork storm (gm_rmap vs KVM designs)", run)
