"""klfast.pairwise against its slow twin: a plain double loop over the
reference formulas (klfast._core.reference), scipy's cdist for
Jensen-Shannon, and mpmath for near-identical rows, where the terms cancel.

Covers both dtypes, the matrix-product path and the per-pair path (eps=0,
huge entries), P against itself (exact symmetry, zero diagonal), empty and
one-row inputs, top-k against a stable argsort of the full matrix, and
every error naming its argument.
"""
import math

import numpy as np
import pytest

import klfast
from klfast._core import pairwise as pairwise_module
from klfast._core import reference

pytestmark = pytest.mark.usefixtures("isa")  # every instruction-set level

MEASURES = ["kl", "jeffreys", "cross_entropy", "jensen_shannon"]
SYMMETRIC = ["jeffreys", "jensen_shannon"]
RTOL = {np.float64: 1e-12, np.float32: 2e-6}


def twin(P, Q, measure, **kwargs):
    """result[i, j] = D(P[i] || Q[j]) by the reference formula, pair by pair."""
    fn = reference.MEASURES[measure]
    P, Q = np.asarray(P), np.asarray(Q)
    result = np.empty((P.shape[0], Q.shape[0]))
    for i in range(P.shape[0]):
        for j in range(Q.shape[0]):
            result[i, j] = fn(P[i], Q[j], **kwargs)
    return result


def distributions(rng, n, k, zeros=0.2, dtype=np.float64):
    x = rng.dirichlet(np.ones(k), size=n)
    x[rng.random(x.shape) < zeros] = 0.0
    x[:, 0] += (x.sum(axis=1) == 0)  # no empty rows
    x /= x.sum(axis=1, keepdims=True)
    return x.astype(dtype)


def close(got, want, dtype, measure):
    rtol = RTOL[dtype]
    # float32: terms to float32 precision, so the error scales with the terms
    atol = 0.0 if dtype == np.float64 else 5e-6 * (1 + np.abs(want).max(initial=0))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=measure)


@pytest.mark.parametrize("noise", [0.2, 0.4, 0.6])
@pytest.mark.parametrize("measure", ["kl", "jeffreys"])  # cross_entropy: H(p) keeps it large
def test_clustered_rows_match_the_slow_twin(rng, measure, noise):
    """Rows that are noisy copies of a few topics: many pairs fail the
    product's rounding bound and are recomputed, first by the level's row
    function where its own bound allows, else by the accurate kernel; every
    pair still within 1e-12 of the twin."""
    k = 300
    topics = rng.dirichlet(np.ones(k), size=4)

    def rows(n):
        x = topics[rng.integers(0, 4, n)] * np.exp(noise * rng.standard_normal((n, k)))
        return x / x.sum(axis=1, keepdims=True)

    P, Q = rows(24), rows(30)
    got, recomputed = pairwise_module.compute(P, Q, measure)
    assert recomputed > 0  # the test reaches the recomputation
    close(got, twin(P, Q, measure), np.float64, measure)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("measure", MEASURES)
def test_matches_the_slow_twin(rng, measure, dtype):
    P = distributions(rng, 13, 17, dtype=dtype)
    Q = distributions(rng, 11, 17, dtype=dtype)
    got = klfast.pairwise(P, Q, measure)
    assert got.shape == (13, 11) and got.dtype == dtype
    close(got, twin(P, Q, measure), dtype, measure)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("eps", [0.0, 1e-300, 0.05])
def test_eps_rule(rng, measure, eps):
    """eps=0 and eps below the smallest normal take the per-pair path
    (+inf where q == 0 < p); a large eps floors inside the products."""
    P = distributions(rng, 6, 9, zeros=0.3)
    Q = distributions(rng, 7, 9, zeros=0.3)
    kwargs = {} if measure == "jensen_shannon" else {"eps": eps}
    got = klfast.pairwise(P, Q, measure, **kwargs)
    want = twin(P, Q, measure, **kwargs)
    assert np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12)


@pytest.mark.parametrize("measure", MEASURES)
def test_base_and_normalize(rng, measure):
    counts_p = rng.integers(0, 20, size=(5, 8))
    counts_q = rng.integers(0, 20, size=(6, 8))
    counts_p[:, 0] += 1
    counts_q[:, 0] += 1
    got = klfast.pairwise(counts_p, counts_q, measure, normalize=True, base=2)
    want = twin(counts_p, counts_q, measure, normalize=True, base=2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("measure", MEASURES)
def test_unnormalised_rows_and_huge_entries(rng, measure):
    """check_sums=False scores rows as given; entries past 2^500 leave the
    product path (per pair), and positive logs enlarge the bound."""
    P = rng.random((4, 6)) * 3
    Q = rng.random((5, 6)) * 3
    for scale in (1.0, 1e200):
        got = klfast.pairwise(P * scale, Q, measure, check_sums=False)
        want = twin(P * scale, Q, measure, check_sums=False)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=str(scale))


