/* Distributions across lanes: LANES distributions at once, one per lane of
 * a vector, for the element type of engine/element.h. Included by
 * engine/level.h after divergence_rows.h, whose terms and constants it
 * uses. No include guard.
 *
 * The row loop (divergence_rows.h) reads one row along its vectors: a row
 * shorter than a few vectors leaves lanes idle and pays for a lane sum per
 * row, and a distribution stored in a column (axis=0 on C order, Fortran
 * order) is not contiguous at all. Here lane r holds distribution r and a
 * vector holds element j of LANES distributions: every lane works, for any
 * length, and columns are read in memory order.
 *
 * Same bits as the row loop. A distribution's sums are taken in exactly
 * the row loop's order: its element j goes to position l = j mod BLOCK (the
 * row loop's lane), position by position in the order of j (float32: in
 * groups of GROUP blocks summed in float before widening, row sums widened
 * every SUM_GROUPS groups), and the positions are folded as lane_sum folds
 * lanes. Each term is the same vector code on other lanes. So a row's
 * result does not depend on which loop scored it, its neighbours, the
 * thread or the layout (tests/test_lanes.py holds them to bitwise equality).
 *
 * Each distribution is read through (ls, es): element j of distribution r
 * is at x[r * ls + j * es]. A call of lanes takes up to STRIP tiles (64
 * distributions at every level), one of strips up to KLFAST_STRIPS_MAX
 * strips of STRIP tiles. Short distributions (k <= SHORT_MAX), not
 * normalized, back to back (C rows) or consecutive (columns, Fortran rows),
 * are scored a whole tile at a time in registers (short_tile, below). Other
 * distributions consecutive in memory (ls == 1: columns, Fortran rows) are
 * swept element by element when the strip is whole,
 * each element of the STRIP tiles in turn: memory is read in segments of
 * 64 distributions (512 bytes of float64), one segment after the other
 * along each row of a C-ordered array, with the tiles' sums kept in memory
 * between elements (each sum still adds its elements in the order of j);
 * strips (below) sweeps up to KLFAST_STRIPS_MAX whole strips together, a
 * few rows of each in turn, its tiles' sums in memory the caller gives.
 * Otherwise each tile is read on its own: chunks of JC elements are first
 * put into a buffer on the stack, one vector per element: rows transposed
 * in registers, a broadcast row repeated, anything else (and partial tiles)
 * copied element by element. */

#define BLOCK ((int)(64 / sizeof(T)))   /* positions: the row loop's lanes */
#define NH ((int)(8 / sizeof(T)))         /* double vectors per T vector */
#define JC 64                           /* elements per chunk: one float32 group */
#define SUM_GROUPS (GROUP == 1 ? 64 : 16)
#define PREFETCH (8 * LANES)              /* 8 tiles ahead */
#define STRIP (64 / LANES)                /* tiles per call: 64 distributions */
#define AHEAD 16                          /* a sweep prefetches this many elements ahead */
/* Rows of a strip a sweep reads at a time, and the strips ahead of the
 * one read that it prefetches: 6 rows; float64 1 strip (512 bytes on in
 * the row), float32 2 strips (also 512 bytes). float32 with 4 rows and 1
 * strip, as float64 had, read (1,000, 50,000) columns at 2.1x the floor on
 * 1 thread, about the sum of the floor and the time the same sweep takes
 * in cache (0.8x the floor): the prefetch a strip (256 bytes) ahead came
 * too late to overlap them. Measured with the
 * sweep alone (C, 1 thread, float32 kl | entropy, ratio to the read floor,
 * k x 50,000,000 / k): 4 rows 1 strip (before) k = 100 2.46 | 1.27, 1,000
 * 2.09 | 1.01, 3,000 2.14 | 1.12; 6 rows 2 strips 2.24 | 1.07, 1.72 |
 * 0.86, 2.01 | 1.12; 8 rows 1 strip 2.37 | 1.13, 1.81 | 0.90, 1.99 | 1.27;
 * 2 rows 2 strips 1.83 | 1.30 at k = 100, 2.07 at k = 1,000; a second
 * prefetch, of a later visit's row into L2, gained nothing (1.0-1.3 of
 * 6 rows 2 strips, kl at k = 1,000). float64, B/A of
 * 6 rows against 4 (ab_builds --layout columns, kl | entropy, 1 / 2
 * threads): k = 100 1.00 / 0.99 | 0.91 / 0.93, 400 1.00 / 0.99 | 0.93 /
 * 0.91, 1,000 0.99 / 1.00 | 0.90 / 0.92, 3,000 1.01 / 0.95 | 0.87 / 0.96;
 * 2 strips ahead gained nothing (1 thread, sweep alone). Before: of 4, 8
 * and 16 rows, 4 was fastest (float64, 500,000 columns of 100). */
#define VISIT 6
#define SWEEP_AHEAD (KLF_ELEMENT_BITS == 32 ? 2 : 1)
/* float32: with each element, the sums the next strip adds the same row to
 * (a row sum or two and the group's sum: three lines) are prefetched, for
 * they wait in L2. The strips kernel alone (AVX-512, huge pages; kl, ratio
 * to a read of the same bytes, runs in turns), before / after: 1 thread
 * (1,000, 50,000) 1.69-1.86 / 1.50-1.55, (100, 500,000) 2.35-2.38 /
 * 1.83-1.91, (400, 125,000) 1.83-1.98 / 1.64-1.74, (3,000, 16,666)
 * 2.02-2.17 / 1.91-1.95, (10,000, 5,000) 1.76-1.79 / 1.71-1.75; 2 threads
 * (1,000, 50,000) 1.55-1.58 / 1.46-1.49; entropy the same or faster
 * (3,000, 16,666: 1.28-1.32 / 1.07-1.11). Float64 lost 2-5 % (kl 1.24-1.32
 * / 1.27-1.38 at k = 100 to 3,000), so it does not (nor gained with the
 * row sums' lines alone or the measure's alone). With it, float32 (1,000,
 * 50,000) kl, 1 thread: 6 rows and 2 strips ahead 1.41-1.54, 4 rows
 * 1.71-1.81, 8 rows 1.55-1.72, 1 strip ahead 1.47-1.49, 3 strips
 * 1.65-1.77; 64 strips a sweep 1.64-1.68 (2 threads 1.55-1.59 against
 * 1.40-1.45). Before it, prefetching the rows into L2 only (prefetcht1)
 * took 2.08-2.11 and past the caches (prefetchnta) 3.10-3.14, against
 * 1.69-1.86. */
#define SWEEP_SUMS_AHEAD (KLF_ELEMENT_BITS == 32)
/* Strips a sweep reads together: all of a call's (up to KLFAST_STRIPS_MAX,
 * 32), but 16 for float32 distributions shorter than SWEEP_F32_K. B/A of 32
 * against 16 (benchmarks/ab_builds.py --layout columns, 50,000,000 elements,
 * kl, 1 / 2 threads): float64 k = 1,000 0.72 / 0.73 (entropy 0.79 / 0.82),
 * k = 100 1.01 / 1.00; float32 k = 1,000 0.95 / 0.79 (entropy 1.00 /
 * 0.99), k = 500 0.94 / 0.87, k = 250 0.99 / 1.02, k = 100 1.23 / 1.27 (a
 * float32 tile's state is 3.6 times a float64 one's: for short columns,
 * starting and finishing 128 tiles costs more than the longer runs gain).
 * 64 strips: engine/klfast.h, KLFAST_STRIPS_MAX. */
#define SWEEP_F32_K 400
#define GB (GROUP == 1 ? 1 : BLOCK)       /* float32 group sums per tile */
#define SHORT_MAX (2 * BLOCK < 16 ? 2 * BLOCK : 16) /* short rows: up to this long */

/* The sums of the first np positions (pos[l * NH + h]; the others hold
 * nothing), folded as lane_sum folds a row's lanes: into out[0..NH). A
 * position that holds nothing adds exactly 0 in lane_sum (no sum is -0:
 * they start at +0), so it is left out. pos is overwritten. */
KLF_INLINE void F(fold)(vd *pos, int np, vd *out) {
    if (np == BLOCK) { /* every position: the same adds, unrolled in registers */
        vd c[BLOCK * NH];
        memcpy(c, pos, sizeof(c));
#pragma GCC unroll 8
        for (int half = BLOCK / 2; half >= 1; half /= 2)
#pragma GCC unroll 16
            for (int l = 0; l < half; l++)
                for (int h = 0; h < NH; h++) c[l * NH + h] += c[(l + half) * NH + h];
        memcpy(out, c, NH * sizeof(vd));
        return;
    }
    /* (np constant, as in short_tile: unrolled into registers) */
#pragma GCC unroll 8
    for (int half = BLOCK / 2; half >= 1; half /= 2) {
#pragma GCC unroll 16
        for (int l = 0; l < half; l++)
            if (l + half < np)
                for (int h = 0; h < NH; h++) pos[l * NH + h] += pos[(l + half) * NH + h];
        if (np > half) np = half;
    }
    for (int h = 0; h < NH; h++) out[h] = np > 0 ? pos[h] : (vd){0}; /* k = 0: an empty sum */
}

/* v times a per-lane double scale (the row loop's SCALE) */
KLF_INLINE V F(scale_lanes)(V v, const vd *s) {
#if KLF_ELEMENT_BITS == 64
    return v * s[0];
#else
    vd lo = widen(half_lo(v)) * s[0], hi = widen(half_hi(v)) * s[1];
    return join_halves(__builtin_convertvector(lo, vfh), __builtin_convertvector(hi, vfh));
#endif
}

/* The two halves of a and b interleaved element by element:
 * zip_lo = a0 b0 a1 b1 ..., zip_hi the same from the middle. LANES rounds
 * of LANES / 2 zips transpose a LANES x LANES block. */
#if KLF_VBYTES * 8 / KLF_ELEMENT_BITS == 16
#define ZIP_LO 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define ZIP_HI 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#elif KLF_VBYTES * 8 / KLF_ELEMENT_BITS == 8
#define ZIP_LO 0, 8, 1, 9, 2, 10, 3, 11
#define ZIP_HI 4, 12, 5, 13, 6, 14, 7, 15
#elif KLF_VBYTES * 8 / KLF_ELEMENT_BITS == 4
#define ZIP_LO 0, 4, 1, 5
#define ZIP_HI 2, 6, 3, 7
#else
#define ZIP_LO 0, 2
#define ZIP_HI 1, 3
#endif

