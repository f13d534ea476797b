"""Distributions across lanes (src/engine/lanes_rows.h).

Columns (``axis=0`` on C order, Fortran order, any element stride) and short
C-order rows are scored LANES distributions at a time, one per vector lane.
The lane loop promises the row loop's bits: each distribution's sums are
taken in the row loop's order. These tests hold it to that, bit for bit,
for every measure, dtype, instruction-set level, length (around the 64-byte
block and the 64-element chunk), partial tile, special value and thread
count, and hold both to the slow twin.
"""
import numpy as np
import pytest
from scipy import special

import klfast
from klfast import _kernels
from zoo import (MEASURES, call, call_raw, call_ref, call_ref_raw, distributions, kernel_rows,
                 sums_at_the_edge)

pytestmark = pytest.mark.usefixtures("isa")  # every instruction-set level

DTYPES = [np.float64, np.float32]
# lengths around the positions (8 / 16), the float32 group and the chunk (64),
# and float32's two ways of turning short rows (permutes up to 4)
LENGTHS = [1, 2, 3, 4, 5, 7, 8, 9, 10, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 129]
# a row count with two whole strips of 64 (swept when the columns are
# consecutive) and a partial one, with whole tiles and a partial one at
# every width (2 .. 16)
N_ROWS = 2 * 64 + 37


@pytest.fixture
def lanes_for_every_length():
    """C-order rows of any length go across lanes while the test runs."""
    before = _kernels.set_lanes_max_k(1 << 30, 1 << 30)
    yield
    _kernels.set_lanes_max_k(*before)


def rows_one_by_one(measure, p, q, **kwargs):
    """Each row alone: a call of one row never goes across lanes."""
    return np.array([call(measure, p[i], q[i], **kwargs) for i in range(len(p))])


def tolerance(dtype):
    return dict(rtol=1e-13, atol=1e-15) if dtype == np.float64 else dict(rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", LENGTHS)
@pytest.mark.parametrize("eps", [1e-12, 0.0])
def test_lanes_give_the_row_loops_bits(rng, lanes_for_every_length, measure, dtype, k, eps):
    p = distributions(rng, (N_ROWS, k), dtype=dtype, zero_fraction=0.25)
    q = distributions(rng, (N_ROWS, k), dtype=dtype, zero_fraction=0.25)
    expected = rows_one_by_one(measure, p, q, eps=eps)
    if eps:  # (eps = 0: +inf where q has a zero under p > 0, in both)
        np.testing.assert_allclose(expected, call_ref(measure, p, q, eps=eps), **tolerance(dtype))
    for name, (pv, qv, axis) in {
        "C rows": (p, q, -1),
        "columns": (p.T.copy(), q.T.copy(), 0),
        "Fortran rows": (np.asfortranarray(p), np.asfortranarray(q), -1),
        "every other element": (np.repeat(p, 2, axis=1)[:, ::2], np.repeat(q, 2, axis=1)[:, ::2],
                                -1),
        "reversed columns": (p.T.copy()[:, ::-1], q.T.copy()[:, ::-1], 0),
    }.items():
        got = call(measure, pv, qv, axis=axis, eps=eps)
        if name == "reversed columns":
            got = got[::-1]
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected), name


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 9, 33, 130])
def test_lanes_normalize_and_base(rng, lanes_for_every_length, measure, dtype, k):
    p = (rng.integers(0, 50, size=(N_ROWS, k)) * rng.random((N_ROWS, 1)) * 7).astype(dtype)
    q = (rng.integers(1, 50, size=(N_ROWS, k))).astype(dtype)
    p[3] = 0.0  # a row summing to 0: invalid with normalize
    p[4, 0] = 1e30  # a row dominated by one entry
    kwargs = dict(normalize=True, base=2.0)
    ok = np.ones(N_ROWS, bool)
    ok[3] = False
    expected = rows_one_by_one(measure, p[ok], q[ok], **kwargs)
    np.testing.assert_allclose(expected, call_ref(measure, p[ok], q[ok], **kwargs),
                               **tolerance(dtype))
    for pv, qv, axis in [(p[ok], q[ok], -1), (p[ok].T.copy(), q[ok].T.copy(), 0)]:
        assert np.array_equal(call(measure, pv, qv, axis=axis, **kwargs), expected)
    with pytest.raises(ValueError, match="row 3"):
        call(measure, p.T.copy(), q.T.copy(), axis=0, **kwargs)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lanes_rows_as_given(rng, lanes_for_every_length, measure, dtype):
    """check_sums=False: counts (entries of 2 or more raise the bit check's
    false alarm, cleared by a scalar look at the column), -0.0, huge and
    tiny entries, and rows whose sums are off."""
    k = 11
    p = rng.random((N_ROWS, k)).astype(dtype)
    q = rng.random((N_ROWS, k)).astype(dtype)
    p[1] *= 40  # counts-like
    p[2, 3] = -0.0
    q[5, 0] = np.finfo(dtype).tiny / 4  # subnormal: the exact path (eps = 0)
    p[7, 2] = np.finfo(dtype).max / 8  # past 2^1022 (2^126): the exact path
    for eps in (1e-12, 0.0):
        expected = np.array([call_raw(measure, p[i], q[i], eps=eps) for i in range(N_ROWS)])
        with np.errstate(over="ignore", invalid="ignore"):
            ref = call_ref_raw(measure, p, q, eps=eps).astype(dtype)  # past float32: inf
        fine = np.isfinite(ref)
        np.testing.assert_allclose(expected[fine], ref[fine], **tolerance(dtype))
        for pv, qv, axis in [(p, q, -1), (p.T.copy(), q.T.copy(), 0)]:
            got = call_raw(measure, pv, qv, axis=axis, eps=eps)
            assert np.array_equal(got, expected, equal_nan=True)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("bad", [-0.25, np.nan, np.inf])
