"""Calls with keywords: the C shortcut (klfast._kernels.fast) takes
``axis``, ``base``, ``keepdims`` and ``out`` as well as the plain call, small
or large (threads), and gives exactly what the general path gives: the same
values (as the slow twin), the same result type and shape, ``out``
returned."""
import contextlib
import itertools
import math

import numpy as np
import pytest

import klfast
import klfast._core.engine
from klfast._core import reference as _reference
from zoo import general_path

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
@pytest.mark.parametrize("n", [4, 7_000])  # a small call and a large one
def test_an_out_sharing_memory_with_an_input_leaves_the_shortcut(out_of, n):
    """out= laid over an input's memory: the general path computes into a
    fresh array and copies, so the values are those of a separate out."""
    p, q = inputs((n, 11), np.float64)
    want = klfast.kl(p, q, base=2)
    source = (p if out_of == "p" else q).copy()
    pp, qq = (source, q) if out_of == "p" else (p, source)
    out = source.reshape(-1)[:n]  # contiguous, over the input's first rows
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


def small_layouts(k, n, dtype):
    """(name, p, q, axis, reference inputs as (n, k) rows) for small calls
    whose distributions are columns, strided, reversed or broadcast."""
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(k), size=2 * n).astype(dtype)  # (2n, k) rows
    q = rng.dirichlet(np.ones(k), size=2 * n).astype(dtype)
    pt, qt = p.T.copy(), q.T.copy()  # (k, 2n): distributions in columns
    return [
        ("columns", pt[:, :n], qt[:, :n], 0, p[:n], q[:n]),
        ("columns, axis=-2", pt[:, :n], qt[:, :n], -2, p[:n], q[:n]),
        ("one column", pt[:, :1], qt[:, :1], 0, p[:1], q[:1]),
        ("transposed view", p[:n].T, q[:n].T, 0, p[:n], q[:n]),
        ("Fortran rows", np.asfortranarray(p[:n]), np.asfortranarray(q[:n]), -1, p[:n], q[:n]),
        ("every other column", pt[:, ::2], qt[:, ::2], 0, p[::2], q[::2]),
        ("every other row", p[::2], q[::2], -1, p[::2], q[::2]),
        ("reversed rows", p[::-1], q[::-1], -1, p[::-1], q[::-1]),
        ("reversed elements", p[:n, ::-1], q[:n, ::-1], 1, p[:n, ::-1], q[:n, ::-1]),
        ("reversed columns", pt[::-1, :n], qt[::-1, :n], 0, p[:n, ::-1], q[:n, ::-1]),
        ("strided 1-D", p[0, ::1], q.T[:, 0], 0, p[:1], q[:1]),
        ("a reference row", p[:n], q[0], -1, p[:n], np.tile(q[0], (n, 1))),
        ("a reference column", pt[:, :n], qt[:, :1], 0, p[:n], np.tile(q[0], (n, 1))),
        ("a broadcast p row", p[:1], q[:n], 1, np.tile(p[0], (n, 1)), q[:n]),
    ]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k, n", [(11, 1), (11, 5), (10, 70), (130, 3)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("use_out", [False, True])
