/* Short rows of logits, one row per lane: KL, Jeffreys, the Jensen-Shannon
 * divergence, the entropy and the cross-entropy of rows of logits (k <=
 * KLFAST_LOGITS_SHORT_MAX), and the losses (kl_loss, cross_entropy_loss; k
 * <= KLFAST_LOSS_SHORT_MAX) of a row of logits against a target of
 * probabilities, log-probabilities or logits. The forms kernel's row loop
 * gives them whole tiles of rows (ROW_FN(logits_tiles)), and its
 * row function a tile of one row (ROW_FN(forms), loss_rows.h), so that a
 * row's bits (and its gradient's) are the same on every route. The row
 * kernels (logits_kl_rows.h, loss_rows.h) read a row along its vectors and
 * pay lane sums, scalar logs and exps, and padded tails per row: 100 to 250
 * ns a row whatever k is, against a few ns an element here. Included by
 * engine/level.h after lanes_rows.h (transpose_rows) and logits_kl_rows.h
 * (its inv_fact table), for float64 and float32. No include guard.
 *
 * Every lane computes in float64 for both element types (a float32 row is
 * widened exactly; its loss's gradient is rounded to float32 once, at the
 * end), over j in order within the lane: a row's values do not depend on
 * its lane, tile, neighbours or dtype route.
 *
 * KL of two rows of logits, with u_j = (x_j - max x) / T, e_j = exp(u_j),
 * A = sum e_j and d_j = y_j - x_j, takes the stable sums of
 * logits_kl_rows.h centred on c = (sum e_j d_j) / A itself, read back from
 * the stored e_j and d_j:
 *   t_j = (d_j - c) / T,  Mc = sum e_j t_j,  Gc = sum e_j g(t_j),  g(t) = e^t - 1 - t,
 *   m = Mc / A,  KL = log1p(e^-m (Gc / A - g(m)))
 * (g a series for |t| < 1, else e^(u_j + t_j) - e_j - e_j t_j). Every term
 * is >= 0: nothing cancels, and nearly equal rows keep their relative
 * accuracy. d_j - c is taken before the division by T: rounding each
 * d_j / T would cost nearly equal rows (d_j about 1e-8, t_j about 1e-13)
 * most of their digits. A lane declines (its row is then scored by
 * logits_kl_rows.h and the three-pass kernel, as before) when the eps rule
 * may bind (some log p_j = u_j - log A or log q_j = v_j - log B within
 * 1e-9 of log eps, B from the centred sums), when an exp could leave the
 * normal range (u_j or v_j below -708, u_j + t_j above 600), on a NaN or
 * +inf logit or a -inf in Q alone (q_j = 0 against p_j > 0: a floored
 * term), and when m is not small against the sum (the centre off: rows a
 * few ulps apart). A class masked in P (-inf: p_j = 0) is a term of 0,
 * left out of the sums and of the eps rule's test; masked in P alone, its
 * q_j > 0 still counts in B: KL = (the centred sum over the other classes)
 * + log1p(sum of their e^v_j / B_S), both >= 0. So on this path KL is
 * exactly the centred sum, no floor. Jeffreys and the Jensen-Shannon
 * divergence take the same sums (logits_centred_sums) and delta_j = log q_j
 * - log p_j = t_j - log1p((Mc + Gc) / A) (logits_delta_sums), with terms >= 0
 * of their own (logits_jeffreys_lanes, logits_js_lanes); Jeffreys declines
 * as KL does, and on a -inf in P alone.
 *
 * The losses take loss_rows.h's formulas term for term: log q_j = u_j -
 * log s (u_j = (z_j - max z) / T, log s = log1p of the sum of the exps
 * but the maximum's), target probabilities p_j as given (log p~_j = log
 * max(p_j, eps)), log-probabilities as given (p_j = exp(t_j), log p~_j =
 * max(t_j, log eps); at most log_prob_max) or from logits (log p_j as log
 * q_j, log p~_j = max(log p_j, log eps), p_j = exp(log p_j)), then
 *   kl_loss = sum p_j (log p~_j - log q_j),  cross_entropy_loss = -sum p_j log q_j
 * over p_j > 0, and the gradient g_j = (S q_j - p_j) grad_scale (S = sum
 * p_j; 1 for a target of logits). A -inf logit (a masked class) has q_j =
 * 0: a term of +inf where p_j > 0 (the loss is +inf, its gradient finite),
 * none where p_j = 0, and g_j = -p_j grad_scale; a -inf target logit or
 * log-probability has p_j = 0. Scaled logits and target log-probabilities
 * below -708 take the exp that reaches the subnormals (logits_lanes_log_s's
 * wide). A lane declines (loss_rows.h scores the row, or flags it for the
 * exact path) on a logit that is NaN or +inf, a row of -inf, a finite
 * logit whose scaled distance to the maximum overflows, a target
 * probability that is negative or not finite or a log-probability NaN or
 * above log_prob_max (an invalid row), a sum of probabilities past the
 * float64 range, and a probability whose log the eps rule would take below
 * the smallest normal.
 *
 * The entropy and the cross-entropy of rows of logits (logits_xent_lanes,
 * below) take -sum p_j max(log q_j, log eps) with p_j = e_j / s, a term
 * of 0 where p_j is 0 (a -inf logit, or an exp past the subnormals); a lane
 * declines (the three-pass kernel scores the row) only on a logit that is
 * NaN or +inf, on a row of -inf logits, and on a finite logit whose
 * scaled distance to the maximum overflows. */

