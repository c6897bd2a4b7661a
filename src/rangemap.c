/*
 * src/rangemap.c — gm_rangemap, a B+tree of pivots with compressed leaves.
 *
 * The key space [0, UINT64_MAX] is cut into SLOTS; each slot is a range
 * (present) or a gap, and ends at its PIVOT (its last index). A slot begins
 * one after the previous pivot (or at the node's lower bound). Leaves hold
 * slots; inner nodes hold the pivots that separate their children.
 *
 *                       inner (level >= 1), 768 bytes
 *   +-------+---+----------------------+------------------+----------------+
 *   | level | n | pivot[0 .. n-2] (u64) | child[0 .. n-1]  | gap[0 .. n-1]  |
 *   +-------+---+----------------------+------------------+----------------+
 *   child i covers [pivot[i-1] + 1, pivot[i]] (the node's own bounds at the
 *   ends); gap[i] = the longest gap inside child i (saturated at 2^64-1),
 *   which lets find_gap skip whole subtrees.
 *
 *                       leaf (level 0), 40 + n*(kw+vw) bytes, rounded to 16
 *   +-------+---+----+----+------+----+-------+---------+--------+------------+----------+
 *   | level | n | kw | vw | size | lo | vbase | present | maxgap | key deltas | val deltas|
 *   +-------+---+----+----+------+----+-------+---------+--------+------------+----------+
 *   slot i ends at lo + key[i] (key deltas are kw = 1, 2, 4 or 8 bytes);
 *   its value is vbase + val[i] (vw = 0, 1, 2, 4 or 8 bytes); bit i of
 *   `present` says range (1) or gap (0). lo is the leaf's first index.
 *
 * Why: a slot costs kw + vw bytes, usually 2-6 instead of the 16 of a
 * (pivot, value) pair, and leaves are allocated at their exact size, so
 * there is no slack to pay for. Gaps are explicit slots: isolated ranges
 * cost two slots, adjacent ranges one. A leaf is never changed once built
 * (every write builds new leaves), which is what RCU readers need anyway.
 *
 * Invariants (gm_rangemap_validate checks each one):
 *  I1 every leaf is at depth height-1; inner nodes have 1..32 children (the
 *     root >= 2), leaves 1..64 slots;
 *  I2 pivots strictly increase, the first slot of a subtree starts at its
 *     lower bound and the last ends at its upper bound: slots partition
 *     [0, UINT64_MAX]; an inner node's unused pivots are zero (the AVX2
 *     search counts them);
 *  I3 no two neighbouring slots (across leaves too) are both gaps; unless
 *     NOCOALESCE, no two neighbouring ranges carry the same value;
 *  I4 gap[i] of an inner node and maxgap of a leaf are exact;
 *  I5 map->count is the number of present slots;
 *  I6 map->node_bytes_ is the bytes of the live nodes (it bounds how much
 *     retired memory the pool keeps for reuse, see below).
 *
 * Writes. The general write is one call of replace(F, L, seq): the slots of
 * [F, L] are replaced by the slot sequence seq (which partitions [F, L]).
 * The caller first widens [F, L] over neighbours that would merge with seq
 * (so I3 holds without looking across leaves afterwards). replace walks down
 * to the child holding F and the child holding L; where they differ, the
 * child of F is truncated at F-1, the children in between are dropped whole
 * (O(k)), and the child of L is widened down to F and gets seq. Every node
 * it changes is rebuilt as a new ("fresh") node; underfull fresh nodes are
 * merged with a neighbour; overfull lists are split. Nothing visible changes
 * until all allocations (nodes, scratch, retire batches) succeeded; then ONE
 * release store publishes the change: either the new root, or, when only
 * one child of an unchanged node was replaced by one node with the same
 * bounds, that child pointer. Replaced nodes are retired (freed after a
 * grace period in RCU mode, at once otherwise). Readers therefore always see
 * a complete old tree or a complete new tree.
 *
 * Fast paths (store, erase, insert; measured: most writes take them). When
 * [F, L] lies in one leaf and its neighbours do too (or, in a sibling leaf,
 * do not merge with it), assign_in_leaf builds the
 * new leaf straight from the old one's compressed arrays (leaf_splice:
 * block copies of the kept key and value bytes; the key width cannot change
 * since the bounds do not) and publishes it in its parent. If that leaf
 * would overflow and the parent has room, split_in_parent cuts it in two
 * and publishes a copy of the parent instead. Same rules as replace: all
 * allocations first, one release store, then retirements.
 *
 * Node memory (RCU mode). Retired nodes are recycled after their grace
 * period instead of freed: they come back to the writer through per-size
 * ready stacks (see "node memory and recycling" below), which saves the
 * malloc/free traffic between the writer and the RCU worker thread.
 *
 * Reads. A lookup descends by counting, branch-free, the pivots below the
 * index and then the key deltas below it in the leaf: with AVX2 (chosen at
 * run time, gm_cpu_avx2_) all of an inner node's pivots in eight compares
 * and a leaf's deltas 32 bytes per compare; otherwise with four
 * independent counters, so the compares of a node overlap. Writers and
 * cursors use the same searches. Each node's lines are
 * prefetched together (an inner node's pivots and children, a leaf's
 * header and first deltas). gm_rangemap_contains stops at the present bit,
 * which is all a set membership test (gm_rangeset_contains) needs.
 * gm_rangemap_contains_many runs the descents of several maps side by side
 * (one level of every map, then the next), counting pivots with AVX2 when
 * the CPU has it, so that their chains of loads overlap.
 */
#include "internal.h"

#include <gmtrack/rangemap.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define LEAF_MAX 64
#define LEAF_MIN 16
#define INNER_MAX 32
#define INNER_MIN 8
#define KEY_MAX UINT64_MAX

/* The handle (opaque in rangemap.h). */
struct gm_rangemap {
	_Atomic(void *) root;
	const struct gm_allocator *alloc;
	unsigned flags;
	unsigned height;          /* 1 = the root is a leaf */
	uint64_t count;           /* ranges stored */
	struct gm_reclaim reclaim;
	uint64_t node_bytes_;     /* bytes of live nodes */
	void *pool_;              /* RCU mode: retired nodes kept for reuse */
};

struct leaf {
	uint8_t level; /* 0 */
	uint8_t n;     /* slots, 1..LEAF_MAX */
	uint8_t kw;    /* bytes per key delta: 1, 2, 4, 8 */
	uint8_t vw;    /* bytes per value delta: 0, 1, 2, 4, 8 */
	uint32_t size; /* bytes allocated */
	uint64_t lo;   /* first index covered */
	uint64_t vbase;
	uint64_t present; /* bit i: slot i is a range */
	uint64_t maxgap;  /* longest gap (saturated) */
	unsigned char data[];
};

struct inner {
	uint8_t level; /* >= 1 */
	uint8_t n;     /* children, 1..INNER_MAX */
	uint64_t pivot[INNER_MAX - 1];
	_Atomic(void *) child[INNER_MAX];
	_Atomic uint64_t gap[INNER_MAX];
};

/* A slot while a writer works on it. */
struct slot {
	uint64_t pivot, value;
	uint32_t present;
	uint32_t origin; /* update(): index of the slot it came from */
};

/* Bits set in x: the popcnt instruction where the build targets it, else
 * shifts and adds (cheaper than the library call __builtin_popcountll
 * becomes without it). */
static inline unsigned popcount64(uint64_t x)
{
#ifdef __POPCNT__
	return (unsigned)__builtin_popcountll(x);
#else
	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (unsigned)((x * 0x0101010101010101ULL) >> 56);
#endif
}

static inline unsigned node_level(const void *n) { return *(const uint8_t *)n; }
static inline struct gm_reclaim *map_reclaim(const struct gm_rangemap *m)
{
	return (struct gm_reclaim *)(uintptr_t)&m->reclaim;
}
static inline bool coalescing(const struct gm_rangemap *m)
{
	return !(m->flags & GM_RANGEMAP_NOCOALESCE);
}

/* ---- leaf encoding --------------------------------------------------------- */

static inline uint64_t get_w(const unsigned char *p, unsigned w)
{
	switch (w) {
	case 0: return 0;
	case 1: return *p;
	case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
	case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
	default: { uint64_t v; memcpy(&v, p, 8); return v; }
	}
}

static inline void put_w(unsigned char *p, unsigned w, uint64_t v)
{
	switch (w) {
	case 0: break;
	case 1: *p = (uint8_t)v; break;
	case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
	case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
	default: memcpy(p, &v, 8); break;
	}
}

static inline unsigned width_for(uint64_t v)
{
	return v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
}

static inline uint64_t leaf_pivot(const struct leaf *l, unsigned i)
{
	return l->lo + get_w(l->data + (size_t)i * l->kw, l->kw);
}

static inline uint64_t leaf_value(const struct leaf *l, unsigned i)
{
	return l->vbase + get_w(l->data + (size_t)l->n * l->kw + (size_t)i * l->vw, l->vw);
}

static inline bool leaf_present(const struct leaf *l, unsigned i)
{
	return (l->present >> i) & 1;
}

static inline uint64_t leaf_start(const struct leaf *l, unsigned i)
{
	return i ? leaf_pivot(l, i - 1) + 1 : l->lo;
}

static inline uint64_t leaf_hi(const struct leaf *l) { return leaf_pivot(l, l->n - 1); }

/* Index of the slot holding index (lo <= index <= hi of the leaf): the
 * number of pivots below it. Branch-free counting loops the compiler
 * vectorizes; the delta always fits the key width because index <= hi. */
static inline unsigned leaf_find_portable(const struct leaf *l, uint64_t index)
{
	uint64_t d = index - l->lo;
	unsigned n = l->n, c = 0;
	switch (l->kw) {
	case 1: {
		const uint8_t *k = (const uint8_t *)l->data;
		for (unsigned i = 0; i < n; i++)
			c += k[i] < (uint8_t)d;
		break;
	}
	case 2: {
		const uint16_t *k = (const uint16_t *)(const void *)l->data;
		for (unsigned i = 0; i < n; i++)
			c += k[i] < (uint16_t)d;
		break;
	}
	case 4: {
		const uint32_t *k = (const uint32_t *)(const void *)l->data;
		for (unsigned i = 0; i < n; i++)
			c += k[i] < (uint32_t)d;
		break;
	}
	default: {
		const uint64_t *k = (const uint64_t *)(const void *)l->data;
		for (unsigned i = 0; i < n; i++)
			c += k[i] < d;
		break;
	}
	}
	return c;
}

/* Child holding index: the number of pivots below it. Four independent
 * counters: one counter makes each compare wait for the previous add (a
 * chain as long as the node), four let the compares of a line run side by
 * side; every lookup level pays this on its critical path. */
