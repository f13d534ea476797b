# cython: language_level=3
"""The exact scalar paths and the C contract, shared by klfast._kernels,
klfast._pairwise and klfast._diagnostics (cimported: the inline functions
compile into each).

The exact paths compute a row one term at a time in double with libm's log
and exp: the fallback for the rows the vector kernels hand back (see
engine/klfast.h), and the reference the tests hold the vector kernels to.
"""
from libc.float cimport DBL_MAX
from libc.math cimport exp, fabs, frexp, ldexp, log, nextafterf, INFINITY, NAN
from libc.stdint cimport int64_t, uint64_t
from cpython.pycapsule cimport PyCapsule_GetPointer

ctypedef fused floating:
    float
    double

cdef extern from "engine/klfast.h" nogil:
    void klfast_stream_fence()
    enum:
        KLFAST_KL
        KLFAST_JEFFREYS
        KLFAST_ENTROPY
        KLFAST_CROSS_ENTROPY
        KLFAST_JS
        KLFAST_N_MEASURES
        KLFAST_STRIPS_MAX
        KLFAST_LOGITS_SHORT_MAX
        KLFAST_PROBS
        KLFAST_LOG_PROBS
        KLFAST_LOGITS
    ctypedef struct klfast_forms_params:
        int measure
        int form[2]
        int normalize
        int loss
        double tol
        double inv_t[2]
        double eps
        double log_eps
        double log_prob_max
        double grad_scale
        float inv_t_f32[2]
        float eps_f32
        float log_eps_f32
        float log_prob_max_f32
        float grad_scale_f32
    ctypedef double (*klfast_row_f64)(const double*, const double*, Py_ssize_t, double, int, int*,
                                      double*)
    ctypedef double (*klfast_row_f32)(const float*, const float*, Py_ssize_t, double, int, int*,
                                      double*)
    ctypedef double (*klfast_row_f16)(const unsigned short*, const unsigned short*, Py_ssize_t,
                                      double, int, int*, double*)
    ctypedef uint64_t (*klfast_lanes_f64)(const double*, Py_ssize_t, Py_ssize_t, const double*,
                                          Py_ssize_t, Py_ssize_t, int, Py_ssize_t, double, int,
                                          double, double, double*, Py_ssize_t, int, int*)
    ctypedef uint64_t (*klfast_lanes_f32)(const float*, Py_ssize_t, Py_ssize_t, const float*,
                                          Py_ssize_t, Py_ssize_t, int, Py_ssize_t, double, int,
                                          double, double, float*, Py_ssize_t, int, int*)
    ctypedef int (*klfast_strips_f64)(const double*, Py_ssize_t, Py_ssize_t, const double*,
                                      Py_ssize_t, Py_ssize_t, int, Py_ssize_t, double, int,
                                      double, double, double*, Py_ssize_t, int, int*,
                                      uint64_t*, void*)
    ctypedef int (*klfast_strips_f32)(const float*, Py_ssize_t, Py_ssize_t, const float*,
                                      Py_ssize_t, Py_ssize_t, int, Py_ssize_t, double, int,
                                      double, double, float*, Py_ssize_t, int, int*,
                                      uint64_t*, void*)
    ctypedef double (*klfast_forms_row_f64)(const double*, const double*, double*, Py_ssize_t,
                                            const klfast_forms_params*, int*)
    ctypedef double (*klfast_forms_row_f32)(const float*, const float*, float*, Py_ssize_t,
                                            const klfast_forms_params*, int*)
    ctypedef double (*klfast_forms_row_f16)(const unsigned short*, const unsigned short*, float*,
                                            Py_ssize_t, const klfast_forms_params*, int*)
    ctypedef double (*klfast_exact_loss_f64)(const klfast_forms_params*, const double*,
                                             const double*, double*, Py_ssize_t) noexcept nogil
    ctypedef double (*klfast_exact_loss_f32)(const klfast_forms_params*, const float*,
                                             const float*, float*, Py_ssize_t) noexcept nogil
    ctypedef Py_ssize_t (*klfast_logits_tiles_f64)(const double*, Py_ssize_t, const double*,
                                                   Py_ssize_t, double*, Py_ssize_t, Py_ssize_t,
                                                   Py_ssize_t, const klfast_forms_params*,
                                                   const int64_t*, double*, double,
                                                   klfast_exact_loss_f64)
    ctypedef Py_ssize_t (*klfast_logits_tiles_f32)(const float*, Py_ssize_t, const float*,
                                                   Py_ssize_t, float*, Py_ssize_t, Py_ssize_t,
                                                   Py_ssize_t, const klfast_forms_params*,
                                                   const int64_t*, double*, double,
                                                   klfast_exact_loss_f32)
    ctypedef struct klfast_isa:
        const char* name
        klfast_row_f64* f64
        klfast_row_f32* f32
        klfast_forms_row_f64 forms_f64
        klfast_forms_row_f32 forms_f32
        void (*math_f64)(int, const double*, double*, Py_ssize_t)
        void (*math_f32)(int, const float*, float*, Py_ssize_t)
        klfast_lanes_f64* lanes_f64
        klfast_lanes_f32* lanes_f32
        int lanes_f64_width
        int lanes_f32_width
        void (*widen16)(int, const unsigned short*, Py_ssize_t, float*, Py_ssize_t) noexcept nogil
        klfast_row_f16* f16
        klfast_forms_row_f16 forms_f16
        klfast_strips_f64* strips_f64
        klfast_strips_f32* strips_f32
        size_t strips_scratch
        klfast_lanes_f64* block_f64
        klfast_lanes_f32* block_f32
        klfast_logits_tiles_f64 logits_tiles_f64
        klfast_logits_tiles_f32 logits_tiles_f32
    const klfast_isa** klfast_isa_levels
    const int klfast_n_levels
    const char* klfast_missing_levels
    int klfast_cpu_has_level(int level)

