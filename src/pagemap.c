/*
 * src/pagemap.c — gm_pagemap: a path-compressed 64-way radix tree over
 * 64-bit keys with bitmap-packed branches and two kinds of leaf.
 *
 * A key is cut into 6-bit chunks from the bottom; a node at shift s looks at
 * chunk (key >> s) & 63 (s = 0, 6, ..., 54, 60; the top chunk has 4 bits).
 * Every node records the key bits above its own chunk (its prefix), so a
 * child may sit any number of levels below its parent (path compression)
 * and a lookup checks the prefix instead of walking one-child levels.
 *
 *   tagged pointer: | hint (16) | node address (48, 16-aligned) | tag (4 bits) |
 *                     hint = shift + "direct" + count of a direct branch,
 *                     count of a direct leaf, shift + count of a sorted
 *                     leaf, else 0
 *                     tag 1 = branch, 2 = bitmap leaf, 3 = sorted leaf,
 *                         4 = direct (full-layout) bitmap leaf
 *
 *   every node starts with   +-----------------------------+-------+
 *   word 0 "prefix_shift":   | key bits above chunk (s+6..)| shift |  (low 6 bits)
 *                            +-----------------------------+-------+
 *   branch (shift s >= 6):   | prefix_shift | bitmap (64) | child[popcount] ...
 *                              child[i] = tagged pointer for the i-th set bit;
 *                              direct when bitmap has every chunk: child[c]
 *                              is chunk c's child, 0 if absent
 *   bitmap leaf (shift 0):   | prefix_shift | bitmap (64) | value[popcount] ...
 *                              value[i] = value of key prefix | (i-th set bit)
 *   direct leaf (shift 0):   | prefix_shift | value[64] |   value[i] = value of
 *                              prefix | i, 0 if absent (no bitmap, no popcount)
 *   sorted leaf (shift s):   | prefix_shift | count | pad | suffix[count] |pad| value[count]
 *                              suffix = key bits below s+6, ascending;
 *                              uint32_t when s + 6 <= 30, else uint64_t
 *
 *   root ──> branch s=30 ──> branch s=18 ──> sorted leaf s=6 (keys 12-bit suffixes)
 *                       └──> bitmap leaf s=0 (64 frames, 8 B each)
 *
 * Invariants (gm_pagemap_validate checks each):
 *  I1 shift is a multiple of 6, <= 60; prefix has no bits below shift + 6.
 *  I2 a child's shift is below its parent's, and the child's prefix agrees
 *     with the parent's prefix and with the chunk of the slot it is in.
 *  I3 a branch has >= 2 children; its bitmap only uses chunk values that
 *     exist at its shift (16 at shift 60).
 *  I4 a bitmap leaf has shift 0 and >= 1 entry (a packed one never all
 *     64: that is a direct leaf); a sorted leaf has shift >= 6,
 *     1..PM_SORTED_MAX entries with strictly ascending suffixes that fit in
 *     s + 6 bits.
 *  I5 no value is NULL; map->count, map->bytes and map->nodes[] match the
 *     tree.
 *  I6 the hint in a tagged pointer's top 16 bits matches its node: a direct
 *     branch's shift and count of children, a direct leaf's count of keys,
 *     a sorted leaf's shift and count (pm_hint_of).
 *  I7 a direct branch (bitmap of every chunk; child slots may hold 0) has
 *     >= PM_BRANCH_PACK children, a direct leaf (full layout; value slots
 *     may hold 0) >= 1 key.
 * Why this shape: branch and bitmap leaves cost 8 bytes per present slot
 * plus a 16-byte header, so dense and clustered frames approach 8 B/entry
 * (a full direct leaf is 8 B per key plus 8); direct nodes let the frames
 * that fill them be added and removed without copying;
 * sparse (random) keys collect in sorted leaves of up to 256 entries, 12
 * B/entry with 32-bit suffixes, instead of one mostly-empty node per key
 * (the 576-byte xarray node the GVT thread found "heavy").
 *
 * Concurrency: nodes are immutable once published except (a) branch child
 * slots, which the writer replaces in place with a release store (the
 * child's new copy is fully built first), (b) value slots, replaced in
 * place by store(), and (c) the slots of direct nodes, which the writer
 * fills and clears in place (a key or child appears or goes with one
 * release store; the count in the parent's pointer is then stored again).
 * All are _Atomic. Adding or removing a key elsewhere copies the one node
 * whose shape changes (plus a new leaf or branch), publishes the copy with
 * one release store in the parent's slot, and retires the old node through
 * gm_reclaim. A packed branch's slot never holds 0 (readers never see an
 * empty node); a branch reduced to one child is replaced by that child.
 */
#include "internal.h"

#include <gmtrack/pagemap.h>

#include <stdalign.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Rank lookups are popcounts: on x86-64 the read paths are compiled twice,
 * with and without the POPCNT instruction, and the public call picks one
 * on gm_cpu_popcnt_ (found once at load time, src/cpu.c): one predictable
 * branch (without POPCNT, each popcount is a libgcc call and a lookup
 * costs ~2x). Not target_clones: its IFUNC resolver is unknown to musl,
 * and runs before the sanitizers' runtimes are up. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PM_DISPATCH 1
#define PM_POPCNT __attribute__((target("popcnt"), noinline))
#endif
#define PM_INLINE static inline __attribute__((always_inline))

#define PM_TAG_BRANCH 1u
#define PM_TAG_BITS 2u
#define PM_TAG_SORTED 3u
#define PM_TAG_FULL 4u     /* bitmap leaf with all 64 keys: no bitmap word */
#define PM_TAG_MASK 15u
/* Node addresses use the low 48 bits (user-space virtual addresses on
 * x86-64 and arm64 with 4-level tables); the top 16 bits of a tagged
 * pointer carry a hint (see pm_hint_of) so readers need not read a node's
 * header before reaching for the line they want. */
#define PM_ADDR_BITS 48
#define PM_ADDR_MASK (((uintptr_t)1 << PM_ADDR_BITS) - 1)
#define PM_HINT_FULL 16u   /* hint bit: branch with every child present */
_Static_assert(sizeof(uintptr_t) == 8, "pagemap needs 64-bit pointers");
#define PM_ALIGN 16
#ifndef PM_SORTED_MAX
#define PM_SORTED_MAX 256  /* entries of a sorted leaf before it splits */
#endif
#define PM_TOP_SHIFT 60
#define PM_NARROW_SHIFT 24 /* sorted leaves at shift <= 24 use 32-bit suffixes */

/* The handle (opaque in pagemap.h). */
struct gm_pagemap {
	_Atomic uintptr_t root;       /* tagged node pointer, 0 when empty */
	_Atomic uint64_t count;       /* entries */
	const struct gm_allocator *alloc;
	unsigned flags;
	_Atomic size_t bytes;         /* bytes of live nodes (read by load_many) */
	size_t nodes[5];              /* live nodes by kind (index = tag) */
	uint64_t last_key;            /* the last key inserted (writer side) */
	struct gm_reclaim reclaim;
};

struct pm_head {
	uint64_t prefix_shift;
};

struct pm_branch {
	uint64_t prefix_shift;
	uint64_t bitmap;
	_Atomic uintptr_t child[];
};

struct pm_bits {
	uint64_t prefix_shift;
	uint64_t bitmap;
	_Atomic uintptr_t value[];
};

struct pm_full {
	uint64_t prefix_shift;
	_Atomic uintptr_t value[64];
};

struct pm_sorted {
	uint64_t prefix_shift;
	uint32_t count;
	uint32_t pad;
	/* suffix[count] (uint32_t or uint64_t), padding to 8, value[count] */
};

/* ---- small helpers ------------------------------------------------------ */

static inline struct gm_reclaim *pm_reclaim(struct gm_pagemap *m)
{
	return (struct gm_reclaim *)(void *)&m->reclaim;
}

static inline unsigned pm_tag(uintptr_t p) { return p & PM_TAG_MASK; }
static inline void *pm_ptr(uintptr_t p)
{
	return (void *)(p & PM_ADDR_MASK & ~(uintptr_t)PM_TAG_MASK);
}
static inline unsigned pm_hint(uintptr_t p) { return (unsigned)(p >> PM_ADDR_BITS); }
/* Shift of a hinted node (full branch or sorted leaf). */
static inline unsigned pm_hint_shift(unsigned h) { return (h & 15) * 6; }
static inline unsigned pm_hint_count(unsigned h) { return h >> 5; }
static inline unsigned pm_shift(const void *n)
{
	return ((const struct pm_head *)n)->prefix_shift & 63;
}
static inline uint64_t pm_prefix(const void *n)
{
	return ((const struct pm_head *)n)->prefix_shift & ~(uint64_t)63;
}
/* Mask of the key bits above the chunk of a node at shift s. */
static inline uint64_t pm_above_mask(unsigned s)
{
	return s + 6 >= 64 ? 0 : ~0ULL << (s + 6);
}
/* True if key lies outside the range of the node with this head. Shifting
 * twice keeps the shift count below 64 for s = 60. */
static inline bool pm_outside(uint64_t prefix_shift, uint64_t key)
{
	unsigned s = prefix_shift & 63;
	return ((key ^ prefix_shift) >> s) >> 6 != 0;
}
static inline unsigned pm_chunk(uint64_t key, unsigned s) { return (key >> s) & 63; }
/* Position in a packed array of the slot for chunk c. */
PM_INLINE unsigned pm_rank(uint64_t bitmap, unsigned c)
{
	return (unsigned)__builtin_popcountll(bitmap & ((1ULL << c) - 1));
}
/* The 6-aligned shift of the chunk holding the highest bit of x (x != 0). */
static inline unsigned pm_split_shift(uint64_t x)
{
	unsigned d = 63 - (unsigned)__builtin_clzll(x);
	return d / 6 * 6;
}

static inline bool pm_sorted_narrow(unsigned s) { return s <= PM_NARROW_SHIFT; }
static inline size_t pm_sorted_suffix_bytes(unsigned s, size_t count)
{
	size_t b = count * (pm_sorted_narrow(s) ? 4 : 8);
	return (b + 7) & ~(size_t)7;
}
static inline size_t pm_sorted_size(unsigned s, size_t count)
{
	return sizeof(struct pm_sorted) + pm_sorted_suffix_bytes(s, count) + 8 * count;
}
static inline uint32_t *pm_suffix32(const struct pm_sorted *l)
{
	return (uint32_t *)(void *)(l + 1);
}
static inline uint64_t *pm_suffix64(const struct pm_sorted *l)
{
	return (uint64_t *)(void *)(l + 1);
}
static inline _Atomic uintptr_t *pm_sorted_values(const struct pm_sorted *l)
{
	unsigned s = l->prefix_shift & 63;
	return (_Atomic uintptr_t *)(void *)((char *)(l + 1) +
					      pm_sorted_suffix_bytes(s, l->count));
}
static inline uint64_t pm_sorted_key(const struct pm_sorted *l, unsigned i)
{
	unsigned s = l->prefix_shift & 63;
	uint64_t suffix = pm_sorted_narrow(s) ? pm_suffix32(l)[i] : pm_suffix64(l)[i];
	return pm_prefix(l) | suffix;
}
/*
 * First index i of a[0..n) with a[i] >= want, where every a[i] < 2^bits.
 * Sorted leaves hold up to 256 suffixes, and frame numbers inside one leaf
 * are close to uniform over its range, so the search starts at
 * want * n / 2^bits (a multiply and a shift, no division), gallops outwards
 * to bracket want and finishes with a binary search: usually one cache line
 * for uniform keys, O(log n) probes whatever the keys.
 */
#define PM_DEFINE_LOWER_BOUND(name, T, WIDE)                                  \
	PM_INLINE unsigned name(const T *a, unsigned n, T want, unsigned bits) \
	{                                                                     \
		int g = (int)(((WIDE)want * n) >> bits);                      \
		if (g > (int)n - 1)                                           \
			g = (int)n - 1;                                       \
		int lo, hi; /* a[lo] < want <= a[hi], a[-1] = -inf, a[n] = +inf */ \
		if (a[g] < want) {                                            \
			lo = g;                                               \
			hi = g + 1;                                           \
			for (int step = 2; hi < (int)n && a[hi] < want; step *= 2) { \
				lo = hi;                                      \
				hi += step;                                   \
			}                                                     \
			if (hi > (int)n)                                      \
				hi = (int)n;                                  \
		} else {                                                      \
			hi = g;                                               \
			lo = g - 1;                                           \
			for (int step = 2; lo >= 0 && a[lo] >= want; step *= 2) { \
				hi = lo;                                      \
				lo -= step;                                   \
			}                                                     \
			if (lo < -1)                                          \
				lo = -1;                                      \
		}                                                             \
		while (hi - lo > 1) {                                         \
			int mid = lo + (hi - lo) / 2;                         \
			if (a[mid] < want)                                    \
				lo = mid;                                     \
			else                                                  \
				hi = mid;                                     \
		}                                                             \
		return (unsigned)hi;                                          \
	}
