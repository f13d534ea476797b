/* KL(P || Q) of two rows of logits in float arithmetic, in two passes over
 * the rows (three when the eps rule binds): the float32 forms kernel
 * (engine/loss_rows.h) tries it first, and the float16 one (S = uint16_t)
 * reads float16 rows with it directly. Included by engine/level.h after
 * engine/element.h for the float element types. No include guard.
 *
 * With u_j = (x_j - max x) / T_p, v_j = (y_j - max y) / T_q, e_j = exp(u_j),
 * f_j = exp(v_j), A = sum e_j, B = sum f_j:
 *   log p_j = u_j - log A,   log q_j = v_j - log B,   p_j = e_j / A,
 *   KL = sum p_j (log p~_j - log q~_j)
 *      = (sum e_j (u_j - v_j)) / A - log A + log B
 *        + (sum e_j (c_j(p) - c_j(q))) / A,   c_j = max(log eps - log a_j, 0)
 * (the eps rule log a~ = max(log a, log eps) as a correction c_j >= 0 that
 * is 0 unless log a_j < log eps). So two exps per element (the log-sum-exps
 * need them anyway) and no log: pass 1 reads both rows for their maxima and
 * minima (and the minima of each of at most NSB superblocks of the row),
 * pass 2 takes A, B and the weighted sum of u - v while the rows are in
 * cache, and pass 3, only when a row's smallest log-probability is below
 * log eps, adds the corrections of the vectors that hold such an element
 * (with the exps of pass 2, recomputed bit for bit), reading only the
 * superblocks whose minima may be below it.
 *
 * The sum uses the e_j that make A, so sum p_j = 1 holds exactly in it: the
 * rounding of each e_j moves the result by about its own size times
 * |log p_j| + |log q_j|, the error the three-pass kernel has too.
 *
 * It declines (sets *declined; the three-pass kernel then scores the row,
 * and finds what is wrong with it) a row with a NaN or infinite logit, or
 * whose scaled logits spread past EXP_PLAIN_MIN, where an exp would leave
 * the plain range: every exp it takes is then of an argument in
 * [EXP_PLAIN_MIN, 0], a normal number, and no p_j is 0.
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
} F(logits_kl_consts);

/* The lanes of a tail block holding its first n elements. */
KLF_INLINE void F(logits_kl_tail_masks)(M *valid, int n) {
    M iota;
    for (int l = 0; l < LANES; l++) iota[l] = l;
    for (int s = 0; s < NSUB; s++) valid[s] = (M)(iota + s * LANES < n);
}