static inline unsigned inner_find_portable(const struct inner *x, uint64_t index)
{
	const uint64_t *p = x->pivot;
	unsigned n = x->n - 1u, i = 0, c0 = 0, c1 = 0, c2 = 0, c3 = 0;
	for (; i + 4 <= n; i += 4) {
		c0 += p[i] < index;
		c1 += p[i + 1] < index;
		c2 += p[i + 2] < index;
		c3 += p[i + 3] < index;
	}
	for (; i < n; i++)
		c0 += p[i] < index;
	return c0 + c1 + c2 + c3;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_READ 1
#define AVX2_READ __attribute__((target("avx2,popcnt")))

/* inner_find with AVX2. Each pivot compares as signed after a sign flip
 * (which orders them as unsigned); all eight vectors of the pivot array
 * are compared whatever the node's fan-out, so there is no loop exit to
 * mispredict (the fan-out differs from node to node). The results are
 * packed to two bytes per pivot and counted at once; their order is lost,
 * which does not matter for a count: the pivots past the node's own are
 * zero (I2), so each counts as below any index but 0, and their number is
 * taken off. The last vector is moved back to pivots 27..30 so that no
 * load reaches the child array, whose slots the writer may change; its
 * first lane (pivot 27, already in the vector before) is masked off. */
#define PIVOTS_LT(p, at, key, flip)                                                    \
	_mm256_cmpgt_epi64(key, _mm256_xor_si256(                                      \
		_mm256_loadu_si256((const __m256i *)(const void *)((p) + (at))), flip))
AVX2_READ static inline unsigned inner_find_avx2(const struct inner *x, uint64_t index)
{
	const __m256i flip = _mm256_set1_epi64x(INT64_MIN);
	const __m256i key = _mm256_xor_si256(_mm256_set1_epi64x((long long)index), flip);
	const __m256i not27 = _mm256_set_epi64x(-1, -1, -1, 0);
	const uint64_t *p = x->pivot;
	__m256i a = _mm256_packs_epi32(PIVOTS_LT(p, 0, key, flip), PIVOTS_LT(p, 4, key, flip));
	__m256i b = _mm256_packs_epi32(PIVOTS_LT(p, 8, key, flip), PIVOTS_LT(p, 12, key, flip));
	__m256i c = _mm256_packs_epi32(PIVOTS_LT(p, 16, key, flip), PIVOTS_LT(p, 20, key, flip));
	__m256i d = _mm256_packs_epi32(PIVOTS_LT(p, 24, key, flip),
				       _mm256_and_si256(PIVOTS_LT(p, INNER_MAX - 5, key, flip), not27));
	uint64_t bits = (uint32_t)_mm256_movemask_epi8(_mm256_packs_epi16(a, b)) |
			(uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_packs_epi16(c, d)) << 32;
	unsigned unused = index ? INNER_MAX - x->n : 0;
	return (unsigned)__builtin_popcountll(bits) / 2 - unused;
}

/* How many of the first `bytes` bytes of key deltas at k belong to keys
 * below d, one mask bit per byte (a key of w bytes sets w bits), 32 bytes
 * per compare. Lanes compare as signed after the sign flip, which orders
 * them as unsigned. A partial last vector is loaded so that it ends with
 * the keys, and the lanes it shares with the vector before are shifted
 * out: it may start up to 31 bytes before k. */
#define KEYS_BELOW(NAME, SET1, CMPGT, T, MIN)                                        \
	AVX2_READ static inline unsigned NAME(const unsigned char *k, unsigned bytes, \
					      uint64_t d)                             \
	{                                                                             \
		const __m256i flip = SET1(MIN);                                       \
		const __m256i key = _mm256_xor_si256(SET1((T)d), flip);               \
		unsigned below = 0, off = 0;                                          \
		for (; off + 32 <= bytes; off += 32) {                                \
			__m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(k + off)); \
			below += (unsigned)__builtin_popcount((uint32_t)_mm256_movemask_epi8( \
				CMPGT(key, _mm256_xor_si256(v, flip))));              \
		}                                                                     \
		if (off < bytes) {                                                    \
			__m256i v = _mm256_loadu_si256(                               \
				(const __m256i *)(const void *)(k + bytes - 32));     \
			uint32_t m = (uint32_t)_mm256_movemask_epi8(                  \
				CMPGT(key, _mm256_xor_si256(v, flip)));               \
			below += (unsigned)__builtin_popcount(m >> (32 - (bytes - off))); \
		}                                                                     \
		return below;                                                         \
	}
KEYS_BELOW(keys_below8, _mm256_set1_epi8, _mm256_cmpgt_epi8, char, INT8_MIN)
KEYS_BELOW(keys_below16, _mm256_set1_epi16, _mm256_cmpgt_epi16, short, INT16_MIN)
KEYS_BELOW(keys_below32, _mm256_set1_epi32, _mm256_cmpgt_epi32, int, INT32_MIN)
KEYS_BELOW(keys_below64, _mm256_set1_epi64x, _mm256_cmpgt_epi64, long long, INT64_MIN)

/* leaf_find with AVX2: 32 bytes of key deltas per compare, whatever their
 * width. A partial last vector starts in the header (40 bytes long) at
 * worst, never outside the leaf. */
AVX2_READ static inline unsigned leaf_find_avx2(const struct leaf *l, uint64_t index)
{
	uint64_t d = index - l->lo;
	unsigned n = l->n;
	switch (l->kw) {
	case 1: return keys_below8(l->data, n, d);
	case 2: return keys_below16(l->data, 2 * n, d) / 2;
	case 4: return keys_below32(l->data, 4 * n, d) / 4;
	default: return keys_below64(l->data, 8 * n, d) / 8;
	}
}

_Static_assert(offsetof(struct leaf, data) >= 32 - 1, "a leaf's last key vector stays inside it");

AVX2_READ static unsigned leaf_find_avx2_call(const struct leaf *l, uint64_t index)
{
	return leaf_find_avx2(l, index);
}

AVX2_READ static unsigned inner_find_avx2_call(const struct inner *x, uint64_t index)
{
	return inner_find_avx2(x, index);
}

#endif

/* The searches every other path uses (writers, cursors): the AVX2 ones
 * when the CPU has them, out of line (a function built for AVX2 is not
 * inlined into portable code), else the portable ones. */
static inline unsigned leaf_find(const struct leaf *l, uint64_t index)
{
#ifdef HAVE_AVX2_READ
	if (GM_LIKELY(gm_cpu_avx2_))
		return leaf_find_avx2_call(l, index);
#endif
	return leaf_find_portable(l, index);
}

static inline unsigned inner_find(const struct inner *x, uint64_t index)
{
#ifdef HAVE_AVX2_READ
	if (GM_LIKELY(gm_cpu_avx2_))
		return inner_find_avx2_call(x, index);
#endif
	return inner_find_portable(x, index);
}

static inline uint64_t gap_len(uint64_t start, uint64_t pivot)
{
	uint64_t d = pivot - start;
	return d == KEY_MAX ? KEY_MAX : d + 1;
}

static size_t leaf_bytes(unsigned n, unsigned kw, unsigned vw)
{
	size_t s = sizeof(struct leaf) + (size_t)n * (kw + vw);
	return (s + 15) & ~(size_t)15;
}

static inline size_t node_size(const void *n)
{
	return node_level(n) ? sizeof(struct inner) : ((const struct leaf *)n)->size;
}

static uint64_t node_maxgap(const void *n)
{
	if (!node_level(n))
		return ((const struct leaf *)n)->maxgap;
	const struct inner *x = n;
	uint64_t g = 0;
	for (unsigned i = 0; i < x->n; i++) {
		uint64_t v = gm_load_relaxed(&((struct inner *)x)->gap[i]);
		if (v > g)
			g = v;
	}
	return g;
}

static inline const void *child_acquire(const struct inner *x, unsigned i)
{
	return gm_load_acquire(&((struct inner *)x)->child[i]);
}

/* Asks for the cache lines a descent reads in a node all at once, instead
 * of one miss after another: an inner node's pivots and child pointers
 * (not its gap summaries), a leaf's header and key deltas. The first line
 * is being loaded already. */
static inline void prefetch_node(const void *n)
{
	const char *p = n;
	for (unsigned off = 64; off < offsetof(struct inner, gap); off += 64)
		__builtin_prefetch(p + off);
}

/* The same for a leaf, whose size is not known before its header arrives:
 * the lines of a typical leaf (header and 32 slots of 4-byte deltas, 168
 * bytes, which at 16-byte alignment may straddle four lines). Prefetching
 * a leaf as if it were a 768-byte inner node fetched lines of whatever lies
 * after it and pushed useful lines out of L1. */
static inline void prefetch_leaf(const void *n)
{
	const char *p = n;
	__builtin_prefetch(p + 64);
	__builtin_prefetch(p + 128);
	__builtin_prefetch(p + 191);
}

/* ---- node memory and recycling ------------------------------------------- */

/*
 * Every node goes through node_alloc / node_discard / node_retire, which
 * keep m->node_bytes_ (the live nodes' bytes) exact.
 *
 * Recycling (RCU mode, once the map's nodes take 256 KiB): a
 * retired node is
 * not handed to the allocator after its grace period (a free on the RCU
 * worker thread, then a cold malloc on the writer's, the two fighting over
 * the allocator's locks: about a third of a store's time when measured);
 * it is batched (struct recycle, deferred with gm_reclaim_defer), and when
 * the batch's call runs it pushes each node on the pool's ready stack of
 * its size class. Leaves have exact sizes that are multiples of 16 bytes,
 * so a class is simply size / 16 (an inner node is one more size); live
 * nodes keep their exact sizes. The writer takes a class's whole stack at
 * once (exchange) into its private stash and allocates from there first.
 * How much to keep: about what the writer allocates while a batch waits
 * for its grace period (the RCU worker works in rounds about 1 ms apart
 * and more under load, so at ~1 us per store that is up to megabytes). The writer
 * measures it: `want` grows by the bytes of every allocation the pool could
 * not serve and decays slowly; a batch's call keeps at most min(want, cap)
 * + min(cap / 4, RECYCLE_SLACK) ready and frees the rest, where cap is a
 * quarter (RECYCLE_SHARE) of the live bytes or of half their recent peak,
 * whichever is more (so a map that is emptied and refilled, as the
 * benchmark's store/erase cycles do, starts refilling with a stocked pool,
 * and the pool never adds more than ~31% to a map's memory). want and
 * the peak decay by half in about 11000 batches (330000 retirements), so a
 * shrinking map returns its nodes as it keeps changing; an idle one keeps
 * what it has until destroy (kept_bytes says how much). Measured at 10^6
 * ranges after a build: +2.5 B/range isolated (9.7 -> 12.2), +1.3
 * adjacent (4.9 -> 6.1); a quarter of the live bytes buys as much store
 * speed as all of them did (1034 ns a store either way, 1390 without a
 * pool). Kept bytes stay visible to a counting allocator and in
 * gm_rangemap_stats (kept_bytes); destroy frees them.
 */
#define LEAF_BYTES_MAX ((sizeof(struct leaf) + LEAF_MAX * 16 + 15) & ~(size_t)15)
#define NODE_CLASSES ((LEAF_BYTES_MAX > sizeof(struct inner) ? LEAF_BYTES_MAX : sizeof(struct inner)) / 16 + 1)
#define RECYCLE_BATCH 30
#define RECYCLE_SLACK (16 * 1024)
#define RECYCLE_SHARE 4                 /* keep at most 1/4 of the live bytes */
/* No pool for maps whose nodes take fewer bytes. Not public: tests set it
 * to 0 so that small maps exercise recycling too. */
uint64_t gm_rangemap_recycle_min_bytes_ = 256 * 1024;

_Static_assert(sizeof(struct inner) % 16 == 0, "inner size must be a class");

/* A node's memory once no reader can reach it: a stack link (over the
 * header; the class says the size). */
struct free_node {
	struct free_node *next;
};

struct node_pool;

/* Retired nodes kept for reuse: one deferred call that, after the grace
 * period, pushes them onto the pool's ready stacks. */
struct recycle {
	struct gm_deferred call;
	struct node_pool *pool;
	unsigned n;
	uint64_t keep;  /* bytes the pool may keep, set by the writer */
	void *node[RECYCLE_BATCH];
};

/* Byte counters only ever grow (modulo 2^64) and each has one writing
 * thread, in its own cache lines: the two threads never bounce a line per
 * node. Bytes kept ready = pushed - taken; waiting = retired - arrived. */
struct node_pool {
	/* written by recycle_done (the RCU worker thread) */
	_Alignas(64) _Atomic(struct free_node *) ready[NODE_CLASSES];
	_Atomic uint64_t pushed;  /* bytes pushed onto ready stacks */
	_Atomic uint64_t arrived; /* bytes whose grace period ended */
	/* the writer's */
	_Alignas(64) struct free_node *stash[NODE_CLASSES]; /* taken from ready */
	_Atomic uint64_t taken;   /* bytes taken from the pool (less those put back) */
	_Atomic uint64_t retired; /* bytes retired into recycle batches */
	const struct gm_allocator *alloc;
	uint64_t want;            /* bytes it recently failed to find here */
	uint64_t peak;            /* the live bytes' recent peak */
	struct recycle *rec;      /* the batch being filled */
};

/* Adds to a counter only this thread writes (no atomic read-modify-write). */
static inline void counter_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
			      memory_order_relaxed);
}

static inline struct node_pool *map_pool(const struct gm_rangemap *m)
{
	return (struct node_pool *)m->pool_;
}

/* Runs after a grace period (on the RCU worker thread; destroy's barrier waits
 * for it, so the pool is still there): the batch's nodes are unreachable
 * now, so they go on the ready stacks, or back to the allocator once the
 * pool keeps enough. */
static void recycle_done(struct gm_deferred *d)
{
	struct recycle *rec = (struct recycle *)d;
	struct node_pool *p = rec->pool;
	uint64_t pushed = atomic_load_explicit(&p->pushed, memory_order_relaxed), arrived = 0;
	uint64_t kept = pushed - atomic_load_explicit(&p->taken, memory_order_relaxed);
	for (unsigned i = 0; i < rec->n; i++) {
		void *x = rec->node[i];
		size_t size = node_size(x);
		arrived += size;
		if (kept + size > rec->keep) {
			gm_alloc_release(p->alloc, x, size);
			continue;
		}
		kept += size;
		pushed += size;
		struct free_node *f = x;
		gm_stack_push(&p->ready[size / 16], f, next);
	}
	atomic_store_explicit(&p->pushed, pushed, memory_order_relaxed);
	counter_add(&p->arrived, arrived);
	gm_alloc_release(p->alloc, rec, sizeof(*rec));
}

