/* tests/rmap_test.c — gm_rmap against a multiset-per-head model. */
#include "harness.h"
#include "internal.h"

#include <gmtrack/gmtrack.h>
#include <gmtrack/rmap.h>

#include <stdbool.h>

/* ---- the model ------------------------------------------------------------
 * Entries are pointers into `slots` (8-byte aligned). Each slot is in at
 * most one head (as a shadow PTE maps one page), possibly several times
 * (copies[s]: gm_rmap is a multiset); per head the model keeps an array
 * of its distinct slots and each slot its index there, so a random member
 * is O(1) to pick and to remove, and total[h] counts the copies. */
struct model {
	size_t nheads, nslots;
	struct gm_rmap_head *heads;
	uint64_t *slots;            /* the entries point here */
	int32_t *owner;             /* per slot: head or -1 */
	uint32_t *pos;              /* per slot: index in its head's list */
	uint32_t **list;            /* per head: slot indices */
	uint32_t *len, *cap;        /* per head: distinct slots */
	uint32_t *copies;           /* per slot: times it is in its head */
	size_t *total;              /* per head: entries, copies included */
	uint32_t *free_slots;       /* slots in no head */
	size_t nfree;
	struct gm_alloc_counting counting;
	struct gm_rmap_cache *cache;
};

static void model_init(struct model *m, size_t nheads, size_t nslots,
		       const struct gm_allocator *parent)
{
	memset(m, 0, sizeof(*m));
	m->nheads = nheads;
	m->nslots = nslots;
	m->heads = calloc(nheads, sizeof(*m->heads));
	m->slots = calloc(nslots, sizeof(uint64_t));
	m->owner = malloc(nslots * sizeof(int32_t));
	m->pos = calloc(nslots, sizeof(uint32_t));
	m->list = calloc(nheads, sizeof(uint32_t *));
	m->len = calloc(nheads, sizeof(uint32_t));
	m->cap = calloc(nheads, sizeof(uint32_t));
	m->copies = calloc(nslots, sizeof(uint32_t));
	m->total = calloc(nheads, sizeof(size_t));
	m->free_slots = malloc(nslots * sizeof(uint32_t));
	for (size_t i = 0; i < nslots; i++) {
		m->owner[i] = -1;
		m->free_slots[i] = (uint32_t)(nslots - 1 - i);
	}
	m->nfree = nslots;
	gm_alloc_counting_init(&m->counting, parent);
	gm_rmap_cache_create(&m->cache, 0, &m->counting.allocator);
}

static void *slot_ptr(struct model *m, uint32_t s) { return &m->slots[s]; }
static uint32_t ptr_slot(struct model *m, void *p) { return (uint32_t)((uint64_t *)p - m->slots); }

static void model_add(struct model *m, size_t h, uint32_t s)
{
	m->total[h]++;
	if (m->copies[s]++) {   /* one more copy */
		CHECK_EQ(m->owner[s], (int32_t)h);
		return;
	}
	if (m->len[h] == m->cap[h]) {
		m->cap[h] = m->cap[h] ? m->cap[h] * 2 : 4;
		m->list[h] = realloc(m->list[h], m->cap[h] * sizeof(uint32_t));
	}
	m->pos[s] = m->len[h];
	m->list[h][m->len[h]++] = s;
	m->owner[s] = (int32_t)h;
}

/* Takes one copy of s out of its head; true if that was the last. */
static bool model_remove(struct model *m, uint32_t s)
{
	size_t h = (size_t)m->owner[s];
	m->total[h]--;
	if (--m->copies[s])
		return false;
	uint32_t i = m->pos[s], last = m->list[h][--m->len[h]];
	m->list[h][i] = last;
	m->pos[last] = i;
	m->owner[s] = -1;
	return true;
}

/* Takes a slot out of the free stack (at random index). */
static uint32_t take_free(struct model *m, struct gm_rng *rng)
{
	size_t i = gm_rng_below(rng, m->nfree);
	uint32_t s = m->free_slots[i];
	m->free_slots[i] = m->free_slots[--m->nfree];
	return s;
}

static void give_free(struct model *m, uint32_t s) { m->free_slots[m->nfree++] = s; }

/* Bytes of the largest table the cache was asked to stock (0: none). */
static size_t cache_wants(const struct gm_rmap_cache *c)
{
	size_t w = c->dir_want;
	for (uint32_t k = 2; k <= GM_RMAP_SMALL_LINES; k++)
		if ((c->small_want >> k & 1) && k * (size_t)GM_RMAP_BLOCK_SIZE > w)
			w = k * (size_t)GM_RMAP_BLOCK_SIZE;
	return w;
}

static size_t add_retries;   /* adds that needed a second topup */

/* Tops up and adds, topping up again after each -ENOMEM: an add that must
 * grow its table asks for the size it needs, and a rebuild that fails
 * (unlucky hashes) asks for the next one, at most three sizes up. */