/* buf[jj * LANES + r] = x[r * ls + jj] for jj < jn and r < n (zeros for
 * r >= n): rows of a tile turned into vectors of their elements, LANES x
 * LANES blocks at a time (log2(LANES) rounds of zips each). */
KLF_INLINE void F(transpose_rows)(const T *x, ptrdiff_t ls, int n, int jn, T *buf) {
    for (int jb = 0; jb < jn; jb += LANES) {
        int w = jn - jb < LANES ? jn - jb : LANES;
        V a[LANES], z[LANES];
#pragma GCC unroll 16
        for (int r = 0; r < LANES; r++) {
            if (r >= n)
                a[r] = (V){0};
            else if (w == LANES || (ls > 0 && r * ls + jb + LANES <= (n - 1) * ls + jn))
                memcpy(&a[r], x + r * ls + jb, sizeof(V)); /* (lanes past w: not used) */
            else
                a[r] = LOAD_PART(x + r * ls + jb, w);
        }
#pragma GCC unroll 4
        for (int round = 1; round < LANES; round *= 2) {
#pragma GCC unroll 8
            for (int i = 0; i < LANES / 2; i++) {
                z[2 * i] = __builtin_shufflevector(a[i], a[i + LANES / 2], ZIP_LO);
                z[2 * i + 1] = __builtin_shufflevector(a[i], a[i + LANES / 2], ZIP_HI);
            }
#pragma GCC unroll 16
            for (int i = 0; i < LANES; i++) a[i] = z[i];
        }
#pragma GCC unroll 16
        for (int c = 0; c < w; c++) memcpy(buf + (jb + c) * LANES, &a[c], sizeof(V));
    }
}

/* Elements j0 .. j0 + jn of the tile's n distributions as vectors: a
 * pointer to element j0's vector, *step elements between vectors. Read in
 * place when the lanes are consecutive; else copied into buf (zeros in the
 * lanes past n). */
/* (not inlined: called once per chunk, and shared by every variant) */
static __attribute__((noinline)) const T *F(lane_source)(const T *x, ptrdiff_t ls,
                                                         ptrdiff_t es, int n, ptrdiff_t j0,
                                                         int jn, T *buf, ptrdiff_t *step) {
    if (ls == 1 && n == LANES) {
        *step = es;
        return x + j0 * es;
    }
    *step = LANES;
    if (ls == 0 && n == LANES) { /* one row for every lane */
        for (int jj = 0; jj < jn; jj++) {
            V v = BCAST(x[(j0 + jj) * es]);
            memcpy(buf + jj * LANES, &v, sizeof(V));
        }
    } else if (es == 1) {
        F(transpose_rows)(x + j0, ls, n, jn, buf);
    } else {
        for (int r = 0; r < LANES; r++)
            for (int jj = 0; jj < jn; jj++)
                buf[jj * LANES + r] = r < n ? x[r * ls + (j0 + jj) * es] : (T)0;
    }
    return buf;
}

/* row_check for a distribution whose elements are es apart. */
KLF_INLINE int F(row_check_strided)(const T *x, ptrdiff_t es, ptrdiff_t k) {
    int bad = 0;
    for (ptrdiff_t j = 0; j < k; j++) bad |= !(x[j * es] >= (T)0 && x[j * es] < HUGE_VALUE);
    return bad;
}

/* Position-major state of a tile (what the row loop keeps per row). */
typedef struct {
    vd acc[BLOCK * NH];             /* the measure's sums */
    vd xacc[BLOCK * NH], yacc[BLOCK * NH]; /* float32 row sums, widened */
    V xs[BLOCK], ys[BLOCK];         /* row sums in T (float32: this window) */
    vd sp[NH], sq[NH];              /* 1 / row sums when normalizing */
    V e;
    M flag;
    U bits;
    F(bad_t) bad;
    int widened;                    /* xacc, yacc hold sums */
} F(lanes_state);

/* The per-tile state one vector updates, kept in registers through a chunk. */
typedef struct {
    V e;
    M flag;
    U bits;
    F(bad_t) bad;
} F(lanes_regs);

/* One vector of the tile (element jj of LANES distributions) into its
 * position's row sums (*xs, *ys) and measure sum (*sum). */
KLF_INLINE void F(lanes_element)(int measure, const T *px, const T *qx, int normalize,
                                 int checked, const F(lanes_state) *st, F(lanes_regs) *rg,
                                 V *xs, V *ys, V *sum) {
    const int uses_q = measure != KLFAST_ENTROPY;
    V x, y = {0};
    memcpy(&x, px, sizeof(V));
    if (uses_q) memcpy(&y, qx, sizeof(V));
    if (normalize) {
        F(note_invalid)(&rg->bad, x);
        if (uses_q) F(note_invalid)(&rg->bad, y);
        x = F(scale_lanes)(x, st->sp);
        if (uses_q) y = F(scale_lanes)(y, st->sq);
    } else {
        rg->bits |= uses_q ? (U)x | (U)y : (U)x;
        *xs += x;
        if (uses_q) *ys += y;
    }
    F(term)(measure, x, y, rg->e, checked, &rg->flag, sum);
}

/* The elements j = l, l + BLOCK, ... < jn of a chunk into position l's
 * sums (float32: the measure's into g[l], the group's sum). */
KLF_INLINE void F(lanes_position)(int measure, const T *px, ptrdiff_t ps, const T *qx,
                                  ptrdiff_t qs, int l, int jn, int normalize, int checked,
                                  F(lanes_state) *st, F(lanes_regs) *rg, V *g) {
    V xs = st->xs[l], ys = st->ys[l], a = GROUP == 1 ? (V)st->acc[l * NH] : (V){0};
    for (int jj = l; jj < jn; jj += BLOCK) {
        /* the next tiles' elements, when read in place (in a copy: no effect) */
        __builtin_prefetch(px + jj * ps + PREFETCH);
        if (measure != KLFAST_ENTROPY) __builtin_prefetch(qx + jj * qs + PREFETCH);
        F(lanes_element)(measure, px + jj * ps, qx + jj * qs, normalize, checked, st, rg, &xs,
                         &ys, &a);
    }
    st->xs[l] = xs;
    st->ys[l] = ys;
    if (GROUP == 1) memcpy(&st->acc[l * NH], &a, sizeof(V));
    else g[GROUP == 1 ? 0 : l] = a;
}

/* One chunk of jn <= JC elements (from a multiple of JC) into the state:
 * element j goes to position j mod BLOCK, and each position adds its
 * elements in the order of j, as the row loop (float32: into g, the group's
 * float sums, widened into acc at the end of the chunk, which is one
 * group). The first chunk starts the sums. */
KLF_INLINE void F(lanes_chunk)(int measure, const T *px, ptrdiff_t ps, const T *qx,
                               ptrdiff_t qs, int jn, int first, int normalize, int checked,
                               F(lanes_state) *st) {
    int np = jn < BLOCK ? jn : BLOCK;
    V g[GROUP == 1 ? 1 : BLOCK];
    F(lanes_regs) rg = {st->e, st->flag, st->bits, st->bad};
#pragma GCC unroll 16
    for (int l = 0; l < np; l++) {
        if (first) {
            st->xs[l] = st->ys[l] = (V){0};
            for (int h = 0; h < NH; h++) st->acc[l * NH + h] = (vd){0};
        }
        if (GROUP != 1) g[l] = (V){0};
    }
    /* position by position, its sums in registers (each adds its elements
     * in the order of j); a whole chunk with constant bounds */
    if (jn == JC)
        for (int l = 0; l < BLOCK; l++)
            F(lanes_position)(measure, px, ps, qx, qs, l, JC, normalize, checked, st, &rg, g);
    else
        for (int l = 0; l < np; l++)
            F(lanes_position)(measure, px, ps, qx, qs, l, jn, normalize, checked, st, &rg, g);
    if (GROUP != 1)
#pragma GCC unroll 16
        for (int l = 0; l < np; l++) ADD(st->acc, l, g[GROUP == 1 ? 0 : l]);
    st->flag = rg.flag;
    st->bits = rg.bits;
    st->bad = rg.bad;
}

/* The row sums of the first np positions widened into xacc, yacc (the
 * row loop's widen_sums); with xt, the final ones folded into xt, yt.
 * float64 sums need no widening: they are folded from xs, ys. */
KLF_INLINE void F(lanes_widen)(F(lanes_state) *st, int np, int uses_q, vd *xt, vd *yt) {
    vd *xw = st->xacc, *yw = st->yacc;
    if (GROUP == 1) {
        xw = (vd *)st->xs;
        yw = (vd *)st->ys;
    } else {
#pragma GCC unroll 16
        for (int l = 0; l < np; l++) {
            if (!st->widened)
                for (int h = 0; h < NH; h++) st->xacc[l * NH + h] = st->yacc[l * NH + h] = (vd){0};
            ADD(st->xacc, l, st->xs[l]);
            st->xs[l] = (V){0};
            if (uses_q) {
                ADD(st->yacc, l, st->ys[l]);
                st->ys[l] = (V){0};
            }
        }
        st->widened = 1;
    }
    if (xt) {
        F(fold)(xw, np, xt);
        if (uses_q) F(fold)(yw, np, yt);
        else memcpy(yt, xt, NH * sizeof(vd));
    }
}

/* 1 / sum for each lane of x (0 where the row must take the exact path), as
 * row_scale: every element widened, then added at its position. */
KLF_INLINE void F(lanes_scale)(const T *x, ptrdiff_t ls, ptrdiff_t es, int n, ptrdiff_t k,
                               T *buf, vd *inv) {
    vd acc[BLOCK * NH], s[NH];
    for (int a = 0; a < BLOCK * NH && a < k * NH; a++) acc[a] = (vd){0};
    for (ptrdiff_t j0 = 0; j0 < k; j0 += JC) {
        int jn = k - j0 < JC ? (int)(k - j0) : JC;
        ptrdiff_t step;
        const T *src = F(lane_source)(x, ls, es, n, j0, jn, buf, &step);
        for (int l = 0; l < BLOCK && l < jn; l++)
            for (int jj = l; jj < jn; jj += BLOCK) {
                V v;
                memcpy(&v, src + jj * step, sizeof(V));
                ADD(acc, l, v);
            }
    }
    F(fold)(acc, k < BLOCK ? (int)k : BLOCK, s);
    for (int h = 0; h < NH; h++) {
        vd r = 1.0 / s[h];
        vl ok = (s[h] > 0.0) & (s[h] <= DBL_MAX) & (r <= DBL_MAX);
        inv[h] = vsel_f64(ok, r, (vd){0});
    }
}

