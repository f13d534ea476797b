"""The reduction of a loss's per-row values (klfast._kernels.reduce_rows):
a compensated sum in C, shared by the C shortcut and the general path.
Held to math.fsum (the correctly rounded sum) and to hand-derived values."""
import contextlib
import math

import numpy as np
import pytest

import klfast
from klfast import _kernels
from zoo import general_path

EPS64 = np.finfo(np.float64).eps


def reduce(values, mean=False, to_float32=False):
    return _kernels.reduce_rows(np.asarray(values, dtype=np.float64), mean, to_float32)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 8, 9, 100, 12_345, 200_000])
def test_sum_and_mean_within_an_ulp_or_two_of_fsum(rng, n):
    """Positive values over 40 orders of magnitude: the sum within 2 ulps of
    the correctly rounded one (numpy's pairwise sum may be log2(n) off)."""
    x = np.ldexp(rng.random(n) + 0.5, rng.integers(-60, 70, n))
    exact = math.fsum(x)
    got = reduce(x)
    assert abs(got - exact) <= 2 * EPS64 * abs(exact)
    if n:
        assert abs(reduce(x, mean=True) - exact / n) <= 3 * EPS64 * abs(exact / n)
    else:
        assert got == 0.0 and math.isnan(reduce(x, mean=True))


def test_cancellation_is_compensated():
    # a plain running sum gives 0.0 here; the exact sum is 2
    assert reduce([1e16, 1.0, -1e16, 1.0]) == 2.0
    assert reduce([1.0, 1e100, 1.0, -1e100]) == 2.0
    assert reduce([1e16, 1.0, -1e16, 1.0], mean=True) == 0.5


def test_finite_rows_whose_running_sum_overflows():
    big = np.finfo(np.float64).max / 2 * 1.5  # 1.35e308
    # the running sum passes the range, the sum does not
    assert reduce([big, big, -big]) == big
    # a mean of finite rows is finite; their sum is past the range
    assert reduce([big, big], mean=True) == big
    assert reduce([big, big]) == math.inf
    assert reduce([-big, -big]) == -math.inf
    assert reduce([-big, -big], mean=True) == -big


@pytest.mark.parametrize("values, expected", [
    ([1.0, math.inf], math.inf),
    ([-math.inf, 2.0], -math.inf),
    ([math.inf, -math.inf], math.nan),
    ([1.0, math.nan, 2.0], math.nan),
    ([math.inf, math.nan], math.nan),
])
def test_infinities_and_nan(values, expected):
    for mean in (False, True):
        got = reduce(values, mean=mean)
        assert got == expected or (math.isnan(expected) and math.isnan(got))


def test_rounded_to_float32():
    f32_max = float(np.finfo(np.float32).max)
    half_ulp = 2.0 ** 103  # half of float32's last step below 2^128
    assert reduce([f32_max], to_float32=True) == f32_max
    # just below the midpoint to 2^128 rounds down, from it up (ties to even)
    below = math.nextafter(f32_max + half_ulp, 0.0)
    assert reduce([below], to_float32=True) == f32_max
    assert reduce([f32_max + half_ulp], to_float32=True) == math.inf
    assert reduce([-1e300], to_float32=True) == -math.inf
    assert reduce([0.1], to_float32=True) == float(np.float32(0.1))
    assert math.isnan(reduce([math.nan], to_float32=True))


def test_bad_rows_are_a_type_error():
    with pytest.raises(TypeError, match="C-contiguous float64"):
        _kernels.reduce_rows(np.zeros(4, dtype=np.float32), False, False)
    with pytest.raises(TypeError, match="C-contiguous float64"):
        _kernels.reduce_rows(np.zeros(8)[::2], False, False)
    with pytest.raises(TypeError):
        _kernels.reduce_rows(None, False, False)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fn", [klfast.kl_loss, klfast.cross_entropy_loss])
def test_loss_sum_and_mean_are_the_rows_fsum(rng, fn, dtype):
    """Through the public functions, small (the C shortcut) and large, and
    through the general path: sum and mean are the correctly
    rounded fsum of the per-row values, rounded to the dtype: within two
    ulps of float64 (float32: the rows given back are rounded to float32
    themselves, so within two of float32's)."""
    ulp = EPS64 if dtype == np.float64 else float(np.finfo(np.float32).eps)
    for n in (32, 50_000):
        p = rng.random((n, 10)).astype(dtype)
        p /= p.sum(axis=1, keepdims=True)
        z = rng.standard_normal((n, 10)).astype(dtype)
        rows = fn(p, z, reduction="none").astype(np.float64)
        exact = math.fsum(rows)
        for general in (False, True):
            with general_path() if general else contextlib.nullcontext():
                total = fn(p, z, reduction="sum")
                mean = fn(p, z)
            assert total.dtype == dtype and mean.dtype == dtype
            assert abs(float(total) - float(dtype(exact))) <= 2 * ulp * exact
            assert abs(float(mean) - float(dtype(exact / n))) <= 3 * ulp * exact / n
    # the rows left out by a mask count neither in the sum nor in the mean
    keep = rng.random(n) < 0.3
    exact = math.fsum(rows[keep])
    got = fn(p, z, where=keep)
    assert abs(float(got) - float(dtype(exact / keep.sum()))) <= 3 * ulp * exact / keep.sum()