#if KLF_ELEMENT_BITS == 64
#define LOGITS_LANES_EXP_MIN (-708.0) /* float64's EXP_PLAIN_MIN, for both types */

/* log1p(z) for z >= 0: log(w) + (z - (w - 1)) / w, w = 1 + z rounded; the
 * second term is the part of z that w lost. */
KLF_INLINE vd log1p_lanes(vd z) {
    vd w = 1.0 + z;
    return log_f64(w) + (z - (w - 1.0)) / w;
}

/* g(t) = t^2 h(t) for |t| < 1: the series of logits_kl_g_small (1 / 2! ..
 * 1 / 20!) by Estrin's scheme, a chain of 6 operations instead of 19 (the
 * Horner chain held the lanes' loop to its latency). */
KLF_INLINE vd logits_kl_g_estrin(vd t) {
    const double *a = inv_fact_f64; /* a[n] = 1 / (n + 2)! */
    vd t2 = t * t, t4 = t2 * t2, t8 = t4 * t4, t16 = t8 * t8, p[10];
    for (int i = 0; i < 9; i++) p[i] = a[2 * i] + a[2 * i + 1] * t;
    p[9] = (vd){0} + a[18];
    vd q0 = p[0] + p[1] * t2, q1 = p[2] + p[3] * t2, q2 = p[4] + p[5] * t2;
    vd q3 = p[6] + p[7] * t2, q4 = p[8] + p[9] * t2;
    vd r0 = q0 + q1 * t4, r1 = q2 + q3 * t4;
    return t2 * ((r0 + r1 * t8) + q4 * t16);
}

/* KL's centred sums of VD_LANES rows (see above), shared by KL, Jeffreys
 * and the Jensen-Shannon divergence of the lanes. */
typedef struct {
    vd ma, mb;                 /* the rows' maxima */
    vd a, c, mc, gc;           /* A, the centre c, Mc, Gc */
    vd lowest_u, lowest_v, bx; /* the lowest u_j and v_j taken; bx (P alone's e^v_j) */
    vl bad;                    /* the lanes that decline so far */
    int p_alone;               /* some lane has a class masked in P alone */
} logits_sums;

/* The sums of the lanes' rows x[j], y[j] (j < k, k <=
 * KLFAST_LOGITS_SHORT_MAX) into *s, with e[j] = e^(u_j) (0 for a class
 * masked in P) and, where t is not NULL, t[j] = t_j, eq[j] = e_j e^(t_j)
 * (sum_j eq[j] = A + Mc + Gc) and eem[j] = e_j expm1(t_j) (both 0 for a
 * class masked in P; e^t_j - 1 by g's series where |t_j| < 1, each without
 * cancellation). A class masked in P (x_j = -inf: p_j = 0) is left out of
 * every sum; with alone, one masked in P alone (q_j > 0) puts its e^v_j
 * into bx, else its lane declines, as it does on a -inf in Q alone, a NaN
 * or +inf logit, a row of -inf, and an exp that could leave the normal
 * range (u_j or v_j below -708, u_j + t_j above 600). When a tile has a
 * non-finite logit the loops select the masked classes (masked), the same
 * operations elsewhere. */
