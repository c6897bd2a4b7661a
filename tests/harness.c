/* tests/harness.c — runner for tests/harness.h. */
#include "harness.h"

#include <gmtrack/rcu.h>

#include <setjmp.h>
#include <signal.h>
#include <unistd.h>
#include <stdarg.h>
#include <time.h>

#define GM_TEST_MAX 512

static struct {
	const char *name;
	gm_test_fn fn;
} tests[GM_TEST_MAX];
static int ntests;

static jmp_buf test_jump;
static const char *current_name;
static uint64_t current_seed;
static struct gm_rng current_rng;
static double scale = 1.0;

void gm_test_register(const char *name, gm_test_fn fn)
{
	if (ntests == GM_TEST_MAX) {
		fprintf(stderr, "harness: more than %d tests\n", GM_TEST_MAX);
		exit(2);
	}
	tests[ntests].name = name;
	tests[ntests].fn = fn;
	ntests++;
}

void gm_test_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s:%d: FAIL in %s: ", file, line, current_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  replay with GM_SEED=%" PRIu64 " %s\n",
		current_seed, current_name);
	longjmp(test_jump, 1);
}

void gm_test_note(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "  [%s] ", current_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

struct gm_rng *gm_test_rng(void) { return &current_rng; }
uint64_t gm_test_seed(void) { return current_seed; }

uint64_t gm_test_iters(uint64_t n)
{
	double v = (double)n * scale;
	return v < 1.0 ? 1 : (uint64_t)v;
}

static uint64_t base_seed(void)
{
	const char *env = getenv("GM_SEED");
	if (env && *env)
		return strtoull(env, NULL, 0);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t x = (uint64_t)ts.tv_sec * 1000000007ULL + (uint64_t)ts.tv_nsec;
	return gm_splitmix64(&x);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* setjmp lives here, alone, so no local of the loop can be clobbered. */
static bool run_one(gm_test_fn fn)
{
	if (setjmp(test_jump) != 0) {
		/* A CHECK that failed inside a read-side section left it held;
		 * the next test's grace periods would wait for it forever. */
		while (gm_rcu_read_ongoing())
			gm_rcu_read_unlock();
		return false;
	}
	fn();
	return true;
}

/* A test that hangs (a lost wake-up, a grace period that cannot end) says
 * which one it is and how to replay it, instead of stalling the run. */
static void on_timeout(int sig)
{
	(void)sig;
	static const char msg[] = "\nharness: test timed out: ";
	if (write(2, msg, sizeof(msg) - 1) < 0 ||
	    write(2, current_name, strlen(current_name)) < 0 ||
	    write(2, "\n", 1) < 0)
		_exit(3);
	_exit(3);
}

static bool cpu_avx2_at_start;
bool gm_test_cpu_avx2(void) { return cpu_avx2_at_start; }

int gm_test_main(int argc, char **argv)
{
	cpu_avx2_at_start = gm_cpu_avx2_;
	const char *filter = argc > 1 ? argv[1] : NULL;
	const char *env_scale = getenv("GM_TEST_SCALE");
	if (env_scale && *env_scale)
		scale = strtod(env_scale, NULL);
	uint64_t seed = base_seed();
	int passed = 0, failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, on_timeout);
	const char *env_timeout = getenv("GM_TEST_TIMEOUT");
	unsigned timeout = env_timeout && *env_timeout ? (unsigned)atoi(env_timeout) : 300;
	for (int i = 0; i < ntests; i++) {
		if (filter && !strstr(tests[i].name, filter))
			continue;
		/* Same seed for every test, so GM_SEED replays any of them. */
		current_name = tests[i].name;
		current_seed = seed;
		gm_rng_init(&current_rng, seed);
		double t0 = now_ms();
		fprintf(stderr, "[seed %" PRIu64 "] %s\n", seed, current_name);
		alarm(timeout);
		bool ok = run_one(tests[i].fn);
		alarm(0);
		if (ok) {
			printf("PASS %-40s %8.1f ms\n", current_name, now_ms() - t0);
			passed++;
		} else {
			printf("FAIL %-40s (GM_SEED=%" PRIu64 ")\n", current_name,
			       current_seed);
			failed++;
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	if (passed + failed == 0) {
		fprintf(stderr, "harness: no test matched\n");
		return 2;
	}
	return failed ? 1 : 0;
}