PM_DEFINE_LOWER_BOUND(pm_lower_bound32, uint32_t, uint64_t)
PM_DEFINE_LOWER_BOUND(pm_lower_bound64, uint64_t, unsigned __int128)

/* First index whose suffix is >= the suffix of key (key in the leaf's range). */
PM_INLINE unsigned pm_sorted_lower_bound(const struct pm_sorted *l, uint64_t key)
{
	unsigned s = l->prefix_shift & 63;
	uint64_t want = key & ~pm_above_mask(s);
	if (pm_sorted_narrow(s))
		return pm_lower_bound32(pm_suffix32(l), l->count, (uint32_t)want, s + 6);
	return pm_lower_bound64(pm_suffix64(l), l->count, want, s + 6);
}
static inline size_t pm_branch_size(unsigned children) { return 16 + 8 * (size_t)children; }

/* Bitmap leaves come in two layouts: pm_bits (a bitmap word, then the
 * present values) and, once all 64 keys are present, pm_full (no bitmap:
 * 8 bytes less, and a lookup is one indexed load). These hide which. */
static inline bool pm_is_bits(unsigned tag) { return tag == PM_TAG_BITS || tag == PM_TAG_FULL; }
static inline uint64_t pm_bits_map(uintptr_t p)
{
	return pm_tag(p) == PM_TAG_FULL ? ~0ULL : ((const struct pm_bits *)pm_ptr(p))->bitmap;
}
static inline _Atomic uintptr_t *pm_bits_vals(uintptr_t p)
{
	return pm_tag(p) == PM_TAG_FULL ? ((struct pm_full *)pm_ptr(p))->value
					: ((struct pm_bits *)pm_ptr(p))->value;
}
static inline size_t pm_bits_size(unsigned cnt)
{
	return cnt == 64 ? sizeof(struct pm_full) : pm_branch_size(cnt);
}

/*
 * Direct nodes. A branch whose bitmap holds every chunk of its shift (64,
 * or 16 at shift 60) and a pm_full leaf are direct: their slots are indexed
 * by chunk, and a slot holding 0 is an absent child or key. The writer
 * adds and removes children and keys of a direct node in place (one
 * release store in the slot; no copy, nothing to retire) and keeps the
 * count of non-zero slots in the hint of the pointer to the node. A packed
 * node becomes direct when an insert brings it to PM_*_DIRECT entries, and
 * a direct one is packed again when a removal leaves fewer than PM_*_PACK
 * (a node never flips back and forth on one key). Direct nodes (~520 B)
 * are only made in maps of PM_DIRECT_MIN_COUNT entries and more, where
 * they cost a small part of a byte per entry, except a leaf whose keys
 * are one run filled in order (PM_LEAF_SEQ), which is soon full.
 */
#define PM_DIRECT_MIN_COUNT 4096
#define PM_LEAF_DIRECT 48
/* A packed leaf of this many keys, one run of frames, turns direct early
 * when the key added extends the run and follows the last one inserted:
 * frames filled in order fill the leaf. */
#define PM_LEAF_SEQ 16
#define PM_LEAF_PACK 8
#define PM_BRANCH_DIRECT 8
#define PM_BRANCH_PACK 4
#define PM_HINT_COUNT_SHIFT 5
#define PM_HINT_COUNT_MASK ((uintptr_t)0x1ff << (PM_ADDR_BITS + PM_HINT_COUNT_SHIFT))
static inline uint64_t pm_all_chunks(unsigned s)
{
	return s == PM_TOP_SHIFT ? 0xffffULL : ~0ULL;
}
static inline unsigned pm_slots_of(unsigned s) { return s == PM_TOP_SHIFT ? 16 : 64; }
static inline bool pm_is_direct_branch(const struct pm_branch *b)
{
	return b->bitmap == pm_all_chunks(pm_shift(b));
}
/* Non-zero slots among n (writer or validate: relaxed loads). */
static inline unsigned pm_slots_used(const _Atomic uintptr_t *v, unsigned n)
{
	unsigned c = 0;
	for (unsigned i = 0; i < n; i++)
		c += gm_load_relaxed(&v[i]) != 0;
	return c;
}
/* The count a direct node's pointer carries (writer side). */
static inline unsigned pm_direct_count(uintptr_t p) { return pm_hint(p) >> PM_HINT_COUNT_SHIFT; }
static inline uintptr_t pm_with_count(uintptr_t p, unsigned cnt)
{
	return (p & ~PM_HINT_COUNT_MASK) |
	       (uintptr_t)cnt << (PM_ADDR_BITS + PM_HINT_COUNT_SHIFT);
}

/* True if direct nodes may be made in map m (see PM_DIRECT_MIN_COUNT). */
static inline bool pm_direct_ok(const struct gm_pagemap *m)
{
	return gm_load_relaxed(&((struct gm_pagemap *)m)->count) >= PM_DIRECT_MIN_COUNT;
}

static inline size_t pm_node_size(uintptr_t p)
{
	void *n = pm_ptr(p);
	switch (pm_tag(p)) {
	case PM_TAG_BRANCH:
		return pm_branch_size((unsigned)__builtin_popcountll(((struct pm_branch *)n)->bitmap));
	case PM_TAG_BITS:
	case PM_TAG_FULL:
		return pm_bits_size((unsigned)__builtin_popcountll(pm_bits_map(p)));
	default:
		return pm_sorted_size(pm_shift(n), ((struct pm_sorted *)n)->count);
	}
}

/*
 * The hint in the top 16 bits of a tagged pointer (the shape of a published
 * node never changes: a change of shape copies the node; only a direct
 * node's count changes, and the writer stores its pointer again with it):
 *   direct branch: bits 0-3 shift / 6, bit 4 set     -> child[chunk] directly
 *                  bits 5-13 count of children (writer side)
 *   direct leaf:   bits 5-13 count of keys (writer side)
 *   sorted leaf:   bits 0-3 shift / 6, bits 5-13 count -> suffix and value
 *                  lines of the interpolated position, without the header
 *   other nodes:   0
 */
static inline uintptr_t pm_hint_of(uintptr_t p)
{
	const void *n = pm_ptr(p);
	unsigned s = pm_shift(n);
	switch (pm_tag(p)) {
	case PM_TAG_BRANCH: {
		const struct pm_branch *b = n;
		if (!pm_is_direct_branch(b))
			return 0;
		return s / 6 | PM_HINT_FULL |
		       pm_slots_used(b->child, pm_slots_of(s)) << PM_HINT_COUNT_SHIFT;
	}
	case PM_TAG_FULL:
		return pm_slots_used(((const struct pm_full *)n)->value, 64) << PM_HINT_COUNT_SHIFT;
	case PM_TAG_SORTED:
		return s / 6 | ((const struct pm_sorted *)n)->count << PM_HINT_COUNT_SHIFT;
	default:
		return 0;
	}
}
/* Tagged, hinted pointer to a node whose header and shape are final. */
static inline uintptr_t pm_tagged(const void *n, unsigned tag)
{
	uintptr_t p = (uintptr_t)n | tag;
	return p | pm_hint_of(p) << PM_ADDR_BITS;
}

/* ---- node allocation ---------------------------------------------------- */

/* Only the writer changes bytes; load_many reads it (pm_many_dense). */
static inline void pm_bytes_add(struct gm_pagemap *m, ptrdiff_t d)
{
	gm_store_relaxed(&m->bytes, gm_load_relaxed(&m->bytes) + (size_t)d);
}

static void *pm_node_alloc(struct gm_pagemap *m, unsigned tag, size_t size)
{
	void *n = gm_alloc_mem(m->alloc, size, PM_ALIGN);
	if (n && ((uintptr_t)n & ~PM_ADDR_MASK)) {
		/* an address beyond 48 bits has no room for the hint */
		gm_alloc_release(m->alloc, n, size);
		n = NULL;
	}
	if (n) {
		pm_bytes_add(m, (ptrdiff_t)size);
		m->nodes[tag]++;
	}
	return n;
}

/* Frees a node no reader can have seen (a failed change's new nodes). */
static void pm_node_free_now(struct gm_pagemap *m, uintptr_t p)
{
	if (!p)
		return;
	size_t size = pm_node_size(p);
	pm_bytes_add(m, -(ptrdiff_t)size);
	m->nodes[pm_tag(p)]--;
	gm_alloc_release(m->alloc, pm_ptr(p), size);
}

/* Hands an unlinked node to the retire list (freed after a grace period in
 * RCU mode). The caller reserved room first. */
static void pm_node_retire(struct gm_pagemap *m, uintptr_t p)
{
	size_t size = pm_node_size(p);
	pm_bytes_add(m, -(ptrdiff_t)size);
	m->nodes[pm_tag(p)]--;
	gm_reclaim_retire(pm_reclaim(m), pm_ptr(p), size);
}

/* A bitmap leaf (pm_full when all 64 bits are set) with values unset. */
static uintptr_t pm_alloc_bits(struct gm_pagemap *m, uint64_t prefix, uint64_t bitmap)
{
	unsigned cnt = (unsigned)__builtin_popcountll(bitmap);
	unsigned tag = cnt == 64 ? PM_TAG_FULL : PM_TAG_BITS;
	struct pm_bits *b = pm_node_alloc(m, tag, pm_bits_size(cnt));
	if (!b)
		return 0;
	b->prefix_shift = prefix;
	if (tag == PM_TAG_BITS)
		b->bitmap = bitmap;
	return (uintptr_t)b | tag;
}

static uintptr_t pm_make_bits(struct gm_pagemap *m, uint64_t prefix,
			      const uint64_t *keys, const uintptr_t *values,
			      unsigned n)
{
	uint64_t bitmap = 0;
	for (unsigned i = 0; i < n; i++)
		bitmap |= 1ULL << (keys[i] & 63);
	uintptr_t p = pm_alloc_bits(m, prefix, bitmap);
	if (!p)
		return 0;
	_Atomic uintptr_t *v = pm_bits_vals(p);
	for (unsigned i = 0; i < n; i++)
		atomic_init(&v[i], values[i]);
	/* a full leaf is direct: its pointer carries its count */
	return pm_tag(p) == PM_TAG_FULL ? pm_tagged(pm_ptr(p), PM_TAG_FULL) : p;
}

/* Builds a sorted leaf at shift s from n ascending keys in its range. */
static uintptr_t pm_make_sorted(struct gm_pagemap *m, unsigned s,
				const uint64_t *keys, const uintptr_t *values,
				unsigned n)
{
	struct pm_sorted *l = pm_node_alloc(m, PM_TAG_SORTED, pm_sorted_size(s, n));
	if (!l)
		return 0;
	uint64_t low = ~pm_above_mask(s);
	l->prefix_shift = (keys[0] & pm_above_mask(s)) | s;
	l->count = n;
	l->pad = 0;
	if (pm_sorted_narrow(s)) {
		uint32_t *a = pm_suffix32(l);
		for (unsigned i = 0; i < n; i++)
			a[i] = (uint32_t)(keys[i] & low);
		if (n & 1)
			a[n] = 0; /* padding word: keep it defined */
	} else {
		uint64_t *a = pm_suffix64(l);
		for (unsigned i = 0; i < n; i++)
			a[i] = keys[i] & low;
	}
	_Atomic uintptr_t *v = pm_sorted_values(l);
	for (unsigned i = 0; i < n; i++)
		atomic_init(&v[i], values[i]);
	return pm_tagged(l, PM_TAG_SORTED);
}

/* A leaf at shift s (bitmap leaf when s == 0) holding n ascending keys. */
static uintptr_t pm_make_leaf(struct gm_pagemap *m, unsigned s,
			      const uint64_t *keys, const uintptr_t *values,
			      unsigned n)
{
	if (s == 0)
		return pm_make_bits(m, keys[0] & ~63ULL, keys, values, n);
	return pm_make_sorted(m, s, keys, values, n);
}

/* ---- reads --------------------------------------------------------------- */

/* Where the search for key in hinted sorted leaf p starts: the
 * interpolated index (clamped to the last entry). */
