"""The losses (kl_loss, cross_entropy_loss) of short rows of logits (k <= 24),
scored a row per lane (engine/logits_lanes.h): values and gradients against
80-digit mpmath at every instruction-set level, float32 rows to float64's
bound (the lanes compute in float64), and the same bits of both on every
route a row can take, with the rows the lanes decline mixed in."""

import numpy as np
import pytest

import klfast
from zoo import general_path, loss_mpmath

pytestmark = pytest.mark.usefixtures("isa")

LOSSES = {"kl": klfast.kl_loss, "cross_entropy": klfast.cross_entropy_loss}
U = 2.0 ** -53  # float64's unit roundoff


def _kernel_constants(dtype, temperature, eps=klfast.DEFAULT_EPS):
    """1 / T and eps as the losses' lanes take them: float64's 1 / T for
    every dtype, the dtype's eps (float32: the float32 not above eps)."""
    if dtype == np.float64 or eps == 0:
        return 1.0 / temperature, eps
    eps32 = np.float32(eps)
    if float(eps32) > eps:
        eps32 = np.nextafter(eps32, np.float32(0))
    return 1.0 / temperature, float(eps32)


def _targets(rng, n, k, dtype, target_is_logits):
    if target_is_logits:
        return (rng.normal(size=(n, k)) * 2).astype(dtype)
    p = rng.dirichlet(np.full(k, 0.7), n)
    p[::3] = np.eye(k)[rng.integers(0, k, n)][::3]  # one-hot rows (labels)
    p[1::5, 0] = 0.0
    return p.astype(dtype)


def _log_softmax(x, inv_t):
    u = x.astype(np.float64) * inv_t
    u = u - u.max(axis=1, keepdims=True)
    return u - np.log(np.exp(u).sum(axis=1, keepdims=True))


def _bound_logs(t, z, inv_t, eps, target):
    """For the error bounds, in float64: log q (the log-softmax of z / T), and
    the target's p and log p: probabilities (False) as given, log max(p,
    eps); logits (True) softmax(t / T); "log_probs" exp(t), max(t, log eps)."""
    if target == "log_probs":
        t64 = t.astype(np.float64)
        return _log_softmax(z, inv_t), np.exp(t64), np.maximum(t64, np.log(eps))
    if target:
        log_p = _log_softmax(t, inv_t)
        return _log_softmax(z, inv_t), np.exp(log_p), log_p
    p = t.astype(np.float64)
    return _log_softmax(z, inv_t), p, np.log(np.maximum(p, eps))


# (k = 25 and 33 take the row kernel: float64 only, as float32 rows are
# computed there in float32)
@pytest.mark.parametrize("dtype, k", [(np.float64, k) for k in (1, 2, 3, 10, 17, 24, 25, 33)]
                         + [(np.float32, k) for k in (1, 2, 3, 10, 17, 24)])
