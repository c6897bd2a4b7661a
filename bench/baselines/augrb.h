/*
 * bench/baselines/augrb.h — an augmented red-black interval tree, the
 * design of Linux's interval_tree (what KVM uses for hva -> memslot since
 * 2021, and kvmtool for MMIO dispatch). Written here from the textbook idea
 * (CLRS red-black tree + "max end point of the subtree" augmentation), not
 * from kernel code.
 *
 * Intrusive 48-byte node, embedded in the caller's object like
 * struct interval_tree_node in struct kvm_memory_slot:
 *
 *   | parent|color (8) | left (8) | right (8) | start (8) | last (8) | subtree_last (8) |
 *
 * Ordered by start (equal starts go right). Not safe for lockless readers:
 * a rotation can hide a subtree from a concurrent walker.
 */
#ifndef BL_AUGRB_H
#define BL_AUGRB_H

#include <stdint.h>

struct bl_augrb_node {
	uintptr_t parent_color; /* parent pointer | 1 if black */
	struct bl_augrb_node *left, *right;
	uint64_t start, last;   /* inclusive interval */
	uint64_t subtree_last;  /* max `last` in this subtree */
};

struct bl_augrb {
	struct bl_augrb_node *root;
};

void bl_augrb_init(struct bl_augrb *t);
/* Links n (start/last set by the caller). O(log n). Never allocates. */
void bl_augrb_insert(struct bl_augrb *t, struct bl_augrb_node *n);
/* Unlinks n, which must be in t. O(log n). */
void bl_augrb_remove(struct bl_augrb *t, struct bl_augrb_node *n);
/* First node (in start order) overlapping [a, b], or NULL. O(log n). */
struct bl_augrb_node *bl_augrb_iter_first(const struct bl_augrb *t, uint64_t a,
					  uint64_t b);
/* Next node after n overlapping [a, b], or NULL. O(log n) amortized. */
struct bl_augrb_node *bl_augrb_iter_next(const struct bl_augrb_node *n,
					 uint64_t a, uint64_t b);
/* Checks BST order, red-black rules and the augmentation; 0 if fine. */
int bl_augrb_check(const struct bl_augrb *t);

#endif
