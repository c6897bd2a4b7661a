/*
 * fuzz/rangemap_fuzz.c — libFuzzer target: the input bytes drive a
 * gm_rangemap (flags from the first byte) and the per-cell model of
 * tests/rangemap_model.h side by side; any difference, a failed
 * validate(), or a leak of the counting allocator aborts.
 *
 * Input: byte 0 = mode (bit 0 NOCOALESCE, bit 1 whole 64-bit space with
 * 64 cells, else 96 single indices, bit 2 inject allocation failures,
 * bit 3 the portable searches even where the CPU has AVX2);
 * then 4-byte operations: op, a, b, v.
 */
#include "../tests/rangemap_model.h"

#include <gmtrack/rangemap.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

extern bool gm_cpu_avx2_; /* src/cpu.c: which searches run */

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

static void compare(const struct gm_rangemap *m, const struct model *md)
{
	const char *why = NULL;
	if (gm_rangemap_validate(m, &why))
		FAIL("validate: %s", why);
	struct gm_range s[130];
	bool pr[130];
	size_t n = model_slots(md, s, pr);
	struct gm_rangemap_iter c;
	struct gm_range r;
	uint64_t ranges = 0;
	gm_rangemap_iter_init(&c, m, 0, UINT64_MAX, 0);
	for (size_t i = 0; i < n; i++) {
		if (!pr[i])
			continue;
		ranges++;
		if (gm_rangemap_iter_next(&c, &r) || r.first != s[i].first || r.last != s[i].last ||
		    r.value != s[i].value)
			FAIL("range %zu differs", i);
	}
	if (gm_rangemap_iter_next(&c, &r) != -ENOENT)
		FAIL("extra range");
	if (gm_rangemap_count(m) != ranges)
		FAIL("count");
	gm_rangemap_iter_init(&c, m, 0, UINT64_MAX, GM_RANGEMAP_ITER_GAPS);
	for (size_t i = 0; i < n; i++) {
		if (pr[i])
			continue;
		if (gm_rangemap_iter_next(&c, &r) || r.first != s[i].first || r.last != s[i].last)
			FAIL("gap %zu differs", i);
	}
	if (gm_rangemap_iter_next(&c, &r) != -ENOENT)
		FAIL("extra gap");
}

struct fz_upd {
	const uint8_t *data;
	size_t size, pos;
	struct model *md;
	struct { uint64_t a, b; int act; uint64_t v; } d[256];
	size_t n;
};

