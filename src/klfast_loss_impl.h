/* The loss row kernel for one element type (KLFL_T, native vectors KLFL_V)
 * at one level (KLFL_ISA): included by klfast_loss_isa_impl.h. The formulas,
 * the passes and the return conventions are in klfast_loss.h. No include
 * guard.
 *
 * Every pass reads the row in blocks of 128 bytes (NSUB native vectors);
 * lane l of a sum takes the elements j = l mod (128 / sizeof(T)) at every
 * level. (Two cache lines, so that even AVX-512 has two independent
 * accumulators per sum: one would be bound by the latency of the add.)
 * The row's tail is one block padded with harmless finite values whose
 * lanes are zeroed before they are summed and never stored. Each pass is
 * specialised (always-inline, constant flags) for what the row needs, so
 * the hot loops carry no tests. */

#define LFN(name) KLFL_FN(KLFL_CAT(KLFL_CAT(klfl_, name), KLFL_CAT(_, KLFL_TS)))
#define T KLFL_T
#define V KLFL_V
#define M KLFL_M
#define NACC (NSUB * KLFL_ACC_PER_V) /* float64 vectors per block */
#define ADD(acc, s, v) KLFL_ADD((acc) + (s) * KLFL_ACC_PER_V, (v))
#define LANES ((int)(sizeof(V) / sizeof(T))) /* per native vector */
#define BLOCK_BYTES 128
#define BLOCK ((int)(BLOCK_BYTES / sizeof(T))) /* per block */
#define NSUB (BLOCK_BYTES / (int)sizeof(V))
#define SEL(m, a, b) ((V)(((M)(a) & (m)) | ((M)(b) & ~(m))))
#define BCAST(s) ((V){0} + (T)(s))
#ifdef KLFL_VMAX
#define VMAX(a, b) KLFL_VMAX((a), (b))
#define VMIN(a, b) KLFL_VMIN((a), (b))
#else
#define VMAX(a, b) SEL((M)((b) > (a)), (b), (a))
#define VMIN(a, b) SEL((M)((b) < (a)), (b), (a))
#endif

/* Lanes summed in a fixed order. */
KLFL_INLINE double LFN(lane_sum)(const klfl_vd *acc) {
    double s = 0.0;
    for (int i = 0; i < NACC; i++)
        for (int l = 0; l < (int)(sizeof(klfl_vd) / sizeof(double)); l += 2)
            s += acc[i][l] + acc[i][l + 1];
    return s;
}

/* A tail block: the n remaining elements of x, then copies of pad. */
KLFL_INLINE const T *LFN(padded)(T *buf, const T *x, int n, T pad) {
    for (int l = n; l < BLOCK; l++) buf[l] = pad;
    memcpy(buf, x, (size_t)n * sizeof(T));
    return buf;
}

/* The lanes of a tail block holding its first n elements. */
KLFL_INLINE void LFN(tail_masks)(M *valid, int n) {
    M iota;
    for (int l = 0; l < LANES; l++) iota[l] = l;
    for (int s = 0; s < NSUB; s++) valid[s] = (M)(iota + s * LANES < n);
}

/* Pass A: maximum and minimum of z (and of t when TL); the checks. Returns 1
 * for an invalid row. SUB (KL of target probabilities with eps below the
 * smallest normal): *special when a target above eps is subnormal. PS: sum
 * the target probabilities (for the gradient, and to find float64 sums that
 * overflow; float32 sums cannot). Tail
 * blocks are padded with z[0] and t[0] (TL) or 0, which change nothing. */
KLFL_INLINE void LFN(block_a)(const T *zb, const T *tb, T eps, int TL, int SUB, int PS, V *mx, V *mn,
                              V *mxt, V *mnt, V *nan, V *nant, V *low, klfl_vd *ps) {
    for (int s = 0; s < NSUB; s++) {
        V x, a;
        memcpy(&x, zb + s * LANES, sizeof(V));
        memcpy(&a, tb + s * LANES, sizeof(V));
        mx[s] = VMAX(mx[s], x);
        mn[s] = VMIN(mn[s], x);
        nan[s] += x * 0; /* NaN from then on iff x is NaN or +-inf */
        nant[s] += a * 0;
        mnt[s] = VMIN(mnt[s], a);
        if (TL) {
            mxt[s] = VMAX(mxt[s], a);
        } else {
            if (PS) ADD(ps, s, a);
            if (SUB) low[s] = VMIN(low[s], SEL((M)(a > eps), a, BCAST(KLFL_TMIN)));
        }
    }
}

