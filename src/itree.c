/*
 * src/itree.c — gm_itree: a B+tree of intervals with max-`last` summaries;
 * RCU readers never miss (see include/gmtrack/itree.h for the API).
 *
 * Node layout (parallel arrays, so a scan touches few cache lines):
 *
 *   struct itleaf (level 0)                              384 bytes (6 cache lines)
 *   +-------+-------+------+---------+------+-----------+----------------------------+
 *   | level | count | live | seq (A) | home | order (A) | first[15] last[15] item[15] |
 *   +-------+-------+------+---------+------+-----------+----------------------------+
 *     order = live count (bits 0-3) + 15 nibbles: nibble i+1 is the
 *     physical slot of the i-th smallest key. Slots the order word does
 *     not list are free. live = the writer's bit mask of the slots the
 *     order word lists. seq = the leaf's sequence count (see "Slot reuse").
 *
 *   struct itinner (level >= 1)                 1600 bytes (25 cache lines)
 *   +------------------+---------------+-------------+-------+----------+------------+
 *   |level count home  | prefix_max(A) | max_last(A) | first | child(A) | last, item |
 *   +------------------+---------------+-------------+-------+----------+------------+
 *     the header fills a line; each array is 4 lines, line-aligned.
 *     32 of each (unused first[] and prefix_max[] = UINT64_MAX, so
 *     searches run a fixed, unrolled length).
 *     (first, last, item)_i = sep_i, the lower bound of child
 *     i's keys; max_last_i = max `last` in child i; prefix_max_i = max of
 *     max_last_0..i, so a reader finds the first child worth visiting by
 *     binary search. Reader-hot arrays come first.
 *
 *   (A) = _Atomic: with a leaf's free slots (rewritten under its seq),
 *   the only fields ever changed in a published node.
 *
 * Keys are triples k = (first, last, item), compared lexicographically.
 *
 * Invariants (gm_itree_validate checks each):
 *  I1 leaf: keys in order-word order strictly increase; first <= last; the
 *     order word lists distinct slots < 15; count == its count; the live
 *     mask == the set of slots it lists.
 *  I2 inner: sep_i strictly increase; every key in child i is in
 *     [sep_i, sep_{i+1}) (and below the node's own upper bound).
 *  I3 an inner node's sep_0 equals its parent's separator for it; the
 *     leftmost node of every level has sep_0 = (0, 0, 0). (A leaf's parent
 *     separator is only a lower bound of its first key.)
 *  I4 max_last_i == the largest `last` of the live entries of subtree i;
 *     prefix_max_i == max(max_last_0..i).
 *  I5 every root-to-leaf path has `height` nodes; level = height above leaves.
 *  I6 leaves hold 1..15 live entries, inner nodes 2..32 children; non-root
 *     nodes hold >= NODE_MIN. The tree is empty iff root == NULL.
 *  I7 the handle's count equals the number of live leaf entries.
 *
 * Why readers never miss (RCU mode): a reader takes a leaf's order word and
 * the slots it lists as one consistent snapshot (the leaf's seq tells it
 * when a slot it read was rewritten meanwhile, and it reads the leaf
 * again); insert writes a free slot and then publishes a new order word
 * (release), remove publishes an order word without the slot. Separators,
 * level and count of a published inner node never change, so the key range
 * of every child slot is fixed while the node is reachable; a child pointer
 * is changed in place only to a node covering the same range, and any
 * change of separators (split, merge, redistribution) copies the parent.
 * A max_last value is only ever set to the exact max of some complete
 * version of its subtree, and every version holds each entry present for a
 * reader's whole section, so pruning by max_last never drops one; likewise
 * a prefix_max_i is computed from such values, so reading prefix_max_i < a
 * proves children 0..i hold no such entry overlapping [a, ..], even if the
 * array is momentarily not monotone while the writer updates it.
 *
 * Writers: descend once recording the path; unless the leaf takes the edit
 * in place, PLAN the outcome at each level from counts alone (copy / split
 * / merge / redistribute / root change), allocate exactly the nodes it needs
 * plus retire room (-ENOMEM here leaves the tree untouched), then EXECUTE
 * bottom-up: gather a node's live entries into a flat array, edit it,
 * scatter it into new nodes. An insert into a leaf with room and a remove
 * that leaves its leaf full enough are in-place leaf edits: no allocation,
 * no retirement. Only splits, merges and root changes copy nodes.
 *
 * Slot reuse: a removed entry's slot may still be read by a reader that
 * loaded an older order word, so it is rewritten under a seqlock-style
 * count. Before writing a free slot the writer bumps the leaf's seq
 * (release store, then a release fence); a reader loads seq (acquire)
 * before the order word, and again after reading the slots (behind an
 * acquire fence), and reads the leaf again if it moved. A reader that read
 * any value written after a bump sees the bump on its second load; a
 * reader whose first load saw the bump sees an order word published after
 * the slot died, which does not list it. So a free slot is reusable at
 * once, without waiting for a grace period that a leaf edited many times
 * per grace period would otherwise have to be copied for. Retries are rare:
 * the writer must insert into that very leaf during the reader's few dozen
 * nanoseconds there.
 *
 * Chunks: nodes live in chunks of 1..170 node slots of one kind, each
 * allocated (64-byte aligned) through the tree's allocator; a node's
 * `home` names its chunk. In a tree with at least CHUNK_SHARE *
 * CHUNK_MIN nodes of a kind, a new chunk holds about 1/32 of them
 * (<= 64 KiB), so the nodes of a big tree sit in a few dozen contiguous
 * blocks whatever the heap looked like (with malloc'd nodes, a heap
 * fragmented by earlier scenarios in the same process once made
 * memslot_hva's churn 1.4-1.7x slower: TLB and cache misses). A smaller
 * tree gives each node a chunk of its own: in RCU mode the nodes retired
 * during a grace period come back all at once, and in shared chunks they
 * would stay behind as free slots of part-used chunks for good (the
 * high-water mark of one grace period's retirements), while a node of its
 * own goes back to the allocator when it comes back. The writer keeps one
 * free list per kind (LIFO, so a new node is usually one freed recently).
 * A chunk whose slots are all free goes back to the allocator, except
 * that an RCU-mode tree keeps empty chunks while its free slots stay
 * below 1/16 of its nodes of the kind (spare_slots; none in a tree of
 * fewer than 16); a failed write releases the chunks it added, so the
 * byte count is exactly as it was. The nodes a write retires (RCU mode)
 * are one batch (struct recycle, deferred with gm_reclaim_defer and sent
 * to gm_rcu_call when the write ends); after the grace period the batch's
 * call pushes them on the tree's ready stacks, and the writer takes them
 * back into their chunks after its next write (chunks are only ever
 * touched by the writer). Memory held while a writer churns is therefore
 * the live nodes plus what it retired during the last grace period
 * (src/rcu.c runs a grace period's callbacks as one batch).
 *
 * Reading: gm_itree_fill is the one-call query (items into a buffer):
 * a one-leaf tree is a flat scan with no cursor; deeper trees walk with the
 * cursor in locals. Arriving at a node, a reader prefetches every line it
 * may read there (all of a leaf's keys; an inner node's prefix_max[], and
 * first[] with the adjacent child[]), so each level costs about one memory
 * latency rather than one per probe.
 *
 * AVX2 (x86-64, found at load time; not in TSan builds): the searches of a
 * node compare all of its keys at once instead of walking them: an inner
 * node's 32 prefix_max[] (reader) or first[] (writer) in one round of 8
 * vector compares, and a leaf's 15 physical slots, masked by `live`
 * (writer) or checked against the order word (reader), without a walk of
 * the order word. The portable paths give the same answers (tests run
 * both).
 */
#include <gmtrack/itree.h>

#include "internal.h"

#include <stddef.h>
#include <string.h>

#define LEAF_MAX GM_ITREE_LEAF_ENTRIES
#define FANOUT 32
#define NODE_MIN 4
#define MAXH GM_ITREE_MAX_HEIGHT

struct itnode { /* the header both kinds start with */
	uint8_t level;
	uint8_t count; /* inner: children; leaf: live entries (writer's copy) */
	uint16_t live; /* leaf: the physical slots the order word lists
			* (writer's copy, one bit each) */
	_Atomic uint32_t seq; /* leaf: bumped before a free slot is rewritten */
	struct chunk *home;  /* the chunk holding this node's memory */
};

struct itleaf {
	struct itnode h;
	_Atomic uint64_t order;
	uint64_t first[LEAF_MAX];
	uint64_t last[LEAF_MAX];
	uintptr_t item[LEAF_MAX];
};

struct itinner {
	struct itnode h;
	/* each array on its own cache lines (4 each) */
	_Alignas(64) _Atomic uint64_t prefix_max[FANOUT]; /* max(max_last[0..i]) */
	_Atomic uint64_t max_last[FANOUT];
	uint64_t first[FANOUT];
	_Atomic(struct itnode *) child[FANOUT];
	uint64_t last[FANOUT];
	uintptr_t item[FANOUT];
};

