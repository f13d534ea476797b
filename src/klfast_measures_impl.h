/* The measures for one element type (KLF_T, native vectors KLF_V) at one
 * level (KLF_ISA): included by klfast_isa_impl.h, which sets the KLF_ parameters
 * undefined at the end. No include guard.
 *
 * With x = p (times 1/sum(p) when normalizing), y = q likewise, and
 * x~ = max(x, eps), y~ = max(y, eps), each lane accumulates:
 *   kl             x log(x~/y~)                  0 where x == 0
 *   jeffreys       (x - y) log(x~/y~)            0 where x == y
 *   entropy        -x log(x~)                    0 where x == 0
 *   cross_entropy  -x log(y~)                    0 where x == 0
 *   js             x log(x/m) + y log(y/m)       m = (x + y)/2, 0 terms at 0;
 *                                                 the row's sum halved
 *
 * When eps >= 2 * (smallest normal), x~ and y~ are normal numbers and the
 * "0 where" rules hold without a select: 0 * log(finite) is 0, and
 * log(x~/y~) is exactly 0 when x == y. Smaller eps (eps=0) runs a checked
 * variant that flags rows whose logs would see a zero or subnormal.
 *
 * A row is read in blocks of 64 bytes (NSUB native vectors); lane l of the
 * row's sum takes elements j = l mod (64 / sizeof(T)) at every level. Blocks
 * come in groups of KLF_GROUP (float32: 4 blocks, summed in float before one
 * widening to the double accumulators); the rest of the row is one shorter
 * group whose last vectors are loaded in part (masked loads, zeros after
 * the row's end, which add exactly 0 to every measure). Lanes are combined
 * in a fixed order at the end, so a row gives the same bits on every thread
 * and at every address.
 *
 * A row function returns the row's value, or sets *special for a row the
 * exact scalar path must compute: invalid entries (negative, NaN, inf),
 * entries >= HUGE, logs of zeros or subnormals, a row sum that cannot be
 * normalized, and a sum that overflowed (in float32 or double). */

#define KLF_MFN(m) KLF_FN(KLF_CAT(KLF_CAT(klfast_, m), KLF_CAT(_, KLF_TS)))
#define T KLF_T
#define V KLF_V
#define M KLF_M
#define U KLF_U
#define LANES ((int)(sizeof(V) / sizeof(T))) /* per native vector */
#define BLOCK ((int)(64 / sizeof(T)))          /* per 64-byte block */
#define NSUB (64 / (int)sizeof(V))
#define DLANES ((int)(sizeof(klf_vd) / sizeof(double))) /* per accumulator */
#define NACC (BLOCK / DLANES)                           /* accumulators */
#define PREFETCH (2048 / (int)sizeof(T))          /* elements ahead */
/* groups whose row sums are added in T before they are widened */
#define KLF_SUM_GROUPS (KLF_GROUP == 1 ? 64 : 16)
#define SEL(m, a, b) ((V)(((M)(a) & (m)) | ((M)(b) & ~(m))))
#define BCAST(s) ((V){0} + (T)(s))
#define BITS(s) ((U){0} + (s))
#if defined(KLF_FMAX)
/* the CPU's max: for a NaN it returns b, and a NaN is flagged anyway */
#define MAX_NONNEG(a, b) KLF_FMAX(a, b)
#elif KLF_INT_COMPARE
#define MAX_NONNEG(a, b) SEL((M)(a) > (M)(b), (a), (b))
#else
#define MAX_NONNEG(a, b) SEL((M)((a) > (b)), (a), (b))
#endif
/* Entries outside [+0, HUGE) are "out of range": negative (and -0.0), NaN,
 * inf, and values >= HUGE (2^1022, 2^126), for which a + b' in the log
 * could overflow. A row with one is looked at closer (row_check). */
#if KLF_INT_COMPARE
/* Compares on bit patterns (non-negative floats order like their bits):
 * one integer compare each. */