KLFL_INLINE int LFN(pass_a)(const T *t, const T *z, ptrdiff_t k, T eps, int TL, int SUB,
                            int PS, T *m_z, T *mn_z, T *m_t, T *mn_t, double *p_sum, int *special) {
    V mx[NSUB], mn[NSUB], mxt[NSUB], mnt[NSUB], nan[NSUB], nant[NSUB], low[NSUB];
    klfl_vd ps[NACC];
    T zt[BLOCK], tt[BLOCK];
    for (int i = 0; i < NACC; i++) ps[i] = (klfl_vd){0};
    for (int s = 0; s < NSUB; s++) {
        mx[s] = mn[s] = BCAST(z[0]);
        mxt[s] = mnt[s] = BCAST(TL ? t[0] : 0);
        nan[s] = nant[s] = BCAST(0);
        low[s] = BCAST(KLFL_TMIN);
    }
    ptrdiff_t j = 0;
    for (; j + BLOCK <= k; j += BLOCK)
        LFN(block_a)(z + j, t + j, eps, TL, SUB, PS, mx, mn, mxt, mnt, nan, nant, low, ps);
    if (j < k)
        LFN(block_a)(LFN(padded)(zt, z + j, (int)(k - j), z[0]),
                     LFN(padded)(tt, t + j, (int)(k - j), TL ? t[0] : 0), eps, TL, SUB, PS, mx, mn,
                     mxt, mnt, nan, nant, low, ps);
    T vmx = mx[0][0], vmn = mn[0][0], vmxt = mxt[0][0], vmnt = mnt[0][0], vlow = KLFL_TMIN;
    int bad = 0;
    for (int s = 0; s < NSUB; s++)
        for (int l = 0; l < LANES; l++) {
            vmx = mx[s][l] > vmx ? mx[s][l] : vmx;
            vmn = mn[s][l] < vmn ? mn[s][l] : vmn;
            vmxt = mxt[s][l] > vmxt ? mxt[s][l] : vmxt;
            vmnt = mnt[s][l] < vmnt ? mnt[s][l] : vmnt;
            vlow = low[s][l] < vlow ? low[s][l] : vlow;
            bad |= nan[s][l] != 0 || nant[s][l] != 0; /* NaN != 0 */
        }
    *m_z = vmx;
    *mn_z = vmn;
    *m_t = vmxt;
    *mn_t = vmnt;
    if (!TL) {
        bad |= !(vmnt >= 0);
        if (PS) {
            *p_sum = LFN(lane_sum)(ps);
            bad |= !(*p_sum <= DBL_MAX);
        }
    }
    *special = SUB && vlow < KLFL_TMIN;
    return bad;
}

/* Pass B: s_z = sum exp(x_j), x_j = (z_j - m_z) / T (and s_t likewise for the
 * teacher logits when TL); with KEEP, exp(x_j) is stored in g. WIDE: some
 * x_j may be below KLFL_EXP_PLAIN_MIN. valid: NULL, or a tail block's
 * lanes. */
KLFL_INLINE void LFN(block_b)(const T *zb, const T *tb, T *gb, T m_z, T m_t, T inv_t, int TL,
                              int KEEP, int WIDE, const M *valid, klfl_vd *az, klfl_vd *at) {
    for (int s = 0; s < NSUB; s++) {
        V x, e, et;
        memcpy(&x, zb + s * LANES, sizeof(V));
        e = KLFL_EXP((x - m_z) * inv_t, WIDE);
        if (valid) e = SEL(valid[s], e, BCAST(0));
        ADD(az, s, e);
        if (KEEP) memcpy(gb + s * LANES, &e, sizeof(V));
        if (TL) {
            memcpy(&x, tb + s * LANES, sizeof(V));
            et = KLFL_EXP((x - m_t) * inv_t, WIDE);
            if (valid) et = SEL(valid[s], et, BCAST(0));
            ADD(at, s, et);
        }
    }
}

