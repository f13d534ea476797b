/* Shannon entropy H(P).
 *
 *   entropy = -sum_j x_j log(x~_j),   x~ = max(x, eps)
 *
 * Terms with x_j == 0 are 0. Reads p only (the row loop passes y = 0).
 *
 * Vector term: -log(x~) is NEG_LOG(x~) (engine/element.h: log_ratio(1, x~),
 * or float32's table log without a division where the level has it);
 * checked, lanes with x > 0 whose x~ is zero or subnormal flag the row for
 * the exact path. */
#if defined(KLF_ELEMENT)
KLF_INLINE void F(entropy_logs)(V x, V y, V e, int checked, M *flag, V *l) {
    (void)y;
    V xt = VMAX(x, e);
    if (checked) *flag |= POSITIVE(x) & TINY(xt);
    l[0] = NEG_LOG(xt);
}
KLF_INLINE void F(entropy_add)(V x, V y, const V *l, int checked, V *sum) {
    (void)y;
    V t = *sum + x * l[0];
    *sum = checked ? VSEL(POSITIVE(x), t, *sum) : t;
}
#elif !defined(KLFAST_ENTROPY_EXACT)
#define KLFAST_ENTROPY_EXACT
static inline double klf_entropy_exact(double a, double b, double eps, double f) {
    (void)b;
    double at = a > eps ? a : eps;
    return a > 0.0 ? -(a * f) * log(at) : 0.0;
}
#endif