/* Memory of size bytes from the pool (stash, refilled from the ready
 * stack), or NULL. Prefetches the next one of the class for writing. */
static void *pool_take(struct node_pool *p, size_t size)
{
	unsigned c = (unsigned)(size / 16);
	struct free_node *f = p->stash[c];
	if (!f) {
		if (!atomic_load_explicit(&p->ready[c], memory_order_relaxed))
			return NULL;
		f = atomic_exchange_explicit(&p->ready[c], NULL, memory_order_acquire);
		if (!f)
			return NULL;
	}
	p->stash[c] = f->next;
	if (f->next) {
		__builtin_prefetch(f->next, 1);
		__builtin_prefetch((char *)f->next + 64, 1);
		__builtin_prefetch((char *)f->next + 128, 1);
	}
	counter_add(&p->taken, size);
	return f;
}

static void pool_put(struct node_pool *p, void *x, size_t size)
{
	struct free_node *f = x;
	f->next = p->stash[size / 16];
	p->stash[size / 16] = f;
	counter_add(&p->taken, -(uint64_t)size);
}

/* A node of size bytes (a multiple of 16), from the pool if it has one
 * (*reused says so), else from the allocator; NULL on -ENOMEM. O(1). */
static void *node_alloc(struct gm_rangemap *m, size_t size, bool *reused)
{
	struct node_pool *p = map_pool(m);
	void *x = p ? pool_take(p, size) : NULL;
	*reused = x != NULL;
	if (!x)
		x = gm_alloc_mem(m->alloc, size, 16);
	if (!x)
		return NULL;
	m->node_bytes_ += size;
	if (p && !*reused)
		p->want += size;
	return x;
}

/* Undoes node_alloc after a failure: the memory goes back where it came
 * from, so the allocator's count is as before. */
static void node_unalloc(struct gm_rangemap *m, void *x, size_t size, bool reused)
{
	m->node_bytes_ -= size;
	if (reused)
		pool_put(map_pool(m), x, size);
	else
		gm_alloc_release(m->alloc, x, size);
}

/* A node built by this write that was never published: reusable at once. */
static void node_discard(struct gm_rangemap *m, void *x)
{
	node_unalloc(m, x, node_size(x), map_pool(m) != NULL);
}

/* Retires a node readers may still see (after it was unlinked). Into the
 * recycle batch if there is one, which is deferred with the retirement
 * slot the node itself would have used: never fails after a reserve of one
 * slot per retired node. */
static void node_retire(struct gm_rangemap *m, void *x)
{
	size_t size = node_size(x);
	m->node_bytes_ -= size;
	struct node_pool *p = map_pool(m);
	struct recycle *rec = p ? p->rec : NULL;
	if (!rec) {
		gm_reclaim_retire(map_reclaim(m), x, size);
		return;
	}
	counter_add(&p->retired, size);
	rec->node[rec->n++] = x;
	if (rec->n == RECYCLE_BATCH) {
		p->rec = NULL;
		gm_reclaim_defer(map_reclaim(m), &rec->call);
	}
}

/* After a successful write (RCU mode): makes sure a pool (once the map has
 * an inner node) and a recycle batch are ready for later retirements. Best
 * effort: without them, retired nodes are simply freed. O(1). */
static void recycle_prepare(struct gm_rangemap *m)
{
	if (!(m->flags & GM_RCU))
		return;
	struct node_pool *p = map_pool(m);
	if (p && p->rec)
		return;
	if (!p) {
		if (m->node_bytes_ < gm_rangemap_recycle_min_bytes_)
			return; /* a small map retires too little to matter */
		p = gm_alloc_mem(m->alloc, sizeof(*p), _Alignof(struct node_pool));
		if (!p)
			return;
		memset(p, 0, sizeof(*p));
		p->alloc = m->alloc;
		m->pool_ = p;
	}
	struct recycle *rec = gm_alloc_mem(m->alloc, sizeof(*rec), _Alignof(struct recycle));
	if (!rec)
		return;
	rec->call.fn = recycle_done;
	rec->pool = p;
	rec->n = 0;
	p->want -= p->want / 16384; /* both decay by half in ~11000 batches */
	p->peak -= p->peak / 16384;
	if (m->node_bytes_ > p->peak)
		p->peak = m->node_bytes_;
	uint64_t cap = (m->node_bytes_ > p->peak / 2 ? m->node_bytes_ : p->peak / 2) / RECYCLE_SHARE;
	rec->keep = (p->want < cap ? p->want : cap) +
		    (cap / 4 < RECYCLE_SLACK ? cap / 4 : RECYCLE_SLACK);
	p->rec = rec;
}

static void free_list(const struct gm_allocator *a, struct free_node *f, size_t size)
{
	while (f) {
		struct free_node *next = f->next;
		gm_alloc_release(a, f, size);
		f = next;
	}
}

/* Destroy, after the synchronize and gm_reclaim_destroy: every node the
 * pool holds, the pool itself. The open batch is freed before, by
 * pool_drop_batch (its nodes are past the synchronize). */
static void pool_drop_batch(struct gm_rangemap *m)
{
	struct node_pool *p = map_pool(m);
	if (!p || !p->rec)
		return;
	for (unsigned i = 0; i < p->rec->n; i++)
		gm_alloc_release(m->alloc, p->rec->node[i], node_size(p->rec->node[i]));
	gm_alloc_release(m->alloc, p->rec, sizeof(*p->rec));
	p->rec = NULL;
}

static void pool_destroy(struct gm_rangemap *m)
{
	struct node_pool *p = map_pool(m);
	if (!p)
		return;
	for (unsigned c = 0; c < NODE_CLASSES; c++) {
		free_list(m->alloc, p->stash[c], (size_t)c * 16);
		free_list(m->alloc, atomic_load_explicit(&p->ready[c], memory_order_acquire),
			  (size_t)c * 16);
	}
	gm_alloc_release(m->alloc, p, sizeof(*p));
	m->pool_ = NULL;
}

/* Bytes held besides the live nodes (gm_rangemap_stats' kept_bytes). */
static uint64_t pool_bytes(const struct gm_rangemap *m)
{
	struct node_pool *p = map_pool(m);
	if (!p)
		return 0;
	uint64_t b = sizeof(*p) + atomic_load_explicit(&p->pushed, memory_order_relaxed) -
		     atomic_load_explicit(&p->taken, memory_order_relaxed) +
		     atomic_load_explicit(&p->retired, memory_order_relaxed) -
		     atomic_load_explicit(&p->arrived, memory_order_relaxed);
	return p->rec ? b + sizeof(*p->rec) : b;
}

/* ---- writer context ------------------------------------------------------- */

/* A growable array whose first storage is the caller's (usually the stack);
 * it grows through the map's allocator so failures are injectable. */
struct vec {
	void *p;
	size_t n, cap, elem;
	bool heap;
};

#define VEC_INIT(buf) {(buf), 0, sizeof(buf) / sizeof((buf)[0]), sizeof((buf)[0]), false}

struct entry { /* one child in a list being rebuilt */
	void *node;
	uint64_t hi;  /* last index it covers */
	uint64_t gap; /* its longest gap */
	bool fresh;   /* built by this write (not yet visible) */
};

struct pathfix {
	struct inner *node;
	unsigned idx;
};

struct wctx {
	struct gm_rangemap *m;
	const struct gm_allocator *a;
	struct vec fresh, discard, retire, dropped;
	void *fresh_buf[32], *discard_buf[16], *retire_buf[32], *dropped_buf[32];
	_Atomic(void *) *pub_slot; /* in-place publication, or NULL */
	void *pub_node;
	struct pathfix path[GM_RANGEMAP_MAX_HEIGHT];
	unsigned npath;
	int64_t count_delta;
};

static void *vec_at(struct vec *v, size_t i) { return (char *)v->p + i * v->elem; }

static int vec_reserve(struct wctx *w, struct vec *v, size_t need)
{
	if (need <= v->cap)
		return 0;
	size_t cap = v->cap * 2;
	while (cap < need)
		cap *= 2;
	void *p = gm_alloc_mem(w->a, cap * v->elem, 16);
	if (!p)
		return -ENOMEM;
	memcpy(p, v->p, v->n * v->elem);
	if (v->heap)
		gm_alloc_release(w->a, v->p, v->cap * v->elem);
	v->p = p;
	v->cap = cap;
	v->heap = true;
	return 0;
}

static int vec_push(struct wctx *w, struct vec *v, const void *item)
{
	int rc = vec_reserve(w, v, v->n + 1);
	if (rc)
		return rc;
	memcpy(vec_at(v, v->n++), item, v->elem);
	return 0;
}

static int vec_push_ptr(struct wctx *w, struct vec *v, void *ptr)
{
	return vec_push(w, v, &ptr);
}

static void vec_free(struct wctx *w, struct vec *v)
{
	if (v->heap)
		gm_alloc_release(w->a, v->p, v->cap * v->elem);
	v->heap = false;
	v->n = 0;
}

static void wctx_init(struct wctx *w, struct gm_rangemap *m)
{
	w->m = m;
	w->a = m->alloc;
	w->fresh = (struct vec)VEC_INIT(w->fresh_buf);
	w->discard = (struct vec)VEC_INIT(w->discard_buf);
	w->retire = (struct vec)VEC_INIT(w->retire_buf);
	w->dropped = (struct vec)VEC_INIT(w->dropped_buf);
	w->pub_slot = NULL;
	w->pub_node = NULL;
	w->npath = 0;
	w->count_delta = 0;
}

static void wctx_release(struct wctx *w)
{
	vec_free(w, &w->fresh);
	vec_free(w, &w->discard);
	vec_free(w, &w->retire);
	vec_free(w, &w->dropped);
}

/* Allocates a node for this write; it is remembered so that a failure can
 * free it again. */
static void *fresh_alloc(struct wctx *w, size_t size)
{
	if (vec_reserve(w, &w->fresh, w->fresh.n + 1))
		return NULL;
	bool reused;
	void *p = node_alloc(w->m, size, &reused);
	if (p) /* bit 0 (nodes are 16-aligned): it came from the pool */
		*(uintptr_t *)vec_at(&w->fresh, w->fresh.n++) = (uintptr_t)p | reused;
	return p;
}

/* A node this write no longer uses: a fresh one is freed at commit (it was
 * never visible); an old one is retired after publication. */
static int drop_node(struct wctx *w, void *node, bool fresh)
{
	if (fresh) {
		if (!node_level(node))
			w->count_delta -= popcount64(((struct leaf *)node)->present);
		return vec_push_ptr(w, &w->discard, node);
	}
	return vec_push_ptr(w, &w->retire, node);
}

/* ---- building nodes --------------------------------------------------------- */

/* One leaf from n (1..LEAF_MAX) slots starting at lo. */
static struct leaf *leaf_build(struct wctx *w, uint64_t lo, const struct slot *s, unsigned n)
{
	uint64_t vmin = KEY_MAX, vmax = 0, present = 0, maxgap = 0, start = lo;
	for (unsigned i = 0; i < n; i++) {
		if (s[i].present) {
			present |= 1ULL << i;
			if (s[i].value < vmin)
				vmin = s[i].value;
			if (s[i].value > vmax)
				vmax = s[i].value;
		} else {
			uint64_t g = gap_len(start, s[i].pivot);
			if (g > maxgap)
				maxgap = g;
		}
		start = s[i].pivot + 1;
	}
	if (!present)
		vmin = vmax = 0;
	unsigned kw = width_for(s[n - 1].pivot - lo);
	unsigned vw = vmax == vmin ? 0 : width_for(vmax - vmin);
	size_t size = leaf_bytes(n, kw, vw);
	struct leaf *l = fresh_alloc(w, size);
	if (!l)
		return NULL;
	memset(l, 0, size);
	l->level = 0;
	l->n = (uint8_t)n;
	l->kw = (uint8_t)kw;
	l->vw = (uint8_t)vw;
	l->size = (uint32_t)size;
	l->lo = lo;
	l->vbase = vmin;
	l->present = present;
	l->maxgap = maxgap;
	unsigned char *vals = l->data + (size_t)n * kw;
	for (unsigned i = 0; i < n; i++) {
		put_w(l->data + (size_t)i * kw, kw, s[i].pivot - lo);
		put_w(vals + (size_t)i * vw, vw, s[i].present ? s[i].value - vmin : 0);
	}
	w->count_delta += popcount64(present);
	return l;
}

