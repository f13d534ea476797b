"""All pairs: ``pairwise(P, Q)[i, j] = D(P_i || Q_j)``, as a matrix or as
each row's ``topk`` nearest.

The pairs are computed a tile at a time (a band of rows of P against a block
of rows of Q), so the full matrix is never held unless it is the result, and
Ctrl-C is looked at between tiles. kl, cross_entropy and jeffreys come from
matrix products of the rows with the logs of the other side (numpy's BLAS);
a pair whose rounding bound is not small against its value is recomputed
exactly (klfast._pairwise explains the bound). jensen_shannon, and every
measure when the product form does not apply, calls the row function of the
instruction-set level in use for each pair.
"""
import math
import operator
import threading

import numpy as np

from .. import _kernels, _pairwise
from . import engine
from .validate import (
    DEFAULT_EPS,
    SUM_TOLERANCE,
    as_input,
    check_eps,
    check_eps_dtype,
    check_flag,
    check_num_threads,
    check_out,
    log_scale,
    result_dtype,
)

MEASURES = ("kl", "jeffreys", "cross_entropy", "jensen_shannon")
ALIASES = {"js": "jensen_shannon", "ce": "cross_entropy"}
SYMMETRIC = ("jeffreys", "jensen_shannon")

# A tile: at most TILE_ROWS rows of P against TILE_COLS rows of Q (16 MB of
# float64 products); the top-k heaps are per band of rows. A tile holds at
# most about PRODUCT_WORK (matrix products) or DIRECT_WORK (pair by pair)
# element operations, so Ctrl-C is looked at every ~0.1 s whatever k is.
TILE_ROWS = 1024
TILE_COLS = 2048
PRODUCT_WORK = 1 << 30
DIRECT_WORK = 1 << 26
# Products of at least this many multiply-adds run their bands on Python
# threads (see _Run._for_bands); below, threadpoolctl's setup would cost more.
POOL_WORK = 1 << 27

U = 2.0 ** -53  # float64's unit roundoff
# A product's value is kept when its rounding bound is below this fraction
# of it (float64 results), or far below float32's own rounding.
TOLERANCE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2.0 ** -32}
# The product form needs logs of normal numbers and products far from overflow.
PRODUCT_MIN_EPS = 2.0 ** -1021
PRODUCT_MAX_ENTRY = 2.0 ** 500


def _is_dask(x):
    return type(x).__module__.split(".")[0] == "dask"


def check_measure(measure):
    if not isinstance(measure, str):
        raise TypeError(f"measure must be a str, got {type(measure).__name__}")
    name = ALIASES.get(measure, measure)
    if name not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(map(repr, MEASURES))} (or 'js'), "
                         f"got {measure!r}")
    return name


def check_topk(topk):
    if topk is None:
        return None
    if isinstance(topk, bool):
        raise TypeError("topk must be None or an int >= 1, got bool")
    try:
        topk = operator.index(topk)
    except TypeError:
        raise TypeError(f"topk must be None or an int >= 1, got {type(topk).__name__}") from None
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    return topk


def _as_rows(x, name):
    arr, _ = as_input(x, name)
    if arr.ndim != 2:
        hint = f" (one distribution: {name}[None, :])" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_rows, k), one distribution per row; got shape "
                         f"{arr.shape}{hint}")
    return arr


def _kernel_rows(x, dtype):
    """``x`` as C-contiguous rows of ``dtype``: itself, or a copy."""
    if engine._kernel_ready(x, dtype) and x.dtype.isnative:
        return x
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(x, dtype=dtype)


def _validate(x, name, eps, normalize, check_sums, num_threads, dtype):
    """A ValueError naming the first invalid row of ``x``, as klfast.entropy
    explains it (negative, NaN or inf entry; a sum that is not 1)."""
    job = engine.MeasureJob("entropy", eps, 1.0, normalize, check_sums, num_threads, dtype,
                            (name,))
    engine.run(job, (x,), np.empty(x.shape[0], dtype=dtype))


