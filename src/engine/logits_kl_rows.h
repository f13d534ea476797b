/* KL(P || Q) of two rows of logits, in two passes over the rows (a third
 * for the rare row whose first centre is poor, one more when the eps rule
 * binds): the forms kernel (engine/loss_rows.h) tries it first for float64
 * and float32, and the float16 one (S = uint16_t) reads float16 rows with it
 * directly. Jeffreys and the Jensen-Shannon divergence of such rows take its
 * first pass and centred sums, then one pass of their own (logits_sym_rest).
 * Included by engine/level.h after engine/element.h. No include guard.
 *
 * With u_j = (x_j - max x) / T, e_j = exp(u_j), A = sum e_j, p_j = e_j / A,
 * d_j = (y_j - x_j) / T and c = sum_j p_j d_j:
 *   KL0 = sum p_j (log p_j - log q_j) = log sum_j p_j e^(d_j - c)
 *       = log1p(sum_j p_j g(d_j - c)),   g(x) = e^x - 1 - x >= 0,
 *   KL = KL0 + (sum e_j (c_j(p) - c_j(q))) / A,   c_j = max(log eps - log a_j, 0)
 * (the eps rule log a~ = max(log a, log eps) as a correction c_j >= 0 that
 * is 0 unless log a_j < log eps). Every term of KL0 is >= 0: nothing
 * cancels, and nearly equal rows keep their relative accuracy (the direct
 * sum, (sum e_j (u_j - v_j)) / A - log A + log B, loses all the digits of a
 * KL near 0 to the rounding of log B - log A). Pass 1 reads both rows for
 * their maxima and minima (and the minima of each of at most NSB
 * superblocks of the row), and y at each lane's maximum of x: c', the
 * average of d over those lanes weighted by their p, is the centre of pass 2
 * (logits_kl_block_centred), which sums e_j, e_j dl_j and e_j g(dl_j), dl_j =
 * d_j - c', with one exp per element (e_j) and a second (e^(u_j + dl_j))
 * only for vectors where some |dl_j| >= G_SMALL; with m =
 * c - c' the sum centred on c follows exactly (logits_kl_stable). When m is
 * too large for that (g(m) above a quarter of the sum: rare, c' lies within
 * a small part of the spread of d from c), a small KL takes the stable pass
 * from the centre found, a large one (nothing to cancel) the direct value. A
 * row whose d at those maxima spans FUSE_SPREAD or more (not nearly equal:
 * most lanes would need the second exp), or whose e^(u + dl) could leave the
 * range, takes the direct two-pass sums (logits_kl_sums) instead, and the
 * stable pass below STABLE_BELOW. The
 * last pass, only when a row's smallest log-probability is below log eps,
 * adds the corrections of the vectors that hold such an element (with the
 * exps of pass 2, recomputed bit for bit), reading only the superblocks
 * whose minima may be below it. Corrections that cancel a term (p_j and q_j
 * both floored) take log q_j - log p_j = dl_j - m - KL0 from the centred
 * sums; a KL made mostly of floored terms keeps an error of eps_T times
 * their size. A row of the direct sums whose corrections cancel most of
 * them (REDO_CANCEL) is summed once more with the eps rule in each term
 * (logits_kl_block_floored), which leaves no such error.
 *
 * It declines (sets *declined; the three-pass kernel then scores the row,
 * and finds what is wrong with it) a row with a NaN or infinite logit, or
 * scaled logits spread past HUGE_VALUE (u_j - v_j would not be finite). A
 * row whose scaled logits spread past EXP_PLAIN_MIN takes the wide exp
 * (probabilities down to the subnormals, then 0) in every pass.
 *
 * Lanes as in the forms kernel: blocks of 128 bytes of T (NSUB vectors), lane
 * l of a sum takes the elements j = l mod (128 / sizeof(T)), accumulated in
 * float64 (the weighted sum after GROUP blocks in T) and combined by lane_sum
 * in a fixed order; the tail is one block
 * padded with x_0 (y_0) whose extra lanes are zeroed before they are summed. */

#define BLOCK ((int)(128 / sizeof(T))) /* elements per block */
#define NSUB (128 / KLF_VBYTES)        /* native vectors per block */
#define NACC (BLOCK / VD_LANES)        /* double accumulators per block */
#define NSB 256                        /* superblocks per row, at most */
#define lane_sum_block(acc) lane_sum((acc), BLOCK)

typedef struct {
    T ma, mb, inv_ta, inv_tb; /* the maxima, 1 / T */
    T log_a, log_b, log_eps;  /* pass 3: log A, log B (rounded to T) */
    T x_low, y_low;           /* pass 3: see logits_kl_low */
    T center;                 /* the centred sums: c' (see logits_kl_block_centred) */
    T shift;                  /* pass 3 after it: log q_j - log p_j = dl_j - shift */
    int stable;               /* pass 3: dl and shift are set */
    int wide;                 /* some u_j or v_j is below EXP_PLAIN_MIN: the wide exp */
    T a3, mg;                 /* Jeffreys' and JS's pass: A3 and Mc + Gc */
    T *keep;                  /* Jeffreys, JS: e_j, then e_j expm1(dl_j) keep_n further on */
    ptrdiff_t keep_n;
    int floor;                /* Jeffreys' pass: some log p_j or log q_j may be below log eps */
} F(logits_kl_consts);

/* g(x) = e^x - 1 - x = x^2 h(x), h(x) = sum_n x^n / (n + 2)!, for |x| < G_SMALL:
 * the terms to where they fall below half an ulp of h (h >= 1/e there). */