static int add_topped(struct model *m, size_t h, void *p)
{
	CHECK_EQ(gm_rmap_cache_topup(m->cache, GM_RMAP_ADD_BLOCKS), 0);
	int rc = gm_rmap_add(&m->heads[h], p, m->cache);
	for (int tries = 0; rc == -ENOMEM && tries < 3; tries++) {
		CHECK(cache_wants(m->cache) > 0);
		CHECK_EQ(gm_rmap_cache_topup(m->cache, GM_RMAP_ADD_BLOCKS), 0);
		rc = gm_rmap_add(&m->heads[h], p, m->cache);
		add_retries += tries > 0;
	}
	return rc;
}

/* Head h holds exactly the model's entries: count, membership, iteration
 * (every copy once). */
static void check_head(struct model *m, size_t h)
{
	struct gm_rmap_head *head = &m->heads[h];
	CHECK_VALID(gm_rmap_validate(head, &reason), reason);
	CHECK_EQ(gm_rmap_count(head), m->total[h]);
	struct gm_rmap_iter it;
	size_t seen = 0;
	gm_rmap_iter_init(&it, head);
	for (void *p; gm_rmap_iter_next(&it, &p) == 0;) {
		uint32_t s = ptr_slot(m, p);
		CHECK(s < m->nslots);
		CHECK_EQ(m->owner[s], (int32_t)h);
		CHECK(m->slots[s] < m->copies[s]);  /* not seen more often */
		m->slots[s]++;
		seen++;
	}
	CHECK_EQ(seen, m->total[h]);
	for (uint32_t i = 0; i < m->len[h]; i++) {
		uint32_t s = m->list[h][i];
		CHECK_EQ(m->slots[s], m->copies[s]);
		m->slots[s] = 0;
		CHECK(gm_rmap_contains(head, slot_ptr(m, s)));
	}
	struct gm_rmap_stats st;
	gm_rmap_stats(head, &st);
	CHECK_EQ(st.count, m->total[h]);
}

/* What gm_rmap_add(head h, slot s) must return when the cache holds what
 * it needs (rmap.h, "Duplicates"): -ENOSPC if the head is hashed and
 * would hold more than GM_RMAP_MAX_COPIES copies of s, or if the add
 * turns a full unhashed table (GM_RMAP_LINEAR_MAX entries) into a hashed
 * one while some pointer would have more than GM_RMAP_MAX_COPIES copies;
 * else 0. */
static int expect_add(struct model *m, size_t h, uint32_t s)
{
	struct gm_rmap_stats st;
	gm_rmap_stats(&m->heads[h], &st);
	uint32_t mine = (m->owner[s] == (int32_t)h ? m->copies[s] : 0) + 1;
	if (st.form == GM_RMAP_HASH)
		return mine > GM_RMAP_MAX_COPIES ? -ENOSPC : 0;
	if (st.form == GM_RMAP_LIST && st.count == GM_RMAP_LINEAR_MAX) {
		uint32_t most = mine;
		for (uint32_t i = 0; i < m->len[h]; i++)
			if (m->copies[m->list[h][i]] > most)
				most = m->copies[m->list[h][i]];
		return most > GM_RMAP_MAX_COPIES ? -ENOSPC : 0;
	}
	return 0;
}

/* Bytes the heads own: everything allocated minus what the cache holds. */
static size_t heads_bytes(struct model *m)
{
	return gm_alloc_counting_bytes(&m->counting) - gm_rmap_cache_bytes(m->cache);
}

static size_t stats_bytes(struct model *m)
{
	size_t total = 0;
	for (size_t h = 0; h < m->nheads; h++) {
		struct gm_rmap_stats st;
		gm_rmap_stats(&m->heads[h], &st);
		total += st.bytes;
	}
	return total;
}

static void model_destroy(struct model *m)
{
	for (size_t h = 0; h < m->nheads; h++) {
		gm_rmap_clear(&m->heads[h], m->cache, NULL, NULL);
		CHECK_EQ(m->heads[h].word, 0);
		free(m->list[h]);
	}
	gm_rmap_cache_destroy(m->cache);
	CHECK_EQ(gm_alloc_counting_bytes(&m->counting), 0);  /* nothing leaks */
	free(m->heads);
	free(m->slots);
	free(m->owner);
	free(m->pos);
	free(m->list);
	free(m->len);
	free(m->cap);
	free(m->copies);
	free(m->total);
	free(m->free_slots);
}


/* rmap.h: with a topup before every add, heads that stay unhashed never
 * see -ENOMEM, even several growing side by side (each table an add takes
 * is restocked by the next topup; a two-line table, born 7 adds from full,
 * asks for the four-line one at once). */
