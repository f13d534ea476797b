# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Row kernels of klfast.

Every kernel reduces each row of two (n_rows, k) inputs to one number. A row is
reduced by one thread, left to right, accumulating in float64, so the result
does not depend on the thread count. Rows are spread over OpenMP threads with a
static schedule; the GIL is released for the whole computation.

The epsilon rule (identical in every measure). With p~ = max(p, eps) and
q~ = max(q, eps):

    kl            = sum p * log(p~ / q~)           terms with p == 0 are 0
    jeffreys      = sum (p - q) * log(p~ / q~)     terms with p == q are 0
    entropy       = -sum p * log(p~)               terms with p == 0 are 0
    cross_entropy = -sum p * log(q~)               terms with p == 0 are 0
    js            = sum (p log(p/m) + q log(q/m))/2, m = (p + q)/2, no eps,
                    terms with p == 0 (q == 0) are 0, the row clamped at >= 0

With eps = 0 a term with p > 0 and q == 0 is +inf (as scipy.special.rel_entr).
With normalize, p and q are replaced by p / sum(p) and q / sum(q) first; the
row sum is taken while the row is in cache.

Invalid input (a negative, NaN or infinite entry; with normalize a row sum of 0
or +inf; without it, a row of p or q whose sum differs from 1 by more than
``tol``) makes the row's result NaN: valid input never produces NaN, so the
caller finds the first NaN and explains it. No separate validation pass: the
row sums are taken in the pass that computes the measure.

Rows are processed in chunks of about CHUNK_ELEMENTS elements; between chunks
the GIL is taken back to look for signals, so Ctrl-C stops a long call.

