/*
 * src/rmap.c — gm_rmap: one-word reverse-map heads, O(1) add and remove.
 * A multiset: add never looks for the pointer it adds.
 *
 *  head word (bit 5 .. bit 0)                    table: nb lines of 64 B
 *  +-------------+-----------+----+      line 0 +--------+----+---+----+
 *  | 0           |           | 00 | empty       | header | e  |...| e  |
 *  | entry ptr   |           | 00 |      line 1 +--------+----+---+----+
 *  | hashed tab  |min(nb,16)-1| 01 |             | e      | e  |...| e  |
 *  | linear tab  | c1 | k    | 1 c0|      ...    +--------+----+---+----+
 *  +-------------+-----------+----+             empty slot = 0
 *  linear: size class c1:c0 (bits 5, 0: nb = 1, 2, 4, 9), k = count mod 8
 *  (bits 2..4), bit 1 set
 *  header, linear table (nb <= 9):  m = count / 8 (full lines)
 *  header, hashed table (nb >= 10): two slots, both odd (never equal to
 *  an entry, never free): slot 0 = 2 count + 1 (low 32 bits) | nb << 32,
 *  slot 1 = limits: 2 shrink_at + 1 (low 32 bits) | max_count - 1 << 32
 *  hashed slot: pointer | (copies - 1) in its 2 tag bits
 *
 * Linear (1, 2, 4 or 9 lines: up to 71 entries, copies as separate
 * entries): count = 8 m + k, the newest k (<= 7) entries in line 0's
 * slots 1..k next to the header, lines 1..m full, the rest 0 (as KVM
 * keeps all but its head descriptor full). k lives in the head word, so
 * an add with k < 7 is one store into line 0 and one into the head word,
 * without reading the table; every 8th add moves line 0's 7 entries and
 * itself into line m + 1 (reading m from the header). Remove prefetches
 * the nb lines (known from the head word), scans lines 0..m and moves the
 * last entry (line 0's slot k, or line m's slot 7, line m's other 7 then
 * refilling line 0) into the hole; growing or shrinking among these sizes
 * is a copy, never a rehash. A fork storm, where every page grows 1..65
 * entries and back, stays in this form.
 *
 * Hashed (10+ lines): a bucketized cuckoo hash: pointer e has two
 * candidate lines b1, b2 (two halves of one 64-bit hash, each mapped onto
 * [0, nb) by a multiply-shift; b2 = b1 + 1 if they collide) and one slot
 * in one of them, whose tag bits count its copies (1..GM_RMAP_MAX_COPIES:
 * copies never crowd a line). So membership, add and remove read line 0
 * (header) and two lines. Add of a present pointer bumps its copies (or
 * fails with -ENOSPC at the limit); of a new one, puts it in its first
 * candidate line unless that is full; if both are full it moves one or two entries to their
 * other line (a path found before anything moves); if there is none, or
 * the table is 15/16 full (count includes copies), it rebuilds the table
 * one size up. Sizes 10, 11, ..., 16, then +1/8 each step, so a long
 * chain's table is 83..94% full after it has grown (8.5..9.6 B per
 * entry). The hash is one 64x64->128-bit multiply (both halves folded).
 * Entries of a hashed table never move on removal. A linear table grows
 * into a hashed one only if no pointer has more than GM_RMAP_MAX_COPIES
 * copies (else that add fails with -ENOSPC, nothing changed).
 *
 * The common hashed add and remove (no resize or request to the cache
 * due, no copies beyond the first, no cuckoo move) have short AVX2
 * versions chosen at load time: the fewer instructions an operation
 * takes, the more operations fit the CPU's out-of-order window and the
 * more of their cache misses overlap. Everything else, and every
 * operation on a CPU without AVX2, takes the portable functions.
 *
 * A table shrinks one size down when under 3/4 of the smaller size's
 * limit (linear tables: all slots; hashed: 15/16).
 *
 * Invariants (gm_rmap_validate checks all of them):
 *  I1  tables are 64-byte aligned; a hashed table's head word (tag 01)
 *      holds min(nb, 16) - 1 in bits 2..5, a linear one's (tag 1x) its
 *      size class and k = count mod 8.
 *  I2  every entry is non-NULL and 4-byte aligned; in a hashed table a
 *      pointer has one slot, holding 1..GM_RMAP_MAX_COPIES copies.
 *  I3  table: 1 <= nb <= MAX_LINES; linear iff nb <= 9; count >= 1 and
 *      equals the copies in the slots (header excluded); linear: count
 *      <= 8 nb - 1. count is >= 2 except after gm_rmap_iter_remove.
 *      hashed: the limits word matches nb (tab_limits).
 *  I4  hashed: every entry lies in one of its two candidate lines.
 *  I5  linear: count = 8 m + k; line 0's slots 1..k and lines 1..m hold
 *      entries, every other slot is 0.
 *
 * Allocation: add takes at most one table from the cache: a block (the
 * 2nd entry's one-line table), or a table of the next size to grow into
 * (checked before anything changes). The cache stocks tables of 2..16
 * lines by size (what recent adds took or will soon need) and one spare
 * larger table, so a storm of heads growing together rarely meets an
 * -ENOMEM. Remove only frees (into the cache), and shrinks only into
 * memory the cache already holds.
 */
#include <gmtrack/rmap.h>

#include <stdbool.h>
#include <string.h>

#include "internal.h"

#if defined(__SSE2__) && !defined(GM_RMAP_NO_SSE)
#include <emmintrin.h>
#endif

/* The common hashed add and remove have AVX2 versions (a 64-byte line
 * compared in two instructions), chosen at run time; without AVX2 (or
 * with GM_RMAP_NO_AVX2) every operation takes the portable path. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
	!defined(GM_RMAP_NO_AVX2)
#define RMAP_AVX2 1
#include <immintrin.h>
#define AVX2_FN static __attribute__((target("avx2,popcnt,bmi,bmi2"), noinline))
static inline bool have_avx2(void) { return gm_cpu_avx2_; }
#else
#define RMAP_AVX2 0
#endif

_Static_assert(sizeof(uintptr_t) == 8, "the table header packs two 32-bit fields");

#define TAG_MASK ((uintptr_t)3)
#define TAG_INLINE ((uintptr_t)0)
#define TAG_TAB ((uintptr_t)1)   /* any table: tag 01 (hashed) or 1x (linear) */
#define TAG_LIN ((uintptr_t)2)

#define SLOTS 8
#ifndef GM_RMAP_SHRINK_NUM
#define GM_RMAP_SHRINK_NUM 3
#endif
#define LINE 64
#define MAX_LINES ((uint32_t)1 << 28)

struct line {
	uintptr_t s[SLOTS];
};
_Static_assert(sizeof(struct line) == LINE, "a line is 64 B");
_Static_assert(GM_RMAP_BLOCK_SIZE == LINE, "a block is one line");

/* ---- head word and table header ------------------------------------------ */
/* TAG_INLINE (an entry or 0) or TAG_TAB (a table of either form). */
static inline uintptr_t tag_of(uintptr_t w) { return (w & TAG_MASK) != 0; }
static inline bool word_lin(uintptr_t w) { return w & TAG_LIN; }
static inline struct line *tab_of(uintptr_t w) { return (struct line *)(w & ~(uintptr_t)(LINE - 1)); }

static inline bool bad_entry(const void *p)
{
	return !p || ((uintptr_t)p & TAG_MASK);
}

/* Header (slot 0 of line 0). A hashed table: 2 count + 1 (low 32 bits) |
 * nb << 32 (and its limits word in slot 1). A linear table: m, its number of full lines (its count is 8 m + k,
 * k in the head word). */
static inline bool is_lin(uint32_t nb);
static inline uint32_t tab_nb(const struct line *t) { return (uint32_t)(t[0].s[0] >> 32); }

/* A linear table's head word: tag 1x, its size class (nb = 1, 2, 4, 9)
 * in bits 0 and 5, and k = count mod 8 (line 0's entries) in bits 2..4,
 * so the common add (k < 7) stores into line 0 without reading it first:
 * no load of the table on its path, and no branch on a table load. */
