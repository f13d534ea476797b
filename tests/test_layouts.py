"""Memory layouts, empty arrays and out=.

The same values in any layout give bitwise the same result (each row is
reduced in one fixed order), the result agrees with the slow twin, and the
inputs are never modified.
"""
import numpy as np
import pytest

import klfast
from zoo import (LAYOUT_NAMES, MEASURES, assert_unchanged, call, call_raw, call_ref,
                 call_ref_raw,
                 distributions, layouts, snapshot)

pytestmark = pytest.mark.usefixtures("isa")  # every instruction-set level

DTYPES = [np.float64, np.float32]


def tolerance(dtype):
    return dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-6, atol=1e-7)


def by_name(a):
    return {name: (x, axis) for name, x, axis in layouts(a)}


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_layout_gives_identical_result(rng, measure, dtype, layout):
    p = distributions(rng, (13, 7), dtype=dtype, zero_fraction=0.3)
    q = distributions(rng, (13, 7), dtype=dtype, zero_fraction=0.3)
    expected = call(measure, p, q)
    np.testing.assert_allclose(expected, call_ref(measure, p, q), **tolerance(dtype))

    pv, axis = by_name(p)[layout]
    qv, _ = by_name(q)[layout]
    p0, q0 = snapshot(pv), snapshot(qv)
    pairs = [(pv, qv)] + ([(pv, q), (p, qv)] if axis == -1 else [])
    for pp, qq in pairs:
        got = call(measure, pp, qq, axis=axis)
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected), layout
    assert_unchanged(p0, pv)
    assert_unchanged(q0, qv)


@pytest.mark.parametrize("measure", ["kl", "jeffreys", "cross_entropy"])
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_layout_against_broadcast_row(rng, measure, layout):
    p = distributions(rng, (11, 5))
    q_row = distributions(rng, (5,))
    expected = call(measure, p, np.tile(q_row, (11, 1)))
    np.testing.assert_allclose(expected, call_ref(measure, p, q_row), rtol=1e-12, atol=1e-14)
    pv, axis = by_name(p)[layout]
    q_b = q_row if axis == -1 else q_row[:, None]
    assert np.array_equal(call(measure, pv, q_b, axis=axis), expected)
    assert np.array_equal(call(measure, q_b, pv, axis=axis),
                          call(measure, np.tile(q_row, (11, 1)), p))


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("normalize", [False, True])
def test_normalize_identical_across_layouts(rng, measure, normalize):
    p = rng.random((9, 6)) * 7
    q = rng.random((9, 6)) * 3
    expected = call_raw(measure, p, q, normalize=normalize, eps=1e-3)
    np.testing.assert_allclose(
        expected, call_ref_raw(measure, p, q, normalize=normalize, eps=1e-3), rtol=1e-12, atol=1e-14)
    views_p, views_q = by_name(p), by_name(q)
    for name in LAYOUT_NAMES:
        (pv, axis), (qv, _) = views_p[name], views_q[name]
        assert np.array_equal(call_raw(measure, pv, qv, axis=axis, normalize=normalize, eps=1e-3),
                              expected), name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["F", "strided", "byte-swapped", "reversed both",
                                    "unaligned"])
