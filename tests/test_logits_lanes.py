"""KL, Jeffreys, Jensen-Shannon, entropy and cross-entropy of short rows of
logits (k <= 64), scored a row per lane (engine/logits_lanes.h): against 80-digit mpmath at every instruction-set
level, and the same bits on every route a row can take (its tile and lane,
alone or in a batch, threads, where=, layouts, dtype routes, the general
path), with the rows it declines (NaN, -inf, the eps rule, wide spreads)
mixed in; and KL, Jeffreys and Jensen-Shannon of longer rows, which the row
kernel of engine/logits_kl_rows.h scores from the same centred sums."""

import numpy as np
import pytest
from scipy.special import log_softmax

import klfast
from zoo import general_path, js_logits_mpmath, kl_logits_mpmath

pytestmark = pytest.mark.usefixtures("isa")


def _eps(dtype):
    return klfast.DEFAULT_EPS if dtype == np.float64 else float(np.float32(klfast.DEFAULT_EPS))


def _kl_bound(a, b, temperature, rtol, dtype):
    """rtol times the terms p_j g(d_j - c) (1 + |log p_j|) of KL(P || Q) per
    row (each term carries the rounding of log p_j), over the classes not
    masked in P, plus 4 log(B / B_S) for the classes masked in P alone (Q's
    mass there, a term of its own); and the rows with a class floored by
    eps."""
    la = log_softmax(a.astype(float) / temperature, axis=1)
    lb = log_softmax(b.astype(float) / temperature, axis=1)
    open_ = ~np.isneginf(a)
    floored = open_ & ((la < np.log(_eps(dtype))) | (lb < np.log(_eps(dtype))))
    with np.errstate(invalid="ignore"):  # (-inf - -inf at the masks, not used)
        p = np.where(open_, np.exp(la), 0.0)
        delta = np.where(open_ & np.isfinite(b),
                         (b.astype(float) - a.astype(float)) / temperature, 0.0)
        delta -= np.sum(p * delta, axis=1, keepdims=True)
        terms = np.where(open_, p * (np.expm1(delta) - delta) * (1 + np.abs(la)), 0.0)
    q_masked = np.sum(np.where(~open_ & ~np.isneginf(b), np.exp(lb), 0.0), axis=1)
    return rtol * (terms.sum(axis=1) - 4 * np.log1p(-q_masked)), floored.any(axis=1)


def _mpmath_and_bound(measure, a, b, temperature, rtol, dtype):
    """KL (or Jeffreys: KL both ways) per row in mpmath, the bound of
    _kl_bound and the rows with a floored class; or the Jensen-Shannon
    divergence, within rtol times its terms weighted by 1 + |log p_j| + |log
    q_j| (the rounding of the logs each carries; JS has no eps rule: no
    floored rows). Rows whose value is below the dtype's smallest normal
    count as floored (their result is a subnormal, or 0)."""
    if measure == "jensen_shannon":
        want, terms, lp, lq = js_logits_mpmath(a, b, temperature)
        with np.errstate(invalid="ignore"):  # (inf * 0 at classes masked in both)
            weighted = np.where(terms > 0, terms * (1 + np.abs(lp) + np.abs(lq)), 0.0)
        tiny = want < np.finfo(np.float32 if dtype == np.float16 else dtype).tiny
        return want, rtol * weighted.sum(axis=1), tiny & (want > 0)
    want = kl_logits_mpmath(a, b, temperature, _eps(dtype))
    bound, floored = _kl_bound(a, b, temperature, rtol, dtype)
    if measure == "jeffreys":
        want = want + kl_logits_mpmath(b, a, temperature, _eps(dtype))
        bound_ba, floored_ba = _kl_bound(b, a, temperature, rtol, dtype)
        bound, floored = bound + bound_ba, floored | floored_ba
    return want, bound, floored


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-15), (np.float32, 5e-7),
                                         (np.float16, 5e-7)])
# (past 64 classes, the row kernel of logits_kl_rows.h)
@pytest.mark.parametrize("k, measure", [(k, m) for m in ("kl", "jeffreys", "jensen_shannon")
                                        for k in (1, 2, 3, 10, 17, 32, 33, 64, 65, 100, 333)])