GM_TEST(unhashed_growth_needs_no_retry)
{
	struct model m;
	model_init(&m, 3, 3 * GM_RMAP_LINEAR_MAX, NULL);
	for (uint32_t i = 0; i < GM_RMAP_LINEAR_MAX; i++)
		for (size_t h = 0; h < 3; h++) {
			uint32_t s = (uint32_t)(h * GM_RMAP_LINEAR_MAX + i);
			CHECK_EQ(gm_rmap_cache_topup(m.cache, GM_RMAP_ADD_BLOCKS), 0);
			CHECK_EQ(gm_rmap_add(&m.heads[h], slot_ptr(&m, s), m.cache), 0);
			model_add(&m, h, s);
		}
	for (size_t h = 0; h < 3; h++) {
		struct gm_rmap_stats st;
		gm_rmap_stats(&m.heads[h], &st);
		CHECK_EQ(st.form, GM_RMAP_LIST);
		check_head(&m, h);
	}
	model_destroy(&m);
}
/* ---- tests ----------------------------------------------------------------- */
GM_TEST(forms_and_errors)
{
	struct model m;
	model_init(&m, 1, 100, NULL);
	struct gm_rmap_head *h = &m.heads[0];
	char *odd = (char *)slot_ptr(&m, 0);
	CHECK_EQ(gm_rmap_add(h, NULL, m.cache), -EINVAL);
	CHECK_EQ(gm_rmap_add(h, odd + 1, m.cache), -EINVAL);
	CHECK_EQ(gm_rmap_add(h, odd + 2, m.cache), -EINVAL);
	CHECK_EQ(gm_rmap_add(h, odd + 3, m.cache), -EINVAL);
	CHECK_EQ(gm_rmap_add(NULL, odd, m.cache), -EINVAL);
	CHECK_EQ(gm_rmap_add(h, odd, NULL), -EINVAL);
	CHECK_EQ(gm_rmap_remove(h, odd + 2, m.cache), -EINVAL);
	CHECK_EQ(gm_rmap_remove(h, NULL, m.cache), -EINVAL);
	CHECK_EQ(gm_rmap_remove(h, odd, m.cache), -ENOENT);
	CHECK_EQ(gm_rmap_count(h), 0);
	CHECK_EQ(h->word, 0);
	/* 4-byte aligned (not 8) pointers are fine */
	CHECK_EQ(gm_rmap_add(h, odd + 4, m.cache), 0);
	CHECK_EQ(heads_bytes(&m), 0);  /* inline: no memory */
	uintptr_t one = h->word;
	/* a second copy needs a table like any second entry */
	CHECK_EQ(gm_rmap_add(h, odd + 4, m.cache), -ENOMEM);
	CHECK_EQ(h->word, one);
	CHECK_EQ(add_topped(&m, 0, odd + 4), 0);
	CHECK_EQ(gm_rmap_count(h), 2);
	CHECK(gm_rmap_contains(h, odd + 4));
	CHECK_EQ(gm_rmap_remove(h, odd + 4, m.cache), 0);
	CHECK_EQ(h->word, one);   /* back inline: one copy left */
	CHECK_EQ(gm_rmap_remove(h, odd + 4, m.cache), 0);
	CHECK_EQ(gm_rmap_remove(h, odd + 4, m.cache), -ENOENT);
	CHECK_EQ(h->word, 0);
	int forms[] = {GM_RMAP_EMPTY, GM_RMAP_INLINE, GM_RMAP_SMALL, GM_RMAP_LIST,
		       GM_RMAP_HASH};
	for (uint32_t i = 0; i < 100; i++) {
		CHECK_EQ(add_topped(&m, 0, slot_ptr(&m, i)), 0);
		model_add(&m, 0, i);
		struct gm_rmap_stats st;
		gm_rmap_stats(h, &st);
		CHECK_EQ(st.form, forms[i + 1 > GM_RMAP_LINEAR_MAX ? 4 : i + 1 >= 8 ? 3
					: i + 1 >= 2 ? 2 : 1]);
		CHECK_EQ(st.bytes, heads_bytes(&m));
		check_head(&m, 0);
	}
	for (uint32_t i = 100; i-- > 0;) {
		CHECK_EQ(gm_rmap_remove(h, slot_ptr(&m, i), m.cache), 0);
		CHECK_EQ(gm_rmap_remove(h, slot_ptr(&m, i), m.cache), -ENOENT);
		model_remove(&m, i);
		check_head(&m, 0);
		CHECK_EQ(stats_bytes(&m), heads_bytes(&m));
	}
	CHECK_EQ(h->word, 0);
	model_destroy(&m);
}

GM_TEST(same_pointer_in_two_heads)
{
	struct model m;
	model_init(&m, 2, 40, NULL);
	for (uint32_t i = 0; i < 40; i++) {
		CHECK_EQ(add_topped(&m, 0, slot_ptr(&m, i)), 0);
		CHECK_EQ(add_topped(&m, 1, slot_ptr(&m, i)), 0);
	}
	for (uint32_t i = 0; i < 40; i += 2)
		CHECK_EQ(gm_rmap_remove(&m.heads[0], slot_ptr(&m, i), m.cache), 0);
	CHECK_EQ(gm_rmap_count(&m.heads[0]), 20);
	CHECK_EQ(gm_rmap_count(&m.heads[1]), 40);
	for (uint32_t i = 0; i < 40; i++) {
		CHECK_EQ(gm_rmap_contains(&m.heads[0], slot_ptr(&m, i)), i % 2 == 1);
		CHECK(gm_rmap_contains(&m.heads[1], slot_ptr(&m, i)));
	}
	model_destroy(&m);
}

/* Random add/remove/iterate over many heads whose chain lengths spread
 * from 0 to thousands (head picked with a skewed distribution), with
 * copies of present pointers added on purpose (bursts that cross
 * GM_RMAP_MAX_COPIES), and every add's result predicted by the model. */
