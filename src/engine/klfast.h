/* The contract between the compiled kernels and their Cython callers.
 *
 * A row function reduces one row of length k, reading pointers only (never
 * Python objects), and never allocates.
 *
 * Divergences (one per measure and element type):
 *   returns        the row's value
 *   sums[0..1]     sum(p) and sum(q) of the row as given (sum(p) twice for
 *                  entropy; 1 when normalizing), for the check that rows are
 *                  distributions; meaningless when *special is set
 *   *special = 1   the row must be computed by the exact scalar path
 *                  (engine/exact.h): an invalid entry (negative, NaN, inf),
 *                  an entry >= 2^1022 (2^126), a zero or subnormal inside a
 *                  log (eps below the smallest normal), a row sum that cannot
 *                  be normalized, or a sum that overflowed
 *
 * Inputs in any form (probabilities, log-probabilities, logits), and the
 * losses from logits (one per element type): see engine/loss_rows.h.
 * Returns NaN for an invalid row, or sets *special for a loss row the exact
 * path must compute.
 *
 * Each instruction-set level (levels/<name>.c, compiled with its own flags)
 * exports one klf_level table; engine/dispatch.c lists the levels built and
 * finds the ones this CPU runs.
 */
#ifndef KLFAST_H
#define KLFAST_H

#include <stddef.h>
#include <stdint.h>

enum { KLFAST_KL = 0, KLFAST_JEFFREYS = 1, KLFAST_ENTROPY = 2, KLFAST_CROSS_ENTROPY = 3,
       KLFAST_JS = 4, KLFAST_N_MEASURES = 5 };

/* X(name, code, arg) for each measure in the order of the codes: the one
 * list the kernels' instantiations and the levels' tables expand. */
#define KLFAST_EACH_MEASURE(X, arg)                                                          \
    X(kl, KLFAST_KL, arg) X(jeffreys, KLFAST_JEFFREYS, arg) X(entropy, KLFAST_ENTROPY, arg)  \
    X(cross_entropy, KLFAST_CROSS_ENTROPY, arg) X(js, KLFAST_JS, arg)

/* The form of an input row. */
enum { KLFAST_PROBS = 0, KLFAST_LOG_PROBS = 1, KLFAST_LOGITS = 2 };

/* The parameters of one call of the forms kernel (engine/loss_rows.h),
 * shared by its rows. The float32 kernels use the *_f32 copies: eps_f32 is
 * the largest float32 <= eps, so that p > eps_f32 exactly when p > eps for
 * every float32 p. */
typedef struct {
    int measure;    /* KLFAST_KL ... KLFAST_JS; the losses: KL or CROSS_ENTROPY */
    int form[2];    /* KLFAST_PROBS ... of p and q (the losses: target, logits) */
    int normalize;  /* probabilities are divided by their row sum */
    int loss;       /* a loss: log q is not floored at log eps, and a row whose
                       scaled logits (min - max) / T of q reach -inf goes to
                       the exact path */
    double tol;     /* |sum - 1| allowed for probabilities (not normalized) and
                       for exp of log-probabilities; inf: no check */
    double inv_t[2];   /* 1 / T of logits (1 for the other forms) */
    double eps;
    double log_eps;    /* log(eps), -inf for eps == 0 */
    double log_prob_max; /* the largest log-probability accepted */
    double grad_scale; /* 1 / T, divided by the rows for a mean */
    float inv_t_f32[2];
    float eps_f32;
    float log_eps_f32;
    float log_prob_max_f32;
    float grad_scale_f32;
} klfast_forms_params;

typedef double (*klfast_row_f64)(const double *p, const double *q, ptrdiff_t k, double eps,
                                 int normalize, int *special, double *sums);
typedef double (*klfast_row_f32)(const float *p, const float *q, ptrdiff_t k, double eps,
                                 int normalize, int *special, double *sums);
/* float16 rows (their bits), computed as float32 rows: the same result */
typedef double (*klfast_row_f16)(const uint16_t *p, const uint16_t *q, ptrdiff_t k, double eps,
                                 int normalize, int *special, double *sums);
/* The same for the n <= lanes_f64_width (lanes_f32_width) distributions
 * of a strip at once (engine/lanes_rows.h), with the caller's finish done:
 * element j of distribution r at p[r * p_ls + j * p_es]; out[r * out_s]
 * = the row function's value times scale, bit for bit, or NaN when the
 * row's sums are not within tol of 1 (counted in *n_bad). Returns the
 * distributions the exact path must compute (bit r), whose out is not
 * written. stream: results may go past the cache (non-temporal stores of
 * whole 64-byte aligned vectors, engine/simd.h store_line), for outputs
 * far larger than the cache; the thread then calls klfast_stream_fence
 * before its results are read elsewhere. */
