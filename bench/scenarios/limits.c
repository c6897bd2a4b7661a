/*
 * bench/scenarios/limits.c — the physical limits every later scenario is
 * compared against: reading a flat uint64_t array in order and at random,
 * and binary search over a sorted array, at n = 10^3 .. 10^7.
 *
 * Rows: flat/read/seq, flat/read/random, sorted/search/random (hits).
 * Reference: flat. bytes_per_entry is 8 for both (the array itself).
 *
 * And the price of a read-side section, the floor of every RCU lookup:
 * gm_rcu/read_section/1/empty (gm_rcu_read_lock + gm_rcu_read_unlock,
 * inline) side by side with urcu_memb/read_section/1/empty (liburcu's
 * memb flavour through its library calls, as a BSD program links it).
 */
#include "gmbench.h"

#include <gmtrack/rcu.h>
#include <urcu/urcu-memb.h>

#include <stdio.h>
#include <stdlib.h>

struct limits {
	uint64_t *array;     /* n values; sorted ascending, distinct */
	uint64_t n;
	uint64_t *probe;     /* nprobe indices into array */
	uint64_t nprobe;
};

static uint64_t read_seq(void *arg)
{
	struct limits *l = arg;
	uint64_t sum = 0, done = 0;
	while (done < l->nprobe) {
		for (uint64_t i = 0; i < l->n && done < l->nprobe; i++, done++)
			sum += l->array[i];
	}
	gmb_sink(sum);
	return done;
}

static uint64_t read_random(void *arg)
{
	struct limits *l = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < l->nprobe; i++)
		sum += l->array[l->probe[i]];
	gmb_sink(sum);
	return l->nprobe;
}

static uint64_t search_random(void *arg)
{
	struct limits *l = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < l->nprobe; i++)
		sum += gmb_lower_bound(l->array, l->n, l->array[l->probe[i]]);
	gmb_sink(sum);
	return l->nprobe;
}

static uint64_t gm_rcu_sections(void *arg)
{
	uint64_t n = *(const uint64_t *)arg;
	for (uint64_t i = 0; i < n; i++) {
		gm_rcu_read_lock();
		gm_rcu_read_unlock();
	}
	return n;
}

static uint64_t urcu_sections(void *arg)
{
	uint64_t n = *(const uint64_t *)arg;
	for (uint64_t i = 0; i < n; i++) {
		urcu_memb_read_lock();
		urcu_memb_read_unlock();
	}
	return n;
}

static void read_sections(struct gmb_ctx *ctx)
{
	/* 2^16 sections: ~0.1 ms a run, short enough that a loaded machine
	 * rarely preempts one. With 2^24 (~25 ms a run) the row read 3.3-4 ns
	 * at load ~7 on 2 cores, and with 2^20 1.4-9 ns: other processes'
	 * time slices inside the timed loop, not the section's cost. */
	uint64_t n = 1 << 16;
	gm_rcu_register_thread();
	urcu_memb_register_thread();
	struct gmb_case cases[2] = {{.arg = &n, .body = gm_rcu_sections},
				    {.arg = &n, .body = urcu_sections}};
	double ns[2];
	gmb_measure_group(ctx, cases, 2, ns);
	gmb_row(ctx, "gm_rcu", "read_section", 1, "empty", ns[0], -1);
	gmb_row(ctx, "urcu_memb", "read_section", 1, "empty", ns[1], -1);
	urcu_memb_unregister_thread();
	gm_rcu_unregister_thread();
	gmb_note(ctx, "read_section is gm_rcu_read_lock() + gm_rcu_read_unlock() "
		      "(inline: two thread-local stores) against liburcu memb's "
		      "urcu_memb_read_lock/unlock library calls, side by side.");
	gmb_target_bound(ctx, "read section (lock + unlock) <= 2 ns",
			 (struct gmb_sel){"gm_rcu", "read_section", 1, "empty"},
			 GMB_NS, GMB_AT_MOST, 2.0);
}


/* The summary's sentence: the floors, with this run's numbers. */
static void answer(struct gmb_ctx *ctx)
{
	uint64_t n = gmb_largest_n(ctx, "flat", "read", "random");
	gmb_answer(ctx, "a read section costs %.2f ns (liburcu memb's calls: %.2f ns); at %llu "
		   "entries a random read of a flat array costs %.1f ns and a binary search "
		   "%.1f ns, the floors every other row is judged against.",
		   gmb_value_of(ctx, "gm_rcu", "read_section", 1, "empty", false),
		   gmb_value_of(ctx, "urcu_memb", "read_section", 1, "empty", false), (unsigned long long)n,
		   gmb_value_of(ctx, "flat", "read", n, "random", false),
		   gmb_value_of(ctx, "sorted", "search", n, "random", false));
}

static void run(struct gmb_ctx *ctx)
{
	read_sections(ctx);

	uint64_t max = gmb_max_size(ctx, gmb_quick(ctx) ? 100000 : 10000000);
	uint64_t nprobe = gmb_quick(ctx) ? 1 << 16 : 1 << 21;
	struct gmb_rng rng;
	gmb_rng_init(&rng, gmb_seed(ctx));
	gmb_reference(ctx, "flat");
	double last_seq = 0, last_random = 0;

	for (uint64_t n = 1000; n <= max; n *= 10) {
		struct limits l = {.n = n, .nprobe = nprobe};
		l.array = malloc(n * sizeof(uint64_t));
		l.probe = malloc(nprobe * sizeof(uint64_t));
		if (!l.array || !l.probe) {
			fprintf(stderr, "limits: out of memory at n=%llu\n",
				(unsigned long long)n);
			free(l.array);
			free(l.probe);
			return;
		}
		uint64_t v = 0;
		for (uint64_t i = 0; i < n; i++)
			l.array[i] = v += 1 + gmb_rng_below(&rng, 1000);
		for (uint64_t i = 0; i < nprobe; i++)
			l.probe[i] = gmb_rng_below(&rng, n);

		double ns;
		ns = gmb_measure(ctx, &(struct gmb_case){.arg = &l, .body = read_seq});
		gmb_row(ctx, "flat", "read", n, "seq", ns, 8.0);
		last_seq = ns;
		ns = gmb_measure(ctx, &(struct gmb_case){.arg = &l, .body = read_random});
		gmb_row(ctx, "flat", "read", n, "random", ns, 8.0);
		last_random = ns;
		ns = gmb_measure(ctx, &(struct gmb_case){.arg = &l, .body = search_random});
		gmb_row(ctx, "sorted", "search", n, "random", ns, 8.0);
		free(l.array);
		free(l.probe);
	}
	gmb_note(ctx, "flat/read/random is one independent memory access per op; "
		      "sorted/search/random is a branch-free binary search (log2 n "
		      "dependent accesses).");
	char measured[96];
	snprintf(measured, sizeof(measured), "random %.2f ns vs seq %.2f ns",
		 last_random, last_seq);
	gmb_target_verdict(ctx, "random reads cost more than sequential reads at "
			   "the largest n (the memory hierarchy is visible)",
			   measured, last_random > last_seq);
	answer(ctx);
}

GMB_SCENARIO(limits, "physical limits: flat array reads and binary search", run)
