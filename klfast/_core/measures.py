"""The divergences and the entropy: kl, jeffreys, entropy, cross_entropy,
jensen_shannon. Each checks its arguments, resolves axis, broadcasting, dtype
and ``out`` once, and hands the rows to the row engine."""

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from . import engine
from .validate import (
    DEFAULT_EPS,
    LOG_PROB_MAX,
    SUM_TOLERANCE,
    as_input,
    check_axis,
    check_eps,
    check_eps_dtype,
    check_flag,
    check_forms_and_temperature,
    check_num_threads,
    check_out,
    check_where,
    check_temperature_dtype,
    log_scale,
    result_dtype,
)

_MEASURES = engine.MEASURES
# The call in C (klfast._kernels.fast), small or large: every public function
# tries it first, with its arguments as given; None sends the call to reduce.
_fast_call = engine.fast_call
_KL, _JEFFREYS, _ENTROPY, _CROSS_ENTROPY, _JS = (
    _MEASURES[name] for name in ("kl", "jeffreys", "entropy", "cross_entropy", "jensen_shannon"))


def _is_dask(x):
    return type(x).__module__.split(".")[0] == "dask"


def reduce(measure, p, q, axis, eps, base, normalize, check_sums, keepdims, out, num_threads,
           input="probs", temperature=1.0, where=None, distance=False, names=None, start=()):
    """The rows' scores of ``measure``; ``q`` is None for the entropy. Dask
    arrays go to :func:`klfast.dask.reduce`, which calls this for each block.
    ``distance``: the square root of each score (jensen_shannon).

    ``names`` (of p and q) and ``start`` (the index of the first row in a
    larger array, one number per outer axis) word the error about an invalid
    row when the inputs are a block of larger ones (the command line, Dask);
    the default, ("p", "q") and (), for a whole array."""
    if q is None and measure != "entropy":
        raise TypeError("q is required: pass the second distribution (None given); for the "
                        "entropy of p use klfast.entropy(p)")
    if _is_dask(p) or _is_dask(q):  # lazy, chunked scoring; dask is imported only here
        from .. import dask as klfast_dask

        result = klfast_dask.reduce(measure, p, q, axis=axis, eps=eps, base=base,
                                    normalize=normalize, check_sums=check_sums,
                                    keepdims=keepdims, out=out, num_threads=num_threads,
                                    input=input, temperature=temperature, where=where)
        return _root(result) if distance else result
    axis = check_axis(axis)
    normalize = check_flag(normalize, "normalize")
    check_sums = check_flag(check_sums, "check_sums")
    keepdims = check_flag(keepdims, "keepdims")
    eps = check_eps(eps)
    scale = log_scale(base)
    num_threads = check_num_threads(num_threads)
    given, temperature = check_forms_and_temperature(input, temperature,
                                                     ("p",) if q is None else ("p", "q"))
    # normalized log-probabilities: their log-softmax, as of logits at T = 1
    forms = tuple("logits" if normalize and form == "log_probs" else form for form in given)
    p, _ = as_input(p, "p")
    if q is None:  # entropy: p alone (as q, it passes the shape checks below)
        q_arr = p
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
    mask = check_where(where, outer, ax if keepdims else None)
    if out is None:
        # rows left out by where are NaN (numpy would leave them unset)
        result = np.empty(result_shape, dtype=dtype) if mask is None else \
            np.full(result_shape, np.nan, dtype=dtype)
    else:
        result = check_out(out, result_shape, dtype)

    def rows_view(x, shape):  # numpy's helpers only where needed: ~10 us a call
        x = x.reshape(shape)
        if ax != ndim - 1:
            x = np.moveaxis(x, ax, -1)
        return x if x.shape[:-1] == outer else np.broadcast_to(x, outer + (k,))

    if q is None:
        inputs = (rows_view(p, p_shape),)
    else:
        inputs = (rows_view(p, p_shape), rows_view(q_arr, q_shape))
    names = ("p", "q")[:len(inputs)] if names is None else tuple(names)[:len(inputs)]
    if all(form == "probs" for form in forms):
        job = engine.MeasureJob(measure, eps, scale, normalize, check_sums, num_threads, dtype,
                                names, start)
    else:
        check_temperature_dtype(temperature, dtype)
        inv_t = tuple(1.0 / temperature if form == "logits" else 1.0 for form in given)
        job = engine.FormsJob(measure, forms, inv_t, eps=eps, num_threads=num_threads,
                              dtype=dtype, names=names, normalize=normalize,
                              check_sums=check_sums, log_prob_max=LOG_PROB_MAX, scale=scale,
                              start=start)
    rows = np.squeeze(result, axis=ax) if keepdims else result
    engine.run(job, inputs, rows, callers_out=out is not None, where=mask)
    if distance:  # rows left out keep what they hold
        np.sqrt(rows, out=rows, where=True if mask is None else mask)
    if out is None and result.ndim == 0:
        return result[()]
    return result