typedef uint64_t (*klfast_lanes_f64)(const double *p, ptrdiff_t p_ls, ptrdiff_t p_es,
                                     const double *q, ptrdiff_t q_ls, ptrdiff_t q_es, int n,
                                     ptrdiff_t k, double eps, int normalize, double tol,
                                     double scale, double *out, ptrdiff_t out_s, int stream,
                                     int *n_bad);
typedef uint64_t (*klfast_lanes_f32)(const float *p, ptrdiff_t p_ls, ptrdiff_t p_es,
                                     const float *q, ptrdiff_t q_ls, ptrdiff_t q_es, int n,
                                     ptrdiff_t k, double eps, int normalize, double tol,
                                     double scale, float *out, ptrdiff_t out_s, int stream,
                                     int *n_bad);

/* Orders a thread's non-temporal stores (lanes' stream) before its later
 * stores, so that a thread that sees those (the end of its share of a
 * call) sees the results. */
static inline void klfast_stream_fence(void) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("sfence" ::: "memory");
#endif
}
/* ns <= KLFAST_STRIPS_MAX whole strips of 64 distributions in one call,
 * read as lanes_f64 reads them (element j of distribution r at p[r * p_ls
 * + j * p_es]): the results of lanes_f64 for each strip, special[s] its
 * return value. Two kinds: short distributions not normalized (k <= 16)
 * that lanes_f64 keeps in registers, rows back to back or consecutive
 * distributions (then ns >= 1; stream as lanes_f64's); and longer
 * consecutive distributions (p_ls = q_ls = 1: columns of a C-ordered
 * array, rows of a Fortran-ordered one; ns >= 2), read together along the
 * rows (a strip at a time reads a 512-byte segment of each row, rows
 * apart) in scratch: strips_scratch bytes of any alignment. Returns 1; or
 * 0, having written only *n_bad = 0, for any other call (then lanes_f64
 * strip by strip). */
/* 32, read together (float32 shorter than 400 elements: 16 at a time,
 * lanes_rows.h SWEEP_F32_K). 64 against 32, 50,000 columns of 1,000, B/A
 * on 1 / 2 threads: float64 1.02 / 1.05, float32 0.89 / 1.05 (measured
 * again on w25: float64 kl 1.01 / 1.06, float32 kl 0.88 / 0.96, entropy
 * 1.04 / 1.13). */
#define KLFAST_STRIPS_MAX 32
typedef int (*klfast_strips_f64)(const double *p, ptrdiff_t p_ls, ptrdiff_t p_es, const double *q,
                                  ptrdiff_t q_ls, ptrdiff_t q_es, int ns, ptrdiff_t k, double eps,
                                  int normalize, double tol, double scale, double *out,
                                  ptrdiff_t out_s, int stream, int *n_bad, uint64_t *special,
                                  void *scratch);
typedef int (*klfast_strips_f32)(const float *p, ptrdiff_t p_ls, ptrdiff_t p_es, const float *q,
                                  ptrdiff_t q_ls, ptrdiff_t q_es, int ns, ptrdiff_t k, double eps,
                                  int normalize, double tol, double scale, float *out,
                                  ptrdiff_t out_s, int stream, int *n_bad, uint64_t *special,
                                  void *scratch);
typedef double (*klfast_forms_row_f64)(const double *p, const double *q, double *g, ptrdiff_t k,
                                       const klfast_forms_params *prm, int *special);
typedef double (*klfast_forms_row_f32)(const float *p, const float *q, float *g, ptrdiff_t k,
                                       const klfast_forms_params *prm, int *special);

/* KL, entropy and cross-entropy of rows of logits up to this long: one row per lane
 * (engine/logits_lanes.h). A tile costs the same for one row as for a full
 * one, and the row kernels take three 128-byte blocks from 33 elements on.
 * Tiles of rows against the row kernels (ab_builds --logits 1, float64,
 * B/A of a build with 64 against one with 32, 1 / 2 threads; kl | entropy
 * | cross_entropy): k = 33 0.39 / 0.40 | 0.31 / 0.32 | 0.38 / 0.38, 48
 * 0.60 / 0.55 | 0.51 / 0.61 | 0.66 / 0.75, 64 0.70 / 0.64 | 0.64 / 0.59 |
 * 0.80 / 0.85. A lone row's call (1 x k, out=) took 1.6 us against 1.1 us
 * at k = 33, 2.3 us against 1.1 us at 64 (kl; entropy 1.2 / 0.95, 1.5 /
 * 0.95). */
