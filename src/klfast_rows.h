/* Fast row kernels of klfast, compiled once per instruction-set level and
 * chosen at run time (no -march=native needed: the default build runs on
 * any x86-64 CPU).
 *
 * Each row function reduces one row of length k and returns its value:
 *   NaN            the row is invalid (negative, NaN or inf entry; with
 *                  normalize, a row sum of 0 or inf): the caller explains it.
 *   sums[0..1]     sum(p) and sum(q) of the row as given (sum(p) twice for
 *                  entropy; 1 when normalizing), for the check that rows are
 *                  distributions; meaningless when *special is set.
 *   *special = 1   the row holds values the fast log does not cover (zero or
 *                  subnormal inside a log, which only happens for eps below
 *                  the smallest normal number): the caller recomputes the row
 *                  with the exact scalar path.
 *
 * The kernels use GCC/Clang vector extensions at each level's native width
 * (SSE2 16 bytes, AVX2 32, AVX-512 64) and read rows in 64-byte blocks.
 * Determinism: every row is summed in a fixed set of lanes (8 doubles, 16
 * floats: element j goes to lane j mod 8 or 16, whatever the vector width),
 * combined in a fixed order, so a row gives the same bits at every address
 * and on every thread. Levels differ by a few ulp (fused multiply-adds).
 */
#ifndef KLFAST_ROWS_H
#define KLFAST_ROWS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE2__)
#include <immintrin.h>
#endif

enum { KLFAST_KL = 0, KLFAST_JEFFREYS = 1, KLFAST_ENTROPY = 2, KLFAST_CROSS_ENTROPY = 3,
       KLFAST_JS = 4, KLFAST_N_MEASURES = 5 };

typedef double (*klfast_row_f64)(const double *p, const double *q, ptrdiff_t k, double eps,
                                 int normalize, int *special, double *sums);
typedef double (*klfast_row_f32)(const float *p, const float *q, ptrdiff_t k, double eps,
                                 int normalize, int *special, double *sums);

typedef struct {
    const char *name;
    klfast_row_f64 f64[KLFAST_N_MEASURES];
    klfast_row_f32 f32[KLFAST_N_MEASURES];
} klfast_isa;

#if defined(__GNUC__)
#define KLF_INLINE static inline __attribute__((always_inline))
#else
#define KLF_INLINE static inline
#endif

#if defined(__GNUC__) && !defined(__clang__)
/* vectors never cross a non-inlined call: no ABI concern */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define KLF_CAT_(a, b) a##b
#define KLF_CAT(a, b) KLF_CAT_(a, b)

/* ---- one copy of the kernels per level ------------------------------- */
#define KLF_ISA baseline
#define KLF_VBYTES 16
#include "klfast_isa_impl.h"
#undef KLF_ISA
#undef KLF_VBYTES

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(_M_X64))
#define KLFAST_HAVE_X86_LEVELS 1

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define KLF_ISA avx2
#define KLF_VBYTES 32
#include "klfast_isa_impl.h"
#undef KLF_ISA
#undef KLF_VBYTES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4,prefer-vector-width=512")
#define KLF_ISA avx512
#define KLF_VBYTES 64
#include "klfast_isa_impl.h"
#undef KLF_ISA
#undef KLF_VBYTES
#pragma GCC pop_options

#else
#define KLFAST_HAVE_X86_LEVELS 0
#endif

#define KLF_TABLE(isa)                                                                   \
    {#isa,                                                                               \
     {klfast_kl_f64_##isa, klfast_jeffreys_f64_##isa, klfast_entropy_f64_##isa,          \
      klfast_cross_entropy_f64_##isa, klfast_js_f64_##isa},                              \
     {klfast_kl_f32_##isa, klfast_jeffreys_f32_##isa, klfast_entropy_f32_##isa,          \
      klfast_cross_entropy_f32_##isa, klfast_js_f32_##isa}}

/* Levels in increasing order; index 0 works everywhere. */
static const klfast_isa klfast_isa_levels[] = {
    KLF_TABLE(baseline),
#if KLFAST_HAVE_X86_LEVELS
    KLF_TABLE(avx2),
    KLF_TABLE(avx512),
#endif
};
#define KLFAST_N_LEVELS ((int)(sizeof(klfast_isa_levels) / sizeof(klfast_isa_levels[0])))

/* 1 when this CPU (and OS) can run level i. */
static int klfast_cpu_has_level(int i) {
    if (i == 0) return 1;
#if KLFAST_HAVE_X86_LEVELS
    __builtin_cpu_init();
    int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
             __builtin_cpu_supports("f16c") && __builtin_cpu_supports("movbe") &&
             __builtin_cpu_supports("popcnt");
    if (i == 1) return v3;
    if (i == 2)
        return v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl");
#endif
    return 0;
}

/* Sum of a read of both inputs: the benchmarks' read floor, vectorised the
 * same way as the kernels. */
static double klfast_read_sum_f64(const double *p, const double *q, ptrdiff_t n) {
    double acc[8] = {0};
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __builtin_prefetch(p + j + 256); /* as the kernels do: 2 KB ahead */
        __builtin_prefetch(q + j + 256);
#pragma omp simd
        for (int l = 0; l < 8; l++) acc[l] += p[j + l] + q[j + l];
    }
    for (; j < n; j++) acc[0] += p[j] + q[j];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static double klfast_read_sum_f32(const float *p, const float *q, ptrdiff_t n) {
    float acc[16] = {0};
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __builtin_prefetch(p + j + 512);
        __builtin_prefetch(q + j + 512);
#pragma omp simd
        for (int l = 0; l < 16; l++) acc[l] += p[j + l] + q[j + l];
    }
    double s = 0.0;
    for (; j < n; j++) s += (double)p[j] + q[j];
    for (int l = 0; l < 16; l++) s += acc[l];
    return s;
}

#endif