KLFL_INLINE void LFN(pass_b)(const T *t, const T *z, T *g, ptrdiff_t k, T m_z, T m_t,
                             T inv_t, int TL, int KEEP, int WIDE, double *s_z, double *s_t) {
    klfl_vd az[NACC], at[NACC];
    for (int i = 0; i < NACC; i++) az[i] = at[i] = (klfl_vd){0};
    ptrdiff_t j = 0;
    for (; j + BLOCK <= k; j += BLOCK)
        LFN(block_b)(z + j, t + j, g + j, m_z, m_t, inv_t, TL, KEEP, WIDE, NULL, az, at);
    if (j < k) {
        int n = (int)(k - j);
        T zt[BLOCK], tt[BLOCK], gt[BLOCK];
        M valid[NSUB];
        LFN(tail_masks)(valid, n);
        LFN(block_b)(LFN(padded)(zt, z + j, n, m_z), TL ? LFN(padded)(tt, t + j, n, m_t) : tt,
                     gt, m_z, m_t, inv_t, TL, KEEP, WIDE, valid, az, at);
        if (KEEP) memcpy(g + j, gt, (size_t)n * sizeof(T));
    }
    *s_z = LFN(lane_sum)(az);
    *s_t = TL ? LFN(lane_sum)(at) : 1.0;
}

/* Pass C: the row's sum of p_j (log p~_j - log q_j) (KL) or p_j log q_j
 * (cross-entropy; the caller negates it); with GRAD, g_j = (S q_j - p_j) *
 * grad_scale from the exp(x_j) pass B left in g. WIDE: the teacher's
 * log-probabilities may be below KLFL_EXP_PLAIN_MIN. */
typedef struct {
    T m_z, m_t, inv_t, log_s_z, log_s_t, inv_s_z, p_sum, eps, log_eps, grad_scale;
} LFN(row_consts);

KLFL_INLINE void LFN(block_c)(const T *zb, const T *tb, T *gb, const LFN(row_consts) *c,
                              int KL, int TL, int GRAD, int WIDE, const M *valid,
                              klfl_vd *acc) {
    for (int s = 0; s < NSUB; s++) {
        V x, a, lp = {0}, lpe = {0};
        memcpy(&x, zb + s * LANES, sizeof(V));
        memcpy(&a, tb + s * LANES, sizeof(V));
        V lq = (x - c->m_z) * c->inv_t - c->log_s_z;
        if (TL) {
            lp = (a - c->m_t) * c->inv_t - c->log_s_t;
            a = KLFL_EXP(lp, WIDE);
        }
        if (KL) lpe = SEL((M)(a > c->eps), TL ? lp : KLFL_LOG(a), BCAST(c->log_eps));
        V v = KL ? a * (lpe - lq) : a * lq;
        M on = (M)(a > 0); /* p == 0: 0, even where log q = -inf */
        if (valid) on &= valid[s];
        ADD(acc, s, SEL(on, v, BCAST(0)));
        if (GRAD) {
            V e;
            memcpy(&e, gb + s * LANES, sizeof(V));
            e = (c->p_sum * (e * c->inv_s_z) - a) * c->grad_scale;
            memcpy(gb + s * LANES, &e, sizeof(V));
        }
    }
}

KLFL_INLINE double LFN(pass_c)(const T *t, const T *z, T *g, ptrdiff_t k,
                               const LFN(row_consts) *c, int KL, int TL, int GRAD, int WIDE) {
    klfl_vd acc[NACC];
    for (int i = 0; i < NACC; i++) acc[i] = (klfl_vd){0};
    ptrdiff_t j = 0;
    for (; j + BLOCK <= k; j += BLOCK)
        LFN(block_c)(z + j, t + j, g + j, c, KL, TL, GRAD, WIDE, NULL, acc);
    if (j < k) {
        int n = (int)(k - j);
        T zt[BLOCK], tt[BLOCK], gt[BLOCK];
        M valid[NSUB];
        LFN(tail_masks)(valid, n);
        if (GRAD) LFN(padded)(gt, g + j, n, 0);
        LFN(block_c)(LFN(padded)(zt, z + j, n, c->m_z),
                     LFN(padded)(tt, t + j, n, TL ? c->m_t : 0), gt, c, KL, TL, GRAD, WIDE,
                     valid, acc);
        if (GRAD) memcpy(g + j, gt, (size_t)n * sizeof(T));
    }
    return LFN(lane_sum)(acc);
}

