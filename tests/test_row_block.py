"""C-order rows scored 64 to a call (row_block in src/engine/divergence_rows.h).

Rows longer than the lanes take (up to _kernels' block limit) are read row
by row as in the row loop, but 64 rows go to one call and the lanes of 8 rows
are summed in the same vector adds. It promises the row loop's bits: these
tests compare the two paths bit for bit (the block limit set to 0 gives the
row loop), at every level, for every measure, dtype, length around the
64-byte block and the float32 group, partial group of 8 and partial call of
64, special value and thread count, and hold both to the slow twin.
"""
import numpy as np
import pytest

import klfast
from klfast import _kernels
from zoo import (MEASURES, call, call_raw, call_ref, call_ref_raw, distributions, kernel_rows,
                 sums_at_the_edge)

pytestmark = pytest.mark.usefixtures("isa")  # every instruction-set level

DTYPES = [np.float64, np.float32]
# lanes off in these tests, so short rows take the block too
LENGTHS = [1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 47, 63, 64, 65, 100]
N_ROWS = 2 * 64 + 37  # two whole calls and one of 4 groups of 8 and 5 rows


@pytest.fixture
def paths():
    """scored(fn): fn's result through the row block and through the row loop."""
    lanes = _kernels.set_lanes_max_k(0, 0)
    before = _kernels.set_block_max_k(1 << 30, 1 << 30)

    def scored(fn):
        _kernels.set_block_max_k(1 << 30, 1 << 30)
        block = fn()
        _kernels.set_block_max_k(0, 0)
        try:
            loop = fn()
        finally:
            _kernels.set_block_max_k(1 << 30, 1 << 30)
        return block, loop

    yield scored
    _kernels.set_block_max_k(*before)
    _kernels.set_lanes_max_k(*lanes)


def tolerance(dtype):
    return dict(rtol=1e-13, atol=1e-15) if dtype == np.float64 else dict(rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("measure, eps", [(m, e) for m in MEASURES for e in (1e-12, 0.0)]
                         + [("jensen_shannon", None)])  # (no eps: its terms need none)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", LENGTHS)
def test_block_gives_the_row_loops_bits(rng, paths, measure, dtype, k, eps):
    p = distributions(rng, (N_ROWS, k), dtype=dtype, zero_fraction=0.25)
    q = distributions(rng, (N_ROWS, k), dtype=dtype, zero_fraction=0.25)
    kw = {} if eps is None else {"eps": eps}
    block, loop = paths(lambda: call(measure, p, q, **kw))
    assert block.dtype == loop.dtype == dtype
    assert np.array_equal(block, loop)
    if eps != 0.0:  # (eps = 0: +inf where q has a zero under p > 0)
        np.testing.assert_allclose(block, call_ref(measure, p, q, **kw), **tolerance(dtype))
    got = call(measure, p[5:], q[5:], **kw)  # rows that start off the 64-row grid
    assert np.array_equal(got, loop[5:])


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype, k", [(np.float64, 12), (np.float64, 32), (np.float32, 17),
                                      (np.float32, 64)])
