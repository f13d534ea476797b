/* The row kernel of the losses from logits (kl_loss, cross_entropy_loss),
 * for the element type of engine/element.h: included by engine/level.h. No
 * include guard.
 *
 * For one row of logits z (length k), temperature T and target row t, with
 * x_j = (z_j - max z) / T and log q_j = x_j - log(sum_i exp(x_i)):
 *   p_j = t_j                                     target probabilities
 *   p_j = exp(log p_j), log p_j likewise from t   target_is_logits
 *   kl  = sum p_j (log p~_j - log q_j)            p~ = max(p, eps); when
 *                                                 target_is_logits, log p~_j
 *                                                 is log p_j if p_j > eps,
 *                                                 else log(eps)
 *   ce  = -sum p_j log q_j
 *   g_j = (S q_j - p_j) * grad_scale              S = sum p (1 for logits)
 * Terms with p_j == 0 are exactly 0 (also where log q_j = -inf).
 *
 * The row function returns the row's value, NaN for an invalid row (a NaN or
 * infinite logit or teacher logit; a target probability that is negative,
 * NaN or infinite, or a target sum past the float64 range) without touching
 * its gradient row, or sets *special for a row the exact scalar path must
 * compute (a target probability above eps but below the smallest normal
 * number, whose log the fast log does not cover: only when eps is below it;
 * scaled logits (z_j - max z) / T past the range of the element type).
 *
 * Three passes over the row, which stays in cache between them: (A) the
 * maximum and minimum of z (and t) and the checks, (B) the sums of
 * exp(x_j) (and of the teacher's), keeping exp(x_j) in the gradient row when
 * one is asked for, (C) the loss terms and the gradient, q_j = exp(x_j) / s.
 * exp and log are the math layer's (engine/simd.h), in the element type.
 * Every pass reads the row in blocks of 128 bytes (NSUB native vectors: two
 * cache lines, so that even AVX-512 has two independent accumulators per
 * sum); lane l of a sum takes the elements j = l mod (128 / sizeof(T)) at
 * every level, accumulated in float64 and combined by lane_sum in a fixed
 * order. The row's tail is one block padded with harmless finite values
 * whose lanes are zeroed before they are summed and never stored. Each pass
 * is specialised (always-inline, constant flags) for what the row needs, so
 * the hot loops carry no tests. */

#define BLOCK ((int)(128 / sizeof(T))) /* elements per block */
#define NSUB (128 / KLF_VBYTES)        /* native vectors per block */
#define NACC (BLOCK / VD_LANES)        /* double accumulators per block */
#define lane_sum_block(acc) lane_sum((acc), BLOCK)

/* The lanes of a tail block holding its first n elements. */
KLF_INLINE void F(loss_tail_masks)(M *valid, int n) {
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
KLF_INLINE void F(loss_block_a)(const T *zb, const T *tb, T eps, int TL, int SUB, int PS, V *mx, V *mn,
                              V *mxt, V *mnt, V *nan, V *nant, V *low, vd *ps) {
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
            if (SUB) low[s] = VMIN(low[s], VSEL((M)(a > eps), a, BCAST(TMIN)));
        }
    }
}

KLF_INLINE int F(loss_pass_a)(const T *t, const T *z, ptrdiff_t k, T eps, int TL, int SUB,
                            int PS, T *m_z, T *mn_z, T *m_t, T *mn_t, double *p_sum, int *special) {
    V mx[NSUB], mn[NSUB], mxt[NSUB], mnt[NSUB], nan[NSUB], nant[NSUB], low[NSUB];
    vd ps[NACC];
    T zt[BLOCK], tt[BLOCK];
    for (int i = 0; i < NACC; i++) ps[i] = (vd){0};
    for (int s = 0; s < NSUB; s++) {
        mx[s] = mn[s] = BCAST(z[0]);
        mxt[s] = mnt[s] = BCAST(TL ? t[0] : 0);
        nan[s] = nant[s] = BCAST(0);
        low[s] = BCAST(TMIN);
    }
    ptrdiff_t j = 0;
    for (; j + BLOCK <= k; j += BLOCK)
        F(loss_block_a)(z + j, t + j, eps, TL, SUB, PS, mx, mn, mxt, mnt, nan, nant, low, ps);
    if (j < k)
        F(loss_block_a)(F(padded_tail)(zt, BLOCK, z + j, (int)(k - j), z[0]),
                     F(padded_tail)(tt, BLOCK, t + j, (int)(k - j), TL ? t[0] : 0), eps, TL, SUB, PS, mx, mn,
                     mxt, mnt, nan, nant, low, ps);
    T vmx = mx[0][0], vmn = mn[0][0], vmxt = mxt[0][0], vmnt = mnt[0][0], vlow = TMIN;
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
            *p_sum = lane_sum_block(ps);
            bad |= !(*p_sum <= DBL_MAX);
        }
    }
    *special = SUB && vlow < TMIN;
    return bad;
}