@pytest.mark.parametrize("n, row", [(12, 4), (150, 100)])  # a tile, a swept strip
def test_lanes_name_the_invalid_column(rng, measure, bad, n, row):
    """An invalid entry in a column gives the error C order gives: the same
    input, the same distribution named."""
    p = distributions(rng, (n, 20))
    q = distributions(rng, (n, 20))
    p[row, 17] = bad
    with pytest.raises(ValueError) as expected:
        call(measure, p, q)
    assert f"row {row}" in str(expected.value)
    for pv, qv, axis in [(p.T.copy(), q.T.copy(), 0), (np.asfortranarray(p), q, -1)]:
        with pytest.raises(ValueError) as got:
            call(measure, pv, qv, axis=axis)
        assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lanes_reference_column_and_threads(rng, dtype):
    """One reference distribution against many columns (a broadcast lane
    source), and two threads, give the one-row bits."""
    k, n = 10, 5000
    p = distributions(rng, (n, k), dtype=dtype)
    q_row = distributions(rng, (k,), dtype=dtype)
    expected = klfast.kl(p, np.tile(q_row, (n, 1)), num_threads=1)
    pc = p.T.copy()
    for threads in (1, 2):
        assert np.array_equal(klfast.kl(pc, q_row[:, None], axis=0, num_threads=threads), expected)
        assert np.array_equal(klfast.kl(np.asfortranarray(p), q_row, num_threads=threads),
                              expected)
    np.testing.assert_allclose(expected, call_ref("kl", p, q_row), **tolerance(dtype))


# short C-order rows: a tile of them is k whole vectors, turned into vectors
# of elements in registers (up to 16 elements; 2-10 compiled for each k, and
# 11-16 in functions of their own at AVX-512)
SHORT_LENGTHS = list(range(1, 17))


def eps_kwargs(measure, eps):
    """jensen_shannon takes no eps (its terms need none)."""
    return {} if measure == "jensen_shannon" else {"eps": eps}


