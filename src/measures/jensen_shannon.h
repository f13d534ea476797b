/* Jensen-Shannon divergence JS(P, Q) (no eps).
 *
 *   js = sum_j (x_j log(x_j/m_j) + y_j log(y_j/m_j)) / 2,   m = (x + y)/2
 *
 * Terms with x_j == 0 (y_j == 0) are 0; the row's value is clamped at >= 0
 * (rounding cannot make it negative then).
 *
 * Vector term. Per lane, with hi = max(x, y), lo = min(x, y), m = (hi+lo)/2,
 *   x log(x/m) + y log(y/m) = (hi + lo) log(hi/m) + lo log(lo/hi):
 * log(hi/m) lies in [0, ln2] and needs no exponent (log_hi, its own division
 * and no integer work), and a zero can only be lo. The lanes sum these
 * doubled terms (one multiply fewer); the row loop halves the row's sum,
 * exactly. Both logs take h = max(hi, smallest normal), never 0. Where lo is
 * 0 the second log is log(h/h), exactly 0, and 0 * 0 adds nothing: no
 * select, and no zero inside a log (it would make subnormals, 30x slower).
 * Where lo is 0 and hi is tiny, log_hi(h, 0) is still exactly ln2. A
 * positive subnormal lo flags the row for the exact path.
 *
 * Exact term: with hi, lo as above it is
 *   ((hi + lo) log1p((hi - lo)/(hi + lo)) + lo log(lo/hi)) / 2,
 * and log(lo/hi) = log1p((lo - hi)/hi) when lo >= hi/2: hi - lo is exact
 * where the logs are small, so rows that are nearly equal keep their digits
 * (a rounded m or lo/hi would lose them). Subnormals are fine: klf_log_ratio
 * takes them, and only results are halved. */
#if defined(KLF_ELEMENT)
KLF_INLINE void F(js_logs)(V x, V y, V e, int checked, M *flag, V *l) {
    (void)e;
    (void)checked;
    V hi = VMAX(x, y), lo = VMIN(x, y);
    V h = VMAX(hi, BCAST(TMIN));
    V a = VSEL(POSITIVE(lo), lo, h); /* lo, or h where lo is 0: log(h/h) = 0 */
    *flag |= TINY_POS(lo);
    l[0] = LOG_HI(h, lo);
    l[1] = LOG_RATIO(a, h);
}
KLF_INLINE void F(js_add)(V x, V y, const V *l, int checked, V *sum) {
    (void)checked;
    V hi = VMAX(x, y), lo = VMIN(x, y);
    V u = *sum + (hi + lo) * l[0]; /* twice the terms */
    *sum = u + lo * l[1];
}
#elif !defined(KLFAST_JS_EXACT)
#define KLFAST_JS_EXACT
static inline double klf_js_term(double a, double b) {
    double hi = a > b ? a : b, lo = a > b ? b : a, s = hi + lo, lr;
    /* log(2 hi / hi); 0 when both are 0 */
    if (lo == 0.0) return (0.5 * 0.69314718055994530942) * hi;
    lr = lo >= 0.5 * hi ? log1p((lo - hi) / hi) : klf_log_ratio(lo, hi);
    if (s <= DBL_MAX) return 0.5 * (s * log1p((hi - lo) / s) + lo * lr);
    s = 0.5 * hi + 0.5 * lo; /* hi >= 2^1023: halving is exact */
    return s * log1p((0.5 * hi - 0.5 * lo) / s) + 0.5 * (lo * lr);
}

static inline double klf_js_exact(double a, double b, double eps, double f) {
    (void)eps;
    return klf_js_term(a, b) * f; /* at most max(a, b) ln2: finite */
}
#endif