def test_short_rows_against_mpmath(dtype, rtol, k, measure):
    """The error bound of test_input_forms' nearly-equal test: relative to
    the terms p_j g(d_j - c) weighted by 1 + |log p_j| (each carries the
    rounding of log p_j), from KL ~ 1 down to KL ~ 1e-28; Jeffreys within
    the sum of its two KLs' bounds. Rows with a floored class are left out:
    the lanes decline them, and the row kernel keeps an error relative to
    the floored terms (a KL of 1e-73 made of them comes out 6e-77);
    test_declined_rows_match_mpmath_... checks ordinary floored rows.
    Jensen-Shannon (its terms from KL's centred sums) within its own bound
    (_mpmath_and_bound), across its two forms of a term (|delta_j| below
    and above 1.5: d = 0.5 and 3)."""
    rng = np.random.default_rng(k)
    checked = 0
    for temperature in (1.0, 0.3):
        for spread in (3.0, 30.0):
            for d in (3.0, 0.5, 1e-3, 1e-8, 1e-14):
                a = (rng.normal(size=(9, k)) * spread).astype(dtype)
                b = (a + rng.normal(size=(9, k)) * d).astype(dtype)
                got = getattr(klfast, measure)(a, b, input="logits", temperature=temperature)
                if k == 1:
                    np.testing.assert_array_equal(got, 0.0)
                    continue
                want, bound, floored = _mpmath_and_bound(measure, a, b, temperature, rtol, dtype)
                keep = (want != 0) & ~floored
                err = np.abs(got[keep].astype(float) - want[keep])
                assert (err <= bound[keep]).all(), (temperature, spread, d,
                                                    err / bound[keep] * rtol)
                checked += keep.sum()
    assert k == 1 or checked >= 15


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-15), (np.float32, 5e-7)])
@pytest.mark.parametrize("k, measure", [(k, "kl") for k in (2, 3, 10, 32, 64)]
                         + [(k, "jeffreys") for k in (2, 3, 10, 32, 64)]
                         + [(k, "jensen_shannon") for k in (2, 3, 10, 32, 64)])
def test_classes_masked_in_both_rows_against_mpmath(dtype, rtol, k, measure):
    """KL, Jeffreys and Jensen-Shannon of rows with the same classes masked
    (-inf in both, as an action mask shared by two policies; a quarter of the
    classes) are scored in the lanes, the masked classes terms of 0 left out of every
    sum: within test_short_rows_against_mpmath's bound, over the classes not
    masked. Rows without a mask get the same bits beside them."""
    rng = np.random.default_rng(60 + k)
    fn = getattr(klfast, measure)
    checked = 0
    for d in (3.0, 1e-3, 1e-8):
        a = rng.normal(size=(24, k)) * 3
        b = a + rng.normal(size=(24, k)) * d
        mask = rng.random((24, k)) < 0.25
        mask[mask.all(axis=1), 0] = False
        mask[::4] = False  # rows without a mask between them
        a[mask] = b[mask] = -np.inf
        a, b = a.astype(dtype), b.astype(dtype)
        got = fn(a, b, input="logits", temperature=0.7)
        want, bound, floored = _mpmath_and_bound(measure, a, b, 0.7, rtol, dtype)
        keep = (want != 0) & ~floored & ((~mask).sum(axis=1) > 1)
        err = np.abs(got[keep].astype(float) - want[keep])
        assert (err <= bound[keep]).all(), (d, err / bound[keep] * rtol)
        checked += keep[mask.any(axis=1)].sum()
        np.testing.assert_array_equal(got[(~mask).sum(axis=1) == 1], 0.0)  # one class left
        np.testing.assert_array_equal(fn(a[::4], b[::4], input="logits", temperature=0.7),
                                      got[::4])
    assert k == 2 or checked >= 12


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-15), (np.float32, 5e-7)])
@pytest.mark.parametrize("k", [2, 3, 10, 32, 64])
def test_classes_masked_in_p_alone_against_mpmath(dtype, rtol, k):
    """KL of rows with classes masked in P alone (-inf in a, finite in b:
    p_j = 0 against q_j > 0, a quarter of the classes) is scored in the
    lanes: the centred sum over the other classes plus log1p of Q's masked
    mass over the rest, within _kl_bound of 80-digit mpmath, down to rows
    nearly equal elsewhere whose masked q_j are about 1e-9 (a value of about
    1e-9 that a difference of log-sum-exps would leave with an absolute
    error of 1e-16). Rows masked in both or not at all get the same bits
    beside them."""
    rng = np.random.default_rng(80 + k)
    checked = 0
    for d, low in ((3.0, 0.0), (1e-3, -12.0), (1e-8, -14.0)):
        a = rng.normal(size=(24, k)) * 3
        b = a + rng.normal(size=(24, k)) * d
        mask = rng.random((24, k)) < 0.25
        mask[mask.all(axis=1), 0] = False
        mask[::4] = False  # rows without a mask between them
        b[mask] = (b.max(axis=1, keepdims=True) + low * 0.7 + rng.normal(size=b.shape))[mask]
        a[mask] = -np.inf
        a[1::4][mask[1::4]] = b[1::4][mask[1::4]] = -np.inf  # some masked in both
        a, b = a.astype(dtype), b.astype(dtype)
        got = klfast.kl(a, b, input="logits", temperature=0.7)
        want, bound, floored = _mpmath_and_bound("kl", a, b, 0.7, rtol, dtype)
        single = (~np.isneginf(b)).sum(axis=1) == 1  # one class left in both rows
        np.testing.assert_array_equal(got[single], 0.0)
        keep = (want != 0) & ~floored & ~single
        err = np.abs(got[keep].astype(float) - want[keep])
        assert (err <= bound[keep]).all(), (d, err / bound[keep] * rtol)
        alone = np.isneginf(a) & ~np.isneginf(b)
        checked += keep[alone.any(axis=1)].sum()
        rest = np.arange(len(a)) % 2 == 0
        np.testing.assert_array_equal(klfast.kl(a[rest], b[rest], input="logits",
                                                temperature=0.7), got[rest])
    assert checked >= 12