Two paths compute a row. The fast path (klfast_rows.h: vectorised, a
hand-written log, one copy per instruction-set level chosen at run time)
handles every row whose logs see only normal numbers, which is every row when
eps >= 2.2e-308 (so zeros are free). A row where a log would see a zero or a
subnormal (eps below the smallest normal, e.g. eps=0) is flagged and
recomputed here by the exact scalar path, which uses libm's log.
"""
import os
from time import perf_counter

from cython.parallel cimport prange
from libc.float cimport DBL_MAX, DBL_MIN
from cpython.exc cimport PyErr_CheckSignals
from libc.math cimport fabs, log, log1p, INFINITY, NAN, M_LN2 as LN2
cimport numpy as cnp

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    object PyArray_Scalar(void* data, cnp.dtype descr, object base)

cdef extern from "klfast_config.h" nogil:
    int KLFAST_HAVE_OPENMP
    const char* KLFAST_COMPILE_ARGS
    const char* KLFAST_BUILD_ISA
    int klfast_omp_max_threads()

ctypedef fused floating:
    float
    double

cdef extern from "klfast_rows.h" nogil:
    enum:
        KLFAST_KL
        KLFAST_JEFFREYS
        KLFAST_ENTROPY
        KLFAST_CROSS_ENTROPY
        KLFAST_JS
        KLFAST_N_MEASURES
        KLFAST_N_LEVELS
    ctypedef double (*klfast_row_f64)(const double*, const double*, Py_ssize_t, double, int, int*,
                                      double*)
    ctypedef double (*klfast_row_f32)(const float*, const float*, Py_ssize_t, double, int, int*,
                                      double*)
    ctypedef struct klfast_isa:
        const char* name
        klfast_row_f64* f64
        klfast_row_f32* f32
    const klfast_isa* klfast_isa_levels
    int klfast_cpu_has_level(int level)
    double klfast_read_sum_f64(const double* p, const double* q, Py_ssize_t n)
    double klfast_read_sum_f32(const float* p, const float* q, Py_ssize_t n)

cdef enum:
    KL = KLFAST_KL
    JEFFREYS = KLFAST_JEFFREYS
    ENTROPY = KLFAST_ENTROPY
    CROSS_ENTROPY = KLFAST_CROSS_ENTROPY
    JS = KLFAST_JS

# Measure codes for klfast/_api.py.
MEASURES = {"kl": KL, "jeffreys": JEFFREYS, "entropy": ENTROPY,
            "cross_entropy": CROSS_ENTROPY, "jensen_shannon": JS}


cdef inline bint _invalid(double x) noexcept nogil:
    # True for negative, NaN and +-inf (NaN fails every comparison).
    return not (x >= 0.0 and x <= DBL_MAX)


cdef inline double _log_ratio(double a, double b) noexcept nogil:
    """log(a / b) for a >= 0, b >= 0, not both 0, without overflow.

    a / b overflows (or underflows) only for extreme magnitudes such as a
    subnormal b; log(a) - log(b) is then exact enough and gives +-inf at 0.
    """
    cdef double r = a / b
    if r >= DBL_MIN and r <= DBL_MAX:  # a subnormal r has lost digits
        return log(r)
    return log(a) - log(b)


cdef inline double _row_sum(const floating* x, Py_ssize_t k, bint normalize) noexcept nogil:
    """sum(x) when normalizing (NaN for a zero or infinite sum), else 1. Rows
    are divided by it: 1 / sum overflows for sums below 5.6e-309."""
    cdef Py_ssize_t j
    cdef double s = 0.0
    if not normalize:
        return 1.0
    for j in range(k):
        s += x[j]
    if s > 0.0 and s <= DBL_MAX:
        return s
    return NAN


cdef inline double _exact_term(int measure, double a, double b, double eps, double f) noexcept nogil:
    """One term of a row times f (1, or a power of two below 1), for a >= 0
    and b >= 0 already normalized. f multiplies the factor in front of the
    log, so that a term whose exact value is finite but past DBL_MAX / f does
    not overflow when f = _UNDER_SCALE (the log is at most about 1490)."""
    cdef double at = a if a > eps else eps, bt = b if b > eps else eps
    if measure == KL:
        return (a * f) * _log_ratio(at, bt) if a > 0.0 else 0.0
    if measure == JEFFREYS:
        return ((a - b) * f) * _log_ratio(at, bt) if a != b else 0.0
    if measure == ENTROPY:
        return -(a * f) * log(at) if a > 0.0 else 0.0
    if measure == CROSS_ENTROPY:
        return -(a * f) * log(bt) if a > 0.0 else 0.0
    return _js_term(a, b) * f  # at most max(a, b) * ln2: finite


# Rows whose sum overflows are summed again with every term scaled by 2^-64
# (exact but for terms below 2^-958, far under the sum's last digit): the
# scaled terms and their sum stay below 2^971 * k, so the sum is right even
# when terms near 1e308 of both signs cancel, and only the final scaling
# back can overflow, when the result itself is past DBL_MAX.
cdef double _UNDER_SCALE = 2.0 ** -64
cdef double _OVER_SCALE = 2.0 ** 64


cdef inline double _row_sum_scaled(int measure, const floating* p, const floating* q,
                                   Py_ssize_t k, double eps, double sp, double sq,
                                   double f) noexcept nogil:
    """The sum of a valid row's terms, each times f, left to right."""
    cdef Py_ssize_t j
    cdef double s = 0.0
    for j in range(k):
        s += _exact_term(measure, p[j] / sp, q[j] / sq, eps, f)
    return s


cdef inline double _row(int measure, const floating* p, const floating* q, Py_ssize_t k,
                        double eps, bint normalize, double tol, double scale) noexcept nogil:
    """The exact scalar path: libm's log, one term at a time. Entropy reads
    only p (the caller passes q = p). A row whose running sum overflows
    (finite terms near 1e308, possibly of both signs) is summed again with
    scaled terms: +-inf only when the result is past DBL_MAX, or a term is
    +inf (eps = 0 and a zero where the measure's log needs a positive)."""
    cdef Py_ssize_t j
    cdef double a, b, t, s = 0.0, total_p = 0.0, total_q = 0.0
    cdef double sp = _row_sum(p, k, normalize), sq = _row_sum(q, k, normalize)
    cdef bint bad = sp != sp or sq != sq, inf_term = False
    for j in range(k):
        a = p[j]
        b = q[j]
        bad |= _invalid(a) | _invalid(b)
        total_p += a
        total_q += b
        t = _exact_term(measure, a / sp, b / sq, eps, 1.0)
        inf_term |= t > DBL_MAX
        s += t
    if bad or not (normalize or _sums_to_one(total_p, total_q, tol)):
        return NAN
    if inf_term or not (s >= -DBL_MAX and s <= DBL_MAX):  # a term or the sum overflowed
        # summed again with scaled terms, times scale before it is scaled
        # back: with a base far from e (scale < 1) the value may be finite
        # where its value in nats is not
        s = _row_sum_scaled(measure, p, q, k, eps, sp, sq, _UNDER_SCALE)
        if not (s <= DBL_MAX):  # an infinite term (+inf: finite terms cannot cancel it)
            return INFINITY * scale
        return (s * scale) * _OVER_SCALE
    if measure == JS and s < 0.0:  # rounding; JS >= 0
        return 0.0
    return s * scale