@pytest.mark.parametrize("measure, eps", [(m, e) for m in MEASURES for e in (1e-12, 0.0)]
                         + [("jensen_shannon", 0.0)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", SHORT_LENGTHS)
def test_short_rows_own_and_reference_row(rng, lanes_for_every_length, measure, eps, dtype, k):
    """Short C-order rows against their own rows and against one reference
    row for all: the row loop's bits (each row scored alone), and the slow
    twin."""
    p = distributions(rng, (N_ROWS, k), dtype=dtype, zero_fraction=0.25)
    q = distributions(rng, (N_ROWS, k), dtype=dtype, zero_fraction=0.25)
    q_row = distributions(rng, (k,), dtype=dtype, zero_fraction=0.0)
    kwargs = eps_kwargs(measure, eps)
    for qv in (q, q_row):
        qb = np.broadcast_to(qv, p.shape)
        expected = rows_one_by_one(measure, p, qb, **kwargs)
        got = call(measure, p, qv, **kwargs)
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected)
        if eps or measure == "jensen_shannon":
            np.testing.assert_allclose(got, call_ref(measure, p, qb, **kwargs), **tolerance(dtype))


@pytest.mark.parametrize("measure", MEASURES + ("jensen_shannon",))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 3, 10, 12, 16])
def test_short_rows_special_values(rng, lanes_for_every_length, measure, dtype, k):
    """Entries the fast path cannot take (subnormal, huge, -0.0, counts)
    inside whole tiles of short rows, C-ordered or in columns: each row as
    scored alone."""
    p = rng.random((N_ROWS, k)).astype(dtype)
    q = rng.random((N_ROWS, k)).astype(dtype)
    p[1] *= 40
    p[17, 0] = -0.0
    q[18, k - 1] = np.finfo(dtype).tiny / 4
    p[70, k // 2] = np.finfo(dtype).max / 8
    p[71] = 0.0
    for eps in (1e-12, 0.0):
        kwargs = eps_kwargs(measure, eps)
        expected = np.array([call_raw(measure, p[i], q[i], **kwargs) for i in range(N_ROWS)])
        assert np.array_equal(call_raw(measure, p, q, **kwargs), expected, equal_nan=True)
        # the same distributions as columns and as Fortran rows (read in place)
        got = call_raw(measure, p.T.copy(), q.T.copy(), axis=0, **kwargs)
        assert np.array_equal(got, expected, equal_nan=True), "columns"
        got = call_raw(measure, np.asfortranarray(p), np.asfortranarray(q), **kwargs)
        assert np.array_equal(got, expected, equal_nan=True), "Fortran rows"


# rows where many_strips puts what the fast path cannot take: in the first
# and last tile of a call's strips (32 strips of 64), the next call's first
# tile, its last strip, and the partial tile at the end
MANY_STRIPS_ROWS = [0, 63, 64, 2047, 2048, 4095, 4096 + 99]


def many_strips(rng, k, dtype):
    """4,196 short rows of p and q (two calls of 32 whole strips, a partial
    strip and a partial tile) with special entries at MANY_STRIPS_ROWS."""
    n = 2 * 32 * 64 + 100
    p = distributions(rng, (n, k), dtype=dtype, zero_fraction=0.25)
    q = distributions(rng, (n, k), dtype=dtype, zero_fraction=0.25)
    r = MANY_STRIPS_ROWS
    p[r[0]] *= 40
    p[r[1], 0] = -0.0
    q[r[2], k - 1] = np.finfo(dtype).tiny / 4
    p[r[3], k // 2] = np.finfo(dtype).max / 8
    p[r[4]] = 0.0
    q[r[5]] *= 3
    q[r[6], 0] = np.finfo(dtype).tiny / 8
    return p, q


@pytest.mark.parametrize("measure", MEASURES + ("jensen_shannon",))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 5, 10, 13, 16])
def test_short_rows_many_strips_to_a_call(rng, lanes_for_every_length, measure, dtype, k):
    """Short rows go to the kernel up to 32 strips of 64 at a time, each
    strip's rows for the exact path as a word of bits: rows that take the
    exact path anywhere in those strips, as C rows, columns, Fortran rows
    and against one reference row, come out as each row scored alone; and
    invalid rows far into a call are named."""
    p, q = many_strips(rng, k, dtype)
    n = len(p)
    expected = np.array([call_raw(measure, p[i], q[i]) for i in range(n)])
    assert np.array_equal(call_raw(measure, p, q), expected, equal_nan=True), "C rows"
    got = call_raw(measure, p.T.copy(), q.T.copy(), axis=0)
    assert np.array_equal(got, expected, equal_nan=True), "columns"
    got = call_raw(measure, np.asfortranarray(p), np.asfortranarray(q))
    assert np.array_equal(got, expected, equal_nan=True), "Fortran rows"
    q_row = distributions(rng, (k,), dtype=dtype)
    expected = np.array([call_raw(measure, p[i], q_row) for i in range(n)])
    got = call_raw(measure, p, q_row)
    assert np.array_equal(got, expected, equal_nan=True), "reference row"
    # rows that fail the sum check, or hold a negative entry or NaN, far
    # into the second call
    for row, bad in ((3001, 2.0), (4095, -1.0), (2048, np.nan)):
        good = distributions(rng, (n, k), dtype=dtype)
        good[row] *= bad
        with pytest.raises(ValueError, match=f"row {row}"):
            call(measure, good, distributions(rng, (n, k), dtype=dtype))


