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
#include <cpuid.h>
#define KLF_X86_LEVELS 1

/* The x86-64 micro-architecture level (2 for the baseline, 3 for
 * x86-64-v3, 4 for x86-64-v4) that this CPU and its OS run: every feature
 * the level's -march allows the compiler to use, from CPUID, and the
 * register state the OS saves (XGETBV). The same test with GCC and clang. */
static int x86_64_level(void) {
    unsigned a, b, c, d, ecx1, ebx7, ecx_ext;
    if (!__get_cpuid(1, &a, &b, &ecx1, &d)) return 2;
    if (!__get_cpuid_count(7, 0, &a, &ebx7, &c, &d)) return 2;
    if (!__get_cpuid(0x80000001, &a, &b, &ecx_ext, &d)) return 2;
    if (!(ecx1 & (1u << 27))) return 2; /* OSXSAVE: XGETBV works */
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    int v3 = (ecx1 & (1u << 12)) && (ecx1 & (1u << 22)) && (ecx1 & (1u << 23)) && /* FMA MOVBE POPCNT */
             (ecx1 & (1u << 28)) && (ecx1 & (1u << 29)) &&                      /* AVX F16C */
             (ebx7 & (1u << 3)) && (ebx7 & (1u << 5)) && (ebx7 & (1u << 8)) &&  /* BMI1 AVX2 BMI2 */
             (ecx_ext & (1u << 5)) &&                                           /* LZCNT */
             (xcr0_lo & 0x6) == 0x6;                                            /* SSE, AVX state */
    if (!v3) return 2;
    int v4 = (ebx7 & (1u << 16)) && (ebx7 & (1u << 17)) && (ebx7 & (1u << 28)) && /* F DQ CD */
             (ebx7 & (1u << 30)) && (ebx7 & (1u << 31)) &&                      /* BW VL */
             (xcr0_lo & 0xE0) == 0xE0;                                          /* opmask, ZMM state */
    return v4 ? 4 : 3;
}
#else
#define KLF_X86_LEVELS 0
#endif

int klfast_cpu_has_level(int i) {
    if (i <= 0 || i >= klfast_n_levels) return i == 0;
    const char *name = klfast_isa_levels[i]->name;
#if KLF_X86_LEVELS
    if (strcmp(name, "avx2") == 0) return x86_64_level() >= 3;
    if (strcmp(name, "avx512") == 0) return x86_64_level() >= 4;
#endif
    (void)name;
    return 0;
}