KLF_INLINE void logits_centred_sums(const vd *x, const vd *y, int k, double inv_t, int alone,
                                    vd *e, vd *t, vd *eq, vd *eem, logits_sums *s) {
    vd d[KLFAST_LOGITS_SHORT_MAX];
    const vd zero = {0};
    vd ma = x[0], mb = y[0];
    vl bad = {0};
    for (int j = 0; j < k; j++) {
        ma = vmax_f64(ma, x[j]);
        mb = vmax_f64(mb, y[j]);
        bad |= (vl)(x[j] - x[j] != 0) | (vl)(y[j] - y[j] != 0); /* NaN or +-inf */
    }
    const int masked = any_lane((vi)bad);
    int p_alone = 0; /* a class masked in P alone in some lane */
    if (masked) { /* only NaN, +inf, -inf in Q alone (in P alone without alone), rows of -inf */
        vl in_p_alone = {0};
        bad = (vl)(ma < -DBL_MAX) | (vl)(mb < -DBL_MAX);
        for (int j = 0; j < k; j++) {
            vl ok = (vl)(y[j] < -DBL_MAX);
            if (alone) {
                in_p_alone |= (vl)(x[j] < -DBL_MAX) & (vl)(y[j] >= -DBL_MAX);
                ok |= (vl)(y[j] - y[j] == 0);
            }
            bad |= ((vl)(x[j] - x[j] != 0) | (vl)(y[j] - y[j] != 0)) & ~((vl)(x[j] < -DBL_MAX) & ok);
        }
        p_alone = alone && any_lane((vi)in_p_alone);
    }
    vd lowest_u = zero, lowest_v = zero, a = zero, s1 = zero, bx = zero;
    for (int j = 0; j < k; j++) {
        vd u = (x[j] - ma) * inv_t, v = (y[j] - mb) * inv_t;
        vl in_p = {0};
        if (masked) {
            /* masked in P (in Q too, or q_j > 0 there: its e^v_j into bx), out
             * of the sums */
            in_p = (vl)(x[j] < -DBL_MAX);
            if (p_alone) {
                vl lone = in_p & (vl)(y[j] >= -DBL_MAX);
                if (any_lane((vi)lone)) /* (an exp only where some lane needs it) */
                    bx += vsel_f64(lone, exp_f64(vmax_f64(v, zero + LOGITS_LANES_EXP_MIN), 0), zero);
            }
            lowest_u = vmin_f64(lowest_u, vsel_f64(in_p, zero, u));
            lowest_v = vmin_f64(lowest_v, vsel_f64(in_p, zero, v));
        } else {
            lowest_u = vmin_f64(lowest_u, u);
            lowest_v = vmin_f64(lowest_v, v);
        }
        e[j] = exp_f64(vmax_f64(u, zero + LOGITS_LANES_EXP_MIN), 0);
        d[j] = y[j] - x[j]; /* (exact for nearby logits) */
        if (masked) {
            e[j] = vsel_f64(in_p, zero, e[j]);
            d[j] = vsel_f64(in_p, zero, d[j]);
        }
        vd ed = e[j] * d[j];
        KLF_KEEP(ed); /* (one rounding, not fused into the sum) */
        a += e[j];
        s1 += ed;
    }
    bad |= ~(vl)(lowest_u >= LOGITS_LANES_EXP_MIN) | ~(vl)(lowest_v >= LOGITS_LANES_EXP_MIN);
    vd c = s1 / a, mc = zero, gc = zero, top = zero - INFINITY;
    for (int j = 0; j < k; j++) {
        vd tj = (d[j] - c) * inv_t, et = e[j] * tj;
        KLF_KEEP(et);
        vl small = (vl)(tj < 1.0) & (vl)(tj > -1.0);
        vd term, ew = zero;
        const int wide = any_lane((vi)~small);
        /* each lane's term by its own |t_j| (the series or the exp), so the
         * branches only skip work no lane of the vector needs */
        if (!wide) {
            term = e[j] * logits_kl_g_estrin(tj);
        } else {
            vd w = (x[j] - ma) * inv_t + tj;
            top = vmax_f64(top, vsel_f64(small, zero - INFINITY, w));
            ew = exp_f64(vmax_f64(w, zero + LOGITS_LANES_EXP_MIN), 0);
            term = ew - e[j] - et;
            if (any_lane((vi)small)) term = vsel_f64(small, e[j] * logits_kl_g_estrin(tj), term);
            if (masked) { /* (exp(w) - 0 - 0) */
                term = vsel_f64((vl)(e[j] == 0.0), zero, term);
                ew = vsel_f64((vl)(e[j] == 0.0), zero, ew);
            }
        }
        KLF_KEEP(term);
        mc += et;
        gc += term;
        if (t) {
            t[j] = tj;
            eem[j] = et + term;
            eq[j] = e[j] + eem[j];
            if (wide) { /* |t_j| >= 1: e^(u_j + t_j) itself */
                eem[j] = vsel_f64(small, eem[j], ew - e[j]);
                eq[j] = vsel_f64(small, eq[j], ew);
            }
        }
    }
    bad |= (vl)(top > 600.0);
    *s = (logits_sums){ma, mb, a, c, mc, gc, lowest_u, lowest_v, bx, bad, p_alone};
}

/* KL of the lanes' rows x[j], y[j] (j < k, k <= KLFAST_LOGITS_SHORT_MAX)
 * by their centred sums; low: the smallest log p_j or log q_j taken (log
 * eps + 1e-9, see above). KL per lane into *kl; returns the lanes that
 * decline. Not inlined: one body, so one rounding of every operation, for
 * every caller. */
static __attribute__((noinline)) vl logits_kl_lanes(const vd *x, const vd *y, int k,
                                                     double inv_t, double low, vd *kl) {
    vd e[KLFAST_LOGITS_SHORT_MAX];
    const vd zero = {0};
    logits_sums s;
    logits_centred_sums(x, y, k, inv_t, 1, e, NULL, NULL, NULL, &s);
    vl bad = s.bad;
    vd a = s.a, mc = s.mc, gc = s.gc;
    /* the eps rule: log p_j = u_j - log A, log q_j = v_j - log B, with B =
     * sum_j e^(v_j) = (A + Mc + Gc) e^((max x + c - max y) / T) (sum_j e_j
     * e^t_j, t_j = v_j - u_j - (max x + c - max y) / T) */
    vd log_b = log_f64(a + mc + gc) + ((s.ma + s.c) - s.mb) * inv_t, extra = zero;
    if (s.p_alone && any_lane((vi)(vl)(s.bx > 0.0))) {
        /* classes masked in P alone: p_j = 0, but B holds their e^v_j. KL
         * over the others (the sums above, B_S) plus log(B / B_S) = log1p(bx
         * / B_S), a term >= 0. (A q_j below e^-708 adds at most that, against
         * B >= 1. log B_S >= -708 where the lane passes lowest_v's test.) */
        vd r = s.bx * exp_f64(vmin_f64(zero - log_b, zero + 708.0), 0);
        bad |= ~(vl)(r <= DBL_MAX);
        extra = vsel_f64((vl)(s.bx > 0.0), log1p_lanes(r), zero);
        log_b += extra;
    }
    bad |= ~(vl)(s.lowest_u - log_f64(a) >= low) | ~(vl)(s.lowest_v - log_b >= low);
    vd m = mc / a, g = gc / a;
    vl near = (vl)(m < 1.0) & (vl)(m > -1.0);
    m = vsel_f64(near, m, zero);
    vd g_m = logits_kl_g_estrin(m);
    vd excess = exp_f64(zero - m, 0) * (g - g_m);
    excess = vmax_f64(excess, zero);
    vd r = log1p_lanes(excess);
    bad |= ~near | ~(vl)(g_m <= 0.25 * g) | ~(vl)(r >= 0);
    *kl = s.p_alone ? r + extra : r;
    return bad;
}

