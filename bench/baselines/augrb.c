/* bench/baselines/augrb.c — see augrb.h. CLRS red-black tree with parent
 * pointers and NULL leaves; rotations keep subtree_last exact. */
#include "augrb.h"

#include <stddef.h>

#define BLACK 1u

typedef struct bl_augrb_node node;

static inline node *parent(const node *n) { return (node *)(n->parent_color & ~(uintptr_t)1); }
static inline int is_black(const node *n) { return !n || (n->parent_color & BLACK); }
static inline int is_red(const node *n) { return !is_black(n); }
static inline void set_parent(node *n, node *p)
{
	n->parent_color = (uintptr_t)p | (n->parent_color & BLACK);
}
static inline void set_black(node *n) { n->parent_color |= BLACK; }
static inline void set_red(node *n) { n->parent_color &= ~(uintptr_t)BLACK; }
static inline void copy_color(node *n, const node *from)
{
	n->parent_color = (n->parent_color & ~(uintptr_t)BLACK) | (from->parent_color & BLACK);
}

static inline uint64_t compute_max(const node *n)
{
	uint64_t m = n->last;
	if (n->left && n->left->subtree_last > m)
		m = n->left->subtree_last;
	if (n->right && n->right->subtree_last > m)
		m = n->right->subtree_last;
	return m;
}

void bl_augrb_init(struct bl_augrb *t) { t->root = NULL; }

static void replace_child(struct bl_augrb *t, node *p, node *old, node *new)
{
	if (!p)
		t->root = new;
	else if (p->left == old)
		p->left = new;
	else
		p->right = new;
}

/* x's right child y takes x's place; the subtree's max moves to y. */
static void rotate_left(struct bl_augrb *t, node *x)
{
	node *y = x->right, *p = parent(x);
	x->right = y->left;
	if (y->left)
		set_parent(y->left, x);
	set_parent(y, p);
	replace_child(t, p, x, y);
	y->left = x;
	set_parent(x, y);
	y->subtree_last = x->subtree_last;
	x->subtree_last = compute_max(x);
}

static void rotate_right(struct bl_augrb *t, node *x)
{
	node *y = x->left, *p = parent(x);
	x->left = y->right;
	if (y->right)
		set_parent(y->right, x);
	set_parent(y, p);
	replace_child(t, p, x, y);
	y->right = x;
	set_parent(x, y);
	y->subtree_last = x->subtree_last;
	x->subtree_last = compute_max(x);
}

void bl_augrb_insert(struct bl_augrb *t, node *z)
{
	node *p = NULL, **link = &t->root;
	while (*link) {
		p = *link;
		if (p->subtree_last < z->last)
			p->subtree_last = z->last; /* z lands below p */
		link = z->start < p->start ? &p->left : &p->right;
	}
	z->left = z->right = NULL;
	z->subtree_last = z->last;
	z->parent_color = (uintptr_t)p; /* red */
	*link = z;

	while ((p = parent(z)) && is_red(p)) {
		node *g = parent(p);
		if (p == g->left) {
			node *u = g->right;
			if (is_red(u)) {
				set_black(p);
				set_black(u);
				set_red(g);
				z = g;
				continue;
			}
			if (z == p->right) {
				rotate_left(t, p);
				z = p;
				p = parent(z);
			}
			set_black(p);
			set_red(g);
			rotate_right(t, g);
		} else {
			node *u = g->left;
			if (is_red(u)) {
				set_black(p);
				set_black(u);
				set_red(g);
				z = g;
				continue;
			}
			if (z == p->left) {
				rotate_right(t, p);
				z = p;
				p = parent(z);
			}
			set_black(p);
			set_red(g);
			rotate_left(t, g);
		}
	}
	set_black(t->root);
}

static void transplant(struct bl_augrb *t, node *u, node *v)
{
	node *p = parent(u);
	replace_child(t, p, u, v);
	if (v)
		set_parent(v, p);
}