static void differential_many_heads_body(void)
{
	struct gm_rng *rng = gm_test_rng();
	struct model m;
	model_init(&m, 3000, 60000, NULL);
	uint64_t steps = gm_test_iters(300000);
	size_t dups = 0, enospc = 0;
	for (uint64_t step = 0; step < steps; step++) {
		/* skewed: head index = 3000^u, so low heads are hot */
		size_t h = gm_rng_chance(rng, 1, 4) ? 0 : gm_rng_chance(rng, 1, 4)
			   ? 1 + gm_rng_below(rng, 3)
			   : gm_rng_below(rng, 1 + gm_rng_below(rng, m.nheads));
		uint64_t op = gm_rng_below(rng, 100);
		bool grow = (step / 100000) % 2 == 0;  /* phases of growth and shrink */
		if (op < (grow ? 60u : 35u) && m.nfree) {
			uint32_t s = take_free(&m, rng);
			int want = expect_add(&m, h, s);
			CHECK_EQ(add_topped(&m, h, slot_ptr(&m, s)), want);
			if (want == 0)
				model_add(&m, h, s);
			else
				give_free(&m, s), enospc++;
		} else if (op < 95 && m.len[h]) {
			uint32_t s = m.list[h][gm_rng_below(rng, m.len[h])];
			CHECK_EQ(gm_rmap_remove(&m.heads[h], slot_ptr(&m, s), m.cache), 0);
			if (model_remove(&m, s))
				give_free(&m, s);
		} else if (op < 97 && m.len[h]) {   /* copies of a member */
			uint32_t s = m.list[h][gm_rng_below(rng, m.len[h])];
			for (uint64_t k = gm_rng_below(rng, 12); k-- > 0;) {
				int want = expect_add(&m, h, s);
				CHECK_EQ(add_topped(&m, h, slot_ptr(&m, s)), want);
				if (want)
					break;
				model_add(&m, h, s);
				dups++;
			}
		} else if (m.nfree) {
			uint32_t s = m.free_slots[gm_rng_below(rng, m.nfree)];
			CHECK_EQ(gm_rmap_remove(&m.heads[h], slot_ptr(&m, s), m.cache), -ENOENT);
			CHECK(!gm_rmap_contains(&m.heads[h], slot_ptr(&m, s)));
		}
		if (m.len[h] < 200 || step % 512 == 0)
			check_head(&m, h);
		else
			CHECK_EQ(gm_rmap_count(&m.heads[h]), m.total[h]);
	}
	size_t longest = 0, most = 0;
	for (size_t h = 0; h < m.nheads; h++) {
		check_head(&m, h);
		longest = m.len[h] > longest ? m.len[h] : longest;
	}
	for (size_t s = 0; s < m.nslots; s++)
		most = m.copies[s] > most ? m.copies[s] : most;
	gm_test_note("longest chain %zu, %zu copies added, %zu adds -ENOSPC, most copies %zu, "
		     "%zu adds topped up 3+ times", longest, dups, enospc, most, add_retries);
	CHECK(longest > 1000);
	CHECK(dups > 1000);
	CHECK(enospc > 0);
	CHECK(most > GM_RMAP_MAX_COPIES);
	CHECK_EQ(stats_bytes(&m), heads_bytes(&m));
	model_destroy(&m);
}

/* One chain grown to 100,000 and churned: remove random entries, re-add. */
static void chain_of_100000_body(void)
{
	struct gm_rng *rng = gm_test_rng();
	struct model m;
	const uint32_t n = (uint32_t)gm_test_iters(100000);
	model_init(&m, 1, (size_t)n + 1000, NULL);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t s = take_free(&m, rng);
		CHECK_EQ(add_topped(&m, 0, slot_ptr(&m, s)), 0);
		model_add(&m, 0, s);
		if ((i & (i - 1)) == 0)
			check_head(&m, 0);
	}
	check_head(&m, 0);
	struct gm_rmap_stats st;
	gm_rmap_stats(&m.heads[0], &st);
	gm_test_note("%u entries: %zu lines, %zu in their second line, %.2f B/entry",
		     n, st.lines, st.second, (double)st.bytes / n);
	/* at most one growth step (1/8) below 15/16 full */
	CHECK((double)st.bytes / n <= 8.0 * 16 / 15 * 9 / 8 + 0.01);
	CHECK(st.second < n / 2);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t s = m.list[0][gm_rng_below(rng, m.len[0])];
		CHECK_EQ(gm_rmap_remove(&m.heads[0], slot_ptr(&m, s), m.cache), 0);
		if (model_remove(&m, s))
			give_free(&m, s);
		if (gm_rng_chance(rng, 1, 2)) {
			s = take_free(&m, rng);
			CHECK_EQ(add_topped(&m, 0, slot_ptr(&m, s)), 0);
			model_add(&m, 0, s);
		}
	}
	check_head(&m, 0);
	while (m.len[0]) {  /* drain it, shrinking through every form */
		uint32_t s = m.list[0][gm_rng_below(rng, m.len[0])];
		CHECK_EQ(gm_rmap_remove(&m.heads[0], slot_ptr(&m, s), m.cache), 0);
		if (model_remove(&m, s))
			give_free(&m, s);
		if (m.len[0] < 100 || m.len[0] % 4096 == 0)
			check_head(&m, 0);
	}
	CHECK_EQ(m.heads[0].word, 0);
	CHECK_EQ(heads_bytes(&m), 0);
	model_destroy(&m);
}