static double KLFL_FN(KLFL_CAT(klfast_loss_, KLFL_TS))(const T *t, const T *z, T *g,
                                                        ptrdiff_t k,
                                                        const klfast_loss_params *prm,
                                                        int *special) {
    const int TL = prm->target_is_logits != 0, KL = prm->loss == KLFAST_LOSS_KL;
    const T eps = KLFL_PRM(eps), inv_t = KLFL_PRM(inv_t);
    T m_z, mn_z, m_t, mn_t;
    double p_sum = 1.0, s_z, s_t;
    *special = 0;
    if (k <= 0) return 0.0;

    int bad, SUB = !TL && KL && !(eps >= KLFL_TMIN), PS = !TL && (g || sizeof(T) == 8);
#define KLFL_PASS_A(tl, sub, ps) \
    LFN(pass_a)(t, z, k, eps, tl, sub, ps, &m_z, &mn_z, &m_t, &mn_t, &p_sum, special)
    if (TL)
        bad = KLFL_PASS_A(1, 0, 0);
    else if (SUB)
        bad = PS ? KLFL_PASS_A(0, 1, 1) : KLFL_PASS_A(0, 1, 0);
    else
        bad = PS ? KLFL_PASS_A(0, 0, 1) : KLFL_PASS_A(0, 0, 0);
#undef KLFL_PASS_A
    if (bad) return NAN;
    if (*special) return 0.0;

    /* The smallest arguments of exp, rounded as the vector code rounds them
     * (rounding is monotonic); KLFL_EXP_PLAIN_MIN has a margin for FMA. */
    T x_min_z = (mn_z - m_z) * inv_t, x_min_t = TL ? (mn_t - m_t) * inv_t : 0;
    /* (z_j - max z) / T past the range of T (logits near the limits of T, or
     * a tiny T): log q_j would be -inf, but p_j |log q_j| may be finite. The
     * exact path computes those terms in double without the overflow. */
    if (isinf(x_min_z)) {
        *special = 1;
        return 0.0;
    }
    int wide = !(x_min_z >= KLFL_EXP_PLAIN_MIN) || !(x_min_t >= KLFL_EXP_PLAIN_MIN);

#define KLFL_PASS_B(tl, keep, w) \
    LFN(pass_b)(t, z, g, k, m_z, m_t, inv_t, tl, keep, w, &s_z, &s_t)
    switch (TL * 4 + (g != NULL) * 2 + wide) {
    case 0: KLFL_PASS_B(0, 0, 0); break;
    case 1: KLFL_PASS_B(0, 0, 1); break;
    case 2: KLFL_PASS_B(0, 1, 0); break;
    case 3: KLFL_PASS_B(0, 1, 1); break;
    case 4: KLFL_PASS_B(1, 0, 0); break;
    case 5: KLFL_PASS_B(1, 0, 1); break;
    case 6: KLFL_PASS_B(1, 1, 0); break;
    default: KLFL_PASS_B(1, 1, 1); break;
    }
#undef KLFL_PASS_B

    /* s_z >= 1 (the maximum contributes e^0 = 1), likewise s_t */
    LFN(row_consts) c;
    c.m_z = m_z;
    c.m_t = m_t;
    c.inv_t = inv_t;
    c.log_s_z = (T)log(s_z);
    c.log_s_t = (T)log(s_t);
    c.inv_s_z = (T)(1.0 / s_z);
    c.p_sum = (T)p_sum;
    c.eps = eps;
    c.log_eps = KLFL_PRM(log_eps);
    c.grad_scale = KLFL_PRM(grad_scale);
    int wide_c = TL && !((T)(x_min_t - c.log_s_t) >= KLFL_EXP_PLAIN_MIN);
    double total;
#define KLFL_PASS_C(kl, tl, grad, w) LFN(pass_c)(t, z, g, k, &c, kl, tl, grad, w)
    switch (KL * 8 + TL * 4 + (g != NULL) * 2 + wide_c) {
    case 0: total = KLFL_PASS_C(0, 0, 0, 0); break;
    case 2: total = KLFL_PASS_C(0, 0, 1, 0); break;
    case 4: total = KLFL_PASS_C(0, 1, 0, 0); break;
    case 5: total = KLFL_PASS_C(0, 1, 0, 1); break;
    case 6: total = KLFL_PASS_C(0, 1, 1, 0); break;
    case 7: total = KLFL_PASS_C(0, 1, 1, 1); break;
    case 8: total = KLFL_PASS_C(1, 0, 0, 0); break;
    case 10: total = KLFL_PASS_C(1, 0, 1, 0); break;
    case 12: total = KLFL_PASS_C(1, 1, 0, 0); break;
    case 13: total = KLFL_PASS_C(1, 1, 0, 1); break;
    case 14: total = KLFL_PASS_C(1, 1, 1, 0); break;
    default: total = KLFL_PASS_C(1, 1, 1, 1); break;
    }
#undef KLFL_PASS_C
    return KL ? total : 0.0 - total; /* +0.0, not -0.0, for a zero sum */
}

#undef LFN
#undef T
#undef V
#undef M
#undef NACC
#undef ADD
#undef LANES
#undef BLOCK
#undef BLOCK_BYTES
#undef NSUB
#undef SEL
#undef BCAST
#undef VMAX
#undef VMIN
