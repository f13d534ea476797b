"""Common mistakes give clear errors, never silent numbers (the Python API).

Rows that are not distributions, a missing q, masked arrays, an ``out`` that
overlaps an input, keywords of the wrong type, and Ctrl-C in a long call.
"""
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import klfast
from zoo import call, call_ref

TWO_INPUT = ("kl", "jeffreys", "cross_entropy", "jensen_shannon")
ALL = TWO_INPUT + ("entropy",)


def dirichlet(rng, n, k, dtype=np.float64):
    return rng.dirichlet(np.ones(k), size=n).astype(dtype)


# ---- 1. rows that are not distributions ---------------------------------

@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n_rows", [2, 50_000])  # the C fast path and the general path
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_count_rows_are_refused_naming_input_row_and_sum(name, n_rows, dtype, rng):
    p = dirichlet(rng, n_rows, 4, dtype)
    q = dirichlet(rng, n_rows, 4, dtype)
    bad = "q" if name != "entropy" else "p"
    target = q if bad == "q" else p
    row = n_rows - 1
    target[row] = np.array([3, 0, 5, 2], dtype=dtype)  # counts: sum 10
    with pytest.raises(ValueError) as info:
        call(name, p, q)
    message = str(info.value)
    assert message.startswith(f"{bad}: row {row} sums to 10")
    assert "normalize=True" in message and "check_sums=False" in message


@pytest.mark.parametrize("name", ALL)
def test_entropy_of_counts_is_no_longer_negative(name, rng):
    counts = rng.integers(0, 50, size=(2, 11)).astype(float)
    with pytest.raises(ValueError, match="row 0 sums to"):
        call(name, counts, counts[::-1])
    # normalize=True scores them as distributions, as the slow twin does
    got = call(name, counts, counts[::-1], normalize=True)
    want = call_ref(name, counts, counts[::-1], normalize=True)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if name == "entropy":
        assert (got >= 0).all()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n_rows", [3, 30_000])
def test_check_sums_false_scores_rows_as_given(name, n_rows, rng):
    p = rng.random((n_rows, 7))
    q = rng.random((n_rows, 7)) + 0.1
    got = call(name, p, q, check_sums=False)
    want = call_ref(name, p, q, check_sums=False)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("eps", [klfast.DEFAULT_EPS, 0.0])  # fast and exact paths
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tolerance_is_the_documented_one(name, eps, dtype):
    tol = klfast.SUM_TOLERANCE
    assert tol == 1e-3
    k = 8
    kwargs = {} if name == "jensen_shannon" else {"eps": eps}
    for scale, ok in [(1 + 0.6 * tol, True), (1 - 0.6 * tol, True),
                      (1 + 1.5 * tol, False), (1 - 1.5 * tol, False)]:
        p = np.full((3, k), scale / k, dtype=dtype)
        p[:, 0] = 0.0  # a zero: eps=0 sends rows to the exact path
        p[:, 1] += scale / k
        q = np.full((3, k), 1 / k, dtype=dtype)
        if ok:
            call(name, p, q, **kwargs)
        else:
            with pytest.raises(ValueError, match="p: row 0 sums to"):
                call(name, p, q, **kwargs)


def test_no_false_alarm_on_float32_softmax_of_256000_classes(rng):
    k = 256_000
    rows = []
    for spread in (0.5, 3.0, 12.0):  # flat to sharp
        logits = (rng.standard_normal(k) * spread).astype(np.float32)
        e = np.exp(logits - logits.max())
        rows.append(e / e.sum())                                  # numpy's pairwise sum
        rows.append(e / np.cumsum(e, dtype=np.float32)[-1])       # a naive float32 sum
        rows.append((e / e.sum(dtype=np.float64)).astype(np.float32))
    p = np.stack(rows).astype(np.float32)
    q = p[::-1].copy()
    for name in ALL:
        assert np.isfinite(call(name, p, q)).all()


@pytest.mark.parametrize("k", [2, 1000, 1_000_000])
def test_no_false_alarm_on_float64_rows_normalized_by_numpy(k, rng):
    x = rng.random((3, k)) ** 8 * 1e3  # uneven magnitudes
    p = x / x.sum(axis=1, keepdims=True)
    q = p[::-1] / p[::-1].sum(axis=1, keepdims=True)
    for name in ALL:
        assert np.isfinite(call(name, p, q, num_threads=2)).all()


