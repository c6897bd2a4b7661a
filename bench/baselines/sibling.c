/* bench/baselines/sibling.c — see sibling.h. */
#include "sibling.h"

#include <string.h>

int bl_sibling_init(struct bl_sibling *s, const struct gm_allocator *a,
		    uint64_t *ptes, size_t nslots)
{
	s->alloc = a;
	s->ptes = ptes;
	s->nslots = nslots;
	s->next = gm_alloc_mem(a, nslots * sizeof(void *), 64);
	if (!s->next)
		return -ENOMEM;
	memset(s->next, 0, nslots * sizeof(void *));
	return 0;
}

void bl_sibling_destroy(struct bl_sibling *s)
{
	gm_alloc_release(s->alloc, s->next, s->nslots * sizeof(void *));
	s->next = NULL;
}

static inline void **sib(struct bl_sibling *s, void *p)
{
	return &s->next[(uint64_t *)p - s->ptes];
}

int bl_sibling_add(struct bl_sibling *s, uintptr_t *head, void *p)
{
	*sib(s, p) = (void *)*head;
	*head = (uintptr_t)p;
	return 0;
}

int bl_sibling_remove(struct bl_sibling *s, uintptr_t *head, void *p)
{
	void **pp = (void **)head;
	while (*pp) {
		if (*pp == p) {
			*pp = *sib(s, p);
			return 0;
		}
		pp = sib(s, *pp);
	}
	return -ENOENT;
}

void bl_sibling_clear(struct bl_sibling *s, uintptr_t *head,
		      void (*cb)(void *ctx, void *p), void *ctx)
{
	void *p = (void *)*head;
	*head = 0;
	while (p) {
		void *next = *sib(s, p);
		*sib(s, p) = NULL;
		cb(ctx, p);
		p = next;
	}
}