def test_block_two_threads_and_strides(rng, paths, measure, dtype, k):
    """Enough rows for two threads (more than 2^16 elements), and rows
    that are not back to back: a row stride past k, rows reversed, every
    other output."""
    n = 70_000 // k + 100
    p = distributions(rng, (n, k), dtype=dtype)
    q = distributions(rng, (n, k), dtype=dtype)
    block, loop = paths(lambda: call(measure, p, q, num_threads=1))
    assert np.array_equal(block, loop)
    np.testing.assert_allclose(block, call_ref(measure, p, q), **tolerance(dtype))
    assert np.array_equal(call(measure, p, q, num_threads=2), loop)
    wide_p = np.zeros((n, k + 3), dtype)
    wide_p[:, :k] = p
    wide_q = np.zeros((n, k + 3), dtype)
    wide_q[:, :k] = q
    out = np.empty(2 * n, dtype)[::2]
    assert np.array_equal(call(measure, wide_p[:, :k], wide_q[:, :k], out=out), loop)
    assert np.array_equal(call(measure, p[::-1], q[::-1]), loop[::-1])


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [9, 33, 64])
@pytest.mark.parametrize("eps", [1e-12, 0.0])
def test_block_normalize_base_and_reference_row(rng, paths, measure, dtype, k, eps):
    p = (rng.integers(0, 50, size=(N_ROWS, k)) * rng.random((N_ROWS, 1)) * 7).astype(dtype)
    q = rng.integers(1, 50, size=(N_ROWS, k)).astype(dtype)
    p[4, 0] = 1e30  # a row dominated by one entry
    p[100, :k // 2] = 0.0  # zeros (eps = 0: the exact path where q is 0 under them: none)
    kwargs = dict(normalize=True, base=2.0, eps=eps)
    block, loop = paths(lambda: call(measure, p, q, **kwargs))
    assert np.array_equal(block, loop)
    np.testing.assert_allclose(block, call_ref(measure, p, q, **kwargs), **tolerance(dtype))
    block, loop = paths(lambda: call(measure, p, q[7], **kwargs))  # one row against all
    assert np.array_equal(block, loop)
    np.testing.assert_allclose(block, call_ref(measure, p, np.tile(q[7], (N_ROWS, 1)), **kwargs),
                               **tolerance(dtype))
    p[3] = 0.0  # a row summing to 0: invalid with normalize, named
    for k_limit in (1 << 30, 0):
        _kernels.set_block_max_k(k_limit, k_limit)
        with pytest.raises(ValueError, match="row 3"):
            call(measure, p, q, **kwargs)
    _kernels.set_block_max_k(1 << 30, 1 << 30)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [20, 64])
def test_block_rows_as_given(rng, paths, measure, dtype, k):
    """check_sums=False: counts (the bit check's false alarm, cleared by a
    scalar look at the row), -0.0, a subnormal under eps = 0 and an entry
    past 2^1022 (2^126) (both the exact path), a row of zeros, rows whose
    sums are off; and the sum check's NaN for rows off by more than tol."""
    p = rng.random((N_ROWS, k)).astype(dtype)
    q = rng.random((N_ROWS, k)).astype(dtype)
    for row in (1, 70):  # in the first group of 8 rows and in a later call
        p[row] *= 40
        p[row + 1, 3] = -0.0
        q[row + 4, 0] = np.finfo(dtype).tiny / 4
        p[row + 6, 2] = np.finfo(dtype).max / 8
        p[row + 7] = 0.0
    for eps in (1e-12, 0.0):
        block, loop = paths(lambda: call_raw(measure, p, q, eps=eps))
        assert np.array_equal(block, loop, equal_nan=True)
        with np.errstate(over="ignore", invalid="ignore"):
            ref = call_ref_raw(measure, p, q, eps=eps).astype(dtype)
        fine = np.isfinite(ref)
        np.testing.assert_allclose(block[fine], ref[fine], **tolerance(dtype))


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [15, 17, 20, 33])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0])
def test_block_rows_beside_invalid_ones(rng, paths, measure, dtype, k, bad):
    """Rows next to rows with a NaN, an inf or a negative entry at either
    end. The block takes the logs of 8 rows at a time on whole vectors,
    which run from one row into the next: each valid row still gets the row
    loop's bits and the slow twin's value, each invalid one NaN."""
    p = distributions(rng, (N_ROWS, k), dtype=dtype)
    q = distributions(rng, (N_ROWS, k), dtype=dtype)
    invalid = [2, 4, 9, 70]
    for i, row in enumerate(invalid):
        x = p if i % 2 == 0 or measure == "entropy" else q
        x[row, 0 if i < 2 else -1] = bad
    block, loop = paths(lambda: kernel_rows(measure, p, q, klfast.SUM_TOLERANCE))
    assert np.array_equal(block, loop, equal_nan=True)
    assert np.isnan(block[invalid]).all()
    valid = np.setdiff1d(np.arange(N_ROWS), invalid)
    np.testing.assert_allclose(block[valid], call_ref(measure, p[valid], q[valid]),
                               **tolerance(dtype))


