"""The oracle itself: the slow twin agrees with scipy and mpmath, so a
disagreement elsewhere points at klfast, not at the reference."""
import numpy as np
import pytest
import scipy.special
import scipy.stats

from klfast._core import reference as _reference
from zoo import MEASURES, distributions


def test_twin_kl_and_jeffreys_eps0_are_rel_entr(rng):
    p = distributions(rng, (30, 8), zero_fraction=0.3)
    q = distributions(rng, (30, 8), zero_fraction=0.3)
    np.testing.assert_allclose(_reference.kl(p, q, eps=0),
                               scipy.special.rel_entr(p, q).sum(-1), rtol=1e-14)
    np.testing.assert_allclose(
        _reference.jeffreys(p, q, eps=0),
        (scipy.special.rel_entr(p, q) + scipy.special.rel_entr(q, p)).sum(-1), rtol=1e-14)


def test_twin_normalized_is_scipy_stats_entropy(rng):
    p = rng.random((10, 6))
    q = rng.random((10, 6))
    np.testing.assert_allclose(_reference.entropy(p, normalize=True, eps=0, base=2),
                               scipy.stats.entropy(p, base=2, axis=-1), rtol=1e-13)
    np.testing.assert_allclose(_reference.kl(p, q, normalize=True, eps=0),
                               scipy.stats.entropy(p, q, axis=-1), rtol=1e-13)


@pytest.mark.parametrize("measure", MEASURES)
def test_twin_edge_rows_match_mpmath(measure):
    from test_values import HAND_PICKED, mp_row

    for name, p, q, eps in HAND_PICKED:
        want = mp_row(measure, p, q, eps)
        got = float(_reference.MEASURES[measure](p, q, eps=eps, check_sums=False)
                    if measure != "entropy"
                    else _reference.entropy(p, eps=eps, check_sums=False))
        assert got == pytest.approx(want, rel=1e-13, abs=1e-320), name


def test_twin_eps_rule():
    # p~ = max(p, eps), q~ = max(q, eps); p == 0 terms vanish
    assert _reference.kl([0.5, 0.5, 0.0], [0.5, 0.0, 0.5], eps=0.1) == pytest.approx(
        0.5 * np.log(0.5 / 0.1))
    assert _reference.cross_entropy([1.0, 0.0], [0.0, 1.0], eps=0.1) == pytest.approx(
        -np.log(0.1))
    assert _reference.entropy([1e-5, 1.0], eps=1e-3) == pytest.approx(-1e-5 * np.log(1e-3))
    assert _reference.jeffreys([0.2, 0.2], [0.2, 0.2], eps=0.5, check_sums=False) == 0.0
    assert _reference.kl([1.0, 0.0], [0.0, 1.0], eps=0) == np.inf
