"""Time klfast's losses against the numpy/scipy way and torch, in turns.

    python benchmarks/bench_loss.py [--rows 100000] [--k 1000] [--loss kl|cross_entropy]
                                    [--repeat 5] [--num-threads N] [--clock wall|cpu]
                                    [--isa LEVEL]

The scipy peer is what one writes without klfast: scipy.special.log_softmax,
then xlogy(p, p) - p * log q (kl) or -p * log q (cross_entropy) summed per
row, and exp(log q) - p for the gradient. torch (when installed; a peer, never
a requirement) runs ``F.kl_div`` of a log_softmax (``F.cross_entropy`` with
probability targets) and backward() for the gradient. klfast writes its
gradient into a ``grad_out=`` array made once, as a training loop would.
Targets are random distributions, a third of them one-hot labels.

Each round calls every peer once, in turns (klfast first); the report is the
median time of each and the median of the per-round ratios peer / klfast, so
drift on a shared machine cancels within a round. ``--clock cpu`` measures
process CPU time (the work, summed over threads) instead of wall time.
``--isa`` runs the kernels at one instruction-set level (klfast._kernels.set_isa;
default: the best this CPU runs).
"""
import argparse
import importlib.util
import statistics
import time

import numpy as np
from scipy.special import log_softmax, xlogy

import klfast
from klfast import _kernels


def scipy_loss(loss, p, z, grad):
    log_q = log_softmax(z, axis=1)
    terms = -p * log_q if loss == "cross_entropy" else xlogy(p, p) - p * log_q
    value = terms.sum(1).mean()
    return (value, (np.exp(log_q) - p) / z.shape[0]) if grad else value


def torch_loss(loss, p, z, grad):
    import torch
    import torch.nn.functional as F

    tp = torch.from_numpy(p)
    tz = torch.from_numpy(z).requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        if loss == "cross_entropy":
            value = F.cross_entropy(tz, tp)
        else:
            value = F.kl_div(F.log_softmax(tz, -1), tp, reduction="batchmean")
    if grad:
        value.backward()
    return value.item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--loss", choices=("kl", "cross_entropy"), default="kl")
    parser.add_argument("--repeat", type=int, default=5, help="rounds")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="klfast and torch threads (default: klfast.default_num_threads())")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time (all threads), steadier on a busy machine")
    parser.add_argument("--isa", choices=_kernels.supported_isas(), default=None,
                        help="instruction-set level of the kernels (default: the best)")
    args = parser.parse_args()
    if args.isa:
        _kernels.set_isa(args.isa)
    threads = args.num_threads or klfast.default_num_threads()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    has_torch = importlib.util.find_spec("torch") is not None
    if has_torch:
        import torch

        torch.set_num_threads(threads)
    print(f"{args.loss}_loss, {args.rows} x {args.k}, {args.repeat} rounds in turns, "
          f"threads: {threads}, {args.clock} time, level {_kernels.get_isa()}"
          + ("" if has_torch else " (torch not installed)"))
    print(f"{'dtype':<9}{'grad':<6}{'klfast ms':>10}{'scipy ms':>10}{'scipy/klfast':>14}"
          + (f"{'torch ms':>10}{'torch/klfast':>14}" if has_torch else ""))
    fn = klfast.kl_loss if args.loss == "kl" else klfast.cross_entropy_loss
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        z = (rng.standard_normal((args.rows, args.k)) * 3).astype(dtype)
        p = rng.dirichlet(np.ones(args.k), args.rows)
        p[::3] = np.eye(args.k)[rng.integers(0, args.k, args.rows)][::3]
        p = p.astype(dtype)
        g = np.empty_like(z)
        for grad in (False, True):
            calls = {
                "klfast": lambda: fn(p, z, return_grad=grad, grad_out=g if grad else None,
                                     num_threads=threads),
                "scipy": lambda: scipy_loss(args.loss, p, z, grad),
            }
            if has_torch:
                calls["torch"] = lambda: torch_loss(args.loss, p, z, grad)
            for call in calls.values():  # warm up
                call()
            times = {name: [] for name in calls}
            for _ in range(args.repeat):
                for name, call in calls.items():
                    start = clock()
                    call()
                    times[name].append(clock() - start)
            ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
            line = f"{np.dtype(dtype).name:<9}{str(grad):<6}{ms['klfast']:>10.2f}"
            for name in calls:
                if name != "klfast":
                    ratio = statistics.median(a / b for a, b in zip(times[name], times["klfast"]))
                    line += f"{ms[name]:>10.2f}{ratio:>13.1f}x"
            print(line)


if __name__ == "__main__":
    main()
