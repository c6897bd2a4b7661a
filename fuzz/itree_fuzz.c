/*
 * fuzz/itree_fuzz.c — drives gm_itree from the input bytes against a model
 * (an array scanned linearly). abort() on any disagreement.
 *
 * Input: byte 0 = flags (bit 0: RCU mode, bit 1: wide key space); then
 * 5-byte ops: [op][x0][x1][y][z]. op % 5: 0,1 insert (or a reversed range), 2 remove (existing
 * triple if any), 3 query, 4 insert with the nth allocation failing (must
 * leave the tree exactly unchanged on -ENOMEM). validate() after every op.
 */
#include <gmtrack/itree.h>
#include <gmtrack/rcu.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAXE 4096

struct ent {
	uint64_t f, l;
	uintptr_t item;
};

static struct ent model[MAXE];
static size_t nmodel;

static int ent_cmp(const void *pa, const void *pb)
{
	const struct ent *a = pa, *b = pb;
	if (a->f != b->f)
		return a->f < b->f ? -1 : 1;
	if (a->l != b->l)
		return a->l < b->l ? -1 : 1;
	if (a->item != b->item)
		return a->item < b->item ? -1 : 1;
	return 0;
}

static ssize_t find(uint64_t f, uint64_t l, uintptr_t item)
{
	for (size_t i = 0; i < nmodel; i++)
		if (model[i].f == f && model[i].l == l && model[i].item == item)
			return (ssize_t)i;
	return -1;
}

static void check_query(struct gm_itree *t, uint64_t a, uint64_t b)
{
	static struct ent want[MAXE];
	size_t nw = 0;
	for (size_t i = 0; i < nmodel; i++)
		if (model[i].f <= b && model[i].l >= a)
			want[nw++] = model[i];
	qsort(want, nw, sizeof(want[0]), ent_cmp);
	struct gm_itree_iter it;
	struct gm_itree_entry e;
	size_t k = 0;
	gm_rcu_read_lock();
	if (gm_itree_iter_init(&it, t, a, b, 0) != 0)
		abort();
	while ((gm_itree_iter_next(&it, &e) == 0)) {
		if (k >= nw || e.first != want[k].f || e.last != want[k].l ||
		    (uintptr_t)e.item != want[k].item)
			abort();
		k++;
	}
	if (k != nw || gm_itree_iter_init(&it, t, a, b, GM_ITER_REVERSE) != 0)
		abort();
	while ((gm_itree_iter_next(&it, &e) == 0)) { /* the same, last first */
		if (k == 0 || e.first != want[k - 1].f || e.last != want[k - 1].l ||
		    (uintptr_t)e.item != want[k - 1].item)
			abort();
		k--;
	}
	if (k != 0)
		abort();
	static void *items[MAXE];
	size_t cap = nw ? nw - (a & 1) : 0; /* sometimes one short */
	if (gm_itree_fill(t, a, b, items, cap) != (int64_t)nw)
		abort();
	for (size_t i = 0; i < cap; i++)
		if ((uintptr_t)items[i] != want[i].item)
			abort();
	gm_rcu_read_unlock();
}

static void check_valid(struct gm_itree *t)
{
	const char *why;
	if (gm_itree_validate(t, &why) != 0 || gm_itree_count(t) != nmodel)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool registered;
	if (!registered) {
		gm_rcu_register_thread();
		registered = true;
	}
	if (size < 1)
		return 0;
	unsigned flags = data[0] & 1 ? GM_RCU : 0;
	unsigned shift = data[0] & 2 ? 40 : 0;
	struct gm_alloc_failing fail;
	gm_alloc_failing_init(&fail, NULL);
	struct gm_itree *t;
	if (gm_itree_create(&t, flags, &fail.allocator) != 0)
		abort();
	nmodel = 0;
	for (size_t p = 1; p + 5 <= size; p += 5) {
		const uint8_t *o = data + p;
		uint64_t f = ((uint64_t)o[1] << 8 | o[2]) << shift;
		uint64_t l = f + ((uint64_t)(o[3] & 0x3f) << shift);
		if (o[3] & 0x40)
			l = UINT64_MAX - (o[4] & 7);
		uintptr_t item = o[4] >> 5;
		switch (o[0] % 5) {
		case 0:
		case 1: {
			if ((o[3] & 0xc0) == 0xc0 && f > 0)
				l = f - 1; /* reversed: must be refused */
			int want = f > l ? -EINVAL : find(f, l, item) >= 0 ? -EEXIST : 0;
			if (want == 0 && nmodel == MAXE)
				break;
			if (gm_itree_insert(t, f, l, (void *)item) != want)
				abort();
			if (!want)
				model[nmodel++] = (struct ent){f, l, item};
			break;
		}
		case 2: {
			if (nmodel && !(o[3] & 0x80)) {
				struct ent e = model[(o[1] << 8 | o[2]) % nmodel];
				f = e.f, l = e.l, item = e.item;
			}
			ssize_t i = find(f, l, item);
			if (gm_itree_remove(t, f, l, (void *)item) != (i >= 0 ? 0 : -ENOENT))
				abort();
			if (i >= 0)
				model[i] = model[--nmodel];
			break;
		}
		case 3:
			check_query(t, f < l ? f : l, f < l ? l : f);
			break;
		case 4: {
			if (nmodel == MAXE || find(f, l, item) >= 0)
				break;
			gm_alloc_failing_arm_nth(&fail, 1 + (o[0] >> 5), o[0] & 16);
			int rc = gm_itree_insert(t, f, l, (void *)item);
			gm_alloc_failing_disarm(&fail);
			if (rc == 0)
				model[nmodel++] = (struct ent){f, l, item};
			else if (rc != -ENOMEM)
				abort();
			else
				check_query(t, 0, UINT64_MAX); /* unchanged */
			break;
		}
		}
		check_valid(t);
	}
	check_query(t, 0, UINT64_MAX);
	gm_itree_destroy(t);
	return 0;
}