cdef inline bint _sums_to_one(double total_p, double total_q, double tol) noexcept nogil:
    """Both row sums within tol of 1 (tol = inf accepts any sum)."""
    return fabs(total_p - 1.0) <= tol and fabs(total_q - 1.0) <= tol


cdef inline double _js_term(double a, double b) noexcept nogil:
    """(a log(a/m) + b log(b/m))/2, m = (a + b)/2, for a, b >= 0. With
    hi = max(a, b), lo = min(a, b) it is
        ((hi + lo) log1p((hi - lo)/(hi + lo)) + lo log(lo/hi)) / 2,
    and log(lo/hi) = log1p((lo - hi)/hi) when lo >= hi/2: hi - lo is exact
    where the logs are small, so rows that are nearly equal keep their digits
    (a rounded m or lo/hi would lose them). Subnormals are fine: _log_ratio
    takes them, and only results are halved."""
    cdef double hi = a if a > b else b, lo = b if a > b else a, s = hi + lo, lr
    if lo == 0.0:
        return (0.5 * LN2) * hi  # log(2 hi / hi); 0 when both are 0
    lr = log1p((lo - hi) / hi) if lo >= 0.5 * hi else _log_ratio(lo, hi)
    if s <= DBL_MAX:
        return 0.5 * (s * log1p((hi - lo) / s) + lo * lr)
    s = 0.5 * hi + 0.5 * lo  # hi >= 2^1023: halving is exact
    return s * log1p((0.5 * hi - 0.5 * lo) / s) + 0.5 * (lo * lr)


cdef inline double _fast_or_exact(int measure, const klfast_isa* isa, const floating* p,
                                 const floating* q, Py_ssize_t k, double eps,
                                 bint normalize, double tol, double scale) noexcept nogil:
    cdef int special = 0
    cdef double v
    cdef double sums[2]
    if floating is double:
        v = isa.f64[measure](p, q, k, eps, normalize, &special, sums)
    else:
        v = isa.f32[measure](p, q, k, eps, normalize, &special, sums)
    if special:
        return _row(measure, p, q, k, eps, normalize, tol, scale)
    if not _sums_to_one(sums[0], sums[1], tol):
        return NAN
    return v * scale


cdef Py_ssize_t _run(int measure, const klfast_isa* isa,
                     const floating* p, Py_ssize_t p_rs,
                     const floating* q, Py_ssize_t q_rs,
                     floating* out, Py_ssize_t out_s,
                     Py_ssize_t n_rows, Py_ssize_t k,
                     double eps, double scale, bint normalize, double tol,
                     int n_threads) noexcept nogil:
    """Fill out[i * out_s] for every row; strides in elements. Returns the
    number of invalid rows (their result is NaN)."""
    cdef Py_ssize_t i, n_bad = 0
    cdef double v
    if floating is float:  # float32 inputs: the eps rule with eps in float32
        eps = <float>eps
    if n_threads <= 1:
        for i in range(n_rows):
            v = _fast_or_exact(measure, isa, p + i * p_rs, q + i * q_rs, k, eps, normalize,
                               tol, scale)
            out[i * out_s] = <floating>v
            if v != v:
                n_bad += 1
    else:
        for i in prange(n_rows, schedule="static", num_threads=n_threads):
            v = _fast_or_exact(measure, isa, p + i * p_rs, q + i * q_rs, k, eps, normalize,
                               tol, scale)
            out[i * out_s] = <floating>v
            if v != v:
                n_bad += 1
    return n_bad


# ---- instruction-set level ---------------------------------------------
LEVELS = tuple(klfast_isa_levels[i].name.decode() for i in range(KLFAST_N_LEVELS))
cdef const klfast_isa* _isa = &klfast_isa_levels[0]


def _detect_isas():
    return tuple(name for i, name in enumerate(LEVELS) if klfast_cpu_has_level(i))


# Levels this CPU runs, slowest first; a module global so tests can pretend
# to be an older CPU.
_SUPPORTED = _detect_isas()


def supported_isas():
    """The levels this CPU can run, slowest first (always starts with 'baseline')."""
    return _SUPPORTED


def get_isa():
    """The level the kernels use now."""
    return _isa.name.decode()


