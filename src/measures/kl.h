/* Kullback-Leibler divergence, KL(P || Q).
 *
 *   kl = sum_j x_j log(x~_j / y~_j),   x~ = max(x, eps), y~ = max(y, eps)
 *
 * x = p and y = q (divided by their row sums when normalizing). Terms with
 * x_j == 0 are 0, whatever y_j is. With eps = 0, x_j > 0 and y_j == 0 give
 * +inf (as scipy.special.rel_entr).
 *
 * Vector term: when eps >= 2 * (smallest normal) ("unchecked"), x~ and y~
 * are normal and 0 * log(finite) is already 0: no select. Checked (smaller
 * eps): lanes with x == 0 take log(y~/y~) (log(0/y~) would make subnormals,
 * which are slow), and a lane whose log would see a zero or subnormal flags
 * the row for the exact path. */
#if defined(KLF_ELEMENT) /* the vector term, for the element type T */
KLF_INLINE void F(kl_logs)(V x, V y, V e, int checked, M *flag, V *l) {
    V xt = VMAX(x, e), yt = VMAX(y, e);
    if (checked) {
        M pos = POSITIVE(x);
        *flag |= pos & (TINY(xt) | TINY(yt));
        l[0] = LOG_RATIO(VSEL(pos, xt, yt), yt);
    } else {
        l[0] = LOG_RATIO(xt, yt);
    }
}
KLF_INLINE void F(kl_add)(V x, V y, const V *l, int checked, V *sum) {
    (void)y;
    *sum = checked ? VSEL(POSITIVE(x), *sum + x * l[0], *sum) : *sum + x * l[0];
}
#elif !defined(KLFAST_KL_EXACT)
#define KLFAST_KL_EXACT
/* The exact term times f, for a, b >= 0 already normalized. */
static inline double klf_kl_exact(double a, double b, double eps, double f) {
    double at = a > eps ? a : eps, bt = b > eps ? b : eps;
    return a > 0.0 ? (a * f) * klf_log_ratio(at, bt) : 0.0;
}
#endif
