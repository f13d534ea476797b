"""The fast kernels' code paths, at every instruction-set level.

A row is read in groups of 64-byte blocks (float32: four blocks, summed in
float32 before they are widened), then the rest as one shorter group whose
last vectors are loaded in part. These tests walk every row length across
those boundaries, and the corners of the design: -0.0 (flagged by the cheap
vector check, summed as zero), and a float32 group sum that overflows.
"""
import math

import numpy as np
import pytest

import klfast
from klfast._core.reference import jensen_shannon_rows
from zoo import MEASURES, call, call_ref

pytestmark = pytest.mark.usefixtures("isa")  # every instruction-set level

ALL = MEASURES + ("jensen_shannon",)
LENGTHS = list(range(1, 80)) + [95, 96, 97, 100, 127, 128, 129, 130]


def reference(measure, p, q, **kwargs):
    """The slow twin on the same values, rows scored as given."""
    if measure == "jensen_shannon":
        kwargs.pop("eps", None)
    return call_ref(measure, p.astype(np.float64), q.astype(np.float64), check_sums=False,
                    **kwargs)


def run(measure, p, q, **kwargs):
    if measure == "jensen_shannon":
        kwargs.pop("eps", None)
        return klfast.jensen_shannon(p, q, **kwargs)
    return call(measure, p, q, **kwargs)


def rows(rng, n, k, dtype):
    """Rows summing to 1 with ~15 % exact zeros, values spread over decades."""
    x = rng.random((n, k)) * 10.0 ** rng.integers(-6, 1, size=(n, k))
    x[rng.random((n, k)) < 0.15] = 0.0
    x[:, 0] += x.sum(axis=1) == 0
    return (x / x.sum(axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-13), (np.float32, 1e-6)])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("eps", [0.0, 1e-12])
def test_every_row_length_matches_reference(rng, dtype, rtol, normalize, eps):
    for k in LENGTHS:
        p, q = rows(rng, 3, k, dtype), rows(rng, 3, k, dtype)
        if normalize:
            p, q = p * 3, q * 0.25
        if dtype == np.float32:
            eps32 = float(np.float32(eps))
            p64, q64 = p.astype(np.float64), q.astype(np.float64)
        else:
            eps32, p64, q64 = eps, p, q
        for measure in ALL:
            got = run(measure, p, q, eps=eps, normalize=normalize)
            want = reference(measure, p64, q64, eps=eps32, normalize=normalize)
            assert got.dtype == dtype
            scale = np.abs(p64).sum(axis=1) * (1 + np.abs(np.log(np.maximum(p64, 1e-12))).max())
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-3 * scale.max(),
                                       err_msg=f"{measure} k={k}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [3, 17, 100, 1000])
def test_negative_zero_gives_the_same_bits_as_zero(rng, dtype, k):
    """-0.0 is a zero: the kernels sum it as one (the cheap vector check flags
    it, a scalar look confirms the row is valid), so the bits do not change."""
    p, q = rows(rng, 4, k, dtype), rows(rng, 4, k, dtype)
    pn, qn = p.copy(), q.copy()
    pn[p == 0] = -0.0
    qn[q == 0] = -0.0
    assert np.signbit(pn[p == 0]).all() and (p == 0).any()
    for measure in ALL:
        for kwargs in ({}, {"normalize": True}, {"eps": 0.0}):
            if measure == "jensen_shannon" and "eps" in kwargs:
                continue
            want = run(measure, p, q, **kwargs)
            got = run(measure, pn, qn, **kwargs)
            assert np.array_equal(got, want, equal_nan=True), (measure, kwargs)


def test_negative_zero_next_to_a_negative_value_is_still_an_error():
    p = np.full((2, 40), 1 / 40)
    p[1, 5] = -0.0
    p[1, 30] = -1e-3
    q = np.full((2, 40), 1 / 40)
    with pytest.raises(ValueError, match="negative"):
        klfast.kl(p, q)