/* One tile for constant measure, normalize and checked. */
KLF_INLINE void F(lanes_loop)(int measure, const T *p, ptrdiff_t p_ls, ptrdiff_t p_es,
                              const T *q, ptrdiff_t q_ls, ptrdiff_t q_es, int n, ptrdiff_t k,
                              int normalize, int checked, T *pbuf, T *qbuf,
                              F(lanes_state) *st) {
    const int uses_q = measure != KLFAST_ENTROPY;
    int pending = 0;
    for (ptrdiff_t j0 = 0; j0 < k; j0 += JC) {
        int jn = k - j0 < JC ? (int)(k - j0) : JC;
        ptrdiff_t ps, qs = 0;
        const T *px = F(lane_source)(p, p_ls, p_es, n, j0, jn, pbuf, &ps);
        const T *qx = uses_q ? F(lane_source)(q, q_ls, q_es, n, j0, jn, qbuf, &qs) : px;
        F(lanes_chunk)(measure, px, ps, qx, qs, jn, j0 == 0, normalize, checked, st);
        /* float32 row sums are widened every SUM_GROUPS whole groups */
        if (GROUP != 1 && !normalize && jn == JC && ++pending == SUM_GROUPS) {
            F(lanes_widen)(st, BLOCK, uses_q, NULL, NULL);
            pending = 0;
        }
    }
}

/* The state of a tile before its first element. */
KLF_INLINE void F(lanes_start)(F(lanes_state) *st, double eps) {
    st->e = BCAST((T)eps);
    st->flag = (M){0};
    st->bits = (U){0};
    st->bad = (F(bad_t)){0};
    st->widened = 0;
}

/* The tile's results from its folded sums (total: the measure's; sums_ok:
 * the rows whose sums pass the check (sums_check), NULL when every row
 * passes or when normalizing; sp, sq: the scales, when normalizing),
 * each as the row function and its caller give it (engine/klfast.h,
 * _kernels.pyx): out[r * out_s] = the value times scale, or NaN for a row
 * whose sums are not within tol of 1 (counted in *n_bad). flag: lanes the
 * term sent to the exact path (NULL: the terms flag none); bad: lanes that
 * saw an entry out of range are those >= HUGE_BITS (or_is_invalid).
 * Returns the lanes the exact path must compute (bit r: distribution r;
 * their out is not written). The common tile is decided by tests of
 * comparisons (any_nonfinite_f64, any_invalid, count_nan_f64), not of
 * masks made into vectors, and what cannot be set (flag NULL, sums_ok NULL)
 * is not tested: AVX-512 made each such mask a vector and tested it again,
 * two or three operations more. B/A (ab_builds, kl | entropy, 1 / 2
 * threads): float64 20,000,000 x 2 0.93 / 0.97 | 0.97 / 1.00 (and 0.95 /
 * 0.96 | 0.95 / 0.96), float32 20,000,000 x 2 0.96 / 0.96 | 0.97 / 0.95,
 * 16,000,000 x 4 0.97 / 0.97 | 0.95 / 0.96. */
/* 1 when a tile's results can be stored at once, as far as these say: all
 * LANES of them (n), consecutive (out_s), no lane flagged for the exact
 * path (flag NULL: none can be), no entry out of range (bad, as
 * lanes_results'). lanes_results and pair_sums add their finiteness. */
KLF_INLINE int F(whole_tile)(int n, ptrdiff_t out_s, const M *flag, U bad) {
    return n == LANES && out_s == 1 && !(flag && any_lane((vi)*flag)) && !F(any_invalid)(bad);
}

KLF_INLINE unsigned F(lanes_results)(int measure, const vd *total, const vl *sums_ok,
                                     const vd *sp, const vd *sq, const M *flag, U bad,
                                     const T *p, ptrdiff_t p_ls, ptrdiff_t p_es, const T *q,
                                     ptrdiff_t q_ls, ptrdiff_t q_es, int n, ptrdiff_t k,
                                     double scale, T *out, ptrdiff_t out_s, int stream,
                                     int *n_bad) {
    const int uses_q = measure != KLFAST_ENTROPY, normalize = sp != NULL;
    vd val[NH];
    vl spok = {0};
    int fin = 1;
    for (int h = 0; h < NH; h++) {
        vd s = total[h];
        vl o = ~(vl){0};
        fin &= !any_nonfinite_f64(s);
        if (measure == KLFAST_JS) s = vsel_f64((vl)(s > 0.0), 0.5 * s, (vd){0});
        if (normalize) spok |= ~((sp[h] != 0.0) & (sq[h] != 0.0));
        else if (sums_ok) o = sums_ok[h];
        val[h] = vsel_f64(o, s * scale, (vd){0} + (double)NAN);
    }
    unsigned special = 0;
    int nan_rows = 0;
    /* (the tests of what cannot be set left out: not folded at AVX-512) */
    if (F(whole_tile)(n, out_s, flag, bad) && fin && !(normalize && any_lane((vi)spok))) {
        /* the common tile: every row valid for the fast path, stored at once */
#if KLF_ELEMENT_BITS == 64
        store_line(out, &val[0], stream);
#else
        V v = join_halves(__builtin_convertvector(val[0], vfh),
                          __builtin_convertvector(val[1], vfh));
        store_line(out, &v, stream);
#endif
        /* (the rows failing the sum check: total is finite here, and so is
         * every value of a row that passes) */
        if (sums_ok)
            for (int h = 0; h < NH; h++) nan_rows += count_nan_f64(val[h]);
        *n_bad = nan_rows;
        return 0;
    }
    for (int r = 0; r < n; r++) {
        int h = r / VD_LANES, l = r % VD_LANES;
        int sp_row = (flag && (*flag)[r] != 0) || !(fabs(total[h][l]) <= DBL_MAX)
                     || (normalize && (sp[h][l] == 0.0 || sq[h][l] == 0.0));
        if (!sp_row && bad[r] >= HUGE_BITS)
            sp_row = F(row_check_strided)(p + r * p_ls, p_es, k)
                     || (uses_q && F(row_check_strided)(q + r * q_ls, q_es, k));
        if (sp_row) {
            special |= 1u << r;
        } else {
            double v = val[h][l];
            out[r * out_s] = (T)v;
            nan_rows += v != v;
        }
    }
    *n_bad = nan_rows;
    return special;
}

/* ok: the rows whose sums xt, yt (NH each) are within tol of 1: the row
 * loop's check (a NaN sum or tol fails it). */
KLF_INLINE void F(sums_check)(const vd *xt, const vd *yt, double tol, vl *ok) {
    for (int h = 0; h < NH; h++) {
        vd dx = xt[h] - 1.0, dy = yt[h] - 1.0;
        ok[h] = (dx <= tol) & (dx >= -tol) & (dy <= tol) & (dy >= -tol);
    }
}

/* The tile's results from its state (lanes_results). */
KLF_INLINE unsigned F(lanes_finish)(int measure, F(lanes_state) *st, const T *p, ptrdiff_t p_ls,
                                    ptrdiff_t p_es, const T *q, ptrdiff_t q_ls, ptrdiff_t q_es,
                                    int n, ptrdiff_t k, int normalize, double tol, double scale,
                                    T *out, ptrdiff_t out_s, int *n_bad) {
    const int uses_q = measure != KLFAST_ENTROPY;
    vd total[NH], xt[NH], yt[NH];
    vl ok[NH] = {{0}}; /* set unless normalizing */
    int np = k < BLOCK ? (int)k : BLOCK; /* positions that hold elements */
    F(fold)(st->acc, np, total);
    if (!normalize) {
        F(lanes_widen)(st, np, uses_q, xt, yt);
        F(sums_check)(xt, yt, tol, ok);
    }
    /* (bad_t: U, bad where >= HUGE_BITS, or M, bad where all bits are set) */
    U bad = normalize ? (U)st->bad : st->bits;
    return F(lanes_results)(measure, total, normalize ? NULL : ok, normalize ? st->sp : NULL,
                            normalize ? st->sq : NULL, &st->flag, bad, p, p_ls, p_es, q, q_ls,
                            q_es, n, k, scale, out, out_s, 0, n_bad);
}

/* ---- short distributions -------------------------------------------------
 * Distributions of k <= SHORT_MAX elements, not normalized: one chunk, at
 * most two elements per position. A tile of LANES C-ordered rows is k whole
 * vectors, turned into the k vectors of its elements in registers
 * (short_transpose); a tile
 * of LANES consecutive distributions (columns, Fortran rows) is read as
 * its k vectors in place. Its sums are kept in registers (lanes_loop keeps
 * a state in memory for any length); they are lanes_loop's, position by
 * position. k = 2 .. 10 are compiled each with k and the layout constant
 * (unchecked eps: the default) and the tile unrolled into registers.
 *
 * What bounds them at AVX-512 is the vector ALU, not memory: 4,000 float64
 * rows of 2 in cache take kl 2.61 ns a row, 20,000,000 out of cache 2.89,
 * and reading them alone 1.79 (benchmarks/shapes.py's floor). The tile's
 * loop holds about 83 512-bit ALU operations per 8 rows (perf annotate),
 * which take two ports: about 42 cycles. A change here pays by the
 * operations it removes; a quotient without the divider (vrcp14pd and a
 * Newton step, simd.h) added five and measured 1.03-1.10. */

/* The tile's k vectors at x (LANES rows of k elements, back to back) as
 * the vectors of its elements: lane r of out[j] = x[r * k + j]. AVX-512
 * with k <= LANES / 4 (float64 k = 2, float32 k <= 4): out[j] from each
 * pair of the tile's vectors by a two-source permute (idx[j] = r k + j,
 * read mod 2 LANES), the lanes of later pairs blended in (k ceil(k / 2)
 * permutes and k (ceil(k / 2) - 1) blends). Else the rows transposed
 * (transpose_rows), never gathered (below). Measured on C rows
 * out of cache (benchmarks/ab_builds.py, 2 threads; time of the permutes /
 * time of the transpose): float32 k = 2
 * 0.83, k = 4 0.97, k = 5 1.05, k = 10 1.17; float64 k = 2 0.97 (1 thread
 * 1.14), k = 3 1.05, k = 6 1.13, k = 9 1.25. */
