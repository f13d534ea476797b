# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Row kernels of the losses from logits: KL and cross-entropy, with gradient.

For one row of logits z (length k), temperature T and target row t:

    log q_j = z_j / T - logsumexp(z / T)                 (log-softmax, never floored)
    p_j     = t_j                                        target_is_logits False
    p_j     = exp(t_j / T - logsumexp(t / T))            target_is_logits True
    kl      = sum p_j * (log p~_j - log q_j)             p~ = max(p, eps)
    ce      = -sum p_j * log q_j
    grad_j  = (S * q_j - p_j) / T * grad_scale           S = sum p (1 when target_is_logits)

Terms with p_j == 0 are exactly 0 (the core's epsilon rule). When target_is_logits
the log of p~ is taken from the log-softmax of t/T (equal to log p up to rounding)
when p > eps, and is log(eps) otherwise. grad is the exact gradient of either
loss: the two differ only by the entropy of p, which does not depend on z, and
they share this code, so their gradients are bitwise identical.

Per row, pass 1 reads z (and t) once: running maximum m, sum s of exp((z - m) / T)
rescaled whenever m grows (online log-sum-exp), and the target checks and sum.
Pass 2 reads the row again (now in cache) for the loss and writes the gradient.
Differences are taken before dividing by T, so logits near 1e4 and T down to
0.1 neither overflow nor lose the small differences. For finite logits whose
scaled differences overflow (logits near +-1e308, or a tiny T), q_j is 0 and
log q_j past the range, but a term p_j |log q_j| with a small p_j may be
finite: such terms are computed from the logits without the overflow, so the
loss is +inf only when it is past the range, never NaN.

One thread reduces a row, in a fixed order, accumulating in float64: results
do not depend on the thread count. Invalid rows (logits or teacher logits NaN
or +-inf; target probabilities negative, NaN or +-inf, or summing past the
float64 range) get a NaN loss and an untouched gradient row; the kernel counts
them and the caller names the first. Valid input never gives NaN.

Two paths compute a row. The fast path (klfast_loss.h: vectorised exp and log
written for it, in the element type, one copy per instruction-set level; the
level is the one klfast._kernels uses, passed in by the caller) computes every
row except those where the log of a target probability would see a subnormal
number (eps below the smallest normal, e.g. eps=0, and such a probability),
and those whose scaled logits (z - max z) / T overflow the element type.
Those rows are flagged and recomputed by the exact scalar path below
(``_loss_row``: libm exp and log in float64), which is also the reference the
tests hold the fast path to. The fast path makes three passes over a row (its
maximum and the checks; the sums of exponentials; the loss terms and the
gradient) instead of the online log-sum-exp.
"""
from cpython.exc cimport PyErr_CheckSignals
from cython.parallel cimport prange
from libc.float cimport DBL_MAX
from libc.math cimport exp, frexp, ldexp, log, nextafterf, INFINITY, NAN
cimport numpy as cnp
import numpy as np
from time import perf_counter

cnp.import_array()

cdef extern from "klfast_config.h" nogil:
    int KLFAST_HAVE_OPENMP

cdef extern from "klfast_loss.h" nogil:
    enum:
        KLFAST_LOSS_KL
        KLFAST_LOSS_CROSS_ENTROPY
        KLFAST_LOSS_N_LEVELS
    ctypedef struct klfast_loss_params:
        int loss
        int target_is_logits
        double inv_t
        double eps
        double log_eps
        double grad_scale
        float inv_t_f32
        float eps_f32
        float log_eps_f32
        float grad_scale_f32
    ctypedef double (*klfast_loss_row_f64)(const double*, const double*, double*, Py_ssize_t,
                                           const klfast_loss_params*, int*)
    ctypedef double (*klfast_loss_row_f32)(const float*, const float*, float*, Py_ssize_t,
                                           const klfast_loss_params*, int*)
    ctypedef struct klfast_loss_isa:
        const char* name
        klfast_loss_row_f64 f64
        klfast_loss_row_f32 f32
        void (*math_f64)(int, const double*, double*, Py_ssize_t)
        void (*math_f32)(int, const float*, float*, Py_ssize_t)
    const klfast_loss_isa* klfast_loss_levels

ctypedef fused floating:
    float
    double

cdef enum:
    KL = KLFAST_LOSS_KL
    CROSS_ENTROPY = KLFAST_LOSS_CROSS_ENTROPY

# Loss codes for klfast/_loss.py.
LOSSES = {"kl": KL, "cross_entropy": CROSS_ENTROPY}

# Instruction-set levels of this build, slowest first: the names and order of
# klfast._kernels.LEVELS. Which ones the CPU runs is klfast._kernels' business.
LEVELS = tuple(klfast_loss_levels[i].name.decode() for i in range(KLFAST_LOSS_N_LEVELS))


cdef inline bint _not_finite(double x) noexcept nogil:
    # NaN fails both comparisons.
    return not (x >= -DBL_MAX and x <= DBL_MAX)


cdef inline bint _not_probability(double x) noexcept nogil:
    return not (x >= 0.0 and x <= DBL_MAX)


cdef inline double _gap_times(double a, double x, double m, double inv_t) noexcept nogil:
    """a * (m - x) * inv_t for a > 0, m >= x and inv_t > 0, all finite,
    without an intermediate overflow: +inf only when the product is past the
    range. (m - x may overflow for logits near +-1e308; halving each first is
    exact.)"""
    cdef double d = m - x, ma, md, mi
    cdef int extra = 0, ea, ed, ei
    if not d <= DBL_MAX:
        d = 0.5 * m - 0.5 * x
        extra = 1
    ma = frexp(a, &ea)
    md = frexp(d, &ed)
    mi = frexp(inv_t, &ei)
    return ldexp(ma * md * mi, ea + ed + ei + extra)


cdef inline double _loss_row(int loss, const floating* t, const floating* z, floating* g,
                             Py_ssize_t k, double inv_t, bint target_is_logits,
                             double eps, double log_eps, double grad_scale) noexcept nogil:
    cdef Py_ssize_t j
    cdef double x, a, e, lq, lp, lpe, q, neg_a_lq, total = 0.0, p_sum = 0.0
    cdef double m_z = -INFINITY, s_z = 0.0, m_t = -INFINITY, s_t = 0.0
    cdef double log_s_z, log_s_t = 0.0, r = -INFINITY, f = 0.0
    cdef bint bad = False
    # float64 gradients keep exp((z_j - running max) / T) from pass 1 in g and
    # rescale it in pass 2, saving one exp per element; float32 gradients
    # recompute it, as a float32 intermediate would lose accuracy when q ~ p.
    cdef bint keep = floating is double and g != NULL

    # Pass 1: online log-sum-exp of z / T (and t / T); target checks and sum.
    for j in range(k):
        x = z[j]
        bad |= _not_finite(x)
        if x > m_z:
            s_z = s_z * exp((m_z - x) * inv_t) + 1.0
            m_z = x
            e = 1.0
        else:
            e = exp((x - m_z) * inv_t)
            s_z += e
        if keep:
            g[j] = <floating>e
        a = t[j]
        if target_is_logits:
            bad |= _not_finite(a)
            if a > m_t:
                s_t = s_t * exp((m_t - a) * inv_t) + 1.0
                m_t = a
            else:
                s_t += exp((a - m_t) * inv_t)
        else:
            bad |= _not_probability(a)
            p_sum += a
    if target_is_logits:
        p_sum = 1.0
        log_s_t = log(s_t)
    else:
        bad |= not (p_sum <= DBL_MAX)
    if bad:
        return NAN
    log_s_z = log(s_z)

    # Pass 2: loss terms and gradient. With keep, the running maximum r of
    # pass 1 is retraced; q_j = g_j * exp((r - m) / T) / s changes factor only
    # when r grows.
    for j in range(k):
        x = z[j]
        lq = (x - m_z) * inv_t - log_s_z
        if target_is_logits:
            lp = (t[j] - m_t) * inv_t - log_s_t
            a = exp(lp)
            lpe = lp if a > eps else log_eps
        else:
            a = t[j]
            lpe = 0.0
            if loss == KL and a > 0.0:
                lpe = log(a if a > eps else eps)
        if a > 0.0:
            if not lq >= -DBL_MAX:  # (x - m_z) / T overflowed; a * it may not
                neg_a_lq = a * log_s_z + _gap_times(a, x, m_z, inv_t)
                total += (a * lpe + neg_a_lq) if loss == KL else neg_a_lq
            elif loss == KL:
                total += a * (lpe - lq)
            else:
                total -= a * lq
        if keep:
            if x > r:
                r = x
                f = exp((r - m_z) * inv_t - log_s_z)
            q = g[j] * f
            g[j] = <floating>((p_sum * q - a) * grad_scale)
        elif g != NULL:
            g[j] = <floating>((p_sum * exp(lq) - a) * grad_scale)
    return total


cdef inline double _fast_or_exact(const klfast_loss_isa* isa, const klfast_loss_params* prm,
                                 const floating* t, const floating* z, floating* g,
                                 Py_ssize_t k) noexcept nogil:
    cdef int special = 0
    cdef double v
    if floating is double:
        v = isa.f64(t, z, g, k, prm, &special)
    else:
        v = isa.f32(t, z, g, k, prm, &special)
    if special:
        v = _loss_row(prm.loss, t, z, g, k, prm.inv_t, prm.target_is_logits, prm.eps,
                      prm.log_eps, prm.grad_scale)
    return v


cdef Py_ssize_t _run(const klfast_loss_isa* isa, const klfast_loss_params* prm,
                     const floating* t, Py_ssize_t t_rs,
                     const floating* z, Py_ssize_t z_rs,
                     floating* g, Py_ssize_t g_rs,
                     double* out, Py_ssize_t n_rows, Py_ssize_t k,
                     int n_threads) noexcept nogil:
    """Fill out[i] (and row i of g unless g is NULL) for every row; strides in
    elements. Returns the number of invalid rows (their out[i] is NaN)."""
    cdef Py_ssize_t i, n_bad = 0
    cdef double v
    cdef floating* g_row
    if n_threads <= 1:
        for i in range(n_rows):
            g_row = g + i * g_rs if g != NULL else NULL
            v = _fast_or_exact(isa, prm, t + i * t_rs, z + i * z_rs, g_row, k)
            out[i] = v
            if v != v:
                n_bad += 1
    else:
        for i in prange(n_rows, schedule="static", num_threads=n_threads):
            g_row = g + i * g_rs if g != NULL else NULL
            v = _fast_or_exact(isa, prm, t + i * t_rs, z + i * z_rs, g_row, k)
            out[i] = v
            if v != v:
                n_bad += 1
    return n_bad


cdef float _f32_at_most(double x) noexcept nogil:
    """The largest float32 <= x (x >= 0): p > it exactly when p > x, for
    every float32 p."""
    cdef float f = <float>x
    if <double>f > x:
        f = nextafterf(f, 0.0)
    return f


cdef klfast_loss_params _params(int loss, double inv_temperature, bint target_is_logits,
                                double eps, double grad_scale) noexcept nogil:
    cdef klfast_loss_params prm
    prm.loss = loss
    prm.target_is_logits = target_is_logits
    prm.inv_t = inv_temperature
    prm.eps = eps
    prm.log_eps = log(eps) if eps > 0.0 else -INFINITY
    prm.grad_scale = grad_scale
    prm.inv_t_f32 = <float>inv_temperature
    prm.eps_f32 = _f32_at_most(eps)
    prm.log_eps_f32 = <float>prm.log_eps
    prm.grad_scale_f32 = <float>grad_scale
    return prm


# Chunks of rows as in klfast._kernels.rows: the first of about this many
# elements, later ones sized to take about CHUNK_SECONDS; between chunks the
# GIL is taken back to look for signals.
from klfast._kernels import _next_chunk
CHUNK_ELEMENTS = 1 << 22


def loss_rows(int loss, cnp.ndarray target, Py_ssize_t target_row_stride,
              cnp.ndarray logits, Py_ssize_t logits_row_stride,
              object grad, Py_ssize_t grad_row_stride,
              cnp.ndarray out, Py_ssize_t n_rows, Py_ssize_t k,
              double inv_temperature, bint target_is_logits, double eps,
              double grad_scale, int n_threads, int level):
    """Per-row losses of n_rows rows of length k; private, called by klfast._loss.

    ``target``, ``logits`` and ``grad`` (an array or None) share one dtype
    (float32 or float64), are aligned and in native byte order; row elements
    are contiguous. Strides are in bytes from each array's data pointer; the
    target's may be 0 (one row for all). ``out`` is a contiguous float64 array
    of n_rows. ``grad_scale`` multiplies the gradient (1/T, times 1/n for a
    mean). ``level`` indexes LEVELS: the instruction-set level of the fast
    path (the caller checks that the CPU runs it). Returns the number of
    invalid rows.
    """
    cdef int type_num = cnp.PyArray_TYPE(logits)
    cdef Py_ssize_t size = cnp.PyArray_ITEMSIZE(logits)
    cdef Py_ssize_t n_bad = 0, r0 = 0, r1, chunk = max(1, CHUNK_ELEMENTS // max(k, 1))
    cdef char* t_data = <char*>cnp.PyArray_DATA(target)
    cdef char* z_data = <char*>cnp.PyArray_DATA(logits)
    cdef char* g = NULL
    cdef double* o
    cdef klfast_loss_params prm
    cdef const klfast_loss_isa* isa
    if not 0 <= level < KLFAST_LOSS_N_LEVELS:
        raise ValueError(f"klfast._loss_kernels.loss_rows: no level {level} in this build")
    isa = &klfast_loss_levels[level]
    if cnp.PyArray_TYPE(target) != type_num:
        raise TypeError("klfast._loss_kernels.loss_rows: target and logits must share one dtype")
    if grad is not None:
        if cnp.PyArray_TYPE(<cnp.ndarray>grad) != type_num:
            raise TypeError("klfast._loss_kernels.loss_rows: grad must have the logits' dtype")
        g = <char*>cnp.PyArray_DATA(<cnp.ndarray>grad)
    if (cnp.PyArray_TYPE(out) != cnp.NPY_DOUBLE or not cnp.PyArray_IS_C_CONTIGUOUS(out)
            or cnp.PyArray_SIZE(out) < n_rows):
        raise ValueError("klfast._loss_kernels.loss_rows: out must be contiguous float64 of n_rows")
    if target_row_stride % size or logits_row_stride % size or grad_row_stride % size:
        raise ValueError("klfast._loss_kernels.loss_rows: strides must be multiples of the item size")
    o = <double*>cnp.PyArray_DATA(out)
    if type_num != cnp.NPY_DOUBLE and type_num != cnp.NPY_FLOAT:
        raise TypeError("klfast._loss_kernels.loss_rows: dtype must be float32 or float64")
    prm = _params(loss, inv_temperature, target_is_logits, eps, grad_scale)
    # in chunks of rows, looking for signals (Ctrl-C) between them
    cdef double started = perf_counter()
    while r0 < n_rows:
        r1 = min(n_rows, r0 + chunk)
        with nogil:
            if type_num == cnp.NPY_DOUBLE:
                n_bad += _run[double](isa, &prm,
                                      <const double*>(t_data + r0 * target_row_stride),
                                      target_row_stride // size,
                                      <const double*>(z_data + r0 * logits_row_stride),
                                      logits_row_stride // size,
                                      <double*>(g + r0 * grad_row_stride) if g != NULL else NULL,
                                      grad_row_stride // size, o + r0, r1 - r0, k, n_threads)
            else:
                n_bad += _run[float](isa, &prm,
                                     <const float*>(t_data + r0 * target_row_stride),
                                     target_row_stride // size,
                                     <const float*>(z_data + r0 * logits_row_stride),
                                     logits_row_stride // size,
                                     <float*>(g + r0 * grad_row_stride) if g != NULL else NULL,
                                     grad_row_stride // size, o + r0, r1 - r0, k, n_threads)
        r0 = r1
        if r0 < n_rows:
            PyErr_CheckSignals()
            chunk = _next_chunk(chunk, perf_counter() - started)
            started = perf_counter()
    return n_bad


def has_openmp():
    """True when this module was compiled with OpenMP."""
    return bool(KLFAST_HAVE_OPENMP)


def exact_rows(int loss, object target, object logits, object grad,
               double inv_temperature, bint target_is_logits, double eps, double grad_scale):
    """The exact scalar path on every row of C-contiguous 2-D arrays of one
    dtype (``grad`` an array of their shape, or None): the tests' reference
    for the fast path. Returns the per-row values (NaN for invalid rows)."""
    cdef Py_ssize_t i, n_rows, k
    cdef cnp.ndarray out
    cdef double* o
    cdef double log_eps = log(eps) if eps > 0.0 else -INFINITY
    cdef int type_num
    arrays = [target, logits] + ([] if grad is None else [grad])
    if not all(isinstance(a, np.ndarray) and a.flags.c_contiguous and a.ndim == 2
               and a.shape == logits.shape and a.dtype == logits.dtype for a in arrays):
        raise ValueError("exact_rows: C-contiguous 2-D arrays of one shape and dtype")
    type_num = cnp.PyArray_TYPE(<cnp.ndarray>logits)
    n_rows, k = logits.shape[0], logits.shape[1]
    out = np.zeros(n_rows)
    o = <double*>cnp.PyArray_DATA(out)
    if type_num == cnp.NPY_DOUBLE:
        for i in range(n_rows):
            o[i] = _loss_row[double](
                loss, <const double*>cnp.PyArray_DATA(target) + i * k,
                <const double*>cnp.PyArray_DATA(logits) + i * k,
                NULL if grad is None else <double*>cnp.PyArray_DATA(<cnp.ndarray>grad) + i * k,
                k, inv_temperature, target_is_logits, eps, log_eps, grad_scale)
    elif type_num == cnp.NPY_FLOAT:
        for i in range(n_rows):
            o[i] = _loss_row[float](
                loss, <const float*>cnp.PyArray_DATA(target) + i * k,
                <const float*>cnp.PyArray_DATA(logits) + i * k,
                NULL if grad is None else <float*>cnp.PyArray_DATA(<cnp.ndarray>grad) + i * k,
                k, inv_temperature, target_is_logits, eps, log_eps, grad_scale)
    else:
        raise TypeError("exact_rows: dtype must be float32 or float64")
    return out


_MATH = {"exp": 0, "exp_wide": 1, "log": 2}


def vector_math(str name, cnp.ndarray x, int level):
    """exp (plain: x in [-708, 0], float32 [-86.5, 0]), exp_wide (any x <= 0)
    or log (normal positive x) of the fast path at ``level``, elementwise on
    a 1-D float32 or float64 array: the tests' window on the vector math."""
    cdef int fn = _MATH[name]
    cdef cnp.ndarray src, out
    if not 0 <= level < KLFAST_LOSS_N_LEVELS:
        raise ValueError(f"no level {level} in this build")
    if cnp.PyArray_NDIM(x) != 1 or cnp.PyArray_TYPE(x) not in (cnp.NPY_DOUBLE, cnp.NPY_FLOAT):
        raise TypeError("vector_math: a 1-D float32 or float64 array")
    src = np.ascontiguousarray(x)
    out = np.empty_like(src)
    if cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE:
        klfast_loss_levels[level].math_f64(fn, <const double*>cnp.PyArray_DATA(src),
                                           <double*>cnp.PyArray_DATA(out), x.shape[0])
    else:
        klfast_loss_levels[level].math_f32(fn, <const float*>cnp.PyArray_DATA(src),
                                           <float*>cnp.PyArray_DATA(out), x.shape[0])
    return out
