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
