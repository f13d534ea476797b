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
0.1 neither overflow nor lose the small differences; for finite logits whose
scaled differences overflow, log q_j is -inf and the loss +inf, never NaN.

One thread reduces a row, left to right, in float64: results do not depend on
the thread count. Invalid rows (logits or teacher logits NaN or +-inf; target
probabilities negative, NaN or +-inf, or summing past the float64 range) get a
NaN loss and an untouched gradient row; the kernel counts them and the caller
names the first. Valid input never gives NaN.
"""
from cython.parallel cimport prange
from libc.float cimport DBL_MAX
from libc.math cimport exp, log, INFINITY, NAN
cimport numpy as cnp

cnp.import_array()

cdef extern from "klfast_config.h" nogil:
    int KLFAST_HAVE_OPENMP

ctypedef fused floating:
    float
    double

cdef enum:
    KL = 0
    CROSS_ENTROPY = 1

# Loss codes for klfast/_loss.py.
LOSSES = {"kl": KL, "cross_entropy": CROSS_ENTROPY}


cdef inline bint _not_finite(double x) noexcept nogil:
    # NaN fails both comparisons.
    return not (x >= -DBL_MAX and x <= DBL_MAX)


cdef inline bint _not_probability(double x) noexcept nogil:
    return not (x >= 0.0 and x <= DBL_MAX)


cdef inline double _loss_row(int loss, const floating* t, const floating* z, floating* g,
                             Py_ssize_t k, double inv_t, bint target_is_logits,
                             double eps, double log_eps, double grad_scale) noexcept nogil:
    cdef Py_ssize_t j
    cdef double x, a, e, lq, lp, lpe, q, total = 0.0, p_sum = 0.0
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
            if loss == KL:
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


cdef Py_ssize_t _run(int loss,
                     const floating* t, Py_ssize_t t_rs,
                     const floating* z, Py_ssize_t z_rs,
                     floating* g, Py_ssize_t g_rs,
                     double* out, Py_ssize_t n_rows, Py_ssize_t k,
                     double inv_t, bint target_is_logits, double eps, double grad_scale,
                     int n_threads) noexcept nogil:
    """Fill out[i] (and row i of g unless g is NULL) for every row; strides in
    elements. Returns the number of invalid rows (their out[i] is NaN)."""
    cdef Py_ssize_t i, n_bad = 0
    cdef double v
    cdef double log_eps = log(eps) if eps > 0.0 else -INFINITY
    cdef floating* g_row
    if n_threads <= 1:
        for i in range(n_rows):
            g_row = g + i * g_rs if g != NULL else NULL
            v = _loss_row(loss, t + i * t_rs, z + i * z_rs, g_row, k, inv_t,
                          target_is_logits, eps, log_eps, grad_scale)
            out[i] = v
            if v != v:
                n_bad += 1
    else:
        for i in prange(n_rows, schedule="static", num_threads=n_threads):
            g_row = g + i * g_rs if g != NULL else NULL
            v = _loss_row(loss, t + i * t_rs, z + i * z_rs, g_row, k, inv_t,
                          target_is_logits, eps, log_eps, grad_scale)
            out[i] = v
            if v != v:
                n_bad += 1
    return n_bad


def loss_rows(int loss, cnp.ndarray target, Py_ssize_t target_row_stride,
              cnp.ndarray logits, Py_ssize_t logits_row_stride,
              object grad, Py_ssize_t grad_row_stride,
              cnp.ndarray out, Py_ssize_t n_rows, Py_ssize_t k,
              double inv_temperature, bint target_is_logits, double eps,
              double grad_scale, int n_threads):
    """Per-row losses of n_rows rows of length k; private, called by klfast._loss.

    ``target``, ``logits`` and ``grad`` (an array or None) share one dtype
    (float32 or float64), are aligned and in native byte order; row elements
    are contiguous. Strides are in bytes from each array's data pointer; the
    target's may be 0 (one row for all). ``out`` is a contiguous float64 array
    of n_rows. ``grad_scale`` multiplies the gradient (1/T, times 1/n for a
    mean). Returns the number of invalid rows.
    """
    cdef int type_num = cnp.PyArray_TYPE(logits)
    cdef Py_ssize_t size = cnp.PyArray_ITEMSIZE(logits)
    cdef Py_ssize_t n_bad
    cdef void* g = NULL
    cdef double* o
    if cnp.PyArray_TYPE(target) != type_num:
        raise TypeError("klfast._loss_kernels.loss_rows: target and logits must share one dtype")
    if grad is not None:
        if cnp.PyArray_TYPE(<cnp.ndarray>grad) != type_num:
            raise TypeError("klfast._loss_kernels.loss_rows: grad must have the logits' dtype")
        g = cnp.PyArray_DATA(<cnp.ndarray>grad)
    if (cnp.PyArray_TYPE(out) != cnp.NPY_DOUBLE or not cnp.PyArray_IS_C_CONTIGUOUS(out)
            or cnp.PyArray_SIZE(out) < n_rows):
        raise ValueError("klfast._loss_kernels.loss_rows: out must be contiguous float64 of n_rows")
    if target_row_stride % size or logits_row_stride % size or grad_row_stride % size:
        raise ValueError("klfast._loss_kernels.loss_rows: strides must be multiples of the item size")
    o = <double*>cnp.PyArray_DATA(out)
    if type_num == cnp.NPY_DOUBLE:
        with nogil:
            n_bad = _run[double](loss,
                                 <const double*>cnp.PyArray_DATA(target), target_row_stride // size,
                                 <const double*>cnp.PyArray_DATA(logits), logits_row_stride // size,
                                 <double*>g, grad_row_stride // size,
                                 o, n_rows, k, inv_temperature, target_is_logits, eps,
                                 grad_scale, n_threads)
    elif type_num == cnp.NPY_FLOAT:
        with nogil:
            n_bad = _run[float](loss,
                                <const float*>cnp.PyArray_DATA(target), target_row_stride // size,
                                <const float*>cnp.PyArray_DATA(logits), logits_row_stride // size,
                                <float*>g, grad_row_stride // size,
                                o, n_rows, k, inv_temperature, target_is_logits, eps,
                                grad_scale, n_threads)
    else:
        raise TypeError("klfast._loss_kernels.loss_rows: dtype must be float32 or float64")
    return n_bad


def has_openmp():
    """True when this module was compiled with OpenMP."""
    return bool(KLFAST_HAVE_OPENMP)
