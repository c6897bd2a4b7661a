/*
 * bench/baselines/sibling.h — the 2010 "sibling_pte" proposal, our own
 * code from its description: every shadow PTE slot has a parallel "next
 * sibling" pointer (an array beside the PTE pages), so the mappings of a
 * page form an intrusive singly linked list whose first element the head
 * word holds. Add is an O(1) push with no allocation; remove walks the
 * list to find the predecessor.
 */
#ifndef BL_SIBLING_H
#define BL_SIBLING_H

#include <gmtrack/alloc.h>

#include <errno.h>
#include <stdint.h>

struct bl_sibling {
	const struct gm_allocator *alloc;
	uint64_t *ptes;      /* the simulated PTE slots entries point into */
	void **next;         /* next[i]: sibling of &ptes[i] */
	size_t nslots;
};

int bl_sibling_init(struct bl_sibling *s, const struct gm_allocator *a,
		    uint64_t *ptes, size_t nslots);
void bl_sibling_destroy(struct bl_sibling *s);
int bl_sibling_add(struct bl_sibling *s, uintptr_t *head, void *p);
int bl_sibling_remove(struct bl_sibling *s, uintptr_t *head, void *p);
void bl_sibling_clear(struct bl_sibling *s, uintptr_t *head,
		      void (*cb)(void *ctx, void *p), void *ctx);

#endif