#define G_SMALL 1.0
#define FUSE_DIRECT 1.0 /* badly centred pass-2 sums: the direct KL0 from here on */
#define REDO_CANCEL 4.0 /* pass-3 corrections this many times KL: logits_kl_block_floored */
#define SYM_KEEP_STACK 1024 /* elements Jeffreys and JS keep on the stack (logits_sym_rest) */
#define SYM_SPREAD 4.0       /* Jeffreys: the centred sums for rows whose d spans less */
#if KLF_ELEMENT_BITS == 64
#define G_TERMS 19
#define STABLE_BELOW 0.5 /* the stable pass for rows whose KL0 is below this */
#define FUSE_MAX 600.0   /* the largest u + dl of the centred pass 2 */
#define FUSE_SPREAD 4.0  /* the centred pass 2 for rows whose d at the lanes' maxima spans less */
#else
#define G_TERMS 11
#define STABLE_BELOW 0.01
#define FUSE_MAX 60.0
#define FUSE_SPREAD 1.0 /* float32 rows of a larger KL need no stable sum */
#endif
/* 1 / n! for n = 2 .. 20, correctly rounded (n! is exact in double) */
static const double F(inv_fact)[19] = {
    1.0 / 2,          1.0 / 6,           1.0 / 24,          1.0 / 120,
    1.0 / 720,        1.0 / 5040,        1.0 / 40320,       1.0 / 362880,
    1.0 / 3628800,    1.0 / 39916800,    1.0 / 479001600,   1.0 / 6227020800,
    1.0 / 87178291200, 1.0 / 1307674368000, 1.0 / 20922789888000,
    1.0 / 355687428096000, 1.0 / 6402373705728000, 1.0 / 121645100408832000,
    1.0 / 2432902008176640000};

/* g(m) in double: the series to 1/20! for |m| < 1 (expm1(m) - m loses the
 * digits of a small m), where its terms are below 1e-17 of it. (The
 * factorials from a table: dividing them out per row took 70 ns.) */
static inline double F(logits_kl_g)(double m) {
    if (!(fabs(m) < 1)) return expm1(m) - m;
    double h = F(inv_fact)[18];
    for (int n = 20; n > 2; n--) h = h * m + F(inv_fact)[n - 3]; /* 1 / (n - 1)! */
    return m * m * h;
}

KLF_INLINE V F(logits_kl_g_small)(V x) {
    const double *inv_fact = F(inv_fact);
    V h = BCAST((T)inv_fact[G_TERMS - 1]);
    for (int n = G_TERMS - 2; n >= 0; n--) h = h * x + (T)inv_fact[n];
    return x * x * h;
}

/* Pass 1: the maxima and minima of both rows, NaN flagged. */
KLF_INLINE void F(logits_kl_block_range)(const S *xb, const S *yb, V *mxa, V *ya, V *mna,
                                         V *mxb, V *mnb, M *bad) {
    for (int s = 0; s < NSUB; s++) {
        V x, y;
        LOADV(&x, xb + s * LANES);
        LOADV(&y, yb + s * LANES);
        M top = (M)(x > mxa[s]); /* y at each lane's maximum of x, for the centre */
        mxa[s] = VSEL(top, x, mxa[s]);
        ya[s] = VSEL(top, y, ya[s]);
        mna[s] = VMIN(mna[s], x);
        mxb[s] = VMAX(mxb[s], y);
        mnb[s] = VMIN(mnb[s], y);
        bad[s] |= (M)(x != x) | (M)(y != y);
    }
}

/* Pass 2: A and B, widened every vector (KL of nearly equal rows is in the
 * digits of log A - log B: a float32 partial sum would cost them), and sum
 * e_j (u_j - v_j), added in T into w_sum for GROUP blocks before it is
 * widened. valid: NULL, or a tail block's lanes. */
KLF_INLINE void F(logits_kl_block_sums)(const S *xb, const S *yb, const F(logits_kl_consts) *c,
                                        int SCALED, int WIDE, const M *valid, vd *sa, vd *sb,
                                        V *w_sum) {
    for (int s = 0; s < NSUB; s++) {
        V x, y;
        LOADV(&x, xb + s * LANES);
        LOADV(&y, yb + s * LANES);
        V u = x - c->ma, v = y - c->mb;
        if (SCALED) { /* else 1 / T is 1 for both: the same bits */
            u *= c->inv_ta;
            v *= c->inv_tb;
        }
        V e = EXP(u, WIDE), f = EXP(v, WIDE);
        V t = e * (u - v);
        if (valid) {
            e = VSEL(valid[s], e, BCAST(0));
            f = VSEL(valid[s], f, BCAST(0));
            t = VSEL(valid[s], t, BCAST(0));
        }
        ADD(sa, s, e);
        ADD(sb, s, f);
        w_sum[s] += t;
    }
}

KLF_INLINE void F(logits_kl_sums)(const S *x, const S *y, ptrdiff_t k, const S *x_tail,
                                  const S *y_tail, const M *valid,
                                  const F(logits_kl_consts) *c, int SCALED, int WIDE, vd *sa,
                                  vd *sb,
                                  vd *w) {
    const ptrdiff_t k_full = k - k % BLOCK;
    for (int i = 0; i < NACC; i++) sa[i] = sb[i] = w[i] = (vd){0};
    for (ptrdiff_t j = 0; j < k;) {
        V w_sum[NSUB];
        for (int s = 0; s < NSUB; s++) w_sum[s] = BCAST(0);
        ptrdiff_t end = j + GROUP * BLOCK < k_full ? j + GROUP * BLOCK : k_full;
        for (; j < end; j += BLOCK)
            F(logits_kl_block_sums)(x + j, y + j, c, SCALED, WIDE, NULL, sa, sb, w_sum);
        if (j == k_full && k_full < k) { /* the tail, in the last group */
            F(logits_kl_block_sums)(x_tail, y_tail, c, SCALED, WIDE, valid, sa, sb, w_sum);
            j = k;
        }
        for (int s = 0; s < NSUB; s++) ADD(w, s, w_sum[s]);
    }
}

/* u_j, dl_j = d_j - c' (d_j = (y_j - x_j) / T) and, where d_out is not
 * NULL, d_j */
KLF_INLINE void F(logits_kl_u_dl)(const S *xb, const S *yb, const F(logits_kl_consts) *c,
                                  int SCALED, V *u_out, V *dl_out, V *d_out) {
    V x, y;
    LOADV(&x, xb);
    LOADV(&y, yb);
    V u = x - c->ma, dl = y - x;
    if (SCALED) { /* u as pass 2 and pass 3 round it: the same e_j */
        u *= c->inv_ta;
        dl *= c->inv_ta;
    }
    *u_out = u;
    *dl_out = dl - c->center;
    if (d_out) *d_out = dl;
}