# lengths the block takes by default, in each dtype
BLOCK_CASES = [(np.float64, 24), (np.float32, 40)]


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("bad", [-0.25, np.nan, np.inf])
@pytest.mark.parametrize("row", [4, 100])
@pytest.mark.parametrize("dtype, k", BLOCK_CASES)
def test_block_names_the_invalid_row(rng, paths, measure, bad, row, dtype, k):
    p = distributions(rng, (150, k), dtype=dtype)
    q = distributions(rng, (150, k), dtype=dtype)
    p[row, 17] = bad
    for k_limit in (1 << 30, 0):
        _kernels.set_block_max_k(k_limit, k_limit)
        with pytest.raises(ValueError, match=f"row {row}"):
            call(measure, p, q)
    _kernels.set_block_max_k(1 << 30, 1 << 30)


@pytest.mark.parametrize("measure", ["kl", "entropy"])  # (entropy: p's sum only)
@pytest.mark.parametrize("which", ["p", "q"])
@pytest.mark.parametrize("dtype, k", BLOCK_CASES)
def test_rows_off_their_sum_are_named_by_the_block(rng, measure, which, dtype, k):
    """The block's own sum check, with the default limits: a row as given
    that does not sum to 1 gives the kernel's NaN, named by the API."""
    p = distributions(rng, (150, k), dtype=dtype)
    q = distributions(rng, (150, k), dtype=dtype)
    (p if which == "p" else q)[70] *= 1.01
    if measure == "entropy" and which == "q":
        call(measure, p, q)  # q is not read
        return
    with pytest.raises(ValueError, match="row 70"):
        call(measure, p, q)


