"""Every public function against its slow twin (klfast._core.reference), over
dtype x layout (zoo.layouts) x num_threads x instruction-set level, and the
same invalid inputs raise in both.

The full grid is about 1,300 cases; all but a covering subset are marked slow.
The subset (``pytest -m "not slow"``) still runs every function in every
layout at every level, both dtypes and both thread counts, which take turns
along the layouts (see ``grid``)."""
import numpy as np
import pytest

import klfast
from klfast._core import reference as _reference
from zoo import LAYOUT_NAMES, distributions, layouts

pytestmark = pytest.mark.usefixtures("isa")  # every instruction-set level

MEASURES = ("kl", "jeffreys", "entropy", "cross_entropy", "jensen_shannon")
LOSSES = ("kl_loss", "cross_entropy_loss")
DTYPES = [np.float64, np.float32]
THREADS = [1, 2]
# 260 x 257 = 66,820 elements: above klfast's MIN_PARALLEL_ELEMENTS (65,536),
# so num_threads=2 really runs two threads.
N, K = 260, 257


def test_twin_has_klfast_signatures_and_constants():
    import inspect
    for name in MEASURES + LOSSES:
        assert (inspect.signature(getattr(_reference, name))
                == inspect.signature(getattr(klfast, name))), name
    assert _reference.SUM_TOLERANCE == klfast.SUM_TOLERANCE
    assert _reference.DEFAULT_EPS == klfast.DEFAULT_EPS


def _data(dtype):
    """p, q rows summing to 1 with exact zeros, entries below the default eps,
    and entries equal in p and q (jeffreys' zero terms); logits and targets."""
    rng = np.random.default_rng(14)
    p = distributions(rng, (N, K))
    q = distributions(rng, (N, K))
    p[::3, 7] = 1e-14   # below eps: p~ = eps
    q[::2, 9] = 3e-13
    q[::4, 11] = 0.0    # p > 0 against q == 0
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    q[1::5, :20] = p[1::5, :20]  # p == q terms; the rest permuted: rows still sum to 1
    q[1::5, 20:] = p[1::5, 20:][:, ::-1]
    z = rng.normal(size=(N, K)) * 3
    t_logits = rng.normal(size=(N, K)) * 2
    return p.astype(dtype), q.astype(dtype), z.astype(dtype), t_logits.astype(dtype)


_CACHE = {}


def data(dtype):
    if dtype not in _CACHE:
        _CACHE[dtype] = _data(dtype)
    return _CACHE[dtype]


def views(a, name):
    return next((x, axis) for n, x, axis in layouts(a) if n == name)


