/*
 * fuzz/rmap_fuzz.c — gm_rmap against a model (a presence bitmap per head)
 * driven by the input bytes. Ops, 2 bytes each (op, arg):
 *   add, remove, remove-while-iterating, clear, topup-with-failures,
 *   bulk add (grows chains into the hash form quickly).
 * Any mismatch or invalid head aborts.
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
static bool member[HEADS][SLOTS];
static size_t count[HEADS];

static void check(struct gm_rmap_head *h, int i)
{
	const char *why;
	if (gm_rmap_validate(h, &why))
		abort();
	if (gm_rmap_count(h) != count[i])
		abort();
	struct gm_rmap_iter it;
	size_t seen = 0;
	for (void *p = gm_rmap_iter_first(&it, h); p; p = gm_rmap_iter_next(&it)) {
		size_t s = (size_t)((uint64_t *)p - ptes);
		if (s >= SLOTS || !member[i][s])
			abort();
		seen++;
	}
	if (seen != count[i])
		abort();
}

static int add(struct gm_rmap_head *h, int i, size_t s, struct gm_rmap_cache *c)
{
	int rc = gm_rmap_add(h, &ptes[s], c);
	if (rc == -ENOMEM) {
		if (gm_rmap_count(h) != count[i])
			abort();
		return rc;
	}
	if (rc != (member[i][s] ? -EEXIST : 0))
		abort();
	if (!member[i][s]) {
		member[i][s] = true;
		count[i]++;
	}
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gm_alloc_failing fail;
	gm_alloc_failing_init(&fail, NULL);
	struct gm_alloc_counting counting;
	gm_alloc_counting_init(&counting, &fail.allocator);
	struct gm_rmap_cache c;
	gm_rmap_cache_init(&c, &counting.allocator);
	struct gm_rmap_head heads[HEADS];
	memset(heads, 0, sizeof(heads));
	memset(member, 0, sizeof(member));
	memset(count, 0, sizeof(count));
	if (gm_rmap_add(&heads[0], (char *)&ptes[0] + 2, &c) != -EINVAL ||
	    gm_rmap_add(&heads[0], NULL, &c) != -EINVAL)
		abort();

	for (size_t k = 0; k + 1 < size; k += 2) {
		uint8_t op = data[k], arg = data[k + 1];
		int i = op & (HEADS - 1);
		struct gm_rmap_head *h = &heads[i];
		size_t s = ((size_t)arg << 1 | (op >> 7)) % SLOTS;
		switch ((op >> 2) % 6) {
		case 0: /* add */
			gm_rmap_cache_topup(&c, GM_RMAP_ADD_BLOCKS);
			add(h, i, s, &c);
			break;
		case 1: { /* remove */
			int rc = gm_rmap_remove(h, &ptes[s], &c);
			if (rc != (member[i][s] ? 0 : -ENOENT))
				abort();
			if (member[i][s]) {
				member[i][s] = false;
				count[i]--;
			}
			break;
		}
		case 2: { /* remove every entry whose slot has bit (arg & 7) set */
			struct gm_rmap_iter it;
			for (void *p = gm_rmap_iter_first(&it, h); p; p = gm_rmap_iter_next(&it)) {
				size_t t = (size_t)((uint64_t *)p - ptes);
				if (!((t >> (arg & 7)) & 1))
					continue;
				if (gm_rmap_iter_remove(&it, &c))
					abort();
				member[i][t] = false;
				count[i]--;
			}
			break;
		}
		case 3: /* clear */
			if (arg < 16) {
				gm_rmap_clear(h, &c, NULL, NULL);
				memset(member[i], 0, sizeof(member[i]));
				count[i] = 0;
			}
			break;
		case 4: /* topup under injected failures, then one add */
			gm_alloc_failing_arm_nth(&fail, 1 + (arg & 3), arg & 4);
			gm_rmap_cache_topup(&c, arg >> 4);
			add(h, i, s, &c);
			gm_alloc_failing_disarm(&fail);
			break;
		case 5: /* bulk add of a stride of slots */
			for (size_t n = 0; n < (size_t)(arg & 63) + 1; n++) {
				gm_rmap_cache_topup(&c, GM_RMAP_ADD_BLOCKS);
				if (add(h, i, (s + n * (1 + (op >> 5))) % SLOTS, &c) == -ENOMEM) {
					gm_rmap_cache_topup(&c, GM_RMAP_ADD_BLOCKS);
					add(h, i, (s + n * (1 + (op >> 5))) % SLOTS, &c);
				}
			}
			break;
		}
		check(h, i);
	}
	for (int i = 0; i < HEADS; i++) {
		check(&heads[i], i);
		gm_rmap_clear(&heads[i], &c, NULL, NULL);
	}
	gm_rmap_cache_destroy(&c);
	if (gm_alloc_counting_bytes(&counting) != 0)
		abort();
	return 0;
}