/* The centred sums, for rows whose KL is small against the rounding of the
 * direct two-pass sum (nearly equal rows, where W / A and log B - log A
 * cancel). With d_j = (y_j - x_j) / T (any constant may be added: only its
 * spread under p counts; the difference of two nearby logits is exact, one
 * temperature for both rows: logits_kl_measure) and c = sum_j p_j d_j,
 *   KL0 = log sum_j p_j e^(d_j - c) = log1p(sum_j p_j g(d_j - c)),
 * every term >= 0, nothing cancels. c is only known after the row is read,
 * so the pass centres on a c' and sums, with dl_j = d_j - c', A3 = sum e_j,
 * Mc = sum e_j dl_j, Gc = sum e_j g(dl_j); with m = Mc / A3 (= c - c'),
 * sum p_j g(d_j - c) = e^-m (Gc / A3 - g(m)) exactly, and nothing measurable
 * cancels while g(m) is small against Gc / A3 (logits_kl_stable). g(dl) is a
 * series for |dl| < G_SMALL, else e^(u + dl) - e - e dl: the second exp of an
 * element, only for vectors with such a lane (u + dl is bounded by the
 * caller). */
KLF_INLINE void F(logits_kl_centred_terms)(const S *xb, const S *yb,
                                           const F(logits_kl_consts) *c, int SCALED, int WIDE,
                                           V *u_out, V *e_out, V *dl_out, V *edl_out, V *g_out,
                                           V *eem, V *d_out) {
    V u, dl;
    F(logits_kl_u_dl)(xb, yb, c, SCALED, &u, &dl, d_out);
    V e = EXP(u, WIDE), t_big = BCAST(0), f = BCAST(0), edl = e * dl;
    KLF_KEEP(edl); /* one rounded e dl on every path (see KLF_KEEP) */
    M small = (M)(dl < (T)G_SMALL) & (M)(dl > (T)-G_SMALL);
    if (any_lane((vi)~small)) {
        f = WIDE ? EXP(u + dl, 1) : EXP(VMAX(u + dl, BCAST(EXP_PLAIN_MIN)), 0);
        t_big = f - e - edl;
    }
    /* a select on either path: the sum below is never fused with the
     * product on one path only, which would change the bits between the
     * float16 and float32 instantiations */
    V t = VSEL(small, e * F(logits_kl_g_small)(dl), t_big);
    *u_out = u;
    *e_out = e;
    *dl_out = dl;
    *edl_out = edl;
    *g_out = t;
    if (eem) *eem = VSEL(small, edl + t, f - e); /* e expm1(dl), without cancellation */
}

/* ke, keem: NULL, or where e_j and e_j expm1(dl_j) are kept, and sd[s]
 * takes e_j d_j (Jeffreys, JS). */
KLF_INLINE void F(logits_kl_block_centred)(const S *xb, const S *yb,
                                           const F(logits_kl_consts) *c, int SCALED, int WIDE,
                                           const M *valid, T *ke, T *keem, vd *sa, V *sm,
                                           V *sg, V *sd) {
    for (int s = 0; s < NSUB; s++) {
        V u, e, edl, t, dl, eem, d;
        F(logits_kl_centred_terms)(xb + s * LANES, yb + s * LANES, c, SCALED, WIDE, &u, &e, &dl,
                                   &edl, &t, ke ? &eem : NULL, ke ? &d : NULL);
        if (ke) {
            memcpy(ke + s * LANES, &e, sizeof(V));
            memcpy(keem + s * LANES, &eem, sizeof(V));
            V ed = e * d;
            KLF_KEEP(ed);
            sd[s] += valid ? VSEL(valid[s], ed, BCAST(0)) : ed;
        }
        if (valid) {
            e = VSEL(valid[s], e, BCAST(0));
            edl = VSEL(valid[s], edl, BCAST(0));
            t = VSEL(valid[s], t, BCAST(0));
        }
        ADD(sa, s, e);
        sm[s] += edl;
        sg[s] += t;
    }
}

/* Jeffreys' (JS 0) or the Jensen-Shannon divergence's (JS 1) pass, after
 * the centred sums (c->a3 = A3, c->mg = Mc + Gc, B3 = A3 + Mc + Gc), from
 * e_j and eem_j = e_j expm1(dl_j) as that pass kept them (ke, keem): with
 * delta_j = log q_j - log p_j = dl_j - c->shift (c->shift = log1p((Mc +
 * Gc) / A3)) and n_j = A3 eem_j - e_j (Mc + Gc) = e_j B3 expm1(delta_j),
 * p_j = e_j / A3, q_j = (e_j + eem_j) / B3, every term >= 0:
 *   Jeffreys: n_j delta_j (J = their sum / (A3 B3)); with c->floor, where
 *     log p_j = u_j - log A3 or log q_j = log p_j + delta_j is below log
 *     eps, delta_j becomes log q~_j - log p~_j (0 when both are floored);
 *   JS: (p_j + q_j) S(tau_j) (JS = their sum / 4), tau_j = tanh(delta_j / 2)
 *     = n_j / (2 e_j B3 + n_j), S in the two forms logits_js_lanes takes
 *     (|delta_j| below 1.5: |delta_j| |tau_j| + log1p(-tau_j^2); beyond: 2
 *     (log 2 - log1p(w) - |delta_j| w / (1 + w)), w = min(q_j / p_j, p_j /
 *     q_j)), written with one division and one log.
 * Into sj[s]. */
