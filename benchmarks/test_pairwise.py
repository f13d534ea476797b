"""klfast.pairwise beside the other ways to get all pairs, one pytest-benchmark
group per (measure, dtype): klfast, a loop of today's row function, the bare
GEMM identity, NumKong's cdist and scipy's cdist (Jensen-Shannon). Each peer
is checked against klfast before it is timed. Full sizes: kl 5,000 x 2,000 x
300, jensen_shannon 500 x 2,000 x 300; a tenth of the rows when benchmarking
is disabled (CI) or with --bench-small. benchmarks/pairwise.py prints the
same comparison as ratios of samples taken in turns."""
import numpy as np
import pytest

import klfast

EPS = klfast.DEFAULT_EPS


def _small(config):
    """conftest.small_sizes (conftest is not importable under importlib mode)."""
    import os

    return bool(os.environ.get("CI")) or config.getoption("benchmark_disable", False) \
        or config.getoption("bench_small", False)


def _inputs(request, n, m, dtype):
    scale = 10 if _small(request.config) else 1
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(300), size=n // scale).astype(dtype)
    Q = rng.dirichlet(np.ones(300), size=m // scale).astype(dtype)
    return P, Q


def _peer(name, P, Q, measure):
    if name == "klfast.pairwise":
        return lambda: klfast.pairwise(P, Q, measure, **({"distance": True}
                                                         if measure == "js" else {}))
    if name == "loop of the row function":
        fn = klfast.kl if measure == "kl" else klfast.jensen_shannon
        kwargs = {"distance": True} if measure == "js" else {}
        return lambda: np.stack([fn(row, Q, **kwargs) for row in P])
    if name == "GEMM identity":
        return lambda: -klfast.entropy(P)[:, None] - P @ np.log(np.maximum(Q, EPS)).T
    if name == "numkong cdist":
        numkong = pytest.importorskip("numkong")
        metric = "kld" if measure == "kl" else "jsd"
        return lambda: np.asarray(numkong.cdist(P, Q, metric=metric))
    cdist = pytest.importorskip("scipy.spatial.distance").cdist
    return lambda: cdist(P, Q, "jensenshannon")


KL_PEERS = ["klfast.pairwise", "loop of the row function", "GEMM identity", "numkong cdist"]
JS_PEERS = ["klfast.pairwise", "loop of the row function", "numkong cdist", "scipy cdist"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("peer", KL_PEERS)
def test_pairwise_kl(benchmark, request, peer, dtype):
    P, Q = _inputs(request, 5000, 2000, dtype)
    fn = _peer(peer, P, Q, "kl")
    want = klfast.pairwise(P, Q, "kl")
    rtol = 1e-6 if dtype == "float64" else 1e-3
    if peer == "numkong cdist" and dtype == "float32":
        rtol = 0.1  # NumKong adds eps = 1e-7 to every float32 entry: a few % off
    np.testing.assert_allclose(fn(), want, rtol=rtol, atol=1e-6)
    benchmark.group = f"pairwise kl {dtype} {len(P)}x{len(Q)}x300"
    benchmark.pedantic(fn, rounds=3, iterations=1)


@pytest.mark.parametrize("peer", JS_PEERS)
def test_pairwise_js(benchmark, request, peer):
    P, Q = _inputs(request, 500, 2000, "float64")
    fn = _peer(peer, P, Q, "js")
    np.testing.assert_allclose(fn(), klfast.pairwise(P, Q, "js", distance=True), rtol=1e-6)
    benchmark.group = f"pairwise jensen_shannon float64 {len(P)}x{len(Q)}x300"
    benchmark.pedantic(fn, rounds=3, iterations=1)
