/*
 * src/rmap.c — gm_rmap: one-word reverse-map heads, O(1) add and remove.
 *
 *  head word                       128-byte block (64-byte aligned)
 *  +--------------------+--+       +-----------+------+------+-----+------+
 *  | 0                  |00| empty | meta      | e[0] | e[1] | ... | e[14]|
 *  | entry pointer      |00|       +-----------+------+------+-----+------+
 *  | small block        |01|       small form:  meta = count (1..15)
 *  | hash directory     |10|       bucket form: meta = next block | count
 *  +--------------------+--+                    (count in the low 4 bits)
 *
 *  hash directory (128 B from the block cache, larger ones from the
 *  cache's spare directory slot):
 *  +-------+-------+-------+-----+-----------+-----------+----------------+
 *  | count | level | split | cap | bucket[0] | bucket[1] | ... bucket[cap-1]
 *  +-------+-------+-------+-----+-----------+-----------+----------------+
 *     bucket[b] -> [block cnt 1..15] -> [block 15] -> [block 15] -> NULL
 *
 * Linear hashing: B = 2^level + split buckets; an entry with hash h lives
 * in bucket h mod 2^level, or h mod 2^(level+1) if that is < split. Adds
 * split one bucket when count > SPLIT_LOAD * B, removes merge one pair
 * when count < MERGE_LOAD * B, so buckets hold ~6..12 entries and every
 * operation touches O(1) blocks however long the chain is. Each bucket is
 * a KVM-style chain: only its first block may be partly full, so an add
 * appends to the first block and a remove fills its hole from there.
 *
 * Invariants (gm_rmap_validate checks all of them):
 *  I1  tag 11 is never used; blocks and directories are 64-byte aligned.
 *  I2  every entry is non-NULL, has the tag bits clear, and occurs once.
 *  I3  small form: 1 <= count <= 15 (1 only after gm_rmap_iter_remove).
 *  I4  hash form: count >= 1 equals the entries in its buckets;
 *      level >= 1, split < 2^level, 2^level + split <= cap; buckets at
 *      index >= B are NULL.
 *  I5  in a bucket chain the first block holds 1..15 entries and every
 *      other block exactly 15; every entry hashes to its bucket.
 *
 * Allocation: add takes at most GM_RMAP_ADD_BLOCKS blocks from the cache
 * (checked before anything changes); a directory larger than one block
 * comes from the cache's spare slot. Remove only frees.
 */
#include <gmtrack/rmap.h>

#include <stdbool.h>
#include <string.h>

#include "internal.h"

#define TAG_MASK ((uintptr_t)3)
#define TAG_INLINE ((uintptr_t)0)
#define TAG_SMALL ((uintptr_t)1)
#define TAG_HASH ((uintptr_t)2)

#define BLOCK_SLOTS 15
#define BLOCK_ALIGN 64
#define COUNT_MASK ((uintptr_t)15)
#define SPLIT_LOAD 12          /* mean entries per bucket before a split */
#define MERGE_LOAD 5           /* ... and below which a pair merges */
#define SMALL_AGAIN 7          /* a hash form this small becomes small */
#define DIR_HEADER 24

struct block {
	uintptr_t meta;
	void *e[BLOCK_SLOTS];
};
_Static_assert(sizeof(struct block) == GM_RMAP_BLOCK_SIZE, "block is 128 B");

struct dir {
	size_t count;
	uint32_t level;
	uint32_t split;
	uint32_t cap;
	uint32_t pad;
	struct block *bucket[];
};
_Static_assert(sizeof(struct dir) == DIR_HEADER, "dir header");

static inline size_t dir_size(uint32_t cap) { return DIR_HEADER + 8 * (size_t)cap; }
static inline uint32_t dir_cap_of(size_t bytes) { return (uint32_t)((bytes - DIR_HEADER) / 8); }

/* ---- head word ----------------------------------------------------------- */
static inline uintptr_t tag_of(uintptr_t w) { return w & TAG_MASK; }
static inline struct block *small_of(uintptr_t w) { return (struct block *)(w & ~TAG_MASK); }
static inline struct dir *dir_of(uintptr_t w) { return (struct dir *)(w & ~TAG_MASK); }

