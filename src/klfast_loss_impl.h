/* The loss row kernel for one element type (KLFL_T, native vectors KLFL_V)
 * at one level (KLFL_ISA): included by klfast_loss_isa_impl.h. The formulas,
 * the passes and the return conventions are in klfast_loss.h. No include
 * guard.
 *
 * Every pass reads the row in blocks of 64 bytes (NSUB native vectors); lane
 * l of a sum takes the elements j = l mod (64 / sizeof(T)) at every level.
 * The row's tail is one block padded with harmless finite values whose
 * lanes are zeroed before they are summed and never stored. Each pass is
 * specialised (always-inline, constant flags) for what the row needs, so
 * the hot loops carry no tests. */

#define LFN(name) KLFL_FN(KLFL_CAT(KLFL_CAT(klfl_, name), KLFL_CAT(_, KLFL_TS)))
#define T KLFL_T
#define V KLFL_V
#define M KLFL_M
#define ACC KLFL_ACC
#define LANES ((int)(sizeof(V) / sizeof(T))) /* per native vector */
#define BLOCK ((int)(64 / sizeof(T)))          /* per 64-byte block */
#define NSUB (64 / (int)sizeof(V))
#define SEL(m, a, b) ((V)(((M)(a) & (m)) | ((M)(b) & ~(m))))
#define BCAST(s) ((V){0} + (T)(s))
#define VMAX(a, b) SEL((M)((a) > (b)), (a), (b))
#define VMIN(a, b) SEL((M)((a) < (b)), (a), (b))

/* Zero the lanes of a tail block at and after element n. */
KLFL_INLINE void LFN(zero_from)(V *v, int n) {
    for (int s = 0; s < NSUB; s++)
        for (int l = 0; l < LANES; l++)
            if (s * LANES + l >= n) v[s][l] = 0;
}

/* Lanes summed in a fixed order. */
KLFL_INLINE double LFN(lane_sum)(const ACC *acc) {
    const double *lanes = (const double *)acc;
    double s = 0.0;
    for (int l = 0; l < BLOCK; l += 2) s += lanes[l] + lanes[l + 1];
    return s;
}

/* A tail block: the n remaining elements of x, then copies of pad. */
KLFL_INLINE const T *LFN(padded)(T *buf, const T *x, int n, T pad) {
    for (int l = n; l < BLOCK; l++) buf[l] = pad;
    memcpy(buf, x, (size_t)n * sizeof(T));
    return buf;
}

/* Pass A: maximum and minimum of z (and of t when TL); the checks. Returns 1
 * for an invalid row. SUB (KL of target probabilities with eps below the
 * smallest normal): *special when a target above eps is subnormal. Tail
 * blocks are padded with z[0] and t[0] (TL) or 0, which change nothing. */
KLFL_INLINE int LFN(pass_a)(const T *t, const T *z, ptrdiff_t k, T eps, int TL, int SUB,
                            T *m_z, T *mn_z, T *m_t, T *mn_t, double *p_sum, int *special) {
    V mx[NSUB], mn[NSUB], mxt[NSUB], mnt[NSUB], nan[NSUB], nant[NSUB], low[NSUB];
    ACC ps[NSUB];
    T zt[BLOCK], tt[BLOCK];
    for (int s = 0; s < NSUB; s++) {
        mx[s] = mn[s] = BCAST(z[0]);
        mxt[s] = mnt[s] = BCAST(TL ? t[0] : 0);
        nan[s] = nant[s] = BCAST(0);
        low[s] = BCAST(KLFL_TMIN);
        ps[s] = (ACC){0};
    }
    for (ptrdiff_t j = 0; j < k; j += BLOCK) {
        const T *zb = z + j, *tb = t + j;
        if (k - j < BLOCK) {
            zb = LFN(padded)(zt, zb, (int)(k - j), z[0]);
            tb = LFN(padded)(tt, tb, (int)(k - j), TL ? t[0] : 0);
        }
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
                ps[s] += KLFL_WIDEN(a);
                if (SUB) low[s] = VMIN(low[s], SEL((M)(a > eps), a, BCAST(KLFL_TMIN)));
            }
        }
    }
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
        *p_sum = LFN(lane_sum)(ps);
        bad |= !(vmnt >= 0) || !(*p_sum <= DBL_MAX);
    }
    *special = SUB && vlow < KLFL_TMIN;
    return bad;
}

/* Pass B: s_z = sum exp(x_j), x_j = (z_j - m_z) / T (and s_t likewise for the
 * teacher logits when TL); with KEEP, exp(x_j) is stored in g. WIDE: some
 * x_j may be below KLFL_EXP_PLAIN_MIN. */
