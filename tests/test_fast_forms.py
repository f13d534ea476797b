"""Inputs in any form, and the losses, through the C shortcut: the measures
with ``input="log_probs"``/``"logits"`` (and ``temperature``) go to
klfast._kernels.fast, kl_loss and cross_entropy_loss to
klfast._kernels.fast_loss, small or large (threads), and give what the
general path gives: the values of the slow twin, the same bits, the same
shapes and types, ``out=``/``grad_out=`` filled and returned, the same
errors."""
import numpy as np
import pytest

import klfast
import klfast._core.engine
from klfast._core import reference as _reference
from zoo import general_path

MEASURES = ["kl", "jeffreys", "entropy", "cross_entropy", "jensen_shannon"]
LOSSES = ["kl_loss", "cross_entropy_loss"]
TOL = {np.float64: 1e-13, np.float32: 2e-5}


@pytest.fixture
def no_general_path(monkeypatch):
    """Fail if a call reaches the Python row engine."""
    def refuse(*args, **kwargs):
        raise AssertionError("the call left the C shortcut")
    monkeypatch.setattr(klfast._core.engine, "run", refuse)


def logits(shape, dtype, seed=3):
    return (np.random.default_rng(seed).normal(size=shape) * 2).astype(dtype)


def as_form(z, form):
    """Logits z as the distribution softmax(z) in ``form``."""
    log_p = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - z.max(-1, keepdims=True)
    return {"logits": z, "log_probs": log_p, "probs": np.exp(log_p)}[form].astype(z.dtype)


def call(lib, name, p, q, **kw):
    fn = getattr(lib, name)
    return fn(p, **kw) if name == "entropy" else fn(p, q, **kw)


FORM_CASES = [  # (input, temperature)
    ("logits", 1.0), ("logits", 0.7), ("logits", 3), ("log_probs", 1.0),
    (("probs", "logits"), 2.0), (("log_probs", "probs"), 1.0), (("logits", "log_probs"), 1.0),
]


@pytest.mark.parametrize("name", MEASURES)
@pytest.mark.parametrize("input, temperature", FORM_CASES)
@pytest.mark.parametrize("shape", [(11,), (3, 11), (2, 4, 11)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forms_take_the_shortcut_and_match_the_twin(name, input, temperature, shape, dtype,
                                                    no_general_path):
    forms = (input,) * 2 if isinstance(input, str) else input
    if name == "entropy":
        forms = forms[:1]
        if "logits" not in forms and temperature != 1.0:
            pytest.skip("entropy of one input: a temperature needs it as logits")
        input = forms if isinstance(input, tuple) else input
    p = as_form(logits(shape, dtype, 1), forms[0])
    q = as_form(logits(shape, dtype, 2), forms[-1])
    for kw in ({}, {"base": 2}, {"keepdims": True}, {"normalize": True}):
        kw = dict(kw, input=input, temperature=temperature)
        want = call(_reference, name, p, q, **kw)
        got = call(klfast, name, p, q, **kw)
        # a numpy scalar for 1-D input (the twin gives a 0-d array in log form)
        assert isinstance(got, np.ndarray) == (np.ndim(want) > 0), kw
        assert np.shape(got) == np.shape(want) and np.asarray(got).dtype == dtype, kw
        np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype], err_msg=str(kw))
        out = np.full(np.shape(want), np.nan, dtype=dtype)
        assert call(klfast, name, p, q, out=out, **kw) is out
        np.testing.assert_array_equal(out, got)


@pytest.mark.parametrize("name", MEASURES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [5, 7_000])  # a small call and one of 77,000 elements
def test_forms_give_the_general_paths_bits(name, dtype, n):
    """The shortcut and the general path give the same bits, on 1, 2 and the
    default number of threads."""
    p, q = logits((n, 11), dtype, 1), logits((n, 11), dtype, 2)
    kw = {"input": "logits", "temperature": 1.5}
    with general_path():
        general = call(klfast, name, p, q, **kw)
    for num_threads in (1, 2, None):
        np.testing.assert_array_equal(call(klfast, name, p, q, num_threads=num_threads, **kw),
                                      general)
    # (the twin is slow in log form: every 97th row)
    np.testing.assert_allclose(general[::97], call(_reference, name, p[::97], q[::97], **kw),
                               rtol=TOL[dtype], atol=TOL[dtype])


