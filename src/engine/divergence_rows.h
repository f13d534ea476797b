/* The row loop of the divergences, written once for every measure: for the
 * element type of engine/element.h, included by engine/level.h after the
 * measures (src/measures/) whose vector terms it calls. No include guard.
 *
 * With x = p (times 1/sum(p) when normalizing), y = q likewise, each lane
 * accumulates the measure's term (see the measure's file). A row is read in
 * blocks of 64 bytes (NSUB native vectors); lane l of the row's sum takes
 * elements j = l mod (64 / sizeof(T)) at every level. Blocks come in groups
 * of GROUP (float32: 4 blocks, summed in float before one widening to the
 * double accumulators); the rest of the row is one shorter group whose last
 * vectors are loaded in part (masked loads, zeros after the row's end, which
 * add exactly 0 to every measure). Lanes are combined in a fixed order at
 * the end, so a row gives the same bits on every thread and at every
 * address. The row's sums (for the check that rows are distributions) are
 * taken in the same pass. */

#define BLOCK ((int)(64 / sizeof(T)))            /* elements per 64-byte block */
#define NSUB (64 / KLF_VBYTES)                   /* native vectors per block */
#define NACC (BLOCK / VD_LANES)                  /* double accumulators */
#define PREFETCH (2048 / (int)sizeof(T))         /* elements ahead */
#define FAR_PREFETCH (8192 / (int)sizeof(T))     /* entropy's second prefetch (row_group) */
#define NEAR 1                                   /* row_group's prefetch: 2 KB ahead */
#define FAR 2                                    /* and FAR_PREFETCH */
/* groups whose row sums are added in T before they are widened: a float32
 * lane adds 64 entries before widening (relative error below 4e-6) */
#define SUM_GROUPS (GROUP == 1 ? 64 : 16)
/* Entropy's long rows read together (row_loop, row_block_v's together):
 * four rows at a time where a row has at least FOUR_BYTES, else two; float32
 * rows of 16,384 or more (_kernels' _pair_min_k_f32) and rows up to the
 * entropy's row-block limits. Two rows against one at a time: B/A 0.93 /
 * 0.92 at 32,768 x 32,000 (benchmarks/ab_builds.py, 1 / 2 threads); four
 * against two 0.95 / 0.93, 0.98 / 0.97 and at 8,192 x 32,000 0.98 / 0.97
 * (kl 0.95-1.05), but 1.02 / 1.03 at 1,000,000 x 100 (kl 0.98 / 0.98); in
 * a C model one, two and four rows took 1.26, 1.20 and 1.16x a read of two
 * streams. */
#define ROWS_TOGETHER 4
#define FOUR_BYTES 16384

/* Entries outside [+0, 2^1022) (2^126 in float32) are out of range:
 * negative (and -0.0), NaN, inf, and values so large that a + b' in the log
 * could overflow. A row with one is looked at closer (row_check). Two ways
 * to notice them, by the row loop's variant:
 *
 * - As given (rows that should sum to 1): the OR of the bit patterns of all
 *   entries, one OR per vector (AVX-512 ORs x and y into it in one
 *   instruction). An out-of-range entry makes the OR at least HUGE's pattern
 *   (as an unsigned integer, an OR is at least each operand). Entries below
 *   2 never do (their exponent fields lack HUGE's top bits), so rows of
 *   probabilities raise no false alarm; a row with entries of 2 or more (a
 *   row of counts, scored with check_sums=False) may, and row_check clears
 *   it with one scalar pass over the row.
 * - Normalized (rows of any scale): the largest bit pattern (one unsigned
 *   max per vector where the CPU has one) or the OR of per-vector range
 *   checks. */
KLF_INLINE M F(or_is_invalid)(U bits) { return (M)(bits >= BITS(HUGE_BITS)); }
/* 1 when some lane of or_is_invalid(bits) is set (AVX-512: compared into a
 * mask register and tested there, as any_nonfinite_f64 in simd.h). In the
 * row loop's end of a row, with its flag left untested where terms flag
 * nothing: float32 3,000,000 x 32 kl B/A 0.96 / 0.95 (1 / 2 threads). */
#if defined(UGE_MASK)
KLF_INLINE int F(any_invalid)(U bits) { return UGE_MASK(bits, BITS(HUGE_BITS)) != 0; }
#else
KLF_INLINE int F(any_invalid)(U bits) { return any_lane((vi)F(or_is_invalid)(bits)); }
#endif
/* bad_t: U (the largest pattern) or M (OR of range checks); either read as
 * any_invalid((U)b), an M's set lanes being >= HUGE_BITS */
#if defined(UMAX_OP)
typedef U F(bad_t);
KLF_INLINE void F(note_invalid)(F(bad_t) *b, V v) { *b = UMAX_OP(*b, (U)v); }
#else
typedef M F(bad_t);
KLF_INLINE void F(note_invalid)(F(bad_t) *b, V v) { *b |= OUT_OF_RANGE(v); }
#endif