/* Removing entries while iterating: every entry seen once, the chosen ones
 * gone, the rest intact, for every form and size. */
GM_TEST(differential_many_heads) { differential_many_heads_body(); }
GM_TEST(chain_of_100000) { chain_of_100000_body(); }

/* The same two tests with the AVX2 fast paths switched off, so the
 * portable hashed add and remove are checked on an AVX2 machine too. */
GM_TEST(portable_paths_without_avx2)
{
	bool saved = gm_cpu_avx2_;
	gm_cpu_avx2_ = false;
	differential_many_heads_body();
	chain_of_100000_body();
	gm_cpu_avx2_ = saved;
}

GM_TEST(remove_during_iteration)
{
	struct gm_rng *rng = gm_test_rng();
	const uint32_t sizes[] = {0, 1, 2, 3, 14, 15, 16, 17, 30, 31, 32, 65, 71, 72, 100, 1000, 5000};
	struct model m;
	model_init(&m, 1, 5000, NULL);
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		for (int mode = 0; mode < 5; mode++) {   /* none, half, all, all but 1 or 2 */
			for (uint32_t i = 0; i < sizes[si]; i++) {
				uint32_t s = take_free(&m, rng);
				CHECK_EQ(add_topped(&m, 0, slot_ptr(&m, s)), 0);
				model_add(&m, 0, s);
			}
			struct gm_rmap_iter it;
			uint32_t seen = 0, before = m.len[0];
			memset(&it, 0, sizeof(it));
			CHECK_EQ(gm_rmap_iter_remove(&it, m.cache), -EINVAL);
			gm_rmap_iter_init(&it, &m.heads[0]);
			for (void *p; gm_rmap_iter_next(&it, &p) == 0;) {
				uint32_t s = ptr_slot(&m, p);
				CHECK_EQ(m.owner[s], 0);
				CHECK_EQ(m.slots[s], 0);  /* not seen before */
				m.slots[s] = 1;
				seen++;
				if (mode == 2 || (mode == 1 && gm_rng_chance(rng, 1, 2)) ||
				    (mode >= 3 && seen > (uint32_t)mode - 2)) {
					CHECK_EQ(gm_rmap_iter_remove(&it, m.cache), 0);
					CHECK_EQ(gm_rmap_iter_remove(&it, m.cache), -EINVAL);
					if (model_remove(&m, s))
						give_free(&m, s);
					CHECK(!gm_rmap_contains(&m.heads[0], p));
				}
				if (seen < 100 || seen % 256 == 0)
					CHECK_VALID(gm_rmap_validate(&m.heads[0], &reason), reason);
			}
			CHECK_EQ(seen, before);
			for (uint32_t s = 0; s < m.nslots; s++)
				m.slots[s] = 0;
			check_head(&m, 0);
			if (mode == 2)
				CHECK_EQ(m.heads[0].word, 0);
			/* the thinned-out form still works, and shrinks on remove */
			while (m.len[0]) {
				uint32_t s = m.list[0][0];
				CHECK_EQ(gm_rmap_remove(&m.heads[0], slot_ptr(&m, s), m.cache), 0);
				if (model_remove(&m, s))
					give_free(&m, s);
				if (m.len[0] < 100 || m.len[0] % 256 == 0)
					check_head(&m, 0);
			}
			CHECK_EQ(heads_bytes(&m), 0);
		}
	}
	model_destroy(&m);
}

static void collect(void *ctx, void *p)
{
	struct model *m = ctx;
	m->slots[ptr_slot(m, p)]++;
}

GM_TEST(clear_calls_back_every_entry)
{
	struct gm_rng *rng = gm_test_rng();
	const uint32_t sizes[] = {0, 1, 2, 15, 16, 500};
	struct model m;
	model_init(&m, 1, 600, NULL);
	for (size_t si = 0; si < 6; si++) {
		for (uint32_t i = 0; i < sizes[si]; i++) {
			uint32_t s = take_free(&m, rng);
			CHECK_EQ(add_topped(&m, 0, slot_ptr(&m, s)), 0);
			model_add(&m, 0, s);
		}
		gm_rmap_clear(&m.heads[0], m.cache, collect, &m);
		CHECK_EQ(m.heads[0].word, 0);
		CHECK_EQ(heads_bytes(&m), 0);
		while (m.len[0]) {
			uint32_t s = m.list[0][0];
			CHECK_EQ(m.slots[s], 1);
			m.slots[s] = 0;
			if (model_remove(&m, s))
				give_free(&m, s);
		}
		for (uint32_t s = 0; s < m.nslots; s++)
			CHECK_EQ(m.slots[s], 0);
	}
	model_destroy(&m);
}

/* Snapshot of one head to prove a failed add changed nothing. */
struct snap {
	uintptr_t word;
	size_t count, bytes, alloc_bytes, cache_blocks;
	struct gm_rmap_stats st;
};