def test_error_names_the_row_in_nd_and_strided_inputs(rng):
    p = dirichlet(rng, 60, 5).reshape(3, 4, 5, 5)
    p[2, 1, 3] *= 2.5
    p_f = np.asfortranarray(p)
    for x in (p, p_f, np.moveaxis(p, -1, 0)):
        axis = 0 if x.shape[0] == 5 else -1
        with pytest.raises(ValueError, match=r"p: row \(2, 1, 3\) sums to 2.5"):
            klfast.entropy(x, axis=axis)


@pytest.mark.slow  # imports dask
def test_dask_inputs_follow_the_same_rule(rng):
    da = pytest.importorskip("dask.array")
    p = dirichlet(rng, 40, 6)
    p[33] *= 3
    lazy = klfast.kl(da.from_array(p, chunks=(10, 6)), p[0])
    with pytest.raises(ValueError, match=r"p: row 33 sums to 3"):
        lazy.compute()
    np.testing.assert_allclose(
        klfast.kl(da.from_array(p, chunks=(10, 6)), p[0], check_sums=False).compute(),
        klfast.kl(p, p[0], check_sums=False), rtol=0, atol=0)


@pytest.mark.slow  # imports dask
def test_dask_unknown_chunk_sizes_name_the_row_in_its_block(rng):
    da = pytest.importorskip("dask.array")
    p = dirichlet(rng, 200, 6)
    lazy = da.from_array(p, chunks=(50, 6))
    selected = lazy[lazy[:, 0] > np.median(p[:, 0])]  # chunk sizes unknown
    with pytest.raises(ValueError) as info:
        klfast.jeffreys(selected, selected + 0.5).compute(scheduler="synchronous")
    message = str(info.value)
    assert "nan" not in message
    assert message.startswith("q: row ") and "sums to 4" in message
    assert "counting from the start of block (" in message


# ---- 2. a missing q -------------------------------------------------------

@pytest.mark.parametrize("name", TWO_INPUT)
@pytest.mark.parametrize("n_rows", [1, 40_000])
def test_none_q_is_a_type_error(name, n_rows, rng):
    p = dirichlet(rng, n_rows, 3)
    with pytest.raises(TypeError, match="q is required"):
        getattr(klfast, name)(p, None)


@pytest.mark.parametrize("loss", ["kl_loss", "cross_entropy_loss"])
def test_loss_inputs_may_not_be_none(loss):
    fn = getattr(klfast, loss)
    with pytest.raises(TypeError, match="target is required"):
        fn(None, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="logits is required"):
        fn(np.full((2, 3), 1 / 3), None)


