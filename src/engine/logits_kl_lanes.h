/* KL of short rows of logits (k <= KLFAST_LOGITS_SHORT_MAX), one row per
 * lane: the forms kernel's row loop gives it whole tiles of rows
 * (ROW_FN(logits_kl_tiles)), and its row function a tile of one row
 * (ROW_FN(forms), loss_rows.h), so that a row's bits are the same on every
 * route. logits_kl_rows.h reads a row along its vectors and pays a lane sum,
 * a few scalar logs and exps, and its padded tail per row: about 250 ns a
 * row whatever k is, against a few ns an element here. Included by
 * engine/level.h after lanes_rows.h (transpose_rows) and logits_kl_rows.h
 * (its inv_fact table), for float64 and float32. No include guard.
 *
 * Per lane, in float64 for both element types (a float32 row is widened
 * exactly), with u_j = (x_j - max x) / T, e_j = exp(u_j), A = sum e_j and
 * d_j = y_j - x_j, the stable sums of logits_kl_rows.h centred on
 * c = (sum e_j d_j) / A itself, read back from the stored e_j and d_j:
 *   t_j = (d_j - c) / T,  Mc = sum e_j t_j,  Gc = sum e_j g(t_j),  g(t) = e^t - 1 - t,
 *   m = Mc / A,  KL = log1p(e^-m (Gc / A - g(m)))
 * (g a series for |t| < 1, else e^(u_j + t_j) - e_j - e_j t_j). Every term
 * is >= 0: nothing cancels, and nearly equal rows keep their relative
 * accuracy. The sums run over j in order within the lane: a row's value
 * does not depend on its lane, tile, neighbours or dtype route. d_j - c
 * is taken before the division by T: rounding each d_j / T would cost
 * nearly equal rows (d_j about 1e-8, t_j about 1e-13) most of their digits.
 *
 * A lane declines (its row is then scored by logits_kl_rows.h and the
 * three-pass kernel, as before) when the eps rule may bind (some u_j or v_j
 * below log eps + log k + 1/2, since log p_j >= u_j - log k), when an exp
 * could leave the normal range (u_j + t_j above 600), on a NaN or infinite
 * logit, and when m is not small against the sum (the centre off: rows a few
 * ulps apart). So on this path KL is exactly the centred sum, no floor. */

#if KLF_ELEMENT_BITS == 64
#define LOGITS_LANES_EXP_MIN (-708.0) /* float64's EXP_PLAIN_MIN, for both types */

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

/* The lanes of VD_LANES rows: x[j], y[j] element j of each (j < k, k <=
 * KLFAST_LOGITS_SHORT_MAX); low: the smallest u_j or v_j taken (see
 * above). KL per lane into *kl; returns the lanes that decline. Not
 * inlined: one body, so one rounding of every operation, for every caller. */