#define LIN_K_SHIFT 2
#define LIN_K_MASK ((uintptr_t)7 << LIN_K_SHIFT)
static inline uint32_t lin_k(uintptr_t w) { return (uint32_t)(w >> LIN_K_SHIFT) & 7; }
static const uint32_t lin_class_nb[4] = {1, 2, 4, 9};
static inline uint32_t lin_word_nb(uintptr_t w)
{
	return lin_class_nb[(w & 1) | (w >> 4 & 2)];
}
static inline uintptr_t lin_class_bits(uint32_t nb)
{
	uintptr_t cls = nb <= 1 ? 0 : nb <= 2 ? 1 : nb <= 4 ? 2 : 3;
	return (cls & 1) | (cls & 2) << 4;
}

/* Entries of the table t of head word w with nb lines. */
static inline uint32_t tab_count(uintptr_t w, const struct line *t, uint32_t nb)
{
	uintptr_t h = t[0].s[0];
	return is_lin(nb) ? (uint32_t)h * SLOTS + lin_k(w) : (uint32_t)h >> 1;
}
/* Sets the header for `count` entries (the head word is set apart, with
 * tab_word: a linear table's k is there). */
static inline uintptr_t tab_limits(uint32_t nb);
static inline void tab_set(struct line *t, uint32_t count, uint32_t nb)
{
	if (is_lin(nb)) {
		t[0].s[0] = count / SLOTS;
	} else {
		t[0].s[0] = (uintptr_t)count << 1 | 1 | (uintptr_t)nb << 32;
		t[0].s[1] = tab_limits(nb);
	}
}

/* A hashed table's head word holds min(nb, 16) - 1 in bits 2..5, so the
 * lines an entry may be in are known without reading line 0 first: the
 * loads of the header and of both candidate lines go out together. */
static inline uintptr_t tab_word(const struct line *t, uint32_t nb, uint32_t count)
{
	if (is_lin(nb))
		return (uintptr_t)t | TAG_LIN | lin_class_bits(nb) |
		       (uintptr_t)(count % SLOTS) << LIN_K_SHIFT;
	uintptr_t code = nb < 16 ? nb - 1 : 15;
	return (uintptr_t)t | code << 2 | TAG_TAB;
}

/* Lines of the table of head word w (the header is read only for tables
 * of 16+ lines, which are hashed). */
static inline uint32_t word_nb(uintptr_t w, const struct line *t)
{
	if (word_lin(w))
		return lin_word_nb(w);
	uint32_t code = (uint32_t)(w >> 2) & 15;
	return code < 15 ? code + 1 : tab_nb(t);
}

static inline size_t tab_bytes(uint32_t nb) { return (size_t)nb * LINE; }
/* Header slots at the start of line 0: a linear table's count word; a
 * hashed table's count word and its limits word (see tab_limits). */
static inline unsigned hdr_slots(uint32_t nb) { return is_lin(nb) ? 1 : 2; }
/* First entry slot of line li. */
static inline unsigned first_slot(uint32_t li, uint32_t nb) { return li ? 0 : hdr_slots(nb); }
static inline uint32_t tab_slots(uint32_t nb) { return nb * SLOTS - hdr_slots(nb); }

/* Tables of up to LIN_LINES lines are kept unhashed ("linear"): the
 * entries fill flat slots 1..count (line 0's slot 0 is the header) with
 * no holes, so add appends, remove scans the few lines and moves the
 * last entry into the hole, and growing or shrinking among these sizes
 * is a copy, not a rehash. */
#ifndef GM_RMAP_LIN_LINES
#define GM_RMAP_LIN_LINES 9
#endif
#define LIN_LINES ((uint32_t)GM_RMAP_LIN_LINES)
static inline bool is_lin(uint32_t nb) { return nb <= LIN_LINES; }
/* Lines a linear scan matches per branch (measured on the fork storm:
 * 2 beat 1 and 8). */
#define SCAN_GROUP 2u

/* Most entries a table of nb lines takes before it grows: all slots for
 * one or two lines (every entry may use every line), else 15/16. */
static inline uint32_t max_count(uint32_t nb)
{
	uint32_t s = tab_slots(nb);
	return nb <= 2 || is_lin(nb) ? s : s - s / 16;
}

/* Sizes: 1, 2, 4, 9 lines unhashed (a copy at each step; 9 lines take
 * 71 entries: a fork storm's 65 mappings per page), then 10, 11, ..., 16
 * hashed one line at a time, then +1/8 per step. */
static inline uint32_t next_nb(uint32_t nb)
{
	if (nb < 9)
		return nb < 2 ? 2 : nb < 4 ? 4 : 9;
	return nb < 16 ? nb + 1 : nb + nb / 8;
}

static inline uint32_t prev_nb(uint32_t nb)
{
	if (nb <= 9)
		return nb <= 2 ? 1 : nb <= 4 ? 2 : 4;
	return nb <= 17 ? nb - 1 : nb - nb / 9;
}


/* Shrink when the smaller size would be at most 3/4 of its limit. */
static inline uint32_t shrink_at(uint32_t nb) { return max_count(prev_nb(nb)) * GM_RMAP_SHRINK_NUM / 4; }

/* A hashed table's limits word (line 0's slot 1): 2 shrink_at(nb) + 1 in
 * the low 32 bits (encoded as the count word's low half, so the two
 * compare as they are), max_count(nb) - 1 above. The common add and
 * remove compare the count with one of them instead of computing it from
 * nb: counts from shrink_at + 1 to max_count - 2 before the operation
 * need neither a resize nor a request to the cache. Odd, as the count
 * word: a header slot never equals an entry (4-byte aligned) nor is free. */
static inline uintptr_t tab_limits(uint32_t nb)
{
	return (uintptr_t)shrink_at(nb) << 1 | 1 | (uintptr_t)(max_count(nb) - 1) << 32;
}
static inline uint32_t lim_shrink2(const struct line *t) { return (uint32_t)t[0].s[1]; }
static inline uint32_t lim_want(const struct line *t) { return (uint32_t)(t[0].s[1] >> 32); }

/* ---- hashing --------------------------------------------------------------- */
static inline uint64_t hash_ptr(uintptr_t x)
{
	/* one 64x64->128 multiply, both halves folded: every output bit
	 * depends on the pointer's low bits, where entries differ */
	unsigned __int128 p = (unsigned __int128)x * 0x9e3779b97f4a7c15ULL;
	return (uint64_t)(p >> 64) ^ (uint64_t)p;
}

/* The candidate lines of an untagged e in a table of nb >= 2 lines,
 * without branches (the AVX2 paths' line loads wait for no prediction). */
static inline void hlines_of(uintptr_t e, uint32_t nb, uint32_t *b1, uint32_t *b2)
{
	uint64_t h = hash_ptr(e);
	uint32_t a = (uint32_t)(((h & 0xffffffffu) * nb) >> 32);
	uint32_t b = (uint32_t)(((h >> 32) * nb) >> 32);
	uint32_t next = a + 1 == nb ? 0 : a + 1;
	*b1 = a;
	*b2 = b == a ? next : b;
}

static inline void lines_of(uintptr_t e, uint32_t nb, uint32_t *b1, uint32_t *b2)
{
	if (nb == 1) {
		*b1 = *b2 = 0;
		return;
	}
	hlines_of(e & ~TAG_MASK, nb, b1, b2);   /* a hashed slot's copies tag off */
}

/* The candidate line of e that is not `here`. */
static inline uint32_t other_line(uintptr_t e, uint32_t nb, uint32_t here)
{
	uint32_t b1, b2;
	lines_of(e, nb, &b1, &b2);
	return here == b1 ? b2 : b1;
}

/* ---- lines ------------------------------------------------------------------ */
/* Bit i set if (slot i & keep) == v. SSE2 (x86-64's baseline): four
 * 2-slot compares, 64-bit equality as both 32-bit halves equal, about
 * half the instructions of the scalar loop, so more operations fit the
 * out-of-order window and their misses overlap. */
