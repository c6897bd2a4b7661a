/*
 * src/space.c — gm_space: one guest address space.
 *
 *   struct gm_space
 *   +--------------------+        layout[0] / layout[1]  (one is active)
 *   | active ------------+------> +-------------------------------+
 *   | layout[2]          |        | seq (odd while being edited)  |
 *   | generation         |        | generation (0 while edited)   |
 *   | batch ops[]        |        | hint: last-used slot          |
 *   | log[]  (prev commit|        | gfn: gm_rangemap gfn -> slot  |
 *   |         changes)   |        | hva: gm_itree  hva -> slot id |
 *   | attr  (0 | one | map)       | ids: hash table id -> slot    |
 *   | wp    (rangemap, lazy)      | nslots, broken                |
 *   | io[2] (rangemaps, lazy)     +-------------------------------+
 *   +--------------------+               |   |   |
 *                                        v   v   v
 *                          struct slot (immutable, shared by both layouts)
 *                          | pub {base_gfn, npages, hva, id, flags}       |
 *                          | member bits (1 << layout index)              |
 *                          | dirty: chunk pointers[] + top summary        |
 *                          |        chunk = 8 summary words + 512 words   |
 *                          | rmaps: NULL, or (from the first rmap chunk)  |
 *                          |        gm_pagemap chunk# -> 512 rmap heads   |
 *
 * Commit k edits the inactive layout L: seq odd, replay commit k-1's
 * changes (the log), apply the batch, generation = ++space->generation,
 * seq even, then one release store of `active` = L. Nobody waits: a reader
 * that still walks L (it loaded `active` before commit k-1 published the
 * other layout) sees seq change and retries on the new active layout;
 * L's indexes free nothing before a grace period (the hva itree is in RCU
 * mode; the gfn blocks and the id table are edited in place, see their
 * sections), so such a reader never touches freed memory.
 *
 * Writer costs: a change edits the gfn and id indexes of a layout in place
 * (no allocation, nothing retired, unless a gfn block is added or emptied
 * or the id table grows); a move or flags change (same id, same hva range)
 * replaces the slot in the gfn entry and the id cell and leaves the hva
 * index alone (its items are slot ids). Slot objects are recycled: after
 * their grace periods they return to the writer (a bounded stack) instead
 * of the allocator, so the RCU worker thread and the writer do not trade malloc
 * arenas.
 *
 * Invariants (checked by gm_space_validate):
 *  1. active layout: seq even, generation == space->generation, its three
 *     indexes hold the same nslots slots; the gfn index maps exactly
 *     [base_gfn, base_gfn + npages - 1] of each slot (so gfn ranges never
 *     overlap); each slot has npages >= 1, no gfn or hva range past
 *     UINT64_MAX, and its member bit for the active layout.
 *  2. the inactive layout (unless marked broken) holds the active slots
 *     minus the log's additions plus the log's deletions.
 *  3. a slot is freed (or recycled) only when it is in neither layout and
 *     two grace periods passed (the first ends with the shared hints
 *     cleared of it).
 *  4. attributes: 0, or one non-zero range (struct attr_one), or a
 *     rangemap; protection counts >= 1 in the wp map; I/O maps hold
 *     handler objects whose bounds equal their range.
 *  5. dirty chunks: a word bit set => its summary bit or a later harvest's
 *     summary bit is set (markers set word, then summary, then top).
 */
#include "internal.h"

#include <gmtrack/itree.h>
#include <gmtrack/pagemap.h>
#include <gmtrack/rangemap.h>
#include <gmtrack/space.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_SHIFT GM_SPACE_PAGE_SHIFT
#define DC_SHIFT 15                       /* frames per dirty chunk: 32768 */
#define DC_WORDS ((1u << DC_SHIFT) / 64)  /* 512 */
#define DC_SUMS (DC_WORDS / 64)           /* 8 */
#define RMAP_SHIFT 9                      /* 512 heads per rmap chunk */
#define RMAP_CHUNK_BYTES ((size_t)sizeof(struct gm_rmap_head) << RMAP_SHIFT)
#define SLOT_FLAGS (GM_SPACE_SLOT_READONLY | GM_SPACE_SLOT_DIRTY_LOG)

/* Seqcount fences. gcc's TSan rejects atomic_thread_fence; there the seq
 * accesses themselves become seq_cst (stronger, and what TSan models). */
#ifdef GM_TSAN
#define SEQ_FENCE_WRITER() ((void)0)
#define SEQ_FENCE_READER() ((void)0)
#define SEQ_ORDER memory_order_seq_cst
#else
#define SEQ_FENCE_WRITER() atomic_thread_fence(memory_order_seq_cst)
#define SEQ_FENCE_READER() atomic_thread_fence(memory_order_acquire)
#define SEQ_ORDER memory_order_relaxed
#endif

struct dchunk {
	_Atomic uint64_t sum[DC_SUMS];   /* bit per non-zero word */
	_Atomic uint64_t w[DC_WORDS];    /* bit per frame */
};

struct slot {
	struct gm_space_slot pub;        /* first: readers get &pub */
	union {                          /* never both: a slot waits for its
					  * grace periods, then is recycled */
		struct gm_rcu_head rcu;
		struct slot *next_free;  /* on the ready stack or the stash */
	};
	struct gm_space *space;
	_Atomic unsigned member;         /* bit i: in layout i */
	uint64_t nchunks;                /* dirty chunks (0: not logging) */
	_Atomic(struct dchunk *) *chunks;
	_Atomic uint64_t *top;           /* bit per chunk with summary bits */
	/* chunk# -> 512 heads; NULL until the first rmap chunk (128 bytes
	 * that most slots never need) */
	_Atomic(struct gm_pagemap *) rmaps;
};

struct layout {
	_Atomic uint64_t seq;
	_Atomic uint64_t generation;
	_Atomic(struct slot *) hint;
	_Atomic(struct gtop *) gidx;
	_Atomic(struct gm_itree *) hva;
	_Atomic(struct idtab *) ids;
	uint64_t nslots;
	bool broken;
	unsigned index;
};

enum op_kind { OP_ADD, OP_DELETE, OP_MOVE, OP_RESIZE, OP_FLAGS };
struct op {
	enum op_kind kind;
	uint32_t id, flags;
	uint64_t base, npages, hva;
};
struct change {
	struct slot *slot;
	bool add;
};
struct changes {
	struct change *v;
	size_t n, cap;
};

struct attr_one {
	uint64_t first, last, value;
};
#define ATTR_MAP_TAG 1u

struct gm_space {
	struct gm_space_head head;       /* first: read by the inline cache hit */
	const struct gm_allocator *alloc;
	uint32_t max_slots;
	unsigned host_page_shift;        /* hva alignment (config) */
	_Atomic(struct layout *) active;
	struct layout lay[2];
	uint64_t generation;
	struct op *ops;
	size_t nops, cap_ops;
	struct changes log, cur;
	_Atomic uintptr_t attr;
	_Atomic(struct gm_rangemap *) wp;
	_Atomic(struct gm_rangemap *) io[2];
	size_t io_objects;
	struct gm_reclaim reclaim;
	_Atomic size_t slot_bytes, dirty_bytes, rmap_bytes;
	/* Slot recycling: a slot past its grace periods is pushed on the
	 * ready stack (by the RCU worker thread) instead of freed, up to slot_keep
	 * of them; the writer takes the whole stack into its stash and
	 * allocates slots from there first. slot_bytes counts them. */
	_Atomic(struct slot *) slot_ready;
	_Atomic size_t slot_kept;        /* in ready or stash */
	_Atomic size_t slot_keep;        /* bound, set by the writer */
	struct slot *slot_stash;         /* writer */
};

/* ---- small helpers ------------------------------------------------------- */

static void *zalloc(struct gm_space *s, size_t size)
{
	void *p = gm_alloc_mem(s->alloc, size, 64);
	if (p)
		memset(p, 0, size);
	return p;
}

static uint64_t slot_last_gfn(const struct gm_space_slot *p)
{
	return p->base_gfn + p->npages - 1;
}

static uint64_t slot_last_hva(const struct gm_space_slot *p)
{
	return p->hva + (p->npages << PAGE_SHIFT) - 1;
}

/* The range [base, base + npages - 1] fits, and so does its hva range. */
/* A slot KVM would take too: its guest-physical bytes fit in 64 bits
 * (base + npages <= GM_SPACE_GFN_LIMIT), its hva range does not wrap, and
 * hva, base and npages are aligned to the host's page size. */
static bool slot_shape_ok(const struct gm_space *s, uint64_t base, uint64_t npages,
			  uint64_t hva)
{
	if (npages == 0 || base >= GM_SPACE_GFN_LIMIT || npages > GM_SPACE_GFN_LIMIT - base)
		return false;
	uint64_t host_mask = (1ull << s->host_page_shift) - 1;
	uint64_t frames_mask = host_mask >> PAGE_SHIFT;
	if ((hva & host_mask) || (base & frames_mask) || (npages & frames_mask))
		return false;
	uint64_t bytes_m1 = ((npages - 1) << PAGE_SHIFT) + ((1u << PAGE_SHIFT) - 1);
	return hva + bytes_m1 >= hva;
}

static struct layout *inactive_of(const struct gm_space *s)
{
	struct gm_space *w = (struct gm_space *)s; /* the layouts' counters are atomics */
	struct layout *a = atomic_load_explicit(&w->active, memory_order_relaxed);
	return a == &w->lay[0] ? &w->lay[1] : &w->lay[0];
}

/* ---- slot objects ---------------------------------------------------------- */

static size_t slot_dirty_bytes(uint64_t nchunks)
{
	return nchunks * sizeof(void *) + ((nchunks + 63) / 64) * 8;
}

/* A slot's memory from the stash (refilled from the ready stack), or NULL. */
static struct slot *slot_stash_take(struct gm_space *s)
{
	if (!s->slot_stash)
		s->slot_stash = atomic_exchange_explicit(&s->slot_ready, NULL,
							 memory_order_acquire);
	struct slot *sl = s->slot_stash;
	if (sl) {
		s->slot_stash = sl->next_free;
		atomic_fetch_sub_explicit(&s->slot_kept, 1, memory_order_relaxed);
	}
	return sl;
}

static void slot_stash_put(struct gm_space *s, struct slot *sl)
{
	sl->next_free = s->slot_stash;
	s->slot_stash = sl;
	atomic_fetch_add_explicit(&s->slot_kept, 1, memory_order_relaxed);
}

static void slot_list_free(struct gm_space *s, struct slot *sl)
{
	while (sl) {
		struct slot *next = sl->next_free;
		gm_alloc_release(s->alloc, sl, sizeof(*sl));
		atomic_fetch_sub(&s->slot_bytes, sizeof(*sl));
		atomic_fetch_sub_explicit(&s->slot_kept, 1, memory_order_relaxed);
		sl = next;
	}
}

/* A new slot object: from the recycled ones, else the allocator. NULL on
 * -ENOMEM, with nothing allocated (a recycled object goes back). */
static struct slot *slot_new(struct gm_space *s, uint32_t id, uint64_t base,
			     uint64_t npages, uint64_t hva, uint32_t flags)
{
	struct slot *sl = slot_stash_take(s);
	bool recycled = sl != NULL;
	if (!sl)
		sl = gm_alloc_mem(s->alloc, sizeof(*sl), 16); /* malloc path */
	if (!sl)
		return NULL;
	memset(sl, 0, sizeof(*sl));
	sl->pub = (struct gm_space_slot){base, npages, hva, id, flags};
	sl->space = s;
	if (flags & GM_SPACE_SLOT_DIRTY_LOG) {
		uint64_t nchunks = ((npages - 1) >> DC_SHIFT) + 1;
		if (nchunks > SIZE_MAX / 16)
			goto fail;
		sl->chunks = zalloc(s, nchunks * sizeof(void *));
		if (!sl->chunks)
			goto fail;
		sl->top = zalloc(s, ((nchunks + 63) / 64) * 8);
		if (!sl->top) {
			gm_alloc_release(s->alloc, sl->chunks, nchunks * sizeof(void *));
			goto fail;
		}
		sl->nchunks = nchunks;
		atomic_fetch_add(&s->dirty_bytes, slot_dirty_bytes(nchunks));
	}
	if (!recycled)
		atomic_fetch_add(&s->slot_bytes, sizeof(*sl));
	return sl;
fail:
	if (recycled)
		slot_stash_put(s, sl);
	else
		gm_alloc_release(s->alloc, sl, sizeof(*sl));
	return NULL;
}

static int rmap_chunk_free(void *ctx, uint64_t key, void *value)
{
	struct slot *sl = ctx;
	struct gm_space *s = sl->space;
	struct gm_rmap_head *heads = value;
	struct gm_rmap_cache cache;
	(void)key;
	gm_rmap_cache_init_(&cache, s->alloc);
	for (size_t i = 0; i < ((size_t)1 << RMAP_SHIFT); i++)
		if (heads[i].word)
			gm_rmap_clear(&heads[i], &cache, NULL, NULL);
	gm_rmap_cache_fini_(&cache);
	gm_alloc_release(s->alloc, heads, RMAP_CHUNK_BYTES);
	atomic_fetch_sub(&s->rmap_bytes, RMAP_CHUNK_BYTES);
	return 0;
}

/* Frees what a slot no reader can reach any more holds (not the object). */
static void slot_free_parts(struct slot *sl)
{
	struct gm_space *s = sl->space;
	struct gm_pagemap *rm = atomic_load_explicit(&sl->rmaps, memory_order_acquire);
	if (rm) {
		size_t rb = gm_pagemap_bytes_(rm);
		gm_pagemap_walk(rm, 0, UINT64_MAX, rmap_chunk_free, sl);
		gm_pagemap_destroy(rm);
		atomic_fetch_sub(&s->rmap_bytes, rb);
	}
	if (sl->nchunks) {
		for (uint64_t i = 0; i < sl->nchunks; i++) {
			struct dchunk *c = atomic_load_explicit(&sl->chunks[i],
								memory_order_acquire);
			if (c) {
				gm_alloc_release(s->alloc, c, sizeof(*c));
				atomic_fetch_sub(&s->dirty_bytes, sizeof(*c));
			}
		}
		gm_alloc_release(s->alloc, sl->chunks, sl->nchunks * sizeof(void *));
		gm_alloc_release(s->alloc, sl->top, ((sl->nchunks + 63) / 64) * 8);
		atomic_fetch_sub(&s->dirty_bytes, slot_dirty_bytes(sl->nchunks));
	}
}

/* Frees a slot no reader can reach any more. */
static void slot_free(struct slot *sl)
{
	struct gm_space *s = sl->space;
	slot_free_parts(sl);
	atomic_fetch_sub(&s->slot_bytes, sizeof(*sl));
	gm_alloc_release(s->alloc, sl, sizeof(*sl));
}

/* As slot_free, but keeps the object for reuse while fewer than slot_keep
 * are kept (on the RCU worker thread; the writer takes them). */
static void slot_recycle(struct slot *sl)
{
	struct gm_space *s = sl->space;
	if (atomic_load_explicit(&s->slot_kept, memory_order_relaxed) >=
	    atomic_load_explicit(&s->slot_keep, memory_order_relaxed)) {
		slot_free(sl);
		return;
	}
	slot_free_parts(sl);
	atomic_fetch_add_explicit(&s->slot_kept, 1, memory_order_relaxed);
	gm_stack_push(&s->slot_ready, sl, next_free);
}

static void slot_after_second_gp(struct gm_rcu_head *head)
{
	struct slot *sl = (struct slot *)((char *)head - offsetof(struct slot, rcu));
	slot_recycle(sl);
}