#define OUT_OF_RANGE(v) ((M)((U)(v) >= BITS(KLF_HUGE_BITS)))
#define POSITIVE(v) ((M)(v) > (M){0})
/* in [0, 2 * smallest normal): log_ratio or the halving in js is not exact */
#define TINY(v) ((M)(v) < (M)BITS(KLF_TWO_MIN_BITS))
#define TINY_POS(v) ((M)(((U)(v) - BITS(1)) < BITS(KLF_TWO_MIN_BITS - 1)))
#else
/* SSE2 has no 64-bit integer compare: float compares (-0.0 passes). */
#define OUT_OF_RANGE(v) (~(M)(((v) >= BCAST(0)) & ((v) < BCAST(KLF_HUGE))))
#define POSITIVE(v) ((M)((v) > BCAST(0)))
#define TINY(v) ((M)((v) < BCAST(2 * KLF_TMIN)))
#define TINY_POS(v) (POSITIVE(v) & TINY(v))
#endif
#if KLF_UMAX
/* Out-of-range entries are those whose bit patterns, as unsigned integers,
 * are >= HUGE's: keep the largest pattern, one max per vector. */
#define BAD U
#define NOTE_INVALID(b, v) ((b) = KLF_UMAX_OP((b), (U)(v)))
#define IS_INVALID(b) ((M)((b) >= BITS(KLF_HUGE_BITS)))
#else
#define BAD M
#define NOTE_INVALID(b, v) ((b) |= OUT_OF_RANGE(v))
#define IS_INVALID(b) (b)
#endif

/* checked: eps < 2 * smallest normal, so x~, y~ may be zero or subnormal */
KLF_INLINE void KLF_MFN(kl_block)(V x, V y, V e, int checked, M *flag, V *sum) {
    V xt = MAX_NONNEG(x, e), yt = MAX_NONNEG(y, e), t;
    if (checked) {
        /* x == 0 takes log(y~/y~): log(0/y~) would make subnormals (slow) */
        M pos = POSITIVE(x);
        *flag |= pos & (TINY(xt) | TINY(yt));
        t = KLF_LOG_RATIO(SEL(pos, xt, yt), yt);
        *sum = SEL(pos, *sum + x * t, *sum);
    } else {
        *sum += x * KLF_LOG_RATIO(xt, yt);
    }
}

KLF_INLINE void KLF_MFN(jeffreys_block)(V x, V y, V e, int checked, M *flag, V *sum) {
    V xt = MAX_NONNEG(x, e), yt = MAX_NONNEG(y, e);
    V t = *sum + (x - y) * KLF_LOG_RATIO(xt, yt);
    if (checked) {
        M differ = (M)(x != y);
        *flag |= differ & (TINY(xt) | TINY(yt));
        t = SEL(differ, t, *sum);
    }
    *sum = t;
}

KLF_INLINE void KLF_MFN(entropy_block)(V x, V y, V e, int checked, M *flag, V *sum) {
    (void)y;
    V xt = MAX_NONNEG(x, e);
    V t = *sum + x * KLF_LOG_RATIO(BCAST(1), xt);
    if (checked) {
        M pos = POSITIVE(x);
        *flag |= pos & TINY(xt);
        t = SEL(pos, t, *sum);
    }
    *sum = t;
}

KLF_INLINE void KLF_MFN(cross_entropy_block)(V x, V y, V e, int checked, M *flag, V *sum) {
    V yt = MAX_NONNEG(y, e);
    V t = *sum + x * KLF_LOG_RATIO(BCAST(1), yt);
    if (checked) {
        M pos = POSITIVE(x);
        *flag |= pos & TINY(yt);
        t = SEL(pos, t, *sum);
    }
    *sum = t;
}

/* No eps. Per lane, with hi = max(x, y), lo = min(x, y), m = (hi + lo)/2,
 *   x log(x/m) + y log(y/m) = (hi + lo) log(hi/m) + lo log(lo/hi):
 * log(hi/m) lies in [0, ln2] and needs no exponent (LOG_HI, its own division
 * and no integer work), and a zero can only be lo. The lanes sum these
 * doubled terms (one multiply fewer); the row's sum is halved, exactly.
 * Both logs take h = max(hi, smallest normal), never 0. Where lo is 0 the
 * second log is log(h/h), exactly 0, and 0 * 0 adds nothing: no select, and
 * no zero inside a log (it would make subnormals, 30x slower). Where lo is 0
 * and hi is tiny, LOG_HI(h, 0) is still exactly its ln2. */