PM_INLINE unsigned pm_sorted_guess(uintptr_t p, uint64_t key)
{
	unsigned h = pm_hint(p), sh = pm_hint_shift(h), cnt = pm_hint_count(h);
	uint64_t want = key & ~pm_above_mask(sh);
	unsigned g = (unsigned)(((unsigned __int128)want * cnt) >> (sh + 6));
	return g < cnt ? g : cnt - 1;
}
PM_INLINE const char *pm_sorted_suffix_at(uintptr_t p, unsigned i)
{
	unsigned sh = pm_hint_shift(pm_hint(p));
	return (const char *)pm_ptr(p) + sizeof(struct pm_sorted) +
	       (size_t)i * (pm_sorted_narrow(sh) ? 4 : 8);
}
PM_INLINE const _Atomic uintptr_t *pm_sorted_value_at(uintptr_t p, unsigned i)
{
	unsigned h = pm_hint(p), sh = pm_hint_shift(h), cnt = pm_hint_count(h);
	return (const _Atomic uintptr_t *)(const void *)((const char *)pm_ptr(p) +
		sizeof(struct pm_sorted) + pm_sorted_suffix_bytes(sh, cnt)) + i;
}
/*
 * Index of want in a[0..n) (narrow suffixes, all < 2^30), or some index
 * whose entry differs from want when it is absent. Interpolation put want
 * near g; the 8-32 entries around g are counted without branches
 * (a count of entries < want is the lower bound when want falls inside the
 * window), so neighbouring lookups are not cut short by mispredictions and
 * stay in flight together. Only a key beyond the window's ends (rare for
 * frame numbers, which are close to uniform inside a leaf) takes the
 * galloping search.
 */
/* A key's rank strays ~sqrt(n)/2 from its interpolated position, so up to
 * 64 entries a window of 16 (one or two cache lines) holds it ~95% of the
 * time; bigger leaves count 32. */
#define PM_WINDOW_WIDE_MIN 64
/* Window width used for a narrow leaf of n entries (0: the whole leaf). */
static inline unsigned pm_window_width(unsigned n)
{
	return n >= PM_WINDOW_WIDE_MIN ? 32 : n >= 16 ? 16 : n >= 8 ? 8 : 0;
}
/* Count of the W entries from lo that are < want (W a constant): with
 * SSE2, W/4 compares whose -1 lanes are summed. Suffixes and want are
 * < 2^30, so signed compares are exact. */
#ifdef __SSE2__
#define PM_DEFINE_WINDOW_COUNT(name, W)                                       \
	PM_INLINE unsigned name(const uint32_t *a, unsigned lo, uint32_t want) \
	{                                                                     \
		const __m128i *w = (const __m128i *)(const void *)(a + lo);   \
		__m128i key = _mm_set1_epi32((int)want), acc = _mm_setzero_si128(); \
		for (unsigned i = 0; i < (W) / 4; i++)                        \
			acc = _mm_add_epi32(acc, _mm_cmpgt_epi32(key, _mm_loadu_si128(w + i))); \
		acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, 0x4e));       \
		acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, 0xb1));       \
		return (unsigned)-_mm_cvtsi128_si32(acc);                     \
	}
#else
#define PM_DEFINE_WINDOW_COUNT(name, W)                                       \
	PM_INLINE unsigned name(const uint32_t *a, unsigned lo, uint32_t want) \
	{                                                                     \
		unsigned c = 0;                                               \
		for (unsigned i = 0; i < (W); i++)                            \
			c += a[lo + i] < want;                                \
		return c;                                                     \
	}
#endif
PM_DEFINE_WINDOW_COUNT(pm_window_count32, 32)
PM_DEFINE_WINDOW_COUNT(pm_window_count16, 16)
PM_DEFINE_WINDOW_COUNT(pm_window_count8, 8)

/* Start of the window of w entries (w <= n) centred on g. */
PM_INLINE unsigned pm_window_start(unsigned n, unsigned g, unsigned w)
{
	unsigned lo = g > w / 2 ? g - w / 2 : 0;
	return lo > n - w ? n - w : lo;
}

PM_INLINE unsigned pm_window_find32(const uint32_t *a, unsigned n, uint32_t want,
				    unsigned g, unsigned bits)
{
	unsigned w, lo, c;
	if (n >= PM_WINDOW_WIDE_MIN) {
		w = 32;
		lo = pm_window_start(n, g, w);
		c = pm_window_count32(a, lo, want);
	} else if (n >= 16) {
		w = 16;
		lo = pm_window_start(n, g, w);
		c = pm_window_count16(a, lo, want);
	} else if (n >= 8) {
		w = 8;
		lo = pm_window_start(n, g, w);
		c = pm_window_count8(a, lo, want);
	} else {
		c = 0;
		for (unsigned i = 0; i < n; i++)
			c += (int32_t)a[i] < (int32_t)want;
		return c;
	}
	if (__builtin_expect((c == 0 && lo > 0) || (c == w && lo + w < n), 0))
		return pm_lower_bound32(a, n, want, bits);
	return lo + c;
}

/* Value slot of key in sorted leaf p, or NULL. Shift and count come from
 * the pointer's hint, so the header (read only for the prefix), the suffix
 * line and the value line are all fetched at once. */
PM_INLINE const _Atomic uintptr_t *pm_sorted_slot_in(uintptr_t p, uint64_t key, unsigned g,
						     bool prefix_known)
{
	unsigned h = pm_hint(p), sh = pm_hint_shift(h), cnt = pm_hint_count(h);
	uint64_t want = key & ~pm_above_mask(sh);
	const void *a = pm_sorted_suffix_at(p, 0);
	unsigned i = pm_sorted_narrow(sh)
		? pm_window_find32(a, cnt, (uint32_t)want, g, sh + 6)
		: pm_lower_bound64(a, cnt, want, sh + 6);
	if (i >= cnt)
		return NULL;
	if (!prefix_known && pm_outside(((const struct pm_head *)pm_ptr(p))->prefix_shift, key))
		return NULL;
	uint64_t suffix = pm_sorted_narrow(sh) ? ((const uint32_t *)a)[i] : ((const uint64_t *)a)[i];
	if (suffix != want)
		return NULL;
	return pm_sorted_value_at(p, i);
}
/* Value of key in sorted leaf p, or 0 (the prefix checked here). */
PM_INLINE uintptr_t pm_sorted_find(uintptr_t p, uint64_t key)
{
	unsigned g = pm_sorted_guess(p, key);
	__builtin_prefetch(pm_sorted_value_at(p, g));
	const _Atomic uintptr_t *v = pm_sorted_slot_in(p, key, g, false);
	return v ? gm_load_acquire((_Atomic uintptr_t *)v) : 0;
}

/* pm_sorted_find out of line, for gm_pagemap_load: the sorted search
 * needs more registers than the rest of a lookup, and inlined it made
 * every lookup save and restore six of them, dense and clustered ones
 * included, which never reach a sorted leaf. */
static __attribute__((noinline)) uintptr_t pm_sorted_find_call(uintptr_t p, uint64_t key)
{
	return pm_sorted_find(p, key);
}

/* Value of key in leaf p, or 0. Checks the whole key: lookups do not check
 * the prefixes of the branches they pass (see pm_lookup). */
PM_INLINE uintptr_t pm_leaf_find(uintptr_t p, uint64_t key)
{
	void *n = pm_ptr(p);
	uint64_t ps = ((const struct pm_head *)n)->prefix_shift;
	if (pm_tag(p) == PM_TAG_FULL) {
		if ((key ^ ps) >> 6)
			return 0;
		return gm_load_acquire(&((const struct pm_full *)n)->value[key & 63]);
	}
	if (pm_tag(p) == PM_TAG_BITS) {
		const struct pm_bits *b = n;
		unsigned c = key & 63;
		if ((key ^ ps) >> 6 || !(b->bitmap >> c & 1))
			return 0;
		return gm_load_acquire(&b->value[pm_rank(b->bitmap, c)]);
	}
	return pm_sorted_find_call(p, key);
}

/* Child of branch b for key, or 0. */
PM_INLINE uintptr_t pm_branch_step(const struct pm_branch *b, uint64_t key)
{
	unsigned c = pm_chunk(key, b->prefix_shift & 63);
	uint64_t bm = b->bitmap;
	if (!(bm >> c & 1))
		return 0;
	/* bits 0..c moved to the top: their count is the rank of c plus one */
	unsigned rank1 = (unsigned)__builtin_popcountll(bm << (63 - c));
	return gm_load_acquire((_Atomic uintptr_t *)&b->child[rank1 - 1]);
}

/*
 * Point lookup. It does not check the prefix of the branches it passes
 * (only their chunk): a key outside a branch's prefix still lands in some
 * leaf or empty slot, and the leaf compares the whole key. That keeps a
 * level at ~12 instructions, so a loop of independent lookups keeps several
 * of them (and their cache misses) in flight at once.
 */
PM_INLINE uintptr_t pm_lookup(const struct gm_pagemap *m, uint64_t key)
{
	uintptr_t p = gm_load_acquire(&((struct gm_pagemap *)m)->root);
	while (pm_tag(p) == PM_TAG_BRANCH) {
		unsigned h = pm_hint(p);
		if (h & PM_HINT_FULL)
			p = gm_load_acquire(&((struct pm_branch *)pm_ptr(p))
						     ->child[pm_chunk(key, pm_hint_shift(h))]);
		else
			p = pm_branch_step(pm_ptr(p), key);
	}
	return p ? pm_leaf_find(p, key) : 0;
}

PM_INLINE void *pm_load(const struct gm_pagemap *map, uint64_t key)
{
	return map ? (void *)pm_lookup(map, key) : NULL;
}

#ifdef PM_DISPATCH
PM_POPCNT static void *pm_load_popcnt(const struct gm_pagemap *map, uint64_t key)
{
	return pm_load(map, key);
}
#endif

void *gm_pagemap_load(const struct gm_pagemap *map, uint64_t key)
{
#ifdef PM_DISPATCH
	if (GM_LIKELY(gm_cpu_popcnt_))
		return pm_load_popcnt(map, key); /* a tail jump */
#endif
	return pm_load(map, key);
}

uint64_t gm_pagemap_count(const struct gm_pagemap *map)
{
	return map ? gm_load_relaxed(&((struct gm_pagemap *)map)->count) : 0;
}

/* ---- batched lookups: level-synchronous batches of walks --------------- */

/*
 * load_many walks PM_LANES keys at a time, one tree level per round, and
 * splits each round into two tight passes over the batch's live lanes:
 *   issue:   a lane that has just reached a node prefetches the lines its
 *            resolve will read (pm_lane_enter: a full branch's child slot
 *            straight from the hint; a sorted leaf's suffix window and
 *            interpolated value line, and its header only if the path has
 *            not proved the prefix; other nodes their header);
 *   resolve: read what was prefetched: a child pointer (the lane moves
 *            down), a partial branch or bitmap leaf header (compute the slot
 *            and prefetch it), or the sorted search and value (done).
 * Why passes rather than one step per lane: a prefetch that misses the TLB
 * holds the head of the reorder window until its page walk is done, so the
 * number of misses in flight is bounded by how few instructions separate
 * them. A pass of ~10-30 instructions per lane keeps many walks and misses
 * in flight; one fused step per lane (~60-100 instructions) kept only a
 * handful (measured: ~0.8x the time at 10^7 random keys). The two cache-
 * resident top levels are passed when a lane starts. Lane states:
 *   PM_AT_ENTER  at node p, nothing prefetched yet (issue enters it);
 *   PM_AT_NODE   header prefetched (a partial branch or bitmap leaf):
 *                compute the child or value slot and prefetch it (a
 *                direct leaf's value slot came with its header: read it;
 *                with the prefix proved, the lane goes to PM_AT_VALUE);
 *   PM_AT_SLOT   read the (prefetched) child pointer;
 *   PM_AT_SORTED search the (prefetched) suffixes; read the value if it
 *                is on the prefetched (interpolated) value line, else
 *                prefetch its line and go to PM_AT_VALUE (a stall on it
 *                held up the whole pass: ~0.9x the time at 10^7 random);
 *   PM_AT_VALUE  read the (prefetched) value.
 */
/* Below this many entries the map (~13 B per entry) sits in L2/L3, where a
 * plain loop of lookups overlaps them well enough and the batch's extra
 * passes only cost (measured: 13 vs 20 ns at 10^4 random keys, 25 vs 30 ns
 * at 10^5; at 10^6 the batches win, ~100 vs ~150 ns). */