/* 1 when the measure's terms can flag lanes for the exact path: checked
 * terms, and js's always (it has no eps: its tiny entries go exact). Where
 * they cannot, the flag is not tested (row_lanes; lanes_rows.h). */
KLF_INLINE int F(terms_flag)(int measure, int checked) {
    return checked || measure == KLFAST_JS;
}

/* The measure's vector term in two steps (measure is a constant after
 * inlining): the logs of each element, l[0 .. NLOGS) (and the lanes the
 * exact path must redo, into *flag), then their add into *sum. The logs of
 * an element do not depend on its lane, so they may be taken on any
 * vector that holds it (row_block_v) and added in the row's order: the
 * same bits as the term. */
#define NLOGS(measure) ((measure) == KLFAST_JS ? 2 : 1)
KLF_INLINE void F(logs)(int measure, V x, V y, V e, int checked, M *flag, V *l) {
    switch (measure) {
    case KLFAST_KL: F(kl_logs)(x, y, e, checked, flag, l); break;
    case KLFAST_JEFFREYS: F(jeffreys_logs)(x, y, e, checked, flag, l); break;
    case KLFAST_ENTROPY: F(entropy_logs)(x, y, e, checked, flag, l); break;
    case KLFAST_CROSS_ENTROPY: F(cross_entropy_logs)(x, y, e, checked, flag, l); break;
    default: F(js_logs)(x, y, e, checked, flag, l); break;
    }
}
KLF_INLINE void F(add)(int measure, V x, V y, const V *l, int checked, V *sum) {
    switch (measure) {
    case KLFAST_KL: F(kl_add)(x, y, l, checked, sum); break;
    case KLFAST_JEFFREYS: F(jeffreys_add)(x, y, l, checked, sum); break;
    case KLFAST_ENTROPY: F(entropy_add)(x, y, l, checked, sum); break;
    case KLFAST_CROSS_ENTROPY: F(cross_entropy_add)(x, y, l, checked, sum); break;
    default: F(js_add)(x, y, l, checked, sum); break;
    }
}
KLF_INLINE void F(term)(int measure, V x, V y, V e, int checked, M *flag, V *sum) {
    V l[2];
    F(logs)(measure, x, y, e, checked, flag, l);
    F(add)(measure, x, y, l, checked, sum);
}

/* 1 / sum(x) in double: 0 when the row must take the exact path (a sum of 0,
 * NaN or inf, or 1 / sum overflowing). Every element is widened before it
 * is added. */
KLF_INLINE double F(row_scale)(const S *x, ptrdiff_t k) {
    vd acc[NACC];
    V v;
    for (int a = 0; a < NACC; a++) acc[a] = (vd){0};
    ptrdiff_t j = 0;
    for (; j + BLOCK <= k; j += BLOCK) {
        __builtin_prefetch(x + j + PREFETCH);
        for (int s = 0; s < NSUB; s++) {
            LOADV(&v, x + j + s * LANES);
            ADD(acc, s, v);
        }
    }
    for (int s = 0; s < NSUB && j + s * LANES < k; s++) { /* the tail */
        ptrdiff_t n = k - (j + s * LANES);
        ADD(acc, s, LOAD_PART(x + j + s * LANES, n < LANES ? (int)n : LANES));
    }
    double s = lane_sum(acc, BLOCK);
    if (!(s > 0.0 && s <= DBL_MAX)) return 0.0;
    double inv = 1.0 / s;
    return inv <= DBL_MAX ? inv : 0.0;
}

/* Adds the row sums kept in T (xs, ys: NSUB vectors) into the double
 * accumulators (xacc, yacc) and clears them. */
KLF_INLINE void F(widen_sums)(V *xs, V *ys, vd *xacc, vd *yacc, int uses_q) {
    for (int s = 0; s < NSUB; s++) {
        ADD(xacc, s, xs[s]);
        xs[s] = (V){0};
        if (uses_q) {
            ADD(yacc, s, ys[s]);
            ys[s] = (V){0};
        }
    }
}

/* The state of one row while it is read. */
typedef struct {
    V e;               /* eps in every lane */
    double sp, sq;     /* 1 / sum(p), 1 / sum(q) when normalizing */
    F(bad_t) bad;      /* entries out of range (normalized rows) */
    U bits;            /* the OR of all entries' bits (rows as given) */
    M flag;            /* lanes the exact path must redo */
    V xs[NSUB], ys[NSUB]; /* row sums, in T */
} F(row_state);

/* One native vector of a row, its first n elements when partial: note
 * invalid entries, scale (normalize) or add to the row sums, and add the
 * measure's terms to *sum: from their logs at lb (the second at lb + ls)
 * where given (ls > 0: row_block_v), else computed (lb NULL, ls 0). ls is a
 * constant wherever this is inlined: one of the two is compiled. */
