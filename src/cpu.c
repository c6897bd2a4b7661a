/* src/cpu.c — the CPU features read paths dispatch on, found once. */
#include "internal.h"

bool gm_cpu_avx2_;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((constructor)) static void cpu_detect(void)
{
	__builtin_cpu_init(); /* constructors may run before libgcc's */
	gm_cpu_avx2_ = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2");
}
#endif
