"""The slow twin of klfast: the documented formulas in plain NumPy float64.

Used only as an oracle by the tests and benchmarks. It is written to be
obviously correct, not fast: it broadcasts the inputs into full arrays, builds
every term and sums along ``axis``. It never calls klfast.

The epsilon rule, with ``p~ = max(p, eps)`` and ``q~ = max(q, eps)``::

    kl            = sum p * log(p~ / q~)          terms with p == 0 are 0
    jeffreys      = sum (p - q) * log(p~ / q~)    terms with p == q are 0
    entropy       = -sum p * log(p~)              terms with p == 0 are 0
    cross_entropy = -sum p * log(q~)              terms with p == 0 are 0

``normalize=True`` divides each row by its sum first; ``base`` divides the
natural-log result by ``log(base)``. The result is always float64.
"""
import numpy as np

DEFAULT_EPS = 1e-12


def _as_float64(x, name):
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _check_valid(x, name, axis, normalize):
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    if np.any(x < 0):
        raise ValueError(f"{name} has a negative entry")
    if normalize and np.any(x.sum(axis=axis) == 0):
        raise ValueError(f"{name} has a row that sums to 0")


def _prepare(p, q, axis, normalize):
    """float64 arrays of one broadcast shape, normalized along ``axis`` if asked."""
    p = _as_float64(p, "p")
    q = p if q is None else _as_float64(q, "q")
    ndim = max(p.ndim, q.ndim)
    p = p.reshape((1,) * (ndim - p.ndim) + p.shape)
    q = q.reshape((1,) * (ndim - q.ndim) + q.shape)
    if p.shape[axis] != q.shape[axis]:
        raise ValueError("p and q must have the same length along axis")
    p, q = np.broadcast_arrays(p, q)
    for x, name in ((p, "p"), (q, "q")):
        _check_valid(x, name, axis, normalize)
    if normalize:
        p = p / p.sum(axis=axis, keepdims=True)
        q = q / q.sum(axis=axis, keepdims=True)
    return p, q


def _log_ratio(a, b):
    """log(a / b) elementwise, falling back to log(a) - log(b) where a / b
    overflows or underflows (subnormal b or a); +-inf where a or b is 0."""
    with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
        ratio = a / b
        direct = np.log(ratio)
        split = np.log(a) - np.log(b)
    ok = (ratio > 0) & np.isfinite(ratio) & (ratio >= np.finfo(np.float64).tiny)
    return np.where(ok, direct, split)


def _finish(terms, axis, base, keepdims):
    total = np.sum(terms, axis=axis, keepdims=keepdims)
    if base is not None:
        total = total / np.log(float(base))
    return total


def kl(p, q, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False, keepdims=False):
    """KL(p || q) of each row: sum p * log(p~ / q~), terms with p == 0 are 0."""
    p, q = _prepare(p, q, axis, normalize)
    with np.errstate(invalid="ignore"):
        terms = p * _log_ratio(np.maximum(p, eps), np.maximum(q, eps))
    terms = np.where(p == 0, 0.0, terms)
    return _finish(terms, axis, base, keepdims)


def jeffreys(p, q, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False, keepdims=False):
    """J(p, q) of each row: sum (p - q) * log(p~ / q~), terms with p == q are 0."""
    p, q = _prepare(p, q, axis, normalize)
    with np.errstate(invalid="ignore"):
        terms = (p - q) * _log_ratio(np.maximum(p, eps), np.maximum(q, eps))
    terms = np.where(p == q, 0.0, terms)
    return _finish(terms, axis, base, keepdims)


def entropy(p, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False, keepdims=False):
    """H(p) of each row: -sum p * log(p~), terms with p == 0 are 0."""
    p, _ = _prepare(p, None, axis, normalize)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -p * np.log(np.maximum(p, eps))
    terms = np.where(p == 0, 0.0, terms)
    return _finish(terms, axis, base, keepdims)


def cross_entropy(p, q, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False,
                  keepdims=False):
    """H(p, q) of each row: -sum p * log(q~), terms with p == 0 are 0."""
    p, q = _prepare(p, q, axis, normalize)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -p * np.log(np.maximum(q, eps))
    terms = np.where(p == 0, 0.0, terms)
    return _finish(terms, axis, base, keepdims)


def jensen_shannon(p, q, *, axis=-1, base=None, normalize=False, distance=False,
                   keepdims=False):
    """(KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2, by scipy's rel_entr
    (0 where an entry is 0), clamped at 0; ``distance`` takes its square root."""
    from scipy.special import rel_entr

    p, q = _prepare(p, q, axis, normalize)
    m = (p + q) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = (rel_entr(p, m) + rel_entr(q, m)) / 2
    value = np.maximum(_finish(terms, axis, None, keepdims), 0.0)
    if base is not None:
        value = value / np.log(base)
    return np.sqrt(value) if distance else value


MEASURES = {"kl": kl, "jeffreys": jeffreys, "entropy": entropy, "cross_entropy": cross_entropy,
            "jensen_shannon": jensen_shannon}


def jensen_shannon_rows(p, q):
    """Jensen-Shannon of each row of 2-D p, q by a formula that keeps the
    digits of nearly equal rows: per element m f(t), t = (p - q)/(p + q),
    f(t) = t atanh(t) + log1p(-t^2)/2, whose two parts do not cancel; each
    row summed with math.fsum. Entries must be positive."""
    import math
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m, t = (p + q) / 2, (p - q) / (p + q)
    return np.array([math.fsum(r) for r in m * (t * np.arctanh(t) + np.log1p(-t * t) / 2)])
