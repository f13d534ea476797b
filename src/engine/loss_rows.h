/* The row kernel of inputs in any form (probabilities, log-probabilities,
 * logits), which is also the losses' kernel (kl_loss, cross_entropy_loss),
 * for the element type of engine/element.h: included by engine/level.h. No
 * include guard. (Rows of probabilities on both sides take the divergences'
 * kernel, engine/divergence_rows.h.)
 *
 * Each row x (p and q; the losses' target and logits) is read in its form,
 * giving each element's probability a_j and the log of it:
 *   probs      a_j = x_j (x_j / sum x with normalize)   log a~_j = log max(a_j, eps)
 *   log_probs  log a_j = x_j, a_j = exp(log a_j)        log a~_j = max(log a_j, log eps)
 *   logits     log a_j = (x_j - max x) / T - log sum_i exp((x_i - max x) / T), likewise
 * (the eps rule p~ = max(p, eps) in log form). Per row:
 *   kl            sum p_j (log p~_j - log q~_j)           terms with p_j == 0 are 0
 *   jeffreys      sum (p_j - q_j) (log p~_j - log q~_j)   terms with p_j == q_j are 0
 *   entropy       -sum p_j log p~_j                       terms with p_j == 0 are 0
 *   cross_entropy -sum p_j log q~_j                       terms with p_j == 0 are 0
 *   js            sum ((h_j + l_j) log(2 h_j / (h_j + l_j)) + l_j (log l_j - log h_j)) / 2
 *                 with h = max(p, q), l = min(p, q) and no eps (log_hi of the math
 *                 layer: no cancellation in the first part); terms with h_j == 0
 *                 are 0; the row is clamped at >= 0
 * A log form costs one exp per element (none for q in kl and cross_entropy,
 * which need log q only) plus one for the log-sum-exp of logits; a row of
 * probabilities one log per element.
 *
 * The losses (prm->loss) are kl and cross_entropy with q from logits, log q
 * not floored, and with a gradient row g:
 *   g_j = (S q_j - p_j) * grad_scale                      S = sum p
 * (Short rows of logits' KL, Jeffreys, Jensen-Shannon, entropy and
 * cross-entropy, up to KLFAST_LOGITS_SHORT_MAX, and the losses' short rows,
 * up to KLFAST_LOSS_SHORT_MAX, are scored a row per lane in float64
 * instead: engine/logits_lanes.h, with these formulas; KL, Jeffreys and JS
 * from centred sums, every term >= 0.)
 *
 * The row function returns the row's value, or NaN for an invalid row:
 * probabilities that are negative, NaN or infinite, whose sum is past the
 * float64 range, 0 (normalize) or not within tol of 1 (tol = inf: no
 * check); log-probabilities that are NaN or above log_prob_max, or whose
 * exps do not sum to 1 within tol (checked last: the gradient row may be
 * written; the losses do not check sums); logits that are NaN or +inf, or
 * all -inf. It sets *special for a loss row the exact scalar path must
 * compute: q's scaled logits (min - max) / T reach -inf (a -inf logit, or
 * logits spread past the range of the element type). The divergences take
 * such a log q as -inf (log q~ = log eps).
 *
 * Three passes over the row, which stays in cache between them: (A) per row,
 * the checks and the maximum and minimum (log forms) or the sum
 * (probabilities); (B) per row of logits (and a log-probability target with
 * a gradient) the sum of exp((x_j - m) / T), kept in g for q when a gradient
 * is asked for; (C) both rows together: the terms, the sums of the
 * log-probabilities' exps, the gradient q_j = exp(x_j) / s. exp and log are
 * the math layer's (engine/simd.h), in the element type. Every pass reads
 * the row in blocks of 128 bytes (NSUB native vectors: two cache lines, so
 * that even AVX-512 has two independent accumulators per sum); lane l of a
 * sum takes the elements j = l mod (128 / sizeof(T)) at every level,
 * accumulated in float64 and combined by lane_sum in a fixed order. The
 * row's tail is one block padded with harmless finite values whose lanes
 * are zeroed before they are summed and never stored. The passes are
 * specialised (always-inline, constant flags) by the rows' kinds (log form
 * or probabilities), the gradient and, for kl and cross_entropy, the
 * measure; the other measures are a branch per vector. */

