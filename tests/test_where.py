"""where=: the rows to score. Rows left out are never read (garbage in them
raises nothing), never counted (a loss's mean divides by the rows included),
are NaN in a new result and untouched in a caller's out; the rows included
score exactly as the same rows alone, and match the slow twin."""
import contextlib

import numpy as np
import pytest
import scipy.special

import klfast
from klfast._core import engine
from zoo import assert_unchanged, call, call_ref, distributions, general_path, snapshot

MEASURES = ("kl", "jeffreys", "entropy", "cross_entropy", "jensen_shannon")


def poisoned(x, mask, rng):
    """x with the rows left out by mask full of invalid values."""
    x = x.copy()
    bad = np.flatnonzero(~mask)
    x[bad] = rng.choice([np.nan, -1.0, np.inf, 7.0], size=(len(bad), x.shape[1]))
    return x


# runs of included rows (scored in place) and scattered rows (by index, or gathered)
MASKS = {
    "runs": lambda n, rng: np.repeat(rng.random(n // 50 + 1) < 0.6, 50)[:n],
    "scattered": lambda n, rng: rng.random(n) < 0.5,
    "none": lambda n, rng: np.zeros(n, bool),
    "all": lambda n, rng: np.ones(n, bool),
}


@pytest.fixture(params=["runs in place", "indexed", "gathered"])
def path(request, monkeypatch):
    """Runs of included rows scored in place; every row read where it is by
    the kernels through an index; or every row gathered into blocks (inputs
    the kernels cannot read as they are)."""
    monkeypatch.setattr(engine, "RUN_COST", 0 if request.param == "runs in place" else 10**12)
    if request.param == "gathered":
        monkeypatch.setattr(engine, "_run_indexed", lambda *args: False)


def test_scattered_rows_are_read_in_place(rng, monkeypatch):
    """Scattered rows the kernels can read go through the index (the
    "indexed" path above is not the gathered one under another name)."""
    monkeypatch.setattr(engine, "RUN_COST", 10**12)
    taken = []
    real = engine._run_indexed
    monkeypatch.setattr(engine, "_run_indexed", lambda *args: taken.append(real(*args)) or taken[-1])
    mask = rng.random(500) < 0.5
    p, q = distributions(rng, (500, 40)), distributions(rng, (500, 40))
    logits = rng.standard_normal((500, 40)).astype(np.float16)
    # (the C shortcut reads the rows through an index of its own)
    with general_path():
        klfast.kl(p, q, where=mask.tolist(), num_threads=2)
        klfast.jeffreys(p.astype(np.float32), q.astype(np.float32), where=mask)
        klfast.kl(logits, logits[::-1], input="logits", where=mask, num_threads=2)
        klfast.kl_loss(p, np.log(q + 0.01), where=mask, num_threads=2)
    assert taken == [True] * 4


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("mask_kind", sorted(MASKS))
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("route", ["shortcut", "list", "general"])  # (a list: the shortcut too)
def test_included_rows_as_alone_and_the_rest_never_read(rng, path, measure, dtype, mask_kind,
                                                        num_threads, route):
    n, k = 600, 40
    p = distributions(rng, (n, k)).astype(dtype)
    q = distributions(rng, (n, k)).astype(dtype)
    mask = MASKS[mask_kind](n, rng)
    pp, qq = poisoned(p, mask, rng), poisoned(q, mask, rng)
    before = snapshot(pp), snapshot(qq)
    with general_path() if route == "general" else contextlib.nullcontext():
        got = call(measure, pp, qq, where=mask.tolist() if route == "list" else mask,
                   num_threads=num_threads)
    assert_unchanged(before[0], snapshot(pp))
    assert_unchanged(before[1], snapshot(qq))
    assert got.shape == (n,) and np.isnan(got[~mask]).all()
    if mask.any():
        alone = call(measure, p[mask], q[mask], num_threads=num_threads)
        assert np.array_equal(got[mask], alone)
        twin = call_ref(measure, p[mask].astype(np.float64), q[mask].astype(np.float64),
                        check_sums=False)
        tol = 1e-12 if dtype == np.float64 else 2e-5
        np.testing.assert_allclose(got[mask], twin, rtol=tol, atol=tol)
    # the twin's where= (the same rule, in numpy) gives NaN at the same rows
    twin_where = call_ref(measure, pp.astype(np.float64), qq.astype(np.float64), where=mask,
                          check_sums=False)
    np.testing.assert_allclose(got, twin_where, rtol=2e-5, atol=2e-5, equal_nan=True)


@pytest.mark.parametrize("mask_kind", ["runs", "scattered"])
def test_an_invalid_included_row_is_named(rng, path, mask_kind):
    n = 300
    p = distributions(rng, (n, 30))
    q = distributions(rng, (n, 30))
    mask = MASKS[mask_kind](n, rng)
    row = int(np.flatnonzero(mask)[7])
    p = poisoned(p, mask, rng)
    p[row, 4] = -0.5
    with pytest.raises(ValueError, match=f"p: row {row} has a negative entry"):
        klfast.kl(p, q, where=mask)


def test_columns_nd_and_broadcast_masks(rng):
    p = distributions(rng, (7, 5, 40))
    q = distributions(rng, (7, 5, 40))
    mask = rng.random((7, 1)) < 0.5  # broadcast against the (7, 5) result
    got = klfast.kl(p, q, where=mask)
    full = klfast.kl(p, q)
    wide = np.broadcast_to(mask, (7, 5))
    assert np.array_equal(got[wide], full[wide]) and np.isnan(got[~wide]).all()
    # distributions in columns: axis=0 of the (40, 35) arrays
    cols_p, cols_q = p.reshape(35, 40).T, q.reshape(35, 40).T
    flat = wide.reshape(35)
    got = klfast.kl(np.ascontiguousarray(cols_p), np.ascontiguousarray(cols_q), axis=0,
                    where=flat)
    assert np.array_equal(got[flat], full.reshape(35)[flat])
    assert np.array_equal(klfast.kl(p, q, where=True), full)
    assert np.isnan(klfast.kl(p, q, where=False)).all()


def test_out_keepdims_distance_and_forms(rng):
    p = distributions(rng, (50, 64))
    q = distributions(rng, (50, 64))
    mask = rng.random(50) < 0.5
    out = np.full(50, -7.0)
    assert klfast.jensen_shannon(p, q, distance=True, where=mask, out=out) is out
    np.testing.assert_array_equal(out[~mask], -7.0)
    want = np.sqrt(call_ref("jensen_shannon", p[mask], q[mask]))
    np.testing.assert_allclose(out[mask], want, rtol=1e-12)
    kept = klfast.kl(p, q, keepdims=True, where=mask[:, None])
    assert kept.shape == (50, 1) and np.isnan(kept[~mask, 0]).all()
    # logits, scaled by a temperature
    za, zb = rng.normal(size=(50, 64)), rng.normal(size=(50, 64))
    got = klfast.kl(za, zb, input="logits", temperature=2.0, where=mask)
    lp = scipy.special.log_softmax(za[mask] / 2, axis=-1)
    lq = scipy.special.log_softmax(zb[mask] / 2, axis=-1)
    np.testing.assert_allclose(got[mask], (np.exp(lp) * (lp - lq)).sum(-1), rtol=1e-12)
    assert np.isnan(got[~mask]).all()


@pytest.mark.parametrize("loss", ["kl_loss", "cross_entropy_loss"])
@pytest.mark.parametrize("mask_kind", sorted(MASKS))
@pytest.mark.parametrize("route", ["shortcut", "list", "general"])
def test_losses_count_only_the_included_rows(rng, path, loss, mask_kind, route, monkeypatch):
    n, k = 200, 30
    target = distributions(rng, (n, k))
    logits = rng.normal(size=(n, k))
    mask = MASKS[mask_kind](n, rng)
    where = mask.tolist() if route == "list" else mask
    if route == "general":
        general_path(monkeypatch)
    fn = getattr(klfast, loss)
    logits_in = logits.copy()
    logits_in[~mask] = np.nan  # padding: never read
    value, grad = fn(target, logits_in, where=where, return_grad=True)
    lq = scipy.special.log_softmax(logits[mask], axis=-1)
    t = target[mask]
    per_row = -(t * lq).sum(-1)
    if loss == "kl_loss":
        per_row += (scipy.special.xlogy(t, t)).sum(-1)
    if mask.any():
        np.testing.assert_allclose(value, per_row.mean(), rtol=1e-12)
        want_grad = (np.exp(lq) - t) / mask.sum()
        np.testing.assert_allclose(grad[mask], want_grad, rtol=1e-10, atol=1e-15)
    else:
        assert np.isnan(value)
    assert (grad[~mask] == 0).all()
    rows = fn(target, logits_in, where=where, reduction="none")
    assert np.isnan(rows[~mask]).all()
    np.testing.assert_allclose(rows[mask], per_row, rtol=1e-12)
    np.testing.assert_allclose(fn(target, logits_in, where=where, reduction="sum"),
                               per_row.sum(), rtol=1e-12)


def test_bad_masks_are_refused(rng):
    p = distributions(rng, (10, 8))
    with pytest.raises(TypeError, match="where must be bool.*int64"):
        klfast.kl(p, p, where=np.ones(10, dtype=np.int64))
    with pytest.raises(ValueError, match=r"where of shape \(9,\) does not broadcast"):
        klfast.kl(p, p, where=np.ones(9, bool))
    with pytest.raises(TypeError, match="where is a numpy.ma.MaskedArray"):
        klfast.entropy(p, where=np.ma.masked_array(np.ones(10, bool)))
    with pytest.raises(ValueError, match="where of shape"):
        klfast.kl_loss(p, p, where=np.ones(3, bool))


@pytest.mark.parametrize("route", ["shortcut", "general"])
def test_keepdims_masks_broadcast_against_the_kept_shape(rng, route, monkeypatch):
    """With keepdims=True, where= broadcasts against the result's shape, kept
    axis included (numpy's rule): a (4, 1) mask of a (4, 4, 1) result names
    the second axis, not the first. A mask of the rows' shape is taken too."""
    if route == "general":
        general_path(monkeypatch)
    p, q = distributions(rng, (4, 4, 12)), distributions(rng, (4, 4, 12))
    full = klfast.kl(p, q, keepdims=True)
    pick = np.array([True, False, False, True])
    got = klfast.kl(p, q, keepdims=True, where=pick[:, None])
    want = np.where(pick[None, :, None], full, np.nan)  # row (i, j) kept where pick[j]
    np.testing.assert_array_equal(got, want)
    rows_mask = rng.random((4, 4)) < 0.5  # the rows' shape, beside keepdims
    got = klfast.kl(p, q, keepdims=True, where=rows_mask)
    np.testing.assert_array_equal(got, np.where(rows_mask[..., None], full, np.nan))
    # columns, keepdims at axis 0: (1, 4, 4); a (4, 1) mask names the first outer axis
    cols_p, cols_q = np.moveaxis(p, -1, 0), np.moveaxis(q, -1, 0)
    got = klfast.kl(cols_p, cols_q, axis=0, keepdims=True, where=pick[:, None])
    np.testing.assert_array_equal(got[0], np.where(pick[:, None], full[..., 0], np.nan))