KLF_INLINE void F(row_vector)(int measure, const S *pb, const S *qb, const T *lb, ptrdiff_t ls,
                              int partial, int n, int normalize, int checked, F(row_state) *st,
                              int s, V *sum) {
    const int uses_q = measure != KLFAST_ENTROPY;
    V x, y = {0};
    if (partial) {
        x = LOAD_PART(pb, n);
        if (uses_q) y = LOAD_PART(qb, n);
    } else {
        LOADV(&x, pb);
        if (uses_q) LOADV(&y, qb);
    }
    if (normalize) {
        F(note_invalid)(&st->bad, x);
        if (uses_q) F(note_invalid)(&st->bad, y);
    } else {
        st->bits |= uses_q ? (U)x | (U)y : (U)x;
    }
    if (normalize) {
        x = SCALE(x, st->sp);
        if (uses_q) y = SCALE(y, st->sq);
    } else {
        st->xs[s] += x;
        if (uses_q) st->ys[s] += y;
    }
    if (!ls) {
        F(term)(measure, x, y, st->e, checked, &st->flag, sum);
        return;
    }
#if KLF_ELEMENT_BITS != 16
    V l[2];
    for (int i = 0; i < NLOGS(measure); i++) {
        if (partial) l[i] = LOAD_PART(lb + i * ls, n);
        else memcpy(&l[i], lb + i * ls, sizeof(V));
    }
    F(add)(measure, x, y, l, checked, sum);
#endif
}

/* nblk (a constant) 64-byte blocks from p, q into acc; when partial, only
 * their first r elements. Prefetches (prefetch NEAR or FAR; 0 for a copied
 * tail) 2 KB ahead, into the next rows at a row's end, a prefetch per
 * line. B/A against this (benchmarks/ab_builds.py, float32 8,192 x 32,000,
 * entropy | kl, 1 / 2 threads): 4 KB ahead 1.17 / 1.16 | 1.02 / 1.02, 1 KB
 * 1.04 / 1.02 | 1.02 / 1.02; float32 entropy prefetching every other line
 * (the adjacent line left to the hardware) 1.14 / 1.15; a second prefetch
 * per line 6 KB ahead into L2 (prefetcht2) 1.02 / 1.02 | 1.24 / 1.17 (AMD
 * EPYC). Entropy, which reads one stream, takes a second prefetch per line
 * FAR_PREFETCH (8 KB) ahead (FAR) when its rows are read one at a time: on
 * an Intel Xeon (AVX-512) B/A 0.91 / 0.90 at float32 32,768 x 32,000, 0.94
 * / 0.94 at 8,192 x 32,000 (kl 1.00 / 0.98, unchanged), float64 4,096 x
 * 32,000 0.96 / 0.92; in a C model of this loop, one row at a time took
 * 1.49x a read of two streams, with the second prefetch 1.26x, and two
 * rows read together 1.15x (row_loop, ROWS_TOGETHER). */
KLF_INLINE void F(row_group)(int measure, const S *p, const S *q, const T *lb, ptrdiff_t ls,
                             int nblk, int partial, int r, int normalize, int checked,
                             F(row_state) *st, vd *acc, int prefetch) {
    const int uses_q = measure != KLFAST_ENTROPY;
#pragma GCC unroll 8
    for (int b = 0; b < nblk && prefetch; b++) {
        __builtin_prefetch(p + b * BLOCK + PREFETCH);
        if (uses_q) __builtin_prefetch(q + b * BLOCK + PREFETCH);
        else if (prefetch == FAR) __builtin_prefetch(p + b * BLOCK + FAR_PREFETCH);
    }
#pragma GCC unroll 8
    for (int s = 0; s < NSUB; s++) {
        V g = {0};
        V *sum = GROUP == 1 ? (V *)&acc[s] : &g;
#pragma GCC unroll 8
        for (int b = 0; b < nblk; b++) {
            int o = b * BLOCK + s * LANES;
            int n = r - o < 0 ? 0 : r - o > LANES ? LANES : r - o;
            F(row_vector)(measure, p + o, q + o, ls ? lb + o : NULL, ls, partial, n, normalize,
                          checked, st, s, sum);
        }
        if (GROUP != 1) ADD(acc, s, g);
    }
}

#if KLF_ELEMENT_BITS == 32
/* The BLOCK (16) lanes of row sums in T at xs folded to 8 in T, lane l + 8
 * onto lane l, and widened. */
KLF_INLINE void F(fold8_in_t)(const V *xs, v8d *out) {
    typedef float v8f __attribute__((vector_size(32)));
    v8f h[2];
    memcpy(h, xs, sizeof(h));
    *out = __builtin_convertvector(h[0] + h[1], v8d);
}
#endif

/* One row while the row loop reads it: its state and accumulators. */
typedef struct {
    F(row_state) st;
    vd acc[NACC], xacc[NACC], yacc[NACC];
    int pending; /* groups whose row sums are in st.xs, st.ys */
} F(row_run);

