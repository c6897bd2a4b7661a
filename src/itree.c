/*
 * src/itree.c — gm_itree: a B+tree of intervals with max-`last` summaries,
 * copy-on-write under RCU (see include/gmtrack/itree.h for the API).
 *
 * Node layout (FANOUT = 16, parallel arrays so a scan touches few lines):
 *
 *   struct itnode (leaf, level 0)                        392 bytes
 *   +-------+-------+------+------------------------------------------+
 *   | level | count | pad  | first[16] | last[16] | item[16]          |
 *   +-------+-------+------+------------------------------------------+
 *   struct itinner (level >= 1)                          648 bytes
 *   +------------------------+-------------------+--------------------+
 *   | struct itnode keys     | max_last[16] (A)  | child[16] (A)      |
 *   | (sep_i = first/last/   | max `last` of the | subtree i          |
 *   |  item triple)          | subtree i         |                    |
 *   +------------------------+-------------------+--------------------+
 *   (A) = _Atomic: the only fields ever changed in a published node.
 *
 * Keys are triples k = (first, last, item), compared lexicographically.
 *
 * Invariants (gm_itree_validate checks each):
 *  I1 leaf keys strictly increase; first <= last for every entry.
 *  I2 inner: sep_i strictly increase; every key in child i is in
 *     [sep_i, sep_{i+1}) (and below the node's own upper bound).
 *  I3 an inner node's sep_0 equals its parent's separator for it; the
 *     leftmost node of every level has sep_0 = (0, 0, 0). (A leaf's parent
 *     separator is only a lower bound of its first key: removing a leaf's
 *     minimum does not touch the parent.)
 *  I4 max_last_i == the largest `last` in subtree i (exact).
 *  I5 every leaf is at level 0 and every root-to-leaf path has `height`
 *     nodes; a node's level field is its height above the leaves.
 *  I6 1 <= count <= FANOUT; non-root nodes hold >= NODE_MIN; an inner root
 *     holds >= 2. The tree is empty iff root == NULL.
 *  I7 the handle's count equals the number of leaf entries.
 *
 * Why readers never miss (RCU mode): sep_*, level and count of a published
 * node never change, so the key range of every child slot is fixed while
 * that node is reachable. A child pointer is changed in place only to a node
 * covering the same range (a copied leaf or inner node); any change of
 * separators (split, merge, redistribution) copies the parent too. A
 * max_last value is changed in place only to the exact max of some complete
 * version of the subtree, and every version holds each entry present for a
 * reader's whole section, so pruning by max_last never drops one.
 *
 * Writers: descend once recording the path, PLAN the outcome at each level
 * (replace / split / merge / redistribute / root change) from node counts
 * alone, allocate exactly the nodes the plan needs plus retire room
 * (-ENOMEM here leaves the tree untouched), then EXECUTE bottom-up by
 * gathering a node's entries into a flat array, editing it, and scattering
 * it into new nodes. Without RCU a leaf that neither splits nor underflows
 * is edited in place (no allocation).
 */
#include <gmtrack/itree.h>

#include "internal.h"

#include <string.h>

#define FANOUT 16
#define NODE_MIN 4
#define MAXH GM_ITREE_MAX_HEIGHT

struct itnode {
	uint8_t level;
	uint8_t count;
	uint8_t pad[6];
	uint64_t first[FANOUT];
	uint64_t last[FANOUT];
	uintptr_t item[FANOUT];
};

struct itinner {
	struct itnode k;
	_Atomic uint64_t max_last[FANOUT];
	_Atomic(struct itnode *) child[FANOUT];
};

/* Freed nodes kept for reuse (per kind), so churn does not pay malloc plus
 * a free on liburcu's thread for every copied leaf. */
#define CACHE_MAX 256

struct freenode {
	struct freenode *next;
};

struct recycler {
	struct gm_allocator hook;               /* gm_reclaim frees through it */
	const struct gm_allocator *parent;      /* the tree's allocator */
	_Atomic(struct freenode *) returned[2]; /* pushed by deferred frees */
	_Atomic size_t cached[2];               /* nodes in returned + local */
	struct freenode *local[2];              /* the writer's own list */
	size_t limit;                           /* CACHE_MAX, or 0: no cache */
};

struct gm_itree {
	_Atomic(struct itnode *) root;
	unsigned height;
	bool rcu;
	_Atomic size_t count;
	size_t leaves, inners;
	const struct gm_allocator *alloc;
	struct gm_reclaim reclaim;
	struct recycler rec;
};

struct key {
	uint64_t first, last;
	uintptr_t item;
};

/* One slot of a node, spread out while a writer rebuilds nodes. */
struct slot {
	struct key k;
	uint64_t max_last;      /* inner only */
	struct itnode *child;   /* inner only */
};

