/* The flat-term floor of benchmarks/shapes.py: the time to read n elements
 * of p and q and add one measure term per element, with the engine's own
 * vector log (src/engine/simd.h), as one flat array: no rows, no row sums,
 * no sum checks, no special values, no output. Where klfast takes much
 * longer than this, the time goes to the row structure around the terms,
 * not to the log. Built by shapes.py (cc -O2 -march=native -fopenmp).
 *
 *   mode 1: sum of x log(x~ / y~)     (kl's term, log_ratio)
 *   mode 2: sum of -x log(x~) over the elements of p and of q (entropy's
 *           term, NEG_LOG; shapes.py gives it two halves of one input)
 * with x~ = max(x, 1e-12). Returns the sum, so the work is not optimised
 * away; benchmarks/test_shapes.py checks it against scipy. */
#include "engine/simd.h"
#include <omp.h>

#define FLAT_FN(NAME, T, V, LANES, LOG_RATIO, NEG_LOG, VMAX)                                \
    static double NAME##_part(int mode, const T *p, const T *q, long n) {                   \
        V a[4] = {{0}}, e = (V){0} + (T)1e-12;                                              \
        double t = 0.0;                                                                     \
        long j = 0;                                                                         \
        for (; j + 4 * LANES <= n; j += 4 * LANES)                                          \
            for (int s = 0; s < 4; s++) {                                                   \
                V x, y;                                                                     \
                __builtin_prefetch(p + j + 2048 / sizeof(T) + s * LANES);                   \
                __builtin_prefetch(q + j + 2048 / sizeof(T) + s * LANES);                   \
                memcpy(&x, p + j + s * LANES, sizeof(V));                                   \
                memcpy(&y, q + j + s * LANES, sizeof(V));                                   \
                if (mode == 1)                                                              \
                    a[s] += x * LOG_RATIO(VMAX(x, e), VMAX(y, e));                          \
                else                                                                        \
                    a[s] += x * NEG_LOG(VMAX(x, e)) + y * NEG_LOG(VMAX(y, e));              \
            }                                                                               \
        for (int s = 0; s < 4; s++)                                                         \
            for (int l = 0; l < LANES; l++) t += a[s][l];                                   \
        for (; j < n; j++) { /* the tail, scalar */                                         \
            T x = p[j] > (T)1e-12 ? p[j] : (T)1e-12, y = q[j] > (T)1e-12 ? q[j] : (T)1e-12; \
            t += mode == 1 ? p[j] * log((double)x / y)                                      \
                           : -(p[j] * log((double)x) + q[j] * log((double)y));             \
        }                                                                                   \
        return t;                                                                           \
    }                                                                                       \
    double NAME(int mode, const T *p, const T *q, long n, int threads) {                    \
        double sum = 0.0;                                                                   \
        _Pragma("omp parallel num_threads(threads) reduction(+ : sum)") {                   \
            int id = omp_get_thread_num(), nt = omp_get_num_threads();                      \
            long per = (n / nt) & ~(long)63, lo = id * per;                                 \
            sum += NAME##_part(mode, p + lo, q + lo, id == nt - 1 ? n - lo : per);          \
        }                                                                                   \
        return sum;                                                                         \
    }

#if KLF_NEG_LOG_F32
#define FLAT_NEG_LOG_F32(x) neg_log_f32(x)
#else
#define FLAT_NEG_LOG_F32(x) log_ratio_f32((vf){0} + 1.0f, (x))
#endif
#define FLAT_NEG_LOG_F64(x) log_ratio_f64((vd){0} + 1.0, (x))

FLAT_FN(flat_f64, double, vd, VD_LANES, log_ratio_f64, FLAT_NEG_LOG_F64, vmax_f64)
FLAT_FN(flat_f32, float, vf, VF_LANES, log_ratio_f32, FLAT_NEG_LOG_F32, vmax_f32)