KLF_INLINE void F(run_start)(F(row_run) *a, T eps, double sp, double sq) {
    for (int i = 0; i < NACC; i++) a->acc[i] = a->xacc[i] = a->yacc[i] = (vd){0};
    a->st.e = BCAST(eps);
    a->st.sp = sp;
    a->st.sq = sq;
    a->st.bad = (F(bad_t)){0};
    a->st.bits = (U){0};
    a->st.flag = (M){0};
    for (int s = 0; s < NSUB; s++) a->st.xs[s] = a->st.ys[s] = (V){0};
    a->pending = 0;
}

/* One whole group of GROUP blocks at p, q (the logs at lb where given). */
KLF_INLINE void F(run_group)(int measure, F(row_run) *a, const S *p, const S *q, const T *lb,
                             ptrdiff_t ls, int normalize, int checked, int prefetch) {
    F(row_group)(measure, p, q, lb, ls, GROUP, 0, 0, normalize, checked, &a->st, a->acc,
                 prefetch);
    /* float64 sums stay in xs: no counter in its loop */
    if (GROUP != 1 && !normalize && ++a->pending == SUM_GROUPS) {
        F(widen_sums)(a->st.xs, a->st.ys, a->xacc, a->yacc, measure != KLFAST_ENTROPY);
        a->pending = 0;
    }
}

/* The rest of the row, its r < GROUP * BLOCK elements at p, q (lb), as one
 * shorter group whose last vectors are loaded in part, and the row's end:
 * v, *flag and *maybe_bad as row_loop's. */
KLF_INLINE void F(run_end)(int measure, F(row_run) *a, const S *p, const S *q, const T *lb,
                           ptrdiff_t ls, int r, int normalize, int checked, int fast, M *flag,
                           int *maybe_bad, v8d *v) {
    const int uses_q = measure != KLFAST_ENTROPY;
    int nblk = (r + BLOCK - 1) / BLOCK; /* nblk <= GROUP */
#if KLF_MASKED_LOADS
    /* (the logs are in cache: no prefetch) */
    const int pf = ls ? 0 : NEAR;
    if (nblk == 1)
        F(row_group)(measure, p, q, lb, ls, 1, 1, r, normalize, checked, &a->st, a->acc, pf);
    else if (GROUP >= 2 && nblk == 2)
        F(row_group)(measure, p, q, lb, ls, 2, 1, r, normalize, checked, &a->st, a->acc, pf);
    else if (GROUP >= 3 && nblk == 3)
        F(row_group)(measure, p, q, lb, ls, 3, 1, r, normalize, checked, &a->st, a->acc, pf);
    else if (GROUP >= 4 && nblk == 4)
        F(row_group)(measure, p, q, lb, ls, 4, 1, r, normalize, checked, &a->st, a->acc, pf);
#else
    /* copied into zero-padded blocks (no masked loads here), and its logs
     * where given */
    if (r > 0) {
        S pt[GROUP * BLOCK], qt[GROUP * BLOCK];
        const T *lr = NULL;
        F(padded_tail)(pt, GROUP * BLOCK, p, r, 0);
        F(padded_tail)(qt, GROUP * BLOCK, uses_q ? q : p, uses_q ? r : 0, 0);
#if KLF_ELEMENT_BITS != 16
        T lt[2 * GROUP * BLOCK];
        if (ls) {
            for (int i = 0; i < NLOGS(measure); i++)
                F(padded_tail)(lt + i * GROUP * BLOCK, GROUP * BLOCK, lb + i * ls, r, 0);
            lr = lt;
            ls = GROUP * BLOCK;
        }
#endif
        if (nblk == 1)
            F(row_group)(measure, pt, qt, lr, ls, 1, 0, 0, normalize, checked, &a->st, a->acc, 0);
        else if (GROUP >= 2 && nblk == 2)
            F(row_group)(measure, pt, qt, lr, ls, 2, 0, 0, normalize, checked, &a->st, a->acc, 0);
        else if (GROUP >= 3 && nblk == 3)
            F(row_group)(measure, pt, qt, lr, ls, 3, 0, 0, normalize, checked, &a->st, a->acc, 0);
        else if (GROUP >= 4 && nblk == 4)
            F(row_group)(measure, pt, qt, lr, ls, 4, 0, 0, normalize, checked, &a->st, a->acc, 0);
    }
#endif
    /* (bad_t: U, bad where >= HUGE_BITS, or M, bad where all bits are set) */
    *maybe_bad = F(any_invalid)(normalize ? (U)a->st.bad : a->st.bits);
    lane_fold8(a->acc, BLOCK, &v[0]);
    *flag = a->st.flag;
#if KLF_ELEMENT_BITS == 32
    if (fast && !normalize) {
        F(fold8_in_t)(a->st.xs, &v[1]);
        if (uses_q) F(fold8_in_t)(a->st.ys, &v[2]);
        else v[2] = v[1];
        return;
    }
#else
    (void)fast;
#endif
    if (!normalize) {
        F(widen_sums)(a->st.xs, a->st.ys, a->xacc, a->yacc, uses_q);
        lane_fold8(a->xacc, BLOCK, &v[1]);
        lane_fold8(uses_q ? a->yacc : a->xacc, BLOCK, &v[2]);
    }
}

