"""Inputs as probabilities, log-probabilities or logits (``input=``,
``temperature=``) against the slow twin's exact (mpmath) values, for every
measure, form, dtype and thread count; mixed forms; the losses' ``input=``;
the errors that name the argument.

The promise tested (stated in the README and the docstrings): float64 rows
are within 1e-14 of the exact value relative to ``|value| + scale``, where
``scale = sum_j (p_j (1 + |log p_j|) + q_j (1 + |log q_j|)) (|log p~_j| + |log q~_j|)``
(the twin's ``forms_rows``); float32 rows within 1e-5 of it; and probabilities
below the element type's smallest subnormal count as 0. For rows that are not
nearly equal the scale is a small multiple of the value, so this is a
relative bound per row; for nearly equal rows (KL near 0) it is absolute."""
import numpy as np
import pytest
from scipy.special import log_softmax

import klfast
from klfast._core import reference as _reference
from zoo import kl_logits_mpmath as _kl_logits_mpmath

MEASURES = ("kl", "jeffreys", "entropy", "cross_entropy", "jensen_shannon")
FORMS = ("probs", "log_probs", "logits")
TOL = {np.float64: 1e-14, np.float32: 1e-5}


def _rows(rng, n, k, scale=3.0):
    """Logits, and the same distributions as probabilities and log-probabilities."""
    z = rng.normal(size=(n, k)) * scale
    log_p = log_softmax(z, axis=1)
    return z, np.exp(log_p), log_p


def _as_form(form, z, p, log_p):
    return {"probs": p, "log_probs": log_p, "logits": z}[form]


