/*
 * fuzz/rangeset_fuzz.c — libFuzzer drives two gm_rangesets (one with a
 * range limit) against bitmap oracles over a 256-index universe placed at 0
 * or at the top of the space; every step is checked, and a failing
 * allocator injects -ENOMEM, after which the set must be unchanged.
 *
 * Input: byte 0 picks the universe base; then 4-byte records
 * (op, a, b, extra).
 */
#include <gmtrack/rangeset.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define U 256

struct model {
	uint8_t bit[U];
};

static uint64_t base;

static uint64_t runs(const struct model *m)
{
	uint64_t r = 0;
	for (int i = 0; i < U; i++)
		r += m->bit[i] && (i == 0 || !m->bit[i - 1]);
	return r;
}

static int check_cb(uint64_t first, uint64_t last, void *ctx)
{
	struct model *seen = ctx;
	if (first < base || last - base >= U)
		abort();
	for (uint64_t i = first - base; i <= last - base; i++)
		seen->bit[i] = 1;
	return 0;
}

static void check(const struct gm_rangeset *s, const struct model *m)
{
	const char *why;
	if (gm_rangeset_validate(s, &why))
		abort();
	struct model seen;
	memset(&seen, 0, sizeof(seen));
	gm_rangeset_report_ranges(s, 0, UINT64_MAX, check_cb, &seen);
	if (memcmp(&seen, m, sizeof(seen)) || gm_rangeset_count(s) != runs(m))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	base = data[0] & 1 ? UINT64_MAX - (U - 1) : 0;
	data++, size--;
	struct gm_alloc_failing fail;
	gm_alloc_failing_init(&fail, NULL);
	struct gm_rangeset s[2];
	struct model m[2];
	memset(m, 0, sizeof(m));
	if (gm_rangeset_init(&s[0], "a", 0, 0, &fail.allocator) ||
	    gm_rangeset_init(&s[1], "b", 0, 6, &fail.allocator))
		abort();
	for (; size >= 4; data += 4, size -= 4) {
		int which = data[0] & 1, other = !which;
		unsigned op = (data[0] >> 1) % 8;
		uint64_t lo = data[1] < data[2] ? data[1] : data[2];
		uint64_t hi = data[1] < data[2] ? data[2] : data[1];
		uint64_t f = base + lo, l = base + hi;
		if (data[3] & 0x80) /* inject a failure somewhere in this op */
			gm_alloc_failing_arm_nth(&fail, 1 + (data[3] & 7), false);
		struct model want = m[which];
		int rc = 0;
		switch (op) {
		case 0:
			rc = gm_rangeset_add_range(&s[which], f, l);
			memset(want.bit + lo, 1, hi - lo + 1);
			break;
		case 1:
			rc = gm_rangeset_remove_range(&s[which], f, l);
			memset(want.bit + lo, 0, hi - lo + 1);
			break;
		case 2:
			rc = gm_rangeset_union(&s[which], &s[other]);
			for (int i = 0; i < U; i++)
				want.bit[i] |= m[other].bit[i];
			break;
		case 3:
			rc = gm_rangeset_subtract(&s[which], &s[other]);
			for (int i = 0; i < U; i++)
				want.bit[i] &= !m[other].bit[i];
			break;
		case 4:
			rc = gm_rangeset_intersect(&s[which], &s[other]);
			for (int i = 0; i < U; i++)
				want.bit[i] &= m[other].bit[i];
			break;
		case 5: {
			uint64_t got, sz = 1 + (data[3] & 15);
			rc = gm_rangeset_claim_range(&s[which], sz, 1, f, base + (U - 1), &got);
			if (rc == 0) {
				if (got < f || got - base + sz > U)
					abort();
				for (uint64_t i = 0; i < sz; i++) {
					if (want.bit[got - base + i])
						abort(); /* claimed an index in the set */
					want.bit[got - base + i] = 1;
				}
			}
			break;
		}
		case 6: {
			bool all = true, any = false;
			for (uint64_t i = lo; i <= hi; i++) {
				all &= m[which].bit[i];
				any |= m[which].bit[i];
			}
			if (gm_rangeset_contains_range(&s[which], f, l) != all ||
			    gm_rangeset_overlaps_range(&s[which], f, l) != any ||
			    gm_rangeset_contains(&s[which], f) != (bool)m[which].bit[lo])
				abort();
			const struct gm_rangeset *ask[3] = {&s[which], &s[other], &s[which]};
			int first = m[which].bit[lo] ? 0 : m[other].bit[lo] ? 1 : -1;
			if (gm_rangeset_first_containing(ask, 3, f) != first ||
			    gm_rangeset_first_containing(ask + 1, 2, l) !=
				    (m[other].bit[hi] ? 0 : m[which].bit[hi] ? 1 : -1))
				abort();
			break;
		}
		default:
			rc = gm_rangeset_purge(&s[which]);
			memset(&want, 0, sizeof(want));
		}
		gm_alloc_failing_disarm(&fail);
		if (rc == 0)
			m[which] = want;
		else if (rc != -ENOMEM && rc != -ENOSPC)
			abort();
		else if (rc == -ENOSPC && which == 0 && op != 5)
			abort(); /* set 0 has no limit */
		check(&s[which], &m[which]);
	}
	gm_rangeset_destroy(&s[0]);
	gm_rangeset_destroy(&s[1]);
	return 0;
}