/* The row loop for constant measure, nr, normalize, checked and fast:
 * groups of GROUP blocks, then the rest as one shorter group loaded in part.
 * v[0] gets the row's lanes, v[1] and v[2] those of the row sums (unless
 * normalizing), each folded to 8 (lane_fold8); with fast (float32 rows of
 * at most 3 blocks, measures of two sums: row_block), the sums' lanes
 * folded to 8 in float instead (fold8_in_t): near the row loop's, not its
 * bits. lb, ls: the row's logs, or NULL, 0 (row_vector). *flag and
 * *maybe_bad as below. nr > 1 (entropy of rows as given: lb NULL, sp = sq
 * = 1): nr rows p[0 .. nr) read together, a group of each in turn, each
 * with its own run, so each row has the bits it has alone; row i's results
 * in v[3 i .. 3 i + 3), flag[i], maybe_bad[i]. Entropy reads one stream a
 * row, which the prefetchers feed slower than two or four (see row_group
 * and ROWS_TOGETHER). */
KLF_INLINE void F(row_loop)(int measure, int nr, const S *const *p, const S *const *q,
                            const T *lb, ptrdiff_t ls, ptrdiff_t k, T eps, double sp, double sq,
                            int normalize, int checked, int fast, M *flag, int *maybe_bad,
                            v8d *v) {
    const int pf = ls ? 0 : measure == KLFAST_ENTROPY && nr == 1 ? FAR : NEAR;
    F(row_run) a[ROWS_TOGETHER];
#pragma GCC unroll 4
    for (int i = 0; i < nr; i++) F(run_start)(&a[i], eps, sp, sq);
    ptrdiff_t j = 0;
    for (; j + GROUP * BLOCK <= k; j += GROUP * BLOCK) {
#pragma GCC unroll 4
        for (int i = 0; i < nr; i++)
            F(run_group)(measure, &a[i], p[i] + j, q[i] + j, ls ? lb + j : NULL, ls, normalize,
                         checked, pf);
    }
#pragma GCC unroll 4
    for (int i = 0; i < nr; i++)
        F(run_end)(measure, &a[i], p[i] + j, q[i] + j, ls ? lb + j : NULL, ls, (int)(k - j),
                   normalize, checked, fast, &flag[i], &maybe_bad[i], v + 3 * i);
}

/* For a row the vector check flagged: 1 when x holds an entry the fast
 * path cannot take (negative, NaN, inf, >= HUGE), 0 when it only held -0.0,
 * which the kernels sum as the zero it is. */
KLF_INLINE int F(row_check)(const S *x, ptrdiff_t k) {
    int bad = 0;
    for (ptrdiff_t j = 0; j < k; j++) bad |= !(TO_T(x[j]) >= (T)0 && TO_T(x[j]) < HUGE_VALUE);
    return bad;
}

/* 1 when a row the row loop read (its flag and maybe_bad) must take the
 * exact path. */
KLF_INLINE int F(row_special)(int measure, int checked, M flag, int maybe_bad, const S *p,
                              const S *q, ptrdiff_t k) {
    return (F(terms_flag)(measure, checked) && any_lane((vi)flag))
           || (maybe_bad
               && (F(row_check)(p, k) || (measure != KLFAST_ENTROPY && F(row_check)(q, k))));
}

/* One row up to its folded lanes (row_loop, constant normalize and checked;
 * lb: as there): *special = 1 when the row must take the exact path, but for
 * a sum that overflowed (seen when the lanes are summed). */
KLF_INLINE void F(row_lanes)(int measure, const S *p, const S *q, const T *lb, ptrdiff_t ls,
                             ptrdiff_t k, T eps, int normalize, int checked, int fast,
                             int *special, v8d *v) {
    const int uses_q = measure != KLFAST_ENTROPY;
    double sp = 1.0, sq = 1.0;
    int maybe_bad = 0;
    M flag;
    v[0] = v[1] = v[2] = (v8d){0};
    if (normalize) {
        sp = F(row_scale)(p, k);
        if (uses_q && sp != 0.0) sq = F(row_scale)(q, k);
        if (sp == 0.0 || sq == 0.0) {
            *special = 1;
            return;
        }
    }
    F(row_loop)(measure, 1, &p, &q, lb, ls, k, eps, sp, sq, normalize, checked, fast, &flag,
                &maybe_bad, v);
    *special = F(row_special)(measure, checked, flag, maybe_bad, p, q, k);
}

