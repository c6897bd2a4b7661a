/*
 * bench/baselines/desc4.h — the 2010 KVM rmap design, our own code: the
 * head word holds one pointer inline, or (bit 0 set) a chain of
 * descriptors of 4 entries + `more`. Add walks to the last descriptor;
 * remove searches the chain and fills the hole from the same descriptor's
 * last entry, freeing a descriptor that empties.
 */
#ifndef BL_DESC4_H
#define BL_DESC4_H

#include "bl_objcache.h"

#include <stdint.h>

#define BL_DESC4_N 4
struct bl_desc4 {
	void *e[BL_DESC4_N];
	struct bl_desc4 *more;
};

void bl_desc4_cache_init(struct bl_objcache *c, const struct gm_allocator *a);
int bl_desc4_add(uintptr_t *head, void *p, struct bl_objcache *c);
int bl_desc4_remove(uintptr_t *head, void *p, struct bl_objcache *c);
void bl_desc4_clear(uintptr_t *head, struct bl_objcache *c,
		    void (*cb)(void *ctx, void *p), void *ctx);

#endif
