"""A 1 x 11 float64 call, plain and with keywords, side by side in one group
(pytest-benchmark prints them together; the plain call is the yardstick),
with scipy.special.rel_entr for scale. Each call's answer is checked against
the slow twin before it is timed."""
import numpy as np
import pytest

import klfast
from klfast._core import reference as _reference

rng = np.random.default_rng(0)
P = rng.dirichlet(np.ones(11), size=1)
Q = rng.dirichlet(np.ones(11), size=1)
OUT = np.empty(1)
OUT_KEEP = np.empty((1, 1))

CALLS = {
    "plain": (lambda: klfast.kl(P, Q), {}),
    "base=2": (lambda: klfast.kl(P, Q, base=2), {"base": 2}),
    "out=": (lambda: klfast.kl(P, Q, out=OUT), {}),
    "keepdims": (lambda: klfast.kl(P, Q, keepdims=True), {"keepdims": True}),
    "normalize": (lambda: klfast.kl(P, Q, normalize=True), {"normalize": True}),
    "all keywords": (lambda: klfast.kl(P, Q, axis=-1, eps=1e-12, base=2, normalize=False,
                                       keepdims=True, out=OUT_KEEP, num_threads=1),
                     {"base": 2, "keepdims": True}),
    # the row as an (11, 1) column (a transposed view) along axis 0
    "column, axis=0": (lambda: klfast.kl(P.T, Q.T, axis=0), {}),
    "column, all keywords": (lambda: klfast.kl(P.T, Q.T, axis=0, eps=1e-12, base=2,
                                               normalize=False, keepdims=True, out=OUT_KEEP,
                                               num_threads=1), {"base": 2, "keepdims": True}),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_small_call(benchmark, name):
    fn, kw = CALLS[name]
    np.testing.assert_allclose(fn(), _reference.kl(P, Q, **kw), rtol=1e-13)
    benchmark.group = "kl 1 x 11 float64, keywords"
    benchmark(fn)


def test_small_call_scipy(benchmark):
    special = pytest.importorskip("scipy.special")

    def fn():
        return special.rel_entr(P, Q).sum(axis=1)

    np.testing.assert_allclose(fn(), _reference.kl(P, Q), rtol=1e-13)
    benchmark.group = "kl 1 x 11 float64, keywords"
    benchmark(fn)