/* Entropy of nr (a constant, 2 to ROWS_TOGETHER) rows as given, read
 * together (row_loop): row_lanes of each, special[0 .. nr), v[0 .. 3 nr). */
KLF_INLINE void F(row_lanes_n)(int nr, const S *const *p, ptrdiff_t k, T eps, int checked,
                               int *special, v8d *v) {
    const int m = KLFAST_ENTROPY;
    M flag[ROWS_TOGETHER];
    int maybe_bad[ROWS_TOGETHER];
    F(row_loop)(m, nr, p, p, NULL, 0, k, eps, 1.0, 1.0, 0, checked, 0, flag, maybe_bad, v);
    for (int i = 0; i < nr; i++)
        special[i] = F(row_special)(m, checked, flag[i], maybe_bad[i], p[i], p[i], k);
}

/* One row of a measure: the contract of engine/klfast.h. */
KLF_INLINE double F(row)(int measure, const S *p, const S *q, ptrdiff_t k, double eps,
                         int normalize, int *special, double *sums) {
    const int uses_q = measure != KLFAST_ENTROPY;
    int checked = !(eps >= 2.0 * (double)TMIN);
    v8d v[3];
    if (normalize) {
        if (checked) F(row_lanes)(measure, p, q, NULL, 0, k, (T)eps, 1, 1, 0, special, v);
        else F(row_lanes)(measure, p, q, NULL, 0, k, (T)eps, 1, 0, 0, special, v);
    } else {
        if (checked) F(row_lanes)(measure, p, q, NULL, 0, k, (T)eps, 0, 1, 0, special, v);
        else F(row_lanes)(measure, p, q, NULL, 0, k, (T)eps, 0, 0, 0, special, v);
    }
    double s = lane_sum8(&v[0]);
    sums[0] = sums[1] = 1.0; /* normalized rows sum to 1 */
    if (!normalize) {
        sums[0] = lane_sum8(&v[1]);
        sums[1] = uses_q ? lane_sum8(&v[2]) : sums[0];
    }
    /* a sum that overflowed (in T or in double) goes to the exact path */
    if (!(fabs(s) <= DBL_MAX)) *special = 1;
    if (measure == KLFAST_JS) return s > 0.0 ? 0.5 * s : 0.0; /* halved exactly, at least 0 */
    return s;
}

#if KLF_ELEMENT_BITS != 16
/* The row loop's sums of a row as given, less 1 (entropy: dy = dx), for
 * row_block_v's fast check where it cannot decide; out of line (rare). */
static __attribute__((noinline)) void F(sums_off)(int measure, const S *p, const S *q,
                                                  ptrdiff_t k, T eps, int checked,
                                                  double *dx, double *dy) {
    int special;
    v8d v[3];
    F(row_lanes)(measure, p, q, NULL, 0, k, eps, 0, checked, 0, &special, v);
    *dx = lane_sum8(&v[1]) - 1.0;
    *dy = measure != KLFAST_ENTROPY ? lane_sum8(&v[2]) - 1.0 : *dx;
}

/* Rows of up to PRE_K elements ending within a 64-byte block: row_block_v
 * takes their logs first (pre_logs). */
#define PRE_K 64

/* The logs (F(logs)) of the n elements at p and q into l[0 .. n) (the
 * second log at l + ls), on whole vectors, the last overlapping the one
 * before it (an element's logs are the same in any lane): 0 when an element
 * flags its row for the exact path, or n < LANES. */
KLF_INLINE int F(pre_logs)(int measure, const S *p, const S *q, ptrdiff_t n, T eps,
                           int checked, T *l, ptrdiff_t ls) {
    const int uses_q = measure != KLFAST_ENTROPY;
    if (n < LANES) return 0;
    V e = BCAST(eps), x, y = {0}, v[2];
    M flag = {0};
    for (ptrdiff_t o = 0; o < n; o += LANES) {
        ptrdiff_t a = o + LANES <= n ? o : n - LANES;
        __builtin_prefetch(p + a + PREFETCH);
        LOADV(&x, p + a);
        if (uses_q) {
            __builtin_prefetch(q + a + PREFETCH);
            LOADV(&y, q + a);
        }
        F(logs)(measure, x, y, e, checked, &flag, v);
        for (int i = 0; i < NLOGS(measure); i++) memcpy(l + i * ls + a, &v[i], sizeof(V));
    }
    return !(F(terms_flag)(measure, checked) && any_lane((vi)flag));
}

