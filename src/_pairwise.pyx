# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""All-pairs kernels of klfast: result[i, j] = D(P_i || Q_j).

Private; klfast._core.pairwise validates, tiles and calls these. Three ways
to fill a tile of pairs, all with the GIL released and rows spread over
the threads of klfast._kernels' pool (one pair is always reduced by one
thread, left to right, so the values do not depend on the thread count):

* ``direct``: each pair by the row function of the instruction-set level in
  use (the one klfast.kl calls, and its exact scalar fallback), so a pair
  has the bits klfast.kl or klfast.jensen_shannon give it. Jensen-Shannon
  always, and every measure when the product form does not apply (eps below
  the smallest normal, entries past 2^500).
* ``finish``: kl, cross_entropy and jeffreys from matrix products (made by
  the caller with numpy's BLAS) of the rows and the logs of the other side,
  ``L = log(max(q, eps))``:

      cross_entropy = -P.L_q
      kl            = sum p log p~ - P.L_q                 = -H(p) - P.L_q
      jeffreys      = -H(p) - H(q) - P.L_q - Q.L_p

  A product of length k computed in any order is within
  gamma_k * sum |p_l| |L_l| of its value (gamma_k = k u / (1 - k u),
  u = 2^-53); with every L_l <= 0 that sum is |P.L|, else it grows by twice
  the row weight times the largest positive L. A pair whose bound is not
  below ``tol`` times its value (near-identical rows, where the terms
  cancel) is recomputed by ``accurate_pair``.
* ``accurate_pair``: one pair in float64 with libm, keeping the digits of
  near-identical rows: where p and q are within a factor 2,
  p log(p/q) = q g(x) + (p - q) with x = (p - q)/q (exact) and
  g(x) = (1 + x) log1p(x) - x >= 0 (a series near 0), so nothing of size x
  cancels; jeffreys' (p - q) log1p(x) terms share one sign. The addends
  are summed with Neumaier's compensated sum.

The epsilon rule is klfast's: p~ = max(p, eps), q~ = max(q, eps); terms
with p == 0 (jeffreys: p == q) are 0. float32 inputs apply eps rounded to
float32 and are computed in float64 here.
"""
from libc.float cimport DBL_MAX
from libc.math cimport fabs, log, log1p, INFINITY, NAN
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t
cimport numpy as cnp

cnp.import_array()

from _exact cimport (floating, klfast_isa, KLFAST_KL, KLFAST_JEFFREYS, KLFAST_ENTROPY,
                     KLFAST_CROSS_ENTROPY, KLFAST_JS, klfast_isa_levels, klfast_n_levels,
                     _fast_or_exact, pool_run, the_pool, claim_of)

cdef enum:
    KL = KLFAST_KL
    JEFFREYS = KLFAST_JEFFREYS
    ENTROPY = KLFAST_ENTROPY
    CROSS_ENTROPY = KLFAST_CROSS_ENTROPY
    JS = KLFAST_JS

MEASURES = {"kl": KL, "jeffreys": JEFFREYS, "cross_entropy": CROSS_ENTROPY,
            "jensen_shannon": JS}

cdef const klfast_isa* _isa = klfast_isa_levels[0]
# every loop over rows or blocks below runs on klfast._kernels' thread pool
cdef pool_run _pool = the_pool()

cdef extern from *:
    """
    /* y = log(x) in place, lane by lane, by the level's vector log (fn 2) */
    static inline void klf_pairwise_log(const klfast_isa *isa, double *x, ptrdiff_t n) {
        isa->math_f64(2, x, x, n);
    }
    """
    void _vector_log "klf_pairwise_log"(const klfast_isa* isa, double* x,
                                        Py_ssize_t n) noexcept nogil


def use_level(name):
    """Use the instruction-set level ``name`` (klfast._kernels.get_isa())."""
    global _isa
    cdef int i
    for i in range(klfast_n_levels):
        if klfast_isa_levels[i].name.decode() == name:
            _isa = klfast_isa_levels[i]
            return
    raise ValueError(f"unknown instruction-set level {name!r}")


# ---- one pair -------------------------------------------------------------

cdef inline void _add(double* s, double* c, double x) noexcept nogil:
    """Neumaier's compensated sum: s + c is the running total."""
    cdef double t = s[0] + x
    if fabs(s[0]) >= fabs(x):
        c[0] += (s[0] - t) + x
    else:
        c[0] += (x - t) + s[0]
    s[0] = t


cdef inline double _bregman(double x) noexcept nogil:
    """g(x) = (1 + x) log1p(x) - x >= 0 for x > -1, to a few ulp: near 0 the
    series sum_{n>=2} (-x)^n / (n (n - 1)) (to n = 15: the next term is below
    2^-60 of the first when |x| < 1/16)."""
    cdef double s = 0.0
    cdef int n
    if fabs(x) < 0.0625:
        for n in range(15, 1, -1):
            s = 1.0 / (n * (n - 1.0)) - x * s
        return x * x * s
    return (1.0 + x) * log1p(x) - x


cdef inline double _log_ratio(double a, double b) noexcept nogil:
    """log(a / b) for a, b > 0 (normal), keeping its digits when a ~ b."""
    cdef double r
    if 0.5 * b <= a and a <= 2.0 * b:
        return log1p((a - b) / b)  # a - b exact (Sterbenz)
    r = a / b
    if r > 0.0 and r < INFINITY and r >= 2.2250738585072014e-308:
        return log(r)
    return log(a) - log(b)


cdef inline double accurate_pair(int measure, const floating* p, const floating* q,
                                 Py_ssize_t k, double eps, double inv_sp,
                                 double inv_sq) noexcept nogil:
    """kl, jeffreys or cross_entropy of one valid pair (rows scaled by
    inv_sp, inv_sq: 1 / the row sums when normalizing, else 1), with eps >=
    the smallest normal. See the module's docstring."""
    cdef Py_ssize_t j
    cdef double a, b, at, bt, s = 0.0, c = 0.0
    for j in range(k):
        a = p[j] * inv_sp
        b = q[j] * inv_sq
        at = a if a > eps else eps
        bt = b if b > eps else eps
        if measure == KL:
            if a == 0.0:
                continue
            if at == a and bt == b and 0.5 * b <= a and a <= 2.0 * b:
                _add(&s, &c, b * _bregman((a - b) / b))
                _add(&s, &c, a - b)
            else:
                _add(&s, &c, a * _log_ratio(at, bt))
        elif measure == JEFFREYS:
            if a != b:
                _add(&s, &c, (a - b) * _log_ratio(at, bt))
        else:  # cross_entropy
            if a != 0.0:
                _add(&s, &c, -a * log(bt))
    return s + c


# ---- arrays: pointers and strides ------------------------------------------

cdef inline char* _data(cnp.ndarray x):
    return <char*>cnp.PyArray_DATA(x)


cdef inline Py_ssize_t _stride(cnp.ndarray x, int axis):
    """Stride of ``x`` along ``axis`` in elements (0 for a length-1 axis)."""
    if cnp.PyArray_DIM(x, axis) <= 1:
        return 0
    return cnp.PyArray_STRIDE(x, axis) // cnp.PyArray_ITEMSIZE(x)


cdef int _type(cnp.ndarray x) except -1:
    cdef int t = cnp.PyArray_TYPE(x)
    if t != cnp.NPY_DOUBLE and t != cnp.NPY_FLOAT:
        raise TypeError("klfast._pairwise: arrays must be float32 or float64")
    return t


# ---- per-row preparation ----------------------------------------------------

cdef struct Stats:
    # the arguments of row_stats, for its pool task
    const char* x
    int t
    Py_ssize_t rs, k
    double eps
    const double* inv_s
    double* a_out
    double* abs_out
    double* l_out
    double* lpos_out


cdef void _stats_rows(const floating* x, const Stats* c, Py_ssize_t i0,
                      Py_ssize_t i1) noexcept nogil:
    """Per row i0 <= i < i1 of x (c.k long, row stride c.rs), with c's
    fields: with y = x * inv_s[i] and
    y~ = max(y, eps), a_out[i] = sum y log y~ (0 where y == 0) and
    abs_out[i] = sum |y log y~|; unless l_out is NULL, row i of l_out (n x k,
    C order) holds log y~ and lpos_out[i] the largest positive one (else 0).
    Logs by the level's vector log. abs_out[i] = -1 when out of memory, NaN
    when a y is not in [0, DBL_MAX] (the row is invalid)."""
    cdef Py_ssize_t i, l, rs = c.rs, k = c.k
    cdef double eps = c.eps
    cdef const double* inv_s = c.inv_s
    cdef double* l_out = c.l_out
    cdef double* buf
    cdef double y, s, sa, t, top
    cdef bint bad
    for i in range(i0, i1):
        if l_out == NULL:
            buf = <double*>malloc(max(k, 1) * sizeof(double))
        else:
            buf = l_out + i * k
        if buf == NULL:
            c.abs_out[i] = -1.0
            continue
        for l in range(k):
            y = x[i * rs + l] * inv_s[i]
            buf[l] = y if y > eps else eps
        _vector_log(_isa, buf, k)
        s = 0.0
        sa = 0.0
        top = 0.0
        bad = False
        for l in range(k):
            y = x[i * rs + l] * inv_s[i]
            t = y * buf[l] if y != 0.0 else 0.0
            s = s + t
            sa = sa + fabs(t)
            if buf[l] > top:
                top = buf[l]
            bad = bad | (not (y >= 0.0 and y <= DBL_MAX))
        c.a_out[i] = s
        c.abs_out[i] = NAN if bad else sa
        if l_out == NULL:
            free(buf)
        else:
            c.lpos_out[i] = top


cdef Py_ssize_t _stats_task(void* ctx, Py_ssize_t i0, Py_ssize_t i1, int tid) noexcept nogil:
    cdef Stats* c = <Stats*>ctx
    if c.t == cnp.NPY_DOUBLE:
        _stats_rows[double](<const double*>c.x, c, i0, i1)
    else:
        _stats_rows[float](<const float*>c.x, c, i0, i1)
    return 0


def row_stats(cnp.ndarray x, double eps, cnp.ndarray inv_s, cnp.ndarray a, cnp.ndarray a_abs,
              object logs, object lpos, int n_threads):
    """Fill a[i] = sum y log y~ and a_abs[i] = sum |y log y~| for the rows of
    the 2-D array x (C-contiguous rows), y = x[i] * inv_s[i]; with ``logs``
    (float64, C order, x's shape) and ``lpos`` (float64, n) also log y~ and
    its largest positive value per row. All float64 vectors contiguous.
    a_abs[i] is NaN for a row with an entry y outside [0, DBL_MAX]."""
    cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0)
    cdef Stats c
    c.x = _data(x)
    c.t = _type(x)
    c.rs = _stride(x, 0)
    c.k = cnp.PyArray_DIM(x, 1)
    c.eps = eps
    c.inv_s = <const double*>_data(inv_s)
    c.a_out = <double*>_data(a)
    c.abs_out = <double*>_data(a_abs)
    c.l_out = <double*>_data(<cnp.ndarray>logs) if logs is not None else NULL
    c.lpos_out = <double*>_data(<cnp.ndarray>lpos) if logs is not None else NULL
    with nogil:
        _pool(_stats_task, &c, 0, n, claim_of(n, n_threads), n_threads)
    if n and (a_abs < 0).any():  # NaN < 0 is False
        raise MemoryError("klfast._pairwise.row_stats: out of memory")