def row_loop_rows(measure, p, q, tol, **kwargs):
    """kernel_rows with every row in the row loop (no tiles, no row blocks)."""
    before = _kernels.set_lanes_max_k(0, 0), _kernels.set_block_max_k(0, 0)
    try:
        return kernel_rows(measure, p, q, tol, **kwargs)
    finally:
        _kernels.set_lanes_max_k(*before[0])
        _kernels.set_block_max_k(*before[1])


@pytest.mark.parametrize("measure", ["kl", "entropy", "jensen_shannon"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 3, 5, 10, 12, 16])
@pytest.mark.parametrize("tol", [klfast.SUM_TOLERANCE, 1e-6, 0.0, 0.5, 5.0, 1e30, np.inf,
                                 np.nan, -1e-3, -1e-7])
def test_short_rows_sum_check_at_its_edge(rng, measure, dtype, k, tol):
    """Rows whose sums lie within a few 1e-6 of 1 +- tol, in p or in q,
    in tiles of short rows (C rows and columns): the same values and the
    same NaNs as the row loop. float32 tiles decide the check from sums in
    float where those are far enough from the edge, and from the row
    loop's sums where not; a margin too small shows here as a row on the
    other side of the check."""
    n = 2000
    p, q = sums_at_the_edge(rng, (n, k), tol, dtype)
    # rows of zeros, +0 and -0 (a short tile's row sum of -0 entries can be
    # -0 where the row loop's is +0: the check must come out the same)
    p[5], p[6], q[7], q[8] = 0.0, -0.0, 0.0, -0.0
    expected = row_loop_rows(measure, p, q, tol)
    if np.isfinite(tol) and 0 < tol < 100:  # both sides of the edge are here
        assert 0 < np.isnan(expected).sum() < n
    got = kernel_rows(measure, p, q, tol)
    assert np.array_equal(got, expected, equal_nan=True), "C rows"
    got = kernel_rows(measure, p.T.copy(), q.T.copy(), tol, axis=0)
    assert np.array_equal(got, expected, equal_nan=True), "columns"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 3, 8, 12])  # (float32: 8 loads an undecided tile again)
