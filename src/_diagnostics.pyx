# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Kernels for the tests and the benchmarks only (never used by klfast's API).

* ``read_floor``: the time a compiled kernel needs just to read both inputs
  (the benchmarks' floor).
* ``exact_rows``: the losses' exact scalar path on every row (the reference
  the tests hold the vector loss kernels to).
* ``vector_math``: the vector exp and log of one instruction-set level.
"""
from libc.math cimport log, INFINITY
from libc.stdlib cimport calloc, free
cimport numpy as cnp
import numpy as np

from _exact cimport (floating, exact_loss_row, forms_params, klfast_forms_params,
                     klfast_isa_levels, klfast_n_levels, KLFAST_PROBS, KLFAST_LOGITS,
                     pool_run, the_pool)

cnp.import_array()

cdef pool_run _pool = the_pool()  # klfast._kernels' threads, as the kernels use them

cdef extern from "engine/read_floor.h" nogil:
    double klfast_read_sum_f64(const double* p, const double* q, Py_ssize_t n)
    double klfast_read_sum_f32(const float* p, const float* q, Py_ssize_t n)


# The inputs are C-contiguous: read as one run of n elements in blocks of
# 64 KiB of each, whatever the row length is (a loop over short rows would
# time its own per-row overhead, not the read), a block per claim; each
# thread adds its blocks' sums into its own slot (8 doubles apart: one cache
# line each).
cdef enum:
    SLOT = 8
    BLOCK_BYTES = 65536

cdef struct Floor:
    const char* p
    const char* q
    int t
    Py_ssize_t n
    double* totals


cdef inline double _read_sum(const floating* p, const floating* q, Py_ssize_t n) noexcept nogil:
    if floating is double:
        return klfast_read_sum_f64(p, q, n)
    return klfast_read_sum_f32(p, q, n)


cdef void _floor_blocks(Floor* c, const floating* p, const floating* q, Py_ssize_t b0,
                        Py_ssize_t b1, int tid) noexcept nogil:
    cdef Py_ssize_t b, block = BLOCK_BYTES // sizeof(floating)
    for b in range(b0, b1):
        c.totals[tid * SLOT] += _read_sum(p + b * block, q + b * block, min(block, c.n - b * block))


cdef Py_ssize_t _floor_task(void* ctx, Py_ssize_t b0, Py_ssize_t b1, int tid) noexcept nogil:
    cdef Floor* c = <Floor*>ctx
    if c.t == cnp.NPY_DOUBLE:
        _floor_blocks(c, <const double*>c.p, <const double*>c.q, b0, b1, tid)
    else:
        _floor_blocks(c, <const float*>c.p, <const float*>c.q, b0, b1, tid)
    return 0


def read_floor(cnp.ndarray p, cnp.ndarray q, int n_threads):
    """Sum of all entries of two C-contiguous 2-D arrays of one float dtype.

    The benchmarks' "read floor": the time a kernel of this build, with these
    threads, needs just to read both inputs once.
    """
    if not (cnp.PyArray_IS_C_CONTIGUOUS(p) and cnp.PyArray_IS_C_CONTIGUOUS(q)
            and cnp.PyArray_NDIM(p) == 2 and p.shape[0] == q.shape[0] and p.shape[1] == q.shape[1]
            and cnp.PyArray_TYPE(p) == cnp.PyArray_TYPE(q)):
        raise ValueError("read_floor: p and q must be C-contiguous 2-D arrays of one shape and dtype")
    cdef Floor c
    cdef int i
    c.t = cnp.PyArray_TYPE(p)
    if c.t != cnp.NPY_DOUBLE and c.t != cnp.NPY_FLOAT:
        raise TypeError("read_floor: dtype must be float32 or float64")
    n_threads = min(max(n_threads, 1), 1024)  # the pool's most: 1,023 workers and the caller
    c.p, c.q = <const char*>cnp.PyArray_DATA(p), <const char*>cnp.PyArray_DATA(q)
    c.n = p.shape[0] * p.shape[1]
    cdef Py_ssize_t block = BLOCK_BYTES // cnp.PyArray_ITEMSIZE(p)
    c.totals = <double*>calloc(n_threads * SLOT, sizeof(double))
    if c.totals == NULL:
        raise MemoryError("read_floor: out of memory")
    with nogil:
        _pool(_floor_task, &c, 0, (c.n + block - 1) // block, 1, n_threads)
    total = sum(c.totals[i * SLOT] for i in range(n_threads))
    free(c.totals)
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
