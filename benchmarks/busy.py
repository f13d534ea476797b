"""Two threads against one while other work keeps cores busy (issue 16, item 5).

Cases: ``small`` (1,000 x 100 float64 kl), ``medium`` (20,000 x 100),
``loss`` (kl_loss forward on 4,096 x 32,000 float32 logits) and
``pairs_js`` (klfast.pairwise Jensen-Shannon, 200 x 1,000 pairs of 300).

Starts ``--busy`` spinning processes (default: one, so that on a 2-core
machine one core is taken), then times the same klfast call with
``num_threads=1`` and ``num_threads=2`` in turns. A turn runs ``--calls``
calls of each and takes their total wall time; the figure is the median of
the per-turn ratios (2 threads / 1 thread) and their range. A ratio near or
below 1 is the goal: a second thread that is descheduled must not stall the
call. ``--busy 0`` gives the quiet figure for comparison.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/busy.py --busy 1
"""
import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

import klfast

SPIN = "while True: pass"


def _rows(n, k, dtype, seed):
    x = np.random.default_rng(seed).random((n, k)) + 0.01
    return (x / x.sum(axis=1, keepdims=True)).astype(dtype)


def _small():  # 1,000 x 100 float64 kl, in cache
    p, q = _rows(1000, 100, np.float64, 1), _rows(1000, 100, np.float64, 2)
    out = np.empty(1000)
    return lambda t: klfast.kl(p, q, out=out, num_threads=t)


def _medium():  # 20,000 x 100 float64 kl, in L2/L3
    p, q = _rows(20000, 100, np.float64, 3), _rows(20000, 100, np.float64, 4)
    out = np.empty(20000)
    return lambda t: klfast.kl(p, q, out=out, num_threads=t)


def _loss():  # kl_loss forward, 4,096 x 32,000 float32 logits
    z = np.random.default_rng(5).standard_normal((4096, 32000)).astype(np.float32)
    t = _rows(4096, 32000, np.float32, 6)
    return lambda n: klfast.kl_loss(t, z, reduction="none", num_threads=n)


def _pairs_js():  # pairwise Jensen-Shannon, 200 x 300 against 1,000 x 300 float64 (direct tiles)
    p, q = _rows(200, 300, np.float64, 7), _rows(1000, 300, np.float64, 8)
    return lambda n: klfast.pairwise(p, q, "jensen_shannon", num_threads=n)


# each case's inputs are made just before it is timed, and freed after: the
# half-gigabyte inputs of "loss" slowed the small cases 15-fold when they
# were alive beside them
CASES = {"small": _small, "medium": _medium, "loss": _loss, "pairs_js": _pairs_js}


def measure(call, turns, calls):
    ratios, one, two = [], [], []
    call(1), call(2)  # warm: threads started, pages touched
    for _ in range(turns):
        times = []
        for n in (1, 2):
            t0 = time.perf_counter()
            for _ in range(calls):
                call(n)
            times.append(time.perf_counter() - t0)
        one.append(times[0] / calls)
        two.append(times[1] / calls)
        ratios.append(times[1] / times[0])
    return statistics.median(ratios), min(ratios), max(ratios), statistics.median(one), \
        statistics.median(two)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--busy", type=int, default=1, help="spinning processes (default 1)")
    ap.add_argument("--cases", default="small,medium,loss")
    ap.add_argument("--turns", type=int, default=7)
    ap.add_argument("--calls", type=int, default=0,
                    help="calls per side per turn (default: about 0.2 s of work)")
    args = ap.parse_args(argv)
    names = args.cases.split(",")
    unknown = [name for name in names if name not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; the cases are {', '.join(CASES)}")
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
    try:
        time.sleep(0.5)
        print(f"busy processes: {args.busy}, turns: {args.turns}")
        print(f"{'case':8} {'2T/1T median':>12} {'range':>14} {'1T per call':>12} "
              f"{'2T per call':>12}")
        for name in names:
            call = CASES[name]()
            calls = args.calls
            if not calls:
                t0 = time.perf_counter()
                call(1)
                calls = max(1, int(0.2 / max(time.perf_counter() - t0, 1e-7)))
            med, lo, hi, one, two = measure(call, args.turns, calls)
            print(f"{name:8} {med:12.2f} {lo:6.2f}-{hi:<7.2f} {one * 1e6:10.1f}us "
                  f"{two * 1e6:10.1f}us")
    finally:
        for s in spinners:
            s.kill()
            s.wait()


if __name__ == "__main__":
    main()