# ---- 3. masked arrays -----------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_masked_arrays_are_refused(name):
    p = np.ma.array([[0.5, 0.5], [0.9, 0.1]], mask=[[0, 0], [1, 1]])
    q = np.array([[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(TypeError, match="p is a numpy.ma.MaskedArray"):
        call(name, p, q)
    if name != "entropy":
        with pytest.raises(TypeError, match="q is a numpy.ma.MaskedArray"):
            call(name, q, p)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        call(name, q, q, out=np.ma.zeros(2))


@pytest.mark.parametrize("loss", ["kl_loss", "cross_entropy_loss"])
def test_losses_refuse_masked_arrays(loss):
    z = np.ma.zeros((2, 3))
    with pytest.raises(TypeError, match="logits is a numpy.ma.MaskedArray"):
        getattr(klfast, loss)(np.full((2, 3), 1 / 3), z)


# ---- 4. out overlapping an input ------------------------------------------

@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n_rows", [2_000, 70_000])
def test_out_overlapping_an_input_gives_the_same_scores(name, n_rows, rng):
    P = dirichlet(rng, n_rows, 5)
    Q = dirichlet(rng, n_rows, 5)
    want = call(name, P, Q)
    for which in ("p", "q"):
        P2, Q2 = P.copy(), Q.copy()
        target = P2 if which == "p" else Q2
        out = target[::-1, 0]  # the first column, reversed: row i's score lands in row n-1-i
        if name == "entropy" and which == "q":
            continue
        got = call(name, P2, Q2, out=out)
        assert got is out
        np.testing.assert_array_equal(out, want)
    # keepdims and a float32 view of the same memory as p
    P3 = P.astype(np.float32)
    out3 = P3[:, 1:2]
    call(name, P3, Q.astype(np.float32), out=out3, keepdims=True)
    np.testing.assert_allclose(out3[:, 0], want, rtol=2e-5, atol=1e-6)


# ---- 5. Jensen-Shannon distance in a base below 1 -------------------------

def test_js_distance_with_base_below_one_is_refused():
    p, q = [0.2, 0.8], [0.6, 0.4]
    with pytest.raises(ValueError, match="distance=True needs base > 1"):
        klfast.jensen_shannon(p, q, base=0.5, distance=True)
    # the divergence itself is defined in any base: nats / log(base), negative here
    js = klfast.jensen_shannon(p, q)
    assert float(klfast.jensen_shannon(p, q, base=0.5)) == pytest.approx(js / math.log(0.5))
    assert float(klfast.jensen_shannon(p, q, base=2, distance=True)) == pytest.approx(
        math.sqrt(js / math.log(2)))


# ---- 7. keywords given as arrays ------------------------------------------

BAD_KEYWORDS = [
    ("axis", np.array([1, 0]), TypeError, "axis must be an int"),
    ("axis", 1.0, TypeError, "axis must be an int"),
    ("normalize", np.array([True, False]), TypeError, "normalize must be True or False"),
    ("normalize", "yes", TypeError, "normalize must be True or False"),
    ("check_sums", np.array([1]), TypeError, "check_sums must be True or False"),
    ("keepdims", np.array([True, True]), TypeError, "keepdims must be True or False"),
]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("keyword,value,error,match", BAD_KEYWORDS)
@pytest.mark.parametrize("n_rows", [2, 40_000])
def test_array_keywords_name_the_keyword(name, keyword, value, error, match, n_rows, rng):
    p = dirichlet(rng, n_rows, 3)
    with pytest.raises(error, match=match):
        call(name, p, p, **{keyword: value})


def test_distance_keyword_must_be_a_bool():
    with pytest.raises(TypeError, match="distance must be True or False"):
        klfast.jensen_shannon([0.5, 0.5], [0.5, 0.5], distance=np.array([1, 1]))


@pytest.mark.parametrize("keyword", ["return_grad", "target_is_logits"])
def test_loss_flags_must_be_bools(keyword):
    with pytest.raises(TypeError, match=f"{keyword} must be True or False"):
        klfast.kl_loss(np.full((2, 3), 1 / 3), np.zeros((2, 3)), **{keyword: np.array([1, 0])})
    with pytest.raises(TypeError, match="axis must be an int"):
        klfast.kl_loss(np.full((2, 3), 1 / 3), np.zeros((2, 3)), axis=np.array([0, 1]))


def test_numpy_scalars_are_fine_as_keywords(rng):
    p = dirichlet(rng, 4, 3)
    want = klfast.kl(p, p[::-1], keepdims=True)
    got = klfast.kl(p.T, p[::-1].T, axis=np.int64(0), normalize=np.bool_(False),
                    keepdims=np.bool_(True))
    np.testing.assert_array_equal(got.T, want)


# ---- 8. Ctrl-C stops a long call -------------------------------------------

INTERRUPT_SCRIPT = """
import os, signal, sys, threading, time
import numpy as np
import klfast

n, k = {n_rows}, 1000
p = np.full(k, 1 / k)
q = np.linspace(1, 2, k); q /= q.sum()
P = np.broadcast_to(p, (n, k))          # no memory: one row read n times
out = np.full(n, np.nan)
call = {call}
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    call()
except KeyboardInterrupt:
    print("interrupted", int(np.count_nonzero(~np.isnan(out))))
else:
    print("finished", int(np.count_nonzero(~np.isnan(out))))
"""

CALLS = {
    "kl, 1 thread": "lambda: klfast.kl(P, q, out=out, num_threads=1)",
    "kl, 2 threads": "lambda: klfast.kl(P, q, out=out, num_threads=2)",
    "entropy, exact path": "lambda: klfast.entropy(P, eps=0, out=out, num_threads=1)",
    # float16 rows overlapping in one small buffer: converted block by block
    "kl, converted blocks": ("lambda: klfast.kl(np.lib.stride_tricks.as_strided("
                             "np.full(n + k, 1 / k, np.float16), (n, k), (2, 2)), q, out=out, "
                             "check_sums=False)"),
    "kl_loss": ("lambda: out.__setitem__(slice(None), "
                "klfast.kl_loss(p, np.broadcast_to(np.log(q), (n, k)), reduction='none'))"),
}


@pytest.mark.slow  # a fresh interpreter per call
@pytest.mark.parametrize("label", CALLS)
def test_ctrl_c_stops_a_long_call(label, tmp_path):
    # n rows take about 10-60 s when not interrupted; the signal comes after 0.5 s
    n_rows = {"kl, converted blocks": 10_000_000, "kl_loss": 5_000_000}.get(label, 40_000_000)
    script = INTERRUPT_SCRIPT.format(n_rows=n_rows, call=CALLS[label])
    # run outside the repository: `python -c` would import its uncompiled klfast folder
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    status, rows = done.stdout.split()
    assert status == "interrupted"
    if label != "kl_loss":  # the loss writes its rows only when it returns
        assert int(rows) < n_rows // 2