#define PM_MANY_LOOP_MAX (1u << 17)
/* Not public: tests set it to 0 so small maps exercise the batches too. */
uint64_t gm_pagemap_many_loop_max_ = PM_MANY_LOOP_MAX;
#ifndef PM_LANES
#define PM_LANES 64 /* <= 256: live[] holds lane numbers in bytes */
#endif

enum { PM_AT_NODE, PM_AT_SLOT, PM_AT_SORTED, PM_AT_VALUE, PM_AT_ENTER };

struct pm_lane {
	uintptr_t p;                    /* node (AT_NODE, AT_SORTED, AT_ENTER) */
	const _Atomic uintptr_t *slot;  /* child or value slot (AT_SLOT, AT_VALUE) */
	unsigned step;
	unsigned xs;                    /* see pm_exact_child */
};

/*
 * Lanes track whether the key is known to agree with the prefix of the node
 * they are at (xs = that node's shift, PM_NOT_EXACT if unknown): then a
 * sorted leaf needs no prefix check, and its header line (often a line the
 * search would not otherwise touch) is not fetched. A child at shift s
 * reached from such a parent at shift s + 6 agrees too: the parent's chunk
 * was indexed with the key's own bits, so no bit between the two prefixes
 * was skipped. The child's shift comes from its hint (full branches and
 * sorted leaves); other nodes read their header anyway.
 */
#define PM_NOT_EXACT 255u
PM_INLINE unsigned pm_exact_child(uintptr_t c, unsigned xs)
{
	unsigned h = pm_hint(c), s = pm_hint_shift(h);
	return h && s + 6 == xs ? s : PM_NOT_EXACT;
}

/* The lane arrives at node p (!= 0): prefetch what its next step reads. */
PM_INLINE void pm_lane_enter(struct pm_lane *l, uintptr_t p, uint64_t key)
{
	unsigned h = pm_hint(p);
	l->p = p;
	if (pm_tag(p) == PM_TAG_BRANCH && (h & PM_HINT_FULL)) {
		l->slot = &((const struct pm_branch *)pm_ptr(p))->child[pm_chunk(key, pm_hint_shift(h))];
		__builtin_prefetch((const void *)l->slot);
		l->step = PM_AT_SLOT;
		return;
	}
	if (pm_tag(p) == PM_TAG_SORTED) {
		if (l->xs == PM_NOT_EXACT)
			__builtin_prefetch(pm_ptr(p));
		unsigned g = pm_sorted_guess(p, key), h = pm_hint(p);
		unsigned cnt = pm_hint_count(h), w = pm_window_width(cnt);
		if (pm_sorted_narrow(pm_hint_shift(h)) && w) {
			/* the lines of the window the search will count */
			unsigned lo = pm_window_start(cnt, g, w);
			__builtin_prefetch(pm_sorted_suffix_at(p, lo));
			__builtin_prefetch(pm_sorted_suffix_at(p, lo + w - 1));
		} else {
			__builtin_prefetch(pm_sorted_suffix_at(p, g));
		}
		__builtin_prefetch((const void *)pm_sorted_value_at(p, g));
		l->step = PM_AT_SORTED;
		return;
	}
	if (pm_tag(p) == PM_TAG_FULL) {
		/* a direct leaf: its value slot is known now; its header too
		 * unless the path proved the prefix */
		l->slot = &((const struct pm_full *)pm_ptr(p))->value[key & 63];
		__builtin_prefetch((const void *)l->slot);
		if (l->xs == 0) {
			l->step = PM_AT_VALUE;
			return;
		}
	}
	__builtin_prefetch(pm_ptr(p));
	l->step = PM_AT_NODE;
}

/* A slot holding 0: a walk that ends before its first visit reads it. */
static const _Atomic uintptr_t pm_empty_slot = 0;

/* Starts lane l on key. The top two levels of the tree (at most 65 nodes,
 * ~34 KB) stay in cache during a batch, so the walk passes them at once
 * instead of spending a round on each; the node reached is entered by the
 * next issue pass. */
PM_INLINE void pm_lane_start(struct pm_lane *l, uintptr_t root, uint64_t key)
{
	uintptr_t p = root;
	uint64_t ps = ((const struct pm_head *)pm_ptr(root))->prefix_shift;
	unsigned xs = pm_outside(ps, key) ? PM_NOT_EXACT : (unsigned)(ps & 63);
	for (int depth = 0; depth < 2 && pm_tag(p) == PM_TAG_BRANCH; depth++) {
		unsigned h = pm_hint(p);
		p = h & PM_HINT_FULL
			? gm_load_acquire(&((struct pm_branch *)pm_ptr(p))
						   ->child[pm_chunk(key, pm_hint_shift(h))])
			: pm_branch_step(pm_ptr(p), key);
		if (!p) {
			l->slot = &pm_empty_slot;
			l->step = PM_AT_VALUE;
			return;
		}
		xs = pm_exact_child(p, xs);
	}
	l->p = p;
	l->xs = xs;
	l->step = PM_AT_ENTER;
}

/* Issue pass for lane l: a lane that has just reached a node prefetches
 * what its next resolve reads (lanes waiting on a slot already have). */
PM_INLINE void pm_lane_issue(struct pm_lane *l, uint64_t key)
{
	if (l->step == PM_AT_ENTER)
		pm_lane_enter(l, l->p, key);
}

/* Resolve pass for lane l: read what the last issue prefetched. Returns
 * true when the lane's key is done (value in *v, 0 if absent). */
PM_INLINE bool pm_lane_resolve(struct pm_lane *l, uint64_t key, uintptr_t *v)
{
	switch (l->step) {
	case PM_AT_SLOT: {
		uintptr_t p = gm_load_acquire((_Atomic uintptr_t *)l->slot);
		if (!p) {
			*v = 0;
			return true;
		}
		l->xs = pm_exact_child(p, l->xs);
		l->p = p;
		l->step = PM_AT_ENTER;
		return false;
	}
	case PM_AT_VALUE:
		*v = gm_load_acquire((_Atomic uintptr_t *)l->slot);
		return true;
	case PM_AT_SORTED: {
		/* a value outside the prefetched line waits for the next round
		 * instead of stalling this pass */
		unsigned g = pm_sorted_guess(l->p, key);
		const _Atomic uintptr_t *slot = pm_sorted_slot_in(l->p, key, g,
								  l->xs != PM_NOT_EXACT);
		if (!slot) {
			*v = 0;
			return true;
		}
		if (((uintptr_t)slot ^ (uintptr_t)pm_sorted_value_at(l->p, g)) >> 6) {
			__builtin_prefetch((const void *)slot);
			l->slot = slot;
			l->step = PM_AT_VALUE;
			return false;
		}
		*v = gm_load_acquire((_Atomic uintptr_t *)slot);
		return true;
	}
	default:
		break;
	}
	/* PM_AT_NODE: a partial branch or bitmap leaf whose header arrived */
	uintptr_t p = l->p;
	const void *n = pm_ptr(p);
	uint64_t ps = ((const struct pm_head *)n)->prefix_shift;
	switch (pm_tag(p)) {
	case PM_TAG_BRANCH: {
		const struct pm_branch *b = n;
		unsigned c = pm_chunk(key, ps & 63);
		uint64_t bm = b->bitmap;
		if (!(bm >> c & 1)) {
			*v = 0;
			return true;
		}
		/* the header is here: the key's agreement with the prefix is known */
		l->xs = pm_outside(ps, key) ? PM_NOT_EXACT : (unsigned)(ps & 63);
		l->slot = &b->child[__builtin_popcountll(bm << (63 - c)) - 1];
		__builtin_prefetch((const void *)l->slot);
		l->step = PM_AT_SLOT;
		return false;
	}
	case PM_TAG_FULL: /* header and value slot were prefetched together */
		*v = (key ^ ps) >> 6 ? 0 : gm_load_acquire((_Atomic uintptr_t *)l->slot);
		return true;
	default: {
		const struct pm_bits *b = n;
		unsigned c = key & 63;
		if ((key ^ ps) >> 6 || !(b->bitmap >> c & 1)) {
			*v = 0;
			return true;
		}
		l->slot = &b->value[pm_rank(b->bitmap, c)];
		break;
	}
	}
	__builtin_prefetch((const void *)l->slot);
	l->step = PM_AT_VALUE;
	return false;
}

/* True if the map is mostly direct nodes (bitmap leaves, under
 * PM_MANY_DENSE_BYTES bytes per entry): a loop of lookups reaches each
 * value in one line per level, and the loop overlaps those misses as
 * well as the batches do, without their extra passes. The writer's byte
 * count is read racily: it only picks the method. */
#define PM_MANY_DENSE_BYTES 10
static bool pm_many_dense(const struct gm_pagemap *m, uint64_t count)
{
	if (gm_pagemap_many_loop_max_ == 0)
		return false; /* tests: batches whatever the map */
	size_t bytes = gm_load_relaxed(&((struct gm_pagemap *)m)->bytes);
	return bytes < PM_MANY_DENSE_BYTES * count;
}

PM_INLINE int64_t pm_load_many(const struct gm_pagemap *map, const uint64_t *keys,
				 size_t n, void **values)
{
	if (!map || (n && (!keys || !values)) || n > (size_t)INT64_MAX)
		return -EINVAL;
	uintptr_t root = gm_load_acquire(&((struct gm_pagemap *)map)->root);
	if (!root) {
		for (size_t i = 0; i < n; i++)
			values[i] = NULL;
		return 0;
	}
	size_t found = 0;
	uint64_t count = gm_load_relaxed(&((struct gm_pagemap *)map)->count);
	if (count < gm_pagemap_many_loop_max_ || pm_many_dense(map, count)) {
		for (size_t i = 0; i < n; i++) {
			uintptr_t v = pm_lookup(map, keys[i]);
			values[i] = (void *)v;
			found += v != 0;
		}
		return (int64_t)found;
	}
	struct pm_lane lane[PM_LANES];
	unsigned char live[PM_LANES];
	for (size_t base = 0; base < n; base += PM_LANES) {
		const uint64_t *k = keys + base;
		unsigned b = n - base < PM_LANES ? (unsigned)(n - base) : PM_LANES, na = b;
		for (unsigned j = 0; j < b; j++) {
			pm_lane_start(&lane[j], root, k[j]);
			live[j] = (unsigned char)j;
		}
		while (na) {
			for (unsigned t = 0; t < na; t++)
				pm_lane_issue(&lane[live[t]], k[live[t]]);
			unsigned m = 0;
			for (unsigned t = 0; t < na; t++) {
				unsigned j = live[t];
				uintptr_t v;
				if (pm_lane_resolve(&lane[j], k[j], &v)) {
					values[base + j] = (void *)v;
					found += v != 0;
				} else {
					live[m++] = (unsigned char)j;
				}
			}
			na = m;
		}
	}
	return (int64_t)found;
}

#ifdef PM_DISPATCH
PM_POPCNT static int64_t pm_load_many_popcnt(const struct gm_pagemap *map,
					    const uint64_t *keys, size_t n, void **values)
{
	return pm_load_many(map, keys, n, values);
}
#endif

int64_t gm_pagemap_load_many(const struct gm_pagemap *map, const uint64_t *keys,
			     size_t n, void **values)
{
#ifdef PM_DISPATCH
	if (GM_LIKELY(gm_cpu_popcnt_))
		return pm_load_many_popcnt(map, keys, n, values);
#endif
	return pm_load_many(map, keys, n, values);
}

/* ---- ordered reads ------------------------------------------------------- */

struct pm_hit {
	uint64_t key;
	uintptr_t value;
};


/* Slot i of a node's child or value array, as a reader loads it. */
static inline uintptr_t pm_slot_load(const _Atomic uintptr_t *v, unsigned i)
{
	return gm_load_acquire((_Atomic uintptr_t *)&v[i]);
}

static bool pm_extreme(uintptr_t p, bool last, struct pm_hit *hit);

/*
 * The first (ge) or last (!ge) entry under the children of packed or direct
 * branch b at chunks strictly after (before) chunk c (c = -1 or 64: all).
 * A child of a direct branch seen as 0, or one whose extreme is not found
 * (a direct node emptied and refilled around the reader), is passed over:
 * keys present throughout stay in slots that stay non-zero.
 */
static bool pm_branch_beyond(const struct pm_branch *b, int c, bool ge, struct pm_hit *hit)
{
	uint64_t bm = b->bitmap;
	bool direct = pm_is_direct_branch(b);
	for (int i = ge ? c + 1 : c - 1; i >= 0 && i < 64; i += ge ? 1 : -1) {
		if (!(bm >> i & 1))
			continue;
		uintptr_t q = pm_slot_load(b->child, direct ? (unsigned)i : pm_rank(bm, (unsigned)i));
		if (q && pm_extreme(q, !ge, hit))
			return true;
	}
	return false;
}

