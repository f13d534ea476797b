"""Where the lane loop beats the row loop on C-order rows: the limits
_lanes_max_k_f64 / _lanes_max_k_f32 in src/_kernels.pyx come from this.

For each dtype and row length k (inputs of about 40-160 MB, out of cache), kl
(or ``--measure``) is timed with every row through the row loop and with whole tiles across
lanes (klfast._kernels.set_lanes_max_k), in turns, on 1 and 2 threads; the
line shows both times (best of 5 calls) and lanes / rows. The results are
the same bits either way (tests/test_lanes.py).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/lanes_crossover.py
    ... --measure jensen_shannon --lengths 2,3,6,10,13
"""
import argparse
import os
import sys

import numpy as np

import klfast
from klfast import _kernels

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shapes import best  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="2,4,6,8,10,12,16,32")
    parser.add_argument("--elements", type=float, default=4e7, help="n_rows * k per input")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--measure", default="kl", choices=["kl", "jeffreys", "entropy",
                                                            "cross_entropy", "jensen_shannon"])
    args = parser.parse_args(argv)
    fn = getattr(klfast, args.measure)
    rng = np.random.default_rng(0)
    before = _kernels.set_lanes_max_k(0, 0)
    try:
        for dtype in (np.float64, np.float32):
            for k in (int(x) for x in args.lengths.split(",")):
                n = int(args.elements) // k
                p = rng.random((n, k)).astype(dtype)
                p /= p.sum(1, keepdims=True)
                q = rng.random((n, k)).astype(dtype)
                q /= q.sum(1, keepdims=True)
                out = np.empty(n, dtype)
                cells = []
                for _ in range(args.turns):
                    for threads in (1, 2):
                        def call():
                            if args.measure == "entropy":
                                fn(p, out=out, num_threads=threads)
                            else:
                                fn(p, q, out=out, num_threads=threads)
                        _kernels.set_lanes_max_k(0, 0)
                        rows = best(call, 5)
                        _kernels.set_lanes_max_k(1 << 30, 1 << 30)
                        lanes = best(call, 5)
                        cells.append(f"{threads}T rows {rows * 1e3:6.1f} ms lanes "
                                     f"{lanes * 1e3:6.1f} ms ({lanes / rows:.2f})")
                print(f"{np.dtype(dtype).name} k={k:3d}  " + " | ".join(cells), flush=True)
    finally:
        _kernels.set_lanes_max_k(*before)


if __name__ == "__main__":
    main()