def _mixed_rows(rng, n, k, dtype):
    """Rows of every kind: independent, nearly equal, equal, masked classes
    (-inf in both rows, or in P alone), and the ones KL's lanes decline
    (-inf in Q alone, floored by eps, spread past the exp range)."""
    a = rng.normal(size=(n, k)) * 3
    b = rng.normal(size=(n, k)) * 3
    b[1::4] = a[1::4] + rng.normal(size=b[1::4].shape) * 1e-6
    b[2::9] = a[2::9]
    a[3::11] *= 20  # the eps rule binds
    if k > 1:
        b[6::13, 1] = -np.inf
        a[7::17, 1] = -3000.0  # past the plain exp's range
        a[8::15, 0] = b[8::15, 0] = -np.inf  # a class masked in both
    if k > 2:
        a[9::19, 2] = -np.inf  # masked in P alone
    return a.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 2, 5, 8, 10, 16, 32, 33, 64, 65])
@pytest.mark.parametrize("measure", ["kl", "jeffreys", "jensen_shannon"])
def test_a_rows_bits_do_not_depend_on_its_route(dtype, k, measure):
    """KL, Jeffreys and Jensen-Shannon (from the same sums)."""
    rng = np.random.default_rng(100 + k)
    fn = getattr(klfast, measure)
    a, b = _mixed_rows(rng, 41, k, dtype)
    whole = fn(a, b, input="logits", temperature=0.7)
    assert whole.dtype == dtype
    alone = np.array([fn(a[i], b[i], input="logits", temperature=0.7)
                      for i in range(len(a))], dtype=dtype)
    np.testing.assert_array_equal(whole, alone)
    # another tile and lane for every row
    np.testing.assert_array_equal(
        fn(a[3:], b[3:], input="logits", temperature=0.7), whole[3:])
    np.testing.assert_array_equal(
        fn(a[::-1], b[::-1], input="logits", temperature=0.7), whole[::-1])
    for threads in (1, 2):
        np.testing.assert_array_equal(
            fn(a, b, input="logits", temperature=0.7, num_threads=threads), whole)
    mask = rng.random(len(a)) < 0.6
    masked = fn(a, b, input="logits", temperature=0.7, where=mask)
    np.testing.assert_array_equal(masked[mask], whole[mask])
    np.testing.assert_array_equal(
        fn(np.asfortranarray(a), np.asfortranarray(b), input="logits",
                  temperature=0.7), whole)
    np.testing.assert_array_equal(
        fn(a.T.copy(), b.T.copy(), axis=0, input="logits", temperature=0.7), whole)
    # one row against every row (a row stride of 0)
    np.testing.assert_array_equal(
        fn(a[4], b, input="logits", temperature=0.7),
        fn(np.tile(a[4], (len(b), 1)), b, input="logits", temperature=0.7))
    # a large call (chunks, the pool) and the general path
    reps = 3000 // len(a) + 1
    big = fn(np.tile(a, (reps, 1)), np.tile(b, (reps, 1)), input="logits",
                    temperature=0.7)
    np.testing.assert_array_equal(big, np.tile(whole, reps))
    with general_path():
        np.testing.assert_array_equal(fn(a, b, input="logits", temperature=0.7), whole)
    assert (whole >= 0).all()