KLF_INLINE void F(logits_sym_block)(const S *xb, const S *yb, const F(logits_kl_consts) *c,
                                    int SCALED, int JS, const M *valid, const T *ke,
                                    const T *keem, V *sj) {
    const V log_eps = BCAST(c->log_eps), zero = BCAST(0);
    const T b3 = c->a3 + c->mg;
    for (int s = 0; s < NSUB; s++) {
        V u, dl, e, eem, term;
        F(logits_kl_u_dl)(xb + s * LANES, yb + s * LANES, c, SCALED, &u, &dl, NULL);
        KLF_KEEP(u); /* (u and dl rounded, never fused into lp or delta: see KLF_KEEP) */
        KLF_KEEP(dl);
        memcpy(&e, ke + s * LANES, sizeof(V)); /* as the centred pass left them */
        memcpy(&eem, keem + s * LANES, sizeof(V));
        V delta = dl - c->shift;
        if (!JS && c->floor) {
            V lp = u - c->log_a, lq = lp + delta;
            M low = (M)(lp < log_eps) | (M)(lq < log_eps);
            delta = VSEL(low, VMAX(lq, log_eps) - VMAX(lp, log_eps), delta);
        }
        V ae = c->a3 * eem, n;
        KLF_KEEP(ae);
        n = ae - e * c->mg;
        KLF_KEEP(n);
        if (!JS) {
            term = n * delta;
        } else {
            /* One division and one log: D = e_j B3 + A3 eq_j = 2 e_j B3 + n_j,
             * tau_j = n_j / D. Near, S = |tau| |delta| + log1p(-tau^2): the log
             * of w = 1 - tau^2 rounded, plus the part of -tau^2 that w lost
             * (below half an ulp of w) divided by w. Far, with lo and hi the
             * lesser and the greater of e_j B3 and A3 eq_j (q_j / p_j = A3 eq_j
             * / (e_j B3)), 1 - |tau| = 2 lo / D and 1 + |tau| = 2 hi / D without
             * cancellation: S = 2 (log(2 hi / D) - |delta| lo / D). (Up to three
             * divisions and two logs a vector before: JS up to 1.3x this time.) */
            V ad = VMAX(delta, zero - delta), eq = e + eem, eb = e * b3, aq = c->a3 * eq;
            /* (a D below the smallest normal, TMIN, would overflow 1 / D: its
             * class, p_j and q_j below TMIN, gets a tau and an S bounded but
             * off, weighed by p_j + q_j < 2 TMIN) */
            V lo = VMIN(eb, aq), hi = VMAX(eb, aq), inv = 1 / VMAX(lo + hi, BCAST(TMIN));
            V tau = n * inv, t2 = tau * tau;
            /* (|tau| < tanh(0.75) = 0.64 below 1.5; near 1 only for a p_j in the
             * subnormals, whose n_j and e_j B3 are rounded to a few bits: the
             * far form takes those; NaN, 0 / 0 for a class of p_j = q_j = 0,
             * is masked below) */
            M mid = (M)(ad < (T)1.5) & (M)(t2 < (T)0.81);
            V arg = VSEL(mid, 1 - t2, 2 * hi * inv), lg = LOG(arg);
            /* (1 / (1 - tau^2) = 1 + tau^2 to within tau^4 < 0.17) */
            V sm = VMAX(tau, zero - tau) * ad + (lg + ((zero - t2) - (arg - 1)) * (1 + t2));
            V sw = 2 * (lg - ad * (lo * inv));
            sm = VSEL(mid, sm, sw);
            V wgt = e * (1 / c->a3) + eq * (1 / b3);
            KLF_KEEP(wgt);
            /* (a class whose p_j and q_j are both 0: masked, or past the wide
             * exp; where only p_j is, eq_j = e^(u_j + dl_j) of the wide exp) */
            term = VSEL((M)(wgt == zero), zero, wgt * sm);
        }
        if (valid) term = VSEL(valid[s], term, zero);
        sj[s] += term;
    }
}

/* The centred sums A3, Mc, Gc (sums[0..2]); MODE 1: also keeping e_j and
 * e_j expm1(dl_j) in c->keep, and sum e_j d_j (sums[3]); MODE 2 (3):
 * Jeffreys' (JS's) sum of terms from them instead (sums[1]). */
KLF_INLINE void F(logits_kl_centred)(const S *x, const S *y, ptrdiff_t k, const S *x_tail,
                                     const S *y_tail, const M *valid,
                                     const F(logits_kl_consts) *c, int SCALED, int WIDE,
                                     int MODE, double *sums) {
    T *ke = MODE ? c->keep : NULL, *keem = MODE ? c->keep + c->keep_n : NULL;
    const ptrdiff_t k_full = k - k % BLOCK;
    vd sa[NACC], mc[NACC], gc[NACC], dc[NACC];
    for (int i = 0; i < NACC; i++) sa[i] = mc[i] = gc[i] = dc[i] = (vd){0};
    for (ptrdiff_t j = 0; j < k;) {
        V sm[NSUB], sg[NSUB], sd[NSUB];
        for (int s = 0; s < NSUB; s++) sm[s] = sg[s] = sd[s] = BCAST(0);
        ptrdiff_t end = j + GROUP * BLOCK < k_full ? j + GROUP * BLOCK : k_full;
#define CENTRED_BLOCK(xb, yb, vl)                                                         \
    (MODE >= 2 ? F(logits_sym_block)(xb, yb, c, SCALED, MODE == 3, vl, ke + j, keem + j, sm) \
               : F(logits_kl_block_centred)(xb, yb, c, SCALED, WIDE, vl, MODE ? ke + j : NULL, \
                                            MODE ? keem + j : NULL, sa, sm, sg, sd))
        for (; j < end; j += BLOCK) CENTRED_BLOCK(x + j, y + j, NULL);
        if (j == k_full && k_full < k) {
            CENTRED_BLOCK(x_tail, y_tail, valid);
            j = k;
        }
#undef CENTRED_BLOCK
        for (int s = 0; s < NSUB; s++) {
            ADD(mc, s, sm[s]);
            ADD(gc, s, sg[s]);
            if (MODE == 1) ADD(dc, s, sd[s]);
        }
    }
    sums[0] = lane_sum_block(sa);
    sums[1] = lane_sum_block(mc);
    sums[2] = lane_sum_block(gc);
    if (MODE == 1) sums[3] = lane_sum_block(dc);
}