/* Node memory that holds no node: on the writer's free list (next, prev),
 * or on a ready stack (next only). home stays where a node keeps it. */
struct free_node {
	struct free_node *next;
	struct chunk *home;
	struct free_node *prev;
};

/* The end of a chunk of `slots` node slots of one kind; the slots lie
 * right before it. live = slots not on the free list. */
struct chunk {
	uint32_t slots, live;
};

_Static_assert(offsetof(struct free_node, home) == offsetof(struct itnode, home),
	       "a free slot keeps its chunk where a node does");
_Static_assert(sizeof(struct itleaf) % 64 == 0 && sizeof(struct itinner) % 64 == 0,
	       "node slots stay cache-line aligned in a chunk");
_Static_assert(sizeof(struct free_node) <= sizeof(struct itleaf), "free slot fits");

struct gm_itree {
	_Atomic(struct itnode *) root;
	unsigned height;
	bool rcu;
	_Atomic size_t count;
	size_t leaves, inners;
	const struct gm_allocator *alloc;
	struct gm_reclaim reclaim;
	/* Node memory (see "Chunks" at the top); per kind, [0] leaves and
	 * [1] inner nodes. */
	struct recycle *rec;            /* RCU mode: retired nodes being batched */
	_Atomic(struct free_node *) ready[2]; /* past a grace period (pushed
					       * by the deferred call) */
	struct free_node free_head[2];  /* writer: sentinels of the free lists */
	size_t free_count[2];           /* writer: nodes on the free lists */
	size_t chunk_bytes;             /* writer: bytes of all chunks */
};

/* A new chunk holds about 1/CHUNK_SHARE of the tree's nodes of its kind
 * (so free slots stay a small share of the memory), at most
 * CHUNK_MAX_BYTES; one node only while that would be fewer than CHUNK_MIN
 * (see "Chunks" at the top). */
#define CHUNK_SHARE 32
#define CHUNK_MIN 32
#define CHUNK_MAX_BYTES (64 * 1024)

/* The nodes one write retired (RCU mode), as one deferred call that,
 * after the grace period, pushes them onto the tree's ready stacks. A
 * write retires at most 2 * MAXH + 2 nodes; pool_fill sizes the batch for
 * the plan's count. */
struct recycle {
	struct gm_deferred call;
	struct gm_itree *tree;
	unsigned n, cap;
	struct itnode *node[];
};

static inline size_t recycle_bytes(unsigned cap)
{
	return sizeof(struct recycle) + cap * sizeof(struct itnode *);
}

struct key {
	uint64_t first, last;
	uintptr_t item;
};

/* One entry of a node, spread out while a writer rebuilds nodes. */
struct slot {
	struct key k;
	uint64_t max_last;      /* inner only */
	struct itnode *child;   /* inner only */
};

static inline struct itinner *inner_of(const struct itnode *n)
{
	return (struct itinner *)n;
}

static inline struct itleaf *leaf_of(const struct itnode *n)
{
	return (struct itleaf *)n;
}

static inline size_t node_size(unsigned level)
{
	return level ? sizeof(struct itinner) : sizeof(struct itleaf);
}