KLF_INLINE void KLF_MFN(js_block)(V x, V y, V e, int checked, M *flag, V *sum) {
    (void)e;
    (void)checked;
#if defined(KLF_FMAX)
    V hi = KLF_FMAX(x, y), lo = KLF_FMIN(x, y);
#else
    M gt = (M)(x > y);
    V hi = SEL(gt, x, y), lo = SEL(gt, y, x);
#endif
    V h = MAX_NONNEG(hi, BCAST(KLF_TMIN));
    V a = SEL(POSITIVE(lo), lo, h); /* lo, or h where lo is 0: log(h/h) = 0 */
    *flag |= TINY_POS(lo);
    V u = *sum + (hi + lo) * KLF_LOG_HI(h, lo); /* twice the terms */
    *sum = u + lo * KLF_LOG_RATIO(a, h);
}

/* The BLOCK lanes of a row's sum (lane l is acc[l / DLANES][l % DLANES]),
 * folded in halves (l + 8, then l + 4, l + 2, l + 1): the same order at
 * every level. */
typedef double KLF_MFN(v8d) __attribute__((vector_size(64)));
typedef double KLF_MFN(v4d) __attribute__((vector_size(32)));
typedef double KLF_MFN(v2d) __attribute__((vector_size(16)));
KLF_INLINE double KLF_MFN(lane_sum)(const klf_vd *acc) {
    KLF_MFN(v8d) a, b;
    memcpy(&a, acc, sizeof(a));
    if (BLOCK == 16) {
        memcpy(&b, (const char *)acc + sizeof(a), sizeof(b));
        a += b;
    }
    KLF_MFN(v4d) a4 = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    KLF_MFN(v2d) a2 = __builtin_shufflevector(a4, a4, 0, 1) + __builtin_shufflevector(a4, a4, 2, 3);
    return a2[0] + a2[1];
}

KLF_INLINE int KLF_MFN(any_lane)(M flag) {
#if KLF_X86
    return KLF_ANY(flag);
#else
    int any = 0;
    for (int l = 0; l < LANES; l++) any |= flag[l] != 0;
    return any;
#endif
}

/* 1 / sum(x) in double: 0 when the row must take the exact path (a sum of 0,
 * NaN or inf, or 1 / sum overflowing). Every element is widened before it
 * is added. */
KLF_INLINE double KLF_MFN(row_scale)(const T *x, ptrdiff_t k) {
    klf_vd acc[NACC];
    V v;
    for (int a = 0; a < NACC; a++) acc[a] = (klf_vd){0};
    ptrdiff_t j = 0;
    for (; j + BLOCK <= k; j += BLOCK) {
        __builtin_prefetch(x + j + PREFETCH);
        for (int s = 0; s < NSUB; s++) {
            memcpy(&v, x + j + s * LANES, sizeof(V));
            KLF_ADD(acc, s, v);
        }
    }
    if (j < k) { /* the tail, padded with zeros */
        T tail[BLOCK];
        for (int l = 0; l < BLOCK; l++) tail[l] = j + l < k ? x[j + l] : (T)0;
        for (int s = 0; s < NSUB; s++) {
            memcpy(&v, tail + s * LANES, sizeof(V));
            KLF_ADD(acc, s, v);
        }
    }
    double s = KLF_MFN(lane_sum)(acc);
    if (!(s > 0.0 && s <= DBL_MAX)) return 0.0;
    double inv = 1.0 / s;
    return inv <= DBL_MAX ? inv : 0.0;
}

/* The first n (0 <= n <= LANES) elements at src, zeros after them; the
 * lanes past n are never read. */
