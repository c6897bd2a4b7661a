/*
 * One round of the Linux guest's workload, shared by workload.c (gmwork, the
 * busybox guest's program and the host's reference) and gminit.c (the
 * freestanding /init): both must print the same checksums. Freestanding:
 * <stddef.h> and <stdint.h> only.
 */
#ifndef GMWORK_ROUND_H
#define GMWORK_ROUND_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t gmwork_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* Round r (from 1) rewrites every word of set[0, words): one word in eight
 * fully mixed, the rest cheap, so a round is quick but dirties every page.
 * The values depend only on (round, offset). Returns the set's checksum. */
static inline uint64_t gmwork_round(uint64_t *set, size_t words, uint64_t r)
{
	uint64_t seed = gmwork_mix(r);
	for (size_t i = 0; i < words; i++)
		set[i] = (i & 7) ? set[i] + seed + i : gmwork_mix(seed ^ i ^ set[i]);
	uint64_t sum = 0;
	for (size_t i = 0; i < words; i++)
		sum = gmwork_mix(sum ^ set[i]) + i;
	return sum;
}

#endif