/* Jeffreys' and JS's start: KL's centred sums of the lanes' rows (into *s,
 * e, eq and eem: logits_centred_sums, a -inf in one row alone declining),
 * then delta[j] = log q_j - log p_j = t_j - log1p((Mc + Gc) / A) (no
 * cancellation for nearby logits; 0 for a class masked in P). Returns the
 * lanes that decline: the sums' and those where some |delta_j| > 700 (or
 * is NaN), where e^delta could leave the normal range. With
 * B = A + Mc + Gc, e^-log1p((Mc + Gc) / A) = A / B, so e_j expm1(delta_j) =
 * (A eem_j - e_j (Mc + Gc)) / B: no exp or series per element (a class
 * whose delta_j is near 0 while t_j is not loses digits there, but its
 * term, about e_j delta_j^2, is as small against the row's). */
KLF_INLINE vl logits_delta_sums(const vd *x, const vd *y, int k, double inv_t, vd *e, vd *eq,
                               vd *eem, vd *delta, logits_sums *s) {
    vd t[KLFAST_LOGITS_SHORT_MAX];
    const vd zero = {0};
    logits_centred_sums(x, y, k, inv_t, 0, e, t, eq, eem, s);
    vd l = log1p_lanes((s->mc + s->gc) / s->a);
    vl far = {0};
    for (int j = 0; j < k; j++) {
        delta[j] = vsel_f64((vl)(e[j] == 0.0), zero, t[j] - l);
        far |= ~(vl)(delta[j] <= 700.0) | ~(vl)(delta[j] >= -700.0);
    }
    return s->bad | far;
}

/* The Jensen-Shannon divergence of the lanes' rows x[j], y[j] (j < k, k <=
 * KLFAST_LOGITS_SHORT_MAX) into *js; returns the lanes that decline. With
 * delta_j (logits_delta_sums), tau_j = tanh(delta_j / 2) and m_j = (p_j + q_j)
 * / 2, p_j = m_j (1 - tau_j) and q_j = m_j (1 + tau_j), so
 *   JS = (1/4) sum_j (p_j + q_j) S(tau_j),  S = (1 + tau) log(1 + tau) + (1 - tau) log(1 - tau),
 * every term >= 0: nearly equal rows keep their relative accuracy. For
 * |delta| < 1.5, S = |delta| |tau| + log1p(-tau^2) (half of the first part
 * cancels: one bit), tau = E / (2 + E), E = expm1(delta_j) = n_j / (e_j B),
 * n_j = A eem_j - e_j (Mc + Gc); beyond, S = 2 (log 2 - log1p(w) - |delta|
 * w / (1 + w)), w = e^-|delta| = min(q_j / p_j, p_j / q_j). p_j = e_j / A,
 * q_j = eq_j / B (B by the sum of the eq_j for the weights: all >= 0). A
 * lane declines as KL's sums do (JS has no eps rule) and where
 * logits_delta_sums flags it. A class masked in both rows is a term of 0; a
 * -inf in one row alone declines. Not inlined, as KL. */
static __attribute__((noinline)) vl logits_js_lanes(const vd *x, const vd *y, int k,
                                                    double inv_t, vd *js) {
    vd e[KLFAST_LOGITS_SHORT_MAX], eq[KLFAST_LOGITS_SHORT_MAX], eem[KLFAST_LOGITS_SHORT_MAX];
    vd dl[KLFAST_LOGITS_SHORT_MAX];
    const vd zero = {0};
    logits_sums s;
    vl bad = logits_delta_sums(x, y, k, inv_t, e, eq, eem, dl, &s);
    vd mg = s.mc + s.gc, b = s.a + mg, sum_q = zero;
    for (int j = 0; j < k; j++) sum_q += eq[j];
    vd inv_a = 1.0 / s.a, inv_q = 1.0 / sum_q, sum = zero;
    for (int j = 0; j < k; j++) {
        vd ad = vmax_f64(dl[j], zero - dl[j]), eb = e[j] * b, sj = zero;
        vl mid = (vl)(ad < 1.5);
        if (any_lane((vi)mid)) {
            vd n = s.a * eem[j] - e[j] * mg, tau = n / (2.0 * eb + n);
            sj = vmax_f64(tau, zero - tau) * ad + log1p_lanes(zero - tau * tau);
        }
        if (any_lane((vi)~mid)) {
            vd aq = s.a * eq[j];
            vl pos = (vl)(dl[j] > 0.0);
            vd w = vsel_f64(pos, eb, aq) / vsel_f64(pos, aq, eb);
            vd sw = 2.0 * ((M_LN2 - log1p_lanes(w)) - ad * w / (1.0 + w));
            sj = any_lane((vi)mid) ? vsel_f64(mid, sj, sw) : sw;
        }
        vd term = (e[j] * inv_a + eq[j] * inv_q) * vsel_f64((vl)(e[j] == 0.0), zero, sj);
        KLF_KEEP(term);
        sum += term;
    }
    *js = vmax_f64(0.25 * sum, zero);
    return bad | ~(vl)(sum_q <= DBL_MAX);
}