/* Appends leaves holding slots s[0..n-1] (n >= 1) from lo to out, split
 * evenly so that each holds at most LEAF_MAX (and at least LEAF_MAX/2 when
 * there is more than one). */
static int leaves_build(struct wctx *w, uint64_t lo, const struct slot *s, size_t n,
			struct vec *out)
{
	size_t parts = (n + LEAF_MAX - 1) / LEAF_MAX, done = 0;
	for (size_t p = 0; p < parts; p++) {
		size_t take = (n - done) / (parts - p);
		struct leaf *l = leaf_build(w, lo, s + done, (unsigned)take);
		if (!l)
			return -ENOMEM;
		struct entry e = {l, s[done + take - 1].pivot, l->maxgap, true};
		if (vec_push(w, out, &e))
			return -ENOMEM;
		lo = e.hi + 1;
		done += take;
	}
	return 0;
}

static int leaf_decode(struct wctx *w, const struct leaf *l, struct vec *out)
{
	int rc = vec_reserve(w, out, out->n + l->n);
	if (rc)
		return rc;
	for (unsigned i = 0; i < l->n; i++) {
		struct slot *s = vec_at(out, out->n++);
		s->pivot = leaf_pivot(l, i);
		s->present = leaf_present(l, i);
		s->value = s->present ? leaf_value(l, i) : 0;
		s->origin = 0;
	}
	return 0;
}

/* Appends inner nodes of level `level` over the entries e[0..n-1]. */
static int inners_build(struct wctx *w, unsigned level, const struct entry *e, size_t n,
			struct vec *out)
{
	size_t parts = (n + INNER_MAX - 1) / INNER_MAX, done = 0;
	for (size_t p = 0; p < parts; p++) {
		size_t take = (n - done) / (parts - p);
		struct inner *x = fresh_alloc(w, sizeof(*x));
		if (!x)
			return -ENOMEM;
		memset(x, 0, sizeof(*x));
		x->level = (uint8_t)level;
		x->n = (uint8_t)take;
		uint64_t g = 0;
		for (size_t i = 0; i < take; i++) {
			const struct entry *c = &e[done + i];
			if (i + 1 < take)
				x->pivot[i] = c->hi;
			gm_store_relaxed(&x->child[i], c->node);
			gm_store_relaxed(&x->gap[i], c->gap);
			if (c->gap > g)
				g = c->gap;
		}
		struct entry r = {x, e[done + take - 1].hi, g, true};
		if (vec_push(w, out, &r))
			return -ENOMEM;
		done += take;
	}
	return 0;
}

static unsigned entry_count(const struct entry *e)
{
	return node_level(e->node) ? ((struct inner *)e->node)->n : ((struct leaf *)e->node)->n;
}

static bool entry_underfull(const struct entry *e)
{
	return entry_count(e) < (node_level(e->node) ? INNER_MIN : LEAF_MIN);
}

/* Appends child entries of inner node x (old) to v. */
static int push_children(struct wctx *w, struct vec *v, const struct inner *x, unsigned from,
			 unsigned to, uint64_t hi)
{
	for (unsigned i = from; i < to; i++) {
		struct entry e = {gm_load_relaxed(&((struct inner *)x)->child[i]),
				  i + 1u < x->n ? x->pivot[i] : hi,
				  gm_load_relaxed(&((struct inner *)x)->gap[i]), false};
		if (vec_push(w, v, &e))
			return -ENOMEM;
	}
	return 0;
}

/* Merges list entries i and i+1 into one or two fresh nodes, in place. */
static int merge_pair(struct wctx *w, struct vec *list, size_t i)
{
	struct entry *e = vec_at(list, i);
	struct entry l = e[0], r = e[1];
	struct entry obuf[4];
	struct vec out = VEC_INIT(obuf);
	int rc;
	if (!node_level(l.node)) {
		struct slot sbuf[2 * LEAF_MAX];
		struct vec s = VEC_INIT(sbuf);
		rc = leaf_decode(w, l.node, &s);
		if (!rc)
			rc = leaf_decode(w, r.node, &s);
		if (!rc)
			rc = leaves_build(w, ((struct leaf *)l.node)->lo, s.p, s.n, &out);
		vec_free(w, &s);
	} else {
		struct entry cbuf[2 * INNER_MAX];
		struct vec c = VEC_INIT(cbuf);
		rc = push_children(w, &c, l.node, 0, ((struct inner *)l.node)->n, l.hi);
		if (!rc)
			rc = push_children(w, &c, r.node, 0, ((struct inner *)r.node)->n, r.hi);
		if (!rc)
			rc = inners_build(w, node_level(l.node), c.p, c.n, &out);
		vec_free(w, &c);
	}
	if (!rc)
		rc = drop_node(w, l.node, l.fresh);
	if (!rc)
		rc = drop_node(w, r.node, r.fresh);
	if (rc) {
		vec_free(w, &out);
		return rc;
	}
	/* out has 1 or 2 entries; replace the pair. */
	e = vec_at(list, i);
	e[0] = ((struct entry *)out.p)[0];
	if (out.n == 2) {
		e[1] = ((struct entry *)out.p)[1];
	} else {
		memmove(&e[1], &e[2], (list->n - i - 2) * sizeof(*e));
		list->n--;
	}
	vec_free(w, &out);
	return 0;
}

/* Merges every underfull fresh entry with a neighbour (old neighbours are
 * copied and retired), so fresh nodes are not left nearly empty. */
static int fix_underfull(struct wctx *w, struct vec *list)
{
	size_t i = 0;
	while (i < list->n && list->n > 1) {
		struct entry *e = vec_at(list, i);
		if (!e->fresh || !entry_underfull(e)) {
			i++;
			continue;
		}
		size_t left = i + 1 < list->n ? i : i - 1;
		size_t before = list->n;
		int rc = merge_pair(w, list, left);
		if (rc)
			return rc;
		i = list->n < before ? left : left + 2;
	}
	return 0;
}

/* ---- the recursive rewrite ------------------------------------------------ */

static int truncate_node(struct wctx *w, void *node, uint64_t lo, uint64_t hi, uint64_t t,
			 struct vec *out);

/* Bounds of child i of x, which covers [lo, hi]. */
static inline uint64_t child_lo(const struct inner *x, unsigned i, uint64_t lo)
{
	return i ? x->pivot[i - 1] + 1 : lo;
}
static inline uint64_t child_hi(const struct inner *x, unsigned i, uint64_t hi)
{
	return i + 1u < x->n ? x->pivot[i] : hi;
}

static int modify_leaf(struct wctx *w, struct leaf *l, uint64_t lo, uint64_t f, uint64_t last,
		       const struct slot *seq, size_t nseq, struct vec *out)
{
	struct slot sbuf[LEAF_MAX + 8];
	struct vec s = VEC_INIT(sbuf);
	int rc = vec_reserve(w, &s, l->n + nseq + 1);
	unsigned i = 0;
	if (rc)
		goto done;
	/* Slots before f, the one holding f cut at f - 1. */
	for (; i < l->n; i++) {
		uint64_t p = leaf_pivot(l, i), start = leaf_start(l, i);
		if (start >= f)
			break;
		struct slot *d = vec_at(&s, s.n++);
		d->present = leaf_present(l, i);
		d->value = d->present ? leaf_value(l, i) : 0;
		d->pivot = p < f ? p : f - 1;
		d->origin = 0;
		if (p >= f)
			break;
	}
	memcpy(vec_at(&s, s.n), seq, nseq * sizeof(*seq));
	s.n += nseq;
	/* Slots after last (the one holding last keeps its tail). */
	for (i = 0; i < l->n; i++) {
		if (leaf_pivot(l, i) <= last)
			continue;
		struct slot *d = vec_at(&s, s.n++);
		d->pivot = leaf_pivot(l, i);
		d->present = leaf_present(l, i);
		d->value = d->present ? leaf_value(l, i) : 0;
		d->origin = 0;
	}
	rc = leaves_build(w, lo, s.p, s.n, out);
	if (!rc)
		rc = drop_node(w, l, false);
done:
	vec_free(w, &s);
	return rc;
}

/*
 * Rewrites the subtree `node`, which covers [lo, hi] (lo may have been
 * widened below the node's old lower bound, then lo == f), replacing
 * [f, last] by seq; appends the nodes that now cover [lo, hi] to out. With
 * may_publish, an unchanged node is reported as itself (non-fresh) and the
 * one-pointer publication is recorded in w.
 */
static int modify_node(struct wctx *w, void *node, uint64_t lo, uint64_t hi, uint64_t f,
		       uint64_t last, const struct slot *seq, size_t nseq, bool may_publish,
		       struct vec *out)
{
	if (!node_level(node))
		return modify_leaf(w, node, lo, f, last, seq, nseq, out);
	struct inner *x = node;
	unsigned a = inner_find(x, f), b = inner_find(x, last);
	struct entry tbuf[INNER_MAX + 8];
	struct vec t = VEC_INIT(tbuf);
	int rc;

	if (a == b && may_publish) {
		struct entry sbuf[4];
		struct vec sub = VEC_INIT(sbuf);
		void *c = gm_load_relaxed(&x->child[a]);
		rc = modify_node(w, c, child_lo(x, a, lo), child_hi(x, a, hi), f, last, seq, nseq,
				 true, &sub);
		struct entry *r = sub.p;
		if (!rc && sub.n == 1 && (r->node == c || !entry_underfull(r) || x->n == 1)) {
			if (r->node != c) { /* publish here: one pointer */
				w->pub_slot = &x->child[a];
				w->pub_node = r->node;
			}
			w->path[w->npath++] = (struct pathfix){x, a};
			vec_free(w, &sub);
			struct entry me = {x, hi, 0, false};
			return vec_push(w, out, &me);
		}
		if (!rc)
			rc = push_children(w, &t, x, 0, a, hi);
		for (size_t i = 0; !rc && i < sub.n; i++)
			rc = vec_push(w, &t, vec_at(&sub, i));
		vec_free(w, &sub);
	} else if (a == b) {
		rc = push_children(w, &t, x, 0, a, hi);
		if (!rc)
			rc = modify_node(w, gm_load_relaxed(&x->child[a]), child_lo(x, a, lo),
					 child_hi(x, a, hi), f, last, seq, nseq, false, &t);
	} else {
		rc = push_children(w, &t, x, 0, a, hi);
		void *ca = gm_load_relaxed(&x->child[a]);
		uint64_t alo = child_lo(x, a, lo);
		if (!rc && f > alo)
			rc = truncate_node(w, ca, alo, child_hi(x, a, hi), f - 1, &t);
		else if (!rc)
			rc = vec_push_ptr(w, &w->dropped, ca);
		for (unsigned i = a + 1; !rc && i < b; i++)
			rc = vec_push_ptr(w, &w->dropped, gm_load_relaxed(&x->child[i]));
		if (!rc)
			rc = modify_node(w, gm_load_relaxed(&x->child[b]), f, child_hi(x, b, hi), f,
					 last, seq, nseq, false, &t);
	}
	if (!rc)
		rc = push_children(w, &t, x, b + 1, x->n, hi);
	if (!rc)
		rc = fix_underfull(w, &t);
	if (!rc)
		rc = inners_build(w, x->level, t.p, t.n, out);
	if (!rc)
		rc = drop_node(w, x, false);
	vec_free(w, &t);
	return rc;
}