@pytest.mark.parametrize("tol", [klfast.SUM_TOLERANCE, 1e-6, 0.0, 0.25, 0.4999999, 0.5])
def test_short_rows_sum_check_to_the_ulp(dtype, k, tol):
    """Rows whose sums are the few numbers of the dtype nearest 1 - tol and
    1 + tol, summed exactly (0.25, s - 0.25, zeros): NaN exactly where
    numpy's |s - 1| <= tol fails, in the row loop and, the same bits, in
    tiles of short rows (C rows, columns), sums in p and in q. Short tiles
    check a sum against two bounds instead of subtracting 1 (lanes_rows.h,
    sums_check): a bound one ulp off fails here."""
    sums = []
    for edge in (1 - tol, 1 + tol):
        s = dtype(edge)
        for _ in range(4):
            s = np.nextafter(s, dtype(0))
        for _ in range(9):
            sums.append(s)
            s = np.nextafter(s, dtype(2))
    sums = np.array(sums * 8, dtype)  # whole tiles of either width
    n = len(sums)
    p = np.zeros((n, k), dtype)
    p[:, 0] = 0.25
    p[:, 1] = sums - dtype(0.25)
    assert np.array_equal(p.astype(np.float64).sum(axis=1), sums.astype(np.float64))
    q = np.zeros((n, k), dtype)
    q[:, 0], q[:, 1] = 0.25, 0.75  # sums to 1 exactly
    fails = ~(np.abs(sums.astype(np.float64) - 1) <= tol)
    assert 0 < fails.sum() < n or tol >= 0.5
    for measure, a, b in (("kl", p, q), ("kl", q, p), ("entropy", p, p)):
        rows = row_loop_rows(measure, a, b, tol)
        assert np.array_equal(np.isnan(rows), fails), "row loop"
        got = kernel_rows(measure, a, b, tol)
        assert np.array_equal(got, rows, equal_nan=True), "C rows"
        got = kernel_rows(measure, a.T.copy(), b.T.copy(), tol, axis=0)
        assert np.array_equal(got, rows, equal_nan=True), "columns"