#if KLF_PERMUTE2
KLF_INLINE void F(short_permute)(const T *x, int k, const M *idx, V *out) {
    /* (k constant: unrolled, so that out stays in registers) */
#pragma GCC unroll 16
    for (int j = 0; j < k; j++) {
        V o = {0};
#pragma GCC unroll 8
        for (int m = 0; 2 * m < k; m++) {
            /* an odd k's last pair: its second vector is lanes no index reads */
            V a, b;
            memcpy(&a, x + 2 * m * LANES, sizeof(V));
            memcpy(&b, x + (2 * m + 1 < k ? 2 * m + 1 : 2 * m) * LANES, sizeof(V));
            V v = PERMUTE2(a, idx[j], b);
            o = m == 0 ? v : VSEL((M)(idx[j] / (2 * LANES) == m), v, o);
        }
        out[j] = o;
    }
}
#endif

/* Gathers (vgatherqpd / vgatherdps: one per element, idx[j] = r k + j)
 * instead of the transpose were tried, and dropped. On one host of the
 * project's kind (AMD EPYC, Zen 4) they took 0.83-1.03 of the transpose's
 * time (ab_builds, 10^7 C rows of 5-16, kl, 1 / 2 threads; float32 rows in
 * pairs, two 64-bit gathers and two permutes per two elements, from 5
 * elements: 0.83-1.00 of float gathers). On a later host of the same kind
 * (family 25 model 17), the transpose took this of the gathers' time
 * (a build without them against one with, kl | entropy, 1 / 2 threads):
 * float64 k = 6 0.79 / 0.80 | 0.86 / 0.85, 8 0.77 / 0.79 | 0.79 / 0.81,
 * 10 0.84 / 0.86 | 0.83 / 0.82, 12 0.75 / 0.81 | 0.92 / 0.85, 13 0.81 /
 * 0.86 | 0.82 / 0.82; float32 k = 5 0.90 / 0.90, 7 0.86 / 0.87, 8 0.80 /
 * 0.79 | 0.76 / 0.73, 10 0.99 / 0.97 | 0.88 / 0.87, 12 0.81 / 0.86 | 0.69 /
 * 0.71, 16 0.81 / 0.93 | 0.69 / 0.69; in cache alike (float64 k = 10 kl
 * 0.65-0.68): the gathers themselves were slow there. Compiling both and
 * choosing at import by timing them cost more than it saved: the extra
 * loops changed GCC's register allocation of the others (float32 rows of
 * 2, kl: 1.08 / 1.08; float64 rows of 8 in cache 1.7x). */
#define SHORT_AHEAD 2560 /* bytes: short_transpose's prefetch */

KLF_INLINE void F(short_transpose)(const T *x, int k, const M *idx, V *out) {
    /* the bytes of a tile SHORT_AHEAD on, a prefetch per line, when it spans
     * two lines or more. B/A (ab_builds), kl, 1 / 2 threads: AVX-512 (20,000,000
     * rows) float32 k = 2 0.90 / 0.86 (entropy 0.91 / 0.86), k = 5 0.87 / 0.88,
     * float64 k = 4 0.83 / 0.83; AVX2 float32 k = 10 0.93 / 0.93, float64
     * k = 4 0.88 / 0.86; SSE2 float32 k = 10 0.94 / 0.95. Tiles of one line
     * lost or gained nothing (AVX2 float32 k = 2: 1.09 / 1.10; SSE2 float64
     * k = 4 1.00 / 1.02). Gathered tiles, kl | entropy: float64 10,000,000 x
     * 6 0.86 / 0.84 | 0.84 / 0.77, 12,500,000 x 8 0.89 / 0.88 | 0.93 / 0.80,
     * 10,000,000 x 10 0.99 / 0.96 | 1.03 / 0.86, 6,000,000 x 12 0.95 / 0.93 |
     * 0.91 / 0.84; float32 12,500,000 x 8 0.93 / 0.91 | 0.90 / 0.81,
     * 10,000,000 x 10 0.96 / 0.94 | 0.99 / 0.89, 6,000,000 x 12 0.96 / 0.97
     * | 0.98 / 0.91 (1.06 at k = 10 while the indices were built lane by
     * lane, short_loop). Those prefetched 8 tiles on: 512 k bytes at
     * AVX-512, 4.6-8 KB for k = 9 .. 16. So far on, out of cache, gathered
     * tiles stalled in some builds and not in others (float64 entropy,
     * 1 thread: k = 9 1.54 ns an element, k = 8 1.05, 1.05-1.09 for both
     * in cache), and the best distance, swept in a C harness (lanes_f64 on
     * 10^8 elements, 1 and 2 threads), was about 2-3 KB for every k: a
     * distance in bytes, not in tiles. B/A of SHORT_AHEAD (2560) against 8
     * tiles (ab_builds, 1 / 2 threads), AVX-512, kl | entropy: float64 k =
     * 8 0.91 / 0.94 | 0.60 / 0.73, 9 0.88 / 0.93 | 0.67 / 0.87, 10 0.84 /
     * 0.92 | 0.63 / 0.78, 12 0.84 / 0.85 | 0.82 / 0.88 (longer float64
     * rows take the row loop: _kernels.pyx _lanes_max_k_f64, which
     * lanes_crossover.py kept at 13 after this: lanes / rows 0.98-1.10 at
     * 14 .. 16); float32 k = 8 0.91 / 0.91 | 0.93 / 0.96, 9 0.87 / 0.90
     * | 0.73 / 0.93, 12 0.87 / 0.91 | 0.64 / 0.89, 16 0.85 / 0.89 | 0.77 /
     * 0.92; k = 2 .. 6 (1 .. 3 KB before) 0.93-1.03 for both; at k = 10
     * jeffreys and cross_entropy float64 0.84 / 0.91 and 0.84 / 0.90,
     * float32 0.85 / 0.91 and 0.87 / 0.93. AVX2 and SSE2 (KLFAST_ISA), k =
     * 4, 10, 16: 0.94-1.06, within their runs' noise. */
    if (k * (int)sizeof(V) >= 128) {
        const char *ahead = (const char *)x + SHORT_AHEAD;
#pragma GCC unroll 16
        for (int b = 0; b < k * (int)sizeof(V); b += 64) __builtin_prefetch(ahead + b);
    }
#if KLF_PERMUTE2
    if (k <= LANES / 4) {
        F(short_permute)(x, k, idx, out);
        return;
    }
#endif
    (void)idx;
    F(transpose_rows)(x, k, LANES, k, (T *)out); /* (written by memcpy) */
}

/* The k vectors of elements of a tile of LANES short distributions at x
 * (element j of distribution r at x[r * ls + j * es]), for short_tile:
 * ls == 0, one distribution for every lane (broadcast); cols (ls == 1),
 * each element's LANES distributions consecutive, read in place (and
 * prefetched PREFETCH on); else rows back to back (ls == k, es == 1),
 * turned in registers (short_transpose). */
KLF_INLINE void F(short_load)(const T *x, ptrdiff_t ls, ptrdiff_t es, int k, int cols,
                              const M *idx, V *out) {
    if (ls == 0) {
#pragma GCC unroll 16
        for (int j = 0; j < k; j++) out[j] = BCAST(x[j * es]);
    } else if (cols) {
#pragma GCC unroll 16
        for (int j = 0; j < k; j++) {
            __builtin_prefetch(x + j * es + PREFETCH);
            memcpy(&out[j], x + j * es, sizeof(V));
        }
    } else {
        F(short_transpose)(x, k, idx, out);
    }
}

/* The first np position sums of a short tile (one element or two each:
 * one float32 group), widened, and folded (fold): into out[0 .. NH). The
 * row loop adds them onto sums of +0 (ADD); here they are taken as they
 * are (WIDEN), the same bits: a measure's position sum is never -0 (it
 * starts at +0, and a sum rounded to nearest is -0 only when both addends
 * are), and +0 + w is w for any other w, NaN included (short_tile's row
 * sums can be -0: see there). With np constant all in registers. */
KLF_INLINE void F(fold_positions)(const V *s, int np, vd *out) {
    vd c[BLOCK * NH];
    /* fold reads the first np only. Zeroed for gcc's -Wmaybe-uninitialized
     * where np is not a constant; with np constant gcc sees that, and the
     * zeroing (2 KB of stores at float32 AVX-512) is left out */
    if (!__builtin_constant_p(np)) memset(c, 0, sizeof(c));
#pragma GCC unroll 16
    for (int l = 0; l < np; l++) WIDEN(c, l, s[l]);
    F(fold)(c, np, out);
}

/* The sum check of float32 short tiles, decided from sums in float where
 * they can decide it (the sums of x[0 .. n) and y[0 .. n): n = k, or 1
 * where short_tile has added a row's k elements itself). The row loop
 * checks |s - 1| <= tol on s, the row's elements widened and added in
 * double (lanes_results); here each row is summed in float (k - 1
 * adds), s' within (k - 1) 2^-24 (1 + 1e-6) of the
 * exact sum for the k <= 16 nonnegative elements of a row the fast path
 * takes (rows with others go to the exact path whatever this says), s
 * within 1e-15 of it, and s' - 1 is exact for s' in [0.5, 2]. So with
 * band[0] = tol - m rounded down and band[1] = tol + m rounded up (m =
 * 2^-19 (1 + |tol|), klf_sum_band), |s' - 1| <= band[0] means the check
 * passes and |s' - 1| > band[1] that it fails: ok (sums_check's) is set
 * from that. Returns 0, ok unset, when some lane is in between (or NaN):
 * the tile takes the sums in the row loop's order. Returns 2, ok unset,
 * when k <= 4 and every row passes: short_tile then hands lanes_results
 * no mask (sums_ok NULL: no mask widening, no NaN select), or at k = 2
 * stores the rows' float sums (pair_sums). B/A (ab_builds,
 * kl | entropy, 1 / 2 threads): 20,000,000 x 2 0.91 / 0.91 | 0.91 / 0.90,
 * 16,000,000 x 4 0.94 / 0.95 | 0.91 / 0.93; at k = 10 that second inlined
 * lanes_results cost kl 1.03 / 1.02. Deciding the pass first (fail only
 * when some row does not pass), on top: 20,000,000 x 2 0.96 / 0.95 | 0.96
 * / 0.95, 16,000,000 x 4 0.97 / 0.98 | 0.98 / 0.98. Saves the widening and
 * folding of two sums per tile, and their check in double. */