/* Jeffreys of the lanes' rows x[j], y[j] (j < k, k <=
 * KLFAST_LOGITS_SHORT_MAX) into *jf; returns the lanes that decline. With
 * delta_j and n_j = e_j B expm1(delta_j) (logits_delta_sums), q_j - p_j = p_j
 * expm1(delta_j), so
 *   J = sum_j (q_j - p_j) (log q_j - log p_j) = sum_j n_j delta_j / (A B),
 * every term >= 0: nearly equal rows keep their relative accuracy, in one
 * pass after KL's sums where KL both ways took two. A lane declines as
 * KL's does (the eps rule may bind: low; a -inf in one row alone) and
 * where logits_delta_sums flags it. Not inlined, as KL. */
static __attribute__((noinline)) vl logits_jeffreys_lanes(const vd *x, const vd *y, int k,
                                                          double inv_t, double low, vd *jf) {
    vd e[KLFAST_LOGITS_SHORT_MAX], eq[KLFAST_LOGITS_SHORT_MAX], eem[KLFAST_LOGITS_SHORT_MAX];
    vd dl[KLFAST_LOGITS_SHORT_MAX];
    const vd zero = {0};
    logits_sums s;
    vl bad = logits_delta_sums(x, y, k, inv_t, e, eq, eem, dl, &s);
    vd mg = s.mc + s.gc, b = s.a + mg;
    /* the eps rule as KL's: log q_j = v_j - log B', B' = B e^((max x + c - max y) / T) */
    vd log_b = log_f64(b) + ((s.ma + s.c) - s.mb) * inv_t;
    bad |= ~(vl)(s.lowest_u - log_f64(s.a) >= low) | ~(vl)(s.lowest_v - log_b >= low);
    vd sum = zero;
    for (int j = 0; j < k; j++) {
        vd term = (s.a * eem[j] - e[j] * mg) * dl[j];
        KLF_KEEP(term);
        sum += term;
    }
    *jf = vmax_f64(sum / (s.a * b), zero);
    return bad;
}

/* A loss call's constants, in float64 for both element types. */
typedef struct {
    int kl;       /* kl_loss; else cross_entropy_loss */
    int target;   /* its form: KLFAST_PROBS, KLFAST_LOG_PROBS or KLFAST_LOGITS */
    int grad;     /* the gradient rows are asked for */
    double inv_t_p, inv_t, eps, log_eps, grad_scale, log_prob_max;
} logits_loss_consts;

/* (rare) e[j] = exp(v[j]) again, by the exp that reaches the subnormals and
 * 0 (exp_f64's wide: the same bits where both are normal), in the lanes
 * where v[j] is below -708 (or NaN); a vector with no such lane is left. */
KLF_INLINE void logits_lanes_exp_low(const vd *v, int k, vd *e) {
    for (int j = 0; j < k; j++) {
        vl lo = ~(vl)(v[j] >= LOGITS_LANES_EXP_MIN);
        if (any_lane((vi)lo)) e[j] = vsel_f64(lo, exp_f64(v[j], 1), e[j]);
    }
}

/* u[j] = (x_j - max x) inv_t and e[j] = exp(u[j]) of the lanes' rows x, and
 * their log s = log1p((ties - 1) + rest), the sum of exps as the count of
 * elements at the maximum (exp(0) = 1 each) and the sum of the others, as
 * loss_rows.h's pass B takes it; *s = ties + rest. Flags (in *bad) a NaN or
 * infinite element and a u below -708. With wide, when a lane has either
 * (rare: *sub set), the exps of u below -708 are taken again by the exp
 * that reaches subnormals and 0 (exp_f64's wide: the same bits where both
 * are normal), and only a NaN or +inf element, a row of -inf and a finite
 * element whose u overflowed are flagged: a -inf logit has e[j] = 0.
 * Without *sub every e[j] >= 3e-308. */
KLF_INLINE vd logits_lanes_log_s(const vd *x, int k, double inv_t, int wide, vd *u, vd *e,
                                 vd *s, vl *bad, int *sub) {
    const vd zero = {0};
    vd mx = x[0], rest = zero, ties = zero, lowest = zero;
    vl odd = {0};
    for (int j = 0; j < k; j++) {
        mx = vmax_f64(mx, x[j]);
        odd |= (vl)(x[j] - x[j] != 0); /* NaN or +-inf */
    }
    for (int j = 0; j < k; j++) {
        u[j] = (x[j] - mx) * inv_t;
        lowest = vmin_f64(lowest, u[j]);
        e[j] = exp_f64(vmax_f64(u[j], zero + LOGITS_LANES_EXP_MIN), 0);
        vl top = (vl)(x[j] == mx);
        rest += vsel_f64(top, zero, e[j]);
        ties += vsel_f64(top, zero + 1.0, zero);
    }
    odd |= ~(vl)(lowest >= LOGITS_LANES_EXP_MIN);
    *sub = wide && any_lane((vi)odd);
    if (!wide) {
        *bad |= odd;
    } else if (*sub) {
        logits_lanes_exp_low(u, k, e);
        rest = ties = zero;
        for (int j = 0; j < k; j++) {
            *bad |= (vl)(x[j] != x[j]) | (vl)(x[j] > DBL_MAX) | /* NaN, +inf */
                    ((vl)(u[j] < -DBL_MAX) & (vl)(x[j] >= -DBL_MAX)); /* overflowed */
            vl top = (vl)(x[j] == mx);
            rest += vsel_f64(top, zero, e[j]);
            ties += vsel_f64(top, zero + 1.0, zero);
        }
        *bad |= (vl)(mx < -DBL_MAX); /* every logit -inf */
    }
    *s = ties + rest;
    return log1p_lanes((ties - 1.0) + rest);
}