@pytest.mark.parametrize("measure", ["kl", "entropy", "jensen_shannon"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [17, 24, 40, 48, 49, 64])
@pytest.mark.parametrize("tol", [klfast.SUM_TOLERANCE, 1e-6, 0.0, 0.5, 5.0, 1e30, np.inf,
                                 np.nan, -1e-3, -1e-7])
def test_block_sum_check_at_its_edge(rng, paths, measure, dtype, k, tol):
    """Rows whose sums lie within a few 1e-6 of 1 +- tol, in p or in q: the
    block gives the row loop's values and NaNs. float32 rows of at most 48
    decide the check from sums in float where those are far enough from
    the edge, and from the row loop's sums where not; a margin too small
    shows here as a row on the other side of the check."""
    n = 1000
    p, q = sums_at_the_edge(rng, (n, k), tol, dtype)
    block, loop = paths(lambda: kernel_rows(measure, p, q, tol))
    if np.isfinite(tol) and 0 < tol < 100:  # both sides of the edge are here
        assert 0 < np.isnan(loop).sum() < n
    assert np.array_equal(block, loop, equal_nan=True)


def test_block_limit_can_be_set_back():
    before = _kernels.set_block_max_k(7, 9)
    assert _kernels.set_block_max_k(*before) == (7, 9, 7, 9)
    before = _kernels.set_block_max_k(7, 9, 11, 13)
    assert _kernels.set_block_max_k(*before) == (7, 9, 11, 13)


@pytest.mark.parametrize("dtype, k", [(np.float64, 33), (np.float64, 64), (np.float32, 65),
                                      (np.float32, 100)])
def test_entropy_block_at_its_own_limits(rng, dtype, k):
    """The entropy's rows past the other measures' block limits, with the
    default limits (the block) and with the row loop: the same bits, the
    slow twin's values."""
    p = distributions(rng, (N_ROWS, k), dtype=dtype, zero_fraction=0.25)
    block = klfast.entropy(p)
    before = _kernels.set_block_max_k(0, 0)
    try:
        loop = klfast.entropy(p)
    finally:
        _kernels.set_block_max_k(*before)
    assert np.array_equal(block, loop)
    np.testing.assert_allclose(block, call_ref("entropy", p), **tolerance(dtype))


# Entropy's long rows read together (row_loop over two or four rows): lengths
# around the 64-byte block and the group, and past a few groups' widening of
# the sums
PAIR_LENGTHS = [65, 127, 128, 129, 200, 1000, 2053, 4099]  # fours from 16 KB rows


@pytest.fixture
def pair_paths():
    """scored(fn): fn's result with entropy's rows read together (the row
    block, two or four at a time) and one at a time (the row loop)."""
    lanes = _kernels.set_lanes_max_k(0, 0)
    block = _kernels.set_block_max_k(0, 0)
    before = _kernels.set_pair_min_k(0, 0)

    def scored(fn):
        _kernels.set_pair_min_k(0, 0)
        together = fn()
        _kernels.set_pair_min_k(1 << 62, 1 << 62)
        try:
            one = fn()
        finally:
            _kernels.set_pair_min_k(0, 0)
        return together, one

    yield scored
    _kernels.set_pair_min_k(*before)
    _kernels.set_block_max_k(*block)
    _kernels.set_lanes_max_k(*lanes)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", PAIR_LENGTHS)
@pytest.mark.parametrize("eps", [1e-12, 0.0])
def test_entropy_pairs_give_the_row_loops_bits(rng, pair_paths, dtype, k, eps):
    """N_ROWS (odd) rows: rows read together, and the last call's last row
    alone."""
    p = distributions(rng, (N_ROWS, k), dtype=dtype, zero_fraction=0.25)
    together, one = pair_paths(lambda: klfast.entropy(p, eps=eps))
    assert together.dtype == one.dtype == dtype
    assert np.array_equal(together, one)
    np.testing.assert_allclose(together, call_ref("entropy", p, eps=eps), **tolerance(dtype))
    assert np.array_equal(klfast.entropy(p[1:], eps=eps), one[1:])  # shifted by a row
    assert np.array_equal(klfast.entropy(p[::-1], eps=eps, num_threads=2), one[::-1])
    wide = np.zeros((N_ROWS, k + 5), dtype)
    wide[:, :k] = p
    out = np.empty(2 * N_ROWS, dtype)[::2]
    assert np.array_equal(klfast.entropy(wide[:, :k], eps=eps, out=out), one)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [65, 1000, 4099])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0, "counts", "off"])
def test_entropy_pairs_beside_invalid_rows(rng, pair_paths, dtype, k, bad):
    """A row with a bad entry, a row of counts or a row off its sum in each
    place of two or four rows read together, and as the lone last row: it
    alone gets NaN (or, as given, the count row's value), the rows read with
    it their own bits, and the API names it."""
    p = distributions(rng, (N_ROWS, k), dtype=dtype)
    rows = [2, 4, 9, 15, N_ROWS - 1]  # of four: third, first, second, fourth; the last row
    for row in rows:
        if bad == "counts":
            p[row] *= 40
        elif bad == "off":
            p[row] *= 1.01
        else:
            p[row, row % k] = bad
    together, one = pair_paths(lambda: kernel_rows("entropy", p, p, klfast.SUM_TOLERANCE))
    assert np.array_equal(together, one, equal_nan=True)
    assert np.isnan(together[rows]).all()
    valid = np.setdiff1d(np.arange(N_ROWS), rows)
    np.testing.assert_allclose(together[valid], call_ref("entropy", p[valid]), **tolerance(dtype))
    with pytest.raises(ValueError, match="row 2"):
        klfast.entropy(p)
    if bad == "counts":  # scored as given: the row loop's value, the slow twin's
        together, one = pair_paths(lambda: call_raw("entropy", p))
        assert np.array_equal(together, one)
        np.testing.assert_allclose(together, call_ref_raw("entropy", p), **tolerance(dtype))


def test_pair_limit_can_be_set_back():
    before = _kernels.set_pair_min_k(123, 456)
    assert _kernels.set_pair_min_k(*before) == (123, 456)