#define FAST_SUMS (KLF_ELEMENT_BITS == 32)
#if FAST_SUMS
/* a float lane mask as NH masks of double lanes */
KLF_INLINE void F(mask_halves)(M m, vl *out) {
    typedef int32_t vih __attribute__((vector_size(KLF_VBYTES / 2)));
    out[0] = __builtin_convertvector((vih)__builtin_shufflevector(m, m, KLF_IDX_LO), vl);
    out[1] = __builtin_convertvector((vih)__builtin_shufflevector(m, m, KLF_IDX_HI), vl);
}

_Static_assert(SHORT_MAX <= BLOCK, "a float32 short row: one element per position");
KLF_INLINE int F(sums_decide)(const V *x, const V *y, int n, int k, int uses_q,
                              const T *band, vl *ok) {
    const U abs_bits = BITS(0x7FFFFFFFu);
    V sx = x[0], sy = uses_q ? y[0] : (V){0};
#pragma GCC unroll 16
    for (int j = 1; j < n; j++) {
        sx += x[j];
        if (uses_q) sy += y[j];
    }
    V dx = (V)((U)(sx - 1.0f) & abs_bits), dy = (V)((U)(sy - 1.0f) & abs_bits);
    V lo = BCAST(band[0]), hi = BCAST(band[1]);
    /* (before fail: then an all-pass tile compares nothing else) */
    if (k <= 4 && all_le_f32(dx, uses_q ? dy : dx, lo)) return 2; /* ok not written */
    M pass = (M)(dx <= lo);
    if (uses_q) pass &= (M)(dy <= lo);
    M fail = (M)(dx > hi);
    if (uses_q) fail |= (M)(dy > hi);
    if (any_lane((vi)~(pass | fail))) return 0;
    F(mask_halves)(pass, ok);
    return 1;
}

#endif

/* Element j of a short tile (x, y) into its position's row sums xs, ys.
 * float64: a position's first element taken as it is, not added to +0, one
 * add fewer per element. A sum can then be -0 where the row loop's is +0 (a
 * row of -0 entries), and xt - 1 is -1 for both: the same check.
 * B/A (ab_builds, kl | entropy, 1 / 2 threads): 20,000,000 x 2 0.99 / 0.98
 * | 0.99 / 0.99, 10,000,000 x 6 0.97 / 0.95 | 0.97 / 0.99, 10,000,000 x 10
 * 0.98 / 0.98 | 0.97 / 0.98. Not at k >= 11 (short_wide): 6,000,000 x 12
 * entropy 1.05 / 1.03. */
KLF_INLINE void F(short_sum)(V x, V y, int j, int k, int uses_q, V *xs, V *ys) {
    int l = j < BLOCK ? j : j - BLOCK;
    if (!FAST_SUMS && j < BLOCK && k <= 10) {
        xs[l] = x;
        if (uses_q) ys[l] = y;
    } else {
        xs[l] += x;
        if (uses_q) ys[l] += y;
    }
}

#if FAST_SUMS
/* float32 rows of 2 whose sum checks all pass, in base e (scale 1), not
 * jensen_shannon: t, the rows' two terms added in float, stored as they are
 * when the whole tile takes the fast path (returns 1; else 0, nothing
 * written). The row loop's value is (float)((double)t0 + (double)t1) (its
 * positions widened and folded, times 1): the same number, as a sum of two
 * floats rounded to double and then to float is the sum rounded to float
 * (53 >= 2 * 24 + 2 bits: double rounding is innocuous for a sum, Figueroa
 * 1995), signed zeros alike; where t is not finite the tile goes on to
 * lanes_results. Saves the widening of two position sums, their fold and
 * the narrowing of the results. B/A (ab_builds, kl | entropy, 1 / 2
 * threads): 20,000,000 x 2 0.89 / 0.92 | 0.87 / 0.87, columns of 2 0.90 /
 * 0.91 | 0.82 / 0.83. */
KLF_INLINE int F(pair_sums)(V t, const M *fl, U bits, T *out, ptrdiff_t out_s, int stream,
                           int *n_bad) {
    if (!F(whole_tile)(LANES, out_s, fl, bits) || any_nonfinite_f32(t)) return 0;
    store_line(out, &t, stream);
    *n_bad = 0;
    return 1;
}
#endif

#if FAST_SUMS
/* ok for a float32 short tile (x, y: its elements) that sums_decide left
 * undecided (rare: a row's sum at the edge of tol, or NaN): its sums in
 * the row loop's order (sums_check). */
KLF_INLINE void F(tile_sums_check)(const V *x, const V *y, int k, int uses_q, double tol,
                                    vl *ok) {
    const int np = k < BLOCK ? k : BLOCK;
    V xs[BLOCK] = {{0}}, ys[BLOCK] = {{0}};
    vd xt[NH], yt[NH];
#pragma GCC unroll 16
    for (int j = 0; j < k; j++) F(short_sum)(x[j], y[j], j, k, uses_q, xs, ys);
    F(fold_positions)(xs, np, xt);
    if (uses_q) F(fold_positions)(ys, np, yt);
    else memcpy(yt, xt, sizeof(yt));
    F(sums_check)(xt, yt, tol, ok);
}

/* tile_sums_check from the tile loaded again: short_tile's x and y then
 * die with their terms (see there). short_tile keeps the same steps inline
 * for its other tiles: as a call of tile_sums_check they changed the AVX2
 * level's code (objdump). */
static __attribute__((noinline)) void F(short_sums)(int cols, const T *p, ptrdiff_t p_ls,
                                                    ptrdiff_t p_es, const T *q, ptrdiff_t q_ls,
                                                    ptrdiff_t q_es, int k, const M *idx,
                                                    int uses_q, double tol, vl *ok) {
    V x[SHORT_MAX] = {{0}}, y[SHORT_MAX] = {{0}};
    F(short_load)(p, p_ls, p_es, k, cols, idx, x);
    if (uses_q) F(short_load)(q, q_ls, q_es, k, cols, idx, y);
    F(tile_sums_check)(x, y, k, uses_q, tol, ok);
}
#endif

/* One tile of LANES short distributions from p and q (short_load; q_ls ==
 * 0: one distribution of q for all), for constant measure and checked;
 * results as lanes_results. band: sums_decide's (float32). */
KLF_INLINE unsigned F(short_tile)(int measure, int cols, const T *p, ptrdiff_t p_ls,
                                  ptrdiff_t p_es, const T *q, ptrdiff_t q_ls, ptrdiff_t q_es,
                                  int k, V e, int checked, const M *idx, const T *band,
                                  double tol, double scale, T *out, ptrdiff_t out_s, int stream,
                                  int *n_bad) {
    const int uses_q = measure != KLFAST_ENTROPY, np = k < BLOCK ? k : BLOCK;
    /* (all zeroed: gcc cannot tell that they are written before they are read;
     * with k constant the unused ones cost nothing) */
    V x[SHORT_MAX] = {{0}}, y[SHORT_MAX] = {{0}};
    V s[BLOCK] = {{0}}, xs[BLOCK] = {{0}}, ys[BLOCK] = {{0}};
    vd total[NH], xt[NH], yt[NH];
    vl ok[NH];
    M flag = {0};
    U bits = {0};
#if FAST_SUMS
    /* the rows' float sums (sums_decide), in the order of j (the same
     * sums): at AVX-512 where k is a constant 5 .. 10, in the terms loop,
     * so that x[j] and y[j] die with their terms (an undecided tile loads
     * them again: short_sums); else after it, from x and y (sums_decide).
     * Kept to the end, they were spilled: perf annotate of float32 rows of
     * 10 in cache counted 89 stack loads and stores and 67 register moves
     * among about 800 instructions a tile. B/A (ab_builds, kl | entropy,
     * 1 / 2 threads): 10,000,000 x 10 0.92 / 0.91 | 0.87 / 0.88,
     * 12,500,000 x 8 0.96 / 0.98 | 0.99 / 1.01, columns of 10 0.92 / 0.96 |
     * 0.95 / 0.89, Fortran 0.92 / 0.93 | 0.96 / 0.91; k = 2 and 4 (the
     * old path) 0.99-1.01. Not elsewhere: in the terms loop for every k,
     * k = 2 took 1.07 / 1.06 and 16 1.08 / 1.08 (kl; 16 faster in cache,
     * slower out of it); at AVX2 k = 8 kl 1.04 / 1.06; at SSE2 kl 1.3-1.9.
     * Written so that the other levels compile to the same code as before
     * (objdump). */
    const int early = KLF_VBYTES == 64 && __builtin_constant_p(k) && k >= 5 && k <= 10;
    V sx[1] = {{0}}, sy[1] = {{0}};
#endif
    F(short_load)(p, p_ls, p_es, k, cols, idx, x);
    if (uses_q) F(short_load)(q, q_ls, q_es, k, cols, idx, y);
    /* element j at position j mod BLOCK, each position in the order of j;
     * float64 row sums in the same pass, so that x[j] and y[j] need not
     * live to the end (as a second pass, all 2k vectors did). B/A of this
     * and the OR3 (ab_builds, kl | entropy, 1 / 2 threads): 6,000,000 x 12
     * 0.93 / 0.96 | 0.96 / 0.98, 10,000,000 x 10 1.00 / 1.00 | 0.96 /
     * 0.97, 10,000,000 x 6 1.00 / 1.00 | 1.02 / 1.01 */
#pragma GCC unroll 16
    for (int j = 0; j < k; j++) {
        int l = j < BLOCK ? j : j - BLOCK;
        F(term)(measure, x[j], uses_q ? y[j] : (V){0}, e, checked, &flag, &s[l]);
        /* (OR3 at k >= 11, where gcc otherwise ORs the x and the y apart,
         * one OR more: at k = 12 part of the B/A above; at k = 10 it
         * measured kl 1.05 / 1.04) */
        if (!uses_q) bits |= (U)x[j];
        else if (j == 0 || k <= 10) bits |= (U)x[j] | (U)y[j];
        else bits = OR3(bits, x[j], y[j]);
#if FAST_SUMS
        if (early) {
            sx[0] = j ? sx[0] + x[j] : x[j];
            if (uses_q) sy[0] = j ? sy[0] + y[j] : y[j];
        }
#endif
        if (!FAST_SUMS) F(short_sum)(x[j], y[j], j, k, uses_q, xs, ys);
    }
    const M *fl = F(terms_flag)(measure, checked) ? &flag : NULL;
#if FAST_SUMS
    int decided = early ? F(sums_decide)(sx, sy, 1, k, uses_q, band, ok)
                        : F(sums_decide)(x, y, k, k, uses_q, band, ok);
    if (decided == 2 && k == 2 && measure != KLFAST_JS && scale == 1.0
        && F(pair_sums)(s[0] + s[1], fl, bits, out, out_s, stream, n_bad))
        return 0;
#endif
    /* (float32: one group, widened) */
    F(fold_positions)(s, np, total);
#if FAST_SUMS
    if (decided == 2)
        return F(lanes_results)(measure, total, NULL, NULL, NULL, fl, bits, p, p_ls, p_es, q,
                                q_ls, q_es, LANES, k, scale, out, out_s, stream, n_bad);
    if (!decided && early)
        F(short_sums)(cols, p, p_ls, p_es, q, q_ls, q_es, k, idx, uses_q, tol, ok);
    else if (!decided)
#else
    (void)band;
#endif
    {
#pragma GCC unroll 16
        for (int j = 0; j < k && FAST_SUMS; j++) F(short_sum)(x[j], y[j], j, k, uses_q, xs, ys);
        F(fold_positions)(xs, np, xt);
        if (uses_q) F(fold_positions)(ys, np, yt);
        else memcpy(yt, xt, sizeof(yt));
        F(sums_check)(xt, yt, tol, ok);
    }
    return F(lanes_results)(measure, total, ok, NULL, NULL, fl, bits, p, p_ls, p_es, q, q_ls,
                            q_es, LANES, k, scale, out, out_s, stream, n_bad);
}

