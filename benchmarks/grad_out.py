"""What a training step's gradient costs, with a fresh gradient array each
step and with ``grad_out=`` reusing one, as ratios to the forward pass (the
loss alone), sampled in turns.

    cd /tmp && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python $REPO/benchmarks/grad_out.py

A fresh 4,096 x 32,000 float32 gradient is 0.5 GB that the kernel faults in
page by page on every step; a reused one is already mapped.
"""
import argparse
import statistics
import sys
import time

import numpy as np

import klfast


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4096x32000")
    parser.add_argument("--turns", type=int, default=9)
    args = parser.parse_args(argv)
    n, k = (int(x) for x in args.shape.split("x"))
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    target = np.exp(logits - logits.max(1, keepdims=True))
    target /= target.sum(1, keepdims=True)
    buf = np.empty_like(logits)

    def timed(**kw):
        t = time.perf_counter()
        klfast.kl_loss(target, logits, **kw)
        return time.perf_counter() - t

    calls = {"forward": {}, "fresh gradient": {"return_grad": True},
             "grad_out": {"return_grad": True, "grad_out": buf}}
    for kw in calls.values():
        timed(**kw)  # warm up
    times = {name: [] for name in calls}
    for _ in range(args.turns):
        for name, kw in calls.items():
            times[name].append(timed(**kw))
    forward = times["forward"]
    print(f"kl_loss {args.shape} float32: forward {statistics.median(forward) * 1e3:.0f} ms")
    for name in ("fresh gradient", "grad_out"):
        ratio = statistics.median(t / f for t, f in zip(times[name], forward))
        print(f"  with {name}: x{ratio:.2f} the forward pass")


if __name__ == "__main__":
    sys.exit(main())