/* A3, Mc and Gc about c->center (sums[0..2]); mode: as logits_kl_centred's. */
KLF_INLINE void F(logits_kl_centred_sums)(const S *x, const S *y, ptrdiff_t k,
                                          const S *x_tail, const S *y_tail, const M *valid,
                                          const F(logits_kl_consts) *c, int mode, double *sums) {
#define CENTRED(sc, wi)                                                                     \
    (mode == 3   ? F(logits_kl_centred)(x, y, k, x_tail, y_tail, valid, c, sc, wi, 3, sums) \
     : mode == 2 ? F(logits_kl_centred)(x, y, k, x_tail, y_tail, valid, c, sc, wi, 2, sums) \
     : mode == 1 ? F(logits_kl_centred)(x, y, k, x_tail, y_tail, valid, c, sc, wi, 1, sums) \
                 : F(logits_kl_centred)(x, y, k, x_tail, y_tail, valid, c, sc, wi, 0, sums))
    switch ((c->inv_ta == 1 ? 0 : 2) + c->wide) {
    case 0: CENTRED(0, 0); break;
    case 1: CENTRED(0, 1); break;
    case 2: CENTRED(1, 0); break;
    default: CENTRED(1, 1); break;
    }
#undef CENTRED
}

/* KL0 from the centred sums, and c->shift; 0 when the centre was too far
 * off for them (g(m) above a quarter of the sum), *good then 0. */
KLF_INLINE double F(logits_kl_from_centred)(const double *sums, F(logits_kl_consts) *c,
                                            int *good) {
    double m = sums[1] / sums[0], g = sums[2] / sums[0], g_m = F(logits_kl_g)(m);
    *good = fabs(m) < 1 && g_m <= 0.25 * g;
    if (!*good) return 0.0;
    double excess = exp(-m) * (g - g_m);
    double kl0 = log1p(excess > 0 ? excess : 0.0);
    c->shift = (T)(m + kl0);
    return kl0;
}

/* The stable pass: the centred sums from c->center, and once more from the
 * centre they give when it was off by more than the spread of d (rows a few
 * ulps apart, where the rounding of the direct sum is all of it); returns
 * KL0 (before the eps rule) and sets c->shift. */
KLF_INLINE double F(logits_kl_stable)(const S *x, const S *y, ptrdiff_t k, const S *x_tail,
                                      const S *y_tail, const M *valid,
                                      F(logits_kl_consts) *c) {
    double sums[3];
    int good;
    F(logits_kl_centred_sums)(x, y, k, x_tail, y_tail, valid, c, 0, sums);
    double kl0 = F(logits_kl_from_centred)(sums, c, &good);
    if (good) return kl0;
    c->center = (T)((double)c->center + sums[1] / sums[0]);
    F(logits_kl_centred_sums)(x, y, k, x_tail, y_tail, valid, c, 0, sums);
    double m = sums[1] / sums[0], excess = exp(-m) * (sums[2] / sums[0] - F(logits_kl_g)(m));
    kl0 = log1p(excess > 0 ? excess : 0.0);
    c->shift = (T)(m + kl0);
    return kl0;
}

/* Pass 3: sum e_j (c_j(p) - c_j(q)). Only elements x_j < x_low (y_j <
 * y_low) can be below log eps (x_low: a bound with a margin, checked in
 * logits_kl); an exp only for a vector holding one. */
KLF_INLINE void F(logits_kl_block_floor)(const S *xb, const S *yb,
                                         const F(logits_kl_consts) *c, const M *valid,
                                         vd *corr) {
    const V log_eps = BCAST(c->log_eps);
    for (int s = 0; s < NSUB; s++) {
        V x, y;
        LOADV(&x, xb + s * LANES);
        LOADV(&y, yb + s * LANES);
        M maybe = (M)(x < c->x_low) | (M)(y < c->y_low);
        if (valid) maybe &= valid[s];
        if (!any_lane((vi)maybe)) continue;
        V u = (x - c->ma) * c->inv_ta, la = u - c->log_a, lb, lb_la;
        if (c->stable) { /* lb - la from the stable pass's accurate dl */
            lb_la = ((y - x) * c->inv_ta - c->center) - c->shift;
            lb = la + lb_la;
        } else {
            lb = (y - c->mb) * c->inv_tb - c->log_b;
            lb_la = lb - la;
        }
        M p_low = (M)(la < log_eps), q_low = (M)(lb < log_eps);
        M low = p_low | q_low;
        if (valid) low &= valid[s];
        /* both floored: the term is 0, this corrects by -(la - lb) */
        V d = VSEL(p_low & q_low, lb_la,
                   VMAX(log_eps - la, BCAST(0)) - VMAX(log_eps - lb, BCAST(0)));
        V e = c->wide ? EXP(u, 1) : EXP(u, 0);
        ADD(corr, s, VSEL(low, e * d, BCAST(0)));
    }
}

/* The direct sum with the eps rule in each term: sum e_j (log p~_j - log
 * q~_j), log p_j = u_j - log A, log q_j = v_j - log B, into acc. For rows
 * whose pass-3 corrections cancel most of the direct sum (REDO_CANCEL):
 * logits of a wide spread with q below eps where p is not (confident rows
 * far apart). There the direct sum's terms e_j (u_j - v_j) and their
 * corrections are about the spread, and their rounding (half an ulp of it)
 * is left in a KL near log(1 / eps); here every term whose e_j counts has
 * logs within log eps and log k of 0. */
KLF_INLINE void F(logits_kl_block_floored)(const S *xb, const S *yb,
                                           const F(logits_kl_consts) *c, const M *valid,
                                           vd *acc) {
    const V log_eps = BCAST(c->log_eps);
    for (int s = 0; s < NSUB; s++) {
        V x, y;
        LOADV(&x, xb + s * LANES);
        LOADV(&y, yb + s * LANES);
        V u = (x - c->ma) * c->inv_ta;
        V la = VMAX(u - c->log_a, log_eps);
        V lb = VMAX((y - c->mb) * c->inv_tb - c->log_b, log_eps);
        V e = c->wide ? EXP(u, 1) : EXP(u, 0);
        V t = e * (la - lb);
        if (valid) t = VSEL(valid[s], t, BCAST(0));
        ADD(acc, s, t);
    }
}

