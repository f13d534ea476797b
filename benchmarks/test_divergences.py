"""klfast and its peers timed side by side: one group per (measure, dtype, shape).

Each test first calls its peer once, outside the timed part, and asserts the
answer: klfast against the float64 reference (scipy's expression; numpy's for
jensen_shannon, as scipy's jensenshannon renormalises and takes a square root)
and bitwise against itself on other thread counts, every peer against klfast,
the read floor against the known sum. A
benchmark therefore never times a wrong answer. Peers whose library is not
installed are skipped. The cases come from ``divergence_cases`` in conftest.py.
"""
import time

import numpy as np
import pytest

import klfast
from klfast.bench import peers


def _check(case, peer, threads, result, input_cache):
    if peer is peers.READ_FLOOR:
        # every row of P and Q sums to 1; the floor reads two of them per row
        assert np.isclose(result, 2 * case.shape.n_rows, rtol=1e-4), result
        return
    if peer is peers.KLFAST:
        reference = input_cache.result(case, "reference")
        ok, err = peers.agreement(result, reference, case.dtype, peer)
        assert ok, f"klfast disagrees with the reference: max relative difference {err:.2e}"
        if threads != klfast.default_num_threads():
            same = np.array_equal(result, input_cache.result(case, "klfast"))
            assert same, "klfast results depend on the thread count"
        return
    ok, err = peers.agreement(result, input_cache.result(case, "klfast"), case.dtype, peer)
    assert ok, f"{peer.name} disagrees with klfast: max relative difference {err:.2e}"


def test_divergence(benchmark, divergence_case, input_cache):
    case, peer, threads = divergence_case
    if peer.library:
        pytest.importorskip(peer.library)
    p, q = input_cache.get(case.shape, case.dtype, case.zeros)
    try:
        fn = peer.prepare(case, p, q, threads)
    except peers.Unsupported as exc:
        pytest.skip(str(exc))

    start = time.perf_counter()
    result = fn()  # the check call; also the warm-up (numba compiles here)
    first_call = time.perf_counter() - start
    _check(case, peer, threads, result, input_cache)
    del result

    benchmark.group = f"{case.measure} {case.dtype} {case.shape.label}" + (
        ", 10% zeros" if case.zeros else "")
    benchmark.extra_info.update(peer=peer.name, label=peer.label(threads), threads=threads,
                                elements=case.shape.elements, bytes_read=case.bytes_read())
    if first_call > 0.2:  # scipy on 1e8 elements takes seconds: a few rounds suffice
        benchmark.pedantic(fn, rounds=3 if first_call > 1.0 else 5, iterations=1)
    else:
        benchmark(fn)