static inline unsigned line_eq(const struct line *l, uintptr_t v, uintptr_t keep)
{
#if defined(__SSE2__) && !defined(GM_RMAP_NO_SSE)
	const __m128i ev = _mm_set1_epi64x((long long)v), kv = _mm_set1_epi64x((long long)keep);
	unsigned m = 0;
	for (unsigned q = 0; q < SLOTS / 2; q++) {
		__m128i x = _mm_and_si128(_mm_load_si128((const __m128i *)&l->s[2 * q]), kv);
		__m128i eq = _mm_cmpeq_epi32(x, ev);
		eq = _mm_and_si128(eq, _mm_shuffle_epi32(eq, _MM_SHUFFLE(2, 3, 0, 1)));
		m |= (unsigned)_mm_movemask_pd(_mm_castsi128_pd(eq)) << (2 * q);
	}
	return m;
#else
	unsigned m = 0;
	for (unsigned i = 0; i < SLOTS; i++)
		m |= (unsigned)((l->s[i] & keep) == v) << i;
	return m;
#endif
}

/* Bit i set if slot i holds v (line 0's header slot never matches). */
static inline unsigned line_match(const struct line *l, uintptr_t v, uint32_t li)
{
	unsigned m = line_eq(l, v, ~(uintptr_t)0);
	return li == 0 ? m & ~1u : m;
}

static inline unsigned pop8(unsigned x)
{
	x = x - ((x >> 1) & 0x55);
	x = (x & 0x33) + ((x >> 2) & 0x33);
	return (x + (x >> 4)) & 0x0f;
}

/* Bit i set if slot i of a hashed table holds pointer e (any copies). */
static inline unsigned hline_match(const struct line *l, uintptr_t e, uint32_t li)
{
	unsigned m = line_eq(l, e, ~TAG_MASK);
	return li == 0 ? m & ~3u : m;
}

/* Free slots; the header is never 0, so never free. */
static inline unsigned line_free(const struct line *l) { return line_match(l, 0, 1); }

/* Both lines are matched without a branch on the first: the entry is in
 * either about as often (no predictable branch), and a mispredicted branch
 * on a line just fetched would stop the CPU from starting the next
 * operation's loads early. */
static inline bool tab_find_at(const struct line *t, uintptr_t e, uint32_t b1,
			       uint32_t b2, uint32_t *li, unsigned *slot)
{
	unsigned m1 = hline_match(&t[b1], e, b1), m2 = hline_match(&t[b2], e, b2);
	unsigned m = m1 ? m1 : m2;
	*li = m1 ? b1 : b2;
	*slot = (unsigned)__builtin_ctz(m | 1u << SLOTS);
	return m != 0;
}

static bool tab_find(const struct line *t, uint32_t nb, uintptr_t e, uint32_t *li,
		     unsigned *slot)
{
	uint32_t b1, b2;
	lines_of(e, nb, &b1, &b2);
	return tab_find_at(t, e, b1, b2, li, slot);
}

static inline void put_free(struct line *l, uintptr_t e)
{
	l->s[__builtin_ctz(line_free(l))] = e;
}

/* ---- linear (unhashed) tables --------------------------------------------- */
_Static_assert(GM_RMAP_LIN_LINES == 9, "linear sizes are the classes 1, 2, 4, 9 lines");

static inline uintptr_t *flat(struct line *t) { return &t[0].s[0]; }

/* Flat index (1..) of e in the first `used` lines of a linear table, or
 * 0. Two lines per branch (slots past the count are 0 and never match):
 * the loop stops about halfway on average, and the predicted branches let
 * the loads of the following lines go out early anyway. */
static inline uint32_t lin_find(const struct line *t, uint32_t used, uintptr_t e)
{
	for (uint32_t base = 0; base < used; base += SCAN_GROUP) {
		uint32_t end = used - base < SCAN_GROUP ? used : base + SCAN_GROUP;
		uint64_t m = 0;
		for (uint32_t li = base; li < end; li++)
			m |= (uint64_t)line_match(&t[li], e, li) << ((li - base) * SLOTS);
		if (m)
			return base * SLOTS + (uint32_t)__builtin_ctzll(m);
	}
	return 0;
}

/* Linear layout: n = 8 m + k entries: k in line 0 (slots 1..k, next to
 * the header), lines 1..m full, the rest 0. An add writes line 0 only
 * (where the head word's k says), except every 8th, which
 * moves line 0's 7 entries and itself into line m + 1. */
static inline void lin_append(struct line *t, uint32_t n, uintptr_t e)
{
	uint32_t k = n % SLOTS, m = n / SLOTS;
	if (k < SLOTS - 1) {
		t[0].s[k + 1] = e;
		return;
	}
	memcpy(&t[m + 1].s[0], &t[0].s[1], (SLOTS - 1) * sizeof(uintptr_t));
	t[m + 1].s[SLOTS - 1] = e;
	memset(&t[0].s[1], 0, (SLOTS - 1) * sizeof(uintptr_t));
}

/* Removes flat slot f of a linear table holding n entries: the last
 * entry (line 0's slot k, or if k = 0 line m's slot 7) fills the hole;
 * if line 0 was empty, line m's 7 remaining entries then move into it. */
static inline void lin_take_out(struct line *t, uint32_t f, uint32_t n)
{
	uintptr_t *u = flat(t);
	uint32_t k = n % SLOTS, m = n / SLOTS;
	uint32_t last = k ? k : m * SLOTS + SLOTS - 1;
	u[f] = u[last];
	u[last] = 0;
	if (k)
		return;
	memcpy(&u[1], &u[m * SLOTS], (SLOTS - 1) * sizeof(uintptr_t));
	memset(&u[m * SLOTS], 0, (SLOTS - 1) * sizeof(uintptr_t));
}

/* Puts e (not present) into one of its lines, moving at most two other
 * entries to their other line along a path found before anything moves.
 * Returns false, with nothing changed, if there is no room that way. */
static bool tab_place_at(struct line *t, uint32_t nb, uintptr_t e, uint32_t b1, uint32_t b2)
{
	const uint32_t b[2] = {b1, b2};
	unsigned f0 = line_free(&t[b[0]]), f1 = line_free(&t[b[1]]);
	if (f0 | f1) {
		/* The first line unless it is full: after a rebuild (83% full)
		 * nearly every entry finds room there, and 3..6% of a long
		 * chain's entries end up in their second line (25% when the
		 * emptier line was taken unless much fuller), at the same table
		 * sizes; a remove then finds most entries in the one line it
		 * waits for. */
		uint32_t li = f0 ? b[0] : b[1];
		put_free(&t[li], e);
		return true;
	}
	for (int k = 0; k < 2; k++) {   /* move one entry x to its other line */
		for (unsigned i = first_slot(b[k], nb); i < SLOTS; i++) {
			uintptr_t x = t[b[k]].s[i];
			uint32_t ax = other_line(x, nb, b[k]);
			if (ax != b[k] && line_free(&t[ax])) {
				put_free(&t[ax], x);
				t[b[k]].s[i] = e;
				return true;
			}
		}
	}
	for (int k = 0; k < 2; k++) {   /* move x and, before it, one y */
		for (unsigned i = first_slot(b[k], nb); i < SLOTS; i++) {
			uintptr_t x = t[b[k]].s[i];
			uint32_t ax = other_line(x, nb, b[k]);
			if (ax == b[k])
				continue;
			for (unsigned j = first_slot(ax, nb); j < SLOTS; j++) {
				uintptr_t y = t[ax].s[j];
				uint32_t ay = other_line(y, nb, ax);
				if (ay != ax && line_free(&t[ay])) {
					put_free(&t[ay], y);
					t[ax].s[j] = x;
					t[b[k]].s[i] = e;
					return true;
				}
			}
		}
	}
	return false;
}

