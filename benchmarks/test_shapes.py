"""The shapes of issue 16 in pytest-benchmark groups: few classes (20,000,000 x 2,
10,000,000 x 10, 3,000,000 x 32) and distributions in columns ((10, 5,000,000)
and (1,000, 50,000) with axis=0, Fortran 5,000,000 x 10), klfast beside the
read floor with the same threads and scipy's rel_entr. One group per case;
every answer is checked against the float64 reference before it is timed.
Small sizes (1/1000 of the elements) when benchmarking is disabled, in CI, or
with --bench-small. ``benchmarks/shapes.py`` reports the same cases as medians
of per-turn ratios."""
import os
import sys

import numpy as np
import pytest

import klfast
from klfast import default_num_threads
from klfast._core import reference as _reference
from klfast._diagnostics import read_floor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shapes import CASES, make  # noqa: E402

NAMES = [name for name, case in CASES.items() if case[0] in ("few", "columns")]


_inputs = {}


def inputs(name, small):
    """P, Q and the axis of a case (one case kept at a time)."""
    if name not in _inputs:
        _inputs.clear()
        group, shape, axis, dtype, _, _ = CASES[name]
        if small:  # 1/1000 of the elements, the short side kept
            shape = (shape[0], shape[1] // 1000) if axis == 0 else (shape[0] // 1000, shape[1])
        _inputs[name] = make(shape, axis, dtype, 1), make(shape, axis, dtype, 2), axis
    return _inputs[name]


@pytest.mark.parametrize("threads", sorted({1, default_num_threads()}))
@pytest.mark.parametrize("peer", ["klfast", "read floor", "scipy rel_entr"])
@pytest.mark.parametrize("name", NAMES)
def test_shape(benchmark, small, name, peer, threads):
    p, q, axis = inputs(name, small)
    kl_axis = 0 if axis == 0 else -1
    if peer == "klfast":
        out = np.empty(p.shape[1] if axis == 0 else p.shape[0], dtype=p.dtype)

        def fn():
            return klfast.kl(p, q, axis=kl_axis, out=out, num_threads=threads)

        want = _reference.kl(p, q, axis=kl_axis)
        tol = dict(rtol=1e-12, atol=1e-15) if p.dtype == np.float64 else dict(rtol=1e-5,
                                                                               atol=1e-7)
        np.testing.assert_allclose(fn(), want, **tol)
    elif peer == "read floor":
        a, b = (p.T, q.T) if axis == "F" else (p, q)

        def fn():
            return read_floor(a, b, threads)

        # every distribution sums to 1: the floor reads two per distribution
        n = p.shape[1] if axis == 0 else p.shape[0]
        assert np.isclose(fn(), 2 * n, rtol=1e-4)
    else:
        if threads != 1:
            pytest.skip("scipy's rel_entr is a ufunc: one thread")
        special = pytest.importorskip("scipy.special")

        def fn():
            return special.rel_entr(p, q).sum(axis=kl_axis)

        np.testing.assert_allclose(fn(), klfast.kl(p, q, axis=kl_axis), rtol=1e-5, atol=1e-7)
    benchmark.group = f"kl {name}"
    benchmark(fn)
