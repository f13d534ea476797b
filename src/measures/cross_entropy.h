/* Cross-entropy H(P, Q) = H(P) + KL(P || Q).
 *
 *   cross_entropy = -sum_j x_j log(y~_j),   y~ = max(y, eps)
 *
 * Terms with x_j == 0 are 0. With eps = 0, x_j > 0 and y_j == 0 give +inf.
 *
 * Vector term: -log(y~) is NEG_LOG(y~) (as entropy's); checked, lanes with
 * x > 0 whose y~ is zero or subnormal flag the row for the exact path. */
#if defined(KLF_ELEMENT)
KLF_INLINE void F(cross_entropy_logs)(V x, V y, V e, int checked, M *flag, V *l) {
    V yt = VMAX(y, e);
    if (checked) *flag |= POSITIVE(x) & TINY(yt);
    l[0] = NEG_LOG(yt);
}
KLF_INLINE void F(cross_entropy_add)(V x, V y, const V *l, int checked, V *sum) {
    (void)y;
    V t = *sum + x * l[0];
    *sum = checked ? VSEL(POSITIVE(x), t, *sum) : t;
}
#elif !defined(KLFAST_CROSS_ENTROPY_EXACT)
#define KLFAST_CROSS_ENTROPY_EXACT
static inline double klf_cross_entropy_exact(double a, double b, double eps, double f) {
    double bt = b > eps ? b : eps;
    return a > 0.0 ? -(a * f) * log(bt) : 0.0;
}
#endif
