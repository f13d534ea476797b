/* Jeffreys divergence, the symmetric J(P, Q) = KL(P || Q) + KL(Q || P).
 *
 *   jeffreys = sum_j (x_j - y_j) log(x~_j / y~_j),   x~, y~ as in kl.h
 *
 * Terms with x_j == y_j are 0 (log(x~/y~) is exactly 0 there when x~ and y~
 * are normal). With eps = 0, a zero against a positive gives +inf.
 *
 * Vector term: unchecked, no select; checked, lanes with x != y whose log
 * would see a zero or subnormal flag the row for the exact path. */
#if defined(KLF_ELEMENT)
KLF_INLINE void F(jeffreys_logs)(V x, V y, V e, int checked, M *flag, V *l) {
    V xt = VMAX(x, e), yt = VMAX(y, e);
    if (checked) *flag |= (M)(x != y) & (TINY(xt) | TINY(yt));
    l[0] = LOG_RATIO(xt, yt);
}
KLF_INLINE void F(jeffreys_add)(V x, V y, const V *l, int checked, V *sum) {
    V t = *sum + (x - y) * l[0];
    *sum = checked ? VSEL((M)(x != y), t, *sum) : t;
}
#elif !defined(KLFAST_JEFFREYS_EXACT)
#define KLFAST_JEFFREYS_EXACT
static inline double klf_jeffreys_exact(double a, double b, double eps, double f) {
    double at = a > eps ? a : eps, bt = b > eps ? b : eps;
    return a != b ? ((a - b) * f) * klf_log_ratio(at, bt) : 0.0;
}
#endif