/* The first (ge) or last (!ge) key of bitmap leaf p from chunk c on (c
 * included; c = 64 or -1 to start past the end). */
static bool pm_bits_beyond(uintptr_t p, int c, bool ge, struct pm_hit *hit)
{
	const void *n = pm_ptr(p);
	const _Atomic uintptr_t *v = pm_bits_vals(p);
	if (pm_tag(p) == PM_TAG_FULL) {
		for (int i = c; i >= 0 && i < 64; i += ge ? 1 : -1) {
			uintptr_t x = pm_slot_load(v, (unsigned)i);
			if (x) {
				hit->key = pm_prefix(n) | (unsigned)i;
				hit->value = x;
				return true;
			}
		}
		return false;
	}
	uint64_t bm = pm_bits_map(p);
	uint64_t rest = c < 0 ? 0 : c > 63 ? (ge ? 0 : bm)
		: ge ? bm & ~((1ULL << c) - 1) : bm & (~0ULL >> (63 - c));
	if (!rest)
		return false;
	unsigned at = ge ? (unsigned)__builtin_ctzll(rest) : 63 - (unsigned)__builtin_clzll(rest);
	hit->key = pm_prefix(n) | at;
	hit->value = pm_slot_load(v, pm_rank(bm, at));
	return true;
}

/* Smallest (or largest, when last) entry under node p; p != 0. False only
 * if a direct node below held no key as the reader passed. */
static bool pm_extreme(uintptr_t p, bool last, struct pm_hit *hit)
{
	void *n = pm_ptr(p);
	switch (pm_tag(p)) {
	case PM_TAG_BRANCH:
		return pm_branch_beyond(n, last ? 64 : -1, !last, hit);
	case PM_TAG_BITS:
	case PM_TAG_FULL:
		return pm_bits_beyond(p, last ? 63 : 0, !last, hit);
	default: {
		const struct pm_sorted *l = n;
		unsigned i = last ? l->count - 1 : 0;
		hit->key = pm_sorted_key(l, i);
		hit->value = gm_load_acquire(&pm_sorted_values(l)[i]);
		return true;
	}
	}
}

/* First entry >= key under node p (ge) or last entry <= key (!ge). */
static bool pm_seek(uintptr_t p, uint64_t key, bool ge, struct pm_hit *hit)
{
	void *n = pm_ptr(p);
	uint64_t ps = ((struct pm_head *)n)->prefix_shift;
	if (pm_outside(ps, key)) {
		bool node_above = (ps & ~63ULL) > key;
		if (node_above != ge)
			return false;
		return pm_extreme(p, !ge, hit);
	}
	unsigned s = ps & 63;
	switch (pm_tag(p)) {
	case PM_TAG_BRANCH: {
		const struct pm_branch *b = n;
		unsigned c = pm_chunk(key, s);
		if (b->bitmap >> c & 1) {
			unsigned at = pm_is_direct_branch(b) ? c : pm_rank(b->bitmap, c);
			uintptr_t q = pm_slot_load(b->child, at);
			if (q && pm_seek(q, key, ge, hit))
				return true;
		}
		return pm_branch_beyond(b, (int)c, ge, hit);
	}
	case PM_TAG_BITS:
	case PM_TAG_FULL:
		return pm_bits_beyond(p, (int)(key & 63), ge, hit);
	default: {
		const struct pm_sorted *l = n;
		unsigned i = pm_sorted_lower_bound(l, key);
		if (ge) {
			if (i >= l->count)
				return false;
		} else {
			if (i >= l->count || pm_sorted_key(l, i) != key) {
				if (i == 0)
					return false;
				i--;
			}
		}
		hit->key = pm_sorted_key(l, i);
		hit->value = gm_load_acquire(&pm_sorted_values(l)[i]);
		return true;
	}
	}
}

static int pm_seek_map(const struct gm_pagemap *map, uint64_t key,
		       struct gm_pagemap_entry *out, bool ge)
{
	if (!map || !out)
		return -EINVAL;
	uintptr_t root = gm_load_acquire(&((struct gm_pagemap *)map)->root);
	struct pm_hit hit;
	if (!root || !pm_seek(root, key, ge, &hit))
		return -ENOENT;
	out->key = hit.key;
	out->value = (void *)hit.value;
	return 0;
}

int gm_pagemap_next(const struct gm_pagemap *map, uint64_t key, struct gm_pagemap_entry *out)
{
	return pm_seek_map(map, key, out, true);
}

int gm_pagemap_prev(const struct gm_pagemap *map, uint64_t key, struct gm_pagemap_entry *out)
{
	return pm_seek_map(map, key, out, false);
}

int gm_pagemap_iter_init(struct gm_pagemap_iter *it, const struct gm_pagemap *map,
			 uint64_t first, uint64_t last, unsigned flags)
{
	if (!it)
		return -EINVAL;
	it->done = true;
	if (!map || first > last || (flags & ~GM_ITER_REVERSE))
		return -EINVAL;
	it->map = map;
	it->reverse = flags & GM_ITER_REVERSE;
	it->pos = it->reverse ? last : first;
	it->end = it->reverse ? first : last;
	it->done = false;
	return 0;
}

int gm_pagemap_iter_next(struct gm_pagemap_iter *it, struct gm_pagemap_entry *out)
{
	if (!it || !out)
		return -EINVAL;
	if (it->done)
		return -ENOENT;
	struct gm_pagemap_entry e;
	int rc = pm_seek_map(it->map, it->pos, &e, !it->reverse);
	if (rc || (it->reverse ? e.key < it->end : e.key > it->end)) {
		it->done = true;
		return -ENOENT;
	}
	if (e.key == it->end)
		it->done = true;
	else
		it->pos = it->reverse ? e.key - 1 : e.key + 1;
	*out = e;
	return 0;
}

int gm_pagemap_walk(const struct gm_pagemap *map, uint64_t first, uint64_t last,
		    gm_pagemap_walk_fn fn, void *ctx)
{
	struct gm_pagemap_iter it;
	struct gm_pagemap_entry e;
	if (!fn)
		return -EINVAL;
	int rc = gm_pagemap_iter_init(&it, map, first, last, 0);
	while (rc == 0 && (rc = gm_pagemap_iter_next(&it, &e)) == 0)
		rc = fn(ctx, e.key, e.value);
	return rc == -ENOENT ? 0 : rc;
}

/* ---- writes -------------------------------------------------------------- */

int gm_pagemap_create(struct gm_pagemap **out, unsigned flags,
		      const struct gm_allocator *alloc)
{
	if (!out || (flags & ~GM_RCU))
		return -EINVAL;
	struct gm_pagemap *map = gm_alloc_mem(alloc, sizeof(*map), _Alignof(struct gm_pagemap));
	if (!map)
		return -ENOMEM;
	*out = map;
	memset(map, 0, sizeof(*map));
	atomic_init(&map->root, 0);
	atomic_init(&map->count, 0);
	atomic_init(&map->bytes, 0);
	map->alloc = alloc ? alloc : gm_alloc_default();
	map->flags = flags;
	gm_reclaim_init(pm_reclaim(map), map->alloc, flags & GM_RCU);
	return 0;
}

static void pm_count_add(struct gm_pagemap *m, int64_t d)
{
	gm_store_relaxed(&m->count, gm_load_relaxed(&m->count) + (uint64_t)d);
}

/* Direct copy of packed branch b with `child` added at chunk c. */
static uintptr_t pm_branch_direct(struct gm_pagemap *m, const struct pm_branch *b,
				  unsigned c, uintptr_t child)
{
	unsigned s = pm_shift(b), slots = pm_slots_of(s);
	struct pm_branch *nb = pm_node_alloc(m, PM_TAG_BRANCH, pm_branch_size(slots));
	if (!nb)
		return 0;
	nb->prefix_shift = b->prefix_shift;
	nb->bitmap = pm_all_chunks(s);
	uint64_t bm = b->bitmap;
	for (unsigned i = 0; i < slots; i++)
		atomic_init(&nb->child[i], 0);
	for (unsigned j = 0; bm; bm &= bm - 1)
		atomic_init(&nb->child[__builtin_ctzll(bm)], gm_load_relaxed(&b->child[j++]));
	atomic_init(&nb->child[c], child);
	return pm_tagged(nb, PM_TAG_BRANCH);
}

/* Packed copy of direct branch b without its child at chunk c; fewer than
 * PM_BRANCH_PACK and at least 2 children remain. */
static uintptr_t pm_branch_pack(struct gm_pagemap *m, const struct pm_branch *b, unsigned c)
{
	unsigned slots = pm_slots_of(pm_shift(b));
	uint64_t bm = 0;
	for (unsigned i = 0; i < slots; i++)
		if (i != c && gm_load_relaxed(&b->child[i]))
			bm |= 1ULL << i;
	struct pm_branch *nb = pm_node_alloc(m, PM_TAG_BRANCH,
					     pm_branch_size((unsigned)__builtin_popcountll(bm)));
	if (!nb)
		return 0;
	nb->prefix_shift = b->prefix_shift;
	nb->bitmap = bm;
	for (unsigned j = 0; bm; bm &= bm - 1)
		atomic_init(&nb->child[j++], gm_load_relaxed(&b->child[__builtin_ctzll(bm)]));
	return pm_tagged(nb, PM_TAG_BRANCH);
}

/* Copy of packed branch b with child `child` added at chunk c (a direct
 * copy once it reaches PM_BRANCH_DIRECT children in a map where direct
 * nodes are made, or every chunk). */
static uintptr_t pm_branch_with(struct gm_pagemap *m, const struct pm_branch *b,
				unsigned c, uintptr_t child)
{
	unsigned cnt = (unsigned)__builtin_popcountll(b->bitmap);
	if ((cnt + 1 >= PM_BRANCH_DIRECT && pm_direct_ok(m)) ||
	    (b->bitmap | 1ULL << c) == pm_all_chunks(pm_shift(b)))
		return pm_branch_direct(m, b, c, child);
	struct pm_branch *nb = pm_node_alloc(m, PM_TAG_BRANCH, pm_branch_size(cnt + 1));
	if (!nb)
		return 0;
	unsigned at = pm_rank(b->bitmap, c);
	nb->prefix_shift = b->prefix_shift;
	nb->bitmap = b->bitmap | 1ULL << c;
	for (unsigned i = 0, j = 0; i <= cnt; i++)
		atomic_init(&nb->child[i], i == at ? child : gm_load_relaxed(&b->child[j++]));
	return pm_tagged(nb, PM_TAG_BRANCH);
}

/* Copy of branch b without the child at chunk c (b has >= 3 children). */
static uintptr_t pm_branch_without(struct gm_pagemap *m, const struct pm_branch *b,
				   unsigned c)
{
	unsigned cnt = (unsigned)__builtin_popcountll(b->bitmap);
	struct pm_branch *nb = pm_node_alloc(m, PM_TAG_BRANCH, pm_branch_size(cnt - 1));
	if (!nb)
		return 0;
	unsigned at = pm_rank(b->bitmap, c);
	nb->prefix_shift = b->prefix_shift;
	nb->bitmap = b->bitmap & ~(1ULL << c);
	for (unsigned i = 0, j = 0; i < cnt; i++)
		if (i != at)
			atomic_init(&nb->child[j++], gm_load_relaxed(&b->child[i]));
	return pm_tagged(nb, PM_TAG_BRANCH);
}

/* New branch at shift s over two nodes with different chunks at s. */
static uintptr_t pm_branch_pair(struct gm_pagemap *m, unsigned s, uint64_t key_a,
				uintptr_t a, uint64_t key_b, uintptr_t b)
{
	struct pm_branch *nb = pm_node_alloc(m, PM_TAG_BRANCH, pm_branch_size(2));
	if (!nb)
		return 0;
	unsigned ca = pm_chunk(key_a, s), cb = pm_chunk(key_b, s);
	nb->prefix_shift = (key_a & pm_above_mask(s)) | s;
	nb->bitmap = 1ULL << ca | 1ULL << cb;
	atomic_init(&nb->child[0], ca < cb ? a : b);
	atomic_init(&nb->child[1], ca < cb ? b : a);
	return pm_tagged(nb, PM_TAG_BRANCH);
}