static inline unsigned node_cap(unsigned level)
{
	return level ? FANOUT : LEAF_MAX;
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

/* ---- order words --------------------------------------------------------- */

static inline unsigned order_count(uint64_t w) { return (unsigned)(w & 15); }

static inline unsigned order_slot(uint64_t w, unsigned i)
{
	return (unsigned)(w >> (4 + 4 * i)) & 15;
}

static inline uint64_t low_nibbles(uint64_t perm, unsigned n)
{
	return n ? perm & (~0ull >> (64 - 4 * n)) : 0;
}

/* w with physical slot `phys` inserted at logical position pos. */
static uint64_t order_insert(uint64_t w, unsigned pos, unsigned phys)
{
	uint64_t perm = w >> 4;
	uint64_t out = low_nibbles(perm, pos) | (uint64_t)phys << (4 * pos) |
		       (perm >> (4 * pos)) << (4 * pos + 4);
	return low_nibbles(out, LEAF_MAX) << 4 | (order_count(w) + 1);
}

/* w without the entry at logical position pos. */
static uint64_t order_remove(uint64_t w, unsigned pos)
{
	uint64_t perm = w >> 4;
	uint64_t out = low_nibbles(perm, pos) | (perm >> (4 * pos + 4)) << (4 * pos);
	return out << 4 | (order_count(w) - 1);
}

/* Slots 0..n-1 in order. */
static uint64_t order_identity(unsigned n)
{
	uint64_t w = 0;
	for (unsigned i = n; i-- > 0;)
		w = w << 4 | i;
	return w << 4 | n;
}

/* A leaf's slot fields, which the writer may rewrite while readers read
 * them (see "Slot reuse"). As in any seqlock, a reader's loads may race
 * with the writer's stores, and whatever they return is thrown away when
 * seq moved; one fence on each side orders them against seq. They are
 * plain moves (on x86-64 an aligned 8-byte load or store is never torn,
 * as the AVX2 searches also rely on; a torn value would be thrown away
 * anyway), which keeps the compares' loads folded into the compares. TSan
 * builds make them atomic, so that TSan sees no race, and carry the
 * ordering on every access: TSan does not model fences, and gcc refuses
 * them under -fsanitize=thread. */
#ifdef GM_TSAN
#define slot_load(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define slot_store(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define slot_fence(order) ((void)0)
#else
#define slot_load(p) (*(p))
#define slot_store(p, v) (*(p) = (v))
#define slot_fence(order) atomic_thread_fence(order)
#endif

/* A reader's snapshot of a leaf: seq before the order word ... */
static inline uint32_t leaf_read_begin(const struct itleaf *lf)
{
	return gm_load_acquire(&((struct itleaf *)lf)->h.seq);
}

/* ... and after the slot reads: true if no slot was rewritten meanwhile,
 * so what was read matches the order word (else read the leaf again). */
static inline bool leaf_read_valid(const struct itleaf *lf, uint32_t seq)
{
	slot_fence(memory_order_acquire);
	return GM_LIKELY(gm_load_relaxed(&((struct itleaf *)lf)->h.seq) == seq);
}

/* Writer's view of a leaf's order word (it is the only one changing it). */
static inline uint64_t leaf_order(const struct itnode *n)
{
	return gm_load_relaxed(&leaf_of(n)->order);
}

/* Key at logical position i: an inner separator or a leaf entry. */
static inline struct key node_key(const struct itnode *n, unsigned i)
{
	if (n->level) {
		const struct itinner *in = inner_of(n);
		return (struct key){in->first[i], in->last[i], in->item[i]};
	}
	const struct itleaf *lf = leaf_of(n);
	unsigned s = order_slot(leaf_order(n), i);
	return (struct key){lf->first[s], lf->last[s], lf->item[s]};
}

/* Largest `last` among the live entries of n's subtree (exact). */
static uint64_t node_max(const struct itnode *n)
{
	uint64_t m = 0;
	if (n->level == 0) {
		const struct itleaf *lf = leaf_of(n);
		uint64_t w = leaf_order(n);
		for (unsigned i = 0; i < order_count(w); i++) {
			uint64_t v = lf->last[order_slot(w, i)];
			m = v > m ? v : m;
		}
	} else {
		m = gm_load_relaxed(&inner_of(n)->prefix_max[n->count - 1]);
	}
	return m;
}

/* ---- create / destroy -------------------------------------------------- */

int gm_itree_create(struct gm_itree **out, unsigned flags,
		    const struct gm_allocator *alloc)
{
	if (!out || (flags & ~GM_RCU))
		return -EINVAL;
	if (!alloc)
		alloc = gm_alloc_default();
	struct gm_itree *t = gm_alloc_mem(alloc, sizeof(*t), _Alignof(struct gm_itree));
	if (!t)
		return -ENOMEM;
	atomic_init(&t->root, NULL);
	t->height = 0;
	t->rcu = flags & GM_RCU;
	atomic_init(&t->count, 0);
	t->leaves = t->inners = 0;
	t->alloc = alloc;
	t->rec = NULL;
	for (unsigned kind = 0; kind < 2; kind++) {
		atomic_init(&t->ready[kind], NULL);
		t->free_head[kind].next = t->free_head[kind].prev = &t->free_head[kind];
		t->free_head[kind].home = NULL;
		t->free_count[kind] = 0;
	}
	t->chunk_bytes = 0;
	gm_reclaim_init(&t->reclaim, alloc, t->rcu);
	*out = t;
	return 0;
}

/* ---- node memory: chunks ------------------------------------------------ */

/* Asks for [p, p + bytes) for writing (the lines of a node about to be
 * filled). */
static inline __attribute__((always_inline)) void prefetch_lines_w(const void *p, size_t bytes)
{
	for (size_t off = 0; off < bytes; off += 64)
		__builtin_prefetch((const char *)p + off, 1);
}

static inline size_t chunk_size(unsigned kind, uint32_t slots)
{
	return (size_t)slots * node_size(kind) + sizeof(struct chunk);
}

static inline char *chunk_base(const struct chunk *c, unsigned kind)
{
	return (char *)c - (size_t)c->slots * node_size(kind);
}

static void free_list_push(struct gm_itree *t, unsigned kind,
			   struct free_node *f)
{
	struct free_node *head = &t->free_head[kind];
	f->prev = head;
	f->next = head->next;
	head->next->prev = f;
	head->next = f;
	t->free_count[kind]++;
}

static void free_list_unlink(struct gm_itree *t, unsigned kind,
			     struct free_node *f)
{
	f->prev->next = f->next;
	f->next->prev = f->prev;
	t->free_count[kind]--;
}

/* A new chunk of `slots` free slots (slot 0 first on the free list);
 * NULL on -ENOMEM. */
static struct chunk *chunk_add(struct gm_itree *t, unsigned kind,
			       uint32_t slots)
{
	size_t bytes = chunk_size(kind, slots);
	char *base = gm_alloc_mem(t->alloc, bytes, 64);
	if (!base)
		return NULL;
	struct chunk *c = (struct chunk *)(base + (size_t)slots * node_size(kind));
	c->slots = slots;
	c->live = 0;
	for (uint32_t i = slots; i-- > 0;) {
		struct free_node *f = (struct free_node *)(base + i * node_size(kind));
		f->home = c;
		free_list_push(t, kind, f);
	}
	t->chunk_bytes += bytes;
	return c;
}

/* Gives a chunk whose slots are all free back to the allocator. */
static void chunk_release(struct gm_itree *t, unsigned kind, struct chunk *c)
{
	char *base = chunk_base(c, kind);
	for (uint32_t i = 0; i < c->slots; i++)
		free_list_unlink(t, kind, (struct free_node *)(base + i * node_size(kind)));
	size_t bytes = chunk_size(kind, c->slots);
	t->chunk_bytes -= bytes;
	gm_alloc_release(t->alloc, base, bytes);
}

/* The chunks one write added, released again if the write fails. A write
 * needs at most 2 * MAXH + 1 nodes of a kind. */
struct added {
	unsigned n;
	struct chunk *c[2 * MAXH + 2];
};

static void chunks_undo(struct gm_itree *t, unsigned kind, struct added *a)
{
	while (a->n)
		chunk_release(t, kind, a->c[--a->n]);
}

/* Makes sure the free list of kind holds >= need slots, adding chunks if
 * not (listed in *a): one chunk of about 1/CHUNK_SHARE of the kind's
 * nodes, or, in a tree with fewer than CHUNK_SHARE * CHUNK_MIN of them,
 * one chunk per node short: there the free slots a grace period's
 * retirements leave behind would sit in part-used chunks for good (in a
 * small tree one spare inner node is a large share of the memory), while
 * a node of its own goes back to the allocator when it comes back.
 * -ENOMEM leaves everything as it was. */
static int chunk_reserve(struct gm_itree *t, unsigned kind, size_t need,
			 struct added *a)
{
	a->n = 0;
	if (t->free_count[kind] >= need)
		return 0;
	size_t missing = need - t->free_count[kind];
	size_t slots = (kind ? t->inners : t->leaves) / CHUNK_SHARE;
	size_t most = CHUNK_MAX_BYTES / node_size(kind);
	if (slots < CHUNK_MIN)
		slots = 1;
	else if (slots > most)
		slots = most;
	else if (slots < missing)
		slots = missing;
	for (size_t got = 0; got < missing; got += slots) {
		struct chunk *c = chunk_add(t, kind, (uint32_t)slots);
		if (!c) {
			chunks_undo(t, kind, a);
			return -ENOMEM;
		}
		a->c[a->n++] = c;
	}
	return 0;
}

/* A node's memory from the free list (the caller reserved it), header
 * zeroed but for home and level. Writer only. */
static struct itnode *node_alloc(struct gm_itree *t, unsigned level)
{
	unsigned kind = level ? 1 : 0;
	struct free_node *f = t->free_head[kind].next;
	free_list_unlink(t, kind, f);
	struct chunk *c = f->home;
	c->live++;
	struct itnode *n = (struct itnode *)f;
	memset(n, 0, sizeof(*n));
	n->home = c;
	n->level = (uint8_t)level;
	if (kind == 0 && t->free_count[0]) /* the next take finds it cached */
		prefetch_lines_w(t->free_head[0].next, sizeof(struct itleaf));
	return n;
}

/* Free slots a tree in RCU mode keeps in empty chunks rather than
 * releasing them: 1/16 of its nodes of the kind, so steady churn on a big
 * tree mostly reuses memory that came back from a grace period, while
 * the slots held beyond the live nodes stay a small share (a small tree
 * keeps none: there one spare inner node is a large share of the
 * memory). Without RCU a freed node is reusable at once: no spares. */
static inline size_t spare_slots(const struct gm_itree *t, unsigned kind)
{
	if (!t->rcu)
		return 0;
	return (kind ? t->inners : t->leaves) / 16;
}

/* Gives an unreachable node's memory back to its chunk, and the chunk to
 * the allocator once it holds no node (unless the tree keeps it as a
 * spare, see spare_slots). Writer only. */
static void node_free(struct gm_itree *t, void *n, unsigned kind)
{
	struct free_node *f = n;
	struct chunk *c = f->home;
	free_list_push(t, kind, f);
	if (--c->live == 0 && t->free_count[kind] > spare_slots(t, kind))
		chunk_release(t, kind, c);
}

/* Releases every chunk (destroy: no node is live any more). */
static void release_all_chunks(struct gm_itree *t)
{
	for (unsigned kind = 0; kind < 2; kind++) {
		struct free_node *head = &t->free_head[kind];
		while (head->next != head) {
			struct free_node *f = head->next;
			if (f->home->live == 0)
				chunk_release(t, kind, f->home);
			else /* cannot happen: a node was not given back */
				free_list_unlink(t, kind, f);
		}
	}
}

/* Takes back the nodes the deferred calls have made ready (RCU mode). */
static void collect_ready(struct gm_itree *t)
{
	for (unsigned kind = 0; kind < 2; kind++) {
		if (!atomic_load_explicit(&t->ready[kind], memory_order_relaxed))
			continue;
		struct free_node *f = atomic_exchange_explicit(&t->ready[kind], NULL,
							       memory_order_acquire);
		while (f) {
			struct free_node *next = f->next;
			node_free(t, f, kind);
			f = next;
		}
	}
}

static void free_subtree(struct gm_itree *t, struct itnode *n)
{
	if (n->level) {
		struct itinner *in = inner_of(n);
		for (unsigned i = 0; i < n->count; i++)
			free_subtree(t, gm_load_relaxed(&in->child[i]));
	}
	node_free(t, n, n->level ? 1 : 0);
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
	if (t->rec) { /* retired, and past the synchronize above */
		for (unsigned i = 0; i < t->rec->n; i++)
			node_free(t, t->rec->node[i], t->rec->node[i]->level ? 1 : 0);
		gm_alloc_release(t->alloc, t->rec, recycle_bytes(t->rec->cap));
	}
	/* waits for pending recycle calls (they fill ready) */
	gm_reclaim_destroy(&t->reclaim);
	collect_ready(t);
	release_all_chunks(t);
	gm_alloc_release(t->alloc, t, sizeof(*t));
}

/* Asks for every cache line of [p, p + bytes) at once, so a search that
 * probes several of them waits for memory once instead of once per probe. */
static inline __attribute__((always_inline)) void prefetch_span(const void *p, size_t bytes)
{
	const char *c = p;
	/* Nodes are 64-byte aligned, and every span asked for ends at or
	 * before a line boundary that this loop reaches (a leaf's keys end
	 * with the leaf, inner arrays are line-aligned): no extra tail line. */
	for (size_t off = 0; off < bytes; off += 64)
		__builtin_prefetch(c + off);
}

/* What the writer's search of n reads: an inner node's separators' `first`
 * column, or a whole leaf (order word, first, last, item). */
static inline __attribute__((always_inline)) void prefetch_for_route(const struct itnode *n, unsigned level)
{
	if (level) /* first[] and, right after it, child[] */
		prefetch_span(inner_of(n)->first,
			      sizeof(inner_of(n)->first) + sizeof(inner_of(n)->child));
	else
		prefetch_span(n, sizeof(struct itleaf));
}

/* ---- reading ----------------------------------------------------------- */

/* A reader arriving at node n (at `level`) asks for what it will read: a
 * leaf's first[] and last[] (item[] on hits); an inner node's prefix_max[]
 * (first_reaching), then first[i] and child[i] (adjacent arrays). */
static inline __attribute__((always_inline)) void prefetch_arrival(const struct itnode *n, unsigned level)
{
	if (level == 0) {
		prefetch_span(leaf_of(n)->first, 3 * sizeof(leaf_of(n)->first));
	} else {
		prefetch_span(inner_of(n)->prefix_max, sizeof(inner_of(n)->prefix_max));
		prefetch_span(inner_of(n)->first,
			      sizeof(inner_of(n)->first) + sizeof(inner_of(n)->child));
	}
}

/* A cursor arriving at a leaf copies the leaf's entries that overlap
 * [a, b] into it->hit[], in order, as one consistent snapshot; it->past_b
 * records that an entry started after b (nothing later can overlap). */
static void iter_snapshot(struct gm_itree_iter *it, const struct itleaf *lf)
{
	const uint64_t a = it->a, b = it->b;
	unsigned n;
	bool past;
	uint32_t seq;
	do {
		seq = leaf_read_begin(lf);
		uint64_t w = gm_load_acquire(&lf->order);
		uint64_t rest = w >> 4;
		n = 0;
		past = false;
		for (unsigned i = 0, cnt = order_count(w); i < cnt; i++, rest >>= 4) {
			unsigned s = (unsigned)rest & 15;
			uint64_t f = slot_load(&lf->first[s]);
			if (f > b) {
				past = true;
				break;
			}
			uint64_t l = slot_load(&lf->last[s]);
			if (l >= a)
				it->hit[n++] = (struct gm_itree_entry){
					f, l, (void *)slot_load(&lf->item[s])};
		}
	} while (!leaf_read_valid(lf, seq));
	it->nhits = (uint8_t)n;
	it->next_hit = 0;
	it->past_b = past;
}

/* idx[level] of an inner node a reverse walk has not started on yet */
#define IDX_FRESH 0xffu

static inline void iter_enter(struct gm_itree_iter *it, const struct itnode *n)
{
	unsigned level = n->level;
	it->node[level] = n;
	it->idx[level] = it->reverse ? IDX_FRESH : 0;
	prefetch_arrival(n, level);
	if (level == 0)
		iter_snapshot(it, leaf_of(n));
}

int gm_itree_iter_init(struct gm_itree_iter *it, const struct gm_itree *t,
		       uint64_t first, uint64_t last, unsigned flags)
{
	if (!it)
		return -EINVAL;
	it->a = first;
	it->b = last;
	it->level = -1;
	it->top = -1;
	it->reverse = flags & GM_ITER_REVERSE;
	if (!t || first > last || (flags & ~GM_ITER_REVERSE))
		return -EINVAL;
	const struct itnode *root = gm_load_acquire(&((struct gm_itree *)t)->root);
	if (!root)
		return 0;
	it->top = it->level = root->level;
	iter_enter(it, root);
	return 0;
}


/* First i with pm[i] >= a, over all FANOUT slots (unused ones hold
 * UINT64_MAX, so the answer is <= count): branch-free. Probes may see a
 * momentarily non-monotone array; see the top and below for why the answer
 * never skips a child holding a stable overlapping entry. */
static inline unsigned first_reaching(const _Atomic uint64_t *pm, uint64_t a)
{
	_Static_assert(FANOUT == 32, "first_reaching is unrolled for 32");
	/* Two rounds of independent loads instead of a chain of five: the
	 * block of eight, then the place inside it. Counting (rather than
	 * searching) keeps the answer safe on a non-monotone array: when it
	 * is i > 0, some pm[j] < a with j >= i - 1, which rules out children
	 * 0..j. */
	unsigned i = 8 * ((gm_load_relaxed(&pm[7]) < a) +
			  (gm_load_relaxed(&pm[15]) < a) +
			  (gm_load_relaxed(&pm[23]) < a));
	unsigned c = 0;
	for (unsigned j = 0; j < 8; j++)
		c += gm_load_relaxed(&pm[i + j]) < a;
	return i + c;
}

#if defined(__x86_64__) && !defined(GM_TSAN) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_SEARCH 1

/* AVX2 compares 64-bit lanes as signed only; unsigned values compare
 * the same way once their top bits are flipped. flipped_key(k) is k so
 * flipped in every lane, flipped4(v) the four words at v. */
__attribute__((target("avx2"), always_inline)) static inline __m256i
flipped_key(uint64_t k)
{
	return _mm256_set1_epi64x((long long)(k ^ (1ull << 63)));
}

__attribute__((target("avx2"), always_inline)) static inline __m256i
flipped4(const uint64_t *v)
{
	return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)v),
				_mm256_set1_epi64x(INT64_MIN));
}

