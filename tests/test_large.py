"""Index arithmetic in Py_ssize_t: an input of more than 2**31 elements.

A sparse memory-mapped float32 file of 4,194,304 x 513 = 2,151,677,952
elements (8.6 GB on disk, mostly holes, so writing it is instant): rows past
element 2**31 must be read at the right offset. Marked slow (a few seconds of
page faults); CI runs it."""
import numpy as np
import pytest
from scipy.special import rel_entr

import klfast

N_ROWS, K = 4_194_304, 513


@pytest.mark.slow
def test_more_than_2_31_elements(tmp_path):
    assert N_ROWS * K > 2**31
    path = tmp_path / "big.f32"
    p = np.memmap(path, dtype=np.float32, mode="w+", shape=(N_ROWS, K))
    rng = np.random.default_rng(7)
    tail = rng.dirichlet(np.ones(K), size=50).astype(np.float32)
    p[-50:] = tail                                 # beyond element 2**31
    p[0] = tail[0]
    p.flush()
    del p
    p = np.memmap(path, dtype=np.float32, mode="r", shape=(N_ROWS, K))
    q = np.full(K, 1 / K, dtype=np.float32)
    scores = klfast.kl(p, q, eps=0.0, check_sums=False)  # all-zero rows: scored as given
    want = rel_entr(tail.astype(np.float64), q.astype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(scores[-50:], want, rtol=1e-5)
    assert scores[0] == pytest.approx(want[0], rel=1e-5)
    assert np.all(scores[1:-50] == 0)             # all-zero rows: every term is 0