/* A logit x_low from which on log a = (x - m) inv_t - log_s, as the vector
 * code rounds it, is surely not below log eps (a margin of 1/4 in log a for
 * the roundings): rounding is monotonic, so x_low is good when its own log a
 * is; +inf when it is not (every element is then checked). */
KLF_INLINE T F(logits_kl_low)(T m, T inv_t, T log_s, T log_eps) {
    T x_low = (T)((double)m + ((double)log_eps + (double)log_s + 0.5) / (double)inv_t);
    T at_low = (T)((T)((x_low - m) * inv_t) - log_s);
    return at_low >= log_eps + 0.25f && x_low <= m ? x_low : (T)INFINITY;
}

/* Jeffreys (js 0) or the Jensen-Shannon divergence (js 1) of two rows of
 * logits, after pass 1 (c: the maxima, 1 / T, the centre c', wide;
 * lowest_a, lowest_b: the smallest u_j and v_j), from KL's centred sums and
 * one more pass (logits_sym_block), every term >= 0, so nearly equal rows
 * keep their relative accuracy (the three-pass kernel takes log p_j - log
 * q_j from log A and log B, and is off by their rounding). The sums are
 * taken again from the centre they give when c' was off (as KL's stable
 * pass); a row declines (*declined stays 1) when e^(u + dl) could leave
 * the range (FUSE_MAX: then the rows are far apart, and nothing cancels in
 * the three-pass kernel), or its buffer cannot be had (and, for Jeffreys,
 * before this, when d spans SYM_SPREAD or more: logits_kl). The centred
 * pass keeps e_j and e_j expm1(dl_j) for the last pass (on the stack up to
 * SYM_KEEP_STACK elements, else on the heap): recomputing them took
 * Jeffreys 1.4-1.7x the three-pass kernel's time at 20,000 x 1,000. */
KLF_INLINE double F(logits_sym_rest)(const S *x, const S *y, ptrdiff_t k, const S *x_tail,
                                     const S *y_tail, const M *valid, F(logits_kl_consts) *c,
                                     T lowest_a, T lowest_b, T log_eps, int js, int *declined) {
    double sums[4];
    T stack[2 * SYM_KEEP_STACK];
    c->keep_n = (k + BLOCK - 1) / BLOCK * BLOCK;
    c->keep = c->keep_n <= SYM_KEEP_STACK ? stack : malloc(2 * c->keep_n * sizeof(T));
    if (!c->keep) return 0.0;
    double jf = NAN;
    for (int round = 0;; round++) {
        if (!(((double)c->mb - (double)c->ma) * c->inv_ta - (double)c->center <= FUSE_MAX))
            goto done;
        F(logits_kl_centred_sums)(x, y, k, x_tail, y_tail, valid, c, 1, sums);
        /* the centre is good while m = c - c' is within about 3 standard
         * deviations of d (g(m) <= 0.9 sum p_j g(dl_j), that sum >= g(m)
         * by convexity): delta_j and n_j then lose a few ulps to it at most
         * (KL's sums ask for more: logits_kl_from_centred). Else the sums
         * are taken once more from c = sum e_j d_j / A3 (as the lanes take
         * it); a class whose dl_j is off by that centre's rounding has a
         * delta_j near 0 and a term about e_j delta_j^2, whose error is as
         * small against the row's. */
        double m = sums[1] / sums[0];
        if (round || F(logits_kl_g)(m) <= 0.9 * (sums[2] / sums[0])) break;
        c->center = (T)(sums[3] / sums[0]); /* c itself: c' + m would keep c''s rounding */
    }
    const double a = sums[0], mg = sums[1] + sums[2], b = a + mg;
    const double log_a = log(a);
    /* log q_j = v_j - log B, B = B3 e^(c' + (max x - max y) / T) */
    const double log_b =
        log(b) + (double)c->center + ((double)c->ma - (double)c->mb) * c->inv_ta;
    c->a3 = (T)a;
    c->mg = (T)mg;
    c->shift = (T)log1p(mg / a);
    c->log_a = (T)log_a;
    c->log_eps = log_eps;
    /* (Jeffreys: a margin of 1 for the roundings, the pass tests each element) */
    c->floor = !js && (!(lowest_a - log_a >= (double)log_eps + 1) ||
                       !(lowest_b - log_b >= (double)log_eps + 1));
    F(logits_kl_centred_sums)(x, y, k, x_tail, y_tail, valid, c, js ? 3 : 2, sums);
    jf = js ? 0.25 * sums[1] : sums[1] / (a * b);
    *declined = !(b > 0) || jf != jf;
done:
    if (c->keep != stack) free(c->keep);
    return *declined ? 0.0 : jf > 0 ? jf : 0.0;
}

/* KL (sym 0), Jeffreys (1) or the Jensen-Shannon divergence (2:
 * logits_sym_rest) of two rows of logits; see the top of this file. */
