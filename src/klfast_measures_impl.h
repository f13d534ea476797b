/* The measures for one element type (KLF_T, native vectors KLF_V) at one
 * level (KLF_ISA): included by klfast_isa_impl.h. No include guard.
 *
 * With x = p (times 1/sum(p) when normalizing), y = q likewise, and
 * x~ = max(x, eps), y~ = max(y, eps), each lane accumulates:
 *   kl             x log(x~/y~)                  0 where x == 0
 *   jeffreys       (x - y) log(x~/y~)            0 where x == y
 *   entropy        -x log(x~)                    0 where x == 0
 *   cross_entropy  -x log(y~)                    0 where x == 0
 *   js             (x log(x/m) + y log(y/m))/2   m = (x + y)/2, 0 terms at 0
 *
 * When eps >= 2 * (smallest normal), x~ and y~ are normal numbers and the
 * "0 where" rules hold without a select: 0 * log(finite) is 0, and
 * log(x~/y~) is exactly 0 when x == y. Smaller eps (eps=0) runs a checked
 * variant that flags rows whose logs would see a zero or subnormal.
 *
 * A row is read in blocks of 64 bytes (NSUB native vectors); lane l of the
 * row's sum takes elements j = l mod (64 / sizeof(T)) at every level. The
 * row's tail is run as one block padded with zeros, which add exactly 0 to
 * every measure. Lanes are combined in a fixed order at the end.
 *
 * A row function returns the row's value, or sets *special for a row the
 * exact scalar path must compute: invalid entries (negative, -0.0, NaN, inf),
 * logs of zeros or subnormals, a row sum that cannot be normalized. */

#define KLF_MFN(m) KLF_FN(KLF_CAT(KLF_CAT(klfast_, m), KLF_CAT(_, KLF_TS)))
#define T KLF_T
#define V KLF_V
#define M KLF_M
#define U KLF_U
#define LANES ((int)(sizeof(V) / sizeof(T))) /* per native vector */
#define BLOCK ((int)(64 / sizeof(T)))          /* per 64-byte block */
#define NSUB (64 / (int)sizeof(V))
#define PREFETCH (2048 / (int)sizeof(T))          /* elements ahead */
#define SEL(m, a, b) ((V)(((M)(a) & (m)) | ((M)(b) & ~(m))))
#define BCAST(s) ((V){0} + (T)(s))
#define BITS(s) ((U){0} + (s))
#if KLF_INT_COMPARE
/* Compares on bit patterns (non-negative floats order like their bits):
 * one integer compare each. */
#define MAX_NONNEG(a, b) SEL((M)(a) > (M)(b), (a), (b))
/* not in [+0, max]: negative (and -0.0), NaN, inf */
#define NOT_FINITE_NONNEG(v) ((M)((U)(v) >= BITS(KLF_INF_BITS)))
#define POSITIVE(v) ((M)(v) > (M){0})
/* in [0, 2 * smallest normal): log_ratio or the halving in js is not exact */
#define TINY(v) ((M)(v) < (M)BITS(KLF_TWO_MIN_BITS))
#define TINY_POS(v) ((M)(((U)(v) - BITS(1)) < BITS(KLF_TWO_MIN_BITS - 1)))
#else
/* SSE2 has no 64-bit integer compare: float compares. */
#define MAX_NONNEG(a, b) SEL((M)((a) > (b)), (a), (b))
#define NOT_FINITE_NONNEG(v) (~(M)(((v) >= BCAST(0)) & ((v) <= BCAST(KLF_TMAX))))
#define POSITIVE(v) ((M)((v) > BCAST(0)))
#define TINY(v) ((M)((v) < BCAST(2 * KLF_TMIN)))
#define TINY_POS(v) (POSITIVE(v) & TINY(v))
#endif

/* checked: eps < 2 * smallest normal, so x~, y~ may be zero or subnormal */
KLF_INLINE void KLF_MFN(kl_block)(V x, V y, V e, int checked, M *flag, V *sum) {
    V xt = MAX_NONNEG(x, e), yt = MAX_NONNEG(y, e);
    V t = x * KLF_LOG_RATIO(xt, yt);
    if (checked) {
        M pos = POSITIVE(x);
        *flag |= pos & (TINY(xt) | TINY(yt));
        t = SEL(pos, t, (V){0});
    }
    *sum = t;
}

