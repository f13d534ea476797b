"""float16 and bfloat16 inputs: the kernels read them as they are (a row at a
time widened to float32), so every score is bitwise the score of the inputs
converted to float32 first, in every layout and with every keyword, and close
to the slow twin's float64 value of the same 16-bit numbers. bfloat16 is
ml_dtypes' (skipped without it)."""
import numpy as np
import pytest

import klfast
from klfast._core.engine import WIDEN_MIN_K
from zoo import assert_unchanged, call, call_raw, call_ref, distributions, layouts, snapshot

MEASURES = ("kl", "jeffreys", "entropy", "cross_entropy", "jensen_shannon")


def as_half(x):
    """float16 rows that sum to 1 within the default tolerance."""
    return x.astype(np.float16)


@pytest.fixture(params=["float16", "bfloat16"])
def half(request):
    """A 16-bit dtype."""
    if request.param == "bfloat16":
        return np.dtype(pytest.importorskip("ml_dtypes").bfloat16)
    return np.dtype(np.float16)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("k", [WIDEN_MIN_K - 1, WIDEN_MIN_K, 17, 100, 1000, 4099])
@pytest.mark.parametrize("num_threads", [1, 2])
def test_same_bits_as_float32_and_close_to_the_twin(rng, half, measure, k, num_threads):
    n = 40 if k < 1000 else 9
    # bfloat16 rows sum to 1 within a few 1e-3 only: scored as given
    p, q = distributions(rng, (n, k)).astype(half), distributions(rng, (n, k)).astype(half)
    got = call_raw(measure, p, q, num_threads=num_threads)
    assert got.dtype == np.float32
    want32 = call_raw(measure, p.astype(np.float32), q.astype(np.float32),
                      num_threads=num_threads)
    assert np.array_equal(got, want32)
    twin = call_ref(measure, p.astype(np.float64), q.astype(np.float64), check_sums=False)
    np.testing.assert_allclose(got, twin, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("measure", MEASURES)
def test_every_layout(rng, half, measure):
    a = distributions(rng, (23, 70)).astype(half)
    b = distributions(rng, (23, 70)).astype(half)
    want = call_raw(measure, a.astype(np.float32), b.astype(np.float32))
    for (name, x, axis), (_, y, _) in zip(layouts(a), layouts(b)):
        before = snapshot(x), snapshot(y)
        got = call_raw(measure, x, y, axis=axis)
        assert np.array_equal(got, want), name
        assert_unchanged(before[0], snapshot(x))
        assert_unchanged(before[1], snapshot(y))


@pytest.mark.parametrize("measure", ["kl", "jeffreys", "entropy", "jensen_shannon"])
def test_keywords(rng, half, measure):
    counts = rng.integers(0, 50, size=(30, 64)).astype(half)
    counts[:, 0] += 1
    other = rng.integers(1, 50, size=(30, 64)).astype(half)
    kw = dict(normalize=True, base=2.0, keepdims=True)
    if measure != "jensen_shannon":
        kw["eps"] = 0.0  # exact zeros: the exact path, from the widened row
    got = call(measure, counts, other, **kw)
    want = call(measure, counts.astype(np.float32), other.astype(np.float32), **kw)
    assert got.shape == (30, 1) and np.array_equal(got, want)
    out = np.empty(30, np.float32)
    assert call(measure, counts, other, normalize=True, out=out) is out
    assert np.array_equal(out, want[:, 0] if "base" not in kw else
                          call(measure, counts.astype(np.float32), other.astype(np.float32),
                               normalize=True))


def test_one_row_against_many_and_mixed_dtypes(rng):
    p = as_half(distributions(rng, (50, 300)))
    ref = as_half(distributions(rng, (300,)))
    want = klfast.kl(p.astype(np.float32), ref.astype(np.float32))
    assert np.array_equal(klfast.kl(p, ref), want)
    assert np.array_equal(klfast.kl(p, ref.astype(np.float32)), want)
    assert np.array_equal(klfast.kl(p.astype(np.float32), ref), want)
    # with a float64 input the result is float64, as numpy promotes
    assert klfast.kl(p, ref.astype(np.float64)).dtype == np.float64


def test_rows_as_given_and_special_values(rng):
    p = as_half(distributions(rng, (6, 40)))
    q = as_half(distributions(rng, (6, 40)))
    p[1, 3] = np.float16(6e-8)  # a float16 subnormal: exact after widening
    p[2, :] = 0
    p[2, 5] = np.float16(60000.0)  # near float16's largest
    q[3, 7] = 0
    for measure in MEASURES:
        kw = {} if measure == "jensen_shannon" else {"eps": 0.0}
        got = call_raw(measure, p, q, **kw)
        want = call_raw(measure, p.astype(np.float32), q.astype(np.float32), **kw)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("value, message", [(np.nan, "contains NaN"),
                                            (-0.25, "negative entry"),
                                            (np.inf, "infinite")])
def test_invalid_entries_name_the_row(rng, half, value, message):
    p = distributions(rng, (20, 64)).astype(half)
    q = distributions(rng, (20, 64)).astype(half)
    p[13, 9] = value
    with pytest.raises(ValueError, match=f"p: row 13 .*{message}"):
        klfast.kl(p, q, check_sums=False)


def test_rows_that_are_not_distributions(rng):
    p = as_half(distributions(rng, (20, 64)))
    q = as_half(distributions(rng, (20, 64)))
    q[4] *= 3
    with pytest.raises(ValueError, match="q: row 4"):
        klfast.kl(p, q)


@pytest.mark.parametrize("num_threads", [1, 2])
def test_no_float32_copy_is_made(rng, half, num_threads):
    """The kernels widen one row per thread: the call allocates the result
    and 2 k floats per thread, not a float32 copy of the inputs (8 MB here)."""
    import tracemalloc

    p = distributions(rng, (2000, 1000)).astype(half)
    q = distributions(rng, (2000, 1000)).astype(half)
    klfast.kl(p, q, num_threads=num_threads, check_sums=False)  # warm: threads, caches
    tracemalloc.start()
    try:
        got = klfast.kl(p, q, num_threads=num_threads, check_sums=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < got.nbytes + num_threads * 2 * 1000 * 4 + 64_000, peak


# ---- KL from float16 logits --------------------------------------------------
# The forms kernel reads float16 logits as they are (no float32 row): two
# log-sum-exps and the sum of p (u - v) in one pass, the eps rule as a
# correction where log p or log q is below log eps, and rows it does not take
# (a -inf or NaN logit, logits spread past float32's exp range) widened for
# the three-pass kernel. Every row has the bits of the float32 logits'.


def _kl_logits_float64(a, b, temperature, eps):
    """KL(softmax(a / T) || softmax(b / T)) per row in float64 (scipy's
    log_softmax; the eps rule in log form), and the README's row scale."""
    from scipy.special import log_softmax

    la = log_softmax(a.astype(np.float64) / temperature, axis=1)
    lb = log_softmax(b.astype(np.float64) / temperature, axis=1)
    log_eps = np.log(eps) if eps > 0 else -np.inf
    pa, pb = np.exp(la), np.exp(lb)
    fa, fb = np.maximum(la, log_eps), np.maximum(lb, log_eps)
    with np.errstate(invalid="ignore"):
        terms = np.where(pa > 0, pa * (fa - fb), 0.0)
        weight = (np.where(pa > 0, pa * (1 + np.abs(la)), 0.0)
                  + np.where(pb > 0, pb * (1 + np.abs(lb)), 0.0))
        scale = np.where(weight > 0, weight * (np.abs(fa) + np.abs(fb)), 0.0)
    return terms.sum(1), scale.sum(1)


def _float16_logits(rng, n, k, scale, noise):
    a = (rng.standard_normal((n, k)) * scale).astype(np.float16)
    b = (a.astype(np.float64) + rng.standard_normal((n, k)) * noise).astype(np.float16)
    return a, b


@pytest.mark.parametrize("k", [WIDEN_MIN_K, 31, 32, 33, 100, 1000, 4099])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("eps", [klfast.DEFAULT_EPS, 1e-3, 0.0])
@pytest.mark.parametrize("num_threads", [1, 2])
def test_kl_of_float16_logits(k, temperature, eps, num_threads):
    """Against float64 on the same float16 numbers, within the README's
    float32 bound, and unless eps clamps most terms within 2e-6 relative
    plus 1e-7 (the three-pass kernel's error was up to 4e-7, 1e-5 relative); bitwise the float32 logits' result. Logits of scale 8 put many
    log-probabilities below log eps (eps=1e-3 even most): the correction."""
    rng = np.random.default_rng(k)
    for scale, noise in ((3.0, 0.3), (8.0, 1.0), (3.0, 0.003)):
        a, b = _float16_logits(rng, 24, k, scale, noise)
        got = klfast.kl(a, b, input="logits", temperature=temperature, eps=eps,
                        num_threads=num_threads)
        assert got.dtype == np.float32
        want32 = klfast.kl(a.astype(np.float32), b.astype(np.float32), input="logits",
                           temperature=temperature, eps=eps, num_threads=num_threads)
        assert np.array_equal(got, want32)
        want, row_scale = _kl_logits_float64(a, b, temperature, float(np.float32(eps)))
        err = np.abs(got - want)
        assert (err <= 1e-5 * (np.abs(want) + row_scale)).all(), (scale, noise)
        if eps != 1e-3:  # (most terms clamped: the README's bound only)
            assert (err <= 2e-6 * np.abs(want) + 1e-7).all(), (scale, noise)


def test_kl_of_float16_logits_the_fast_rows_do_not_take():
    """-inf logits (classes of probability 0), a row spread past float32's
    exp range, a one-hot-like row: scored by the three-pass kernel, each row
    as if alone (the same bits as a call with that row only)."""
    rng = np.random.default_rng(5)
    a, b = _float16_logits(rng, 6, 300, 3.0, 0.3)
    a[0, :7] = -np.inf
    b[1, 10:20] = -np.inf
    a[2, 5] = -200.0  # exp(-200 - max) is below float32's normal range
    b[3] *= 40
    a[4, 0] = 300.0
    got = klfast.kl(a, b, input="logits")
    want, row_scale = _kl_logits_float64(a, b, 1.0, float(np.float32(klfast.DEFAULT_EPS)))
    assert (np.abs(got - want) <= 1e-5 * (np.abs(want) + row_scale)).all()
    for i in range(6):
        assert got[i] == klfast.kl(a[i:i + 1], b[i:i + 1], input="logits")[0]


@pytest.mark.parametrize("value, message", [(np.nan, "NaN"), (np.inf, "inf")])
def test_kl_of_float16_logits_names_an_invalid_row(value, message):
    rng = np.random.default_rng(6)
    a, b = _float16_logits(rng, 8, 100, 3.0, 0.3)
    b[5, 42] = value
    with pytest.raises(ValueError, match=f"row 5.*{message}|{message}.*row 5"):
        klfast.kl(a, b, input="logits")


def test_kl_of_float16_logits_does_not_depend_on_threads_or_neighbours():
    rng = np.random.default_rng(7)
    a, b = _float16_logits(rng, 64, 1000, 3.0, 0.3)
    one = klfast.kl(a, b, input="logits", num_threads=1)
    assert np.array_equal(one, klfast.kl(a, b, input="logits", num_threads=2))
    assert np.array_equal(one[17:30], klfast.kl(a[17:30], b[17:30], input="logits"))