static void take_snap(struct model *m, size_t h, struct snap *s)
{
	s->word = m->heads[h].word;
	s->count = gm_rmap_count(&m->heads[h]);
	s->alloc_bytes = gm_alloc_counting_bytes(&m->counting);
	s->cache_blocks = m->cache->nblocks;
	gm_rmap_stats(&m->heads[h], &s->st);
}

static void same_snap(struct model *m, size_t h, const struct snap *s)
{
	struct snap now;
	take_snap(m, h, &now);
	CHECK_EQ(now.word, s->word);
	CHECK_EQ(now.count, s->count);
	CHECK_EQ(now.alloc_bytes, s->alloc_bytes);
	CHECK_EQ(now.cache_blocks, s->cache_blocks);
	CHECK(memcmp(&now.st, &s->st, sizeof(now.st)) == 0);
	check_head(m, h);  /* full contents against the model */
}

static size_t lines_of_head(struct model *m, size_t h)
{
	struct gm_rmap_stats st;
	gm_rmap_stats(&m->heads[h], &st);
	return st.lines;
}

/* Adds n copies of slot s to head h (each expected to succeed). */
static void add_copies(struct model *m, size_t h, uint32_t s, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		CHECK_EQ(expect_add(m, h, s), 0);
		CHECK_EQ(add_topped(m, h, slot_ptr(m, s)), 0);
		model_add(m, h, s);
	}
}

/* An add expected to fail with -ENOSPC changes nothing. */
static void add_refused(struct model *m, size_t h, uint32_t s)
{
	struct snap before;
	CHECK_EQ(gm_rmap_cache_topup(m->cache, 1), 0);
	CHECK_EQ(expect_add(m, h, s), -ENOSPC);
	int rc = gm_rmap_add(&m->heads[h], slot_ptr(m, s), m->cache);
	if (rc == -ENOMEM)   /* growing into a hashed table: its spare first */
		CHECK_EQ(gm_rmap_cache_topup(m->cache, 1), 0);
	take_snap(m, h, &before);
	CHECK_EQ(gm_rmap_add(&m->heads[h], slot_ptr(m, s), m->cache), -ENOSPC);
	same_snap(m, h, &before);
}

/* Duplicates (rmap.h): a multiset. Unhashed tables take any number of
 * copies; hashed ones at most GM_RMAP_MAX_COPIES of a pointer; the add
 * that would hash a table with more fails; iteration, iter_remove, clear
 * and remove see every copy. */
GM_TEST(duplicates_multiset_and_copy_limit)
{
	struct gm_rng *rng = gm_test_rng();
	struct model m;
	model_init(&m, 2, 400, NULL);
	struct gm_rmap_head *h = &m.heads[0];
	/* 1. unhashed: 30 copies of slot 0 and one of slot 1 */
	add_copies(&m, 0, 0, 30);
	add_copies(&m, 0, 1, 1);
	check_head(&m, 0);
	struct gm_rmap_stats st;
	gm_rmap_stats(h, &st);
	CHECK_EQ(st.form, GM_RMAP_LIST);
	/* 2. filled to GM_RMAP_LINEAR_MAX: the next add, even of a new
	 * pointer, must hash the table and is refused */
	for (uint32_t s = 2; m.total[0] < GM_RMAP_LINEAR_MAX; s++)
		add_copies(&m, 0, s, 1);
	add_refused(&m, 0, 300);
	add_refused(&m, 0, 0);
	/* removing copies down to GM_RMAP_MAX_COPIES lets it grow */
	while (m.copies[0] > GM_RMAP_MAX_COPIES) {
		CHECK_EQ(gm_rmap_remove(h, slot_ptr(&m, 0), m.cache), 0);
		model_remove(&m, 0);
	}
	check_head(&m, 0);
	for (uint32_t s = 100; m.total[0] < 150; s++)
		add_copies(&m, 0, s, 1);
	gm_rmap_stats(h, &st);
	CHECK_EQ(st.form, GM_RMAP_HASH);
	check_head(&m, 0);
	/* 3. hashed: copies up to the limit, then -ENOSPC, nothing changed */
	add_refused(&m, 0, 0);
	add_copies(&m, 0, 100, GM_RMAP_MAX_COPIES - 1);
	add_refused(&m, 0, 100);
	CHECK_EQ(gm_rmap_remove(h, slot_ptr(&m, 100), m.cache), 0);
	model_remove(&m, 100);
	add_copies(&m, 0, 100, 1);
	for (uint32_t s = 101; s < 140; s++)   /* copies spread over the table */
		add_copies(&m, 0, s, (uint32_t)gm_rng_below(rng, GM_RMAP_MAX_COPIES));
	check_head(&m, 0);
	/* 4. iteration removing one copy out of two: half of each stays */
	struct gm_rmap_iter it;
	uint32_t k = 0;
	gm_rmap_iter_init(&it, h);
	for (void *p; gm_rmap_iter_next(&it, &p) == 0;)
		if (k++ % 2) {
			CHECK_EQ(gm_rmap_iter_remove(&it, m.cache), 0);
			model_remove(&m, ptr_slot(&m, p));
			CHECK_VALID(gm_rmap_validate(h, &reason), reason);
		}
	CHECK_EQ(k, m.total[0] + k / 2);
	check_head(&m, 0);
	/* 5. clear calls back once per copy */
	gm_rmap_clear(h, m.cache, collect, &m);
	for (uint32_t s = 0; s < m.nslots; s++) {
		CHECK_EQ(m.slots[s], m.owner[s] == 0 ? m.copies[s] : 0);
		m.slots[s] = 0;
	}
	while (m.len[0])
		model_remove(&m, m.list[0][0]);
	/* 6. drain a hashed head of copies through every form */
	for (uint32_t s = 0; s < 200; s++)
		add_copies(&m, 1, s, 1 + (uint32_t)gm_rng_below(rng, GM_RMAP_MAX_COPIES));
	check_head(&m, 1);
	while (m.len[1]) {
		uint32_t s = m.list[1][gm_rng_below(rng, m.len[1])];
		CHECK_EQ(gm_rmap_remove(&m.heads[1], slot_ptr(&m, s), m.cache), 0);
		model_remove(&m, s);
		if (m.total[1] < 100 || m.total[1] % 64 == 0)
			check_head(&m, 1);
	}
	CHECK_EQ(m.heads[1].word, 0);
	CHECK_EQ(heads_bytes(&m), 0);
	model_destroy(&m);
}

