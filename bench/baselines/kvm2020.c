/*
 * bench/baselines/kvm2020.c — see kvm2020.h. Our own code.
 */
#include "kvm2020.h"

#include <gmtrack/rcu.h>

#include <errno.h>
#include <string.h>

static size_t arr_bytes(size_t n)
{
	return sizeof(struct bl_kvm2020_arr) + n * sizeof(struct bl_memslot);
}

static struct bl_kvm2020_arr *arr_new(struct bl_kvm2020 *k, size_t n)
{
	struct bl_kvm2020_arr *a = gm_alloc_mem(k->alloc, arr_bytes(n), 64);
	if (a) {
		a->n = n;
		atomic_init(&a->lru, 0);
		memset(a->id_to_index, 0xff, sizeof(a->id_to_index));
	}
	return a;
}

int bl_kvm2020_init(struct bl_kvm2020 *k, const struct gm_allocator *a)
{
	k->alloc = a;
	k->wait_grace = true;
	struct bl_kvm2020_arr *arr = arr_new(k, 0);
	if (!arr)
		return -ENOMEM;
	atomic_init(&k->cur, arr);
	return 0;
}

void bl_kvm2020_destroy(struct bl_kvm2020 *k)
{
	gm_rcu_synchronize();
	struct bl_kvm2020_arr *a = atomic_load(&k->cur);
	gm_alloc_release(k->alloc, a, arr_bytes(a->n));
}

static void publish(struct bl_kvm2020 *k, struct bl_kvm2020_arr *old,
		    struct bl_kvm2020_arr *nw)
{
	atomic_store_explicit(&k->cur, nw, memory_order_release);
	if (k->wait_grace)
		gm_rcu_synchronize();
	gm_alloc_release(k->alloc, old, arr_bytes(old->n));
}

/* KVM_MR_DELETE / KVM_MR_MOVE first step: a full copy with slot i marked
 * INVALID, published, then a grace period (no vCPU still uses slot i). */
static int invalidate(struct bl_kvm2020 *k, size_t i)
{
	struct bl_kvm2020_arr *old = atomic_load(&k->cur);
	struct bl_kvm2020_arr *a = gm_alloc_mem(k->alloc, arr_bytes(old->n), 64);
	if (!a)
		return -ENOMEM;
	memcpy(a, old, arr_bytes(old->n)); /* kvm_dup_memslots */
	atomic_init(&a->lru, 0);
	a->s[i].flags |= BL_KVM2020_INVALID;
	publish(k, old, a);
	return 0;
}

/* The full new array: old minus `skip` (index or SIZE_MAX) plus *add,
 * sorted, with its id_to_index table. */
static int rebuild(struct bl_kvm2020 *k, size_t skip, const struct bl_memslot *add)
{
	if (add && add->id >= BL_KVM2020_IDS)
		return -EINVAL;
	struct bl_kvm2020_arr *old = atomic_load(&k->cur);
	size_t n = old->n - (skip != SIZE_MAX) + (add != NULL);
	for (size_t i = 0; add && i < old->n; i++) { /* KVM's overlap check: a scan */
		const struct bl_memslot *o = &old->s[i];
		if (i == skip)
			continue;
		if (o->id == add->id && skip == SIZE_MAX)
			return -EEXIST;
		if (add->base_gfn <= o->base_gfn + o->npages - 1 &&
		    o->base_gfn <= add->base_gfn + add->npages - 1)
			return -EEXIST;
	}
	struct bl_kvm2020_arr *a = arr_new(k, n);
	if (!a)
		return -ENOMEM;
	bl_memslot_copy_sorted(a->s, old->s, old->n, skip, add);
	for (size_t i = 0; i < a->n; i++) {
		a->s[i].flags &= ~BL_KVM2020_INVALID;
		a->id_to_index[a->s[i].id] = (uint16_t)i;
	}
	publish(k, old, a);
	return 0;
}

static size_t find_id(const struct bl_kvm2020_arr *a, uint32_t id)
{
	if (id >= BL_KVM2020_IDS || a->id_to_index[id] == 0xffff)
		return SIZE_MAX;
	return a->id_to_index[id];
}

int bl_kvm2020_add(struct bl_kvm2020 *k, const struct bl_memslot *s)
{
	return rebuild(k, SIZE_MAX, s);
}

int bl_kvm2020_delete(struct bl_kvm2020 *k, uint32_t id)
{
	size_t i = find_id(atomic_load(&k->cur), id);
	if (i == SIZE_MAX)
		return -ENOENT;
	int rc = invalidate(k, i);
	return rc ? rc : rebuild(k, i, NULL);
}

