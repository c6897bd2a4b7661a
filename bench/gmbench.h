/*
 * bench/gmbench.h — what a gmbench scenario is written against.
 *
 * A scenario is one .c file in bench/scenarios/ that registers itself:
 *
 *   static void run(struct gmb_ctx *ctx) {
 *       gmb_reference(ctx, "openhash");          // ratios are to this row
 *       for (n = 1000; n <= gmb_max_size(ctx, 10000000); n *= 10) {
 *           ... build ...
 *           double ns = gmb_measure(ctx, &(struct gmb_case){ .body = f, .arg = &s });
 *           gmb_row(ctx, "gm_pagemap", "load", n, "random", ns, bytes / n);
 *       }
 *       gmb_target_ratio(ctx, "load <= 0.8x JudyL at 1e6 random",
 *                        (struct gmb_sel){"gm_pagemap","load",1000000,"random"},
 *                        (struct gmb_sel){"judyl","load",1000000,"random"},
 *                        GMB_AT_MOST, 0.8);
 *   }
 *   GMB_SCENARIO(shadow_pages, "frame number -> shadow page", run)
 *
 * Rows are `scenario,structure,op,n,dist,ns_per_op,bytes_per_entry`. Each
 * row's ratio is to the reference structure's row with the same op, n and
 * dist (or, failing that, the same n and dist). Targets are checked after
 * the scenario ran and listed in the report as `meets` / `falls short`
 * (or `not measured` when a row is missing, e.g. with a smaller --size).
 *
 * Timing: gmb_measure runs body once to warm up, then `--repeat` times
 * (setup and teardown untimed around each), with CLOCK_MONOTONIC, and
 * returns the median ns per op (body returns how many ops it did).
 * gmb_measure_group does the same for several cases in interleaved rounds.
 */
#ifndef GMBENCH_H
#define GMBENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gmb_ctx;

struct gmb_case {
	void *arg;
	void (*setup)(void *arg);      /* untimed, before each run; may be NULL */
	uint64_t (*body)(void *arg);   /* timed; returns number of ops done */
	void (*teardown)(void *arg);   /* untimed, after each run; may be NULL */
};

/* Median ns/op over --repeat timed runs after one warm-up run. */
double gmb_measure(struct gmb_ctx *ctx, const struct gmb_case *c);
/* Same, but with `repeat` forced (e.g. 1 for something that takes minutes
 * or that cannot be undone cheaply); no warm-up when warmup is false. */
double gmb_measure_n(struct gmb_ctx *ctx, const struct gmb_case *c,
		     int repeat, bool warmup);
/* Cases whose rows a target compares, measured side by side: one warm-up
 * run each, then --repeat rounds in which every case runs once (the
 * starting case rotates from round to round), ns[i] = case i's median.
 * Measured one after the other, two rows sit seconds apart and a shared
 * machine's load can change in between (ratios moved 2-5x from run to
 * run); interleaved, every round meets both under the same conditions.
 * The cases must be able to run in any order (their structures coexist). */
void gmb_measure_group(struct gmb_ctx *ctx, const struct gmb_case *cases, int n,
		       double *ns);
/* Nanoseconds since an arbitrary origin (CLOCK_MONOTONIC). */
uint64_t gmb_now_ns(void);
/* Median of v[0..n) (n >= 1); sorts v. For scenarios that time runs
 * themselves (e.g. two ops per run). */
double gmb_median(double *v, int n);

/* Branch-free lower bound over sorted a[0..n) (n >= 1): the index of the
 * first element >= key, or n. The cost of the best comparison search, the
 * baseline the "sorted array" rows use. */
static inline uint64_t gmb_lower_bound(const uint64_t *a, uint64_t n, uint64_t key)
{
	const uint64_t *base = a;
	while (n > 1) {
		uint64_t half = n / 2;
		/* Multiply, not ?:, so the compiler emits no branch to mispredict. */
		base += (uint64_t)(base[half - 1] < key) * half;
		n -= half;
	}
	return (uint64_t)(base - a) + (*base < key);
}

/* Emits one result row. bytes_per_entry < 0 means "not applicable". */
void gmb_row(struct gmb_ctx *ctx, const char *structure, const char *op,
	     uint64_t n, const char *dist, double ns_per_op,
	     double bytes_per_entry);
/* Names the scenario's reference structure for ratios. */
void gmb_reference(struct gmb_ctx *ctx, const char *structure);