KLF_INLINE double F(logits_kl)(const S *x, const S *y, ptrdiff_t k,
                               const klfast_forms_params *prm, int sym, int *declined) {
    S xt[BLOCK], yt[BLOCK];
    M valid[NSUB] = {{0}}; /* the tail's lanes */
    const int n_tail = (int)(k % BLOCK);
    const ptrdiff_t k_full = k - n_tail;
    const S *x_tail = NULL, *y_tail = NULL;
    *declined = 1;
    if (k <= 0) return 0.0;
    if (n_tail) {
#if KLF_ELEMENT_BITS == 16
        x_tail = F(padded_tail)(xt, BLOCK, x + k_full, n_tail, x[0]);
        y_tail = F(padded_tail)(yt, BLOCK, y + k_full, n_tail, y[0]);
#else
        x_tail = F(padded_block)(xt, BLOCK, x + k_full, n_tail, x[0]);
        y_tail = F(padded_block)(yt, BLOCK, y + k_full, n_tail, y[0]);
#endif
        F(block_tail_masks)(valid, n_tail);
    }

    /* pass 1, by superblocks of sb_blocks blocks, noting each one's minima */
    const ptrdiff_t n_blocks = (k + BLOCK - 1) / BLOCK;
    const ptrdiff_t sb_blocks = (n_blocks + NSB - 1) / NSB;
    const int n_sb = (int)((n_blocks + sb_blocks - 1) / sb_blocks);
    T sb_min_x[NSB], sb_min_y[NSB];
    V mxa[NSUB], mxb[NSUB], ya[NSUB];
    M bad[NSUB];
    for (int s = 0; s < NSUB; s++) {
        mxa[s] = BCAST(TO_T(x[0]));
        ya[s] = BCAST(TO_T(y[0]));
        mxb[s] = BCAST(TO_T(y[0]));
        bad[s] = (M){0};
    }
    T mn_a = TO_T(x[0]), mn_b = TO_T(y[0]);
    for (int sb = 0; sb < n_sb; sb++) {
        V mna[NSUB], mnb[NSUB];
        const ptrdiff_t j0 = sb * sb_blocks * BLOCK; /* the superblock's first element */
        for (int s = 0; s < NSUB; s++) {
            mna[s] = BCAST(TO_T(x[j0]));
            mnb[s] = BCAST(TO_T(y[j0]));
        }
        ptrdiff_t b1 = (sb + 1) * sb_blocks < n_blocks ? (sb + 1) * sb_blocks : n_blocks;
        for (ptrdiff_t b = sb * sb_blocks; b < b1; b++) {
            ptrdiff_t j = b * BLOCK;
            if (j < k_full)
                F(logits_kl_block_range)(x + j, y + j, mxa, ya, mna, mxb, mnb, bad);
            else
                F(logits_kl_block_range)(x_tail, y_tail, mxa, ya, mna, mxb, mnb, bad);
        }
        T lo_x = mna[0][0], lo_y = mnb[0][0];
        for (int s = 0; s < NSUB; s++)
            for (int l = 0; l < LANES; l++) {
                lo_x = mna[s][l] < lo_x ? mna[s][l] : lo_x;
                lo_y = mnb[s][l] < lo_y ? mnb[s][l] : lo_y;
            }
        sb_min_x[sb] = lo_x;
        sb_min_y[sb] = lo_y;
        mn_a = lo_x < mn_a ? lo_x : mn_a;
        mn_b = lo_y < mn_b ? lo_y : mn_b;
    }
    T ma = mxa[0][0], mb = mxb[0][0];
    int flagged = 0;
    for (int s = 0; s < NSUB; s++)
        for (int l = 0; l < LANES; l++) {
            ma = mxa[s][l] > ma ? mxa[s][l] : ma;
            mb = mxb[s][l] > mb ? mxb[s][l] : mb;
            flagged |= bad[s][l] != 0;
        }
    F(logits_kl_consts) c = {0};
    c.ma = ma;
    c.mb = mb;
    c.inv_ta = PRM(inv_t)[0];
    c.inv_tb = PRM(inv_t)[1];
    /* the smallest arguments of exp, rounded as the vector code rounds them */
    T lowest_a = (mn_a - ma) * c.inv_ta, lowest_b = (mn_b - mb) * c.inv_tb;
    /* -inf, +inf or NaN logits decline; finite ones far below the maximum take
     * the wide exp (subnormal or 0 probabilities), as long as u - v is finite */
    if (flagged || !(lowest_a >= -HUGE_VALUE) || !(lowest_b >= -HUGE_VALUE)) return 0.0;
    c.wide = !(lowest_a >= EXP_PLAIN_MIN) || !(lowest_b >= EXP_PLAIN_MIN);

    /* c' = the average of d over the lanes' maxima of x, weighted by their p
     * (nearly always within a small part of the spread of d from c) */
    double w_sum = 0.0, wd_sum = 0.0, dd_lo = INFINITY, dd_hi = -INFINITY;
    for (int s = 0; s < NSUB; s++) {
        V wgt = EXP(VMAX((mxa[s] - ma) * c.inv_ta, BCAST(EXP_PLAIN_MIN)), 0);
        V dd = (ya[s] - mxa[s]) * c.inv_ta;
        for (int l = 0; l < LANES; l++) {
            w_sum += wgt[l];
            wd_sum += (double)wgt[l] * dd[l];
            if (wgt[l] >= (T)1e-4) { /* the spread of d where p is not negligible */
                dd_lo = dd[l] < dd_lo ? dd[l] : dd_lo;
                dd_hi = dd[l] > dd_hi ? dd[l] : dd_hi;
            }
        }
    }
    c.center = (T)(wd_sum / w_sum);
    c.stable = 0;
    /* Jeffreys of rows far apart (d at those maxima spanning SYM_SPREAD or
     * more): the three-pass kernel, whose differences of log-softmaxes cost
     * nothing measurable there (for JS they did: 1.5e-6 relative on float32
     * rows b = a + 0.5 z at T = 0.3, so JS takes the centred sums for all) */
    if (sym == 1 && !(dd_hi - dd_lo < SYM_SPREAD)) return 0.0;
    if (sym)
        return F(logits_sym_rest)(x, y, k, x_tail, y_tail, valid, &c, lowest_a, lowest_b,
                                  PRM(log_eps), sym == 2, declined);
    double a, log_a, log_b, total;
    /* the fused pass for rows that look nearly equal there (d mostly within
     * G_SMALL of c': one exp per element; float64 rows, whose KL must be far
     * above 0.5 to do without it, for less near ones too), unless e^(u + dl)
     * could leave the range; other rows the direct sums, whose KL is seldom
     * small */
    if (dd_hi - dd_lo < FUSE_SPREAD &&
        ((double)mb - (double)ma) * c.inv_ta - (double)c.center <= FUSE_MAX) {
        double sums[3];
        int good;
        F(logits_kl_centred_sums)(x, y, k, x_tail, y_tail, valid, &c, 0, sums);
        a = sums[0];
        log_a = log(a);
        /* sum f = sum e e^dl = A3 + Mc + Gc */
        log_b = log(sums[0] + sums[1] + sums[2]) + (double)c.center +
                ((double)ma - (double)mb) * c.inv_ta;
        total = F(logits_kl_from_centred)(sums, &c, &good);
        c.stable = 1;
        if (!good) {
            double m = sums[1] / a;
            total = log1p(m + sums[2] / a) - m; /* log sum_j p_j e^dl_j - m, direct */
            c.stable = 0;
            if (total < FUSE_DIRECT) { /* small: the stable pass, from the centre found */
                c.center = (T)((double)c.center + m);
                total = F(logits_kl_stable)(x, y, k, x_tail, y_tail, valid, &c);
                c.stable = 1;
            }
        }
    } else {
        /* pass 2 */
        vd sa[NACC], sb[NACC], w[NACC];
#define SUMS(sc, wi) F(logits_kl_sums)(x, y, k, x_tail, y_tail, valid, &c, sc, wi, sa, sb, w)
        switch ((c.inv_ta == 1 && c.inv_tb == 1 ? 0 : 2) + c.wide) {
        case 0: SUMS(0, 0); break;
        case 1: SUMS(0, 1); break;
        case 2: SUMS(1, 0); break;
        default: SUMS(1, 1); break;
        }
#undef SUMS
        a = lane_sum_block(sa);
        double b = lane_sum_block(sb);
        log_a = log(a);
        log_b = log(b);
        total = lane_sum_block(w) / a - log_a + log_b;

        /* the stable pass, when the rounding of that sum may be large against
         * it: measured (against mpmath, k from 10 to 32,000), that error stays
         * within about 1e-15 (float64) and 1e-8 (float32) of KL0 < 1 */
        if (total < STABLE_BELOW) {
            /* c' = sum p_j d_j = K - W / A, as u_j - v_j = K - d_j */
            double k0 = ((double)mb - (double)ma) * c.inv_ta;
            c.center = (T)(k0 - lane_sum_block(w) / a);
            total = F(logits_kl_stable)(x, y, k, x_tail, y_tail, valid, &c);
            c.stable = 1;
        }
    }

    /* pass 3, when the smallest log p or log q may be below log eps */
    c.log_a = (T)log_a;
    c.log_b = (T)log_b;
    c.log_eps = PRM(log_eps);
    c.x_low = F(logits_kl_low)(ma, c.inv_ta, c.log_a, c.log_eps);
    c.y_low = F(logits_kl_low)(mb, c.inv_tb, c.log_b, c.log_eps);
    if (!((T)(lowest_a - c.log_a) >= c.log_eps) || !((T)(lowest_b - c.log_b) >= c.log_eps)) {
        vd corr[NACC];
        for (int i = 0; i < NACC; i++) corr[i] = (vd){0};
        for (int sb = 0; sb < n_sb; sb++) {
            if (!(sb_min_x[sb] < c.x_low) && !(sb_min_y[sb] < c.y_low)) continue;
            ptrdiff_t b1 = (sb + 1) * sb_blocks < n_blocks ? (sb + 1) * sb_blocks : n_blocks;
            for (ptrdiff_t b = sb * sb_blocks; b < b1; b++) {
                ptrdiff_t j = b * BLOCK;
                if (j < k_full)
                    F(logits_kl_block_floor)(x + j, y + j, &c, NULL, corr);
                else
                    F(logits_kl_block_floor)(x_tail, y_tail, &c, valid, corr);
            }
        }
        double fix = lane_sum_block(corr) / a;
        if (!c.stable && fabs(fix) > REDO_CANCEL * fabs(total + fix)) {
            for (int i = 0; i < NACC; i++) corr[i] = (vd){0};
            for (ptrdiff_t j = 0; j < k; j += BLOCK) {
                if (j < k_full)
                    F(logits_kl_block_floored)(x + j, y + j, &c, NULL, corr);
                else
                    F(logits_kl_block_floored)(x_tail, y_tail, &c, valid, corr);
            }
            total = lane_sum_block(corr) / a;
        } else {
            total += fix;
        }
    }
    *declined = 0;
    return total;
}

