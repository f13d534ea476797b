"""Threads: the default thread count follows OpenMP limits, results do not
depend on it, concurrent Python threads and forked children work."""
import concurrent.futures
import multiprocessing
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import klfast
from klfast._core.engine import MIN_PARALLEL_ELEMENTS
from zoo import MEASURES, call, call_ref, distributions

threadpoolctl = pytest.importorskip("threadpoolctl")

OPENMP = klfast._config.config()["openmp"] if hasattr(klfast, "_config") else True


def allowed_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_python(code, env_update=None, timeout=60):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.update(env_update or {})
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            capture_output=True, text=True, timeout=timeout,
                            cwd=os.path.dirname(os.path.abspath(__file__)))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def big_pair(rng, dtype=np.float64):
    n, k = 2 * MIN_PARALLEL_ELEMENTS // 50, 50
    return distributions(rng, (n, k), dtype=dtype), distributions(rng, (n, k), dtype=dtype)


# --- default_num_threads ---------------------------------------------------------

def test_default_num_threads_is_bounded_by_cpus():
    n = klfast.default_num_threads()
    assert isinstance(n, int)
    assert 1 <= n <= allowed_cpus()
    if not OPENMP:
        assert n == 1


def test_default_num_threads_respects_threadpoolctl():
    before = klfast.default_num_threads()
    with threadpoolctl.threadpool_limits(limits=1):
        assert klfast.default_num_threads() == 1
    assert klfast.default_num_threads() == before
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert klfast.default_num_threads() == 1


def test_klfast_openmp_is_visible_to_threadpoolctl():
    if not OPENMP:
        pytest.skip("built without OpenMP")
    apis = {info["user_api"] for info in threadpoolctl.threadpool_info()}
    assert "openmp" in apis


@pytest.mark.parametrize("value", ["1", "2", "64"])
def test_default_num_threads_respects_omp_num_threads(value):
    out = run_python("import klfast; print(klfast.default_num_threads())",
                     {"OMP_NUM_THREADS": value})
    expected = 1 if not OPENMP else min(int(value), allowed_cpus())
    assert int(out) == expected


def test_default_num_threads_without_env_uses_allowed_cpus():
    out = run_python("import klfast; print(klfast.default_num_threads())")
    assert int(out) == (allowed_cpus() if OPENMP else 1)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_default_num_threads_respects_cpu_affinity():
    if allowed_cpus() < 2:
        pytest.skip("needs two CPUs")
    out = run_python("""
        import os
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        import klfast
        print(klfast.default_num_threads())
    """)
    assert int(out) == 1


# --- results do not depend on the thread count ---------------------------------------

@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_results_identical_for_every_thread_count(rng, measure, dtype):
    p, q = big_pair(rng, dtype)
    want = call_ref(measure, p[:100], q[:100])
    one = call(measure, p, q, num_threads=1)
    np.testing.assert_allclose(one[:100], want, rtol=1e-12 if dtype == np.float64 else 1e-6,
                               atol=1e-14 if dtype == np.float64 else 1e-7)
    for num_threads in (2, 4, 16, None):
        assert np.array_equal(call(measure, p, q, num_threads=num_threads), one)
    with threadpoolctl.threadpool_limits(limits=1):
        assert np.array_equal(call(measure, p, q), one)


def test_more_threads_than_rows(rng):
    p = distributions(rng, (3, MIN_PARALLEL_ELEMENTS))
    q = distributions(rng, (3, MIN_PARALLEL_ELEMENTS))
    one = klfast.kl(p, q, num_threads=1)
    np.testing.assert_allclose(one, call_ref("kl", p, q), rtol=1e-12)
    assert np.array_equal(klfast.kl(p, q, num_threads=64), one)


def test_huge_num_threads_does_not_kill_the_process():
    """num_threads far above the machine's thread limit: the call must still
    return (capped) or raise, never abort or crash the interpreter. Run in a
    subprocess, since the failure mode is the death of the process."""
    code = """
        import numpy as np, klfast
        p = np.full((70000, 1), 1.0)
        for n in (10**6, 10**5):
            r = klfast.kl(p, p, num_threads=n)
            assert r.shape == (70000,) and not r.any()
        print("ok")
    """
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            capture_output=True, text=True, timeout=60,
                            cwd=os.path.dirname(os.path.abspath(__file__)))
    assert result.returncode == 0 and result.stdout.strip() == "ok", (
        f"exit code {result.returncode}: {result.stderr.strip()[-300:]}")