static inline struct itinner *inner_of(const struct itnode *n)
{
	return (struct itinner *)n;
}

static inline size_t node_size(unsigned level)
{
	return level ? sizeof(struct itinner) : sizeof(struct itnode);
}

static inline int key_cmp(struct key a, struct key b)
{
	if (a.first != b.first)
		return a.first < b.first ? -1 : 1;
	if (a.last != b.last)
		return a.last < b.last ? -1 : 1;
	if (a.item != b.item)
		return a.item < b.item ? -1 : 1;
	return 0;
}

static inline struct key node_key(const struct itnode *n, unsigned i)
{
	return (struct key){n->first[i], n->last[i], n->item[i]};
}

/* Largest `last` in the subtree of n (exact, from n's own slots). */
static uint64_t node_max(const struct itnode *n)
{
	uint64_t m = 0;
	if (n->level == 0) {
		for (unsigned i = 0; i < n->count; i++)
			m = n->last[i] > m ? n->last[i] : m;
	} else {
		const struct itinner *in = inner_of(n);
		for (unsigned i = 0; i < n->count; i++) {
			uint64_t v = gm_load_relaxed(&in->max_last[i]);
			m = v > m ? v : m;
		}
	}
	return m;
}

/* ---- node memory: allocator + recycler --------------------------------- */

static int kind_of_size(size_t size)
{
	return size == sizeof(struct itinner) ? 1 : size == sizeof(struct itnode) ? 0 : -1;
}

static void *rec_alloc(void *ctx, size_t size, size_t align)
{
	struct recycler *r = ctx;
	return gm_alloc_mem(r->parent, size, align);
}

/* Called by gm_reclaim: at once without RCU, else on liburcu's thread after
 * a grace period. Keeps up to `limit` nodes of each kind for reuse. */
static void rec_free(void *ctx, void *ptr, size_t size)
{
	struct recycler *r = ctx;
	int kind = kind_of_size(size);
	if (kind >= 0 && atomic_fetch_add_explicit(&r->cached[kind], 1,
						   memory_order_relaxed) < r->limit) {
		struct freenode *f = ptr;
		f->next = atomic_load_explicit(&r->returned[kind], memory_order_relaxed);
		while (!atomic_compare_exchange_weak_explicit(
			&r->returned[kind], &f->next, f, memory_order_release,
			memory_order_relaxed))
			;
		return;
	}
	if (kind >= 0)
		atomic_fetch_sub_explicit(&r->cached[kind], 1, memory_order_relaxed);
	gm_alloc_release(r->parent, ptr, size);
}

static void rec_init(struct recycler *r, const struct gm_allocator *parent,
		     size_t limit)
{
	r->hook.alloc = rec_alloc;
	r->hook.free = rec_free;
	r->hook.ctx = r;
	r->parent = parent;
	r->limit = limit;
	for (int k = 0; k < 2; k++) {
		atomic_init(&r->returned[k], NULL);
		atomic_init(&r->cached[k], 0);
		r->local[k] = NULL;
	}
}

/* Writer: a node of `kind`, recycled if possible; NULL if out of memory. */
static struct itnode *node_get(struct recycler *r, unsigned kind)
{
	if (!r->local[kind] &&
	    atomic_load_explicit(&r->returned[kind], memory_order_relaxed))
		r->local[kind] = atomic_exchange_explicit(&r->returned[kind], NULL,
							  memory_order_acquire);
	struct freenode *f = r->local[kind];
	if (f) {
		r->local[kind] = f->next;
		atomic_fetch_sub_explicit(&r->cached[kind], 1, memory_order_relaxed);
		return (struct itnode *)f;
	}
	return gm_alloc_mem(r->parent, node_size(kind), _Alignof(struct itinner));
}

/* Writer: gives back a node no reader has seen (e.g. after -ENOMEM). */
static void node_put(struct recycler *r, struct itnode *n, unsigned kind)
{
	if (atomic_load_explicit(&r->cached[kind], memory_order_relaxed) < r->limit) {
		struct freenode *f = (struct freenode *)n;
		f->next = r->local[kind];
		r->local[kind] = f;
		atomic_fetch_add_explicit(&r->cached[kind], 1, memory_order_relaxed);
		return;
	}
	gm_alloc_release(r->parent, n, node_size(kind));
}

