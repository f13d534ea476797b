"""How long a long klfast call takes to stop after Ctrl-C (SIGINT).

Each case runs in a fresh process: a timer thread sends SIGINT to the process
one second into a call that would take far longer; the time from the signal
to the ``KeyboardInterrupt`` reaching the caller is printed (median and max
of ``--repeat`` runs).

    python benchmarks/interrupt_latency.py --repeat 5
"""
import argparse
import statistics
import subprocess
import sys

CHILD = r"""
import os, signal, threading, time
import numpy as np
import klfast

n, k = 40_000_000, 1000
p = np.full(k, 1 / k)
q = np.linspace(1, 2, k); q /= q.sum()
P = np.broadcast_to(p, (n, k))
sent = []
def interrupt():
    sent.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)
threading.Timer(1.0, interrupt).start()
try:
    CALL
except KeyboardInterrupt:
    print(time.perf_counter() - sent[0])
"""

CASES = {
    "kl, 1 thread": "klfast.kl(P, q, num_threads=1)",
    "kl, 2 threads": "klfast.kl(P, q, num_threads=2)",
    "entropy eps=0 (exact path), 1 thread": "klfast.entropy(P, eps=0, num_threads=1)",
    "kl_loss, 2 threads": ("klfast.kl_loss(p, np.broadcast_to(np.log(q), (n // 8, k)), "
                           "num_threads=2)"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    for label, call in CASES.items():
        latencies = []
        for _ in range(args.repeat):
            done = subprocess.run([sys.executable, "-c", CHILD.replace("CALL", call)],
                                  capture_output=True, text=True, timeout=600)
            latencies.append(float(done.stdout))
        print(f"{label:>40}: median {statistics.median(latencies) * 1e3:.1f} ms, "
              f"max {max(latencies) * 1e3:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
