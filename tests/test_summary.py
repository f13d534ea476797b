"""klfast.summary and SummaryAccumulator: against numpy and the slow twin
(klfast._core.reference.summary), and bitwise the same for every chunking.

Tolerances: ``mean`` is the exact mean rounded once, so it equals the twin's
(exact fractions) bit for bit; numpy's ``np.mean`` sums pairwise, within
about log2(n) ulps of the exact sum, hence rtol 1e-13 for it. ``stderr``
squares deviations from the rounded mean and rounds each square: a few ulps
from the exact value (rtol 1e-13 against the twin's fractions; against numpy's
``np.std``, itself a few ulps off, rtol 1e-12). Percentiles, min, max and the
index of the max are order statistics: equal, bit for bit.
"""
import math
import struct

import numpy as np
import pytest

import klfast
from klfast._core import reference
from klfast._core.summary import PERCENTILES, exact_sum

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

FIELDS = ("count", "mean", "stderr", "min", "p1", "p5", "median", "p95", "p99", "p99_9",
          "max", "argmax", "top1_agreement")


def bits(result):
    """Every field of a ScoreSummary, floats as their bit patterns (NaN == NaN)."""
    return tuple(struct.pack("<d", v) if isinstance(v, float) else v
                 for v in (getattr(result, name) for name in FIELDS))


def assert_matches_twin(result, scores, **kwargs):
    twin = reference.summary(scores, **kwargs)
    for name in FIELDS:
        got, want = getattr(result, name), twin[name]
        if name == "stderr" and isinstance(want, float) and math.isfinite(want):
            assert got == pytest.approx(want, rel=1e-13, abs=0), name
        elif isinstance(want, float) and math.isnan(want):
            assert isinstance(got, float) and math.isnan(got), (name, got)
        else:
            assert got == want and type(got) is type(want), (name, got, want)


def chunked(scores, cuts, where=None, top1_agree=None, n_rows=None):
    """SummaryAccumulator fed ``scores`` cut at the sorted positions ``cuts``."""
    accumulator = klfast.SummaryAccumulator(n_rows)
    edges = [0, *sorted(cuts), len(scores)]
    for a, b in zip(edges[:-1], edges[1:]):
        accumulator.update(scores[a:b], where=None if where is None else where[a:b],
                           top1_agree=None if top1_agree is None else top1_agree[a:b])
    return accumulator.result()


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 1000, 4097])
@pytest.mark.parametrize("kind", ["exponential", "lognormal", "ties", "signed"])
def test_against_numpy(rng, n, kind):
    if kind == "exponential":
        x = rng.exponential(size=n)
    elif kind == "lognormal":
        x = rng.lognormal(sigma=4.0, size=n)  # spans many decades
    elif kind == "ties":
        x = rng.integers(0, 4, size=n) / 8.0
    else:
        x = rng.standard_normal(n) * 1e3
    s = klfast.summary(x)
    assert s.count == n
    assert s.mean == pytest.approx(np.mean(x), rel=1e-13, abs=0)
    assert s.min == np.min(x) and s.max == np.max(x) and s.argmax == int(np.argmax(x))
    for q, value in s.percentiles.items():
        assert value == np.percentile(x, q), q  # numpy's "linear" method, bit for bit
    assert s.median == pytest.approx(np.median(x), rel=1e-15, abs=1e-300)
    if n > 1:
        assert s.stderr == pytest.approx(np.std(x, ddof=1) / math.sqrt(n), rel=1e-12)
    assert_matches_twin(s, x)


def test_mean_is_the_exact_mean_rounded_once():
    # naive, pairwise and even fsum-then-divide summation lose these
    cases = [
        [1e16, 1.0, -1e16],          # exact sum 1
        [1e308, 1e308, -1e308],      # a naive sum overflows
        [5e-324, 5e-324, 5e-324],    # subnormals
        [0.1] * 10,
        [1.0, 2.0 ** -60, 2.0 ** -60, -1.0],
        [1.0, 2.0, 2.0 ** 53],       # fsum gives 2**53 + 4 exactly...
    ]
    from fractions import Fraction

    for values in cases:
        x = np.array(values)
        exact = sum(map(Fraction, values)) / len(values)
        assert klfast.summary(x).mean == float(exact), values
    # ... and fsum / n is within one rounding of it
    x = np.random.default_rng(3).lognormal(sigma=3, size=999)
    assert klfast.summary(x).mean == pytest.approx(math.fsum(x) / len(x), rel=2.3e-16, abs=0)


@given(hnp.arrays(np.float64, st.integers(0, 300),
                  elements=st.floats(allow_nan=False, allow_infinity=False)))
def test_exact_sum_is_exact(x):
    from fractions import Fraction

    assert Fraction(exact_sum(x), 2 ** 1126) == sum(map(Fraction, x.tolist()))


def test_stderr_of_constant_scores_is_zero():
    s = klfast.summary(np.full(1000, 0.1))
    assert s.stderr == 0.0 and s.mean == 0.1 and s.median == 0.1


