"""The public functions: validate, broadcast, dispatch to the row kernels."""
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from .. import _kernels
from .validate import (
    DEFAULT_EPS,
    F32_OVERFLOW,
    SUM_TOLERANCE,
    as_input,
    check_axis,
    check_eps,
    check_eps_dtype,
    check_flag,
    check_num_threads,
    check_out,
    explain_measure_row,
    log_scale,
    result_dtype,
)

# An input the kernel cannot read directly (dtype, byte order, layout) is
# converted in blocks of rows of about this many elements: never an
# input-sized temporary.
BLOCK_ELEMENTS = 1 << 20
# Below this many input elements a call runs on one thread: starting threads
# costs more than it saves.
MIN_PARALLEL_ELEMENTS = 1 << 16

_MEASURES = _kernels.MEASURES
# The common small call (plain arrays, default keywords) goes straight to C:
# _kernels.fast returns None whenever the general path must decide.
_fast = _kernels.fast


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_CPU_COUNT = _cpu_count()
# GNU OpenMP's thread pool does not survive fork(): a forked child that
# starts a parallel region hangs. Children run klfast on one thread.
_FORKED = False


def _after_fork_in_child():
    global _FORKED
    _FORKED = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def default_num_threads():
    """Threads a call with ``num_threads=None`` may use.

    The smaller of the cores this process may run on and OpenMP's limit for
    the calling thread (``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits``);
    1 when klfast was built without OpenMP, and in a child process made by
    ``fork()`` (GNU OpenMP's threads do not survive a fork).
    """
    if _FORKED:
        return 1
    return max(1, min(_CPU_COUNT, _kernels.omp_max_threads()))


def _resolve_threads(num_threads, n_rows, k):
    if n_rows * k < MIN_PARALLEL_ELEMENTS or n_rows < 2:
        return 1
    if num_threads is None:
        n = default_num_threads()
    else:  # more threads than cores only adds overhead (and libgomp fails at ~30k)
        n = 1 if _FORKED else min(num_threads, _CPU_COUNT)
    return max(1, min(n, n_rows))


def _kernel_ready(x, dtype):
    """True when the kernel can read the 2-D view ``x`` without a copy."""
    item = dtype.itemsize
    return (
        x.dtype == dtype
        and x.flags.aligned
        and (x.shape[1] <= 1 or x.strides[1] == item)
        and x.strides[0] % item == 0
    )