/* #{j < FANOUT : v[j] < k} (unsigned) in one round of AVX2: eight
 * independent loads and compares, so the answer is ready one load latency
 * after the node arrives, where the scalar count needs two rounds (the
 * block of eight, then the place in it). The 32 lane masks are packed
 * into bytes (two per lane, in an order that counting does not mind) and
 * counted. */
__attribute__((target("avx2,popcnt"), always_inline)) static inline unsigned
count_below_avx2(const uint64_t *v, uint64_t k)
{
	_Static_assert(FANOUT == 32, "count_below_avx2 is unrolled for 32");
	const __m256i key = flipped_key(k);
	__m256i lt[8];
	for (unsigned j = 0; j < 8; j++)
		lt[j] = _mm256_cmpgt_epi64(key, flipped4(v + 4 * j));
	__m256i lo = _mm256_packs_epi16(_mm256_packs_epi32(lt[0], lt[1]),
					_mm256_packs_epi32(lt[2], lt[3]));
	__m256i hi = _mm256_packs_epi16(_mm256_packs_epi32(lt[4], lt[5]),
					_mm256_packs_epi32(lt[6], lt[7]));
	unsigned twice = (unsigned)__builtin_popcount((unsigned)_mm256_movemask_epi8(lo)) +
			 (unsigned)__builtin_popcount((unsigned)_mm256_movemask_epi8(hi));
	return twice / 2;
}

/* first_reaching in AVX2 (a full count, so the argument above holds). The
 * vector loads read prefix_max[] without C11 atomics: on x86-64 each
 * aligned 8-byte element of a vector load is read whole (no tearing), so
 * every value seen is one the writer stored, which is all the relaxed
 * loads above promise. (TSan builds take the scalar path, which TSan can
 * see.) */
__attribute__((target("avx2,popcnt"), always_inline)) static inline unsigned
first_reaching_avx2(const _Atomic uint64_t *pm, uint64_t a)
{
	return count_below_avx2((const uint64_t *)(const void *)pm, a);
}
#endif

/* The cursor's step, shared by iter_next and iter_fill. */
static inline __attribute__((always_inline)) bool
iter_step(struct gm_itree_iter *it, struct gm_itree_entry *out)
{
	const uint64_t a = it->a, b = it->b;
	int level = it->level;
	if (level < 0)
		return false;
	while (level <= it->top) {
		const struct itnode *n = it->node[level];
		unsigned i = it->idx[level];
		if (level == 0) {
			if (it->next_hit < it->nhits) {
				*out = it->hit[it->next_hit++];
				it->level = 0;
				return true;
			}
			if (it->past_b)
				goto finished; /* all later keys start after b */
			level++; /* leaf done: back to its parent's next child */
			continue;
		}
		const struct itinner *in = inner_of(n);
		unsigned count = n->count;
		if (i == 0) { /* first child whose prefix max reaches a */
			i = first_reaching(in->prefix_max, a);
		} else {
			while (i < count && gm_load_relaxed(&in->max_last[i]) < a)
				i++;
		}
		/* sep_i <= every key in children >= i: none can start <= b */
		if (i == count || in->first[i] > b) {
			if (i < count)
				goto finished;
			level++;
			continue;
		}
		it->idx[level] = (uint8_t)(i + 1);
		level--;
		iter_enter(it, gm_load_acquire(&in->child[i]));
	}
finished:
	it->level = -1;
	return false;
}

/*
 * The reverse step: children right to left. A child whose separator starts
 * after b holds nothing that overlaps, nor does one whose max `last` is
 * below a; every other child is visited, since an entry far to the left may
 * reach b. idx[level] is the number of children still to look at.
 */
static bool iter_step_rev(struct gm_itree_iter *it, struct gm_itree_entry *out)
{
	const uint64_t a = it->a, b = it->b;
	int level = it->level;
	if (level < 0)
		return false;
	while (level <= it->top) {
		const struct itnode *n = it->node[level];
		if (level == 0) {
			if (it->next_hit < it->nhits) {
				*out = it->hit[it->nhits - 1u - it->next_hit++];
				it->level = 0;
				return true;
			}
			level++;
			continue;
		}
		const struct itinner *in = inner_of(n);
		unsigned i = it->idx[level];
		if (i == IDX_FRESH)
			for (i = 0; i < n->count && in->first[i] <= b;)
				i++;
		while (i > 0 && gm_load_relaxed(&in->max_last[i - 1]) < a)
			i--;
		if (i == 0) {
			level++;
			continue;
		}
		it->idx[level] = (uint8_t)(i - 1);
		level--;
		iter_enter(it, gm_load_acquire(&in->child[i - 1]));
	}
	it->level = -1;
	return false;
}

int gm_itree_iter_next(struct gm_itree_iter *it, struct gm_itree_entry *out)
{
	if (GM_UNLIKELY(!it || !out))
		return -EINVAL;
	if (it->reverse)
		return iter_step_rev(it, out) ? 0 : -ENOENT;
	return iter_step(it, out) ? 0 : -ENOENT;
}