/* Pass B: s_z = sum exp(x_j), x_j = (z_j - m_z) / T (and s_t likewise for the
 * teacher logits when TL); with KEEP, exp(x_j) is stored in g. WIDE: some
 * x_j may be below EXP_PLAIN_MIN. valid: NULL, or a tail block's
 * lanes. */
KLF_INLINE void F(loss_block_b)(const T *zb, const T *tb, T *gb, T m_z, T m_t, T inv_t, int TL,
                              int KEEP, int WIDE, const M *valid, vd *az, vd *at) {
    for (int s = 0; s < NSUB; s++) {
        V x, e, et;
        memcpy(&x, zb + s * LANES, sizeof(V));
        e = EXP((x - m_z) * inv_t, WIDE);
        if (valid) e = VSEL(valid[s], e, BCAST(0));
        ADD(az, s, e);
        if (KEEP) memcpy(gb + s * LANES, &e, sizeof(V));
        if (TL) {
            memcpy(&x, tb + s * LANES, sizeof(V));
            et = EXP((x - m_t) * inv_t, WIDE);
            if (valid) et = VSEL(valid[s], et, BCAST(0));
            ADD(at, s, et);
        }
    }
}

KLF_INLINE void F(loss_pass_b)(const T *t, const T *z, T *g, ptrdiff_t k, T m_z, T m_t,
                             T inv_t, int TL, int KEEP, int WIDE, double *s_z, double *s_t) {
    vd az[NACC], at[NACC];
    for (int i = 0; i < NACC; i++) az[i] = at[i] = (vd){0};
    ptrdiff_t j = 0;
    for (; j + BLOCK <= k; j += BLOCK)
        F(loss_block_b)(z + j, t + j, g + j, m_z, m_t, inv_t, TL, KEEP, WIDE, NULL, az, at);
    if (j < k) {
        int n = (int)(k - j);
        T zt[BLOCK], tt[BLOCK], gt[BLOCK];
        M valid[NSUB];
        F(loss_tail_masks)(valid, n);
        F(loss_block_b)(F(padded_tail)(zt, BLOCK, z + j, n, m_z), TL ? F(padded_tail)(tt, BLOCK, t + j, n, m_t) : tt,
                     gt, m_z, m_t, inv_t, TL, KEEP, WIDE, valid, az, at);
        if (KEEP) memcpy(g + j, gt, (size_t)n * sizeof(T));
    }
    *s_z = lane_sum_block(az);
    *s_t = TL ? lane_sum_block(at) : 1.0;
}

/* Pass C: the row's sum of p_j (log p~_j - log q_j) (KL) or p_j log q_j
 * (cross-entropy; the caller negates it); with GRAD, g_j = (S q_j - p_j) *
 * grad_scale from the exp(x_j) pass B left in g. WIDE: the teacher's
 * log-probabilities may be below EXP_PLAIN_MIN. */
typedef struct {
    T m_z, m_t, inv_t, log_s_z, log_s_t, inv_s_z, p_sum, eps, log_eps, grad_scale;
} F(loss_row_consts);

KLF_INLINE void F(loss_block_c)(const T *zb, const T *tb, T *gb, const F(loss_row_consts) *c,
                              int KL, int TL, int GRAD, int WIDE, const M *valid,
                              vd *acc) {
    for (int s = 0; s < NSUB; s++) {
        V x, a, lp = {0}, lpe = {0};
        memcpy(&x, zb + s * LANES, sizeof(V));
        memcpy(&a, tb + s * LANES, sizeof(V));
        V lq = (x - c->m_z) * c->inv_t - c->log_s_z;
        if (TL) {
            lp = (a - c->m_t) * c->inv_t - c->log_s_t;
            a = EXP(lp, WIDE);
        }
        if (KL) lpe = VSEL((M)(a > c->eps), TL ? lp : LOG(a), BCAST(c->log_eps));
        V v = KL ? a * (lpe - lq) : a * lq;
        M on = (M)(a > 0); /* p == 0: 0, even where log q = -inf */
        if (valid) on &= valid[s];
        ADD(acc, s, VSEL(on, v, BCAST(0)));
        if (GRAD) {
            V e;
            memcpy(&e, gb + s * LANES, sizeof(V));
            e = (c->p_sum * (e * c->inv_s_z) - a) * c->grad_scale;
            memcpy(gb + s * LANES, &e, sizeof(V));
        }
    }
}

KLF_INLINE double F(loss_pass_c)(const T *t, const T *z, T *g, ptrdiff_t k,
                               const F(loss_row_consts) *c, int KL, int TL, int GRAD, int WIDE) {
    vd acc[NACC];
    for (int i = 0; i < NACC; i++) acc[i] = (vd){0};
    ptrdiff_t j = 0;
    for (; j + BLOCK <= k; j += BLOCK)
        F(loss_block_c)(z + j, t + j, g + j, c, KL, TL, GRAD, WIDE, NULL, acc);
    if (j < k) {
        int n = (int)(k - j);
        T zt[BLOCK], tt[BLOCK], gt[BLOCK];
        M valid[NSUB];
        F(loss_tail_masks)(valid, n);
        if (GRAD) F(padded_tail)(gt, BLOCK, g + j, n, 0);
        F(loss_block_c)(F(padded_tail)(zt, BLOCK, z + j, n, c->m_z),
                     F(padded_tail)(tt, BLOCK, t + j, n, TL ? c->m_t : 0), gt, c, KL, TL, GRAD, WIDE,
                     valid, acc);
        if (GRAD) memcpy(g + j, gt, (size_t)n * sizeof(T));
    }
    return lane_sum_block(acc);
}