def test_jensen_shannon_matches_scipy_cdist(rng):
    cdist = pytest.importorskip("scipy.spatial.distance").cdist

    P = distributions(rng, 9, 12)
    Q = distributions(rng, 8, 12)
    got = klfast.pairwise(P, Q, "js", distance=True)
    np.testing.assert_allclose(got, cdist(P, Q, "jensenshannon"), rtol=1e-12, atol=1e-15)


def test_jensen_shannon_is_the_row_function_bit_for_bit(rng):
    P = distributions(rng, 7, 33)
    Q = distributions(rng, 9, 33)
    got = klfast.pairwise(P, Q, "jensen_shannon")
    for i in range(7):
        assert np.array_equal(got[i], klfast.jensen_shannon(P[i], Q))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("measure", MEASURES)
def test_against_itself(rng, measure, dtype):
    P = distributions(rng, 12, 10, dtype=dtype)
    got = klfast.pairwise(P, None, measure)
    close(got, twin(P, P, measure), dtype, measure)
    if measure in SYMMETRIC:
        assert np.array_equal(got, got.T)
    if measure != "cross_entropy":
        assert np.all(np.diag(got) == 0)
    else:
        close(np.diag(got), klfast.entropy(P), dtype, measure)


@pytest.mark.parametrize("measure", SYMMETRIC)
def test_against_itself_across_tiles(rng, measure, monkeypatch):
    """Bands and tiles smaller than the matrix: the mirrored halves meet."""
    monkeypatch.setattr(pairwise_module, "TILE_ROWS", 4)
    monkeypatch.setattr(pairwise_module, "TILE_COLS", 6)
    P = distributions(rng, 23, 7)
    got = klfast.pairwise(P, None, measure)
    assert np.array_equal(got, got.T) and np.all(np.diag(got) == 0)
    np.testing.assert_allclose(got, twin(P, P, measure), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("measure", MEASURES)
def test_orientation(rng, measure):
    """Row i scores P[i] against every row of Q; swapping P and Q transposes."""
    P = distributions(rng, 3, 5)
    Q = distributions(rng, 4, 5)
    got = klfast.pairwise(P, Q, measure)
    row = getattr(klfast, measure)(P[1], Q)
    np.testing.assert_allclose(got[1], row, rtol=1e-12)
    swapped = klfast.pairwise(Q, P, measure)
    np.testing.assert_allclose(swapped, twin(Q, P, measure), rtol=1e-12)
    if measure in SYMMETRIC:
        np.testing.assert_allclose(swapped, got.T, rtol=1e-12)


# ---- near-identical rows: the products cancel, the exact kernel keeps the digits

def _mp_measure(measure, p, q, eps=1e-12):
    mp = pytest.importorskip("mpmath").mp
    total = mp.mpf(0)
    with mp.workdps(60):
        for a, b in zip(p, q):
            a, b = mp.mpf(float(a)), mp.mpf(float(b))
            at, bt = max(a, mp.mpf(eps)), max(b, mp.mpf(eps))
            if measure == "kl" and a > 0:
                total += a * mp.log(at / bt)
            elif measure == "jeffreys" and a != b:
                total += (a - b) * mp.log(at / bt)
            elif measure == "cross_entropy" and a > 0:
                total -= a * mp.log(bt)
        return float(total)


@pytest.mark.parametrize("measure", ["kl", "jeffreys", "cross_entropy"])
def test_near_identical_rows_keep_their_digits(rng, measure):
    """Rows that differ by 1e-2 ... 1e-10 relative: the divergence is down to
    1e-21, the products' rounding about 1e-15; every pair within 1e-12 of
    mpmath on the exact inputs (also where klfast.kl itself loses digits)."""
    k = 200
    base = distributions(rng, 3, k, zeros=0.0)
    P = np.repeat(base, 5, axis=0)
    rel = np.tile([1e-2, 1e-4, 1e-6, 1e-8, 1e-10], 3)[:, None]
    Q = P * (1 + rel * rng.standard_normal(P.shape))
    Q[:, 5] = 0.0  # a floored entry among them
    Q /= Q.sum(axis=1, keepdims=True)
    got, recomputed = pairwise_module.compute(P, Q, measure)
    if measure != "cross_entropy":
        assert recomputed > 0
    for i in range(len(P)):
        for j in (i, (i + 1) % len(P)):
            want = _mp_measure(measure, P[i], Q[j])
            assert abs(got[i, j] - want) <= 1e-12 * abs(want), (i, j, got[i, j], want)


def test_near_pairs_float32(rng):
    """float32: the float64 value of the float32 inputs, rounded."""
    P = distributions(rng, 4, 50, zeros=0.0, dtype=np.float32)
    Q = (P * (1 + 1e-3 * rng.standard_normal(P.shape))).astype(np.float32)
    got = klfast.pairwise(P, Q, "kl", check_sums=False)
    for i in range(4):
        want = _mp_measure("kl", P[i], Q[i], eps=float(np.float32(1e-12)))
        assert abs(float(got[i, i]) - want) <= 1e-6 * abs(want)


# ---- shapes --------------------------------------------------------------------

@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("n,m", [(0, 3), (3, 0), (0, 0), (1, 1), (1, 4), (4, 1)])
def test_empty_and_one_row(rng, measure, n, m):
    P = distributions(rng, n, 6) if n else np.empty((0, 6))
    Q = distributions(rng, m, 6) if m else np.empty((0, 6))
    got = klfast.pairwise(P, Q, measure)
    assert got.shape == (n, m)
    np.testing.assert_allclose(got, twin(P, Q, measure), rtol=1e-12)
    if m:
        idx, val = klfast.pairwise(P, Q, measure, topk=1)
        assert idx.shape == val.shape == (n, 1)


@pytest.mark.parametrize("layout", ["fortran", "strided", "int", "float16", "list", "readonly"])
def test_layouts_and_dtypes(rng, layout):
    P = distributions(rng, 5, 8)
    Q = distributions(rng, 6, 8)
    want = twin(P, Q, "kl")
    if layout == "fortran":
        P, Q = np.asfortranarray(P), np.asfortranarray(Q)
    elif layout == "strided":
        P = np.repeat(P, 2, axis=1)[:, ::2]
        Q = np.repeat(Q, 2, axis=0)[::2]
    elif layout == "int":
        P = rng.integers(1, 9, size=(5, 8))
        Q = rng.integers(1, 9, size=(6, 8))
        got = klfast.pairwise(P, Q, normalize=True)
        np.testing.assert_allclose(got, twin(P, Q, "kl", normalize=True), rtol=1e-12)
        return
    elif layout == "float16":
        got = klfast.pairwise(P.astype(np.float16), Q.astype(np.float16), check_sums=False)
        assert got.dtype == np.float32
        return
    elif layout == "list":
        P, Q = P.tolist(), Q.tolist()
    else:
        P.flags.writeable = Q.flags.writeable = False
    np.testing.assert_allclose(klfast.pairwise(P, Q, "kl"), want, rtol=1e-12)


def test_inputs_are_not_modified(rng):
    P = distributions(rng, 6, 9)
    Q = distributions(rng, 7, 9)
    P0, Q0 = P.copy(), Q.copy()
    for measure in MEASURES:
        klfast.pairwise(P, Q, measure, normalize=True)
        klfast.pairwise(P, None, measure, topk=2)
    assert np.array_equal(P, P0) and np.array_equal(Q, Q0)


def test_out(rng):
    P = distributions(rng, 4, 5)
    Q = distributions(rng, 3, 5)
    out = np.empty((4, 3))
    assert klfast.pairwise(P, Q, out=out) is out
    np.testing.assert_allclose(out, twin(P, Q, "kl"), rtol=1e-12)
    fortran = np.empty((4, 3), order="F")
    klfast.pairwise(P, Q, "js", out=fortran)
    np.testing.assert_allclose(fortran, twin(P, Q, "jensen_shannon"), rtol=1e-12)
    # an out over the input's memory gets the values through a copy
    S = distributions(rng, 4, 4)
    want = twin(S, S, "jeffreys")
    klfast.pairwise(S, None, "jeffreys", out=S)
    np.testing.assert_allclose(S, want, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("measure", MEASURES)
def test_results_do_not_depend_on_threads(rng, measure):
    P = distributions(rng, 300, 64)
    Q = distributions(rng, 200, 64)
    one = klfast.pairwise(P, Q, measure, num_threads=1)
    two = klfast.pairwise(P, Q, measure, num_threads=2)
    _same_for_any_threads(one, two, measure)


def _same_for_any_threads(one, two, measure):
    """jensen_shannon's direct kernel gives the same bits on any thread
    count; the products' last bits are the BLAS's, which may round a pair
    differently with another thread count or band shape (OpenBLAS does with
    OPENBLAS_L2_SIZE set): those agree within twice the accuracy bound."""
    if measure == "jensen_shannon":
        assert np.array_equal(one, two)
    else:
        np.testing.assert_allclose(one, two, rtol=2 * RTOL[np.float64], atol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("measure", ["kl", "jeffreys", "cross_entropy"])
def test_bands_on_python_threads(rng, measure, dtype, monkeypatch):
    """Product bands on Python threads (one-thread BLAS; large inputs): the
    same values as one thread, P against Q, against itself and top-k."""
    pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(pairwise_module, "POOL_WORK", 0)
    monkeypatch.setattr(pairwise_module.engine, "MIN_PARALLEL_ELEMENTS", 0)
    monkeypatch.setattr(pairwise_module, "TILE_COLS", 16)
    calls = []
    monkeypatch.setattr(pairwise_module._Run, "_for_bands", _counted(calls))
    P = distributions(rng, 40, 9, dtype=dtype)
    Q = distributions(rng, 30, 9, dtype=dtype)
    P[5] = Q[7]  # a pair to recompute
    for q in (Q, None):
        one = klfast.pairwise(P, q, measure, num_threads=1)
        two = klfast.pairwise(P, q, measure, num_threads=2)
        if dtype == np.float64:
            _same_for_any_threads(one, two, measure)
        else:  # rounded to float32 from within the float64 bound
            close(two, one, dtype, measure)
        close(two, twin(P, P if q is None else q, measure), dtype, measure)
        idx, val = klfast.pairwise(P, q, measure, topk=3, num_threads=2)
        want_idx, want_val = _argsort_topk(one, 3)
        assert np.array_equal(idx, want_idx)
        close(val, want_val, dtype, measure)
    assert calls == [False, True, True] * 2  # two threads: bands on Python threads


def _counted(calls):
    """_Run._for_bands, noting for each call whether its bands ran on Python
    threads (they are then given threads=1; else None)."""
    for_bands = pairwise_module._Run._for_bands

    def counted(self, n, band_work):
        given = []

        def band(i0, i1, threads):
            given.append(threads)
            return band_work(i0, i1, threads)

        for_bands(self, n, band)
        calls.append(given[0] == 1)
    return counted


# ---- top-k ---------------------------------------------------------------------

def _argsort_topk(full, k):
    order = np.argsort(full, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(full, order, axis=1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("measure", MEASURES)
def test_topk_is_the_argsort_of_the_matrix(rng, measure, dtype, monkeypatch):
    monkeypatch.setattr(pairwise_module, "TILE_ROWS", 8)
    monkeypatch.setattr(pairwise_module, "TILE_COLS", 16)
    P = distributions(rng, 21, 12, dtype=dtype)
    Q = distributions(rng, 40, 12, dtype=dtype)
    Q[7] = Q[3]  # ties: the smaller index first
    Q[30] = Q[3]
    P[2] = Q[3]
    full = klfast.pairwise(P, Q, measure)
    for k in (1, 5, 40):
        idx, val = klfast.pairwise(P, Q, measure, topk=k)
        want_idx, want_val = _argsort_topk(full, k)
        assert idx.dtype == np.int64 and val.dtype == dtype
        assert np.array_equal(idx, want_idx), (measure, k)
        assert np.array_equal(val, want_val), (measure, k)


def test_topk_against_itself_and_distance(rng):
    P = distributions(rng, 30, 10)
    idx, val = klfast.pairwise(P, None, "js", topk=3, distance=True)
    full = klfast.pairwise(P, None, "js", distance=True)
    want_idx, want_val = _argsort_topk(full, 3)
    assert np.array_equal(idx, want_idx) and np.array_equal(val, want_val)
    assert np.array_equal(idx[:, 0], np.arange(30))  # each row is its own nearest


# ---- errors --------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(measure="entropy"), ValueError, r"measure must be one of"),
    (dict(measure=3), TypeError, r"measure must be a str"),
    (dict(topk=0), ValueError, r"topk must be >= 1"),
    (dict(topk=2.0), TypeError, r"topk must be None or an int"),
    (dict(topk=True), TypeError, r"topk"),
    (dict(topk=9), ValueError, r"topk=9 is more than the 4 rows of Q"),
    (dict(distance=True), ValueError, r"distance=True is for measure='jensen_shannon'"),
    (dict(measure="js", distance=True, base=0.5), ValueError, r"distance=True needs base > 1"),
    (dict(distance="yes"), TypeError, r"distance must be True or False"),
    (dict(normalize=None), TypeError, r"normalize must be True or False"),
    (dict(eps=-1.0), ValueError, r"eps must be finite and >= 0"),
    (dict(eps="1"), TypeError, r"eps must be a real number"),
    (dict(base=1.0), ValueError, r"base must be"),
    (dict(num_threads=0), ValueError, r"num_threads must be >= 1"),
    (dict(num_threads=1.5), TypeError, r"num_threads must be None or an int"),
    (dict(topk=2, out=np.empty((3, 4))), ValueError, r"out= takes the full"),
    (dict(out=np.empty((4, 3))), ValueError, r"out has shape \(4, 3\), expected \(3, 4\)"),
    (dict(out=np.empty((3, 4), dtype=np.float32)), ValueError, r"out has dtype float32"),
    (dict(out=[[0.0] * 4] * 3), TypeError, r"out must be a numpy.ndarray"),
])
def test_errors_name_the_argument(rng, kwargs, error, match):
    P = distributions(rng, 3, 5)
    Q = distributions(rng, 4, 5)
    with pytest.raises(error, match=match):
        klfast.pairwise(P, Q, **kwargs)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("kwargs", [{}, {"check_sums": False}, {"normalize": True}])
@pytest.mark.parametrize("value, match", [(-0.1, "has a negative entry"), (np.nan, "contains NaN"),
                                          (np.inf, "contains an infinite value")])
def test_invalid_entries_are_named_on_every_path(rng, measure, kwargs, value, match):
    P = distributions(rng, 3, 5)
    Q = distributions(rng, 4, 5)
    bad = Q.copy()
    bad[2, 1] = value
    with pytest.raises(ValueError, match=rf"Q: row 2 {match}"):
        klfast.pairwise(P, bad, measure, **kwargs)
    with pytest.raises(ValueError, match=rf"P: row 2 {match}"):
        klfast.pairwise(bad, Q, measure, **kwargs)
    with pytest.raises(ValueError, match=rf"P: row 2 {match}"):
        klfast.pairwise(bad, None, measure, **kwargs)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_sums_near_the_tolerance(rng, measure, dtype):
    """Rows summing to 1 within SUM_TOLERANCE are scored, others named, as the slow twin says."""
    P = distributions(rng, 3, 6)
    for total in (1 - 0.9e-3, 1 + 0.6e-3, 1 + 0.99e-3, 1 + 1.01e-3, 1 - 1.2e-3, 1.5):
        Q = distributions(rng, 4, 6)
        Q[3] *= total
        Q = Q.astype(dtype)
        try:
            want = twin(P.astype(dtype), Q, measure)
        except ValueError:
            with pytest.raises(ValueError, match=r"Q: row 3 sums to"):
                klfast.pairwise(P.astype(dtype), Q, measure)
        else:
            close(klfast.pairwise(P.astype(dtype), Q, measure), want, dtype, measure)


def test_input_errors(rng):
    P = distributions(rng, 3, 5)
    Q = distributions(rng, 4, 5)
    with pytest.raises(ValueError, match=r"P must be 2-D \(n_rows, k\).*P\[None, :\]"):
        klfast.pairwise(P[0], Q)
    with pytest.raises(ValueError, match=r"Q must be 2-D"):
        klfast.pairwise(P, Q[None])
    with pytest.raises(ValueError, match=r"same number of columns.*\(3, 5\) and \(4, 6\)"):
        klfast.pairwise(P, np.ones((4, 6)) / 6)
    with pytest.raises(TypeError, match=r"P must hold real numbers"):
        klfast.pairwise(P.astype(complex), Q)
    with pytest.raises(TypeError, match=r"P is required"):
        klfast.pairwise(None, Q)
    bad = Q.copy()
    bad[2, 1] = -0.1
    with pytest.raises(ValueError, match=r"Q: row 2 has a negative entry"):
        klfast.pairwise(P, bad)
    bad = P.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"P: row 1 contains NaN"):
        klfast.pairwise(bad, None, "js", topk=1)
    with pytest.raises(ValueError, match=r"Q: row 0 sums to 2.*normalize=True"):
        klfast.pairwise(P, Q * 2)
    with pytest.raises(ValueError, match=r"P: row 0 sums to 0 and cannot be normalized"):
        klfast.pairwise(np.zeros((2, 5)), Q, normalize=True)
    with pytest.raises(ValueError, match=r"eps=.*above float32's range"):
        klfast.pairwise(P.astype(np.float32), None, eps=1e39)