#define BLOCK ((int)(128 / sizeof(T))) /* elements per block */
#define NSUB (128 / KLF_VBYTES)        /* native vectors per block */
#define NACC (BLOCK / VD_LANES)        /* double accumulators per block */
#define lane_sum_block(acc) lane_sum((acc), BLOCK)

/* dst[0 .. n) = the first n lanes of v (n >= LANES: all; n <= 0: none). */
KLF_INLINE void F(store_part)(T *dst, V v, int n) {
    if (n >= LANES)
        memcpy(dst, &v, sizeof(V));
    else
        for (int l = 0; l < n; l++) dst[l] = v[l];
}

/* Pass A over a block of n elements (BLOCK: a whole one) of a row: for a
 * log form (LOGF) its maximum and minimum, NaN flagged; for probabilities
 * their sum, negative, NaN and infinite entries flagged. A tail block's
 * lanes past n hold pad: the row's x[0] (LOGF) or 0, which change nothing. */
KLF_INLINE void F(forms_block_a)(const T *xb, int n, T pad, int LOGF, V *mx, V *mn, M *bad,
                                 vd *sum) {
    for (int s = 0; s < NSUB; s++) {
        V x = F(part_vector)(xb + s * LANES, n - s * LANES, pad);
        if (LOGF) {
            mx[s] = VMAX(mx[s], x);
            mn[s] = VMIN(mn[s], x);
            bad[s] |= (M)(x != x);
        } else {
            bad[s] |= (M)(x * 0 != 0) | (M)(x < 0); /* NaN or +-inf; negative */
            ADD(sum, s, x);
        }
    }
}

/* Returns 1 for a flagged row. */
KLF_INLINE int F(forms_pass_a)(const T *x, ptrdiff_t k, int LOGF, T *x_max, T *x_min,
                               double *sum) {
    V mx[NSUB], mn[NSUB];
    M bad[NSUB];
    vd acc[NACC];
    for (int i = 0; i < NACC; i++) acc[i] = (vd){0};
    for (int s = 0; s < NSUB; s++) {
        mx[s] = mn[s] = BCAST(x[0]);
        bad[s] = (M){0};
    }
    ptrdiff_t j = 0;
    for (; j + BLOCK <= k; j += BLOCK) F(forms_block_a)(x + j, BLOCK, 0, LOGF, mx, mn, bad, acc);
    if (j < k) F(forms_block_a)(x + j, (int)(k - j), LOGF ? x[0] : 0, LOGF, mx, mn, bad, acc);
    for (int s = 1; s < NSUB; s++) { /* the vectors first, then their lanes */
        mx[0] = VMAX(mx[0], mx[s]);
        mn[0] = VMIN(mn[0], mn[s]);
        bad[0] |= bad[s];
    }
    T vmx = mx[0][0], vmn = mn[0][0];
    for (int l = 1; l < LANES; l++) {
        vmx = mx[0][l] > vmx ? mx[0][l] : vmx;
        vmn = mn[0][l] < vmn ? mn[0][l] : vmn;
    }
    *x_max = vmx;
    *x_min = vmn;
    int flagged = any_lane((vi)bad[0]);
    *sum = LOGF ? 0.0 : lane_sum_block(acc);
    return flagged;
}

/* Pass B over one row in log form: the sum of exp((x_j - m) * inv_t), as
 * the number of elements x_j == m (each exp(0) = 1 exactly) and the sum of
 * the others' exps, so that log s = log1p((ties - 1) + rest) keeps the
 * digits of a rest below one ulp of 1 (a one-hot-like row's small terms).
 * With KEEP, each exp is stored in g. WIDE: some argument may be below
 * EXP_PLAIN_MIN (or -inf). valid: NULL, or a tail block's lanes. */