#define KLFAST_LOGITS_SHORT_MAX 64
/* The losses' rows up to this long, likewise: the row kernel reads float64
 * rows of 17 to 32 elements as two whole 128-byte blocks, the same time for
 * all of them, while a tile's time grows with k. Against it (ab_builds,
 * float64, kl_loss without | with the gradient, 1 / 2 threads): k = 24 0.67 /
 * 0.58 | 0.69 / 0.68, k = 32 0.93 / 1.08 | 0.95 / 1.25. */
#define KLFAST_LOSS_SHORT_MAX 24
/* A loss row's exact path (src/_exact.pxd), for the rows the kernel flags */
typedef double (*klfast_exact_loss_f64)(const klfast_forms_params *prm, const double *p,
                                        const double *q, double *g, ptrdiff_t k);
typedef double (*klfast_exact_loss_f32)(const klfast_forms_params *prm, const float *p,
                                        const float *q, float *g, ptrdiff_t k);
typedef ptrdiff_t (*klfast_logits_tiles_f64)(const double *p, ptrdiff_t p_rs, const double *q,
                                             ptrdiff_t q_rs, double *g, ptrdiff_t g_rs,
                                             ptrdiff_t n, ptrdiff_t k,
                                             const klfast_forms_params *prm,
                                             const int64_t *index, double *out, double scale,
                                             klfast_exact_loss_f64 exact);
typedef ptrdiff_t (*klfast_logits_tiles_f32)(const float *p, ptrdiff_t p_rs, const float *q,
                                             ptrdiff_t q_rs, float *g, ptrdiff_t g_rs,
                                             ptrdiff_t n, ptrdiff_t k,
                                             const klfast_forms_params *prm,
                                             const int64_t *index, double *out, double scale,
                                             klfast_exact_loss_f32 exact);

/* float16 rows (their bits) of the forms kernel: KL of two rows of logits
 * (engine/logits_kl_rows.h, which forms_f64 and forms_f32 try first too);
 * *special = 1 for any other row, which the caller widens to float32 for
 * forms_f32. */
typedef double (*klfast_forms_row_f16)(const uint16_t *p, const uint16_t *q, float *g,
                                       ptrdiff_t k, const klfast_forms_params *prm,
                                       int *special);

typedef struct {
    const char *name;
    klfast_row_f64 f64[KLFAST_N_MEASURES];
    klfast_row_f32 f32[KLFAST_N_MEASURES];
    klfast_forms_row_f64 forms_f64;
    klfast_forms_row_f32 forms_f32;
    /* y = exp(x) (fn 0: plain, 1: wide) or log(x) (fn 2), lane by lane: the
     * tests' window on the vector math */
    void (*math_f64)(int fn, const double *x, double *y, ptrdiff_t n);
    void (*math_f32)(int fn, const float *x, float *y, ptrdiff_t n);
    klfast_lanes_f64 lanes_f64[KLFAST_N_MEASURES];
    klfast_lanes_f32 lanes_f32[KLFAST_N_MEASURES];
    int lanes_f64_width, lanes_f32_width; /* distributions per call: 64 */
    /* y[j] = x[j * es] as float32, j < n, from float16 (kind 0) or
     * bfloat16 (kind 1) bits (engine/widen.h) */
    void (*widen16)(int kind, const uint16_t *x, ptrdiff_t es, float *y, ptrdiff_t n);
    klfast_row_f16 f16[KLFAST_N_MEASURES];
    klfast_forms_row_f16 forms_f16;
    klfast_strips_f64 strips_f64[KLFAST_N_MEASURES];
    klfast_strips_f32 strips_f32[KLFAST_N_MEASURES];
    size_t strips_scratch; /* bytes for KLFAST_STRIPS_MAX strips, either dtype */
    /* The lanes contract for n <= 64 C-ordered rows (p_es = q_es = 1) read
     * row by row, their sums 8 rows at a time (engine/divergence_rows.h) */
    klfast_lanes_f64 block_f64[KLFAST_N_MEASURES];
    klfast_lanes_f32 block_f32[KLFAST_N_MEASURES];
    /* KL, entropy, cross-entropy and the losses of short rows of logits,
     * tiles of rows one per lane (engine/loss_rows.h) */
    klfast_logits_tiles_f64 logits_tiles_f64;
    klfast_logits_tiles_f32 logits_tiles_f32;
} klfast_isa;

/* engine/dispatch.c: the levels of this build, slowest first (index 0 runs
 * everywhere), and whether this CPU runs level i. */
extern const klfast_isa *const klfast_isa_levels[];
extern const int klfast_n_levels;
extern const char *const klfast_missing_levels;
int klfast_cpu_has_level(int i);

#endif