KLF_INLINE void KLF_MFN(jeffreys_block)(V x, V y, V e, int checked, M *flag, V *sum) {
    V xt = MAX_NONNEG(x, e), yt = MAX_NONNEG(y, e);
    V t = (x - y) * KLF_LOG_RATIO(xt, yt);
    if (checked) {
        M differ = (M)(x != y);
        *flag |= differ & (TINY(xt) | TINY(yt));
        t = SEL(differ, t, (V){0});
    }
    *sum = t;
}

KLF_INLINE void KLF_MFN(entropy_block)(V x, V y, V e, int checked, M *flag, V *sum) {
    (void)y;
    V xt = MAX_NONNEG(x, e);
    V t = x * KLF_LOG_RATIO(BCAST(1), xt);
    if (checked) {
        M pos = POSITIVE(x);
        *flag |= pos & TINY(xt);
        t = SEL(pos, t, (V){0});
    }
    *sum = t;
}

KLF_INLINE void KLF_MFN(cross_entropy_block)(V x, V y, V e, int checked, M *flag, V *sum) {
    V yt = MAX_NONNEG(y, e);
    V t = x * KLF_LOG_RATIO(BCAST(1), yt);
    if (checked) {
        M pos = POSITIVE(x);
        *flag |= pos & TINY(yt);
        t = SEL(pos, t, (V){0});
    }
    *sum = t;
}

/* No eps: log(x/m) only where x > 0 (m > 0 there); zero lanes are
 * selected out. */
KLF_INLINE void KLF_MFN(js_block)(V x, V y, V e, int checked, M *flag, V *sum) {
    (void)e;
    (void)checked;
    V hx = (T)0.5 * x, hy = (T)0.5 * y, m = hx + hy;
    M px = POSITIVE(x), py = POSITIVE(y);
    *flag |= TINY_POS(x) | TINY_POS(y);
    *sum = SEL(px, hx * KLF_LOG_RATIO(x, m), (V){0}) + SEL(py, hy * KLF_LOG_RATIO(y, m), (V){0});
}

/* 1 / sum(x) in double: 0 when the row must take the exact path (a sum of 0,
 * NaN or inf, or 1 / sum overflowing). */
KLF_INLINE double KLF_MFN(row_scale)(const T *x, ptrdiff_t k) {
    KLF_ACC acc[NSUB];
    memset(acc, 0, sizeof(acc));
    T tail[BLOCK];
    V v;
    for (ptrdiff_t j = 0; j < k; j += BLOCK) {
        const T *src = x + j;
        __builtin_prefetch(x + j + PREFETCH);
        if (j + BLOCK > k) { /* the tail, padded with zeros */
            memset(tail, 0, sizeof(tail));
            memcpy(tail, x + j, (size_t)(k - j) * sizeof(T));
            src = tail;
        }
        for (int s = 0; s < NSUB; s++) {
            memcpy(&v, src + s * LANES, sizeof(V));
            acc[s] += KLF_WIDEN(v);
        }
    }
    const double *lanes = (const double *)acc;
    double s = 0.0;
    for (int l = 0; l < BLOCK; l += 2) s += lanes[l] + lanes[l + 1];
    if (!(s > 0.0 && s <= DBL_MAX)) return 0.0;
    double inv = 1.0 / s;
    return inv <= DBL_MAX ? inv : 0.0;
}

/* The row loop, specialised by the caller for constant uses_q, normalize
 * and checked. */
