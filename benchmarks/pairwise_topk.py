"""Top-k nearest rows at scale: time and peak memory beyond the inputs.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/pairwise_topk.py \\
        --rows 100000 --q-rows 100000 --k 300 --topk 10 --dtype float32 --measure kl

Makes P (rows x k) and Q (q-rows x k) of Dirichlet rows, then times one call of
``klfast.pairwise(P, Q, measure, topk=topk)``. Memory is the process's peak
resident set (Linux VmHWM) minus the resident set after the inputs were made:
what the call needed beyond its inputs (its result, Q's logs, a tile, the heaps).
A smaller --q-rows gives the time per pair for extrapolating; memory does not
grow with Q's rows beyond Q's logs (q-rows x k float64).
"""
import argparse
import time

import numpy as np

import klfast


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--q-rows", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=300)
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--measure", default="kl")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    klfast.pairwise(np.full((2, 4), 0.25), measure=args.measure, topk=1)  # threads up
    P = rng.dirichlet(np.ones(args.k), size=args.rows).astype(args.dtype)
    Q = rng.dirichlet(np.ones(args.k), size=args.q_rows).astype(args.dtype)
    inputs = P.nbytes + Q.nbytes
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    base = _status("VmRSS")
    start = time.perf_counter()
    idx, val = klfast.pairwise(P, Q, args.measure, topk=args.topk)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    pairs = args.rows * args.q_rows
    print(f"{args.measure} {args.dtype} {args.rows:,} x {args.q_rows:,} x {args.k}, "
          f"top-{args.topk}, {klfast.default_num_threads()} threads")
    print(f"  time {seconds:.1f} s ({seconds / pairs * 1e9:.2f} ns per pair)")
    print(f"  inputs {inputs / 2**20:.0f} MB; peak beyond them {(peak - base) / 2**20:.0f} MB "
          f"(result {(idx.nbytes + val.nbytes) / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
