/*
 * src/cpu.c — the CPU features read paths dispatch on, found once at load
 * time with CPUID (<cpuid.h>: no libgcc feature tables, no IFUNC, so it
 * works the same with glibc and musl, in sanitizer builds, and from a
 * constructor that runs before anything else). Read paths branch on the
 * flags (or tests clear them to run the portable paths).
 */
#include "internal.h"

bool gm_cpu_avx2_;
bool gm_cpu_popcnt_;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

#define LEAF1_ECX_POPCNT (1u << 23)
#define LEAF1_ECX_OSXSAVE (1u << 27)
#define LEAF1_ECX_AVX (1u << 28)
#define LEAF7_EBX_AVX2 (1u << 5)
#define LEAF7_EBX_BMI2 (1u << 8)
#define XCR0_SSE_AVX 0x6u /* the OS saves XMM and YMM state */

static unsigned long long xgetbv0(void)
{
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((unsigned long long)hi << 32) | lo;
}

__attribute__((constructor)) static void cpu_detect(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return;
	gm_cpu_popcnt_ = (c & LEAF1_ECX_POPCNT) != 0;
	bool avx = (c & LEAF1_ECX_OSXSAVE) && (c & LEAF1_ECX_AVX) &&
		   (xgetbv0() & XCR0_SSE_AVX) == XCR0_SSE_AVX;
	if (!avx || __get_cpuid_max(0, NULL) < 7)
		return;
	__cpuid_count(7, 0, a, b, c, d);
	gm_cpu_avx2_ = (b & LEAF7_EBX_AVX2) && (b & LEAF7_EBX_BMI2);
}
#endif