KLF_INLINE V KLF_MFN(load_part)(const T *src, int n) {
#if defined(KLF_LOADN)
    return KLF_LOADN(src, n);
#else
    T buf[LANES];
    V v;
    for (int l = 0; l < LANES; l++) buf[l] = l < n ? src[l] : (T)0;
    memcpy(&v, buf, sizeof(V));
    return v;
#endif
}

/* Adds the row sums kept in T (xs, ys: NSUB vectors) into the double
 * accumulators (xacc, yacc) and clears them. */
KLF_INLINE void KLF_MFN(widen_sums)(V *xs, V *ys, klf_vd *xacc, klf_vd *yacc, int uses_q) {
    for (int s = 0; s < NSUB; s++) {
        KLF_ADD(xacc, s, xs[s]);
        xs[s] = (V){0};
        if (uses_q) {
            KLF_ADD(yacc, s, ys[s]);
            ys[s] = (V){0};
        }
    }
}

/* One native vector of a row, its first n elements when partial (a zero
 * adds exactly 0 to every measure): record invalid entries, scale, and add
 * the measure's terms to *sum (one fused multiply-add). */
#define KLF_ROW_VEC(NAME, USES_Q)                                                           \
    KLF_INLINE void KLF_MFN(KLF_CAT(NAME, _vec))(const T *pb, const T *qb, int partial, int n, \
                                              V e, double sp, double sq, int normalize,     \
                                              int checked, BAD *bad, M *flag, V *sum,       \
                                              V *xsum, V *ysum) {                           \
        V x, y = {0};                                                                       \
        if (partial) {                                                                      \
            x = KLF_MFN(load_part)(pb, n);                                                  \
            if (USES_Q) y = KLF_MFN(load_part)(qb, n);                                      \
        } else {                                                                            \
            memcpy(&x, pb, sizeof(V));                                                      \
            if (USES_Q) memcpy(&y, qb, sizeof(V));                                          \
        }                                                                                   \
        NOTE_INVALID(*bad, x);                                                              \
        if (USES_Q) NOTE_INVALID(*bad, y);                                                  \
        if (normalize) {                                                                    \
            x = KLF_SCALE(x, sp);                                                           \
            if (USES_Q) y = KLF_SCALE(y, sq);                                               \
        } else { /* the row sums, for the check that rows sum to 1 */                      \
            *xsum += x;                                                                     \
            if (USES_Q) *ysum += y;                                                         \
        }                                                                                   \
        KLF_MFN(KLF_CAT(NAME, _block))(x, y, e, checked, flag, sum);                        \
    }

/* nblk (a constant) 64-byte blocks from p, q, summed in T and widened into
 * acc (float64, one block a group, sums into acc directly); when partial,
 * only the first r elements. */
#define KLF_ROW_GROUP(NAME, USES_Q)                                                         \
    KLF_INLINE void KLF_MFN(KLF_CAT(NAME, _group))(const T *p, const T *q, int nblk,        \
                                                   int partial, int r, V e, double sp,      \
                                                   double sq, int normalize, int checked,   \
                                                   klf_vd *acc, V *xs, V *ys, BAD *bad,     \
                                                   M *flag) {                               \
        _Pragma("GCC unroll 8") for (int b = 0; b < nblk; b++) {                            \
            __builtin_prefetch(p + b * BLOCK + PREFETCH);                                   \
            if (USES_Q) __builtin_prefetch(q + b * BLOCK + PREFETCH);                       \
        }                                                                                   \
        _Pragma("GCC unroll 8") for (int s = 0; s < NSUB; s++) {                            \
            V g = {0};                                                                      \
            V *sum = KLF_GROUP == 1 ? (V *)&acc[s] : &g;                                    \
            _Pragma("GCC unroll 8") for (int b = 0; b < nblk; b++) {                        \
                int o = b * BLOCK + s * LANES;                                              \
                int n = r - o < 0 ? 0 : r - o > LANES ? LANES : r - o;                      \
                KLF_MFN(KLF_CAT(NAME, _vec))(p + o, q + o, partial, n, e, sp, sq,           \
                                             normalize, checked, bad, flag, sum, &xs[s],    \
                                             &ys[s]);                                       \
            }                                                                               \
            if (KLF_GROUP != 1) KLF_ADD(acc, s, g);                                         \
        }                                                                                   \
    }

