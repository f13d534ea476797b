"""kl_loss and cross_entropy_loss against the slow twin (scipy) and finite differences;
the vectorised fast path against the exact scalar path and mpmath, at every
instruction-set level."""
import doctest
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax

import klfast
import klfast._core.losses
from klfast import _diagnostics, _kernels
from klfast._core import reference as _reference

# Every test runs at every instruction-set level this CPU supports (conftest).
pytestmark = pytest.mark.usefixtures("isa")

LOSSES = {"kl": klfast.kl_loss, "cross_entropy": klfast.cross_entropy_loss}
EPS = klfast.DEFAULT_EPS


def reference(loss, target, logits, temperature=1.0, target_is_logits=False, eps=EPS, axis=-1):
    """Per-row losses and d(sum of rows)/d(logits): the slow twin in float64."""
    return _reference.LOSSES[loss](target, logits, temperature=temperature,
                                   target_is_logits=target_is_logits, reduction="none",
                                   return_grad=True, eps=eps, axis=axis)


def distributions(rng, shape, zeros=True):
    p = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    if zeros and shape[-1] > 2:
        p[..., 1] = 0.0
        p /= p.sum(-1, keepdims=True)
    return p


def tol(dtype):
    return {"rtol": 1e-12, "atol": 1e-13} if dtype == np.float64 else {"rtol": 2e-5, "atol": 2e-6}


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("target_is_logits", [False, True])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_and_grad_match_scipy(loss, target_is_logits, temperature, dtype):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(37, 11)) * 3).astype(dtype)
    if target_is_logits:
        target = (rng.normal(size=(37, 11)) * 3).astype(dtype)
    else:
        target = distributions(rng, (37, 11)).astype(dtype)
    rows, grad = LOSSES[loss](target, logits, temperature=temperature,
                              target_is_logits=target_is_logits, reduction="none",
                              return_grad=True)
    ref_rows, ref_grad = reference(loss, target, logits, temperature, target_is_logits)
    assert rows.dtype == dtype and grad.dtype == dtype and grad.shape == logits.shape
    np.testing.assert_allclose(rows, ref_rows, **tol(dtype))
    np.testing.assert_allclose(grad, ref_grad, **tol(dtype))


def _layouts(rng):
    """(name, target, logits, axis) in the layouts numpy users pass."""
    p = distributions(rng, (40, 9))
    z = rng.normal(size=(40, 9)) * 2
    swapped = z.astype(z.dtype.newbyteorder())
    read_only = z.copy()
    read_only.flags.writeable = False
    p3 = distributions(rng, (3, 5, 9)).transpose(0, 2, 1)  # classes along axis 1
    z3 = rng.normal(size=(3, 9, 5))
    wide_z = rng.normal(size=(40, 18))
    yield "C", p, z, -1
    yield "F", np.asfortranarray(p), np.asfortranarray(z), -1
    yield "strided", p, wide_z[:, ::2], -1
    yield "axis0", p.T.copy(), z.T.copy(), 0
    yield "axis0-views", p.T, z.T, 0
    yield "3-D axis 1", np.ascontiguousarray(p3), z3, 1
    yield "read-only", p, read_only, -1
    yield "byte-swapped", p.astype(p.dtype.newbyteorder()), swapped, -1
    yield "one target row", p[0], z, -1
    yield "target (1, 5, k)", distributions(rng, (1, 5, 9)), rng.normal(size=(3, 5, 9)), -1
    yield "one column", np.ones((6, 1)), rng.normal(size=(6, 1)), -1
    yield "one row", p[:1], z[:1], -1
    yield "1-D", p[0], z[0], -1
    yield "empty rows", p[:0], z[:0], -1
    yield "int target", np.eye(9, dtype=np.int64)[rng.integers(0, 9, 40)], z, -1


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("case", list(_layouts(np.random.default_rng(1))), ids=lambda c: c[0])
def test_layouts(loss, case):
    _, target, logits, axis = case
    rows, grad = LOSSES[loss](target, logits, temperature=1.5, reduction="none",
                              return_grad=True, axis=axis)
    ref_rows, ref_grad = reference(loss, target, logits, 1.5, axis=axis)
    assert np.shape(rows) == ref_rows.shape and grad.shape == np.shape(logits)
    np.testing.assert_allclose(rows, ref_rows, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-14)