/* Key lies outside node p (in slot): put a branch above both. */
static int pm_insert_beside(struct gm_pagemap *m, _Atomic uintptr_t *slot,
			    uintptr_t p, uint64_t key, uintptr_t value)
{
	uint64_t prefix = pm_prefix(pm_ptr(p));
	unsigned s = pm_split_shift(key ^ prefix);
	uintptr_t leaf = pm_make_leaf(m, s - 6, &key, &value, 1);
	if (!leaf)
		return -ENOMEM;
	uintptr_t nb = pm_branch_pair(m, s, key, leaf, prefix, p);
	if (!nb) {
		pm_node_free_now(m, leaf);
		return -ENOMEM;
	}
	gm_store_release(slot, nb);
	return 0;
}

/* A direct leaf holding only key. */
static uintptr_t pm_make_direct1(struct gm_pagemap *m, uint64_t key, uintptr_t value)
{
	struct pm_full *f = pm_node_alloc(m, PM_TAG_FULL, sizeof(struct pm_full));
	if (!f)
		return 0;
	f->prefix_shift = key & ~63ULL;
	for (unsigned i = 0; i < 64; i++)
		atomic_init(&f->value[i], 0);
	atomic_init(&f->value[key & 63], value);
	return pm_tagged(f, PM_TAG_FULL);
}

/* True if branch b (at shift 6) holds a full leaf just below key's chunk:
 * frames filled in order, whose next leaf is best made direct at once. */
static bool pm_follows_full(const struct gm_pagemap *m, const struct pm_branch *b,
			    uint64_t key)
{
	unsigned c = pm_chunk(key, 6);
	if (!pm_direct_ok(m) || c == 0 || !(b->bitmap >> (c - 1) & 1))
		return false;
	unsigned at = pm_is_direct_branch(b) ? c - 1 : pm_rank(b->bitmap, c - 1);
	uintptr_t prev = gm_load_relaxed(&b->child[at]);
	return pm_tag(prev) == PM_TAG_FULL && pm_direct_count(prev) == 64;
}

/* The one-key leaf under branch b (shift s) for key: a direct leaf when
 * it follows a full one (pm_follows_full), else the smallest kind. */
static uintptr_t pm_new_child_leaf(struct gm_pagemap *m, const struct pm_branch *b,
				   unsigned s, uint64_t key, uintptr_t value)
{
	if (s == 6 && pm_follows_full(m, b, key))
		return pm_make_direct1(m, key, value);
	return pm_make_leaf(m, s - 6, &key, &value, 1);
}

/* Key's chunk is free in branch p: a new leaf, stored in place in a direct
 * branch, else in a copy of the branch. */
static int pm_insert_child(struct gm_pagemap *m, _Atomic uintptr_t *slot,
			   uintptr_t p, uint64_t key, uintptr_t value)
{
	struct pm_branch *b = pm_ptr(p);
	unsigned s = pm_shift(b);
	if (pm_is_direct_branch(b)) {
		uintptr_t leaf = pm_new_child_leaf(m, b, s, key, value);
		if (!leaf)
			return -ENOMEM;
		gm_store_release(&b->child[pm_chunk(key, s)], leaf);
		gm_store_release(slot, pm_with_count(p, pm_direct_count(p) + 1));
		return 0;
	}
	int rc = gm_reclaim_reserve(pm_reclaim(m), 1);
	if (rc)
		return rc;
	uintptr_t leaf = pm_new_child_leaf(m, b, s, key, value);
	if (!leaf)
		return -ENOMEM;
	uintptr_t nb = pm_branch_with(m, b, pm_chunk(key, s), leaf);
	if (!nb) {
		pm_node_free_now(m, leaf);
		return -ENOMEM;
	}
	gm_store_release(slot, nb);
	pm_node_retire(m, p);
	return 0;
}

/* A direct leaf with the keys of packed leaf p plus key (value). */
static uintptr_t pm_bits_direct(struct gm_pagemap *m, uintptr_t p, uint64_t key,
				uintptr_t value)
{
	struct pm_full *f = pm_node_alloc(m, PM_TAG_FULL, sizeof(struct pm_full));
	if (!f)
		return 0;
	uint64_t bm = pm_bits_map(p);
	const _Atomic uintptr_t *old = pm_bits_vals(p);
	f->prefix_shift = pm_prefix(pm_ptr(p));
	for (unsigned i = 0; i < 64; i++)
		atomic_init(&f->value[i], 0);
	for (unsigned j = 0; bm; bm &= bm - 1)
		atomic_init(&f->value[__builtin_ctzll(bm)], gm_load_relaxed(&old[j++]));
	atomic_init(&f->value[key & 63], value);
	return pm_tagged(f, PM_TAG_FULL);
}

/* Key is absent from bitmap leaf p: in place in a direct leaf, else in a
 * copy (direct once it reaches PM_LEAF_DIRECT keys in a map where direct
 * nodes are made, or 64). */
static int pm_insert_bits(struct gm_pagemap *m, _Atomic uintptr_t *slot,
			  uintptr_t p, uint64_t key, uintptr_t value)
{
	unsigned c = key & 63;
	if (pm_tag(p) == PM_TAG_FULL) {
		gm_store_release(&((struct pm_full *)pm_ptr(p))->value[c], value);
		gm_store_release(slot, pm_with_count(p, pm_direct_count(p) + 1));
		return 0;
	}
	uint64_t bm = pm_bits_map(p);
	const _Atomic uintptr_t *old = pm_bits_vals(p);
	unsigned cnt = (unsigned)__builtin_popcountll(bm);
	int rc = gm_reclaim_reserve(pm_reclaim(m), 1);
	if (rc)
		return rc;
	/* in order: key follows the last key inserted, and the leaf's keys
	 * are one run ending just below it */
	bool in_order = key == m->last_key + 1 && cnt >= PM_LEAF_SEQ && c >= cnt &&
			bm >> (c - cnt) == (1ULL << cnt) - 1;
	bool direct = cnt + 1 == 64 || in_order ||
		      (cnt + 1 >= PM_LEAF_DIRECT && pm_direct_ok(m));
	uintptr_t q = direct ? pm_bits_direct(m, p, key, value)
			     : pm_alloc_bits(m, pm_prefix(pm_ptr(p)), bm | 1ULL << c);
	if (!q)
		return -ENOMEM;
	if (!direct) {
		_Atomic uintptr_t *nv = pm_bits_vals(q);
		unsigned at = pm_rank(bm, c);
		for (unsigned i = 0, j = 0; i <= cnt; i++)
			atomic_init(&nv[i], i == at ? value : gm_load_relaxed(&old[j++]));
	}
	gm_store_release(slot, q);
	pm_node_retire(m, p);
	return 0;
}

/* Replaces a full sorted leaf's entries plus one by a branch over smaller
 * leaves at the highest chunk where the keys differ (or one bitmap leaf if
 * they all fall in 64 neighbouring keys). */
static uintptr_t pm_build_split(struct gm_pagemap *m, const uint64_t *keys,
				const uintptr_t *values, unsigned n)
{
	unsigned s = pm_split_shift(keys[0] ^ keys[n - 1]);
	if (s == 0)
		return pm_make_bits(m, keys[0] & ~63ULL, keys, values, n);
	uintptr_t child[64];
	unsigned nchild = 0;
	uint64_t bitmap = 0;
	for (unsigned i = 0; i < n;) {
		unsigned j = i + 1, c = pm_chunk(keys[i], s);
		while (j < n && pm_chunk(keys[j], s) == c)
			j++;
		child[nchild] = pm_make_leaf(m, s - 6, keys + i, values + i, j - i);
		if (!child[nchild]) {
			while (nchild)
				pm_node_free_now(m, child[--nchild]);
			return 0;
		}
		nchild++;
		bitmap |= 1ULL << c;
		i = j;
	}
	struct pm_branch *nb = pm_node_alloc(m, PM_TAG_BRANCH, pm_branch_size(nchild));
	if (!nb) {
		while (nchild)
			pm_node_free_now(m, child[--nchild]);
		return 0;
	}
	nb->prefix_shift = (keys[0] & pm_above_mask(s)) | s;
	nb->bitmap = bitmap;
	for (unsigned i = 0; i < nchild; i++)
		atomic_init(&nb->child[i], child[i]);
	return pm_tagged(nb, PM_TAG_BRANCH);
}

/* True if keys (ascending) cost fewer bytes as bitmap leaves (under one
 * branch at shift 6, or a single bitmap leaf) than as a sorted leaf: dense
 * and clustered frames then use 8 bytes per entry instead of 12-16. */
static bool pm_bitmaps_are_smaller(const uint64_t *keys, unsigned n)
{
	unsigned s = pm_split_shift((keys[0] ^ keys[n - 1]) | 1);
	if (s == 0)
		return true;
	if (s != 6)
		return false;
	unsigned groups = 1;
	for (unsigned i = 1; i < n; i++)
		groups += keys[i] >> 6 != keys[i - 1] >> 6;
	/* branch 16 + 8g, leaves 16g + 8n  vs  sorted 16 + 12n (narrow) */
	return 24 * groups < 4 * n;
}

/*
 * Copy of sorted leaf l with entry `at` left out (drop) or (key, value)
 * put before it (!drop): two block copies of the suffixes and two of the
 * values, no per-entry work. The source's values are only written by this
 * writer, so the plain copy reads what its relaxed loads would.
 */
static uintptr_t pm_sorted_splice(struct gm_pagemap *m, const struct pm_sorted *l,
				  unsigned at, bool drop, uint64_t key, uintptr_t value)
{
	unsigned s = pm_shift(l), n = l->count, nn = drop ? n - 1 : n + 1;
	struct pm_sorted *q = pm_node_alloc(m, PM_TAG_SORTED, pm_sorted_size(s, nn));
	if (!q)
		return 0;
	size_t w = pm_sorted_narrow(s) ? 4 : 8, skip = drop ? 1 : 0;
	q->prefix_shift = l->prefix_shift;
	q->count = nn;
	q->pad = 0;
	const char *os = (const char *)(l + 1);
	char *ns = (char *)(q + 1);
	memcpy(ns, os, at * w);
	memcpy(ns + (at + !drop) * w, os + (at + skip) * w, (n - at - skip) * w);
	if (!drop) {
		uint64_t suffix = key & ~pm_above_mask(s);
		if (w == 4) {
			uint32_t v32 = (uint32_t)suffix;
			memcpy(ns + at * w, &v32, 4);
		} else {
			memcpy(ns + at * w, &suffix, 8);
		}
	}
	if (w == 4 && (nn & 1))
		pm_suffix32(q)[nn] = 0; /* padding word: keep it defined */
	const char *ov = (const char *)(const void *)pm_sorted_values(l);
	char *nv = (char *)(void *)pm_sorted_values(q);
	memcpy(nv, ov, at * 8);
	memcpy(nv + (at + !drop) * 8, ov + (at + skip) * 8, (n - at - skip) * 8);
	if (!drop)
		atomic_init(&pm_sorted_values(q)[at], value);
	return pm_tagged(q, PM_TAG_SORTED);
}

/* True unless inserting key into sorted leaf l may call for a split or
 * for bitmap leaves (pm_bitmaps_are_smaller): the keys then span more than
 * one shift-6 branch's 4096 keys, decided from the ends alone. */
static bool pm_sorted_plain_insert(const struct pm_sorted *l, uint64_t key)
{
	unsigned n = l->count;
	if (n + 1 > PM_SORTED_MAX)
		return false;
	uint64_t lo = pm_sorted_key(l, 0), hi = pm_sorted_key(l, n - 1);
	lo = key < lo ? key : lo;
	hi = key > hi ? key : hi;
	return pm_split_shift((lo ^ hi) | 1) > 6;
}

static int pm_insert_sorted(struct gm_pagemap *m, _Atomic uintptr_t *slot,
			    uintptr_t p, unsigned at, uint64_t key, uintptr_t value)
{
	const struct pm_sorted *l = pm_ptr(p);
	unsigned n = l->count;
	if (pm_sorted_plain_insert(l, key)) {
		int rc = gm_reclaim_reserve(pm_reclaim(m), 1);
		if (rc)
			return rc;
		uintptr_t q = pm_sorted_splice(m, l, at, false, key, value);
		if (!q)
			return -ENOMEM;
		gm_store_release(slot, q);
		pm_node_retire(m, p);
		return 0;
	}
	uint64_t keys[PM_SORTED_MAX + 1];
	uintptr_t vals[PM_SORTED_MAX + 1];
	const _Atomic uintptr_t *lv = pm_sorted_values(l);
	for (unsigned i = 0, j = 0; i <= n; i++) {
		if (i == at) {
			keys[i] = key;
			vals[i] = value;
		} else {
			keys[i] = pm_sorted_key(l, j);
			vals[i] = gm_load_relaxed(&lv[j]);
			j++;
		}
	}
	int rc = gm_reclaim_reserve(pm_reclaim(m), 1);
	if (rc)
		return rc;
	uintptr_t q = n < PM_SORTED_MAX && !pm_bitmaps_are_smaller(keys, n + 1)
			      ? pm_make_sorted(m, pm_shift(l), keys, vals, n + 1)
			      : pm_build_split(m, keys, vals, n + 1);
	if (!q)
		return -ENOMEM;
	gm_store_release(slot, q);
	pm_node_retire(m, p);
	return 0;
}