KLF_INLINE void F(forms_block_b)(const T *xb, T *gb, int n, T m, T inv_t, int KEEP, int WIDE,
                                 const M *valid, vd *rest, M *ties) {
    for (int s = 0; s < NSUB; s++) {
        V x = F(part_vector)(xb + s * LANES, n - s * LANES, m), e;
        e = EXP((x - m) * inv_t, WIDE);
        M top = (M)(x == m);
        if (valid) {
            e = VSEL(valid[s], e, BCAST(0));
            top &= valid[s];
        }
        ADD(rest, s, VSEL(top, BCAST(0), e));
        ties[s] -= top; /* integer lanes: a mask is -1 where set */
        if (KEEP) F(store_part)(gb + s * LANES, e, n - s * LANES);
    }
}

KLF_INLINE void F(forms_pass_b)(const T *x, T *g, ptrdiff_t k, T m, T inv_t, int KEEP,
                                int WIDE, double *rest, double *ties) {
    vd acc[NACC];
    M top[NSUB];
    for (int i = 0; i < NACC; i++) acc[i] = (vd){0};
    for (int s = 0; s < NSUB; s++) top[s] = (M){0};
    ptrdiff_t j = 0;
    for (; j + BLOCK <= k; j += BLOCK)
        F(forms_block_b)(x + j, KEEP ? g + j : NULL, BLOCK, m, inv_t, KEEP, WIDE, NULL, acc, top);
    if (j < k) {
        M valid[NSUB];
        F(block_tail_masks)(valid, (int)(k - j));
        F(forms_block_b)(x + j, KEEP ? g + j : NULL, (int)(k - j), m, inv_t, KEEP, WIDE, valid,
                         acc, top);
    }
    *rest = lane_sum_block(acc);
    for (int s = 1; s < NSUB; s++) top[0] += top[s]; /* counts: exact in any order */
    *ties = 0;
    for (int l = 0; l < LANES; l++) *ties += (double)top[0][l];
}

/* One row as pass C reads it. */
typedef struct {
    int log_form; /* log a_j = (x_j - m) inv_t - log_s; else a_j = x_j scale */
    int wide;     /* log form: some log a_j below EXP_PLAIN_MIN (the wide exp) */
    int floor;    /* log form: log a~ = max(log a, log eps) */
    int tiny;     /* probabilities: eps below the smallest normal */
    int sum;      /* sum the a_j (the check of log-probabilities) */
    T m, inv_t, log_s, eps, log_eps;
    double scale; /* probabilities: 1, or 1 / sum with normalize */
} F(forms_row);

typedef struct {
    F(forms_row) p, q;
    T p_sum, inv_s_q, grad_scale; /* the gradient */
} F(forms_consts);

/* a_j (if NEED_A) and log a~_j of the elements x of one row. */
KLF_INLINE void F(forms_read)(V x, const F(forms_row) *r, int LOGF, int NEED_A, V *a, V *la) {
    if (LOGF) {
        V l = (x - r->m) * r->inv_t - r->log_s;
        if (NEED_A) *a = EXP(l, r->wide);
        *la = r->floor ? VMAX(l, BCAST(r->log_eps)) : l;
        return;
    }
    V v = r->scale != 1.0 ? SCALE(x, r->scale) : x;
    *a = v;
    v = VMAX(v, BCAST(r->eps));
    if (r->tiny) { /* a zero (log -inf) or a subnormal (scaled into the normal range) */
        M sub = (M)(v < TMIN);
        V l = LOG(VSEL(sub, v * SUB_SCALE, v)) - VSEL(sub, BCAST(SUB_LOG), BCAST(0));
        *la = VSEL((M)(v > 0), l, BCAST(-INFINITY));
    } else {
        *la = LOG(v);
    }
}