# --- concurrent Python threads ---------------------------------------------------------

@pytest.mark.parametrize("num_threads", [1, None])
def test_concurrent_python_threads(rng, num_threads):
    jobs = []
    for i in range(24):
        measure = MEASURES[i % 4]
        shape = (2000 + 37 * i, 40) if i % 3 else (50, 7)  # some big, some tiny
        dtype = np.float32 if i % 5 == 0 else np.float64
        p = distributions(rng, shape, dtype=dtype)
        q = distributions(rng, shape[-1:] if i % 2 else shape, dtype=dtype)
        jobs.append((measure, p, q, call_ref(measure, p, q)))

    def work(job):
        measure, p, q, _ = job
        return [call(measure, p, q, num_threads=num_threads) for _ in range(3)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, jobs * 2))
    for (measure, p, q, want), runs in zip(jobs * 2, results):
        tol = dict(rtol=1e-6, atol=1e-7) if p.dtype == np.float32 else dict(rtol=1e-12,
                                                                              atol=1e-14)
        np.testing.assert_allclose(runs[0], want, **tol)
        for run in runs[1:]:
            assert np.array_equal(run, runs[0])


def test_concurrent_errors_do_not_leak_between_threads(rng):
    good_p = distributions(rng, (3000, 30))
    good_q = distributions(rng, (3000, 30))
    bad_q = good_q.copy()
    bad_q[5, 0] = -1.0
    want = call_ref("kl", good_p, good_q)

    def work(i):
        if i % 2:
            with pytest.raises(ValueError, match=r"q.*row 5(?!\d)"):
                klfast.kl(good_p, bad_q)
            return None
        return klfast.kl(good_p, good_q)

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, range(24)))
    for r in results[::2]:
        np.testing.assert_allclose(r, want, rtol=1e-12, atol=1e-14)


# --- fork -------------------------------------------------------------------------------

def _child_kl(conn):
    rng = np.random.default_rng(7)
    p = rng.random((4000, 64))
    q = rng.random((4000, 64))
    conn.send([klfast.kl(p, q, num_threads=num_threads, normalize=True)
               for num_threads in (None, 2)])
    conn.close()


def _child_kl_on_the_pool(conn):
    """In a forked child, the row loop's own pool (src/engine/pool.h) with 2
    threads: the workers the parent started are gone, the pool starts new
    ones. (klfast itself runs children on one thread, for OpenMP's sake.)"""
    from klfast._core import engine

    engine._FORKED = False
    rng = np.random.default_rng(7)
    p = rng.random((4000, 64))
    q = rng.random((4000, 64))
    conn.send([klfast.kl(p, q, num_threads=2, normalize=True) for _ in range(3)])
    conn.close()


@pytest.mark.skipif(sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(),
                    reason="needs fork")
@pytest.mark.parametrize("target", [_child_kl, _child_kl_on_the_pool])
def test_forked_child_after_parallel_call(target):
    """A child forked after the parent ran a multi-threaded call computes the
    same result and does not hang (GNU OpenMP's thread pool does not survive
    fork, nor do the row loop's workers)."""
    rng = np.random.default_rng(7)
    p = rng.random((4000, 64))
    q = rng.random((4000, 64))
    assert p.size >= MIN_PARALLEL_ELEMENTS
    want = klfast.kl(p, q, num_threads=2, normalize=True)  # threads run in the parent
    np.testing.assert_allclose(want, call_ref("kl", p, q, normalize=True), rtol=1e-12)

    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=target, args=(send,))
    child.start()
    send.close()
    try:
        # a healthy child answers in well under a second
        ready = receive.poll(8)
        assert ready, "forked child hung in klfast.kl (no result after 8 s)"
        results = receive.recv()
    finally:
        child.join(1)
        if child.is_alive():
            child.kill()
            child.join(5)
        receive.close()
    for got in results:
        assert np.array_equal(got, want)
    assert child.exitcode == 0


