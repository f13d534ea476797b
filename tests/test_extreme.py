"""Valid but extreme inputs: the right finite value, or a ValueError naming the
argument; never a NaN, never inf for a finite result, never a NaN gradient.

The inputs here are unnormalised (entries near 1e308), and the references are
independent: mpmath at 50 digits on the exact binary values of the inputs.
"""
import inspect
import math

import numpy as np
import pytest

import klfast

mpmath = pytest.importorskip("mpmath")
mp = mpmath.mp

pytestmark = pytest.mark.usefixtures("isa")  # every instruction-set level

BIG = 1.7e308
E = math.e


def unnormalised(fn, *args, **kwargs):
    """Call ``fn`` on rows that do not sum to 1, on purpose: the one place
    that opts out of the row-sum check (``check_sums=False``) where ``fn``
    has it."""
    if "check_sums" in inspect.signature(fn).parameters:
        kwargs["check_sums"] = False
    return fn(*args, **kwargs)


def mpf_row(x):
    return [mp.mpf(float(v)) for v in np.asarray(x, dtype=np.float64)]


def ref_kl(p, q):
    with mp.workdps(50):
        return sum((a * mp.log(a / b) if a > 0 else mp.mpf(0))
                   for a, b in zip(mpf_row(p), mpf_row(q)))


def ref_cross_entropy(p, q):
    with mp.workdps(50):
        return sum((-a * mp.log(b) if a > 0 else mp.mpf(0))
                   for a, b in zip(mpf_row(p), mpf_row(q)))


def ref_js(p, q):
    with mp.workdps(50):
        total = mp.mpf(0)
        for a, b in zip(mpf_row(p), mpf_row(q)):
            m = (a + b) / 2
            if a > 0:
                total += a * mp.log(a / m) / 2
            if b > 0:
                total += b * mp.log(b / m) / 2
        return total


def close(got, want, rtol=1e-13):
    got = float(got)
    assert math.isfinite(got), got
    assert abs(got - float(want)) <= rtol * abs(float(want)), (got, float(want))


# ---- entries near 1e308, terms of both signs ---------------------------------

# kl terms: 1.7e308 * 0.8 twice (their running sum overflows), then
# -6e307 three times: the row is 9.2e307.
KL_P = np.array([BIG, BIG, 6e307, 6e307, 6e307])
KL_Q = np.array([BIG / math.exp(0.8), BIG / math.exp(0.8), 6e307 * E, 6e307 * E, 6e307 * E])
# cross_entropy terms: 1.7e308 * 0.9 twice, then -1.7e308 * 0.8, -1.7e308 * 0.9.
CE_P = np.full(4, BIG)
CE_Q = np.array([math.exp(-0.9), math.exp(-0.9), math.exp(0.8), math.exp(0.9)])


def test_kl_terms_near_max_of_both_signs():
    got = unnormalised(klfast.kl, KL_P, KL_Q)
    close(got, ref_kl(KL_P, KL_Q))
    # as one row of several, with an ordinary row next to it
    both = unnormalised(klfast.kl, np.stack([KL_P, KL_P / 1e300]), np.stack([KL_Q, KL_Q / 1e300]))
    close(both[0], ref_kl(KL_P, KL_Q))
    close(both[1], ref_kl(KL_P / 1e300, KL_Q / 1e300))


def test_cross_entropy_terms_near_max_of_both_signs():
    close(unnormalised(klfast.cross_entropy, CE_P, CE_Q), ref_cross_entropy(CE_P, CE_Q),
          rtol=1e-12)  # the terms cancel to a tenth of their size


def test_infinite_term_after_negative_terms_overflow():
    # eps=0: the last term is +inf (p > 0, q == 0); the three before it,
    # -6.6e307 each, overflow to -inf when summed: the row is +inf, not NaN.
    p = np.array([BIG / E, BIG / E, BIG / E, 1.0])
    q = np.array([BIG, BIG, BIG, 0.0])
    assert unnormalised(klfast.kl, p, q, eps=0.0) == np.inf
    # cross_entropy: -6.3e307 * 80 three times, then -1 * log(0) = +inf
    assert unnormalised(klfast.cross_entropy, p, np.array([E, E, E, 0.0]) ** 80,
                        eps=0.0) == np.inf


# ---- a base that brings an overflowing sum back in range ---------------------