KLFL_INLINE void LFN(pass_b)(const T *t, const T *z, T *g, ptrdiff_t k, T m_z, T m_t,
                             T inv_t, int TL, int KEEP, int WIDE, double *s_z, double *s_t) {
    ACC az[NSUB], at[NSUB];
    T zt[BLOCK], tt[BLOCK];
    for (int s = 0; s < NSUB; s++) az[s] = at[s] = (ACC){0};
    for (ptrdiff_t j = 0; j < k; j += BLOCK) {
        const T *zb = z + j, *tb = t + j;
        int n = k - j < BLOCK ? (int)(k - j) : BLOCK;
        if (n < BLOCK) {
            zb = LFN(padded)(zt, zb, n, m_z);
            if (TL) tb = LFN(padded)(tt, tb, n, m_t);
        }
        V e[NSUB], et[NSUB];
        for (int s = 0; s < NSUB; s++) {
            V x;
            memcpy(&x, zb + s * LANES, sizeof(V));
            e[s] = KLFL_EXP((x - m_z) * inv_t, WIDE);
            if (TL) {
                memcpy(&x, tb + s * LANES, sizeof(V));
                et[s] = KLFL_EXP((x - m_t) * inv_t, WIDE);
            }
        }
        if (n < BLOCK) {
            LFN(zero_from)(e, n);
            if (TL) LFN(zero_from)(et, n);
        }
        for (int s = 0; s < NSUB; s++) {
            az[s] += KLFL_WIDEN(e[s]);
            if (TL) at[s] += KLFL_WIDEN(et[s]);
        }
        if (KEEP) memcpy(g + j, e, (size_t)n * sizeof(T));
    }
    *s_z = LFN(lane_sum)(az);
    *s_t = TL ? LFN(lane_sum)(at) : 1.0;
}

/* Pass C: the row's sum of p_j (log p~_j - log q_j) (KL) or p_j log q_j
 * (cross-entropy; the caller negates it); with GRAD, g_j = (S q_j - p_j) *
 * grad_scale from the exp(x_j) pass B left in g. WIDE: the teacher's
 * log-probabilities may be below KLFL_EXP_PLAIN_MIN. */
KLFL_INLINE double LFN(pass_c)(const T *t, const T *z, T *g, ptrdiff_t k, T m_z, T m_t,
                               T inv_t, T log_s_z, T log_s_t, T inv_s_z, T p_sum, T eps,
                               T log_eps, T grad_scale, int KL, int TL, int GRAD, int WIDE) {
    ACC acc[NSUB];
    T zt[BLOCK], tt[BLOCK], gt[BLOCK];
    for (int s = 0; s < NSUB; s++) acc[s] = (ACC){0};
    for (ptrdiff_t j = 0; j < k; j += BLOCK) {
        const T *zb = z + j, *tb = t + j;
        T *gb = g + j;
        int n = k - j < BLOCK ? (int)(k - j) : BLOCK;
        if (n < BLOCK) {
            zb = LFN(padded)(zt, zb, n, m_z);
            tb = LFN(padded)(tt, tb, n, TL ? m_t : 0);
            if (GRAD) {
                memset(gt, 0, sizeof(gt));
                memcpy(gt, gb, (size_t)n * sizeof(T));
                gb = gt;
            }
        }
        V term[NSUB];
        for (int s = 0; s < NSUB; s++) {
            V x, a, lp = {0}, lpe = {0};
            memcpy(&x, zb + s * LANES, sizeof(V));
            memcpy(&a, tb + s * LANES, sizeof(V));
            V lq = (x - m_z) * inv_t - log_s_z;
            if (TL) {
                lp = (a - m_t) * inv_t - log_s_t;
                a = KLFL_EXP(lp, WIDE);
            }
            M above = (M)(a > eps);
            if (KL) lpe = SEL(above, TL ? lp : KLFL_LOG(a), BCAST(log_eps));
            V v = KL ? a * (lpe - lq) : a * lq;
            term[s] = SEL((M)(a > 0), v, BCAST(0)); /* p == 0: 0, even if log q = -inf */
            if (GRAD) {
                V e;
                memcpy(&e, gb + s * LANES, sizeof(V));
                e = (p_sum * (e * inv_s_z) - a) * grad_scale;
                memcpy(gb + s * LANES, &e, sizeof(V));
            }
        }
        if (n < BLOCK) {
            LFN(zero_from)(term, n);
            if (GRAD) memcpy(g + j, gt, (size_t)n * sizeof(T));
        }
        for (int s = 0; s < NSUB; s++) acc[s] += KLFL_WIDEN(term[s]);
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

    int bad;
    if (TL)
        bad = LFN(pass_a)(t, z, k, eps, 1, 0, &m_z, &mn_z, &m_t, &mn_t, &p_sum, special);
    else if (KL && !(eps >= KLFL_TMIN))
        bad = LFN(pass_a)(t, z, k, eps, 0, 1, &m_z, &mn_z, &m_t, &mn_t, &p_sum, special);
    else
        bad = LFN(pass_a)(t, z, k, eps, 0, 0, &m_z, &mn_z, &m_t, &mn_t, &p_sum, special);
    if (bad) return NAN;
    if (*special) return 0.0;

    /* The smallest arguments of exp, rounded as the vector code rounds them
     * (rounding is monotonic); KLFL_EXP_PLAIN_MIN has a margin for FMA. */
    T x_min_z = (mn_z - m_z) * inv_t, x_min_t = TL ? (mn_t - m_t) * inv_t : 0;
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
    const T log_s_z = (T)log(s_z), log_s_t = (T)log(s_t), inv_s_z = (T)(1.0 / s_z);
    int wide_c = TL && !((T)(x_min_t - log_s_t) >= KLFL_EXP_PLAIN_MIN);
    double total;
#define KLFL_PASS_C(kl, tl, grad, w)                                                         \
    LFN(pass_c)(t, z, g, k, m_z, m_t, inv_t, log_s_z, log_s_t, inv_s_z, (T)p_sum, eps,        \
                KLFL_PRM(log_eps), KLFL_PRM(grad_scale), kl, tl, grad, w)
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
    return KL ? total : -total;
}

#undef LFN
#undef T
#undef V
#undef M
#undef ACC
#undef LANES
#undef BLOCK
#undef NSUB
#undef SEL
#undef BCAST
#undef VMAX
#undef VMIN