def test_block_conversion_path_matches_direct(monkeypatch):
    # Small blocks force the converting path through several blocks.
    monkeypatch.setattr(klfast._core.engine, "BLOCK_ELEMENTS", 64)
    rng = np.random.default_rng(2)
    p = distributions(rng, (50, 7))
    z = rng.normal(size=(50, 7))
    direct = klfast.kl_loss(p, z, reduction="none", return_grad=True)
    blocked = klfast.kl_loss(np.asfortranarray(p), np.asfortranarray(z), reduction="none",
                             return_grad=True)
    np.testing.assert_array_equal(direct[0], blocked[0])
    np.testing.assert_array_equal(direct[1], blocked[1])


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("target_is_logits", [False, True])
@pytest.mark.parametrize("temperature", [0.5, 2.0])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_grad_matches_central_differences(loss, target_is_logits, temperature, reduction):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(5, 6))
    if target_is_logits:
        t = rng.normal(size=(5, 6))
    else:
        t = distributions(rng, (5, 6)) * 2.5  # unnormalized: grad has the sum(p) factor
    fn = LOSSES[loss]

    def total(zz):  # "none": grad row i is d loss[i] / d z[i], i.e. the gradient of the sum
        return float(np.sum(fn(t, zz, temperature=temperature, target_is_logits=target_is_logits,
                               reduction=reduction)))

    _, grad = fn(t, z, temperature=temperature, target_is_logits=target_is_logits,
                 reduction=reduction, return_grad=True)
    h = 1e-6
    numeric = np.empty_like(z)
    for idx in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (total(up) - total(down)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("target_is_logits", [False, True])
def test_float32_agrees_with_float64(loss, target_is_logits):
    rng = np.random.default_rng(4)
    z = rng.normal(size=(200, 30)) * 4
    t = rng.normal(size=(200, 30)) if target_is_logits else distributions(rng, (200, 30))
    r64, g64 = LOSSES[loss](t, z, target_is_logits=target_is_logits, reduction="none",
                            return_grad=True)
    r32, g32 = LOSSES[loss](t.astype(np.float32), z.astype(np.float32),
                            target_is_logits=target_is_logits, reduction="none", return_grad=True)
    assert r32.dtype == g32.dtype == np.float32
    np.testing.assert_allclose(r32, r64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("target_is_logits", [False, True])
@pytest.mark.parametrize("temperature", [0.1, 1.0, 100.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_logits_are_stable(loss, target_is_logits, temperature, dtype):
    rng = np.random.default_rng(5)
    z = rng.normal(size=(20, 50)) * 1e4
    z[0] = 1e4  # ties at the top
    z[1, ::2] = -1e4
    z[1, 1::2] = 1e4
    z = z.astype(dtype)
    t = (rng.normal(size=(20, 50)) * 1e4).astype(dtype) if target_is_logits else \
        distributions(rng, (20, 50)).astype(dtype)
    rows, grad = LOSSES[loss](t, z, temperature=temperature, target_is_logits=target_is_logits,
                              reduction="none", return_grad=True)
    assert np.isfinite(rows).all() and np.isfinite(grad).all()
    ref_rows, ref_grad = reference(loss, t, z, temperature, target_is_logits)
    np.testing.assert_allclose(rows, ref_rows, rtol=1e-12 if dtype == np.float64 else 1e-5,
                               atol=0 if dtype == np.float64 else 1e-6)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-12 if dtype == np.float64 else 1e-5)
    if loss == "kl":
        assert (rows >= -1e-6 * np.abs(rows).max()).all()


def test_scaled_logit_differences_that_overflow_give_inf_not_nan():
    rows = klfast.kl_loss([[0.5, 0.5]], [[1e308, -1e308]], temperature=0.1, reduction="none")
    assert rows[0] == np.inf
    rows, grad = klfast.cross_entropy_loss([[1.0, 0.0]], [[1e308, -1e308]], temperature=0.1,
                                           reduction="none", return_grad=True)
    assert rows[0] == 0.0 and np.array_equal(grad, [[0.0, 0.0]])


@pytest.mark.parametrize("target_is_logits", [False, True])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_minus_kl_is_entropy_and_grads_are_identical(target_is_logits, temperature,
                                                                  dtype):
    rng = np.random.default_rng(6)
    z = (rng.normal(size=(60, 10)) * 3).astype(dtype)
    if target_is_logits:
        t = (rng.normal(size=(60, 10)) * 3).astype(dtype)
        p = softmax(t.astype(np.float64) / temperature, axis=1)
    else:
        hard = np.eye(10)[rng.integers(0, 10, 20)]
        smooth = 0.9 * np.eye(10)[rng.integers(0, 10, 20)] + 0.01
        t = np.vstack([hard, smooth, distributions(rng, (20, 10))]).astype(dtype)
        p = t.astype(np.float64)
    kw = dict(temperature=temperature, target_is_logits=target_is_logits, reduction="none",
              return_grad=True)
    ce, ce_grad = klfast.cross_entropy_loss(t, z, **kw)
    kl, kl_grad = klfast.kl_loss(t, z, **kw)
    diff = ce.astype(np.float64) - kl
    atol = 1e-12 if dtype == np.float64 else 1e-5
    scale = 1 + np.abs(ce)
    np.testing.assert_allclose(diff, _reference.entropy(p, eps=EPS), atol=atol * scale.max())
    np.testing.assert_allclose(diff, scipy.stats.entropy(p, axis=1), atol=atol * scale.max())
    if not target_is_logits:
        np.testing.assert_array_equal(diff[:20], 0.0)  # hard labels: CE == KL
    np.testing.assert_array_equal(ce_grad, kl_grad)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_reductions(loss):
    rng = np.random.default_rng(7)
    p = distributions(rng, (4, 25, 8))
    z = rng.normal(size=(4, 25, 8))
    fn = LOSSES[loss]
    rows, g_none = fn(p, z, reduction="none", return_grad=True, temperature=2.0)
    total, g_sum = fn(p, z, reduction="sum", return_grad=True, temperature=2.0)
    mean, g_mean = fn(p, z, reduction="mean", return_grad=True, temperature=2.0)
    assert rows.shape == (4, 25)
    assert isinstance(total, np.float64) and isinstance(mean, np.float64)
    np.testing.assert_allclose(total, rows.sum(), rtol=1e-14)
    np.testing.assert_allclose(mean, rows.sum() / 100, rtol=1e-14)
    np.testing.assert_array_equal(g_sum, g_none)
    np.testing.assert_allclose(g_mean, g_none / 100, rtol=1e-14)
    assert fn(p, z, temperature=2.0) == mean  # "mean" is the default
    empty = np.empty((0, 8))
    assert fn(empty, empty, reduction="sum") == 0.0
    assert np.isnan(fn(empty, empty, reduction="mean"))
    assert fn(empty, empty, reduction="none").shape == (0,)


@pytest.mark.parametrize("target_dtype, logits_dtype, expected", [
    (np.float64, np.float32, np.float32),
    (np.float32, np.float64, np.float64),
    (np.int64, np.float32, np.float32),
    (np.int64, np.int64, np.float64),
    (np.float16, np.float16, np.float32),
    (bool, np.float64, np.float64),
])
def test_result_dtype_follows_logits(target_dtype, logits_dtype, expected):
    target = np.eye(4, dtype=target_dtype)
    logits = np.arange(16).reshape(4, 4).astype(logits_dtype)
    loss, grad = klfast.kl_loss(target, logits, return_grad=True)
    assert type(loss) is np.dtype(expected).type and grad.dtype == expected
    rows = klfast.cross_entropy_loss(target, logits, reduction="none")
    assert rows.dtype == expected


@pytest.mark.parametrize("kwargs, error, match", [
    ({"reduction": "batchmean"}, ValueError, "reduction"),
    ({"reduction": None}, ValueError, "reduction"),
    ({"temperature": 0.0}, ValueError, "temperature"),
    ({"temperature": -1.0}, ValueError, "temperature"),
    ({"temperature": np.inf}, ValueError, "temperature"),
    ({"temperature": np.nan}, ValueError, "temperature"),
    ({"temperature": "2"}, TypeError, "temperature"),
    ({"temperature": True}, TypeError, "temperature"),
    ({"eps": -1e-3}, ValueError, "eps"),
    ({"num_threads": 0}, ValueError, "num_threads"),
    ({"num_threads": 1.5}, TypeError, "num_threads"),
    ({"axis": 2}, np.exceptions.AxisError, "axis"),
])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_bad_arguments(loss, kwargs, error, match):
    with pytest.raises(error, match=match):
        LOSSES[loss](np.eye(3), np.zeros((3, 3)), **kwargs)


@pytest.mark.parametrize("target_shape, logits_shape", [
    ((3, 4), (3, 5)),   # different number of classes
    ((2, 5), (3, 5)),   # rows do not broadcast
    ((2, 3, 5), (3, 5)),  # target larger than logits
])
def test_shape_mismatch_names_target(target_shape, logits_shape):
    with pytest.raises(ValueError, match="target"):
        klfast.kl_loss(np.ones(target_shape), np.zeros(logits_shape))


def test_complex_input_is_a_type_error():
    with pytest.raises(TypeError, match="logits"):
        klfast.kl_loss(np.eye(2), np.zeros((2, 2), dtype=complex))
    with pytest.raises(TypeError, match="logits"):
        klfast.kl_loss(np.eye(2), ["a", "b"])
    with pytest.raises(TypeError, match="target"):
        klfast.kl_loss(np.eye(2, dtype=object), np.zeros((2, 2)))


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("layout", ["C", "F"])
def test_invalid_rows_are_named(loss, layout):
    fn = LOSSES[loss]
    rng = np.random.default_rng(8)
    order = "C" if layout == "C" else "F"

    def arr(x):
        return np.array(x, order=order)

    p = distributions(rng, (6, 4), zeros=False)
    z = rng.normal(size=(6, 4))
    bad = p.copy()
    bad[3, 2] = -0.25
    with pytest.raises(ValueError, match=r"target: row 3 has a negative entry \(.*-0.25\)* at position 2"):
        fn(arr(bad), arr(z))
    bad = p.copy()
    bad[4, 0] = np.inf
    with pytest.raises(ValueError, match="target: row 4 contains an infinite value"):
        fn(arr(bad), arr(z))
    bad = z.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"logits: row 2 contains NaN \(at position 1\)"):
        fn(arr(p), arr(bad), return_grad=True)
    bad = z.copy()
    bad[5, 3] = np.inf
    with pytest.raises(ValueError, match=r"logits: row 5 contains \+inf at position 3"):
        fn(arr(p), arr(bad))
    bad[5] = -np.inf
    with pytest.raises(ValueError, match="logits: row 5 has no finite logit"):
        fn(arr(p), arr(bad))
    teacher = z.copy()
    teacher[1, 0] = np.nan
    with pytest.raises(ValueError, match="target: row 1 contains NaN"):
        fn(arr(teacher), arr(z), target_is_logits=True)
    # negative teacher logits are fine
    fn(arr(-np.abs(z)), arr(z), target_is_logits=True)
    # N-D rows are named by their index tuple
    bad = z.reshape(2, 3, 4).copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"logits: row \(1, 2\) contains NaN"):
        fn(p.reshape(2, 3, 4), bad)


def test_target_narrowed_to_float32_that_overflows_is_explained():
    with pytest.raises(ValueError, match="target: row 1 .*after conversion to float32"):
        klfast.kl_loss(np.array([[1.0, 0.0], [1e300, 0.0]]), np.zeros((2, 2), np.float32))


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("target_is_logits", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_results_do_not_depend_on_thread_count(loss, target_is_logits, dtype):
    rng = np.random.default_rng(9)
    z = (rng.normal(size=(3001, 97)) * 5).astype(dtype)  # above the one-thread cut-off
    t = (rng.normal(size=z.shape) * 5).astype(dtype) if target_is_logits else \
        distributions(rng, z.shape).astype(dtype)
    results = [LOSSES[loss](t, z, target_is_logits=target_is_logits, reduction="none",
                            return_grad=True, num_threads=n) for n in (1, 2, 3, 4)]
    for rows, grad in results[1:]:
        assert rows.tobytes() == results[0][0].tobytes()
        assert grad.tobytes() == results[0][1].tobytes()
    means = {LOSSES[loss](t, z, target_is_logits=target_is_logits, num_threads=n).tobytes()
             for n in (1, 2, 3, 4)}
    assert len(means) == 1


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.floats(0.1, 100.0), st.integers(0, 2**32 - 1))
def test_properties(k, n, temperature, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * rng.choice([0.1, 10, 1e4])
    p = distributions(rng, (n, k))
    kl = klfast.kl_loss(p, z, temperature=temperature, reduction="none")
    ce = klfast.cross_entropy_loss(p, z, temperature=temperature, reduction="none")
    scale = 1 + np.abs(ce)
    assert (kl >= -1e-12 * scale).all()  # Gibbs' inequality
    assert (ce >= kl - 1e-12 * scale).all()  # H(p) >= 0
    # a model that reproduces the target loses nothing
    # eps=0: with the floor, p below eps adds p (log eps - log p) > 0 (up to k eps / e)
    same = klfast.kl_loss(z, z, temperature=temperature, target_is_logits=True, eps=0.0,
                          reduction="none")
    np.testing.assert_allclose(same, 0.0, atol=1e-12)
    _, grad = klfast.kl_loss(p, z, temperature=temperature, return_grad=True, reduction="sum")
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)  # softmax is shift-invariant


def test_docstring_examples():
    result = doctest.testmod(klfast._core.losses, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0


# ---- the fast path: its exp and log, and against the exact scalar path ----

def level():
    """Index of the level klfast._kernels uses, in _kernels.LEVELS."""
    return _kernels.LEVELS.index(_kernels.get_isa())


def ulps(got, ref, dtype):
    """|got - ref| in units of the last place of ref rounded to dtype."""
    ref_t = np.abs(ref).astype(dtype)
    return np.abs(got.astype(np.float64) - ref) / np.spacing(ref_t).astype(np.float64)


def math_samples(name, dtype, rng):
    f64 = dtype == np.float64
    if name == "log":
        tiny, huge = (np.finfo(dtype).tiny, np.finfo(dtype).max)
        x = np.concatenate([np.exp(rng.uniform(np.log(tiny), np.log(huge), 3000)),
                            1 + rng.uniform(-0.3, 0.42, 1000), [tiny, huge, 1.0, 0.5, 2.0]])
    else:
        low = {("exp", True): -708, ("exp", False): -86.5,
               ("exp_wide", True): -746, ("exp_wide", False): -105}[name, f64]
        x = np.concatenate([-rng.random(2000) * -low, -rng.random(1000), [0.0, low]])
        if name == "exp_wide":  # subnormal results, and those that round to 0
            sub = (-745.2, -708.4) if f64 else (-104, -87.4)
            x = np.concatenate([x, rng.uniform(*sub, 1000), [-np.inf, -1e300 if f64 else -1e30]])
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["exp", "exp_wide", "log"])
def test_vector_exp_and_log_are_accurate_to_one_ulp(name, dtype):
    """Against mpmath (float64) or float64 numpy (float32), subnormal results
    included: at most about one ulp."""
    mpmath = pytest.importorskip("mpmath")
    x = math_samples(name, dtype, np.random.default_rng(11))
    got = _diagnostics.vector_math(name, x, level())
    assert got.dtype == dtype
    fn = np.log if name == "log" else np.exp
    if dtype == np.float64:
        mpmath.mp.dps = 40
        mfn = mpmath.log if name == "log" else mpmath.exp
        ref = np.array([float(mfn(mpmath.mpf(float(v)))) if np.isfinite(v) else fn(v) for v in x])
        # the reference is itself rounded: compare in mpmath where it matters
        err = np.array([float(abs(mpmath.mpf(float(g)) - mfn(mpmath.mpf(float(v)))))
                        if np.isfinite(v) else abs(g - r) for g, v, r in zip(got, x, ref)])
        err = err / np.spacing(np.abs(ref))
    else:
        ref = fn(x.astype(np.float64))
        err = ulps(got, ref, dtype)
    assert err.max() <= 1.5, (name, float(err.max()), x[np.argmax(err)])
    if name != "log":
        assert got[x == 0].tolist() == [1.0] * int((x == 0).sum())  # e^0 is exactly 1
    else:
        assert got[x == 1].tolist() == [0.0] * int((x == 1).sum())  # log 1 is exactly 0


def exact(loss, t, z, temperature, target_is_logits, eps, grad_scale):
    """The exact scalar path (libm, float64) on C-contiguous 2-D arrays."""
    g = np.empty_like(z)
    rows = _diagnostics.exact_rows(_kernels.LOSSES[loss], t, z, g, 1.0 / temperature,
                                   target_is_logits, eps, grad_scale)
    return rows, g


def fast_zoo(dtype, rng):
    """Rows of every length around the 128-byte blocks, logits of every
    scale (1e4: the subnormal/underflow exp path), zeros and one-hot targets."""
    for k in (1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 47, 64, 65, 100, 257):
        for scale in (0.1, 3.0, 1e4):
            z = rng.normal(size=(7, k)) * scale
            z[0, -1] = z[0, 0]                     # ties at the top
            p = distributions(rng, (7, k))
            p[1] = np.eye(k)[k // 2]               # one-hot
            teacher = rng.normal(size=(7, k)) * scale
            teacher[2] = z[2]                      # student equals teacher
            yield k, scale, p.astype(dtype), teacher.astype(dtype), z.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("eps", [EPS, 0.05])
def test_fast_path_matches_the_exact_scalar_path(dtype, eps):
    """float64 to a few ulp; float32 (exp, log and terms in float32, sums in
    float64) to about 1e-7 relative to 1 + |row| (errors scale with the terms,
    so a row near 0, KL of near-identical distributions, has that absolute
    error)."""
    rng = np.random.default_rng(12)
    f64 = dtype == np.float64
    for k, scale, p, teacher, z in fast_zoo(dtype, rng):
        for temperature in (0.1, 1.0, 7.3, 100.0):
            for loss in sorted(LOSSES):
                for target_is_logits, t in ((False, p), (True, teacher)):
                    grad_scale = 1.0 / temperature
                    rows, grad = LOSSES[loss](t, z, temperature=temperature,
                                              target_is_logits=target_is_logits, eps=eps,
                                              reduction="none", return_grad=True)
                    want, want_grad = exact(loss, t, z, temperature, target_is_logits, eps,
                                            grad_scale)
                    where = (k, scale, temperature, loss, target_is_logits)
                    row_tol = (1e-13 if f64 else 2e-6) * (1 + np.abs(want))
                    assert (np.abs(rows - want) <= row_tol).all(), where
                    np.testing.assert_allclose(grad, want_grad, rtol=1e-12 if f64 else 1e-5,
                                               atol=(1e-14 if f64 else 5e-7) * grad_scale,
                                               err_msg=str(where))
                    no_grad = LOSSES[loss](t, z, temperature=temperature,
                                           target_is_logits=target_is_logits, eps=eps,
                                           reduction="none")
                    np.testing.assert_array_equal(no_grad, rows)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_below_the_normal_range_gives_subnormal_gradients(dtype):
    """q_j = e^(z_j / T - lse) far below 1: subnormal, or 0, as in the exact path."""
    f64 = dtype == np.float64
    tiny = np.finfo(dtype).tiny
    gaps = np.array([0.0, -1.0, -700.0, -720.0, -740.0, -744.0, -800.0, -1e300]) if f64 else \
        np.array([0.0, -1.0, -80.0, -90.0, -100.0, -103.0, -120.0, -1e30])
    z = np.tile(gaps, (3, 1)).astype(dtype)
    z[1] *= 0.5
    z[2] = z[2, ::-1]
    t = np.zeros_like(z)
    t[:, 0] = 1.0
    for temperature in (1.0, 0.5):
        rows, grad = klfast.cross_entropy_loss(t, z, temperature=temperature, reduction="sum",
                                               return_grad=True)
        _, want = exact("cross_entropy", t, z, temperature, False, EPS, 1.0 / temperature)
        assert ((grad != 0) & (np.abs(grad) < tiny)).any()  # some are subnormal
        np.testing.assert_allclose(grad, want, rtol=1e-13 if f64 else 1e-6,
                                   atol=2 * np.finfo(dtype).smallest_subnormal)


@pytest.mark.parametrize("dtype, eps", [(np.float64, 0.0), (np.float64, 1e-320),
                                        (np.float32, 0.0), (np.float32, 1e-45)])
def test_subnormal_targets_are_scored_by_the_fast_path(dtype, eps):
    """With eps below the smallest normal, a target's subnormal probability
    above eps is scaled into the normal range for its log (and a zero's log
    is -inf): the fast path agrees with the exact scalar path."""
    rng = np.random.default_rng(13)
    p = distributions(rng, (6, 40)).astype(dtype)
    z = (rng.normal(size=(6, 40)) * 3).astype(dtype)
    p[1, 3] = np.finfo(dtype).smallest_subnormal * 7
    p[4, :5] = np.finfo(dtype).tiny / 3
    rows, grad = klfast.kl_loss(p, z, eps=eps, reduction="none", return_grad=True)
    want, want_grad = exact("kl", p, z, 1.0, False, eps, 1.0)
    np.testing.assert_allclose(rows, want, rtol=1e-13 if dtype == np.float64 else 2e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12 if dtype == np.float64 else 1e-5,
                               atol=1e-15 if dtype == np.float64 else 5e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_results_do_not_depend_on_the_address(dtype):
    """Rows at every offset from a 64-byte boundary give the same bits."""
    rng = np.random.default_rng(14)
    z = (rng.normal(size=(5, 83)) * 4).astype(dtype)
    t = distributions(rng, (5, 83)).astype(dtype)
    want = klfast.kl_loss(t, z, reduction="none", return_grad=True)
    for offset in range(1, 9):
        zb = np.empty(z.size + offset, dtype)[offset:].reshape(z.shape)
        tb = np.empty(t.size + offset, dtype)[offset:].reshape(t.shape)
        zb[...] = z
        tb[...] = t
        got = klfast.kl_loss(tb, zb, reduction="none", return_grad=True)
        assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()


OBJDUMP = shutil.which("objdump")
PACKED_FMA = {"baseline": r"\bmulp[sd]\s+%xmm", "avx2": r"\bvfn?madd\d+p[sd]\s+.*%ymm",
              "avx512": r"\bvfn?madd\d+p[sd]\s+.*%zmm"}


@pytest.mark.skipif(OBJDUMP is None or not sys.platform.startswith("linux"),
                    reason="needs binutils' objdump on Linux")
def test_loss_kernels_stay_vectorised():
    """Each loss kernel at each level multiplies whole vectors of the level's
    width (its exp polynomial): scalar code would not."""
    listing = subprocess.run([OBJDUMP, "-d", "--no-show-raw-insn", _kernels.__file__],
                             capture_output=True, text=True, check=True).stdout
    bodies = dict(re.findall(r"<(klfast_forms_long_f(?:32|64)_\w+)>:\n(.*?)(?:\n\n|\Z)",
                             listing, re.S))
    for name in _kernels.LEVELS:
        for dtype in ("f64", "f32"):
            # (klfast_forms_* sends short rows of logits (KL, the losses) to the lanes,
            # logits_lanes.h, the rest here)
            body = bodies.get(f"klfast_forms_long_{dtype}_{name}")
            assert body is not None, f"klfast_forms_long_{dtype}_{name} missing"
            assert len(re.findall(PACKED_FMA[name], body)) >= 20, f"{dtype} {name}"


# ---- grad_out: the gradient written into the caller's array ----------------

@pytest.mark.parametrize("loss", ["kl", "cross_entropy"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_grad_out_receives_the_gradient(loss, dtype, reduction):
    rng = np.random.default_rng(5)
    target = rng.dirichlet(np.ones(37), size=6).astype(dtype)
    logits = rng.normal(size=(6, 37)).astype(dtype)
    fn = getattr(klfast, f"{loss}_loss")
    want_loss, want_grad = getattr(_reference, f"{loss}_loss")(
        target, logits, reduction=reduction, return_grad=True)
    grad_out = np.full(logits.shape, np.nan, dtype=dtype)
    got_loss, grad = fn(target, logits, reduction=reduction, return_grad=True, grad_out=grad_out)
    assert grad is grad_out
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(grad_out, want_grad, rtol=tol, atol=tol)
    np.testing.assert_allclose(got_loss, want_loss, rtol=tol, atol=tol)
    # a strided (non-contiguous) buffer of the right shape works too
    wide = np.full((6, 74), np.nan, dtype=dtype)
    _, grad = fn(target, logits, reduction=reduction, return_grad=True, grad_out=wide[:, ::2])
    np.testing.assert_allclose(wide[:, ::2], want_grad, rtol=tol, atol=tol)
    assert np.isnan(wide[:, 1::2]).all()


def test_grad_out_over_the_logits_gives_the_same_gradient():
    rng = np.random.default_rng(6)
    target = rng.dirichlet(np.ones(20), size=4)
    logits = rng.normal(size=(4, 20))
    _, want = klfast.kl_loss(target, logits, return_grad=True)
    z = logits.copy()
    _, got = klfast.kl_loss(target, z, return_grad=True, grad_out=z)
    assert got is z
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("grad_out, error, match", [
    (np.empty((4, 20), np.float32), ValueError, "grad_out has dtype float32, expected float64"),
    (np.empty((4, 21)), ValueError, r"grad_out has shape \(4, 21\), expected \(4, 20\)"),
    ([[0.0] * 20] * 4, TypeError, "grad_out must be a numpy.ndarray"),
])
def test_a_bad_grad_out_is_named(grad_out, error, match):
    target = np.full((4, 20), 0.05)
    with pytest.raises(error, match=match):
        klfast.kl_loss(target, np.zeros((4, 20)), return_grad=True, grad_out=grad_out)


def test_grad_out_needs_return_grad():
    target = np.full((4, 20), 0.05)
    with pytest.raises(ValueError, match="grad_out needs return_grad=True"):
        klfast.kl_loss(target, np.zeros((4, 20)), grad_out=np.empty((4, 20)))
    read_only = np.empty((4, 20))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="grad_out is read-only"):
        klfast.kl_loss(target, np.zeros((4, 20)), return_grad=True, grad_out=read_only)