/* Pass 1: the maxima and minima of both rows, NaN flagged. */
KLF_INLINE void F(logits_kl_block_range)(const S *xb, const S *yb, V *mxa, V *mna, V *mxb,
                                         V *mnb, M *bad) {
    for (int s = 0; s < NSUB; s++) {
        V x, y;
        LOADV(&x, xb + s * LANES);
        LOADV(&y, yb + s * LANES);
        mxa[s] = VMAX(mxa[s], x);
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
                                        int SCALED, const M *valid, vd *sa, vd *sb, V *w_sum) {
    for (int s = 0; s < NSUB; s++) {
        V x, y;
        LOADV(&x, xb + s * LANES);
        LOADV(&y, yb + s * LANES);
        V u = x - c->ma, v = y - c->mb;
        if (SCALED) { /* else 1 / T is 1 for both: the same bits */
            u *= c->inv_ta;
            v *= c->inv_tb;
        }
        V e = EXP(u, 0), f = EXP(v, 0);
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
                                  const F(logits_kl_consts) *c, int SCALED, vd *sa, vd *sb,
                                  vd *w) {
    const ptrdiff_t k_full = k - k % BLOCK;
    for (int i = 0; i < NACC; i++) sa[i] = sb[i] = w[i] = (vd){0};
    for (ptrdiff_t j = 0; j < k;) {
        V w_sum[NSUB];
        for (int s = 0; s < NSUB; s++) w_sum[s] = BCAST(0);
        ptrdiff_t end = j + GROUP * BLOCK < k_full ? j + GROUP * BLOCK : k_full;
        for (; j < end; j += BLOCK)
            F(logits_kl_block_sums)(x + j, y + j, c, SCALED, NULL, sa, sb, w_sum);
        if (j == k_full && k_full < k) { /* the tail, in the last group */
            F(logits_kl_block_sums)(x_tail, y_tail, c, SCALED, valid, sa, sb, w_sum);
            j = k;
        }
        for (int s = 0; s < NSUB; s++) ADD(w, s, w_sum[s]);
    }
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
        if (!any_lane(maybe)) continue;
        V u = (x - c->ma) * c->inv_ta, v = (y - c->mb) * c->inv_tb;
        V la = u - c->log_a, lb = v - c->log_b;
        M low = (M)(la < log_eps) | (M)(lb < log_eps);
        if (valid) low &= valid[s];
        V d = VMAX(log_eps - la, BCAST(0)) - VMAX(log_eps - lb, BCAST(0));
        ADD(corr, s, VSEL(low, EXP(u, 0) * d, BCAST(0)));
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

KLF_INLINE double F(logits_kl)(const S *x, const S *y, ptrdiff_t k,
                               const klfast_forms_params *prm, int *declined) {
    S xt[BLOCK], yt[BLOCK];
    M valid[NSUB] = {{0}}; /* the tail's lanes */
    const int n_tail = (int)(k % BLOCK);
    const ptrdiff_t k_full = k - n_tail;
    const S *x_tail = NULL, *y_tail = NULL;
    *declined = 1;
    if (k <= 0) return 0.0;
    if (n_tail) {
        x_tail = F(padded_tail)(xt, BLOCK, x + k_full, n_tail, x[0]);
        y_tail = F(padded_tail)(yt, BLOCK, y + k_full, n_tail, y[0]);
        F(logits_kl_tail_masks)(valid, n_tail);
    }

    /* pass 1, by superblocks of sb_blocks blocks, noting each one's minima */
    const ptrdiff_t n_blocks = (k + BLOCK - 1) / BLOCK;
    const ptrdiff_t sb_blocks = (n_blocks + NSB - 1) / NSB;
    const int n_sb = (int)((n_blocks + sb_blocks - 1) / sb_blocks);
    T sb_min_x[NSB], sb_min_y[NSB];
    V mxa[NSUB], mxb[NSUB];
    M bad[NSUB];
    for (int s = 0; s < NSUB; s++) {
        mxa[s] = BCAST(TO_T(x[0]));
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
                F(logits_kl_block_range)(x + j, y + j, mxa, mna, mxb, mnb, bad);
            else
                F(logits_kl_block_range)(x_tail, y_tail, mxa, mna, mxb, mnb, bad);
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
    F(logits_kl_consts) c;
    c.ma = ma;
    c.mb = mb;
    c.inv_ta = PRM(inv_t)[0];
    c.inv_tb = PRM(inv_t)[1];
    /* the smallest arguments of exp, rounded as the vector code rounds them */
    T lowest_a = (mn_a - ma) * c.inv_ta, lowest_b = (mn_b - mb) * c.inv_tb;
    if (flagged || !(lowest_a >= EXP_PLAIN_MIN) || !(lowest_b >= EXP_PLAIN_MIN)) return 0.0;

    /* pass 2 */
    vd sa[NACC], sb[NACC], w[NACC];
    if (c.inv_ta == 1 && c.inv_tb == 1)
        F(logits_kl_sums)(x, y, k, x_tail, y_tail, valid, &c, 0, sa, sb, w);
    else
        F(logits_kl_sums)(x, y, k, x_tail, y_tail, valid, &c, 1, sa, sb, w);
    double a = lane_sum_block(sa), b = lane_sum_block(sb);
    double log_a = log(a), log_b = log(b);
    double total = lane_sum_block(w) / a - log_a + log_b;

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
        total += lane_sum_block(corr) / a;
    }
    *declined = 0;
    return total;
}

/* The calls it scores: KL of two rows of logits, not a loss, no gradient. */
KLF_INLINE int F(logits_kl_applies)(const klfast_forms_params *prm, const void *g) {
    return prm->measure == KLFAST_KL && prm->form[0] == KLFAST_LOGITS &&
           prm->form[1] == KLFAST_LOGITS && !prm->loss && g == NULL;
}

#if KLF_ELEMENT_BITS == 16
/* The forms kernel's row function for float16 rows (their bits): the rows
 * it scores; *special = 1 for every other row, which the caller widens to
 * float32 for the float32 kernel (the same bits: every float16 is a
 * float32, and that kernel tries logits_kl first too). */
static double ROW_FN(forms)(const uint16_t *p, const uint16_t *q, float *g, ptrdiff_t k,
                            const klfast_forms_params *prm, int *special) {
    double v = 0.0;
    *special = 1;
    if (F(logits_kl_applies)(prm, g)) v = F(logits_kl)(p, q, k, prm, special);
    return v;
}
#endif

#undef BLOCK
#undef NSUB
#undef NACC
#undef NSB
#undef lane_sum_block