def test_float32_int_and_bool_scores_are_taken_as_float64(rng):
    x = rng.exponential(size=100).astype(np.float32)
    assert bits(klfast.summary(x)) == bits(klfast.summary(x.astype(np.float64)))
    assert bits(klfast.summary([0, 1, 2])) == bits(klfast.summary([0.0, 1.0, 2.0]))
    assert klfast.summary(np.array([True, False, True])).mean == 2 / 3


def test_any_shape_argmax_in_c_order(rng):
    x = rng.random((7, 9))
    s = klfast.summary(x)
    assert s.count == 63 and s.argmax == int(np.argmax(x))
    assert bits(s) == bits(klfast.summary(x.ravel()))
    assert bits(klfast.summary(np.asfortranarray(x))) == bits(s)
    assert bits(klfast.summary(x[:, ::2])) == bits(klfast.summary(x[:, ::2].copy()))


def test_first_max_and_signed_zeros():
    s = klfast.summary(np.array([0.0, 3.0, 1.0, 3.0]))
    assert s.argmax == 1
    s = klfast.summary(np.array([-0.0, 0.0, -0.0]))
    assert s.argmax == 0 and math.copysign(1, s.min) == 1 and math.copysign(1, s.median) == 1


# ---------------------------------------------------------------- edge cases


def test_empty():
    for s in (klfast.summary(np.array([])), klfast.summary(np.ones(5), where=np.zeros(5, bool)),
              klfast.SummaryAccumulator().result()):
        assert s.count == 0 and s.argmax is None and s.top1_agreement is None
        assert all(math.isnan(getattr(s, name)) for name in FIELDS[1:-2])
        d = s.to_dict()
        assert d["count"] == 0 and d["mean"] is None and d["p99_9"] is None
    assert math.isnan(klfast.summary([], top1_agree=[]).top1_agreement)


def test_one_score():
    s = klfast.summary(np.array([0.25]))
    assert (s.count, s.mean, s.min, s.max, s.argmax) == (1, 0.25, 0.25, 0.25, 0)
    assert all(v == 0.25 for v in s.percentiles.values())
    assert math.isnan(s.stderr) and s.to_dict()["stderr"] is None


def test_infinite_scores():
    # eps=0 may give +inf; numpy's interpolation gives NaN next to it, the limit is taken
    x = np.array([1.0, 2.0, np.inf])
    s = klfast.summary(x)
    assert s.mean == math.inf and math.isnan(s.stderr)
    assert s.max == math.inf and s.argmax == 2 and s.median == 2.0
    assert s.p99 == math.inf and s.p1 == pytest.approx(np.percentile(x, 1))
    assert_matches_twin(s, x)
    s = klfast.summary(np.array([-np.inf, 0.0, np.inf]))
    assert math.isnan(s.mean) and s.min == -math.inf and s.median == 0.0
    assert klfast.summary(np.array([np.inf, np.inf])).median == math.inf


def test_huge_deviations_are_scaled_not_overflowed():
    s = klfast.summary(np.array([-1e300, 1e300]))  # squares above 1.8e308
    assert s.mean == 0.0 and s.stderr == pytest.approx(1e300, rel=1e-15)
    x = np.array([-1.7e308, 1.7e308, 1e308])  # x - mean overflows unscaled
    assert klfast.summary(x).stderr == pytest.approx(
        math.ldexp(np.std(x * 2.0 ** -600, ddof=1) / math.sqrt(3), 600), rel=1e-14)


def test_where(rng):
    x = rng.exponential(size=500)
    x[rng.random(500) < 0.1] = np.nan  # excluded rows are not read
    keep = ~np.isnan(x)
    keep[::7] = False
    s = klfast.summary(x, where=keep)
    inner = klfast.summary(x[keep])
    assert bits(s)[:-2] == bits(inner)[:-2]
    assert s.argmax == int(np.flatnonzero(keep)[inner.argmax])
    assert_matches_twin(s, x, where=keep)
    assert bits(klfast.summary(x[keep], where=True)) == bits(inner)  # broadcast


def test_top1_agreement(rng):
    x = rng.random(10)
    agree = np.array([True] * 7 + [False] * 3)
    assert klfast.summary(x, top1_agree=agree).top1_agreement == 0.7
    keep = np.arange(10) >= 5  # rows 5-9: 2 of 5 agree
    assert klfast.summary(x, where=keep, top1_agree=agree).top1_agreement == 0.4
    assert "top-1" in str(klfast.summary(x, top1_agree=agree))
    assert "top-1" not in str(klfast.summary(x))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("scores, where, error, match", [
    ([0.1, np.nan, 0.3], None, ValueError, r"^scores: row 1 is NaN"),
    ([0.1, np.nan, np.nan], [True, False, True], ValueError, r"^scores: row 2 is NaN"),
    ([1 + 1j], None, TypeError, r"^scores must hold real numbers"),
    (["a"], None, TypeError, r"^scores must hold real numbers"),
    (None, None, TypeError, r"^scores is required"),
    (np.ma.masked_array([1.0, 2.0], [0, 1]), None, TypeError, r"^scores is a numpy.ma.Masked"),
    ([0.1, 0.2], [1, 0], TypeError, r"^where must be an array of bools"),
    ([0.1, 0.2], [True, False, True], ValueError, r"^where of shape \(3,\) does not broadcast"),
])
def test_errors_name_the_argument(scores, where, error, match):
    with pytest.raises(error, match=match):
        klfast.summary(scores, where=where)


