/* The dispatch table: the instruction-set levels this build compiled,
 * slowest first, and the CPU check that picks among them. Compiled at the
 * baseline level. setup.py defines KLFAST_LEVEL_AVX2 / KLFAST_LEVEL_AVX512
 * for the levels it compiled, and KLFAST_MISSING_LEVELS to say why a level
 * is missing (the compiler or the architecture). */
#include <string.h>

#include "klfast.h"

extern const klfast_isa klfast_level_baseline;
#if KLFAST_LEVEL_AVX2
extern const klfast_isa klfast_level_avx2;
#endif
#if KLFAST_LEVEL_AVX512
extern const klfast_isa klfast_level_avx512;
#endif

const klfast_isa *const klfast_isa_levels[] = {
    &klfast_level_baseline,
#if KLFAST_LEVEL_AVX2
    &klfast_level_avx2,
#endif
#if KLFAST_LEVEL_AVX512
    &klfast_level_avx512,
#endif
};
const int klfast_n_levels = (int)(sizeof(klfast_isa_levels) / sizeof(klfast_isa_levels[0]));

#ifndef KLFAST_MISSING_LEVELS
#define KLFAST_MISSING_LEVELS ""
#endif
const char *const klfast_missing_levels = KLFAST_MISSING_LEVELS;

#if (KLFAST_LEVEL_AVX2 || KLFAST_LEVEL_AVX512) && (defined(__x86_64__) || defined(_M_X64))
/* 1 when the CPU and the OS (saved AVX state) run every feature of the
 * level: __builtin_cpu_supports checks both (GCC and clang). */
static int x86_64_v3(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
           __builtin_cpu_supports("f16c") && __builtin_cpu_supports("movbe") &&
           __builtin_cpu_supports("popcnt");
}

static int x86_64_v4(void) {
    return x86_64_v3() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512cd") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}
#endif

int klfast_cpu_has_level(int i) {
    if (i <= 0 || i >= klfast_n_levels) return i == 0;
    const char *name = klfast_isa_levels[i]->name;
#if (KLFAST_LEVEL_AVX2 || KLFAST_LEVEL_AVX512) && (defined(__x86_64__) || defined(_M_X64))
    if (strcmp(name, "avx2") == 0) return x86_64_v3();
    if (strcmp(name, "avx512") == 0) return x86_64_v4();
#endif
    (void)name;
    return 0;
}