/* Rewrites `node` (covering [lo, hi]) to cover only [lo, t], t < hi. */
static int truncate_node(struct wctx *w, void *node, uint64_t lo, uint64_t hi, uint64_t t,
			 struct vec *out)
{
	int rc;
	if (!node_level(node)) {
		struct leaf *l = node;
		struct slot sbuf[LEAF_MAX];
		struct vec s = VEC_INIT(sbuf);
		rc = leaf_decode(w, l, &s);
		if (!rc) {
			struct slot *sl = s.p;
			size_t n = 0;
			while (sl[n].pivot < t)
				n++;
			sl[n].pivot = t;
			rc = leaves_build(w, lo, sl, n + 1, out);
		}
		if (!rc)
			rc = drop_node(w, l, false);
		vec_free(w, &s);
		return rc;
	}
	struct inner *x = node;
	unsigned c = inner_find(x, t);
	struct entry tbuf[INNER_MAX + 8];
	struct vec v = VEC_INIT(tbuf);
	rc = push_children(w, &v, x, 0, c, hi);
	if (!rc && t == child_hi(x, c, hi))
		rc = push_children(w, &v, x, c, c + 1, hi);
	else if (!rc)
		rc = truncate_node(w, gm_load_relaxed(&x->child[c]), child_lo(x, c, lo),
				   child_hi(x, c, hi), t, &v);
	for (unsigned i = c + 1; !rc && i < x->n; i++)
		rc = vec_push_ptr(w, &w->dropped, gm_load_relaxed(&x->child[i]));
	if (!rc)
		rc = fix_underfull(w, &v);
	if (!rc)
		rc = inners_build(w, x->level, v.p, v.n, out);
	if (!rc)
		rc = drop_node(w, x, false);
	vec_free(w, &v);
	return rc;
}

/* Nodes in a subtree (for reserving retirements). */
static size_t subtree_nodes(const void *node)
{
	if (!node_level(node))
		return 1;
	const struct inner *x = node;
	size_t n = 1;
	for (unsigned i = 0; i < x->n; i++)
		n += subtree_nodes(gm_load_relaxed(&((struct inner *)x)->child[i]));
	return n;
}

/* Retires (or frees) a whole subtree; returns the ranges it held. */
static uint64_t subtree_retire(struct gm_rangemap *m, void *node)
{
	if (!node_level(node)) {
		struct leaf *l = node;
		uint64_t c = (uint64_t)popcount64(l->present);
		node_retire(m, l);
		return c;
	}
	struct inner *x = node;
	uint64_t c = 0;
	for (unsigned i = 0; i < x->n; i++)
		c += subtree_retire(m, gm_load_relaxed(&x->child[i]));
	node_retire(m, x);
	return c;
}

static void fail_cleanup(struct wctx *w)
{
	for (size_t i = 0; i < w->fresh.n; i++) {
		uintptr_t t = *(uintptr_t *)vec_at(&w->fresh, i);
		void *p = (void *)(t & ~(uintptr_t)1);
		node_unalloc(w->m, p, node_size(p), t & 1);
	}
	wctx_release(w);
}

/*
 * Replaces the slots of [f, last] by seq[0..nseq-1] (which partitions
 * [f, last] and must not merge with the slots around it). All or nothing:
 * -ENOMEM leaves the map as it was.
 */
static int replace(struct gm_rangemap *m, uint64_t f, uint64_t last, const struct slot *seq,
		   size_t nseq)
{
	struct wctx w;
	wctx_init(&w, m);
	struct entry obuf[8];
	struct vec out = VEC_INIT(obuf);
	void *root = gm_load_relaxed(&m->root);
	unsigned height = m->height;
	int rc = modify_node(&w, root, 0, KEY_MAX, f, last, seq, nseq, true, &out);
	void *new_root = root;
	if (!rc && !(out.n == 1 && ((struct entry *)out.p)->node == root)) {
		/* Grow levels while more than one node is left. */
		while (!rc && out.n > 1) {
			struct entry nbuf[8];
			struct vec next = VEC_INIT(nbuf);
			unsigned level = node_level(((struct entry *)out.p)->node) + 1;
			rc = inners_build(&w, level, out.p, out.n, &next);
			vec_free(&w, &out);
			out = next;
			if (out.p == nbuf) { /* keep the buffer alive: copy to obuf */
				memcpy(obuf, nbuf, out.n * sizeof(struct entry));
				out.p = obuf;
			}
		}
		if (!rc) {
			new_root = ((struct entry *)out.p)->node;
			/* Shrink while the (fresh) root has a single child. */
			while (!rc && node_level(new_root) && ((struct inner *)new_root)->n == 1) {
				void *child = gm_load_relaxed(&((struct inner *)new_root)->child[0]);
				rc = drop_node(&w, new_root, true);
				new_root = child;
			}
			height = node_level(new_root) + 1;
		}
	}
	vec_free(&w, &out);
	if (!rc && height >= GM_RANGEMAP_MAX_HEIGHT)
		rc = -ENOSPC;
	size_t nretire = 0;
	if (!rc) {
		nretire = w.retire.n;
		for (size_t i = 0; i < w.dropped.n; i++)
			nretire += subtree_nodes(*(void **)vec_at(&w.dropped, i));
		rc = gm_reclaim_reserve(map_reclaim(m), nretire);
	}
	if (rc) {
		fail_cleanup(&w);
		return rc;
	}
	/* Commit: one release store makes the whole change visible. */
	if (w.pub_slot)
		gm_store_release(w.pub_slot, w.pub_node);
	else if (new_root != root)
		gm_store_release(&m->root, new_root);
	m->height = height;
	for (unsigned i = 0; i < w.npath; i++) {
		struct inner *x = w.path[i].node;
		unsigned j = w.path[i].idx;
		gm_store_relaxed(&x->gap[j], node_maxgap(gm_load_relaxed(&x->child[j])));
	}
	int64_t delta = w.count_delta;
	for (size_t i = 0; i < w.retire.n; i++) {
		void *p = *(void **)vec_at(&w.retire, i);
		if (!node_level(p))
			delta -= popcount64(((struct leaf *)p)->present);
		node_retire(m, p);
	}
	for (size_t i = 0; i < w.dropped.n; i++)
		delta -= (int64_t)subtree_retire(m, *(void **)vec_at(&w.dropped, i));
	for (size_t i = 0; i < w.discard.n; i++)
		node_discard(m, *(void **)vec_at(&w.discard, i));
	m->count = (uint64_t)((int64_t)m->count + delta);
	wctx_release(&w);
	return 0;
}

/* ---- reading ------------------------------------------------------------- */

static inline const void *map_root(const struct gm_rangemap *m)
{
	return gm_load_acquire(&((struct gm_rangemap *)m)->root);
}

static const struct leaf *descend(const struct gm_rangemap *m, uint64_t index)
{
	const void *n = map_root(m);
	while (node_level(n)) {
		const struct inner *x = n;
		n = child_acquire(x, inner_find_portable(x, index));
		if (x->level > 1)
			prefetch_node(n);
		else
			prefetch_leaf(n);
	}
	return n;
}

#ifdef HAVE_AVX2_READ
AVX2_READ static inline const struct leaf *descend_avx2(const struct gm_rangemap *m, uint64_t index)
{
	const void *n = map_root(m);
	while (node_level(n)) {
		const struct inner *x = n;
		n = child_acquire(x, inner_find_avx2(x, index));
		if (x->level > 1)
			prefetch_node(n);
		else
			prefetch_leaf(n);
	}
	return n;
}

/* descend_avx2 for portable callers (out of line). */
AVX2_READ static const struct leaf *descend_avx2_call(const struct gm_rangemap *m, uint64_t index)
{
	return descend_avx2(m, index);
}
#endif

/* The slot holding index. */
struct probe {
	uint64_t first, last, value;
	bool present;
};

static void probe_at(const struct gm_rangemap *m, uint64_t index, struct probe *p)
{
#ifdef HAVE_AVX2_READ
	const struct leaf *l = gm_cpu_avx2_ ? descend_avx2_call(m, index) : descend(m, index);
#else
	const struct leaf *l = descend(m, index);
#endif
	unsigned i = leaf_find(l, index);
	p->first = leaf_start(l, i);
	p->last = leaf_pivot(l, i);
	p->present = leaf_present(l, i);
	p->value = p->present ? leaf_value(l, i) : 0;
}

/* What load reports of slot i of leaf l. */
static inline int load_slot(const struct leaf *l, unsigned i, uint64_t *value,
			    uint64_t *first, uint64_t *last)
{
	if (first)
		*first = leaf_start(l, i);
	if (last)
		*last = leaf_pivot(l, i);
	if (!leaf_present(l, i))
		return -ENOENT;
	if (value)
		*value = leaf_value(l, i);
	return 0;
}

#ifdef HAVE_AVX2_READ
AVX2_READ static int load_avx2(const struct gm_rangemap *map, uint64_t index, uint64_t *value,
			       uint64_t *first, uint64_t *last)
{
	const struct leaf *l = descend_avx2(map, index);
	return load_slot(l, leaf_find_avx2(l, index), value, first, last);
}
#endif

#ifdef HAVE_AVX2_READ
AVX2_READ static bool contains_avx2(const struct gm_rangemap *map, uint64_t index)
{
	const struct leaf *l = descend_avx2(map, index);
	return (l->present >> leaf_find_avx2(l, index)) & 1;
}
#endif

int gm_rangemap_load(const struct gm_rangemap *map, uint64_t index, uint64_t *value,
		     uint64_t *first, uint64_t *last)
{
	if (GM_UNLIKELY(!map))
		return -EINVAL;
#ifdef HAVE_AVX2_READ
	if (GM_LIKELY(gm_cpu_avx2_))
		return load_avx2(map, index, value, first, last);
#endif
	const struct leaf *l = descend(map, index);
	return load_slot(l, leaf_find_portable(l, index), value, first, last);
}

/* Membership only: no bounds, no value, so nothing past the key deltas
 * and the present word of the leaf is read. */
bool gm_rangemap_contains(const struct gm_rangemap *map, uint64_t index)
{
	if (GM_UNLIKELY(!map))
		return false;
#ifdef HAVE_AVX2_READ
	if (GM_LIKELY(gm_cpu_avx2_))
		return contains_avx2(map, index);
#endif
	const struct leaf *l = descend(map, index);
	return (l->present >> leaf_find_portable(l, index)) & 1;
}

/*
 * Many maps, one index (gm_rangemap_contains_many). The descents run level
 * by level side by side: each step does one node of every map that is not
 * at its leaf yet, so the maps' loads and compares overlap instead of
 * waiting for each other (one lookup is a chain of dependent loads). Whether
 * a child is a leaf is known from its parent's level, before the child's
 * line arrives. The pivot count is the only work per inner node that grows
 * with the fan-out; with AVX2 it is four compares per instruction (chosen
 * at run time), which is what makes side-by-side descents pay: measured on
 * ioreq_select's four rangesets of 4096 ranges (best of 40-100 runs on a
 * shared machine), 78-82 ns per four-set question through
 * gm_rangeset_first_containing against 89-95 ns for gm_rangeset_contains
 * set by set stopping at the first hit, and 95-100 ns side by side with
 * the scalar count.
 */
#define MANY_GROUP 8

/* The descents of up to MANY_GROUP maps. When every root is at the same
 * level (maps of similar sizes, the usual case) each level is one plain
 * loop over the maps; otherwise a map stops when it reaches its leaf. The
 * last step prefetches the leaves' key lines. */
#define DEFINE_CONTAINS_GROUP(NAME, INNER_FIND, LEAF_FIND, ATTR)                     \
	ATTR static uint64_t NAME(const struct gm_rangemap *const *maps, unsigned n,  \
				  uint64_t index)                                     \
	{                                                                             \
		const void *node[MANY_GROUP];                                         \
		if (!n)                                                               \
			return 0;                                                     \
		const void *root = map_root(maps[0]);                                 \
		unsigned top = node_level(root);                                      \
		bool same = true;                                                     \
		node[0] = root;                                                       \
		for (unsigned i = 1; i < n; i++) {                                    \
			node[i] = map_root(maps[i]);                                  \
			same &= node_level(node[i]) == top;                           \
		}                                                                     \
		if (same) {                                                           \
			for (unsigned lv = top; lv; lv--)                             \
				for (unsigned i = 0; i < n; i++) {                    \
					const struct inner *x = node[i];              \
					node[i] = child_acquire(x, INNER_FIND(x, index)); \
					if (lv == 1)                                  \
						prefetch_leaf(node[i]);               \
				}                                                     \
		} else {                                                              \
			for (bool more = true; more;) {                               \
				more = false;                                         \
				for (unsigned i = 0; i < n; i++) {                    \
					if (!node_level(node[i]))                     \
						continue;                             \
					const struct inner *x = node[i];              \
					node[i] = child_acquire(x, INNER_FIND(x, index)); \
					more |= x->level > 1;                         \
				}                                                     \
			}                                                             \
		}                                                                     \
		uint64_t mask = 0;                                                    \
		for (unsigned i = 0; i < n; i++) {                                    \
			const struct leaf *l = node[i];                               \
			mask |= ((l->present >> LEAF_FIND(l, index)) & 1) << i;       \
		}                                                                     \
		return mask;                                                          \
	}

