"""Property tests (hypothesis): the mathematics every result must satisfy,
the slow twin on drawn arrays, and bitwise independence of thread count and
memory layout."""
import numpy as np
import pytest

import klfast
from klfast._core.engine import MIN_PARALLEL_ELEMENTS
from zoo import MEASURES, call_raw, call_ref_raw, layouts

pytestmark = pytest.mark.usefixtures("isa")  # every instruction-set level

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import assume, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

EPS = st.sampled_from([0.0, klfast.DEFAULT_EPS, 1e-6, 1e-3])

# entries: ordinary values, exact zeros, subnormals and values near the eps
# choices, all non-negative and finite
ENTRY = st.one_of(
    st.floats(min_value=0.0, max_value=1.0, allow_subnormal=True),
    st.sampled_from([0.0, 5e-324, 1e-310, 1e-300, 1e-12, 1.001e-12, 0.999e-12, 1e-6, 1e-3]),
)


@st.composite
def pairs(draw, max_rows=5, max_k=8, dtype=np.float64):
    n = draw(st.integers(1, max_rows))
    k = draw(st.integers(1, max_k))
    p = draw(hnp.arrays(dtype, (n, k), elements=ENTRY))
    q = draw(hnp.arrays(dtype, (n, k), elements=ENTRY))
    return p, q


def normalized(x):
    """Rows that sum to 1 (a row of zeros becomes uniform); float64."""
    x = np.array(x, dtype=np.float64)
    x[x.sum(axis=-1) == 0] = 1.0
    x = x / x.sum(axis=-1, keepdims=True)
    return x


@given(pairs(), EPS)
def test_kl_nonnegative_on_distributions(pq, eps):
    p, q = (normalized(x) for x in pq)
    k = p.shape[-1]
    got = klfast.kl(p, q, eps=eps)
    # rounding of the row sums; with eps > 0 the floor q~ = max(q, eps) adds
    # at most k * eps of mass, so KL can dip to -k * eps (Gibbs' inequality)
    assert (got >= -(k * eps + 1e-14)).all(), got
    assert not np.isnan(got).any()


@given(pairs(), EPS, st.booleans())
def test_kl_of_a_row_with_itself_is_zero(pq, eps, normalize):
    p, _ = pq
    if normalize:
        p = normalized(p)
    # arbitrary non-negative rows: scored as given
    assert (klfast.kl(p, p, eps=eps, normalize=normalize, check_sums=False) == 0).all()
    assert (klfast.jeffreys(p, p, eps=eps, normalize=normalize, check_sums=False) == 0).all()


@given(pairs(), EPS)
# p / q underflows to a subnormal in one direction only
@example((np.array([[0.75, 1.0]]), np.array([[5e-324, 1.0]])), 0.0)
def test_jeffreys_symmetric_and_sum_of_kls(pq, eps):
    p, q = (normalized(x) for x in pq)
    j_pq = klfast.jeffreys(p, q, eps=eps)
    j_qp = klfast.jeffreys(q, p, eps=eps)
    both = klfast.kl(p, q, eps=eps) + klfast.kl(q, p, eps=eps)
    np.testing.assert_allclose(j_pq, j_qp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(j_pq, both, rtol=1e-12, atol=1e-13)
    assert (j_pq >= 0).all()  # every term (p - q) log(p~ / q~) is >= 0


@given(pairs(), EPS, st.sampled_from([None, 2, 10]))
def test_cross_entropy_is_entropy_plus_kl(pq, eps, base):
    p, q = (normalized(x) for x in pq)
    ce = klfast.cross_entropy(p, q, eps=eps, base=base)
    h = klfast.entropy(p, eps=eps, base=base)
    d = klfast.kl(p, q, eps=eps, base=base)
    np.testing.assert_allclose(ce, h + d, rtol=1e-12, atol=1e-13)


@given(pairs(), st.sampled_from([klfast.DEFAULT_EPS, 1e-3]), st.sampled_from(MEASURES),
       st.booleans())
# near-equal rows: the twin's log(p / q) rounded the ratio first (an error of
# 1e-16 on a log of 1e-5) before it took log1p there; hypothesis found this
@example(pq=(np.array([[1.0]]), np.array([[0.99999]])), eps=klfast.DEFAULT_EPS, measure="kl",
         normalize=False)
def test_matches_slow_twin(pq, eps, measure, normalize):
    p, q = pq
    if normalize:
        assume((p.sum(axis=-1) > 1e-300).all() and (q.sum(axis=-1) > 1e-300).all())
    got = call_raw(measure, p, q, eps=eps, normalize=normalize)
    want = call_ref_raw(measure, p, q, eps=eps, normalize=normalize)
    if normalize:
        p, q = normalized(p), normalized(q)
    # bound the rounding by the size of the terms
    logs = np.abs(np.log(np.maximum(p, eps))) + np.abs(np.log(np.maximum(q, eps)))
    scale = ((p + q) * logs).sum(axis=-1) + 1e-300
    # normalize: klfast may scale by 1 / sum instead of dividing by sum; the
    # normalized values then differ by an ulp, the result by ~1e-16 absolute
    slack = 1e-15 if normalize else 1e-300
    np.testing.assert_array_less(np.abs(got - want), 1e-13 * scale + slack)


@settings(max_examples=25)
@given(pairs(max_rows=6, max_k=6), st.sampled_from(MEASURES), EPS,
       st.sampled_from([np.float64, np.float32]))
def test_identical_for_every_layout(pq, measure, eps, dtype):
    p, q = (np.asarray(x, dtype=dtype) for x in pq)
    expected = call_raw(measure, p, q, eps=eps)
    q_views = {name: (x, axis) for name, x, axis in layouts(q)}
    for name, pv, axis in layouts(p):
        qv, _ = q_views[name]
        assert np.array_equal(call_raw(measure, pv, qv, axis=axis, eps=eps), expected), name


@settings(max_examples=15)
@given(st.integers(0, 2**32 - 1), st.sampled_from([3, 64, 1000]),
       st.sampled_from(MEASURES), st.sampled_from([np.float64, np.float32]), st.booleans())
def test_identical_for_any_thread_count(seed, k, measure, dtype, broadcast_q):
    rng = np.random.default_rng(seed)
    n = MIN_PARALLEL_ELEMENTS // k + 37  # big enough to run on several threads
    p = rng.random((n, k)).astype(dtype)
    p[rng.random((n, k)) < 0.2] = 0
    q = rng.random((k,) if broadcast_q else (n, k)).astype(dtype)
    assert p.size >= MIN_PARALLEL_ELEMENTS
    one = call_raw(measure, p, q, num_threads=1)
    for num_threads in (2, 3, None):
        assert np.array_equal(call_raw(measure, p, q, num_threads=num_threads), one)
