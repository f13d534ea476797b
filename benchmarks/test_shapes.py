"""The shapes of issue 16 in pytest-benchmark groups: few classes (20,000,000 x 2,
10,000,000 x 10, 3,000,000 x 32) and distributions in columns ((10, 5,000,000)
and (1,000, 50,000) with axis=0, Fortran 5,000,000 x 10), klfast beside the
read floor with the same threads and scipy's rel_entr. One group per case;
every answer is checked against the float64 reference before it is timed.
Small sizes (1/1000 of the elements) when benchmarking is disabled, in CI, or
with --bench-small. ``benchmarks/shapes.py`` reports the same cases as medians
of per-turn ratios."""
import math
import os
import shlex
import shutil
import sys

import numpy as np
import pytest

import klfast
from klfast import default_num_threads
from klfast._core import reference as _reference
from klfast._diagnostics import read_floor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shapes import CASES, flat_call, flat_terms, make  # noqa: E402

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


@pytest.mark.skipif(shutil.which(shlex.split(os.environ.get("CC") or "cc")[0]) is None,
                    reason="no C compiler")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_flat_terms_add_the_measure_terms(dtype):
    """shapes.py --flat's floor adds kl's terms (entropy's: of both inputs)
    over the whole flat array (the odd length takes its scalar tail), on 1
    and 2 threads: against scipy's rel_entr and entr in float64 (no entry is
    below its eps of 1e-12 but the zeros, whose terms are 0 either way)."""
    from scipy.special import entr, rel_entr
    fns = flat_terms()
    assert fns is not None
    rng = np.random.default_rng(5)
    a = (rng.random((3001, 7)) + 1e-6).astype(dtype)
    b = (rng.random((3001, 7)) + 1e-6).astype(dtype)
    a[::5, 2] = 0.0
    x, y = a.astype(np.float64), b.astype(np.float64)
    want = {"kl": rel_entr(x, y).sum(), "entropy": entr(x).sum() + entr(y).sum()}
    rtol = 1e-12 if dtype == "float64" else 2e-6
    for measure in ("kl", "entropy"):
        for threads in (1, 2):
            got = flat_call(fns, measure, a, b, threads)()
            assert math.isclose(got, want[measure], rel_tol=rtol), (measure, threads, got)