def test_float32_group_sum_overflow_takes_the_exact_path():
    """Four float32 terms of one lane are added in float32 before widening:
    +2e38 + 2e38 overflows there. Such a row is recomputed in float64."""
    k = 64  # one group of four 16-float blocks; lane 0 of each block:
    p = np.full(k, 1e-3, dtype=np.float32)
    q = np.full(k, 1e-3, dtype=np.float32)
    p[0] = p[16] = 1e38
    q[0] = q[16] = np.float32(1e38 / math.e ** 2)      # terms of about +2e38
    p[32] = p[48] = 1.5e38
    q[32] = q[48] = 3.4e38                             # terms of about -1.23e38
    want = float(reference("kl", p, q))
    assert 1e38 < want < 3e38
    got = klfast.kl(p, q, check_sums=False)  # rows of huge entries: not distributions
    assert got.dtype == np.float32
    assert math.isclose(float(got), want, rel_tol=1e-6)


@pytest.mark.parametrize("dtype,big", [(np.float64, 1e308), (np.float32, 3e38)])
@pytest.mark.parametrize("measure", ["kl", "jeffreys", "jensen_shannon"])
def test_huge_entries_are_exact(dtype, big, measure):
    """Entries from 2^1022 (float32: 2^126) on would overflow a + b' in the
    fast log; their rows take the exact path."""
    p = np.array([[big, 1e-3, 0.0], [big * 0.55, 2.0, 1.0]], dtype=dtype)
    q = np.array([[big * 0.6, 1e-3, 1.0], [big, 1.0, 0.0]], dtype=dtype)
    got = run(measure, p, q, check_sums=False)  # rows of huge entries: not distributions
    want = reference(measure, p.astype(np.float64), q.astype(np.float64),
                     eps=float(np.float32(1e-12)) if dtype == np.float32 else 1e-12)
    assert np.isfinite(want).all()
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, [1e-12, 1e-9]), (np.float32, [1e-3, None])])
@pytest.mark.parametrize("path", ["fast", "exact"])
def test_js_of_nearly_equal_rows_keeps_its_digits(rng, dtype, rtol, path):
    """JS of rows that differ by 1e-3 (1e-6) relative is about 1e-7 (1e-13)
    of their terms: a log(p/m) with a rounded m lost all but 4 (float64, 1e-6)
    of its digits. A subnormal entry sends a row to the exact path."""
    p = rows(rng, 4, 1000, np.float64)
    p[p == 0] = 1e-3
    p /= p.sum(axis=1, keepdims=True)
    for rel, tol in zip([1e-3, 1e-6], rtol):
        if tol is None:  # float32 has no digits left for 1e-6
            continue
        q = p * (1 + rel * rng.standard_normal(p.shape))
        a, b = p.astype(dtype), q.astype(dtype)
        got = klfast.jensen_shannon(a, b)
        if path == "exact":
            # two subnormals: the smaller is inside a log (a 0 beside one is not)
            tiny = 1e-310 if dtype == np.float64 else 1e-40
            a[:, 7], b[:, 7] = tiny, tiny / 2
            got = klfast.jensen_shannon(a, b)
            # its own term, below 1e-310 (1e-40), is below the tolerance
            a, b = np.delete(a, 7, axis=1), np.delete(b, 7, axis=1)
        want = jensen_shannon_rows(a, b)
        np.testing.assert_allclose(got, want, rtol=tol, atol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (7, 3), (20_000, 2), (3, 40_001)])
@pytest.mark.parametrize("threads", [1, 2])
def test_read_floor_reads_every_entry(dtype, shape, threads):
    """The benchmarks' read floor sums every entry of both inputs once,
    in blocks that ignore the rows (checked against numpy's float64 sum)."""
    from klfast._diagnostics import read_floor

    rng = np.random.default_rng(5)
    p = rng.integers(0, 4, size=shape).astype(dtype)
    q = rng.integers(0, 4, size=shape).astype(dtype)
    expected = p.astype(np.float64).sum() + q.astype(np.float64).sum()
    assert read_floor(p, q, threads) == expected