class _Side:
    """The per-row numbers of one side of the pairs (float64 vectors)."""

    def __init__(self, rows, eps, normalize, check_sums, logs, num_threads):
        # rows: C-contiguous float32 or float64, not yet validated
        n, k = rows.shape
        sums = np.sum(rows, axis=1, dtype=np.float64)
        ones = np.ones(n)
        with np.errstate(divide="ignore", over="ignore"):  # invalid rows: see surely_valid
            self.inv_s = 1.0 / sums if normalize else ones
        self.w = ones if normalize else sums
        self.a = np.zeros(n)
        self.a_abs = np.zeros(n)
        self.lpos = np.zeros(n)
        self.logs = np.empty((n, k)) if logs else None
        threads = engine.resolve_threads(num_threads, n, k)
        _pairwise.row_stats(rows, eps, self.inv_s, self.a, self.a_abs, self.logs, self.lpos,
                            threads)
        # True when every row is surely valid (klfast's rules: entries in
        # [0, inf), sums within SUM_TOLERANCE of 1, or positive and finite when
        # normalizing), with a margin for the sums being added in another order
        # than the kernels add them; else _validate decides (and names the row).
        if normalize:
            sums_ok = np.all((sums > 1e-300) & (sums <= 1e300))
        elif check_sums:
            sums_ok = np.all(np.abs(sums - 1.0) <= 0.5 * SUM_TOLERANCE)
        else:
            sums_ok = True
        self.surely_valid = bool(sums_ok and not np.isnan(self.a_abs).any())

    def stats(self):
        return (self.a, self.a_abs, self.inv_s, self.w, self.lpos, self.logs)


def _blas_limits(num_threads):
    """threadpoolctl's limit on the BLAS threads for this call (when given
    and threadpoolctl is installed), else a no-op."""
    import contextlib

    if num_threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=num_threads, user_api="blas")


def pairwise(P, Q=None, measure="kl", *, eps=DEFAULT_EPS, base=None, normalize=False,
             check_sums=True, distance=False, out=None, topk=None, num_threads=None):
    if _is_dask(P) or _is_dask(Q):
        from .. import dask as klfast_dask

        return klfast_dask.pairwise(P, Q, measure, eps=eps, base=base, normalize=normalize,
                                    check_sums=check_sums, distance=distance, out=out,
                                    topk=topk, num_threads=num_threads)
    return compute(P, Q, measure, eps=eps, base=base, normalize=normalize,
                   check_sums=check_sums, distance=distance, out=out, topk=topk,
                   num_threads=num_threads)[0]


def compute(P, Q=None, measure="kl", *, eps=DEFAULT_EPS, base=None, normalize=False,
            check_sums=True, distance=False, out=None, topk=None, num_threads=None):
    """:func:`klfast.pairwise` and the number of pairs recomputed exactly
    (for the benchmarks and tests)."""
    measure = check_measure(measure)
    normalize = check_flag(normalize, "normalize")
    check_sums = check_flag(check_sums, "check_sums")
    distance = check_flag(distance, "distance")
    eps = check_eps(eps)
    scale = log_scale(base)
    num_threads = check_num_threads(num_threads)
    topk = check_topk(topk)
    if distance and measure != "jensen_shannon":
        raise ValueError(f"distance=True is for measure='jensen_shannon' (the square root of "
                         f"the divergence is a metric), got measure={measure!r}")
    if distance and scale < 0:
        raise ValueError(f"distance=True needs base > 1 (or None), got {base}: in a base "
                         f"below 1 the divergence is negative and has no square root")
    if topk is not None and out is not None:
        raise ValueError("out= takes the full (n, m) matrix; with topk= the indices and "
                         "values are new arrays: pass one of them")
    if measure == "jensen_shannon":
        eps = 0.0  # JS takes no floor
    P_arr = _as_rows(P, "P")
    self_pairs = Q is None
    Q_arr = P_arr if self_pairs else _as_rows(Q, "Q")
    if Q_arr.shape[1] != P_arr.shape[1]:
        raise ValueError(f"P and Q must have the same number of columns (the length of each "
                         f"distribution): shapes {P_arr.shape} and {Q_arr.shape}")
    dtype = result_dtype(P_arr, Q_arr)
    check_eps_dtype(eps, dtype)
    n, k = P_arr.shape
    m = Q_arr.shape[0]
    if topk is not None and topk > m:
        raise ValueError(f"topk={topk} is more than the {m} rows of "
                         f"{'P' if self_pairs else 'Q'}")
    if out is not None:
        check_out(out, (n, m), dtype)

    _pairwise.use_level(_kernels.get_isa())
    P_rows = _kernel_rows(P_arr, dtype)
    Q_rows = P_rows if self_pairs else _kernel_rows(Q_arr, dtype)
    eps_applied = float(np.float32(eps)) if dtype == np.float32 else eps

    use_products = measure != "jensen_shannon" and eps_applied >= PRODUCT_MIN_EPS and k > 0
    if use_products and not normalize and not check_sums and n and m:
        use_products = max(float(P_rows.max()), float(Q_rows.max())) <= PRODUCT_MAX_ENTRY
    run = _Run(measure, P_rows, Q_rows, self_pairs, use_products, eps_applied, normalize,
               check_sums, scale, dtype, num_threads)
    # The products' per-row pass over P and Q shows valid rows, sparing a
    # second pass; any doubt (and the other paths) goes to _validate, which
    # raises naming the first invalid row.
    p_valid, q_valid = run.surely_valid()
    if not p_valid:
        _validate(P_arr, "P", eps, normalize, check_sums, num_threads, dtype)
    if not self_pairs and not q_valid:
        _validate(Q_arr, "Q", eps, normalize, check_sums, num_threads, dtype)

    if topk is None:
        result = out
        if out is None or any(np.may_share_memory(out, x) for x in (P_arr, Q_arr)):
            result = np.empty((n, m), dtype=dtype)
        with _blas_limits(num_threads):
            run.matrix(result)
        if distance:
            np.sqrt(result, out=result)
        if out is not None and result is not out:
            out[...] = result
            result = out
        return result, run.recomputed
    indices = np.empty((n, topk), dtype=np.int64)
    values = np.empty((n, topk), dtype=dtype)
    with _blas_limits(num_threads):
        run.nearest(indices, values, distance)
    return (indices, values), run.recomputed


