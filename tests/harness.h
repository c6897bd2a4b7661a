/*
 * tests/harness.h — the small test harness every gmtrack test uses.
 *
 *   #include "harness.h"
 *   GM_TEST(counts_bytes) {
 *       struct gm_rng *rng = gm_test_rng();   // seeded, replayable
 *       CHECK_EQ(gm_rng_below(rng, 1), 0);
 *   }
 *   GM_TEST_MAIN()
 *
 * - Tests register themselves; `./test [substring]` runs the matching ones.
 * - A failed CHECK prints file:line, the expression and both values, then
 *   abandons the current test (longjmp) and the runner goes on.
 * - Each test gets a PRNG seeded from GM_SEED (env) or the clock; a failing
 *   test prints `GM_SEED=<seed>` to replay it exactly.
 * - GM_TEST_SCALE (env, default 1.0) scales iteration counts through
 *   gm_test_iters(n), so sanitizer builds can run shorter.
 * - A test running longer than GM_TEST_TIMEOUT seconds (default 300) ends
 *   the run, naming the test. A failed CHECK inside an RCU read-side section
 *   releases the section before the next test runs.
 * - The run ends with "N passed, N failed" and exits non-zero on failure.
 */
#ifndef GMTRACK_TEST_HARNESS_H
#define GMTRACK_TEST_HARNESS_H

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h" /* the PRNG (src/rng.h), shared with gmbench */

/* ---- registration and checks ------------------------------------------- */
typedef void (*gm_test_fn)(void);
void gm_test_register(const char *name, gm_test_fn fn);
void gm_test_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));
/* Prints like printf, prefixed with the test's name; for context lines. */
void gm_test_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
struct gm_rng *gm_test_rng(void);
uint64_t gm_test_seed(void);
/* n scaled by GM_TEST_SCALE, at least 1. */
uint64_t gm_test_iters(uint64_t n);
int gm_test_main(int argc, char **argv);

/* src/cpu.c's switch between the AVX2 and the portable read paths (not
 * public); tests clear it to run the portable paths on an AVX2 machine. */
extern bool gm_cpu_avx2_;
/* What it was when the tests started: what the CPU has. */
bool gm_test_cpu_avx2(void);

#define GM_TEST(name)                                                        \
	static void gm_test_##name(void);                                    \
	__attribute__((constructor)) static void gm_test_reg_##name(void)    \
	{                                                                    \
		gm_test_register(#name, gm_test_##name);                     \
	}                                                                    \
	static void gm_test_##name(void)

#define GM_TEST_MAIN()                                                       \
	int main(int argc, char **argv) { return gm_test_main(argc, argv); }

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			gm_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); \
	} while (0)

#define CHECK_MSG(cond, ...)                                                 \
	do {                                                                 \
		if (!(cond))                                                 \
			gm_test_fail(__FILE__, __LINE__, __VA_ARGS__);       \
	} while (0)

/* Compares both as uint64_t (so -ENOMEM == -ENOMEM whatever the types); prints
 * both values in decimal and hex. */
#define CHECK_EQ(a, b)                                                       \
	do {                                                                 \
		__typeof__(a) gm_a_ = (a);                                   \
		__typeof__(b) gm_b_ = (b);                                   \
		if ((uint64_t)gm_a_ != (uint64_t)gm_b_)                                 \
			gm_test_fail(__FILE__, __LINE__,                     \
				     "CHECK_EQ(%s, %s): %" PRId64 " (0x%" PRIx64 \
				     ") != %" PRId64 " (0x%" PRIx64 ")",     \
				     #a, #b, (int64_t)gm_a_, (uint64_t)gm_a_, \
				     (int64_t)gm_b_, (uint64_t)gm_b_);       \
	} while (0)

#define CHECK_NE(a, b)                                                       \
	do {                                                                 \
		__typeof__(a) gm_a_ = (a);                                   \
		__typeof__(b) gm_b_ = (b);                                   \
		if ((uint64_t)gm_a_ == (uint64_t)gm_b_)                                \
			gm_test_fail(__FILE__, __LINE__,                     \
				     "CHECK_NE(%s, %s): both %" PRId64       \
				     " (0x%" PRIx64 ")",                      \
				     #a, #b, (int64_t)gm_a_, (uint64_t)gm_a_); \
	} while (0)

/* Checks a gm_*_validate(obj, &reason) style call returned 0. */
#define CHECK_VALID(call_with_reason, reason)                                \
	do {                                                                 \
		const char *reason = NULL;                                   \
		int gm_rc_ = (call_with_reason);                             \
		if (gm_rc_ != 0)                                             \
			gm_test_fail(__FILE__, __LINE__,                     \
				     "%s failed (%d): %s", #call_with_reason, \
				     gm_rc_, reason ? reason : "?");          \
	} while (0)

#endif /* GMTRACK_TEST_HARNESS_H */