/* A hashed table keeps one slot per pointer, its copies - 1 in the slot's
 * tag bits: copies never crowd a pointer's two lines, so they change
 * nothing in how entries are placed. */
static inline uintptr_t slot_ptr(uintptr_t v) { return v & ~TAG_MASK; }
static inline uint32_t slot_copies(uintptr_t v) { return (uint32_t)(v & TAG_MASK) + 1; }
_Static_assert(GM_RMAP_MAX_COPIES == TAG_MASK + 1, "copies - 1 fit the tag bits");

/* Adds one copy of e to a hashed table that has e at lines b1, b2:
 * -ENOSPC if it has GM_RMAP_MAX_COPIES already, 1 if e was absent (the
 * caller places it), 0 if done. */
static inline int hash_copy(struct line *t, uintptr_t e, uint32_t b1, uint32_t b2)
{
	uint32_t li;
	unsigned slot;
	if (!tab_find_at(t, e, b1, b2, &li, &slot))
		return 1;
	if (slot_copies(t[li].s[slot]) >= GM_RMAP_MAX_COPIES)
		return -ENOSPC;
	t[li].s[slot]++;
	return 0;
}

/* Puts e into t, which holds n entries before (and n + 1 after: the
 * caller sets the header and head word): appended to a linear table,
 * placed in a hashed one. -EAGAIN if there is no room, -ENOSPC if a
 * hashed t already holds GM_RMAP_MAX_COPIES copies of e; nothing changed
 * on error. */
static inline int tab_put(struct line *t, uint32_t nb, uint32_t n, uintptr_t e)
{
	if (is_lin(nb)) {
		if (n >= tab_slots(nb))
			return -EAGAIN;
		lin_append(t, n, e);
		return 0;
	}
	uint32_t b1, b2;
	lines_of(e, nb, &b1, &b2);
	int rc = hash_copy(t, e, b1, b2);
	if (rc <= 0)
		return rc;
	return tab_place_at(t, nb, e, b1, b2) ? 0 : -EAGAIN;
}

/* Fills the empty table `to` (nb2 lines) with the n entries of `from`
 * (which must fit in a linear `to`) and sets its header. Linear to
 * linear is a copy; into a hashed table every entry is placed again.
 * 0, or (`to` is then garbage, `from` untouched) -EAGAIN if one did not
 * fit, -ENOSPC if a hashed `to` would hold more than GM_RMAP_MAX_COPIES
 * copies of one pointer. */
static int tab_rebuild(struct line *to, uint32_t nb2, const struct line *from,
		       uint32_t nb, uint32_t n)
{
	if (is_lin(nb2) && is_lin(nb)) {   /* a copy */
		size_t used = tab_bytes(n / SLOTS + 1);
		memcpy(to, from, used);
		memset((char *)to + used, 0, tab_bytes(nb2) - used);
		tab_set(to, n, nb2);
		return 0;
	}
	memset(to, 0, tab_bytes(nb2));
	tab_set(to, n, nb2);   /* first: a hashed header keeps its slot taken */
	uint32_t k = 0, lines = is_lin(nb) ? n / SLOTS + 1 : nb;
	for (uint32_t li = 0; li < lines; li++)
		for (unsigned i = first_slot(li, nb); i < SLOTS; i++) {
			uintptr_t v = from[li].s[i];
			if (!v)
				continue;
			/* a linear source has plain pointers (tag 0) */
			for (uint32_t c = slot_copies(v); c > 0; c--) {
				int rc = tab_put(to, nb2, k++, slot_ptr(v));
				if (rc)
					return rc;
			}
		}
	return 0;
}

/* ---- the cache -------------------------------------------------------------
 * One-line tables in `blocks`; tables of 2..GM_RMAP_SMALL_LINES lines in
 * small[nb] (free lists linked through their first word); one spare larger
 * table in `dir`. An add or remove that will need a size the cache lacks,
 * or that took the cache's table of a size, marks that size wanted, and
 * the next topup stocks it. */
static inline bool is_small(uint32_t nb) { return nb <= GM_RMAP_SMALL_LINES; }

static struct line *cache_take(struct gm_rmap_cache *c)
{
	struct line *b = c->blocks;
	c->blocks = (void *)b->s[0];
	c->nblocks--;
	return b;
}

static void cache_put(struct gm_rmap_cache *c, void *p)
{
	if (c->nblocks >= GM_RMAP_CACHE_KEEP) {
		gm_alloc_release(c->alloc, p, GM_RMAP_BLOCK_SIZE);
		return;
	}
	struct line *b = p;
	b->s[0] = (uintptr_t)c->blocks;
	c->blocks = b;
	c->nblocks++;
}

static struct line *small_take(struct gm_rmap_cache *c, uint32_t nb)
{
	struct line *t = c->small[nb];
	c->small[nb] = (void *)t->s[0];
	c->nsmall[nb]--;
	return t;
}

static void small_push(struct gm_rmap_cache *c, struct line *t, uint32_t nb)
{
	t->s[0] = (uintptr_t)c->small[nb];
	c->small[nb] = t;
	c->nsmall[nb]++;
}

/* Gives a table's memory back: to the cache's stock of its size, or (a
 * large table, or the stock full) to the allocator. */
static void tab_free(struct gm_rmap_cache *c, struct line *t, uint32_t nb)
{
	if (nb == 1)
		cache_put(c, t);
	else if (is_small(nb) && c->nsmall[nb] < GM_RMAP_SMALL_KEEP)
		small_push(c, t, nb);
	else
		gm_alloc_release(c->alloc, t, tab_bytes(nb));
}

/* Asks the next topup for a table of nb lines. */
static inline void want(struct gm_rmap_cache *c, uint32_t nb)
{
	if (nb <= 1)
		return;
	if (is_small(nb))
		c->small_want |= (uint32_t)1 << nb;
	else
		c->dir_want = tab_bytes(nb);
}

/* A table of lo..hi lines (hi >= 2) from the cache (it leaves the cache;
 * a small size taken is marked wanted so topup restocks it), or NULL. */
static struct line *spare_take(struct gm_rmap_cache *c, uint32_t lo, uint32_t hi,
			       uint32_t *nb)
{
	for (uint32_t k = lo < 2 ? 2 : lo; k <= hi && is_small(k); k++)
		if (c->nsmall[k]) {
			c->small_want |= (uint32_t)1 << k;
			*nb = k;
			return small_take(c, k);
		}
	uint32_t have = (uint32_t)(c->dir_bytes / LINE);
	if (!c->dir || have < lo || have > hi)
		return NULL;
	struct line *t = c->dir;
	c->dir = NULL;
	c->dir_bytes = 0;
	if (c->dir_want == tab_bytes(have))
		c->dir_want = 0;
	*nb = have;
	return t;
}

/* Puts a table taken by spare_take back (a rebuild into it failed). */
static void spare_return(struct gm_rmap_cache *c, struct line *t, uint32_t nb)
{
	if (is_small(nb)) {
		small_push(c, t, nb);
		return;
	}
	c->dir = t;
	c->dir_bytes = tab_bytes(nb);
}

int gm_rmap_cache_create(struct gm_rmap_cache **out, unsigned flags,
			 const struct gm_allocator *a)
{
	if (!out || flags)
		return -EINVAL;
	struct gm_rmap_cache *c = gm_alloc_mem(a, sizeof(*c), _Alignof(struct gm_rmap_cache));
	if (!c)
		return -ENOMEM;
	gm_rmap_cache_init_(c, a);
	*out = c;
	return 0;
}

void gm_rmap_cache_init_(struct gm_rmap_cache *c, const struct gm_allocator *a)
{
	memset(c, 0, sizeof(*c));
	c->alloc = a;
}

/* True if topup(c, n) has nothing to do. */
static inline bool cache_ready(const struct gm_rmap_cache *c, size_t n)
{
	return c->nblocks >= n && !c->small_want &&
	       (!c->dir_want || c->dir_want == c->dir_bytes);
}

/* The allocating part of topup, out of line: the O(1) check before every
 * add then needs no stack frame (its register saves would be stores
 * queued behind the previous adds' store misses). */
