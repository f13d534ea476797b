"""Relative error of klfast.jensen_shannon on nearly equal rows, at every
instruction-set level this CPU runs, on the fast and the exact path.

    python benchmarks/js_accuracy.py [--rows 200] [--k 1000] [--rel 1e-6]

Rows of k values spread over six decades (zeros replaced by 1e-3, then
normalised); q = p (1 + rel N(0, 1)). The reference is
klfast._core.reference.jensen_shannon_rows, a float64 formula that does not
cancel. The exact path is forced by two subnormal entries in column 7 (left
out of the reference: their term is below 1e-310). The plain numpy log(p/m) is printed for comparison.
"""
import argparse

import numpy as np

import klfast
from klfast import _kernels
from klfast._core.reference import jensen_shannon_rows as js_stable


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--rel", type=float, default=1e-6)
    args = parser.parse_args()
    rng = np.random.default_rng(2)
    p = rng.random((args.rows, args.k)) * 10.0 ** rng.integers(-6, 1, size=(args.rows, args.k))
    p[rng.random(p.shape) < 0.15] = 1e-3
    p /= p.sum(axis=1, keepdims=True)
    q = p * (1 + args.rel * rng.standard_normal(p.shape))
    want = js_stable(p, q)
    a, b = p.copy(), q.copy()
    a[:, 7], b[:, 7] = 1e-310, 5e-311
    want_exact = js_stable(np.delete(a, 7, axis=1), np.delete(b, 7, axis=1))

    def show(label, got, ref):
        err = np.abs(got - ref) / ref
        print(f"{label:28s} median {np.median(err):.1e}  max {err.max():.1e}")

    for isa in _kernels.supported_isas():
        _kernels.set_isa(isa)
        show(f"klfast {isa}, fast path", klfast.jensen_shannon(p, q), want)
        show(f"klfast {isa}, exact path", klfast.jensen_shannon(a, b), want_exact)
    m = (p + q) / 2
    show("numpy log(p/m)", 0.5 * ((p * np.log(p / m)).sum(1) + (q * np.log(q / m)).sum(1)), want)


if __name__ == "__main__":
    main()