/* the row's last r elements as one group of NBLK blocks */
#define KLF_REST(NAME, NBLK)                                                                \
    KLF_MFN(KLF_CAT(NAME, _group))(p + j, q + j, NBLK, 1, r, e, sp, sq, normalize, checked, \
                                   acc, xs, ys, &bad, &flag)

/* The row loop, specialised by the caller for constant uses_q, normalize
 * and checked: groups of KLF_GROUP 64-byte blocks, then the rest as one
 * shorter group whose last vectors are loaded in part. */
#define KLF_ROW_LOOP(NAME, USES_Q)                                                          \
    KLF_ROW_VEC(NAME, USES_Q)                                                               \
    KLF_ROW_GROUP(NAME, USES_Q)                                                             \
    KLF_INLINE double KLF_MFN(KLF_CAT(NAME, _loop))(const T *p, const T *q, ptrdiff_t k,    \
                                                    T eps, double sp, double sq,            \
                                                    int normalize, int checked,             \
                                                    int *special, int *maybe_bad,           \
                                                    double *sums) {                         \
        klf_vd acc[NACC], xacc[NACC], yacc[NACC];                                           \
        for (int a = 0; a < NACC; a++) acc[a] = xacc[a] = yacc[a] = (klf_vd){0};            \
        /* the row sums (for the check that rows sum to 1), added in T for         */     \
        /* KLF_SUM_GROUPS groups at a time, then widened into xacc, yacc: in float32 */   \
        /* a lane adds 64 entries before widening (relative error below 4e-6)      */     \
        V xs[NSUB], ys[NSUB];                                                               \
        int pending = 0;                                                                    \
        for (int a = 0; a < NSUB; a++) xs[a] = ys[a] = (V){0};                              \
        M flag = {0};                                                                       \
        BAD bad = {0};                                                                      \
        V e = BCAST(eps);                                                                   \
        ptrdiff_t j = 0;                                                                    \
        for (; j + KLF_GROUP * BLOCK <= k; j += KLF_GROUP * BLOCK) {                        \
            KLF_MFN(KLF_CAT(NAME, _group))(p + j, q + j, KLF_GROUP, 0, 0, e, sp, sq,        \
                                           normalize, checked, acc, xs, ys, &bad, &flag);   \
            /* float64 sums stay in xs: no counter in its loop */                          \
            if (KLF_GROUP != 1 && !normalize && ++pending == KLF_SUM_GROUPS) {              \
                KLF_MFN(widen_sums)(xs, ys, xacc, yacc, USES_Q);                            \
                pending = 0;                                                                \
            }                                                                               \
        }                                                                                   \
        int r = (int)(k - j);                                                               \
        switch ((r + BLOCK - 1) / BLOCK) { /* nblk must be a constant */               \
        case 1: KLF_REST(NAME, 1); break;                                                   \
        case 2: KLF_REST(NAME, 2); break;                                                   \
        case 3: KLF_REST(NAME, 3); break;                                                   \
        case 4: KLF_REST(NAME, 4); break;                                                   \
        default: break; /* r == 0 */                                                        \
        }                                                                                   \
        *maybe_bad = KLF_MFN(any_lane)(IS_INVALID(bad));                                    \
        double sum = KLF_MFN(lane_sum)(acc);                                                \
        if (!normalize) {                                                                   \
            KLF_MFN(widen_sums)(xs, ys, xacc, yacc, USES_Q);                                \
            sums[0] = KLF_MFN(lane_sum)(xacc);                                              \
            sums[1] = USES_Q ? KLF_MFN(lane_sum)(yacc) : sums[0];                           \
        }                                                                                   \
        /* a sum that overflowed (in T or in double) goes to the exact path */              \
        *special = KLF_MFN(any_lane)(flag) || !(fabs(sum) <= DBL_MAX);                      \
        return sum;                                                                         \
    }