def _check(measure, a, b, forms, dtype, temperature=1.0, eps=klfast.DEFAULT_EPS,
           num_threads=None, **kwargs):
    """klfast against the twin's exact rows, within the documented bound."""
    a, b = a.astype(dtype), b.astype(dtype)
    fn = getattr(klfast, measure)
    args = (a,) if measure == "entropy" else (a, b)
    if measure == "jensen_shannon":
        got = fn(*args, input=forms, temperature=temperature, num_threads=num_threads, **kwargs)
        eps = 0.0
    else:
        got = fn(*args, input=forms, temperature=temperature, eps=eps, num_threads=num_threads,
                 **kwargs)
    if dtype == np.float32:
        eps = float(np.float32(eps))
    want, scale = _reference.forms_rows(measure, a.astype(float), b.astype(float),
                                        forms if isinstance(forms, tuple) else (forms,) * 2,
                                        temperature=temperature, eps=eps,
                                        normalize=kwargs.get("normalize", False))
    assert got.dtype == dtype
    with np.errstate(invalid="ignore"):  # inf - inf: equal
        err = np.where(got == want, 0.0, np.abs(got.astype(float) - want))
    # probabilities below the element type's smallest subnormal count as 0
    floor = 1e3 * a.shape[-1] * np.finfo(dtype).smallest_subnormal
    bound = TOL[dtype] * (np.abs(want) + scale) + floor
    assert (err <= bound).all(), (measure, forms, dtype, float((err / bound)[err > 0].max()))
    return got, want


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("form_p", FORMS)
@pytest.mark.parametrize("form_q", FORMS)
def test_every_form_pair_against_the_exact_twin(measure, form_p, form_q, dtype):
    rng = np.random.default_rng(1)
    k = 37  # a whole block and a tail at every level
    a = _as_form(form_p, *_rows(rng, 6, k))
    b = _as_form(form_q, *_rows(rng, 6, k))
    if form_p == form_q == "probs":
        return  # the probabilities' kernel, tested elsewhere
    _check(measure, a, b, (form_p, form_q) if measure != "entropy" else (form_p,), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("k", [40, 100])
def test_extreme_logits_and_temperatures(measure, dtype, k):
    """Logits of +-1e4 and temperatures from 0.01 to 100: one-hot-like rows,
    and exps far below the normal range (rows of the lanes and longer)."""
    rng = np.random.default_rng(2)
    z = rng.uniform(-1e4, 1e4, size=(5, k))
    w = rng.uniform(-1e4, 1e4, size=(5, k))
    w[0] = z[0]  # equal rows
    w[1, :] = z[1, ::-1]
    if dtype == np.float32:
        z, w = z / 100, w / 100  # within float32's exp range after scaling
    for temperature in (0.01, 0.3, 1.0, 7.0, 100.0):
        _check(measure, z, w, "logits" if measure != "entropy" else ("logits",), dtype,
               temperature=temperature)


JEFFREYS_FAR_OPEN = {("jeffreys", 3e5, 100, np.float64), ("jeffreys", 3e4, 64, np.float32)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [64, 100, 1000])
@pytest.mark.parametrize("spread", [1e2, 1e4, 3e4, 3e5, 1e6])
@pytest.mark.parametrize("measure", ["kl", "jeffreys"])
def test_logits_floored_where_p_is_large(measure, spread, k, dtype, request):
    """KL and Jeffreys of rows of logits whose q is below eps where p holds
    nearly all its mass (confident rows far apart): KL is about log(1 / eps),
    while the direct sum's terms p_j (log p_j - log q_j) and their eps
    corrections are about the logits' spread. The lanes' longest rows and
    the row kernels', against the exact twin within the documented bound."""
    if (measure, spread, k, dtype) in JEFFREYS_FAR_OPEN:
        # Jeffreys' centred sums (logits_kl_rows.h, logits_sym_rest) on a row
        # whose p is one-hot far from q's mass: 1.3e-13 relative (6.6x the
        # bound) at k = 100, 1.09x in float32 at k = 64. Their exponent u_j +
        # dl_j at q's top class is formed from two numbers the size of the
        # spread, and log B inherits that rounding. Not yet mended
        request.applymarker(pytest.mark.xfail(strict=True, reason="Jeffreys, centred sums"))
    rng = np.random.default_rng(5)
    n = 6
    z = rng.uniform(-1.0, 1.0, size=(n, k))
    w = rng.uniform(-1.0, 1.0, size=(n, k))
    top = rng.integers(0, k, size=n)
    z[np.arange(n), top] += 1.0  # p's mass on one class (and a little elsewhere)
    w[np.arange(n), top] -= 1.0  # q far below eps there
    z, w = z * spread, w * spread
    w[1] = z[1] - spread * 0.5 * (np.arange(k) == top[1])  # q floored at p's top only
    if dtype == np.float32:
        z, w = z / 100, w / 100  # float32: a spread within its exp range at T = 0.01
    for temperature in (0.01, 1.0, 7.0, 100.0):
        _check(measure, z, w, "logits", dtype, temperature=temperature)


@pytest.mark.parametrize("measure", MEASURES)
def test_log_probs_with_minus_inf_and_one_hot_rows(measure):
    rng = np.random.default_rng(3)
    z, p, log_p = _rows(rng, 6, 20)
    log_q = log_softmax(rng.normal(size=(6, 20)), axis=1)
    log_p[0, :5] = -np.inf                       # classes of probability 0
    log_p[0] = log_softmax(log_p[0])
    log_p[1] = -np.inf                           # one-hot: 0 and -inf
    log_p[1, 3] = 0.0
    log_q[2] = log_p[2]                          # equal rows
    log_q[3, 7] = -np.inf
    log_q[3] = log_softmax(log_q[3])
    with np.errstate(divide="ignore"):
        for eps in (klfast.DEFAULT_EPS, 0.0):
            forms = ("log_probs",) if measure == "entropy" else ("log_probs", "log_probs")
            got, want = _check(measure, log_p, log_q, forms, np.float64, eps=eps)
            if measure == "kl" and eps == 0.0:
                assert got[3] == np.inf  # p > 0 where q == 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mixed_forms_give_the_probabilities_result(dtype):
    """The same distributions in any form: the values agree with kl on
    probabilities to rounding (not bitwise: the kernels differ)."""
    rng = np.random.default_rng(4)
    za, pa, la = _rows(rng, 8, 50)
    zb, pb, lb = _rows(rng, 8, 50)
    want = _reference.kl(pa, pb)
    tol = 1e-13 if dtype == np.float64 else 1e-5
    for fa in FORMS:
        for fb in FORMS:
            a, b = _as_form(fa, za, pa, la), _as_form(fb, zb, pb, lb)
            got = klfast.kl(a.astype(dtype), b.astype(dtype), input=(fa, fb))
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"{fa} {fb}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("measure", MEASURES)
def test_temperature_is_logits_divided_by_it(measure, dtype):
    rng = np.random.default_rng(5)
    z, w = (rng.normal(size=(4, 33)) * 5).astype(dtype), (rng.normal(size=(4, 33)) * 5).astype(dtype)
    fn = getattr(klfast, measure)
    args = (z,) if measure == "entropy" else (z, w)
    forms = ("logits",) * len(args)
    for temperature in (0.25, 2.0, 3.7):  # 1/T exact for the first two
        scaled = tuple(x / dtype(temperature) for x in args)
        got = fn(*args, input=forms, temperature=temperature)
        want = fn(*scaled, input=forms)
        rtol = (1e-14 if temperature != 3.7 else 1e-13) if dtype == np.float64 else 2e-5
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_results_do_not_depend_on_the_thread_count(dtype):
    rng = np.random.default_rng(6)
    z, w = rng.normal(size=(300, 257)) * 4, rng.normal(size=(300, 257)) * 4
    z, w = z.astype(dtype), w.astype(dtype)
    for measure in MEASURES:
        fn = getattr(klfast, measure)
        args = (z,) if measure == "entropy" else (z, w)
        one = fn(*args, input="logits", num_threads=1)
        two = fn(*args, input="logits", num_threads=2)
        assert one.tobytes() == two.tobytes(), measure
    _check("kl", z[::37], w[::37], "logits", dtype, num_threads=2)


def test_layouts_broadcasting_axis_and_out():
    rng = np.random.default_rng(7)
    z, p, log_p = _rows(rng, 6, 9)
    want = klfast.kl(z, p[0], input=("logits", "probs"))
    np.testing.assert_array_equal(klfast.kl(np.asfortranarray(z), p[0], input=("logits", "probs")),
                                  want)
    np.testing.assert_array_equal(klfast.kl(z.T, p[0][:, None], axis=0, input=("logits", "probs")),
                                  want)
    out = np.empty(6)
    assert klfast.kl(z, p[0], input=("logits", "probs"), out=out) is out
    np.testing.assert_array_equal(out, want)
    np.testing.assert_allclose(klfast.kl(z, p[0], input=("logits", "probs"), base=2),
                               want / np.log(2), rtol=1e-15)
    assert klfast.kl(z, p[0], input=("logits", "probs"), keepdims=True).shape == (6, 1)
    frozen = z.copy()
    frozen.flags.writeable = False
    klfast.kl(frozen, frozen, input="logits")
    np.testing.assert_array_equal(frozen, z)  # inputs never modified


def test_normalize_and_check_sums_in_log_form():
    rng = np.random.default_rng(8)
    z, p, log_p = _rows(rng, 5, 12)
    q = rng.dirichlet(np.ones(12), size=5)
    shifted = log_p + 0.7  # log-values not normalized: the log-softmax with normalize
    np.testing.assert_allclose(klfast.kl(shifted, q * 2, input=("log_probs", "probs"),
                                         normalize=True),
                               _reference.kl(p, q), rtol=1e-13)
    np.testing.assert_allclose(klfast.entropy(np.log(p * 3), input="log_probs", normalize=True),
                               _reference.entropy(p), rtol=1e-13)
    low = log_p - 0.01  # sums to 0.99: with check_sums=False scored as given
    got = klfast.entropy(low, input="log_probs", check_sums=False)
    want, _ = _reference.forms_rows("entropy", low, low, ("log_probs",))
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_losses_take_the_target_form():
    rng = np.random.default_rng(9)
    z, p, log_p = _rows(rng, 6, 21)
    logits = rng.normal(size=(6, 21))
    for loss in ("kl_loss", "cross_entropy_loss"):
        fn, twin = getattr(klfast, loss), getattr(_reference, loss)
        for form, target in (("probs", p), ("log_probs", log_p), ("logits", z)):
            value, grad = fn(target, logits, input=(form, "logits"), temperature=1.5,
                             reduction="none", return_grad=True)
            want, want_grad = twin(target, logits, input=(form, "logits"), temperature=1.5,
                                   reduction="none", return_grad=True)
            np.testing.assert_allclose(value, want, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)
        # the alias
        np.testing.assert_array_equal(fn(z, logits, target_is_logits=True),
                                      fn(z, logits, input=("logits", "logits")))
        np.testing.assert_array_equal(fn(z, logits, input="logits"),
                                      fn(z, logits, input=("logits", "logits")))


def test_minus_inf_logits_are_classes_of_probability_zero():
    z = np.array([[0.0, 1.0, -np.inf, 2.0]])
    w = np.array([[0.5, -np.inf, -1.0, 0.0]])
    for measure in ("kl", "jeffreys", "cross_entropy", "jensen_shannon"):
        got = getattr(klfast, measure)(z, w, input="logits", **({} if measure == "jensen_shannon"
                                                                else {"eps": 0.0}))
        want, _ = _reference.forms_rows(measure, z, w, ("logits", "logits"), eps=0.0)
        np.testing.assert_allclose(got, want, rtol=1e-14)
    assert klfast.kl(z, w, input="logits", eps=0.0)[0] == np.inf
    assert np.isfinite(klfast.kl(w, z, input="logits")[0])  # eps floors log q
    loss, grad = klfast.kl_loss(np.array([[0.2, 0.0, 0.3, 0.5]]), z, return_grad=True)
    want, want_grad = _reference.kl_loss(np.array([[0.2, 0.0, 0.3, 0.5]]), z, return_grad=True)
    assert loss == np.inf and want == np.inf  # p > 0 where q == 0: the loss does not floor q
    np.testing.assert_allclose(grad, want_grad, rtol=1e-14)


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((np.zeros((2, 3)), np.zeros((2, 3))), {"input": "softmax"}, ValueError,
     r"input for p must be 'probs', 'log_probs' or 'logits', got 'softmax'"),
    ((np.zeros((2, 3)), np.zeros((2, 3))), {"input": ("logits",)}, ValueError,
     r"input has 1 forms \('logits',\) for 2 inputs \(p, q\)"),
    ((np.zeros((2, 3)), np.zeros((2, 3))), {"input": 3}, TypeError, "input must be"),
    ((np.full((2, 3), 1 / 3), np.full((2, 3), 1 / 3)), {"temperature": 2.0}, ValueError,
     "temperature=2.0 divides logits, but no input is logits"),
    ((np.zeros((2, 3)), np.zeros((2, 3))), {"input": "logits", "temperature": 0.0}, ValueError,
     "temperature must be finite and > 0"),
    ((np.array([[0.0, np.nan, 1.0]]), np.zeros((1, 3))), {"input": "logits"}, ValueError,
     r"p: row 0 contains NaN \(at position 1\)"),
    ((np.zeros((1, 3)), np.array([[0.0, np.inf, 1.0]])), {"input": "logits"}, ValueError,
     r"q: row 0 contains \+inf at position 1"),
    ((np.zeros((2, 3)), np.array([[0.0, 0.0, 0.0], [-np.inf] * 3])), {"input": "logits"},
     ValueError, "q: row 1 has no finite logit"),
    ((np.array([[-np.inf, -np.inf, 0.4]]), np.zeros((1, 3))),
     {"input": ("log_probs", "logits")}, ValueError,
     r"p: row 0 has a log-probability above 0 \(0\.4\) at position 2"),
    ((np.log(np.full((1, 3), 0.3)), np.zeros((1, 3))), {"input": ("log_probs", "logits")},
     ValueError, r"p: row 0: the exps of its log-probabilities sum to 0.9, not 1"),
    ((np.full((1, 3), 0.3), np.zeros((1, 3))), {"input": ("probs", "logits")}, ValueError,
     r"p: row 0 sums to 0.9, not 1"),
    ((np.array([[0.5, -0.5, 1.0]]), np.zeros((1, 3))), {"input": ("probs", "logits")},
     ValueError, r"p: row 0 has a negative entry \(-0.5\) at position 1"),
])
def test_invalid_inputs_are_named(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        klfast.kl(*args, **kwargs)


def test_loss_input_errors():
    t, z = np.full((2, 3), 1 / 3), np.zeros((2, 3))
    with pytest.raises(ValueError, match="input for logits must be 'logits'"):
        klfast.kl_loss(t, z, input=("probs", "probs"))
    with pytest.raises(ValueError, match="target_is_logits=True contradicts input"):
        klfast.kl_loss(t, z, input=("probs", "logits"), target_is_logits=True)
    with pytest.raises(ValueError, match="target: row 1 has a log-probability above 0"):
        klfast.cross_entropy_loss(np.log(t) + [[0, 0, 0], [0, 1.2, 0]], z,
                                  input=("log_probs", "logits"))
    teacher = np.array([[1e39, 0.0, 0.0]])  # fine in float64, +inf in float32
    klfast.kl_loss(teacher, z[:1], input="logits")
    with pytest.raises(ValueError, match=r"target: row 0 contains \+inf at position 0 .* after "
                                         r"conversion to float32"):
        klfast.kl_loss(teacher, z[:1].astype(np.float32), input="logits")


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-15), (np.float32, 5e-7),
                                         (np.float16, 5e-7)])
