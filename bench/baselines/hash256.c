/* bench/baselines/hash256.c — see hash256.h. */
#include "hash256.h"

#include <string.h>

void bl_hash256_init(struct bl_hash256 *h, const struct gm_allocator *alloc)
{
	memset(h, 0, sizeof(*h));
	h->alloc = alloc;
}

void bl_hash256_destroy(struct bl_hash256 *h)
{
	for (int b = 0; b < 256; b++) {
		struct bl_hash256_node *n = h->bucket[b];
		while (n) {
			struct bl_hash256_node *next = n->next;
			gm_alloc_release(h->alloc, n, sizeof(*n));
			n = next;
		}
		h->bucket[b] = NULL;
	}
	h->count = 0;
}

int bl_hash256_insert(struct bl_hash256 *h, uint64_t key, void *value)
{
	struct bl_hash256_node *n = gm_alloc_mem(h->alloc, sizeof(*n), 8);
	if (!n)
		return -ENOMEM;
	unsigned b = bl_hash256_bucket(key);
	n->key = key;
	n->value = value;
	n->next = h->bucket[b];
	h->bucket[b] = n;
	h->count++;
	return 0;
}

int bl_hash256_erase(struct bl_hash256 *h, uint64_t key)
{
	struct bl_hash256_node **pp = &h->bucket[bl_hash256_bucket(key)];
	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->key == key) {
			struct bl_hash256_node *n = *pp;
			*pp = n->next;
			gm_alloc_release(h->alloc, n, sizeof(*n));
			h->count--;
			return 0;
		}
	}
	return -ENOENT;
}

uint64_t bl_hash256_walk(const struct bl_hash256 *h, uint64_t limit)
{
	uint64_t sum = 0, seen = 0;
	for (int b = 0; b < 256 && seen < limit; b++)
		for (const struct bl_hash256_node *n = h->bucket[b]; n && seen < limit; n = n->next, seen++)
			sum += n->key;
	return sum;
}

size_t bl_hash256_bytes(const struct bl_hash256 *h)
{
	return sizeof(*h) + h->count * sizeof(struct bl_hash256_node);
}
