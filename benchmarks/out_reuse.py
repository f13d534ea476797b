"""A fresh result against a reused ``out=``, in turns, for one shape.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/out_reuse.py \
        --shape 20000000x2 --dtype float64 --threads 1,2

A call without ``out=`` returns a new array, whose pages the operating system
zeroes when the kernel first writes them; with few classes per row that costs
about as much as the scoring. Each turn times a call with a fresh result and
one with the same ``out=`` (in alternating order); the figure is the median
of the per-turn ratios, fresh / reused.
"""
import argparse
import time

import numpy as np

import klfast


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="20000000x2", help="ROWSxCOLS")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--measure", default="kl")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--turns", type=int, default=7)
    a = ap.parse_args()
    n, k = (int(x) for x in a.shape.split("x"))
    rng = np.random.default_rng(0)
    p = rng.random((n, k)).astype(a.dtype)
    p /= p.sum(axis=1, keepdims=True)
    q = rng.random((n, k)).astype(a.dtype)
    q /= q.sum(axis=1, keepdims=True)
    fn = getattr(klfast, a.measure)
    args = (p,) if a.measure == "entropy" else (p, q)
    out = np.empty(n, dtype=a.dtype)
    for threads in (int(t) for t in a.threads.split(",")):
        fn(*args, out=out, num_threads=threads)  # warm: out's pages exist
        fresh, reused, ratios = [], [], []
        for turn in range(a.turns):
            order = ("fresh", "out") if turn % 2 == 0 else ("out", "fresh")
            times = {}
            for kind in order:
                t0 = time.perf_counter()
                r = fn(*args, num_threads=threads) if kind == "fresh" else fn(
                    *args, out=out, num_threads=threads)
                times[kind] = time.perf_counter() - t0
                del r
            fresh.append(times["fresh"])
            reused.append(times["out"])
            ratios.append(times["fresh"] / times["out"])
        print(f"{a.shape} {a.dtype} {a.measure}, {threads} thread(s): fresh / out= "
              f"{np.median(ratios):.2f} (turns {min(ratios):.2f}-{max(ratios):.2f}; "
              f"fresh {np.median(fresh) * 1e3:.1f} ms, out= {np.median(reused) * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