/* Pass C: the row's sum of terms (before the final sign and halving), the
 * sums of a_j for the rows that ask for them, and with GRAD the gradient
 * from the exps pass B left in g. LOGF_P, LOGF_Q: the rows' kinds. */
KLF_INLINE void F(forms_block_c)(const T *pb, const T *qb, T *gb, int n,
                                 const F(forms_consts) *c, int measure, int LOGF_P, int LOGF_Q,
                                 int GRAD, const M *valid, vd *acc, vd *sum_p, vd *sum_q) {
    const int use_q = measure != KLFAST_ENTROPY;
    const int need_b = measure == KLFAST_JEFFREYS || measure == KLFAST_JS || c->q.sum;
    for (int s = 0; s < NSUB; s++) {
        V x, a, la, b = {0}, lb = {0}, v;
        M on;
        x = F(part_vector)(pb + s * LANES, n - s * LANES, LOGF_P ? c->p.m : 0);
        F(forms_read)(x, &c->p, LOGF_P, 1, &a, &la);
        if (use_q) {
            x = F(part_vector)(qb + s * LANES, n - s * LANES, LOGF_Q ? c->q.m : 0);
            F(forms_read)(x, &c->q, LOGF_Q, need_b, &b, &lb);
        }
        switch (measure) {
        case KLFAST_KL:
            v = a * (la - lb);
            on = (M)(a > 0);
            break;
        case KLFAST_JEFFREYS:
            v = (a - b) * (la - lb);
            on = (M)(a != b);
            break;
        case KLFAST_ENTROPY:
            v = a * la;
            on = (M)(a > 0);
            break;
        case KLFAST_CROSS_ENTROPY:
            v = a * lb;
            on = (M)(a > 0);
            break;
        default: { /* js */
            M p_hi = (M)(a >= b);
            V hi = VSEL(p_hi, a, b), lo = VSEL(p_hi, b, a);
            V log_lo_hi = VSEL(p_hi, lb - la, la - lb);
            v = (hi + lo) * LOG_HI(hi, lo) + VSEL((M)(lo > 0), lo * log_lo_hi, BCAST(0));
            on = (M)(hi > 0);
        }
        }
        if (valid) {
            on &= valid[s];
            a = VSEL(valid[s], a, BCAST(0));
            b = VSEL(valid[s], b, BCAST(0));
        }
        ADD(acc, s, VSEL(on, v, BCAST(0)));
        if (c->p.sum) ADD(sum_p, s, a);
        if (c->q.sum) ADD(sum_q, s, b);
        if (GRAD) {
            V e = F(part_vector)(gb + s * LANES, n - s * LANES, 0);
            e = (c->p_sum * (e * c->inv_s_q) - a) * c->grad_scale;
            F(store_part)(gb + s * LANES, e, n - s * LANES);
        }
    }
}

KLF_INLINE double F(forms_pass_c)(const T *p, const T *q, T *g, ptrdiff_t k,
                                  const F(forms_consts) *c, int measure, int LOGF_P, int LOGF_Q,
                                  int GRAD, double *sums) {
    vd acc[NACC], sum_p[NACC], sum_q[NACC];
    for (int i = 0; i < NACC; i++) acc[i] = sum_p[i] = sum_q[i] = (vd){0};
    ptrdiff_t j = 0;
    for (; j + BLOCK <= k; j += BLOCK)
        F(forms_block_c)(p + j, q + j, GRAD ? g + j : NULL, BLOCK, c, measure, LOGF_P, LOGF_Q,
                         GRAD, NULL, acc, sum_p, sum_q);
    if (j < k) {
        M valid[NSUB];
        F(block_tail_masks)(valid, (int)(k - j));
        F(forms_block_c)(p + j, q + j, GRAD ? g + j : NULL, (int)(k - j), c, measure, LOGF_P,
                         LOGF_Q, GRAD, valid, acc, sum_p, sum_q);
    }
    sums[0] = c->p.sum ? lane_sum_block(sum_p) : 0.0;
    sums[1] = c->q.sum ? lane_sum_block(sum_q) : 0.0;
    return lane_sum_block(acc);
}