static int fz_fn(void *ctx, const struct gm_range *piece, bool present, uint64_t *value)
{
	struct fz_upd *u = ctx;
	uint8_t x = u->pos < u->size ? u->data[u->pos++] : 0;
	uint64_t a = u->md->shift ? piece->first >> u->md->shift : piece->first;
	uint64_t b = u->md->shift ? piece->last >> u->md->shift : piece->last;
	if (u->md->present[a] != present || (present && u->md->value[a] != *value))
		FAIL("update piece disagrees with the model");
	int act = x % 3;
	if (u->n < 256)
		u->d[u->n++] = (typeof(u->d[0])){a, b, act, (uint64_t)(x >> 2) % 4};
	*value = (uint64_t)(x >> 2) % 4;
	return act;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	static bool avx2, avx2_known;
	if (!avx2_known) {
		avx2 = gm_cpu_avx2_;
		avx2_known = true;
	}
	gm_cpu_avx2_ = avx2 && !(mode & 8);
	struct gm_alloc_failing fl;
	gm_alloc_failing_init(&fl, NULL);
	struct gm_alloc_counting cnt;
	gm_alloc_counting_init(&cnt, &fl.allocator);
	struct gm_rangemap *m;
	unsigned flags = mode & 1 ? GM_RANGEMAP_NOCOALESCE : 0;
	if (gm_rangemap_create(&m, flags, &cnt.allocator))
		abort();
	struct model md;
	model_init(&md, mode & 2 ? 64 : 96, mode & 2, !(mode & 1));
	static struct fz_upd u;
	for (size_t p = 1; p + 4 <= size; p += 4) {
		uint8_t op = data[p], x = data[p + 1], y = data[p + 2], v = data[p + 3];
		uint64_t a = x % md.k, b = y % md.k;
		if (a > b) {
			uint64_t t = a;
			a = b;
			b = t;
		}
		uint64_t f = cell_first(&md, a), l = cell_last(&md, b), val = v % 5 == 4 ? ~(uint64_t)v : v % 4;
		if (mode & 4)
			gm_alloc_failing_arm_nth(&fl, 1 + (op >> 5), false);
		int rc = 0;
		switch (op % 6) {
		case 0:
		case 1: {
			rc = gm_rangemap_store(m, f, l, val);
			if (!rc) {
				uint64_t ra, rb;
				model_run(&md, a, &ra, &rb);
				if (!(md.present[a] && md.value[a] == val && ra <= a && rb >= b &&
				      (md.coalesce || (ra == a && rb == b))))
					model_set(&md, a, b, true, val);
			}
			break;
		}
		case 2:
			rc = gm_rangemap_remove(m, f, l);
			if (!rc)
				model_set(&md, a, b, false, 0);
			break;
		case 3: {
			bool free = true;
			for (uint64_t c = a; c <= b; c++)
				free &= !md.present[c];
			rc = gm_rangemap_insert(m, f, l, val);
			if (!free && rc != -EEXIST && rc != -ENOMEM)
				FAIL("insert over stored: %d", rc);
			if (free && !rc)
				model_set(&md, a, b, true, val);
			if (rc == -EEXIST)
				rc = 0;
			break;
		}
		case 4: {
			u.data = data;
			u.size = size;
			u.pos = p + 4;
			u.md = &md;
			u.n = 0;
			rc = gm_rangemap_update(m, f, l, fz_fn, &u, v & 1 ? GM_RANGEMAP_UPDATE_GAPS : 0);
			if (!rc) {
				for (size_t i = 0; i < u.n; i++) {
					if (u.d[i].act == GM_RANGEMAP_CLEAR && md.present[u.d[i].a])
						model_set(&md, u.d[i].a, u.d[i].b, false, 0);
					else if (u.d[i].act == GM_RANGEMAP_SET &&
						 (!md.present[u.d[i].a] || md.value[u.d[i].a] != u.d[i].v))
						model_set(&md, u.d[i].a, u.d[i].b, true, u.d[i].v);
				}
			}
			break;
		}
		default: {
			struct gm_range s[130];
			bool pr[130];
			size_t n = model_slots(&md, s, pr);
			uint64_t size_ = 1 + (v % 7) * (md.shift ? (1ULL << md.shift) / 2 : 1);
			uint64_t align = 1ULL << (x % 8);
			uint64_t want = 0, got = 0;
			int w = model_find_gap(s, pr, n, size_, align, f, l, &want);
			if (gm_rangemap_find_gap(m, size_, align, f, l, &got) != w || (!w && got != want))
				FAIL("find_gap");
			uint64_t lv = 0, lf = 0, ll = 0;
			int lr = gm_rangemap_load(m, f, &lv, &lf, &ll);
			size_t j = 0;
			while (s[j].last < f)
				j++;
			if (lr != (pr[j] ? 0 : -ENOENT) || lf != s[j].first || ll != s[j].last ||
			    (pr[j] && lv != s[j].value))
				FAIL("load");
			if (gm_rangemap_contains(m, f) != pr[j] ||
			    gm_rangemap_contains(m, s[j].last) != pr[j])
				FAIL("contains");
			break;
		}
		}
		gm_alloc_failing_disarm(&fl);
		if (rc && rc != -ENOMEM)
			FAIL("op %d rc %d", op % 6, rc);
		compare(m, &md);
	}
	gm_rangemap_destroy(m);
	if (gm_alloc_counting_bytes(&cnt) != 0)
		FAIL("leak: %zu bytes", gm_alloc_counting_bytes(&cnt));
	model_free(&md);
	return 0;
}
