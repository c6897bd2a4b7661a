/*
 * fuzz/pagemap_fuzz.c — drives gm_pagemap from the input bytes against a
 * sorted-array model, validating after every operation; abort() on any
 * difference. Each operation is 1 opcode byte + 1 key-shape byte + up to 8
 * key bytes; key shapes keep keys close together so nodes fill and split.
 * Every 4th input runs with a failing allocator armed at a random call.
 */
#include <gmtrack/pagemap.h>
#include "pagemap_kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXN 4096
static uint64_t mk[MAXN];
static uintptr_t mv[MAXN];
static size_t mn;

static size_t lb(uint64_t k)
{
	size_t lo = 0, hi = mn;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (mk[mid] < k)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void check_at(int cond, int line)
{
	if (!cond) {
		fprintf(stderr, "pagemap_fuzz: check failed at line %d\n", line);
		abort();
	}
}
#define check(cond) check_at((cond), __LINE__)

extern uint64_t gm_pagemap_many_loop_max_; /* src/pagemap.c */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	gm_pagemap_many_loop_max_ = 0; /* load_many batches even in tiny maps */
	struct gm_alloc_failing f;
	gm_alloc_failing_init(&f, NULL);
	struct gm_alloc_counting c;
	gm_alloc_counting_init(&c, &f.allocator);
	struct gm_pagemap *map;
	gm_pagemap_create(&map, 0, &c.allocator);
	mn = 0;
	bool oom = size && data[0] % 4 == 3;
	size_t pos = 1;
	uint64_t base = 0;
	while (pos + 2 <= size) {
		uint8_t op = data[pos++], shape = data[pos++];
		uint64_t raw = 0;
		size_t nb = shape & 7;
		for (size_t i = 0; i < nb && pos < size; i++)
			raw |= (uint64_t)data[pos++] << (8 * i);
		uint64_t key;
		switch (shape >> 3 & 3) {
		case 0: key = base + (raw & 0x3ff); break;  /* near the base */
		case 1: key = raw; break;                   /* anywhere */
		case 2: key = UINT64_MAX - raw; break;      /* top edge */
		default: base = raw << 12; key = base; break;
		}
		uintptr_t v = (uintptr_t)(key * 2 + 1) | 1;
		if (oom)
			gm_alloc_failing_arm_nth(&f, 1 + (op >> 4), false);
		size_t i = lb(key);
		bool has = i < mn && mk[i] == key;
		int rc;
		switch (op & 7) {
		case 0: case 1: case 2:
			rc = gm_pagemap_insert(map, key, (void *)v);
			if (rc == -ENOMEM)
				break;
			check(rc == (has ? -EEXIST : 0));
			if (!has && mn < MAXN) {
				memmove(mk + i + 1, mk + i, (mn - i) * 8);
				memmove(mv + i + 1, mv + i, (mn - i) * sizeof(uintptr_t));
				mk[i] = key;
				mv[i] = v;
				mn++;
			} else if (!has) {
				gm_pagemap_remove(map, key, NULL); /* model full: undo */
			}
			break;
		case 3: case 4: {
			void *old = NULL;
			rc = gm_pagemap_remove(map, key, &old);
			if (rc == -ENOMEM)
				break;
			check(rc == (has ? 0 : -ENOENT));
			if (has) {
				check((uintptr_t)old == mv[i]);
				memmove(mk + i, mk + i + 1, (mn - i - 1) * 8);
				memmove(mv + i, mv + i + 1, (mn - i - 1) * sizeof(uintptr_t));
				mn--;
			}
			break;
		}
		case 5: {
			uint64_t k = key;
			void *val;
			rc = pm_seek_kv(map, &k, &val, true);
			check(rc == (i < mn ? 0 : -ENOENT));
			if (i < mn)
				check(k == mk[i] && (uintptr_t)val == mv[i]);
			break;
		}
		case 6: {
			uint64_t k = key;
			void *val;
			size_t at = has ? i : i - 1;
			rc = pm_seek_kv(map, &k, &val, false);
			check(rc == (has || i > 0 ? 0 : -ENOENT));
			if (has || i > 0)
				check(k == mk[at] && (uintptr_t)val == mv[at]);
			break;
		}
		default: {
			check((uintptr_t)gm_pagemap_load(map, key) == (has ? mv[i] : 0));
			void *out[2];
			uint64_t keys[2] = {key, key + 1};
			size_t j = lb(key + 1);
			size_t want = has + (j < mn && mk[j] == key + 1);
			check(gm_pagemap_load_many(map, keys, 2, out) == (int64_t)want);
			break;
		}
		}
		gm_alloc_failing_disarm(&f);
		const char *why = NULL;
		if (gm_pagemap_validate(map, &why))
			fprintf(stderr, "pagemap_fuzz: %s\n", why);
		check(why == NULL);
		check(gm_pagemap_count(map) == mn);
	}
	/* full contents in order */
	struct gm_pagemap_iter it;
	gm_pagemap_iter_init(&it, map, 0, UINT64_MAX, 0);
	uint64_t k;
	void *val;
	size_t n = 0;
	while (pm_iter_kv(&it, &k, &val)) {
		check(n < mn && k == mk[n] && (uintptr_t)val == mv[n]);
		n++;
	}
	check(n == mn);
	gm_pagemap_iter_init(&it, map, 0, UINT64_MAX, GM_ITER_REVERSE); /* and backwards */
	while (pm_iter_kv(&it, &k, &val)) {
		check(n > 0 && k == mk[n - 1] && (uintptr_t)val == mv[n - 1]);
		n--;
	}
	check(n == 0);
	gm_pagemap_destroy(map);
	check(gm_alloc_counting_bytes(&c) == 0);
	return 0;
}