/* After every deferred free ran: returns all cached nodes. */
static void rec_drain(struct recycler *r)
{
	for (unsigned k = 0; k < 2; k++) {
		struct freenode *f = atomic_exchange_explicit(&r->returned[k], NULL,
							      memory_order_acquire);
		while (f || r->local[k]) {
			if (!f) {
				f = r->local[k];
				r->local[k] = NULL;
			}
			struct freenode *next = f->next;
			gm_alloc_release(r->parent, f, node_size(k));
			f = next;
		}
		atomic_store_explicit(&r->cached[k], 0, memory_order_relaxed);
	}
}

/* ---- create / destroy -------------------------------------------------- */

int gm_itree_create(struct gm_itree **out, unsigned flags,
		    const struct gm_allocator *alloc)
{
	if (!out || (flags & ~(GM_ITREE_RCU | GM_ITREE_NO_CACHE)))
		return -EINVAL;
	if (!alloc)
		alloc = gm_alloc_default();
	struct gm_itree *t = gm_alloc_mem(alloc, sizeof(*t), _Alignof(struct gm_itree));
	if (!t)
		return -ENOMEM;
	atomic_init(&t->root, NULL);
	t->height = 0;
	t->rcu = flags & GM_ITREE_RCU;
	atomic_init(&t->count, 0);
	t->leaves = t->inners = 0;
	t->alloc = alloc;
	rec_init(&t->rec, alloc, flags & GM_ITREE_NO_CACHE ? 0 : CACHE_MAX);
	gm_reclaim_init(&t->reclaim, &t->rec.hook, t->rcu);
	*out = t;
	return 0;
}

static void free_subtree(struct gm_itree *t, struct itnode *n)
{
	if (n->level) {
		struct itinner *in = inner_of(n);
		for (unsigned i = 0; i < n->count; i++)
			free_subtree(t, gm_load_relaxed(&in->child[i]));
	}
	gm_alloc_release(t->alloc, n, node_size(n->level));
}

void gm_itree_destroy(struct gm_itree *t)
{
	if (!t)
		return;
	if (t->rcu)
		gm_rcu_synchronize();
	struct itnode *root = gm_load_relaxed(&t->root);
	if (root)
		free_subtree(t, root);
	gm_reclaim_destroy(&t->reclaim);
	rec_drain(&t->rec);
	gm_alloc_release(t->alloc, t, sizeof(*t));
}

/* ---- reading ----------------------------------------------------------- */

int gm_itree_iter_init(struct gm_itree_iter *it, const struct gm_itree *t,
		       uint64_t a, uint64_t b)
{
	it->a = a;
	it->b = b;
	it->level = -1;
	it->top = -1;
	if (a > b)
		return -EINVAL;
	const struct itnode *root = gm_load_acquire(&((struct gm_itree *)t)->root);
	if (!root)
		return 0;
	it->top = it->level = root->level;
	it->node[root->level] = root;
	it->idx[root->level] = 0;
	return 0;
}

void gm_itree_stab_init(struct gm_itree_iter *it, const struct gm_itree *t,
			uint64_t point)
{
	(void)gm_itree_iter_init(it, t, point, point);
}

bool gm_itree_iter_next(struct gm_itree_iter *it, struct gm_itree_entry *out)
{
	const uint64_t a = it->a, b = it->b;
	int level = it->level;
	if (level < 0)
		return false;
	while (level <= it->top) {
		const struct itnode *n = it->node[level];
		unsigned i = it->idx[level], count = n->count;
		if (level == 0) {
			for (; i < count; i++) {
				if (n->first[i] > b)
					goto finished; /* all later keys start after b */
				if (n->last[i] >= a) {
					out->first = n->first[i];
					out->last = n->last[i];
					out->item = (void *)n->item[i];
					it->idx[0] = (uint8_t)(i + 1);
					it->level = 0;
					return true;
				}
			}
			level++; /* leaf done: back to its parent's next child */
			continue;
		}
		const struct itinner *in = inner_of(n);
		for (; i < count; i++) {
			if (n->first[i] > b)
				goto finished; /* sep_i <= every key of child i.. */
			if (gm_load_relaxed(&in->max_last[i]) >= a)
				break;
		}
		if (i == count) {
			level++;
			continue;
		}
		it->idx[level] = (uint8_t)(i + 1);
		level--;
		it->node[level] = gm_load_acquire(&in->child[i]);
		it->idx[level] = 0;
	}
finished:
	it->level = -1;
	return false;
}

size_t gm_itree_count(const struct gm_itree *t)
{
	return atomic_load_explicit(&((struct gm_itree *)t)->count,
				    memory_order_relaxed);
}

/* ---- writing: descend, plan, allocate, execute ------------------------- */

