/*
 * src/rng.h — the one PRNG of the tests, the fuzz targets' helpers and
 * gmbench: xoshiro256** seeded by splitmix64, header-only. Not installed;
 * the library itself draws no random numbers except the failing
 * allocator's splitmix64 steps (alloc.c, which uses gm_splitmix64_mix).
 */
#ifndef GMTRACK_RNG_H
#define GMTRACK_RNG_H

#include <stdbool.h>
#include <stdint.h>

/* splitmix64's output function of a state that has just been advanced. */
static inline uint64_t gm_splitmix64_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* ---- PRNG: xoshiro256** seeded by splitmix64 --------------------------- */
struct gm_rng {
	uint64_t s[4];
};

static inline uint64_t gm_splitmix64(uint64_t *x)
{
	return gm_splitmix64_mix(*x += 0x9e3779b97f4a7c15ULL);
}

/* The generator on a bare state, for every wrapper's struct. */
static inline void gm_xoshiro_seed(uint64_t s[4], uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		s[i] = gm_splitmix64(&seed);
}

static inline uint64_t gm_xoshiro_next(uint64_t s[4])
{
	uint64_t x = s[1] * 5;
	uint64_t result = ((x << 7) | (x >> 57)) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = (s[3] << 45) | (s[3] >> 19);
	return result;
}

/* Uniform in [0, n); n == 0 means the whole 64-bit range. */
static inline uint64_t gm_xoshiro_below(uint64_t s[4], uint64_t n)
{
	if (n == 0)
		return gm_xoshiro_next(s);
	return (uint64_t)(((unsigned __int128)gm_xoshiro_next(s) * n) >> 64);
}

static inline void gm_rng_init(struct gm_rng *r, uint64_t seed) { gm_xoshiro_seed(r->s, seed); }
static inline uint64_t gm_rng_next(struct gm_rng *r) { return gm_xoshiro_next(r->s); }
static inline uint64_t gm_rng_below(struct gm_rng *r, uint64_t n)
{
	return gm_xoshiro_below(r->s, n);
}

/* Uniform in [lo, hi], inclusive; any lo <= hi. */
static inline uint64_t gm_rng_range(struct gm_rng *r, uint64_t lo, uint64_t hi)
{
	return lo + gm_rng_below(r, hi - lo + 1);
}

/* True with probability num/den. */
static inline bool gm_rng_chance(struct gm_rng *r, uint64_t num, uint64_t den)
{
	return gm_rng_below(r, den) < num;
}

#endif /* GMTRACK_RNG_H */