def test_accumulator_errors():
    accumulator = klfast.SummaryAccumulator()
    accumulator.update([0.1, 0.2])
    with pytest.raises(ValueError, match=r"^scores: row 3 is NaN"):  # counted in all the rows
        accumulator.update([0.3, np.nan])
    with pytest.raises(ValueError, match=r"^top1_agree: given for this chunk but not"):
        accumulator.update([0.3], top1_agree=[True])
    accumulator = klfast.SummaryAccumulator()
    accumulator.update([0.1], top1_agree=[True])
    with pytest.raises(ValueError, match=r"^top1_agree: given for the previous chunks"):
        accumulator.update([0.3])
    with pytest.raises(TypeError, match=r"^top1_agree must be an array of bools"):
        accumulator.update([0.3], top1_agree=[1])
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(TypeError, match=r"^n_rows must be None or an int >= 0"):
            klfast.SummaryAccumulator(bad)
    with pytest.raises(TypeError):
        klfast.summary([0.1], [True])  # where is keyword-only


# ---------------------------------------------------------------- chunking


def test_chunkings_are_bitwise_identical(rng):
    x = np.concatenate([rng.lognormal(sigma=5, size=20_000), [0.0, 1e-300, 1e300, 7.0]])
    rng.shuffle(x)
    whole = bits(klfast.summary(x))
    for chunk in (1, 7, 1000, 4096, 19_999, len(x)):
        cuts = range(chunk, len(x), chunk)
        assert bits(chunked(x, cuts)) == whole, chunk
        assert bits(chunked(x, cuts, n_rows=len(x))) == whole, chunk
    # sums and percentiles do not depend on the order either: only argmax moves
    shuffled = rng.permutation(x)
    assert bits(klfast.summary(shuffled))[:-2] == whole[:-2]


scores_strategy = hnp.arrays(
    np.float64, st.integers(0, 200),
    elements=st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 1.0, 1.0])))


@given(scores_strategy, st.lists(st.integers(0, 200), max_size=6), st.data())
def test_any_chunking_any_mask_bitwise_identical(x, cuts, data):
    n = len(x)
    cuts = [c for c in cuts if c <= n]
    where = data.draw(hnp.arrays(np.bool_, n))
    agree = data.draw(hnp.arrays(np.bool_, n))
    whole = klfast.summary(x, where=where, top1_agree=agree)
    assert bits(chunked(x, cuts, where, agree)) == bits(whole)
    assert_matches_twin(whole, x, where=where, top1_agree=agree)


@pytest.mark.slow  # imports dask
def test_dask_arrays_give_the_same_bits(rng):
    da = pytest.importorskip("dask.array")
    x = rng.lognormal(sigma=3, size=10_001)
    keep = rng.random(10_001) < 0.9
    whole = bits(klfast.summary(x, where=keep))
    for chunks in (1000, 3333, 10_001):
        result = klfast.summary(da.from_array(x, chunks=chunks),
                                where=da.from_array(keep, chunks=chunks))
        assert bits(result) == whole, chunks


def test_kl_scores_any_thread_count(rng):
    """Scores from klfast are thread-count independent, and so is their summary."""
    p = rng.random((3000, 50))
    q = rng.random((3000, 50))
    p /= p.sum(1, keepdims=True)
    q /= q.sum(1, keepdims=True)
    results = {bits(klfast.summary(klfast.kl(p, q, num_threads=t))) for t in (1, 2, 3)}
    assert len(results) == 1


# ---------------------------------------------------------------- output


def test_to_dict_and_table(rng):
    s = klfast.summary(rng.random(100))
    d = s.to_dict()
    assert list(d) == list(FIELDS)
    assert d["argmax"] == s.argmax and d["p99_9"] == s.p99_9
    import json

    assert json.loads(json.dumps(d)) == d
    table = str(s)
    for label in ("count", "mean", "standard error", "min", "p1", "p5", "median", "p95",
                  "p99", "p99.9", "max", f"row {s.argmax}"):
        assert label in table
    assert s.percentiles == {q: getattr(s, name) for q, name in
                             zip(PERCENTILES, ("p1", "p5", "median", "p95", "p99", "p99_9"))}
    with pytest.raises(AttributeError):
        s.mean = 0.0  # frozen