/* What happens to the path node at one level. */
enum outcome {
	OUT_INPLACE,       /* (no RCU) leaf edited in place */
	OUT_REPLACE,       /* copy with the edit, publish in the same slot */
	OUT_SPLIT,         /* too full: two nodes, parent gains a slot */
	OUT_MERGE,         /* too empty: joined with a sibling, parent loses one */
	OUT_REDIST,        /* too empty: entries shared with a sibling */
	OUT_ROOT_EMPTY,    /* the root leaf lost its last entry */
	OUT_ROOT_COLLAPSE, /* the inner root is left with one child */
};

struct wpath {
	struct itnode *node[MAXH]; /* node[height-1] is the root */
	unsigned idx[MAXH];        /* inner: child taken; leaf: key position */
	unsigned height;
};

struct plan {
	enum outcome out[MAXH];
	unsigned sib[MAXH];  /* MERGE/REDIST: the sibling's slot in the parent */
	bool new_root;       /* the root splits */
	unsigned need[2];    /* nodes to allocate: [0] leaves, [1] inner */
	unsigned retire;     /* nodes that will be retired */
};

struct pool {
	struct itnode *n[2][2 * MAXH + 2];
	unsigned have[2];
};

#define SLOTS (2 * FANOUT + 1)

/* Number of slots i in [from, count) with first[i] < kf: branch-free, so
 * the compiler can vectorize it; cheaper than a binary search at 16. */
static inline unsigned count_below(const struct itnode *n, unsigned from,
				   uint64_t kf)
{
	unsigned c = 0;
	for (unsigned i = from; i < n->count; i++)
		c += n->first[i] < kf;
	return c;
}

/* Inner node: the child whose range holds k (largest i with sep_i <= k). */
static unsigned route(const struct itnode *n, struct key k)
{
	unsigned i = 1 + count_below(n, 1, k.first);
	while (i < n->count && n->first[i] == k.first &&
	       key_cmp(k, node_key(n, i)) >= 0)
		i++;
	return i - 1;
}

/* Leaf: first position whose key is >= k; *found if it equals k. */
static unsigned leaf_lower_bound(const struct itnode *n, struct key k,
				 bool *found)
{
	unsigned j = count_below(n, 0, k.first);
	while (j < n->count && n->first[j] == k.first &&
	       key_cmp(node_key(n, j), k) < 0)
		j++;
	*found = j < n->count && key_cmp(node_key(n, j), k) == 0;
	return j;
}

static void descend(const struct gm_itree *t, struct key k, struct wpath *p)
{
	struct itnode *n = gm_load_relaxed(&((struct gm_itree *)t)->root);
	p->height = t->height;
	for (unsigned level = t->height - 1; level > 0; level--) {
		unsigned i = route(n, k);
		p->node[level] = n;
		p->idx[level] = i;
		n = gm_load_relaxed(&inner_of(n)->child[i]);
	}
	p->node[0] = n;
}

/*
 * Decides, from counts alone, what each level of the path becomes when the
 * leaf gains (delta = +1) or loses (-1) an entry, and what that needs.
 */
static int make_plan(const struct gm_itree *t, const struct wpath *p,
		     int delta, struct plan *pl)
{
	unsigned h = p->height;
	int c = p->node[0]->count + delta;
	pl->new_root = false;
	pl->need[0] = pl->need[1] = 0;
	pl->retire = 0;
	for (unsigned level = 0; level < h; level++) {
		bool is_root = level == h - 1;
		unsigned kind = level ? 1 : 0;
		int minc = is_root ? (level ? 2 : 1) : NODE_MIN;
		if (c > FANOUT) {
			pl->out[level] = OUT_SPLIT;
			pl->need[kind] += 2;
			pl->retire++;
			if (is_root) {
				if (h == MAXH)
					return -ENOSPC;
				pl->new_root = true;
				pl->need[1]++;
				return 0;
			}
			c = p->node[level + 1]->count + 1;
			continue;
		}
		if (c >= minc) {
			if (level == 0 && !t->rcu) {
				pl->out[level] = OUT_INPLACE;
			} else {
				pl->out[level] = OUT_REPLACE;
				pl->need[kind]++;
				pl->retire++;
			}
			return 0;
		}
		pl->retire++;
		if (is_root) {
			pl->out[level] = level ? OUT_ROOT_COLLAPSE : OUT_ROOT_EMPTY;
			return 0;
		}
		const struct itinner *par = inner_of(p->node[level + 1]);
		unsigned i = p->idx[level + 1];
		unsigned s = i > 0 ? i - 1 : i + 1;
		int sc = gm_load_relaxed(&par->child[s])->count;
		pl->sib[level] = s;
		pl->retire++;
		if (c + sc <= FANOUT) {
			pl->out[level] = OUT_MERGE;
			pl->need[kind]++;
			c = par->k.count - 1;
		} else {
			pl->out[level] = OUT_REDIST;
			pl->need[kind] += 2;
			c = par->k.count; /* parent is copied with new separators */
		}
	}
	return 0; /* not reached: the root level always decides */
}

