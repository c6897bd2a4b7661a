/*
 * bench/baselines/openhash.h — a good open-addressing hash table, the best
 * point-lookup reference: linear probing over 16-byte (key, value) slots,
 * murmur3's 64-bit finalizer as the mixer, power-of-two capacity doubled
 * at 3/4 load, backward-shift deletion (no tombstones). value == NULL marks
 * an empty slot. Memory is the slot array: 16 B / load factor per entry.
 */
#ifndef BL_OPENHASH_H
#define BL_OPENHASH_H

#include <gmtrack/alloc.h>

struct bl_openhash_slot {
	uint64_t key;
	void *value;
};

struct bl_openhash {
	struct bl_openhash_slot *slot;
	uint64_t mask;   /* capacity - 1 */
	uint64_t count;
	const struct gm_allocator *alloc;
};

static inline uint64_t bl_openhash_mix(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

static inline void *bl_openhash_load(const struct bl_openhash *h, uint64_t key)
{
	for (uint64_t i = bl_openhash_mix(key) & h->mask;; i = (i + 1) & h->mask) {
		const struct bl_openhash_slot *s = &h->slot[i];
		if (!s->value)
			return NULL;
		if (s->key == key)
			return s->value;
	}
}

int bl_openhash_init(struct bl_openhash *h, const struct gm_allocator *alloc);
void bl_openhash_destroy(struct bl_openhash *h);
int bl_openhash_insert(struct bl_openhash *h, uint64_t key, void *value);
int bl_openhash_erase(struct bl_openhash *h, uint64_t key);
/* Batched lookups: hashes and prefetches 16 slots, then probes them. */
size_t bl_openhash_load_many(const struct bl_openhash *h, const uint64_t *keys,
			     size_t n, void **values);
/* Visits up to limit entries in slot order; returns the sum of their keys. */
uint64_t bl_openhash_walk(const struct bl_openhash *h, uint64_t limit);
size_t bl_openhash_bytes(const struct bl_openhash *h);

#endif
