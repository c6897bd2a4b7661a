/*
 * tests/rangemap_model.h — the reference model gm_rangemap is checked
 * against (shared by the unit test and the fuzz target).
 *
 * The key space is cut into K cells of S keys each (S = 1: indices 0..K-1,
 * the rest a gap; S = 2^64 / K: cells tile [0, UINT64_MAX]). Operations
 * work on whole cells. Each cell holds (present, value, rid), where rid
 * names the write that put the value there; without coalescing, ranges are
 * the maximal runs of equal (value, rid), with coalescing runs of equal
 * value. Checks are O(K) and obviously right.
 */
#ifndef GM_RANGEMAP_MODEL_H
#define GM_RANGEMAP_MODEL_H

#include <gmtrack/rangemap.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct model {
	uint64_t k, shift;   /* cells and log2 of keys per cell (0 or 64-log2 k) */
	bool coalesce;
	bool *present;
	uint64_t *value, *rid;
	uint64_t next_rid;
};

static inline void model_init(struct model *md, uint64_t k, bool whole_space, bool coalesce)
{
	md->k = k;
	md->shift = 0;
	if (whole_space) { /* k must be a power of two >= 2 */
		unsigned lg = 0;
		while ((1ULL << lg) < k)
			lg++;
		md->shift = 64 - lg;
	}
	md->coalesce = coalesce;
	md->present = calloc(k, sizeof(bool));
	md->value = calloc(k, sizeof(uint64_t));
	md->rid = calloc(k, sizeof(uint64_t));
	md->next_rid = 1;
}

static inline void model_free(struct model *md)
{
	free(md->present);
	free(md->value);
	free(md->rid);
}

static inline uint64_t cell_first(const struct model *md, uint64_t c)
{
	return md->shift ? c << md->shift : c;
}

static inline uint64_t cell_last(const struct model *md, uint64_t c)
{
	return md->shift ? (c << md->shift) + ((1ULL << md->shift) - 1) : c;
}

/* Highest key the model describes; keys above are a gap. */
static inline uint64_t model_top(const struct model *md) { return cell_last(md, md->k - 1); }

static inline void model_set(struct model *md, uint64_t a, uint64_t b, bool present,
			     uint64_t value)
{
	uint64_t rid = present ? md->next_rid++ : 0;
	for (uint64_t c = a; c <= b; c++) {
		md->present[c] = present;
		md->value[c] = present ? value : 0;
		md->rid[c] = rid;
	}
}

static inline bool model_same_range(const struct model *md, uint64_t c, uint64_t d)
{
	if (md->present[c] != md->present[d])
		return false;
	if (!md->present[c])
		return true;
	return md->value[c] == md->value[d] && (md->coalesce || md->rid[c] == md->rid[d]);
}

/* Cells [*a, *b] of the run (range or gap) holding cell c. */
static inline void model_run(const struct model *md, uint64_t c, uint64_t *a, uint64_t *b)
{
	*a = *b = c;
	while (*a > 0 && model_same_range(md, *a - 1, c))
		(*a)--;
	while (*b + 1 < md->k && model_same_range(md, *b + 1, c))
		(*b)++;
}

/* The model's slots (ranges and gaps) in key terms, into out (cap >= k+1). */
static inline size_t model_slots(const struct model *md, struct gm_range *out, bool *present)
{
	size_t n = 0;
	for (uint64_t c = 0; c < md->k;) {
		uint64_t a, b;
		model_run(md, c, &a, &b);
		out[n] = (struct gm_range){cell_first(md, a), cell_last(md, b), md->value[c]};
		present[n++] = md->present[c];
		c = b + 1;
	}
	if (model_top(md) != UINT64_MAX) {
		if (n && !present[n - 1]) {
			out[n - 1].last = UINT64_MAX;
		} else {
			out[n] = (struct gm_range){model_top(md) + 1, UINT64_MAX, 0};
			present[n++] = false;
		}
	}
	return n;
}

static inline uint64_t model_count(const struct model *md)
{
	uint64_t n = 0;
	for (uint64_t c = 0; c < md->k; c++)
		n += md->present[c] && (c == 0 || !model_same_range(md, c - 1, c));
	return n;
}

/* Brute-force find_gap over the model's slots. */
static inline int model_find_gap(const struct gm_range *s, const bool *present, size_t n,
				 uint64_t size, uint64_t align, uint64_t min, uint64_t max,
				 uint64_t *first)
{
	if (align == 0)
		align = 1;
	for (size_t i = 0; i < n; i++) {
		if (present[i] || s[i].last < min || s[i].first > max)
			continue;
		uint64_t lo = s[i].first > min ? s[i].first : min;
		uint64_t hi = s[i].last < max ? s[i].last : max;
		unsigned __int128 st = ((unsigned __int128)lo + align - 1) / align * align;
		if (st > hi)
			continue;
		if ((unsigned __int128)hi - st + 1 >= size) {
			*first = (uint64_t)st;
			return 0;
		}
	}
	return -ENOSPC;
}

#endif /* GM_RANGEMAP_MODEL_H */