/* Grow one head step by step through every table size, each growth first
 * tried without the spare it needs (-ENOMEM, nothing changed), then shrink
 * it back, each shrink first tried without its spare (the remove works,
 * the table stays, nothing is allocated). Up and down three times. */
GM_TEST(forms_switch_both_ways_enomem_at_each_step)
{
	struct gm_rng *rng = gm_test_rng();
	struct model m;
	const uint32_t top = 2000;
	model_init(&m, 1, top, NULL);
	struct gm_rmap_head *h = &m.heads[0];
	size_t grows = 0, grow_fails = 0, shrinks = 0, shrink_skips = 0;
	for (int round = 0; round < 3; round++) {
		while (m.len[0] < top) {
			uint32_t s = take_free(&m, rng);
			/* blocks but no spare table */
			gm_rmap_cache_destroy(m.cache);
			gm_rmap_cache_create(&m.cache, 0, &m.counting.allocator);
			size_t lines = lines_of_head(&m, 0);
			if (m.len[0] == 1) {   /* inline -> one line: needs a block */
				struct snap before;
				take_snap(&m, 0, &before);
				CHECK_EQ(gm_rmap_add(h, slot_ptr(&m, s), m.cache), -ENOMEM);
				same_snap(&m, 0, &before);
			}
			CHECK_EQ(gm_rmap_cache_topup(m.cache, 1), 0);
			m.cache->dir_want = 0;
			m.cache->small_want = 0;
			struct snap before;
			take_snap(&m, 0, &before);
			int rc = gm_rmap_add(h, slot_ptr(&m, s), m.cache);
			if (rc == -ENOMEM) {
				grow_fails++;
				CHECK(cache_wants(m.cache) > lines * GM_RMAP_BLOCK_SIZE);
				same_snap(&m, 0, &before);
				CHECK_EQ(gm_rmap_cache_topup(m.cache, 1), 0);
				rc = gm_rmap_add(h, slot_ptr(&m, s), m.cache);
			}
			CHECK_EQ(rc, 0);
			model_add(&m, 0, s);
			size_t now = lines_of_head(&m, 0);
			CHECK(now >= lines);
			if (now > lines && lines > 0)
				grows++;
			if (now != lines || m.len[0] < 20)
				check_head(&m, 0);
		}
		while (m.len[0] > 0) {
			uint32_t s = m.list[0][gm_rng_below(rng, m.len[0])];
			size_t lines = lines_of_head(&m, 0);
			/* first with an empty cache: never shrinks, never allocates */
			gm_rmap_cache_destroy(m.cache);
			gm_rmap_cache_create(&m.cache, 0, &m.counting.allocator);
			size_t bytes = gm_alloc_counting_bytes(&m.counting);
			CHECK_EQ(gm_rmap_remove(h, slot_ptr(&m, s), m.cache), 0);
			if (model_remove(&m, s))
				give_free(&m, s);
			CHECK(gm_alloc_counting_bytes(&m.counting) <= bytes);
			size_t now = lines_of_head(&m, 0);
			if (m.len[0] >= 2) {
				CHECK_EQ(now, lines);
				if (cache_wants(m.cache))
					shrink_skips++;
			}
			/* then, with what it asked for, the next remove shrinks */
			CHECK_EQ(gm_rmap_cache_topup(m.cache, 1), 0);
			if (m.len[0] > 0) {
				s = m.list[0][gm_rng_below(rng, m.len[0])];
				CHECK_EQ(gm_rmap_remove(h, slot_ptr(&m, s), m.cache), 0);
				if (model_remove(&m, s))
					give_free(&m, s);
				if (lines_of_head(&m, 0) < now && m.len[0] >= 2)
					shrinks++;
			}
			struct gm_rmap_stats st;
			gm_rmap_stats(h, &st);
			if (st.lines >= 4)   /* shrinking keeps tables reasonably full */
				CHECK(st.count * 3 >= st.slots);   /* >= 1/3 */
			if (m.len[0] < 20 || lines_of_head(&m, 0) != lines)
				check_head(&m, 0);
		}
		CHECK_EQ(h->word, 0);
		CHECK_EQ(heads_bytes(&m), 0);
	}
	gm_test_note("%zu growths (%zu -ENOMEM first), %zu shrinks (%zu deferred)",
		     grows, grow_fails, shrinks, shrink_skips);
	CHECK(grows >= 3 * 30);
	CHECK(grow_fails >= grows);   /* every growth failed without its spare */
	CHECK(shrinks >= 3 * 20);
	CHECK(shrink_skips > 0);
	model_destroy(&m);
}

