/*
 * fuzz/rmap_fuzz.c — gm_rmap against a model (a multiset per head: copies
 * per slot) driven by the input bytes. Ops, 2 bytes each (op, arg):
 *   add, remove, remove-while-iterating, clear, topup-with-failures,
 *   bulk add (grows chains into the hash form quickly; a stride of 0
 *   adds copies of one pointer). Every add's result is predicted (the
 *   copy limit of rmap.h). Any mismatch or invalid head aborts.
 */
#include <gmtrack/alloc.h>
#include <gmtrack/rmap.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HEADS 4
#define SLOTS 512

static uint64_t ptes[SLOTS];
static uint32_t member[HEADS][SLOTS];   /* copies */
static size_t count[HEADS];

static void check(struct gm_rmap_head *h, int i)
{
	const char *why;
	static uint32_t seen_of[SLOTS];
	if (gm_rmap_validate(h, &why))
		abort();
	if (gm_rmap_count(h) != count[i])
		abort();
	struct gm_rmap_iter it;
	size_t seen = 0;
	memset(seen_of, 0, sizeof(seen_of));
	gm_rmap_iter_init(&it, h);
	for (void *p; gm_rmap_iter_next(&it, &p) == 0;) {
		size_t s = (size_t)((uint64_t *)p - ptes);
		if (s >= SLOTS || ++seen_of[s] > member[i][s])
			abort();
		seen++;
	}
	if (seen != count[i])
		abort();
}

/* The result rmap.h promises for adding slot s to head i (given the cache
 * holds what it needs): -ENOSPC past GM_RMAP_MAX_COPIES copies in a
 * hashed table, or when hashing a full unhashed one would exceed it. */
static int expect(struct gm_rmap_head *h, int i, size_t s)
{
	struct gm_rmap_stats st;
	gm_rmap_stats(h, &st);
	uint32_t most = member[i][s] + 1;
	if (st.form == GM_RMAP_HASH)
		return most > GM_RMAP_MAX_COPIES ? -ENOSPC : 0;
	if (st.form != GM_RMAP_LIST || st.count != GM_RMAP_LINEAR_MAX)
		return 0;
	for (size_t t = 0; t < SLOTS; t++)
		most = member[i][t] > most ? member[i][t] : most;
	return most > GM_RMAP_MAX_COPIES ? -ENOSPC : 0;
}

static int add(struct gm_rmap_head *h, int i, size_t s, struct gm_rmap_cache *c)
{
	int want = expect(h, i, s);
	uintptr_t word = h->word;
	int rc = gm_rmap_add(h, &ptes[s], c);
	if (rc == -ENOMEM || rc == -ENOSPC) {   /* -ENOMEM: nothing changed */
		if (h->word != word || gm_rmap_count(h) != count[i])
			abort();
		if (rc == -ENOSPC && want != -ENOSPC)
			abort();
		return rc;
	}
	if (rc != 0 || want != 0)
		abort();
	member[i][s]++;
	count[i]++;
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gm_alloc_failing fail;
	gm_alloc_failing_init(&fail, NULL);
	struct gm_alloc_counting counting;
	gm_alloc_counting_init(&counting, &fail.allocator);
	struct gm_rmap_cache *c;
	gm_rmap_cache_create(&c, 0, &counting.allocator);
	struct gm_rmap_head heads[HEADS];
	memset(heads, 0, sizeof(heads));
	memset(member, 0, sizeof(member));
	memset(count, 0, sizeof(count));
	if (gm_rmap_add(&heads[0], (char *)&ptes[0] + 2, c) != -EINVAL ||
	    gm_rmap_add(&heads[0], NULL, c) != -EINVAL)
		abort();

	for (size_t k = 0; k + 1 < size; k += 2) {
		uint8_t op = data[k], arg = data[k + 1];
		int i = op & (HEADS - 1);
		struct gm_rmap_head *h = &heads[i];
		size_t s = ((size_t)arg << 1 | (op >> 7)) % SLOTS;
		switch ((op >> 2) % 6) {
		case 0: /* add */
			gm_rmap_cache_topup(c, GM_RMAP_ADD_BLOCKS);
			add(h, i, s, c);
			break;
		case 1: { /* remove */
			int rc = gm_rmap_remove(h, &ptes[s], c);
			if (rc != (member[i][s] ? 0 : -ENOENT))
				abort();
			if (member[i][s]) {
				member[i][s]--;
				count[i]--;
			}
			break;
		}
		case 2: { /* remove every entry whose slot has bit (arg & 7) set */
			struct gm_rmap_iter it;
			gm_rmap_iter_init(&it, h);
			for (void *p; gm_rmap_iter_next(&it, &p) == 0;) {
				size_t t = (size_t)((uint64_t *)p - ptes);
				if (!((t >> (arg & 7)) & 1))
					continue;
				if (gm_rmap_iter_remove(&it, c))
					abort();
				if (!member[i][t])
					abort();
				member[i][t]--;
				count[i]--;
			}
			break;
		}
		case 3: /* clear */
			if (arg < 16) {
				gm_rmap_clear(h, c, NULL, NULL);
				memset(member[i], 0, sizeof(member[i]));
				count[i] = 0;
			}
			break;
		case 4: /* topup under injected failures, then one add */
			gm_alloc_failing_arm_nth(&fail, 1 + (arg & 3), arg & 4);
			gm_rmap_cache_topup(c, arg >> 4);
			add(h, i, s, c);
			gm_alloc_failing_disarm(&fail);
			break;
		case 5: /* bulk add of a stride of slots (stride 0: copies) */
			for (size_t n = 0; n < (size_t)(arg & 63) + 1; n++) {
				size_t t = (s + n * ((op >> 5) & 3)) % SLOTS;
				int rc = -ENOMEM;
				for (int tries = 0; rc == -ENOMEM && tries < 4; tries++) {
					gm_rmap_cache_topup(c, GM_RMAP_ADD_BLOCKS);
					rc = add(h, i, t, c);
				}
				if (rc == -ENOMEM)   /* four topups give any table it needs */
					abort();
				if (rc == -ENOSPC && expect(h, i, t) != -ENOSPC)
					abort();
			}
			break;
		}
		check(h, i);
	}
	for (int i = 0; i < HEADS; i++) {
		check(&heads[i], i);
		gm_rmap_clear(&heads[i], c, NULL, NULL);
	}
	gm_rmap_cache_destroy(c);
	if (gm_alloc_counting_bytes(&counting) != 0)
		abort();
	return 0;
}