static void delete_fixup(struct bl_augrb *t, node *x, node *xp)
{
	while (x != t->root && is_black(x)) {
		if (x == xp->left) {
			node *w = xp->right;
			if (is_red(w)) {
				set_black(w);
				set_red(xp);
				rotate_left(t, xp);
				w = xp->right;
			}
			if (is_black(w->left) && is_black(w->right)) {
				set_red(w);
				x = xp;
				xp = parent(x);
			} else {
				if (is_black(w->right)) {
					set_black(w->left);
					set_red(w);
					rotate_right(t, w);
					w = xp->right;
				}
				copy_color(w, xp);
				set_black(xp);
				set_black(w->right);
				rotate_left(t, xp);
				x = t->root;
				break;
			}
		} else {
			node *w = xp->left;
			if (is_red(w)) {
				set_black(w);
				set_red(xp);
				rotate_right(t, xp);
				w = xp->left;
			}
			if (is_black(w->left) && is_black(w->right)) {
				set_red(w);
				x = xp;
				xp = parent(x);
			} else {
				if (is_black(w->left)) {
					set_black(w->right);
					set_red(w);
					rotate_left(t, w);
					w = xp->left;
				}
				copy_color(w, xp);
				set_black(xp);
				set_black(w->left);
				rotate_right(t, xp);
				x = t->root;
				break;
			}
		}
	}
	if (x)
		set_black(x);
}

void bl_augrb_remove(struct bl_augrb *t, node *z)
{
	node *x, *xp, *y = z;
	int removed_black = is_black(y);
	if (!z->left) {
		x = z->right;
		xp = parent(z);
		transplant(t, z, z->right);
	} else if (!z->right) {
		x = z->left;
		xp = parent(z);
		transplant(t, z, z->left);
	} else {
		y = z->right;
		while (y->left)
			y = y->left;
		removed_black = is_black(y);
		x = y->right;
		if (parent(y) == z) {
			xp = y;
		} else {
			xp = parent(y);
			transplant(t, y, y->right);
			y->right = z->right;
			set_parent(y->right, y);
		}
		transplant(t, z, y);
		y->left = z->left;
		set_parent(y->left, y);
		copy_color(y, z);
	}
	/* every subtree that lost z (or whose shape changed) is on this path */
	for (node *n = xp; n; n = parent(n))
		n->subtree_last = compute_max(n);
	if (removed_black)
		delete_fixup(t, x, xp);
}

/* Leftmost node of subtree n overlapping [a, b] (n->subtree_last >= a). */
static node *subtree_search(node *n, uint64_t a, uint64_t b)
{
	for (;;) {
		if (n->left && n->left->subtree_last >= a) {
			n = n->left;
			continue;
		}
		if (n->start > b)
			return NULL;
		if (n->last >= a)
			return n;
		if (n->right && n->right->subtree_last >= a) {
			n = n->right;
			continue;
		}
		return NULL;
	}
}

node *bl_augrb_iter_first(const struct bl_augrb *t, uint64_t a, uint64_t b)
{
	if (!t->root || t->root->subtree_last < a)
		return NULL;
	return subtree_search(t->root, a, b);
}

node *bl_augrb_iter_next(const node *cn, uint64_t a, uint64_t b)
{
	node *n = (node *)cn;
	for (;;) {
		node *r = n->right, *prev;
		if (r && r->subtree_last >= a)
			return subtree_search(r, a, b);
		/* climb until we arrive from a left child */
		do {
			prev = n;
			n = parent(n);
			if (!n)
				return NULL;
		} while (prev == n->right);
		if (n->start > b)
			return NULL;
		if (n->last >= a)
			return n;
	}
}

static int check(const node *n, const node *p, int *black_height, uint64_t *max)
{
	if (!n) {
		*black_height = 1;
		return 0;
	}
	if (parent(n) != p)
		return -1;
	if (is_red(n) && (is_red(n->left) || is_red(n->right)))
		return -2;
	if (n->left && n->left->start > n->start)
		return -3;
	if (n->right && n->right->start < n->start)
		return -3;
	int bl, br;
	uint64_t ml, mr;
	if (check(n->left, n, &bl, &ml) || check(n->right, n, &br, &mr))
		return -4;
	if (bl != br)
		return -5;
	uint64_t m = n->last;
	if (n->left && ml > m)
		m = ml;
	if (n->right && mr > m)
		m = mr;
	if (m != n->subtree_last)
		return -6;
	*max = m;
	*black_height = bl + is_black(n);
	return 0;
}

int bl_augrb_check(const struct bl_augrb *t)
{
	int bh;
	uint64_t m;
	if (is_red(t->root))
		return -7;
	return check(t->root, NULL, &bh, &m);
}
