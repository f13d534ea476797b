# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Row kernels of klfast: the divergences and the losses from logits.

Every divergence kernel reduces each row of two (n_rows, k) inputs to one number. A row is
reduced by one thread, left to right, accumulating in float64, so the result
does not depend on the thread count. Threads of klfast's pool (engine/pool.h)
take rows a few at a time (a descheduled thread does not hold up the others);
the GIL is released for the whole computation.

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

Two paths compute a row. The fast path (engine/: vectorised, a hand-written
log, one copy per instruction-set level chosen at run time)
handles every row whose logs see only normal numbers, which is every row when
eps >= 2.2e-308 (so zeros are free). A row where a log would see a zero or a
subnormal (eps below the smallest normal, e.g. eps=0) is flagged and
recomputed by the exact scalar path (_exact.pxd), which uses libm's log.

Inputs given as log-probabilities or logits, and the losses from logits
(``forms_rows``; formulas in engine/loss_rows.h and _exact.pxd), run on the
same levels and the same chunked row loop; a loss row the kernel hands back
goes to the exact scalar path.
"""
import os
from time import perf_counter

from libc.float cimport DBL_MAX
from cpython.exc cimport PyErr_CheckSignals
from cpython.pycapsule cimport PyCapsule_New
from libc.math cimport copysign, fabs, isfinite, ldexp, log, log1p, INFINITY, NAN
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t, uint64_t, uintptr_t
cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    object PyArray_Scalar(void* data, cnp.dtype descr, object base)

cdef extern from "engine/config.h" nogil:
    int KLFAST_HAVE_OPENMP
    const char* KLFAST_COMPILE_ARGS
    const char* KLFAST_COMPILER
    const char* KLFAST_BUILD_ISA
    int klfast_omp_max_threads()

cdef extern from "engine/pool.h" nogil:
    ctypedef Py_ssize_t (*klfast_task)(void* ctx, Py_ssize_t i0, Py_ssize_t i1,
                                       int tid) noexcept nogil
    Py_ssize_t klfast_parallel(klfast_task fn, void* ctx, Py_ssize_t begin, Py_ssize_t end,
                               Py_ssize_t claim, int n_threads)

from _exact cimport (floating, klfast_isa, klfast_forms_params, KLFAST_KL, KLFAST_JEFFREYS,
                     KLFAST_ENTROPY, KLFAST_CROSS_ENTROPY, KLFAST_JS, KLFAST_PROBS,
                     KLFAST_LOG_PROBS, KLFAST_LOGITS, KLFAST_STRIPS_MAX, klfast_isa_levels,
                     KLFAST_LOGITS_SHORT_MAX,
                     klfast_n_levels, klfast_stream_fence,
                     klfast_missing_levels, klfast_cpu_has_level, exact_row, exact_row_strided,
                     exact_loss_row, _fast_or_exact, checked_sums, forms_params)

cdef enum:
    KL = KLFAST_KL
    JEFFREYS = KLFAST_JEFFREYS
    ENTROPY = KLFAST_ENTROPY
    CROSS_ENTROPY = KLFAST_CROSS_ENTROPY
    JS = KLFAST_JS

# Measure and loss codes for the Python layer.
MEASURES = {"kl": KL, "jeffreys": JEFFREYS, "entropy": ENTROPY,
            "cross_entropy": CROSS_ENTROPY, "jensen_shannon": JS}
LOSSES = {"kl": KL, "cross_entropy": CROSS_ENTROPY}
# Input form codes.
FORMS = {"probs": KLFAST_PROBS, "log_probs": KLFAST_LOG_PROBS, "logits": KLFAST_LOGITS}


# C-order rows this short (float64, float32) are scored across lanes
# (engine/lanes_rows.h), where the lane loop measured faster than the row
# loop (benchmarks/lanes_crossover.py, 1 and 2 threads: 0.12-0.5 of its
# time at k = 2-6, float64 k = 8 0.85-0.87 (whole 64-byte rows, which the
# row loop reads without a tail), k = 10 0.80, float32 k = 12 0.75, k = 16 0.93-0.95;
# float32 k = 17 1.03-1.06). With k constant up to 16 at AVX-512 (short_wide):
# float64 k = 11 0.81-0.85, 12 0.86-0.90, 13 0.79-0.96, but 14 1.00-1.03,
# 15 1.11-1.15; float32 k = 11-16 0.56-0.90 (float64 k = 11-13 at AVX2
# 0.85-0.93, SSE2 0.62-0.68). Longer rows go through the row loop. Both give the same bits; set_lanes_max_k lets tests and benchmarks
# pick.
cdef Py_ssize_t _lanes_max_k_f64 = 13
cdef Py_ssize_t _lanes_max_k_f32 = 16
# jensen_shannon's own limits, at the levels where they were measured
# (_js_own_limits): its short float64 rows are faster in the row block
# (lanes / rows, benchmarks/lanes_crossover.py --measure jensen_shannon, 1 /
# 2 threads; AVX-512: k = 2 0.97 / 1.07, 3 1.40 / 1.41, 6 1.56 / 1.45, 10
# 1.48 / 1.51, 13 1.59 / 1.56; AVX2: k = 3 1.08 / 1.21, 10 1.27 / 1.35), and
# so are float32 rows of 16 at AVX-512 (1.11 / 1.08; up to 13 the lanes win,
# k = 2 0.42 / 0.37, 8 0.82 / 0.78, 13 0.89 / 0.90). Elsewhere the lanes won
# (AVX2 float32 k = 16 0.59 / 0.73; SSE2 float64 k = 3 0.80 / 0.80, 10 0.92
# / 0.95, float32 16 0.52 / 0.53): the limits above hold there.
cdef Py_ssize_t _lanes_max_k_js_f64 = 2
cdef Py_ssize_t _lanes_max_k_js_f32 = 13


# Longer C-order rows up to these lengths (float64, float32) are read row by
# row but scored 64 to a call (engine/divergence_rows.h, row_block): one
# call, and the lane sums of 8 rows in the same vector adds, instead of a
# call and three lane sums per row. Measured against the row loop
# (benchmarks/ab_builds.py, 1 and 2 threads, kl and entropy, time of the
# block / the row loop): float32 k = 17 0.83-0.89, 24 0.86-0.90, 32 0.86-0.91,
# 48 0.90-0.95, 64 0.88-0.98; float64 k = 12 0.92-0.96, 24 0.90-0.99, 32
# 0.94-0.98, but k = 20 entropy 1.02-1.03, k = 48 1.00-1.02 and k = 64 kl
# 1.04-1.05. The same bits as the row loop; set_block_max_k lets tests and
# benchmarks pick.
cdef Py_ssize_t _block_max_k_f64 = 32
cdef Py_ssize_t _block_max_k_f32 = 64
# the entropy's own (entropy alone, every row in the block against these
# limits, in turns, 1 / 2 threads: float64 k = 33 0.88 / 0.93, 48 0.97 /
# 0.94, 64 0.95 / 0.93, 100 1.02 / 1.02; float32 k = 65 0.94 / 0.97, 100
# 0.96 / 0.94, 200 1.14 / 1.08, past 64 with two rows read together)
cdef Py_ssize_t _block_max_k_entropy_f64 = 64
cdef Py_ssize_t _block_max_k_entropy_f32 = 100


def set_block_max_k(Py_ssize_t f64, Py_ssize_t f32, entropy_f64=None, entropy_f32=None):
    """Score C-order rows of up to f64 (float64) or f32 (float32) elements,
    beyond the lanes' limits, 64 rows to a call from now on, and the
    entropy's up to entropy_f64, entropy_f32 (default: f64, f32); returns
    the previous four limits. For tests and benchmarks: results do not
    depend on them."""
    global _block_max_k_f64, _block_max_k_f32, _block_max_k_entropy_f64
    global _block_max_k_entropy_f32
    previous = (_block_max_k_f64, _block_max_k_f32, _block_max_k_entropy_f64,
                _block_max_k_entropy_f32)
    _block_max_k_f64, _block_max_k_f32 = f64, f32
    _block_max_k_entropy_f64 = f64 if entropy_f64 is None else entropy_f64
    _block_max_k_entropy_f32 = f32 if entropy_f32 is None else entropy_f32
    return previous


# The entropy of C-order rows as given at least this long (float64,
# float32) is scored 64 rows to a call of the row block too, which reads
# rows together, four of 16 KB or more, else two (row_loop and ROWS_TOGETHER
# in engine/divergence_rows.h): one row is one stream of memory, which the
# prefetchers feed more slowly than two.
# Measured (benchmarks/pair_rows.py: pairs against one row at a time in
# turns, one build; 1 / 2 threads): float32 k = 16,000 0.96 / 0.98, 32,000
# 0.94 / 0.92, 64,000 0.96 / 0.96; but k = 8,000 0.97 / 1.10, 2,048 1.21 /
# 1.08, 1,000 1.44 / 1.41; float64 k = 8,192 1.03 / 0.99, 32,000 1.00 /
# 0.99 (its vector log, not memory, sets its pace): float64 never. The
# same bits; set_pair_min_k lets tests and benchmarks pick.
cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
cdef Py_ssize_t _pair_min_k_f64 = PY_SSIZE_T_MAX
cdef Py_ssize_t _pair_min_k_f32 = 16384


def set_pair_min_k(Py_ssize_t f64, Py_ssize_t f32):
    """Score the entropy of C-order rows of at least f64 (float64) or f32
    (float32) elements rows together from now on; returns the previous
    limits. For tests and benchmarks: results do not depend on it."""
    global _pair_min_k_f64, _pair_min_k_f32
    previous = (_pair_min_k_f64, _pair_min_k_f32)
    _pair_min_k_f64, _pair_min_k_f32 = f64, f32
    return previous


# Short C rows whose output is at least this large (bytes) write their
# results past the cache (Rows.stream): the lines of out are then not read
# before they are written, 160 of the 960 MB that 20,000,000 float64 rows
# of 2 move. An output this size is far from the cache either way. B/A
# (benchmarks/ab_builds.py, 20,000,000 x 2, kl | entropy, 1 / 2 threads):
# float64 0.94 / 0.92 | 0.86 / 0.92, float32 0.87 / 0.92 | 0.90 / 0.98.
# Only rows of up to _stream_max_k: float64 10,000,000 x 10 streamed took
# entropy 1.09 / 1.17 the time (its output a twentieth of the traffic),
# float32 16,000,000 x 4 0.98-1.01.
cdef Py_ssize_t _stream_bytes = 1 << 23
cdef Py_ssize_t _stream_max_k = 2


def set_stream_bytes(Py_ssize_t n):
    """Write the results of short C rows past the cache when the output has
    n bytes or more from now on; returns the previous size. For tests and
    benchmarks: results do not depend on it."""
    global _stream_bytes
    previous = _stream_bytes
    _stream_bytes = n
    return previous


def set_lanes_max_k(Py_ssize_t f64, Py_ssize_t f32, js_f64=None, js_f32=None):
    """Score C-order rows of up to f64 (float64) or f32 (float32) elements
    across lanes from now on, jensen_shannon's up to js_f64 and js_f32 (by
    default the same as the others); returns the previous four limits. For
    tests and benchmarks: results do not depend on it."""
    global _lanes_max_k_f64, _lanes_max_k_f32, _lanes_max_k_js_f64, _lanes_max_k_js_f32
    previous = (_lanes_max_k_f64, _lanes_max_k_f32, _lanes_max_k_js_f64, _lanes_max_k_js_f32)
    _lanes_max_k_f64, _lanes_max_k_f32 = f64, f32
    _lanes_max_k_js_f64 = f64 if js_f64 is None else js_f64
    _lanes_max_k_js_f32 = f32 if js_f32 is None else js_f32
    return previous


# Threads take rows a few at a time (engine/pool.h), about claim_bytes of
# each input per claim (tens of microseconds of work, so a claim costs under
# 1 %): a thread the system has descheduled holds up at most one claim, and
# a free thread takes the rows it would have scored; a thread that has not
# started by the time the claims run out holds up nothing. A row is scored
# by one thread from start to end, so the results do not depend on who
# takes it. set_claim_bytes lets benchmarks pick. (Columns read several
# strips together claim up to KLFAST_STRIPS_MAX strips: see _claim.)
cdef Py_ssize_t _claim_bytes = 1 << 17


def set_claim_bytes(Py_ssize_t n):
    """Claim about n bytes of each input at a time from now on; returns the
    previous size. For benchmarks: results do not depend on it."""
    global _claim_bytes
    previous = _claim_bytes
    _claim_bytes = max(n, 1)
    return previous


cdef inline Py_ssize_t _whole_strips(Py_ssize_t rows) noexcept nogil:
    """rows rounded up to whole strips of lane tiles (the level's
    lanes_*_width distributions: 64 at every level), so that a claim or a
    chunk hands the lanes whole strips. (A partial strip is read tile by tile
    through a buffer, and short rows after the last whole strip go through the
    row loop: the same bits, but (1,000, 50,000) columns in claims of 16 took
    2.3 times as long on 2 threads.)"""
    cdef Py_ssize_t w = max(_isa.lanes_f64_width, _isa.lanes_f32_width)
    return (min(rows, <Py_ssize_t>1 << 40) + w - 1) // w * w


cdef inline Py_ssize_t _claim(Py_ssize_t per_row, bint columns, Py_ssize_t n_rows,
                              int n_threads) noexcept nogil:
    """Rows (of per_row bytes) per claim of a chunk of n_rows, in whole
    strips; columns: up to KLFAST_STRIPS_MAX strips, read together, but no
    more than would leave a thread without a claim of the chunk."""
    cdef Py_ssize_t claim = _whole_strips(max(1, _claim_bytes // max(per_row, 1)))
    cdef Py_ssize_t most = KLFAST_STRIPS_MAX * max(_isa.lanes_f64_width, _isa.lanes_f32_width)
    if columns:
        claim = max(claim, min(most, _whole_strips((n_rows + n_threads - 1) // max(n_threads, 1))))
    return claim


def pool_capsule():
    """This module's klfast_parallel (engine/pool.h) in a capsule named
    "klfast.pool": klfast._pairwise and klfast._diagnostics run their loops
    on it, so that a process has one pool."""
    return PyCapsule_New(<void*>klfast_parallel, "klfast.pool", NULL)


cdef Py_ssize_t _lane_tile(int measure, const klfast_isa* isa,
                           const floating* p, Py_ssize_t p_rs, Py_ssize_t p_es,
                           const floating* q, Py_ssize_t q_rs, Py_ssize_t q_es,
                           floating* out, Py_ssize_t out_s, int n, Py_ssize_t k,
                           double eps, double scale, bint normalize, double tol,
                           bint block, bint stream) noexcept nogil:
    """n <= width distributions from p, q (the strip's first) into
    out[r * out_s], across lanes or (block) 64 rows to a call; the number of
    invalid ones. stream: see Rows.stream."""
    cdef int n_bad = 0
    cdef uint64_t special  # bit r: distribution r takes the exact path
    if floating is double:
        special = (isa.block_f64 if block else isa.lanes_f64)[measure](
            p, p_rs, p_es, q, q_rs, q_es, n, k, eps, normalize, tol, scale, out, out_s, stream,
            &n_bad)
    else:
        special = (isa.block_f32 if block else isa.lanes_f32)[measure](
            p, p_rs, p_es, q, q_rs, q_es, n, k, eps, normalize, tol, scale, out, out_s, stream,
            &n_bad)
    return n_bad + _exact_ones(measure, special, p, p_rs, p_es, q, q_rs, q_es, out, out_s, k,
                               eps, scale, normalize, tol)


cdef Py_ssize_t _exact_ones(int measure, uint64_t special,
                            const floating* p, Py_ssize_t p_rs, Py_ssize_t p_es,
                            const floating* q, Py_ssize_t q_rs, Py_ssize_t q_es,
                            floating* out, Py_ssize_t out_s, Py_ssize_t k,
                            double eps, double scale, bint normalize, double tol) noexcept nogil:
    """The distributions r of a strip whose bit is set in special, by the
    exact path; the number of invalid ones."""
    cdef int r = 0
    cdef Py_ssize_t n_bad = 0
    cdef double v
    while special:
        if special & 1:
            v = exact_row_strided(measure, p + r * p_rs, p_es, q + r * q_rs, q_es, k, eps,
                                  normalize, tol, scale)
            out[r * out_s] = <floating>v
            if v != v:
                n_bad += 1
        special >>= 1
        r += 1
    return n_bad


cdef Py_ssize_t _strips(int measure, const klfast_isa* isa, int ns,
                        const floating* p, Py_ssize_t p_rs, Py_ssize_t p_es,
                        const floating* q, Py_ssize_t q_rs, Py_ssize_t q_es,
                        floating* out, Py_ssize_t out_s, Py_ssize_t k, double eps,
                        double scale, bint normalize, double tol, void* scratch,
                        bint stream) noexcept nogil:
    """ns whole strips of distributions in one call (engine/klfast.h,
    strips: short ones, or columns read together); -1 when the level leaves
    them to the lanes strip by strip, else the number of invalid ones."""
    cdef int n_bad = 0, s, w = isa.lanes_f64_width
    cdef uint64_t special[KLFAST_STRIPS_MAX]
    cdef Py_ssize_t bad
    if floating is double:
        done = isa.strips_f64[measure](p, p_rs, p_es, q, q_rs, q_es, ns, k, eps, normalize, tol,
                                       scale, out, out_s, stream, &n_bad, special, scratch)
    else:
        w = isa.lanes_f32_width
        done = isa.strips_f32[measure](p, p_rs, p_es, q, q_rs, q_es, ns, k, eps, normalize, tol,
                                       scale, out, out_s, stream, &n_bad, special, scratch)
    if not done:
        return -1
    bad = n_bad
    for s in range(ns):
        if special[s]:
            bad += _exact_ones(measure, special[s], p + s * w * p_rs, p_rs, p_es,
                               q + s * w * q_rs, q_rs, q_es, out + s * w * out_s, out_s, k, eps,
                               scale, normalize, tol)
    return bad


cdef inline bint _row_into(int measure, const klfast_isa* isa, const floating* p,
                           const floating* q, floating* out, Py_ssize_t k, double eps,
                           bint normalize, double tol, double scale) noexcept nogil:
    """*out = one row's result (the row loop); True when the row is invalid."""
    cdef double v = _fast_or_exact(measure, isa, p, q, k, eps, normalize, tol, scale)
    out[0] = <floating>v
    return v != v


cdef Py_ssize_t _run(int measure, const klfast_isa* isa,
                     const floating* p, Py_ssize_t p_rs, Py_ssize_t p_es,
                     const floating* q, Py_ssize_t q_rs, Py_ssize_t q_es,
                     floating* out, Py_ssize_t out_s,
                     Py_ssize_t n_rows, Py_ssize_t k,
                     double eps, double scale, bint normalize, double tol,
                     const int64_t* index, void* scratch, bint stream) noexcept nogil:
    """Fill out[i * out_s] for every row; strides in elements (element j of
    row i of p at p[i * p_rs + j * p_es]). Returns the number of invalid
    rows (their result is NaN). Rows whose elements are not contiguous, and
    short rows, go across lanes in tiles; longer C-order rows up to
    _block_max_k_* (and entropy's from _pair_min_k_* on) 64 to a call of
    the row block; the rest of them, and every other row, through the row
    loop: the same bits either way. With an index, the
    rows index[0 .. n_rows) only, each through the row loop (their elements
    contiguous: the caller's word), its result at out[index[i] * out_s].
    Whole strips of short rows or columns go to the kernel up to
    KLFAST_STRIPS_MAX at a time; with scratch (strips_scratch bytes), so do
    longer columns, read together. stream: see Rows.stream."""
    cdef Py_ssize_t i, row, t = 0, ns, bad, n_bad = 0, n_tiles = 0, first = 0
    cdef int width = isa.lanes_f64_width
    cdef Py_ssize_t max_k = _lanes_max_k_f64, block_max_k = _block_max_k_f64
    cdef Py_ssize_t pair_min_k = _pair_min_k_f64
    if floating is float:
        width = isa.lanes_f32_width
        max_k = _lanes_max_k_f32
        block_max_k = _block_max_k_f32
        pair_min_k = _pair_min_k_f32
    if measure == ENTROPY:
        block_max_k = _block_max_k_entropy_f32 if floating is float else _block_max_k_entropy_f64
    if measure == JS and _js_own_limits(isa, floating is float):
        max_k = _lanes_max_k_js_f32 if floating is float else _lanes_max_k_js_f64
    cdef bint rows_contiguous = p_es == 1 and q_es == 1, block = False
    if floating is float:  # float32 inputs: the eps rule with eps in float32
        eps = <float>eps
    if k == 0 or index != NULL:  # nothing to read, or scattered rows: the row loop
        pass
    elif not rows_contiguous:  # every row across lanes, the last tile in part
        n_tiles = (n_rows + width - 1) // width
    elif k <= max_k:
        # whole tiles across lanes, the rest row by row
        n_tiles = n_rows // width
    elif k <= block_max_k or (measure == ENTROPY and not normalize and k >= pair_min_k):
        # every row 64 to a call, the last call in part
        n_tiles = (n_rows + width - 1) // width
        block = True
    if n_tiles > 0 and not block:
        # whole strips, up to KLFAST_STRIPS_MAX to a call: short rows or
        # columns, or (with scratch) longer columns read together
        if measure == ENTROPY and p_rs == 1:
            q, q_rs, q_es = p, p_rs, p_es
        while n_rows // width - t >= 1:
            ns = min(<Py_ssize_t>KLFAST_STRIPS_MAX, n_rows // width - t)
            bad = _strips(measure, isa, <int>ns, p + t * width * p_rs, p_rs, p_es,
                          q + t * width * q_rs, q_rs, q_es, out + t * width * out_s, out_s, k,
                          eps, scale, normalize, tol, scratch, stream)
            if bad < 0:
                break
            n_bad += bad
            t += ns
    while t < n_tiles:
        n_bad += _lane_tile(measure, isa, p + t * width * p_rs, p_rs, p_es,
                            q + t * width * q_rs, q_rs, q_es, out + t * width * out_s,
                            out_s, <int>min(width, n_rows - t * width), k, eps, scale,
                            normalize, tol, block, stream)
        t += 1
    first = min(n_rows, n_tiles * width)
    # (two loops: one loop reading row i or index[i] took 2-3 % longer at k = 8)
    if index == NULL:
        for i in range(first, n_rows):
            if _row_into(measure, isa, p + i * p_rs, q + i * q_rs, out + i * out_s, k, eps,
                         normalize, tol, scale):
                n_bad += 1
    else:
        for i in range(n_rows):
            row = index[i]
            if _row_into(measure, isa, p + row * p_rs, q + row * q_rs, out + row * out_s, k,
                         eps, normalize, tol, scale):
                n_bad += 1
    return n_bad


cdef inline double _forms_fast_or_exact(const klfast_isa* isa, const klfast_forms_params* prm,
                                        const floating* p, const floating* q, floating* g,
                                        Py_ssize_t k) noexcept nogil:
    cdef int special = 0
    cdef double v
    if floating is double:
        v = isa.forms_f64(p, q, g, k, prm, &special)
    else:
        v = isa.forms_f32(p, q, g, k, prm, &special)
    if special:
        v = exact_loss_row(prm, p, q, g, k)
    return v


cdef double _exact_loss_f64(const klfast_forms_params* prm, const double* t, const double* z,
                            double* g, Py_ssize_t k) noexcept nogil:
    return exact_loss_row[double](prm, t, z, g, k)


cdef double _exact_loss_f32(const klfast_forms_params* prm, const float* t, const float* z,
                            float* g, Py_ssize_t k) noexcept nogil:
    return exact_loss_row[float](prm, t, z, g, k)


cdef Py_ssize_t _forms_run(const klfast_isa* isa, const klfast_forms_params* prm,
                           const floating* p, Py_ssize_t p_rs,
                           const floating* q, Py_ssize_t q_rs,
                           floating* g, Py_ssize_t g_rs,
                           double* out, double scale, Py_ssize_t n_rows,
                           Py_ssize_t k, const int64_t* index) noexcept nogil:
    """Fill out[i] (times scale; and row i of g unless g is NULL) for every
    row; strides in elements; with an index, the rows index[0 .. n_rows)
    only. Returns the number of invalid rows (their out[i] is NaN)."""
    cdef Py_ssize_t i, row, n_bad
    cdef double v
    cdef floating* g_row
    # KL, entropy, cross-entropy and the losses of short rows of logits: tiles of
    # rows, one per lane
    if floating is double:
        n_bad = isa.logits_tiles_f64(p, p_rs, q, q_rs, g, g_rs, n_rows, k, prm, index, out,
                                     scale, _exact_loss_f64)
    else:
        n_bad = isa.logits_tiles_f32(p, p_rs, q, q_rs, g, g_rs, n_rows, k, prm, index, out,
                                     scale, _exact_loss_f32)
    if n_bad >= 0:
        return n_bad
    n_bad = 0
    for i in range(n_rows):
        row = index[i] if index != NULL else i
        g_row = g + row * g_rs if g != NULL else NULL
        v = _forms_fast_or_exact(isa, prm, p + row * p_rs, q + row * q_rs, g_row, k) * scale
        out[row] = v
        if v != v:
            n_bad += 1
    return n_bad


# ---- instruction-set level ---------------------------------------------
LEVELS = tuple(klfast_isa_levels[i].name.decode() for i in range(klfast_n_levels))
# Why a level is missing from this build ("" when none is): for show_config.
MISSING_LEVELS = klfast_missing_levels.decode()
cdef const klfast_isa* _isa = klfast_isa_levels[0]
# the AVX2 and AVX-512 levels' tables, or NULL where this build lacks them
cdef const klfast_isa* _avx2_level = NULL
cdef const klfast_isa* _avx512_level = NULL
for _i, _name in enumerate(LEVELS):
    if _name == "avx2":
        _avx2_level = klfast_isa_levels[_i]
    elif _name == "avx512":
        _avx512_level = klfast_isa_levels[_i]
del _i, _name


cdef bint _js_own_limits(const klfast_isa* isa, bint f32) noexcept nogil:
    """True where jensen_shannon's own lanes limits apply: float64 at AVX2
    and AVX-512, float32 at AVX-512."""
    return isa == _avx512_level or (not f32 and isa == _avx2_level)


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
    _isa = klfast_isa_levels[LEVELS.index(name)]


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


cdef struct Rows:
    # One call of rows() or forms_rows(): pointers to row 0, strides in bytes.
    bint forms              # forms_rows()
    int measure
    int type_num            # NPY_DOUBLE or NPY_FLOAT
    Py_ssize_t size         # bytes per element
    int a_kind, b_kind      # -1: p (q) of type_num; 0 float16, 1 bfloat16 (type_num float32)
    float* stage            # with a 16-bit input: 3 k floats per thread (short rows: 48 k)
    char* a                 # p, or the target
    char* b                 # q, or the logits
    char* g                 # the gradient, or NULL
    char* out               # the results (float64 for the losses)
    Py_ssize_t a_rs, b_rs, g_rs, out_s
    Py_ssize_t a_es, b_es   # element strides of p, q in bytes (the losses: contiguous)
    Py_ssize_t k
    double eps, scale, tol
    bint normalize
    klfast_forms_params prm
    int n_threads
    const int64_t* index    # rows index[0 .. n_rows) only (a where= mask), or NULL: every row
    char* scratch           # columns: scratch_bytes per thread (_run's strips), or NULL
    Py_ssize_t scratch_bytes
    # short C rows with an output of _stream_bytes or more: the lanes write
    # whole 64-byte lines of results past the cache, and the rows are handed
    # out from the first row whose result starts a line (_in_chunks)
    bint stream


cdef inline const float* _stage(const klfast_isa* isa, const char* x, Py_ssize_t es, int kind,
                                float* buf, Py_ssize_t k) noexcept nogil:
    """A row of k elements es bytes apart as contiguous float32: in place, or
    widened from 16 bits (kind >= 0) or gathered into buf."""
    cdef Py_ssize_t j
    if kind >= 0:
        isa.widen16(kind, <const unsigned short*>x, es // 2, buf, k)
        return buf
    if es == sizeof(float):
        return <const float*>x
    for j in range(k):
        buf[j] = (<const float*>(x + j * es))[0]
    return buf


cdef inline double _staged_row(Rows* c, const klfast_isa* isa, Py_ssize_t i,
                               float* buf) noexcept nogil:
    cdef const float* p = _stage(isa, c.a + i * c.a_rs, c.a_es, c.a_kind, buf, c.k)
    cdef const float* q = p
    if c.measure != ENTROPY:
        q = _stage(isa, c.b + i * c.b_rs, c.b_es, c.b_kind, buf + c.k, c.k)
    return _fast_or_exact[float](c.measure, isa, p, q, c.k, <float>c.eps, c.normalize, c.tol,
                                 c.scale)


cdef inline double _half_row(Rows* c, const klfast_isa* isa, Py_ssize_t i,
                             float* buf) noexcept nogil:
    """Row i of a call with a 16-bit input. Contiguous float16 rows (p and q)
    of a divergence, or of KL from logits, go to the level's float16 row
    function, which reads them itself; a row it flags (for the exact path,
    or as one it does not score), and every other 16-bit row, is widened
    into buf and scored as a float32 row. The same bits either way."""
    cdef int special = 0
    cdef double v
    cdef double sums[2]
    cdef const float* p
    cdef const float* q
    if c.forms:  # inputs in any form, and the losses (their gradient is float32)
        if c.a_kind == 0 and c.b_kind == 0 and c.g == NULL:  # KL of float16 logits, read as is
            v = isa.forms_f16(<const unsigned short*>(c.a + i * c.a_rs),
                              <const unsigned short*>(c.b + i * c.b_rs), NULL, c.k, &c.prm,
                              &special)
            if not special:
                return v * c.scale
        p = _stage(isa, c.a + i * c.a_rs, c.a_es, c.a_kind, buf, c.k)
        q = _stage(isa, c.b + i * c.b_rs, c.b_es, c.b_kind, buf + c.k, c.k)
        return _forms_fast_or_exact[float](isa, &c.prm, p, q,
                                           <float*>(c.g + i * c.g_rs) if c.g != NULL else NULL,
                                           c.k) * c.scale
    if not (c.a_kind == 0 and c.b_kind == 0 and c.a_es == 2 and c.b_es == 2):
        return _staged_row(c, isa, i, buf)
    v = isa.f16[c.measure](<const unsigned short*>(c.a + i * c.a_rs),
                           <const unsigned short*>(c.b + i * c.b_rs), c.k, <float>c.eps,
                           c.normalize, &special, sums)
    if special:
        return _staged_row(c, isa, i, buf)
    return checked_sums(v, sums, c.tol, c.scale)


# 16-bit short rows of logits (logits_lanes.h's calls) widened together, a
# tile's worth (the widest level's float32 lanes)
cdef enum:
    _STAGED_ROWS = 16


cdef inline void _widen_into(const klfast_isa* isa, const char* x, Py_ssize_t es, int kind,
                             float* dst, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t j
    if kind >= 0:
        isa.widen16(kind, <const unsigned short*>x, es // 2, dst, k)
    else:
        for j in range(k):
            dst[j] = (<const float*>(x + j * es))[0]


cdef Py_ssize_t _staged_tiles(Rows* c, Py_ssize_t r0, Py_ssize_t r1, int tid) noexcept nogil:
    """Rows r0 to r1 of KL, the entropy, the cross-entropy or a loss of short
    rows of logits with a 16-bit input: _STAGED_ROWS rows at a time widened
    into the thread's stage, then one call of the float32 tiles (the bits of
    the rows' float32 values, as on every route), the gradient rows
    (float32) staged too and copied out; the entropy's q is its p, widened
    once. -1, having written nothing, for any other call."""
    cdef float* sp = c.stage + tid * 3 * _STAGED_ROWS * c.k
    cdef bint one = c.prm.measure == KLFAST_ENTROPY
    cdef float* sq = sp if one else sp + _STAGED_ROWS * c.k
    cdef float* sg = sp + 2 * _STAGED_ROWS * c.k if c.g != NULL else NULL
    cdef double res[_STAGED_ROWS]
    cdef Py_ssize_t i = r0, j, m, row, got, n_bad = 0
    if (c.k > KLFAST_LOGITS_SHORT_MAX
            or _isa.logits_tiles_f32(sp, c.k, sq, c.k, sg, c.k, 0, c.k, &c.prm, NULL, res, 1.0,
                                     _exact_loss_f32) < 0):
        return -1
    while i < r1:
        m = min(<Py_ssize_t>_STAGED_ROWS, r1 - i)
        for j in range(m):
            row = c.index[i + j] if c.index != NULL else i + j
            _widen_into(_isa, c.a + row * c.a_rs, c.a_es, c.a_kind, sp + j * c.k, c.k)
            if not one:
                _widen_into(_isa, c.b + row * c.b_rs, c.b_es, c.b_kind, sq + j * c.k, c.k)
        got = _isa.logits_tiles_f32(sp, c.k, sq, c.k, sg, c.k, m, c.k, &c.prm, NULL, res, c.scale,
                                    _exact_loss_f32)
        for j in range(m):
            row = c.index[i + j] if c.index != NULL else i + j
            _store(c, row, res[j])
            if sg != NULL:
                memcpy(c.g + row * c.g_rs, sg + j * c.k, c.k * sizeof(float))
        n_bad += got
        i += m
    return n_bad


cdef Py_ssize_t _run_staged(Rows* c, Py_ssize_t r0, Py_ssize_t r1, int tid) noexcept nogil:
    """Rows r0 to r1 of a divergence whose p or q is stored in 16 bits (see
    _half_row), by thread tid; the number of invalid ones."""
    cdef Py_ssize_t i, row, n_bad = 0
    cdef double v
    if c.forms:
        n_bad = _staged_tiles(c, r0, r1, tid)
        if n_bad >= 0:
            return n_bad
        n_bad = 0
    for i in range(r0, r1):
        row = c.index[i] if c.index != NULL else i
        v = _half_row(c, _isa, row, c.stage + tid * 2 * c.k)
        _store(c, row, v)
        if v != v:
            n_bad += 1
    return n_bad


cdef inline void _store(Rows* c, Py_ssize_t i, double v) noexcept nogil:
    """out[i] = v: float64 for the forms kernel, else the float32 result."""
    if c.forms:
        (<double*>(c.out + i * c.out_s))[0] = v
    else:
        (<float*>(c.out + i * c.out_s))[0] = <float>v


cdef Py_ssize_t _rows_between(void* call, Py_ssize_t r0, Py_ssize_t r1, int tid) noexcept nogil:
    """Rows r0 to r1 of a call (a Rows), at the level in use, by thread tid
    of the call (a klfast_task); the number of invalid ones."""
    cdef Rows* c = <Rows*>call
    if c.a_kind >= 0 or c.b_kind >= 0:
        return _run_staged(c, r0, r1, tid)
    # with an index, the kernels take index[r0 .. r1): row numbers from row 0
    cdef const int64_t* index = c.index + r0 if c.index != NULL else NULL
    cdef Py_ssize_t n = r1 - r0, z = c.size, first = r0 if index == NULL else 0, n_bad
    cdef char* a = c.a + first * c.a_rs
    cdef char* b = c.b + first * c.b_rs
    cdef char* g = c.g + first * c.g_rs if c.g != NULL else NULL
    cdef char* o = c.out + first * c.out_s
    cdef void* scratch = c.scratch + tid * c.scratch_bytes if c.scratch != NULL else NULL
    if not c.forms and c.type_num == cnp.NPY_DOUBLE:
        n_bad = _run[double](c.measure, _isa, <const double*>a, c.a_rs // z, c.a_es // z,
                             <const double*>b, c.b_rs // z, c.b_es // z, <double*>o,
                             c.out_s // z, n, c.k, c.eps, c.scale, c.normalize, c.tol, index,
                             scratch, c.stream)
    elif not c.forms:
        n_bad = _run[float](c.measure, _isa, <const float*>a, c.a_rs // z, c.a_es // z,
                            <const float*>b, c.b_rs // z, c.b_es // z, <float*>o, c.out_s // z,
                            n, c.k, c.eps, c.scale, c.normalize, c.tol, index, scratch,
                            c.stream)
    if not c.forms:
        if c.stream:  # (the pool's end of a claim comes after this)
            klfast_stream_fence()
        return n_bad
    if c.type_num == cnp.NPY_DOUBLE:
        return _forms_run[double](_isa, &c.prm, <const double*>a, c.a_rs // z, <const double*>b,
                                  c.b_rs // z, <double*>g, c.g_rs // z, <double*>o, c.scale, n,
                                  c.k, index)
    return _forms_run[float](_isa, &c.prm, <const float*>a, c.a_rs // z, <const float*>b,
                             c.b_rs // z, <float*>g, c.g_rs // z, <double*>o, c.scale, n, c.k,
                             index)


cdef Py_ssize_t _in_chunks(Rows* c, Py_ssize_t n_rows) except -1:
    """Every row of a call, in chunks without the GIL; between chunks, signal
    handlers run, and one that raises (Ctrl-C) stops the call. Returns the
    number of invalid rows."""
    if c.type_num != cnp.NPY_DOUBLE and c.type_num != cnp.NPY_FLOAT:
        raise TypeError("klfast._kernels: dtype must be float32 or float64")
    cdef Py_ssize_t a_size = c.size if c.a_kind < 0 else 2
    cdef Py_ssize_t b_size = c.size if c.b_kind < 0 else 2
    if (c.a_rs % a_size or c.b_rs % b_size or c.g_rs % c.size or c.out_s % c.size
            or c.a_es % a_size or c.b_es % b_size):
        raise ValueError("klfast._kernels: strides must be multiples of the item size")
    cdef Py_ssize_t n_bad = 0, r0 = 0, r1, chunk = max(1, CHUNK_ELEMENTS // max(c.k, 1))
    cdef bint columns = c.scratch != NULL
    cdef Py_ssize_t claim
    cdef double started = perf_counter()
    if c.stream:  # the rows before the first whole line of results, alone
        r0 = min(n_rows, <Py_ssize_t>((-<uintptr_t>c.out) & 63) // c.size)
        if r0 > 0:
            with nogil:
                n_bad += klfast_parallel(_rows_between, c, 0, r0, r0, 1)
    while r0 < n_rows:
        r1 = min(n_rows, r0 + _whole_strips(chunk))
        claim = _claim(c.k * a_size, columns, r1 - r0, c.n_threads)
        with nogil:
            n_bad += klfast_parallel(_rows_between, c, r0, r1, claim, c.n_threads)
        r0 = r1
        if r0 < n_rows:
            PyErr_CheckSignals()
            chunk = _next_chunk(chunk, perf_counter() - started)
            started = perf_counter()
    return n_bad


def rows(int measure, cnp.ndarray p, Py_ssize_t p_row_stride,
         cnp.ndarray q, Py_ssize_t q_row_stride,
         cnp.ndarray out, Py_ssize_t out_stride,
         Py_ssize_t n_rows, Py_ssize_t k,
         double eps, double scale, bint normalize, double tol, int n_threads,
         object p_element_stride=None, object q_element_stride=None, object index=None):
    """Reduce n_rows rows of length k; private, called by klfast._core.engine.

    ``p``, ``q`` and ``out`` share one dtype (float32 or float64), are aligned
    and in native byte order; with a float32 ``out``, ``p`` and ``q`` may
    also be float16 or bfloat16 (``ml_dtypes``), each row widened into a
    buffer of one row per thread. Strides are in bytes, measured from each
    array's data pointer; row strides may be 0 (one row broadcast against
    many); element strides (None: the item size, contiguous) may be any
    multiple of the item size. Without ``normalize``, a row of p or q whose
    sum is not within ``tol`` of 1 is invalid (``tol=inf``: no check).
    With ``index`` (int64, n_rows), only rows index[0 .. n_rows) are scored
    (and out written), read in place; their elements must be contiguous.
    Returns the number of invalid rows. A signal handler that raises (Ctrl-C)
    stops the call between chunks of rows.
    """
    cdef Rows c
    cdef int type_num = cnp.PyArray_TYPE(out)
    c.a_kind = _kind(p, type_num)
    c.b_kind = _kind(q, type_num)
    c.a_es = cnp.PyArray_ITEMSIZE(p) if p_element_stride is None else p_element_stride
    c.b_es = cnp.PyArray_ITEMSIZE(q) if q_element_stride is None else q_element_stride
    c.index = _row_index(index, n_rows, c.a_es == cnp.PyArray_ITEMSIZE(p)
                         and c.b_es == cnp.PyArray_ITEMSIZE(q))
    if c.a_kind < 0 and c.b_kind < 0:
        return _measure_rows(measure, type_num, <char*>cnp.PyArray_DATA(p), p_row_stride,
                             c.a_es, <char*>cnp.PyArray_DATA(q), q_row_stride, c.b_es,
                             <char*>cnp.PyArray_DATA(out), out_stride, n_rows, k, eps, scale,
                             normalize, tol, n_threads, c.index)
    _measure_call(&c, measure, type_num, <char*>cnp.PyArray_DATA(p), p_row_stride,
                  <char*>cnp.PyArray_DATA(q), q_row_stride, <char*>cnp.PyArray_DATA(out),
                  out_stride, k, eps, scale, normalize, tol, n_threads)
    stage = cnp.PyArray_EMPTY(1, [max(1, n_threads) * 2 * max(k, 1)], cnp.NPY_FLOAT, 0)
    c.stage = <float*>cnp.PyArray_DATA(stage)
    return _in_chunks(&c, n_rows)


cdef inline void _measure_call(Rows* c, int measure, int type_num, char* a, Py_ssize_t a_rs,
                               char* b, Py_ssize_t b_rs, char* out, Py_ssize_t out_s,
                               Py_ssize_t k, double eps, double scale, bint normalize,
                               double tol, int n_threads):
    """The fields of a measure's call (rows) but the inputs' kinds, element
    strides and index: no gradient, stage, scratch or streamed stores."""
    c.forms = False
    c.measure = measure
    c.type_num = type_num
    c.size = 8 if type_num == cnp.NPY_DOUBLE else 4
    c.a, c.a_rs, c.b, c.b_rs = a, a_rs, b, b_rs
    c.g, c.g_rs = NULL, 0
    c.out, c.out_s = out, out_s
    c.k, c.eps, c.scale, c.normalize, c.tol, c.n_threads = k, eps, scale, normalize, tol, n_threads
    c.stage = NULL
    c.scratch, c.scratch_bytes = NULL, 0
    c.stream = False


cdef Py_ssize_t _measure_rows(int measure, int type_num, char* a, Py_ssize_t a_rs,
                              Py_ssize_t a_es, char* b, Py_ssize_t b_rs, Py_ssize_t b_es,
                              char* out, Py_ssize_t out_s, Py_ssize_t n_rows, Py_ssize_t k,
                              double eps, double scale, bint normalize, double tol,
                              int n_threads, const int64_t* index) except -1:
    """n_rows rows of p and q of type_num (float32 or float64; strides in
    bytes, as rows) into out, on n_threads threads in chunks (_in_chunks);
    the number of invalid rows. With streamed stores where the rows are
    short, and scratch for columns."""
    cdef Rows c
    _measure_call(&c, measure, type_num, a, a_rs, b, b_rs, out, out_s, k, eps, scale,
                  normalize, tol, n_threads)
    c.a_kind = c.b_kind = -1
    c.a_es, c.b_es, c.index = a_es, b_es, index
    c.stream = (n_rows * c.size >= _stream_bytes and c.out_s == c.size and c.index == NULL
                and not normalize and c.a_es == c.size and c.b_es == c.size
                and 0 < k <= min(_stream_max_k, _lanes_max_k_f64 if c.size == 8
                                 else _lanes_max_k_f32))
    if c.a_es != c.size and c.a_rs == c.size and c.index == NULL:
        # columns (consecutive distributions): strips read together, with
        # room for any level's (set_isa may run between chunks)
        c.scratch_bytes = max([klfast_isa_levels[i].strips_scratch
                               for i in range(klfast_n_levels)])
        scratch = cnp.PyArray_EMPTY(1, [max(1, n_threads) * c.scratch_bytes],
                                    cnp.NPY_UINT8, 0)
        c.scratch = <char*>cnp.PyArray_DATA(scratch)
    return _in_chunks(&c, n_rows)


cdef const int64_t* _row_index(object index, Py_ssize_t n_rows, bint contiguous) except? NULL:
    """The data of ``index`` (None: NULL): int64, 1-D, contiguous, n_rows
    long, for rows whose elements are contiguous."""
    if index is None:
        return NULL
    cdef cnp.ndarray x = index if isinstance(index, cnp.ndarray) else None
    if not (x is not None and cnp.PyArray_TYPE(x) == cnp.NPY_INT64 and cnp.PyArray_NDIM(x) == 1
            and cnp.PyArray_IS_C_CONTIGUOUS(x) and cnp.PyArray_DIM(x, 0) == n_rows
            and contiguous):
        raise ValueError("klfast._kernels: index must be contiguous int64 of n_rows, for rows "
                         "with contiguous elements")
    return <const int64_t*>cnp.PyArray_DATA(x)


cdef int _kind(cnp.ndarray x, int type_num) except -2:
    """-1 for an input of the arithmetic's type; 0 float16, 1 bfloat16 (float32 arithmetic)."""
    cdef int t = cnp.PyArray_TYPE(x)
    if t == type_num:
        return -1
    if type_num == cnp.NPY_FLOAT and cnp.PyArray_ITEMSIZE(x) == 2:
        if t == cnp.NPY_FLOAT16:
            return 0
        if x.dtype.name == "bfloat16":
            return 1
    raise TypeError("klfast._kernels: p and q must share the arithmetic's dtype, or be "
                    "float16 or bfloat16 with float32 arithmetic")


cdef Py_ssize_t _small = 1 << 16   # klfast._core.engine.MIN_PARALLEL_ELEMENTS


cdef inline void _extent(cnp.ndarray a, char** lo, char** hi):
    """The bytes [lo, hi) the elements of a (not empty) lie in, any strides."""
    cdef char* first = <char*>cnp.PyArray_DATA(a)
    cdef char* last = first
    cdef int d
    cdef Py_ssize_t step
    for d in range(cnp.PyArray_NDIM(a)):
        step = (cnp.PyArray_DIM(a, d) - 1) * cnp.PyArray_STRIDE(a, d)
        if step < 0:
            first += step
        else:
            last += step
    lo[0] = first
    hi[0] = last + cnp.PyArray_ITEMSIZE(a)


cdef inline bint _disjoint(cnp.ndarray a, cnp.ndarray b):
    """The memory of two arrays does not overlap."""
    cdef char *a0
    cdef char *a1
    cdef char *b0
    cdef char *b1
    _extent(a, &a0, &a1)
    _extent(b, &b0, &b1)
    return a1 <= b0 or b1 <= a0


cdef inline bint _distributions(cnp.ndarray x, int nd, int ax, Py_ssize_t* k,
                                Py_ssize_t* n, Py_ssize_t* es, Py_ssize_t* rs):
    """The distributions of x along axis ax of an nd-dimensional call (x of
    nd dimensions, or 1 along the last axis): their length k, their number
    n (1 for one distribution broadcast against all) and the strides in
    elements between their elements (es) and from one to the next (rs, 0
    when n is 1), in the C order of the other axes. False when the layout
    is not one the kernels read as it is: those axes must be one stride (each
    a whole number of the next, as a reshape without a copy)."""
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(x)
    cdef int d = cnp.PyArray_NDIM(x), i
    n[0], rs[0] = 1, 0
    if d == nd:
        k[0] = cnp.PyArray_DIM(x, ax)
        es[0] = cnp.PyArray_STRIDE(x, ax)
        for i in range(nd - 1, -1, -1):  # the other axes, innermost first
            if i == ax or cnp.PyArray_DIM(x, i) == 1:  # (a length-1 axis: any stride)
                continue
            if n[0] == 1:
                rs[0] = cnp.PyArray_STRIDE(x, i)
            elif cnp.PyArray_STRIDE(x, i) != rs[0] * n[0]:
                return False
            n[0] *= cnp.PyArray_DIM(x, i)
    elif d == 1 and ax == nd - 1:  # (k,) against (..., k): one distribution for all
        k[0] = cnp.PyArray_DIM(x, 0)
        es[0] = cnp.PyArray_STRIDE(x, 0)
    else:
        return False
    if k[0] == 1:  # the stride of a length-1 axis is never used (numpy may give any)
        es[0] = item
    if n[0] == 1:
        rs[0] = 0
    if es[0] % item or rs[0] % item:
        return False
    es[0] //= item
    rs[0] //= item
    return True


cdef struct Layout:
    # The inputs of a call as the shortcuts read them (_layout): strides in
    # elements, as _distributions gives them
    int t, nd, ax
    Py_ssize_t k, n, p_n, q_n, p_es, p_rs, q_es, q_rs


cdef bint _layout(cnp.ndarray a, cnp.ndarray b, object axis, Layout* L):
    """The distributions of a and b along axis (an int): a and b of one
    dtype (float32 or float64), aligned and native, read as they are
    (_distributions), their outer shapes equal or one of them one
    distribution, with elements. False for any other call."""
    cdef Py_ssize_t axis_index, q_k
    cdef int i
    L.t = cnp.PyArray_TYPE(a)
    L.nd = max(cnp.PyArray_NDIM(a), cnp.PyArray_NDIM(b))
    if ((L.t != cnp.NPY_DOUBLE and L.t != cnp.NPY_FLOAT) or cnp.PyArray_TYPE(b) != L.t
            or not (cnp.PyArray_ISALIGNED(a) and cnp.PyArray_ISALIGNED(b))
            or not (cnp.PyArray_ISNOTSWAPPED(a) and cnp.PyArray_ISNOTSWAPPED(b))
            or L.nd < 1):
        return False
    try:
        axis_index = axis
    except OverflowError:
        return False
    if not (-L.nd <= axis_index < L.nd):
        return False
    L.ax = <int>(axis_index + L.nd if axis_index < 0 else axis_index)
    if not (_distributions(a, L.nd, L.ax, &L.k, &L.p_n, &L.p_es, &L.p_rs)
            and _distributions(b, L.nd, L.ax, &q_k, &L.q_n, &L.q_es, &L.q_rs)):
        return False
    L.n = max(L.p_n, L.q_n)
    if q_k != L.k or (L.p_n != L.n and L.p_n != 1) or (L.q_n != L.n and L.q_n != 1):
        return False
    for i in range(L.nd):
        if (i != L.ax and L.p_n > 1 and L.q_n > 1
                and cnp.PyArray_DIM(a, i) != cnp.PyArray_DIM(b, i)):
            return False
    return L.k > 0 and L.n > 0


cdef int _form(object form):
    """The FORMS code of an input form's name; -1 for anything else."""
    if type(form) is str:
        code = FORMS.get(form)
        if code is not None:
            return code
    return -1


cdef double _inverse_temperature(object temperature, int t):
    """1 / temperature for a float or int temperature > 0 whose inverse is
    finite in dtype t (validate.check_temperature_dtype); 0 otherwise."""
    cdef double value, inv
    if type(temperature) is not float and type(temperature) is not int:
        return 0.0
    try:
        value = temperature
    except OverflowError:  # an int past the float range
        return 0.0
    if not (value > 0.0 and value <= DBL_MAX):
        return 0.0
    inv = 1.0 / value
    if not inv < (_F32_OVERFLOW if t == cnp.NPY_FLOAT else INFINITY):
        return 0.0
    return inv


# a float64 at or above this rounds to +inf in float32 (validate.F32_OVERFLOW)
cdef double _F32_OVERFLOW = 3.4028235677973366e38


cdef inline void _forms_call(Rows* c, int type_num, char* a, Py_ssize_t a_rs, char* b,
                             Py_ssize_t b_rs, char* g, Py_ssize_t g_rs, char* out,
                             Py_ssize_t k, double scale, klfast_forms_params prm):
    """The fields of a call of the forms kernel (forms_rows): inputs of
    type_num with contiguous elements, g the gradient or NULL, out float64
    and contiguous, every row, one thread."""
    c.forms = True
    c.measure = prm.measure
    c.type_num = type_num
    c.size = 8 if type_num == cnp.NPY_DOUBLE else 4
    c.a_kind = c.b_kind = -1
    c.a, c.a_rs, c.b, c.b_rs, c.g, c.g_rs = a, a_rs, b, b_rs, g, g_rs
    c.a_es = c.b_es = c.size
    c.out, c.out_s = out, sizeof(double)
    c.k, c.scale, c.prm, c.n_threads = k, scale, prm, 1
    c.stage = NULL
    c.index = NULL
    c.scratch, c.scratch_bytes = NULL, 0
    c.stream = False


cdef Py_ssize_t _forms_into(Rows* c, Py_ssize_t n_rows, object num_threads) except -1:
    """Rows 0 .. n_rows of a forms call (_forms_call) in the shortcuts: on
    this thread below _small elements, else as forms_rows runs them (threads,
    chunks, Ctrl-C). The number of invalid rows."""
    if n_rows * c.k >= _small and n_rows >= 2:
        c.n_threads = <int>threads(num_threads, n_rows)
        return _in_chunks(c, n_rows)
    with nogil:
        return _rows_between(c, 0, n_rows, 0)


cdef void _leave_out(const int64_t* ix, Py_ssize_t n_in, Py_ssize_t n, cnp.ndarray values,
                     object grad, Py_ssize_t g_rs, Py_ssize_t row_bytes):
    """The rows r < n not in the increasing index ix[0 .. n_in) (a mask's
    rows left out): NaN in values (C-contiguous, float64 or float32, one per
    row), and with grad, row r of grad (g_rs bytes apart) row_bytes of
    zeros."""
    cdef Py_ssize_t r, j = 0
    cdef bint f64 = cnp.PyArray_TYPE(values) == cnp.NPY_DOUBLE
    cdef char* v = <char*>cnp.PyArray_DATA(values)
    cdef char* g = <char*>cnp.PyArray_DATA(grad) if grad is not None else NULL
    for r in range(n):
        if j < n_in and ix[j] == r:
            j += 1
            continue
        if f64:
            (<double*>v)[r] = NAN
        else:
            (<float*>v)[r] = NAN
        if g != NULL:
            memset(g + r * g_rs, 0, row_bytes)


cdef object _numpy_bool = np.bool_


cdef bint _broadcast(cnp.ndarray mask, int nt, const cnp.npy_intp* shape,
                     Py_ssize_t* strides) noexcept:
    """The byte strides (strides[0 .. nt)) that read ``mask`` broadcast to
    ``shape`` (numpy's rule: trailing axes aligned, 1 or absent repeated,
    stride 0); False when it does not broadcast."""
    cdef int i, j, m = cnp.PyArray_NDIM(mask)
    if m > nt:
        return False
    for i in range(nt):
        j = i - (nt - m)
        if j < 0 or cnp.PyArray_DIM(mask, j) == 1:
            strides[i] = 0
        elif cnp.PyArray_DIM(mask, j) == shape[i]:
            strides[i] = cnp.PyArray_STRIDE(mask, j)
        else:
            return False
    return True


cdef object _chosen_rows(object where, int nd, const cnp.npy_intp* dims, int kept):
    """The rows a where= mask includes, as an int64 array of their numbers
    (row r: element r of the rows' shape, nd dimensions dims, in C order),
    for a mask as validate.check_where takes it: a bool ndarray, list,
    tuple, bool or torch tensor that broadcasts against the result's shape
    with keepdims' 1 at axis ``kept`` (numpy's rule), or else against the
    rows' shape (kept -1: no kept axis). None for anything else (the general path names the
    error)."""
    cdef cnp.npy_intp shape[65]  # (NPY_MAXDIMS + 1)
    cdef Py_ssize_t strides[65]
    cdef Py_ssize_t at[65]
    cdef int i, nt = nd
    if not cnp.PyArray_CheckExact(where):
        if not (type(where) is list or type(where) is tuple or type(where) is bool
                or type(where) is _numpy_bool or type(where).__module__ == "torch"):
            return None
        try:  # (a torch tensor through its __array__, as np.asarray reads it)
            where = cnp.PyArray_FROM_O(where)
        except Exception:
            return None
        if not cnp.PyArray_CheckExact(where):
            return None
    cdef cnp.ndarray mask = <cnp.ndarray>where
    if cnp.PyArray_TYPE(mask) != cnp.NPY_BOOL:
        return None
    for i in range(nd):
        shape[i] = dims[i]
    if kept >= 0:  # the result's shape: its kept 1 too
        for i in range(nd, kept, -1):
            shape[i] = shape[i - 1]
        shape[kept] = 1
        nt = nd + 1
    if not _broadcast(mask, nt, shape, strides):
        if kept < 0:
            return None
        nt = nd  # (a mask of the rows' shape beside keepdims)
        for i in range(nd):
            shape[i] = dims[i]
        if not _broadcast(mask, nt, shape, strides):
            return None
    cdef const char* chosen = <const char*>cnp.PyArray_DATA(mask)
    cdef Py_ssize_t r, n = 1, count = 0, off = 0
    cdef bint flat = True  # the mask's bytes are the rows' in C order
    for i in range(nt - 1, -1, -1):
        flat = flat and (shape[i] == 1 or strides[i] == n)
        n *= shape[i]
        at[i] = 0
    cdef cnp.npy_intp size = n
    if flat:  # (the common mask: counted first, so the index is its own array)
        size = 0
        for r in range(n):
            size += chosen[r] != 0
    cdef cnp.ndarray index = cnp.PyArray_EMPTY(1, &size, cnp.NPY_INT64, 0)
    cdef int64_t* ix = <int64_t*>cnp.PyArray_DATA(index)
    if flat:
        for r in range(n):
            if chosen[r]:
                ix[count] = r
                count += 1
        return index
    for r in range(n):  # the shape's elements in C order: an odometer of at[]
        if chosen[off]:
            ix[count] = r
            count += 1
        i = nt - 1
        while i >= 0:
            at[i] += 1
            off += strides[i]
            if at[i] < shape[i]:
                break
            off -= strides[i] * shape[i]
            at[i] = 0
            i -= 1
    return index[:count]


cdef object _as_input = None  # klfast._core.validate.as_input, at first use


cdef object _listed(object x, str name):
    """An input as the general path reads it: a list or tuple as the array
    numpy makes of it (np.asarray: one of floats then takes the shortcut,
    20 -> 2 us for 11 of them), a torch tensor, a pandas object or an
    ndarray subclass as validate.as_input views it (a CPU torch tensor of
    32 x 11: 27 -> 7 us); anything else (an exact ndarray, None, a dask or
    xarray array: never read twice), and anything as_input refuses, as it
    is (the general path reads it, or explains)."""
    global _as_input
    if cnp.PyArray_CheckExact(x) or x is None:
        return x
    if type(x) is list or type(x) is tuple:
        try:
            return cnp.PyArray_FROM_O(x)
        except Exception:
            return x
    package = type(x).__module__.partition(".")[0]
    if package != "torch" and package != "pandas" and not cnp.PyArray_Check(x):
        return x
    if _as_input is None:
        from klfast._core.validate import as_input
        _as_input = as_input
    try:
        return _as_input(x, name)[0]
    except Exception:
        return x


# numpy converts float16 at about 3.5 ns an element, the general path's
# fixed cost is about 30 us: float16 inputs up to this size are converted
# whole (32 x 11: 31 -> 3.1 us), larger ones read by the general path (64 x
# 1,000: 47 us there, 246 us converted)
cdef Py_ssize_t _HALF_WHOLE = 4096


cdef inline bint _floats(object p, object q):
    """p and q are exact ndarrays of one dtype, float32 or float64, native
    and aligned (the call needs no conversion)."""
    if not (cnp.PyArray_CheckExact(p) and cnp.PyArray_CheckExact(q)):
        return False
    cdef cnp.ndarray a = <cnp.ndarray>p, b = <cnp.ndarray>q
    cdef int t = cnp.PyArray_TYPE(a)
    return (t == cnp.PyArray_TYPE(b) and (t == cnp.NPY_DOUBLE or t == cnp.NPY_FLOAT)
            and cnp.PyArray_ISNOTSWAPPED(a) and cnp.PyArray_ISNOTSWAPPED(b)
            and cnp.PyArray_ISALIGNED(a) and cnp.PyArray_ISALIGNED(b))


cdef tuple _as_float(object p, object q):
    """p and q, not _floats, converted whole to the dtype the call computes
    in (validate.result_dtype: float32 for float16 and float32, float64 for
    the other real dtypes), when they are exact ndarrays of real dtypes
    (bool, int, float) of at most _small elements each (float16:
    _HALF_WHOLE): as the general path
    converts them a block at a time, the same values. Anything else as it
    is: larger inputs are converted there, a block at a time (no copy of
    the input's size), and other dtypes explained."""
    if not (cnp.PyArray_CheckExact(p) and cnp.PyArray_CheckExact(q)):
        return p, q
    cdef cnp.ndarray a = <cnp.ndarray>p, b = <cnp.ndarray>q
    cdef int t
    if (cnp.PyArray_SIZE(a) > _small or cnp.PyArray_SIZE(b) > _small
            or a.dtype.kind not in "biuf" or b.dtype.kind not in "biuf"):
        return p, q
    if ((cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT16 or cnp.PyArray_TYPE(b) == cnp.NPY_FLOAT16)
            and max(cnp.PyArray_SIZE(a), cnp.PyArray_SIZE(b)) > _HALF_WHOLE):
        return p, q  # (the general path reads float16 rows of 16 or more as they are)
    promoted = np.promote_types(a.dtype, b.dtype)
    t = cnp.NPY_FLOAT if promoted.kind == "f" and promoted.itemsize <= 4 else cnp.NPY_DOUBLE
    cdef int flags = cnp.NPY_ARRAY_ALIGNED | cnp.NPY_ARRAY_NOTSWAPPED | cnp.NPY_ARRAY_FORCECAST
    p = cnp.PyArray_FROM_OTF(a, t, flags)
    return p, (p if b is a else cnp.PyArray_FROM_OTF(b, t, flags))


def fast(int measure, object p, object q, object axis, object eps, object base,
         object normalize, object check_sums, object keepdims, object out, object num_threads,
         object input, object temperature, object where, double tol):
    """A call, small or large, in C: None when it does not apply.

    Applies to exact ``numpy.ndarray`` inputs (or lists and tuples, made
    arrays) of one dtype (float32 or float64), aligned and native, or of
    other real dtypes up to _small elements (_as_float), ``p`` and
    ``q`` of one shape (or either
    one distribution: 1-D along the last axis, or of length 1 on every other
    axis; ``q`` None for entropy), with any strides (multiples of the item
    size; negative ones too) where the axes other than ``axis`` are one
    stride (as a reshape without a copy: any C-ordered array, 2-D views of
    any strides), distributions along ``axis`` (an int: any axis), a
    float ``eps`` (below float32's overflow), a bool ``normalize``,
    ``check_sums`` (``tol`` is the sum check's tolerance) and ``keepdims``,
    ``base`` None or a Python float or int (finite, > 0, != 1), an ``out``
    of the result's shape and dtype (C-contiguous, writeable, sharing no
    memory with the inputs) or None, ``num_threads`` None or an int >= 1,
    ``where`` None or a bool mask that broadcasts against the result
    (_chosen_rows: a bool array, list, tuple or bool; distributions with
    contiguous elements; the rows
    left out are NaN in a new result, as they were in ``out``), and valid
    values (rows within ``tol`` of summing to 1 unless normalizing).
    ``input`` is a form's name or a tuple of one per
    input; other than "probs" (the forms kernel: log-probabilities at most
    log1p(tol), validate.LOG_PROB_MAX), the elements of each distribution
    must be contiguous, and a ``temperature`` (float or int) other than 1
    needs logits. Everything else, errors included, goes through the
    general path in klfast._core.measures, which validates and explains.
    Calls of 2**16 elements or more run as the general path runs them (the
    same threads, chunks and Ctrl-C), without its Python: a 1,000 x 100 call
    took 20-25 us more there.
    """
    cdef cnp.ndarray a, b, result, shaped, values, index = None
    cdef Layout L
    cdef int t, nd, ax, out_nd, i, form_p, form_q
    cdef Py_ssize_t n_bad = 0, z, n_in, r, j
    cdef int64_t* ix = NULL
    cdef cnp.npy_intp dims[64]  # (NPY_MAXDIMS)
    cdef double e, scale = 1.0, base_value, inv_t
    cdef bint forms
    cdef Rows c
    p = _listed(p, "p")
    if q is None:
        if measure != ENTROPY:
            return None  # the general path says q is required
        q = p
    q = _listed(q, "q")
    if not _floats(p, q):
        p, q = _as_float(p, q)
    if not (cnp.PyArray_CheckExact(p) and cnp.PyArray_CheckExact(q)
            and type(eps) is float and type(normalize) is bool and type(keepdims) is bool
            and type(check_sums) is bool and type(axis) is int
            and (num_threads is None or (type(num_threads) is int and num_threads >= 1))):
        return None
    if type(input) is str:
        form_p = form_q = _form(input)
    elif type(input) is tuple and len(<tuple>input) == (1 if measure == ENTROPY else 2):
        form_p, form_q = _form(input[0]), _form(input[len(<tuple>input) - 1])
    else:
        return None
    forms = form_p != KLFAST_PROBS or form_q != KLFAST_PROBS
    a = <cnp.ndarray>p
    b = <cnp.ndarray>q
    if not _layout(a, b, axis, &L):
        return None
    inv_t = _inverse_temperature(temperature, L.t)
    if (form_p < 0 or form_q < 0 or inv_t == 0.0
            or (temperature != 1 and form_p != KLFAST_LOGITS and form_q != KLFAST_LOGITS)
            or ((forms or where is not None) and (L.p_es != 1 or L.q_es != 1))):
        return None  # (the forms kernel, and an index, read rows)
    t, nd, ax = L.t, L.nd, L.ax
    # the result's shape: the other axes of an input of nd dimensions (of
    # both alike where neither is one distribution), and keepdims' 1
    shaped = a if cnp.PyArray_NDIM(a) == nd and (L.p_n > 1 or L.q_n == 1) else b
    e = <double>eps
    if not (e >= 0.0 and e < _F32_OVERFLOW):  # float32's overflow: an error there
        return None
    if base is not None:
        if type(base) is not float and type(base) is not int:
            return None
        try:
            base_value = base
        except OverflowError:  # an int past the float range
            return None
        if not (base_value > 0.0 and base_value <= DBL_MAX and base_value != 1.0):
            return None
        scale = 1.0 / log(base_value)
    # the result: the other axes' shape (a scalar for 1-D input); keepdims
    # keeps a 1 where the axis was
    out_nd = nd if keepdims else nd - 1
    dims[0] = 1
    for i in range(nd):
        if i != ax or keepdims:
            dims[i - (i > ax and not keepdims)] = 1 if i == ax else cnp.PyArray_DIM(shaped, i)
    if out is None:
        result = cnp.PyArray_EMPTY(max(out_nd, 1), dims, t, 0)
    else:
        if not cnp.PyArray_CheckExact(out):
            return None
        result = <cnp.ndarray>out
        if (cnp.PyArray_TYPE(result) != t or cnp.PyArray_NDIM(result) != out_nd
                or not cnp.PyArray_ISCARRAY(result) or not cnp.PyArray_ISNOTSWAPPED(result)
                or cnp.PyArray_SIZE(result) != L.n
                or not (_disjoint(result, a) and _disjoint(result, b))):
            return None
        for i in range(out_nd):
            if cnp.PyArray_DIM(result, i) != dims[i]:
                return None
    n_in = L.n
    if where is not None:  # the rows: the other axes' shape (keepdims' 1 left out)
        for i in range(nd - 1):
            dims[i] = cnp.PyArray_DIM(shaped, i + (i >= ax))
        index = _chosen_rows(where, nd - 1, dims, ax if keepdims else -1)
        if index is None:
            return None
        ix = <int64_t*>cnp.PyArray_DATA(index)
        n_in = cnp.PyArray_DIM(index, 0)
        if out is None:  # rows left out are NaN (a caller's out keeps them)
            _leave_out(ix, n_in, L.n, result, None, 0, 0)
    z = cnp.PyArray_ITEMSIZE(a)
    if forms:  # float64 values: into the result, or converted to float32
        values = result
        if t != cnp.NPY_DOUBLE:
            dims[0] = L.n
            values = cnp.PyArray_EMPTY(1, dims, cnp.NPY_DOUBLE, 0)
        # normalized log-probabilities are the log-softmax of logits at T = 1
        _forms_call(&c, t, <char*>cnp.PyArray_DATA(a), L.p_rs * z, <char*>cnp.PyArray_DATA(b),
                    L.q_rs * z, NULL, 0, <char*>cnp.PyArray_DATA(values), L.k, scale,
                    forms_params(measure,
                                 KLFAST_LOGITS if normalize and form_p == KLFAST_LOG_PROBS
                                 else form_p,
                                 KLFAST_LOGITS if normalize and form_q == KLFAST_LOG_PROBS
                                 else form_q,
                                 inv_t if form_p == KLFAST_LOGITS else 1.0,
                                 inv_t if form_q == KLFAST_LOGITS else 1.0, normalize, False,
                                 tol if check_sums else INFINITY, e, log1p(tol), 1.0))
        c.index = ix
        if n_in > 0:
            n_bad = _forms_into(&c, n_in, num_threads)
        if not n_bad and t != cnp.NPY_DOUBLE:
            for j in range(n_in):
                r = ix[j] if ix != NULL else j
                (<float*>cnp.PyArray_DATA(result))[r] = <float>(<double*>cnp.PyArray_DATA(values))[r]
    elif n_in == 0:
        pass
    elif n_in * L.k >= _small and n_in >= 2:  # the general path's threads and chunks
        n_bad = _measure_rows(measure, t, <char*>cnp.PyArray_DATA(a), L.p_rs * z, L.p_es * z,
                              <char*>cnp.PyArray_DATA(b), L.q_rs * z, L.q_es * z,
                              <char*>cnp.PyArray_DATA(result), z, n_in, L.k, e, scale,
                              normalize, tol if check_sums else INFINITY,
                              <int>threads(num_threads, n_in), ix)
    elif t == cnp.NPY_DOUBLE:
        n_bad = _run[double](measure, _isa, <const double*>cnp.PyArray_DATA(a), L.p_rs, L.p_es,
                             <const double*>cnp.PyArray_DATA(b), L.q_rs, L.q_es,
                             <double*>cnp.PyArray_DATA(result), 1, n_in, L.k, e, scale,
                             normalize, tol if check_sums else INFINITY, ix, NULL, False)
    else:
        n_bad = _run[float](measure, _isa, <const float*>cnp.PyArray_DATA(a), L.p_rs, L.p_es,
                            <const float*>cnp.PyArray_DATA(b), L.q_rs, L.q_es,
                            <float*>cnp.PyArray_DATA(result), 1, n_in, L.k, e, scale,
                            normalize, tol if check_sums else INFINITY, ix, NULL, False)
    if n_bad:
        return None  # the general path explains (a caller's out is rewritten there)
    if out is None and out_nd == 0:  # a numpy scalar, as numpy's own reductions return
        return PyArray_Scalar(cnp.PyArray_DATA(result), result.dtype, result)
    return result


cdef double _compensated_sum(const double* x, Py_ssize_t n, double scale) noexcept nogil:
    """The sum of x[i] * scale in the order of i, with Neumaier's
    compensation (about one rounding for the whole sum, whatever n);
    +-inf or NaN as soon as the running sum is."""
    cdef double s = 0.0, c = 0.0, t, v
    cdef Py_ssize_t i
    for i in range(n):
        v = x[i] * scale
        t = s + v
        if fabs(s) >= fabs(v):
            c += (s - t) + v
        else:
            c += (v - t) + s
        s = t
    return s + c if isfinite(s) else s


def reduce_rows(cnp.ndarray rows not None, bint mean, bint to_float32):
    """The sum (or, ``mean``, the mean) of a loss's per-row values ``rows``
    (float64, C-contiguous, any shape), as a float; private, called by
    klfast._core.losses for every loss call, so that the C shortcut and the
    general path reduce alike. Finite rows whose sum overflows are summed
    again scaled by 2^-64: a mean of finite rows is finite, a sum is +-inf
    only when it is past the float64 range. A mean of no rows is NaN.
    ``to_float32``: the result rounded to float32 (past its range: +-inf)."""
    if cnp.PyArray_TYPE(rows) != cnp.NPY_DOUBLE or not cnp.PyArray_IS_C_CONTIGUOUS(rows):
        raise TypeError("klfast._kernels.reduce_rows: rows must be C-contiguous float64")
    cdef const double* x = <const double*>cnp.PyArray_DATA(rows)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(rows), i
    cdef double total
    cdef bint finite = True
    with nogil:
        total = _compensated_sum(x, n, 1.0)
        if not isfinite(total):
            for i in range(n):
                if not isfinite(x[i]):
                    finite = False
                    break
            if finite:  # past the range only on the way: scaled, then back
                total = _compensated_sum(x, n, ldexp(1.0, -64))
                total = ldexp(total / n if mean else total, 64)
                mean = False
    if mean:
        total = total / n if n else NAN
    if to_float32:
        total = copysign(INFINITY, total) if fabs(total) >= _F32_OVERFLOW else <float>total
    return total


def fast_loss(int measure, object target, object logits, object input, object temperature,
              object target_is_logits, object return_grad, object eps, object axis,
              object num_threads, object grad_out, object where, bint mean,
              double log_prob_max):
    """A loss's rows in C, small or large: (rows, grad) or None when the
    call does not apply. rows: float64, of the logits' shape without
    ``axis``; grad: the gradient (None unless ``return_grad``), scaled for a
    mean of the rows if ``mean``.

    Applies as :func:`fast` does, to ``numpy.ndarray`` target and logits
    (or array-likes as _listed reads them) of one dtype (float32 or
    float64) whose classes along ``axis``
    are contiguous, the target of the logits' shape or one distribution for
    all, ``input`` None (``target_is_logits`` a bool), a form's name or a
    tuple of two ending in "logits", ``temperature`` a float or int,
    ``return_grad`` a bool, ``grad_out`` None or an array of the logits'
    shape and dtype (C-contiguous, writeable, sharing no memory with the
    inputs), ``eps`` a float, ``where`` None or a bool mask that broadcasts
    to the rows' shape (_chosen_rows), and rows the kernel finds valid.
    Everything else goes through klfast._core.losses' general path, which
    validates and explains.
    Returns (rows, grad, index, dtype): the rows left out by ``where`` are
    NaN and their gradient rows 0, as there; a mean divides by the rows
    included, whose numbers (flat, in C order) index holds (None: every
    row); dtype is the logits' (the loss's).
    """
    cdef cnp.ndarray a, b, grad = None, rows, index = None
    cdef Layout L
    cdef int form_p, form_q, i
    cdef Py_ssize_t g_k, g_n, g_es, g_rs = 0, z, n_bad = 0, n_in
    cdef int64_t* ix = NULL
    cdef cnp.npy_intp dims[64]  # (NPY_MAXDIMS)
    cdef double e, inv_t
    cdef Rows c
    target = _listed(target, "target")
    logits = _listed(logits, "logits")
    if not (cnp.PyArray_CheckExact(target) and cnp.PyArray_CheckExact(logits)
            and type(eps) is float and type(return_grad) is bool
            and type(target_is_logits) is bool and type(axis) is int
            and (num_threads is None or (type(num_threads) is int and num_threads >= 1))):
        return None
    if input is None:
        form_p, form_q = KLFAST_LOGITS if target_is_logits else KLFAST_PROBS, KLFAST_LOGITS
    elif type(input) is str:
        form_p = form_q = _form(input)
    elif type(input) is tuple and len(<tuple>input) == 2:
        form_p, form_q = _form(input[0]), _form(input[1])
    else:
        return None
    a = <cnp.ndarray>target
    b = <cnp.ndarray>logits
    if (form_p < 0 or form_q != KLFAST_LOGITS or (target_is_logits and form_p != KLFAST_LOGITS)
            or not _layout(a, b, axis, &L) or cnp.PyArray_NDIM(b) != L.nd or L.q_n != L.n
            or L.p_es != 1 or L.q_es != 1):
        return None
    inv_t = _inverse_temperature(temperature, L.t)
    e = <double>eps
    if inv_t == 0.0 or not (e >= 0.0 and e < _F32_OVERFLOW):
        return None
    if return_grad:
        if grad_out is None:
            grad = cnp.PyArray_EMPTY(L.nd, cnp.PyArray_DIMS(b), L.t, 0)
        else:
            if not cnp.PyArray_CheckExact(grad_out):
                return None
            grad = <cnp.ndarray>grad_out
            if (cnp.PyArray_TYPE(grad) != L.t or cnp.PyArray_NDIM(grad) != L.nd
                    or not cnp.PyArray_ISCARRAY(grad) or not cnp.PyArray_ISNOTSWAPPED(grad)
                    or not (_disjoint(grad, a) and _disjoint(grad, b))):
                return None
            for i in range(L.nd):
                if cnp.PyArray_DIM(grad, i) != cnp.PyArray_DIM(b, i):
                    return None
        # its rows as the logits' (the same shape, the same order of rows)
        if (not _distributions(grad, L.nd, L.ax, &g_k, &g_n, &g_es, &g_rs) or g_es != 1
                or g_n != L.n):
            return None
    elif grad_out is not None:
        return None  # the general path says grad_out needs return_grad
    # the per-row values: the logits' shape without axis
    for i in range(L.nd - 1):
        dims[i] = cnp.PyArray_DIM(b, i + (i >= L.ax))
    n_in = L.n
    if where is not None:
        index = _chosen_rows(where, L.nd - 1, dims, -1)
        if index is None:
            return None
        ix = <int64_t*>cnp.PyArray_DATA(index)
        n_in = cnp.PyArray_DIM(index, 0)
    rows = cnp.PyArray_EMPTY(L.nd - 1, dims, cnp.NPY_DOUBLE, 0)
    z = cnp.PyArray_ITEMSIZE(b)
    if index is not None:  # rows left out: NaN, their gradient rows 0
        _leave_out(ix, n_in, L.n, rows, grad, g_rs * z, L.k * z)
    _forms_call(&c, L.t, <char*>cnp.PyArray_DATA(a), L.p_rs * z, <char*>cnp.PyArray_DATA(b),
                L.q_rs * z, <char*>cnp.PyArray_DATA(grad) if grad is not None else NULL,
                g_rs * z, <char*>cnp.PyArray_DATA(rows), L.k, 1.0,
                forms_params(measure, form_p, KLFAST_LOGITS,
                             inv_t if form_p == KLFAST_LOGITS else 1.0, inv_t, False, True,
                             INFINITY, e, log_prob_max,
                             inv_t / n_in if mean and n_in > 0 else inv_t))
    c.index = ix
    if n_in > 0:
        n_bad = _forms_into(&c, n_in, num_threads)
    if n_bad:
        return None  # the general path explains
    return rows, grad, index, b.dtype


def omp_max_threads():
    """omp_get_max_threads() of the calling thread (1 without OpenMP); it
    follows OMP_NUM_THREADS and threadpoolctl limits."""
    return klfast_omp_max_threads()


def _allowed_cpus():
    """The cores this process may run on (at import)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


cdef Py_ssize_t _cpus = _allowed_cpus()


cpdef Py_ssize_t default_threads():
    """Threads a call with num_threads=None may use: the smaller of the
    cores this process may run on and OpenMP's limit (omp_max_threads)."""
    return max(1, min(_cpus, <Py_ssize_t>klfast_omp_max_threads()))


cpdef Py_ssize_t threads(object num_threads, Py_ssize_t n_rows):
    """Threads for n_rows rows that are worth sharing: num_threads (an int
    >= 1, or None: default_threads()), no more than the cores (more only
    adds overhead) or the rows."""
    n = default_threads() if num_threads is None else min(num_threads, _cpus)
    return max(1, min(<Py_ssize_t>n, n_rows))


def build_info():
    """Facts fixed when the module was compiled."""
    return {
        "openmp": bool(KLFAST_HAVE_OPENMP),
        "compile_args": KLFAST_COMPILE_ARGS.decode(),
        "compiler": KLFAST_COMPILER.decode(),
        "build_isa": KLFAST_BUILD_ISA.decode(),
    }


def forms_rows(int measure, cnp.ndarray p, Py_ssize_t p_row_stride,
               cnp.ndarray q, Py_ssize_t q_row_stride,
               object grad, Py_ssize_t grad_row_stride,
               cnp.ndarray out, Py_ssize_t n_rows, Py_ssize_t k,
               int form_p, int form_q, double inv_t_p, double inv_t_q, bint normalize,
               bint loss, double tol, double eps, double log_prob_max, double grad_scale,
               double scale, int n_threads, object index=None):
    """Per-row values of n_rows rows of length k with inputs in any form
    (engine/loss_rows.h: the divergences of log-probabilities and logits,
    and the losses with their gradient); private, called by the Python layer.

    ``p``, ``q`` and ``grad`` (an array or None; only for a loss) share one
    dtype (float32 or float64), are aligned and in native byte order; row
    elements are contiguous. Strides are in bytes from each array's data
    pointer; row strides may be 0 (one row for all). ``out`` is a contiguous
    float64 array of n_rows; each value is multiplied by ``scale``.
    ``form_p``, ``form_q`` are FORMS codes; ``inv_t_*`` 1/T for logits (1
    otherwise); ``loss``: q is not floored at eps, and a row the kernel
    hands back takes the exact scalar path; ``tol``: how far from 1 sums of
    probabilities (unless ``normalize``) and of exps of log-probabilities may
    be (inf: no check); ``log_prob_max``: the largest valid log-probability;
    ``grad_scale`` multiplies the gradient (1/T, times 1/n for a mean).
    ``index``: only some rows, as in ``rows`` (``out`` then holds every row).
    Returns the number of invalid rows; Ctrl-C stops the call between chunks
    of rows, as in ``rows``.
    """
    cdef Rows c
    # the arithmetic's dtype: 16-bit inputs are widened to float32
    cdef int type_num = (cnp.PyArray_TYPE(q) if cnp.PyArray_ITEMSIZE(q) != 2
                         else cnp.PyArray_TYPE(p))
    if cnp.PyArray_ITEMSIZE(p) == 2 and cnp.PyArray_ITEMSIZE(q) == 2:
        type_num = cnp.NPY_FLOAT
    cdef char* g = NULL
    if grad is not None:
        if cnp.PyArray_TYPE(<cnp.ndarray>grad) != type_num:
            raise TypeError("klfast._kernels.forms_rows: grad must have the inputs' dtype")
        g = <char*>cnp.PyArray_DATA(<cnp.ndarray>grad)
    if (cnp.PyArray_TYPE(out) != cnp.NPY_DOUBLE or not cnp.PyArray_IS_C_CONTIGUOUS(out)
            or cnp.PyArray_SIZE(out) < n_rows):
        raise ValueError("klfast._kernels.forms_rows: out must be contiguous float64 of n_rows")
    _forms_call(&c, type_num, <char*>cnp.PyArray_DATA(p), p_row_stride,
                <char*>cnp.PyArray_DATA(q), q_row_stride, g, grad_row_stride if g != NULL else 0,
                <char*>cnp.PyArray_DATA(out), k, scale,
                forms_params(measure, form_p, form_q, inv_t_p, inv_t_q, normalize, loss, tol,
                             eps, log_prob_max, grad_scale))
    c.n_threads = n_threads
    c.a_kind = _kind(p, type_num)
    c.b_kind = _kind(q, type_num)
    c.a_es = cnp.PyArray_ITEMSIZE(p)
    c.b_es = cnp.PyArray_ITEMSIZE(q)
    c.index = _row_index(index, n_rows, True)  # (forms rows: contiguous elements)
    if c.a_kind < 0 and c.b_kind < 0:
        return _in_chunks(&c, n_rows)
    # (short rows: _STAGED_ROWS rows of each input and the gradient per thread,
    # _staged_tiles)
    stage = cnp.PyArray_EMPTY(1, [max(1, n_threads) * 3 * max(k, 1)
                                  * (_STAGED_ROWS if k <= KLFAST_LOGITS_SHORT_MAX else 1)],
                              cnp.NPY_FLOAT, 0)
    c.stage = <float*>cnp.PyArray_DATA(stage)
    return _in_chunks(&c, n_rows)