static __attribute__((noinline)) int cache_fill(struct gm_rmap_cache *c, size_t n)
{
	size_t had = c->nblocks;
	uint32_t had_small[GM_RMAP_SMALL_LINES + 1];
	memcpy(had_small, c->nsmall, sizeof(had_small));
	while (c->nblocks < n) {
		struct line *b = gm_alloc_mem(c->alloc, GM_RMAP_BLOCK_SIZE, LINE);
		if (!b)
			goto fail;
		b->s[0] = (uintptr_t)c->blocks;
		c->blocks = b;
		c->nblocks++;
	}
	size_t stock = n < 1 ? 1 : n > GM_RMAP_SMALL_KEEP ? GM_RMAP_SMALL_KEEP : n;
	for (uint32_t k = 2; k <= GM_RMAP_SMALL_LINES; k++) {
		if (!(c->small_want >> k & 1))
			continue;
		while (c->nsmall[k] < stock) {
			struct line *t = gm_alloc_mem(c->alloc, tab_bytes(k), LINE);
			if (!t)
				goto fail;
			small_push(c, t, k);
		}
	}
	if (c->dir_want && c->dir_want != c->dir_bytes) {
		void *d = gm_alloc_mem(c->alloc, c->dir_want, LINE);
		if (!d)
			goto fail;
		if (c->dir)
			gm_alloc_release(c->alloc, c->dir, c->dir_bytes);
		c->dir = d;
		c->dir_bytes = c->dir_want;
	}
	c->dir_want = 0;
	c->small_want = 0;
	return 0;
fail:   /* give back exactly what this call took */
	while (c->nblocks > had)
		gm_alloc_release(c->alloc, cache_take(c), GM_RMAP_BLOCK_SIZE);
	for (uint32_t k = 2; k <= GM_RMAP_SMALL_LINES; k++)
		while (c->nsmall[k] > had_small[k])
			gm_alloc_release(c->alloc, small_take(c, k), tab_bytes(k));
	return -ENOMEM;
}

int gm_rmap_cache_topup(struct gm_rmap_cache *c, size_t n)
{
	if (!c || n > GM_RMAP_TOPUP_MAX)
		return -EINVAL;
	if (cache_ready(c, n))
		return 0;
	return cache_fill(c, n);
}

size_t gm_rmap_cache_bytes(const struct gm_rmap_cache *c)
{
	if (!c)
		return 0;
	size_t b = sizeof(*c) + c->nblocks * GM_RMAP_BLOCK_SIZE + c->dir_bytes;
	for (uint32_t k = 2; k <= GM_RMAP_SMALL_LINES; k++)
		b += c->nsmall[k] * tab_bytes(k);
	return b;
}

void gm_rmap_cache_destroy(struct gm_rmap_cache *c)
{
	if (!c)
		return;
	gm_rmap_cache_fini_(c);
	gm_alloc_release(c->alloc, c, sizeof(*c));
}

void gm_rmap_cache_fini_(struct gm_rmap_cache *c)
{
	while (c->nblocks)
		gm_alloc_release(c->alloc, cache_take(c), GM_RMAP_BLOCK_SIZE);
	for (uint32_t k = 2; k <= GM_RMAP_SMALL_LINES; k++)
		while (c->nsmall[k])
			gm_alloc_release(c->alloc, small_take(c, k), tab_bytes(k));
	if (c->dir)
		gm_alloc_release(c->alloc, c->dir, c->dir_bytes);
	c->dir = NULL;
	c->dir_bytes = 0;
	c->dir_want = 0;
	c->small_want = 0;
}


#if RMAP_AVX2
/* ---- the common hashed add and remove, AVX2 -------------------------------
 * Short paths for what nearly every hashed operation is: a remove of a
 * pointer with one slot that leaves the table above its shrink limit, an
 * add of a pointer not there into a candidate line with room, well under
 * the growth limit. Both candidate lines are compared at once (16 slots,
 * four 32-byte compares) and anything else — copies beyond the first, a
 * cuckoo move, a resize, a request to the cache — goes to the portable
 * function, behind one predicted branch. The fewer instructions an
 * operation takes, the more of them fit the out-of-order window and the
 * more of their cache misses overlap. */

static inline __attribute__((target("avx2"), always_inline)) __m256i bcast_avx2(uintptr_t v)
{
	return _mm256_broadcastq_epi64(_mm_cvtsi64_si128((long long)v));
}

/* Bit i (0..7: line a, 8..15: line b) set if slot i of the (loaded,
 * maybe masked) lines a (a0, a1) and b equals v. */
static inline __attribute__((target("avx2,popcnt,bmi,bmi2"), always_inline)) unsigned
lines_eq_avx2(__m256i a0, __m256i a1, __m256i b0, __m256i b1, uintptr_t v)
{
	const __m256i ev = bcast_avx2(v);
	unsigned m = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(a0, ev)));
	m |= (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(a1, ev))) << 4;
	m |= (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(b0, ev))) << 8;
	m |= (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(b1, ev))) << 12;
	return m;
}

#define LOAD_ALL(p) _mm256_load_si256((const __m256i *)(p))
#define LOAD_MASKED(p, keep) _mm256_and_si256(LOAD_ALL(p), keep)
#endif

/* ---- add -------------------------------------------------------------------- */
/* Rebuilds t (n entries) one size up with e added, in the cache's spare
 * table. */
static int tab_grow(struct gm_rmap_head *h, struct line *t, uint32_t nb, uint32_t n,
		    uintptr_t e, struct gm_rmap_cache *c)
{
	uint32_t up = next_nb(nb), nb2;
	if (up > MAX_LINES)
		return -ENOSPC;
	/* Any size from one up to three up; a size whose rebuild failed
	 * (unlucky hashes) is skipped, so a retry after topup goes on to the
	 * larger size that failure asked for. A table that grows into a
	 * linear size stays linear (a copy never fails): a hashed spare
	 * would refuse copies rmap.h promises an unhashed table takes. */
	uint32_t lo = up, hi = next_nb(next_nb(up));
	if (is_lin(up) && hi > LIN_LINES)
		hi = LIN_LINES;
	for (;;) {
		struct line *t2 = spare_take(c, lo, hi, &nb2);
		if (!t2) {
			want(c, lo);
			return -ENOMEM;
		}
		int rc = tab_rebuild(t2, nb2, t, nb, n);
		if (!rc)
			rc = tab_put(t2, nb2, n, e);
		if (!rc) {
			tab_set(t2, n + 1, nb2);
			h->word = tab_word(t2, nb2, n + 1);
			tab_free(c, t, nb);
			/* a linear table born 7 or fewer adds from full (two
			 * lines: 8 of 15) asks now for the size after it */
			if (is_lin(nb2) && n + 1 + SLOTS > tab_slots(nb2))
				want(c, next_nb(nb2));
			return 0;
		}
		spare_return(c, t2, nb2);
		if (rc == -ENOSPC)
			return rc;   /* too many copies of one pointer to hash */
		lo = next_nb(nb2);
		if (lo > hi || lo > MAX_LINES)
			return -ENOSPC;   /* three sizes up failed: hashes far off */
	}
}

/* Linear: appends without looking at the entries (a multiset). While line
 * 0 has room (k < 7) the head word alone says where: one store into line
 * 0 and the new k into the head word. The 8th moves line 0's 7 entries
 * and e into line m + 1 (m read from the header) or grows the table. */
static __attribute__((noinline)) int lin_add_line(struct gm_rmap_head *h, uintptr_t w,
						       uintptr_t e, struct gm_rmap_cache *c)
{
	struct line *t = tab_of(w);
	uint32_t k = lin_k(w), nb = lin_word_nb(w);
	uint32_t m = (uint32_t)t[0].s[0], n = m * SLOTS + k;
	if (m + 1 < nb) {
		lin_append(t, n, e);
		t[0].s[0] = m + 1;
		h->word = w & ~LIN_K_MASK;
		if (m + 2 == nb)
			want(c, next_nb(nb));   /* 7 adds from full */
		return 0;
	}
	return tab_grow(h, t, nb, n, e, c);
}

