"""klfast beside its peers with pytest-benchmark: one group per (measure, dtype, shape).

Full sizes (30-60 minutes on 2 cores measured before the jensen_shannon groups,
which add an estimated 10 more; 1e8-element inputs, up to ~5 GB of memory):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest benchmarks

Smoke run (CI): ``pytest benchmarks --benchmark-disable``. Sizes shrink to
about 2e5 elements when benchmarking is disabled, when the ``CI`` environment
variable is set, or with ``--bench-small``. At the end of a timed run the
session prints each group's ratios: speed-up versus scipy and time over the
read floor with the same thread count.
"""
import gc
import os

import pytest

from klfast.bench import peers
from klfast import default_num_threads

FULL_SHAPES = ("1000000x100", "100000x1000", "1000x100000", "100000x1000:ref", "1x11")
SMALL_SHAPES = ("2000x100", "200x1000", "2x100000", "200x1000:ref", "1x11")


def pytest_addoption(parser):
    parser.addoption("--bench-small", action="store_true",
                     help="klfast benchmarks: use the small (CI) sizes while timing")


def small_sizes(config):
    return bool(os.environ.get("CI")) or config.getoption("benchmark_disable", False) \
        or config.getoption("bench_small", False)


def divergence_cases(small):
    """(case, peer, threads) in input order: every test of one input runs together.

    kl and jeffreys at both dtypes and every shape, jensen_shannon
    on the same grid, plus, at 100,000 x 1,000, inputs with 10 % zeros (kl) and
    entropy / cross-entropy."""
    shapes = [peers.Shape.parse(s) for s in (SMALL_SHAPES if small else FULL_SHAPES)]
    square = shapes[1]  # 100,000 x 1,000 (small: 200 x 1,000)
    n = default_num_threads()
    out = []
    for shape in shapes:
        for dtype in ("float64", "float32"):
            for zeros in (False, True):
                measures = ["kl", "jeffreys", "jensen_shannon"]
                if shape == square:
                    measures += ["entropy", "cross_entropy"]
                if zeros:
                    if shape != square:
                        continue
                    measures = ["kl"]
                for measure in measures:
                    case = peers.Case(measure, dtype, shape, zeros)
                    for peer in peers.PEERS:
                        if measure not in peer.measures:
                            continue
                        thread_counts = [1]
                        if peer is peers.KLFAST or peer is peers.READ_FLOOR:
                            thread_counts = sorted({n, 1}, reverse=True)
                        elif peer.threaded:
                            thread_counts = [n]
                        for threads in thread_counts:
                            out.append((case, peer, threads))
    return out


def _case_id(spec):
    case, peer, threads = spec
    label = peer.label(threads).replace(" (", "-").replace(" thr)", "thr").replace(" ", "_")
    return f"{case.measure}-{case.dtype}-{case.shape.key}{'-zeros' if case.zeros else ''}-{label}"


def pytest_generate_tests(metafunc):
    if "divergence_case" in metafunc.fixturenames:
        specs = divergence_cases(small_sizes(metafunc.config))
        metafunc.parametrize("divergence_case", specs, ids=[_case_id(s) for s in specs])


class InputCache:
    """Inputs for one (shape, dtype, zeros) at a time, generated on first use.

    The tests are ordered so that all tests of one input run together: the
    previous inputs are dropped before the next are made, so at most one pair
    of (up to 800 MB) arrays is alive. The reference results (klfast with the
    default threads, the float64 reference of ``peers.reference``) are kept
    with them."""

    def __init__(self):
        self.key = None
        self.p = self.q = None
        self.results = {}

    def get(self, shape, dtype, zeros):
        key = (shape, dtype, zeros)
        if key != self.key:
            self.p = self.q = None
            self.results = {}
            gc.collect()
            self.p, self.q = peers.make_inputs(shape, dtype, zeros)
            self.key = key
        return self.p, self.q

    def result(self, case, name):
        """klfast's (default threads) result for ``case``, or with ``"reference"``
        the float64 reference expression's (scipy's; numpy's for
        jensen_shannon), computed once."""
        if (case.measure, name) not in self.results:
            p, q = self.get(case.shape, case.dtype, case.zeros)
            if name == "klfast":
                result = peers.KLFAST.prepare(case, p, q, default_num_threads())()
            else:
                result = peers.reference(case, p, q)
            self.results[case.measure, name] = result
        return self.results[case.measure, name]


@pytest.fixture(scope="session")
def input_cache():
    cache = InputCache()
    yield cache
    cache.p = cache.q = None


@pytest.fixture(scope="session")
def small(request):
    return small_sizes(request.config)


def _fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def pytest_terminal_summary(terminalreporter, config):
    """Ratios per group: the numbers to quote (absolute times drift on a noisy machine)."""
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups = {}
    for bench in session.benchmarks:
        info = bench.extra_info
        if "peer" not in info or not bench.stats:
            continue
        groups.setdefault(bench.group, []).append((info, bench.stats.median))
    if not groups:
        return
    tr = terminalreporter
    tr.write_sep("=", "klfast ratios (median; speed-up = scipy time / time; "
                      "floor = time / read-floor time, same threads)")
    tr.write_line(f"{'group':<40} {'peer':<26} {'ns/el':>9} {'vs scipy':>9} {'/ floor':>8}")
    for group, rows in groups.items():
        scipy_t = next((t for info, t in rows if info["peer"] == "scipy"), None)
        floors = {info["threads"]: t for info, t in rows if info["peer"] == "read floor"}
        for info, t in sorted(rows, key=lambda r: r[1]):
            speed = scipy_t / t if scipy_t else None
            floor = floors.get(info["threads"])
            ratio = t / floor if floor and info["peer"] != "read floor" else None
            label = info.get("label", info["peer"])  # (groups without labels: the peer)
            tr.write_line(f"{group:<40} {label:<26} {t / info['elements'] * 1e9:>9.3g} "
                          f"{_fmt_ratio(speed):>9} {_fmt_ratio(ratio):>8}")