/* -ENOMEM with an empty (or short) cache changes nothing, in every form
 * and at every directory growth. */
GM_TEST(enomem_when_cache_is_short)
{
	struct gm_rng *rng = gm_test_rng();
	struct model m;
	model_init(&m, 1, 3000, NULL);
	size_t failures = 0, dir_failures = 0;
	while (m.len[0] < 3000) {
		uint32_t s = m.free_slots[gm_rng_below(rng, m.nfree)];
		/* a cache with 0, 1 or 2 blocks, drained to that size */
		size_t want = gm_rng_below(rng, 3);
		size_t dir_want = m.cache->dir_want;
		uint32_t small_want = m.cache->small_want;
		gm_rmap_cache_destroy(m.cache);
		gm_rmap_cache_create(&m.cache, 0, &m.counting.allocator);
		if (gm_rng_chance(rng, 1, 2)) {   /* else the table is missing */
			m.cache->dir_want = dir_want;
			m.cache->small_want = small_want;
		}
		CHECK_EQ(gm_rmap_cache_topup(m.cache, want), 0);
		struct snap before;
		take_snap(&m, 0, &before);
		int rc = gm_rmap_add(&m.heads[0], slot_ptr(&m, s), m.cache);
		if (rc == -ENOMEM) {
			failures++;
			if (want >= 1)   /* a block was there: a table had to grow */
				dir_failures++;
			same_snap(&m, 0, &before);
			continue;
		}
		CHECK_EQ(rc, 0);
		/* take it from the free stack */
		for (size_t i = 0; i < m.nfree; i++)
			if (m.free_slots[i] == s) {
				m.free_slots[i] = m.free_slots[--m.nfree];
				break;
			}
		model_add(&m, 0, s);
		if (m.len[0] < 64 || m.len[0] % 97 == 0)
			check_head(&m, 0);
	}
	gm_test_note("%zu adds failed with -ENOMEM, %zu for a directory", failures,
		     dir_failures);
	CHECK(failures > 20);
	CHECK(dir_failures > 10);
	model_destroy(&m);
}

/* topup on a failing allocator: -ENOMEM leaves the cache as it was, adds
 * that then fail change nothing, and nothing leaks. */
GM_TEST(failing_allocator_on_topup)
{
	struct gm_rng *rng = gm_test_rng();
	struct gm_alloc_failing fail;
	gm_alloc_failing_init(&fail, NULL);
	struct model m;
	model_init(&m, 50, 20000, &fail.allocator);
	gm_alloc_failing_arm_random(&fail, 0.3, gm_test_seed());
	size_t topup_fail = 0, add_fail = 0;
	uint64_t steps = gm_test_iters(40000);
	for (uint64_t step = 0; step < steps; step++) {
		size_t h = gm_rng_below(rng, gm_rng_chance(rng, 1, 4) ? m.nheads : 3);
		size_t blocks = m.cache->nblocks, bytes = gm_alloc_counting_bytes(&m.counting);
		void *dir = m.cache->dir;
		if (gm_rmap_cache_topup(m.cache, gm_rng_below(rng, 4)) == -ENOMEM) {
			topup_fail++;
			CHECK_EQ(m.cache->nblocks, blocks);
			CHECK_EQ(gm_alloc_counting_bytes(&m.counting), bytes);
			CHECK(m.cache->dir == dir);
		}
		if (gm_rng_chance(rng, 3, 5) && m.nfree) {
			uint32_t s = m.free_slots[gm_rng_below(rng, m.nfree)];
			struct snap before;
			take_snap(&m, h, &before);
			int rc = gm_rmap_add(&m.heads[h], slot_ptr(&m, s), m.cache);
			if (rc == -ENOMEM) {
				add_fail++;
				same_snap(&m, h, &before);
				continue;
			}
			CHECK_EQ(rc, 0);
			for (size_t i = 0; i < m.nfree; i++)
				if (m.free_slots[i] == s) {
					m.free_slots[i] = m.free_slots[--m.nfree];
					break;
				}
			model_add(&m, h, s);
		} else if (m.len[h]) {
			uint32_t s = m.list[h][gm_rng_below(rng, m.len[h])];
			CHECK_EQ(gm_rmap_remove(&m.heads[h], slot_ptr(&m, s), m.cache), 0);
			if (model_remove(&m, s))
				give_free(&m, s);
		}
		if (m.len[h] < 100 || step % 256 == 0)
			check_head(&m, h);
	}
	gm_test_note("%zu topups and %zu adds failed", topup_fail, add_fail);
	CHECK(topup_fail > 0);
	CHECK(add_fail > 0);
	gm_alloc_failing_disarm(&fail);
	model_destroy(&m);
}

GM_TEST_MAIN()
