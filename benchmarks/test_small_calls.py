"""A 1 x 11 float64 call, plain and with keywords (where= in any form,
integer counts, the row as torch tensors), side by side in one group
(pytest-benchmark prints them together; the plain call is the yardstick),
with scipy.special.rel_entr for scale; and 1,000 x 100 in cache on one
thread beside the read floor (issue 16, item 3), as 2-D rows and as a 3-D
array; and a training step's loss of a 32 x 10 batch of logits (kl_loss with
its gradient into grad_out, without it, and KL of two rows of logits) beside
the scipy way (log_softmax, xlogy). Each call's answer is checked against
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
P3, Q3 = P[None], Q[None]  # (1, 1, 11)
C_P, C_Q = (np.round(x * 1e6).astype(np.int64) for x in (P, Q))

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
    # the row as a (1, 1, 11) array: the shortcut takes any number of dimensions
    "3-D (1, 1, 11)": (lambda: klfast.kl(P3, Q3), {}),
    "column, all keywords": (lambda: klfast.kl(P.T, Q.T, axis=0, eps=1e-12, base=2,
                                               normalize=False, keepdims=True, out=OUT_KEEP,
                                               num_threads=1), {"base": 2, "keepdims": True}),
    # masks in any form numpy reads: a list, a bool, broadcast
    "where=[True]": (lambda: klfast.kl(P, Q, where=[True]), {}),
    "where=True": (lambda: klfast.kl(P, Q, where=True), {}),
    # counts (integers), scored as distributions
    "int counts, normalize": (lambda: klfast.kl(C_P, C_Q, normalize=True), {"normalize": True}),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_small_call(benchmark, name):
    fn, kw = CALLS[name]
    p, q = (C_P.astype(float), C_Q.astype(float)) if name.startswith("int") else (P, Q)
    np.testing.assert_allclose(np.ravel(fn()), np.ravel(_reference.kl(p, q, **kw)), rtol=1e-13)
    benchmark.group = "kl 1 x 11 float64, keywords"
    benchmark(fn)


def test_small_call_torch(benchmark):
    """The same row as two CPU torch tensors (viewed in place, as numpy
    arrays)."""
    torch = pytest.importorskip("torch")
    tp, tq = torch.from_numpy(P), torch.from_numpy(Q)

    def fn():
        return klfast.kl(tp, tq)

    np.testing.assert_allclose(fn(), _reference.kl(P, Q), rtol=1e-13)
    benchmark.group = "kl 1 x 11 float64, keywords"
    benchmark(fn)


def test_small_call_scipy(benchmark):
    special = pytest.importorskip("scipy.special")

    def fn():
        return special.rel_entr(P, Q).sum(axis=1)

    np.testing.assert_allclose(fn(), _reference.kl(P, Q), rtol=1e-13)
    benchmark.group = "kl 1 x 11 float64, keywords"
    benchmark(fn)


# 1,000 x 100 float64 (1.6 MB: in cache), one thread: 65,536 elements or more
# take the C shortcut too (before, the general path added 20-25 us a call)
P100 = rng.dirichlet(np.ones(100), size=1_000)
Q100 = rng.dirichlet(np.ones(100), size=1_000)
OUT100 = np.empty(1_000)
P100_3, Q100_3 = P100.reshape(10, 100, 100), Q100.reshape(10, 100, 100)
CACHE_CALLS = {
    "klfast, out=": lambda: klfast.kl(P100, Q100, out=OUT100, num_threads=1),
    "klfast, as (10, 100, 100)": lambda: klfast.kl(P100_3, Q100_3, num_threads=1),
}


@pytest.mark.parametrize("name", list(CACHE_CALLS) + ["read floor", "scipy rel_entr"])
def test_in_cache_call(benchmark, name):
    if name == "read floor":
        from klfast._diagnostics import read_floor

        def fn():
            return read_floor(P100, Q100, 1)

        np.testing.assert_allclose(fn(), P100.sum() + Q100.sum(), rtol=1e-12)
    else:
        if name == "scipy rel_entr":
            special = pytest.importorskip("scipy.special")

            def fn():
                return special.rel_entr(P100, Q100).sum(axis=1)
        else:
            fn = CACHE_CALLS[name]
        np.testing.assert_allclose(np.ravel(fn()), _reference.kl(P100, Q100), rtol=1e-13)
    benchmark.group = "kl 1,000 x 100 float64 in cache, 1 thread"
    benchmark(fn)


# A small training batch: 32 rows of 10 logits, the target as probabilities;
# the loss and its gradient (into the same array every step), or the loss
# alone, beside what one writes with scipy. And KL of a 1 x 11 row of logits.
T32 = rng.dirichlet(np.ones(10), size=32)
Z32 = rng.standard_normal((32, 10)) * 2
G32 = np.empty_like(Z32)
Z1, Z1B = rng.standard_normal((1, 11)), rng.standard_normal((1, 11))


def _scipy_loss_grad(p, z):
    from scipy.special import log_softmax, xlogy

    log_q = log_softmax(z, axis=1)
    return (xlogy(p, p) - p * log_q).sum(1).mean(), (np.exp(log_q) - p) / z.shape[0]


LOSS_CALLS = {
    "klfast kl_loss, grad_out=": lambda: klfast.kl_loss(T32, Z32, return_grad=True,
                                                         grad_out=G32),
    "klfast kl_loss, no grad": lambda: (klfast.kl_loss(T32, Z32), None),
    "scipy log_softmax, xlogy": lambda: _scipy_loss_grad(T32, Z32),
}


@pytest.mark.parametrize("name", list(LOSS_CALLS))
def test_small_loss_call(benchmark, name):
    loss, grad = LOSS_CALLS[name]()
    want, want_grad = _reference.kl_loss(T32, Z32, return_grad=True)
    np.testing.assert_allclose(loss, want, rtol=1e-13)
    if grad is not None:
        np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-16)
    benchmark.group = "kl_loss 32 x 10 float64 (a training step's batch)"
    benchmark(LOSS_CALLS[name])


def test_small_logits_call(benchmark):
    def fn():
        return klfast.kl(Z1, Z1B, input="logits")

    np.testing.assert_allclose(fn(), _reference.kl(Z1, Z1B, input="logits"), rtol=1e-13)
    benchmark.group = "kl 1 x 11 float64, keywords"
    benchmark(fn)