#define KLF_ROW_LOOP(NAME, USES_Q)                                                          \
    KLF_INLINE double KLF_MFN(KLF_CAT(NAME, _loop))(const T *p, const T *q, ptrdiff_t k,    \
                                                    T eps, double sp, double sq,            \
                                                    int normalize, int checked,             \
                                                    int *special) {                         \
        KLF_ACC acc[NSUB];                                                                  \
        memset(acc, 0, sizeof(acc));                                                        \
        M flag = {0};                                                                       \
        V e = BCAST(eps), x, y = {0}, t;                                                    \
        T pt[BLOCK], qt[BLOCK];                                                             \
        for (ptrdiff_t j = 0; j < k; j += BLOCK) {                                          \
            const T *pb = p + j, *qb = q + j;                                               \
            if (j + BLOCK > k) { /* the tail, padded with zeros */                          \
                memset(pt, 0, sizeof(pt));                                                  \
                memset(qt, 0, sizeof(qt));                                                  \
                memcpy(pt, p + j, (size_t)(k - j) * sizeof(T));                             \
                if (USES_Q) memcpy(qt, q + j, (size_t)(k - j) * sizeof(T));                 \
                pb = pt;                                                                    \
                qb = qt;                                                                    \
            }                                                                               \
            /* ask for the data 2 KB ahead: a busy core keeps too few loads in     */  \
            /* flight to stream at the memory's pace (1.74 -> 1.17 ns/el, 1 thread) */  \
            __builtin_prefetch(p + j + PREFETCH);                                           \
            if (USES_Q) __builtin_prefetch(q + j + PREFETCH);                               \
            for (int s = 0; s < NSUB; s++) {                                                \
                memcpy(&x, pb + s * LANES, sizeof(V));                                      \
                if (USES_Q) memcpy(&y, qb + s * LANES, sizeof(V));                          \
                flag |= NOT_FINITE_NONNEG(x);                                               \
                if (USES_Q) flag |= NOT_FINITE_NONNEG(y);                                   \
                if (normalize) {                                                            \
                    x = KLF_SCALE(x, sp);                                                   \
                    if (USES_Q) y = KLF_SCALE(y, sq);                                       \
                }                                                                           \
                KLF_MFN(KLF_CAT(NAME, _block))(x, y, e, checked, &flag, &t);                \
                acc[s] += KLF_WIDEN(t);                                                     \
            }                                                                               \
        }                                                                                   \
        int any = 0;                                                                        \
        for (int l = 0; l < LANES; l++) any |= flag[l] != 0;                                \
        *special = any;                                                                     \
        const double *lanes = (const double *)acc;                                          \
        double s = 0.0;                                                                     \
        for (int l = 0; l < BLOCK; l += 2) s += lanes[l] + lanes[l + 1];                    \
        return s;                                                                           \
    }

#define KLF_ROW(NAME, USES_Q, CLAMP)                                                        \
    KLF_ROW_LOOP(NAME, USES_Q)                                                              \
    static double KLF_MFN(NAME)(const T *p, const T *q, ptrdiff_t k, double eps,            \
                                int normalize, int *special) {                              \
        double sp = 1.0, sq = 1.0, s;                                                       \
        int checked = !(eps >= 2.0 * (double)KLF_TMIN);                                     \
        *special = 0;                                                                       \
        if (normalize) {                                                                    \
            sp = KLF_MFN(row_scale)(p, k);                                                  \
            if (USES_Q && sp != 0.0) sq = KLF_MFN(row_scale)(q, k);                         \
            if (sp == 0.0 || sq == 0.0) {                                                   \
                *special = 1;                                                               \
                return 0.0;                                                                 \
            }                                                                               \
            s = checked ? KLF_MFN(KLF_CAT(NAME, _loop))(p, q, k, (T)eps, sp, sq, 1, 1,      \
                                                        special)                            \
                        : KLF_MFN(KLF_CAT(NAME, _loop))(p, q, k, (T)eps, sp, sq, 1, 0,      \
                                                        special);                           \
        } else {                                                                            \
            s = checked ? KLF_MFN(KLF_CAT(NAME, _loop))(p, q, k, (T)eps, sp, sq, 0, 1,      \
                                                        special)                            \
                        : KLF_MFN(KLF_CAT(NAME, _loop))(p, q, k, (T)eps, sp, sq, 0, 0,      \
                                                        special);                           \
        }                                                                                   \
        return (CLAMP && s < 0.0) ? 0.0 : s;                                                \
    }

KLF_ROW(kl, 1, 0)
KLF_ROW(jeffreys, 1, 0)
KLF_ROW(entropy, 0, 0)
KLF_ROW(cross_entropy, 1, 0)
KLF_ROW(js, 1, 1)

#undef KLF_ROW
#undef KLF_ROW_LOOP
#undef SEL
#undef BCAST
#undef BITS
#undef MAX_NONNEG
#undef NOT_FINITE_NONNEG
#undef TINY_POS
#undef TINY
#undef POSITIVE
#undef KLF_MFN
#undef T
#undef V
#undef M
#undef U
#undef LANES
#undef BLOCK
#undef NSUB
#undef PREFETCH