# ---- tiles from the products ------------------------------------------------

cdef struct Side:
    # One side of the pairs (rows of P or of Q) for finish().
    char* x            # the rows as given (float32 or float64), row stride rs
    Py_ssize_t rs
    double* a          # sum y log y~ (kl, jeffreys)
    double* a_abs      # sum |y log y~|
    double* inv_s      # 1 / row sum when normalizing, else 1
    double* w          # the rows' weight sum(y): 1 when normalizing, else the sum
    double* lpos       # largest positive log y~ (jeffreys, and for the other side's bound)
    double* logs       # log y~, row i at logs + i * k (NULL when not kept)


cdef inline double _row_value(int measure, const double* p, const double* q, Py_ssize_t k,
                              double eps) noexcept nogil:
    """One pair of rows as given by the level's row function; NaN when the
    row function hands it to the exact path."""
    cdef int special = 0
    cdef double sums[2]
    cdef double v = _isa.f64[measure](p, q, k, eps, 0, &special, sums)
    return NAN if special else v


cdef struct Row:
    # One row i of P against the pairs of a tile: its numbers, loaded once.
    double a, a_abs, inv, w, lpos
    double floor_err   # the eps floor's share of the bound, per unit of weight
    double err         # floor_err * w
    const double* B    # the row's products with the logs of Q (B2: logs of P with Q)
    const double* B2