# --- idle threads: spin briefly, then sleep (klfast/_spin.py) ------------------------

def _display_env(env_update, code="import klfast"):
    """stderr of a child that imports klfast and runs a 2-thread call with
    OMP_DISPLAY_ENV=VERBOSE (the runtime prints its settings), and its stdout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS")}
    env.update(OMP_DISPLAY_ENV="VERBOSE", **env_update)
    code = code + textwrap.dedent("""
        import os, numpy as np
        p = np.full((1000, 100), 0.01)
        klfast.kl(p, p, num_threads=2)
        print([n for n in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME") if n in os.environ])
        print(klfast._config.config()["openmp_spin"])
        """)
    # not from the repository root, whose klfast/ holds no compiled kernels
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60,
                            cwd=os.path.dirname(os.path.abspath(__file__)))
    assert result.returncode == 0, result.stderr
    return result.stderr, result.stdout.splitlines()


def _runtime_setting(display):
    """The spin the runtime reports: GOMP_SPINCOUNT (GNU) or KMP_BLOCKTIME (LLVM)."""
    for line in display.splitlines():
        if "GOMP_SPINCOUNT" in line or "KMP_BLOCKTIME" in line:
            return line.split("=", 1)[1].strip().strip("'")
    raise AssertionError(f"the OpenMP runtime printed no spin setting:\n{display}")


@pytest.mark.skipif(not OPENMP, reason="built without OpenMP")
def test_idle_threads_spin_briefly_and_the_environment_is_left_as_it_was():
    display, (left, applies) = _display_env({})
    assert _runtime_setting(display) in ("3000", "1", "1ms")
    assert left == "[]"  # child processes do not inherit klfast's setting
    assert applies.startswith("klfast's")


@pytest.mark.skipif(not OPENMP, reason="built without OpenMP")
def test_the_users_openmp_wait_settings_win():
    display, (left, applies) = _display_env({"GOMP_SPINCOUNT": "77", "KMP_BLOCKTIME": "7"})
    assert _runtime_setting(display) in ("77", "7", "7ms")
    assert left == "['GOMP_SPINCOUNT', 'KMP_BLOCKTIME']"
    assert applies == "from the environment (GOMP_SPINCOUNT=77, KMP_BLOCKTIME=7)"
    _, (left, applies) = _display_env({"OMP_WAIT_POLICY": "active"})
    assert left == "['OMP_WAIT_POLICY']"
    assert applies == "from the environment (OMP_WAIT_POLICY=active)"


@pytest.mark.parametrize("k", [4, 100])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_threads_beside_a_busy_core_give_the_same_bits(rng, k, dtype):
    """Rows are taken a few at a time by whichever thread is free: while
    another process keeps a core busy, repeated 2-thread calls still give
    each row the bits of a 1-thread call (k = 4 goes across lanes)."""
    p = distributions(rng, (40_000, k)).astype(dtype)
    q = distributions(rng, (40_000, k)).astype(dtype)
    one = klfast.kl(p, q, num_threads=1)
    np.testing.assert_allclose(one[:50], call_ref("kl", p[:50], q[:50]),
                               rtol=1e-12 if dtype == np.float64 else 1e-5)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for _ in range(20):
            assert np.array_equal(klfast.kl(p, q, num_threads=2), one)
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.parametrize("k", [4, 100])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_claim_size_does_not_change_the_bits(rng, k, dtype):
    """Any number of rows per claim, from one lane tile (16 rows) to all of
    them, gives each row the bits of a 1-thread call (k = 4 goes across lanes)."""
    from klfast import _kernels

    p = distributions(rng, (20_000, k)).astype(dtype)
    q = distributions(rng, (20_000, k)).astype(dtype)
    one = klfast.kl(p, q, num_threads=1)
    np.testing.assert_allclose(one[:50], call_ref("kl", p[:50], q[:50]),
                               rtol=1e-12 if dtype == np.float64 else 1e-5)
    before = _kernels.set_claim_bytes(1)
    try:
        for size in (1, 1 << 12, 1 << 40):
            _kernels.set_claim_bytes(size)
            assert np.array_equal(klfast.kl(p, q, num_threads=2), one)
    finally:
        assert _kernels.set_claim_bytes(before) == 1 << 40