/* The n / LANES whole tiles of short distributions at p, q (short_rows),
 * for constant measure, layout (cols), k and checked where the caller gives
 * them. idx[j] = r k + j in lane r: where rows back to back hold element j
 * of row r (short_permute's indices; unused for columns),
 * constants where k is. Built a whole vector at a time from IOTA: built
 * lane by lane, float64's were stored in two halves, which the first
 * whole-vector read waited on every call (perf: 13 % of the lanes
 * function's samples on float64 rows of 2). special[s], bit r: distribution
 * s * 64 + r takes the exact path. */
KLF_INLINE void F(short_loop)(int measure, int cols, int k, int checked, const T *p,
                              ptrdiff_t p_ls, ptrdiff_t p_es, const T *q, ptrdiff_t q_ls,
                              ptrdiff_t q_es, int n, V e, const T *band, double tol,
                              double scale, T *out, ptrdiff_t out_s, int stream, int *n_bad,
                              uint64_t *special) {
    const M lane = {IOTA};
    M idx[SHORT_MAX];
    for (int j = 0; j < k; j++) idx[j] = lane * k + j;
    for (int s = 0; s * STRIP * LANES < n; s++) special[s] = 0;
    for (int r = 0; r + LANES <= n; r += LANES) {
        int bad = 0;
        unsigned sp = F(short_tile)(measure, cols, p + r * p_ls, cols ? 1 : k, cols ? p_es : 1,
                                    q + r * q_ls, q_ls, cols ? q_es : 1, k, e, checked, idx,
                                    band, tol, scale, out + r * out_s, out_s, stream, &bad);
        special[r / (STRIP * LANES)] |= (uint64_t)sp << (r % (STRIP * LANES));
        *n_bad += bad;
    }
}

/* short_loop with k = 11 .. 16 constant too (unchecked), at AVX-512 (32
 * registers): each measure, k and layout a function of its own (short_wide,
 * below), so that each gets its own register allocation. As more cases of
 * short_rows' switch they made the whole lanes function spill (float32 C
 * rows of 10, kl: B/A 1.49 / 1.39 on 1 / 2 threads). B/A against k as a
 * variable (benchmarks/ab_builds.py, pip installs of the code before and
 * after, kl and entropy, 1 / 2 threads): float32 C rows of 12 0.81 / 0.84
 * and 0.82 / 0.84, of 16 0.87 / 0.86 and 0.87 / 0.88; columns of 12
 * float64 0.79 / 0.85 and 0.81 / 0.84, float32 0.70 / 0.73 and 0.65 /
 * 0.68. k = 2 .. 10 so too gained nothing (float32 k = 2: 1.05 / 1.07).
 * Called a strip (n <= 64) at a time; returns the strip's distributions
 * for the exact path, a word kept in a register. With strips' whole call
 * (up to 32 strips) in one call, and the words in memory, float64 rows of
 * 12 took 1.06 / 1.07 as long (kl, 1 / 2 threads; ab_builds). */
typedef uint64_t (*F(short_fn))(const T *p, ptrdiff_t p_ls, ptrdiff_t p_es, const T *q,
                                 ptrdiff_t q_ls, ptrdiff_t q_es, int n, V e, const T *band,
                                 double tol, double scale, T *out, ptrdiff_t out_s, int stream,
                                 int *n_bad);
#define SHORT_WIDE_ON (KLF_X86 && KLF_VBYTES == 64)
#define SHORT_WIDE_MIN 11

/* The n / LANES whole tiles of short distributions at p, q (lanes): rows
 * back to back (cols == 0: p_ls == k, p_es == 1, q alike or broadcast) or
 * consecutive distributions (cols: p_ls == 1, q_ls 1 or 0). wide: the
 * measure's short_wide functions (rows, then columns), or NULL. stream:
 * a tile's results, when all go out at once, by store_line (simd.h). */
KLF_INLINE void F(short_rows)(int measure, const F(short_fn) *wide, int cols, const T *p,
                              ptrdiff_t p_ls, ptrdiff_t p_es, const T *q, ptrdiff_t q_ls,
                              ptrdiff_t q_es, int n, int k, double eps, double tol, double scale,
                              T *out, ptrdiff_t out_s, int stream, int *n_bad,
                              uint64_t *special) {
    int checked = !(eps >= 2.0 * (double)TMIN);
    V e = BCAST((T)eps);
    T band[2] = {0};
#if FAST_SUMS
    klf_sum_band(tol, 0x1p-19, band);
#endif
/* k, checked and the layout as constants where given (K_ > 0; L_: cols) */
#define SHORT_LOOP(K_, C_, L_)                                                                \
    {                                                                                         \
        F(short_loop)(measure, L_, K_ ? K_ : k, C_, p, p_ls, p_es, q, q_ls, q_es, n, e, band, \
                      tol, scale, out, out_s, stream, n_bad, special);                        \
        return;                                                                               \
    }
#define SHORT_CASES(L_)                                                                       \
    switch (k) {                                                                              \
    case 2: SHORT_LOOP(2, 0, L_)                                                              \
    case 3: SHORT_LOOP(3, 0, L_)                                                              \
    case 4: SHORT_LOOP(4, 0, L_)                                                              \
    case 5: SHORT_LOOP(5, 0, L_)                                                              \
    case 6: SHORT_LOOP(6, 0, L_)                                                              \
    case 7: SHORT_LOOP(7, 0, L_)                                                              \
    case 8: SHORT_LOOP(8, 0, L_)                                                              \
    case 9: SHORT_LOOP(9, 0, L_)                                                              \
    case 10: SHORT_LOOP(10, 0, L_)                                                            \
    default:                                                                                  \
        if (wide && k >= SHORT_WIDE_MIN) { /* (short_wide: below), a strip a call */          \
            F(short_fn) fn = wide[(L_ ? SHORT_MAX + 1 - SHORT_WIDE_MIN : 0) + k - SHORT_WIDE_MIN]; \
            for (int r0 = 0; r0 < n; r0 += STRIP * LANES)                                     \
                special[r0 / (STRIP * LANES)] =                                               \
                    fn(p + r0 * p_ls, p_ls, p_es, q + r0 * q_ls, q_ls, q_es,                  \
                       n - r0 < STRIP * LANES ? n - r0 : STRIP * LANES, e, band, tol, scale,  \
                       out + r0 * out_s, out_s, stream, n_bad);                               \
            return;                                                                           \
        }                                                                                     \
        SHORT_LOOP(0, 0, L_)                                                                  \
    }
    if (checked) SHORT_LOOP(0, 1, cols)
    if (cols) SHORT_CASES(1)
    SHORT_CASES(0)
#undef SHORT_CASES
#undef SHORT_LOOP
}

/* The n <= LANES distributions of one tile (lanes_finish). */
KLF_INLINE unsigned F(lanes_tile)(int measure, const T *p, ptrdiff_t p_ls, ptrdiff_t p_es,
                                  const T *q, ptrdiff_t q_ls, ptrdiff_t q_es, int n,
                                  ptrdiff_t k, double eps, int normalize, double tol,
                                  double scale, T *out, ptrdiff_t out_s, int *n_bad) {
    const int uses_q = measure != KLFAST_ENTROPY;
    int checked = !(eps >= 2.0 * (double)TMIN);
    T pbuf[JC * LANES], qbuf[JC * LANES];
    F(lanes_state) st;
    F(lanes_start)(&st, eps);
    if (normalize) {
        F(lanes_scale)(p, p_ls, p_es, n, k, pbuf, st.sp);
        if (uses_q) F(lanes_scale)(q, q_ls, q_es, n, k, qbuf, st.sq);
        else memcpy(st.sq, st.sp, sizeof(st.sq));
        if (checked)
            F(lanes_loop)(measure, p, p_ls, p_es, q, q_ls, q_es, n, k, 1, 1, pbuf, qbuf, &st);
        else
            F(lanes_loop)(measure, p, p_ls, p_es, q, q_ls, q_es, n, k, 1, 0, pbuf, qbuf, &st);
    } else if (checked) {
        F(lanes_loop)(measure, p, p_ls, p_es, q, q_ls, q_es, n, k, 0, 1, pbuf, qbuf, &st);
    } else {
        F(lanes_loop)(measure, p, p_ls, p_es, q, q_ls, q_es, n, k, 0, 0, pbuf, qbuf, &st);
    }
    return F(lanes_finish)(measure, &st, p, p_ls, p_es, q, q_ls, q_es, n, k, normalize, tol,
                           scale, out, out_s, n_bad);
}