/* Writer side: the slot of key's chunk in branch b (packed: NULL if the
 * chunk is absent; direct: the slot, which may hold 0). */
static _Atomic uintptr_t *pm_branch_slot(struct pm_branch *b, uint64_t key)
{
	unsigned c = pm_chunk(key, pm_shift(b));
	if (pm_is_direct_branch(b))
		return &b->child[c];
	return b->bitmap >> c & 1 ? &b->child[pm_rank(b->bitmap, c)] : NULL;
}
/* The same for the value slot of key in bitmap leaf p. */
static _Atomic uintptr_t *pm_bits_slot(uintptr_t p, uint64_t key)
{
	unsigned c = key & 63;
	if (pm_tag(p) == PM_TAG_FULL)
		return &((struct pm_full *)pm_ptr(p))->value[c];
	uint64_t bm = pm_bits_map(p);
	return bm >> c & 1 ? &pm_bits_vals(p)[pm_rank(bm, c)] : NULL;
}

/* Shared by insert and store. replace: overwrite an existing value. */
static int pm_set(struct gm_pagemap *m, uint64_t key, uintptr_t value,
		  bool replace, uintptr_t *old)
{
	_Atomic uintptr_t *slot = &m->root;
	uintptr_t p = gm_load_relaxed(slot);
	*old = 0;
	if (!p) {
		uintptr_t leaf = pm_make_sorted(m, PM_TOP_SHIFT, &key, &value, 1);
		if (!leaf)
			return -ENOMEM;
		gm_store_release(slot, leaf);
		pm_count_add(m, 1);
		return 0;
	}
	int rc = 0;
	_Atomic uintptr_t *vslot = NULL;
	for (;;) {
		void *n = pm_ptr(p);
		if (pm_outside(((struct pm_head *)n)->prefix_shift, key)) {
			rc = pm_insert_beside(m, slot, p, key, value);
			break;
		}
		if (pm_tag(p) == PM_TAG_BRANCH) {
			_Atomic uintptr_t *cs = pm_branch_slot(n, key);
			if (!cs || !gm_load_relaxed(cs)) {
				rc = pm_insert_child(m, slot, p, key, value);
				break;
			}
			slot = cs;
			p = gm_load_relaxed(slot);
			continue;
		}
		if (pm_is_bits(pm_tag(p))) {
			_Atomic uintptr_t *vs = pm_bits_slot(p, key);
			if (vs && gm_load_relaxed(vs)) {
				vslot = vs;
				break;
			}
			rc = pm_insert_bits(m, slot, p, key, value);
			break;
		}
		struct pm_sorted *l = n;
		unsigned i = pm_sorted_lower_bound(l, key);
		if (i < l->count && pm_sorted_key(l, i) == key) {
			vslot = &pm_sorted_values(l)[i];
			break;
		}
		rc = pm_insert_sorted(m, slot, p, i, key, value);
		break;
	}
	if (vslot) {
		*old = gm_load_relaxed(vslot);
		if (!replace)
			return -EEXIST;
		gm_store_release(vslot, value);
		return 0;
	}
	if (rc == 0) {
		pm_count_add(m, 1);
		m->last_key = key;
	}
	return rc;
}

/*
 * Writer fast path: the slot holding the direct leaf of key, found the way
 * pm_lookup goes (no prefix checks on the way: a direct leaf whose prefix
 * is key's own is the one place key can be), or NULL when the path ends
 * elsewhere (then the full walk decides).
 */
static _Atomic uintptr_t *pm_direct_leaf_slot(struct gm_pagemap *m, uint64_t key)
{
	_Atomic uintptr_t *slot = &m->root;
	uintptr_t p = gm_load_relaxed(slot);
	while (pm_tag(p) == PM_TAG_BRANCH) {
		unsigned h = pm_hint(p);
		struct pm_branch *b = pm_ptr(p);
		if (h & PM_HINT_FULL) {
			slot = &b->child[pm_chunk(key, pm_hint_shift(h))];
		} else {
			unsigned c = pm_chunk(key, pm_shift(b));
			if (!(b->bitmap >> c & 1))
				return NULL;
			slot = &b->child[pm_rank(b->bitmap, c)];
		}
		p = gm_load_relaxed(slot);
	}
	if (pm_tag(p) != PM_TAG_FULL || (key ^ pm_prefix(pm_ptr(p))) >> 6)
		return NULL;
	return slot;
}

/* Insert into a direct leaf in place: 0, -EEXIST, or 1 if not the case. */
static int pm_insert_fast(struct gm_pagemap *m, uint64_t key, uintptr_t value)
{
	_Atomic uintptr_t *slot = pm_direct_leaf_slot(m, key);
	if (!slot)
		return 1;
	uintptr_t p = gm_load_relaxed(slot);
	_Atomic uintptr_t *v = &((struct pm_full *)pm_ptr(p))->value[key & 63];
	if (gm_load_relaxed(v))
		return -EEXIST;
	gm_store_release(v, value);
	gm_store_release(slot, pm_with_count(p, pm_direct_count(p) + 1));
	pm_count_add(m, 1);
	m->last_key = key;
	return 0;
}

int gm_pagemap_insert(struct gm_pagemap *map, uint64_t key, void *value)
{
	if (!map || !value)
		return -EINVAL;
	int rc = pm_insert_fast(map, key, (uintptr_t)value);
	if (rc <= 0)
		return rc;
	uintptr_t old;
	return pm_set(map, key, (uintptr_t)value, false, &old);
}

int gm_pagemap_store(struct gm_pagemap *map, uint64_t key, void *value, void **old)
{
	if (!map || !value)
		return -EINVAL;
	uintptr_t was;
	int rc = pm_set(map, key, (uintptr_t)value, true, &was);
	if (rc == 0 && old)
		*old = (void *)was;
	return rc;
}

/* pm_unlink_leaf for a direct parent: clears the slot in place while
 * PM_BRANCH_PACK children remain, else packs the parent (or, with one child
 * left, puts that child in its place). Retirements are reserved. */
static int pm_unlink_direct(struct gm_pagemap *m, _Atomic uintptr_t **slots,
			    unsigned depth)
{
	_Atomic uintptr_t *pslot = slots[depth - 1];
	uintptr_t leaf = gm_load_relaxed(slots[depth]), bp = gm_load_relaxed(pslot);
	struct pm_branch *b = pm_ptr(bp);
	unsigned c = (unsigned)(slots[depth] - b->child), cnt = pm_direct_count(bp);
	if (cnt - 1 >= PM_BRANCH_PACK) {
		gm_store_release(slots[depth], 0);
		gm_store_release(pslot, pm_with_count(bp, cnt - 1));
		pm_node_retire(m, leaf);
		return 0;
	}
	uintptr_t replacement = 0;
	if (cnt == 2) {
		for (unsigned i = 0; i < pm_slots_of(pm_shift(b)) && !replacement; i++)
			if (i != c)
				replacement = gm_load_relaxed(&b->child[i]);
	} else {
		replacement = pm_branch_pack(m, b, c);
		if (!replacement)
			return -ENOMEM;
	}
	gm_store_release(pslot, replacement);
	pm_node_retire(m, bp);
	pm_node_retire(m, leaf);
	return 0;
}

/* Removes the leaf in slots[depth] that became empty from its parent. */
static int pm_unlink_leaf(struct gm_pagemap *m, _Atomic uintptr_t **slots,
			  unsigned depth)
{
	uintptr_t leaf = gm_load_relaxed(slots[depth]);
	if (depth == 0) {
		int rc = gm_reclaim_reserve(pm_reclaim(m), 1);
		if (rc)
			return rc;
		gm_store_release(slots[0], 0);
		pm_node_retire(m, leaf);
		return 0;
	}
	_Atomic uintptr_t *pslot = slots[depth - 1];
	uintptr_t bp = gm_load_relaxed(pslot);
	const struct pm_branch *b = pm_ptr(bp);
	unsigned rank = (unsigned)(slots[depth] - b->child);
	unsigned cnt = (unsigned)__builtin_popcountll(b->bitmap);
	int rc = gm_reclaim_reserve(pm_reclaim(m), 2);
	if (rc)
		return rc;
	if (pm_is_direct_branch(b))
		return pm_unlink_direct(m, slots, depth);
	uintptr_t replacement;
	if (cnt == 2) {
		replacement = gm_load_relaxed(&b->child[1 - rank]);
	} else {
		/* chunk of the rank-th set bit */
		uint64_t bm = b->bitmap;
		for (unsigned i = 0; i < rank; i++)
			bm &= bm - 1;
		replacement = pm_branch_without(m, b, (unsigned)__builtin_ctzll(bm));
		if (!replacement)
			return -ENOMEM;
	}
	gm_store_release(pslot, replacement);
	pm_node_retire(m, bp);
	pm_node_retire(m, leaf);
	return 0;
}

/* Packed copy of direct leaf p without chunk c (fewer than PM_LEAF_PACK
 * and at least one key remain). */
static uintptr_t pm_direct_pack(struct gm_pagemap *m, uintptr_t p, unsigned c)
{
	const struct pm_full *f = pm_ptr(p);
	uint64_t bm = 0;
	for (unsigned i = 0; i < 64; i++)
		if (i != c && gm_load_relaxed(&f->value[i]))
			bm |= 1ULL << i;
	uintptr_t q = pm_alloc_bits(m, pm_prefix(f), bm);
	if (!q)
		return 0;
	_Atomic uintptr_t *nv = pm_bits_vals(q);
	for (unsigned j = 0; bm; bm &= bm - 1)
		atomic_init(&nv[j++], gm_load_relaxed(&f->value[__builtin_ctzll(bm)]));
	return q;
}

/* Removes key from direct leaf slots[depth]: in place while PM_LEAF_PACK
 * keys remain, else into a packed copy (or the leaf goes). */
static int pm_erase_in_direct(struct gm_pagemap *m, _Atomic uintptr_t **slots,
			      unsigned depth, uint64_t key, uintptr_t *old)
{
	uintptr_t p = gm_load_relaxed(slots[depth]);
	struct pm_full *f = pm_ptr(p);
	unsigned c = key & 63, cnt = pm_direct_count(p);
	uintptr_t v = gm_load_relaxed(&f->value[c]);
	if (!v)
		return -ENOENT;
	*old = v;
	if (cnt == 1)
		return pm_unlink_leaf(m, slots, depth);
	if (cnt - 1 >= PM_LEAF_PACK) {
		gm_store_release(&f->value[c], 0);
		gm_store_release(slots[depth], pm_with_count(p, cnt - 1));
		return 0;
	}
	int rc = gm_reclaim_reserve(pm_reclaim(m), 1);
	if (rc)
		return rc;
	uintptr_t q = pm_direct_pack(m, p, c);
	if (!q)
		return -ENOMEM;
	gm_store_release(slots[depth], q);
	pm_node_retire(m, p);
	return 0;
}

static int pm_erase_in_leaf(struct gm_pagemap *m, _Atomic uintptr_t **slots,
			    unsigned depth, uint64_t key, uintptr_t *old)
{
	uintptr_t p = gm_load_relaxed(slots[depth]);
	void *n = pm_ptr(p);
	if (pm_tag(p) == PM_TAG_FULL)
		return pm_erase_in_direct(m, slots, depth, key, old);
	if (pm_is_bits(pm_tag(p))) {
		uint64_t bm = pm_bits_map(p);
		const _Atomic uintptr_t *ov = pm_bits_vals(p);
		unsigned c = key & 63;
		if (!(bm >> c & 1))
			return -ENOENT;
		unsigned at = pm_rank(bm, c);
		unsigned cnt = (unsigned)__builtin_popcountll(bm);
		*old = gm_load_relaxed(&ov[at]);
		if (cnt == 1)
			return pm_unlink_leaf(m, slots, depth);
		int rc = gm_reclaim_reserve(pm_reclaim(m), 1);
		if (rc)
			return rc;
		uintptr_t q = pm_alloc_bits(m, pm_prefix(n), bm & ~(1ULL << c));
		if (!q)
			return -ENOMEM;
		_Atomic uintptr_t *nv = pm_bits_vals(q);
		for (unsigned i = 0, j = 0; i < cnt; i++)
			if (i != at)
				atomic_init(&nv[j++], gm_load_relaxed(&ov[i]));
		gm_store_release(slots[depth], q);
		pm_node_retire(m, p);
		return 0;
	}
	struct pm_sorted *l = n;
	unsigned at = pm_sorted_lower_bound(l, key);
	if (at >= l->count || pm_sorted_key(l, at) != key)
		return -ENOENT;
	*old = gm_load_relaxed(&pm_sorted_values(l)[at]);
	if (l->count == 1)
		return pm_unlink_leaf(m, slots, depth);
	int rc = gm_reclaim_reserve(pm_reclaim(m), 1);
	if (rc)
		return rc;
	uintptr_t q = pm_sorted_splice(m, l, at, 1, 0, 0);
	if (!q)
		return -ENOMEM;
	gm_store_release(slots[depth], q);
	pm_node_retire(m, p);
	return 0;
}

