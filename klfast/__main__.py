"""Demo: score a generated batch with klfast and scipy.

    klfast demo [--rows 20000] [--cols 1000] [--dtype float64] [--threads N]
    python -m klfast ...      (the same, from any folder but the source tree)

The default batch fits comfortably in 1 GB of RAM: P, Q and scipy's
rel_entr(P, Q) temporary are 160 MB each (see ``peak_bytes``).
"""
import argparse
import time

import numpy as np

import klfast
from klfast._core import engine


def _time(fn, repeat):
    best = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best.append(time.perf_counter() - t0)
    return float(np.median(best)), result


def peak_bytes(rows, cols, dtype):
    """The demo's large arrays at their peak: P, Q and scipy's rel_entr(P, Q)."""
    return 3 * rows * cols * np.dtype(dtype).itemsize


def build_parser(prog="python -m klfast"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                     epilog="The default size needs about 0.5 GB of RAM "
                                            "(P, Q and scipy's temporary: 3 x rows x cols "
                                            "values); larger batches need proportionally more.")
    parser.add_argument("--rows", type=int, default=20_000,
                        help="distributions in the batch (default: %(default)s)")
    parser.add_argument("--cols", type=int, default=1_000,
                        help="categories per distribution (default: %(default)s)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--threads", type=int, default=None, help="klfast threads (default: all)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (median)")
    return parser


def main(argv=None, prog="python -m klfast"):
    args = build_parser(prog).parse_args(argv)

    klfast.show_config()
    rng = np.random.default_rng(42)
    shape = (args.rows, args.cols)
    print(f"\ngenerating {args.rows:,} x {args.cols:,} {args.dtype} rows (P and Q, sums 1) ...")
    p = rng.random(shape, dtype=args.dtype)
    p[:, ::10] = 0  # a zero in every tenth column: safe epsilon handling at work
    p /= p.sum(axis=1, keepdims=True)
    q = rng.random(shape, dtype=args.dtype)
    q /= q.sum(axis=1, keepdims=True)

    t_kl, scores = _time(lambda: klfast.kl(p, q, num_threads=args.threads), args.repeat)
    print(f"klfast.kl        {t_kl:8.3f} s  {args.rows / t_kl:14,.0f} rows/s")
    t_j, _ = _time(lambda: klfast.jeffreys(p, q, num_threads=args.threads), args.repeat)
    print(f"klfast.jeffreys  {t_j:8.3f} s  {args.rows / t_j:14,.0f} rows/s")
    try:
        from scipy.special import rel_entr
    except ImportError:
        print("scipy is not installed: pip install 'klfast[demo]' to compare with it")
        return 0
    t_sp, ref = _time(lambda: rel_entr(p, q).sum(axis=1), 1)
    print(f"scipy rel_entr   {t_sp:8.3f} s  {args.rows / t_sp:14,.0f} rows/s")
    err = float(np.max(np.abs(scores - ref) / np.maximum(np.abs(ref), 1e-300)))
    threads = engine.resolve_threads(args.threads, args.rows, args.cols)
    print(f"\nklfast.kl ({threads} thread{'s' if threads != 1 else ''}) is "
          f"{t_sp / t_kl:.1f}x faster than scipy.special.rel_entr(P, Q).sum(1) (1 thread: a "
          f"NumPy ufunc); max relative difference {err:.1e}")
    print(f"first rows: KL = {np.array2string(scores[:4], precision=5)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
