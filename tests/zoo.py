"""Shared test helpers (imported as ``zoo``; conftest puts tests/ on sys.path): measure dispatch, random distributions and the array zoo.

The zoo follows bottleneck's ``array_generator``: the same values in every
memory layout klfast must handle, so a test can demand identical results
across layouts and compare each against the slow twin.
"""
import contextlib

import numpy as np

import klfast
from klfast import _kernels
from klfast._core import losses as _losses
from klfast._core import measures as _measures
from klfast._core import reference as _reference

MEASURES = ("kl", "jeffreys", "entropy", "cross_entropy")
PAIR_MEASURES = ("kl", "jeffreys", "cross_entropy")


def general_path(monkeypatch=None):
    """Every call of the measures and the losses through the general path
    (klfast._core's Python row engine), the C shortcuts (_kernels.fast,
    fast_loss) not tried: within the context this returns, or, given
    pytest's ``monkeypatch``, for the rest of the test. For tests that
    compare the two."""
    if monkeypatch is not None:
        monkeypatch.setattr(_measures, "_fast_call", _declined)
        monkeypatch.setattr(_losses, "_fast_loss", _declined)
        return None
    return _general_path()


def _declined(*args):
    return None


@contextlib.contextmanager
def _general_path():
    saved = _measures._fast_call, _losses._fast_loss
    _measures._fast_call = _losses._fast_loss = _declined
    try:
        yield
    finally:
        _measures._fast_call, _losses._fast_loss = saved


def call(measure, p, q=None, **kwargs):
    """klfast.<measure>(p, q, **kwargs); entropy ignores q."""
    fn = getattr(klfast, measure)
    return fn(p, **kwargs) if measure == "entropy" else fn(p, q, **kwargs)


def call_raw(measure, p, q=None, **kwargs):
    """:func:`call` with ``check_sums=False``: the rows are scored as given.

    For tests whose inputs are deliberately not distributions (arbitrary
    non-negative values, zero rows, huge entries); every other test keeps the
    default check that rows sum to 1.
    """
    return call(measure, p, q, check_sums=False, **kwargs)


def call_ref(measure, p, q=None, **kwargs):
    """The slow twin of :func:`call`."""
    fn = _reference.MEASURES[measure]
    return fn(p, **kwargs) if measure == "entropy" else fn(p, q, **kwargs)


def call_ref_raw(measure, p, q=None, **kwargs):
    """The slow twin of :func:`call_raw` (``check_sums=False``)."""
    return call_ref(measure, p, q, check_sums=False, **kwargs)


def distributions(rng, shape, dtype=np.float64, zero_fraction=0.2, axis=-1):
    """Random rows along ``axis`` that sum to 1, with some exact zeros."""
    x = rng.random(shape)
    x[rng.random(shape) < zero_fraction] = 0.0
    empty = x.sum(axis=axis, keepdims=True) == 0
    x = x + empty  # a row of zeros becomes uniform
    x /= x.sum(axis=axis, keepdims=True)
    return x.astype(dtype)


def kernel_rows(measure, p, q, tol, axis=-1, scale=1.0):
    """_kernels.rows on the rows of p, q along axis, with the sum check's
    tol as given (the API passes only SUM_TOLERANCE or inf): each row's
    value (times scale: 1 / log(base)), NaN where a sum is off by more than
    tol."""
    n, k = p.shape[1 - (axis % 2)], p.shape[axis]
    es, rs = p.strides[axis], p.strides[1 - (axis % 2)]
    out = np.empty(n, p.dtype)
    _kernels.rows(_kernels.MEASURES[measure], p, rs, q, rs, out, out.strides[0], n, k, 1e-12,
                  scale, False, tol, 1, es, es)
    return out