static __attribute__((noinline)) vl logits_kl_lanes(const vd *x, const vd *y, int k,
                                                     double inv_t, double low, vd *kl) {
    vd e[KLFAST_LOGITS_SHORT_MAX], d[KLFAST_LOGITS_SHORT_MAX];
    const vd zero = {0};
    vd ma = x[0], mb = y[0];
    vl bad = {0};
    for (int j = 0; j < k; j++) {
        ma = vmax_f64(ma, x[j]);
        mb = vmax_f64(mb, y[j]);
        bad |= (vl)(x[j] - x[j] != 0) | (vl)(y[j] - y[j] != 0); /* NaN or +-inf */
    }
    vd lowest = zero, a = zero, s1 = zero;
    for (int j = 0; j < k; j++) {
        vd u = (x[j] - ma) * inv_t, v = (y[j] - mb) * inv_t;
        lowest = vmin_f64(lowest, vmin_f64(u, v));
        e[j] = exp_f64(vmax_f64(u, zero + LOGITS_LANES_EXP_MIN), 0);
        d[j] = y[j] - x[j]; /* (exact for nearby logits) */
        vd ed = e[j] * d[j];
        KLF_KEEP(ed); /* (one rounding, not fused into the sum) */
        a += e[j];
        s1 += ed;
    }
    bad |= (vl)(lowest < low) | (vl)(lowest != lowest);
    vd c = s1 / a, mc = zero, gc = zero, top = zero - INFINITY;
    for (int j = 0; j < k; j++) {
        vd t = (d[j] - c) * inv_t, et = e[j] * t;
        KLF_KEEP(et);
        vl small = (vl)(t < 1.0) & (vl)(t > -1.0);
        vd term;
        /* each lane's term by its own |t_j| (the series or the exp), so the
         * branches only skip work no lane of the vector needs */
        if (!any_lane((vi)~small)) {
            term = e[j] * logits_kl_g_estrin(t);
        } else {
            vd w = (x[j] - ma) * inv_t + t;
            top = vmax_f64(top, vsel_f64(small, zero - INFINITY, w));
            term = exp_f64(vmax_f64(w, zero + LOGITS_LANES_EXP_MIN), 0) - e[j] - et;
            if (any_lane((vi)small)) term = vsel_f64(small, e[j] * logits_kl_g_estrin(t), term);
        }
        KLF_KEEP(term);
        mc += et;
        gc += term;
    }
    vd m = mc / a, g = gc / a;
    vl near = (vl)(m < 1.0) & (vl)(m > -1.0);
    m = vsel_f64(near, m, zero);
    vd g_m = logits_kl_g_estrin(m);
    vd excess = exp_f64(zero - m, 0) * (g - g_m);
    excess = vmax_f64(excess, zero);
    /* log1p(z) = log(w) + (z - (w - 1)) / w, w = 1 + z rounded: the second
     * term is the part of z that w lost */
    vd w = 1.0 + excess;
    vd r = log_f64(w) + (excess - (w - 1.0)) / w;
    bad |= ~near | ~(vl)(g_m <= 0.25 * g) | (vl)(top > 600.0) | ~(vl)(r >= 0);
    *kl = r;
    return bad;
}
#endif

/* The calls whose rows this file scores: logits_kl_applies, k from 1 to
 * KLFAST_LOGITS_SHORT_MAX. */
KLF_INLINE int F(logits_kl_lanes_apply)(const klfast_forms_params *prm, const void *g,
                                        ptrdiff_t k) {
    return k >= 1 && k <= KLFAST_LOGITS_SHORT_MAX && F(logits_kl_applies)(prm, g);
}

/* The lanes of the n <= LANES rows at x (ls apart; with rows, rows[r] * ls
 * from x, copied together first) as double vectors: xd[h * k + j] is
 * element j of rows h VD_LANES to (h + 1) VD_LANES - 1 (zeros past n). */
KLF_INLINE void F(logits_kl_load)(const T *x, ptrdiff_t ls, const int64_t *rows, int n, int k,
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

/* KL of the n <= LANES rows of a tile (as logits_kl_load reads them) into
 * kl[r]; declined[r] = 1 for a row that declines. */
KLF_INLINE void F(logits_kl_tile)(const T *p, ptrdiff_t p_rs, const T *q, ptrdiff_t q_rs,
                                  const int64_t *rows, int n, int k,
                                  const klfast_forms_params *prm, double *kl, int *declined) {
    vd xd[LANES / VD_LANES * KLFAST_LOGITS_SHORT_MAX];
    vd yd[LANES / VD_LANES * KLFAST_LOGITS_SHORT_MAX];
    F(logits_kl_load)(p, p_rs, rows, n, k, xd);
    F(logits_kl_load)(q, q_rs, rows, n, k, yd);
    double low = (double)PRM(log_eps) + log((double)k) + 0.5;
    if (!(low >= LOGITS_LANES_EXP_MIN)) low = LOGITS_LANES_EXP_MIN; /* (eps = 0: -inf) */
    for (int h = 0; h * VD_LANES < n; h++) {
        vd v;
        vl bad = logits_kl_lanes(xd + h * k, yd + h * k, k, (double)PRM(inv_t)[0], low, &v);
        for (int l = 0; l < VD_LANES && h * VD_LANES + l < n; l++) {
            kl[h * VD_LANES + l] = v[l];
            declined[h * VD_LANES + l] = bad[l] != 0;
        }
    }
}

/* One row (k <= KLFAST_LOGITS_SHORT_MAX) as a tile of its own: the row
 * function's value for it, the same bits as in any tile. */
KLF_INLINE double F(logits_kl_short)(const T *p, const T *q, ptrdiff_t k,
                                     const klfast_forms_params *prm, int *declined) {
    double kl;
    F(logits_kl_tile)(p, 0, q, 0, NULL, 1, (int)k, prm, &kl, declined);
    return kl;
}