/* First grace period over: no reader can newly find the slot in an index,
 * so clear it from the shared hints, then wait once more for readers that
 * took it from a hint. */
static void slot_after_first_gp(struct gm_rcu_head *head)
{
	struct slot *sl = (struct slot *)((char *)head - offsetof(struct slot, rcu));
	for (int i = 0; i < 2; i++) {
		struct slot *expect = sl;
		atomic_compare_exchange_strong(&sl->space->lay[i].hint, &expect, NULL);
	}
	gm_rcu_call(&sl->rcu, slot_after_second_gp);
}

static void slot_retire(struct slot *sl)
{
	gm_rcu_call(&sl->rcu, slot_after_first_gp);
}

/* ---- the gfn index: a sorted array of blocks under a radix of buckets ----
 *
 *   top (one allocation, copy-on-write)
 *   +----------------+----------------------------+------------------------+
 *   | n, nb, shift   | ent[0..n]: sep, blk        | rad[0..nb]: uint32_t   |
 *   |                | ent[n] = {UINT64_MAX, 0}   | rad[nb] = n - 1        |
 *   +----------------+----------------------------+------------------------+
 *                         |
 *                         v  block (fixed size, GB_MAX entries, 64-aligned)
 *   +-----------------------+------------------------+-------------+---+
 *   | base[] sorted, then   | (last, hva)[]          | slot[]      | n |
 *   | UINT64_MAX padding    |                        |             |   |
 *   +-----------------------+------------------------+-------------+---+
 * Block i holds the slots whose base_gfn is in [sep[i], sep[i+1]), sorted;
 * sep[0] = 0, seps strictly increase, no block is empty, at most GB_MAX
 * entries; base[j >= n] = UINT64_MAX, so a search never reads n.
 *
 * Radix: bucket k covers the keys [k << shift, (k + 1) << shift) (the last
 * one up to UINT64_MAX); rad[k] is the block holding its first key, so its
 * keys are in blocks rad[k] .. rad[k + 1]. nb is at most the power of two
 * >= 2n, and shift the least that makes nb buckets reach sep[n - 1]; seps
 * and radix never change once a top is published. So when rad[k + 1] <=
 * rad[k] + 1 (unless two seps fall into one bucket) a lookup finds its
 * block with one radix load and one compare against sep[rad[k] + 1] — no
 * dependent search steps (the sorted-array search this replaced took ten,
 * each an L1 latency, and together they cost more than the block's cache
 * miss); a crowded bucket falls back to a binary search of its ents. The
 * radix is 4 bytes a bucket (at most 16 a block): a top copy stays cheap.
 * The lookup then prefetches the block's four lines of base[] at once
 * (one memory latency, not one per search step), runs a fixed five-step
 * branch-free search of base[] and reads the entry's (last, hva). A
 * translation never touches the slot object. If the block's first key is
 * above gfn (sep[i] may be below it after deletes) the answer is the
 * previous block's last entry.
 *
 * Each layout has its own gfn index and the writer only ever edits the
 * INACTIVE layout, whose seqcount is odd meanwhile: a late reader that
 * still walks it may read a half-edited block, but it always retries
 * (view_valid) and never uses what it read. So a block is edited in place
 * (entries shifted, n updated; every field _Atomic, relaxed), with no
 * allocation and nothing to retire; readers only need memory safety, which
 * the fixed block size and a clamped n give. Only a change of the block
 * list (a block added after a full one, a split, a block emptied) copies
 * the top (16 bytes per block + 4 per bucket, O(n)), publishes it in
 * layout->gidx and retires the old top (and an emptied block) through the
 * space's reclaim list.
 */
#define GB_MAX 32

struct gblk {
	_Atomic uint64_t base[GB_MAX];
	struct {
		_Atomic uint64_t last, hva;
	} lh[GB_MAX];
	_Atomic(struct slot *) slot[GB_MAX];
	_Atomic uint64_t n;
};
#define GB_BYTES sizeof(struct gblk)

struct gent {
	uint64_t sep;
	struct gblk *blk;
};
struct gtop {
	uint64_t n, nb;       /* blocks, buckets */
	unsigned shift;
	uint64_t pad[5];      /* 64 bytes: ent starts a line */
	struct gent ent[];    /* n + 1 of them, then uint32_t rad[nb + 1] */
};

/* A block's fields (relaxed: see above for why that is enough). */
static inline uint64_t gb_n(const struct gblk *b)
{
	uint64_t n = atomic_load_explicit(&b->n, memory_order_relaxed);
	return n - 1 < GB_MAX ? n : 1; /* a torn read stays in bounds */
}
static inline uint64_t gb_base(const struct gblk *b, size_t j)
{
	return atomic_load_explicit(&b->base[j], memory_order_relaxed);
}
static inline uint64_t gb_last(const struct gblk *b, size_t j)
{
	return atomic_load_explicit(&b->lh[j].last, memory_order_relaxed);
}
static inline uint64_t gb_hva(const struct gblk *b, size_t j)
{
	return atomic_load_explicit(&b->lh[j].hva, memory_order_relaxed);
}
static inline struct slot *gb_slot(const struct gblk *b, size_t j)
{
	return atomic_load_explicit(&b->slot[j], memory_order_relaxed);
}
static inline struct gent *gt_ent(const struct gtop *t)
{
	return (struct gent *)(uintptr_t)t->ent;
}
static inline uint32_t *gt_rad(const struct gtop *t)
{
	return (uint32_t *)(uintptr_t)(t->ent + t->n + 1);
}
static size_t gt_bytes_nb(uint64_t n, uint64_t nb)
{
	return sizeof(struct gtop) + (n + 1) * sizeof(struct gent) + (nb + 1) * sizeof(uint32_t);
}
static size_t gt_bytes(const struct gtop *t)
{
	return gt_bytes_nb(t->n, t->nb);
}
static uint64_t gt_sep(const struct gtop *t, size_t i)
{
	return gt_ent(t)[i].sep;
}
static struct gblk *gt_get(const struct gtop *t, size_t i)
{
	return gt_ent(t)[i].blk;
}

/* Index of the last ent in e[0..n) whose sep <= x (0 if none). */
static size_t ent_last_le_sep(const struct gent *e, size_t n, uint64_t x)
{
	const struct gent *b = e;
	while (n > 1) {
		size_t half = n / 2;
		b = b[half].sep <= x ? b + half : b;
		n -= half;
	}
	return (size_t)(b - e);
}

/* The bucket of x (the last one for keys past it). */
static inline uint64_t gt_bucket(const struct gtop *t, uint64_t x)
{
	uint64_t k = x >> t->shift, last = t->nb - 1;
	return k < last ? k : last;   /* this form compiles to a cmov */
}

/* The block whose range of keys holds x: last sep <= x (t->n > 0). */
static inline size_t gt_find(const struct gtop *t, uint64_t x)
{
	const uint32_t *rad = gt_rad(t);
	uint64_t k = gt_bucket(t, x), lo = rad[k], hi = rad[k + 1];
	return lo + ent_last_le_sep(gt_ent(t) + lo, hi - lo + 1, x);
}

/* Index of the last base <= x in b (0 if none: the caller checks): five
 * branch-free steps (cmov; unrolled, gcc 12 makes the last one a branch:
 * +30% a lookup). Three pivots (base[8], [16], [24]) and then seven
 * compares in the part they pick measured slower: they need all four
 * lines of base[] at once and twice the instructions. The padding
 * (UINT64_MAX) is only <= x for x = UINT64_MAX: then n clamps. */
static inline size_t ent_last_le(const struct gblk *b, uint64_t x)
{
	size_t lo = 0;
	for (size_t half = GB_MAX / 2; half; half /= 2)
		lo = gb_base(b, lo + half) <= x ? lo + half : lo;
	if (GM_UNLIKELY(x == UINT64_MAX) && lo >= gb_n(b))
		lo = gb_n(b) - 1;
	return lo;
}

/* gfn's block when its bucket holds at most one sep (the usual case):
 * block lo or lo + 1, chosen without a branch; NULL when the bucket holds
 * more (gt_find searches them). t->n > 0. */
static inline const struct gblk *gt_block_direct(const struct gtop *t, uint64_t gfn)
{
	const uint32_t *rad = gt_rad(t);
	uint64_t k = gt_bucket(t, gfn), lo = rad[k], hi = rad[k + 1];
	if (GM_UNLIKELY(hi - lo > 1))
		return NULL;
	const struct gent *e = gt_ent(t) + lo;
	return e[(hi > lo) & (gfn >= e[1].sep)].blk;
}

/* The block and position of the entry whose range holds gfn: true, or
 * false (reader or writer). Inlined into the translation path: a call and
 * its out-parameters cost more than the search. */
static inline __attribute__((always_inline)) bool
gidx_find(const struct gtop *t, uint64_t gfn, const struct gblk **bp, size_t *jp)
{
	if (GM_UNLIKELY(!t || !t->n))
		return false;
	const struct gblk *b = gt_block_direct(t, gfn);
	if (GM_UNLIKELY(!b))
		b = gt_get(t, gt_find(t, gfn));
	/* base[]'s four lines at once (one memory latency, not one per
	 * search step); prefetching lh[] too measured slower (the line of
	 * the entry found is one of eight, and twelve prefetches a lookup
	 * leave fewer miss buffers to overlap the next lookup) */
	for (size_t l = 0; l < GB_MAX * 8 / 64; l++)
		__builtin_prefetch((const char *)b->base + 64 * l);
	size_t j = ent_last_le(b, gfn);
	if (GM_UNLIKELY(gb_base(b, j) > gfn)) {
		size_t i = gt_find(t, gfn);
		if (!i)
			return false;
		b = gt_get(t, i - 1);
		j = gb_n(b) - 1;
	}
	if (gfn > gb_last(b, j))
		return false;
	*bp = b;
	*jp = j;
	return true;
}

/* The translation miss's search, for the common case only: t is not
 * empty and gfn's bucket holds at most one sep, so the block is one of two
 * ents, chosen without a branch. NULL otherwise (the caller then starts
 * over in gidx_find, out of line). *jp: the last base <= gfn, or 0 (the
 * caller checks base[*jp] <= gfn < UINT64_MAX). Free of calls and of rare
 * paths, so the miss path runs in caller-saved registers; the search is
 * unrolled by hand, without a branch (gcc 12 turns a last step written as
 * a ?: into a branch, +30% a lookup: that one adds the compare's 0/1). */
static inline __attribute__((always_inline)) const struct gblk *
gidx_find_fast(const struct gtop *t, uint64_t gfn, size_t *jp)
{
	if (GM_UNLIKELY(!t) || GM_UNLIKELY(!t->n))
		return NULL;
	const struct gblk *b = gt_block_direct(t, gfn);
	if (GM_UNLIKELY(!b))
		return NULL;
	for (size_t l = 0; l < GB_MAX * 8 / 64; l++)
		__builtin_prefetch((const char *)b->base + 64 * l);
	_Static_assert(GB_MAX == 32, "the unrolled search below takes 5 steps");
	size_t j = gb_base(b, 16) <= gfn ? 16 : 0;
	j = gb_base(b, j + 8) <= gfn ? j + 8 : j;
	/* the quarter is known: its two lines of (last, hva) now, so the
	 * entry's line is on its way during the last three steps (its load
	 * after the search was a second dependent miss; prefetching all
	 * eight lh lines with base[] measured slower, see gidx_find) */
	__builtin_prefetch(&b->lh[j]);
	__builtin_prefetch(&b->lh[j + 4]);
	j = gb_base(b, j + 4) <= gfn ? j + 4 : j;
	j = gb_base(b, j + 2) <= gfn ? j + 2 : j;
	j += gb_base(b, j + 1) <= gfn;
	*jp = j;
	return b;
}

/* A top for n blocks whose last sep is last_sep: its bucket count and shift
 * set, the rest (buckets, ents) for the caller. NULL on -ENOMEM. */
static struct gtop *gt_new(struct gm_space *s, uint64_t n, uint64_t last_sep)
{
	uint64_t target = 1, nb = 0;
	unsigned shift = 0;
	if (n) {
		while (target < 2 * n)
			target *= 2;
		while ((last_sep >> shift) >= target)
			shift++;
		nb = (last_sep >> shift) + 1;
	}
	struct gtop *t = gm_alloc_mem(s->alloc, gt_bytes_nb(n, nb), 64);
	if (t) {
		t->n = n;
		t->nb = nb;
		t->shift = shift;
	}
	return t;
}

/* Fills the radix of t from its ents (ent[n].sep = MAX already): rad[k]
 * = the block of bucket k's first key, rad[nb] = n - 1. O(n + nb). */
static void gt_fill_buckets(struct gtop *t)
{
	const struct gent *e = gt_ent(t);
	uint32_t *rad = gt_rad(t);
	uint64_t lo = 0;
	for (uint64_t k = 0; k < t->nb; k++) {
		uint64_t first = k << t->shift;
		while (e[lo + 1].sep <= first) /* ent[n].sep = MAX stops it */
			lo++;
		rad[k] = (uint32_t)lo;
	}
	rad[t->nb] = (uint32_t)(t->n - 1);
}

static struct gblk *gb_new(struct gm_space *s)
{
	struct gblk *b = gm_alloc_mem(s->alloc, GB_BYTES, 64);
	if (b) {
		memset(b, 0, GB_BYTES);
		for (size_t j = 0; j < GB_MAX; j++)
			atomic_init(&b->base[j], UINT64_MAX);
	}
	return b;
}

static void gb_put(struct gblk *b, size_t at, uint64_t base, uint64_t last,
		   uint64_t hva, struct slot *sl)
{
	atomic_store_explicit(&b->base[at], base, memory_order_relaxed);
	atomic_store_explicit(&b->lh[at].last, last, memory_order_relaxed);
	atomic_store_explicit(&b->lh[at].hva, hva, memory_order_relaxed);
	atomic_store_explicit(&b->slot[at], sl, memory_order_relaxed);
}

/* dst[at] = src[from] */
static void gb_move1(struct gblk *dst, size_t at, const struct gblk *src, size_t from)
{
	gb_put(dst, at, gb_base(src, from), gb_last(src, from), gb_hva(src, from),
	       gb_slot(src, from));
}

/* n entries: the rest of base[] becomes padding. */
static void gb_set_n(struct gblk *b, uint64_t n)
{
	for (size_t j = n; j < GB_MAX && gb_base(b, j) != UINT64_MAX; j++)
		atomic_store_explicit(&b->base[j], UINT64_MAX, memory_order_relaxed);
	atomic_store_explicit(&b->n, n, memory_order_relaxed);
}

static void gidx_free_all(struct gm_space *s, struct gtop *t, bool retire)
{
	if (!t)
		return;
	for (uint64_t i = 0; i < t->n; i++) {
		struct gblk *b = gt_get(t, i);
		if (retire)
			gm_reclaim_retire(&s->reclaim, b, GB_BYTES);
		else
			gm_alloc_release(s->alloc, b, GB_BYTES);
	}
	if (retire)
		gm_reclaim_retire(&s->reclaim, t, gt_bytes(t));
	else
		gm_alloc_release(s->alloc, t, gt_bytes(t));
}

static size_t gidx_bytes(const struct gtop *t)
{
	return t ? gt_bytes(t) + t->n * GB_BYTES : 0;
}

/* The sep of block by[m] when it replaces block i of t (may be NULL). */
static uint64_t splice_sep(const struct gtop *t, size_t i, struct gblk **by, size_t m)
{
	return m ? gb_base(by[m], 0) : t ? gt_sep(t, i) : 0;
}

