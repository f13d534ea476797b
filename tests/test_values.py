"""Values: klfast against independent references.

scipy.special.rel_entr and scipy.stats.entropy (eps=0, the exact
mathematics), the slow twin klfast._core.reference (every eps, base, normalize,
axis, keepdims, broadcasting), and mpmath at 50 digits for hand-picked rows
with extreme values.
"""
import math
import re
import tracemalloc

import numpy as np
import pytest
import scipy.special
import scipy.stats

import klfast
from zoo import (MEASURES, PAIR_MEASURES, call, call_raw, call_ref, call_ref_raw,
                 distributions)

pytestmark = pytest.mark.usefixtures("isa")  # every instruction-set level

mpmath = pytest.importorskip("mpmath")

EPS_VALUES = [0.0, 1e-300, klfast.DEFAULT_EPS, 1e-6, 1e-3, 0.1]
BASES = [None, 2, 10, 0.5]


def term_scale(p, q, eps):
    """Sum over a row of |p log p~| + |p log q~| + |q log q~| (+1): the size of
    the terms, so rounding in their sum can be bounded relative to it."""
    p = np.asarray(p, dtype=np.float64)
    q = p if q is None else np.asarray(q, dtype=np.float64)
    floor = max(eps, np.finfo(np.float64).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.abs(np.log(np.maximum(p, floor)))
        lq = np.abs(np.log(np.maximum(q, floor)))
        t = p * lp + p * lq + q * lq + q * lp
    return np.sum(t, axis=-1) + 1.0


def assert_close(got, want, rtol=1e-12, atol=0.0):
    """allclose that also demands the same inf positions and no NaN."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert not np.isnan(got).any(), f"NaN in result {got}"
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    with np.errstate(invalid="ignore"):
        err = np.abs(got.astype(np.float64) - want)[finite]
    err = np.where(np.isnan(err), np.inf, err)
    bound = (np.broadcast_to(atol, want.shape) + rtol * np.abs(want))[finite]
    if (err > bound).any():
        i = int(np.argmax(err / np.where(bound > 0, bound, 1e-300)))
        raise AssertionError(
            f"{int((err > bound).sum())} of {err.size} values differ; worst: got "
            f"{got[finite][i]!r}, want {want[finite][i]!r}, |diff| {err[i]:.3g} > "
            f"bound {bound[i]:.3g}")


def mixed_rows(rng, n, k):
    """Unnormalised non-negative rows mixing zeros, values near the default
    eps, tiny values and ordinary ones."""
    x = rng.random((n, k))
    pick = rng.random((n, k))
    specials = np.array([0.0, 1e-300, 5e-324, 1e-13, 1e-12, 1.001e-12, 0.999e-12, 1e-11,
                         1e-7, 1e-3, 3.0])
    mask = pick < 0.3
    x[mask] = rng.choice(specials, size=mask.sum())
    x[:, 0] = np.maximum(x[:, 0], 0.05)  # no row sums to 0 (normalize)
    return x


# --- scipy ----------------------------------------------------------------

@pytest.mark.parametrize("shape", [(50, 7), (3, 1000), (1, 1), (200, 2)])
def test_kl_eps0_matches_rel_entr(rng, shape):
    p = distributions(rng, shape, zero_fraction=0.3)
    q = distributions(rng, shape, zero_fraction=0.3)
    want = scipy.special.rel_entr(p, q).sum(axis=-1)
    assert np.isinf(want).any() or shape[1] <= 2 or shape == (1, 1)
    assert_close(klfast.kl(p, q, eps=0), want, rtol=1e-13, atol=1e-15)
    # along axis 0
    assert_close(klfast.kl(p.T, q.T, eps=0, axis=0), want, rtol=1e-13, atol=1e-15)


def test_jeffreys_eps0_matches_rel_entr_both_ways(rng):
    p = distributions(rng, (40, 9), zero_fraction=0.3)
    q = distributions(rng, (40, 9), zero_fraction=0.3)
    want = (scipy.special.rel_entr(p, q) + scipy.special.rel_entr(q, p)).sum(axis=-1)
    assert_close(klfast.jeffreys(p, q, eps=0), want, rtol=1e-13, atol=1e-15)


def test_kl_rel_entr_edge_rows():
    # 0*log(0/q) = 0, p>0 with q==0 is +inf, p==q==0 is 0; never NaN
    p = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [0.5, 0.5], [1.0, 0.0]])
    q = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    want = scipy.special.rel_entr(p, q).sum(axis=-1)
    got = klfast.kl(p, q, eps=0, check_sums=False)  # rows 0 and 2 are not distributions
    assert_close(got, want)
    np.testing.assert_array_equal(got, [np.inf, 0.0, 0.0, 0.0, np.inf])


@pytest.mark.parametrize("base", [None, 2, 10])
def test_normalized_kl_and_entropy_match_scipy_stats(rng, base):
    counts_p = rng.integers(0, 20, size=(30, 12))
    counts_q = rng.integers(1, 20, size=(30, 12))
    counts_p[:, 0] += 1
    got_kl = klfast.kl(counts_p, counts_q, eps=0, normalize=True, base=base)
    want_kl = scipy.stats.entropy(counts_p, counts_q, base=base, axis=-1)
    assert_close(got_kl, want_kl, rtol=1e-12, atol=1e-15)

    got_h = klfast.entropy(counts_p, eps=0, normalize=True, base=base)
    want_h = scipy.stats.entropy(counts_p, base=base, axis=-1)
    assert_close(got_h, want_h, rtol=1e-12, atol=1e-15)

    got_ce = klfast.cross_entropy(counts_p, counts_q, eps=0, normalize=True, base=base)
    assert_close(got_ce, want_h + want_kl, rtol=1e-12, atol=1e-14)

    got_j = klfast.jeffreys(counts_p, counts_q, eps=0, normalize=True, base=base)
    want_j = want_kl + scipy.stats.entropy(counts_q, counts_p, base=base, axis=-1)
    assert_close(got_j, want_j, rtol=1e-12, atol=1e-14)


def test_entropy_axis0_matches_scipy_stats(rng):
    p = rng.random((9, 25))
    assert_close(klfast.entropy(p, axis=0, normalize=True, eps=0),
                 scipy.stats.entropy(p, axis=0), rtol=1e-12)


# --- the slow twin ----------------------------------------------------------

@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("eps", EPS_VALUES)
@pytest.mark.parametrize("normalize", [False, True])
def test_matches_reference(rng, measure, eps, normalize):
    p = mixed_rows(rng, 40, 13)
    q = mixed_rows(rng, 40, 13)
    scale = term_scale(p, q, eps)
    for base in BASES:
        got = call_raw(measure, p, q, eps=eps, base=base, normalize=normalize)
        want = call_ref_raw(measure, p, q, eps=eps, base=base, normalize=normalize)
        factor = 1.0 if base is None else abs(1 / math.log(base))
        assert got.dtype == np.float64
        assert_close(got, want, rtol=1e-12, atol=1e-14 * scale * factor)


@pytest.mark.parametrize("measure", MEASURES)
def test_default_eps_is_documented_constant(rng, measure):
    assert klfast.DEFAULT_EPS == 1e-12
    p = mixed_rows(rng, 20, 8)
    q = mixed_rows(rng, 20, 8)
    got = call_raw(measure, p, q)
    want = call_ref_raw(measure, p, q, eps=1e-12)
    assert_close(got, want, rtol=1e-12, atol=1e-14 * term_scale(p, q, 1e-12))


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
@pytest.mark.parametrize("keepdims", [False, True])
def test_nd_axis_keepdims(rng, measure, axis, keepdims):
    shape = (3, 4, 11)  # (batch, seq, vocab)
    p = distributions(rng, shape, axis=axis)
    q = distributions(rng, shape, axis=axis)
    got = call(measure, p, q, axis=axis, keepdims=keepdims)
    want = call_ref(measure, p, q, axis=axis, keepdims=keepdims)
    expected_shape = np.sum(p, axis=axis, keepdims=keepdims).shape
    assert got.shape == expected_shape
    assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_batch_seq_vocab_shape(rng):
    p = distributions(rng, (2, 5, 32))
    q = distributions(rng, (2, 5, 32))
    assert klfast.kl(p, q).shape == (2, 5)
    assert klfast.kl(p, q, keepdims=True).shape == (2, 5, 1)


def test_one_dimensional_gives_scalar(rng):
    p = distributions(rng, (6,))
    q = distributions(rng, (6,))
    got = klfast.kl(p, q)
    assert np.ndim(got) == 0
    assert_close(got, call_ref("kl", p, q))
    assert klfast.kl(p, q, keepdims=True).shape == (1,)


BROADCASTS = [
    # (p shape, q shape, axis)
    ((20, 7), (7,), -1),
    ((7,), (20, 7), -1),
    ((20, 7), (1, 7), -1),
    ((1, 7), (20, 7), -1),
    ((4, 1, 7), (5, 7), -1),
    ((4, 1, 7), (1, 5, 7), -1),
    ((5, 7), (4, 1, 7), -1),
    ((7, 20), (7, 1), 0),
    ((7, 1), (7, 20), 0),
    ((3, 7, 1), (1, 7, 4), 1),
    ((7,), (7,), -1),
]


@pytest.mark.parametrize("measure", PAIR_MEASURES + ("entropy",))
@pytest.mark.parametrize("p_shape,q_shape,axis", BROADCASTS)
def test_broadcasting(rng, measure, p_shape, q_shape, axis):
    p = distributions(rng, p_shape, axis=axis)
    q = distributions(rng, q_shape, axis=axis)
    got = call(measure, p, q, axis=axis)
    want = call_ref(measure, p, q, axis=axis)
    assert np.shape(got) == np.shape(want)
    assert_close(got, want, rtol=1e-12, atol=1e-14)
    # the broadcast result is bitwise the result on materialised copies
    if measure != "entropy":
        pb, qb = (np.ascontiguousarray(x) for x in np.broadcast_arrays(
            p.reshape((1,) * (len(q_shape) - len(p_shape)) + p_shape),
            q.reshape((1,) * (len(p_shape) - len(q_shape)) + q_shape)))
        assert np.array_equal(got, call(measure, pb, qb, axis=axis))


@pytest.mark.parametrize("order", ["C", "F"])
def test_broadcast_reference_row_is_not_materialised(rng, order):
    """One q of shape (k,) against P (n, k): no (n, k) copy of q, and a
    Fortran P is converted in bounded blocks, never as a whole."""
    from klfast._core.engine import BLOCK_ELEMENTS

    k = 512
    n = 4 * BLOCK_ELEMENTS // k  # four conversion blocks
    p = np.asarray(distributions(rng, (n, k), dtype=np.float32), order=order)
    q = distributions(rng, (k,), dtype=np.float32)
    want = call_ref("kl", p[:8], q)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        got = klfast.kl(p, q)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_close(got[:8], want, rtol=1e-6, atol=1e-7)
    out_bytes = n * 4
    if order == "C":
        limit = out_bytes + (1 << 16)  # the output and nothing input-sized
    else:
        limit = out_bytes + 2 * BLOCK_ELEMENTS * 4 + (1 << 16)  # at most two blocks
    assert peak <= limit, f"peak {peak} bytes for a {p.nbytes}-byte input"


# --- mpmath at 50 digits ----------------------------------------------------

def mp_row(measure, p, q, eps, normalize=False, base=None):
    """The documented formula for one row, in 50-digit arithmetic."""
    mp = mpmath.mp
    with mpmath.workdps(50):
        P = [mp.mpf(float(x)) for x in p]
        Q = [mp.mpf(float(x)) for x in (p if q is None else q)]
        if normalize:
            sp, sq = mp.fsum(P), mp.fsum(Q)
            P = [x / sp for x in P]
            Q = [x / sq for x in Q]
        E = mp.mpf(float(eps))
        total = mp.mpf(0)
        for a, b in zip(P, Q):
            at, bt = max(a, E), max(b, E)
            if measure == "kl":
                if a == 0:
                    continue
                if bt == 0:
                    return math.inf
                total += a * mp.log(at / bt)
            elif measure == "jeffreys":
                if a == b:
                    continue
                if at == 0 or bt == 0:
                    return math.inf
                total += (a - b) * mp.log(at / bt)
            elif measure == "entropy":
                if a == 0:
                    continue
                total -= a * mp.log(at)
            else:
                if a == 0:
                    continue
                if bt == 0:
                    return math.inf
                total -= a * mp.log(bt)
        if base is not None:
            total /= mp.log(base)
        return float(total)


E12 = 1e-12
HAND_PICKED = [
    # (name, p, q, eps)
    ("1e-300 and 1", [1e-300, 1.0], [0.5, 0.5], 0.0),
    ("1e-300 and 1, default eps", [1e-300, 1.0], [0.5, 0.5], E12),
    ("1e-300 both", [1e-300, 1e-300], [1e-310, 1e-300], 0.0),
    ("subnormal p", [5e-324, 1.0], [1e-310, 1.0], 0.0),
    ("subnormal q", [1.0, 5e-324], [5e-324, 1.0], 0.0),
    ("subnormals both", [5e-324, 1e-310], [1e-310, 5e-324], 0.0),
    ("subnormals, default eps", [5e-324, 1e-310, 1.0], [1e-310, 5e-324, 1.0], E12),
    ("huge ratio", [1e300], [1e-300], 0.0),
    ("ratio underflows to subnormal", [5e-324, 1.0], [0.82, 0.18], 0.0),
    ("ratio underflows, unnormalised", [1e-300, 1.0], [3e23, 1.0], 0.0),
    ("length 1, equal", [1.0], [1.0], E12),
    ("length 1", [0.7], [0.3], E12),
    ("length 1, q zero eps=0", [0.7], [0.0], 0.0),
    ("length 1, zeros", [0.0], [0.0], 0.0),
    ("p>0, q==0, eps=0", [1.0, 0.0], [0.0, 1.0], 0.0),
    ("p>0, q==0, default eps", [1.0, 0.0], [0.0, 1.0], E12),
    ("p==q==0", [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], 0.0),
    ("p==q==0, default eps", [0.0, 0.5, 0.5], [0.0, 0.25, 0.75], E12),
    ("at and around eps", [E12, E12 * (1 + 1e-3), E12 * (1 - 1e-3), 0.5],
     [E12 * (1 - 1e-3), E12, E12 * (1 + 1e-3), 0.25], E12),
    ("around eps=1e-3", [1e-3, 1e-3 * (1 + 1e-3), 1e-3 * (1 - 1e-3), 0.9, 0.0],
     [1e-3 * (1 - 1e-3), 0.0, 1e-3 * (1 + 1e-3), 0.5, 1e-3], 1e-3),
    ("below eps both", [1e-14, 1e-13, 0.7], [1e-15, 1e-16, 0.3], E12),
    ("unnormalised counts", [3.0, 0.0, 1e6], [1.0, 2.0, 5.0], 0.0),
]


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("name,p,q,eps", HAND_PICKED, ids=[c[0] for c in HAND_PICKED])
@pytest.mark.parametrize("base", [None, 2])
def test_hand_picked_rows_match_mpmath(measure, name, p, q, eps, base):
    want = mp_row(measure, p, q, eps, base=base)
    got = float(call_raw(measure, p, q, eps=eps, base=base))
    if math.isinf(want):
        assert got == want
    else:
        assert math.isclose(got, want, rel_tol=1e-13, abs_tol=1e-320), (got, want)


NORMALIZE_PICKED = [
    ("tiny row sum 1e-300", [1e-300, 3e-300], [2e-300, 2e-300]),
    ("subnormal row sum", [1e-310, 1e-310, 2e-310], [5e-324, 1e-323, 5e-324]),
    ("single subnormal", [5e-324], [5e-324]),
    ("counts", [3, 1, 0], [1, 1, 1]),
    ("huge values", [1e300, 3e300], [2e300, 1e299]),
]


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("name,p,q", NORMALIZE_PICKED, ids=[c[0] for c in NORMALIZE_PICKED])
@pytest.mark.parametrize("eps", [0.0, E12])
def test_normalized_hand_picked_rows_match_mpmath(measure, name, p, q, eps):
    """normalize=True divides by the row sum: p / sum(p) is an ordinary
    distribution even when the raw values are tiny."""
    want = mp_row(measure, p, q, eps, normalize=True)
    got = float(call(measure, p, q, eps=eps, normalize=True))
    assert math.isclose(got, want, rel_tol=1e-13, abs_tol=1e-15), (got, want)


def test_float32_extremes_match_mpmath():
    """float32 inputs apply the eps rule with eps rounded to float32."""
    p = np.array([[1e-45, 1.0, 0.0], [1e-38, 0.5, 0.5], [1e-12, 1e-12, 1.0]], dtype=np.float32)
    q = np.array([[0.5, 0.5, 1e-40], [1e-45, 0.7, 0.3], [1.0001e-12, 0.999e-12, 1.0]],
                 dtype=np.float32)
    for measure in MEASURES:
        for eps in (0.0, E12):
            got = call(measure, p, q, eps=eps)
            assert got.dtype == np.float32
            for i in range(3):
                want = mp_row(measure, p[i], q[i], float(np.float32(eps)))
                assert math.isclose(float(got[i]), want, rel_tol=2e-7, abs_tol=1e-30), \
                    (measure, eps, i, got[i], want)


@pytest.mark.parametrize("measure", ["entropy", "cross_entropy"])
@pytest.mark.parametrize("k", [2, 40])  # across lanes, and the row loop
def test_float32_log_terms_are_within_an_ulp_or_two(measure, k):
    """Each float32 term -x log x (entropy) or -1 log x (cross-entropy of a
    row with one 1 against a row holding x) against float64, for x over every
    binade from 1e-37 to 1, next to 1, and on both sides of the intervals the
    float32 log splits a binade into (32 at AVX-512, 16 at AVX2; the
    baseline takes log_ratio(1, x)): measured within 1.6e-7 and 1.8e-7
    relative, float32 rounding included."""
    rng = np.random.default_rng(7)
    edges = np.concatenate([0x3F330000 + (np.arange(17, dtype=np.int64) << 19),  # AVX2
                            0x3F320000 + (np.arange(33, dtype=np.int64) << 18)])  # AVX-512
    edges = edges[:, None] + [-1, 0, 1]
    z = edges.astype(np.uint32).view(np.float32).ravel().astype(np.float64)
    x = np.concatenate([np.exp(rng.uniform(np.log(1e-37), 0.0, 50_000)),
                        1.0 - rng.uniform(0.0, 0.05, 5_000), 1.0 - np.arange(1, 500) * 2.0**-24,
                        (z[:, None] * 2.0 ** np.arange(-120, 1)).ravel()]).astype(np.float32)
    x = x[(x >= 1e-37) & (x < 1)]
    rows = np.zeros((len(x), k), np.float32)
    rows[:, k // 2] = x
    x64 = x.astype(np.float64)
    if measure == "entropy":
        got = klfast.entropy(rows, eps=1e-37, check_sums=False)
        want = -x64 * np.log(x64)
    else:
        ones = np.zeros_like(rows)
        ones[:, k // 2] = 1.0
        got = klfast.cross_entropy(ones, rows, eps=1e-37, check_sums=False)
        want = -np.log(x64)
    rel = np.abs(got.astype(np.float64) - want) / want
    assert rel.max() <= 2.5e-7, (rel.max(), x[rel.argmax()])


# --- dtypes -------------------------------------------------------------------

@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype,result", [
    (np.float64, np.float64), (np.float32, np.float32), (np.float16, np.float32),
    (np.int8, np.float64), (np.int32, np.float64), (np.int64, np.float64),
    (np.uint8, np.float64), (np.uint64, np.float64), (np.bool_, np.float64),
])
def test_dtype_of_result(rng, measure, dtype, result):
    if np.dtype(dtype).kind in "biu":
        p = rng.integers(0, 2 if dtype is np.bool_ else 50, size=(30, 9)).astype(dtype)
        q = rng.integers(0, 2 if dtype is np.bool_ else 50, size=(30, 9)).astype(dtype)
        p[:, 0] = 1
        q[:, 0] = 1
        kwargs = dict(normalize=True)
    else:
        p = distributions(rng, (30, 9), dtype=dtype)
        q = distributions(rng, (30, 9), dtype=dtype)
        kwargs = {}
    got = call(measure, p, q, **kwargs)
    assert got.dtype == result
    want = call_ref(measure, p.astype(np.float64), q.astype(np.float64), **kwargs)
    if result == np.float32:
        assert_close(got, want, rtol=1e-6, atol=1e-7)
    else:
        assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_float32_large_rows_accumulate_in_float64(rng):
    """A float32 accumulator would lose digits over 100,000 terms."""
    p = distributions(rng, (3, 100_000), dtype=np.float32, zero_fraction=0.0)
    q = distributions(rng, (3, 100_000), dtype=np.float32, zero_fraction=0.0)
    for measure in MEASURES:
        got = call(measure, p, q)
        want = call_ref(measure, p, q)
        assert_close(got, want, rtol=2e-7, atol=1e-9)


@pytest.mark.parametrize("p_dtype,q_dtype,result", [
    (np.float32, np.float64, np.float64),
    (np.float64, np.float32, np.float64),
    (np.float16, np.float32, np.float32),
    (np.float32, np.float16, np.float32),
    (np.float16, np.float16, np.float32),
    (np.float32, np.int64, np.float64),   # numpy: float32 + int64 -> float64
    (np.float32, np.int8, np.float32),    # numpy: float32 + int8 -> float32
    (np.float16, np.int8, np.float32),    # numpy: float16 + int8 -> float16 -> float32
    (np.bool_, np.float32, np.float32),
    (np.int32, np.float16, np.float64),   # numpy: int32 + float16 -> float64
    (np.int64, np.float64, np.float64),
])
def test_mixed_dtypes_follow_numpy_promotion(rng, p_dtype, q_dtype, result):
    p = rng.integers(0, 4, size=(10, 5)).astype(p_dtype)
    q = rng.integers(1, 4, size=(10, 5)).astype(q_dtype)
    p[:, 0] = 1
    for measure in PAIR_MEASURES:
        got = call(measure, p, q, normalize=True)
        assert got.dtype == result, (measure, got.dtype)
        want = call_ref(measure, p, q, normalize=True)
        tol = 1e-6 if result == np.float32 else 1e-12
        assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("measure", MEASURES)
def test_lists_and_tuples_are_accepted(measure):
    p = [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]
    q = ((0.25, 0.25, 0.5), (0.1, 0.1, 0.8))
    got = call(measure, p, q)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    assert_close(got, call_ref(measure, np.array(p), np.array(q)))
    q_row = (0.25, 0.25, 0.5)
    assert_close(call(measure, p, q_row), call_ref(measure, np.array(p), np.array(q_row)))
    # plain Python numbers: a 1-D row of ints
    assert_close(call(measure, [3, 1], [1, 1], normalize=True),
                 call_ref(measure, [3, 1], [1, 1], normalize=True))


@pytest.mark.parametrize("measure", MEASURES)
def test_normalize_row_sum_overflows(measure):
    """A row whose sum overflows float64: either the normalized value
    (p / sum(p) is an ordinary distribution) or a ValueError naming the row;
    never a silent NaN or inf."""
    p = np.array([[0.5, 0.5], [1e308, 1e308]])
    q = np.array([[0.25, 0.75], [1e308, 3e308 / 3]])
    try:
        got = call(measure, p, q, normalize=True)
    except ValueError as error:
        assert re.search(r"\bp\b.*row 1(?!\d)", str(error)), str(error)
    else:
        want = [mp_row(measure, p[i], q[i], klfast.DEFAULT_EPS, normalize=True)
                for i in range(2)]
        assert_close(got, want, rtol=1e-13, atol=1e-15)