/* The loss of VD_LANES rows: t[j], z[j] element j of the target and logits
 * rows (k <= KLFAST_LOSS_SHORT_MAX). The loss per lane into *loss, and
 * with c->grad the gradient into grad[j]; returns the lanes that decline.
 * Not inlined: one body, so one rounding of every operation, for every
 * caller. */
static __attribute__((noinline)) vl logits_loss_lanes(const vd *t, const vd *z, int k,
                                                      const logits_loss_consts *c, vd *loss,
                                                      vd *grad) {
    vd u[KLFAST_LOSS_SHORT_MAX], e[KLFAST_LOSS_SHORT_MAX];
    vd a[KLFAST_LOSS_SHORT_MAX], la[KLFAST_LOSS_SHORT_MAX];
    const vd zero = {0};
    vl bad = {0};
    vd s, sum_p = zero + 1.0;
    int sub;
    vd log_s = logits_lanes_log_s(z, k, c->inv_t, 1, u, e, &s, &bad, &sub);
    if (c->target == KLFAST_LOGITS) { /* la first holds the target's u, a its exps (unused) */
        vd s_p, low = zero;
        vd log_s_p = logits_lanes_log_s(t, k, c->inv_t_p, 1, la, a, &s_p, &bad, &sub);
        for (int j = 0; j < k; j++) {
            vd lp = la[j] - log_s_p;
            low = vmin_f64(low, lp);
            a[j] = exp_f64(vmax_f64(lp, zero + LOGITS_LANES_EXP_MIN), 0);
            la[j] = vmax_f64(lp, zero + c->log_eps);
        }
        if (sub || any_lane((vi) ~(vl)(low >= LOGITS_LANES_EXP_MIN))) {
            /* (rare) p_j = 0 at -inf, subnormal past -708: log p_j again (la
             * holds them floored; kept there, they cost the common tile a
             * loop: kl_loss with the gradient 1.04-1.05x) */
            vd lp[KLFAST_LOSS_SHORT_MAX], mx = t[0];
            for (int j = 0; j < k; j++) mx = vmax_f64(mx, t[j]);
            for (int j = 0; j < k; j++) {
                vd uj = (t[j] - mx) * c->inv_t_p;
                KLF_KEEP(uj); /* (rounded, as u in logits_lanes_log_s: not fused) */
                lp[j] = uj - log_s_p;
            }
            logits_lanes_exp_low(lp, k, a);
        }
    } else if (c->target == KLFAST_LOG_PROBS) { /* p_j = exp(t_j) as given, -inf: 0 */
        vd low = zero;
        sum_p = zero;
        for (int j = 0; j < k; j++) {
            bad |= ~(vl)(t[j] <= c->log_prob_max); /* NaN, +inf, past the sums' tolerance */
            low = vmin_f64(low, t[j]);
            a[j] = exp_f64(vmax_f64(t[j], zero + LOGITS_LANES_EXP_MIN), 0);
            la[j] = vmax_f64(t[j], zero + c->log_eps);
            sum_p += a[j];
        }
        if (any_lane((vi) ~(vl)(low >= LOGITS_LANES_EXP_MIN))) { /* as above */
            logits_lanes_exp_low(t, k, a);
            sum_p = zero;
            for (int j = 0; j < k; j++) sum_p += a[j];
        }
    } else {
        sum_p = zero;
        for (int j = 0; j < k; j++) {
            a[j] = t[j];
            bad |= ~((vl)(t[j] >= 0.0) & (vl)(t[j] <= DBL_MAX)); /* NaN, negative, inf */
            sum_p += t[j];
            if (c->kl) {
                vd pe = vmax_f64(t[j], zero + c->eps);
                bad |= (vl)(pe < DBL_MIN) & (vl)(t[j] > 0.0);
                la[j] = log_f64(vmax_f64(pe, zero + DBL_MIN));
            }
        }
        bad |= ~(vl)(sum_p <= DBL_MAX);
    }
    vd acc = zero;
    for (int j = 0; j < k; j++) {
        vd lq = u[j] - log_s;
        vd term = c->kl ? a[j] * (la[j] - lq) : a[j] * lq;
        acc += vsel_f64((vl)(a[j] > 0.0), term, zero);
    }
    *loss = c->kl ? acc : zero - acc; /* (+0.0, not -0.0, for a zero sum) */
    if (c->grad) {
        vd inv_s = 1.0 / s;
        for (int j = 0; j < k; j++) grad[j] = (sum_p * (e[j] * inv_s) - a[j]) * c->grad_scale;
    }
    return bad;
}