/* The first bucket whose block is >= r (rad[0..nb) never decreases). */
static uint64_t rad_first_ge(const uint32_t *rad, uint64_t nb, uint32_t r)
{
	uint64_t lo = 0, len = nb;
	while (len) {
		uint64_t half = len / 2;
		if (rad[lo + half] < r) {
			lo += half + 1;
			len -= half + 1;
		} else {
			len = half;
		}
	}
	return lo;
}

/* gt_splice's radix when nt keeps t's bucket count and shift: t's, with
 * the blocks after i moved by nby - 1 (one copy and one add loop), and
 * only the buckets whose first key lay in the replaced block i looked up
 * again (among the new blocks; with none, the block before takes them).
 * It replaces gt_fill_buckets's scan of every bucket and block, which was
 * most of a slot delete's instructions whenever a block emptied. */
static void gt_shift_buckets(struct gtop *nt, const struct gtop *t, size_t i, size_t nby)
{
	const uint32_t *orad = gt_rad(t);
	uint32_t *rad = gt_rad(nt);
	const struct gent *ne = gt_ent(nt);
	uint64_t nb = t->nb;
	uint64_t lo = rad_first_ge(orad, nb, (uint32_t)i);
	uint64_t hi = rad_first_ge(orad, nb, (uint32_t)i + 1);
	memcpy(rad, orad, lo * sizeof(*rad));
	for (uint64_t k = lo; k < hi; k++) {
		size_t m = 0;
		while (m + 1 < nby && ne[i + m + 1].sep <= k << nt->shift)
			m++;
		rad[k] = nby ? (uint32_t)(i + m) : i ? (uint32_t)i - 1 : 0;
	}
	uint32_t d = (uint32_t)nby - 1; /* -1 (mod 2^32) when a block goes */
	for (uint64_t k = hi; k < nb; k++)
		rad[k] = orad[k] + d;
	rad[nb] = (uint32_t)(nt->n - 1);
}

/* A top like t (may be NULL) with block i replaced by by[0..nby) (nby 0,
 * 1 or 2); block by[m > 0] starts at its first key. O(n + nb) word moves
 * (block copies; the buckets are t's moved, or rebuilt when their count or
 * shift changes). NULL on -ENOMEM. */
static struct gtop *gt_splice(struct gm_space *s, const struct gtop *t, size_t i,
			      struct gblk **by, size_t nby)
{
	uint64_t n = t ? t->n - 1 + nby : nby, last_sep = 0;
	if (n > 1) /* the sep of the new last block */
		last_sep = i + 1 < t->n ? gt_sep(t, t->n - 1)
			 : nby ? splice_sep(t, i, by, nby - 1) : gt_sep(t, t->n - 2);
	struct gtop *nt = gt_new(s, n, last_sep);
	if (!nt)
		return NULL;
	struct gent *ne = gt_ent(nt);
	if (t) { /* blocks before i, and after it, nby places on */
		memcpy(ne, gt_ent(t), i * sizeof(*ne));
		memcpy(ne + i + nby, gt_ent(t) + i + 1, (t->n - i - 1) * sizeof(*ne));
	}
	for (size_t m = 0; m < nby; m++)
		ne[i + m] = (struct gent){splice_sep(t, i, by, m), by[m]};
	if (n)
		ne[0].sep = 0;
	ne[n] = (struct gent){UINT64_MAX, NULL};
	if (t && n && nt->nb == t->nb && nt->shift == t->shift)
		gt_shift_buckets(nt, t, i, nby);
	else
		gt_fill_buckets(nt);
	return nt;
}

/* Inserts [base, last] -> (hva, sl). -EEXIST if it overlaps, -ENOMEM;
 * unchanged on error. O(log n + GB_MAX) in place; O(n / GB_MAX) (a top
 * copy) when a block is added. */
static int gidx_insert(struct gm_space *s, _Atomic(struct gtop *) *pt, uint64_t base,
		       uint64_t last, uint64_t hva, struct slot *sl)
{
	struct gtop *t = atomic_load_explicit(pt, memory_order_relaxed);
	size_t i = 0, p = 0, n = 0;
	struct gblk *b = NULL;
	if (t && t->n) {
		i = gt_find(t, base);
		b = gt_get(t, i);
		n = gb_n(b);
		while (p < n && gb_base(b, p) < base)
			p++;
		if (p ? gb_last(b, p - 1) >= base
		      : i && gb_last(gt_get(t, i - 1), gb_n(gt_get(t, i - 1)) - 1) >= base)
			return -EEXIST;
		if (p < n ? gb_base(b, p) <= last
			  : i + 1 < t->n && gb_base(gt_get(t, i + 1), 0) <= last)
			return -EEXIST;
	}
	if (b && n < GB_MAX) { /* in place: shift the tail up one */
		for (size_t q = n; q > p; q--)
			gb_move1(b, q, b, q - 1);
		gb_put(b, p, base, last, hva, sl);
		gb_set_n(b, n + 1);
		return 0;
	}
	if (gm_reclaim_reserve(&s->reclaim, 1))
		return -ENOMEM;
	/* a new block: the first one; after a full block when appending to
	 * it (ascending adds fill blocks); else a split: b keeps the left
	 * half, the new block takes the right half */
	struct gblk *nb = gb_new(s);
	if (!nb)
		return -ENOMEM;
	struct gblk *two[2] = {b, nb};
	size_t nby = b ? 2 : 1, nl = 0;
	if (!b || p == n) {
		gb_put(nb, 0, base, last, hva, sl);
		gb_set_n(nb, 1);
		if (!b)
			two[0] = nb;
	} else {
		nl = (GB_MAX + 1) / 2;
		for (size_t q = nl; q <= GB_MAX; q++) { /* q: merged position */
			if (q == p)
				gb_put(nb, q - nl, base, last, hva, sl);
			else
				gb_move1(nb, q - nl, b, q - (q > p));
		}
		gb_set_n(nb, GB_MAX + 1 - nl);
	}
	struct gtop *nt = gt_splice(s, t && t->n ? t : NULL, i, two, nby);
	if (!nt) {
		gm_alloc_release(s->alloc, nb, GB_BYTES);
		return -ENOMEM;
	}
	if (nl) { /* b becomes the left half (only now: nothing can fail) */
		if (p < nl) {
			for (size_t q = nl - 1; q > p; q--)
				gb_move1(b, q, b, q - 1);
			gb_put(b, p, base, last, hva, sl);
		}
		gb_set_n(b, nl);
	}
	atomic_store_explicit(pt, nt, memory_order_release);
	if (t)
		gm_reclaim_retire(&s->reclaim, t, gt_bytes(t));
	return 0;
}

/* Removes the entry of sl (base). -ENOENT if absent, -ENOMEM (only when
 * its block empties); unchanged on error. O(log n + GB_MAX) in place,
 * O(n / GB_MAX) when a block empties. */
static int gidx_erase(struct gm_space *s, _Atomic(struct gtop *) *pt, uint64_t base,
		      const struct slot *sl)
{
	struct gtop *t = atomic_load_explicit(pt, memory_order_relaxed);
	if (!t || !t->n)
		return -ENOENT;
	size_t i = gt_find(t, base);
	struct gblk *b = gt_get(t, i);
	size_t p = ent_last_le(b, base), n = gb_n(b);
	if (gb_base(b, p) != base || gb_slot(b, p) != sl)
		return -ENOENT;
	if (n == 1) {
		if (gm_reclaim_reserve(&s->reclaim, 2))
			return -ENOMEM;
		struct gtop *nt = gt_splice(s, t, i, NULL, 0);
		if (!nt)
			return -ENOMEM;
		atomic_store_explicit(pt, nt, memory_order_release);
		gm_reclaim_retire(&s->reclaim, b, GB_BYTES);
		gm_reclaim_retire(&s->reclaim, t, gt_bytes(t));
		return 0;
	}
	for (size_t q = p; q + 1 < n; q++)
		gb_move1(b, q, b, q + 1);
	gb_set_n(b, n - 1);
	return 0;
}

/* The radix against the ents: nb and shift as gt_new sets them, rad[k]
 * the block of bucket k's first key, rad[nb] = n - 1, ent[n] the MAX
 * sentinel (so every bucket's blocks are rad[k]..rad[k + 1]). */
static const char *gt_check_buckets(const struct gtop *t)
{
	const struct gent *e = gt_ent(t);
	const uint32_t *rad = gt_rad(t);
	uint64_t target = 1;
	while (target < 2 * t->n)
		target *= 2;
	uint64_t last_sep = e[t->n - 1].sep;
	if (t->shift > 63 || t->nb != (last_sep >> t->shift) + 1 || t->nb > target ||
	    (t->shift && (last_sep >> (t->shift - 1)) < target))
		return "gfn index: bucket count or shift not the least that fits";
	if (e[t->n].sep != UINT64_MAX)
		return "gfn index: ent[n] not the MAX sentinel";
	if (rad[t->nb] != t->n - 1)
		return "gfn index: rad[nb] != n - 1";
	for (uint64_t k = 0; k < t->nb; k++) {
		uint64_t first = k << t->shift;
		if (rad[k] >= t->n || e[rad[k]].sep > first || e[rad[k] + 1].sep <= first)
			return "gfn index: rad[k] not the block of bucket k's first key";
	}
	return NULL;
}

/* Structure only (never dereferences slots): seps, block sizes, keys
 * sorted inside their block's bounds, ranges disjoint. Count in *count. */
static const char *gidx_check(const struct gtop *t, uint64_t *count)
{
	*count = 0;
	if (!t || !t->n)
		return NULL;
	if (gt_sep(t, 0) != 0)
		return "gfn index: sep[0] != 0";
	uint64_t prev_last = 0;
	bool any = false;
	for (uint64_t i = 0; i < t->n; i++) {
		const struct gblk *b = gt_get(t, i);
		if (i && gt_sep(t, i) <= gt_sep(t, i - 1))
			return "gfn index: seps not increasing";
		uint64_t n = b ? atomic_load_explicit(&b->n, memory_order_relaxed) : 0;
		if (n < 1 || n > GB_MAX)
			return "gfn index: empty or overfull block";
		for (uint64_t j = n; j < GB_MAX; j++)
			if (gb_base(b, j) != UINT64_MAX)
				return "gfn index: block padding not UINT64_MAX";
		for (uint64_t j = 0; j < n; j++) {
			uint64_t eb = gb_base(b, j), el = gb_last(b, j);
			if (eb < gt_sep(t, i) || (i + 1 < t->n && eb >= gt_sep(t, i + 1)))
				return "gfn index: key outside its block's bounds";
			if (el < eb)
				return "gfn index: range ends before it starts";
			if (any && eb <= prev_last)
				return "gfn index: ranges overlap or unsorted";
			if (!gb_slot(b, j))
				return "gfn index: entry without slot";
			prev_last = el;
			any = true;
			++*count;
		}
	}
	return gt_check_buckets(t);
}

/* ---- the id index: an open-addressing table, edited in place -------------
 *
 *   +-----+-------+----------------------------------------------+
 *   | cap | count | v[cap]: 0, or tag << 48 | struct slot *       |  cap a power of 2
 *   +-----+-------+----------------------------------------------+
 * Linear probing from hash(id); a slot's id is its key. A cell also holds
 * a 16-bit tag of the id's hash above the pointer (and bit 0 set), so a
 * probe dereferences a slot only when the tag matches (a miss costs no
 * cache miss per probe); a pointer that does not fit in 48 bits is stored
 * as it is (bit 0 clear: always compared by id). Readers may dereference any
 * pointer they find: every pointer ever stored in a layout's table is a
 * slot that stays allocated until a grace period after it left the table.
 * Like gfn blocks, the table of the inactive layout is edited in place
 * (insert into the first empty cell, delete by shifting the run back);
 * a reader there may miss or find anything but retries. Probes are bounded
 * by cap, so a torn table never loops. Load <= 3/4; when an insert would
 * pass it the table is rebuilt at twice the size, published with one
 * release store and the old one retired. It never shrinks.
 */
#define IDTAB_MIN 16
#define IDTAB_PTR ((1ull << 48) - 1)

struct idtab {
	uint64_t cap, count;
	_Atomic uint64_t v[];
};

static size_t idtab_bytes(uint64_t cap)
{
	return sizeof(struct idtab) + cap * sizeof(uint64_t);
}

static inline size_t id_hash(uint32_t id, uint64_t cap)
{
	return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static inline uint64_t id_tag(uint32_t id)
{
	return (((uint64_t)id * 0xD6E8FEB86659FD93ull) >> 48) << 48;
}

static inline uint64_t id_cell(const struct slot *sl)
{
	uint64_t p = (uint64_t)(uintptr_t)sl;
	return p & ~IDTAB_PTR ? p : p | id_tag(sl->pub.id) | 1;
}

static inline struct slot *cell_slot(uint64_t w)
{
	return (struct slot *)(uintptr_t)(w & 1 ? w & IDTAB_PTR & ~1ull : w);
}

static inline uint64_t idtab_word(const struct idtab *t, size_t k)
{
	return atomic_load_explicit(&t->v[k], memory_order_acquire);
}

/* The slot of cell k, or NULL. */
static inline struct slot *idtab_at(const struct idtab *t, size_t k)
{
	return cell_slot(idtab_word(t, k));
}

static struct idtab *idtab_new(struct gm_space *s, uint64_t cap)
{
	struct idtab *t = gm_alloc_mem(s->alloc, idtab_bytes(cap), 64);
	if (t) {
		memset(t, 0, idtab_bytes(cap));
		t->cap = cap;
	}
	return t;
}

/* The cell holding the slot with this id, or -1. Reader or writer; O(1)
 * expected. */
static inline ptrdiff_t idtab_find(const struct idtab *t, uint32_t id)
{
	uint64_t mask = t->cap - 1, tag = id_tag(id);
	size_t k = id_hash(id, t->cap);
	for (uint64_t probes = 0; probes < t->cap; probes++, k = (k + 1) & mask) {
		uint64_t w = idtab_word(t, k);
		if (!w)
			return -1;
		if (!(w & 1) || (w & ~IDTAB_PTR) == tag)
			if (cell_slot(w)->pub.id == id)
				return (ptrdiff_t)k;
	}
	return -1;
}

/* The slot with this id, or NULL. Reader or writer; O(1) expected. */
static struct slot *idtab_load(const struct idtab *t, uint32_t id)
{
	ptrdiff_t k = idtab_find(t, id);
	return k < 0 ? NULL : idtab_at(t, (size_t)k);
}

/* Puts sl (its id absent) into the first empty cell of its probe run. */
static void idtab_put(struct idtab *t, struct slot *sl)
{
	size_t k = id_hash(sl->pub.id, t->cap);
	while (atomic_load_explicit(&t->v[k], memory_order_relaxed))
		k = (k + 1) & (t->cap - 1);
	atomic_store_explicit(&t->v[k], id_cell(sl), memory_order_release);
	t->count++;
}

/* Adds sl (its id must be absent). -ENOMEM (unchanged) only when the table
 * has to grow. Writer; O(1) expected, O(cap) on growth. */
static int idtab_insert(struct gm_space *s, _Atomic(struct idtab *) *pt, struct slot *sl)
{
	struct idtab *t = atomic_load_explicit(pt, memory_order_relaxed);
	if ((t->count + 1) * 4 <= t->cap * 3) {
		idtab_put(t, sl);
		return 0;
	}
	if (gm_reclaim_reserve(&s->reclaim, 1))
		return -ENOMEM;
	struct idtab *nt = idtab_new(s, t->cap * 2);
	if (!nt)
		return -ENOMEM;
	for (size_t k = 0; k < t->cap; k++) {
		struct slot *o = idtab_at(t, k);
		if (o)
			idtab_put(nt, o);
	}
	idtab_put(nt, sl);
	atomic_store_explicit(pt, nt, memory_order_release);
	gm_reclaim_retire(&s->reclaim, t, idtab_bytes(t->cap));
	return 0;
}

/* Removes the slot with this id: -ENOENT if absent. Never allocates.
 * Writer; O(1) expected. */
static int idtab_erase(struct idtab *t, uint32_t id)
{
	uint64_t mask = t->cap - 1;
	ptrdiff_t found = idtab_find(t, id);
	if (found < 0)
		return -ENOENT;
	size_t i = (size_t)found;
	/* backward shift: move later members of the run into the hole when
	 * their home is not in (hole, their cell] (cyclically) */
	for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
		uint64_t w = atomic_load_explicit(&t->v[j], memory_order_relaxed);
		if (!w)
			break;
		size_t h = id_hash(cell_slot(w)->pub.id, t->cap);
		bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
		if (stays)
			continue;
		atomic_store_explicit(&t->v[i], w, memory_order_release);
		i = j;
	}
	atomic_store_explicit(&t->v[i], 0, memory_order_relaxed);
	t->count--;
	return 0;
}

