"""klfast.pairwise on a dask array P chunked by rows: lazy, equal to the
in-memory result, errors naming the row in the whole of P."""
import numpy as np
import pytest

import klfast

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")


def _rows(rng, n, k):
    return rng.dirichlet(np.ones(k), size=n)


@pytest.mark.parametrize("measure", ["kl", "jeffreys", "cross_entropy", "js"])
def test_matrix_is_lazy_and_equal(rng, measure):
    P = _rows(rng, 37, 9)
    Q = _rows(rng, 11, 9)
    lazy = klfast.pairwise(da.from_array(P, chunks=(10, 9)), Q, measure)
    assert isinstance(lazy, da.Array) and lazy.shape == (37, 11)
    assert lazy.chunks[0] == (10, 10, 10, 7)
    np.testing.assert_array_equal(lazy.compute(), klfast.pairwise(P, Q, measure))


def test_topk_is_lazy_and_equal(rng):
    P = _rows(rng, 25, 6)
    Q = _rows(rng, 14, 6)
    idx, val = klfast.pairwise(da.from_array(P, chunks=(8, 6)), Q, "js", topk=3)
    assert isinstance(idx, da.Array) and idx.dtype == np.int64
    got_idx, got_val = dask.compute(idx, val)
    want_idx, want_val = klfast.pairwise(P, Q, "js", topk=3)
    assert np.array_equal(got_idx, want_idx) and np.array_equal(got_val, want_val)


def test_errors(rng):
    P = _rows(rng, 20, 5)
    Q = _rows(rng, 4, 5)
    dP = da.from_array(P, chunks=(6, 5))
    with pytest.raises(TypeError, match="Q=None with a dask P"):
        klfast.pairwise(dP)
    with pytest.raises(TypeError, match="Q must be in memory"):
        klfast.pairwise(dP, da.from_array(Q))
    with pytest.raises(ValueError, match="topk=5 is more than the 4 rows of Q"):
        klfast.pairwise(dP, Q, topk=5)
    with pytest.raises(ValueError, match="measure must be one of"):
        klfast.pairwise(dP, Q, "entropy")
    bad = P.copy()
    bad[13, 1] = -1.0
    lazy = klfast.pairwise(da.from_array(bad, chunks=(6, 5)), Q)  # rows checked when computed
    with pytest.raises(ValueError, match=r"P: row 13 has a negative entry"):
        lazy.compute()