static inline int lin_add(struct gm_rmap_head *h, uintptr_t w, uintptr_t e,
			  struct gm_rmap_cache *c)
{
	struct line *t = tab_of(w);
	uint32_t k = lin_k(w);
	if (__builtin_expect(k < SLOTS - 1, 1)) {
		/* a prefetch for writing starts the miss when this executes,
		 * not when the store commits: consecutive adds overlap */
		__builtin_prefetch(&t[0].s[k + 1], 1, 3);
		t[0].s[k + 1] = e;
		h->word = w + ((uintptr_t)1 << LIN_K_SHIFT);
		if (k + 2 == SLOTS && lin_word_nb(w) == 1)
			want(c, next_nb(1));   /* full: the next add grows */
		return 0;
	}
	return lin_add_line(h, w, e, c);
}

/* Hashed: e goes into one of its two candidate lines, read anyway to
 * count its copies there (all of them are there). */
static __attribute__((noinline)) int hash_add(struct gm_rmap_head *h, struct line *t, uint32_t nb, uintptr_t e,
		    struct gm_rmap_cache *c)
{
	uint32_t n = tab_count(h->word, t, nb), b1, b2;
	if (n >= INT32_MAX)
		return -ENOSPC;
	lines_of(e, nb, &b1, &b2);
	int rc = hash_copy(t, e, b1, b2);
	if (rc <= 0) {
		if (rc == 0)
			tab_set(t, n + 1, nb);
		return rc;
	}
	uint32_t most = max_count(nb);
	if (n < most) {
		if (n + 2 > most)
			want(c, next_nb(nb));   /* so the next add finds it */
		if (tab_place_at(t, nb, e, b1, b2)) {
			tab_set(t, n + 1, nb);
			return 0;
		}
	}
	return tab_grow(h, t, nb, n, e, c);
}

/* A second entry (maybe a copy of the first): a one-line table. */
static __attribute__((noinline)) int inline_to_tab(struct gm_rmap_head *h, uintptr_t w,
						   uintptr_t e, struct gm_rmap_cache *c)
{
	if (c->nblocks < 1)
		return -ENOMEM;
	struct line *t = cache_take(c);
	memset(t, 0, LINE);
	t->s[1] = w;
	t->s[2] = e;
	h->word = tab_word(t, 1, 2);
	return 0;
}

#if RMAP_AVX2
AVX2_FN int hash_add_avx2(struct gm_rmap_head *h, uintptr_t w, uintptr_t e,
			  struct gm_rmap_cache *c)
{
	struct line *t = tab_of(w);
	uintptr_t hdr = t[0].s[0];
	uint32_t nb = (uint32_t)(hdr >> 32), b1, b2;
	if (__builtin_expect(((uint32_t)hdr >> 1) >= lim_want(t), 0))
		return hash_add(h, t, nb, e, c);
	hlines_of(e, nb, &b1, &b2);
	const __m256i keep = bcast_avx2(~TAG_MASK);
	__m256i a0 = LOAD_MASKED(&t[b1].s[0], keep), a1 = LOAD_MASKED(&t[b1].s[4], keep);
	__m256i x0 = LOAD_MASKED(&t[b2].s[0], keep), x1 = LOAD_MASKED(&t[b2].s[4], keep);
	/* the header slots are never free, and if one looks like e the
	 * portable path sorts it out */
	const __m256i ev = bcast_avx2(e);
	__m256i there = _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi64(a0, ev), _mm256_cmpeq_epi64(a1, ev)),
					_mm256_or_si256(_mm256_cmpeq_epi64(x0, ev), _mm256_cmpeq_epi64(x1, ev)));
	unsigned room = lines_eq_avx2(a0, a1, x0, x1, 0);
	if (__builtin_expect(!_mm256_testz_si256(there, there) || !room, 0))
		return hash_add(h, t, nb, e, c);   /* a copy, or a cuckoo move */
	/* as tab_place_at: the first line unless it is full */
	unsigned bit = (unsigned)__builtin_ctz(room);
	t[bit < SLOTS ? b1 : b2].s[bit % SLOTS] = e;
	t[0].s[0] = hdr + 2;
	return 0;
}
#endif

int gm_rmap_add(struct gm_rmap_head *h, void *ptr, struct gm_rmap_cache *c)
{
	if (!h || !c || bad_entry(ptr))
		return -EINVAL;
	uintptr_t w = h->word, e = (uintptr_t)ptr;
	if (word_lin(w))
		return lin_add(h, w, e, c);
	if (tag_of(w) == TAG_TAB) {
#if RMAP_AVX2
		if (have_avx2())
			return hash_add_avx2(h, w, e, c);
#endif
		return hash_add(h, tab_of(w), word_nb(w, tab_of(w)), e, c);
	}
	if (w == 0) {
		h->word = e;
		return 0;
	}
	return inline_to_tab(h, w, e, c);
}

/* ---- remove ----------------------------------------------------------------- */
/* A table left with <= 1 entry goes inline (or empty) and is freed. */
static void tab_to_inline(struct gm_rmap_head *h, struct line *t, uint32_t nb,
			  struct gm_rmap_cache *c)
{
	uintptr_t left = 0;
	for (uint32_t li = 0; li < nb && !left; li++)
		for (unsigned i = first_slot(li, nb); i < SLOTS; i++)
			left |= t[li].s[i];   /* at most one is non-zero */
	h->word = left;
	tab_free(c, t, nb);
}

/* Rebuilds t (n entries) one size down if the cache holds the memory;
 * else asks. */
static void tab_shrink(struct gm_rmap_head *h, struct line *t, uint32_t nb, uint32_t n,
		       struct gm_rmap_cache *c)
{
	uint32_t down = prev_nb(nb), nb2 = 1;
	struct line *t2;
	if (down == 1) {
		if (c->nblocks < 1)
			return;
		t2 = cache_take(c);
	} else {
		t2 = spare_take(c, down, nb - 1, &nb2);
		if (!t2) {
			if (is_small(down) || !c->dir_want)   /* a growth's want first */
				want(c, down);
			return;
		}
	}
	if (tab_rebuild(t2, nb2, t, nb, n)) {
		if (nb2 == 1)
			cache_put(c, t2);
		else
			spare_return(c, t2, nb2);
		return;
	}
	h->word = tab_word(t2, nb2, n);
	tab_free(c, t, nb);
}

/* After a removal left n entries in t: back inline (n <= 1), or one size
 * down when the cache has the table; the header and head word are set. */
static __attribute__((noinline)) void tab_after_remove(struct gm_rmap_head *h, struct line *t,
							uint32_t nb, uint32_t n,
							struct gm_rmap_cache *c)
{
	if (n <= 1) {
		tab_to_inline(h, t, nb, c);
		return;
	}
	tab_set(t, n, nb);
	h->word = tab_word(t, nb, n);
	tab_shrink(h, t, nb, n, c);
}

/* Linear: all lines the scan may read (nb, from the head word) are
 * requested at once, so their misses overlap instead of waiting for the
 * header (the scan's bound) and for each group's branch; the first copy
 * found is taken out, the last entry filling its slot. */
static __attribute__((noinline)) int lin_remove(struct gm_rmap_head *h, uintptr_t w,
						uintptr_t e, struct gm_rmap_cache *c)
{
	struct line *t = tab_of(w);
	uint32_t nb = lin_word_nb(w);
	for (uint32_t li = 0; li < nb; li++)
		__builtin_prefetch(&t[li]);
	uint32_t m = (uint32_t)t[0].s[0], n = m * SLOTS + lin_k(w);
	uint32_t i = lin_find(t, m + 1, e);
	if (!i)
		return -ENOENT;
	lin_take_out(t, i, n);
	n--;
	if (__builtin_expect(n <= 1 || (nb > 1 && n <= shrink_at(nb)), 0)) {
		tab_after_remove(h, t, nb, n, c);
		return 0;
	}
	t[0].s[0] = n / SLOTS;
	h->word = (w & ~LIN_K_MASK) | (uintptr_t)(n % SLOTS) << LIN_K_SHIFT;
	return 0;
}