/* Every slot is found from its id; count right. Never dereferences more
 * than the slots' ids. */
static const char *idtab_check(const struct idtab *t)
{
	uint64_t n = 0;
	if (!t || t->cap < IDTAB_MIN || (t->cap & (t->cap - 1)))
		return "id index: missing or bad capacity";
	for (size_t k = 0; k < t->cap; k++) {
		struct slot *sl = idtab_at(t, k);
		if (!sl)
			continue;
		n++;
		if (idtab_load(t, sl->pub.id) != sl)
			return "id index: slot not found from its id (duplicate or broken run)";
	}
	if (n != t->count)
		return "id index: count wrong";
	if (t->count * 4 > t->cap * 3)
		return "id index: load above 3/4";
	return NULL;
}

/* ---- layout index edits ---------------------------------------------------- */

static struct gtop *L_gidx(const struct layout *L)
{
	return atomic_load_explicit(&L->gidx, memory_order_acquire);
}
static struct gm_itree *L_hva(const struct layout *L)
{
	return atomic_load_explicit(&L->hva, memory_order_acquire);
}
static struct idtab *L_ids(const struct layout *L)
{
	return atomic_load_explicit(&L->ids, memory_order_acquire);
}

/* Adds sl to L's three indexes, all or nothing (unless an undo itself runs
 * out of memory: then L is marked broken and rebuilt by the next commit). */
/* The hva index maps a slot's hva range to its id (+1: never NULL), not to
 * the slot object, so a move or a flags change (same id, same hva range:
 * a new slot object) leaves it untouched; readers find the slot from the
 * id in the same layout's id table. */
static void *hva_item(const struct slot *sl)
{
	return (void *)((uintptr_t)sl->pub.id + 1);
}

static int idx_insert(struct layout *L, struct slot *sl)
{
	const struct gm_space_slot *p = &sl->pub;
	int rc = gidx_insert(sl->space, &L->gidx, p->base_gfn, slot_last_gfn(p), p->hva, sl);
	if (rc)
		return rc;
	rc = gm_itree_insert(L_hva(L), p->hva, slot_last_hva(p), hva_item(sl));
	if (rc)
		goto undo_gfn;
	rc = idtab_insert(sl->space, &L->ids, sl);
	if (rc)
		goto undo_hva;
	atomic_fetch_or(&sl->member, 1u << L->index);
	L->nslots++;
	return 0;
undo_hva:
	if (gm_itree_remove(L_hva(L), p->hva, slot_last_hva(p), hva_item(sl)))
		L->broken = true;
undo_gfn:
	if (gidx_erase(sl->space, &L->gidx, p->base_gfn, sl))
		L->broken = true;
	return rc;
}

static int idx_remove(struct layout *L, struct slot *sl)
{
	const struct gm_space_slot *p = &sl->pub;
	int rc = idtab_erase(L_ids(L), p->id);
	if (rc)
		return rc;
	rc = gm_itree_remove(L_hva(L), p->hva, slot_last_hva(p), hva_item(sl));
	if (rc)
		goto undo_id;
	rc = gidx_erase(sl->space, &L->gidx, p->base_gfn, sl);
	if (rc)
		goto undo_hva;
	atomic_fetch_and(&sl->member, ~(1u << L->index));
	L->nslots--;
	return 0;
undo_hva:
	if (gm_itree_insert(L_hva(L), p->hva, slot_last_hva(p), hva_item(sl)))
		L->broken = true;
undo_id:
	if (idtab_insert(sl->space, &L->ids, sl))
		L->broken = true;
	return rc;
}

/* In L, slot `from` becomes slot `to`: same id and same hva range (a move
 * or a flags change), so the hva index stays as it is, the id cell gets
 * the new pointer and the gfn entry is replaced (in place when the base is
 * the same). All or nothing, unless the undo runs out of memory (then L is
 * marked broken). -EEXIST, -ENOMEM, -ENOENT. */
static int idx_replace(struct layout *L, struct slot *from, struct slot *to)
{
	struct gm_space *s = from->space;
	const struct gm_space_slot *f = &from->pub, *p = &to->pub;
	struct idtab *it = L_ids(L);
	ptrdiff_t cell = idtab_find(it, f->id);
	if (cell < 0 || idtab_at(it, (size_t)cell) != from)
		return -ENOENT;
	int rc;
	if (f->base_gfn == p->base_gfn) {
		const struct gblk *cb;
		size_t j;
		if (!gidx_find(L_gidx(L), f->base_gfn, &cb, &j) || gb_slot(cb, j) != from)
			return -ENOENT;
		atomic_store_explicit(&((struct gblk *)(uintptr_t)cb)->slot[j], to,
				      memory_order_relaxed);
	} else {
		rc = gidx_erase(s, &L->gidx, f->base_gfn, from);
		if (rc)
			return rc;
		rc = gidx_insert(s, &L->gidx, p->base_gfn, slot_last_gfn(p), p->hva, to);
		if (rc) {
			if (gidx_insert(s, &L->gidx, f->base_gfn, slot_last_gfn(f), f->hva, from))
				L->broken = true;
			return rc;
		}
	}
	atomic_store_explicit(&it->v[cell], id_cell(to), memory_order_release);
	atomic_fetch_and(&from->member, ~(1u << L->index));
	atomic_fetch_or(&to->member, 1u << L->index);
	return 0;
}

/* A deletion of d followed by an addition of a: a replacement of d by a
 * when they share the id and the hva range. */
static bool is_replace(const struct change *d, const struct change *a)
{
	const struct gm_space_slot *x = &d->slot->pub, *y = &a->slot->pub;
	return !d->add && a->add && x->id == y->id && x->hva == y->hva &&
	       x->npages == y->npages;
}

static int apply_change(struct layout *L, const struct change *c)
{
	return c->add ? idx_insert(L, c->slot) : idx_remove(L, c->slot);
}

static int undo_change(struct layout *L, const struct change *c)
{
	return c->add ? idx_remove(L, c->slot) : idx_insert(L, c->slot);
}

/* Undoes v[0..n) (applied in order), last first; a failed undo marks L
 * broken. */
static void undo_changes(struct layout *L, const struct change *v, size_t n)
{
	while (n > 0) {
		if (n >= 2 && is_replace(&v[n - 2], &v[n - 1])) {
			if (idx_replace(L, v[n - 1].slot, v[n - 2].slot))
				L->broken = true;
			n -= 2;
			continue;
		}
		if (undo_change(L, &v[--n]))
			L->broken = true;
	}
}

/* Applies v[0..n) in order, all or nothing (see undo_changes). */
static int apply_changes(struct layout *L, const struct change *v, size_t n)
{
	size_t i = 0;
	int rc = 0;
	while (i < n) {
		if (i + 1 < n && is_replace(&v[i], &v[i + 1])) {
			rc = idx_replace(L, v[i].slot, v[i + 1].slot);
			if (rc)
				break;
			i += 2;
			continue;
		}
		rc = apply_change(L, &v[i]);
		if (rc)
			break;
		i++;
	}
	if (rc)
		undo_changes(L, v, i);
	return rc;
}

/* ---- index objects --------------------------------------------------------- */

/* Frees the indexes at once: no reader can reach them. */
static void idx_destroy(struct gm_space *s, struct gtop *g,
			struct gm_itree *h, struct idtab *ids)
{
	gidx_free_all(s, g, false);
	gm_itree_destroy(h);
	if (ids)
		gm_alloc_release(s->alloc, ids, idtab_bytes(ids->cap));
}

/* The gfn index starts empty (NULL top). */
static int idx_create(struct gm_space *s, struct gtop **g,
		      struct gm_itree **h, struct idtab **ids)
{
	*g = NULL;
	*h = NULL;
	*ids = idtab_new(s, IDTAB_MIN);
	if (!*ids)
		return -ENOMEM;
	if (gm_itree_create(h, GM_RCU, s->alloc))
		goto fail;
	return 0;
fail:
	idx_destroy(s, *g, *h, *ids);
	*g = NULL;
	*h = NULL;
	*ids = NULL;
	return -ENOMEM;
}

/* Rebuilds a broken layout from the active one: new indexes are built
 * aside, then swapped in; the old ones are destroyed (after a grace
 * period: only late readers can still be in them). Never dereferences the
 * broken layout's slot pointers (some may be freed). */
static int layout_rebuild(struct gm_space *s, struct layout *L)
{
	struct layout *A = atomic_load_explicit(&s->active, memory_order_relaxed);
	struct layout tmp = {.index = L->index};
	struct gtop *g;
	struct gm_itree *h;
	struct idtab *ids;
	if (idx_create(s, &g, &h, &ids))
		return -ENOMEM;
	atomic_init(&tmp.gidx, g);
	atomic_init(&tmp.hva, h);
	atomic_init(&tmp.ids, ids);
	const struct idtab *at = L_ids(A);
	for (size_t k = 0; k < at->cap; k++) {
		struct slot *v = idtab_at(at, k);
		if (v && idx_insert(&tmp, v)) {
			/* member bits set so far for L are harmless: L is
			 * broken and bits are re-derived on success. */
			idx_destroy(s, L_gidx(&tmp), h, L_ids(&tmp));
			return -ENOMEM;
		}
	}
	g = L_gidx(&tmp);
	struct gtop *og = L_gidx(L);
	if (gm_reclaim_reserve(&s->reclaim, (og ? og->n : 0) + 2)) {
		idx_destroy(s, g, h, L_ids(&tmp));
		return -ENOMEM;
	}
	struct gm_itree *oh = L_hva(L);
	struct idtab *oi = L_ids(L);
	atomic_store_explicit(&L->gidx, g, memory_order_release);
	atomic_store_explicit(&L->hva, h, memory_order_release);
	atomic_store_explicit(&L->ids, L_ids(&tmp), memory_order_release);
	gidx_free_all(s, og, true); /* late readers may still be in them */
	gm_reclaim_retire(&s->reclaim, oi, idtab_bytes(oi->cap));
	idx_destroy(s, NULL, oh, NULL);
	L->nslots = tmp.nslots;
	L->broken = false;
	/* member bits for L: exactly the slots now in it */
	for (size_t i = 0; i < s->log.n; i++)
		if (!s->log.v[i].add)
			atomic_fetch_and(&s->log.v[i].slot->member, ~(1u << L->index));
	return 0;
}

/* ---- create / destroy ------------------------------------------------------ */

int gm_space_create(struct gm_space **out, const struct gm_space_config *config,
		    unsigned flags, const struct gm_allocator *alloc)
{
	if (!out || (flags & ~GM_RCU))
		return -EINVAL;
	uint32_t max = config && config->max_slots ? config->max_slots
						   : GM_SPACE_DEFAULT_MAX_SLOTS;
	unsigned host_shift = config && config->host_page_shift ? config->host_page_shift
								 : PAGE_SHIFT;
	if (max > (1u << 31) || host_shift < PAGE_SHIFT || host_shift > 30)
		return -EINVAL;
	if (!alloc)
		alloc = gm_alloc_default();
	struct gm_space *s = gm_alloc_mem(alloc, sizeof(*s), 64);
	if (!s)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	s->alloc = alloc;
	s->max_slots = max;
	s->host_page_shift = host_shift;
	gm_reclaim_init(&s->reclaim, alloc, true);
	for (int i = 0; i < 2; i++) {
		struct gtop *g;
		struct gm_itree *h;
		struct idtab *ids;
		if (idx_create(s, &g, &h, &ids)) {
			if (i)
				idx_destroy(s, L_gidx(&s->lay[0]), L_hva(&s->lay[0]),
					    L_ids(&s->lay[0]));
			gm_alloc_release(alloc, s, sizeof(*s));
			return -ENOMEM;
		}
		s->lay[i].index = (unsigned)i;
		atomic_init(&s->lay[i].gidx, g);
		atomic_init(&s->lay[i].hva, h);
		atomic_init(&s->lay[i].ids, ids);
	}
	s->generation = 1;
	atomic_store_explicit(&s->lay[0].generation, 1, memory_order_relaxed);
	atomic_store_explicit(&s->active, &s->lay[0], memory_order_release);
	__atomic_store_n(&s->head.generation, 1, __ATOMIC_RELEASE);
	*out = s;
	return 0;
}

static void lazy_map_destroy(_Atomic(struct gm_rangemap *) *pm)
{
	struct gm_rangemap *m = atomic_load(pm);
	if (!m)
		return;
	gm_rangemap_destroy(m);
	atomic_store(pm, NULL);
}

static void attr_destroy(struct gm_space *s);

void gm_space_destroy(struct gm_space *s)
{
	if (!s)
		return;
	gm_rcu_synchronize();
	struct layout *A = atomic_load(&s->active);
	const struct idtab *at = L_ids(A);
	for (size_t k = 0; k < at->cap; k++)
		if (idtab_at(at, k))
			slot_free(idtab_at(at, k));
	for (size_t i = 0; i < s->log.n; i++)
		if (!s->log.v[i].add)
			slot_free(s->log.v[i].slot);
	for (int i = 0; i < 2; i++)
		idx_destroy(s, L_gidx(&s->lay[i]), L_hva(&s->lay[i]), L_ids(&s->lay[i]));
	for (int k = 0; k < 2; k++) {
		struct gm_rangemap *m = atomic_load(&s->io[k]);
		if (!m)
			continue;
		struct gm_rangemap_iter c;
		struct gm_range r;
		gm_rangemap_iter_init(&c, m, 0, UINT64_MAX, 0);
		while (gm_rangemap_iter_next(&c, &r) == 0)
			gm_alloc_release(s->alloc, (void *)(uintptr_t)r.value,
					 sizeof(struct gm_space_io));
		lazy_map_destroy(&s->io[k]);
	}
	lazy_map_destroy(&s->wp);
	attr_destroy(s);
	gm_alloc_release(s->alloc, s->ops, s->cap_ops * sizeof(*s->ops));
	gm_alloc_release(s->alloc, s->log.v, s->log.cap * sizeof(struct change));
	gm_alloc_release(s->alloc, s->cur.v, s->cur.cap * sizeof(struct change));
	/* retired slots: their first callback queues a second one */
	gm_rcu_barrier();
	gm_rcu_barrier();
	slot_list_free(s, s->slot_stash);
	slot_list_free(s, atomic_load_explicit(&s->slot_ready, memory_order_acquire));
	gm_reclaim_destroy(&s->reclaim);
	gm_alloc_release(s->alloc, s, sizeof(*s));
}