@pytest.mark.parametrize("target_is_logits", [False, True])
@pytest.mark.parametrize("loss", ["kl", "cross_entropy"])
def test_short_loss_rows_against_mpmath(dtype, k, target_is_logits, loss):
    """Each row's value within the rounding of its terms p_j (log p~_j -
    log q_j) (every log, product and sum in float64: float32 rows too), and
    each gradient element within the rounding of S q_j and p_j (float32: and
    its rounding to float32). Logits up to 30 apart, temperatures 1 and 0.3,
    near-certain models included."""
    rng = np.random.default_rng(1000 * k + 17 * target_is_logits + len(loss))
    for temperature in (1.0, 0.3):
        for spread in (3.0, 30.0):
            n = 21
            z = (rng.normal(size=(n, k)) * spread).astype(dtype)
            t = _targets(rng, n, k, dtype, target_is_logits)
            value, grad = LOSSES[loss](t, z, temperature=temperature,
                                       target_is_logits=target_is_logits,
                                       reduction="none", return_grad=True)
            assert value.dtype == dtype and grad.dtype == dtype
            inv_t, eps = _kernel_constants(dtype, temperature)
            want, want_grad = loss_mpmath(loss, t, z, inv_t, eps, target_is_logits)

            log_q, p, log_p = _bound_logs(t, z, inv_t, eps, target_is_logits)
            size = np.where(p > 0, p * (np.abs(log_p) + np.abs(log_q) + 1), 0).sum(axis=1)
            bound = 8 * U * (k + 4) * size
            err = np.abs(value.astype(np.float64) - want)
            if dtype == np.float32:  # the value itself is returned in float32
                bound = bound + 2.0 ** -24 * np.abs(want)
            assert (err <= bound).all(), (temperature, spread, np.max(err / bound))

            s = p.sum(axis=1, keepdims=True)
            q = np.exp(log_q)
            g_bound = 8 * U * (s * q * (np.abs(log_q) + 8) + p * (np.abs(log_p) + 8)) * inv_t
            if dtype == np.float32:  # rounded to float32 (subnormals included)
                g_bound = g_bound + 2.0 ** -24 * np.abs(want_grad) + 2.0 ** -149
            g_err = np.abs(grad.astype(np.float64) - want_grad)
            assert (g_err <= g_bound).all(), (temperature, spread, np.max(g_err / g_bound))


def _mixed_rows(rng, n, k, dtype, target_is_logits):
    """Rows of every kind, the ones the lanes decline among them: a -inf
    logit (the exact path), a logit past the plain exp's range (the wide
    exp); and a target probability of 1e-310 (float64 kl_loss declines its
    subnormal log; float32's 1e-40 widens to a normal float64)."""
    z = rng.normal(size=(n, k)) * 3
    t = _targets(rng, n, k, np.float64, target_is_logits)
    if k > 1:
        z[6::13, 1] = -np.inf
        z[7::17, 1] = -3000.0
        if target_is_logits:
            t[5::11, 0] = -3000.0
        else:
            t[5::11, 0] = 1e-310 if dtype == np.float64 else 1e-40
    return t.astype(dtype), z.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("target_is_logits", [False, True])
@pytest.mark.parametrize("loss", ["kl", "cross_entropy"])
@pytest.mark.parametrize("k", [1, 2, 5, 8, 10, 16, 24, 25, 33])
def test_a_loss_rows_bits_do_not_depend_on_its_route(dtype, target_is_logits, loss, k):
    """A row's value and gradient row: the same bits in a batch, alone, in
    another tile and lane, on 1 and 2 threads, with where=, in columns,
    against a shared target row, in a large call and on the general path."""
    rng = np.random.default_rng(200 + k)
    t, z = _mixed_rows(rng, 41, k, dtype, target_is_logits)
    fn = LOSSES[loss]
    kw = dict(temperature=0.7, target_is_logits=target_is_logits, reduction="none",
              return_grad=True)
    whole, grad = fn(t, z, **kw)
    assert np.isfinite(grad).all()

    def same(got, rows=slice(None)):
        np.testing.assert_array_equal(got[0], whole[rows])
        np.testing.assert_array_equal(got[1], grad[rows])

    alone = [fn(t[i], z[i], **kw) for i in range(len(z))]
    same((np.array([v for v, _ in alone]), np.array([g for _, g in alone])))
    same(fn(t[3:], z[3:], **kw), slice(3, None))
    same(fn(t[::-1], z[::-1], **kw), slice(None, None, -1))
    for threads in (1, 2):
        same(fn(t, z, num_threads=threads, **kw))
    reps = 70_000 // (len(z) * k) + 1  # past the size that takes a second thread
    for threads in (1, 2):
        v, g = fn(np.tile(t, (reps, 1)), np.tile(z, (reps, 1)), num_threads=threads, **kw)
        np.testing.assert_array_equal(v, np.tile(whole, reps))
        np.testing.assert_array_equal(g, np.tile(grad, (reps, 1)))
    mask = rng.random(len(z)) < 0.6
    v, g = fn(t, z, where=mask, **kw)
    np.testing.assert_array_equal(v[mask], whole[mask])
    np.testing.assert_array_equal(g[mask], grad[mask])
    np.testing.assert_array_equal(g[~mask], 0.0)
    v, g = fn(t.T.copy(), z.T.copy(), axis=0, **kw)
    same((v, g.T))
    v_only = fn(t, z, temperature=0.7, target_is_logits=target_is_logits, reduction="none")
    np.testing.assert_array_equal(v_only, whole)
    # one target row for every row (a row stride of 0)
    v, g = fn(t[4], z, **kw)
    w, h = fn(np.tile(t[4], (len(z), 1)), z, **kw)
    np.testing.assert_array_equal(v, w)
    np.testing.assert_array_equal(g, h)
    reps = 3000 // len(z) + 1
    v, g = fn(np.tile(t, (reps, 1)), np.tile(z, (reps, 1)), **kw)
    np.testing.assert_array_equal(v, np.tile(whole, reps))
    np.testing.assert_array_equal(g, np.tile(grad, (reps, 1)))
    with general_path():
        same(fn(t, z, **kw))