static void pool_drain(struct gm_itree *t, struct pool *po)
{
	for (unsigned kind = 0; kind < 2; kind++)
		while (po->have[kind])
			node_put(&t->rec, po->n[kind][--po->have[kind]], kind);
}

/* Allocates everything the plan needs; -ENOMEM leaves nothing behind. */
static int pool_fill(struct gm_itree *t, const struct plan *pl,
		     struct pool *po)
{
	po->have[0] = po->have[1] = 0;
	for (unsigned kind = 0; kind < 2; kind++) {
		for (unsigned j = 0; j < pl->need[kind]; j++) {
			struct itnode *n = node_get(&t->rec, kind);
			if (!n) {
				pool_drain(t, po);
				return -ENOMEM;
			}
			po->n[kind][po->have[kind]++] = n;
		}
	}
	if (gm_reclaim_reserve(&t->reclaim, pl->retire)) {
		pool_drain(t, po);
		return -ENOMEM;
	}
	return 0;
}

static struct itnode *pool_take(struct gm_itree *t, struct pool *po,
				unsigned level)
{
	unsigned kind = level ? 1 : 0;
	struct itnode *n = po->n[kind][--po->have[kind]];
	memset(n->pad, 0, sizeof(n->pad));
	n->level = (uint8_t)level;
	n->count = 0;
	if (kind)
		t->inners++;
	else
		t->leaves++;
	return n;
}

static void retire_node(struct gm_itree *t, struct itnode *n)
{
	if (n->level)
		t->inners--;
	else
		t->leaves--;
	gm_reclaim_retire(&t->reclaim, n, node_size(n->level));
}

static unsigned gather(const struct itnode *n, struct slot *s)
{
	const struct itinner *in = inner_of(n);
	for (unsigned i = 0; i < n->count; i++) {
		s[i].k = node_key(n, i);
		if (n->level) {
			s[i].max_last = gm_load_relaxed(&in->max_last[i]);
			s[i].child = gm_load_relaxed(&in->child[i]);
		}
	}
	return n->count;
}

/* Fills an unpublished node (its level set) with cnt slots. */
static void scatter(struct itnode *n, const struct slot *s, unsigned cnt)
{
	struct itinner *in = inner_of(n);
	n->count = (uint8_t)cnt;
	for (unsigned i = 0; i < cnt; i++) {
		n->first[i] = s[i].k.first;
		n->last[i] = s[i].k.last;
		n->item[i] = s[i].k.item;
		if (n->level) {
			atomic_init(&in->max_last[i], s[i].max_last);
			atomic_init(&in->child[i], s[i].child);
		}
	}
}

static void insert_slot(struct slot *s, unsigned *n, unsigned pos,
			struct slot v)
{
	memmove(&s[pos + 1], &s[pos], (*n - pos) * sizeof(*s));
	s[pos] = v;
	(*n)++;
}

static void delete_slot(struct slot *s, unsigned *n, unsigned pos)
{
	memmove(&s[pos], &s[pos + 1], (*n - pos - 1) * sizeof(*s));
	(*n)--;
}

static struct slot slot_for(struct key k, struct itnode *child)
{
	return (struct slot){.k = k, .max_last = node_max(child), .child = child};
}

/* After the node at path level `level` changed in place, refreshes the
 * max-`last` summaries above it (stops once one is unchanged). */
static void fix_max_above(const struct wpath *p, unsigned level)
{
	for (; level + 1 < p->height; level++) {
		uint64_t m = node_max(p->node[level]);
		struct itinner *par = inner_of(p->node[level + 1]);
		unsigned i = p->idx[level + 1];
		if (gm_load_relaxed(&par->max_last[i]) == m)
			break;
		gm_store_relaxed(&par->max_last[i], m);
	}
}

/* Puts n where path level `level`'s node was: same key range, one store. */
static void publish_replace(struct gm_itree *t, const struct wpath *p,
			    unsigned level, struct itnode *n)
{
	if (level == p->height - 1) {
		gm_store_release(&t->root, n);
		return;
	}
	struct itinner *par = inner_of(p->node[level + 1]);
	unsigned i = p->idx[level + 1];
	/* Any order of these two is safe for readers (see the top). */
	gm_store_relaxed(&par->max_last[i], node_max(n));
	gm_store_release(&par->child[i], n);
	fix_max_above(p, level + 1);
}

/* Where to cut n (> FANOUT) slots: in half, except that an insert at either
 * end of a node leaves the old node nearly full, so runs of ascending (or
 * descending) inserts, common for memslots, fill leaves to ~80%, not 50%. */