/* ---- batches ----------------------------------------------------------------- */

void gm_space_batch_begin(struct gm_space *s)
{
	if (s)
		s->nops = 0;
}

void gm_space_batch_abort(struct gm_space *s)
{
	if (s)
		s->nops = 0;
}

static int push_op(struct gm_space *s, struct op op)
{
	if (s->nops == s->cap_ops) {
		size_t cap = s->cap_ops ? s->cap_ops * 2 : 8;
		struct op *v = gm_alloc_mem(s->alloc, cap * sizeof(*v), _Alignof(struct op));
		if (!v)
			return -ENOMEM;
		if (s->nops)
			memcpy(v, s->ops, s->nops * sizeof(*v));
		gm_alloc_release(s->alloc, s->ops, s->cap_ops * sizeof(*v));
		s->ops = v;
		s->cap_ops = cap;
	}
	s->ops[s->nops++] = op;
	return 0;
}

int gm_space_batch_add(struct gm_space *s, uint32_t id, uint64_t base_gfn,
		       uint64_t npages, uint64_t hva, uint32_t flags)
{
	if (!s || (flags & ~SLOT_FLAGS) || !slot_shape_ok(s, base_gfn, npages, hva))
		return -EINVAL;
	return push_op(s, (struct op){OP_ADD, id, flags, base_gfn, npages, hva});
}

int gm_space_batch_remove(struct gm_space *s, uint32_t id)
{
	if (!s)
		return -EINVAL;
	return push_op(s, (struct op){.kind = OP_DELETE, .id = id});
}

int gm_space_batch_move(struct gm_space *s, uint32_t id, uint64_t new_base_gfn)
{
	if (!s)
		return -EINVAL;
	return push_op(s, (struct op){.kind = OP_MOVE, .id = id, .base = new_base_gfn});
}

int gm_space_batch_resize(struct gm_space *s, uint32_t id, uint64_t new_npages)
{
	if (!s || new_npages == 0)
		return -EINVAL;
	return push_op(s, (struct op){.kind = OP_RESIZE, .id = id, .npages = new_npages});
}

int gm_space_batch_set_flags(struct gm_space *s, uint32_t id, uint32_t flags)
{
	if (!s || (flags & ~SLOT_FLAGS))
		return -EINVAL;
	return push_op(s, (struct op){.kind = OP_FLAGS, .id = id, .flags = flags});
}

static int changes_reserve(struct gm_space *s, struct changes *c, size_t n)
{
	if (c->cap >= n)
		return 0;
	size_t cap = c->cap ? c->cap : 8;
	while (cap < n)
		cap *= 2;
	struct change *v = gm_alloc_mem(s->alloc, cap * sizeof(*v), _Alignof(struct change));
	if (!v)
		return -ENOMEM;
	if (c->n)
		memcpy(v, c->v, c->n * sizeof(*v));
	gm_alloc_release(s->alloc, c->v, c->cap * sizeof(*v));
	c->v = v;
	c->cap = cap;
	return 0;
}

static void edit_begin(struct layout *L)
{
	uint64_t seq = atomic_load_explicit(&L->seq, memory_order_relaxed);
	if (!(seq & 1))
		atomic_store_explicit(&L->seq, seq + 1, SEQ_ORDER);
	atomic_store_explicit(&L->generation, 0, SEQ_ORDER);
	atomic_store_explicit(&L->hint, NULL, SEQ_ORDER);
	SEQ_FENCE_WRITER();
}

static void edit_end(struct layout *L)
{
	uint64_t seq = atomic_load_explicit(&L->seq, memory_order_relaxed);
	atomic_store_explicit(&L->seq, seq + 1, memory_order_release);
}

/* Brings L up to the active layout: replays the previous commit's changes
 * (or rebuilds L), then retires the slots that previous commit deleted. */
static int catch_up(struct gm_space *s, struct layout *L)
{
	int rc = 0;
	if (L->broken) {
		rc = layout_rebuild(s, L);
	} else {
		rc = apply_changes(L, s->log.v, s->log.n);
	}
	if (rc)
		return rc;
	for (size_t i = 0; i < s->log.n; i++)
		if (!s->log.v[i].add)
			slot_retire(s->log.v[i].slot);
	s->log.n = 0;
	return 0;
}

static struct slot *id_lookup_writer(struct layout *L, uint32_t id)
{
	return idtab_load(L_ids(L), id);
}

static int record(struct gm_space *s, struct layout *L, struct slot *sl, bool add)
{
	struct change c = {sl, add};
	int rc = apply_change(L, &c);
	if (rc)
		return rc;
	s->cur.v[s->cur.n++] = c;
	return 0;
}

static int apply_op(struct gm_space *s, struct layout *L, const struct op *op)
{
	struct slot *old = id_lookup_writer(L, op->id), *sl;
	uint64_t base, npages, hva;
	uint32_t flags;
	int rc;
	if (op->kind == OP_ADD) {
		if (old)
			return -EEXIST;
		if (L->nslots >= s->max_slots)
			return -ENOSPC;
		base = op->base, npages = op->npages, hva = op->hva, flags = op->flags;
	} else {
		if (!old)
			return -ENOENT;
		if (op->kind == OP_DELETE)
			return record(s, L, old, false);
		base = old->pub.base_gfn, npages = old->pub.npages;
		hva = old->pub.hva, flags = old->pub.flags;
		if (op->kind == OP_MOVE)
			base = op->base;
		else if (op->kind == OP_RESIZE)
			npages = op->npages;
		else
			flags = op->flags;
		if (!slot_shape_ok(s, base, npages, hva))
			return -EINVAL;
	}
	sl = slot_new(s, op->id, base, npages, hva, flags);
	if (!sl)
		return -ENOMEM;
	if (old && old->pub.hva == hva && old->pub.npages == npages) {
		if ((rc = idx_replace(L, old, sl)))
			goto fail;
		s->cur.v[s->cur.n++] = (struct change){old, false};
		s->cur.v[s->cur.n++] = (struct change){sl, true};
		return 0;
	}
	if (old && (rc = record(s, L, old, false)))
		goto fail;
	if ((rc = record(s, L, sl, true)))
		goto fail;
	return 0;
fail:
	slot_retire(sl); /* a late reader of L may have seen it */
	return rc;
}

int gm_space_batch_commit(struct gm_space *s)
{
	if (!s)
		return -EINVAL;
	if (!s->nops)
		return 0;
	struct layout *L = inactive_of(s);
	int rc = changes_reserve(s, &s->cur, 2 * s->nops);
	if (rc)
		goto out;
	edit_begin(L);
	rc = catch_up(s, L);
	if (rc)
		goto out; /* L stays odd (being edited) until a commit succeeds */
	s->cur.n = 0;
	for (size_t i = 0; i < s->nops && !rc; i++)
		rc = apply_op(s, L, &s->ops[i]);
	if (rc) {
		undo_changes(L, s->cur.v, s->cur.n);
		for (size_t i = 0; i < s->cur.n; i++)
			if (s->cur.v[i].add)
				slot_retire(s->cur.v[i].slot);
		s->cur.n = 0;
		goto out;
	}
	atomic_store_explicit(&L->generation, ++s->generation, memory_order_release);
	edit_end(L);
	atomic_store_explicit(&s->active, L, memory_order_release);
	__atomic_store_n(&s->head.generation, s->generation, __ATOMIC_RELEASE);
	/* recycled slots kept: about what a grace period of churn retires */
	atomic_store_explicit(&s->slot_keep, 64 + L->nslots / 8, memory_order_relaxed);
	struct changes t = s->log;
	s->log = s->cur;
	s->cur = t;
	s->cur.n = 0;
out:
	s->nops = 0;
	return rc;
}

/* The simple form: one change in a batch of its own (a batch of an
 * unknown space is refused by batch_add and friends, -EINVAL). */
static int one_change(struct gm_space *s, int recorded)
{
	return recorded ? recorded : gm_space_batch_commit(s);
}

int gm_space_slot_add(struct gm_space *s, uint32_t id, uint64_t base_gfn,
		      uint64_t npages, uint64_t hva, uint32_t flags)
{
	gm_space_batch_begin(s);
	return one_change(s, gm_space_batch_add(s, id, base_gfn, npages, hva, flags));
}

int gm_space_slot_remove(struct gm_space *s, uint32_t id)
{
	gm_space_batch_begin(s);
	return one_change(s, gm_space_batch_remove(s, id));
}

int gm_space_slot_move(struct gm_space *s, uint32_t id, uint64_t new_base_gfn)
{
	gm_space_batch_begin(s);
	return one_change(s, gm_space_batch_move(s, id, new_base_gfn));
}

int gm_space_slot_resize(struct gm_space *s, uint32_t id, uint64_t new_npages)
{
	gm_space_batch_begin(s);
	return one_change(s, gm_space_batch_resize(s, id, new_npages));
}

int gm_space_slot_set_flags(struct gm_space *s, uint32_t id, uint32_t flags)
{
	gm_space_batch_begin(s);
	return one_change(s, gm_space_batch_set_flags(s, id, flags));
}

/* ---- readers ------------------------------------------------------------- */

void gm_space_cache_init(struct gm_space_cache *c)
{
	if (c)
		memset(c, 0, sizeof(*c));
}

/* A reader's view of one layout: enter (seq even) ... valid (seq same). */
static struct layout *view_enter(const struct gm_space *s, uint64_t *seq)
{
	for (;;) {
		struct layout *L = atomic_load_explicit(&s->active, memory_order_acquire);
		*seq = atomic_load_explicit(&L->seq, memory_order_acquire);
		if (!(*seq & 1))
			return L;
	}
}

static bool view_valid(struct layout *L, uint64_t seq)
{
	SEQ_FENCE_READER();
	return atomic_load_explicit(&L->seq, SEQ_ORDER) == seq;
}

static bool slot_has(const struct gm_space_slot *p, uint64_t gfn)
{
	return gfn - p->base_gfn < p->npages;
}

struct hit {
	struct slot *slot;
	uint64_t base, npages, hva;
};

/* The slot holding gfn from one consistent layout (retrying, never
 * waiting, if the layout was edited meanwhile). With a per-thread cache
 * the shared hint is neither read nor written: the cache replaces it, and
 * the vCPU threads then share no written cache line. Fills cache. */
static bool lookup(const struct gm_space *s, struct gm_space_cache *cache, uint64_t gfn,
		   bool want_slot, struct hit *out)
{
	uint64_t seq, gen;
	struct layout *L;
	struct slot *h = NULL;
	bool found;
	do {
		L = view_enter(s, &seq);
		gen = atomic_load_explicit(&L->generation, memory_order_relaxed);
		if (!cache)
			h = atomic_load_explicit(&L->hint, memory_order_acquire);
		if (h && slot_has(&h->pub, gfn) &&
		    (atomic_load_explicit(&h->member, memory_order_relaxed) & (1u << L->index))) {
			*out = (struct hit){h, h->pub.base_gfn, h->pub.npages, h->pub.hva};
			found = true;
		} else {
			const struct gblk *b;
			size_t j;
			found = gidx_find(L_gidx(L), gfn, &b, &j);
			if (found) {
				uint64_t eb = gb_base(b, j);
				*out = (struct hit){want_slot ? gb_slot(b, j) : NULL,
						    eb, gb_last(b, j) - eb + 1, gb_hva(b, j)};
			}
		}
	} while (!view_valid(L, seq));
	if (!found)
		return false;
	if (cache) {
		cache->slot = out->slot ? &out->slot->pub : NULL;
		cache->base_gfn = out->base;
		cache->npages = out->npages;
		cache->hva = out->hva;
		cache->generation = gen;
	} else if (out->slot != h) {
		atomic_store_explicit(&L->hint, out->slot, memory_order_release);
	}
	return true;
}

int gm_space_gfn_to_slot(const struct gm_space *s, struct gm_space_cache *cache,
			 uint64_t gfn, const struct gm_space_slot **out)
{
	if (GM_UNLIKELY(!s || !out))
		return -EINVAL;
	if (cache && cache->slot &&
	    cache->generation == __atomic_load_n(&s->head.generation, __ATOMIC_ACQUIRE) &&
	    gfn - cache->base_gfn < cache->npages) {
		*out = cache->slot;
		return 0;
	}
	struct hit r;
	if (!lookup(s, cache, gfn, true, &r))
		return -ENOENT;
	*out = &r.slot->pub;
	return 0;
}

/* Fills cache with [base, last] -> h of generation gen; the hva of gfn. */
static inline __attribute__((always_inline)) uint64_t
cache_fill(struct gm_space_cache *cache, uint64_t gen, uint64_t base, uint64_t last,
	   uint64_t h, uint64_t gfn)
{
	cache->slot = NULL;
	cache->base_gfn = base;
	cache->npages = last - base + 1;
	cache->hva = h;
	cache->generation = gen;
	return h + ((gfn - base) << PAGE_SHIFT);
}

/* The translation miss with a cache, every case (gidx_find): where the
 * fast path below hands over. */
static __attribute__((noinline)) int
translate_cold(const struct gm_space *s, struct gm_space_cache *cache, uint64_t gfn, uint64_t *hva)
{
	uint64_t seq, gen, base, last, h;
	struct layout *L;
	bool found;
	do {
		L = view_enter(s, &seq);
		gen = atomic_load_explicit(&L->generation, memory_order_relaxed);
		const struct gblk *b;
		size_t j;
		found = gidx_find(L_gidx(L), gfn, &b, &j);
		base = found ? gb_base(b, j) : 0;
		last = found ? gb_last(b, j) : 0;
		h = found ? gb_hva(b, j) : 0;
	} while (!view_valid(L, seq));
	if (!found)
		return -ENOENT;
	*hva = cache_fill(cache, gen, base, last, h, gfn);
	return 0;
}

/* Without a cache: through the shared hint (lookup). */
static __attribute__((noinline)) int
translate_uncached(const struct gm_space *s, uint64_t gfn, uint64_t *hva)
{
	struct hit r;
	if (!lookup(s, NULL, gfn, false, &r))
		return -ENOENT;
	*hva = r.hva + ((gfn - r.base) << PAGE_SHIFT);
	return 0;
}

/* With a cache (a vCPU's), the translation miss path is this loop alone:
 * no shared hint, no slot pointer (it would cost one more dependent cache
 * miss), nothing but the layout's header and the gfn index touched. The
 * common case (gidx_find_fast) runs here without a call, so the function
 * needs no stack frame; anything else tail-calls translate_cold, which
 * starts over. */
int gm_space_gfn_to_hva_slow(const struct gm_space *s, struct gm_space_cache *cache,
			     uint64_t gfn, uint64_t *hva)
{
	if (GM_UNLIKELY(!s || !hva))
		return -EINVAL;
	if (GM_UNLIKELY(cache == NULL))
		return translate_uncached(s, gfn, hva);
	struct layout *L = atomic_load_explicit(&s->active, memory_order_acquire);
	uint64_t seq = atomic_load_explicit(&L->seq, memory_order_acquire);
	uint64_t gen = atomic_load_explicit(&L->generation, memory_order_relaxed);
	size_t j;
	const struct gblk *b = gidx_find_fast(L_gidx(L), gfn, &j);
	if (GM_UNLIKELY(!b) || GM_UNLIKELY(seq & 1))
		return translate_cold(s, cache, gfn, hva);
	uint64_t base = gb_base(b, j), last = gb_last(b, j), h = gb_hva(b, j);
	if (GM_UNLIKELY(base > gfn) || GM_UNLIKELY(gfn == UINT64_MAX) ||
	    GM_UNLIKELY(!view_valid(L, seq)))
		return translate_cold(s, cache, gfn, hva);
	if (GM_UNLIKELY(gfn > last))
		return -ENOENT;
	*hva = cache_fill(cache, gen, base, last, h, gfn);
	return 0;
}