DEFINE_CONTAINS_GROUP(contains_group, inner_find_portable, leaf_find_portable, )

#ifdef HAVE_AVX2_READ
#define HAVE_AVX2_GROUP 1
DEFINE_CONTAINS_GROUP(contains_group_avx2, inner_find_avx2, leaf_find_avx2, AVX2_READ)
#endif

uint64_t gm_rangemap_contains_many(const struct gm_rangemap *const *maps, unsigned n,
				   uint64_t index)
{
	uint64_t mask = 0;
	if (GM_UNLIKELY(!maps))
		return 0;
	for (unsigned i = 0; i < n && i < 64; i++)
		if (GM_UNLIKELY(!maps[i]))
			return 0;
#ifdef HAVE_AVX2_GROUP
	bool avx2 = gm_cpu_avx2_;
	if (n <= MANY_GROUP) /* one group: a tail call */
		return avx2 ? contains_group_avx2(maps, n, index) : contains_group(maps, n, index);
#else
	if (n <= MANY_GROUP)
		return contains_group(maps, n, index);
#endif
	for (unsigned at = 0; at < n && at < 64; at += MANY_GROUP) {
		unsigned k = n - at < MANY_GROUP ? n - at : MANY_GROUP;
#ifdef HAVE_AVX2_GROUP
		if (avx2) {
			mask |= contains_group_avx2(maps + at, k, index) << at;
			continue;
		}
#endif
		mask |= contains_group(maps + at, k, index) << at;
	}
	return mask;
}

/* Cursor moves: the path from the root is kept so a step costs O(1)
 * amortised. Under RCU the path is one consistent (possibly older) version
 * of the tree, since nodes a reader can reach never change except for a
 * child pointer swapped for a node with the same bounds. */
static void cursor_seek(struct gm_rangemap_iter *c, uint64_t index)
{
	const void *n = map_root(c->map);
	unsigned d = 0;
	while (node_level(n) && d < GM_RANGEMAP_MAX_HEIGHT) {
		const struct inner *x = n;
		unsigned i = inner_find(x, index);
		c->node[d] = x;
		c->pos[d] = (unsigned char)i;
		d++;
		n = child_acquire(x, i);
	}
	c->depth = d;
	c->leaf = n;
	c->slot = leaf_find(n, index);
}

/* Descends from n (at path depth d) to its leftmost (or rightmost) leaf. */
static void cursor_descend(struct gm_rangemap_iter *c, const void *n, unsigned d, bool right)
{
	while (node_level(n) && d < GM_RANGEMAP_MAX_HEIGHT) {
		const struct inner *x = n;
		unsigned i = right ? x->n - 1u : 0;
		c->node[d] = x;
		c->pos[d] = (unsigned char)i;
		d++;
		n = child_acquire(x, i);
	}
	c->depth = d;
	c->leaf = n;
	c->slot = right ? ((const struct leaf *)n)->n - 1u : 0;
}

static bool cursor_advance(struct gm_rangemap_iter *c)
{
	const struct leaf *l = c->leaf;
	if (c->slot + 1 < l->n) {
		c->slot++;
		return true;
	}
	int d = (int)c->depth - 1;
	while (d >= 0 && c->pos[d] + 1u >= ((const struct inner *)c->node[d])->n)
		d--;
	if (d < 0)
		return false;
	c->pos[d]++;
	cursor_descend(c, child_acquire(c->node[d], c->pos[d]), (unsigned)d + 1, false);
	return true;
}

static bool cursor_retreat(struct gm_rangemap_iter *c)
{
	if (c->slot > 0) {
		c->slot--;
		return true;
	}
	int d = (int)c->depth - 1;
	while (d >= 0 && c->pos[d] == 0)
		d--;
	if (d < 0)
		return false;
	c->pos[d]--;
	cursor_descend(c, child_acquire(c->node[d], c->pos[d]), (unsigned)d + 1, true);
	return true;
}

static void cursor_get(const struct gm_rangemap_iter *c, struct gm_range *r, bool *present)
{
	const struct leaf *l = c->leaf;
	r->first = leaf_start(l, c->slot);
	r->last = leaf_pivot(l, c->slot);
	*present = leaf_present(l, c->slot);
	r->value = *present ? leaf_value(l, c->slot) : 0;
}

int gm_rangemap_next(const struct gm_rangemap *map, uint64_t index, struct gm_range *range)
{
	if (!map || !range)
		return -EINVAL;
	struct gm_rangemap_iter c = {.map = map};
	bool present;
	cursor_seek(&c, index);
	cursor_get(&c, range, &present);
	if (present)
		return 0;
	if (!cursor_advance(&c))
		return -ENOENT;
	cursor_get(&c, range, &present); /* gaps never touch gaps */
	return present ? 0 : -ENOENT;
}

int gm_rangemap_prev(const struct gm_rangemap *map, uint64_t index, struct gm_range *range)
{
	if (!map || !range)
		return -EINVAL;
	struct gm_rangemap_iter c = {.map = map};
	bool present;
	cursor_seek(&c, index);
	cursor_get(&c, range, &present);
	if (present)
		return 0;
	if (!cursor_retreat(&c))
		return -ENOENT;
	cursor_get(&c, range, &present);
	return present ? 0 : -ENOENT;
}

#define ITER_FLAGS (GM_ITER_REVERSE | GM_RANGEMAP_ITER_CLIP | GM_RANGEMAP_ITER_GAPS)

int gm_rangemap_iter_init(struct gm_rangemap_iter *c, const struct gm_rangemap *map,
			  uint64_t first, uint64_t last, unsigned flags)
{
	if (!c)
		return -EINVAL;
	c->state = 2; /* a refused iterator yields nothing */
	if (!map || first > last || (flags & ~ITER_FLAGS))
		return -EINVAL;
	c->map = map;
	c->first = first;
	c->last = last;
	c->flags = flags;
	c->state = 0;
	return 0;
}

/* The slot under the cursor is outside the window on the side the walk
 * moves to: nothing further can overlap it. */
static bool cursor_past(const struct gm_rangemap_iter *c, const struct gm_range *r, bool reverse)
{
	return reverse ? r->last < c->first : r->first > c->last;
}

int gm_rangemap_iter_next(struct gm_rangemap_iter *c, struct gm_range *range)
{
	if (!c || !range)
		return -EINVAL;
	bool want_gaps = c->flags & GM_RANGEMAP_ITER_GAPS;
	bool reverse = c->flags & GM_ITER_REVERSE;
	if (c->state == 0) {
		cursor_seek(c, reverse ? c->last : c->first);
		c->state = 1;
	}
	while (c->state == 1) {
		struct gm_range r;
		bool present;
		cursor_get(c, &r, &present);
		if (cursor_past(c, &r, reverse)) {
			c->state = 2;
			break;
		}
		if (!(reverse ? cursor_retreat(c) : cursor_advance(c)))
			c->state = 2;
		if (present == want_gaps)
			continue;
		if (c->flags & GM_RANGEMAP_ITER_CLIP) {
			if (r.first < c->first)
				r.first = c->first;
			if (r.last > c->last)
				r.last = c->last;
		}
		*range = r;
		return 0;
	}
	return -ENOENT;
}

/* ---- find_gap ------------------------------------------------------------ */

struct gap_query {
	uint64_t size, align, min, max, found;
};

static bool gap_fits(struct gap_query *q, uint64_t start, uint64_t end)
{
	if (end < q->min || start > q->max)
		return false;
	uint64_t s = start > q->min ? start : q->min;
	uint64_t e = end < q->max ? end : q->max;
	uint64_t r = s & (q->align - 1);
	if (r) {
		if (s > KEY_MAX - (q->align - r))
			return false;
		s += q->align - r;
	}
	if (s > e || e - s < q->size - 1)
		return false;
	q->found = s;
	return true;
}

static bool find_gap_in(struct gap_query *q, const void *node, uint64_t lo, uint64_t hi)
{
	if (!node_level(node)) {
		const struct leaf *l = node;
		for (unsigned i = 0; i < l->n; i++) {
			uint64_t start = leaf_start(l, i), end = leaf_pivot(l, i);
			if (start > q->max)
				return false;
			if (!leaf_present(l, i) && gap_len(start, end) >= q->size &&
			    gap_fits(q, start, end))
				return true;
		}
		return false;
	}
	const struct inner *x = node;
	for (unsigned i = 0; i < x->n; i++) {
		uint64_t clo = child_lo(x, i, lo), chi = child_hi(x, i, hi);
		if (chi < q->min)
			continue;
		if (clo > q->max)
			return false;
		if (gm_load_relaxed(&((struct inner *)x)->gap[i]) < q->size)
			continue;
		if (find_gap_in(q, child_acquire(x, i), clo, chi))
			return true;
	}
	return false;
}

int gm_rangemap_find_gap(const struct gm_rangemap *map, uint64_t size, uint64_t align,
			 uint64_t min, uint64_t max, uint64_t *first)
{
	if (align == 0)
		align = 1;
	if (!map || !first || size == 0 || (align & (align - 1)) || min > max)
		return -EINVAL;
	struct gap_query q = {size, align, min, max, 0};
	if (!find_gap_in(&q, map_root(map), 0, KEY_MAX))
		return -ENOSPC;
	if (first)
		*first = q.found;
	return 0;
}

/* ---- writing --------------------------------------------------------------- */

static bool mergeable(const struct gm_rangemap *m, bool pa, uint64_t va, bool pb, uint64_t vb)
{
	if (pa != pb)
		return false;
	return !pa || (coalescing(m) && va == vb);
}

/* Shifts that treat a count of 64 as "everything shifted out". */
static inline uint64_t shl64(uint64_t x, unsigned s) { return s >= 64 ? 0 : x << s; }
static inline uint64_t shr64(uint64_t x, unsigned s) { return s >= 64 ? 0 : x >> s; }

/* Largest delta a value width can hold. */
static inline uint64_t width_max(unsigned vw)
{
	return vw == 0 ? 0 : vw == 8 ? UINT64_MAX : (1ULL << (8 * vw)) - 1;
}

/* Bits [from, to) of a 64-bit mask. */
static inline uint64_t bit_span(unsigned from, unsigned to)
{
	return shr64(KEY_MAX, 64 - to) & ~shr64(KEY_MAX, 64 - from);
}

/* Longest gap among slots [from, to) of a leaf (visits only the gaps). */
static uint64_t leaf_gaps_max(const struct leaf *l, unsigned from, unsigned to)
{
	uint64_t g = 0, gaps = ~l->present & bit_span(from, to);
	while (gaps) {
		unsigned t = (unsigned)__builtin_ctzll(gaps);
		gaps &= gaps - 1;
		uint64_t len = gap_len(leaf_start(l, t), leaf_pivot(l, t));
		if (len > g)
			g = len;
	}
	return g;
}

/*
 * A new leaf with l's bounds whose slots are l's slots [0, i), then
 * ns[0..k-1] (which cover exactly what l's slots i..j covered), then l's
 * slots (j, n). Built straight from l's compressed arrays: the key width
 * cannot change (same bounds), the key and value bytes of the kept slots
 * are copied as blocks unless the new values do not fit l's value base and
 * width. Returns NULL when the allocation fails (nothing else changed).
 * O(n) byte copies.
 */