/* n <= 64 C-ordered rows (element j of row r at p[r * p_ls + j]) for
 * constant normalize, checked, fast and pre: each row as F(row) and its
 * caller would give it, bit for bit, 8 rows' lanes summed together
 * (lane_sums8). The contract of the lanes functions (engine/klfast.h).
 * pre (rows as given, back to back, of k <= PRE_K elements, ending within a
 * 64-byte block): 8 rows at a time, the logs of their elements first, on
 * whole vectors of the 8 rows read as one array (pre_logs), then added row
 * by row (row_vector), where the row loop alone would take the logs of a
 * last block's zeros too (float32 k = 17: 32 elements' logs for 17). The
 * same bits. 8 rows with an element that flags them take the row loop.
 * B/A against the row block without it (benchmarks/ab_builds.py, 1 and 2
 * threads, kl and entropy), AVX-512: float32 k = 17 0.86-0.90, 20
 * 0.85-0.90, 24 0.92-0.95, 33 0.90-0.93; float64 k = 14 0.92-0.94, 17
 * 0.82-0.91, 20 0.93-0.95; AVX2 float64 k = 17 0.85-0.89, SSE2 0.71-0.80.
 * together (entropy of rows as given, longer than PRE_K): 2 or 4 rows at a
 * time, read together (row_lanes_n); the rest of the 8 alone. */
KLF_INLINE uint64_t F(row_block_v)(int measure, const S *p, ptrdiff_t p_ls, const S *q,
                                   ptrdiff_t q_ls, int n, ptrdiff_t k, T eps, int normalize,
                                   int checked, int fast, int pre, int together, double tol,
                                   double scale, T *out, ptrdiff_t out_s, int *n_bad) {
    const int uses_q = measure != KLFAST_ENTROPY;
    uint64_t special = 0;
    int bad = 0;
    /* fast: the sum check decided from sums near the row loop's (fold8_in_t)
     * where they are far enough from its edges. Each of a row's k <= 48
     * elements (16 lanes of at most 3) is rounded at most 3 times in float
     * on the way into either sum, then in double: the two are within
     * 7 2^-24 (1 + 1e-6) s of the exact sum s, under the margin 2^-20
     * (1 + |tol|) of klf_sum_band, which says where they decide; other
     * rows, and sums that are not finite (a float sum may overflow where
     * the double one does not), take the row loop's sums. Saves the
     * widening and folding of two sums a row (kl at k = 20-48: 0.94-0.97
     * of the time). */
    float band[2];
    klf_sum_band(tol, 0x1p-20, band);
    T logs[2 * 8 * PRE_K]; /* (pre) the logs of 8 rows */
    for (int r0 = 0; r0 < n; r0 += 8) {
        int m = n - r0 < 8 ? n - r0 : 8, sp[8];
        v8d tot[8], xs[8], ys[8], v[3 * ROWS_TOGETHER], s, sx = {0}, sy = {0};
        int taken = pre && F(pre_logs)(measure, p + r0 * k, q + r0 * k, m * k, eps, checked,
                                       logs, 8 * PRE_K);
        for (int i = 0, nr; i < 8; i += nr) {
            nr = together && i + together <= m ? together : 1;
            if (nr > 1) {
                const S *rows[ROWS_TOGETHER];
                for (int t = 0; t < nr; t++) rows[t] = p + (r0 + i + t) * p_ls;
                F(row_lanes_n)(nr, rows, k, eps, checked, &sp[i], v);
            } else if (i < m && taken)
                F(row_lanes)(measure, p + (r0 + i) * k, q + (r0 + i) * k, logs + i * k,
                             8 * PRE_K, k, eps, 0, checked, fast, &sp[i], v);
            else if (i < m)
                F(row_lanes)(measure, p + (r0 + i) * p_ls, q + (r0 + i) * q_ls, NULL, 0, k,
                             eps, normalize, checked, fast, &sp[i], v);
            else
                v[0] = v[1] = v[2] = (v8d){0};
            for (int t = 0; t < nr; t++) {
                tot[i + t] = v[3 * t];
                xs[i + t] = v[3 * t + 1];
                ys[i + t] = v[3 * t + 2];
            }
        }
        lane_sums8(tot, &s);
        if (!normalize) {
            lane_sums8(xs, &sx);
            if (uses_q) lane_sums8(ys, &sy);
            else sy = sx;
        }
        for (int i = 0; i < m; i++) {
            double x = s[i];
            if (sp[i] || !(fabs(x) <= DBL_MAX)) {
                special |= (uint64_t)1 << (r0 + i);
                continue;
            }
            if (measure == KLFAST_JS) x = x > 0.0 ? 0.5 * x : 0.0;
            /* checked_sums (_exact.pxd), normalized rows summing to 1 (so a
             * tol that is NaN or negative gives NaN here too) */
            double dx = normalize ? 0.0 : sx[i] - 1.0, dy = normalize ? 0.0 : sy[i] - 1.0;
            if (fast) {
                double ax = fabs(dx), ay = fabs(dy);
                int pass = ax <= band[0] && ay <= band[0];
                int fail = (ax > band[1] && ax <= DBL_MAX) || (ay > band[1] && ay <= DBL_MAX);
                if (!pass && !fail) /* (NaN too) the row loop's sums */
                    F(sums_off)(measure, p + (r0 + i) * p_ls, q + (r0 + i) * q_ls, k, eps,
                                checked, &dx, &dy);
            }
            if (!(fabs(dx) <= tol && fabs(dy) <= tol))
                x = NAN;
            else
                x *= scale;
            out[(r0 + i) * out_s] = (T)x;
            bad += x != x;
        }
    }
    *n_bad = bad;
    return special;
}