/* Copies the rest of the current leaf's hits into out[k..max) with no
 * per-hit return through iter_step. Returns the new k; the cursor stays
 * exactly where iter_step would have left it. */
static inline size_t leaf_drain(struct gm_itree_iter *it,
				struct gm_itree_entry *out, size_t k, size_t max)
{
	size_t take = (size_t)(it->nhits - it->next_hit);
	if (take > max - k)
		take = max - k;
	memcpy(&out[k], &it->hit[it->next_hit], take * sizeof(*out));
	it->next_hit = (uint8_t)(it->next_hit + take);
	k += take;
	if (it->next_hit == it->nhits && (it->past_b || it->top == 0))
		it->level = -1; /* nothing later can overlap, or nothing above */
	return k;
}

int64_t gm_itree_iter_fill(struct gm_itree_iter *it, struct gm_itree_entry *out,
			   size_t max)
{
	size_t k = 0;
	if (!it || (max && !out) || max > (size_t)INT64_MAX)
		return -EINVAL;
	if (it->reverse) {
		while (k < max && iter_step_rev(it, &out[k]))
			k++;
		return (int64_t)k;
	}
	while (k < max) {
		if (it->level == 0) {
			k = leaf_drain(it, out, k, max);
			if (k == max || it->level < 0)
				break;
		}
		if (!iter_step(it, &out[k]))
			break;
		k++;
	}
	return (int64_t)k;
}

/* One leaf's part of gm_itree_fill: appends the items of the entries
 * from logical position i on that overlap [a, b] (counting past max).
 * Returns false once an entry starts after b (nothing later can overlap). */
static inline bool leaf_collect(const struct itleaf *lf, uint64_t w,
				unsigned i, uint64_t a, uint64_t b,
				void **items, size_t max, size_t *k)
{
	uint64_t rest = (w >> 4) >> (4 * i);
	for (unsigned cnt = order_count(w); i < cnt; i++, rest >>= 4) {
		unsigned s = (unsigned)rest & 15;
		if (slot_load(&lf->first[s]) > b)
			return false;
		if (slot_load(&lf->last[s]) >= a) {
			if (*k < max)
				items[*k] = (void *)slot_load(&lf->item[s]);
			++*k;
		}
	}
	return true;
}

/* leaf_collect over a whole leaf (w: its order word, loaded with acquire). */
static inline __attribute__((always_inline)) bool
leaf_collect_all(const struct itleaf *lf, uint64_t w, uint64_t a, uint64_t b,
		 void **items, size_t max, size_t *k)
{
	return leaf_collect(lf, w, 0, a, b, items, max, k);
}

#ifdef HAVE_AVX2_SEARCH
/* True if physical slot s is among the cnt slots order word w lists: a
 * zero nibble in (w's slot list) xor (s in every nibble). The usual
 * zero-byte test, on nibbles: its only false alarms lie above a true zero,
 * so the lowest cnt nibbles answer exactly. */
static inline bool order_lists(uint64_t w, unsigned s)
{
	const uint64_t ones = 0x111111111111111ull; /* LEAF_MAX nibbles */
	uint64_t x = (w >> 4) ^ (ones * s);
	uint64_t zero = (x - ones) & ~x & (ones << 3);
	return (zero & (~0ull >> (64 - 4 * order_count(w)))) != 0;
}

/* leaf_collect_all in AVX2: compares all 15 physical slots with [a, b] at
 * once (no walk of the order word, no branch per entry). When at most one
 * slot overlaps and the order word lists it, that is the leaf's one hit;
 * two or more candidates take the ordered walk. Slots the order word does
 * not list (free: maybe being rewritten by the writer right now) are read
 * too but never reported: the test above drops them. The leaf ends the
 * query if its last entry starts after b. */
__attribute__((target("avx2,popcnt"), always_inline)) static inline bool
leaf_collect_avx2(const struct itleaf *lf, uint64_t w, uint64_t a, uint64_t b,
		  void **items, size_t max, size_t *k)
{
	_Static_assert(LEAF_MAX < 16, "a leaf's first[] and last[] are read as 16 words");
	const __m256i va = flipped_key(a), vb = flipped_key(b);
	unsigned after = 0, before = 0; /* slots with first > b, last < a */
	for (unsigned j = 0; j < 4; j++) {
		__m256i f = _mm256_cmpgt_epi64(flipped4(lf->first + 4 * j), vb);
		__m256i l = _mm256_cmpgt_epi64(va, flipped4(lf->last + 4 * j));
		after |= (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(f)) << (4 * j);
		before |= (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(l)) << (4 * j);
	}
	unsigned hit = ~(after | before) & ((1u << LEAF_MAX) - 1);
	if (GM_UNLIKELY(order_count(w) == 0)) /* never published; defensive */
		return true;
	if (hit & (hit - 1))
		return leaf_collect(lf, w, 0, a, b, items, max, k);
	if (hit) {
		unsigned s = (unsigned)__builtin_ctz(hit);
		if (order_lists(w, s)) {
			if (*k < max)
				items[*k] = (void *)slot_load(&lf->item[s]);
			++*k;
		}
	}
	return !(after >> order_slot(w, order_count(w) - 1) & 1);
}
#endif

typedef bool leaf_scan_fn(const struct itleaf *, uint64_t, uint64_t, uint64_t,
			  void **, size_t, size_t *);

struct leaf_scan { /* a leaf's part of gm_itree_fill, done */
	size_t k;  /* entries counted so far */
	bool more; /* later leaves may still overlap */
};

/* collect_leaf's retries: reads the leaf from k until no slot was
 * rewritten during the read (rare; out of line, to keep the common path
 * lean). */
static __attribute__((noinline)) struct leaf_scan
collect_leaf_again(const struct itleaf *lf, uint64_t a, uint64_t b,
		   void **items, size_t max, size_t k, leaf_scan_fn *leaf)
{
	for (;;) {
		size_t kk = k;
		uint32_t seq = leaf_read_begin(lf);
		bool more = leaf(lf, gm_load_acquire(&lf->order), a, b, items, max, &kk);
		if (leaf_read_valid(lf, seq))
			return (struct leaf_scan){kk, more};
	}
}

/* One leaf's part of gm_itree_fill, as one consistent snapshot: if a
 * slot was rewritten meanwhile, the leaf is read again (and its items
 * written again from the same k). Returns `leaf`'s answer. */
static inline __attribute__((always_inline)) bool
collect_leaf(const struct itleaf *lf, uint64_t a, uint64_t b, void **items,
	     size_t max, size_t *k, leaf_scan_fn *leaf)
{
	size_t kk = *k;
	uint32_t seq = leaf_read_begin(lf);
	bool more = leaf(lf, gm_load_acquire(&lf->order), a, b, items, max, &kk);
	if (GM_UNLIKELY(!leaf_read_valid(lf, seq))) {
		struct leaf_scan r = collect_leaf_again(lf, a, b, items, max, *k, leaf);
		kk = r.k;
		more = r.more;
	}
	*k = kk;
	return more;
}

/* gm_itree_fill below a root inner node (out of line, so the one-leaf
 * path needs no stack frame): the walk of iter_step, with the cursor in
 * registers and locals. at[level] is the inner node being walked at that
 * level, next[level] the next child to consider there. */
static inline __attribute__((always_inline)) size_t
collect_walk(const struct itnode *root, uint64_t a, uint64_t b, void **items,
	     size_t max, unsigned (*reach)(const _Atomic uint64_t *, uint64_t),
	     leaf_scan_fn *leaf)
{
	const struct itnode *at[MAXH];
	unsigned next[MAXH];
	const unsigned top = root->level;
	const struct itnode *n = root;
	unsigned level = top;
	size_t k = 0;
	for (;;) {
		/* down: the first child whose subtree reaches a */
		while (level > 0) {
			const struct itinner *in = inner_of(n);
			unsigned i = reach(in->prefix_max, a);
			if (i >= n->count)
				goto up;
			if (in->first[i] > b)
				return k; /* later children all start after b */
			at[level] = n;
			next[level] = i + 1;
			n = gm_load_acquire(&in->child[i]);
			level--;
			prefetch_arrival(n, level);
		}
		if (!collect_leaf(leaf_of(n), a, b, items, max, &k, leaf))
			return k;
up:
		/* up: the next sibling subtree that reaches a */
		for (;;) {
			if (++level > top)
				return k;
			const struct itinner *in = inner_of(at[level]);
			unsigned i = next[level], count = at[level]->count;
			/* first[] (prefetched on arrival) before max_last[]:
			 * the walk usually ends at a child starting after b */
			for (; i < count; i++) {
				if (in->first[i] > b)
					return k;
				if (gm_load_relaxed(&in->max_last[i]) >= a)
					break;
			}
			if (i == count)
				continue;
			next[level] = i + 1;
			n = gm_load_acquire(&in->child[i]);
			level--;
			prefetch_arrival(n, level);
			break;
		}
	}
}

