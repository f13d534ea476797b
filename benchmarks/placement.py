"""One call at many placements of its input and output, in one process.

benchmarks/ab_builds.py runs each build in its own process on inputs
memory-mapped from .npy files; where one build's time moves by more than its
code could explain, this tells whether the time follows where the arrays
sit. p and out are views at offsets of 0 .. 512 elements into larger
buffers (each holding the same values); each placement keeps the fastest of
``--calls`` calls.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/placement.py \\
        --shape 20000000x2 --measure entropy --threads 1

Run it with each build's Python to compare builds placement by placement.
"""
import argparse
import statistics
import time

import numpy as np

import klfast

OFFSETS_P = (0, 8, 64, 256, 512)
OFFSETS_OUT = (0, 8, 64, 512)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="20000000x2")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--measure", default="entropy",
                    choices=["kl", "jeffreys", "entropy", "cross_entropy"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calls", type=int, default=5)
    args = ap.parse_args()
    n, k = (int(v) for v in args.shape.lower().split("x"))
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    values = rng.random((n, k)).astype(dtype) + dtype.type(1e-3)
    values /= values.sum(axis=1, keepdims=True)
    q = values[::-1].copy()
    fn = getattr(klfast, args.measure)
    big_p = np.empty(n * k + max(OFFSETS_P), dtype)
    big_out = np.empty(n + max(OFFSETS_OUT), dtype)
    times = []
    print(f"klfast {klfast.__version__}; {args.measure} {args.shape} {args.dtype}, "
          f"{args.threads} thread(s), fastest of {args.calls} calls")
    for po in OFFSETS_P:
        p = big_p[po:po + n * k].reshape(n, k)
        p[...] = values
        for oo in OFFSETS_OUT:
            out = big_out[oo:oo + n]
            call = ((lambda: fn(p, out=out, num_threads=args.threads))
                    if args.measure == "entropy"
                    else (lambda: fn(p, q, out=out, num_threads=args.threads)))
            best = float("inf")
            for _ in range(args.calls):
                t0 = time.perf_counter()
                call()
                best = min(best, time.perf_counter() - t0)
            times.append(best)
            print(f"  p at {p.ctypes.data % 4096:4d} mod 4096, out at "
                  f"{out.ctypes.data % 4096:4d}: {best * 1e3:8.2f} ms")
    print(f"median {statistics.median(times) * 1e3:.2f} ms, range "
          f"{min(times) * 1e3:.2f}-{max(times) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