cdef extern from "engine/exact.h" nogil:
    double klf_exact_term(int measure, double a, double b, double eps, double f)


# klfast._kernels' thread pool (engine/pool.h; one per process), which the
# other modules reach through a capsule: pool(fn, ctx, begin, end, claim, n)
# runs fn(ctx, i0, i1, tid) over [begin, end) in claims of `claim` items on
# up to n threads and returns the sum of what fn returned.
ctypedef Py_ssize_t (*pool_task)(void* ctx, Py_ssize_t i0, Py_ssize_t i1,
                                 int tid) noexcept nogil
ctypedef Py_ssize_t (*pool_run)(pool_task fn, void* ctx, Py_ssize_t begin, Py_ssize_t end,
                                Py_ssize_t claim, int n_threads) noexcept nogil


cdef inline pool_run the_pool() except NULL:
    from klfast._kernels import pool_capsule
    return <pool_run>PyCapsule_GetPointer(pool_capsule(), "klfast.pool")


cdef inline Py_ssize_t claim_of(Py_ssize_t n, int n_threads) noexcept nogil:
    """Items per claim for a loop of n about equal items: 8 claims a thread,
    so that a free thread can take over from a descheduled one."""
    return max(1, n // (8 * max(n_threads, 1)))


# ---- the divergences ------------------------------------------------------

cdef inline bint _invalid(double x) noexcept nogil:
    # True for negative, NaN and +-inf (NaN fails every comparison).
    return not (x >= 0.0 and x <= DBL_MAX)


cdef inline double _row_sum(const floating* x, Py_ssize_t s, Py_ssize_t k,
                            bint normalize) noexcept nogil:
    """sum(x) when normalizing (NaN for a zero or infinite sum), else 1. Rows
    are divided by it: 1 / sum overflows for sums below 5.6e-309. Element j
    is x[j * s]."""
    cdef Py_ssize_t j
    cdef double t = 0.0
    if not normalize:
        return 1.0
    for j in range(k):
        t += x[j * s]
    if t > 0.0 and t <= DBL_MAX:
        return t
    return NAN


# Rows whose sum overflows are summed again with every term scaled by 2^-64
# (exact but for terms below 2^-958, far under the sum's last digit): the
# scaled terms and their sum stay below 2^971 * k, so the sum is right even
# when terms near 1e308 of both signs cancel, and only the final scaling
# back by 2^64 can overflow, when the result itself is past DBL_MAX.
cdef inline double _row_sum_scaled(int measure, const floating* p, Py_ssize_t ps,
                                   const floating* q, Py_ssize_t qs, Py_ssize_t k, double eps,
                                   double sp, double sq, double f) noexcept nogil:
    """The sum of a valid row's terms, each times f, left to right."""
    cdef Py_ssize_t j
    cdef double s = 0.0
    for j in range(k):
        s += klf_exact_term(measure, p[j * ps] / sp, q[j * qs] / sq, eps, f)
    return s


cdef inline double exact_row_strided(int measure, const floating* p, Py_ssize_t ps,
                                     const floating* q, Py_ssize_t qs, Py_ssize_t k, double eps,
                                     bint normalize, double tol, double scale) noexcept nogil:
    """exact_row for rows whose elements are ps (qs) elements apart (a
    distribution in a column)."""
    cdef Py_ssize_t j
    cdef double a, b, t, s = 0.0, total_p = 0.0, total_q = 0.0
    cdef double sp = _row_sum(p, ps, k, normalize), sq = _row_sum(q, qs, k, normalize)
    cdef bint bad = sp != sp or sq != sq, inf_term = False
    for j in range(k):
        a = p[j * ps]
        b = q[j * qs]
        bad |= _invalid(a) | _invalid(b)
        total_p += a
        total_q += b
        t = klf_exact_term(measure, a / sp, b / sq, eps, 1.0)
        inf_term |= t > DBL_MAX
        s += t
    if bad or not (normalize or (fabs(total_p - 1.0) <= tol and fabs(total_q - 1.0) <= tol)):
        return NAN
    if inf_term or not (s >= -DBL_MAX and s <= DBL_MAX):  # a term or the sum overflowed
        # summed again with scaled terms, times scale before it is scaled
        # back: with a base far from e (scale < 1) the value may be finite
        # where its value in nats is not
        s = _row_sum_scaled(measure, p, ps, q, qs, k, eps, sp, sq, 5.421010862427522e-20)  # 2^-64
        if not (s <= DBL_MAX):  # an infinite term (+inf: finite terms cannot cancel it)
            return INFINITY * scale
        return (s * scale) * 18446744073709551616.0  # 2^64
    if measure == KLFAST_JS and s < 0.0:  # rounding; JS >= 0
        return 0.0
    return s * scale


cdef inline double exact_row(int measure, const floating* p, const floating* q, Py_ssize_t k,
                             double eps, bint normalize, double tol, double scale) noexcept nogil:
    """One row of a measure, exactly, times scale. Entropy reads only p (the
    caller passes q = p). NaN for an invalid row: a negative, NaN or infinite
    entry; with normalize a row sum of 0 or inf; without it a row of p or q
    whose sum is not within tol of 1. A row whose running sum overflows
    (finite terms near 1e308, possibly of both signs) is summed again with
    scaled terms: +-inf only when the result is past DBL_MAX, or a term is
    +inf (eps = 0 and a zero where the measure's log needs a positive)."""
    return exact_row_strided(measure, p, 1, q, 1, k, eps, normalize, tol, scale)



cdef inline double _fast_or_exact(int measure, const klfast_isa* isa, const floating* p,
                                 const floating* q, Py_ssize_t k, double eps,
                                 bint normalize, double tol, double scale) noexcept nogil:
    """One row by the level's row function, or by exact_row when the row
    function hands it over; times scale. NaN when a row of p or q as given
    does not sum to 1 within tol (tol = INFINITY: rows already validated)."""
    cdef int special = 0
    cdef double v
    cdef double sums[2]
    if floating is double:
        v = isa.f64[measure](p, q, k, eps, normalize, &special, sums)
    else:
        v = isa.f32[measure](p, q, k, eps, normalize, &special, sums)
    if special:
        return exact_row(measure, p, q, k, eps, normalize, tol, scale)
    return checked_sums(v, sums, tol, scale)


cdef inline double checked_sums(double v, const double* sums, double tol,
                                double scale) noexcept nogil:
    """v * scale from a row function that also gave the sums of the row of p
    and of q as given; NaN when either is not within tol of 1."""
    if not (fabs(sums[0] - 1.0) <= tol and fabs(sums[1] - 1.0) <= tol):
        return NAN
    return v * scale

# ---- the losses from logits ---------------------------------------------------

cdef inline double _gap_times(double a, double x, double m, double inv_t) noexcept nogil:
    """a * (m - x) * inv_t for a > 0, m >= x and inv_t > 0, finite but x,
    without an intermediate overflow: +inf only when the product is past the
    range. (m - x may overflow for logits near +-1e308; halving each first is
    exact.)"""
    cdef double d = m - x, ma, md, mi
    cdef int extra = 0, ea, ed, ei
    if x == -INFINITY:  # a logit of -inf: q = 0
        return INFINITY
    if not d <= DBL_MAX:
        d = 0.5 * m - 0.5 * x
        extra = 1
    ma = frexp(a, &ea)
    md = frexp(d, &ed)
    mi = frexp(inv_t, &ei)
    return ldexp(ma * md * mi, ea + ed + ei + extra)


cdef inline double exact_loss_row(const klfast_forms_params* prm, const floating* t,
                                  const floating* z, floating* g, Py_ssize_t k) noexcept nogil:
    """The loss prm.measure (kl or cross_entropy) of the target row t in the
    form prm.form[0] against the logits z, and its gradient into g (unless
    NULL), in double with libm: engine/loss_rows.h's formulas. NaN for an
    invalid row."""
    cdef Py_ssize_t j
    cdef double x, a, e, lq, lp, lpe, q, neg_a_lq, total = 0.0, p_sum = 0.0
    cdef double m_z = -INFINITY, s_z = 0.0, m_t = -INFINITY, s_t = 0.0
    cdef double log_s_z, log_s_t = 0.0, r = -INFINITY, f = 0.0
    cdef double inv_t = prm.inv_t[1], inv_t_t = prm.inv_t[0], eps = prm.eps
    cdef int target_form = prm.form[0]
    cdef bint bad = False, kl = prm.measure == KLFAST_KL
    # float64 gradients keep exp((z_j - running max) / T) from pass 1 in g and
    # rescale it in pass 2, saving one exp per element; float32 gradients
    # recompute it, as a float32 intermediate would lose accuracy when q ~ p.
    cdef bint keep = floating is double and g != NULL

    # Pass 1: online log-sum-exp of z / T (and t / T); target checks and sum.
    # A -inf logit contributes exp(-inf) = 0.
    for j in range(k):
        x = z[j]
        bad |= x != x or x == INFINITY
        if x > m_z:
            s_z = s_z * exp((m_z - x) * inv_t) + 1.0
            m_z = x
            e = 1.0
        elif x == -INFINITY:
            e = 0.0
        else:
            e = exp((x - m_z) * inv_t)
            s_z += e
        if keep:
            g[j] = <floating>e
        a = t[j]
        if target_form == KLFAST_LOGITS:
            bad |= a != a or a == INFINITY
            if a > m_t:
                s_t = s_t * exp((m_t - a) * inv_t_t) + 1.0
                m_t = a
            elif a != -INFINITY:
                s_t += exp((a - m_t) * inv_t_t)
        elif target_form == KLFAST_LOG_PROBS:
            bad |= not (a <= prm.log_prob_max)
            p_sum += exp(a)
        else:
            bad |= _invalid(a)
            p_sum += a
    if target_form == KLFAST_LOGITS:
        p_sum = 1.0
        bad |= not (m_t > -INFINITY)
        log_s_t = log(s_t)
    else:
        bad |= not (p_sum <= DBL_MAX)
    bad |= not (m_z > -INFINITY)
    if bad:
        return NAN
    log_s_z = log(s_z)

    # Pass 2: loss terms and gradient. With keep, the running maximum r of
    # pass 1 is retraced; q_j = g_j * exp((r - m) / T) / s changes factor only
    # when r grows.
    for j in range(k):
        x = z[j]
        lq = (x - m_z) * inv_t - log_s_z
        if target_form != KLFAST_PROBS:
            lp = t[j]
            if target_form == KLFAST_LOGITS:
                lp = (lp - m_t) * inv_t_t - log_s_t
            a = exp(lp)
            lpe = lp if a > eps else prm.log_eps
        else:
            a = t[j]
            lpe = 0.0
            if kl and a > 0.0:
                lpe = log(a if a > eps else eps)
        if a > 0.0:
            if not lq >= -DBL_MAX:  # (x - m_z) / T overflowed (or x = -inf); a * it may not
                neg_a_lq = a * log_s_z + _gap_times(a, x, m_z, inv_t)
                total += (a * lpe + neg_a_lq) if kl else neg_a_lq
            elif kl:
                total += a * (lpe - lq)
            else:
                total -= a * lq
        if keep:
            if x > r:
                r = x
                f = exp((r - m_z) * inv_t - log_s_z)
            q = g[j] * f
            g[j] = <floating>((p_sum * q - a) * prm.grad_scale)
        elif g != NULL:
            g[j] = <floating>((p_sum * exp(lq) - a) * prm.grad_scale)
    return total


cdef inline float _f32_at_most(double x) noexcept nogil:
    """The largest float32 <= x (x >= 0): p > it exactly when p > x, for
    every float32 p."""
    cdef float f = <float>x
    if <double>f > x:
        f = nextafterf(f, 0.0)
    return f


cdef inline klfast_forms_params forms_params(int measure, int form_p, int form_q,
                                             double inv_t_p, double inv_t_q, bint normalize,
                                             bint loss, double tol, double eps,
                                             double log_prob_max,
                                             double grad_scale) noexcept nogil:
    """The parameters of one call of the forms kernel, with their float32 copies."""
    cdef klfast_forms_params prm
    prm.measure = measure
    prm.form[0] = form_p
    prm.form[1] = form_q
    prm.normalize = normalize
    prm.loss = loss
    prm.tol = tol
    prm.inv_t[0] = inv_t_p
    prm.inv_t[1] = inv_t_q
    prm.eps = eps
    prm.log_eps = log(eps) if eps > 0.0 else -INFINITY
    prm.log_prob_max = log_prob_max
    prm.grad_scale = grad_scale
    prm.inv_t_f32[0] = <float>inv_t_p
    prm.inv_t_f32[1] = <float>inv_t_q
    prm.eps_f32 = _f32_at_most(eps)
    prm.log_eps_f32 = <float>prm.log_eps
    prm.log_prob_max_f32 = <float>log_prob_max
    prm.grad_scale_f32 = <float>grad_scale
    return prm
