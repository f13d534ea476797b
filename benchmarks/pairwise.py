"""klfast.pairwise beside the other ways to get all pairs, as ratios measured in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/pairwise.py [--rounds 5] [--no-today]

kl (and float32 kl): P 5,000 x 300 against Q 2,000 x 300; jensen_shannon: P 500 x 300
against the same Q. Peers, each checked against klfast first:

* today's klfast: a loop over the rows of P, ``klfast.kl(P[i], Q)``, and broadcasting,
  ``klfast.kl(P[:, None], Q[None])`` (timed on a fifth of P and scaled: it is slow);
* the bare identity ``-H(P)[:, None] - P @ log(max(Q, eps)).T`` (numpy's BLAS), fast
  but with absolute, not relative, error;
* NumKong's ``cdist`` (``kld``; ``jsd``, the distance), when installed;
* scipy's ``cdist(P, Q, "jensenshannon")`` (the distance; on a tenth of P, scaled).

The machine is shared and noisy: the peers run in turns (A B C A B C ...), and each
ratio is the median over rounds of that round's ratio. The peak of numpy's
allocations during a klfast call (tracemalloc) is printed beside the output's size.
"""
import argparse
import time
import tracemalloc

import numpy as np

import klfast

EPS = klfast.DEFAULT_EPS


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _gemm_identity(P, Q):
    logs = np.log(np.maximum(Q, EPS))
    return -klfast.entropy(P)[:, None] - P @ logs.T


def _peers_kl(P, Q, today=True):
    """name -> (function, fraction of the rows of P it is timed on)."""
    fifth = P[: len(P) // 5]
    peers = {
        "klfast.pairwise": (lambda: klfast.pairwise(P, Q, "kl"), 1.0),
        "GEMM identity": (lambda: _gemm_identity(P, Q), 1.0),
    }
    if today:
        peers["loop of klfast.kl"] = (lambda: [klfast.kl(row, Q) for row in P], 1.0)
        peers["broadcast klfast.kl"] = (lambda: klfast.kl(fifth[:, None], Q[None]), 0.2)
    try:
        import numkong
    except ImportError:
        pass
    else:
        peers["numkong cdist kld"] = (lambda: numkong.cdist(P, Q, metric="kld"), 1.0)
    return peers


def _peers_js(P, Q, today=True):
    tenth = P[: len(P) // 10]
    peers = {"klfast.pairwise": (lambda: klfast.pairwise(P, Q, "js", distance=True), 1.0)}
    if today:
        peers["broadcast klfast.jensen_shannon"] = (
            lambda: klfast.jensen_shannon(P[:, None], Q[None], distance=True), 1.0)
    try:
        import numkong
    except ImportError:
        pass
    else:
        peers["numkong cdist jsd"] = (lambda: numkong.cdist(P, Q, metric="jsd"), 1.0)
    try:
        from scipy.spatial.distance import cdist
    except ImportError:
        pass
    else:
        peers["scipy cdist jensenshannon"] = (lambda: cdist(tenth, Q, "jensenshannon"), 0.1)
    return peers


def _check(peers, want, rtol):
    for name, (fn, fraction) in peers.items():
        if fraction != 1.0 or name == "klfast.pairwise":
            continue
        got = fn()
        got = np.asarray(got if not isinstance(got, list) else np.stack(got))
        err = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-300))
        print(f"  {name}: max relative difference from klfast {err:.1e}")


def _rounds(title, peers, rounds):
    times = {name: [] for name in peers}
    for _ in range(rounds):
        for name, (fn, fraction) in peers.items():
            times[name].append(_timed(fn) / fraction)
    base = times["klfast.pairwise"]
    print(f"\n{title}")
    print(f"  {'peer':34s} {'median s':>9s} {'peer / klfast (median of rounds)':>34s}")
    for name, values in times.items():
        ratio = np.median([v / b for v, b in zip(values, base)])
        print(f"  {name:34s} {np.median(values):9.3f} {ratio:34.2f}")


def _peak_beyond_output(fn, output_bytes):
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (peak - output_bytes) / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="a tenth of the rows (smoke run)")
    parser.add_argument("--no-today", action="store_true",
                        help="leave out today's klfast (loop, broadcast): quicker rounds")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    scale = 10 if args.small else 1
    P = rng.dirichlet(np.ones(300), size=5000 // scale)
    Q = rng.dirichlet(np.ones(300), size=2000 // scale)
    print(f"klfast {klfast.__version__}, {klfast.default_num_threads()} threads, "
          f"level {klfast._kernels.get_isa()}")
    for dtype in (np.float64, np.float32):
        p, q = P.astype(dtype), Q.astype(dtype)
        peers = _peers_kl(p, q, not args.no_today)
        want = klfast.pairwise(p, q, "kl")
        print(f"\nkl {dtype.__name__}: checks")
        _check(peers, want, 1e-6)
        _rounds(f"kl {dtype.__name__}, {len(p):,} x {len(q):,} x 300", peers, args.rounds)
        mb = _peak_beyond_output(lambda: klfast.pairwise(p, q, "kl"), want.nbytes)
        print(f"  peak numpy memory beyond the {want.nbytes / 2**20:.0f} MB output: {mb:.0f} MB")
    p = P[: len(P) // 10]
    peers = _peers_js(p, Q, not args.no_today)
    want = klfast.pairwise(p, Q, "js", distance=True)
    print("\njensen_shannon (distance) float64: checks")
    _check(peers, want, 1e-6)
    _rounds(f"jensen_shannon float64, {len(p):,} x {len(Q):,} x 300", peers, args.rounds)


if __name__ == "__main__":
    main()