/* The measure logits_kl scores a call's rows as: 0 KL, 1 Jeffreys, 2 JS; -1
 * none. The rows it scores: two rows of logits at one temperature, not a
 * loss, no gradient (logits_lanes.h takes the same calls up to
 * KLFAST_LOGITS_SHORT_MAX). */
KLF_INLINE int F(logits_kl_measure)(const klfast_forms_params *prm, const void *g) {
    if (!(prm->form[0] == KLFAST_LOGITS && prm->form[1] == KLFAST_LOGITS &&
          prm->inv_t[0] == prm->inv_t[1] && !prm->loss && g == NULL))
        return -1;
    switch (prm->measure) {
    case KLFAST_KL: return 0;
    case KLFAST_JEFFREYS: return 1;
    case KLFAST_JS: return 2;
    default: return -1;
    }
}

#if KLF_ELEMENT_BITS == 16
/* The forms kernel's row function for float16 rows (their bits): the rows
 * it scores (longer than KLFAST_LOGITS_SHORT_MAX); *special = 1 for every
 * other row, which the caller widens to float32 for the float32 kernel
 * (the same bits: every float16 is a float32, and that kernel tries
 * logits_kl first too). */
static double ROW_FN(forms)(const uint16_t *p, const uint16_t *q, float *g, ptrdiff_t k,
                            const klfast_forms_params *prm, int *special) {
    double v = 0.0;
    *special = 1;
    /* (short rows: widened, for logits_lanes.h's tiles of one row) */
    const int sym = F(logits_kl_measure)(prm, g);
    if (k > KLFAST_LOGITS_SHORT_MAX && sym >= 0) v = F(logits_kl)(p, q, k, prm, sym, special);
    return v;
}
#endif

#undef BLOCK
#undef NSUB
#undef NACC
#undef NSB
#undef lane_sum_block
#undef G_SMALL
#undef G_TERMS
#undef STABLE_BELOW
#undef FUSE_MAX
#undef FUSE_SPREAD
#undef FUSE_DIRECT
#undef REDO_CANCEL
#undef SYM_KEEP_STACK
#undef SYM_SPREAD
