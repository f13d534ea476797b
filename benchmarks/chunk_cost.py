"""What looking for signals between chunks of rows costs (one build, in turns).

klfast's kernels score rows in chunks of ``klfast._kernels.CHUNK_ELEMENTS``
elements and look for signals (Ctrl-C) between them. This times the same call
with the default chunks and with one chunk for the whole call, alternating
(A B B A ...), and prints the median of the per-pair ratios.

    python benchmarks/chunk_cost.py --shape 100000x1000 --dtype float64 --threads 1,2

On a shared machine the ratio's noise (a few per cent) hides a cost this small,
so ``--per-boundary`` measures the cost of one chunk boundary directly: a call
on rows in cache, split into one-row chunks, against the same call in one
chunk; times the number of boundaries a large call has (printed too), it
bounds the cost of the signal checks.

    python benchmarks/chunk_cost.py --per-boundary --threads 1,2
"""
import argparse
import statistics
import sys
import time

import numpy as np

import klfast
from klfast import _kernels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="100000x1000")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--measures", default="kl")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--per-boundary", action="store_true",
                        help="the cost of one chunk boundary, and the boundaries of --shape")
    args = parser.parse_args(argv)
    if args.per_boundary:
        return per_boundary(args)
    n, k = (int(x) for x in args.shape.split("x"))
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(k), size=n).astype(args.dtype)
    q = rng.dirichlet(np.ones(k), size=n).astype(args.dtype)
    out = np.empty(n, dtype=args.dtype)
    default = _kernels.CHUNK_ELEMENTS

    def timed(chunk, fn, threads):
        _kernels.CHUNK_ELEMENTS = chunk
        operands = (p,) if fn is klfast.entropy else (p, q)
        t = time.perf_counter()
        fn(*operands, out=out, num_threads=threads)
        return time.perf_counter() - t

    for measure in args.measures.split(","):
        fn = getattr(klfast, measure)
        for threads in (int(t) for t in args.threads.split(",")):
            timed(default, fn, threads)
            ratios = []
            for i in range(args.pairs):
                order = (default, 1 << 62) if i % 2 == 0 else (1 << 62, default)
                got = {chunk: timed(chunk, fn, threads) for chunk in order}
                ratios.append(got[default] / got[1 << 62])
            print(f"{measure} {args.shape} {args.dtype} {threads} thr: chunked / one chunk "
                  f"{statistics.median(ratios):.4f} (pairs {min(ratios):.3f}-{max(ratios):.3f})")
    _kernels.CHUNK_ELEMENTS = default


def per_boundary(args):
    """One boundary's cost (2,000 x 100 float64 rows in cache, one-row chunks
    against one chunk, in turns), and how many boundaries --shape has."""
    rng = np.random.default_rng(0)
    n, k = 2000, 100
    p = rng.dirichlet(np.ones(k), size=n)
    q = rng.dirichlet(np.ones(k), size=n)
    out = np.empty(n)
    elements, seconds = _kernels.CHUNK_ELEMENTS, _kernels.CHUNK_SECONDS

    def timed(one_row_chunks, threads):
        _kernels.CHUNK_ELEMENTS = k if one_row_chunks else 1 << 62
        _kernels.CHUNK_SECONDS = 1e-12 if one_row_chunks else seconds
        t = time.perf_counter()
        klfast.kl(p, q, out=out, num_threads=threads)
        return time.perf_counter() - t

    try:
        for threads in (int(t) for t in args.threads.split(",")):
            costs = [(timed(True, threads) - timed(False, threads)) / (n - 1)
                     for _ in range(args.pairs)]
            print(f"{threads} thr: one chunk boundary costs {statistics.median(costs) * 1e6:.2f} us")
    finally:
        _kernels.CHUNK_ELEMENTS, _kernels.CHUNK_SECONDS = elements, seconds
    # the boundaries of a --shape call: count the chunks as the kernels size them
    n_rows, k_big = (int(x) for x in args.shape.split("x"))
    p = rng.dirichlet(np.ones(k_big), size=n_rows).astype(args.dtype)
    q = rng.dirichlet(np.ones(k_big), size=n_rows).astype(args.dtype)
    seen = []
    real = _kernels._next_chunk

    def counting(chunk, elapsed):
        seen.append(chunk)
        return real(chunk, elapsed)

    _kernels._next_chunk = counting
    try:
        t = time.perf_counter()
        klfast.kl(p, q)
        took = time.perf_counter() - t
    finally:
        _kernels._next_chunk = real
    print(f"kl {args.shape} {args.dtype}: {len(seen)} boundaries in {took * 1e3:.0f} ms")


if __name__ == "__main__":
    sys.exit(main())