/* The entropy (y NULL) or cross-entropy of VD_LANES rows of logits x
 * (against the rows of logits y; k <= KLFAST_LOGITS_SHORT_MAX):
 *   -sum p_j log q~_j,  p_j = e_j / s,  log q~_j = max(u_j - log s, log eps)
 * (u, e, s of x; for the cross-entropy v_j - log s_y of y), every term >= 0
 * for eps <= 1.
 * p_j is e_j / s (one exp an element), where the row kernel takes the exp of
 * log p_j. A -inf logit (a masked class) and a scaled logit far below the
 * maximum are taken here (logits_lanes_log_s's wide): p_j = 0 gives a term
 * of 0, and a -inf log q_j with p_j > 0 a term of log eps (+inf at eps = 0).
 * Declines a NaN or +inf logit and a row of -inf. Not inlined: one body for
 * every caller. */
static __attribute__((noinline)) vl logits_xent_lanes(const vd *x, const vd *y, int k,
                                                      double inv_t_p, double inv_t_q,
                                                      double log_eps, vd *out) {
    vd u[KLFAST_LOGITS_SHORT_MAX], e[KLFAST_LOGITS_SHORT_MAX];
    vd v[KLFAST_LOGITS_SHORT_MAX], f[KLFAST_LOGITS_SHORT_MAX];
    const vd zero = {0};
    vl bad = {0};
    vd s, s_q, acc = zero;
    int sub, sub_q;
    vd log_s = logits_lanes_log_s(x, k, inv_t_p, 1, u, e, &s, &bad, &sub);
    vd log_s_q = y ? logits_lanes_log_s(y, k, inv_t_q, 1, v, f, &s_q, &bad, &sub_q) : log_s;
    vd inv_s = 1.0 / s;
    for (int j = 0; j < k; j++) {
        vd p = e[j] * inv_s, term = p * vmax_f64((y ? v[j] : u[j]) - log_s_q, zero + log_eps);
        /* p == 0 (only where sub): a term of 0, though log q~ be -inf at eps = 0 */
        acc += sub ? vsel_f64((vl)(p > 0.0), term, zero) : term;
    }
    *out = zero - acc; /* (+0.0, not -0.0, for a zero sum) */
    return bad;
}

enum { LOGITS_KL, LOGITS_JEFFREYS, LOGITS_JS, LOGITS_LOSS, LOGITS_XENT };

/* A call whose rows this file scores, its constants taken once. */
typedef struct {
    int kind;             /* LOGITS_KL, LOGITS_JEFFREYS, LOGITS_JS, LOGITS_LOSS, LOGITS_XENT */
    int use_q;            /* the second input is read (not the entropy) */
    double inv_t, low;    /* KL, Jeffreys, JS: 1 / T; the lowest log p_j or log q_j taken */
    double inv_t_q, log_eps; /* the entropy and cross-entropy (inv_t: p's) */
    logits_loss_consts c; /* the losses */
} logits_call;
#endif

/* 1, with *call set, for the calls whose rows this file scores, k from 1
 * to KLFAST_LOGITS_SHORT_MAX: KL of two rows of logits, their Jeffreys and
 * their Jensen-Shannon divergence (logits_kl_measure),
 * the entropy of logits and the cross-entropy of two rows of logits, and up
 * to KLFAST_LOSS_SHORT_MAX the losses of logits against a target of
 * probabilities, log-probabilities or logits (no sum check); g: the
 * gradient rows, or NULL. eps is the element type's, as the row kernels
 * take it; the losses' 1 / T and gradient scale are float64's for both
 * types (as the exact path's), the divergences' 1 / T the element type's. */
KLF_INLINE int F(logits_lanes_call)(const klfast_forms_params *prm, const void *g, ptrdiff_t k,
                                    logits_call *call) {
    if (!(k >= 1 && k <= KLFAST_LOGITS_SHORT_MAX)) return 0;
    call->use_q = 1;
    if ((prm->measure == KLFAST_ENTROPY || prm->measure == KLFAST_CROSS_ENTROPY) &&
        !prm->loss && g == NULL && prm->form[0] == KLFAST_LOGITS &&
        (prm->measure == KLFAST_ENTROPY || prm->form[1] == KLFAST_LOGITS)) {
        call->kind = LOGITS_XENT;
        call->use_q = prm->measure != KLFAST_ENTROPY;
        call->inv_t = (double)PRM(inv_t)[0];
        call->inv_t_q = (double)PRM(inv_t)[1];
        call->log_eps = (double)PRM(log_eps);
        return 1;
    }
    const int sym = F(logits_kl_measure)(prm, g);
    if (sym >= 0) {
        call->kind = sym == 0 ? LOGITS_KL : sym == 1 ? LOGITS_JEFFREYS : LOGITS_JS;
        call->inv_t = (double)PRM(inv_t)[0];
        /* (KL, Jeffreys: 1e-9 above log eps, far past the rounding of log
         * p_j; eps = 0: -inf) */
        call->low = (double)PRM(log_eps) + 1e-9;
        return 1;
    }
    const int m = prm->measure, target = prm->form[0];
    if (!(k <= KLFAST_LOSS_SHORT_MAX && prm->loss && prm->form[1] == KLFAST_LOGITS &&
          !prm->normalize && (m == KLFAST_KL || m == KLFAST_CROSS_ENTROPY) &&
          (target == KLFAST_PROBS || target == KLFAST_LOG_PROBS || target == KLFAST_LOGITS) &&
          !(prm->tol <= DBL_MAX)))
        return 0;
    call->kind = LOGITS_LOSS;
    call->c = (logits_loss_consts){
        .kl = m == KLFAST_KL,
        .target = target,
        .grad = g != NULL,
        .inv_t_p = prm->inv_t[0],
        .inv_t = prm->inv_t[1],
        .eps = (double)PRM(eps),
        .log_eps = (double)PRM(log_eps),
        .grad_scale = prm->grad_scale,
        .log_prob_max = (double)PRM(log_prob_max),
    };
    return 1;
}

