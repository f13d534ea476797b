"""Where reading rows together pays for the entropy: the limits
_pair_min_k_f64 / _pair_min_k_f32 in src/_kernels.pyx come from this.

For each dtype and row length k (inputs of about 1 GB, out of cache), the
entropy is timed with every row read alone (the row loop) and with rows read
together ("pairs": the row block reads two rows together, or four of 16 KB
or more; klfast._kernels.set_pair_min_k), in turns, on 1 and 2 threads; the
line shows the median of the per-turn ratios pairs / alone (best of 3 calls
each), their range, and the median times.
The results are the same bits either way (tests/test_row_block.py).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/pair_rows.py
    ... --lengths 8000,32000 --dtypes float32 --turns 9
"""
import argparse
import os
import sys

import numpy as np

import klfast
from klfast import _kernels

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shapes import best  # noqa: E402

ALONE = 1 << 62


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1000,2048,8000,16000,32000,64000")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--bytes", type=float, default=1e9, help="size of the input")
    parser.add_argument("--turns", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    before = _kernels.set_pair_min_k(ALONE, ALONE)
    try:
        for dtype in (np.dtype(d) for d in args.dtypes.split(",")):
            for k in (int(x) for x in args.lengths.split(",")):
                n = max(2, int(args.bytes) // (k * dtype.itemsize))
                p = rng.random((n, k), dtype=np.float32).astype(dtype)
                p /= p.sum(1, keepdims=True)
                out = np.empty(n, dtype)
                for threads in (1, 2):
                    def call():
                        klfast.entropy(p, out=out, num_threads=threads)
                    alone, pairs = [], []
                    for _ in range(args.turns):
                        _kernels.set_pair_min_k(ALONE, ALONE)
                        alone.append(best(call, 3))
                        _kernels.set_pair_min_k(0, 0)
                        pairs.append(best(call, 3))
                    ratio = np.array(pairs) / np.array(alone)
                    print(f"{dtype.name} {n} x {k} {threads} thread(s): pairs / alone "
                          f"{np.median(ratio):.3f} ({ratio.min():.3f}-{ratio.max():.3f}); "
                          f"alone {np.median(alone) * 1e3:.1f} ms, pairs "
                          f"{np.median(pairs) * 1e3:.1f} ms", flush=True)
    finally:
        _kernels.set_pair_min_k(*before)


if __name__ == "__main__":
    main()
