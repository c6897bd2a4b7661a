/*
 * bench/baselines/hash256.h — the GVT-g shadow-page table before the
 * radix-tree patch: a chained hash with 256 fixed buckets (the kernel's
 * DECLARE_HASHTABLE(.., 8) + hash_add/hash_for_each_possible), our own code.
 * Buckets never grow, so chains get longer with the number of entries.
 * Insert does not look for duplicates (hash_add does not).
 */
#ifndef BL_HASH256_H
#define BL_HASH256_H

#include <gmtrack/alloc.h>

struct bl_hash256_node {
	struct bl_hash256_node *next;
	uint64_t key;
	void *value;
};

struct bl_hash256 {
	struct bl_hash256_node *bucket[256];
	const struct gm_allocator *alloc;
	uint64_t count;
};

/* The kernel's hash_64 with 8 bits: multiply by the golden ratio, keep the top. */
static inline unsigned bl_hash256_bucket(uint64_t key)
{
	return (unsigned)((key * 0x61C8864680B583EBULL) >> 56);
}

static inline void *bl_hash256_load(const struct bl_hash256 *h, uint64_t key)
{
	for (const struct bl_hash256_node *n = h->bucket[bl_hash256_bucket(key)]; n; n = n->next)
		if (n->key == key)
			return n->value;
	return NULL;
}

void bl_hash256_init(struct bl_hash256 *h, const struct gm_allocator *alloc);
void bl_hash256_destroy(struct bl_hash256 *h);
int bl_hash256_insert(struct bl_hash256 *h, uint64_t key, void *value);
int bl_hash256_erase(struct bl_hash256 *h, uint64_t key);
/* Visits up to limit entries (bucket order, like hash_for_each); returns
 * the sum of their keys. */
uint64_t bl_hash256_walk(const struct bl_hash256 *h, uint64_t limit);
size_t bl_hash256_bytes(const struct bl_hash256 *h);

#endif