@pytest.mark.parametrize("measure", MEASURES + ("jensen_shannon",))
@pytest.mark.parametrize("scale", [1.0, 1 / np.log(2)])
def test_float32_rows_of_two_add_in_float(rng, measure, scale):
    """float32 rows of 2 in base e (scale 1) add their two terms in float
    (lanes_rows.h, pair_sums) where the row loop widens them, adds them in
    double and rounds that to float: the same bits, as the double rounding
    of a sum of two floats is innocuous. Entries from 1e-18 to 4e37, so
    terms of both signs from tiny to near the float limit, zeros and -0,
    and rows whose two finite terms overflow float when added (kl: the
    double sum does not; +inf both ways): the row loop's bits in C rows and
    columns, and numpy's float64 sums (of the same float32 entries)
    rounded to float32."""
    n = 16 * 64
    p = np.ldexp(rng.random((n, 2)) + 0.5, rng.integers(-60, 125, (n, 2))).astype(np.float32)
    q = np.ldexp(rng.random((n, 2)) + 0.5, rng.integers(-60, 125, (n, 2))).astype(np.float32)
    p[:16] = q[:16] = rng.random((16, 2)).astype(np.float32)  # small terms
    p[16:32, 0], q[32:48, 1], p[48:64, 1] = 0.0, 0.0, -0.0
    big = np.float32(2.0 ** 125)  # terms near 6 big, their sum past float's limit
    p[64:80], q[64:80] = big, np.float32(big / np.exp(6))
    got = kernel_rows(measure, p, q, np.inf, scale=scale)
    expected = row_loop_rows(measure, p, q, np.inf, scale=scale)
    assert np.array_equal(got, expected, equal_nan=True), "C rows"
    got = kernel_rows(measure, p.T.copy(), q.T.copy(), np.inf, axis=0, scale=scale)
    assert np.array_equal(got, expected, equal_nan=True), "columns"
    if measure in ("kl", "entropy"):
        a = np.maximum(p.astype(np.float64), 1e-12)
        b = a if measure == "entropy" else np.maximum(q.astype(np.float64), 1e-12)
        terms = np.where(p > 0, p * (np.log(a / b) if measure == "kl" else -np.log(a)), 0.0)
        ref = (terms.sum(axis=1) * scale).astype(np.float32)
        assert np.all(np.isinf(ref[64:80])) and np.array_equal(got[64:80], ref[64:80])
        near = np.abs(terms).sum(axis=1) <= 2 * np.abs(terms.sum(axis=1))  # no cancelling
        assert near.sum() > n // 2
        np.testing.assert_allclose(got[near], ref[near], rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("measure", MEASURES + ("jensen_shannon",))
@pytest.mark.parametrize("dtype", DTYPES)
def test_streamed_results_are_the_same(rng, measure, dtype):
    """Short C rows with a large output (here: any, set_stream_bytes(0))
    write whole 64-byte lines of results past the cache, handed out from the
    first row whose result starts a line (_kernels.pyx, Rows.stream): the
    row loop's bits at every offset of out from a line, on 1 and 2 threads,
    with rows of q and with one row of q for all, rows failing the sum check
    and special values included, and nothing written outside out."""
    n = 3 * 64 * 64 + 37  # whole claims, whole strips and a partial one
    p = distributions(rng, (n, 2), dtype=dtype, zero_fraction=0.2)
    q = distributions(rng, (n, 2), dtype=dtype, zero_fraction=0.2)
    p[100] *= 1.5  # fails the sum check: NaN
    p[3000, 0], q[5000, 1] = np.inf, -0.0
    q1 = q[:1]
    size = np.dtype(dtype).itemsize

    def into(out, threads, q_rows):
        _kernels.rows(_kernels.MEASURES[measure], p, p.strides[0], q_rows,
                      q_rows.strides[0] if len(q_rows) > 1 else 0, out, out.strides[0], n, 2,
                      1e-12, 1.0, False, klfast.SUM_TOLERANCE, threads)

    for q_rows in (q, q1):
        qq = q_rows if len(q_rows) > 1 else np.repeat(q1, n, axis=0)
        expected = row_loop_rows(measure, p, qq, klfast.SUM_TOLERANCE)
        assert np.isnan(expected[100]) and not np.isnan(expected[:100]).any()
        before = _kernels.set_stream_bytes(0)
        try:
            for threads in (1, 2):
                for shift in range(64 // size):
                    buf = np.full(n + 2 * 64 // size, 7, dtype)
                    start = (-buf.ctypes.data % 64) // size + shift
                    into(buf[start:start + n], threads, q_rows)
                    assert np.array_equal(buf[start:start + n], expected, equal_nan=True), shift
                    assert (buf[:start] == 7).all() and (buf[start + n:] == 7).all(), shift
        finally:
            _kernels.set_stream_bytes(before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 3, 12, 33])
def test_js_flags_tiny_entries_at_any_eps(rng, dtype, k):
    """jensen_shannon's term sends a tiny positive entry to the exact path
    whatever eps the kernel gets (it has no eps: the API passes 0): with
    eps = 1e-12 (where the other measures' terms flag nothing) the results
    are those of eps = 0, in tiles of short rows, columns and the row loop,
    and near scipy's float64 sum."""
    tiny = np.finfo(dtype).tiny / 4  # subnormal
    p = distributions(rng, (640, k), dtype=dtype)
    q = distributions(rng, (640, k), dtype=dtype)
    p[::3, 0], q[1::5, 1] = tiny, tiny
    for a, b, axis in ((p, q, -1), (p.T.copy(), q.T.copy(), 0)):
        n, kk = (a.shape[0], a.shape[1]) if axis == -1 else (a.shape[1], a.shape[0])
        es, rs = a.strides[axis], a.strides[1 - (axis % 2)]
        got = {}
        for eps in (0.0, 1e-12):
            out = np.empty(n, dtype)
            _kernels.rows(_kernels.MEASURES["jensen_shannon"], a, rs, b, rs, out, out.strides[0],
                          n, kk, eps, 1.0, False, np.inf, 1, es, es)
            got[eps] = out
        assert np.array_equal(got[1e-12], got[0.0]), axis
    m = (p.astype(np.float64) + q.astype(np.float64)) / 2
    ref = (special.rel_entr(p.astype(np.float64), m).sum(1)
           + special.rel_entr(q.astype(np.float64), m).sum(1)) / 2
    # (absolute too: the plain float64 sum loses digits on nearly equal rows)
    tol = (1e-5, 1e-7) if dtype == np.float32 else (1e-10, 1e-15)
    assert np.allclose(got[0.0], ref, rtol=tol[0], atol=tol[1])


@pytest.mark.parametrize("bad", [-0.25, np.nan, np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_short_rows_name_the_invalid_row(rng, bad, dtype):
    """An invalid entry in a tile of short rows names its row, as the row
    loop does (k = 3: across lanes by default)."""
    p = distributions(rng, (200, 3), dtype=dtype)
    q = distributions(rng, (200, 3), dtype=dtype)
    p[133, 1] = bad
    with pytest.raises(ValueError, match="row 133"):
        klfast.kl(p, q)
    with pytest.raises(ValueError, match="row 133"):
        klfast.kl(q, p)


def test_lanes_limit_can_be_set_back():
    """The switch between the loops is a speed choice only: the default
    limits are small and positive, and setting them back and forth works."""
    before = _kernels.set_lanes_max_k(3, 5)
    assert all(1 <= k <= 64 for k in before)
    assert _kernels.set_lanes_max_k(*before) == (3, 5, 3, 5)
    assert _kernels.set_lanes_max_k(*before) == before


def rel_entr_columns(p, q):
    """KL of each column, in float64 with scipy (the independent reference)."""
    return special.rel_entr(p.astype(np.float64), q.astype(np.float64)).sum(axis=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 10, 64, 130, 1000])
@pytest.mark.parametrize("threads", [1, 2])
def test_swept_columns_against_scipy(rng, dtype, k, threads):
    """Columns of C order (axis=0) and Fortran rows, swept in strips of 64,
    with whole strips and a partial one, as scipy's rel_entr sums them, and
    bit for bit as each distribution alone (C order, one row)."""
    n = 3 * 64 + 5
    p = distributions(rng, (k, n), dtype=dtype, axis=0)
    q = distributions(rng, (k, n), dtype=dtype, zero_fraction=0, axis=0)
    expected = rel_entr_columns(p, q)
    alone = np.array([klfast.kl(p[:, i].copy(), q[:, i].copy()) for i in range(n)])
    got = klfast.kl(p, q, axis=0, num_threads=threads)
    assert got.dtype == dtype and got.shape == (n,)
    np.testing.assert_allclose(got, expected, **tolerance(dtype))
    assert np.array_equal(got, alone)
    assert np.array_equal(klfast.kl(p.T.copy(order="F"), q.T.copy(order="F"),
                                    num_threads=threads), alone)


@pytest.mark.parametrize("dtype", DTYPES)
def test_swept_columns_odd_and_negative_strides(rng, dtype):
    """Every other column, reversed rows and reversed columns of a C array,
    columns of a 3-D array, a broadcast reference column, out= and keepdims."""
    k, n = 12, 300
    big_p = distributions(rng, (k, 2 * n), dtype=dtype, axis=0)
    big_q = distributions(rng, (k, 2 * n), dtype=dtype, zero_fraction=0, axis=0)
    for p, q in [(big_p[:, ::2], big_q[:, ::2]),  # odd stride: tiles, not a sweep
                 (big_p[::-1], big_q[::-1]),  # negative element stride: swept
                 (big_p[:, ::-1], big_q[:, ::-1]),
                 (big_p[::-1, ::-1], big_q[::-1, ::-1])]:
        expected = rel_entr_columns(p, q)
        np.testing.assert_allclose(klfast.kl(p, q, axis=0), expected, **tolerance(dtype))
        out = np.full((1, p.shape[1]), -1.0, dtype=dtype)
        result = klfast.kl(p, q, axis=0, keepdims=True, out=out)
        assert result is out
        np.testing.assert_allclose(out[0], expected, **tolerance(dtype))
    ref = big_q[:, :1]  # one reference column for every column
    np.testing.assert_allclose(klfast.kl(big_p, ref, axis=0),
                               rel_entr_columns(big_p, np.broadcast_to(ref, big_p.shape)),
                               **tolerance(dtype))
    cube_p = big_p.reshape(k, 4, -1)  # (k, 4, 150): columns along axis 0
    cube_q = big_q.reshape(k, 4, -1)
    np.testing.assert_allclose(klfast.kl(cube_p, cube_q, axis=0),
                               rel_entr_columns(big_p, big_q).reshape(4, -1),
                               **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_swept_columns_normalize_and_measures(rng, dtype):
    """normalize=True on swept columns (counts), and every measure against
    its one-row bits."""
    k, n = 33, 130
    p = rng.integers(0, 20, size=(k, n)).astype(dtype)
    q = rng.integers(1, 20, size=(k, n)).astype(dtype)
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    expected = special.rel_entr(p64 / p64.sum(0), q64 / q64.sum(0)).sum(0)
    np.testing.assert_allclose(klfast.kl(p, q, axis=0, normalize=True), expected,
                               **tolerance(dtype))
    for measure in MEASURES:
        alone = np.array([call(measure, p[:, i].copy(), q[:, i].copy(), normalize=True)
                          for i in range(n)])
        assert np.array_equal(call(measure, p, q, axis=0, normalize=True), alone), measure


# Columns of a wide C-ordered array: whole strips read together, up to
# KLFAST_STRIPS_MAX (32) strips of 64 at a time, then the rest strip by
# strip and a partial strip; more elements than a small call has (those take
# the one-thread shortcut, strip by strip), so the row loop's pool runs.
# 65 * 64 + 5 columns: claims of 32, 32 and 1 strips (float32 sweeps 16
# at a time below 400 elements, 32 from 400 on); 33 * 64 + 5 on 2 threads:
# claims of 17 strips (float32: 16 and 1); 7 * 64 + 5: claims of 8 strips on
# 1 thread (7 read together), of 4 on 2.
WIDE = 65 * 64 + 5


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", [(WIDE, 33), (WIDE, 64), (WIDE, 65), (WIDE, 130), (WIDE, 400),
                                  (33 * 64 + 5, 100), (7 * 64 + 5, 150), (7 * 64 + 5, 200)])
@pytest.mark.parametrize("normalize", [False, True])
def test_strips_read_together_give_each_columns_bits(rng, measure, dtype, n, k, normalize):
    p = distributions(rng, (n, k), dtype=dtype, zero_fraction=0.25)
    q = distributions(rng, (n, k), dtype=dtype, zero_fraction=0.25)
    if normalize:
        p, q = p * dtype(3), q * dtype(5)
    tiny = np.finfo(dtype).tiny / 4  # subnormal with eps = 0: the exact path
    for col in (3 * 64 + 5, n - 4 * 64 - 1, n - 5):  # strips read together, and after them
        for x, row, j in ((q, col, 7), (p, col + 1, 9)):
            x[row, j + 1] += x[row, j]  # (the row still sums to 1)
            x[row, j] = tiny
    pc, qc = p.T.copy(), q.T.copy()  # the columns of a C-ordered (k, n) array
    assert pc.size > 1 << 16
    for eps in (1e-12, 0.0):
        alone = np.array([call(measure, p[i], q[i], eps=eps, normalize=normalize)
                          for i in range(n)])
        if eps:
            np.testing.assert_allclose(alone, call_ref(measure, p, q, eps=eps,
                                                       normalize=normalize),
                                       **tolerance(dtype))
        for threads in (1, 2):
            got = call(measure, pc, qc, axis=0, eps=eps, normalize=normalize,
                       num_threads=threads)
            assert np.array_equal(got, alone, equal_nan=True), (eps, threads)
        fortran = call(measure, np.asfortranarray(p), np.asfortranarray(q), eps=eps,
                       normalize=normalize, num_threads=2)
        assert np.array_equal(fortran, alone, equal_nan=True), eps


@pytest.mark.parametrize("measure", MEASURES)
def test_strips_read_together_name_the_invalid_column(rng, measure):
    p = distributions(rng, (WIDE, 40))
    q = distributions(rng, (WIDE, 40))
    p[10 * 64 + 3, 17] = -0.25
    with pytest.raises(ValueError) as expected:
        call(measure, p, q)
    assert f"row {10 * 64 + 3}" in str(expected.value)
    with pytest.raises(ValueError) as got:
        call(measure, p.T.copy(), q.T.copy(), axis=0, num_threads=2)
    assert str(got.value) == str(expected.value)