@pytest.mark.parametrize("loss", ["kl", "cross_entropy"])
@pytest.mark.parametrize("k", [2, 10, 24, 40])
def test_float16_loss_rows_give_the_bits_of_their_float32_values(loss, k):
    rng = np.random.default_rng(k)
    t, z = _mixed_rows(rng, 37, k, np.float16, False)
    fn = LOSSES[loss]
    want, want_grad = fn(t.astype(np.float32), z.astype(np.float32), reduction="none",
                         return_grad=True)
    got, got_grad = fn(t, z, reduction="none", return_grad=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_grad, want_grad)
    # without a gradient: rows widened a tile at a time, with where=
    mask = np.arange(len(z)) % 3 != 1
    got = fn(t, z, reduction="none", where=mask, num_threads=2)
    np.testing.assert_array_equal(got[mask], want[mask])
    big = fn(np.tile(t, (200, 1)), np.tile(z, (200, 1)), reduction="none")
    np.testing.assert_array_equal(big, np.tile(want, 200))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("eps", [klfast.DEFAULT_EPS, 0.0, 1e-3])
@pytest.mark.parametrize("loss", ["kl", "cross_entropy"])
@pytest.mark.parametrize("k", [2, 10, 24])
def test_eps_rule_ties_and_mean_against_mpmath(dtype, eps, loss, k):
    """Target probabilities below eps (floored in kl_loss's log p~, their
    own value in the gradient), exact zeros, logits with tied maxima (the
    log-sum-exp's count of ties), and reduction="mean" into grad_out: the
    loss and gradient against mpmath."""
    rng = np.random.default_rng(k + int(1e3 * eps) + (dtype == np.float32))
    n = 19
    p = rng.dirichlet(np.ones(k), n)
    p[::3, 0] = 1e-20
    p[1::3, -1] = 1e-15
    p[2::4, k // 2] = 0.0
    z = rng.normal(size=(n, k)) * 3
    z[::2] = np.round(z[::2])  # integer logits: tied maxima
    z[3::5, :2] = z[3::5].max(axis=1, keepdims=True)
    p, z = p.astype(dtype), z.astype(dtype)
    inv_t, eps_k = _kernel_constants(dtype, 0.8, eps)
    want, want_grad = loss_mpmath(loss, p, z, inv_t, eps_k)
    grad = np.empty_like(z)
    value, got = LOSSES[loss](p, z, temperature=0.8, eps=eps, return_grad=True, grad_out=grad)
    assert got is grad
    tol = 1e-14 if dtype == np.float64 else 2e-7  # (the mean returned in the dtype)
    np.testing.assert_allclose(value, want.mean(), rtol=tol)
    # (float32: computed in float64, rounded once to float32)
    np.testing.assert_allclose(grad, want_grad / n, rtol=1e-13 if dtype == np.float64 else 2 ** -23,
                               atol=1e-16 * inv_t / n)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("target_is_logits", [False, True])
@pytest.mark.parametrize("loss", ["kl", "cross_entropy"])
@pytest.mark.parametrize("k", [2, 10, 24])
def test_masked_classes_and_low_temperatures(dtype, target_is_logits, loss, k):
    """Masked classes (-inf logits, a quarter of them) and temperatures down
    to 0.01 (most scaled logits below -708, where the plain exp stops) are
    scored in the lanes: q_j = 0 at a mask, so a loss of +inf where the
    target is not 0 there, its gradient -p_j / T; values and gradients
    within float64's bound of 80-digit mpmath (float32 rows too: the row
    kernel computes those in float32). The bounds weight each term by 1 +
    |log p_j| besides, the rounding of a scaled target logit."""
    rng = np.random.default_rng(700 + k + 50 * target_is_logits + len(loss))
    n = 28
    z = rng.normal(size=(n, k)) * 3
    masked = rng.random((n, k)) < 0.25
    masked[masked.all(axis=1), 0] = False
    z[masked] = -np.inf
    hit = np.zeros(n, bool)
    hit[::7] = masked[::7].any(axis=1)  # rows whose target is not 0 at a mask
    if target_is_logits:
        t = rng.normal(size=(n, k)) * 2
        t_masked = masked | (rng.random((n, k)) < 0.2)
        t_masked[hit] = rng.random((hit.sum(), k)) < 0.2
        t_masked[t_masked.all(axis=1), 0] = False
        t[t_masked] = -np.inf
    else:
        t = rng.dirichlet(np.full(k, 0.7), n)
        t[masked & ~hit[:, None]] = 0.0
        t /= t.sum(axis=1, keepdims=True)
    t, z = t.astype(dtype), z.astype(dtype)
    for temperature in (1.0, 0.01):
        value, grad = LOSSES[loss](t, z, temperature=temperature,
                                   target_is_logits=target_is_logits, reduction="none",
                                   return_grad=True)
        inv_t, eps = _kernel_constants(dtype, temperature)
        want, want_grad = loss_mpmath(loss, t, z, inv_t, eps, target_is_logits)
        log_q, p, log_p = _bound_logs(t, z, inv_t, eps, target_is_logits)
        infinite = ~np.isfinite(want)
        assert (infinite == (((p > 0) & ~np.isfinite(log_q)).any(axis=1))).all()
        if not target_is_logits:
            assert infinite[hit].all() and not infinite[~hit].any()
        np.testing.assert_array_equal(value[infinite], np.inf)
        with np.errstate(invalid="ignore"):
            terms = p * (np.abs(log_p) + np.abs(log_q) + 1) * (1 + np.abs(log_p))
        size = np.where(p > 0, terms, 0).sum(axis=1)
        bound = 8 * U * (k + 4) * size
        if dtype == np.float32:
            bound = bound + 2.0 ** -24 * np.abs(want)
        err = np.abs(value[~infinite].astype(np.float64) - want[~infinite])
        assert (err <= bound[~infinite]).all(), (temperature, np.max(err / bound[~infinite]))

        assert np.isfinite(grad).all()
        s = p.sum(axis=1, keepdims=True)
        q = np.exp(log_q)
        with np.errstate(invalid="ignore"):
            g_bound = (np.where(q > 0, s * q * (np.abs(log_q) + 8), 0)
                       + np.where(p > 0, p * (np.abs(log_p) + 8) * (1 + np.abs(log_p)), 0))
        g_bound = 8 * U * g_bound * inv_t + 4 * k * inv_t * 2.0 ** -1074  # (subnormal q_j)
        if dtype == np.float32:
            g_bound = g_bound + 2.0 ** -24 * np.abs(want_grad) + 2.0 ** -149
        g_err = np.abs(grad.astype(np.float64) - want_grad)
        bad = ~(g_err <= g_bound)
        assert not bad.any(), (temperature, g_err[bad][:3], g_bound[bad][:3])
        if not target_is_logits:  # g_j = (S q_j - p_j) / T, q_j = 0
            np.testing.assert_array_equal(grad[masked], (-p[masked] * inv_t).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["kl", "cross_entropy"])
@pytest.mark.parametrize("k", [1, 2, 10, 24])
def test_log_probability_targets(dtype, loss, k):
    """Targets given as log-probabilities (input=("log_probs", "logits"), as
    torch's KLDivLoss(log_target=True)) are scored in the lanes: p_j =
    exp(t_j) as given, -inf a class of 0, below eps (floored in kl_loss's
    log p~), below -708 (a subnormal p_j), rows a little off a sum of 1 (the
    losses do not check sums; S = sum p_j in the gradient). Values and
    gradients within float64's bound of 80-digit mpmath (float32 rows too),
    and the same bits on every route."""
    rng = np.random.default_rng(900 + k + len(loss))
    n = 31
    p = rng.dirichlet(np.full(k, 0.7), n)
    if k > 1:
        p[::4, 0] = 0.0
        p[1::5, -1] = 1e-20
    with np.errstate(divide="ignore"):
        t = np.log(p)
    t[2::6] += np.log(0.999)
    if k > 1:
        t[3::7, 1] = -720.0
    z = rng.normal(size=(n, k)) * 3
    if k > 1:
        z[::8, 0] = -np.inf  # masked where the target is 0
    t, z = t.astype(dtype), z.astype(dtype)
    fn = LOSSES[loss]
    kw = dict(input=("log_probs", "logits"), temperature=0.7, reduction="none",
              return_grad=True)
    value, grad = fn(t, z, **kw)
    assert value.dtype == dtype and grad.dtype == dtype
    inv_t, eps = _kernel_constants(dtype, 0.7)
    want, want_grad = loss_mpmath(loss, t, z, inv_t, eps, target_is_log_probs=True)
    log_q, p, log_p = _bound_logs(t, z, inv_t, eps, "log_probs")
    with np.errstate(invalid="ignore"):
        weight = np.where(p > 0, np.abs(log_p) + np.abs(log_q) + 1, 0)
    # (a subnormal p_j, below 2.2e-308, is only good to 2^-1074)
    bound = 8 * U * (k + 4) * (p * weight).sum(axis=1) + 2.0 ** -1074 * weight.sum(axis=1)
    if dtype == np.float32:  # (returned in float32: subnormals included)
        bound = bound + 2.0 ** -24 * np.abs(want) + 2.0 ** -149
    err = np.abs(value.astype(np.float64) - want)
    assert (err <= bound).all(), np.max(err / bound)
    s = p.sum(axis=1, keepdims=True)
    q = np.exp(log_q)
    with np.errstate(invalid="ignore"):
        g_bound = (np.where(q > 0, s * q * (np.abs(log_q) + 8), 0)
                   + np.where(p > 0, p * (np.abs(log_p) + 8), 0))
    g_bound = 8 * U * g_bound * inv_t + 4 * k * inv_t * 2.0 ** -1074
    if dtype == np.float32:
        g_bound = g_bound + 2.0 ** -24 * np.abs(want_grad) + 2.0 ** -149
    g_err = np.abs(grad.astype(np.float64) - want_grad)
    assert (g_err <= g_bound).all()

    alone = [fn(t[i], z[i], **kw) for i in range(n)]
    np.testing.assert_array_equal(np.array([v for v, _ in alone]), value)
    np.testing.assert_array_equal(np.array([g for _, g in alone]), grad)
    reps = 70_000 // (n * k) + 1  # past the size that takes a second thread
    v, g = fn(np.tile(t, (reps, 1)), np.tile(z, (reps, 1)), num_threads=2, **kw)
    np.testing.assert_array_equal(v, np.tile(value, reps))
    np.testing.assert_array_equal(g, np.tile(grad, (reps, 1)))
    v, g = fn(t.T.copy(), z.T.copy(), axis=0, **kw)
    np.testing.assert_array_equal(v, value)
    np.testing.assert_array_equal(g.T, grad)
    with general_path():
        v, g = fn(t, z, **kw)
    np.testing.assert_array_equal(v, value)
    np.testing.assert_array_equal(g, grad)