def test_block_conversion_identical(rng, dtype, layout):
    """> 2**20 elements in a layout the kernel cannot read directly: the
    conversion runs block by block and still matches C order bitwise."""
    p = distributions(rng, (2**20 // 100 + 700, 100), dtype=dtype, zero_fraction=0.1)
    q = distributions(rng, (100,), dtype=dtype)
    expected = klfast.kl(p, q)
    np.testing.assert_allclose(expected[:50], call_ref("kl", p[:50], q), **tolerance(dtype))
    pv, axis = by_name(p)[layout]
    p0 = snapshot(pv)
    assert np.array_equal(klfast.kl(pv, q, axis=axis), expected)
    assert_unchanged(p0, pv)


@pytest.mark.parametrize("measure", ["kl", "jeffreys", "cross_entropy"])
def test_mixed_dtype_and_layout(rng, measure):
    p = distributions(rng, (8, 5), dtype=np.float32)
    q = distributions(rng, (8, 5))
    expected = call(measure, p, q)
    assert expected.dtype == np.float64
    np.testing.assert_allclose(expected, call_ref(measure, p, q), rtol=1e-12, atol=1e-14)
    assert np.array_equal(call(measure, np.asfortranarray(p), q.astype(">f8")), expected)
    assert np.array_equal(call(measure, p.astype(np.float64), q), expected)


# --- empty arrays and tiny shapes ---------------------------------------------------

@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("shape,axis,result_shape", [
    ((0, 5), -1, (0,)),
    ((0, 5), 0, (5,)),
    ((4, 0), -1, (4,)),
    ((0, 0), -1, (0,)),
    ((0,), -1, ()),
    ((2, 0, 3), -1, (2, 0)),
    ((2, 0, 3), 1, (2, 3)),
])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty(measure, shape, axis, result_shape, order, dtype):
    p = np.zeros(shape, dtype=dtype, order=order)
    # rows of length 0 sum to 0: scored as given, not checked as distributions
    got = call_raw(measure, p, p, axis=axis)
    assert np.shape(got) == result_shape
    assert np.asarray(got).dtype == dtype
    # an empty sum is 0
    np.testing.assert_array_equal(got, np.zeros(result_shape))
    np.testing.assert_array_equal(got, call_ref_raw(measure, p, p, axis=axis))
    kept = call_raw(measure, p, p, axis=axis, keepdims=True)
    assert kept.shape == np.sum(p, axis=axis, keepdims=True).shape


@pytest.mark.parametrize("measure", MEASURES)
def test_empty_broadcast_reference(measure):
    got = call(measure, np.zeros((0, 4)), np.full(4, 0.25))
    assert got.shape == (0,)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_single_column(rng, measure, dtype):
    p = rng.random((6, 1)).astype(dtype)
    q = rng.random((6, 1)).astype(dtype)
    p[2] = 0
    for eps in (0.0, 1e-12):
        for normalize in (False, True):
            if normalize:
                p[2] = 0.5
            got = call_raw(measure, p, q, eps=eps, normalize=normalize)
            want = call_ref_raw(measure, p, q, eps=eps, normalize=normalize)
            np.testing.assert_allclose(got, want, **tolerance(dtype))
            assert np.array_equal(got, call_raw(measure, np.asfortranarray(p[::-1])[::-1],
                                                q, eps=eps, normalize=normalize))
    # normalized single columns are all 1: every divergence and entropy is 0
    # (up to the rounding of x * (1 / x))
    np.testing.assert_allclose(call(measure, p + 1, q + 2, normalize=True), np.zeros(6),
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("measure", MEASURES)
def test_single_row(rng, measure):
    p = distributions(rng, (1, 9))
    q = distributions(rng, (1, 9))
    got = call(measure, p, q)
    assert got.shape == (1,)
    np.testing.assert_allclose(got, call_ref(measure, p, q), rtol=1e-12, atol=1e-14)
    # along axis 0 each row is a single entry, not a distribution: scored as given
    np.testing.assert_allclose(call_raw(measure, p, q, axis=0), call_ref_raw(measure, p, q, axis=0),
                               rtol=1e-12, atol=1e-14)


# --- out= -----------------------------------------------------------------------

@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_out_is_filled_and_returned(rng, measure, dtype):
    p = distributions(rng, (12, 5), dtype=dtype)
    q = distributions(rng, (12, 5), dtype=dtype)
    want = call_ref(measure, p, q)
    out = np.full(12, -7.0, dtype=dtype)
    got = call(measure, p, q, out=out)
    assert got is out
    np.testing.assert_allclose(out, want, **tolerance(dtype))
    assert np.array_equal(out, call(measure, p, q))


@pytest.mark.parametrize("measure", MEASURES)
def test_out_non_contiguous(rng, measure):
    p = distributions(rng, (12, 5))
    q = distributions(rng, (12, 5))
    buffer = np.full(36, -7.0)
    out = buffer[::3]
    got = call(measure, p, q, out=out)
    assert got is out
    assert np.array_equal(out, call(measure, p, q))
    # the gaps are untouched
    assert (np.delete(buffer, np.arange(0, 36, 3)) == -7.0).all()
    reversed_out = np.full(12, -7.0)[::-1]
    assert call(measure, p, q, out=reversed_out) is reversed_out
    assert np.array_equal(reversed_out, out)

    # a non-contiguous 2-D out (axis in the middle of a 3-D input)
    p3 = distributions(rng, (4, 6, 3), axis=1)
    q3 = distributions(rng, (4, 6, 3), axis=1)
    big = np.full((4, 2, 6), -7.0)
    out2 = big[:, 1, ::2]
    assert out2.shape == (4, 3) and not out2.flags.c_contiguous
    got = call(measure, p3, q3, axis=1, out=out2)
    assert got is out2
    np.testing.assert_allclose(out2, call_ref(measure, p3, q3, axis=1), rtol=1e-12, atol=1e-14)
    assert (big[:, 0, :] == -7.0).all() and (big[:, 1, 1::2] == -7.0).all()


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_out_with_keepdims(rng, measure, axis):
    p = distributions(rng, (3, 4, 6), axis=axis)
    q = distributions(rng, (3, 4, 6), axis=axis)
    shape = list(p.shape)
    shape[axis] = 1
    out = np.empty(shape)
    got = call(measure, p, q, axis=axis, keepdims=True, out=out)
    assert got is out
    np.testing.assert_allclose(out, call_ref(measure, p, q, axis=axis, keepdims=True),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("measure", MEASURES)
def test_out_zero_dimensional(rng, measure):
    p = distributions(rng, (7,))
    q = distributions(rng, (7,))
    out = np.empty(())
    got = call(measure, p, q, out=out)
    assert got is out
    np.testing.assert_allclose(out, call_ref(measure, p, q), rtol=1e-12, atol=1e-14)


def test_out_float32_for_float16(rng):
    p = distributions(rng, (5, 4), dtype=np.float16)
    out = np.empty(5, dtype=np.float32)
    assert klfast.entropy(p, out=out) is out
    np.testing.assert_allclose(out, call_ref("entropy", p), rtol=1e-6)


def test_out_with_broadcast_inputs(rng):
    p = distributions(rng, (4, 1, 6))
    q = distributions(rng, (3, 6))
    out = np.empty((4, 3))
    assert klfast.jeffreys(p, q, out=out) is out
    np.testing.assert_allclose(out, call_ref("jeffreys", p, q), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
@pytest.mark.parametrize("num_threads", [1, 2])
def test_layout_times_threads(rng, layout, num_threads):
    from klfast._core.engine import MIN_PARALLEL_ELEMENTS

    p = distributions(rng, (2 * MIN_PARALLEL_ELEMENTS // 32, 32), dtype=np.float32)
    q = distributions(rng, (2 * MIN_PARALLEL_ELEMENTS // 32, 32), dtype=np.float32)
    expected = klfast.jeffreys(p, q, num_threads=1)
    np.testing.assert_allclose(expected[:64], call_ref("jeffreys", p[:64], q[:64]),
                               rtol=1e-6, atol=1e-7)
    pv, axis = by_name(p)[layout]
    qv, _ = by_name(q)[layout]
    assert np.array_equal(klfast.jeffreys(pv, qv, axis=axis, num_threads=num_threads), expected)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("order", ["C", "F", "strided", "transposed"])
def test_nd_layouts(rng, measure, axis, order):
    """3-D inputs whose strides do not collapse into one 2-D view."""
    p = distributions(rng, (4, 5, 6), axis=axis)
    q = distributions(rng, (4, 5, 6), axis=axis)
    expected = call(measure, p, q, axis=axis)
    np.testing.assert_allclose(expected, call_ref(measure, p, q, axis=axis),
                               rtol=1e-12, atol=1e-14)

    def view(x):
        if order == "F":
            return np.asfortranarray(x), axis
        if order == "strided":
            big = np.zeros((8, 5, 18))
            big[::2, :, ::3] = x
            return big[::2, :, ::3], axis
        # the same values, stored with the axes reversed
        return np.ascontiguousarray(x.transpose(2, 1, 0)).transpose(2, 1, 0), axis

    (pv, ax), (qv, _) = view(p), view(q)
    p0 = snapshot(pv)
    assert np.array_equal(call(measure, pv, qv, axis=ax), expected)
    assert np.array_equal(call(measure, pv, q, axis=ax), expected)
    assert_unchanged(p0, pv)
    out = np.empty(expected.shape[::-1]).T  # a Fortran-ordered out
    assert call(measure, pv, qv, axis=ax, out=out) is out
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("measure", MEASURES)
def test_out_unaligned(rng, measure):
    p = distributions(rng, (9, 4))
    q = distributions(rng, (9, 4))
    raw = np.zeros(9 * 8 + 1, dtype=np.uint8)
    out = raw[1:].view(np.float64)
    assert not out.flags.aligned
    assert call(measure, p, q, out=out) is out
    assert np.array_equal(out, call(measure, p, q))


def test_zero_stride_inputs(rng):
    """Inputs that are themselves broadcast views (stride 0 along rows or along
    the distribution axis)."""
    p = distributions(rng, (40, 5))
    row = distributions(rng, (5,))
    full = np.tile(row, (40, 1))
    expected = klfast.kl(p, full)
    np.testing.assert_allclose(expected, call_ref("kl", p, row), rtol=1e-12, atol=1e-14)
    assert np.array_equal(klfast.kl(p, np.broadcast_to(row, (40, 5))), expected)
    uniform = np.broadcast_to(np.float64(0.2), (40, 5))
    assert uniform.strides == (0, 0)
    assert np.array_equal(klfast.kl(p, uniform), klfast.kl(p, np.full((40, 5), 0.2)))
    np.testing.assert_allclose(klfast.entropy(uniform), np.full(40, np.log(5)), rtol=1e-14)


@pytest.mark.parametrize("dtype", [">i4", ">f4", "<f4", ">f2", ">u8", ">f8"])
def test_byte_swapped_dtypes(rng, dtype):
    counts = rng.integers(0, 30, size=(7, 5))
    counts[:, 0] += 1
    p = counts.astype(dtype)
    q = (counts[::-1] + 1).astype(dtype)
    p0 = snapshot(p)
    got = klfast.kl(p, q, normalize=True)
    native = klfast.kl(p.astype(p.dtype.newbyteorder("=")), q.astype(q.dtype.newbyteorder("=")),
                       normalize=True)
    assert got.dtype == native.dtype and got.dtype.isnative
    assert np.array_equal(got, native)
    tol = 1e-6 if got.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, call_ref("kl", p, q, normalize=True), rtol=tol, atol=tol)
    assert_unchanged(p0, p)