static inline bool bad_entry(const void *p)
{
	return !p || ((uintptr_t)p & TAG_MASK);
}

/* ---- blocks: meta word ---------------------------------------------------- */
static inline unsigned blk_count(const struct block *b) { return (unsigned)(b->meta & COUNT_MASK); }
static inline struct block *blk_next(const struct block *b) { return (struct block *)(b->meta & ~COUNT_MASK); }
static inline void blk_set(struct block *b, struct block *next, unsigned count)
{
	b->meta = (uintptr_t)next | count;
}

/* ---- hashing --------------------------------------------------------------- */
static inline uint64_t hash_ptr(const void *p)
{
	uint64_t x = (uint64_t)(uintptr_t)p;   /* murmur3's finalizer */
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static inline uint32_t bucket_of(uint64_t h, uint32_t level, uint32_t split)
{
	uint64_t b = h & (((uint64_t)1 << level) - 1);
	if (b < split)
		b = h & (((uint64_t)2 << level) - 1);
	return (uint32_t)b;
}

static inline uint32_t nbuckets(const struct dir *d) { return ((uint32_t)1 << d->level) + d->split; }

/* ---- the cache ------------------------------------------------------------- */
static struct block *cache_take(struct gm_rmap_cache *c)
{
	struct block *b = c->blocks;
	c->blocks = (void *)b->meta;
	c->nblocks--;
	return b;
}

static void cache_put(struct gm_rmap_cache *c, void *p)
{
	if (c->nblocks >= GM_RMAP_CACHE_KEEP) {
		gm_alloc_release(c->alloc, p, GM_RMAP_BLOCK_SIZE);
		return;
	}
	struct block *b = p;
	b->meta = (uintptr_t)c->blocks;
	c->blocks = b;
	c->nblocks++;
}

static void dir_release(struct gm_rmap_cache *c, struct dir *d)
{
	size_t bytes = dir_size(d->cap);
	if (bytes == GM_RMAP_BLOCK_SIZE)
		cache_put(c, d);
	else
		gm_alloc_release(c->alloc, d, bytes);
}

int gm_rmap_cache_init(struct gm_rmap_cache *c, const struct gm_allocator *a)
{
	if (!c)
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	c->alloc = a;
	return 0;
}

int gm_rmap_cache_topup(struct gm_rmap_cache *c, size_t n)
{
	if (!c)
		return -EINVAL;
	size_t had = c->nblocks;
	while (c->nblocks < n) {
		void *b = gm_alloc_mem(c->alloc, GM_RMAP_BLOCK_SIZE, BLOCK_ALIGN);
		if (!b)
			goto fail;
		struct block *blk = b;
		blk->meta = (uintptr_t)c->blocks;
		c->blocks = blk;
		c->nblocks++;
	}
	if (c->dir_want > c->dir_bytes) {
		void *d = gm_alloc_mem(c->alloc, c->dir_want, BLOCK_ALIGN);
		if (!d)
			goto fail;
		if (c->dir)
			gm_alloc_release(c->alloc, c->dir, c->dir_bytes);
		c->dir = d;
		c->dir_bytes = c->dir_want;
	}
	return 0;
fail:
	while (c->nblocks > had)
		gm_alloc_release(c->alloc, cache_take(c), GM_RMAP_BLOCK_SIZE);
	return -ENOMEM;
}

size_t gm_rmap_cache_bytes(const struct gm_rmap_cache *c)
{
	return c ? c->nblocks * GM_RMAP_BLOCK_SIZE + c->dir_bytes : 0;
}

void gm_rmap_cache_destroy(struct gm_rmap_cache *c)
{
	if (!c)
		return;
	while (c->nblocks)
		gm_alloc_release(c->alloc, cache_take(c), GM_RMAP_BLOCK_SIZE);
	if (c->dir)
		gm_alloc_release(c->alloc, c->dir, c->dir_bytes);
	c->dir = NULL;
	c->dir_bytes = 0;
	c->dir_want = 0;
}

/* ---- bucket chains ---------------------------------------------------------
 * A "pool" is a short list of blocks a rebuild may reuse: blocks it has
 * already emptied, topped up from the cache. Rebuilds (split, merge,
 * small->hash) consume the old chain block by block, so they never need
 * more than one block beyond the ones they free (see chain_push's users).
 */
struct pool {
	struct block *free;
	struct gm_rmap_cache *cache;
};

static struct block *pool_get(struct pool *p)
{
	struct block *b = p->free;
	if (b) {
		p->free = blk_next(b);
		return b;
	}
	return cache_take(p->cache);
}

static void pool_put(struct pool *p, struct block *b)
{
	blk_set(b, p->free, 0);
	p->free = b;
}

static void pool_drain(struct pool *p)
{
	while (p->free) {
		struct block *b = p->free;
		p->free = blk_next(b);
		cache_put(p->cache, b);
	}
}

/* Adds e to the chain at *first: into the first block if it has room,
 * else in a new first block. */
static void chain_push(struct block **first, void *e, struct pool *p)
{
	struct block *f = *first;
	if (f && blk_count(f) < BLOCK_SLOTS) {
		unsigned n = blk_count(f);
		f->e[n] = e;
		f->meta++;
		return;
	}
	struct block *b = pool_get(p);
	blk_set(b, f, 1);
	b->e[0] = e;
	*first = b;
}

/* Finds e in the chain: its block and slot. */
static bool chain_find(struct block *first, const void *e, struct block **blk,
		       unsigned *slot)
{
	for (struct block *b = first; b; b = blk_next(b)) {
		unsigned n = blk_count(b);
		for (unsigned i = 0; i < n; i++) {
			if (b->e[i] == e) {
				*blk = b;
				*slot = i;
				return true;
			}
		}
	}
	return false;
}

/* Removes the entry at (b, slot): the first block's last entry fills the
 * hole (keeping I5); an emptied first block goes to the cache. */
static void chain_take(struct block **first, struct block *b, unsigned slot,
		       struct gm_rmap_cache *c)
{
	struct block *f = *first;
	unsigned last = blk_count(f) - 1;
	b->e[slot] = f->e[last];
	f->meta--;
	if (last == 0) {
		*first = blk_next(f);
		cache_put(c, f);
	}
}

/* ---- small form ----------------------------------------------------------- */
static int small_find(const struct block *s, const void *e)
{
	unsigned n = (unsigned)s->meta;
	for (unsigned i = 0; i < n; i++)
		if (s->e[i] == e)
			return (int)i;
	return -1;
}

/* ---- hash form ------------------------------------------------------------ */
static struct block **bucket_for(struct dir *d, const void *e)
{
	return &d->bucket[bucket_of(hash_ptr(e), d->level, d->split)];
}

/* Splits bucket `split` into itself and bucket 2^level + split.
 * Needs at most one block from the cache. */
static void hash_split(struct dir *d, struct gm_rmap_cache *c)
{
	uint32_t from = d->split, to = nbuckets(d), level = d->level;
	struct block *old = d->bucket[from];
	struct block *stay = NULL, *move = NULL;
	struct pool p = {NULL, c};
	while (old) {
		struct block *b = old;
		old = blk_next(b);
		unsigned n = blk_count(b);
		void *e[BLOCK_SLOTS];
		memcpy(e, b->e, n * sizeof(void *));
		pool_put(&p, b);
		for (unsigned i = 0; i < n; i++) {
			bool hi = (hash_ptr(e[i]) >> level) & 1;
			chain_push(hi ? &move : &stay, e[i], &p);
		}
	}
	pool_drain(&p);
	d->bucket[from] = stay;
	d->bucket[to] = move;
	if (++d->split == ((uint32_t)1 << level)) {
		d->level++;
		d->split = 0;
	}
}

/* Merges the last bucket into its buddy; needs no new block. */
static void hash_merge(struct dir *d, struct gm_rmap_cache *c)
{
	if (d->split == 0) {
		d->level--;
		d->split = (uint32_t)1 << d->level;
	}
	d->split--;
	uint32_t into = d->split, from = nbuckets(d);
	struct block *old = d->bucket[from];
	struct pool p = {NULL, c};
	d->bucket[from] = NULL;
	while (old) {
		struct block *b = old;
		old = blk_next(b);
		unsigned n = blk_count(b);
		void *e[BLOCK_SLOTS];
		memcpy(e, b->e, n * sizeof(void *));
		pool_put(&p, b);
		for (unsigned i = 0; i < n; i++)
			chain_push(&d->bucket[into], e[i], &p);
	}
	pool_drain(&p);
}

/* Turns a full small block plus `extra` into a 2-bucket hash form.
 * Uses 2 cache blocks at most (the directory and one bucket block). */
static void small_to_hash(struct gm_rmap_head *h, struct block *s, void *extra,
			  struct gm_rmap_cache *c)
{
	struct dir *d = (struct dir *)cache_take(c);
	memset(d, 0, GM_RMAP_BLOCK_SIZE);
	d->level = 1;
	d->cap = dir_cap_of(GM_RMAP_BLOCK_SIZE);
	void *e[BLOCK_SLOTS + 1];
	memcpy(e, s->e, BLOCK_SLOTS * sizeof(void *));
	e[BLOCK_SLOTS] = extra;
	struct pool p = {NULL, c};
	pool_put(&p, s);
	for (unsigned i = 0; i <= BLOCK_SLOTS; i++)
		chain_push(bucket_for(d, e[i]), e[i], &p);
	pool_drain(&p);
	d->count = BLOCK_SLOTS + 1;
	h->word = (uintptr_t)d | TAG_HASH;
}

/* A hash form with <= BLOCK_SLOTS entries becomes a small block again,
 * reusing one of its own blocks. */
static void hash_to_small(struct gm_rmap_head *h, struct dir *d,
			  struct gm_rmap_cache *c)
{
	void *e[BLOCK_SLOTS];
	unsigned n = 0;
	struct block *keep = NULL;
	uint32_t nb = nbuckets(d);
	for (uint32_t i = 0; i < nb; i++) {
		struct block *b = d->bucket[i];
		while (b) {
			struct block *next = blk_next(b);
			unsigned k = blk_count(b);
			memcpy(e + n, b->e, k * sizeof(void *));
			n += k;
			if (keep)
				cache_put(c, b);
			else
				keep = b;
			b = next;
		}
	}
	dir_release(c, d);
	if (n <= 1) {   /* possible after gm_rmap_iter_remove thinned it out */
		h->word = n ? (uintptr_t)e[0] : 0;
		if (keep)
			cache_put(c, keep);
		return;
	}
	keep->meta = n;
	memcpy(keep->e, e, n * sizeof(void *));
	h->word = (uintptr_t)keep | TAG_SMALL;
}

/* Grows the directory into the cache's spare one (checked by the caller). */
static struct dir *dir_grow(struct gm_rmap_head *h, struct dir *d,
			    struct gm_rmap_cache *c)
{
	struct dir *nd = c->dir;
	uint32_t cap = dir_cap_of(c->dir_bytes);
	uint32_t nb = nbuckets(d);
	memcpy(nd, d, DIR_HEADER + nb * sizeof(void *));
	memset(&nd->bucket[nb], 0, (cap - nb) * sizeof(void *));
	nd->cap = cap;
	c->dir = NULL;
	c->dir_bytes = 0;
	c->dir_want = 0;
	dir_release(c, d);
	h->word = (uintptr_t)nd | TAG_HASH;
	return nd;
}

static int hash_add(struct gm_rmap_head *h, struct dir *d, void *e,
		    struct gm_rmap_cache *c)
{
	struct block *blk;
	unsigned slot;
	if (chain_find(*bucket_for(d, e), e, &blk, &slot))
		return -EEXIST;
	uint32_t nb = nbuckets(d);
	bool split = d->count + 1 > (size_t)SPLIT_LOAD * nb;
	size_t next_dir = dir_size(d->cap) * 2;  /* 128, 256, 512, ... bytes */
	if (nb * 2 >= d->cap && c->dir_want < next_dir)
		c->dir_want = next_dir;   /* a hint: the next topup fetches it */
	bool grow = split && nb + 1 > d->cap;
	if (grow && (!c->dir || c->dir_bytes < next_dir)) {
		c->dir_want = next_dir > c->dir_want ? next_dir : c->dir_want;
		return -ENOMEM;
	}
	if (c->nblocks < (size_t)split + 1)
		return -ENOMEM;
	if (grow)
		d = dir_grow(h, d, c);
	if (split)
		hash_split(d, c);
	struct pool p = {NULL, c};
	chain_push(bucket_for(d, e), e, &p);
	d->count++;
	return 0;
}

/* ---- public operations ------------------------------------------------------ */
int gm_rmap_add(struct gm_rmap_head *h, void *e, struct gm_rmap_cache *c)
{
	if (!h || !c || bad_entry(e))
		return -EINVAL;
	uintptr_t w = h->word;
	switch (tag_of(w)) {
	case TAG_INLINE: {
		if (w == 0) {
			h->word = (uintptr_t)e;
			return 0;
		}
		if ((void *)w == e)
			return -EEXIST;
		if (c->nblocks < 1)
			return -ENOMEM;
		struct block *s = cache_take(c);
		s->meta = 2;
		s->e[0] = (void *)w;
		s->e[1] = e;
		h->word = (uintptr_t)s | TAG_SMALL;
		return 0;
	}
	case TAG_SMALL: {
		struct block *s = small_of(w);
		if (small_find(s, e) >= 0)
			return -EEXIST;
		if (s->meta < BLOCK_SLOTS) {
			s->e[s->meta++] = e;
			return 0;
		}
		if (c->nblocks < 2)
			return -ENOMEM;
		small_to_hash(h, s, e, c);
		return 0;
	}
	case TAG_HASH:
		return hash_add(h, dir_of(w), e, c);
	}
	return -EINVAL;   /* tag 11: a corrupted head */
}

int gm_rmap_remove(struct gm_rmap_head *h, void *e, struct gm_rmap_cache *c)
{
	if (!h || !c || bad_entry(e))
		return -EINVAL;
	uintptr_t w = h->word;
	switch (tag_of(w)) {
	case TAG_INLINE:
		if (w == 0 || (void *)w != e)
			return -ENOENT;
		h->word = 0;
		return 0;
	case TAG_SMALL: {
		struct block *s = small_of(w);
		int i = small_find(s, e);
		if (i < 0)
			return -ENOENT;
		s->e[i] = s->e[--s->meta];
		if (s->meta > 1)
			return 0;
		/* one entry left goes back inline; none left: empty */
		h->word = s->meta ? (uintptr_t)s->e[0] : 0;
		cache_put(c, s);
		return 0;
	}
	case TAG_HASH: {
		struct dir *d = dir_of(w);
		struct block **first = bucket_for(d, e), *blk;
		unsigned slot;
		if (!chain_find(*first, e, &blk, &slot))
			return -ENOENT;
		chain_take(first, blk, slot, c);
		d->count--;
		if (d->count <= SMALL_AGAIN)
			hash_to_small(h, d, c);
		else if (nbuckets(d) > 2 && d->count < (size_t)MERGE_LOAD * nbuckets(d))
			hash_merge(d, c);
		return 0;
	}
	}
	return -EINVAL;
}

bool gm_rmap_contains(const struct gm_rmap_head *h, const void *e)
{
	if (!h || bad_entry(e))
		return false;
	uintptr_t w = h->word;
	struct block *blk;
	unsigned slot;
	switch (tag_of(w)) {
	case TAG_INLINE:
		return w != 0 && (const void *)w == e;
	case TAG_SMALL:
		return small_find(small_of(w), e) >= 0;
	case TAG_HASH:
		return chain_find(*bucket_for(dir_of(w), e), e, &blk, &slot);
	}
	return false;
}

size_t gm_rmap_count(const struct gm_rmap_head *h)
{
	uintptr_t w = h ? h->word : 0;
	switch (tag_of(w)) {
	case TAG_INLINE:
		return w != 0;
	case TAG_SMALL:
		return small_of(w)->meta;
	case TAG_HASH:
		return dir_of(w)->count;
	}
	return 0;
}

/* ---- iteration ------------------------------------------------------------
 * Blocks are walked from their last slot down and chains from their first
 * block on, buckets from the last down. Removing the current entry moves
 * the first block's last entry into its slot: an entry already returned,
 * so the walk (which goes on at the slot below) neither skips nor repeats.
 */
static void *iter_step(struct gm_rmap_iter *it)
{
	for (;;) {
		struct block *b = it->blk;
		if (b && it->idx > 0) {
			it->idx--;
			return it->cur = b->e[it->idx];
		}
		if (it->next_blk) {
			b = it->blk = it->next_blk;
			it->next_blk = blk_next(b);
			it->idx = blk_count(b);
			continue;
		}
		if (it->form != GM_RMAP_HASH || it->bucket == 0)
			break;
		struct dir *d = dir_of(it->head->word);
		it->bucket--;
		it->blk = NULL;
		it->next_blk = d->bucket[it->bucket];
	}
	it->blk = NULL;
	it->form = GM_RMAP_EMPTY;
	return it->cur = NULL;
}

void *gm_rmap_iter_first(struct gm_rmap_iter *it, struct gm_rmap_head *h)
{
	memset(it, 0, sizeof(*it));
	it->head = h;
	uintptr_t w = h ? h->word : 0;
	switch (tag_of(w)) {
	case TAG_INLINE:
		it->form = w ? GM_RMAP_INLINE : GM_RMAP_EMPTY;
		return it->cur = (void *)w;
	case TAG_SMALL:
		it->form = GM_RMAP_SMALL;
		it->blk = small_of(w);
		it->idx = (uint32_t)small_of(w)->meta;
		return iter_step(it);
	case TAG_HASH:
		it->form = GM_RMAP_HASH;
		it->bucket = nbuckets(dir_of(w));
		return iter_step(it);
	}
	return NULL;
}

void *gm_rmap_iter_next(struct gm_rmap_iter *it)
{
	if (it->form == GM_RMAP_INLINE || it->form == GM_RMAP_EMPTY) {
		it->form = GM_RMAP_EMPTY;
		return it->cur = NULL;
	}
	return iter_step(it);
}

/* The head emptied under the iterator: end the walk. */
static void iter_end(struct gm_rmap_iter *it)
{
	it->form = GM_RMAP_EMPTY;
	it->blk = it->next_blk = NULL;
	it->bucket = 0;
}

int gm_rmap_iter_remove(struct gm_rmap_iter *it, struct gm_rmap_cache *c)
{
	if (!it || !c || !it->cur)
		return -EINVAL;
	struct gm_rmap_head *h = it->head;
	it->cur = NULL;
	switch (it->form) {
	case GM_RMAP_INLINE:
		h->word = 0;
		iter_end(it);
		return 0;
	case GM_RMAP_SMALL: {
		struct block *s = it->blk;
		s->e[it->idx] = s->e[--s->meta];
		if (s->meta == 0) {
			cache_put(c, s);
			h->word = 0;
			iter_end(it);
		}
		return 0;
	}
	case GM_RMAP_HASH: {
		struct dir *d = dir_of(h->word);
		struct block **first = &d->bucket[it->bucket];
		struct block *cur = it->blk;
		bool cur_freed = *first == cur && blk_count(cur) == 1;
		chain_take(first, cur, it->idx, c);
		if (cur_freed)
			it->blk = NULL;
		if (--d->count == 0) {
			dir_release(c, d);
			h->word = 0;
			iter_end(it);
		}
		return 0;
	}
	}
	return -EINVAL;
}

void gm_rmap_clear(struct gm_rmap_head *h, struct gm_rmap_cache *c,
		   void (*cb)(void *ctx, void *ptr), void *ctx)
{
	if (!h)
		return;
	uintptr_t w = h->word;
	h->word = 0;
	switch (tag_of(w)) {
	case TAG_INLINE:
		if (w && cb)
			cb(ctx, (void *)w);
		return;
	case TAG_SMALL: {
		struct block *s = small_of(w);
		for (unsigned i = 0; cb && i < s->meta; i++)
			cb(ctx, s->e[i]);
		cache_put(c, s);
		return;
	}
	case TAG_HASH: {
		struct dir *d = dir_of(w);
		uint32_t nb = nbuckets(d);
		for (uint32_t i = 0; i < nb; i++) {
			struct block *b = d->bucket[i];
			while (b) {
				struct block *next = blk_next(b);
				for (unsigned k = 0; cb && k < blk_count(b); k++)
					cb(ctx, b->e[k]);
				cache_put(c, b);
				b = next;
			}
		}
		dir_release(c, d);
		return;
	}
	}
}

void gm_rmap_stats(const struct gm_rmap_head *h, struct gm_rmap_stats *st)
{
	memset(st, 0, sizeof(*st));
	uintptr_t w = h ? h->word : 0;
	switch (tag_of(w)) {
	case TAG_INLINE:
		st->form = w ? GM_RMAP_INLINE : GM_RMAP_EMPTY;
		st->count = w != 0;
		return;
	case TAG_SMALL:
		st->form = GM_RMAP_SMALL;
		st->count = small_of(w)->meta;
		st->blocks = 1;
		st->bytes = GM_RMAP_BLOCK_SIZE;
		return;
	case TAG_HASH: {
		struct dir *d = dir_of(w);
		st->form = GM_RMAP_HASH;
		st->count = d->count;
		st->buckets = nbuckets(d);
		st->dir_bytes = dir_size(d->cap);
		for (uint32_t i = 0; i < st->buckets; i++) {
			size_t len = 0;
			for (struct block *b = d->bucket[i]; b; b = blk_next(b))
				len++;
			st->blocks += len;
			if (len > st->max_chain)
				st->max_chain = len;
		}
		st->bytes = st->dir_bytes + st->blocks * GM_RMAP_BLOCK_SIZE;
		return;
	}
	}
}

/* ---- validation ------------------------------------------------------------ */
#define FAIL(why)                      \
	do {                           \
		if (reason)            \
			*reason = why; \
		return -EINVAL;        \
	} while (0)

static bool aligned(const void *p) { return ((uintptr_t)p % BLOCK_ALIGN) == 0; }

int gm_rmap_validate(const struct gm_rmap_head *h, const char **reason)
{
	if (!h)
		FAIL("head is NULL");
	uintptr_t w = h->word;
	switch (tag_of(w)) {
	case TAG_INLINE:
		return 0;
	case TAG_SMALL: {
		const struct block *s = small_of(w);
		if (!aligned(s))
			FAIL("I1: small block misaligned");
		if (s->meta < 1 || s->meta > BLOCK_SLOTS)
			FAIL("I3: small count outside 1..15");
		for (unsigned i = 0; i < s->meta; i++) {
			if (bad_entry(s->e[i]))
				FAIL("I2: NULL or misaligned entry");
			for (unsigned j = 0; j < i; j++)
				if (s->e[i] == s->e[j])
					FAIL("I2: duplicate entry in small block");
		}
		return 0;
	}
	case TAG_HASH: {
		const struct dir *d = dir_of(w);
		if (!aligned(d))
			FAIL("I1: directory misaligned");
		if (d->level < 1 || d->level > 31 || d->split >= (1u << d->level))
			FAIL("I4: level/split out of range");
		uint32_t nb = nbuckets(d);
		if (nb > d->cap)
			FAIL("I4: more buckets than directory capacity");
		if (d->count < 1)
			FAIL("I4: empty hash form");
		size_t total = 0;
		for (uint32_t i = 0; i < d->cap; i++) {
			const struct block *b = d->bucket[i];
			if (i >= nb) {
				if (b)
					FAIL("I4: bucket beyond B is not NULL");
				continue;
			}
			for (bool first = true; b; b = blk_next(b), first = false) {
				unsigned n = blk_count(b);
				if (!aligned(b))
					FAIL("I1: bucket block misaligned");
				if (n < 1 || (!first && n != BLOCK_SLOTS))
					FAIL("I5: bucket block count wrong");
				for (unsigned k = 0; k < n; k++) {
					if (bad_entry(b->e[k]))
						FAIL("I2: NULL or misaligned entry");
					if (bucket_of(hash_ptr(b->e[k]), d->level, d->split) != i)
						FAIL("I5: entry in the wrong bucket");
					const struct block *b2;
					for (b2 = d->bucket[i]; b2 != b; b2 = blk_next(b2))
						for (unsigned j = 0; j < blk_count(b2); j++)
							if (b2->e[j] == b->e[k])
								FAIL("I2: duplicate entry");
					for (unsigned j = 0; j < k; j++)
						if (b->e[j] == b->e[k])
							FAIL("I2: duplicate entry");
				}
				total += n;
			}
		}
		if (total != d->count)
			FAIL("I4: count differs from the entries");
		return 0;
	}
	}
	FAIL("I1: tag 11 in head");
}