static __attribute__((noinline)) size_t
collect_deep(const struct itnode *root, uint64_t a, uint64_t b, void **items,
	     size_t max)
{
	return collect_walk(root, a, b, items, max, first_reaching, leaf_collect_all);
}

#ifdef HAVE_AVX2_SEARCH
static __attribute__((noinline, target("avx2,popcnt"))) size_t
collect_deep_avx2(const struct itnode *root, uint64_t a, uint64_t b,
		  void **items, size_t max)
{
	return collect_walk(root, a, b, items, max, first_reaching_avx2,
			    leaf_collect_avx2);
}
#endif

int64_t gm_itree_fill(const struct gm_itree *t, uint64_t a, uint64_t b,
		      void **items, size_t max)
{
	if (GM_UNLIKELY(!t || a > b || (max && !items)))
		return -EINVAL;
	const struct itnode *root = gm_load_acquire(&((struct gm_itree *)t)->root);
	if (!root)
		return 0;
	if (root->level) {
#ifdef HAVE_AVX2_SEARCH
		if (gm_cpu_avx2_)
			return (int64_t)collect_deep_avx2(root, a, b, items, max);
#endif
		return (int64_t)collect_deep(root, a, b, items, max);
	}
	/* small trees: one flat scan, no cursor */
	size_t k = 0;
	collect_leaf(leaf_of(root), a, b, items, max, &k, leaf_collect_all);
	return (int64_t)k;
}

uint64_t gm_itree_count(const struct gm_itree *t)
{
	if (!t)
		return 0;
	return atomic_load_explicit(&((struct gm_itree *)t)->count,
				    memory_order_relaxed);
}

/* ---- writing: descend, plan, allocate, execute ------------------------- */

/* What happens to the path node at one level. */
enum outcome {
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
	unsigned need[2];    /* nodes to allocate: [0] leaves, [1] inner */
	unsigned retire;     /* nodes that will be retired */
};

struct pool {
	struct added added[2];  /* chunks added for this write */
	struct recycle *rec;    /* a new recycle batch, or NULL */
};

#define SLOTS (2 * FANOUT + 1)

/* #{j : a[j] < kf} over FANOUT sorted values, branch-free (inner nodes pad
 * unused separators with UINT64_MAX). */
static inline unsigned count_below_fanout(const uint64_t *a, uint64_t kf)
{
	_Static_assert(FANOUT == 32, "count_below_fanout is unrolled for 32");
	/* the block of eight, then the place in it: two rounds of
	 * independent loads rather than a chain of five */
	unsigned base = 8 * ((a[7] < kf) + (a[15] < kf) + (a[23] < kf));
	unsigned c = 0;
	for (unsigned j = 0; j < 8; j++)
		c += a[base + j] < kf;
	return base + c;
}

/* Inner node: the child whose range holds k (largest i with sep_i <= k):
 * the last separator whose `first` is below k.first (c of them, counted by
 * `below`), then ties on `first` settled with full key compares. */
static inline __attribute__((always_inline)) unsigned
route_with(const struct itnode *n, struct key k, unsigned c)
{
	const struct itinner *in = inner_of(n);
	unsigned i = c ? c - 1 : 0;
	while (i + 1 < n->count && in->first[i + 1] == k.first &&
	       key_cmp(k, node_key(n, i + 1)) >= 0)
		i++;
	return i;
}

/* Leaf: first logical position whose key is >= k (j entries have a
 * smaller `first`, then ties on `first` settled with full key compares);
 * *found if it equals k. */
static inline __attribute__((always_inline)) unsigned
leaf_lower_bound_with(const struct itnode *n, struct key k, unsigned j,
		      bool *found)
{
	const struct itleaf *lf = leaf_of(n);
	uint64_t w = leaf_order(n);
	unsigned cnt = order_count(w);
	while (j < cnt && lf->first[order_slot(w, j)] == k.first &&
	       key_cmp(node_key(n, j), k) < 0)
		j++;
	*found = j < cnt && key_cmp(node_key(n, j), k) == 0;
	return j;
}

/* #{live entries of leaf n whose first < kf}: a count over all live keys,
 * independent loads, no chain of dependent probes (the leaf's lines were
 * prefetched together). */
static inline unsigned leaf_count_below(const struct itnode *n, uint64_t kf)
{
	const struct itleaf *lf = leaf_of(n);
	uint64_t w = leaf_order(n);
	unsigned cnt = order_count(w), j = 0;
	uint64_t rest = w >> 4;
	for (unsigned i = 0; i < cnt; i++, rest >>= 4)
		j += lf->first[rest & 15] < kf;
	return j;
}

/* The writer's walk from the root to k's leaf, recording the path; count
 * finds #{separators whose first < k.first} in an inner node. */
static inline __attribute__((always_inline)) void
descend_with(const struct gm_itree *t, struct key k, struct wpath *p,
	     unsigned (*count)(const uint64_t *, uint64_t),
	     unsigned (*leaf_count)(const struct itnode *, uint64_t), bool *found)
{
	struct itnode *n = gm_load_relaxed(&((struct gm_itree *)t)->root);
	p->height = t->height;
	for (unsigned level = t->height - 1; level > 0; level--) {
		prefetch_for_route(n, level);
		unsigned i = route_with(n, k, count(inner_of(n)->first, k.first));
		/* the edit below reads (and may update) this summary */
		__builtin_prefetch(&inner_of(n)->max_last[i]);
		p->node[level] = n;
		p->idx[level] = i;
		n = gm_load_relaxed(&inner_of(n)->child[i]);
	}
	prefetch_for_route(n, 0);
	p->node[0] = n;
	p->idx[0] = leaf_lower_bound_with(n, k, leaf_count(n, k.first), found);
}

static __attribute__((noinline)) void
descend_scalar(const struct gm_itree *t, struct key k, struct wpath *p,
	       bool *found)
{
	descend_with(t, k, p, count_below_fanout, leaf_count_below, found);
}

#ifdef HAVE_AVX2_SEARCH
/* leaf_count_below in AVX2: compares first[] of all 15 physical slots
 * (and one word past them, which the mask drops) at once and counts the
 * live ones below kf, with no walk of the order word. */
__attribute__((target("avx2,popcnt"), always_inline)) static inline unsigned
leaf_count_below_avx2(const struct itnode *n, uint64_t kf)
{
	_Static_assert(LEAF_MAX < 16, "a leaf's first[] is read as 16 words");
	const uint64_t *v = leaf_of(n)->first;
	const __m256i key = flipped_key(kf);
	__m256i lt[4];
	for (unsigned j = 0; j < 4; j++)
		lt[j] = _mm256_cmpgt_epi64(key, flipped4(v + 4 * j));
	unsigned below = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(lt[0])) |
			 (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(lt[1])) << 4 |
			 (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(lt[2])) << 8 |
			 (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(lt[3])) << 12;
	return (unsigned)__builtin_popcount(below & n->live);
}

static __attribute__((noinline, target("avx2,popcnt"))) void
descend_avx2(const struct gm_itree *t, struct key k, struct wpath *p,
	     bool *found)
{
	descend_with(t, k, p, count_below_avx2, leaf_count_below_avx2, found);
}
#endif

/* Walks from the root to k's leaf (path in *p, p->idx[0] = k's position
 * in the leaf, *found if k is there). The tree is not empty. */
static inline void descend(const struct gm_itree *t, struct key k,
			   struct wpath *p, bool *found)
{
#ifdef HAVE_AVX2_SEARCH
	if (gm_cpu_avx2_) {
		descend_avx2(t, k, p, found);
		return;
	}
#endif
	descend_scalar(t, k, p, found);
}

/* True if the leaf takes the edit in place, decided from the leaf alone
 * (a non-root leaf holds >= NODE_MIN entries, so an insert never leaves it
 * too empty): a remove that leaves it full enough, an insert that fits
 * (a free slot is reusable at once, see "Slot reuse"). Else make_plan. */
static inline bool edits_in_place(const struct wpath *p, int delta)
{
	const struct itnode *lf = p->node[0];
	if (delta < 0)
		return lf->count - 1 >= (p->height == 1 ? 1 : NODE_MIN);
	return lf->count < LEAF_MAX;
}

/* An overflowing node shares its entries with a sibling instead of
 * splitting when the two then keep at least this many free slots each:
 * nodes stay fuller (a split leaves two half-empty ones), at the same
 * copying price (two nodes and the parent). Runs of ascending inserts
 * still split (their full left sibling has no room). */
#define REDIST_ROOM 2

/* The sibling an overflowing node at path `level` (c entries after the
 * edit) shares with, or -1 when a split is better: the emptier neighbour,
 * if the two fit with REDIST_ROOM free slots each. */