def _root(result):
    """sqrt of a result: in place for an array (a caller's out too)."""
    if isinstance(result, np.ndarray):
        return np.sqrt(result, out=result)
    return np.sqrt(result)


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
    where : array_like of bool, optional
        The rows to score, broadcast against the result (its shape without
        ``axis``; with ``keepdims``, against the kept shape first, as numpy
        does). Rows where it is False are not read at all (not checked,
        not counted): their result is NaN in a new array, and left as it
        was in ``out`` (numpy's ufunc rule).
    num_threads : int, optional
        Threads for this call; ``None`` uses :func:`klfast.default_num_threads`.
        Small inputs always run on one thread. Results do not depend on it.
    input : {"probs", "log_probs", "logits"} or tuple of them, default "probs"
        The form of the inputs: one word for every input, or a tuple with one
        per input in argument order, e.g. ``input=("logits", "probs")``.
        ``"log_probs"``: natural logs of probabilities (``-inf`` for 0; at
        most ``log(1 + SUM_TOLERANCE)``; with ``normalize=True`` any
        log-values, normalized by their log-sum-exp). ``"logits"``: scores
        whose softmax ``softmax(x / temperature)`` is the distribution (no
        NaN or ``+inf``; ``-inf`` is a class of probability 0). The eps rule
        is the same in every form: ``log p~ = max(log p, log eps)``. Each row
        is read in its form while it is in cache (log-sum-exp and measure in
        one kernel): no softmax array is made. float64 rows are within
        ``1e-14 * (|value| + s)`` of the exact value, with the row's scale
        ``s = sum_j (p_j (1 + |log p_j|) + q_j (1 + |log q_j|)) (|log p~_j| +
        |log q~_j|)`` (float32: ``1e-5``); for rows that are not nearly equal
        ``s`` is a small multiple of the value, but jeffreys or
        jensen_shannon near 0 (nearly equal rows given as logits) has this
        absolute error, as the rounded log-softmaxes cancel. KL of two rows
        of logits keeps its relative accuracy there (a sum of terms that are
        all >= 0; see the README's "Accuracy"). Probabilities below the
        dtype's smallest subnormal count as 0.
    temperature : float, default 1.0
        Divides the inputs given as logits (only those) before the softmax;
        a ValueError when no input is logits.

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
       keepdims=False, out=None, num_threads=None, input="probs", temperature=1.0, where=None):
    result = _fast_call(_KL, p, q, axis, eps, base, normalize, check_sums, keepdims, out,
                        num_threads, input, temperature, where, SUM_TOLERANCE)
    if result is not None:
        return result
    return reduce("kl", p, q, axis, eps, base, normalize, check_sums, keepdims, out,
                  num_threads, input, temperature, where)


def jeffreys(p, q, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False, check_sums=True,
             keepdims=False, out=None, num_threads=None, input="probs", temperature=1.0,
             where=None):
    result = _fast_call(_JEFFREYS, p, q, axis, eps, base, normalize, check_sums, keepdims, out,
                        num_threads, input, temperature, where, SUM_TOLERANCE)
    if result is not None:
        return result
    return reduce("jeffreys", p, q, axis, eps, base, normalize, check_sums,
                  keepdims, out, num_threads, input, temperature, where)


def cross_entropy(p, q, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False,
                  check_sums=True, keepdims=False, out=None, num_threads=None, input="probs",
                  temperature=1.0, where=None):
    result = _fast_call(_CROSS_ENTROPY, p, q, axis, eps, base, normalize, check_sums, keepdims,
                        out, num_threads, input, temperature, where, SUM_TOLERANCE)
    if result is not None:
        return result
    return reduce("cross_entropy", p, q, axis, eps, base, normalize, check_sums,
                  keepdims, out, num_threads, input, temperature, where)


def entropy(p, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False, check_sums=True,
            keepdims=False, out=None, num_threads=None, input="probs", temperature=1.0,
            where=None):
    result = _fast_call(_ENTROPY, p, None, axis, eps, base, normalize, check_sums, keepdims, out,
                        num_threads, input, temperature, where, SUM_TOLERANCE)
    if result is not None:
        return result
    return reduce("entropy", p, None, axis, eps, base, normalize, check_sums, keepdims,
                  out, num_threads, input, temperature, where)


def jensen_shannon(p, q, *, axis=-1, base=None, normalize=False, check_sums=True,
                   distance=False, keepdims=False, out=None, num_threads=None, input="probs",
                   temperature=1.0, where=None):
    # (the square root is taken here: with where=, of the rows included only)
    if distance is False or (distance is True and where is None and (base is None or (
            type(base) in (int, float) and base > 1))):
        result = _fast_call(_JS, p, q, axis, 0.0, base, normalize, check_sums, keepdims, out,
                            num_threads, input, temperature, where, SUM_TOLERANCE)
        if result is not None:
            return _root(result) if distance else result
    if check_flag(distance, "distance") and base is not None and log_scale(base) < 0:
        raise ValueError(f"distance=True needs base > 1 (or None), got {base}: in a base "
                         f"below 1 the divergence is negative and has no square root")
    return reduce("jensen_shannon", p, q, axis, 0.0, base, normalize, check_sums,
                  keepdims, out, num_threads, input, temperature, where, distance=distance)



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

    From logits (softmax of each row, fused), against probabilities:

    >>> klfast.kl([[2.0, 0.0, -1.0]], [0.7, 0.2, 0.1], input=("logits", "probs")).round(6)
    array([0.057216])
    >>> klfast.kl([[2.0, 0.0, -1.0]], [[0.5, 1.0, 0.0]], input="logits", temperature=2.0).round(6)
    array([0.190634])
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
    >>> import numpy as np
    >>> float(klfast.entropy(np.log([0.5, 0.25, 0.25]), input="log_probs", base=2).round(12))
    1.5
    """
