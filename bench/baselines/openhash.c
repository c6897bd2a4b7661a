/* bench/baselines/openhash.c — see openhash.h. */
#include "openhash.h"

#include <string.h>

static int oh_alloc_slots(struct bl_openhash *h, uint64_t cap)
{
	struct bl_openhash_slot *s = gm_alloc_mem(h->alloc, cap * sizeof(*s), 64);
	if (!s)
		return -ENOMEM;
	memset(s, 0, cap * sizeof(*s));
	h->slot = s;
	h->mask = cap - 1;
	return 0;
}

int bl_openhash_init(struct bl_openhash *h, const struct gm_allocator *alloc)
{
	h->alloc = alloc;
	h->count = 0;
	return oh_alloc_slots(h, 16);
}

void bl_openhash_destroy(struct bl_openhash *h)
{
	gm_alloc_release(h->alloc, h->slot, (h->mask + 1) * sizeof(*h->slot));
	h->slot = NULL;
	h->count = 0;
}

static void oh_place(struct bl_openhash *h, uint64_t key, void *value)
{
	uint64_t i = bl_openhash_mix(key) & h->mask;
	while (h->slot[i].value)
		i = (i + 1) & h->mask;
	h->slot[i].key = key;
	h->slot[i].value = value;
}

static int oh_grow(struct bl_openhash *h)
{
	struct bl_openhash_slot *old = h->slot;
	uint64_t oldcap = h->mask + 1;
	if (oh_alloc_slots(h, oldcap * 2))
		return -ENOMEM;
	for (uint64_t i = 0; i < oldcap; i++)
		if (old[i].value)
			oh_place(h, old[i].key, old[i].value);
	gm_alloc_release(h->alloc, old, oldcap * sizeof(*old));
	return 0;
}

int bl_openhash_insert(struct bl_openhash *h, uint64_t key, void *value)
{
	if (!value)
		return -EINVAL;
	if (bl_openhash_load(h, key))
		return -EEXIST;
	if ((h->count + 1) * 4 > (h->mask + 1) * 3 && oh_grow(h))
		return -ENOMEM;
	oh_place(h, key, value);
	h->count++;
	return 0;
}

int bl_openhash_erase(struct bl_openhash *h, uint64_t key)
{
	uint64_t i = bl_openhash_mix(key) & h->mask;
	for (;; i = (i + 1) & h->mask) {
		if (!h->slot[i].value)
			return -ENOENT;
		if (h->slot[i].key == key)
			break;
	}
	/* Backward shift: pull later entries of the cluster into the hole
	 * when their home slot allows it. */
	uint64_t hole = i;
	for (uint64_t j = (i + 1) & h->mask; h->slot[j].value; j = (j + 1) & h->mask) {
		uint64_t home = bl_openhash_mix(h->slot[j].key) & h->mask;
		if (((j - home) & h->mask) >= ((j - hole) & h->mask)) {
			h->slot[hole] = h->slot[j];
			hole = j;
		}
	}
	h->slot[hole].value = NULL;
	h->slot[hole].key = 0;
	h->count--;
	return 0;
}

size_t bl_openhash_load_many(const struct bl_openhash *h, const uint64_t *keys,
			     size_t n, void **values)
{
	size_t found = 0;
	for (size_t base = 0; base < n; base += 16) {
		size_t k = n - base < 16 ? n - base : 16;
		for (size_t i = 0; i < k; i++)
			__builtin_prefetch(&h->slot[bl_openhash_mix(keys[base + i]) & h->mask]);
		for (size_t i = 0; i < k; i++) {
			void *v = bl_openhash_load(h, keys[base + i]);
			values[base + i] = v;
			found += v != NULL;
		}
	}
	return found;
}

uint64_t bl_openhash_walk(const struct bl_openhash *h, uint64_t limit)
{
	uint64_t sum = 0, seen = 0;
	for (uint64_t i = 0; i <= h->mask && seen < limit; i++)
		if (h->slot[i].value) {
			sum += h->slot[i].key;
			seen++;
		}
	return sum;
}

size_t bl_openhash_bytes(const struct bl_openhash *h)
{
	return sizeof(*h) + (h->mask + 1) * sizeof(*h->slot);
}