const struct gm_space_slot *gm_space_id_to_slot(const struct gm_space *s, uint32_t id)
{
	uint64_t seq;
	struct layout *L;
	struct slot *sl;
	if (!s)
		return NULL;
	do {
		L = view_enter(s, &seq);
		sl = idtab_load(L_ids(L), id);
	} while (!view_valid(L, seq));
	return sl ? &sl->pub : NULL;
}

int64_t gm_space_hva_fill(const struct gm_space *s, uint64_t a, uint64_t b,
			  struct gm_space_hva_hit *hits, size_t max)
{
	if (!s || a > b || (max && !hits))
		return -EINVAL;
	uint64_t seq;
	struct layout *L;
	size_t n;
	do {
		L = view_enter(s, &seq);
		struct gm_itree_iter it;
		struct gm_itree_entry e;
		n = 0;
		gm_itree_iter_init(&it, L_hva(L), a, b, 0);
		const struct idtab *ids = L_ids(L);
		while (gm_itree_iter_next(&it, &e) == 0) {
			if (n < max) {
				/* the item is the id + 1 (see hva_item); NULL
				 * only in a torn view, which the retry drops */
				const struct slot *sl =
					idtab_load(ids, (uint32_t)((uintptr_t)e.item - 1));
				if (!sl)
					continue;
				uint64_t lo = a > e.first ? a : e.first;
				uint64_t hi = b < e.last ? b : e.last;
				hits[n].slot = &sl->pub;
				hits[n].first_gfn = sl->pub.base_gfn + ((lo - e.first) >> PAGE_SHIFT);
				hits[n].last_gfn = sl->pub.base_gfn + ((hi - e.first) >> PAGE_SHIFT);
			}
			n++;
		}
	} while (!view_valid(L, seq));
	return (int64_t)n;
}

uint64_t gm_space_generation(const struct gm_space *s)
{
	uint64_t seq, gen;
	struct layout *L;
	if (!s)
		return 0;
	do {
		L = view_enter(s, &seq);
		gen = atomic_load_explicit(&L->generation, memory_order_relaxed);
	} while (!view_valid(L, seq));
	return gen;
}

uint64_t gm_space_slot_count(const struct gm_space *s)
{
	if (!s)
		return 0;
	return atomic_load_explicit(&s->active, memory_order_relaxed)->nslots;
}

/* ---- attributes ------------------------------------------------------------ */

static void attr_destroy(struct gm_space *s)
{
	uintptr_t w = atomic_load(&s->attr);
	if (w & ATTR_MAP_TAG) {
		struct gm_rangemap *m = (struct gm_rangemap *)(w & ~(uintptr_t)ATTR_MAP_TAG);
		gm_rangemap_destroy(m);
	} else if (w) {
		gm_alloc_release(s->alloc, (void *)w, sizeof(struct attr_one));
	}
	atomic_store(&s->attr, 0);
}

/* The ranges of (one range) overwritten by [first, last] = value: at most 3,
 * sorted, non-zero values only, touching equal ranges merged. */
static size_t attr_combine(const struct attr_one *one, uint64_t first,
			   uint64_t last, uint64_t value, struct attr_one out[3])
{
	struct attr_one v[3];
	size_t n = 0, m = 0;
	if (one && one->first < first)
		v[n++] = (struct attr_one){one->first, one->last < first - 1 ? one->last : first - 1, one->value};
	if (value)
		v[n++] = (struct attr_one){first, last, value};
	if (one && one->last > last)
		v[n++] = (struct attr_one){one->first > last + 1 ? one->first : last + 1, one->last, one->value};
	for (size_t i = 0; i < n; i++) {
		if (m && out[m - 1].value == v[i].value && out[m - 1].last + 1 == v[i].first)
			out[m - 1].last = v[i].last;
		else
			out[m++] = v[i];
	}
	return m;
}

int gm_space_attr_set(struct gm_space *s, uint64_t first, uint64_t last, uint64_t value)
{
	if (!s || first > last)
		return -EINVAL;
	uintptr_t w = atomic_load_explicit(&s->attr, memory_order_relaxed);
	if (w & ATTR_MAP_TAG) {
		struct gm_rangemap *m = (struct gm_rangemap *)(w & ~(uintptr_t)ATTR_MAP_TAG);
		return value ? gm_rangemap_store(m, first, last, value)
			     : gm_rangemap_remove(m, first, last);
	}
	struct attr_one *one = (struct attr_one *)w, out[3];
	size_t n = attr_combine(one, first, last, value, out);
	if (one && gm_reclaim_reserve(&s->reclaim, 1))
		return -ENOMEM;
	uintptr_t nw = 0;
	if (n == 1) {
		struct attr_one *o = gm_alloc_mem(s->alloc, sizeof(*o), 8);
		if (!o)
			return -ENOMEM;
		*o = out[0];
		nw = (uintptr_t)o;
	} else if (n > 1) {
		struct gm_rangemap *m;
		if (gm_rangemap_create(&m, GM_RCU, s->alloc))
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			if (gm_rangemap_store(m, out[i].first, out[i].last, out[i].value)) {
				gm_rangemap_destroy(m);
				return -ENOMEM;
			}
		}
		nw = (uintptr_t)m | ATTR_MAP_TAG;
	}
	atomic_store_explicit(&s->attr, nw, memory_order_release);
	if (one) {
		gm_reclaim_retire(&s->reclaim, one, sizeof(*one));
		gm_reclaim_flush(&s->reclaim);
	}
	return 0;
}

uint64_t gm_space_attr_get(const struct gm_space *s, uint64_t gfn)
{
	if (!s)
		return 0;
	uintptr_t w = atomic_load_explicit(&s->attr, memory_order_acquire);
	if (!w)
		return 0;
	if (w & ATTR_MAP_TAG) {
		uint64_t v;
		const struct gm_rangemap *m = (const struct gm_rangemap *)(w & ~(uintptr_t)ATTR_MAP_TAG);
		return gm_rangemap_load(m, gfn, &v, NULL, NULL) ? 0 : v;
	}
	const struct attr_one *o = (const struct attr_one *)w;
	return gfn >= o->first && gfn <= o->last ? o->value : 0;
}

bool gm_space_attr_all(const struct gm_space *s, uint64_t first, uint64_t last, uint64_t value)
{
	if (!s || first > last)
		return false;
	uintptr_t w = atomic_load_explicit(&s->attr, memory_order_acquire);
	if (!w)
		return value == 0;
	if (w & ATTR_MAP_TAG) {
		uint64_t v = 0, lo, hi;
		const struct gm_rangemap *m = (const struct gm_rangemap *)(w & ~(uintptr_t)ATTR_MAP_TAG);
		int rc = gm_rangemap_load(m, first, &v, &lo, &hi);
		if (rc)
			v = 0;
		return v == value && hi >= last;
	}
	const struct attr_one *o = (const struct attr_one *)w;
	if (value)
		return o->value == value && first >= o->first && last <= o->last;
	return last < o->first || first > o->last;
}

/* ---- write tracking ------------------------------------------------------------ */

static int wp_inc(void *ctx, const struct gm_range *piece, bool present, uint64_t *value)
{
	(void)ctx;
	(void)piece;
	if (!present) {
		*value = 1;
		return GM_RANGEMAP_SET;
	}
	if (*value >= UINT32_MAX)
		return -EINVAL;
	*value += 1;
	return GM_RANGEMAP_SET;
}

static int wp_dec(void *ctx, const struct gm_range *piece, bool present, uint64_t *value)
{
	(void)ctx;
	(void)piece;
	if (!present)
		return -EINVAL;
	if (*value == 1)
		return GM_RANGEMAP_CLEAR;
	*value -= 1;
	return GM_RANGEMAP_SET;
}

/* The lazily created map behind *pm (RCU mode). */
static struct gm_rangemap *lazy_map(struct gm_space *s, _Atomic(struct gm_rangemap *) *pm,
				    unsigned flags, bool *created)
{
	struct gm_rangemap *m = atomic_load_explicit(pm, memory_order_relaxed);
	*created = false;
	if (m)
		return m;
	if (gm_rangemap_create(&m, GM_RCU | flags, s->alloc))
		return NULL;
	*created = true;
	return m;
}

static void lazy_map_drop(struct gm_rangemap *m)
{
	gm_rangemap_destroy(m);
}

static int wp_update(struct gm_space *s, uint64_t first, uint64_t last, bool inc)
{
	if (!s || first > last)
		return -EINVAL;
	bool created;
	if (!inc && !atomic_load_explicit(&s->wp, memory_order_relaxed))
		return -EINVAL;
	struct gm_rangemap *m = lazy_map(s, &s->wp, 0, &created);
	if (!m)
		return -ENOMEM;
	int rc = gm_rangemap_update(m, first, last, inc ? wp_inc : wp_dec, NULL,
				    GM_RANGEMAP_UPDATE_GAPS);
	if (rc && created)
		lazy_map_drop(m);
	else if (created)
		atomic_store_explicit(&s->wp, m, memory_order_release);
	return rc;
}

int gm_space_protect(struct gm_space *s, uint64_t first, uint64_t last)
{
	if (!s)
		return -EINVAL;
	return wp_update(s, first, last, true);
}

int gm_space_unprotect(struct gm_space *s, uint64_t first, uint64_t last)
{
	if (!s)
		return -EINVAL;
	return wp_update(s, first, last, false);
}

uint64_t gm_space_protect_count(const struct gm_space *s, uint64_t gfn)
{
	if (!s)
		return 0;
	struct gm_rangemap *m = atomic_load_explicit(&s->wp, memory_order_acquire);
	uint64_t v;
	if (!m || gm_rangemap_load(m, gfn, &v, NULL, NULL))
		return 0;
	return v;
}

/* ---- I/O dispatch ------------------------------------------------------------- */

int gm_space_io_add(struct gm_space *s, enum gm_space_io_kind kind,
			 uint64_t first, uint64_t last, gm_space_io_fn fn, void *ctx)
{
	if (!s || first > last || !fn || (kind != GM_SPACE_MMIO && kind != GM_SPACE_PIO))
		return -EINVAL;
	bool created;
	struct gm_rangemap *m = lazy_map(s, &s->io[kind], GM_RANGEMAP_NOCOALESCE, &created);
	if (!m)
		return -ENOMEM;
	struct gm_space_io *io = gm_alloc_mem(s->alloc, sizeof(*io), _Alignof(struct gm_space_io));
	int rc = -ENOMEM;
	if (io) {
		*io = (struct gm_space_io){first, last, fn, ctx};
		rc = gm_rangemap_insert(m, first, last, (uint64_t)(uintptr_t)io);
		if (rc)
			gm_alloc_release(s->alloc, io, sizeof(*io));
	}
	if (rc && created)
		lazy_map_drop(m);
	else if (created)
		atomic_store_explicit(&s->io[kind], m, memory_order_release);
	if (!rc)
		s->io_objects++;
	return rc;
}

int gm_space_io_remove(struct gm_space *s, enum gm_space_io_kind kind, uint64_t first)
{
	if (!s || (kind != GM_SPACE_MMIO && kind != GM_SPACE_PIO))
		return -EINVAL;
	struct gm_rangemap *m = atomic_load_explicit(&s->io[kind], memory_order_relaxed);
	uint64_t v, lo, hi;
	if (!m || gm_rangemap_load(m, first, &v, &lo, &hi) || lo != first)
		return -ENOENT;
	if (gm_reclaim_reserve(&s->reclaim, 1))
		return -ENOMEM;
	int rc = gm_rangemap_remove(m, lo, hi);
	if (rc)
		return rc;
	gm_reclaim_retire(&s->reclaim, (void *)(uintptr_t)v, sizeof(struct gm_space_io));
	gm_reclaim_flush(&s->reclaim);
	s->io_objects--;
	return 0;
}

int gm_space_io_find(const struct gm_space *s, enum gm_space_io_kind kind, uint64_t addr,
		     struct gm_space_io *io)
{
	if (!s || !io || (kind != GM_SPACE_MMIO && kind != GM_SPACE_PIO))
		return -EINVAL;
	struct gm_rangemap *m = atomic_load_explicit(&s->io[kind], memory_order_acquire);
	uint64_t v;
	if (!m || gm_rangemap_load(m, addr, &v, NULL, NULL))
		return -ENOENT;
	*io = *(const struct gm_space_io *)(uintptr_t)v;
	return 0;
}

/* ---- dirty logging ----------------------------------------------------------------- */

int gm_space_dirty_mark(struct gm_space *s, const struct gm_space_slot *p, uint64_t gfn)
{
	struct slot *sl = (struct slot *)p;
	if (GM_UNLIKELY(!s || !p))
		return -EINVAL;
	uint64_t off = gfn - p->base_gfn;
	if (!sl->nchunks || off >= p->npages)
		return -ENOENT;
	uint64_t ci = off >> DC_SHIFT;
	struct dchunk *c = atomic_load_explicit(&sl->chunks[ci], memory_order_acquire);
	if (GM_UNLIKELY(!c)) {
		struct dchunk *fresh = zalloc(s, sizeof(*fresh));
		if (!fresh)
			return -ENOMEM;
		if (atomic_compare_exchange_strong_explicit(&sl->chunks[ci], &c, fresh,
							    memory_order_acq_rel,
							    memory_order_acquire)) {
			c = fresh;
			atomic_fetch_add(&s->dirty_bytes, sizeof(*fresh));
		} else {
			gm_alloc_release(s->alloc, fresh, sizeof(*fresh));
		}
	}
	unsigned wi = (unsigned)(off >> 6) & (DC_WORDS - 1);
	uint64_t bit = 1ull << (off & 63);
	uint64_t old = atomic_fetch_or(&c->w[wi], bit);
	if (old)
		return 0;
	uint64_t sbit = 1ull << (wi & 63);
	uint64_t sold = atomic_fetch_or(&c->sum[wi >> 6], sbit);
	if (sold & sbit)
		return 0;
	atomic_fetch_or(&sl->top[ci >> 6], 1ull << (ci & 63));
	return 0;
}

/* ---- dirty import, harvest, restore; slots in gfn order ------------------
 * They follow dirty_mark's protocol (word, then summary, then top), so they
 * run beside any number of markers; a harvest is the slot's one harvester. */

/* The chunk of chunk index ci, allocated (and CAS-installed, empty) when
 * missing. NULL on -ENOMEM. Installing an empty chunk does not change which
 * frames are dirty. */
static struct dchunk *dchunk_get(struct gm_space *s, struct slot *sl, uint64_t ci)
{
	struct dchunk *c = atomic_load_explicit(&sl->chunks[ci], memory_order_acquire);
	if (GM_LIKELY(c))
		return c;
	struct dchunk *fresh = zalloc(s, sizeof(*fresh));
	if (!fresh)
		return NULL;
	if (atomic_compare_exchange_strong_explicit(&sl->chunks[ci], &c, fresh,
						    memory_order_acq_rel,
						    memory_order_acquire)) {
		atomic_fetch_add(&s->dirty_bytes, sizeof(*fresh));
		return fresh;
	}
	gm_alloc_release(s->alloc, fresh, sizeof(*fresh));
	return c;
}

/* ORs bits into the log word holding slot offset word_off * 64 (its chunk
 * exists), then its summary and top bits, as mark_dirty does. */
