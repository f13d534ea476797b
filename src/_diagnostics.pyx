# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Kernels for the tests and the benchmarks only (never used by klfast's API).

* ``read_floor``: the time a compiled kernel needs just to read both inputs
  (the benchmarks' floor).
* ``exact_rows``: the losses' exact scalar path on every row (the reference
  the tests hold the vector loss kernels to).
* ``vector_math``: the vector exp and log of one instruction-set level.
"""
from cython.parallel cimport prange
from libc.math cimport log, INFINITY
cimport numpy as cnp
import numpy as np

from _exact cimport (floating, exact_loss_row, forms_params, klfast_forms_params,
                     klfast_isa_levels, klfast_n_levels, KLFAST_PROBS, KLFAST_LOGITS)

cnp.import_array()

cdef extern from "engine/read_floor.h" nogil:
    double klfast_read_sum_f64(const double* p, const double* q, Py_ssize_t n)
    double klfast_read_sum_f32(const float* p, const float* q, Py_ssize_t n)


cdef double _sum_rows(const floating* p, const floating* q, Py_ssize_t n_rows, Py_ssize_t k,
                      int n_threads) noexcept nogil:
    # the inputs are C-contiguous: read as one run of n_rows * k elements in
    # blocks of 64 KiB of each, whatever k is (a loop over short rows would
    # time its own per-row overhead, not the read)
    cdef Py_ssize_t b, n = n_rows * k, block = 65536 // sizeof(floating)
    cdef Py_ssize_t n_blocks = (n + block - 1) // block
    cdef double total = 0.0
    for b in prange(n_blocks, schedule="static", num_threads=n_threads):
        if floating is double:
            total += klfast_read_sum_f64(p + b * block, q + b * block, min(block, n - b * block))
        else:
            total += klfast_read_sum_f32(p + b * block, q + b * block, min(block, n - b * block))
    return total


def read_floor(cnp.ndarray p, cnp.ndarray q, int n_threads):
    """Sum of all entries of two C-contiguous 2-D arrays of one float dtype.

    The benchmarks' "read floor": the time a kernel of this build, with these
    threads, needs just to read both inputs once.
    """
    if not (cnp.PyArray_IS_C_CONTIGUOUS(p) and cnp.PyArray_IS_C_CONTIGUOUS(q)
            and cnp.PyArray_NDIM(p) == 2 and p.shape[0] == q.shape[0] and p.shape[1] == q.shape[1]
            and cnp.PyArray_TYPE(p) == cnp.PyArray_TYPE(q)):
        raise ValueError("read_floor: p and q must be C-contiguous 2-D arrays of one shape and dtype")
    cdef Py_ssize_t n = p.shape[0], k = p.shape[1]
    cdef double total
    if cnp.PyArray_TYPE(p) == cnp.NPY_DOUBLE:
        with nogil:
            total = _sum_rows[double](<const double*>cnp.PyArray_DATA(p),
                                      <const double*>cnp.PyArray_DATA(q), n, k, n_threads)
    elif cnp.PyArray_TYPE(p) == cnp.NPY_FLOAT:
        with nogil:
            total = _sum_rows[float](<const float*>cnp.PyArray_DATA(p),
                                     <const float*>cnp.PyArray_DATA(q), n, k, n_threads)
    else:
        raise TypeError("read_floor: dtype must be float32 or float64")
    return total


def exact_rows(int loss, object target, object logits, object grad,
               double inv_temperature, bint target_is_logits, double eps, double grad_scale):
    """The exact scalar path on every row of C-contiguous 2-D arrays of one
    dtype (``grad`` an array of their shape, or None): the tests' reference
    for the fast path. Returns the per-row values (NaN for invalid rows)."""
    cdef Py_ssize_t i, n_rows, k
    cdef cnp.ndarray out
    cdef double* o
    cdef klfast_forms_params prm = forms_params(
        loss, KLFAST_LOGITS if target_is_logits else KLFAST_PROBS, KLFAST_LOGITS,
        inv_temperature, inv_temperature, False, True, INFINITY, eps, INFINITY, grad_scale)
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
            o[i] = exact_loss_row[double](
                &prm, <const double*>cnp.PyArray_DATA(target) + i * k,
                <const double*>cnp.PyArray_DATA(logits) + i * k,
                NULL if grad is None else <double*>cnp.PyArray_DATA(<cnp.ndarray>grad) + i * k, k)
    elif type_num == cnp.NPY_FLOAT:
        for i in range(n_rows):
            o[i] = exact_loss_row[float](
                &prm, <const float*>cnp.PyArray_DATA(target) + i * k,
                <const float*>cnp.PyArray_DATA(logits) + i * k,
                NULL if grad is None else <float*>cnp.PyArray_DATA(<cnp.ndarray>grad) + i * k, k)
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
    if not 0 <= level < klfast_n_levels:
        raise ValueError(f"no level {level} in this build")
    if cnp.PyArray_NDIM(x) != 1 or cnp.PyArray_TYPE(x) not in (cnp.NPY_DOUBLE, cnp.NPY_FLOAT):
        raise TypeError("vector_math: a 1-D float32 or float64 array")
    src = np.ascontiguousarray(x)
    out = np.empty_like(src)
    if cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE:
        klfast_isa_levels[level].math_f64(fn, <const double*>cnp.PyArray_DATA(src),
                                           <double*>cnp.PyArray_DATA(out), x.shape[0])
    else:
        klfast_isa_levels[level].math_f32(fn, <const float*>cnp.PyArray_DATA(src),
                                           <float*>cnp.PyArray_DATA(out), x.shape[0])
    return out
