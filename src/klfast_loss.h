/* Fast row kernels of the losses from logits (klfast.kl_loss,
 * klfast.cross_entropy_loss), compiled once per instruction-set level like
 * the divergence kernels of klfast_rows.h, and chosen at run time: the loss
 * module uses the level klfast._kernels uses (same names, same order).
 *
 * For one row of logits z (length k), temperature T and target row t, with
 * x_j = (z_j - max z) / T and log q_j = x_j - log(sum_i exp(x_i)):
 *   p_j = t_j                                     target probabilities
 *   p_j = exp(log p_j), log p_j likewise from t   target_is_logits
 *   kl  = sum p_j (log p~_j - log q_j)            p~ = max(p, eps); when
 *                                                 target_is_logits, log p~_j
 *                                                 is log p_j if p_j > eps,
 *                                                 else log(eps)
 *   ce  = -sum p_j log q_j
 *   g_j = (S q_j - p_j) * grad_scale              S = sum p (1 for logits)
 * Terms with p_j == 0 are exactly 0 (also where log q_j = -inf).
 *
 * A row function returns the row's value, NaN for an invalid row (a NaN or
 * infinite logit or teacher logit; a target probability that is negative,
 * NaN or infinite, or a target sum past the float64 range) without touching
 * its gradient row, or sets *special for a row the exact scalar path must
 * compute (a target probability above eps but below the smallest normal
 * number, whose log the fast log does not cover: only when eps is below it;
 * scaled logits (z_j - max z) / T past the range of the element type).
 *
 * Three passes over the row, which stays in cache between them: (A) the
 * maximum and minimum of z (and t) and the checks, (B) the sums of
 * exp(x_j) (and of the teacher's), keeping exp(x_j) in the gradient row when
 * one is asked for, (C) the loss terms and the gradient, q_j = exp(x_j) / s.
 * exp and log are computed in the element type, with vector code at each
 * level's native width; rows are read in 128-byte blocks and every sum is
 * kept in fixed lanes (element j in lane j mod 16 or 32) accumulated in
 * float64 and combined in a fixed order, so a row gives the same bits at
 * every address and on every thread.
 */
#ifndef KLFAST_LOSS_H
#define KLFAST_LOSS_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { KLFAST_LOSS_KL = 0, KLFAST_LOSS_CROSS_ENTROPY = 1 };

/* The parameters of one call, shared by its rows. The float32 kernels use
 * the *_f32 copies: eps_f32 is the largest float32 <= eps, so that
 * p > eps_f32 exactly when p > eps for every float32 p. */
typedef struct {
    int loss;             /* KLFAST_LOSS_* */
    int target_is_logits;
    double inv_t;         /* 1 / T */
    double eps;
    double log_eps;       /* log(eps), -inf for eps == 0 */
    double grad_scale;    /* 1 / T, divided by the rows for a mean */
    float inv_t_f32;
    float eps_f32;
    float log_eps_f32;
    float grad_scale_f32;
} klfast_loss_params;

typedef double (*klfast_loss_row_f64)(const double *t, const double *z, double *g,
                                      ptrdiff_t k, const klfast_loss_params *prm,
                                      int *special);
typedef double (*klfast_loss_row_f32)(const float *t, const float *z, float *g,
                                      ptrdiff_t k, const klfast_loss_params *prm,
                                      int *special);

typedef struct {
    const char *name;
    klfast_loss_row_f64 f64;
    klfast_loss_row_f32 f32;
    void (*math_f64)(int fn, const double *x, double *y, ptrdiff_t n);
    void (*math_f32)(int fn, const float *x, float *y, ptrdiff_t n);
} klfast_loss_isa;

#if defined(__GNUC__)
#define KLFL_INLINE static inline __attribute__((always_inline))
#else
#define KLFL_INLINE static inline
#endif

#if defined(__GNUC__) && !defined(__clang__)
/* vectors never cross a non-inlined call: no ABI concern */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define KLFL_CAT_(a, b) a##b
#define KLFL_CAT(a, b) KLFL_CAT_(a, b)

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(_M_X64))
#define KLFAST_LOSS_X86_LEVELS 1
#else
#define KLFAST_LOSS_X86_LEVELS 0
#endif

/* ---- one copy of the kernels per level ------------------------------- */
#define KLFL_ISA baseline
#define KLFL_VBYTES 16
#include "klfast_loss_isa_impl.h"
#undef KLFL_ISA
#undef KLFL_VBYTES

#if KLFAST_LOSS_X86_LEVELS
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define KLFL_ISA avx2
#define KLFL_VBYTES 32
#include "klfast_loss_isa_impl.h"
#undef KLFL_ISA
#undef KLFL_VBYTES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4,prefer-vector-width=512")
#define KLFL_ISA avx512
#define KLFL_VBYTES 64
#include "klfast_loss_isa_impl.h"
#undef KLFL_ISA
#undef KLFL_VBYTES
#pragma GCC pop_options
#endif

#define KLFL_TABLE(isa)                                                              \
    {#isa, klfast_loss_f64_##isa, klfast_loss_f32_##isa, klfast_loss_math_f64_##isa,    \
     klfast_loss_math_f32_##isa}

/* Levels in increasing order, as klfast_isa_levels; index 0 runs everywhere.
 * Which of them this CPU runs is klfast._kernels' business. */
static const klfast_loss_isa klfast_loss_levels[] = {
    KLFL_TABLE(baseline),
#if KLFAST_LOSS_X86_LEVELS
    KLFL_TABLE(avx2),
    KLFL_TABLE(avx512),
#endif
};
#define KLFAST_LOSS_N_LEVELS \
    ((int)(sizeof(klfast_loss_levels) / sizeof(klfast_loss_levels[0])))

#endif