def set_isa(name):
    """Use level ``name`` ('baseline', 'avx2', 'avx512') from now on. Not
    thread-safe against concurrent calls; meant for start-up and tests."""
    global _isa
    if name not in LEVELS:
        raise ValueError(f"KLFAST_ISA: unknown instruction-set level {name!r}; "
                         f"this build has {', '.join(LEVELS)}")
    if name not in _SUPPORTED:
        raise RuntimeError(f"KLFAST_ISA={name}: this CPU does not support it "
                           f"(supported: {', '.join(_SUPPORTED)})")
    _isa = &klfast_isa_levels[LEVELS.index(name)]


set_isa(os.environ.get("KLFAST_ISA") or _SUPPORTED[len(_SUPPORTED) - 1])


# The first chunk of rows holds about this many elements (a few ms of memory
# traffic); later chunks are sized to take about CHUNK_SECONDS each. Between
# chunks the GIL is taken back to look for signals.
CHUNK_ELEMENTS = 1 << 22
CHUNK_SECONDS = 0.05


def _next_chunk(Py_ssize_t chunk, double elapsed):
    """Rows for the next chunk: about CHUNK_SECONDS at the pace of the last
    one, growing at most 8-fold a step (so a slow start cannot make one
    chunk run for long)."""
    cdef double rows = chunk * CHUNK_SECONDS / max(elapsed, 1e-6)
    return max(1, <Py_ssize_t>min(rows, 8.0 * chunk))