def test_large_forms_take_the_shortcut(no_general_path):
    p, q = logits((7_000, 11), np.float64, 1), logits((7_000, 11), np.float64, 2)
    got = klfast.kl(p, q, input="logits", num_threads=2)
    np.testing.assert_allclose(got[::97], _reference.kl(p[::97], q[::97], input="logits"),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forms_in_columns_still_give_the_twins_values(dtype):
    """Columns (elements not contiguous) are not the shortcut's: the general
    path converts them, with the same values."""
    p, q = logits((11, 6), dtype, 1), logits((11, 6), dtype, 2)
    for name in MEASURES:
        got = call(klfast, name, p, q, input="logits", axis=0)
        want = call(_reference, name, p.T, q.T, input="logits")
        np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype], err_msg=name)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"input": "probs", "temperature": 2.0}, ValueError, "no input is logits"),
    ({"input": ("logits",)}, ValueError, "input has 1 forms"),
    ({"input": "softmax"}, ValueError, "must be 'probs', 'log_probs' or 'logits'"),
    ({"input": ["logits", "logits"]}, None, None),  # a list is taken as a tuple
    ({"input": "logits", "temperature": 0.0}, ValueError, "temperature must be finite"),
    ({"input": "logits", "temperature": True}, TypeError, "temperature must be a real"),
    ({"input": "logits", "temperature": 10 ** 400}, OverflowError, None),
])
def test_form_arguments_are_still_checked(kwargs, error, match):
    p, q = logits((2, 11), np.float64, 1), logits((2, 11), np.float64, 2)
    if error is None:
        np.testing.assert_array_equal(klfast.kl(p, q, **kwargs), klfast.kl(p, q, input="logits"))
        return
    with pytest.raises(error, match=match):
        klfast.kl(p, q, **kwargs)


def test_a_temperature_too_small_for_float32_is_an_error():
    p, q = logits((2, 11), np.float32, 1), logits((2, 11), np.float32, 2)
    with pytest.raises(ValueError, match="1/temperature overflows float32"):
        klfast.kl(p, q, input="logits", temperature=1e-39)
    assert np.isfinite(klfast.kl(p.astype(float), q.astype(float), input="logits",
                                 temperature=1e-39)).all()


@pytest.mark.parametrize("n", [3, 7_000])
def test_invalid_rows_in_log_form_are_explained(n):
    p, q = logits((n, 11), np.float64, 1), logits((n, 11), np.float64, 2)
    bad = p.copy()
    bad[n - 1, 4] = np.nan
    with pytest.raises(ValueError, match=rf"p: row {n - 1}"):
        klfast.kl(bad, q, input="logits")
    log_p = as_form(p, "log_probs")
    log_p[1] += 0.5  # sums to e^0.5
    with pytest.raises(ValueError, match=r"p: row 1"):
        klfast.kl(log_p, q, input=("log_probs", "logits"))