static double ROW_FN(loss)(const T *t, const T *z, T *g,
                                                        ptrdiff_t k,
                                                        const klfast_loss_params *prm,
                                                        int *special) {
    const int TL = prm->target_is_logits != 0, KL = prm->loss == KLFAST_LOSS_KL;
    const T eps = PRM(eps), inv_t = PRM(inv_t);
    T m_z, mn_z, m_t, mn_t;
    double p_sum = 1.0, s_z, s_t;
    *special = 0;
    if (k <= 0) return 0.0;

    int bad, SUB = !TL && KL && !(eps >= TMIN), PS = !TL && (g || sizeof(T) == 8);
#define PASS_A(tl, sub, ps) \
    F(loss_pass_a)(t, z, k, eps, tl, sub, ps, &m_z, &mn_z, &m_t, &mn_t, &p_sum, special)
    if (TL)
        bad = PASS_A(1, 0, 0);
    else if (SUB)
        bad = PS ? PASS_A(0, 1, 1) : PASS_A(0, 1, 0);
    else
        bad = PS ? PASS_A(0, 0, 1) : PASS_A(0, 0, 0);
#undef PASS_A
    if (bad) return NAN;
    if (*special) return 0.0;

    /* The smallest arguments of exp, rounded as the vector code rounds them
     * (rounding is monotonic); EXP_PLAIN_MIN has a margin for FMA. */
    T x_min_z = (mn_z - m_z) * inv_t, x_min_t = TL ? (mn_t - m_t) * inv_t : 0;
    /* (z_j - max z) / T past the range of T (logits near the limits of T, or
     * a tiny T): log q_j would be -inf, but p_j |log q_j| may be finite. The
     * exact path computes those terms in double without the overflow. */
    if (isinf(x_min_z)) {
        *special = 1;
        return 0.0;
    }
    int wide = !(x_min_z >= EXP_PLAIN_MIN) || !(x_min_t >= EXP_PLAIN_MIN);

#define PASS_B(tl, keep, w) \
    F(loss_pass_b)(t, z, g, k, m_z, m_t, inv_t, tl, keep, w, &s_z, &s_t)
    switch (TL * 4 + (g != NULL) * 2 + wide) {
    case 0: PASS_B(0, 0, 0); break;
    case 1: PASS_B(0, 0, 1); break;
    case 2: PASS_B(0, 1, 0); break;
    case 3: PASS_B(0, 1, 1); break;
    case 4: PASS_B(1, 0, 0); break;
    case 5: PASS_B(1, 0, 1); break;
    case 6: PASS_B(1, 1, 0); break;
    default: PASS_B(1, 1, 1); break;
    }
#undef PASS_B

    /* s_z >= 1 (the maximum contributes e^0 = 1), likewise s_t */
    F(loss_row_consts) c;
    c.m_z = m_z;
    c.m_t = m_t;
    c.inv_t = inv_t;
    c.log_s_z = (T)log(s_z);
    c.log_s_t = (T)log(s_t);
    c.inv_s_z = (T)(1.0 / s_z);
    c.p_sum = (T)p_sum;
    c.eps = eps;
    c.log_eps = PRM(log_eps);
    c.grad_scale = PRM(grad_scale);
    int wide_c = TL && !((T)(x_min_t - c.log_s_t) >= EXP_PLAIN_MIN);
    double total;
#define PASS_C(kl, tl, grad, w) F(loss_pass_c)(t, z, g, k, &c, kl, tl, grad, w)
    switch (KL * 8 + TL * 4 + (g != NULL) * 2 + wide_c) {
    case 0: total = PASS_C(0, 0, 0, 0); break;
    case 2: total = PASS_C(0, 0, 1, 0); break;
    case 4: total = PASS_C(0, 1, 0, 0); break;
    case 5: total = PASS_C(0, 1, 0, 1); break;
    case 6: total = PASS_C(0, 1, 1, 0); break;
    case 7: total = PASS_C(0, 1, 1, 1); break;
    case 8: total = PASS_C(1, 0, 0, 0); break;
    case 10: total = PASS_C(1, 0, 1, 0); break;
    case 12: total = PASS_C(1, 1, 0, 0); break;
    case 13: total = PASS_C(1, 1, 0, 1); break;
    case 14: total = PASS_C(1, 1, 1, 0); break;
    default: total = PASS_C(1, 1, 1, 1); break;
    }
#undef PASS_C
    return KL ? total : 0.0 - total; /* +0.0, not -0.0, for a zero sum */
}


#undef BLOCK
#undef NSUB
#undef NACC
#undef lane_sum_block