/* The lanes of the n <= LANES rows at x (ls apart; with rows, rows[r] * ls
 * from x, copied together first) as double vectors: xd[h * k + j] is
 * element j of rows h VD_LANES to (h + 1) VD_LANES - 1 (zeros past n). */
KLF_INLINE void F(logits_load)(const T *x, ptrdiff_t ls, const int64_t *rows, int n, int k,
                               vd *xd) {
    T rowbuf[LANES * KLFAST_LOGITS_SHORT_MAX], buf[LANES * KLFAST_LOGITS_SHORT_MAX];
    if (rows) {
        for (int r = 0; r < n; r++) memcpy(rowbuf + r * k, x + rows[r] * ls, k * sizeof(T));
        x = rowbuf;
        ls = k;
    }
    F(transpose_rows)(x, ls, n, k, buf);
    for (int j = 0; j < k; j++) {
        V v;
        memcpy(&v, buf + j * LANES, sizeof(V));
#if KLF_ELEMENT_BITS == 64
        xd[j] = v;
#else
        vd w[2];
        widen_to(w, v);
        xd[j] = w[0];
        xd[k + j] = w[1];
#endif
    }
}

/* The inverse of logits_load for the gradient rows: gd (laid out as
 * logits_load lays out a tile) into the n rows at g (gs apart; with rows,
 * rows[r] * gs from g), rounded to T once, but the rows that declined. */
KLF_INLINE void F(logits_store)(T *g, ptrdiff_t gs, const int64_t *rows, int n, int k,
                                const vd *gd, const int *declined) {
    T buf[LANES * KLFAST_LOGITS_SHORT_MAX], tr[LANES * LANES];
    for (int j = 0; j < k; j++) {
#if KLF_ELEMENT_BITS == 64
        V v = gd[j];
#else
        V v = join_halves(__builtin_convertvector(gd[j], vfh),
                          __builtin_convertvector(gd[k + j], vfh));
#endif
        memcpy(buf + j * LANES, &v, sizeof(V));
    }
    for (int j0 = 0; j0 < k; j0 += LANES) { /* LANES elements of each row at a time */
        const int w = k - j0 < LANES ? k - j0 : LANES;
        F(transpose_rows)(buf + j0 * LANES, LANES, w, n, tr);
        for (int r = 0; r < n; r++)
            if (!declined[r])
                memcpy(g + (rows ? rows[r] : r) * gs + j0, tr + r * LANES, w * sizeof(T));
    }
}

/* The n <= LANES rows of a tile (as logits_load reads them): their values
 * into val[r], declined[r] = 1 for a row that declines, and for a loss
 * with a gradient the gradient rows of the others (at g, g_rs apart, as
 * p and q). */
KLF_INLINE void F(logits_tile)(const T *p, ptrdiff_t p_rs, const T *q, ptrdiff_t q_rs, T *g,
                               ptrdiff_t g_rs, const int64_t *rows, int n, int k,
                               const logits_call *call, double *val, int *declined) {
    vd xd[LANES / VD_LANES * KLFAST_LOGITS_SHORT_MAX];
    vd yd[LANES / VD_LANES * KLFAST_LOGITS_SHORT_MAX];
    vd gd[LANES / VD_LANES * KLFAST_LOGITS_SHORT_MAX];
    F(logits_load)(p, p_rs, rows, n, k, xd);
    if (call->use_q) F(logits_load)(q, q_rs, rows, n, k, yd);
    for (int h = (n + VD_LANES - 1) / VD_LANES; h < LANES / VD_LANES; h++)
        for (int j = 0; j < k; j++) gd[h * k + j] = (vd){0}; /* (halves not scored) */
    for (int h = 0; h * VD_LANES < n; h++) {
        vd v, *x = xd + h * k, *y = yd + h * k;
        vl bad = call->kind == LOGITS_LOSS ? logits_loss_lanes(x, y, k, &call->c, &v, gd + h * k)
                 : call->kind == LOGITS_KL
                     ? logits_kl_lanes(x, y, k, call->inv_t, call->low, &v)
                 : call->kind == LOGITS_JEFFREYS
                     ? logits_jeffreys_lanes(x, y, k, call->inv_t, call->low, &v)
                 : call->kind == LOGITS_JS
                     ? logits_js_lanes(x, y, k, call->inv_t, &v)
                     : logits_xent_lanes(x, call->use_q ? y : NULL, k, call->inv_t,
                                         call->inv_t_q, call->log_eps, &v);
        for (int l = 0; l < VD_LANES && h * VD_LANES + l < n; l++) {
            val[h * VD_LANES + l] = v[l];
            declined[h * VD_LANES + l] = bad[l] != 0;
        }
    }
    if (call->kind == LOGITS_LOSS && call->c.grad)
        F(logits_store)(g, g_rs, rows, n, k, gd, declined);
}
