"""Time klfast.kl_loss against the plain numpy/scipy way, in the same run.

    python benchmarks/bench_loss.py [--rows 100000] [--k 1000] [--repeat 5] [--num-threads N]
                                    [--clock wall|cpu] [--isa LEVEL]

The peer is what one writes without klfast: scipy.special.log_softmax, then
xlogy(p, p) - p * log q summed per row (and exp(log q) - p for the gradient).
Prints the median time of each and the ratio peer / klfast. ``--clock cpu``
measures process CPU time (the work, summed over threads) instead of wall time.
``--isa`` runs the kernels at one instruction-set level (klfast._kernels.set_isa;
default: the best this CPU runs).
"""
import argparse
import time

import numpy as np
from scipy.special import log_softmax, xlogy

import klfast
from klfast import _kernels


def peer_loss(p, z):
    log_q = log_softmax(z, axis=1)
    return (xlogy(p, p) - p * log_q).sum(1).mean()


def peer_loss_grad(p, z):
    log_q = log_softmax(z, axis=1)
    loss = (xlogy(p, p) - p * log_q).sum(1).mean()
    return loss, (np.exp(log_q) - p) / z.shape[0]


def median_time(fn, repeat, clock=time.perf_counter):
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append(clock() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--num-threads", type=int, default=None,
                        help="klfast threads (default: klfast.default_num_threads())")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time (all threads), steadier on a busy machine")
    parser.add_argument("--isa", choices=_kernels.supported_isas(), default=None,
                        help="instruction-set level of the kernels (default: the best)")
    args = parser.parse_args()
    if args.isa:
        _kernels.set_isa(args.isa)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"kl_loss, {args.rows} x {args.k}, median of {args.repeat}, "
          f"klfast threads: {args.num_threads or klfast.default_num_threads()}, {args.clock} time, "
          f"level {_kernels.get_isa()}")
    print(f"{'dtype':<9}{'grad':<6}{'klfast s':>10}{'numpy/scipy s':>15}{'ratio':>8}")
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        z = (rng.standard_normal((args.rows, args.k)) * 3).astype(dtype)
        p = rng.random((args.rows, args.k)).astype(dtype)
        p /= p.sum(1, keepdims=True)
        for grad in (False, True):
            def ours_call():
                return klfast.kl_loss(p, z, return_grad=grad, num_threads=args.num_threads)

            def peer_call():
                return peer_loss_grad(p, z) if grad else peer_loss(p, z)

            ours = median_time(ours_call, args.repeat, clock)
            peer = median_time(peer_call, args.repeat, clock)
            print(f"{np.dtype(dtype).name:<9}{str(grad):<6}{ours:>10.3f}{peer:>15.3f}"
                  f"{peer / ours:>7.1f}x")
        del z, p


if __name__ == "__main__":
    main()