static void dword_or(struct slot *sl, uint64_t word_off, uint64_t bits)
{
	if (!bits)
		return;
	uint64_t ci = word_off >> (DC_SHIFT - 6);
	struct dchunk *c = atomic_load_explicit(&sl->chunks[ci], memory_order_acquire);
	unsigned wi = (unsigned)word_off & (DC_WORDS - 1);
	if (atomic_fetch_or(&c->w[wi], bits))
		return;
	uint64_t sbit = 1ull << (wi & 63);
	if (atomic_fetch_or(&c->sum[wi >> 6], sbit) & sbit)
		return;
	atomic_fetch_or(&sl->top[ci >> 6], 1ull << (ci & 63));
}

/* Checks the common arguments; *off gets first_gfn's slot offset. The range
 * [first_gfn, first_gfn + count - 1] must lie in the slot (count >= 1). */
static int dirty_range_args(struct gm_space *s, const struct gm_space_slot *p,
			    uint64_t first_gfn, uint64_t count, uint64_t *off)
{
	if (!s || !p)
		return -EINVAL;
	if (!((const struct slot *)p)->nchunks)
		return -ENOENT;
	uint64_t o = first_gfn - p->base_gfn;
	if (first_gfn < p->base_gfn || o >= p->npages || count > p->npages - o)
		return -EINVAL;
	*off = o;
	return 0;
}

/* Bits [at, at + 64) of a bitmap of nbits bits (zeros past nbits). */
static uint64_t bitmap_window(const uint64_t *bm, uint64_t nbits, uint64_t at)
{
	uint64_t wi = at >> 6, sh = at & 63;
	uint64_t v = bm[wi] >> sh;
	if (sh && (wi + 1) * 64 < nbits)
		v |= bm[wi + 1] << (64 - sh);
	if (nbits - at < 64)
		v &= (1ull << (nbits - at)) - 1;
	return v;
}

/* The 64 bitmap bits that land in log word w (slot offsets w*64 ..
 * w*64+63) when bit 0 lands at slot offset off. */
static uint64_t bitmap_for_word(const uint64_t *bm, uint64_t nbits, uint64_t off,
				uint64_t w)
{
	uint64_t lo = w * 64;
	if (lo >= off)
		return lo - off < nbits ? bitmap_window(bm, nbits, lo - off) : 0;
	uint64_t sh = off - lo; /* 1..63: the word's first sh bits precede the bitmap */
	return bitmap_window(bm, nbits, 0) << sh;
}

/* gm_space_dirty_import when bit 0 lands on a log word's bit 0 (KVM's
 * bitmaps: slot-relative, word-aligned). One scan of the bitmap, skipping
 * four zero words at a time, allocates the chunks the non-zero words need
 * (-ENOMEM before any mark) and notes where they are; the marks then visit
 * only those words (or scan again if there were too many to note). */
static int import_aligned(struct gm_space *s, struct slot *sl, uint64_t w_first,
			  const uint64_t *bitmap, uint64_t nbits)
{
	enum { NOTES = 2048 };
	uint32_t at[NOTES];
	size_t k = 0;
	bool all_noted = nbits / 64 <= UINT32_MAX;
	uint64_t full = nbits / 64, tail = nbits & 63, words = full + (tail != 0);
	uint64_t last_mask = tail ? (1ull << tail) - 1 : ~0ull;
	for (uint64_t i = 0; i < words;) {
		if (i + 4 <= full && !(bitmap[i] | bitmap[i + 1] | bitmap[i + 2] | bitmap[i + 3])) {
			i += 4;
			continue;
		}
		uint64_t v = i + 1 == words ? bitmap[i] & last_mask : bitmap[i];
		if (v) {
			if (!dchunk_get(s, sl, (w_first + i) >> (DC_SHIFT - 6)))
				return -ENOMEM;
			if (k < NOTES)
				at[k++] = (uint32_t)i;
			else
				all_noted = false;
		}
		i++;
	}
	if (all_noted) {
		for (size_t j = 0; j < k; j++) {
			uint64_t i = at[j];
			dword_or(sl, w_first + i, i + 1 == words ? bitmap[i] & last_mask : bitmap[i]);
		}
		return 0;
	}
	for (uint64_t i = 0; i < words; i++)
		dword_or(sl, w_first + i, i + 1 == words ? bitmap[i] & last_mask : bitmap[i]);
	return 0;
}

int gm_space_dirty_import(struct gm_space *s, const struct gm_space_slot *p,
			  uint64_t first_gfn, const uint64_t *bitmap, uint64_t nbits)
{
	uint64_t off;
	if (!bitmap)
		return -EINVAL;
	if (!nbits)
		return s && p ? (((const struct slot *)p)->nchunks ? 0 : -ENOENT) : -EINVAL;
	int rc = dirty_range_args(s, p, first_gfn, nbits, &off);
	if (rc)
		return rc;
	struct slot *sl = (struct slot *)p;
	uint64_t w_first = off >> 6, w_last = (off + nbits - 1) >> 6;
	if (!(off & 63))
		return import_aligned(s, sl, w_first, bitmap, nbits);
	/* pass 1: every chunk that receives a bit exists (or -ENOMEM with no
	 * frame marked); chunks already there are not scanned. Pass 2 cannot
	 * fail. */
	for (uint64_t w = w_first; w <= w_last; w++) {
		uint64_t ci = w >> (DC_SHIFT - 6);
		if (atomic_load_explicit(&sl->chunks[ci], memory_order_relaxed)) {
			w = ((ci + 1) << (DC_SHIFT - 6)) - 1; /* the chunk's last word */
			continue;
		}
		if (bitmap_for_word(bitmap, nbits, off, w) && !dchunk_get(s, sl, ci))
			return -ENOMEM;
	}
	for (uint64_t w = w_first; w <= w_last; w++)
		dword_or(sl, w, bitmap_for_word(bitmap, nbits, off, w));
	return 0;
}

int gm_space_dirty_import_gfns(struct gm_space *s, const struct gm_space_slot *p,
			       const uint64_t *gfns, size_t n)
{
	uint64_t off;
	if (!s || !p || !gfns)
		return -EINVAL;
	if (!((const struct slot *)p)->nchunks)
		return -ENOENT;
	struct slot *sl = (struct slot *)p;
	/* one pass checks every gfn and gets its chunk (an empty chunk marks
	 * nothing, so an error here still leaves every frame as it was) */
	for (size_t i = 0; i < n; i++) {
		off = gfns[i] - p->base_gfn;
		if (off >= p->npages)
			return -EINVAL;
		if (!dchunk_get(s, sl, off >> DC_SHIFT))
			return -ENOMEM;
	}
	/* bits of one word gathered before its one atomic OR (ring entries
	 * of a hot set fall into few words): a small direct-mapped table */
	enum { WAYS = 64 };
	uint64_t key[WAYS], bits[WAYS];
	memset(bits, 0, sizeof(bits));
	for (size_t i = 0; i < n; i++) {
		off = gfns[i] - p->base_gfn;
		uint64_t w = off >> 6, b = 1ull << (off & 63);
		unsigned h = (unsigned)(w & (WAYS - 1));
		if (bits[h] && key[h] != w)
			dword_or(sl, key[h], bits[h]), bits[h] = 0;
		key[h] = w;
		bits[h] |= b;
	}
	for (unsigned h = 0; h < WAYS; h++)
		if (bits[h])
			dword_or(sl, key[h], bits[h]);
	return 0;
}

int gm_space_dirty_restore(struct gm_space *s, const struct gm_space_slot *p,
			   uint64_t first_gfn, uint64_t count)
{
	uint64_t off;
	if (!count)
		return s && p ? (((const struct slot *)p)->nchunks ? 0 : -ENOENT) : -EINVAL;
	int rc = dirty_range_args(s, p, first_gfn, count, &off);
	if (rc)
		return rc;
	struct slot *sl = (struct slot *)p;
	uint64_t last = off + count - 1;
	for (uint64_t ci = off >> DC_SHIFT; ci <= last >> DC_SHIFT; ci++)
		if (!dchunk_get(s, sl, ci))
			return -ENOMEM;
	for (uint64_t w = off >> 6; w <= last >> 6; w++) {
		uint64_t lo = w * 64 < off ? off - w * 64 : 0;
		uint64_t hi = w * 64 + 63 > last ? last - w * 64 : 63;
		uint64_t bits = (hi == 63 ? ~0ull : (1ull << (hi + 1)) - 1) & (~0ull << lo);
		dword_or(sl, w, bits);
	}
	return 0;
}

/* A ranged harvest in progress: the pending run (taken from the log, not
 * yet delivered), what was delivered, and the first error. */
struct rrun {
	gm_space_dirty_fn fn;
	void *ctx;
	struct slot *sl;
	uint64_t first, count; /* pending run, slot offsets */
	long delivered;
	int err;
};

/* Puts slot offsets [first, first + count) back into the log. */
static void rrun_put_back(struct slot *sl, uint64_t first, uint64_t count)
{
	uint64_t last = first + count - 1;
	for (uint64_t w = first >> 6; w <= last >> 6; w++) {
		uint64_t lo = w * 64 < first ? first - w * 64 : 0;
		uint64_t hi = w * 64 + 63 > last ? last - w * 64 : 63;
		dword_or(sl, w, (hi == 63 ? ~0ull : (1ull << (hi + 1)) - 1) & (~0ull << lo));
	}
}

/* Delivers the pending run; on an error from fn it is put back. */
static void rrun_flush(struct rrun *r)
{
	if (!r->count || r->err)
		return;
	int rc = r->fn(r->ctx, r->sl->pub.base_gfn + r->first, r->count);
	if (rc < 0) {
		r->err = rc;
		rrun_put_back(r->sl, r->first, r->count);
	} else {
		r->delivered += (long)r->count;
	}
	r->count = 0;
}

/* Adds bits taken from log word w to the runs; after an error, puts them
 * back instead. */
static void rrun_take_word(struct rrun *r, uint64_t w, uint64_t bits)
{
	if (r->err) {
		dword_or(r->sl, w, bits);
		return;
	}
	while (bits) {
		unsigned b = (unsigned)__builtin_ctzll(bits);
		uint64_t rest = ~(bits >> b);
		unsigned ones = rest ? (unsigned)__builtin_ctzll(rest) : 64 - b;
		uint64_t first = w * 64 + b;
		if (r->count && r->first + r->count == first) {
			r->count += ones;
		} else {
			rrun_flush(r);
			if (r->err) { /* this word's untaken-by-fn bits go back */
				dword_or(r->sl, w, bits);
				return;
			}
			r->first = first;
			r->count = ones;
		}
		bits = ones + b >= 64 ? 0 : bits & ~(((1ull << ones) - 1) << b);
	}
}

/* Takes the bits of mask from word wi of chunk c (clearing its summary bit
 * first, and setting it again if bits outside mask remain: a marker that
 * finds the word non-zero skips the summary). */
static uint64_t dword_take(struct dchunk *c, unsigned wi, uint64_t mask)
{
	uint64_t sbit = 1ull << (wi & 63);
	atomic_fetch_and(&c->sum[wi >> 6], ~sbit);
	uint64_t old = atomic_fetch_and(&c->w[wi], ~mask);
	if (old & ~mask)
		atomic_fetch_or(&c->sum[wi >> 6], sbit);
	return old & mask;
}

/* A whole chunk in the range: the plain harvest's protocol (summary word
 * exchanged, then each word it names); after an error, the summary bits of
 * the words not taken go back. */
static void rrun_chunk_whole(struct rrun *r, struct dchunk *c, uint64_t cbase)
{
	for (unsigned sw = 0; sw < DC_SUMS && !r->err; sw++) {
		if (!atomic_load_explicit(&c->sum[sw], memory_order_relaxed))
			continue;
		uint64_t sm = atomic_exchange(&c->sum[sw], 0);
		while (sm) {
			if (r->err) {
				atomic_fetch_or(&c->sum[sw], sm);
				break;
			}
			unsigned wi = sw * 64 + (unsigned)__builtin_ctzll(sm);
			sm &= sm - 1;
			rrun_take_word(r, cbase / 64 + wi, atomic_exchange(&c->w[wi], 0));
		}
	}
}

/* Harvests slot offsets [lo, hi] of chunk ci. */
static void rrun_chunk(struct rrun *r, uint64_t ci, uint64_t lo, uint64_t hi)
{
	struct slot *sl = r->sl;
	struct dchunk *c = atomic_load_explicit(&sl->chunks[ci], memory_order_acquire);
	if (!c)
		return;
	uint64_t cbase = ci << DC_SHIFT, cend = cbase + (1ull << DC_SHIFT) - 1;
	if (lo == cbase && (hi >= cend || hi == sl->pub.npages - 1))
		rrun_chunk_whole(r, c, cbase);
	for (unsigned sw = (unsigned)((lo - cbase) >> 12);
	     !(lo == cbase && (hi >= cend || hi == sl->pub.npages - 1)) && sw <= (hi - cbase) >> 12 && !r->err;
	     sw++) {
		uint64_t sm = atomic_load_explicit(&c->sum[sw], memory_order_acquire);
		while (sm && !r->err) {
			unsigned wi = sw * 64 + (unsigned)__builtin_ctzll(sm);
			sm &= sm - 1;
			uint64_t wlo = cbase + (uint64_t)wi * 64, whi = wlo + 63;
			if (whi < lo || wlo > hi)
				continue;
			uint64_t a = wlo < lo ? lo - wlo : 0, b = whi > hi ? hi - wlo : 63;
			uint64_t mask = (b == 63 ? ~0ull : (1ull << (b + 1)) - 1) & (~0ull << a);
			rrun_take_word(r, cbase / 64 + wi, dword_take(c, wi, mask));
		}
	}
	/* the top bit goes when no summary bit is left (cleared first, set
	 * again if one is: a marker sets its summary bit, then the top) */
	uint64_t tbit = 1ull << (ci & 63);
	atomic_fetch_and(&sl->top[ci >> 6], ~tbit);
	for (unsigned sw = 0; sw < DC_SUMS; sw++)
		if (atomic_load(&c->sum[sw])) {
			atomic_fetch_or(&sl->top[ci >> 6], tbit);
			break;
		}
}

/* The whole slot: each top word exchanged at once (one atomic for 64
 * chunks), then every chunk it names. After an error the chunk's summary
 * bits are back (rrun_chunk_whole), so its top bit goes back too, with
 * those of the chunks not reached; later top words were never taken. */
static void harvest_whole(struct rrun *r)
{
	struct slot *sl = r->sl;
	uint64_t ntop = (sl->nchunks + 63) / 64;
	for (uint64_t tw = 0; tw < ntop && !r->err; tw++) {
		if (!atomic_load_explicit(&sl->top[tw], memory_order_relaxed))
			continue;
		uint64_t t = atomic_exchange(&sl->top[tw], 0);
		while (t) {
			uint64_t ci = tw * 64 + (uint64_t)__builtin_ctzll(t);
			t &= t - 1;
			struct dchunk *c = atomic_load_explicit(&sl->chunks[ci], memory_order_acquire);
			rrun_chunk_whole(r, c, ci << DC_SHIFT);
			if (r->err) {
				uint64_t back = t;
				for (unsigned sw = 0; sw < DC_SUMS; sw++)
					if (atomic_load(&c->sum[sw]))
						back |= 1ull << (ci & 63);
				if (back)
					atomic_fetch_or(&sl->top[tw], back);
				return;
			}
		}
	}
}