/* Remove from a direct leaf in place while PM_LEAF_PACK keys remain: 0,
 * -ENOENT, or 1 if not the case. */
static int pm_remove_fast(struct gm_pagemap *m, uint64_t key, void **old)
{
	_Atomic uintptr_t *slot = pm_direct_leaf_slot(m, key);
	if (!slot)
		return 1;
	uintptr_t p = gm_load_relaxed(slot);
	_Atomic uintptr_t *v = &((struct pm_full *)pm_ptr(p))->value[key & 63];
	uintptr_t was = gm_load_relaxed(v);
	unsigned cnt = pm_direct_count(p);
	if (!was)
		return -ENOENT;
	if (cnt - 1 < PM_LEAF_PACK)
		return 1;
	gm_store_release(v, 0);
	gm_store_release(slot, pm_with_count(p, cnt - 1));
	pm_count_add(m, -1);
	if (old)
		*old = (void *)was;
	return 0;
}

int gm_pagemap_remove(struct gm_pagemap *map, uint64_t key, void **old)
{
	if (!map)
		return -EINVAL;
	int fast = pm_remove_fast(map, key, old);
	if (fast <= 0)
		return fast;
	_Atomic uintptr_t *slots[16];
	unsigned depth = 0;
	slots[0] = &map->root;
	uintptr_t p = gm_load_relaxed(slots[0]);
	for (;;) {
		if (!p || pm_outside(((struct pm_head *)pm_ptr(p))->prefix_shift, key))
			return -ENOENT;
		if (pm_tag(p) != PM_TAG_BRANCH)
			break;
		_Atomic uintptr_t *cs = pm_branch_slot(pm_ptr(p), key);
		if (!cs)
			return -ENOENT;
		slots[++depth] = cs;
		p = gm_load_relaxed(cs);
	}
	uintptr_t was = 0;
	int rc = pm_erase_in_leaf(map, slots, depth, key, &was);
	if (rc == 0) {
		pm_count_add(map, -1);
		if (old)
			*old = (void *)was;
	}
	return rc;
}

/* ---- whole-tree walks ----------------------------------------------------- */

static void pm_free_tree(struct gm_pagemap *m, uintptr_t p,
			 void (*fn)(uint64_t, void *, void *), void *ctx)
{
	void *n = pm_ptr(p);
	switch (pm_tag(p)) {
	case PM_TAG_BRANCH: {
		struct pm_branch *b = n;
		unsigned cnt = (unsigned)__builtin_popcountll(b->bitmap);
		for (unsigned i = 0; i < cnt; i++)
			if (gm_load_relaxed(&b->child[i]))
				pm_free_tree(m, gm_load_relaxed(&b->child[i]), fn, ctx);
		break;
	}
	case PM_TAG_FULL:
		for (unsigned i = 0; fn && i < 64; i++)
			if (gm_load_relaxed(&((struct pm_full *)n)->value[i]))
				fn(pm_prefix(n) | i,
				   (void *)gm_load_relaxed(&((struct pm_full *)n)->value[i]), ctx);
		break;
	case PM_TAG_BITS: {
		if (fn) {
			uint64_t bm = pm_bits_map(p);
			_Atomic uintptr_t *v = pm_bits_vals(p);
			for (unsigned i = 0; bm; i++, bm &= bm - 1)
				fn(pm_prefix(n) | (unsigned)__builtin_ctzll(bm),
				   (void *)gm_load_relaxed(&v[i]), ctx);
		}
		break;
	}
	default: {
		struct pm_sorted *l = n;
		if (fn)
			for (unsigned i = 0; i < l->count; i++)
				fn(pm_sorted_key(l, i),
				   (void *)gm_load_relaxed(&pm_sorted_values(l)[i]), ctx);
		break;
	}
	}
	pm_node_free_now(m, p);
}

void gm_pagemap_destroy(struct gm_pagemap *map)
{
	if (!map)
		return;
	bool rcu = map->flags & GM_RCU;
	uintptr_t root = gm_load_relaxed(&map->root);
	gm_store_release(&map->root, 0);
	if (rcu)
		gm_rcu_synchronize();
	if (root)
		pm_free_tree(map, root, NULL, NULL);
	gm_reclaim_destroy(pm_reclaim(map));
	gm_alloc_release(map->alloc, map, sizeof(*map));
}

size_t gm_pagemap_bytes_(const struct gm_pagemap *map)
{
	return gm_load_relaxed(&((struct gm_pagemap *)map)->bytes) + sizeof(*map);
}

struct pm_check {
	const char *reason;
	uint64_t entries;
	size_t bytes;
	size_t nodes[5];
	unsigned max_depth;
};

#define PM_FAIL(chk, why) do { (chk)->reason = (why); return false; } while (0)

/* Checks node p, found in a slot whose keys share `prefix` above bit `limit`
 * (limit = parent's shift, 64 for the root). */
static bool pm_check_node(uintptr_t p, uint64_t prefix, unsigned limit,
			  unsigned depth, struct pm_check *chk)
{
	if (!p)
		PM_FAIL(chk, "I3: empty child slot");
	unsigned tag = pm_tag(p);
	if (tag < PM_TAG_BRANCH || tag > PM_TAG_FULL || ((uintptr_t)pm_ptr(p) % PM_ALIGN))
		PM_FAIL(chk, "bad tag or misaligned node");
	if (pm_hint(p) != pm_hint_of(p))
		PM_FAIL(chk, "I6: pointer hint does not match the node");
	void *n = pm_ptr(p);
	unsigned s = pm_shift(n);
	uint64_t np = pm_prefix(n);
	if (s % 6 || s > PM_TOP_SHIFT)
		PM_FAIL(chk, "I1: shift not a multiple of 6 in [0, 60]");
	if (np & ~pm_above_mask(s))
		PM_FAIL(chk, "I1: prefix has bits below shift + 6");
	if (limit <= 60 ? s >= limit : false)
		PM_FAIL(chk, "I2: child shift not below parent's");
	uint64_t lim_mask = limit >= 64 ? 0 : ~0ULL << limit;
	if ((np & lim_mask) != (prefix & lim_mask))
		PM_FAIL(chk, "I2: child prefix disagrees with its slot");
	if (depth + 1 > chk->max_depth)
		chk->max_depth = depth + 1;
	chk->nodes[tag]++;
	chk->bytes += pm_node_size(p);
	uint64_t valid_chunks = pm_all_chunks(s);
	switch (tag) {
	case PM_TAG_BRANCH: {
		struct pm_branch *b = n;
		bool direct = pm_is_direct_branch(b);
		if (s == 0)
			PM_FAIL(chk, "I1: branch at shift 0");
		if (__builtin_popcountll(b->bitmap) < 2)
			PM_FAIL(chk, "I3: branch with fewer than 2 children");
		if (b->bitmap & ~valid_chunks)
			PM_FAIL(chk, "I3: branch bitmap uses chunks beyond the key");
		if (direct && pm_direct_count(p) < PM_BRANCH_PACK)
			PM_FAIL(chk, "I7: direct branch with fewer than PM_BRANCH_PACK children");
		uint64_t bm = b->bitmap;
		for (unsigned i = 0; bm; i++, bm &= bm - 1) {
			uint64_t c = (unsigned)__builtin_ctzll(bm);
			uintptr_t q = gm_load_relaxed(&b->child[i]);
			if ((q || !direct) &&
			    !pm_check_node(q, np | c << s, s, depth + 1, chk))
				return false;
		}
		return true;
	}
	case PM_TAG_FULL: {
		if (s != 0)
			PM_FAIL(chk, "I4: bitmap leaf not at shift 0");
		if (pm_direct_count(p) < 1)
			PM_FAIL(chk, "I7: empty direct leaf");
		chk->entries += pm_direct_count(p);
		return true;
	}
	case PM_TAG_BITS: {
		uint64_t bm = pm_bits_map(p);
		if (s != 0)
			PM_FAIL(chk, "I4: bitmap leaf not at shift 0");
		if (!bm)
			PM_FAIL(chk, "I4: empty bitmap leaf");
		if (bm == ~0ULL)
			PM_FAIL(chk, "I4: bitmap leaf with all 64 keys not in the full layout");
		unsigned cnt = (unsigned)__builtin_popcountll(bm);
		for (unsigned i = 0; i < cnt; i++)
			if (!gm_load_relaxed(&pm_bits_vals(p)[i]))
				PM_FAIL(chk, "I5: NULL value");
		chk->entries += cnt;
		return true;
	}
	default: {
		struct pm_sorted *l = n;
		if (s == 0)
			PM_FAIL(chk, "I4: sorted leaf at shift 0");
		if (l->count < 1 || l->count > PM_SORTED_MAX)
			PM_FAIL(chk, "I4: sorted leaf count out of 1..PM_SORTED_MAX");
		for (unsigned i = 0; i < l->count; i++) {
			uint64_t suffix = pm_sorted_narrow(s) ? pm_suffix32(l)[i] : pm_suffix64(l)[i];
			if (suffix & pm_above_mask(s))
				PM_FAIL(chk, "I4: suffix wider than s + 6 bits");
			if (i && pm_sorted_key(l, i) <= pm_sorted_key(l, i - 1))
				PM_FAIL(chk, "I4: sorted leaf keys not strictly ascending");
			if (!gm_load_relaxed(&pm_sorted_values(l)[i]))
				PM_FAIL(chk, "I5: NULL value");
		}
		chk->entries += l->count;
		return true;
	}
	}
}

static bool pm_check_tree(const struct gm_pagemap *m, struct pm_check *chk)
{
	memset(chk, 0, sizeof(*chk));
	uintptr_t root = gm_load_relaxed(&((struct gm_pagemap *)m)->root);
	return !root || pm_check_node(root, 0, 64, 0, chk);
}

int gm_pagemap_validate(const struct gm_pagemap *map, const char **reason)
{
	const char *why = NULL;
	struct pm_check chk;
	if (!map)
		why = "NULL map";
	else if (!pm_check_tree(map, &chk))
		why = chk.reason;
	else if (chk.entries != gm_load_relaxed(&((struct gm_pagemap *)map)->count))
		why = "I5: count does not match the entries in the tree";
	else if (chk.bytes != gm_load_relaxed(&((struct gm_pagemap *)map)->bytes))
		why = "I5: bytes does not match the nodes in the tree";
	else if (chk.nodes[PM_TAG_BRANCH] != map->nodes[PM_TAG_BRANCH] ||
		 chk.nodes[PM_TAG_BITS] != map->nodes[PM_TAG_BITS] ||
		 chk.nodes[PM_TAG_FULL] != map->nodes[PM_TAG_FULL] ||
		 chk.nodes[PM_TAG_SORTED] != map->nodes[PM_TAG_SORTED])
		why = "I5: node counts do not match the tree";
	if (reason)
		*reason = why;
	return why ? -EINVAL : 0;
}

int gm_pagemap_stats(const struct gm_pagemap *map, struct gm_pagemap_stats *stats)
{
	if (!map || !stats)
		return -EINVAL;
	struct pm_check chk;
	pm_check_tree(map, &chk);
	stats->entries = gm_pagemap_count(map);
	stats->bytes = gm_load_relaxed(&((struct gm_pagemap *)map)->bytes);
	stats->branches = map->nodes[PM_TAG_BRANCH];
	stats->bitmap_leaves = map->nodes[PM_TAG_BITS] + map->nodes[PM_TAG_FULL];
	stats->sorted_leaves = map->nodes[PM_TAG_SORTED];
	stats->max_depth = chk.max_depth;
	return 0;
}