/* For a row the vector check flagged: 1 when x holds an entry the fast
 * path cannot take (negative, NaN, inf, >= HUGE), 0 when it only held -0.0,
 * which the kernels sum as the zero it is. */
KLF_INLINE int KLF_MFN(row_check)(const T *x, ptrdiff_t k) {
    int bad = 0;
    for (ptrdiff_t j = 0; j < k; j++) bad |= !(x[j] >= (T)0 && x[j] < KLF_HUGE);
    return bad;
}

#define KLF_LOOP_CALL(NAME, NORMALIZE, CHECKED)                                             \
    KLF_MFN(KLF_CAT(NAME, _loop))(p, q, k, (T)eps, sp, sq, NORMALIZE, CHECKED, special,    \
                                  &maybe_bad, sums)

#define KLF_ROW(NAME, USES_Q, IS_JS)                                                         \
    KLF_ROW_LOOP(NAME, USES_Q)                                                              \
    static double KLF_MFN(NAME)(const T *p, const T *q, ptrdiff_t k, double eps,            \
                                int normalize, int *special, double *sums) {                \
        double sp = 1.0, sq = 1.0, s;                                                       \
        int checked = !(eps >= 2.0 * (double)KLF_TMIN), maybe_bad = 0;                      \
        *special = 0;                                                                       \
        sums[0] = sums[1] = 1.0; /* normalized rows sum to 1 */                             \
        if (normalize) {                                                                    \
            sp = KLF_MFN(row_scale)(p, k);                                                  \
            if (USES_Q && sp != 0.0) sq = KLF_MFN(row_scale)(q, k);                         \
            if (sp == 0.0 || sq == 0.0) {                                                   \
                *special = 1;                                                               \
                return 0.0;                                                                 \
            }                                                                               \
            s = checked ? KLF_LOOP_CALL(NAME, 1, 1) : KLF_LOOP_CALL(NAME, 1, 0);            \
        } else {                                                                            \
            s = checked ? KLF_LOOP_CALL(NAME, 0, 1) : KLF_LOOP_CALL(NAME, 0, 0);            \
        }                                                                                   \
        if (maybe_bad && (KLF_MFN(row_check)(p, k) || (USES_Q && KLF_MFN(row_check)(q, k))))  \
            *special = 1;                                                                   \
        return IS_JS ? (s > 0.0 ? 0.5 * s : 0.0) : s; /* js: halved exactly, at least 0 */   \
    }

KLF_ROW(kl, 1, 0)
KLF_ROW(jeffreys, 1, 0)
KLF_ROW(entropy, 0, 0)
KLF_ROW(cross_entropy, 1, 0)
KLF_ROW(js, 1, 1)

#undef KLF_ROW
#undef KLF_LOOP_CALL
#undef KLF_ROW_LOOP
#undef SEL
#undef BCAST
#undef BITS
#undef MAX_NONNEG
#undef OUT_OF_RANGE
#undef TINY_POS
#undef NOTE_INVALID
#undef BAD
#undef IS_INVALID
#undef KLF_ROW_VEC
#undef KLF_ROW_GROUP
#undef KLF_REST
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
#undef DLANES
#undef NACC
#undef PREFETCH
#undef KLF_SUM_GROUPS
/* this file's parameters, set by klfast_isa_impl.h for each element type */
#undef KLF_T
#undef KLF_TS
#undef KLF_V
#undef KLF_M
#undef KLF_U
#undef KLF_HUGE_BITS
#undef KLF_HUGE
#undef KLF_TWO_MIN_BITS
#undef KLF_SCALE
#undef KLF_ADD
#undef KLF_GROUP
#undef KLF_UMAX
#undef KLF_UMAX_OP
#undef KLF_LOADN
#undef KLF_FMAX
#undef KLF_TMIN
#undef KLF_LOG_RATIO
#undef KLF_LOG_HI
#undef KLF_FMIN