def sums_at_the_edge(rng, shape, tol, dtype):
    """Rows p, q (shape (n, k)) one of which sums to within a few 1e-6
    (relative) of 1 - tol or 1 + tol, a row's other one to 1: the sum
    check's edge (tol as _kernels.rows takes it; tol not finite, not small
    or 0: SUM_TOLERANCE's edges)."""
    n, k = shape
    p = distributions(rng, shape, dtype=np.float64, zero_fraction=0.2)
    q = distributions(rng, shape, dtype=np.float64, zero_fraction=0.2)
    t = tol if np.isfinite(tol) and 0 < abs(tol) < 100 else klfast.SUM_TOLERANCE
    edge = 1 + rng.choice([-1, 1], size=(n, 1)) * abs(t)
    edge[edge <= 0] = 1 + abs(t)
    target = edge + (1 + abs(t)) * rng.uniform(-4e-6, 4e-6, size=(n, 1))
    in_p = rng.random((n, 1)) < 0.5
    return (np.where(in_p, p * target, p).astype(dtype),
            np.where(in_p, q, q * target).astype(dtype))


def layouts(a):
    """(name, array, axis) holding the rows of the 2-D array ``a`` along ``axis``
    in every memory layout klfast must handle. The values are those of ``a``."""
    n, k = a.shape
    views = [("C", np.ascontiguousarray(a), -1), ("F", np.asfortranarray(a), -1)]

    big = np.zeros((2 * n + 1, 3 * k + 1), dtype=a.dtype)
    big[1::2, 1::3] = a
    views.append(("strided", big[1::2, 1::3], -1))

    views.append(("reversed rows", np.ascontiguousarray(a[::-1])[::-1], -1))
    views.append(("reversed both", np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1], -1))
    views.append(("transposed C, axis=0", np.ascontiguousarray(a.T), 0))
    views.append(("transposed F, axis=0", np.asfortranarray(a.T), 0))

    padded = np.zeros((n, 3, k), dtype=a.dtype)
    padded[:, 1, :] = a
    views.append(("3-D slice", padded[:, 1, :], -1))

    readonly = a.copy()
    readonly.flags.writeable = False
    views.append(("read-only", readonly, -1))

    views.append(("byte-swapped", a.astype(a.dtype.newbyteorder()), -1))

    raw = np.zeros(a.nbytes + a.itemsize + 1, dtype=np.uint8)
    unaligned = raw[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
    unaligned[...] = a
    assert a.size == 0 or not unaligned.flags.aligned
    views.append(("unaligned", unaligned, -1))

    readonly_f = np.asfortranarray(a)
    readonly_f.flags.writeable = False
    views.append(("read-only F", readonly_f, -1))
    return views


LAYOUT_NAMES = [name for name, _, _ in layouts(np.ones((2, 2)))]


def snapshot(x):
    """A copy of an input, to prove later that klfast did not modify it."""
    return np.array(x, copy=True)


def assert_unchanged(before, after):
    after = np.asarray(after)
    assert after.dtype == before.dtype
    assert after.shape == before.shape
    np.testing.assert_array_equal(after, before)


def kl_logits_mpmath(a, b, temperature, eps):
    """KL(softmax(a / T) || softmax(b / T)) per row with the eps rule, in
    80-digit mpmath: independent of the kernels and of the slow twin (whose
    40 digits do not hold a KL of 1e-28 next to log-probabilities of 10)."""
    import pytest
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(80):
        log_eps = mpmath.log(mpmath.mpf(eps))
        out = []
        for x, y in zip(a, b):
            x = [mpmath.mpf(float(v)) / temperature for v in x]
            y = [mpmath.mpf(float(v)) / temperature for v in y]
            lse_x = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in x))
            lse_y = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in y))
            out.append(float(mpmath.fsum(
                mpmath.exp(u - lse_x) * (max(u - lse_x, log_eps) - max(v - lse_y, log_eps))
                for u, v in zip(x, y))))
    return np.array(out)