@pytest.mark.parametrize("name", MEASURES)
def test_lists_and_tuples_of_floats_take_the_shortcut(name, no_general_path):
    p, q = [0.2, 0.3, 0.5], (0.25, 0.25, 0.5)
    got = call(klfast, name, p, q)
    assert isinstance(got, np.float64)
    np.testing.assert_allclose(got, call(_reference, name, np.array(p), np.array(q)),
                               rtol=1e-13, atol=1e-15)
    rows = call(klfast, name, [p, p[::-1]], [q, q], base=2)
    want = call(_reference, name, np.array([p, p[::-1]]), np.array([q, q]), base=2)
    np.testing.assert_allclose(rows, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("p, q, error", [
    ([1, 2, 3], [3, 2, 1], None),  # integers (counts with normalize): converted
    ([[0.5, 0.5], [1.0]], [0.5, 0.5], ValueError),  # ragged: numpy's error
    (["a", "b"], [0.5, 0.5], TypeError),
])
def test_other_lists(p, q, error):
    if error is None:
        got = klfast.kl(p, q, normalize=True)
        want = _reference.kl(np.array(p, float), np.array(q, float), normalize=True)
        np.testing.assert_allclose(got, want, rtol=1e-15)
        return
    with pytest.raises(error):
        klfast.kl(p, q)


@pytest.mark.parametrize("name", MEASURES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("input", ["probs", "logits"])
@pytest.mark.parametrize("n", [6, 7_000])
def test_where_takes_the_shortcut(name, dtype, input, n, monkeypatch):
    """where= as a bool array of the result's shape takes the shortcut: the
    general path's bits, the twin's values on the rows included, NaN on the
    others in a new result, a caller's out= left as it was there."""
    z1, z2 = logits((n, 11), dtype, 1), logits((n, 11), dtype, 2)
    p, q = (z1, z2) if input == "logits" else (as_form(z1, "probs"), as_form(z2, "probs"))
    mask = np.arange(n) % 3 != 1
    with general_path():
        general = call(klfast, name, p, q, input=input, base=2, where=mask)

    def refuse(*args, **kwargs):
        raise AssertionError("the call left the C shortcut")
    monkeypatch.setattr(klfast._core.engine, "run", refuse)
    got = call(klfast, name, p, q, input=input, base=2, where=mask)
    np.testing.assert_array_equal(got, general)
    assert np.isnan(got[~mask]).all()
    want = call(_reference, name, p[mask][::97], q[mask][::97], input=input, base=2)
    np.testing.assert_allclose(got[mask][::97], want, rtol=TOL[dtype], atol=TOL[dtype])
    out = np.full(n, -1.0, dtype=dtype)
    assert call(klfast, name, p, q, input=input, base=2, where=mask, out=out) is out
    np.testing.assert_array_equal(out[mask], got[mask])
    assert (out[~mask] == -1).all()
    nothing = call(klfast, name, p, q, input=input, where=np.zeros(n, dtype=bool))
    assert np.isnan(nothing).all()


@pytest.mark.parametrize("kwargs", [
    {"axis": 0},  # columns: the general path (no index over strided rows)
    {"where": np.ones((5, 1), dtype=bool), "keepdims": True},  # the kept shape
    {"where": np.ones(1, dtype=bool)},  # broadcast
])
def test_other_masks_still_give_the_twins_values(kwargs):
    p, q = as_form(logits((5, 11), np.float64, 1), "probs"), as_form(logits((5, 11),
                                                                              np.float64, 2),
                                                                       "probs")
    kw = dict(kwargs)
    if kw.get("axis") == 0:
        p, q = p.T.copy(), q.T.copy()
        kw["where"] = np.array([True, False, True, True, False])
    got = np.ravel(klfast.kl(p, q, **kw))
    rows = (p.T, q.T) if kw.get("axis") == 0 else (p, q)
    want = _reference.kl(*rows)
    mask = np.broadcast_to(np.ravel(kw["where"]), (5,))
    np.testing.assert_allclose(got[mask], want[mask], rtol=1e-13)
    assert np.isnan(got[~mask]).all()


def test_a_jensen_shannon_distance_with_where_keeps_the_rows_left_out():
    p, q = as_form(logits((6, 11), np.float64, 1), "probs"), as_form(logits((6, 11),
                                                                              np.float64, 2),
                                                                       "probs")
    mask = np.array([True, False] * 3)
    out = np.full(6, 4.0)
    klfast.jensen_shannon(p, q, distance=True, where=mask, out=out)
    assert (out[~mask] == 4.0).all()
    np.testing.assert_allclose(out[mask], np.sqrt(_reference.jensen_shannon(p, q)[mask]),
                               rtol=1e-13)


# ---- the losses ------------------------------------------------------------
LOSS_CASES = [  # keywords beside target and logits
    {}, {"reduction": "none"}, {"reduction": "sum"}, {"temperature": 2.5},
    {"target_is_logits": True}, {"input": "logits", "temperature": 0.5},
    {"input": ("log_probs", "logits")}, {"input": ("probs", "logits"), "eps": 1e-9},
]


def loss_target(kw, shape, dtype):
    z = logits(shape, dtype, 7)
    if kw.get("target_is_logits") or kw.get("input") == "logits":
        return z
    if kw.get("input") == ("log_probs", "logits"):
        return as_form(z, "log_probs")
    return as_form(z, "probs")


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("kw", LOSS_CASES)
@pytest.mark.parametrize("shape", [(10,), (32, 10), (4, 8, 10)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_losses_take_the_shortcut_and_match_the_twin(name, kw, shape, dtype, no_general_path):
    target, z = loss_target(kw, shape, dtype), logits(shape, dtype, 8)
    want, want_grad = getattr(_reference, name)(target, z, return_grad=True, **kw)
    got, grad = getattr(klfast, name)(target, z, return_grad=True, **kw)
    assert isinstance(got, np.ndarray) == isinstance(want, np.ndarray)
    assert np.shape(got) == np.shape(want)
    assert np.asarray(got).dtype == dtype and grad.dtype == dtype and grad.shape == z.shape
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(grad, want_grad, rtol=TOL[dtype], atol=TOL[dtype])
    # without the gradient, and into a caller's gradient array
    np.testing.assert_array_equal(getattr(klfast, name)(target, z, **kw), got)
    grad_out = np.full(z.shape, np.nan, dtype=dtype)
    value, g = getattr(klfast, name)(target, z, return_grad=True, grad_out=grad_out, **kw)
    assert g is grad_out
    np.testing.assert_array_equal(value, got)
    np.testing.assert_array_equal(grad_out, grad)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_target_for_every_row_takes_the_shortcut(name, dtype, no_general_path):
    target, z = as_form(logits((10,), dtype, 7), "probs"), logits((32, 10), dtype, 8)
    got, grad = getattr(klfast, name)(target, z, return_grad=True, reduction="none")
    want, want_grad = getattr(_reference, name)(np.tile(target, (32, 1)), z, return_grad=True,
                                                reduction="none")
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(grad, want_grad, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [5, 7_000])
def test_losses_give_the_general_paths_bits(name, dtype, n):
    """The shortcut and the general path give the same loss and gradient
    bits, on 1, 2 and the default number of threads."""
    target, z = as_form(logits((n, 11), dtype, 7), "probs"), logits((n, 11), dtype, 8)
    fn = getattr(klfast, name)
    for reduction in ("none", "mean"):
        with general_path():
            want, want_grad = fn(target, z, return_grad=True, reduction=reduction,
                                 temperature=2.0)
        for num_threads in (1, 2, None):
            got, grad = fn(target, z, return_grad=True, reduction=reduction, temperature=2.0,
                           num_threads=num_threads)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(grad, want_grad)


def test_large_losses_take_the_shortcut(no_general_path):
    target, z = as_form(logits((7_000, 11), np.float64, 7), "probs"), logits((7_000, 11),
                                                                               np.float64, 8)
    got = klfast.kl_loss(target, z, reduction="none", num_threads=2)
    np.testing.assert_allclose(got, _reference.kl_loss(target, z, reduction="none"),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [6, 7_000])
def test_losses_with_where_take_the_shortcut(name, dtype, n, monkeypatch):
    """where= as a bool array of the rows' shape (padding left out) takes
    the shortcut: the general path's bits, the twin's values on the rows
    included, NaN and a gradient of 0 on the others, the mean over the rows
    included."""
    target, z = as_form(logits((n, 11), dtype, 7), "probs"), logits((n, 11), dtype, 8)
    mask = np.arange(n) % 3 != 1
    fn = getattr(klfast, name)
    with general_path():
        general = {reduction: fn(target, z, return_grad=True, reduction=reduction,
                                 temperature=2.0, where=mask)
                   for reduction in ("none", "sum", "mean")}

    def refuse(*args, **kwargs):
        raise AssertionError("the call left the C shortcut")
    monkeypatch.setattr(klfast._core.engine, "run", refuse)
    for reduction, (want, want_grad) in general.items():
        got, grad = fn(target, z, return_grad=True, reduction=reduction, temperature=2.0,
                       where=mask)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(grad, want_grad)
    rows, grad = fn(target, z, return_grad=True, reduction="none", where=mask)
    assert np.isnan(rows[~mask]).all() and (grad[~mask] == 0).all()
    want, want_grad = getattr(_reference, name)(target[mask], z[mask], return_grad=True,
                                                reduction="none")
    np.testing.assert_allclose(rows[mask], want, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(grad[mask], want_grad, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(fn(target, z, where=mask), want.mean(), rtol=TOL[dtype])


@pytest.mark.parametrize("name", LOSSES)
def test_losses_with_other_masks(name, no_general_path):
    """A mask of every row's shape in 3 dimensions, and one that leaves out
    every row (the mean of no rows is NaN, every gradient row 0)."""
    target, z = as_form(logits((4, 8, 10), np.float64, 7), "probs"), logits((4, 8, 10),
                                                                              np.float64, 8)
    mask = np.zeros((4, 8), dtype=bool)
    mask[1:3, ::2] = True
    fn = getattr(klfast, name)
    got = fn(target, z, reduction="none", where=mask)
    want = getattr(_reference, name)(target[mask], z[mask], reduction="none")
    np.testing.assert_allclose(got[mask], want, rtol=1e-13)
    assert np.isnan(got[~mask]).all()
    value, grad = fn(target, z, return_grad=True, where=np.zeros((4, 8), dtype=bool))
    assert np.isnan(value) and (grad == 0).all()


@pytest.mark.parametrize("where, error", [
    (np.ones(8, dtype=bool), None),  # broadcast against (4, 8)
    ([True] * 8, None),  # a list, broadcast
    (np.ones((4, 8), dtype=int), TypeError),
    (np.ones((4, 9), dtype=bool), ValueError),
])
def test_other_loss_masks(where, error):
    target, z = as_form(logits((4, 8, 10), np.float64, 7), "probs"), logits((4, 8, 10),
                                                                              np.float64, 8)
    if error is None:
        np.testing.assert_array_equal(klfast.kl_loss(target, z, reduction="none", where=where),
                                      klfast.kl_loss(target, z, reduction="none"))
        return
    with pytest.raises(error, match="where"):
        klfast.kl_loss(target, z, where=where)


@pytest.mark.parametrize("over", ["target", "logits"])
def test_a_grad_out_over_an_input_leaves_the_shortcut(over):
    """grad_out over an input's memory: the general path computes the
    gradient apart and copies it, so the values are those of a separate one."""
    target, z = as_form(logits((6, 10), np.float64, 7), "probs"), logits((6, 10), np.float64, 8)
    want, want_grad = klfast.kl_loss(target, z, return_grad=True)
    target, z = target.copy(), z.copy()
    grad_out = target if over == "target" else z
    value, grad = klfast.kl_loss(target, z, return_grad=True, grad_out=grad_out)
    assert grad is grad_out
    assert value == want
    np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"grad_out": np.empty((4, 10))}, ValueError, "grad_out needs return_grad=True"),
    ({"return_grad": True, "grad_out": np.empty((4, 9))}, ValueError, "grad_out"),
    ({"return_grad": True, "grad_out": np.empty((4, 10), np.float32)}, ValueError, "grad_out"),
    ({"reduction": "batchmean"}, ValueError, "reduction must be"),
    ({"reduction": np.array(["mean"])}, ValueError, "reduction must be"),
    ({"input": ("logits", "probs")}, ValueError, "input for logits must be 'logits'"),
    ({"input": ("probs", "logits"), "target_is_logits": True}, ValueError, "contradicts"),
    ({"temperature": -1.0}, ValueError, "temperature must be finite"),
    ({"return_grad": 1}, TypeError, "return_grad"),
])
def test_loss_arguments_are_still_checked(kwargs, error, match):
    target, z = as_form(logits((4, 10), np.float64, 7), "probs"), logits((4, 10), np.float64, 8)
    with pytest.raises(error, match=match):
        klfast.kl_loss(target, z, **kwargs)


@pytest.mark.parametrize("n", [3, 7_000])
def test_invalid_loss_rows_are_explained(n):
    target, z = as_form(logits((n, 10), np.float64, 7), "probs"), logits((n, 10), np.float64, 8)
    z[n - 1, 2] = np.nan
    with pytest.raises(ValueError, match=rf"logits: row {n - 1}"):
        klfast.kl_loss(target, z)