static __attribute__((noinline)) int hash_remove(struct gm_rmap_head *h, uintptr_t w,
						 uintptr_t e, struct gm_rmap_cache *c)
{
	struct line *t = tab_of(w);
	uint32_t li, nb = word_nb(w, t), n = tab_count(w, t, nb);
	unsigned slot;
	if (!tab_find(t, nb, e, &li, &slot))
		return -ENOENT;
	uintptr_t v = t[li].s[slot];
	t[li].s[slot] = slot_copies(v) > 1 ? v - 1 : 0;   /* one copy */
	n--;
	if (__builtin_expect(n <= 1 || n <= shrink_at(nb), 0)) {
		tab_after_remove(h, t, nb, n, c);
		return 0;
	}
	tab_set(t, n, nb);
	return 0;
}

#if RMAP_AVX2
AVX2_FN int hash_remove_avx2(struct gm_rmap_head *h, uintptr_t w, uintptr_t e,
			     struct gm_rmap_cache *c)
{
	struct line *t = tab_of(w);
	uintptr_t hdr = t[0].s[0];
	uint32_t nb = (uint32_t)(hdr >> 32), b1, b2;
	if (__builtin_expect((uint32_t)hdr - 2 <= lim_shrink2(t), 0))
		return hash_remove(h, h->word, e, c);   /* it will shrink */
	hlines_of(e, nb, &b1, &b2);
	/* Slots equal to e itself: e with one copy (the header slots are
	 * odd, never equal); more copies, or none, take the portable path.
	 * Line b1 first (all but 3..6% of a long chain's entries are there, see
	 * tab_place_at), b2 only requested (a prefetch does not hold the
	 * operation up until it arrives): with cold tables most removes then
	 * wait for one line, not for the later of two (rmap_fork, chain
	 * 100000: 32-36 -> 30-33 ns). The line is written back whole with
	 * the match cleared: the stores' addresses are known before the line
	 * arrives, so the next operation's loads need not wait to learn that
	 * they do not overlap (medians of 6 interleaved runs: 16.3 -> 15.1 ns
	 * against one 8-byte store at the matched slot). */
	__builtin_prefetch(&t[b2], 1, 3);
	const __m256i ev = bcast_avx2(e);
	__m256i *p = (__m256i *)&t[b1];
	__m256i x0 = _mm256_load_si256(p), x1 = _mm256_load_si256(p + 1);
	__m256i q0 = _mm256_cmpeq_epi64(x0, ev), q1 = _mm256_cmpeq_epi64(x1, ev);
	__m256i q = _mm256_or_si256(q0, q1);
	if (_mm256_testz_si256(q, q)) {
		p = (__m256i *)&t[b2];
		x0 = _mm256_load_si256(p);
		x1 = _mm256_load_si256(p + 1);
		q0 = _mm256_cmpeq_epi64(x0, ev);
		q1 = _mm256_cmpeq_epi64(x1, ev);
		q = _mm256_or_si256(q0, q1);
		if (__builtin_expect(_mm256_testz_si256(q, q), 0))
			return hash_remove(h, h->word, e, c);
	}
	_mm256_store_si256(p, _mm256_andnot_si256(q0, x0));
	_mm256_store_si256(p + 1, _mm256_andnot_si256(q1, x1));
	t[0].s[0] = hdr - 2;
	return 0;
}
#endif

int gm_rmap_remove(struct gm_rmap_head *h, void *ptr, struct gm_rmap_cache *c)
{
	if (!h || !c || bad_entry(ptr))
		return -EINVAL;
	uintptr_t w = h->word, e = (uintptr_t)ptr;
	if (word_lin(w))
		return lin_remove(h, w, e, c);
	if (tag_of(w) == TAG_TAB) {
#if RMAP_AVX2
		if (have_avx2())
			return hash_remove_avx2(h, w, e, c);
#endif
		return hash_remove(h, w, e, c);
	}
	if (w == 0 || w != e)
		return -ENOENT;
	h->word = 0;
	return 0;
}

bool gm_rmap_contains(const struct gm_rmap_head *h, const void *ptr)
{
	if (!h || bad_entry(ptr))
		return false;
	uintptr_t w = h->word;
	uint32_t li;
	unsigned slot;
	switch (tag_of(w)) {
	case TAG_INLINE:
		return w != 0 && w == (uintptr_t)ptr;
	case TAG_TAB: {
		uint32_t nb = word_nb(w, tab_of(w));
		if (is_lin(nb))
			return lin_find(tab_of(w), nb, (uintptr_t)ptr) != 0;
		return tab_find(tab_of(w), nb, (uintptr_t)ptr, &li, &slot);
	}
	}
	return false;
}

uint64_t gm_rmap_count(const struct gm_rmap_head *h)
{
	uintptr_t w = h ? h->word : 0;
	switch (tag_of(w)) {
	case TAG_INLINE:
		return w != 0;
	case TAG_TAB:
		return tab_count(w, tab_of(w), word_nb(w, tab_of(w)));
	}
	return 0;
}

/* ---- iteration ------------------------------------------------------------
 * Hashed: lines from the last down, slots from the last down;
 * gm_rmap_iter_remove zeroes the slot. Linear: see lin_iter_step; a
 * removal moves an already walked entry into the hole (and when line m's
 * unwalked entries move into line 0, the walk follows them there), so no
 * entry is skipped or seen twice.
 */
/* Linear tables: line 0 first (slots down to 1), then lines it->resume
 * (m) down to 1 (FORM_LINR), so the entry a removal moves into the hole
 * (line 0's last, or line m's slot 7) was always walked already. */
#define FORM_LIN0 16
#define FORM_LINR 17

static void *lin_iter_step(struct gm_rmap_iter *it)
{
	const struct line *t = it->tab;
	if (it->form == FORM_LIN0) {
		while (it->idx > 1) {
			uintptr_t v = t[0].s[--it->idx];
			if (v)
				return it->cur = (void *)v;
		}
		it->form = FORM_LINR;
		it->line = it->resume + 1;
		it->idx = 0;
	}
	for (;;) {
		while (it->idx > 0) {
			uintptr_t v = t[it->line].s[--it->idx];
			if (v)
				return it->cur = (void *)v;
		}
		if (it->line <= 1)
			break;
		it->line--;
		it->idx = SLOTS;
	}
	it->tab = NULL;
	it->form = GM_RMAP_EMPTY;
	return it->cur = NULL;
}

static void *iter_step(struct gm_rmap_iter *it)
{
	const struct line *t = it->tab;
	if (it->form != GM_RMAP_HASH)
		return lin_iter_step(it);
	if (it->resume) {   /* the current slot's next copy */
		it->resume--;
		return it->cur = (void *)slot_ptr(t[it->line].s[it->idx]);
	}
	while (t) {
		while (it->idx > (it->line == 0 ? 2u : 0u)) {
			uintptr_t v = t[it->line].s[--it->idx];
			if (v) {
				it->resume = slot_copies(v) - 1;
				return it->cur = (void *)slot_ptr(v);
			}
		}
		if (it->line == 0)
			break;
		it->line--;
		it->idx = SLOTS;
	}
	it->tab = NULL;
	it->form = GM_RMAP_EMPTY;
	return it->cur = NULL;
}

static void *iter_first(struct gm_rmap_iter *it, struct gm_rmap_head *h)
{
	memset(it, 0, sizeof(*it));
	it->head = h;
	uintptr_t w = h ? h->word : 0;
	switch (tag_of(w)) {
	case TAG_INLINE:
		it->form = w ? GM_RMAP_INLINE : GM_RMAP_EMPTY;
		return it->cur = (void *)w;
	case TAG_TAB: {
		uint32_t nb = word_nb(w, tab_of(w));
		it->tab = tab_of(w);
		it->idx = SLOTS;
		if (is_lin(nb)) {
			it->form = FORM_LIN0;
			it->line = 0;
			it->resume = tab_count(w, it->tab, nb) / SLOTS;   /* m */
		} else {
			it->form = GM_RMAP_HASH;
			it->line = nb - 1;
		}
		return iter_step(it);
	}
	}
	return NULL;
}