/* The measure's sum of tile t at position l in a sweep: in the tile's state
 * (float64), or among g's group sums (float32, GB per tile). */
KLF_INLINE V *F(sweep_sum)(F(lanes_state) *st, V *g, int t, int l) {
    return GROUP == 1 ? (V *)&st[t].acc[l * NH] : &g[t * GB + l];
}

/* ns strips of STRIP whole tiles of consecutive distributions (element j
 * of distribution r at x[r + j * es]) into st[0 .. ns * STRIP), for
 * constant measure, normalize and checked. Memory is read along the rows of
 * a C-ordered array: VISIT rows of one strip (a 64-distribution segment of
 * each: 512 bytes of float64),
 * then the same rows of the next strip, so that ns strips read each row's
 * ns * 512 bytes one after the other (strip after strip, each over every
 * row, read (1,000, 50,000) columns at half the speed of reading them in
 * order: a segment per row and call, hundreds of rows apart). A segment
 * is prefetched SWEEP_AHEAD strips before it is read: the same row's, or
 * past the last strip a first strip's of the row a visit on (one strip:
 * the segment AHEAD elements on; past k, in the strips after this one).
 * Each sum adds its elements in the order of j, as lanes_loop: in chunks of
 * JC, float32 measure sums in groups of one chunk (in g: GB vectors per
 * tile), row sums widened every SUM_GROUPS chunks.
 * Tried: a position's sums kept in registers while its rows of a chunk (l,
 * l + BLOCK, ...) are read, four tiles at a time, instead of loaded and
 * stored for each element (the same bits). B/A against this (ab_builds
 * --layout columns, (1,000, 50,000), kl | entropy, 1 / 2 threads): strip
 * after strip over a chunk's rows, float32 1.19 / 1.70 | 1.28 / 1.35,
 * float64 1.35 / 1.35 | 1.25 / 1.23; a position's rows in every strip
 * before the next position's, prefetching 1 strip ahead float32 1.83 / 2.06
 * | 1.28 / 1.19, 2 strips 0.94 / 1.17 | 0.98 / 1.01, 4 strips 1.00 / 1.21 |
 * 0.91 / 0.96 (float64 1.46 / 1.45 | 1.07 / 1.19), 8 strips 1.13 / 1.55 |
 * 0.94 / 0.94. What the sums' loads and stores save, the changed order of
 * reading loses (the loads stall), most on 2 threads.
 * Tried again on (1,000, 50,000) float32 kl, with this order (6 rows, 2
 * strips ahead) as the base: the strips kernel alone (AVX-512, huge pages)
 * against a read of the same bytes, 1 thread, this sweep 1.51-1.83 the
 * floor over the runs. 64 strips a sweep: 1.80-1.85 (in the same runs 32
 * took 1.51-1.76), although reading alone in that order is nearer the
 * floor (1.04-1.11 against 1.10-1.20 at 32 strips; the sums, 786 KB, stay
 * in L2). A position's rows (l, l + BLOCK, ...) together, one tile at a
 * time, its sums in registers (a quarter of the loads and stores):
 * 1.70-1.74 with the prefetches spread among the elements, 1.86-2.06 with
 * a visit's prefetches issued first. As a bound, every strip's sums in one
 * strip's memory (wrong results, sums in L1): 1.40-1.43 on 1 thread and
 * 2 (this sweep 1.53-1.84 on 2). */
KLF_INLINE void F(lanes_sweep)(int measure, const T *p, ptrdiff_t p_es, const T *q,
                               ptrdiff_t q_es, ptrdiff_t k, int normalize, int checked,
                               F(lanes_state) *st, int ns, V *g) {
    const int uses_q = measure != KLFAST_ENTROPY;
    const int nt = ns * STRIP;
    int pending = 0;
    for (int t = 0; t < nt; t++)
        for (int l = 0; l < BLOCK; l++) {
            st[t].xs[l] = st[t].ys[l] = (V){0};
            for (int h = 0; h < NH; h++) st[t].acc[l * NH + h] = (vd){0};
        }
    for (ptrdiff_t j0 = 0; j0 < k; j0 += JC) {
        int jn = k - j0 < JC ? (int)(k - j0) : JC, np = jn < BLOCK ? jn : BLOCK;
        if (GROUP != 1)
            for (int i = 0; i < nt * GB; i++) g[i] = (V){0};
        for (int v0 = 0; v0 < jn; v0 += VISIT) {
            int v1 = jn - v0 < VISIT ? jn : v0 + VISIT;
            for (int s = 0; s < ns; s++) {
                F(lanes_state) *ss = st + s * STRIP;
                V *gs = g + s * STRIP * GB;
                const T *ps = p + s * STRIP * LANES, *qs = q + s * STRIP * LANES;
                F(lanes_regs) rg[STRIP];
                for (int w = 0; w < STRIP; w++)
                    rg[w] = (F(lanes_regs)){ss[w].e, ss[w].flag, ss[w].bits, ss[w].bad};
                for (int jj = v0; jj < v1; jj++) {
                    ptrdiff_t j = j0 + jj;
                    int l = jj & (BLOCK - 1);
                    const T *pa, *qa; /* the segment read next, or soon after */
                    if (ns == 1) { /* AHEAD elements on (past k: the next strips) */
                        ptrdiff_t ja = j + AHEAD, strips = ja < k ? 0 : ja / k;
                        pa = ps + strips * STRIP * LANES + (ja - strips * k) * p_es;
                        qa = qs + strips * STRIP * LANES + (ja - strips * k) * q_es;
                    } else if (s + SWEEP_AHEAD < ns) { /* a later strip's, this row */
                        pa = ps + SWEEP_AHEAD * STRIP * LANES + j * p_es;
                        qa = qs + SWEEP_AHEAD * STRIP * LANES + j * q_es;
                    } else { /* past the last strip: a first strip's, the row a visit on */
                        ptrdiff_t ja = j + VISIT < k ? j + VISIT : j, sa = s + SWEEP_AHEAD - ns;
                        pa = p + sa * STRIP * LANES + ja * p_es;
                        qa = q + sa * STRIP * LANES + ja * q_es;
                    }
                    /* the segment's last line too: its vectors need not start a line */
                    __builtin_prefetch(pa + STRIP * LANES - 1);
                    if (uses_q) __builtin_prefetch(qa + STRIP * LANES - 1);
                    for (int w = 0; w < STRIP; w++) {
                        __builtin_prefetch(pa + w * LANES);
                        if (uses_q) __builtin_prefetch(qa + w * LANES);
                        if (SWEEP_SUMS_AHEAD && s + 1 < ns) { /* the next strip's sums */
                            __builtin_prefetch(&ss[STRIP + w].xs[l]);
                            if (uses_q) __builtin_prefetch(&ss[STRIP + w].ys[l]);
                            __builtin_prefetch(F(sweep_sum)(ss, gs, STRIP + w, l));
                        }
                        F(lanes_element)(measure, ps + j * p_es + w * LANES,
                                         qs + j * q_es + w * LANES, normalize, checked, &ss[w],
                                         &rg[w], &ss[w].xs[l], &ss[w].ys[l],
                                         F(sweep_sum)(ss, gs, w, l));
                    }
                }
                for (int w = 0; w < STRIP; w++) {
                    ss[w].flag = rg[w].flag;
                    ss[w].bits = rg[w].bits;
                    ss[w].bad = rg[w].bad;
                }
            }
        }
        for (int t = 0; t < nt; t++) {
            if (GROUP != 1)
                for (int l = 0; l < np; l++) ADD(st[t].acc, l, g[t * GB + l]);
            if (GROUP != 1 && !normalize && jn == JC && pending + 1 == SUM_GROUPS)
                F(lanes_widen)(&st[t], BLOCK, uses_q, NULL, NULL);
        }
        if (GROUP != 1 && !normalize && jn == JC && ++pending == SUM_GROUPS) pending = 0;
    }
}

/* ns whole strips of consecutive distributions swept together (lanes_sweep)
 * into st (ns * STRIP tiles) and g: their results, the distributions the
 * exact path must compute in special[s] (bit r: distribution s * 64 + r). */
KLF_INLINE void F(sweep_strips)(int measure, const T *p, ptrdiff_t p_es, const T *q,
                                ptrdiff_t q_es, int ns, ptrdiff_t k, double eps, int normalize,
                                double tol, double scale, T *out, ptrdiff_t out_s, int *n_bad,
                                uint64_t *special, F(lanes_state) *st, V *g) {
    const int uses_q = measure != KLFAST_ENTROPY;
    int checked = !(eps >= 2.0 * (double)TMIN);
    for (int t = 0; t < ns * STRIP; t++) {
        F(lanes_start)(&st[t], eps);
        if (normalize) {
            F(lanes_scale)(p + t * LANES, 1, p_es, LANES, k, NULL, st[t].sp);
            if (uses_q) F(lanes_scale)(q + t * LANES, 1, q_es, LANES, k, NULL, st[t].sq);
            else memcpy(st[t].sq, st[t].sp, sizeof(st[t].sq));
        }
    }
    if (normalize && checked) F(lanes_sweep)(measure, p, p_es, q, q_es, k, 1, 1, st, ns, g);
    else if (normalize) F(lanes_sweep)(measure, p, p_es, q, q_es, k, 1, 0, st, ns, g);
    else if (checked) F(lanes_sweep)(measure, p, p_es, q, q_es, k, 0, 1, st, ns, g);
    else F(lanes_sweep)(measure, p, p_es, q, q_es, k, 0, 0, st, ns, g);
    for (int s = 0; s < ns; s++) {
        special[s] = 0;
        for (int w = 0; w < STRIP; w++) {
            int t = s * STRIP + w, bad = 0;
            special[s] |= (uint64_t)F(lanes_finish)(measure, &st[t], p + t * LANES, 1, p_es,
                                                    q + t * LANES, 1, q_es, LANES, k, normalize,
                                                    tol, scale, out + t * LANES * out_s, out_s,
                                                    &bad) << (w * LANES);
            *n_bad += bad;
        }
    }
}