int bl_kvm2020_move(struct bl_kvm2020 *k, uint32_t id, uint64_t new_base)
{
	struct bl_kvm2020_arr *a = atomic_load(&k->cur);
	size_t i = find_id(a, id);
	if (i == SIZE_MAX)
		return -ENOENT;
	struct bl_memslot s = a->s[i];
	s.base_gfn = new_base;
	for (size_t j = 0; j < a->n; j++) { /* overlap check before anything */
		const struct bl_memslot *o = &a->s[j];
		if (j != i && s.base_gfn <= o->base_gfn + o->npages - 1 &&
		    o->base_gfn <= s.base_gfn + s.npages - 1)
			return -EEXIST;
	}
	int rc = invalidate(k, i);
	return rc ? rc : rebuild(k, i, &s);
}

int bl_kvm2020_gfn_to_hva(struct bl_kvm2020 *k, uint64_t gfn, uint64_t *hva)
{
	struct bl_kvm2020_arr *a = atomic_load_explicit(&k->cur, memory_order_acquire);
	size_t lru = atomic_load_explicit(&a->lru, memory_order_relaxed);
	const struct bl_memslot *s;
	if (lru < a->n && gfn - a->s[lru].base_gfn < a->s[lru].npages) {
		s = &a->s[lru];
	} else {
		size_t lo = 0, hi = a->n; /* first slot with base > gfn */
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (a->s[mid].base_gfn <= gfn)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (!lo || gfn - a->s[lo - 1].base_gfn >= a->s[lo - 1].npages)
			return -ENOENT;
		s = &a->s[lo - 1];
		atomic_store_explicit(&a->lru, lo - 1, memory_order_relaxed);
	}
	if (s->flags & BL_KVM2020_INVALID)
		return -ENOENT; /* __gfn_to_hva_many: KVM_HVA_ERR_BAD */
	*hva = s->hva + ((gfn - s->base_gfn) << 12);
	return 0;
}

size_t bl_kvm2020_hva_range(struct bl_kvm2020 *k, uint64_t a, uint64_t b,
			    bl_hva_fn fn, void *ctx)
{
	struct bl_kvm2020_arr *arr = atomic_load_explicit(&k->cur, memory_order_acquire);
	size_t hits = 0;
	for (size_t i = 0; i < arr->n; i++) {
		const struct bl_memslot *s = &arr->s[i];
		uint64_t e = s->hva + (s->npages << 12) - 1;
		if (a > e || b < s->hva)
			continue;
		uint64_t lo = a > s->hva ? a : s->hva, hi = b < e ? b : e;
		fn(ctx, s, s->base_gfn + ((lo - s->hva) >> 12), s->base_gfn + ((hi - s->hva) >> 12));
		hits++;
	}
	return hits;
}

size_t bl_kvm2020_bytes(const struct bl_kvm2020 *k)
{
	return arr_bytes(atomic_load(&k->cur)->n);
}

int bl_flatlog_init(struct bl_flatlog *f, uint64_t npages, const struct gm_allocator *a)
{
	f->alloc = a;
	f->nwords = (npages + 63) / 64;
	f->w = gm_alloc_mem(a, f->nwords * 8, 64);
	if (!f->w)
		return -ENOMEM;
	memset((void *)f->w, 0, f->nwords * 8);
	return 0;
}

void bl_flatlog_destroy(struct bl_flatlog *f)
{
	gm_alloc_release(f->alloc, (void *)f->w, f->nwords * 8);
}

void bl_flatlog_mark(struct bl_flatlog *f, uint64_t off)
{
	atomic_fetch_or_explicit(&f->w[off / 64], 1ull << (off % 64), memory_order_relaxed);
}

uint64_t bl_flatlog_harvest(struct bl_flatlog *f, int (*fn)(void *, uint64_t, uint64_t),
			    void *ctx)
{
	uint64_t total = 0;
	for (uint64_t i = 0; i < f->nwords; i++) {
		if (!atomic_load_explicit(&f->w[i], memory_order_relaxed))
			continue;
		uint64_t w = atomic_exchange(&f->w[i], 0);
		while (w) {
			unsigned b = (unsigned)__builtin_ctzll(w);
			w &= w - 1;
			(void)fn(ctx, i * 64 + b, 1);
			total++;
		}
	}
	return total;
}
