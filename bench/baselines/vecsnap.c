/*
 * bench/baselines/vecsnap.c — see vecsnap.h. Our own code.
 */
#include "vecsnap.h"

#include <gmtrack/rcu.h>

#include <errno.h>
#include <string.h>

struct bl_vecsnap_arr {
	struct gm_rcu_head rcu; /* first: the arrays are freed by gm_rcu_call */
	const struct gm_allocator *alloc;
	size_t n;
	struct bl_memslot s[];
};

static size_t arr_bytes(size_t n)
{
	return sizeof(struct bl_vecsnap_arr) + n * sizeof(struct bl_memslot);
}

static struct bl_vecsnap_arr *arr_new(struct bl_vecsnap *v, size_t n)
{
	struct bl_vecsnap_arr *a = gm_alloc_mem(v->alloc, arr_bytes(n), 64);
	if (a) {
		a->n = n;
		a->alloc = v->alloc;
	}
	return a;
}

static void arr_free_cb(struct gm_rcu_head *h)
{
	struct bl_vecsnap_arr *a = (struct bl_vecsnap_arr *)h;
	gm_alloc_release(a->alloc, a, arr_bytes(a->n));
}

int bl_vecsnap_init(struct bl_vecsnap *v, const struct gm_allocator *a)
{
	v->alloc = a;
	struct bl_vecsnap_arr *arr = arr_new(v, 0);
	if (!arr)
		return -ENOMEM;
	atomic_init(&v->cur, arr);
	return 0;
}

void bl_vecsnap_destroy(struct bl_vecsnap *v)
{
	gm_rcu_barrier();
	struct bl_vecsnap_arr *a = atomic_load(&v->cur);
	gm_alloc_release(v->alloc, a, arr_bytes(a->n));
}

static int rebuild(struct bl_vecsnap *v, size_t skip, const struct bl_memslot *add)
{
	struct bl_vecsnap_arr *old = atomic_load(&v->cur);
	size_t n = old->n - (skip != SIZE_MAX) + (add != NULL);
	if (add) { /* neighbours only: the vector is sorted */
		size_t lo = 0, hi = old->n;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (old->s[mid].base_gfn <= add->base_gfn)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t i = lo ? lo - 1 : 0; i < old->n && i <= lo; i++) {
			const struct bl_memslot *o = &old->s[i];
			if (i != skip && add->base_gfn <= o->base_gfn + o->npages - 1 &&
			    o->base_gfn <= add->base_gfn + add->npages - 1)
				return -EEXIST;
		}
	}
	struct bl_vecsnap_arr *a = arr_new(v, n);
	if (!a)
		return -ENOMEM;
	bl_memslot_copy_sorted(a->s, old->s, old->n, skip, add);
	atomic_store_explicit(&v->cur, a, memory_order_release);
	gm_rcu_call(&old->rcu, arr_free_cb); /* the domain of its gm_rcu readers */
	return 0;
}

static size_t find_id(const struct bl_vecsnap_arr *a, uint32_t id)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->s[i].id == id)
			return i;
	return SIZE_MAX;
}

int bl_vecsnap_add(struct bl_vecsnap *v, const struct bl_memslot *s)
{
	return find_id(atomic_load(&v->cur), s->id) != SIZE_MAX ? -EEXIST : rebuild(v, SIZE_MAX, s);
}

int bl_vecsnap_delete(struct bl_vecsnap *v, uint32_t id)
{
	size_t i = find_id(atomic_load(&v->cur), id);
	return i == SIZE_MAX ? -ENOENT : rebuild(v, i, NULL);
}

int bl_vecsnap_move(struct bl_vecsnap *v, uint32_t id, uint64_t new_base)
{
	struct bl_vecsnap_arr *a = atomic_load(&v->cur);
	size_t i = find_id(a, id);
	if (i == SIZE_MAX)
		return -ENOENT;
	struct bl_memslot s = a->s[i];
	s.base_gfn = new_base;
	return rebuild(v, i, &s);
}

int bl_vecsnap_gfn_to_hva(struct bl_vecsnap *v, uint64_t gfn, uint64_t *hva)
{
	struct bl_vecsnap_arr *a = atomic_load_explicit(&v->cur, memory_order_acquire);
	size_t lo = 0, hi = a->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (a->s[mid].base_gfn <= gfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo || gfn - a->s[lo - 1].base_gfn >= a->s[lo - 1].npages)
		return -ENOENT;
	const struct bl_memslot *s = &a->s[lo - 1];
	*hva = s->hva + ((gfn - s->base_gfn) << 12);
	return 0;
}

size_t bl_vecsnap_hva_range(struct bl_vecsnap *v, uint64_t a, uint64_t b, bl_hva_fn fn,
			    void *ctx)
{
	struct bl_vecsnap_arr *arr = atomic_load_explicit(&v->cur, memory_order_acquire);
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

size_t bl_vecsnap_bytes(const struct bl_vecsnap *v)
{
	return arr_bytes(atomic_load(&v->cur)->n);
}