static struct leaf *leaf_splice(struct gm_rangemap *m, const struct leaf *l, unsigned i,
				unsigned j, const struct slot *ns, unsigned k)
{
	unsigned n = l->n, tail = n - j - 1, nn = i + k + tail, kw = l->kw, vw = l->vw;
	uint64_t vbase = l->vbase, nsbits = 0;
	bool fits = true;
	for (unsigned t = 0; t < k; t++) {
		if (!ns[t].present)
			continue;
		nsbits |= 1ULL << t;
		if (ns[t].value < vbase || ns[t].value - vbase > width_max(vw))
			fits = false;
	}
	if (!fits) { /* recompute the value base and width over what stays */
		uint64_t vmin = KEY_MAX, vmax = 0;
		for (unsigned t = 0; t < n; t++) {
			if ((t >= i && t <= j) || !leaf_present(l, t))
				continue;
			uint64_t v = leaf_value(l, t);
			vmin = v < vmin ? v : vmin;
			vmax = v > vmax ? v : vmax;
		}
		for (unsigned t = 0; t < k; t++) {
			if (!ns[t].present)
				continue;
			vmin = ns[t].value < vmin ? ns[t].value : vmin;
			vmax = ns[t].value > vmax ? ns[t].value : vmax;
		}
		vbase = vmin;
		vw = vmax == vmin ? 0 : width_for(vmax - vmin);
	}
	size_t size = leaf_bytes(nn, kw, vw);
	bool reused;
	struct leaf *x = node_alloc(m, size, &reused);
	if (!x)
		return NULL;
	memset((char *)x + size - 16, 0, 16); /* the padding, if any */
	x->level = 0;
	x->n = (uint8_t)nn;
	x->kw = (uint8_t)kw;
	x->vw = (uint8_t)vw;
	x->size = (uint32_t)size;
	x->lo = l->lo;
	x->vbase = vbase;
	x->present = (l->present & shr64(KEY_MAX, 64 - i)) | (nsbits << i) |
		     shl64(shr64(l->present, j + 1), i + k);
	/* keys */
	memcpy(x->data, l->data, (size_t)i * kw);
	for (unsigned t = 0; t < k; t++)
		put_w(x->data + (size_t)(i + t) * kw, kw, ns[t].pivot - l->lo);
	memcpy(x->data + (size_t)(i + k) * kw, l->data + (size_t)(j + 1) * kw, (size_t)tail * kw);
	/* values */
	const unsigned char *ov = l->data + (size_t)n * kw;
	unsigned char *xv = x->data + (size_t)nn * kw;
	if (vw == l->vw && vbase == l->vbase) {
		memcpy(xv, ov, (size_t)i * vw);
		memcpy(xv + (size_t)(i + k) * vw, ov + (size_t)(j + 1) * vw, (size_t)tail * vw);
	} else {
		for (unsigned t = 0, d = 0; t < n; t++) {
			if (t == i)
				d += k, t = j; /* skip the replaced slots */
			else
				put_w(xv + (size_t)d++ * vw, vw,
				      leaf_present(l, t) ? leaf_value(l, t) - vbase : 0);
		}
	}
	for (unsigned t = 0; t < k; t++)
		put_w(xv + (size_t)(i + t) * vw, vw, ns[t].present ? ns[t].value - vbase : 0);
	/* the longest gap: rescan only if the old longest may have gone */
	uint64_t added = 0, start = leaf_start(l, i);
	for (unsigned t = 0; t < k; t++) {
		if (!ns[t].present && gap_len(start, ns[t].pivot) > added)
			added = gap_len(start, ns[t].pivot);
		start = ns[t].pivot + 1;
	}
	if (!l->maxgap || leaf_gaps_max(l, i, j + 1) < l->maxgap)
		x->maxgap = added > l->maxgap ? added : l->maxgap;
	else
		x->maxgap = leaf_gaps_max(x, 0, nn);
	return x;
}

/* Refreshes the gap summaries of path[0..depth-1] (bottom up) after the
 * child of path[depth-1] changed; stops where a summary did not change. */
static void refresh_gaps(struct inner *const *path, const unsigned *idx, unsigned depth)
{
	for (unsigned d = depth; d-- > 0;) {
		uint64_t g = node_maxgap(gm_load_relaxed(&path[d]->child[idx[d]]));
		if (gm_load_relaxed(&path[d]->gap[idx[d]]) == g)
			break;
		gm_store_relaxed(&path[d]->gap[idx[d]], g);
	}
}

/*
 * The in-leaf store whose leaf l overflows, when l's parent has room for
 * one more child: l's slots [0, i), ns[0..k-1], l's slots (j, n) are cut
 * into two leaves, and a copy of the parent takes them in l's place. The
 * parent copy (same bounds) is published with one release store into the
 * grandparent (or as the root). O(LEAF_MAX + INNER_MAX).
 */
static int split_in_parent(struct gm_rangemap *m, struct inner *const *path, const unsigned *idx,
			   unsigned depth, struct leaf *l, unsigned i, unsigned j,
			   const struct slot *ns, unsigned k)
{
	struct slot s[LEAF_MAX + 3];
	unsigned nn = 0;
	for (unsigned t = 0; t < l->n; t++) {
		if (t == i) {
			memcpy(&s[nn], ns, k * sizeof(*ns));
			nn += k;
			t = j;
			continue;
		}
		bool pr = leaf_present(l, t);
		s[nn++] = (struct slot){leaf_pivot(l, t), pr ? leaf_value(l, t) : 0, pr, 0};
	}
	struct inner *p = path[depth - 1];
	unsigned a = idx[depth - 1], half = nn / 2;
	uint64_t mid = s[half - 1].pivot;
	if (gm_reclaim_reserve(map_reclaim(m), 2))
		return -ENOMEM;
	struct wctx w;
	wctx_init(&w, m);
	struct leaf *left = leaf_build(&w, l->lo, s, half);
	struct leaf *right = left ? leaf_build(&w, mid + 1, s + half, nn - half) : NULL;
	struct inner *np = right ? fresh_alloc(&w, sizeof(*np)) : NULL;
	if (!np) {
		fail_cleanup(&w);
		return -ENOMEM;
	}
	memset(np, 0, sizeof(*np));
	np->level = p->level;
	np->n = (uint8_t)(p->n + 1);
	memcpy(np->pivot, p->pivot, a * sizeof(uint64_t));
	np->pivot[a] = mid;
	memcpy(np->pivot + a + 1, p->pivot + a, (p->n - 1u - a) * sizeof(uint64_t));
	for (unsigned t = 0, d = 0; t < p->n; t++, d++) {
		if (t == a) {
			gm_store_relaxed(&np->child[d], left);
			gm_store_relaxed(&np->gap[d], left->maxgap);
			d++;
			gm_store_relaxed(&np->child[d], right);
			gm_store_relaxed(&np->gap[d], right->maxgap);
			continue;
		}
		gm_store_relaxed(&np->child[d], gm_load_relaxed(&p->child[t]));
		gm_store_relaxed(&np->gap[d], gm_load_relaxed(&p->gap[t]));
	}
	if (depth > 1)
		gm_store_release(&path[depth - 2]->child[idx[depth - 2]], np);
	else
		gm_store_release(&m->root, np);
	refresh_gaps(path, idx, depth - 1);
	m->count = m->count + (uint64_t)w.count_delta - (uint64_t)popcount64(l->present);
	wctx_release(&w);
	node_retire(m, l);
	node_retire(m, p);
	return 0;
}

/* True if the slot next to leaf path[depth]'s edge (left or right), which
 * lies in a sibling leaf under the same parent, does not merge with a slot
 * (present, value). False when it may (or lies under another parent). */
static bool neighbour_apart(const struct gm_rangemap *m, struct inner *const *path,
			    const unsigned *idx, unsigned depth, bool left, bool present,
			    uint64_t value)
{
	if (!depth)
		return false;
	struct inner *p = path[depth - 1];
	unsigned c = idx[depth - 1];
	if (left ? c == 0 : c + 1u >= p->n)
		return false;
	const struct leaf *nb = gm_load_relaxed(&p->child[left ? c - 1 : c + 1]);
	unsigned s = left ? nb->n - 1u : 0;
	bool np = leaf_present(nb, s);
	return !mergeable(m, np, np ? leaf_value(nb, s) : 0, present, value);
}

/*
 * The common case, without the general machinery: [first, last] lies
 * inside one leaf, each of its neighbours does too or (in a sibling leaf)
 * does not merge with it, and the rebuilt leaf neither overflows nor
 * underflows. The new leaf replaces the old one with one release store
 * of the parent's child pointer (same bounds), then the gap summaries on
 * the path are refreshed. Returns 1 when the case does not apply.
 */
static int assign_in_leaf(struct gm_rangemap *m, uint64_t first, uint64_t last, bool present,
			  uint64_t value)
{
	struct inner *path[GM_RANGEMAP_MAX_HEIGHT];
	unsigned idx[GM_RANGEMAP_MAX_HEIGHT], depth = 0;
	void *n = gm_load_relaxed(&m->root);
	while (node_level(n)) {
		struct inner *x = n;
		unsigned i = inner_find(x, first);
		path[depth] = x;
		idx[depth++] = i;
		n = gm_load_relaxed(&x->child[i]);
		if (x->level > 1)
			prefetch_node(n);
		else
			prefetch_leaf(n); /* not the lines after it */
	}
	struct leaf *l = n;
	struct node_pool *pool = map_pool(m);
	if (pool) /* the new leaf's memory: about this leaf's size class */
		for (unsigned c = l->size / 16; c < l->size / 16 + 3 && c < NODE_CLASSES; c++)
			__builtin_prefetch(pool->stash[c], 1);
	uint64_t hi = leaf_hi(l);
	if (last > hi)
		return 1; /* [first, last] reaches into the next leaf */
	/* At an edge of the leaf the neighbouring slot is in the next leaf:
	 * fine as long as it does not merge with [first, last]. */
	if (first == l->lo && first && !neighbour_apart(m, path, idx, depth, true, present, value))
		return 1;
	if (last == hi && last != KEY_MAX &&
	    !neighbour_apart(m, path, idx, depth, false, present, value))
		return 1;
	unsigned i = leaf_find(l, first), j = leaf_find(l, last);
	uint64_t si = leaf_start(l, i), pj = leaf_pivot(l, j);
	/* Widen over the slots next to (or holding the ends of) [first, last]
	 * that merge with it (inside this leaf; across its edges nothing
	 * merges, checked above). */
	unsigned il = first == si && i ? i - 1 : i, jr = last == pj && j + 1 < l->n ? j + 1 : j;
	if (mergeable(m, leaf_present(l, il), leaf_present(l, il) ? leaf_value(l, il) : 0, present,
		      value)) {
		i = il;
		first = si = leaf_start(l, i);
	}
	if (mergeable(m, leaf_present(l, jr), leaf_present(l, jr) ? leaf_value(l, jr) : 0, present,
		      value)) {
		j = jr;
		last = pj = leaf_pivot(l, j);
	}
	bool pi = leaf_present(l, i), pjp = leaf_present(l, j);
	uint64_t vi = pi ? leaf_value(l, i) : 0;
	if (i == j && si == first && pj == last && pi == present && vi == value)
		return 0; /* already so */
	struct slot ns[3];
	unsigned k = 0;
	if (si < first)
		ns[k++] = (struct slot){first - 1, vi, pi, 0};
	ns[k++] = (struct slot){last, value, present, 0};
	if (pj > last)
		ns[k++] = (struct slot){pj, pjp ? leaf_value(l, j) : 0, pjp, 0};
	unsigned nn = l->n - (j - i + 1) + k;
	if (nn > LEAF_MAX && depth && path[depth - 1]->n < INNER_MAX)
		return split_in_parent(m, path, idx, depth, l, i, j, ns, k);
	if (nn > LEAF_MAX || (nn < LEAF_MIN && depth))
		return 1;
	if (gm_reclaim_reserve(map_reclaim(m), 1))
		return -ENOMEM;
	struct leaf *nl = leaf_splice(m, l, i, j, ns, k);
	if (!nl)
		return -ENOMEM;
	if (depth)
		gm_store_release(&path[depth - 1]->child[idx[depth - 1]], nl);
	else
		gm_store_release(&m->root, nl);
	if (nl->maxgap != l->maxgap) /* else the summaries above still hold */
		refresh_gaps(path, idx, depth);
	m->count = m->count + (uint64_t)popcount64(nl->present) -
		   (uint64_t)popcount64(l->present);
	node_retire(m, l);
	return 0;
}

/* Makes [first, last] one slot (range or gap), merged with neighbours. */
static int assign(struct gm_rangemap *m, uint64_t first, uint64_t last, bool present,
		  uint64_t value)
{
	struct probe p;
	if (!present)
		value = 0;
	int rc = assign_in_leaf(m, first, last, present, value);
	if (rc <= 0)
		return rc;
	if (first > 0) {
		probe_at(m, first - 1, &p);
		if (mergeable(m, p.present, p.value, present, value))
			first = p.first;
	}
	if (last < KEY_MAX) {
		probe_at(m, last + 1, &p);
		if (mergeable(m, p.present, p.value, present, value))
			last = p.last;
	}
	probe_at(m, first, &p);
	if (p.first == first && p.last == last && p.present == present && p.value == value)
		return 0; /* already so */
	struct slot s = {last, value, present, 0};
	return replace(m, first, last, &s, 1);
}

/* assign, then (RCU mode) the recycle batch for the next write. */
static int assign_and_prepare(struct gm_rangemap *m, uint64_t first, uint64_t last, bool present,
			      uint64_t value)
{
	int rc = assign(m, first, last, present, value);
	if (GM_LIKELY(!rc))
		recycle_prepare(m);
	return rc;
}