/* Passes A and B of row i (0: p, 1: q) into *r; *s: the probabilities' sum,
 * or the sum of exps of pass B (1 when it does not run). Returns 1 for an
 * invalid row; sets *special for the exact path. */
KLF_INLINE int F(forms_prepare)(const T *x, int i, T *g, ptrdiff_t k,
                                const klfast_forms_params *prm, F(forms_row) *r, double *s,
                                int *special) {
    const int form = prm->form[i];
    T x_max, x_min;
    r->log_form = form != KLFAST_PROBS;
    r->floor = prm->measure != KLFAST_JS && !(i == 1 && prm->loss);
    r->eps = r->floor ? PRM(eps) : 0;
    r->log_eps = r->floor ? PRM(log_eps) : -INFINITY;
    r->scale = 1.0;
    *s = 1.0;
    if (!r->log_form) {
        if (F(forms_pass_a)(x, k, 0, &x_max, &x_min, s) || !(*s <= DBL_MAX)) return 1;
        r->tiny = !(r->eps >= TMIN);
        if (prm->normalize) {
            if (!(*s > 0)) return 1;
            r->scale = 1.0 / *s;
            return 0;
        }
        return !(fabs(*s - 1.0) <= prm->tol);
    }
    if (F(forms_pass_a)(x, k, 1, &x_max, &x_min, s)) return 1;
    r->inv_t = PRM(inv_t)[i];
    r->m = 0;
    if (form == KLFAST_LOGITS) {
        if (!(x_max > -INFINITY && x_max < INFINITY)) return 1;
        r->m = x_max;
    } else if (!(x_max <= PRM(log_prob_max))) {
        return 1;
    }
    /* the smallest argument of exp, rounded as the vector code rounds it
     * (rounding is monotonic); EXP_PLAIN_MIN has a margin for FMA */
    T lowest = (x_min - r->m) * r->inv_t;
    if (i == 1 && prm->loss && isinf(lowest)) {
        *special = 1;
        return 0;
    }
    int wide = !(lowest >= EXP_PLAIN_MIN), keep = i == 1 && g;
    double rest = 0.0, ties = 1.0;
    if (form == KLFAST_LOGITS || (i == 0 && g)) {
#define PASS_B(keep, wide) F(forms_pass_b)(x, g, k, r->m, r->inv_t, keep, wide, &rest, &ties)
        switch (keep * 2 + wide) {
        case 0: PASS_B(0, 0); break;
        case 1: PASS_B(0, 1); break;
        case 2: PASS_B(1, 0); break;
        default: PASS_B(1, 1); break;
        }
#undef PASS_B
    }
    *s = ties + rest;
    /* ties >= 1 for logits (the maximum) */
    r->log_s = form == KLFAST_LOGITS ? (T)log1p((ties - 1.0) + rest) : 0;
    r->wide = !((T)(lowest - r->log_s) >= EXP_PLAIN_MIN);
    r->sum = form == KLFAST_LOG_PROBS && prm->tol <= DBL_MAX;
    return 0;
}

/* The row function, but for the short rows of logits (KL, Jeffreys, JS,
 * entropy, cross-entropy, the losses) that logits_lanes.h scores
 * (ROW_FN(forms), below). */