def test_any_layout_takes_the_shortcut(dtype, k, n, keepdims, use_out, no_general_path):
    """Distributions along either axis, any strides (negative, odd), one
    distribution broadcast against the others: the C shortcut, with the
    values scipy.special.rel_entr gives in float64 and numpy's shapes."""
    special = pytest.importorskip("scipy.special")
    tol = 1e-13 if dtype == np.float64 else 2e-6
    for name, p, q, axis, p_rows, q_rows in small_layouts(k, n, dtype):
        want = special.rel_entr(p_rows.astype(np.float64), q_rows.astype(np.float64)).sum(1)
        shape = np.sum(np.broadcast_arrays(p, q)[0], axis=axis, keepdims=keepdims).shape
        kw = {"axis": axis, "keepdims": keepdims, "base": 2.0}
        if use_out:
            out = np.full(shape, np.nan, dtype=dtype)
            got = klfast.kl(p, q, out=out, **kw)
            assert got is out, name
        else:
            got = klfast.kl(p, q, **kw)
        assert np.shape(got) == shape and np.asarray(got).dtype == dtype, name
        np.testing.assert_allclose(np.ravel(got), want / np.log(2), rtol=tol, atol=tol,
                                   err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k, n", [(11, 7_000), (130, 600)])  # 77,000 and 78,000 elements
def test_large_calls_take_the_shortcut_on_threads(dtype, k, n, no_general_path):
    """Calls of 2**16 elements or more, in every layout, take the C shortcut
    too, which runs them on threads as the general path would: the values
    scipy.special.rel_entr gives in float64, the same bits for 1, 2 and the
    default number of threads, out= filled and returned."""
    special = pytest.importorskip("scipy.special")
    tol = 1e-13 if dtype == np.float64 else 2e-6
    for name, p, q, axis, p_rows, q_rows in small_layouts(k, n, dtype):
        want = special.rel_entr(p_rows.astype(np.float64), q_rows.astype(np.float64)).sum(1)
        got = klfast.kl(p, q, axis=axis, base=2.0, num_threads=1)
        np.testing.assert_allclose(np.ravel(got), want / np.log(2), rtol=tol, atol=tol,
                                   err_msg=name)
        for num_threads in (2, None):
            out = np.full(np.shape(got), np.nan, dtype=dtype)
            assert klfast.kl(p, q, axis=axis, base=2.0, num_threads=num_threads,
                             out=out) is out
            np.testing.assert_array_equal(out, got, err_msg=name)


@pytest.mark.parametrize("name", MEASURES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_large_calls_give_the_general_paths_bits(name, dtype, layout):
    """A large call through the shortcut and through the general path give
    the same bits."""
    p, q = inputs((7_000, 11), dtype)
    axis = -1
    if layout == "columns":
        p, q, axis = p.T.copy(), q.T.copy(), 0
    shortcut = call(klfast, name, p, q, axis=axis, keepdims=True)
    with general_path():
        general = call(klfast, name, p, q, axis=axis, keepdims=True)
    np.testing.assert_array_equal(shortcut, general)
    np.testing.assert_allclose(np.ravel(shortcut), call(_reference, name, p, q, axis=axis),
                               rtol=1e-12 if dtype == np.float64 else 2e-5, atol=1e-15)


def nd_layouts(dtype):
    """(name, p, q, axis) for calls of 3 and 4 dimensions the shortcut takes:
    the axes other than ``axis`` one stride (a reshape without a copy)."""
    rng = np.random.default_rng(9)

    def dist(shape, axis=-1):
        x = rng.random(shape) + 0.01
        return (x / x.sum(axis=axis, keepdims=True)).astype(dtype)

    p3, q3 = dist((4, 8, 11)), dist((4, 8, 11))
    c3, d3 = dist((11, 4, 8), 0), dist((11, 4, 8), 0)
    big, big_q = dist((8, 1_000, 11)), dist((8, 1_000, 11))  # 88,000 elements: threads
    return [
        ("3-D", p3, q3, -1),
        ("4-D", dist((2, 3, 4, 11)), dist((2, 3, 4, 11)), 3),
        ("3-D, a 1-D q", p3, q3[0, 0], -1),
        ("3-D, a q of one distribution", p3, q3[:1, :1], -1),
        ("3-D, a p of one distribution", p3[1:2, 2:3], q3, 2),
        ("3-D, reversed outer axes", p3[::-1, ::-1], q3[::-1, ::-1], -1),
        ("3-D, every other row of the last outer axis", p3[:, ::2], q3[:, ::2], -1),
        ("3-D columns, axis 0", c3, d3, 0),
        ("3-D columns, axis -3", c3, d3, -3),
        ("3-D, large", big, big_q, -1),
        ("3-D columns, large", np.moveaxis(big, -1, 0).copy(), np.moveaxis(big_q, -1, 0).copy(),
         0),
    ]


@pytest.mark.parametrize("name", MEASURES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("use_out", [False, True])
def test_more_dimensions_take_the_shortcut(name, dtype, keepdims, use_out, no_general_path):
    """Inputs of 3 and 4 dimensions whose other axes are one stride: the C
    shortcut, with the twin's values and numpy's result shape, out= filled."""
    tol = 1e-13 if dtype == np.float64 else 2e-5
    for label, p, q, axis in nd_layouts(dtype):
        kw = {"axis": axis, "keepdims": keepdims, "base": 2}
        want = call(_reference, name, p, q, **kw)
        if use_out:
            out = np.full(want.shape, np.nan, dtype=dtype)
            assert call(klfast, name, p, q, out=out, **kw) is out, label
            got = out
        else:
            got = call(klfast, name, p, q, **kw)
        assert got.shape == want.shape and got.dtype == dtype, label
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=label)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_more_dimensions_give_the_general_paths_bits(dtype):
    """The shortcut and the general path give the same bits for inputs of
    more dimensions; an axis whose other
    axes are not one stride, and other axes of different shapes, go there as
    before."""
    for label, p, q, axis in nd_layouts(dtype):
        shortcut = klfast.kl(p, q, axis=axis)
        with general_path():
            general = klfast.kl(p, q, axis=axis)
        np.testing.assert_array_equal(shortcut, general, err_msg=label)
    p, q = inputs((4, 8, 11), dtype)
    tol = 1e-13 if dtype == np.float64 else 2e-5
    middle = np.moveaxis(p, -1, 1)  # (4, 11, 8) C-ordered: axes 0 and 2 are not one stride
    np.testing.assert_allclose(klfast.kl(middle.copy(), np.moveaxis(q, -1, 1).copy(), axis=1),
                               _reference.kl(p, q), rtol=tol)
    np.testing.assert_allclose(klfast.kl(p[::2], q[::2]), _reference.kl(p[::2], q[::2]),
                               rtol=tol)  # (every other row of the first axis: nor are they)
    with pytest.raises(ValueError):
        klfast.kl(p, q.reshape(8, 4, 11))


@pytest.mark.parametrize("name", MEASURES)
def test_every_keyword_with_a_column_takes_the_shortcut(name, no_general_path):
    """The 1 x 11 call with every keyword, on an (11, 1) column along axis 0,
    matches the twin on the row."""
    p, q = inputs((1, 11), np.float64)
    out = np.empty((1, 1))
    kw = dict(axis=0, base=2, normalize=True, keepdims=True, out=out, num_threads=1,
              check_sums=True, input="probs", temperature=1.0, where=None)
    if name != "jensen_shannon":
        kw["eps"] = 1e-12
    got = call(klfast, name, p.T, q.T, **kw)
    assert got is out
    want = call(_reference, name, p, q, base=2, normalize=True)
    np.testing.assert_allclose(out[0], want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kw, message", [
    ({"axis": 2}, "axis 2 is out of bounds"),
    ({"axis": -3}, "axis -3 is out of bounds"),
    ({"axis": 0, "out": np.empty(3)}, "out has shape"),
    ({"eps": -1.0}, "eps"),
    ({"num_threads": 0}, "num_threads"),
    ({"keepdims": "yes"}, "keepdims"),
])
def test_small_call_errors_name_the_argument(kw, message):
    """What the shortcut refuses goes to the general path, whose errors name
    the argument."""
    p, q = inputs((2, 11), np.float64)
    with pytest.raises((ValueError, TypeError), match=message):
        klfast.kl(p.T, q.T, **({"axis": 0} | kw))


def test_shape_mismatch_along_axis_0_is_an_error():
    p, q = inputs((3, 11), np.float64)
    with pytest.raises(ValueError, match="same length along axis 0"):
        klfast.kl(p.T, q.T[:10], axis=0)


def counts(shape, seed=5):
    """Counts 0 .. 9 in every row, none all zero (rows that are counts,
    not distributions: normalize=True)."""
    x = np.random.default_rng(seed).integers(0, 10, size=shape)
    x[..., 0] += 1
    return x


# (p's dtype, q's dtype, the dtype computed in and returned: numpy's
# promotion, then float16 -> float32, integers and bool -> float64)
DTYPES = [
    (np.int64, np.int64, np.float64), (np.uint8, np.int32, np.float64),
    (np.bool_, np.int64, np.float64), (np.int8, np.float32, np.float32),
    (np.float16, np.float16, np.float32), (np.float16, np.float64, np.float64),
    (np.float32, np.float64, np.float64), (">f8", ">f8", np.float64), ("<f4", ">f4", np.float32),
    (np.longdouble, np.float64, np.float64),
]


@pytest.mark.parametrize("name", MEASURES)
@pytest.mark.parametrize("p_dtype, q_dtype, dtype", DTYPES)
@pytest.mark.parametrize("shape", [(11,), (3, 11), (2, 4, 6)])
def test_other_real_dtypes_take_the_shortcut(name, p_dtype, q_dtype, dtype, shape):
    """Small inputs of other real dtypes (counts with normalize=True, bool,
    float16, float32 beside float64, byte-swapped) are converted whole and
    scored in C: the dtype the general path returns, the twin's values (in
    float64 from the same converted values), and the general path's bits."""
    p = counts(shape, 5).astype(p_dtype)
    q = counts(shape, 6).astype(q_dtype)
    if p_dtype == np.bool_:
        p = p > 2
        p[..., 0] = True
    if name == "entropy":  # of p alone
        dtype = np.float32 if np.dtype(p_dtype).kind == "f" and np.dtype(p_dtype).itemsize <= 4 \
            else np.float64
    kw = {"normalize": True, "base": 2}
    with shortcut_only():
        got = call(klfast, name, p, q, **kw)
    assert np.asarray(got).dtype == dtype
    want = call(_reference, name, p.astype(dtype).astype(np.float64),
                q.astype(dtype).astype(np.float64), **kw)
    tol = 1e-13 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    with general_path():
        general = call(klfast, name, p, q, **kw)
    np.testing.assert_array_equal(got, general)


@contextlib.contextmanager
def shortcut_only():
    """Within it, a call that reaches the Python row engine fails."""
    real = klfast._core.engine.run
    klfast._core.engine.run = refused
    try:
        yield
    finally:
        klfast._core.engine.run = real


def refused(*args, **kwargs):
    raise AssertionError("the call left the C shortcut")


@pytest.mark.parametrize("shape, dtype", [((7_000, 11), np.int64), ((6_000, 11), np.uint8),
                                          ((64, 100), np.float16)])
def test_larger_inputs_of_other_dtypes_take_the_general_path(monkeypatch, shape, dtype):
    """Past the small size (float16: 4,096 elements), other dtypes go to the
    general path, which converts them a block at a time (no copy of the
    input's size) or reads float16 rows as they are: the twin's values."""
    ran = []
    real = klfast._core.engine.run
    monkeypatch.setattr(klfast._core.engine, "run",
                        lambda *args, **kw: ran.append(1) or real(*args, **kw))
    p, q = counts(shape, 5).astype(dtype), counts(shape, 6).astype(dtype)
    got = klfast.kl(p, q, normalize=True)
    assert ran and got.dtype == (np.float32 if dtype == np.float16 else np.float64)
    want = _reference.kl(p.astype(float), q.astype(float), normalize=True)
    tol = 2e-5 if dtype == np.float16 else 1e-13
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("p, q, error, match", [
    (np.ones(4, complex), np.ones(4), TypeError, "p must hold real numbers"),
    (np.ones(4), np.array(["a"] * 4), TypeError, "q must hold real numbers"),
    (np.arange(4), np.arange(4), ValueError, "sums to 6"),  # counts without normalize
])
def test_other_dtypes_still_give_the_general_paths_errors(p, q, error, match):
    with pytest.raises(error, match=match):
        klfast.kl(p, q)


def masks_of_every_form(n_outer):
    """(label, where, keepdims, the bool mask it means) for results of shape
    n_outer (2-D: (4, 6)); each where= the shortcut takes."""
    rng = np.random.default_rng(11)
    full = rng.random(n_outer) < 0.6
    row = rng.random(n_outer[-1]) < 0.6
    wider = np.zeros((n_outer[0], 2 * n_outer[1]), bool)
    wider[:, ::2] = full
    return [
        ("a list", full.tolist(), False, full),
        ("a tuple of lists", tuple(full.tolist()), False, full),
        ("True", True, False, np.ones(n_outer, bool)),
        ("numpy False", np.False_, False, np.zeros(n_outer, bool)),
        ("a row broadcast", row, False, np.broadcast_to(row, n_outer)),
        ("a column broadcast, as a list", full[:, :1].tolist(), False,
         np.broadcast_to(full[:, :1], n_outer)),
        ("every other element of a wider mask", wider[:, ::2], False, full),
        ("the kept shape", full[..., None], True, full),
        ("a row of the kept shape", row[:, None], True, np.broadcast_to(row, n_outer)),
    ]


@pytest.mark.parametrize("name", MEASURES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("input", ["probs", "logits"])
def test_masks_of_every_form_take_the_shortcut(name, dtype, input):
    """where= as a list, a tuple, a bool, a mask that broadcasts, a view,
    or of keepdims' kept shape: the rows it includes score as the twin's,
    the others are NaN, and the bits are the general path's."""
    p, q = inputs((4, 6, 11), dtype)
    if input == "logits":
        p, q = np.log(p), np.log(q)
    for label, where, keepdims, mask in masks_of_every_form((4, 6)):
        with shortcut_only():
            got = call(klfast, name, p, q, where=where, keepdims=keepdims, input=input)
        rows = got[..., 0] if keepdims else got
        assert rows.shape == (4, 6), label
        assert np.isnan(rows[~mask]).all(), label
        if mask.any():
            want = call(_reference, name, p[mask], q[mask], input=input)
            tol = 1e-13 if dtype == np.float64 else 2e-5
            np.testing.assert_allclose(rows[mask], want, rtol=tol, atol=tol, err_msg=label)
        with general_path():
            general = call(klfast, name, p, q, where=where, keepdims=keepdims, input=input)
        np.testing.assert_array_equal(got, general, err_msg=label)


@pytest.mark.parametrize("loss", ["kl_loss", "cross_entropy_loss"])
def test_loss_masks_of_every_form_take_the_shortcut(loss, no_general_path):
    """The losses' where= in the same forms: the mean is over the rows
    included (math.fsum of the twin's rows), their gradient rows only."""
    rng = np.random.default_rng(12)
    target = rng.dirichlet(np.ones(9), size=(4, 6))
    logits = rng.standard_normal((4, 6, 9))
    fn = getattr(klfast, loss)
    for label, where, keepdims, mask in masks_of_every_form((4, 6)):
        if keepdims:
            continue  # (the losses have no keepdims)
        value, grad = fn(target, logits, where=where, return_grad=True)
        assert (grad[~mask] == 0).all(), label
        if not mask.any():
            assert np.isnan(value), label
            continue
        rows, want_grad = getattr(_reference, loss)(target[mask], logits[mask],
                                                    reduction="none", return_grad=True)
        np.testing.assert_allclose(value, math.fsum(rows) / mask.sum(), rtol=1e-13,
                                   err_msg=label)
        np.testing.assert_allclose(grad[mask], want_grad / mask.sum(), rtol=1e-12, atol=1e-15,
                                   err_msg=label)


@pytest.mark.parametrize("where, error, match", [
    ([1, 0, 1], TypeError, "where must be bool"),
    ([True, False], ValueError, r"where of shape \(2,\) does not broadcast"),
    (np.ones((3, 1, 1), bool), ValueError, "does not broadcast"),
])
def test_bad_masks_still_give_the_general_paths_errors(where, error, match):
    p, q = inputs((3, 11), np.float64)
    with pytest.raises(error, match=match):
        klfast.kl(p, q, where=where)


class Tagged(np.ndarray):
    """An ndarray subclass (as np.memmap is one)."""


def test_ndarray_subclasses_take_the_shortcut():
    """An ndarray subclass is read as the plain array it views (np.asarray,
    as the general path reads it): the twin's values, the general path's
    bits; a masked array is still refused."""
    p, q = inputs((32, 11), np.float64)
    tp, tq = p.view(Tagged), q.view(Tagged)
    with shortcut_only():
        got = klfast.kl(tp, tq)
        loss = klfast.kl_loss(tp, np.log(tq))
    assert type(got) is np.ndarray
    np.testing.assert_allclose(got, _reference.kl(p, q), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(loss, _reference.kl_loss(p, np.log(q)), rtol=1e-13)
    with general_path():
        np.testing.assert_array_equal(got, klfast.kl(tp, tq))
        assert klfast.kl_loss(tp, np.log(tq)) == loss
    with pytest.raises(TypeError, match="p is a numpy.ma.MaskedArray"):
        klfast.kl(np.ma.masked_array(p), q)
