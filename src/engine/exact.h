/* The exact scalar terms of every measure (libm's log, double precision),
 * for the rows the vector kernels hand back (zeros or subnormals inside a
 * log, entries near the top of the range, invalid rows to explain). Included
 * by the Cython row loop (src/_kernels.pyx), compiled at the baseline level. */
#ifndef KLFAST_EXACT_H
#define KLFAST_EXACT_H

#include <float.h>
#include <math.h>
#include "klfast.h"

/* log(a / b) for a >= 0, b >= 0, not both 0, without overflow: a / b
 * overflows (or underflows) only for extreme magnitudes such as a subnormal
 * b; log(a) - log(b) is then exact enough and gives +-inf at 0. */
static inline double klf_log_ratio(double a, double b) {
    double r = a / b;
    if (r >= DBL_MIN && r <= DBL_MAX) return log(r); /* a subnormal r has lost digits */
    return log(a) - log(b);
}

#include "../measures/kl.h"
#include "../measures/jeffreys.h"
#include "../measures/entropy.h"
#include "../measures/cross_entropy.h"
#include "../measures/jensen_shannon.h"

/* One term of a row times f (1, or a power of two below 1), for a >= 0 and
 * b >= 0 already normalized. f multiplies the factor in front of the log,
 * so a term whose value is finite but past DBL_MAX / f does not overflow. */
static inline double klf_exact_term(int measure, double a, double b, double eps, double f) {
    switch (measure) {
    case KLFAST_KL: return klf_kl_exact(a, b, eps, f);
    case KLFAST_JEFFREYS: return klf_jeffreys_exact(a, b, eps, f);
    case KLFAST_ENTROPY: return klf_entropy_exact(a, b, eps, f);
    case KLFAST_CROSS_ENTROPY: return klf_cross_entropy_exact(a, b, eps, f);
    default: return klf_js_exact(a, b, eps, f);
    }
}

#endif