cdef inline double _from_products(int measure, const Row* r, const Side* sq, Py_ssize_t j,
                                  double bn, double bn2, double gamma, double* bound,
                                  double* mag) noexcept nogil:
    """Pair (i, j) from its products bn = P_i.L_j and (jeffreys) bn2 =
    L_i.Q_j of the rows as given; *bound bounds its rounding error and *mag
    the sum of its terms' magnitudes."""
    cdef double v, m
    bn = bn * r.inv
    m = fabs(bn) + 2.0 * r.w * sq.lpos[j]
    if measure == CROSS_ENTROPY:
        v = -bn
        bound[0] = gamma * m + r.err
    elif measure == KL:
        v = r.a - bn
        m = r.a_abs + m
        bound[0] = gamma * m + 2.0 * r.err
    else:  # jeffreys
        bn2 = bn2 * sq.inv_s[j]
        v = (r.a + sq.a[j]) - (bn + bn2)
        m = r.a_abs + sq.a_abs[j] + m + fabs(bn2) + 2.0 * sq.w[j] * r.lpos
        bound[0] = gamma * m + 2.0 * (r.err + r.floor_err * sq.w[j])
    mag[0] = m
    return v


cdef inline Py_ssize_t _over_bound(int measure, const Row* r, const Side* sq, Py_ssize_t j0,
                                   Py_ssize_t lo, Py_ssize_t hi, floating* out,
                                   Py_ssize_t o_cs, double scale, double tol,
                                   double gamma) noexcept nogil:
    """Write the pairs jj in [lo, hi) from the products, NaN for those whose
    bound is not below tol times their value; the number of those (no
    branch: the loop vectorizes)."""
    cdef Py_ssize_t jj, n_over = 0
    cdef double v, bound, mag, bn2
    cdef bint over
    for jj in range(lo, hi):
        bn2 = r.B2[jj] if measure == JEFFREYS else 0.0
        v = _from_products(measure, r, sq, j0 + jj, r.B[jj], bn2, gamma, &bound, &mag)
        over = not (bound <= tol * fabs(v))
        n_over += over
        out[jj * o_cs] = <floating>(NAN if over else v * scale)
    return n_over