def rows(int measure, cnp.ndarray p, Py_ssize_t p_row_stride,
         cnp.ndarray q, Py_ssize_t q_row_stride,
         cnp.ndarray out, Py_ssize_t out_stride,
         Py_ssize_t n_rows, Py_ssize_t k,
         double eps, double scale, bint normalize, double tol, int n_threads):
    """Reduce n_rows rows of length k; private, called by klfast._api.

    ``p``, ``q`` and ``out`` share one dtype (float32 or float64), are aligned
    and in native byte order; row elements are contiguous. Strides are in
    bytes, measured from each array's data pointer, and may be 0 (one row
    broadcast against many). Without ``normalize``, a row of p or q whose
    sum is not within ``tol`` of 1 is invalid (``tol=inf``: no check).
    Returns the number of invalid rows. A signal handler that raises (Ctrl-C)
    stops the call between chunks of rows.
    """
    cdef int type_num = cnp.PyArray_TYPE(out)
    cdef Py_ssize_t size = cnp.PyArray_ITEMSIZE(out)
    cdef Py_ssize_t n_bad = 0, r0 = 0, r1, chunk = max(1, CHUNK_ELEMENTS // max(k, 1))
    cdef char* p_data = <char*>cnp.PyArray_DATA(p)
    cdef char* q_data = <char*>cnp.PyArray_DATA(q)
    cdef char* out_data = <char*>cnp.PyArray_DATA(out)
    if cnp.PyArray_TYPE(p) != type_num or cnp.PyArray_TYPE(q) != type_num:
        raise TypeError("klfast._kernels.rows: p, q and out must share one dtype")
    if type_num != cnp.NPY_DOUBLE and type_num != cnp.NPY_FLOAT:
        raise TypeError("klfast._kernels.rows: dtype must be float32 or float64")
    if p_row_stride % size or q_row_stride % size or out_stride % size:
        raise ValueError("klfast._kernels.rows: strides must be multiples of the item size")
    cdef double started = perf_counter()
    while r0 < n_rows:
        r1 = min(n_rows, r0 + chunk)
        with nogil:
            if type_num == cnp.NPY_DOUBLE:
                n_bad += _run[double](measure, _isa,
                                      <const double*>(p_data + r0 * p_row_stride), p_row_stride // size,
                                      <const double*>(q_data + r0 * q_row_stride), q_row_stride // size,
                                      <double*>(out_data + r0 * out_stride), out_stride // size,
                                      r1 - r0, k, eps, scale, normalize, tol, n_threads)
            else:
                n_bad += _run[float](measure, _isa,
                                     <const float*>(p_data + r0 * p_row_stride), p_row_stride // size,
                                     <const float*>(q_data + r0 * q_row_stride), q_row_stride // size,
                                     <float*>(out_data + r0 * out_stride), out_stride // size,
                                     r1 - r0, k, eps, scale, normalize, tol, n_threads)
        r0 = r1
        if r0 < n_rows:
            PyErr_CheckSignals()
            chunk = _next_chunk(chunk, perf_counter() - started)
            started = perf_counter()
    return n_bad


cdef Py_ssize_t _small = 1 << 16   # klfast._api.MIN_PARALLEL_ELEMENTS


def fast(int measure, object p, object q, object eps, object normalize, double tol):
    """The common small call, in C: None when it does not apply.

    Applies to exact ``numpy.ndarray`` inputs of one dtype (float32 or
    float64), C-contiguous, aligned and native, ``p`` of shape (k,) or
    (n, k) and ``q`` of the same shape or (k,) (``q`` None for entropy), a
    float ``eps``, a bool ``normalize``, fewer than 2**16 elements (one
    thread), and valid values (rows within ``tol`` of summing to 1 unless
    normalizing). Everything else, errors included, goes
    through the general path in klfast._api, which validates and explains.
    """
    cdef cnp.ndarray a, b, out
    cdef int t, nd
    cdef Py_ssize_t n_rows, k, n_bad, q_rs
    cdef cnp.npy_intp dims[1]
    cdef double e
    if q is None:
        q = p
    if not (cnp.PyArray_CheckExact(p) and cnp.PyArray_CheckExact(q)
            and type(eps) is float and type(normalize) is bool):
        return None
    a = <cnp.ndarray>p
    b = <cnp.ndarray>q
    t = cnp.PyArray_TYPE(a)
    nd = cnp.PyArray_NDIM(a)
    if ((t != cnp.NPY_DOUBLE and t != cnp.NPY_FLOAT) or cnp.PyArray_TYPE(b) != t
            or not (cnp.PyArray_ISCARRAY_RO(a) and cnp.PyArray_ISCARRAY_RO(b))
            or not (cnp.PyArray_ISNOTSWAPPED(a) and cnp.PyArray_ISNOTSWAPPED(b))
            or nd < 1 or nd > 2):
        return None
    k = cnp.PyArray_DIM(a, nd - 1)
    n_rows = cnp.PyArray_DIM(a, 0) if nd == 2 else 1
    if n_rows * k >= _small or k == 0:
        return None
    if cnp.PyArray_NDIM(b) == 1:
        if cnp.PyArray_DIM(b, 0) != k:
            return None
    elif not cnp.PyArray_SAMESHAPE(a, b):
        return None
    e = <double>eps
    if not (e >= 0.0 and e <= DBL_MAX):
        return None
    q_rs = k if cnp.PyArray_NDIM(b) == 2 else 0
    dims[0] = n_rows
    out = cnp.PyArray_EMPTY(1, dims, t, 0)
    if t == cnp.NPY_DOUBLE:
        n_bad = _run[double](measure, _isa, <const double*>cnp.PyArray_DATA(a), k,
                             <const double*>cnp.PyArray_DATA(b), q_rs,
                             <double*>cnp.PyArray_DATA(out), 1, n_rows, k, e, 1.0, normalize, tol, 1)
    else:
        n_bad = _run[float](measure, _isa, <const float*>cnp.PyArray_DATA(a), k,
                            <const float*>cnp.PyArray_DATA(b), q_rs,
                            <float*>cnp.PyArray_DATA(out), 1, n_rows, k, e, 1.0, normalize, tol, 1)
    if n_bad:
        return None
    if nd == 1:  # a numpy scalar, as numpy's own reductions return
        return PyArray_Scalar(cnp.PyArray_DATA(out), out.dtype, out)
    return out


def omp_max_threads():
    """omp_get_max_threads() of the calling thread (1 without OpenMP); it
    follows OMP_NUM_THREADS and threadpoolctl limits."""
    return klfast_omp_max_threads()


def build_info():
    """Facts fixed when the module was compiled."""
    return {
        "openmp": bool(KLFAST_HAVE_OPENMP),
        "compile_args": KLFAST_COMPILE_ARGS.decode(),
        "build_isa": KLFAST_BUILD_ISA.decode(),
    }


cdef double _sum_rows(const floating* p, const floating* q, Py_ssize_t n_rows, Py_ssize_t k,
                      int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef double total = 0.0
    for i in prange(n_rows, schedule="static", num_threads=n_threads):
        if floating is double:
            total += klfast_read_sum_f64(p + i * k, q + i * k, k)
        else:
            total += klfast_read_sum_f32(p + i * k, q + i * k, k)
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
