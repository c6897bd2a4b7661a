/*
 * bench/baselines/rbtree.h — a red-black tree from BSD <sys/tree.h>
 * (Debian libbsd-dev): one 48-byte node per entry (three pointers and a
 * colour word from RB_ENTRY, key, value).
 */
#ifndef BL_RBTREE_H
#define BL_RBTREE_H

#include <gmtrack/alloc.h>

struct bl_rbtree; /* opaque: sys/tree.h stays inside rbtree.c */

struct bl_rbtree *bl_rbtree_create(const struct gm_allocator *alloc);
void bl_rbtree_destroy(struct bl_rbtree *t);
int bl_rbtree_insert(struct bl_rbtree *t, uint64_t key, void *value);
void *bl_rbtree_load(const struct bl_rbtree *t, uint64_t key);
int bl_rbtree_erase(struct bl_rbtree *t, uint64_t key);
/* Visits up to limit entries in key order; returns the sum of their keys. */
uint64_t bl_rbtree_walk(const struct bl_rbtree *t, uint64_t limit);
size_t bl_rbtree_bytes(const struct bl_rbtree *t);

#endif