cdef inline double _dot(const floating* x, const double* y, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t l
    cdef double s = 0.0
    for l in range(k):
        s = s + x[l] * y[l]
    return s


cdef inline void _recompute(int measure, const Row* r, const Side* sp, const Side* sq,
                            Py_ssize_t i, Py_ssize_t j0, Py_ssize_t lo, Py_ssize_t hi,
                            Py_ssize_t k, floating* out, Py_ssize_t o_cs, double eps,
                            double scale, double tol, double gamma) noexcept nogil:
    """Recompute the pairs in [lo, hi) that _over_bound left NaN. Their
    products (B may be out itself, now overwritten) are taken again, one
    pair at a time: a product in any order has the same bound, so a pair
    whose new bound is below tol times its value is kept; else the level's
    row function when its own bound allows (rows as given, float64), else
    accurate_pair."""
    cdef Py_ssize_t jj, j
    cdef double v, bound, mag, bn, bn2 = 0.0
    cdef const floating* p_row = <const floating*>sp.x + i * sp.rs
    cdef const floating* q_row
    # the row functions' error, relative to the terms' magnitudes: a few ulp
    # per term (log_ratio, the product, the add) and one per add along a
    # position (k / 8 of them) and the fold, doubled for safety
    cdef double g_row = 2.0 * (k / 8.0 + 6.0) * 1.1102230246251565e-16
    for jj in range(lo, hi):
        if out[jj * o_cs] == out[jj * o_cs]:
            continue
        j = j0 + jj
        q_row = <const floating*>sq.x + j * sq.rs
        bn = _dot(p_row, sq.logs + j * k, k)
        if measure == JEFFREYS:
            bn2 = _dot(q_row, sp.logs + i * k, k)
        v = _from_products(measure, r, sq, j, bn, bn2, gamma, &bound, &mag)
        if not (bound <= tol * fabs(v)):
            v = NAN
            if floating is double and r.inv == 1.0 and sq.inv_s[j] == 1.0:
                # mag bounds the sum of the terms' magnitudes
                v = _row_value(measure, p_row, <const double*>q_row, k, eps)
                if not (g_row * mag <= tol * fabs(v)):
                    v = NAN
            if v != v:
                v = accurate_pair(measure, p_row, q_row, k, eps, r.inv, sq.inv_s[j])
        out[jj * o_cs] = <floating>(v * scale)


cdef inline Py_ssize_t _finish_row(int measure, const double* B, const double* B2,
                                   const Side* sp, const Side* sq, Py_ssize_t i,
                                   Py_ssize_t j0, Py_ssize_t nj, Py_ssize_t k,
                                   floating* out, Py_ssize_t o_cs, double eps, double scale,
                                   double tol, double gamma, double floor_err,
                                   int zero_diagonal, int upper_only) noexcept nogil:
    """Pairs (i, j0...j0 + nj) of one row of a tile; the number over their
    products' bound (recomputed). upper_only: pairs j < i are not written;
    zero_diagonal: pair (i, i) is 0."""
    cdef Row r
    cdef Py_ssize_t lo = 0, d = nj, n_over
    r.a = sp.a[i]
    r.a_abs = sp.a_abs[i]
    r.inv = sp.inv_s[i]
    r.w = sp.w[i]
    r.lpos = sp.lpos[i]
    r.floor_err = floor_err
    r.err = floor_err * r.w
    r.B = B
    r.B2 = B2
    if upper_only and i > j0:
        lo = min(nj, i - j0)
    if zero_diagonal and j0 <= i < j0 + nj:
        d = i - j0
    # [lo, d) and (d, nj): the diagonal is not a pair to check
    n_over = _over_bound(measure, &r, sq, j0, lo, max(lo, d), out, o_cs, scale, tol, gamma)
    n_over += _over_bound(measure, &r, sq, j0, max(lo, d + 1), nj, out, o_cs, scale, tol,
                          gamma)
    if d < nj:
        out[d * o_cs] = 0.0
    if n_over:
        _recompute(measure, &r, sp, sq, i, j0, lo, nj, k, out, o_cs, eps, scale, tol, gamma)
    return n_over


cdef struct Finish:
    # the arguments of finish, for its pool task
    int measure, t, zero_diagonal, upper_only
    const double* B
    const double* B2
    Py_ssize_t b_rs, b2_rs, i0, j0, nj, k, o_rs, o_cs
    Side* sp
    Side* sq
    char* out
    double eps, scale, tol, gamma, floor_err


cdef Py_ssize_t _finish_rows(const Finish* c, floating* out, Py_ssize_t ii0,
                             Py_ssize_t ii1) noexcept nogil:
    """Rows ii0 <= ii < ii1 of a tile into out (the tile, of its dtype); the
    number of pairs recomputed."""
    cdef Py_ssize_t ii, n_flagged = 0
    for ii in range(ii0, ii1):
        n_flagged += _finish_row(c.measure, c.B + ii * c.b_rs,
                                 c.B2 + ii * c.b2_rs if c.B2 != NULL else NULL, c.sp, c.sq,
                                 c.i0 + ii, c.j0, c.nj, c.k, out + ii * c.o_rs, c.o_cs, c.eps,
                                 c.scale, c.tol, c.gamma, c.floor_err, c.zero_diagonal,
                                 c.upper_only)
    return n_flagged


cdef Py_ssize_t _finish_task(void* ctx, Py_ssize_t ii0, Py_ssize_t ii1, int tid) noexcept nogil:
    cdef Finish* c = <Finish*>ctx
    if c.t == cnp.NPY_DOUBLE:
        return _finish_rows(c, <double*>c.out, ii0, ii1)
    return _finish_rows(c, <float*>c.out, ii0, ii1)


cdef void _side(Side* s, cnp.ndarray x, tuple stats):
    s.x = _data(x)
    s.rs = _stride(x, 0)
    s.a = <double*>_data(<cnp.ndarray>stats[0])
    s.a_abs = <double*>_data(<cnp.ndarray>stats[1])
    s.inv_s = <double*>_data(<cnp.ndarray>stats[2])
    s.w = <double*>_data(<cnp.ndarray>stats[3])
    s.lpos = <double*>_data(<cnp.ndarray>stats[4])
    s.logs = <double*>_data(<cnp.ndarray>stats[5]) if stats[5] is not None else NULL


def finish(int measure, cnp.ndarray B, object B2, cnp.ndarray P, tuple p_stats,
           cnp.ndarray Q, tuple q_stats, Py_ssize_t i0, Py_ssize_t j0, cnp.ndarray out,
           double eps, double scale, double tol, double gamma, double floor_err,
           bint zero_diagonal, bint upper_only, int n_threads):
    """Fill ``out`` (ni x nj, any strides, float32 or float64: the dtype of P
    and Q) with the pairs (i0 + ii, j0 + jj) from the products ``B`` (rows
    of P times the logs of Q, float64, contiguous rows; it may be ``out``
    itself, each pair being read before it is written) and, for jeffreys, ``B2``
    (logs of P times rows of Q). ``*_stats`` are (a, a_abs, inv_s, w, lpos)
    per row, and log y~ (n x k, C order) or None (Q's: always). ``zero_diagonal``: pairs i == j are 0; ``upper_only``: pairs
    j < i are not written. Returns the number of pairs recomputed exactly."""
    cdef Side sp, sq
    cdef Finish c
    cdef Py_ssize_t ni = cnp.PyArray_DIM(out, 0), n
    c.t = _type(out)
    if _type(P) != c.t or _type(Q) != c.t:
        raise TypeError("klfast._pairwise.finish: P, Q and out must share one dtype")
    c.B2 = <const double*>_data(<cnp.ndarray>B2) if B2 is not None else NULL
    c.b2_rs = cnp.PyArray_DIM(<cnp.ndarray>B2, 1) if B2 is not None else 0
    _side(&sp, P, p_stats)
    _side(&sq, Q, q_stats)
    c.measure, c.sp, c.sq, c.i0, c.j0 = measure, &sp, &sq, i0, j0
    c.B, c.b_rs = <const double*>_data(B), _stride(B, 0)
    c.nj, c.k = cnp.PyArray_DIM(out, 1), cnp.PyArray_DIM(P, 1)
    c.out, c.o_rs, c.o_cs = _data(out), _stride(out, 0), _stride(out, 1)
    c.eps, c.scale, c.tol, c.gamma, c.floor_err = eps, scale, tol, gamma, floor_err
    c.zero_diagonal, c.upper_only = zero_diagonal, upper_only
    with nogil:
        n = _pool(_finish_task, &c, 0, ni, claim_of(ni, n_threads), n_threads)
    return n


# ---- tiles by the row functions ---------------------------------------------

# Pairs are taken in blocks of ROW_BLOCK rows of P against COL_BLOCK rows of
# Q: about 100 kB of rows at k = 300, so a block's Q rows stay in L2 while
# the thread runs its P rows against them.
cdef enum:
    ROW_BLOCK = 8
    COL_BLOCK = 32


cdef struct Direct:
    # the arguments of direct, for its pool task
    int measure, t, zero_diagonal, upper_only
    bint normalize
    const char* P
    const char* Q
    char* out
    Py_ssize_t p_rs, q_rs, i0, j0, ni, nj, k, o_rs, o_cs
    double eps, scale


cdef void _direct_blocks(const Direct* c, const floating* P, const floating* Q, floating* out,
                         Py_ssize_t b0, Py_ssize_t b1) noexcept nogil:
    """Blocks b0 <= b < b1 of ROW_BLOCK rows of a tile."""
    cdef Py_ssize_t b, ii, jj, jb, jc, i, j, i_end, j_end
    cdef Py_ssize_t p_rs = c.p_rs, q_rs = c.q_rs, o_rs = c.o_rs, o_cs = c.o_cs, k = c.k
    cdef Py_ssize_t i0 = c.i0, j0 = c.j0, ni = c.ni, nj = c.nj
    cdef int measure = c.measure, zero_diagonal = c.zero_diagonal, upper_only = c.upper_only
    cdef bint normalize = c.normalize
    cdef double eps = c.eps, scale = c.scale
    cdef double v
    if floating is float:
        eps = <float>eps
    for b in range(b0, b1):
        i_end = min(ni, (b + 1) * ROW_BLOCK)
        for jc in range((nj + COL_BLOCK - 1) // COL_BLOCK):
            jb = jc * COL_BLOCK
            j_end = min(nj, jb + COL_BLOCK)
            for ii in range(b * ROW_BLOCK, i_end):
                i = i0 + ii
                for jj in range(jb, j_end):
                    j = j0 + jj
                    if (upper_only and j < i) or (zero_diagonal and j == i):
                        if j == i:
                            out[ii * o_rs + jj * o_cs] = 0.0
                        continue
                    # rows validated: no sum check (tol = INFINITY)
                    v = _fast_or_exact(measure, _isa, P + i * p_rs, Q + j * q_rs, k, eps,
                                       normalize, INFINITY, scale)
                    out[ii * o_rs + jj * o_cs] = <floating>v


cdef Py_ssize_t _direct_task(void* ctx, Py_ssize_t b0, Py_ssize_t b1, int tid) noexcept nogil:
    cdef Direct* c = <Direct*>ctx
    if c.t == cnp.NPY_DOUBLE:
        _direct_blocks(c, <const double*>c.P, <const double*>c.Q, <double*>c.out, b0, b1)
    else:
        _direct_blocks(c, <const float*>c.P, <const float*>c.Q, <float*>c.out, b0, b1)
    return 0


def direct(int measure, cnp.ndarray P, cnp.ndarray Q, Py_ssize_t i0, Py_ssize_t j0,
           cnp.ndarray out, double eps, bint normalize, double scale, bint zero_diagonal,
           bint upper_only, int n_threads):
    """Fill ``out`` (ni x nj, any strides) with the pairs (i0 + ii, j0 + jj)
    of valid rows of P and Q (C-contiguous rows, the dtype of out), each by
    the level's row function. ``zero_diagonal`` and ``upper_only`` as in
    ``finish``."""
    cdef Direct c
    c.t = _type(out)
    if _type(P) != c.t or _type(Q) != c.t:
        raise TypeError("klfast._pairwise.direct: P, Q and out must share one dtype")
    c.measure, c.i0, c.j0, c.k = measure, i0, j0, cnp.PyArray_DIM(P, 1)
    c.P, c.p_rs, c.Q, c.q_rs = _data(P), _stride(P, 0), _data(Q), _stride(Q, 0)
    c.out, c.o_rs, c.o_cs = _data(out), _stride(out, 0), _stride(out, 1)
    c.ni, c.nj = cnp.PyArray_DIM(out, 0), cnp.PyArray_DIM(out, 1)
    c.eps, c.normalize, c.scale = eps, normalize, scale
    c.zero_diagonal, c.upper_only = zero_diagonal, upper_only
    cdef Py_ssize_t n_blocks = (c.ni + ROW_BLOCK - 1) // ROW_BLOCK
    with nogil:  # a block at a time: blocks near the diagonal have fewer pairs
        _pool(_direct_task, &c, 0, n_blocks, 1, n_threads)


def accurate(int measure, cnp.ndarray p, cnp.ndarray q, double eps, double inv_sp,
             double inv_sq):
    """``accurate_pair`` of two contiguous 1-D rows of one dtype (tests)."""
    cdef Py_ssize_t k = cnp.PyArray_DIM(p, 0)
    if _type(p) == cnp.NPY_DOUBLE:
        return accurate_pair[double](measure, <const double*>_data(p),
                                     <const double*>_data(q), k, eps, inv_sp, inv_sq)
    return accurate_pair[float](measure, <const float*>_data(p), <const float*>_data(q), k,
                                eps, inv_sp, inv_sq)


# ---- top-k ------------------------------------------------------------------
# Each row of P keeps its k best pairs so far as a max-heap ordered by
# (value, index): the root is the worst kept. Q's columns arrive in
# increasing index, so a new pair enters only when strictly smaller than the
# root (an equal value has a larger index).

cdef inline bint _worse(double va, int64_t ia, double vb, int64_t ib) noexcept nogil:
    """(va, ia) comes after (vb, ib) in the order (value, index); NaN last."""
    if va != va:
        return vb == vb or ia > ib
    if vb != vb:
        return False
    return va > vb or (va == vb and ia > ib)


cdef inline void _sift_down(double* hv, int64_t* hi, Py_ssize_t n, Py_ssize_t r) noexcept nogil:
    cdef Py_ssize_t c
    cdef double tv
    cdef int64_t ti
    while True:
        c = 2 * r + 1
        if c >= n:
            return
        if c + 1 < n and _worse(hv[c + 1], hi[c + 1], hv[c], hi[c]):
            c += 1
        if not _worse(hv[c], hi[c], hv[r], hi[r]):
            return
        tv = hv[r]; hv[r] = hv[c]; hv[c] = tv
        ti = hi[r]; hi[r] = hi[c]; hi[c] = ti
        r = c


cdef inline void _sift_up(double* hv, int64_t* hi, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t r
    cdef double tv
    cdef int64_t ti
    while c > 0:
        r = (c - 1) // 2
        if not _worse(hv[c], hi[c], hv[r], hi[r]):
            return
        tv = hv[r]; hv[r] = hv[c]; hv[c] = tv
        ti = hi[r]; hi[r] = hi[c]; hi[c] = ti
        c = r


cdef struct Heaps:
    # the arguments of topk_push and topk_sort, for their pool tasks
    const char* vals   # topk_push: the tile, float32 or float64 (t), C order
    int t
    Py_ssize_t nj, j0, kk
    double* hv
    int64_t* hi
    int64_t* hn


cdef void _push_rows(const Heaps* c, const floating* vals, Py_ssize_t ii0,
                     Py_ssize_t ii1) noexcept nogil:
    cdef Py_ssize_t ii, jj, n, nj = c.nj, j0 = c.j0, kk = c.kk
    cdef double* hv = c.hv
    cdef int64_t* hi = c.hi
    cdef int64_t* hn = c.hn
    cdef double v
    for ii in range(ii0, ii1):
        for jj in range(nj):
            v = vals[ii * nj + jj]
            n = hn[ii]
            if n < kk:
                hv[ii * kk + n] = v
                hi[ii * kk + n] = j0 + jj
                hn[ii] = n + 1
                _sift_up(hv + ii * kk, hi + ii * kk, n)
            elif _worse(hv[ii * kk], hi[ii * kk], v, j0 + jj):
                hv[ii * kk] = v
                hi[ii * kk] = j0 + jj
                _sift_down(hv + ii * kk, hi + ii * kk, kk, 0)


cdef Py_ssize_t _push_task(void* ctx, Py_ssize_t ii0, Py_ssize_t ii1, int tid) noexcept nogil:
    cdef Heaps* c = <Heaps*>ctx
    if c.t == cnp.NPY_DOUBLE:
        _push_rows(c, <const double*>c.vals, ii0, ii1)
    else:
        _push_rows(c, <const float*>c.vals, ii0, ii1)
    return 0


cdef Py_ssize_t _sort_task(void* ctx, Py_ssize_t i0, Py_ssize_t i1, int tid) noexcept nogil:
    """Heapsort rows i0 <= i < i1: move the worst to the end, shrink, repeat."""
    cdef Heaps* c = <Heaps*>ctx
    cdef Py_ssize_t i, last, kk = c.kk
    cdef double* hv = c.hv
    cdef int64_t* hi = c.hi
    cdef double tv
    cdef int64_t ti
    for i in range(i0, i1):
        for last in range(kk - 1, 0, -1):
            tv = hv[i * kk]; hv[i * kk] = hv[i * kk + last]; hv[i * kk + last] = tv
            ti = hi[i * kk]; hi[i * kk] = hi[i * kk + last]; hi[i * kk + last] = ti
            _sift_down(hv + i * kk, hi + i * kk, last, 0)
    return 0


def topk_push(cnp.ndarray vals, Py_ssize_t j0, cnp.ndarray heap_values,
              cnp.ndarray heap_indices, cnp.ndarray heap_sizes, int n_threads):
    """Offer the pairs of a tile (``vals``: ni x nj, C order, float32/float64,
    columns j0...) to the heaps of its ni rows (``heap_values`` float64 and
    ``heap_indices`` int64, ni x k, C order; ``heap_sizes`` int64, ni)."""
    cdef Py_ssize_t ni = cnp.PyArray_DIM(vals, 0)
    cdef Heaps c
    c.vals, c.t, c.nj, c.j0 = _data(vals), _type(vals), cnp.PyArray_DIM(vals, 1), j0
    c.kk = cnp.PyArray_DIM(heap_values, 1)
    c.hv = <double*>_data(heap_values)
    c.hi = <int64_t*>_data(heap_indices)
    c.hn = <int64_t*>_data(heap_sizes)
    if c.kk == 0:
        return
    with nogil:
        _pool(_push_task, &c, 0, ni, claim_of(ni, n_threads), n_threads)


def topk_sort(cnp.ndarray heap_values, cnp.ndarray heap_indices, int n_threads):
    """Sort each row's full heap in place, ascending by (value, index)."""
    cdef Py_ssize_t n = cnp.PyArray_DIM(heap_values, 0)
    cdef Heaps c
    c.kk = cnp.PyArray_DIM(heap_values, 1)
    c.hv = <double*>_data(heap_values)
    c.hi = <int64_t*>_data(heap_indices)
    with nogil:
        _pool(_sort_task, &c, 0, n, claim_of(n, n_threads), n_threads)