static double ROW_FN(forms_long)(const T *p, const T *q, T *g, ptrdiff_t k,
                                 const klfast_forms_params *prm, int *special) {
    const int measure = prm->measure;
    F(forms_consts) c;
    double s_p, s_q = 1.0, sums[2];
    *special = 0;
    if (k <= 0) return 0.0;
    /* KL in two passes instead of three, Jeffreys (rows longer than the
     * lanes') and JS (those and the rows the lanes decline) from KL's
     * centred sums (logits_kl_rows.h) */
    const int sym = F(logits_kl_measure)(prm, g);
    if (sym >= 0) {
        int declined;
        double v = F(logits_kl)(p, q, k, prm, sym, &declined);
        if (!declined) return v;
    }
    memset(&c, 0, sizeof c);
    if (F(forms_prepare)(p, 0, g, k, prm, &c.p, &s_p, special)) return NAN;
    if (measure != KLFAST_ENTROPY && F(forms_prepare)(q, 1, g, k, prm, &c.q, &s_q, special))
        return NAN;
    if (*special) return 0.0;
    c.p_sum = (T)(prm->form[0] == KLFAST_LOGITS ? 1.0 : s_p);
    c.inv_s_q = (T)(1.0 / s_q);
    c.grad_scale = PRM(grad_scale);

    double total;
    /* the losses' measures as constants (no branch per vector); the others a branch */
#define PASS_C(lp, lq, grad)                                                              \
    (measure == KLFAST_KL ? F(forms_pass_c)(p, q, g, k, &c, KLFAST_KL, lp, lq, grad, sums)  \
     : measure == KLFAST_CROSS_ENTROPY                                                    \
         ? F(forms_pass_c)(p, q, g, k, &c, KLFAST_CROSS_ENTROPY, lp, lq, grad, sums)      \
         : F(forms_pass_c)(p, q, g, k, &c, measure, lp, lq, grad, sums))
    switch (c.p.log_form * 4 + c.q.log_form * 2 + (g != NULL)) {
    case 0: total = PASS_C(0, 0, 0); break;
    case 2: total = PASS_C(0, 1, 0); break;
    case 3: total = PASS_C(0, 1, 1); break;
    case 4: total = PASS_C(1, 0, 0); break;
    case 6: total = PASS_C(1, 1, 0); break;
    default: total = PASS_C(1, 1, 1); break; /* a gradient needs logits for q */
    }
#undef PASS_C
    if ((c.p.sum && !(fabs(sums[0] - 1.0) <= prm->tol)) ||
        (c.q.sum && !(fabs(sums[1] - 1.0) <= prm->tol)))
        return NAN;
    switch (measure) {
    case KLFAST_ENTROPY:
    case KLFAST_CROSS_ENTROPY: return 0.0 - total; /* +0.0, not -0.0, for a zero sum */
    case KLFAST_JS: return total > 0 ? 0.5 * total : 0.0;
    default: return total;
    }
}

/* A row of Jeffreys of logits that logits_lanes.h declined: KL both ways,
 * each by KL's row kernels (logits_kl_rows.h first), each >= 0 as the
 * lanes' terms are; Jeffreys' own three passes cancel on nearly equal rows. */
static double ROW_FN(jeffreys_logits)(const T *p, const T *q, ptrdiff_t k,
                                      const klfast_forms_params *prm) {
    klfast_forms_params kl = *prm;
    int special;
    kl.measure = KLFAST_KL;
    return ROW_FN(forms_long)(p, q, NULL, k, &kl, &special) +
           ROW_FN(forms_long)(q, p, NULL, k, &kl, &special);
}

/* One row: the short rows logits_lanes.h scores as a tile of their own,
 * any other row (or one that declines) as above. */
static double ROW_FN(forms)(const T *p, const T *q, T *g, ptrdiff_t k,
                            const klfast_forms_params *prm, int *special) {
    logits_call call;
    if (F(logits_lanes_call)(prm, g, k, &call)) {
        double v;
        int declined;
        F(logits_tile)(p, 0, q, 0, g, 0, NULL, 1, (int)k, &call, &v, &declined);
        *special = 0;
        if (!declined) return v;
        if (call.kind == LOGITS_JEFFREYS) return ROW_FN(jeffreys_logits)(p, q, k, prm);
    }
    return ROW_FN(forms_long)(p, q, g, k, prm, special);
}