class _Run:
    """One call: the prepared sides and the tile loop."""

    def __init__(self, measure, P, Q, self_pairs, use_products, eps, normalize, check_sums,
                 scale, dtype, num_threads):
        self.measure = measure
        self.code = _pairwise.MEASURES[measure]
        self.P, self.Q = P, Q
        self.self_pairs = self_pairs
        self.use_products = use_products
        self.eps, self.normalize, self.scale = eps, normalize, scale
        self.dtype = dtype
        self.num_threads = num_threads
        self.recomputed = 0
        self.cancelled = False  # set when the caller stops waiting for the band threads
        self._buffers = threading.local()
        self.k = P.shape[1]
        work = (PRODUCT_WORK if use_products else DIRECT_WORK) // max(self.k, 1)
        self.cols = max(1, min(TILE_COLS, Q.shape[0], work // 8))
        self.rows = max(1, min(TILE_ROWS, work // self.cols))
        # Q=None: symmetric measures compute each pair once (j > i) and mirror
        self.mirror = self_pairs and measure in SYMMETRIC
        # KL(p || p) = 0 exactly, and so are the symmetric measures' diagonals
        self.zero_diagonal = self_pairs and measure != "cross_entropy"
        if use_products:
            jeffreys = measure == "jeffreys"
            self.p_side = _Side(P, eps, normalize, check_sums, logs=jeffreys,
                                num_threads=num_threads)
            self.q_side = self.p_side if self_pairs and jeffreys else \
                _Side(Q, eps, normalize, check_sums, logs=True, num_threads=num_threads)
            if jeffreys:  # products of logs of P with rows of Q, in float64
                self.Q64 = Q if Q.dtype == np.float64 else Q.astype(np.float64)
            self.tol = TOLERANCE[dtype]
            self.gamma = (self.k + 8) * U / (1 - (self.k + 8) * U)

    def surely_valid(self):
        """(P's rows, Q's rows) are surely valid, as the products' pass saw them."""
        if not self.use_products:
            return False, False
        return self.p_side.surely_valid, self.q_side.surely_valid

    def _threads(self, ni, nj):
        return engine.resolve_threads(self.num_threads, ni, nj * max(self.k, 1))

    def _band(self, i0, i1):
        """Rows i0:i1 of P as float64 (a view when they are)."""
        band = self.P[i0:i1]
        return band if band.dtype == np.float64 else band.astype(np.float64)

    def _buffer(self, name, size, dtype=np.float64):
        """A scratch array of this thread (each band thread has its own)."""
        buffers = self._buffers.__dict__
        if name not in buffers or buffers[name].size < size:
            buffers[name] = np.empty(size, dtype=dtype)
        return buffers[name][:size]

    def tile(self, band, i0, j0, target, threads, upper_only=False):
        """Fill ``target`` (ni x nj view) with the pairs (i0 + ii, j0 + jj);
        the number recomputed."""
        ni, nj = target.shape
        if not self.use_products:
            _pairwise.direct(self.code, self.P, self.Q, i0, j0, target, self.eps,
                             self.normalize, self.scale, self.zero_diagonal, upper_only, threads)
            return 0
        if target.dtype == np.float64 and target.strides[1] == 8:
            B = target  # float64: the products go straight into the result, finished in place
        else:
            B = self._buffer("products", ni * nj).reshape(ni, nj)
        np.matmul(band, self.q_side.logs[j0:j0 + nj].T, out=B)
        B2 = None
        if self.measure == "jeffreys":  # logs of P times the rows of Q
            B2 = self._buffer("products2", ni * nj).reshape(ni, nj)
            np.matmul(self.p_side.logs[i0:i0 + ni], self.Q64[j0:j0 + nj].T, out=B2)
        return _pairwise.finish(
            self.code, B, B2, self.P, self.p_side.stats(), self.Q, self.q_side.stats(), i0, j0,
            target, self.eps, self.scale, self.tol, self.gamma, 2 * U, self.zero_diagonal,
            upper_only, threads)

    def _for_bands(self, n, band_work):
        """Call ``band_work(i0, i1, threads)`` (which returns the pairs it
        recomputed) for each band of rows of P.

        Product tiles alternate numpy's BLAS threads and klfast's threads,
        and idle threads spin or yield for a while after their work, taking
        the core the other needs (a 2-core top-k ran 2.7x slower on two
        threads than on one, with OpenMP's threads then). So with
        threadpoolctl (to hold BLAS to one thread), whole bands run on
        Python threads instead, each with one-thread BLAS and kernels: no
        thread spins while another works."""
        threads = self._threads(n, self.Q.shape[0])
        pooled = (self.use_products and threads > 1 and n >= 2 * threads
                  and n * self.Q.shape[0] * self.k >= POOL_WORK and _threadpool_limits())
        rows = self.rows
        if pooled:  # several bands per thread, so that they end together
            rows = max(1, min(rows, -(-n // (4 * threads))))
        bands = [(i0, min(n, i0 + rows)) for i0 in range(0, n, rows)]
        if not pooled:
            for i0, i1 in bands:
                self.recomputed += band_work(i0, i1, None)
            return
        from concurrent.futures import ThreadPoolExecutor

        with _threadpool_limits()(limits=1, user_api="blas"), \
                ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(band_work, i0, i1, 1) for i0, i1 in bands]
            try:
                for future in futures:
                    self.recomputed += future.result()
            except BaseException:  # Ctrl-C or an error: the threads stop at their next tile
                self.cancelled = True
                raise

    def matrix(self, out):
        n, m = out.shape

        def band_work(i0, i1, threads):
            recomputed = 0
            band = self._band(i0, i1) if self.use_products else None
            for j0 in range(i0 if self.mirror else 0, m, self.cols):
                if self.cancelled:
                    return recomputed
                j1 = min(m, j0 + self.cols)
                recomputed += self.tile(band, i0, j0, out[i0:i1, j0:j1],
                                        threads or self._threads(i1 - i0, j1 - j0),
                                        upper_only=self.mirror)
            if self.mirror:  # rows i1: of these columns are no other band's to write
                block = out[i0:i1, i0:i1]
                lower = np.tril_indices(i1 - i0, -1)
                block[lower] = block.T[lower]
                out[i1:, i0:i1] = out[i0:i1, i1:].T
            return recomputed

        self._for_bands(n, band_work)

    def nearest(self, indices, values, distance):
        n, kk = indices.shape
        m = self.Q.shape[0]

        def band_work(i0, i1, threads):
            recomputed = 0
            band = self._band(i0, i1) if self.use_products else None
            heap_values = np.empty((i1 - i0, kk))
            heap_indices = np.empty((i1 - i0, kk), dtype=np.int64)
            heap_sizes = np.zeros(i1 - i0, dtype=np.int64)
            push_threads = threads or self._threads(i1 - i0, kk)
            for j0 in range(0, m, self.cols):
                if self.cancelled:
                    return recomputed
                j1 = min(m, j0 + self.cols)
                size = (i1 - i0) * (j1 - j0)
                target = self._buffer("tile", size, self.dtype).reshape(i1 - i0, j1 - j0)
                recomputed += self.tile(band, i0, j0, target,
                                        threads or self._threads(i1 - i0, j1 - j0))
                if distance:
                    np.sqrt(target, out=target)
                _pairwise.topk_push(target, j0, heap_values, heap_indices, heap_sizes,
                                    push_threads)
            _pairwise.topk_sort(heap_values, heap_indices, push_threads)
            indices[i0:i1] = heap_indices
            values[i0:i1] = heap_values
            return recomputed

        self._for_bands(n, band_work)


def _threadpool_limits():
    """threadpoolctl's ``threadpool_limits``, or None when it is not installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits


pairwise.__doc__ = """Divergence of every row of P against every row of Q.

    ``result[i, j] = D(P[i] || Q[j])``: row ``i`` of the result scores the
    ``i``-th distribution of ``P`` against each distribution of ``Q``. For
    the asymmetric measures the first argument is the one averaged over:
    ``pairwise(P, Q, "kl")[i, j] == kl(P[i], Q[j])`` and
    ``pairwise(P, Q, "kl").T == pairwise(Q, P, "kl")``.

    Parameters
    ----------
    P : array_like of shape (n, k)
        Distributions, one per row.
    Q : array_like of shape (m, k), optional
        Distributions, one per row. ``None``: P against itself; the
        symmetric measures (jeffreys, jensen_shannon) then compute each pair
        once, so the result is exactly symmetric, and its diagonal (and
        kl's) is exactly 0.
    measure : {"kl", "jeffreys", "cross_entropy", "jensen_shannon"}, default "kl"
        ``"js"`` is short for ``"jensen_shannon"``. The formulas and the
        epsilon rule are those of :func:`klfast.kl` and the others.
    eps : float, default klfast.DEFAULT_EPS (1e-12)
        Floor inside the logarithms, ``p~ = max(p, eps)``; ignored by
        jensen_shannon. ``eps=0`` gives exact values (possibly ``+inf``) by
        the slower per-pair path.
    base : float, optional
        Logarithm base; ``None`` gives nats, ``2`` bits.
    normalize : bool, default False
        Divide each row by its sum first (counts).
    check_sums : bool, default True
        Without ``normalize``, every row must sum to 1 within
        :data:`klfast.SUM_TOLERANCE`.
    distance : bool, default False
        With jensen_shannon, the square root of the divergence (a metric).
    out : ndarray of shape (n, m), optional
        Array of the result's dtype to fill and return (not with ``topk``).
    topk : int, optional
        Return, for each row of P, the ``topk`` smallest divergences over the
        rows of Q and their indices, ascending (ties by the smaller index),
        without holding the (n, m) matrix: memory O(n * topk) plus a tile
        per thread (and, for the products, Q's logs: (m, k) float64).
        With ``Q=None`` a row is among its own neighbours (divergence 0):
        ask for one more and drop it.
    num_threads : int, optional
        Threads for the kernels and (through threadpoolctl, when it is
        installed) numpy's BLAS; ``None`` uses :func:`klfast.default_num_threads`
        and BLAS's own setting. With threadpoolctl, large products run bands
        of rows on that many threads, each with one-thread BLAS (a BLAS
        thread pool and klfast's threads taking turns waste the cores
        on waiting). kl, jeffreys and cross_entropy take the last bits of
        the pairs they do not recompute from the BLAS, which may round them
        differently for another thread count (OpenBLAS does with
        ``OPENBLAS_L2_SIZE`` set): every value stays within the accuracy
        bound. jensen_shannon's bits do not depend on the threads.

    Returns
    -------
    ndarray of shape (n, m)
        Without ``topk``; float32 for float32 (or float16) inputs, float64
        otherwise.
    (indices, values) : ndarrays of shape (n, topk)
        With ``topk``: int64 indices into the rows of Q and their values.

    Notes
    -----
    kl, cross_entropy and jeffreys use matrix products: ``kl = -H(p) -
    P @ log(Q~).T``, with ``log(Q~)`` (and for jeffreys ``log(P~)``)
    computed once in float64 (float32 inputs too; that is an (m, k) float64
    array beside the output). Where the product's worst-case rounding bound
    is not below 1e-12 of the value (near-identical rows, whose terms
    cancel), the pair is recomputed in float64 by a kernel that keeps the
    digits of near-identical rows, so every float64 value is within about
    1e-12 relative of the exact divergence of the inputs; float32 results
    are the float64 values rounded. jensen_shannon calls the row function
    of :func:`klfast.jensen_shannon` for each pair (the same value bit for
    bit), in cache-sized blocks. Inputs that are not C-contiguous float32
    or float64 rows are converted once.

    Raises
    ------
    ValueError
        Inputs that are not 2-D or differ in their number of columns, an
        invalid row (naming ``P`` or ``Q`` and the row), an unknown measure,
        ``topk`` < 1 or more than the rows of Q, ``distance`` with another
        measure, a bad ``out``, ``out`` with ``topk``.
    TypeError
        Complex, object or string input, keywords of the wrong type.

    Examples
    --------
    >>> import numpy as np, klfast
    >>> P = np.array([[0.5, 0.5], [0.9, 0.1]])
    >>> Q = np.array([[0.5, 0.5], [0.1, 0.9], [0.8, 0.2]])
    >>> klfast.pairwise(P, Q, "kl").round(4)     # [i, j] = KL(P[i] || Q[j])
    array([[0.    , 0.5108, 0.2231],
           [0.3681, 1.7578, 0.0367]])
    >>> idx, val = klfast.pairwise(P, Q, "js", topk=2)
    >>> idx
    array([[0, 2],
           [2, 0]])
    """