static void *iter_after(struct gm_rmap_iter *it)
{
	if (it->form != GM_RMAP_HASH && it->form != FORM_LIN0 && it->form != FORM_LINR) {
		it->form = GM_RMAP_EMPTY;
		return it->cur = NULL;
	}
	return iter_step(it);
}

/* iter_init finds the first entry at once and keeps it in cur, marked
 * fresh: the first iter_next hands it out. */
int gm_rmap_iter_init(struct gm_rmap_iter *it, struct gm_rmap_head *head)
{
	if (!it)
		return -EINVAL;
	if (!head) {
		memset(it, 0, sizeof(*it));
		return -EINVAL;
	}
	iter_first(it, head);
	it->fresh = 1;
	return 0;
}

int gm_rmap_iter_next(struct gm_rmap_iter *it, void **ptr)
{
	if (!it || !ptr)
		return -EINVAL;
	void *p = it->fresh ? it->cur : (it->head ? iter_after(it) : NULL);
	it->fresh = 0;
	if (!p)
		return -ENOENT;
	*ptr = p;
	return 0;
}

int gm_rmap_iter_remove(struct gm_rmap_iter *it, struct gm_rmap_cache *c)
{
	if (!it || !c || !it->cur || it->fresh)
		return -EINVAL;
	struct gm_rmap_head *h = it->head;
	it->cur = NULL;
	switch (it->form) {
	case GM_RMAP_INLINE:
		h->word = 0;
		it->form = GM_RMAP_EMPTY;
		return 0;
	case GM_RMAP_HASH:
	case FORM_LIN0:
	case FORM_LINR: {
		struct line *t = it->tab;
		uint32_t nb = word_nb(h->word, t), n = tab_count(h->word, t, nb) - 1;
		if (!is_lin(nb)) {   /* one copy (the walk's resume counts the rest) */
			uintptr_t v = t[it->line].s[it->idx];
			t[it->line].s[it->idx] = slot_copies(v) > 1 ? v - 1 : 0;
		} else {   /* the last entry (already walked) fills the hole */
			uint32_t m = (n + 1) / SLOTS;
			bool refill = (n + 1) % SLOTS == 0;
			lin_take_out(t, it->line * SLOTS + it->idx, n + 1);
			if (refill && it->form == FORM_LINR && it->line == m) {
				/* line m's unwalked slots 0..idx-1 moved to line 0's
				 * 1..idx: walk them there, then lines m-1..1 */
				it->form = FORM_LIN0;
				it->idx = it->idx + 1;
				it->line = 0;
				it->resume = m - 1;
			}
		}
		if (n == 0) {
			tab_free(c, t, nb);
			h->word = 0;
			it->tab = NULL;
			it->form = GM_RMAP_EMPTY;
			return 0;
		}
		tab_set(t, n, nb);
		h->word = tab_word(t, nb, n);
		return 0;
	}
	}
	return -EINVAL;
}

void gm_rmap_clear(struct gm_rmap_head *h, struct gm_rmap_cache *c,
		   void (*cb)(void *ctx, void *ptr), void *ctx)
{
	if (!h || !c)
		return;
	uintptr_t w = h->word;
	h->word = 0;
	switch (tag_of(w)) {
	case TAG_INLINE:
		if (w && cb)
			cb(ctx, (void *)w);
		return;
	case TAG_TAB: {
		struct line *t = tab_of(w);
		uint32_t nb = word_nb(w, t);
		uint32_t lines = is_lin(nb) ? tab_count(w, t, nb) / SLOTS + 1 : nb;
		for (uint32_t li = 0; cb && li < lines; li++)
			for (unsigned i = first_slot(li, nb); i < SLOTS; i++)
				if (t[li].s[i])
					for (uint32_t k = slot_copies(t[li].s[i]); k > 0; k--)
						cb(ctx, (void *)slot_ptr(t[li].s[i]));
		tab_free(c, t, nb);
		return;
	}
	}
}

int gm_rmap_stats(const struct gm_rmap_head *h, struct gm_rmap_stats *st)
{
	if (!h || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	uintptr_t w = h->word;
	switch (tag_of(w)) {
	case TAG_INLINE:
		st->form = w ? GM_RMAP_INLINE : GM_RMAP_EMPTY;
		st->count = w != 0;
		return 0;
	case TAG_TAB: {
		const struct line *t = tab_of(w);
		uint32_t nb = word_nb(w, t);
		st->form = nb == 1 ? GM_RMAP_SMALL : is_lin(nb) ? GM_RMAP_LIST : GM_RMAP_HASH;
		st->count = tab_count(w, t, nb);
		st->lines = nb;
		st->slots = tab_slots(nb);
		st->bytes = tab_bytes(nb);
		for (uint32_t li = 0; li < nb; li++)
			for (unsigned i = first_slot(li, nb); i < SLOTS; i++) {
				uint32_t b1, b2;
				if (!t[li].s[i])
					continue;
				lines_of(t[li].s[i], nb, &b1, &b2);
				st->second += !is_lin(nb) && li != b1;
			}
		return 0;
	}
	}
	return 0;
}

/* ---- validation ------------------------------------------------------------ */
#define FAIL(why)                      \
	do {                           \
		if (reason)            \
			*reason = why; \
		return -EINVAL;        \
	} while (0)

int gm_rmap_validate(const struct gm_rmap_head *h, const char **reason)
{
	if (!h)
		FAIL("head is NULL");
	uintptr_t w = h->word;
	if (tag_of(w) == TAG_INLINE)
		return 0;
	const struct line *t = tab_of(w);
	uint32_t nb = word_nb(w, t), seen = 0;
	if (nb < 1 || nb > MAX_LINES || is_lin(nb) != word_lin(w))
		FAIL("I3: line count out of range for the form");
	if (is_lin(nb) && t[0].s[0] >= nb)
		FAIL("I3: linear table's full lines out of range");
	uint32_t n = tab_count(w, t, nb);
	if (w != tab_word(t, nb, n) || (!is_lin(nb) && tab_nb(t) != nb))
		FAIL("I1: head word's line count or k differs from the table's");
	if (!is_lin(nb) && t[0].s[1] != tab_limits(nb))
		FAIL("I3: hashed table's limits word differs from its size's");
	if (n < 1 || (is_lin(nb) && n > tab_slots(nb)))
		FAIL("I3: count out of range");
	if (is_lin(nb)) {
		const uintptr_t *u = &t[0].s[0];
		for (uint32_t i = 1; i <= tab_slots(nb); i++) {
			bool used = i < SLOTS ? i <= n % SLOTS : i / SLOTS <= n / SLOTS;
			if ((u[i] != 0) != used)
				FAIL("I5: linear table not laid out as line 0's k + m full lines");
			if (used && bad_entry((void *)u[i]))
				FAIL("I2: misaligned entry");
		}
		return 0;
	}
	for (uint32_t li = 0; li < nb; li++) {
		for (unsigned i = first_slot(li, nb); i < SLOTS; i++) {
			uintptr_t v = t[li].s[i], e = slot_ptr(v);
			if (!v)
				continue;
			seen += slot_copies(v);
			if (!e)
				FAIL("I2: NULL entry");
			uint32_t b1, b2;
			lines_of(e, nb, &b1, &b2);
			if (li != b1 && li != b2)
				FAIL("I4: entry outside its candidate lines");
			if (pop8(hline_match(&t[b1], e, b1)) + pop8(hline_match(&t[b2], e, b2)) != 1)
				FAIL("I2: a pointer in two slots of a hashed table");
		}
	}
	if (seen != n)
		FAIL("I3: count differs from the entries (copies included)");
	return 0;
}
