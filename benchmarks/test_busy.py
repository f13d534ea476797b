"""Two threads against one while another process keeps a core busy (issue 16,
item 5), in pytest-benchmark groups: kl of 1,000 x 100 and 20,000 x 100
float64 with ``num_threads=1`` and ``2`` beside one spinning process. The
goal is a 2-thread time not much above the 1-thread time: a descheduled
second thread must not stall the call. Every answer is checked against the
float64 reference first. ``benchmarks/busy.py`` reports the same cases as
medians of per-turn ratios."""
import subprocess
import sys
import time

import numpy as np
import pytest

import klfast
from klfast._core import reference as _reference


@pytest.fixture(scope="module")
def busy_core():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.2)
    yield
    spinner.kill()
    spinner.wait()


def _rows(n, seed):
    x = np.random.default_rng(seed).random((n, 100)) + 0.01
    return x / x.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [1000, 20000])
def test_busy(benchmark, busy_core, n, threads):
    p, q = _rows(n, 1), _rows(n, 2)
    out = np.empty(n)

    def fn():
        return klfast.kl(p, q, out=out, num_threads=threads)

    np.testing.assert_allclose(fn(), _reference.kl(p, q), rtol=1e-12, atol=1e-15)
    benchmark.group = f"kl {n:,} x 100 float64, one core kept busy"
    benchmark(fn)