static int overflow_sibling(const struct wpath *p, unsigned level, int c)
{
	const struct itinner *par = inner_of(p->node[level + 1]);
	unsigned i = p->idx[level + 1], count = par->h.count;
	int best = -1, bc = 0;
	for (int s = (int)i - 1; s <= (int)i + 1; s += 2) {
		if (s < 0 || (unsigned)s >= count)
			continue;
		int sc = gm_load_relaxed(&par->child[s])->count;
		if (best < 0 || sc < bc)
			best = s, bc = sc;
	}
	int cap = (int)node_cap(level);
	return best >= 0 && c + bc <= 2 * (cap - REDIST_ROOM) ? best : -1;
}

/* Decides, from counts alone, what each level of the path becomes when the
 * leaf gains (delta = +1) or loses (-1) an entry that it cannot take in
 * place, and what that needs. */
static int make_plan(const struct wpath *p, int delta, struct plan *pl)
{
	unsigned h = p->height;
	int c = p->node[0]->count + delta;
	pl->need[0] = pl->need[1] = 0;
	pl->retire = 0;
	for (unsigned level = 0; level < h; level++) {
		bool is_root = level == h - 1;
		unsigned kind = level ? 1 : 0;
		int cap = (int)node_cap(level);
		int minc = is_root ? (level ? 2 : 1) : NODE_MIN;
		int share = c > cap && !is_root ? overflow_sibling(p, level, c) : -1;
		if (share >= 0) {
			pl->out[level] = OUT_REDIST;
			pl->sib[level] = (unsigned)share;
			pl->need[kind] += 2;
			pl->retire += 2;
			c = p->node[level + 1]->count; /* parent copied, new separators */
			continue;
		}
		if (c > cap) {
			pl->out[level] = OUT_SPLIT;
			pl->need[kind] += 2;
			pl->retire++;
			if (is_root) {
				if (h == MAXH)
					return -ENOSPC;
				pl->need[1]++; /* the new root */
				return 0;
			}
			c = p->node[level + 1]->count + 1;
			continue;
		}
		if (c >= minc) { /* (never the leaf: see edits_in_place) */
			pl->out[level] = OUT_REPLACE;
			pl->need[kind]++;
			pl->retire++;
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
		if (c + sc <= cap) {
			pl->out[level] = OUT_MERGE;
			pl->need[kind]++;
			c = par->h.count - 1;
		} else {
			pl->out[level] = OUT_REDIST;
			pl->need[kind] += 2;
			c = par->h.count; /* parent is copied with new separators */
		}
	}
	return 0; /* not reached: the root level always decides */
}

/* Runs after a grace period (on the RCU worker thread): the batch's nodes are
 * unreachable now, so they go on the ready stacks; the writer takes them
 * back into their chunks (collect_ready). */
static void recycle_done(struct gm_deferred *d)
{
	struct recycle *rec = (struct recycle *)d;
	struct gm_itree *t = rec->tree;
	for (unsigned i = 0; i < rec->n; i++) {
		unsigned kind = rec->node[i]->level ? 1 : 0;
		struct free_node *f = (struct free_node *)rec->node[i];
		gm_stack_push(&t->ready[kind], f, next);
	}
	gm_alloc_release(t->alloc, rec, recycle_bytes(rec->cap));
}

/* Gives back what pool_fill added when a later step fails. */
static void pool_undo(struct gm_itree *t, struct pool *po)
{
	for (unsigned kind = 0; kind < 2; kind++)
		chunks_undo(t, kind, &po->added[kind]);
	if (po->rec)
		gm_alloc_release(t->alloc, po->rec, recycle_bytes(po->rec->cap));
}

static struct recycle *recycle_new(struct gm_itree *t, unsigned cap)
{
	struct recycle *rec = gm_alloc_mem(t->alloc, recycle_bytes(cap),
					   _Alignof(struct recycle));
	if (rec) {
		rec->call.fn = recycle_done;
		rec->tree = t;
		rec->n = 0;
		rec->cap = cap;
	}
	return rec;
}

/* Reserves everything the plan needs: free node slots, room in the
 * recycle batch for the retired nodes (RCU mode) and retire slots.
 * -ENOMEM leaves nothing behind. */
static int pool_fill(struct gm_itree *t, const struct plan *pl,
		     struct pool *po)
{
	po->added[0].n = po->added[1].n = 0;
	po->rec = NULL;
	if (chunk_reserve(t, 0, pl->need[0], &po->added[0]) ||
	    chunk_reserve(t, 1, pl->need[1], &po->added[1]))
		goto fail;
	if (t->rcu && pl->retire &&
	    (!t->rec || t->rec->n + pl->retire > t->rec->cap)) {
		po->rec = recycle_new(t, pl->retire);
		if (!po->rec)
			goto fail;
	}
	/* deferring the batch po->rec replaces, and then this write's */
	if (t->rcu && pl->retire && gm_reclaim_reserve(&t->reclaim, 2))
		goto fail;
	if (po->rec) { /* nothing can fail from here on */
		if (t->rec && t->rec->n)
			gm_reclaim_defer(&t->reclaim, &t->rec->call);
		else if (t->rec)
			gm_alloc_release(t->alloc, t->rec, recycle_bytes(t->rec->cap));
		t->rec = po->rec;
	}
	return 0;
fail:
	pool_undo(t, po);
	return -ENOMEM;
}

/* A new node at level from the reserved free slots, counted. */
static struct itnode *take_node(struct gm_itree *t, unsigned level)
{
	struct itnode *n = node_alloc(t, level);
	if (level)
		t->inners++;
	else
		t->leaves++;
	return n;
}

/* Retires n: in RCU mode into the recycle batch (pool_fill made room; the
 * write's end sends it off, recycle_prepare), its memory back to its
 * chunk after a grace period; without RCU at once. */
static void retire_node(struct gm_itree *t, struct itnode *n)
{
	unsigned kind = n->level ? 1 : 0;
	if (kind)
		t->inners--;
	else
		t->leaves--;
	if (!t->rcu) {
		node_free(t, n, kind);
		return;
	}
	t->rec->node[t->rec->n++] = n; /* room: see pool_fill */
}

/* After a successful write (RCU mode): takes back ready nodes, and sends
 * the nodes this write retired on their way at once (deferred, and the
 * reclaim batch holding the call queued for its grace period), so retired
 * memory waits one grace period, not until batches fill. A write that
 * retires allocates the next recycle batch itself (pool_fill). Best
 * effort: if the reclaim slot cannot be had, the batch waits for the next
 * write. */
static inline void recycle_prepare(struct gm_itree *t)
{
	if (!t->rcu)
		return;
	if (GM_UNLIKELY(gm_load_relaxed(&t->ready[0]) || gm_load_relaxed(&t->ready[1])))
		collect_ready(t);
	struct recycle *rec = t->rec;
	if (!rec || !rec->n || gm_reclaim_reserve(&t->reclaim, 1))
		return;
	t->rec = NULL;
	gm_reclaim_defer(&t->reclaim, &rec->call);
	gm_reclaim_flush(&t->reclaim);
}

/* The live entries of n, in key order. */
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

/* Fills an unpublished node (its level set) with cnt entries. */
static void scatter(struct itnode *n, const struct slot *s, unsigned cnt)
{
	n->count = (uint8_t)cnt;
	if (n->level == 0) {
		struct itleaf *lf = leaf_of(n);
		for (unsigned i = 0; i < cnt; i++) {
			lf->first[i] = s[i].k.first;
			lf->last[i] = s[i].k.last;
			lf->item[i] = s[i].k.item;
		}
		n->live = (uint16_t)((1u << cnt) - 1);
		atomic_init(&lf->order, order_identity(cnt));
		return;
	}
	struct itinner *in = inner_of(n);
	uint64_t run = 0;
	for (unsigned i = 0; i < cnt; i++) {
		in->first[i] = s[i].k.first;
		in->last[i] = s[i].k.last;
		in->item[i] = s[i].k.item;
		run = s[i].max_last > run ? s[i].max_last : run;
		atomic_init(&in->max_last[i], s[i].max_last);
		atomic_init(&in->prefix_max[i], run);
		atomic_init(&in->child[i], s[i].child);
	}
	for (unsigned i = cnt; i < FANOUT; i++) { /* padding for the searches */
		in->first[i] = UINT64_MAX;
		atomic_init(&in->prefix_max[i], UINT64_MAX);
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

/* Sets max_last_i of a published (or new) inner node and refreshes the
 * prefix maxima from i on (they stop changing once one is unchanged). */
static void set_max(struct itinner *in, unsigned i, uint64_t v)
{
	gm_store_relaxed(&in->max_last[i], v);
	uint64_t run = i ? gm_load_relaxed(&in->prefix_max[i - 1]) : 0;
	for (unsigned j = i; j < in->h.count; j++) {
		uint64_t ml = gm_load_relaxed(&in->max_last[j]);
		run = ml > run ? ml : run;
		if (j > i && gm_load_relaxed(&in->prefix_max[j]) == run)
			break;
		gm_store_relaxed(&in->prefix_max[j], run);
	}
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
		set_max(par, i, m);
	}
}

/* After an in-place leaf insert (delta > 0) or remove of an entry whose
 * last is klast: the summaries above change only if klast raises a max, or
 * if the removed entry was the max (then recomputed exactly). */
static void fix_max_after_edit(const struct wpath *p, int delta, uint64_t klast)
{
	for (unsigned level = 0; level + 1 < p->height; level++) {
		struct itinner *par = inner_of(p->node[level + 1]);
		unsigned i = p->idx[level + 1];
		uint64_t old = gm_load_relaxed(&par->max_last[i]);
		if (delta > 0 ? klast <= old : klast < old)
			return;
		uint64_t m = delta > 0 ? klast : node_max(p->node[level]);
		if (m == old)
			return;
		set_max(par, i, m);
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
	set_max(par, i, node_max(n));
	gm_store_release(&par->child[i], n);
	fix_max_above(p, level + 1);
}

/* Where to cut n (> capacity) entries: in half, except that an insert at
 * either end of a node leaves the old node nearly full, so runs of
 * ascending (or descending) inserts, common for memslots, fill nodes to
 * ~80% instead of 50%. */
static unsigned split_point(unsigned n, int editpos)
{
	if (editpos == (int)n - 1)
		return n - NODE_MIN;
	if (editpos == 0)
		return NODE_MIN;
	return n / 2;
}

/*
 * Carries out the plan bottom-up. buf[0] holds the leaf's entries after the
 * edit (n of them; the edited position is editpos, -1 for a removal).
 * Replaced nodes are retired only at the end, so the path stays readable
 * even without RCU (where retiring frees at once).
 */
static void execute(struct gm_itree *t, const struct wpath *p,
		    const struct plan *pl, struct slot buf[2][SLOTS], unsigned n,
		    int editpos)
{
	struct slot *cur = buf[0], *next = buf[1], *swap;
	struct itnode *dead[2 * MAXH + 2];
	unsigned ndead = 0;
	for (unsigned level = 0;; level++) {
		struct itnode *old = p->node[level];
		dead[ndead++] = old;
		if (pl->out[level] == OUT_REPLACE) {
			struct itnode *nn = take_node(t, level);
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
			struct itnode *l = take_node(t, level);
			struct itnode *r = take_node(t, level);
			scatter(l, cur, m);
			scatter(r, cur + m, n - m);
			struct key sep = cur[m].k;
			if (level == p->height - 1) { /* the root split */
				struct itnode *root = take_node(t, level + 1);
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
			n = gather(&par->h, cur);
			if (pl->out[level] == OUT_MERGE) {
				struct itnode *nn = take_node(t, level);
				scatter(nn, next, cn);
				cur[lo] = slot_for(cur[lo].k, nn);
				delete_slot(cur, &n, lo + 1);
			} else {
				unsigned m = cn / 2;
				struct itnode *l = take_node(t, level);
				struct itnode *r = take_node(t, level);
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

/* Insert into a published leaf without copying (it has a free slot: it
 * holds fewer than LEAF_MAX): bump seq, write the slot, then publish a new
 * order word (release) that lists it. See "Slot reuse" at the top. */
static void leaf_insert_inplace(struct itnode *n, unsigned pos, struct key k)
{
	struct itleaf *lf = leaf_of(n);
	unsigned phys = (unsigned)__builtin_ctz(~(unsigned)n->live);
	gm_store_release(&n->seq, gm_load_relaxed(&n->seq) + 1);
	slot_fence(memory_order_release);
	slot_store(&lf->first[phys], k.first);
	slot_store(&lf->last[phys], k.last);
	slot_store(&lf->item[phys], k.item);
	gm_store_release(&lf->order, order_insert(leaf_order(n), pos, phys));
	n->count++;
	n->live |= (uint16_t)(1u << phys);
}

/* Remove from a published leaf: a new order word without the entry. The
 * slot keeps its contents until an insert reuses it. */
static void leaf_delete_inplace(struct itnode *n, unsigned pos)
{
	struct itleaf *lf = leaf_of(n);
	uint64_t w = leaf_order(n);
	n->live &= (uint16_t)~(1u << order_slot(w, pos));
	gm_store_release(&lf->order, order_remove(w, pos));
	n->count--;
}

static int insert_first(struct gm_itree *t, struct key k)
{
	struct added added;
	if (chunk_reserve(t, 0, 1, &added))
		return -ENOMEM;
	struct itnode *n = take_node(t, 0);
	atomic_init(&leaf_of(n)->order, 0);
	leaf_insert_inplace(n, 0, k);
	t->height = 1;
	gm_store_release(&t->root, n);
	return 0;
}

/* apply's path when the leaf cannot take the edit in place: plan,
 * allocate, execute (out of line: its buffers make a frame of several
 * KiB, which the in-place path should not pay for). */
static __attribute__((noinline)) int
apply_planned(struct gm_itree *t, struct wpath *p, struct key k, int delta)
{
	unsigned pos = p->idx[0];
	struct plan pl;
	int rc = make_plan(p, delta, &pl);
	if (rc)
		return rc;
	struct pool po;
	rc = pool_fill(t, &pl, &po);
	if (rc)
		return rc;
	struct slot buf[2][SLOTS];
	unsigned n = gather(p->node[0], buf[0]);
	if (delta > 0)
		insert_slot(buf[0], &n, pos, (struct slot){.k = k});
	else
		delete_slot(buf[0], &n, pos);
	execute(t, p, &pl, buf, n, delta > 0 ? (int)pos : -1);
	return 0;
}

/* Shared tail of insert and remove once the leaf position is known. */
static inline int apply(struct gm_itree *t, struct wpath *p, struct key k,
			int delta)
{
	if (!edits_in_place(p, delta))
		return apply_planned(t, p, k, delta);
	/* the common case, without a plan */
	if (delta > 0)
		leaf_insert_inplace(p->node[0], p->idx[0], k);
	else
		leaf_delete_inplace(p->node[0], p->idx[0]);
	fix_max_after_edit(p, delta, k.last);
	return 0;
}

/* count += delta: the writer is the only one changing it, so a relaxed
 * load and store (readers load it relaxed), not a locked read-modify-
 * write. */
static inline void count_add(struct gm_itree *t, int delta)
{
	gm_store_relaxed(&t->count, gm_load_relaxed(&t->count) + (size_t)(ptrdiff_t)delta);
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
		descend(t, k, &p, &found);
		if (found)
			return -EEXIST;
		rc = apply(t, &p, k, +1);
	}
	if (rc == 0) {
		count_add(t, +1);
		recycle_prepare(t);
	}
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
	descend(t, k, &p, &found);
	if (!found)
		return -ENOENT;
	int rc = apply(t, &p, k, -1);
	if (rc == 0) {
		count_add(t, -1);
		recycle_prepare(t);
	}
	return rc;
}

/* ---- stats and validation ---------------------------------------------- */

static void stats_walk(const struct itnode *n, struct gm_itree_stats *s)
{
	if (n->level == 0) {
		s->leaf_nodes++;
		s->entries += order_count(leaf_order(n));
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
	s->node_bytes = s->leaf_nodes * sizeof(struct itleaf) +
			s->inner_nodes * sizeof(struct itinner);
	s->total_bytes = t->chunk_bytes + sizeof(*t);
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

static int vleaf(const struct itnode *n, struct key lo, uint64_t *max,
		 struct vstate *v)
{
	const struct itleaf *lf = leaf_of(n);
	uint64_t w = leaf_order(n);
	unsigned seen = 0;
	if (order_count(w) != n->count)
		return vfail(v, "leaf order word count differs from its live count");
	for (unsigned i = 0; i < n->count; i++) {
		unsigned s = order_slot(w, i);
		if (s >= LEAF_MAX || (seen >> s & 1))
			return vfail(v, "leaf order word names a slot out of range or twice");
		seen |= 1u << s;
		if (lf->first[s] > lf->last[s])
			return vfail(v, "entry with first > last");
	}
	if (seen != n->live)
		return vfail(v, "leaf live mask differs from the slots its order word lists");
	if (key_cmp(node_key(n, 0), lo) < 0)
		return vfail(v, "leaf key below its parent's separator");
	v->leaves++;
	v->entries += n->count;
	*max = node_max(n);
	return 0;
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
	if (n->count == 0 || n->count > node_cap(level))
		return vfail(v, "node count out of range");
	if (!is_root && n->count < NODE_MIN)
		return vfail(v, "non-root node below the minimum fill");
	if (is_root && level && n->count < 2)
		return vfail(v, "inner root with fewer than 2 children");
	if (level == 0 && order_count(leaf_order(n)) != n->count)
		return vfail(v, "leaf order word count differs from its live count");
	for (unsigned i = 1; i < n->count; i++)
		if (key_cmp(node_key(n, i - 1), node_key(n, i)) >= 0)
			return vfail(v, "keys not strictly increasing");
	if (hi && key_cmp(node_key(n, n->count - 1), *hi) >= 0)
		return vfail(v, "key at or above the next separator");
	if (level == 0)
		return vleaf(n, lo, max, v);
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
		if (gm_load_relaxed(&in->prefix_max[i]) != m)
			return vfail(v, "prefix_max differs from the max of max_last 0..i");
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