KLF_INLINE uint64_t F(row_block)(int measure, const S *p, ptrdiff_t p_ls, const S *q,
                                 ptrdiff_t q_ls, int n, ptrdiff_t k, double eps, int normalize,
                                 double tol, double scale, T *out, ptrdiff_t out_s,
                                 int *n_bad) {
    int checked = !(eps >= 2.0 * (double)TMIN);
    /* fast sums: float32 rows of at most 3 blocks (the sums' lanes hold
     * them whole; k = 64 took 1.01-1.02 of the time in jeffreys), for
     * measures of two sums (entropy's one: 1.02-1.03 at k = 32) */
    int fast = KLF_ELEMENT_BITS == 32 && k <= 3 * BLOCK && measure != KLFAST_ENTROPY;
    /* logs first (row_block_v): rows back to back that end within a block;
     * float32 only at AVX-512 (AVX2: kl at k = 17-33 took 1.7-2.0 the time,
     * the row's sums kept in memory, not registers; SSE2: entropy 1.15-1.2) */
    int pre = (KLF_ELEMENT_BITS == 64 || KLF_VBYTES == 64) && !normalize && k % BLOCK != 0
              && k <= PRE_K && p_ls == k && (q_ls == k || measure == KLFAST_ENTROPY);
    /* rows read together (ROWS_TOGETHER): entropy's long rows (_kernels'
     * _pair_min_k_* sends them here) */
    int together = 0;
    if (measure == KLFAST_ENTROPY && !normalize && k > PRE_K)
        together = k * (ptrdiff_t)sizeof(T) >= FOUR_BYTES ? 4 : 2;
/* normalize, checked, fast, pre and together as constants */
#define BLOCK_V(N_, C_, F_, P_, R_)                                                     \
    return F(row_block_v)(measure, p, p_ls, q, q_ls, n, k, (T)eps, N_, C_, F_, P_, R_, tol, \
                          scale, out, out_s, n_bad);
    if (normalize && checked) BLOCK_V(1, 1, 0, 0, 0)
    if (normalize) BLOCK_V(1, 0, 0, 0, 0)
    if (together == 4 && checked) BLOCK_V(0, 1, 0, 0, 4)
    if (together == 4) BLOCK_V(0, 0, 0, 0, 4)
    if (together && checked) BLOCK_V(0, 1, 0, 0, 2)
    if (together) BLOCK_V(0, 0, 0, 0, 2)
    if (pre && fast && checked) BLOCK_V(0, 1, 1, 1, 0)
    if (pre && fast) BLOCK_V(0, 0, 1, 1, 0)
    if (pre && checked) BLOCK_V(0, 1, 0, 1, 0)
    if (pre) BLOCK_V(0, 0, 0, 1, 0)
    if (fast && checked) BLOCK_V(0, 1, 1, 0, 0)
    if (fast) BLOCK_V(0, 0, 1, 0, 0)
    if (checked) BLOCK_V(0, 1, 0, 0, 0)
    BLOCK_V(0, 0, 0, 0, 0)
#undef BLOCK_V
}

#define KLF_BLOCK_FN(m, code, _)                                                            \
    static uint64_t ROW_FN(m##_block)(const T *p, ptrdiff_t p_ls, ptrdiff_t p_es, const T *q, \
                                      ptrdiff_t q_ls, ptrdiff_t q_es, int n, ptrdiff_t k,     \
                                      double eps, int normalize, double tol, double scale,   \
                                      T *out, ptrdiff_t out_s, int stream, int *n_bad) {     \
        (void)p_es, (void)q_es; /* 1: the caller's word (_run sends no other) */            \
        (void)stream;                                                                       \
        return F(row_block)(code, p, p_ls, q, q_ls, n, k, eps, normalize, tol, scale, out,   \
                            out_s, n_bad);                                                   \
    }
KLFAST_EACH_MEASURE(KLF_BLOCK_FN, _)
#undef KLF_BLOCK_FN
#endif

#define KLF_ROW_FN(m, code, _)                                                               \
    static double ROW_FN(m)(const S *p, const S *q, ptrdiff_t k, double eps, int normalize,  \
                            int *special, double *sums) {                                    \
        return F(row)(code, p, q, k, eps, normalize, special, sums);                         \
    }
KLFAST_EACH_MEASURE(KLF_ROW_FN, _)
#undef KLF_ROW_FN

#undef BLOCK
#undef NSUB
#undef NACC
#undef PREFETCH
#undef FAR_PREFETCH
#undef NEAR
#undef FAR
#undef SUM_GROUPS
#undef ROWS_TOGETHER
#undef FOUR_BYTES
#undef PRE_K
#undef NLOGS