/* tiles a tile's prefetch reaches ahead. B/A of this prefetch against none
 * (ab_builds --logits 1, float64 2,000,000 x 10): 0.74 / 0.93 on 1 / 2 threads */
#define LOGITS_AHEAD 2

/* The forms kernel's rows for the calls of logits_lanes.h (KL, Jeffreys, JS,
 * entropy, cross-entropy and the losses of short rows of logits): rows index[i]
 * (NULL: i) for i in [0, n) of p, q and g (p_rs, q_rs, g_rs elements
 * apart, each contiguous; g NULL: no gradient), out[row] = the row's value
 * times scale, a tile of LANES rows at a time; a row that declines takes
 * forms_long, and a loss row it flags exact(). Returns the number of NaN
 * results; or -1, having written nothing, for any other call (then
 * ROW_FN(forms) row by row). */
static ptrdiff_t ROW_FN(logits_tiles)(const T *p, ptrdiff_t p_rs, const T *q, ptrdiff_t q_rs,
                                      T *g, ptrdiff_t g_rs, ptrdiff_t n, ptrdiff_t k,
                                      const klfast_forms_params *prm, const int64_t *index,
                                      double *out, double scale,
                                      double (*exact)(const klfast_forms_params *, const T *,
                                                      const T *, T *, ptrdiff_t)) {
    logits_call call;
    if (!F(logits_lanes_call)(prm, g, k, &call)) return -1;
    /* the prefetch's distance (a distance of at least 2,560 bytes, as
     * lanes_rows.h's SHORT_AHEAD, gained nothing: B/A 1.01 / 1.16 on 1 / 2
     * threads at 4,000,000 x 2 float64, 0.99 / 1.09 at 500,000 x 64) */
    const ptrdiff_t ahead = LOGITS_AHEAD * LANES;
    ptrdiff_t n_bad = 0;
    for (ptrdiff_t i = 0; i < n; i += LANES) {
        const int m = n - i < LANES ? (int)(n - i) : LANES;
        if (!index && i + ahead + LANES <= n) /* the tile ahead rows on */
            for (int r = 0; r < LANES; r++)
                for (ptrdiff_t b = 0; b < k * (ptrdiff_t)sizeof(T); b += 64) {
                    __builtin_prefetch((const char *)(p + (i + ahead + r) * p_rs) + b);
                    __builtin_prefetch((const char *)(q + (i + ahead + r) * q_rs) + b);
                }
        double val[LANES];
        int declined[LANES];
        if (index)
            F(logits_tile)(p, p_rs, q, q_rs, g, g_rs, index + i, m, (int)k, &call, val,
                           declined);
        else
            F(logits_tile)(p + i * p_rs, p_rs, q + i * q_rs, q_rs, g ? g + i * g_rs : NULL, g_rs,
                           NULL, m, (int)k, &call, val, declined);
        for (int r = 0; r < m; r++) {
            const ptrdiff_t row = index ? index[i + r] : i + r;
            double v = val[r];
            if (declined[r]) {
                const T *pr = p + row * p_rs, *qr = q + row * q_rs;
                T *gr = g ? g + row * g_rs : NULL;
                int special;
                if (call.kind == LOGITS_JEFFREYS) {
                    v = ROW_FN(jeffreys_logits)(pr, qr, k, prm);
                } else {
                    v = ROW_FN(forms_long)(pr, qr, gr, k, prm, &special);
                    if (special) v = exact(prm, pr, qr, gr, k);
                }
            }
            v *= scale;
            out[row] = v;
            n_bad += v != v;
        }
    }
    return n_bad;
}

#undef BLOCK
#undef NSUB
#undef NACC
#undef lane_sum_block
#undef LOGITS_AHEAD