@pytest.mark.parametrize("k", [2, 10, 40, 100])
@pytest.mark.parametrize("measure", ["kl", "jeffreys", "jensen_shannon"])
def test_float16_rows_give_the_bits_of_their_float32_values(k, measure):
    rng = np.random.default_rng(k)
    fn = getattr(klfast, measure)
    a, b = _mixed_rows(rng, 37, k, np.float16)
    for temperature in (1.0, 2.5):
        got = fn(a, b, input="logits", temperature=temperature)
        want = fn(a.astype(np.float32), b.astype(np.float32), input="logits",
                  temperature=temperature)
        np.testing.assert_array_equal(got, want)
        # rows widened a tile at a time (the 16-bit inputs' stage), with where=
        mask = np.arange(len(a)) % 3 != 1
        got = fn(a, b, input="logits", temperature=temperature, where=mask, num_threads=2)
        np.testing.assert_array_equal(got[mask], want[mask])
        big = fn(np.tile(a, (200, 1)), np.tile(b, (200, 1)), input="logits",
                 temperature=temperature)
        np.testing.assert_array_equal(big, np.tile(want, 200))


def test_declined_rows_match_mpmath_and_leave_their_neighbours_alone():
    """Rows the lanes decline (the eps rule binds, a wide spread) take the
    row kernel: still exact, and a tile's other rows get the bits they get
    without them."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(16, 6)) * 3
    b = rng.normal(size=(16, 6)) * 3
    a[2] *= 30  # floored classes
    a[9, 3] = -2000.0  # probability about e^-2000: the wide exp
    got = klfast.kl(a, b, input="logits")
    want = kl_logits_mpmath(a, b, 1.0, klfast.DEFAULT_EPS)
    # (the row kernel's bound where classes are floored: row 9 is 4.4e-14
    # off, as before the lanes)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
    plain = np.delete(np.arange(16), [2, 9])
    np.testing.assert_array_equal(klfast.kl(a[plain], b[plain], input="logits"), got[plain])


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-15), (np.float32, 5e-7)])
@pytest.mark.parametrize("k", [65, 100, 1000])
def test_jeffreys_of_long_rows_with_floored_classes_against_mpmath(dtype, rtol, k):
    """Jeffreys of rows longer than the lanes' (logits_kl_rows.h) where the
    eps rule binds (logits of spread 6 to 30: log p_j down to about -200),
    from unrelated rows down to nearly equal ones (d = 1e-8), with an eps
    of 1e-12, 1e-6 and 0: within _mpmath_and_bound's bound for the classes
    above log eps plus rtol (p_j + q_j) (1 + |log p~_j| + |log q~_j|) for
    each floored class (a floored term keeps the rounding of its logs) and
    the dtype's smallest normal (a result below it is a subnormal or 0),
    against 80-digit mpmath (KL both ways, the eps rule in each)."""
    rng = np.random.default_rng(200 + k)
    floored_rows = 0
    for eps in (klfast.DEFAULT_EPS, 1e-6, 0.0):
        eps_t = float(dtype(eps))
        for spread, d in ((6.0, 3.0), (12.0, 1e-3), (30.0, 1e-8), (30.0, 0.5)):
            a = (rng.normal(size=(6, k)) * spread).astype(dtype)
            b = (a + rng.normal(size=(6, k)) * d).astype(dtype)
            got = klfast.jeffreys(a, b, input="logits", eps=eps)
            want = (kl_logits_mpmath(a, b, 1.0, eps_t) + kl_logits_mpmath(b, a, 1.0, eps_t))
            la = log_softmax(a.astype(float), axis=1)
            lb = log_softmax(b.astype(float), axis=1)
            with np.errstate(divide="ignore"):
                log_eps = np.log(eps_t)
            low = (la < log_eps) | (lb < log_eps)
            bound = _kl_bound(a, b, 1.0, rtol, dtype)[0] + _kl_bound(b, a, 1.0, rtol, dtype)[0]
            bound += rtol * np.sum(np.where(low, (np.exp(la) + np.exp(lb)) * (
                1 + np.abs(np.maximum(la, log_eps)) + np.abs(np.maximum(lb, log_eps))), 0.0),
                axis=1)
            bound += np.finfo(dtype).tiny  # (a value below it is a subnormal, or 0)
            err = np.abs(got.astype(float) - want)
            assert (err <= bound).all(), (eps, spread, d, err / bound * rtol)
            floored_rows += low.any(axis=1).sum()
    assert floored_rows >= 24


@pytest.mark.parametrize("measure", ["kl", "jeffreys"])
def test_the_eps_rule_is_decided_at_log_eps(measure):
    """KL's lanes take a row while every log p_j and log q_j is above log eps
    (by more than 1e-9), and leave it to the row kernel otherwise: rows with
    a class just above and just below log eps, nearly equal (the floor
    changes them by about 1e-6 relative), each against 80-digit mpmath."""
    rng = np.random.default_rng(5)
    k, eps = 10, klfast.DEFAULT_EPS
    a, b = [], []
    for delta in (-1e-4, -1e-7, 1e-7, 1e-4):
        for _ in range(4):
            row = rng.normal(size=k)
            lp = np.log(eps) + delta  # log p_0: a_0 = log(sum of the others) + logit(p_0)
            row[0] = np.log(np.sum(np.exp(row[1:]))) + lp - np.log1p(-np.exp(lp))
            a.append(row)
            b.append(row + rng.normal(size=k) * 1e-6)
    a, b = np.array(a), np.array(b)
    got = getattr(klfast, measure)(a, b, input="logits")
    want = kl_logits_mpmath(a, b, 1.0, eps)
    if measure == "jeffreys":
        want = want + kl_logits_mpmath(b, a, 1.0, eps)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def _xent_mpmath(a, b, inv_t, eps, inv_t_b=None):
    """-sum p_j max(log q_j, log eps) per row in 80-digit mpmath, p =
    softmax(a inv_t), q = softmax(b inv_t_b) (inv_t_b None: inv_t; b None:
    the entropy of a); terms whose p_j rounds to 0 in float64 are 0."""
    mpmath = pytest.importorskip("mpmath")
    out = []
    with mpmath.workdps(80):
        log_eps = mpmath.log(mpmath.mpf(eps))
        tiny = mpmath.log(mpmath.mpf(2) ** -1075)  # a p_j float64 rounds to 0: a term of 0

        def log_softmax(row, inv_t):
            x = [mpmath.mpf(float(v)) * mpmath.mpf(float(inv_t)) for v in row]
            top = max(x)
            lse = top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in x))
            return [v - lse for v in x]

        for i, x in enumerate(a):
            lp = log_softmax(x, inv_t)
            lq = lp if b is None else log_softmax(b[i], inv_t if inv_t_b is None else inv_t_b)
            out.append(float(-mpmath.fsum(mpmath.exp(u) * max(v, log_eps)
                                          for u, v in zip(lp, lq) if u > tiny)))
    return np.array(out)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("measure", ["entropy", "cross_entropy"])
@pytest.mark.parametrize("k", [1, 2, 3, 10, 17, 32, 33, 64, 65])
def test_entropy_and_cross_entropy_rows_against_mpmath(dtype, measure, k):
    """Every term p_j |log q~_j| is >= 0: each row within the rounding of
    its terms (float32 rows computed in float64 too, then returned in
    float32), classes below eps included (logits spread 30, T = 0.3)."""
    rng = np.random.default_rng(300 + k)
    for temperature in (1.0, 0.3):
        for spread in (3.0, 30.0):
            a = (rng.normal(size=(21, k)) * spread).astype(dtype)
            b = (rng.normal(size=(21, k)) * spread).astype(dtype)
            b[::4] = a[::4]
            if measure == "entropy":
                got = klfast.entropy(a, input="logits", temperature=temperature)
            else:
                got = klfast.cross_entropy(a, b, input="logits", temperature=temperature)
            assert got.dtype == dtype
            inv_t = 1.0 / temperature if dtype == np.float64 else np.float32(1.0 / temperature)
            want = _xent_mpmath(a, None if measure == "entropy" else b, inv_t, _eps(dtype))
            x = a.astype(np.float64) * float(inv_t)
            y = x if measure == "entropy" else b.astype(np.float64) * float(inv_t)
            lp, lq = log_softmax(x, axis=1), log_softmax(y, axis=1)
            size = np.sum(np.exp(lp) * (np.abs(np.maximum(lq, np.log(_eps(dtype)))) + 1), axis=1)
            bound = 8 * 2.0 ** -53 * (k + 4) * size
            if dtype == np.float32 and k > 64:  # (the row kernel: float32 arithmetic)
                bound = 8 * 2.0 ** -24 * (k + 4) * size
            if dtype == np.float32:
                bound = bound + 2.0 ** -24 * np.abs(want)
            err = np.abs(got.astype(np.float64) - want)
            assert (err <= bound).all(), (temperature, spread, np.max(err / bound))
            if k == 1:
                np.testing.assert_array_equal(got, 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("measure", ["entropy", "cross_entropy"])
@pytest.mark.parametrize("k", [1, 2, 5, 10, 16, 32, 33, 64, 65])
def test_entropy_rows_bits_do_not_depend_on_their_route(dtype, measure, k):
    """As test_a_rows_bits_do_not_depend_on_its_route, for the entropy and
    the cross-entropy of rows of logits; float16 rows give the bits of their
    float32 values."""
    rng = np.random.default_rng(400 + k)
    a, b = _mixed_rows(rng, 41, k, np.float64)
    a, b = a.astype(dtype), b.astype(dtype)

    def fn(x, y, **kw):
        if measure == "entropy":
            return klfast.entropy(x, input="logits", temperature=0.7, **kw)
        return klfast.cross_entropy(x, y, input="logits", temperature=0.7, **kw)

    whole = fn(a, b)
    if dtype == np.float16:
        np.testing.assert_array_equal(
            whole, fn(a.astype(np.float32), b.astype(np.float32)).astype(whole.dtype))
    alone = np.array([fn(a[i], b[i]) for i in range(len(a))], dtype=whole.dtype)
    np.testing.assert_array_equal(whole, alone)
    np.testing.assert_array_equal(fn(a[3:], b[3:]), whole[3:])
    np.testing.assert_array_equal(fn(a[::-1], b[::-1]), whole[::-1])
    mask = rng.random(len(a)) < 0.6
    np.testing.assert_array_equal(fn(a, b, where=mask)[mask], whole[mask])
    np.testing.assert_array_equal(fn(a.T.copy(), b.T.copy(), axis=0), whole)
    reps = 70_000 // (len(a) * k) + 1  # past the size that takes a second thread
    for threads in (1, 2):
        big = fn(np.tile(a, (reps, 1)), np.tile(b, (reps, 1)), num_threads=threads)
        np.testing.assert_array_equal(big, np.tile(whole, reps))
    with general_path():
        np.testing.assert_array_equal(fn(a, b), whole)
    assert np.isfinite(whole).all() and (whole >= 0).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("forms", [("logits", "log_probs"), ("log_probs", "logits")])
def test_cross_entropy_rows_of_two_temperatures(dtype, forms):
    """Normalized log-probabilities are read as logits at T = 1, so beside
    logits at T = 0.3 the two rows of a call have their own 1 / T (inv_t_q
    in the lanes); -inf logits, eps = 0 and eps = 1e-3 included."""
    rng = np.random.default_rng(11)
    for k in (3, 10, 32):
        a = (rng.normal(size=(13, k)) * 3).astype(dtype)
        b = (rng.normal(size=(13, k)) * 3).astype(dtype)
        a[2, 0] = b[5, 1] = -np.inf  # a class of probability 0
        inv = [1.0 / 0.3 if form == "logits" else 1.0 for form in forms]
        if dtype == np.float32:
            inv = [float(np.float32(v)) for v in inv]
        for eps in (klfast.DEFAULT_EPS, 0.0, 1e-3):
            got = klfast.cross_entropy(a, b, input=forms, normalize=True, temperature=0.3,
                                       eps=eps)
            eps_k = eps if dtype == np.float64 else float(np.float32(eps))
            want = _xent_mpmath(a, b, inv[0], eps_k, inv_t_b=inv[1])
            rtol = 2e-14 if dtype == np.float64 else 3e-7
            np.testing.assert_allclose(got, want, rtol=rtol, err_msg=f"k={k} eps={eps}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("measure", ["entropy", "cross_entropy"])
@pytest.mark.parametrize("k", [2, 10, 32, 64])
def test_masked_classes_and_low_temperatures_stay_in_the_lanes(dtype, measure, k):
    """Masked classes (-inf logits) and scaled logits far below the maximum
    (T = 0.01: most rows have some below -708, where the plain exp stops)
    are scored in the lanes, in float64 for float32 rows too: within
    float64's bound of 80-digit mpmath (a float32 row the row kernel scored
    was about 3e-7 off), p_j = 0 a term of 0, a -inf log q_j with p_j > 0 a
    term of log eps (+inf at eps = 0). The bound weights each term by 1 +
    |u_j| besides: p_j = exp(u_j) / s carries the rounding of u_j = z_j / T,
    which no float64 computation avoids."""
    rng = np.random.default_rng(500 + k)
    a = (rng.normal(size=(40, k)) * 3).astype(dtype)
    b = (rng.normal(size=(40, k)) * 3).astype(dtype)
    a[rng.random(a.shape) < 0.2] = -np.inf
    b[rng.random(b.shape) < 0.2] = -np.inf
    a[np.isinf(a).all(axis=1), 0] = 1.0  # (a row of -inf: not a distribution)
    b[np.isinf(b).all(axis=1), 0] = 1.0
    b[::5] = a[::5]
    inv_t = np.float64(100.0) if dtype == np.float64 else np.float32(100.0)
    for eps in (klfast.DEFAULT_EPS, 0.0, 1e-3):
        eps_k = eps if dtype == np.float64 else float(np.float32(eps))
        if measure == "entropy":
            got = klfast.entropy(a, input="logits", temperature=0.01, eps=eps)
            want = _xent_mpmath(a, None, inv_t, eps_k)
        else:
            got = klfast.cross_entropy(a, b, input="logits", temperature=0.01, eps=eps)
            want = _xent_mpmath(a, b, inv_t, eps_k)
        assert got.dtype == dtype
        x = a.astype(np.float64) * float(inv_t)
        y = x if measure == "entropy" else b.astype(np.float64) * float(inv_t)
        lp, lq = log_softmax(x, axis=1), log_softmax(y, axis=1)
        u = x - x.max(axis=1, keepdims=True)
        p = np.exp(lp)
        with np.errstate(invalid="ignore"):
            terms = p * (np.abs(np.maximum(lq, np.log(eps_k) if eps_k else -np.inf)) + 1)
            terms = terms * (1 + np.abs(u))
        size = np.sum(np.where(p > 0, terms, 0.0), axis=1)
        bound = 8 * 2.0 ** -53 * (k + 4) * size
        if dtype == np.float32:
            bound = bound + 2.0 ** -24 * np.abs(want)
        finite = np.isfinite(want)
        np.testing.assert_array_equal(got[~finite], want[~finite])  # +inf at eps = 0
        err = np.abs(got[finite].astype(np.float64) - want[finite])
        assert (err <= bound[finite]).all(), (eps, np.max(err / bound[finite]))
        assert (got >= 0).all()
        if measure == "entropy" or eps > 0:
            assert finite.all()
        assert (u < -708).any() and np.isinf(a).any()


@pytest.mark.parametrize("measure, which", [("entropy", "p"), ("cross_entropy", "p"),
                                            ("cross_entropy", "q")])
@pytest.mark.parametrize("bad, message", [
    ([0.0, np.nan, 1.0], "contains NaN"),
    ([0.0, np.inf, 1.0], "contains +inf"),
    ([-np.inf] * 3, "has no finite logit"),
])
def test_rows_of_nan_or_infinite_logits_are_not_taken_in_the_lanes(measure, which, bad,
                                                                   message):
    """NaN, +inf and a row of -inf logits decline in the lanes (a -inf logit
    among finite ones does not): the call names the argument and the row."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(24, 3)) * 3
    b = rng.normal(size=(24, 3)) * 3
    (a if which == "p" else b)[5] = bad
    with pytest.raises(ValueError, match=f"{which}: row 5 " + message.replace("+", "\\+")):
        if measure == "entropy":
            klfast.entropy(a, input="logits")
        else:
            klfast.cross_entropy(a, b, input="logits")
