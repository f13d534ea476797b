"""What looking for signals between chunks of rows costs (one build, in turns).

klfast's kernels score rows in chunks of ``klfast._kernels.CHUNK_ELEMENTS``
elements and look for signals (Ctrl-C) between them. This times the same call
with the default chunks and with one chunk for the whole call, alternating
(A B B A ...), and prints the median of the per-pair ratios.

    python benchmarks/chunk_cost.py --shape 100000x1000 --dtype float64 --threads 1,2
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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