/* Options as given on the command line. */
uint64_t gmb_max_size(struct gmb_ctx *ctx, uint64_t dflt); /* --size or dflt */
bool gmb_size_given(struct gmb_ctx *ctx);
uint64_t gmb_seed(struct gmb_ctx *ctx);                    /* --seed */
bool gmb_quick(struct gmb_ctx *ctx);                       /* --quick */
int gmb_repeat(struct gmb_ctx *ctx);                       /* --repeat */
/* Free-form note shown under the scenario's table in the report. */
void gmb_note(struct gmb_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The scenario's answer to its seed's question, in one sentence with the
 * run's own numbers: the report's summary shows it (without one, the
 * scenario's first target stands in). */
void gmb_answer(struct gmb_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Progress text on a terminal's stderr (shown once the scenario has run
 * > 1 s); nothing when stderr is a log. */
void gmb_progress(struct gmb_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Row selector for targets. */
struct gmb_sel {
	const char *structure;
	const char *op;
	uint64_t n;
	const char *dist;
};

/* A row of this scenario already emitted: true, with its ns_per_op and
 * bytes_per_entry (either pointer may be NULL); false if there is none
 * (e.g. a size --size left out). For gmb_answer's sentence. */
bool gmb_value(struct gmb_ctx *ctx, struct gmb_sel sel, double *ns, double *bytes);
/* The same as a number: the row's ns_per_op (bytes_per_entry when bytes is
 * true), 0 when there is no such row. */
static inline double gmb_value_of(struct gmb_ctx *ctx, const char *structure,
				  const char *op, uint64_t n, const char *dist, bool bytes)
{
	double ns = 0, b = 0;
	gmb_value(ctx, (struct gmb_sel){structure, op, n, dist}, &ns, &b);
	return bytes ? b : ns;
}
/* The largest n of this scenario's rows of (structure, op, dist), 0 if none. */
uint64_t gmb_largest_n(struct gmb_ctx *ctx, const char *structure, const char *op,
		       const char *dist);

enum gmb_cmp { GMB_AT_MOST, GMB_AT_LEAST };
enum gmb_field { GMB_NS, GMB_BYTES };

/* Target: a.ns / b.ns compared with `bound`. */
void gmb_target_ratio(struct gmb_ctx *ctx, const char *what,
		      struct gmb_sel a, struct gmb_sel b, enum gmb_cmp cmp,
		      double bound);
/* Target: a.bytes / b.bytes compared with `bound`. */
void gmb_target_bytes_ratio(struct gmb_ctx *ctx, const char *what,
			    struct gmb_sel a, struct gmb_sel b,
			    enum gmb_cmp cmp, double bound);
/* Target: one row's ns_per_op or bytes_per_entry compared with `bound`. */
void gmb_target_bound(struct gmb_ctx *ctx, const char *what,
		      struct gmb_sel a, enum gmb_field field,
		      enum gmb_cmp cmp, double bound);
/* Target decided by the scenario itself (e.g. "grows with n"); `measured`
 * is the text shown as the measured value. */
void gmb_target_verdict(struct gmb_ctx *ctx, const char *what,
			const char *measured, bool meets);

/* Keeps the compiler from discarding a computed value. */
extern volatile uint64_t gmb_sink_var;
static inline void gmb_sink(uint64_t v) { gmb_sink_var += v; }

/* Seeded PRNG for workloads: the tests' generator (src/rng.h). */
struct gmb_rng {
	uint64_t s[4];
};
void gmb_rng_init(struct gmb_rng *r, uint64_t seed);
uint64_t gmb_rng_next(struct gmb_rng *r);
uint64_t gmb_rng_below(struct gmb_rng *r, uint64_t n); /* [0, n) */

/* Registration. */
struct gmb_scenario {
	const char *name;
	const char *description;
	void (*run)(struct gmb_ctx *ctx);
};
void gmb_register(const struct gmb_scenario *s);

#define GMB_SCENARIO(name_, desc_, run_)                                      \
	static const struct gmb_scenario gmb_scenario_##name_ = {             \
		#name_, desc_, run_};                                         \
	__attribute__((constructor)) static void gmb_register_##name_(void)   \
	{                                                                     \
		gmb_register(&gmb_scenario_##name_);                          \
	}

#endif /* GMBENCH_H */
