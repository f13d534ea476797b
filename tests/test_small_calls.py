"""Small calls with keywords: the C shortcut (klfast._kernels.fast) takes
``axis``, ``base``, ``keepdims`` and ``out`` as well as the plain call, and
gives exactly what the general path gives: the same values (as the slow
twin), the same result type and shape, ``out`` returned."""
import itertools

import numpy as np
import pytest

import klfast
import klfast._core.engine
from klfast._core import reference as _reference

MEASURES = ["kl", "jeffreys", "entropy", "cross_entropy", "jensen_shannon"]
COMBOS = list(itertools.product([None, 2, 10.0, 0.5], [False, True], [False, True], [-1, "last"]))


def inputs(shape, dtype):
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1] or None).astype(dtype)
    q = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1] or None).astype(dtype)
    return p, q


def call(lib, name, p, q, **kw):
    fn = getattr(lib, name)
    return fn(p, **kw) if name == "entropy" else fn(p, q, **kw)


@pytest.fixture
def no_general_path(monkeypatch):
    """Fail if a call reaches the Python row engine."""
    def refuse(*args, **kwargs):
        raise AssertionError("the call left the C shortcut")
    monkeypatch.setattr(klfast._core.engine, "run", refuse)


@pytest.mark.parametrize("name", MEASURES)
@pytest.mark.parametrize("shape", [(11,), (1, 11), (3, 11)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("base, keepdims, use_out, axis", COMBOS)
def test_keywords_take_the_shortcut_and_match_the_twin(name, shape, dtype, base, keepdims,
                                                        use_out, axis, no_general_path):
    p, q = inputs(shape, dtype)
    kw = {"base": base, "keepdims": keepdims, "axis": len(shape) - 1 if axis == "last" else -1}
    want = call(_reference, name, p, q, **kw)
    if use_out:
        out = np.full(np.shape(want), np.nan, dtype=dtype)
        got = call(klfast, name, p, q, out=out, **kw)
        assert got is out
    else:
        got = call(klfast, name, p, q, **kw)
        # a numpy scalar where the twin gives one (1-D input), else an array
        assert isinstance(got, np.ndarray) == isinstance(want, np.ndarray)
        assert np.shape(got) == np.shape(want)
    assert np.asarray(got).dtype == dtype
    tol = 1e-13 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("out_of", ["p", "q"])
def test_an_out_sharing_memory_with_an_input_leaves_the_shortcut(out_of):
    """out= laid over an input's memory: the general path computes into a
    fresh array and copies, so the values are those of a separate out."""
    p, q = inputs((4, 11), np.float64)
    want = klfast.kl(p, q, base=2)
    source = (p if out_of == "p" else q).copy()
    pp, qq = (source, q) if out_of == "p" else (p, source)
    out = source.reshape(-1)[:4]  # contiguous, over row 0 of the input
    got = klfast.kl(pp, qq, base=2, out=out)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("base", [0, -2, 1, 1.0, float("inf"), float("nan"), 10 ** 400])
def test_a_bad_base_is_still_a_clear_error(base):
    p, q = inputs((2, 11), np.float64)
    with pytest.raises(ValueError, match="base must be finite, > 0 and != 1"):
        klfast.kl(p, q, base=base)


@pytest.mark.parametrize("out", [np.empty(2, np.float32), np.empty(3), np.empty((2, 1)),
                                 np.empty(4)[::2], np.empty(2, np.float64).view(np.ndarray)[:0]])
def test_a_bad_out_is_still_a_clear_error_or_handled(out):
    p, q = inputs((2, 11), np.float64)
    if out.shape == (2,) and out.dtype == np.float64:  # a strided but fitting out
        got = klfast.kl(p, q, out=out)
        np.testing.assert_allclose(got, _reference.kl(p, q), rtol=1e-13)
        return
    with pytest.raises(ValueError, match="out has"):
        klfast.kl(p, q, out=out)


def test_invalid_rows_are_explained_after_the_shortcut():
    p, q = inputs((2, 11), np.float64)
    p[1] *= 3
    out = np.empty(2)
    with pytest.raises(ValueError, match=r"p: row 1 sums to 3"):
        klfast.kl(p, q, base=2, out=out)
