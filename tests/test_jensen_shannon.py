"""klfast.jensen_shannon against scipy, the slow twin, and its
mathematics (symmetry, bounds, the triangle inequality of the distance)."""
import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

import klfast
from klfast._core import reference as _reference
from zoo import distributions, layouts

pytestmark = pytest.mark.usefixtures("isa")  # every instruction-set level

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("base", [None, 2.0])
def test_matches_scipy_jensenshannon(rng, axis, base):
    p = rng.random((40, 30)) * 7
    q = rng.random((40, 30)) * 3
    p[p < 1] = 0  # exact zeros
    got = klfast.jensen_shannon(p, q, axis=axis, base=base, normalize=True, distance=True)
    want = jensenshannon(p, q, axis=axis, base=base)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    got_js = klfast.jensen_shannon(p, q, axis=axis, base=base, normalize=True)
    np.testing.assert_allclose(got_js, want**2, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_matches_twin_in_every_layout(rng, dtype, rtol):
    p = distributions(rng, (25, 70), dtype)
    q = distributions(rng, (25, 70), dtype)
    want = _reference.jensen_shannon(p, q)
    results = []
    for name, x, axis in layouts(p):
        y = [v for n, v, a in layouts(q) if n == name][0]
        got = klfast.jensen_shannon(x, y, axis=axis)
        assert got.dtype == dtype, name
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-7 if dtype == np.float32
                                   else 1e-16, err_msg=name)
        results.append(got)
    for got in results:  # bitwise identical across layouts
        assert np.array_equal(got, results[0])


def test_one_sided_zeros_and_disjoint_support():
    # disjoint supports: JS = ln 2 exactly (1 bit)
    assert klfast.jensen_shannon([1.0, 0.0], [0.0, 1.0]) == pytest.approx(math.log(2), rel=1e-15)
    assert klfast.jensen_shannon([0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], base=2) == \
        pytest.approx(1.0, rel=1e-15)
    # all-zero rows against each other (scored as given): 0 (no NaN)
    assert klfast.jensen_shannon(np.zeros(4), np.zeros(4), check_sums=False) == 0.0


def test_subnormals_take_the_exact_path():
    p = np.array([5e-324, 1e-310, 1.0])
    q = np.array([0.0, 3e-310, 1.0])
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    want = 0
    for a, b in zip(p, q):
        a, b = mp.mpf(float(a)), mp.mpf(float(b))
        m = (a + b) / 2
        want += (a * mp.log(a / m) if a else 0) + (b * mp.log(b / m) if b else 0)
    assert float(klfast.jensen_shannon(p, q)) == pytest.approx(float(want / 2), rel=1e-12,
                                                               abs=1e-320)


@pytest.mark.parametrize("tiny", [5e-324, 1e-310, 3e-308])
def test_tiny_entry_beside_a_zero(tiny):
    """hi tiny (subnormal, or below twice the smallest normal) and lo = 0:
    its term is tiny * ln 2 (m = tiny / 2), halved; the fast path takes it."""
    got = klfast.jensen_shannon([[tiny, 0.5, 0.5], [0.0, 0.5, 0.5]],
                                [[0.0, 0.5, 0.5], [tiny, 0.5, 0.5]])
    want = tiny * math.log(2) / 2
    np.testing.assert_allclose(got, [want, want], rtol=1e-12, atol=5e-324)


def test_near_identical_rows_are_never_negative_or_nan(rng):
    p = distributions(rng, (2000, 64), zero_fraction=0)
    q = p * (1 + 1e-15 * rng.standard_normal(p.shape))
    js = klfast.jensen_shannon(p, q)
    assert np.all(js >= 0) and not np.isnan(js).any()
    dist = klfast.jensen_shannon(p, p, distance=True)
    assert np.all(dist == 0)


def test_distance_with_out_and_keepdims(rng):
    p = distributions(rng, (5, 8))
    q = distributions(rng, (5, 8))
    out = np.empty((5, 1))
    result = klfast.jensen_shannon(p, q, keepdims=True, distance=True, out=out)
    assert result is out
    np.testing.assert_allclose(out, _reference.jensen_shannon(p, q, keepdims=True, distance=True),
                               rtol=1e-13)


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match=r"q: row 1 has a negative entry"):
        klfast.jensen_shannon([[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [1.5, -0.5]])
    with pytest.raises(ValueError, match=r"p: row 0 contains NaN"):
        klfast.jensen_shannon([np.nan, 1.0], [0.5, 0.5])
    with pytest.raises(TypeError):
        klfast.jensen_shannon([1j, 1.0], [0.5, 0.5])


rows = hnp.arrays(np.float64, st.integers(1, 12),
                  elements=st.floats(0, 1e3, allow_subnormal=False)).filter(lambda a: a.sum() > 0)


@given(st.data())
def test_symmetric_and_bounded(data):
    p = data.draw(rows)
    q = data.draw(hnp.arrays(np.float64, p.shape, elements=st.floats(0, 1e3,
                                                                     allow_subnormal=False)))
    hypothesis.assume(q.sum() > 0)
    a = float(klfast.jensen_shannon(p, q, normalize=True))
    b = float(klfast.jensen_shannon(q, p, normalize=True))
    assert a == pytest.approx(b, rel=1e-12, abs=1e-15)
    assert 0.0 <= a <= math.log(2) * (1 + 1e-12)


@given(st.data())
def test_distance_triangle_inequality(data):
    k = data.draw(st.integers(1, 10))
    elements = st.floats(0, 1, allow_subnormal=False)
    p, q, r = (data.draw(hnp.arrays(np.float64, k, elements=elements)) for _ in range(3))
    hypothesis.assume(min(p.sum(), q.sum(), r.sum()) > 1e-6)

    def d(a, b):
        return float(klfast.jensen_shannon(a, b, normalize=True, distance=True))

    assert d(p, r) <= d(p, q) + d(q, r) + 1e-12