def js_logits_mpmath(a, b, temperature):
    """The Jensen-Shannon divergence of softmax(a / T) and softmax(b / T)
    per row (no eps: JS has none), and its terms (p_j + q_j) / 2 S_j with
    the rows' log-probabilities, in 80-digit mpmath; a class of -inf in both
    rows is a term of 0. S(tau) = (1 + tau) log(1 + tau) + (1 - tau) log(1 -
    tau), tau = tanh((log q_j - log p_j) / 2), by its series sum tau^(2n) /
    (n (2n - 1)) for |tau| < 1/2: p log(p / m) + q log(q / m) taken directly
    cancels to about tau^2 of terms about tau, which loses every digit of a
    row 1e-93 in 80 digits (rows a few ulps apart, p_j about 1e-64)."""
    import pytest
    mpmath = pytest.importorskip("mpmath")

    def s_of(tau):
        if abs(tau) >= 0.5:
            return (1 + tau) * mpmath.log(1 + tau) + (1 - tau) * mpmath.log(1 - tau)
        t2, power, total, n = tau * tau, tau * tau, mpmath.mpf(0), 1
        while True:
            step = power / (n * (2 * n - 1))
            total += step
            if step <= total * mpmath.mpf(10) ** -85:
                return total
            power *= t2
            n += 1

    with mpmath.workdps(80):
        out, terms, lp, lq = [], [], [], []
        for x, y in zip(a, b):
            x = [mpmath.mpf(float(v)) / temperature for v in x]
            y = [mpmath.mpf(float(v)) / temperature for v in y]
            lse_x = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in x))
            lse_y = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in y))
            row = []
            for u, v in zip(x, y):
                p, q = mpmath.exp(u - lse_x), mpmath.exp(v - lse_y)
                if p == 0 or q == 0:  # tau = +-1: S = 2 log 2
                    row.append((p + q) * mpmath.log(2))
                    continue
                tau = mpmath.tanh(((v - lse_y) - (u - lse_x)) / 2)
                row.append((p + q) / 2 * s_of(tau))
            out.append(float(mpmath.fsum(row) / 2))
            terms.append([float(t / 2) for t in row])
            lp.append([float(u - lse_x) for u in x])
            lq.append([float(v - lse_y) for v in y])
    return np.array(out), np.array(terms), np.array(lp), np.array(lq)


def loss_mpmath(loss, target, logits, inv_t, eps, target_is_logits=False,
                target_is_log_probs=False):
    """kl_loss or cross_entropy_loss per row (reduction="none") and the
    gradient (grad_scale = inv_t), in 80-digit mpmath from the rows' exact
    values: q = softmax(logits * inv_t), the target as probabilities (used
    as given, log max(p, eps)) or logits (softmax(target * inv_t), log p
    floored at log eps) or log-probabilities (p = exp(target) as given, log p
    floored at log eps); terms with p == 0 are 0 (p as float64 rounds it: a
    p_j of e^-1000 against a -inf logit is 0, not +inf); grad = (S q - p) inv_t
    with S = sum p. inv_t as the kernel takes it: 1 / T rounded to the
    element type."""
    import pytest
    mpmath = pytest.importorskip("mpmath")
    values, grads = [], []
    with mpmath.workdps(80):
        inv_t = mpmath.mpf(float(inv_t))
        log_eps = mpmath.log(mpmath.mpf(eps)) if eps > 0 else -mpmath.inf
        tiny = mpmath.mpf(2) ** -1075  # a p_j float64 rounds to 0 (its term: 0)

        def log_softmax(row):
            x = [mpmath.mpf(float(v)) * inv_t for v in row]
            top = max(x)
            lse = top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in x))
            return [v - lse for v in x]

        for t, z in zip(target, logits):
            lq = log_softmax(z)
            if target_is_logits or target_is_log_probs:
                lp = log_softmax(t) if target_is_logits else [mpmath.mpf(float(v)) for v in t]
                p = [mpmath.exp(v) for v in lp]
                lp = [max(v, log_eps) for v in lp]
            else:
                p = [mpmath.mpf(float(v)) for v in t]
                lp = [mpmath.log(max(v, mpmath.mpf(eps))) if v > 0 else 0 for v in p]
            if loss == "kl":
                value = mpmath.fsum(pj * (a - b) for pj, a, b in zip(p, lp, lq) if pj > tiny)
            else:
                value = -mpmath.fsum(pj * b for pj, b in zip(p, lq) if pj > tiny)
            s = mpmath.fsum(p)
            values.append(float(value))
            grads.append([float((s * mpmath.exp(b) - pj) * inv_t) for pj, b in zip(p, lq)])
    return np.array(values), np.array(grads)