int gm_rangemap_store(struct gm_rangemap *map, uint64_t first, uint64_t last, uint64_t value)
{
	if (!map || first > last)
		return -EINVAL;
	return assign_and_prepare(map, first, last, true, value);
}

int gm_rangemap_remove(struct gm_rangemap *map, uint64_t first, uint64_t last)
{
	if (!map || first > last)
		return -EINVAL;
	return assign_and_prepare(map, first, last, false, 0);
}

int gm_rangemap_insert(struct gm_rangemap *map, uint64_t first, uint64_t last, uint64_t value)
{
	if (!map || first > last)
		return -EINVAL;
	struct probe p;
	probe_at(map, first, &p);
	if (p.present || p.last < last)
		return -EEXIST;
	return assign_and_prepare(map, first, last, true, value);
}

static int push_slot(struct wctx *w, struct vec *v, uint64_t pivot, bool present,
		     uint64_t value, uint32_t origin)
{
	struct slot s = {pivot, present ? value : 0, present, origin};
	return vec_push(w, v, &s);
}

/* Calls fn on each piece of [first, last]; collects the new slots of the
 * whole slots touching [first, last] into seq. */
static int update_collect(struct gm_rangemap *m, uint64_t first, uint64_t last,
			  gm_rangemap_update_fn fn, void *ctx, unsigned flags, struct wctx *w,
			  struct vec *seq, uint64_t *region_first, bool *changed)
{
	struct gm_rangemap_iter c = {.map = m};
	cursor_seek(&c, first);
	*changed = false;
	for (uint32_t origin = 0;; origin++) {
		struct gm_range r;
		bool present;
		cursor_get(&c, &r, &present);
		if (origin == 0)
			*region_first = r.first;
		int rc = 0;
		if (r.first < first)
			rc = push_slot(w, seq, first - 1, present, r.value, origin);
		struct gm_range piece = {r.first < first ? first : r.first,
					 r.last > last ? last : r.last, r.value};
		bool np = present;
		uint64_t nv = r.value;
		if (!rc && (present || (flags & GM_RANGEMAP_UPDATE_GAPS))) {
			uint64_t v = r.value;
			rc = fn(ctx, &piece, present, &v);
			if (rc == GM_RANGEMAP_SET) {
				np = true;
				nv = v;
				rc = 0;
			} else if (rc == GM_RANGEMAP_CLEAR) {
				np = false;
				nv = 0;
				rc = 0;
			} else if (rc > 0) {
				rc = -EINVAL;
			}
		}
		if (!rc && (np != present || (np && nv != r.value)))
			*changed = true;
		if (!rc)
			rc = push_slot(w, seq, piece.last, np, nv, origin);
		if (!rc && r.last > last)
			rc = push_slot(w, seq, r.last, present, r.value, origin);
		if (rc)
			return rc;
		if (r.last >= last || !cursor_advance(&c))
			return 0;
	}
}

int gm_rangemap_update(struct gm_rangemap *map, uint64_t first, uint64_t last,
		       gm_rangemap_update_fn fn, void *ctx, unsigned flags)
{
	if (!map || first > last || !fn || (flags & ~GM_RANGEMAP_UPDATE_GAPS))
		return -EINVAL;
	struct wctx w;
	wctx_init(&w, map);
	struct slot buf[64];
	struct vec seq = VEC_INIT(buf);
	uint64_t rfirst;
	bool changed;
	int rc = update_collect(map, first, last, fn, ctx, flags, &w, &seq, &rfirst, &changed);
	if (rc || !changed)
		goto out;
	/* Merge neighbours: gaps always; ranges of equal value when coalescing
	 * or when both come from the same original slot. */
	struct slot *s = seq.p;
	size_t n = 0;
	for (size_t i = 0; i < seq.n; i++) {
		if (n && s[n - 1].present == s[i].present &&
		    (!s[i].present || (s[n - 1].value == s[i].value &&
				       (coalescing(map) || s[n - 1].origin == s[i].origin)))) {
			s[n - 1].pivot = s[i].pivot;
			continue;
		}
		s[n++] = s[i];
	}
	uint64_t rlast = s[n - 1].pivot;
	struct probe p;
	if (rfirst > 0) {
		probe_at(map, rfirst - 1, &p);
		if (mergeable(map, p.present, p.value, s[0].present, s[0].value))
			rfirst = p.first;
	}
	if (rlast < KEY_MAX) {
		probe_at(map, rlast + 1, &p);
		if (mergeable(map, p.present, p.value, s[n - 1].present, s[n - 1].value))
			rlast = s[n - 1].pivot = p.last;
	}
	rc = replace(map, rfirst, rlast, s, n);
	if (!rc)
		recycle_prepare(map);
out:
	vec_free(&w, &seq);
	wctx_release(&w);
	return rc;
}

/* ---- life cycle, stats, validate --------------------------------------------- */

static int map_init(struct gm_rangemap *map, unsigned flags, const struct gm_allocator *allocator)
{
	memset(map, 0, sizeof(*map));
	map->alloc = allocator ? allocator : gm_alloc_default();
	map->flags = flags;
	map->height = 1;
	struct wctx w;
	wctx_init(&w, map);
	struct slot whole = {KEY_MAX, 0, 0, 0};
	struct leaf *l = leaf_build(&w, 0, &whole, 1);
	wctx_release(&w);
	if (!l)
		return -ENOMEM;
	gm_store_relaxed(&map->root, l);
	gm_reclaim_init(map_reclaim(map), map->alloc, flags & GM_RCU);
	return 0;
}

static void free_subtree(const struct gm_allocator *a, void *node)
{
	if (node_level(node)) {
		struct inner *x = node;
		for (unsigned i = 0; i < x->n; i++)
			free_subtree(a, gm_load_relaxed(&x->child[i]));
	}
	gm_alloc_release(a, node, node_size(node));
}

int gm_rangemap_create(struct gm_rangemap **out, unsigned flags, const struct gm_allocator *alloc)
{
	if (!out || (flags & ~(GM_RANGEMAP_NOCOALESCE | GM_RCU)))
		return -EINVAL;
	struct gm_rangemap *map = gm_alloc_mem(alloc, sizeof(*map), _Alignof(struct gm_rangemap));
	if (!map)
		return -ENOMEM;
	if (map_init(map, flags, alloc)) {
		gm_alloc_release(alloc, map, sizeof(*map));
		return -ENOMEM;
	}
	*out = map;
	return 0;
}

void gm_rangemap_destroy(struct gm_rangemap *map)
{
	if (!map)
		return;
	if (map->flags & GM_RCU)
		gm_rcu_synchronize();
	free_subtree(map->alloc, gm_load_relaxed(&map->root));
	pool_drop_batch(map);
	gm_reclaim_destroy(map_reclaim(map)); /* runs the pending recycle_done calls */
	pool_destroy(map);
	gm_alloc_release(map->alloc, map, sizeof(*map));
}

size_t gm_rangemap_handle_bytes_(void) { return sizeof(struct gm_rangemap); }

uint64_t gm_rangemap_count(const struct gm_rangemap *map) { return map ? map->count : 0; }

static void stats_walk(const void *node, struct gm_rangemap_stats *s)
{
	s->bytes += node_size(node);
	if (!node_level(node)) {
		const struct leaf *l = node;
		unsigned r = (unsigned)popcount64(l->present);
		s->leaves++;
		s->ranges += r;
		s->gaps += l->n - r;
		return;
	}
	const struct inner *x = node;
	s->inner_nodes++;
	for (unsigned i = 0; i < x->n; i++)
		stats_walk(gm_load_relaxed(&((struct inner *)x)->child[i]), s);
}

int gm_rangemap_stats(const struct gm_rangemap *map, struct gm_rangemap_stats *stats)
{
	if (!map || !stats)
		return -EINVAL;
	memset(stats, 0, sizeof(*stats));
	stats->height = map->height;
	stats_walk(map_root(map), stats);
	stats->kept_bytes = pool_bytes(map);
	return 0;
}

struct vstate {
	const struct gm_rangemap *m;
	bool have_prev, prev_present;
	uint64_t prev_value, ranges;
	const char *why;
};

#define VFAIL(st, msg) do { (st)->why = (msg); return false; } while (0)

static bool validate_leaf(struct vstate *st, const struct leaf *l, uint64_t lo, uint64_t hi)
{
	if (l->n < 1 || l->n > LEAF_MAX)
		VFAIL(st, "I1: leaf slot count out of 1..64");
	if (l->kw != 1 && l->kw != 2 && l->kw != 4 && l->kw != 8)
		VFAIL(st, "leaf key width invalid");
	if (l->vw != 0 && l->vw != 1 && l->vw != 2 && l->vw != 4 && l->vw != 8)
		VFAIL(st, "leaf value width invalid");
	if (l->size != leaf_bytes(l->n, l->kw, l->vw))
		VFAIL(st, "leaf size does not match its contents");
	if (l->n < 64 && (l->present >> l->n))
		VFAIL(st, "leaf present bits beyond its slots");
	if (l->lo != lo)
		VFAIL(st, "I2: leaf lower bound differs from its parent's");
	uint64_t maxgap = 0;
	for (unsigned i = 0; i < l->n; i++) {
		uint64_t start = leaf_start(l, i), p = leaf_pivot(l, i);
		if (p < start || (i && p <= leaf_pivot(l, i - 1)))
			VFAIL(st, "I2: leaf pivots do not increase");
		bool pr = leaf_present(l, i);
		uint64_t v = pr ? leaf_value(l, i) : 0;
		if (st->have_prev && !pr && !st->prev_present)
			VFAIL(st, "I3: two neighbouring gaps");
		if (st->have_prev && pr && st->prev_present && v == st->prev_value &&
		    coalescing(st->m))
			VFAIL(st, "I3: neighbouring ranges with the same value not merged");
		if (!pr && gap_len(start, p) > maxgap)
			maxgap = gap_len(start, p);
		st->ranges += pr;
		st->have_prev = true;
		st->prev_present = pr;
		st->prev_value = v;
	}
	if (leaf_hi(l) != hi)
		VFAIL(st, "I2: leaf does not end at its upper bound");
	if (maxgap != l->maxgap)
		VFAIL(st, "I4: leaf maxgap wrong");
	return true;
}

static bool validate_node(struct vstate *st, const void *node, uint64_t lo, uint64_t hi,
			  unsigned depth)
{
	unsigned height = st->m->height;
	if (depth >= height || node_level(node) != height - 1 - depth)
		VFAIL(st, "I1: node level does not match its depth");
	if (!node_level(node))
		return validate_leaf(st, node, lo, hi);
	const struct inner *x = node;
	if (x->n < (depth ? 1 : 2) || x->n > INNER_MAX)
		VFAIL(st, "I1: inner child count out of range");
	for (unsigned i = 0; i + 1u < x->n; i++) {
		if (x->pivot[i] < lo || x->pivot[i] >= hi || (i && x->pivot[i] <= x->pivot[i - 1]))
			VFAIL(st, "I2: inner pivots out of order or out of bounds");
	}
	for (unsigned i = x->n - 1u; i < INNER_MAX - 1; i++)
		if (x->pivot[i])
			VFAIL(st, "I2: an inner node's unused pivot is not zero");
	for (unsigned i = 0; i < x->n; i++) {
		const void *c = gm_load_relaxed(&((struct inner *)x)->child[i]);
		if (!c)
			VFAIL(st, "inner child is NULL");
		if (!validate_node(st, c, child_lo(x, i, lo), child_hi(x, i, hi), depth + 1))
			return false;
		if (gm_load_relaxed(&((struct inner *)x)->gap[i]) != node_maxgap(c))
			VFAIL(st, "I4: inner gap summary wrong");
	}
	return true;
}

int gm_rangemap_validate(const struct gm_rangemap *map, const char **reason)
{
	struct vstate st = {map, false, false, 0, 0, NULL};
	const void *root = map ? map_root(map) : NULL;
	if (!map) {
		st.why = "NULL map";
	} else if (!root) {
		st.why = "no root";
	} else if (validate_node(&st, root, 0, KEY_MAX, 0)) {
		struct gm_rangemap_stats s;
		memset(&s, 0, sizeof(s));
		stats_walk(root, &s);
		if (st.ranges != map->count)
			st.why = "I5: count differs from the ranges stored";
		else if (s.bytes != map->node_bytes_)
			st.why = "I6: node_bytes_ differs from the live nodes' bytes";
	}
	if (reason)
		*reason = st.why;
	return st.why ? -EINVAL : 0;
}