int64_t gm_space_dirty_harvest(struct gm_space *s, const struct gm_space_slot *p,
			       uint64_t first_gfn, uint64_t last_gfn, gm_space_dirty_fn fn,
			       void *ctx)
{
	if (!s || !p || !fn || first_gfn > last_gfn)
		return -EINVAL;
	struct slot *sl = (struct slot *)p;
	if (!sl->nchunks)
		return -ENOENT;
	uint64_t slast = slot_last_gfn(p);
	if (last_gfn < p->base_gfn || first_gfn > slast)
		return 0;
	uint64_t lo = (first_gfn > p->base_gfn ? first_gfn : p->base_gfn) - p->base_gfn;
	uint64_t hi = (last_gfn < slast ? last_gfn : slast) - p->base_gfn;
	struct rrun r = {fn, ctx, sl, 0, 0, 0, 0};
	if (lo == 0 && hi == p->npages - 1) {
		harvest_whole(&r);
		rrun_flush(&r);
		return r.err ? r.err : r.delivered;
	}
	uint64_t ci = lo >> DC_SHIFT, cl = hi >> DC_SHIFT;
	while (ci <= cl && !r.err) {
		uint64_t t = atomic_load_explicit(&sl->top[ci >> 6], memory_order_acquire) >> (ci & 63);
		if (!t) { /* no chunk with bits until the next top word */
			ci = (ci | 63) + 1;
			continue;
		}
		ci += (uint64_t)__builtin_ctzll(t);
		if (ci > cl)
			break;
		uint64_t clo = ci << DC_SHIFT, chi = clo + (1ull << DC_SHIFT) - 1;
		rrun_chunk(&r, ci, clo > lo ? clo : lo, chi < hi ? chi : hi);
		ci++;
	}
	rrun_flush(&r);
	return r.err ? r.err : r.delivered;
}

/* The first slot of layout L whose range ends at or after gfn, or NULL;
 * *ok false when the walk read a block being edited (retry). */
static struct slot *gidx_first_ending_after(const struct gtop *t, uint64_t gfn, bool *ok)
{
	*ok = true;
	if (!t || !t->n)
		return NULL;
	size_t i = gt_find(t, gfn);
	for (i = i ? i - 1 : 0; i < t->n; i++) {
		const struct gblk *b = gt_get(t, i);
		uint64_t n = gb_n(b);
		for (size_t j = 0; j < n; j++) {
			if (gb_last(b, j) < gfn)
				continue;
			struct slot *sl = gb_slot(b, j);
			if (!sl)
				*ok = false;
			return sl;
		}
	}
	return NULL;
}

/* The slot of layout L with the greatest base <= gfn, or NULL; *ok false
 * when the walk read a block being edited (retry). */
static struct slot *gidx_last_starting_before(const struct gtop *t, uint64_t gfn, bool *ok)
{
	*ok = true;
	if (!t || !t->n)
		return NULL;
	for (size_t i = gt_find(t, gfn) + 1; i-- > 0;) {
		const struct gblk *b = gt_get(t, i);
		for (size_t j = gb_n(b); j-- > 0;) {
			if (gb_base(b, j) > gfn)
				continue;
			struct slot *sl = gb_slot(b, j);
			if (!sl)
				*ok = false;
			return sl;
		}
	}
	return NULL;
}

int gm_space_slot_iter_init(struct gm_space_slot_iter *it, const struct gm_space *s,
			    uint64_t first_gfn, uint64_t last_gfn, unsigned flags)
{
	if (!it)
		return -EINVAL;
	memset(it, 0, sizeof(*it));
	it->done = true;
	if (!s || first_gfn > last_gfn || (flags & ~GM_ITER_REVERSE))
		return -EINVAL;
	it->space = s;
	it->reverse = flags & GM_ITER_REVERSE;
	it->next_gfn = it->reverse ? last_gfn : first_gfn;
	it->end_gfn = it->reverse ? first_gfn : last_gfn;
	it->done = false;
	return 0;
}

/* The reverse step: the slot starting at or before next_gfn, if it reaches
 * end_gfn; then on below its base. */
static int slot_iter_prev(struct gm_space_slot_iter *it, const struct gm_space_slot **out)
{
	struct slot *sl;
	uint64_t seq;
	struct layout *L;
	bool ok;
	do {
		L = view_enter(it->space, &seq);
		sl = gidx_last_starting_before(L_gidx(L), it->next_gfn, &ok);
	} while (!view_valid(L, seq) || !ok);
	if (!sl || slot_last_gfn(&sl->pub) < it->end_gfn) {
		it->done = true;
		return -ENOENT;
	}
	if (sl->pub.base_gfn <= it->end_gfn)
		it->done = true;
	else
		it->next_gfn = sl->pub.base_gfn - 1;
	*out = &sl->pub;
	return 0;
}

int gm_space_slot_iter_next(struct gm_space_slot_iter *it,
			    const struct gm_space_slot **out)
{
	if (!it || !out)
		return -EINVAL;
	if (it->done || !it->space)
		return -ENOENT;
	if (it->reverse)
		return slot_iter_prev(it, out);
	const struct gm_space *s = it->space;
	struct slot *sl;
	uint64_t seq;
	struct layout *L;
	bool ok;
	do {
		L = view_enter(s, &seq);
		sl = gidx_first_ending_after(L_gidx(L), it->next_gfn, &ok);
	} while (!view_valid(L, seq) || !ok);
	if (!sl || sl->pub.base_gfn > it->end_gfn) {
		it->done = true;
		return -ENOENT;
	}
	uint64_t last = slot_last_gfn(&sl->pub);
	if (last >= it->end_gfn)
		it->done = true;
	else
		it->next_gfn = last + 1;
	*out = &sl->pub;
	return 0;
}

/* ---- reverse maps --------------------------------------------------------------------- */

struct gm_rmap_head *gm_space_rmap_head(struct gm_space *s, const struct gm_space_slot *p,
					uint64_t gfn, bool create)
{
	struct slot *sl = (struct slot *)p;
	if (!s || !p)
		return NULL;
	uint64_t off = gfn - p->base_gfn;
	if (off >= p->npages)
		return NULL;
	uint64_t ci = off >> RMAP_SHIFT;
	struct gm_pagemap *rm = atomic_load_explicit(&sl->rmaps, memory_order_acquire);
	struct gm_rmap_head *heads = rm ? gm_pagemap_load(rm, ci) : NULL;
	if (!heads && create) {
		bool fresh = !rm;
		if (fresh && gm_pagemap_create(&rm, 0, s->alloc)) /* the slot's first chunk: its map too */
			return NULL;
		heads = zalloc(s, RMAP_CHUNK_BYTES);
		size_t before = fresh ? 0 : gm_pagemap_bytes_(rm);
		if (!heads || gm_pagemap_insert(rm, ci, heads)) {
			if (heads)
				gm_alloc_release(s->alloc, heads, RMAP_CHUNK_BYTES);
			if (fresh) /* nothing was inserted: it is empty */
				gm_pagemap_destroy(rm);
			return NULL;
		}
		if (fresh)
			atomic_store_explicit(&sl->rmaps, rm, memory_order_release);
		atomic_fetch_add(&s->rmap_bytes, RMAP_CHUNK_BYTES + gm_pagemap_bytes_(rm) - before);
	}
	return heads ? &heads[off & ((1u << RMAP_SHIFT) - 1)] : NULL;
}

/* ---- stats and validation ----------------------------------------------------------------- */

static size_t map_bytes(const struct gm_rangemap *m)
{
	struct gm_rangemap_stats st;
	if (!m)
		return 0;
	gm_rangemap_stats(m, &st);
	return st.bytes + gm_rangemap_handle_bytes_();
}

int gm_space_stats(const struct gm_space *s, struct gm_space_stats *st)
{
	if (!s || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	struct layout *A = atomic_load(&s->active);
	st->slots = A->nslots;
	st->generation = s->generation;
	const struct idtab *at = L_ids(A);
	for (size_t k = 0; k < at->cap; k++)
		if (idtab_at(at, k))
			st->guest_pages += idtab_at(at, k)->pub.npages;
	st->bytes_space = sizeof(*s) + s->cap_ops * sizeof(struct op) +
			  (s->log.cap + s->cur.cap) * sizeof(struct change);
	st->bytes_slots = atomic_load(&s->slot_bytes);
	for (int i = 0; i < 2; i++) {
		struct gm_itree_stats is;
		st->bytes_gfn_index += gidx_bytes(L_gidx(&s->lay[i]));
		gm_itree_stats(L_hva(&s->lay[i]), &is);
		st->bytes_hva_index += is.total_bytes;
		st->bytes_id_index += idtab_bytes(L_ids(&s->lay[i])->cap);
	}
	uintptr_t w = atomic_load(&s->attr);
	if (w & ATTR_MAP_TAG)
		st->bytes_attributes = map_bytes((struct gm_rangemap *)(w & ~(uintptr_t)ATTR_MAP_TAG));
	else if (w)
		st->bytes_attributes = sizeof(struct attr_one);
	st->bytes_write_track = map_bytes(atomic_load(&s->wp));
	st->bytes_io = map_bytes(atomic_load(&s->io[0])) + map_bytes(atomic_load(&s->io[1])) +
		       s->io_objects * sizeof(struct gm_space_io);
	st->bytes_dirty = atomic_load(&s->dirty_bytes);
	st->bytes_rmap = atomic_load(&s->rmap_bytes);
	st->bytes_total = st->bytes_space + st->bytes_slots + st->bytes_gfn_index +
			  st->bytes_hva_index + st->bytes_id_index + st->bytes_attributes +
			  st->bytes_write_track + st->bytes_io + st->bytes_dirty + st->bytes_rmap;
	double gib = (double)st->guest_pages * (1u << PAGE_SHIFT) / (double)(1ull << 30);
	st->bytes_per_gib = gib > 0 ? (double)st->bytes_total / gib : 0;
	return 0;
}

#define FAIL(msg) do { *reason = (msg); return -EINVAL; } while (0)

static int validate_indexes(struct layout *L, const char **reason)
{
	uint64_t ng;
	const char *why = gidx_check(L_gidx(L), &ng);
	if (why)
		FAIL(why);
	if ((why = idtab_check(L_ids(L))))
		FAIL(why);
	if (gm_itree_validate(L_hva(L), reason))
		return -EINVAL;
	struct gm_itree_iter it;
	struct gm_itree_entry e;
	gm_itree_iter_init(&it, L_hva(L), 0, UINT64_MAX, 0);
	while (gm_itree_iter_next(&it, &e) == 0) {
		const struct slot *sl = idtab_load(L_ids(L), (uint32_t)((uintptr_t)e.item - 1));
		if (!sl || sl->pub.hva != e.first || slot_last_hva(&sl->pub) != e.last)
			FAIL("hva index: entry's id not a slot with that hva range");
	}
	if (L_ids(L)->count != L->nslots || gm_itree_count(L_hva(L)) != L->nslots ||
	    ng != L->nslots)
		FAIL("layout: index counts differ from nslots");
	return 0;
}

int gm_space_validate(const struct gm_space *s, const char **reason)
{
	const char *dummy;
	if (!reason)
		reason = &dummy;
	*reason = NULL;
	if (!s) {
		*reason = "NULL space";
		return -EINVAL;
	}
	if (!s)
		FAIL("space is NULL");
	struct layout *A = atomic_load(&s->active);
	struct layout *I = inactive_of(s);
	if (atomic_load(&A->seq) & 1)
		FAIL("active layout: seq odd");
	if (atomic_load(&A->generation) != s->generation)
		FAIL("active layout: generation differs from the space's");
	if (__atomic_load_n(&s->head.generation, __ATOMIC_RELAXED) != s->generation)
		FAIL("published generation (head) differs from the space's");
	if (A->broken)
		FAIL("active layout marked broken");
	if (A->nslots > s->max_slots)
		FAIL("more slots than max_slots");
	if (validate_indexes(A, reason))
		return -EINVAL;
	const struct idtab *at = L_ids(A);
	for (size_t k = 0; k < at->cap; k++) {
		struct slot *sl = idtab_at(at, k);
		if (!sl)
			continue;
		const struct gm_space_slot *p = &sl->pub;
		const struct gblk *gb;
		size_t gj;
		if (!slot_shape_ok(s, p->base_gfn, p->npages, p->hva))
			FAIL("slot: empty, past GM_SPACE_GFN_LIMIT or UINT64_MAX, or misaligned");
		if (p->flags & ~SLOT_FLAGS)
			FAIL("slot: unknown flags");
		if (!gidx_find(L_gidx(A), p->base_gfn, &gb, &gj) || gb_slot(gb, gj) != sl ||
		    gb_base(gb, gj) != p->base_gfn || gb_last(gb, gj) != slot_last_gfn(p) ||
		    gb_hva(gb, gj) != p->hva)
			FAIL("gfn index: slot's range not mapped exactly to it");
		if (!(atomic_load(&sl->member) & (1u << A->index)))
			FAIL("slot: member bit of the active layout clear");
		if (!!sl->nchunks != !!(p->flags & GM_SPACE_SLOT_DIRTY_LOG))
			FAIL("slot: dirty log present iff DIRTY_LOG");
	}
	if (!I->broken) {
		if (validate_indexes(I, reason))
			return -EINVAL;
		uint64_t adds = 0, dels = 0;
		for (size_t i = 0; i < s->log.n; i++) {
			if (s->log.v[i].add)
				adds++;
			else {
				bool fresh = false;
				dels++;
				for (size_t j = 0; j < i; j++)
					fresh |= s->log.v[j].add && s->log.v[j].slot == s->log.v[i].slot;
				if (!fresh && idtab_load(L_ids(I), s->log.v[i].slot->pub.id) !=
				    s->log.v[i].slot)
					FAIL("inactive layout lacks a slot the last commit deleted");
			}
		}
		if (I->nslots != A->nslots - adds + dels)
			FAIL("inactive layout: slot count not active - added + deleted");
	}
	uintptr_t w = atomic_load(&s->attr);
	if (w & ATTR_MAP_TAG) {
		if (gm_rangemap_validate((struct gm_rangemap *)(w & ~(uintptr_t)ATTR_MAP_TAG), reason))
			return -EINVAL;
	} else if (w) {
		const struct attr_one *o = (const void *)w;
		if (!o->value || o->first > o->last)
			FAIL("attributes: compact range empty or of value 0");
	}
	struct gm_rangemap *m = atomic_load(&s->wp);
	if (m) {
		if (gm_rangemap_validate(m, reason))
			return -EINVAL;
		struct gm_rangemap_iter c;
		struct gm_range r;
		gm_rangemap_iter_init(&c, m, 0, UINT64_MAX, 0);
		while (gm_rangemap_iter_next(&c, &r) == 0)
			if (r.value == 0 || r.value > UINT32_MAX)
				FAIL("write tracking: count 0 or above 2^32-1 stored");
	}
	size_t ios = 0;
	for (int k = 0; k < 2; k++) {
		m = atomic_load(&s->io[k]);
		if (!m)
			continue;
		if (gm_rangemap_validate(m, reason))
			return -EINVAL;
		struct gm_rangemap_iter c;
		struct gm_range r;
		gm_rangemap_iter_init(&c, m, 0, UINT64_MAX, 0);
		while (gm_rangemap_iter_next(&c, &r) == 0) {
			const struct gm_space_io *io = (const void *)(uintptr_t)r.value;
			if (io->first != r.first || io->last != r.last || !io->fn)
				FAIL("io: handler bounds differ from its range");
			ios++;
		}
	}
	if (ios != s->io_objects)
		FAIL("io: handler count differs");
	return 0;
}