/* The scratch memory of sweep_strips for KLFAST_STRIPS_MAX strips (st and
 * g), and 64 bytes to align it. */
enum { F(strips_scratch) = KLFAST_STRIPS_MAX * STRIP * (sizeof(F(lanes_state)) + GB * sizeof(V))
                           + 64 };

/* 1 when distributions of length k read through (p_ls, p_es), (q_ls,
 * q_es) are short_rows' columns (consecutive distributions: p_ls == 1, q
 * alike or broadcast), 0 when they are its rows (back to back, q alike or
 * broadcast), -1 when they are neither, longer than SHORT_MAX, or to be
 * normalized. */
KLF_INLINE int F(short_layout)(int measure, ptrdiff_t p_ls, ptrdiff_t p_es, ptrdiff_t q_ls,
                               ptrdiff_t q_es, ptrdiff_t k, int normalize) {
    const int uses_q = measure != KLFAST_ENTROPY;
    if (normalize || k < 1 || k > SHORT_MAX) return -1;
    if (p_ls == 1 && (!uses_q || q_ls == 1 || q_ls == 0)) return 1;
    if (p_es == 1 && p_ls == k && (!uses_q || (q_es == 1 && (q_ls == k || q_ls == 0)))) return 0;
    return -1;
}

/* The n <= STRIP * LANES distributions of a call: short ones in whole
 * tiles in registers (short_rows), a whole strip of consecutive ones
 * swept, else tile by tile. wide: the measure's short_wide, or NULL.
 * Returns the distributions the exact path must compute (bit r). */
KLF_INLINE uint64_t F(lanes)(int measure, const F(short_fn) *wide, const T *p, ptrdiff_t p_ls,
                             ptrdiff_t p_es, const T *q, ptrdiff_t q_ls, ptrdiff_t q_es, int n,
                             ptrdiff_t k, double eps, int normalize, double tol, double scale,
                             T *out, ptrdiff_t out_s, int stream, int *n_bad) {
    const int uses_q = measure != KLFAST_ENTROPY;
    uint64_t special = 0;
    int start = 0; /* the tiles before start are scored */
    *n_bad = 0;
    /* short distributions, not normalized: whole tiles in registers, a
     * partial last tile in the loop at the end */
    int cols = F(short_layout)(measure, p_ls, p_es, q_ls, q_es, k, normalize);
    if (cols >= 0) {
        start = n - n % LANES;
        F(short_rows)(measure, wide, cols, p, p_ls, p_es, q, q_ls, q_es, start, (int)k, eps, tol,
                      scale, out, out_s, stream, n_bad, &special);
    } else if (n == STRIP * LANES && p_ls == 1 && (q_ls == 1 || !uses_q) && k > 0) {
        F(lanes_state) st[STRIP];
        V g[STRIP * GB];
        F(sweep_strips)(measure, p, p_es, q, q_es, 1, k, eps, normalize, tol, scale, out, out_s,
                        n_bad, &special, st, g);
        return special;
    }
    for (int r = start; r < n; r += LANES) {
        int bad = 0, m = n - r < LANES ? n - r : LANES;
        special |= (uint64_t)F(lanes_tile)(measure, p + r * p_ls, p_ls, p_es, q + r * q_ls, q_ls,
                                           q_es, m, k, eps, normalize, tol, scale,
                                           out + r * out_s, out_s, &bad) << r;
        *n_bad += bad;
    }
    return special;
}

/* ns <= KLFAST_STRIPS_MAX whole strips (ns * 64 distributions) in one call
 * (engine/klfast.h): short ones in registers (short_rows: with a call per
 * strip, its set-up, the sum band and constants, was paid for every 4
 * tiles of float32), ns >= 2 strips of longer consecutive ones swept
 * together in scratch (strips_scratch bytes). 1 when done; 0, writing
 * nothing, for others or without scratch: then the caller scores them
 * strip by strip (lanes). */
KLF_INLINE int F(strips)(int measure, const F(short_fn) *wide, const T *p, ptrdiff_t p_ls,
                         ptrdiff_t p_es, const T *q, ptrdiff_t q_ls, ptrdiff_t q_es, int ns,
                         ptrdiff_t k, double eps, int normalize, double tol, double scale,
                         T *out, ptrdiff_t out_s, int stream, int *n_bad, uint64_t *special,
                         void *scratch) {
    const int uses_q = measure != KLFAST_ENTROPY;
    *n_bad = 0;
    if (ns < 1 || ns > KLFAST_STRIPS_MAX) return 0;
    int cols = F(short_layout)(measure, p_ls, p_es, q_ls, q_es, k, normalize);
    if (cols >= 0) {
        F(short_rows)(measure, wide, cols, p, p_ls, p_es, q, q_ls, q_es, ns * STRIP * LANES,
                      (int)k, eps, tol, scale, out, out_s, stream, n_bad, special);
        return 1;
    }
    if (scratch == NULL || ns < 2 || k < 1 || p_ls != 1 || (uses_q && q_ls != 1)
        || (!normalize && k <= SHORT_MAX))
        return 0;
    F(lanes_state) *st = (F(lanes_state) *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    const int sweep = KLF_ELEMENT_BITS == 32 && k < SWEEP_F32_K ? 16 : KLFAST_STRIPS_MAX;
    for (int s0 = 0; s0 < ns; s0 += sweep) {
        int m = ns - s0 < sweep ? ns - s0 : sweep;
        F(sweep_strips)(measure, p + s0 * STRIP * LANES, p_es, q + s0 * STRIP * LANES, q_es, m,
                        k, eps, normalize, tol, scale, out + s0 * STRIP * LANES * out_s, out_s,
                        n_bad, special + s0, st, (V *)(st + m * STRIP));
    }
    return 1;
}

#if SHORT_WIDE_ON
_Static_assert(SHORT_MAX == 16, "short_wide: k = 11 .. 16 for each layout");
#define SHORT_WIDE_FN(name, code, K_, L_)                                                     \
    static __attribute__((noinline)) uint64_t F(name##_##K_##_##L_)(                          \
        const T *p, ptrdiff_t p_ls, ptrdiff_t p_es, const T *q, ptrdiff_t q_ls,               \
        ptrdiff_t q_es, int n, V e, const T *band, double tol, double scale, T *out,          \
        ptrdiff_t out_s, int stream, int *n_bad) {                                            \
        uint64_t special = 0; /* (n <= 64) */                                                 \
        F(short_loop)(code, L_, K_, 0, p, p_ls, p_es, q, q_ls, q_es, n, e, band, tol, scale,  \
                      out, out_s, stream, n_bad, &special);                                   \
        return special;                                                                       \
    }
#define SHORT_WIDE_LAYOUT(name, code, L_)                                                     \
    SHORT_WIDE_FN(name, code, 11, L_) SHORT_WIDE_FN(name, code, 12, L_)                       \
    SHORT_WIDE_FN(name, code, 13, L_) SHORT_WIDE_FN(name, code, 14, L_)                       \
    SHORT_WIDE_FN(name, code, 15, L_) SHORT_WIDE_FN(name, code, 16, L_)
/* short_wide: rows (k = 11 .. 16), then columns */
#define SHORT_WIDE(name, code)                                                                \
    SHORT_WIDE_LAYOUT(name, code, 0) SHORT_WIDE_LAYOUT(name, code, 1)                         \
    static const F(short_fn) F(name)[] = {                                                    \
        F(name##_11_0), F(name##_12_0), F(name##_13_0), F(name##_14_0), F(name##_15_0),       \
        F(name##_16_0), F(name##_11_1), F(name##_12_1), F(name##_13_1), F(name##_14_1),       \
        F(name##_15_1), F(name##_16_1)};
#define SHORT_WIDE_OF(name) F(name)
#else
#define SHORT_WIDE(name, code)
#define SHORT_WIDE_OF(name) NULL
#endif
#define KLF_WIDE_FN(m, code, _) SHORT_WIDE(m##_wide, code)
KLFAST_EACH_MEASURE(KLF_WIDE_FN, _)
#undef KLF_WIDE_FN

/* each measure's strips and lanes (engine/klfast.h) */
#define KLF_STRIPS_LANES_FN(m, code, _)                                                       \
    static int ROW_FN(m##_strips)(const T *p, ptrdiff_t p_ls, ptrdiff_t p_es, const T *q,     \
                                  ptrdiff_t q_ls, ptrdiff_t q_es, int ns, ptrdiff_t k,        \
                                  double eps, int normalize, double tol, double scale,       \
                                  T *out, ptrdiff_t out_s, int stream, int *n_bad,           \
                                  uint64_t *special, void *scratch) {                        \
        return F(strips)(code, SHORT_WIDE_OF(m##_wide), p, p_ls, p_es, q, q_ls, q_es, ns, k,  \
                         eps, normalize, tol, scale, out, out_s, stream, n_bad, special,     \
                         scratch);                                                           \
    }                                                                                         \
    static uint64_t ROW_FN(m##_lanes)(const T *p, ptrdiff_t p_ls, ptrdiff_t p_es, const T *q, \
                                      ptrdiff_t q_ls, ptrdiff_t q_es, int n, ptrdiff_t k,     \
                                      double eps, int normalize, double tol, double scale,   \
                                      T *out, ptrdiff_t out_s, int stream, int *n_bad) {     \
        return F(lanes)(code, SHORT_WIDE_OF(m##_wide), p, p_ls, p_es, q, q_ls, q_es, n, k,    \
                        eps, normalize, tol, scale, out, out_s, stream, n_bad);              \
    }
KLFAST_EACH_MEASURE(KLF_STRIPS_LANES_FN, _)
#undef KLF_STRIPS_LANES_FN
#undef SHORT_WIDE_FN
#undef SHORT_WIDE_LAYOUT
#undef SHORT_WIDE
#undef SHORT_WIDE_OF
#undef SHORT_WIDE_MIN
#undef SHORT_WIDE_ON

#undef BLOCK
#undef NH
#undef JC
#undef SUM_GROUPS
#undef PREFETCH
#undef STRIP
#undef AHEAD
#undef VISIT
#undef SWEEP_AHEAD
#undef SWEEP_SUMS_AHEAD
#undef SWEEP_F32_K
#undef GB
#undef SHORT_MAX
#undef SHORT_AHEAD
#undef FAST_SUMS
#undef ZIP_LO
#undef ZIP_HI