class _Job:
    """One call: the measure, its parameters and the names of the inputs."""

    __slots__ = ("measure", "eps", "scale", "normalize", "check_sums", "num_threads", "dtype",
                 "names", "outer")

    def __init__(self, measure, eps, scale, normalize, check_sums, num_threads, dtype, names,
                 outer):
        self.measure = measure
        self.eps = eps
        self.scale = scale
        self.normalize = normalize
        self.check_sums = check_sums
        self.num_threads = num_threads
        self.dtype = dtype
        self.names = names
        self.outer = outer

    def run_2d(self, p, q, out, first_row):
        """Reduce the rows of 2-D views ``p``, ``q`` (n_rows, k) into the 1-D
        view ``out``; ``first_row`` is the flat index of row 0 in the call."""
        n_rows, k = p.shape
        dt = self.dtype
        if n_rows == 0:
            return
        threads = _resolve_threads(self.num_threads, n_rows, k)
        direct = _kernel_ready(p, dt) and _kernel_ready(q, dt)
        out_ok = out.dtype == dt and out.flags.aligned and out.flags.writeable
        if direct and out_ok:
            bad = _kernels.rows(self.measure, p, p.strides[0], q, q.strides[0], out,
                                out.strides[0], n_rows, k, self.eps, self.scale,
                                self.normalize, self.tol, threads)
            if bad:
                self._raise(p, q, out, first_row)
            return
        # Convert per block of rows into bounded buffers (at most two blocks
        # alive). A broadcast input (row stride 0) is converted once, as one
        # row. With more than one thread, numpy converts the next block on
        # this thread while a worker thread scores the previous one: OpenMP
        # threads would only spin against the conversion.
        block = max(1, BLOCK_ELEMENTS // max(k, 1))
        p_fixed = self._fixed_row(p)
        q_fixed = self._fixed_row(q)
        starts = range(0, n_rows, block)

        def convert(r0):
            r1 = min(n_rows, r0 + block)
            pb = p_fixed if p_fixed is not None else np.ascontiguousarray(p[r0:r1], dtype=dt)
            qb = q_fixed if q_fixed is not None else np.ascontiguousarray(q[r0:r1], dtype=dt)
            ob = out[r0:r1] if out_ok else np.empty(r1 - r0, dtype=dt)
            return r0, r1, pb, qb, ob

        def score(r0, r1, pb, qb, ob, n_threads):
            return _kernels.rows(self.measure, pb, 0 if p_fixed is not None else pb.strides[0],
                                 qb, 0 if q_fixed is not None else qb.strides[0], ob,
                                 ob.strides[0], r1 - r0, k, self.eps, self.scale,
                                 self.normalize, self.tol, n_threads)

        def finish(r0, r1, ob, bad):
            if not out_ok:
                out[r0:r1] = ob
            if bad:
                self._raise(p[r0:r1], q[r0:r1], ob, first_row + r0)

        if threads == 1 or len(starts) == 1:
            for r0 in starts:
                job = convert(r0)
                finish(job[0], job[1], job[4], score(*job, threads))
            return
        with ThreadPoolExecutor(max_workers=1) as worker:
            pending = None
            for r0 in starts:
                job = convert(r0)
                if pending is not None:
                    finish(*pending[1], pending[0].result())
                pending = worker.submit(score, *job, 1), (job[0], job[1], job[4])
            finish(*pending[1], pending[0].result())

    @property
    def tol(self):
        """The kernels' sum tolerance: inf when sums are not checked."""
        return SUM_TOLERANCE if self.check_sums else math.inf

    def _fixed_row(self, x):
        """The single row of a broadcast input, converted; None otherwise."""
        if x.shape[0] > 1 and x.strides[0] == 0:
            return np.ascontiguousarray(x[:1], dtype=self.dtype)
        return None

    def _raise(self, p, q, out, first_row):
        local = int(np.flatnonzero(np.isnan(out))[0])
        flat = first_row + local
        index = np.unravel_index(flat, self.outer) if len(self.outer) > 1 else flat
        if isinstance(index, tuple):
            index = tuple(int(i) for i in index)
        named = [(name, x[local]) for name, x in zip(self.names, (p, q)) if name is not None]
        message = explain_measure_row([name for name, _ in named], [row for _, row in named],
                                      index, self.normalize, self.check_sums)
        if message:
            raise ValueError(message)
        raise RuntimeError(f"klfast: row {index} gave NaN from valid input; please report this")


def _run_nd(job, p, q, out, first_row=0):
    """Split broadcast N-D views (outer..., k) into 2-D problems without copies."""
    outer = p.shape[:-1]
    n_rows = math.prod(outer)
    k = p.shape[-1]
    try:
        p2 = p.reshape(n_rows, k, copy=False)
        q2 = q.reshape(n_rows, k, copy=False)
        o1 = out.reshape(n_rows, copy=False)
    except ValueError:  # strides that do not collapse: one level down
        step = n_rows // outer[0] if outer[0] else 0
        for i in range(outer[0]):
            _run_nd(job, p[i], q[i], out[i], first_row + i * step)
        return
    job.run_2d(p2, q2, o1, first_row)


def _is_dask(x):
    return type(x).__module__.split(".")[0] == "dask"


_ENTROPY_Q = object()  # entropy's q: the kernel reads p only


def _reduce(measure, p, q, axis, eps, base, normalize, check_sums, keepdims, out, num_threads):
    if q is None:
        raise TypeError("q is required: pass the second distribution (None given); for the "
                        "entropy of p use klfast.entropy(p)")
    if (type(axis) is int and axis == -1 and base is None and out is None and keepdims is False
            and (check_sums is True or check_sums is False)
            and (eps is DEFAULT_EPS or (type(eps) is float and eps < F32_OVERFLOW))
            and (num_threads is None or (type(num_threads) is int and num_threads >= 1))):
        result = _fast(_MEASURES[measure], p, None if q is _ENTROPY_Q else q, eps, normalize,
                       SUM_TOLERANCE if check_sums else math.inf)
        if result is not None:
            return result
    if _is_dask(p) or _is_dask(q):  # lazy, chunked scoring; dask is imported only here
        from .. import dask as klfast_dask

        return klfast_dask.reduce(measure, p, None if q is _ENTROPY_Q else q, axis=axis,
                                  eps=eps, base=base, normalize=normalize,
                                  check_sums=check_sums, keepdims=keepdims, out=out,
                                  num_threads=num_threads)
    axis = check_axis(axis)
    normalize = check_flag(normalize, "normalize")
    check_sums = check_flag(check_sums, "check_sums")
    keepdims = check_flag(keepdims, "keepdims")
    eps = check_eps(eps)
    scale = log_scale(base)
    num_threads = check_num_threads(num_threads)
    p, _ = as_input(p, "p")
    names = ("p", "q")
    if q is _ENTROPY_Q:  # entropy: the kernel ignores q
        q_arr = p
        names = ("p", None)
        dtype = result_dtype(p)
    else:
        q_arr, _ = as_input(q, "q")
        dtype = result_dtype(p, q_arr)
    check_eps_dtype(eps, dtype)
    ndim = max(p.ndim, q_arr.ndim)
    if ndim == 0:
        raise np.exceptions.AxisError(axis, 0, "p and q must have at least one dimension")
    ax = normalize_axis_index(axis, ndim)
    p_shape = (1,) * (ndim - p.ndim) + p.shape
    q_shape = (1,) * (ndim - q_arr.ndim) + q_arr.shape
    k = p_shape[ax]
    if q_shape[ax] != k:
        raise ValueError(
            f"p and q must have the same length along axis {axis}: "
            f"shapes {p.shape} and {q_arr.shape}"
        )
    p_outer = p_shape[:ax] + p_shape[ax + 1:]
    q_outer = q_shape[:ax] + q_shape[ax + 1:]
    try:
        outer = p_outer if p_outer == q_outer else np.broadcast_shapes(p_outer, q_outer)
    except ValueError:
        raise ValueError(f"p and q shapes {p.shape} and {q_arr.shape} do not broadcast") from None

    result_shape = outer[:ax] + (1,) + outer[ax:] if keepdims else outer
    if out is None:
        result = np.empty(result_shape, dtype=dtype)
    else:
        result = check_out(out, result_shape, dtype)
        if np.may_share_memory(out, p) or (q is not _ENTROPY_Q and np.may_share_memory(out, q_arr)):
            # as numpy's ufuncs do: score into a fresh array, then copy
            result = np.empty(result_shape, dtype=dtype)
    out_view = np.squeeze(result, axis=ax) if keepdims else result

    def rows_view(x, shape):  # numpy's helpers only where needed: ~10 us a call
        x = x.reshape(shape)
        if ax != ndim - 1:
            x = np.moveaxis(x, ax, -1)
        return x if x.shape[:-1] == outer else np.broadcast_to(x, outer + (k,))

    job = _Job(_MEASURES[measure], eps, scale, normalize, check_sums, num_threads, dtype, names,
               outer)
    pv = rows_view(p, p_shape)
    qv = pv if q is _ENTROPY_Q else rows_view(q_arr, q_shape)
    _run_nd(job, pv, qv, out_view)
    if out is not None and result is not out:
        out[...] = result
        return out
    if out is None and result.ndim == 0:
        return result[()]
    return result


_DOC_PARAMS = """
    axis : int, default -1
        Axis along which each distribution lies; the result drops it.
    eps : float, default klfast.DEFAULT_EPS (1e-12)
        Floor inside the logarithms, ``p~ = max(p, eps)``, ``q~ = max(q, eps)``.
        ``eps=0`` gives the exact mathematical value (possibly ``+inf``). For
        float32 inputs eps is rounded to float32, so it must stay below
        float32's overflow (about 3.4e38).
    base : float, optional
        Logarithm base; ``None`` gives nats, ``2`` bits. A row is scaled
        before it can overflow: the result is ``inf`` only when it is past
        the range in this base.
    normalize : bool, default False
        Divide each row by its sum first (counts, histograms). A row summing
        to 0 is a ValueError.
    check_sums : bool, default True
        Without ``normalize``, require every row of the inputs to sum to 1
        within :data:`klfast.SUM_TOLERANCE` (1e-3): a row that does not (counts,
        percentages, logits) is a ValueError naming the input, the row and its
        sum. The sums are taken in the same pass as the measure. ``False``
        scores the rows as given, for users who mean unnormalized inputs.
    keepdims : bool, default False
        Keep the reduced axis with size 1.
    out : ndarray, optional
        Array of the result's shape and dtype to fill and return.
    num_threads : int, optional
        Threads for this call; ``None`` uses :func:`klfast.default_num_threads`.
        Small inputs always run on one thread. Results do not depend on it.

    Returns
    -------
    ndarray or scalar
        Broadcast shape of the inputs without ``axis``; float32 for float32 or
        float16 inputs, float64 otherwise.

    Raises
    ------
    ValueError
        Negative, NaN or infinite entries, or a row that does not sum to 1
        (naming the input and the first offending row), shapes that do not
        broadcast or differ along ``axis``, invalid ``eps``/``base``/
        ``num_threads`` (an ``eps`` beyond float32's range with float32
        inputs), a bad ``out``.
    TypeError
        Complex, object or string input, a masked array, a missing (None)
        input, keywords of the wrong type.
"""


def kl(p, q, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False, check_sums=True,
       keepdims=False, out=None, num_threads=None):
    return _reduce("kl", p, q, axis, eps, base, normalize, check_sums, keepdims, out,
                   num_threads)


def jeffreys(p, q, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False, check_sums=True,
             keepdims=False, out=None, num_threads=None):
    return _reduce("jeffreys", p, q, axis, eps, base, normalize, check_sums,
                   keepdims, out, num_threads)


def cross_entropy(p, q, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False,
                  check_sums=True, keepdims=False, out=None, num_threads=None):
    return _reduce("cross_entropy", p, q, axis, eps, base, normalize, check_sums,
                   keepdims, out, num_threads)


def entropy(p, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False, check_sums=True,
            keepdims=False, out=None, num_threads=None):
    return _reduce("entropy", p, _ENTROPY_Q, axis, eps, base, normalize, check_sums, keepdims,
                   out, num_threads)


def jensen_shannon(p, q, *, axis=-1, base=None, normalize=False, check_sums=True,
                   distance=False, keepdims=False, out=None, num_threads=None):
    if check_flag(distance, "distance") and base is not None and log_scale(base) < 0:
        raise ValueError(f"distance=True needs base > 1 (or None), got {base}: in a base "
                         f"below 1 the divergence is negative and has no square root")
    result = _reduce("jensen_shannon", p, q, axis, 0.0, base, normalize, check_sums,
                     keepdims, out, num_threads)
    if distance:
        result = np.sqrt(result, out=result if isinstance(result, np.ndarray) else None)
    return result



jensen_shannon.__doc__ = """Jensen-Shannon divergence of each row (or its square root, a metric).

    ``JS = 0.5 * KL(p || m) + 0.5 * KL(q || m)`` with ``m = (p + q) / 2``:
    ``sum_j (p_j log(p_j / m_j) + q_j log(q_j / m_j)) / 2``, terms with
    ``p_j == 0`` (``q_j == 0``) exactly 0. Always finite, no ``eps`` needed
    (``m > 0`` wherever ``p`` or ``q`` is), symmetric, and ``0 <= JS <= log(2)``
    for distributions; rounding never makes it negative or NaN (each row is
    clamped at 0, unlike scipy's ``jensenshannon``, scipy#20083).

    Parameters
    ----------
    p, q : array_like
        Non-negative values; they broadcast with numpy rules and must have the
        same length along ``axis``. Use ``normalize=True`` for counts: scipy's
        ``jensenshannon`` always normalizes.
    distance : bool, default False
        Return ``sqrt(JS)``, the Jensen-Shannon distance, a metric.""" + _DOC_PARAMS.replace(
    """    eps : float, default klfast.DEFAULT_EPS (1e-12)
        Floor inside the logarithms, ``p~ = max(p, eps)``, ``q~ = max(q, eps)``.
        ``eps=0`` gives the exact mathematical value (possibly ``+inf``).
""", "") + """
    Examples
    --------
    >>> import klfast
    >>> round(float(klfast.jensen_shannon([1.0, 0.0], [0.0, 1.0], base=2)), 6)
    1.0
    >>> klfast.jensen_shannon([[0.5, 0.5], [0.9, 0.1]], [0.5, 0.5], distance=True).round(6)
    array([0.      , 0.318982])
    """


kl.__doc__ = """Kullback-Leibler divergence KL(p || q) of each row.

    ``kl = sum_j p_j * log(p~_j / q~_j)`` with ``p~ = max(p, eps)``,
    ``q~ = max(q, eps)``; terms with ``p_j == 0`` are exactly 0.

    Parameters
    ----------
    p, q : array_like
        Non-negative values; they broadcast with numpy rules and must have the
        same length along ``axis``.""" + _DOC_PARAMS + """
    Examples
    --------
    >>> import klfast
    >>> p = [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]
    >>> q = [0.25, 0.25, 0.5]
    >>> klfast.kl(p, q).round(6)
    array([0.693147, 0.010068])
    >>> float(klfast.kl([1.0, 0.0], [0.0, 1.0], eps=0))
    inf
    """

jeffreys.__doc__ = """Jeffreys divergence J(p, q) = KL(p || q) + KL(q || p) of each row.

    ``jeffreys = sum_j (p_j - q_j) * log(p~_j / q~_j)`` with ``p~ = max(p, eps)``,
    ``q~ = max(q, eps)``; terms with ``p_j == q_j`` are exactly 0.

    Parameters
    ----------
    p, q : array_like
        Non-negative values; they broadcast with numpy rules and must have the
        same length along ``axis``.""" + _DOC_PARAMS + """
    Examples
    --------
    >>> import klfast
    >>> round(float(klfast.jeffreys([0.2, 0.8], [0.5, 0.5])), 6)
    0.415888
    """

cross_entropy.__doc__ = """Cross-entropy H(p, q) = -sum_j p_j log q~_j of each row.

    ``q~ = max(q, eps)``; terms with ``p_j == 0`` are exactly 0, so
    ``cross_entropy(p, q) == entropy(p) + kl(p, q)`` up to rounding.

    Parameters
    ----------
    p, q : array_like
        Non-negative values; they broadcast with numpy rules and must have the
        same length along ``axis``.""" + _DOC_PARAMS + """
    Examples
    --------
    >>> import klfast
    >>> round(float(klfast.cross_entropy([0.5, 0.5], [0.25, 0.75], base=2)), 6)
    1.207519
    """

entropy.__doc__ = """Shannon entropy H(p) = -sum_j p_j log p~_j of each row.

    ``p~ = max(p, eps)``; terms with ``p_j == 0`` are exactly 0.

    Parameters
    ----------
    p : array_like
        Non-negative values.""" + _DOC_PARAMS + """
    Examples
    --------
    >>> import klfast
    >>> klfast.entropy([[0.5, 0.5], [1.0, 0.0]], base=2)
    array([1., 0.])
    >>> float(klfast.entropy([3, 1], normalize=True).round(6))
    0.562335
    """