static unsigned split_point(unsigned n, int editpos)
{
	if (editpos == (int)n - 1)
		return n - NODE_MIN;
	if (editpos == 0)
		return NODE_MIN;
	return n / 2;
}

/*
 * Carries out the plan bottom-up. buf[0] holds the leaf's slots after the
 * edit (n of them; the edited position is editpos, -1 for a removal).
 * Replaced nodes are retired only at the end, so the path stays readable
 * even without RCU (where retiring frees at once).
 */
static void execute(struct gm_itree *t, const struct wpath *p,
		    const struct plan *pl, struct pool *po,
		    struct slot buf[2][SLOTS], unsigned n, int editpos)
{
	struct slot *cur = buf[0], *next = buf[1], *swap;
	struct itnode *dead[2 * MAXH + 2];
	unsigned ndead = 0;
	for (unsigned level = 0;; level++) {
		struct itnode *old = p->node[level];
		dead[ndead++] = old;
		if (pl->out[level] == OUT_REPLACE) {
			struct itnode *nn = pool_take(t, po, level);
			scatter(nn, cur, n);
			publish_replace(t, p, level, nn);
			break;
		}
		if (pl->out[level] == OUT_ROOT_EMPTY) {
			t->height = 0;
			gm_store_release(&t->root, NULL);
			break;
		}
		if (pl->out[level] == OUT_ROOT_COLLAPSE) {
			t->height--;
			gm_store_release(&t->root, cur[0].child);
			break;
		}
		if (pl->out[level] == OUT_SPLIT) {
			unsigned m = split_point(n, editpos);
			struct itnode *l = pool_take(t, po, level);
			struct itnode *r = pool_take(t, po, level);
			scatter(l, cur, m);
			scatter(r, cur + m, n - m);
			struct key sep = cur[m].k;
			if (level == p->height - 1) { /* the root split */
				struct itnode *root = pool_take(t, po, level + 1);
				struct slot two[2] = {slot_for((struct key){0, 0, 0}, l),
						      slot_for(sep, r)};
				scatter(root, two, 2);
				t->height++;
				gm_store_release(&t->root, root);
				break;
			}
			unsigned i = p->idx[level + 1];
			n = gather(p->node[level + 1], next);
			next[i] = slot_for(next[i].k, l);
			insert_slot(next, &n, i + 1, slot_for(sep, r));
			editpos = (int)i + 1;
		} else { /* OUT_MERGE or OUT_REDIST with sibling s */
			const struct itinner *par = inner_of(p->node[level + 1]);
			unsigned i = p->idx[level + 1], s = pl->sib[level];
			unsigned lo = s < i ? s : i, cn;
			struct itnode *sib = gm_load_relaxed(&par->child[s]);
			dead[ndead++] = sib;
			if (s < i) {
				cn = gather(sib, next);
				memcpy(next + cn, cur, n * sizeof(*cur));
				cn += n;
			} else {
				memcpy(next, cur, n * sizeof(*cur));
				cn = n + gather(sib, next + n);
			}
			n = gather(&par->k, cur);
			if (pl->out[level] == OUT_MERGE) {
				struct itnode *nn = pool_take(t, po, level);
				scatter(nn, next, cn);
				cur[lo] = slot_for(cur[lo].k, nn);
				delete_slot(cur, &n, lo + 1);
			} else {
				unsigned m = cn / 2;
				struct itnode *l = pool_take(t, po, level);
				struct itnode *r = pool_take(t, po, level);
				scatter(l, next, m);
				scatter(r, next + m, cn - m);
				cur[lo] = slot_for(cur[lo].k, l);
				cur[lo + 1] = slot_for(next[m].k, r);
			}
			editpos = -1;
			swap = cur, cur = next, next = swap; /* undone below */
		}
		swap = cur, cur = next, next = swap;
	}
	for (unsigned j = 0; j < ndead; j++)
		retire_node(t, dead[j]);
}

static void leaf_insert_inplace(struct itnode *n, unsigned pos, struct key k)
{
	unsigned tail = n->count - pos;
	memmove(&n->first[pos + 1], &n->first[pos], tail * sizeof(uint64_t));
	memmove(&n->last[pos + 1], &n->last[pos], tail * sizeof(uint64_t));
	memmove(&n->item[pos + 1], &n->item[pos], tail * sizeof(uintptr_t));
	n->first[pos] = k.first;
	n->last[pos] = k.last;
	n->item[pos] = k.item;
	n->count++;
}

