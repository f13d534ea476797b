/* Cross-entropy H(P, Q) = H(P) + KL(P || Q).
 *
 *   cross_entropy = -sum_j x_j log(y~_j),   y~ = max(y, eps)
 *
 * Terms with x_j == 0 are 0. With eps = 0, x_j > 0 and y_j == 0 give +inf.
 *
 * Vector term: -log(y~) is NEG_LOG(y~) (as entropy's); checked, lanes with
 * x > 0 whose y~ is zero or subnormal flag the row for the exact path. */
#if defined(KLF_ELEMENT)
KLF_INLINE void F(cross_entropy_term)(V x, V y, V e, int checked, M *flag, V *sum) {
    V yt = VMAX(y, e);
    V t = *sum + x * NEG_LOG(yt);
    if (checked) {
        M pos = POSITIVE(x);
        *flag |= pos & TINY(yt);
        t = VSEL(pos, t, *sum);
    }
    *sum = t;
}
#elif !defined(KLFAST_CROSS_ENTROPY_EXACT)
#define KLFAST_CROSS_ENTROPY_EXACT
static inline double klf_cross_entropy_exact(double a, double b, double eps, double f) {
    double bt = b > eps ? b : eps;
    return a > 0.0 ? -(a * f) * log(bt) : 0.0;
}
#endif