def test_base_scales_an_overflowing_sum():
    p = np.array([1e308, 1e308])
    q = np.array([1e300, 1e300])
    want = ref_kl(p, q) / mp.log(mp.mpf(1e300))  # 3.7e309 nats, 5.3e306 in base 1e300
    close(unnormalised(klfast.kl, p, q, base=1e300), want)
    close(unnormalised(klfast.jeffreys, p, q, base=1e300),
          (ref_kl(p, q) + ref_kl(q, p)) / mp.log(mp.mpf(1e300)))
    # both signs: the kl row above is 9.2e307, the sum overflowed on the way
    close(unnormalised(klfast.kl, KL_P, KL_Q, base=1e300),
          ref_kl(KL_P, KL_Q) / mp.log(mp.mpf(1e300)))
    # a base below 1 gives the negative of it
    close(unnormalised(klfast.kl, p, q, base=1e-300), -want)
    # jensen_shannon: four terms of 5.9e307
    p4, q4 = np.full(4, BIG), np.zeros(4)
    close(unnormalised(klfast.jensen_shannon, p4, q4, base=1e300),
          ref_js(p4, q4) / mp.log(mp.mpf(1e300)))


def test_base_rescue_in_every_layout():
    p = np.array([[1e308, 1e308], [0.5, 0.5], [1e308, 1e308]])
    q = np.array([[1e300, 1e300], [0.25, 0.75], [1e300, 1e300]])
    scale = 1 / mp.log(mp.mpf(1e300))
    want = [float(ref_kl(p[i], q[i]) * scale) for i in range(3)]
    np.testing.assert_allclose(unnormalised(klfast.kl, p, q, base=1e300), want, rtol=1e-13)
    out = np.empty((1, 3))
    got = unnormalised(klfast.kl, p.T, q.T, axis=0, base=1e300, keepdims=True, out=out)
    assert got is out
    np.testing.assert_allclose(out[0], want, rtol=1e-13)
    # one row of q for all rows of p, 3-D
    got = unnormalised(klfast.kl, p[None], q[0], base=1e300)
    assert got.shape == (1, 3)
    np.testing.assert_allclose(got[0, [0, 2]], want[0], rtol=1e-13)
    # a true overflow stays inf: 1.7e308 * 690.8 * 4 / 690.8 is past the range
    assert unnormalised(klfast.kl, np.full(4, BIG), np.full(4, BIG / 1e300), base=1e300) == np.inf


# ---- eps above float32's range with float32 inputs ---------------------------

@pytest.mark.parametrize("measure", ["kl", "jeffreys", "entropy", "cross_entropy"])
@pytest.mark.parametrize("eps", [1e39, 3.5e38, 1e300])
def test_eps_beyond_float32_is_refused(measure, eps):
    fn = getattr(klfast, measure)
    p = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    args = (p,) if measure == "entropy" else (p, p[::-1])
    with pytest.raises(ValueError, match=r"eps=.*float32"):
        unnormalised(fn, *args, eps=eps)
    with pytest.raises(ValueError, match=r"eps=.*float32"):
        unnormalised(fn, *args, eps=eps, base=2.0)


def test_eps_at_float32_max_and_in_float64():
    p32 = np.array([0.25, 0.75], dtype=np.float32)
    f32_max = float(np.finfo(np.float32).max)
    # eps = float32's largest value floors every float32 entry to it
    assert unnormalised(klfast.kl, p32, p32[::-1], eps=f32_max) == 0.0
    close(unnormalised(klfast.entropy, p32, eps=f32_max), -math.log(f32_max), rtol=1e-6)
    # float64 inputs take eps = 1e39 as it is
    close(unnormalised(klfast.entropy, p32.astype(np.float64), eps=1e39), -math.log(1e39))


# ---- losses -------------------------------------------------------------------

T_ROWS = np.array([[0.3, 0.7]])
Z_ROWS = np.array([[0.0, 1e-10]])


def ref_loss(loss, t, z, temperature):
    """Per-row loss and gradient (sum(p) softmax(z/T) - p) / T, in mpmath."""
    with mp.workdps(50):
        p, x = mpf_row(t), [v / mp.mpf(temperature) for v in mpf_row(z)]
        m = max(x)
        lse = m + mp.log(sum(mp.exp(v - m) for v in x))
        lq = [v - lse for v in x]
        if loss == "kl":
            value = sum(a * (mp.log(a) - b) for a, b in zip(p, lq) if a > 0)
        else:
            value = -sum(a * b for a, b in zip(p, lq) if a > 0)
        s = sum(p)
        grad = [(s * mp.exp(b) - a) / mp.mpf(temperature) for a, b in zip(p, lq)]
        return value, grad