static void leaf_delete_inplace(struct itnode *n, unsigned pos)
{
	unsigned tail = n->count - pos - 1;
	memmove(&n->first[pos], &n->first[pos + 1], tail * sizeof(uint64_t));
	memmove(&n->last[pos], &n->last[pos + 1], tail * sizeof(uint64_t));
	memmove(&n->item[pos], &n->item[pos + 1], tail * sizeof(uintptr_t));
	n->count--;
}

static int insert_first(struct gm_itree *t, struct key k)
{
	struct itnode *n = node_get(&t->rec, 0);
	if (!n)
		return -ENOMEM;
	memset(n->pad, 0, sizeof(n->pad));
	n->level = 0;
	n->count = 0;
	leaf_insert_inplace(n, 0, k);
	t->leaves++;
	t->height = 1;
	gm_store_release(&t->root, n);
	return 0;
}

static void copy_cols(struct itnode *dst, unsigned to, const struct itnode *src,
		      unsigned from, unsigned n)
{
	memcpy(&dst->first[to], &src->first[from], n * sizeof(uint64_t));
	memcpy(&dst->last[to], &src->last[from], n * sizeof(uint64_t));
	memcpy(&dst->item[to], &src->item[from], n * sizeof(uintptr_t));
}

/* dst = src with k inserted at pos (delta > 0) or slot pos removed. */
static void leaf_copy_edit(struct itnode *dst, const struct itnode *src,
			   unsigned pos, int delta, struct key k)
{
	unsigned cnt = src->count;
	copy_cols(dst, 0, src, 0, pos);
	if (delta > 0) {
		copy_cols(dst, pos + 1, src, pos, cnt - pos);
		dst->first[pos] = k.first;
		dst->last[pos] = k.last;
		dst->item[pos] = k.item;
	} else {
		copy_cols(dst, pos, src, pos + 1, cnt - pos - 1);
	}
	dst->count = (uint8_t)(cnt + delta);
}

/* Shared tail of insert and remove once the leaf position is known. */
static int apply(struct gm_itree *t, struct wpath *p, struct key k, int delta)
{
	struct plan pl;
	int rc = make_plan(t, p, delta, &pl);
	if (rc)
		return rc;
	unsigned pos = p->idx[0];
	if (pl.out[0] == OUT_INPLACE) {
		if (delta > 0)
			leaf_insert_inplace(p->node[0], pos, k);
		else
			leaf_delete_inplace(p->node[0], pos);
		fix_max_above(p, 0);
		return 0;
	}
	struct pool po;
	rc = pool_fill(t, &pl, &po);
	if (rc)
		return rc;
	if (pl.out[0] == OUT_REPLACE) { /* the common case: copy one leaf */
		struct itnode *nn = pool_take(t, &po, 0);
		leaf_copy_edit(nn, p->node[0], pos, delta, k);
		publish_replace(t, p, 0, nn);
		retire_node(t, p->node[0]);
		return 0;
	}
	struct slot buf[2][SLOTS];
	unsigned n = gather(p->node[0], buf[0]);
	if (delta > 0)
		insert_slot(buf[0], &n, pos, (struct slot){.k = k});
	else
		delete_slot(buf[0], &n, pos);
	execute(t, p, &pl, &po, buf, n, delta > 0 ? (int)pos : -1);
	return 0;
}

int gm_itree_insert(struct gm_itree *t, uint64_t first, uint64_t last,
		    void *item)
{
	if (!t || first > last)
		return -EINVAL;
	struct key k = {first, last, (uintptr_t)item};
	int rc;
	if (!gm_load_relaxed(&t->root)) {
		rc = insert_first(t, k);
	} else {
		struct wpath p;
		bool found;
		descend(t, k, &p);
		p.idx[0] = leaf_lower_bound(p.node[0], k, &found);
		if (found)
			return -EEXIST;
		rc = apply(t, &p, k, +1);
	}
	if (rc == 0)
		atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
	return rc;
}

int gm_itree_remove(struct gm_itree *t, uint64_t first, uint64_t last,
		    void *item)
{
	if (!t || first > last)
		return -EINVAL;
	if (!gm_load_relaxed(&t->root))
		return -ENOENT;
	struct key k = {first, last, (uintptr_t)item};
	struct wpath p;
	bool found;
	descend(t, k, &p);
	p.idx[0] = leaf_lower_bound(p.node[0], k, &found);
	if (!found)
		return -ENOENT;
	int rc = apply(t, &p, k, -1);
	if (rc == 0)
		atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
	return rc;
}

/* ---- stats and validation ---------------------------------------------- */

static void stats_walk(const struct itnode *n, struct gm_itree_stats *s)
{
	if (n->level == 0) {
		s->leaf_nodes++;
		s->entries += n->count;
		return;
	}
	s->inner_nodes++;
	for (unsigned i = 0; i < n->count; i++)
		stats_walk(gm_load_relaxed(&inner_of(n)->child[i]), s);
}