def term_scale(fn_name, p, q):
    """1 + sum over a row of |p log p~| + |p log q~| + |q log p~| + |q log q~|:
    float32 terms each carry about 1e-7 relative error, their sum this much times it."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    lp = np.abs(np.log(np.maximum(p, 1e-12)))
    lq = np.abs(np.log(np.maximum(q, 1e-12)))
    return 1.0 + np.sum((p + q) * (lp + lq), axis=-1)


def assert_matches(got, want, dtype, scale):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape
    assert np.isfinite(got).all() and np.isfinite(want).all()
    if dtype == np.float64:
        bound = 1e-12 * np.abs(want) + 1e-15
    else:
        bound = 1e-6 * scale
    err = np.abs(got - want)
    bad = err > bound
    assert not bad.any(), (f"{int(bad.sum())} of {bad.size} differ; worst |diff| "
                           f"{err.max():.3g}, bound there {bound.flat[np.argmax(err)]:.3g}")


def call(lib, name, p, q, **kw):
    fn = getattr(lib, name)
    return fn(p, **kw) if name == "entropy" else fn(p, q, **kw)


def grid(names, kinds=None):
    """(name, [kind,] dtype, layout, num_threads) over the whole grid, as pytest
    params; a case is marked slow unless it is the one its (name, layout)
    keeps fast. Along the layouts, offset by the name's index, the fast case
    takes dtype, thread count and kind in turns (i % 2, i // 2 % 2, i // 4 %
    2), so the fast subset has every name in every layout, and each name both
    dtypes, both thread counts and both kinds."""
    params = []
    for n, name in enumerate(names):
        for j, layout in enumerate(LAYOUT_NAMES):
            i = j + n
            fast = (DTYPES[i % 2], THREADS[i // 2 % 2], kinds and kinds[i // 4 % len(kinds)])
            for kind in kinds or (None,):
                for dtype, dtype_id in zip(DTYPES, ["float64", "float32"]):
                    for num_threads in THREADS:
                        marks = () if (dtype, num_threads, kind) == fast else pytest.mark.slow
                        values = (name,) + ((kind,) if kinds else ()) + (dtype, layout,
                                                                         num_threads)
                        ids = [name] + ([KIND_IDS[kind]] if kinds else []) + \
                            [dtype_id, layout, str(num_threads)]
                        params.append(pytest.param(*values, marks=marks, id="-".join(ids)))
    return params


KIND_IDS = {False: "probs", True: "teacher"}


@pytest.mark.parametrize("name, dtype, layout, num_threads", grid(MEASURES))
def test_measure_matches_twin(name, dtype, layout, num_threads):
    p, q, _, _ = data(dtype)
    pv, axis = views(p, layout)
    qv, _ = views(q, layout)
    got = call(klfast, name, pv, qv, axis=axis, num_threads=num_threads)
    want = call(_reference, name, pv, qv, axis=axis, num_threads=num_threads)
    assert got.dtype == dtype and want.dtype == np.float64
    assert_matches(got, want, dtype, term_scale(name, p, q if name != "entropy" else p))


@pytest.mark.parametrize("name, target_is_logits, dtype, layout, num_threads",
                         grid(LOSSES, kinds=(False, True)))
def test_loss_matches_twin(name, target_is_logits, dtype, layout, num_threads):
    p, _, z, t_logits = data(dtype)
    tv, axis = views(t_logits if target_is_logits else p, layout)
    zv, _ = views(z, layout)
    kw = dict(temperature=1.7, target_is_logits=target_is_logits, axis=axis,
              num_threads=num_threads)
    for reduction in ("none", "sum", "mean"):
        got, grad = getattr(klfast, name)(tv, zv, reduction=reduction, return_grad=True, **kw)
        want, want_grad = getattr(_reference, name)(tv, zv, reduction=reduction,
                                                    return_grad=True, **kw)
        assert grad.shape == want_grad.shape == zv.shape
        if dtype == np.float64:
            rows_scale = grad_scale = None
        else:  # float32: about 1e-7 of 1 + |loss| per row, summed for sum/mean
            per_row = 1.0 + np.abs(getattr(_reference, name)(tv, zv, reduction="none", **kw))
            rows_scale = {"none": per_row, "sum": per_row.sum(),
                          "mean": per_row.mean()}[reduction] * 10
            grad_scale = 1.0 / 1.7 / (N if reduction == "mean" else 1)
        assert_matches(got, want, dtype, rows_scale)
        if dtype == np.float64:
            np.testing.assert_allclose(grad, want_grad, rtol=1e-12,
                                       atol=1e-13 * np.abs(want_grad).max(), err_msg=reduction)
        else:
            np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-6 * grad_scale,
                                       err_msg=reduction)


# --- keywords (one layout, every level) ----------------------------------

@pytest.mark.parametrize("name", MEASURES)
def test_keywords_match_twin(name):
    p, q, _, _ = data(np.float64)
    p3, q3 = p[:40].reshape(4, 10, K), q[:40].reshape(4, 10, K)
    cases = [dict(base=2), dict(base=0.5), dict(keepdims=True), dict(axis=0, check_sums=False),
             dict(normalize=True), dict(check_sums=False)]
    if name != "jensen_shannon":
        cases += [dict(eps=0.0), dict(eps=1e-3)]
    else:
        cases += [dict(distance=True), dict(distance=True, base=2)]
    for kw in cases:
        a, b = (p3 * 7, q3 * 3) if kw.get("normalize") or kw.get("check_sums") is False \
            else (p3, q3)
        got = call(klfast, name, a, b, **kw)
        want = call(_reference, name, a, b, **kw)
        finite = np.isfinite(want)
        np.testing.assert_array_equal(np.isfinite(got), finite, err_msg=str(kw))
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-15,
                                   err_msg=str(kw))
        out = np.full(np.shape(want), np.nan)
        assert call(_reference, name, a, b, out=out, **kw) is out
        np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_keywords_match_twin(name):
    p, _, z, t = data(np.float64)
    for kw in [dict(temperature=0.3), dict(temperature=10.0, target_is_logits=True),
               dict(eps=0.0), dict(eps=1e-3), dict(eps=1e-3, target_is_logits=True)]:
        for reduction in ("none", "sum", "mean"):
            target = t[:50] if kw.get("target_is_logits") else p[:50]
            got, grad = getattr(klfast, name)(target, z[:50], reduction=reduction,
                                              return_grad=True, **kw)
            want, want_grad = getattr(_reference, name)(target, z[:50], reduction=reduction,
                                                        return_grad=True, **kw)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=str(kw))
            np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-16,
                                       err_msg=str(kw))
    # a single target row broadcast over the logits, classes along axis 0
    got = getattr(klfast, name)(p[0][:, None], z[:4].T, axis=0, reduction="none")
    want = getattr(_reference, name)(p[0][:, None], z[:4].T, axis=0, reduction="none")
    np.testing.assert_allclose(got, want, rtol=1e-12)


# --- the same invalid inputs raise in both --------------------------------

def _bad_inputs():
    p, q, _, _ = data(np.float64)
    p, q = p[:6, :8] / p[:6, :8].sum(1, keepdims=True), q[:6, :8] / q[:6, :8].sum(1, keepdims=True)

    def edit(x, value, row=3, col=2):
        x = x.copy()
        x[row, col] = value
        return x
    yield "negative p", edit(p, -0.1), q
    yield "negative q", p, edit(q, -1e-300)
    yield "NaN p", edit(p, np.nan), q
    yield "NaN q", p, edit(q, np.nan)
    yield "inf q", p, edit(q, np.inf)
    yield "p row sums to 1.01", edit(p, p[3, 2] + 0.01), q
    yield "q row sums to 0.99", p, edit(q, q[3, 2] - 0.01) if q[3, 2] >= 0.01 else edit(q, 0, 3, 0)
    yield "counts", p * 10, q
    yield "zero row", edit(edit(p, 0.0, 3, slice(None)), 0.0), q
    yield "shapes (6, 8) and (5, 8)", p, q[:5]
    yield "lengths 8 and 7", p, q[:, :7]


@pytest.mark.parametrize("case", list(_bad_inputs()), ids=lambda c: c[0])
@pytest.mark.parametrize("name", MEASURES)
def test_invalid_inputs_raise_in_both(name, case):
    label, p, q = case
    if name == "entropy" and label.endswith((" q", "sums to 0.99")) or \
            name == "entropy" and label.startswith(("shapes", "lengths")):
        p, q = q, p  # entropy reads p only: put the bad input there
        if label.startswith(("shapes", "lengths")):
            pytest.skip("entropy has one input")
    for lib in (klfast, _reference):
        with pytest.raises(ValueError):
            call(lib, name, p, q)
    if label.startswith(("p row", "q row", "counts")):  # the sum check only
        for lib in (klfast, _reference):
            call(lib, name, p, q, check_sums=False)
            call(lib, name, p, q, normalize=True)


def _bad_loss_inputs():
    p, _, z, _ = data(np.float64)
    p, z = p[:6, :8] / p[:6, :8].sum(1, keepdims=True), z[:6, :8]

    def edit(x, value):
        x = x.copy()
        x[3, 2] = value
        return x
    yield "negative target", edit(p, -0.1), z
    yield "NaN target", edit(p, np.nan), z
    yield "inf target", edit(p, np.inf), z
    yield "NaN logits", p, edit(z, np.nan)
    yield "inf logits", p, edit(z, np.inf)
    yield "target rows do not broadcast", p[:5], z
    yield "lengths 7 and 8", p[:, :7], z
    yield "target has more rows than logits", p, z[:1]


@pytest.mark.parametrize("case", list(_bad_loss_inputs()), ids=lambda c: c[0])
@pytest.mark.parametrize("name", LOSSES)
def test_invalid_loss_inputs_raise_in_both(name, case):
    _, target, logits = case
    for lib in (klfast, _reference):
        with pytest.raises(ValueError):
            getattr(lib, name)(target, logits)