@pytest.mark.parametrize("loss", ["kl_loss", "cross_entropy_loss"])
@pytest.mark.parametrize("dtype,temperature", [(np.float64, 1e-310), (np.float64, 5e-309),
                                               (np.float32, 1e-39), (np.float32, 2.9e-39)])
def test_temperature_whose_reciprocal_overflows_is_refused(loss, dtype, temperature):
    fn = getattr(klfast, loss)
    for target_is_logits in (False, True):
        with pytest.raises(ValueError, match=r"temperature=.*too small"):
            unnormalised(fn, T_ROWS.astype(dtype), Z_ROWS.astype(dtype),
                         temperature=temperature, target_is_logits=target_is_logits,
                         return_grad=True)


@pytest.mark.parametrize("loss", ["kl_loss", "cross_entropy_loss"])
def test_smallest_usable_temperature(loss):
    # 1/T = 1e308 is finite: the result and the gradient are (3e297, 3e307)
    fn = getattr(klfast, loss)
    value, grad = unnormalised(fn, T_ROWS, Z_ROWS, temperature=1e-308, return_grad=True)
    want, want_grad = ref_loss(loss.split("_loss")[0], T_ROWS[0], Z_ROWS[0], 1e-308)
    close(value, want, rtol=1e-12)
    np.testing.assert_allclose(grad[0], [float(g) for g in want_grad], rtol=1e-12)
    # float32 logits: 1/T = 1e38 is finite in float32
    value, grad = unnormalised(fn, T_ROWS.astype(np.float32), np.array([[0.0, 1e-3]], np.float32),
                               temperature=1e-38, return_grad=True)
    want, want_grad = ref_loss(loss.split("_loss")[0], T_ROWS[0].astype(np.float32),
                               [0.0, float(np.float32(1e-3))], 1e-38)
    close(value, want, rtol=1e-6)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad[0], [float(g) for g in want_grad], rtol=1e-6)


@pytest.mark.parametrize("loss", ["kl_loss", "cross_entropy_loss"])
def test_mean_of_rows_whose_sum_overflows(loss):
    # each row is about 7e307 (kl 1.4e308): three of them sum past the float64 range
    fn = getattr(klfast, loss)
    t = np.array([[1e305, 0.0], [1e305, 0.0], [1e305, 0.0]])
    z = np.array([[0.0, 700.0], [0.0, 700.0], [0.0, 700.0]])
    want, want_grad = ref_loss(loss.split("_loss")[0], t[0], z[0], 1.0)
    assert 3 * want > np.finfo(np.float64).max
    rows = unnormalised(fn, t, z, reduction="none")
    np.testing.assert_allclose(rows, float(want), rtol=1e-13)
    value, grad = unnormalised(fn, t, z, reduction="mean", return_grad=True)
    close(value, want)
    assert not np.isnan(grad).any()
    np.testing.assert_allclose(grad[0], [float(g) / 3 for g in want_grad], rtol=1e-13)
    # the sum itself is past the float64 range: +inf; its gradient is finite
    value, grad = unnormalised(fn, t, z, reduction="sum", return_grad=True)
    assert value == np.inf
    np.testing.assert_allclose(grad[0], [float(g) for g in want_grad], rtol=1e-13)


@pytest.mark.parametrize("loss", ["kl_loss", "cross_entropy_loss"])
@pytest.mark.parametrize("dtype,logits,temperature", [
    (np.float64, [-1e308, 1e308], 1.0),     # z - max z overflows
    (np.float64, [-1e308, 1e308], 1e10),
    (np.float64, [0.0, 1e300], 1e-10),      # (z - max z) / T overflows
    (np.float32, [-3e38, 3e38], 1.0),       # in float32
])
def test_logits_near_the_limits(loss, dtype, logits, temperature):
    # q_0 is 0 in floating point; log q_0 is past the range, but the term
    # p_0 |log q_0| with p_0 = 1e-10 is finite
    t = np.array([[1e-10, 1.0]], dtype=dtype)
    z = np.array([logits], dtype=dtype)
    value, grad = unnormalised(getattr(klfast, loss), t, z, temperature=temperature,
                               return_grad=True)
    want, want_grad = ref_loss(loss.split("_loss")[0], t[0], z[0], temperature)
    close(value, want, rtol=1e-6 if dtype == np.float32 else 1e-13)
    assert np.isfinite(grad).all()
    # the gradient's last entry is sum(p) - 1, rounded in the logits' dtype
    np.testing.assert_allclose(grad[0], [float(g) for g in want_grad], rtol=1e-6,
                               atol=1e-15 / temperature)
