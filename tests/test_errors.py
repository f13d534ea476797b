"""Bad input: every invalid value, shape, axis and keyword raises the right
exception with a message that names the input, the first offending row and
the problem."""
import re

import numpy as np
import pytest

import klfast
from zoo import MEASURES, PAIR_MEASURES, assert_unchanged, call, distributions, snapshot

AxisError = np.exceptions.AxisError

BAD_VALUES = [
    # (value, words the message must contain)
    (-0.1, "negative"),
    (-1e-40, "negative"),  # subnormal in float32
    (np.nan, "nan"),
    (np.inf, "inf"),
    (-np.inf, "inf"),
]


def row_pattern(name, row):
    """The message names the input and the row, e.g. 'q: row 3' or
    "q ... row 3"; row 7 (the second bad row) must not be the one named."""
    return re.compile(rf"\b{name}\b.*\brow {re.escape(str(row))}(?!\d)", re.IGNORECASE)


def check_message(excinfo, name, row, word):
    message = str(excinfo.value)
    assert row_pattern(name, row).search(message), message
    assert word in message.lower(), message
    other = "q" if name == "p" else "p"
    assert not re.match(rf"^{other}\b", message), message


def bad_pair(rng, where, value, shape=(10, 6), dtype=np.float64, bad_rows=(3, 7), col=2):
    p = distributions(rng, shape).astype(dtype)
    q = distributions(rng, shape).astype(dtype)
    target = p if where == "p" else q
    for r in bad_rows:
        target[r, col] = value
    return p, q


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("where", ["p", "q"])
@pytest.mark.parametrize("value,word", BAD_VALUES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_invalid_entry_names_input_row_and_problem(rng, measure, where, value, word, dtype):
    if measure == "entropy" and where == "q":
        pytest.skip("entropy has no q")
    p, q = bad_pair(rng, where, value, dtype=dtype)
    p0, q0 = snapshot(p), snapshot(q)
    with pytest.raises(ValueError) as excinfo:
        call(measure, p, q)
    check_message(excinfo, where, 3, word)
    assert_unchanged(p0, p)
    assert_unchanged(q0, q)


@pytest.mark.parametrize("measure", MEASURES)
def test_negative_subnormal_is_negative(rng, measure):
    p, q = bad_pair(rng, "p", -5e-324)
    with pytest.raises(ValueError) as excinfo:
        call(measure, p, q)
    check_message(excinfo, "p", 3, "negative")


@pytest.mark.parametrize("measure", MEASURES)
def test_negative_zero_is_zero(rng, measure):
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = np.array([[0.25, 0.25, 0.5], [0.5, 0.0, 0.5]])
    pn, qn = p.copy(), q.copy()
    pn[p == 0] = -0.0
    qn[q == 0] = -0.0
    for eps in (0.0, 1e-12):
        assert np.array_equal(call(measure, pn, qn, eps=eps), call(measure, p, q, eps=eps))


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("eps", [0.0, 1e-3])
@pytest.mark.parametrize("normalize", [False, True])
def test_invalid_entry_any_eps_normalize(rng, measure, eps, normalize):
    p, q = bad_pair(rng, "p", -0.5)
    with pytest.raises(ValueError) as excinfo:
        call(measure, p, q, eps=eps, normalize=normalize, base=2)
    check_message(excinfo, "p", 3, "negative")


@pytest.mark.parametrize("measure", PAIR_MEASURES)
def test_both_inputs_bad_names_first_row(rng, measure):
    p, q = bad_pair(rng, "q", np.nan, bad_rows=(3,))
    p[7, 0] = -1.0
    with pytest.raises(ValueError) as excinfo:
        call(measure, p, q)
    check_message(excinfo, "q", 3, "nan")


def test_invalid_in_first_column_and_last_column(rng):
    for col in (0, 5):
        p, q = bad_pair(rng, "q", -2.0, col=col)
        with pytest.raises(ValueError) as excinfo:
            klfast.kl(p, q)
        check_message(excinfo, "q", 3, "negative")


@pytest.mark.parametrize("layout", ["F", "strided", "byte-swapped", "transposed"])
def test_invalid_entry_other_layouts(rng, layout):
    p, q = bad_pair(rng, "q", np.inf)
    axis = -1
    if layout == "F":
        p, q = np.asfortranarray(p), np.asfortranarray(q)
    elif layout == "strided":
        p, q = np.repeat(p, 2, axis=1)[:, ::2], np.repeat(q, 2, axis=1)[:, ::2]
    elif layout == "byte-swapped":
        p, q = p.astype(">f8"), q.astype(">f8")
    else:
        p, q, axis = np.ascontiguousarray(p.T), np.ascontiguousarray(q.T), 0
    with pytest.raises(ValueError) as excinfo:
        klfast.kl(p, q, axis=axis)
    check_message(excinfo, "q", 3, "inf")


@pytest.mark.parametrize("bad_block", [0, 1, 3])
@pytest.mark.parametrize("where", ["p", "q"])
def test_first_bad_row_reported_from_conversion_blocks(rng, bad_block, where):
    """float32 Fortran input > 2**20 elements: converted per block of rows;
    the first offending row is found also in a later block."""
    from klfast._core.engine import BLOCK_ELEMENTS

    k = 256
    rows_per_block = BLOCK_ELEMENTS // k
    n = 4 * rows_per_block
    p = np.asfortranarray(np.full((n, k), 1.0 / k, dtype=np.float32))
    q = np.asfortranarray(np.full((n, k), 1.0 / k, dtype=np.float32))
    assert p.size > 2**20
    first = bad_block * rows_per_block + 3
    target = p if where == "p" else q
    target[first, 5] = -1.0
    target[first + 4, 1] = np.nan
    target[n - 1, 0] = np.inf
    with pytest.raises(ValueError) as excinfo:
        klfast.kl(p, q)
    check_message(excinfo, where, first, "negative")


@pytest.mark.parametrize("num_threads", [1, 2])
def test_first_bad_row_reported_with_threads(rng, num_threads):
    n, k = 4096, 64  # 2**18 elements: runs on several threads
    p = distributions(rng, (n, k))
    q = distributions(rng, (n, k))
    q[n - 5, 0] = -1.0  # in the second thread's half
    q[3000, 3] = np.nan
    q[2100, 3] = -np.inf
    with pytest.raises(ValueError) as excinfo:
        klfast.kl(p, q, num_threads=num_threads)
    check_message(excinfo, "q", 2100, "inf")


def test_bad_row_in_broadcast_reference(rng):
    p = distributions(rng, (10, 6))
    q = distributions(rng, (6,))
    q[4] = -0.25
    with pytest.raises(ValueError) as excinfo:
        klfast.kl(p, q)
    check_message(excinfo, "q", 0, "negative")


def test_bad_row_nd_names_row_index(rng):
    p = distributions(rng, (2, 5, 6))
    q = distributions(rng, (2, 5, 6))
    q[1, 2, 0] = np.nan
    q[1, 4, 0] = np.nan
    with pytest.raises(ValueError, match=r"\bq\b.*row (\(1, 2\)|7)(?!\d)") as excinfo:
        klfast.kl(p, q)
    assert "nan" in str(excinfo.value).lower()


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("where", ["p", "q"])
def test_normalize_row_summing_to_zero(rng, measure, where):
    if measure == "entropy" and where == "q":
        pytest.skip("entropy has no q")
    p, q = bad_pair(rng, where, 0.0, col=slice(None))
    with pytest.raises(ValueError) as excinfo:
        call(measure, p, q, normalize=True)
    check_message(excinfo, where, 3, "sums to 0")
    # without normalize an all-zero row is not a distribution: the sum check names it
    with pytest.raises(ValueError) as excinfo:
        call(measure, p, q)
    check_message(excinfo, where, 3, "sums to 0, not 1")
    # scored as given (check_sums=False) an all-zero row is valid
    got = call(measure, p, q, check_sums=False)
    assert np.isfinite(got).all()


def test_normalize_integer_zero_row(rng):
    counts = rng.integers(1, 9, size=(10, 4))
    counts[3] = 0
    counts[7] = 0
    with pytest.raises(ValueError) as excinfo:
        klfast.entropy(counts, normalize=True)
    check_message(excinfo, "p", 3, "sums to 0")


# --- shapes ---------------------------------------------------------------

@pytest.mark.parametrize("measure", PAIR_MEASURES)
@pytest.mark.parametrize("p_shape,q_shape", [
    ((3, 4), (2, 4)),
    ((2, 3, 4), (4, 4)),
    ((5, 1, 4), (2, 3, 4)),
])
def test_shapes_that_do_not_broadcast(measure, p_shape, q_shape):
    with pytest.raises(ValueError, match="broadcast") as excinfo:
        call(measure, np.ones(p_shape), np.ones(q_shape))
    assert str(p_shape) in str(excinfo.value) and str(q_shape) in str(excinfo.value)


@pytest.mark.parametrize("measure", PAIR_MEASURES)
@pytest.mark.parametrize("p_shape,q_shape,axis", [
    ((3, 4), (3, 5), -1),
    ((4,), (5,), -1),
    ((4, 3), (5, 3), 0),
    # length 1 along the axis does not stretch: shapes that differ along
    # axis are a ValueError, as documented
    ((3, 1), (3, 4), -1),
    ((3, 4), (4,), 0),
])
def test_length_mismatch_along_axis(measure, p_shape, q_shape, axis):
    with pytest.raises(ValueError, match=r"(?i)length.*axis|axis.*length"):
        call(measure, np.ones(p_shape), np.ones(q_shape), axis=axis)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("shape,axis", [((3, 4), 2), ((3, 4), -3), ((4,), 1), ((2, 3, 4), 3),
                                        ((2, 3, 4), -4)])
def test_axis_out_of_range(measure, shape, axis):
    with pytest.raises(AxisError):
        call(measure, np.ones(shape), np.ones(shape), axis=axis)


@pytest.mark.parametrize("measure", MEASURES)
def test_zero_dimensional_input_has_no_axis(measure):
    with pytest.raises(AxisError):
        call(measure, 0.5, 0.5)


# --- parameters ---------------------------------------------------------------

@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("eps", [-1e-12, -1.0, np.nan, np.inf, -np.inf])
def test_bad_eps_value(measure, eps):
    with pytest.raises(ValueError, match="eps") as excinfo:
        call(measure, [0.5, 0.5], [0.5, 0.5], eps=eps)
    assert str(eps) in str(excinfo.value) or "finite" in str(excinfo.value)


@pytest.mark.parametrize("eps", ["1e-12", None, [1e-12], True, 1j])
def test_bad_eps_type(eps):
    with pytest.raises((TypeError, ValueError), match="eps"):
        klfast.kl([0.5, 0.5], [0.5, 0.5], eps=eps)


def test_eps_accepts_numpy_and_int_scalars():
    for eps in (np.float32(1e-3), np.float64(1e-3), 0, np.int64(0)):
        klfast.kl([0.5, 0.5], [0.5, 0.5], eps=eps)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("base", [0, 0.0, -2, 1, 1.0, np.inf, -np.inf, np.nan])
def test_bad_base_value(measure, base):
    with pytest.raises(ValueError, match="base"):
        call(measure, [0.5, 0.5], [0.5, 0.5], base=base)


@pytest.mark.parametrize("base", ["2", [2], 2j])
def test_bad_base_type(base):
    with pytest.raises((TypeError, ValueError), match="base"):
        klfast.kl([0.5, 0.5], [0.5, 0.5], base=base)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("num_threads", [0, -1, -8])
def test_num_threads_below_one(measure, num_threads):
    with pytest.raises(ValueError, match="num_threads"):
        call(measure, [0.5, 0.5], [0.5, 0.5], num_threads=num_threads)


@pytest.mark.parametrize("num_threads", [1.5, 2.0, "2", True, [2]])
def test_num_threads_not_an_integer(num_threads):
    with pytest.raises((TypeError, ValueError), match="num_threads"):
        klfast.kl([0.5, 0.5], [0.5, 0.5], num_threads=num_threads)


def test_num_threads_accepts_numpy_integers():
    assert klfast.kl([0.5, 0.5], [0.5, 0.5], num_threads=np.int64(2)) == 0.0


# --- dtypes -------------------------------------------------------------------

BAD_DTYPES = [
    np.array([[0.5 + 0j, 0.5]]),
    np.array([[0.5, 0.5]], dtype=object),
    np.array([["a", "b"]]),
    np.array([[b"a", b"b"]]),
    [["0.5", "0.5"]],
    np.array([["2024-01-01", "2024-01-02"]], dtype="datetime64[D]"),
]


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("bad", BAD_DTYPES, ids=lambda x: str(np.asarray(x).dtype))
@pytest.mark.parametrize("where", ["p", "q"])
def test_non_real_dtypes_raise_type_error(measure, bad, where):
    if measure == "entropy" and where == "q":
        pytest.skip("entropy has no q")
    good = np.array([[0.5, 0.5]])
    p, q = (bad, good) if where == "p" else (good, bad)
    with pytest.raises(TypeError, match=rf"\b{where}\b"):
        call(measure, p, q)


# --- out= -----------------------------------------------------------------------

@pytest.mark.parametrize("measure", MEASURES)
def test_out_wrong_shape(rng, measure):
    p = distributions(rng, (5, 3))
    for shape in [(4,), (5, 1), (1, 5), ()]:
        with pytest.raises(ValueError, match="shape"):
            call(measure, p, p, out=np.empty(shape))
    with pytest.raises(ValueError, match="shape"):
        call(measure, p, p, keepdims=True, out=np.empty(5))


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("in_dtype,out_dtype", [
    (np.float64, np.float32), (np.float32, np.float64), (np.float64, np.int64),
    (np.float64, np.complex128), (np.float16, np.float16), (np.int64, np.float32),
])
def test_out_wrong_dtype(rng, measure, in_dtype, out_dtype):
    p = distributions(rng, (5, 3)).astype(in_dtype)
    with pytest.raises(ValueError, match="dtype"):
        call(measure, p, p, out=np.empty(5, dtype=out_dtype))


def test_out_read_only(rng):
    p = distributions(rng, (5, 3))
    out = np.empty(5)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only|writeable|writable"):
        klfast.kl(p, p, out=out)


def test_out_not_an_array(rng):
    p = distributions(rng, (5, 3))
    with pytest.raises((TypeError, ValueError), match="out"):
        klfast.kl(p, p, out=[0.0] * 5)


@pytest.mark.parametrize("order", ["C", "F", "transposed"])
def test_bad_row_nd_non_collapsing_layout(rng, order):
    """3-D inputs split into 2-D pieces (strides that do not collapse): the
    row index still counts over the whole call."""
    p = distributions(rng, (3, 5, 6))
    q = distributions(rng, (3, 5, 6))
    q[2, 1, 4] = -3.0
    q[2, 3, 0] = -3.0
    if order == "F":
        p, q = np.asfortranarray(p), np.asfortranarray(q)
    elif order == "transposed":
        p = np.ascontiguousarray(p.transpose(1, 0, 2)).transpose(1, 0, 2)
        q = np.ascontiguousarray(q.transpose(1, 0, 2)).transpose(1, 0, 2)
    with pytest.raises(ValueError, match=r"\bq\b.*row (\(2, 1\)|11)(?!\d)") as excinfo:
        klfast.jeffreys(p, q)
    assert "negative" in str(excinfo.value)


def test_bad_row_with_broadcast_p_in_block_path(rng):
    """p of shape (k,) against a Fortran q: p is converted once, as one row."""
    p = distributions(rng, (6,))
    q = np.asfortranarray(distributions(rng, (10, 6)))
    q[3, 2] = q[7, 2] = np.nan
    with pytest.raises(ValueError) as excinfo:
        klfast.kl(p, q)
    check_message(excinfo, "q", 3, "nan")
    p[1] = -1.0
    with pytest.raises(ValueError) as excinfo:
        klfast.kl(p, q)
    check_message(excinfo, "p", 0, "negative")