int gm_itree_stats(const struct gm_itree *t, struct gm_itree_stats *s)
{
	if (!t || !s)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	const struct itnode *root = gm_load_relaxed(&((struct gm_itree *)t)->root);
	if (root)
		stats_walk(root, s);
	s->height = t->height;
	s->node_bytes = s->leaf_nodes * sizeof(struct itnode) +
			s->inner_nodes * sizeof(struct itinner);
	s->cache_bytes = atomic_load_explicit(&((struct gm_itree *)t)->rec.cached[0], memory_order_relaxed) *
			 sizeof(struct itnode) +
			 atomic_load_explicit(&((struct gm_itree *)t)->rec.cached[1], memory_order_relaxed) *
			 sizeof(struct itinner);
	s->total_bytes = s->node_bytes + s->cache_bytes + sizeof(*t);
	return 0;
}

struct vstate {
	const char *reason;
	size_t entries;
	size_t leaves, inners;
};

static int vfail(struct vstate *v, const char *why)
{
	if (!v->reason)
		v->reason = why;
	return -EINVAL;
}

/* Checks the subtree n at `level`; lo is its lower bound (for an inner
 * node: exactly its sep_0), hi its exclusive upper bound (NULL: none). */
static int vnode(const struct itnode *n, unsigned level, bool is_root,
		 struct key lo, const struct key *hi, uint64_t *max,
		 struct vstate *v)
{
	if (!n)
		return vfail(v, "NULL child pointer");
	if (n->level != level)
		return vfail(v, "node level does not match its depth (leaves at unequal depth)");
	if (n->count == 0 || n->count > FANOUT)
		return vfail(v, "node count out of range 1..16");
	if (!is_root && n->count < NODE_MIN)
		return vfail(v, "non-root node below the minimum fill");
	if (is_root && level && n->count < 2)
		return vfail(v, "inner root with fewer than 2 children");
	for (unsigned i = 1; i < n->count; i++)
		if (key_cmp(node_key(n, i - 1), node_key(n, i)) >= 0)
			return vfail(v, "keys not strictly increasing");
	if (hi && key_cmp(node_key(n, n->count - 1), *hi) >= 0)
		return vfail(v, "key at or above the next separator");
	if (level == 0) {
		v->leaves++;
		if (key_cmp(node_key(n, 0), lo) < 0)
			return vfail(v, "leaf key below its parent's separator");
		uint64_t m = 0;
		for (unsigned i = 0; i < n->count; i++) {
			if (n->first[i] > n->last[i])
				return vfail(v, "entry with first > last");
			m = n->last[i] > m ? n->last[i] : m;
		}
		v->entries += n->count;
		*max = m;
		return 0;
	}
	v->inners++;
	if (key_cmp(node_key(n, 0), lo) != 0)
		return vfail(v, "inner sep_0 differs from the parent's separator");
	const struct itinner *in = inner_of(n);
	uint64_t m = 0;
	for (unsigned i = 0; i < n->count; i++) {
		struct key next = i + 1 < n->count ? node_key(n, i + 1) : (struct key){0, 0, 0};
		const struct key *chi = i + 1 < n->count ? &next : hi;
		uint64_t cm;
		int rc = vnode(gm_load_relaxed(&in->child[i]), level - 1, false,
			       node_key(n, i), chi, &cm, v);
		if (rc)
			return rc;
		if (gm_load_relaxed(&in->max_last[i]) != cm)
			return vfail(v, "max_last summary differs from the subtree's max last");
		m = cm > m ? cm : m;
	}
	*max = m;
	return 0;
}

int gm_itree_validate(const struct gm_itree *t, const char **reason)
{
	struct vstate v = {0};
	int rc = 0;
	if (!t) {
		rc = vfail(&v, "NULL tree");
	} else {
		const struct itnode *root = gm_load_relaxed(&((struct gm_itree *)t)->root);
		uint64_t m;
		if (!root && t->height != 0)
			rc = vfail(&v, "empty tree with non-zero height");
		else if (root && (unsigned)root->level + 1 != t->height)
			rc = vfail(&v, "root level does not match the height");
		else if (root)
			rc = vnode(root, root->level, true, (struct key){0, 0, 0},
				   NULL, &m, &v);
		if (!rc && v.entries != gm_itree_count(t))
			rc = vfail(&v, "count differs from the number of entries");
		if (!rc && (v.leaves != t->leaves || v.inners != t->inners))
			rc = vfail(&v, "node counters differ from the nodes reachable");
	}
	if (reason)
		*reason = rc ? v.reason : NULL;
	return rc;
}