@pytest.mark.parametrize("k", [37, 300])
@pytest.mark.parametrize("temperature", [1.0, 0.3, 7.0])
def test_kl_of_nearly_equal_logit_rows_is_relatively_accurate(dtype, rtol, k, temperature):
    """KL of two rows of logits b = a + d z keeps its relative accuracy as d
    goes to 0 (the stable pass of engine/logits_kl_rows.h): KL ~ d^2 is not
    left as the difference of two log-sum-exps. Wide rows (logits spread past
    the exp range) included; rows whose value is mostly terms the eps rule
    floors are left out (they keep an error relative to those terms)."""
    rng = np.random.default_rng(int(k * temperature * 10))
    eps = float(np.float32(klfast.DEFAULT_EPS)) if dtype != np.float64 else klfast.DEFAULT_EPS
    checked = 0
    for spread in (3.0, 30.0):
        for d in (3.0, 1e-1, 1e-3, 1e-5, 1e-8, 1e-11, 1e-14):
            a = (rng.normal(size=(3, k)) * spread).astype(dtype)
            b = (a + rng.normal(size=(3, k)) * d).astype(dtype)
            got = klfast.kl(a, b, input="logits", temperature=temperature)
            want = _kl_logits_mpmath(a, b, temperature, eps)
            # the part of the value made of floored terms (p or q below eps)
            la = log_softmax(a.astype(float) / temperature, axis=1)
            lb = log_softmax(b.astype(float) / temperature, axis=1)
            floored = (la < np.log(eps)) | (lb < np.log(eps))
            floored_part = np.sum(np.where(floored, np.exp(la) * np.abs(la - lb), 0), axis=1)
            keep = (want != 0) & (floored_part < 1e-3 * np.abs(want))
            # each term p_j g(d_j - c) carries the rounding of log p_j (about
            # |log p_j| ulp): the bound is relative to the terms so weighted
            # (a few times the value, more where classes of tiny p make it)
            p = np.exp(la)
            delta = (b.astype(float) - a.astype(float)) / temperature
            delta -= np.sum(p * delta, axis=1, keepdims=True)
            bound = rtol * np.sum(p * (np.expm1(delta) - delta) * (1 + np.abs(la)), axis=1)
            err = np.abs(got[keep].astype(float) - want[keep])
            assert (err <= bound[keep]).all(), (spread, d, err / bound[keep] * rtol)
            checked += keep.sum()
    assert checked >= 8  # most rows are neither 0 (equal float16 rows) nor floored terms


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-15), (np.float32, 5e-7)])
@pytest.mark.parametrize("k", [37, 1000])
def test_kl_of_logits_when_the_first_centre_is_far_off(dtype, rtol, k):
    """The kernel centres d = b - a on its values at the lanes' maxima of a
    before it knows p; rows where those are outliers (flat p, d large exactly
    there) must still be exact: badly centred rows take a third pass."""
    rng = np.random.default_rng(k)
    a = rng.normal(size=(4, k)) * 0.01
    # d is large on the top tenth of each row, where every lane's maximum lies
    top = a >= np.quantile(a, 0.9, axis=1, keepdims=True)
    for scale in (1e-6, 1e-3, 1.0, 30.0):
        b = a + rng.normal(size=a.shape) * scale * 1e-3 + top * scale
        a_, b_ = a.astype(dtype), b.astype(dtype)
        got = klfast.kl(a_, b_, input="logits")
        want = _kl_logits_mpmath(a_, b_, 1.0, klfast.DEFAULT_EPS if dtype == np.float64
                                 else float(np.float32(klfast.DEFAULT_EPS)))
        np.testing.assert_allclose(got, want, rtol=rtol * (1 + np.log(k)), atol=0,
                                   err_msg=str(scale))
